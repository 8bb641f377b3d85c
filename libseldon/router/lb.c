/*
 * Balancing, retries and outlier ejection for one I/O loop. Nothing here is
 * shared between threads, so counts are plain integers.
 *
 * A "view" pairs a table with the per-upstream state ("hosts") of this
 * balancer. Requests hold the view they started on; a swap makes a new view
 * that reuses the hosts whose addresses stay, so in-flight counts and health
 * carry over.
 */
#include <stdio.h>
#include <string.h>

#include "router/router.h"

typedef struct host {
    char *key;
    size_t key_len;
    uint64_t hash;
    int32_t refs;        /* views holding it */
    int32_t in_flight;   /* attempts open on it, from any view */
    int32_t fails;       /* consecutive failures */
    int32_t ejections;   /* ejections so far, for the growing duration */
    int32_t probe_busy;  /* a half-open probe is in flight */
    int64_t eject_until; /* 0: healthy; > now: ejected; <= now: half-open */
    int64_t healthy_since;
    seldon_series *ejected_series;
} host;

#define CODES_CACHED 8

typedef struct route_series {
    seldon_series *mirrored; /* made on the first copy */
    seldon_series *retries;
    seldon_series *seconds;
    int32_t codes[CODES_CACHED];
    seldon_series *by_code[CODES_CACHED];
} route_series;

typedef struct view {
    int32_t refs; /* the balancer while current, plus each request */
    seldon_routes *rt;
    host **hosts;          /* parallel to rt->ups */
    route_series **series; /* per route, made on first use; NULL without metrics */
} view;

struct seldon_router_lb {
    view *cur;
    seldon_router_metrics *metrics;
    uint64_t rng;
};

struct seldon_router_req {
    seldon_router_lb *lb;
    view *v;
    size_t route;
    int32_t protocol;
    int32_t attempts;
    int32_t retries_max;
    int32_t open_probe;
    int64_t deadline;
    int64_t attempt_start;
    host *open; /* the host of the open attempt */
    uint32_t tried[SELDON_ROUTES_RETRIES_MAX + 1];
    int64_t mirror;   /* the mirror route chosen for a copy, or -1 */
    uint32_t version; /* of the upstream last picked */
    uint32_t pin;     /* the version x-seldon-route sticks to, or 0 */
    uint8_t split;    /* the route asked for has candidates */
    uint8_t picked;   /* a pick happened */
    uint8_t is_copy;  /* a mirror copy: its first pick counts in seldon_router_mirrored_total */
};

static uint64_t rnd(seldon_router_lb *lb)
{
    /* xorshift64* */
    uint64_t x = lb->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    lb->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static void host_unref(host *h)
{
    if (h != NULL && --h->refs == 0) {
        sdn_free(h->key);
        sdn_free(h);
    }
}

static void view_unref(view *v)
{
    size_t i;
    if (v == NULL || --v->refs > 0)
        return;
    if (v->hosts != NULL)
        for (i = 0; i < v->rt->nups; i++)
            host_unref(v->hosts[i]);
    if (v->series != NULL) {
        for (i = 0; i < v->rt->nroutes; i++)
            sdn_free(v->series[i]);
        sdn_free(v->series);
    }
    sdn_free(v->hosts);
    seldon_routes_release(v->rt);
    sdn_free(v);
}

static host *find_host(const view *v, const char *key, size_t len, uint64_t h)
{
    /* The table's own index finds the position; its host is the state. */
    size_t s;
    const seldon_routes *t;
    if (v == NULL)
        return NULL;
    t = v->rt;
    if (t->key_cap == 0)
        return NULL;
    s = (size_t)h & (t->key_cap - 1);
    while (t->key_index[s] != 0) {
        size_t i = t->key_index[s] - 1;
        if (t->key_lens[i] == len && memcmp(t->keys[i], key, len) == 0)
            return v->hosts[i];
        s = (s + 1) & (t->key_cap - 1);
    }
    return NULL;
}

static int view_new(view **out, seldon_routes *rt, const view *old)
{
    view *v = sdn_calloc(1, sizeof(*v));
    size_t i;
    if (v == NULL)
        return sdn_error(SELDON_ENOMEM, "router: out of memory");
    v->refs = 1;
    v->rt = seldon_routes_retain(rt);
    if (rt->nups > 0 && (v->hosts = sdn_calloc(rt->nups, sizeof(*v->hosts))) == NULL)
        goto oom;
    for (i = 0; i < rt->nups; i++) {
        size_t len;
        const char *key = sdn_rt_key(rt, i, &len);
        uint64_t hh = sdn_rt_hash(key, len);
        host *h = find_host(old, key, len, hh);
        if (h == NULL) {
            h = sdn_calloc(1, sizeof(*h));
            if (h == NULL || (h->key = sdn_strndup(key, len)) == NULL) {
                sdn_free(h);
                goto oom;
            }
            h->key_len = len;
            h->hash = hh;
        }
        h->refs++;
        v->hosts[i] = h;
    }
    *out = v;
    return 0;
oom:
    view_unref(v);
    return sdn_error(SELDON_ENOMEM, "router: out of memory");
}

int seldon_router_lb_new(seldon_router_lb **out, seldon_routes *routes,
                         seldon_router_metrics *metrics, uint64_t seed)
{
    seldon_router_lb *lb;
    int rc;
    if (out == NULL || routes == NULL)
        return sdn_error(SELDON_EINVAL, "router_lb_new: NULL argument");
    *out = NULL;
    lb = sdn_calloc(1, sizeof(*lb));
    if (lb == NULL)
        return sdn_error(SELDON_ENOMEM, "router_lb_new: out of memory");
    lb->metrics = metrics;
    lb->rng = seed ? seed : 0x9E3779B97F4A7C15ULL;
    if ((rc = view_new(&lb->cur, routes, NULL)) != 0) {
        sdn_free(lb);
        return rc;
    }
    *out = lb;
    return 0;
}

void seldon_router_lb_free(seldon_router_lb *lb)
{
    if (lb == NULL)
        return;
    view_unref(lb->cur);
    sdn_free(lb);
}

int seldon_router_lb_swap(seldon_router_lb *lb, seldon_routes *routes)
{
    view *v;
    int rc;
    if (lb == NULL || routes == NULL)
        return sdn_error(SELDON_EINVAL, "router_lb_swap: NULL argument");
    if ((rc = view_new(&v, routes, lb->cur)) != 0)
        return rc;
    view_unref(lb->cur);
    lb->cur = v;
    return 0;
}

void seldon_router_lb_request_id(char *out, seldon_router_lb *lb)
{
    static const char hex[] = "0123456789abcdef";
    uint8_t b[16];
    uint64_t hi, lo;
    size_t i, o = 0;
    if (out == NULL)
        return;
    if (lb == NULL) {
        out[0] = '\0';
        return;
    }
    hi = rnd(lb);
    lo = rnd(lb);
    for (i = 0; i < 8; i++) {
        b[i] = (uint8_t)(hi >> (8 * i));
        b[8 + i] = (uint8_t)(lo >> (8 * i));
    }
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    for (i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
}

seldon_routes *seldon_router_lb_routes(const seldon_router_lb *lb)
{
    return lb ? lb->cur->rt : NULL;
}

static host *host_of(const seldon_router_lb *lb, const seldon_router_upstream *u)
{
    char key[600];
    size_t len;
    if (lb == NULL || u == NULL)
        return NULL;
    len = sdn_rt_make_key(key, sizeof(key), u->http, u->grpc);
    if (len == 0)
        return NULL;
    return find_host(lb->cur, key, len, sdn_rt_hash(key, len));
}

int32_t seldon_router_lb_in_flight(const seldon_router_lb *lb,
                                   const seldon_router_upstream *upstream)
{
    host *h = host_of(lb, upstream);
    return h ? h->in_flight : 0;
}

int32_t seldon_router_lb_ejected(const seldon_router_lb *lb, const seldon_router_upstream *upstream,
                                 int64_t now_ns)
{
    host *h = host_of(lb, upstream);
    return h != NULL && h->eject_until > now_ns;
}

/* --- Metrics ------------------------------------------------------------- */

static route_series *series_of(seldon_router_req *req)
{
    view *v = req->v;
    route_series *rs;
    const char *name;
    if (req->lb->metrics == NULL)
        return NULL;
    if (v->series == NULL) {
        v->series = sdn_calloc(v->rt->nroutes ? v->rt->nroutes : 1, sizeof(*v->series));
        if (v->series == NULL)
            return NULL;
    }
    rs = v->series[req->route];
    if (rs != NULL)
        return rs;
    rs = sdn_calloc(1, sizeof(*rs));
    if (rs == NULL)
        return NULL;
    name = v->rt->routes[req->route].name;
    if (seldon_metric_series(&rs->retries, req->lb->metrics->retries, &name) != 0 ||
        seldon_metric_series(&rs->seconds, req->lb->metrics->upstream_seconds, &name) != 0) {
        sdn_free(rs);
        return NULL;
    }
    v->series[req->route] = rs;
    return rs;
}

void seldon_router_req_finish(seldon_router_req *req, int32_t code)
{
    route_series *rs;
    seldon_series *s = NULL;
    size_t i;
    if (req == NULL || (rs = series_of(req)) == NULL)
        return;
    for (i = 0; i < CODES_CACHED && rs->by_code[i] != NULL; i++)
        if (rs->codes[i] == code) {
            s = rs->by_code[i];
            break;
        }
    if (s == NULL) {
        char text[16];
        const char *labels[2];
        snprintf(text, sizeof(text), "%d", (int)code);
        labels[0] = req->v->rt->routes[req->route].name;
        labels[1] = text;
        if (seldon_metric_series(&s, req->lb->metrics->requests, labels) != 0)
            return;
        if (i < CODES_CACHED) {
            rs->codes[i] = code;
            rs->by_code[i] = s;
        }
    }
    seldon_series_add(s, 1);
}

static void count_ejection(seldon_router_lb *lb, host *h)
{
    if (lb->metrics == NULL)
        return;
    if (h->ejected_series == NULL) {
        const char *label = h->key;
        if (seldon_metric_series(&h->ejected_series, lb->metrics->ejections, &label) != 0)
            return;
    }
    seldon_series_add(h->ejected_series, 1);
}

/* --- Requests ------------------------------------------------------------ */

/* A request on route idx of the current table. */
static int req_at(seldon_router_req **out, seldon_router_lb *lb, size_t idx, int32_t protocol,
                  int64_t now_ns)
{
    seldon_router_req *req;
    int64_t timeout;
    req = sdn_calloc(1, sizeof(*req));
    if (req == NULL)
        return sdn_error(SELDON_ENOMEM, "router_req_new: out of memory");
    req->lb = lb;
    req->v = lb->cur;
    req->v->refs++;
    req->route = idx;
    req->protocol = protocol;
    req->retries_max = seldon_routes_retries(lb->cur->rt, idx);
    timeout = seldon_routes_timeout_ms(lb->cur->rt, idx);
    req->deadline = timeout > 0 ? now_ns + timeout * 1000000 : 0;
    req->mirror = -1;
    *out = req;
    return 0;
}

int seldon_router_req_new(seldon_router_req **out, seldon_router_lb *lb, const char *name,
                          size_t len, int32_t protocol, int64_t now_ns)
{
    size_t idx;
    int rc;
    if (out == NULL || lb == NULL || (name == NULL && len > 0))
        return sdn_error(SELDON_EINVAL, "router_req_new: NULL argument");
    *out = NULL;
    if (protocol != SELDON_ROUTER_HTTP && protocol != SELDON_ROUTER_GRPC)
        return sdn_error(SELDON_EINVAL, "router_req_new: unknown protocol %d", (int)protocol);
    if ((rc = seldon_routes_find(&idx, lb->cur->rt, name ? name : "", len)) != 0)
        return rc;
    return req_at(out, lb, idx, protocol, now_ns);
}

int seldon_router_req_new_split(seldon_router_req **out, seldon_router_lb *lb, const char *name,
                                size_t len, const char *sticky, size_t sticky_len, int32_t protocol,
                                int64_t now_ns)
{
    const sdn_rt_route *r;
    size_t idx, chosen;
    int64_t mirror = -1;
    uint32_t pin = 0;
    int rc;
    if (out == NULL || lb == NULL || (name == NULL && len > 0) || (sticky == NULL && sticky_len))
        return sdn_error(SELDON_EINVAL, "router_req_new_split: NULL argument");
    *out = NULL;
    if (protocol != SELDON_ROUTER_HTTP && protocol != SELDON_ROUTER_GRPC)
        return sdn_error(SELDON_EINVAL, "router_req_new: unknown protocol %d", (int)protocol);
    if ((rc = seldon_routes_find(&idx, lb->cur->rt, name ? name : "", len)) != 0)
        return rc;
    r = &lb->cur->rt->routes[idx];
    if (r->ncands == 0 && r->mirror < 0 && (sticky_len <= 2 || !r->versioned))
        return req_at(out, lb, idx, protocol, now_ns);
    seldon_routes_decide_version(&chosen, &pin, &mirror, NULL, lb->cur->rt, idx, sticky, sticky_len,
                                 r->ncands > 0 || r->mirror >= 0 ? rnd(lb) : 0);
    if ((rc = req_at(out, lb, chosen, protocol, now_ns)) != 0)
        return rc;
    (*out)->pin = pin;
    (*out)->mirror = mirror;
    (*out)->split = r->ncands > 0;
    return 0;
}

int32_t seldon_router_req_split(const seldon_router_req *req)
{
    return req ? req->split : 0;
}

int32_t seldon_router_req_mirrored(const seldon_router_req *req)
{
    return req != NULL && req->mirror >= 0;
}

int seldon_router_req_mirror_new(seldon_router_req **out, seldon_router_req *req, int64_t now_ns)
{
    seldon_router_req *m;
    if (out == NULL || req == NULL)
        return sdn_error(SELDON_EINVAL, "router_req_mirror_new: NULL argument");
    *out = NULL;
    if (req->mirror < 0)
        return sdn_error(SELDON_ENOTFOUND, "the request is not mirrored");
    m = sdn_calloc(1, sizeof(*m));
    if (m == NULL)
        return sdn_error(SELDON_ENOMEM, "router_req_mirror_new: out of memory");
    m->lb = req->lb;
    m->v = req->v;
    m->v->refs++;
    m->route = (size_t)req->mirror;
    m->protocol = req->protocol;
    m->retries_max = 0;
    m->deadline = req->deadline;
    m->mirror = -1;
    m->is_copy = 1;
    (void)now_ns;
    *out = m;
    return 0;
}

uint32_t seldon_router_req_pinned(const seldon_router_req *req)
{
    return req ? req->pin : 0;
}

uint32_t seldon_router_req_version(const seldon_router_req *req)
{
    return req ? req->version : 0;
}

int seldon_router_req_tag(char *out, size_t *out_len, size_t cap, const seldon_router_req *req)
{
    const sdn_rt_route *r;
    char num[16];
    size_t nl = 0, need;
    if (out == NULL || req == NULL)
        return sdn_error(SELDON_EINVAL, "router_req_tag: NULL argument");
    if (!req->picked)
        return sdn_error(SELDON_ESTATE, "router_req_tag: no pick yet");
    r = &req->v->rt->routes[req->route];
    if (req->version != 0)
        nl = (size_t)snprintf(num, sizeof(num), "_%u", (unsigned)req->version);
    need = r->name_len + nl;
    if (need + 1 > cap)
        return sdn_error(SELDON_ETOOBIG, "router_req_tag: %zu bytes needed", need + 1);
    memcpy(out, r->name, r->name_len);
    memcpy(out + r->name_len, num, nl);
    out[need] = '\0';
    if (out_len != NULL)
        *out_len = need;
    return 0;
}

int64_t seldon_router_req_deadline(const seldon_router_req *req)
{
    return req ? req->deadline : 0;
}

size_t seldon_router_req_route(const seldon_router_req *req)
{
    return req ? req->route : 0;
}

const char *seldon_router_req_route_name(const seldon_router_req *req)
{
    return req ? req->v->rt->routes[req->route].name : NULL;
}

int32_t seldon_router_req_attempts(const seldon_router_req *req)
{
    return req ? req->attempts : 0;
}

static int has_addr(const seldon_router_upstream *u, int32_t protocol)
{
    return protocol == SELDON_ROUTER_HTTP ? u->http != NULL : u->grpc != NULL;
}

static int was_tried(const seldon_router_req *req, uint32_t u)
{
    int32_t i;
    for (i = 0; i < req->attempts; i++)
        if (req->tried[i] == u)
            return 1;
    return 0;
}

/* 1 when upstream i of the request's route serves the pinned version (or none is pinned). */
static int on_pin(const seldon_router_req *req, size_t i)
{
    const seldon_routes *rt = req->v->rt;
    return req->pin == 0 || rt->route_vers[rt->routes[req->route].first + i] == req->pin;
}

/* 2: pickable now; 1: only in panic (ejected, or its probe is busy); 0: never. */
static int usable(const seldon_router_req *req, uint32_t u, int64_t now)
{
    const host *h = req->v->hosts[u];
    if (!has_addr(&req->v->rt->ups[u], req->protocol) || was_tried(req, u))
        return 0;
    if (h->eject_until == 0)
        return 2;
    if (h->eject_until > now || h->probe_busy)
        return 1;
    return 2;
}

/* The route's pickable upstream with the fewest attempts in flight, or -1. */
static int64_t choose(seldon_router_req *req, int64_t now)
{
    const seldon_routes *rt = req->v->rt;
    const sdn_rt_route *r = &rt->routes[req->route];
    const uint32_t *ids = rt->route_ups + r->first;
    size_t n = r->nups, i, start;
    int64_t best = -1;
    if (n == 0)
        return -1;
    start = (size_t)(rnd(req->lb) % n);
    if (n <= 8) {
        for (i = 0; i < n; i++) {
            size_t k = start + i < n ? start + i : start + i - n;
            uint32_t u = ids[k];
            if (usable(req, u, now) == 2 && on_pin(req, k) &&
                (best < 0 || req->v->hosts[u]->in_flight < req->v->hosts[best]->in_flight))
                best = u;
        }
        return best;
    } else {
        /* Two random choices: each is the first pickable at or after a random position. */
        int64_t a = -1, b = -1;
        size_t second = (size_t)(rnd(req->lb) % n);
        for (i = 0; i < n && a < 0; i++)
            if (usable(req, ids[(start + i) % n], now) == 2 && on_pin(req, (start + i) % n))
                a = ids[(start + i) % n];
        if (a < 0)
            return -1;
        for (i = 0; i < n && b < 0; i++) {
            uint32_t u = ids[(second + i) % n];
            if (u != (uint32_t)a && usable(req, u, now) == 2 && on_pin(req, (second + i) % n))
                b = u;
        }
        if (b >= 0 && req->v->hosts[b]->in_flight < req->v->hosts[a]->in_flight)
            return b;
        return a;
    }
}

/* Panic: the untried upstream whose ejection ends first. */
static int64_t choose_panic(seldon_router_req *req, int64_t now)
{
    const seldon_routes *rt = req->v->rt;
    const sdn_rt_route *r = &rt->routes[req->route];
    size_t i;
    int64_t best = -1;
    for (i = 0; i < r->nups; i++) {
        uint32_t u = rt->route_ups[r->first + i];
        if (usable(req, u, now) >= 1 && on_pin(req, i) &&
            (best < 0 || req->v->hosts[u]->eject_until < req->v->hosts[best]->eject_until))
            best = u;
    }
    return best;
}

int seldon_router_pick(const seldon_router_upstream **out, seldon_router_req *req, int64_t now_ns)
{
    int64_t u;
    host *h;
    if (out == NULL || req == NULL)
        return sdn_error(SELDON_EINVAL, "router_pick: NULL argument");
    *out = NULL;
    if (req->open != NULL)
        return sdn_error(SELDON_ESTATE, "router_pick: an attempt is already open");
    if (req->attempts > SELDON_ROUTES_RETRIES_MAX)
        return sdn_error(SELDON_EUNAVAIL, "route \"%s\": no attempt left",
                         req->v->rt->routes[req->route].name);
    u = choose(req, now_ns);
    if (u < 0 && req->pin != 0) {
        /* No healthy untried upstream of the pinned version: any of the route's serves. */
        req->pin = 0;
        u = choose(req, now_ns);
    }
    if (u < 0)
        u = choose_panic(req, now_ns);
    if (u < 0)
        return sdn_error(SELDON_EUNAVAIL, "route \"%s\": no %s upstream left to try",
                         req->v->rt->routes[req->route].name,
                         req->protocol == SELDON_ROUTER_HTTP ? "REST" : "gRPC");
    h = req->v->hosts[u];
    h->in_flight++;
    req->open_probe = h->eject_until != 0 && h->eject_until <= now_ns && !h->probe_busy;
    if (req->open_probe)
        h->probe_busy = 1;
    req->open = h;
    req->attempt_start = now_ns;
    req->tried[req->attempts++] = (uint32_t)u;
    if (req->is_copy && !req->picked) {
        route_series *rs = series_of(req);
        const char *name = req->v->rt->routes[req->route].name;
        if (rs != NULL && rs->mirrored == NULL)
            seldon_metric_series(&rs->mirrored, req->lb->metrics->mirrored, &name);
        if (rs != NULL && rs->mirrored != NULL)
            seldon_series_add(rs->mirrored, 1);
    }
    req->picked = 1;
    req->version = 0;
    {
        const seldon_routes *rt = req->v->rt;
        const sdn_rt_route *r = &rt->routes[req->route];
        uint32_t i;
        if (r->versioned)
            for (i = 0; i < r->nups; i++)
                if (rt->route_ups[r->first + i] == (uint32_t)u) {
                    req->version = rt->route_vers[r->first + i];
                    break;
                }
    }
    *out = &req->v->rt->ups[u];
    return 0;
}

int32_t seldon_router_outcome(int32_t http_status, int32_t grpc_status)
{
    if (http_status >= 500 && http_status <= 599)
        return SELDON_ROUTER_HTTP_5XX;
    if (grpc_status == 14)
        return SELDON_ROUTER_GRPC_UNAVAILABLE;
    return SELDON_ROUTER_OK;
}

static void eject(seldon_router_req *req, host *h, int64_t now)
{
    const seldon_routes_defaults *d = &req->v->rt->d;
    int64_t ms;
    /* A host that stayed healthy as long as the longest ejection starts over. */
    if (h->healthy_since != 0 && now - h->healthy_since >= d->eject_max_ms * 1000000)
        h->ejections = 0;
    if (h->ejections < 1000000)
        h->ejections++;
    ms = d->eject_base_ms * h->ejections;
    if (ms > d->eject_max_ms || ms < 0)
        ms = d->eject_max_ms;
    h->eject_until = now + ms * 1000000;
    if (h->eject_until == 0)
        h->eject_until = 1;
    h->fails = 0;
    h->healthy_since = 0;
    count_ejection(req->lb, h);
    sdn_log(SELDON_LOG_WARN, "router: upstream %s ejected for %lld ms (ejection %d)", h->key,
            (long long)ms, (int)h->ejections);
}

static int retryable(int32_t outcome)
{
    return outcome == SELDON_ROUTER_CONNECT_FAILED || outcome == SELDON_ROUTER_HTTP_5XX ||
           outcome == SELDON_ROUTER_GRPC_UNAVAILABLE || outcome == SELDON_ROUTER_RESET;
}

static void end_attempt(seldon_router_req *req, int32_t outcome, int64_t now)
{
    host *h = req->open;
    route_series *rs = series_of(req);
    const seldon_routes_defaults *d = &req->v->rt->d;
    h->in_flight--;
    if (req->open_probe)
        h->probe_busy = 0;
    if (rs != NULL && outcome != SELDON_ROUTER_CANCELED)
        seldon_series_observe(rs->seconds, (double)(now - req->attempt_start) / 1e9);
    if (outcome == SELDON_ROUTER_OK) {
        h->fails = 0;
        if (h->eject_until != 0 && h->eject_until <= now) {
            /* The probe answered: back in rotation. */
            h->eject_until = 0;
            h->healthy_since = now ? now : 1;
            sdn_log(SELDON_LOG_INFO, "router: upstream %s is back", h->key);
        }
    } else if (outcome != SELDON_ROUTER_CANCELED) {
        if (h->fails < INT32_MAX)
            h->fails++;
        if (req->open_probe)
            eject(req, h, now);
        else if (d->eject_failures > 0 && h->fails >= d->eject_failures && h->eject_until == 0)
            eject(req, h, now);
    }
    req->open = NULL;
    req->open_probe = 0;
}

int seldon_router_attempt_end(int32_t *out_retry, int64_t *out_deadline_ns, seldon_router_req *req,
                              int32_t outcome, int32_t replayable, int64_t now_ns)
{
    int32_t retry = 0;
    if (out_retry == NULL || req == NULL)
        return sdn_error(SELDON_EINVAL, "router_attempt_end: NULL argument");
    *out_retry = 0;
    if (out_deadline_ns != NULL)
        *out_deadline_ns = req->deadline;
    if (outcome < SELDON_ROUTER_OK || outcome > SELDON_ROUTER_CANCELED)
        return sdn_error(SELDON_EINVAL, "router_attempt_end: unknown outcome %d", (int)outcome);
    if (req->open == NULL)
        return sdn_error(SELDON_ESTATE, "router_attempt_end: no attempt is open");
    end_attempt(req, outcome, now_ns);
    if (retryable(outcome) && replayable && req->attempts <= req->retries_max &&
        (req->deadline == 0 || now_ns < req->deadline)) {
        const seldon_routes *rt = req->v->rt;
        const sdn_rt_route *r = &rt->routes[req->route];
        size_t i;
        for (i = 0; i < r->nups && !retry; i++)
            if (usable(req, rt->route_ups[r->first + i], now_ns) >= 1)
                retry = 1;
    }
    if (retry) {
        route_series *rs = series_of(req);
        if (rs != NULL)
            seldon_series_add(rs->retries, 1);
    }
    *out_retry = retry;
    return 0;
}

void seldon_router_req_free(seldon_router_req *req)
{
    if (req == NULL)
        return;
    if (req->open != NULL)
        end_attempt(req, SELDON_ROUTER_CANCELED, req->attempt_start);
    view_unref(req->v);
    sdn_free(req);
}
