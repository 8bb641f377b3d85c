/*
 * The agent's model work, one job at a time on the loop: LOAD (fetch the artifact,
 * place it as <models-dir>/<model>_<version>, rename it in model-settings.json, make
 * room, RepositoryModelLoad), UNLOAD, and RELOAD (a request came for a model evicted
 * to make room). Fetching (fetch.c) runs `cp` or `rclone copy` as child processes, so
 * the loop never waits on a copy. Fetched artifacts live in --artifacts-dir, one
 * folder per storageUri and artifactVersion, and are fetched once.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <ftw.h>
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "fetch.h"
#include "grpc_predict_v2.pb-c.h"
#include "sdd.h"
#include "seldon_control.pb-c.h"

#define J_LOAD 1
#define J_UNLOAD 2
#define J_RELOAD 3

struct ag_job {
    ag_job *next;
    agent *a;
    int kind;
    uint64_t id;
    char *model;
    uint32_t version;
    char *spec;
    int64_t memory;
    ag_entry *e;
    int fresh; /* the entry was created by this job */
    ag_entry **victims;
    size_t nvictims, vi;
    char art[4096]; /* the artifact folder */
};

/* Per model version: the requests waiting for it to be loaded again. */
typedef struct mdata {
    ag_waiter waiters; /* list head */
    int reload_queued;
} mdata;

static void job_next(agent *a);
static void job_done(agent *a, ag_job *j);
static void make_room(agent *a, ag_job *j);

/* ------------------------------------------------------------ metrics */

static void series_set(agent *a, seldon_metric *m, const ag_entry *e, double v, int add)
{
    char idx[16];
    const char *labels[4];
    seldon_series *s = NULL;
    if (m == NULL)
        return;
    snprintf(idx, sizeof(idx), "%u", a->cfg.replica_index);
    labels[0] = a->cfg.server_name;
    labels[1] = idx;
    labels[2] = e->model;
    labels[3] = e->vname;
    if (seldon_metric_series(&s, m, labels) != 0)
        return;
    if (add)
        seldon_series_add(s, v);
    else
        seldon_series_set(s, v);
}

static void note_loaded(agent *a, const ag_entry *e, int loaded)
{
    series_set(a, a->m_loaded, e, loaded ? 1 : 0, 0);
    series_set(a, a->m_loaded_mem, e, loaded ? (double)e->memory : 0, 0);
    series_set(a, loaded ? a->m_load : a->m_unload, e, 1, 1);
}

/* A version unloaded for good: its series go (label 3 is model_internal), so an agent that
   serves many versions over its life keeps only the live ones' (docs/autoscaling.md). The
   loop thread is the only one that updates them. */
static void series_forget(agent *a, const char *vname)
{
    seldon_metric *const fams[] = {a->m_infer,  a->m_infer_secs, a->m_infer_secs_total,
                                   a->m_loaded, a->m_loaded_mem, a->m_evict,
                                   a->m_miss,   a->m_load,       a->m_unload};
    size_t i;
    for (i = 0; i < sizeof(fams) / sizeof(fams[0]); i++)
        seldon_metric_remove(fams[i], 3, vname);
}

void ag_metrics_infer(agent *a, const char *model, const char *vname, const char *method, int code,
                      int64_t started_ns)
{
    char idx[16], c[16];
    const char *labels[6], *agg[4];
    seldon_series *s = NULL;
    double secs = (double)(ag_now_ns() - started_ns) / 1e9;
    snprintf(idx, sizeof(idx), "%u", a->cfg.replica_index);
    snprintf(c, sizeof(c), "%d", code);
    labels[0] = a->cfg.server_name;
    labels[1] = idx;
    labels[2] = model;
    labels[3] = vname;
    labels[4] = method;
    labels[5] = c;
    if (seldon_metric_series(&s, a->m_infer, labels) == 0)
        seldon_series_add(s, 1);
    if (seldon_metric_series(&s, a->m_infer_secs, labels) == 0)
        seldon_series_observe(s, secs);
    if (seldon_metric_series(&s, a->m_infer_secs_total, labels) == 0)
        seldon_series_add(s, secs);
    agg[0] = labels[0];
    agg[1] = labels[1];
    agg[2] = method;
    agg[3] = c;
    if (seldon_metric_series(&s, a->m_agg_infer, agg) == 0)
        seldon_series_add(s, 1);
    if (seldon_metric_series(&s, a->m_agg_secs, agg) == 0)
        seldon_series_add(s, secs);
}

/* ------------------------------------------------------------ waiters */

static mdata *md_of(ag_entry *e)
{
    if (e->user == NULL) {
        mdata *m = sdd_calloc(1, sizeof(*m));
        if (m == NULL)
            return NULL;
        m->waiters.next = m->waiters.prev = &m->waiters;
        e->user = m;
    }
    return e->user;
}

void ag_models_lost(agent *a, ag_entry *e)
{
    if (e->state != AG_LOADED)
        return;
    e->state = AG_EVICTED;
    series_set(a, a->m_loaded, e, 0, 0);
    series_set(a, a->m_loaded_mem, e, 0, 0);
    sdd_log(SELDON_LOG_WARN, "model %s: the server does not have it (restarted?): loading it again",
            e->vname);
}

void ag_waiter_cancel(ag_waiter *w)
{
    if (!w->linked)
        return;
    w->prev->next = w->next;
    w->next->prev = w->prev;
    w->linked = 0;
}

static void wake(ag_entry *e, int ok, const char *reason)
{
    mdata *m = e->user;
    if (m == NULL)
        return;
    m->reload_queued = 0;
    while (m->waiters.next != &m->waiters) {
        ag_waiter *w = m->waiters.next;
        ag_waiter_cancel(w);
        w->fn(w->arg, ok, reason);
    }
}

/* ------------------------------------------------------------ what survives a restart */

/* <models-dir>/.agent/<model>_<version> says "model version memory": the agent holds it.
 * The server skips dot folders. Written aside and renamed: never half a file. */
static void state_path(char *out, size_t cap, agent *a, const char *vname)
{
    if (snprintf(out, cap, "%s/.agent/%s", a->cfg.models_dir, vname) >= (int)cap)
        out[0] = '\0';
}

static void state_save(agent *a, const ag_entry *e)
{
    char path[4200], tmp[4300], line[400];
    int fd, n;
    state_path(path, sizeof(path), a, e->vname);
    if (path[0] == '\0')
        return;
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    n = snprintf(line, sizeof(line), "%s %u %lld\n", e->model, e->version, (long long)e->memory);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || n <= 0 || n >= (int)sizeof(line) || write(fd, line, (size_t)n) != n ||
        close(fd) != 0 || rename(tmp, path) != 0) {
        sdd_log(SELDON_LOG_WARN, "%s: cannot record the model (%s): a restart forgets it", path,
                strerror(errno));
        if (fd >= 0)
            unlink(tmp);
    }
}

static void state_forget(agent *a, const ag_entry *e)
{
    char path[4200];
    state_path(path, sizeof(path), a, e->vname);
    if (path[0] != '\0')
        unlink(path);
}

int ag_models_restore(agent *a)
{
    char dir[4200], path[4400], line[400], model[300], folder[4400];
    struct dirent *de;
    DIR *d;
    size_t n = 0;
    snprintf(dir, sizeof(dir), "%s/.agent", a->cfg.models_dir);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return sdd_error(SELDON_EIO, "%s: %s", dir, strerror(errno));
    d = opendir(dir);
    if (d == NULL)
        return sdd_error(SELDON_EIO, "%s: %s", dir, strerror(errno));
    while ((de = readdir(d)) != NULL) {
        FILE *f;
        unsigned version = 0;
        long long memory = 0;
        ag_entry *e;
        struct stat st;
        if (de->d_name[0] == '.' || strstr(de->d_name, ".tmp") != NULL)
            continue;
        if (snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >= (int)sizeof(path))
            continue;
        f = fopen(path, "re");
        if (f == NULL)
            continue;
        line[0] = '\0';
        if (fgets(line, sizeof(line), f) == NULL)
            line[0] = '\0';
        fclose(f);
        if (sscanf(line, "%299s %u %lld", model, &version, &memory) != 3 || memory < 0) {
            sdd_log(SELDON_LOG_WARN, "%s: not a model record: ignored", path);
            continue;
        }
        if (snprintf(folder, sizeof(folder), "%s/%s_%u", a->cfg.models_dir, model, version) >=
            (int)sizeof(folder))
            continue;
        if (stat(folder, &st) != 0 || ag_cache_find_version(a->cache, model, version) != NULL) {
            unlink(path); /* its folder is gone: nothing to hold */
            continue;
        }
        e = ag_cache_add(a->cache, model, version, memory);
        if (e == NULL)
            break;
        /* Held, not loaded: the first request, or the scheduler's LOAD, loads it. */
        e->state = AG_EVICTED;
        e->held = 1;
        n++;
    }
    closedir(d);
    /* Until the server's index answers (ag_models_check_server), a request for one of them
       waits rather than loading it again: the proxy may serve before that call goes out. */
    a->index_pending = n > 0;
    if (n > 0)
        sdd_log(SELDON_LOG_INFO,
                "%zu model version(s) held before the restart: reported to "
                "the scheduler, loaded again on use",
                n);
    return 0;
}

static int queue_reload(agent *a, ag_entry *e);

/* Requests that came for restored versions before the server's index answered: those
   still evicted now are loaded again. */
static void index_done(agent *a)
{
    ag_entry *e;
    a->index_pending = 0;
    for (e = ag_cache_first(a->cache); e != NULL; e = e->next) {
        mdata *m = e->user;
        if (e->state == AG_EVICTED && m != NULL && m->waiters.next != &m->waiters &&
            !m->reload_queued && queue_reload(a, e) != 0)
            wake(e, 0, "out of memory");
    }
}

/* The server's index: restored versions it still has loaded count as loaded again. */
static void index_answered(void *arg, int32_t status, const char *message, const uint8_t *resp,
                           size_t len)
{
    agent *a = arg;
    Inference__RepositoryIndexResponse *r;
    size_t i, n = 0;
    if (status != 0) {
        sdd_log(SELDON_LOG_WARN,
                "the server's repository index: %d %s: restored models load "
                "again on use",
                status, message);
        index_done(a);
        return;
    }
    r = inference__repository_index_response__unpack(NULL, len, resp);
    if (r == NULL) {
        index_done(a);
        return;
    }
    for (i = 0; i < r->n_models; i++) {
        const char *name = r->models[i]->name;
        ag_entry *e = ag_cache_find(a->cache, name, strlen(name));
        if (e == NULL || e->state != AG_EVICTED || strcmp(r->models[i]->state, "READY") != 0)
            continue;
        e->state = AG_LOADED;
        series_set(a, a->m_loaded, e, 1, 0);
        series_set(a, a->m_loaded_mem, e, (double)e->memory, 0);
        wake(e, 1, NULL); /* requests that came meanwhile go on: nothing to load */
        n++;
    }
    inference__repository_index_response__free_unpacked(r, NULL);
    index_done(a);
    if (n > 0)
        sdd_log(SELDON_LOG_INFO, "%zu restored model version(s) still loaded on the server", n);
}

void ag_models_check_server(agent *a)
{
    Inference__RepositoryIndexRequest req = INFERENCE__REPOSITORY_INDEX_REQUEST__INIT;
    uint8_t buf[64];
    size_t len;
    ag_entry *e;
    for (e = ag_cache_first(a->cache); e != NULL; e = e->next)
        if (e->state == AG_EVICTED)
            break;
    if (e == NULL) {
        index_done(a); /* nothing restored */
        return;
    }
    req.ready = 1;
    len = inference__repository_index_request__pack(&req, buf);
    if (ag_unary(a, a->srv_host, a->srv_grpc_port,
                 "/inference.GRPCInferenceService/RepositoryIndex", buf, len,
                 a->cfg.server_timeout_ms, index_answered, a) != 0) {
        sdd_log(SELDON_LOG_WARN, "the server cannot be reached: restored models load again on "
                                 "use");
        index_done(a);
    }
}

static void entry_drop(agent *a, ag_entry *e)
{
    state_forget(a, e);
    wake(e, 0, "the model was unloaded from this replica");
    sdd_free(e->user);
    e->user = NULL;
    ag_cache_remove(a->cache, e);
}

/* ------------------------------------------------------------ jobs */

static ag_job *job_new(agent *a, int kind, uint64_t id, const char *model, uint32_t version)
{
    ag_job *j = sdd_calloc(1, sizeof(*j));
    if (j == NULL)
        return NULL;
    j->a = a;
    j->kind = kind;
    j->id = id;
    j->version = version;
    j->model = sdd_strndup(model, strlen(model));
    if (j->model == NULL) {
        sdd_free(j);
        return NULL;
    }
    return j;
}

static void job_push(agent *a, ag_job *j, int front)
{
    if (front) {
        j->next = a->jobs;
        a->jobs = j;
        if (a->jobs_tail == NULL)
            a->jobs_tail = j;
    } else {
        j->next = NULL;
        if (a->jobs_tail != NULL)
            a->jobs_tail->next = j;
        else
            a->jobs = j;
        a->jobs_tail = j;
    }
    job_next(a);
}

static void job_free(ag_job *j)
{
    sdd_free(j->model);
    sdd_free(j->spec);
    sdd_free(j->victims);
    sdd_free(j);
}

static void job_done(agent *a, ag_job *j)
{
    if (a->fetching == j)
        a->fetching = NULL;
    if (a->serving == j)
        a->serving = NULL;
    if (a->parked == j)
        a->parked = NULL;
    job_free(j);
    job_next(a);
}

/* A fetched job moves to the server lane, now or once it is free. */
static void enter_server(agent *a, ag_job *j)
{
    if (a->fetching == j)
        a->fetching = NULL;
    if (a->serving == NULL) {
        a->serving = j;
        make_room(a, j);
    } else {
        a->parked = j;
    }
    job_next(a); /* the fetch lane is free */
}

int ag_models_acquire(agent *a, ag_entry *e, ag_waiter *w)
{
    mdata *m;
    if (e->state == AG_LOADED) {
        ag_cache_touch(a->cache, e);
        return 1;
    }
    if (e->state == AG_UNLOADING)
        return sdd_error(SELDON_EUNAVAIL, "model %s is being unloaded", e->vname);
    m = md_of(e);
    if (m == NULL || a->stopping)
        return sdd_error(SELDON_EUNAVAIL, "model %s: cannot wait for it", e->vname);
    w->next = &m->waiters;
    w->prev = m->waiters.prev;
    m->waiters.prev->next = w;
    m->waiters.prev = w;
    w->linked = 1;
    /* Right after a restart the server may still hold it: its index says, soon. */
    if ((e->state == AG_EVICTED || e->state == AG_EVICTING) && !m->reload_queued &&
        !a->index_pending && queue_reload(a, e) != 0) {
        ag_waiter_cancel(w);
        return sdd_error(SELDON_ENOMEM, "out of memory");
    }
    return 0;
}

static int queue_reload(agent *a, ag_entry *e)
{
    mdata *m = md_of(e);
    ag_job *j = job_new(a, J_RELOAD, 0, e->model, e->version);
    if (j == NULL || m == NULL)
        return -1;
    m->reload_queued = 1;
    series_set(a, a->m_miss, e, 1, 1);
    sdd_log(SELDON_LOG_INFO, "model %s: requested while evicted: loading it again", e->vname);
    job_push(a, j, 1); /* ahead of the queue: a request waits for it */
    return 0;
}

/* ------------------------------------------------------------ LOAD */

static void fail_job(agent *a, ag_job *j, const char *why)
{
    ag_entry *e = j->e;
    if (j->kind == J_RELOAD) {
        if (e != NULL) {
            e->state = AG_EVICTED;
            wake(e, 0, why);
        }
    } else if (j->kind == J_LOAD) {
        if (e != NULL && j->fresh) {
            char dir[4200];
            snprintf(dir, sizeof(dir), "%s/%s", a->cfg.models_dir, e->vname);
            ag_rm_tree(dir);
            entry_drop(a, e);
        } else if (e != NULL) {
            e->state = AG_EVICTED;
            wake(e, 0, why);
        }
        ag_report(a, j->id, j->model, j->version, AG_EV_LOAD_FAILED, why);
    }
    job_done(a, j);
}

static void placed(void *arg, int ok, const char *err)
{
    ag_job *j = arg;
    agent *a = j->a;
    char dst[4200], why[1200];
    if (!ok) {
        fail_job(a, j, err);
        return;
    }
    snprintf(dst, sizeof(dst), "%s/%s", a->cfg.models_dir, j->e->vname);
    why[0] = '\0';
    if (ag_rename_all_settings(dst, j->e->vname, why, sizeof(why)) < 0) {
        fail_job(a, j, why);
        return;
    }
    enter_server(a, j);
}

static void place(agent *a, ag_job *j)
{
    char dst[4200];
    char *argv[5];
    snprintf(dst, sizeof(dst), "%s/%s", a->cfg.models_dir, j->e->vname);
    ag_rm_tree(dst); /* a leftover of an earlier run */
    /* Hard links: instant, and the artifact cache keeps its own settings file. */
    argv[0] = "/bin/cp";
    argv[1] = "-al";
    argv[2] = j->art;
    argv[3] = dst;
    argv[4] = NULL;
    ag_child_run(a->loop, argv, "placing the model (cp -al)", &a->child, placed, j);
}

/* The artifact is in the cache (fetch.c): place it. */
static void fetched(void *arg, const char *art, const char *why)
{
    ag_job *j = arg;
    if (art == NULL) {
        fail_job(j->a, j, why);
        return;
    }
    snprintf(j->art, sizeof(j->art), "%s", art);
    place(j->a, j);
}

static void fetch(agent *a, ag_job *j, const ag_spec *spec)
{
    ag_fetch_opts o;
    o.loop = a->loop;
    o.artifacts_dir = a->cfg.artifacts_dir;
    o.rclone = a->cfg.rclone;
    o.rclone_config = a->cfg.rclone_config;
    ag_fetch(&o, spec->storage_uri, spec->artifact_version, &a->child, fetched, j);
}

/* ------------------------------------------------------------ server calls */

static void server_loaded(void *arg, int32_t status, const char *message, const uint8_t *resp,
                          size_t len)
{
    ag_job *j = arg;
    agent *a = j->a;
    ag_entry *e = j->e;
    (void)resp, (void)len;
    if (status != 0) {
        char why[700];
        snprintf(why, sizeof(why), "the server could not load %s: %s", e->vname,
                 message && *message ? message : "no reason given");
        fail_job(a, j, why);
        return;
    }
    e->state = AG_LOADED;
    if (!e->held)
        state_save(a, e);
    e->held = 1;
    ag_cache_touch(a->cache, e);
    note_loaded(a, e, 1);
    sdd_log(SELDON_LOG_INFO, "model %s: loaded on the server (%lld bytes; %lld of %lld in use)",
            e->vname, (long long)e->memory, (long long)ag_cache_used(a->cache),
            (long long)a->cfg.memory);
    wake(e, 1, NULL);
    if (j->kind == J_LOAD)
        ag_report(a, j->id, j->model, j->version, AG_EV_LOADED, NULL);
    job_done(a, j);
}

static void server_load(agent *a, ag_job *j)
{
    Inference__RepositoryModelLoadRequest req = INFERENCE__REPOSITORY_MODEL_LOAD_REQUEST__INIT;
    uint8_t buf[600];
    size_t len;
    req.model_name = j->e->vname;
    len = inference__repository_model_load_request__pack(&req, buf);
    if (ag_unary(a, a->srv_host, a->srv_grpc_port,
                 "/inference.GRPCInferenceService/RepositoryModelLoad", buf, len,
                 a->cfg.server_timeout_ms, server_loaded, j) != 0) {
        fail_job(a, j, "the server cannot be reached (--server-grpc)");
    }
}

typedef struct unload_call {
    agent *a;
    ag_job *j;
    ag_entry *e;
    void (*then)(agent *a, ag_job *j, int32_t status, const char *message);
} unload_call;

static void server_unloaded(void *arg, int32_t status, const char *message, const uint8_t *resp,
                            size_t len)
{
    unload_call *u = arg;
    (void)resp, (void)len;
    u->then(u->a, u->j, status, message);
    sdd_free(u);
}

static void server_unload(agent *a, ag_job *j, ag_entry *e,
                          void (*then)(agent *a, ag_job *j, int32_t status, const char *message))
{
    Inference__RepositoryModelUnloadRequest req = INFERENCE__REPOSITORY_MODEL_UNLOAD_REQUEST__INIT;
    uint8_t buf[600];
    size_t len;
    unload_call *u = sdd_calloc(1, sizeof(*u));
    if (u == NULL) {
        then(a, j, 13, "out of memory");
        return;
    }
    u->a = a;
    u->j = j;
    u->e = e;
    u->then = then;
    req.model_name = e->vname;
    len = inference__repository_model_unload_request__pack(&req, buf);
    if (ag_unary(a, a->srv_host, a->srv_grpc_port,
                 "/inference.GRPCInferenceService/RepositoryModelUnload", buf, len,
                 a->cfg.server_timeout_ms, server_unloaded, u) != 0) {
        sdd_free(u);
        then(a, j, 14, "the server cannot be reached (--server-grpc)");
    }
}

/* ------------------------------------------------------------ making room */

static void evict_next(agent *a, ag_job *j);

static void evicted(agent *a, ag_job *j, int32_t status, const char *message)
{
    ag_entry *v = j->victims[j->vi++];
    if (status != 0 && status != 5)
        sdd_log(SELDON_LOG_WARN, "model %s: evicting: the server said %d %s", v->vname, status,
                message);
    v->state = AG_EVICTED;
    note_loaded(a, v, 0);
    series_set(a, a->m_evict, v, 1, 1);
    sdd_log(SELDON_LOG_INFO, "model %s: evicted to make room for %s", v->vname, j->e->vname);
    evict_next(a, j);
}

static void evict_next(agent *a, ag_job *j)
{
    while (j->vi < j->nvictims && j->victims[j->vi]->state != AG_LOADED)
        j->vi++; /* changed meanwhile */
    if (j->vi < j->nvictims) {
        ag_entry *v = j->victims[j->vi];
        v->state = AG_EVICTING; /* a request for it now waits, then reloads it */
        server_unload(a, j, v, evicted);
        return;
    }
    server_load(a, j);
}

static void make_room(agent *a, ag_job *j)
{
    int rc;
    j->e->state = AG_LOADING;
    sdd_free(j->victims);
    j->victims = NULL;
    j->nvictims = j->vi = 0;
    rc = ag_cache_plan(&j->victims, &j->nvictims, a->cache, j->e);
    if (rc != 0) {
        fail_job(a, j, seldon_last_error());
        return;
    }
    evict_next(a, j);
}

/* ------------------------------------------------------------ UNLOAD */

static void unload_done(agent *a, ag_job *j, int32_t status, const char *message);

static void drain_timer_closed(uv_handle_t *h)
{
    sdd_free(h);
}

static void drain_stop_timer(agent *a)
{
    if (a->drain_timer != NULL) {
        uv_timer_stop(a->drain_timer);
        uv_close((uv_handle_t *)a->drain_timer, drain_timer_closed);
        a->drain_timer = NULL;
    }
}

/* The requests in flight ended (or --grace passed): the unload goes on. */
static void drain_finish(agent *a)
{
    ag_job *j = a->drain_job;
    if (j == NULL)
        return;
    a->drain_job = NULL;
    drain_stop_timer(a);
    if (j->e->inflight > 0)
        sdd_log(SELDON_LOG_WARN, "model %s: %u requests still in flight after --grace: unloading",
                j->e->vname, j->e->inflight);
    server_unload(a, j, j->e, unload_done);
}

static void drain_expired(uv_timer_t *t)
{
    drain_finish(t->data);
}

void ag_models_begin(agent *a, const char *vname)
{
    ag_entry *e = ag_cache_find(a->cache, vname, strlen(vname));
    if (e != NULL)
        e->inflight++;
}

void ag_models_end(agent *a, const char *vname)
{
    ag_entry *e = ag_cache_find(a->cache, vname, strlen(vname));
    if (e == NULL || e->inflight == 0)
        return;
    if (--e->inflight == 0) {
        e->idle_since = ag_now_ns();
        if (a->drain_job != NULL && a->drain_job->e == e)
            drain_finish(a);
    }
}

static void unload_done(agent *a, ag_job *j, int32_t status, const char *message)
{
    char dir[4200];
    ag_entry *e = j->e;
    if (status != 0 && status != 5) {
        char why[700];
        snprintf(why, sizeof(why), "the server could not unload %s: %s", e->vname, message);
        e->state = AG_LOADED;
        ag_report(a, j->id, j->model, j->version, AG_EV_UNLOAD_FAILED, why);
        job_done(a, j);
        return;
    }
    note_loaded(a, e, 0);
    series_forget(a, e->vname);
    snprintf(dir, sizeof(dir), "%s/%s", a->cfg.models_dir, e->vname);
    ag_rm_tree(dir);
    entry_drop(a, e);
    ag_report(a, j->id, j->model, j->version, AG_EV_UNLOADED, NULL);
    job_done(a, j);
}

/* ------------------------------------------------------------ the queue */

static void run_load(agent *a, ag_job *j)
{
    ag_spec spec;
    ag_entry *e = ag_cache_find_version(a->cache, j->model, j->version);
    int64_t memory;
    int rc;
    if (e != NULL) {
        j->e = e;
        if (e->state == AG_LOADED) {
            ag_report(a, j->id, j->model, j->version, AG_EV_LOADED, NULL);
            job_done(a, j);
            return;
        }
        a->serving = j; /* evicted: load it again */
        make_room(a, j);
        return;
    }
    rc = ag_spec_parse(&spec, j->spec ? j->spec : "", j->spec ? strlen(j->spec) : 0);
    if (rc != 0) {
        fail_job(a, j, seldon_last_error());
        return;
    }
    memory = j->memory > 0 ? j->memory : spec.memory > 0 ? spec.memory : 0;
    e = ag_cache_add(a->cache, j->model, j->version, memory);
    if (e == NULL) {
        ag_spec_clear(&spec);
        fail_job(a, j, "out of memory");
        return;
    }
    j->e = e;
    j->fresh = 1;
    md_of(e);
    /* Refuse early what can never fit, before fetching anything. */
    if (a->cfg.memory > 0 && memory > a->cfg.memory) {
        char why[300];
        snprintf(why, sizeof(why),
                 "model %s needs %lld bytes; the replica has %lld in all "
                 "(--memory)",
                 e->vname, (long long)memory, (long long)a->cfg.memory);
        ag_spec_clear(&spec);
        fail_job(a, j, why);
        return;
    }
    sdd_log(SELDON_LOG_INFO, "model %s: loading from %s (%lld bytes)", e->vname, spec.storage_uri,
            (long long)memory);
    a->fetching = j;
    fetch(a, j, &spec);
    ag_spec_clear(&spec);
}

static ag_job *pop(agent *a)
{
    ag_job *j = a->jobs;
    a->jobs = j->next;
    if (a->jobs == NULL)
        a->jobs_tail = NULL;
    j->next = NULL;
    return j;
}

/*
 * Starts what can start: a reload (a request waits for it) as soon as the server lane is
 * free, then a fetched job waiting for that lane, then the next command once both lanes
 * are free (commands keep their order).
 */
static void job_next(agent *a)
{
    ag_job *j;
    ag_entry *e;
    if (a->stopping)
        return;
    if (a->serving == NULL && a->jobs != NULL && a->jobs->kind == J_RELOAD) {
        j = pop(a);
        e = ag_cache_find_version(a->cache, j->model, j->version);
        if (e == NULL || e->state != AG_EVICTED) { /* loaded meanwhile, or gone */
            if (e != NULL && e->state == AG_LOADED)
                wake(e, 1, NULL);
            job_done(a, j);
            return;
        }
        j->e = e;
        a->serving = j;
        make_room(a, j);
        return;
    }
    if (a->serving == NULL && a->parked != NULL) {
        j = a->parked;
        a->parked = NULL;
        a->serving = j;
        make_room(a, j);
        return;
    }
    if (a->serving != NULL || a->fetching != NULL || a->parked != NULL || a->jobs == NULL)
        return;
    j = pop(a);
    switch (j->kind) {
    case J_LOAD:
        run_load(a, j);
        return;
    case J_UNLOAD:
        e = ag_cache_find_version(a->cache, j->model, j->version);
        if (e == NULL) {
            ag_report(a, j->id, j->model, j->version, AG_EV_UNLOADED, NULL);
            job_done(a, j);
            return;
        }
        j->e = e;
        a->serving = j;
        if (e->state == AG_LOADED && e->inflight > 0) {
            /* The scheduler took it out of the routes first; what is in flight ends here. */
            e->state = AG_UNLOADING;
            sdd_log(SELDON_LOG_INFO, "model %s: unload waits for %u requests in flight", e->vname,
                    e->inflight);
            a->drain_job = j;
            a->drain_timer = sdd_malloc(sizeof(*a->drain_timer));
            if (a->drain_timer != NULL) {
                uv_timer_init(a->loop, a->drain_timer);
                a->drain_timer->data = a;
                uv_timer_start(a->drain_timer, drain_expired, a->cfg.grace_ms, 0);
            } else {
                drain_finish(a);
            }
        } else if (e->state == AG_LOADED) {
            e->state = AG_UNLOADING;
            server_unload(a, j, e, unload_done);
        } else {
            e->state = AG_UNLOADING;
            unload_done(a, j, 0, NULL);
        }
        return;
    }
    job_done(a, j);
}

void ag_models_command(agent *a, const uint8_t *msg, size_t len)
{
    Seldon__Control__V1__AgentCommand *c =
        seldon__control__v1__agent_command__unpack(NULL, len, msg);
    ag_job *j;
    if (a->stopping) {
        seldon__control__v1__agent_command__free_unpacked(c, NULL);
        return;
    }
    if (c == NULL) {
        sdd_log(SELDON_LOG_ERROR, "scheduler sent a command that does not decode (%zu bytes)", len);
        return;
    }
    if (c->op != SELDON__CONTROL__V1__AGENT_COMMAND__OP__LOAD &&
        c->op != SELDON__CONTROL__V1__AGENT_COMMAND__OP__UNLOAD) {
        sdd_log(SELDON_LOG_WARN, "command %llu: unknown op %d", (unsigned long long)c->id,
                (int)c->op);
        goto out;
    }
    if (c->model == NULL || c->model[0] == '\0' || strchr(c->model, '/') != NULL ||
        c->model[0] == '.') {
        ag_report(a, c->id, c->model ? c->model : "", c->version,
                  c->op == SELDON__CONTROL__V1__AGENT_COMMAND__OP__LOAD ? AG_EV_LOAD_FAILED
                                                                        : AG_EV_UNLOAD_FAILED,
                  "model: a name without '/' is required");
        goto out;
    }
    sdd_log(SELDON_LOG_INFO, "command %llu: %s %s_%u", (unsigned long long)c->id,
            c->op == SELDON__CONTROL__V1__AGENT_COMMAND__OP__LOAD ? "LOAD" : "UNLOAD", c->model,
            c->version);
    j = job_new(a, c->op == SELDON__CONTROL__V1__AGENT_COMMAND__OP__LOAD ? J_LOAD : J_UNLOAD, c->id,
                c->model, c->version);
    if (j == NULL)
        goto out;
    j->memory = c->memory_bytes;
    if (c->spec != NULL && c->spec[0] != '\0')
        j->spec = sdd_strndup(c->spec, strlen(c->spec));
    job_push(a, j, 0);
out:
    seldon__control__v1__agent_command__free_unpacked(c, NULL);
}

void ag_models_stop(agent *a)
{
    ag_job *j, *next;
    ag_entry *e;
    a->stopping = 1;
    if (a->drain_job != NULL) { /* nothing will unload it now */
        drain_stop_timer(a);
        if (a->serving == a->drain_job)
            a->serving = NULL;
        job_free(a->drain_job);
        a->drain_job = NULL;
    }
    if (a->child != NULL) /* its job ends as failed once it exits */
        uv_process_kill(a->child, SIGTERM);
    for (j = a->jobs; j != NULL; j = next) {
        next = j->next;
        job_free(j);
    }
    a->jobs = a->jobs_tail = NULL;
    if (a->parked != NULL) { /* nothing runs it any more */
        job_free(a->parked);
        a->parked = NULL;
    }
    for (e = ag_cache_first(a->cache); e != NULL; e = e->next) {
        wake(e, 0, "the agent is stopping");
        sdd_free(e->user);
        e->user = NULL;
    }
}
