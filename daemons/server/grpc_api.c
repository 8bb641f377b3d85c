/*
 * inference.GRPCInferenceService on the gRPC transport: every method,
 * streaming inference and the repository extension included.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_predict_v2.pb-c.h"
#include "server.h"

#define SVC "/inference.GRPCInferenceService/"

static void reply_msg(srv *s, sdg_call *call, const char *endpoint, const ProtobufCMessage *m)
{
    seldon_buf b = SELDON_BUF_INIT;
    size_t n = protobuf_c_message_get_packed_size(m);
    if (seldon_buf_reserve(&b, n ? n : 1) != 0) {
        srv_count_request(s, endpoint, SRV_GRPC, 13);
        sdg_fail(call, 13, "server out of memory");
        return;
    }
    b.len = protobuf_c_message_pack(m, b.data);
    srv_count_request(s, endpoint, SRV_GRPC, 0);
    sdg_reply(call, &b);
}

static void fail(srv *s, sdg_call *call, const char *endpoint, int rc, const char *message)
{
    srv_count_request(s, endpoint, SRV_GRPC, srv_grpc_status(rc));
    sdg_fail(call, srv_grpc_status(rc), message);
}

static void server_live(void *ud, sdg_call *call, const uint8_t *req, size_t len)
{
    Inference__ServerLiveResponse r = INFERENCE__SERVER_LIVE_RESPONSE__INIT;
    (void)req;
    (void)len;
    r.live = 1;
    reply_msg(ud, call, "live", &r.base);
}

static void server_ready(void *ud, sdg_call *call, const uint8_t *req, size_t len)
{
    srv *s = ud;
    Inference__ServerReadyResponse r = INFERENCE__SERVER_READY_RESPONSE__INIT;
    (void)req;
    (void)len;
    r.ready = atomic_load(&s->ready) != 0;
    reply_msg(s, call, "ready", &r.base);
}

static void server_metadata(void *ud, sdg_call *call, const uint8_t *req, size_t len)
{
    static char *extensions[] = {"binary_tensor_data", "model_repository", "adaptive_batching",
                                 "metrics"};
    Inference__ServerMetadataResponse r = INFERENCE__SERVER_METADATA_RESPONSE__INIT;
    (void)req;
    (void)len;
    r.name = "seldon";
    r.version = (char *)(uintptr_t)seldon_version();
    r.n_extensions = sizeof(extensions) / sizeof(extensions[0]);
    r.extensions = extensions;
    reply_msg(ud, call, "server_metadata", &r.base);
}

/* ModelReady and ModelMetadata share their request shape (name, version). */
static int acquire_named(srv *s, seldon_model **m, sdg_call *call, const char *endpoint,
                         const uint8_t *req, size_t len, int *known)
{
    Inference__ModelReadyRequest *r = inference__model_ready_request__unpack(NULL, len, req);
    int rc;
    if (r == NULL) {
        fail(s, call, endpoint, SELDON_EPARSE, "request: not a valid protobuf message");
        return -1;
    }
    rc = seldon_repo_acquire(m, s->repo, r->name, strlen(r->name), r->version,
                             strlen(r->version));
    *known = seldon_repo_model_state(s->repo, r->name, strlen(r->name)) >= 0;
    inference__model_ready_request__free_unpacked(r, NULL);
    return rc;
}

static void model_ready(void *ud, sdg_call *call, const uint8_t *req, size_t len)
{
    srv *s = ud;
    Inference__ModelReadyResponse r = INFERENCE__MODEL_READY_RESPONSE__INIT;
    seldon_model *m = NULL;
    int known = 0, rc = acquire_named(s, &m, call, "model_ready", req, len, &known);
    if (rc == -1)
        return;
    if (rc < 0 && !known) {
        fail(s, call, "model_ready", rc, seldon_last_error());
        return;
    }
    r.ready = rc == 0;
    seldon_model_release(m);
    reply_msg(s, call, "model_ready", &r.base);
}

static void model_metadata(void *ud, sdg_call *call, const uint8_t *req, size_t len)
{
    srv *s = ud;
    seldon_model *m = NULL;
    seldon_buf b = SELDON_BUF_INIT;
    int known = 0, rc = acquire_named(s, &m, call, "model_metadata", req, len, &known);
    if (rc == -1)
        return;
    if (rc == 0)
        rc = seldon_model_metadata_pb(&b, m);
    seldon_model_release(m);
    if (rc < 0) {
        seldon_buf_free(&b);
        fail(s, call, "model_metadata", rc, seldon_last_error());
        return;
    }
    srv_count_request(s, "model_metadata", SRV_GRPC, 0);
    sdg_reply(call, &b);
}

/* --- Inference ------------------------------------------------------------ */

typedef struct grpc_infer {
    srv *s;
    sdg_call *call;
    int stream;
    seldon_model *model;
    seldon_msg *request;
    seldon_msg *response;
    seldon_infer *infer;
    int64_t start_ns;
} grpc_infer;

static void grpc_infer_free(grpc_infer *g)
{
    seldon_infer_free(g->infer);
    seldon_msg_free(g->request);
    seldon_msg_free(g->response);
    seldon_model_release(g->model);
    free(g);
}

/* A ModelStreamInferResponse around an encoded ModelInferResponse, or carrying an error. */
static int stream_frame(seldon_buf *out, int field, const uint8_t *bytes, size_t len)
{
    uint8_t head[11];
    size_t h = 0, v = len;
    head[h++] = (uint8_t)(field << 3 | 2);
    do {
        head[h++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    if (seldon_buf_reserve(out, h + len) != 0)
        return SELDON_ENOMEM;
    memcpy(out->data + out->len, head, h);
    if (len)
        memcpy(out->data + out->len + h, bytes, len);
    out->len += h + len;
    return 0;
}

static void grpc_finish(grpc_infer *g, int status, const char *message)
{
    double secs = (double)(srv_now_ns() - g->start_ns) * 1e-9;
    seldon_buf body = SELDON_BUF_INIT;
    int code;
    if (status == 0) {
        status = seldon_msg_encode_pb(&body, g->response, 0);
        if (status < 0)
            message = seldon_last_error();
    }
    code = srv_grpc_status(status);
    srv_count_infer(g->s, g->model, SRV_GRPC, code, secs);
    if (!g->stream) {
        if (status == 0)
            sdg_reply(g->call, &body);
        else
            sdg_fail(g->call, code, message);
    } else {
        seldon_buf frame = SELDON_BUF_INIT;
        if (status == 0)
            stream_frame(&frame, 2, body.data, body.len);
        else
            stream_frame(&frame, 1, (const uint8_t *)message, strlen(message));
        sdg_stream_write(g->call, &frame);
        seldon_buf_free(&frame);
        sdg_call_release(g->call);
    }
    seldon_buf_free(&body);
    grpc_infer_free(g);
}

static void infer_done(void *user_data, seldon_infer *infer, int32_t status, const char *message)
{
    (void)infer;
    grpc_finish(user_data, status, message);
}

static void start_infer(srv *s, sdg_call *call, const uint8_t *req, size_t len, int stream)
{
    grpc_infer *g = calloc(1, sizeof(*g));
    size_t nlen = 0, vlen = 0;
    const char *name, *version;
    int rc;
    if (g == NULL) {
        sdg_fail(call, 8, "server out of memory");
        return;
    }
    g->s = s;
    g->call = call;
    g->stream = stream;
    g->start_ns = srv_now_ns();
    if (stream)
        sdg_call_hold(call);
    rc = seldon_msg_new(&g->request, SELDON_MSG_REQUEST);
    if (rc == 0)
        rc = seldon_msg_new(&g->response, SELDON_MSG_RESPONSE);
    if (rc == 0)
        rc = seldon_msg_decode_pb(g->request, req, len, 0);
    if (rc == 0) {
        name = seldon_msg_model_name(g->request, &nlen);
        version = seldon_msg_model_version(g->request, &vlen);
        rc = seldon_repo_acquire(&g->model, s->repo, name, nlen, version, vlen);
    }
    if (rc == 0)
        rc = seldon_model_check_request(g->model, g->request);
    if (rc == 0)
        rc = seldon_infer_new(&g->infer, g->request, g->response, infer_done, g);
    if (rc < 0) {
        char why[512];
        snprintf(why, sizeof(why), "%s", seldon_last_error());
        grpc_finish(g, rc, why);
        return;
    }
    srv_submit(s, g->model, g->infer);
}

static void model_infer(void *ud, sdg_call *call, const uint8_t *req, size_t len)
{
    start_infer(ud, call, req, len, 0);
}

static void model_stream_infer(void *ud, sdg_call *call, const uint8_t *req, size_t len)
{
    start_infer(ud, call, req, len, 1);
}

/* --- Repository ------------------------------------------------------------ */

static void repository_index(void *ud, sdg_call *call, const uint8_t *req, size_t len)
{
    srv *s = ud;
    Inference__RepositoryIndexRequest *r = inference__repository_index_request__unpack(NULL, len, req);
    seldon_buf b = SELDON_BUF_INIT;
    int rc;
    if (r == NULL) {
        fail(s, call, "repository_index", SELDON_EPARSE, "request: not a valid protobuf message");
        return;
    }
    rc = seldon_repo_index_pb(&b, s->repo, r->ready);
    inference__repository_index_request__free_unpacked(r, NULL);
    if (rc < 0) {
        seldon_buf_free(&b);
        fail(s, call, "repository_index", rc, seldon_last_error());
        return;
    }
    srv_count_request(s, "repository_index", SRV_GRPC, 0);
    sdg_reply(call, &b);
}

typedef struct repo_job {
    srv_job job;
    srv *s;
    sdg_call *call;
    int unload;
    char name[256];
} repo_job;

/*
 * NOT_FOUND only for a model the repository does not know (or, to unload,
 * one not loaded). Runtimes and plugin lookup say SELDON_ENOTFOUND too (an
 * unknown implementation, a missing model file), but once the model is
 * known its load was tried and failed.
 */
static int repo_job_code(const repo_job *j, int rc)
{
    if (rc == SELDON_ENOTFOUND &&
        (j->unload || seldon_repo_model_state(j->s->repo, j->name, strlen(j->name)) < 0))
        return SELDON_ENOTFOUND;
    return SELDON_EINVAL;
}

static void repo_job_run(srv_job *job)
{
    repo_job *j = (repo_job *)job;
    const char *endpoint = j->unload ? "repository_unload" : "repository_load";
    int rc = j->unload ? seldon_repo_unload(j->s->repo, j->name)
                       : seldon_repo_load(j->s->repo, j->name);
    srv_refresh_loaded(j->s);
    if (rc == 0) {
        /* Both responses are empty messages. */
        seldon_buf empty = SELDON_BUF_INIT;
        srv_count_request(j->s, endpoint, SRV_GRPC, 0);
        sdg_reply(j->call, &empty);
    } else {
        /* A load that fails is the caller's problem to fix: INVALID_ARGUMENT with the reason. */
        fail(j->s, j->call, endpoint, repo_job_code(j, rc), seldon_last_error());
    }
    free(j);
}

static void repository_load_unload(srv *s, sdg_call *call, const uint8_t *req, size_t len,
                                   int unload)
{
    /* Load and unload requests share field numbers: repository_name = 1, model_name = 2. */
    Inference__RepositoryModelLoadRequest *r =
        inference__repository_model_load_request__unpack(NULL, len, req);
    const char *endpoint = unload ? "repository_unload" : "repository_load";
    repo_job *j;
    if (r == NULL) {
        fail(s, call, endpoint, SELDON_EPARSE, "request: not a valid protobuf message");
        return;
    }
    j = calloc(1, sizeof(*j));
    if (j == NULL || strlen(r->model_name) >= sizeof(j->name) || r->model_name[0] == '\0') {
        fail(s, call, endpoint, j ? SELDON_EINVAL : SELDON_ENOMEM,
             j ? "model_name: missing or too long" : "server out of memory");
        free(j);
        inference__repository_model_load_request__free_unpacked(r, NULL);
        return;
    }
    j->job.run = repo_job_run;
    j->s = s;
    j->call = call;
    j->unload = unload;
    snprintf(j->name, sizeof(j->name), "%s", r->model_name);
    inference__repository_model_load_request__free_unpacked(r, NULL);
    srv_enqueue(s, &j->job);
}

static void repository_load(void *ud, sdg_call *call, const uint8_t *req, size_t len)
{
    repository_load_unload(ud, call, req, len, 0);
}

static void repository_unload(void *ud, sdg_call *call, const uint8_t *req, size_t len)
{
    repository_load_unload(ud, call, req, len, 1);
}

size_t srv_grpc_methods(sdg_method *out, size_t cap, srv *s)
{
    const sdg_method methods[] = {
        {SVC "ServerLive", 0, server_live, NULL, s},
        {SVC "ServerReady", 0, server_ready, NULL, s},
        {SVC "ModelReady", 0, model_ready, NULL, s},
        {SVC "ServerMetadata", 0, server_metadata, NULL, s},
        {SVC "ModelMetadata", 0, model_metadata, NULL, s},
        {SVC "ModelInfer", 0, model_infer, NULL, s},
        {SVC "ModelStreamInfer", 1, model_stream_infer, NULL, s},
        {SVC "RepositoryIndex", 0, repository_index, NULL, s},
        {SVC "RepositoryModelLoad", 0, repository_load, NULL, s},
        {SVC "RepositoryModelUnload", 0, repository_unload, NULL, s},
    };
    size_t n = sizeof(methods) / sizeof(methods[0]);
    if (n > cap)
        n = cap;
    memcpy(out, methods, n * sizeof(*methods));
    return n;
}
