/*
 * The agent's REST proxy: /v2/models/<name>/... goes to the server as
 * /v2/models/<name>_<version>/..., the newest version this replica holds (or the
 * one a seldon-internal-model header names). Bodies stream both ways and are never
 * parsed. A request for an evicted model pauses its body until the model is loaded
 * again (bounded by --load-wait). Other paths (health, server metadata) pass as they
 * are.
 */
#include <stdio.h>
#include <string.h>

#include "agent.h"
#include "proxy.h"
#include "sdd.h"

typedef struct rp {
    agent *a;
    sdh_req *down;
    sdc_request *up;
    ag_waiter w;
    uv_timer_t *timer;
    char *mem;
    sdh_request_head head;
    seldon_buf pend; /* body bytes that came while waiting (normally none: paused) */
    int64_t started;
    int status;
    /* A small answer is gathered and sent whole: head and body in one write. */
    seldon_buf held_head; /* the server's header names and values, copied */
    sdh_header *held_h;
    size_t held_n;
    seldon_buf held_body;
    uint8_t body_done, up_paused, waiting, is_infer, has_body, deferred, holding;
    uint8_t replayable, retried; /* the whole request is kept: a 404 can be retried once */
    uint8_t counted;             /* in its model's in-flight count */
    char model[256];
    char vname[300];
} rp;

static const sdh_stream_ops down_ops;
static const sdc_callbacks up_cbs;

/* Request bodies up to this are gathered and sent with the head; answers up to this are
   gathered and sent whole. As seldon-router does: fewer writes on the hot path. */
#define AG_SMALL (64 * 1024)

static void timer_closed(uv_handle_t *h)
{
    sdd_free(h);
}

static void finish(rp *p, int code)
{
    if (p->timer != NULL) {
        uv_timer_stop(p->timer);
        uv_close((uv_handle_t *)p->timer, timer_closed);
        p->timer = NULL;
    }
    ag_waiter_cancel(&p->w);
    if (p->model[0] != '\0' && p->is_infer)
        ag_metrics_infer(p->a, p->model, p->vname, "rest", code, p->started);
    if (p->counted)
        ag_models_end(p->a, p->vname);
    seldon_buf_free(&p->pend);
    seldon_buf_free(&p->held_head);
    seldon_buf_free(&p->held_body);
    sdd_free(p->held_h);
    sdd_free(p->mem);
    sdd_free(p);
}

static void drop_up(rp *p)
{
    sdc_request *up = p->up;
    if (up != NULL) {
        p->up = NULL;
        sdc_request_cancel(up);
    }
}

static void fail(rp *p, int status, const char *message)
{
    drop_up(p);
    if (p->down != NULL) {
        sdh_req *down = p->down;
        p->down = NULL;
        if (p->status == 0 || p->holding)
            sdh_respond_error(down, status, message);
        else
            sdh_stream_end(down); /* the answer had started: the client sees it cut */
    }
    finish(p, p->status ? p->status : status);
}

/* ------------------------------------------------------------ upstream */

/* Keeps the answer's head to send it with its body: 0, or -1 (then it streams). */
static int hold(rp *p, const sdh_header *h, size_t n, int64_t length)
{
    size_t need = 0, i, k = 0;
    uint8_t *m;
    for (i = 0; i < n; i++)
        need += h[i].name_len + h[i].value_len;
    p->held_h = sdd_malloc((n ? n : 1) * sizeof(*p->held_h));
    if (p->held_h == NULL || seldon_buf_reserve(&p->held_head, need ? need : 1) != 0 ||
        seldon_buf_reserve(&p->held_body, length > 0 ? (size_t)length : 1) != 0) {
        sdd_free(p->held_h);
        p->held_h = NULL;
        return -1;
    }
    m = p->held_head.data;
    for (i = 0; i < n; i++) {
        if (sdx_is_frame_header(&h[i]))
            continue;
        p->held_h[k].name = (const char *)m;
        p->held_h[k].name_len = h[i].name_len;
        memcpy(m, h[i].name, h[i].name_len);
        m += h[i].name_len;
        p->held_h[k].value = (const char *)m;
        p->held_h[k].value_len = h[i].value_len;
        if (h[i].value_len > 0)
            memcpy(m, h[i].value, h[i].value_len);
        m += h[i].value_len;
        k++;
    }
    p->held_n = k;
    p->holding = 1;
    return 0;
}

static int retry_lost(rp *p);

static void up_head(sdc_request *req, int status, const sdh_header *h, size_t n, void *ud)
{
    rp *p = ud;
    int64_t length;
    if (req != p->up || p->down == NULL)
        return;
    if (status == 404 && retry_lost(p))
        return;
    length = sdx_content_length(status, h, n);
    if (length >= 0 && length <= AG_SMALL && hold(p, h, n, length) == 0) {
        p->status = status;
        return;
    }
    if (sdh_stream_respond(p->down, status, h, n, length) != 0) {
        fail(p, 502, "bad response head from the server");
        return;
    }
    p->status = status;
}

static void up_body(sdc_request *req, const char *data, size_t len, void *ud)
{
    rp *p = ud;
    if (req != p->up || p->down == NULL || len == 0)
        return;
    if (sdx_body_forward(p->down, req, p->holding, &p->held_body, &p->up_paused, data, len) != 0)
        fail(p, 502, "agent out of memory");
}

static void up_drain(sdc_request *req, void *ud)
{
    rp *p = ud;
    if (req == p->up && p->down != NULL)
        sdh_stream_resume(p->down);
}

static void up_done(sdc_request *req, int result, void *ud)
{
    rp *p = ud;
    if (req != p->up)
        return;
    p->up = NULL;
    if (result == SDC_OK) {
        if (p->down != NULL && p->holding)
            sdh_respond(p->down, p->status, p->held_h, p->held_n, &p->held_body);
        else if (p->down != NULL)
            sdh_stream_end(p->down);
        p->down = NULL;
        finish(p, p->status);
        return;
    }
    if (result == SDC_EREFUSED || result == SDC_ECONNECT || result == SDC_ECONNECT_TIMEOUT)
        fail(p, 503, "the inference server cannot be reached");
    else
        fail(p, 502, sdc_strerror(result));
}

static const sdc_callbacks up_cbs = {up_head, up_body, up_drain, up_done};

static void start_up(rp *p)
{
    int rc;
    if (p->deferred && !p->body_done)
        return; /* down_end starts it with the whole body */
    if (p->body_done && p->head.content_length >= 0 &&
        (size_t)p->head.content_length == p->pend.len && p->pend.len > 0) {
        /* pend is kept: the request can be sent again if the server lost the model. */
        rc = sdc_request_start_body(&p->up, p->a->pool, &p->head, p->pend.data, p->pend.len,
                                    &up_cbs, p);
        p->replayable = 1;
        if (rc != 0) {
            p->up = NULL;
            fail(p, 503, "the inference server cannot take the request");
        }
        return;
    }
    rc = sdc_request_start(&p->up, p->a->pool, &p->head, &up_cbs, p);
    if (rc != 0) {
        p->up = NULL;
        fail(p, 503, "the inference server cannot take the request");
        return;
    }
    p->replayable = !p->has_body;
    if (!p->has_body)
        return;
    if (p->pend.len > 0 || p->body_done) {
        if (sdc_request_write(p->up, p->pend.data, p->pend.len, p->body_done) == 1 &&
            p->down != NULL && !p->body_done)
            sdh_stream_pause(p->down);
        seldon_buf_free(&p->pend);
    }
}

/* ------------------------------------------------------------ waiting for a reload */

static void loaded_again(void *arg, int ok, const char *reason)
{
    rp *p = arg;
    char msg[600];
    p->waiting = 0;
    if (p->timer != NULL) {
        uv_timer_stop(p->timer);
        uv_close((uv_handle_t *)p->timer, timer_closed);
        p->timer = NULL;
    }
    if (!ok) {
        snprintf(msg, sizeof(msg), "model %s is not available: %s", p->vname, reason);
        fail(p, 503, msg);
        return;
    }
    start_up(p);
    /* The rest of the body: streamed to the server, or gathered first when small. */
    if (p->down != NULL && (p->up != NULL || p->deferred))
        sdh_stream_resume(p->down);
}

static void wait_expired(uv_timer_t *t)
{
    rp *p = t->data;
    char msg[400];
    ag_waiter_cancel(&p->w);
    snprintf(msg, sizeof(msg), "model %s was not loaded again within %llu ms (--load-wait)",
             p->vname, (unsigned long long)p->a->cfg.load_wait_ms);
    fail(p, 503, msg);
}

/*
 * The server answered 404 for a model the agent holds as loaded: it lost it (it
 * restarted). Loads it again and sends the request once more, when the whole request is
 * still here. 1 when the request now waits for that.
 */
static int retry_lost(rp *p)
{
    ag_entry *e;
    int rc;
    if (!p->replayable || p->retried || p->vname[0] == '\0')
        return 0;
    e = ag_cache_find(p->a->cache, p->vname, strlen(p->vname));
    if (e == NULL || e->state != AG_LOADED)
        return 0;
    p->retried = 1;
    drop_up(p);
    ag_models_lost(p->a, e);
    rc = ag_models_acquire(p->a, e, &p->w);
    if (rc < 0) {
        fail(p, 503, seldon_last_error());
        return 1;
    }
    if (rc == 1) { /* loaded meanwhile */
        start_up(p);
        return 1;
    }
    p->waiting = 1;
    p->timer = sdd_malloc(sizeof(*p->timer));
    if (p->timer != NULL) {
        uv_timer_init(p->a->loop, p->timer);
        p->timer->data = p;
        uv_timer_start(p->timer, wait_expired, p->a->cfg.load_wait_ms, 0);
    }
    return 1;
}

/* ------------------------------------------------------------ downstream */

static void down_body(void *ud, sdh_req *req, const uint8_t *data, size_t len)
{
    rp *p = ud;
    (void)req;
    if (p->down == NULL || len == 0)
        return;
    if (p->up == NULL) {
        if (seldon_buf_reserve(&p->pend, len) != 0) {
            fail(p, 503, "agent out of memory");
            return;
        }
        memcpy(p->pend.data + p->pend.len, data, len);
        p->pend.len += len;
        if (p->waiting || !p->deferred || p->pend.len > AG_SMALL)
            sdh_stream_pause(p->down);
        return;
    }
    if (sdc_request_write(p->up, data, len, 0) == 1)
        sdh_stream_pause(p->down);
}

static void down_end(void *ud, sdh_req *req)
{
    rp *p = ud;
    (void)req;
    p->body_done = 1;
    if (p->up != NULL && p->has_body)
        sdc_request_write(p->up, NULL, 0, 1);
    else if (p->up == NULL && p->deferred && !p->waiting && p->down != NULL)
        start_up(p);
}

static void down_drain(void *ud, sdh_req *req)
{
    rp *p = ud;
    (void)req;
    if (p->up != NULL && p->up_paused) {
        p->up_paused = 0;
        sdc_request_pause(p->up, 0);
    }
}

static void down_abort(void *ud, sdh_req *req)
{
    rp *p = ud;
    (void)req;
    p->down = NULL;
    drop_up(p);
    finish(p, 499);
}

static const sdh_stream_ops down_ops = {down_body, down_end, down_drain, down_abort};

/* ------------------------------------------------------------ the head */

/* The model segment of /v2/models/<name>[/...]: 0 with its span, or -1. */
static int model_of(const sdh_request *h, size_t *off, size_t *len)
{
    size_t i;
    if (h->path_len <= 11 || memcmp(h->path, "/v2/models/", 11) != 0)
        return -1;
    for (i = 11; i < h->path_len && h->path[i] != '/'; i++)
        ;
    if (i == 11)
        return -1;
    *off = 11;
    *len = i - 11;
    return 0;
}

static ag_entry *resolve(agent *a, const sdh_request *h, size_t off, size_t len)
{
    size_t hl = 0;
    const char *hv = sdh_request_header(h, "seldon-internal-model", &hl);
    if (hv != NULL && hl > 0)
        return ag_cache_find(a->cache, hv, hl);
    return ag_cache_resolve(a->cache, h->path + off, len);
}

static int keep_head(rp *p, const sdh_request *h, size_t off, size_t len)
{
    size_t vlen = strlen(p->vname);
    size_t need = h->method_len + h->path_len + vlen + 2 + h->query_len, i, k = 0;
    char *m;
    sdh_header *hs;
    for (i = 0; i < h->nheaders; i++)
        need += h->headers[i].name_len + h->headers[i].value_len;
    p->mem = sdd_malloc((h->nheaders + 1) * sizeof(sdh_header) + need);
    if (p->mem == NULL)
        return -1;
    hs = (sdh_header *)p->mem;
    m = p->mem + (h->nheaders + 1) * sizeof(sdh_header);
    p->head.method = m;
    p->head.method_len = h->method_len;
    memcpy(m, h->method, h->method_len);
    m += h->method_len;
    p->head.target = m;
    if (len > 0) {
        memcpy(m, h->path, off);
        m += off;
        memcpy(m, p->vname, vlen);
        m += vlen;
        memcpy(m, h->path + off + len, h->path_len - off - len);
        m += h->path_len - off - len;
    } else {
        memcpy(m, h->path, h->path_len);
        m += h->path_len;
    }
    if (h->query_len > 0) {
        *m++ = '?';
        memcpy(m, h->query, h->query_len);
        m += h->query_len;
    }
    p->head.target_len = (size_t)(m - p->head.target);
    for (i = 0; i < h->nheaders; i++) {
        const sdh_header *x = &h->headers[i];
        if (sdh_header_is_hop_by_hop(x->name, x->name_len) ||
            sdh_name_eq(x->name, x->name_len, "content-length") ||
            sdh_name_eq(x->name, x->name_len, "host") ||
            sdh_name_eq(x->name, x->name_len, "expect"))
            continue;
        hs[k].name = m;
        hs[k].name_len = x->name_len;
        memcpy(m, x->name, x->name_len);
        m += x->name_len;
        hs[k].value = m;
        hs[k].value_len = x->value_len;
        memcpy(m, x->value, x->value_len);
        m += x->value_len;
        k++;
    }
    p->head.headers = hs;
    p->head.n_headers = k;
    p->head.host = NULL;
    p->head.host_len = 0;
    return 0;
}

void ag_rest_head(void *user_data, sdh_req *req, const sdh_request *head)
{
    agent *a = user_data;
    ag_entry *e = NULL;
    size_t off = 0, len = 0;
    int64_t declared;
    rp *p;
    int rc = 1;

    if (a->stopping)
        return;
    if (model_of(head, &off, &len) == 0) {
        e = resolve(a, head, off, len);
        if (e == NULL)
            return; /* the whole-body handler answers 404 */
    }
    p = sdd_calloc(1, sizeof(*p));
    if (p == NULL)
        return;
    p->a = a;
    p->started = ag_now_ns();
    p->w.fn = loaded_again;
    p->w.arg = p;
    if (e != NULL) {
        snprintf(p->model, sizeof(p->model), "%.*s", (int)(e->model ? strlen(e->model) : 0),
                 e->model);
        snprintf(p->vname, sizeof(p->vname), "%s", e->vname);
        ag_models_begin(a, p->vname);
        p->counted = 1;
        p->is_infer =
            head->path_len >= 6 && memcmp(head->path + head->path_len - 6, "/infer", 6) == 0;
    }
    if (keep_head(p, head, off, e != NULL ? len : 0) != 0) {
        if (p->counted)
            ag_models_end(a, p->vname);
        sdd_free(p);
        return;
    }
    declared = sdh_stream_body_length(req);
    if (declared < 0)
        p->head.content_length = SDH_BODY_CHUNKED;
    else if (declared == 0 && ((head->method_len == 3 && memcmp(head->method, "GET", 3) == 0) ||
                               (head->method_len == 4 && memcmp(head->method, "HEAD", 4) == 0)))
        p->head.content_length = SDH_BODY_NONE;
    else
        p->head.content_length = declared;
    p->has_body = p->head.content_length != 0 && p->head.content_length != SDH_BODY_NONE;
    p->body_done = declared == 0;
    p->deferred = declared > 0 && declared <= AG_SMALL;
    if (sdh_stream_take(req, &down_ops, p) != 0) {
        if (p->counted)
            ag_models_end(a, p->vname);
        sdd_free(p->mem);
        sdd_free(p);
        return;
    }
    p->down = req;
    if (e != NULL)
        rc = ag_models_acquire(a, e, &p->w);
    if (rc < 0) {
        fail(p, 503, seldon_last_error());
        return;
    }
    if (rc == 0) {
        p->waiting = 1;
        sdh_stream_pause(req);
        p->timer = sdd_malloc(sizeof(*p->timer));
        if (p->timer != NULL) {
            uv_timer_init(a->loop, p->timer);
            p->timer->data = p;
            uv_timer_start(p->timer, wait_expired, a->cfg.load_wait_ms, 0);
        }
        return;
    }
    start_up(p);
}

/* Requests the head handler left whole: models this replica does not hold. */
void ag_rest_handler(void *user_data, sdh_req *req, const sdh_request *request)
{
    agent *a = user_data;
    char msg[400];
    size_t off = 0, len = 0;
    if (a->stopping) {
        sdh_respond_error(req, 503, "the agent is stopping");
        return;
    }
    if (model_of(request, &off, &len) == 0) {
        size_t hl = 0;
        const char *hv = sdh_request_header(request, "seldon-internal-model", &hl);
        if (hv != NULL && hl > 0)
            snprintf(msg, sizeof(msg), "model %.*s is not held by this replica", (int)hl, hv);
        else
            snprintf(msg, sizeof(msg), "model %.*s is not loaded on this replica", (int)len,
                     request->path + off);
        sdh_respond_error(req, 404, msg);
        return;
    }
    sdh_respond_error(req, 503, "agent out of memory");
}
