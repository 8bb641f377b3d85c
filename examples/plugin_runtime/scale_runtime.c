/*
 * An example runtime plugin: copy this file to start your own.
 *
 * "scale" multiplies every FP32 input by a factor from the model's
 * settings and returns it as <input>_scaled. A model folder using it:
 *
 *     my-scaler/model-settings.json
 *     {
 *       "name": "my-scaler",
 *       "implementation": "libseldon-runtime-scale.so",
 *       "parameters": {"extra": {"factor": 2.5}}
 *     }
 *
 * and the server started with --runtime-path pointing at the folder that
 * holds libseldon-runtime-scale.so.
 *
 * A plugin is a shared object exporting one function,
 * seldon_runtime_entry(), which returns a table of callbacks (runtime.h).
 * Everything else in it should be hidden: build it with
 * -fvisibility=hidden and mark the entry point visible, so that two plugins
 * can never clash over a helper's name.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "seldon/runtime.h"

/* Per model instance: what load() computed once, so execute() does no parsing. */
typedef struct scale_state {
    float factor;
} scale_state;

/*
 * load: read the settings, build the state, hang it on the model. Nothing
 * else runs on this model while load runs, so no locking is needed here.
 * A failure returns a negative code with a reason the server reports to the
 * user (and seldon_last_error() shows to a caller of seldon_repo_load()).
 */
static int scale_load(seldon_model *model)
{
    seldon_param p;
    scale_state *st;
    float factor = 1.0f; /* the default when extra.factor is absent */
    int rc = seldon_model_extra(&p, model, "factor");

    if (rc == 0) {
        if (p.type == SELDON_PARAM_DOUBLE)
            factor = (float)p.double_value;
        else if (p.type == SELDON_PARAM_INT64)
            factor = (float)p.int64_value;
        else
            return seldon_model_set_error(model, "scale: parameters.extra.factor must be a number");
    } else if (rc != SELDON_ENOTFOUND) {
        return seldon_model_set_error(model, "scale: parameters.extra.factor must be a number");
    }

    st = malloc(sizeof *st);
    if (st == NULL) {
        seldon_model_set_error(model, "scale: out of memory");
        return SELDON_ENOMEM;
    }
    st->factor = factor;
    seldon_model_set_state(model, st);
    return 0;
}

/* unload: release what load built. The server calls it once no request uses the model. */
static void scale_unload(seldon_model *model)
{
    free(seldon_model_state(model));
    seldon_model_set_state(model, NULL);
}

/*
 * Scales one inference. Returns 0 with the response filled, or completes
 * the inference with an error itself and returns the (negative) code.
 */
static int scale_one(const scale_state *st, seldon_infer *infer)
{
    const seldon_msg *req = seldon_infer_request(infer);
    seldon_msg *resp = seldon_infer_response(infer);
    size_t i, n = seldon_msg_tensor_count(req);

    for (i = 0; i < n; i++) {
        seldon_tensor in, out;
        char name[256], msg[512];
        size_t index;
        uint64_t k;
        const void *src;
        float *dst;
        int rc;

        seldon_msg_tensor(&in, req, i);
        if (in.datatype != SELDON_DT_FP32) {
            snprintf(msg, sizeof msg, "scale: input %s is %s, only FP32 is supported", in.name,
                     seldon_datatype_name(in.datatype));
            seldon_infer_complete(infer, SELDON_EDATATYPE, msg);
            return SELDON_EDATATYPE;
        }
        if ((size_t)snprintf(name, sizeof name, "%s_scaled", in.name) >= sizeof name) {
            seldon_infer_complete(infer, SELDON_EINVAL, "scale: input name too long");
            return SELDON_EINVAL;
        }
        /*
         * The request may name the outputs it wants; skipping the others
         * saves work (the server would drop them anyway).
         */
        if (!seldon_infer_wants_output(infer, name, strlen(name)))
            continue;

        /*
         * SELDON_TENSOR_ALLOC: the server allocates the output inside the
         * response, which it encodes straight from; we fill it in place.
         */
        rc = seldon_msg_add_tensor(&index, resp, name, strlen(name), SELDON_DT_FP32, in.shape,
                                   in.ndim, NULL, in.nbytes, SELDON_TENSOR_ALLOC);
        if (rc == 0)
            rc = seldon_msg_tensor(&out, resp, index);
        if (rc < 0) {
            seldon_infer_complete(infer, rc, seldon_last_error());
            return rc;
        }
        /*
         * Outputs the server allocates are aligned; a request's data may
         * point into a caller's buffer, so read it with memcpy (one load).
         */
        src = in.data;
        dst = out.data;
        for (k = 0; k < in.count; k++) {
            float x;
            memcpy(&x, (const char *)src + k * sizeof x, sizeof x);
            dst[k] = x * st->factor;
        }
    }
    return 0;
}

/*
 * execute: the server may hand over several inferences at once. Each one
 * must be completed exactly once, successfully or not. Because this runtime
 * sets SELDON_RUNTIME_CONCURRENT, execute may run on several threads at
 * once: it only reads the state, which is fine.
 */
static int scale_execute(seldon_model *model, seldon_infer *const *infers, size_t count)
{
    const scale_state *st = seldon_model_state(model);
    size_t i;

    for (i = 0; i < count; i++)
        if (scale_one(st, infers[i]) == 0)
            seldon_infer_complete(infers[i], 0, NULL);
    return 0;
}

static const seldon_runtime scale_runtime = {
    SELDON_RUNTIME_ABI_MAJOR, /* the server refuses a major it does not know */
    SELDON_RUNTIME_ABI_MINOR,
    "scale",
    /* Stateless after load and a few nanoseconds per element: safe to run anywhere. */
    SELDON_RUNTIME_CONCURRENT | SELDON_RUNTIME_INLINE,
    scale_load,
    NULL, /* metadata: optional; inputs are whatever the request sends */
    scale_execute,
    scale_unload,
};

/* The entry point the server looks up with dlsym(). */
__attribute__((visibility("default"))) const seldon_runtime *seldon_runtime_entry(void);

const seldon_runtime *seldon_runtime_entry(void)
{
    return &scale_runtime;
}
