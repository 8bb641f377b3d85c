/*
 * Adaptive batching, with MLServer's semantics: requests to one model are
 * gathered until max_batch_size wait or the first has waited
 * max_batch_time; those that agree on their inputs are concatenated along
 * the first dimension, run as one request, and the response is split back
 * row by row, each caller getting its own rows and its own id.
 */
#include <stdio.h>
#include <string.h>

#include "repo.h"

typedef struct waiting {
    seldon_infer *infer;
    int64_t since_ns;
} waiting;

struct seldon_batcher {
    uint32_t max_size;
    int64_t max_time_ns;
    waiting *ring;
    size_t cap;
    size_t head;
    size_t count;
};

int seldon_batcher_new(seldon_batcher **out, uint32_t max_batch_size, int64_t max_batch_time_ns)
{
    seldon_batcher *b;
    if (out == NULL || max_batch_size == 0 || max_batch_time_ns < 0)
        return sdn_error(SELDON_EINVAL, "batcher: max_batch_size >= 1 and max_batch_time >= 0");
    *out = NULL;
    b = sdn_calloc(1, sizeof(*b));
    if (b == NULL)
        return sdn_error(SELDON_ENOMEM, "batcher: out of memory");
    b->max_size = max_batch_size;
    b->max_time_ns = max_batch_time_ns;
    *out = b;
    return 0;
}

void seldon_batcher_free(seldon_batcher *batcher)
{
    if (batcher == NULL)
        return;
    sdn_free(batcher->ring);
    sdn_free(batcher);
}

int seldon_batcher_push(seldon_batcher *b, seldon_infer *infer, int64_t now_ns)
{
    if (b == NULL || infer == NULL)
        return sdn_error(SELDON_EINVAL, "batcher_push: NULL argument");
    if (b->count == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16, i;
        waiting *ring = sdn_malloc(cap * sizeof(*ring));
        if (ring == NULL)
            return sdn_error(SELDON_ENOMEM, "batcher: out of memory");
        for (i = 0; i < b->count; i++)
            ring[i] = b->ring[(b->head + i) % b->cap];
        sdn_free(b->ring);
        b->ring = ring;
        b->cap = cap;
        b->head = 0;
    }
    b->ring[(b->head + b->count) % b->cap].infer = infer;
    b->ring[(b->head + b->count) % b->cap].since_ns = now_ns;
    b->count++;
    return b->count >= b->max_size;
}

size_t seldon_batcher_take(seldon_batcher *b, seldon_infer **out, size_t cap, int64_t now_ns,
                           int32_t force)
{
    size_t n, i;
    if (b == NULL || out == NULL || b->count == 0)
        return 0;
    if (!force && b->count < b->max_size && now_ns - b->ring[b->head].since_ns < b->max_time_ns)
        return 0;
    n = b->count < b->max_size ? b->count : b->max_size;
    if (n > cap)
        n = cap;
    for (i = 0; i < n; i++) {
        out[i] = b->ring[b->head].infer;
        b->head = (b->head + 1) % b->cap;
    }
    b->count -= n;
    return n;
}

int64_t seldon_batcher_deadline(const seldon_batcher *b)
{
    if (b == NULL || b->count == 0)
        return INT64_MAX;
    return b->ring[b->head].since_ns + b->max_time_ns;
}

size_t seldon_batcher_size(const seldon_batcher *b)
{
    return b ? b->count : 0;
}

/* --- Merging and splitting ------------------------------------------------ */

static int same_str(sdn_str a, sdn_str b)
{
    return a.len == b.len && memcmp(a.p, b.p, a.len) == 0;
}

static int same_param(const sdn_param *a, const sdn_param *b)
{
    if (!same_str(a->name, b->name) || a->type != b->type)
        return 0;
    switch (a->type) {
    case SELDON_PARAM_BOOL:
        return a->b == b->b;
    case SELDON_PARAM_INT64:
        return a->i == b->i;
    case SELDON_PARAM_DOUBLE:
        return memcmp(&a->d, &b->d, sizeof(double)) == 0;
    default:
        return same_str(a->s, b->s);
    }
}

/* Whether two parameter lists say the same, ignoring transport-only binary_data_output. */
static int same_params(const sdn_params *a, const sdn_params *b)
{
    uint32_t i, na = 0, nb = 0;
    for (i = 0; i < a->n; i++) {
        const sdn_param *q;
        if (strcmp(a->items[i].name.p, "binary_data_output") == 0)
            continue;
        na++;
        q = sdn_params_find(b, a->items[i].name.p, a->items[i].name.len);
        if (q == NULL || !same_param(&a->items[i], q))
            return 0;
    }
    for (i = 0; i < b->n; i++)
        nb += strcmp(b->items[i].name.p, "binary_data_output") != 0;
    return na == nb;
}

/* Requests that can share a batch: same inputs by name, datatype and row shape; same parameters. */
static int batchable(const seldon_msg *a, const seldon_msg *b)
{
    uint32_t i;
    if (a->ntensors != b->ntensors || a->ntensors == 0 || !same_params(&a->params, &b->params))
        return 0;
    for (i = 0; i < a->ntensors; i++) {
        const sdn_tensor *x = &a->tensors[i], *y = &b->tensors[i];
        if (!same_str(x->name, y->name) || x->datatype != y->datatype || x->ndim != y->ndim ||
            x->ndim == 0 || x->params.n != 0 || y->params.n != 0)
            return 0;
        if (x->ndim > 1 && memcmp(x->shape + 1, y->shape + 1, (x->ndim - 1) * sizeof(int64_t)))
            return 0;
    }
    return 1;
}

/* Byte offset in BYTES data after skip elements. */
static size_t bytes_skip(const uint8_t *data, size_t nbytes, uint64_t skip)
{
    size_t off = 0;
    while (skip-- && off + 4 <= nbytes) {
        uint32_t len;
        memcpy(&len, data + off, 4);
        off += 4 + (size_t)len;
    }
    return off;
}

static int build_merged(seldon_msg *merged, seldon_infer *const *parts, size_t n)
{
    const seldon_msg *first = parts[0]->request;
    uint32_t i;
    size_t p;
    int rc, want_all = 0;

    /* Shared, not copied: the parts' requests outlive the merged one. */
    merged->params = first->params;
    for (i = 0; i < first->ntensors; i++) {
        const sdn_tensor *t0 = &first->tensors[i];
        int64_t shape[SDN_MAX_NDIM];
        size_t nbytes = 0, idx, off = 0;
        seldon_tensor view;
        memcpy(shape, t0->shape, t0->ndim * sizeof(int64_t));
        shape[0] = 0;
        for (p = 0; p < n; p++) {
            const sdn_tensor *t = &parts[p]->request->tensors[i];
            shape[0] += t->shape[0];
            nbytes += t->nbytes;
        }
        rc = seldon_msg_add_tensor(&idx, merged, t0->name.p, t0->name.len, t0->datatype, shape,
                                   t0->ndim, NULL, nbytes, SELDON_TENSOR_ALLOC);
        if (rc < 0)
            return rc;
        seldon_msg_tensor(&view, merged, idx);
        for (p = 0; p < n; p++) {
            const sdn_tensor *t = &parts[p]->request->tensors[i];
            if (t->nbytes)
                memcpy((uint8_t *)view.data + off, t->data, t->nbytes);
            off += t->nbytes;
        }
    }
    /* Ask for the union of what the parts asked for; one that asked for nothing wants all. */
    for (p = 0; p < n && !want_all; p++)
        want_all = parts[p]->request->noutputs == 0;
    for (p = 0; p < n && !want_all; p++) {
        const seldon_msg *r = parts[p]->request;
        for (i = 0; i < r->noutputs; i++) {
            uint32_t k, dup = 0;
            for (k = 0; k < merged->noutputs; k++)
                dup |= same_str(merged->outputs[k].name, r->outputs[i].name);
            if (!dup && (rc = seldon_msg_add_output(NULL, merged, r->outputs[i].name.p,
                                                    r->outputs[i].name.len)) < 0)
                return rc;
        }
    }
    return 0;
}

/* Gives each part its rows of every output of the merged response. */
static int split_response(seldon_infer *merged, char *msg, size_t msg_size)
{
    const seldon_msg *resp = merged->own_response;
    uint64_t total = 0;
    size_t p;
    uint32_t i;

    for (p = 0; p < merged->nparts; p++)
        total += (uint64_t)merged->parts[p]->request->tensors[0].shape[0];
    for (i = 0; i < resp->ntensors; i++) {
        const sdn_tensor *t = &resp->tensors[i];
        if (t->ndim == 0 || (uint64_t)t->shape[0] != total) {
            snprintf(msg, msg_size,
                     "model %s: output %.64s has %lld rows for a batch of %llu; batching needs "
                     "one output row per input row",
                     merged->model ? merged->model->settings.name : "", t->name.p,
                     t->ndim ? (long long)t->shape[0] : 0LL, (unsigned long long)total);
            return SELDON_ESHAPE;
        }
    }
    for (i = 0; i < resp->ntensors; i++) {
        const sdn_tensor *t = &resp->tensors[i];
        uint64_t per_row = total ? t->count / total : 0;
        size_t off = 0;
        for (p = 0; p < merged->nparts; p++) {
            seldon_infer *part = merged->parts[p];
            int64_t shape[SDN_MAX_NDIM];
            uint64_t rows = (uint64_t)part->request->tensors[0].shape[0];
            size_t len;
            int rc;
            memcpy(shape, t->shape, t->ndim * sizeof(int64_t));
            shape[0] = (int64_t)rows;
            if (t->datatype == SELDON_DT_BYTES)
                len = bytes_skip(t->data + off, t->nbytes - off, rows * per_row);
            else
                len = (size_t)(rows * per_row) * sdn_dt_size[t->datatype];
            rc = seldon_msg_add_tensor(NULL, part->response, t->name.p, t->name.len, t->datatype,
                                       shape, t->ndim, t->data + off, len, SELDON_TENSOR_COPY);
            if (rc < 0) {
                snprintf(msg, msg_size, "%s", seldon_last_error());
                return rc;
            }
            off += len;
        }
    }
    return 0;
}

static void merged_done(void *user_data, seldon_infer *merged, int32_t status, const char *message)
{
    size_t p;
    char buf[256];
    const char *why = message;
    (void)user_data;
    if (status == 0) {
        status = split_response(merged, buf, sizeof(buf));
        why = buf;
    }
    for (p = 0; p < merged->nparts; p++) {
        merged->parts[p]->model = merged->model;
        seldon_infer_complete(merged->parts[p], status, status == 0 ? NULL : why);
    }
    seldon_infer_free(merged);
}

/* Runs a group of batchable inferences as one. */
static void run_merged(seldon_model *model, seldon_infer *const *parts, size_t n)
{
    seldon_msg *req = NULL, *resp = NULL;
    seldon_infer *merged = NULL;
    int rc = seldon_msg_new(&req, SELDON_MSG_REQUEST);
    size_t p;

    if (rc == 0)
        rc = seldon_msg_new(&resp, SELDON_MSG_RESPONSE);
    if (rc == 0)
        rc = build_merged(req, parts, n);
    if (rc == 0)
        rc = seldon_infer_new(&merged, req, resp, merged_done, NULL);
    if (rc == 0) {
        merged->parts = sdn_malloc(n * sizeof(*merged->parts));
        if (merged->parts == NULL)
            rc = sdn_error(SELDON_ENOMEM, "batch: out of memory");
    }
    if (rc < 0) {
        char why[256];
        snprintf(why, sizeof(why), "%s", seldon_last_error());
        seldon_infer_free(merged);
        seldon_msg_free(req);
        seldon_msg_free(resp);
        for (p = 0; p < n; p++)
            seldon_infer_complete(parts[p], rc, why);
        return;
    }
    memcpy(merged->parts, parts, n * sizeof(*parts));
    merged->nparts = n;
    merged->own_request = req;
    merged->own_response = resp;
    seldon_model_execute(model, &merged, 1);
}

void seldon_model_execute_batch(seldon_model *model, seldon_infer *const *infers, size_t count)
{
    seldon_infer *stack[64];
    seldon_infer **rest = stack;
    size_t nrest, i;

    if (count <= 1) {
        seldon_model_execute(model, infers, count);
        return;
    }
    if (count > 64) {
        rest = sdn_malloc(count * sizeof(*rest));
        if (rest == NULL) {
            /* Without memory to group them, run each alone: slower, still correct. */
            for (i = 0; i < count; i++)
                seldon_model_execute(model, &infers[i], 1);
            return;
        }
    }
    memcpy(rest, infers, count * sizeof(*rest));
    nrest = count;
    /* Group greedily: each pass takes the first waiting request and all that batch with it. */
    while (nrest > 0) {
        seldon_infer *group[64];
        size_t ng = 0, keep = 0;
        for (i = 0; i < nrest; i++) {
            if (ng < 64 && (ng == 0 || batchable(group[0]->request, rest[i]->request)))
                group[ng++] = rest[i];
            else
                rest[keep++] = rest[i];
        }
        nrest = keep;
        if (ng == 1)
            seldon_model_execute(model, group, 1);
        else
            run_merged(model, group, ng);
    }
    if (rest != stack)
        sdn_free(rest);
}
