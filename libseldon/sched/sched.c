/*
 * The scheduler: objects, slot life cycle, state, commands, agents, time.
 * Placement is in place.c, persistence in persist.c, routes and status in
 * status.c. The rules are in docs/scheduler.md.
 */
#include <stdio.h>
#include <string.h>

#include "sched/sched.h"

/* --- Events ---------------------------------------------------------------- */

#define SCH_EVENTS_MAX (1u << 20) /* beyond this the oldest events are dropped */

void sdn_sch_event(seldon_sched *s, seldon_kind kind, const char *name, uint32_t version,
                   const char *state, const char *reason, const char *server, int32_t index)
{
    sch_event *e;
    if (s->ev_len == s->ev_cap) {
        if (s->ev_cap >= SCH_EVENTS_MAX) {
            /* Full: drop the oldest. */
            sdn_free(s->events[s->ev_head].reason);
            s->ev_head = (s->ev_head + 1) % s->ev_cap;
            s->ev_len--;
        } else {
            size_t ncap = s->ev_cap ? s->ev_cap * 2 : 256, i;
            sch_event *ne = sdn_malloc(ncap * sizeof(*ne));
            if (ne == NULL)
                return; /* events are best effort; state is not */
            for (i = 0; i < s->ev_len; i++)
                ne[i] = s->events[(s->ev_head + i) % s->ev_cap];
            sdn_free(s->events);
            s->events = ne;
            s->ev_cap = ncap;
            s->ev_head = 0;
        }
    }
    e = &s->events[(s->ev_head + s->ev_len) % s->ev_cap];
    e->kind = kind;
    e->name = name;
    e->version = version;
    e->state = state;
    e->reason = reason ? sdn_strndup(reason, strlen(reason)) : NULL;
    e->time_ns = s->now;
    e->server = server;
    e->server_index = index;
    s->ev_len++;
}

int seldon_sched_next_event(seldon_sched *sched, seldon_sched_event *out)
{
    sch_event *e;
    if (sched == NULL || out == NULL)
        return sdn_error(SELDON_EINVAL, "sched_next_event: NULL argument");
    sdn_free(sched->ev_cur.reason);
    sched->ev_cur.reason = NULL;
    if (sched->ev_len == 0)
        return SELDON_ENOTFOUND;
    e = &sched->events[sched->ev_head];
    sched->ev_cur = *e;
    sched->ev_head = (sched->ev_head + 1) % sched->ev_cap;
    sched->ev_len--;
    out->kind = e->kind;
    out->name = sched->ev_cur.name;
    out->version = e->version;
    out->state = e->state;
    out->reason = sched->ev_cur.reason;
    out->time_ns = e->time_ns;
    out->server = e->server;
    out->server_index = e->server_index;
    return 0;
}

/* --- Dirty marks ----------------------------------------------------------- */

void sdn_sch_mark_model(seldon_sched *s, sch_model *m)
{
    if (m->dirty)
        return;
    if (sdn_sch_grow((void **)&s->dirty_models, &s->capdirty_models, s->ndirty_models + 1,
                     sizeof(void *)) != 0)
        return;
    m->dirty = 1;
    s->dirty_models[s->ndirty_models++] = m;
}

void sdn_sch_mark_server(seldon_sched *s, sch_server *sv)
{
    if (sv->dirty)
        return;
    if (sdn_sch_grow((void **)&s->dirty_servers, &s->capdirty_servers, s->ndirty_servers + 1,
                     sizeof(void *)) != 0)
        return;
    sv->dirty = 1;
    s->dirty_servers[s->ndirty_servers++] = sv;
}

/* --- Objects --------------------------------------------------------------- */

int sdn_sch_server_get(sch_server **out, seldon_sched *s, const char *name, int create)
{
    sch_server *sv = sdn_sch_map_get(&s->servers_by_name, name);
    int rc;
    *out = sv;
    if (sv != NULL || !create)
        return sv ? 0 : SELDON_ENOTFOUND;
    if ((rc = sdn_sch_grow((void **)&s->servers, &s->capservers, s->nservers + 1,
                           sizeof(void *))) != 0)
        return rc;
    sv = sdn_calloc(1, sizeof(*sv));
    if (sv == NULL || (sv->name = sdn_strndup(name, strlen(name))) == NULL) {
        sdn_free(sv);
        return sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
    }
    sv->desired = -1;
    if ((rc = sdn_sch_map_put(&s->servers_by_name, sv->name, sv)) != 0) {
        sdn_free(sv->name);
        sdn_free(sv);
        return rc;
    }
    s->servers[s->nservers++] = sv;
    *out = sv;
    return 0;
}

#define SCH_INDEX_MAX 65535u

int sdn_sch_replica_get(sch_replica **out, seldon_sched *s, sch_server *sv, uint32_t index,
                        int create)
{
    sch_replica *r;
    int rc;
    (void)s;
    *out = NULL;
    if (index < sv->nreplicas && sv->replicas[index] != NULL) {
        *out = sv->replicas[index];
        return 0;
    }
    if (!create)
        return SELDON_ENOTFOUND;
    if (index > SCH_INDEX_MAX)
        return sdn_error(SELDON_EINVAL, "server \"%s\": replica index %u above %u", sv->name, index,
                         SCH_INDEX_MAX);
    if (index >= sv->nreplicas) {
        sch_replica **nr = sdn_realloc(sv->replicas, (size_t)(index + 1) * sizeof(*nr));
        if (nr == NULL)
            return sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
        memset(nr + sv->nreplicas, 0, (size_t)(index + 1 - sv->nreplicas) * sizeof(*nr));
        sv->replicas = nr;
        sv->nreplicas = index + 1;
    }
    r = sdn_calloc(1, sizeof(*r));
    if (r == NULL)
        return sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
    r->s = sv;
    r->index = index;
    sv->replicas[index] = r;
    if ((rc = sdn_sch_replica_set_caps(s, r)) != 0)
        return rc;
    *out = r;
    return 0;
}

static const char *const mlserver_caps[] = {
    "mlserver", "alibi-detect", "alibi-explain", "huggingface", "lightgbm",
    "mlflow",   "python",       "sklearn",       "spark-mlib",  "xgboost"};
static const char *const triton_caps[] = {"triton", "dali",    "fil",        "onnx",    "openvino",
                                          "python", "pytorch", "tensorflow", "tensorrt"};

int sdn_sch_default_caps(const char *const **out, const char *config)
{
    *out = NULL;
    if (config == NULL)
        return 0;
    if (strcmp(config, "mlserver") == 0) {
        *out = mlserver_caps;
        return (int)(sizeof(mlserver_caps) / sizeof(mlserver_caps[0]));
    }
    if (strcmp(config, "triton") == 0) {
        *out = triton_caps;
        return (int)(sizeof(triton_caps) / sizeof(triton_caps[0]));
    }
    return 0;
}

static int bits_set(uint64_t **bits, uint32_t *words, uint32_t id)
{
    if (id / 64 >= *words) {
        uint32_t nw = id / 64 + 1;
        uint64_t *nb = sdn_realloc(*bits, nw * sizeof(uint64_t));
        if (nb == NULL)
            return sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
        memset(nb + *words, 0, (nw - *words) * sizeof(uint64_t));
        *bits = nb;
        *words = nw;
    }
    (*bits)[id / 64] |= (uint64_t)1 << (id % 64);
    return 0;
}

int sdn_sch_replica_set_caps(seldon_sched *s, sch_replica *r)
{
    uint32_t i;
    int rc;
    if (r->capbits != NULL)
        memset(r->capbits, 0, r->capwords * sizeof(uint64_t));
    if (r->nown_caps > 0) {
        for (i = 0; i < r->nown_caps; i++) {
            int64_t id = sdn_sch_cap_id(s, r->own_caps[i], strlen(r->own_caps[i]));
            if (id < 0)
                return (int)id;
            if ((rc = bits_set(&r->capbits, &r->capwords, (uint32_t)id)) != 0)
                return rc;
        }
    } else if (r->s->has_resource) {
        for (i = 0; i < r->s->ncaps; i++)
            if ((rc = bits_set(&r->capbits, &r->capwords, r->s->caps[i])) != 0)
                return rc;
    } else {
        const char *const *d;
        int n = sdn_sch_default_caps(&d, r->s->name), k;
        for (k = 0; k < n; k++) {
            int64_t id = sdn_sch_cap_id(s, d[k], strlen(d[k]));
            if (id < 0)
                return (int)id;
            if ((rc = bits_set(&r->capbits, &r->capwords, (uint32_t)id)) != 0)
                return rc;
        }
    }
    return 0;
}

int sdn_sch_model_get(sch_model **out, seldon_sched *s, const char *name, int create)
{
    sch_model *m = sdn_sch_map_get(&s->models_by_name, name);
    int rc;
    *out = m;
    if (m != NULL || !create)
        return m ? 0 : SELDON_ENOTFOUND;
    if ((rc = sdn_sch_grow((void **)&s->models, &s->capmodels, s->nmodels + 1, sizeof(void *))) !=
        0)
        return rc;
    m = sdn_calloc(1, sizeof(*m));
    if (m == NULL || (m->name = sdn_strndup(name, strlen(name))) == NULL) {
        sdn_free(m);
        return sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
    }
    if ((rc = sdn_sch_map_put(&s->models_by_name, m->name, m)) != 0) {
        sdn_free(m->name);
        sdn_free(m);
        return rc;
    }
    m->order = s->nmodels;
    s->models[s->nmodels++] = m;
    *out = m;
    return 0;
}

int sdn_sch_version_new(sch_version **out, seldon_sched *s, sch_model *m, uint32_t number)
{
    sch_version *v;
    int rc;
    (void)s;
    *out = NULL;
    if ((rc = sdn_sch_grow((void **)&m->versions, &m->capversions, m->nversions + 1,
                           sizeof(void *))) != 0)
        return rc;
    v = sdn_calloc(1, sizeof(*v));
    if (v == NULL)
        return sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
    v->m = m;
    v->number = number;
    v->replicas = 1;
    m->versions[m->nversions++] = v;
    if (number > m->latest)
        m->latest = number;
    *out = v;
    return 0;
}

int sdn_sch_resource_put(seldon_sched *s, const char *key, const char *json, size_t len, int live)
{
    sch_resource *res = sdn_sch_map_get(&s->resources_by_key, key);
    char *copy = NULL;
    int rc;
    if (json != NULL && (copy = sdn_strndup(json, len)) == NULL)
        return sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
    if (res == NULL) {
        if ((rc = sdn_sch_grow((void **)&s->resources, &s->capresources, s->nresources + 1,
                               sizeof(void *))) != 0) {
            sdn_free(copy);
            return rc;
        }
        res = sdn_calloc(1, sizeof(*res));
        if (res == NULL || (res->key = sdn_strndup(key, strlen(key))) == NULL) {
            sdn_free(res);
            sdn_free(copy);
            return sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
        }
        if ((rc = sdn_sch_map_put(&s->resources_by_key, res->key, res)) != 0) {
            sdn_free(res->key);
            sdn_free(res);
            sdn_free(copy);
            return rc;
        }
        s->resources[s->nresources++] = res;
    }
    sdn_free(res->json);
    res->json = copy;
    res->json_len = copy ? len : 0;
    res->live = (uint8_t)live;
    if (s->store != NULL && sdn_sch_grow((void **)&s->dirty_resources, &s->capdirty_resources,
                                         s->ndirty_resources + 1, sizeof(void *)) == 0)
        s->dirty_resources[s->ndirty_resources++] = res;
    return 0;
}

int sdn_sch_resource_experiment(seldon_sched *s, const char *key, const seldon_resource *res)
{
    sch_resource *r = sdn_sch_map_get(&s->resources_by_key, key);
    const seldon_experiment_spec *x = &res->spec.experiment;
    const char *t = x->resource_type;
    sch_exp *e;
    size_t i;
    if (r == NULL)
        return SELDON_ENOTFOUND;
    r->exp_pipeline = t != NULL && strcmp(t, "pipeline") == 0;
    e = sdn_calloc(1, sizeof(*e));
    if (e == NULL)
        return sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
    if (x->candidates_count > 0 &&
        ((e->cands = sdn_calloc(x->candidates_count, sizeof(*e->cands))) == NULL ||
         (e->weights = sdn_calloc(x->candidates_count, sizeof(*e->weights))) == NULL))
        goto oom;
    for (i = 0; i < x->candidates_count; i++) {
        if ((e->cands[i] = sdn_strndup(x->candidates[i].name, strlen(x->candidates[i].name))) ==
            NULL)
            goto oom;
        e->ncands++;
        e->weights[i] = x->candidates[i].weight > 0 ? (uint32_t)x->candidates[i].weight : 0;
    }
    if (x->mirror_name != NULL &&
        (e->mirror = sdn_strndup(x->mirror_name, strlen(x->mirror_name))) == NULL)
        goto oom;
    e->mirror_percent = x->mirror_percent > 0 ? (uint32_t)x->mirror_percent : 0;
    e->last_change = s->now;
    if (r->exp != NULL) { /* a new spec: its readiness is reported again */
        e->active = r->exp->active;
        e->reported = 0;
    }
    sdn_sch_exp_free(r->exp);
    r->exp = e;
    s->routes_changed = 1;
    return sdn_sch_set_reason(&r->exp_default, x->default_name);
oom:
    sdn_sch_exp_free(e);
    return sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
}

/* --- Lists ----------------------------------------------------------------- */

static void list_push(sch_list *l, sch_slot *sl)
{
    sl->l_next = NULL;
    sl->l_prev = l->tail;
    if (l->tail)
        l->tail->l_next = sl;
    else
        l->head = sl;
    l->tail = sl;
}

static void list_remove(sch_list *l, sch_slot *sl)
{
    if (sl->l_prev)
        sl->l_prev->l_next = sl->l_next;
    else
        l->head = sl->l_next;
    if (sl->l_next)
        sl->l_next->l_prev = sl->l_prev;
    else
        l->tail = sl->l_prev;
    sl->l_prev = sl->l_next = NULL;
}

static void readyq_add(seldon_sched *s, sch_replica *r)
{
    if (r->in_ready || !r->connected || r->q_head == NULL)
        return;
    if (sdn_sch_grow((void **)&s->readyq, &s->capreadyq, s->nreadyq + 1, sizeof(void *)) != 0)
        return; /* picked up at the next connect */
    r->in_ready = 1;
    s->readyq[s->nreadyq++] = r;
}

static void queue_remove(sch_slot *sl)
{
    sch_replica *r = sl->r;
    if (!sl->owe)
        return;
    if (sl->q_prev)
        sl->q_prev->q_next = sl->q_next;
    else
        r->q_head = sl->q_next;
    if (sl->q_next)
        sl->q_next->q_prev = sl->q_prev;
    else
        r->q_tail = sl->q_prev;
    sl->q_prev = sl->q_next = NULL;
    sl->owe = 0;
}

/* Takes the slot out of every list: queue, in-flight, grace. */
static void slot_detach(seldon_sched *s, sch_slot *sl)
{
    queue_remove(sl);
    if (sl->inflight) {
        list_remove(&s->inflight, sl);
        sl->inflight = 0;
    }
    if (sl->grace) {
        list_remove(&s->grace, sl);
        sl->grace = 0;
    }
}

/* Queues op for the slot's replica (replacing whatever it owed). */
static void slot_owe(seldon_sched *s, sch_slot *sl, int op)
{
    sch_replica *r = sl->r;
    slot_detach(s, sl);
    sl->owe = (uint8_t)op;
    sl->q_next = NULL;
    sl->q_prev = r->q_tail;
    if (r->q_tail)
        r->q_tail->q_next = sl;
    else
        r->q_head = sl;
    r->q_tail = sl;
    readyq_add(s, r);
}

/* --- Slots ----------------------------------------------------------------- */

static int routed(int state)
{
    return state == SCH_R_AVAILABLE || state == SCH_R_DRAINING;
}

static void slot_state(seldon_sched *s, sch_slot *sl, int state, const char *reason)
{
    if (sl->state == state && (reason == NULL || (sl->reason && !strcmp(reason, sl->reason))))
        return;
    if (routed(sl->state) != routed(state))
        s->routes_changed = 1;
    sl->state = (uint8_t)state;
    sdn_sch_set_reason(&sl->reason, reason);
    sl->last_change = s->now;
    if (sl->v != NULL) {
        sdn_sch_mark_model(s, sl->v->m);
        sdn_sch_event(s, SELDON_KIND_MODEL, sl->v->m->name, sl->v->number,
                      sdn_sched_replica_state_name(state), reason, sl->r->s->name,
                      (int32_t)sl->r->index);
    }
}

static void slot_mem(seldon_sched *s, sch_slot *sl, int on)
{
    if (sl->v == NULL || sl->mem == on)
        return;
    sl->mem = (uint8_t)on;
    /* Saturating: a damaged store must not overflow the sum (memory is never negative). */
    if (on) {
        if (__builtin_add_overflow(sl->r->used, sl->v->memory, &sl->r->used))
            sl->r->used = INT64_MAX;
    } else {
        if (__builtin_sub_overflow(sl->r->used, sl->v->memory, &sl->r->used))
            sl->r->used = INT64_MIN;
        s->retry = 1;
    }
}

int sdn_sch_slot_new(sch_slot **out, seldon_sched *s, sch_version *v, sch_replica *r, int state)
{
    sch_slot *sl;
    int rc;
    *out = NULL;
    if ((rc = sdn_sch_grow((void **)&v->slots, &v->capslots, v->nslots + 1, sizeof(void *))) ||
        (rc = sdn_sch_grow((void **)&r->slots, &r->capslots, r->nslots + 1, sizeof(void *))))
        return rc;
    sl = sdn_calloc(1, sizeof(*sl));
    if (sl == NULL)
        return sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
    sl->v = v;
    sl->r = r;
    sl->state = SCH_R_UNKNOWN;
    sl->rpos = r->nslots;
    v->slots[v->nslots++] = sl;
    r->slots[r->nslots++] = sl;
    slot_mem(s, sl, 1);
    if (state == SCH_R_LOAD_REQUESTED)
        slot_owe(s, sl, SELDON_SCHED_LOAD);
    slot_state(s, sl, state, NULL);
    *out = sl;
    return 0;
}

static void stray_free(seldon_sched *s, sch_slot *sl)
{
    sch_replica *r = sl->r;
    uint32_t i;
    slot_detach(s, sl);
    for (i = 0; i < r->nstrays; i++)
        if (r->strays[i] == sl) {
            r->strays[i] = r->strays[--r->nstrays];
            break;
        }
    sdn_free(sl->stray_model);
    sdn_free(sl->reason);
    sdn_free(sl);
}

/* Removes a slot for good (its replica no longer has the model, or never will). */
static void slot_free(seldon_sched *s, sch_slot *sl)
{
    sch_version *v = sl->v;
    sch_replica *r = sl->r;
    uint32_t i;
    if (v == NULL) {
        stray_free(s, sl);
        return;
    }
    slot_detach(s, sl);
    if (routed(sl->state))
        s->routes_changed = 1;
    if (sl->state != SCH_R_UNLOAD_FAILED && sl->state != SCH_R_LOAD_FAILED)
        sdn_sch_event(s, SELDON_KIND_MODEL, v->m->name, v->number,
                      sdn_sched_replica_state_name(SCH_R_UNLOADED), NULL, r->s->name,
                      (int32_t)r->index);
    slot_mem(s, sl, 0);
    for (i = 0; i < v->nslots; i++)
        if (v->slots[i] == sl) {
            v->slots[i] = v->slots[--v->nslots];
            break;
        }
    r->slots[sl->rpos] = r->slots[--r->nslots];
    r->slots[sl->rpos]->rpos = sl->rpos;
    sdn_sch_mark_model(s, v->m);
    sdn_free(sl->reason);
    sdn_free(sl);
}

/* The slot must go now: unload it (after the route grace when it serves). */
void sdn_sch_slot_leave(seldon_sched *s, sch_slot *sl)
{
    sl->leaving = 1;
    if (!sl->r->connected && s->ready) {
        slot_free(s, sl);
        return;
    }
    switch (sl->state) {
    case SCH_R_LOAD_REQUESTED:
    case SCH_R_UNKNOWN:
        if (!sl->inflight) {
            slot_free(s, sl);
            return;
        }
        /* a load was sent; unload after it */
        __attribute__((fallthrough));
    case SCH_R_LOADING:
    case SCH_R_LOADED:
    case SCH_R_LOADED_UNAVAILABLE:
        slot_state(s, sl, SCH_R_UNLOAD_REQUESTED, NULL);
        sl->attempts = 0;
        slot_owe(s, sl, SELDON_SCHED_UNLOAD);
        return;
    case SCH_R_LOAD_FAILED:
        slot_free(s, sl);
        return;
    case SCH_R_AVAILABLE:
    case SCH_R_DRAINING:
        if (s->cfg.unload_grace_ms > 0) {
            slot_detach(s, sl);
            slot_state(s, sl, SCH_R_UNLOAD_ENVOY_REQUESTED, NULL);
            sl->deadline = s->now + s->cfg.unload_grace_ms * 1000000;
            sl->grace = 1;
            list_push(&s->grace, sl);
        } else {
            slot_state(s, sl, SCH_R_UNLOAD_REQUESTED, NULL);
            sl->attempts = 0;
            slot_owe(s, sl, SELDON_SCHED_UNLOAD);
        }
        return;
    default:
        return; /* already on its way out */
    }
}

/* --- Versions -------------------------------------------------------------- */

void sdn_sch_pending_add(seldon_sched *s, sch_version *v)
{
    if (v->pending)
        return;
    if (sdn_sch_grow((void **)&s->pending, &s->cappending, s->npending + 1, sizeof(void *)) != 0)
        return;
    v->pending = 1;
    v->pend_pos = s->npending;
    s->pending[s->npending++] = v;
}

/* O(1): the entry becomes a hole, squeezed out by pending_compact(). */
void sdn_sch_pending_remove(seldon_sched *s, sch_version *v)
{
    if (!v->pending)
        return;
    s->pending[v->pend_pos] = NULL;
    v->pending = 0;
}

/* Squeezes the holes out, keeping the order (first applied, first retried). */
static void pending_compact(seldon_sched *s)
{
    uint32_t i, o = 0;
    for (i = 0; i < s->npending; i++) {
        sch_version *v = s->pending[i];
        if (v == NULL)
            continue;
        v->pend_pos = o;
        s->pending[o++] = v;
    }
    s->npending = o;
}

static void version_terminate(seldon_sched *s, sch_version *v)
{
    uint32_t i;
    if (v->terminating)
        return;
    v->terminating = 1;
    sdn_sch_pending_remove(s, v);
    for (i = v->nslots; i-- > 0;)
        if (i < v->nslots)
            sdn_sch_slot_leave(s, v->slots[i]);
    sdn_sch_mark_model(s, v->m);
    sdn_sch_version_refresh(s, v);
}

static void version_state(seldon_sched *s, sch_version *v, int state, const char *reason)
{
    if (v->state == state && ((reason == NULL && v->reason == NULL) ||
                              (reason && v->reason && !strcmp(reason, v->reason))))
        return;
    if ((v->state == SCH_M_AVAILABLE) != (state == SCH_M_AVAILABLE))
        s->pl_check = 1;
    v->state = (uint8_t)state;
    sdn_sch_set_reason(&v->reason, reason);
    v->last_change = s->now;
    sdn_sch_mark_model(s, v->m);
    sdn_sch_event(s, SELDON_KIND_MODEL, v->m->name, v->number, sdn_sched_model_state_name(state),
                  reason, NULL, -1);
}

/* Derives the version's state from its slots; unloads what the derived state releases. */
void sdn_sch_version_refresh(seldon_sched *s, sch_version *v)
{
    uint32_t i, target = 0, avail = 0, failed = 0, draining = 0;
    const char *fail_reason = NULL;
    char buf[512];
    int need;

    if (v->terminating) {
        version_state(s, v, v->nslots == 0 ? SCH_M_TERMINATED : SCH_M_TERMINATING, NULL);
        return;
    }
    for (i = 0; i < v->nslots; i++) {
        sch_slot *sl = v->slots[i];
        if (sl->leaving) {
            draining += sl->state == SCH_R_DRAINING;
            continue;
        }
        target++;
        if (sl->state == SCH_R_AVAILABLE)
            avail++;
        else if (sl->state == SCH_R_LOAD_FAILED) {
            failed++;
            if (fail_reason == NULL)
                fail_reason = sl->reason;
        }
    }
    need = v->min_replicas > 0 ? v->min_replicas : 1;
    if (v->replicas <= 0) {
        version_state(s, v, target == 0 && v->nslots == 0 ? SCH_M_SCALED_DOWN : SCH_M_PROGRESSING,
                      NULL);
    } else if (target == 0) {
        if (!s->ready)
            version_state(s, v, SCH_M_PROGRESSING,
                          "waiting for server replicas to reconnect after a restart");
        else if (v->place_reason != NULL)
            version_state(s, v, SCH_M_SCHEDULE_FAILED, v->place_reason);
        else
            version_state(s, v, SCH_M_PROGRESSING, NULL);
    } else if (failed > 0 && avail < (uint32_t)need) {
        if (draining > 0 && avail + draining >= (uint32_t)need) {
            snprintf(buf, sizeof(buf),
                     "moving to server \"%s\" failed: load failed: %s; %u draining replicas "
                     "serve meanwhile",
                     v->server ? v->server->name : "?", fail_reason ? fail_reason : "unknown",
                     draining);
            version_state(s, v, SCH_M_AVAILABLE, buf);
        } else {
            snprintf(buf, sizeof(buf), "load failed: %s", fail_reason ? fail_reason : "unknown");
            version_state(s, v, target - failed - avail > 0 ? SCH_M_PROGRESSING : SCH_M_FAILED,
                          buf);
        }
    } else if (avail + failed == target && avail >= (uint32_t)need) {
        if (failed > 0)
            snprintf(buf, sizeof(buf), "%u of %u replicas failed to load: %s", failed, target,
                     fail_reason ? fail_reason : "unknown");
        else if (avail < (uint32_t)v->replicas)
            snprintf(buf, sizeof(buf), "%u of %d replicas available: %s", avail, v->replicas,
                     v->place_reason ? v->place_reason : "waiting for room");
        else
            buf[0] = '\0';
        version_state(s, v, SCH_M_AVAILABLE, buf[0] ? buf : NULL);
    } else if (failed == 0 && draining > 0 && avail + draining >= (uint32_t)need) {
        /* Moving (drain, disconnect elsewhere): the old replicas serve until the new ones do. */
        snprintf(buf, sizeof(buf),
                 "moving to server \"%s\": %u of %u replicas loaded there, %u draining "
                 "replicas serve meanwhile",
                 v->server ? v->server->name : "?", avail, target, draining);
        version_state(s, v, SCH_M_AVAILABLE, buf);
    } else {
        version_state(s, v, SCH_M_PROGRESSING, NULL);
    }

    /* The target serves: what was moving off can go (not while a load there failed). */
    if (target > 0 && avail == target) {
        for (i = v->nslots; i-- > 0;)
            if (i < v->nslots && v->slots[i]->leaving && v->slots[i]->state == SCH_R_DRAINING)
                sdn_sch_slot_leave(s, v->slots[i]);
    }
    /* The newest version is available: the older ones go. */
    if (v->state == SCH_M_AVAILABLE && v->m->versions[v->m->nversions - 1] == v) {
        for (i = 0; i + 1 < v->m->nversions; i++)
            version_terminate(s, v->m->versions[i]);
    }
}

static void version_free(sch_version *v)
{
    sdn_free(v->spec);
    sdn_free(v->pin);
    sdn_free(v->reqs);
    sdn_free(v->reason);
    sdn_free(v->place_reason);
    sdn_free(v->slots);
    sdn_free(v);
}

/* Drops versions that are gone for good: terminated and superseded. */
static void model_prune(seldon_sched *s, sch_model *m)
{
    uint32_t i, o = 0;
    for (i = 0; i < m->nversions; i++) {
        sch_version *v = m->versions[i];
        if (v->terminating && v->nslots == 0 && i + 1 < m->nversions) {
            sdn_sch_pending_remove(s, v);
            version_free(v);
        } else {
            m->versions[o++] = v;
        }
    }
    m->nversions = o;
}

/* --- Finishing a call ------------------------------------------------------ */

static int finish(seldon_sched *s)
{
    uint32_t i;
    int rc = 0;
    int rounds = 0;
    while (s->retry && s->ready && rounds++ < 4) {
        uint32_t n;
        sch_version **copy;
        s->retry = 0;
        pending_compact(s);
        n = s->npending;
        if (n == 0)
            break;
        copy = sdn_malloc(n * sizeof(*copy));
        if (copy == NULL)
            break;
        memcpy(copy, s->pending, n * sizeof(*copy));
        for (i = 0; i < n; i++)
            if (copy[i]->pending)
                sdn_sch_schedule(s, copy[i]);
        sdn_free(copy);
    }
    if (s->npending > 64 && s->npending > 2 * s->cappending / 3)
        pending_compact(s);
    s->retry = 0;
    for (i = 0; i < s->ndirty_models; i++)
        model_prune(s, s->dirty_models[i]);
    if (s->pl_check)
        sdn_sch_pipelines_refresh(s);
    sdn_sch_experiments_refresh(s);
    if (s->store != NULL && (rc = sdn_sch_persist(s)) != 0) {
        /* Kept dirty: the next call that writes retries them, so the store catches up. */
        sdn_log(SELDON_LOG_ERROR, "scheduler: state not stored: %s", seldon_last_error());
        if (s->routes_changed) {
            s->routes_changed = 0;
            s->routes_gen++;
        }
        return rc;
    }
    for (i = 0; i < s->ndirty_models; i++)
        s->dirty_models[i]->dirty = 0;
    for (i = 0; i < s->ndirty_servers; i++)
        s->dirty_servers[i]->dirty = 0;
    s->ndirty_models = s->ndirty_servers = s->ndirty_resources = 0;
    if (s->routes_changed) {
        s->routes_changed = 0;
        s->routes_gen++;
    }
    return rc;
}

/* --- Open / close ---------------------------------------------------------- */

static void become_ready(seldon_sched *s);

/*
 * Before a client's change: the store must be able to take it, or the change is refused
 * before anything moves (an error and no effect, rather than an effect the store lost).
 * State that an earlier write could not store goes first; then a probe about the size of
 * what the change writes (a few records per document).
 */
static int store_ready(seldon_sched *s, size_t documents)
{
    int rc = 0;
    if (s->store == NULL)
        return 0;
    if (s->ndirty_models != 0 || s->ndirty_servers != 0 || s->ndirty_resources != 0)
        rc = finish(s);
    if (rc == 0)
        rc = sdn_sch_store_probe(s, 65536 + documents * 4096);
    if (rc != 0)
        sdn_error_prefix(rc, "the state store cannot take the change, nothing was changed");
    return rc;
}

int seldon_sched_open(seldon_sched **out, const seldon_sched_config *cfg, int64_t now_ns)
{
    seldon_sched_config def = SELDON_SCHED_CONFIG_INIT;
    seldon_routes_defaults rdef = SELDON_ROUTES_DEFAULTS_INIT;
    seldon_sched *s = NULL;
    int rc = 0;
    uint32_t i, j, known = 0;

    if (out == NULL)
        return sdn_error(SELDON_EINVAL, "sched_open: NULL out");
    *out = NULL;
    if (cfg != NULL) {
        if (cfg->version != 1 && cfg->version != 2)
            return sdn_error(SELDON_EINVAL, "sched_open: unknown config version %u", cfg->version);
        def.state_dir = cfg->state_dir;
        def.ready_timeout_ms = cfg->ready_timeout_ms;
        def.map_size_bytes = cfg->map_size_bytes;
        def.route_defaults = cfg->route_defaults;
        if (cfg->version >= 2) {
            def.load_timeout_ms = cfg->load_timeout_ms;
            def.load_retries = cfg->load_retries;
            def.unload_grace_ms = cfg->unload_grace_ms;
            def.sync_writes = cfg->sync_writes;
        }
    }
    if (def.ready_timeout_ms < 0 || def.map_size_bytes < (1 << 20) || def.load_timeout_ms <= 0 ||
        def.load_retries < 0 || def.load_retries > 100 || def.unload_grace_ms < 0)
        return sdn_error(SELDON_EINVAL, "sched_open: a config value is out of range "
                                        "(ready_timeout_ms >= 0, map_size_bytes >= 1 MiB, "
                                        "load_timeout_ms > 0, 0 <= load_retries <= 100, "
                                        "unload_grace_ms >= 0)");
    if (def.route_defaults != NULL) {
        if (def.route_defaults->version != SELDON_ROUTES_DEFAULTS_VERSION)
            return sdn_error(SELDON_EINVAL, "sched_open: unknown route_defaults version");
        rdef = *def.route_defaults;
    }
    s = sdn_calloc(1, sizeof(*s));
    if (s == NULL)
        return sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
    s->cfg = def;
    s->cfg.state_dir = NULL; /* not kept: the caller's string */
    s->route_defaults = rdef;
    s->cfg.route_defaults = &s->route_defaults;
    s->now = now_ns;
    s->next_cmd_id = 1;
    s->ready = 1;
    s->routes_gen = 1;
    {
        seldon_sched_autoscale as = SELDON_SCHED_AUTOSCALE_INIT;
        s->autoscale = as;
    }
    if (def.state_dir != NULL) {
        static const char *const dbs[SCH_DB_COUNT] = {"models", "servers", "resources", "meta"};
        if ((rc = sdn_store_open(&s->store, def.state_dir, def.map_size_bytes, dbs, SCH_DB_COUNT,
                                 def.sync_writes)) != 0)
            goto out;
        if ((rc = sdn_sch_reload(s)) != 0)
            goto out;
        for (i = 0; i < s->nservers; i++)
            for (j = 0; j < s->servers[i]->nreplicas; j++)
                if (s->servers[i]->replicas[j] != NULL && s->servers[i]->replicas[j]->expected)
                    known++;
        if (known > 0) {
            s->ready = 0;
            s->ready_deadline = now_ns + def.ready_timeout_ms * 1000000;
            if (def.ready_timeout_ms == 0)
                become_ready(s);
        }
    }
    s->ndirty_models = s->ndirty_servers = s->ndirty_resources = 0;
    for (i = 0; i < s->nmodels; i++)
        s->models[i]->dirty = 0;
    for (i = 0; i < s->nservers; i++)
        s->servers[i]->dirty = 0;
    *out = s;
    s = NULL;
out:
    seldon_sched_close(s);
    return rc;
}

void seldon_sched_close(seldon_sched *sched)
{
    uint32_t i, j, k;
    if (sched == NULL)
        return;
    for (i = 0; i < sched->nmodels; i++) {
        sch_model *m = sched->models[i];
        for (j = 0; j < m->nversions; j++) {
            sch_version *v = m->versions[j];
            for (k = 0; k < v->nslots; k++) {
                sdn_free(v->slots[k]->reason);
                sdn_free(v->slots[k]);
            }
            version_free(v);
        }
        sdn_free(m->versions);
        sdn_free(m->name);
        sdn_free(m);
    }
    for (i = 0; i < sched->nservers; i++) {
        sch_server *sv = sched->servers[i];
        for (j = 0; j < sv->nreplicas; j++) {
            sch_replica *r = sv->replicas[j];
            if (r == NULL)
                continue;
            for (k = 0; k < r->nstrays; k++) {
                sdn_free(r->strays[k]->stray_model);
                sdn_free(r->strays[k]->reason);
                sdn_free(r->strays[k]);
            }
            for (k = 0; k < r->nown_caps; k++)
                sdn_free(r->own_caps[k]);
            sdn_free(r->own_caps);
            sdn_free(r->strays);
            sdn_free(r->slots);
            sdn_free(r->capbits);
            sdn_free(r->http);
            sdn_free(r->grpc);
            sdn_free(r);
        }
        sdn_free(sv->replicas);
        sdn_free(sv->caps);
        sdn_free(sv->spec);
        sdn_free(sv->scale_reason);
        sdn_free(sv->name);
        sdn_free(sv);
    }
    for (i = 0; i < sched->nresources; i++) {
        sdn_free(sched->resources[i]->key);
        sdn_free(sched->resources[i]->json);
        sdn_free(sched->resources[i]->exp_default);
        sdn_sch_exp_free(sched->resources[i]->exp);
        sdn_free(sched->resources[i]);
    }
    sdn_sch_pipelines_free(sched);
    for (i = 0; i < sched->ncaps; i++)
        sdn_free(sched->caps[i]);
    for (; sched->ev_len > 0; sched->ev_len--) {
        sdn_free(sched->events[sched->ev_head].reason);
        sched->ev_head = (sched->ev_head + 1) % sched->ev_cap;
    }
    sdn_free(sched->ev_cur.reason);
    sdn_free(sched->events);
    sdn_free(sched->models);
    sdn_free(sched->servers);
    sdn_free(sched->resources);
    sdn_free(sched->caps);
    sdn_free(sched->pending);
    sdn_free(sched->readyq);
    sdn_free(sched->dirty_models);
    sdn_free(sched->dirty_servers);
    sdn_free(sched->dirty_resources);
    sdn_sch_map_free(&sched->models_by_name);
    sdn_sch_map_free(&sched->servers_by_name);
    sdn_sch_map_free(&sched->caps_by_name);
    sdn_sch_map_free(&sched->resources_by_key);
    seldon_routes_release(sched->routes_cache);
    sdn_sch_pipeline_upstreams_free(sched);
    seldon_buf_free(&sched->scratch);
    sdn_store_close(sched->store);
    sdn_free(sched);
}

int32_t seldon_sched_ready(const seldon_sched *sched)
{
    return sched != NULL && sched->ready;
}

/* --- Replicas going away ----------------------------------------------------- */

/* Versions touched by a bulk change, refreshed (or rescheduled) once at its end. */
typedef struct touched {
    sch_version **v;
    uint32_t n, cap;
} touched;

static void touch(touched *t, sch_version *v)
{
    if (v == NULL)
        return;
    if (sdn_sch_grow((void **)&t->v, &t->cap, t->n + 1, sizeof(void *)) == 0)
        t->v[t->n++] = v;
}

static void touched_finish(seldon_sched *s, touched *t, int reschedule)
{
    uint32_t i;
    uint32_t mark = ++s->touch_epoch;
    for (i = 0; i < t->n; i++) {
        sch_version *v = t->v[i];
        if (v->mark == mark)
            continue; /* touched twice, handled once */
        v->mark = mark;
        if (reschedule && !v->terminating && s->ready)
            sdn_sch_schedule(s, v);
        else
            sdn_sch_version_refresh(s, v);
    }
    sdn_free(t->v);
    t->v = NULL;
    t->n = t->cap = 0;
}

/* The replica is gone (ready): its slots go, their versions are placed again. */
static void replica_drop_slots(seldon_sched *s, sch_replica *r, touched *t)
{
    while (r->nslots > 0) {
        sch_slot *sl = r->slots[r->nslots - 1];
        touch(t, sl->v);
        slot_free(s, sl);
    }
    while (r->nstrays > 0)
        stray_free(s, r->strays[r->nstrays - 1]);
    while (r->q_head != NULL)
        queue_remove(r->q_head);
}

static void replica_forget(seldon_sched *s, sch_replica *r)
{
    sch_server *sv = r->s;
    uint32_t k;
    sv->replicas[r->index] = NULL;
    while (sv->nreplicas > 0 && sv->replicas[sv->nreplicas - 1] == NULL)
        sv->nreplicas--;
    for (k = 0; k < s->nreadyq; k++)
        if (s->readyq[k] == r) {
            s->readyq[k] = s->readyq[--s->nreadyq];
            break;
        }
    for (k = 0; k < r->nown_caps; k++)
        sdn_free(r->own_caps[k]);
    sdn_free(r->own_caps);
    sdn_free(r->strays);
    sdn_free(r->slots);
    sdn_free(r->capbits);
    sdn_free(r->http);
    sdn_free(r->grpc);
    sdn_free(r);
    sdn_sch_mark_server(s, sv);
    s->routes_changed = 1;
}

static void become_ready(seldon_sched *s)
{
    touched t = {0};
    uint32_t i, j, k;
    s->ready = 1;
    for (i = 0; i < s->nservers; i++) {
        sch_server *sv = s->servers[i];
        for (j = 0; j < sv->nreplicas; j++) {
            sch_replica *r = sv->replicas[j];
            if (r == NULL)
                continue;
            if (!r->connected) {
                r->expected = 0;
                sdn_sch_mark_server(s, sv);
                replica_drop_slots(s, r, &t);
                continue;
            }
            for (k = 0; k < r->nstrays; k++)
                slot_owe(s, r->strays[k], SELDON_SCHED_UNLOAD);
        }
    }
    for (i = 0; i < s->nmodels; i++)
        for (j = 0; j < s->models[i]->nversions; j++) {
            sch_version *v = s->models[i]->versions[j];
            if (!v->terminating && !v->pending) {
                uint32_t target = 0;
                for (k = 0; k < v->nslots; k++)
                    target += !v->slots[k]->leaving;
                if (target < (uint32_t)(v->replicas > 0 ? v->replicas : 0))
                    sdn_sch_pending_add(s, v);
            }
            sdn_sch_version_refresh(s, v);
        }
    touched_finish(s, &t, 1);
    s->retry = 1;
    sdn_log(SELDON_LOG_INFO, "scheduler ready");
}

static int all_known_connected(const seldon_sched *s)
{
    uint32_t i, j;
    for (i = 0; i < s->nservers; i++)
        for (j = 0; j < s->servers[i]->nreplicas; j++) {
            const sch_replica *r = s->servers[i]->replicas[j];
            if (r && r->expected && !r->connected)
                return 0;
        }
    return 1;
}

/* --- Clients: apply and unload ------------------------------------------------ */

/* Effective requirements: spec.requirements plus modelType, interned, without repeats. */
static int version_reqs(seldon_sched *s, sch_version *v, const seldon_model_spec *ms)
{
    size_t n = ms->requirements_count + (ms->model_type ? 1 : 0), i, j;
    uint32_t k = 0;
    sdn_free(v->reqs);
    v->reqs = NULL;
    v->nreqs = 0;
    if (n == 0)
        return 0;
    v->reqs = sdn_malloc(n * sizeof(uint32_t));
    if (v->reqs == NULL)
        return sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
    for (i = 0; i < n; i++) {
        const char *name = i < ms->requirements_count ? ms->requirements[i] : ms->model_type;
        int64_t id = sdn_sch_cap_id(s, name, strlen(name));
        if (id < 0)
            return (int)id;
        for (j = 0; j < k; j++)
            if (v->reqs[j] == (uint32_t)id)
                break;
        if (j == k)
            v->reqs[k++] = (uint32_t)id;
    }
    v->nreqs = k;
    return 0;
}

static int serialize(seldon_buf *b, const seldon_resource *res, char **out, size_t *out_len)
{
    int rc;
    b->len = 0;
    if ((rc = seldon_resource_serialize(b, res)) != 0)
        return rc;
    if (out != NULL) {
        *out = sdn_strndup((const char *)b->data, b->len);
        if (*out == NULL)
            return sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
        *out_len = b->len;
    }
    return 0;
}

static int apply_model(seldon_sched *s, const seldon_resource *res, uint32_t *out_version)
{
    const seldon_model_spec *ms = &res->spec.model;
    sch_model *m = NULL;
    sch_version *latest = NULL, *v = NULL;
    int rc;

    if ((rc = sdn_sch_model_get(&m, s, res->name, 1)) != 0)
        return rc;
    if (!m->deleted && m->nversions > 0 && !m->versions[m->nversions - 1]->terminating)
        latest = m->versions[m->nversions - 1];
    if (latest != NULL) {
        /* The same spec but for the replica counts? Compare with the counts made equal. */
        seldon_resource same = *res;
        same.spec.model.replicas = latest->replicas;
        same.spec.model.min_replicas = latest->min_replicas;
        same.spec.model.max_replicas = latest->max_replicas;
        if ((rc = serialize(&s->scratch, &same, NULL, NULL)) != 0)
            return rc;
        if (s->scratch.len == latest->spec_len &&
            memcmp(s->scratch.data, latest->spec, latest->spec_len) == 0) {
            *out_version = latest->number;
            if (ms->replicas == latest->replicas && ms->min_replicas == latest->min_replicas &&
                ms->max_replicas == latest->max_replicas) {
                /* No change; but applying again is how a user retries failed loads. */
                uint32_t k;
                for (k = 0; k < latest->nslots; k++) {
                    sch_slot *sl = latest->slots[k];
                    if (sl->state == SCH_R_LOAD_FAILED && !sl->leaving) {
                        sl->attempts = 0;
                        slot_mem(s, sl, 1);
                        slot_state(s, sl, SCH_R_LOAD_REQUESTED, "applied again: retrying");
                        slot_owe(s, sl, SELDON_SCHED_LOAD);
                    }
                }
                sdn_sch_version_refresh(s, latest);
                return 0;
            }
            sdn_free(latest->spec);
            latest->spec = NULL;
            if ((rc = serialize(&s->scratch, res, &latest->spec, &latest->spec_len)) != 0)
                return rc;
            latest->replicas = ms->replicas;
            latest->min_replicas = ms->min_replicas;
            latest->max_replicas = ms->max_replicas;
            sdn_sch_mark_model(s, m);
            sdn_sch_event(s, SELDON_KIND_MODEL, m->name, latest->number, "ModelReplicasChanged",
                          NULL, NULL, -1);
            return sdn_sch_schedule(s, latest);
        }
    }
    /* Everything that may fail first, so a failure leaves no half-made version behind. */
    {
        sch_version tmp;
        memset(&tmp, 0, sizeof(tmp));
        if ((rc = serialize(&s->scratch, res, &tmp.spec, &tmp.spec_len)) != 0 ||
            (ms->server != NULL &&
             (tmp.pin = sdn_strndup(ms->server, strlen(ms->server))) == NULL) ||
            (rc = version_reqs(s, &tmp, ms)) != 0 ||
            (rc = sdn_sch_version_new(&v, s, m, m->latest + 1)) != 0) {
            sdn_free(tmp.spec);
            sdn_free(tmp.pin);
            sdn_free(tmp.reqs);
            return rc ? rc : sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
        }
        v->spec = tmp.spec;
        v->spec_len = tmp.spec_len;
        v->pin = tmp.pin;
        v->reqs = tmp.reqs;
        v->nreqs = tmp.nreqs;
    }
    m->deleted = 0;
    v->memory = ms->memory_bytes > 0 ? ms->memory_bytes : 0;
    v->replicas = ms->replicas;
    v->min_replicas = ms->min_replicas;
    v->max_replicas = ms->max_replicas;
    v->last_change = s->now;
    sdn_sch_mark_model(s, m);
    *out_version = v->number;
    return sdn_sch_schedule(s, v);
}

static int apply_server(seldon_sched *s, const seldon_resource *res)
{
    const seldon_server_spec *ss = &res->spec.server;
    sch_server *sv = NULL;
    touched t = {0};
    const char *const *d = NULL;
    size_t i, nd;
    uint32_t j, k;
    int rc;

    if ((rc = sdn_sch_server_get(&sv, s, res->name, 1)) != 0)
        return rc;
    sdn_free(sv->spec);
    sv->spec = NULL;
    {
        size_t len;
        if ((rc = serialize(&s->scratch, res, &sv->spec, &len)) != 0)
            return rc;
    }
    sv->has_resource = 1;
    sv->deleted = 0;
    sv->desired = ss->replicas;
    sv->min_replicas = ss->min_replicas;
    sv->max_replicas = ss->max_replicas;
    /* capabilities replace the serverConfig's defaults; extraCapabilities add to them. */
    if (ss->capabilities_count > 0) {
        d = ss->capabilities;
        nd = ss->capabilities_count;
    } else {
        int n = sdn_sch_default_caps(&d, ss->server_config ? ss->server_config : res->name);
        nd = (size_t)n;
    }
    sdn_free(sv->caps);
    sv->ncaps = 0;
    sv->caps = sdn_malloc((nd + ss->extra_capabilities_count + 1) * sizeof(uint32_t));
    if (sv->caps == NULL)
        return sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
    for (i = 0; i < nd + ss->extra_capabilities_count; i++) {
        const char *c = i < nd ? d[i] : ss->extra_capabilities[i - nd];
        int64_t id = sdn_sch_cap_id(s, c, strlen(c));
        if (id < 0)
            return (int)id;
        sv->caps[sv->ncaps++] = (uint32_t)id;
    }
    sdn_sch_mark_server(s, sv);
    for (j = 0; j < sv->nreplicas; j++) {
        sch_replica *r = sv->replicas[j];
        if (r == NULL)
            continue;
        if ((rc = sdn_sch_replica_set_caps(s, r)) != 0)
            return rc;
        if (sdn_sch_draining(r)) {
            for (k = 0; k < r->nslots; k++)
                if (r->slots[k]->v && !r->slots[k]->leaving && !r->slots[k]->v->terminating)
                    touch(&t, r->slots[k]->v);
            if (!r->connected && s->ready) {
                replica_drop_slots(s, r, &t);
                replica_forget(s, r);
            }
        }
    }
    touched_finish(s, &t, 1);
    s->retry = 1;
    return 0;
}

static int resource_key(char *out, size_t cap, seldon_kind kind, const char *name)
{
    int n = snprintf(out, cap, "%c:%s", kind == SELDON_KIND_PIPELINE ? 'P' : 'E', name);
    return n < 0 || (size_t)n >= cap ? SELDON_ETOOBIG : 0;
}

static int is_model_experiment(const seldon_resource *r)
{
    const char *t = r->spec.experiment.resource_type;
    return t == NULL || strcmp(t, "model") == 0;
}

/*
 * Rules across the resources of one manifest, checked before anything
 * changes: a resource appears once; a model (or pipeline) is the default of
 * at most one experiment. Hashed: linear in the manifest.
 */
static int check_manifest(const seldon_sched *s, const seldon_manifest *mf)
{
    sch_map seen[5] = {{0}}, defaults[2] = {{0}};
    size_t i, n = seldon_manifest_count(mf);
    int rc = 0, k;
    for (i = 0; i < n && rc == 0; i++) {
        const seldon_resource *b = seldon_manifest_at(mf, i);
        const seldon_resource *a;
        if (b->kind < SELDON_KIND_MODEL || b->kind > SELDON_KIND_EXPERIMENT || b->name == NULL) {
            rc = sdn_error(SELDON_EINVAL, "document %zu: unknown kind", b->document);
            break;
        }
        if ((a = sdn_sch_map_get(&seen[b->kind], b->name)) != NULL) {
            rc = sdn_error(SELDON_EINVAL, "document %zu (%s \"%s\"): repeats document %zu",
                           b->document, seldon_kind_name(b->kind), b->name, a->document);
            break;
        }
        if ((rc = sdn_sch_map_put(&seen[b->kind], b->name, (void *)b)) != 0)
            break;
        if (b->kind == SELDON_KIND_EXPERIMENT && b->spec.experiment.mirror_name != NULL) {
            /* No repeated names, as upstream: the mirror is not a candidate too. */
            const seldon_experiment_spec *x = &b->spec.experiment;
            size_t c;
            for (c = 0; c < x->candidates_count && rc == 0; c++)
                if (strcmp(x->candidates[c].name, x->mirror_name) == 0)
                    rc = sdn_error(SELDON_EINVAL,
                                   "document %zu (Experiment \"%s\"): spec.mirror.name: \"%s\" "
                                   "is already a candidate",
                                   b->document, b->name, x->mirror_name);
            if (rc != 0)
                break;
        }
        if (b->kind == SELDON_KIND_EXPERIMENT && b->spec.experiment.default_name != NULL) {
            sch_map *d = &defaults[is_model_experiment(b)];
            const char *def = b->spec.experiment.default_name;
            if ((a = sdn_sch_map_get(d, def)) != NULL) {
                rc = sdn_error(SELDON_EINVAL,
                               "document %zu (Experiment \"%s\"): spec.default: \"%s\" is "
                               "already the default of experiment \"%s\"",
                               b->document, b->name, def, a->name);
                break;
            }
            rc = sdn_sch_map_put(d, def, (void *)b);
            for (k = 0; rc == 0 && k < (int)s->nresources; k++) {
                const sch_resource *r = s->resources[k];
                if (r->live && r->exp_default != NULL && r->key[0] == 'E' &&
                    r->exp_pipeline == !is_model_experiment(b) &&
                    strcmp(r->exp_default, def) == 0 && strcmp(r->key + 2, b->name) != 0)
                    rc = sdn_error(SELDON_EINVAL,
                                   "document %zu (Experiment \"%s\"): spec.default: \"%s\" is "
                                   "already the default of experiment \"%s\"",
                                   b->document, b->name, def, r->key + 2);
            }
        }
    }
    for (k = 0; k < 5; k++)
        sdn_sch_map_free(&seen[k]);
    sdn_sch_map_free(&defaults[0]);
    sdn_sch_map_free(&defaults[1]);
    return rc;
}

int seldon_sched_apply(seldon_sched *sched, const seldon_manifest *manifest, uint32_t *out_versions,
                       int64_t now_ns)
{
    size_t i, n;
    int rc = 0;
    seldon_pipeline **compiled = NULL;

    if (sched == NULL || manifest == NULL)
        return sdn_error(SELDON_EINVAL, "sched_apply: NULL argument");
    sched->now = now_ns;
    n = seldon_manifest_count(manifest);
    if ((rc = check_manifest(sched, manifest)) != 0)
        return rc;
    if ((rc = store_ready(sched, n)) != 0)
        return rc;
    /* Pipelines compile before anything changes: one that does not refuses the manifest. */
    if (n > 0 && (compiled = sdn_calloc(n, sizeof(*compiled))) == NULL)
        return sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
    if ((rc = sdn_sch_pipelines_prepare(sched, manifest, compiled)) != 0) {
        sdn_free(compiled);
        return rc;
    }
    for (i = 0; i < n; i++) {
        const seldon_resource *res = seldon_manifest_at(manifest, i);
        uint32_t version = 0;
        switch (res->kind) {
        case SELDON_KIND_MODEL:
            rc = apply_model(sched, res, &version);
            break;
        case SELDON_KIND_SERVER:
            rc = apply_server(sched, res);
            break;
        case SELDON_KIND_PIPELINE:
            rc = sdn_sch_pipeline_apply(sched, res, compiled[i], &version);
            compiled[i] = NULL;
            break;
        case SELDON_KIND_EXPERIMENT: {
            char key[SELDON_MANIFEST_NAME_MAX + 8];
            if ((rc = resource_key(key, sizeof(key), res->kind, res->name)) != 0)
                break;
            if ((rc = serialize(&sched->scratch, res, NULL, NULL)) != 0)
                break;
            rc = sdn_sch_resource_put(sched, key, (const char *)sched->scratch.data,
                                      sched->scratch.len, 1);
            if (rc == 0 && res->kind == SELDON_KIND_EXPERIMENT)
                rc = sdn_sch_resource_experiment(sched, key, res);
            if (rc == 0) {
                /* The event's name must outlive the manifest: the stored key holds it. */
                const sch_resource *sr = sdn_sch_map_get(&sched->resources_by_key, key);
                sdn_sch_event(sched, res->kind, sr->key + 2, 0, "Stored", NULL, NULL, -1);
            }
            break;
        }
        default:
            rc = sdn_error(SELDON_EINVAL, "document %zu: unknown kind", res->document);
        }
        if (rc != 0) {
            sdn_error_prefix(rc, "document %zu (%s \"%s\")", res->document,
                             seldon_kind_name(res->kind) ? seldon_kind_name(res->kind) : "?",
                             res->name ? res->name : "");
            break;
        }
        if (out_versions != NULL)
            out_versions[i] = version;
    }
    for (i = 0; i < n; i++)
        seldon_pipeline_free(compiled[i]);
    sdn_free(compiled);
    {
        int frc = finish(sched);
        if (rc == 0)
            rc = frc;
    }
    return rc;
}

int seldon_sched_unload(seldon_sched *sched, seldon_kind kind, const char *name, int64_t now_ns)
{
    int rc = 0;
    uint32_t i;
    if (sched == NULL || name == NULL)
        return sdn_error(SELDON_EINVAL, "sched_unload: NULL argument");
    sched->now = now_ns;
    if ((rc = store_ready(sched, 1)) != 0)
        return rc;
    switch (kind) {
    case SELDON_KIND_MODEL: {
        sch_model *m = sdn_sch_map_get(&sched->models_by_name, name);
        if (m == NULL || m->deleted)
            return sdn_error(SELDON_ENOTFOUND, "model \"%s\" not found", name);
        m->deleted = 1;
        sdn_sch_mark_model(sched, m);
        for (i = 0; i < m->nversions; i++)
            version_terminate(sched, m->versions[i]);
        break;
    }
    case SELDON_KIND_SERVER: {
        sch_server *sv = sdn_sch_map_get(&sched->servers_by_name, name);
        touched t = {0};
        uint32_t j, k;
        if (sv == NULL || !sv->has_resource || sv->deleted)
            return sdn_error(SELDON_ENOTFOUND, "server \"%s\" not found", name);
        sv->deleted = 1;
        sdn_sch_mark_server(sched, sv);
        for (j = 0; j < sv->nreplicas; j++) {
            sch_replica *r = sv->replicas[j];
            if (r == NULL)
                continue;
            for (k = 0; k < r->nslots; k++)
                if (r->slots[k]->v && !r->slots[k]->leaving)
                    touch(&t, r->slots[k]->v);
        }
        touched_finish(sched, &t, 1);
        break;
    }
    case SELDON_KIND_PIPELINE:
        if ((rc = sdn_sch_pipeline_unload(sched, name)) != 0)
            return rc;
        break;
    case SELDON_KIND_EXPERIMENT: {
        char key[SELDON_MANIFEST_NAME_MAX + 8];
        sch_resource *res;
        if (resource_key(key, sizeof(key), kind, name) != 0 ||
            (res = sdn_sch_map_get(&sched->resources_by_key, key)) == NULL || !res->live)
            return sdn_error(SELDON_ENOTFOUND, "%s \"%s\" not found", seldon_kind_name(kind), name);
        if ((rc = sdn_sch_resource_put(sched, key, NULL, 0, 0)) != 0)
            return rc;
        sched->routes_changed = 1; /* the default's endpoint goes back to it */
        if (res->exp != NULL)
            res->exp->reported = 0;
        sdn_sch_event(sched, kind, res->key + 2, 0, "Deleted", NULL, NULL, -1);
        break;
    }
    default:
        return sdn_error(SELDON_EINVAL, "sched_unload: unknown kind %d", (int)kind);
    }
    return finish(sched);
}

/* --- Agents ---------------------------------------------------------------- */

static sch_slot *find_slot(const sch_version *v, const sch_replica *r)
{
    uint32_t i;
    for (i = 0; i < v->nslots; i++)
        if (v->slots[i]->r == r)
            return v->slots[i];
    return NULL;
}

static sch_version *find_version(const seldon_sched *s, const char *model, uint32_t version)
{
    sch_model *m = sdn_sch_map_get(&s->models_by_name, model);
    uint32_t i;
    if (m == NULL)
        return NULL;
    for (i = 0; i < m->nversions; i++)
        if (m->versions[i]->number == version)
            return m->versions[i];
    return NULL;
}

static uint32_t target_count(const sch_version *v)
{
    uint32_t i, n = 0;
    for (i = 0; i < v->nslots; i++)
        n += !v->slots[i]->leaving;
    return n;
}

/* A model loaded on r that we did not place there: adopt it when wanted, else unload it. */
static int loaded_unplaced(seldon_sched *s, sch_replica *r, const char *model, uint32_t version,
                           touched *t)
{
    sch_version *v = find_version(s, model, version);
    sch_slot *sl = NULL;
    int rc;
    if (v != NULL && !v->terminating && !v->m->deleted && v->replicas > 0 &&
        (v->server == NULL || v->server == r->s) && target_count(v) < (uint32_t)v->replicas &&
        !sdn_sch_draining(r) && sdn_sch_fits(r, v)) {
        if ((rc = sdn_sch_slot_new(&sl, s, v, r, SCH_R_AVAILABLE)) != 0)
            return rc;
        sl->seen = 1;
        v->server = r->s;
        touch(t, v);
        return 0;
    }
    if ((rc = sdn_sch_grow((void **)&r->strays, &r->capstrays, r->nstrays + 1, sizeof(void *))))
        return rc;
    sl = sdn_calloc(1, sizeof(*sl));
    if (sl == NULL || (sl->stray_model = sdn_strndup(model, strlen(model))) == NULL) {
        sdn_free(sl);
        return sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
    }
    sl->r = r;
    sl->stray_version = version;
    sl->state = SCH_R_LOADED;
    r->strays[r->nstrays++] = sl;
    if (s->ready)
        slot_owe(s, sl, SELDON_SCHED_UNLOAD);
    return 0;
}

static int copy_strv(char ***out, uint32_t *n, const char *const *src, size_t count)
{
    uint32_t i;
    for (i = 0; i < *n; i++)
        sdn_free((*out)[i]);
    sdn_free(*out);
    *out = NULL;
    *n = 0;
    if (count == 0)
        return 0;
    *out = sdn_calloc(count, sizeof(char *));
    if (*out == NULL)
        return sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
    for (i = 0; i < count; i++) {
        if (src[i] == NULL)
            return sdn_error(SELDON_EINVAL, "capabilities[%u]: NULL", i);
        if (((*out)[i] = sdn_strndup(src[i], strlen(src[i]))) == NULL)
            return sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
        (*n)++;
    }
    return 0;
}

static int set_str(char **dst, const char *src)
{
    sdn_free(*dst);
    *dst = NULL;
    if (src == NULL || src[0] == '\0')
        return 0;
    *dst = sdn_strndup(src, strlen(src));
    return *dst ? 0 : sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
}

int seldon_sched_agent_connect(seldon_sched *sched, const seldon_sched_replica *replica,
                               const seldon_sched_loaded *loaded, size_t loaded_count,
                               int64_t now_ns)
{
    sch_server *sv = NULL;
    sch_replica *r = NULL;
    touched t = {0};
    size_t i;
    uint32_t k;
    int rc;

    if (sched == NULL || replica == NULL || (loaded == NULL && loaded_count > 0))
        return sdn_error(SELDON_EINVAL, "sched_agent_connect: NULL argument");
    if (replica->server == NULL || replica->server[0] == '\0' ||
        strlen(replica->server) > SELDON_MANIFEST_NAME_MAX)
        return sdn_error(SELDON_EINVAL, "replica.server: a name of 1 to %d bytes is required",
                         SELDON_MANIFEST_NAME_MAX);
    if (replica->memory_bytes < 0)
        return sdn_error(SELDON_EINVAL, "replica.memory_bytes: negative");
    if (replica->overcommit_percent > 1000)
        return sdn_error(SELDON_EINVAL, "replica.overcommit_percent: above 1000");
    if (replica->capabilities_count > 0 && replica->capabilities == NULL)
        return sdn_error(SELDON_EINVAL, "replica.capabilities: NULL with a count");
    for (i = 0; i < loaded_count; i++)
        if (loaded[i].model == NULL || loaded[i].version == 0)
            return sdn_error(SELDON_EINVAL, "loaded[%zu]: a model name and a version are required",
                             i);
    sched->now = now_ns;
    if ((rc = sdn_sch_server_get(&sv, sched, replica->server, 1)) != 0 ||
        (rc = sdn_sch_replica_get(&r, sched, sv, replica->index, 1)) != 0)
        return rc;
    if ((rc = set_str(&r->http, replica->http)) != 0 || (rc = set_str(&r->grpc, replica->grpc)) ||
        (rc = copy_strv(&r->own_caps, &r->nown_caps, replica->capabilities,
                        replica->capabilities_count)) != 0 ||
        (rc = sdn_sch_replica_set_caps(sched, r)) != 0)
        return rc;
    r->memory = replica->memory_bytes;
    r->overcommit = replica->overcommit_percent;
    r->connected = 1;
    r->expected = 1;
    sdn_sch_mark_server(sched, sv);
    sched->routes_changed = 1; /* addresses may have changed */

    /* Strays are re-learnt from this list. */
    while (r->nstrays > 0)
        stray_free(sched, r->strays[r->nstrays - 1]);
    for (k = 0; k < r->nslots; k++)
        r->slots[k]->seen = 0;
    for (i = 0; i < loaded_count; i++) {
        sch_version *v = find_version(sched, loaded[i].model, loaded[i].version);
        sch_slot *sl = v ? find_slot(v, r) : NULL;
        if (sl == NULL) {
            if ((rc = loaded_unplaced(sched, r, loaded[i].model, loaded[i].version, &t)) != 0)
                goto out;
            continue;
        }
        sl->seen = 1;
        touch(&t, v);
        switch (sl->state) {
        case SCH_R_UNLOAD_ENVOY_REQUESTED:
        case SCH_R_DRAINING:
            break;
        case SCH_R_UNLOAD_REQUESTED:
        case SCH_R_UNLOADING:
        case SCH_R_UNLOAD_FAILED:
            sl->attempts = 0;
            slot_state(sched, sl, SCH_R_UNLOAD_REQUESTED, NULL);
            slot_owe(sched, sl, SELDON_SCHED_UNLOAD);
            break;
        default:
            slot_detach(sched, sl);
            sl->attempts = 0;
            slot_mem(sched, sl, 1);
            slot_state(sched, sl, sl->leaving ? SCH_R_DRAINING : SCH_R_AVAILABLE, NULL);
            if (v->terminating)
                sdn_sch_slot_leave(sched, sl);
        }
    }
    /* What we placed here and the replica does not hold. */
    for (k = r->nslots; k-- > 0;) {
        sch_slot *sl;
        if (k >= r->nslots)
            continue;
        sl = r->slots[k];
        if (sl->seen)
            continue;
        touch(&t, sl->v);
        switch (sl->state) {
        case SCH_R_LOAD_FAILED:
            break;
        case SCH_R_UNLOAD_ENVOY_REQUESTED:
        case SCH_R_UNLOAD_REQUESTED:
        case SCH_R_UNLOADING:
        case SCH_R_UNLOAD_FAILED:
            slot_free(sched, sl);
            break;
        default:
            if (sl->leaving || sl->v->terminating) {
                slot_free(sched, sl);
            } else {
                sl->attempts = 0;
                slot_mem(sched, sl, 1);
                slot_state(sched, sl, SCH_R_LOAD_REQUESTED, "not loaded on the replica");
                slot_owe(sched, sl, SELDON_SCHED_LOAD);
            }
        }
    }
    readyq_add(sched, r);
    sched->retry = 1;
    sdn_sch_event(sched, SELDON_KIND_SERVER, sv->name, 0, "ServerReplicaConnected", NULL, sv->name,
                  (int32_t)r->index);
    touched_finish(sched, &t, 0);
    if (!sched->ready && all_known_connected(sched))
        become_ready(sched);
out:
    sdn_free(t.v);
    {
        int frc = finish(sched);
        if (rc == 0)
            rc = frc;
    }
    return rc;
}

int seldon_sched_agent_disconnect(seldon_sched *sched, const char *server, uint32_t index,
                                  int64_t now_ns)
{
    sch_server *sv;
    sch_replica *r = NULL;
    touched t = {0};
    if (sched == NULL || server == NULL)
        return sdn_error(SELDON_EINVAL, "sched_agent_disconnect: NULL argument");
    sched->now = now_ns;
    sv = sdn_sch_map_get(&sched->servers_by_name, server);
    if (sv == NULL || sdn_sch_replica_get(&r, sched, sv, index, 0) != 0)
        return sdn_error(SELDON_ENOTFOUND, "server \"%s\" replica %u not known", server, index);
    r->connected = 0;
    r->expected = 0;
    sdn_sch_mark_server(sched, sv);
    sched->routes_changed = 1;
    sdn_sch_event(sched, SELDON_KIND_SERVER, sv->name, 0, "ServerReplicaDisconnected", NULL,
                  sv->name, (int32_t)index);
    if (sched->ready) {
        replica_drop_slots(sched, r, &t);
        if (sdn_sch_draining(r))
            replica_forget(sched, r);
        touched_finish(sched, &t, 1);
    }
    return finish(sched);
}

int seldon_sched_agent_event(seldon_sched *sched, const char *server, uint32_t index,
                             uint64_t command_id, const char *model, uint32_t version,
                             seldon_sched_event_type type, const char *reason, int64_t now_ns)
{
    sch_server *sv;
    sch_replica *r = NULL;
    sch_version *v;
    sch_slot *sl = NULL;
    touched t = {0};
    uint32_t k;
    int rc = 0;

    if (sched == NULL || server == NULL || model == NULL)
        return sdn_error(SELDON_EINVAL, "sched_agent_event: NULL argument");
    if (type < SELDON_SCHED_LOADED || type > SELDON_SCHED_UNLOAD_FAILED)
        return sdn_error(SELDON_EINVAL, "sched_agent_event: unknown type %d", (int)type);
    sched->now = now_ns;
    sv = sdn_sch_map_get(&sched->servers_by_name, server);
    if (sv == NULL || sdn_sch_replica_get(&r, sched, sv, index, 0) != 0)
        return sdn_error(SELDON_ENOTFOUND, "server \"%s\" replica %u not known", server, index);
    v = find_version(sched, model, version);
    if (v != NULL)
        sl = find_slot(v, r);
    if (sl == NULL) {
        /* Not placed here: a stray's unload, or a model the agent loaded by itself. */
        for (k = 0; k < r->nstrays; k++) {
            sch_slot *st = r->strays[k];
            if (st->stray_version == version && strcmp(st->stray_model, model) == 0) {
                if (type == SELDON_SCHED_UNLOADED || type == SELDON_SCHED_UNLOAD_FAILED)
                    stray_free(sched, st);
                return finish(sched);
            }
        }
        if (type == SELDON_SCHED_LOADED)
            rc = loaded_unplaced(sched, r, model, version, &t);
        touched_finish(sched, &t, 0);
        {
            int frc = finish(sched);
            return rc ? rc : frc;
        }
    }
    switch (type) {
    case SELDON_SCHED_LOADED:
        if (sl->state == SCH_R_LOAD_REQUESTED || sl->state == SCH_R_LOADING ||
            sl->state == SCH_R_LOADED || sl->state == SCH_R_LOAD_FAILED ||
            sl->state == SCH_R_UNKNOWN) {
            slot_detach(sched, sl);
            sl->attempts = 0;
            slot_mem(sched, sl, 1);
            slot_state(sched, sl, sl->leaving ? SCH_R_DRAINING : SCH_R_AVAILABLE, NULL);
            if (v->terminating)
                sdn_sch_slot_leave(sched, sl);
        }
        break;
    case SELDON_SCHED_LOAD_FAILED:
        if (sl->state == SCH_R_LOAD_REQUESTED || sl->state == SCH_R_LOADING) {
            slot_detach(sched, sl);
            slot_mem(sched, sl, 0);
            slot_state(sched, sl, SCH_R_LOAD_FAILED, reason ? reason : "load failed");
        } else if (sl->state == SCH_R_UNLOAD_REQUESTED || sl->state == SCH_R_UNLOADING) {
            slot_free(sched, sl); /* the load we were about to undo never happened */
        }
        break;
    case SELDON_SCHED_UNLOADED:
        if (sl->state == SCH_R_UNLOAD_REQUESTED || sl->state == SCH_R_UNLOADING ||
            sl->state == SCH_R_UNLOAD_ENVOY_REQUESTED || sl->state == SCH_R_LOAD_FAILED ||
            sl->leaving || v->terminating) {
            slot_free(sched, sl);
        } else if (command_id != 0) {
            /* Unloaded on a command we no longer want: load it again. */
            slot_state(sched, sl, SCH_R_LOAD_REQUESTED, "unloaded by the agent");
            sl->attempts = 0;
            slot_owe(sched, sl, SELDON_SCHED_LOAD);
        }
        /* Otherwise an eviction the agent made by itself (overcommit): it stays placed and
           the agent loads it again on demand. */
        break;
    case SELDON_SCHED_UNLOAD_FAILED:
        slot_state(sched, sl, SCH_R_UNLOAD_FAILED, reason ? reason : "unload failed");
        if (sl->leaving || v->terminating)
            slot_free(sched, sl);
        break;
    }
    sdn_sch_version_refresh(sched, v);
    return finish(sched);
}

/* --- Commands and time ------------------------------------------------------ */

int seldon_sched_next_command(seldon_sched *sched, seldon_sched_command *out)
{
    if (sched == NULL || out == NULL)
        return sdn_error(SELDON_EINVAL, "sched_next_command: NULL argument");
    if (!sched->ready)
        return SELDON_ENOTFOUND;
    while (sched->nreadyq > 0) {
        uint32_t pos = sched->readyq_pos % sched->nreadyq;
        sch_replica *r = sched->readyq[pos];
        sch_slot *sl = r->q_head;
        int op;
        if (!r->connected || sl == NULL) {
            r->in_ready = 0;
            sched->readyq[pos] = sched->readyq[--sched->nreadyq];
            continue;
        }
        sched->readyq_pos = pos + 1;
        op = sl->owe;
        queue_remove(sl);
        sl->inflight = 1;
        sl->attempts++;
        sl->cmd_id = sched->next_cmd_id++;
        sl->deadline = sched->now + sched->cfg.load_timeout_ms * 1000000;
        list_push(&sched->inflight, sl);
        if (sl->v != NULL)
            slot_state(sched, sl, op == SELDON_SCHED_LOAD ? SCH_R_LOADING : SCH_R_UNLOADING, NULL);
        memset(out, 0, sizeof(*out));
        out->op = (seldon_sched_op)op;
        out->id = sl->cmd_id;
        out->server = r->s->name;
        out->index = r->index;
        out->model = sl->v ? sl->v->m->name : sl->stray_model;
        out->version = sl->v ? sl->v->number : sl->stray_version;
        out->spec = op == SELDON_SCHED_LOAD && sl->v ? sl->v->spec : NULL;
        out->memory_bytes = sl->v ? sl->v->memory : 0;
        return 0;
    }
    return SELDON_ENOTFOUND;
}

int64_t seldon_sched_tick(seldon_sched *sched, int64_t now_ns)
{
    int64_t next = INT64_MAX;
    touched t = {0};
    if (sched == NULL)
        return INT64_MAX;
    sched->now = now_ns;
    if (!sched->ready && now_ns >= sched->ready_deadline) {
        sdn_log(SELDON_LOG_WARN, "scheduler: ready timeout: replicas that did not reconnect are "
                                 "dropped and their models placed again");
        become_ready(sched);
    }
    while (sched->grace.head != NULL && sched->grace.head->deadline <= now_ns) {
        sch_slot *sl = sched->grace.head;
        list_remove(&sched->grace, sl);
        sl->grace = 0;
        sl->attempts = 0;
        slot_state(sched, sl, SCH_R_UNLOAD_REQUESTED, NULL);
        slot_owe(sched, sl, SELDON_SCHED_UNLOAD);
    }
    while (sched->inflight.head != NULL && sched->inflight.head->deadline <= now_ns) {
        sch_slot *sl = sched->inflight.head;
        int op =
            sl->state == SCH_R_UNLOADING || sl->v == NULL ? SELDON_SCHED_UNLOAD : SELDON_SCHED_LOAD;
        list_remove(&sched->inflight, sl);
        sl->inflight = 0;
        if (sl->attempts <= sched->cfg.load_retries) {
            if (sl->v != NULL)
                slot_state(sched, sl,
                           op == SELDON_SCHED_LOAD ? SCH_R_LOAD_REQUESTED : SCH_R_UNLOAD_REQUESTED,
                           "no answer: sent again");
            slot_owe(sched, sl, op);
            continue;
        }
        if (sl->v == NULL) {
            stray_free(sched, sl);
            continue;
        }
        touch(&t, sl->v);
        if (op == SELDON_SCHED_LOAD) {
            char buf[96];
            snprintf(buf, sizeof(buf), "load timed out after %u attempts", sl->attempts);
            slot_mem(sched, sl, 0);
            slot_state(sched, sl, SCH_R_LOAD_FAILED, buf);
        } else {
            slot_state(sched, sl, SCH_R_UNLOAD_FAILED, "unload timed out");
            slot_free(sched, sl);
        }
    }
    touched_finish(sched, &t, 0);
    if (sched->ready)
        next = sdn_sch_autoscale(sched, now_ns);
    finish(sched);
    if (!sched->ready && sched->ready_deadline < next)
        next = sched->ready_deadline;
    if (sched->grace.head && sched->grace.head->deadline < next)
        next = sched->grace.head->deadline;
    if (sched->inflight.head && sched->inflight.head->deadline < next)
        next = sched->inflight.head->deadline;
    return next;
}
