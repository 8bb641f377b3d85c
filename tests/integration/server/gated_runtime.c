/*
 * A test runtime whose load takes as long as the test wants: it creates the
 * file named by extra.started, then waits for a shared lock on the file named by
 * extra.gate, which the test holds exclusively until it lets the load finish (the
 * kernel lets go of it when the test process ends, so a failed test cannot hang the
 * suite). Its execute is an identity on the worker threads.
 */
#include <stdio.h>

#include "gate_runtime.h"

static int gated_load(seldon_model *m)
{
    seldon_param gate, started;
    FILE *f;
    if (seldon_model_extra(&gate, m, "gate") != 0 || gate.type != SELDON_PARAM_STRING ||
        seldon_model_extra(&started, m, "started") != 0 || started.type != SELDON_PARAM_STRING)
        return seldon_model_set_error(m, "test.gated: extra.gate and extra.started are required");
    f = fopen(started.string_value, "w");
    if (f != NULL)
        fclose(f);
    return trt_wait_gate(m, "test.gated", &gate);
}

static int gated_execute(seldon_model *m, seldon_infer *const *infers, size_t count)
{
    (void)m;
    return trt_identity(infers, count, "test.gated");
}

static const seldon_runtime gated = {SELDON_RUNTIME_ABI_MAJOR,
                                     SELDON_RUNTIME_ABI_MINOR,
                                     "test.gated",
                                     0,
                                     gated_load,
                                     NULL,
                                     gated_execute,
                                     NULL};

SELDON_API const seldon_runtime *seldon_runtime_entry(void);

SELDON_API const seldon_runtime *seldon_runtime_entry(void)
{
    return &gated;
}
