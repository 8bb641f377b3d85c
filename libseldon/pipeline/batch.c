/*
 * Pipelines, the engine's batches: a step's requests queue until the batch
 * size or window is reached, then go to the model as one request whose
 * tensors are the requests' tensors concatenated along dimension 0.
 *
 * A rolling batch (batch.rolling) is a sliding window over the step's rows:
 * once it has filled, every new request goes at once, with the rows that
 * went before it (the most recent ones, at least batch.size rows in all, none
 * older than batch.windowMs). Those earlier rows are copies kept by the
 * batch, not requests: their part of the answer is skipped, so every caller
 * still gets exactly its own rows, once.
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

/* A request of v's tensors concatenated, owning its bytes; id: q's, model: the step. */
static pl_ref *concat_batch(seldon_pipeline_engine *e, const pl_req *q, pl_bentry *v, uint32_t n,
                            uint64_t rows, const pl_step *st)
{
    seldon_msg *m = seldon_pipeline_engine_msg(e, SELDON_MSG_REQUEST);
    const seldon_msg *a;
    uint32_t i, k;
    if (m == NULL)
        return NULL;
    a = v[0].msg->msg;
    if (seldon_msg_set_id(m, q->id, q->id_len) < 0 ||
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

/* ---- rolling batches ---- */

static void hist_drop_front(seldon_pipeline_engine *e, pl_batch *b)
{
    pl_hentry *h = &b->h[b->h0++];
    b->hrows -= h->rows;
    sdn_pl_ref_release(e, h->msg);
    h->msg = NULL;
    if (b->h0 == b->hn)
        b->h0 = b->hn = 0;
}

void sdn_pl_batch_forget(seldon_pipeline_engine *e, pl_batch *b, int64_t now)
{
    const pl_step *st;
    if (b->hn == b->h0) {
        if (now == INT64_MAX) {
            sdn_free(b->h);
            b->h = NULL;
            b->hcap = 0;
        }
        return;
    }
    st = &e->pipes[b->pipe].p->steps[b->step];
    while (b->h0 < b->hn && (now == INT64_MAX || (st->batch_window_ns > 0 &&
                                                  b->h[b->h0].at <= now - st->batch_window_ns)))
        hist_drop_front(e, b);
    if (now == INT64_MAX) {
        sdn_free(b->h);
        b->h = NULL;
        b->hcap = 0;
    }
}

/*
 * Keeps what a rolling batch just sent (live[0..n)) for the calls after it:
 * a copy of each request's tensors (the request's own may go with it). Then
 * only what the next call can need: batch.size - 1 rows (the next request
 * brings at least one), and at most max_batch requests' worth.
 */
static void hist_keep(seldon_pipeline_engine *e, pl_batch *b, const pl_step *st, pl_bentry *live,
                      uint32_t n, int64_t now)
{
    uint32_t k;
    for (k = 0; k < n; k++) {
        pl_ref *copy;
        if (!batchable(&live[k], &live[k]))
            continue; /* no rows to carry (a tensor without dimension 0) */
        if (b->hn == b->hcap) {
            if (b->h0 > 0) { /* slide down before growing */
                memmove(b->h, b->h + b->h0, (b->hn - b->h0) * sizeof(*b->h));
                b->hn -= b->h0;
                b->h0 = 0;
            } else {
                uint32_t cap = b->hcap ? b->hcap * 2 : 8;
                pl_hentry *a = sdn_realloc(b->h, cap * sizeof(*a));
                if (a == NULL)
                    return; /* the window holds less: later calls carry fewer earlier rows */
                b->h = a;
                b->hcap = cap;
            }
        }
        copy = concat_batch(e, live[k].req, &live[k], 1, live[k].rows, st);
        if (copy == NULL)
            return;
        b->h[b->hn].msg = copy;
        b->h[b->hn].rows = live[k].rows;
        b->h[b->hn].at = now;
        b->hn++;
        b->hrows += live[k].rows;
    }
    while (b->h0 < b->hn &&
           ((st->batch_size > 0 && b->hrows - b->h[b->h0].rows + 1 >= (uint64_t)st->batch_size) ||
            b->hn - b->h0 > e->opt.max_batch))
        hist_drop_front(e, b);
}

/*
 * The earlier rows that go with live (n >= 1 requests, rows in all): the most
 * recent ones that batch with live[0], as many as batch.size asks for (all of
 * them without a size). Returns the index of the first.
 */
static uint32_t hist_context(const pl_batch *b, const pl_step *st, const pl_bentry *live,
                             uint64_t rows)
{
    uint32_t first = b->hn;
    uint64_t have = rows;
    while (first > b->h0) {
        pl_bentry x = {NULL, b->h[first - 1].msg, b->h[first - 1].rows};
        if (st->batch_size > 0 && have >= (uint64_t)st->batch_size)
            break;
        if (!batchable(&live[0], &x))
            break; /* a request of another shape went between: nothing before it fits */
        first--;
        have += x.rows;
    }
    return first;
}

/* Whether a queued batch is due (rolling: counting the rows that went before). */
static int batch_due(const seldon_pipeline_engine *e, const pl_batch *b, const pl_step *st)
{
    uint64_t rows = b->rows + (st->batch_rolling ? b->hrows : 0);
    if (b->n >= e->opt.max_batch)
        return 1;
    if (st->batch_size > 0)
        return rows >= (uint64_t)st->batch_size;
    return st->batch_rolling; /* a rolling time window: every request goes at once */
}

void sdn_pl_batch_add(seldon_pipeline_engine *e, pl_batch *b, pl_req *q, pl_ref *m, int64_t now)
{
    const pl_step *st = &e->pipes[b->pipe].p->steps[b->step];
    const sdn_tensor *t0 = m->msg->ntensors ? &m->msg->tensors[0] : NULL;
    pl_bentry *be;
    if (b->n == b->cap) {
        uint32_t cap = b->cap ? b->cap * 2 : 8;
        pl_bentry *a = sdn_realloc(b->v, cap * sizeof(*a));
        if (a == NULL) {
            q->pending--;
            sdn_pl_nomem_fail(e, q);
            return;
        }
        b->v = a;
        b->cap = cap;
    }
    if (st->batch_rolling)
        sdn_pl_batch_forget(e, b, now);
    be = &b->v[b->n++];
    be->req = q;
    be->msg = m;
    be->rows = t0 && t0->ndim > 0 ? (uint32_t)t0->shape[0] : 1;
    b->rows += be->rows;
    if (batch_due(e, b, st))
        sdn_pl_flush(e, b, now);
    else if (b->n == 1 && st->batch_window_ns > 0 &&
             sdn_pl_timer_start(e, &b->timer, T_BATCH, now + st->batch_window_ns) < 0)
        sdn_pl_flush(e, b, now);
}

void sdn_pl_flush(seldon_pipeline_engine *e, pl_batch *b, int64_t now)
{
    const pl_step *st = &e->pipes[b->pipe].p->steps[b->step];
    pl_bentry *live = NULL, *base = NULL, *v = b->v;
    uint32_t i, n = 0, count = b->n, cap = b->cap, h = 0, nh = 0;
    uint64_t rows = 0, hrows = 0;
    pl_ref *m;

    sdn_pl_timer_stop(e, &b->timer);
    if (count == 0)
        return;
    if (st->batch_rolling)
        sdn_pl_batch_forget(e, b, now);
    /* Detached: failing a request below must not edit the queue being read. */
    b->v = NULL;
    b->n = b->cap = 0;
    b->rows = 0;
    /* Room for the earlier rows of a rolling batch in front of the requests. */
    base = sdn_malloc((count + (b->hn - b->h0)) * sizeof(*base));
    if (base == NULL) {
        for (i = 0; i < count; i++) {
            v[i].req->pending--;
            sdn_pl_nomem_fail(e, v[i].req);
        }
        goto out;
    }
    live = base + (b->hn - b->h0);
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
    if (n > 0 && st->batch_rolling) {
        h = hist_context(b, st, live, rows);
        nh = b->hn - h;
        for (i = 0; i < nh; i++) {
            pl_bentry *x = &live[(int64_t)i - (int64_t)nh];
            x->req = NULL;
            x->msg = b->h[h + i].msg;
            x->rows = b->h[h + i].rows;
            hrows += x->rows;
        }
    }
    if (n == 0) {
        sdn_free(base);
    } else if (n == 1 && nh == 0) {
        if (st->batch_rolling)
            hist_keep(e, b, st, live, 1, now);
        sdn_pl_make_call(e, b->pipe, b->step, live[0].req, live[0].msg, NULL, 0);
        sdn_free(base);
    } else {
        pl_bentry *all = live - nh;
        m = concat_batch(e, live[0].req, all, n + nh, rows + hrows, st);
        if (m == NULL) {
            for (i = 0; i < n; i++) {
                live[i].req->pending--;
                sdn_pl_nomem_fail(e, live[i].req);
            }
            sdn_free(base);
        } else {
            for (i = 0; i < nh; i++)
                all[i].msg = NULL; /* copied: the batch may let them go below */
            if (st->batch_rolling)
                hist_keep(e, b, st, live, n, now);
            if (all != base)
                memmove(base, all, (n + nh) * sizeof(*all));
            sdn_pl_make_call(e, b->pipe, b->step, base[nh].req, m, base, n + nh);
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
