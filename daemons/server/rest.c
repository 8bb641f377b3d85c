/*
 * The REST API: the protocol's endpoints, the repository extension and
 * /metrics, on the HTTP transport.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server.h"
#include "util/jdom.h"

static const sdh_header json_type = {"content-type", 12, "application/json", 16};

/* One REST inference in flight. */
typedef struct rest_call {
    srv *s;
    sdh_req *req;
    seldon_model *model;
    seldon_msg *request;
    seldon_msg *response;
    seldon_infer *infer;
    int64_t start_ns;
} rest_call;

static void respond_json(srv *s, sdh_req *req, const char *endpoint, int status, seldon_buf *body)
{
    srv_count_request(s, endpoint, SRV_REST, status);
    sdh_respond(req, status, &json_type, 1, body);
}

static void respond_text(srv *s, sdh_req *req, const char *endpoint, int status, const char *text)
{
    seldon_buf b = SELDON_BUF_INIT;
    size_t n = strlen(text);
    if (seldon_buf_reserve(&b, n) == 0) {
        memcpy(b.data, text, n);
        b.len = n;
    }
    respond_json(s, req, endpoint, status, &b);
}

static void respond_err(srv *s, sdh_req *req, const char *endpoint, int status, const char *msg)
{
    srv_count_request(s, endpoint, SRV_REST, status);
    sdh_respond_error(req, status, msg);
}

static void respond_405(srv *s, sdh_req *req, const seldon_route *rt)
{
    int post = rt->kind == SELDON_ROUTE_MODEL_INFER || rt->kind == SELDON_ROUTE_PIPELINE_INFER ||
               rt->kind == SELDON_ROUTE_REPO_INDEX || rt->kind == SELDON_ROUTE_REPO_LOAD ||
               rt->kind == SELDON_ROUTE_REPO_UNLOAD;
    sdh_header h[2] = {json_type, {"allow", 5, post ? "POST" : "GET, HEAD", post ? 4 : 9}};
    const char *msg = seldon_last_error();
    seldon_buf b = SELDON_BUF_INIT;
    if (sdn_jw_raw(&b, "{\"error\":", 9) != 0 || sdn_jw_string(&b, msg, strlen(msg)) != 0 ||
        sdn_jw_raw(&b, "}", 1) != 0) {
        seldon_buf_free(&b);
        respond_err(s, req, "unknown", 500, "server out of memory");
        return;
    }
    srv_count_request(s, "unknown", SRV_REST, 405);
    sdh_respond(req, 405, h, 2, &b);
}

static void rest_call_free(rest_call *c)
{
    seldon_infer_free(c->infer);
    seldon_msg_free(c->request);
    seldon_msg_free(c->response);
    seldon_model_release(c->model);
    free(c);
}

static void infer_done(void *user_data, seldon_infer *infer, int32_t status, const char *message)
{
    rest_call *c = user_data;
    double secs = (double)(srv_now_ns() - c->start_ns) * 1e-9;
    (void)infer;
    if (status == 0) {
        seldon_buf body = SELDON_BUF_INIT;
        size_t json_len = 0;
        int rc = seldon_msg_encode_json(&body, &json_len, c->response, 0);
        if (rc == 0) {
            char lenbuf[24];
            sdh_header h[2];
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
            srv_count_infer(c->s, c->model, SRV_REST, 200, secs);
            sdh_respond(c->req, 200, h, nh, &body);
            rest_call_free(c);
            return;
        }
        seldon_buf_free(&body);
        status = rc;
        message = seldon_last_error();
    }
    srv_count_infer(c->s, c->model, SRV_REST, srv_http_status(status), secs);
    sdh_respond_error(c->req, srv_http_status(status), message);
    rest_call_free(c);
}

static void handle_infer(srv *s, sdh_req *req, const sdh_request *r, const seldon_route *rt)
{
    rest_call *c = calloc(1, sizeof(*c));
    size_t json_len = 0, hl = 0;
    const char *h = sdh_request_header(r, "inference-header-content-length", &hl);
    int rc;

    if (c == NULL) {
        respond_err(s, req, "infer", 500, "server out of memory");
        return;
    }
    c->s = s;
    c->req = req;
    c->start_ns = srv_now_ns();
    rc = seldon_repo_acquire(&c->model, s->repo, rt->name, rt->name_len, rt->version,
                             rt->version_len);
    if (rc == 0 && h != NULL) {
        char tmp[24];
        char *end;
        snprintf(tmp, sizeof(tmp), "%.*s", (int)(hl < 23 ? hl : 23), h);
        json_len = (size_t)strtoull(tmp, &end, 10);
        if (hl == 0 || *end != '\0' || json_len > r->body_len) {
            rest_call_free(c);
            respond_err(s, req, "infer", 400,
                        "Inference-Header-Content-Length: expected the JSON part's length");
            return;
        }
    }
    if (rc == 0)
        rc = seldon_msg_new(&c->request, SELDON_MSG_REQUEST);
    if (rc == 0)
        rc = seldon_msg_new(&c->response, SELDON_MSG_RESPONSE);
    /* The body stays alive until the response is sent: binary data can stay in place. */
    if (rc == 0)
        rc = seldon_msg_decode_json(c->request, r->body, r->body_len, json_len,
                                    SELDON_DECODE_BORROW);
    if (rc == 0)
        rc = seldon_model_check_request(c->model, c->request);
    if (rc == 0)
        rc = seldon_infer_new(&c->infer, c->request, c->response, infer_done, c);
    if (rc < 0) {
        int status = srv_http_status(rc);
        srv_count_infer(s, c->model, SRV_REST, status, 0);
        sdh_respond_error(req, status, seldon_last_error());
        rest_call_free(c);
        return;
    }
    srv_submit(s, c->model, c->infer);
}

static void handle_model_ready(srv *s, sdh_req *req, const seldon_route *rt, int want_metadata)
{
    const char *endpoint = want_metadata ? "model_metadata" : "model_ready";
    seldon_model *m = NULL;
    int rc = seldon_repo_acquire(&m, s->repo, rt->name, rt->name_len, rt->version,
                                 rt->version_len);
    seldon_buf b = SELDON_BUF_INIT;
    if (rc < 0) {
        /* A model the repository knows but has not loaded is "not ready", not "not found". */
        int known = seldon_repo_model_state(s->repo, rt->name, rt->name_len) >= 0;
        respond_err(s, req, endpoint, known && !want_metadata && rt->version == NULL ? 400 : 404,
                    seldon_last_error());
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
        respond_err(s, req, endpoint, 500, seldon_last_error());
        return;
    }
    respond_json(s, req, endpoint, 200, &b);
}

/* Repository load and unload block on the runtime: they run on a worker. */
typedef struct repo_job {
    srv_job job;
    srv *s;
    sdh_req *req;
    int unload;
    char name[256];
} repo_job;

/*
 * 404 only for a model the repository does not know (or, to unload, one not
 * loaded). Runtimes and plugin lookup say SELDON_ENOTFOUND too (an unknown
 * implementation, a missing model file), but once the model is known its
 * load was tried and failed: a 400 with the reason.
 */
static int repo_job_status(const repo_job *j, int rc)
{
    if (rc == SELDON_ENOTFOUND &&
        (j->unload || seldon_repo_model_state(j->s->repo, j->name, strlen(j->name)) < 0))
        return 404;
    return 400;
}

static void repo_job_run(srv_job *job)
{
    repo_job *j = (repo_job *)job;
    const char *endpoint = j->unload ? "repository_unload" : "repository_load";
    int rc = j->unload ? seldon_repo_unload(j->s->repo, j->name)
                       : seldon_repo_load(j->s->repo, j->name);
    srv_refresh_loaded(j->s);
    if (rc == 0)
        respond_text(j->s, j->req, endpoint, 200, "{}");
    else
        respond_err(j->s, j->req, endpoint, repo_job_status(j, rc), seldon_last_error());
    free(j);
}

static void handle_repo(srv *s, sdh_req *req, const sdh_request *r, const seldon_route *rt)
{
    repo_job *j;
    if (rt->kind == SELDON_ROUTE_REPO_INDEX) {
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
            if (rc == 0 && (doc->type != SDN_JV_OBJECT ||
                            (ready != NULL && ready->type != SDN_JV_BOOL)))
                rc = sdn_error(SELDON_EPARSE, "body: expected {\"ready\": true|false}");
        }
        if (rc < 0) {
            sdn_arena_release(&a);
            respond_err(s, req, "repository_index", 400, seldon_last_error());
            return;
        }
        rc = seldon_repo_index_json(&b, s->repo, ready != NULL && ready->b);
        sdn_arena_release(&a);
        if (rc != 0) {
            respond_err(s, req, "repository_index", 500, seldon_last_error());
            return;
        }
        respond_json(s, req, "repository_index", 200, &b);
        return;
    }
    if (rt->name_len >= sizeof(j->name)) {
        respond_err(s, req, "repository", 400, "model name too long");
        return;
    }
    j = calloc(1, sizeof(*j));
    if (j == NULL) {
        respond_err(s, req, "repository", 500, "server out of memory");
        return;
    }
    j->job.run = repo_job_run;
    j->s = s;
    j->req = req;
    j->unload = rt->kind == SELDON_ROUTE_REPO_UNLOAD;
    memcpy(j->name, rt->name, rt->name_len);
    srv_enqueue(s, &j->job);
}

static void handle_server_metadata(srv *s, sdh_req *req)
{
    char text[256];
    snprintf(text, sizeof(text),
             "{\"name\":\"seldon\",\"version\":\"%s\",\"extensions\":[\"binary_tensor_data\","
             "\"model_repository\",\"adaptive_batching\",\"metrics\"]}",
             seldon_version());
    respond_text(s, req, "server_metadata", 200, text);
}

static void handle_metrics(srv *s, sdh_req *req)
{
    static const sdh_header prom = {"content-type", 12, "text/plain; version=0.0.4", 25};
    seldon_buf b = SELDON_BUF_INIT;
    srv_refresh_loaded(s);
    if (seldon_metrics_render(&b, s->metrics) != 0) {
        seldon_buf_free(&b);
        sdh_respond_error(req, 500, seldon_last_error());
        return;
    }
    sdh_respond(req, 200, &prom, 1, &b);
}

void srv_rest_handler(void *user_data, sdh_req *req, const sdh_request *r)
{
    srv *s = user_data;
    seldon_route rt;
    int rc;

    if (r->path_len == 8 && memcmp(r->path, "/metrics", 8) == 0) {
        handle_metrics(s, req);
        return;
    }
    rc = seldon_route_parse(&rt, r->method, r->method_len, r->path, r->path_len);
    if (rc == SELDON_EUNSUPPORTED) {
        /* A defined path with the wrong method: 405, saying which method it takes. */
        respond_405(s, req, &rt);
        return;
    }
    if (rc < 0) {
        respond_err(s, req, "unknown", srv_http_status(rc), seldon_last_error());
        return;
    }
    switch (rt.kind) {
    case SELDON_ROUTE_MODEL_INFER:
        handle_infer(s, req, r, &rt);
        return;
    case SELDON_ROUTE_HEALTH_LIVE:
        respond_text(s, req, "live", 200, "{\"live\":true}");
        return;
    case SELDON_ROUTE_HEALTH_READY:
        if (atomic_load(&s->ready))
            respond_text(s, req, "ready", 200, "{\"ready\":true}");
        else
            respond_err(s, req, "ready", 400, "the server is still loading its models");
        return;
    case SELDON_ROUTE_SERVER_METADATA:
        handle_server_metadata(s, req);
        return;
    case SELDON_ROUTE_MODEL_METADATA:
        handle_model_ready(s, req, &rt, 1);
        return;
    case SELDON_ROUTE_MODEL_READY:
        handle_model_ready(s, req, &rt, 0);
        return;
    case SELDON_ROUTE_REPO_INDEX:
    case SELDON_ROUTE_REPO_LOAD:
    case SELDON_ROUTE_REPO_UNLOAD:
        handle_repo(s, req, r, &rt);
        return;
    default:
        respond_err(s, req, "pipelines", 404,
                    "pipelines are served by the pipeline gateway, not by seldon-server");
        return;
    }
}
