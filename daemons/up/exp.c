/*
 * Experiments over pipelines in seldon up. The scheduler's table holds a route
 * "<p>.pipeline" for every live pipeline (seldon_sched_set_pipeline_upstreams(),
 * with seldon up's own ingress as the upstream), so an experiment whose
 * candidates are pipelines splits over them like any other: through its
 * "<e>.experiment" route, or its default pipeline's own route. The ingress asks
 * here, for a name that may lead to a pipeline, which pipeline serves the
 * request; the pipeline is then served in process (pipes.c).
 */
#include <string.h>

#include "plserve.h"
#include "sdd.h"
#include "up.h"

static int has_suffix(const char *s, size_t len, const char *suffix, size_t sl)
{
    return len > sl && memcmp(s + len - sl, suffix, sl) == 0;
}

static uint64_t rand64(void)
{
    static _Thread_local uint64_t x;
    if (x == 0)
        x = ((uint64_t)(uintptr_t)&x ^ (uint64_t)up_mono_ns()) | 1;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    return x * 0x2545F4914F6CDD1DULL;
}

/* Control loop, at start: pipelines are served by this process's ingress. */
void up_exp_start(up *u)
{
    /* A name no replica has ("<server>-<i>.inproc:<port>"): the lookup table finds no
       replica for it, and the ingress serves the route's pipeline itself. */
    static const char addr[] = "seldon-up-pipelines.inproc:1";
    seldon_sched_upstream us;
    us.http = addr;
    us.grpc = addr;
    if (seldon_sched_set_pipeline_upstreams(u->sched.sched, &us, 1) != 0)
        sdd_log(SELDON_LOG_ERROR, "pipeline routes: %s", seldon_last_error());
}

int up_exp_pipeline(up *u, up_exp_choice *out, const char *name, size_t len, const char *sticky,
                    size_t sticky_len)
{
    up_table *t;
    size_t i, chosen, ncand;
    int64_t mi = -1;
    const char *cn;
    int pipeline = has_suffix(name, len, SELDON_ROUTER_PIPELINE_SUFFIX, 9);
    memset(out, 0, sizeof(*out));
    if (!pipeline && !has_suffix(name, len, SELDON_ROUTER_EXPERIMENT_SUFFIX, 11))
        return 0; /* a model's route: its experiment's candidates are models */
    t = atomic_load_explicit(&u->table, memory_order_acquire);
    if (t != NULL && seldon_routes_find(&i, t->routes, name, len) == 0 && t->split[i]) {
        ncand = seldon_routes_candidate_count(t->routes, i);
        if (ncand > 0) {
            size_t first;
            if (seldon_routes_candidate(&first, NULL, t->routes, i, 0) != 0)
                return 0;
            cn = seldon_routes_name(t->routes, first);
            if (cn == NULL || !has_suffix(cn, strlen(cn), SELDON_ROUTER_PIPELINE_SUFFIX, 9))
                return 0; /* an experiment over models: the ingress decides */
        } else if (!pipeline) {
            return 0;
        }
        if (seldon_routes_decide(&chosen, &mi, NULL, t->routes, i, sticky,
                                 sticky != NULL ? sticky_len : 0, rand64()) != 0)
            return 0;
        name = seldon_routes_name(t->routes, chosen);
        len = strlen(name);
        /* The chosen pipeline is named in the answer as seldon-router names it: through
           an experiment (the route has candidates) only. */
        out->tag = ncand > 0;
        cn = mi >= 0 ? seldon_routes_name(t->routes, (size_t)mi) : NULL;
        if (cn != NULL && has_suffix(cn, strlen(cn), SELDON_ROUTER_PIPELINE_SUFFIX, 9) &&
            strlen(cn) - 9 < sizeof(out->mirror)) {
            out->mirror_len = strlen(cn) - 9;
            memcpy(out->mirror, cn, out->mirror_len);
            out->mirror[out->mirror_len] = '\0';
        }
        if (!has_suffix(name, len, SELDON_ROUTER_PIPELINE_SUFFIX, 9))
            return 0; /* a model candidate (not expected): the ingress answers */
    } else if (!pipeline) {
        return 0; /* not routed: the ingress answers */
    }
    if (len - 9 >= sizeof(out->pipeline))
        return 0;
    memcpy(out->pipeline, name, len - 9);
    out->pipeline[len - 9] = '\0';
    out->pipeline_len = len - 9;
    return 1;
}

void up_exp_route(sdp_route *out, const up_exp_choice *c)
{
    memset(out, 0, sizeof(*out));
    out->tag = c->tag;
    out->mirror = c->mirror_len > 0 ? c->mirror : NULL;
    out->mirror_len = c->mirror_len;
}

int up_exp_rest(up *u, up_exp_choice *out, const char *name, size_t name_len, const sdh_request *r)
{
    const char *sticky;
    size_t sl = 0;
    if (!has_suffix(name, name_len, SELDON_ROUTER_PIPELINE_SUFFIX, 9) &&
        !has_suffix(name, name_len, SELDON_ROUTER_EXPERIMENT_SUFFIX, 11))
        return 0;
    sticky = sdh_request_header(r, SELDON_ROUTER_ROUTE_HEADER, &sl);
    return up_exp_pipeline(u, out, name, name_len, sticky, sl);
}

int up_exp_grpc(up *u, up_exp_choice *out, const sd2_header *h, size_t n)
{
    const sd2_header *model = sd2_header_find(h, n, SELDON_ROUTER_HEADER), *xr;
    if (model == NULL ||
        (!has_suffix(model->value, model->value_len, SELDON_ROUTER_PIPELINE_SUFFIX, 9) &&
         !has_suffix(model->value, model->value_len, SELDON_ROUTER_EXPERIMENT_SUFFIX, 11)))
        return 0;
    if (model->value_len > SELDON_ROUTES_NAME_MAX)
        return 0; /* the ingress refuses it */
    xr = sd2_header_find(h, n, SELDON_ROUTER_ROUTE_HEADER);
    return up_exp_pipeline(u, out, model->value, model->value_len, xr != NULL ? xr->value : NULL,
                           xr != NULL ? xr->value_len : 0);
}
