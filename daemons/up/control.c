/*
 * The control loop: the embedded replicas register with the scheduler by
 * function call, and its commands run here as an in-process agent stage:
 * fetch the artifact once (a local path or file:// copied with cp, anything
 * else through `rclone copy`, both as child processes so the loop never
 * blocks), pick the artifactVersion folder, rename model-settings.json to
 * <model>_<version>, load it into the replica's repository on the replica's
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

#include "cache.h" /* daemons/agent: spec fields, model-settings renaming */
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

static up_model *model_find(up_replica *r, const char *model, uint32_t version)
{
    up_model *m;
    for (m = r->models; m != NULL; m = m->next)
        if (m->version == version && strcmp(m->model, model) == 0)
            return m;
    return NULL;
}

static up_model *model_add(up_replica *r, const char *model, uint32_t version)
{
    size_t n = strlen(model);
    up_model *m = sdd_calloc(1, sizeof(*m) + n + 16);
    if (m == NULL)
        return NULL;
    snprintf(m->vname, n + 16, "%s_%u", model, version);
    m->model = sdd_strndup(model, n);
    if (m->model == NULL) {
        sdd_free(m);
        return NULL;
    }
    m->version = version;
    m->state = UP_LOADING;
    m->next = r->models;
    r->models = m;
    return m;
}

static void model_remove(up_replica *r, up_model *m)
{
    up_model **pp;
    for (pp = &r->models; *pp != NULL; pp = &(*pp)->next)
        if (*pp == m) {
            *pp = m->next;
            break;
        }
    sdd_free(m->model);
    sdd_free(m);
}

/* ---------------------------------------------------------------- the table */

void up_table_free(up_table *t)
{
    if (t == NULL)
        return;
    seldon_routes_release(t->routes);
    sdd_free(t->first);
    sdd_free(t->targets);
    sdd_free(t);
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

/* The newest version of model loaded on r, or NULL. */
static up_model *newest(up_replica *r, const char *model)
{
    up_model *m, *best = NULL;
    for (m = r->models; m != NULL; m = m->next)
        if (m->state == UP_LOADED && strcmp(m->model, model) == 0 &&
            (best == NULL || m->version > best->version))
            best = m;
    return best;
}

/*
 * Builds the lookup table from the scheduler's routes and what the replicas
 * hold, and swaps it in. Once this returns no request can pick a version that
 * is no longer loaded here.
 */
static void table_rebuild(up *u)
{
    seldon_routes *routes = NULL;
    up_table *t = NULL, *old;
    size_t i, j, n, total = 0, k = 0;
    int rc = seldon_sched_routes(&routes, u->sched.sched);
    if (rc != 0) {
        sdd_log(SELDON_LOG_ERROR, "route table: %s", seldon_last_error());
        return;
    }
    n = seldon_routes_count(routes);
    for (i = 0; i < n; i++)
        total += seldon_routes_upstream_count(routes, i);
    t = sdd_calloc(1, sizeof(*t));
    if (t != NULL) {
        t->first = sdd_calloc(n + 1, sizeof(*t->first));
        t->targets = sdd_calloc(total ? total : 1, sizeof(*t->targets));
    }
    if (t == NULL || t->first == NULL || t->targets == NULL) {
        sdd_log(SELDON_LOG_ERROR, "route table: out of memory");
        if (t != NULL) {
            sdd_free(t->first);
            sdd_free(t->targets);
            sdd_free(t);
        }
        seldon_routes_release(routes);
        return;
    }
    t->routes = routes;
    for (i = 0; i < n; i++) {
        const char *name = seldon_routes_name(routes, i);
        t->first[i] = k;
        for (j = 0; j < seldon_routes_upstream_count(routes, i); j++) {
            const seldon_router_upstream *up_ = seldon_routes_upstream(routes, i, j);
            up_replica *r = replica_at(u, up_->http ? up_->http : up_->grpc);
            up_model *m = r != NULL ? newest(r, name) : NULL;
            if (m == NULL)
                continue;
            t->targets[k].r = r;
            t->targets[k].vname = m->vname; /* freed only after a rebuild without it */
            t->targets[k].vname_len = strlen(m->vname);
            k++;
        }
    }
    t->first[n] = k;
    pthread_rwlock_wrlock(&u->table_lock);
    old = u->table;
    u->table = t;
    pthread_rwlock_unlock(&u->table_lock);
    up_table_free(old);
    sdd_log(SELDON_LOG_DEBUG, "lookup table: %zu route(s), %zu target(s)", n, k);
}

void up_after_pump(void *user_data)
{
    up *u = user_data;
    uint64_t gen = seldon_sched_routes_generation(u->sched.sched);
    atomic_store(&u->sched_ready, seldon_sched_ready(u->sched.sched) != 0);
    if (!u->table_built || gen != u->table_gen) {
        u->table_built = 1;
        u->table_gen = gen;
        table_rebuild(u);
    }
}

/* ---------------------------------------------------------------- reports */

static void report(up_replica *r, uint64_t id, const char *model, uint32_t version,
                   seldon_sched_event_type type, const char *reason)
{
    up *u = r->u;
    static const char *const names[] = {"", "loaded", "load failed", "unloaded", "unload failed"};
    if (u->stopping)
        return;
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

typedef struct up_job {
    seldon_job job; /* first: the executor hands it back */
    up_replica *r;
    uint64_t id;
    int unload;
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
    j->rc = j->unload ? seldon_repo_unload(j->r->s.repo, j->vname)
                      : seldon_repo_load(j->r->s.repo, j->vname);
    if (j->rc != 0)
        snprintf(j->reason, sizeof(j->reason), "%s", seldon_last_error());
    if (sdl_loops_post(j->r->u->ctl_loops, 0, job_finished, j) != 0)
        job_free(j); /* stopping: nobody waits for the report */
}

static int job_submit(up_replica *r, up_model *m, uint64_t id, int unload)
{
    size_t n = strlen(m->vname);
    up_job *j = sdd_calloc(1, sizeof(*j) + n + 1);
    if (j == NULL)
        return SELDON_ENOMEM;
    j->model = sdd_strndup(m->model, strlen(m->model));
    if (j->model == NULL) {
        sdd_free(j);
        return SELDON_ENOMEM;
    }
    memcpy(j->vname, m->vname, n + 1);
    j->r = r;
    j->id = id;
    j->unload = unload;
    j->version = m->version;
    j->job.run = job_run;
    j->job.next = NULL;
    /* The replica's load executor (exec.c), the one its service uses. */
    r->hooks.submit_load(r->hooks.host, &j->job);
    return 0;
}

static void unload_model(up_replica *r, up_model *m, uint64_t id)
{
    m->state = UP_UNLOADING;
    m->command = id;
    /* Out of the table first: after the swap no request can reach this version. */
    table_rebuild(r->u);
    if (job_submit(r, m, id, 1) != 0) {
        report(r, id, m->model, m->version, SELDON_SCHED_UNLOAD_FAILED, "out of memory");
        m->state = UP_LOADED;
        table_rebuild(r->u);
    }
}

static void job_finished(void *arg)
{
    up_job *j = arg;
    up_replica *r = j->r;
    up *u = r->u;
    up_model *m = model_find(r, j->model, j->version);
    if (u->stopping || m == NULL) {
        job_free(j);
        return;
    }
    seldon_service_refresh(r->s.svc);
    if (j->unload) {
        if (j->rc != 0) {
            m->state = UP_LOADED;
            table_rebuild(u);
            report(r, m->command, j->model, j->version, SELDON_SCHED_UNLOAD_FAILED, j->reason);
        } else {
            uint64_t id = m->command;
            model_remove(r, m);
            report(r, id, j->model, j->version, SELDON_SCHED_UNLOADED, NULL);
        }
    } else if (j->rc != 0) {
        uint64_t id = m->command;
        model_remove(r, m);
        report(r, id, j->model, j->version, SELDON_SCHED_LOAD_FAILED, j->reason);
    } else if (m->unload_after) {
        m->state = UP_LOADED;
        unload_model(r, m, m->command);
    } else {
        m->state = UP_LOADED;
        table_rebuild(u); /* before the report: the route that follows finds it */
        report(r, m->command, j->model, j->version, SELDON_SCHED_LOADED, NULL);
    }
    job_free(j);
}

/* ---------------------------------------------------------------- artifacts */

typedef struct up_waiter {
    struct up_waiter *next;
    up_replica *r;
    char *model;
    uint32_t version;
} up_waiter;

typedef struct up_fetch {
    struct up_fetch *next;
    up *u;
    uv_process_t proc;
    uv_pipe_t err;
    char errbuf[2048];
    size_t errlen;
    int closing; /* handles still to close */
    int64_t exit_status;
    int term_signal;
    int spawn_failed; /* errbuf says why */
    up_waiter *waiters;
    char *what; /* the source, for messages */
    char *tmp;
    char *dest;
    char vname[];
} up_fetch;

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void artifact_ready(up_replica *r, const char *model, uint32_t version, const char *why)
{
    up_model *m = model_find(r, model, version);
    if (m == NULL || m->state != UP_LOADING)
        return;
    if (why != NULL) {
        uint64_t id = m->command;
        model_remove(r, m);
        report(r, id, model, version, SELDON_SCHED_LOAD_FAILED, why);
        return;
    }
    if (job_submit(r, m, m->command, 0) != 0) {
        uint64_t id = m->command;
        model_remove(r, m);
        report(r, id, model, version, SELDON_SCHED_LOAD_FAILED, "out of memory");
    }
}

/* Renames <dir>/model-settings.json to vname. NULL, or why not (static or in buf). */
static const char *rename_settings(const char *dir, const char *vname, char *buf, size_t cap)
{
    char path[4096];
    seldon_buf in = SELDON_BUF_INIT, out = SELDON_BUF_INIT;
    FILE *f;
    size_t n;
    const char *why = NULL;
    snprintf(path, sizeof(path), "%s/model-settings.json", dir);
    f = fopen(path, "rb");
    if (f == NULL)
        return "no model-settings.json in the artifact";
    while (seldon_buf_reserve(&in, 65536) == 0 && (n = fread(in.data + in.len, 1, 65536, f)) > 0)
        in.len += n;
    fclose(f);
    if (ag_settings_rename(&out, (const char *)in.data, in.len, vname) != 0) {
        snprintf(buf, cap, "model-settings.json: %s", seldon_last_error());
        why = buf;
    } else if ((f = fopen(path, "wb")) == NULL) {
        snprintf(buf, cap, "model-settings.json: cannot write: %s", strerror(errno));
        why = buf;
    } else {
        int bad = fwrite(out.data, 1, out.len, f) != out.len;
        if (fclose(f) != 0 || bad) {
            snprintf(buf, cap, "model-settings.json: cannot write: %s", strerror(errno));
            why = buf;
        }
    }
    seldon_buf_free(&in);
    seldon_buf_free(&out);
    return why;
}

static void fetch_free(up_fetch *f)
{
    up_waiter *w, *next;
    up_fetch **pp;
    for (pp = &f->u->fetches; *pp != NULL; pp = &(*pp)->next)
        if (*pp == f) {
            *pp = f->next;
            break;
        }
    for (w = f->waiters; w != NULL; w = next) {
        next = w->next;
        sdd_free(w->model);
        sdd_free(w);
    }
    sdd_free(f->what);
    sdd_free(f->tmp);
    sdd_free(f->dest);
    sdd_free(f);
}

static void fetch_done(up_fetch *f, const char *why)
{
    up_waiter *w;
    for (w = f->waiters; w != NULL; w = w->next)
        artifact_ready(w->r, w->model, w->version, why);
}

static void remove_tree(up *u, const char *path);

static void fetch_closed(uv_handle_t *h)
{
    up_fetch *f = h->data;
    char buf[2600];
    const char *why = NULL;
    if (--f->closing > 0)
        return;
    if (f->spawn_failed) {
        snprintf(buf, sizeof(buf), "storageUri %s: %.*s", f->what, (int)f->errlen, f->errbuf);
        why = buf;
    } else if (f->exit_status != 0 || f->term_signal != 0) {
        while (f->errlen > 0 &&
               (f->errbuf[f->errlen - 1] == '\n' || f->errbuf[f->errlen - 1] == ' '))
            f->errlen--;
        snprintf(buf, sizeof(buf), "fetching %s failed (exit %lld%s%s): %.*s", f->what,
                 (long long)f->exit_status, f->term_signal ? ", signal " : "",
                 f->term_signal ? strsignal(f->term_signal) : "", (int)f->errlen, f->errbuf);
        why = buf;
        remove_tree(f->u, f->tmp);
    } else if ((why = rename_settings(f->tmp, f->vname, buf, sizeof(buf))) != NULL) {
        remove_tree(f->u, f->tmp);
    } else if (rename(f->tmp, f->dest) != 0 && !is_dir(f->dest)) {
        snprintf(buf, sizeof(buf), "%s: %s", f->dest, strerror(errno));
        why = buf;
        remove_tree(f->u, f->tmp);
    } else {
        sdd_log(SELDON_LOG_INFO, "fetched %s into %s", f->what, f->dest);
    }
    if (!f->u->stopping)
        fetch_done(f, why);
    fetch_free(f);
}

static void fetch_exit(uv_process_t *p, int64_t status, int sig)
{
    up_fetch *f = p->data;
    f->exit_status = status;
    f->term_signal = sig;
    uv_close((uv_handle_t *)p, fetch_closed);
}

static void err_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    up_fetch *f = h->data;
    static char sink[1024];
    (void)hint;
    if (f->errlen < sizeof(f->errbuf)) {
        b->base = f->errbuf + f->errlen;
        b->len = sizeof(f->errbuf) - f->errlen;
    } else { /* keep the first part; drop the rest */
        b->base = sink;
        b->len = sizeof(sink);
    }
}

static void err_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    up_fetch *f = s->data;
    if (n > 0 && b->base >= f->errbuf && b->base < f->errbuf + sizeof(f->errbuf))
        f->errlen += (size_t)n;
    if (n < 0)
        uv_close((uv_handle_t *)s, fetch_closed);
}

/* Runs argv as a child of the control loop; stderr is kept for the reason of a failure. */
static void fetch_spawn(up_fetch *f, char **argv)
{
    uv_process_options_t o;
    uv_stdio_container_t io[3];
    int rc;
    memset(&o, 0, sizeof(o));
    memset(io, 0, sizeof(io));
    uv_pipe_init(f->u->ctl, &f->err, 0);
    f->err.data = f;
    io[0].flags = UV_IGNORE;
    io[1].flags = UV_IGNORE;
    io[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    io[2].data.stream = (uv_stream_t *)&f->err;
    o.file = argv[0];
    o.args = argv;
    o.exit_cb = fetch_exit;
    o.stdio = io;
    o.stdio_count = 3;
    f->proc.data = f;
    rc = uv_spawn(f->u->ctl, &f->proc, &o);
    f->closing = 2;
    if (rc != 0) { /* both handles are initialised: they close, then the reason is reported */
        f->spawn_failed = 1;
        f->errlen = (size_t)snprintf(f->errbuf, sizeof(f->errbuf), "cannot run %s: %s", argv[0],
                                     uv_strerror(rc));
        uv_close((uv_handle_t *)&f->proc, fetch_closed);
        uv_close((uv_handle_t *)&f->err, fetch_closed);
        return;
    }
    uv_read_start((uv_stream_t *)&f->err, err_alloc, err_read);
}

/* Removes a folder left by a failed fetch (rm -rf as a child: nothing waits for it). */
static void rm_exit(uv_process_t *p, int64_t status, int sig)
{
    (void)status;
    (void)sig;
    uv_close((uv_handle_t *)p, (uv_close_cb)sdd_free);
}

static void remove_tree(up *u, const char *path)
{
    uv_process_t *p = sdd_calloc(1, sizeof(*p));
    uv_process_options_t o;
    char *argv[] = {"rm", "-rf", "--", (char *)path, NULL};
    if (p == NULL)
        return;
    memset(&o, 0, sizeof(o));
    o.file = "rm";
    o.args = argv;
    o.exit_cb = rm_exit;
    if (uv_spawn(u->ctl, p, &o) != 0)
        uv_close((uv_handle_t *)p, (uv_close_cb)sdd_free);
}

/* A local source: "file://PATH", an absolute path, or a path relative to the folder of seldon up.
 */
static const char *local_path(const char *uri)
{
    if (strncmp(uri, "file://", 7) == 0)
        return uri + 7;
    if (strstr(uri, "://") == NULL && strchr(uri, ':') == NULL)
        return uri;
    return NULL;
}

/*
 * Makes <artifacts>/<vname> hold the model's artifact, fetched once per
 * version, then calls artifact_ready() for the replica.
 */
static void artifact_get(up_replica *r, up_model *m, const char *spec_json)
{
    up *u = r->u;
    up_fetch *f;
    up_waiter *w;
    ag_spec spec;
    char *src = NULL, *argv[8], why[1024];
    const char *lp;
    size_t n = strlen(m->vname), len;
    int rc, argc = 0;

    f = NULL;
    for (up_fetch *g = u->fetches; g != NULL; g = g->next)
        if (strcmp(g->vname, m->vname) == 0)
            f = g;
    w = sdd_calloc(1, sizeof(*w));
    if (w == NULL || (w->model = sdd_strndup(m->model, strlen(m->model))) == NULL) {
        sdd_free(w);
        artifact_ready(r, m->model, m->version, "out of memory");
        return;
    }
    w->r = r;
    w->version = m->version;
    if (f != NULL) { /* being fetched for another replica: wait for it */
        w->next = f->waiters;
        f->waiters = w;
        return;
    }
    f = sdd_calloc(1, sizeof(*f) + n + 1);
    if (f == NULL) {
        sdd_free(w->model);
        sdd_free(w);
        artifact_ready(r, m->model, m->version, "out of memory");
        return;
    }
    memcpy(f->vname, m->vname, n + 1);
    f->u = u;
    f->waiters = w;
    f->next = u->fetches;
    u->fetches = f;
    len = strlen(u->artifacts_dir) + n + 64;
    f->dest = sdd_malloc(len);
    f->tmp = sdd_malloc(len);
    if (f->dest == NULL || f->tmp == NULL) {
        fetch_done(f, "out of memory");
        fetch_free(f);
        return;
    }
    snprintf(f->dest, len, "%s/%s", u->artifacts_dir, m->vname);
    snprintf(f->tmp, len, "%s/.fetch-%s-%d", u->artifacts_dir, m->vname, (int)getpid());
    if (is_dir(f->dest)) { /* fetched before (this run or an earlier one) */
        fetch_done(f, NULL);
        fetch_free(f);
        return;
    }
    memset(&spec, 0, sizeof(spec));
    rc = ag_spec_parse(&spec, spec_json ? spec_json : "", spec_json ? strlen(spec_json) : 0);
    if (rc == 0 && (spec.storage_uri == NULL || *spec.storage_uri == '\0'))
        rc = sdd_error(SELDON_EINVAL, "spec.storageUri: required");
    if (rc != 0) {
        snprintf(why, sizeof(why), "%s", seldon_last_error());
        ag_spec_clear(&spec);
        fetch_done(f, why);
        fetch_free(f);
        return;
    }
    len = strlen(spec.storage_uri) + 32;
    src = sdd_malloc(len);
    f->what = sdd_strndup(spec.storage_uri, strlen(spec.storage_uri));
    if (src == NULL || f->what == NULL) {
        sdd_free(src);
        ag_spec_clear(&spec);
        fetch_done(f, "out of memory");
        fetch_free(f);
        return;
    }
    lp = local_path(spec.storage_uri);
    if (spec.artifact_version >= 0)
        snprintf(src, len, "%s/%lld", lp ? lp : spec.storage_uri, (long long)spec.artifact_version);
    else
        snprintf(src, len, "%s", lp ? lp : spec.storage_uri);
    if (lp != NULL) {
        if (!is_dir(src)) {
            snprintf(why, sizeof(why), "storageUri %s: %s is not a folder%s", spec.storage_uri, src,
                     spec.artifact_version >= 0 ? " (artifactVersion)" : "");
            sdd_free(src);
            ag_spec_clear(&spec);
            fetch_done(f, why);
            fetch_free(f);
            return;
        }
        /* "src/." copies the folder's content into tmp, which cp creates. */
        if (strlen(src) + 3 <= len)
            strcat(src, "/.");
        argv[argc++] = "cp";
        argv[argc++] = "-R";
        argv[argc++] = "--";
        argv[argc++] = src;
        argv[argc++] = f->tmp;
    } else {
        argv[argc++] = (char *)u->cfg.rclone;
        argv[argc++] = "copy";
        if (u->cfg.rclone_config != NULL) {
            argv[argc++] = "--config";
            argv[argc++] = (char *)u->cfg.rclone_config;
        }
        argv[argc++] = src;
        argv[argc++] = f->tmp;
    }
    argv[argc] = NULL;
    sdd_log(SELDON_LOG_INFO, "fetching %s for %s: %s %s", spec.storage_uri, m->vname, argv[0], src);
    fetch_spawn(f, argv); /* the outcome arrives in fetch_closed() */
    sdd_free(src);
    ag_spec_clear(&spec);
}

/* ---------------------------------------------------------------- commands */

typedef struct up_cmd {
    up *u;
    seldon_sched_op op;
    uint64_t id;
    uint32_t index;
    uint32_t version;
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
    up_model *m;
    if (u->stopping || r == NULL) {
        if (!u->stopping)
            sdd_log(SELDON_LOG_WARN, "command %llu for %s/%u: no such embedded replica",
                    (unsigned long long)c->id, c->server, c->index);
        cmd_free(c);
        return;
    }
    m = model_find(r, c->model, c->version);
    if (c->op == SELDON_SCHED_LOAD) {
        if (m != NULL && m->state == UP_LOADED) {
            report(r, c->id, c->model, c->version, SELDON_SCHED_LOADED, NULL);
        } else if (m != NULL) { /* on its way: the newest command gets the answer */
            m->command = c->id;
            m->unload_after = 0;
        } else if ((m = model_add(r, c->model, c->version)) == NULL) {
            report(r, c->id, c->model, c->version, SELDON_SCHED_LOAD_FAILED, "out of memory");
        } else {
            m->command = c->id;
            artifact_get(r, m, c->spec);
        }
    } else {
        if (m == NULL) {
            report(r, c->id, c->model, c->version, SELDON_SCHED_UNLOADED, NULL);
        } else if (m->state == UP_LOADED) {
            unload_model(r, m, c->id);
        } else {
            m->command = c->id;
            if (m->state == UP_LOADING)
                m->unload_after = 1;
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
    for (i = 0; i < u->nreplicas; i++) {
        up_replica *r = &u->replicas[i];
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
        else
            sdd_log(SELDON_LOG_INFO, "replica %s/%u registered (%lld bytes, overcommit %u%%)",
                    u->cfg.server_name, r->index, (long long)u->cfg.server_memory,
                    u->cfg.overcommit);
    }
    sc_pump(&u->sched);
}

void up_control_stop(void *arg)
{
    up *u = arg;
    up_fetch *f;
    u->stopping = 1;
    for (f = u->fetches; f != NULL; f = f->next)
        if (f->closing == 2 && !f->spawn_failed && !uv_is_closing((uv_handle_t *)&f->proc))
            uv_process_kill(&f->proc, SIGTERM);
    sc_services_stop(&u->sched);
}
