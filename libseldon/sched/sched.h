/*
 * The scheduler's internal state. One thread at a time (the caller's).
 *
 * Objects and indexes:
 * - models by name (hash) and in apply order (array); each holds its
 *   versions, oldest first; each version holds its slots.
 * - a slot is one version placed on one server replica; the replica lists
 *   its slots too, so a disconnect or a drain touches only what is there.
 * - servers by name; each holds its replicas in an array indexed by index.
 * - capabilities are interned to small integers: a replica holds a bitset,
 *   a version the ids of its requirements, so a fit test is a few bit tests.
 * - versions not fully placed wait in the pending list, retried when
 *   capacity appears; never a rescan of every model.
 * - command queues per replica (FIFO of slots that owe a command), the
 *   in-flight list and the unload-grace list are FIFO with a constant delay,
 *   so their heads hold the next deadline.
 */
#ifndef SDN_SCHED_H
#define SDN_SCHED_H

#include <stdint.h>

#include "core/core.h"
#include "seldon/pipeline.h"
#include "seldon/scheduler.h"
#include "store/store.h"

/* Model (version) states, Seldon's names. */
enum {
    SCH_M_UNKNOWN = 0,
    SCH_M_PROGRESSING,
    SCH_M_AVAILABLE,
    SCH_M_FAILED,
    SCH_M_TERMINATING,
    SCH_M_TERMINATED,
    SCH_M_TERMINATE_FAILED,
    SCH_M_SCHEDULE_FAILED,
    SCH_M_SCALED_DOWN,
    SCH_M__COUNT
};

/* Replica (slot) states, Seldon's names. */
enum {
    SCH_R_UNKNOWN = 0,
    SCH_R_LOAD_REQUESTED,
    SCH_R_LOADING,
    SCH_R_LOADED,
    SCH_R_LOAD_FAILED,
    SCH_R_UNLOAD_ENVOY_REQUESTED,
    SCH_R_UNLOAD_REQUESTED,
    SCH_R_UNLOADING,
    SCH_R_UNLOADED,
    SCH_R_UNLOAD_FAILED,
    SCH_R_AVAILABLE,
    SCH_R_LOADED_UNAVAILABLE,
    SCH_R_DRAINING,
    SCH_R__COUNT
};

const char *sdn_sched_model_state_name(int state);
const char *sdn_sched_replica_state_name(int state);

/* A string -> pointer hash map (open addressing, no deletion). Keys are borrowed. */
typedef struct sch_map_slot {
    uint64_t hash;
    const char *key;
    void *val;
} sch_map_slot;

typedef struct sch_map {
    sch_map_slot *slots;
    size_t cap; /* power of two */
    size_t n;
} sch_map;

void *sdn_sch_map_get(const sch_map *m, const char *key);
int sdn_sch_map_put(sch_map *m, const char *key, void *val);
void sdn_sch_map_free(sch_map *m);

struct sch_version;
struct sch_replica;
struct sch_server;

typedef struct sch_slot {
    struct sch_version *v; /* NULL for a stray (loaded, unknown to us): unload it */
    struct sch_replica *r;
    char *stray_model; /* with v NULL */
    uint32_t stray_version;
    uint32_t rpos;    /* position in r->slots (not for strays) */
    uint8_t state;    /* SCH_R_* */
    uint8_t leaving;  /* not in the version's target: unload once the target is available */
    uint8_t owe;      /* SELDON_SCHED_LOAD / _UNLOAD queued on the replica, or 0 */
    uint8_t inflight; /* the command was taken; waiting for the answer */
    uint8_t grace;    /* in the unload-grace list */
    uint8_t attempts; /* sends of the current command */
    uint8_t mem;      /* counted in r->used */
    uint8_t seen;     /* scratch for agent_connect */
    uint64_t cmd_id;
    int64_t deadline; /* in-flight or grace deadline */
    int64_t last_change;
    char *reason;
    struct sch_slot *q_prev, *q_next; /* the replica's command queue */
    struct sch_slot *l_prev, *l_next; /* the in-flight list or the grace list */
    /* Autoscaling (autoscale.c): the agent's last load report. */
    uint32_t as_inflight;
    uint8_t as_reported;
    int64_t as_idle_since; /* no request since then; 0: busy */
} sch_slot;

typedef struct sch_version {
    struct sch_model *m;
    uint32_t number;
    char *spec; /* canonical JSON of the Model */
    size_t spec_len;
    char *pin;      /* spec.server, or NULL */
    uint32_t *reqs; /* interned requirements (modelType added) */
    uint32_t nreqs;
    int64_t memory; /* bytes; 0 when not given */
    int32_t replicas, min_replicas, max_replicas;
    uint8_t state;
    uint8_t terminating;       /* superseded or deleted: every slot goes */
    uint8_t pending;           /* in the pending list: wants more replicas than it has */
    struct sch_server *server; /* where its target lives; NULL until placed */
    char *reason;              /* of the state */
    char *place_reason;        /* why placement fell short, or NULL */
    int64_t last_change;
    sch_slot **slots;
    uint32_t nslots, capslots;
    uint32_t pend_pos;
    uint32_t mark; /* touched-list scratch */
    /* Autoscaling (autoscale.c). */
    int64_t as_above_since; /* load per replica above the threshold since; 0: not */
    int64_t as_last_scale;  /* last change the autoscaler made */
} sch_version;

typedef struct sch_model {
    char *name;
    uint32_t latest; /* highest version number ever made */
    uint8_t deleted;
    uint8_t dirty;
    uint8_t persisted;      /* has a record in the store */
    sch_version **versions; /* oldest first */
    uint32_t nversions, capversions;
    uint32_t order; /* index in sched->models */
} sch_model;

typedef struct sch_replica {
    struct sch_server *s;
    uint32_t index;
    char *http, *grpc;
    char **own_caps; /* as the agent registered them */
    uint32_t nown_caps;
    uint64_t *capbits; /* effective capabilities (own, else the server's) */
    uint32_t capwords;
    int64_t memory;
    uint32_t overcommit;
    int64_t used; /* memory of the slots placed here */
    uint8_t connected;
    uint8_t expected;        /* connected when the state was last stored: a restart waits for it */
    uint8_t in_ready;        /* in sched->readyq */
    uint32_t mark_v, mark_m; /* placement scratch: holds the version / the model at epoch */
    sch_slot **slots;
    uint32_t nslots, capslots;
    sch_slot *q_head, *q_tail; /* slots owing a command */
    sch_slot **strays;         /* loaded here, unknown: unloaded once ready */
    uint32_t nstrays, capstrays;
} sch_replica;

typedef struct sch_server {
    char *name;
    uint8_t has_resource; /* a Server resource was applied */
    uint8_t deleted;      /* its Server resource was unloaded: every replica drains */
    uint8_t dirty;
    int32_t desired; /* spec.replicas; -1 without a resource */
    char *spec;      /* the Server resource as canonical JSON, or NULL */
    uint32_t mark;   /* placement scratch */
    uint32_t *caps;  /* capabilities for replicas that register none */
    uint32_t ncaps;
    sch_replica **replicas; /* by index; NULL holes */
    uint32_t nreplicas;
    /* Server scaling (autoscale.c). */
    int32_t min_replicas, max_replicas; /* of the Server resource; 0 when absent */
    uint32_t scale_want;                /* replicas requested; 0: never asked */
    uint8_t scale_owed;                 /* a request waits for seldon_sched_next_scale() */
    int64_t scale_low_since;            /* fewer wanted since; 0: not */
    char *scale_reason;
    uint32_t as_pos; /* scratch: index in sched->servers */
} sch_server;

/* An experiment's spec as the routes and the status need it (experiments.c). */
typedef struct sch_exp {
    char **cands; /* candidate names as written (models, or pipelines without ".pipeline") */
    uint32_t *weights;
    uint32_t ncands;
    char *mirror; /* or NULL */
    uint32_t mirror_percent;
    uint8_t active, cands_ready, mirror_ready; /* as last reported in an event */
    uint8_t reported;                          /* a state event was sent */
    char *reason;
    int64_t last_change;
} sch_exp;

typedef struct sch_resource { /* Pipelines and Experiments: stored as written */
    char *key;                /* "<kind byte>:<name>" */
    char *json;
    size_t json_len;
    uint8_t live;
    uint8_t exp_pipeline; /* an experiment over pipelines */
    char *exp_default;    /* an experiment's spec.default, or NULL */
    sch_exp *exp;         /* an experiment's spec, or NULL */
} sch_resource;

/* Pipeline states, Seldon's names. */
enum {
    SCH_P_CREATE = 0,
    SCH_P_CREATING,
    SCH_P_READY,
    SCH_P_FAILED,
    SCH_P_TERMINATING,
    SCH_P_TERMINATED,
    SCH_P__COUNT
};

/* A pipeline (pipelines.c); its record is the sch_resource "P:<name>". */
typedef struct sch_pipeline {
    char *name;
    uint32_t version; /* current (0 before the first apply) */
    uint8_t state;    /* SCH_P_* */
    uint8_t deleted;
    uint8_t models_ready;
    char *reason;
    char *spec; /* canonical JSON */
    size_t spec_len;
    seldon_pipeline *compiled; /* NULL when deleted or failed */
    char **waiting;            /* models not available */
    uint32_t nwaiting;
    char **waiting_pl; /* pipelines it reads (external inputs, triggers) that are not Ready */
    uint32_t nwaiting_pl;
    int64_t last_change;
} sch_pipeline;

typedef struct sch_event {
    seldon_kind kind;
    const char *name; /* borrowed from a model or server, which live as long as the scheduler */
    uint32_t version;
    const char *state; /* static */
    char *reason;      /* owned */
    int64_t time_ns;
    const char *server;
    int32_t server_index;
} sch_event;

typedef struct sch_list {
    sch_slot *head, *tail;
} sch_list;

struct seldon_sched {
    seldon_sched_config cfg;
    seldon_routes_defaults route_defaults;
    sdn_store *store;
    int64_t now;
    int64_t ready_deadline;
    int32_t ready;

    sch_map models_by_name;
    sch_model **models;
    uint32_t nmodels, capmodels;

    sch_map servers_by_name;
    sch_server **servers;
    uint32_t nservers, capservers;

    sch_map caps_by_name; /* name -> id + 1 */
    char **caps;
    uint32_t ncaps, capcaps;

    sch_map resources_by_key;
    sch_resource **resources;
    uint32_t nresources, capresources;

    sch_version **pending;
    uint32_t npending, cappending;
    uint8_t retry; /* capacity appeared: retry the pending versions before the call returns */

    sch_replica **readyq; /* replicas with queued commands */
    uint32_t nreadyq, capreadyq, readyq_pos;
    sch_list inflight;
    sch_list grace;
    uint64_t next_cmd_id;

    sch_event *events; /* ring */
    size_t ev_cap, ev_head, ev_len;
    sch_event ev_cur; /* the last event handed out (its reason is owned) */

    sch_model **dirty_models;
    uint32_t ndirty_models, capdirty_models;
    sch_server **dirty_servers;
    uint32_t ndirty_servers, capdirty_servers;
    sch_resource **dirty_resources;
    uint32_t ndirty_resources, capdirty_resources;

    uint64_t routes_gen;
    uint8_t routes_changed;
    seldon_routes *routes_cache; /* built for routes_cache_gen */
    uint64_t routes_cache_gen;

    sch_map pipelines_by_name;
    sch_pipeline **pipelines;
    uint32_t npipelines, cappipelines;
    uint8_t pl_check;    /* a model's availability changed: pipelines look again */
    uint32_t pl_changes; /* pipeline state changes so far (readers look again) */

    uint32_t epoch;       /* placement scratch marks */
    uint32_t touch_epoch; /* touched-list marks */
    seldon_buf scratch;

    seldon_sched_autoscale autoscale; /* autoscale.c */
    uint32_t scale_pos;               /* round robin of seldon_sched_next_scale() */

    /* Pipeline routes (status.c): "<p>.pipeline" for every live pipeline, served by these
       upstreams, once seldon_sched_set_pipeline_upstreams() was called. */
    uint8_t pl_routes;
    char **pl_http, **pl_grpc; /* parallel; either may hold NULL */
    uint32_t npl_ups;
};

/* Growth of a pointer array. */
int sdn_sch_grow(void **arr, uint32_t *cap, uint32_t need, size_t elem);

/* Interns a capability; returns its id or a negative error. */
int64_t sdn_sch_cap_id(seldon_sched *s, const char *name, size_t len);
/* Seldon's default capabilities of a serverConfig ("mlserver", "triton"); their count. */
int sdn_sch_default_caps(const char *const **out, const char *config);
/* 1 when the replica has capability id. */
static inline int sch_has_cap(const sch_replica *r, uint32_t id)
{
    return id / 64 < r->capwords && (r->capbits[id / 64] >> (id % 64) & 1);
}

/* Memory a replica offers: memory * (100 + overcommit) / 100, saturating. */
int64_t sdn_sch_capacity(const sch_replica *r);
static inline int64_t sch_free(const sch_replica *r)
{
    int64_t f;
    if (__builtin_sub_overflow(sdn_sch_capacity(r), r->used, &f))
        return r->used > 0 ? INT64_MIN : INT64_MAX;
    return f;
}
/* 1 when the replica takes no new placements: its Server resource has fewer replicas. */
int sdn_sch_draining(const sch_replica *r);

/* 1 when the version may live on r: its pin and its requirements (place.c). */
int sdn_sch_fits(const sch_replica *r, const sch_version *v);
/* Placement (place.c): choose the version's target replicas and issue the loads/unloads. */
int sdn_sch_schedule(seldon_sched *s, sch_version *v);

/* Slots and state (sched.c). */
int sdn_sch_slot_new(sch_slot **out, seldon_sched *s, sch_version *v, sch_replica *r, int state);
void sdn_sch_slot_leave(seldon_sched *s, sch_slot *slot);
void sdn_sch_version_refresh(seldon_sched *s, sch_version *v);
void sdn_sch_pending_add(seldon_sched *s, sch_version *v);
void sdn_sch_pending_remove(seldon_sched *s, sch_version *v);
void sdn_sch_mark_model(seldon_sched *s, sch_model *m);
void sdn_sch_mark_server(seldon_sched *s, sch_server *sv);
int sdn_sch_set_reason(char **dst, const char *reason);
void sdn_sch_event(seldon_sched *s, seldon_kind kind, const char *name, uint32_t version,
                   const char *state, const char *reason, const char *server, int32_t index);

/* Objects (sched.c). */
int sdn_sch_server_get(sch_server **out, seldon_sched *s, const char *name, int create);
int sdn_sch_replica_get(sch_replica **out, seldon_sched *s, sch_server *sv, uint32_t index,
                        int create);
int sdn_sch_replica_set_caps(seldon_sched *s, sch_replica *r);
int sdn_sch_model_get(sch_model **out, seldon_sched *s, const char *name, int create);
int sdn_sch_version_new(sch_version **out, seldon_sched *s, sch_model *m, uint32_t number);
int sdn_sch_resource_put(seldon_sched *s, const char *key, const char *json, size_t len, int live);
/* Records an experiment's default (for the one-default-per-model rule). */
int sdn_sch_resource_experiment(seldon_sched *s, const char *key, const seldon_resource *res);

/* Experiments (experiments.c). */
void sdn_sch_exp_free(sch_exp *e);
/* 1 when target (a candidate or the mirror of r) has a route to serve it. */
int sdn_sch_exp_target_ready(const seldon_sched *s, const sch_resource *r, const char *target);
/* The experiment's readiness now: cands_ready, mirror_ready; the first target waited for. */
int sdn_sch_exp_ready(const seldon_sched *s, const sch_resource *r, int *cands_ready,
                      int *mirror_ready, const char **waiting_for);
/* Sends an event for each experiment whose readiness changed, and marks the routes. */
void sdn_sch_experiments_refresh(seldon_sched *s);

/* Pipelines (pipelines.c). */
const char *sdn_sched_pipeline_state_name(int state);
/* Compiles every Pipeline of the manifest (out[i] for resource i, NULL for other kinds). */
int sdn_sch_pipelines_prepare(seldon_sched *s, const seldon_manifest *mf, seldon_pipeline **out);
/* Applies one compiled Pipeline (takes compiled in every case). */
int sdn_sch_pipeline_apply(seldon_sched *s, const seldon_resource *res, seldon_pipeline *compiled,
                           uint32_t *out_version);
int sdn_sch_pipeline_unload(seldon_sched *s, const char *name);
/* A pipeline record read back (its version; the spec is compiled by _reload_all). */
int sdn_sch_pipeline_loaded(seldon_sched *s, const char *name, const char *json, size_t len,
                            uint32_t version);
void sdn_sch_pipelines_reload_all(seldon_sched *s);
/* Looks again at which models pipelines wait for (after a call that changed availability). */
void sdn_sch_pipelines_refresh(seldon_sched *s);
sch_pipeline *sdn_sch_pipeline_find(const seldon_sched *s, const char *name);
void sdn_sch_pipelines_free(seldon_sched *s);
/* 1 when the model has an available version. */
int sdn_sch_model_available(const seldon_sched *s, const char *name);

/* Autoscaling (autoscale.c): decisions at tick; the next deadline, or INT64_MAX. */
int64_t sdn_sch_autoscale(seldon_sched *s, int64_t now);
/* Replicas a server takes placements on (its resource's replicas or what was requested). */
int32_t sdn_sch_server_size(const sch_server *sv);

/* Pipeline routes (status.c). */
void sdn_sch_pipeline_upstreams_free(seldon_sched *s);

/* Persistence (persist.c). */
#define SCH_DB_MODELS 0
#define SCH_DB_SERVERS 1
#define SCH_DB_RESOURCES 2
#define SCH_DB_META 3
#define SCH_DB_COUNT 4
int sdn_sch_persist(seldon_sched *s);
/* Commits and deletes a scratch record of bytes in SCH_DB_META: 0 when the store can take
   a write that size now, else the store's error (nothing else written). */
int sdn_sch_store_probe(seldon_sched *s, size_t bytes);
int sdn_sch_reload(seldon_sched *s);
/* Decodes one record of db into the scheduler, as the reload does (for the fuzz target). */
int sdn_sch_decode(seldon_sched *s, int db, const void *key, size_t klen, const void *val,
                   size_t vlen);

#endif
