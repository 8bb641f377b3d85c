/*
 * Fetching a model's artifact on a loop (see fetch.h): cp or rclone copy as child
 * processes, the artifact cache, model-settings.json renaming. Moved here from
 * models.c so that seldon-up's agent stage uses the same code.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cache.h"
#include "fetch.h"
#include "sdd.h"

/* ------------------------------------------------------------ files */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

void ag_rm_tree(const char *path)
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
int ag_rename_all_settings(const char *dir, const char *vname, char *why, size_t cap)
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

typedef struct child {
    uv_process_t proc;
    uv_pipe_t err;
    ag_child_cb cb;
    void *arg;
    uv_process_t **track; /* holds the running child, for a kill; cleared when it exits */
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
        c->cb(c->arg, 1, NULL);
    } else {
        if (c->term != 0)
            snprintf(msg, sizeof(msg), "%s was killed by signal %d: %s", c->what, c->term,
                     c->buf + start);
        else
            snprintf(msg, sizeof(msg), "%s failed (exit %lld): %s", c->what, (long long)c->status,
                     c->len ? c->buf + start : "(no message)");
        c->cb(c->arg, 0, msg);
    }
    sdd_free(c);
}

static void child_exit(uv_process_t *p, int64_t status, int term)
{
    child *c = p->data;
    if (c->track != NULL && *c->track == p)
        *c->track = NULL;
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

int ag_child_run(uv_loop_t *loop, char **argv, const char *what, uv_process_t **track,
                 ag_child_cb cb, void *arg)
{
    uv_process_options_t o;
    uv_stdio_container_t io[3];
    child *c = sdd_calloc(1, sizeof(*c));
    int rc;
    if (c == NULL)
        return sdd_error(SELDON_ENOMEM, "out of memory");
    c->arg = arg;
    c->cb = cb;
    c->track = track;
    snprintf(c->what, sizeof(c->what), "%s", what);
    uv_pipe_init(loop, &c->err, 0);
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
    rc = uv_spawn(loop, &c->proc, &o);
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
    if (track != NULL)
        *track = &c->proc;
    uv_read_start((uv_stream_t *)&c->err, err_alloc, err_read);
    sdd_log(SELDON_LOG_DEBUG, "running %s", what);
    return 0;
}

/* ------------------------------------------------------------ fetching */

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

/* One fetch: the source, where it goes, whom to tell. */
typedef struct fetch_job {
    ag_fetch_cb cb;
    void *arg;
    char src[4096]; /* what to fetch */
    char art[4096]; /* the artifact folder */
    char tmp[4096];
} fetch_job;

static void fetched(void *arg, int ok, const char *err)
{
    fetch_job *f = arg;
    char why[4400];
    if (!ok) {
        ag_rm_tree(f->tmp);
        snprintf(why, sizeof(why), "storageUri %.300s: %s", f->src, err);
        f->cb(f->arg, NULL, why);
    } else if (rename(f->tmp, f->art) != 0) {
        snprintf(why, sizeof(why), "%.500s: %s", f->art, strerror(errno));
        ag_rm_tree(f->tmp);
        f->cb(f->arg, NULL, why);
    } else {
        sdd_log(SELDON_LOG_INFO, "artifact %s: fetched into %s", f->src, f->art);
        f->cb(f->arg, f->art, NULL);
    }
    sdd_free(f);
}

void ag_fetch(const ag_fetch_opts *o, const char *storage_uri, int64_t artifact_version,
              uv_process_t **track, ag_fetch_cb cb, void *arg)
{
    struct stat st;
    char *argv[8], rsrc[4200], why[4400];
    int n = 0;
    const char *uri = storage_uri;
    size_t ul = strlen(uri);
    fetch_job *f = sdd_calloc(1, sizeof(*f));
    if (f == NULL) {
        cb(arg, NULL, "out of memory");
        return;
    }
    f->cb = cb;
    f->arg = arg;
    while (ul > 1 && uri[ul - 1] == '/')
        ul--;
    if (artifact_version >= 0)
        snprintf(f->src, sizeof(f->src), "%.*s/%lld", (int)ul, uri, (long long)artifact_version);
    else
        snprintf(f->src, sizeof(f->src), "%.*s", (int)ul, uri);
    snprintf(f->art, sizeof(f->art), "%s/%016llx", o->artifacts_dir,
             (unsigned long long)fnv64(f->src));
    if (snprintf(f->tmp, sizeof(f->tmp), "%s.part", f->art) >= (int)sizeof(f->tmp))
        f->tmp[0] = '\0';
    if (stat(f->art, &st) == 0) {
        sdd_log(SELDON_LOG_INFO, "artifact %s: already fetched in %s", f->src, f->art);
        cb(arg, f->art, NULL);
        sdd_free(f);
        return;
    }
    ag_rm_tree(f->tmp);
    if (mkdir(f->tmp, 0755) != 0) {
        snprintf(why, sizeof(why), "%s: %s", f->tmp, strerror(errno));
        cb(arg, NULL, why);
        sdd_free(f);
        return;
    }
    if (is_local(f->src)) {
        const char *path = strncmp(f->src, "file://", 7) == 0 ? f->src + 7 : f->src;
        if (stat(path, &st) != 0) {
            snprintf(why, sizeof(why), "storageUri %s: %s%s", f->src, strerror(errno),
                     artifact_version >= 0 ? " (the artifactVersion folder)" : "");
            ag_rm_tree(f->tmp);
            cb(arg, NULL, why);
            sdd_free(f);
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
        argv[n++] = f->tmp;
        argv[n] = NULL;
        ag_child_run(o->loop, argv, "cp", track, fetched, f);
        return;
    }
    rclone_source(rsrc, sizeof(rsrc), f->src, o->rclone_config);
    argv[n++] = (char *)o->rclone;
    argv[n++] = "copy";
    if (o->rclone_config != NULL) {
        argv[n++] = "--config";
        argv[n++] = (char *)o->rclone_config;
    }
    argv[n++] = rsrc;
    argv[n++] = f->tmp;
    argv[n] = NULL;
    sdd_log(SELDON_LOG_INFO, "artifact %s: rclone copy %s", f->src, rsrc);
    ag_child_run(o->loop, argv, "rclone copy", track, fetched, f);
}
