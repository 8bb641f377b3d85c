/*
 * gRPC: the gRPC transport in, seldon_service_grpc(), bytes out. Every
 * method of inference.GRPCInferenceService goes through one handler; the
 * method path tells the service which.
 */
#include <string.h>

#include "server.h"

static void unary_done(void *user_data, int32_t status, const char *message, seldon_buf *response)
{
    sdg_call *call = user_data;
    if (status == 0)
        sdg_reply(call, response);
    else
        sdg_fail(call, status, message);
}

/* Each stream message holds the call until its own response is written. */
static void stream_done(void *user_data, int32_t status, const char *message, seldon_buf *response)
{
    sdg_call *call = user_data;
    if (status == 0)
        sdg_stream_write(call, response);
    else
        sdg_fail(call, status, message);
    sdg_call_release(call);
}

static void handle(void *user_data, sdg_call *call, const uint8_t *req, size_t len)
{
    const srv_method *m = user_data;
    int rc;
    if (m->streaming) {
        sdg_call_hold(call);
        rc = seldon_service_grpc(m->s->svc, m->path, m->path_len, req, len, stream_done, call);
        if (rc != 0) {
            sdg_fail(call, 13, seldon_last_error());
            sdg_call_release(call);
        }
        return;
    }
    rc = seldon_service_grpc(m->s->svc, m->path, m->path_len, req, len, unary_done, call);
    if (rc != 0)
        sdg_fail(call, 13, seldon_last_error());
}

size_t srv_grpc_methods(sdg_method *out, size_t cap, srv *s)
{
    size_t i, n = seldon_service_grpc_method_count();
    if (n > cap)
        n = cap;
    if (n > SRV_MAX_METHODS)
        n = SRV_MAX_METHODS;
    for (i = 0; i < n; i++) {
        int32_t streaming = 0;
        srv_method *m = &s->methods[i];
        m->s = s;
        m->path = seldon_service_grpc_method(i, &streaming);
        m->path_len = strlen(m->path);
        m->streaming = streaming;
        out[i].path = m->path;
        out[i].streaming = streaming;
        out[i].handler = handle;
        out[i].on_end = NULL;
        out[i].user_data = m;
    }
    return n;
}
