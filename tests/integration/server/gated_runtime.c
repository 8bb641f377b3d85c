/*
 * A test runtime whose load takes as long as the test wants: it creates the
 * file named by extra.started, then waits (bounded) until the file named by
 * extra.gate exists. Its execute is an identity on the worker threads.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "seldon/runtime.h"

static int gated_load(seldon_model *m)
{
    seldon_param gate, started;
    FILE *f;
    int i;
    if (seldon_model_extra(&gate, m, "gate") != 0 || gate.type != SELDON_PARAM_STRING ||
        seldon_model_extra(&started, m, "started") != 0 || started.type != SELDON_PARAM_STRING)
        return seldon_model_set_error(m, "test.gated: extra.gate and extra.started are required");
    f = fopen(started.string_value, "w");
    if (f != NULL)
        fclose(f);
    /* Up to 60 s, so that a test that fails cannot hang the suite. */
    for (i = 0; i < 12000 && access(gate.string_value, F_OK) != 0; i++) {
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

static int gated_execute(seldon_model *m, seldon_infer *const *infers, size_t count)
{
    size_t i, k;
    (void)m;
    for (i = 0; i < count; i++) {
        const seldon_msg *req = seldon_infer_request(infers[i]);
        seldon_msg *resp = seldon_infer_response(infers[i]);
        int rc = 0;
        for (k = 0; rc == 0 && k < seldon_msg_tensor_count(req); k++) {
            seldon_tensor t;
            rc = seldon_msg_tensor(&t, req, k);
            if (rc == 0)
                rc = seldon_msg_add_tensor(NULL, resp, t.name, t.name_len, t.datatype, t.shape,
                                           t.ndim, t.data, t.nbytes, SELDON_TENSOR_COPY);
        }
        seldon_infer_complete(infers[i], rc, rc ? "test.gated: cannot copy" : NULL);
    }
    return 0;
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
