/*
 * model-settings.json, as MLServer writes it:
 *
 *   {"name": "iris", "implementation": "xgboost",
 *    "parameters": {"uri": "./model.json", "version": "1", "extra": {...}},
 *    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
 *    "outputs": [...], "max_batch_size": 32, "max_batch_time": 0.05}
 *
 * max_batch_time is in seconds. Unknown keys are ignored, as MLServer does.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "repo.h"

#define SETTINGS_FILE "model-settings.json"
#define SETTINGS_MAX_BYTES (16u << 20)

static int read_file(sdn_arena *a, const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    long size;
    char *buf;
    if (f == NULL)
        return sdn_error(errno == ENOENT ? SELDON_ENOTFOUND : SELDON_EIO, "%s: %s", path,
                         strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return sdn_error(SELDON_EIO, "%s: cannot read", path);
    }
    if ((unsigned long)size > SETTINGS_MAX_BYTES) {
        fclose(f);
        return sdn_error(SELDON_ETOOBIG, "%s: %ld bytes, at most %u", path, size,
                         SETTINGS_MAX_BYTES);
    }
    buf = sdn_arena_alloc(a, (size_t)size + 1);
    if (buf == NULL) {
        fclose(f);
        return sdn_error(SELDON_ENOMEM, "%s: out of memory", path);
    }
    if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
        fclose(f);
        return sdn_error(SELDON_EIO, "%s: short read", path);
    }
    fclose(f);
    buf[size] = '\0';
    *out = buf;
    *len = (size_t)size;
    return 0;
}

int sdn_tmetas_add(sdn_tmetas *ms, sdn_arena *a, const char *name, int32_t datatype,
                   const int64_t *shape, uint32_t ndim)
{
    sdn_tmeta *m;
    uint32_t i;
    size_t len = strlen(name);
    for (i = 0; i < ms->n; i++)
        if (ms->items[i].name.len == len && memcmp(ms->items[i].name.p, name, len) == 0)
            return 0;
    if (ndim > SDN_MAX_NDIM)
        return sdn_error(SELDON_ETOOBIG, "%s: %u dimensions, at most %d", name, ndim,
                         SDN_MAX_NDIM);
    if (!sdn_dt_valid(datatype))
        return sdn_error(SELDON_EDATATYPE, "%s: unknown datatype %d", name, datatype);
    for (i = 0; i < ndim; i++)
        if (shape[i] < -1)
            return sdn_error(SELDON_ESHAPE, "%s: shape[%u] is %lld; use -1 for any size", name,
                             i, (long long)shape[i]);
    if (ms->n == ms->cap) {
        uint32_t cap = ms->cap ? ms->cap * 2 : 4;
        void *p = sdn_arena_grow(a, ms->items, ms->cap * sizeof(sdn_tmeta), cap * sizeof(sdn_tmeta));
        if (p == NULL)
            return sdn_error(SELDON_ENOMEM, "metadata: out of memory");
        ms->items = p;
        ms->cap = cap;
    }
    m = &ms->items[ms->n];
    m->name.p = sdn_arena_strndup(a, name, len);
    m->name.len = len;
    m->datatype = datatype;
    m->ndim = ndim;
    m->shape = ndim ? sdn_arena_alloc(a, ndim * sizeof(int64_t)) : NULL;
    if (m->name.p == NULL || (ndim && m->shape == NULL))
        return sdn_error(SELDON_ENOMEM, "metadata: out of memory");
    if (ndim)
        memcpy(m->shape, shape, ndim * sizeof(int64_t));
    ms->n++;
    return 0;
}

static int opt_string(const char **out, const sdn_jv *obj, const char *key, const char *file,
                      const char *path)
{
    const sdn_jv *v = sdn_jv_get(obj, key);
    if (v == NULL || v->type == SDN_JV_NULL)
        return 0;
    if (v->type != SDN_JV_STRING)
        return sdn_error(SELDON_EPARSE, "%s: %s%s: expected a string", file, path, key);
    *out = v->s.p;
    return 0;
}

static int tensors_from(sdn_tmetas *ms, sdn_arena *a, const sdn_jv *arr, const char *file,
                        const char *what)
{
    size_t i, k;
    if (arr == NULL || arr->type == SDN_JV_NULL)
        return 0;
    if (arr->type != SDN_JV_ARRAY)
        return sdn_error(SELDON_EPARSE, "%s: %s: expected an array", file, what);
    for (i = 0; i < arr->n; i++) {
        const sdn_jv *t = &arr->items[i], *name, *dt, *shape;
        int64_t dims[SDN_MAX_NDIM];
        int32_t datatype;
        int rc;
        if (t->type != SDN_JV_OBJECT)
            return sdn_error(SELDON_EPARSE, "%s: %s[%zu]: expected an object", file, what, i);
        name = sdn_jv_get(t, "name");
        dt = sdn_jv_get(t, "datatype");
        shape = sdn_jv_get(t, "shape");
        if (name == NULL || name->type != SDN_JV_STRING)
            return sdn_error(SELDON_EPARSE, "%s: %s[%zu].name: expected a string", file, what,
                             i);
        if (dt == NULL || dt->type != SDN_JV_STRING)
            return sdn_error(SELDON_EPARSE, "%s: %s[%zu].datatype: expected a string", file,
                             what, i);
        datatype = seldon_datatype_from_name(dt->s.p, dt->s.len);
        if (datatype == SELDON_DT_INVALID)
            return sdn_error(SELDON_EDATATYPE, "%s: %s[%zu].datatype: unknown datatype \"%.32s\"",
                             file, what, i, dt->s.p);
        if (shape == NULL || shape->type != SDN_JV_ARRAY)
            return sdn_error(SELDON_EPARSE, "%s: %s[%zu].shape: expected an array", file, what,
                             i);
        if (shape->n > SDN_MAX_NDIM)
            return sdn_error(SELDON_ETOOBIG, "%s: %s[%zu].shape: more than %d dimensions", file,
                             what, i, SDN_MAX_NDIM);
        for (k = 0; k < shape->n; k++) {
            const sdn_jv *d = &shape->items[k];
            if (d->type != SDN_JV_NUMBER || !d->is_int || d->i < -1)
                return sdn_error(SELDON_EPARSE,
                                 "%s: %s[%zu].shape[%zu]: expected an integer >= -1", file, what,
                                 i, k);
            dims[k] = d->i;
        }
        rc = sdn_tmetas_add(ms, a, name->s.p, datatype, dims, (uint32_t)shape->n);
        if (rc < 0)
            return sdn_error_prefix(rc, "%s: %s[%zu]", file, what, i);
    }
    return 0;
}

/* Whether path is root or lies below it (both without a trailing '/'). */
static int path_under(const char *path, const char *root)
{
    size_t n = strlen(root);
    while (n > 1 && root[n - 1] == '/')
        n--;
    return strncmp(path, root, n) == 0 && (path[n] == '\0' || path[n] == '/' || n == 1);
}

/* Whether a path has a ".." component. */
static int has_dotdot(const char *p)
{
    while (*p) {
        size_t n = strcspn(p, "/");
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return 1;
        p += n;
        while (*p == '/')
            p++;
    }
    return 0;
}

/*
 * uri: absent -> the model's folder; relative -> against it; "file://"
 * dropped. It must stay inside the model's folder: whoever writes
 * model-settings.json must not point a runtime at any file the server can
 * read. A path that exists is checked after resolving symlinks (realpath,
 * then prefix); one that does not is checked as written.
 */
static int resolve_uri(const char **out, sdn_arena *a, const char *dir, const char *uri,
                       const char *file)
{
    char joined[PATH_MAX], real[PATH_MAX], realdir[PATH_MAX];
    const char *given = uri;
    int n;
    if (uri == NULL || uri[0] == '\0') {
        *out = dir;
        return 0;
    }
    if (strncmp(uri, "file://", 7) == 0)
        uri += 7;
    if (uri[0] == '/')
        n = snprintf(joined, sizeof(joined), "%s", uri);
    else
        n = snprintf(joined, sizeof(joined), "%s/%s", dir,
                     uri[0] == '.' && uri[1] == '/' ? uri + 2 : uri);
    if (n < 0 || (size_t)n >= sizeof(joined))
        return sdn_error(SELDON_ETOOBIG, "%s: parameters.uri: path too long", file);
    if (has_dotdot(uri))
        return sdn_error(SELDON_EINVAL,
                         "%s: parameters.uri '%.200s': '..' is refused; the uri must stay "
                         "inside the model folder",
                         file, given);
    if (realpath(dir, realdir) == NULL)
        snprintf(realdir, sizeof(realdir), "%s", dir);
    if (realpath(joined, real) != NULL) {
        if (!path_under(real, realdir))
            return sdn_error(SELDON_EINVAL,
                             "%s: parameters.uri '%.200s' resolves to %.200s, outside the model "
                             "folder %.200s",
                             file, given, real, realdir);
        *out = sdn_arena_strndup(a, real, strlen(real));
    } else {
        if (uri[0] == '/' && !path_under(joined, dir) && !path_under(joined, realdir))
            return sdn_error(SELDON_EINVAL,
                             "%s: parameters.uri '%.200s' is outside the model folder %.200s",
                             file, given, dir);
        *out = sdn_arena_strndup(a, joined, strlen(joined));
    }
    return *out == NULL ? sdn_error(SELDON_ENOMEM, "%s: out of memory", file) : 0;
}

int sdn_settings_load(sdn_settings *s, sdn_arena *a, const char *dir, const char *default_name,
                      const char *default_version)
{
    char path[PATH_MAX];
    char *text = NULL;
    size_t len = 0;
    int rc;

    memset(s, 0, sizeof(*s));
    if (snprintf(path, sizeof(path), "%s/%s", dir, SETTINGS_FILE) >= (int)sizeof(path))
        return sdn_error(SELDON_ETOOBIG, "%s: path too long", dir);
    rc = read_file(a, path, &text, &len);
    if (rc < 0)
        return rc;
    return sdn_settings_parse(s, a, dir, default_name, default_version, text, len, path);
}

int sdn_settings_parse(sdn_settings *s, sdn_arena *a, const char *dir, const char *default_name,
                       const char *default_version, const char *text, size_t len,
                       const char *path)
{
    sdn_jv *doc = NULL;
    const sdn_jv *params, *v;
    const char *uri = NULL;
    int rc;

    memset(s, 0, sizeof(*s));
    rc = sdn_json_parse(&doc, a, text, len, path);
    if (rc < 0)
        return rc;
    if (doc->type != SDN_JV_OBJECT)
        return sdn_error(SELDON_EPARSE, "%s: expected an object", path);

    s->dir = sdn_arena_strndup(a, dir, strlen(dir));
    s->name = default_name ? sdn_arena_strndup(a, default_name, strlen(default_name)) : NULL;
    s->version = sdn_arena_strndup(a, default_version ? default_version : "",
                                   default_version ? strlen(default_version) : 0);
    s->implementation = "";
    s->platform = "";
    s->extra_json = "{}";
    if ((rc = opt_string(&s->name, doc, "name", path, "")) < 0 ||
        (rc = opt_string(&s->implementation, doc, "implementation", path, "")) < 0 ||
        (rc = opt_string(&s->platform, doc, "platform", path, "")) < 0)
        return rc;
    params = sdn_jv_get(doc, "parameters");
    if (params != NULL && params->type != SDN_JV_NULL) {
        if (params->type != SDN_JV_OBJECT)
            return sdn_error(SELDON_EPARSE, "%s: parameters: expected an object", path);
        if ((rc = opt_string(&uri, params, "uri", path, "parameters.")) < 0 ||
            (rc = opt_string(&s->version, params, "version", path, "parameters.")) < 0)
            return rc;
        v = sdn_jv_get(params, "extra");
        if (v != NULL && v->type != SDN_JV_NULL) {
            if (v->type != SDN_JV_OBJECT)
                return sdn_error(SELDON_EPARSE, "%s: parameters.extra: expected an object", path);
            s->extra = v;
            s->extra_json = sdn_arena_strndup(a, v->raw, v->raw_len);
        }
    }
    if (s->name == NULL || s->name[0] == '\0')
        return sdn_error(SELDON_EPARSE, "%s: name: missing", path);
    if (s->implementation[0] == '\0')
        return sdn_error(SELDON_EPARSE, "%s: implementation: missing", path);
    if (s->dir == NULL || s->extra_json == NULL)
        return sdn_error(SELDON_ENOMEM, "%s: out of memory", path);
    rc = resolve_uri(&s->uri, a, s->dir, uri, path);
    if (rc < 0)
        return rc;

    v = sdn_jv_get(doc, "max_batch_size");
    if (v != NULL && v->type != SDN_JV_NULL) {
        if (v->type != SDN_JV_NUMBER || !v->is_int || v->i < 0 || v->i > 1000000)
            return sdn_error(SELDON_EPARSE, "%s: max_batch_size: expected an integer in [0, 1e6]",
                             path);
        s->max_batch_size = (uint32_t)v->i;
    }
    v = sdn_jv_get(doc, "max_batch_time");
    if (v != NULL && v->type != SDN_JV_NULL) {
        if (v->type != SDN_JV_NUMBER || !(v->d >= 0) || v->d > 3600)
            return sdn_error(SELDON_EPARSE,
                             "%s: max_batch_time: expected seconds, a number in [0, 3600]", path);
        s->max_batch_time_ns = (int64_t)(v->d * 1e9);
    }
    if (s->max_batch_size == 0)
        s->max_batch_size = 1;
    rc = tensors_from(&s->inputs, a, sdn_jv_get(doc, "inputs"), path, "inputs");
    if (rc == 0)
        rc = tensors_from(&s->outputs, a, sdn_jv_get(doc, "outputs"), path, "outputs");
    return rc;
}
