/*
 * Pipelines served on ingress loops (plserve.h): the engine per loop, its
 * timer and its pump; the waiters (the callers of requests in flight); the
 * asynchronous results store; REST. gRPC is in plserve_grpc.c, the
 * pipelines' set and set-up in plserve_ctl.c, what they share in
 * plserve_int.h.
 *
 * The asynchronous store is shared by the loops (a GET may arrive on any
 * loop) behind one lock, bounded by async_max and expired after
 * async_ttl_ms; it is off the synchronous path.
 */

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "plserve_int.h"
#include "sdd.h"

/* Mirror copies (W_DROP) in flight in the process, at most: past it a request gets no copy,
   so a slow mirror cannot pile work up behind the callers'. */
#define MIRRORS_MAX 64
static atomic_int mirrors_in_flight;

/* A step call's room for its model's answer headers. */
#define C_AH_INLINE 128

static void buf_add(seldon_buf *b, const void *p, size_t n)
{
    if (n == 0 || seldon_buf_reserve(b, n) != 0)
        return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

int64_t sdp_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* A step call, from the engine's event to its answer on the loop. */
struct sdp_call {
    sdp_call *next;
    sdp_loop *p;
    uint64_t call_id;
    uint64_t seq; /* the (first batched) request's waiter */
    char *model;
    char *pipeline;
    seldon_msg *msg; /* the engine's, until the call is answered */
    seldon_msg *resp;
    const seldon_pipeline_event *ev; /* during the hook only */
    int64_t deadline;
    void *host;
    int32_t status;
    char *message;
    oh *ah; /* the model's x-* answer headers, with their strings (one block) */
    size_t nah;
    int32_t as_kind; /* sdp_call_fail_as: the request's error kind, message as is */
    union {          /* ah's block when it fits (a step's x-seldon-route does): no allocation */
        oh h[1];
        char b[C_AH_INLINE];
    } ah_in;
};

void sdp_i_count(sdp *s, const char *protocol, int code)
{
    if (s->hooks.count != NULL)
        s->hooks.count(s->ud, protocol, code);
}

/* ------------------------------------------------------------ async store */

static void async_expire(sdp *s, int64_t now)
{
    size_t i;
    for (i = 0; i < s->async_cap; i++)
        if (s->async_tab[i].used && (s->async_tab[i].done || s->async_tab[i].chained) &&
            s->async_tab[i].expires_ns <= now) {
            seldon_buf_free(&s->async_tab[i].body);
            s->async_tab[i].used = 0;
        }
}

static async_entry *async_find(sdp *s, const char *pipeline, const char *id, size_t id_len)
{
    size_t i;
    for (i = 0; i < s->async_cap; i++)
        if (s->async_tab[i].used && strlen(s->async_tab[i].id) == id_len &&
            memcmp(s->async_tab[i].id, id, id_len) == 0 &&
            strcmp(s->async_tab[i].pipeline, pipeline) == 0)
            return &s->async_tab[i];
    return NULL;
}

/* A pending entry for id; SELDON_ETOOBIG when the store is full, SELDON_EEXIST for a known id. */
static int async_add(sdp *s, const char *pipeline, const char *id, int chained)
{
    size_t i;
    int rc = sdd_error(SELDON_ETOOBIG,
                       "too many asynchronous requests kept (--pipeline-async-max): fetch or let "
                       "some expire");
    pthread_mutex_lock(&s->async_mu);
    async_expire(s, sdp_mono_ns());
    if (async_find(s, pipeline, id, strlen(id)) != NULL) {
        rc = sdd_error(SELDON_EEXIST, "request id \"%s\" is already kept", id);
        goto out;
    }
    for (i = 0; i < s->async_cap; i++)
        if (!s->async_tab[i].used) {
            memset(&s->async_tab[i], 0, sizeof(s->async_tab[i]));
            s->async_tab[i].used = 1;
            s->async_tab[i].chained = chained;
            s->async_tab[i].expires_ns = sdp_mono_ns() + (int64_t)s->cfg.async_ttl_ms * 1000000;
            snprintf(s->async_tab[i].id, sizeof(s->async_tab[i].id), "%s", id);
            snprintf(s->async_tab[i].pipeline, sizeof(s->async_tab[i].pipeline), "%s", pipeline);
            rc = 0;
            break;
        }
out:
    pthread_mutex_unlock(&s->async_mu);
    return rc;
}

static void async_drop(sdp *s, const char *pipeline, const char *id)
{
    async_entry *e;
    pthread_mutex_lock(&s->async_mu);
    e = async_find(s, pipeline, id, strlen(id));
    if (e != NULL)
        e->used = 0;
    pthread_mutex_unlock(&s->async_mu);
}

/* The result of id: takes body. */
static void async_finish(sdp *s, const char *pipeline, const char *id, int status, seldon_buf *body)
{
    async_entry *e;
    pthread_mutex_lock(&s->async_mu);
    e = async_find(s, pipeline, id, strlen(id));
    if (e != NULL) {
        e->done = 1;
        e->status = status;
        e->body = *body;
        *body = (seldon_buf)SELDON_BUF_INIT;
        e->expires_ns = sdp_mono_ns() + (int64_t)s->cfg.async_ttl_ms * 1000000;
    }
    pthread_mutex_unlock(&s->async_mu);
    seldon_buf_free(body);
}

/* --------------------------------------------------------------- helpers */

sdp_loop *sdp_i_cur(sdp *s)
{
    int loop = sdl_loops_current(s->loops);
    return loop >= 0 && loop < s->nloops && s->pl != NULL ? s->pl[loop] : NULL;
}

const seldon_pipeline *sdp_i_find_pipeline(sdp *s, const char *name, size_t len)
{
    sdp_loop *p = sdp_i_cur(s);
    size_t i;
    for (i = 0; p != NULL && i < p->npls; i++) {
        const char *n = seldon_pipeline_name(p->pls[i]);
        if (strlen(n) == len && memcmp(n, name, len) == 0)
            return p->pls[i];
    }
    return NULL;
}

/* v in hex, at least width digits (zero-padded); returns the digits written (at most 16). */
static size_t put_hex(char *out, uint64_t v, size_t width)
{
    static const char digits[] = "0123456789abcdef";
    size_t n = 1, i;
    while (n < 16 && (v >> (4 * n)) != 0)
        n++;
    if (n < width)
        n = width;
    for (i = n; i > 0; i--, v >>= 4)
        out[i - 1] = digits[v & 15];
    return n;
}

/* v in decimal; returns the digits written (at most 20). */
static size_t put_dec(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0, i;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

/* A new x-request-id: the process's salt, the loop, the request's number, in hex (no
   snprintf: one per request without an id of its own). */
static void new_rid(char *out, size_t cap, sdp_loop *p, uint64_t seq)
{
    static _Atomic uint64_t salt;
    char buf[48];
    size_t n;
    if (p->rid_prefix[0] == '\0') {
        uint64_t s = atomic_load(&salt);
        if (s == 0) {
            s = ((uint64_t)sdp_mono_ns() * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)getpid() << 32);
            atomic_store(&salt, s | 1);
            s = atomic_load(&salt);
        }
        put_hex(p->rid_prefix, s, 16);
        put_hex(p->rid_prefix + 16, (unsigned)p->loop & 0xff, 2);
    }
    memcpy(buf, p->rid_prefix, 18);
    n = 18 + put_hex(buf + 18, seq, 10);
    if (n >= cap)
        n = cap - 1;
    memcpy(out, buf, n);
    out[n] = '\0';
}

static plw **slot(sdp_loop *p, uint64_t seq)
{
    return &p->buckets[seq % NBUCKETS];
}

/* The waiter number of an engine request id (sdp_i_start() made it with put_dec()). */
static uint64_t seq_of(const char *id, size_t len)
{
    uint64_t v = 0;
    size_t i;
    for (i = 0; i < len && i < 20 && id[i] >= '0' && id[i] <= '9'; i++)
        v = v * 10 + (uint64_t)(id[i] - '0');
    return v;
}

static plw *find_waiter(sdp_loop *p, uint64_t seq, const char *pipeline, int take)
{
    plw **pp;
    for (pp = slot(p, seq); *pp != NULL; pp = &(*pp)->next)
        if ((*pp)->seq == seq && (pipeline == NULL || strcmp((*pp)->pipeline, pipeline) == 0)) {
            plw *w = *pp;
            if (take)
                *pp = w->next;
            return w;
        }
    return NULL;
}

plw *sdp_i_waiter_new(void)
{
    plw *w = sdd_calloc(1, sizeof(*w));
    if (w == NULL)
        return NULL;
    w->xh = w->xh_in;
    w->xh_cap = W_XH_INLINE;
    w->hs = w->hs_in;
    w->hs_cap = W_HS_INLINE;
    return w;
}

void sdp_i_waiter_free(plw *w)
{
    if (w == NULL)
        return;
    if (w->xh != w->xh_in)
        sdd_free(w->xh);
    if (w->hs != w->hs_in)
        sdd_free(w->hs);
    sdd_free(w->err_msg);
    sdd_free(w);
}

/* Room for n more bytes of header strings: NULL when out of memory. A move to a larger
   block carries the headers' pointers along. */
static char *w_room(plw *w, size_t n)
{
    size_t cap, i;
    char *m;
    if (w->hs_cap - w->hs_len >= n)
        return w->hs + w->hs_len;
    cap = w->hs_cap * 2 > w->hs_len + n ? w->hs_cap * 2 : w->hs_len + n;
    m = sdd_malloc(cap);
    if (m == NULL)
        return NULL;
    memcpy(m, w->hs, w->hs_len);
    for (i = 0; i < w->nxh; i++) {
        w->xh[i].name = m + (w->xh[i].name - w->hs);
        w->xh[i].value = m + (w->xh[i].value - w->hs);
    }
    if (w->hs != w->hs_in)
        sdd_free(w->hs);
    w->hs = m;
    w->hs_cap = cap;
    return m + w->hs_len;
}

/* Appends a header (NUL-terminated copies of name and value); -1 when out of memory. */
static int w_add(plw *w, const char *name, size_t nl, const char *value, size_t vl)
{
    char *q;
    if (w->nxh == w->xh_cap) {
        size_t cap = w->xh_cap * 2;
        oh *n = sdd_malloc(cap * sizeof(*n));
        if (n == NULL)
            return -1;
        memcpy(n, w->xh, w->nxh * sizeof(*n));
        if (w->xh != w->xh_in)
            sdd_free(w->xh);
        w->xh = n;
        w->xh_cap = cap;
    }
    q = w_room(w, nl + vl + 2);
    if (q == NULL)
        return -1;
    memcpy(q, name, nl);
    q[nl] = '\0';
    if (vl > 0)
        memcpy(q + nl + 1, value, vl);
    q[nl + 1 + vl] = '\0';
    w->xh[w->nxh++] = (oh){q, nl, q + nl + 1, vl};
    w->hs_len += nl + vl + 2;
    return 0;
}

/* Header i's value becomes its value then v (append) or v alone; the old bytes stay
   behind unused (a waiter lives for one request). */
static void w_set_value(plw *w, size_t i, const char *v, size_t vl, int append)
{
    size_t ol = append ? w->xh[i].value_len : 0;
    char *q;
    if (append && w->xh[i].value + ol + 1 == w->hs + w->hs_len) { /* the last: grows in place */
        if (w_room(w, vl) == NULL)
            return;
        memcpy(w->xh[i].value + ol, v, vl);
        w->xh[i].value[ol + vl] = '\0';
        w->xh[i].value_len = ol + vl;
        w->hs_len += vl;
        return;
    }
    q = w_room(w, ol + vl + 1);
    if (q == NULL)
        return;
    if (ol > 0)
        memcpy(q, w->xh[i].value, ol);
    if (vl > 0)
        memcpy(q + ol, v, vl);
    q[ol + vl] = '\0';
    w->xh[i].value = q;
    w->xh[i].value_len = ol + vl;
    w->hs_len += ol + vl + 1;
}

/*
 * A model's x-* answer header into the waiter's: x-seldon-route values accumulate across
 * steps (as Seldon's gateway does), others take the latest value; x-request-id stays ours.
 */
static void merge_header(plw *w, const char *name, size_t nl, const char *value, size_t vl)
{
    size_t i;
    if (!is_x(name, nl) || name_is(name, nl, "x-request-id"))
        return;
    for (i = 0; i < w->nxh; i++)
        if (w->xh[i].name_len == nl && strncasecmp(w->xh[i].name, name, nl) == 0)
            break;
    if (i < w->nxh) {
        w_set_value(w, i, value, vl, name_is(name, nl, "x-seldon-route"));
        return;
    }
    if (w->nxh < SDP_MAX_XHEADERS)
        w_add(w, name, nl, value, vl);
}

/*
 * The route the host's decision chose (sdp_route.tag), after the steps' values, as
 * seldon-router appends its own to an answer: ":<model>_<v>: :<p>.pipeline:".
 */
static void w_tag(plw *w)
{
    char v[SELDON_ROUTES_NAME_MAX + 16];
    size_t i, n;
    if (!w->tag)
        return;
    w->tag = 0;
    n = (size_t)snprintf(v, sizeof(v), " :%s.pipeline:", w->pipeline);
    if (n >= sizeof(v))
        return;
    for (i = 0; i < w->nxh; i++)
        if (name_is(w->xh[i].name, w->xh[i].name_len, "x-seldon-route"))
            break;
    if (i < w->nxh)
        w_set_value(w, i, v, n, 1);
    else if (w->nxh < SDP_MAX_XHEADERS)
        w_add(w, "x-seldon-route", 14, v + 1, n - 1);
}

static int status_http(const seldon_pipeline_event *ev)
{
    switch (ev->error_kind) {
    case SELDON_PIPELINE_ERR_MODEL:
    case SELDON_PIPELINE_ERR_REVISITS:
    case SELDON_PIPELINE_ERR_BATCH:
        return 400;
    case SELDON_PIPELINE_ERR_TIMEOUT:
        return 504;
    case SELDON_PIPELINE_ERR_OVERFLOW:
    case SELDON_PIPELINE_ERR_UNLOADED:
        return 503;
    default:
        return 500;
    }
}

static int32_t status_grpc(const seldon_pipeline_event *ev)
{
    switch (ev->error_kind) {
    case SELDON_PIPELINE_ERR_MODEL:
    case SELDON_PIPELINE_ERR_REVISITS:
    case SELDON_PIPELINE_ERR_BATCH:
        return 2; /* UNKNOWN, as Seldon's pipeline gateway */
    case SELDON_PIPELINE_ERR_TIMEOUT:
        return 4; /* DEADLINE_EXCEEDED */
    case SELDON_PIPELINE_ERR_OVERFLOW:
    case SELDON_PIPELINE_ERR_UNLOADED:
        return 14; /* UNAVAILABLE */
    default:
        return 13;
    }
}

static void json_error(seldon_buf *b, const char *msg)
{
    size_t i;
    seldon_buf_reserve(b, strlen(msg) * 2 + 16);
    buf_add(b, "{\"error\":\"", 10);
    for (i = 0; msg[i] != '\0'; i++) {
        char c = msg[i];
        if (c == '"' || c == '\\') {
            buf_add(b, "\\", 1);
            buf_add(b, &c, 1);
        } else if ((unsigned char)c < 0x20) {
            char e[8];
            snprintf(e, sizeof(e), "\\u%04x", (unsigned char)c);
            buf_add(b, e, 6);
        } else {
            buf_add(b, &c, 1);
        }
    }
    buf_add(b, "\"}", 2);
}

/* ----------------------------------------------------------------- engine */

static void on_timer(uv_timer_t *t)
{
    sdp_loop *p = t->data;
    p->armed = INT64_MAX;
    seldon_pipeline_engine_advance(p->eng, sdp_mono_ns());
    sdp_i_pump(p);
}

static void arm(sdp_loop *p)
{
    int64_t d = seldon_pipeline_engine_deadline(p->eng), now;
    if (d == p->armed)
        return;
    p->armed = d;
    if (d == INT64_MAX) {
        uv_timer_stop(&p->timer);
        return;
    }
    now = sdp_mono_ns();
    uv_timer_start(&p->timer, on_timer, d > now ? (uint64_t)((d - now + 999999) / 1000000) : 0, 0);
}

static void call_free(sdp_call *c)
{
    if (c->ah != c->ah_in.h)
        sdd_free(c->ah); /* names and values with it */
    sdd_free(c->message);
    sdd_free(c); /* its names with it */
}

static void completion_arrive(sdp_loop *p, sdp_call *c)
{
    c->next = NULL;
    if (p->done_tail != NULL)
        p->done_tail->next = c;
    else
        p->done_head = c;
    p->done_tail = c;
}

static void completion_posted(void *arg)
{
    sdp_call *c = arg;
    completion_arrive(c->p, c);
    sdp_i_pump(c->p);
}

const char *sdp_call_model(const sdp_call *c)
{
    return c->model;
}

const char *sdp_call_pipeline(const sdp_call *c)
{
    return c->pipeline;
}

seldon_msg *sdp_call_msg(sdp_call *c)
{
    return c->msg;
}

seldon_msg *sdp_call_response(sdp_call *c)
{
    return c->resp;
}

size_t sdp_call_headers(const sdp_call *c, const sdp_header **out)
{
    if (c->ev == NULL) {
        *out = NULL;
        return 0;
    }
    *out = (const sdp_header *)c->ev->headers; /* the same layout */
    return c->ev->headers_count;
}

int64_t sdp_call_deadline(const sdp_call *c)
{
    return c->deadline;
}

void sdp_call_set_host(sdp_call *c, void *host)
{
    c->host = host;
}

void *sdp_call_host(const sdp_call *c)
{
    return c->host;
}

void sdp_call_done(sdp_call *c, int32_t status, const char *message, const sdp_header *headers,
                   size_t nheaders)
{
    sdp_loop *p = c->p;
    size_t i;
    c->status = status;
    if (status != 0)
        c->message =
            sdd_strndup(message ? message : "failed", strlen(message ? message : "failed"));
    if (status == 0 && nheaders > 0) {
        /* The x-* ones, array and strings in one block (names and values NUL-terminated):
           inside the call when they fit (a step's x-seldon-route), else one allocation. */
        size_t nx = 0, bytes = 0;
        char *q;
        for (i = 0; i < nheaders && nx < SDP_MAX_XHEADERS; i++)
            if (is_x(headers[i].name, headers[i].name_len)) {
                nx++;
                bytes += headers[i].name_len + headers[i].value_len + 2;
            }
        if (nx > 0 && nx * sizeof(*c->ah) + bytes <= sizeof(c->ah_in))
            c->ah = c->ah_in.h;
        else if (nx > 0)
            c->ah = sdd_malloc(nx * sizeof(*c->ah) + bytes);
        if (c->ah != NULL) {
            q = (char *)(c->ah + nx);
            for (i = 0; i < nheaders && c->nah < nx; i++) {
                oh *h = &c->ah[c->nah];
                if (!is_x(headers[i].name, headers[i].name_len))
                    continue;
                h->name = q;
                h->name_len = headers[i].name_len;
                memcpy(q, headers[i].name, h->name_len);
                q[h->name_len] = '\0';
                q += h->name_len + 1;
                h->value = q;
                h->value_len = headers[i].value_len;
                if (h->value_len > 0)
                    memcpy(q, headers[i].value, h->value_len);
                q[h->value_len] = '\0';
                q += h->value_len + 1;
                c->nah++;
            }
        }
    }
    if (sdl_loops_current(p->s->loops) == p->loop) {
        completion_arrive(p, c);
        if (!p->pumping)
            sdp_i_pump(p);
        return;
    }
    if (sdl_loops_post(p->s->loops, p->loop, completion_posted, c) != 0) {
        /* The loops are stopping: the engine goes with them. */
        seldon_msg_free(c->resp);
        call_free(c);
    }
}

void sdp_call_fail_as(sdp_call *c, int32_t kind, const char *message)
{
    c->as_kind = kind > 0 ? kind : SELDON_PIPELINE_ERR_INTERNAL;
    sdp_call_done(c, SELDON_EINVAL, message, NULL, 0);
}

static void do_call(sdp_loop *p, const seldon_pipeline_event *ev)
{
    /* The call, its model and pipeline names in one block: one allocation per step. */
    size_t ml = strlen(ev->model), pl = strlen(ev->pipeline);
    sdp_call *c = sdd_calloc(1, sizeof(*c) + ml + pl + 2);
    plw *w;
    int rc;
    if (c == NULL) {
        seldon_pipeline_engine_fail(p->eng, ev->call_id, "out of memory", sdp_mono_ns());
        return;
    }
    c->p = p;
    c->call_id = ev->call_id;
    c->seq = seq_of(ev->request_id, ev->request_id_len);
    c->model = (char *)(c + 1);
    memcpy(c->model, ev->model, ml + 1);
    c->pipeline = c->model + ml + 1;
    memcpy(c->pipeline, ev->pipeline, pl + 1);
    c->msg = (seldon_msg *)(uintptr_t)ev->msg;
    c->resp = seldon_pipeline_engine_msg(p->eng, SELDON_MSG_RESPONSE);
    w = find_waiter(p, c->seq, NULL, 0);
    c->deadline = w != NULL ? w->deadline : 0;
    if (c->resp == NULL) {
        seldon_msg_free(c->resp);
        c->resp = NULL;
        c->status = SELDON_ENOMEM;
        c->message = sdd_strndup("out of memory", 13);
        completion_arrive(p, c);
        return;
    }
    c->ev = ev;
    rc = p->s->hooks.call(p->s->ud, c);
    c->ev = NULL;
    if (rc != 0) {
        const char *why = seldon_last_error();
        seldon_msg_free(c->resp);
        c->resp = NULL;
        c->status = rc;
        c->message = sdd_strndup(why, strlen(why));
        completion_arrive(p, c);
    }
}

static void reply_rest(sdp_loop *p, plw *w, int status, seldon_buf *body, size_t json_len)
{
    sdh_header h[SDP_MAX_XHEADERS + 3];
    size_t n = 0, i;
    char jl[32];
    for (i = 0; i < w->nxh && n < SDP_MAX_XHEADERS; i++)
        h[n++] = (sdh_header){w->xh[i].name, w->xh[i].name_len, w->xh[i].value, w->xh[i].value_len};
    h[n++] = (sdh_header){"content-type", 12, "application/json", 16};
    if (json_len > 0 && json_len < body->len) {
        snprintf(jl, sizeof(jl), "%zu", json_len);
        h[n - 1].value = "application/octet-stream";
        h[n - 1].value_len = 24;
        h[n++] = (sdh_header){"inference-header-content-length", 31, jl, strlen(jl)};
    }
    sdp_i_count(p->s, "rest", status);
    sdh_respond(w->req, status, h, n, body);
}

static void finish(sdp_loop *p, const seldon_pipeline_event *ev0)
{
    plw *w = find_waiter(p, seq_of(ev0->request_id, ev0->request_id_len), ev0->pipeline, 1);
    seldon_buf body = SELDON_BUF_INIT;
    size_t json_len = 0, i;
    int status = 200;
    seldon_pipeline_event own;
    const seldon_pipeline_event *ev = ev0;
    if (w != NULL && w->err_msg != NULL && ev0->kind != SELDON_PIPELINE_EVENT_OUTPUT &&
        ev0->error_kind != SELDON_PIPELINE_ERR_TIMEOUT) {
        /* The host's error (sdp_call_fail_as), as it gave it. */
        own = *ev0;
        own.error_kind = w->err_kind;
        own.error = w->err_msg;
        ev = &own;
    }
    if (w != NULL && w->kind == W_DROP) { /* a mirror copy: its answer is dropped */
        atomic_fetch_sub_explicit(&mirrors_in_flight, 1, memory_order_relaxed);
        sdp_i_waiter_free(w);
        return;
    }
    if (w != NULL)
        w_tag(w);
    if (w == NULL) {
        /*
         * A chained pipeline's answer (another pipeline's request fed it): kept in the
         * results store under its pipeline and the request's x-request-id, for
         * GET /v2/pipelines/<p>/requests/<id>.
         */
        w = sdp_i_waiter_new();
        if (w == NULL)
            return;
        w->kind = W_ASYNC;
        snprintf(w->pipeline, sizeof(w->pipeline), "%s", ev->pipeline);
        for (i = 0; i < ev->headers_count; i++)
            if (name_is(ev->headers[i].name, ev->headers[i].name_len, "x-request-id") &&
                ev->headers[i].value_len < sizeof(w->rid))
                snprintf(w->rid, sizeof(w->rid), "%.*s", (int)ev->headers[i].value_len,
                         ev->headers[i].value);
        if (w->rid[0] == '\0' || (async_add(p->s, w->pipeline, w->rid, 1) != 0 &&
                                  seldon_last_error_code() != SELDON_EEXIST)) {
            sdp_i_waiter_free(w);
            return;
        }
    }
    if (ev->kind == SELDON_PIPELINE_EVENT_OUTPUT) {
        seldon_msg *m = (seldon_msg *)(uintptr_t)ev->msg; /* the engine's answer, ours to finish */
        seldon_msg_set_id(m, w->rid, strlen(w->rid));
        seldon_msg_set_model(m, w->pipeline, strlen(w->pipeline), NULL, 0);
        if (w->kind == W_GRPC || w->kind == W_STREAM) {
            int32_t gs = 0;
            const char *why = NULL;
            if (seldon_msg_encode_pb(&body, m, 0) != 0) {
                gs = 13;
                why = seldon_last_error();
            }
            if (w->kind == W_STREAM) {
                sdp_i_scall_answer(w->sc, w, gs, why, &body);
            } else {
                sdp_header xs[SDP_MAX_XHEADERS];
                for (i = 0; i < w->nxh; i++)
                    xs[i] = (sdp_header){w->xh[i].name, w->xh[i].name_len, w->xh[i].value,
                                         w->xh[i].value_len};
                p->s->hooks.grpc_answer(w->ctx, gs, why, gs == 0 ? &body : NULL, xs, w->nxh);
            }
            seldon_buf_free(&body);
            sdp_i_waiter_free(w);
            return;
        }
        if (seldon_msg_encode_json(&body, &json_len, m, 0) != 0) {
            status = 500;
            body.len = 0;
            json_error(&body, seldon_last_error());
            json_len = 0;
        }
    } else {
        if (w->kind == W_STREAM) {
            sdp_i_scall_answer(w->sc, w, status_grpc(ev), ev->error, NULL);
            sdp_i_waiter_free(w);
            return;
        }
        if (w->kind == W_GRPC) {
            sdp_header xs[SDP_MAX_XHEADERS];
            for (i = 0; i < w->nxh; i++)
                xs[i] = (sdp_header){w->xh[i].name, w->xh[i].name_len, w->xh[i].value,
                                     w->xh[i].value_len};
            p->s->hooks.grpc_answer(w->ctx, status_grpc(ev), ev->error, NULL, xs, w->nxh);
            sdp_i_waiter_free(w);
            return;
        }
        status = status_http(ev);
        json_error(&body, ev->error);
    }
    if (w->kind == W_ASYNC) {
        async_finish(p->s, w->pipeline, w->rid, status, &body);
        sdp_i_count(p->s, "async", status);
        sdp_i_waiter_free(w);
        return;
    }
    reply_rest(p, w, status, &body, json_len);
    seldon_buf_free(&body);
    sdp_i_waiter_free(w);
}

void sdp_i_pump(sdp_loop *p)
{
    seldon_pipeline_event ev;
    int64_t now;
    if (p->pumping)
        return;
    p->pumping = 1;
    for (;;) {
        sdp_call *c, *next;
        while (seldon_pipeline_engine_poll(&ev, p->eng) == 1) {
            if (ev.kind == SELDON_PIPELINE_EVENT_CALL)
                do_call(p, &ev);
            else
                finish(p, &ev);
        }
        if (p->done_head == NULL)
            break;
        c = p->done_head;
        p->done_head = p->done_tail = NULL;
        /* Timeouts due first: a step that failed because its request's time ran out
           (its call carried that deadline) ends the request as a timeout. One clock read
           for the answers that arrived together. */
        now = sdp_mono_ns();
        if (seldon_pipeline_engine_deadline(p->eng) <= now)
            seldon_pipeline_engine_advance(p->eng, now);
        for (; c != NULL; c = next) {
            next = c->next;
            if (c->nah > 0) {
                plw *w = find_waiter(p, c->seq, c->pipeline, 0);
                size_t i;
                for (i = 0; w != NULL && i < c->nah; i++)
                    merge_header(w, c->ah[i].name, c->ah[i].name_len, c->ah[i].value,
                                 c->ah[i].value_len);
            }
            if (c->status == 0) {
                seldon_pipeline_engine_answer(p->eng, c->call_id, c->resp, now);
            } else {
                if (c->as_kind > 0) {
                    plw *w = find_waiter(p, c->seq, c->pipeline, 0);
                    if (w != NULL && w->err_msg == NULL) {
                        w->err_kind = c->as_kind;
                        w->err_msg = sdd_strndup(c->message ? c->message : "failed",
                                                 strlen(c->message ? c->message : "failed"));
                    }
                }
                seldon_msg_free(c->resp);
                seldon_pipeline_engine_fail(p->eng, c->call_id, c->message ? c->message : "failed",
                                            now);
            }
            call_free(c);
        }
    }
    p->pumping = 0;
    arm(p);
}

/* -------------------------------------------------------------- requests */

/*
 * Starts a request on the current loop's engine: inputs (taken) with a waiter w (taken;
 * its kind and answer set). The waiter's pipeline, rid and headers are filled here.
 */
int sdp_i_start(sdp *s, plw *w, const plreq *q, seldon_msg *inputs)
{
    sdp_loop *p = sdp_i_cur(s);
    seldon_pipeline_header hs[SDP_MAX_XHEADERS + 1];
    char id[24];
    size_t n = 0, i, plen, idlen;
    int64_t tmo, now;
    int rc;
    if (p == NULL) {
        seldon_msg_free(inputs);
        sdp_i_waiter_free(w);
        return sdd_error(SELDON_EINTERNAL, "not on an ingress loop");
    }
    w->seq = ++p->seq;
    w->tag = q->tag;
    plen = q->pipeline_len < sizeof(w->pipeline) ? q->pipeline_len : sizeof(w->pipeline) - 1;
    memcpy(w->pipeline, q->pipeline, plen);
    w->pipeline[plen] = '\0';
    for (i = 0; i < q->nheaders; i++)
        if (name_is(q->headers[i].name, q->headers[i].name_len, "x-request-id") &&
            q->headers[i].value_len > 0 && q->headers[i].value_len < sizeof(w->rid)) {
            memcpy(w->rid, q->headers[i].value, q->headers[i].value_len);
            w->rid[q->headers[i].value_len] = '\0';
        }
    if (w->rid[0] == '\0')
        new_rid(w->rid, sizeof(w->rid), p, w->seq);
    if (w_add(w, "x-request-id", 12, w->rid, strlen(w->rid)) != 0) {
        seldon_msg_free(inputs);
        sdp_i_waiter_free(w);
        return sdd_error(SELDON_ENOMEM, "out of memory");
    }
    for (i = 0; i < q->nheaders && w->nxh < SDP_MAX_XHEADERS; i++) {
        if (!is_x(q->headers[i].name, q->headers[i].name_len) ||
            name_is(q->headers[i].name, q->headers[i].name_len, "x-request-id"))
            continue;
        if (name_is(q->headers[i].name, q->headers[i].name_len, "x-seldon-route")) {
            if (n >= SDP_MAX_XHEADERS)
                continue;
            /* A sticky session's routes go to the steps; the answer says this request's. */
            hs[n++] = (seldon_pipeline_header){q->headers[i].name, q->headers[i].name_len,
                                               q->headers[i].value, q->headers[i].value_len};
            continue;
        }
        w_add(w, q->headers[i].name, q->headers[i].name_len, q->headers[i].value,
              q->headers[i].value_len);
    }
    for (i = 0; i < w->nxh && n < SDP_MAX_XHEADERS; i++)
        hs[n++] = (seldon_pipeline_header){w->xh[i].name, w->xh[i].name_len, w->xh[i].value,
                                           w->xh[i].value_len};
    idlen = put_dec(id, w->seq);
    if (w->kind == W_ASYNC) {
        rc = async_add(s, w->pipeline, w->rid, 0);
        if (rc != 0) {
            seldon_msg_free(inputs);
            sdp_i_waiter_free(w);
            return rc;
        }
    }
    /* The deadline the engine applies (the request's, the pipeline's spec.timeoutMs, the
       default), for the step calls to carry. */
    tmo = q->timeout_ms;
    if (tmo <= 0) {
        const seldon_pipeline *pl =
            q->pl != NULL ? q->pl : sdp_i_find_pipeline(s, w->pipeline, strlen(w->pipeline));
        tmo = pl != NULL ? seldon_pipeline_timeout_ms(pl) : 0;
    }
    if (tmo <= 0)
        tmo = (int64_t)s->cfg.timeout_ms;
    now = sdp_mono_ns();
    w->deadline = tmo > 0 ? now + tmo * 1000000 : 0;
    rc = seldon_pipeline_engine_push(p->eng, w->pipeline, id, idlen, hs, n, inputs, q->timeout_ms,
                                     now);
    if (rc != 0) {
        if (w->kind == W_ASYNC) /* its place in the store goes with it */
            async_drop(s, w->pipeline, w->rid);
        sdp_i_waiter_free(w);
        return rc;
    }
    /* Pipelines reading this one answer later under the same id: their results are
       announced now, so that a GET before they end says 202 rather than 404. */
    for (i = 0; i < p->npls; i++) {
        size_t d;
        for (d = 0; d < seldon_pipeline_dependency_count(p->pls[i]); d++)
            if (strcmp(seldon_pipeline_dependency(p->pls[i], d), w->pipeline) == 0) {
                async_add(s, seldon_pipeline_name(p->pls[i]), w->rid, 1);
                break;
            }
    }
    w->next = *slot(p, w->seq);
    *slot(p, w->seq) = w;
    sdp_i_pump(p);
    return 0;
}

/*
 * A mirror copy of request q: the same inputs (in, a second decode of the caller's bytes,
 * taken) and x-* headers but its own x-request-id, to pipeline route->mirror, its answer
 * dropped (W_DROP). Nothing of the caller's waits on it; past MIRRORS_MAX copies in flight,
 * or when the mirror is not served here, the request gets no copy (logged at debug).
 */
static void mirror_start(sdp *s, const plreq *q, const sdp_route *route, seldon_msg *in)
{
    sdp_header xs[SDP_MAX_XHEADERS];
    plreq mq;
    plw *w;
    size_t i;
    memset(&mq, 0, sizeof(mq));
    mq.pipeline = route->mirror;
    mq.pipeline_len = route->mirror_len;
    mq.pl = sdp_i_find_pipeline(s, route->mirror, route->mirror_len);
    mq.timeout_ms = q->timeout_ms;
    mq.headers = xs;
    for (i = 0; i < q->nheaders && mq.nheaders < SDP_MAX_XHEADERS; i++)
        if (!name_is(q->headers[i].name, q->headers[i].name_len, "x-request-id"))
            xs[mq.nheaders++] = q->headers[i];
    if (mq.pl == NULL) {
        sdd_log(SELDON_LOG_DEBUG, "mirror copy skipped: pipeline \"%.*s\" not found",
                (int)(route->mirror_len > 200 ? 200 : route->mirror_len), route->mirror);
        seldon_msg_free(in);
        atomic_fetch_sub_explicit(&mirrors_in_flight, 1, memory_order_relaxed);
        return;
    }
    w = sdp_i_waiter_new();
    if (w == NULL) {
        seldon_msg_free(in);
        atomic_fetch_sub_explicit(&mirrors_in_flight, 1, memory_order_relaxed);
        return;
    }
    w->kind = W_DROP;
    if (sdp_i_start(s, w, &mq, in) != 0) { /* sdp_i_start() freed in and w */
        sdd_log(SELDON_LOG_DEBUG, "mirror copy to %.*s: %s",
                (int)(route->mirror_len > 200 ? 200 : route->mirror_len), route->mirror,
                seldon_last_error());
        atomic_fetch_sub_explicit(&mirrors_in_flight, 1, memory_order_relaxed);
    }
}

/* A copy slot for route's mirror, or 0 (no mirror, or MIRRORS_MAX copies in flight). */
static int mirror_take(const sdp_route *route)
{
    if (route == NULL || route->mirror == NULL || route->mirror_len == 0 ||
        route->mirror_len > SELDON_ROUTES_NAME_MAX)
        return 0;
    if (atomic_fetch_add_explicit(&mirrors_in_flight, 1, memory_order_relaxed) < MIRRORS_MAX)
        return 1;
    atomic_fetch_sub_explicit(&mirrors_in_flight, 1, memory_order_relaxed);
    sdd_log(SELDON_LOG_DEBUG, "mirror copy skipped: %d copies in flight", MIRRORS_MAX);
    return 0;
}

/* The copy of a decoded request: decoded again from the caller's bytes (json_len 0: pb). */
void sdp_i_mirror_bytes(sdp *s, const plreq *q, const sdp_route *route, const uint8_t *data,
                        size_t len, int json, size_t json_len)
{
    sdp_loop *p = sdp_i_cur(s);
    seldon_msg *in;
    if (!mirror_take(route))
        return;
    in = p != NULL ? seldon_pipeline_engine_msg(p->eng, SELDON_MSG_REQUEST) : NULL;
    if (in == NULL || (json ? seldon_msg_decode_json(in, data, len, json_len, 0)
                            : seldon_msg_decode_pb(in, data, len, 0)) != 0) {
        seldon_msg_free(in);
        atomic_fetch_sub_explicit(&mirrors_in_flight, 1, memory_order_relaxed);
        return;
    }
    mirror_start(s, q, route, in);
}

/* A number of milliseconds; -1 when malformed. */
int64_t sdp_i_parse_ms(const char *v, size_t len)
{
    int64_t x = 0;
    size_t i;
    for (i = 0; i < len && v[i] >= '0' && v[i] <= '9' && x < INT64_MAX / 100; i++)
        x = x * 10 + (v[i] - '0');
    return i == len && len > 0 ? x : -1;
}

static void rest_err(sdp *s, sdh_req *req, int status, const char *msg)
{
    sdp_i_count(s, "rest", status);
    sdh_respond_error(req, status, msg);
}

static int has_suffix(const char *p, size_t len, const char *sfx)
{
    size_t n = strlen(sfx);
    return len >= n && memcmp(p + len - n, sfx, n) == 0;
}

/* The ready state the control side gave for name (-1: none); why (when not NULL) gets its reason. */
static int32_t ready_given(sdp *s, const char *name, char *why, size_t why_size)
{
    size_t i;
    int32_t r = -1;
    pthread_mutex_lock(&s->ready_mu);
    for (i = 0; i < s->nready; i++)
        if (strcmp(s->ready[i].name, name) == 0) {
            r = s->ready[i].ready;
            if (why != NULL && s->ready[i].why[0] != '\0')
                snprintf(why, why_size, "%s", s->ready[i].why);
            break;
        }
    pthread_mutex_unlock(&s->ready_mu);
    return r;
}

/* 1 when the pipeline can answer: the scheduler says so, or every step's model is available. */
int sdp_i_pipeline_ready(sdp *s, const seldon_pipeline *pl, int depth)
{
    size_t i, n = seldon_pipeline_step_count(pl);
    int32_t given = ready_given(s, seldon_pipeline_name(pl), NULL, 0);
    if (given >= 0)
        return given;
    if (depth > 64)
        return 0;
    for (i = 0; i < n; i++) {
        const char *m = seldon_pipeline_step_name(pl, i);
        if (s->hooks.model_available != NULL && !s->hooks.model_available(s->ud, m))
            return 0;
    }
    for (i = 0; i < seldon_pipeline_dependency_count(pl); i++) {
        const char *d = seldon_pipeline_dependency(pl, i);
        const seldon_pipeline *dp = sdp_i_find_pipeline(s, d, strlen(d));
        if (dp == NULL || !sdp_i_pipeline_ready(s, dp, depth + 1))
            return 0;
    }
    return 1;
}

static void rest_result(sdp *s, sdh_req *req, const sdh_request *r, const seldon_pipeline *pl,
                        const char *id, size_t idlen)
{
    async_entry *e;
    seldon_buf body = SELDON_BUF_INIT;
    int status;
    char msg[300];
    sdh_header h = {"content-type", 12, "application/json", 16};
    pthread_mutex_lock(&s->async_mu);
    async_expire(s, sdp_mono_ns());
    e = async_find(s, seldon_pipeline_name(pl), id, idlen);
    if (e == NULL) {
        pthread_mutex_unlock(&s->async_mu);
        if (s->hooks.async_miss != NULL &&
            s->hooks.async_miss(s->ud, req, r, seldon_pipeline_name(pl), id, idlen))
            return;
        snprintf(msg, sizeof(msg), "request \"%.*s\" of pipeline \"%s\" not found or expired",
                 (int)(idlen > 100 ? 100 : idlen), id, seldon_pipeline_name(pl));
        rest_err(s, req, 404, msg);
        return;
    }
    if (!e->done) {
        status = 202;
        snprintf(msg, sizeof(msg), "{\"id\":\"%s\",\"status\":\"pending\"}", e->id);
        buf_add(&body, msg, strlen(msg));
    } else {
        status = e->status;
        buf_add(&body, e->body.data, e->body.len);
    }
    pthread_mutex_unlock(&s->async_mu);
    sdp_i_count(s, "rest", status);
    sdh_respond(req, status, &h, 1, &body);
    seldon_buf_free(&body);
}

void sdp_rest(sdp *s, sdh_req *req, const sdh_request *r, const char *name, size_t name_len)
{
    sdp_rest_routed(s, req, r, name, name_len, NULL);
}

void sdp_rest_routed(sdp *s, sdh_req *req, const sdh_request *r, const char *name, size_t name_len,
                     const sdp_route *route)
{
    const seldon_pipeline *pl = sdp_i_find_pipeline(s, name, name_len);
    const char *async_h, *tmo, *jl;
    size_t alen = 0, tlen = 0, jlen = 0, i, nx = 0;
    sdp_header xs[SDP_MAX_XHEADERS];
    char msg[400];
    seldon_msg *in;
    plreq q;
    plw *w;
    int rc, is_async = 0;
    int64_t jv;

    if (pl == NULL) {
        snprintf(msg, sizeof(msg), "pipeline \"%.*s\" not found",
                 (int)(name_len > 200 ? 200 : name_len), name);
        rest_err(s, req, 404, msg);
        return;
    }
    /* /v2/pipelines/<p>/ready and /requests/<id> */
    if (r->path_len > 14 && memcmp(r->path, "/v2/pipelines/", 14) == 0 &&
        has_suffix(r->path, r->path_len, "/ready")) {
        int ok = sdp_i_pipeline_ready(s, pl, 0);
        sdp_i_count(s, "rest", ok ? 200 : 424);
        if (ok) {
            sdh_respond(req, 200, NULL, 0, NULL);
        } else {
            char why[sizeof(((ready_ent *)0)->why)] = "a model it needs is not available";
            ready_given(s, seldon_pipeline_name(pl), why, sizeof(why));
            snprintf(msg, sizeof(msg), "pipeline is not ready: %s", why);
            sdh_respond_error(req, 424, msg);
        }
        return;
    }
    if (r->path_len > 14 && memcmp(r->path, "/v2/pipelines/", 14) == 0 &&
        r->path_len >= 14 + name_len) {
        const char *rq = r->path + 14 + name_len;
        size_t rqlen = r->path_len - 14 - name_len;
        if (rqlen > 10 && memcmp(rq, "/requests/", 10) == 0) {
            rest_result(s, req, r, pl, rq + 10, rqlen - 10);
            return;
        }
    }
    if (!has_suffix(r->path, r->path_len, "/infer")) {
        rest_err(s, req, 404, "pipelines answer /infer, /ready and /requests/<id>");
        return;
    }
    if (r->method_len != 4 || memcmp(r->method, "POST", 4) != 0) {
        rest_err(s, req, 405, "use POST for infer");
        return;
    }
    async_h = sdh_request_header(r, "seldon-async", &alen);
    if ((async_h != NULL && alen == 4 && memcmp(async_h, "true", 4) == 0) ||
        (r->query != NULL && r->query_len >= 10 &&
         memmem(r->query, r->query_len, "async=true", 10) != NULL))
        is_async = 1;
    tmo = sdh_request_header(r, "seldon-timeout-ms", &tlen);
    jl = sdh_request_header(r, "inference-header-content-length", &jlen);
    memset(&q, 0, sizeof(q));
    q.pipeline = name;
    q.pipeline_len = name_len;
    q.tag = route != NULL && route->tag;
    if (tmo != NULL) {
        q.timeout_ms = sdp_i_parse_ms(tmo, tlen);
        if (q.timeout_ms <= 0) {
            rest_err(s, req, 400, "seldon-timeout-ms: expected a positive number of milliseconds");
            return;
        }
    }
    for (i = 0; i < r->nheaders && nx < SDP_MAX_XHEADERS; i++)
        if (is_x(r->headers[i].name, r->headers[i].name_len))
            xs[nx++] = (sdp_header){r->headers[i].name, r->headers[i].name_len, r->headers[i].value,
                                    r->headers[i].value_len};
    q.headers = xs;
    q.nheaders = nx;
    in = seldon_pipeline_engine_msg(sdp_i_cur(s)->eng, SELDON_MSG_REQUEST);
    if (in == NULL) {
        rest_err(s, req, 500, "out of memory");
        return;
    }
    jv = jl != NULL ? sdp_i_parse_ms(jl, jlen) : 0;
    rc = seldon_msg_decode_json(in, r->body, r->body_len, jv > 0 ? (size_t)jv : 0, 0);
    if (rc != 0) {
        seldon_msg_free(in);
        rest_err(s, req, 400, seldon_last_error());
        return;
    }
    /* REST's copy starts first: the caller's answer may come (and r go) within sdp_i_start().
       Either way nothing of the caller's waits on it (its steps run beside the caller's). */
    sdp_i_mirror_bytes(s, &q, route, r->body, r->body_len, 1, jv > 0 ? (size_t)jv : 0);
    w = sdp_i_waiter_new();
    if (w == NULL) {
        seldon_msg_free(in);
        rest_err(s, req, 500, "out of memory");
        return;
    }
    w->kind = is_async ? W_ASYNC : W_REST;
    w->req = is_async ? NULL : req;
    if (is_async) {
        char ridbuf[80], pname[SELDON_ROUTES_NAME_MAX + 1];
        seldon_buf body = SELDON_BUF_INIT;
        sdh_header h[2] = {{"content-type", 12, "application/json", 16},
                           {"x-request-id", 12, ridbuf, 0}};
        /* sdp_i_start() may finish (and free) w at once: what the answer needs is kept first. */
        snprintf(pname, sizeof(pname), "%.*s", (int)name_len, name);
        ridbuf[0] = '\0';
        for (i = 0; i < nx; i++)
            if (name_is(xs[i].name, xs[i].name_len, "x-request-id") && xs[i].value_len > 0 &&
                xs[i].value_len < sizeof(ridbuf))
                snprintf(ridbuf, sizeof(ridbuf), "%.*s", (int)xs[i].value_len, xs[i].value);
        if (ridbuf[0] == '\0') { /* the id sdp_i_start() would make: chosen here */
            sdp_loop *p = sdp_i_cur(s);
            new_rid(ridbuf, sizeof(ridbuf), p, p->seq + 1);
            if (nx < SDP_MAX_XHEADERS)
                xs[nx++] = (sdp_header){"x-request-id", 12, ridbuf, strlen(ridbuf)};
            q.nheaders = nx;
        }
        rc = sdp_i_start(s, w, &q, in);
        if (rc != 0) {
            rest_err(s, req,
                     rc == SELDON_ETOOBIG  ? 503
                     : rc == SELDON_EEXIST ? 409
                                           : 500,
                     seldon_last_error());
            return;
        }
        h[1].value_len = strlen(ridbuf);
        snprintf(msg, sizeof(msg), "{\"id\":\"%.80s\",\"pipeline\":\"%.200s\"}", ridbuf, pname);
        buf_add(&body, msg, strlen(msg));
        sdp_i_count(s, "rest", 202);
        sdh_respond(req, 202, h, 2, &body);
        seldon_buf_free(&body);
        return;
    }
    rc = sdp_i_start(s, w, &q, in);
    if (rc != 0)
        rest_err(s, req, rc == SELDON_ENOTFOUND ? 404 : 500, seldon_last_error());
}
