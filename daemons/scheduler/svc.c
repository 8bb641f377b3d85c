/*
 * The three control services of seldon-scheduler on sd2 (h2c gRPC), all on the
 * daemon's one loop: SchedulerService (clients), AgentService (agents) and
 * RouteService (routers). Requests are decoded with protobuf-c into scheduler
 * calls; what the scheduler owes afterwards (agent commands, state events, a
 * new route table, its next deadline) is sent out by sc_pump().
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rpc.h"
#include "schedd.h"
#include "sdd.h"
#include "seldon/manifest.h"
#include "seldon_control.pb-c.h"

typedef Seldon__Control__V1__ApplyRequest ApplyRequest;
typedef Seldon__Control__V1__ApplyResponse ApplyResponse;
typedef Seldon__Control__V1__ResourceRef ResourceRef;
typedef Seldon__Control__V1__UnloadRequest UnloadRequest;
typedef Seldon__Control__V1__UnloadResponse UnloadResponse;
typedef Seldon__Control__V1__StatusRequest StatusRequest;
typedef Seldon__Control__V1__ReplicaStatus ReplicaStatus;
typedef Seldon__Control__V1__ModelVersionStatus ModelVersionStatus;
typedef Seldon__Control__V1__ModelStatus ModelStatus;
typedef Seldon__Control__V1__ModelStatusResponse ModelStatusResponse;
typedef Seldon__Control__V1__ServerReplica ServerReplica;
typedef Seldon__Control__V1__ServerStatus ServerStatus;
typedef Seldon__Control__V1__ServerStatusResponse ServerStatusResponse;
typedef Seldon__Control__V1__PipelineVersionStatus PipelineVersionStatus;
typedef Seldon__Control__V1__PipelineStatus PipelineStatus;
typedef Seldon__Control__V1__PipelineStatusResponse PipelineStatusResponse;
typedef Seldon__Control__V1__Event Event;
typedef Seldon__Control__V1__AgentSubscribeRequest AgentSubscribeRequest;
typedef Seldon__Control__V1__AgentCommand AgentCommand;
typedef Seldon__Control__V1__AgentEvent AgentEvent;
typedef Seldon__Control__V1__AgentEventResponse AgentEventResponse;
typedef Seldon__Control__V1__RouteSubscribeRequest RouteSubscribeRequest;
typedef Seldon__Control__V1__RouteUpstream RouteUpstream;
typedef Seldon__Control__V1__Route Route;
typedef Seldon__Control__V1__RouteTable RouteTable;
typedef Seldon__Control__V1__RouteCandidate RouteCandidate;
typedef Seldon__Control__V1__ExperimentStatus ExperimentStatus;
typedef Seldon__Control__V1__ExperimentStatusResponse ExperimentStatusResponse;
typedef Seldon__Control__V1__ExperimentCandidate ExperimentCandidate;
typedef Seldon__Control__V1__PipelineSubscribeRequest PipelineSubscribeRequest;
typedef Seldon__Control__V1__PipelineSpec PipelineSpec;
typedef Seldon__Control__V1__PipelineSet PipelineSet;
typedef Seldon__Control__V1__PipelineReport PipelineReport;

#define SDR_ABORTED 10
/* The shortest time between two route tables. */
#define ROUTE_INTERVAL_MS 20
/* How long after a start route tables wait for a pipeline gateway (see schedd.h). */
#define SC_GATEWAY_HOLD_MS 2000
/* A subscriber whose unsent output passes this is cut: it does not read. */
#define SUBSCRIBER_QUEUE_MAX ((size_t)16 << 20)

enum {
    M_APPLY,
    M_UNLOAD,
    M_MODEL_STATUS,
    M_SERVER_STATUS,
    M_EVENTS,
    M_AGENT_SUBSCRIBE,
    M_AGENT_REPORT,
    M_ROUTE_SUBSCRIBE,
    M_PIPELINE_STATUS,
    M_PIPELINE_SUBSCRIBE,
    M_EXPERIMENT_STATUS,
    M_AGENT_LOAD,
    M_PIPELINE_REPORT
};

static const struct method {
    int svc;
    const char *path;
} methods[] = {
    [M_APPLY] = {SC_SVC_CLIENT, "/seldon.control.v1.SchedulerService/Apply"},
    [M_UNLOAD] = {SC_SVC_CLIENT, "/seldon.control.v1.SchedulerService/Unload"},
    [M_MODEL_STATUS] = {SC_SVC_CLIENT, "/seldon.control.v1.SchedulerService/ModelStatus"},
    [M_SERVER_STATUS] = {SC_SVC_CLIENT, "/seldon.control.v1.SchedulerService/ServerStatus"},
    [M_EVENTS] = {SC_SVC_CLIENT, "/seldon.control.v1.SchedulerService/SubscribeEvents"},
    [M_AGENT_SUBSCRIBE] = {SC_SVC_AGENT, "/seldon.control.v1.AgentService/Subscribe"},
    [M_AGENT_REPORT] = {SC_SVC_AGENT, "/seldon.control.v1.AgentService/Report"},
    [M_ROUTE_SUBSCRIBE] = {SC_SVC_ROUTE, "/seldon.control.v1.RouteService/Subscribe"},
    [M_PIPELINE_STATUS] = {SC_SVC_CLIENT, "/seldon.control.v1.SchedulerService/PipelineStatus"},
    [M_PIPELINE_SUBSCRIBE] = {SC_SVC_ROUTE, "/seldon.control.v1.RouteService/SubscribePipelines"},
    [M_EXPERIMENT_STATUS] = {SC_SVC_CLIENT, "/seldon.control.v1.SchedulerService/ExperimentStatus"},
    [M_AGENT_LOAD] = {SC_SVC_AGENT, "/seldon.control.v1.AgentService/ReportLoad"},
    [M_PIPELINE_REPORT] = {SC_SVC_ROUTE, "/seldon.control.v1.RouteService/ReportPipelines"},
};

/* The list a streaming call sits in while it is open. */
enum { L_NONE, L_AGENTS, L_ROUTERS, L_WATCHERS, L_GATEWAYS, L_DATAFLOWS };

/* What a dataflow worker said it runs. */
typedef struct df_state {
    char *name;
    uint32_t version;
    int loaded;
    char *reason;
} df_state;

struct sc_call {
    sc_daemon *d;
    sd2_stream *s; /* NULL once closed */
    int method;
    int list;
    int got;         /* the request message was handled */
    int finished;    /* trailers sent */
    int route_stale; /* a newer table waits for the queue to drain */
    int blocked;     /* sd2_write said the queue is full; on_drain clears it */
    sdr_reader reader;
    sc_call *prev, *next;
    char *server; /* agents: the replica's server and index; routers: their name */
    uint32_t index;
    uint64_t route_gen_sent;
    char *gw_http, *gw_grpc; /* gateways: where routers reach them */
    int kafka;               /* gateways: in Kafka mode */
    uint64_t sub_id;         /* dataflow workers: their "seldon-subscription" */
    df_state *df;            /* dataflow workers: their last report */
    size_t ndf;
};

int64_t sc_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t sc_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static const char *nz(const char *s)
{
    return s != NULL ? s : "";
}

/* ------------------------------------------------------------------ lists */

static sc_call **list_head(sc_daemon *d, int list, size_t **count)
{
    switch (list) {
    case L_AGENTS:
        *count = &d->nagents;
        return &d->agents;
    case L_ROUTERS:
        *count = &d->nrouters;
        return &d->routers;
    case L_GATEWAYS:
        *count = &d->ngateways;
        return &d->gateways;
    case L_DATAFLOWS:
        *count = &d->ndataflows;
        return &d->dataflows;
    default:
        *count = &d->nwatchers;
        return &d->watchers;
    }
}

static void list_add(sc_call *c, int list)
{
    size_t *count;
    sc_call **head = list_head(c->d, list, &count);
    c->list = list;
    c->prev = NULL;
    c->next = *head;
    if (*head != NULL)
        (*head)->prev = c;
    *head = c;
    (*count)++;
}

static void list_remove(sc_call *c)
{
    size_t *count;
    sc_call **head;
    if (c->list == L_NONE)
        return;
    head = list_head(c->d, c->list, &count);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        *head = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    c->list = L_NONE;
    (*count)--;
}

static sc_call *find_agent(sc_daemon *d, const char *server, uint32_t index)
{
    sc_call *c;
    for (c = d->agents; c != NULL; c = c->next)
        if (c->index == index && strcmp(c->server, server) == 0)
            return c;
    return NULL;
}

/* ---------------------------------------------------------------- answers */

static void finish(sc_call *c, int32_t status, const char *message)
{
    if (c->finished)
        return;
    c->finished = 1;
    if (c->s != NULL)
        sd2_grpc_finish(c->s, status, message, NULL, 0);
}

static void fail_last(sc_call *c, int rc)
{
    const char *msg = seldon_last_error();
    finish(c, sdr_status_of(rc), *msg ? msg : seldon_strerror(rc));
}

static int frame(seldon_buf *out, const ProtobufCMessage *m);

static void send_headers(sc_call *c)
{
    if (c->s != NULL)
        sd2_grpc_send_headers(c->s, NULL, 0);
}

static void reply(sc_call *c, const ProtobufCMessage *m)
{
    if (c->finished)
        return;
    if (c->s == NULL) { /* a detached call (tests): the answer is built all the same */
        seldon_buf b = SELDON_BUF_INIT;
        frame(&b, m);
        seldon_buf_free(&b);
        c->finished = 1;
        return;
    }
    sd2_grpc_send_headers(c->s, NULL, 0);
    sdr_write(c->s, m);
    finish(c, SDR_OK, NULL);
}

/* A streaming call's write; cuts a subscriber that stopped reading. */
static void stream_write(sc_call *c, const void *data, size_t len)
{
    if (c->s == NULL || c->finished)
        return;
    if (sd2_queued(c->s) > SUBSCRIBER_QUEUE_MAX) {
        sdd_log(SELDON_LOG_WARN, "%s: subscriber does not read; closing its stream",
                methods[c->method].path);
        finish(c, SDR_RESOURCE_EXHAUSTED, "the stream's unread output passed its limit");
        return;
    }
    sd2_write(c->s, data, len);
}

static int frame(seldon_buf *out, const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    if (seldon_buf_reserve(out, n + 5) != 0)
        return -1;
    out->data[out->len] = 0;
    out->data[out->len + 1] = (uint8_t)(n >> 24);
    out->data[out->len + 2] = (uint8_t)(n >> 16);
    out->data[out->len + 3] = (uint8_t)(n >> 8);
    out->data[out->len + 4] = (uint8_t)n;
    protobuf_c_message_pack(m, out->data + out->len + 5);
    out->len += n + 5;
    return 0;
}

/* --------------------------------------------------- a simple owner of pieces */

typedef struct arena {
    void **p;
    size_t n, cap;
} arena;

static void *arena_alloc(arena *a, size_t size)
{
    void *m;
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        void **np = sdd_realloc(a->p, cap * sizeof(*np));
        if (np == NULL)
            return NULL;
        a->p = np;
        a->cap = cap;
    }
    m = sdd_calloc(1, size ? size : 1);
    if (m != NULL)
        a->p[a->n++] = m;
    return m;
}

static void arena_free(arena *a)
{
    size_t i;
    for (i = 0; i < a->n; i++)
        sdd_free(a->p[i]);
    sdd_free(a->p);
}

/* ------------------------------------------------------------------- pump */

static void on_timer(uv_timer_t *t)
{
    sc_pump(t->data);
}

static void send_command(sc_daemon *d, const seldon_sched_command *cmd)
{
    AgentCommand m = SELDON__CONTROL__V1__AGENT_COMMAND__INIT;
    seldon_buf b = SELDON_BUF_INIT;
    sc_call *c = find_agent(d, cmd->server, cmd->index);
    const char *op = cmd->op == SELDON_SCHED_LOAD ? "load" : "unload";
    seldon_series *s = NULL;
    if (c == NULL && d->local_command != NULL) {
        d->local_command(d->local_data, cmd);
        if (seldon_metric_series(&s, d->m_commands, &op) == 0)
            seldon_series_add(s, 1);
        return;
    }
    if (c == NULL) {
        sdd_log(SELDON_LOG_WARN, "command %llu (%s %s_%u) for %s/%u: that replica has no stream",
                (unsigned long long)cmd->id, op, cmd->model, cmd->version, cmd->server, cmd->index);
        return;
    }
    m.op = cmd->op == SELDON_SCHED_LOAD ? SELDON__CONTROL__V1__AGENT_COMMAND__OP__LOAD
                                        : SELDON__CONTROL__V1__AGENT_COMMAND__OP__UNLOAD;
    m.id = cmd->id;
    m.model = (char *)nz(cmd->model);
    m.version = cmd->version;
    m.spec = (char *)nz(cmd->spec);
    m.memory_bytes = cmd->memory_bytes;
    if (frame(&b, &m.base) != 0) {
        sdd_log(SELDON_LOG_ERROR, "command %llu: out of memory", (unsigned long long)cmd->id);
        return;
    }
    stream_write(c, b.data, b.len);
    seldon_buf_free(&b);
    sdd_log(SELDON_LOG_INFO, "command %llu to %s/%u: %s %s_%u", (unsigned long long)cmd->id,
            cmd->server, cmd->index, op, cmd->model, cmd->version);
    if (seldon_metric_series(&s, d->m_commands, &op) == 0)
        seldon_series_add(s, 1);
}

static void send_event(sc_daemon *d, const seldon_sched_event *ev)
{
    Event m = SELDON__CONTROL__V1__EVENT__INIT;
    seldon_buf b = SELDON_BUF_INIT;
    sc_call *c, *next;
    m.kind = (char *)nz(seldon_kind_name(ev->kind));
    m.name = (char *)nz(ev->name);
    m.version = ev->version;
    m.state = (char *)nz(ev->state);
    m.reason = (char *)nz(ev->reason);
    m.unix_ms = ev->time_ns / 1000000;
    m.server = (char *)nz(ev->server);
    m.server_index = ev->server != NULL ? ev->server_index : -1;
    if (ev->server != NULL)
        sdd_log(SELDON_LOG_INFO, "%s %s v%u on %s/%d: %s%s%s", m.kind, m.name, m.version, m.server,
                ev->server_index, m.state, *m.reason ? ": " : "", m.reason);
    else
        sdd_log(SELDON_LOG_INFO, "%s %s v%u: %s%s%s", m.kind, m.name, m.version, m.state,
                *m.reason ? ": " : "", m.reason);
    if (d->watchers == NULL)
        return;
    if (frame(&b, &m.base) != 0)
        return;
    for (c = d->watchers; c != NULL; c = next) {
        next = c->next;
        stream_write(c, b.data, b.len);
    }
    seldon_buf_free(&b);
}

/* A route's experiment: its candidates and mirror, by route name. */
static int route_split(Route *r, arena *a, const seldon_routes *t, size_t i)
{
    size_t nc = seldon_routes_candidate_count(t, i), j, to;
    uint32_t w;
    if (nc > 0) {
        r->candidates = arena_alloc(a, nc * sizeof(*r->candidates));
        if (r->candidates == NULL)
            return SELDON_ENOMEM;
        for (j = 0; j < nc; j++) {
            RouteCandidate *rc = arena_alloc(a, sizeof(*rc));
            if (rc == NULL || seldon_routes_candidate(&to, &w, t, i, j) != 0)
                return SELDON_ENOMEM;
            seldon__control__v1__route_candidate__init(rc);
            rc->name = (char *)nz(seldon_routes_name(t, to));
            rc->weight = w;
            r->candidates[j] = rc;
        }
        r->n_candidates = nc;
    }
    if (seldon_routes_mirror(&to, &w, t, i) == 0) {
        r->mirror = (char *)nz(seldon_routes_name(t, to));
        r->mirror_percent = w;
    }
    return 0;
}

/* The route table's generation: the scheduler's, plus the gateways' changes. */
static uint64_t route_gen_now(const sc_daemon *d)
{
    return seldon_sched_routes_generation(d->sched) + d->gw_gen;
}

static int sync_pipeline_upstreams(sc_daemon *d);

/* Builds the framed RouteTable for the scheduler's routes now. */
static int build_routes(sc_daemon *d)
{
    seldon_routes *t = NULL;
    RouteTable m = SELDON__CONTROL__V1__ROUTE_TABLE__INIT;
    seldon_routes_defaults defs = SELDON_ROUTES_DEFAULTS_INIT;
    arena a = {NULL, 0, 0};
    size_t i, j, n;
    int rc = d->pipelines_in_process ? 0 : sync_pipeline_upstreams(d);
    if (rc == 0)
        rc = seldon_sched_routes(&t, d->sched);
    if (rc != 0)
        return rc;
    seldon_routes_get_defaults(&defs, t);
    n = seldon_routes_count(t);
    m.generation = route_gen_now(d);
    m.n_routes = n;
    m.routes = arena_alloc(&a, n * sizeof(*m.routes));
    rc = m.routes == NULL ? SELDON_ENOMEM : 0;
    for (i = 0; i < n && rc == 0; i++) {
        Route *r = arena_alloc(&a, sizeof(*r));
        size_t nu = seldon_routes_upstream_count(t, i);
        if (r == NULL) {
            rc = SELDON_ENOMEM;
            break;
        }
        seldon__control__v1__route__init(r);
        r->name = (char *)nz(seldon_routes_name(t, i));
        /* A route on the table's defaults says -1, so that each router applies its own
           (seldon-router --routes FILE); a route's own value goes as it is. */
        r->timeout_ms = seldon_routes_timeout_ms(t, i);
        r->retries = seldon_routes_retries(t, i);
        if (r->timeout_ms == defs.timeout_ms)
            r->timeout_ms = -1;
        if (r->retries == defs.retries)
            r->retries = -1;
        r->n_upstreams = nu;
        r->upstreams = nu > 0 ? arena_alloc(&a, nu * sizeof(*r->upstreams)) : NULL;
        if (nu > 0 && r->upstreams == NULL) {
            rc = SELDON_ENOMEM;
            break;
        }
        if ((rc = route_split(r, &a, t, i)) != 0)
            break;
        for (j = 0; j < nu; j++) {
            const seldon_router_upstream *u = seldon_routes_upstream(t, i, j);
            RouteUpstream *ru = arena_alloc(&a, sizeof(*ru));
            if (ru == NULL) {
                rc = SELDON_ENOMEM;
                break;
            }
            seldon__control__v1__route_upstream__init(ru);
            ru->http = (char *)nz(u->http);
            ru->grpc = (char *)nz(u->grpc);
            ru->version = seldon_routes_upstream_version(t, i, j);
            r->upstreams[j] = ru;
        }
        m.routes[i] = r;
    }
    if (rc == 0) {
        d->route_frame.len = 0;
        if (frame(&d->route_frame, &m.base) != 0)
            rc = SELDON_ENOMEM;
    }
    if (rc == 0) {
        d->route_gen = m.generation;
        d->route_built = 1;
        sdd_log(SELDON_LOG_INFO, "route table %llu: %zu route(s)", (unsigned long long)m.generation,
                m.n_routes);
    }
    arena_free(&a);
    seldon_routes_release(t);
    return rc;
}

static void hold_over(uv_timer_t *t);

/* 1 while route tables wait for a gateway: just started, pipelines stored, none connected. */
static int routes_held(sc_daemon *d)
{
    seldon_sched_status *st = NULL;
    const seldon_sched_pipeline_status *ps;
    int64_t now;
    size_t i;
    int live = 0;
    if (d->pipelines_in_process || d->ngateways > 0 || d->closing || d->hold_until_ns == 0)
        return 0;
    now = sc_mono_ns();
    if (now >= d->hold_until_ns)
        return 0;
    if (seldon_sched_pipelines(&st, d->sched, NULL) == 0)
        for (i = 0; (ps = seldon_sched_status_pipeline(st, i)) != NULL && !live; i++)
            live = !ps->deleted;
    seldon_sched_status_free(st);
    if (live && !d->hold_armed) {
        d->hold_armed = 1;
        uv_timer_start(&d->hold_timer, hold_over,
                       (uint64_t)((d->hold_until_ns - now) / 1000000 + 1), 0);
    }
    return live;
}

static void send_routes(sc_call *c)
{
    sc_daemon *d = c->d;
    if (c->s == NULL || c->finished)
        return;
    if (routes_held(d)) {
        c->route_stale = 1; /* sent when a gateway connects, or when the hold is over */
        return;
    }
    if (c->blocked) {
        c->route_stale = 1; /* only the newest table matters: sent once the queue drains */
        return;
    }
    c->route_stale = 0;
    c->route_gen_sent = d->route_gen;
    if (sd2_write(c->s, d->route_frame.data, d->route_frame.len) == 1)
        c->blocked = 1;
}

/* The hold is over: routers that wait for a table get the one in force. */
static void hold_over(uv_timer_t *t)
{
    sc_daemon *d = t->data;
    sc_call *c, *next;
    d->hold_armed = 0;
    d->hold_until_ns = 0;
    for (c = d->routers; c != NULL; c = next) {
        next = c->next;
        if (c->route_stale && !c->blocked)
            send_routes(c);
    }
}

static void routes_due(uv_timer_t *t)
{
    sc_routes_now(t->data);
}

void sc_routes_now(sc_daemon *d)
{
    sc_call *c, *next;
    if (d->route_pending)
        uv_timer_stop(&d->route_timer);
    d->route_pending = 0;
    d->route_last_ms = uv_now(d->loop);
    if (d->closing || (d->route_built && route_gen_now(d) == d->route_gen))
        return;
    if (build_routes(d) != 0) {
        sdd_log(SELDON_LOG_ERROR, "route table: %s", seldon_last_error());
        return;
    }
    for (c = d->routers; c != NULL; c = next) {
        next = c->next;
        send_routes(c);
    }
}

void sc_timers_init(sc_daemon *d)
{
    uv_timer_init(d->loop, &d->timer);
    d->timer.data = d;
    uv_timer_init(d->loop, &d->route_timer);
    d->route_timer.data = d;
    uv_timer_init(d->loop, &d->hold_timer);
    d->hold_timer.data = d;
    d->hold_until_ns = sc_mono_ns() + (int64_t)SC_GATEWAY_HOLD_MS * 1000000;
}

void sc_timers_close(sc_daemon *d)
{
    uv_close((uv_handle_t *)&d->timer, NULL);
    uv_close((uv_handle_t *)&d->route_timer, NULL);
    uv_close((uv_handle_t *)&d->hold_timer, NULL);
}

static void gw_sync(sc_daemon *d);

void sc_pump(sc_daemon *d)
{
    seldon_sched_command cmd;
    seldon_sched_event ev;
    int64_t now, deadline;
    int guard;

    if (d->closing || d->sched == NULL)
        return;
    now = sc_now_ns();
    deadline = seldon_sched_tick(d->sched, now);
    for (guard = 0; guard < 1000000 && seldon_sched_next_command(d->sched, &cmd) == 0; guard++)
        send_command(d, &cmd);
    for (guard = 0; guard < 1000000 && seldon_sched_next_event(d->sched, &ev) == 0; guard++)
        send_event(d, &ev);
    sc_scale_pump(d);
    if (!d->was_ready && seldon_sched_ready(d->sched)) {
        d->was_ready = 1;
        sdd_log(SELDON_LOG_INFO, "ready: placing and loading models");
    }
    gw_sync(d);
    if ((!d->route_built || route_gen_now(d) != d->route_gen) && !d->route_pending) {
        /* Changes that come close together (a burst of loads) make one table: at most one
           build per ROUTE_INTERVAL_MS, and none until this loop iteration's work is done. */
        uint64_t at = d->route_last_ms + ROUTE_INTERVAL_MS, t = uv_now(d->loop);
        d->route_pending = 1;
        uv_timer_start(&d->route_timer, routes_due, at > t ? at - t : 0, 0);
    }
    if (d->after_pump != NULL)
        d->after_pump(d->local_data);
    if (deadline == INT64_MAX) {
        uv_timer_stop(&d->timer);
    } else {
        int64_t ms = deadline <= now ? 0 : (deadline - now + 999999) / 1000000;
        uv_timer_start(&d->timer, on_timer, (uint64_t)ms, 0);
    }
}

/* ---------------------------------------------------------- SchedulerService */

static void do_apply(sc_call *c, const uint8_t *msg, size_t len)
{
    sc_daemon *d = c->d;
    ApplyRequest *req = seldon__control__v1__apply_request__unpack(NULL, len, msg);
    ApplyResponse resp = SELDON__CONTROL__V1__APPLY_RESPONSE__INIT;
    seldon_manifest *m = NULL;
    uint32_t *versions = NULL;
    ResourceRef *refs = NULL, **prefs = NULL;
    size_t i, n;
    int64_t t0 = sc_mono_ns();
    int rc;

    if (req == NULL) {
        finish(c, SDR_INVALID_ARGUMENT, "ApplyRequest: not a valid protobuf message");
        return;
    }
    rc = seldon_manifest_parse(&m, req->manifest, strlen(req->manifest),
                               *req->source ? req->source : "manifest");
    if (rc != 0) {
        sdd_log(SELDON_LOG_INFO, "apply refused: %s", seldon_last_error());
        finish(c, SDR_INVALID_ARGUMENT, seldon_last_error());
        goto out;
    }
    n = seldon_manifest_count(m);
    versions = sdd_calloc(n ? n : 1, sizeof(*versions));
    refs = sdd_calloc(n ? n : 1, sizeof(*refs));
    prefs = sdd_calloc(n ? n : 1, sizeof(*prefs));
    if (versions == NULL || refs == NULL || prefs == NULL) {
        finish(c, SDR_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    rc = seldon_sched_apply(d->sched, m, versions, sc_now_ns());
    if (rc != 0) {
        sdd_log(SELDON_LOG_INFO, "apply refused: %s", seldon_last_error());
        fail_last(c, rc);
        goto out;
    }
    {
        seldon_series *s = NULL;
        if (seldon_metric_series(&s, d->m_apply, NULL) == 0)
            seldon_series_observe(s, (double)(sc_mono_ns() - t0) / 1e9);
    }
    for (i = 0; i < n; i++) {
        const seldon_resource *r = seldon_manifest_at(m, i);
        seldon__control__v1__resource_ref__init(&refs[i]);
        refs[i].kind = (char *)nz(seldon_kind_name(r->kind));
        refs[i].name = (char *)nz(r->name);
        refs[i].version = versions[i];
        prefs[i] = &refs[i];
        sdd_log(SELDON_LOG_INFO, "applied %s %s%s%u", refs[i].kind, refs[i].name,
                versions[i] ? " version " : "", versions[i]);
    }
    resp.n_resources = n;
    resp.resources = prefs;
    reply(c, &resp.base);
    sc_pump(d);
out:
    sdd_free(versions);
    sdd_free(refs);
    sdd_free(prefs);
    seldon_manifest_free(m);
    seldon__control__v1__apply_request__free_unpacked(req, NULL);
}

static int kind_of(const char *name, seldon_kind *out)
{
    static const seldon_kind kinds[] = {SELDON_KIND_MODEL, SELDON_KIND_SERVER, SELDON_KIND_PIPELINE,
                                        SELDON_KIND_EXPERIMENT};
    size_t i;
    if (*name == '\0') {
        *out = SELDON_KIND_MODEL;
        return 0;
    }
    for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (strcasecmp(name, seldon_kind_name(kinds[i])) == 0) {
            *out = kinds[i];
            return 0;
        }
    return -1;
}

/* A failed lookup of a named resource: NOT_FOUND naming it when the library said
 * nothing more, else the library's own error. */
static void fail_lookup(sc_call *c, int rc, const char *what, const char *name)
{
    char why[512];
    if (rc == SELDON_ENOTFOUND && *seldon_last_error() == '\0') {
        snprintf(why, sizeof(why), "%s \"%.300s\" not found", what, name);
        finish(c, SDR_NOT_FOUND, why);
    } else {
        fail_last(c, rc);
    }
}

static void do_unload(sc_call *c, const uint8_t *msg, size_t len)
{
    UnloadRequest *req = seldon__control__v1__unload_request__unpack(NULL, len, msg);
    UnloadResponse resp = SELDON__CONTROL__V1__UNLOAD_RESPONSE__INIT;
    seldon_kind kind;
    char why[512];
    int rc;
    if (req == NULL) {
        finish(c, SDR_INVALID_ARGUMENT, "UnloadRequest: not a valid protobuf message");
        return;
    }
    if (kind_of(req->kind, &kind) != 0) {
        snprintf(why, sizeof(why),
                 "kind: \"%.100s\" is not one of Model, Server, Pipeline, Experiment", req->kind);
        finish(c, SDR_INVALID_ARGUMENT, why);
    } else if (*req->name == '\0') {
        finish(c, SDR_INVALID_ARGUMENT, "name: required");
    } else if ((rc = seldon_sched_unload(c->d->sched, kind, req->name, sc_now_ns())) != 0) {
        fail_lookup(c, rc, seldon_kind_name(kind), req->name);
    } else {
        sdd_log(SELDON_LOG_INFO, "unload %s %s", seldon_kind_name(kind), req->name);
        reply(c, &resp.base);
        sc_pump(c->d);
    }
    seldon__control__v1__unload_request__free_unpacked(req, NULL);
}

static ProtobufCMessage *fill_model_status(sc_daemon *d, arena *a, const seldon_sched_status *st,
                                           size_t n)
{
    ModelStatusResponse *resp = arena_alloc(a, sizeof(*resp));
    size_t i, j, k;
    (void)d;
    if (resp == NULL)
        return NULL;
    seldon__control__v1__model_status_response__init(resp);
    resp->n_models = n;
    resp->models = arena_alloc(a, n * sizeof(*resp->models));
    if (resp->models == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        const seldon_sched_model_status *ms = seldon_sched_status_model(st, i);
        ModelStatus *pm = arena_alloc(a, sizeof(*pm));
        if (pm == NULL || ms == NULL)
            return NULL;
        seldon__control__v1__model_status__init(pm);
        pm->name = (char *)nz(ms->name);
        pm->deleted = ms->deleted != 0;
        pm->n_versions = ms->versions_count;
        pm->versions = arena_alloc(a, ms->versions_count * sizeof(*pm->versions));
        if (pm->versions == NULL)
            return NULL;
        for (j = 0; j < ms->versions_count; j++) {
            const seldon_sched_version_status *vs = &ms->versions[j];
            ModelVersionStatus *pv = arena_alloc(a, sizeof(*pv));
            if (pv == NULL)
                return NULL;
            seldon__control__v1__model_version_status__init(pv);
            pv->version = vs->version;
            pv->server = (char *)nz(vs->server);
            pv->state = (char *)nz(vs->state);
            pv->reason = (char *)nz(vs->reason);
            pv->available_replicas = vs->available_replicas;
            pv->desired_replicas = vs->desired_replicas;
            pv->last_change_unix_ms = vs->last_change_ns / 1000000;
            pv->spec = (char *)nz(vs->spec);
            pv->n_replicas = vs->replicas_count;
            pv->replicas = arena_alloc(a, vs->replicas_count * sizeof(*pv->replicas));
            if (pv->replicas == NULL)
                return NULL;
            for (k = 0; k < vs->replicas_count; k++) {
                ReplicaStatus *pr = arena_alloc(a, sizeof(*pr));
                if (pr == NULL)
                    return NULL;
                seldon__control__v1__replica_status__init(pr);
                pr->server_index = vs->replicas[k].server_index;
                pr->state = (char *)nz(vs->replicas[k].state);
                pr->reason = (char *)nz(vs->replicas[k].reason);
                pr->last_change_unix_ms = vs->replicas[k].last_change_ns / 1000000;
                pv->replicas[k] = pr;
            }
            pm->versions[j] = pv;
        }
        resp->models[i] = pm;
    }
    return &resp->base;
}

/*
 * Kafka mode (a gateway in --kafka mode connected): the gateways only carry requests to
 * and from Kafka, so a pipeline that its models and gateways allow is Ready once a dataflow
 * worker runs its version. dataflow_runs: 1 when one does; else 0, *state and why say what
 * it waits for, or a worker's failure.
 */
static int dataflow_runs(sc_daemon *d, const char *name, uint32_t version, const char **state,
                         char *why, size_t cap)
{
    const df_state *failed = NULL;
    const char *by = NULL;
    sc_call *w;
    size_t i;
    for (w = d->dataflows; w != NULL; w = w->next)
        for (i = 0; i < w->ndf; i++)
            if (w->df[i].version == version && strcmp(w->df[i].name, name) == 0) {
                if (w->df[i].loaded)
                    return 1; /* served */
                if (failed == NULL) {
                    failed = &w->df[i];
                    by = w->server;
                }
            }
    *state = "PipelineCreating";
    if (failed != NULL) {
        *state = "PipelineFailed";
        snprintf(why, cap, "dataflow worker %.100s: %.450s", nz(by), nz(failed->reason));
    } else if (d->ndataflows == 0) {
        snprintf(why, cap, "waiting for a dataflow worker (seldon-dataflow) to connect");
    } else {
        snprintf(why, cap,
                 "waiting for one of %zu dataflow worker(s) (seldon-dataflow) to run version %u",
                 d->ndataflows, version);
    }
    return 0;
}

static void dataflow_state(sc_daemon *d, arena *a, const seldon_sched_pipeline_status *ps,
                           PipelineVersionStatus *pv)
{
    const char *state = NULL;
    char *why;
    if (d->nkafka == 0)
        return;
    why = arena_alloc(a, 600);
    if (why == NULL || dataflow_runs(d, nz(ps->name), ps->version, &state, why, 600))
        return;
    pv->state = (char *)state;
    pv->reason = why;
}

static ProtobufCMessage *fill_pipeline_status(sc_daemon *d, arena *a, const seldon_sched_status *st,
                                              size_t n)
{
    PipelineStatusResponse *resp = arena_alloc(a, sizeof(*resp));
    size_t i;
    if (resp == NULL)
        return NULL;
    seldon__control__v1__pipeline_status_response__init(resp);
    resp->n_pipelines = n;
    resp->pipelines = arena_alloc(a, n * sizeof(*resp->pipelines));
    if (resp->pipelines == NULL && n > 0)
        return NULL;
    for (i = 0; i < n; i++) {
        const seldon_sched_pipeline_status *ps = seldon_sched_status_pipeline(st, i);
        PipelineStatus *pp = arena_alloc(a, sizeof(*pp));
        PipelineVersionStatus *pv = arena_alloc(a, sizeof(*pv));
        if (pp == NULL || pv == NULL || ps == NULL)
            return NULL;
        seldon__control__v1__pipeline_status__init(pp);
        seldon__control__v1__pipeline_version_status__init(pv);
        pp->name = (char *)nz(ps->name);
        pp->deleted = ps->deleted != 0;
        pp->n_versions = 1;
        pp->versions = arena_alloc(a, sizeof(*pp->versions));
        if (pp->versions == NULL)
            return NULL;
        pp->versions[0] = pv;
        pv->version = ps->version;
        pv->state = (char *)nz(ps->state);
        pv->reason = (char *)nz(ps->reason);
        if (!d->pipelines_in_process && d->ngateways == 0 && !ps->deleted &&
            strcmp(pv->state, "PipelineReady") == 0) {
            /* Ready means served: nothing serves it until a gateway connects. */
            pv->state = "PipelineCreating";
            pv->reason = "waiting for a pipeline gateway (seldon-pipelinegateway) to connect";
        }
        if (!d->pipelines_in_process && !ps->deleted && strcmp(pv->state, "PipelineReady") == 0)
            dataflow_state(d, a, ps, pv);
        pv->last_change_unix_ms = ps->last_change_ns / 1000000;
        pv->models_ready = ps->models_ready != 0;
        pv->spec = (char *)nz(ps->spec);
        /* The snapshot's string arrays live as long as st, which outlives the reply. */
        pv->n_waiting_for = ps->waiting_count;
        pv->waiting_for = (char **)ps->waiting;
        pv->n_models = ps->models_count;
        pv->models = (char **)ps->models;
        resp->pipelines[i] = pp;
    }
    return &resp->base;
}

static ProtobufCMessage *fill_experiment_status(sc_daemon *d, arena *a,
                                                const seldon_sched_status *st, size_t n)
{
    ExperimentStatusResponse *resp = arena_alloc(a, sizeof(*resp));
    size_t i, j;
    (void)d;
    if (resp == NULL)
        return NULL;
    seldon__control__v1__experiment_status_response__init(resp);
    resp->n_experiments = n;
    resp->experiments = n > 0 ? arena_alloc(a, n * sizeof(*resp->experiments)) : NULL;
    if (resp->experiments == NULL && n > 0)
        return NULL;
    for (i = 0; i < n; i++) {
        const seldon_sched_experiment_status *es = seldon_sched_status_experiment(st, i);
        ExperimentStatus *ep = arena_alloc(a, sizeof(*ep));
        if (ep == NULL || es == NULL)
            return NULL;
        seldon__control__v1__experiment_status__init(ep);
        ep->name = (char *)nz(es->name);
        ep->default_ = (char *)nz(es->default_name);
        ep->resource_type = (char *)nz(es->resource_type);
        ep->mirror = (char *)nz(es->mirror);
        ep->mirror_percent = es->mirror_percent;
        ep->active = es->active != 0;
        ep->candidates_ready = es->candidates_ready != 0;
        ep->mirror_ready = es->mirror_ready != 0;
        ep->state = (char *)nz(es->state);
        ep->reason = (char *)nz(es->reason);
        ep->last_change_unix_ms = es->last_change_ns / 1000000;
        ep->spec = (char *)nz(es->spec);
        if (es->candidates_count > 0) {
            ep->candidates = arena_alloc(a, es->candidates_count * sizeof(*ep->candidates));
            if (ep->candidates == NULL)
                return NULL;
            for (j = 0; j < es->candidates_count; j++) {
                ExperimentCandidate *ec = arena_alloc(a, sizeof(*ec));
                if (ec == NULL)
                    return NULL;
                seldon__control__v1__experiment_candidate__init(ec);
                ec->name = (char *)nz(es->candidates[j]);
                ec->weight = es->weights[j];
                ep->candidates[j] = ec;
            }
            ep->n_candidates = es->candidates_count;
        }
        resp->experiments[i] = ep;
    }
    return &resp->base;
}

static ProtobufCMessage *fill_server_status(sc_daemon *d, arena *a, const seldon_sched_status *st,
                                            size_t n)
{
    ServerStatusResponse *resp = arena_alloc(a, sizeof(*resp));
    size_t i, j;
    if (resp == NULL)
        return NULL;
    seldon__control__v1__server_status_response__init(resp);
    resp->n_servers = n;
    resp->servers = arena_alloc(a, n * sizeof(*resp->servers));
    if (resp->servers == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        const seldon_sched_server_status *ss = seldon_sched_status_server(st, i);
        ServerStatus *ps = arena_alloc(a, sizeof(*ps));
        if (ps == NULL || ss == NULL)
            return NULL;
        seldon__control__v1__server_status__init(ps);
        ps->name = (char *)nz(ss->name);
        ps->desired_replicas = ss->desired_replicas;
        ps->connected_replicas = ss->connected_replicas;
        ps->loaded_models = ss->loaded_models;
        ps->state = ss->connected_replicas >= ss->desired_replicas && ss->connected_replicas > 0
                        ? "Ready"
                        : "NotReady";
        {
            const char *why = NULL;
            seldon_sched_server_scale(&ps->requested_replicas, &why, d->sched, ss->name);
            ps->scale_reason = (char *)nz(why);
        }
        ps->n_replicas = ss->replicas_count;
        ps->replicas = arena_alloc(a, ss->replicas_count * sizeof(*ps->replicas));
        if (ps->replicas == NULL)
            return NULL;
        for (j = 0; j < ss->replicas_count; j++) {
            const seldon_sched_server_replica_status *rs = &ss->replicas[j];
            ServerReplica *pr = arena_alloc(a, sizeof(*pr));
            if (pr == NULL)
                return NULL;
            seldon__control__v1__server_replica__init(pr);
            pr->index = rs->index;
            pr->http = (char *)nz(rs->http);
            pr->grpc = (char *)nz(rs->grpc);
            pr->n_capabilities = rs->capabilities_count;
            pr->capabilities = (char **)rs->capabilities;
            pr->memory_bytes = rs->memory_bytes;
            pr->available_memory_bytes = rs->available_memory_bytes;
            pr->overcommit_percent = rs->overcommit_percent;
            pr->n_models = rs->models_count;
            pr->models = (char **)rs->models;
            pr->connected = rs->connected != 0;
            pr->draining = rs->draining != 0;
            ps->replicas[j] = pr;
        }
        resp->servers[i] = ps;
    }
    return &resp->base;
}

/* The four status calls differ only in the query and in how its snapshot becomes the
 * reply: fill builds the reply on the arena, or returns NULL when out of memory. */
typedef int (*status_query)(seldon_sched_status **out, seldon_sched *sched, const char *name);
typedef ProtobufCMessage *(*status_fill)(sc_daemon *d, arena *a, const seldon_sched_status *st,
                                         size_t n);

static void do_status(sc_call *c, const uint8_t *msg, size_t len, const char *what,
                      status_query query, status_fill fill)
{
    StatusRequest *req = seldon__control__v1__status_request__unpack(NULL, len, msg);
    seldon_sched_status *st = NULL;
    ProtobufCMessage *resp;
    arena a = {NULL, 0, 0};
    int rc;
    if (req == NULL) {
        finish(c, SDR_INVALID_ARGUMENT, "StatusRequest: not a valid protobuf message");
        return;
    }
    rc = query(&st, c->d->sched, *req->name ? req->name : NULL);
    if (rc != 0) {
        fail_lookup(c, rc, what, req->name);
        goto out;
    }
    resp = fill(c->d, &a, st, seldon_sched_status_count(st));
    if (resp == NULL)
        finish(c, SDR_RESOURCE_EXHAUSTED, "out of memory");
    else
        reply(c, resp);
out:
    arena_free(&a);
    seldon_sched_status_free(st);
    seldon__control__v1__status_request__free_unpacked(req, NULL);
}

static void do_events(sc_call *c)
{
    send_headers(c);
    list_add(c, L_WATCHERS);
    sdd_log(SELDON_LOG_DEBUG, "event subscriber joined (%zu)", c->d->nwatchers);
}

/* ------------------------------------------------------------- AgentService */

static void do_agent_subscribe(sc_call *c, const uint8_t *msg, size_t len)
{
    sc_daemon *d = c->d;
    AgentSubscribeRequest *req =
        seldon__control__v1__agent_subscribe_request__unpack(NULL, len, msg);
    seldon_sched_replica rep;
    seldon_sched_loaded *loaded = NULL;
    sc_call *old;
    size_t i;
    int rc;

    if (req == NULL) {
        finish(c, SDR_INVALID_ARGUMENT, "AgentSubscribeRequest: not a valid protobuf message");
        return;
    }
    if (req->replica == NULL || *req->replica->server == '\0') {
        finish(c, SDR_INVALID_ARGUMENT, "replica.server: required");
        goto out;
    }
    loaded = sdd_calloc(req->n_loaded ? req->n_loaded : 1, sizeof(*loaded));
    c->server = sdd_strndup(req->replica->server, strlen(req->replica->server));
    if (loaded == NULL || c->server == NULL) {
        finish(c, SDR_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    c->index = req->replica->index;
    for (i = 0; i < req->n_loaded; i++) {
        loaded[i].model = req->loaded[i]->name;
        loaded[i].version = req->loaded[i]->version;
    }
    memset(&rep, 0, sizeof(rep));
    rep.server = req->replica->server;
    rep.index = req->replica->index;
    rep.http = *req->replica->http ? req->replica->http : NULL;
    rep.grpc = *req->replica->grpc ? req->replica->grpc : NULL;
    rep.capabilities = (const char *const *)req->replica->capabilities;
    rep.capabilities_count = req->replica->n_capabilities;
    rep.memory_bytes = req->replica->memory_bytes;
    rep.overcommit_percent = req->replica->overcommit_percent;

    /* A new stream from the same replica replaces the old one, which is not a disconnect. */
    old = find_agent(d, rep.server, rep.index);
    if (old != NULL) {
        list_remove(old);
        finish(old, SDR_ABORTED, "replaced by a newer Subscribe from the same replica");
    }
    list_add(c, L_AGENTS);
    rc = seldon_sched_agent_connect(d->sched, &rep, loaded, req->n_loaded, sc_now_ns());
    if (rc != 0) {
        list_remove(c);
        sdd_log(SELDON_LOG_WARN, "agent %s/%u refused: %s", rep.server, rep.index,
                seldon_last_error());
        fail_last(c, rc);
        if (old != NULL)
            seldon_sched_agent_disconnect(d->sched, rep.server, rep.index, sc_now_ns());
        sc_pump(d);
        goto out;
    }
    send_headers(c);
    sdd_log(SELDON_LOG_INFO, "agent %s/%u connected (%s%s%s), holding %zu model(s)", rep.server,
            rep.index, nz(rep.http), rep.grpc ? " " : "", nz(rep.grpc), req->n_loaded);
    sc_pump(d);
out:
    sdd_free(loaded);
    seldon__control__v1__agent_subscribe_request__free_unpacked(req, NULL);
}

static void do_agent_report(sc_call *c, const uint8_t *msg, size_t len)
{
    AgentEvent *req = seldon__control__v1__agent_event__unpack(NULL, len, msg);
    AgentEventResponse resp = SELDON__CONTROL__V1__AGENT_EVENT_RESPONSE__INIT;
    seldon_sched_event_type type;
    int rc;
    if (req == NULL) {
        finish(c, SDR_INVALID_ARGUMENT, "AgentEvent: not a valid protobuf message");
        return;
    }
    switch (req->type) {
    case SELDON__CONTROL__V1__AGENT_EVENT__TYPE__LOADED:
        type = SELDON_SCHED_LOADED;
        break;
    case SELDON__CONTROL__V1__AGENT_EVENT__TYPE__LOAD_FAILED:
        type = SELDON_SCHED_LOAD_FAILED;
        break;
    case SELDON__CONTROL__V1__AGENT_EVENT__TYPE__UNLOADED:
        type = SELDON_SCHED_UNLOADED;
        break;
    case SELDON__CONTROL__V1__AGENT_EVENT__TYPE__UNLOAD_FAILED:
        type = SELDON_SCHED_UNLOAD_FAILED;
        break;
    default:
        finish(c, SDR_INVALID_ARGUMENT,
               "type: must be LOADED, LOAD_FAILED, UNLOADED or "
               "UNLOAD_FAILED");
        goto out;
    }
    sdd_log(SELDON_LOG_INFO, "agent %s/%u reports %s_%u %s%s%s (command %llu)", req->server,
            req->index, req->model, req->version,
            type == SELDON_SCHED_LOADED        ? "loaded"
            : type == SELDON_SCHED_LOAD_FAILED ? "load failed"
            : type == SELDON_SCHED_UNLOADED    ? "unloaded"
                                               : "unload failed",
            *req->reason ? ": " : "", req->reason, (unsigned long long)req->command_id);
    rc = seldon_sched_agent_event(c->d->sched, req->server, req->index, req->command_id, req->model,
                                  req->version, type, *req->reason ? req->reason : NULL,
                                  sc_now_ns());
    if (rc != 0)
        fail_last(c, rc);
    else
        reply(c, &resp.base);
    sc_pump(c->d);
out:
    seldon__control__v1__agent_event__free_unpacked(req, NULL);
}

/* The load of an agent's models, for the autoscaler (docs/autoscaling.md). */
static void do_agent_load(sc_call *c, const uint8_t *msg, size_t len)
{
    Seldon__Control__V1__AgentLoadReport *req =
        seldon__control__v1__agent_load_report__unpack(NULL, len, msg);
    AgentEventResponse resp = SELDON__CONTROL__V1__AGENT_EVENT_RESPONSE__INIT;
    int64_t now = sc_now_ns();
    size_t i;
    int rc = 0;
    if (req == NULL) {
        finish(c, SDR_INVALID_ARGUMENT, "AgentLoadReport: not a valid protobuf message");
        return;
    }
    for (i = 0; i < req->n_models && rc == 0; i++) {
        const Seldon__Control__V1__ModelLoad *ml = req->models[i];
        if (ml->model == NULL || *ml->model == '\0')
            continue;
        rc = seldon_sched_model_load(c->d->sched, req->server, req->index, ml->model, ml->version,
                                     ml->inflight, ml->idle_ms, now);
    }
    if (rc != 0)
        fail_last(c, rc);
    else
        reply(c, &resp.base);
    sc_pump(c->d);
    seldon__control__v1__agent_load_report__free_unpacked(req, NULL);
}

/* ------------------------------------------------------------- RouteService */

static void do_route_subscribe(sc_call *c, const uint8_t *msg, size_t len)
{
    RouteSubscribeRequest *req =
        seldon__control__v1__route_subscribe_request__unpack(NULL, len, msg);
    const char *name = req != NULL && *req->router ? req->router : "(unnamed)";
    c->server = sdd_strndup(name, strlen(name));
    if (req != NULL)
        seldon__control__v1__route_subscribe_request__free_unpacked(req, NULL);
    if (c->server == NULL) {
        finish(c, SDR_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    if (!c->d->route_built && build_routes(c->d) != 0) {
        fail_last(c, seldon_last_error_code() ? seldon_last_error_code() : SELDON_EINTERNAL);
        return;
    }
    send_headers(c);
    list_add(c, L_ROUTERS);
    send_routes(c);
    sdd_log(SELDON_LOG_INFO, "router %s subscribed to routes (table %llu)", c->server,
            (unsigned long long)c->d->route_gen);
}

/* ---------------------------------------------------------- pipeline gateways */

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    size_t i;
    for (i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* The connected gateways serve every live pipeline's route "<p>.pipeline", in the library's
   table (so experiments split over pipelines too). */
static int sync_pipeline_upstreams(sc_daemon *d)
{
    seldon_sched_upstream *ups = sdd_calloc(d->ngateways + 1, sizeof(*ups));
    size_t nu = 0;
    sc_call *g;
    int rc;
    if (ups == NULL)
        return sdd_error(SELDON_ENOMEM, "out of memory");
    for (g = d->gateways; g != NULL && nu < d->ngateways; g = g->next) {
        ups[nu].http = g->gw_http;
        ups[nu++].grpc = g->gw_grpc;
    }
    rc = seldon_sched_set_pipeline_upstreams(d->sched, ups, nu);
    sdd_free(ups);
    return rc;
}

/* The PipelineSet now, framed into out (unless NULL); *names: a hash of the live pipelines'
   names, *hash: of what a gateway is told (names, versions, states, the gateways). */
static int build_pipeline_set(sc_daemon *d, seldon_buf *out, uint64_t *names, uint64_t *hash)
{
    PipelineSet m = SELDON__CONTROL__V1__PIPELINE_SET__INIT;
    seldon_sched_status *st = NULL;
    arena a = {NULL, 0, 0};
    size_t n = 0, i;
    sc_call *g;
    int rc = 0;
    *names = *hash = 0xcbf29ce484222325ull;
    if (seldon_sched_pipelines(&st, d->sched, NULL) == 0)
        while (seldon_sched_status_pipeline(st, n) != NULL)
            n++;
    m.pipelines = arena_alloc(&a, (n + 1) * sizeof(*m.pipelines));
    m.gateways = arena_alloc(&a, (d->ngateways + 1) * sizeof(*m.gateways));
    if (m.pipelines == NULL || m.gateways == NULL) {
        rc = SELDON_ENOMEM;
        goto out;
    }
    for (i = 0; i < n; i++) {
        const seldon_sched_pipeline_status *ps = seldon_sched_status_pipeline(st, i);
        PipelineSpec *p;
        if (ps->deleted)
            continue;
        p = arena_alloc(&a, sizeof(*p));
        if (p == NULL) {
            rc = SELDON_ENOMEM;
            goto out;
        }
        seldon__control__v1__pipeline_spec__init(p);
        p->name = (char *)nz(ps->name);
        p->version = ps->version;
        p->spec = (char *)nz(ps->spec);
        p->state = (char *)nz(ps->state);
        p->ready = strcmp(p->state, "PipelineReady") == 0;
        /* For Kafka gateways' /ready: set only once a worker has subscribed to this
           scheduler, so that workers run from --pipeline files alone keep serving. */
        if (d->nkafka > 0 && d->dataflow_seen) {
            const char *state = NULL;
            char *why = arena_alloc(&a, 600);
            if (why == NULL) {
                rc = SELDON_ENOMEM;
                goto out;
            }
            *why = 0;
            p->dataflow = dataflow_runs(d, p->name, p->version, &state, why, 600) ? 1 : 2;
            p->dataflow_reason = why;
            *hash = fnv(*hash, &p->dataflow, sizeof(p->dataflow));
            *hash = fnv(*hash, why, strlen(why) + 1);
        }
        m.pipelines[m.n_pipelines++] = p;
        *names = fnv(*names, p->name, strlen(p->name) + 1);
        *hash = fnv(*hash, p->name, strlen(p->name) + 1);
        *hash = fnv(*hash, &p->version, sizeof(p->version));
        *hash = fnv(*hash, p->state, strlen(p->state) + 1);
    }
    for (g = d->gateways; g != NULL; g = g->next) {
        RouteUpstream *u = arena_alloc(&a, sizeof(*u));
        if (u == NULL) {
            rc = SELDON_ENOMEM;
            goto out;
        }
        seldon__control__v1__route_upstream__init(u);
        u->http = g->gw_http;
        u->grpc = g->gw_grpc;
        m.gateways[m.n_gateways++] = u;
        *hash = fnv(*hash, u->http, strlen(u->http) + 1);
    }
    m.generation = d->pl_gen + 1;
    if (out != NULL && frame(out, &m.base) != 0)
        rc = SELDON_ENOMEM;
out:
    arena_free(&a);
    seldon_sched_status_free(st);
    return rc;
}

/* After every pump: a changed set of pipelines goes to every gateway. */
static void gw_sync(sc_daemon *d)
{
    seldon_buf b = SELDON_BUF_INIT;
    uint64_t h, names;
    sc_call *g, *next;
    if (d->pipelines_in_process || d->closing)
        return;
    /* Framed only for subscribers to send it to; the hashes say what changed either way. */
    if (build_pipeline_set(d, d->gateways != NULL || d->dataflows != NULL ? &b : NULL, &names,
                           &h) != 0) {
        seldon_buf_free(&b);
        return;
    }
    if (names != d->pl_names) { /* a route appears or goes */
        d->pl_names = names;
        d->gw_gen++;
    }
    if (h != d->pl_hash) {
        d->pl_hash = h;
        d->pl_gen++;
        for (g = d->gateways; g != NULL; g = next) {
            next = g->next;
            stream_write(g, b.data, b.len);
        }
        for (g = d->dataflows; g != NULL; g = next) {
            next = g->next;
            stream_write(g, b.data, b.len);
        }
    }
    seldon_buf_free(&b);
}

/* A dataflow worker subscribes: the pipelines now and after every change; no route. */
static void dataflow_subscribe(sc_call *c, const PipelineSubscribeRequest *req)
{
    sc_daemon *d = c->d;
    seldon_buf b = SELDON_BUF_INIT;
    uint64_t names, h, gen;
    char id[24];
    sd2_header hd;
    const char *name = *req->gateway ? req->gateway : "(unnamed)";
    c->server = sdd_strndup(name, strlen(name));
    if (c->server == NULL) {
        finish(c, SDR_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    c->sub_id = ++d->sub_ids;
    snprintf(id, sizeof(id), "%llu", (unsigned long long)c->sub_id);
    hd = (sd2_header){"seldon-subscription", 19, id, strlen(id)};
    if (c->s != NULL)
        sd2_grpc_send_headers(c->s, &hd, 1);
    list_add(c, L_DATAFLOWS);
    d->dataflow_seen = 1;
    sdd_log(SELDON_LOG_INFO, "dataflow worker %s connected (subscription %s)", c->server, id);
    gen = d->pl_gen;
    gw_sync(d); /* one more worker: what Kafka gateways are told may change */
    if (d->pl_gen == gen && build_pipeline_set(d, &b, &names, &h) == 0)
        stream_write(c, b.data, b.len); /* else gw_sync sent it the new set */
    seldon_buf_free(&b);
}

static void df_states_free(sc_call *c)
{
    size_t i;
    for (i = 0; i < c->ndf; i++) {
        sdd_free(c->df[i].name);
        sdd_free(c->df[i].reason);
    }
    sdd_free(c->df);
    c->df = NULL;
    c->ndf = 0;
}

/* What a dataflow worker runs now: replaces its last report. */
static void do_pipeline_report(sc_call *c, const uint8_t *msg, size_t len)
{
    sc_daemon *d = c->d;
    PipelineReport *req = seldon__control__v1__pipeline_report__unpack(NULL, len, msg);
    Seldon__Control__V1__PipelineReportResponse resp =
        SELDON__CONTROL__V1__PIPELINE_REPORT_RESPONSE__INIT;
    df_state *st = NULL;
    sc_call *w;
    size_t i, failed = 0;
    if (req == NULL) {
        finish(c, SDR_INVALID_ARGUMENT, "PipelineReport: not a valid protobuf message");
        return;
    }
    for (w = d->dataflows; w != NULL && w->sub_id != req->subscription; w = w->next)
        ;
    if (w == NULL) {
        finish(c, SDR_NOT_FOUND,
               "PipelineReport: subscription: no such dataflow subscription is open");
        goto out;
    }
    st = sdd_calloc(req->n_pipelines + 1, sizeof(*st));
    for (i = 0; st != NULL && i < req->n_pipelines; i++) {
        const Seldon__Control__V1__PipelineLoadState *p = req->pipelines[i];
        st[i].name = sdd_strndup(p->name, strlen(p->name));
        st[i].reason = sdd_strndup(p->reason, strlen(p->reason));
        st[i].version = p->version;
        st[i].loaded = p->loaded != 0;
        failed += !st[i].loaded;
        if (st[i].name == NULL || st[i].reason == NULL) {
            size_t k;
            for (k = 0; k <= i; k++) {
                sdd_free(st[k].name);
                sdd_free(st[k].reason);
            }
            sdd_free(st);
            st = NULL;
        }
    }
    if (st == NULL) {
        finish(c, SDR_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    df_states_free(w);
    w->df = st;
    w->ndf = req->n_pipelines;
    sdd_log(SELDON_LOG_INFO, "dataflow worker %s: %zu pipeline(s) running, %zu failed", w->server,
            req->n_pipelines - failed, failed);
    reply(c, &resp.base);
    gw_sync(d); /* Kafka gateways' readiness follows what the workers run */
out:
    seldon__control__v1__pipeline_report__free_unpacked(req, NULL);
}

static void do_pipeline_subscribe(sc_call *c, const uint8_t *msg, size_t len)
{
    sc_daemon *d = c->d;
    PipelineSubscribeRequest *req =
        seldon__control__v1__pipeline_subscribe_request__unpack(NULL, len, msg);
    seldon_buf b = SELDON_BUF_INIT;
    uint64_t names, h;
    if (req == NULL) {
        finish(c, SDR_INVALID_ARGUMENT, "PipelineSubscribeRequest: not a valid protobuf message");
        return;
    }
    if (d->pipelines_in_process) {
        finish(c, SDR_FAILED_PRECONDITION, "this scheduler's host serves pipelines itself");
        goto out;
    }
    if (req->dataflow) {
        dataflow_subscribe(c, req);
        goto out;
    }
    if (*req->http == '\0' && *req->grpc == '\0') {
        finish(c, SDR_INVALID_ARGUMENT,
               "PipelineSubscribeRequest: http or grpc: the gateway's address is required");
        goto out;
    }
    c->server = sdd_strndup(*req->gateway ? req->gateway : "(unnamed)",
                            strlen(*req->gateway ? req->gateway : "(unnamed)"));
    c->gw_http = sdd_strndup(req->http, strlen(req->http));
    c->gw_grpc = sdd_strndup(req->grpc, strlen(req->grpc));
    if (c->server == NULL || c->gw_http == NULL || c->gw_grpc == NULL) {
        finish(c, SDR_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    send_headers(c);
    list_add(c, L_GATEWAYS);
    c->kafka = req->kafka != 0;
    d->nkafka += (size_t)c->kafka;
    d->gw_gen++; /* its address joins the pipelines' routes */
    sdd_log(SELDON_LOG_INFO, "pipeline gateway %s (%s) connected%s", c->server, c->gw_http,
            c->kafka ? " in Kafka mode" : "");
    /* The set now goes to every gateway (the list of gateways changed); this one gets it
       even when nothing else changed. */
    d->pl_hash = 0;
    gw_sync(d);
    if (d->pl_hash == 0 && build_pipeline_set(d, &b, &names, &h) == 0)
        stream_write(c, b.data, b.len);
    seldon_buf_free(&b);
    sc_pump(d);
out:
    seldon__control__v1__pipeline_subscribe_request__free_unpacked(req, NULL);
}

/* --------------------------------------------------------------- streams */

static int on_message(void *user_data, const uint8_t *msg, size_t len)
{
    sc_call *c = user_data;
    if (c->got)
        return 0; /* every method takes one request message */
    c->got = 1;
    switch (c->method) {
    case M_APPLY:
        do_apply(c, msg, len);
        break;
    case M_UNLOAD:
        do_unload(c, msg, len);
        break;
    case M_MODEL_STATUS:
        do_status(c, msg, len, "model", seldon_sched_models, fill_model_status);
        break;
    case M_SERVER_STATUS:
        do_status(c, msg, len, "server", seldon_sched_servers, fill_server_status);
        break;
    case M_EVENTS:
        do_events(c);
        break;
    case M_AGENT_SUBSCRIBE:
        do_agent_subscribe(c, msg, len);
        break;
    case M_AGENT_REPORT:
        do_agent_report(c, msg, len);
        break;
    case M_ROUTE_SUBSCRIBE:
        do_route_subscribe(c, msg, len);
        break;
    case M_PIPELINE_STATUS:
        do_status(c, msg, len, "pipeline", seldon_sched_pipelines, fill_pipeline_status);
        break;
    case M_PIPELINE_SUBSCRIBE:
        do_pipeline_subscribe(c, msg, len);
        break;
    case M_EXPERIMENT_STATUS:
        do_status(c, msg, len, "experiment", seldon_sched_experiments, fill_experiment_status);
        break;
    case M_AGENT_LOAD:
        do_agent_load(c, msg, len);
        break;
    case M_PIPELINE_REPORT:
        do_pipeline_report(c, msg, len);
        break;
    }
    return 0;
}

static void st_data(sd2_stream *s, void *user_data, const uint8_t *data, size_t len)
{
    sc_call *c = user_data;
    if (!c->got && sdr_reader_feed(&c->reader, data, len, on_message, c) < 0)
        finish(c, SDR_INVALID_ARGUMENT, seldon_last_error());
    sd2_consume(s, len);
}

static void st_end(sd2_stream *s, void *user_data, const sd2_header *trailers, size_t n)
{
    sc_call *c = user_data;
    (void)s;
    (void)trailers;
    (void)n;
    if (!c->got && !c->finished)
        finish(c, SDR_INVALID_ARGUMENT, "the call ended without its request message");
}

static void st_drain(sd2_stream *s, void *user_data)
{
    sc_call *c = user_data;
    (void)s;
    c->blocked = 0;
    if (c->list == L_ROUTERS && c->route_stale && c->d->route_gen != c->route_gen_sent)
        send_routes(c);
}

static void st_close(sd2_stream *s, void *user_data, int err, uint32_t h2_code)
{
    sc_call *c = user_data;
    sc_daemon *d = c->d;
    int was_agent = c->list == L_AGENTS;
    (void)s;
    (void)h2_code;
    c->s = NULL;
    list_remove(c);
    if (was_agent) {
        if (!d->closing) {
            sdd_log(SELDON_LOG_INFO, "agent %s/%u disconnected (%s)", c->server, c->index,
                    sd2_strerror(err));
            if (seldon_sched_agent_disconnect(d->sched, c->server, c->index, sc_now_ns()) != 0)
                sdd_log(SELDON_LOG_WARN, "agent %s/%u disconnect: %s", c->server, c->index,
                        seldon_last_error());
            sc_pump(d);
        }
    } else if (c->method == M_ROUTE_SUBSCRIBE && c->server != NULL) {
        sdd_log(SELDON_LOG_INFO, "router %s unsubscribed", c->server);
    } else if (c->method == M_PIPELINE_SUBSCRIBE && c->sub_id != 0) {
        sdd_log(SELDON_LOG_INFO, "dataflow worker %s disconnected (subscription %llu)",
                nz(c->server), (unsigned long long)c->sub_id);
        if (!d->closing)
            gw_sync(d);
    } else if (c->method == M_PIPELINE_SUBSCRIBE && c->gw_http != NULL) {
        d->nkafka -= (size_t)c->kafka;
        sdd_log(SELDON_LOG_INFO, "pipeline gateway %s (%s) disconnected", nz(c->server),
                c->gw_http);
        if (!d->closing) {
            d->gw_gen++;
            sc_pump(d);
        }
    }
    sdr_reader_free(&c->reader);
    df_states_free(c);
    sdd_free(c->gw_http);
    sdd_free(c->gw_grpc);
    sdd_free(c->server);
    sdd_free(c);
}

static const sd2_stream_cbs stream_cbs = {NULL, st_data, st_end, st_drain, st_close};

static sc_call *call_new(sc_daemon *d, sd2_stream *s, int m)
{
    sc_call *c = sdd_calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->d = d;
    c->s = s;
    c->method = m;
    c->list = L_NONE;
    c->reader.max = SDR_MESSAGE_MAX;
    return c;
}

sc_call *sc_call_detached(sc_daemon *d, const char *path)
{
    size_t i;
    for (i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        if (strcmp(methods[i].path, path) == 0)
            return call_new(d, NULL, (int)i);
    return NULL;
}

const char *sc_method_path(size_t i)
{
    return i < sizeof(methods) / sizeof(methods[0]) ? methods[i].path : NULL;
}

void sc_call_feed(sc_call *c, const uint8_t *data, size_t len)
{
    if (!c->got && !c->finished && sdr_reader_feed(&c->reader, data, len, on_message, c) < 0)
        finish(c, SDR_INVALID_ARGUMENT, seldon_last_error());
}

int sc_call_open(const sc_call *c)
{
    return c->list != L_NONE && !c->finished;
}

void sc_call_end(sc_call *c)
{
    st_close(NULL, c, SD2_ECANCELED, 0);
}

static void on_request(void *user_data, sd2_stream *s, const sd2_header *h, size_t n, int end)
{
    sc_port *p = user_data;
    sc_daemon *d = p->d;
    const sd2_header *path = sd2_header_find(h, n, ":path");
    sc_call *c;
    size_t i;
    int m = -1;
    char why[300];

    if (d->closing) {
        sd2_grpc_finish(s, SDR_UNAVAILABLE, "seldon-scheduler is stopping", NULL, 0);
        return;
    }
    for (i = 0; path != NULL && i < sizeof(methods) / sizeof(methods[0]); i++)
        if (methods[i].svc == p->svc && strlen(methods[i].path) == path->value_len &&
            memcmp(methods[i].path, path->value, path->value_len) == 0)
            m = (int)i;
    if (m < 0) {
        snprintf(why, sizeof(why), "unknown method %.*s on this port",
                 path != NULL ? (int)(path->value_len > 200 ? 200 : path->value_len) : 0,
                 path != NULL ? path->value : "");
        sd2_grpc_finish(s, SDR_UNIMPLEMENTED, why, NULL, 0);
        return;
    }
    c = call_new(d, s, m);
    if (c == NULL) {
        sd2_grpc_finish(s, SDR_RESOURCE_EXHAUSTED, "out of memory", NULL, 0);
        return;
    }
    sd2_stream_bind(s, &stream_cbs, c);
    if (end)
        finish(c, SDR_INVALID_ARGUMENT, "the call carried no request message");
}

int sc_services_start(sc_daemon *d)
{
    sd2_server_cbs cbs;
    sd2_opts o;
    int i, rc;
    memset(&cbs, 0, sizeof(cbs));
    cbs.on_request = on_request;
    memset(&o, 0, sizeof(o));
    /* Agents, routers and watchers hold their streams open for as long as they live. */
    o.idle_timeout_ms = (uint64_t)1 << 40;
    o.stream_window = 1u << 20;
    o.conn_window = 4u << 20;
    sc_timers_init(d);
    for (i = 0; i < SC_SVC_COUNT; i++) {
        d->ports[i].d = d;
        d->ports[i].svc = i;
        if (d->cfg.ports[i] < 0)
            continue;
        rc = sd2_server_new(&d->ports[i].srv, d->loop, &o, &cbs, &d->ports[i]);
        if (rc != 0)
            return rc;
        rc = sd2_server_listen(d->ports[i].srv, d->cfg.host, d->cfg.ports[i]);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void port_closed(void *arg)
{
    sc_port *p = arg;
    sc_daemon *d = p->d;
    int i, open = 0;
    p->srv = NULL;
    for (i = 0; i < SC_SVC_COUNT; i++)
        open += d->ports[i].srv != NULL;
    if (open == 0 && d->stop_armed) { /* everything drained before the bound */
        d->stop_armed = 0;
        uv_close((uv_handle_t *)&d->stop_timer, NULL);
    }
}

static void finish_list(sc_call *head)
{
    sc_call *c, *next;
    for (c = head; c != NULL; c = next) {
        next = c->next;
        finish(c, SDR_UNAVAILABLE, "seldon-scheduler is stopping");
    }
}

static void stop_timer_fired(uv_timer_t *t)
{
    sc_daemon *d = t->data;
    int i;
    for (i = 0; i < SC_SVC_COUNT; i++)
        if (d->ports[i].srv != NULL)
            sd2_server_close(d->ports[i].srv, port_closed, &d->ports[i]);
    if (d->stop_armed) {
        d->stop_armed = 0;
        uv_close((uv_handle_t *)&d->stop_timer, NULL);
    }
}

void sc_services_stop(sc_daemon *d)
{
    int i;
    d->closing = 1;
    sc_timers_close(d);
    /* Streams that never end by themselves get their trailers; then every connection
       gets GOAWAY, and whatever is still open after a second is cut. */
    finish_list(d->agents);
    finish_list(d->routers);
    finish_list(d->watchers);
    finish_list(d->gateways);
    finish_list(d->dataflows);
    uv_timer_init(d->loop, &d->stop_timer);
    d->stop_timer.data = d;
    uv_timer_start(&d->stop_timer, stop_timer_fired, 1000, 0);
    d->stop_armed = 1;
    for (i = 0; i < SC_SVC_COUNT; i++)
        if (d->ports[i].srv != NULL)
            sd2_server_drain(d->ports[i].srv, port_closed, &d->ports[i]);
}
