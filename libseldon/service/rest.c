/*
 * The REST API of the service: the protocol's endpoints, the repository
 * extension and /metrics, from a request view to a status, headers and body.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "service/service.h"
#include "util/jdom.h"

static const seldon_http_header json_type = {"content-type", 12, "application/json", 16};

static void deliver(seldon_rest_done_fn done, void *ud, int status, const seldon_http_header *h,
                    size_t nh, seldon_buf *body)
{
    seldon_rest_response r;
    r.status = status;
    r.headers = h;
    r.nheaders = nh;
    r.body = *body;
    *body = (seldon_buf)SELDON_BUF_INIT;
    done(ud, &r);
    seldon_buf_free(&r.body);
}

/* {"error": "<message>"}, as JSON; an empty body when even that cannot be had. */
static void error_body(seldon_buf *b, const char *message)
{
    const char *m = message ? message : "";
    b->len = 0;
    if (sdn_jw_raw(b, "{\"error\": ", 10) != 0 || sdn_jw_string(b, m, strlen(m)) != 0 ||
        sdn_jw_raw(b, "}", 1) != 0)
        b->len = 0;
}

static void deliver_error(seldon_rest_done_fn done, void *ud, int status, const char *message,
                          const seldon_http_header *extra)
{
    seldon_http_header h[2];
    seldon_buf b = SELDON_BUF_INIT;
    h[0] = json_type;
    if (extra != NULL)
        h[1] = *extra;
    error_body(&b, message);
    deliver(done, ud, status, h, extra ? 2 : 1, &b);
}

static void respond_json(seldon_service *svc, seldon_rest_done_fn done, void *ud,
                         const char *endpoint, int status, seldon_buf *body)
{
    sdn_svc_count_request(svc, endpoint, SDN_SVC_REST, status);
    deliver(done, ud, status, &json_type, 1, body);
}

static void respond_text(seldon_service *svc, seldon_rest_done_fn done, void *ud,
                         const char *endpoint, int status, const char *text)
{
    seldon_buf b = SELDON_BUF_INIT;
    size_t n = strlen(text);
    if (sdn_buf_append(&b, text, n) != 0) {
        sdn_svc_count_request(svc, endpoint, SDN_SVC_REST, 500);
        deliver_error(done, ud, 500, "server out of memory", NULL);
        return;
    }
    respond_json(svc, done, ud, endpoint, status, &b);
}

static void respond_err(seldon_service *svc, seldon_rest_done_fn done, void *ud,
                        const char *endpoint, int status, const char *msg)
{
    char why[SDN_WHY_MAX];
    /* msg may be this thread's last error, which counting could overwrite. */
    snprintf(why, sizeof(why), "%s", msg ? msg : "");
    sdn_svc_count_request(svc, endpoint, SDN_SVC_REST, status);
    deliver_error(done, ud, status, why, NULL);
}

static void respond_405(seldon_service *svc, seldon_rest_done_fn done, void *ud,
                        const seldon_route *rt)
{
    int post = rt->kind == SELDON_ROUTE_MODEL_INFER || rt->kind == SELDON_ROUTE_PIPELINE_INFER ||
               rt->kind == SELDON_ROUTE_REPO_INDEX || rt->kind == SELDON_ROUTE_REPO_LOAD ||
               rt->kind == SELDON_ROUTE_REPO_UNLOAD;
    seldon_http_header allow = {"allow", 5, post ? "POST" : "GET, HEAD", post ? 4 : 9};
    char why[SDN_WHY_MAX];
    snprintf(why, sizeof(why), "%s", seldon_last_error());
    sdn_svc_count_request(svc, "unknown", SDN_SVC_REST, 405);
    deliver_error(done, ud, 405, why, &allow);
}

static const char *find_header(const seldon_rest_request *r, const char *name, size_t *len)
{
    size_t i, n = strlen(name);
    for (i = 0; i < r->nheaders; i++) {
        const seldon_http_header *h = &r->headers[i];
        if (h->name_len == n && memcmp(h->name, name, n) == 0) {
            *len = h->value_len;
            return h->value;
        }
    }
    return NULL;
}

/* --- Inference ------------------------------------------------------------- */

int sdn_svc_rest_infer_done(sdn_svc_call *c, int32_t status, const char *message)
{
    seldon_rest_done_fn done = (seldon_rest_done_fn)(uintptr_t)c->done;
    double secs = (double)(sdn_svc_now(c->svc) - c->start_ns) * 1e-9;
    char why[SDN_WHY_MAX];
    int code;
    if (status == 0) {
        seldon_buf body = SELDON_BUF_INIT;
        size_t json_len = 0;
        int rc = seldon_msg_encode_json(&body, &json_len, c->response, 0);
        if (rc == 0) {
            char lenbuf[24];
            seldon_http_header h[2];
            size_t nh = 1;
            h[0] = json_type;
            if (json_len < body.len) {
                /* The binary extension: JSON first, then the raw tensors. */
                h[0].value = "application/octet-stream";
                h[0].value_len = 24;
                h[1].name = "inference-header-content-length";
                h[1].name_len = 31;
                h[1].value = lenbuf;
                h[1].value_len = (size_t)snprintf(lenbuf, sizeof(lenbuf), "%zu", json_len);
                nh = 2;
            }
            sdn_svc_count_infer(c->svc, c->model, SDN_SVC_REST, 200, secs);
            deliver(done, c->user_data, 200, h, nh, &body);
            return 0;
        }
        seldon_buf_free(&body);
        status = rc;
        message = seldon_last_error();
    }
    code = seldon_status_http(status);
    snprintf(why, sizeof(why), "%s", message ? message : "");
    sdn_svc_count_infer(c->svc, c->model, SDN_SVC_REST, code, secs);
    deliver_error(done, c->user_data, code, why, NULL);
    return 0;
}

static void rest_infer_done(void *user_data, seldon_infer *infer, int32_t status,
                            const char *message)
{
    sdn_svc_call *c = user_data;
    (void)infer;
    sdn_svc_rest_infer_done(c, status, message);
    sdn_svc_call_free(c);
}

/*
 * Bodies from this size up are decoded, run and encoded on a worker: the codec's
 * time grows with the body, and an I/O thread busy with one large request makes
 * every other connection of its loop wait. Smaller ones stay on the fast path.
 */
#define SDN_SVC_OFFLOAD_BODY (8 * 1024)

static void fail_call(sdn_svc_call *c, int rc)
{
    seldon_rest_done_fn done = (seldon_rest_done_fn)(uintptr_t)c->done;
    int status = seldon_status_http(rc);
    char why[SDN_WHY_MAX];
    snprintf(why, sizeof(why), "%s", seldon_last_error());
    sdn_svc_count_infer(c->svc, c->model, SDN_SVC_REST, status, 0);
    deliver_error(done, c->user_data, status, why, NULL);
    sdn_svc_call_free(c);
}

/* Decodes, checks and submits; on a worker for a large body, else on the caller's thread. */
static void decode_and_submit(sdn_svc_call *c)
{
    int rc = seldon_msg_decode_json(c->request, c->raw ? c->raw : (const uint8_t *)"",
                                    c->raw_len, c->json_len, SELDON_DECODE_BORROW);
    c->raw = NULL;
    if (rc == 0)
        rc = seldon_model_check_request(c->model, c->request);
    if (rc == 0)
        rc = seldon_infer_new(&c->infer, c->request, c->response, rest_infer_done, c);
    if (rc < 0) {
        fail_call(c, rc);
        return;
    }
    sdn_svc_submit(c);
}

static void offload_run(seldon_job *job)
{
    decode_and_submit((sdn_svc_call *)job);
}

static void handle_infer(seldon_service *svc, const seldon_rest_request *r, const seldon_route *rt,
                         seldon_rest_done_fn done, void *ud)
{
    sdn_svc_call *c = sdn_calloc(1, sizeof(*c));
    size_t json_len = 0, hl = 0;
    const char *h = find_header(r, "inference-header-content-length", &hl);
    int rc;

    if (c == NULL) {
        respond_err(svc, done, ud, "infer", 500, "server out of memory");
        return;
    }
    c->svc = svc;
    c->kind = SDN_SVC_REST;
    c->done = (void *)(uintptr_t)done;
    c->user_data = ud;
    c->start_ns = sdn_svc_now(svc);
    rc = seldon_repo_acquire(&c->model, svc->repo, rt->name, rt->name_len, rt->version,
                             rt->version_len);
    if (rc == 0 && h != NULL) {
        char tmp[24];
        char *end;
        snprintf(tmp, sizeof(tmp), "%.*s", (int)(hl < 23 ? hl : 23), h);
        json_len = (size_t)strtoull(tmp, &end, 10);
        if (hl == 0 || *end != '\0' || tmp[0] < '0' || tmp[0] > '9' || json_len > r->body_len) {
            sdn_svc_call_free(c);
            respond_err(svc, done, ud, "infer", 400,
                        "Inference-Header-Content-Length: expected the JSON part's length");
            return;
        }
    }
    if (rc == 0)
        rc = seldon_msg_new(&c->request, SELDON_MSG_REQUEST);
    if (rc == 0)
        rc = seldon_msg_new(&c->response, SELDON_MSG_RESPONSE);
    if (rc < 0) {
        fail_call(c, rc);
        return;
    }
    /* The body stays alive until the response is delivered: binary data can stay in place. */
    c->raw = r->body;
    c->raw_len = r->body_len;
    c->json_len = json_len;
    if (r->body_len >= SDN_SVC_OFFLOAD_BODY && svc->hooks.submit_infer != NULL) {
        c->job.next = NULL;
        c->job.run = offload_run;
        svc->hooks.submit_infer(svc->hooks.host, &c->job);
        return;
    }
    decode_and_submit(c);
}

/* --- Metadata and readiness ------------------------------------------------ */

static void handle_model_ready(seldon_service *svc, const seldon_route *rt, int want_metadata,
                               seldon_rest_done_fn done, void *ud)
{
    const char *endpoint = want_metadata ? "model_metadata" : "model_ready";
    seldon_model *m = NULL;
    int rc =
        seldon_repo_acquire(&m, svc->repo, rt->name, rt->name_len, rt->version, rt->version_len);
    seldon_buf b = SELDON_BUF_INIT;
    if (rc < 0) {
        /* A model the repository knows but has not loaded is "not ready", not "not found". */
        int known = seldon_repo_model_state(svc->repo, rt->name, rt->name_len) >= 0;
        char why[512];
        snprintf(why, sizeof(why), "%s", seldon_last_error());
        respond_err(svc, done, ud, endpoint,
                    known && !want_metadata && rt->version == NULL ? 400 : 404, why);
        return;
    }
    if (want_metadata) {
        rc = seldon_model_metadata_json(&b, m);
    } else {
        const char *name = seldon_model_name(m);
        rc = sdn_jw_raw(&b, "{\"name\":", 8);
        if (rc == 0)
            rc = sdn_jw_string(&b, name, strlen(name));
        if (rc == 0)
            rc = sdn_jw_raw(&b, ",\"ready\":true}", 14);
    }
    seldon_model_release(m);
    if (rc < 0) {
        seldon_buf_free(&b);
        respond_err(svc, done, ud, endpoint, 500, seldon_last_error());
        return;
    }
    respond_json(svc, done, ud, endpoint, 200, &b);
}

static void handle_server_metadata(seldon_service *svc, seldon_rest_done_fn done, void *ud)
{
    static const char extensions[] = ",\"extensions\":[\"binary_tensor_data\",\"model_repository\","
                                     "\"adaptive_batching\",\"metrics\"]}";
    seldon_buf b = SELDON_BUF_INIT;
    const char *v = seldon_version();
    int rc = sdn_jw_raw(&b, "{\"name\":", 8);
    if (rc == 0)
        rc = sdn_jw_string(&b, svc->server_name, strlen(svc->server_name));
    if (rc == 0)
        rc = sdn_jw_raw(&b, ",\"version\":", 11);
    if (rc == 0)
        rc = sdn_jw_string(&b, v, strlen(v));
    if (rc == 0)
        rc = sdn_jw_raw(&b, extensions, sizeof(extensions) - 1);
    if (rc != 0) {
        seldon_buf_free(&b);
        respond_err(svc, done, ud, "server_metadata", 500, "server out of memory");
        return;
    }
    respond_json(svc, done, ud, "server_metadata", 200, &b);
}

static void handle_metrics(seldon_service *svc, seldon_rest_done_fn done, void *ud)
{
    static const seldon_http_header prom = {"content-type", 12, "text/plain; version=0.0.4", 25};
    seldon_buf b = SELDON_BUF_INIT;
    seldon_service_refresh(svc);
    if (seldon_metrics_render(&b, svc->metrics) != 0) {
        seldon_buf_free(&b);
        deliver_error(done, ud, 500, seldon_last_error(), NULL);
        return;
    }
    deliver(done, ud, 200, &prom, 1, &b);
}

/* --- Repository ---------------------------------------------------------------- */

static void repo_job_run(seldon_job *job)
{
    sdn_svc_repo_job *j = (sdn_svc_repo_job *)job;
    seldon_service *svc = j->svc;
    const char *endpoint = j->unload ? "repository_unload" : "repository_load";
    int rc =
        j->unload ? seldon_repo_unload(svc->repo, j->name) : seldon_repo_load(svc->repo, j->name);
    seldon_service_refresh(svc);
    if (j->kind == SDN_SVC_REST) {
        seldon_rest_done_fn done = (seldon_rest_done_fn)(uintptr_t)j->done;
        if (rc == 0) {
            respond_text(svc, done, j->user_data, endpoint, 200, "{}");
        } else {
            char why[512];
            snprintf(why, sizeof(why), "%s", seldon_last_error());
            respond_err(svc, done, j->user_data, endpoint,
                        seldon_status_http(sdn_svc_repo_code(svc, j, rc)), why);
        }
    } else {
        seldon_grpc_done_fn done = (seldon_grpc_done_fn)(uintptr_t)j->done;
        seldon_buf empty = SELDON_BUF_INIT;
        if (rc == 0) {
            /* Both responses are empty messages. */
            sdn_svc_count_request(svc, endpoint, SDN_SVC_GRPC, 0);
            done(j->user_data, 0, NULL, &empty);
        } else {
            char why[512];
            int code = seldon_status_grpc(sdn_svc_repo_code(svc, j, rc));
            snprintf(why, sizeof(why), "%s", seldon_last_error());
            sdn_svc_count_request(svc, endpoint, SDN_SVC_GRPC, code);
            done(j->user_data, code, why, &empty);
        }
        seldon_buf_free(&empty);
    }
    sdn_free(j);
}

static void handle_repo_index(seldon_service *svc, const seldon_rest_request *r,
                              seldon_rest_done_fn done, void *ud)
{
    seldon_buf b = SELDON_BUF_INIT;
    sdn_arena a;
    sdn_jv *doc = NULL;
    const sdn_jv *ready = NULL;
    int rc = 0;
    /* An empty body or {"ready": true|false}; true asks for ready models only. */
    sdn_arena_init(&a, NULL, 0);
    if (r->body_len > 0) {
        rc = sdn_json_parse(&doc, &a, (const char *)r->body, r->body_len, "body");
        ready = rc == 0 ? sdn_jv_get(doc, "ready") : NULL;
        if (rc == 0 &&
            (doc->type != SDN_JV_OBJECT || (ready != NULL && ready->type != SDN_JV_BOOL)))
            rc = sdn_error(SELDON_EPARSE, "body: expected {\"ready\": true|false}");
    }
    if (rc < 0) {
        sdn_arena_release(&a);
        respond_err(svc, done, ud, "repository_index", 400, seldon_last_error());
        return;
    }
    rc = seldon_repo_index_json(&b, svc->repo, ready != NULL && ready->b);
    sdn_arena_release(&a);
    if (rc != 0) {
        seldon_buf_free(&b);
        respond_err(svc, done, ud, "repository_index", 500, seldon_last_error());
        return;
    }
    respond_json(svc, done, ud, "repository_index", 200, &b);
}

static void handle_repo_load(seldon_service *svc, const seldon_route *rt, seldon_rest_done_fn done,
                             void *ud)
{
    sdn_svc_repo_job *j;
    if (rt->name_len >= sizeof(j->name)) {
        respond_err(svc, done, ud, "repository", 400, "model name too long");
        return;
    }
    j = sdn_calloc(1, sizeof(*j));
    if (j == NULL) {
        respond_err(svc, done, ud, "repository", 500, "server out of memory");
        return;
    }
    j->job.run = repo_job_run;
    j->svc = svc;
    j->kind = SDN_SVC_REST;
    j->unload = rt->kind == SELDON_ROUTE_REPO_UNLOAD;
    j->done = (void *)(uintptr_t)done;
    j->user_data = ud;
    memcpy(j->name, rt->name, rt->name_len);
    svc->hooks.submit_load(svc->hooks.host, &j->job);
}

void sdn_svc_grpc_repo_job(seldon_service *svc, int unload, const char *name, size_t len,
                           seldon_grpc_done_fn done, void *ud)
{
    sdn_svc_repo_job *j = sdn_calloc(1, sizeof(*j));
    seldon_buf empty = SELDON_BUF_INIT;
    const char *endpoint = unload ? "repository_unload" : "repository_load";
    if (j == NULL || len == 0 || len >= sizeof(j->name)) {
        int code = j ? 3 : 8;
        sdn_svc_count_request(svc, endpoint, SDN_SVC_GRPC, code);
        done(ud, code, j ? "model_name: missing or too long" : "server out of memory", &empty);
        sdn_free(j);
        return;
    }
    j->job.run = repo_job_run;
    j->svc = svc;
    j->kind = SDN_SVC_GRPC;
    j->unload = unload;
    j->done = (void *)(uintptr_t)done;
    j->user_data = ud;
    memcpy(j->name, name, len);
    svc->hooks.submit_load(svc->hooks.host, &j->job);
}

/* --- The router ------------------------------------------------------------------- */

int seldon_service_rest(seldon_service *svc, const seldon_rest_request *r, seldon_rest_done_fn done,
                        void *ud)
{
    seldon_route rt;
    int rc;

    if (svc == NULL || r == NULL || done == NULL || r->method == NULL || r->path == NULL)
        return sdn_error(SELDON_EINVAL, "seldon_service_rest: NULL argument");
    if (svc->metrics != NULL && r->path_len == 8 && memcmp(r->path, "/metrics", 8) == 0) {
        handle_metrics(svc, done, ud);
        return 0;
    }
    rc = seldon_route_parse(&rt, r->method, r->method_len, r->path, r->path_len);
    if (rc == SELDON_EUNSUPPORTED) {
        /* A defined path with the wrong method: 405, saying which method it takes. */
        respond_405(svc, done, ud, &rt);
        return 0;
    }
    if (rc < 0) {
        respond_err(svc, done, ud, "unknown", seldon_status_http(rc), seldon_last_error());
        return 0;
    }
    switch (rt.kind) {
    case SELDON_ROUTE_MODEL_INFER:
        handle_infer(svc, r, &rt, done, ud);
        break;
    case SELDON_ROUTE_HEALTH_LIVE:
        respond_text(svc, done, ud, "live", 200, "{\"live\":true}");
        break;
    case SELDON_ROUTE_HEALTH_READY:
        if (atomic_load(&svc->ready))
            respond_text(svc, done, ud, "ready", 200, "{\"ready\":true}");
        else
            respond_err(svc, done, ud, "ready", 400, "the server is still loading its models");
        break;
    case SELDON_ROUTE_SERVER_METADATA:
        handle_server_metadata(svc, done, ud);
        break;
    case SELDON_ROUTE_MODEL_METADATA:
        handle_model_ready(svc, &rt, 1, done, ud);
        break;
    case SELDON_ROUTE_MODEL_READY:
        handle_model_ready(svc, &rt, 0, done, ud);
        break;
    case SELDON_ROUTE_REPO_INDEX:
        handle_repo_index(svc, r, done, ud);
        break;
    case SELDON_ROUTE_REPO_LOAD:
    case SELDON_ROUTE_REPO_UNLOAD:
        handle_repo_load(svc, &rt, done, ud);
        break;
    default:
        respond_err(svc, done, ud, "pipelines", 404,
                    "pipelines are served by the pipeline gateway, not by seldon-server");
        break;
    }
    return 0;
}
