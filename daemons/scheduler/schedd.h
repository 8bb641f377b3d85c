/*
 * seldon-scheduler: one libuv loop owns a seldon_sched and serves the three
 * control services of proto/seldon_control.proto on it (svc.c); main.c parses
 * flags, opens the scheduler, runs the loop and stops cleanly.
 *
 * Thread safety: everything in sc_daemon belongs to the loop thread, except
 * what main() touches before the loop starts and after it ended.
 */
#ifndef SCHEDD_H
#define SCHEDD_H

#include <stdint.h>

#include <uv.h>

#include "h2.h"
#include "http_server.h"
#include "seldon/metrics.h"
#include "seldon/scheduler.h"

typedef struct sc_call sc_call;
typedef struct sc_daemon sc_daemon;

enum { SC_SVC_CLIENT = 0, SC_SVC_AGENT = 1, SC_SVC_ROUTE = 2, SC_SVC_COUNT = 3 };

typedef struct sc_port {
    sc_daemon *d;
    int svc;
    sd2_server *srv; /* NULL once closed */
} sc_port;

typedef struct sc_config {
    const char *host;
    int ports[SC_SVC_COUNT];
    int metrics_port;
    const char *state_dir;
    long ready_timeout_s;
    long load_timeout_s;
    int32_t fsync;
    int32_t log_level;
    /* Autoscaling (docs/autoscaling.md). */
    uint32_t scale_up_inflight;
    uint64_t scale_up_period_ms, scale_down_idle_ms, server_cooldown_ms;
    const char *scale_command;
} sc_config;

struct sc_daemon {
    sc_config cfg;
    uv_loop_t *loop;
    seldon_sched *sched;
    sc_port ports[SC_SVC_COUNT];
    uv_timer_t timer;       /* the scheduler's next deadline */
    uv_timer_t route_timer; /* the next route table, coalescing changes */
    uv_timer_t stop_timer;  /* bounds the drain at shutdown */
    int closing;
    int stop_armed;
    int was_ready;
    /* open streams, by kind */
    sc_call *agents;
    sc_call *routers;
    sc_call *watchers;
    size_t nagents, nrouters, nwatchers;
    /* the route table last built, framed, and its generation */
    seldon_buf route_frame;
    uint64_t route_gen;
    int route_built;
    int route_pending;
    uint64_t route_last_ms;
    /* metrics */
    seldon_metrics *metrics;
    sdh_server *metrics_http;
    seldon_metric *m_pipelines; /* pipelines by state */
    seldon_metric *m_experiments; /* experiments by state */
    seldon_metric *m_models, *m_servers, *m_replicas, *m_commands, *m_apply, *m_agents, *m_routers,
        *m_watchers, *m_ready;
    /* Embedding (seldon-up): commands for replicas with no AgentService stream go to
       local_command; after_pump runs at the end of every pump. Both optional. */
    void (*local_command)(void *user_data, const seldon_sched_command *cmd);
    void (*after_pump)(void *user_data);
    void *local_data;
    /* Pipeline gateways (RouteService/SubscribePipelines, svc.c). pipelines_in_process: the
       embedding host serves pipelines itself (seldon-up): no "<p>.pipeline" routes, and no
       gateway is waited for. */
    int pipelines_in_process;
    sc_call *gateways;
    size_t ngateways;
    uint64_t gw_gen;   /* bumped when the gateways or the pipelines' names change */
    uint64_t pl_gen;   /* the PipelineSet's generation */
    uint64_t pl_hash;  /* of the PipelineSet last sent */
    uint64_t pl_names; /* of the pipelines' names in the route table */
    seldon_metric *m_gateways;
    /* After a start, route tables wait (at most SC_GATEWAY_HOLD_MS) for a gateway while
       pipelines exist: routers keep serving their last pipelines' routes meanwhile, rather
       than take them without upstreams. */
    uv_timer_t hold_timer;
    int64_t hold_until_ns;
    int hold_armed;
    /* Server scaling (scale.c): a request goes to scale_hook when set (seldon-up), else
       --scale-command runs (none: it is logged and shown in the server's status). */
    const char *scale_command;
    void (*scale_hook)(void *user_data, const seldon_sched_scale_request *rq);
    seldon_metric *m_scale;
    /* Dataflow workers (SubscribePipelines with dataflow set): they get the PipelineSet,
       are no upstream of any route, and report what they run (ReportPipelines). With a
       Kafka gateway connected (nkafka), a pipeline is ready once a worker runs it. */
    sc_call *dataflows;
    size_t ndataflows;
    int dataflow_seen; /* a dataflow worker has subscribed since the start */
    size_t nkafka;    /* gateways connected in Kafka mode */
    uint64_t sub_ids; /* the last "seldon-subscription" id given */
    seldon_metric *m_dataflows;
};

/* CLOCK_REALTIME in ns: the scheduler's clock (its state outlives the process). */
int64_t sc_now_ns(void);
int64_t sc_mono_ns(void);

/* svc.c, on the loop thread. */
int sc_services_start(sc_daemon *d); /* creates and binds the servers (a port < 0: not served) */
void sc_pump(sc_daemon *d);          /* runs what the scheduler owes: commands, events, routes */
void sc_timers_init(sc_daemon *d);   /* the deadline and route timers (sc_services_start too) */
void sc_timers_close(sc_daemon *d);
void sc_routes_now(sc_daemon *d);
/* builds and sends a route table now if one is due */ /* (sc_services_stop too) */
void sc_services_stop(sc_daemon *d); /* finishes every stream and closes the servers */
int sc_metrics_setup(sc_daemon *d);
/* scale.c: hands out the scheduler's server scale requests (after every pump). */
void sc_scale_pump(sc_daemon *d);
/* Applies cfg's autoscaling flags to d->sched. */
int sc_autoscale_setup(sc_daemon *d);

/*
 * Calls without a stream, for tests and fuzzing: the same handlers, whose answers
 * are built and dropped. sc_call_feed() takes request bytes as they would come on
 * the stream (gRPC-framed); sc_call_end() ends the call as its peer going away
 * would (an agent's is a disconnect), and frees it.
 */
sc_call *sc_call_detached(sc_daemon *d, const char *path); /* NULL for an unknown path */
const char *sc_method_path(size_t i);                      /* NULL past the last method */
void sc_call_feed(sc_call *c, const uint8_t *data, size_t len);
int sc_call_open(const sc_call *c); /* 1 while it is an open subscription */
void sc_call_end(sc_call *c);
void sc_metrics_handler(void *user_data, sdh_req *req, const sdh_request *request);
int sc_metrics_render(seldon_buf *out, sc_daemon *d); /* gauges refreshed, then the text */

#endif
