/*
 * Model autoscaling in seldon up (docs/autoscaling.md): the embedded replicas'
 * load, per model version, to the scheduler library's autoscaler, as
 * seldon-agent reports it in the distributed system. The ingress counts each
 * request of a version on a replica (up_vl_begin/up_vl_end on the counters the
 * lookup table's target carries); every --load-report ms the control loop reads
 * them and calls seldon_sched_model_load() with the requests in flight and how
 * long the version has had none (0 while busy), then pumps the scheduler, whose
 * tick makes the same decision as for the agents' reports.
 */
#include <string.h>
#include <time.h>

#include "cache.h" /* daemons/agent: the versions a replica holds */
#include "sdd.h"
#include "up.h"

static uint64_t fnv(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s != '\0'; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

int up_vload_init(up *u)
{
    int i;
    size_t k;
    for (i = 0; i < u->nreplicas; i++) {
        up_replica *r = &u->replicas[i];
        if (r->vload != NULL)
            continue;
        r->vload = sdd_calloc(UP_VLOAD_SLOTS + 1, sizeof(*r->vload));
        if (r->vload == NULL)
            return sdd_error(SELDON_ENOMEM, "out of memory");
        for (k = 0; k <= UP_VLOAD_SLOTS; k++) {
            r->vload[k].r = r;
            atomic_init(&r->vload[k].inflight, 0);
            atomic_init(&r->vload[k].ends, 0);
        }
    }
    return 0;
}

up_vload *up_vload_of(up_replica *r, const char *vname)
{
    size_t i, k, free_at = SIZE_MAX;
    k = (size_t)(fnv(vname) % UP_VLOAD_SLOTS);
    for (i = 0; i < UP_VLOAD_SLOTS; i++) {
        up_vload *l = &r->vload[(k + i) % UP_VLOAD_SLOTS];
        if (l->vname == NULL) {
            if (free_at == SIZE_MAX)
                free_at = (k + i) % UP_VLOAD_SLOTS;
            continue; /* freed slots leave holes: look on */
        }
        if (strcmp(l->vname, vname) == 0) {
            l->absent = 0;
            return l;
        }
    }
    if (free_at != SIZE_MAX) {
        up_vload *l = &r->vload[free_at];
        if ((l->vname = sdd_strndup(vname, strlen(vname))) != NULL) {
            l->seen_ends = atomic_load_explicit(&l->ends, memory_order_relaxed);
            l->idle_since = up_mono_ns(); /* idle from now: nothing was sent to it yet */
            l->absent = 0;
            return l;
        }
    }
    return &r->vload[UP_VLOAD_SLOTS]; /* counted, never reported */
}

static int64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* One replica's versions to the scheduler; slots of versions gone (and idle) are freed. */
static void report_replica(up *u, up_replica *r, int64_t mono, int64_t now)
{
    ag_entry *e;
    size_t i;
    for (e = ag_cache_first(r->cache); e != NULL; e = e->next) {
        up_vload *l = up_vload_of(r, e->vname);
        long n;
        unsigned long ends;
        int64_t idle_ms = 0;
        if (l == &r->vload[UP_VLOAD_SLOTS])
            continue;
        n = atomic_load_explicit(&l->inflight, memory_order_relaxed);
        ends = atomic_load_explicit(&l->ends, memory_order_relaxed);
        if (n > 0) {
            l->idle_since = 0;
        } else {
            if (ends != l->seen_ends || l->idle_since == 0)
                l->idle_since = mono; /* the last one ended since the last report */
            idle_ms = (mono - l->idle_since) / 1000000;
        }
        l->seen_ends = ends;
        if (e->state != AG_LOADED)
            continue; /* loading or evicted: nothing to say yet */
        if (seldon_sched_model_load(u->sched.sched, u->cfg.server_name, r->index, e->model,
                                    e->version, n > 0 ? (uint32_t)n : 0, idle_ms, now) != 0)
            sdd_log(SELDON_LOG_DEBUG, "load report %s/%u %s: %s", u->cfg.server_name, r->index,
                    e->vname, seldon_last_error());
    }
    for (i = 0; i < UP_VLOAD_SLOTS; i++) {
        up_vload *l = &r->vload[i];
        if (l->vname == NULL || ag_cache_find(r->cache, l->vname, strlen(l->vname)) != NULL)
            continue;
        /* Gone from the replica: freed once idle for two reports (no table names it). */
        if (atomic_load_explicit(&l->inflight, memory_order_relaxed) == 0 && ++l->absent > 2) {
            sdd_free(l->vname);
            l->vname = NULL;
        }
    }
}

static void report_cb(uv_timer_t *t)
{
    up *u = t->data;
    int64_t mono = up_mono_ns(), now = wall_ns();
    int i;
    if (u->stopping)
        return;
    for (i = 0; i < u->nreplicas; i++) {
        up_replica *r = &u->replicas[i];
        if (!r->removed && r->cache != NULL && r->vload != NULL)
            report_replica(u, r, mono, now);
    }
    sc_pump(&u->sched); /* the tick decides */
}

void up_load_start(up *u)
{
    if (u->cfg.load_report_ms == 0 || u->load_timer_on)
        return;
    uv_timer_init(u->ctl, &u->load_timer);
    u->load_timer.data = u;
    u->load_timer_on = 1;
    uv_timer_start(&u->load_timer, report_cb, u->cfg.load_report_ms, u->cfg.load_report_ms);
}

void up_load_stop(up *u)
{
    if (!u->load_timer_on)
        return;
    u->load_timer_on = 0;
    uv_timer_stop(&u->load_timer);
    uv_close((uv_handle_t *)&u->load_timer, NULL);
}

void up_load_free(up *u)
{
    int i;
    size_t k;
    for (i = 0; i < UP_MAX_SERVERS && u->replicas != NULL; i++) {
        up_replica *r = &u->replicas[i];
        if (r->vload == NULL)
            continue;
        for (k = 0; k <= UP_VLOAD_SLOTS; k++)
            sdd_free(r->vload[k].vname);
        sdd_free(r->vload);
        r->vload = NULL;
    }
}
