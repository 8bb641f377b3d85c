/*
 * The ingress: REST (HTTP/1.1) and gRPC (h2c, adopted from the same port) in,
 * a replica's seldon_service out, by function call. A request's route is its
 * seldon-model header (REST: else the model of its path; gRPC: else the
 * request message's model name); the lookup table gives the replicas serving
 * that route and the newest version each holds; the request goes to the least
 * busy of them with the model name replaced by the versioned one.
 *
 * REST: the path's model segment is rewritten. gRPC: a model name field
 * (field 1 of ModelInferRequest, ModelReadyRequest and ModelMetadataRequest)
 * is appended to the message: protobuf keeps the last value of a field, so
 * the message itself is not copied.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h" /* daemons/agent: a protobuf message's model name */
#include "plserve.h"
#include "sdd.h"
#include "up.h"

#define GRPC_HDR SDP_GRPC_PREFIX

/* ------------------------------------------------------------------ lookup */

/* The requests counter of a code: looked up once per code, then kept (no lock per request). */
static _Atomic(seldon_series *) rest_series[600];
static _Atomic(seldon_series *) grpc_series[17];

static void count(up *u, const char *protocol, int code)
{
    int grpc = protocol[0] == 'g';
    _Atomic(seldon_series *) *slot = grpc ? (code >= 0 && code < 17 ? &grpc_series[code] : NULL)
                                          : (code >= 100 && code < 600 ? &rest_series[code] : NULL);
    seldon_series *s = slot != NULL ? atomic_load_explicit(slot, memory_order_acquire) : NULL;
    if (s == NULL) {
        char num[16];
        const char *labels[2];
        snprintf(num, sizeof(num), "%d", code);
        labels[0] = protocol;
        labels[1] = num;
        if (u->m_requests == NULL || seldon_metric_series(&s, u->m_requests, labels) != 0)
            return;
        if (slot != NULL)
            atomic_store_explicit(slot, s, memory_order_release);
    }
    seldon_series_add(s, 1);
}

/* 64 random bits for experiment decisions: a generator per thread (xorshift64*). */
static uint64_t rand64(void)
{
    static _Thread_local uint64_t x;
    if (x == 0)
        x = ((uint64_t)(uintptr_t)&x ^ (uint64_t)up_mono_ns()) | 1;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    return x * 0x2545F4914F6CDD1DULL;
}

/*
 * The least busy replica holding a version of route i of t (named name in errors): the
 * newest each replica holds; with pin (a sticky version, 0: none), a replica serving that
 * version, else (none left) as without it, as seldon-router's seldon_router_req_pinned().
 */
static int pick_at(up_target *out, up *u, up_table *t, size_t i, const char *name, size_t len,
                   uint32_t pin)
{
    size_t k, n, start, best = SIZE_MAX;
    long least = 0;
    int best_evicted = 1, pass;
    n = t->first[i + 1] - t->first[i];
    /* The least busy replica; among equals, a rotating start spreads the requests. */
    start = n > 1 ? atomic_fetch_add_explicit(&u->rotate, 1, memory_order_relaxed) % n : 0;
    /* A replica that has the version loaded goes before one that must load it again. */
    for (pass = pin != 0 ? 0 : 1; pass < 2 && best == SIZE_MAX; pass++) {
        for (k = 0; k < n; k++) {
            size_t j = t->first[i] + (start + k) % n;
            long busy;
            int evicted = t->targets[j].evicted;
            if (pass == 0 ? t->targets[j].version != pin : t->targets[j].older)
                continue;
            busy = atomic_load_explicit(&t->targets[j].r->in_flight, memory_order_relaxed);
            if (best == SIZE_MAX || evicted < best_evicted ||
                (evicted == best_evicted && busy < least)) {
                best = j;
                least = busy;
                best_evicted = evicted;
            }
        }
    }
    if (best == SIZE_MAX)
        return sdd_error(SELDON_EUNAVAIL, "model \"%.*s\" is not loaded on any replica yet",
                         (int)(len > 200 ? 200 : len), name);
    /* Recency, for the replica's eviction planning. */
    atomic_store_explicit(&t->targets[best].used,
                          atomic_fetch_add_explicit(&u->tick, 1, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    out->r = t->targets[best].r;
    out->evicted = t->targets[best].evicted;
    out->vname = t->targets[best].vname;
    out->vname_len = t->targets[best].vname_len;
    out->vl = t->targets[best].vl;
    return 0;
}

/*
 * The target for route name in the table in force: the route itself, or the
 * candidate its experiment chooses (sticky: the request's x-seldon-route value,
 * NULL when absent). mirror (may be NULL) receives the target of the mirror copy
 * when the request is to be copied, else its r is NULL. 0; SELDON_ENOTFOUND (no
 * such route) or SELDON_EUNAVAIL (no replica has it loaded), with the message set.
 */
static int pick_split(up_target *out, up_target *mirror, up *u, const char *name, size_t len,
                      const char *sticky, size_t sticky_len)
{
    up_table *t = atomic_load_explicit(&u->table, memory_order_acquire);
    size_t i, chosen;
    int64_t mi = -1;
    uint32_t pin = 0;
    int pipeline = len > 9 && memcmp(name + len - 9, ".pipeline", 9) == 0;
    if (mirror != NULL)
        mirror->r = NULL;
    if (t == NULL || seldon_routes_find(&i, t->routes, name, len) != 0) {
        if (pipeline)
            return sdd_error(SELDON_ENOTFOUND, "pipeline \"%.*s\" not found",
                             (int)(len - 9 > 200 ? 200 : len - 9), name);
        return sdd_error(SELDON_ENOTFOUND, "model \"%.*s\" not found", (int)(len > 200 ? 200 : len),
                         name);
    }
    chosen = i;
    /* The split, and the version a ":<model>_<version>:" token pins (seldon-router's
       decision: a route without candidates is decided only for its sticky version). */
    if (t->split[i] || (sticky != NULL && sticky_len > 0)) {
        if (seldon_routes_decide_version(&chosen, &pin, &mi, NULL, t->routes, i, sticky,
                                         sticky ? sticky_len : 0, rand64()) != 0) {
            chosen = i;
            pin = 0;
            mi = -1;
        }
        name = seldon_routes_name(t->routes, chosen);
        len = strlen(name);
    }
    if (mirror != NULL && mi >= 0) {
        const char *mn = seldon_routes_name(t->routes, (size_t)mi);
        if (pick_at(mirror, u, t, (size_t)mi, mn, strlen(mn), 0) != 0 || mirror->evicted)
            mirror->r = NULL; /* a copy never waits for a reload */
    }
    return pick_at(out, u, t, chosen, name, len, pin);
}

static int pick(up_target *out, up *u, const char *name, size_t len)
{
    return pick_split(out, NULL, u, name, len, NULL, 0);
}

int up_pick(up_target *out, up *u, const char *name, size_t len)
{
    return pick(out, u, name, len);
}

void up_count(up *u, const char *protocol, int code)
{
    count(u, protocol, code);
}

int up_route_available(up *u, const char *name, size_t len)
{
    up_table *t = atomic_load_explicit(&u->table, memory_order_acquire);
    size_t i;
    if (t == NULL || seldon_routes_find(&i, t->routes, name, len) != 0)
        return 0;
    return t->first[i + 1] > t->first[i];
}

/* Hands a request for an evicted version to the control loop, which loads it again. */
static int park(up_target *t, void *call, int grpc);

int up_park_step(up_target *t, void *call)
{
    return park(t, call, UP_PARK_STEP);
}

static int park(up_target *t, void *call, int grpc)
{
    up_park *p = sdd_calloc(1, sizeof(*p) + t->vname_len + 1);
    if (p == NULL)
        return SELDON_ENOMEM;
    p->r = t->r;
    p->call = call;
    p->grpc = grpc;
    memcpy(p->vname, t->vname, t->vname_len);
    if (sdl_loops_post(t->r->u->ctl_loops, 0, up_park_arrive, p) != 0) {
        sdd_free(p);
        return sdd_error(SELDON_EUNAVAIL, "seldon up is stopping");
    }
    return 0;
}

/* ------------------------------------------------------------------ REST */

/* The request's headers are handed over as they are: the two layouts must agree. */
_Static_assert(sizeof(sdh_header) == sizeof(seldon_http_header), "header layouts differ");

typedef struct rest_call {
    sdh_req *req;
    up_replica *r;
    up_vload *vl;          /* the version's load counters (load.c), or NULL */
    seldon_rest_request q; /* views into the request, valid until it is answered */
    size_t vname_len;
    char route[SELDON_ROUTES_NAME_MAX + 16]; /* "x-seldon-route": ":<name>_<version>:" */
    char path[];
} rest_call;

static void rest_done(void *user_data, seldon_rest_response *resp)
{
    rest_call *c = user_data;
    sdh_header h[6];
    size_t i, n = resp->nheaders < 5 ? resp->nheaders : 5;
    for (i = 0; i < n; i++) {
        h[i].name = resp->headers[i].name;
        h[i].name_len = resp->headers[i].name_len;
        h[i].value = resp->headers[i].value;
        h[i].value_len = resp->headers[i].value_len;
    }
    if (c->vname_len > 0) { /* the model version that answered, as Seldon Core 2 says it */
        h[n].name = "x-seldon-route";
        h[n].name_len = 14;
        h[n].value = c->route;
        h[n].value_len = c->vname_len + 2;
        n++;
    }
    count(c->r->u, "rest", resp->status);
    atomic_fetch_sub_explicit(&c->r->in_flight, 1, memory_order_relaxed);
    up_vl_end(c->vl);
    sdh_respond(c->req, resp->status, h, n, &resp->body);
    sdd_free(c);
}

/* Mirror copies in flight in the process, at most: past it a request gets no copy, so a
   slow mirror cannot pile work up behind the callers'. */
#define UP_MIRRORS_MAX 64
static atomic_int mirrors_in_flight;

static int mirror_take(void)
{
    if (atomic_fetch_add_explicit(&mirrors_in_flight, 1, memory_order_relaxed) < UP_MIRRORS_MAX)
        return 1;
    atomic_fetch_sub_explicit(&mirrors_in_flight, 1, memory_order_relaxed);
    sdd_log(SELDON_LOG_DEBUG, "mirror copy skipped: %d copies in flight", UP_MIRRORS_MAX);
    return 0;
}

static void mirror_give(void)
{
    atomic_fetch_sub_explicit(&mirrors_in_flight, 1, memory_order_relaxed);
}

/* A mirror copy of a REST request: its own copy of everything, its answer dropped. */
typedef struct rest_mirror_call {
    up_replica *r;
    up_vload *vl;
    seldon_rest_request q;
} rest_mirror_call;

static void rest_mirror_done(void *user_data, seldon_rest_response *resp)
{
    rest_mirror_call *m = user_data;
    (void)resp;
    atomic_fetch_sub_explicit(&m->r->in_flight, 1, memory_order_relaxed);
    up_vl_end(m->vl);
    mirror_give();
    sdd_free(m);
}

/* Sends the copy to the mirror's target mt; the path's model segment [seg, seg_end) is its. */
static void rest_mirror(const up_target *mt, const sdh_request *r, size_t seg, size_t seg_end)
{
    size_t i, need = sizeof(rest_mirror_call), plen;
    rest_mirror_call *m;
    seldon_http_header *hs;
    char *p;
    plen = seg ? r->path_len - (seg_end - seg) + mt->vname_len : r->path_len;
    need += r->nheaders * sizeof(*hs) + plen + r->method_len + r->query_len + r->body_len + 8;
    for (i = 0; i < r->nheaders; i++)
        need += r->headers[i].name_len + r->headers[i].value_len;
    if (!mirror_take())
        return;
    m = sdd_malloc(need);
    if (m == NULL) {
        mirror_give();
        return;
    }
    m->r = mt->r;
    m->vl = mt->vl;
    hs = (seldon_http_header *)(m + 1);
    p = (char *)(hs + r->nheaders);
    memset(&m->q, 0, sizeof(m->q));
    m->q.method = p;
    m->q.method_len = r->method_len;
    memcpy(p, r->method, r->method_len);
    p += r->method_len;
    m->q.path = p;
    m->q.path_len = plen;
    if (seg) {
        memcpy(p, r->path, seg);
        memcpy(p + seg, mt->vname, mt->vname_len);
        memcpy(p + seg + mt->vname_len, r->path + seg_end, r->path_len - seg_end);
    } else {
        memcpy(p, r->path, r->path_len);
    }
    p += plen;
    m->q.query = p;
    m->q.query_len = r->query_len;
    if (r->query_len > 0)
        memcpy(p, r->query, r->query_len);
    p += r->query_len;
    for (i = 0; i < r->nheaders; i++) {
        hs[i].name = p;
        hs[i].name_len = r->headers[i].name_len;
        memcpy(p, r->headers[i].name, r->headers[i].name_len);
        p += r->headers[i].name_len;
        hs[i].value = p;
        hs[i].value_len = r->headers[i].value_len;
        if (r->headers[i].value_len > 0)
            memcpy(p, r->headers[i].value, r->headers[i].value_len);
        p += r->headers[i].value_len;
    }
    m->q.headers = hs;
    m->q.nheaders = r->nheaders;
    m->q.body = (const uint8_t *)p;
    m->q.body_len = r->body_len;
    if (r->body_len > 0)
        memcpy(p, r->body, r->body_len);
    atomic_fetch_add_explicit(&m->r->in_flight, 1, memory_order_relaxed);
    up_vl_begin(m->vl);
    if (seldon_service_rest(m->r->s.svc, &m->q, rest_mirror_done, m) != 0) {
        atomic_fetch_sub_explicit(&m->r->in_flight, 1, memory_order_relaxed);
        up_vl_end(m->vl);
        mirror_give();
        sdd_free(m);
    }
}

static int is_path(const sdh_request *r, const char *p)
{
    size_t n = strlen(p);
    return r->path_len == n && memcmp(r->path, p, n) == 0;
}

void up_rest_handler(void *user_data, sdh_req *req, const sdh_request *r)
{
    up *u = user_data;
    char name[SELDON_ROUTES_NAME_MAX + 16];
    size_t name_len = 0, hlen = 0, seg = 0, seg_end = 0, plen;
    const char *header = sdh_request_header(r, SELDON_ROUTER_HEADER, &hlen);
    seldon_rest_request q;
    up_target t, mt;
    rest_call *c;
    int32_t status = 500;
    int rc;

    t.evicted = 0;
    t.vl = NULL;
    mt.r = NULL;
    if (header == NULL && (is_path(r, "/v2/health/live") || is_path(r, "/v2/health/ready"))) {
        int ready = is_path(r, "/v2/health/live") || atomic_load(&u->sched_ready);
        count(u, "rest", ready ? 200 : 503);
        sdh_respond(req, ready ? 200 : 503, NULL, 0, NULL);
        return;
    }
    if (header == NULL && (is_path(r, "/v2") || is_path(r, "/v2/"))) {
        /* Server metadata: any replica answers for the server. */
        t.r = &u->replicas[0];
        t.vname = "";
        t.vname_len = 0;
        goto call;
    }
    rc = seldon_router_route_name(name, &name_len, sizeof(name), SELDON_ROUTER_HTTP, header, hlen,
                                  r->path, r->path_len);
    if (rc != 0) {
        seldon_router_status(&status, NULL, rc);
        count(u, "rest", status);
        sdh_respond_error(req, status, seldon_last_error());
        return;
    }
    {
        up_exp_choice ec;
        if (up_exp_rest(u, &ec, name, name_len, r)) {
            sdp_route route;
            up_exp_route(&route, &ec);
            up_pl_rest(u, req, r, ec.pipeline, ec.pipeline_len, &route);
            return;
        }
    }
    /* The model segment of /v2/models/<m>/..., replaced by the versioned name. */
    if (r->path_len > 11 && memcmp(r->path, "/v2/models/", 11) == 0) {
        seg = seg_end = 11;
        while (seg_end < r->path_len && r->path[seg_end] != '/')
            seg_end++;
    }
    {
        size_t sl = 0;
        const char *sticky = sdh_request_header(r, SELDON_ROUTER_ROUTE_HEADER, &sl);
        rc = pick_split(&t, &mt, u, name, name_len, sticky, sl);
    }
    if (rc != 0) {
        seldon_router_status(&status, NULL, rc);
        count(u, "rest", status);
        sdh_respond_error(req, status, seldon_last_error());
        return;
    }
    if (mt.r != NULL)
        rest_mirror(&mt, r, seg, seg_end);
call:
    plen = seg ? r->path_len - (seg_end - seg) + t.vname_len : r->path_len;
    c = sdd_malloc(sizeof(*c) + plen + 1);
    if (c == NULL) {
        count(u, "rest", 500);
        sdh_respond_error(req, 500, "out of memory");
        return;
    }
    c->req = req;
    c->r = t.r;
    c->vl = t.vl;
    c->vname_len = t.vname_len;
    c->route[0] = ':';
    memcpy(c->route + 1, t.vname, t.vname_len);
    c->route[t.vname_len + 1] = ':';
    c->route[t.vname_len + 2] = '\0';
    if (seg) {
        memcpy(c->path, r->path, seg);
        memcpy(c->path + seg, t.vname, t.vname_len);
        memcpy(c->path + seg + t.vname_len, r->path + seg_end, r->path_len - seg_end);
    } else {
        memcpy(c->path, r->path, r->path_len);
    }
    c->path[plen] = '\0';
    q.method = r->method;
    q.method_len = r->method_len;
    q.path = c->path;
    q.path_len = plen;
    q.query = r->query;
    q.query_len = r->query_len;
    q.headers = (const seldon_http_header *)(const void *)r->headers;
    q.nheaders = r->nheaders;
    q.body = r->body;
    q.body_len = r->body_len;
    atomic_fetch_add_explicit(&t.r->in_flight, 1, memory_order_relaxed);
    up_vl_begin(t.vl);
    if (t.evicted) { /* answered once the version is loaded again */
        c->q = q;
        rc = park(&t, c, 0);
        if (rc == 0)
            return;
        atomic_fetch_sub_explicit(&t.r->in_flight, 1, memory_order_relaxed);
        up_vl_end(t.vl);
        sdd_free(c);
        seldon_router_status(&status, NULL, rc);
        count(u, "rest", status);
        sdh_respond_error(req, status, seldon_last_error());
        return;
    }
    /* The model is acquired inside this call, within this loop callback: see publish(). */
    rc = seldon_service_rest(t.r->s.svc, &q, rest_done, c);
    if (rc != 0) {
        atomic_fetch_sub_explicit(&t.r->in_flight, 1, memory_order_relaxed);
        up_vl_end(t.vl);
        sdd_free(c);
        count(u, "rest", 500);
        sdh_respond_error(req, 500, seldon_last_error());
    }
}

/* ------------------------------------------------------------------ gRPC */

enum { G_SERVER, G_MODEL, G_REPO };

typedef struct gcall gcall;

struct gcall {
    up *u;
    int loop;         /* the ingress loop of the stream */
    sd2_stream *s;    /* NULL once closed */
    const char *path; /* static storage (seldon_service_grpc_method()) */
    size_t path_len;
    int kind;
    int streaming;
    int refs;     /* the stream's own, and one per message in the service (loop thread) */
    int ended;    /* the client finished sending */
    int finished; /* trailers sent */
    int headers;  /* response headers sent */
    char *header; /* the seldon-model metadata, or NULL */
    size_t header_len;
    int64_t timeout_ms; /* grpc-timeout, or 0 */
    char rid[80];       /* x-request-id metadata, or "" */
    char sticky[256];   /* x-seldon-route metadata (pins an experiment's candidate), or "" */
    char route[SELDON_ROUTES_NAME_MAX + 16]; /* x-seldon-route sent back: ":<vname>:" */
    /* Other x-* metadata (a pipeline named by the message passes it to its steps), and the
       x-* metadata to answer with; name and value pairs in one block each, or NULL. */
    sd2_header *xmd, *reply_md;
    size_t nxmd, nreply_md;
    sdp_grpc_in in;    /* request bytes until their messages are whole */
    size_t unconsumed; /* streams: received bytes not yet returned to the client's window */
};

/* A stream's messages in the service, and its unsent answers, past which it stops reading. */
#define STREAM_PENDING_MAX 32
#define STREAM_QUEUE_MAX ((size_t)256 << 10) /* the h2c stream queue limit: on_drain follows */

/* Streams: returns received bytes to the client's window while the answers keep up. */
static void maybe_consume(gcall *c)
{
    if (c->s == NULL || c->unconsumed == 0 || c->refs - 1 >= STREAM_PENDING_MAX ||
        sd2_queued(c->s) >= STREAM_QUEUE_MAX)
        return;
    sd2_consume(c->s, c->unconsumed);
    c->unconsumed = 0;
}

/* One message in the service. */
typedef struct gmsg {
    gcall *c;
    up_replica *r;
    up_vload *vl;      /* the version's load counters (load.c), or NULL */
    seldon_buf parked; /* a parked call's message, versioned name included */
    int32_t status;
    char *message;
    seldon_buf resp;
} gmsg;

static void gcall_unref(gcall *c)
{
    if (--c->refs > 0)
        return;
    sdd_free(c->xmd);
    sdd_free(c->reply_md);
    sdd_free(c->header);
    seldon_buf_free(&c->in.in);
    sdd_free(c);
}

static void gfinish(gcall *c, int32_t status, const char *message)
{
    if (c->s == NULL || c->finished)
        return;
    c->finished = 1;
    count(c->u, "grpc", status);
    sd2_grpc_finish(c->s, status, message, NULL, 0);
}

/* Loop thread: a message's answer goes out. */
static void deliver(gmsg *m)
{
    gcall *c = m->c;
    uint8_t pre[GRPC_HDR];
    if (c->s != NULL && !c->finished) {
        if (m->status != 0) {
            gfinish(c, m->status, m->message ? m->message : "");
        } else {
            if (!c->headers) {
                sd2_header xr[2];
                size_t nx = 0;
                c->headers = 1;
                if (c->rid[0] != '\0')
                    xr[nx++] = (sd2_header){"x-request-id", 12, c->rid, strlen(c->rid)};
                if (c->route[0] != '\0') /* the model version that answered, as for REST */
                    xr[nx++] =
                        (sd2_header){SELDON_ROUTER_ROUTE_HEADER, 14, c->route, strlen(c->route)};
                if (c->reply_md != NULL) /* a pipeline's: x-request-id among them */
                    sd2_grpc_send_headers(c->s, c->reply_md, c->nreply_md);
                else
                    sd2_grpc_send_headers(c->s, xr, nx);
            }
            sdp_grpc_prefix(pre, m->resp.len);
            sd2_write(c->s, pre, GRPC_HDR);
            sd2_write(c->s, m->resp.data, m->resp.len);
            if (!c->streaming)
                gfinish(c, 0, NULL);
        }
    }
    /* A stream ends once the client finished and every message was answered. */
    if (c->streaming && c->ended && c->refs == 2)
        gfinish(c, 0, NULL);
    c->refs--; /* this message's; the last reference is dropped below */
    if (c->streaming)
        maybe_consume(c);
    c->refs++;
    seldon_buf_free(&m->resp);
    seldon_buf_free(&m->parked);
    sdd_free(m->message);
    sdd_free(m);
    gcall_unref(c);
}

static void deliver_posted(void *arg)
{
    deliver(arg);
}

static void gdone(void *user_data, int32_t status, const char *message, seldon_buf *response)
{
    gmsg *m = user_data;
    up *u = m->c->u;
    if (m->r != NULL)
        atomic_fetch_sub_explicit(&m->r->in_flight, 1, memory_order_relaxed);
    up_vl_end(m->vl);
    m->vl = NULL;
    m->status = status;
    if (status != 0 && message != NULL)
        m->message = sdd_strndup(message, strlen(message));
    if (response != NULL) {
        m->resp = *response; /* taken */
        response->data = NULL;
        response->len = response->cap = 0;
    }
    if (sdl_loops_current(u->loops) == m->c->loop) {
        deliver(m);
        return;
    }
    /* Completed on a worker: the stream belongs to its loop. */
    if (sdl_loops_post(u->loops, m->c->loop, deliver_posted, m) != 0) {
        /* The loops are stopping: the stream goes with them. */
        seldon_buf_free(&m->resp);
        seldon_buf_free(&m->parked);
        sdd_free(m->message);
        sdd_free(m);
    }
}

void up_grpc_answer(void *msg, int32_t status, const char *message, seldon_buf *response)
{
    gdone(msg, status, message, response);
}

void up_grpc_request_id(void *msg, const char *rid)
{
    gcall *c = ((gmsg *)msg)->c;
    if (c->rid[0] == '\0')
        snprintf(c->rid, sizeof(c->rid), "%s", rid);
}

/* A copy of h[0..n) in one block: the header array, then the names and values. */
static sd2_header *md_copy(const sd2_header *h, size_t n)
{
    size_t i, bytes = n * sizeof(sd2_header);
    sd2_header *out;
    char *p;
    for (i = 0; i < n; i++)
        bytes += h[i].name_len + h[i].value_len;
    out = sdd_malloc(bytes ? bytes : 1);
    if (out == NULL)
        return NULL;
    p = (char *)(out + n);
    for (i = 0; i < n; i++) {
        memcpy(p, h[i].name, h[i].name_len);
        out[i].name = p;
        out[i].name_len = h[i].name_len;
        p += h[i].name_len;
        memcpy(p, h[i].value, h[i].value_len);
        out[i].value = p;
        out[i].value_len = h[i].value_len;
        p += h[i].value_len;
    }
    return out;
}

void up_grpc_reply_metadata(void *msg, const sd2_header *h, size_t n)
{
    gcall *c = ((gmsg *)msg)->c;
    if (c->reply_md != NULL || n == 0)
        return;
    c->reply_md = md_copy(h, n);
    c->nreply_md = c->reply_md != NULL ? n : 0;
}

/* Appends field 1 = name to the message that ends b. */
static int pb_append_field1(seldon_buf *b, const char *name, size_t len)
{
    size_t n = len;
    if (seldon_buf_reserve(b, len + 11) != 0)
        return SELDON_ENOMEM;
    b->data[b->len++] = 0x0a; /* field 1, length-delimited */
    do {
        b->data[b->len++] = (uint8_t)((n & 0x7f) | (n > 0x7f ? 0x80 : 0));
        n >>= 7;
    } while (n);
    memcpy(b->data + b->len, name, len);
    b->len += len;
    return 0;
}

/* A mirror copy's answer: dropped. */
static void grpc_mirror_done(void *user_data, int32_t status, const char *message,
                             seldon_buf *response)
{
    up_vload *vl = user_data;
    (void)status, (void)message, (void)response; /* the service frees what is left */
    atomic_fetch_sub_explicit(&vl->r->in_flight, 1, memory_order_relaxed);
    up_vl_end(vl);
    mirror_give();
}

/* Sends a copy of the message (before the caller's versioned name goes in) to mt. */
static void grpc_mirror(gcall *c, const up_target *mt, const uint8_t *msg, size_t len)
{
    seldon_buf b = SELDON_BUF_INIT;
    if (mt->vl == NULL || !mirror_take())
        return;
    if (seldon_buf_reserve(&b, len + mt->vname_len + 16) != 0) {
        mirror_give();
        return;
    }
    memcpy(b.data, msg, len);
    b.len = len;
    pb_append_field1(&b, mt->vname, mt->vname_len);
    atomic_fetch_add_explicit(&mt->r->in_flight, 1, memory_order_relaxed);
    up_vl_begin(mt->vl);
    if (seldon_service_grpc(mt->r->s.svc, c->path, c->path_len, b.data, b.len, grpc_mirror_done,
                            mt->vl) != 0) {
        atomic_fetch_sub_explicit(&mt->r->in_flight, 1, memory_order_relaxed);
        up_vl_end(mt->vl);
        mirror_give();
    }
    seldon_buf_free(&b); /* the service copied what it keeps */
}

/*
 * One whole request message, b->data[off .. off + len). A unary call's message ends its
 * buffer: the versioned name is appended there, in place; a stream's goes to a copy.
 */
static void dispatch(gcall *c, seldon_buf *b, size_t off, size_t len)
{
    up *u = c->u;
    gmsg *m = sdd_calloc(1, sizeof(*m));
    seldon_buf copy = SELDON_BUF_INIT, *msg = b;
    char name[SELDON_ROUTES_NAME_MAX + 16];
    size_t name_len = 0, foff = 0, flen = 0, end = b->len;
    int32_t grpc = 13;
    up_target t, mt;
    up_exp_choice ec;
    int rc;

    mt.r = NULL;
    if (m == NULL) {
        gfinish(c, 8, "out of memory");
        return;
    }
    m->c = c;
    c->refs++;
    if (c->kind == G_SERVER) { /* live, ready, metadata: any replica answers for the server */
        m->r = &u->replicas[0];
        atomic_fetch_add_explicit(&m->r->in_flight, 1, memory_order_relaxed);
        if (seldon_service_grpc(m->r->s.svc, c->path, c->path_len, b->data + off, len, gdone, m) !=
            0)
            gdone(m, 13, seldon_last_error(), NULL);
        return;
    }
    if (c->header != NULL) {
        rc = seldon_router_route_name(name, &name_len, sizeof(name), SELDON_ROUTER_GRPC, c->header,
                                      c->header_len, NULL, 0);
    } else if (ag_pb_field1(b->data + off, len, &foff, &flen) != 0 || flen == 0) {
        rc = sdd_error(SELDON_EINVAL, "the request names no model: set the seldon-model "
                                      "metadata or the model name");
    } else {
        rc = seldon_router_route_name(name, &name_len, sizeof(name), SELDON_ROUTER_GRPC,
                                      (const char *)b->data + off + foff, flen, NULL, 0);
    }
    if (rc != 0) {
        seldon_router_status(NULL, &grpc, rc);
        gdone(m, grpc, seldon_last_error(), NULL);
        return;
    }
    if (c->header == NULL && up_exp_pipeline(u, &ec, name, name_len,
                                             c->sticky[0] ? c->sticky : NULL, strlen(c->sticky))) {
        /* The message names a pipeline, or an experiment over pipelines (its choice). */
        sdp_route route;
        if (strcmp(c->path, "/inference.GRPCInferenceService/ModelInfer") != 0) {
            gdone(m, 12, "pipelines answer ModelInfer", NULL);
            return;
        }
        up_exp_route(&route, &ec);
        rc = up_pl_grpc(u, m, ec.pipeline, ec.pipeline_len, b->data + off, len, c->timeout_ms,
                        c->rid, strlen(c->rid), c->xmd, c->nxmd, &route);
        if (rc != 0) {
            seldon_router_status(NULL, &grpc, rc);
            if (rc == SELDON_EPARSE || rc == SELDON_ESHAPE || rc == SELDON_EDATATYPE ||
                rc == SELDON_ERANGE)
                grpc = 3;
            gdone(m, grpc, seldon_last_error(), NULL);
        }
        return;
    }
    if (c->streaming || off + len != b->len) {
        if (seldon_buf_reserve(&copy, len + name_len + 40) != 0) {
            gdone(m, 8, "out of memory", NULL);
            return;
        }
        memcpy(copy.data, b->data + off, len);
        copy.len = len;
        msg = &copy;
        off = 0;
        end = len;
    } else if (seldon_buf_reserve(b, name_len + 40) != 0) {
        gdone(m, 8, "out of memory", NULL);
        return;
    }
    rc = pick_split(&t, &mt, u, name, name_len, c->sticky[0] ? c->sticky : NULL, strlen(c->sticky));
    if (rc != 0) {
        seldon_buf_free(&copy);
        seldon_router_status(NULL, &grpc, rc);
        gdone(m, grpc, seldon_last_error(), NULL);
        return;
    }
    if (c->route[0] == '\0' && t.vname_len + 3 <= sizeof(c->route))
        snprintf(c->route, sizeof(c->route), ":%.*s:", (int)t.vname_len, t.vname);
    if (mt.r != NULL)
        grpc_mirror(c, &mt, msg->data + off, msg->len - off);
    /* The versioned name as a last field 1: protobuf keeps the last value of a field. */
    pb_append_field1(msg, t.vname, t.vname_len);
    m->r = t.r;
    m->vl = t.vl;
    atomic_fetch_add_explicit(&t.r->in_flight, 1, memory_order_relaxed);
    up_vl_begin(t.vl);
    if (t.evicted) { /* sent once the version is loaded again: the message is kept */
        if (seldon_buf_reserve(&m->parked, msg->len - off) == 0) {
            memcpy(m->parked.data, msg->data + off, msg->len - off);
            m->parked.len = msg->len - off;
            rc = park(&t, m, 1);
        } else {
            rc = sdd_error(SELDON_ENOMEM, "out of memory");
        }
        msg->len = end;
        seldon_buf_free(&copy);
        if (rc != 0) {
            seldon_buf_free(&m->parked);
            seldon_router_status(NULL, &grpc, rc);
            gdone(m, grpc, seldon_last_error(), NULL);
        }
        return;
    }
    rc = seldon_service_grpc(t.r->s.svc, c->path, c->path_len, msg->data + off, msg->len - off,
                             gdone, m);
    msg->len = end; /* the service copied what it keeps */
    seldon_buf_free(&copy);
    if (rc != 0)
        gdone(m, 13, seldon_last_error(), NULL);
}

/* sdp_grpc_in's hand-over: one whole request message of the call. */
static int g_one(void *user_data, seldon_buf *b, size_t off, size_t len)
{
    gcall *c = user_data;
    dispatch(c, b, off, len);
    return c->s == NULL || c->finished;
}

static void g_data(sd2_stream *s, void *user_data, const uint8_t *data, size_t len)
{
    gcall *c = user_data;
    const char *why = NULL;
    int32_t rc;
    if (c->streaming && !c->finished)
        c->unconsumed += len; /* returned once the answers keep up: see maybe_consume() */
    else
        sd2_consume(s, len); /* held in c->in, which is bounded by max */
    if (c->finished)
        return;
    rc = sdp_grpc_in_data(&c->in, data, len, g_one, c, &why);
    if (rc > 0)
        gfinish(c, rc, why);
    else if (rc == 0 && c->streaming)
        maybe_consume(c);
}

static void g_end(sd2_stream *s, void *user_data, const sd2_header *trailers, size_t n)
{
    gcall *c = user_data;
    const char *why = NULL;
    int32_t rc;
    (void)s;
    (void)trailers;
    (void)n;
    c->ended = 1;
    if (c->finished)
        return;
    rc = sdp_grpc_in_end(&c->in, g_one, c, &why);
    if (rc > 0)
        gfinish(c, rc, why);
    else if (rc == 0 && c->streaming && c->refs == 1)
        gfinish(c, 0, NULL);
}

static void g_close(sd2_stream *s, void *user_data, int err, uint32_t h2_code)
{
    gcall *c = user_data;
    (void)s;
    (void)err;
    (void)h2_code;
    c->s = NULL;
    gcall_unref(c);
}

static void g_drain(sd2_stream *s, void *user_data)
{
    (void)s;
    maybe_consume(user_data);
}

static const sd2_stream_cbs g_cbs = {NULL, g_data, g_end, g_drain, g_close};

void up_grpc_request(void *user_data, sd2_stream *s, const sd2_header *h, size_t n, int end)
{
    up *u = user_data;
    const sd2_header *path = sd2_header_find(h, n, ":path");
    const sd2_header *model = sd2_header_find(h, n, SELDON_ROUTER_HEADER);
    size_t i, count_m = seldon_service_grpc_method_count();
    gcall *c;
    char why[300];
    int32_t streaming = 0;
    const char *m = NULL;

    if (model != NULL) {
        /* A pipeline's call (or an experiment's over pipelines), unary or streamed, is
           served whole by plserve (pipes.c). */
        up_exp_choice ec;
        if (up_exp_grpc(u, &ec, h, n)) {
            sdp_route route;
            up_exp_route(&route, &ec);
            up_pl_grpc_stream(u, s, h, n, end, ec.pipeline, ec.pipeline_len, &route);
            return;
        }
    }
    if (model != NULL && model->value_len > 9 &&
        memcmp(model->value + model->value_len - 9, ".pipeline", 9) == 0) {
        char name[SELDON_ROUTES_NAME_MAX + 16];
        size_t name_len = 0;
        if (seldon_router_route_name(name, &name_len, sizeof(name), SELDON_ROUTER_GRPC,
                                     model->value, model->value_len, NULL, 0) != 0) {
            count(u, "grpc", 3);
            sd2_grpc_finish(s, 3, seldon_last_error(), NULL, 0);
            return;
        }
        up_pl_grpc_stream(u, s, h, n, end, name, name_len - 9, NULL);
        return;
    }
    for (i = 0; path != NULL && i < count_m; i++) {
        const char *p = seldon_service_grpc_method(i, &streaming);
        if (strlen(p) == path->value_len && memcmp(p, path->value, path->value_len) == 0) {
            m = p;
            break;
        }
    }
    if (m == NULL) {
        snprintf(why, sizeof(why), "unknown method %.*s",
                 path != NULL ? (int)(path->value_len > 200 ? 200 : path->value_len) : 0,
                 path != NULL ? path->value : "");
        count(u, "grpc", 12);
        sd2_grpc_finish(s, 12, why, NULL, 0);
        return;
    }
    c = sdd_calloc(1, sizeof(*c));
    if (c == NULL) {
        sd2_grpc_finish(s, 8, "out of memory", NULL, 0);
        return;
    }
    c->u = u;
    c->loop = sdl_loops_current(u->loops);
    c->s = s;
    c->path = m;
    c->path_len = strlen(m);
    c->streaming = streaming;
    c->refs = 1;
    c->in.max = u->cfg.max_body;
    c->in.streaming = streaming;
    if (strstr(m, "/Repository") != NULL)
        c->kind = G_REPO;
    else if (strstr(m, "/Server") != NULL)
        c->kind = G_SERVER;
    else
        c->kind = G_MODEL;
    {
        const sd2_header *tm = sd2_header_find(h, n, "grpc-timeout");
        const sd2_header *xr = sd2_header_find(h, n, "x-request-id");
        const sd2_header *st = sd2_header_find(h, n, "seldon-timeout-ms");
        if (tm != NULL)
            c->timeout_ms = up_grpc_timeout_ms(tm->value, tm->value_len);
        if (st != NULL) { /* the header wins over the deadline, as for REST */
            char num[24];
            snprintf(num, sizeof(num), "%.*sm", (int)(st->value_len < 20 ? st->value_len : 20),
                     st->value);
            c->timeout_ms = up_grpc_timeout_ms(num, strlen(num));
        }
        if (xr != NULL && xr->value_len < sizeof(c->rid))
            snprintf(c->rid, sizeof(c->rid), "%.*s", (int)xr->value_len, xr->value);
        xr = sd2_header_find(h, n, SELDON_ROUTER_ROUTE_HEADER);
        if (xr != NULL && xr->value_len < sizeof(c->sticky))
            snprintf(c->sticky, sizeof(c->sticky), "%.*s", (int)xr->value_len, xr->value);
    }
    if (model == NULL && c->kind == G_MODEL) {
        /* The message may name a pipeline: its x-* metadata is kept for the steps. */
        sd2_header xs[32];
        size_t k = 0;
        for (i = 0; i < n && k < 32; i++)
            if (h[i].name_len > 2 && memcmp(h[i].name, "x-", 2) == 0 &&
                !(h[i].name_len == 12 && memcmp(h[i].name, "x-request-id", 12) == 0))
                xs[k++] = h[i];
        if (k > 0 && (c->xmd = md_copy(xs, k)) != NULL)
            c->nxmd = k;
    }
    if (model != NULL) {
        c->header = sdd_strndup(model->value, model->value_len);
        c->header_len = model->value_len;
        if (c->header == NULL) {
            sdd_free(c);
            sd2_grpc_finish(s, 8, "out of memory", NULL, 0);
            return;
        }
    }
    sd2_stream_bind(s, &g_cbs, c);
    if (c->kind == G_REPO) {
        gfinish(c, 12,
                "seldon up: the repository is the scheduler's; load models with "
                "`seldon model load -f FILE`");
        return;
    }
    if (end)
        g_end(s, c, NULL, 0);
}

/* On the control loop: the version is loaded again. */
void up_park_resume(up_park *p)
{
    if (p->grpc == UP_PARK_STEP) {
        up_pl_step_resume(p->call, p->r);
    } else if (p->grpc) {
        gmsg *m = p->call;
        gcall *c = m->c;
        seldon_buf msg = m->parked;
        m->parked.data = NULL;
        m->parked.len = m->parked.cap = 0;
        if (seldon_service_grpc(p->r->s.svc, c->path, c->path_len, msg.data, msg.len, gdone, m) !=
            0)
            gdone(m, 13, seldon_last_error(), NULL);
        seldon_buf_free(&msg); /* the service copied what it keeps */
    } else {
        rest_call *c = p->call;
        if (seldon_service_rest(p->r->s.svc, &c->q, rest_done, c) != 0) {
            atomic_fetch_sub_explicit(&c->r->in_flight, 1, memory_order_relaxed);
            up_vl_end(c->vl);
            count(c->r->u, "rest", 500);
            sdh_respond_error(c->req, 500, seldon_last_error());
            sdd_free(c);
        }
    }
    sdd_free(p);
}

/* On the control loop: the version could not be loaded again. */
void up_park_fail(up_park *p, int rc, const char *why)
{
    int32_t http = 500, grpc = 13;
    seldon_router_status(&http, &grpc, rc);
    if (p->grpc == UP_PARK_STEP) {
        up_pl_step_fail(p->call, rc, why);
    } else if (p->grpc) {
        gmsg *m = p->call;
        seldon_buf_free(&m->parked);
        gdone(m, grpc, why, NULL);
    } else {
        rest_call *c = p->call;
        atomic_fetch_sub_explicit(&c->r->in_flight, 1, memory_order_relaxed);
        up_vl_end(c->vl);
        count(c->r->u, "rest", http);
        sdh_respond_error(c->req, http, why);
        sdd_free(c);
    }
    sdd_free(p);
}

int up_adopt_h2(void *user_data, const sd_adopt *conn)
{
    up *u = user_data;
    int i = sdl_loops_current(u->loops);
    if (i < 0 || u->h2[i] == NULL)
        return SELDON_EUNAVAIL;
    return sd2_server_adopt(u->h2[i], conn);
}

int up_metrics_setup(up *u)
{
    const char *labels[2] = {"protocol", "code"};
    const char *cmd_labels[2] = {"server_replica", "outcome"};
    const char *per_model[4] = {"server", "server_replica", "model", "model_internal"};
    int rc = seldon_metrics_new(&u->metrics);
    if (rc == 0)
        rc = seldon_metrics_add(&u->m_requests, u->metrics, SELDON_METRIC_COUNTER,
                                "seldon_up_requests_total",
                                "Requests answered by the ingress, by protocol (rest, grpc) and "
                                "code (HTTP status or gRPC status).",
                                labels, 2, NULL, 0);
    if (rc == 0)
        rc = seldon_metrics_add(&u->m_commands, u->metrics, SELDON_METRIC_COUNTER,
                                "seldon_up_model_commands_total",
                                "Model loads and unloads the replicas carried out for the "
                                "scheduler, by replica and outcome (loaded, load_failed, "
                                "unloaded, unload_failed).",
                                cmd_labels, 2, NULL, 0);
    if (rc == 0)
        rc = seldon_metrics_add(
            &u->m_evict, u->metrics, SELDON_METRIC_COUNTER, "seldon_cache_evict_count",
            "Model versions unloaded from a replica to make room.", per_model, 4, NULL, 0);
    if (rc == 0)
        rc = seldon_metrics_add(&u->m_miss, u->metrics, SELDON_METRIC_COUNTER,
                                "seldon_cache_miss_count",
                                "Requests that found their model evicted and waited for it to "
                                "load again.",
                                per_model, 4, NULL, 0);
    return rc;
}
