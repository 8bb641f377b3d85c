/* The test runtime plugins' shared parts (gate_runtime.h). */
#include "gate_runtime.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <unistd.h>

int trt_wait_gate(seldon_model *m, const char *runtime, const seldon_param *gate)
{
    char why[128];
    int fd = open(gate->string_value, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, sizeof(why), "%s: extra.gate cannot be opened", runtime);
        return seldon_model_set_error(m, why);
    }
    while (flock(fd, LOCK_SH) != 0 && errno == EINTR)
        ;
    close(fd);
    return 0;
}

int trt_identity(seldon_infer *const *infers, size_t count, const char *runtime)
{
    char why[128];
    size_t i, k;
    snprintf(why, sizeof(why), "%s: cannot copy", runtime);
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
        seldon_infer_complete(infers[i], rc, rc ? why : NULL);
    }
    return 0;
}
