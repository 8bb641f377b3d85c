/*
 * libFuzzer target for the pipeline compiler, fed with Pipeline YAML: every
 * pipeline of the text is compiled (in order, each seeing those before it for
 * external inputs). A refusal must name the pipeline and leave nothing; a
 * pipeline that compiles is described, then run by an engine: one request
 * whose calls are answered with the request's tensors (the first renamed
 * OUTPUT), with time passing, until nothing is left or a step budget runs out.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "seldon/seldon.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXP 8

typedef struct fz_set {
    seldon_pipeline *p[MAXP];
    size_t n;
} fz_set;

static void fail(const char *what)
{
    fprintf(stderr, "fuzz property broken: %s (%s)\n", what, seldon_last_error());
    abort();
}

static int lookup(const seldon_pipeline **out, void *ud, const char *name)
{
    fz_set *s = ud;
    size_t i;
    for (i = 0; i < s->n; i++)
        if (strcmp(seldon_pipeline_name(s->p[i]), name) == 0) {
            *out = s->p[i];
            return 0;
        }
    return SELDON_ENOTFOUND;
}

static void answer(seldon_pipeline_engine *e, const seldon_pipeline_event *ev, int64_t now, int k)
{
    seldon_msg *r = seldon_pipeline_engine_msg(e, SELDON_MSG_RESPONSE);
    size_t i;
    if (r == NULL)
        fail("no message");
    if (k % 7 == 6) { /* now and then a model fails */
        seldon_msg_free(r);
        if (seldon_pipeline_engine_fail(e, ev->call_id, "boom", now) != 0)
            fail("fail");
        return;
    }
    for (i = 0; i < seldon_msg_tensor_count(ev->msg); i++) {
        seldon_tensor t;
        const char *name;
        seldon_msg_tensor(&t, ev->msg, i);
        name = i == 0 ? "OUTPUT" : t.name;
        if (seldon_msg_add_tensor(NULL, r, name, strlen(name), t.datatype, t.shape, t.ndim, t.data,
                                  t.nbytes, SELDON_TENSOR_COPY) != 0)
            fail("copy a tensor");
    }
    if (seldon_pipeline_engine_answer(e, ev->call_id, r, now) != 0)
        fail("answer");
}

static void run(fz_set *s)
{
    static const char *const names[] = {"INPUT", "INPUT0", "INPUT1", "OUTPUT", "X", "Y", "CHOICE"};
    seldon_pipeline_engine *e = NULL;
    seldon_pipeline_options o = SELDON_PIPELINE_OPTIONS_INIT;
    seldon_pipeline_event ev;
    seldon_msg *m;
    int64_t now = 1000000000, shape[2] = {1, 2};
    int32_t v[2] = {0, 1};
    size_t i;
    int k = 0, rounds;

    o.timeout_ms = 500;
    if (seldon_pipeline_engine_new(&e, (const seldon_pipeline *const *)s->p, s->n, &o) != 0)
        fail("engine over compiled pipelines");
    m = seldon_pipeline_engine_msg(e, SELDON_MSG_REQUEST);
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        seldon_msg_add_tensor(NULL, m, names[i], strlen(names[i]), SELDON_DT_INT32, shape, 2, v,
                              sizeof(v), SELDON_TENSOR_COPY);
    if (seldon_pipeline_engine_push(e, seldon_pipeline_name(s->p[0]), "r", 1, NULL, 0, m, 0, now) !=
        0)
        fail("push");
    for (rounds = 0; rounds < 200; rounds++) {
        seldon_pipeline_event calls[64];
        int n = 0, j;
        while (seldon_pipeline_engine_poll(&ev, e) == 1)
            if (ev.kind == SELDON_PIPELINE_EVENT_CALL && n < 64)
                calls[n++] = ev;
            else if (ev.kind == SELDON_PIPELINE_EVENT_CALL)
                seldon_pipeline_engine_fail(e, ev.call_id, "too many", now);
        for (j = 0; j < n; j++)
            answer(e, &calls[j], now, k++);
        if (n == 0) {
            int64_t d = seldon_pipeline_engine_deadline(e);
            if (d == INT64_MAX)
                break;
            now = d;
            seldon_pipeline_engine_advance(e, now);
        }
    }
    if (rounds < 200 && seldon_pipeline_engine_requests(e) != 0)
        fail("a request left behind with nothing to wait for");
    /* Unloaded from the last (the others cannot read it) to the first. */
    for (i = s->n; i-- > 0;)
        if (seldon_pipeline_engine_remove(e, seldon_pipeline_name(s->p[i]), now) != 0)
            fail("remove");
    while (seldon_pipeline_engine_poll(&ev, e) == 1)
        ;
    seldon_pipeline_engine_free(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    seldon_manifest *m = NULL;
    fz_set s;
    size_t i;
    int compiled_all = 1;

    memset(&s, 0, sizeof(s));
    if (seldon_manifest_parse(&m, (const char *)data, size, "fuzz") != 0)
        return 0;
    for (i = 0; i < seldon_manifest_count(m) && s.n < MAXP; i++) {
        const seldon_resource *r = seldon_manifest_at(m, i);
        seldon_pipeline *p = (seldon_pipeline *)1;
        seldon_buf b = SELDON_BUF_INIT;
        const seldon_pipeline *same = NULL;
        if (r->kind != SELDON_KIND_PIPELINE || lookup(&same, &s, r->name) == 0)
            continue; /* an engine runs one pipeline of a name */
        if (seldon_pipeline_compile(&p, r->name, &r->spec.pipeline, lookup, &s) != 0) {
            if (p != NULL)
                fail("a refusal left a pipeline");
            if (strncmp(seldon_last_error(), "pipeline \"", 10) != 0)
                fail("a refusal that does not name the pipeline");
            compiled_all = 0;
            continue;
        }
        if (seldon_pipeline_describe(&b, p) != 0 || b.len == 0)
            fail("describe");
        seldon_buf_free(&b);
        s.p[s.n++] = p;
    }
    if (s.n > 0)
        run(&s);
    (void)compiled_all;
    for (i = 0; i < s.n; i++)
        seldon_pipeline_free(s.p[i]);
    seldon_manifest_free(m);
    return 0;
}
