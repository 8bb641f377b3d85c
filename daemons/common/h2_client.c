/*
 * The h2c client: per-upstream pools of prior-knowledge connections on one
 * loop, request deadlines on one timer (a min-heap of streams).
 */
#include <stdio.h>
#include <string.h>

#include "h2_internal.h"
#include "sdd.h"

struct sd2_upstream {
    sd2_client *cl;
    sd2_upstream *next;
    struct sockaddr_storage addr;
    char host[64];
    int port;
    sd2_conn *conns;
    size_t nconns;
};

struct sd2_client {
    sd2_owner o; /* first: the connections point at it */
    uv_timer_t timer;
    sd2_stream **heap;
    size_t hn, hcap;
    uint64_t armed; /* due time the timer is set for; 0: none */
    sd2_upstream *ups;
    void (*done)(void *);
    void *done_data;
    int handles;
};

/* --- Deadlines ------------------------------------------------------------------------ */

static void heap_swap(sd2_client *cl, size_t a, size_t b)
{
    sd2_stream *t = cl->heap[a];
    cl->heap[a] = cl->heap[b];
    cl->heap[b] = t;
    cl->heap[a]->heap_idx = a;
    cl->heap[b]->heap_idx = b;
}

static void heap_up(sd2_client *cl, size_t i)
{
    while (i > 0 && cl->heap[(i - 1) / 2]->due_ms > cl->heap[i]->due_ms) {
        heap_swap(cl, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void heap_down(sd2_client *cl, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < cl->hn && cl->heap[l]->due_ms < cl->heap[m]->due_ms)
            m = l;
        if (r < cl->hn && cl->heap[r]->due_ms < cl->heap[m]->due_ms)
            m = r;
        if (m == i)
            return;
        heap_swap(cl, i, m);
        i = m;
    }
}

static void on_deadline(uv_timer_t *t);

static void timer_arm(sd2_client *cl)
{
    uint64_t now, due;
    if (cl->hn == 0) {
        if (cl->armed) {
            uv_timer_stop(&cl->timer);
            cl->armed = 0;
        }
        return;
    }
    due = cl->heap[0]->due_ms;
    if (cl->armed == due)
        return;
    now = uv_now(cl->o.loop);
    uv_timer_start(&cl->timer, on_deadline, due > now ? due - now : 0, 0);
    cl->armed = due;
}

static int heap_add(sd2_client *cl, sd2_stream *s)
{
    if (cl->hn == cl->hcap) {
        size_t cap = cl->hcap ? cl->hcap * 2 : 64;
        sd2_stream **h = sdd_realloc(cl->heap, cap * sizeof(*h));
        if (h == NULL)
            return -1;
        cl->heap = h;
        cl->hcap = cap;
    }
    s->heap_idx = cl->hn;
    cl->heap[cl->hn++] = s;
    heap_up(cl, s->heap_idx);
    timer_arm(cl);
    return 0;
}

void sd2_client_unheap(sd2_stream *s)
{
    sd2_client *cl = (sd2_client *)s->conn->owner;
    size_t i = s->heap_idx;
    if (i == SIZE_MAX)
        return;
    s->heap_idx = SIZE_MAX;
    cl->hn--;
    if (i != cl->hn) {
        cl->heap[i] = cl->heap[cl->hn];
        cl->heap[i]->heap_idx = i;
        heap_up(cl, i);
        heap_down(cl, cl->heap[i]->heap_idx);
    }
    timer_arm(cl);
}

static void on_deadline(uv_timer_t *t)
{
    sd2_client *cl = t->data;
    uint64_t now = uv_now(cl->o.loop);
    cl->armed = 0;
    while (cl->hn > 0 && cl->heap[0]->due_ms <= now) {
        sd2_stream *s = cl->heap[0];
        sd2_client_unheap(s);
        if (!s->err_set)
            s->err_set = SD2_ETIMEOUT;
        if (!s->reset_local && !s->conn->dead) {
            s->reset_local = 1;
            nghttp2_submit_rst_stream(s->conn->ses, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
            sd2_conn_mark(s->conn);
        }
    }
    timer_arm(cl);
}

/* --- Connections ----------------------------------------------------------------------- */

static void cl_conn_gone(sd2_owner *o, sd2_conn *c)
{
    sd2_upstream *u = c->up;
    (void)o;
    if (u == NULL)
        return;
    if (c->uprev)
        c->uprev->unext = c->unext;
    else
        u->conns = c->unext;
    if (c->unext)
        c->unext->uprev = c->uprev;
    u->nconns--;
    c->up = NULL;
}

static void on_connect_timeout(uv_timer_t *t)
{
    sd2_conn *c = t->data;
    sdd_log(SELDON_LOG_DEBUG, "h2 client: connect to %s:%d timed out", c->up ? c->up->host : "?",
            c->up ? c->up->port : 0);
    sd2_conn_fail(c, SD2_ECONNTIMEOUT);
}

static void on_connected(uv_connect_t *req, int status)
{
    sd2_conn *c = req->data;
    if (c->dead)
        return;
    uv_timer_stop(&c->ctimer);
    if (status < 0) {
        sdd_log(SELDON_LOG_DEBUG, "h2 client: connect to %s:%d: %s", c->up ? c->up->host : "?",
                c->up ? c->up->port : 0, uv_strerror(status));
        sd2_conn_fail(c, status == UV_ECONNREFUSED ? SD2_EREFUSED : SD2_ECONNECT);
        return;
    }
    c->connected = 1;
    uv_tcp_nodelay(&c->tcp, 1);
    if (sd2_conn_start_read(c) < 0) {
        sd2_conn_fail(c, SD2_ECONNECT);
        return;
    }
    sd2_conn_flush(c);
}

static sd2_conn *conn_new(sd2_upstream *u)
{
    sd2_client *cl = u->cl;
    sd2_conn *c = sdd_calloc(1, sizeof(*c));
    int rv;
    if (c == NULL)
        return NULL;
    c->owner = &cl->o;
    c->up = u;
    c->own_tcp = 1;
    if (sd2_conn_session(c) < 0) {
        sdd_free(c);
        return NULL;
    }
    uv_tcp_init(cl->o.loop, &c->tcp);
    uv_timer_init(cl->o.loop, &c->ctimer);
    c->timer_on = 1;
    c->tcp.data = c;
    c->ctimer.data = c;
    c->stream = (uv_stream_t *)&c->tcp;
    c->creq.data = c;
    sd2_conn_link(c);
    c->uprev = NULL;
    c->unext = u->conns;
    if (u->conns)
        u->conns->uprev = c;
    u->conns = c;
    u->nconns++;
    rv = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&u->addr, on_connected);
    if (rv < 0) {
        /* Reported through the streams once they are attached: fail at the next turn. */
        c->failing = 1;
        c->fail_err = rv == UV_ECONNREFUSED ? SD2_EREFUSED : SD2_ECONNECT;
        sd2_conn_mark(c);
        return c;
    }
    uv_timer_start(&c->ctimer, on_connect_timeout, cl->o.opts.connect_timeout_ms, 0);
    return c;
}

static uint32_t conn_limit(const sd2_conn *c)
{
    uint32_t lim = c->owner->opts.max_concurrent_streams;
    uint32_t peer =
        nghttp2_session_get_remote_settings(c->ses, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
    return peer < lim ? peer : lim;
}

static int conn_usable(const sd2_conn *c)
{
    return !c->dead && !c->failing && !c->goaway_recv && c->ses != NULL &&
           nghttp2_session_check_request_allowed(c->ses);
}

static sd2_conn *pick(sd2_upstream *u)
{
    sd2_conn *c, *least = NULL;
    size_t live = 0;
    for (c = u->conns; c != NULL; c = c->unext) {
        if (!conn_usable(c))
            continue;
        live++;
        if (c->nstreams < conn_limit(c))
            return c;
        if (least == NULL || c->nstreams < least->nstreams)
            least = c;
    }
    if (live < u->cl->o.opts.max_conns_per_upstream || least == NULL)
        return conn_new(u);
    return least; /* nghttp2 holds the stream until one closes */
}

int sd2_request(sd2_stream **out, sd2_upstream *u, const sd2_header *h, size_t n, int end,
                const sd2_stream_cbs *cbs, void *user_data, uint64_t timeout_ms)
{
    sd2_client *cl = u->cl;
    nghttp2_data_provider prd = sd2_provider_template;
    nghttp2_nv *nv;
    sd2_stream *s;
    int oom;
    sd2_conn *c;
    int32_t id;
    *out = NULL;
    if (cl->o.closing)
        return SD2_ECANCELED;
    c = pick(u);
    if (c == NULL)
        return SD2_ENOMEM;
    s = sd2_stream_alloc(c);
    if (s == NULL)
        return SD2_ENOMEM;
    if ((nv = sd2_keep_block(s, h, n, &oom)) == NULL && oom) {
        sd2_stream_free(s);
        return SD2_ENOMEM;
    }
    prd.source.ptr = s;
    id = nghttp2_submit_request(c->ses, NULL, nv, n, end ? NULL : &prd, s);
    if (id < 0) {
        sd2_stream_free(s);
        return id == NGHTTP2_ERR_NOMEM ? SD2_ENOMEM : SD2_EPROTO;
    }
    s->id = id;
    if (end) {
        s->local_end = 1;
        s->end_submitted = 1;
    } else {
        s->provider = 1;
    }
    sd2_stream_bind(s, cbs, user_data);
    sd2_stream_link(s);
    if (timeout_ms > 0) {
        s->due_ms = uv_now(cl->o.loop) + timeout_ms;
        if (heap_add(cl, s) < 0) {
            /* Without its deadline the stream must not go: cancel it. */
            s->err_set = SD2_ENOMEM;
            s->reset_local = 1;
            nghttp2_submit_rst_stream(c->ses, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
        }
    }
    sd2_conn_mark(c);
    *out = s;
    return 0;
}

size_t sd2_upstream_conns(const sd2_upstream *u)
{
    return u->nconns;
}

size_t sd2_upstream_streams(const sd2_upstream *u)
{
    const sd2_conn *c;
    size_t n = 0;
    for (c = u->conns; c != NULL; c = c->unext)
        n += c->nstreams;
    return n;
}

int sd2_upstream_get(sd2_upstream **out, sd2_client *cl, const char *host, int port)
{
    sd2_upstream *u;
    *out = NULL;
    for (u = cl->ups; u != NULL; u = u->next)
        if (u->port == port && strcmp(u->host, host) == 0) {
            *out = u;
            return 0;
        }
    if (strlen(host) >= sizeof(u->host) || port <= 0 || port > 65535)
        return sdd_error(SELDON_EINVAL, "upstream: bad address %s:%d", host, port);
    u = sdd_calloc(1, sizeof(*u));
    if (u == NULL)
        return SD2_ENOMEM;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&u->addr) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&u->addr) != 0) {
        sdd_free(u);
        return sdd_error(SELDON_EINVAL, "upstream: %s is not a numeric IP address", host);
    }
    snprintf(u->host, sizeof(u->host), "%s", host);
    u->port = port;
    u->cl = cl;
    u->next = cl->ups;
    cl->ups = u;
    *out = u;
    return 0;
}

int sd2_client_new(sd2_client **out, uv_loop_t *loop, const sd2_opts *opts)
{
    sd2_client *cl;
    int rv;
    *out = NULL;
    cl = sdd_calloc(1, sizeof(*cl));
    if (cl == NULL)
        return SD2_ENOMEM;
    rv = sd2_owner_init(&cl->o, loop, opts, 1);
    if (rv < 0) {
        sdd_free(cl);
        return rv;
    }
    cl->o.conn_gone = cl_conn_gone;
    uv_timer_init(loop, &cl->timer);
    cl->timer.data = cl;
    *out = cl;
    return 0;
}

static void cl_handle_closed(uv_handle_t *h)
{
    sd2_client *cl = h->data;
    sd2_upstream *u, *next;
    if (--cl->handles > 0)
        return;
    for (u = cl->ups; u != NULL; u = next) {
        next = u->next;
        sdd_free(u);
    }
    sdd_free(cl->heap);
    if (cl->done)
        cl->done(cl->done_data);
    sd2_owner_fini(&cl->o);
    sdd_free(cl);
}

static void cl_all_gone(sd2_owner *o)
{
    sd2_client *cl = (sd2_client *)o;
    if (cl->handles > 0)
        return;
    cl->handles = 3;
    sd2_owner_close_handles(&cl->o, cl_handle_closed);
    uv_close((uv_handle_t *)&cl->timer, cl_handle_closed);
}

void sd2_client_close(sd2_client *cl, void (*done)(void *), void *done_data)
{
    if (cl == NULL)
        return;
    cl->o.closing = 1;
    cl->o.all_gone = cl_all_gone;
    cl->done = done;
    cl->done_data = done_data;
    for (;;) {
        sd2_conn *c = cl->o.conns;
        while (c != NULL && (c->dead || (c->failing && c->depth > 0)))
            c = c->next;
        if (c == NULL)
            break;
        sd2_conn_fail(c, SD2_ECANCELED);
    }
    if (cl->o.nconns == 0 && cl->o.zombies == NULL && cl->o.dirty == NULL)
        cl_all_gone(&cl->o);
}
