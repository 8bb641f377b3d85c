/*
 * The agent's side of AgentService: a Subscribe stream that registers the replica
 * (and what it holds) and brings commands, reconnected with a capped backoff, and
 * unary Report calls. Also the small unary gRPC client the agent uses for the
 * server's repository API. Everything runs on the agent's loop.
 */
#include <stdio.h>
#include <string.h>

#include "agent.h"
#include "sdd.h"
#include "seldon_control.pb-c.h"

#define AG_MAX_RESPONSE (16u << 20)

/* ------------------------------------------------------------ gRPC framing */

static int frame(seldon_buf *b, const uint8_t *msg, size_t len)
{
    if (seldon_buf_reserve(b, len + 5) != 0)
        return -1;
    b->data[b->len] = 0;
    b->data[b->len + 1] = (uint8_t)(len >> 24);
    b->data[b->len + 2] = (uint8_t)(len >> 16);
    b->data[b->len + 3] = (uint8_t)(len >> 8);
    b->data[b->len + 4] = (uint8_t)len;
    if (len > 0)
        memcpy(b->data + b->len + 5, msg, len);
    b->len += len + 5;
    return 0;
}

static int32_t status_of(const sd2_header *h, size_t n, char *msg, size_t cap)
{
    const sd2_header *g = sd2_header_find(h, n, "grpc-status");
    const sd2_header *m = sd2_header_find(h, n, "grpc-message");
    char num[12];
    size_t k, i, o = 0;
    msg[0] = '\0';
    if (m != NULL) {
        for (i = 0; i < m->value_len && o + 1 < cap; i++) {
            char ch = m->value[i];
            if (ch == '%' && i + 2 < m->value_len) {
                char hex[3] = {m->value[i + 1], m->value[i + 2], 0};
                ch = (char)strtol(hex, NULL, 16);
                i += 2;
            }
            msg[o++] = ch;
        }
        msg[o] = '\0';
    }
    if (g == NULL)
        return -1;
    k = g->value_len < sizeof(num) - 1 ? g->value_len : sizeof(num) - 1;
    memcpy(num, g->value, k);
    num[k] = '\0';
    return (int32_t)strtol(num, NULL, 10);
}

static int request_headers(sd2_header h[6], const char *path, char *authority, size_t cap,
                           const char *host, int port)
{
    snprintf(authority, cap, "%s:%d", host, port);
    h[0] = (sd2_header){":method", 7, "POST", 4};
    h[1] = (sd2_header){":scheme", 7, "http", 4};
    h[2] = (sd2_header){":path", 5, path, strlen(path)};
    h[3] = (sd2_header){":authority", 10, authority, strlen(authority)};
    h[4] = (sd2_header){"content-type", 12, "application/grpc", 16};
    h[5] = (sd2_header){"te", 2, "trailers", 8};
    return 6;
}

/* ------------------------------------------------------------ unary calls */

typedef struct unary {
    ag_unary_cb cb;
    void *arg;
    seldon_buf in;
    int32_t status;
    char msg[512];
    int done;
} unary;

static void unary_finish(unary *u, int32_t status, const char *message)
{
    const uint8_t *resp = NULL;
    size_t len = 0;
    if (u->done)
        return;
    u->done = 1;
    if (status == 0 && u->in.len >= 5) {
        resp = u->in.data + 5;
        len = u->in.len - 5;
    }
    u->cb(u->arg, status, message, resp, len);
}

static void u_headers(sd2_stream *s, void *ud, const sd2_header *h, size_t n, int end)
{
    unary *u = ud;
    (void)s;
    if (end) {
        int32_t st = status_of(h, n, u->msg, sizeof(u->msg));
        unary_finish(u, st < 0 ? 2 : st, u->msg);
    }
}

static void u_data(sd2_stream *s, void *ud, const uint8_t *data, size_t len)
{
    unary *u = ud;
    sd2_consume(s, len);
    if (u->in.len + len > AG_MAX_RESPONSE || seldon_buf_reserve(&u->in, len) != 0)
        return;
    memcpy(u->in.data + u->in.len, data, len);
    u->in.len += len;
}

static void u_end(sd2_stream *s, void *ud, const sd2_header *t, size_t n)
{
    unary *u = ud;
    int32_t st = status_of(t, n, u->msg, sizeof(u->msg));
    (void)s;
    unary_finish(u, st < 0 ? 2 : st, u->msg);
}

static void u_drain(sd2_stream *s, void *ud)
{
    (void)s, (void)ud;
}

static void u_close(sd2_stream *s, void *ud, int err, uint32_t code)
{
    unary *u = ud;
    char why[160];
    (void)s, (void)code;
    snprintf(why, sizeof(why), "the call failed: %s", sd2_strerror(err));
    unary_finish(u, err == SD2_ETIMEOUT ? 4 : 14, why);
    seldon_buf_free(&u->in);
    sdd_free(u);
}

static const sd2_stream_cbs unary_cbs = {u_headers, u_data, u_end, u_drain, u_close};

int ag_unary(agent *a, const char *host, int port, const char *path, const uint8_t *msg, size_t len,
             uint64_t timeout_ms, ag_unary_cb cb, void *arg)
{
    sd2_upstream *up = NULL;
    sd2_stream *s = NULL;
    sd2_header h[6];
    char authority[96];
    seldon_buf body = SELDON_BUF_INIT;
    unary *u;
    int rc;

    if (a->h2c == NULL || a->stopping)
        return sdd_error(SELDON_ECANCELED, "the agent is stopping");
    rc = sd2_upstream_get(&up, a->h2c, host, port);
    if (rc != 0)
        return rc;
    u = sdd_calloc(1, sizeof(*u));
    if (u == NULL || frame(&body, msg, len) != 0) {
        sdd_free(u);
        seldon_buf_free(&body);
        return SELDON_ENOMEM;
    }
    u->cb = cb;
    u->arg = arg;
    request_headers(h, path, authority, sizeof(authority), host, port);
    rc = sd2_request(&s, up, h, 6, 0, &unary_cbs, u, timeout_ms);
    if (rc != 0) {
        sdd_free(u);
        seldon_buf_free(&body);
        return rc;
    }
    sd2_write(s, body.data, body.len);
    sd2_end(s, NULL, 0);
    seldon_buf_free(&body);
    return 0;
}

/* ------------------------------------------------------------ reports */

typedef struct report {
    char what[300];
} report;

static void report_done(void *arg, int32_t status, const char *message, const uint8_t *resp,
                        size_t len)
{
    report *r = arg;
    (void)resp, (void)len;
    if (status != 0)
        sdd_log(SELDON_LOG_WARN,
                "report %s: not delivered (%d %s); the next registration "
                "carries the state",
                r->what, status, message);
    sdd_free(r);
}

static const char *event_name(int type)
{
    switch (type) {
    case AG_EV_LOADED:
        return "LOADED";
    case AG_EV_LOAD_FAILED:
        return "LOAD_FAILED";
    case AG_EV_UNLOADED:
        return "UNLOADED";
    default:
        return "UNLOAD_FAILED";
    }
}

void ag_report(agent *a, uint64_t command_id, const char *model, uint32_t version, int type,
               const char *reason)
{
    Seldon__Control__V1__AgentEvent ev = SELDON__CONTROL__V1__AGENT_EVENT__INIT;
    uint8_t *buf;
    size_t len;
    report *r;

    sdd_log(type == AG_EV_LOADED || type == AG_EV_UNLOADED ? SELDON_LOG_INFO : SELDON_LOG_WARN,
            "model %s_%u: %s%s%s", model, version, event_name(type), reason && *reason ? ": " : "",
            reason ? reason : "");
    if (a->sched_port == 0)
        return;
    ev.server = (char *)a->cfg.server_name;
    ev.index = a->cfg.replica_index;
    ev.command_id = command_id;
    ev.model = (char *)model;
    ev.version = version;
    ev.type = (Seldon__Control__V1__AgentEvent__Type)type;
    ev.reason = (char *)(reason ? reason : "");
    len = seldon__control__v1__agent_event__get_packed_size(&ev);
    buf = sdd_malloc(len ? len : 1);
    r = sdd_malloc(sizeof(*r));
    if (buf == NULL || r == NULL) {
        sdd_free(buf);
        sdd_free(r);
        return;
    }
    seldon__control__v1__agent_event__pack(&ev, buf);
    snprintf(r->what, sizeof(r->what), "%s %s_%u", event_name(type), model, version);
    if (ag_unary(a, a->sched_ip, a->sched_port, "/seldon.control.v1.AgentService/Report", buf, len,
                 10000, report_done, r) != 0) {
        sdd_log(SELDON_LOG_WARN, "report %s: could not be sent", r->what);
        sdd_free(r);
    }
    sdd_free(buf);
}

/* ------------------------------------------------------------ the subscription */

static void schedule_reconnect(agent *a);

static void sub_headers(sd2_stream *s, void *ud, const sd2_header *h, size_t n, int end)
{
    agent *a = ud;
    char msg[512];
    if (s != a->sub)
        return;
    if (end) {
        int32_t st = status_of(h, n, msg, sizeof(msg));
        sdd_log(SELDON_LOG_WARN, "scheduler %s refused the subscription: status %d %s",
                a->cfg.scheduler_host, st, msg);
        return;
    }
    a->registered = 1;
    a->backoff_ms = 0;
    a->subscriptions++;
    sdd_log(SELDON_LOG_INFO, "registered with scheduler %s as %s/%u", a->cfg.scheduler_host,
            a->cfg.server_name, a->cfg.replica_index);
}

static void sub_data(sd2_stream *s, void *ud, const uint8_t *data, size_t len)
{
    agent *a = ud;
    size_t off = 0;
    sd2_consume(s, len);
    if (s != a->sub)
        return;
    if (seldon_buf_reserve(&a->sub_in, len) != 0) {
        sd2_reset(s, SD2_H2_INTERNAL_ERROR);
        return;
    }
    memcpy(a->sub_in.data + a->sub_in.len, data, len);
    a->sub_in.len += len;
    while (a->sub_in.len - off >= 5) {
        const uint8_t *p = a->sub_in.data + off;
        size_t mlen = ((size_t)p[1] << 24) | ((size_t)p[2] << 16) | ((size_t)p[3] << 8) | p[4];
        if (mlen > AG_MAX_RESPONSE) {
            sdd_log(SELDON_LOG_ERROR, "scheduler sent a %zu-byte command: too large", mlen);
            sd2_reset(s, SD2_H2_INTERNAL_ERROR);
            return;
        }
        if (a->sub_in.len - off - 5 < mlen)
            break;
        ag_models_command(a, p + 5, mlen);
        off += 5 + mlen;
    }
    if (off > 0) {
        memmove(a->sub_in.data, a->sub_in.data + off, a->sub_in.len - off);
        a->sub_in.len -= off;
    }
}

static void sub_end(sd2_stream *s, void *ud, const sd2_header *t, size_t n)
{
    agent *a = ud;
    char msg[512];
    int32_t st = status_of(t, n, msg, sizeof(msg));
    if (s == a->sub)
        sdd_log(SELDON_LOG_WARN, "scheduler ended the subscription: status %d %s", st, msg);
}

static void sub_drain(sd2_stream *s, void *ud)
{
    (void)s, (void)ud;
}

static void sub_close(sd2_stream *s, void *ud, int err, uint32_t code)
{
    agent *a = ud;
    (void)code;
    if (s != a->sub)
        return;
    a->sub = NULL;
    a->sub_in.len = 0;
    if (a->registered)
        sdd_log(SELDON_LOG_WARN, "lost the scheduler %s (%s): reconnecting", a->cfg.scheduler_host,
                sd2_strerror(err));
    else
        sdd_log(SELDON_LOG_DEBUG, "scheduler %s: %s", a->cfg.scheduler_host, sd2_strerror(err));
    a->registered = 0;
    if (!a->stopping)
        schedule_reconnect(a);
}

static const sd2_stream_cbs sub_cbs = {sub_headers, sub_data, sub_end, sub_drain, sub_close};

static int subscribe(agent *a)
{
    Seldon__Control__V1__AgentSubscribeRequest req =
        SELDON__CONTROL__V1__AGENT_SUBSCRIBE_REQUEST__INIT;
    Seldon__Control__V1__ReplicaInfo info = SELDON__CONTROL__V1__REPLICA_INFO__INIT;
    Seldon__Control__V1__LoadedModel *lm = NULL, **lmp = NULL;
    sd2_upstream *up = NULL;
    sd2_header h[6];
    char authority[96];
    seldon_buf body = SELDON_BUF_INIT;
    uint8_t *buf = NULL;
    size_t n = 0, i = 0, len;
    ag_entry *e;
    int rc;

    info.server = (char *)a->cfg.server_name;
    info.index = a->cfg.replica_index;
    info.http = a->http_addr;
    info.grpc = a->grpc_addr;
    info.n_capabilities = a->cfg.ncaps;
    info.capabilities = (char **)a->cfg.caps;
    info.memory_bytes = a->cfg.memory;
    info.overcommit_percent = a->cfg.overcommit;
    req.replica = &info;
    for (e = ag_cache_first(a->cache); e != NULL; e = e->next)
        n += e->held && e->state != AG_UNLOADING;
    if (n > 0) {
        lm = sdd_calloc(n, sizeof(*lm));
        lmp = sdd_calloc(n, sizeof(*lmp));
        if (lm == NULL || lmp == NULL) {
            rc = SELDON_ENOMEM;
            goto out;
        }
        for (e = ag_cache_first(a->cache); e != NULL; e = e->next) {
            if (!e->held || e->state == AG_UNLOADING)
                continue;
            seldon__control__v1__loaded_model__init(&lm[i]);
            lm[i].name = e->model;
            lm[i].version = e->version;
            lmp[i] = &lm[i];
            i++;
        }
    }
    req.n_loaded = n;
    req.loaded = lmp;
    len = seldon__control__v1__agent_subscribe_request__get_packed_size(&req);
    buf = sdd_malloc(len ? len : 1);
    if (buf == NULL) {
        rc = SELDON_ENOMEM;
        goto out;
    }
    seldon__control__v1__agent_subscribe_request__pack(&req, buf);
    if (frame(&body, buf, len) != 0) {
        rc = SELDON_ENOMEM;
        goto out;
    }
    rc = sd2_upstream_get(&up, a->h2c, a->sched_ip, a->sched_port);
    if (rc != 0)
        goto out;
    request_headers(h, "/seldon.control.v1.AgentService/Subscribe", authority, sizeof(authority),
                    a->sched_ip, a->sched_port);
    rc = sd2_request(&a->sub, up, h, 6, 0, &sub_cbs, a, 0);
    if (rc != 0) {
        a->sub = NULL;
        goto out;
    }
    sd2_write(a->sub, body.data, body.len);
    sd2_end(a->sub, NULL, 0);
    sdd_log(SELDON_LOG_DEBUG, "subscribing to %s with %zu model(s) held", a->cfg.scheduler_host, n);
out:
    seldon_buf_free(&body);
    sdd_free(buf);
    sdd_free(lm);
    sdd_free(lmp);
    return rc;
}

static void on_reconnect(uv_timer_t *t)
{
    agent *a = t->data;
    if (a->stopping || a->sub != NULL)
        return;
    if (subscribe(a) != 0)
        schedule_reconnect(a);
}

static void schedule_reconnect(agent *a)
{
    uint64_t d = a->backoff_ms;
    a->backoff_ms =
        d == 0 ? 100 : (d * 2 > a->cfg.reconnect_max_ms ? a->cfg.reconnect_max_ms : d * 2);
    uv_timer_start(&a->reconnect, on_reconnect, a->backoff_ms, 0);
}

/* ------------------------------------------------------------ the load report */

static int load_report_busy; /* one report in flight at a time (one agent per process) */

static void load_report_done(void *arg, int32_t status, const char *message, const uint8_t *resp,
                             size_t len)
{
    (void)arg, (void)resp, (void)len;
    load_report_busy = 0;
    if (status != 0)
        sdd_log(SELDON_LOG_DEBUG, "load report: not delivered (%d %s)", status, message);
}

/* Every --load-report: requests in flight and idle time of each model version held. */
static void on_load_report(uv_timer_t *t)
{
    agent *a = t->data;
    Seldon__Control__V1__AgentLoadReport rep = SELDON__CONTROL__V1__AGENT_LOAD_REPORT__INIT;
    Seldon__Control__V1__ModelLoad *ml = NULL, **pml = NULL;
    ag_entry *e;
    size_t n = 0, i = 0, len;
    uint8_t *buf = NULL;
    int64_t now = ag_now_ns();
    if (!a->registered || a->stopping || load_report_busy)
        return;
    for (e = ag_cache_first(a->cache); e != NULL; e = e->next)
        n++;
    if (n > 0) {
        ml = sdd_calloc(n, sizeof(*ml));
        pml = sdd_calloc(n, sizeof(*pml));
        if (ml == NULL || pml == NULL)
            goto out;
    }
    for (e = ag_cache_first(a->cache); e != NULL && i < n; e = e->next) {
        if (e->state == AG_UNLOADING)
            continue;
        seldon__control__v1__model_load__init(&ml[i]);
        ml[i].model = e->model;
        ml[i].version = e->version;
        ml[i].inflight = e->inflight;
        if (e->inflight == 0 && e->idle_since == 0)
            e->idle_since = now; /* first seen idle now */
        ml[i].idle_ms = e->inflight > 0 ? 0 : (now - e->idle_since) / 1000000;
        pml[i] = &ml[i];
        i++;
    }
    rep.server = (char *)a->cfg.server_name;
    rep.index = a->cfg.replica_index;
    rep.n_models = i;
    rep.models = pml;
    len = seldon__control__v1__agent_load_report__get_packed_size(&rep);
    buf = sdd_malloc(len ? len : 1);
    if (buf == NULL)
        goto out;
    seldon__control__v1__agent_load_report__pack(&rep, buf);
    if (ag_unary(a, a->sched_ip, a->sched_port, "/seldon.control.v1.AgentService/ReportLoad", buf,
                 len, 10000, load_report_done, NULL) == 0)
        load_report_busy = 1;
out:
    sdd_free(buf);
    sdd_free(ml);
    sdd_free(pml);
}

int ag_control_start(agent *a)
{
    uv_timer_init(a->loop, &a->reconnect);
    a->reconnect.data = a;
    if (a->sched_port == 0)
        return 0;
    uv_timer_start(&a->reconnect, on_reconnect, 0, 0);
    if (a->cfg.load_report_ms > 0) {
        uv_timer_init(a->loop, &a->load_timer);
        a->load_timer.data = a;
        a->load_timer_on = 1;
        uv_timer_start(&a->load_timer, on_load_report, a->cfg.load_report_ms,
                       a->cfg.load_report_ms);
    }
    return 0;
}

void ag_control_stop(agent *a)
{
    a->stopping = 1;
    uv_timer_stop(&a->reconnect);
    uv_close((uv_handle_t *)&a->reconnect, NULL);
    if (a->load_timer_on) {
        a->load_timer_on = 0;
        uv_timer_stop(&a->load_timer);
        uv_close((uv_handle_t *)&a->load_timer, NULL);
    }
    if (a->sub != NULL) {
        sd2_stream *s = a->sub;
        a->sub = NULL;
        sd2_reset(s, SD2_H2_CANCEL);
    }
    seldon_buf_free(&a->sub_in);
}
