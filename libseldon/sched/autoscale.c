/*
 * Autoscaling: models scale on the load their agents report, servers on what
 * their models want (docs/autoscaling.md). Decisions happen in
 * seldon_sched_tick(); everything here is a scan of the models and servers,
 * which is cheap beside the placement a change starts.
 */
#include <stdio.h>
#include <string.h>

#include "sched.h"
#include "seldon/manifest.h"

#define MS 1000000LL

int seldon_sched_set_autoscale(seldon_sched *sched, const seldon_sched_autoscale *cfg)
{
    if (sched == NULL || cfg == NULL)
        return sdn_error(SELDON_EINVAL, "sched_set_autoscale: NULL argument");
    if (cfg->version != SELDON_SCHED_AUTOSCALE_VERSION)
        return sdn_error(SELDON_EINVAL, "sched_set_autoscale: unknown version %u", cfg->version);
    if (cfg->scale_up_inflight == 0)
        return sdn_error(SELDON_EINVAL, "scale_up_inflight: must be at least 1");
    if (cfg->scale_up_period_ms < 0 || cfg->scale_up_period_ms > INT64_MAX / MS / 2)
        return sdn_error(SELDON_EINVAL, "scale_up_period_ms: out of range");
    if (cfg->scale_down_idle_ms < 0 || cfg->scale_down_idle_ms > INT64_MAX / MS / 2)
        return sdn_error(SELDON_EINVAL, "scale_down_idle_ms: out of range");
    if (cfg->server_cooldown_ms < 0 || cfg->server_cooldown_ms > INT64_MAX / MS / 2)
        return sdn_error(SELDON_EINVAL, "server_cooldown_ms: out of range");
    sched->autoscale = *cfg;
    return 0;
}

int seldon_sched_model_load(seldon_sched *sched, const char *server, uint32_t index,
                            const char *model, uint32_t version, uint32_t inflight, int64_t idle_ms,
                            int64_t now_ns)
{
    sch_server *sv;
    sch_replica *r;
    sch_model *m;
    uint32_t i;
    if (sched == NULL || server == NULL || model == NULL)
        return sdn_error(SELDON_EINVAL, "sched_model_load: NULL argument");
    sched->now = now_ns;
    sv = sdn_sch_map_get(&sched->servers_by_name, server);
    if (sv == NULL || index >= sv->nreplicas || (r = sv->replicas[index]) == NULL)
        return sdn_error(SELDON_ENOTFOUND, "replica %s/%u not found", server, index);
    m = sdn_sch_map_get(&sched->models_by_name, model);
    if (m == NULL)
        return 0;
    for (i = 0; i < r->nslots; i++) {
        sch_slot *sl = r->slots[i];
        if (sl->v == NULL || sl->v->m != m || sl->v->number != version)
            continue;
        sl->as_reported = 1;
        sl->as_inflight = inflight;
        if (inflight > 0 || idle_ms < 0)
            sl->as_idle_since = 0;
        else
            sl->as_idle_since = now_ns - (idle_ms > now_ns / MS ? now_ns / MS : idle_ms) * MS;
        break;
    }
    return 0;
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

static void set_replicas(seldon_sched *s, sch_version *v, int32_t n, const char *why)
{
    sdn_log(SELDON_LOG_INFO, "autoscaler: model %s_%u: %d -> %d replicas (%s)", v->m->name,
            v->number, v->replicas, n, why);
    v->replicas = n;
    v->as_last_scale = s->now;
    v->as_above_since = 0;
    sdn_sch_mark_model(s, v->m);
    sdn_sch_event(s, SELDON_KIND_MODEL, v->m->name, v->number, "ModelReplicasChanged", why, NULL,
                  -1);
    sdn_sch_schedule(s, v);
}

/* One version: returns its next deadline. */
static int64_t scale_version(seldon_sched *s, sch_version *v, int64_t now)
{
    const seldon_sched_autoscale *c = &s->autoscale;
    int32_t lo = v->min_replicas > 1 ? v->min_replicas : 1;
    int32_t hi = v->max_replicas > 0 ? v->max_replicas : v->replicas;
    uint64_t inflight = 0;
    uint32_t avail = 0, target = 0, i;
    int64_t idle_since = INT64_MAX, next = INT64_MAX;
    char why[160];

    for (i = 0; i < v->nslots; i++) {
        const sch_slot *sl = v->slots[i];
        if (sl->leaving)
            continue;
        target++;
        if (sl->state != SCH_R_AVAILABLE)
            continue;
        avail++;
        if (!sl->as_reported) {
            idle_since = INT64_MIN; /* unknown: not idle */
            continue;
        }
        inflight += sl->as_inflight;
        if (sl->as_idle_since == 0)
            idle_since = INT64_MIN;
        else if (idle_since != INT64_MIN && sl->as_idle_since < idle_since)
            idle_since = sl->as_idle_since;
    }
    if (avail == 0)
        return INT64_MAX;
    /* Up: load per replica above the threshold for the period, every wanted replica loaded. */
    if (inflight > (uint64_t)c->scale_up_inflight * avail && v->replicas < hi) {
        if (v->as_above_since == 0)
            v->as_above_since = now;
        if (now - v->as_above_since < c->scale_up_period_ms * MS)
            return v->as_above_since + c->scale_up_period_ms * MS;
        if (avail >= (uint32_t)v->replicas && target >= (uint32_t)v->replicas) {
            snprintf(why, sizeof(why),
                     "autoscaled up: %llu requests in flight on %u replicas for %lld ms",
                     (unsigned long long)inflight, avail, (long long)c->scale_up_period_ms);
            set_replicas(s, v, v->replicas + 1, why);
        }
        return INT64_MAX; /* a replica still loading: its event brings the next tick */
    }
    v->as_above_since = 0;
    /* Down: a replica idle for the idle period; one step per period. */
    if (v->replicas > lo && idle_since != INT64_MIN && idle_since != INT64_MAX) {
        int64_t since = idle_since > v->as_last_scale ? idle_since : v->as_last_scale;
        if (now - since >= c->scale_down_idle_ms * MS) {
            snprintf(why, sizeof(why), "autoscaled down: a replica idle for %lld ms",
                     (long long)((now - idle_since) / MS));
            set_replicas(s, v, v->replicas - 1, why);
            return INT64_MAX;
        }
        next = since + c->scale_down_idle_ms * MS;
    }
    return next;
}

int32_t sdn_sch_server_size(const sch_server *sv)
{
    if (sv->scale_want > 0 && (int64_t)sv->scale_want > sv->desired)
        return (int32_t)sv->scale_want;
    return sv->desired;
}

/* After a restart the Server record holds only its spec: read the bounds from it. */
static void server_bounds(sch_server *sv)
{
    seldon_manifest *mf = NULL;
    const seldon_resource *res;
    if (sv->max_replicas != 0 || sv->spec == NULL || !sv->has_resource)
        return;
    if (seldon_manifest_parse(&mf, sv->spec, strlen(sv->spec), "server") == 0 &&
        seldon_manifest_count(mf) == 1 && (res = seldon_manifest_at(mf, 0)) != NULL &&
        res->kind == SELDON_KIND_SERVER) {
        sv->min_replicas = res->spec.server.min_replicas;
        sv->max_replicas = res->spec.server.max_replicas;
    }
    seldon_manifest_free(mf);
    if (sv->max_replicas == 0)
        sv->max_replicas = -1; /* read once: none */
}

static void request_scale(seldon_sched *s, sch_server *sv, uint32_t n, const char *why)
{
    uint32_t old = sv->scale_want;
    sdn_log(SELDON_LOG_INFO, "autoscaler: server %s: %u replicas requested (%s)", sv->name, n, why);
    sv->scale_want = n;
    sv->scale_owed = 1;
    sdn_sch_mark_server(s, sv); /* stored: a restart keeps the replicas it asked for */
    sv->scale_low_since = 0;
    sdn_sch_set_reason(&sv->scale_reason, why);
    sdn_sch_event(s, SELDON_KIND_SERVER, sv->name, 0, "ServerScaleRequested", why, NULL, -1);
    if (n > old) {
        s->retry = 1; /* the pending versions try the new replicas as they connect */
        return;
    }
    /* The replicas past n drain: their versions move to the others. */
    {
        uint32_t i, k;
        for (i = n; i < sv->nreplicas; i++) {
            sch_replica *r = sv->replicas[i];
            if (r == NULL)
                continue;
            for (k = 0; k < r->nslots; k++) {
                sch_version *v = r->slots[k]->v;
                if (v != NULL && !r->slots[k]->leaving && !v->terminating)
                    sdn_sch_schedule(s, v);
            }
        }
    }
}

static int64_t scale_server(seldon_sched *s, sch_server *sv, const int32_t *need, int64_t now)
{
    int32_t base = sv->desired > sv->min_replicas ? sv->desired : sv->min_replicas;
    int32_t want = *need > base ? *need : base;
    uint32_t cur;
    char why[200];
    server_bounds(sv);
    if (!sv->has_resource || sv->deleted || sv->max_replicas <= 0 || sv->desired < 0)
        return INT64_MAX;
    if (want > sv->max_replicas)
        want = sv->max_replicas;
    if (want < 1)
        want = 1;
    cur = (uint32_t)sdn_sch_server_size(sv);
    if ((uint32_t)want > cur) {
        snprintf(why, sizeof(why), "models want %d replicas (maxReplicas %d)", *need,
                 sv->max_replicas);
        request_scale(s, sv, (uint32_t)want, why);
        return INT64_MAX;
    }
    if ((uint32_t)want == cur) {
        sv->scale_low_since = 0;
        return INT64_MAX;
    }
    if (sv->scale_low_since == 0)
        sv->scale_low_since = now;
    if (now - sv->scale_low_since >= s->autoscale.server_cooldown_ms * MS) {
        snprintf(why, sizeof(why), "cool-down: models want %d replicas for %lld ms", want,
                 (long long)s->autoscale.server_cooldown_ms);
        request_scale(s, sv, (uint32_t)want, why);
        return INT64_MAX;
    }
    return sv->scale_low_since + s->autoscale.server_cooldown_ms * MS;
}

int64_t sdn_sch_autoscale(seldon_sched *s, int64_t now)
{
    int64_t next = INT64_MAX;
    uint32_t i, j, k;
    int32_t *need = NULL;
    for (i = 0; i < s->nmodels; i++) {
        sch_model *m = s->models[i];
        sch_version *v;
        if (m->deleted || m->nversions == 0)
            continue;
        v = m->versions[m->nversions - 1];
        if (v->terminating || (v->min_replicas <= 0 && v->max_replicas <= 0))
            continue;
        next = min64(next, scale_version(s, v, now));
    }
    if (s->nservers == 0)
        return next;
    need = sdn_calloc(s->nservers, sizeof(*need));
    if (need == NULL)
        return now + 1000 * MS; /* try again soon */
    for (i = 0; i < s->nservers; i++) {
        s->servers[i]->as_pos = i;
        server_bounds(s->servers[i]);
    }
    for (i = 0; i < s->nmodels; i++) {
        sch_model *m = s->models[i];
        for (j = 0; j < m->nversions; j++) {
            sch_version *v = m->versions[j];
            if (v->terminating)
                continue;
            if (v->server != NULL) {
                if (v->replicas > need[v->server->as_pos])
                    need[v->server->as_pos] = v->replicas;
                continue;
            }
            /* Not placed (too few replicas anywhere): every scalable server it fits wants it. */
            for (k = 0; k < s->nservers; k++) {
                sch_server *sv = s->servers[k];
                uint32_t q;
                if (!sv->has_resource || sv->max_replicas <= 0 || v->replicas <= need[k])
                    continue;
                for (q = 0; q < sv->nreplicas; q++)
                    if (sv->replicas[q] != NULL && sdn_sch_fits(sv->replicas[q], v)) {
                        need[k] = v->replicas;
                        break;
                    }
            }
        }
    }
    for (i = 0; i < s->nservers; i++)
        next = min64(next, scale_server(s, s->servers[i], &need[i], now));
    sdn_free(need);
    return next;
}

int seldon_sched_next_scale(seldon_sched *sched, seldon_sched_scale_request *out)
{
    uint32_t k;
    if (sched == NULL || out == NULL)
        return sdn_error(SELDON_EINVAL, "sched_next_scale: NULL argument");
    for (k = 0; k < sched->nservers; k++) {
        sch_server *sv = sched->servers[(sched->scale_pos + k) % sched->nservers];
        if (!sv->scale_owed)
            continue;
        sv->scale_owed = 0;
        sched->scale_pos = (sched->scale_pos + k + 1) % sched->nservers;
        out->server = sv->name;
        out->replicas = sv->scale_want;
        out->reason = sv->scale_reason;
        return 0;
    }
    return SELDON_ENOTFOUND;
}

int seldon_sched_server_scale(uint32_t *out_replicas, const char **out_reason, seldon_sched *sched,
                              const char *server)
{
    sch_server *sv;
    if (sched == NULL || server == NULL)
        return sdn_error(SELDON_EINVAL, "sched_server_scale: NULL argument");
    sv = sdn_sch_map_get(&sched->servers_by_name, server);
    if (sv == NULL)
        return sdn_error(SELDON_ENOTFOUND, "server \"%s\" not found", server);
    if (out_replicas != NULL)
        *out_replicas = sv->scale_want;
    if (out_reason != NULL)
        *out_reason = sv->scale_reason;
    return 0;
}
