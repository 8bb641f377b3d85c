/*
 * Pipelines in seldon up: the shared pipeline serving of daemons/common/plserve.c
 * on the ingress loops, with steps that call a replica's seldon_service_infer()
 * through the same lookup table the ingress uses for models (function calls,
 * never a socket). A call's answer comes back through sdp_call_done(), from the
 * worker thread that gave it (plserve posts it to the loop). The pipelines
 * served are the scheduler's, read on the control loop after every pump.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plserve.h"
#include "sdd.h"
#include "up.h"

/* Any thread: a model answered a step call. */
static void call_done(void *user_data, int32_t status, const char *message)
{
    sdp_call *c = user_data;
    up_vload *load = sdp_call_host(c); /* the step's version's load counters (load.c) */
    up_replica *r = load != NULL ? load->r : NULL;
    char route[SELDON_ROUTES_NAME_MAX + 24];
    sdp_header h = {"x-seldon-route", 14, route, 0};
    size_t len = 0, vl;
    const char *vname = seldon_msg_model_name(sdp_call_msg(c), &len);
    if (r != NULL)
        atomic_fetch_sub_explicit(&r->in_flight, 1, memory_order_relaxed);
    up_vl_end(load);
    /* The version that answered, as the ingress says it for models; the steps' accumulate
       (":<vname>:", built without snprintf: this runs once per step). */
    vl = vname != NULL && len < SELDON_ROUTES_NAME_MAX ? len : 0;
    route[0] = ':';
    if (vl > 0)
        memcpy(route + 1, vname, vl);
    route[vl + 1] = ':';
    h.value_len = vl + 2;
    sdp_call_done(c, status, message, &h, status == 0 && len > 0 ? 1 : 0);
}

/*
 * Control loop: a parked step call's model is loaded again. The engine's message is only
 * read (the engine leaves it alone until the call is answered, and the post to the
 * control loop ordered its writes before these reads).
 */
void up_pl_step_resume(void *call, up_replica *r)
{
    sdp_call *c = call;
    if (seldon_service_infer(r->s.svc, sdp_call_msg(c), sdp_call_response(c), call_done, c) != 0)
        call_done(c, SELDON_EINTERNAL, seldon_last_error());
}

void up_pl_step_fail(void *call, int rc, const char *why)
{
    call_done(call, rc, why);
}

/* Ingress loop: the plserve call hook. */
static int step_call(void *user_data, sdp_call *c)
{
    up *u = user_data;
    const char *model = sdp_call_model(c);
    up_target t;
    int rc = up_pick(&t, u, model, strlen(model));
    if (rc != 0)
        return rc;
    /* The engine built this call's message: it gets the versioned name the replica knows. */
    if (seldon_msg_set_model(sdp_call_msg(c), t.vname, t.vname_len, NULL, 0) < 0)
        return sdd_error(SELDON_ENOMEM, "out of memory");
    if (t.vl == NULL)
        return sdd_error(SELDON_EUNAVAIL, "model \"%s\": no load counters", model);
    sdp_call_set_host(c, t.vl);
    atomic_fetch_add_explicit(&t.r->in_flight, 1, memory_order_relaxed);
    up_vl_begin(t.vl);
    if (t.evicted) { /* sent once the version is loaded again, from the control loop */
        rc = up_park_step(&t, c);
        if (rc != 0) {
            atomic_fetch_sub_explicit(&t.r->in_flight, 1, memory_order_relaxed);
            up_vl_end(t.vl);
        }
        return rc;
    }
    rc = seldon_service_infer(t.r->s.svc, sdp_call_msg(c), sdp_call_response(c), call_done, c);
    if (rc != 0) {
        atomic_fetch_sub_explicit(&t.r->in_flight, 1, memory_order_relaxed);
        up_vl_end(t.vl);
    }
    return rc;
}

static int model_available(void *user_data, const char *model)
{
    return up_route_available(user_data, model, strlen(model));
}

static void count_hook(void *user_data, const char *protocol, int code)
{
    up_count(user_data, protocol, code);
}

/* A pipeline's gRPC answer for ingress.c's message; x-request-id comes back as metadata. */
static void grpc_answer(void *ctx, int32_t status, const char *message, seldon_buf *response,
                        const sdp_header *headers, size_t nheaders)
{
    sd2_header h[SDP_MAX_XHEADERS];
    size_t i, n = 0;
    char rid[80];
    for (i = 0; i < nheaders && n < SDP_MAX_XHEADERS; i++) {
        if (headers[i].name_len == 12 && memcmp(headers[i].name, "x-request-id", 12) == 0 &&
            headers[i].value_len < sizeof(rid)) {
            snprintf(rid, sizeof(rid), "%.*s", (int)headers[i].value_len, headers[i].value);
            up_grpc_request_id(ctx, rid);
        }
        h[n++] = (sd2_header){headers[i].name, headers[i].name_len, headers[i].value,
                              headers[i].value_len};
    }
    if (status == 0)
        up_grpc_reply_metadata(ctx, h, n);
    up_grpc_answer(ctx, status, message, response);
}

void up_pl_rest(up *u, sdh_req *req, const sdh_request *r, const char *name, size_t name_len,
                const sdp_route *route)
{
    sdp_rest_routed(u->pls, req, r, name, name_len, route);
}

int up_pl_grpc(up *u, void *gmsg, const char *name, size_t name_len, const uint8_t *data,
               size_t len, int64_t timeout_ms, const char *rid, size_t rid_len,
               const sd2_header *xmd, size_t nxmd, const sdp_route *route)
{
    sdp_header h[SDP_MAX_XHEADERS];
    size_t n = 0, i;
    if (rid != NULL && rid_len > 0)
        h[n++] = (sdp_header){"x-request-id", 12, rid, rid_len};
    for (i = 0; i < nxmd && n < SDP_MAX_XHEADERS; i++)
        h[n++] = (sdp_header){xmd[i].name, xmd[i].name_len, xmd[i].value, xmd[i].value_len};
    return sdp_grpc_routed(u->pls, gmsg, name, name_len, data, len, timeout_ms, h, n, route);
}

void up_pl_grpc_stream(up *u, sd2_stream *s, const sd2_header *h, size_t n, int end,
                       const char *name, size_t name_len, const sdp_route *route)
{
    sdp_grpc_stream_routed(u->pls, s, h, n, end, name, name_len, route);
}

int64_t up_grpc_timeout_ms(const char *value, size_t len)
{
    return sdp_grpc_timeout_ms(value, len);
}

static int spec_of(void *user_data, const char *name, const char **spec, size_t *len)
{
    up *u = user_data;
    return seldon_sched_pipeline_spec(spec, len, NULL, NULL, u->sched.sched, name);
}

/* On the control loop, after every pump: the scheduler's live pipelines to the engines. */
void up_pl_sync(up *u)
{
    seldon_sched_status *st = NULL;
    const seldon_sched_pipeline_status *ps;
    sdp_spec *specs = NULL;
    size_t i, n = 0, k = 0;

    if (u->kafka != NULL) { /* served over Kafka */
        up_kafka_sync(u);
        return;
    }
    if (u->pls == NULL || seldon_sched_pipelines(&st, u->sched.sched, NULL) != 0)
        return;
    while (seldon_sched_status_pipeline(st, n) != NULL)
        n++;
    specs = sdd_calloc(n + 1, sizeof(*specs));
    if (specs == NULL)
        goto out;
    for (i = 0; i < n; i++) {
        ps = seldon_sched_status_pipeline(st, i);
        if (ps->deleted)
            continue;
        specs[k].name = ps->name;
        specs[k].version = ps->version;
        specs[k].ready = -1; /* the lookup table says which models are available */
        k++;
    }
    sdp_sync(u->pls, specs, k, spec_of, u);
out:
    sdd_free(specs);
    seldon_sched_status_free(st);
}

int up_pl_setup(up *u)
{
    sdp_config cfg;
    sdp_hooks hooks;
    memset(&cfg, 0, sizeof(cfg));
    memset(&hooks, 0, sizeof(hooks));
    cfg.timeout_ms = u->cfg.pipeline_timeout_ms;
    cfg.max_requests = u->cfg.pipeline_max_requests;
    cfg.async_max = u->cfg.pipeline_async_max;
    cfg.async_ttl_ms = u->cfg.pipeline_async_ttl_ms;
    cfg.max_body = u->cfg.max_body;
    hooks.call = u->cfg.kafka ? up_kafka_call : step_call;
    hooks.model_available = model_available;
    hooks.count = count_hook;
    hooks.grpc_answer = grpc_answer;
    return sdp_new(&u->pls, u->loops, &cfg, &hooks, u);
}

/* On loop i, at shutdown: the engine's timer closes. */
void up_pl_close(up *u, int i)
{
    sdp_close_loop(u->pls, i);
}

void up_pl_free(up *u)
{
    sdp_free(u->pls);
    u->pls = NULL;
}
