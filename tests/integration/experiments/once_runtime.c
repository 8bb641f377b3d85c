/*
 * A test runtime for a rollout that stays under way: the first load of a model
 * (the one that creates the file named by extra.marker) ends at once; every
 * other load waits for a shared lock on the file named by extra.gate, which the
 * test holds exclusively until it lets them finish (the kernel lets go of it
 * when the test process ends). With two replicas, version 2 is then served by
 * one replica while the other still loads it, so the route lists both versions.
 * Its execute is an identity on the worker threads.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "seldon/runtime.h"

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
    fd = open(gate.string_value, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return seldon_model_set_error(m, "test.once: extra.gate cannot be opened");
    while (flock(fd, LOCK_SH) != 0 && errno == EINTR)
        ;
    close(fd);
    return 0;
}

static int once_execute(seldon_model *m, seldon_infer *const *infers, size_t count)
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
        seldon_infer_complete(infers[i], rc, rc ? "test.once: cannot copy" : NULL);
    }
    return 0;
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
