/*
 * Resources back to text: one canonical JSON document per resource, which
 * seldon_manifest_parse() reads back to an equal resource; and equality.
 *
 * Strings are escaped for libyaml as well as for JSON: besides control
 * characters, libyaml refuses or folds some printable-looking characters
 * (C1 controls, NEL, the line and paragraph separators, BOM, U+FFFE/U+FFFF),
 * so those are written as \uXXXX escapes.
 */
#include <stdio.h>
#include <string.h>

#include "manifest/manifest.h"
#include "util/jsonstr.h"

typedef struct writer {
    seldon_buf *b;
    int rc;
    int first; /* no comma before the next member */
} writer;

static void raw(writer *w, const char *s, size_t n)
{
    if (w->rc == 0)
        w->rc = sdn_buf_append(w->b, s, n);
}

static void lit(writer *w, const char *s)
{
    raw(w, s, strlen(s));
}

static void escape_cp(writer *w, uint32_t cp)
{
    static const char hex[] = "0123456789abcdef";
    char e[6] = {'\\',        'u', hex[(cp >> 12) & 15], hex[(cp >> 8) & 15], hex[(cp >> 4) & 15],
                 hex[cp & 15]};
    raw(w, e, 6);
}

static void str(writer *w, const char *s)
{
    const uint8_t *p = (const uint8_t *)s, *end = p + strlen(s), *run = p;
    raw(w, "\"", 1);
    while (p < end) {
        uint8_t c = *p;
        uint32_t cp = c;
        size_t n = 1;
        int esc;
        if (c < 0x80) {
            esc = c < 0x20 || c == 0x7f || c == '"' || c == '\\';
        } else if ((n = sdn_utf8_seq(p, end)) == 0) {
            esc = 1; /* not UTF-8: a resource built by hand, not parsed */
            cp = 0xFFFD;
            n = 1;
        } else {
            if (n == 2)
                cp = ((uint32_t)(c & 0x1F) << 6) | (p[1] & 0x3F);
            else if (n == 3)
                cp = ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
            else
                cp = 0x10000; /* astral planes: printable for libyaml */
            esc = (cp >= 0x80 && cp <= 0x9F) || cp == 0x2028 || cp == 0x2029 || cp == 0xFEFF ||
                  cp == 0xFFFE || cp == 0xFFFF;
        }
        if (!esc) {
            p += n;
            continue;
        }
        raw(w, (const char *)run, (size_t)(p - run));
        if (cp == '"')
            lit(w, "\\\"");
        else if (cp == '\\')
            lit(w, "\\\\");
        else if (cp == '\n')
            lit(w, "\\n");
        else if (cp == '\t')
            lit(w, "\\t");
        else if (cp == '\r')
            lit(w, "\\r");
        else
            escape_cp(w, cp);
        p += n;
        run = p;
    }
    raw(w, (const char *)run, (size_t)(p - run));
    raw(w, "\"", 1);
}

static void key(writer *w, const char *k)
{
    if (!w->first)
        raw(w, ",", 1);
    w->first = 0;
    str(w, k);
    raw(w, ":", 1);
}

static void open_obj(writer *w)
{
    raw(w, "{", 1);
    w->first = 1;
}

static void close_obj(writer *w)
{
    raw(w, "}", 1);
    w->first = 0;
}

static void f_str(writer *w, const char *k, const char *v)
{
    if (v == NULL)
        return;
    key(w, k);
    str(w, v);
}

static void f_int(writer *w, const char *k, int64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%lld", (long long)v);
    key(w, k);
    raw(w, tmp, (size_t)n);
}

static void f_bool(writer *w, const char *k, int32_t v)
{
    key(w, k);
    lit(w, v ? "true" : "false");
}

static void f_list(writer *w, const char *k, const char *const *v, size_t n)
{
    size_t i;
    if (n == 0)
        return;
    key(w, k);
    raw(w, "[", 1);
    for (i = 0; i < n; i++) {
        if (i)
            raw(w, ",", 1);
        str(w, v[i] ? v[i] : "");
    }
    raw(w, "]", 1);
}

static void f_map(writer *w, const char *k, const seldon_kv *v, size_t n)
{
    size_t i;
    if (n == 0)
        return;
    key(w, k);
    open_obj(w);
    for (i = 0; i < n; i++)
        f_str(w, v[i].name ? v[i].name : "", v[i].value ? v[i].value : "");
    close_obj(w);
}

static void scaling(writer *w, int32_t replicas, int32_t min, int32_t max)
{
    f_int(w, "replicas", replicas);
    if (min != 0)
        f_int(w, "minReplicas", min);
    if (max != 0)
        f_int(w, "maxReplicas", max);
}

static void model(writer *w, const seldon_model_spec *m)
{
    size_t i;
    f_str(w, "storageUri", m->storage_uri);
    if (m->artifact_version >= 0)
        f_int(w, "artifactVersion", m->artifact_version);
    f_str(w, "modelType", m->model_type);
    f_str(w, "schemaUri", m->schema_uri);
    f_str(w, "secretName", m->secret_name);
    f_list(w, "requirements", m->requirements, m->requirements_count);
    if (m->memory_bytes >= 0)
        f_int(w, "memory", m->memory_bytes);
    scaling(w, m->replicas, m->min_replicas, m->max_replicas);
    f_str(w, "server", m->server);
    if (m->preloaded)
        f_bool(w, "preloaded", 1);
    if (m->dedicated)
        f_bool(w, "dedicated", 1);
    if (m->logger_percent >= 0) {
        key(w, "logger");
        open_obj(w);
        f_int(w, "percent", m->logger_percent);
        close_obj(w);
    }
    if (m->explainer_type || m->explainer_model_ref || m->explainer_pipeline_ref) {
        key(w, "explainer");
        open_obj(w);
        f_str(w, "type", m->explainer_type);
        f_str(w, "modelRef", m->explainer_model_ref);
        f_str(w, "pipelineRef", m->explainer_pipeline_ref);
        close_obj(w);
    }
    if (m->llm_model_ref || m->llm_pipeline_ref) {
        key(w, "llm");
        open_obj(w);
        f_str(w, "modelRef", m->llm_model_ref);
        f_str(w, "pipelineRef", m->llm_pipeline_ref);
        close_obj(w);
    }
    if (m->parameters_count > 0) {
        key(w, "parameters");
        raw(w, "[", 1);
        for (i = 0; i < m->parameters_count; i++) {
            if (i)
                raw(w, ",", 1);
            open_obj(w);
            f_str(w, "name", m->parameters[i].name ? m->parameters[i].name : "");
            f_str(w, "value", m->parameters[i].value ? m->parameters[i].value : "");
            close_obj(w);
        }
        raw(w, "]", 1);
    }
    if (m->clean_topics_on_delete) {
        key(w, "dataflow");
        open_obj(w);
        f_bool(w, "cleanTopicsOnDelete", 1);
        close_obj(w);
    }
}

static void server(writer *w, const seldon_server_spec *s)
{
    f_str(w, "serverConfig", s->server_config);
    f_list(w, "capabilities", s->capabilities, s->capabilities_count);
    f_list(w, "extraCapabilities", s->extra_capabilities, s->extra_capabilities_count);
    scaling(w, s->replicas, s->min_replicas, s->max_replicas);
    if (s->memory_bytes >= 0)
        f_int(w, "memory", s->memory_bytes);
}

static void experiment(writer *w, const seldon_experiment_spec *e)
{
    size_t i;
    f_str(w, "default", e->default_name);
    f_str(w, "resourceType", e->resource_type ? e->resource_type : "model");
    if (e->candidates_count > 0) {
        key(w, "candidates");
        raw(w, "[", 1);
        for (i = 0; i < e->candidates_count; i++) {
            if (i)
                raw(w, ",", 1);
            open_obj(w);
            f_str(w, "name", e->candidates[i].name ? e->candidates[i].name : "");
            f_int(w, "weight", e->candidates[i].weight);
            close_obj(w);
        }
        raw(w, "]", 1);
    }
    if (e->mirror_name != NULL) {
        key(w, "mirror");
        open_obj(w);
        f_str(w, "name", e->mirror_name);
        f_int(w, "percent", e->mirror_percent);
        close_obj(w);
    }
}

static const char *join_or_inner(const char *j)
{
    return j ? j : "inner";
}

static int is_inner(const char *j)
{
    return j == NULL || strcmp(j, "inner") == 0;
}

static void pipeline(writer *w, const seldon_pipeline_spec *p)
{
    size_t i;
    key(w, "steps");
    raw(w, "[", 1);
    for (i = 0; i < p->steps_count; i++) {
        const seldon_pipeline_step *s = &p->steps[i];
        if (i)
            raw(w, ",", 1);
        open_obj(w);
        f_str(w, "name", s->name ? s->name : "");
        f_list(w, "inputs", s->inputs, s->inputs_count);
        if (s->join_window_ms >= 0)
            f_int(w, "joinWindowMs", s->join_window_ms);
        f_map(w, "tensorMap", s->tensor_map, s->tensor_map_count);
        f_list(w, "triggers", s->triggers, s->triggers_count);
        f_str(w, "inputsJoinType", join_or_inner(s->inputs_join_type));
        f_str(w, "triggersJoinType", join_or_inner(s->triggers_join_type));
        if (s->batch.size || s->batch.window_ms || s->batch.rolling) {
            key(w, "batch");
            open_obj(w);
            if (s->batch.size)
                f_int(w, "size", s->batch.size);
            if (s->batch.window_ms)
                f_int(w, "windowMs", s->batch.window_ms);
            if (s->batch.rolling)
                f_bool(w, "rolling", 1);
            close_obj(w);
        }
        close_obj(w);
    }
    raw(w, "]", 1);
    w->first = 0;
    if (p->external_inputs_count || p->external_triggers_count || p->input_join_window_ms >= 0 ||
        !is_inner(p->input_join_type) || !is_inner(p->input_triggers_join_type) ||
        p->input_tensor_map_count) {
        key(w, "input");
        open_obj(w);
        f_list(w, "externalInputs", p->external_inputs, p->external_inputs_count);
        f_list(w, "externalTriggers", p->external_triggers, p->external_triggers_count);
        if (p->input_join_window_ms >= 0)
            f_int(w, "joinWindowMs", p->input_join_window_ms);
        f_str(w, "joinType", join_or_inner(p->input_join_type));
        f_str(w, "triggersJoinType", join_or_inner(p->input_triggers_join_type));
        f_map(w, "tensorMap", p->input_tensor_map, p->input_tensor_map_count);
        close_obj(w);
    }
    if (p->output_steps_count || p->output_join_window_ms >= 0 || !is_inner(p->output_steps_join) ||
        p->output_tensor_map_count) {
        key(w, "output");
        open_obj(w);
        f_list(w, "steps", p->output_steps, p->output_steps_count);
        if (p->output_join_window_ms >= 0)
            f_int(w, "joinWindowMs", p->output_join_window_ms);
        f_str(w, "stepsJoin", join_or_inner(p->output_steps_join));
        f_map(w, "tensorMap", p->output_tensor_map, p->output_tensor_map_count);
        close_obj(w);
    }
    if (p->allow_cycles)
        f_bool(w, "allowCycles", 1);
    if (p->max_step_revisits)
        f_int(w, "maxStepRevisits", p->max_step_revisits);
    if (p->clean_topics_on_delete) {
        key(w, "dataflow");
        open_obj(w);
        f_bool(w, "cleanTopicsOnDelete", 1);
        close_obj(w);
    }
    if (p->timeout_ms > 0)
        f_int(w, "timeoutMs", p->timeout_ms);
}

int seldon_resource_serialize(seldon_buf *out, const seldon_resource *r)
{
    writer w = {out, 0, 1};
    const char *kind;
    size_t start;
    if (out == NULL || r == NULL)
        return sdn_error(SELDON_EINVAL, "resource_serialize: NULL argument");
    kind = seldon_kind_name(r->kind);
    if (kind == NULL || r->name == NULL)
        return sdn_error(SELDON_EINVAL, "resource_serialize: no kind or no name");
    start = out->len;
    open_obj(&w);
    f_str(&w, "apiVersion", SELDON_MANIFEST_API_VERSION);
    f_str(&w, "kind", kind);
    key(&w, "metadata");
    open_obj(&w);
    f_str(&w, "name", r->name);
    f_str(&w, "namespace", r->namespace_);
    close_obj(&w);
    key(&w, "spec");
    open_obj(&w);
    switch (r->kind) {
    case SELDON_KIND_MODEL:
        model(&w, &r->spec.model);
        break;
    case SELDON_KIND_SERVER:
        server(&w, &r->spec.server);
        break;
    case SELDON_KIND_PIPELINE:
        pipeline(&w, &r->spec.pipeline);
        break;
    case SELDON_KIND_EXPERIMENT:
        experiment(&w, &r->spec.experiment);
        break;
    }
    close_obj(&w);
    close_obj(&w);
    raw(&w, "\n", 1);
    if (w.rc != 0) {
        out->len = start;
        return w.rc;
    }
    return 0;
}

/* ---- equality ---- */

static int s_eq(const char *a, const char *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    return strcmp(a, b) == 0;
}

static int join_eq(const char *a, const char *b)
{
    return s_eq(join_or_inner(a), join_or_inner(b));
}

static int list_eq(const char *const *a, size_t na, const char *const *b, size_t nb)
{
    size_t i;
    if (na != nb)
        return 0;
    for (i = 0; i < na; i++)
        if (!s_eq(a[i], b[i]))
            return 0;
    return 1;
}

static int kv_eq(const seldon_kv *a, size_t na, const seldon_kv *b, size_t nb)
{
    size_t i;
    if (na != nb)
        return 0;
    for (i = 0; i < na; i++)
        if (!s_eq(a[i].name, b[i].name) || !s_eq(a[i].value, b[i].value))
            return 0;
    return 1;
}

static int model_eq(const seldon_model_spec *a, const seldon_model_spec *b)
{
    return s_eq(a->storage_uri, b->storage_uri) && a->artifact_version == b->artifact_version &&
           s_eq(a->model_type, b->model_type) && s_eq(a->schema_uri, b->schema_uri) &&
           s_eq(a->secret_name, b->secret_name) &&
           list_eq(a->requirements, a->requirements_count, b->requirements,
                   b->requirements_count) &&
           a->memory_bytes == b->memory_bytes && a->replicas == b->replicas &&
           a->min_replicas == b->min_replicas && a->max_replicas == b->max_replicas &&
           s_eq(a->server, b->server) && !a->preloaded == !b->preloaded &&
           !a->dedicated == !b->dedicated && a->logger_percent == b->logger_percent &&
           s_eq(a->explainer_type, b->explainer_type) &&
           s_eq(a->explainer_model_ref, b->explainer_model_ref) &&
           s_eq(a->explainer_pipeline_ref, b->explainer_pipeline_ref) &&
           s_eq(a->llm_model_ref, b->llm_model_ref) &&
           s_eq(a->llm_pipeline_ref, b->llm_pipeline_ref) &&
           kv_eq(a->parameters, a->parameters_count, b->parameters, b->parameters_count) &&
           !a->clean_topics_on_delete == !b->clean_topics_on_delete;
}

static int server_eq(const seldon_server_spec *a, const seldon_server_spec *b)
{
    return s_eq(a->server_config, b->server_config) &&
           list_eq(a->capabilities, a->capabilities_count, b->capabilities,
                   b->capabilities_count) &&
           list_eq(a->extra_capabilities, a->extra_capabilities_count, b->extra_capabilities,
                   b->extra_capabilities_count) &&
           a->replicas == b->replicas && a->min_replicas == b->min_replicas &&
           a->max_replicas == b->max_replicas && a->memory_bytes == b->memory_bytes;
}

static int experiment_eq(const seldon_experiment_spec *a, const seldon_experiment_spec *b)
{
    size_t i;
    if (!s_eq(a->default_name, b->default_name) ||
        !s_eq(a->resource_type ? a->resource_type : "model",
              b->resource_type ? b->resource_type : "model") ||
        a->candidates_count != b->candidates_count || !s_eq(a->mirror_name, b->mirror_name) ||
        a->mirror_percent != b->mirror_percent)
        return 0;
    for (i = 0; i < a->candidates_count; i++)
        if (!s_eq(a->candidates[i].name, b->candidates[i].name) ||
            a->candidates[i].weight != b->candidates[i].weight)
            return 0;
    return 1;
}

static int step_eq(const seldon_pipeline_step *a, const seldon_pipeline_step *b)
{
    return s_eq(a->name, b->name) &&
           list_eq(a->inputs, a->inputs_count, b->inputs, b->inputs_count) &&
           list_eq(a->triggers, a->triggers_count, b->triggers, b->triggers_count) &&
           kv_eq(a->tensor_map, a->tensor_map_count, b->tensor_map, b->tensor_map_count) &&
           join_eq(a->inputs_join_type, b->inputs_join_type) &&
           join_eq(a->triggers_join_type, b->triggers_join_type) &&
           a->join_window_ms == b->join_window_ms && a->batch.size == b->batch.size &&
           a->batch.window_ms == b->batch.window_ms && !a->batch.rolling == !b->batch.rolling;
}

static int pipeline_eq(const seldon_pipeline_spec *a, const seldon_pipeline_spec *b)
{
    size_t i;
    if (a->steps_count != b->steps_count)
        return 0;
    for (i = 0; i < a->steps_count; i++)
        if (!step_eq(&a->steps[i], &b->steps[i]))
            return 0;
    return list_eq(a->external_inputs, a->external_inputs_count, b->external_inputs,
                   b->external_inputs_count) &&
           list_eq(a->external_triggers, a->external_triggers_count, b->external_triggers,
                   b->external_triggers_count) &&
           join_eq(a->input_join_type, b->input_join_type) &&
           join_eq(a->input_triggers_join_type, b->input_triggers_join_type) &&
           a->input_join_window_ms == b->input_join_window_ms &&
           kv_eq(a->input_tensor_map, a->input_tensor_map_count, b->input_tensor_map,
                 b->input_tensor_map_count) &&
           list_eq(a->output_steps, a->output_steps_count, b->output_steps,
                   b->output_steps_count) &&
           join_eq(a->output_steps_join, b->output_steps_join) &&
           a->output_join_window_ms == b->output_join_window_ms &&
           kv_eq(a->output_tensor_map, a->output_tensor_map_count, b->output_tensor_map,
                 b->output_tensor_map_count) &&
           !a->allow_cycles == !b->allow_cycles && a->max_step_revisits == b->max_step_revisits &&
           !a->clean_topics_on_delete == !b->clean_topics_on_delete &&
           a->timeout_ms == b->timeout_ms;
}

int32_t seldon_resource_equal(const seldon_resource *a, const seldon_resource *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    if (a->kind != b->kind || !s_eq(a->name, b->name) || !s_eq(a->namespace_, b->namespace_))
        return 0;
    switch (a->kind) {
    case SELDON_KIND_MODEL:
        return model_eq(&a->spec.model, &b->spec.model);
    case SELDON_KIND_SERVER:
        return server_eq(&a->spec.server, &b->spec.server);
    case SELDON_KIND_PIPELINE:
        return pipeline_eq(&a->spec.pipeline, &b->spec.pipeline);
    case SELDON_KIND_EXPERIMENT:
        return experiment_eq(&a->spec.experiment, &b->spec.experiment);
    default:
        return 0;
    }
}
