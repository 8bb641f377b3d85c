/*
 * seldon-server: the Open Inference Protocol server. Shared state of its
 * parts: REST (rest.c), gRPC (grpc_api.c), execution (exec.c), main.c.
 */
#ifndef SRV_SERVER_H
#define SRV_SERVER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

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

typedef struct srv_job srv_job;
typedef void (*srv_job_fn)(srv_job *job);

/* A unit of work for the inference workers; embedded at the start of bigger structs. */
struct srv_job {
    srv_job *next;
    srv_job_fn run;
};

typedef struct srv_timer_entry srv_timer_entry;

typedef struct srv {
    srv_config cfg;
    seldon_repo *repo;
    seldon_metrics *metrics;
    seldon_metric *m_infer_total;   /* {model, method_type, code} */
    seldon_metric *m_infer_seconds; /* {model, method_type} */
    seldon_metric *m_batch_size;    /* {model} */
    seldon_metric *m_requests;      /* {endpoint, method_type, code}: everything but infer */
    seldon_metric *m_loaded;
    seldon_series *s_loaded;
    atomic_int ready;

    /* Inference workers: a FIFO of jobs. */
    pthread_mutex_t qlock;
    pthread_cond_t qcond;
    srv_job *qhead;
    srv_job *qtail;
    int stopping;
    pthread_t *workers;
    int nworkers;

    /* The batch timer: models whose first waiting request falls due. */
    pthread_mutex_t tlock;
    pthread_cond_t tcond;
    srv_timer_entry *timers;
    int timer_stop;
    pthread_t timer;

    sdh_server *http;
    sdg_server *grpc;
} srv;

/* Method labels for metrics. */
#define SRV_REST "rest"
#define SRV_GRPC "grpc"

int64_t srv_now_ns(void);

/* exec.c */
int srv_exec_start(srv *s);
void srv_exec_stop(srv *s);
void srv_enqueue(srv *s, srv_job *job);
/* Runs or queues an inference on model, as its runtime and batching settings ask. */
void srv_submit(srv *s, seldon_model *model, seldon_infer *infer);
/*
 * Records one finished inference in the metrics. model may be NULL (the request
 * never reached one); the success series of a model are looked up once and kept
 * with the instance, so the common case takes no lock.
 */
void srv_count_infer(srv *s, seldon_model *model, const char *method, int code, double seconds);
void srv_count_request(srv *s, const char *endpoint, const char *method, int code);
void srv_refresh_loaded(srv *s);

/* Maps libseldon errors to protocol statuses. */
int srv_http_status(int rc);
int srv_grpc_status(int rc);

/* rest.c */
void srv_rest_handler(void *user_data, sdh_req *req, const sdh_request *request);

/* grpc_api.c: fills out with the service's methods, bound to s. */
size_t srv_grpc_methods(sdg_method *out, size_t cap, srv *s);

#endif
