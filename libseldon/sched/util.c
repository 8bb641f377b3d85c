/*
 * Small pieces of the scheduler: state names, the hash map, array growth,
 * capability interning, memory arithmetic.
 */
#include <string.h>
#include <xxhash.h>

#include "sched/sched.h"

static const char *const model_states[SCH_M__COUNT] = {
    "ModelStateUnknown",    "ModelProgressing", "ModelAvailable",
    "ModelFailed",          "ModelTerminating", "ModelTerminated",
    "ModelTerminateFailed", "ScheduleFailed",   "ModelScaledDown"};

static const char *const replica_states[SCH_R__COUNT] = {"ModelReplicaStateUnknown",
                                                         "LoadRequested",
                                                         "Loading",
                                                         "Loaded",
                                                         "LoadFailed",
                                                         "UnloadEnvoyRequested",
                                                         "UnloadRequested",
                                                         "Unloading",
                                                         "Unloaded",
                                                         "UnloadFailed",
                                                         "Available",
                                                         "LoadedUnavailable",
                                                         "Draining"};

const char *sdn_sched_model_state_name(int state)
{
    return state >= 0 && state < SCH_M__COUNT ? model_states[state] : model_states[0];
}

const char *sdn_sched_replica_state_name(int state)
{
    return state >= 0 && state < SCH_R__COUNT ? replica_states[state] : replica_states[0];
}

static uint64_t hash_str(const char *key)
{
    return XXH3_64bits(key, strlen(key));
}

void *sdn_sch_map_get(const sch_map *m, const char *key)
{
    uint64_t h;
    size_t i;
    if (m->cap == 0)
        return NULL;
    h = hash_str(key);
    for (i = (size_t)h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        const sch_map_slot *sl = &m->slots[i];
        if (sl->key == NULL)
            return NULL;
        if (sl->hash == h && strcmp(sl->key, key) == 0)
            return sl->val;
    }
}

static void map_insert(sch_map_slot *slots, size_t cap, uint64_t h, const char *key, void *val)
{
    size_t i;
    for (i = (size_t)h & (cap - 1);; i = (i + 1) & (cap - 1)) {
        if (slots[i].key == NULL) {
            slots[i].hash = h;
            slots[i].key = key;
            slots[i].val = val;
            return;
        }
        if (slots[i].hash == h && strcmp(slots[i].key, key) == 0) {
            slots[i].key = key;
            slots[i].val = val;
            return;
        }
    }
}

int sdn_sch_map_put(sch_map *m, const char *key, void *val)
{
    uint64_t h = hash_str(key);
    if ((m->n + 1) * 2 > m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 64, i;
        sch_map_slot *ns = sdn_calloc(ncap, sizeof(*ns));
        if (ns == NULL)
            return sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
        for (i = 0; i < m->cap; i++)
            if (m->slots[i].key != NULL)
                map_insert(ns, ncap, m->slots[i].hash, m->slots[i].key, m->slots[i].val);
        sdn_free(m->slots);
        m->slots = ns;
        m->cap = ncap;
    }
    {
        size_t i;
        for (i = (size_t)h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
            sch_map_slot *sl = &m->slots[i];
            if (sl->key == NULL) {
                sl->hash = h;
                sl->key = key;
                sl->val = val;
                m->n++;
                return 0;
            }
            if (sl->hash == h && strcmp(sl->key, key) == 0) {
                sl->key = key;
                sl->val = val;
                return 0;
            }
        }
    }
}

void sdn_sch_map_free(sch_map *m)
{
    sdn_free(m->slots);
    memset(m, 0, sizeof(*m));
}

int sdn_sch_grow(void **arr, uint32_t *cap, uint32_t need, size_t elem)
{
    uint32_t ncap;
    void *p;
    if (need <= *cap)
        return 0;
    ncap = *cap ? *cap : 4;
    while (ncap < need) {
        if (ncap > UINT32_MAX / 2)
            return sdn_error(SELDON_ETOOBIG, "scheduler: too many objects");
        ncap *= 2;
    }
    p = sdn_realloc(*arr, (size_t)ncap * elem);
    if (p == NULL)
        return sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
    *arr = p;
    *cap = ncap;
    return 0;
}

int64_t sdn_sch_cap_id(seldon_sched *s, const char *name, size_t len)
{
    char *copy;
    void *v;
    int rc;
    if (len < 128) {
        char tmp[128];
        memcpy(tmp, name, len);
        tmp[len] = '\0';
        v = sdn_sch_map_get(&s->caps_by_name, tmp);
        if (v != NULL)
            return (int64_t)(uintptr_t)v - 1;
    }
    copy = sdn_strndup(name, len);
    if (copy == NULL)
        return sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
    v = sdn_sch_map_get(&s->caps_by_name, copy);
    if (v != NULL) {
        sdn_free(copy);
        return (int64_t)(uintptr_t)v - 1;
    }
    if ((rc = sdn_sch_grow((void **)&s->caps, &s->capcaps, s->ncaps + 1, sizeof(char *))) != 0 ||
        (rc = sdn_sch_map_put(&s->caps_by_name, copy, (void *)(uintptr_t)(s->ncaps + 1))) != 0) {
        sdn_free(copy);
        return rc;
    }
    s->caps[s->ncaps] = copy;
    return s->ncaps++;
}

int64_t sdn_sch_capacity(const sch_replica *r)
{
    int64_t m = r->memory < 0 ? 0 : r->memory;
    uint64_t pct = 100u + r->overcommit;
    /* m * pct / 100 without overflow: split m into hundreds and the rest. */
    uint64_t hi = (uint64_t)(m / 100), lo = (uint64_t)(m % 100);
    uint64_t a, b = lo * pct / 100;
    if (__builtin_mul_overflow(hi, pct, &a) || a + b > (uint64_t)INT64_MAX)
        return INT64_MAX;
    return (int64_t)(a + b);
}

int sdn_sch_draining(const sch_replica *r)
{
    const sch_server *sv = r->s;
    if (sv->deleted)
        return 1;
    return sv->has_resource && sv->desired >= 0 && r->index >= (uint32_t)sdn_sch_server_size(sv);
}

int sdn_sch_set_reason(char **dst, const char *reason)
{
    char *c = NULL;
    if (reason == NULL && *dst == NULL)
        return 0;
    if (reason != NULL && *dst != NULL && strcmp(reason, *dst) == 0)
        return 0;
    if (reason != NULL) {
        c = sdn_strndup(reason, strlen(reason));
        if (c == NULL)
            return sdn_error(SELDON_ENOMEM, "scheduler: out of memory");
    }
    sdn_free(*dst);
    *dst = c;
    return 0;
}
