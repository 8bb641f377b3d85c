/*
 * Pipelines: Seldon's dataflow of tensors between models, in process.
 *
 * Two objects. A seldon_pipeline is a Pipeline spec (from a parsed manifest,
 * include/seldon/manifest.h) compiled into a validated, immutable DAG: every
 * reference resolved, every rule checked, tensor maps and join points laid
 * out. A seldon_pipeline_engine runs one or more compiled pipelines (several
 * when they chain through spec.input.externalInputs / externalTriggers) as a
 * deterministic state machine: requests and model answers go in with the
 * time (now_ns), and events come out: step calls (which model to call with
 * which request), pipeline outputs and errors, plus the next deadline to arm.
 * It reads no clock, starts no thread and calls no model itself.
 *
 * Tensor data is never decoded or re-encoded on the way: a step's request
 * and a pipeline's answer point at the bytes of the messages they came from
 * (the pipeline's input, the models' answers). Batching is the one place
 * that copies: it concatenates requests along dimension 0.
 *
 * The semantics, and where they differ from Seldon Core 2, are in
 * docs/pipelines.md.
 *
 * Thread safety: a compiled pipeline is immutable; any thread may read it
 * and several engines may share it. One engine, one thread at a time.
 */
#ifndef SELDON_PIPELINE_H
#define SELDON_PIPELINE_H

#include "common.h"
#include "manifest.h"
#include "oip.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- The compiler ------------------------------------------------------ */

typedef struct seldon_pipeline seldon_pipeline;

/* Defaults and limits. */
#define SELDON_PIPELINE_JOIN_WINDOW_MS 60000 /* joinWindowMs when absent */
#define SELDON_PIPELINE_MAX_REVISITS 10 /* maxStepRevisits when cycles are allowed and it is 0 */
#define SELDON_PIPELINE_MAX_STEPS 1024
#define SELDON_PIPELINE_MAX_SOURCES 64 /* inputs (or triggers, or output steps) of one join */

/*
 * Finds another pipeline by name, for spec.input.externalInputs and
 * externalTriggers. Sets *out (borrowed) and returns 0, or returns
 * SELDON_ENOTFOUND. The pipeline found must stay alive as long as the one
 * being compiled.
 */
typedef int (*seldon_pipeline_lookup_fn)(const seldon_pipeline **out, void *user_data,
                                         const char *name);

/*
 * Compiles the spec of the Pipeline called name. lookup (may be NULL when the
 * spec has no external inputs or triggers) resolves other pipelines.
 * On failure, SELDON_EINVAL and seldon_last_error() names the pipeline and the
 * field, e.g. `pipeline "join": spec.steps[2].inputs[1]: unknown step
 * "tfsimple9"`. Refused: a bad name, a step named after its pipeline,
 * duplicate steps, an unknown step or pipeline, a tensor that is known to be
 * missing, a cycle without allowCycles, one source used both as an input and
 * a trigger, a tensorMap key that names no source. The spec is copied: it
 * need not outlive the result. Caller owns *out; free with
 * seldon_pipeline_free().
 */
SELDON_API int seldon_pipeline_compile(seldon_pipeline **out, const char *name,
                                       const seldon_pipeline_spec *spec,
                                       seldon_pipeline_lookup_fn lookup, void *user_data);

/*
 * Releases the caller's reference; NULL is allowed. Engines running the
 * pipeline hold their own: it goes when the last one lets it go. This (and
 * only this) may be called from any thread.
 */
SELDON_API void seldon_pipeline_free(seldon_pipeline *pipeline);

/* The pipeline's name: borrowed, valid while the pipeline lives. */
SELDON_API const char *seldon_pipeline_name(const seldon_pipeline *pipeline);

/* The number of steps, and step i's name (= the model it calls); NULL past the end. */
SELDON_API size_t seldon_pipeline_step_count(const seldon_pipeline *pipeline);
SELDON_API const char *seldon_pipeline_step_name(const seldon_pipeline *pipeline, size_t i);

/*
 * The pipelines this one reads through external inputs or triggers: their
 * count, and the name of the i-th (borrowed); NULL past the end.
 */
SELDON_API size_t seldon_pipeline_dependency_count(const seldon_pipeline *pipeline);
SELDON_API const char *seldon_pipeline_dependency(const seldon_pipeline *pipeline, size_t i);

/*
 * The pipeline's own timeout for a request, in ms: spec.timeoutMs (our
 * extension of the Pipeline spec, docs/manifests.md), or 0 when the spec
 * sets none. The engine applies it to a request pushed without a timeout of
 * its own (timeout_ms 0), before the engine's setting; a gateway may read it
 * to arm its own deadline.
 */
SELDON_API int64_t seldon_pipeline_timeout_ms(const seldon_pipeline *pipeline);

/*
 * Appends a one-line description of the compiled graph (steps in order, each
 * with its resolved sources and join types), for status and debugging.
 */
SELDON_API int seldon_pipeline_describe(seldon_buf *out, const seldon_pipeline *pipeline);

/* ---- The engine -------------------------------------------------------- */

typedef struct seldon_pipeline_engine seldon_pipeline_engine;

/* A header: name and value, not NUL-terminated when read from an event. */
typedef struct seldon_pipeline_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} seldon_pipeline_header;

typedef struct seldon_pipeline_options {
    uint32_t version; /* SELDON_PIPELINE_OPTIONS_VERSION */
    /* A request not answered after this long ends with a timeout error; 0: never. */
    int64_t timeout_ms;
    /*
     * Requests alive at once (all pipelines). One more fails the oldest with
     * SELDON_PIPELINE_ERR_OVERFLOW. 0: 65536.
     */
    uint32_t max_requests;
    /* Requests queued in one step's batch before it is sent regardless of batch.size. 0: 1024. */
    uint32_t max_batch;
    /* Idle messages kept for reuse (seldon_pipeline_engine_msg). 0: 256. */
    uint32_t msg_pool;
} seldon_pipeline_options;

#define SELDON_PIPELINE_OPTIONS_VERSION 1
#define SELDON_PIPELINE_OPTIONS_INIT                                                               \
    {                                                                                              \
        SELDON_PIPELINE_OPTIONS_VERSION, 60000, 0, 0, 0                                            \
    }

/*
 * Creates an engine for pipelines[0..count) (it holds a reference to each:
 * the caller may free them). Every pipeline that one of them reads through external inputs or
 * triggers must be in the set (SELDON_EINVAL naming it otherwise), and names
 * must be distinct. options may be NULL (the defaults). Caller owns *out;
 * free with seldon_pipeline_engine_free().
 */
SELDON_API int seldon_pipeline_engine_new(seldon_pipeline_engine **out,
                                          const seldon_pipeline *const *pipelines, size_t count,
                                          const seldon_pipeline_options *options);

/* Frees the engine, every request in it and every message it holds. NULL is allowed. */
SELDON_API void seldon_pipeline_engine_free(seldon_pipeline_engine *engine);

/*
 * Adds a pipeline to a running engine (a load). SELDON_EEXIST when one of
 * that name runs (remove it first: a new version replaces an old one by
 * remove + add), SELDON_EINVAL when a pipeline it reads is not in the engine.
 * The engine holds a reference to it.
 */
SELDON_API int seldon_pipeline_engine_add(seldon_pipeline_engine *engine,
                                          const seldon_pipeline *pipeline);

/*
 * Removes pipeline `name` (an unload): its live requests end with
 * SELDON_PIPELINE_ERR_UNLOADED; the engine lets the pipeline go once the
 * last of them is gone (their calls answered). SELDON_ENOTFOUND when absent,
 * SELDON_ESTATE (naming it) while another pipeline in the engine reads it.
 */
SELDON_API int seldon_pipeline_engine_remove(seldon_pipeline_engine *engine, const char *name,
                                             int64_t now_ns);

/*
 * An empty message of kind SELDON_MSG_REQUEST or _RESPONSE from the engine's
 * pool, to fill and hand back through seldon_pipeline_engine_push() or
 * _answer() (which saves an allocation per message). Caller owns it until
 * then; seldon_msg_free() is fine too. NULL when out of memory.
 */
SELDON_API seldon_msg *seldon_pipeline_engine_msg(seldon_pipeline_engine *engine, int32_t kind);

/*
 * Starts a request of pipeline `pipeline` with id request_id (unique among
 * the pipeline's live requests: SELDON_EEXIST otherwise) whose input tensors
 * are inputs' tensors. Takes ownership of inputs (a request message) in every
 * case. headers (copied) travel with the request to every step call and to
 * the output. timeout_ms: 0 for the pipeline's (seldon_pipeline_timeout_ms())
 * or, when it has none, the engine's setting; < 0 for none.
 * SELDON_ENOTFOUND for an unknown pipeline.
 */
SELDON_API int seldon_pipeline_engine_push(seldon_pipeline_engine *engine, const char *pipeline,
                                           const char *request_id, size_t request_id_len,
                                           const seldon_pipeline_header *headers,
                                           size_t headers_count, seldon_msg *inputs,
                                           int64_t timeout_ms, int64_t now_ns);

/*
 * Answers step call call_id (from a SELDON_PIPELINE_EVENT_CALL) with the
 * model's response; takes ownership of response (a response message) in
 * every case. An answer for a request that has ended meanwhile is dropped.
 * SELDON_ENOTFOUND for an unknown or already answered call.
 */
SELDON_API int seldon_pipeline_engine_answer(seldon_pipeline_engine *engine, uint64_t call_id,
                                             seldon_msg *response, int64_t now_ns);

/*
 * Fails step call call_id: the model answered with an error (error: its text,
 * copied). The request ends with `<model> : <error>`.
 */
SELDON_API int seldon_pipeline_engine_fail(seldon_pipeline_engine *engine, uint64_t call_id,
                                           const char *error, int64_t now_ns);

/*
 * Ends a live request now with SELDON_PIPELINE_ERR_CANCELED (no event is
 * emitted for it). SELDON_ENOTFOUND when there is none.
 */
SELDON_API int seldon_pipeline_engine_cancel(seldon_pipeline_engine *engine, const char *pipeline,
                                             const char *request_id, size_t request_id_len,
                                             int64_t now_ns);

/*
 * Lets time pass: join windows that close, batch windows that expire and
 * request timeouts up to now_ns take effect. Call it when the deadline comes.
 */
SELDON_API int seldon_pipeline_engine_advance(seldon_pipeline_engine *engine, int64_t now_ns);

/* The time (ns) at which _advance() has work to do next; INT64_MAX when none. */
SELDON_API int64_t seldon_pipeline_engine_deadline(const seldon_pipeline_engine *engine);

/* Live requests, step calls not yet answered. */
SELDON_API size_t seldon_pipeline_engine_requests(const seldon_pipeline_engine *engine);
SELDON_API size_t seldon_pipeline_engine_calls(const seldon_pipeline_engine *engine);

/* Event kinds. */
#define SELDON_PIPELINE_EVENT_CALL 1   /* call a model */
#define SELDON_PIPELINE_EVENT_OUTPUT 2 /* a request's answer */
#define SELDON_PIPELINE_EVENT_ERROR 3  /* a request ended in error */

/* Why a request ended in error. */
#define SELDON_PIPELINE_ERR_MODEL 1     /* a model failed: "<model> : <error>" */
#define SELDON_PIPELINE_ERR_TIMEOUT 2   /* not answered in time */
#define SELDON_PIPELINE_ERR_OVERFLOW 3  /* too many requests alive: the oldest went */
#define SELDON_PIPELINE_ERR_NO_OUTPUT 4 /* nothing left that could produce the output */
#define SELDON_PIPELINE_ERR_REVISITS 5  /* "Max step revisits (N) exceeded" */
#define SELDON_PIPELINE_ERR_BATCH 6     /* requests or an answer that do not batch */
#define SELDON_PIPELINE_ERR_INTERNAL 7  /* out of memory and the like */
#define SELDON_PIPELINE_ERR_CANCELED 8  /* never emitted: cancel is silent */
#define SELDON_PIPELINE_ERR_UNLOADED 9  /* its pipeline was removed from the engine */

/*
 * One event. Every pointer is borrowed from the engine: a CALL's msg until
 * the call is answered or failed; everything else until the next engine call
 * other than _poll(), _deadline() and the counters.
 */
typedef struct seldon_pipeline_event {
    int32_t kind;       /* SELDON_PIPELINE_EVENT_* */
    int32_t error_kind; /* ERROR: SELDON_PIPELINE_ERR_* */
    int32_t code;       /* ERROR: a SELDON_E* code (SELDON_ETIMEDOUT for a timeout...) */
    uint32_t batch;     /* CALL: requests batched into this call (1 without batching) */
    uint64_t call_id;   /* CALL: pass to _answer() or _fail() */
    const char *pipeline;
    const char *step;       /* CALL: the step */
    const char *model;      /* CALL: the model to call (the step's name) */
    const char *request_id; /* CALL: the first batched request's id */
    size_t request_id_len;
    /*
     * CALL: the request to send (its model name is set to the model); OUTPUT:
     * the pipeline's answer (a response, id = the request id). Read-only.
     */
    const seldon_msg *msg;
    const seldon_pipeline_header *headers; /* the request's headers */
    size_t headers_count;
    const char *error; /* ERROR: NUL-terminated */
} seldon_pipeline_event;

/* Takes the next event into *out: 1 when there was one, 0 when none. */
SELDON_API int seldon_pipeline_engine_poll(seldon_pipeline_event *out,
                                           seldon_pipeline_engine *engine);

#ifdef __cplusplus
}
#endif

#endif
