/*
 * Views of the scheduler's state: the route table and status snapshots.
 * Both are copies, independent of the scheduler once made.
 */
#include <stdio.h>
#include <string.h>

#include "sched/sched.h"

/* --- Routes ---------------------------------------------------------------- */

static int routed(const sch_slot *sl)
{
    return (sl->state == SCH_R_AVAILABLE || sl->state == SCH_R_DRAINING) &&
           (sl->r->http != NULL || sl->r->grpc != NULL);
}

int seldon_sched_routes(seldon_routes **out, seldon_sched *sched)
{
    seldon_routes_builder *b = NULL;
    seldon_routes *t = NULL;
    uint32_t i, j, k, ep;
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
        ep = ++sched->epoch;
        for (j = m->nversions; j-- > 0;) {
            const sch_version *v = m->versions[j];
            for (k = 0; k < v->nslots; k++) {
                sch_slot *sl = v->slots[k];
                if (!routed(sl) || sl->r->mark_m == ep)
                    continue;
                sl->r->mark_m = ep;
                if (!started) {
                    if ((rc = seldon_routes_builder_add_route(b, m->name, -1, -1)) != 0)
                        goto out;
                    started = 1;
                }
                rc = seldon_routes_builder_add_upstream(b, sl->r->http, sl->r->grpc);
                if (rc == SELDON_EEXIST)
                    rc = 0; /* two replicas at one address: one upstream */
                if (rc != 0)
                    goto out;
            }
        }
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
