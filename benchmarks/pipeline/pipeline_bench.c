/*
 * The pipeline engine's benchmark, in process, one core:
 *   join:  a request fans out to two steps whose answers are inner-joined
 *          into a third; joined records per second, RSS at start and end.
 *   chain: a 2-step pipeline of identity models through the C API; requests/s.
 * The fake models copy their input to their answer (4 floats), so the figures
 * are the engine's cost plus one small message per call.
 *   bench_pipeline [--smoke] [--records N]
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "seldon/seldon.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            v = strtol(line + 6, NULL, 10);
    fclose(f);
    return v;
}

static seldon_pipeline *compile(const char *yaml, seldon_manifest **m)
{
    seldon_pipeline *p = NULL;
    const seldon_resource *r;
    if (seldon_manifest_parse(m, yaml, strlen(yaml), "bench") < 0) {
        fprintf(stderr, "%s\n", seldon_last_error());
        exit(1);
    }
    r = seldon_manifest_at(*m, 0);
    if (seldon_pipeline_compile(&p, r->name, &r->spec.pipeline, NULL, NULL) < 0) {
        fprintf(stderr, "%s\n", seldon_last_error());
        exit(1);
    }
    return p;
}

/* Runs n requests of pipeline name; answers every call with a copy of its first tensor as OUTPUT.
 */
static double run(seldon_pipeline *p, const char *name, const char *const *inputs, size_t ninputs,
                  long n, long *outputs, long *rss0, long *rss1)
{
    seldon_pipeline_engine *e = NULL;
    seldon_pipeline_options o = SELDON_PIPELINE_OPTIONS_INIT;
    const seldon_pipeline *const set[1] = {p};
    float v[4] = {1, 2, 3, 4};
    int64_t shape[1] = {4};
    seldon_pipeline_event ev;
    uint64_t calls[16];
    int ncalls;
    char id[32];
    double t0;
    long i;
    size_t k;

    o.timeout_ms = 0;
    if (seldon_pipeline_engine_new(&e, set, 1, &o) < 0) {
        fprintf(stderr, "%s\n", seldon_last_error());
        exit(1);
    }
    *outputs = 0;
    t0 = now_s();
    for (i = 0; i < n; i++) {
        seldon_msg *m = seldon_pipeline_engine_msg(e, SELDON_MSG_REQUEST);
        int len = snprintf(id, sizeof(id), "r%ld", i);
        int64_t now = i * 1000;
        if (i == n / 100 && rss0)
            *rss0 = rss_kib();
        for (k = 0; k < ninputs; k++)
            seldon_msg_add_tensor(NULL, m, inputs[k], strlen(inputs[k]), SELDON_DT_FP32, shape, 1,
                                  v, sizeof(v), SELDON_TENSOR_COPY);
        seldon_pipeline_engine_push(e, name, id, (size_t)len, NULL, 0, m, 0, now);
        for (;;) {
            ncalls = 0;
            while (seldon_pipeline_engine_poll(&ev, e) == 1) {
                if (ev.kind == SELDON_PIPELINE_EVENT_CALL && ncalls < 16) {
                    seldon_tensor t;
                    seldon_msg *resp = seldon_pipeline_engine_msg(e, SELDON_MSG_RESPONSE);
                    seldon_msg_tensor(&t, ev.msg, 0);
                    seldon_msg_add_tensor(NULL, resp, "OUTPUT", 6, t.datatype, t.shape, t.ndim,
                                          t.data, t.nbytes, SELDON_TENSOR_COPY);
                    /* Answered after the poll loop: the call's message stays valid till then. */
                    calls[ncalls++] = ev.call_id;
                    seldon_pipeline_engine_answer(e, ev.call_id, resp, now);
                } else if (ev.kind == SELDON_PIPELINE_EVENT_OUTPUT) {
                    (*outputs)++;
                } else if (ev.kind == SELDON_PIPELINE_EVENT_ERROR) {
                    fprintf(stderr, "error: %s\n", ev.error);
                    exit(1);
                }
            }
            if (ncalls == 0)
                break;
        }
    }
    t0 = now_s() - t0;
    if (rss1)
        *rss1 = rss_kib();
    (void)calls;
    seldon_pipeline_engine_free(e);
    return t0;
}

int main(int argc, char **argv)
{
    long n = 10000000, outputs, rss0 = 0, rss1 = 0;
    int i, smoke = 0;
    seldon_manifest *m1 = NULL, *m2 = NULL;
    seldon_pipeline *join, *chain;
    static const char *const xy[2] = {"X", "Y"};
    static const char *const in[1] = {"INPUT"};
    double t;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--smoke") == 0) {
            smoke = 1;
            n = 20000;
        } else if (strcmp(argv[i], "--records") == 0 && i + 1 < argc) {
            n = atol(argv[++i]);
        } else {
            fprintf(stderr, "usage: %s [--smoke] [--records N]\n", argv[0]);
            return 2;
        }
    }
    join = compile(
        "apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata:\n  name: j\n"
        "spec:\n  steps:\n  - name: a\n    inputs: [j.inputs.X]\n  - name: b\n"
        "    inputs: [j.inputs.Y]\n  - name: c\n    inputs: [a.outputs.OUTPUT, b.outputs.OUTPUT]\n"
        "    tensorMap: {a.outputs.OUTPUT: L, b.outputs.OUTPUT: R}\n"
        "  output:\n    steps: [a, b]\n",
        &m1);
    chain = compile("apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata:\n  name: c\n"
                    "spec:\n  steps:\n  - name: id1\n  - name: id2\n    inputs: [id1]\n"
                    "    tensorMap: {id1.outputs.OUTPUT: INPUT}\n  output:\n    steps: [id2]\n",
                    &m2);

    t = run(join, "j", xy, 2, n, &outputs, &rss0, &rss1);
    printf("join:  %ld records joined (inner, 2 sources, plus the output's inner join) in %.2f s: "
           "%.0f joined records/s (target >= 1,000,000); RSS %ld KiB at 1%%, %ld KiB at the end\n",
           outputs, t, (double)outputs * 2 / t, rss0, rss1);
    if (outputs != n)
        return 1;
    t = run(chain, "c", in, 1, smoke ? n : n / 2, &outputs, NULL, NULL);
    printf("chain: %ld requests through 2 identity steps in %.2f s: %.0f requests/s on one core "
           "(target >= 500,000)\n",
           outputs, t, (double)outputs / t);
    seldon_pipeline_free(join);
    seldon_pipeline_free(chain);
    seldon_manifest_free(m1);
    seldon_manifest_free(m2);
    return 0;
}
