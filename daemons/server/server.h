/*
 * seldon-server: the Open Inference Protocol server. The protocol itself is
 * libseldon's seldon_service; this daemon wires transports to it and lends
 * it executors and a timer. Shared state of its parts: REST (rest.c), gRPC
 * (grpc_api.c), executors and the batch timer (exec.c), main.c.
 */
#ifndef SRV_SERVER_H
#define SRV_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include "grpc_server.h"
#include "http_server.h"
#include "seldon/seldon.h"

typedef struct srv_config {
    const char *repo_dir;
    const char *runtime_path;
    const char *host;
    int http_port;
    int grpc_port;
    int io_threads;
    int grpc_threads;
    int workers;
    size_t max_body;
    uint64_t idle_timeout_ms;
    uint64_t grace_ms;
    int load_all;
    int32_t log_level;
} srv_config;

/* A FIFO of seldon_job served by a pool of threads. */
typedef struct srv_pool {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    seldon_job *head;
    seldon_job *tail;
    int sleeping; /* workers waiting on cond */
    int waking;   /* of them, signalled and not yet awake */
    int stopping;
    pthread_t *threads;
    int nthreads;
} srv_pool;

/* The batch timer: a libuv loop of its own, on its own thread, monotonic clock. */
typedef struct srv_timer {
    uv_loop_t loop;
    uv_async_t wake; /* a new deadline, or stop */
    uv_timer_t timer;
    _Atomic int64_t want_ns; /* the earliest deadline asked for; INT64_MAX: none */
    int64_t due_ns;          /* loop thread: what the timer is armed for */
    atomic_int stop;
    pthread_t thread;
    int started;
} srv_timer;

struct srv;

/* A gRPC method bound to the server: the service is told which method by its path. */
typedef struct srv_method {
    struct srv *s;
    const char *path; /* static storage (seldon_service_grpc_method()) */
    size_t path_len;
    int streaming;
} srv_method;

#define SRV_MAX_METHODS 16

typedef struct srv {
    srv_config cfg;
    seldon_repo *repo;
    seldon_metrics *metrics;
    seldon_service *svc;

    srv_pool workers; /* inference */
    srv_pool loader;  /* model loads and unloads */
    srv_timer timer;

    sdh_server *http;
    sdg_server *grpc;
    srv_method methods[SRV_MAX_METHODS];
} srv;

/* exec.c */
/* The hooks that lend the service s's executors, timer and clock. */
void srv_hooks(seldon_service_hooks *out, srv *s);
/* Starts the worker and loader threads and the timer loop. */
int srv_exec_start(srv *s);
/*
 * After the transports stopped: stops the timer, hands waiting batches to the
 * workers, finishes queued loads and inferences, joins.
 */
void srv_exec_stop(srv *s);

/* rest.c */
void srv_rest_handler(void *user_data, sdh_req *req, const sdh_request *request);

/* grpc_api.c: fills out with the service's methods, bound to s. */
size_t srv_grpc_methods(sdg_method *out, size_t cap, srv *s);

#endif
