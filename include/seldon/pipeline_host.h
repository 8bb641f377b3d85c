/*
 * Pipelines embedded in a host program: the dataflow engine
 * (include/seldon/pipeline.h) wired to models that run in the same process.
 *
 * A seldon_pipeline_host is built from the text of a manifest holding one or
 * more Pipeline resources (chained pipelines may read each other). Its steps
 * call models that the host attaches by name: instances of a seldon_repo
 * (builtin runtimes, xgboost, runtime plugins), or host code behind the
 * runtime ABI (include/seldon/runtime.h). Requests go in with
 * seldon_pipeline_host_push(); each ends once, through the result callback.
 *
 *     seldon_pipeline_host *h;
 *     seldon_pipeline_host_options o = SELDON_PIPELINE_HOST_OPTIONS_INIT;
 *     o.repo = repo;                 // steps call the repository's models
 *     o.on_result = print_result;    // called once per request
 *     seldon_pipeline_host_new(&h, yaml, strlen(yaml), &o);
 *     seldon_pipeline_host_push(h, NULL, "r1", 2, NULL, 0, inputs, 0, now_ns);
 *
 * The host drives time and threads, as everywhere in libseldon: nothing here
 * starts a thread or reads a clock. A model whose runtime completes its
 * inferences before execute returns (every builtin does) runs to the end
 * inside the call that started it: a pipeline of such models answers
 * inside seldon_pipeline_host_push(), and seldon_pipeline_host_infer() is
 * the synchronous convenience for that case. A runtime that completes
 * later, from another thread, makes the host's wake hook fire; the host then
 * calls seldon_pipeline_host_run() on its own thread. Timeouts, join and
 * batch windows take effect when the host calls seldon_pipeline_host_run()
 * at seldon_pipeline_host_deadline().
 *
 * Semantics (joins, triggers, conditionals, batching, errors) are the
 * engine's: docs/pipelines.md.
 *
 * Thread safety: one host, one thread at a time. The one exception is the
 * completion of an inference (seldon_infer_complete()), which a runtime may
 * call from any thread; the host's wake hook then runs on that thread.
 */
#ifndef SELDON_PIPELINE_HOST_H
#define SELDON_PIPELINE_HOST_H

#include "common.h"
#include "oip.h"
#include "pipeline.h"
#include "repository.h"
#include "runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct seldon_pipeline_host seldon_pipeline_host;

/* How one request ended. Every pointer is borrowed for the callback only. */
typedef struct seldon_pipeline_result {
    const char *pipeline;   /* NUL-terminated */
    const char *request_id; /* not NUL-terminated */
    size_t request_id_len;
    int32_t status;     /* 0, or a negative SELDON_E* (SELDON_ETIMEDOUT for a timeout...) */
    int32_t error_kind; /* SELDON_PIPELINE_ERR_* when status < 0, else 0 */
    const char *error;  /* when status < 0: NUL-terminated, e.g. "mul10 : bad input" */
    /* When status is 0: the pipeline's answer (a response; id = the request id). */
    const seldon_msg *response;
    const seldon_pipeline_header *headers; /* the request's headers */
    size_t headers_count;
} seldon_pipeline_result;

/*
 * Called once for every request pushed, on the thread that drives the host,
 * from inside seldon_pipeline_host_push() or _run(). It must not call
 * seldon_pipeline_host_* functions on the same host.
 */
typedef void (*seldon_pipeline_result_fn)(void *user_data, const seldon_pipeline_result *result);

typedef struct seldon_pipeline_host_options {
    uint32_t version; /* SELDON_PIPELINE_HOST_OPTIONS_VERSION */
    /* Borrowed, may be NULL: steps whose model is not attached call its model of that name. */
    seldon_repo *repo;
    seldon_pipeline_result_fn on_result; /* may be NULL: results are then dropped */
    void *user_data;                     /* for on_result and wake */
    /*
     * May be NULL. Called (on the completing thread, without any lock of the
     * host held) when a model completes an inference outside the host's own
     * calls: the host should call seldon_pipeline_host_run() soon.
     */
    void (*wake)(void *user_data);
    /*
     * A request not answered after this long ends with a timeout; 0: never.
     * A pipeline's spec.timeoutMs takes its place for that pipeline.
     */
    int64_t timeout_ms;
    uint32_t max_requests; /* the engine's limit on live requests; 0: 65536 */
} seldon_pipeline_host_options;

#define SELDON_PIPELINE_HOST_OPTIONS_VERSION 1
#define SELDON_PIPELINE_HOST_OPTIONS_INIT                                                          \
    {                                                                                              \
        SELDON_PIPELINE_HOST_OPTIONS_VERSION, NULL, NULL, NULL, NULL, 0, 0                         \
    }

/*
 * Builds a host from a manifest text (YAML or JSON, len bytes) holding one or
 * more Pipeline resources; other kinds of resource are ignored. Pipelines
 * may read each other through externalInputs/externalTriggers when both are
 * in the text. opts may be NULL (the defaults, no repository). Errors:
 * SELDON_EPARSE (the manifest's message), SELDON_EINVAL (the compiler's,
 * naming the pipeline and field, or "no Pipeline in the manifest").
 * Caller owns *out; free with seldon_pipeline_host_free().
 */
SELDON_API int seldon_pipeline_host_new(seldon_pipeline_host **out, const char *text, size_t len,
                                        const seldon_pipeline_host_options *opts);

/*
 * Drops every live request (no result callback runs for them), unloads the
 * runtimes attached with
 * seldon_pipeline_host_attach_runtime() and releases the models it holds.
 * Inferences still running on other threads must have completed first.
 * NULL is allowed.
 */
SELDON_API void seldon_pipeline_host_free(seldon_pipeline_host *host);

/* The number of pipelines, and the name of the i-th (borrowed); NULL past the end. */
SELDON_API size_t seldon_pipeline_host_pipeline_count(const seldon_pipeline_host *host);
SELDON_API const char *seldon_pipeline_host_pipeline_name(const seldon_pipeline_host *host,
                                                          size_t i);

/*
 * Attaches a model instance (acquired from a seldon_repo, or held) under
 * name: steps of that name call it. The host takes its own reference
 * (seldon_model_retain()); the caller keeps theirs. Replaces a model
 * attached before under that name.
 */
SELDON_API int seldon_pipeline_host_attach_model(seldon_pipeline_host *host, const char *name,
                                                 seldon_model *model);

/*
 * Attaches host code behind the runtime ABI as model name: the host builds
 * an instance of runtime (borrowed: it must outlive the host), sets its state
 * to state (seldon_model_state()), then calls runtime->load (which may
 * replace the state) and runtime->metadata. The model has no settings: its
 * uri and dir are "" and its extra parameters empty. SELDON_EVERSION for an
 * unknown ABI major; load's error otherwise, naming the model. The host
 * unloads it when freed or replaced.
 */
SELDON_API int seldon_pipeline_host_attach_runtime(seldon_pipeline_host *host, const char *name,
                                                   const seldon_runtime *runtime, void *state);

/*
 * Lets go of the model attached (or found in the repository) under name:
 * the next call finds it again in the repository (after a reload, the new
 * instance). SELDON_ENOTFOUND when none is held.
 */
SELDON_API int seldon_pipeline_host_detach(seldon_pipeline_host *host, const char *name);

/*
 * 0 when every step of every pipeline has a model (attached, or loaded in
 * the repository, which this acquires); otherwise SELDON_ENOTFOUND and
 * seldon_last_error() names the pipeline, the step and why.
 */
SELDON_API int seldon_pipeline_host_check(seldon_pipeline_host *host);

/*
 * An empty request message from the engine's pool, to fill and push (saves
 * an allocation per request). Caller owns it until pushed; seldon_msg_free()
 * is fine too. NULL when out of memory.
 */
SELDON_API seldon_msg *seldon_pipeline_host_msg(seldon_pipeline_host *host);

/*
 * Starts a request of pipeline `pipeline` (NULL: the first pipeline of the
 * manifest) whose input tensors are those of inputs (a request message; the
 * host takes ownership of it in every case). request_id must be unique among
 * the live requests of that pipeline (SELDON_EEXIST otherwise). headers
 * (copied; may be NULL) travel to every step and to the result. timeout_ms:
 * 0 for the pipeline's spec.timeoutMs or, without one, the host's setting;
 * < 0 for none. The steps whose models complete at
 * once run now, and so may the result callback. Returns 0 once the request
 * is started, or SELDON_ENOTFOUND (unknown pipeline), SELDON_EINVAL...: the
 * callback is then not called.
 */
SELDON_API int seldon_pipeline_host_push(seldon_pipeline_host *host, const char *pipeline,
                                         const char *request_id, size_t request_id_len,
                                         const seldon_pipeline_header *headers,
                                         size_t headers_count, seldon_msg *inputs,
                                         int64_t timeout_ms, int64_t now_ns);

/*
 * Runs a request to its end and hands back the answer: the synchronous
 * convenience for pipelines whose models all complete at once (no join
 * or batch window to wait for). Takes ownership of inputs in every case.
 * On success *out is the response (caller owns; free with
 * seldon_msg_free()); the result callback is not called for this request.
 * When the request ends in error, that code, with its text
 * (e.g. "add10 : ...") in seldon_last_error(). SELDON_ESTATE when the request
 * could not end at once (a model answers later, a window is open): it is
 * canceled.
 */
SELDON_API int seldon_pipeline_host_infer(seldon_msg **out, seldon_pipeline_host *host,
                                          const char *pipeline, seldon_msg *inputs, int64_t now_ns);

/*
 * Does what is due: feeds the answers of models that completed on other
 * threads to the engine, lets time pass to now_ns (join and batch windows,
 * timeouts), and calls the models and result callbacks that follow.
 */
SELDON_API int seldon_pipeline_host_run(seldon_pipeline_host *host, int64_t now_ns);

/* When seldon_pipeline_host_run() has time-driven work next; INT64_MAX when none. */
SELDON_API int64_t seldon_pipeline_host_deadline(const seldon_pipeline_host *host);

/* Requests alive (pushed, not yet ended). */
SELDON_API size_t seldon_pipeline_host_requests(const seldon_pipeline_host *host);

#ifdef __cplusplus
}
#endif

#endif
