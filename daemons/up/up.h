/*
 * seldon-up: the whole system in one process. The scheduler (libseldon's
 * seldon_sched, state in LMDB) serves its client API on --scheduler-port
 * through seldon-scheduler's own service code (daemons/scheduler/svc.c); N
 * embedded server replicas, each a seldon-server core (a seldon_repo and a
 * seldon_service with the executors of daemons/server/exec.c), register with
 * it by function call and carry out its commands as an in-process agent
 * stage; the ingress serves REST and gRPC on one port and hands each request
 * to the chosen replica's inference path by function call.
 *
 * Parts: main.c (flags, start-up, signals, shutdown), control.c (the control
 * loop: replicas registered, commands run, artifacts fetched, the lookup
 * table published), ingress.c (REST and gRPC in, the service out), metrics.c
 * (/metrics).
 *
 * Threads: the main thread takes signals. One control loop (its own
 * sdl_loops) owns the scheduler, the client API, the agent stage and the
 * fetch children. The ingress loops (--io-threads) own their connections.
 * Each replica lends its service worker threads, one load thread and a timer
 * thread (exec.c). The lookup table is read by the ingress loops without a
 * lock and replaced by the control loop read-copy-update style (control.c,
 * publish()): a version leaves the table, every ingress loop passes a
 * quiescent point, and only then does its unload start.
 */
#ifndef UP_H
#define UP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <uv.h>

#include "h2.h"
#include "http_server.h"
#include "kafka.h"
#include "loops.h"
#include "schedd.h"
#include "seldon/seldon.h"
#include "server.h"

#define UP_MAX_CAPS 64
#define UP_MAX_SERVERS 64

typedef struct up_config {
    const char *state_dir;
    const char *host;
    int port;
    int scheduler_port;
    int metrics_port;
    int servers;
    const char *server_name;
    int64_t server_memory;
    const char *caps[UP_MAX_CAPS];
    size_t ncaps;
    uint32_t overcommit;
    int workers;
    int io_threads;
    uint32_t busy_poll_us;
    const char *runtime_path;
    const char *rclone;
    const char *rclone_config;
    size_t max_body;
    uint64_t grace_ms;
    long ready_timeout_s;
    int32_t log_level;
    uint64_t pipeline_timeout_ms; /* a pipeline request's default timeout */
    uint32_t pipeline_max_requests;
    uint32_t pipeline_async_max; /* asynchronous results kept */
    uint64_t pipeline_async_ttl_ms;
    /* Server scaling (docs/autoscaling.md): the scheduler's autoscaling flags. */
    uint64_t server_cooldown_ms;
    /* Model autoscaling (load.c): the replicas' load reported every load_report_ms (0:
       never), and the scheduler's thresholds (0: its defaults). */
    uint64_t load_report_ms;
    uint32_t scale_up_inflight;
    uint64_t scale_up_period_ms, scale_down_idle_ms;
    /* --kafka: pipelines over Kafka (kafka.c) */
    int kafka;
    sdk_config kafka_cfg; /* --kafka-* */
    int kafka_dev_port;   /* the development broker's, when seldon up starts it */
} up_config;

typedef struct up up;
typedef struct up_kafka up_kafka;

/*
 * A model version on a replica, as the agent stage knows it: an entry of the replica's
 * ag_cache (seldon-agent's cache.c: states, memory, least-recently-used eviction
 * planning), with this in its user pointer. Control loop only.
 */
typedef struct up_mdata {
    uint64_t command;       /* the command the next report answers */
    int answer;             /* a command waits for this load's (or unload's) outcome */
    int unload_after;       /* an unload came while loading or evicting */
    int reloading;          /* loading again after an eviction */
    int preparing;          /* its artifact is being fetched and placed */
    size_t evictions;       /* evictions this load waits for */
    uint64_t queued;        /* waiting for its turn to load (arrival order), or 0 */
    struct up_park *parked; /* requests waiting for it to be loaded again */
} up_mdata;

/*
 * A request for a version evicted to make room: it waits on the control loop for
 * the version to be loaded again, then goes to the service from there (ingress.c
 * builds, resumes and fails it; control.c queues it).
 */
/*
 * The load of one model version on one replica (load.c), for the scheduler's
 * autoscaler: the ingress counts its requests (up_vl_begin/up_vl_end, any thread);
 * the control loop reads the counts every --load-report and owns the rest. A slot
 * lives as long as its replica, so a request may end after its version left the tables.
 */
typedef struct up_vload {
    struct up_replica *r;
    atomic_long inflight;
    atomic_ulong ends;
    /* control loop */
    char *vname; /* NULL: free (the overflow slot: never reported) */
    uint64_t seen_ends;
    int64_t idle_since; /* monotonic ns; 0: busy or not known */
    int absent;         /* reports since the version left the replica */
} up_vload;

#define UP_VLOAD_SLOTS 256

static inline void up_vl_begin(up_vload *l)
{
    if (l != NULL)
        atomic_fetch_add_explicit(&l->inflight, 1, memory_order_relaxed);
}

static inline void up_vl_end(up_vload *l)
{
    if (l != NULL) {
        atomic_fetch_add_explicit(&l->ends, 1, memory_order_relaxed);
        atomic_fetch_sub_explicit(&l->inflight, 1, memory_order_relaxed);
    }
}

typedef struct up_park up_park;
struct up_park {
    up_park *next;
    struct up_replica *r;
    void *call; /* ingress.c's: the REST call or the gRPC message; pipes.c's step call */
    int grpc;   /* 0: REST, 1: gRPC, UP_PARK_STEP: a pipeline step */
    char vname[];
};

#define UP_PARK_STEP 2

/* One embedded server replica. */
typedef struct up_replica {
    up *u;
    uint32_t index;
    char addr[160]; /* what the scheduler and the routes call it: "<server>-<i>.inproc:<port>" */
    srv s;          /* repo, service, executors: daemons/server/exec.c */
    seldon_service_hooks hooks; /* what exec.c lends the service, for the agent stage's jobs too */
    struct ag_cache *cache;     /* control loop: the versions held (daemons/agent/cache.h) */
    struct ag_entry *busy;      /* control loop: the version being loaded (one at a time) */
    uint64_t seq;               /* control loop: load queue order */
    atomic_long in_flight;
    int removed;     /* control loop: scaled down, disconnected from the scheduler (kept idle) */
    up_vload *vload; /* load.c: UP_VLOAD_SLOTS + 1 (the overflow), made on the control loop */
} up_replica;

/* Where a route's requests go on one replica: its newest version loaded there, or (older)
   an older version the route still lists, for a request pinned to it (sticky version). */
typedef struct up_target {
    up_replica *r;
    int evicted; /* not loaded now: a request waits for its reload */
    int older;   /* an older version: only a request pinned to it comes here */
    uint32_t version;
    _Atomic uint64_t used; /* the last request's tick, for eviction (control.c) */
    const char *vname;
    size_t vname_len;
    up_vload *vl; /* its load counters (NULL for a target that is not a model) */
} up_target;

/* The lookup table: the scheduler's routes joined with what each replica holds. Immutable. */
typedef struct up_table {
    seldon_routes *routes;
    size_t *first; /* per route: its targets are targets[first[i] .. first[i + 1]) */
    up_target *targets;
    unsigned char *split; /* per route: 1 when an experiment or a mirror decides its requests */
    char *names;
} up_table;

struct up {
    up_config cfg;
    char *runtime_path;
    char *artifacts_dir; /* <state>/artifacts: fetched sources */
    char *models_dir;    /* <state>/models: the replicas' repository */
    up_replica *replicas;
    int nreplicas;

    /* control loop */
    sdl_loops *ctl_loops;
    uv_loop_t *ctl;
    sc_daemon sched;       /* seldon-scheduler's services, on the control loop */
    struct up_prep *preps; /* model versions being (or made) ready to load, newest first */
    uv_process_t *child;   /* the copy under way, if any */
    uint64_t table_gen;    /* the routes generation the table was built from */
    int table_built;
    int stopping;
    atomic_int sched_ready; /* read by the ingress for /v2/health/ready */

    /* ingress */
    sdl_loops *loops;
    sd2_server **h2; /* per ingress loop */
    sdh_server *http;
    sdh_server *metrics_http;
    _Atomic(up_table *) table; /* read by the ingress without a lock; see publish() */
    atomic_size_t rotate;
    _Atomic uint64_t tick; /* recency of requests, for eviction */
    seldon_metrics *metrics;
    seldon_metric *m_requests; /* {protocol, code} */
    seldon_metric *m_commands; /* {server_replica, outcome}: the agent stage's reports */
    seldon_metric *m_evict;    /* seldon_cache_evict_count, as seldon-agent's */
    seldon_metric *m_miss;     /* seldon_cache_miss_count */

    /* pipelines (pipes.c on daemons/common/plserve.c): an engine per ingress loop */
    struct sdp *pls;

    /* Server scaling (scale.c, control loop): replicas[] has room for UP_MAX_SERVERS; the
       scheduler's requests start more (nreplicas grows) or remove the extra ones. */
    uint32_t scale_want; /* 0: never asked */
    uv_timer_t scale_timer;
    int scale_timer_on;

    /* Model autoscaling (load.c, control loop): the replicas' load to the scheduler. */
    uv_timer_t load_timer;
    int load_timer_on;
    /* --kafka (kafka.c): the Kafka roles, on the control loop */
    up_kafka *kafka;
    struct sdkg *kgw; /* the pipeline gateway's Kafka client (daemons/common/kgw.h), or NULL */
};

int64_t up_mono_ns(void);

/* control.c, on the control loop */
void up_control_start(void *arg); /* registers the replicas, first pump */
void up_control_stop(void *arg);  /* stops the services; nothing new is started */
void up_command(void *user_data, const seldon_sched_command *cmd);
void up_park_arrive(void *arg); /* posted by the ingress: a request for an evicted version */
void up_after_pump(void *user_data);
void up_table_free(up_table *t);
void up_control_free(up *u); /* after the control loop ended */

/* ingress.c, on the ingress loops */
void up_rest_handler(void *user_data, sdh_req *req, const sdh_request *request);
void up_grpc_request(void *user_data, sd2_stream *s, const sd2_header *h, size_t n, int end);
int up_adopt_h2(void *user_data, const sd_adopt *conn);
int up_metrics_setup(up *u);
void up_park_resume(up_park *p);                        /* loaded again: to the service */
void up_park_fail(up_park *p, int rc, const char *why); /* answered with rc's status */

/* ingress.c, for pipes.c */
int up_pick(up_target *out, up *u, const char *name, size_t len);
void up_count(up *u, const char *protocol, int code);
int up_route_available(up *u, const char *name, size_t len);
void up_grpc_answer(void *msg, int32_t status, const char *message, seldon_buf *response);
void up_grpc_request_id(void *msg, const char *rid); /* returned as x-request-id */
void up_grpc_reply_metadata(void *msg, const sd2_header *h, size_t n); /* the x-* answered */
int up_park_step(up_target *t, void *call); /* a step call waits for its model's reload */

/* pipes.c: pipelines on the ingress loops */
int up_pl_setup(up *u); /* before the loops start */
void up_pl_sync(up *u); /* control loop: the scheduler's pipelines to the engines */
/* route: the experiment's choice (exp.c), or NULL */
struct sdp_route;
void up_pl_rest(up *u, sdh_req *req, const sdh_request *r, const char *name, size_t name_len,
                const struct sdp_route *route);
int up_pl_grpc(up *u, void *msg, const char *name, size_t name_len, const uint8_t *data, size_t len,
               int64_t timeout_ms, const char *rid, size_t rid_len, const sd2_header *xmd,
               size_t nxmd, const struct sdp_route *route);
void up_pl_grpc_stream(up *u, sd2_stream *s, const sd2_header *h, size_t n, int end,
                       const char *name, size_t name_len,
                       const struct sdp_route *route); /* a whole call to a pipeline */
int64_t up_grpc_timeout_ms(const char *value, size_t len);
void up_pl_close(up *u, int i);                            /* on loop i, at shutdown */
void up_pl_step_resume(void *call, up_replica *r);         /* control loop: reloaded */
void up_pl_step_fail(void *call, int rc, const char *why); /* control loop: not reloaded */
void up_pl_free(up *u);                                    /* after the loops ended */

/* main.c: builds and starts a replica's server core (any thread before the loops run;
   the control loop after). */
int up_replica_start(up *u, up_replica *r, uint32_t index, int port);

/* kafka.c: --kafka. Setup (the broker child, the roles on the control loop; port: the
   inference port, which the model gateway calls) and free on the main thread; stop on the
   control loop, done(arg) there once every role closed; the call hook on an ingress loop. */
int up_kafka_setup(up *u, int port);
void up_kafka_start(void *u);
void up_kafka_sync(up *u); /* control loop: the scheduler's pipelines and models to the roles */
void up_kafka_stop(up *u, void (*done)(void *), void *arg);
void up_kafka_free(up *u); /* stops the development broker */
struct sdp_call;
int up_kafka_call(void *user_data, struct sdp_call *c);
const char *up_kafka_brokers(up *u);

/* scale.c, on the control loop */
void up_scale(void *user_data, const seldon_sched_scale_request *rq); /* sc_daemon's hook */
void up_scale_check(up *u); /* after every pump: removes drained extra replicas */
void up_scale_stop(up *u);
int up_announce(up *u, up_replica *r); /* registers r with the scheduler; 0 or logged -1 */

/* metrics.c, on the control loop */
void up_metrics_handler(void *user_data, sdh_req *req, const sdh_request *request);

/* exp.c: experiments over pipelines */
void up_exp_start(up *u); /* control loop, at start: the pipelines' routes */
/* Which pipeline serves a request, and how it was chosen. */
typedef struct up_exp_choice {
    char pipeline[SELDON_ROUTES_NAME_MAX + 1]; /* "<p>", without ".pipeline" */
    size_t pipeline_len;
    int tag; /* chosen by an experiment: the answer names ":<p>.pipeline:" */
    char mirror[SELDON_ROUTES_NAME_MAX + 1]; /* the pipeline that gets a copy, or "" */
    size_t mirror_len;
} up_exp_choice;
/*
 * Ingress loop: 1 when the request for route name[0..len) (x-seldon-route value
 * sticky, NULL when absent) is served by a pipeline: out says which, the
 * experiment's choice when the route splits over pipelines, and its mirror copy.
 * 0: a model serves it (the ingress decides as for any model).
 */
int up_exp_pipeline(up *u, up_exp_choice *out, const char *name, size_t len, const char *sticky,
                    size_t sticky_len);
/* The choice as plserve's sdp_route (borrows c's mirror name). */
void up_exp_route(struct sdp_route *out, const up_exp_choice *c);
/* The same for a REST request whose route is name. */
int up_exp_rest(up *u, up_exp_choice *out, const char *name, size_t name_len, const sdh_request *r);
/* The same for a gRPC call's header block (seldon-model and x-seldon-route). */
int up_exp_grpc(up *u, up_exp_choice *out, const sd2_header *h, size_t n);

/* load.c, on the control loop: per-version load reports for model autoscaling */
void up_load_start(up *u);
void up_load_stop(up *u);
void up_load_free(up *u); /* after the loops ended */
/* Every replica's counters made (before a lookup table is built); 0 or SELDON_ENOMEM. */
int up_vload_init(up *u);
/* The counters of vname on r (after up_vload_init), made when new; never NULL: past
   UP_VLOAD_SLOTS versions, a shared slot that is counted and never reported. */
up_vload *up_vload_of(up_replica *r, const char *vname);

#endif
