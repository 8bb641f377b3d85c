/*
 * The REST side of the router: an HTTP/1.1 request, taken in streaming mode at
 * its head, is forwarded to an upstream of its route through this loop's
 * keep-alive pool, and the answer streams back. Bodies are never parsed.
 *
 * Retries: the request's body is kept (up to --replay-limit) while it streams,
 * so a connect failure, a reset before any answer or a 5xx head can be retried
 * on another upstream. A larger body streams without a copy and is not retried
 * once its first bytes went out. Everything runs on the loop that accepted the
 * request.
 *
 * Holding (hold.c): a request that finds no upstream to take it (none left in the
 * route, every one refusing connections, or a route that left a table moments ago)
 * waits for the next table, within --hold and the route's timeout, while it can still
 * be replayed whole.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"
#include "router.h"
#include "sdd.h"

typedef struct rp {
    rt_loop *L;
    sdh_req *down;   /* NULL once answered or gone */
    sdc_request *up; /* the open attempt, or NULL */
    seldon_router_req *rr;
    uv_timer_t *timer; /* the route's deadline, when it has one */
    /* The request head, kept for every attempt (in the same allocation as p). */
    char *mem;
    sdh_request_head head;
    seldon_buf replay; /* every body byte received so far, while replay_ok */
    int status;        /* of the response forwarded */
    /* A small answer is gathered and sent whole (head and body in one write). */
    sdh_header *held_h; /* the upstream's headers, copied, names and values after them */
    size_t held_n;
    seldon_buf held_body;
    int64_t held_len; /* its Content-Length */
    uint8_t replay_ok, body_done, head_sent, up_paused, has_rid, rid_in_response;
    uint8_t deferred; /* a small body is gathered before the first attempt */
    uint8_t holding;  /* an answer is being gathered */
    size_t rid_len;
    /* Experiments: the served model's tag, where it goes in the head, the mirror copy. */
    size_t nh_base;      /* headers kept from the client (and ours), without the internal one */
    int64_t internal_at; /* the client's seldon-internal-model header's index, or -1 */
    sdh_header internal; /* its original value */
    uint8_t mirrored;    /* the mirror copy was sent (or given up) */
    size_t sticky_len;
    rt_held held;       /* parked while no upstream can take it */
    int64_t hold_until; /* set at the first park */
    int fail_status;    /* what a hold that runs out answers */
    uint8_t resets;     /* resets that led to a hold (one is held, not more) */
    size_t name_len;
    /* From here on nothing is zeroed when p is made: each array is written before it is
       read (tag and route_hdr start empty). */
    char tag[SELDON_ROUTES_NAME_MAX + 16]; /* "<route>_<version>" of the attempt's upstream */
    char route_hdr[1024];                  /* x-seldon-route sent back */
    char sticky[256]; /* the request's x-seldon-route (sticky), for a fresh decision */
    char fail_msg[160];
    char name[SELDON_ROUTES_NAME_MAX + 1];
    char rid[37];
    char rid_value[128];
} rp;

static const sdh_stream_ops down_ops;
static const sdc_callbacks up_cbs;
static void attempt(rp *p);
static void park(rp *p, int status, const char *message);
static void arm_deadline(rp *p);

/* --------------------------------------------------------------- endings */

static void timer_closed(uv_handle_t *h)
{
    sdd_free(h);
}

/* Frees p once neither side needs it (down answered or gone, up done). */
static void finish(rp *p, int code)
{
    rt_unhold(&p->held);
    if (p->rr == NULL) /* a route that never came back */
        seldon_router_metrics_request(p->L->r->rmetrics, "", code);
    if (p->timer != NULL) {
        uv_timer_stop(p->timer);
        uv_close((uv_handle_t *)p->timer, timer_closed);
        p->timer = NULL;
    }
    seldon_router_req_finish(p->rr, code);
    seldon_router_req_free(p->rr);
    seldon_buf_free(&p->replay);
    seldon_buf_free(&p->held_body);
    sdd_free(p->held_h);
    sdd_free(p); /* and the head kept in it */
}

/* Drops the open attempt without a callback reaching this request. */
static void drop_up(rp *p)
{
    sdc_request *up = p->up;
    if (up != NULL) {
        p->up = NULL;
        sdc_request_cancel(up); /* its on_done sees p->up != up and returns */
    }
}

/* Answers with an OIP error body, unless the response already started. */
static void fail(rp *p, int status, const char *message)
{
    sdh_req *down = p->down;
    drop_up(p);
    if (down != NULL) {
        p->down = NULL;
        if (!p->head_sent || p->holding) {
            sdh_header h[2] = {{"content-type", 12, "application/json", 16},
                               {"x-request-id", 12, p->rid_value, p->rid_len}};
            seldon_buf b = SELDON_BUF_INIT;
            /* JSON-escaped; control characters dropped. */
            size_t n = strlen(message), i;
            if (seldon_buf_reserve(&b, n * 2 + 16) == 0) {
                memcpy(b.data, "{\"error\":\"", 10);
                b.len = 10;
                for (i = 0; i < n; i++) {
                    unsigned char ch = (unsigned char)message[i];
                    if (ch == '"' || ch == '\\') {
                        b.data[b.len++] = '\\';
                        b.data[b.len++] = ch;
                    } else if (ch >= 0x20 && ch < 0x7f) {
                        b.data[b.len++] = ch;
                    } else if (ch >= 0x80) {
                        b.data[b.len++] = '?'; /* never echo bytes that may not be UTF-8 */
                    }
                }
                memcpy(b.data + b.len, "\"}", 2);
                b.len += 2;
            }
            sdh_respond(down, status, h, 2, &b);
        } else {
            sdh_stream_end(down); /* short of its length, or chunked without its end:
                                     the connection closes, the client sees the loss */
        }
    }
    finish(p, status);
}

/* --------------------------------------------------------------- upstream side */

/* Answers smaller than this are gathered and sent whole: one write to the client. */
#define RP_HOLD_MAX (64 * 1024)
/* Request bodies up to this are gathered before the first attempt: one write upstream. */
#define RP_GATHER_MAX (64 * 1024)

static int outcome_of(int result)
{
    switch (result) {
    case SDC_EREFUSED:
    case SDC_ECONNECT:
    case SDC_ECONNECT_TIMEOUT:
    case SDC_EQUEUEFULL:
        return SELDON_ROUTER_CONNECT_FAILED;
    case SDC_ETIMEOUT:
        return SELDON_ROUTER_TIMEOUT;
    case SDC_ECANCELED:
        return SELDON_ROUTER_CANCELED;
    default:
        return SELDON_ROUTER_RESET;
    }
}

/* Keeps the answer's head to send it with its body: 0, or -1 (then it streams). */
static int hold(rp *p, const sdh_header *h, size_t n, int64_t length)
{
    size_t need = 0, i;
    char *m;
    for (i = 0; i < n; i++)
        need += h[i].name_len + h[i].value_len;
    /* The views, then the names and values they point at: one allocation. */
    p->held_h = sdd_malloc(n * sizeof(*p->held_h) + need + 1);
    if (p->held_h == NULL || seldon_buf_reserve(&p->held_body, (size_t)length) != 0)
        return -1;
    m = (char *)(p->held_h + n);
    for (i = 0; i < n; i++) {
        p->held_h[i].name = m;
        p->held_h[i].name_len = h[i].name_len;
        memcpy(m, h[i].name, h[i].name_len);
        m += h[i].name_len;
        p->held_h[i].value = m;
        p->held_h[i].value_len = h[i].value_len;
        if (h[i].value_len > 0)
            memcpy(m, h[i].value, h[i].value_len);
        m += h[i].value_len;
    }
    p->held_n = n;
    p->held_len = length;
    p->holding = 1;
    p->head_sent = 1; /* as far as retries go: the answer is decided */
    return 0;
}

static void up_head(sdc_request *req, int status, const sdh_header *headers, size_t n,
                    void *user_data)
{
    rp *p = user_data;
    sdh_header hs[64], *h = hs;
    size_t i, k = 0;
    int64_t length;
    int32_t retry = 0;

    if (req != p->up || p->down == NULL)
        return;
    if (status >= 500) {
        seldon_router_attempt_end(&retry, NULL, p->rr, SELDON_ROUTER_HTTP_5XX, p->replay_ok,
                                  rt_now_ns());
        if (retry) {
            drop_up(p);
            attempt(p);
            return;
        }
    }
    if (n + 2 > sizeof(hs) / sizeof(hs[0]) && (h = sdd_malloc((n + 2) * sizeof(*h))) == NULL) {
        fail(p, 502, "router out of memory");
        return;
    }
    for (i = 0; i < n; i++) {
        if (sdx_is_frame_header(&headers[i]))
            continue;
        if (sdh_name_eq(headers[i].name, headers[i].name_len, "x-request-id"))
            p->rid_in_response = 1;
        if (p->tag[0] != '\0' &&
            sdh_name_eq(headers[i].name, headers[i].name_len, SELDON_ROUTER_ROUTE_HEADER)) {
            /* the hops behind the upstream said theirs: ours goes after, as Envoy appends */
            size_t tl = strlen(p->tag), vl = headers[i].value_len;
            if (vl + tl + 4 <= sizeof(p->route_hdr)) {
                memcpy(p->route_hdr, headers[i].value, vl);
                snprintf(p->route_hdr + vl, sizeof(p->route_hdr) - vl, " :%s:", p->tag);
                continue;
            }
        }
        h[k++] = headers[i];
    }
    if (!p->rid_in_response)
        h[k++] = (sdh_header){"x-request-id", 12, p->rid_value, p->rid_len};
    if (p->tag[0] != '\0') {
        if (p->route_hdr[0] == '\0')
            snprintf(p->route_hdr, sizeof(p->route_hdr), ":%s:", p->tag);
        h[k++] = (sdh_header){SELDON_ROUTER_ROUTE_HEADER, 14, p->route_hdr, strlen(p->route_hdr)};
    }
    length = sdx_content_length(status, headers, n);
    p->status = status;
    if (length >= 0 && length <= RP_HOLD_MAX && hold(p, h, k, length) == 0) {
        if (h != hs)
            sdd_free(h);
        return;
    }
    if (sdh_stream_respond(p->down, status, h, k, length) != 0) {
        if (h != hs)
            sdd_free(h);
        fail(p, 502, "bad response head from the upstream");
        return;
    }
    if (h != hs)
        sdd_free(h);
    p->head_sent = 1;
}

static void up_body(sdc_request *req, const char *data, size_t len, void *user_data)
{
    rp *p = user_data;
    if (req != p->up || p->down == NULL || len == 0)
        return;
    if (sdx_body_forward(p->down, req, p->holding, &p->held_body, &p->up_paused, data, len) != 0)
        fail(p, 502, "router out of memory");
}

static void up_drain(sdc_request *req, void *user_data)
{
    rp *p = user_data;
    if (req == p->up && p->down != NULL)
        sdh_stream_resume(p->down);
}

static void up_done(sdc_request *req, int result, void *user_data)
{
    rp *p = user_data;
    int32_t retry = 0;
    int64_t now;
    if (req != p->up)
        return; /* an attempt this request already gave up */
    p->up = NULL;
    now = rt_now_ns();
    if (result == SDC_OK) {
        seldon_router_attempt_end(&retry, NULL, p->rr, seldon_router_outcome(p->status, -1), 0,
                                  now);
        if (p->down != NULL && p->holding) {
            sdh_respond(p->down, p->status, p->held_h, p->held_n, &p->held_body);
            p->down = NULL;
        } else if (p->down != NULL) {
            sdh_stream_end(p->down);
            p->down = NULL;
        }
        finish(p, p->status);
        return;
    }
    seldon_router_attempt_end(&retry, NULL, p->rr, outcome_of(result),
                              p->replay_ok && !p->head_sent, now);
    if (retry && p->down != NULL && !p->head_sent) {
        attempt(p);
        return;
    }
    if (result == SDC_ETIMEOUT)
        fail(p, 504, "upstream timed out");
    else if (result == SDC_EREFUSED || result == SDC_ECONNECT || result == SDC_ECONNECT_TIMEOUT ||
             result == SDC_EQUEUEFULL)
        park(p, 503, "no upstream could be reached");
    else if (!p->head_sent && p->resets++ == 0)
        park(p, 502, sdc_strerror(result)); /* the upstream died under it: once */
    else
        fail(p, 502, sdc_strerror(result));
}

static const sdc_callbacks up_cbs = {up_head, up_body, up_drain, up_done};

/*
 * What the attempt's upstream serves: "<model>_<version>" goes to it as
 * seldon-internal-model (the agent serves that version, whatever the path says:
 * a split to another candidate) and back to the client in x-seldon-route.
 */
static void served_as(rp *p)
{
    sdh_header *hs = (sdh_header *)p->head.headers;
    size_t len = 0;
    p->tag[0] = '\0';
    p->route_hdr[0] = '\0';
    p->head.n_headers = p->nh_base;
    if (p->internal_at >= 0)
        hs[p->internal_at] = p->internal;
    if (seldon_router_req_version(p->rr) == 0 && !seldon_router_req_split(p->rr))
        return;
    if (seldon_router_req_tag(p->tag, &len, sizeof(p->tag), p->rr) != 0) {
        p->tag[0] = '\0';
        return;
    }
    if (!rt_tags_upstream(p->rr))
        return; /* no version: the route's name says it all (x-seldon-route only) */
    if (p->internal_at >= 0) {
        hs[p->internal_at] = (sdh_header){SELDON_ROUTER_INTERNAL_HEADER, 21, p->tag, len};
    } else {
        hs[p->nh_base] = (sdh_header){SELDON_ROUTER_INTERNAL_HEADER, 21, p->tag, len};
        p->head.n_headers = p->nh_base + 1;
    }
}

/* A mirror copy: its answer is read and dropped; the caller never waits for it. */
typedef struct mirror_call {
    rt_loop *L;
    seldon_router_req *rr;
    int status;
} mirror_call;

static void mirror_head(sdc_request *req, int status, const sdh_header *headers, size_t n,
                        void *user_data)
{
    mirror_call *m = user_data;
    (void)req, (void)headers, (void)n;
    m->status = status;
}

static void mirror_done(sdc_request *req, int result, void *user_data)
{
    mirror_call *m = user_data;
    int32_t retry = 0;
    (void)req;
    seldon_router_attempt_end(&retry, NULL, m->rr,
                              result == SDC_OK ? seldon_router_outcome(m->status, -1)
                                               : outcome_of(result),
                              0, rt_now_ns());
    seldon_router_req_finish(m->rr, result == SDC_OK ? m->status : 502);
    if (result != SDC_OK)
        sdd_log(SELDON_LOG_DEBUG, "mirror copy to %s: %s", seldon_router_req_route_name(m->rr),
                sdc_strerror(result));
    m->L->mirrors--;
    seldon_router_req_free(m->rr);
    sdd_free(m);
}

static const sdc_callbacks mirror_cbs = {mirror_head, NULL, NULL, mirror_done};

/* Sends the mirror copy once the whole request is held (bodies past --replay-limit: none). */
static void mirror(rp *p)
{
    mirror_call *m;
    const seldon_router_upstream *u = NULL;
    sdh_request_head head;
    sdh_header *hs;
    sdc_request *up = NULL;
    sdc_pool *pool;
    char tag[SELDON_ROUTES_NAME_MAX + 16];
    size_t len = 0, i, k = 0;
    int64_t now = rt_now_ns();
    int rc;
    seldon_router_req *rr = NULL;
    if ((rr = rt_mirror_req(&p->mirrored, p->rr, now)) == NULL)
        return;
    m = sdd_calloc(1, sizeof(*m));
    if (m == NULL) {
        seldon_router_req_free(rr);
        return;
    }
    m->L = p->L;
    m->rr = rr;
    if (!p->replay_ok || p->L->mirrors >= RT_MIRRORS_MAX(p->L->r)) {
        sdd_log(SELDON_LOG_DEBUG, "mirror copy to %s skipped: %s",
                seldon_router_req_route_name(m->rr),
                p->replay_ok ? "too many copies in flight" : "the body is past --replay-limit");
        goto drop;
    }
    if (seldon_router_pick(&u, m->rr, now) != 0 || u->http == NULL ||
        (pool = rt_pool_get(p->L, u)) == NULL)
        goto drop;
    hs = sdd_malloc((p->nh_base + 1) * sizeof(*hs));
    if (hs == NULL)
        goto drop;
    for (i = 0; i < p->nh_base; i++)
        if ((int64_t)i != p->internal_at)
            hs[k++] = p->head.headers[i];
    if (rt_tags_upstream(m->rr) && seldon_router_req_tag(tag, &len, sizeof(tag), m->rr) == 0)
        hs[k++] = (sdh_header){SELDON_ROUTER_INTERNAL_HEADER, 21, tag, len};
    head = p->head;
    head.headers = hs;
    head.n_headers = k;
    if (head.content_length == SDH_BODY_CHUNKED)
        head.content_length = (int64_t)p->replay.len;
    if (head.content_length == SDH_BODY_NONE)
        rc = sdc_request_start(&up, pool, &head, &mirror_cbs, m);
    else
        rc =
            sdc_request_start_body(&up, pool, &head, p->replay.data, p->replay.len, &mirror_cbs, m);
    sdd_free(hs);
    if (rc == 0) {
        uint64_t timeout_ms = rt_timeout_ms(seldon_router_req_deadline(m->rr), now);
        p->L->mirrors++;
        if (timeout_ms > 0) /* the route's timeout bounds the copy too */
            sdc_request_set_timeout(up, timeout_ms);
        return;
    }
    {
        int32_t retry = 0;
        seldon_router_attempt_end(&retry, NULL, m->rr, SELDON_ROUTER_CONNECT_FAILED, 0, now);
    }
drop:
    seldon_router_req_free(m->rr);
    sdd_free(m);
}

static void attempt(rp *p)
{
    const seldon_router_upstream *u = NULL;
    sdc_pool *pool;
    int64_t now = rt_now_ns();
    int32_t retry = 0;
    int rc;

    if (p->rr == NULL) {
        park(p, 404, "no route");
        return;
    }
    for (;;) {
        rc = seldon_router_pick(&u, p->rr, now);
        if (rc != 0) {
            if (rt_route_serves(p->L, p->name, p->name_len, SELDON_ROUTER_HTTP))
                park(p, 503, seldon_last_error());
            else
                fail(p, 503, seldon_last_error()); /* this protocol has no upstream here */
            return;
        }
        pool = rt_pool_get(p->L, u);
        served_as(p);
        if (pool == NULL)
            rc = SDC_ENOMEM;
        else if (p->body_done && p->replay_ok && p->head.content_length >= 0)
            rc = sdc_request_start_body(&p->up, pool, &p->head, p->replay.data, p->replay.len,
                                        &up_cbs, p);
        else
            rc = sdc_request_start(&p->up, pool, &p->head, &up_cbs, p);
        if (rc == 0)
            break;
        p->up = NULL;
        seldon_router_attempt_end(&retry, NULL, p->rr, SELDON_ROUTER_CONNECT_FAILED, 1, now);
        if (!retry) {
            park(p, 503, "no upstream could take the request");
            return;
        }
    }
    p->up_paused = 0;
    if (p->body_done)
        mirror(p);
    if (p->head.content_length == 0 || p->head.content_length == SDH_BODY_NONE ||
        (p->body_done && p->replay_ok && p->head.content_length >= 0))
        return; /* no body, or all of it went with the head */
    if (p->replay.len > 0 || p->body_done) {
        rc = sdc_request_write(p->up, p->replay.data, p->replay.len, p->body_done);
        if (rc == 1 && p->down != NULL && !p->body_done)
            sdh_stream_pause(p->down);
    }
}

/* --------------------------------------------------------------- downstream side */

static void down_body(void *user_data, sdh_req *req, const uint8_t *data, size_t len)
{
    rp *p = user_data;
    (void)req;
    if (p->down == NULL || len == 0)
        return;
    rt_replay_keep(p->L->r, &p->replay, &p->replay_ok, data, len);
    if (p->deferred) {
        if (!p->replay_ok) /* only when memory ran out */
            fail(p, 503, "router out of memory");
        return; /* gathered; the first attempt takes it whole */
    }
    if (p->up != NULL && sdc_request_write(p->up, data, len, 0) == 1)
        sdh_stream_pause(p->down);
}

static void down_end(void *user_data, sdh_req *req)
{
    rp *p = user_data;
    (void)req;
    p->body_done = 1;
    if (p->deferred) {
        p->deferred = 0;
        if (!p->held.linked) /* a held request goes once it is woken */
            attempt(p);
        return;
    }
    if (p->down != NULL)
        mirror(p);
    if (p->up != NULL && p->head.content_length != 0 && p->head.content_length != SDH_BODY_NONE)
        sdc_request_write(p->up, NULL, 0, 1);
}

static void down_drain(void *user_data, sdh_req *req)
{
    rp *p = user_data;
    (void)req;
    if (p->up != NULL && p->up_paused) {
        p->up_paused = 0;
        sdc_request_pause(p->up, 0);
    }
}

static void down_abort(void *user_data, sdh_req *req)
{
    rp *p = user_data;
    (void)req;
    p->down = NULL;
    drop_up(p);     /* freeing the request ends its open attempt as canceled */
    finish(p, 499); /* the client closed the connection (nginx's code) */
}

static const sdh_stream_ops down_ops = {down_body, down_end, down_drain, down_abort};

static void on_deadline(uv_timer_t *t)
{
    rp *p = t->data;
    drop_up(p);
    rt_unhold(&p->held);
    if (p->rr != NULL)
        seldon_router_attempt_end(NULL, NULL, p->rr, SELDON_ROUTER_TIMEOUT, 0, rt_now_ns());
    fail(p, 504, "the route's timeout passed before the upstream answered");
}

/* --------------------------------------------------------------- holding */

static void arm_deadline(rp *p)
{
    int64_t deadline = p->rr != NULL ? seldon_router_req_deadline(p->rr) : 0, ms;
    if (deadline <= 0 || p->timer != NULL)
        return;
    ms = (deadline - rt_now_ns()) / 1000000;
    p->timer = sdd_malloc(sizeof(*p->timer));
    if (p->timer != NULL) {
        uv_timer_init(p->L->loop, p->timer);
        p->timer->data = p;
        uv_timer_start(p->timer, on_deadline, ms > 0 ? (uint64_t)ms : 0, 0);
    }
}

static void wake(rt_held *h, int expired)
{
    rp *p = (rp *)((char *)h - offsetof(rp, held));
    if (p->down == NULL) {
        finish(p, 499);
        return;
    }
    if (expired || !p->replay_ok || p->L->closing) {
        fail(p, p->fail_status, p->fail_msg);
        return;
    }
    /* A fresh request on the table in force: its upstreams, its retry budget. */
    seldon_router_req_free(p->rr);
    p->rr = NULL;
    if (seldon_router_req_new_split(&p->rr, p->L->lb, p->name, p->name_len, p->sticky,
                                    p->sticky_len, SELDON_ROUTER_HTTP, rt_now_ns()) != 0) {
        p->rr = NULL;
        rt_hold(p->L, &p->held); /* still no route: wait on */
        return;
    }
    arm_deadline(p);
    if (p->deferred && !p->body_done)
        return; /* the body's end sends it */
    attempt(p);
}

/* No upstream can take the request now: it waits for the next table (or the tick),
   while it can be replayed and within the hold; else it fails with status, message. */
static void park(rp *p, int status, const char *message)
{
    int64_t now = rt_now_ns();
    drop_up(p);
    if (p->hold_until == 0)
        p->hold_until = rt_hold_until(p->L, now);
    if (p->down == NULL || p->head_sent || !p->replay_ok || p->hold_until == 0 ||
        now >= p->hold_until || p->L->closing) {
        fail(p, status, message);
        return;
    }
    p->fail_status = status;
    snprintf(p->fail_msg, sizeof(p->fail_msg), "%s", message);
    p->held.until_ns = p->hold_until;
    p->held.wake = wake;
    rt_hold(p->L, &p->held);
}

/* --------------------------------------------------------------- the head */

/* Bytes keep_head() needs after the rp: header views, then their bytes. */
static size_t keep_head_size(const sdh_request *h, size_t route_len)
{
    size_t need = h->method_len + h->path_len + 1 + h->query_len + route_len + 1, i;
    for (i = 0; i < h->nheaders; i++)
        need += h->headers[i].name_len + h->headers[i].value_len;
    return (h->nheaders + 3) * sizeof(sdh_header) + need;
}

/* Copies what every attempt sends: method, target, headers (+ x-request-id, seldon-model),
 * into p->mem (keep_head_size() bytes). */
static void keep_head(rp *p, const sdh_request *h, const char *route, size_t route_len)
{
    size_t nh = h->nheaders + 3, i, k = 0;
    char *m;
    sdh_header *hs;
    const sdh_header *rid = NULL;
    int has_model = 0;
    p->internal_at = -1;

    hs = (sdh_header *)p->mem;
    m = p->mem + nh * sizeof(sdh_header);
    p->head.method = m;
    p->head.method_len = h->method_len;
    memcpy(m, h->method, h->method_len);
    m += h->method_len;
    p->head.target = m;
    memcpy(m, h->path, h->path_len);
    m += h->path_len;
    if (h->query_len > 0) {
        *m++ = '?';
        memcpy(m, h->query, h->query_len);
        m += h->query_len;
    }
    p->head.target_len = (size_t)(m - p->head.target);
    for (i = 0; i < h->nheaders; i++) {
        const sdh_header *x = &h->headers[i];
        if (rid == NULL && sdh_name_eq(x->name, x->name_len, "x-request-id"))
            rid = x;
        else if (!has_model && sdh_name_eq(x->name, x->name_len, "seldon-model"))
            has_model = 1;
        /* Host is the pool's; a 100-continue was answered here already, and the
           client swallows interim answers, so the upstream must not wait for one. */
        if (sdx_is_frame_header(x) || sdh_name_eq(x->name, x->name_len, "host") ||
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
        if (p->internal_at < 0 &&
            sdh_name_eq(x->name, x->name_len, SELDON_ROUTER_INTERNAL_HEADER)) {
            p->internal_at = (int64_t)k;
            p->internal = hs[k];
        }
        k++;
    }
    if (rid != NULL && rid->value_len > 0 && rid->value_len <= sizeof(p->rid_value)) {
        memcpy(p->rid_value, rid->value, rid->value_len);
        p->rid_len = rid->value_len;
    } else {
        if (rid != NULL) /* too long to echo: replaced */
            for (i = 0; i < k; i++)
                if (sdh_name_eq(hs[i].name, hs[i].name_len, "x-request-id")) {
                    hs[i] = hs[--k];
                    if (p->internal_at == (int64_t)k)
                        p->internal_at = (int64_t)i;
                }
        rt_request_id(p->L, p->rid);
        p->rid_len = strlen(p->rid);
        memcpy(p->rid_value, p->rid, p->rid_len);
        hs[k++] = (sdh_header){"x-request-id", 12, p->rid_value, p->rid_len};
    }
    if (!has_model) {
        memcpy(m, route, route_len);
        hs[k++] = (sdh_header){"seldon-model", 12, m, route_len};
        m += route_len;
    }
    p->head.headers = hs;
    p->head.n_headers = k;
    p->nh_base = k;
    p->head.host = NULL;
    p->head.host_len = 0;
}

static int route_of(char *name, size_t *len, size_t cap, const sdh_request *h)
{
    size_t hl = 0;
    const char *hv = sdh_request_header(h, "seldon-model", &hl);
    return seldon_router_route_name(name, len, cap, SELDON_ROUTER_HTTP, hv, hl, h->path,
                                    h->path_len);
}

void rt_rest_head(void *user_data, sdh_req *req, const sdh_request *head)
{
    router *r = user_data;
    rt_loop *L = rt_current(r);
    char name[SELDON_ROUTES_NAME_MAX + 1];
    size_t len = 0, sticky_len = 0;
    const char *sticky;
    int64_t declared;
    int routed;
    rp *p;

    if (L == NULL || L->closing || route_of(name, &len, sizeof(name), head) != 0)
        return; /* the whole-body handler answers the error */
    /* The request's state and its kept head in one allocation; only the state's
       scalars are zeroed (see rp). */
    p = sdd_malloc(sizeof(*p) + keep_head_size(head, len));
    if (p == NULL)
        return;
    memset(p, 0, offsetof(rp, tag));
    p->tag[0] = '\0';
    p->route_hdr[0] = '\0';
    p->mem = (char *)(p + 1);
    p->L = L;
    sticky = sdh_request_header(head, SELDON_ROUTER_ROUTE_HEADER, &sticky_len);
    if (sticky != NULL && sticky_len < sizeof(p->sticky)) { /* kept for a held request */
        memcpy(p->sticky, sticky, sticky_len);
        p->sticky_len = sticky_len;
    }
    routed = seldon_router_req_new_split(&p->rr, L->lb, name, len, p->sticky, p->sticky_len,
                                         SELDON_ROUTER_HTTP, rt_now_ns()) == 0;
    if (!routed)
        p->rr = NULL;
    /* An unknown route is the whole-body handler's 404, unless the model was routed
       moments ago (it is moving): then the request is held. */
    if (!routed && !rt_route_gone(L, name, len)) {
        seldon_router_req_free(p->rr);
        sdd_free(p);
        return;
    }
    keep_head(p, head, name, len);
    declared = sdh_stream_body_length(req);
    if (declared < 0)
        p->head.content_length = SDH_BODY_CHUNKED;
    else if (declared == 0 && ((head->method_len == 3 && memcmp(head->method, "GET", 3) == 0) ||
                               (head->method_len == 4 && memcmp(head->method, "HEAD", 4) == 0)))
        p->head.content_length = SDH_BODY_NONE;
    else
        p->head.content_length = declared;
    memcpy(p->name, name, len);
    p->name_len = len;
    p->replay_ok = 1;
    p->body_done = declared == 0;
    p->deferred =
        declared > 0 && (size_t)declared <= p->L->r->cfg.replay_limit && declared <= RP_GATHER_MAX;
    if (sdh_stream_take(req, &down_ops, p) != 0) {
        seldon_router_req_free(p->rr);
        sdd_free(p);
        return;
    }
    p->down = req;
    arm_deadline(p);
    if (p->rr == NULL) {
        char msg[SELDON_ROUTES_NAME_MAX + 32];
        snprintf(msg, sizeof(msg), "no route for model \"%s\"", name);
        park(p, 404, msg);
    } else if (!p->deferred)
        attempt(p);
}

/* Requests the head handler left whole: the ones it could not route. */
void rt_rest_handler(void *user_data, sdh_req *req, const sdh_request *request)
{
    router *r = user_data;
    rt_loop *L = rt_current(r);
    char name[SELDON_ROUTES_NAME_MAX + 1];
    char msg[SELDON_ROUTES_NAME_MAX + 64];
    size_t len = 0, idx;
    int32_t status = 500;
    int rc = route_of(name, &len, sizeof(name), request);

    if (rc != 0) {
        seldon_router_status(&status, NULL, rc);
        sdh_respond_error(req, status, seldon_last_error());
        seldon_router_metrics_request(r->rmetrics, "", status);
        return;
    }
    if (L == NULL || L->closing) {
        sdh_respond_error(req, 503, "the router is shutting down");
        return;
    }
    if (seldon_routes_find(&idx, seldon_router_lb_routes(L->lb), name, len) != 0) {
        snprintf(msg, sizeof(msg), "no route for model \"%s\"", name);
        sdh_respond_error(req, 404, msg);
        seldon_router_metrics_request(r->rmetrics, "", 404);
        return;
    }
    /* The route exists now: it came with a table that arrived between the request's head
       and its body (the usual case), or the head handler ran out of memory. Either way a
       second try can be routed. */
    snprintf(msg, sizeof(msg), "no route for model \"%s\" when the request arrived: try again",
             name);
    sdh_respond_error(req, 503, msg);
    seldon_router_metrics_request(r->rmetrics, "", 503);
}
