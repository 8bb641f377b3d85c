/*
 * The inference service: the Open Inference Protocol served over a
 * seldon_repo, for every transport at once. One path for REST, gRPC and
 * in-process callers: decode -> find the model -> check the request ->
 * batch or submit -> complete -> encode, and one mapping of libseldon error
 * codes to HTTP and gRPC statuses.
 *
 * The service starts no threads and reads no clock. The host lends it:
 *   - an inference executor (submit_infer): runs a job on a worker thread;
 *   - a load executor (submit_load): runs a model load or unload, never on
 *     the inference workers, so that one model's load never holds up
 *     inference on another;
 *   - a timer (arm_timer): calls seldon_service_timer() at or after a
 *     deadline, for adaptive batching windows;
 *   - a monotonic clock (now_ns), read for latency metrics and batch windows.
 * A request whose model is cheap (SELDON_RUNTIME_INLINE, no batching) is
 * answered on the caller's thread before the call returns: no handoff.
 *
 * Thread safety: every seldon_service_* function may be called from any
 * thread at once, except seldon_service_new() and seldon_service_free().
 * Completion callbacks run on the thread that completed the request: the
 * caller's (inline), a worker's, the timer's or the load executor's. Hooks
 * are called without any service lock held, from any of those threads, and
 * may be called before the call that caused them returns.
 */
#ifndef SELDON_SERVICE_H
#define SELDON_SERVICE_H

#include "common.h"
#include "metrics.h"
#include "oip.h"
#include "repository.h"

#ifdef __cplusplus
extern "C" {
#endif

/* --- Status mapping ----------------------------------------------------- */

/*
 * The HTTP status for a libseldon result code: 0 -> 200, SELDON_ENOTFOUND ->
 * 404, argument and decoding errors -> 400, SELDON_ETOOBIG -> 413,
 * SELDON_EUNAVAIL -> 503, SELDON_ETIMEDOUT -> 504, anything else -> 500.
 */
SELDON_API int32_t seldon_status_http(int32_t rc);

/*
 * The gRPC status code for a libseldon result code: 0 -> OK (0),
 * SELDON_ENOTFOUND -> NOT_FOUND (5), argument and decoding errors ->
 * INVALID_ARGUMENT (3), SELDON_EEXIST -> ALREADY_EXISTS (6), SELDON_ETOOBIG ->
 * RESOURCE_EXHAUSTED (8), SELDON_EUNSUPPORTED -> UNIMPLEMENTED (12),
 * SELDON_EUNAVAIL -> UNAVAILABLE (14), SELDON_ETIMEDOUT -> DEADLINE_EXCEEDED
 * (4), SELDON_ECANCELED -> CANCELLED (1), anything else -> INTERNAL (13).
 */
SELDON_API int32_t seldon_status_grpc(int32_t rc);

/* --- Host hooks ----------------------------------------------------------- */

/*
 * A unit of work handed to the host. The host may use next for its own
 * queue while it holds the job, and calls run(job) exactly once, on the
 * executor it was submitted to; the job belongs to the service (run frees it
 * or returns it to the request it belongs to).
 */
typedef struct seldon_job seldon_job;
struct seldon_job {
    seldon_job *next;             /* the host's, while it holds the job */
    void (*run)(seldon_job *job); /* set by the service */
};

typedef struct seldon_service_hooks {
    uint32_t version; /* SELDON_SERVICE_HOOKS_VERSION */
    /* Runs job on an inference worker (not on the calling thread, not before returning). */
    void (*submit_infer)(void *host, seldon_job *job);
    /* Runs job on the load executor: model loads and unloads, which may take seconds. */
    void (*submit_load)(void *host, seldon_job *job);
    /*
     * Asks for one call of seldon_service_timer() at or after deadline_ns
     * (the now_ns clock). The host may keep only the earliest deadline asked
     * for since its last call of seldon_service_timer().
     */
    void (*arm_timer)(void *host, int64_t deadline_ns);
    /* A monotonic clock, in nanoseconds. */
    int64_t (*now_ns)(void *host);
    void *host; /* passed to every hook */
} seldon_service_hooks;

#define SELDON_SERVICE_HOOKS_VERSION 1
#define SELDON_SERVICE_HOOKS_INIT {SELDON_SERVICE_HOOKS_VERSION, NULL, NULL, NULL, NULL, NULL}

typedef struct seldon_service_options {
    uint32_t version;  /* SELDON_SERVICE_OPTIONS_VERSION */
    seldon_repo *repo; /* borrowed: must outlive the service */
    /*
     * Borrowed, may be NULL. The service adds its families (inference totals
     * and latency, batch sizes, other requests, loaded models) and serves
     * the registry as Prometheus text on GET /metrics. A model instance holds
     * its series until it is freed: free the registry after the repository.
     */
    seldon_metrics *metrics;
    const char *server_name;    /* for server metadata; copied; NULL: "seldon" */
    seldon_service_hooks hooks; /* copied; every hook is required */
} seldon_service_options;

#define SELDON_SERVICE_OPTIONS_VERSION 1
#define SELDON_SERVICE_OPTIONS_INIT                                                                \
    {SELDON_SERVICE_OPTIONS_VERSION, NULL, NULL, NULL, SELDON_SERVICE_HOOKS_INIT}

typedef struct seldon_service seldon_service;

/*
 * Creates a service over opts->repo. Not ready until seldon_service_set_ready().
 * Caller owns *out; free with seldon_service_free().
 */
SELDON_API int seldon_service_new(seldon_service **out, const seldon_service_options *opts);

/*
 * Frees the service. Call it once nothing is in flight: after
 * seldon_service_flush() and after the host's executors have run every job
 * they were given. NULL ok.
 */
SELDON_API void seldon_service_free(seldon_service *svc);

/* Server readiness, as /v2/health/ready and ServerReady report it (0 at first). */
SELDON_API void seldon_service_set_ready(seldon_service *svc, int32_t ready);

/*
 * The batch timer: takes every batch due at now_ns and hands it to the
 * inference executor, then arms the timer for the next deadline, if any.
 */
SELDON_API void seldon_service_timer(seldon_service *svc, int64_t now_ns);

/*
 * For shutdown: hands every waiting batch to the inference executor now,
 * whatever its deadline. New requests should have stopped arriving first.
 */
SELDON_API void seldon_service_flush(seldon_service *svc);

/* Sets the loaded-models gauge from the repository (after loads the host made itself). */
SELDON_API void seldon_service_refresh(seldon_service *svc);

/* --- REST ----------------------------------------------------------------- */

/* One HTTP header, as a view: borrowed. Not NUL-terminated. */
typedef struct seldon_http_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} seldon_http_header;

/* An HTTP request, as views: borrowed, valid until the done callback has returned. */
typedef struct seldon_rest_request {
    const char *method; /* "GET", "HEAD", "POST"... */
    size_t method_len;
    const char *path; /* without the query string, not percent-decoded */
    size_t path_len;
    const char *query; /* after '?'; may be NULL */
    size_t query_len;
    const seldon_http_header *headers; /* names in lower case */
    size_t nheaders;
    const uint8_t *body; /* may be NULL when body_len is 0 */
    size_t body_len;
} seldon_rest_request;

/*
 * An HTTP response. headers (content-type, and inference-header-content-length
 * or allow where they apply) are borrowed, valid for the done call only. The
 * done callback may take body.data (leaving body empty, SELDON_BUF_INIT);
 * whatever it leaves is freed after it returns.
 */
typedef struct seldon_rest_response {
    int32_t status;
    const seldon_http_header *headers;
    size_t nheaders;
    seldon_buf body;
} seldon_rest_response;

/* Called exactly once per seldon_service_rest() call. response is borrowed for the call. */
typedef void (*seldon_rest_done_fn)(void *user_data, seldon_rest_response *response);

/*
 * Serves one REST request: the protocol's endpoints (health, server and model
 * metadata, model ready, infer with the binary tensor extension), the
 * repository extension (index, load, unload) and GET /metrics. Unknown paths
 * get 404, known paths with a wrong method 405 with Allow, errors a JSON body
 * {"error": "..."} with the status seldon_status_http() gives. done runs
 * exactly once: before this returns for everything answered at once (an
 * inline model's inference included), later from an executor otherwise.
 * Returns 0, or SELDON_EINVAL for NULL arguments (done is then not called).
 */
SELDON_API int seldon_service_rest(seldon_service *svc, const seldon_rest_request *request,
                                   seldon_rest_done_fn done, void *user_data);

/* --- gRPC ------------------------------------------------------------------ */

/* The methods of inference.GRPCInferenceService: "/inference.GRPCInferenceService/ModelInfer"... */
SELDON_API size_t seldon_service_grpc_method_count(void);

/*
 * The full path of method index (static storage; NULL past the end);
 * *streaming (optional) receives 1 for the bidirectional stream ModelStreamInfer.
 */
SELDON_API const char *seldon_service_grpc_method(size_t index, int32_t *streaming);

/*
 * Called exactly once per seldon_service_grpc() call. status is a gRPC status
 * code; when 0, response holds the reply message (the callback may take its
 * data, as for REST); otherwise message (borrowed for the call) tells why.
 * For ModelStreamInfer, status is 0 and response is the
 * ModelStreamInferResponse for that message: on failure error_message is set,
 * and infer_response carries the request's id (and model name and version,
 * when they were readable) so that a client can tell which request failed.
 * Only when memory runs out before even that frame can be built is status
 * RESOURCE_EXHAUSTED (8), which ends the stream.
 */
typedef void (*seldon_grpc_done_fn)(void *user_data, int32_t status, const char *message,
                                    seldon_buf *response);

/*
 * Serves one gRPC message of method (a full path, as
 * seldon_service_grpc_method() names them). request is borrowed for this
 * call only: the service copies what it keeps. An unknown method gets UNIMPLEMENTED. done runs
 * exactly once, before this returns or later, as for REST. Returns 0, or SELDON_EINVAL for NULL
 * arguments (done is then not called).
 */
SELDON_API int seldon_service_grpc(seldon_service *svc, const char *method, size_t method_len,
                                   const uint8_t *request, size_t len, seldon_grpc_done_fn done,
                                   void *user_data);

/* --- In process ------------------------------------------------------------- */

/* Called exactly once per seldon_service_infer(): status 0 or a SELDON_E*; message borrowed. */
typedef void (*seldon_service_infer_fn)(void *user_data, int32_t status, const char *message);

/*
 * Runs request (its model name and version choose the model) into response,
 * through the same checks, batching and executors as REST and gRPC. Both are
 * borrowed until done has returned; response is reset first. Returns 0, or
 * SELDON_EINVAL for NULL arguments (done is then not called).
 */
SELDON_API int seldon_service_infer(seldon_service *svc, const seldon_msg *request,
                                    seldon_msg *response, seldon_service_infer_fn done,
                                    void *user_data);

#ifdef __cplusplus
}
#endif

#endif
