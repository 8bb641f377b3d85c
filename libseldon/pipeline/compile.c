/*
 * The pipeline compiler: a Pipeline spec -> a validated, immutable graph.
 */
#include <stdio.h>
#include <string.h>

#include "pipeline/pl.h"

typedef struct pc_ctx {
    seldon_pipeline *p;
    const seldon_pipeline_spec *spec;
    seldon_pipeline_lookup_fn lookup;
    void *ud;
    const seldon_pipeline **dep_objs; /* parallel to p->deps */
    uint32_t deps_cap;
} pc_ctx;

static int perr(pc_ctx *c, const char *fmt, ...) SDN_PRINTF(2, 3);
static int perr(pc_ctx *c, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return sdn_error(SELDON_EINVAL, "pipeline \"%s\": %s", c->p->name, msg);
}

static int nomem(void)
{
    return sdn_error(SELDON_ENOMEM, "pipeline: out of memory");
}

/* Lowercase letters, digits, '-' and '_', starting and ending with a letter or digit. */
static int name_ok(const char *s)
{
    size_t i, len = s ? strlen(s) : 0;
    if (len == 0 || len > SELDON_MANIFEST_NAME_MAX)
        return 0;
    for (i = 0; i < len; i++) {
        char ch = s[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9'))
            continue;
        if (i == 0 || i == len - 1 || (ch != '-' && ch != '_'))
            return 0;
    }
    return 1;
}

static int join_type(int32_t *out, const char *s)
{
    if (s == NULL || strcmp(s, "inner") == 0 || s[0] == '\0')
        *out = PL_INNER;
    else if (strcmp(s, "outer") == 0)
        *out = PL_OUTER;
    else if (strcmp(s, "any") == 0)
        *out = PL_ANY;
    else
        return -1;
    return 0;
}

static char *dup(pc_ctx *c, const char *s, size_t len)
{
    return sdn_arena_strndup(&c->p->arena, s, len);
}

static int step_index(const seldon_pipeline *p, const char *s, size_t len)
{
    uint32_t i;
    for (i = 0; i < p->nsteps; i++)
        if (p->steps[i].name_len == len && memcmp(p->steps[i].name, s, len) == 0)
            return (int)i;
    return -1;
}

/* "inputs" / "outputs" -> stream kind for a step (or the pipeline); -1 otherwise. */
static int io_kind(const char *s, size_t len, int step)
{
    if (len == 6 && memcmp(s, "inputs", 6) == 0)
        return step ? PL_S_STEP_IN : PL_S_IN;
    if (len == 7 && memcmp(s, "outputs", 7) == 0)
        return step ? PL_S_STEP_OUT : PL_S_OUT;
    return -1;
}

static int set_canon(pc_ctx *c, pl_source *s, const char *ref, size_t len)
{
    s->canon = dup(c, ref, len);
    return s->canon ? 0 : nomem();
}

/* Splits ref at its first dot: *head = ref[0..dot), *rest = after it (NULL if no dot). */
static void split(const char *ref, size_t *head_len, const char **rest)
{
    const char *d = strchr(ref, '.');
    *head_len = d ? (size_t)(d - ref) : strlen(ref);
    *rest = d ? d + 1 : NULL;
}

/*
 * "<io>[.<tensor>]" after a step or pipeline name: fills stream and tensor,
 * and the canonical prefix as the text up to <io>.
 */
static int parse_io(pc_ctx *c, pl_source *s, const char *ref, const char *io, int step,
                    const char *field)
{
    size_t io_len;
    const char *tensor;
    split(io, &io_len, &tensor);
    s->stream = io_kind(io, io_len, step);
    if (s->stream < 0)
        return perr(c, "%s: \"%s\": expected \"inputs\" or \"outputs\" after \"%.*s\"", field, ref,
                    (int)(io - ref - 1), ref);
    if (tensor != NULL) {
        if (*tensor == '\0')
            return perr(c, "%s: \"%s\": empty tensor name", field, ref);
        s->tensor = dup(c, tensor, strlen(tensor));
        if (s->tensor == NULL)
            return nomem();
        s->tensor_len = (uint32_t)strlen(tensor);
    }
    return set_canon(c, s, ref, (size_t)(io - ref) + io_len);
}

/* A reference inside the pipeline: <step|pipeline>[.<inputs|outputs>[.<tensor>]]. */
static int parse_ref(pc_ctx *c, pl_source *s, const char *ref, const char *field)
{
    size_t head;
    const char *rest;
    int idx;
    char canon[SELDON_MANIFEST_NAME_MAX + 16];

    memset(s, 0, sizeof(*s));
    s->pipe = -1;
    s->step = -1;
    if (ref == NULL || *ref == '\0')
        return perr(c, "%s: empty reference", field);
    split(ref, &head, &rest);
    if (head == c->p->name_len && memcmp(ref, c->p->name, head) == 0) {
        if (rest == NULL) { /* bare pipeline = its inputs */
            s->stream = PL_S_IN;
            snprintf(canon, sizeof(canon), "%s.inputs", c->p->name);
            return set_canon(c, s, canon, strlen(canon));
        }
        if (parse_io(c, s, ref, rest, 0, field) < 0)
            return -1;
        if (s->stream == PL_S_OUT)
            return perr(c, "%s: \"%s\": a step cannot read its own pipeline's outputs", field, ref);
        return 0;
    }
    idx = step_index(c->p, ref, head);
    if (idx < 0)
        return perr(c, "%s: unknown step \"%.*s\"", field, (int)head, ref);
    s->step = idx;
    if (rest == NULL) { /* bare step = its outputs */
        s->stream = PL_S_STEP_OUT;
        snprintf(canon, sizeof(canon), "%.*s.outputs", (int)head, ref);
        return set_canon(c, s, canon, strlen(canon));
    }
    return parse_io(c, s, ref, rest, 1, field);
}

static int add_dep(pc_ctx *c, const char *name, size_t len, const seldon_pipeline *obj)
{
    uint32_t i;
    seldon_pipeline *p = c->p;
    for (i = 0; i < p->ndeps; i++)
        if (strlen(p->deps[i]) == len && memcmp(p->deps[i], name, len) == 0)
            return (int)i;
    if (p->ndeps == c->deps_cap) {
        uint32_t cap = c->deps_cap ? c->deps_cap * 2 : 4;
        void *a =
            sdn_arena_grow(&p->arena, p->deps, c->deps_cap * sizeof(char *), cap * sizeof(char *));
        void *b = sdn_realloc(c->dep_objs, cap * sizeof(*c->dep_objs));
        if (a == NULL || b == NULL) {
            if (b != NULL)
                c->dep_objs = b;
            return nomem();
        }
        p->deps = a;
        c->dep_objs = b;
        c->deps_cap = cap;
    }
    p->deps[p->ndeps] = dup(c, name, len);
    if (p->deps[p->ndeps] == NULL)
        return nomem();
    c->dep_objs[p->ndeps] = obj;
    return (int)p->ndeps++;
}

/*
 * An external reference: <pipeline>[.<inputs|outputs>[.<tensor>]] (bare:
 * its outputs) or <pipeline>.step.<step>[.<inputs|outputs>[.<tensor>]].
 */
static int parse_external(pc_ctx *c, pl_source *s, const char *ref, const char *field)
{
    size_t head, shead;
    const char *rest, *srest;
    const seldon_pipeline *q = NULL;
    char name[SELDON_MANIFEST_NAME_MAX + 1];
    char canon[2 * SELDON_MANIFEST_NAME_MAX + 32];
    int dep, idx;

    memset(s, 0, sizeof(*s));
    s->step = -1;
    if (ref == NULL || *ref == '\0')
        return perr(c, "%s: empty reference", field);
    split(ref, &head, &rest);
    if (head == 0 || head > SELDON_MANIFEST_NAME_MAX)
        return perr(c, "%s: \"%s\": bad pipeline name", field, ref);
    memcpy(name, ref, head);
    name[head] = '\0';
    if (head == c->p->name_len && memcmp(ref, c->p->name, head) == 0)
        return perr(c, "%s: \"%s\": a pipeline cannot read itself", field, ref);
    if (c->lookup == NULL || c->lookup(&q, c->ud, name) != 0 || q == NULL)
        return perr(c, "%s: unknown pipeline \"%s\"", field, name);
    dep = add_dep(c, name, head, q);
    if (dep < 0)
        return dep;
    s->pipe = dep;
    if (rest == NULL) {
        s->stream = PL_S_OUT;
        snprintf(canon, sizeof(canon), "%s.outputs", name);
        return set_canon(c, s, canon, strlen(canon));
    }
    if (strncmp(rest, "step.", 5) == 0) {
        split(rest + 5, &shead, &srest);
        idx = step_index(q, rest + 5, shead);
        if (idx < 0)
            return perr(c, "%s: pipeline \"%s\" has no step \"%.*s\"", field, name, (int)shead,
                        rest + 5);
        s->step = idx;
        s->step_name = q->steps[idx].name;
        s->step_name = dup(c, s->step_name, strlen(s->step_name));
        if (s->step_name == NULL)
            return nomem();
        if (srest == NULL) {
            s->stream = PL_S_STEP_OUT;
            snprintf(canon, sizeof(canon), "%s.step.%.*s.outputs", name, (int)shead, rest + 5);
            return set_canon(c, s, canon, strlen(canon));
        }
        return parse_io(c, s, ref, srest, 1, field);
    }
    return parse_io(c, s, ref, rest, 0, field);
}

static int same_source(const pl_source *a, const pl_source *b)
{
    if (a->pipe != b->pipe || a->stream != b->stream || a->step != b->step)
        return 0;
    if ((a->tensor == NULL) != (b->tensor == NULL))
        return 0;
    return a->tensor == NULL || strcmp(a->tensor, b->tensor) == 0;
}

/* Parses refs[0..n) into j (allocating its sources). */
static int parse_list(pc_ctx *c, pl_join *j, const char *const *refs, size_t n, int external,
                      const char *what)
{
    size_t i;
    char field[128];
    if (n > SELDON_PIPELINE_MAX_SOURCES)
        return perr(c, "%s: %zu entries, at most %d", what, n, SELDON_PIPELINE_MAX_SOURCES);
    j->n = (uint32_t)n;
    if (n == 0)
        return 0;
    j->src = sdn_arena_calloc(&c->p->arena, n * sizeof(pl_source));
    if (j->src == NULL)
        return nomem();
    for (i = 0; i < n; i++) {
        snprintf(field, sizeof(field), "%s[%zu]", what, i);
        if ((external ? parse_external(c, &j->src[i], refs[i], field)
                      : parse_ref(c, &j->src[i], refs[i], field)) < 0)
            return -1;
    }
    return 0;
}

/*
 * Applies a tensorMap: each key "<canon>.<tensor>" renames that tensor in the
 * sources reading <canon> (all their tensors, or that one).
 */
static int apply_map(pc_ctx *c, pl_join *j, const seldon_kv *map, size_t n, const char *what)
{
    size_t k;
    uint32_t i;
    for (k = 0; k < n; k++) {
        const char *key = map[k].name, *to = map[k].value;
        int matched = 0;
        if (key == NULL || to == NULL || *to == '\0')
            return perr(c, "%s[\"%s\"]: empty name", what, key ? key : "");
        for (i = 0; i < j->n; i++) {
            pl_source *s = &j->src[i];
            size_t cl = strlen(s->canon);
            const char *t;
            pl_rename *r;
            if (strncmp(key, s->canon, cl) != 0 || key[cl] != '.' || key[cl + 1] == '\0')
                continue;
            t = key + cl + 1;
            if (s->tensor != NULL && strcmp(s->tensor, t) != 0)
                continue;
            r = sdn_arena_grow(&c->p->arena, s->renames, s->nrenames * sizeof(pl_rename),
                               (s->nrenames + 1) * sizeof(pl_rename));
            if (r == NULL)
                return nomem();
            s->renames = r;
            r = &r[s->nrenames++];
            r->from = dup(c, t, strlen(t));
            r->to = dup(c, to, strlen(to));
            if (r->from == NULL || r->to == NULL)
                return nomem();
            r->from_len = (uint32_t)strlen(t);
            r->to_len = (uint32_t)strlen(to);
            matched = 1;
        }
        if (!matched)
            return perr(c, "%s[\"%s\"]: no source of this join reads it", what, key);
    }
    return 0;
}

static int64_t window_ns(int64_t ms)
{
    if (ms < 0)
        ms = SELDON_PIPELINE_JOIN_WINDOW_MS;
    return ms * 1000000;
}

/* Whether the tensors a step sends its model are known (every input names one tensor). */
static int known_input(const pl_step *st, const char *t, int *known)
{
    uint32_t i, r;
    *known = 1;
    for (i = 0; i < st->inputs.n; i++)
        if (st->inputs.src[i].tensor == NULL) {
            *known = 0;
            return 0;
        }
    for (i = 0; i < st->inputs.n; i++) {
        const pl_source *s = &st->inputs.src[i];
        const char *name = s->tensor;
        for (r = 0; r < s->nrenames; r++)
            if (strcmp(s->renames[r].from, s->tensor) == 0)
                name = s->renames[r].to;
        if (strcmp(name, t) == 0)
            return 1;
    }
    return 0;
}

static int check_known(pc_ctx *c, const pl_join *j, const char *what)
{
    uint32_t i;
    for (i = 0; i < j->n; i++) {
        const pl_source *s = &j->src[i];
        int known;
        if (s->pipe != -1 || s->stream != PL_S_STEP_IN || s->tensor == NULL)
            continue;
        if (!known_input(&c->p->steps[s->step], s->tensor, &known) && known)
            return perr(c, "%s[%u]: step \"%s\" has no input tensor \"%s\"", what, i,
                        c->p->steps[s->step].name, s->tensor);
    }
    return 0;
}

/* Cycle search: 0 white, 1 on the stack, 2 done. */
static int dfs(const seldon_pipeline *p, uint32_t v, uint8_t *mark, uint32_t *stack, uint32_t depth,
               uint32_t *cyc_from, uint32_t *cyc_depth)
{
    uint32_t w, k, i;
    mark[v] = 1;
    stack[depth] = v;
    for (w = 0; w < p->nsteps; w++) {
        const pl_step *st = &p->steps[w];
        int edge = 0;
        for (k = 0; k < 2 && !edge; k++) {
            const pl_join *j = k ? &st->triggers : &st->inputs;
            for (i = 0; i < j->n; i++)
                if (j->src[i].pipe == -1 && j->src[i].step == (int32_t)v)
                    edge = 1;
        }
        if (!edge)
            continue;
        if (mark[w] == 1) {
            for (i = 0; i <= depth; i++)
                if (stack[i] == w)
                    *cyc_from = i;
            *cyc_depth = depth;
            return 1;
        }
        if (mark[w] == 0 && dfs(p, w, mark, stack, depth + 1, cyc_from, cyc_depth))
            return 1;
    }
    mark[v] = 2;
    return 0;
}

static int check_cycles(pc_ctx *c)
{
    seldon_pipeline *p = c->p;
    uint8_t *mark = sdn_calloc(p->nsteps ? p->nsteps : 1, 1);
    uint32_t *stack = sdn_calloc(p->nsteps ? p->nsteps : 1, sizeof(uint32_t));
    uint32_t v, from = 0, depth = 0, i;
    int rc = 0, found = 0;
    char text[512];
    size_t n = 0;

    if (mark == NULL || stack == NULL) {
        rc = nomem();
        goto out;
    }
    for (v = 0; v < p->nsteps && !found; v++)
        if (mark[v] == 0)
            found = dfs(p, v, mark, stack, 0, &from, &depth);
    if (!found)
        goto out;
    p->has_cycles = 1;
    if (c->spec->allow_cycles) {
        p->max_revisits = c->spec->max_step_revisits > 0 ? c->spec->max_step_revisits
                                                         : SELDON_PIPELINE_MAX_REVISITS;
        goto out;
    }
    text[0] = '\0';
    for (i = from; i <= depth && n < sizeof(text); i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "%s -> ", p->steps[stack[i]].name);
    if (n < sizeof(text))
        snprintf(text + n, sizeof(text) - n, "%s", p->steps[stack[from]].name);
    rc = perr(c, "spec.steps: a cycle (%s): set allowCycles to run it", text);
out:
    sdn_free(mark);
    sdn_free(stack);
    return rc;
}

static int compile_step(pc_ctx *c, size_t i)
{
    const seldon_pipeline_step *ss = &c->spec->steps[i];
    pl_step *st = &c->p->steps[i];
    char what[96];
    uint32_t a, b;

    snprintf(what, sizeof(what), "spec.steps[%zu].inputs", i);
    if (ss->inputs_count == 0) {
        /* No inputs: the pipeline's inputs, all of them. */
        const char *ref = c->p->name;
        if (parse_list(c, &st->inputs, &ref, 1, 0, what) < 0)
            return -1;
    } else if (parse_list(c, &st->inputs, ss->inputs, ss->inputs_count, 0, what) < 0) {
        return -1;
    }
    snprintf(what, sizeof(what), "spec.steps[%zu].triggers", i);
    if (parse_list(c, &st->triggers, ss->triggers, ss->triggers_count, 0, what) < 0)
        return -1;
    for (b = 0; b < st->triggers.n; b++)
        for (a = 0; a < st->inputs.n; a++)
            if (same_source(&st->inputs.src[a], &st->triggers.src[b]))
                return perr(c,
                            "spec.steps[%zu].triggers[%u]: \"%s\" is also an input of step "
                            "\"%s\": a source is either an input or a trigger",
                            i, b, ss->triggers[b], st->name);
    if (join_type(&st->inputs.type, ss->inputs_join_type) < 0)
        return perr(c, "spec.steps[%zu].inputsJoinType: \"%s\": expected inner, outer or any", i,
                    ss->inputs_join_type);
    if (join_type(&st->triggers.type, ss->triggers_join_type) < 0)
        return perr(c, "spec.steps[%zu].triggersJoinType: \"%s\": expected inner, outer or any", i,
                    ss->triggers_join_type);
    st->inputs.window_ns = st->triggers.window_ns = window_ns(ss->join_window_ms);
    snprintf(what, sizeof(what), "spec.steps[%zu].tensorMap", i);
    if (apply_map(c, &st->inputs, ss->tensor_map, ss->tensor_map_count, what) < 0)
        return -1;
    if (ss->batch.size < 0 || ss->batch.window_ms < 0)
        return perr(c, "spec.steps[%zu].batch: size and windowMs must be >= 0", i);
    if (ss->batch.rolling && ss->batch.size == 0 && ss->batch.window_ms == 0)
        return perr(c,
                    "spec.steps[%zu].batch.rolling: a rolling batch needs batch.size or "
                    "batch.windowMs",
                    i);
    st->batch_size = ss->batch.size;
    st->batch_window_ns = ss->batch.window_ms * 1000000;
    st->batch_rolling = ss->batch.rolling != 0;
    return 0;
}

static int compile(pc_ctx *c)
{
    const seldon_pipeline_spec *spec = c->spec;
    seldon_pipeline *p = c->p;
    size_t i, k;
    char what[96];

    if (spec->steps_count > SELDON_PIPELINE_MAX_STEPS)
        return perr(c, "spec.steps: %zu steps, at most %d", spec->steps_count,
                    SELDON_PIPELINE_MAX_STEPS);
    if (spec->steps_count == 0)
        return perr(c, "spec.steps: a pipeline needs at least one step");
    if (spec->timeout_ms < 0 || spec->timeout_ms > UINT32_MAX)
        return perr(c, "spec.timeoutMs: %lld is out of range (1 to 4294967295, 0: absent)",
                    (long long)spec->timeout_ms);
    p->timeout_ms = spec->timeout_ms;
    p->steps = sdn_arena_calloc(&p->arena, spec->steps_count * sizeof(pl_step));
    if (p->steps == NULL)
        return nomem();
    for (i = 0; i < spec->steps_count; i++) {
        const char *n = spec->steps[i].name;
        if (!name_ok(n))
            return perr(c,
                        "spec.steps[%zu].name: \"%s\" is not a valid name: use lowercase "
                        "letters, digits, '-' and '_', starting and ending with a letter or digit",
                        i, n ? n : "");
        if (strcmp(n, p->name) == 0)
            return perr(c, "spec.steps[%zu].name: a step cannot be named after its pipeline", i);
        for (k = 0; k < i; k++)
            if (strcmp(spec->steps[k].name, n) == 0)
                return perr(c, "spec.steps[%zu].name: duplicate step \"%s\" (also spec.steps[%zu])",
                            i, n, k);
        p->steps[i].name = dup(c, n, strlen(n));
        if (p->steps[i].name == NULL)
            return nomem();
        p->steps[i].name_len = (uint32_t)strlen(n);
    }
    p->nsteps = (uint32_t)spec->steps_count;
    for (i = 0; i < spec->steps_count; i++)
        if (compile_step(c, i) < 0)
            return -1;
    for (i = 0; i < spec->steps_count; i++) {
        snprintf(what, sizeof(what), "spec.steps[%zu].inputs", i);
        if (check_known(c, &p->steps[i].inputs, what) < 0)
            return -1;
        snprintf(what, sizeof(what), "spec.steps[%zu].triggers", i);
        if (check_known(c, &p->steps[i].triggers, what) < 0)
            return -1;
    }
    if (check_cycles(c) < 0)
        return -1;

    /* spec.output: by default, the last step's outputs. */
    if (spec->output_steps_count == 0) {
        const char *ref = p->steps[p->nsteps - 1].name;
        if (parse_list(c, &p->output, &ref, 1, 0, "spec.output.steps") < 0)
            return -1;
    } else if (parse_list(c, &p->output, spec->output_steps, spec->output_steps_count, 0,
                          "spec.output.steps") < 0) {
        return -1;
    }
    for (i = 0; i < p->output.n; i++)
        if (p->output.src[i].step < 0)
            return perr(c, "spec.output.steps[%zu]: \"%s\": the output reads steps", i,
                        spec->output_steps[i]);
    if (join_type(&p->output.type, spec->output_steps_join) < 0)
        return perr(c, "spec.output.stepsJoin: \"%s\": expected inner, outer or any",
                    spec->output_steps_join);
    p->output.window_ns = window_ns(spec->output_join_window_ms);
    if (apply_map(c, &p->output, spec->output_tensor_map, spec->output_tensor_map_count,
                  "spec.output.tensorMap") < 0)
        return -1;
    if (check_known(c, &p->output, "spec.output.steps") < 0)
        return -1;

    /* spec.input: other pipelines feeding this one. */
    if (parse_list(c, &p->input, spec->external_inputs, spec->external_inputs_count, 1,
                   "spec.input.externalInputs") < 0)
        return -1;
    if (parse_list(c, &p->input_triggers, spec->external_triggers, spec->external_triggers_count, 1,
                   "spec.input.externalTriggers") < 0)
        return -1;
    for (k = 0; k < p->input_triggers.n; k++)
        for (i = 0; i < p->input.n; i++)
            if (same_source(&p->input.src[i], &p->input_triggers.src[k]))
                return perr(c,
                            "spec.input.externalTriggers[%zu]: \"%s\" is also an external "
                            "input: a source is either an input or a trigger",
                            k, spec->external_triggers[k]);
    if (p->input.n == 0 && p->input_triggers.n > 0)
        return perr(c, "spec.input.externalTriggers: triggers need externalInputs");
    if (join_type(&p->input.type, spec->input_join_type) < 0)
        return perr(c, "spec.input.joinType: \"%s\": expected inner, outer or any",
                    spec->input_join_type);
    if (join_type(&p->input_triggers.type, spec->input_triggers_join_type) < 0)
        return perr(c, "spec.input.triggersJoinType: \"%s\": expected inner, outer or any",
                    spec->input_triggers_join_type);
    p->input.window_ns = p->input_triggers.window_ns = window_ns(spec->input_join_window_ms);
    if (spec->input_tensor_map_count > 0 && p->input.n == 0)
        return perr(c, "spec.input.tensorMap: it renames external inputs, and there are none");
    if (apply_map(c, &p->input, spec->input_tensor_map, spec->input_tensor_map_count,
                  "spec.input.tensorMap") < 0)
        return -1;
    for (i = 0; i < p->input.n; i++) {
        const pl_source *s = &p->input.src[i];
        const seldon_pipeline *q = c->dep_objs[s->pipe];
        int known;
        if (s->stream == PL_S_STEP_IN && s->tensor != NULL &&
            !known_input(&q->steps[s->step], s->tensor, &known) && known)
            return perr(c,
                        "spec.input.externalInputs[%zu]: step \"%s\" of pipeline \"%s\" has no "
                        "input tensor \"%s\"",
                        i, q->steps[s->step].name, q->name, s->tensor);
    }
    return 0;
}

int seldon_pipeline_compile(seldon_pipeline **out, const char *name,
                            const seldon_pipeline_spec *spec, seldon_pipeline_lookup_fn lookup,
                            void *user_data)
{
    pc_ctx c;
    seldon_pipeline *p;
    int rc;

    if (out == NULL || name == NULL || spec == NULL)
        return sdn_error(SELDON_EINVAL, "pipeline_compile: NULL argument");
    *out = NULL;
    if (!name_ok(name))
        return sdn_error(SELDON_EINVAL,
                         "pipeline \"%.200s\": metadata.name: not a valid name: use lowercase "
                         "letters, digits, '-' and '_', starting and ending with a letter or digit",
                         name);
    p = sdn_calloc(1, sizeof(*p));
    if (p == NULL)
        return nomem();
    sdn_arena_init(&p->arena, NULL, 0);
    atomic_init(&p->refs, 1);
    memset(&c, 0, sizeof(c));
    c.p = p;
    c.spec = spec;
    c.lookup = lookup;
    c.ud = user_data;
    p->name = sdn_arena_strndup(&p->arena, name, strlen(name));
    if (p->name == NULL) {
        rc = nomem();
        goto out;
    }
    p->name_len = (uint32_t)strlen(name);
    rc = compile(&c);
    if (rc < 0)
        rc = seldon_last_error_code() ? seldon_last_error_code() : SELDON_EINVAL;
out:
    sdn_free(c.dep_objs);
    if (rc < 0) {
        seldon_pipeline_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

void seldon_pipeline_free(seldon_pipeline *pipeline)
{
    if (pipeline == NULL || atomic_fetch_sub(&pipeline->refs, 1) > 1)
        return;
    sdn_arena_release(&pipeline->arena);
    sdn_free(pipeline);
}

const char *seldon_pipeline_name(const seldon_pipeline *pipeline)
{
    return pipeline ? pipeline->name : NULL;
}

size_t seldon_pipeline_step_count(const seldon_pipeline *pipeline)
{
    return pipeline ? pipeline->nsteps : 0;
}

const char *seldon_pipeline_step_name(const seldon_pipeline *pipeline, size_t i)
{
    return pipeline && i < pipeline->nsteps ? pipeline->steps[i].name : NULL;
}

int64_t seldon_pipeline_timeout_ms(const seldon_pipeline *pipeline)
{
    return pipeline ? pipeline->timeout_ms : 0;
}

size_t seldon_pipeline_dependency_count(const seldon_pipeline *pipeline)
{
    return pipeline ? pipeline->ndeps : 0;
}

const char *seldon_pipeline_dependency(const seldon_pipeline *pipeline, size_t i)
{
    return pipeline && i < pipeline->ndeps ? pipeline->deps[i] : NULL;
}

static const char *const type_names[] = {"inner", "outer", "any"};

static int put(seldon_buf *b, const char *s)
{
    return sdn_buf_append(b, s, strlen(s));
}

static int describe_join(seldon_buf *b, const seldon_pipeline *p, const pl_join *j)
{
    uint32_t i, r;
    char tmp[64];
    int rc = 0;
    rc |= put(b, "[");
    for (i = 0; i < j->n; i++) {
        const pl_source *s = &j->src[i];
        if (i)
            rc |= put(b, ", ");
        rc |= put(b, s->canon);
        if (s->tensor) {
            rc |= put(b, ".");
            rc |= put(b, s->tensor);
        }
        for (r = 0; r < s->nrenames; r++) {
            rc |= put(b, r ? "," : " {");
            rc |= put(b, s->renames[r].from);
            rc |= put(b, "->");
            rc |= put(b, s->renames[r].to);
        }
        if (s->nrenames)
            rc |= put(b, "}");
    }
    snprintf(tmp, sizeof(tmp), "] %s %lldms", type_names[j->type],
             (long long)(j->window_ns / 1000000));
    rc |= put(b, tmp);
    (void)p;
    return rc;
}

int seldon_pipeline_describe(seldon_buf *out, const seldon_pipeline *pipeline)
{
    uint32_t i;
    int rc = 0;
    const seldon_pipeline *p = pipeline;
    if (out == NULL || p == NULL)
        return sdn_error(SELDON_EINVAL, "pipeline_describe: NULL argument");
    rc |= put(out, p->name);
    rc |= put(out, ":");
    for (i = 0; i < p->nsteps; i++) {
        rc |= put(out, " step ");
        rc |= put(out, p->steps[i].name);
        rc |= put(out, " <- ");
        rc |= describe_join(out, p, &p->steps[i].inputs);
        if (p->steps[i].triggers.n) {
            rc |= put(out, " triggers ");
            rc |= describe_join(out, p, &p->steps[i].triggers);
        }
        if (p->steps[i].batch_size > 0 || p->steps[i].batch_window_ns > 0) {
            char tmp[96];
            snprintf(tmp, sizeof(tmp), " batch %d rows %lldms%s", p->steps[i].batch_size,
                     (long long)(p->steps[i].batch_window_ns / 1000000),
                     p->steps[i].batch_rolling ? " rolling" : "");
            rc |= put(out, tmp);
        }
        rc |= put(out, ";");
    }
    if (p->input.n) {
        rc |= put(out, " input <- ");
        rc |= describe_join(out, p, &p->input);
        rc |= put(out, ";");
    }
    rc |= put(out, " output <- ");
    rc |= describe_join(out, p, &p->output);
    if (p->timeout_ms > 0) {
        char tmp[48];
        snprintf(tmp, sizeof(tmp), "; timeout %lldms", (long long)p->timeout_ms);
        rc |= put(out, tmp);
    }
    return rc ? sdn_error(SELDON_ENOMEM, "pipeline_describe: out of memory") : 0;
}
