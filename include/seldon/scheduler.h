/*
 * The scheduler: models placed on server replicas, their versions and states,
 * the commands that agents must run, and the route table routers serve on.
 * Every resource and its desired and observed state is written to LMDB in one
 * transaction before a call that changes it returns; seldon_sched_open() on
 * the same folder brings everything back.
 *
 * Pure logic: no sockets, no threads. Time comes in as now_ns, wall-clock
 * nanoseconds since the Unix epoch (CLOCK_REALTIME: the state outlives the
 * process, so its timestamps must too); what must happen later comes back as
 * a deadline from seldon_sched_tick(). The rules are in docs/scheduler.md.
 *
 * Thread safety: a scheduler belongs to one thread at a time. Status
 * snapshots and route tables it returns are independent of it and may be
 * used from any thread.
 */
#ifndef SELDON_SCHEDULER_H
#define SELDON_SCHEDULER_H

#include "common.h"
#include "manifest.h"
#include "pipeline.h"
#include "router.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct seldon_sched seldon_sched;

typedef struct seldon_sched_config {
    uint32_t version;      /* SELDON_SCHED_CONFIG_VERSION (1 or 2) */
    const char *state_dir; /* LMDB folder, created if absent; NULL: memory only */
    int64_t
        ready_timeout_ms;   /* after a restart, wait this long for known replicas. Default 600000 */
    int64_t map_size_bytes; /* LMDB map size. Default 1 GiB */
    const seldon_routes_defaults *route_defaults; /* NULL: SELDON_ROUTES_DEFAULTS_INIT */
    /* Since version 2 (version 1 takes the defaults): */
    int64_t
        load_timeout_ms;  /* a load or unload unanswered this long is sent again. Default 300000 */
    int32_t load_retries; /* sends after the first before LoadFailed / UnloadFailed. Default 2 */
    int64_t unload_grace_ms; /* a replica leaves the routes this long before its unload is sent,
                                so routers stop using it first. Default 500 */
    int32_t sync_writes; /* 1: every commit is flushed to disk; 0: to the OS page cache (survives
                            the process dying, not the machine), flushed on close. Default 0 */
} seldon_sched_config;

#define SELDON_SCHED_CONFIG_VERSION 2
#define SELDON_SCHED_CONFIG_INIT                                                                   \
    {                                                                                              \
        SELDON_SCHED_CONFIG_VERSION, NULL, 600000, (int64_t)1 << 30, NULL, 300000, 2, 500, 0       \
    }

/*
 * Opens a scheduler, reloading the state in cfg->state_dir when there is one.
 * After a reload it waits (seldon_sched_ready() is 0) until every replica
 * that was connected when the state was last written has reconnected, or
 * ready_timeout_ms has passed (seldon_sched_tick() notices); until then it
 * moves nothing and sends no command, while status and routes show the
 * reloaded state (routers keep serving). When ready, replicas still missing
 * are dropped and their models placed elsewhere. A damaged store is
 * SELDON_EPARSE naming the record; a folder another scheduler has open is
 * SELDON_EUNAVAIL. cfg NULL: the defaults, memory only.
 * Caller owns *out.
 */
SELDON_API int seldon_sched_open(seldon_sched **out, const seldon_sched_config *cfg,
                                 int64_t now_ns);
SELDON_API void seldon_sched_close(seldon_sched *sched);

/* 1 once the scheduler acts on its state (at once without a reload). */
SELDON_API int32_t seldon_sched_ready(const seldon_sched *sched);

/* --- Clients --------------------------------------------------------------- */

/*
 * Applies every resource of a manifest, in one transaction: all of it or
 * none (rules are checked before anything changes; should the store fail,
 * SELDON_EIO or SELDON_ETOOBIG, the change stays in memory and is stored by
 * the next call that writes). A Model makes a new version when its spec
 * changed (a replicas-only change applies in place; the same spec again
 * retries failed loads); a Server sets its desired replicas (and
 * capabilities for replicas that register without their own); Pipelines and
 * Experiments are stored. out_versions, when not NULL, has room for
 * seldon_manifest_count() entries and receives each model's version (0 for
 * other kinds). SELDON_EINVAL with the resource and field named when a rule
 * across resources breaks.
 */
SELDON_API int seldon_sched_apply(seldon_sched *sched, const seldon_manifest *manifest,
                                  uint32_t *out_versions, int64_t now_ns);

/* Deletes a resource (a model unloads everywhere first). SELDON_ENOTFOUND for an unknown one. */
SELDON_API int seldon_sched_unload(seldon_sched *sched, seldon_kind kind, const char *name,
                                   int64_t now_ns);

/* --- Agents ---------------------------------------------------------------- */

typedef struct seldon_sched_replica {
    const char *server;
    uint32_t index;
    const char *http; /* "host:port" the router reaches it at over REST, or NULL */
    const char *grpc; /* and over gRPC, or NULL */
    const char *const *capabilities;
    size_t capabilities_count;
    int64_t memory_bytes;
    uint32_t overcommit_percent;
} seldon_sched_replica;

typedef struct seldon_sched_loaded {
    const char *model; /* unversioned */
    uint32_t version;
} seldon_sched_loaded;

/*
 * A replica (re)connected, holding the models listed (loaded may be NULL
 * when loaded_count is 0). It replaces whatever the scheduler knew of that
 * replica (addresses, capabilities, memory); commands owed to it are sent
 * again. A listed model placed there becomes Available without a load; a
 * placed model it lacks is loaded again; a listed model not placed there is
 * adopted when its version wants another replica on this server, else
 * unloaded (once ready). Capabilities: the replica's own, else its Server
 * resource's, else the defaults of a server named "mlserver" or "triton".
 * SELDON_EINVAL naming the field for a bad replica.
 */
SELDON_API int seldon_sched_agent_connect(seldon_sched *sched, const seldon_sched_replica *replica,
                                          const seldon_sched_loaded *loaded, size_t loaded_count,
                                          int64_t now_ns);

/*
 * A replica's stream ended while the scheduler keeps running: its models are
 * placed elsewhere (once ready), and a restart will not wait for it. A
 * replica above its Server resource's replicas is forgotten. Do not call it
 * when the scheduler itself shuts down: close it with the streams open, so
 * the restart waits for those replicas and reloads nothing.
 * SELDON_ENOTFOUND for an unknown replica.
 */
SELDON_API int seldon_sched_agent_disconnect(seldon_sched *sched, const char *server,
                                             uint32_t index, int64_t now_ns);

typedef enum seldon_sched_event_type {
    SELDON_SCHED_LOADED = 1,
    SELDON_SCHED_LOAD_FAILED = 2,
    SELDON_SCHED_UNLOADED = 3,
    SELDON_SCHED_UNLOAD_FAILED = 4
} seldon_sched_event_type;

/*
 * The outcome of a command (command_id from it) or a change the agent made
 * (0). LOADED for a model not placed there is treated as in agent_connect.
 * UNLOADED with command_id 0 for a model still placed there is an eviction
 * the agent made to stay within memory (overcommit): it stays placed and
 * routed, the agent loads it again on demand. SELDON_ENOTFOUND for an
 * unknown replica; an event about a model the replica does not hold is
 * ignored.
 */
SELDON_API int seldon_sched_agent_event(seldon_sched *sched, const char *server, uint32_t index,
                                        uint64_t command_id, const char *model, uint32_t version,
                                        seldon_sched_event_type type, const char *reason,
                                        int64_t now_ns);

/* --- What must happen next ------------------------------------------------- */

typedef enum seldon_sched_op { SELDON_SCHED_LOAD = 1, SELDON_SCHED_UNLOAD = 2 } seldon_sched_op;

/* A command for one replica's agent. Strings are valid until the next call on the scheduler. */
typedef struct seldon_sched_command {
    seldon_sched_op op;
    uint64_t id;
    const char *server;
    uint32_t index;
    const char *model; /* unversioned; the agent loads "<model>_<version>" */
    uint32_t version;
    const char *spec; /* the Model as canonical JSON (LOAD), else NULL */
    int64_t memory_bytes;
} seldon_sched_command;

/*
 * Takes the next command for a connected replica, round robin over the
 * replicas. SELDON_ENOTFOUND when none is owed, and always before ready.
 * Commands for a replica that is not connected wait for it. A command
 * unanswered for load_timeout_ms (counted from the now_ns of the last call)
 * is sent again (a new id) up to load_retries times, then fails: LoadFailed,
 * or for an unload UnloadFailed and the replica is taken as free of it.
 */
SELDON_API int seldon_sched_next_command(seldon_sched *sched, seldon_sched_command *out);

/*
 * Advances time: the ready timeout, unloads whose route grace ended, command
 * timeouts and retries. Returns the next deadline (now_ns clock), or
 * INT64_MAX when nothing is pending. Call it at that deadline and after any
 * call that may have started one (apply, unload, agent calls).
 */
SELDON_API int64_t seldon_sched_tick(seldon_sched *sched, int64_t now_ns);

/*
 * A state change, for event subscribers. Strings valid until the next call
 * on the scheduler. Models: the version's state (server NULL, index -1) or
 * one replica's (server and index set), plus "ModelReplicasChanged" for an
 * in-place replicas change. Servers: "ServerReplicaConnected" and
 * "ServerReplicaDisconnected". Pipelines: their states (see Pipelines
 * below). Experiments: "Stored", "Deleted". At most 1,048,576 events wait; beyond that the oldest
 * go.
 */
typedef struct seldon_sched_event {
    seldon_kind kind;
    const char *name;
    uint32_t version;
    const char *state; /* Seldon's state names: "ModelAvailable", ... */
    const char *reason;
    int64_t time_ns;
    const char *server; /* NULL when not about one replica */
    int32_t server_index;
} seldon_sched_event;

/* Takes the next state change since the last call. SELDON_ENOTFOUND when none. */
SELDON_API int seldon_sched_next_event(seldon_sched *sched, seldon_sched_event *out);

/* --- Routes ---------------------------------------------------------------- */

/*
 * The route table for the current state: a route per model with an available
 * version, named after the model, whose upstreams are the replicas serving it
 * (Available or Draining; both versions' replicas during a rollout, so
 * traffic splits by their counts; one upstream per replica). Replicas leave
 * the table unload_grace_ms before they are told to unload. Built once per
 * generation (later calls retain the same table). Caller owns *out; release
 * with seldon_routes_release().
 */
SELDON_API int seldon_sched_routes(seldon_routes **out, seldon_sched *sched);

/* Grows by one each time the route table changes. */
SELDON_API uint64_t seldon_sched_routes_generation(const seldon_sched *sched);

/* --- Status ---------------------------------------------------------------- */

typedef struct seldon_sched_replica_status {
    uint32_t server_index;
    const char *state; /* "Available", "Loading", "LoadFailed", ... */
    const char *reason;
    int64_t last_change_ns;
} seldon_sched_replica_status;

typedef struct seldon_sched_version_status {
    uint32_t version;
    const char *server; /* NULL until placed */
    const char *state;  /* "ModelAvailable", "ScheduleFailed", ... */
    const char *reason;
    uint32_t available_replicas;
    uint32_t desired_replicas;
    const seldon_sched_replica_status *replicas;
    size_t replicas_count;
    int64_t last_change_ns;
    const char *spec; /* canonical JSON */
} seldon_sched_version_status;

typedef struct seldon_sched_model_status {
    const char *name;
    int32_t deleted;
    const seldon_sched_version_status *versions; /* newest first */
    size_t versions_count;
} seldon_sched_model_status;

typedef struct seldon_sched_server_replica_status {
    uint32_t index;
    const char *http;
    const char *grpc;
    const char *const *capabilities;
    size_t capabilities_count;
    int64_t memory_bytes;
    int64_t available_memory_bytes;
    uint32_t overcommit_percent;
    const char *const *models; /* versioned names */
    size_t models_count;
    int32_t connected;
    int32_t draining;
} seldon_sched_server_replica_status;

typedef struct seldon_sched_server_status {
    const char *name;
    uint32_t desired_replicas;
    uint32_t connected_replicas;
    const seldon_sched_server_replica_status *replicas;
    size_t replicas_count;
    uint32_t loaded_models;
} seldon_sched_server_status;

/* A snapshot of statuses; independent of the scheduler once taken. */
typedef struct seldon_sched_status seldon_sched_status;

/* Models: the one named, or all (name NULL). SELDON_ENOTFOUND for an unknown name. */
SELDON_API int seldon_sched_models(seldon_sched_status **out, seldon_sched *sched,
                                   const char *name);
/* Servers: the one named, or all (name NULL). */
SELDON_API int seldon_sched_servers(seldon_sched_status **out, seldon_sched *sched,
                                    const char *name);
SELDON_API size_t seldon_sched_status_count(const seldon_sched_status *status);
/* The i-th entry of a model snapshot; NULL past the end or for a server snapshot. */
SELDON_API const seldon_sched_model_status *
seldon_sched_status_model(const seldon_sched_status *status, size_t i);
/* The i-th entry of a server snapshot; NULL past the end or for a model snapshot. */
SELDON_API const seldon_sched_server_status *
seldon_sched_status_server(const seldon_sched_status *status, size_t i);
SELDON_API void seldon_sched_status_free(seldon_sched_status *status);

/* --- Pipelines --------------------------------------------------------------- */

/*
 * A Pipeline applied through seldon_sched_apply() is compiled first
 * (seldon_pipeline_compile(); externalInputs and externalTriggers resolve to
 * the other pipelines of the same manifest, then to the stored ones); a
 * pipeline that does not compile refuses the whole apply, before anything
 * changes, with the compiler's message (SELDON_EINVAL naming the document
 * and the field). A changed spec makes version N+1; the same spec again
 * changes nothing. out_versions receives pipelines' versions too.
 *
 * States, Seldon's names: "PipelineCreate" (applied), "PipelineCreating"
 * (waiting for models or pipelines), "PipelineReady" (every model its steps
 * call, a step's model being the step's name, has an available version, and
 * every pipeline it reads through externalInputs or externalTriggers is
 * PipelineReady),
 * "PipelineFailed" (stored but no longer compiles, e.g. after a restart
 * without a pipeline it reads), "PipelineTerminating" and
 * "PipelineTerminated" (unloaded). A Ready pipeline whose model stops being
 * available goes back to PipelineCreating, naming the model in its reason,
 * and to PipelineReady when the model returns; so does a pipeline whose
 * pipeline it reads stops being Ready (its reason names that pipeline and
 * its state: `waiting for pipeline "a" (PipelineCreating)`). Each change is an event of
 * kind SELDON_KIND_PIPELINE (name, version, state, reason).
 *
 * seldon_sched_unload(SELDON_KIND_PIPELINE) refuses (SELDON_ESTATE, naming
 * it) a pipeline that another live pipeline reads; an unloaded pipeline
 * stays in status as PipelineTerminated until it is applied again (its
 * next version) or the scheduler restarts. Pipelines are stored with their
 * version and come back, compiled again, after a restart.
 */
typedef struct seldon_sched_pipeline_status {
    const char *name;
    uint32_t version;
    const char *state;  /* "PipelineReady", ... */
    const char *reason; /* why not ready, or NULL */
    int32_t deleted;    /* unloaded: PipelineTerminated */
    int32_t models_ready;
    const char *const *models; /* the models its steps call, in step order */
    size_t models_count;
    const char *const *waiting; /* those not available */
    size_t waiting_count;
    int64_t last_change_ns;
    const char *spec; /* canonical JSON of the Pipeline */
    /* The pipelines it reads (spec.input) that are not PipelineReady. */
    const char *const *waiting_pipelines;
    size_t waiting_pipelines_count;
} seldon_sched_pipeline_status;

/* Pipelines: the one named, or all (name NULL). SELDON_ENOTFOUND for an unknown name. */
SELDON_API int seldon_sched_pipelines(seldon_sched_status **out, seldon_sched *sched,
                                      const char *name);
/* The i-th entry of a pipeline snapshot; NULL past the end or for another snapshot. */
SELDON_API const seldon_sched_pipeline_status *
seldon_sched_status_pipeline(const seldon_sched_status *status, size_t i);

/*
 * For a host running pipelines in process (seldon up): the live pipeline
 * `name`, as canonical JSON (*out_spec, *out_len; borrowed, valid until the
 * next call that changes the scheduler), its version and whether it is
 * Ready (1) or not (0). Any out-param may be NULL. SELDON_ENOTFOUND when no
 * live pipeline has that name (never applied, unloaded, or failed to
 * compile after a restart).
 */
SELDON_API int seldon_sched_pipeline_spec(const char **out_spec, size_t *out_len,
                                          uint32_t *out_version, int32_t *out_ready,
                                          seldon_sched *sched, const char *name);

/*
 * The same pipeline compiled (*out borrowed, valid until the next call that
 * changes the scheduler; seldon_pipeline_engine_add() takes its own
 * reference, so an engine may keep running it after that). A host keeps its
 * engine in step by reading SELDON_KIND_PIPELINE events: on PipelineReady
 * (or a new version) it adds the pipeline (removing an older version first),
 * on PipelineTerminated it removes it; whether it serves a pipeline that is
 * not Ready is its choice (Seldon answers such requests with an error).
 */
SELDON_API int seldon_sched_pipeline_get(const seldon_pipeline **out, uint32_t *out_version,
                                         int32_t *out_ready, seldon_sched *sched, const char *name);

/* --- Experiments ------------------------------------------------------------- */

/*
 * An Experiment applied through seldon_sched_apply() is checked as upstream
 * (the manifest parser: the default is a candidate, at least one candidate
 * or a mirror, no repeated names; the scheduler: a model is the default of
 * at most one experiment, stored ones included) and stored; applying it
 * again replaces it; seldon_sched_unload(SELDON_KIND_EXPERIMENT) stops it.
 * Experiments come back after a restart. resourceType is kept: "model" or
 * "pipeline" (the candidates' routes are "<p>.pipeline").
 *
 * It is active while every candidate and the mirror have a route (a model
 * with a serving replica; a pipeline Ready). While active the route table
 * holds "<name>.experiment", a weighted split over the candidates (and the
 * mirror with its percent), and the route of its default model splits the
 * same way, so clients calling the default by name are split; when it stops
 * or stops being active, the default's route is plain again. Each change is
 * an event of kind SELDON_KIND_EXPERIMENT: "Stored" (applied),
 * "ExperimentActive", "ExperimentWaiting" (reason names the target waited
 * for), "Deleted" (stopped). Experiments over pipelines are routed the same
 * way over the routes "<p>.pipeline" once the table holds them (with
 * upstreams); until then they have no route.
 */
typedef struct seldon_sched_experiment_status {
    const char *name;
    const char *default_name;  /* spec.default, or NULL */
    const char *resource_type; /* "model" or "pipeline" */
    const char *const *candidates;
    const uint32_t *weights; /* parallel to candidates */
    size_t candidates_count;
    const char *mirror; /* or NULL */
    uint32_t mirror_percent;
    int32_t active;           /* candidates and mirror ready: the routes split */
    int32_t candidates_ready; /* every candidate has a route */
    int32_t mirror_ready;     /* the mirror has a route, or there is none */
    int32_t deleted;
    const char *state;       /* "ExperimentActive", "ExperimentWaiting" */
    const char *reason;      /* "experiment active", "waiting for candidate model \"iris2\"" */
    const char *waiting_for; /* the first target without a route, or NULL */
    int64_t last_change_ns;
    const char *spec; /* canonical JSON of the Experiment */
} seldon_sched_experiment_status;

/* Experiments: the one named, or all (name NULL). SELDON_ENOTFOUND for an unknown name. */
SELDON_API int seldon_sched_experiments(seldon_sched_status **out, seldon_sched *sched,
                                        const char *name);
/* The i-th entry of an experiment snapshot; NULL past the end or for another snapshot. */
SELDON_API const seldon_sched_experiment_status *
seldon_sched_status_experiment(const seldon_sched_status *status, size_t i);

/* --- Autoscaling -------------------------------------------------------------- */

/*
 * Model autoscaling (docs/autoscaling.md). A model version whose spec has
 * minReplicas or maxReplicas scales on the load its agents report through
 * seldon_sched_model_load(): seldon_sched_tick() adds a replica when the
 * in-flight requests per available replica have stayed above
 * scale_up_inflight for scale_up_period_ms (and every replica it wants is
 * loaded, so one step at a time), up to maxReplicas; it removes one when a
 * replica has been idle (no request in flight, none finished) for
 * scale_down_idle_ms, and at most one per scale_down_idle_ms, down to
 * minReplicas (at least 1). A change is applied in place, as a replicas-only
 * apply, with the event "ModelReplicasChanged" whose reason says why. The
 * replica added takes traffic once loaded; the one removed leaves the routes
 * unload_grace_ms before its unload is sent.
 *
 * Server scaling: a Server resource with maxReplicas above its replicas
 * grows when a model placed on it wants more replicas than the server has:
 * the scheduler requests max(replicas, the largest model's replicas), at
 * most maxReplicas (seldon_sched_next_scale()), and places on replicas up to
 * that count. When fewer are needed for server_cooldown_ms it requests
 * fewer again; the extra replicas drain first (their models move).
 */
typedef struct seldon_sched_autoscale {
    uint32_t version;           /* SELDON_SCHED_AUTOSCALE_VERSION */
    uint32_t scale_up_inflight; /* requests in flight per replica. Default 30 (upstream's lag
                                   threshold) */
    int64_t scale_up_period_ms; /* Default 20000 (upstream's scaling stats period) */
    int64_t scale_down_idle_ms; /* Default 600000 (upstream's inactive seconds threshold) */
    int64_t server_cooldown_ms; /* Default 600000 */
} seldon_sched_autoscale;

#define SELDON_SCHED_AUTOSCALE_VERSION 1
#define SELDON_SCHED_AUTOSCALE_INIT                                                                \
    {                                                                                              \
        SELDON_SCHED_AUTOSCALE_VERSION, 30, 20000, 600000, 600000                                  \
    }

/* Sets the thresholds (the defaults until called). SELDON_EINVAL for a value out of range. */
SELDON_API int seldon_sched_set_autoscale(seldon_sched *sched, const seldon_sched_autoscale *cfg);

/*
 * The load of one model version on one replica, as its agent measured it:
 * requests in flight now, and for how long it has had none (idle_ms; 0 while
 * busy). A report for a version or replica the scheduler does not know is
 * ignored (0); SELDON_ENOTFOUND for an unknown replica. Call
 * seldon_sched_tick() after a batch of them.
 */
SELDON_API int seldon_sched_model_load(seldon_sched *sched, const char *server, uint32_t index,
                                       const char *model, uint32_t version, uint32_t inflight,
                                       int64_t idle_ms, int64_t now_ns);

/* A server scale request: the replicas the server should run now. */
typedef struct seldon_sched_scale_request {
    const char *server; /* valid until the next call on the scheduler */
    uint32_t replicas;
    const char *reason; /* why, e.g. "model \"iris\" wants 3 replicas"; same lifetime */
} seldon_sched_scale_request;

/* Takes the next server scale request owed. SELDON_ENOTFOUND when none. */
SELDON_API int seldon_sched_next_scale(seldon_sched *sched, seldon_sched_scale_request *out);

/*
 * The replicas a server was last asked to run (0: never asked), and why
 * (borrowed, valid until the next call on the scheduler; NULL when never).
 * SELDON_ENOTFOUND for an unknown server.
 */
SELDON_API int seldon_sched_server_scale(uint32_t *out_replicas, const char **out_reason,
                                         seldon_sched *sched, const char *server);

/* --- Pipeline routes ------------------------------------------------------------ */

/* An upstream: "host:port" strings, either may be NULL, not both. */
typedef struct seldon_sched_upstream {
    const char *http;
    const char *grpc;
} seldon_sched_upstream;

/*
 * Who serves pipelines: from the first call on, the route table holds a
 * route "<p>.pipeline" for every live pipeline (applied, not unloaded),
 * with these upstreams (count 0: no pipeline routes, none serves them), no timeout of the router's
 * (the pipeline applies its own) and no retries (a pipeline's steps may have run). Experiments over
 * pipelines split over these routes, default takeover included. Before the first call the table has
 * no pipeline routes. upstreams is copied; a call with the same upstreams changes nothing, any
 * other makes a new table. SELDON_EINVAL for an upstream without an address.
 */
SELDON_API int seldon_sched_set_pipeline_upstreams(seldon_sched *sched,
                                                   const seldon_sched_upstream *upstreams,
                                                   size_t count);

#ifdef __cplusplus
}
#endif

#endif
