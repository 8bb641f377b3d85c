/*
 * The xgboost runtime: serves models saved by XGBoost (model.json,
 * model.ubj or the legacy binary model.bst) the way MLServer's xgboost
 * runtime does, through XGBoost's C API.
 *
 * Input: one tensor, any name, [N, F] (or [F]: one row) of FP32, FP64,
 * INT*, UINT* or BOOL. XGBoost reads it in place through the array
 * interface, converting each value to float32 itself, exactly as the Python
 * package does when it builds a DMatrix.
 *
 * Outputs follow MLServer, which loads a file as an XGBRegressor first and
 * as an XGBClassifier only when the file was saved through the scikit-learn
 * wrapper as a classifier (XGBClassifier.save_model() stores the booster
 * attribute "scikit_learn", a JSON object with "_estimator_type": "classifier";
 * XGBRegressor.load_model() refuses such a file, and MLServer falls back):
 *   predict        a model saved as an sklearn classifier: the class index,
 *                  as XGBClassifier.predict gives it (INT64 [N]: p > 0.5 for
 *                  binary:logistic, argmax for multi:softprob; INT32 [N] for
 *                  multi:softmax);
 *                  any other file (Booster.save_model(), XGBRegressor): the
 *                  booster's prediction as XGBRegressor.predict gives it,
 *                  FP32 [N] or [N, K] (binary:logistic: P(class 1);
 *                  multi:softprob: [N, K] probabilities; multi:softmax: the
 *                  class index as a float)
 *   predict_proba  FP32 [N, K] class probabilities (binary: 1 - p, p), for
 *                  every classification objective (binary:logistic,
 *                  multi:softprob, multi:softmax) whichever way it was saved
 * predict is returned when the request names no outputs; predict_proba only
 * when asked for by name.
 *
 * XGBoost's own threads: nthread defaults to 1 per model, because the
 * server's inference workers already predict in parallel and XGBoost's
 * OpenMP pool on top of them oversubscribes the cores. A model raises it with
 * "parameters": {"extra": {"nthread": N}} in model-settings.json (0: XGBoost's
 * default, every core).
 *
 * Threads: the runtime only ever calls inplace prediction on a loaded
 * booster, which XGBoost documents as safe and lock-free from several
 * threads at once (its result buffer is per thread), so the runtime is
 * CONCURRENT. Loading and unloading never overlap an execute (runtime.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <xgboost/c_api.h>

#include "seldon/runtime.h"

/* The one exported symbol; the rest of the object is hidden. */
__attribute__((visibility("default"))) const seldon_runtime *seldon_runtime_entry(void);

/* How the booster's output becomes the response. */
#define KIND_REGRESSION 0 /* predict = raw prediction */
#define KIND_BINARY 1     /* binary:logistic: prediction is P(class 1) */
#define KIND_SOFTPROB 2   /* multi:softprob: prediction is [N, K] probabilities */
#define KIND_SOFTMAX 3    /* multi:softmax: prediction is the class index */

#define PATH_CAP 4096

typedef struct xgb_model {
    BoosterHandle booster;
    /*
     * multi:softmax boosters output labels only. For predict_proba the
     * same model is loaded a second time with its objective switched to
     * multi:softprob, which changes nothing but the output transform; the
     * labels keep coming from XGBoost itself, so ties break as it breaks them.
     */
    BoosterHandle proba;
    int kind;
    int sklearn_classifier; /* saved by XGBClassifier: predict gives labels */
    bst_ulong nfeature;
    uint64_t nclass;  /* classes of a multi:* model */
    uint64_t ntarget; /* outputs per row of a regression model */
    char path[PATH_CAP];
} xgb_model;

/* Candidate file names inside a model folder, in order of preference. */
static const char *const model_files[] = {"model.json", "model.ubj", "model.bst"};

/* Room for a path and XGBoost's reason. */
#define MSG_CAP (PATH_CAP + 1024)

static int load_error(seldon_model *model, const char *what, const char *path)
{
    char msg[MSG_CAP];
    snprintf(msg, sizeof msg, "xgboost: %s %s: %s", what, path, XGBGetLastError());
    return seldon_model_set_error(model, msg);
}

/*
 * Finds the model file: the uri itself when it is a file, else the first
 * well-known name inside it (the model's folder when no uri is set).
 */
static int find_model_file(seldon_model *model, char *out, size_t cap)
{
    const char *uri = seldon_model_uri(model);
    char msg[MSG_CAP];
    struct stat st;
    size_t i;

    if (uri == NULL || uri[0] == '\0')
        uri = seldon_model_dir(model);
    if (stat(uri, &st) != 0) {
        snprintf(msg, sizeof msg, "xgboost: model uri %s: %s", uri, strerror(errno));
        seldon_model_set_error(model, msg);
        return SELDON_ENOTFOUND;
    }
    if (!S_ISDIR(st.st_mode)) {
        if ((size_t)snprintf(out, cap, "%s", uri) >= cap)
            return seldon_model_set_error(model, "xgboost: model path too long");
        return 0;
    }
    for (i = 0; i < sizeof model_files / sizeof model_files[0]; i++) {
        if ((size_t)snprintf(out, cap, "%s/%s", uri, model_files[i]) >= cap)
            return seldon_model_set_error(model, "xgboost: model path too long");
        if (stat(out, &st) == 0 && S_ISREG(st.st_mode))
            return 0;
    }
    snprintf(msg, sizeof msg, "xgboost: no model.json, model.ubj or model.bst in %s", uri);
    seldon_model_set_error(model, msg);
    return SELDON_ENOTFOUND;
}

/*
 * Copies the first string value of "key" in the booster's JSON
 * configuration. A scan is enough: the document is XGBoost's own compact
 * output, where learner_train_param holds "objective":"<name>" and
 * learner_model_param "num_class":"<n>", "num_target":"<n>" (the
 * "objective":{...} object is skipped: it is not a string).
 */
static int config_string(char *out, size_t cap, const char *cfg, size_t len, const char *key)
{
    const char *end = cfg + len, *p = cfg;
    size_t klen = strlen(key);

    while ((p = memmem(p, (size_t)(end - p), key, klen)) != NULL) {
        const char *v = p + klen, *q;
        p = v;
        if (p - klen == cfg || p[-(ptrdiff_t)klen - 1] != '"' || end - v < 3 || v[0] != '"' ||
            v[1] != ':' || v[2] != '"')
            continue;
        v += 3;
        q = memchr(v, '"', (size_t)(end - v));
        if (q == NULL || (size_t)(q - v) >= cap)
            return -1;
        memcpy(out, v, (size_t)(q - v));
        out[q - v] = '\0';
        return 0;
    }
    return -1;
}

/* An unsigned count from the configuration; fallback when absent. */
static uint64_t config_count(const char *cfg, size_t len, const char *key, uint64_t fallback)
{
    char num[32], *end = NULL;
    unsigned long long v;

    if (config_string(num, sizeof num, cfg, len, key) != 0)
        return fallback;
    v = strtoull(num, &end, 10);
    return end != num && *end == '\0' ? (uint64_t)v : fallback;
}

static int open_booster(BoosterHandle *out, seldon_model *model, const char *path)
{
    BoosterHandle b = NULL;
    seldon_param nthread;

    *out = NULL;
    if (XGBoosterCreate(NULL, 0, &b) != 0)
        return load_error(model, "cannot create a booster for", path);
    if (XGBoosterLoadModel(b, path) != 0) {
        int rc = load_error(model, "cannot load", path);
        XGBoosterFree(b);
        return rc;
    }
    /*
     * XGBoost's OpenMP threads per prediction: one unless the settings raise
     * it (the server's workers are the parallelism; see the top of the file).
     */
    {
        char num[32];
        long long n = 1;
        if (seldon_model_extra(&nthread, model, "nthread") == 0) {
            if (nthread.type != SELDON_PARAM_INT64 || nthread.int64_value < 0 ||
                nthread.int64_value > 4096) {
                XGBoosterFree(b);
                return seldon_model_set_error(
                    model, "xgboost: parameters.extra.nthread must be an integer in [0, 4096]");
            }
            n = (long long)nthread.int64_value;
        }
        snprintf(num, sizeof num, "%lld", n);
        if (XGBoosterSetParam(b, "nthread", num) != 0) {
            int rc = load_error(model, "cannot set nthread for", path);
            XGBoosterFree(b);
            return rc;
        }
    }
    *out = b;
    return 0;
}

/*
 * Whether the file was saved by XGBClassifier.save_model(): its booster
 * carries the attribute "scikit_learn", the wrapper's JSON, whose
 * "_estimator_type" is "classifier". Python's json.dumps writes it as
 * "_estimator_type": "classifier"; any JSON spacing is accepted.
 */
static int saved_as_sklearn_classifier(BoosterHandle b)
{
    static const char key[] = "\"_estimator_type\"";
    const char *meta = NULL, *p;
    int success = 0;
    if (XGBoosterGetAttr(b, "scikit_learn", &meta, &success) != 0 || !success || meta == NULL)
        return 0;
    for (p = strstr(meta, key); p != NULL; p = strstr(p + 1, key)) {
        const char *v = p + sizeof(key) - 1;
        while (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r')
            v++;
        if (*v++ != ':')
            continue;
        while (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r')
            v++;
        return strncmp(v, "\"classifier\"", 12) == 0;
    }
    return 0;
}

static void free_model(xgb_model *m)
{
    if (m == NULL)
        return;
    if (m->booster != NULL)
        XGBoosterFree(m->booster);
    if (m->proba != NULL)
        XGBoosterFree(m->proba);
    free(m);
}

static int xgb_load(seldon_model *model)
{
    xgb_model *m = calloc(1, sizeof *m);
    const char *cfg = NULL;
    bst_ulong cfg_len = 0;
    char objective[128], msg[MSG_CAP];
    int rc;

    if (m == NULL) {
        seldon_model_set_error(model, "xgboost: out of memory");
        return SELDON_ENOMEM;
    }
    rc = find_model_file(model, m->path, sizeof m->path);
    if (rc < 0)
        goto out;
    rc = open_booster(&m->booster, model, m->path);
    if (rc < 0)
        goto out;
    if (XGBoosterSaveJsonConfig(m->booster, &cfg_len, &cfg) != 0) {
        rc = load_error(model, "cannot read the configuration of", m->path);
        goto out;
    }
    if (config_string(objective, sizeof objective, cfg, (size_t)cfg_len, "objective") != 0) {
        snprintf(msg, sizeof msg, "xgboost: %s: no objective in the booster's configuration",
                 m->path);
        rc = seldon_model_set_error(model, msg);
        goto out;
    }
    /* Only needed to shape the outputs of an empty batch, which XGBoost does not predict. */
    m->nclass = config_count(cfg, (size_t)cfg_len, "num_class", 0);
    m->ntarget = config_count(cfg, (size_t)cfg_len, "num_target", 1);
    if (XGBoosterGetNumFeature(m->booster, &m->nfeature) != 0) {
        rc = load_error(model, "cannot read the feature count of", m->path);
        goto out;
    }

    if (strcmp(objective, "binary:logistic") == 0) {
        m->kind = KIND_BINARY;
    } else if (strcmp(objective, "multi:softprob") == 0) {
        m->kind = KIND_SOFTPROB;
    } else if (strcmp(objective, "multi:softmax") == 0) {
        m->kind = KIND_SOFTMAX;
        rc = open_booster(&m->proba, model, m->path);
        if (rc < 0)
            goto out;
        /*
         * Reading the configuration back also applies the new objective
         * now, so that concurrent first predictions find it configured.
         */
        if (XGBoosterSetParam(m->proba, "objective", "multi:softprob") != 0 ||
            XGBoosterSaveJsonConfig(m->proba, &cfg_len, &cfg) != 0) {
            rc = load_error(model, "cannot switch to multi:softprob for", m->path);
            goto out;
        }
        if (config_string(objective, sizeof objective, cfg, (size_t)cfg_len, "objective") != 0 ||
            strcmp(objective, "multi:softprob") != 0) {
            snprintf(msg, sizeof msg, "xgboost: %s: cannot switch to multi:softprob", m->path);
            rc = seldon_model_set_error(model, msg);
            goto out;
        }
    } else {
        m->kind = KIND_REGRESSION;
    }
    m->sklearn_classifier = m->kind != KIND_REGRESSION && saved_as_sklearn_classifier(m->booster);
    seldon_model_set_state(model, m);
    m = NULL;
    rc = 0;
out:
    free_model(m);
    return rc;
}

static void xgb_unload(seldon_model *model)
{
    free_model(seldon_model_state(model));
    seldon_model_set_state(model, NULL);
}

/* The array interface type string of a datatype XGBoost reads in place, or NULL. */
static const char *typestr(int32_t datatype)
{
    switch (datatype) {
    case SELDON_DT_FP32:
        return "<f4";
    case SELDON_DT_FP64:
        return "<f8";
    case SELDON_DT_INT8:
        return "|i1";
    case SELDON_DT_INT16:
        return "<i2";
    case SELDON_DT_INT32:
        return "<i4";
    case SELDON_DT_INT64:
        return "<i8";
    case SELDON_DT_BOOL: /* one byte holding 0 or 1 */
    case SELDON_DT_UINT8:
        return "|u1";
    case SELDON_DT_UINT16:
        return "<u2";
    case SELDON_DT_UINT32:
        return "<u4";
    case SELDON_DT_UINT64:
        return "<u8";
    default:
        return NULL;
    }
}

static void fail(seldon_infer *infer, int32_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(seldon_infer *infer, int32_t code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    seldon_infer_complete(infer, code, msg);
}

/*
 * Runs inplace prediction on rows x cols values at data. *out points into
 * XGBoost's per-thread buffer: valid until this thread's next prediction.
 */
static int predict(const float **out, bst_ulong const **shape, bst_ulong *ndim,
                   BoosterHandle booster, const void *data, const char *type, uint64_t rows,
                   uint64_t cols)
{
    /* "missing": NaN, as a DMatrix built by the Python package defaults to. */
    static const char config[] = "{\"type\":0,\"training\":false,\"iteration_begin\":0,"
                                 "\"iteration_end\":0,\"strict_shape\":false,\"missing\":NaN,"
                                 "\"cache_id\":0}";
    static const float dummy = 0.0f;
    char array[256];

    /* An empty tensor has no data pointer, but the array interface wants one. */
    if (data == NULL)
        data = &dummy;
    snprintf(array, sizeof array,
             "{\"data\":[%llu,true],\"shape\":[%llu,%llu],\"typestr\":\"%s\",\"version\":3}",
             (unsigned long long)(uintptr_t)data, (unsigned long long)rows,
             (unsigned long long)cols, type);
    return XGBoosterPredictFromDense(booster, array, config, NULL, shape, ndim, out);
}

/* Adds an output and returns its writable data in *data. */
static int add_output(void **data, seldon_msg *resp, const char *name, int32_t datatype,
                      const int64_t *shape, uint32_t ndim, size_t nbytes)
{
    seldon_tensor t;
    size_t index;
    int rc = seldon_msg_add_tensor(&index, resp, name, strlen(name), datatype, shape, ndim, NULL,
                                   nbytes, SELDON_TENSOR_ALLOC);
    if (rc == 0)
        rc = seldon_msg_tensor(&t, resp, index);
    if (rc == 0)
        *data = t.data;
    return rc;
}

/* Checks that every output the request names is one this runtime makes. */
static int check_requested(seldon_infer *infer, const seldon_model *model, const xgb_model *m)
{
    const seldon_msg *req = seldon_infer_request(infer);
    size_t i, n = seldon_msg_output_count(req);

    for (i = 0; i < n; i++) {
        size_t len = 0;
        const char *name = seldon_msg_output_name(req, i, &len);
        if (name == NULL)
            continue;
        if (len == 7 && memcmp(name, "predict", 7) == 0)
            continue;
        if (len == 13 && memcmp(name, "predict_proba", 13) == 0) {
            if (m->kind != KIND_REGRESSION)
                continue;
            fail(infer, SELDON_EUNSUPPORTED,
                 "xgboost: output predict_proba: model %s is not a classifier",
                 seldon_model_name(model));
            return SELDON_EUNSUPPORTED;
        }
        /* A request naming an output the model lacks is a bad request, not a missing model. */
        fail(infer, SELDON_EINVAL,
             "xgboost: output %.*s is not available (predict, predict_proba)",
             (int)(len > 128 ? 128 : len), name);
        return SELDON_EINVAL;
    }
    return 0;
}

/*
 * The outputs for zero rows, shaped as a non-empty batch's would be.
 * XGBoost is not asked: it reports such batches with shapes of its own.
 */
static int empty_outputs(seldon_infer *infer, const xgb_model *m, int want_predict, int want_proba)
{
    seldon_msg *resp = seldon_infer_response(infer);
    void *unused;
    int rc = 0;

    if (want_predict) {
        int64_t shape[2] = {0, (int64_t)m->ntarget};
        if (m->sklearn_classifier)
            rc = add_output(&unused, resp, "predict",
                            m->kind == KIND_SOFTMAX ? SELDON_DT_INT32 : SELDON_DT_INT64, shape, 1, 0);
        else if (m->kind == KIND_SOFTPROB) {
            shape[1] = (int64_t)m->nclass;
            rc = add_output(&unused, resp, "predict", SELDON_DT_FP32, shape, 2, 0);
        } else
            rc = add_output(&unused, resp, "predict", SELDON_DT_FP32, shape,
                            m->kind == KIND_REGRESSION && m->ntarget > 1 ? 2 : 1, 0);
    }
    if (rc == 0 && want_proba) {
        int64_t shape[2] = {0, m->kind == KIND_BINARY ? 2 : (int64_t)m->nclass};
        rc = add_output(&unused, resp, "predict_proba", SELDON_DT_FP32, shape, 2, 0);
    }
    if (rc < 0)
        fail(infer, rc, "xgboost: cannot add an output: %s", seldon_last_error());
    return rc;
}

/* Runs one inference; completes it on failure and returns a negative code. */
static int run_one(const seldon_model *model, const xgb_model *m, seldon_infer *infer)
{
    const seldon_msg *req = seldon_infer_request(infer);
    seldon_msg *resp = seldon_infer_response(infer);
    seldon_tensor in;
    const char *type;
    const float *pred = NULL;
    bst_ulong const *pshape = NULL;
    bst_ulong pdim = 0;
    uint64_t rows, cols, k, classes;
    void *copy = NULL, *out = NULL;
    const void *data;
    size_t elem, n;
    int want_predict, want_proba, rc;

    n = seldon_msg_tensor_count(req);
    if (n != 1 || seldon_msg_tensor(&in, req, 0) < 0) {
        fail(infer, SELDON_EINVAL, "xgboost: expected one input tensor, got %zu", n);
        return SELDON_EINVAL;
    }
    type = typestr(in.datatype);
    if (type == NULL) {
        fail(infer, SELDON_EDATATYPE,
             "xgboost: input %.*s: datatype %s is not supported (FP32, FP64, INT*, UINT*, BOOL)",
             (int)(in.name_len > 128 ? 128 : in.name_len), in.name,
             seldon_datatype_name(in.datatype));
        return SELDON_EDATATYPE;
    }
    if (in.ndim == 1) {
        rows = 1;
        cols = (uint64_t)in.shape[0];
    } else if (in.ndim == 2) {
        rows = (uint64_t)in.shape[0];
        cols = (uint64_t)in.shape[1];
    } else {
        fail(infer, SELDON_ESHAPE, "xgboost: input %.*s must be [N, F] or [F], got %u dimensions",
             (int)(in.name_len > 128 ? 128 : in.name_len), in.name, in.ndim);
        return SELDON_ESHAPE;
    }
    if (cols != m->nfeature) {
        fail(infer, SELDON_ESHAPE, "xgboost: input %.*s has %llu features, the model expects %llu",
             (int)(in.name_len > 128 ? 128 : in.name_len), in.name, (unsigned long long)cols,
             (unsigned long long)m->nfeature);
        return SELDON_ESHAPE;
    }
    rc = check_requested(infer, model, m);
    if (rc < 0)
        return rc;
    want_predict = seldon_infer_wants_output(infer, "predict", 7);
    want_proba = m->kind != KIND_REGRESSION && seldon_msg_output_count(req) > 0 &&
                 seldon_infer_wants_output(infer, "predict_proba", 13);
    if (rows == 0)
        return empty_outputs(infer, m, want_predict, want_proba);

    /* XGBoost reads elements with typed loads: give it aligned memory. */
    data = in.data;
    elem = seldon_datatype_size(in.datatype);
    if (data != NULL && (uintptr_t)data % elem != 0) {
        copy = malloc(in.nbytes);
        if (copy == NULL) {
            fail(infer, SELDON_ENOMEM, "xgboost: out of memory");
            return SELDON_ENOMEM;
        }
        memcpy(copy, data, in.nbytes);
        data = copy;
    }

    /*
     * The booster's own output: predict (raw, or turned into labels for an
     * sklearn classifier), and the probabilities of binary:logistic and
     * multi:softprob. multi:softmax probabilities come from m->proba below.
     */
    if (want_predict || (want_proba && m->kind != KIND_SOFTMAX)) {
        if (predict(&pred, &pshape, &pdim, m->booster, data, type, rows, cols) != 0) {
            fail(infer, SELDON_EINTERNAL, "xgboost: prediction failed: %s", XGBGetLastError());
            rc = SELDON_EINTERNAL;
            goto out;
        }
        if (pdim < 1 || pdim > 2 || pshape[0] != rows ||
            (m->kind == KIND_BINARY && pdim != 1)) {
            fail(infer, SELDON_EINTERNAL, "xgboost: unexpected prediction shape (%llu dimensions)",
                 (unsigned long long)pdim);
            rc = SELDON_EINTERNAL;
            goto out;
        }
        classes = pdim == 2 ? pshape[1] : 1;

        if (want_predict && !m->sklearn_classifier) {
            /* As XGBRegressor.predict: the prediction itself, float32. */
            int64_t shape[2] = {(int64_t)rows, (int64_t)classes};
            rc = add_output(&out, resp, "predict", SELDON_DT_FP32, shape, (uint32_t)pdim,
                            rows * classes * sizeof(float));
            if (rc < 0)
                goto fail_output;
            memcpy(out, pred, rows * classes * sizeof(float));
        } else if (want_predict && m->kind == KIND_SOFTMAX) {
            /* As XGBClassifier.predict for multi:softmax: the labels as int32. */
            int64_t shape[1] = {(int64_t)rows};
            int32_t *labels;
            rc = add_output(&out, resp, "predict", SELDON_DT_INT32, shape, 1, rows * 4);
            if (rc < 0)
                goto fail_output;
            labels = out;
            for (k = 0; k < rows; k++)
                labels[k] = (int32_t)pred[k];
        } else if (want_predict && m->kind == KIND_BINARY) {
            int64_t shape[1] = {(int64_t)rows};
            int64_t *labels;
            rc = add_output(&out, resp, "predict", SELDON_DT_INT64, shape, 1, rows * 8);
            if (rc < 0)
                goto fail_output;
            labels = out;
            /* As XGBClassifier.predict: class 1 when p > 0.5, strictly. */
            for (k = 0; k < rows; k++)
                labels[k] = pred[k] > 0.5f;
        } else if (want_predict) { /* KIND_SOFTPROB */
            int64_t shape[1] = {(int64_t)rows};
            int64_t *labels;
            rc = add_output(&out, resp, "predict", SELDON_DT_INT64, shape, 1, rows * 8);
            if (rc < 0)
                goto fail_output;
            labels = out;
            /* argmax, the first of equal maxima winning, as numpy's argmax. */
            for (k = 0; k < rows; k++) {
                const float *row = pred + k * classes;
                uint64_t c, best = 0;
                for (c = 1; c < classes; c++)
                    if (row[c] > row[best])
                        best = c;
                labels[k] = (int64_t)best;
            }
        }
        if (want_proba && m->kind == KIND_BINARY) {
            int64_t shape[2] = {(int64_t)rows, 2};
            float *proba;
            rc = add_output(&out, resp, "predict_proba", SELDON_DT_FP32, shape, 2,
                            rows * 2 * sizeof(float));
            if (rc < 0)
                goto fail_output;
            proba = out;
            /* 1 - p in float32, as numpy computes it on the float32 prediction. */
            for (k = 0; k < rows; k++) {
                proba[2 * k] = 1.0f - pred[k];
                proba[2 * k + 1] = pred[k];
            }
        } else if (want_proba && m->kind == KIND_SOFTPROB) {
            int64_t shape[2] = {(int64_t)rows, (int64_t)classes};
            rc = add_output(&out, resp, "predict_proba", SELDON_DT_FP32, shape, 2,
                            rows * classes * sizeof(float));
            if (rc < 0)
                goto fail_output;
            memcpy(out, pred, rows * classes * sizeof(float));
        }
    }

    if (want_proba && m->kind == KIND_SOFTMAX) {
        int64_t shape[2];
        if (predict(&pred, &pshape, &pdim, m->proba, data, type, rows, cols) != 0) {
            fail(infer, SELDON_EINTERNAL, "xgboost: prediction failed: %s", XGBGetLastError());
            rc = SELDON_EINTERNAL;
            goto out;
        }
        if (pdim != 2 || pshape[0] != rows) {
            fail(infer, SELDON_EINTERNAL, "xgboost: unexpected probability shape");
            rc = SELDON_EINTERNAL;
            goto out;
        }
        shape[0] = (int64_t)rows;
        shape[1] = (int64_t)pshape[1];
        rc = add_output(&out, resp, "predict_proba", SELDON_DT_FP32, shape, 2,
                        rows * pshape[1] * sizeof(float));
        if (rc < 0)
            goto fail_output;
        memcpy(out, pred, rows * pshape[1] * sizeof(float));
    }
    rc = 0;
    goto out;

fail_output:
    fail(infer, rc, "xgboost: cannot add an output: %s", seldon_last_error());
out:
    free(copy);
    return rc;
}

static int xgb_execute(seldon_model *model, seldon_infer *const *infers, size_t count)
{
    const xgb_model *m = seldon_model_state(model);
    size_t i;

    for (i = 0; i < count; i++)
        if (run_one(model, m, infers[i]) == 0)
            seldon_infer_complete(infers[i], 0, NULL);
    return 0;
}

static const seldon_runtime xgb_runtime = {
    SELDON_RUNTIME_ABI_MAJOR,
    SELDON_RUNTIME_ABI_MINOR,
    "xgboost",
    SELDON_RUNTIME_CONCURRENT,
    xgb_load,
    NULL,
    xgb_execute,
    xgb_unload,
};

const seldon_runtime *seldon_runtime_entry(void)
{
    return &xgb_runtime;
}
