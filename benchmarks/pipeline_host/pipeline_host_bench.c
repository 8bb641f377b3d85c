/*
 * Pipelines in a host program, through the public C API
 * (include/seldon/pipeline_host.h), on one core: a 2-step pipeline of builtin
 * models of a repository (add10, then mul10 on its OUTPUT), one request at a
 * time, each answered inside the push that starts it. Printed beside the
 * same two models called directly (seldon_model_execute on reused messages),
 * the floor that the pipeline adds its engine to.
 *   bench_pipeline_host [--smoke] [--requests N] [--models DIR]
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "seldon/seldon.h"

#ifndef BENCH_MODELS_DIR
#define BENCH_MODELS_DIR "examples/models"
#endif

static const char *PIPELINE =
    "apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata:\n  name: chain\n"
    "spec:\n  steps:\n  - name: add10\n  - name: mul10\n    inputs: [add10]\n"
    "    tensorMap: {add10.outputs.OUTPUT: INPUT}\n  output:\n    steps: [mul10]\n";

static const float IN[4] = {1, 2, 3, 4};
static const int64_t SHAPE[1] = {4};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_pipeline_host: %s: %s\n", what, seldon_last_error());
    exit(1);
}

typedef struct tally {
    long ok, failed;
    float last[4];
} tally;

static void on_result(void *user_data, const seldon_pipeline_result *r)
{
    tally *t = user_data;
    seldon_tensor out;
    if (r->status < 0 || seldon_msg_tensor(&out, r->response, 0) < 0 || out.nbytes != 16) {
        t->failed++;
        return;
    }
    t->ok++;
    memcpy(t->last, out.data, 16);
}

/* The pipeline: n pushes; returns seconds. */
static double run_pipeline(seldon_repo *repo, long n, tally *t)
{
    seldon_pipeline_host_options o = SELDON_PIPELINE_HOST_OPTIONS_INIT;
    seldon_pipeline_host *h = NULL;
    double t0;
    long i;
    o.repo = repo;
    o.on_result = on_result;
    o.user_data = t;
    if (seldon_pipeline_host_new(&h, PIPELINE, strlen(PIPELINE), &o) < 0)
        die("pipeline");
    if (seldon_pipeline_host_check(h) < 0)
        die("check");
    t0 = now_s();
    for (i = 0; i < n; i++) {
        seldon_msg *m = seldon_pipeline_host_msg(h);
        if (m == NULL || seldon_msg_add_tensor(NULL, m, "INPUT", 5, SELDON_DT_FP32, SHAPE, 1, IN,
                                               sizeof(IN), SELDON_TENSOR_COPY) < 0)
            die("input");
        /* One request at a time: it ends inside the push, so one id serves them all. */
        if (seldon_pipeline_host_push(h, NULL, "r", 1, NULL, 0, m, 0, i * 1000) < 0)
            die("push");
    }
    t0 = now_s() - t0;
    seldon_pipeline_host_free(h);
    return t0;
}

static void done(void *user_data, seldon_infer *infer, int32_t status, const char *message)
{
    long *failed = user_data;
    (void)infer;
    (void)message;
    if (status < 0)
        ++*failed;
}

/* The floor: add10 then mul10 called directly, n times; returns seconds. */
static double run_direct(seldon_repo *repo, long n, long *failed, float *last)
{
    seldon_model *add = NULL, *mul = NULL;
    seldon_msg *req = NULL, *mid = NULL, *req2 = NULL, *out = NULL;
    seldon_tensor t;
    double t0;
    long i;
    if (seldon_repo_acquire(&add, repo, "add10", 5, NULL, 0) < 0 ||
        seldon_repo_acquire(&mul, repo, "mul10", 5, NULL, 0) < 0)
        die("acquire");
    if (seldon_msg_new(&req, SELDON_MSG_REQUEST) < 0 ||
        seldon_msg_new(&mid, SELDON_MSG_RESPONSE) < 0 ||
        seldon_msg_new(&req2, SELDON_MSG_REQUEST) < 0 ||
        seldon_msg_new(&out, SELDON_MSG_RESPONSE) < 0)
        die("messages");
    t0 = now_s();
    for (i = 0; i < n; i++) {
        seldon_infer *inf = NULL;
        seldon_msg_reset(req, SELDON_MSG_REQUEST);
        seldon_msg_add_tensor(NULL, req, "INPUT", 5, SELDON_DT_FP32, SHAPE, 1, IN, sizeof(IN),
                              SELDON_TENSOR_COPY);
        if (seldon_infer_new(&inf, req, mid, done, failed) < 0)
            die("infer");
        seldon_model_execute(add, &inf, 1);
        seldon_infer_free(inf);
        /* The second model reads the first one's answer in place, as the engine does. */
        seldon_msg_reset(req2, SELDON_MSG_REQUEST);
        seldon_msg_tensor(&t, mid, 0);
        seldon_msg_add_tensor(NULL, req2, "INPUT", 5, t.datatype, t.shape, t.ndim, t.data, t.nbytes,
                              SELDON_TENSOR_BORROW);
        if (seldon_infer_new(&inf, req2, out, done, failed) < 0)
            die("infer");
        seldon_model_execute(mul, &inf, 1);
        seldon_infer_free(inf);
    }
    t0 = now_s() - t0;
    if (seldon_msg_tensor(&t, out, 0) == 0 && t.nbytes == 16)
        memcpy(last, t.data, 16);
    seldon_msg_free(req);
    seldon_msg_free(mid);
    seldon_msg_free(req2);
    seldon_msg_free(out);
    seldon_model_release(add);
    seldon_model_release(mul);
    return t0;
}

int main(int argc, char **argv)
{
    seldon_repo_options ro = SELDON_REPO_OPTIONS_INIT;
    seldon_repo *repo = NULL;
    const char *models = BENCH_MODELS_DIR;
    long n = 5000000, direct_failed = 0;
    float direct_last[4] = {0};
    tally t;
    double tp, td;
    int i;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--smoke") == 0) {
            n = 20000;
        } else if (strcmp(argv[i], "--requests") == 0 && i + 1 < argc) {
            n = strtol(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--models") == 0 && i + 1 < argc) {
            models = argv[++i];
        } else {
            printf("usage: bench_pipeline_host [--smoke] [--requests N] [--models DIR]\n"
                   "A 2-step pipeline of builtin models (add10 -> mul10) in process through\n"
                   "include/seldon/pipeline_host.h, beside the two models called directly.\n");
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    if (n <= 0)
        n = 1;
    ro.root = models;
    if (seldon_repo_new(&repo, &ro) < 0 || seldon_repo_load(repo, "add10") < 0 ||
        seldon_repo_load(repo, "mul10") < 0)
        die("repository");

    memset(&t, 0, sizeof(t));
    tp = run_pipeline(repo, n, &t);
    td = run_direct(repo, n, &direct_failed, direct_last);
    /* (x + 10) * 10: [110, 120, 130, 140] */
    if (t.ok != n || t.failed || t.last[0] != 110 || t.last[3] != 140 || direct_failed ||
        direct_last[0] != 110) {
        fprintf(stderr, "bench_pipeline_host: wrong answers: %ld ok, %ld failed, last %g..%g\n",
                t.ok, t.failed, (double)t.last[0], (double)t.last[3]);
        return 1;
    }
    printf(
        "pipeline (add10 -> mul10) through the host API: %ld requests in %.3f s: %.0f requests/s "
        "(target >= 500,000), %.3f us each\n",
        n, tp, (double)n / tp, tp * 1e6 / (double)n);
    printf("the same two models called directly:           %ld pairs in %.3f s: %.0f pairs/s, "
           "%.3f us each\n",
           n, td, (double)n / td, td * 1e6 / (double)n);
    printf(
        "ratio pipeline/direct time: %.2f; pipeline cost per step over the direct call: %.3f us\n",
        tp / td, (tp - td) * 1e6 / (double)n / 2);
    seldon_repo_free(repo);
    return 0;
}
