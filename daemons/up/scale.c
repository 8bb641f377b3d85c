/*
 * seldon up's server scaling (docs/autoscaling.md): the scheduler's requests for
 * the embedded server start more replicas in this process, and remove the extra
 * ones once the scheduler asks for fewer and they hold no model any more (their
 * models moved while they drained). A removed replica is disconnected from the
 * scheduler and kept idle (its server core stays allocated until exit); the next
 * scale-up registers it again before starting new ones.
 *
 * Control loop only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h" /* daemons/agent: ag_cache_first */
#include "sdd.h"
#include "up.h"

static void announce(up *u, up_replica *r)
{
    seldon_sched_replica rep;
    memset(&rep, 0, sizeof(rep));
    rep.server = u->cfg.server_name;
    rep.index = r->index;
    rep.http = r->addr;
    rep.grpc = r->addr;
    rep.capabilities = u->cfg.caps;
    rep.capabilities_count = u->cfg.ncaps;
    rep.memory_bytes = u->cfg.server_memory;
    rep.overcommit_percent = u->cfg.overcommit;
    if (seldon_sched_agent_connect(u->sched.sched, &rep, NULL, 0, sc_now_ns()) != 0)
        sdd_log(SELDON_LOG_ERROR, "replica %s/%u: %s", u->cfg.server_name, r->index,
                seldon_last_error());
}

static void pump_soon_cb(uv_timer_t *t)
{
    up *u = t->data;
    sc_pump(&u->sched);
}

/* A change made after (or outside) a pump: the scheduler acts on it at once. */
static void pump_soon(up *u)
{
    if (u->stopping)
        return;
    if (!u->scale_timer_on) {
        uv_timer_init(u->ctl, &u->scale_timer);
        u->scale_timer.data = u;
        u->scale_timer_on = 1;
    }
    uv_timer_start(&u->scale_timer, pump_soon_cb, 0, 0);
}

void up_scale(void *user_data, const seldon_sched_scale_request *rq)
{
    up *u = user_data;
    uint32_t i;
    int port = 9000, started = 0;
    const char *colon;
    if (u->stopping)
        return;
    if (strcmp(rq->server, u->cfg.server_name) != 0) {
        sdd_log(SELDON_LOG_WARN, "server %s: %u replicas requested, but seldon up runs only %s",
                rq->server, rq->replicas, u->cfg.server_name);
        return;
    }
    u->scale_want = rq->replicas;
    if ((colon = strrchr(u->replicas[0].addr, ':')) != NULL)
        port = atoi(colon + 1);
    for (i = 0; i < (uint32_t)u->nreplicas && i < rq->replicas; i++) {
        up_replica *r = &u->replicas[i];
        if (r->removed) {
            r->removed = 0;
            announce(u, r);
            started++;
            sdd_log(SELDON_LOG_INFO, "replica %s/%u: back (scaled up to %u)", u->cfg.server_name, i,
                    rq->replicas);
        }
    }
    while ((uint32_t)u->nreplicas < rq->replicas && u->nreplicas < UP_MAX_SERVERS) {
        up_replica *r = &u->replicas[u->nreplicas];
        if (up_replica_start(u, r, (uint32_t)u->nreplicas, port) != 0) {
            sdd_log(SELDON_LOG_ERROR, "replica %s/%d: could not start: %s", u->cfg.server_name,
                    u->nreplicas, seldon_last_error());
            break;
        }
        u->nreplicas++;
        announce(u, r);
        started++;
        sdd_log(SELDON_LOG_INFO, "replica %s/%u: started (scaled up to %u)", u->cfg.server_name,
                r->index, rq->replicas);
    }
    if (started)
        pump_soon(u);
    up_scale_check(u);
}

void up_scale_check(up *u)
{
    uint32_t i;
    int removed = 0;
    if (u->scale_want == 0 || u->stopping)
        return;
    for (i = u->scale_want; i < (uint32_t)u->nreplicas; i++) {
        up_replica *r = &u->replicas[i];
        if (r->removed || ag_cache_first(r->cache) != NULL)
            continue; /* gone already, or its models have not moved yet */
        if (seldon_sched_agent_disconnect(u->sched.sched, u->cfg.server_name, i, sc_now_ns()) != 0)
            continue;
        r->removed = 1;
        removed++;
        sdd_log(SELDON_LOG_INFO, "replica %s/%u: removed (scaled down to %u)", u->cfg.server_name,
                i, u->scale_want);
    }
    if (removed)
        pump_soon(u);
}

void up_scale_stop(up *u)
{
    if (u->scale_timer_on) {
        u->scale_timer_on = 0;
        uv_timer_stop(&u->scale_timer);
        uv_close((uv_handle_t *)&u->scale_timer, NULL);
    }
}
