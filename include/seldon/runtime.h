/*
 * The runtime ABI: how a model implementation plugs into a libseldon server.
 *
 * A runtime is a table of four functions (load, metadata, execute, unload).
 * It is either built in, or a shared object named in a model's
 * model-settings.json "implementation" and opened with dlopen(); such an
 * object exports one function, seldon_runtime_entry(), returning its table.
 *
 * The common case needs a handful of calls. An add-10 runtime's execute:
 *
 *     for (i = 0; i < count; i++) {
 *         const seldon_msg *req = seldon_infer_request(infers[i]);
 *         seldon_msg *resp = seldon_infer_response(infers[i]);
 *         seldon_tensor in, out;
 *         size_t k;
 *         seldon_msg_tensor(&in, req, 0);
 *         seldon_msg_add_tensor(&k, resp, "OUTPUT", 6, in.datatype, in.shape, in.ndim,
 *                               NULL, in.nbytes, SELDON_TENSOR_ALLOC);
 *         seldon_msg_tensor(&out, resp, k);
 *         ... out.data[j] = in.data[j] + 10 ...
 *         seldon_infer_complete(infers[i], 0, NULL);
 *     }
 *
 * Output memory comes from the server: SELDON_TENSOR_ALLOC places the bytes
 * in the response message, which the server owns and encodes from directly.
 *
 * Threads: load, metadata and unload of one model never overlap each other
 * or an execute. execute may run on several server threads at once for one
 * model only when the runtime sets SELDON_RUNTIME_CONCURRENT; otherwise the
 * server serializes it per model instance. seldon_infer_complete() may be
 * called from any thread, before or after execute returns.
 */
#ifndef SELDON_RUNTIME_H
#define SELDON_RUNTIME_H

#include "common.h"
#include "oip.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The ABI version a runtime is built against. The server refuses a runtime
 * whose major differs from its own, and accepts any minor (tables only grow,
 * at the end).
 */
#define SELDON_RUNTIME_ABI_MAJOR 1
#define SELDON_RUNTIME_ABI_MINOR 0

typedef struct seldon_model seldon_model; /* one model instance, owned by the server */
typedef struct seldon_infer seldon_infer; /* one inference in flight, owned by the server */

/* execute may run concurrently on one model instance. */
#define SELDON_RUNTIME_CONCURRENT 0x1u
/*
 * execute is cheap and never blocks (microseconds, no I/O, no locks held
 * long): the server may run it on the thread that received the request
 * instead of handing it to an inference worker.
 */
#define SELDON_RUNTIME_INLINE 0x2u

typedef struct seldon_runtime {
    uint32_t abi_major; /* SELDON_RUNTIME_ABI_MAJOR */
    uint32_t abi_minor; /* SELDON_RUNTIME_ABI_MINOR */
    const char *name;   /* e.g. "builtin.identity"; static storage */
    uint32_t flags;     /* SELDON_RUNTIME_* */

    /*
     * Prepares a model instance: reads its settings (seldon_model_uri(),
     * seldon_model_extra_*()), loads artifacts, keeps its state with
     * seldon_model_set_state(). On failure returns a negative SELDON_E* and
     * gives the reason with seldon_model_set_error().
     */
    int (*load)(seldon_model *model);

    /*
     * Optional (NULL allowed): declares the model's inputs and outputs with
     * seldon_model_add_input()/_add_output(), after load. Metadata declared
     * in model-settings.json is already present and takes precedence.
     */
    int (*metadata)(seldon_model *model);

    /*
     * Runs count inferences (count > 1 when the server hands over several
     * requests at once). Each must be completed with seldon_infer_complete()
     * exactly once. A negative return means none was started: the server
     * completes them all with that error.
     */
    int (*execute)(seldon_model *model, seldon_infer *const *infers, size_t count);

    /* Releases the instance's state. Optional. */
    void (*unload)(seldon_model *model);
} seldon_runtime;

/* The symbol a runtime shared object exports, and its type. */
#define SELDON_RUNTIME_ENTRY_SYMBOL "seldon_runtime_entry"
typedef const seldon_runtime *(*seldon_runtime_entry_fn)(void);

/* --- For runtimes: the model ------------------------------------------- */

/* The model's name and version, as served. Borrowed, valid while the model is loaded. */
SELDON_API const char *seldon_model_name(const seldon_model *model);
SELDON_API const char *seldon_model_version(const seldon_model *model);

/*
 * The model's artifact location: model-settings.json's parameters.uri,
 * resolved against the model's folder into a local path. "" when unset.
 */
SELDON_API const char *seldon_model_uri(const seldon_model *model);

/* The model's folder (where model-settings.json was read). */
SELDON_API const char *seldon_model_dir(const seldon_model *model);

/*
 * Reads parameters.extra.<key> of model-settings.json into *out, as a
 * string, bool, int64 or double. Borrowed strings, valid while the model is
 * loaded. SELDON_ENOTFOUND when absent; SELDON_EDATATYPE for an array or
 * object value.
 */
SELDON_API int seldon_model_extra(seldon_param *out, const seldon_model *model, const char *key);

/* parameters.extra as JSON text ("{}" when absent). Borrowed. */
SELDON_API const char *seldon_model_extra_json(const seldon_model *model);

/* The runtime's per-instance state. */
SELDON_API void seldon_model_set_state(seldon_model *model, void *state);
SELDON_API void *seldon_model_state(const seldon_model *model);

/* Records why a load failed; copied. Returns SELDON_EINVAL for convenience in `return`. */
SELDON_API int seldon_model_set_error(seldon_model *model, const char *message);

/*
 * Declares an input or output: its name, datatype and shape, -1 marking a
 * dimension of any size. Requests are checked against declared inputs.
 */
SELDON_API int seldon_model_add_input(seldon_model *model, const char *name, int32_t datatype,
                                      const int64_t *shape, uint32_t ndim);
SELDON_API int seldon_model_add_output(seldon_model *model, const char *name, int32_t datatype,
                                       const int64_t *shape, uint32_t ndim);

/* --- For runtimes: one inference --------------------------------------- */

/* The request. Borrowed, valid until the inference is completed. */
SELDON_API const seldon_msg *seldon_infer_request(const seldon_infer *infer);

/* The response to fill: empty, of kind response. Borrowed, valid until completed. */
SELDON_API seldon_msg *seldon_infer_response(seldon_infer *infer);

/*
 * Whether the request asked for output name (1) or not (0). A request that
 * names no outputs wants them all. A runtime may skip computing outputs not
 * wanted; the server drops any it produces anyway.
 */
SELDON_API int32_t seldon_infer_wants_output(const seldon_infer *infer, const char *name,
                                             size_t len);

/*
 * Completes the inference: status 0 and the filled response, or a negative
 * SELDON_E* and a message (copied; NULL for the code's text). After this
 * call the inference, its request and response must not be touched.
 */
SELDON_API void seldon_infer_complete(seldon_infer *infer, int32_t status, const char *message);

#ifdef __cplusplus
}
#endif

#endif
