/*
 * The agent's model work, one job at a time on the loop: LOAD (fetch the artifact,
 * place it as <models-dir>/<model>_<version>, rename it in model-settings.json, make
 * room, RepositoryModelLoad), UNLOAD, and RELOAD (a request came for a model evicted
 * to make room). Fetching runs `cp` or `rclone copy` as child processes (uv_spawn), so
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
    char src[4096]; /* what to fetch */
    char art[4096]; /* the artifact folder */
    char tmp[4096];
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
    if (n > 0)
        sdd_log(SELDON_LOG_INFO,
                "%zu model version(s) held before the restart: reported to "
                "the scheduler, loaded again on use",
                n);
    return 0;
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
        return;
    }
    r = inference__repository_index_response__unpack(NULL, len, resp);
    if (r == NULL)
        return;
    for (i = 0; i < r->n_models; i++) {
        const char *name = r->models[i]->name;
        ag_entry *e = ag_cache_find(a->cache, name, strlen(name));
        if (e == NULL || e->state != AG_EVICTED || strcmp(r->models[i]->state, "READY") != 0)
            continue;
        e->state = AG_LOADED;
        series_set(a, a->m_loaded, e, 1, 0);
        series_set(a, a->m_loaded_mem, e, (double)e->memory, 0);
        n++;
    }
    inference__repository_index_response__free_unpacked(r, NULL);
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
    if (e == NULL)
        return; /* nothing restored */
    req.ready = 1;
    len = inference__repository_index_request__pack(&req, buf);
    if (ag_unary(a, a->srv_host, a->srv_grpc_port,
                 "/inference.GRPCInferenceService/RepositoryIndex", buf, len,
                 a->cfg.server_timeout_ms, index_answered, a) != 0)
        sdd_log(SELDON_LOG_WARN, "the server cannot be reached: restored models load again on "
                                 "use");
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
    if ((e->state == AG_EVICTED || e->state == AG_EVICTING) && !m->reload_queued) {
        ag_job *j = job_new(a, J_RELOAD, 0, e->model, e->version);
        if (j == NULL) {
            ag_waiter_cancel(w);
            return sdd_error(SELDON_ENOMEM, "out of memory");
        }
        m->reload_queued = 1;
        series_set(a, a->m_miss, e, 1, 1);
        sdd_log(SELDON_LOG_INFO, "model %s: requested while evicted: loading it again", e->vname);
        job_push(a, j, 1); /* ahead of the queue: a request waits for it */
    }
    return 0;
}

/* ------------------------------------------------------------ files */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

static void rm_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) == 0)
        nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static int read_file(seldon_buf *b, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;
    if (fd < 0)
        return -1;
    for (;;) {
        if (seldon_buf_reserve(b, 65536) != 0) {
            close(fd);
            return -1;
        }
        n = read(fd, b->data + b->len, 65536);
        if (n <= 0)
            break;
        b->len += (size_t)n;
        if (b->len > (8u << 20))
            break;
    }
    close(fd);
    return n < 0 ? -1 : 0;
}

/* Renames the model in dir/model-settings.json (write aside, then rename: a hard link
 * into the artifact cache is replaced, not written through). */
static int rename_settings(const char *dir, const char *vname, char *why, size_t cap)
{
    char path[4200], tmp[4200];
    seldon_buf in = SELDON_BUF_INIT, out = SELDON_BUF_INIT;
    int fd, rc = -1;
    snprintf(path, sizeof(path), "%s/model-settings.json", dir);
    snprintf(tmp, sizeof(tmp), "%s/.model-settings.json.agent", dir);
    if (read_file(&in, path) != 0) {
        rc = 1; /* none here */
        goto out;
    }
    if (ag_settings_rename(&out, (const char *)in.data, in.len, vname) != 0) {
        snprintf(why, cap, "%.600s: %.500s", path, seldon_last_error());
        goto out;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, out.data, out.len) != (ssize_t)out.len) {
        snprintf(why, cap, "%.900s: %s", tmp, strerror(errno));
        if (fd >= 0)
            close(fd);
        goto out;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        snprintf(why, cap, "%.900s: %s", path, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    seldon_buf_free(&in);
    seldon_buf_free(&out);
    return rc;
}

/* The top folder's settings, else those of each version folder in it. */
static int rename_all_settings(const char *dir, const char *vname, char *why, size_t cap)
{
    char sub[4200];
    int rc = rename_settings(dir, vname, why, cap);
    struct dirent *de;
    DIR *d;
    if (rc <= 0)
        return rc;
    d = opendir(dir);
    if (d == NULL)
        return 0;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        if (snprintf(sub, sizeof(sub), "%s/%s", dir, de->d_name) >= (int)sizeof(sub))
            continue;
        if (rename_settings(sub, vname, why, cap) < 0) {
            closedir(d);
            return -1;
        }
    }
    closedir(d);
    return 0;
}

/* ------------------------------------------------------------ child processes */

typedef void (*child_cb)(agent *a, ag_job *j, int ok, const char *err);

typedef struct child {
    uv_process_t proc;
    uv_pipe_t err;
    agent *a;
    ag_job *j;
    child_cb cb;
    int64_t status;
    int term;
    int open; /* handles not yet closed */
    char what[64];
    char buf[8192];
    size_t len;
} child;

static void child_closed(uv_handle_t *h)
{
    child *c = h->data;
    char msg[1200];
    size_t i, start;
    if (--c->open > 0)
        return;
    /* The end of stderr says why; trimmed, one line. */
    while (c->len > 0 && (c->buf[c->len - 1] == '\n' || c->buf[c->len - 1] == ' '))
        c->len--;
    start = c->len > 1000 ? c->len - 1000 : 0;
    for (i = start; i < c->len; i++)
        if (c->buf[i] == '\n' || c->buf[i] == '\r' || c->buf[i] == '\t')
            c->buf[i] = ' ';
    c->buf[c->len] = '\0';
    if (c->status == 0 && c->term == 0) {
        c->cb(c->a, c->j, 1, NULL);
    } else {
        if (c->term != 0)
            snprintf(msg, sizeof(msg), "%s was killed by signal %d: %s", c->what, c->term,
                     c->buf + start);
        else
            snprintf(msg, sizeof(msg), "%s failed (exit %lld): %s", c->what, (long long)c->status,
                     c->len ? c->buf + start : "(no message)");
        c->cb(c->a, c->j, 0, msg);
    }
    sdd_free(c);
}

static void child_exit(uv_process_t *p, int64_t status, int term)
{
    child *c = p->data;
    if (c->a->child == p)
        c->a->child = NULL;
    c->status = status;
    c->term = term;
    uv_close((uv_handle_t *)p, child_closed);
}

static void err_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    child *c = h->data;
    (void)suggested;
    if (c->len >= sizeof(c->buf) - 1) /* keep the tail: drop the oldest half */
    {
        memmove(c->buf, c->buf + sizeof(c->buf) / 2, c->len - sizeof(c->buf) / 2);
        c->len -= sizeof(c->buf) / 2;
    }
    buf->base = c->buf + c->len;
    buf->len = sizeof(c->buf) - 1 - c->len;
}

static void err_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    child *c = s->data;
    (void)buf;
    if (n > 0) {
        c->len += (size_t)n;
        return;
    }
    if (n < 0) {
        uv_read_stop(s);
        uv_close((uv_handle_t *)s, child_closed);
    }
}

static int run_child(agent *a, ag_job *j, char **argv, const char *what, child_cb cb)
{
    uv_process_options_t o;
    uv_stdio_container_t io[3];
    child *c = sdd_calloc(1, sizeof(*c));
    int rc;
    if (c == NULL)
        return sdd_error(SELDON_ENOMEM, "out of memory");
    c->a = a;
    c->j = j;
    c->cb = cb;
    snprintf(c->what, sizeof(c->what), "%s", what);
    uv_pipe_init(a->loop, &c->err, 0);
    c->err.data = c;
    c->proc.data = c;
    memset(&o, 0, sizeof(o));
    io[0].flags = UV_IGNORE;
    io[1].flags = UV_IGNORE;
    io[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    io[2].data.stream = (uv_stream_t *)&c->err;
    o.file = argv[0];
    o.args = argv;
    o.stdio = io;
    o.stdio_count = 3;
    o.exit_cb = child_exit;
    rc = uv_spawn(a->loop, &c->proc, &o);
    c->open = 2;
    if (rc != 0) {
        /* Both handles still need closing; child_closed then reports the failure. */
        c->len =
            (size_t)snprintf(c->buf, sizeof(c->buf), "cannot run %s: %s", argv[0], uv_strerror(rc));
        c->status = 127;
        uv_close((uv_handle_t *)&c->err, child_closed);
        uv_close((uv_handle_t *)&c->proc, child_closed);
        return 0;
    }
    a->child = &c->proc;
    uv_read_start((uv_stream_t *)&c->err, err_alloc, err_read);
    sdd_log(SELDON_LOG_DEBUG, "running %s", what);
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
            rm_tree(dir);
            entry_drop(a, e);
        } else if (e != NULL) {
            e->state = AG_EVICTED;
            wake(e, 0, why);
        }
        ag_report(a, j->id, j->model, j->version, AG_EV_LOAD_FAILED, why);
    }
    job_done(a, j);
}

static void placed(agent *a, ag_job *j, int ok, const char *err)
{
    char dst[4200], why[1200];
    if (!ok) {
        fail_job(a, j, err);
        return;
    }
    snprintf(dst, sizeof(dst), "%s/%s", a->cfg.models_dir, j->e->vname);
    why[0] = '\0';
    if (rename_all_settings(dst, j->e->vname, why, sizeof(why)) < 0) {
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
    rm_tree(dst); /* a leftover of an earlier run */
    /* Hard links: instant, and the artifact cache keeps its own settings file. */
    argv[0] = "/bin/cp";
    argv[1] = "-al";
    argv[2] = j->art;
    argv[3] = dst;
    argv[4] = NULL;
    run_child(a, j, argv, "placing the model (cp -al)", placed);
}

static void fetched(agent *a, ag_job *j, int ok, const char *err)
{
    if (!ok) {
        char why[1400];
        rm_tree(j->tmp);
        snprintf(why, sizeof(why), "storageUri %.300s: %s", j->src, err);
        fail_job(a, j, why);
        return;
    }
    if (rename(j->tmp, j->art) != 0) {
        char why[600];
        snprintf(why, sizeof(why), "%.500s: %s", j->art, strerror(errno));
        rm_tree(j->tmp);
        fail_job(a, j, why);
        return;
    }
    sdd_log(SELDON_LOG_INFO, "artifact %s: fetched into %s", j->src, j->art);
    place(a, j);
}

static uint64_t fnv64(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

static int is_local(const char *uri)
{
    const char *colon = strchr(uri, ':');
    const char *slash = strchr(uri, '/');
    if (strncmp(uri, "file://", 7) == 0)
        return 1;
    return colon == NULL || (slash != NULL && slash < colon);
}

/* The rclone source for a URI: a remote of the config file ("remote:path") as it is;
 * gs://, s3://, http(s):// as rclone's on-the-fly remotes unless a config names them. */
static void rclone_source(char *out, size_t cap, const char *uri, const char *config)
{
    const char *rest = strstr(uri, "://");
    if (rest == NULL) {
        snprintf(out, cap, "%s", uri);
        return;
    }
    rest += 3;
    if (strncmp(uri, "http://", 7) == 0 || strncmp(uri, "https://", 8) == 0) {
        const char *path = strchr(rest, '/');
        int hostlen = path ? (int)(path - uri) : (int)strlen(uri);
        snprintf(out, cap, ":http,url='%.*s':%s", hostlen, uri, path ? path : "");
    } else if (config != NULL) {
        snprintf(out, cap, "%.*s:%s", (int)(rest - 3 - uri), uri, rest);
    } else if (strncmp(uri, "gs://", 5) == 0) {
        snprintf(out, cap, ":gcs,anonymous=true:%s", rest);
    } else if (strncmp(uri, "s3://", 5) == 0) {
        snprintf(out, cap, ":s3,env_auth=true:%s", rest);
    } else {
        snprintf(out, cap, "%.*s:%s", (int)(rest - 3 - uri), uri, rest);
    }
}

static void fetch(agent *a, ag_job *j, const ag_spec *spec)
{
    struct stat st;
    char *argv[8], rsrc[4200], why[4400];
    int n = 0;
    const char *uri = spec->storage_uri;
    size_t ul = strlen(uri);
    while (ul > 1 && uri[ul - 1] == '/')
        ul--;
    if (spec->artifact_version >= 0)
        snprintf(j->src, sizeof(j->src), "%.*s/%lld", (int)ul, uri,
                 (long long)spec->artifact_version);
    else
        snprintf(j->src, sizeof(j->src), "%.*s", (int)ul, uri);
    snprintf(j->art, sizeof(j->art), "%s/%016llx", a->cfg.artifacts_dir,
             (unsigned long long)fnv64(j->src));
    if (snprintf(j->tmp, sizeof(j->tmp), "%s.part", j->art) >= (int)sizeof(j->tmp))
        j->tmp[0] = '\0';
    if (stat(j->art, &st) == 0) {
        sdd_log(SELDON_LOG_INFO, "artifact %s: already fetched in %s", j->src, j->art);
        place(a, j);
        return;
    }
    rm_tree(j->tmp);
    if (mkdir(j->tmp, 0755) != 0) {
        snprintf(why, sizeof(why), "%s: %s", j->tmp, strerror(errno));
        fail_job(a, j, why);
        return;
    }
    if (is_local(j->src)) {
        const char *path = strncmp(j->src, "file://", 7) == 0 ? j->src + 7 : j->src;
        if (stat(path, &st) != 0) {
            snprintf(why, sizeof(why), "storageUri %s: %s%s", j->src, strerror(errno),
                     spec->artifact_version >= 0 ? " (the artifactVersion folder)" : "");
            rm_tree(j->tmp);
            fail_job(a, j, why);
            return;
        }
        argv[n++] = "/bin/cp";
        if (S_ISDIR(st.st_mode)) {
            snprintf(rsrc, sizeof(rsrc), "%s/.", path);
            argv[n++] = "-R";
            argv[n++] = rsrc;
        } else {
            snprintf(rsrc, sizeof(rsrc), "%s", path);
            argv[n++] = rsrc;
        }
        argv[n++] = j->tmp;
        argv[n] = NULL;
        run_child(a, j, argv, "cp", fetched);
        return;
    }
    rclone_source(rsrc, sizeof(rsrc), j->src, a->cfg.rclone_config);
    argv[n++] = (char *)a->cfg.rclone;
    argv[n++] = "copy";
    if (a->cfg.rclone_config != NULL) {
        argv[n++] = "--config";
        argv[n++] = (char *)a->cfg.rclone_config;
    }
    argv[n++] = rsrc;
    argv[n++] = j->tmp;
    argv[n] = NULL;
    sdd_log(SELDON_LOG_INFO, "artifact %s: rclone copy %s", j->src, rsrc);
    run_child(a, j, argv, "rclone copy", fetched);
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
    snprintf(dir, sizeof(dir), "%s/%s", a->cfg.models_dir, e->vname);
    rm_tree(dir);
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
        if (e->state == AG_LOADED) {
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
