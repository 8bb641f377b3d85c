/*
 * The gRPC API of the service (inference.GRPCInferenceService: every method,
 * the stream and the repository extension included) and in-process calls.
 */
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "grpc_predict_v2.pb-c.h"
#include "service/service.h"

#define SVC "/inference.GRPCInferenceService/"

static void grpc_fail(seldon_service *svc, const char *endpoint, int code, const char *message,
                      seldon_grpc_done_fn done, void *ud)
{
    char why[SDN_WHY_MAX];
    seldon_buf empty = SELDON_BUF_INIT;
    snprintf(why, sizeof(why), "%s", message ? message : "");
    sdn_svc_count_request(svc, endpoint, SDN_SVC_GRPC, code);
    done(ud, code, why, &empty);
    seldon_buf_free(&empty);
}

static void grpc_reply(seldon_service *svc, const char *endpoint, seldon_buf *b,
                       seldon_grpc_done_fn done, void *ud)
{
    sdn_svc_count_request(svc, endpoint, SDN_SVC_GRPC, 0);
    done(ud, 0, NULL, b);
    seldon_buf_free(b);
}

static void reply_msg(seldon_service *svc, const char *endpoint, const ProtobufCMessage *m,
                      seldon_grpc_done_fn done, void *ud)
{
    seldon_buf b = SELDON_BUF_INIT;
    size_t n = protobuf_c_message_get_packed_size(m);
    if (sdn_buf_reserve(&b, n ? n : 1) != 0) {
        grpc_fail(svc, endpoint, 13, "server out of memory", done, ud);
        return;
    }
    b.len = protobuf_c_message_pack(m, b.data);
    grpc_reply(svc, endpoint, &b, done, ud);
}

static void server_live(seldon_service *svc, const uint8_t *req, size_t len,
                        seldon_grpc_done_fn done, void *ud)
{
    Inference__ServerLiveResponse r = INFERENCE__SERVER_LIVE_RESPONSE__INIT;
    (void)req;
    (void)len;
    r.live = 1;
    reply_msg(svc, "live", &r.base, done, ud);
}

static void server_ready(seldon_service *svc, const uint8_t *req, size_t len,
                         seldon_grpc_done_fn done, void *ud)
{
    Inference__ServerReadyResponse r = INFERENCE__SERVER_READY_RESPONSE__INIT;
    (void)req;
    (void)len;
    r.ready = atomic_load(&svc->ready) != 0;
    reply_msg(svc, "ready", &r.base, done, ud);
}

static void server_metadata(seldon_service *svc, const uint8_t *req, size_t len,
                            seldon_grpc_done_fn done, void *ud)
{
    static char *extensions[] = {"binary_tensor_data", "model_repository", "adaptive_batching",
                                 "metrics"};
    Inference__ServerMetadataResponse r = INFERENCE__SERVER_METADATA_RESPONSE__INIT;
    (void)req;
    (void)len;
    r.name = svc->server_name;
    r.version = (char *)(uintptr_t)seldon_version();
    r.n_extensions = sizeof(extensions) / sizeof(extensions[0]);
    r.extensions = extensions;
    reply_msg(svc, "server_metadata", &r.base, done, ud);
}

/* ModelReady and ModelMetadata share their request shape (name, version). -1: answered already. */
static int acquire_named(seldon_service *svc, seldon_model **m, const char *endpoint,
                         const uint8_t *req, size_t len, int *known, seldon_grpc_done_fn done,
                         void *ud)
{
    Inference__ModelReadyRequest *r;
    int rc;
    /* protobuf-c keeps no string lengths: "add10\0evil" would reach add10. */
    if (seldon_pb_check_strings(req, len, "inference.ModelReadyRequest") < 0) {
        grpc_fail(svc, endpoint, 3, seldon_last_error(), done, ud);
        return -1;
    }
    r = inference__model_ready_request__unpack(NULL, len, req);
    if (r == NULL) {
        grpc_fail(svc, endpoint, 3, "request: not a valid protobuf message", done, ud);
        return -1;
    }
    rc =
        seldon_repo_acquire(m, svc->repo, r->name, strlen(r->name), r->version, strlen(r->version));
    if (rc < 0) {
        char why[SDN_WHY_MAX];
        snprintf(why, sizeof(why), "%s", seldon_last_error());
        *known = seldon_repo_model_state(svc->repo, r->name, strlen(r->name)) >= 0;
        seldon_set_error(rc, why);
    }
    inference__model_ready_request__free_unpacked(r, NULL);
    return rc;
}

static void model_ready(seldon_service *svc, const uint8_t *req, size_t len,
                        seldon_grpc_done_fn done, void *ud)
{
    Inference__ModelReadyResponse r = INFERENCE__MODEL_READY_RESPONSE__INIT;
    seldon_model *m = NULL;
    int known = 0, rc = acquire_named(svc, &m, "model_ready", req, len, &known, done, ud);
    if (rc == -1)
        return;
    if (rc < 0 && !known) {
        grpc_fail(svc, "model_ready", seldon_status_grpc(rc), seldon_last_error(), done, ud);
        return;
    }
    r.ready = rc == 0;
    seldon_model_release(m);
    reply_msg(svc, "model_ready", &r.base, done, ud);
}

static void model_metadata(seldon_service *svc, const uint8_t *req, size_t len,
                           seldon_grpc_done_fn done, void *ud)
{
    seldon_model *m = NULL;
    seldon_buf b = SELDON_BUF_INIT;
    int known = 0, rc = acquire_named(svc, &m, "model_metadata", req, len, &known, done, ud);
    if (rc == -1)
        return;
    if (rc == 0)
        rc = seldon_model_metadata_pb(&b, m);
    seldon_model_release(m);
    if (rc < 0) {
        seldon_buf_free(&b);
        grpc_fail(svc, "model_metadata", seldon_status_grpc(rc), seldon_last_error(), done, ud);
        return;
    }
    grpc_reply(svc, "model_metadata", &b, done, ud);
}

/* --- Inference ------------------------------------------------------------------ */

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    do {
        p[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    return n;
}

/* Appends a length-delimited field; an empty one is left out unless keep_empty. */
static int put_field(seldon_buf *out, int field, const void *bytes, size_t len, int keep_empty)
{
    uint8_t head[11];
    size_t h;
    if (len == 0 && !keep_empty)
        return 0;
    head[0] = (uint8_t)(field << 3 | 2);
    h = 1 + put_varint(head + 1, len);
    if (sdn_buf_reserve(out, h + len) != 0)
        return SELDON_ENOMEM;
    memcpy(out->data + out->len, head, h);
    if (len)
        memcpy(out->data + out->len + h, bytes, len);
    out->len += h + len;
    return 0;
}

static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    unsigned shift = 0;
    *v = 0;
    while (*p < end && shift < 64) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return 0;
        shift += 7;
    }
    return -1;
}

/*
 * The top-level string fields 1..3 (model_name, model_version, id) of a
 * ModelInferRequest that may not decode as a whole: a stream's error must
 * still name its request. Stops quietly at the first malformed field.
 */
static void scan_ids(const uint8_t *p, size_t len, const uint8_t *val[3], size_t vlen[3])
{
    const uint8_t *end = p + len;
    while (p < end) {
        uint64_t tag, n;
        if (read_varint(&p, end, &tag) < 0)
            return;
        switch (tag & 7) {
        case 0:
            if (read_varint(&p, end, &n) < 0)
                return;
            break;
        case 1:
            if ((size_t)(end - p) < 8)
                return;
            p += 8;
            break;
        case 5:
            if ((size_t)(end - p) < 4)
                return;
            p += 4;
            break;
        case 2:
            if (read_varint(&p, end, &n) < 0 || n > (uint64_t)(end - p))
                return;
            if ((tag >> 3) >= 1 && (tag >> 3) <= 3) {
                val[(tag >> 3) - 1] = p;
                vlen[(tag >> 3) - 1] = (size_t)n;
            }
            p += n;
            break;
        default:
            return;
        }
    }
}

/*
 * A failed stream message: ModelStreamInferResponse{error_message, infer_response
 * {model_name, model_version, id}}, the ids taken from the decoded request, or
 * from the raw bytes when it did not decode.
 */
static int stream_error_frame(seldon_buf *out, const sdn_svc_call *c, const char *message)
{
    const uint8_t *val[3] = {NULL, NULL, NULL};
    size_t vlen[3] = {0, 0, 0};
    seldon_buf inner = SELDON_BUF_INIT;
    int rc = 0, k;
    if (c->request != NULL && c->raw == NULL) {
        val[0] = (const uint8_t *)seldon_msg_model_name(c->request, &vlen[0]);
        val[1] = (const uint8_t *)seldon_msg_model_version(c->request, &vlen[1]);
        val[2] = (const uint8_t *)seldon_msg_id(c->request, &vlen[2]);
    } else if (c->raw != NULL) {
        scan_ids(c->raw, c->raw_len, val, vlen);
    }
    for (k = 0; k < 3 && rc == 0; k++)
        if (val[k] != NULL)
            rc = put_field(&inner, k + 1, val[k], vlen[k], 0);
    if (rc == 0)
        rc = put_field(out, 1, message, strlen(message), 0);
    if (rc == 0)
        rc = put_field(out, 2, inner.data, inner.len, 1);
    seldon_buf_free(&inner);
    return rc;
}

static void grpc_finish(sdn_svc_call *c, int32_t status, const char *message)
{
    seldon_grpc_done_fn done = (seldon_grpc_done_fn)(uintptr_t)c->done;
    double secs = (double)(sdn_svc_now(c->svc) - c->start_ns) * 1e-9;
    seldon_buf body = SELDON_BUF_INIT, frame = SELDON_BUF_INIT;
    char why[SDN_WHY_MAX];
    int code;
    why[0] = '\0';
    if (status == 0) {
        status = seldon_msg_encode_pb(&body, c->response, 0);
        if (status < 0)
            message = seldon_last_error();
    }
    if (status != 0)
        snprintf(why, sizeof(why), "%s", message ? message : seldon_strerror(status));
    code = seldon_status_grpc(status);
    sdn_svc_count_infer(c->svc, c->model, c->kind, code, secs);
    if (c->kind == SDN_SVC_GRPC) {
        done(c->user_data, code, status == 0 ? NULL : why, &body);
    } else {
        int rc = status == 0 ? put_field(&frame, 2, body.data, body.len, 1)
                             : stream_error_frame(&frame, c, why);
        if (rc != 0) {
            /* No room for even the frame: say so in the smallest frame there is. */
            frame.len = 0;
            put_field(&frame, 1, "server out of memory", 20, 0);
        }
        done(c->user_data, 0, NULL, &frame);
    }
    seldon_buf_free(&frame);
    seldon_buf_free(&body);
}

static void grpc_infer_done(void *user_data, seldon_infer *infer, int32_t status,
                            const char *message)
{
    sdn_svc_call *c = user_data;
    (void)infer;
    grpc_finish(c, status, message);
    sdn_svc_call_free(c);
}

static void model_infer(seldon_service *svc, const uint8_t *req, size_t len, int stream,
                        seldon_grpc_done_fn done, void *ud)
{
    sdn_svc_call *c = sdn_calloc(1, sizeof(*c));
    size_t nlen = 0, vlen = 0;
    const char *name, *version;
    int rc;
    if (c == NULL) {
        seldon_buf empty = SELDON_BUF_INIT;
        done(ud, 8, "server out of memory", &empty);
        return;
    }
    c->svc = svc;
    c->kind = stream ? SDN_SVC_STREAM : SDN_SVC_GRPC;
    c->done = (void *)(uintptr_t)done;
    c->user_data = ud;
    c->start_ns = sdn_svc_now(svc);
    /* Until the request decodes, an error takes its ids from the raw bytes. */
    c->raw = req;
    c->raw_len = len;
    rc = seldon_msg_new(&c->request, SELDON_MSG_REQUEST);
    if (rc == 0)
        rc = seldon_msg_new(&c->response, SELDON_MSG_RESPONSE);
    if (rc == 0)
        rc = seldon_msg_decode_pb(c->request, req, len, 0);
    if (rc == 0) {
        /* The message copied what it needs: the request bytes may go once this returns. */
        c->raw = NULL;
        name = seldon_msg_model_name(c->request, &nlen);
        version = seldon_msg_model_version(c->request, &vlen);
        rc = seldon_repo_acquire(&c->model, svc->repo, name, nlen, version, vlen);
    }
    if (rc == 0)
        rc = seldon_model_check_request(c->model, c->request);
    if (rc == 0)
        rc = seldon_infer_new(&c->infer, c->request, c->response, grpc_infer_done, c);
    if (rc < 0) {
        char why[SDN_WHY_MAX];
        snprintf(why, sizeof(why), "%s", seldon_last_error());
        grpc_finish(c, rc, why);
        sdn_svc_call_free(c);
        return;
    }
    sdn_svc_submit(c);
}

/* --- Repository ------------------------------------------------------------------- */

static void repository_index(seldon_service *svc, const uint8_t *req, size_t len,
                             seldon_grpc_done_fn done, void *ud)
{
    Inference__RepositoryIndexRequest *r =
        inference__repository_index_request__unpack(NULL, len, req);
    seldon_buf b = SELDON_BUF_INIT;
    int rc;
    if (r == NULL) {
        grpc_fail(svc, "repository_index", 3, "request: not a valid protobuf message", done, ud);
        return;
    }
    rc = seldon_repo_index_pb(&b, svc->repo, r->ready);
    inference__repository_index_request__free_unpacked(r, NULL);
    if (rc < 0) {
        seldon_buf_free(&b);
        grpc_fail(svc, "repository_index", seldon_status_grpc(rc), seldon_last_error(), done, ud);
        return;
    }
    grpc_reply(svc, "repository_index", &b, done, ud);
}

static void repository_load_unload(seldon_service *svc, const uint8_t *req, size_t len, int unload,
                                   seldon_grpc_done_fn done, void *ud)
{
    /* Load and unload requests share field numbers: repository_name = 1, model_name = 2. */
    Inference__RepositoryModelLoadRequest *r;
    if (seldon_pb_check_strings(req, len, "inference.RepositoryModelLoadRequest") < 0) {
        grpc_fail(svc, unload ? "repository_unload" : "repository_load", 3, seldon_last_error(),
                  done, ud);
        return;
    }
    r = inference__repository_model_load_request__unpack(NULL, len, req);
    if (r == NULL) {
        grpc_fail(svc, unload ? "repository_unload" : "repository_load", 3,
                  "request: not a valid protobuf message", done, ud);
        return;
    }
    sdn_svc_grpc_repo_job(svc, unload, r->model_name, strlen(r->model_name), done, ud);
    inference__repository_model_load_request__free_unpacked(r, NULL);
}

/* --- The method table ------------------------------------------------------------------- */

enum {
    M_LIVE,
    M_READY,
    M_MODEL_READY,
    M_SERVER_METADATA,
    M_MODEL_METADATA,
    M_INFER,
    M_STREAM,
    M_INDEX,
    M_LOAD,
    M_UNLOAD,
    M_COUNT
};

#define METHOD(name) {SVC name, sizeof(SVC name) - 1}

static const struct {
    const char *path;
    size_t len;
} methods[M_COUNT] = {
    METHOD("ServerLive"),          METHOD("ServerReady"),     METHOD("ModelReady"),
    METHOD("ServerMetadata"),      METHOD("ModelMetadata"),   METHOD("ModelInfer"),
    METHOD("ModelStreamInfer"),    METHOD("RepositoryIndex"), METHOD("RepositoryModelLoad"),
    METHOD("RepositoryModelUnload"),
};

size_t seldon_service_grpc_method_count(void)
{
    return M_COUNT;
}

const char *seldon_service_grpc_method(size_t index, int32_t *streaming)
{
    if (index >= M_COUNT)
        return NULL;
    if (streaming != NULL)
        *streaming = index == M_STREAM;
    return methods[index].path;
}

int seldon_service_grpc(seldon_service *svc, const char *method, size_t method_len,
                        const uint8_t *req, size_t len, seldon_grpc_done_fn done, void *ud)
{
    size_t i;
    seldon_buf empty = SELDON_BUF_INIT;
    if (svc == NULL || method == NULL || done == NULL || (req == NULL && len > 0))
        return sdn_error(SELDON_EINVAL, "seldon_service_grpc: NULL argument");
    if (req == NULL)
        req = (const uint8_t *)"";
    for (i = 0; i < M_COUNT; i++)
        if (methods[i].len == method_len && memcmp(methods[i].path, method, method_len) == 0)
            break;
    switch (i) {
    case M_LIVE:
        server_live(svc, req, len, done, ud);
        break;
    case M_READY:
        server_ready(svc, req, len, done, ud);
        break;
    case M_MODEL_READY:
        model_ready(svc, req, len, done, ud);
        break;
    case M_SERVER_METADATA:
        server_metadata(svc, req, len, done, ud);
        break;
    case M_MODEL_METADATA:
        model_metadata(svc, req, len, done, ud);
        break;
    case M_INFER:
    case M_STREAM:
        model_infer(svc, req, len, i == M_STREAM, done, ud);
        break;
    case M_INDEX:
        repository_index(svc, req, len, done, ud);
        break;
    case M_LOAD:
    case M_UNLOAD:
        repository_load_unload(svc, req, len, i == M_UNLOAD, done, ud);
        break;
    default:
        done(ud, 12, "unknown method", &empty);
        break;
    }
    return 0;
}

/* --- In process ------------------------------------------------------------------------ */

static void local_done(void *user_data, seldon_infer *infer, int32_t status, const char *message)
{
    sdn_svc_call *c = user_data;
    seldon_service_infer_fn done = (seldon_service_infer_fn)(uintptr_t)c->done;
    double secs = (double)(sdn_svc_now(c->svc) - c->start_ns) * 1e-9;
    char why[SDN_WHY_MAX];
    (void)infer;
    if (status != 0) /* kept before the counters run; an answer has no message to keep */
        snprintf(why, sizeof(why), "%s", message ? message : "");
    sdn_svc_count_infer(c->svc, c->model, SDN_SVC_LOCAL, seldon_status_grpc(status), secs);
    done(c->user_data, status, status == 0 ? NULL : why);
    sdn_svc_call_free(c);
}

int seldon_service_infer(seldon_service *svc, const seldon_msg *request, seldon_msg *response,
                         seldon_service_infer_fn done, void *ud)
{
    sdn_svc_call *c;
    size_t nlen = 0, vlen = 0;
    const char *name, *version;
    int rc;
    if (svc == NULL || request == NULL || response == NULL || done == NULL)
        return sdn_error(SELDON_EINVAL, "seldon_service_infer: NULL argument");
    c = sdn_calloc(1, sizeof(*c));
    if (c == NULL) {
        done(ud, SELDON_ENOMEM, "server out of memory");
        return 0;
    }
    c->svc = svc;
    c->kind = SDN_SVC_LOCAL;
    c->done = (void *)(uintptr_t)done;
    c->user_data = ud;
    c->start_ns = sdn_svc_now(svc);
    c->request = (seldon_msg *)(uintptr_t)request; /* borrowed: never freed nor written */
    c->response = response;
    name = seldon_msg_model_name(request, &nlen);
    version = seldon_msg_model_version(request, &vlen);
    rc = seldon_repo_acquire(&c->model, svc->repo, name ? name : "", nlen, version, vlen);
    if (rc == 0)
        rc = seldon_model_check_request(c->model, request);
    if (rc == 0)
        rc = seldon_infer_new(&c->infer, request, response, local_done, c);
    if (rc < 0) {
        char why[SDN_WHY_MAX];
        snprintf(why, sizeof(why), "%s", seldon_last_error());
        sdn_svc_count_infer(svc, c->model, SDN_SVC_LOCAL, seldon_status_grpc(rc), 0);
        done(ud, rc, why);
        sdn_svc_call_free(c);
        return 0;
    }
    sdn_svc_submit(c);
    return 0;
}
