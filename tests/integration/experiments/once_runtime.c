/*
 * A test runtime for a rollout that stays under way: the first load of a model
 * (the one that creates the file named by extra.marker) ends at once; every
 * other load waits for a shared lock on the file named by extra.gate, which the
 * test holds exclusively until it lets them finish (the kernel lets go of it
 * when the test process ends). With two replicas, version 2 is then served by
 * one replica while the other still loads it, so the route lists both versions.
 * Its execute is an identity on the worker threads.
 */
#include <fcntl.h>
#include <unistd.h>

#include "gate_runtime.h"

static int once_load(seldon_model *m)
{
    seldon_param gate, marker;
    int fd;
    if (seldon_model_extra(&gate, m, "gate") != 0 || gate.type != SELDON_PARAM_STRING ||
        seldon_model_extra(&marker, m, "marker") != 0 || marker.type != SELDON_PARAM_STRING)
        return seldon_model_set_error(m, "test.once: extra.gate and extra.marker are required");
    fd = open(marker.string_value, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0) { /* the first load */
        close(fd);
        return 0;
    }
    return trt_wait_gate(m, "test.once", &gate);
}

static int once_execute(seldon_model *m, seldon_infer *const *infers, size_t count)
{
    (void)m;
    return trt_identity(infers, count, "test.once");
}

static const seldon_runtime once = {SELDON_RUNTIME_ABI_MAJOR,
                                    SELDON_RUNTIME_ABI_MINOR,
                                    "test.once",
                                    0,
                                    once_load,
                                    NULL,
                                    once_execute,
                                    NULL};

SELDON_API const seldon_runtime *seldon_runtime_entry(void);

SELDON_API const seldon_runtime *seldon_runtime_entry(void)
{
    return &once;
}
