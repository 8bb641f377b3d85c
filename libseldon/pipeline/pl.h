/*
 * Pipelines, internal: the compiled graph shared by the compiler and the engine,
 * and the engine's state shared by engine.c and batch.c.
 */
#ifndef SDN_PIPELINE_PL_H
#define SDN_PIPELINE_PL_H

#include <stdatomic.h>

#include "seldon/pipeline.h"
#include "core/core.h"

/* Join types. */
#define PL_INNER 0
#define PL_OUTER 1
#define PL_ANY 2

/* Streams of a pipeline: what a source reads. */
#define PL_S_IN 0       /* the pipeline's inputs */
#define PL_S_OUT 1      /* the pipeline's outputs */
#define PL_S_STEP_IN 2  /* a step's request */
#define PL_S_STEP_OUT 3 /* a step's answer */

/* The stream index of a pipeline: IN 0, OUT 1, step s's request 2+2s, its answer 3+2s. */
static inline uint32_t pl_stream_index(int32_t stream, int32_t step)
{
    switch (stream) {
    case PL_S_IN:
        return 0;
    case PL_S_OUT:
        return 1;
    case PL_S_STEP_IN:
        return 2 + 2 * (uint32_t)step;
    default:
        return 3 + 2 * (uint32_t)step;
    }
}

typedef struct pl_rename {
    const char *from;
    const char *to;
    uint32_t from_len;
    uint32_t to_len;
} pl_rename;

typedef struct pl_source {
    int32_t pipe;       /* -1: this pipeline; else an index into seldon_pipeline.deps */
    int32_t stream;     /* PL_S_* */
    int32_t step;       /* step index in that pipeline, -1 for the pipeline's streams */
    const char *tensor; /* NULL: every tensor */
    uint32_t tensor_len;
    const char *canon;     /* "s.outputs", "p.inputs", "q.step.s.outputs": the tensorMap prefix */
    const char *step_name; /* another pipeline's step: found by name where the engine runs it */
    pl_rename *renames;
    uint32_t nrenames;
} pl_source;

typedef struct pl_join {
    int32_t type; /* PL_INNER... */
    int64_t window_ns;
    pl_source *src;
    uint32_t n;
} pl_join;

typedef struct pl_step {
    const char *name;
    uint32_t name_len;
    pl_join inputs;   /* at least one source (the pipeline's inputs by default) */
    pl_join triggers; /* n == 0: none */
    int32_t batch_size;
    int64_t batch_window_ns;
    int32_t batch_rolling; /* a sliding batch: each call carries the rows before it (batch.c) */
} pl_step;

/* Join points: step s's inputs 2s, its triggers 2s+1, then output, input, input triggers. */
#define PL_JP_OUTPUT(p) (2 * (p)->nsteps)
#define PL_JP_INPUT(p) (2 * (p)->nsteps + 1)
#define PL_JP_INPUT_TRIG(p) (2 * (p)->nsteps + 2)
#define PL_JP_COUNT(p) (2 * (p)->nsteps + 3)

struct seldon_pipeline {
    _Atomic uint32_t refs; /* the caller's, plus one per engine running it */
    const char *name;
    uint32_t name_len;
    pl_step *steps;
    uint32_t nsteps;
    pl_join output;
    pl_join input;          /* external inputs (n == 0: none) */
    pl_join input_triggers; /* external triggers */
    const char **deps;      /* pipelines read through external inputs and triggers */
    uint32_t ndeps;
    int32_t has_cycles;
    int32_t max_revisits; /* 0: unbounded (no cycles) */
    int64_t timeout_ms;   /* spec.timeoutMs; 0: absent */
    sdn_arena arena;      /* everything above lives here */
};

static inline void pl_retain(const seldon_pipeline *p)
{
    atomic_fetch_add(&((seldon_pipeline *)(uintptr_t)p)->refs, 1);
}

static inline const pl_join *pl_join_at(const seldon_pipeline *p, uint32_t jp)
{
    if (jp < 2 * p->nsteps)
        return (jp & 1) ? &p->steps[jp / 2].triggers : &p->steps[jp / 2].inputs;
    if (jp == PL_JP_OUTPUT(p))
        return &p->output;
    if (jp == PL_JP_INPUT(p))
        return &p->input;
    return &p->input_triggers;
}

/* ---- the engine (engine.c, batch.c) ---- */

typedef struct pl_ref {
    seldon_msg *msg;
    uint32_t refs;
    struct pl_ref *next_free;
} pl_ref;

typedef struct pl_tv {
    pl_ref *ref;
    uint32_t idx;
    uint32_t name_len;
    const char *name;
} pl_tv;

typedef struct pl_rec {
    pl_tv *tv;
    uint32_t n;
} pl_rec;

#define T_REQ 1
#define T_SLOT 2
#define T_GATE 3
#define T_BATCH 4

typedef struct pl_timer {
    int64_t at;
    uint32_t pos; /* heap index + 1; 0 when not armed */
    uint32_t kind;
} pl_timer;

struct pl_req;

typedef struct pl_slot {
    pl_timer timer;
    struct pl_req *req;
    uint32_t jp;
    uint64_t mask;
    pl_rec recs[]; /* one per source */
} pl_slot;

/* A step (or the pipeline's input) gated by triggers: its data waits here for them. */
typedef struct pl_gate {
    pl_timer timer;
    struct pl_req *req;
    uint32_t step; /* nsteps: the pipeline's input */
    uint8_t open;
    uint8_t held;
    pl_rec rec;
} pl_gate;

typedef struct pl_req {
    struct pl_req *hnext;
    struct pl_req *prev, *next; /* the age list of active requests */
    struct pl_req *tnext;       /* touched list / graveyard / free list */
    uint64_t hash;
    uint32_t pipe;
    uint32_t pending; /* calls, batch entries and outer windows that may still move it */
    uint8_t answered, failed, retired, touched, active;
    char *id;
    uint32_t id_len;
    seldon_pipeline_header *hdr;
    uint32_t nhdr;
    pl_timer timer;
    pl_slot **slots;  /* per join point, lazily */
    pl_gate *gates;   /* per step + 1 (input), lazily */
    uint32_t *visits; /* per step */
    pl_ref **refs;
    uint32_t nrefs, refs_cap;
    sdn_arena arena;
} pl_req;

typedef struct pl_sub {
    uint32_t pipe, jp, src;
} pl_sub;

typedef struct pl_subs {
    pl_sub *v;
    uint32_t n;
} pl_subs;

typedef struct pl_bentry {
    pl_req *req; /* NULL in a call: rows of a rolling batch that went before */
    pl_ref *msg;
    uint32_t rows;
} pl_bentry;

/* Rows a rolling batch sent, kept to go again: a copy of one request's tensors. */
typedef struct pl_hentry {
    pl_ref *msg;
    uint32_t rows;
    int64_t at; /* when it was sent */
} pl_hentry;

typedef struct pl_batch {
    pl_timer timer;
    uint32_t pipe, step;
    pl_bentry *v; /* queued, not yet sent */
    uint32_t n, cap;
    uint64_t rows;
    pl_hentry *h; /* rolling: sent before, oldest first (h[h0..hn)) */
    uint32_t h0, hn, hcap;
    uint64_t hrows;
} pl_batch;

typedef struct pl_epipe {
    const seldon_pipeline *p; /* NULL: a free slot */
    uint32_t nreq;            /* its requests, live or not yet freed */
    uint8_t removing;         /* removed; the slot frees with its last request */
    pl_subs *subs;            /* per stream index (2 + 2 * nsteps) */
    uint32_t *deps;           /* engine index of each dependency */
    uint32_t *dependents;     /* engine indexes of pipelines reading this one */
    uint32_t ndependents;
    pl_batch *batches; /* per step */
} pl_epipe;

typedef struct pl_call {
    uint32_t gen;
    uint8_t live;
    uint32_t pipe, step;
    pl_req *req;      /* unbatched */
    pl_ref *msg;      /* the request sent */
    pl_bentry *batch; /* batched: the requests in it */
    uint32_t nbatch;
    uint32_t next_free;
} pl_call;

struct seldon_pipeline_engine {
    seldon_pipeline_options opt;
    pl_epipe *pipes;
    uint32_t npipes;
    pl_req **buckets;
    uint32_t nbuckets;
    uint32_t nreq;
    uint32_t nactive;
    pl_req *oldest, *newest;
    pl_timer **heap;
    uint32_t heap_n, heap_cap;
    pl_call *calls;
    uint32_t calls_cap, calls_free, ncalls;
    seldon_pipeline_event *ev;
    uint32_t ev_head, ev_n, ev_cap;
    pl_req *touched;
    pl_req *grave;
    pl_req *free_reqs;
    pl_ref *free_refs;
    seldon_msg **pool;
    uint32_t pool_n;
    uint32_t depth; /* steps fired inside one another (through step.inputs references) */
};

/* Shared by the engine's files: engine.c defines these, batch.c the sdn_pl_batch and flush ones. */
pl_ref *sdn_pl_ref_new(seldon_pipeline_engine *e, seldon_msg *m);
void sdn_pl_ref_release(seldon_pipeline_engine *e, pl_ref *r);
int sdn_pl_timer_start(seldon_pipeline_engine *e, pl_timer *t, uint32_t kind, int64_t at);
void sdn_pl_msg_recycle(seldon_pipeline_engine *e, seldon_msg *m);
void sdn_pl_timer_stop(seldon_pipeline_engine *e, pl_timer *t);
void sdn_pl_touch(seldon_pipeline_engine *e, pl_req *q);
void sdn_pl_fail(seldon_pipeline_engine *e, pl_req *q, int32_t kind, int32_t code, const char *fmt,
                 ...) SDN_PRINTF(5, 6);
void sdn_pl_nomem_fail(seldon_pipeline_engine *e, pl_req *q);
void sdn_pl_make_call(seldon_pipeline_engine *e, uint32_t pipe, uint32_t step, pl_req *q,
                      pl_ref *msg, pl_bentry *batch, uint32_t nbatch);
/* Queues q's step request m (q->pending counted) in step b's batch; flushes it when due. */
void sdn_pl_batch_add(seldon_pipeline_engine *e, pl_batch *b, pl_req *q, pl_ref *m, int64_t now);
/* Sends b's queued requests as one call (with a rolling batch's earlier rows). */
void sdn_pl_flush(seldon_pipeline_engine *e, pl_batch *b, int64_t now);
/* Drops a rolling batch's earlier rows: all (now 0), or those older than its window. */
void sdn_pl_batch_forget(seldon_pipeline_engine *e, pl_batch *b, int64_t now);

#endif
