/*
 * The control loop: the embedded replicas register with the scheduler by
 * function call, and its commands run here as an in-process agent stage, with
 * seldon-agent's own fetching code (daemons/agent/fetch.c): fetch the artifact
 * once (a local path or file:// copied with cp, anything else through `rclone
 * copy`, both as child processes so the loop never blocks), with its
 * artifactVersion folder, place it as <model>_<version> and rename it in
 * model-settings.json, load it into the replica's repository on the replica's
 * load executor, and report the outcome. After every pump the lookup table
 * of the ingress is rebuilt when the routes changed.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache.h" /* daemons/agent: the spec's fields */
#include "fetch.h" /* daemons/agent: fetching, placing, renaming */
#include "sdd.h"
#include "up.h"

/* ---------------------------------------------------------------- models */

static up_replica *replica_of(up *u, const char *server, uint32_t index)
{
    if (server == NULL || strcmp(server, u->cfg.server_name) != 0 ||
        index >= (uint32_t)u->nreplicas)
        return NULL;
    return &u->replicas[index];
}

#define MD(e) ((up_mdata *)(e)->user)

static ag_entry *model_find(up_replica *r, const char *model, uint32_t version)
{
    return ag_cache_find_version(r->cache, model, version);
}

static ag_entry *model_add(up_replica *r, const char *model, uint32_t version, int64_t memory)
{
    up_mdata *md = sdd_calloc(1, sizeof(*md));
    ag_entry *e = md != NULL ? ag_cache_add(r->cache, model, version, memory) : NULL;
    if (e == NULL) {
        sdd_free(md);
        return NULL;
    }
    e->user = md;
    /* Not loaded, not counted against the replica's memory until its load starts. */
    e->state = AG_EVICTED;
    md->preparing = 1;
    return e;
}

static void model_remove(up_replica *r, ag_entry *e)
{
    sdd_free(e->user);
    ag_cache_remove(r->cache, e);
}

/* ---------------------------------------------------------------- the table */

void up_table_free(up_table *t)
{
    if (t == NULL)
        return;
    seldon_routes_release(t->routes);
    sdd_free(t->first);
    sdd_free(t->targets);
    sdd_free(t->split);
    sdd_free(t->names);
    sdd_free(t);
}

/*
 * The ingress marks the target a request took with a tick (up_target.used); the
 * table in force is folded into the entries' recency before it is replaced and
 * before eviction planning. Control loop: the table in force cannot be freed here.
 */
static void recency_fold(up *u)
{
    up_table *t = atomic_load_explicit(&u->table, memory_order_acquire);
    size_t k;
    if (t == NULL)
        return;
    for (k = 0; k < t->first[seldon_routes_count(t->routes)]; k++) {
        uint64_t used = atomic_load_explicit(&t->targets[k].used, memory_order_relaxed);
        ag_entry *e;
        if (used == 0)
            continue;
        e = ag_cache_find(t->targets[k].r->cache, t->targets[k].vname, t->targets[k].vname_len);
        if (e != NULL && e->used < used)
            e->used = used;
    }
}

static up_replica *replica_at(up *u, const char *addr)
{
    int i;
    if (addr == NULL)
        return NULL;
    for (i = 0; i < u->nreplicas; i++)
        if (strcmp(u->replicas[i].addr, addr) == 0)
            return &u->replicas[i];
    return NULL;
}

/*
 * The newest version of model that r serves: loaded, or held (loaded once) and evicted
 * to make room, or on its way back; NULL when none. Unloading ones are left out.
 */
static ag_entry *newest(up_replica *r, const char *model)
{
    ag_entry *e, *best = NULL;
    for (e = ag_cache_first(r->cache); e != NULL; e = e->next)
        if ((e->state == AG_LOADED || (e->held && e->state != AG_UNLOADING)) &&
            strcmp(e->model, model) == 0 && (best == NULL || e->version > best->version))
            best = e;
    return best;
}

/*
 * Publishing a table, read-copy-update style. The ingress reads u->table without a
 * lock; each request looks its target up and hands itself to the service (which takes
 * its reference to the model instance) within one callback of its loop. So once every
 * ingress loop has run a callback posted after the swap, no request can still reach
 * what the new table left out: the old table is freed then, and only then does `then`
 * run (an unload starts), on the control loop. run is 0 when stopping.
 */
typedef void (*up_then_fn)(void *arg, int run);

typedef struct up_grace {
    up *u;
    atomic_int left;
    up_table *old;
    up_then_fn then;
    void *arg;
} up_grace;

static void grace_end(void *arg)
{
    up_grace *g = arg;
    up_table_free(g->old);
    if (g->then != NULL)
        g->then(g->arg, !g->u->stopping);
    sdd_free(g);
}

/* On each ingress loop: it has passed the swap. */
static void grace_tick(void *arg)
{
    up_grace *g = arg;
    if (atomic_fetch_sub(&g->left, 1) != 1)
        return;
    if (sdl_loops_post(g->u->ctl_loops, 0, grace_end, g) != 0) { /* stopping */
        up_table_free(g->old);
        if (g->then != NULL)
            g->then(g->arg, 0);
        sdd_free(g);
    }
}

static void publish(up *u, up_table *t, up_then_fn then, void *arg)
{
    up_grace *g = sdd_calloc(1, sizeof(*g));
    up_table *old = t != NULL ? atomic_exchange(&u->table, t) : NULL;
    int i, n = sdl_loops_count(u->loops);
    if (g == NULL) { /* out of memory: the old table is kept for ever rather than freed early */
        sdd_log(SELDON_LOG_ERROR, "lookup table: out of memory");
        if (then != NULL)
            then(arg, !u->stopping);
        return;
    }
    g->u = u;
    g->old = old;
    g->then = then;
    g->arg = arg;
    atomic_store(&g->left, n + 1); /* one for this call: the loops may all answer first */
    for (i = 0; i < n; i++)
        if (sdl_loops_post(u->loops, i, grace_tick, g) != 0)
            grace_tick(g);
    if (atomic_fetch_sub(&g->left, 1) == 1)
        grace_end(g);
}

/*
 * Builds the lookup table from the scheduler's routes and what the replicas
 * hold, and publishes it; then(arg) runs once no request can use the old one.
 */
static void table_rebuild_then(up *u, up_then_fn then, void *arg)
{
    seldon_routes *routes = NULL;
    up_table *t = NULL;
    size_t i, j, n, total = 0, k = 0, off = 0;
    int pass, rc = seldon_sched_routes(&routes, u->sched.sched);
    if (rc == 0)
        rc = up_vload_init(u); /* load.c: the targets' load counters */
    if (rc != 0) {
        sdd_log(SELDON_LOG_ERROR, "route table: %s", seldon_last_error());
        seldon_routes_release(routes);
        publish(u, NULL, then, arg);
        return;
    }
    n = seldon_routes_count(routes);
    for (i = 0; i < n; i++)
        total += seldon_routes_upstream_count(routes, i);
    t = sdd_calloc(1, sizeof(*t));
    if (t != NULL) {
        t->first = sdd_calloc(n + 1, sizeof(*t->first));
        /* an upstream may add its older version beside the replica's newest */
        t->targets = sdd_calloc(total ? 2 * total : 1, sizeof(*t->targets));
        t->split = sdd_calloc(n + 1, 1);
    }
    if (t == NULL || t->first == NULL || t->targets == NULL || t->split == NULL) {
        sdd_log(SELDON_LOG_ERROR, "route table: out of memory");
        if (t != NULL) {
            sdd_free(t->first);
            sdd_free(t->targets);
            sdd_free(t->split);
            sdd_free(t);
        }
        seldon_routes_release(routes);
        publish(u, NULL, then, arg);
        return;
    }
    t->routes = routes;
    recency_fold(u);
    for (pass = 0; pass < 2; pass++) { /* sizes the names, then fills them in */
        k = 0;
        for (i = 0; i < n; i++) {
            const char *name = seldon_routes_name(routes, i);
            t->first[i] = k;
            if (pass == 0)
                t->split[i] = seldon_routes_candidate_count(routes, i) > 0 ||
                              seldon_routes_mirror(NULL, NULL, routes, i) == 0;
            for (j = 0; j < seldon_routes_upstream_count(routes, i); j++) {
                const seldon_router_upstream *up_ = seldon_routes_upstream(routes, i, j);
                up_replica *r = replica_at(u, up_->http ? up_->http : up_->grpc);
                ag_entry *m = r != NULL ? newest(r, name) : NULL;
                size_t len = m != NULL ? strlen(m->vname) : 0;
                int older;
                if (m == NULL)
                    continue;
                for (older = 0; older < 2; older++) {
                    if (older) { /* the upstream's own version, when older and loaded: pins only */
                        uint32_t v = seldon_routes_upstream_version(routes, i, j);
                        m = v != 0 && v != m->version ? ag_cache_find_version(r->cache, name, v)
                                                      : NULL;
                        if (m == NULL || m->state != AG_LOADED)
                            break;
                        len = strlen(m->vname);
                    }
                    if (pass == 1) {
                        /* The table owns its copy: an entry may go while the table is read. */
                        memcpy(t->names + off, m->vname, len + 1);
                        t->targets[k].r = r;
                        t->targets[k].evicted = m->state != AG_LOADED;
                        t->targets[k].vname = t->names + off;
                        t->targets[k].vname_len = len;
                        t->targets[k].vl = up_vload_of(r, m->vname); /* load.c: its load */
                        t->targets[k].older = older;
                        t->targets[k].version = m->version;
                        atomic_init(&t->targets[k].used, 0);
                    }
                    off += len + 1;
                    k++;
                }
            }
        }
        if (pass == 0) {
            t->names = sdd_malloc(off ? off : 1);
            off = 0;
            if (t->names == NULL) {
                sdd_log(SELDON_LOG_ERROR, "route table: out of memory");
                up_table_free(t);
                publish(u, NULL, then, arg);
                return;
            }
        }
    }
    t->first[n] = k;
    sdd_log(SELDON_LOG_DEBUG, "lookup table: %zu route(s), %zu target(s)", n, k);
    publish(u, t, then, arg);
}

static void table_rebuild(up *u)
{
    table_rebuild_then(u, NULL, NULL);
}

void up_after_pump(void *user_data)
{
    up *u = user_data;
    up_scale_check(u);
    uint64_t gen = seldon_sched_routes_generation(u->sched.sched);
    atomic_store(&u->sched_ready, seldon_sched_ready(u->sched.sched) != 0);
    if (!u->table_built || gen != u->table_gen) {
        u->table_built = 1;
        u->table_gen = gen;
        table_rebuild(u);
    }
    up_pl_sync(u);
}

/* ---------------------------------------------------------------- reports */

static void report(up_replica *r, uint64_t id, const char *model, uint32_t version,
                   seldon_sched_event_type type, const char *reason)
{
    up *u = r->u;
    static const char *const names[] = {"", "loaded", "load failed", "unloaded", "unload failed"};
    static const char *const outcomes[] = {"", "loaded", "load_failed", "unloaded",
                                           "unload_failed"};
    char idx[16];
    const char *labels[2];
    seldon_series *s = NULL;
    if (u->stopping)
        return;
    snprintf(idx, sizeof(idx), "%u", r->index);
    labels[0] = idx;
    labels[1] = outcomes[type];
    if (seldon_metric_series(&s, u->m_commands, labels) == 0)
        seldon_series_add(s, 1);
    sdd_log(type == SELDON_SCHED_LOADED || type == SELDON_SCHED_UNLOADED ? SELDON_LOG_INFO
                                                                         : SELDON_LOG_WARN,
            "replica %u: %s_%u %s%s%s", r->index, model, version, names[type], reason ? ": " : "",
            reason ? reason : "");
    if (seldon_sched_agent_event(u->sched.sched, u->cfg.server_name, r->index, id, model, version,
                                 type, reason, sc_now_ns()) != 0)
        sdd_log(SELDON_LOG_WARN, "replica %u: event for %s_%u: %s", r->index, model, version,
                seldon_last_error());
    sc_pump(&u->sched);
}

/* ---------------------------------------------------------------- load executor jobs */

#define JOB_LOAD 0
#define JOB_UNLOAD 1
#define JOB_EVICT 2 /* an unload to make room: the version stays held */

typedef struct up_job {
    seldon_job job; /* first: the executor hands it back */
    up_replica *r;
    uint64_t id;
    int unload; /* JOB_* */
    int rc;
    char *model;
    uint32_t version;
    char reason[512];
    char vname[];
} up_job;

static void job_free(up_job *j)
{
    sdd_free(j->model);
    sdd_free(j);
}

static void job_finished(void *arg);

/* On the replica's load thread: the repository call, which may take seconds. */
static void job_run(seldon_job *job)
{
    up_job *j = (up_job *)(void *)job;
    j->rc = j->unload != JOB_LOAD ? seldon_repo_unload(j->r->s.repo, j->vname)
                                  : seldon_repo_load(j->r->s.repo, j->vname);
    if (j->rc != 0)
        snprintf(j->reason, sizeof(j->reason), "%s", seldon_last_error());
    if (sdl_loops_post(j->r->u->ctl_loops, 0, job_finished, j) != 0)
        job_free(j); /* stopping: nobody waits for the report */
}

static up_job *job_new(up_replica *r, ag_entry *m, uint64_t id, int unload)
{
    size_t n = strlen(m->vname);
    up_job *j = sdd_calloc(1, sizeof(*j) + n + 1);
    if (j == NULL)
        return NULL;
    j->model = sdd_strndup(m->model, strlen(m->model));
    if (j->model == NULL) {
        sdd_free(j);
        return NULL;
    }
    memcpy(j->vname, m->vname, n + 1);
    j->r = r;
    j->id = id;
    j->unload = unload;
    j->version = m->version;
    j->job.run = job_run;
    j->job.next = NULL;
    return j;
}

/* To the replica's load executor (exec.c), the one its service uses. */
static void job_push(up_job *j)
{
    j->r->hooks.submit_load(j->r->hooks.host, &j->job);
}

static int job_submit(up_replica *r, ag_entry *m, uint64_t id, int unload)
{
    up_job *j = job_new(r, m, id, unload);
    if (j == NULL)
        return SELDON_ENOMEM;
    job_push(j);
    return 0;
}

/* The table without the version is in force everywhere: the unload may start. */
static void unload_go(void *arg, int run)
{
    up_job *j = arg;
    if (run)
        job_push(j);
    else
        job_free(j);
}

static void unload_model(up_replica *r, ag_entry *m, uint64_t id)
{
    up_job *j = job_new(r, m, id, 1);
    if (j == NULL) {
        report(r, id, m->model, m->version, SELDON_SCHED_UNLOAD_FAILED, "out of memory");
        return;
    }
    m->state = AG_UNLOADING;
    MD(m)->command = id;
    /* Out of the table first; unloaded once no request can reach it any more. */
    table_rebuild_then(r->u, unload_go, j);
}

/* ---------------------------------------------------------------- room and reloads */

/*
 * Loads on a replica go one at a time (r->busy): each first makes room within the
 * replica's memory (--server-memory) by evicting the least recently used versions, as
 * seldon-agent does with the same planner (ag_cache_plan). An evicted version stays
 * held: its route stays, and a request for it waits for it to be loaded again.
 */
static void kick(up_replica *r);

static void per_model(seldon_metric *m, up_replica *r, const ag_entry *e)
{
    char idx[16];
    const char *labels[4];
    seldon_series *s = NULL;
    snprintf(idx, sizeof(idx), "%u", r->index);
    labels[0] = r->u->cfg.server_name;
    labels[1] = idx;
    labels[2] = e->model;
    labels[3] = e->vname;
    if (m != NULL && seldon_metric_series(&s, m, labels) == 0)
        seldon_series_add(s, 1);
}

/* Answers every request waiting for e: resumed when it is loaded, else failed with why. */
static void wake(ag_entry *e, int rc, const char *why)
{
    up_park *p = MD(e)->parked, *next;
    MD(e)->parked = NULL;
    for (; p != NULL; p = next) {
        next = p->next;
        if (rc == 0)
            up_park_resume(p);
        else
            up_park_fail(p, rc, why);
    }
}

/* Queues e for loading on r (in arrival order). */
static void enqueue(up_replica *r, ag_entry *e)
{
    MD(e)->queued = ++r->seq;
    kick(r);
}

static void load_done(up_replica *r, ag_entry *e, int rc, const char *why);

/* Every eviction e waited for is done: load it. */
static void load_now(up_replica *r, ag_entry *e)
{
    if (job_submit(r, e, MD(e)->command, JOB_LOAD) != 0)
        load_done(r, e, SELDON_ENOMEM, "out of memory");
}

typedef struct evict_batch {
    up_replica *r;
    size_t n;
    ag_entry *v[];
} evict_batch;

/* The table without the victims is in force: unload them. */
static void evict_go(void *arg, int run)
{
    evict_batch *b = arg;
    size_t i;
    for (i = 0; run && i < b->n; i++)
        if (job_submit(b->r, b->v[i], 0, JOB_EVICT) != 0)
            sdd_log(SELDON_LOG_ERROR, "replica %u: evicting %s: out of memory", b->r->index,
                    b->v[i]->vname);
    sdd_free(b);
}

/* r->busy = e: evicts what must go for e to fit, then loads it. */
static void make_room(up_replica *r, ag_entry *e)
{
    ag_entry **v = NULL;
    evict_batch *b;
    size_t n = 0, i;
    e->state = AG_LOADING;
    recency_fold(r->u);
    if (ag_cache_plan(&v, &n, r->cache, e) != 0) {
        char why[600];
        snprintf(why, sizeof(why), "%s", seldon_last_error());
        load_done(r, e, SELDON_ERANGE, why);
        return;
    }
    if (n == 0) {
        load_now(r, e);
        return;
    }
    b = sdd_malloc(sizeof(*b) + n * sizeof(b->v[0]));
    if (b == NULL) {
        sdd_free(v);
        load_done(r, e, SELDON_ENOMEM, "out of memory");
        return;
    }
    b->r = r;
    b->n = n;
    MD(e)->evictions = n;
    for (i = 0; i < n; i++) {
        b->v[i] = v[i];
        v[i]->state = AG_EVICTING;
        per_model(r->u->m_evict, r, v[i]);
        sdd_log(SELDON_LOG_INFO, "replica %u: evicting %s to make room for %s", r->index,
                v[i]->vname, e->vname);
    }
    sdd_free(v);
    /* Requests for the victims wait for a reload from now on; unloaded once none uses them. */
    table_rebuild_then(r->u, evict_go, b);
}

/* Starts the oldest queued load unless one runs. */
static void kick(up_replica *r)
{
    ag_entry *e, *next = NULL;
    if (r->busy != NULL || r->u->stopping)
        return;
    for (e = ag_cache_first(r->cache); e != NULL; e = e->next)
        if (MD(e)->queued && (next == NULL || MD(e)->queued < MD(next)->queued))
            next = e;
    if (next == NULL)
        return;
    MD(next)->queued = 0;
    r->busy = next;
    make_room(r, next);
}

/* A load (first or again) ended: rc 0, or why it failed. */
static void load_done(up_replica *r, ag_entry *e, int rc, const char *why)
{
    up_mdata *md = MD(e);
    uint64_t id = md->command;
    int answer = md->answer;
    if (r->busy == e)
        r->busy = NULL;
    md->answer = 0;
    if (rc == 0) {
        e->state = AG_LOADED;
        e->held = 1;
        md->reloading = 0;
        table_rebuild(r->u); /* before the report: the route that follows finds it */
        wake(e, 0, NULL);
        if (answer)
            report(r, id, e->model, e->version, SELDON_SCHED_LOADED, NULL);
        if (md->unload_after)
            unload_model(r, e, md->command);
    } else if (e->held && !md->unload_after) { /* a reload: it stays evicted */
        char msg[800];
        e->state = AG_EVICTED;
        md->reloading = 0;
        snprintf(msg, sizeof(msg), "model %s could not be loaded again: %s", e->vname, why);
        sdd_log(SELDON_LOG_WARN, "replica %u: %s", r->index, msg);
        table_rebuild(r->u);
        wake(e, SELDON_EUNAVAIL, msg);
        if (answer)
            report(r, id, e->model, e->version, SELDON_SCHED_LOAD_FAILED, why);
    } else {
        char model[300];
        uint32_t version = e->version;
        int unloading = md->unload_after;
        snprintf(model, sizeof(model), "%s", e->model);
        wake(e, SELDON_EUNAVAIL, why);
        model_remove(r, e);
        table_rebuild(r->u);
        report(r, id, model, version, unloading ? SELDON_SCHED_UNLOADED : SELDON_SCHED_LOAD_FAILED,
               unloading ? NULL : why);
    }
    kick(r);
}

/* On the control loop: a request for an evicted version (ingress.c, park()). */
void up_park_arrive(void *arg)
{
    up_park *p = arg;
    up_replica *r = p->r;
    ag_entry *e = ag_cache_find(r->cache, p->vname, strlen(p->vname));
    char why[400];
    if (r->u->stopping) {
        up_park_fail(p, SELDON_EUNAVAIL, "seldon up is stopping");
        return;
    }
    if (e == NULL || e->state == AG_UNLOADING) {
        snprintf(why, sizeof(why), "model %s was unloaded", p->vname);
        up_park_fail(p, SELDON_ENOTFOUND, why);
        return;
    }
    if (e->state == AG_LOADED) { /* loaded again meanwhile */
        up_park_resume(p);
        return;
    }
    p->next = MD(e)->parked;
    MD(e)->parked = p;
    if (e->state == AG_EVICTED && !MD(e)->queued && !MD(e)->reloading) {
        per_model(r->u->m_miss, r, e);
        sdd_log(SELDON_LOG_INFO, "replica %u: %s requested while evicted: loading it again",
                r->index, e->vname);
        MD(e)->reloading = 1;
        enqueue(r, e);
    }
}

static void job_finished(void *arg)
{
    up_job *j = arg;
    up_replica *r = j->r;
    up *u = r->u;
    ag_entry *m = model_find(r, j->model, j->version);
    if (u->stopping || m == NULL) {
        job_free(j);
        return;
    }
    seldon_service_refresh(r->s.svc);
    if (j->unload == JOB_EVICT) {
        ag_entry *busy = r->busy;
        if (j->rc != 0) { /* still loaded: it takes its room back */
            sdd_log(SELDON_LOG_WARN, "replica %u: evicting %s failed: %s", r->index, m->vname,
                    j->reason);
            m->state = AG_LOADED;
        } else {
            m->state = AG_EVICTED;
        }
        table_rebuild(u);
        if (MD(m)->unload_after) { /* unloaded for good meanwhile */
            uint64_t id = MD(m)->command;
            wake(m, SELDON_ENOTFOUND, "the model was unloaded");
            model_remove(r, m);
            table_rebuild(u);
            report(r, id, j->model, j->version, SELDON_SCHED_UNLOADED, NULL);
        } else if (MD(m)->parked != NULL && m->state == AG_EVICTED && !MD(m)->queued) {
            MD(m)->reloading = 1; /* requests came meanwhile: back after the load under way */
            MD(m)->queued = ++r->seq;
        }
        if (busy != NULL && MD(busy)->evictions > 0 && --MD(busy)->evictions == 0)
            load_now(r, busy);
    } else if (j->unload == JOB_UNLOAD) {
        if (j->rc != 0) {
            m->state = AG_LOADED;
            table_rebuild(u);
            report(r, MD(m)->command, j->model, j->version, SELDON_SCHED_UNLOAD_FAILED, j->reason);
        } else {
            uint64_t id = MD(m)->command;
            wake(m, SELDON_ENOTFOUND, "the model was unloaded");
            model_remove(r, m);
            report(r, id, j->model, j->version, SELDON_SCHED_UNLOADED, NULL);
        }
    } else {
        load_done(r, m, j->rc, j->rc ? j->reason : NULL);
    }
    job_free(j);
}

/* ---------------------------------------------------------------- artifacts */

/*
 * A model version made ready to load: its artifact fetched into the cache
 * (<state>/artifacts, once per source: seldon-agent's fetch.c), placed as
 * <state>/models/<vname> (hard links) and renamed in model-settings.json. Once per
 * version per run, whatever the number of replicas loading it; one at a time, as
 * seldon-agent does, so that two never copy the same source at once.
 */
#define PREP_QUEUED 0
#define PREP_RUNNING 1
#define PREP_DONE 2

typedef struct up_waiter {
    struct up_waiter *next;
    up_replica *r;
    char *model;
    uint32_t version;
} up_waiter;

typedef struct up_prep {
    struct up_prep *next;
    up *u;
    int state;
    char *spec;
    up_waiter *waiters;
    char dst[4200];
    char vname[];
} up_prep;

static void prep_next(up *u);

static void artifact_ready(up_replica *r, const char *model, uint32_t version, const char *why)
{
    ag_entry *m = model_find(r, model, version);
    if (r->u->stopping || m == NULL || !MD(m)->preparing)
        return;
    MD(m)->preparing = 0;
    if (why != NULL) {
        uint64_t id = MD(m)->command;
        char name[300];
        snprintf(name, sizeof(name), "%s", model); /* model may be m's own */
        model_remove(r, m);
        report(r, id, name, version, SELDON_SCHED_LOAD_FAILED, why);
        return;
    }
    enqueue(r, m); /* room is made when its turn comes */
}

static void prep_free(up_prep *p)
{
    up_waiter *w, *next;
    for (w = p->waiters; w != NULL; w = next) {
        next = w->next;
        sdd_free(w->model);
        sdd_free(w);
    }
    sdd_free(p->spec);
    sdd_free(p);
}

/* Tells the replicas waiting for p, then forgets the waiters. */
static void prep_notify(up_prep *p, const char *why)
{
    up_waiter *w = p->waiters, *next;
    p->waiters = NULL;
    for (; w != NULL; w = next) {
        next = w->next;
        artifact_ready(w->r, w->model, w->version, why);
        sdd_free(w->model);
        sdd_free(w);
    }
}

/* A failed preparation is forgotten: a later load of that version tries again. */
static void prep_fail(up_prep *p, const char *why)
{
    up *u = p->u;
    up_prep **pp;
    for (pp = &u->preps; *pp != NULL; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    prep_notify(p, why);
    prep_free(p);
    prep_next(u);
}

static void placed(void *arg, int ok, const char *err)
{
    up_prep *p = arg;
    char why[1200];
    if (!ok) {
        prep_fail(p, err);
        return;
    }
    why[0] = '\0';
    if (ag_rename_all_settings(p->dst, p->vname, why, sizeof(why)) < 0) {
        prep_fail(p, why);
        return;
    }
    p->state = PREP_DONE;
    prep_notify(p, NULL);
    prep_next(p->u);
}

static void fetched(void *arg, const char *art, const char *why)
{
    up_prep *p = arg;
    char *argv[5];
    if (art == NULL) {
        prep_fail(p, why);
        return;
    }
    ag_rm_tree(p->dst); /* a placement of an earlier run */
    argv[0] = "/bin/cp";
    argv[1] = "-al";
    argv[2] = (char *)art;
    argv[3] = p->dst;
    argv[4] = NULL;
    ag_child_run(p->u->ctl, argv, "placing the model (cp -al)", &p->u->child, placed, p);
}

/* Starts the next queued preparation unless one runs. */
static void prep_next(up *u)
{
    up_prep *p, *next = NULL;
    ag_fetch_opts o;
    ag_spec spec;
    if (u->stopping)
        return;
    for (p = u->preps; p != NULL; p = p->next) {
        if (p->state == PREP_RUNNING)
            return;
        if (p->state == PREP_QUEUED)
            next = p; /* the list is newest first: the last queued is the oldest */
    }
    if (next == NULL)
        return;
    p = next;
    p->state = PREP_RUNNING;
    memset(&spec, 0, sizeof(spec));
    if (ag_spec_parse(&spec, p->spec ? p->spec : "", p->spec ? strlen(p->spec) : 0) != 0 ||
        spec.storage_uri == NULL || *spec.storage_uri == '\0') {
        char why[600];
        snprintf(why, sizeof(why), "%s",
                 spec.storage_uri == NULL ? "spec.storageUri: required" : seldon_last_error());
        ag_spec_clear(&spec);
        prep_fail(p, why);
        return;
    }
    sdd_log(SELDON_LOG_INFO, "model %s: loading from %s", p->vname, spec.storage_uri);
    o.loop = u->ctl;
    o.artifacts_dir = u->artifacts_dir;
    o.rclone = u->cfg.rclone;
    o.rclone_config = u->cfg.rclone_config;
    ag_fetch(&o, spec.storage_uri, spec.artifact_version, &u->child, fetched, p);
    ag_spec_clear(&spec);
}

/* Makes <state>/models/<vname> ready for r's load of m, then artifact_ready(). */
static void artifact_get(up_replica *r, ag_entry *m, const char *spec_json)
{
    up *u = r->u;
    up_prep *p;
    up_waiter *w;
    size_t n = strlen(m->vname);
    for (p = u->preps; p != NULL; p = p->next)
        if (strcmp(p->vname, m->vname) == 0)
            break;
    if (p != NULL && p->state == PREP_DONE) {
        artifact_ready(r, m->model, m->version, NULL);
        return;
    }
    w = sdd_calloc(1, sizeof(*w));
    if (w == NULL || (w->model = sdd_strndup(m->model, strlen(m->model))) == NULL) {
        sdd_free(w);
        artifact_ready(r, m->model, m->version, "out of memory");
        return;
    }
    w->r = r;
    w->version = m->version;
    if (p == NULL) {
        p = sdd_calloc(1, sizeof(*p) + n + 1);
        if (p == NULL ||
            (spec_json != NULL && (p->spec = sdd_strndup(spec_json, strlen(spec_json))) == NULL)) {
            sdd_free(p);
            sdd_free(w->model);
            sdd_free(w);
            artifact_ready(r, m->model, m->version, "out of memory");
            return;
        }
        memcpy(p->vname, m->vname, n + 1);
        snprintf(p->dst, sizeof(p->dst), "%s/%s", u->models_dir, m->vname);
        p->u = u;
        p->state = PREP_QUEUED;
        p->next = u->preps;
        u->preps = p;
    }
    w->next = p->waiters;
    p->waiters = w;
    prep_next(u);
}

void up_control_free(up *u)
{
    up_prep *p, *next;
    for (p = u->preps; p != NULL; p = next) {
        next = p->next;
        prep_free(p);
    }
    u->preps = NULL;
    up_load_free(u);
}

/* ---------------------------------------------------------------- commands */

typedef struct up_cmd {
    up *u;
    seldon_sched_op op;
    uint64_t id;
    uint32_t index;
    uint32_t version;
    int64_t memory;
    char *server;
    char *model;
    char *spec;
} up_cmd;

static void cmd_free(up_cmd *c)
{
    sdd_free(c->server);
    sdd_free(c->model);
    sdd_free(c->spec);
    sdd_free(c);
}

/* On the control loop, after the pump that produced the command. */
static void cmd_run(void *arg)
{
    up_cmd *c = arg;
    up *u = c->u;
    up_replica *r = replica_of(u, c->server, c->index);
    ag_entry *m;
    if (u->stopping || r == NULL) {
        if (!u->stopping)
            sdd_log(SELDON_LOG_WARN, "command %llu for %s/%u: no such embedded replica",
                    (unsigned long long)c->id, c->server, c->index);
        cmd_free(c);
        return;
    }
    m = model_find(r, c->model, c->version);
    if (c->op == SELDON_SCHED_LOAD) {
        if (m != NULL && (m->state == AG_LOADED || (m->state == AG_EVICTED && m->held))) {
            /* Held: an evicted version is loaded again when a request comes. */
            MD(m)->unload_after = 0;
            report(r, c->id, c->model, c->version, SELDON_SCHED_LOADED, NULL);
        } else if (m != NULL) { /* on its way: the newest command gets the answer */
            MD(m)->command = c->id;
            MD(m)->answer = 1;
            MD(m)->unload_after = 0;
        } else if ((m = model_add(r, c->model, c->version, c->memory)) == NULL) {
            report(r, c->id, c->model, c->version, SELDON_SCHED_LOAD_FAILED, "out of memory");
        } else {
            MD(m)->command = c->id;
            MD(m)->answer = 1;
            artifact_get(r, m, c->spec);
        }
    } else {
        if (m == NULL) {
            report(r, c->id, c->model, c->version, SELDON_SCHED_UNLOADED, NULL);
        } else if (m->state == AG_LOADED) {
            unload_model(r, m, c->id);
        } else if (m->state == AG_EVICTED && !MD(m)->queued && r->busy != m) {
            wake(m, SELDON_ENOTFOUND, "the model was unloaded");
            model_remove(r, m);
            table_rebuild(u);
            report(r, c->id, c->model, c->version, SELDON_SCHED_UNLOADED, NULL);
        } else {
            MD(m)->command = c->id;
            MD(m)->unload_after = 1; /* once its load or eviction is over */
            if (MD(m)->queued) {     /* not started: it goes now */
                MD(m)->queued = 0;
                wake(m, SELDON_ENOTFOUND, "the model was unloaded");
                model_remove(r, m);
                table_rebuild(u);
                report(r, c->id, c->model, c->version, SELDON_SCHED_UNLOADED, NULL);
            }
        }
    }
    cmd_free(c);
}

/* Called by the scheduler's pump (svc.c) for a replica with no AgentService stream. */
void up_command(void *user_data, const seldon_sched_command *cmd)
{
    up *u = user_data;
    up_cmd *c = sdd_calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    c->u = u;
    c->op = cmd->op;
    c->id = cmd->id;
    c->index = cmd->index;
    c->version = cmd->version;
    c->memory = cmd->memory_bytes;
    c->server = sdd_strndup(cmd->server, strlen(cmd->server));
    c->model = sdd_strndup(cmd->model, strlen(cmd->model));
    c->spec = cmd->spec ? sdd_strndup(cmd->spec, strlen(cmd->spec)) : NULL;
    if (c->server == NULL || c->model == NULL || (cmd->spec != NULL && c->spec == NULL) ||
        sdl_loops_post(u->ctl_loops, 0, cmd_run, c) != 0)
        cmd_free(c);
}

/* ---------------------------------------------------------------- start and stop */

/*
 * Replicas that a previous run had and this one has not (fewer --servers, another
 * --server-name) are gone for good: the scheduler is told at once rather than waiting
 * --ready-timeout for them, and places their models on the replicas that are here.
 */
static void forget_absent(up *u)
{
    seldon_sched_status *st = NULL;
    size_t i, j;
    if (seldon_sched_servers(&st, u->sched.sched, NULL) != 0)
        return;
    for (i = 0; i < seldon_sched_status_count(st); i++) {
        const seldon_sched_server_status *sv = seldon_sched_status_server(st, i);
        for (j = 0; sv != NULL && j < sv->replicas_count; j++) {
            uint32_t index = sv->replicas[j].index;
            if (replica_of(u, sv->name, index) != NULL)
                continue;
            sdd_log(SELDON_LOG_INFO, "replica %s/%u is not part of this run: its models move",
                    sv->name, index);
            if (seldon_sched_agent_disconnect(u->sched.sched, sv->name, index, sc_now_ns()) != 0)
                sdd_log(SELDON_LOG_WARN, "replica %s/%u: %s", sv->name, index, seldon_last_error());
        }
    }
    seldon_sched_status_free(st);
}

void up_control_start(void *arg)
{
    up *u = arg;
    int i;
    forget_absent(u);
    up_exp_start(u);
    up_load_start(u);
    for (i = 0; i < u->nreplicas; i++) {
        up_replica *r = &u->replicas[i];
        if (up_announce(u, r) == 0)
            sdd_log(SELDON_LOG_INFO, "replica %s/%u registered (%lld bytes, overcommit %u%%)",
                    u->cfg.server_name, r->index, (long long)u->cfg.server_memory,
                    u->cfg.overcommit);
    }
    sc_pump(&u->sched);
}

void up_control_stop(void *arg)
{
    up *u = arg;
    int i;
    for (i = 0; i < u->nreplicas; i++) { /* requests still waiting for a reload */
        ag_entry *e;
        for (e = ag_cache_first(u->replicas[i].cache); e != NULL; e = e->next)
            wake(e, SELDON_EUNAVAIL, "seldon up is stopping");
    }
    u->stopping = 1;
    up_scale_stop(u);
    up_load_stop(u);
    if (u->child != NULL) /* a copy under way: its preparation fails once it exits */
        uv_process_kill(u->child, SIGTERM);
    sc_services_stop(&u->sched);
}
