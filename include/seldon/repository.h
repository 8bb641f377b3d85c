/*
 * The model repository: models described by MLServer-style
 * model-settings.json files in a folder, loaded into runtimes, served by
 * name; and the host side of inference: infer objects, execution and
 * adaptive batching.
 *
 * A server owns one seldon_repo. Requests acquire a model instance, run
 * inferences on it and release it. Loading a model again builds a new
 * instance and swaps it in atomically: requests in flight finish on the old
 * instance, which unloads when the last of them releases it.
 *
 * Thread safety: a seldon_repo may be used from any number of threads at
 * once. seldon_repo_load() and _unload() block while the runtime works: call
 * them off latency-sensitive threads. A seldon_batcher is not thread-safe:
 * one lock around it per model. Infers follow runtime.h.
 */
#ifndef SELDON_REPOSITORY_H
#define SELDON_REPOSITORY_H

#include "common.h"
#include "oip.h"
#include "runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct seldon_repo seldon_repo;

typedef struct seldon_repo_options {
    uint32_t version;         /* SELDON_REPO_OPTIONS_VERSION */
    const char *root;         /* the repository folder; copied */
    const char *runtime_path; /* ':'-separated folders searched for runtime plugins; may be NULL */
    const char *server_name;  /* for metadata; NULL: "seldon" */
} seldon_repo_options;

#define SELDON_REPO_OPTIONS_VERSION 1
#define SELDON_REPO_OPTIONS_INIT {SELDON_REPO_OPTIONS_VERSION, NULL, NULL, NULL}

/* Creates a repository over opts->root. The builtin runtimes are registered. Caller owns *out. */
SELDON_API int seldon_repo_new(seldon_repo **out, const seldon_repo_options *opts);

/* Unloads every model and frees the repository. No model may still be acquired. NULL ok. */
SELDON_API void seldon_repo_free(seldon_repo *repo);

/*
 * Registers a runtime under its name (and alias, when not NULL), for
 * model-settings.json "implementation" values. The table is borrowed and
 * must outlive the repository. SELDON_EVERSION for an unknown ABI major.
 */
SELDON_API int seldon_repo_add_runtime(seldon_repo *repo, const seldon_runtime *runtime,
                                       const char *alias);

/* Lists the models of the folder (one sub-folder each, settings directly or in version folders). */
SELDON_API int seldon_repo_scan(seldon_repo *repo);

/*
 * Loads, or reloads, model name from <root>/<name> (name may also be the
 * "name" inside a settings file). On failure returns a negative code and
 * seldon_last_error() gives the reason (the runtime's, when it failed); an
 * instance already serving keeps serving.
 */
SELDON_API int seldon_repo_load(seldon_repo *repo, const char *name);

/*
 * Scans the folder and loads every model found, in name order. Failures are
 * logged and recorded in the index; *failed (optional) receives how many.
 */
SELDON_API int seldon_repo_load_all(seldon_repo *repo, size_t *failed);

/* Unloads a model: new requests get SELDON_ENOTFOUND; requests in flight finish first. */
SELDON_API int seldon_repo_unload(seldon_repo *repo, const char *name);

/* Model states, as the repository index reports them. */
#define SELDON_MODEL_UNAVAILABLE 0
#define SELDON_MODEL_LOADING 1
#define SELDON_MODEL_READY 2
#define SELDON_MODEL_UNLOADING 3
#define SELDON_MODEL_FAILED 4

/* "UNAVAILABLE", "LOADING", "READY", "UNLOADING", "FAILED". */
SELDON_API const char *seldon_model_state_name(int32_t state);

/* The number of models READY. */
SELDON_API size_t seldon_repo_ready_count(seldon_repo *repo);

/*
 * The repository index (every known model: name, version, state, reason),
 * appended to out as the REST JSON array, or as a protobuf
 * inference.RepositoryIndexResponse. ready_only keeps READY models alone.
 */
SELDON_API int seldon_repo_index_json(seldon_buf *out, seldon_repo *repo, int32_t ready_only);
SELDON_API int seldon_repo_index_pb(seldon_buf *out, seldon_repo *repo, int32_t ready_only);

/*
 * Acquires the serving instance of a model, for the length of a request.
 * version may be NULL or empty for the current one. SELDON_ENOTFOUND for a
 * model that is unknown or not loaded (and a message saying which); for a
 * version that differs from the loaded one. Release with seldon_model_release().
 */
SELDON_API int seldon_repo_acquire(seldon_model **out, seldon_repo *repo, const char *name,
                                   size_t name_len, const char *version, size_t version_len);

/* Releases an acquired instance. NULL ok. */
SELDON_API void seldon_model_release(seldon_model *model);

/* Takes one more reference to an instance already held; release it with seldon_model_release(). */
SELDON_API void seldon_model_retain(seldon_model *model);

/*
 * The state of model name: SELDON_MODEL_*, or -1 when the repository does
 * not know it (a 404, where a known model that is not ready is a 400).
 */
SELDON_API int32_t seldon_repo_model_state(seldon_repo *repo, const char *name, size_t name_len);

/*
 * A pointer of the host's (a server's per-instance bookkeeping), kept with
 * the instance and passed to free_fn when the instance is destroyed. The
 * first non-NULL data set wins, atomically: the call returns the pointer now
 * stored, which is not data if another thread set one first (the caller then
 * frees its own). data NULL only reads.
 */
SELDON_API void *seldon_model_host_data(seldon_model *model, void *data,
                                        void (*free_fn)(void *data));

/* Settings the server acts on. */
SELDON_API uint32_t seldon_model_runtime_flags(const seldon_model *model);
SELDON_API uint32_t seldon_model_max_batch_size(const seldon_model *model);
SELDON_API int64_t seldon_model_max_batch_time_ns(const seldon_model *model);

/*
 * Checks a request against the model's declared inputs: each input must be
 * declared (when any are), with the declared datatype and a matching shape.
 * SELDON_EDATATYPE / SELDON_ESHAPE / SELDON_EINVAL (an unknown input) naming the field, e.g.
 * "inputs[0].datatype: model iris expects FP32, got INT64".
 */
SELDON_API int seldon_model_check_request(const seldon_model *model, const seldon_msg *request);

/* Model metadata, appended as REST JSON or protobuf inference.ModelMetadataResponse. */
SELDON_API int seldon_model_metadata_json(seldon_buf *out, const seldon_model *model);
SELDON_API int seldon_model_metadata_pb(seldon_buf *out, const seldon_model *model);

/* --- Inference: the host side ------------------------------------------ */

/*
 * Called once when an inference completes, on the thread that completed it.
 * On success the response holds the model's outputs, filtered to those
 * requested and marked binary as the request asked, with model name,
 * version and the request id set. message is borrowed for the call.
 */
typedef void (*seldon_infer_done_fn)(void *user_data, seldon_infer *infer, int32_t status,
                                     const char *message);

/*
 * Creates an inference of request into response (both borrowed: they must
 * outlive the inference). The response is reset to an empty response.
 * Caller owns *out; free with seldon_infer_free() after done has run.
 */
SELDON_API int seldon_infer_new(seldon_infer **out, const seldon_msg *request,
                                seldon_msg *response, seldon_infer_done_fn done, void *user_data);

SELDON_API void seldon_infer_free(seldon_infer *infer);

/*
 * Runs inferences on a model (its runtime's execute, serialized per
 * instance unless the runtime is concurrent). Every inference completes,
 * through its done callback, whatever this returns.
 */
SELDON_API void seldon_model_execute(seldon_model *model, seldon_infer *const *infers,
                                     size_t count);

/*
 * Adaptive batching: gathers inferences until max_batch_size are waiting or
 * the first has waited max_batch_time_ns. Time is passed in.
 */
typedef struct seldon_batcher seldon_batcher;

SELDON_API int seldon_batcher_new(seldon_batcher **out, uint32_t max_batch_size,
                                  int64_t max_batch_time_ns);
SELDON_API void seldon_batcher_free(seldon_batcher *batcher);

/* Queues an inference. Returns 1 when a full batch is now waiting, 0 otherwise. */
SELDON_API int seldon_batcher_push(seldon_batcher *batcher, seldon_infer *infer, int64_t now_ns);

/*
 * Takes the next batch that is due (full, or its first waited long enough;
 * with force, whatever waits) into out[0..cap). Returns how many.
 */
SELDON_API size_t seldon_batcher_take(seldon_batcher *batcher, seldon_infer **out, size_t cap,
                                      int64_t now_ns, int32_t force);

/* When the oldest waiting inference falls due; INT64_MAX when none waits. */
SELDON_API int64_t seldon_batcher_deadline(const seldon_batcher *batcher);

/* How many inferences wait. */
SELDON_API size_t seldon_batcher_size(const seldon_batcher *batcher);

/*
 * Runs a batch: requests that can be batched together (same input names,
 * datatypes and shapes past the first dimension) are concatenated along the
 * first dimension into one request, run once, and the response is split
 * back so that each caller gets exactly its own rows and its own id. Those
 * that cannot join run alone. Every inference completes.
 */
SELDON_API void seldon_model_execute_batch(seldon_model *model, seldon_infer *const *infers,
                                           size_t count);

#ifdef __cplusplus
}
#endif

#endif
