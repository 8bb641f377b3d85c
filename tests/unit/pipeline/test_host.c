/* Pipelines in a host program: YAML in, models attached, requests pushed, results out. */
#include <criterion/criterion.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "seldon/seldon.h"

#define MS 1000000LL
#define T0 (1000 * MS)

static const char *COND = "apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata:\n  "
                          "name: tfsimple-conditional\n"
                          "spec:\n  steps:\n  - name: conditional\n"
                          "  - name: mul10\n    inputs: [conditional.outputs.OUTPUT0]\n"
                          "    tensorMap: {conditional.outputs.OUTPUT0: INPUT}\n"
                          "  - name: add10\n    inputs: [conditional.outputs.OUTPUT1]\n"
                          "    tensorMap: {conditional.outputs.OUTPUT1: INPUT}\n"
                          "  output:\n    steps: [mul10, add10]\n    stepsJoin: any\n";

static const char *CHAIN =
    "apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata:\n  name: chain\n"
    "spec:\n  steps:\n  - name: twice\n  - name: plus1\n    inputs: [twice]\n"
    "  output:\n    steps: [plus1]\n";

/* ---- the repository of examples/models ---- */

static seldon_repo *repo_open(void)
{
    char root[PATH_MAX];
    const char *slash = strrchr(__FILE__, '/');
    seldon_repo_options o = SELDON_REPO_OPTIONS_INIT;
    seldon_repo *r = NULL;
    /* __FILE__ is tests/unit/pipeline/test_host.c under the source tree. */
    snprintf(root, sizeof(root), "%.*s/../../../examples/models", (int)(slash - __FILE__),
             __FILE__);
    o.root = root;
    cr_assert_eq(seldon_repo_new(&r, &o), 0, "%s", seldon_last_error());
    cr_assert_eq(seldon_repo_load(r, "conditional"), 0, "%s", seldon_last_error());
    cr_assert_eq(seldon_repo_load(r, "add10"), 0, "%s", seldon_last_error());
    cr_assert_eq(seldon_repo_load(r, "mul10"), 0, "%s", seldon_last_error());
    return r;
}

static seldon_msg *cond_input(seldon_pipeline_host *h, int32_t choice)
{
    static const float in0[4] = {1, 2, 3, 4}, in1[4] = {5, 6, 7, 8};
    const int64_t s1[1] = {1}, s4[1] = {4};
    seldon_msg *m = h ? seldon_pipeline_host_msg(h) : NULL;
    if (m == NULL)
        cr_assert_eq(seldon_msg_new(&m, SELDON_MSG_REQUEST), 0);
    cr_assert_eq(seldon_msg_add_tensor(NULL, m, "CHOICE", 6, SELDON_DT_INT32, s1, 1, &choice, 4,
                                       SELDON_TENSOR_COPY),
                 0);
    cr_assert_eq(seldon_msg_add_tensor(NULL, m, "INPUT0", 6, SELDON_DT_FP32, s4, 1, in0, 16,
                                       SELDON_TENSOR_COPY),
                 0);
    cr_assert_eq(seldon_msg_add_tensor(NULL, m, "INPUT1", 6, SELDON_DT_FP32, s4, 1, in1, 16,
                                       SELDON_TENSOR_COPY),
                 0);
    return m;
}

/* ---- results ---- */

typedef struct got {
    int n;
    int32_t status, error_kind;
    char id[64];
    char error[256];
    char tensor[32];
    float out[8];
    size_t nout;
    char header[64];
} got;

static void on_result(void *ud, const seldon_pipeline_result *r)
{
    got *g = ud;
    g->n++;
    g->status = r->status;
    g->error_kind = r->error_kind;
    snprintf(g->id, sizeof(g->id), "%.*s", (int)r->request_id_len, r->request_id);
    if (r->status < 0) {
        snprintf(g->error, sizeof(g->error), "%s", r->error);
    } else {
        seldon_tensor t;
        cr_assert_eq(seldon_msg_tensor_count(r->response), 1);
        cr_assert_eq(seldon_msg_tensor(&t, r->response, 0), 0);
        snprintf(g->tensor, sizeof(g->tensor), "%s", t.name);
        g->nout = t.nbytes / 4 > 8 ? 8 : t.nbytes / 4;
        memcpy(g->out, t.data, g->nout * 4);
    }
    if (r->headers_count > 0)
        snprintf(g->header, sizeof(g->header), "%.*s=%.*s", (int)r->headers[0].name_len,
                 r->headers[0].name, (int)r->headers[0].value_len, r->headers[0].value);
}

static void expect_floats(const float *got_, size_t n, const float *want, size_t wn)
{
    size_t i;
    cr_assert_eq(n, wn);
    for (i = 0; i < n; i++)
        cr_expect_float_eq(got_[i], want[i], 1e-6, "[%zu]: %g != %g", i, got_[i], want[i]);
}

/* ---- host runtimes: counting wrappers and fakes ---- */

typedef struct fake {
    int loads, calls, unloads;
    float add, mul;
    const char *fail; /* fail every call with this text */
    int async;        /* keep the inferences; complete them later */
    seldon_infer *held[8];
    size_t nheld;
} fake;

static int fake_load(seldon_model *m)
{
    fake *f = seldon_model_state(m);
    f->loads++;
    return 0;
}

static void fake_unload(seldon_model *m)
{
    fake *f = seldon_model_state(m);
    f->unloads++;
}

static void fake_one(fake *f, seldon_infer *inf)
{
    const seldon_msg *req = seldon_infer_request(inf);
    seldon_msg *resp = seldon_infer_response(inf);
    seldon_tensor in, out;
    size_t k, j;
    if (f->fail != NULL) {
        seldon_infer_complete(inf, SELDON_EINVAL, f->fail);
        return;
    }
    cr_assert_eq(seldon_msg_tensor(&in, req, 0), 0);
    cr_assert_eq(seldon_msg_add_tensor(&k, resp, "OUTPUT", 6, in.datatype, in.shape, in.ndim, NULL,
                                       in.nbytes, SELDON_TENSOR_ALLOC),
                 0);
    cr_assert_eq(seldon_msg_tensor(&out, resp, k), 0);
    for (j = 0; j < in.count; j++)
        ((float *)out.data)[j] = ((const float *)in.data)[j] * f->mul + f->add;
    seldon_infer_complete(inf, 0, NULL);
}

static int fake_execute(seldon_model *m, seldon_infer *const *infers, size_t count)
{
    fake *f = seldon_model_state(m);
    size_t i;
    for (i = 0; i < count; i++) {
        f->calls++;
        if (f->async) {
            cr_assert_lt(f->nheld, 8);
            f->held[f->nheld++] = infers[i];
        } else {
            fake_one(f, infers[i]);
        }
    }
    return 0;
}

static const seldon_runtime FAKE = {SELDON_RUNTIME_ABI_MAJOR,
                                    SELDON_RUNTIME_ABI_MINOR,
                                    "test.fake",
                                    0,
                                    fake_load,
                                    NULL,
                                    fake_execute,
                                    fake_unload};

static seldon_msg *floats_input(const char *name, const float *v, int64_t n)
{
    seldon_msg *m = NULL;
    cr_assert_eq(seldon_msg_new(&m, SELDON_MSG_REQUEST), 0);
    cr_assert_eq(seldon_msg_add_tensor(NULL, m, name, strlen(name), SELDON_DT_FP32, &n, 1, v,
                                       (size_t)n * 4, SELDON_TENSOR_COPY),
                 0);
    return m;
}

/* ---- tests ---- */

Test(pipeline_host, conditional_with_repository_models)
{
    seldon_repo *repo = repo_open();
    seldon_pipeline_host_options o = SELDON_PIPELINE_HOST_OPTIONS_INIT;
    seldon_pipeline_host *h = NULL;
    got g;
    static const float want0[4] = {10, 20, 30, 40}, want1[4] = {15, 16, 17, 18};

    memset(&g, 0, sizeof(g));
    o.repo = repo;
    o.on_result = on_result;
    o.user_data = &g;
    cr_assert_eq(seldon_pipeline_host_new(&h, COND, strlen(COND), &o), 0, "%s",
                 seldon_last_error());
    cr_assert_eq(seldon_pipeline_host_pipeline_count(h), 1);
    cr_assert_str_eq(seldon_pipeline_host_pipeline_name(h, 0), "tfsimple-conditional");
    cr_assert_eq(seldon_pipeline_host_check(h), 0, "%s", seldon_last_error());

    /* CHOICE 0: through mul10; the answer arrives inside push. */
    cr_assert_eq(seldon_pipeline_host_push(h, NULL, "r0", 2, NULL, 0, cond_input(h, 0), 0, T0), 0,
                 "%s", seldon_last_error());
    cr_assert_eq(g.n, 1);
    cr_assert_eq(g.status, 0, "%s", g.error);
    cr_assert_str_eq(g.id, "r0");
    cr_assert_str_eq(g.tensor, "OUTPUT");
    expect_floats(g.out, g.nout, want0, 4);

    /* CHOICE 1: through add10 (INPUT1 = [5,6,7,8]). */
    cr_assert_eq(seldon_pipeline_host_push(h, "tfsimple-conditional", "r1", 2, NULL, 0,
                                           cond_input(h, 1), 0, T0),
                 0);
    cr_assert_eq(g.n, 2);
    cr_assert_eq(g.status, 0, "%s", g.error);
    expect_floats(g.out, g.nout, want1, 4);
    cr_assert_eq(seldon_pipeline_host_requests(h), 0);

    seldon_pipeline_host_free(h);
    seldon_repo_free(repo);
}

Test(pipeline_host, infer_is_synchronous_and_copies_the_answer)
{
    seldon_repo *repo = repo_open();
    seldon_pipeline_host_options o = SELDON_PIPELINE_HOST_OPTIONS_INIT;
    seldon_pipeline_host *h = NULL;
    seldon_msg *resp = NULL;
    seldon_tensor t;
    got g;
    int i;
    static const float want0[4] = {10, 20, 30, 40};

    memset(&g, 0, sizeof(g));
    o.repo = repo;
    o.on_result = on_result;
    o.user_data = &g;
    cr_assert_eq(seldon_pipeline_host_new(&h, COND, strlen(COND), &o), 0);
    for (i = 0; i < 3; i++) {
        cr_assert_eq(seldon_pipeline_host_infer(&resp, h, NULL, cond_input(NULL, 0), T0), 0, "%s",
                     seldon_last_error());
        cr_assert_eq(seldon_msg_tensor_count(resp), 1);
        cr_assert_eq(seldon_msg_tensor(&t, resp, 0), 0);
        cr_assert_str_eq(t.name, "OUTPUT");
        cr_assert_eq(t.datatype, SELDON_DT_FP32);
        expect_floats(t.data, t.nbytes / 4, want0, 4);
        seldon_msg_free(resp);
        resp = NULL;
    }
    cr_assert_eq(g.n, 0, "infer's own results do not reach the callback");
    /* A bad input: the model's error, as "<model> : <error>". */
    {
        seldon_msg *bad = NULL;
        const int64_t s1[1] = {1};
        float x = 1;
        cr_assert_eq(seldon_msg_new(&bad, SELDON_MSG_REQUEST), 0);
        cr_assert_eq(seldon_msg_add_tensor(NULL, bad, "CHOICE", 6, SELDON_DT_FP32, s1, 1, &x, 4,
                                           SELDON_TENSOR_COPY),
                     0);
        cr_assert_lt(seldon_pipeline_host_infer(&resp, h, NULL, bad, T0), 0);
        cr_assert_null(resp);
        cr_assert(strncmp(seldon_last_error(), "conditional : ", 14) == 0, "%s",
                  seldon_last_error());
        cr_assert(strstr(seldon_last_error(), "CHOICE") != NULL, "%s", seldon_last_error());
    }
    cr_assert_eq(seldon_pipeline_host_requests(h), 0);
    seldon_pipeline_host_free(h);
    seldon_repo_free(repo);
}

Test(pipeline_host, host_runtimes_and_the_branch_not_taken)
{
    seldon_repo *repo = repo_open();
    seldon_pipeline_host_options o = SELDON_PIPELINE_HOST_OPTIONS_INIT;
    seldon_pipeline_host *h = NULL;
    fake add = {0}, mul = {0};
    got g;
    static const float want0[4] = {100, 200, 300, 400};

    memset(&g, 0, sizeof(g));
    add.mul = 1;
    add.add = 1000;
    mul.mul = 100;
    o.repo = repo; /* conditional comes from the repository, the branches from the host */
    o.on_result = on_result;
    o.user_data = &g;
    cr_assert_eq(seldon_pipeline_host_new(&h, COND, strlen(COND), &o), 0);
    cr_assert_eq(seldon_pipeline_host_attach_runtime(h, "add10", &FAKE, &add), 0, "%s",
                 seldon_last_error());
    cr_assert_eq(seldon_pipeline_host_attach_runtime(h, "mul10", &FAKE, &mul), 0);
    cr_assert_eq(add.loads, 1);
    cr_assert_eq(seldon_pipeline_host_push(h, NULL, "a", 1, NULL, 0, cond_input(h, 0), 0, T0), 0);
    cr_assert_eq(g.n, 1);
    cr_assert_eq(g.status, 0, "%s", g.error);
    expect_floats(g.out, g.nout, want0, 4);
    cr_assert_eq(mul.calls, 1);
    cr_assert_eq(add.calls, 0, "the branch not taken never runs");

    /* Replacing an attached runtime unloads the old instance. */
    cr_assert_eq(seldon_pipeline_host_attach_runtime(h, "add10", &FAKE, &mul), 0);
    cr_assert_eq(add.unloads, 1);
    seldon_pipeline_host_free(h);
    cr_assert_eq(mul.unloads, 2);
    seldon_repo_free(repo);
}

Test(pipeline_host, a_model_error_ends_the_request)
{
    seldon_pipeline_host_options o = SELDON_PIPELINE_HOST_OPTIONS_INIT;
    seldon_pipeline_host *h = NULL;
    fake twice = {0}, plus1 = {0};
    seldon_pipeline_header hd = {"x-trace", 7, "abc", 3};
    const float in[2] = {1, 2};
    got g;

    memset(&g, 0, sizeof(g));
    twice.mul = 2;
    plus1.fail = "no luck";
    o.on_result = on_result;
    o.user_data = &g;
    cr_assert_eq(seldon_pipeline_host_new(&h, CHAIN, strlen(CHAIN), &o), 0);
    cr_assert_eq(seldon_pipeline_host_attach_runtime(h, "twice", &FAKE, &twice), 0);
    cr_assert_eq(seldon_pipeline_host_attach_runtime(h, "plus1", &FAKE, &plus1), 0);
    cr_assert_eq(
        seldon_pipeline_host_push(h, NULL, "e", 1, &hd, 1, floats_input("X", in, 2), 0, T0), 0);
    cr_assert_eq(g.n, 1);
    cr_assert_lt(g.status, 0);
    cr_assert_eq(g.error_kind, SELDON_PIPELINE_ERR_MODEL);
    cr_assert_str_eq(g.error, "plus1 : no luck");
    cr_assert_str_eq(g.header, "x-trace=abc");

    /* Fixed: 1,2 -> 2,4 -> 3,5. */
    plus1.fail = NULL;
    plus1.mul = 1;
    plus1.add = 1;
    cr_assert_eq(
        seldon_pipeline_host_push(h, NULL, "e", 1, NULL, 0, floats_input("X", in, 2), 0, T0), 0);
    cr_assert_eq(g.n, 2);
    cr_assert_eq(g.status, 0, "%s", g.error);
    {
        static const float want[2] = {3, 5};
        expect_floats(g.out, g.nout, want, 2);
    }
    seldon_pipeline_host_free(h);
}

static int wakes;
static void on_wake(void *ud)
{
    (void)ud;
    wakes++;
}

Test(pipeline_host, asynchronous_models_timeouts_and_run)
{
    seldon_pipeline_host_options o = SELDON_PIPELINE_HOST_OPTIONS_INIT;
    seldon_pipeline_host *h = NULL;
    fake twice = {0}, plus1 = {0};
    seldon_msg *resp = NULL;
    const float in[2] = {1, 2};
    got g;

    memset(&g, 0, sizeof(g));
    wakes = 0;
    twice.mul = 2;
    twice.async = 1;
    plus1.mul = 1;
    plus1.add = 1;
    o.on_result = on_result;
    o.user_data = &g;
    o.wake = on_wake;
    o.timeout_ms = 500;
    cr_assert_eq(seldon_pipeline_host_new(&h, CHAIN, strlen(CHAIN), &o), 0);
    cr_assert_eq(seldon_pipeline_host_attach_runtime(h, "twice", &FAKE, &twice), 0);
    cr_assert_eq(seldon_pipeline_host_attach_runtime(h, "plus1", &FAKE, &plus1), 0);

    cr_assert_eq(
        seldon_pipeline_host_push(h, NULL, "a", 1, NULL, 0, floats_input("X", in, 2), 0, T0), 0);
    cr_assert_eq(g.n, 0);
    cr_assert_eq(twice.nheld, 1);
    cr_assert_eq(seldon_pipeline_host_requests(h), 1);
    cr_assert_eq(seldon_pipeline_host_deadline(h), T0 + 500 * MS);
    /* The model completes outside the host's calls: wake, then run delivers. */
    fake_one(&twice, twice.held[0]);
    twice.nheld = 0;
    cr_assert_eq(wakes, 1);
    cr_assert_eq(g.n, 0);
    cr_assert_eq(seldon_pipeline_host_run(h, T0 + 10 * MS), 0);
    cr_assert_eq(g.n, 1);
    cr_assert_eq(g.status, 0, "%s", g.error);
    {
        static const float want[2] = {3, 5};
        expect_floats(g.out, g.nout, want, 2);
    }

    /* Never answered: the timeout ends it when the host runs at the deadline. */
    cr_assert_eq(seldon_pipeline_host_push(h, NULL, "b", 1, NULL, 0, floats_input("X", in, 2), 0,
                                           T0 + 20 * MS),
                 0);
    cr_assert_eq(seldon_pipeline_host_run(h, T0 + 100 * MS), 0);
    cr_assert_eq(g.n, 1);
    cr_assert_eq(seldon_pipeline_host_run(h, seldon_pipeline_host_deadline(h)), 0);
    cr_assert_eq(g.n, 2);
    cr_assert_eq(g.status, SELDON_ETIMEDOUT);
    cr_assert_eq(g.error_kind, SELDON_PIPELINE_ERR_TIMEOUT);
    cr_assert_str_eq(g.id, "b");
    /* Its late answer is dropped. */
    fake_one(&twice, twice.held[0]);
    twice.nheld = 0;
    cr_assert_eq(seldon_pipeline_host_run(h, T0 + 600 * MS), 0);
    cr_assert_eq(g.n, 2);

    /* infer cannot wait for an asynchronous model: ESTATE, and the request is gone. */
    cr_assert_eq(seldon_pipeline_host_infer(&resp, h, NULL, floats_input("X", in, 2), T0),
                 SELDON_ESTATE);
    cr_assert_null(resp);
    fake_one(&twice, twice.held[0]);
    twice.nheld = 0;
    cr_assert_eq(seldon_pipeline_host_run(h, T0 + 700 * MS), 0);
    cr_assert_eq(g.n, 2, "a canceled request has no result");
    cr_assert_eq(seldon_pipeline_host_requests(h), 0);
    seldon_pipeline_host_free(h);
}

Test(pipeline_host, missing_models_are_named)
{
    seldon_pipeline_host_options o = SELDON_PIPELINE_HOST_OPTIONS_INIT;
    seldon_pipeline_host *h = NULL;
    fake twice = {0};
    const float in[1] = {1};
    got g;

    memset(&g, 0, sizeof(g));
    twice.mul = 2;
    o.on_result = on_result;
    o.user_data = &g;
    cr_assert_eq(seldon_pipeline_host_new(&h, CHAIN, strlen(CHAIN), &o), 0);
    cr_assert_eq(seldon_pipeline_host_attach_runtime(h, "twice", &FAKE, &twice), 0);
    cr_assert_eq(seldon_pipeline_host_check(h), SELDON_ENOTFOUND);
    cr_assert(strstr(seldon_last_error(), "step \"plus1\"") != NULL, "%s", seldon_last_error());
    cr_assert_eq(
        seldon_pipeline_host_push(h, NULL, "m", 1, NULL, 0, floats_input("X", in, 1), 0, T0), 0);
    cr_assert_eq(g.n, 1);
    cr_assert_eq(g.error_kind, SELDON_PIPELINE_ERR_MODEL);
    cr_assert(strncmp(g.error, "plus1 : model plus1 is not attached", 35) == 0, "%s", g.error);

    cr_assert_eq(seldon_pipeline_host_detach(h, "twice"), 0);
    cr_assert_eq(seldon_pipeline_host_detach(h, "twice"), SELDON_ENOTFOUND);
    cr_assert_eq(
        seldon_pipeline_host_push(h, "nope", "m", 1, NULL, 0, floats_input("X", in, 1), 0, T0),
        SELDON_ENOTFOUND);
    seldon_pipeline_host_free(h);
}

Test(pipeline_host, chained_pipelines_in_any_order)
{
    /* "second" reads "chain"'s outputs and comes first in the text. */
    static const char *TEXT =
        "apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata:\n  name: second\n"
        "spec:\n  input:\n    externalInputs: [chain.outputs]\n"
        "  steps:\n  - name: twice2\n  output:\n    steps: [twice2]\n---\n";
    seldon_pipeline_host_options o = SELDON_PIPELINE_HOST_OPTIONS_INIT;
    seldon_pipeline_host *h = NULL;
    fake twice = {0}, plus1 = {0};
    char *text = malloc(strlen(TEXT) + strlen(CHAIN) + 1);
    const float in[1] = {3};
    got g;

    memset(&g, 0, sizeof(g));
    twice.mul = 2;
    plus1.mul = 1;
    plus1.add = 1;
    strcpy(text, TEXT);
    strcat(text, CHAIN);
    o.on_result = on_result;
    o.user_data = &g;
    cr_assert_eq(seldon_pipeline_host_new(&h, text, strlen(text), &o), 0, "%s",
                 seldon_last_error());
    cr_assert_eq(seldon_pipeline_host_pipeline_count(h), 2);
    cr_assert_str_eq(seldon_pipeline_host_pipeline_name(h, 0), "second");
    cr_assert_eq(seldon_pipeline_host_attach_runtime(h, "twice", &FAKE, &twice), 0);
    cr_assert_eq(seldon_pipeline_host_attach_runtime(h, "plus1", &FAKE, &plus1), 0);
    cr_assert_eq(seldon_pipeline_host_attach_runtime(h, "twice2", &FAKE, &twice), 0);
    cr_assert_eq(seldon_pipeline_host_check(h), 0, "%s", seldon_last_error());
    cr_assert_eq(
        seldon_pipeline_host_push(h, "chain", "c", 1, NULL, 0, floats_input("X", in, 1), 0, T0), 0);
    /* chain answers 7, and second (fed by chain's output) answers 14. */
    cr_assert_eq(g.n, 2);
    cr_assert_eq(g.status, 0, "%s", g.error);
    {
        static const float want[1] = {14};
        expect_floats(g.out, g.nout, want, 1);
    }
    seldon_pipeline_host_free(h);
    free(text);
}

Test(pipeline_host, bad_manifests_are_refused)
{
    seldon_pipeline_host *h = NULL;
    static const char *MODEL_ONLY = "apiVersion: mlops.seldon.io/v1alpha1\nkind: Model\n"
                                    "metadata:\n  name: m\nspec:\n  storageUri: gs://x\n";
    static const char *UNKNOWN = "apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\n"
                                 "metadata:\n  name: p\nspec:\n  steps:\n  - name: a\n"
                                 "    inputs: [b]\n  - name: b\n    inputs: [a]\n";
    seldon_pipeline_host_options o = SELDON_PIPELINE_HOST_OPTIONS_INIT;

    cr_assert_eq(seldon_pipeline_host_new(&h, "{ not: [yaml", 12, NULL), SELDON_EPARSE);
    cr_assert_null(h);
    cr_assert_eq(seldon_pipeline_host_new(&h, MODEL_ONLY, strlen(MODEL_ONLY), NULL), SELDON_EINVAL);
    cr_assert(strstr(seldon_last_error(), "no Pipeline") != NULL, "%s", seldon_last_error());
    cr_assert_eq(seldon_pipeline_host_new(&h, UNKNOWN, strlen(UNKNOWN), NULL), SELDON_EINVAL);
    cr_assert(strstr(seldon_last_error(), "pipeline \"p\": spec.steps: a cycle") != NULL, "%s",
              seldon_last_error());
    o.version = 99;
    cr_assert_eq(seldon_pipeline_host_new(&h, CHAIN, strlen(CHAIN), &o), SELDON_EVERSION);
    cr_assert_eq(seldon_pipeline_host_new(NULL, CHAIN, strlen(CHAIN), NULL), SELDON_EINVAL);
    cr_assert_eq(seldon_pipeline_host_push(NULL, NULL, "x", 1, NULL, 0, NULL, 0, 0), SELDON_EINVAL);
    seldon_pipeline_host_free(NULL);
}

Test(pipeline_host, a_runtime_of_another_abi_is_refused)
{
    seldon_pipeline_host *h = NULL;
    seldon_runtime bad = FAKE;
    fake f = {0};
    bad.abi_major = SELDON_RUNTIME_ABI_MAJOR + 1;
    cr_assert_eq(seldon_pipeline_host_new(&h, CHAIN, strlen(CHAIN), NULL), 0);
    cr_assert_eq(seldon_pipeline_host_attach_runtime(h, "twice", &bad, &f), SELDON_EVERSION);
    cr_assert_eq(f.loads, 0);
    seldon_pipeline_host_free(h);
}

/* A runtime that completes on a thread of its own, as a GPU or remote model would. */
typedef struct threaded {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int woken;
    pthread_t worker;
    int started;
} threaded;

static void *complete_later(void *arg)
{
    seldon_infer *inf = arg;
    fake f = {0};
    f.mul = 3;
    fake_one(&f, inf);
    return NULL;
}

static int threaded_execute(seldon_model *m, seldon_infer *const *infers, size_t count)
{
    threaded *t = seldon_model_state(m);
    cr_assert_eq(count, 1);
    cr_assert_eq(pthread_create(&t->worker, NULL, complete_later, infers[0]), 0);
    t->started = 1;
    return 0;
}

static int threaded_load(seldon_model *m)
{
    (void)m;
    return 0;
}

/* The callbacks' user data: results first (on_result reads it as a got). */
typedef struct threaded_ctx {
    got g;
    threaded *t;
} threaded_ctx;

static void threaded_wake(void *ud)
{
    threaded *t = ((threaded_ctx *)ud)->t;
    pthread_mutex_lock(&t->lock);
    t->woken = 1;
    pthread_cond_signal(&t->cond);
    pthread_mutex_unlock(&t->lock);
}

static const seldon_runtime THREADED = {SELDON_RUNTIME_ABI_MAJOR,
                                        SELDON_RUNTIME_ABI_MINOR,
                                        "test.threaded",
                                        SELDON_RUNTIME_CONCURRENT,
                                        threaded_load,
                                        NULL,
                                        threaded_execute,
                                        NULL};

Test(pipeline_host, a_model_that_completes_on_another_thread)
{
    seldon_pipeline_host_options o = SELDON_PIPELINE_HOST_OPTIONS_INIT;
    seldon_pipeline_host *h = NULL;
    threaded t;
    fake plus1 = {0};
    const float in[2] = {1, 2};
    static const float want[2] = {4, 7};
    threaded_ctx ctx;

    memset(&ctx, 0, sizeof(ctx));
    memset(&t, 0, sizeof(t));
    pthread_mutex_init(&t.lock, NULL);
    pthread_cond_init(&t.cond, NULL);
    ctx.t = &t;
    plus1.mul = 1;
    plus1.add = 1;
    o.on_result = on_result;
    o.user_data = &ctx;
    o.wake = threaded_wake;
    cr_assert_eq(seldon_pipeline_host_new(&h, CHAIN, strlen(CHAIN), &o), 0);
    cr_assert_eq(seldon_pipeline_host_attach_runtime(h, "twice", &THREADED, &t), 0);
    cr_assert_eq(seldon_pipeline_host_attach_runtime(h, "plus1", &FAKE, &plus1), 0);
    cr_assert_eq(
        seldon_pipeline_host_push(h, NULL, "t", 1, NULL, 0, floats_input("X", in, 2), 0, T0), 0);
    cr_assert(t.started);
    /* Wait for the wake hook (the event), then drain on this thread. */
    pthread_mutex_lock(&t.lock);
    while (!t.woken)
        pthread_cond_wait(&t.cond, &t.lock);
    pthread_mutex_unlock(&t.lock);
    pthread_join(t.worker, NULL);
    /*
     * The worker may even finish before the push's own pump drains the completions (then the
     * result came in push); otherwise run delivers it. Either way, on this thread, once.
     */
    cr_assert_leq(ctx.g.n, 1);
    cr_assert_eq(seldon_pipeline_host_run(h, T0 + MS), 0);
    cr_assert_eq(ctx.g.n, 1);
    cr_assert_eq(ctx.g.status, 0, "%s", ctx.g.error);
    expect_floats(ctx.g.out, ctx.g.nout, want, 2);
    seldon_pipeline_host_free(h);
    pthread_cond_destroy(&t.cond);
    pthread_mutex_destroy(&t.lock);
}

/* Every allocation may fail: the host reports it or ends the request, and leaks nothing (ASan). */
Test(pipeline_host, allocation_failures_anywhere)
{
    seldon_repo *repo = repo_open();
    int64_t n;
    int completed = 0;
    for (n = 0; n < 600; n++) {
        seldon_pipeline_host_options o = SELDON_PIPELINE_HOST_OPTIONS_INIT;
        seldon_pipeline_host *h = NULL;
        seldon_msg *in0 = NULL, *in1 = NULL, *out = NULL;
        fake add = {0};
        got g;
        memset(&g, 0, sizeof(g));
        add.mul = 1;
        add.add = 10;
        o.repo = repo;
        o.on_result = on_result;
        o.user_data = &g;
        in0 = cond_input(NULL, 0);
        in1 = cond_input(NULL, 1);
        sdn_alloc_fail_after(n);
        if (seldon_pipeline_host_new(&h, COND, strlen(COND), &o) == 0) {
            seldon_pipeline_host_attach_runtime(h, "add10", &FAKE, &add);
            seldon_pipeline_host_push(h, NULL, "a", 1, NULL, 0, in1, 0, T0);
            in1 = NULL;
            if (seldon_pipeline_host_infer(&out, h, NULL, in0, T0) == 0) {
                cr_assert_eq(seldon_msg_tensor_count(out), 1);
                completed++;
            }
            in0 = NULL;
            seldon_pipeline_host_run(h, T0 + 1000 * MS);
        }
        sdn_alloc_fail_after(-1);
        seldon_msg_free(out);
        seldon_msg_free(in0);
        seldon_msg_free(in1);
        seldon_pipeline_host_free(h);
    }
    cr_assert_gt(completed, 0, "the last runs had allocations enough to answer");
    seldon_repo_free(repo);
}
