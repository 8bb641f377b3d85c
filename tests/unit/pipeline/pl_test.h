/* Helpers for the pipeline tests: specs from YAML, fake models, a fake clock. */
#ifndef PL_TEST_H
#define PL_TEST_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "seldon/seldon.h"

#define MS 1000000LL
#define T0 (1000 * MS)
/* A Pipeline manifest up to its name. */
#define HEAD "apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata:\n  name: "

static const float V4[4] = {1, 2, 3, 4};

/* Parses YAML holding Pipeline documents; keeps the manifest for the specs' lifetime. */
typedef struct pl_set {
    seldon_manifest *m[8];
    size_t nm;
    seldon_pipeline *p[8];
    size_t np;
} pl_set;

static inline int pl_lookup(const seldon_pipeline **out, void *ud, const char *name)
{
    pl_set *s = ud;
    size_t i;
    for (i = 0; i < s->np; i++)
        if (strcmp(seldon_pipeline_name(s->p[i]), name) == 0) {
            *out = s->p[i];
            return 0;
        }
    return SELDON_ENOTFOUND;
}

/* Compiles every pipeline in yaml (in order) into s; returns the first error code. */
static inline int pl_add(pl_set *s, const char *yaml)
{
    seldon_manifest *m = NULL;
    size_t i;
    int rc = seldon_manifest_parse(&m, yaml, strlen(yaml), "test.yaml");
    if (rc < 0)
        return rc;
    s->m[s->nm++] = m;
    for (i = 0; i < seldon_manifest_count(m); i++) {
        const seldon_resource *r = seldon_manifest_at(m, i);
        if (r->kind != SELDON_KIND_PIPELINE)
            continue;
        rc = seldon_pipeline_compile(&s->p[s->np], r->name, &r->spec.pipeline, pl_lookup, s);
        if (rc < 0)
            return rc;
        s->np++;
    }
    return 0;
}

static inline void pl_set_free(pl_set *s)
{
    size_t i;
    for (i = 0; i < s->np; i++)
        seldon_pipeline_free(s->p[i]);
    for (i = 0; i < s->nm; i++)
        seldon_manifest_free(s->m[i]);
    memset(s, 0, sizeof(*s));
}

/* Compiles one YAML pipeline and returns the error text ("" on success). */
static inline const char *compile_err(const char *yaml)
{
    static char buf[1024];
    pl_set s = {0};
    int rc = pl_add(&s, yaml);
    snprintf(buf, sizeof(buf), "%s", rc < 0 ? seldon_last_error() : "");
    pl_set_free(&s);
    return buf;
}

/* ---- messages ---- */

static inline void add_f32(seldon_msg *m, const char *name, const float *v, int64_t n)
{
    int64_t shape[1] = {n};
    cr_assert_eq(seldon_msg_add_tensor(NULL, m, name, strlen(name), SELDON_DT_FP32, shape, 1, v,
                                       (size_t)n * 4, SELDON_TENSOR_COPY),
                 0);
}

static inline void add_i32(seldon_msg *m, const char *name, const int32_t *v, int64_t d0,
                           int64_t d1)
{
    int64_t shape[2] = {d0, d1};
    cr_assert_eq(seldon_msg_add_tensor(NULL, m, name, strlen(name), SELDON_DT_INT32, shape, 2, v,
                                       (size_t)(d0 * d1) * 4, SELDON_TENSOR_COPY),
                 0);
}

static inline int has_tensor(const seldon_msg *m, const char *name, seldon_tensor *t)
{
    size_t i;
    if (seldon_msg_find_tensor(&i, m, name, strlen(name)) < 0)
        return 0;
    if (t)
        seldon_msg_tensor(t, m, i);
    return 1;
}

static inline const float *f32(const seldon_msg *m, const char *name)
{
    seldon_tensor t;
    cr_assert(has_tensor(m, name, &t), "no tensor %s", name);
    cr_assert_eq(t.datatype, SELDON_DT_FP32);
    return t.data;
}

static inline const int32_t *i32(const seldon_msg *m, const char *name)
{
    seldon_tensor t;
    cr_assert(has_tensor(m, name, &t), "no tensor %s", name);
    cr_assert_eq(t.datatype, SELDON_DT_INT32);
    return t.data;
}

/* ---- fake models (as the scenarios describe them) ---- */

/* Answers a call with a response computed by model name; returns 0, or an error text. */
static inline const char *fake_model(seldon_pipeline_engine *e, const char *model,
                                     const seldon_msg *in, seldon_msg *out)
{
    seldon_tensor t, u;
    size_t i;
    (void)e;
    if (strstr(model, "tfsimple")) {
        int32_t a[64], b[64];
        if (!has_tensor(in, "INPUT0", &t) || !has_tensor(in, "INPUT1", &u))
            return "missing INPUT0/INPUT1";
        if (t.ndim != 2 || t.shape[1] != 16)
            return "unexpected shape for input 'INPUT0'";
        for (i = 0; i < t.count && i < 64; i++) {
            a[i] = ((const int32_t *)t.data)[i] + ((const int32_t *)u.data)[i];
            b[i] = ((const int32_t *)t.data)[i] - ((const int32_t *)u.data)[i];
        }
        add_i32(out, "OUTPUT0", a, t.shape[0], 16);
        add_i32(out, "OUTPUT1", b, t.shape[0], 16);
        return NULL;
    }
    if (strstr(model, "add10") || strstr(model, "mul10") || strstr(model, "identity")) {
        float v[256];
        if (!has_tensor(in, "INPUT", &t))
            return "missing INPUT";
        for (i = 0; i < t.count && i < 256; i++) {
            float x = ((const float *)t.data)[i];
            v[i] = strstr(model, "add10") ? x + 10 : strstr(model, "mul10") ? x * 10 : x;
        }
        {
            int64_t shape[4];
            uint32_t d;
            for (d = 0; d < t.ndim; d++)
                shape[d] = t.shape[d];
            cr_assert_eq(seldon_msg_add_tensor(NULL, out, "OUTPUT", 6, SELDON_DT_FP32, shape,
                                               t.ndim, v, t.count * 4, SELDON_TENSOR_COPY),
                         0);
        }
        return NULL;
    }
    if (strstr(model, "conditional")) {
        if (!has_tensor(in, "CHOICE", &t))
            return "missing CHOICE";
        if (((const int32_t *)t.data)[0] == 0) {
            cr_assert(has_tensor(in, "INPUT0", &u));
            add_f32(out, "OUTPUT0", u.data, (int64_t)u.count);
        } else {
            cr_assert(has_tensor(in, "INPUT1", &u));
            add_f32(out, "OUTPUT1", u.data, (int64_t)u.count);
        }
        return NULL;
    }
    if (strstr(model, "join_node")) {
        int64_t a, b, shape[1] = {1};
        if (!has_tensor(in, "INPUT1", &t) || !has_tensor(in, "INPUT2", &u))
            return "missing INPUT1/INPUT2";
        a = ((const int64_t *)t.data)[0];
        b = ((const int64_t *)u.data)[0];
        a += b;
        cr_assert_eq(seldon_msg_add_tensor(NULL, out, "OUTPUT1", 7, SELDON_DT_INT64, shape, 1, &a,
                                           8, SELDON_TENSOR_COPY),
                     0);
        return NULL;
    }
    if (strstr(model, "id")) { /* id1_node, id2_node: INPUT1 -> OUTPUT1 */
        if (!has_tensor(in, "INPUT1", &t))
            return "missing INPUT1";
        cr_assert_eq(seldon_msg_add_tensor(NULL, out, "OUTPUT1", 7, t.datatype, t.shape, t.ndim,
                                           t.data, t.nbytes, SELDON_TENSOR_COPY),
                     0);
        return NULL;
    }
    if (strstr(model, "fail"))
        return "model exploded";
    return "unknown fake model";
}

/*
 * Runs the engine until no call is left: every call answered by fake_model.
 * Records the models called (space separated) in calls, and the last output
 * and error. Returns the number of outputs.
 */
typedef struct run_result {
    char calls[1024];
    int outputs;
    int errors;
    char error[1024];
    int32_t error_kind;
    seldon_msg *out; /* a copy of the last output */
    char out_id[64];
} run_result;

static inline seldon_msg *msg_copy(const seldon_msg *m)
{
    seldon_msg *c = NULL;
    size_t i;
    cr_assert_eq(seldon_msg_new(&c, SELDON_MSG_RESPONSE), 0);
    for (i = 0; i < seldon_msg_tensor_count(m); i++) {
        seldon_tensor t;
        seldon_msg_tensor(&t, m, i);
        cr_assert_eq(seldon_msg_add_tensor(NULL, c, t.name, t.name_len, t.datatype, t.shape, t.ndim,
                                           t.data, t.nbytes, SELDON_TENSOR_COPY),
                     0);
    }
    return c;
}

static inline void drain(seldon_pipeline_engine *e, run_result *r, int64_t now, int answer)
{
    seldon_pipeline_event ev;
    uint64_t pend[1024];
    const char *pend_model[1024];
    const seldon_msg *pend_msg[1024];
    size_t np = 0, i;
    for (;;) {
        np = 0;
        while (seldon_pipeline_engine_poll(&ev, e) == 1) {
            if (ev.kind == SELDON_PIPELINE_EVENT_CALL) {
                cr_assert_lt(np, 1024, "too many calls at once for the test");
                if (strlen(r->calls) + strlen(ev.model) + 2 < sizeof(r->calls)) {
                    strcat(r->calls, ev.model);
                    strcat(r->calls, " ");
                }
                pend[np] = ev.call_id;
                pend_model[np] = ev.model;
                pend_msg[np++] = ev.msg;
            } else if (ev.kind == SELDON_PIPELINE_EVENT_OUTPUT) {
                r->outputs++;
                seldon_msg_free(r->out);
                r->out = msg_copy(ev.msg);
                snprintf(r->out_id, sizeof(r->out_id), "%.*s", (int)ev.request_id_len,
                         ev.request_id);
            } else {
                r->errors++;
                r->error_kind = ev.error_kind;
                snprintf(r->error, sizeof(r->error), "%s", ev.error);
            }
        }
        if (np == 0 || !answer)
            return;
        for (i = 0; i < np; i++) {
            seldon_msg *resp = seldon_pipeline_engine_msg(e, SELDON_MSG_RESPONSE);
            const char *err = fake_model(e, pend_model[i], pend_msg[i], resp);
            if (err) {
                seldon_msg_free(resp);
                cr_assert_eq(seldon_pipeline_engine_fail(e, pend[i], err, now), 0);
            } else {
                cr_assert_eq(seldon_pipeline_engine_answer(e, pend[i], resp, now), 0);
            }
        }
    }
}

static inline void run_free(run_result *r)
{
    seldon_msg_free(r->out);
    r->out = NULL;
}

static inline seldon_msg *req_msg(seldon_pipeline_engine *e)
{
    return seldon_pipeline_engine_msg(e, SELDON_MSG_REQUEST);
}

/* A request with one FP32 tensor name holding V4. */
static inline seldon_msg *input(seldon_pipeline_engine *e, const char *name)
{
    seldon_msg *m = req_msg(e);
    add_f32(m, name, V4, 4);
    return m;
}

static inline void push(seldon_pipeline_engine *e, const char *pipe, const char *id, seldon_msg *m,
                        int64_t now)
{
    cr_assert_eq(seldon_pipeline_engine_push(e, pipe, id, strlen(id), NULL, 0, m, 0, now), 0, "%s",
                 seldon_last_error());
}

static inline seldon_pipeline_engine *engine_of(pl_set *s)
{
    seldon_pipeline_engine *e = NULL;
    cr_assert_eq(seldon_pipeline_engine_new(&e, (const seldon_pipeline *const *)s->p, s->np, NULL),
                 0, "%s", seldon_last_error());
    return e;
}

/* Pipelines a (add10) and b (mul10), and c reading a's output and b's input as external
 * inputs with join (extra input: lines, "" for the default inner join); a's request r is
 * pushed and answered at T0, so c waits on b. r is the caller's. */
static inline seldon_pipeline_engine *a_and_b_into_c(pl_set *s, run_result *r, const char *join)
{
    char yaml[1024];
    seldon_pipeline_engine *e;
    snprintf(yaml, sizeof(yaml),
             HEAD "a\nspec:\n  steps:\n  - name: add10\n"
                  "---\n" HEAD "b\nspec:\n  steps:\n  - name: mul10\n"
                  "---\n" HEAD "c\nspec:\n  input:\n    externalInputs: [a.outputs.OUTPUT, b]\n"
                  "%s"
                  "    tensorMap: {a.outputs.OUTPUT: INPUT, b.outputs.OUTPUT: OTHER}\n"
                  "  steps:\n  - name: identity\n",
             join);
    cr_assert_eq(pl_add(s, yaml), 0, "%s", seldon_last_error());
    e = engine_of(s);
    push(e, "a", "r", input(e, "INPUT"), T0);
    drain(e, r, T0, 1);
    cr_assert_str_eq(r->calls, "add10 ");
    cr_assert_eq(r->outputs, 1, "a's own answer");
    return e;
}

#endif
