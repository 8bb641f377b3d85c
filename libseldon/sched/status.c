/*
 * Views of the scheduler's state: the route table and status snapshots.
 * Both are copies, independent of the scheduler once made.
 */
#include <stdio.h>
#include <string.h>

#include "router/router.h"
#include "sched/sched.h"

/* --- Routes ---------------------------------------------------------------- */

static int routed(const sch_slot *sl)
{
    return (sl->state == SCH_R_AVAILABLE || sl->state == SCH_R_DRAINING) &&
           (sl->r->http != NULL || sl->r->grpc != NULL);
}

/* The model's replicas as upstreams of the route being built, newest version first. */
static int add_upstreams(seldon_routes_builder *b, seldon_sched *sched, const sch_model *m,
                         int *started)
{
    uint32_t j, k, ep = ++sched->epoch;
    int rc;
    for (j = m->nversions; j-- > 0;) {
        const sch_version *v = m->versions[j];
        for (k = 0; k < v->nslots; k++) {
            sch_slot *sl = v->slots[k];
            if (!routed(sl) || sl->r->mark_m == ep)
                continue;
            sl->r->mark_m = ep;
            if (!*started) {
                if ((rc = seldon_routes_builder_add_route(b, m->name, -1, -1)) != 0)
                    return rc;
                *started = 1;
            }
            rc = seldon_routes_builder_add_version(b, sl->r->http, sl->r->grpc, v->number);
            if (rc == SELDON_EEXIST)
                rc = 0; /* two replicas at one address: one upstream */
            if (rc != 0)
                return rc;
        }
    }
    return 0;
}

/* A target's route name: the model's, or "<p>.pipeline". */
static void target_route(char *out, size_t cap, const sch_resource *r, const char *target)
{
    snprintf(out, cap, "%s%s", target, r->exp_pipeline ? SELDON_ROUTER_PIPELINE_SUFFIX : "");
}

/* An experiment's candidates and mirror on route (an index of the builder). */
static int add_split(seldon_routes_builder *b, size_t route, const sch_resource *r)
{
    const sch_exp *e = r->exp;
    char name[SELDON_MANIFEST_NAME_MAX + 16];
    uint32_t i;
    int rc;
    for (i = 0; i < e->ncands; i++) {
        target_route(name, sizeof(name), r, e->cands[i]);
        if ((rc = sdn_rt_builder_candidate_at(b, route, name, strlen(name), e->weights[i])) != 0)
            return rc;
    }
    if (e->mirror != NULL && e->mirror_percent > 0) {
        target_route(name, sizeof(name), r, e->mirror);
        if ((rc = sdn_rt_builder_mirror_at(b, route, name, strlen(name), e->mirror_percent)) != 0)
            return rc;
    }
    return 0;
}

/* Every live pipeline's route "<p>.pipeline": no timeout of the router's (the pipeline's
   own apply), no retries (its steps may have run), the pipeline upstreams. */
static int add_pipeline_routes(seldon_routes_builder *b, const seldon_sched *sched)
{
    char name[SELDON_ROUTES_NAME_MAX + 1];
    size_t nl;
    uint32_t i, j;
    int rc;
    if (!sched->pl_routes || sched->npl_ups == 0)
        return 0; /* a route needs an upstream: none serves pipelines now */
    for (i = 0; i < sched->npipelines; i++) {
        const sch_pipeline *p = sched->pipelines[i];
        nl = strlen(p->name);
        if (p->deleted || nl + 9 > SELDON_ROUTES_NAME_MAX)
            continue; /* a name too long for a route: no route (a router refuses the table) */
        memcpy(name, p->name, nl);
        memcpy(name + nl, SELDON_ROUTER_PIPELINE_SUFFIX, 10);
        rc = seldon_routes_builder_add_route(b, name, 0, 0);
        if (rc == SELDON_EEXIST)
            continue; /* a model of that name holds it */
        if (rc != 0)
            return rc;
        for (j = 0; j < sched->npl_ups; j++) {
            rc = seldon_routes_builder_add_upstream(b, sched->pl_http[j], sched->pl_grpc[j]);
            if (rc != 0 && rc != SELDON_EEXIST)
                return rc;
        }
    }
    return 0;
}

void sdn_sch_pipeline_upstreams_free(seldon_sched *s)
{
    uint32_t i;
    for (i = 0; i < s->npl_ups; i++) {
        sdn_free(s->pl_http[i]);
        sdn_free(s->pl_grpc[i]);
    }
    sdn_free(s->pl_http);
    sdn_free(s->pl_grpc);
    s->pl_http = s->pl_grpc = NULL;
    s->npl_ups = 0;
}

static int str_eq(const char *a, const char *b)
{
    return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

int seldon_sched_set_pipeline_upstreams(seldon_sched *sched, const seldon_sched_upstream *upstreams,
                                        size_t count)
{
    char **http = NULL, **grpc = NULL;
    size_t i;
    int same;
    if (sched == NULL || (upstreams == NULL && count > 0))
        return sdn_error(SELDON_EINVAL, "sched_set_pipeline_upstreams: NULL argument");
    if (count > SELDON_ROUTES_UPSTREAMS_MAX)
        return sdn_error(SELDON_EINVAL, "pipeline upstreams: %zu, at most %d", count,
                         SELDON_ROUTES_UPSTREAMS_MAX);
    same = sched->pl_routes && count == sched->npl_ups;
    for (i = 0; same && i < count; i++)
        same = str_eq(upstreams[i].http, sched->pl_http[i]) &&
               str_eq(upstreams[i].grpc, sched->pl_grpc[i]);
    if (same)
        return 0;
    if (count > 0) { /* checked as the table will: a bad one would refuse every table */
        seldon_routes_builder *b = NULL;
        int rc = seldon_routes_builder_new(&b, NULL);
        if (rc == 0)
            rc = seldon_routes_builder_add_route(b, "pipelines", -1, -1);
        for (i = 0; i < count && rc == 0; i++) {
            if (upstreams[i].http == NULL && upstreams[i].grpc == NULL)
                rc = sdn_error(SELDON_EINVAL, "neither http nor grpc");
            else if ((rc = seldon_routes_builder_add_upstream(b, upstreams[i].http,
                                                              upstreams[i].grpc)) == SELDON_EEXIST)
                rc = 0;
        }
        seldon_routes_builder_free(b);
        if (rc != 0)
            return sdn_error(SELDON_EINVAL, "pipeline upstreams[%zu]: %s", i - 1,
                             seldon_last_error());
    }
    if (count > 0) {
        http = sdn_calloc(count, sizeof(*http));
        grpc = sdn_calloc(count, sizeof(*grpc));
        if (http == NULL || grpc == NULL)
            goto nomem;
        for (i = 0; i < count; i++) {
            if ((upstreams[i].http != NULL &&
                 (http[i] = sdn_strndup(upstreams[i].http, strlen(upstreams[i].http))) == NULL) ||
                (upstreams[i].grpc != NULL &&
                 (grpc[i] = sdn_strndup(upstreams[i].grpc, strlen(upstreams[i].grpc))) == NULL))
                goto nomem;
        }
    }
    sdn_sch_pipeline_upstreams_free(sched);
    sched->pl_http = http;
    sched->pl_grpc = grpc;
    sched->npl_ups = (uint32_t)count;
    sched->pl_routes = 1;
    sched->routes_gen++; /* a new table: the pipelines' routes changed */
    sdn_sch_experiments_refresh(sched);
    if (sched->routes_changed) {
        sched->routes_changed = 0;
        sched->routes_gen++;
    }
    return 0;
nomem:
    for (i = 0; i < count; i++) {
        if (http != NULL)
            sdn_free(http[i]);
        if (grpc != NULL)
            sdn_free(grpc[i]);
    }
    sdn_free(http);
    sdn_free(grpc);
    return sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
}

/*
 * An active experiment whose every target is a route of the table being built: models
 * with a serving replica, pipelines once their "<p>.pipeline" routes are in the table.
 */
static int exp_routed(const seldon_sched *s, const seldon_routes_builder *b, const sch_resource *r)
{
    char name[SELDON_MANIFEST_NAME_MAX + 16];
    int cr, mr;
    const char *w;
    uint32_t i;
    if (r->key[0] != 'E' || !r->live || r->exp == NULL || r->exp->ncands == 0 ||
        !sdn_sch_exp_ready(s, r, &cr, &mr, &w))
        return 0;
    for (i = 0; i <= r->exp->ncands; i++) {
        const char *t = i < r->exp->ncands ? r->exp->cands[i] : r->exp->mirror;
        if (t == NULL || (i == r->exp->ncands && r->exp->mirror_percent == 0))
            continue;
        target_route(name, sizeof(name), r, t);
        if (sdn_rt_builder_routable(b, name, strlen(name)) < 0)
            return 0;
    }
    return 1;
}

int seldon_sched_routes(seldon_routes **out, seldon_sched *sched)
{
    seldon_routes_builder *b = NULL;
    seldon_routes *t = NULL;
    uint32_t i;
    int rc;

    if (out == NULL || sched == NULL)
        return sdn_error(SELDON_EINVAL, "sched_routes: NULL argument");
    *out = NULL;
    if (sched->routes_cache != NULL && sched->routes_cache_gen == sched->routes_gen) {
        *out = seldon_routes_retain(sched->routes_cache);
        return 0;
    }
    if ((rc = seldon_routes_builder_new(&b, &sched->route_defaults)) != 0)
        return rc;
    for (i = 0; i < sched->nmodels; i++) {
        const sch_model *m = sched->models[i];
        int started = 0;
        if (m->deleted)
            continue;
        if ((rc = add_upstreams(b, sched, m, &started)) != 0)
            goto out;
    }
    /* Routes of other kinds go here, above the experiments, which split over what is here. */
    if ((rc = add_pipeline_routes(b, sched)) != 0)
        goto out;
    for (i = 0; i < sched->nresources; i++) {
        const sch_resource *r = sched->resources[i];
        char name[SELDON_MANIFEST_NAME_MAX + 16];
        int64_t def;
        if (!exp_routed(sched, b, r))
            continue;
        /* Reachable as "<name>.experiment", and through its default's own endpoint. */
        snprintf(name, sizeof(name), "%s%s", r->key + 2, SELDON_ROUTER_EXPERIMENT_SUFFIX);
        if ((rc = seldon_routes_builder_add_route(b, name, -1, -1)) != 0 ||
            (rc = add_split(b, (size_t)sdn_rt_builder_find(b, name, strlen(name)), r)) != 0)
            goto out;
        if (r->exp_default == NULL)
            continue;
        target_route(name, sizeof(name), r, r->exp_default);
        def = sdn_rt_builder_routable(b, name, strlen(name));
        if (def >= 0 && (rc = add_split(b, (size_t)def, r)) != 0)
            goto out;
    }
    if ((rc = seldon_routes_builder_finish(&t, b)) != 0)
        goto out;
    seldon_routes_release(sched->routes_cache);
    sched->routes_cache = seldon_routes_retain(t);
    sched->routes_cache_gen = sched->routes_gen;
    *out = t;
out:
    seldon_routes_builder_free(b);
    return rc;
}

uint64_t seldon_sched_routes_generation(const seldon_sched *sched)
{
    return sched ? sched->routes_gen : 0;
}

/* --- Status ---------------------------------------------------------------- */

struct seldon_sched_status {
    sdn_arena arena;
    int servers; /* 1: a server snapshot, 2: a pipeline snapshot */
    size_t n;
    seldon_sched_model_status *models;
    seldon_sched_server_status *srv;
    seldon_sched_pipeline_status *pls;
    seldon_sched_experiment_status *exps;
};

static const char *dup(seldon_sched_status *st, const char *s, int *bad)
{
    char *c;
    if (s == NULL)
        return NULL;
    c = sdn_arena_strndup(&st->arena, s, strlen(s));
    if (c == NULL)
        *bad = 1;
    return c;
}

static void *alloc(seldon_sched_status *st, size_t n, size_t size, int *bad)
{
    size_t total;
    void *p;
    if (n == 0)
        return NULL;
    if (!sdn_mul_size(&total, n, size)) {
        *bad = 1;
        return NULL;
    }
    p = sdn_arena_calloc(&st->arena, total);
    if (p == NULL)
        *bad = 1;
    return p;
}

static void fill_model(seldon_sched_status *st, seldon_sched_model_status *out, const sch_model *m,
                       int *bad)
{
    seldon_sched_version_status *vs;
    uint32_t i, j;
    out->name = dup(st, m->name, bad);
    out->deleted = m->deleted;
    out->versions_count = m->nversions;
    vs = alloc(st, m->nversions, sizeof(*vs), bad);
    out->versions = vs;
    if (vs == NULL)
        return;
    for (i = 0; i < m->nversions; i++) {
        const sch_version *v = m->versions[m->nversions - 1 - i];
        seldon_sched_version_status *o = &vs[i];
        seldon_sched_replica_status *rs;
        o->version = v->number;
        o->server = v->server ? dup(st, v->server->name, bad) : NULL;
        o->state = sdn_sched_model_state_name(v->state);
        o->reason = dup(st, v->reason, bad);
        o->desired_replicas = v->replicas > 0 ? (uint32_t)v->replicas : 0;
        o->last_change_ns = v->last_change;
        o->spec = dup(st, v->spec, bad);
        rs = alloc(st, v->nslots, sizeof(*rs), bad);
        o->replicas = rs;
        o->replicas_count = rs ? v->nslots : 0;
        for (j = 0; rs && j < v->nslots; j++) {
            const sch_slot *sl = v->slots[j];
            rs[j].server_index = sl->r->index;
            rs[j].state = sdn_sched_replica_state_name(sl->state);
            rs[j].reason = dup(st, sl->reason, bad);
            rs[j].last_change_ns = sl->last_change;
            if (sl->state == SCH_R_AVAILABLE && !sl->leaving)
                o->available_replicas++;
        }
    }
}

int seldon_sched_models(seldon_sched_status **out, seldon_sched *sched, const char *name)
{
    seldon_sched_status *st;
    uint32_t i;
    int bad = 0;
    if (out == NULL || sched == NULL)
        return sdn_error(SELDON_EINVAL, "sched_models: NULL argument");
    *out = NULL;
    if (name != NULL && sdn_sch_map_get(&sched->models_by_name, name) == NULL)
        return sdn_error(SELDON_ENOTFOUND, "model \"%s\" not found", name);
    st = sdn_calloc(1, sizeof(*st));
    if (st == NULL)
        return sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
    sdn_arena_init(&st->arena, NULL, 0);
    if (name != NULL) {
        st->models = alloc(st, 1, sizeof(*st->models), &bad);
        if (st->models) {
            st->n = 1;
            fill_model(st, st->models, sdn_sch_map_get(&sched->models_by_name, name), &bad);
        }
    } else {
        st->models = alloc(st, sched->nmodels, sizeof(*st->models), &bad);
        for (i = 0; st->models && i < sched->nmodels; i++)
            fill_model(st, &st->models[i], sched->models[i], &bad);
        st->n = st->models ? sched->nmodels : 0;
    }
    if (bad) {
        seldon_sched_status_free(st);
        return sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
    }
    *out = st;
    return 0;
}

static void fill_server(seldon_sched_status *st, seldon_sched_server_status *out,
                        const seldon_sched *s, const sch_server *sv, int *bad)
{
    seldon_sched_server_replica_status *rs;
    uint32_t i, j, k, n = 0, known = 0;
    out->name = dup(st, sv->name, bad);
    for (i = 0; i < sv->nreplicas; i++)
        known += sv->replicas[i] != NULL;
    out->desired_replicas = sv->deleted ? 0 : sv->desired >= 0 ? (uint32_t)sv->desired : known;
    rs = alloc(st, known, sizeof(*rs), bad);
    out->replicas = rs;
    if (rs == NULL)
        return;
    for (i = 0; i < sv->nreplicas; i++) {
        const sch_replica *r = sv->replicas[i];
        seldon_sched_server_replica_status *o;
        const char **caps, **models;
        uint32_t ncaps = 0;
        if (r == NULL)
            continue;
        o = &rs[n++];
        o->index = r->index;
        o->http = dup(st, r->http, bad);
        o->grpc = dup(st, r->grpc, bad);
        for (j = 0; j < r->capwords; j++)
            ncaps += (uint32_t)__builtin_popcountll(r->capbits[j]);
        caps = alloc(st, ncaps, sizeof(char *), bad);
        for (j = 0, k = 0; caps && j < r->capwords * 64; j++)
            if (sch_has_cap(r, j))
                caps[k++] = dup(st, s->caps[j], bad);
        o->capabilities = caps;
        o->capabilities_count = caps ? ncaps : 0;
        o->memory_bytes = r->memory;
        o->available_memory_bytes = sch_free(r);
        o->overcommit_percent = r->overcommit;
        models = alloc(st, r->nslots, sizeof(char *), bad);
        for (j = 0; models && j < r->nslots; j++) {
            const sch_slot *sl = r->slots[j];
            char tmp[SELDON_MANIFEST_NAME_MAX + 16];
            snprintf(tmp, sizeof(tmp), "%s_%u", sl->v->m->name, sl->v->number);
            models[j] = dup(st, tmp, bad);
            if (sl->state == SCH_R_AVAILABLE || sl->state == SCH_R_DRAINING)
                out->loaded_models++;
        }
        o->models = models;
        o->models_count = models ? r->nslots : 0;
        o->connected = r->connected;
        o->draining = sdn_sch_draining(r);
        out->connected_replicas += r->connected;
    }
    out->replicas_count = n;
}

int seldon_sched_servers(seldon_sched_status **out, seldon_sched *sched, const char *name)
{
    seldon_sched_status *st;
    sch_server *one = NULL;
    uint32_t i;
    int bad = 0;
    if (out == NULL || sched == NULL)
        return sdn_error(SELDON_EINVAL, "sched_servers: NULL argument");
    *out = NULL;
    if (name != NULL && (one = sdn_sch_map_get(&sched->servers_by_name, name)) == NULL)
        return sdn_error(SELDON_ENOTFOUND, "server \"%s\" not found", name);
    st = sdn_calloc(1, sizeof(*st));
    if (st == NULL)
        return sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
    sdn_arena_init(&st->arena, NULL, 0);
    st->servers = 1;
    if (one != NULL) {
        st->srv = alloc(st, 1, sizeof(*st->srv), &bad);
        if (st->srv) {
            st->n = 1;
            fill_server(st, st->srv, sched, one, &bad);
        }
    } else {
        st->srv = alloc(st, sched->nservers, sizeof(*st->srv), &bad);
        for (i = 0; st->srv && i < sched->nservers; i++)
            fill_server(st, &st->srv[i], sched, sched->servers[i], &bad);
        st->n = st->srv ? sched->nservers : 0;
    }
    if (bad) {
        seldon_sched_status_free(st);
        return sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
    }
    *out = st;
    return 0;
}

size_t seldon_sched_status_count(const seldon_sched_status *status)
{
    return status ? status->n : 0;
}

const seldon_sched_model_status *seldon_sched_status_model(const seldon_sched_status *status,
                                                           size_t i)
{
    if (status == NULL || status->servers || i >= status->n)
        return NULL;
    return &status->models[i];
}

const seldon_sched_server_status *seldon_sched_status_server(const seldon_sched_status *status,
                                                             size_t i)
{
    if (status == NULL || status->servers != 1 || i >= status->n)
        return NULL;
    return &status->srv[i];
}

void seldon_sched_status_free(seldon_sched_status *status)
{
    if (status == NULL)
        return;
    sdn_arena_release(&status->arena);
    sdn_free(status);
}

/* --- Pipelines --------------------------------------------------------------- */

static void fill_pipeline(seldon_sched_status *st, seldon_sched_pipeline_status *out,
                          const sch_pipeline *p, int *bad)
{
    const char **v;
    size_t i, n = p->compiled ? seldon_pipeline_step_count(p->compiled) : 0;
    out->name = dup(st, p->name, bad);
    out->version = p->version;
    out->state = sdn_sched_pipeline_state_name(p->state);
    out->reason = dup(st, p->reason, bad);
    out->deleted = p->deleted;
    out->models_ready = p->models_ready;
    out->last_change_ns = p->last_change;
    out->spec = dup(st, p->spec, bad);
    v = alloc(st, n, sizeof(char *), bad);
    for (i = 0; v && i < n; i++)
        v[i] = dup(st, seldon_pipeline_step_name(p->compiled, i), bad);
    out->models = v;
    out->models_count = v ? n : 0;
    v = alloc(st, p->nwaiting, sizeof(char *), bad);
    for (i = 0; v && i < p->nwaiting; i++)
        v[i] = dup(st, p->waiting[i], bad);
    out->waiting = v;
    out->waiting_count = v ? p->nwaiting : 0;
    v = alloc(st, p->nwaiting_pl, sizeof(char *), bad);
    for (i = 0; v && i < p->nwaiting_pl; i++)
        v[i] = dup(st, p->waiting_pl[i], bad);
    out->waiting_pipelines = v;
    out->waiting_pipelines_count = v ? p->nwaiting_pl : 0;
}

int seldon_sched_pipelines(seldon_sched_status **out, seldon_sched *sched, const char *name)
{
    seldon_sched_status *st;
    sch_pipeline *one = NULL;
    uint32_t i;
    int bad = 0;
    if (out == NULL || sched == NULL)
        return sdn_error(SELDON_EINVAL, "sched_pipelines: NULL argument");
    *out = NULL;
    if (name != NULL && (one = sdn_sch_pipeline_find(sched, name)) == NULL)
        return sdn_error(SELDON_ENOTFOUND, "Pipeline \"%s\" not found", name);
    st = sdn_calloc(1, sizeof(*st));
    if (st == NULL)
        return sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
    sdn_arena_init(&st->arena, NULL, 0);
    st->servers = 2;
    if (one != NULL) {
        st->pls = alloc(st, 1, sizeof(*st->pls), &bad);
        if (st->pls) {
            st->n = 1;
            fill_pipeline(st, st->pls, one, &bad);
        }
    } else {
        st->pls = alloc(st, sched->npipelines, sizeof(*st->pls), &bad);
        for (i = 0; st->pls && i < sched->npipelines; i++)
            fill_pipeline(st, &st->pls[i], sched->pipelines[i], &bad);
        st->n = st->pls ? sched->npipelines : 0;
    }
    if (bad) {
        seldon_sched_status_free(st);
        return sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
    }
    *out = st;
    return 0;
}

const seldon_sched_pipeline_status *seldon_sched_status_pipeline(const seldon_sched_status *status,
                                                                 size_t i)
{
    if (status == NULL || status->servers != 2 || i >= status->n)
        return NULL;
    return &status->pls[i];
}

/* --- Experiments ------------------------------------------------------------- */

static void fill_experiment(seldon_sched_status *st, seldon_sched_experiment_status *out,
                            const seldon_sched *s, const sch_resource *r, int *bad)
{
    const sch_exp *e = r->exp;
    const char *waiting = NULL, **names;
    uint32_t *weights;
    char why[SELDON_MANIFEST_NAME_MAX + 64];
    int cr = 0, mr = 0, active = 0;
    uint32_t i;
    out->name = dup(st, r->key + 2, bad);
    out->default_name = dup(st, r->exp_default, bad);
    out->resource_type = r->exp_pipeline ? "pipeline" : "model";
    out->spec = dup(st, r->json, bad);
    out->deleted = !r->live;
    if (e == NULL)
        return;
    names = alloc(st, e->ncands, sizeof(char *), bad);
    weights = alloc(st, e->ncands, sizeof(uint32_t), bad);
    for (i = 0; names && weights && i < e->ncands; i++) {
        names[i] = dup(st, e->cands[i], bad);
        weights[i] = e->weights[i];
    }
    out->candidates = names;
    out->weights = weights;
    out->candidates_count = names && weights ? e->ncands : 0;
    out->mirror = dup(st, e->mirror, bad);
    out->mirror_percent = e->mirror_percent;
    out->last_change_ns = e->last_change;
    if (r->live)
        active = sdn_sch_exp_ready(s, r, &cr, &mr, &waiting);
    out->active = active;
    out->candidates_ready = cr;
    out->mirror_ready = mr;
    if (!r->live)
        snprintf(why, sizeof(why), "experiment stopped");
    else if (active)
        snprintf(why, sizeof(why), "experiment active");
    else
        snprintf(why, sizeof(why), "waiting for %s %s \"%.253s\"", cr ? "mirror" : "candidate",
                 r->exp_pipeline ? "pipeline" : "model", waiting ? waiting : "");
    out->state = !r->live ? "ExperimentTerminated"
                 : active ? "ExperimentActive"
                          : "ExperimentWaiting";
    out->reason = dup(st, why, bad);
    out->waiting_for = dup(st, waiting, bad);
}

int seldon_sched_experiments(seldon_sched_status **out, seldon_sched *sched, const char *name)
{
    seldon_sched_status *st;
    uint32_t i, n = 0;
    int bad = 0;
    if (out == NULL || sched == NULL)
        return sdn_error(SELDON_EINVAL, "sched_experiments: NULL argument");
    *out = NULL;
    for (i = 0; i < sched->nresources; i++) {
        const sch_resource *r = sched->resources[i];
        if (r->key[0] == 'E' && r->live && (name == NULL || strcmp(r->key + 2, name) == 0))
            n++;
    }
    if (name != NULL && n == 0)
        return sdn_error(SELDON_ENOTFOUND, "Experiment \"%s\" not found", name);
    st = sdn_calloc(1, sizeof(*st));
    if (st == NULL)
        return sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
    sdn_arena_init(&st->arena, NULL, 0);
    st->servers = 3;
    st->exps = alloc(st, n, sizeof(*st->exps), &bad);
    for (i = 0; st->exps && i < sched->nresources; i++) {
        const sch_resource *r = sched->resources[i];
        if (r->key[0] == 'E' && r->live && (name == NULL || strcmp(r->key + 2, name) == 0))
            fill_experiment(st, &st->exps[st->n++], sched, r, &bad);
    }
    if (bad) {
        seldon_sched_status_free(st);
        return sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
    }
    *out = st;
    return 0;
}

const seldon_sched_experiment_status *
seldon_sched_status_experiment(const seldon_sched_status *status, size_t i)
{
    if (status == NULL || status->servers != 3 || i >= status->n)
        return NULL;
    return &status->exps[i];
}
