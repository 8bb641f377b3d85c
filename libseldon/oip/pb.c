/*
 * The gRPC protobuf codec: inference.ModelInferRequest / ModelInferResponse
 * through protobuf-c.
 *
 * Decoding unpacks into the message's arena (protobuf-c copies each bytes
 * field once, into memory we own and that is 16-byte aligned); tensors then
 * point at those bytes, and at typed repeated fields whose element size
 * matches the datatype, without a further copy. Encoding builds protobuf-c
 * structs that point at the tensors' data and packs them straight into the
 * output buffer.
 */
#include <stdio.h>
#include <string.h>

#include <protobuf-c/protobuf-c.h>

#include "grpc_predict_v2.pb-c.h"
#include "msg.h"
#include "util/jsonstr.h"

typedef Inference__ModelInferRequest pb_request;
typedef Inference__ModelInferResponse pb_response;
typedef Inference__InferParameter pb_param;
typedef Inference__InferTensorContents pb_contents;

/* protobuf-c reports every failure as NULL; the flag tells memory apart from malformed input. */
typedef struct pb_alloc_ctx {
    sdn_arena *arena;
    int failed;
} pb_alloc_ctx;

static void *arena_pb_alloc(void *data, size_t size)
{
    pb_alloc_ctx *ctx = data;
    void *p = sdn_arena_alloc(ctx->arena, size);
    if (p == NULL)
        ctx->failed = 1;
    return p;
}

static void arena_pb_free(void *data, void *ptr)
{
    /* Arena memory goes back all at once, when the message is reset or freed. */
    (void)data;
    (void)ptr;
}

static sdn_str cstr(const char *s)
{
    sdn_str r;
    r.p = s ? s : sdn_empty;
    r.len = s ? strlen(s) : 0;
    return r;
}

/* --- Decoding ----------------------------------------------------------- */

/*
 * Error messages name the failing field by its path ("inputs[1].shape[0]").
 * A path is formatted only once an error is certain: formatting them ahead,
 * for every tensor and field of every request, was most of the cost of
 * decoding a small one. Until then, a place is its parts (field name, index).
 */

/* A tensor's place: "inputs" (or "outputs") and "raw_input_contents" (...), both at index. */
typedef struct pb_loc {
    const char *what;
    const char *raw_what;
    size_t index;
} pb_loc;

#define LOC_FMT "%s[%zu]"
#define LOC_ARGS(l) (l)->what, (l)->index
#define RAW_ARGS(l) (l)->raw_what, (l)->index

/* "inputs[1]" or, with raw, "raw_input_contents[1]": for checks shared with JSON, which take a
 * path. */
static const char *loc_path(char *buf, size_t size, const pb_loc *l, int raw)
{
    snprintf(buf, size, LOC_FMT, raw ? l->raw_what : l->what, l->index);
    return buf;
}

/* A parameter's place: the message's own (scope NULL, no prefix) or "inputs[1]." and so on. */
static const char *param_prefix(char *buf, size_t size, const char *scope, size_t index)
{
    if (scope == NULL)
        return "";
    snprintf(buf, size, "%s[%zu].", scope, index);
    return buf;
}

static int param_from_pb(seldon_msg *msg, sdn_params *ps, const char *key, const pb_param *v,
                         const char *scope, size_t index)
{
    char path[48];
    sdn_param *p;
    if (v == NULL)
        return sdn_error(SELDON_EPARSE, "%sparameters.%s: no value",
                         param_prefix(path, sizeof(path), scope, index), key);
    if (ps->n >= SDN_MAX_PARAMS)
        return sdn_error(SELDON_ETOOBIG, "%sparameters: more than %d",
                         param_prefix(path, sizeof(path), scope, index), SDN_MAX_PARAMS);
    p = sdn_params_find(ps, key, strlen(key));
    if (p == NULL) {
        p = sdn_params_push(&msg->arena, ps);
        if (p == NULL)
            return sdn_error(SELDON_ENOMEM, "%sparameters: out of memory",
                             param_prefix(path, sizeof(path), scope, index));
    }
    p->name = cstr(key);
    p->s = cstr(NULL);
    switch (v->parameter_choice_case) {
    case INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_BOOL_PARAM:
        p->type = SELDON_PARAM_BOOL;
        p->b = v->bool_param != 0;
        break;
    case INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_INT64_PARAM:
        p->type = SELDON_PARAM_INT64;
        p->i = v->int64_param;
        break;
    case INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_STRING_PARAM:
        p->type = SELDON_PARAM_STRING;
        p->s = cstr(v->string_param);
        break;
    case INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_DOUBLE_PARAM:
        p->type = SELDON_PARAM_DOUBLE;
        p->d = v->double_param;
        break;
    case INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_UINT64_PARAM:
        if (v->uint64_param > (uint64_t)INT64_MAX)
            return sdn_error(SELDON_ERANGE, "%sparameters.%s: %llu does not fit an int64",
                             param_prefix(path, sizeof(path), scope, index), key,
                             (unsigned long long)v->uint64_param);
        p->type = SELDON_PARAM_INT64;
        p->i = (int64_t)v->uint64_param;
        break;
    default:
        return sdn_error(SELDON_EPARSE, "%sparameters.%s: no value",
                         param_prefix(path, sizeof(path), scope, index), key);
    }
    return 0;
}

/* Every generated map-entry type has the same key/value members; a macro spares five copies. */
#define PARAMS_FROM_PB(rc, msg, ps, n, entries, scope, index)                                      \
    do {                                                                                           \
        size_t pi_;                                                                                \
        for (pi_ = 0; (rc) == 0 && pi_ < (n); pi_++)                                               \
            (rc) = param_from_pb((msg), (ps), (entries)[pi_]->key, (entries)[pi_]->value, (scope), \
                                 (index));                                                         \
    } while (0)

/* Narrows a repeated int32/uint32 field into 1- or 2-byte elements, checking each value. */
static int narrow_ints(seldon_msg *msg, sdn_tensor *t, const void *src, int is_signed,
                       const pb_loc *loc, const char *field)
{
    size_t k, size = sdn_dt_size[t->datatype];
    int64_t lo, hi;
    uint8_t *dst = sdn_arena_alloc(&msg->arena, t->nbytes);
    if (dst == NULL && t->nbytes)
        return sdn_error(SELDON_ENOMEM, LOC_FMT ": out of memory", LOC_ARGS(loc));
    lo = is_signed ? -((int64_t)1 << (size * 8 - 1)) : 0;
    hi = is_signed ? ((int64_t)1 << (size * 8 - 1)) - 1 : ((int64_t)1 << (size * 8)) - 1;
    for (k = 0; k < t->count; k++) {
        int64_t v =
            is_signed ? (int64_t)((const int32_t *)src)[k] : (int64_t)((const uint32_t *)src)[k];
        if (v < lo || v > hi)
            return sdn_error(
                SELDON_ERANGE, LOC_FMT ".contents.%s[%zu]: %lld is out of range for %s",
                LOC_ARGS(loc), field, k, (long long)v, seldon_datatype_name(t->datatype));
        if (size == 1) {
            dst[k] = (uint8_t)v;
        } else {
            uint16_t h = (uint16_t)v;
            memcpy(dst + 2 * k, &h, 2);
        }
    }
    t->data = dst;
    return 0;
}

static int bytes_from_pb(seldon_msg *msg, sdn_tensor *t, const pb_contents *c, const pb_loc *loc)
{
    size_t k, total = 0;
    uint8_t *dst;
    for (k = 0; k < c->n_bytes_contents; k++) {
        if (c->bytes_contents[k].len > UINT32_MAX ||
            !sdn_add_size(&total, total, 4 + c->bytes_contents[k].len))
            return sdn_error(SELDON_ETOOBIG, LOC_FMT ".contents.bytes_contents[%zu]: too large",
                             LOC_ARGS(loc), k);
    }
    dst = sdn_arena_alloc(&msg->arena, total);
    if (dst == NULL && total)
        return sdn_error(SELDON_ENOMEM, LOC_FMT ": out of memory", LOC_ARGS(loc));
    t->data = dst;
    t->nbytes = total;
    for (k = 0; k < c->n_bytes_contents; k++) {
        uint32_t len = (uint32_t)c->bytes_contents[k].len;
        memcpy(dst, &len, 4);
        if (len)
            memcpy(dst + 4, c->bytes_contents[k].data, len);
        dst += 4 + len;
    }
    return 0;
}

/* Which typed field carries each datatype, and how many values each field holds. */
static size_t contents_count(const pb_contents *c, int32_t dt)
{
    switch (dt) {
    case SELDON_DT_BOOL:
        return c->n_bool_contents;
    case SELDON_DT_INT8:
    case SELDON_DT_INT16:
    case SELDON_DT_INT32:
        return c->n_int_contents;
    case SELDON_DT_INT64:
        return c->n_int64_contents;
    case SELDON_DT_UINT8:
    case SELDON_DT_UINT16:
    case SELDON_DT_UINT32:
        return c->n_uint_contents;
    case SELDON_DT_UINT64:
        return c->n_uint64_contents;
    case SELDON_DT_FP32:
        return c->n_fp32_contents;
    case SELDON_DT_FP64:
        return c->n_fp64_contents;
    case SELDON_DT_BYTES:
        return c->n_bytes_contents;
    default:
        return 0;
    }
}

static const char *contents_field(int32_t dt)
{
    switch (dt) {
    case SELDON_DT_BOOL:
        return "bool_contents";
    case SELDON_DT_INT8:
    case SELDON_DT_INT16:
    case SELDON_DT_INT32:
        return "int_contents";
    case SELDON_DT_INT64:
        return "int64_contents";
    case SELDON_DT_UINT8:
    case SELDON_DT_UINT16:
    case SELDON_DT_UINT32:
        return "uint_contents";
    case SELDON_DT_UINT64:
        return "uint64_contents";
    case SELDON_DT_FP32:
        return "fp32_contents";
    case SELDON_DT_FP64:
        return "fp64_contents";
    case SELDON_DT_BYTES:
        return "bytes_contents";
    default:
        return NULL;
    }
}

static size_t contents_total(const pb_contents *c)
{
    return c->n_bool_contents + c->n_int_contents + c->n_int64_contents + c->n_uint_contents +
           c->n_uint64_contents + c->n_fp32_contents + c->n_fp64_contents + c->n_bytes_contents;
}

static int contents_from_pb(seldon_msg *msg, sdn_tensor *t, const pb_contents *c, const pb_loc *loc)
{
    size_t total = contents_total(c);
    const char *field = contents_field(t->datatype);
    size_t n;

    if (field == NULL) {
        if (total == 0 && t->count == 0)
            return 0;
        return sdn_error(SELDON_EDATATYPE,
                         LOC_FMT ".contents: %s has no typed contents field; send raw contents",
                         LOC_ARGS(loc), seldon_datatype_name(t->datatype));
    }
    n = contents_count(c, t->datatype);
    if (n != total)
        return sdn_error(SELDON_EDATATYPE,
                         LOC_FMT ".contents: a %s tensor takes its data from %s alone",
                         LOC_ARGS(loc), seldon_datatype_name(t->datatype), field);
    if (n != t->count)
        return sdn_error(SELDON_ESHAPE,
                         LOC_FMT ".contents.%s: %zu elements, but the shape holds %llu",
                         LOC_ARGS(loc), field, n, (unsigned long long)t->count);
    if (t->datatype == SELDON_DT_BYTES)
        return bytes_from_pb(msg, t, c, loc);
    t->nbytes = (size_t)t->count * sdn_dt_size[t->datatype];
    switch (t->datatype) {
    case SELDON_DT_BOOL: {
        size_t k;
        uint8_t *dst = sdn_arena_alloc(&msg->arena, t->nbytes);
        if (dst == NULL && t->nbytes)
            return sdn_error(SELDON_ENOMEM, LOC_FMT ": out of memory", LOC_ARGS(loc));
        for (k = 0; k < n; k++)
            dst[k] = c->bool_contents[k] != 0;
        t->data = dst;
        return 0;
    }
    case SELDON_DT_INT8:
    case SELDON_DT_INT16:
        return narrow_ints(msg, t, c->int_contents, 1, loc, field);
    case SELDON_DT_UINT8:
    case SELDON_DT_UINT16:
        return narrow_ints(msg, t, c->uint_contents, 0, loc, field);
    case SELDON_DT_INT32:
        t->data = (uint8_t *)c->int_contents;
        return 0;
    case SELDON_DT_INT64:
        t->data = (uint8_t *)c->int64_contents;
        return 0;
    case SELDON_DT_UINT32:
        t->data = (uint8_t *)c->uint_contents;
        return 0;
    case SELDON_DT_UINT64:
        t->data = (uint8_t *)c->uint64_contents;
        return 0;
    case SELDON_DT_FP32:
        t->data = (uint8_t *)c->fp32_contents;
        return 0;
    case SELDON_DT_FP64:
        t->data = (uint8_t *)c->fp64_contents;
        return 0;
    default:
        return sdn_error(SELDON_EINTERNAL, LOC_FMT ": unhandled datatype", LOC_ARGS(loc));
    }
}

/*
 * Fills t from one input/output tensor of either message. raw is that
 * tensor's raw contents entry, or NULL when the message sends typed contents.
 * The checks shared with JSON take a formatted path; they are pure, so on
 * failure they run again with the path, and a success formats nothing.
 */
static int tensor_from_pb(seldon_msg *msg, sdn_tensor *t, const pb_loc *loc, const char *name,
                          const char *datatype, size_t n_shape, int64_t *shape,
                          const pb_contents *contents, const ProtobufCBinaryData *raw)
{
    char path[48];
    t->name = cstr(name);
    t->datatype = seldon_datatype_from_name(datatype, strlen(datatype));
    if (t->datatype == SELDON_DT_INVALID)
        return sdn_error(SELDON_EDATATYPE, LOC_FMT ".datatype: unknown datatype \"%.64s\"",
                         LOC_ARGS(loc), datatype);
    if (n_shape > SDN_MAX_NDIM)
        return sdn_error(SELDON_ETOOBIG, LOC_FMT ".shape: %zu dimensions, at most %d",
                         LOC_ARGS(loc), n_shape, SDN_MAX_NDIM);
    t->ndim = (uint32_t)n_shape;
    t->shape = shape;
    if (sdn_shape_count(&t->count, shape, t->ndim, "") < 0)
        return sdn_shape_count(&t->count, shape, t->ndim, loc_path(path, sizeof(path), loc, 0));
    if (raw == NULL) {
        if (contents == NULL) {
            if (t->count == 0 && t->datatype != SELDON_DT_INVALID)
                return 0;
            return sdn_error(SELDON_EPARSE, LOC_FMT ": no data: neither contents nor " LOC_FMT,
                             LOC_ARGS(loc), RAW_ARGS(loc));
        }
        return contents_from_pb(msg, t, contents, loc);
    }
    if (contents != NULL && contents_total(contents) > 0)
        return sdn_error(SELDON_EPARSE, LOC_FMT ".contents: data given both typed and in " LOC_FMT,
                         LOC_ARGS(loc), RAW_ARGS(loc));
    t->data = raw->data;
    t->nbytes = raw->len;
    if (t->datatype == SELDON_DT_BYTES) {
        if (sdn_bytes_check(raw->data, raw->len, t->count, "") < 0)
            return sdn_bytes_check(raw->data, raw->len, t->count,
                                   loc_path(path, sizeof(path), loc, 1));
        return 0;
    }
    if (t->datatype == SELDON_DT_BOOL && sdn_bool_check(raw->data, raw->len, "") < 0) {
        sdn_bool_check(raw->data, raw->len, loc_path(path, sizeof(path), loc, 1));
        return SELDON_ERANGE;
    }
    if ((uint64_t)raw->len != t->count * sdn_dt_size[t->datatype])
        return sdn_error(SELDON_ESHAPE,
                         LOC_FMT ": %zu bytes, but " LOC_FMT " (%llu x %s) needs %llu",
                         RAW_ARGS(loc), raw->len, LOC_ARGS(loc), (unsigned long long)t->count,
                         seldon_datatype_name(t->datatype),
                         (unsigned long long)(t->count * sdn_dt_size[t->datatype]));
    return 0;
}

#define TENSORS_FROM_PB(rc, msg, n, items, raws, n_raws, what, raw_what)                           \
    do {                                                                                           \
        pb_loc loc_ = {what, raw_what, 0};                                                         \
        for (; (rc) == 0 && loc_.index < (n); loc_.index++) {                                      \
            size_t ti_ = loc_.index;                                                               \
            sdn_tensor *t_ = sdn_msg_push_tensor(msg);                                             \
            if (t_ == NULL) {                                                                      \
                (rc) = sdn_error(SELDON_ENOMEM, what ": out of memory");                           \
                break;                                                                             \
            }                                                                                      \
            (rc) = tensor_from_pb((msg), t_, &loc_, (items)[ti_]->name, (items)[ti_]->datatype,    \
                                  (items)[ti_]->n_shape, (items)[ti_]->shape,                      \
                                  (items)[ti_]->contents, (n_raws) ? &(raws)[ti_] : NULL);         \
            if ((rc) == 0)                                                                         \
                PARAMS_FROM_PB(rc, msg, &t_->params, (items)[ti_]->n_parameters,                   \
                               (items)[ti_]->parameters, what, ti_);                               \
        }                                                                                          \
    } while (0)

static int check_raw_count(size_t n_raw, size_t n_tensors, const char *raw_what, const char *what)
{
    if (n_raw != 0 && n_raw != n_tensors)
        return sdn_error(SELDON_EPARSE, "%s: %zu entries for %zu %s; give one per tensor or none",
                         raw_what, n_raw, n_tensors, what);
    if (n_tensors > SDN_MAX_TENSORS)
        return sdn_error(SELDON_ETOOBIG, "%s: %zu tensors, at most %d", what, n_tensors,
                         SDN_MAX_TENSORS);
    return 0;
}

static int decode_request(seldon_msg *msg, const pb_request *r)
{
    int rc = check_raw_count(r->n_raw_input_contents, r->n_inputs, "raw_input_contents", "inputs");
    size_t i;
    if (rc < 0)
        return rc;
    msg->model_name = cstr(r->model_name);
    msg->model_version = cstr(r->model_version);
    msg->id = cstr(r->id);
    PARAMS_FROM_PB(rc, msg, &msg->params, r->n_parameters, r->parameters, NULL, 0);
    TENSORS_FROM_PB(rc, msg, r->n_inputs, r->inputs, r->raw_input_contents, r->n_raw_input_contents,
                    "inputs", "raw_input_contents");
    for (i = 0; rc == 0 && i < r->n_outputs; i++) {
        sdn_output *o = sdn_msg_push_output(msg);
        if (o == NULL)
            return sdn_error(SELDON_ENOMEM, "outputs: out of memory");
        o->name = cstr(r->outputs[i]->name);
        PARAMS_FROM_PB(rc, msg, &o->params, r->outputs[i]->n_parameters, r->outputs[i]->parameters,
                       "outputs", i);
    }
    return rc;
}

static int decode_response(seldon_msg *msg, const pb_response *r)
{
    int rc =
        check_raw_count(r->n_raw_output_contents, r->n_outputs, "raw_output_contents", "outputs");
    if (rc < 0)
        return rc;
    msg->model_name = cstr(r->model_name);
    msg->model_version = cstr(r->model_version);
    msg->id = cstr(r->id);
    PARAMS_FROM_PB(rc, msg, &msg->params, r->n_parameters, r->parameters, NULL, 0);
    TENSORS_FROM_PB(rc, msg, r->n_outputs, r->outputs, r->raw_output_contents,
                    r->n_raw_output_contents, "outputs", "raw_output_contents");
    return rc;
}

/*
 * proto3 requires string fields to be UTF-8, and protobuf-c neither checks
 * that nor keeps a string's length: "add10\0evil" would arrive as "add10".
 * So, once protobuf-c has accepted the message, its wire form is walked with
 * the generated descriptors and every string field (model name, version, id,
 * tensor and output names, datatypes, parameter keys and text) is checked:
 * well-formed UTF-8 (RFC 3629) and no NUL, refused naming the field, with the
 * same wording as the JSON decoder.
 */
#define PB_WALK_DEPTH 8

typedef struct pb_cursor {
    const uint8_t *p, *end;
} pb_cursor;

static int pb_varint(pb_cursor *c, uint64_t *out)
{
    uint64_t v = 0;
    unsigned shift;
    for (shift = 0; shift < 64 && c->p < c->end; shift += 7) {
        uint8_t b = *c->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

/*
 * The walk's place: one frame per field entered, linked up to the message
 * at the root. The path ("inputs[1].parameters[0].key") is formatted from the
 * frames only when a string is refused.
 */
typedef struct pb_frame {
    const struct pb_frame *up;
    const ProtobufCFieldDescriptor *field;
    uint32_t index; /* the occurrence of a repeated field */
} pb_frame;

#define PB_PATH_MAX 160

/* Writes the path of frame f into buf, cut at size - 1 bytes as snprintf cuts. */
static void frame_path(char *buf, size_t size, const pb_frame *f)
{
    const pb_frame *chain[PB_WALK_DEPTH + 1];
    size_t n = 0, used = 0;
    for (; f != NULL && n < PB_WALK_DEPTH + 1; f = f->up)
        chain[n++] = f;
    buf[0] = '\0';
    while (n-- > 0 && used + 1 < size) {
        const ProtobufCFieldDescriptor *fd = chain[n]->field;
        int w = fd->label == PROTOBUF_C_LABEL_REPEATED
                    ? snprintf(buf + used, size - used, "%s%s[%u]", used ? "." : "", fd->name,
                               chain[n]->index)
                    : snprintf(buf + used, size - used, "%s%s", used ? "." : "", fd->name);
        if (w < 0)
            break;
        used = (size_t)w < size - used ? used + (size_t)w : size - 1;
    }
}

static int check_pb_string(const uint8_t *s, size_t len, const pb_frame *where)
{
    const uint8_t *p = s, *end = s + len;
    char path[PB_PATH_MAX];
    while (p < end) {
        if (*p == 0) {
            frame_path(path, sizeof(path), where);
            return sdn_error(SELDON_EPARSE,
                             "%s: at byte %zu: a NUL byte is not allowed in this "
                             "string",
                             path, (size_t)(p - s));
        }
        if (*p < 0x80) {
            p++;
            continue;
        }
        {
            size_t n = sdn_utf8_seq(p, end);
            if (n == 0) {
                frame_path(path, sizeof(path), where);
                return sdn_error(SELDON_EPARSE, "%s: at byte %zu: invalid UTF-8", path,
                                 (size_t)(p - s));
            }
            p += n;
        }
    }
    return 0;
}

static int walk_pb(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
                   const pb_frame *up, int depth)
{
    pb_cursor c = {buf, buf + len};
    uint32_t counts[32] = {0};
    pb_frame here;
    here.up = up;
    while (c.p < c.end) {
        uint64_t key, n = 0;
        const ProtobufCFieldDescriptor *f;
        unsigned wire;
        if (pb_varint(&c, &key) < 0)
            return 0; /* protobuf-c accepted it: nothing more to say */
        wire = (unsigned)(key & 7);
        if (wire == 0) {
            if (pb_varint(&c, &n) < 0)
                return 0;
            continue;
        }
        if (wire == 1 || wire == 5) {
            size_t w = wire == 1 ? 8 : 4;
            if ((size_t)(c.end - c.p) < w)
                return 0;
            c.p += w;
            continue;
        }
        if (wire != 2 || pb_varint(&c, &n) < 0 || n > (uint64_t)(c.end - c.p))
            return 0;
        f = key >> 3 <= UINT32_MAX
                ? protobuf_c_message_descriptor_get_field(desc, (unsigned)(key >> 3))
                : NULL;
        if (f != NULL && (f->type == PROTOBUF_C_TYPE_STRING ||
                          (f->type == PROTOBUF_C_TYPE_MESSAGE && depth < PB_WALK_DEPTH))) {
            size_t fi = (size_t)(f - desc->fields);
            int rc;
            here.field = f;
            here.index = fi < 32 ? counts[fi] : 0;
            if (fi < 32)
                counts[fi]++;
            if (f->type == PROTOBUF_C_TYPE_STRING)
                rc = check_pb_string(c.p, (size_t)n, &here);
            else
                rc = walk_pb(f->descriptor, c.p, (size_t)n, &here, depth + 1);
            if (rc < 0)
                return rc;
        }
        c.p += n;
    }
    return 0;
}

int seldon_pb_check_strings(const void *buf, size_t len, const char *type_name)
{
    static const ProtobufCMessageDescriptor *const types[] = {
        &inference__server_live_request__descriptor,
        &inference__server_ready_request__descriptor,
        &inference__model_ready_request__descriptor,
        &inference__server_metadata_request__descriptor,
        &inference__model_metadata_request__descriptor,
        &inference__model_metadata_response__descriptor,
        &inference__model_infer_request__descriptor,
        &inference__model_infer_response__descriptor,
        &inference__model_stream_infer_response__descriptor,
        &inference__repository_index_request__descriptor,
        &inference__repository_index_response__descriptor,
        &inference__repository_model_load_request__descriptor,
        &inference__repository_model_unload_request__descriptor,
    };
    size_t i;
    if ((buf == NULL && len > 0) || type_name == NULL)
        return sdn_error(SELDON_EINVAL, "pb_check_strings: NULL argument");
    for (i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (strcmp(types[i]->name, type_name) == 0)
            return walk_pb(types[i], buf, len, NULL, 0);
    return sdn_error(SELDON_ENOTFOUND, "pb_check_strings: unknown message type %.64s", type_name);
}

static int unpack_failed(const pb_alloc_ctx *ctx, const char *type, size_t len)
{
    if (ctx->failed)
        return sdn_error(SELDON_ENOMEM, "protobuf: out of memory decoding %s", type);
    return sdn_error(SELDON_EPARSE, "protobuf: not a valid %s (%zu bytes)", type, len);
}

int seldon_msg_decode_pb(seldon_msg *msg, const void *buf, size_t len, uint32_t flags)
{
    ProtobufCAllocator alloc;
    pb_alloc_ctx ctx;
    int rc;
    (void)flags;

    if (msg == NULL || (buf == NULL && len != 0))
        return sdn_error(SELDON_EINVAL, "decode_pb: NULL argument");
    sdn_msg_clear(msg);
    ctx.arena = &msg->arena;
    ctx.failed = 0;
    alloc.alloc = arena_pb_alloc;
    alloc.free = arena_pb_free;
    alloc.allocator_data = &ctx;
    if (msg->kind == SELDON_MSG_REQUEST) {
        pb_request *r = inference__model_infer_request__unpack(&alloc, len, buf);
        rc = r ? walk_pb(&inference__model_infer_request__descriptor, buf, len, NULL, 0)
               : unpack_failed(&ctx, "inference.ModelInferRequest", len);
        if (rc == 0)
            rc = decode_request(msg, r);
    } else {
        pb_response *r = inference__model_infer_response__unpack(&alloc, len, buf);
        rc = r ? walk_pb(&inference__model_infer_response__descriptor, buf, len, NULL, 0)
               : unpack_failed(&ctx, "inference.ModelInferResponse", len);
        if (rc == 0)
            rc = decode_response(msg, r);
    }
    if (rc < 0)
        sdn_msg_clear(msg);
    return rc;
}

/* --- Encoding ----------------------------------------------------------- */

/*
 * Scratch space for the protobuf-c structs that describe the message while
 * it is packed. A local arena: nothing outlives the call.
 */
typedef struct enc_ctx {
    sdn_arena arena;
    uint32_t flags;
} enc_ctx;

static void *enc_alloc(enc_ctx *e, size_t size)
{
    return sdn_arena_alloc(&e->arena, size);
}

static pb_param *param_to_pb(enc_ctx *e, const sdn_param *p)
{
    pb_param *v = enc_alloc(e, sizeof(*v));
    pb_param init = INFERENCE__INFER_PARAMETER__INIT;
    if (v == NULL)
        return NULL;
    *v = init;
    switch (p->type) {
    case SELDON_PARAM_BOOL:
        v->parameter_choice_case = INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_BOOL_PARAM;
        v->bool_param = p->b;
        break;
    case SELDON_PARAM_INT64:
        v->parameter_choice_case = INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_INT64_PARAM;
        v->int64_param = p->i;
        break;
    case SELDON_PARAM_DOUBLE:
        v->parameter_choice_case = INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_DOUBLE_PARAM;
        v->double_param = p->d;
        break;
    default:
        v->parameter_choice_case = INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_STRING_PARAM;
        v->string_param = (char *)(uintptr_t)p->s.p;
        break;
    }
    return v;
}

/* Builds the entries array of any generated map type from a parameter list. */
#define PARAMS_TO_PB(ok, e, ps, entry_type, entry_init, n_out, out)                                \
    do {                                                                                           \
        uint32_t pi_;                                                                              \
        entry_type **arr_ = NULL;                                                                  \
        (n_out) = 0;                                                                               \
        if ((ps)->n == 0)                                                                          \
            break;                                                                                 \
        arr_ = enc_alloc((e), (ps)->n * (sizeof(entry_type *) + sizeof(entry_type)));              \
        if (arr_ == NULL) {                                                                        \
            (ok) = 0;                                                                              \
            break;                                                                                 \
        }                                                                                          \
        for (pi_ = 0; pi_ < (ps)->n; pi_++) {                                                      \
            entry_type *ent_ = (entry_type *)(void *)(arr_ + (ps)->n) + pi_;                       \
            entry_init(ent_);                                                                      \
            ent_->key = (char *)(uintptr_t)(ps)->items[pi_].name.p;                                \
            ent_->value = param_to_pb((e), &(ps)->items[pi_]);                                     \
            if (ent_->value == NULL) {                                                             \
                (ok) = 0;                                                                          \
                break;                                                                             \
            }                                                                                      \
            arr_[pi_] = ent_;                                                                      \
        }                                                                                          \
        (n_out) = (ps)->n;                                                                         \
        (out) = arr_;                                                                              \
    } while (0)

static void *widen(enc_ctx *e, const sdn_tensor *t, size_t out_size)
{
    size_t k;
    uint8_t *dst = enc_alloc(e, (size_t)t->count * out_size);
    if (dst == NULL)
        return NULL;
    for (k = 0; k < t->count; k++) {
        int32_t v;
        switch (t->datatype) {
        case SELDON_DT_BOOL:
        case SELDON_DT_UINT8:
            v = t->data[k];
            break;
        case SELDON_DT_INT8:
            v = (int8_t)t->data[k];
            break;
        case SELDON_DT_UINT16: {
            uint16_t h;
            memcpy(&h, t->data + 2 * k, 2);
            v = h;
            break;
        }
        default: {
            int16_t h;
            memcpy(&h, t->data + 2 * k, 2);
            v = h;
            break;
        }
        }
        memcpy(dst + k * out_size, &v, out_size);
    }
    return dst;
}

static int contents_to_pb(enc_ctx *e, pb_contents **out, const sdn_tensor *t, const char *what,
                          size_t index)
{
    pb_contents init = INFERENCE__INFER_TENSOR_CONTENTS__INIT;
    pb_contents *c = enc_alloc(e, sizeof(*c));
    size_t n = (size_t)t->count;
    if (c == NULL)
        goto nomem;
    *c = init;
    switch (t->datatype) {
    case SELDON_DT_BOOL:
        c->n_bool_contents = n;
        c->bool_contents = widen(e, t, sizeof(protobuf_c_boolean));
        if (c->bool_contents == NULL && n)
            goto nomem;
        break;
    case SELDON_DT_INT8:
    case SELDON_DT_INT16:
        c->n_int_contents = n;
        c->int_contents = widen(e, t, sizeof(int32_t));
        if (c->int_contents == NULL && n)
            goto nomem;
        break;
    case SELDON_DT_UINT8:
    case SELDON_DT_UINT16:
        c->n_uint_contents = n;
        c->uint_contents = widen(e, t, sizeof(uint32_t));
        if (c->uint_contents == NULL && n)
            goto nomem;
        break;
    case SELDON_DT_INT32:
        c->n_int_contents = n;
        c->int_contents = (int32_t *)(void *)t->data;
        break;
    case SELDON_DT_INT64:
        c->n_int64_contents = n;
        c->int64_contents = (int64_t *)(void *)t->data;
        break;
    case SELDON_DT_UINT32:
        c->n_uint_contents = n;
        c->uint_contents = (uint32_t *)(void *)t->data;
        break;
    case SELDON_DT_UINT64:
        c->n_uint64_contents = n;
        c->uint64_contents = (uint64_t *)(void *)t->data;
        break;
    case SELDON_DT_FP32:
        c->n_fp32_contents = n;
        c->fp32_contents = (float *)(void *)t->data;
        break;
    case SELDON_DT_FP64:
        c->n_fp64_contents = n;
        c->fp64_contents = (double *)(void *)t->data;
        break;
    case SELDON_DT_BYTES: {
        size_t off = 0, k;
        c->bytes_contents = enc_alloc(e, n * sizeof(ProtobufCBinaryData));
        if (c->bytes_contents == NULL && n)
            goto nomem;
        for (k = 0; k < n; k++) {
            uint32_t len;
            memcpy(&len, t->data + off, 4);
            c->bytes_contents[k].len = len;
            c->bytes_contents[k].data = t->data + off + 4;
            off += 4 + (size_t)len;
        }
        c->n_bytes_contents = n;
        break;
    }
    default:
        return sdn_error(SELDON_EUNSUPPORTED,
                         "%s[%zu]: %s has no typed contents field; encode raw contents", what,
                         index, seldon_datatype_name(t->datatype));
    }
    *out = c;
    return 0;
nomem:
    return sdn_error(SELDON_ENOMEM, "%s[%zu]: out of memory", what, index);
}

#define TENSORS_TO_PB(rc, e, msg, tensor_type, tensor_init, entry_type, entry_init, items, raws,   \
                      n_raws, what)                                                                \
    do {                                                                                           \
        uint32_t ti_;                                                                              \
        int typed_ = ((e)->flags & SELDON_ENCODE_PB_TYPED) != 0;                                   \
        (items) = enc_alloc((e), (msg)->ntensors * (sizeof(tensor_type *) + sizeof(tensor_type))); \
        if (!typed_)                                                                               \
            (raws) = enc_alloc((e), (msg)->ntensors * sizeof(ProtobufCBinaryData));                \
        if ((items) == NULL || (!typed_ && (raws) == NULL)) {                                      \
            (rc) = sdn_error(SELDON_ENOMEM, what ": out of memory");                               \
            break;                                                                                 \
        }                                                                                          \
        for (ti_ = 0; (rc) == 0 && ti_ < (msg)->ntensors; ti_++) {                                 \
            const sdn_tensor *t_ = &(msg)->tensors[ti_];                                           \
            tensor_type *pt_ = (tensor_type *)(void *)((items) + (msg)->ntensors) + ti_;           \
            int ok_ = 1;                                                                           \
            tensor_init(pt_);                                                                      \
            pt_->name = (char *)(uintptr_t)t_->name.p;                                             \
            pt_->datatype = (char *)(uintptr_t)seldon_datatype_name(t_->datatype);                 \
            pt_->n_shape = t_->ndim;                                                               \
            pt_->shape = t_->shape;                                                                \
            PARAMS_TO_PB(ok_, e, &t_->params, entry_type, entry_init, pt_->n_parameters,           \
                         pt_->parameters);                                                         \
            if (!ok_) {                                                                            \
                (rc) = sdn_error(SELDON_ENOMEM, what ": out of memory");                           \
                break;                                                                             \
            }                                                                                      \
            if (typed_) {                                                                          \
                (rc) = contents_to_pb((e), &pt_->contents, t_, what, ti_);                         \
            } else {                                                                               \
                (raws)[ti_].len = t_->nbytes;                                                      \
                (raws)[ti_].data = t_->data;                                                       \
            }                                                                                      \
            (items)[ti_] = pt_;                                                                    \
        }                                                                                          \
        (n_raws) = typed_ ? 0 : (msg)->ntensors;                                                   \
    } while (0)

static int encode_request(enc_ctx *e, seldon_buf *out, const seldon_msg *msg)
{
    pb_request r = INFERENCE__MODEL_INFER_REQUEST__INIT;
    int rc = 0, ok = 1;
    size_t size;
    uint32_t i;

    r.model_name = (char *)(uintptr_t)msg->model_name.p;
    r.model_version = (char *)(uintptr_t)msg->model_version.p;
    r.id = (char *)(uintptr_t)msg->id.p;
    PARAMS_TO_PB(ok, e, &msg->params, Inference__ModelInferRequest__ParametersEntry,
                 inference__model_infer_request__parameters_entry__init, r.n_parameters,
                 r.parameters);
    if (!ok)
        return sdn_error(SELDON_ENOMEM, "parameters: out of memory");
    r.n_inputs = msg->ntensors;
    if (msg->ntensors)
        TENSORS_TO_PB(rc, e, msg, Inference__ModelInferRequest__InferInputTensor,
                      inference__model_infer_request__infer_input_tensor__init,
                      Inference__ModelInferRequest__InferInputTensor__ParametersEntry,
                      inference__model_infer_request__infer_input_tensor__parameters_entry__init,
                      r.inputs, r.raw_input_contents, r.n_raw_input_contents, "inputs");
    if (rc < 0)
        return rc;
    if (msg->noutputs) {
        typedef Inference__ModelInferRequest__InferRequestedOutputTensor out_t;
        out_t **outs = enc_alloc(e, msg->noutputs * (sizeof(out_t *) + sizeof(out_t)));
        if (outs == NULL)
            return sdn_error(SELDON_ENOMEM, "outputs: out of memory");
        for (i = 0; i < msg->noutputs; i++) {
            out_t init = INFERENCE__MODEL_INFER_REQUEST__INFER_REQUESTED_OUTPUT_TENSOR__INIT;
            out_t *o = (out_t *)(void *)(outs + msg->noutputs) + i;
            *o = init;
            o->name = (char *)(uintptr_t)msg->outputs[i].name.p;
            PARAMS_TO_PB(
                ok, e, &msg->outputs[i].params,
                Inference__ModelInferRequest__InferRequestedOutputTensor__ParametersEntry,
                inference__model_infer_request__infer_requested_output_tensor__parameters_entry__init,
                o->n_parameters, o->parameters);
            if (!ok)
                return sdn_error(SELDON_ENOMEM, "outputs: out of memory");
            outs[i] = o;
        }
        r.n_outputs = msg->noutputs;
        r.outputs = outs;
    }
    size = inference__model_infer_request__get_packed_size(&r);
    rc = sdn_buf_reserve(out, size);
    if (rc < 0)
        return rc;
    out->len += inference__model_infer_request__pack(&r, out->data + out->len);
    return 0;
}

static int encode_response(enc_ctx *e, seldon_buf *out, const seldon_msg *msg)
{
    pb_response r = INFERENCE__MODEL_INFER_RESPONSE__INIT;
    int rc = 0, ok = 1;
    size_t size;

    r.model_name = (char *)(uintptr_t)msg->model_name.p;
    r.model_version = (char *)(uintptr_t)msg->model_version.p;
    r.id = (char *)(uintptr_t)msg->id.p;
    PARAMS_TO_PB(ok, e, &msg->params, Inference__ModelInferResponse__ParametersEntry,
                 inference__model_infer_response__parameters_entry__init, r.n_parameters,
                 r.parameters);
    if (!ok)
        return sdn_error(SELDON_ENOMEM, "parameters: out of memory");
    r.n_outputs = msg->ntensors;
    if (msg->ntensors)
        TENSORS_TO_PB(rc, e, msg, Inference__ModelInferResponse__InferOutputTensor,
                      inference__model_infer_response__infer_output_tensor__init,
                      Inference__ModelInferResponse__InferOutputTensor__ParametersEntry,
                      inference__model_infer_response__infer_output_tensor__parameters_entry__init,
                      r.outputs, r.raw_output_contents, r.n_raw_output_contents, "outputs");
    if (rc < 0)
        return rc;
    size = inference__model_infer_response__get_packed_size(&r);
    rc = sdn_buf_reserve(out, size);
    if (rc < 0)
        return rc;
    out->len += inference__model_infer_response__pack(&r, out->data + out->len);
    return 0;
}

int seldon_msg_encode_pb(seldon_buf *out, const seldon_msg *msg, uint32_t flags)
{
    _Alignas(16) uint8_t scratch[4096];
    enc_ctx e;
    int rc;

    if (out == NULL || msg == NULL)
        return sdn_error(SELDON_EINVAL, "encode_pb: NULL argument");
    sdn_arena_init(&e.arena, scratch, sizeof(scratch));
    e.flags = flags;
    if (msg->kind == SELDON_MSG_REQUEST)
        rc = encode_request(&e, out, msg);
    else
        rc = encode_response(&e, out, msg);
    sdn_arena_release(&e.arena);
    return rc;
}
