/*
 * The gRPC side of the router: an h2c stream (adopted from the shared port) is
 * forwarded frame by frame to an upstream of its route through this loop's h2c
 * client; headers, messages and trailers flow back as they come. Messages are
 * never decoded.
 *
 * Flow control carries backpressure end to end: bytes received on one side are
 * returned to that peer's window only once the other side's send queue took
 * them without going over its limit.
 *
 * Retries: until response headers reach the client, a connect failure, a reset,
 * a GOAWAY or a trailers-only UNAVAILABLE is retried on another upstream, with
 * the request's messages replayed (kept up to --replay-limit).
 *
 * Holding (hold.c): a call that finds no upstream to take it (none left in the route,
 * every one refusing connections, or a route that left a table moments ago) waits for
 * the next table, within --hold and the route's timeout, while it can be replayed.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"
#include "router.h"
#include "sdd.h"

#define GRPC_OK 0
#define GRPC_DEADLINE_EXCEEDED 4
#define GRPC_UNAVAILABLE 14

typedef struct gp {
    rt_loop *L;
    sd2_stream *down; /* NULL once closed */
    sd2_stream *up;   /* the open attempt, or NULL */
    seldon_router_req *rr;
    char *mem; /* request headers, kept for every attempt (in the same allocation as p) */
    sd2_header *h;
    size_t nh;
    seldon_buf replay;
    size_t down_unconsumed; /* received from the client, waiting for the upstream's queue */
    size_t up_unconsumed;   /* received from the upstream, waiting for the client's queue */
    int32_t grpc_status;
    uint8_t replay_ok, body_done, headers_sent, finished, rid_in_response;
    const char *rid_value;
    size_t rid_len;
    /* Experiments: as rest.c's. */
    size_t nh_base;
    int64_t internal_at;
    sd2_header internal;
    uint8_t mirrored;
    size_t sticky_len;
    rt_held held;       /* parked while no upstream can take it */
    int64_t hold_until; /* set at the first park */
    int64_t deadline;   /* the route's, from the first table that had it (0: none) */
    int32_t fail_status;
    uint8_t resets;
    size_t name_len;
    /* From here on nothing is zeroed when p is made: each array is written before it is
       read (tag and route_hdr start empty). */
    char tag[SELDON_ROUTES_NAME_MAX + 16];
    char route_hdr[1024];
    char sticky[256]; /* the request's x-seldon-route (sticky), for a fresh decision */
    char fail_msg[160];
    char name[SELDON_ROUTES_NAME_MAX + 1];
    char rid[37];
} gp;

static const sd2_stream_cbs down_cbs;
static const sd2_stream_cbs up_cbs;
static const sd2_stream_cbs quiet_cbs;
static void attempt(gp *p);
static void park(gp *p, int32_t grpc_status, const char *message);

static void maybe_free(gp *p)
{
    if (p->down != NULL || p->up != NULL)
        return;
    rt_unhold(&p->held);
    seldon_router_req_free(p->rr);
    seldon_buf_free(&p->replay);
    sdd_free(p); /* and the headers kept in it */
}

/* Records the request's answer once. */
static void done(gp *p, int32_t grpc_status)
{
    if (p->finished)
        return;
    p->finished = 1;
    if (p->rr == NULL) /* a route that never came back */
        seldon_router_metrics_request(p->L->r->rmetrics, "", grpc_status);
    seldon_router_req_finish(p->rr, grpc_status);
}

/* Abandons the open attempt: its callbacks no longer reach p. */
static void drop_up(gp *p)
{
    sd2_stream *up = p->up;
    if (up == NULL)
        return;
    p->up = NULL;
    p->up_unconsumed = 0;
    if (p->down != NULL && p->down_unconsumed > 0) /* kept in the replay buffer */
        sd2_consume(p->down, p->down_unconsumed);
    p->down_unconsumed = 0;
    sd2_stream_bind(up, &quiet_cbs, NULL);
    sd2_reset(up, SD2_H2_CANCEL);
}

/* Ends the client's call with a status of the router's own. */
static void fail(gp *p, int32_t grpc_status, const char *message)
{
    sd2_header rid = {"x-request-id", 12, p->rid_value, p->rid_len};
    drop_up(p);
    done(p, grpc_status);
    if (p->down != NULL)
        sd2_grpc_finish(p->down, grpc_status, message, p->headers_sent ? NULL : &rid,
                        p->headers_sent ? 0 : 1);
}

/* ----------------------------------------------------------------- upstream side */

static void up_headers(sd2_stream *s, void *user_data, const sd2_header *h, size_t n, int end)
{
    gp *p = user_data;
    sd2_header hs[64], *out = hs;
    size_t i, k = 0;
    int32_t retry = 0;

    if (s != p->up || p->down == NULL)
        return;
    if (end) { /* trailers-only: the whole answer is a status */
        p->grpc_status = sdx_grpc_status(h, n);
        seldon_router_attempt_end(&retry, NULL, p->rr, seldon_router_outcome(0, p->grpc_status),
                                  p->replay_ok, rt_now_ns());
        if (retry) {
            drop_up(p);
            attempt(p);
            return;
        }
    }
    if (n + 2 > sizeof(hs) / sizeof(hs[0]) && (out = sdd_malloc((n + 2) * sizeof(*out))) == NULL) {
        fail(p, 13, "router out of memory");
        return;
    }
    for (i = 0; i < n; i++) {
        if (h[i].name_len == 12 && memcmp(h[i].name, "x-request-id", 12) == 0)
            p->rid_in_response = 1;
        if (p->tag[0] != '\0' && h[i].name_len == 14 &&
            memcmp(h[i].name, SELDON_ROUTER_ROUTE_HEADER, 14) == 0 &&
            h[i].value_len + strlen(p->tag) + 4 <= sizeof(p->route_hdr)) {
            memcpy(p->route_hdr, h[i].value, h[i].value_len);
            snprintf(p->route_hdr + h[i].value_len, sizeof(p->route_hdr) - h[i].value_len,
                     " :%s:", p->tag);
            continue;
        }
        out[k++] = h[i];
    }
    if (!p->rid_in_response)
        out[k++] = (sd2_header){"x-request-id", 12, p->rid_value, p->rid_len};
    if (p->tag[0] != '\0') {
        if (p->route_hdr[0] == '\0')
            snprintf(p->route_hdr, sizeof(p->route_hdr), ":%s:", p->tag);
        out[k++] = (sd2_header){SELDON_ROUTER_ROUTE_HEADER, 14, p->route_hdr, strlen(p->route_hdr)};
    }
    if (end) /* counted before it is answered, as in up_end() */
        done(p, p->grpc_status >= 0 ? p->grpc_status : 2);
    sd2_send_headers(p->down, out, k, end);
    if (out != hs)
        sdd_free(out);
    p->headers_sent = 1;
}

static void up_data(sd2_stream *s, void *user_data, const uint8_t *data, size_t len)
{
    gp *p = user_data;
    if (s != p->up)
        return;
    if (p->down == NULL) {
        sd2_consume(s, len);
        return;
    }
    if (sd2_write(p->down, data, len) == 1)
        p->up_unconsumed += len; /* returned to the upstream once the client drains */
    else
        sd2_consume(s, len);
}

static void up_end(sd2_stream *s, void *user_data, const sd2_header *trailers, size_t n)
{
    gp *p = user_data;
    int32_t retry = 0; /* never: the answer is under way (not replayable) */
    if (s != p->up || p->finished)
        return; /* a trailers-only answer went out in up_headers */
    p->grpc_status = sdx_grpc_status(trailers, n);
    /* Counted before it is answered: a client holding its answer finds it in /metrics. */
    seldon_router_attempt_end(&retry, NULL, p->rr, seldon_router_outcome(0, p->grpc_status), 0,
                              rt_now_ns());
    done(p, p->grpc_status >= 0 ? p->grpc_status : 2);
    if (p->down != NULL)
        sd2_end(p->down, trailers, n);
}

static void up_drain(sd2_stream *s, void *user_data)
{
    gp *p = user_data;
    if (s == p->up && p->down != NULL && p->down_unconsumed > 0) {
        sd2_consume(p->down, p->down_unconsumed);
        p->down_unconsumed = 0;
    }
}

static int outcome_of(int err)
{
    switch (err) {
    case SD2_EREFUSED:
    case SD2_ECONNECT:
    case SD2_ECONNTIMEOUT:
        return SELDON_ROUTER_CONNECT_FAILED;
    case SD2_ETIMEOUT:
        return SELDON_ROUTER_TIMEOUT;
    case SD2_ECANCELED:
        return SELDON_ROUTER_CANCELED;
    default:
        return SELDON_ROUTER_RESET;
    }
}

static void up_close(sd2_stream *s, void *user_data, int err, uint32_t h2_code)
{
    gp *p = user_data;
    int32_t retry = 0;
    (void)h2_code;
    if (s != p->up)
        return;
    p->up = NULL;
    p->up_unconsumed = 0;
    if (err == SD2_OK && p->finished) {
        maybe_free(p);
        return;
    }
    if (p->down != NULL && !p->finished) {
        seldon_router_attempt_end(&retry, NULL, p->rr,
                                  err == SD2_OK ? SELDON_ROUTER_RESET : outcome_of(err),
                                  p->replay_ok && !p->headers_sent, rt_now_ns());
        if (retry && !p->headers_sent) {
            attempt(p);
            return;
        }
        if (err == SD2_ETIMEOUT)
            fail(p, GRPC_DEADLINE_EXCEEDED,
                 "the route's timeout passed before the upstream "
                 "answered");
        else if (outcome_of(err) == SELDON_ROUTER_CONNECT_FAILED)
            park(p, GRPC_UNAVAILABLE, "no upstream could be reached");
        else if (!p->headers_sent && p->resets++ == 0)
            park(p, GRPC_UNAVAILABLE, sd2_strerror(err)); /* the upstream died under it */
        else
            fail(p, GRPC_UNAVAILABLE, sd2_strerror(err));
        if (p->held.linked)
            return;
    }
    maybe_free(p);
}

static const sd2_stream_cbs up_cbs = {up_headers, up_data, up_end, up_drain, up_close};

static void quiet_data(sd2_stream *s, void *user_data, const uint8_t *data, size_t len)
{
    (void)user_data;
    (void)data;
    sd2_consume(s, len);
}

static void quiet_headers(sd2_stream *s, void *user_data, const sd2_header *h, size_t n, int end)
{
    (void)s, (void)user_data, (void)h, (void)n, (void)end;
}

static void quiet_end(sd2_stream *s, void *user_data, const sd2_header *h, size_t n)
{
    (void)s, (void)user_data, (void)h, (void)n;
}

static void quiet_drain(sd2_stream *s, void *user_data)
{
    (void)s, (void)user_data;
}

static void quiet_close(sd2_stream *s, void *user_data, int err, uint32_t h2_code)
{
    (void)s, (void)user_data, (void)err, (void)h2_code;
}

/* What an abandoned attempt still says: nothing anybody listens to. */
static const sd2_stream_cbs quiet_cbs = {quiet_headers, quiet_data, quiet_end, quiet_drain,
                                         quiet_close};

/* As rest.c's served_as(): seldon-internal-model to the upstream, x-seldon-route back. */
static void served_as(gp *p)
{
    size_t len = 0;
    p->tag[0] = '\0';
    p->route_hdr[0] = '\0';
    p->nh = p->nh_base;
    if (p->internal_at >= 0)
        p->h[p->internal_at] = p->internal;
    if (seldon_router_req_version(p->rr) == 0 && !seldon_router_req_split(p->rr))
        return;
    if (seldon_router_req_tag(p->tag, &len, sizeof(p->tag), p->rr) != 0) {
        p->tag[0] = '\0';
        return;
    }
    if (!rt_tags_upstream(p->rr))
        return;
    if (p->internal_at >= 0) {
        p->h[p->internal_at] = (sd2_header){SELDON_ROUTER_INTERNAL_HEADER, 21, p->tag, len};
    } else {
        p->h[p->nh_base] = (sd2_header){SELDON_ROUTER_INTERNAL_HEADER, 21, p->tag, len};
        p->nh = p->nh_base + 1;
    }
}

/* A mirror copy: its answer is read and dropped; the caller never waits for it. */
typedef struct mirror_call {
    rt_loop *L;
    seldon_router_req *rr;
    int32_t grpc_status;
    uint8_t ended;
} mirror_call;

static void mirror_headers(sd2_stream *s, void *user_data, const sd2_header *h, size_t n, int end)
{
    mirror_call *m = user_data;
    (void)s;
    if (end) {
        m->grpc_status = sdx_grpc_status(h, n);
        m->ended = 1;
    }
}

static void mirror_end(sd2_stream *s, void *user_data, const sd2_header *h, size_t n)
{
    mirror_call *m = user_data;
    (void)s;
    m->grpc_status = sdx_grpc_status(h, n);
    m->ended = 1;
}

static void mirror_close(sd2_stream *s, void *user_data, int err, uint32_t h2_code)
{
    mirror_call *m = user_data;
    int32_t retry = 0;
    (void)s, (void)h2_code;
    seldon_router_attempt_end(&retry, NULL, m->rr,
                              m->ended        ? seldon_router_outcome(0, m->grpc_status)
                              : err == SD2_OK ? SELDON_ROUTER_RESET
                                              : outcome_of(err),
                              0, rt_now_ns());
    seldon_router_req_finish(m->rr, m->ended && m->grpc_status >= 0 ? m->grpc_status : 14);
    m->L->mirrors--;
    seldon_router_req_free(m->rr);
    sdd_free(m);
}

static const sd2_stream_cbs mirror_cbs = {mirror_headers, quiet_data, mirror_end, quiet_drain,
                                          mirror_close};

/* Sends the mirror copy once the whole call is held (past --replay-limit: none). */
static void mirror(gp *p)
{
    mirror_call *m;
    const seldon_router_upstream *u = NULL;
    sd2_upstream *pool = NULL;
    sd2_stream *up = NULL;
    sd2_header *hs;
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
    m->grpc_status = -1;
    m->L = p->L;
    m->rr = rr;
    if (p->L->mirrors >= RT_MIRRORS_MAX(p->L->r)) {
        sdd_log(SELDON_LOG_DEBUG, "mirror copy to %s skipped: too many copies in flight",
                seldon_router_req_route_name(m->rr));
        goto drop;
    }
    if (!p->replay_ok || seldon_router_pick(&u, m->rr, now) != 0 || u->grpc == NULL ||
        sd2_upstream_get(&pool, p->L->h2c, u->grpc_host, u->grpc_port) != 0)
        goto drop;
    rt_note_h2_upstream(p->L, pool);
    hs = sdd_malloc((p->nh_base + 1) * sizeof(*hs));
    if (hs == NULL)
        goto drop;
    for (i = 0; i < p->nh_base; i++)
        if ((int64_t)i != p->internal_at)
            hs[k++] = p->h[i];
    if (rt_tags_upstream(m->rr) && seldon_router_req_tag(tag, &len, sizeof(tag), m->rr) == 0)
        hs[k++] = (sd2_header){SELDON_ROUTER_INTERNAL_HEADER, 21, tag, len};
    rc = sd2_request(&up, pool, hs, k, p->replay.len == 0, &mirror_cbs, m,
                     rt_timeout_ms(seldon_router_req_deadline(m->rr), now));
    sdd_free(hs);
    if (rc == 0) {
        p->L->mirrors++;
        if (p->replay.len > 0) {
            sd2_write(up, p->replay.data, p->replay.len);
            sd2_end(up, NULL, 0);
        }
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

static void attempt(gp *p)
{
    const seldon_router_upstream *u = NULL;
    sd2_upstream *pool = NULL;
    int64_t now = rt_now_ns();
    uint64_t timeout_ms;
    int32_t retry = 0;
    int rc;

    if (p->rr == NULL) {
        park(p, 5, "no route"); /* NOT_FOUND */
        return;
    }
    for (;;) {
        rc = seldon_router_pick(&u, p->rr, now);
        if (rc != 0) {
            if (rt_route_serves(p->L, p->name, p->name_len, SELDON_ROUTER_GRPC))
                park(p, GRPC_UNAVAILABLE, seldon_last_error());
            else
                fail(p, GRPC_UNAVAILABLE,
                     seldon_last_error()); /* this protocol has no upstream here */
            return;
        }
        timeout_ms = rt_timeout_ms(seldon_router_req_deadline(p->rr), now);
        rc = sd2_upstream_get(&pool, p->L->h2c, u->grpc_host, u->grpc_port);
        if (rc == 0)
            rt_note_h2_upstream(p->L, pool);
        served_as(p);
        if (rc == 0)
            rc = sd2_request(&p->up, pool, p->h, p->nh, p->body_done && p->replay.len == 0, &up_cbs,
                             p, timeout_ms);
        if (rc == 0)
            break;
        p->up = NULL;
        seldon_router_attempt_end(&retry, NULL, p->rr, SELDON_ROUTER_CONNECT_FAILED, 1, now);
        if (!retry) {
            park(p, GRPC_UNAVAILABLE, "no upstream could take the call");
            return;
        }
    }
    if (p->replay.len > 0)
        sd2_write(p->up, p->replay.data, p->replay.len);
    if (p->body_done && p->replay.len > 0)
        sd2_end(p->up, NULL, 0);
    if (p->body_done)
        mirror(p);
}

/* ----------------------------------------------------------------- client side */

static void down_data(sd2_stream *s, void *user_data, const uint8_t *data, size_t len)
{
    gp *p = user_data;
    rt_replay_keep(p->L->r, &p->replay, &p->replay_ok, data, len);
    if (p->up != NULL && sd2_write(p->up, data, len) == 1)
        p->down_unconsumed += len; /* returned to the client once the upstream drains */
    else
        sd2_consume(s, len);
}

static void down_end(sd2_stream *s, void *user_data, const sd2_header *trailers, size_t n)
{
    gp *p = user_data;
    (void)s;
    (void)trailers;
    (void)n;
    p->body_done = 1;
    if (p->up != NULL)
        sd2_end(p->up, NULL, 0);
    if (p->down != NULL)
        mirror(p);
}

static void down_drain(sd2_stream *s, void *user_data)
{
    gp *p = user_data;
    (void)s;
    if (p->up != NULL && p->up_unconsumed > 0) {
        sd2_consume(p->up, p->up_unconsumed);
        p->up_unconsumed = 0;
    }
}

static void down_close(sd2_stream *s, void *user_data, int err, uint32_t h2_code)
{
    gp *p = user_data;
    (void)s;
    (void)h2_code;
    p->down = NULL;
    rt_unhold(&p->held);
    if (err != SD2_OK || !p->finished) {
        drop_up(p);
        done(p, 1); /* CANCELLED: the client went away */
    }
    drop_up(p);
    maybe_free(p);
}

static const sd2_stream_cbs down_cbs = {NULL, down_data, down_end, down_drain, down_close};

/* ----------------------------------------------------------------- holding */

static void wake(rt_held *h, int expired)
{
    gp *p = (gp *)((char *)h - offsetof(gp, held));
    int64_t now = rt_now_ns();
    if (p->down == NULL) {
        maybe_free(p);
        return;
    }
    if (p->deadline > 0 && now >= p->deadline) {
        fail(p, GRPC_DEADLINE_EXCEEDED,
             "the route's timeout passed before an upstream took the call");
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
                                    p->sticky_len, SELDON_ROUTER_GRPC, now) != 0) {
        p->rr = NULL;
        rt_hold(p->L, &p->held); /* still no route: wait on */
        return;
    }
    if (p->deadline == 0)
        p->deadline = seldon_router_req_deadline(p->rr);
    attempt(p);
}

/* No upstream can take the call now: it waits for the next table (or the tick), while
   it can be replayed and within the hold and the route's timeout; else it fails. */
static void park(gp *p, int32_t grpc_status, const char *message)
{
    int64_t now = rt_now_ns();
    drop_up(p);
    if (p->hold_until == 0) {
        p->hold_until = rt_hold_until(p->L, now);
        if (p->hold_until != 0 && p->deadline > 0 && p->deadline < p->hold_until)
            p->hold_until = p->deadline;
    }
    if (p->down == NULL || p->headers_sent || p->finished || !p->replay_ok || p->hold_until == 0 ||
        now >= p->hold_until || p->L->closing) {
        fail(p, grpc_status, message);
        return;
    }
    p->fail_status = grpc_status;
    snprintf(p->fail_msg, sizeof(p->fail_msg), "%s", message);
    p->held.until_ns = p->hold_until;
    p->held.wake = wake;
    rt_hold(p->L, &p->held);
}

/* ----------------------------------------------------------------- a new call */

/* Bytes keep_headers() needs after the gp. */
static size_t keep_headers_size(const sd2_header *h, size_t n)
{
    size_t need = 0, i;
    for (i = 0; i < n; i++)
        need += h[i].name_len + h[i].value_len;
    return (n + 2) * sizeof(sd2_header) + need;
}

/* The fields a call looks at, found in one pass over its header block. */
typedef struct call_fields {
    const sd2_header *model, *path, *sticky, *rid;
} call_fields;

static void find_fields(call_fields *f, const sd2_header *h, size_t n)
{
    size_t i;
    memset(f, 0, sizeof(*f));
    for (i = 0; i < n; i++) {
        const sd2_header *x = &h[i];
        switch (x->name_len) {
        case 5:
            if (f->path == NULL && memcmp(x->name, ":path", 5) == 0)
                f->path = x;
            break;
        case 12:
            if (f->model == NULL && memcmp(x->name, "seldon-model", 12) == 0)
                f->model = x;
            else if (f->rid == NULL && memcmp(x->name, "x-request-id", 12) == 0)
                f->rid = x;
            break;
        case 14:
            if (f->sticky == NULL && memcmp(x->name, SELDON_ROUTER_ROUTE_HEADER, 14) == 0)
                f->sticky = x;
            break;
        default:
            break;
        }
    }
}

/* Copies the request's header block into p->mem, adding x-request-id when absent (rid is
 * the block's own, or NULL). */
static void keep_headers(gp *p, const sd2_header *h, size_t n, const sd2_header *rid)
{
    size_t i, k = 0;
    char *m;
    p->internal_at = -1;
    p->h = (sd2_header *)p->mem;
    m = p->mem + (n + 2) * sizeof(sd2_header);
    for (i = 0; i < n; i++) {
        p->h[k].name = m;
        p->h[k].name_len = h[i].name_len;
        memcpy(m, h[i].name, h[i].name_len);
        m += h[i].name_len;
        p->h[k].value = m;
        p->h[k].value_len = h[i].value_len;
        memcpy(m, h[i].value, h[i].value_len);
        m += h[i].value_len;
        if (&h[i] == rid) {
            p->rid_value = p->h[k].value;
            p->rid_len = p->h[k].value_len;
        }
        if (p->internal_at < 0 && h[i].name_len == 21 &&
            memcmp(h[i].name, SELDON_ROUTER_INTERNAL_HEADER, 21) == 0) {
            p->internal_at = (int64_t)k;
            p->internal = p->h[k];
        }
        k++;
    }
    if (rid == NULL) {
        rt_request_id(p->L, p->rid);
        p->rid_value = p->rid;
        p->rid_len = strlen(p->rid);
        p->h[k++] = (sd2_header){"x-request-id", 12, p->rid, p->rid_len};
    }
    p->nh = k;
    p->nh_base = k;
}

void rt_grpc_request(void *user_data, sd2_stream *s, const sd2_header *h, size_t n, int end)
{
    rt_loop *L = user_data;
    call_fields f;
    const sd2_header *model, *path;
    char name[SELDON_ROUTES_NAME_MAX + 1];
    size_t len = 0;
    int32_t grpc_status = 13;
    gp *p;
    int rc;

    find_fields(&f, h, n);
    model = f.model;
    path = f.path;
    rc = seldon_router_route_name(name, &len, sizeof(name), SELDON_ROUTER_GRPC,
                                  model ? model->value : NULL, model ? model->value_len : 0,
                                  path ? path->value : NULL, path ? path->value_len : 0);
    if (rc != 0) {
        seldon_router_status(NULL, &grpc_status, rc);
        sd2_grpc_finish(s, grpc_status, seldon_last_error(), NULL, 0);
        seldon_router_metrics_request(L->r->rmetrics, "", grpc_status);
        return;
    }
    /* The call's state and its kept headers in one allocation; only the state's
       scalars are zeroed (see gp). */
    p = sdd_malloc(sizeof(*p) + keep_headers_size(h, n));
    if (p == NULL) {
        sd2_grpc_finish(s, 13, "router out of memory", NULL, 0);
        return;
    }
    memset(p, 0, offsetof(gp, tag));
    p->tag[0] = '\0';
    p->route_hdr[0] = '\0';
    p->mem = (char *)(p + 1);
    p->L = L;
    p->grpc_status = -1;
    if (f.sticky != NULL && f.sticky->value_len < sizeof(p->sticky)) { /* kept for a hold */
        memcpy(p->sticky, f.sticky->value, f.sticky->value_len);
        p->sticky_len = f.sticky->value_len;
    }
    rc = seldon_router_req_new_split(&p->rr, L->lb, name, len, p->sticky, p->sticky_len,
                                     SELDON_ROUTER_GRPC, rt_now_ns());
    if (rc != 0)
        p->rr = NULL;
    /* An unknown route is NOT_FOUND at once, unless the model was routed moments ago
       (it is moving): then the call is held. */
    if (rc != 0 && !(rc == SELDON_ENOTFOUND && rt_route_gone(L, name, len))) {
        seldon_router_status(NULL, &grpc_status, rc);
        sd2_grpc_finish(s, grpc_status, seldon_last_error(), NULL, 0);
        seldon_router_metrics_request(L->r->rmetrics, "", grpc_status);
        sdd_free(p);
        return;
    }
    keep_headers(p, h, n, f.rid);
    memcpy(p->name, name, len);
    p->name_len = len;
    p->deadline = p->rr != NULL ? seldon_router_req_deadline(p->rr) : 0;
    p->replay_ok = 1;
    p->body_done = end != 0;
    p->down = s;
    sd2_stream_bind(s, &down_cbs, p);
    if (p->rr == NULL) {
        char msg[SELDON_ROUTES_NAME_MAX + 32];
        snprintf(msg, sizeof(msg), "no route for model \"%s\"", name);
        park(p, 5, msg);
    } else
        attempt(p);
}
