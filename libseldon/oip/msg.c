#include <string.h>

#include "msg.h"

const char sdn_empty[] = "";

const uint8_t sdn_dt_size[14] = {0, 1, 1, 2, 4, 8, 1, 2, 4, 8, 2, 4, 8, 0};

static const char *const dt_names[14] = {"INVALID", "BOOL", "UINT8", "UINT16", "UINT32",
                                         "UINT64",  "INT8", "INT16", "INT32",  "INT64",
                                         "FP16",    "FP32", "FP64",  "BYTES"};

const char *seldon_datatype_name(int32_t datatype)
{
    return sdn_dt_valid(datatype) ? dt_names[datatype] : dt_names[0];
}

/* Every decoded tensor names its datatype: lengths first, so most names cost no comparison. */
static const uint8_t dt_name_len[14] = {7, 4, 5, 6, 6, 6, 4, 5, 5, 5, 4, 4, 4, 5};

int32_t seldon_datatype_from_name(const char *name, size_t len)
{
    int32_t dt;
    if (name == NULL)
        return SELDON_DT_INVALID;
    for (dt = SELDON_DT_BOOL; dt <= SELDON_DT_BYTES; dt++)
        if (dt_name_len[dt] == len && dt_names[dt][0] == name[0] &&
            memcmp(dt_names[dt], name, len) == 0)
            return dt;
    return SELDON_DT_INVALID;
}

size_t seldon_datatype_size(int32_t datatype)
{
    return sdn_dt_valid(datatype) ? sdn_dt_size[datatype] : 0;
}

static int kind_valid(int32_t kind)
{
    return kind == SELDON_MSG_REQUEST || kind == SELDON_MSG_RESPONSE;
}

static void msg_init_fields(seldon_msg *msg, int32_t kind)
{
    msg->kind = kind;
    msg->id.p = msg->model_name.p = msg->model_version.p = sdn_empty;
    msg->id.len = msg->model_name.len = msg->model_version.len = 0;
    memset(&msg->params, 0, sizeof(msg->params));
    msg->tensors = NULL;
    msg->ntensors = msg->tensors_cap = 0;
    msg->outputs = NULL;
    msg->noutputs = msg->outputs_cap = 0;
}

int seldon_msg_new(seldon_msg **out, int32_t kind)
{
    seldon_msg *msg;
    if (out == NULL)
        return sdn_error(SELDON_EINVAL, "out: NULL");
    *out = NULL;
    if (!kind_valid(kind))
        return sdn_error(SELDON_EINVAL, "kind: %d is neither a request nor a response", kind);
    msg = sdn_malloc(sizeof(*msg));
    if (msg == NULL)
        return sdn_error(SELDON_ENOMEM, "message: out of memory");
    sdn_arena_init(&msg->arena, msg->inline_mem, sizeof(msg->inline_mem));
    msg_init_fields(msg, kind);
    *out = msg;
    return 0;
}

void seldon_msg_free(seldon_msg *msg)
{
    if (msg == NULL)
        return;
    sdn_arena_release(&msg->arena);
    sdn_free(msg);
}

void sdn_msg_clear(seldon_msg *msg)
{
    sdn_arena_reset(&msg->arena);
    msg_init_fields(msg, msg->kind);
}

int seldon_msg_reset(seldon_msg *msg, int32_t kind)
{
    if (msg == NULL)
        return sdn_error(SELDON_EINVAL, "msg: NULL");
    if (!kind_valid(kind))
        return sdn_error(SELDON_EINVAL, "kind: %d is neither a request nor a response", kind);
    msg->kind = kind;
    sdn_msg_clear(msg);
    return 0;
}

int32_t seldon_msg_kind(const seldon_msg *msg)
{
    return msg ? msg->kind : 0;
}

sdn_tensor *sdn_msg_push_tensor(seldon_msg *msg)
{
    sdn_tensor *t;
    if (msg->ntensors == msg->tensors_cap) {
        uint32_t cap = msg->tensors_cap ? msg->tensors_cap * 2 : 4;
        void *p = sdn_arena_grow(&msg->arena, msg->tensors, msg->tensors_cap * sizeof(sdn_tensor),
                                 cap * sizeof(sdn_tensor));
        if (p == NULL)
            return NULL;
        msg->tensors = p;
        msg->tensors_cap = cap;
    }
    t = &msg->tensors[msg->ntensors++];
    memset(t, 0, sizeof(*t));
    t->name.p = sdn_empty;
    return t;
}

sdn_output *sdn_msg_push_output(seldon_msg *msg)
{
    sdn_output *o;
    if (msg->noutputs == msg->outputs_cap) {
        uint32_t cap = msg->outputs_cap ? msg->outputs_cap * 2 : 4;
        void *p = sdn_arena_grow(&msg->arena, msg->outputs, msg->outputs_cap * sizeof(sdn_output),
                                 cap * sizeof(sdn_output));
        if (p == NULL)
            return NULL;
        msg->outputs = p;
        msg->outputs_cap = cap;
    }
    o = &msg->outputs[msg->noutputs++];
    memset(o, 0, sizeof(*o));
    o->name.p = sdn_empty;
    return o;
}

sdn_param *sdn_params_push(sdn_arena *a, sdn_params *ps)
{
    sdn_param *p;
    if (ps->n == ps->cap) {
        uint32_t cap = ps->cap ? ps->cap * 2 : 4;
        void *np =
            sdn_arena_grow(a, ps->items, ps->cap * sizeof(sdn_param), cap * sizeof(sdn_param));
        if (np == NULL)
            return NULL;
        ps->items = np;
        ps->cap = cap;
    }
    p = &ps->items[ps->n++];
    memset(p, 0, sizeof(*p));
    p->name.p = p->s.p = sdn_empty;
    return p;
}

sdn_param *sdn_params_find(const sdn_params *ps, const char *name, size_t len)
{
    uint32_t i;
    for (i = 0; i < ps->n; i++)
        if (ps->items[i].name.len == len && memcmp(ps->items[i].name.p, name, len) == 0)
            return &ps->items[i];
    return NULL;
}

void sdn_params_remove(sdn_params *ps, uint32_t i)
{
    if (i >= ps->n)
        return;
    memmove(&ps->items[i], &ps->items[i + 1], (ps->n - i - 1) * sizeof(sdn_param));
    ps->n--;
}

int sdn_shape_count(uint64_t *count, const int64_t *shape, uint32_t ndim, const char *path)
{
    uint64_t c = 1;
    uint32_t i;
    for (i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return sdn_error(SELDON_ESHAPE, "%s.shape[%u]: negative dimension %lld", path, i,
                             (long long)shape[i]);
        if (__builtin_mul_overflow(c, (uint64_t)shape[i], &c) || c > ((uint64_t)1 << 56))
            return sdn_error(SELDON_ETOOBIG, "%s.shape: too many elements", path);
    }
    *count = c;
    return 0;
}

int sdn_bytes_check(const uint8_t *data, size_t nbytes, uint64_t count, const char *path)
{
    size_t off = 0;
    uint64_t n = 0;
    while (off < nbytes) {
        uint32_t len;
        if (nbytes - off < 4)
            return sdn_error(SELDON_EPARSE, "%s: truncated BYTES element length at byte %zu", path,
                             off);
        memcpy(&len, data + off, 4);
        off += 4;
        if (len > nbytes - off)
            return sdn_error(SELDON_EPARSE, "%s: BYTES element %llu of %u bytes overruns the data",
                             path, (unsigned long long)n, len);
        off += len;
        n++;
    }
    if (n != count)
        return sdn_error(SELDON_ESHAPE, "%s: %llu BYTES elements, but the shape holds %llu", path,
                         (unsigned long long)n, (unsigned long long)count);
    return 0;
}

int sdn_bool_check(const uint8_t *data, size_t nbytes, const char *path)
{
    size_t i;
    for (i = 0; i < nbytes; i++)
        if (data[i] > 1)
            return sdn_error(SELDON_ERANGE, "%s: BOOL element %zu is %u; expected 0 or 1", path, i,
                             data[i]);
    return 0;
}

/* --- Reading ------------------------------------------------------------ */

static const char *str_out(sdn_str s, size_t *len)
{
    if (len != NULL)
        *len = s.len;
    return s.p;
}

const char *seldon_msg_id(const seldon_msg *msg, size_t *len)
{
    return msg ? str_out(msg->id, len) : str_out((sdn_str){sdn_empty, 0}, len);
}

const char *seldon_msg_model_name(const seldon_msg *msg, size_t *len)
{
    return msg ? str_out(msg->model_name, len) : str_out((sdn_str){sdn_empty, 0}, len);
}

const char *seldon_msg_model_version(const seldon_msg *msg, size_t *len)
{
    return msg ? str_out(msg->model_version, len) : str_out((sdn_str){sdn_empty, 0}, len);
}

size_t seldon_msg_tensor_count(const seldon_msg *msg)
{
    return msg ? msg->ntensors : 0;
}

int seldon_msg_tensor(seldon_tensor *out, const seldon_msg *msg, size_t index)
{
    const sdn_tensor *t;
    if (out == NULL || msg == NULL)
        return sdn_error(SELDON_EINVAL, "tensor: NULL argument");
    if (index >= msg->ntensors)
        return sdn_error(SELDON_ENOTFOUND, "tensor %zu: the message has %u", index, msg->ntensors);
    t = &msg->tensors[index];
    out->name = t->name.p;
    out->name_len = t->name.len;
    out->datatype = t->datatype;
    out->ndim = t->ndim;
    out->shape = t->ndim ? t->shape : NULL;
    out->data = t->data;
    out->nbytes = t->nbytes;
    out->count = t->count;
    return 0;
}

int seldon_msg_find_tensor(size_t *out_index, const seldon_msg *msg, const char *name, size_t len)
{
    uint32_t i;
    if (msg == NULL || name == NULL)
        return sdn_error(SELDON_EINVAL, "find_tensor: NULL argument");
    for (i = 0; i < msg->ntensors; i++) {
        if (msg->tensors[i].name.len == len && memcmp(msg->tensors[i].name.p, name, len) == 0) {
            if (out_index != NULL)
                *out_index = i;
            return 0;
        }
    }
    return sdn_error(SELDON_ENOTFOUND, "tensor '%.*s' not found", (int)(len > 200 ? 200 : len),
                     name);
}

int32_t seldon_msg_is_borrowed(const seldon_msg *msg, size_t index)
{
    if (msg == NULL || index >= msg->ntensors)
        return 0;
    return (msg->tensors[index].flags & SDN_TENSOR_BORROWED) != 0;
}

int32_t seldon_msg_is_binary(const seldon_msg *msg, size_t index)
{
    if (msg == NULL || index >= msg->ntensors)
        return 0;
    return (msg->tensors[index].flags & SDN_TENSOR_BINARY) != 0;
}

size_t seldon_msg_output_count(const seldon_msg *msg)
{
    return msg ? msg->noutputs : 0;
}

const char *seldon_msg_output_name(const seldon_msg *msg, size_t index, size_t *len)
{
    if (msg == NULL || index >= msg->noutputs)
        return NULL;
    return str_out(msg->outputs[index].name, len);
}

static const sdn_params *scope_params(const seldon_msg *msg, int32_t scope, size_t index)
{
    if (msg == NULL)
        return NULL;
    switch (scope) {
    case SELDON_SCOPE_MSG:
        return &msg->params;
    case SELDON_SCOPE_TENSOR:
        return index < msg->ntensors ? &msg->tensors[index].params : NULL;
    case SELDON_SCOPE_OUTPUT:
        return index < msg->noutputs ? &msg->outputs[index].params : NULL;
    default:
        return NULL;
    }
}

size_t seldon_msg_param_count(const seldon_msg *msg, int32_t scope, size_t index)
{
    const sdn_params *ps = scope_params(msg, scope, index);
    return ps ? ps->n : 0;
}

static void param_out(seldon_param *out, const sdn_param *p)
{
    out->name = p->name.p;
    out->name_len = p->name.len;
    out->type = p->type;
    out->bool_value = p->b;
    out->int64_value = p->i;
    out->double_value = p->d;
    out->string_value = p->s.p;
    out->string_len = p->s.len;
}

int seldon_msg_param(seldon_param *out, const seldon_msg *msg, int32_t scope, size_t index,
                     size_t param_index)
{
    const sdn_params *ps = scope_params(msg, scope, index);
    if (out == NULL)
        return sdn_error(SELDON_EINVAL, "param: out is NULL");
    if (ps == NULL)
        return sdn_error(SELDON_ENOTFOUND, "param: no scope %d index %zu", scope, index);
    if (param_index >= ps->n)
        return sdn_error(SELDON_ENOTFOUND, "param %zu: the scope has %u", param_index, ps->n);
    param_out(out, &ps->items[param_index]);
    return 0;
}

int seldon_msg_find_param(seldon_param *out, const seldon_msg *msg, int32_t scope, size_t index,
                          const char *name, size_t name_len)
{
    const sdn_params *ps = scope_params(msg, scope, index);
    const sdn_param *p;
    if (out == NULL || name == NULL)
        return sdn_error(SELDON_EINVAL, "find_param: NULL argument");
    if (ps == NULL)
        return sdn_error(SELDON_ENOTFOUND, "param: no scope %d index %zu", scope, index);
    p = sdn_params_find(ps, name, name_len);
    if (p == NULL)
        return sdn_error(SELDON_ENOTFOUND, "parameter '%.*s' not found",
                         (int)(name_len > 200 ? 200 : name_len), name);
    param_out(out, p);
    return 0;
}

int seldon_bytes_next(const uint8_t **elem, uint32_t *elem_len, const seldon_tensor *tensor,
                      size_t *offset)
{
    uint32_t len;
    size_t off;
    if (elem == NULL || elem_len == NULL || tensor == NULL || offset == NULL)
        return sdn_error(SELDON_EINVAL, "bytes_next: NULL argument");
    off = *offset;
    if (off >= tensor->nbytes)
        return 0;
    if (tensor->nbytes - off < 4)
        return sdn_error(SELDON_EPARSE, "BYTES data: truncated length at byte %zu", off);
    memcpy(&len, (const uint8_t *)tensor->data + off, 4);
    off += 4;
    if (len > tensor->nbytes - off)
        return sdn_error(SELDON_EPARSE, "BYTES data: element at byte %zu overruns", off - 4);
    *elem = (const uint8_t *)tensor->data + off;
    *elem_len = len;
    *offset = off + len;
    return 1;
}

/* --- Building ----------------------------------------------------------- */

static int set_str(seldon_msg *msg, sdn_str *dst, const char *s, size_t len, const char *what)
{
    char *p;
    if (s == NULL && len != 0)
        return sdn_error(SELDON_EINVAL, "%s: NULL with length %zu", what, len);
    p = sdn_arena_strndup(&msg->arena, s ? s : "", len);
    if (p == NULL)
        return sdn_error(SELDON_ENOMEM, "%s: out of memory", what);
    dst->p = p;
    dst->len = len;
    return 0;
}

int seldon_msg_set_id(seldon_msg *msg, const char *id, size_t len)
{
    if (msg == NULL)
        return sdn_error(SELDON_EINVAL, "msg: NULL");
    return set_str(msg, &msg->id, id, len, "id");
}

int seldon_msg_set_model(seldon_msg *msg, const char *name, size_t name_len, const char *version,
                         size_t version_len)
{
    int rc;
    if (msg == NULL)
        return sdn_error(SELDON_EINVAL, "msg: NULL");
    rc = set_str(msg, &msg->model_name, name, name_len, "model_name");
    if (rc == 0)
        rc = set_str(msg, &msg->model_version, version, version_len, "model_version");
    return rc;
}

int seldon_msg_add_tensor(size_t *out_index, seldon_msg *msg, const char *name, size_t name_len,
                          int32_t datatype, const int64_t *shape, uint32_t ndim, const void *data,
                          size_t nbytes, uint32_t flags)
{
    sdn_tensor *t;
    uint64_t count;
    size_t want;
    int rc;
    uint32_t mode = flags & (SELDON_TENSOR_BORROW | SELDON_TENSOR_ALLOC);

    if (msg == NULL || name == NULL || (ndim > 0 && shape == NULL))
        return sdn_error(SELDON_EINVAL, "add_tensor: NULL argument");
    if (!sdn_dt_valid(datatype))
        return sdn_error(SELDON_EDATATYPE, "add_tensor '%.*s': unknown datatype %d",
                         (int)(name_len > 200 ? 200 : name_len), name, datatype);
    if (ndim > SDN_MAX_NDIM)
        return sdn_error(SELDON_ETOOBIG, "add_tensor: %u dimensions, at most %d", ndim,
                         SDN_MAX_NDIM);
    if (mode == (SELDON_TENSOR_BORROW | SELDON_TENSOR_ALLOC) ||
        (mode == SELDON_TENSOR_ALLOC && data != NULL) ||
        (mode != SELDON_TENSOR_ALLOC && data == NULL && nbytes != 0))
        return sdn_error(SELDON_EINVAL, "add_tensor: flags %#x do not fit the data pointer", flags);
    if (msg->ntensors >= SDN_MAX_TENSORS)
        return sdn_error(SELDON_ETOOBIG, "add_tensor: more than %d tensors", SDN_MAX_TENSORS);
    rc = sdn_shape_count(&count, shape, ndim, "tensor");
    if (rc < 0)
        return rc;
    if (datatype != SELDON_DT_BYTES) {
        if (!sdn_mul_size(&want, (size_t)count, sdn_dt_size[datatype]) || want != nbytes)
            return sdn_error(SELDON_ESHAPE,
                             "add_tensor '%.*s': %zu bytes, but shape and datatype need %llu x %u",
                             (int)(name_len > 200 ? 200 : name_len), name, nbytes,
                             (unsigned long long)count, sdn_dt_size[datatype]);
    } else if (mode != SELDON_TENSOR_ALLOC) {
        rc = sdn_bytes_check(data, nbytes, count, "add_tensor data");
        if (rc < 0)
            return rc;
    }
    if (datatype == SELDON_DT_BOOL && mode != SELDON_TENSOR_ALLOC) {
        rc = sdn_bool_check(data, nbytes, "add_tensor data");
        if (rc < 0)
            return rc;
    }

    t = sdn_msg_push_tensor(msg);
    if (t == NULL)
        return sdn_error(SELDON_ENOMEM, "add_tensor: out of memory");
    rc = set_str(msg, &t->name, name, name_len, "tensor name");
    if (rc < 0)
        goto fail;
    t->datatype = datatype;
    t->ndim = ndim;
    t->count = count;
    t->nbytes = nbytes;
    if (ndim) {
        t->shape = sdn_arena_alloc(&msg->arena, ndim * sizeof(int64_t));
        if (t->shape == NULL)
            goto nomem;
        memcpy(t->shape, shape, ndim * sizeof(int64_t));
    }
    if (mode == SELDON_TENSOR_BORROW) {
        t->data = (uint8_t *)(uintptr_t)data;
        t->flags |= SDN_TENSOR_BORROWED;
    } else if (nbytes) {
        t->data = sdn_arena_alloc(&msg->arena, nbytes);
        if (t->data == NULL)
            goto nomem;
        if (mode == SELDON_TENSOR_ALLOC)
            memset(t->data, 0, nbytes);
        else
            memcpy(t->data, data, nbytes);
    }
    if (out_index != NULL)
        *out_index = msg->ntensors - 1;
    return 0;
nomem:
    rc = sdn_error(SELDON_ENOMEM, "add_tensor: out of memory");
fail:
    msg->ntensors--;
    return rc;
}

int seldon_msg_set_binary(seldon_msg *msg, size_t index, int32_t on)
{
    if (msg == NULL)
        return sdn_error(SELDON_EINVAL, "msg: NULL");
    if (index >= msg->ntensors)
        return sdn_error(SELDON_ENOTFOUND, "tensor %zu: the message has %u", index, msg->ntensors);
    if (on)
        msg->tensors[index].flags |= SDN_TENSOR_BINARY;
    else
        msg->tensors[index].flags &= ~SDN_TENSOR_BINARY;
    return 0;
}

int seldon_msg_add_output(size_t *out_index, seldon_msg *msg, const char *name, size_t len)
{
    sdn_output *o;
    int rc;
    if (msg == NULL || name == NULL)
        return sdn_error(SELDON_EINVAL, "add_output: NULL argument");
    if (msg->kind != SELDON_MSG_REQUEST)
        return sdn_error(SELDON_ESTATE, "add_output: only a request asks for outputs");
    o = sdn_msg_push_output(msg);
    if (o == NULL)
        return sdn_error(SELDON_ENOMEM, "add_output: out of memory");
    rc = set_str(msg, &o->name, name, len, "output name");
    if (rc < 0) {
        msg->noutputs--;
        return rc;
    }
    if (out_index != NULL)
        *out_index = msg->noutputs - 1;
    return 0;
}

int seldon_msg_add_param(seldon_msg *msg, int32_t scope, size_t index, const seldon_param *param)
{
    sdn_params *ps = (sdn_params *)(uintptr_t)scope_params(msg, scope, index);
    sdn_param *p;
    const char *name, *sval = NULL;
    if (msg == NULL || param == NULL || param->name == NULL)
        return sdn_error(SELDON_EINVAL, "add_param: NULL argument");
    if (ps == NULL)
        return sdn_error(SELDON_ENOTFOUND, "add_param: no scope %d index %zu", scope, index);
    if (param->type < SELDON_PARAM_BOOL || param->type > SELDON_PARAM_STRING)
        return sdn_error(SELDON_EINVAL, "add_param '%.*s': unknown type %d",
                         (int)(param->name_len > 200 ? 200 : param->name_len), param->name,
                         param->type);
    if (param->type == SELDON_PARAM_STRING && param->string_value == NULL && param->string_len != 0)
        return sdn_error(SELDON_EINVAL, "add_param: NULL string value");
    name = sdn_arena_strndup(&msg->arena, param->name, param->name_len);
    if (name == NULL)
        return sdn_error(SELDON_ENOMEM, "add_param: out of memory");
    if (param->type == SELDON_PARAM_STRING) {
        sval = sdn_arena_strndup(&msg->arena, param->string_value ? param->string_value : "",
                                 param->string_len);
        if (sval == NULL)
            return sdn_error(SELDON_ENOMEM, "add_param: out of memory");
    }
    p = sdn_params_find(ps, param->name, param->name_len);
    if (p == NULL) {
        p = sdn_params_push(&msg->arena, ps);
        if (p == NULL)
            return sdn_error(SELDON_ENOMEM, "add_param: out of memory");
    }
    memset(p, 0, sizeof(*p));
    p->name.p = name;
    p->name.len = param->name_len;
    p->type = param->type;
    p->b = param->bool_value != 0;
    p->i = param->int64_value;
    p->d = param->double_value;
    p->s.p = sval ? sval : sdn_empty;
    p->s.len = sval ? param->string_len : 0;
    return 0;
}
