/*
 * Pipelines in seldon up: one seldon_pipeline_engine per ingress loop, each
 * running the same compiled pipelines, so that a request stays on the loop
 * that accepted it and no lock sits on its path. The engine is a state
 * machine (include/seldon/pipeline.h): a request goes in, CALL events come
 * out; each call goes to a replica's seldon_service_infer() through the same
 * lookup table the ingress uses for models (function calls, never a socket);
 * the answer comes back to the loop (posted when a worker thread gave it) and
 * goes into the engine; OUTPUT and ERROR events answer the caller. The
 * engine's next deadline is a timer on the loop.
 *
 * The asynchronous mode keeps results in one store shared by the loops (a
 * GET may arrive on any loop), bounded by --pipeline-async-max and expired
 * after --pipeline-async-ttl; it is off the synchronous path.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sdd.h"
#include "up.h"

#define NBUCKETS 1024
#define MAX_XHEADERS 32

enum { W_REST, W_GRPC, W_ASYNC };

typedef struct up_pl up_pl;

static void buf_add(seldon_buf *b, const void *p, size_t n)
{
    if (seldon_buf_reserve(b, n) != 0)
        return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

/* A request waiting for its pipeline's answer, on its loop. */
typedef struct plw plw;
struct plw {
    plw *next;
    uint64_t seq;
    int kind;
    sdh_req *req;     /* W_REST */
    void *gmsg;       /* W_GRPC: ingress.c's message, answered with up_grpc_answer() */
    char pipeline[SELDON_ROUTES_NAME_MAX + 1];
    char rid[80]; /* x-request-id */
};

/* A step call's answer, on its way back to the loop. */
typedef struct plc plc;
struct plc {
    plc *next;
    struct up_pl *p;
    up_replica *r;
    uint64_t call_id;
    const seldon_msg *msg; /* the engine's, until the call is answered */
    seldon_msg *resp;
    int32_t status;
    char *message;
};

struct up_pl {
    up *u;
    int loop;
    seldon_pipeline_engine *eng;
    uv_timer_t timer;
    int64_t armed; /* the deadline the timer is set for, INT64_MAX when none */
    plw *buckets[NBUCKETS];
    uint64_t seq;
    plc *done_head, *done_tail;
    int pumping;
    const seldon_pipeline **pls; /* the pipelines this loop's engine runs (the engine holds them) */
    size_t npls, cap;
};

/* The control loop's view: the pipelines published to the loops, with a reference each. */
typedef struct ctl_ent {
    char *name;
    uint32_t version;
    seldon_pipeline *pl;
} ctl_ent;

static ctl_ent *ctl_tab;
static size_t ctl_n, ctl_cap;

/* ------------------------------------------------------------ async store */

typedef struct async_entry {
    int used;
    int done;
    int status; /* HTTP */
    int64_t expires_ns;
    char id[80];
    char pipeline[SELDON_ROUTES_NAME_MAX + 1];
    seldon_buf body;
} async_entry;

static pthread_mutex_t async_mu = PTHREAD_MUTEX_INITIALIZER;
static async_entry *async_tab;
static size_t async_cap;

static void async_expire(int64_t now)
{
    size_t i;
    for (i = 0; i < async_cap; i++)
        if (async_tab[i].used && async_tab[i].done && async_tab[i].expires_ns <= now) {
            seldon_buf_free(&async_tab[i].body);
            async_tab[i].used = 0;
        }
}

static async_entry *async_find(const char *pipeline, const char *id, size_t id_len)
{
    size_t i;
    for (i = 0; i < async_cap; i++)
        if (async_tab[i].used && strlen(async_tab[i].id) == id_len &&
            memcmp(async_tab[i].id, id, id_len) == 0 && strcmp(async_tab[i].pipeline, pipeline) == 0)
            return &async_tab[i];
    return NULL;
}

/* A pending entry for id; SELDON_ETOOBIG when the store is full, SELDON_EEXIST for a known id. */
static int async_add(const char *pipeline, const char *id)
{
    size_t i;
    int rc = sdd_error(SELDON_ETOOBIG,
                       "too many asynchronous requests kept (--pipeline-async-max): fetch or let "
                       "some expire");
    pthread_mutex_lock(&async_mu);
    async_expire(up_mono_ns());
    if (async_find(pipeline, id, strlen(id)) != NULL) {
        rc = sdd_error(SELDON_EEXIST, "request id \"%s\" is already kept", id);
        goto out;
    }
    for (i = 0; i < async_cap; i++)
        if (!async_tab[i].used) {
            memset(&async_tab[i], 0, sizeof(async_tab[i]));
            async_tab[i].used = 1;
            snprintf(async_tab[i].id, sizeof(async_tab[i].id), "%s", id);
            snprintf(async_tab[i].pipeline, sizeof(async_tab[i].pipeline), "%s", pipeline);
            rc = 0;
            break;
        }
out:
    pthread_mutex_unlock(&async_mu);
    return rc;
}

/* The result of id: takes body. */
static void async_finish(up *u, const char *pipeline, const char *id, int status, seldon_buf *body)
{
    async_entry *e;
    pthread_mutex_lock(&async_mu);
    e = async_find(pipeline, id, strlen(id));
    if (e != NULL) {
        e->done = 1;
        e->status = status;
        e->body = *body;
        *body = (seldon_buf)SELDON_BUF_INIT;
        e->expires_ns = up_mono_ns() + (int64_t)u->cfg.pipeline_async_ttl_ms * 1000000;
    }
    pthread_mutex_unlock(&async_mu);
    seldon_buf_free(body);
}

/* --------------------------------------------------------------- helpers */

/* The pipeline name served on the current ingress loop, or NULL. */
static const seldon_pipeline *find_pipeline(up *u, const char *name, size_t len)
{
    int loop = sdl_loops_current(u->loops);
    up_pl *p = loop >= 0 && loop < u->cfg.io_threads && u->pl != NULL ? u->pl[loop] : NULL;
    size_t i;
    for (i = 0; p != NULL && i < p->npls; i++) {
        const char *n = seldon_pipeline_name(p->pls[i]);
        if (strlen(n) == len && memcmp(n, name, len) == 0)
            return p->pls[i];
    }
    return NULL;
}

static void new_rid(char *out, size_t cap, up_pl *p, uint64_t seq)
{
    static _Atomic uint64_t salt;
    uint64_t s = atomic_load(&salt);
    if (s == 0) {
        s = ((uint64_t)up_mono_ns() * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)getpid() << 32);
        atomic_store(&salt, s | 1);
    }
    snprintf(out, cap, "%016" PRIx64 "%02x%010" PRIx64, s, (unsigned)p->loop & 0xff, seq);
}

static plw **slot(up_pl *p, uint64_t seq)
{
    return &p->buckets[seq % NBUCKETS];
}

static plw *take_waiter(up_pl *p, const char *pipeline, const char *id, size_t len)
{
    char buf[32];
    uint64_t seq;
    plw **pp;
    if (len == 0 || len >= sizeof(buf))
        return NULL;
    memcpy(buf, id, len);
    buf[len] = '\0';
    seq = strtoull(buf, NULL, 10);
    for (pp = slot(p, seq); *pp != NULL; pp = &(*pp)->next)
        if ((*pp)->seq == seq && strcmp((*pp)->pipeline, pipeline) == 0) {
            plw *w = *pp;
            *pp = w->next;
            return w;
        }
    return NULL;
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

static void pump(up_pl *p);

static void on_timer(uv_timer_t *t)
{
    up_pl *p = t->data;
    p->armed = INT64_MAX;
    seldon_pipeline_engine_advance(p->eng, up_mono_ns());
    pump(p);
}

static void arm(up_pl *p)
{
    int64_t d = seldon_pipeline_engine_deadline(p->eng), now;
    if (d == p->armed)
        return;
    p->armed = d;
    if (d == INT64_MAX) {
        uv_timer_stop(&p->timer);
        return;
    }
    now = up_mono_ns();
    uv_timer_start(&p->timer, on_timer, d > now ? (uint64_t)((d - now + 999999) / 1000000) : 0, 0);
}

static void completion_arrive(up_pl *p, plc *c)
{
    c->next = NULL;
    if (p->done_tail != NULL)
        p->done_tail->next = c;
    else
        p->done_head = c;
    p->done_tail = c;
    pump(p);
}

static void completion_posted(void *arg)
{
    plc *c = arg;
    completion_arrive(c->p, c);
}

/* Any thread: a model answered a step call. */
static void call_done(void *user_data, int32_t status, const char *message)
{
    plc *c = user_data;
    up_pl *p = c->p;
    if (c->r != NULL)
        atomic_fetch_sub_explicit(&c->r->in_flight, 1, memory_order_relaxed);
    c->status = status;
    if (status != 0)
        c->message = sdd_strndup(message ? message : "failed", strlen(message ? message : "failed"));
    if (sdl_loops_current(p->u->loops) == p->loop) {
        completion_arrive(p, c);
        return;
    }
    if (sdl_loops_post(p->u->loops, p->loop, completion_posted, c) != 0) {
        /* The loops are stopping: the engine goes with them. */
        seldon_msg_free(c->resp);
        sdd_free(c->message);
        sdd_free(c);
    }
}

/*
 * Control loop: a parked step call's model is loaded again. The engine's message is only
 * read (the engine leaves it alone until the call is answered, and the post to the
 * control loop ordered its writes before these reads).
 */
void up_pl_step_resume(void *call, up_replica *r)
{
    plc *c = call;
    if (seldon_service_infer(r->s.svc, c->msg, c->resp, call_done, c) != 0)
        call_done(c, SELDON_EINTERNAL, seldon_last_error());
}

void up_pl_step_fail(void *call, int rc, const char *why)
{
    call_done(call, rc, why);
}

static void call_fail(up_pl *p, plc *c, const char *why)
{
    c->status = SELDON_EUNAVAIL;
    c->message = sdd_strndup(why, strlen(why));
    c->next = NULL;
    if (p->done_tail != NULL)
        p->done_tail->next = c;
    else
        p->done_head = c;
    p->done_tail = c;
}

static void do_call(up_pl *p, const seldon_pipeline_event *ev)
{
    plc *c = sdd_calloc(1, sizeof(*c));
    up_target t;
    int rc;
    if (c == NULL) {
        seldon_pipeline_engine_fail(p->eng, ev->call_id, "out of memory", up_mono_ns());
        return;
    }
    c->p = p;
    c->call_id = ev->call_id;
    rc = up_pick(&t, p->u, ev->model, strlen(ev->model));
    if (rc != 0) {
        call_fail(p, c, seldon_last_error());
        return;
    }
    /* The engine built this call's message: it gets the versioned name the replica knows. */
    if (seldon_msg_set_model((seldon_msg *)(uintptr_t)ev->msg, t.vname, t.vname_len, NULL, 0) <
        0) {
        call_fail(p, c, "out of memory");
        return;
    }
    c->resp = seldon_pipeline_engine_msg(p->eng, SELDON_MSG_RESPONSE);
    if (c->resp == NULL) {
        call_fail(p, c, "out of memory");
        return;
    }
    c->r = t.r;
    c->msg = ev->msg;
    atomic_fetch_add_explicit(&t.r->in_flight, 1, memory_order_relaxed);
    if (t.evicted) { /* sent once the version is loaded again, from the control loop */
        rc = up_park_step(&t, c);
        if (rc != 0) {
            atomic_fetch_sub_explicit(&t.r->in_flight, 1, memory_order_relaxed);
            c->r = NULL;
            seldon_msg_free(c->resp);
            c->resp = NULL;
            call_fail(p, c, seldon_last_error());
        }
        return;
    }
    rc = seldon_service_infer(t.r->s.svc, ev->msg, c->resp, call_done, c);
    if (rc != 0) {
        atomic_fetch_sub_explicit(&t.r->in_flight, 1, memory_order_relaxed);
        c->r = NULL;
        call_fail(p, c, seldon_last_error());
    }
}

/* The x-* headers of the request, back to the caller (x-request-id first). */
static size_t reply_headers(sdh_header *h, size_t cap, const seldon_pipeline_event *ev)
{
    size_t i, n = 0;
    for (i = 0; i < ev->headers_count && n < cap; i++) {
        h[n].name = ev->headers[i].name;
        h[n].name_len = ev->headers[i].name_len;
        h[n].value = ev->headers[i].value;
        h[n].value_len = ev->headers[i].value_len;
        n++;
    }
    return n;
}

static void finish(up_pl *p, const seldon_pipeline_event *ev)
{
    plw *w = take_waiter(p, ev->pipeline, ev->request_id, ev->request_id_len);
    seldon_buf body = SELDON_BUF_INIT;
    sdh_header h[MAX_XHEADERS + 3];
    size_t n, json_len = 0, i;
    int status = 200;
    char jl[32];
    if (w == NULL) {
        /*
         * A chained pipeline's answer (another pipeline's request fed it): kept in the
         * results store under its pipeline and the request's x-request-id, for
         * GET /v2/pipelines/<p>/requests/<id>.
         */
        w = sdd_calloc(1, sizeof(*w));
        if (w == NULL)
            return;
        w->kind = W_ASYNC;
        snprintf(w->pipeline, sizeof(w->pipeline), "%s", ev->pipeline);
        for (i = 0; i < ev->headers_count; i++)
            if (ev->headers[i].name_len == 12 && memcmp(ev->headers[i].name, "x-request-id", 12) == 0 &&
                ev->headers[i].value_len < sizeof(w->rid))
                snprintf(w->rid, sizeof(w->rid), "%.*s", (int)ev->headers[i].value_len,
                         ev->headers[i].value);
        if (w->rid[0] == '\0' || async_add(w->pipeline, w->rid) != 0) {
            sdd_free(w);
            return;
        }
    }
    if (ev->kind == SELDON_PIPELINE_EVENT_OUTPUT) {
        seldon_msg *m = (seldon_msg *)(uintptr_t)ev->msg; /* the engine's answer, ours to finish */
        seldon_msg_set_id(m, w->rid, strlen(w->rid));
        seldon_msg_set_model(m, w->pipeline, strlen(w->pipeline), NULL, 0);
        if (w->kind == W_GRPC) {
            up_grpc_request_id(w->gmsg, w->rid);
            if (seldon_msg_encode_pb(&body, m, 0) != 0) {
                up_grpc_answer(w->gmsg, 13, seldon_last_error(), NULL);
            } else {
                up_grpc_answer(w->gmsg, 0, NULL, &body);
            }
            seldon_buf_free(&body);
            up_count(p->u, "grpc", 0);
            sdd_free(w);
            return;
        }
        if (seldon_msg_encode_json(&body, &json_len, m, 0) != 0) {
            status = 500;
            body.len = 0;
            json_error(&body, seldon_last_error());
            json_len = 0;
        }
    } else {
        if (w->kind == W_GRPC) {
            up_grpc_answer(w->gmsg, status_grpc(ev), ev->error, NULL);
            up_count(p->u, "grpc", status_grpc(ev));
            sdd_free(w);
            return;
        }
        status = status_http(ev);
        json_error(&body, ev->error);
    }
    if (w->kind == W_ASYNC) {
        async_finish(p->u, w->pipeline, w->rid, status, &body);
        up_count(p->u, "async", status);
        sdd_free(w);
        return;
    }
    n = reply_headers(h, MAX_XHEADERS, ev);
    h[n].name = "content-type";
    h[n].name_len = 12;
    h[n].value = "application/json";
    h[n].value_len = 16;
    n++;
    if (json_len > 0 && json_len < body.len) {
        h[n].name = "inference-header-content-length";
        h[n].name_len = 31;
        h[n].value_len = (size_t)snprintf(jl, sizeof(jl), "%zu", json_len);
        h[n].value = jl;
        h[n].value_len = strlen(jl);
        h[n - 1].value = "application/octet-stream";
        h[n - 1].value_len = 24;
        n++;
    }
    up_count(p->u, "rest", status);
    sdh_respond(w->req, status, h, n, &body);
    seldon_buf_free(&body);
    sdd_free(w);
}

static void pump(up_pl *p)
{
    seldon_pipeline_event ev;
    if (p->pumping)
        return;
    p->pumping = 1;
    for (;;) {
        plc *c, *next;
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
        for (; c != NULL; c = next) {
            next = c->next;
            if (c->status == 0) {
                seldon_pipeline_engine_answer(p->eng, c->call_id, c->resp, up_mono_ns());
            } else {
                seldon_msg_free(c->resp);
                seldon_pipeline_engine_fail(p->eng, c->call_id, c->message ? c->message : "failed",
                                            up_mono_ns());
            }
            sdd_free(c->message);
            sdd_free(c);
        }
    }
    p->pumping = 0;
    arm(p);
}

/* -------------------------------------------------------------- requests */

typedef struct plreq {
    const char *pipeline;
    size_t pipeline_len;
    const seldon_pipeline_header *headers;
    size_t nheaders;
    int64_t timeout_ms; /* 0: the default */
    const char *rid;    /* x-request-id given, or NULL */
    size_t rid_len;
} plreq;

/*
 * Starts a request on the current loop's engine: inputs (taken) with a waiter w
 * (taken; its kind and answer set). The waiter's pipeline and rid are filled here.
 */
static int start(up *u, plw *w, const plreq *q, seldon_msg *inputs, char *rid_out, size_t rid_cap)
{
    int loop = sdl_loops_current(u->loops);
    up_pl *p = loop >= 0 && loop < u->cfg.io_threads ? u->pl[loop] : NULL;
    seldon_pipeline_header hs[MAX_XHEADERS + 1];
    char id[24];
    size_t n = 0, i;
    int rc;
    if (p == NULL) {
        seldon_msg_free(inputs);
        sdd_free(w);
        return sdd_error(SELDON_EINTERNAL, "not on an ingress loop");
    }
    w->seq = ++p->seq;
    snprintf(w->pipeline, sizeof(w->pipeline), "%.*s", (int)q->pipeline_len, q->pipeline);
    if (q->rid != NULL && q->rid_len > 0 && q->rid_len < sizeof(w->rid))
        snprintf(w->rid, sizeof(w->rid), "%.*s", (int)q->rid_len, q->rid);
    else
        new_rid(w->rid, sizeof(w->rid), p, w->seq);
    hs[n].name = "x-request-id";
    hs[n].name_len = 12;
    hs[n].value = w->rid;
    hs[n].value_len = strlen(w->rid);
    n++;
    for (i = 0; i < q->nheaders && n < MAX_XHEADERS; i++) {
        if (q->headers[i].name_len == 12 && memcmp(q->headers[i].name, "x-request-id", 12) == 0)
            continue;
        hs[n++] = q->headers[i];
    }
    snprintf(id, sizeof(id), "%" PRIu64, w->seq);
    if (rid_out != NULL)
        snprintf(rid_out, rid_cap, "%s", w->rid);
    if (w->kind == W_ASYNC) {
        rc = async_add(w->pipeline, w->rid);
        if (rc != 0) {
            seldon_msg_free(inputs);
            sdd_free(w);
            return rc;
        }
    }
    rc = seldon_pipeline_engine_push(p->eng, w->pipeline, id, strlen(id), hs, n, inputs,
                                     q->timeout_ms, up_mono_ns());
    if (rc != 0) {
        if (w->kind == W_ASYNC) { /* its place in the store goes with it */
            async_entry *e;
            pthread_mutex_lock(&async_mu);
            e = async_find(w->pipeline, w->rid, strlen(w->rid));
            if (e != NULL)
                e->used = 0;
            pthread_mutex_unlock(&async_mu);
        }
        sdd_free(w);
        return rc;
    }
    w->next = *slot(p, w->seq);
    *slot(p, w->seq) = w;
    pump(p);
    return 0;
}

/* The timeout a request asks for, in ms: 0 when none (the default applies). */
static int64_t parse_ms(const char *v, size_t len)
{
    int64_t x = 0;
    size_t i;
    for (i = 0; i < len && v[i] >= '0' && v[i] <= '9' && x < INT64_MAX / 100; i++)
        x = x * 10 + (v[i] - '0');
    return i == len ? x : -1;
}

static int64_t parse_grpc_timeout(const char *v, size_t len)
{
    int64_t x;
    if (len < 2)
        return 0;
    x = parse_ms(v, len - 1);
    if (x < 0)
        return 0;
    switch (v[len - 1]) {
    case 'H':
        return x * 3600000;
    case 'M':
        return x * 60000;
    case 'S':
        return x * 1000;
    case 'm':
        return x > 0 ? x : 1;
    case 'u':
        return x / 1000 > 0 ? x / 1000 : 1;
    case 'n':
        return x / 1000000 > 0 ? x / 1000000 : 1;
    default:
        return 0;
    }
}

int64_t up_grpc_timeout_ms(const char *value, size_t len)
{
    return parse_grpc_timeout(value, len);
}

static void rest_err(up *u, sdh_req *req, int status, const char *msg)
{
    up_count(u, "rest", status);
    sdh_respond_error(req, status, msg);
}

static int has_suffix(const char *p, size_t len, const char *s)
{
    size_t n = strlen(s);
    return len >= n && memcmp(p + len - n, s, n) == 0;
}

/* 1 when every step's model is available. */
static int pipeline_ready(up *u, const seldon_pipeline *pl)
{
    size_t i, n = seldon_pipeline_step_count(pl);
    for (i = 0; i < n; i++) {
        const char *m = seldon_pipeline_step_name(pl, i);
        if (!up_route_available(u, m, strlen(m)))
            return 0;
    }
    for (i = 0; i < seldon_pipeline_dependency_count(pl); i++) {
        const char *d = seldon_pipeline_dependency(pl, i);
        const seldon_pipeline *dp = find_pipeline(u, d, strlen(d));
        if (dp == NULL || !pipeline_ready(u, dp))
            return 0;
    }
    return 1;
}

void up_pl_rest(up *u, sdh_req *req, const sdh_request *r, const char *name, size_t name_len)
{
    const seldon_pipeline *pl = find_pipeline(u, name, name_len);
    const char *async_h, *tmo, *rid, *jl;
    size_t alen = 0, tlen = 0, rlen = 0, jlen = 0, i, nx = 0;
    seldon_pipeline_header xs[MAX_XHEADERS];
    char msg[300];
    seldon_msg *in;
    plreq q;
    plw *w;
    int rc, is_async = 0;

    if (pl == NULL) {
        snprintf(msg, sizeof(msg), "pipeline \"%.*s\" not found", (int)(name_len > 200 ? 200 : name_len),
                 name);
        rest_err(u, req, 404, msg);
        return;
    }
    /* /v2/pipelines/<p>/ready and /requests/<id> */
    if (r->path_len > 13 && memcmp(r->path, "/v2/pipelines/", 14) == 0 &&
        has_suffix(r->path, r->path_len, "/ready")) {
        int ok = pipeline_ready(u, pl);
        up_count(u, "rest", ok ? 200 : 424);
        if (ok)
            sdh_respond(req, 200, NULL, 0, NULL);
        else
            sdh_respond_error(req, 424, "pipeline is not ready: a model it needs is not available");
        return;
    }
    if (r->path_len > 14 && memcmp(r->path, "/v2/pipelines/", 14) == 0) {
        const char *rq = r->path + 14 + name_len;
        size_t rqlen = r->path_len - 14 - name_len;
        if (rqlen > 10 && memcmp(rq, "/requests/", 10) == 0) {
            async_entry *e;
            seldon_buf body = SELDON_BUF_INIT;
            int status;
            sdh_header h = {"content-type", 12, "application/json", 16};
            pthread_mutex_lock(&async_mu);
            async_expire(up_mono_ns());
            e = async_find(seldon_pipeline_name(pl), rq + 10, rqlen - 10);
            if (e == NULL) {
                pthread_mutex_unlock(&async_mu);
                snprintf(msg, sizeof(msg), "request \"%.*s\" of pipeline \"%s\" not found or expired",
                         (int)(rqlen - 10 > 100 ? 100 : rqlen - 10), rq + 10,
                         seldon_pipeline_name(pl));
                rest_err(u, req, 404, msg);
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
            pthread_mutex_unlock(&async_mu);
            up_count(u, "rest", status);
            sdh_respond(req, status, &h, 1, &body);
            seldon_buf_free(&body);
            return;
        }
    }
    if (!has_suffix(r->path, r->path_len, "/infer")) {
        rest_err(u, req, 404, "pipelines answer /infer, /ready and /requests/<id>");
        return;
    }
    if (r->method_len != 4 || memcmp(r->method, "POST", 4) != 0) {
        rest_err(u, req, 405, "use POST for infer");
        return;
    }
    async_h = sdh_request_header(r, "seldon-async", &alen);
    if ((async_h != NULL && alen == 4 && memcmp(async_h, "true", 4) == 0) ||
        (r->query != NULL && r->query_len >= 10 &&
         memmem(r->query, r->query_len, "async=true", 10) != NULL))
        is_async = 1;
    tmo = sdh_request_header(r, "seldon-timeout-ms", &tlen);
    rid = sdh_request_header(r, "x-request-id", &rlen);
    jl = sdh_request_header(r, "inference-header-content-length", &jlen);
    memset(&q, 0, sizeof(q));
    q.pipeline = name;
    q.pipeline_len = name_len;
    q.rid = rid;
    q.rid_len = rlen;
    if (tmo != NULL) {
        q.timeout_ms = parse_ms(tmo, tlen);
        if (q.timeout_ms <= 0) {
            rest_err(u, req, 400, "seldon-timeout-ms: expected a positive number of milliseconds");
            return;
        }
    }
    for (i = 0; i < r->nheaders && nx < MAX_XHEADERS; i++)
        if (r->headers[i].name_len > 2 && memcmp(r->headers[i].name, "x-", 2) == 0) {
            xs[nx].name = r->headers[i].name;
            xs[nx].name_len = r->headers[i].name_len;
            xs[nx].value = r->headers[i].value;
            xs[nx].value_len = r->headers[i].value_len;
            nx++;
        }
    q.headers = xs;
    q.nheaders = nx;
    in = seldon_pipeline_engine_msg(u->pl[sdl_loops_current(u->loops)]->eng, SELDON_MSG_REQUEST);
    if (in == NULL) {
        rest_err(u, req, 500, "out of memory");
        return;
    }
    rc = seldon_msg_decode_json(in, r->body, r->body_len,
                                jl != NULL ? (size_t)(parse_ms(jl, jlen) > 0 ? parse_ms(jl, jlen) : 0)
                                           : 0,
                                0);
    if (rc != 0) {
        seldon_msg_free(in);
        rest_err(u, req, 400, seldon_last_error());
        return;
    }
    w = sdd_calloc(1, sizeof(*w));
    if (w == NULL) {
        seldon_msg_free(in);
        rest_err(u, req, 500, "out of memory");
        return;
    }
    w->kind = is_async ? W_ASYNC : W_REST;
    w->req = is_async ? NULL : req;
    if (is_async) {
        char ridbuf[sizeof(w->rid)];
        seldon_buf body = SELDON_BUF_INIT;
        sdh_header h[2] = {{"content-type", 12, "application/json", 16},
                           {"x-request-id", 12, ridbuf, 0}};
        rc = start(u, w, &q, in, ridbuf, sizeof(ridbuf));
        if (rc != 0) {
            rest_err(u, req, rc == SELDON_ETOOBIG ? 503 : rc == SELDON_EEXIST ? 409 : 500,
                     seldon_last_error());
            return;
        }
        h[1].value_len = strlen(ridbuf);
        snprintf(msg, sizeof(msg), "{\"id\":\"%s\",\"pipeline\":\"%.*s\"}", ridbuf,
                 (int)name_len, name);
        buf_add(&body, msg, strlen(msg));
        up_count(u, "rest", 202);
        sdh_respond(req, 202, h, 2, &body);
        seldon_buf_free(&body);
        return;
    }
    rc = start(u, w, &q, in, NULL, 0);
    if (rc != 0)
        rest_err(u, req, rc == SELDON_ENOTFOUND ? 404 : 500, seldon_last_error());
}

int up_pl_grpc(up *u, void *gmsg, const char *name, size_t name_len, const uint8_t *data,
               size_t len, int64_t timeout_ms, const char *rid, size_t rid_len)
{
    const seldon_pipeline *pl = find_pipeline(u, name, name_len);
    int loop = sdl_loops_current(u->loops);
    seldon_msg *in;
    plreq q;
    plw *w;
    int rc;
    if (pl == NULL)
        return sdd_error(SELDON_ENOTFOUND, "pipeline \"%.*s\" not found",
                         (int)(name_len > 200 ? 200 : name_len), name);
    if (loop < 0 || loop >= u->cfg.io_threads)
        return sdd_error(SELDON_EINTERNAL, "not on an ingress loop");
    in = seldon_pipeline_engine_msg(u->pl[loop]->eng, SELDON_MSG_REQUEST);
    if (in == NULL)
        return sdd_error(SELDON_ENOMEM, "out of memory");
    rc = seldon_msg_decode_pb(in, data, len, 0);
    if (rc != 0) {
        seldon_msg_free(in);
        return rc;
    }
    w = sdd_calloc(1, sizeof(*w));
    if (w == NULL) {
        seldon_msg_free(in);
        return sdd_error(SELDON_ENOMEM, "out of memory");
    }
    w->kind = W_GRPC;
    w->gmsg = gmsg;
    memset(&q, 0, sizeof(q));
    q.pipeline = name;
    q.pipeline_len = name_len;
    q.timeout_ms = timeout_ms;
    q.rid = rid;
    q.rid_len = rid_len;
    return start(u, w, &q, in, NULL, 0);
}

/* ----------------------------------------------------------------- set-up */

static int lookup(const seldon_pipeline **out, void *user_data, const char *name)
{
    size_t i;
    (void)user_data;
    for (i = 0; i < ctl_n; i++)
        if (strcmp(ctl_tab[i].name, name) == 0) {
            *out = ctl_tab[i].pl;
            return 0;
        }
    return SELDON_ENOTFOUND;
}

/*
 * A change of the pipelines served, posted to every ingress loop in turn (in order:
 * each loop's posts run first in, first out). The last loop through frees the
 * references the control loop gave up.
 */
typedef struct pl_change {
    up *u;
    atomic_int left;
    char **remove;
    size_t nremove;
    seldon_pipeline **add; /* borrowed from the control registry, which holds them */
    size_t nadd;
    seldon_pipeline **drop; /* references released once every loop is through */
    size_t ndrop;
} pl_change;

static void change_free(pl_change *c)
{
    size_t i;
    for (i = 0; i < c->nremove; i++)
        sdd_free(c->remove[i]);
    for (i = 0; i < c->ndrop; i++)
        seldon_pipeline_free(c->drop[i]);
    sdd_free(c->remove);
    sdd_free(c->add);
    sdd_free(c->drop);
    sdd_free(c);
}

static void change_release(pl_change *c)
{
    if (atomic_fetch_sub(&c->left, 1) == 1)
        change_free(c);
}

static void loop_forget(up_pl *p, const char *name)
{
    size_t i;
    for (i = 0; i < p->npls; i++)
        if (strcmp(seldon_pipeline_name(p->pls[i]), name) == 0) {
            p->pls[i] = p->pls[--p->npls];
            return;
        }
}

/* On an ingress loop: removals (readers first), then additions (what they read first). */
static void change_apply(void *arg)
{
    pl_change *c = arg;
    int loop = sdl_loops_current(c->u->loops);
    up_pl *p = loop >= 0 ? c->u->pl[loop] : NULL;
    size_t i, done, left;
    char *dn = NULL;
    if (p == NULL) {
        change_release(c);
        return;
    }
    dn = sdd_calloc(c->nremove + c->nadd + 1, 1);
    if (dn == NULL) {
        change_release(c);
        return;
    }
    for (left = c->nremove, done = 1; left > 0 && done;) {
        done = 0;
        for (i = 0; i < c->nremove; i++) {
            int rc;
            if (dn[i])
                continue;
            rc = seldon_pipeline_engine_remove(p->eng, c->remove[i], up_mono_ns());
            if (rc == SELDON_ESTATE)
                continue;
            loop_forget(p, c->remove[i]);
            dn[i] = 1;
            done = 1;
            left--;
        }
    }
    memset(dn, 0, c->nremove + c->nadd + 1);
    if (p->npls + c->nadd > p->cap) {
        size_t cap = (p->npls + c->nadd) * 2 + 8;
        const seldon_pipeline **n = sdd_realloc(p->pls, cap * sizeof(*n));
        if (n != NULL) {
            p->pls = n;
            p->cap = cap;
        }
    }
    for (left = c->nadd, done = 1; left > 0 && done && p->npls + c->nadd <= p->cap;) {
        done = 0;
        for (i = 0; i < c->nadd; i++) {
            int rc;
            if (dn[i])
                continue;
            rc = seldon_pipeline_engine_add(p->eng, c->add[i]);
            if (rc == SELDON_EINVAL)
                continue; /* what it reads comes later in this change */
            if (rc == 0)
                p->pls[p->npls++] = c->add[i];
            else if (loop == 0)
                sdd_log(SELDON_LOG_WARN, "pipeline %s: %s", seldon_pipeline_name(c->add[i]),
                        seldon_last_error());
            dn[i] = 1;
            done = 1;
            left--;
        }
    }
    if (left > 0 && loop == 0)
        sdd_log(SELDON_LOG_WARN, "%zu pipeline(s) could not be added: %s", left,
                seldon_last_error());
    sdd_free(dn);
    pump(p);
    change_release(c);
}

static ctl_ent *ctl_find(const char *name)
{
    size_t i;
    for (i = 0; i < ctl_n; i++)
        if (strcmp(ctl_tab[i].name, name) == 0)
            return &ctl_tab[i];
    return NULL;
}

/*
 * On the control loop, after every pump: the scheduler's live pipelines against those
 * published; new versions are compiled (from the stored spec) and published, removed
 * ones withdrawn.
 */
void up_pl_sync(up *u)
{
    seldon_sched_status *st = NULL;
    const seldon_sched_pipeline_status *ps;
    pl_change *c = NULL;
    size_t i, k, n = 0, progress;
    int changed = 0;

    if (u->pl == NULL || seldon_sched_pipelines(&st, u->sched.sched, NULL) != 0)
        return;
    while (seldon_sched_status_pipeline(st, n) != NULL)
        n++;
    c = sdd_calloc(1, sizeof(*c));
    if (c == NULL)
        goto out;
    c->u = u;
    c->remove = sdd_calloc(n + ctl_n + 1, sizeof(*c->remove));
    c->add = sdd_calloc(n + 1, sizeof(*c->add));
    c->drop = sdd_calloc(n + ctl_n + 1, sizeof(*c->drop));
    if (c->remove == NULL || c->add == NULL || c->drop == NULL)
        goto out;
    if (ctl_cap < ctl_n + n) {
        size_t cap = ctl_n + n + 8;
        ctl_ent *t = sdd_realloc(ctl_tab, cap * sizeof(*t));
        if (t == NULL)
            goto out;
        ctl_tab = t;
        ctl_cap = cap;
    }
    /* Withdrawn: gone from the scheduler, unloaded, or replaced by a new version. */
    for (k = 0; k < ctl_n;) {
        int keep = 0;
        for (i = 0; i < n; i++) {
            ps = seldon_sched_status_pipeline(st, i);
            if (!ps->deleted && strcmp(ps->name, ctl_tab[k].name) == 0 &&
                ps->version == ctl_tab[k].version)
                keep = 1;
        }
        if (keep) {
            k++;
            continue;
        }
        sdd_log(SELDON_LOG_INFO, "pipeline %s v%u: withdrawn from the ingress", ctl_tab[k].name,
                ctl_tab[k].version);
        c->remove[c->nremove++] = ctl_tab[k].name;
        c->drop[c->ndrop++] = ctl_tab[k].pl;
        ctl_tab[k] = ctl_tab[--ctl_n];
        changed = 1;
    }
    /*
     * Readers of a withdrawn pipeline go too: they were compiled against it, and are
     * compiled again below against its new version (when there is one).
     */
    for (progress = 1; progress;) {
        progress = 0;
        for (k = 0; k < ctl_n;) {
            size_t d, r;
            int reads = 0;
            for (d = 0; d < seldon_pipeline_dependency_count(ctl_tab[k].pl) && !reads; d++)
                for (r = 0; r < c->nremove && !reads; r++)
                    reads = strcmp(seldon_pipeline_dependency(ctl_tab[k].pl, d), c->remove[r]) == 0;
            if (!reads) {
                k++;
                continue;
            }
            sdd_log(SELDON_LOG_INFO, "pipeline %s v%u: withdrawn, to read the new %s",
                    ctl_tab[k].name, ctl_tab[k].version, c->remove[r - 1]);
            c->remove[c->nremove++] = ctl_tab[k].name;
            c->drop[c->ndrop++] = ctl_tab[k].pl;
            ctl_tab[k] = ctl_tab[--ctl_n];
            progress = 1;
        }
    }
    /* New: compiled here, in the order of what they read. */
    for (progress = 1; progress;) {
        progress = 0;
        for (i = 0; i < n; i++) {
            const char *spec = NULL;
            size_t len = 0;
            seldon_manifest *m = NULL;
            seldon_pipeline *pl = NULL;
            const seldon_resource *res;
            ps = seldon_sched_status_pipeline(st, i);
            if (ps->deleted || ctl_find(ps->name) != NULL)
                continue;
            if (seldon_sched_pipeline_spec(&spec, &len, NULL, NULL, u->sched.sched, ps->name) != 0 ||
                seldon_manifest_parse(&m, spec, len, ps->name) != 0)
                continue;
            res = seldon_manifest_at(m, 0);
            if (res != NULL && res->kind == SELDON_KIND_PIPELINE &&
                seldon_pipeline_compile(&pl, res->name, &res->spec.pipeline, lookup, u) == 0) {
                ctl_tab[ctl_n].name = sdd_strndup(ps->name, strlen(ps->name));
                ctl_tab[ctl_n].version = ps->version;
                ctl_tab[ctl_n].pl = pl;
                if (ctl_tab[ctl_n].name == NULL) {
                    seldon_pipeline_free(pl);
                } else {
                    c->add[c->nadd++] = pl;
                    ctl_n++;
                    progress = 1;
                    changed = 1;
                    sdd_log(SELDON_LOG_INFO, "pipeline %s v%u: served (%zu step(s))", ps->name,
                            ps->version, seldon_pipeline_step_count(pl));
                }
            }
            seldon_manifest_free(m);
        }
    }
    if (!changed)
        goto out;
    atomic_store(&c->left, u->cfg.io_threads);
    for (i = 0; i < (size_t)u->cfg.io_threads; i++)
        if (sdl_loops_post(u->loops, (int)i, change_apply, c) != 0)
            change_release(c);
    c = NULL;
out:
    if (c != NULL)
        change_free(c); /* nothing was withdrawn: a failure comes before that */
    seldon_sched_status_free(st);
}

int up_pl_setup(up *u)
{
    seldon_pipeline_options o = SELDON_PIPELINE_OPTIONS_INIT;
    int rc = 0, i_loop;

    async_cap = u->cfg.pipeline_async_max;
    async_tab = sdd_calloc(async_cap ? async_cap : 1, sizeof(*async_tab));
    u->pl = sdd_calloc((size_t)u->cfg.io_threads, sizeof(*u->pl));
    if (async_tab == NULL || u->pl == NULL)
        return SELDON_ENOMEM;
    o.timeout_ms = (int64_t)u->cfg.pipeline_timeout_ms;
    o.max_requests = u->cfg.pipeline_max_requests;
    for (i_loop = 0; i_loop < u->cfg.io_threads; i_loop++) {
        up_pl *p = sdd_calloc(1, sizeof(*p));
        if (p == NULL)
            return SELDON_ENOMEM;
        u->pl[i_loop] = p;
        p->u = u;
        p->loop = i_loop;
        p->armed = INT64_MAX;
        rc = seldon_pipeline_engine_new(&p->eng, NULL, 0, &o);
        if (rc != 0)
            return rc;
        uv_timer_init(sdl_loops_loop(u->loops, i_loop), &p->timer);
        p->timer.data = p;
    }
    return 0;
}

/* On loop i, at shutdown: requests left end; the timer closes. */
void up_pl_close(up *u, int i)
{
    up_pl *p = u->pl != NULL && i < u->cfg.io_threads ? u->pl[i] : NULL;
    if (p == NULL)
        return;
    uv_close((uv_handle_t *)&p->timer, NULL);
}

void up_pl_free(up *u)
{
    int i;
    size_t k;
    for (i = 0; u->pl != NULL && i < u->cfg.io_threads; i++) {
        up_pl *p = u->pl[i];
        if (p == NULL)
            continue;
        for (k = 0; k < NBUCKETS; k++)
            while (p->buckets[k] != NULL) {
                plw *w = p->buckets[k];
                p->buckets[k] = w->next;
                sdd_free(w);
            }
        seldon_pipeline_engine_free(p->eng);
        sdd_free(p->pls);
        sdd_free(p);
    }
    sdd_free(u->pl);
    for (k = 0; k < ctl_n; k++) {
        seldon_pipeline_free(ctl_tab[k].pl);
        sdd_free(ctl_tab[k].name);
    }
    sdd_free(ctl_tab);
    for (k = 0; k < async_cap; k++)
        seldon_buf_free(&async_tab[k].body);
    sdd_free(async_tab);
}
