/*
 * The inference service through its public API, with a fake host: job
 * queues that the test runs by hand, a fake clock and a recorded timer.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"
#include "grpc_predict_v2.pb-c.h"
#include "seldon/seldon.h"

#define CHECK_OK(expr) cr_assert_eq((expr), 0, "%s: %s", #expr, seldon_last_error())
#define SVC "/inference.GRPCInferenceService/"

/* --- The fake host ------------------------------------------------------------- */

#define QMAX 64

typedef struct fake_host {
    seldon_job *infer_q[QMAX];
    size_t ninfer;
    seldon_job *load_q[QMAX];
    size_t nload;
    int64_t now;
    int64_t armed[QMAX];
    size_t narmed;
} fake_host;

static fake_host host;

static void fake_submit_infer(void *h, seldon_job *job)
{
    fake_host *f = h;
    cr_assert_lt(f->ninfer, QMAX);
    f->infer_q[f->ninfer++] = job;
}

static void fake_submit_load(void *h, seldon_job *job)
{
    fake_host *f = h;
    cr_assert_lt(f->nload, QMAX);
    f->load_q[f->nload++] = job;
}

static void fake_arm(void *h, int64_t deadline)
{
    fake_host *f = h;
    cr_assert_lt(f->narmed, QMAX);
    f->armed[f->narmed++] = deadline;
}

static int64_t fake_now(void *h)
{
    return ((fake_host *)h)->now;
}

/* Runs every queued inference job (and those they queue), in order. */
static size_t run_workers(void)
{
    size_t n = 0;
    while (host.ninfer > 0) {
        seldon_job *j = host.infer_q[0];
        memmove(host.infer_q, host.infer_q + 1, (host.ninfer - 1) * sizeof(seldon_job *));
        host.ninfer--;
        j->run(j);
        n++;
    }
    return n;
}

static size_t run_loads(void)
{
    size_t n = 0;
    while (host.nload > 0) {
        seldon_job *j = host.load_q[0];
        memmove(host.load_q, host.load_q + 1, (host.nload - 1) * sizeof(seldon_job *));
        host.nload--;
        j->run(j);
        n++;
    }
    return n;
}

/* --- A test runtime: OUT = IN * 2 (FP32), on the workers; an input named FAIL fails. ---- */

static int dbl_execute(seldon_model *m, seldon_infer *const *infers, size_t count)
{
    size_t i, k;
    (void)m;
    for (i = 0; i < count; i++) {
        const seldon_msg *req = seldon_infer_request(infers[i]);
        seldon_msg *resp = seldon_infer_response(infers[i]);
        seldon_tensor in, out;
        size_t idx;
        int rc;
        seldon_msg_tensor(&in, req, 0);
        if (strcmp(in.name, "FAIL") == 0) {
            seldon_infer_complete(infers[i], SELDON_EINVAL, "test.double: asked to fail");
            continue;
        }
        rc = seldon_msg_add_tensor(&idx, resp, "OUT", 3, SELDON_DT_FP32, in.shape, in.ndim, NULL,
                                   in.nbytes, SELDON_TENSOR_ALLOC);
        if (rc != 0) {
            seldon_infer_complete(infers[i], rc, seldon_last_error());
            continue;
        }
        seldon_msg_tensor(&out, resp, idx);
        for (k = 0; k < in.count; k++)
            ((float *)out.data)[k] = ((const float *)in.data)[k] * 2;
        seldon_infer_complete(infers[i], 0, NULL);
    }
    return 0;
}

static int dbl_load(seldon_model *m)
{
    (void)m;
    return 0;
}

static const seldon_runtime dbl_runtime = {SELDON_RUNTIME_ABI_MAJOR,
                                           SELDON_RUNTIME_ABI_MINOR,
                                           "test.double",
                                           0,
                                           dbl_load,
                                           NULL,
                                           dbl_execute,
                                           NULL};

/* --- The repository and the service ------------------------------------------------ */

static char root[256];
static seldon_repo *repo;
static seldon_metrics *metrics;
static seldon_service *svc;

static void write_settings(const char *folder, const char *json)
{
    char path[512];
    FILE *f;
    snprintf(path, sizeof(path), "%s/%s", root, folder);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/%s/model-settings.json", root, folder);
    f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(json, f);
    fclose(f);
}

static void setup(void)
{
    seldon_repo_options ro = SELDON_REPO_OPTIONS_INIT;
    seldon_service_options so = SELDON_SERVICE_OPTIONS_INIT;
    memset(&host, 0, sizeof(host));
    host.now = 1000000000;
    snprintf(root, sizeof(root), "/tmp/seldon-service-test-XXXXXX");
    cr_assert_not_null(mkdtemp(root));
    write_settings("ident", "{\"name\": \"ident\", \"implementation\": \"builtin.identity\"}");
    write_settings("dbl", "{\"name\": \"dbl\", \"implementation\": \"test.double\"}");
    write_settings("batched", "{\"name\": \"batched\", \"implementation\": \"test.double\", "
                              "\"max_batch_size\": 4, \"max_batch_time\": 0.01}");
    write_settings("later", "{\"name\": \"later\", \"implementation\": \"builtin.identity\"}");
    write_settings("broken", "{\"name\": \"broken\", \"implementation\": \"no.such.runtime\"}");
    ro.root = root;
    CHECK_OK(seldon_repo_new(&repo, &ro));
    CHECK_OK(seldon_repo_add_runtime(repo, &dbl_runtime, NULL));
    CHECK_OK(seldon_repo_load(repo, "ident"));
    CHECK_OK(seldon_repo_load(repo, "dbl"));
    CHECK_OK(seldon_repo_load(repo, "batched"));
    CHECK_OK(seldon_repo_scan(repo));
    CHECK_OK(seldon_metrics_new(&metrics));
    so.repo = repo;
    so.metrics = metrics;
    so.hooks.submit_infer = fake_submit_infer;
    so.hooks.submit_load = fake_submit_load;
    so.hooks.arm_timer = fake_arm;
    so.hooks.now_ns = fake_now;
    so.hooks.host = &host;
    CHECK_OK(seldon_service_new(&svc, &so));
    seldon_service_set_ready(svc, 1);
}

static void teardown(void)
{
    char cmd[300];
    seldon_service_flush(svc);
    run_workers();
    run_loads();
    seldon_service_free(svc);
    seldon_repo_free(repo);
    seldon_metrics_free(metrics);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(service, .init = setup, .fini = teardown);

/* --- REST helpers ----------------------------------------------------------------------- */

typedef struct rest_out {
    int called;
    int status;
    char ctype[64];
    char extra_name[64];
    char extra_value[64];
    size_t nheaders;
    char body[65536];
    size_t body_len;
} rest_out;

static void on_rest(void *ud, seldon_rest_response *r)
{
    rest_out *o = ud;
    size_t i;
    o->called++;
    o->status = r->status;
    o->nheaders = r->nheaders;
    for (i = 0; i < r->nheaders; i++) {
        const seldon_http_header *h = &r->headers[i];
        if (h->name_len == 12 && memcmp(h->name, "content-type", 12) == 0)
            snprintf(o->ctype, sizeof(o->ctype), "%.*s", (int)h->value_len, h->value);
        else {
            snprintf(o->extra_name, sizeof(o->extra_name), "%.*s", (int)h->name_len, h->name);
            snprintf(o->extra_value, sizeof(o->extra_value), "%.*s", (int)h->value_len, h->value);
        }
    }
    cr_assert_lt(r->body.len, sizeof(o->body));
    if (r->body.len)
        memcpy(o->body, r->body.data, r->body.len);
    o->body[r->body.len] = '\0';
    o->body_len = r->body.len;
}

static void rest_h(rest_out *o, const char *method, const char *path, const char *body,
                   size_t body_len, const seldon_http_header *h, size_t nh)
{
    seldon_rest_request q;
    memset(o, 0, sizeof(*o));
    memset(&q, 0, sizeof(q));
    q.method = method;
    q.method_len = strlen(method);
    q.path = path;
    q.path_len = strlen(path);
    q.headers = h;
    q.nheaders = nh;
    q.body = (const uint8_t *)body;
    q.body_len = body_len;
    CHECK_OK(seldon_service_rest(svc, &q, on_rest, o));
}

static void rest(rest_out *o, const char *method, const char *path, const char *body)
{
    rest_h(o, method, path, body, body ? strlen(body) : 0, NULL, 0);
}

#define ASSERT_REST(o, st, needle)                                                                 \
    do {                                                                                           \
        cr_assert_eq((o)->called, 1, "done called %d times", (o)->called);                         \
        cr_assert_eq((o)->status, (st), "status %d, body %s", (o)->status, (o)->body);             \
        cr_assert(strstr((o)->body, (needle)) != NULL, "'%s' lacks '%s'", (o)->body, (needle));    \
    } while (0)

static const char *const fp32_req =
    "{\"id\": \"r1\", \"inputs\": [{\"name\": \"IN\", \"datatype\": \"FP32\", \"shape\": [1, 2], "
    "\"data\": [1.5, 2]}]}";

/* --- Status mapping --------------------------------------------------------------------- */

Test(status, mapping_table)
{
    static const struct {
        int rc, http, grpc;
    } table[] = {
        {0, 200, 0},
        {SELDON_EINVAL, 400, 3},
        {SELDON_ENOMEM, 500, 13},
        {SELDON_EPARSE, 400, 3},
        {SELDON_ERANGE, 400, 3},
        {SELDON_ESHAPE, 400, 3},
        {SELDON_EDATATYPE, 400, 3},
        {SELDON_ENOTFOUND, 404, 5},
        {SELDON_EEXIST, 400, 6},
        {SELDON_ETOOBIG, 413, 8},
        {SELDON_EUNSUPPORTED, 400, 12},
        {SELDON_ESTATE, 500, 13},
        {SELDON_EIO, 500, 13},
        {SELDON_EUNAVAIL, 503, 14},
        {SELDON_ETIMEDOUT, 504, 4},
        {SELDON_ECANCELED, 500, 1},
        {SELDON_EVERSION, 500, 13},
        {SELDON_EINTERNAL, 500, 13},
        {-999, 500, 13},
    };
    size_t i;
    for (i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        cr_expect_eq(seldon_status_http(table[i].rc), table[i].http, "%s",
                     seldon_error_name(table[i].rc));
        cr_expect_eq(seldon_status_grpc(table[i].rc), table[i].grpc, "%s",
                     seldon_error_name(table[i].rc));
    }
}

Test(status, bad_arguments)
{
    seldon_service *s = NULL;
    seldon_service_options so = SELDON_SERVICE_OPTIONS_INIT;
    cr_assert_eq(seldon_service_new(&s, &so), SELDON_EINVAL);
    cr_assert(strstr(seldon_last_error(), "hook") != NULL, "%s", seldon_last_error());
    cr_assert_eq(seldon_service_rest(NULL, NULL, NULL, NULL), SELDON_EINVAL);
    cr_assert_eq(seldon_service_grpc(NULL, NULL, 0, NULL, 0, NULL, NULL), SELDON_EINVAL);
    cr_assert_eq(seldon_service_infer(NULL, NULL, NULL, NULL, NULL), SELDON_EINVAL);
    seldon_service_free(NULL);
}

/* --- REST endpoints ------------------------------------------------------------------------ */

Test(service, health_and_server_metadata)
{
    rest_out o;
    rest(&o, "GET", "/v2/health/live", NULL);
    ASSERT_REST(&o, 200, "{\"live\":true}");
    cr_assert_str_eq(o.ctype, "application/json");
    rest(&o, "GET", "/v2/health/ready", NULL);
    ASSERT_REST(&o, 200, "{\"ready\":true}");
    seldon_service_set_ready(svc, 0);
    rest(&o, "GET", "/v2/health/ready", NULL);
    ASSERT_REST(&o, 400, "still loading");
    rest(&o, "GET", "/v2", NULL);
    ASSERT_REST(&o, 200, "\"name\":\"seldon\"");
    cr_assert(strstr(o.body, seldon_version()) != NULL);
    cr_assert(strstr(o.body, "\"binary_tensor_data\"") != NULL);
    rest(&o, "HEAD", "/v2/health/live", NULL);
    ASSERT_REST(&o, 200, "live");
}

Test(service, model_metadata_and_ready)
{
    rest_out o;
    rest(&o, "GET", "/v2/models/ident", NULL);
    ASSERT_REST(&o, 200, "\"name\":\"ident\"");
    rest(&o, "GET", "/v2/models/ident/ready", NULL);
    ASSERT_REST(&o, 200, "\"ready\":true");
    rest(&o, "GET", "/v2/models/nope/ready", NULL);
    ASSERT_REST(&o, 404, "nope");
    rest(&o, "GET", "/v2/models/nope", NULL);
    ASSERT_REST(&o, 404, "nope");
    /* Known to the repository, not loaded: not ready rather than not found. */
    rest(&o, "GET", "/v2/models/later/ready", NULL);
    ASSERT_REST(&o, 400, "later");
}

Test(service, unknown_paths_and_methods)
{
    rest_out o;
    rest(&o, "GET", "/v3/nothing", NULL);
    ASSERT_REST(&o, 404, "\"error\"");
    rest(&o, "GET", "/v2/models/ident/infer", NULL);
    ASSERT_REST(&o, 405, "\"error\"");
    cr_assert_str_eq(o.extra_name, "allow");
    cr_assert_str_eq(o.extra_value, "POST");
    rest(&o, "POST", "/v2/health/live", "");
    ASSERT_REST(&o, 405, "\"error\"");
    cr_assert_str_eq(o.extra_value, "GET, HEAD");
    rest(&o, "POST", "/v2/pipelines/p/infer", "{}");
    ASSERT_REST(&o, 404, "pipeline gateway");
}

Test(service, infer_inline_answers_before_returning)
{
    rest_out o;
    rest(&o, "POST", "/v2/models/ident/infer", fp32_req);
    /* Answered inside the call: no job for the workers. */
    ASSERT_REST(&o, 200, "\"id\":\"r1\"");
    cr_assert_eq(host.ninfer, 0);
    cr_assert(strstr(o.body, "\"model_name\":\"ident\"") != NULL, "%s", o.body);
    cr_assert(strstr(o.body, "[1.5,2.0]") != NULL, "%s", o.body);
    cr_assert_str_eq(o.ctype, "application/json");
}

Test(service, infer_errors)
{
    rest_out o;
    rest(&o, "POST", "/v2/models/nope/infer", fp32_req);
    ASSERT_REST(&o, 404, "nope");
    rest(&o, "POST", "/v2/models/ident/infer", "{\"inputs\": [{\"name\": 3}]}");
    ASSERT_REST(&o, 400, "inputs[0].name");
    rest(
        &o, "POST", "/v2/models/ident/infer",
        "{\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP99\", \"shape\": [1], \"data\": [1]}]}");
    ASSERT_REST(&o, 400, "FP99");
    {
        seldon_http_header h = {"inference-header-content-length", 31, "abc", 3};
        rest_h(&o, "POST", "/v2/models/ident/infer", fp32_req, strlen(fp32_req), &h, 1);
        ASSERT_REST(&o, 400, "Inference-Header-Content-Length");
        h.value = "100000";
        h.value_len = 6;
        rest_h(&o, "POST", "/v2/models/ident/infer", fp32_req, strlen(fp32_req), &h, 1);
        ASSERT_REST(&o, 400, "Inference-Header-Content-Length");
    }
}

Test(service, infer_binary_extension)
{
    static const char json[] =
        "{\"parameters\": {\"binary_data_output\": true}, \"inputs\": [{\"name\": \"IN\", "
        "\"datatype\": \"FP32\", \"shape\": [2], \"parameters\": {\"binary_data_size\": 8}}]}";
    char body[256], lenbuf[16];
    float v[2] = {3.0f, 4.5f};
    seldon_http_header h = {"inference-header-content-length", 31, lenbuf, 0};
    rest_out o;
    size_t jl = strlen(json);
    float got[2];
    memcpy(body, json, jl);
    memcpy(body + jl, v, sizeof(v));
    h.value_len = (size_t)snprintf(lenbuf, sizeof(lenbuf), "%zu", jl);
    rest_h(&o, "POST", "/v2/models/ident/infer", body, jl + sizeof(v), &h, 1);
    cr_assert_eq(o.called, 1);
    cr_assert_eq(o.status, 200, "%d %s", o.status, o.body);
    cr_assert_str_eq(o.ctype, "application/octet-stream");
    cr_assert_str_eq(o.extra_name, "inference-header-content-length");
    jl = (size_t)atoi(o.extra_value);
    cr_assert_eq(o.body_len, jl + sizeof(v));
    memcpy(got, o.body + jl, sizeof(got));
    cr_assert_float_eq(got[0], 3.0f, 0);
    cr_assert_float_eq(got[1], 4.5f, 0);
}

Test(service, infer_on_a_worker_completes_later)
{
    rest_out o;
    rest(&o, "POST", "/v2/models/dbl/infer", fp32_req);
    cr_assert_eq(o.called, 0, "a non-inline model must not answer on the caller's thread");
    cr_assert_eq(host.ninfer, 1);
    host.now += 2000000;
    cr_assert_eq(run_workers(), 1);
    ASSERT_REST(&o, 200, "\"name\":\"OUT\"");
    cr_assert(strstr(o.body, "[3.0,4.0]") != NULL, "%s", o.body);
    cr_assert(strstr(o.body, "\"id\":\"r1\"") != NULL, "%s", o.body);

    /* A runtime's failure reaches the caller with the mapped status. */
    rest(&o, "POST", "/v2/models/dbl/infer",
         "{\"inputs\": [{\"name\": \"FAIL\", \"datatype\": \"FP32\", \"shape\": [1], \"data\": "
         "[1]}]}");
    cr_assert_eq(o.called, 0);
    run_workers();
    ASSERT_REST(&o, 400, "asked to fail");
}

Test(service, large_body_decodes_on_a_worker)
{
    /* 6,000 elements of JSON: past the offload size, so even an inline model's request
       leaves the caller's thread (its I/O loop) for decoding, running and encoding. */
    static const char head[] = "{\"id\": \"big\", \"inputs\": [{\"name\": \"x\", "
                               "\"datatype\": \"FP32\", \"shape\": [6000], \"data\": [";
    size_t cap = sizeof(head) + 6000 * 4 + 8, n, i;
    char *body = malloc(cap);
    rest_out o;
    cr_assert_not_null(body);
    n = (size_t)snprintf(body, cap, "%s", head);
    for (i = 0; i < 6000; i++)
        n += (size_t)snprintf(body + n, cap - n, i ? ",%d" : "%d", (int)(i % 10));
    n += (size_t)snprintf(body + n, cap - n, "]}]}");
    cr_assert_gt(n, 8 * 1024);
    rest_h(&o, "POST", "/v2/models/ident/infer", body, n, NULL, 0);
    cr_assert_eq(o.called, 0, "a large body must not be decoded on the caller's thread");
    cr_assert_eq(host.ninfer, 1);
    cr_assert_eq(run_workers(), 1);
    ASSERT_REST(&o, 200, "\"id\":\"big\"");
    /* A bad large body is refused from the worker, naming the field. */
    body[n - 5] = 'x';
    rest_h(&o, "POST", "/v2/models/ident/infer", body, n, NULL, 0);
    cr_assert_eq(o.called, 0);
    run_workers();
    cr_assert_eq(o.status, 400, "%d %s", o.status, o.body);
    free(body);
}

/* --- Batching ------------------------------------------------------------------------------ */

Test(service, batch_waits_for_its_deadline)
{
    rest_out a, b;
    int64_t t0 = host.now, window = 10000000; /* max_batch_time 0.01 s */
    rest(&a, "POST", "/v2/models/batched/infer", fp32_req);
    host.now += 1000;
    rest(&b, "POST", "/v2/models/batched/infer", fp32_req);
    cr_assert_eq(a.called + b.called, 0);
    cr_assert_eq(host.ninfer, 0, "nothing runs before the batch is full or due");
    /* One timer, for the first request's deadline. */
    cr_assert_eq(host.narmed, 1);
    cr_assert_eq(host.armed[0], t0 + window);

    /* A timer that fires early takes nothing and asks again. */
    host.now = t0 + window / 2;
    seldon_service_timer(svc, host.now);
    cr_assert_eq(host.ninfer, 0);
    cr_assert_eq(host.narmed, 2);
    cr_assert_eq(host.armed[1], t0 + window);

    host.now = t0 + window;
    seldon_service_timer(svc, host.now);
    cr_assert_eq(host.ninfer, 1, "one job for the whole batch");
    cr_assert_eq(host.narmed, 2, "nothing left to wait for");
    run_workers();
    ASSERT_REST(&a, 200, "[3.0,4.0]");
    ASSERT_REST(&b, 200, "[3.0,4.0]");

    {
        seldon_buf m = SELDON_BUF_INIT;
        CHECK_OK(seldon_metrics_render(&m, metrics));
        cr_assert(strstr((char *)m.data, "seldon_model_batch_size_count{model=\"batched\"} 1") !=
                      NULL,
                  "%.*s", (int)m.len, m.data);
        seldon_buf_free(&m);
    }
}

Test(service, full_batch_goes_at_once)
{
    rest_out o[4];
    int i;
    for (i = 0; i < 4; i++)
        rest(&o[i], "POST", "/v2/models/batched/infer", fp32_req);
    cr_assert_eq(host.ninfer, 1, "a full batch is handed over without waiting");
    run_workers();
    for (i = 0; i < 4; i++)
        ASSERT_REST(&o[i], 200, "[3.0,4.0]");
    /* The timer armed for the first request finds nothing left. */
    host.now += 20000000;
    seldon_service_timer(svc, host.now);
    cr_assert_eq(host.ninfer, 0);
}

Test(service, flush_hands_out_waiting_batches)
{
    rest_out o;
    rest(&o, "POST", "/v2/models/batched/infer", fp32_req);
    cr_assert_eq(host.ninfer, 0);
    seldon_service_flush(svc);
    cr_assert_eq(host.ninfer, 1);
    run_workers();
    ASSERT_REST(&o, 200, "[3.0,4.0]");
}

/* --- Repository ------------------------------------------------------------------------------ */

Test(service, load_runs_on_the_load_executor)
{
    rest_out load, inf;
    rest(&load, "POST", "/v2/repository/models/later/load", "");
    cr_assert_eq(load.called, 0);
    cr_assert_eq(host.nload, 1, "the load went to the load executor");
    cr_assert_eq(host.ninfer, 0, "and not to the inference workers");
    /* While that load waits, other models still serve. */
    rest(&inf, "POST", "/v2/models/ident/infer", fp32_req);
    ASSERT_REST(&inf, 200, "r1");
    rest(&inf, "POST", "/v2/models/dbl/infer", fp32_req);
    run_workers();
    ASSERT_REST(&inf, 200, "[3.0,4.0]");
    cr_assert_eq(load.called, 0);
    run_loads();
    ASSERT_REST(&load, 200, "{}");
    rest(&inf, "POST", "/v2/models/later/infer", fp32_req);
    ASSERT_REST(&inf, 200, "r1");

    rest(&load, "POST", "/v2/repository/models/later/unload", "");
    run_loads();
    ASSERT_REST(&load, 200, "{}");
    rest(&inf, "POST", "/v2/models/later/infer", fp32_req);
    ASSERT_REST(&inf, 404, "later");

    rest(&load, "POST", "/v2/repository/models/nope/load", "");
    run_loads();
    ASSERT_REST(&load, 404, "nope");
    rest(&load, "POST", "/v2/repository/models/broken/load", "");
    run_loads();
    ASSERT_REST(&load, 400, "no.such.runtime");
}

Test(service, repository_index)
{
    rest_out o;
    rest(&o, "POST", "/v2/repository/index", "");
    ASSERT_REST(&o, 200, "\"name\":\"later\"");
    rest(&o, "POST", "/v2/repository/index", "{\"ready\": true}");
    ASSERT_REST(&o, 200, "\"name\":\"ident\"");
    cr_assert(strstr(o.body, "later") == NULL, "%s", o.body);
    rest(&o, "POST", "/v2/repository/index", "{\"ready\": 1}");
    ASSERT_REST(&o, 400, "ready");
}

Test(service, metrics_count_requests)
{
    rest_out o;
    rest(&o, "POST", "/v2/models/ident/infer", fp32_req);
    rest(&o, "POST", "/v2/models/nope/infer", fp32_req);
    rest(&o, "GET", "/v2/health/live", NULL);
    rest(&o, "GET", "/metrics", NULL);
    cr_assert_eq(o.status, 200);
    cr_assert_str_eq(o.ctype, "text/plain; version=0.0.4");
    cr_assert(strstr(o.body, "seldon_model_infer_total{model=\"ident\",method_type=\"rest\","
                             "code=\"200\"} 1") != NULL,
              "%s", o.body);
    cr_assert(strstr(o.body, "seldon_model_infer_total{model=\"\",method_type=\"rest\","
                             "code=\"404\"} 1") != NULL,
              "%s", o.body);
    cr_assert(strstr(o.body, "seldon_server_requests_total{endpoint=\"live\",method_type=\"rest\","
                             "code=\"200\"} 1") != NULL,
              "%s", o.body);
    cr_assert(strstr(o.body, "seldon_loaded_model_gauge 3") != NULL, "%s", o.body);
}

/* --- gRPC ------------------------------------------------------------------------------------ */

typedef struct grpc_out {
    int called;
    int status;
    char message[512];
    uint8_t body[8192];
    size_t len;
} grpc_out;

static void on_grpc(void *ud, int32_t status, const char *message, seldon_buf *response)
{
    grpc_out *o = ud;
    o->called++;
    o->status = status;
    snprintf(o->message, sizeof(o->message), "%s", message ? message : "");
    cr_assert_lt(response->len, sizeof(o->body));
    if (response->len)
        memcpy(o->body, response->data, response->len);
    o->len = response->len;
}

static void grpc(grpc_out *o, const char *method, const void *req, size_t len)
{
    char path[128];
    memset(o, 0, sizeof(*o));
    snprintf(path, sizeof(path), SVC "%s", method);
    CHECK_OK(seldon_service_grpc(svc, path, strlen(path), req, len, on_grpc, o));
}

static void grpc_msg(grpc_out *o, const char *method, const ProtobufCMessage *m)
{
    uint8_t buf[4096];
    size_t n = protobuf_c_message_pack(m, buf);
    grpc(o, method, buf, n);
}

/* A ModelInferRequest for model, id, one FP32 input named input of shape [2]. */
static size_t infer_request(uint8_t *out, const char *model, const char *id, const char *input)
{
    seldon_msg *m = NULL;
    seldon_buf b = SELDON_BUF_INIT;
    const int64_t shape[1] = {2};
    const float v[2] = {1, 2};
    size_t n;
    CHECK_OK(seldon_msg_new(&m, SELDON_MSG_REQUEST));
    CHECK_OK(seldon_msg_set_id(m, id, strlen(id)));
    CHECK_OK(seldon_msg_set_model(m, model, strlen(model), "", 0));
    CHECK_OK(seldon_msg_add_tensor(NULL, m, input, strlen(input), SELDON_DT_FP32, shape, 1, v,
                                   sizeof(v), 0));
    CHECK_OK(seldon_msg_encode_pb(&b, m, 0));
    memcpy(out, b.data, b.len);
    n = b.len;
    seldon_buf_free(&b);
    seldon_msg_free(m);
    return n;
}

Test(service, grpc_method_table)
{
    size_t i, n = seldon_service_grpc_method_count();
    int streams = 0;
    cr_assert_eq(n, 10);
    for (i = 0; i < n; i++) {
        int32_t st = -1;
        const char *p = seldon_service_grpc_method(i, &st);
        cr_assert_not_null(p);
        cr_assert(strncmp(p, SVC, strlen(SVC)) == 0, "%s", p);
        streams += st;
        if (st)
            cr_assert_str_eq(p, SVC "ModelStreamInfer");
    }
    cr_assert_eq(streams, 1);
    cr_assert_null(seldon_service_grpc_method(n, NULL));
}

Test(service, grpc_server_methods)
{
    grpc_out o;
    Inference__ServerLiveResponse *live;
    Inference__ServerReadyResponse *ready;
    Inference__ServerMetadataResponse *meta;
    grpc(&o, "ServerLive", "", 0);
    cr_assert_eq(o.status, 0);
    live = inference__server_live_response__unpack(NULL, o.len, o.body);
    cr_assert(live != NULL && live->live);
    inference__server_live_response__free_unpacked(live, NULL);
    seldon_service_set_ready(svc, 0);
    grpc(&o, "ServerReady", "", 0);
    ready = inference__server_ready_response__unpack(NULL, o.len, o.body);
    cr_assert(ready != NULL && !ready->ready);
    inference__server_ready_response__free_unpacked(ready, NULL);
    grpc(&o, "ServerMetadata", "", 0);
    meta = inference__server_metadata_response__unpack(NULL, o.len, o.body);
    cr_assert_not_null(meta);
    cr_assert_str_eq(meta->name, "seldon");
    cr_assert_eq(meta->n_extensions, 4);
    inference__server_metadata_response__free_unpacked(meta, NULL);
    grpc(&o, "NoSuchMethod", "", 0);
    cr_assert_eq(o.called, 1);
    cr_assert_eq(o.status, 12);
}

Test(service, grpc_model_methods)
{
    grpc_out o;
    Inference__ModelReadyRequest q = INFERENCE__MODEL_READY_REQUEST__INIT;
    Inference__ModelReadyResponse *r;
    Inference__ModelMetadataResponse *md;
    q.name = "ident";
    grpc_msg(&o, "ModelReady", &q.base);
    cr_assert_eq(o.status, 0, "%s", o.message);
    r = inference__model_ready_response__unpack(NULL, o.len, o.body);
    cr_assert(r != NULL && r->ready);
    inference__model_ready_response__free_unpacked(r, NULL);
    q.name = "later";
    grpc_msg(&o, "ModelReady", &q.base);
    cr_assert_eq(o.status, 0, "%s", o.message);
    r = inference__model_ready_response__unpack(NULL, o.len, o.body);
    cr_assert(r != NULL && !r->ready);
    inference__model_ready_response__free_unpacked(r, NULL);
    q.name = "nope";
    grpc_msg(&o, "ModelReady", &q.base);
    cr_assert_eq(o.status, 5);
    cr_assert(strstr(o.message, "nope") != NULL, "%s", o.message);
    grpc(&o, "ModelReady", "\xff\xff", 2);
    cr_assert_eq(o.status, 3);
    q.name = "ident";
    grpc_msg(&o, "ModelMetadata", &q.base);
    cr_assert_eq(o.status, 0, "%s", o.message);
    md = inference__model_metadata_response__unpack(NULL, o.len, o.body);
    cr_assert(md != NULL);
    cr_assert_str_eq(md->name, "ident");
    inference__model_metadata_response__free_unpacked(md, NULL);
    q.name = "nope";
    grpc_msg(&o, "ModelMetadata", &q.base);
    cr_assert_eq(o.status, 5);
}

Test(service, grpc_model_infer)
{
    uint8_t req[512];
    size_t n = infer_request(req, "ident", "g1", "IN");
    grpc_out o;
    seldon_msg *resp = NULL;
    size_t idl = 0;
    grpc(&o, "ModelInfer", req, n);
    cr_assert_eq(o.called, 1);
    cr_assert_eq(o.status, 0, "%s", o.message);
    CHECK_OK(seldon_msg_new(&resp, SELDON_MSG_RESPONSE));
    CHECK_OK(seldon_msg_decode_pb(resp, o.body, o.len, 0));
    cr_assert_eq(strncmp(seldon_msg_id(resp, &idl), "g1", 2), 0);
    cr_assert_eq(seldon_msg_tensor_count(resp), 1);
    seldon_msg_free(resp);

    n = infer_request(req, "nope", "g2", "IN");
    grpc(&o, "ModelInfer", req, n);
    cr_assert_eq(o.status, 5);
    cr_assert(strstr(o.message, "nope") != NULL, "%s", o.message);

    /* On a worker: answered once the job runs. */
    n = infer_request(req, "dbl", "g3", "IN");
    grpc(&o, "ModelInfer", req, n);
    cr_assert_eq(o.called, 0);
    run_workers();
    cr_assert_eq(o.called, 1);
    cr_assert_eq(o.status, 0, "%s", o.message);
}

/* Unpacks a stream frame; checks its id and whether it carries an error. */
static void check_frame(const grpc_out *o, const char *id, const char *error_needle)
{
    Inference__ModelStreamInferResponse *f;
    cr_assert_eq(o->called, 1);
    cr_assert_eq(o->status, 0, "a stream message never fails the stream: %s", o->message);
    f = inference__model_stream_infer_response__unpack(NULL, o->len, o->body);
    cr_assert_not_null(f, "not a ModelStreamInferResponse");
    cr_assert_not_null(f->infer_response, "infer_response missing");
    cr_assert_str_eq(f->infer_response->id, id);
    if (error_needle == NULL)
        cr_assert_str_eq(f->error_message, "");
    else
        cr_assert(strstr(f->error_message, error_needle) != NULL, "'%s' lacks '%s'",
                  f->error_message, error_needle);
    inference__model_stream_infer_response__free_unpacked(f, NULL);
}

Test(service, stream_every_response_carries_its_id)
{
    uint8_t req[512];
    size_t n;
    grpc_out o;

    n = infer_request(req, "ident", "s-ok", "IN");
    grpc(&o, "ModelStreamInfer", req, n);
    check_frame(&o, "s-ok", NULL);

    n = infer_request(req, "nope", "s-404", "IN");
    grpc(&o, "ModelStreamInfer", req, n);
    check_frame(&o, "s-404", "nope");

    /* A request that does not decode: the id still comes back. */
    n = infer_request(req, "ident", "s-bad", "IN");
    req[n++] = 0xff;
    grpc(&o, "ModelStreamInfer", req, n);
    check_frame(&o, "s-bad", "");

    /* A failure on a worker, after the request bytes are gone. */
    n = infer_request(req, "dbl", "s-late", "FAIL");
    grpc(&o, "ModelStreamInfer", req, n);
    memset(req, 0, sizeof(req));
    cr_assert_eq(o.called, 0);
    run_workers();
    check_frame(&o, "s-late", "asked to fail");
}

Test(service, grpc_repository)
{
    grpc_out o;
    Inference__RepositoryIndexRequest ix = INFERENCE__REPOSITORY_INDEX_REQUEST__INIT;
    Inference__RepositoryIndexResponse *ir;
    Inference__RepositoryModelLoadRequest ld = INFERENCE__REPOSITORY_MODEL_LOAD_REQUEST__INIT;
    size_t i;
    int seen = 0;
    grpc_msg(&o, "RepositoryIndex", &ix.base);
    cr_assert_eq(o.status, 0);
    ir = inference__repository_index_response__unpack(NULL, o.len, o.body);
    cr_assert_not_null(ir);
    for (i = 0; i < ir->n_models; i++)
        seen += strcmp(ir->models[i]->name, "later") == 0;
    cr_assert_eq(seen, 1);
    inference__repository_index_response__free_unpacked(ir, NULL);

    ld.model_name = "later";
    grpc_msg(&o, "RepositoryModelLoad", &ld.base);
    cr_assert_eq(o.called, 0);
    cr_assert_eq(host.nload, 1);
    cr_assert_eq(host.ninfer, 0);
    run_loads();
    cr_assert_eq(o.status, 0, "%s", o.message);
    grpc_msg(&o, "RepositoryModelUnload", &ld.base);
    run_loads();
    cr_assert_eq(o.status, 0, "%s", o.message);
    ld.model_name = "nope";
    grpc_msg(&o, "RepositoryModelLoad", &ld.base);
    run_loads();
    cr_assert_eq(o.status, 5);
    ld.model_name = "";
    grpc_msg(&o, "RepositoryModelLoad", &ld.base);
    cr_assert_eq(o.status, 3);
    cr_assert_eq(host.nload, 0);
}

/* --- In process -------------------------------------------------------------------------- */

typedef struct local_out {
    int called;
    int status;
    char message[256];
} local_out;

static void on_local(void *ud, int32_t status, const char *message)
{
    local_out *o = ud;
    o->called++;
    o->status = status;
    snprintf(o->message, sizeof(o->message), "%s", message ? message : "");
}

Test(service, in_process)
{
    seldon_msg *req = NULL, *resp = NULL;
    const int64_t shape[1] = {2};
    const float v[2] = {1, 2};
    seldon_tensor t;
    local_out o;
    CHECK_OK(seldon_msg_new(&req, SELDON_MSG_REQUEST));
    CHECK_OK(seldon_msg_new(&resp, SELDON_MSG_RESPONSE));
    CHECK_OK(seldon_msg_set_model(req, "dbl", 3, "", 0));
    CHECK_OK(seldon_msg_set_id(req, "p1", 2));
    CHECK_OK(seldon_msg_add_tensor(NULL, req, "IN", 2, SELDON_DT_FP32, shape, 1, v, sizeof(v), 0));
    memset(&o, 0, sizeof(o));
    CHECK_OK(seldon_service_infer(svc, req, resp, on_local, &o));
    cr_assert_eq(o.called, 0);
    run_workers();
    cr_assert_eq(o.called, 1);
    cr_assert_eq(o.status, 0, "%s", o.message);
    CHECK_OK(seldon_msg_tensor(&t, resp, 0));
    cr_assert_float_eq(((float *)t.data)[1], 4.0f, 0);

    CHECK_OK(seldon_msg_set_model(req, "nope", 4, "", 0));
    memset(&o, 0, sizeof(o));
    CHECK_OK(seldon_service_infer(svc, req, resp, on_local, &o));
    cr_assert_eq(o.called, 1);
    cr_assert_eq(o.status, SELDON_ENOTFOUND);
    cr_assert(strstr(o.message, "nope") != NULL, "%s", o.message);
    seldon_msg_free(req);
    seldon_msg_free(resp);
}

Test(service, stream_survives_every_truncation_and_bit_flip)
{
    uint8_t req[512], bad[512];
    size_t n = infer_request(req, "ident", "cut", "IN"), k;
    grpc_out o;
    for (k = 0; k <= n; k++) {
        Inference__ModelStreamInferResponse *f;
        grpc(&o, "ModelStreamInfer", req, k);
        cr_assert_eq(o.called, 1, "prefix %zu", k);
        f = inference__model_stream_infer_response__unpack(NULL, o.len, o.body);
        cr_assert_not_null(f, "prefix %zu: not a ModelStreamInferResponse", k);
        inference__model_stream_infer_response__free_unpacked(f, NULL);
    }
    for (k = 0; k < n * 8; k++) {
        memcpy(bad, req, n);
        bad[k / 8] ^= (uint8_t)(1u << (k % 8));
        grpc(&o, "ModelStreamInfer", bad, n);
        run_workers();
        cr_assert_eq(o.called, 1, "flip %zu", k);
        cr_assert_eq(o.status, 0);
    }
}

/* Out of memory anywhere on the way: every request is still answered exactly once. */
Test(service, every_allocation_failure_still_answers_once)
{
    static const char *const models[] = {"/v2/models/ident/infer", "/v2/models/dbl/infer",
                                         "/v2/models/batched/infer"};
    uint8_t req[512];
    size_t m, n = infer_request(req, "dbl", "oom", "IN");
    int64_t k;
    for (k = 0; k < 60; k++) {
        for (m = 0; m < 3; m++) {
            rest_out o;
            sdn_alloc_fail_after(k);
            rest(&o, "POST", models[m], fp32_req);
            sdn_alloc_fail_after(-1);
            seldon_service_flush(svc);
            run_workers();
            cr_assert_eq(o.called, 1, "%s, allocation %lld: done called %d times", models[m],
                         (long long)k, o.called);
            cr_assert(o.status == 200 || o.status == 500, "%s: %d %s", models[m], o.status,
                      o.body);
        }
        {
            grpc_out o;
            sdn_alloc_fail_after(k);
            grpc(&o, "ModelStreamInfer", req, n);
            sdn_alloc_fail_after(-1);
            run_workers();
            cr_assert_eq(o.called, 1, "stream, allocation %lld", (long long)k);
            /* A frame when one can be built; else RESOURCE_EXHAUSTED, which ends the stream. */
            cr_assert(o.status == 0 || o.status == 8, "stream: status %d", o.status);
        }
    }
}
