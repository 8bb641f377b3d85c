/*
 * Model metadata and the repository index, in REST JSON and in protobuf.
 */
#include <string.h>

#include "grpc_predict_v2.pb-c.h"
#include "repo.h"


static const char *platform_of(const seldon_model *m)
{
    return m->settings.platform[0] ? m->settings.platform : m->runtime->name;
}

static int jw_key(seldon_buf *b, const char *key, int first)
{
    int rc = first ? 0 : sdn_jw_raw(b, ",", 1);
    if (rc == 0)
        rc = sdn_jw_string(b, key, strlen(key));
    if (rc == 0)
        rc = sdn_jw_raw(b, ":", 1);
    return rc;
}

static int jw_tensors(seldon_buf *b, const sdn_tmetas *ms)
{
    uint32_t i, k;
    int rc = sdn_jw_raw(b, "[", 1);
    for (i = 0; rc == 0 && i < ms->n; i++) {
        const sdn_tmeta *m = &ms->items[i];
        const char *dt = seldon_datatype_name(m->datatype);
        rc = sdn_jw_raw(b, i ? ",{" : "{", i ? 2 : 1);
        if (rc == 0)
            rc = jw_key(b, "name", 1);
        if (rc == 0)
            rc = sdn_jw_string(b, m->name.p, m->name.len);
        if (rc == 0)
            rc = jw_key(b, "datatype", 0);
        if (rc == 0)
            rc = sdn_jw_string(b, dt, strlen(dt));
        if (rc == 0)
            rc = jw_key(b, "shape", 0);
        if (rc == 0)
            rc = sdn_jw_raw(b, "[", 1);
        for (k = 0; rc == 0 && k < m->ndim; k++) {
            if (k)
                rc = sdn_jw_raw(b, ",", 1);
            if (rc == 0)
                rc = sdn_jw_int(b, m->shape[k]);
        }
        if (rc == 0)
            rc = sdn_jw_raw(b, "]}", 2);
    }
    if (rc == 0)
        rc = sdn_jw_raw(b, "]", 1);
    return rc;
}

int seldon_model_metadata_json(seldon_buf *out, const seldon_model *model)
{
    const sdn_settings *s;
    size_t start;
    int rc;
    if (out == NULL || model == NULL)
        return sdn_error(SELDON_EINVAL, "metadata_json: NULL argument");
    s = &model->settings;
    start = out->len;
    rc = sdn_jw_raw(out, "{", 1);
    if (rc == 0)
        rc = jw_key(out, "name", 1);
    if (rc == 0)
        rc = sdn_jw_string(out, s->name, strlen(s->name));
    if (rc == 0)
        rc = jw_key(out, "versions", 0);
    if (rc == 0)
        rc = sdn_jw_raw(out, "[", 1);
    if (rc == 0 && s->version[0])
        rc = sdn_jw_string(out, s->version, strlen(s->version));
    if (rc == 0)
        rc = sdn_jw_raw(out, "]", 1);
    if (rc == 0)
        rc = jw_key(out, "platform", 0);
    if (rc == 0)
        rc = sdn_jw_string(out, platform_of(model), strlen(platform_of(model)));
    if (rc == 0)
        rc = jw_key(out, "inputs", 0);
    if (rc == 0)
        rc = jw_tensors(out, &s->inputs);
    if (rc == 0)
        rc = jw_key(out, "outputs", 0);
    if (rc == 0)
        rc = jw_tensors(out, &s->outputs);
    if (rc == 0)
        rc = sdn_jw_raw(out, "}", 1);
    if (rc < 0)
        out->len = start;
    return rc;
}

typedef Inference__ModelMetadataResponse__TensorMetadata pb_tmeta;

static pb_tmeta **pb_tensors(sdn_arena *a, const sdn_tmetas *ms)
{
    pb_tmeta **arr = sdn_arena_alloc(a, (ms->n + 1) * (sizeof(pb_tmeta *) + sizeof(pb_tmeta)));
    pb_tmeta *items;
    uint32_t i;
    if (arr == NULL)
        return NULL;
    items = (pb_tmeta *)(void *)(arr + ms->n + 1);
    for (i = 0; i < ms->n; i++) {
        inference__model_metadata_response__tensor_metadata__init(&items[i]);
        items[i].name = (char *)(uintptr_t)ms->items[i].name.p;
        items[i].datatype = (char *)(uintptr_t)seldon_datatype_name(ms->items[i].datatype);
        items[i].n_shape = ms->items[i].ndim;
        items[i].shape = ms->items[i].shape;
        arr[i] = &items[i];
    }
    return arr;
}

static int pack_into(seldon_buf *out, const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    int rc = sdn_buf_reserve(out, n);
    if (rc < 0)
        return rc;
    out->len += protobuf_c_message_pack(m, out->data + out->len);
    return 0;
}

int seldon_model_metadata_pb(seldon_buf *out, const seldon_model *model)
{
    Inference__ModelMetadataResponse r;
    sdn_arena a;
    char *versions[1];
    int rc = 0;
    if (out == NULL || model == NULL)
        return sdn_error(SELDON_EINVAL, "metadata_pb: NULL argument");
    sdn_arena_init(&a, NULL, 0);
    inference__model_metadata_response__init(&r);
    r.name = (char *)(uintptr_t)model->settings.name;
    if (model->settings.version[0]) {
        versions[0] = (char *)(uintptr_t)model->settings.version;
        r.n_versions = 1;
        r.versions = versions;
    }
    r.platform = (char *)(uintptr_t)platform_of(model);
    r.n_inputs = model->settings.inputs.n;
    r.inputs = pb_tensors(&a, &model->settings.inputs);
    r.n_outputs = model->settings.outputs.n;
    r.outputs = pb_tensors(&a, &model->settings.outputs);
    if (r.inputs == NULL || r.outputs == NULL)
        rc = sdn_error(SELDON_ENOMEM, "metadata: out of memory");
    if (rc == 0)
        rc = pack_into(out, &r.base);
    sdn_arena_release(&a);
    return rc;
}

int seldon_repo_index_json(seldon_buf *out, seldon_repo *repo, int32_t ready_only)
{
    sdn_arena a;
    index_row *rows = NULL;
    size_t n = 0, i, start;
    int rc;
    if (out == NULL || repo == NULL)
        return sdn_error(SELDON_EINVAL, "index_json: NULL argument");
    start = out->len;
    sdn_arena_init(&a, NULL, 0);
    rc = sdn_repo_index_rows(repo, ready_only, &a, &rows, &n);
    if (rc == 0)
        rc = sdn_jw_raw(out, "[", 1);
    for (i = 0; rc == 0 && i < n; i++) {
        rc = sdn_jw_raw(out, i ? ",{" : "{", i ? 2 : 1);
        if (rc == 0)
            rc = jw_key(out, "name", 1);
        if (rc == 0)
            rc = sdn_jw_string(out, rows[i].name, strlen(rows[i].name));
        if (rc == 0)
            rc = jw_key(out, "version", 0);
        if (rc == 0)
            rc = sdn_jw_string(out, rows[i].version, strlen(rows[i].version));
        if (rc == 0)
            rc = jw_key(out, "state", 0);
        if (rc == 0)
            rc = sdn_jw_string(out, rows[i].state, strlen(rows[i].state));
        if (rc == 0)
            rc = jw_key(out, "reason", 0);
        if (rc == 0)
            rc = sdn_jw_string(out, rows[i].reason, strlen(rows[i].reason));
        if (rc == 0)
            rc = sdn_jw_raw(out, "}", 1);
    }
    if (rc == 0)
        rc = sdn_jw_raw(out, "]", 1);
    if (rc < 0)
        out->len = start;
    sdn_arena_release(&a);
    return rc;
}

int seldon_repo_index_pb(seldon_buf *out, seldon_repo *repo, int32_t ready_only)
{
    typedef Inference__RepositoryIndexResponse__ModelIndex pb_index;
    Inference__RepositoryIndexResponse r;
    sdn_arena a;
    index_row *rows = NULL;
    pb_index **arr = NULL, *items;
    size_t n = 0, i;
    int rc;
    if (out == NULL || repo == NULL)
        return sdn_error(SELDON_EINVAL, "index_pb: NULL argument");
    sdn_arena_init(&a, NULL, 0);
    inference__repository_index_response__init(&r);
    rc = sdn_repo_index_rows(repo, ready_only, &a, &rows, &n);
    if (rc == 0) {
        arr = sdn_arena_alloc(&a, (n + 1) * (sizeof(pb_index *) + sizeof(pb_index)));
        if (arr == NULL)
            rc = sdn_error(SELDON_ENOMEM, "index: out of memory");
    }
    if (rc == 0) {
        items = (pb_index *)(void *)(arr + n + 1);
        for (i = 0; i < n; i++) {
            inference__repository_index_response__model_index__init(&items[i]);
            items[i].name = (char *)(uintptr_t)rows[i].name;
            items[i].version = (char *)(uintptr_t)rows[i].version;
            items[i].state = (char *)(uintptr_t)rows[i].state;
            items[i].reason = (char *)(uintptr_t)rows[i].reason;
            arr[i] = &items[i];
        }
        r.n_models = n;
        r.models = arr;
        rc = pack_into(out, &r.base);
    }
    sdn_arena_release(&a);
    return rc;
}
