/*
 * Experiments: a weighted split over candidates (models, or pipelines), an
 * optional mirror, and an optional default whose endpoint the experiment
 * takes over while it is active. The spec is stored as written (sch_resource
 * "E:<name>"); readiness is computed from the state (a target is ready when
 * the route table would serve it), so the routes never name a route that is
 * not there. Each change of readiness is an event of kind
 * SELDON_KIND_EXPERIMENT: "ExperimentActive" or "ExperimentWaiting".
 */
#include <stdio.h>
#include <string.h>

#include "sched/sched.h"

void sdn_sch_exp_free(sch_exp *e)
{
    uint32_t i;
    if (e == NULL)
        return;
    for (i = 0; i < e->ncands; i++)
        sdn_free(e->cands[i]);
    sdn_free(e->cands);
    sdn_free(e->weights);
    sdn_free(e->mirror);
    sdn_free(e->reason);
    sdn_free(e);
}

/* 1 when the model has a replica in the route table (serving, with an address). */
static int model_routed(const seldon_sched *s, const char *name)
{
    const sch_model *m = sdn_sch_map_get(&s->models_by_name, name);
    uint32_t i, j;
    if (m == NULL || m->deleted)
        return 0;
    for (i = 0; i < m->nversions; i++) {
        const sch_version *v = m->versions[i];
        for (j = 0; j < v->nslots; j++) {
            const sch_slot *sl = v->slots[j];
            if ((sl->state == SCH_R_AVAILABLE || sl->state == SCH_R_DRAINING) &&
                (sl->r->http != NULL || sl->r->grpc != NULL))
                return 1;
        }
    }
    return 0;
}

int sdn_sch_exp_target_ready(const seldon_sched *s, const sch_resource *r, const char *target)
{
    if (r->exp_pipeline) {
        const sch_pipeline *p = sdn_sch_pipeline_find(s, target);
        return p != NULL && !p->deleted && p->state == SCH_P_READY;
    }
    return model_routed(s, target);
}

int sdn_sch_exp_ready(const seldon_sched *s, const sch_resource *r, int *cands_ready,
                      int *mirror_ready, const char **waiting_for)
{
    const sch_exp *e = r->exp;
    uint32_t i;
    *cands_ready = 1;
    *mirror_ready = 1;
    *waiting_for = NULL;
    if (e == NULL)
        return 0;
    for (i = 0; i < e->ncands; i++)
        if (!sdn_sch_exp_target_ready(s, r, e->cands[i])) {
            if (*waiting_for == NULL)
                *waiting_for = e->cands[i];
            *cands_ready = 0;
        }
    if (e->mirror != NULL && !sdn_sch_exp_target_ready(s, r, e->mirror)) {
        *mirror_ready = 0;
        if (*waiting_for == NULL)
            *waiting_for = e->mirror;
    }
    return *cands_ready && *mirror_ready;
}

void sdn_sch_experiments_refresh(seldon_sched *s)
{
    uint32_t i;
    for (i = 0; i < s->nresources; i++) {
        sch_resource *r = s->resources[i];
        sch_exp *e = r->exp;
        int cr, mr, active;
        const char *waiting;
        char why[SELDON_MANIFEST_NAME_MAX + 64];
        if (r->key[0] != 'E' || !r->live || e == NULL)
            continue;
        active = sdn_sch_exp_ready(s, r, &cr, &mr, &waiting);
        if (e->reported && e->active == active && e->cands_ready == cr && e->mirror_ready == mr)
            continue;
        if (e->active != active)
            s->routes_changed = 1;
        e->active = (uint8_t)active;
        e->cands_ready = (uint8_t)cr;
        e->mirror_ready = (uint8_t)mr;
        e->reported = 1;
        e->last_change = s->now;
        if (active)
            snprintf(why, sizeof(why), "experiment active");
        else
            snprintf(why, sizeof(why), "waiting for %s %s \"%.253s\"", cr ? "mirror" : "candidate",
                     r->exp_pipeline ? "pipeline" : "model", waiting ? waiting : "");
        sdn_sch_set_reason(&e->reason, why);
        sdn_sch_event(s, SELDON_KIND_EXPERIMENT, r->key + 2, 0,
                      active ? "ExperimentActive" : "ExperimentWaiting", why, NULL, -1);
    }
}
