/*
 * Pipelines, internal: the compiled graph shared by the compiler and the engine.
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
    const char *canon; /* "s.outputs", "p.inputs", "q.step.s.outputs": the tensorMap prefix */
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

#endif
