/*
 * The builtin runtimes (see builtin.h). They use only the public runtime
 * ABI, like any plugin would, so they double as its reference users.
 *
 * Tensor data is read and written through memcpy: a request's data may be
 * borrowed from a wire buffer with no alignment promise beyond the
 * decoder's, and memcpy of one element compiles to a plain load anyway.
 */
#include "runtime/builtin.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

/* Longest tensor name quoted in an error message. */
#define NAME_MAX_SHOWN 128

static void fail(seldon_infer *infer, int32_t code, const char *fmt, ...) SDN_PRINTF(3, 4);

/* Completes infer with code and a formatted message. */
static void fail(seldon_infer *infer, int32_t code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    seldon_infer_complete(infer, code, msg);
}

static int shown(size_t len)
{
    return (int)(len > NAME_MAX_SHOWN ? NAME_MAX_SHOWN : len);
}

/*
 * Adds a copy of src to resp as name[0..len). The request may be freed
 * before the response is encoded, so borrowing its bytes is not an option.
 * On failure completes infer and returns the negative code.
 */
static int add_copy(seldon_infer *infer, seldon_msg *resp, const char *rt, const char *name,
                    size_t len, const seldon_tensor *src)
{
    int rc = seldon_msg_add_tensor(NULL, resp, name, len, src->datatype, src->shape, src->ndim,
                                   src->data, src->nbytes, SELDON_TENSOR_COPY);
    if (rc < 0)
        fail(infer, rc, "%s: output %.*s: %s", rt, shown(len), name, seldon_last_error());
    return rc;
}

/*
 * Adds an output of datatype and shape with zeroed bytes to fill in place,
 * and returns a view of it in *out. On failure completes infer.
 */
static int add_alloc(seldon_tensor *out, seldon_infer *infer, seldon_msg *resp, const char *rt,
                     const char *name, size_t len, int32_t datatype, const int64_t *shape,
                     uint32_t ndim, size_t nbytes)
{
    size_t index;
    int rc = seldon_msg_add_tensor(&index, resp, name, len, datatype, shape, ndim, NULL, nbytes,
                                   SELDON_TENSOR_ALLOC);
    if (rc == 0)
        rc = seldon_msg_tensor(out, resp, index);
    if (rc < 0)
        fail(infer, rc, "%s: output %.*s: %s", rt, shown(len), name, seldon_last_error());
    return rc;
}

/*
 * Finds the request's input called name. With datatype != SELDON_DT_INVALID
 * it must also have that datatype. On failure completes infer.
 */
static int find_input(seldon_tensor *out, seldon_infer *infer, const char *rt, const char *name,
                      int32_t datatype)
{
    const seldon_msg *req = seldon_infer_request(infer);
    size_t index;

    if (seldon_msg_find_tensor(&index, req, name, strlen(name)) < 0 ||
        seldon_msg_tensor(out, req, index) < 0) {
        fail(infer, SELDON_EINVAL, "%s: input %s is missing", rt, name);
        return SELDON_EINVAL;
    }
    if (datatype != SELDON_DT_INVALID && out->datatype != datatype) {
        fail(infer, SELDON_EDATATYPE, "%s: input %s must be %s, got %s", rt, name,
             seldon_datatype_name(datatype), seldon_datatype_name(out->datatype));
        return SELDON_EDATATYPE;
    }
    return 0;
}

static int same_shape(const seldon_tensor *a, const seldon_tensor *b)
{
    return a->ndim == b->ndim &&
           (a->ndim == 0 || memcmp(a->shape, b->shape, a->ndim * sizeof(int64_t)) == 0);
}

/* Formats a shape as "[1,16]" for error messages. */
static const char *shape_text(char *buf, size_t cap, const seldon_tensor *t)
{
    size_t used = 0;
    uint32_t d;

    buf[0] = '\0';
    used += (size_t)snprintf(buf, cap, "[");
    for (d = 0; d < t->ndim && used < cap; d++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%lld", d ? "," : "",
                                 (long long)t->shape[d]);
    if (used < cap)
        snprintf(buf + used, cap - used, "]");
    return buf;
}

/* --- builtin.identity --------------------------------------------------- */

static int noop_load(seldon_model *model)
{
    (void)model;
    return 0;
}

static int identity_execute(seldon_model *model, seldon_infer *const *infers, size_t count)
{
    size_t i, j;

    (void)model;
    for (i = 0; i < count; i++) {
        seldon_infer *infer = infers[i];
        const seldon_msg *req = seldon_infer_request(infer);
        seldon_msg *resp = seldon_infer_response(infer);
        size_t n = seldon_msg_tensor_count(req);
        int rc = 0;

        for (j = 0; j < n && rc == 0; j++) {
            seldon_tensor t;
            rc = seldon_msg_tensor(&t, req, j);
            if (rc < 0) {
                fail(infer, rc, "builtin.identity: input %zu: %s", j, seldon_last_error());
                break;
            }
            if (seldon_infer_wants_output(infer, t.name, t.name_len))
                rc = add_copy(infer, resp, "builtin.identity", t.name, t.name_len, &t);
        }
        if (rc == 0)
            seldon_infer_complete(infer, 0, NULL);
    }
    return 0;
}

const seldon_runtime sdn_rt_identity = {
    SELDON_RUNTIME_ABI_MAJOR,
    SELDON_RUNTIME_ABI_MINOR,
    "builtin.identity",
    SELDON_RUNTIME_CONCURRENT | SELDON_RUNTIME_INLINE,
    noop_load,
    NULL,
    identity_execute,
    NULL,
};

/* --- builtin.simple ----------------------------------------------------- */

static int simple_metadata(seldon_model *model)
{
    static const int64_t shape[2] = {-1, 16};
    int rc;

    if ((rc = seldon_model_add_input(model, "INPUT0", SELDON_DT_INT32, shape, 2)) < 0 ||
        (rc = seldon_model_add_input(model, "INPUT1", SELDON_DT_INT32, shape, 2)) < 0 ||
        (rc = seldon_model_add_output(model, "OUTPUT0", SELDON_DT_INT32, shape, 2)) < 0 ||
        (rc = seldon_model_add_output(model, "OUTPUT1", SELDON_DT_INT32, shape, 2)) < 0)
        return rc;
    return 0;
}

/*
 * One output of "simple": the sum (sign +1) or the difference (-1). The
 * arithmetic is done on uint32_t so that overflow wraps as Triton's int32
 * does on every real machine, without signed-overflow undefined behaviour.
 */
static int simple_output(seldon_infer *infer, const char *name, const seldon_tensor *a,
                         const seldon_tensor *b, int sign)
{
    seldon_tensor out;
    const uint8_t *pa = a->data, *pb = b->data;
    uint8_t *po;
    uint64_t k;
    int rc;

    if (!seldon_infer_wants_output(infer, name, strlen(name)))
        return 0;
    rc = add_alloc(&out, infer, seldon_infer_response(infer), "builtin.simple", name, strlen(name),
                   SELDON_DT_INT32, a->shape, a->ndim, a->nbytes);
    if (rc < 0)
        return rc;
    po = out.data;
    for (k = 0; k < a->count; k++) {
        uint32_t x, y, r;
        memcpy(&x, pa + k * 4, 4);
        memcpy(&y, pb + k * 4, 4);
        r = sign > 0 ? x + y : x - y;
        memcpy(po + k * 4, &r, 4);
    }
    return 0;
}

static int simple_execute(seldon_model *model, seldon_infer *const *infers, size_t count)
{
    size_t i;

    (void)model;
    for (i = 0; i < count; i++) {
        seldon_infer *infer = infers[i];
        seldon_tensor a, b;
        char sa[64], sb[64];

        if (find_input(&a, infer, "builtin.simple", "INPUT0", SELDON_DT_INT32) < 0 ||
            find_input(&b, infer, "builtin.simple", "INPUT1", SELDON_DT_INT32) < 0)
            continue;
        if (!same_shape(&a, &b)) {
            fail(infer, SELDON_ESHAPE, "builtin.simple: input INPUT1 has shape %s, INPUT0 has %s",
                 shape_text(sb, sizeof sb, &b), shape_text(sa, sizeof sa, &a));
            continue;
        }
        if (simple_output(infer, "OUTPUT0", &a, &b, 1) < 0 ||
            simple_output(infer, "OUTPUT1", &a, &b, -1) < 0)
            continue;
        seldon_infer_complete(infer, 0, NULL);
    }
    return 0;
}

const seldon_runtime sdn_rt_simple = {
    SELDON_RUNTIME_ABI_MAJOR,
    SELDON_RUNTIME_ABI_MINOR,
    "builtin.simple",
    SELDON_RUNTIME_CONCURRENT | SELDON_RUNTIME_INLINE,
    noop_load,
    simple_metadata,
    simple_execute,
    NULL,
};

/* --- builtin.add and builtin.mul ---------------------------------------- */

/*
 * The constant, read once at load in every form execute needs. integral
 * says whether it may apply to integer tensors; as_u64 is then its two's
 * complement, so that uint64_t arithmetic wraps like C unsigned types.
 */
typedef struct arith_state {
    double as_f64;
    uint64_t as_u64;
    int integral;
} arith_state;

/* Whether d is an integer that int64_t holds (2^63 itself is not). */
static int f64_is_int64(double d)
{
    return d >= -9223372036854775808.0 && d < 9223372036854775808.0 && (double)(int64_t)d == d;
}

static int arith_load(seldon_model *model, const char *rt)
{
    seldon_param p;
    arith_state st = {0.0, 0, 0}, *heap;
    char msg[256];
    int rc = seldon_model_extra(&p, model, "constant");

    if (rc == SELDON_ENOTFOUND) {
        snprintf(msg, sizeof msg, "%s: parameters.extra.constant is required (a number)", rt);
        return seldon_model_set_error(model, msg);
    }
    if (rc < 0) {
        snprintf(msg, sizeof msg, "%s: parameters.extra.constant must be a number", rt);
        return seldon_model_set_error(model, msg);
    }
    switch (p.type) {
    case SELDON_PARAM_INT64:
        st.as_f64 = (double)p.int64_value;
        st.as_u64 = (uint64_t)p.int64_value;
        st.integral = 1;
        break;
    case SELDON_PARAM_DOUBLE:
        st.as_f64 = p.double_value;
        break;
    case SELDON_PARAM_STRING: {
        /*
         * Kubernetes resources carry parameters as strings ("10"); accept a
         * number spelled as one. Integers are parsed as such so that those
         * beyond 2^53 stay exact for integer tensors.
         */
        char num[64], *end = NULL;
        long long ll;
        if (p.string_len == 0 || p.string_len >= sizeof num)
            goto bad_string;
        memcpy(num, p.string_value, p.string_len);
        num[p.string_len] = '\0';
        errno = 0;
        ll = strtoll(num, &end, 10);
        if (*end == '\0' && errno == 0) {
            st.as_f64 = (double)ll;
            st.as_u64 = (uint64_t)ll;
            st.integral = 1;
            break;
        }
        st.as_f64 = strtod(num, &end);
        if (*end != '\0')
            goto bad_string;
        break;
    bad_string:
        snprintf(msg, sizeof msg, "%s: parameters.extra.constant \"%.*s\" is not a number", rt,
                 (int)(p.string_len > 64 ? 64 : p.string_len), p.string_value);
        return seldon_model_set_error(model, msg);
    }
    default:
        snprintf(msg, sizeof msg, "%s: parameters.extra.constant must be a number", rt);
        return seldon_model_set_error(model, msg);
    }
    if (!st.integral && f64_is_int64(st.as_f64)) {
        st.as_u64 = (uint64_t)(int64_t)st.as_f64;
        st.integral = 1;
    }

    heap = sdn_malloc(sizeof *heap);
    if (heap == NULL) {
        snprintf(msg, sizeof msg, "%s: out of memory", rt);
        seldon_model_set_error(model, msg);
        return SELDON_ENOMEM;
    }
    *heap = st;
    seldon_model_set_state(model, heap);
    return 0;
}

static int add_load(seldon_model *model)
{
    return arith_load(model, "builtin.add");
}

static int mul_load(seldon_model *model)
{
    return arith_load(model, "builtin.mul");
}

static void arith_unload(seldon_model *model)
{
    sdn_free(seldon_model_state(model));
    seldon_model_set_state(model, NULL);
}

/*
 * dst = src (+ or *) c over n elements of an integer datatype. Converting
 * an element to uint64_t is by value modulo 2^64 (sign-extending negative
 * ones), uint64_t arithmetic wraps, and the low bytes of the result are the
 * element's modular value on a little-endian host: no UB, no promotion to
 * int.
 */
#define ARITH_INT_LOOP(T)                                                                          \
    for (k = 0; k < n; k++) {                                                                      \
        T x_;                                                                                      \
        uint64_t r_;                                                                               \
        memcpy(&x_, src + k * sizeof(T), sizeof(T));                                               \
        r_ = mul ? (uint64_t)x_ * c : (uint64_t)x_ + c;                                            \
        memcpy(dst + k * sizeof(T), &r_, sizeof(T));                                               \
    }

static void arith_int(uint8_t *dst, const uint8_t *src, uint64_t n, int32_t datatype, int mul,
                      uint64_t c)
{
    uint64_t k;

    switch (datatype) {
    case SELDON_DT_INT8:
        ARITH_INT_LOOP(int8_t);
        break;
    case SELDON_DT_INT16:
        ARITH_INT_LOOP(int16_t);
        break;
    case SELDON_DT_INT32:
        ARITH_INT_LOOP(int32_t);
        break;
    case SELDON_DT_INT64:
        ARITH_INT_LOOP(int64_t);
        break;
    case SELDON_DT_UINT8:
        ARITH_INT_LOOP(uint8_t);
        break;
    case SELDON_DT_UINT16:
        ARITH_INT_LOOP(uint16_t);
        break;
    case SELDON_DT_UINT32:
        ARITH_INT_LOOP(uint32_t);
        break;
    case SELDON_DT_UINT64:
        ARITH_INT_LOOP(uint64_t);
        break;
    default:
        break;
    }
}

#undef ARITH_INT_LOOP

/* Floating point: one rounding in the tensor's own type, as numpy would do it. */
static void arith_f32(uint8_t *dst, const uint8_t *src, uint64_t n, int mul, float c)
{
    uint64_t k;

    for (k = 0; k < n; k++) {
        float x, r;
        memcpy(&x, src + k * 4, 4);
        r = mul ? x * c : x + c;
        memcpy(dst + k * 4, &r, 4);
    }
}

static void arith_f64(uint8_t *dst, const uint8_t *src, uint64_t n, int mul, double c)
{
    uint64_t k;

    for (k = 0; k < n; k++) {
        double x, r;
        memcpy(&x, src + k * 8, 8);
        r = mul ? x * c : x + c;
        memcpy(dst + k * 8, &r, 8);
    }
}

static int is_int_type(int32_t datatype)
{
    return datatype >= SELDON_DT_UINT8 && datatype <= SELDON_DT_INT64;
}

/*
 * The output name for an input: INPUT -> OUTPUT, INPUT<digits> ->
 * OUTPUT<digits> (the samples' convention), anything else unchanged.
 * Writes into buf when renamed; returns the name to use.
 */
static const char *arith_output_name(size_t *out_len, char *buf, size_t cap, const char *name,
                                     size_t len)
{
    size_t j;

    *out_len = len;
    if (len < 5 || memcmp(name, "INPUT", 5) != 0 || len + 2 > cap)
        return name;
    for (j = 5; j < len; j++)
        if (name[j] < '0' || name[j] > '9')
            return name;
    memcpy(buf, "OUTPUT", 6);
    memcpy(buf + 6, name + 5, len - 5);
    buf[len + 1] = '\0';
    *out_len = len + 1;
    return buf;
}

static int arith_execute(seldon_model *model, seldon_infer *const *infers, size_t count,
                         const char *rt, int mul)
{
    const arith_state *st = seldon_model_state(model);
    size_t i, j;

    for (i = 0; i < count; i++) {
        seldon_infer *infer = infers[i];
        const seldon_msg *req = seldon_infer_request(infer);
        seldon_msg *resp = seldon_infer_response(infer);
        size_t n = seldon_msg_tensor_count(req);
        int rc = 0;

        for (j = 0; j < n && rc == 0; j++) {
            seldon_tensor in, out;
            char buf[256];
            size_t out_len;
            const char *out_name;

            rc = seldon_msg_tensor(&in, req, j);
            if (rc < 0) {
                fail(infer, rc, "%s: input %zu: %s", rt, j, seldon_last_error());
                break;
            }
            if (in.datatype != SELDON_DT_FP32 && in.datatype != SELDON_DT_FP64 &&
                !is_int_type(in.datatype)) {
                rc = SELDON_EDATATYPE;
                fail(infer, rc,
                     "%s: input %.*s: datatype %s is not supported (FP32, FP64, INT*, "
                     "UINT*)",
                     rt, shown(in.name_len), in.name, seldon_datatype_name(in.datatype));
                break;
            }
            if (is_int_type(in.datatype) && !st->integral) {
                rc = SELDON_EDATATYPE;
                fail(infer, rc, "%s: input %.*s is %s but the constant %g is not an integer", rt,
                     shown(in.name_len), in.name, seldon_datatype_name(in.datatype), st->as_f64);
                break;
            }
            out_name = arith_output_name(&out_len, buf, sizeof buf, in.name, in.name_len);
            if (!seldon_infer_wants_output(infer, out_name, out_len))
                continue;
            rc = add_alloc(&out, infer, resp, rt, out_name, out_len, in.datatype, in.shape, in.ndim,
                           in.nbytes);
            if (rc < 0)
                break;
            if (in.datatype == SELDON_DT_FP32)
                arith_f32(out.data, in.data, in.count, mul, (float)st->as_f64);
            else if (in.datatype == SELDON_DT_FP64)
                arith_f64(out.data, in.data, in.count, mul, st->as_f64);
            else
                arith_int(out.data, in.data, in.count, in.datatype, mul, st->as_u64);
        }
        if (rc == 0)
            seldon_infer_complete(infer, 0, NULL);
    }
    return 0;
}

static int add_execute(seldon_model *model, seldon_infer *const *infers, size_t count)
{
    return arith_execute(model, infers, count, "builtin.add", 0);
}

static int mul_execute(seldon_model *model, seldon_infer *const *infers, size_t count)
{
    return arith_execute(model, infers, count, "builtin.mul", 1);
}

/*
 * No metadata callback: add10 is used with [4] and with [1,4] in Seldon's
 * samples, and with any numeric datatype here; declaring inputs would make
 * the server reject some of them.
 */
const seldon_runtime sdn_rt_add = {
    SELDON_RUNTIME_ABI_MAJOR,
    SELDON_RUNTIME_ABI_MINOR,
    "builtin.add",
    SELDON_RUNTIME_CONCURRENT | SELDON_RUNTIME_INLINE,
    add_load,
    NULL,
    add_execute,
    arith_unload,
};

const seldon_runtime sdn_rt_mul = {
    SELDON_RUNTIME_ABI_MAJOR,
    SELDON_RUNTIME_ABI_MINOR,
    "builtin.mul",
    SELDON_RUNTIME_CONCURRENT | SELDON_RUNTIME_INLINE,
    mul_load,
    NULL,
    mul_execute,
    arith_unload,
};

/* --- builtin.conditional ------------------------------------------------ */

/*
 * Seldon's "conditional" sample routes by CHOICE: the response holds only
 * the selected branch, so that a pipeline step fed by the other branch
 * receives no tensors and does not fire.
 */
static int conditional_execute(seldon_model *model, seldon_infer *const *infers, size_t count)
{
    size_t i;

    (void)model;
    for (i = 0; i < count; i++) {
        seldon_infer *infer = infers[i];
        seldon_tensor choice, in;
        const uint8_t *c;
        size_t b, size;
        int nonzero = 0;
        const char *in_name, *out_name;

        if (find_input(&choice, infer, "builtin.conditional", "CHOICE", SELDON_DT_INVALID) < 0)
            continue;
        if (!is_int_type(choice.datatype) && choice.datatype != SELDON_DT_BOOL) {
            fail(infer, SELDON_EDATATYPE, "builtin.conditional: input CHOICE must be INT32, got %s",
                 seldon_datatype_name(choice.datatype));
            continue;
        }
        if (choice.count != 1) {
            fail(infer, SELDON_ESHAPE,
                 "builtin.conditional: input CHOICE must hold one element, got %llu",
                 (unsigned long long)choice.count);
            continue;
        }
        /* An integer is zero exactly when all its bytes are: no per-type decoding needed. */
        c = choice.data;
        size = seldon_datatype_size(choice.datatype);
        for (b = 0; b < size; b++)
            nonzero |= c[b] != 0;
        in_name = nonzero ? "INPUT1" : "INPUT0";
        out_name = nonzero ? "OUTPUT1" : "OUTPUT0";
        if (find_input(&in, infer, "builtin.conditional", in_name, SELDON_DT_INVALID) < 0)
            continue;
        if (seldon_infer_wants_output(infer, out_name, strlen(out_name))) {
            seldon_msg *resp = seldon_infer_response(infer);
            if (add_copy(infer, resp, "builtin.conditional", out_name, strlen(out_name), &in) < 0)
                continue;
        }
        seldon_infer_complete(infer, 0, NULL);
    }
    return 0;
}

/*
 * Both branches are declared outputs, as in Triton's sample: a caller that
 * names both gets the one that fired, not an error for the other.
 */
static int conditional_metadata(seldon_model *model)
{
    static const int64_t shape[1] = {-1};
    int rc;
    if ((rc = seldon_model_add_output(model, "OUTPUT0", SELDON_DT_FP32, shape, 1)) < 0 ||
        (rc = seldon_model_add_output(model, "OUTPUT1", SELDON_DT_FP32, shape, 1)) < 0)
        return rc;
    return 0;
}

const seldon_runtime sdn_rt_conditional = {
    SELDON_RUNTIME_ABI_MAJOR,
    SELDON_RUNTIME_ABI_MINOR,
    "builtin.conditional",
    SELDON_RUNTIME_CONCURRENT | SELDON_RUNTIME_INLINE,
    noop_load,
    conditional_metadata,
    conditional_execute,
    NULL,
};
