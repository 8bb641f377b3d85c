/*
 * REST JSON encoding of Open Inference Protocol (KServe V2) messages, with Triton's binary
 * tensor data extension.
 *
 * Output is compact (no whitespace). Each tensor's data is bounded up front (its element count
 * times the widest text of one element), reserved once and then written with plain pointer
 * bumps; BYTES data is measured exactly first, which also validates it as UTF-8.
 */
#include <stdio.h>
#include <string.h>

#include "json.h"
#include "msg.h"
#include "util/fpconv.h"

typedef struct je {
    seldon_buf *out;
    const seldon_msg *msg;
    const char *scope; /* "inputs" or "outputs": where the message's tensors live */
} je;

/* --- Strings ------------------------------------------------------------ */

/* Bytes an ASCII character grows by when escaped: \" \\ \b \f \n \r \t, or \u00XX. */
static const uint8_t esc_extra[128] = {
    5, 5, 5, 5, 5, 5, 5, 5, 1, 1, 1, 5, 1, 1, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

/* The escaped length of s[0..n) without quotes, or SIZE_MAX when it is not valid UTF-8. */
static size_t esc_len(const uint8_t *s, size_t n)
{
    const uint8_t *p = s, *end = s + n;
    size_t extra = 0;

    while (p < end) {
        if (*p < 0x80) {
            extra += esc_extra[*p++];
        } else {
            size_t k = sdn_utf8_seq(p, end);
            if (k == 0)
                return SIZE_MAX;
            p += k;
        }
    }
    return n + extra;
}

/* Writes s[0..n), escaped, whose escaped length esc_len() gave as elen. */
static uint8_t *esc_write(uint8_t *w, const uint8_t *s, size_t n, size_t elen)
{
    static const char hex[] = "0123456789abcdef";
    size_t i;

    if (elen == n) {
        if (n)
            memcpy(w, s, n);
        return w + n;
    }
    for (i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c >= 0x80 || esc_extra[c] == 0) {
            *w++ = c;
            continue;
        }
        *w++ = '\\';
        switch (c) {
        case '"':
            *w++ = '"';
            break;
        case '\\':
            *w++ = '\\';
            break;
        case '\b':
            *w++ = 'b';
            break;
        case '\f':
            *w++ = 'f';
            break;
        case '\n':
            *w++ = 'n';
            break;
        case '\r':
            *w++ = 'r';
            break;
        case '\t':
            *w++ = 't';
            break;
        default:
            memcpy(w, "u00", 3);
            w[3] = (uint8_t)hex[c >> 4];
            w[4] = (uint8_t)hex[c & 15];
            w += 5;
            break;
        }
    }
    return w;
}

/* Appends are many and small: while the buffer has room they stay here, without a call. */
static inline int reserve(je *e, size_t n)
{
    const seldon_buf *b = e->out;
    if (b->data != NULL && b->cap - b->len >= n)
        return 0;
    return sdn_buf_reserve(e->out, n);
}

/* Literals are most of the appends: copied in place while the buffer has room. */
static inline int put(je *e, const char *s, size_t n)
{
    seldon_buf *b = e->out;
    if (b->data != NULL && b->cap - b->len >= n) {
        memcpy(b->data + b->len, s, n);
        b->len += n;
        return 0;
    }
    return sdn_buf_append(b, s, n);
}

#define PUT_LIT(e, lit) put((e), (lit), sizeof(lit) - 1)

/* Appends a member's key: lit, preceded by ',' unless it is the first member. */
static int put_key(je *e, int *first, const char *lit, size_t n)
{
    int rc = *first ? 0 : PUT_LIT(e, ",");
    *first = 0;
    return rc < 0 ? rc : put(e, lit, n);
}

#define PUT_KEY(e, first, lit) put_key((e), (first), (lit), sizeof(lit) - 1)

/*
 * Appends a quoted, escaped string. On invalid UTF-8 returns SELDON_EDATATYPE without a
 * message: the caller knows the path.
 */
static int put_str_raw(je *e, const char *s, size_t n)
{
    size_t elen = esc_len((const uint8_t *)s, n);
    uint8_t *w;
    int rc;

    if (elen == SIZE_MAX)
        return SELDON_EDATATYPE;
    rc = reserve(e, elen + 2);
    if (rc < 0)
        return rc;
    w = e->out->data + e->out->len;
    *w++ = '"';
    w = esc_write(w, (const uint8_t *)s, n, elen);
    *w++ = '"';
    e->out->len = (size_t)(w - e->out->data);
    return 0;
}

/* put_str_raw() with the error message: path is scope[index].field, or field alone. */
static int put_str(je *e, sdn_str s, const char *scope, size_t index, const char *field)
{
    int rc = put_str_raw(e, s.p, s.len);
    if (rc != SELDON_EDATATYPE)
        return rc;
    if (scope != NULL)
        return sdn_error(rc, "%s[%zu].%s: not valid UTF-8", scope, index, field);
    return sdn_error(rc, "%s: not valid UTF-8", field);
}

/* --- Numbers ------------------------------------------------------------ */

static const char digits2[201] = "00010203040506070809101112131415161718192021222324252627282930"
                                 "31323334353637383940414243444546474849505152535455565758596061"
                                 "62636465666768697071727374757677787980818283848586878889909192"
                                 "93949596979899";

SDN_JSON_INLINE unsigned ndigits(uint64_t v)
{
    unsigned n = 1;
    for (;;) {
        if (v < 10)
            return n;
        if (v < 100)
            return n + 1;
        if (v < 1000)
            return n + 2;
        if (v < 10000)
            return n + 3;
        v /= 10000;
        n += 4;
    }
}

/* Writes v in decimal, two digits per step from the right. */
SDN_JSON_INLINE uint8_t *fmt_u64(uint8_t *w, uint64_t v)
{
    uint8_t *end = w + ndigits(v), *p = end;
    while (v >= 100) {
        unsigned i = (unsigned)(v % 100) * 2;
        v /= 100;
        p -= 2;
        memcpy(p, digits2 + i, 2);
    }
    if (v >= 10)
        memcpy(p - 2, digits2 + v * 2, 2);
    else
        p[-1] = (uint8_t)('0' + v);
    return end;
}

SDN_JSON_INLINE uint8_t *fmt_i64(uint8_t *w, int64_t v)
{
    if (v < 0) {
        *w++ = '-';
        return fmt_u64(w, 0 - (uint64_t)v);
    }
    return fmt_u64(w, (uint64_t)v);
}

/* --- Parameters --------------------------------------------------------- */

static int is_binary_size(const sdn_param *prm)
{
    return prm->name.len == SDN_JSON_BINARY_SIZE_LEN &&
           memcmp(prm->name.p, SDN_JSON_BINARY_SIZE, SDN_JSON_BINARY_SIZE_LEN) == 0;
}

/*
 * Appends the members of ps after a '{' (a ',' before each but the first). A tensor's own
 * binary_data_size (skip_binary) is dropped: the encoder alone decides what travels as binary.
 * scope/index name the owner for error messages (scope NULL: the message itself).
 */
static int put_params(je *e, const sdn_params *ps, int skip_binary, const char *scope, size_t index,
                      int *first)
{
    char field[96];
    uint32_t i;
    int rc;

    for (i = 0; i < ps->n; i++) {
        const sdn_param *prm = &ps->items[i];
        uint8_t *w;

        if (skip_binary && is_binary_size(prm))
            continue;
        rc = put_key(e, first, "", 0);
        if (rc == 0)
            rc = put_str_raw(e, prm->name.p, prm->name.len);
        if (rc == 0)
            rc = PUT_LIT(e, ":");
        if (rc == 0) {
            switch (prm->type) {
            case SELDON_PARAM_STRING:
                rc = put_str_raw(e, prm->s.p, prm->s.len);
                break;
            case SELDON_PARAM_BOOL:
                rc = prm->b ? PUT_LIT(e, "true") : PUT_LIT(e, "false");
                break;
            case SELDON_PARAM_INT64:
            case SELDON_PARAM_DOUBLE:
                rc = reserve(e, SDN_FMT_F64_MAX);
                if (rc < 0)
                    break;
                w = e->out->data + e->out->len;
                if (prm->type == SELDON_PARAM_INT64)
                    w = fmt_i64(w, prm->i);
                else
                    w += sdn_fmt_f64((char *)w, prm->d);
                e->out->len = (size_t)(w - e->out->data);
                break;
            default:
                rc = sdn_error(SELDON_EINTERNAL, "parameter of unknown type %d", prm->type);
                break;
            }
        }
        if (rc == SELDON_EDATATYPE) {
            snprintf(field, sizeof(field), "parameters.%.*s",
                     (int)(prm->name.len > 48 ? 48 : prm->name.len), prm->name.p);
            if (scope != NULL)
                return sdn_error(rc, "%s[%zu].%s: not valid UTF-8", scope, index, field);
            return sdn_error(rc, "%s: not valid UTF-8", field);
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* --- Tensor data -------------------------------------------------------- */

/* The widest text of one element, with its separating comma. */
static size_t elem_bound(int32_t dt)
{
    switch (dt) {
    case SELDON_DT_BOOL:
        return 6;
    case SELDON_DT_UINT8:
        return 4;
    case SELDON_DT_INT8:
        return 5;
    case SELDON_DT_UINT16:
        return 6;
    case SELDON_DT_INT16:
        return 7;
    case SELDON_DT_UINT32:
        return 11;
    case SELDON_DT_INT32:
        return 12;
    case SELDON_DT_UINT64:
    case SELDON_DT_INT64:
        return 21;
    case SELDON_DT_FP16:
    case SELDON_DT_FP32:
        return SDN_FMT_F32_MAX + 1;
    default:
        return SDN_FMT_F64_MAX + 1;
    }
}

/*
 * The hot loop: writes n elements of fixed-size datatype dt as a JSON array. Expanded once per
 * datatype (dt is constant at each call site), so no per-element switch. The room reserved
 * (elem_bound() per element) also covers the formatters' scratch use of their buffer.
 */
SDN_JSON_INLINE uint8_t *data_generic(uint8_t *w, const uint8_t *d, uint64_t n, const int32_t dt)
{
    uint64_t i;

    *w++ = '[';
    for (i = 0; i < n; i++) {
        if (dt == SELDON_DT_FP32) {
            float v;
            memcpy(&v, d + 4 * i, 4);
            w += sdn_fmt_f32((char *)w, v);
        } else if (dt == SELDON_DT_FP64) {
            double v;
            memcpy(&v, d + 8 * i, 8);
            w += sdn_fmt_f64((char *)w, v);
        } else if (dt == SELDON_DT_FP16) {
            uint16_t h;
            memcpy(&h, d + 2 * i, 2);
            w += sdn_fmt_f32((char *)w, sdn_f16_to_f32(h));
        } else if (dt == SELDON_DT_BOOL) {
            if (d[i]) {
                memcpy(w, "true", 4);
                w += 4;
            } else {
                memcpy(w, "false", 5);
                w += 5;
            }
        } else if (dt == SELDON_DT_UINT8) {
            w = fmt_u64(w, d[i]);
        } else if (dt == SELDON_DT_INT8) {
            w = fmt_i64(w, (int8_t)d[i]);
        } else if (dt == SELDON_DT_UINT16 || dt == SELDON_DT_INT16) {
            uint16_t v;
            memcpy(&v, d + 2 * i, 2);
            w = dt == SELDON_DT_UINT16 ? fmt_u64(w, v) : fmt_i64(w, (int16_t)v);
        } else if (dt == SELDON_DT_UINT32 || dt == SELDON_DT_INT32) {
            uint32_t v;
            memcpy(&v, d + 4 * i, 4);
            w = dt == SELDON_DT_UINT32 ? fmt_u64(w, v) : fmt_i64(w, (int32_t)v);
        } else {
            uint64_t v;
            memcpy(&v, d + 8 * i, 8);
            w = dt == SELDON_DT_UINT64 ? fmt_u64(w, v) : fmt_i64(w, (int64_t)v);
        }
        *w++ = ',';
    }
    if (n)
        w[-1] = ']';
    else
        *w++ = ']';
    return w;
}

typedef uint8_t *(*data_fn)(uint8_t *w, const uint8_t *d, uint64_t n);

#define JE_DATA(name, dt)                                                                          \
    static uint8_t *name(uint8_t *w, const uint8_t *d, uint64_t n)                                 \
    {                                                                                              \
        return data_generic(w, d, n, dt);                                                          \
    }
JE_DATA(data_bool, SELDON_DT_BOOL)
JE_DATA(data_u8, SELDON_DT_UINT8)
JE_DATA(data_u16, SELDON_DT_UINT16)
JE_DATA(data_u32, SELDON_DT_UINT32)
JE_DATA(data_u64, SELDON_DT_UINT64)
JE_DATA(data_i8, SELDON_DT_INT8)
JE_DATA(data_i16, SELDON_DT_INT16)
JE_DATA(data_i32, SELDON_DT_INT32)
JE_DATA(data_i64, SELDON_DT_INT64)
JE_DATA(data_f16, SELDON_DT_FP16)
JE_DATA(data_f32, SELDON_DT_FP32)
JE_DATA(data_f64, SELDON_DT_FP64)
#undef JE_DATA

static const data_fn je_data[13] = {NULL,     data_bool, data_u8,  data_u16, data_u32,
                                    data_u64, data_i8,   data_i16, data_i32, data_i64,
                                    data_f16, data_f32,  data_f64};

static int put_data_fixed(je *e, const sdn_tensor *t)
{
    size_t bound;
    uint8_t *w;
    int rc;

    if (!sdn_mul_size(&bound, (size_t)t->count, elem_bound(t->datatype)) ||
        !sdn_add_size(&bound, bound, 2))
        return sdn_error(SELDON_ENOMEM, "%s: data too large to encode", e->scope);
    rc = reserve(e, bound);
    if (rc < 0)
        return rc;
    w = e->out->data + e->out->len;
    w = je_data[t->datatype](w, t->data, t->count);
    e->out->len = (size_t)(w - e->out->data);
    return 0;
}

/* BYTES: measure (and validate) every element, reserve once, then write. */
static int put_data_bytes(je *e, const sdn_tensor *t, size_t ti)
{
    const uint8_t *d = t->data;
    size_t off, total = 2, elen;
    uint64_t k;
    uint32_t len;
    uint8_t *w;
    int rc;

    for (off = 0, k = 0; off < t->nbytes; k++) {
        if (t->nbytes - off < 4)
            goto malformed;
        memcpy(&len, d + off, 4);
        off += 4;
        if (len > t->nbytes - off)
            goto malformed;
        elen = esc_len(d + off, len);
        if (elen == SIZE_MAX)
            return sdn_error(SELDON_EDATATYPE,
                             "%s[%zu].data[%llu]: not valid UTF-8; ask for it as binary data",
                             e->scope, ti, (unsigned long long)k);
        if (!sdn_add_size(&total, total, elen + 3))
            return sdn_error(SELDON_ENOMEM, "%s[%zu].data: too large to encode", e->scope, ti);
        off += len;
    }
    rc = reserve(e, total);
    if (rc < 0)
        return rc;
    w = e->out->data + e->out->len;
    *w++ = '[';
    for (off = 0; off < t->nbytes;) {
        memcpy(&len, d + off, 4);
        off += 4;
        *w++ = '"';
        w = esc_write(w, d + off, len, esc_len(d + off, len));
        *w++ = '"';
        *w++ = ',';
        off += len;
    }
    if (t->nbytes)
        w[-1] = ']';
    else
        *w++ = ']';
    e->out->len = (size_t)(w - e->out->data);
    return 0;
malformed:
    return sdn_error(SELDON_EINTERNAL, "%s[%zu].data: malformed BYTES element at byte %zu",
                     e->scope, ti, off);
}

/* --- Tensors and the message -------------------------------------------- */

/* Whether a tensor has parameters to write, apart from a stale binary_data_size. */
static int has_params(const sdn_tensor *t)
{
    uint32_t i;
    for (i = 0; i < t->params.n; i++)
        if (!is_binary_size(&t->params.items[i]))
            return 1;
    return 0;
}

static int put_tensor(je *e, const sdn_tensor *t, size_t ti, int binary)
{
    const char *dtname;
    uint8_t *w;
    uint32_t i;
    int rc, first = 1;

    if (!sdn_dt_valid(t->datatype))
        return sdn_error(SELDON_EDATATYPE, "%s[%zu]: unknown datatype %d", e->scope, ti,
                         t->datatype);
    rc = PUT_LIT(e, "{\"name\":");
    if (rc == 0)
        rc = put_str(e, t->name, e->scope, ti, "name");
    if (rc < 0)
        return rc;
    dtname = seldon_datatype_name(t->datatype);
    /* ","datatype":"" + name + "","shape":[" + dims + "]" */
    rc = reserve(e, 40 + (size_t)t->ndim * 21);
    if (rc < 0)
        return rc;
    w = e->out->data + e->out->len;
    memcpy(w, ",\"datatype\":\"", 13);
    w += 13;
    memcpy(w, dtname, strlen(dtname));
    w += strlen(dtname);
    memcpy(w, "\",\"shape\":[", 11);
    w += 11;
    for (i = 0; i < t->ndim; i++) {
        if (i)
            *w++ = ',';
        w = fmt_i64(w, t->shape[i]);
    }
    *w++ = ']';
    e->out->len = (size_t)(w - e->out->data);

    if (binary || has_params(t)) {
        rc = PUT_LIT(e, ",\"parameters\":{");
        if (rc == 0)
            rc = put_params(e, &t->params, 1, e->scope, ti, &first);
        if (rc == 0 && binary) {
            rc = PUT_KEY(e, &first, "\"" SDN_JSON_BINARY_SIZE "\":");
            if (rc == 0)
                rc = reserve(e, 21);
            if (rc == 0) {
                w = fmt_u64(e->out->data + e->out->len, t->nbytes);
                e->out->len = (size_t)(w - e->out->data);
            }
        }
        if (rc == 0)
            rc = PUT_LIT(e, "}");
        if (rc < 0)
            return rc;
    }
    if (!binary) {
        rc = PUT_LIT(e, ",\"data\":");
        if (rc == 0)
            rc = t->datatype == SELDON_DT_BYTES ? put_data_bytes(e, t, ti) : put_data_fixed(e, t);
        if (rc < 0)
            return rc;
    }
    return PUT_LIT(e, "}");
}

static int put_outputs(je *e)
{
    const seldon_msg *msg = e->msg;
    uint32_t i;
    int rc = PUT_LIT(e, ",\"outputs\":[");

    for (i = 0; i < msg->noutputs && rc == 0; i++) {
        const sdn_output *o = &msg->outputs[i];
        int first = 1;
        rc = i ? PUT_LIT(e, ",{\"name\":") : PUT_LIT(e, "{\"name\":");
        if (rc == 0)
            rc = put_str(e, o->name, "outputs", i, "name");
        if (rc == 0 && o->params.n) {
            rc = PUT_LIT(e, ",\"parameters\":{");
            if (rc == 0)
                rc = put_params(e, &o->params, 0, "outputs", i, &first);
            if (rc == 0)
                rc = PUT_LIT(e, "}");
        }
        if (rc == 0)
            rc = PUT_LIT(e, "}");
    }
    return rc == 0 ? PUT_LIT(e, "]") : rc;
}

static int encode(je *e, uint32_t flags, int *any_binary)
{
    const seldon_msg *msg = e->msg;
    int req = msg->kind == SELDON_MSG_REQUEST, rc, first = 1;
    uint32_t i;

    rc = PUT_LIT(e, "{");
    if (rc == 0 && !req) {
        rc = PUT_LIT(e, "\"model_name\":");
        if (rc == 0)
            rc = put_str(e, msg->model_name, NULL, 0, "model_name");
        if (rc == 0 && msg->model_version.len) {
            rc = PUT_LIT(e, ",\"model_version\":");
            if (rc == 0)
                rc = put_str(e, msg->model_version, NULL, 0, "model_version");
        }
        first = 0;
    }
    if (rc == 0 && msg->id.len) {
        rc = PUT_KEY(e, &first, "\"id\":");
        if (rc == 0)
            rc = put_str(e, msg->id, NULL, 0, "id");
    }
    if (rc == 0 && msg->params.n) {
        int pfirst = 1;
        rc = PUT_KEY(e, &first, "\"parameters\":{");
        if (rc == 0)
            rc = put_params(e, &msg->params, 0, NULL, 0, &pfirst);
        if (rc == 0)
            rc = PUT_LIT(e, "}");
    }
    if (rc == 0)
        rc = req ? PUT_KEY(e, &first, "\"inputs\":[") : PUT_KEY(e, &first, "\"outputs\":[");
    for (i = 0; i < msg->ntensors && rc == 0; i++) {
        const sdn_tensor *t = &msg->tensors[i];
        int binary = (flags & SELDON_ENCODE_BINARY_ALL) || (t->flags & SDN_TENSOR_BINARY);
        *any_binary |= binary;
        if (i)
            rc = PUT_LIT(e, ",");
        if (rc == 0)
            rc = put_tensor(e, t, i, binary);
    }
    if (rc == 0)
        rc = PUT_LIT(e, "]");
    if (rc == 0 && req && msg->noutputs)
        rc = put_outputs(e);
    if (rc == 0)
        rc = PUT_LIT(e, "}");
    return rc;
}

int seldon_msg_encode_json(seldon_buf *out, size_t *json_len, const seldon_msg *msg, uint32_t flags)
{
    je e;
    size_t start, jl;
    uint32_t i;
    int rc, any_binary = 0;

    if (json_len != NULL)
        *json_len = 0;
    if (out == NULL || msg == NULL)
        return sdn_error(SELDON_EINVAL, "encode_json: NULL argument");
    start = out->len;
    e.out = out;
    e.msg = msg;
    e.scope = msg->kind == SELDON_MSG_REQUEST ? "inputs" : "outputs";
    rc = encode(&e, flags, &any_binary);
    if (rc < 0)
        goto fail;
    jl = out->len - start;
    for (i = 0; any_binary && i < msg->ntensors; i++) {
        const sdn_tensor *t = &msg->tensors[i];
        if (((flags & SELDON_ENCODE_BINARY_ALL) || (t->flags & SDN_TENSOR_BINARY)) && t->nbytes) {
            rc = sdn_buf_append(out, t->data, t->nbytes);
            if (rc < 0)
                goto fail;
        }
    }
    if (json_len != NULL)
        *json_len = jl;
    return 0;
fail:
    out->len = start;
    return rc;
}
