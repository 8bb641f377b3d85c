/*
 * Pipelines, the engine's batches: flushing a step's batch (queued by the
 * engine until its batch size or window is reached) to the model as one
 * request, whose tensors are the requests' tensors concatenated along
 * dimension 0.
 */
#include <string.h>

#include "oip/msg.h"
#include "pipeline/pl.h"

/* ---- batches ---- */

static int same_tail(const sdn_tensor *a, const sdn_tensor *b)
{
    uint32_t d;
    if (a->datatype != b->datatype || a->ndim != b->ndim || a->ndim == 0 ||
        a->name.len != b->name.len || memcmp(a->name.p, b->name.p, a->name.len) != 0)
        return 0;
    for (d = 1; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d])
            return 0;
    return 1;
}

/* Whether entry x batches with the first: the same tensors, each with rows x.rows. */
static int batchable(const pl_bentry *first, const pl_bentry *x)
{
    const seldon_msg *a = first->msg->msg, *b = x->msg->msg;
    uint32_t i;
    if (a->ntensors != b->ntensors || a->ntensors == 0)
        return 0;
    for (i = 0; i < a->ntensors; i++)
        if (!same_tail(&a->tensors[i], &b->tensors[i]) ||
            b->tensors[i].shape[0] != (int64_t)x->rows)
            return 0;
    return 1;
}

static pl_ref *concat_batch(seldon_pipeline_engine *e, pl_bentry *v, uint32_t n, uint64_t rows,
                            const pl_step *st)
{
    seldon_msg *m = seldon_pipeline_engine_msg(e, SELDON_MSG_REQUEST);
    const seldon_msg *a;
    uint32_t i, k;
    if (m == NULL)
        return NULL;
    a = v[0].msg->msg;
    if (seldon_msg_set_id(m, v[0].req->id, v[0].req->id_len) < 0 ||
        seldon_msg_set_model(m, st->name, st->name_len, NULL, 0) < 0)
        goto fail;
    for (i = 0; i < a->ntensors; i++) {
        const sdn_tensor *t0 = &a->tensors[i];
        size_t nbytes = 0, off = 0;
        uint64_t count = 0;
        sdn_tensor *t;
        for (k = 0; k < n; k++) {
            nbytes += v[k].msg->msg->tensors[i].nbytes;
            count += v[k].msg->msg->tensors[i].count;
        }
        t = sdn_msg_push_tensor(m);
        if (t == NULL)
            goto fail;
        t->name.p = sdn_arena_strndup(&m->arena, t0->name.p, t0->name.len);
        t->name.len = t0->name.len;
        t->shape = sdn_arena_alloc(&m->arena, t0->ndim * sizeof(int64_t));
        t->data = sdn_arena_alloc(&m->arena, nbytes ? nbytes : 1);
        if (t->name.p == NULL || t->shape == NULL || t->data == NULL)
            goto fail;
        memcpy(t->shape, t0->shape, t0->ndim * sizeof(int64_t));
        t->shape[0] = (int64_t)rows;
        t->ndim = t0->ndim;
        t->datatype = t0->datatype;
        t->nbytes = nbytes;
        t->count = count;
        t->flags = t0->flags & SDN_TENSOR_BINARY;
        for (k = 0; k < n; k++) {
            const sdn_tensor *x = &v[k].msg->msg->tensors[i];
            if (x->nbytes)
                memcpy(t->data + off, x->data, x->nbytes);
            off += x->nbytes;
        }
    }
    return sdn_pl_ref_new(e, m);
fail:
    sdn_pl_msg_recycle(e, m);
    return NULL;
}

void sdn_pl_flush(seldon_pipeline_engine *e, pl_batch *b)
{
    const pl_step *st = &e->pipes[b->pipe].p->steps[b->step];
    pl_bentry *live = NULL, *v = b->v;
    uint32_t i, n = 0, count = b->n, cap = b->cap;
    uint64_t rows = 0;
    pl_ref *m;

    sdn_pl_timer_stop(e, &b->timer);
    if (count == 0)
        return;
    /* Detached: failing a request below must not edit the queue being read. */
    b->v = NULL;
    b->n = b->cap = 0;
    b->rows = 0;
    live = sdn_malloc(count * sizeof(*live));
    if (live == NULL) {
        for (i = 0; i < count; i++) {
            v[i].req->pending--;
            sdn_pl_nomem_fail(e, v[i].req);
        }
        goto out;
    }
    for (i = 0; i < count; i++) {
        pl_bentry *x = &v[i];
        sdn_pl_touch(e, x->req);
        if (x->req->failed || x->req->answered) {
            x->req->pending--;
            continue;
        }
        if (n > 0 && !batchable(&live[0], x)) {
            x->req->pending--;
            sdn_pl_fail(
                e, x->req, SELDON_PIPELINE_ERR_BATCH, SELDON_ESHAPE,
                "pipeline \"%s\": step \"%s\": this request does not batch with the first in "
                "its batch (tensors, datatypes and shapes past dimension 0 must agree)",
                e->pipes[b->pipe].p->name, st->name);
            continue;
        }
        if (n == 0 && !batchable(x, x) && count > 1) {
            x->req->pending--;
            sdn_pl_fail(e, x->req, SELDON_PIPELINE_ERR_BATCH, SELDON_ESHAPE,
                        "pipeline \"%s\": step \"%s\": a batched request needs tensors of at least "
                        "one dimension, all with the same dimension 0",
                        e->pipes[b->pipe].p->name, st->name);
            continue;
        }
        live[n++] = *x;
        rows += x->rows;
    }
    if (n == 0) {
        sdn_free(live);
    } else if (n == 1) {
        sdn_pl_make_call(e, b->pipe, b->step, live[0].req, live[0].msg, NULL, 0);
        sdn_free(live);
    } else {
        m = concat_batch(e, live, n, rows, st);
        if (m == NULL) {
            for (i = 0; i < n; i++) {
                live[i].req->pending--;
                sdn_pl_nomem_fail(e, live[i].req);
            }
            sdn_free(live);
        } else {
            sdn_pl_make_call(e, b->pipe, b->step, live[0].req, m, live, n);
        }
    }
out:
    if (b->v == NULL) { /* keep the storage */
        b->v = v;
        b->cap = cap;
    } else {
        sdn_free(v);
    }
}
