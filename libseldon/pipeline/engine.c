/*
 * The dataflow engine: requests, joins, triggers and timers over compiled
 * pipelines, as a deterministic state machine (batches are in batch.c).
 *
 * Every request of a pipeline (keyed by its id, hashed with xxhash) holds
 * the messages its tensors live in (the input, the models' answers, the
 * requests built for the steps), each by a reference count, and frees them
 * all when it ends. Records between steps are lists of views (message,
 * tensor index, name): selection and tensorMap change views, never bytes.
 * Joins are slots of the request, one per join point, with a window timer.
 * Timers of every kind sit in one indexed min-heap, so the next deadline is
 * its top and a cancelled timer leaves no garbage behind.
 */
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

#include "oip/msg.h"
#include "pipeline/pl.h"

/* Steps that fire each other without a model call between them, at most (the C stack). */
#define PL_MAX_DEPTH 256

#define NO_CALL UINT32_MAX

/*
 * Under AddressSanitizer nothing is pooled: a message, reference or request
 * used after its release must be caught, not quietly reused.
 */
#if defined(__SANITIZE_ADDRESS__)
#define PL_POOL 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PL_POOL 0
#endif
#endif
#ifndef PL_POOL
#define PL_POOL 1
#endif

/* ---- timers: an indexed binary min-heap ---- */

static void heap_set(seldon_pipeline_engine *e, uint32_t i, pl_timer *t)
{
    e->heap[i] = t;
    t->pos = i + 1;
}

static void heap_up(seldon_pipeline_engine *e, uint32_t i)
{
    pl_timer *t = e->heap[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (e->heap[parent]->at <= t->at)
            break;
        heap_set(e, i, e->heap[parent]);
        i = parent;
    }
    heap_set(e, i, t);
}

static void heap_down(seldon_pipeline_engine *e, uint32_t i)
{
    pl_timer *t = e->heap[i];
    for (;;) {
        uint32_t l = 2 * i + 1, m = i;
        int64_t best = t->at;
        if (l < e->heap_n && e->heap[l]->at < best) {
            m = l;
            best = e->heap[l]->at;
        }
        if (l + 1 < e->heap_n && e->heap[l + 1]->at < best)
            m = l + 1;
        if (m == i)
            break;
        heap_set(e, i, e->heap[m]);
        i = m;
    }
    heap_set(e, i, t);
}

void sdn_pl_timer_stop(seldon_pipeline_engine *e, pl_timer *t)
{
    uint32_t i;
    if (t->pos == 0)
        return;
    i = t->pos - 1;
    t->pos = 0;
    e->heap_n--;
    if (i == e->heap_n)
        return;
    heap_set(e, i, e->heap[e->heap_n]);
    heap_down(e, i);
    heap_up(e, e->heap[i]->pos - 1);
}

int sdn_pl_timer_start(seldon_pipeline_engine *e, pl_timer *t, uint32_t kind, int64_t at)
{
    sdn_pl_timer_stop(e, t);
    if (e->heap_n == e->heap_cap) {
        uint32_t cap = e->heap_cap ? e->heap_cap * 2 : 64;
        pl_timer **h = sdn_realloc(e->heap, cap * sizeof(*h));
        if (h == NULL)
            return SELDON_ENOMEM;
        e->heap = h;
        e->heap_cap = cap;
    }
    t->at = at;
    t->kind = kind;
    heap_set(e, e->heap_n++, t);
    heap_up(e, e->heap_n - 1);
    return 0;
}

/* ---- messages and references ---- */

seldon_msg *seldon_pipeline_engine_msg(seldon_pipeline_engine *engine, int32_t kind)
{
    seldon_msg *m = NULL;
    if (engine == NULL || (kind != SELDON_MSG_REQUEST && kind != SELDON_MSG_RESPONSE))
        return NULL;
    if (engine->pool_n > 0) {
        m = engine->pool[--engine->pool_n];
        seldon_msg_reset(m, kind);
        return m;
    }
    if (seldon_msg_new(&m, kind) < 0)
        return NULL;
    return m;
}

void sdn_pl_msg_recycle(seldon_pipeline_engine *e, seldon_msg *m)
{
    if (m == NULL)
        return;
    if (PL_POOL && e->pool_n < e->opt.msg_pool) {
        e->pool[e->pool_n++] = m;
    } else {
        seldon_msg_free(m);
    }
}

/* Wraps msg (taking it) in a reference with one holder; NULL (msg recycled) when out of memory. */
pl_ref *sdn_pl_ref_new(seldon_pipeline_engine *e, seldon_msg *m)
{
    pl_ref *r = e->free_refs;
    if (r != NULL)
        e->free_refs = r->next_free;
    else if ((r = sdn_malloc(sizeof(*r))) == NULL) {
        sdn_pl_msg_recycle(e, m);
        return NULL;
    }
    r->msg = m;
    r->refs = 1;
    r->next_free = NULL;
    return r;
}

void sdn_pl_ref_release(seldon_pipeline_engine *e, pl_ref *r)
{
    if (r == NULL || --r->refs > 0)
        return;
    sdn_pl_msg_recycle(e, r->msg);
    r->msg = NULL;
    if (!PL_POOL) {
        sdn_free(r);
        return;
    }
    r->next_free = e->free_refs;
    e->free_refs = r;
}

/* The request holds r (one more holder). */
static int req_hold(pl_req *q, pl_ref *r)
{
    if (q->nrefs == q->refs_cap) {
        uint32_t cap = q->refs_cap ? q->refs_cap * 2 : 8;
        void *p = sdn_arena_grow(&q->arena, q->refs, q->refs_cap * sizeof(pl_ref *),
                                 cap * sizeof(pl_ref *));
        if (p == NULL)
            return SELDON_ENOMEM;
        q->refs = p;
        q->refs_cap = cap;
    }
    r->refs++;
    q->refs[q->nrefs++] = r;
    return 0;
}

/* ---- events ---- */

static seldon_pipeline_event *ev_push(seldon_pipeline_engine *e)
{
    seldon_pipeline_event *v;
    if (e->ev_head > 0 && e->ev_head == e->ev_n) {
        e->ev_head = e->ev_n = 0;
    }
    if (e->ev_n == e->ev_cap) {
        uint32_t cap = e->ev_cap ? e->ev_cap * 2 : 16;
        if (e->ev_head > 0) { /* compact first */
            memmove(e->ev, e->ev + e->ev_head, (e->ev_n - e->ev_head) * sizeof(*e->ev));
            e->ev_n -= e->ev_head;
            e->ev_head = 0;
        } else {
            v = sdn_realloc(e->ev, cap * sizeof(*v));
            if (v == NULL)
                return NULL;
            e->ev = v;
            e->ev_cap = cap;
        }
    }
    v = &e->ev[e->ev_n++];
    memset(v, 0, sizeof(*v));
    return v;
}

int seldon_pipeline_engine_poll(seldon_pipeline_event *out, seldon_pipeline_engine *engine)
{
    if (out == NULL || engine == NULL)
        return sdn_error(SELDON_EINVAL, "pipeline_engine_poll: NULL argument");
    if (engine->ev_head == engine->ev_n)
        return 0;
    *out = engine->ev[engine->ev_head++];
    return 1;
}

/* ---- requests ---- */

static uint64_t hash_id(uint32_t pipe, const char *id, size_t len)
{
    return XXH3_64bits_withSeed(id, len, pipe + 1);
}

static pl_req *req_find(seldon_pipeline_engine *e, uint32_t pipe, const char *id, size_t len)
{
    uint64_t h = hash_id(pipe, id, len);
    pl_req *q;
    for (q = e->buckets[h & (e->nbuckets - 1)]; q != NULL; q = q->hnext)
        if (q->hash == h && q->pipe == pipe && q->id_len == len && memcmp(q->id, id, len) == 0)
            return q;
    return NULL;
}

void sdn_pl_touch(seldon_pipeline_engine *e, pl_req *q)
{
    if (q->touched || q->retired)
        return;
    q->touched = 1;
    q->tnext = e->touched;
    e->touched = q;
}

static void age_unlink(seldon_pipeline_engine *e, pl_req *q)
{
    if (!q->active)
        return;
    q->active = 0;
    e->nactive--;
    if (q->prev)
        q->prev->next = q->next;
    else
        e->oldest = q->next;
    if (q->next)
        q->next->prev = q->prev;
    else
        e->newest = q->prev;
    q->prev = q->next = NULL;
}

static int grow_buckets(seldon_pipeline_engine *e)
{
    uint32_t n = e->nbuckets * 2, i;
    pl_req **b = sdn_calloc(n, sizeof(*b));
    if (b == NULL)
        return SELDON_ENOMEM;
    for (i = 0; i < e->nbuckets; i++) {
        pl_req *q = e->buckets[i], *next;
        for (; q != NULL; q = next) {
            next = q->hnext;
            q->hnext = b[q->hash & (n - 1)];
            b[q->hash & (n - 1)] = q;
        }
    }
    sdn_free(e->buckets);
    e->buckets = b;
    e->nbuckets = n;
    return 0;
}

static pl_req *req_new(seldon_pipeline_engine *e, uint32_t pipe, const char *id, size_t len,
                       const seldon_pipeline_header *hdr, size_t nhdr, int64_t timeout_ms,
                       int64_t now)
{
    const seldon_pipeline *p = e->pipes[pipe].p;
    pl_req *q;
    size_t i;

    if (e->nactive >= e->opt.max_requests && e->oldest != NULL) {
        pl_req *old = e->oldest;
        sdn_pl_fail(e, old, SELDON_PIPELINE_ERR_OVERFLOW, SELDON_ETOOBIG,
                    "pipeline \"%s\": request dropped: more than %u requests in progress",
                    e->pipes[old->pipe].p->name, e->opt.max_requests);
    }
    if (e->nreq >= e->nbuckets && grow_buckets(e) < 0)
        return NULL;
    q = e->free_reqs;
    if (q != NULL) {
        e->free_reqs = q->tnext;
    } else {
        q = sdn_calloc(1, sizeof(*q));
        if (q == NULL)
            return NULL;
        sdn_arena_init(&q->arena, NULL, 0);
    }
    {
        sdn_arena keep = q->arena;
        memset(q, 0, sizeof(*q));
        q->arena = keep;
    }
    q->pipe = pipe;
    q->id = sdn_arena_strndup(&q->arena, id, len);
    q->id_len = (uint32_t)len;
    q->slots = sdn_arena_calloc(&q->arena, PL_JP_COUNT(p) * sizeof(pl_slot *));
    q->visits = sdn_arena_calloc(&q->arena, p->nsteps * sizeof(uint32_t));
    if (nhdr > 0)
        q->hdr = sdn_arena_alloc(&q->arena, nhdr * sizeof(*q->hdr));
    if (q->id == NULL || q->slots == NULL || q->visits == NULL || (nhdr > 0 && q->hdr == NULL))
        goto nomem;
    for (i = 0; i < nhdr; i++) {
        seldon_pipeline_header *h = &q->hdr[i];
        h->name = sdn_arena_strndup(&q->arena, hdr[i].name ? hdr[i].name : "", hdr[i].name_len);
        h->value = sdn_arena_strndup(&q->arena, hdr[i].value ? hdr[i].value : "", hdr[i].value_len);
        if (h->name == NULL || h->value == NULL)
            goto nomem;
        h->name_len = hdr[i].name_len;
        h->value_len = hdr[i].value_len;
    }
    q->nhdr = (uint32_t)nhdr;
    q->hash = hash_id(pipe, id, len);
    e->pipes[pipe].nreq++;
    q->hnext = e->buckets[q->hash & (e->nbuckets - 1)];
    e->buckets[q->hash & (e->nbuckets - 1)] = q;
    e->nreq++;
    q->active = 1;
    e->nactive++;
    q->prev = e->newest;
    if (e->newest)
        e->newest->next = q;
    else
        e->oldest = q;
    e->newest = q;
    if (timeout_ms == 0)
        timeout_ms = p->timeout_ms > 0 ? p->timeout_ms : e->opt.timeout_ms;
    if (timeout_ms > 0 && sdn_pl_timer_start(e, &q->timer, T_REQ, now + timeout_ms * 1000000) < 0) {
        sdn_pl_touch(e, q);
        sdn_pl_fail(e, q, SELDON_PIPELINE_ERR_INTERNAL, SELDON_ENOMEM, "pipeline: out of memory");
        return NULL;
    }
    return q;
nomem:
    sdn_arena_reset(&q->arena);
    q->tnext = e->free_reqs;
    e->free_reqs = q;
    return NULL;
}

/*
 * Whether a join slot keeps its request alive while it waits: an outer join
 * (it fires when the window closes), and the joins of external inputs (the
 * other pipelines' records may come later, within the window).
 */
static int slot_waits(const seldon_pipeline *p, uint32_t jp, const pl_join *j)
{
    return j->type == PL_OUTER || jp >= PL_JP_INPUT(p);
}

static void gate_clear(seldon_pipeline_engine *e, pl_gate *g)
{
    if (g->held && g->step == e->pipes[g->req->pipe].p->nsteps)
        g->req->pending--; /* the input's data waited for external triggers */
    sdn_pl_timer_stop(e, &g->timer);
    g->held = 0;
    g->rec.n = 0;
}

static void slot_clear(seldon_pipeline_engine *e, pl_req *q, pl_slot *s)
{
    const pl_join *j = pl_join_at(e->pipes[q->pipe].p, s->jp);
    if (s->timer.pos != 0 && slot_waits(e->pipes[q->pipe].p, s->jp, j))
        q->pending--;
    sdn_pl_timer_stop(e, &s->timer);
    s->mask = 0;
}

/* Drops what the request waits for (its joins, its held records, its timeout). */
static void req_quiesce(seldon_pipeline_engine *e, pl_req *q)
{
    const seldon_pipeline *p = e->pipes[q->pipe].p;
    uint32_t i;
    sdn_pl_timer_stop(e, &q->timer);
    for (i = 0; i < PL_JP_COUNT(p); i++)
        if (q->slots[i])
            slot_clear(e, q, q->slots[i]);
    if (q->gates)
        for (i = 0; i <= p->nsteps; i++)
            gate_clear(e, &q->gates[i]);
}

/* Takes the request's queued (not yet sent) batch entries out: nobody waits for them now. */
static void unbatch(seldon_pipeline_engine *e, pl_req *q)
{
    const pl_epipe *ep = &e->pipes[q->pipe];
    uint32_t s, i, n;
    for (s = 0; s < ep->p->nsteps; s++) {
        pl_batch *b = &ep->batches[s];
        for (i = 0, n = 0; i < b->n; i++) {
            if (b->v[i].req == q) {
                q->pending--;
                b->rows -= b->v[i].rows;
                continue;
            }
            b->v[n++] = b->v[i];
        }
        b->n = n;
        if (n == 0)
            sdn_pl_timer_stop(e, &b->timer);
    }
}

void sdn_pl_fail(seldon_pipeline_engine *e, pl_req *q, int32_t kind, int32_t code, const char *fmt,
                 ...)
{
    va_list ap;
    char buf[1024];
    seldon_pipeline_event *v;

    if (q->failed || q->answered)
        return;
    q->failed = 1;
    age_unlink(e, q);
    req_quiesce(e, q);
    unbatch(e, q);
    sdn_pl_touch(e, q);
    if (kind == SELDON_PIPELINE_ERR_CANCELED)
        return;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    v = ev_push(e);
    if (v == NULL)
        return;
    v->kind = SELDON_PIPELINE_EVENT_ERROR;
    v->error_kind = kind;
    v->code = code;
    v->pipeline = e->pipes[q->pipe].p->name;
    v->request_id = q->id;
    v->request_id_len = q->id_len;
    v->headers = q->hdr;
    v->headers_count = q->nhdr;
    v->error = sdn_arena_strndup(&q->arena, buf, strlen(buf));
    if (v->error == NULL)
        v->error = "pipeline: out of memory";
}

void sdn_pl_nomem_fail(seldon_pipeline_engine *e, pl_req *q)
{
    sdn_pl_fail(e, q, SELDON_PIPELINE_ERR_INTERNAL, SELDON_ENOMEM, "pipeline \"%s\": out of memory",
                e->pipes[q->pipe].p->name);
}

static void req_unhash(seldon_pipeline_engine *e, pl_req *q)
{
    pl_req **pp = &e->buckets[q->hash & (e->nbuckets - 1)];
    while (*pp != NULL && *pp != q)
        pp = &(*pp)->hnext;
    if (*pp == q)
        *pp = q->hnext;
    e->nreq--;
}

static int feeders_alive(seldon_pipeline_engine *e, pl_req *q)
{
    const pl_epipe *ep = &e->pipes[q->pipe];
    uint32_t d;
    for (d = 0; d < ep->p->ndeps; d++)
        if (req_find(e, ep->deps[d], q->id, q->id_len) != NULL)
            return 1;
    return 0;
}

/* Ends the request for good: out of the table, to the graveyard (freed once events are read). */
static void retire(seldon_pipeline_engine *e, pl_req *q)
{
    const pl_epipe *ep = &e->pipes[q->pipe];
    uint32_t i;
    age_unlink(e, q);
    req_quiesce(e, q);
    req_unhash(e, q);
    q->retired = 1;
    /* Requests of the pipelines reading this one may now have nothing left to wait for. */
    for (i = 0; i < ep->ndependents; i++) {
        pl_req *d = req_find(e, ep->dependents[i], q->id, q->id_len);
        if (d != NULL)
            sdn_pl_touch(e, d);
    }
}

/* Settles the requests touched by one operation. */
static void settle(seldon_pipeline_engine *e)
{
    while (e->touched != NULL) {
        pl_req *q = e->touched;
        e->touched = q->tnext;
        q->touched = 0;
        if (q->retired || q->pending > 0)
            continue;
        if (!q->answered && !q->failed) {
            if (feeders_alive(e, q))
                continue;
            sdn_pl_fail(
                e, q, SELDON_PIPELINE_ERR_NO_OUTPUT, SELDON_ENOTFOUND,
                "pipeline \"%s\": no output: nothing left to run (a branch was not taken, or "
                "a join or trigger never completed)",
                e->pipes[q->pipe].p->name);
            if (e->touched == q) { /* sdn_pl_fail() touched it again */
                e->touched = q->tnext;
                q->touched = 0;
            }
        }
        retire(e, q);
        q->tnext = e->grave;
        e->grave = q;
    }
}

static void slot_release(seldon_pipeline_engine *e, uint32_t i);

static void req_free(seldon_pipeline_engine *e, pl_req *q)
{
    uint32_t i;
    pl_epipe *ep = &e->pipes[q->pipe];
    if (--ep->nreq == 0 && ep->removing)
        slot_release(e, q->pipe);
    for (i = 0; i < q->nrefs; i++)
        sdn_pl_ref_release(e, q->refs[i]);
    if (!PL_POOL) {
        sdn_arena_release(&q->arena);
        sdn_free(q);
        return;
    }
    sdn_arena_reset(&q->arena);
    q->tnext = e->free_reqs;
    e->free_reqs = q;
}

/* At the start of every operation: frees what the events already read pointed at. */
static void begin(seldon_pipeline_engine *e)
{
    if (e->ev_head < e->ev_n)
        return;
    e->ev_head = e->ev_n = 0;
    while (e->grave != NULL) {
        pl_req *q = e->grave;
        e->grave = q->tnext;
        req_free(e, q);
    }
}

/* ---- records ---- */

static const sdn_tensor *tv_tensor(const pl_tv *v)
{
    return &v->ref->msg->tensors[v->idx];
}

/* A record of every tensor of r's message. */
static int rec_of(pl_req *q, pl_rec *out, pl_ref *r)
{
    uint32_t i, n = r->msg->ntensors;
    out->n = n;
    out->tv = n ? sdn_arena_alloc(&q->arena, n * sizeof(pl_tv)) : NULL;
    if (n && out->tv == NULL)
        return SELDON_ENOMEM;
    for (i = 0; i < n; i++) {
        out->tv[i].ref = r;
        out->tv[i].idx = i;
        out->tv[i].name = r->msg->tensors[i].name.p;
        out->tv[i].name_len = (uint32_t)r->msg->tensors[i].name.len;
    }
    return 0;
}

/* Selection and renaming for one source: out.n == 0 means nothing was selected. */
static int select_rec(pl_req *q, pl_rec *out, const pl_source *s, const pl_rec *in)
{
    uint32_t i, r, n = 0;
    out->n = 0;
    out->tv = sdn_arena_alloc(&q->arena, (in->n ? in->n : 1) * sizeof(pl_tv));
    if (out->tv == NULL)
        return SELDON_ENOMEM;
    for (i = 0; i < in->n; i++) {
        const pl_tv *v = &in->tv[i];
        if (s->tensor != NULL &&
            (v->name_len != s->tensor_len || memcmp(v->name, s->tensor, v->name_len) != 0))
            continue;
        out->tv[n] = *v;
        for (r = 0; r < s->nrenames; r++)
            if (s->renames[r].from_len == v->name_len &&
                memcmp(s->renames[r].from, v->name, v->name_len) == 0) {
                out->tv[n].name = s->renames[r].to;
                out->tv[n].name_len = s->renames[r].to_len;
                break;
            }
        n++;
        if (s->tensor != NULL)
            break;
    }
    out->n = n;
    return 0;
}

/* Builds a message (kind) of the record's tensors, borrowing names, shapes and data. */
static pl_ref *build_msg(seldon_pipeline_engine *e, pl_req *q, const pl_rec *rec, int32_t kind,
                         const char *model, size_t model_len)
{
    seldon_msg *m = seldon_pipeline_engine_msg(e, kind);
    pl_ref *r;
    uint32_t i;
    if (m == NULL)
        return NULL;
    if (seldon_msg_set_id(m, q->id, q->id_len) < 0 ||
        (model != NULL && seldon_msg_set_model(m, model, model_len, NULL, 0) < 0))
        goto fail;
    for (i = 0; i < rec->n; i++) {
        const sdn_tensor *src = tv_tensor(&rec->tv[i]);
        sdn_tensor *t = sdn_msg_push_tensor(m);
        if (t == NULL)
            goto fail;
        t->name.p = rec->tv[i].name;
        t->name.len = rec->tv[i].name_len;
        t->datatype = src->datatype;
        t->ndim = src->ndim;
        t->shape = src->shape;
        t->data = src->data;
        t->nbytes = src->nbytes;
        t->count = src->count;
        t->flags = SDN_TENSOR_BORROWED | (src->flags & SDN_TENSOR_BINARY);
        t->params = src->params;
        t->params.cap = t->params.n; /* a parameter added later must not write into src */
    }
    r = sdn_pl_ref_new(e, m);
    if (r == NULL)
        return NULL;
    if (req_hold(q, r) < 0) {
        sdn_pl_ref_release(e, r);
        return NULL;
    }
    r->refs--; /* the request is its one holder */
    return r;
fail:
    sdn_pl_msg_recycle(e, m);
    return NULL;
}

/* ---- dataflow ---- */

static void arrive(seldon_pipeline_engine *e, pl_req *q, uint32_t jp, uint32_t k, const pl_rec *in,
                   int64_t now);
static void emit(seldon_pipeline_engine *e, pl_req *q, uint32_t jp, const pl_rec *rec, int64_t now);

static pl_req *chained(seldon_pipeline_engine *e, pl_req *src, uint32_t pipe, int64_t now)
{
    pl_req *q = req_find(e, pipe, src->id, src->id_len);
    if (q != NULL)
        return q;
    return req_new(e, pipe, src->id, src->id_len, src->hdr, src->nhdr, 0, now);
}

/* A record appears on one of q's pipeline's streams. */
static void publish(seldon_pipeline_engine *e, pl_req *q, uint32_t stream, const pl_rec *rec,
                    int64_t now)
{
    const pl_subs *ss = &e->pipes[q->pipe].subs[stream];
    uint32_t i;
    if (ss->n > 0 && e->depth >= PL_MAX_DEPTH) {
        sdn_pl_fail(
            e, q, SELDON_PIPELINE_ERR_REVISITS, SELDON_ETOOBIG,
            "pipeline \"%s\": more than %d records passed one to another without a model call "
            "between them (a cycle through step or pipeline inputs)",
            e->pipes[q->pipe].p->name, PL_MAX_DEPTH);
        return;
    }
    e->depth++;
    for (i = 0; i < ss->n && !q->failed; i++) {
        const pl_sub *s = &ss->v[i];
        pl_req *t = s->pipe == q->pipe ? q : chained(e, q, s->pipe, now);
        if (t == NULL)
            continue;
        if (t->failed || t->retired)
            continue;
        if (t != q) {
            /* Another pipeline's request: it holds the messages too, it may outlive q. */
            uint32_t k;
            const pl_ref *last = NULL;
            for (k = 0; k < rec->n; k++) {
                if (rec->tv[k].ref == last)
                    continue;
                last = rec->tv[k].ref;
                if (req_hold(t, rec->tv[k].ref) < 0) {
                    sdn_pl_nomem_fail(e, t);
                    break;
                }
            }
            if (t->failed)
                continue;
        }
        arrive(e, t, s->jp, s->src, rec, now);
        sdn_pl_touch(e, t);
    }
    e->depth--;
}

static pl_rec concat(pl_req *q, const pl_slot *s, uint32_t n)
{
    pl_rec r = {NULL, 0};
    uint32_t i, total = 0;
    for (i = 0; i < n; i++)
        if (s->mask & (1ull << i))
            total += s->recs[i].n;
    r.tv = sdn_arena_alloc(&q->arena, (total ? total : 1) * sizeof(pl_tv));
    if (r.tv == NULL)
        return r;
    for (i = 0; i < n; i++)
        if (s->mask & (1ull << i)) {
            memcpy(r.tv + r.n, s->recs[i].tv, s->recs[i].n * sizeof(pl_tv));
            r.n += s->recs[i].n;
        }
    return r;
}

static void arrive(seldon_pipeline_engine *e, pl_req *q, uint32_t jp, uint32_t k, const pl_rec *in,
                   int64_t now)
{
    const pl_join *j = pl_join_at(e->pipes[q->pipe].p, jp);
    pl_rec sel;
    pl_slot *s;
    uint64_t full;

    if (select_rec(q, &sel, &j->src[k], in) < 0) {
        sdn_pl_nomem_fail(e, q);
        return;
    }
    if (sel.n == 0)
        return; /* nothing selected: this branch stops (conditionals) */
    if (j->n == 1 || j->type == PL_ANY) {
        emit(e, q, jp, &sel, now);
        return;
    }
    s = q->slots[jp];
    if (s == NULL) {
        s = sdn_arena_calloc(&q->arena, sizeof(pl_slot) + j->n * sizeof(pl_rec));
        if (s == NULL) {
            sdn_pl_nomem_fail(e, q);
            return;
        }
        s->req = q;
        s->jp = jp;
        q->slots[jp] = s;
    }
    if (s->mask == 0) {
        if (sdn_pl_timer_start(e, &s->timer, T_SLOT, now + j->window_ns) < 0) {
            sdn_pl_nomem_fail(e, q);
            return;
        }
        if (slot_waits(e->pipes[q->pipe].p, jp, j))
            q->pending++;
    }
    s->recs[k] = sel;
    s->mask |= 1ull << k;
    full = j->n == 64 ? ~0ull : (1ull << j->n) - 1;
    if (s->mask == full) {
        pl_rec r = concat(q, s, j->n);
        slot_clear(e, q, s);
        if (r.tv == NULL) {
            sdn_pl_nomem_fail(e, q);
            return;
        }
        emit(e, q, jp, &r, now);
    }
}

void sdn_pl_make_call(seldon_pipeline_engine *e, uint32_t pipe, uint32_t step, pl_req *q,
                      pl_ref *msg, pl_bentry *batch, uint32_t nbatch)
{
    const pl_step *st = &e->pipes[pipe].p->steps[step];
    seldon_pipeline_event *v;
    pl_call *c;
    uint32_t i;

    if (e->calls_free == NO_CALL) {
        uint32_t cap = e->calls_cap ? e->calls_cap * 2 : 64;
        pl_call *a = sdn_realloc(e->calls, cap * sizeof(*a));
        if (a == NULL)
            goto nomem;
        e->calls = a;
        for (i = e->calls_cap; i < cap; i++) {
            memset(&a[i], 0, sizeof(a[i]));
            a[i].next_free = i + 1 < cap ? i + 1 : NO_CALL;
        }
        e->calls_free = e->calls_cap;
        e->calls_cap = cap;
    }
    v = ev_push(e);
    if (v == NULL)
        goto nomem;
    i = e->calls_free;
    c = &e->calls[i];
    e->calls_free = c->next_free;
    c->gen++;
    c->live = 1;
    c->pipe = pipe;
    c->step = step;
    c->req = q;
    c->msg = msg;
    c->batch = batch;
    c->nbatch = nbatch;
    e->ncalls++;
    v->kind = SELDON_PIPELINE_EVENT_CALL;
    v->batch = nbatch ? nbatch : 1;
    v->call_id = ((uint64_t)c->gen << 32) | i;
    v->pipeline = e->pipes[pipe].p->name;
    v->step = v->model = st->name;
    v->request_id = q->id;
    v->request_id_len = q->id_len;
    v->msg = msg->msg;
    v->headers = q->hdr;
    v->headers_count = q->nhdr;
    return;
nomem:
    if (nbatch) {
        for (i = 0; i < nbatch; i++) {
            if (batch[i].req == NULL)
                continue; /* rows of a rolling batch that went before */
            batch[i].req->pending--;
            sdn_pl_nomem_fail(e, batch[i].req);
        }
        sdn_free(batch);
        sdn_pl_ref_release(e, msg);
    } else {
        q->pending--;
        sdn_pl_nomem_fail(e, q);
    }
}

static void fire(seldon_pipeline_engine *e, pl_req *q, uint32_t step, const pl_rec *rec,
                 int64_t now)
{
    const seldon_pipeline *p = e->pipes[q->pipe].p;
    const pl_step *st = &p->steps[step];
    pl_ref *m;
    pl_rec sent;

    if (p->max_revisits > 0 && q->visits[step] > (uint32_t)p->max_revisits) {
        sdn_pl_fail(e, q, SELDON_PIPELINE_ERR_REVISITS, SELDON_ETOOBIG,
                    "Max step revisits (%d) exceeded", p->max_revisits);
        return;
    }
    q->visits[step]++;
    m = build_msg(e, q, rec, SELDON_MSG_REQUEST, st->name, st->name_len);
    if (m == NULL || rec_of(q, &sent, m) < 0) {
        sdn_pl_nomem_fail(e, q);
        return;
    }
    if ((st->batch_size > 0 || st->batch_window_ns > 0) && q->answered) {
        /* Answered: a batched side branch would keep it waiting for other callers. */
        publish(e, q, pl_stream_index(PL_S_STEP_IN, (int32_t)step), &sent, now);
        return;
    }
    q->pending++;
    if (st->batch_size > 0 || st->batch_window_ns > 0) {
        sdn_pl_batch_add(e, &e->pipes[q->pipe].batches[step], q, m, now);
    } else {
        sdn_pl_make_call(e, q->pipe, step, q, m, NULL, 0);
    }
    if (!q->failed)
        publish(e, q, pl_stream_index(PL_S_STEP_IN, (int32_t)step), &sent, now);
}

static pl_gate *gate_of(seldon_pipeline_engine *e, pl_req *q, uint32_t g)
{
    const seldon_pipeline *p = e->pipes[q->pipe].p;
    if (q->gates == NULL) {
        uint32_t i;
        q->gates = sdn_arena_calloc(&q->arena, (p->nsteps + 1) * sizeof(pl_gate));
        if (q->gates == NULL)
            return NULL;
        for (i = 0; i <= p->nsteps; i++) {
            q->gates[i].req = q;
            q->gates[i].step = i;
        }
    }
    return &q->gates[g];
}

/* The data of step g (g == nsteps: the pipeline's input) passes its gate. */
static void gated(seldon_pipeline_engine *e, pl_req *q, uint32_t g, const pl_rec *rec, int64_t now)
{
    const seldon_pipeline *p = e->pipes[q->pipe].p;
    if (g == p->nsteps) {
        publish(e, q, pl_stream_index(PL_S_IN, -1), rec, now);
    } else {
        fire(e, q, g, rec, now);
    }
}

static void output(seldon_pipeline_engine *e, pl_req *q, const pl_rec *rec, int64_t now)
{
    pl_ref *m;
    seldon_pipeline_event *v;
    if (q->answered)
        return; /* the first answer wins */
    m = build_msg(e, q, rec, SELDON_MSG_RESPONSE, NULL, 0);
    v = m ? ev_push(e) : NULL;
    if (v == NULL) {
        sdn_pl_nomem_fail(e, q);
        return;
    }
    q->answered = 1;
    age_unlink(e, q);
    sdn_pl_timer_stop(e, &q->timer);
    unbatch(e, q);
    sdn_pl_touch(e, q);
    v->kind = SELDON_PIPELINE_EVENT_OUTPUT;
    v->pipeline = e->pipes[q->pipe].p->name;
    v->request_id = q->id;
    v->request_id_len = q->id_len;
    v->msg = m->msg;
    v->headers = q->hdr;
    v->headers_count = q->nhdr;
    publish(e, q, pl_stream_index(PL_S_OUT, -1), rec, now);
}

static void emit(seldon_pipeline_engine *e, pl_req *q, uint32_t jp, const pl_rec *rec, int64_t now)
{
    const seldon_pipeline *p = e->pipes[q->pipe].p;
    uint32_t g;
    const pl_join *trig;
    pl_gate *gt;

    if (q->failed)
        return;
    if (jp == PL_JP_OUTPUT(p)) {
        output(e, q, rec, now);
        return;
    }
    if (jp < 2 * p->nsteps) {
        g = jp / 2;
        trig = &p->steps[g].triggers;
    } else {
        g = p->nsteps;
        trig = &p->input_triggers;
    }
    if (trig->n == 0) {
        gated(e, q, g, rec, now);
        return;
    }
    gt = gate_of(e, q, g);
    if (gt == NULL) {
        sdn_pl_nomem_fail(e, q);
        return;
    }
    if ((jp < 2 * p->nsteps && (jp & 1)) || jp == PL_JP_INPUT_TRIG(p)) {
        /* The triggers joined: the gate opens; trigger tensors go no further. */
        gt->open = 1;
        if (gt->held) {
            pl_rec held = gt->rec;
            gate_clear(e, gt);
            gated(e, q, g, &held, now);
        }
        return;
    }
    if (gt->open) {
        gated(e, q, g, rec, now);
        return;
    }
    if (gt->held)
        gate_clear(e, gt); /* newer data replaces what waited */
    gt->rec = *rec;
    gt->held = 1;
    if (g == p->nsteps)
        q->pending++; /* external triggers may come later, within the window */
    /* + 1: triggers completing as the window closes (an outer join's) still count. */
    if (sdn_pl_timer_start(e, &gt->timer, T_GATE, now + trig->window_ns + 1) < 0)
        sdn_pl_nomem_fail(e, q);
}

/* ---- answers ---- */

static void answered(seldon_pipeline_engine *e, pl_req *q, uint32_t step, pl_ref *resp, int64_t now)
{
    pl_rec rec;
    sdn_pl_touch(e, q);
    q->pending--;
    if (q->failed || q->retired)
        return;
    if (req_hold(q, resp) < 0 || rec_of(q, &rec, resp) < 0) {
        sdn_pl_nomem_fail(e, q);
        return;
    }
    publish(e, q, pl_stream_index(PL_S_STEP_OUT, (int32_t)step), &rec, now);
}

/* The bytes of count elements of t from byte off (BYTES elements are length-prefixed). */
static size_t elems_len(const sdn_tensor *t, size_t off, uint64_t count)
{
    size_t len = 0;
    if (t->datatype == SELDON_DT_BYTES) {
        uint64_t el;
        for (el = 0; el < count && off + len + 4 <= t->nbytes; el++) {
            uint32_t l;
            memcpy(&l, t->data + off + len, 4);
            len += 4 + (size_t)l;
        }
    } else {
        len = (size_t)count * sdn_dt_size[t->datatype];
    }
    if (off > t->nbytes)
        return 0;
    return off + len > t->nbytes ? t->nbytes - off : len;
}

/*
 * Splits a batched answer back: each request gets its own rows, borrowed from
 * the answer. Rows whose caller has gone meanwhile (failed, timed out,
 * cancelled) and a rolling batch's earlier rows are skipped, never handed to
 * the next caller.
 */
static void split_answer(seldon_pipeline_engine *e, pl_call *c, pl_ref *resp, int64_t now)
{
    const seldon_msg *r = resp->msg;
    const pl_step *st = &e->pipes[c->pipe].p->steps[c->step];
    uint64_t total = 0;
    uint32_t i, k;
    size_t *off = NULL;
    const char *why = NULL;

    for (k = 0; k < c->nbatch; k++)
        total += c->batch[k].rows;
    for (i = 0; i < r->ntensors && why == NULL; i++)
        if (r->tensors[i].ndim == 0 || (uint64_t)r->tensors[i].shape[0] != total)
            why = "an output without the batch's rows in dimension 0";
    off = sdn_calloc(r->ntensors ? r->ntensors : 1, sizeof(size_t));
    if (off == NULL)
        why = "out of memory";
    for (k = 0; k < c->nbatch; k++) {
        pl_req *q = c->batch[k].req;
        uint64_t rows = c->batch[k].rows;
        seldon_msg *m;
        pl_ref *ref;
        if (why == NULL && (q == NULL || q->failed)) {
            for (i = 0; i < r->ntensors; i++)
                off[i] += elems_len(&r->tensors[i], off[i],
                                    (total ? r->tensors[i].count / total : 0) * rows);
        }
        if (q == NULL)
            continue;
        if (why != NULL || q->failed) {
            if (why != NULL && !q->failed)
                sdn_pl_fail(e, q, SELDON_PIPELINE_ERR_BATCH, SELDON_ESHAPE,
                            "%s : batched answer has %s", st->name, why);
            sdn_pl_touch(e, q);
            q->pending--;
            continue;
        }
        m = seldon_pipeline_engine_msg(e, SELDON_MSG_RESPONSE);
        if (m == NULL || seldon_msg_set_id(m, q->id, q->id_len) < 0)
            goto nomem;
        for (i = 0; i < r->ntensors; i++) {
            const sdn_tensor *src = &r->tensors[i];
            sdn_tensor *t = sdn_msg_push_tensor(m);
            uint64_t per = total ? src->count / total : 0;
            if (t == NULL)
                goto nomem;
            *t = *src;
            t->shape = sdn_arena_alloc(&m->arena, src->ndim * sizeof(int64_t));
            if (t->shape == NULL)
                goto nomem;
            memcpy(t->shape, src->shape, src->ndim * sizeof(int64_t));
            t->shape[0] = (int64_t)rows;
            t->count = per * rows;
            t->params.cap = t->params.n;
            t->data = src->data + off[i];
            t->nbytes = elems_len(src, off[i], t->count);
            t->flags = (src->flags & SDN_TENSOR_BINARY) | SDN_TENSOR_BORROWED;
        }
        /* The next caller's rows start after these, whatever happens to this one. */
        for (i = 0; i < r->ntensors; i++)
            off[i] += m->tensors[i].nbytes;
        ref = sdn_pl_ref_new(e, m);
        m = NULL;
        if (ref == NULL || req_hold(q, resp) < 0)
            goto nomem_ref;
        answered(e, q, c->step, ref, now);
        sdn_pl_ref_release(e, ref); /* answered() holds it */
        continue;
    nomem:
        /* Skip this caller's rows in the tensors not yet sliced (none were advanced). */
        for (i = 0; i < r->ntensors; i++)
            off[i] +=
                elems_len(&r->tensors[i], off[i], (total ? r->tensors[i].count / total : 0) * rows);
        sdn_pl_msg_recycle(e, m);
        ref = NULL;
    nomem_ref:
        sdn_pl_ref_release(e, ref);
        sdn_pl_touch(e, q);
        q->pending--;
        sdn_pl_nomem_fail(e, q);
    }
    sdn_free(off);
}

static pl_call *call_get(seldon_pipeline_engine *e, uint64_t id)
{
    uint32_t i = (uint32_t)id;
    if (i >= e->calls_cap || !e->calls[i].live || e->calls[i].gen != (uint32_t)(id >> 32))
        return NULL;
    return &e->calls[i];
}

static void call_done(seldon_pipeline_engine *e, pl_call *c, uint32_t i)
{
    if (c->nbatch) {
        sdn_pl_ref_release(e, c->msg); /* the batched request is the call's own */
        sdn_free(c->batch);
    }
    c->batch = NULL;
    c->nbatch = 0;
    c->msg = NULL;
    c->req = NULL;
    c->live = 0;
    c->next_free = e->calls_free;
    e->calls_free = i;
    e->ncalls--;
}

int seldon_pipeline_engine_answer(seldon_pipeline_engine *engine, uint64_t call_id,
                                  seldon_msg *response, int64_t now_ns)
{
    seldon_pipeline_engine *e = engine;
    pl_call *c;
    pl_ref *resp;
    if (e == NULL) {
        seldon_msg_free(response);
        return sdn_error(SELDON_EINVAL, "pipeline_engine_answer: NULL engine");
    }
    begin(e);
    c = call_get(e, call_id);
    if (c == NULL) {
        sdn_pl_msg_recycle(e, response);
        return sdn_error(SELDON_ENOTFOUND, "pipeline: no call %llu waits for an answer",
                         (unsigned long long)call_id);
    }
    resp = response ? sdn_pl_ref_new(e, response) : NULL;
    if (resp == NULL) {
        if (c->nbatch) {
            uint32_t k;
            for (k = 0; k < c->nbatch; k++) {
                if (c->batch[k].req == NULL)
                    continue;
                c->batch[k].req->pending--;
                sdn_pl_nomem_fail(e, c->batch[k].req);
            }
        } else {
            c->req->pending--;
            sdn_pl_fail(e, c->req, SELDON_PIPELINE_ERR_MODEL, SELDON_EINVAL, "%s : no response",
                        e->pipes[c->pipe].p->steps[c->step].name);
        }
    } else if (c->nbatch) {
        split_answer(e, c, resp, now_ns);
    } else {
        answered(e, c->req, c->step, resp, now_ns);
    }
    sdn_pl_ref_release(e, resp);
    call_done(e, c, (uint32_t)call_id);
    settle(e);
    return 0;
}

int seldon_pipeline_engine_fail(seldon_pipeline_engine *engine, uint64_t call_id, const char *error,
                                int64_t now_ns)
{
    seldon_pipeline_engine *e = engine;
    pl_call *c;
    const char *model;
    uint32_t k;
    (void)now_ns;
    if (e == NULL)
        return sdn_error(SELDON_EINVAL, "pipeline_engine_fail: NULL engine");
    begin(e);
    c = call_get(e, call_id);
    if (c == NULL)
        return sdn_error(SELDON_ENOTFOUND, "pipeline: no call %llu waits for an answer",
                         (unsigned long long)call_id);
    model = e->pipes[c->pipe].p->steps[c->step].name;
    for (k = 0; k < (c->nbatch ? c->nbatch : 1); k++) {
        pl_req *q = c->nbatch ? c->batch[k].req : c->req;
        if (q == NULL)
            continue; /* rows of a rolling batch that went before */
        q->pending--;
        sdn_pl_touch(e, q);
        sdn_pl_fail(e, q, SELDON_PIPELINE_ERR_MODEL, SELDON_EIO, "%s : %s", model,
                    error ? error : "error");
    }
    call_done(e, c, (uint32_t)call_id);
    settle(e);
    return 0;
}

/* ---- entry points ---- */

static uint32_t pipe_index(const seldon_pipeline_engine *e, const char *name, size_t len)
{
    uint32_t i;
    for (i = 0; i < e->npipes; i++)
        if (e->pipes[i].p != NULL && !e->pipes[i].removing && e->pipes[i].p->name_len == len &&
            memcmp(e->pipes[i].p->name, name, len) == 0)
            return i;
    return UINT32_MAX;
}

int seldon_pipeline_engine_push(seldon_pipeline_engine *engine, const char *pipeline,
                                const char *request_id, size_t request_id_len,
                                const seldon_pipeline_header *headers, size_t headers_count,
                                seldon_msg *inputs, int64_t timeout_ms, int64_t now_ns)
{
    seldon_pipeline_engine *e = engine;
    uint32_t pi;
    pl_req *q;
    pl_ref *r;
    pl_rec rec;
    int rc = 0;

    if (e == NULL || pipeline == NULL || (request_id == NULL && request_id_len > 0) ||
        inputs == NULL || (headers == NULL && headers_count > 0)) {
        seldon_msg_free(inputs);
        return sdn_error(SELDON_EINVAL, "pipeline_engine_push: NULL argument");
    }
    begin(e);
    pi = pipe_index(e, pipeline, strlen(pipeline));
    if (pi == UINT32_MAX) {
        sdn_pl_msg_recycle(e, inputs);
        return sdn_error(SELDON_ENOTFOUND, "pipeline \"%.200s\": not in this engine", pipeline);
    }
    if (request_id == NULL)
        request_id = "";
    if (req_find(e, pi, request_id, request_id_len) != NULL) {
        sdn_pl_msg_recycle(e, inputs);
        return sdn_error(SELDON_EEXIST, "pipeline \"%s\": request \"%.*s\" is already running",
                         e->pipes[pi].p->name, (int)(request_id_len > 200 ? 200 : request_id_len),
                         request_id);
    }
    q = req_new(e, pi, request_id, request_id_len, headers, headers_count, timeout_ms, now_ns);
    r = q ? sdn_pl_ref_new(e, inputs) : NULL;
    if (r == NULL) {
        if (q == NULL)
            sdn_pl_msg_recycle(e, inputs);
        else
            sdn_pl_nomem_fail(e, q);
        rc = sdn_error(SELDON_ENOMEM, "pipeline: out of memory");
        goto out;
    }
    if (req_hold(q, r) < 0 || rec_of(q, &rec, r) < 0) {
        sdn_pl_ref_release(e, r);
        sdn_pl_nomem_fail(e, q);
        rc = sdn_error(SELDON_ENOMEM, "pipeline: out of memory");
        goto out;
    }
    sdn_pl_ref_release(e, r);
    sdn_pl_touch(e, q);
    publish(e, q, pl_stream_index(PL_S_IN, -1), &rec, now_ns);
out:
    settle(e);
    return rc;
}

int seldon_pipeline_engine_cancel(seldon_pipeline_engine *engine, const char *pipeline,
                                  const char *request_id, size_t request_id_len, int64_t now_ns)
{
    uint32_t pi;
    pl_req *q;
    (void)now_ns;
    if (engine == NULL || pipeline == NULL || (request_id == NULL && request_id_len > 0))
        return sdn_error(SELDON_EINVAL, "pipeline_engine_cancel: NULL argument");
    begin(engine);
    pi = pipe_index(engine, pipeline, strlen(pipeline));
    q = pi == UINT32_MAX ? NULL
                         : req_find(engine, pi, request_id ? request_id : "", request_id_len);
    if (q == NULL || q->failed || q->answered)
        return sdn_error(SELDON_ENOTFOUND, "pipeline: no such request in progress");
    sdn_pl_fail(engine, q, SELDON_PIPELINE_ERR_CANCELED, SELDON_ECANCELED, "canceled");
    settle(engine);
    return 0;
}

static void on_timer(seldon_pipeline_engine *e, pl_timer *t, int64_t now)
{
    switch (t->kind) {
    case T_REQ: {
        pl_req *q = (pl_req *)(void *)((char *)t - offsetof(pl_req, timer));
        sdn_pl_touch(e, q);
        sdn_pl_fail(e, q, SELDON_PIPELINE_ERR_TIMEOUT, SELDON_ETIMEDOUT,
                    "pipeline \"%s\": request timed out", e->pipes[q->pipe].p->name);
        break;
    }
    case T_SLOT: {
        pl_slot *s = (pl_slot *)(void *)t;
        pl_req *q = s->req;
        const pl_join *j = pl_join_at(e->pipes[q->pipe].p, s->jp);
        sdn_pl_touch(e, q);
        if (j->type == PL_OUTER) {
            /* The window closed: an outer join sends what it has. */
            pl_rec r = concat(q, s, j->n);
            q->pending--;
            s->mask = 0;
            if (r.tv == NULL)
                sdn_pl_nomem_fail(e, q);
            else
                emit(e, q, s->jp, &r, now);
        } else {
            if (slot_waits(e->pipes[q->pipe].p, s->jp, j))
                q->pending--;
            s->mask = 0; /* an inner join drops its partial record */
        }
        break;
    }
    case T_GATE: {
        pl_gate *g = (pl_gate *)(void *)t;
        sdn_pl_touch(e, g->req);
        if (g->held && g->step == e->pipes[g->req->pipe].p->nsteps)
            g->req->pending--;
        g->held = 0;
        break;
    }
    case T_BATCH:
        sdn_pl_flush(e, (pl_batch *)(void *)t, now);
        break;
    default:
        break;
    }
}

int seldon_pipeline_engine_advance(seldon_pipeline_engine *engine, int64_t now_ns)
{
    seldon_pipeline_engine *e = engine;
    if (e == NULL)
        return sdn_error(SELDON_EINVAL, "pipeline_engine_advance: NULL engine");
    begin(e);
    while (e->heap_n > 0 && e->heap[0]->at <= now_ns) {
        pl_timer *t = e->heap[0];
        sdn_pl_timer_stop(e, t);
        on_timer(e, t, now_ns);
        settle(e);
    }
    settle(e);
    return 0;
}

int64_t seldon_pipeline_engine_deadline(const seldon_pipeline_engine *engine)
{
    if (engine == NULL || engine->heap_n == 0)
        return INT64_MAX;
    return engine->heap[0]->at;
}

size_t seldon_pipeline_engine_requests(const seldon_pipeline_engine *engine)
{
    return engine ? engine->nreq : 0;
}

size_t seldon_pipeline_engine_calls(const seldon_pipeline_engine *engine)
{
    return engine ? engine->ncalls : 0;
}

/* ---- construction ---- */

static int add_sub(pl_subs *ss, uint32_t pipe, uint32_t jp, uint32_t src)
{
    pl_sub *v = sdn_realloc(ss->v, (ss->n + 1) * sizeof(*v));
    if (v == NULL)
        return SELDON_ENOMEM;
    ss->v = v;
    v[ss->n].pipe = pipe;
    v[ss->n].jp = jp;
    v[ss->n].src = src;
    ss->n++;
    return 0;
}

/* Fills slot i for p: its subscription lists and batches (not yet wired). */
static int slot_fill(seldon_pipeline_engine *e, uint32_t i, const seldon_pipeline *p)
{
    pl_epipe *ep = &e->pipes[i];
    uint32_t k;
    memset(ep, 0, sizeof(*ep));
    ep->p = p;
    pl_retain(p);
    ep->subs = sdn_calloc(2 + 2 * p->nsteps, sizeof(pl_subs));
    ep->deps = sdn_calloc(p->ndeps ? p->ndeps : 1, sizeof(uint32_t));
    ep->batches = sdn_calloc(p->nsteps ? p->nsteps : 1, sizeof(pl_batch));
    if (ep->subs == NULL || ep->deps == NULL || ep->batches == NULL)
        return SELDON_ENOMEM;
    for (k = 0; k < p->nsteps; k++) {
        ep->batches[k].pipe = i;
        ep->batches[k].step = k;
    }
    return 0;
}

/* Frees slot i (its pipeline released). */
static void slot_release(seldon_pipeline_engine *e, uint32_t i)
{
    pl_epipe *ep = &e->pipes[i];
    uint32_t k;
    if (ep->p == NULL)
        return;
    if (ep->subs)
        for (k = 0; k < 2 + 2 * ep->p->nsteps; k++)
            sdn_free(ep->subs[k].v);
    if (ep->batches)
        for (k = 0; k < ep->p->nsteps; k++) {
            sdn_pl_timer_stop(e, &ep->batches[k].timer);
            sdn_free(ep->batches[k].v);
            sdn_pl_batch_forget(e, &ep->batches[k], INT64_MAX);
        }
    sdn_free(ep->subs);
    sdn_free(ep->deps);
    sdn_free(ep->dependents);
    sdn_free(ep->batches);
    seldon_pipeline_free((seldon_pipeline *)(uintptr_t)ep->p);
    memset(ep, 0, sizeof(*ep));
}

/* Takes slot i's subscriptions off every stream, and i out of every dependents list. */
static void detach(seldon_pipeline_engine *e, uint32_t i)
{
    uint32_t t, k, a, n;
    for (t = 0; t < e->npipes; t++) {
        pl_epipe *ep = &e->pipes[t];
        if (ep->p == NULL || t == i)
            continue;
        for (k = 0; k < 2 + 2 * ep->p->nsteps; k++) {
            pl_subs *ss = &ep->subs[k];
            for (a = 0, n = 0; a < ss->n; a++)
                if (ss->v[a].pipe != i)
                    ss->v[n++] = ss->v[a];
            ss->n = n;
        }
        for (a = 0, n = 0; a < ep->ndependents; a++)
            if (ep->dependents[a] != i)
                ep->dependents[n++] = ep->dependents[a];
        ep->ndependents = n;
    }
}

static int step_by_name(const seldon_pipeline *p, const char *name)
{
    uint32_t k;
    for (k = 0; k < p->nsteps; k++)
        if (strcmp(p->steps[k].name, name) == 0)
            return (int)k;
    return -1;
}

/* Wires slot i: its dependencies by name, its sources onto the streams they read. */
static int attach(seldon_pipeline_engine *e, uint32_t i)
{
    const seldon_pipeline *p = e->pipes[i].p;
    uint32_t jp, k, d;

    /* Check everything first, so a refusal changes nothing. */
    for (d = 0; d < p->ndeps; d++) {
        uint32_t di = pipe_index(e, p->deps[d], strlen(p->deps[d]));
        if (di == UINT32_MAX || di == i)
            return sdn_error(SELDON_EINVAL,
                             "pipeline \"%s\" reads pipeline \"%s\", which is not in the engine",
                             p->name, p->deps[d]);
        e->pipes[i].deps[d] = di;
    }
    for (jp = 0; jp < PL_JP_COUNT(p); jp++) {
        const pl_join *j = pl_join_at(p, jp);
        for (k = 0; k < j->n; k++) {
            const pl_source *s = &j->src[k];
            if (s->pipe >= 0 && s->step_name != NULL &&
                step_by_name(e->pipes[e->pipes[i].deps[s->pipe]].p, s->step_name) < 0)
                return sdn_error(SELDON_EINVAL,
                                 "pipeline \"%s\" reads step \"%s\" of pipeline \"%s\", which "
                                 "has no such step in the engine",
                                 p->name, s->step_name, p->deps[s->pipe]);
        }
    }
    for (d = 0; d < p->ndeps; d++) {
        pl_epipe *dep = &e->pipes[e->pipes[i].deps[d]];
        uint32_t *v = sdn_realloc(dep->dependents, (dep->ndependents + 1) * sizeof(uint32_t));
        if (v == NULL)
            goto nomem;
        v[dep->ndependents++] = i;
        dep->dependents = v;
    }
    for (jp = 0; jp < PL_JP_COUNT(p); jp++) {
        const pl_join *j = pl_join_at(p, jp);
        for (k = 0; k < j->n; k++) {
            const pl_source *s = &j->src[k];
            uint32_t target = s->pipe < 0 ? i : e->pipes[i].deps[s->pipe];
            int32_t step = s->step;
            if (s->pipe >= 0 && s->step_name != NULL)
                step = step_by_name(e->pipes[target].p, s->step_name);
            if (add_sub(&e->pipes[target].subs[pl_stream_index(s->stream, step)], i, jp, k) < 0)
                goto nomem;
        }
    }
    return 0;
nomem:
    detach(e, i);
    return sdn_error(SELDON_ENOMEM, "pipeline: out of memory");
}

int seldon_pipeline_engine_new(seldon_pipeline_engine **out,
                               const seldon_pipeline *const *pipelines, size_t count,
                               const seldon_pipeline_options *options)
{
    seldon_pipeline_engine *e;
    uint32_t i;
    int rc = SELDON_ENOMEM;

    if (out == NULL || (pipelines == NULL && count > 0))
        return sdn_error(SELDON_EINVAL, "pipeline_engine_new: NULL argument");
    *out = NULL;
    if (options != NULL && options->version != SELDON_PIPELINE_OPTIONS_VERSION)
        return sdn_error(SELDON_EINVAL, "pipeline_engine_new: options version %u, expected %d",
                         options->version, SELDON_PIPELINE_OPTIONS_VERSION);
    for (i = 0; i < count; i++)
        if (pipelines[i] == NULL)
            return sdn_error(SELDON_EINVAL, "pipeline_engine_new: pipelines[%u] is NULL", i);
    e = sdn_calloc(1, sizeof(*e));
    if (e == NULL)
        return sdn_error(SELDON_ENOMEM, "pipeline: out of memory");
    if (options != NULL) {
        e->opt = *options;
    } else {
        seldon_pipeline_options def = SELDON_PIPELINE_OPTIONS_INIT;
        e->opt = def;
    }
    if (e->opt.max_requests == 0)
        e->opt.max_requests = 65536;
    if (e->opt.max_batch == 0)
        e->opt.max_batch = 1024;
    if (e->opt.msg_pool == 0)
        e->opt.msg_pool = 256;
    e->calls_free = NO_CALL;
    e->nbuckets = 256;
    e->buckets = sdn_calloc(e->nbuckets, sizeof(*e->buckets));
    e->pool = sdn_calloc(e->opt.msg_pool, sizeof(*e->pool));
    e->pipes = sdn_calloc(count ? count : 1, sizeof(*e->pipes));
    if (e->buckets == NULL || e->pool == NULL || e->pipes == NULL)
        goto fail;
    for (i = 0; i < count; i++) {
        const seldon_pipeline *p = pipelines[i];
        if (pipe_index(e, p->name, p->name_len) != UINT32_MAX) {
            rc = sdn_error(SELDON_EINVAL, "pipeline_engine_new: pipeline \"%s\" twice", p->name);
            goto fail;
        }
        e->npipes = i + 1;
        if (slot_fill(e, i, p) < 0)
            goto fail;
    }
    for (i = 0; i < count; i++) {
        rc = attach(e, i);
        if (rc < 0)
            goto fail;
    }
    *out = e;
    return 0;
fail:
    if (rc == SELDON_ENOMEM)
        sdn_error(SELDON_ENOMEM, "pipeline: out of memory");
    seldon_pipeline_engine_free(e);
    return rc;
}

int seldon_pipeline_engine_add(seldon_pipeline_engine *engine, const seldon_pipeline *pipeline)
{
    seldon_pipeline_engine *e = engine;
    uint32_t i;
    int rc;
    if (e == NULL || pipeline == NULL)
        return sdn_error(SELDON_EINVAL, "pipeline_engine_add: NULL argument");
    begin(e);
    if (pipe_index(e, pipeline->name, pipeline->name_len) != UINT32_MAX)
        return sdn_error(SELDON_EEXIST, "pipeline \"%s\": already in the engine", pipeline->name);
    for (i = 0; i < e->npipes; i++)
        if (e->pipes[i].p == NULL)
            break;
    if (i == e->npipes) {
        pl_epipe *v = sdn_realloc(e->pipes, (e->npipes + 1) * sizeof(*v));
        if (v == NULL)
            return sdn_error(SELDON_ENOMEM, "pipeline: out of memory");
        e->pipes = v;
        memset(&v[e->npipes], 0, sizeof(*v));
        e->npipes++;
    }
    rc = slot_fill(e, i, pipeline);
    if (rc == 0)
        rc = attach(e, i);
    if (rc < 0) {
        if (rc == SELDON_ENOMEM)
            sdn_error(SELDON_ENOMEM, "pipeline: out of memory");
        slot_release(e, i);
        return rc;
    }
    return 0;
}

int seldon_pipeline_engine_remove(seldon_pipeline_engine *engine, const char *name, int64_t now_ns)
{
    seldon_pipeline_engine *e = engine;
    uint32_t i, b, k;
    pl_epipe *ep;
    (void)now_ns;
    if (e == NULL || name == NULL)
        return sdn_error(SELDON_EINVAL, "pipeline_engine_remove: NULL argument");
    begin(e);
    i = pipe_index(e, name, strlen(name));
    if (i == UINT32_MAX)
        return sdn_error(SELDON_ENOTFOUND, "pipeline \"%.200s\": not in the engine", name);
    ep = &e->pipes[i];
    for (k = 0; k < ep->ndependents; k++)
        if (ep->dependents[k] != i)
            return sdn_error(SELDON_ESTATE, "pipeline \"%s\": pipeline \"%s\" reads it",
                             ep->p->name, e->pipes[ep->dependents[k]].p->name);
    detach(e, i);
    ep->removing = 1;
    for (b = 0; b < e->nbuckets; b++) {
        pl_req *q;
        for (q = e->buckets[b]; q != NULL; q = q->hnext)
            if (q->pipe == i) {
                sdn_pl_touch(e, q);
                sdn_pl_fail(e, q, SELDON_PIPELINE_ERR_UNLOADED, SELDON_EUNAVAIL,
                            "pipeline \"%s\": unloaded", ep->p->name);
            }
    }
    settle(e);
    if (ep->nreq == 0)
        slot_release(e, i);
    return 0;
}

void seldon_pipeline_engine_free(seldon_pipeline_engine *engine)
{
    seldon_pipeline_engine *e = engine;
    uint32_t i, k;
    pl_req *q, *next;
    if (e == NULL)
        return;
    e->heap_n = 0; /* the timers go with their owners below */
    /* Every request, live or in the graveyard. */
    for (i = 0; i < e->nbuckets && e->buckets; i++)
        for (q = e->buckets[i]; q != NULL; q = next) {
            next = q->hnext;
            for (k = 0; k < q->nrefs; k++)
                sdn_pl_ref_release(e, q->refs[k]);
            sdn_arena_release(&q->arena);
            sdn_free(q);
        }
    for (q = e->grave; q != NULL; q = next) {
        next = q->tnext;
        for (k = 0; k < q->nrefs; k++)
            sdn_pl_ref_release(e, q->refs[k]);
        sdn_arena_release(&q->arena);
        sdn_free(q);
    }
    for (q = e->free_reqs; q != NULL; q = next) {
        next = q->tnext;
        sdn_arena_release(&q->arena);
        sdn_free(q);
    }
    for (i = 0; i < e->calls_cap; i++)
        if (e->calls[i].live && e->calls[i].nbatch) {
            sdn_pl_ref_release(e, e->calls[i].msg);
            sdn_free(e->calls[i].batch);
        }
    for (i = 0; i < e->npipes; i++)
        slot_release(e, i);
    while (e->free_refs != NULL) {
        pl_ref *r = e->free_refs;
        e->free_refs = r->next_free;
        sdn_free(r);
    }
    for (i = 0; i < e->pool_n; i++)
        seldon_msg_free(e->pool[i]);
    sdn_free(e->pool);
    sdn_free(e->pipes);
    sdn_free(e->buckets);
    sdn_free(e->heap);
    sdn_free(e->calls);
    sdn_free(e->ev);
    sdn_free(e);
}
