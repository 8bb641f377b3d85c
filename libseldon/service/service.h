/*
 * The inference service, inside: the shared state of its parts. service.c
 * holds the object, the status mapping, metrics, execution and batching;
 * rest.c the REST endpoints; grpc.c the gRPC methods and in-process calls.
 */
#ifndef SDN_SERVICE_H
#define SDN_SERVICE_H

#include <pthread.h>
#include <stdatomic.h>

#include "seldon/service.h"

/* Method labels of the metrics, and the kinds of call. */
#define SDN_SVC_REST 0
#define SDN_SVC_GRPC 1
#define SDN_SVC_STREAM 2 /* a ModelStreamInfer message: counted as gRPC */
#define SDN_SVC_LOCAL 3  /* in-process */

/* Room for an error message copied out of this thread's last error. */
#define SDN_WHY_MAX 512

typedef struct sdn_svc_model sdn_svc_model;

struct seldon_service {
    seldon_repo *repo;
    seldon_service_hooks hooks;
    char *server_name;
    atomic_int ready;

    seldon_metrics *metrics;        /* borrowed; NULL: nothing is counted */
    seldon_metric *m_infer_total;   /* {model, method_type, code} */
    seldon_metric *m_infer_seconds; /* {model, method_type, code} */
    seldon_metric *m_batch_size;    /* {model} */
    seldon_metric *m_requests;      /* {endpoint, method_type, code}: everything but infer */
    seldon_series *s_loaded;

    /* Models whose batcher holds waiting inferences, and the deadline armed. */
    pthread_mutex_t lock;
    sdn_svc_model *pending;
    int64_t armed_ns;
};

/*
 * One inference in flight, whichever transport brought it. The embedded job
 * carries it to a worker when it runs alone, so that hand-off allocates
 * nothing.
 */
typedef struct sdn_svc_call {
    seldon_job job;
    seldon_service *svc;
    int kind; /* SDN_SVC_* */
    seldon_model *model;
    seldon_msg *request;  /* owned unless kind is LOCAL */
    seldon_msg *response; /* owned unless kind is LOCAL */
    seldon_infer *infer;
    int64_t start_ns;
    void *done; /* a seldon_rest_done_fn, seldon_grpc_done_fn or seldon_service_infer_fn */
    void *user_data;
    const uint8_t *raw; /* gRPC: the request bytes until they decode, for an error's ids;
                           REST: a large body, decoded on a worker */
    size_t raw_len;
    size_t json_len; /* REST: the JSON part of raw (the binary extension) */
} sdn_svc_call;

/* service.c */
int64_t sdn_svc_now(seldon_service *svc);
const char *sdn_svc_method_label(int kind);
void sdn_svc_count_request(seldon_service *svc, const char *endpoint, int kind, int code);
void sdn_svc_count_infer(seldon_service *svc, seldon_model *model, int kind, int code,
                         double seconds);
/* Frees a call and everything it owns. */
void sdn_svc_call_free(sdn_svc_call *c);
/*
 * Runs the rest of an inference once c has its model, request, response and
 * infer: inline, on a worker, or through the batcher.
 */
void sdn_svc_submit(sdn_svc_call *c);

/* rest.c */
int sdn_svc_rest_infer_done(sdn_svc_call *c, int32_t status, const char *message);
/* Queues a gRPC load or unload of name[0..len) on the load executor. */
void sdn_svc_grpc_repo_job(seldon_service *svc, int unload, const char *name, size_t len,
                           seldon_grpc_done_fn done, void *ud);

/* A load or unload for the load executor. */
typedef struct sdn_svc_repo_job {
    seldon_job job;
    seldon_service *svc;
    int kind; /* SDN_SVC_REST or SDN_SVC_GRPC */
    int unload;
    void *done;
    void *user_data;
    char name[256];
} sdn_svc_repo_job;

/* The outcome code to report for a failed load or unload (see service.c). */
int sdn_svc_repo_code(seldon_service *svc, const sdn_svc_repo_job *j, int rc);

#endif
