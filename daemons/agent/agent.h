/*
 * seldon-agent: runs beside one OIP server with the repository extension. It
 * registers the server replica with seldon-scheduler (AgentService), carries out
 * its LOAD and UNLOAD commands (fetch, place, RepositoryModelLoad), keeps loaded
 * models within --memory by evicting the least recently used ones, and proxies
 * REST and gRPC to the server with each model name mapped to its versioned name.
 *
 * Parts: main.c (flags, the loop, signals, /metrics), control.c (the scheduler
 * stream, reports, the unary gRPC client), models.c (the command queue, fetching
 * with cp/rclone children, loads, evictions, lazy reloads), proxy_rest.c and
 * proxy_grpc.c (the data plane), cache.c (the pure logic).
 *
 * Threads: one event loop (sdl_loops, loop 0) runs everything; the main thread
 * only waits for signals. Nothing here takes a lock.
 */
#ifndef AG_AGENT_H
#define AG_AGENT_H

#include <stdint.h>

#include <uv.h>

#include "cache.h"
#include "h2.h"
#include "http_client.h"
#include "http_server.h"
#include "loops.h"
#include "seldon/seldon.h"

#define AG_MAX_CAPS 64

typedef struct ag_config {
    const char *scheduler_host; /* "host:port"; NULL: no scheduler (commands never come) */
    const char *server_name;
    uint32_t replica_index;
    const char *caps[AG_MAX_CAPS];
    size_t ncaps;
    int64_t memory; /* bytes; 0: no limit */
    uint32_t overcommit;
    const char *models_dir;
    const char *artifacts_dir;
    const char *server_http; /* "host:port" of the inference server */
    const char *server_grpc;
    const char *host;
    int http_port, grpc_port, metrics_port;
    const char *advertise_host;
    const char *rclone_config;
    const char *rclone;         /* the rclone binary */
    uint64_t load_wait_ms;      /* how long a request waits for a lazy reload */
    uint64_t server_timeout_ms; /* a repository call to the server */
    uint64_t reconnect_max_ms;
    size_t max_message; /* a gRPC message the proxy reads whole to rename its model */
    uint64_t grace_ms;
    int32_t log_level;
    uint32_t busy_poll_us;
    uint64_t load_report_ms; /* how often the models' load goes to the scheduler */
} ag_config;

typedef struct ag_job ag_job;

typedef struct agent {
    ag_config cfg;
    sdl_loops *loops;
    uv_loop_t *loop;
    sdh_server *http;
    sdh_server *metrics_http;
    sd2_server *h2;
    sd2_server *h2_draining; /* after SIGTERM, until its streams end */
    sd2_client *h2c;
    sdc_pool *pool; /* REST to the server */
    char srv_host[64];
    int srv_grpc_port;
    char sched_ip[64];
    int sched_port;
    char http_addr[96], grpc_addr[96]; /* advertised */
    ag_cache *cache;
    /* control.c */
    sd2_stream *sub;
    uv_timer_t reconnect;
    uint64_t backoff_ms;
    seldon_buf sub_in;
    int registered;
    uint64_t subscriptions; /* how many times it registered */
    /* models.c */
    ag_job *jobs, *jobs_tail;
    /* Two lanes: one job fetching (a child process copies), one job talking to the
       server (evictions, loads, unloads). A reload for a waiting request takes the server
       lane while a long fetch goes on. */
    ag_job *fetching, *serving, *parked; /* parked: fetched, waiting for the server lane */
    uv_process_t *child;                 /* the fetch or copy running, if any */
    int stopping;
    int index_pending; /* restored versions wait for the server's index before a reload */
    /* metrics */
    seldon_metrics *metrics;
    seldon_metric *m_infer, *m_infer_secs, *m_infer_secs_total, *m_agg_infer, *m_agg_secs,
        *m_loaded, *m_loaded_mem, *m_evict, *m_miss, *m_load, *m_unload, *m_capacity;
    /* Autoscaling: the load report (control.c) and an unload waiting for the requests in
       flight to end (models.c), at most --grace. */
    uv_timer_t load_timer;
    int load_timer_on;
    ag_job *drain_job;
    uv_timer_t *drain_timer;
} agent;

/* A request waiting for its model to be loaded again. */
typedef struct ag_waiter {
    struct ag_waiter *prev, *next;
    /* ok: the model is loaded now; else reason says why not. */
    void (*fn)(void *arg, int ok, const char *reason);
    void *arg;
    int linked;
} ag_waiter;

int64_t ag_now_ns(void);
/* Splits "host:port" (host numeric, or localhost); 0 or -1. */
int ag_split_addr(const char *addr, char *host, size_t cap, int *port);

/* control.c */
int ag_control_start(agent *a);
void ag_control_stop(agent *a);
#define AG_EV_LOADED 1
#define AG_EV_LOAD_FAILED 2
#define AG_EV_UNLOADED 3
#define AG_EV_UNLOAD_FAILED 4
void ag_report(agent *a, uint64_t command_id, const char *model, uint32_t version, int type,
               const char *reason);
/* models.c: queues a command from the scheduler's stream (one packed AgentCommand). */
void ag_models_command(agent *a, const uint8_t *msg, size_t len);

/* A unary gRPC call on a's client: msg is one protobuf message (copied). cb runs once,
 * later, with the grpc-status (14 when the call failed to reach), the grpc-message
 * (percent-decoded) and the response message (may be empty), all borrowed for the call. */
typedef void (*ag_unary_cb)(void *arg, int32_t status, const char *message, const uint8_t *resp,
                            size_t len);
int ag_unary(agent *a, const char *host, int port, const char *path, const uint8_t *msg, size_t len,
             uint64_t timeout_ms, ag_unary_cb cb, void *arg);

/* models.c */
/*
 * For a request to e: 1 when e is loaded (go ahead; it is marked used); 0 when it is
 * being loaded again: w->fn runs once it is (or once it failed). w stays linked until
 * then; ag_waiter_cancel() unlinks it.
 */
int ag_models_acquire(agent *a, ag_entry *e, ag_waiter *w);
void ag_waiter_cancel(ag_waiter *w);
/* The server answered "not found" for e, which the agent holds as loaded: it lost it (a
 * restart). e becomes evicted, so the next ag_models_acquire() loads it again. */
void ag_models_lost(agent *a, ag_entry *e);
void ag_models_stop(agent *a);
/* At start-up, before the loop runs: the model versions held before a restart (recorded
 * under <models-dir>/.agent/) come back as held and evicted. 0 or SELDON_EIO. */
int ag_models_restore(agent *a);
/* On the loop: asks the server which restored versions it still has loaded. */
void ag_models_check_server(agent *a);
/* A request for vname starts, or ends (in-flight counts, for the autoscaler; an unload
 * waits for them). ag_models_end for a version no longer held does nothing. */
void ag_models_begin(agent *a, const char *vname);
void ag_models_end(agent *a, const char *vname);
/* control.c: starts the periodic load report (after the first registration). */
void ag_load_report_start(agent *a);
/* The metrics of one answered request. */
void ag_metrics_infer(agent *a, const char *model, const char *vname, const char *method, int code,
                      int64_t started_ns);

/* proxy_rest.c and proxy_grpc.c */
void ag_rest_head(void *user_data, sdh_req *req, const sdh_request *head);
void ag_rest_handler(void *user_data, sdh_req *req, const sdh_request *request);
void ag_grpc_request(void *user_data, sd2_stream *s, const sd2_header *h, size_t n, int end);

#endif
