/*
 * The model registry: which models the repository folder holds, which
 * instance serves each, and their loading and unloading.
 *
 * Locking: `lock` (a read-write lock) guards the entry table and each
 * entry's serving pointer and state; requests take it for reading only, for
 * a lookup and a reference count increment. `load_lock` serializes loads
 * and unloads, which run runtimes' load functions without holding `lock`.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

#include "repo.h"
#include "runtime/builtin.h"

#define REPO_MAX_RUNTIMES 64

struct sdn_entry {
    char *name;
    char *dir;     /* where model-settings.json was found; NULL until known */
    char *version; /* of the serving instance */
    char *reason;  /* why the last load failed, or "" */
    int32_t state;
    seldon_model *current; /* the serving instance; the entry holds one reference */
    uint64_t hash;
    sdn_entry *next; /* hash chain */
};

typedef struct repo_runtime {
    const char *name;
    const seldon_runtime *rt;
} repo_runtime;

struct seldon_repo {
    char *root;
    char *runtime_path;
    char *server_name;
    pthread_rwlock_t lock;
    pthread_mutex_t load_lock;
    sdn_entry **buckets;
    size_t nbuckets;
    size_t nentries;
    repo_runtime runtimes[REPO_MAX_RUNTIMES];
    size_t nruntimes;
};

/* Implementations served by plugins shipped with libseldon, by their usual names. */
static const struct {
    const char *name;
    const char *file;
} plugin_aliases[] = {
    {"xgboost", "libseldon-runtime-xgboost.so"},
    {"mlserver_xgboost.XGBoostModel", "libseldon-runtime-xgboost.so"},
    {"sklearn", "libseldon-runtime-python.so"},
    {"mlserver_sklearn.SKLearnModel", "libseldon-runtime-python.so"},
    {"pytorch", "libseldon-runtime-pytorch.so"},
    {"pytorch_libtorch", "libseldon-runtime-pytorch.so"},
};

/* Python's "module.ClassName" (MLServer custom models): identifiers joined by dots. */
static int python_class_name(const char *impl)
{
    const char *p = impl;
    int dots = 0, start = 1;
    if (strncmp(impl, "builtin.", 8) == 0)
        return 0;
    for (; *p; p++) {
        char c = *p;
        if (c == '.') {
            if (start)
                return 0;
            dots++;
            start = 1;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                   (!start && c >= '0' && c <= '9')) {
            start = 0;
        } else {
            return 0;
        }
    }
    return dots > 0 && !start;
}

static char *dup_str(const char *s)
{
    return s ? sdn_strndup(s, strlen(s)) : NULL;
}

static uint64_t name_hash(const char *name, size_t len)
{
    return XXH3_64bits(name, len);
}

/* Names become folder names: keep them to a safe alphabet so no request walks the filesystem. */
static int name_ok(const char *name, size_t len)
{
    size_t i;
    if (len == 0 || len > 253 || name[0] == '.')
        return 0;
    for (i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return 0;
    }
    return 1;
}

static sdn_entry *find_entry(const seldon_repo *r, const char *name, size_t len)
{
    uint64_t h = name_hash(name, len);
    sdn_entry *e;
    for (e = r->buckets[h & (r->nbuckets - 1)]; e != NULL; e = e->next)
        if (e->hash == h && strlen(e->name) == len && memcmp(e->name, name, len) == 0)
            return e;
    return NULL;
}

static int grow_buckets(seldon_repo *r)
{
    size_t n = r->nbuckets * 2, i;
    sdn_entry **b = sdn_calloc(n, sizeof(*b));
    if (b == NULL)
        return SELDON_ENOMEM;
    for (i = 0; i < r->nbuckets; i++) {
        sdn_entry *e = r->buckets[i], *next;
        for (; e != NULL; e = next) {
            next = e->next;
            e->next = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
        }
    }
    sdn_free(r->buckets);
    r->buckets = b;
    r->nbuckets = n;
    return 0;
}

/* Caller holds lock for writing. */
static sdn_entry *add_entry(seldon_repo *r, const char *name)
{
    sdn_entry *e = sdn_calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    e->name = dup_str(name);
    e->reason = dup_str("");
    if (e->name == NULL || e->reason == NULL) {
        sdn_free(e->name);
        sdn_free(e->reason);
        sdn_free(e);
        return NULL;
    }
    e->hash = name_hash(name, strlen(name));
    e->state = SELDON_MODEL_UNAVAILABLE;
    if (r->nentries + 1 > r->nbuckets && grow_buckets(r) < 0) {
        sdn_free(e->name);
        sdn_free(e->reason);
        sdn_free(e);
        return NULL;
    }
    e->next = r->buckets[e->hash & (r->nbuckets - 1)];
    r->buckets[e->hash & (r->nbuckets - 1)] = e;
    r->nentries++;
    return e;
}

static void set_str(char **dst, const char *s)
{
    char *n = dup_str(s ? s : "");
    if (n == NULL)
        return; /* keep the old text rather than lose the entry */
    sdn_free(*dst);
    *dst = n;
}

int seldon_repo_add_runtime(seldon_repo *repo, const seldon_runtime *runtime, const char *alias)
{
    size_t k;
    if (repo == NULL || runtime == NULL || runtime->name == NULL || runtime->execute == NULL ||
        runtime->load == NULL)
        return sdn_error(SELDON_EINVAL, "add_runtime: a name, load and execute are required");
    if (runtime->abi_major != SELDON_RUNTIME_ABI_MAJOR)
        return sdn_error(SELDON_EVERSION, "runtime %s: built for runtime ABI %u, this is %d",
                         runtime->name, runtime->abi_major, SELDON_RUNTIME_ABI_MAJOR);
    for (k = 0; k < 2; k++) {
        const char *name = k == 0 ? runtime->name : alias;
        if (name == NULL)
            continue;
        if (repo->nruntimes == REPO_MAX_RUNTIMES)
            return sdn_error(SELDON_ETOOBIG, "add_runtime: more than %d runtimes",
                             REPO_MAX_RUNTIMES);
        repo->runtimes[repo->nruntimes].name = name;
        repo->runtimes[repo->nruntimes].rt = runtime;
        repo->nruntimes++;
    }
    return 0;
}

int seldon_repo_new(seldon_repo **out, const seldon_repo_options *opts)
{
    seldon_repo *r;
    const seldon_runtime *const builtins[] = {&sdn_rt_identity, &sdn_rt_simple, &sdn_rt_add,
                                              &sdn_rt_mul, &sdn_rt_conditional};
    size_t i;
    if (out == NULL || opts == NULL || opts->root == NULL)
        return sdn_error(SELDON_EINVAL, "repo_new: a root folder is required");
    *out = NULL;
    if (opts->version != SELDON_REPO_OPTIONS_VERSION)
        return sdn_error(SELDON_EVERSION, "repo_new: options version %u", opts->version);
    r = sdn_calloc(1, sizeof(*r));
    if (r == NULL)
        return sdn_error(SELDON_ENOMEM, "repo_new: out of memory");
    r->nbuckets = 64;
    r->buckets = sdn_calloc(r->nbuckets, sizeof(*r->buckets));
    r->root = dup_str(opts->root);
    r->runtime_path = dup_str(opts->runtime_path ? opts->runtime_path : "");
    r->server_name = dup_str(opts->server_name ? opts->server_name : "seldon");
    if (r->buckets == NULL || r->root == NULL || r->runtime_path == NULL ||
        r->server_name == NULL) {
        sdn_free(r->buckets);
        sdn_free(r->root);
        sdn_free(r->runtime_path);
        sdn_free(r->server_name);
        sdn_free(r);
        return sdn_error(SELDON_ENOMEM, "repo_new: out of memory");
    }
    pthread_rwlock_init(&r->lock, NULL);
    pthread_mutex_init(&r->load_lock, NULL);
    for (i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++)
        seldon_repo_add_runtime(r, builtins[i], NULL);
    *out = r;
    return 0;
}

void seldon_repo_free(seldon_repo *repo)
{
    size_t i;
    if (repo == NULL)
        return;
    for (i = 0; i < repo->nbuckets; i++) {
        sdn_entry *e = repo->buckets[i], *next;
        for (; e != NULL; e = next) {
            next = e->next;
            if (e->current != NULL)
                sdn_model_unref(e->current);
            sdn_free(e->name);
            sdn_free(e->dir);
            sdn_free(e->version);
            sdn_free(e->reason);
            sdn_free(e);
        }
    }
    sdn_free(repo->buckets);
    pthread_rwlock_destroy(&repo->lock);
    pthread_mutex_destroy(&repo->load_lock);
    sdn_free(repo->root);
    sdn_free(repo->runtime_path);
    sdn_free(repo->server_name);
    sdn_free(repo);
}

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Orders version folder names: numbers numerically, and after any non-number. */
static int version_cmp(const char *a, const char *b)
{
    char *ea, *eb;
    unsigned long long na = strtoull(a, &ea, 10), nb = strtoull(b, &eb, 10);
    int a_num = *a && *ea == '\0', b_num = *b && *eb == '\0';
    if (a_num && b_num)
        return na < nb ? -1 : na > nb;
    if (a_num != b_num)
        return a_num - b_num;
    return strcmp(a, b);
}

/*
 * Where a model folder keeps its settings: the folder itself, or its latest
 * version sub-folder. Writes the settings folder into out and the version
 * folder's name (or "") into version.
 */
static int settings_dir(const char *model_dir, char *out, size_t size, char *version, size_t vsize)
{
    char path[PATH_MAX];
    DIR *d;
    struct dirent *de;
    int found = 0;

    version[0] = '\0';
    snprintf(path, sizeof(path), "%s/model-settings.json", model_dir);
    if (is_file(path)) {
        snprintf(out, size, "%s", model_dir);
        return 1;
    }
    d = opendir(model_dir);
    if (d == NULL)
        return 0;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s/model-settings.json", model_dir, de->d_name);
        if (!is_file(path))
            continue;
        if (!found || version_cmp(de->d_name, version) > 0) {
            snprintf(version, vsize, "%s", de->d_name);
            found = 1;
        }
    }
    closedir(d);
    if (found)
        snprintf(out, size, "%s/%s", model_dir, version);
    return found;
}

/* The model name a settings folder declares (its "name"), else the folder's own name. */
static int declared_name(const char *dir, const char *folder, char *out, size_t size)
{
    sdn_arena a;
    sdn_settings s;
    int rc;
    sdn_arena_init(&a, NULL, 0);
    rc = sdn_settings_load(&s, &a, dir, folder, NULL);
    if (rc == 0)
        snprintf(out, size, "%s", s.name);
    else
        snprintf(out, size, "%s", folder);
    sdn_arena_release(&a);
    return 0;
}

/* Records that name lives in dir, creating its entry. Caller holds load_lock. */
static int note_model(seldon_repo *r, const char *name, const char *dir)
{
    sdn_entry *e;
    int rc = 0;
    if (!name_ok(name, strlen(name)))
        return 0;
    pthread_rwlock_wrlock(&r->lock);
    e = find_entry(r, name, strlen(name));
    if (e == NULL)
        e = add_entry(r, name);
    if (e == NULL)
        rc = sdn_error(SELDON_ENOMEM, "scan: out of memory");
    else
        set_str(&e->dir, dir);
    pthread_rwlock_unlock(&r->lock);
    return rc;
}

static int scan_locked(seldon_repo *r)
{
    DIR *d = opendir(r->root);
    struct dirent *de;
    int rc = 0;
    if (d == NULL)
        return sdn_error(SELDON_ENOTFOUND, "model repository %s: cannot open", r->root);
    while (rc == 0 && (de = readdir(d)) != NULL) {
        char model_dir[PATH_MAX], sdir[PATH_MAX], version[256], name[256];
        if (de->d_name[0] == '.')
            continue;
        snprintf(model_dir, sizeof(model_dir), "%s/%s", r->root, de->d_name);
        if (!is_dir(model_dir) || !settings_dir(model_dir, sdir, sizeof(sdir), version,
                                                sizeof(version)))
            continue;
        declared_name(sdir, de->d_name, name, sizeof(name));
        rc = note_model(r, name, model_dir);
        /* The folder's own name reaches the model too, as MLServer allows. */
        if (rc == 0 && strcmp(name, de->d_name) != 0)
            rc = note_model(r, de->d_name, model_dir);
    }
    closedir(d);
    return rc;
}

int seldon_repo_scan(seldon_repo *repo)
{
    int rc;
    if (repo == NULL)
        return sdn_error(SELDON_EINVAL, "repo_scan: NULL");
    pthread_mutex_lock(&repo->load_lock);
    rc = scan_locked(repo);
    pthread_mutex_unlock(&repo->load_lock);
    return rc;
}

/* --- Instances ----------------------------------------------------------- */

static void model_destroy(seldon_model *m)
{
    void *host = atomic_load(&m->host_data);
    if (host != NULL && m->host_free != NULL)
        m->host_free(host);
    if (m->loaded && m->runtime->unload != NULL)
        m->runtime->unload(m);
    if (m->dl != NULL)
        dlclose(m->dl);
    sdn_free(m->error);
    pthread_mutex_destroy(&m->exec_lock);
    sdn_arena_release(&m->arena);
    sdn_free(m);
}

void sdn_model_unref(seldon_model *m)
{
    if (m != NULL && atomic_fetch_sub(&m->refs, 1) == 1)
        model_destroy(m);
}

void seldon_model_release(seldon_model *model)
{
    sdn_model_unref(model);
}

void seldon_model_retain(seldon_model *model)
{
    if (model != NULL)
        atomic_fetch_add(&model->refs, 1);
}

void *seldon_model_host_data(seldon_model *model, void *data, void (*free_fn)(void *data))
{
    void *expected = NULL;
    if (model == NULL)
        return NULL;
    if (data == NULL)
        return atomic_load(&model->host_data);
    /* Every host passes the same free_fn; storing it before the pointer keeps destroy safe. */
    model->host_free = free_fn;
    if (atomic_compare_exchange_strong(&model->host_data, &expected, data))
        return data;
    return expected;
}

int32_t seldon_repo_model_state(seldon_repo *repo, const char *name, size_t name_len)
{
    const sdn_entry *e;
    int32_t state;
    if (repo == NULL || name == NULL)
        return -1;
    pthread_rwlock_rdlock(&repo->lock);
    e = find_entry(repo, name, name_len);
    state = e ? e->state : -1;
    pthread_rwlock_unlock(&repo->lock);
    return state;
}

/*
 * A plugin is named, never located: a plain file name (letters, digits, '_',
 * '-', '+', '.', not starting with '.', no "..") looked up in the runtime
 * path only. Whoever can write a model folder must not choose the code that
 * the server runs, so nothing is dlopen'ed from the model folder or by path.
 */
static int plugin_name_ok(const char *file)
{
    size_t i, n = strlen(file);
    if (n == 0 || n > 200 || file[0] == '.' || strstr(file, "..") != NULL)
        return 0;
    for (i = 0; i < n; i++) {
        char c = file[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '+' || c == '.'))
            return 0;
    }
    return 1;
}

/* Finds file in the runtime path: 1 and the full path in out, or 0. */
static int find_plugin(const seldon_repo *r, const char *file, char *out, size_t size)
{
    const char *p;
    for (p = r->runtime_path; *p;) {
        size_t n = strcspn(p, ":");
        if (n > 0 && (size_t)snprintf(out, size, "%.*s/%s", (int)n, p, file) < size &&
            is_file(out))
            return 1;
        p += n;
        if (*p == ':')
            p++;
    }
    return 0;
}

static int open_plugin(seldon_model *m, const char *file)
{
    char path[PATH_MAX];
    seldon_runtime_entry_fn entry;
    const seldon_runtime *rt;
    void *dl = NULL;

    if (!plugin_name_ok(file))
        return sdn_error(SELDON_EINVAL,
                         "implementation '%.200s': runtime plugins load by file name from the "
                         "runtime path only (no '/', no '..'); a path is refused",
                         file);
    if (!find_plugin(m->repo, file, path, sizeof(path)))
        return sdn_error(SELDON_ENOTFOUND,
                         "runtime %s: not found in the runtime path '%s' (see --runtime-path)",
                         file, m->repo->runtime_path);
    dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (dl == NULL) {
        const char *why = dlerror();
        return sdn_error(SELDON_ENOTFOUND, "runtime %s: cannot open %s (%s)", file, path,
                         why ? why : "unknown error");
    }
    *(void **)&entry = dlsym(dl, SELDON_RUNTIME_ENTRY_SYMBOL);
    rt = entry ? entry() : NULL;
    if (rt == NULL) {
        dlclose(dl);
        return sdn_error(SELDON_EINVAL, "runtime %s: no %s() returning a runtime table", path,
                         SELDON_RUNTIME_ENTRY_SYMBOL);
    }
    if (rt->abi_major != SELDON_RUNTIME_ABI_MAJOR || rt->load == NULL || rt->execute == NULL) {
        dlclose(dl);
        return sdn_error(SELDON_EVERSION,
                         "runtime %s: built for runtime ABI %u, this server speaks %d", path,
                         rt->abi_major, SELDON_RUNTIME_ABI_MAJOR);
    }
    m->dl = dl;
    m->runtime = rt;
    return 0;
}

static int resolve_runtime(seldon_model *m)
{
    const char *impl = m->settings.implementation;
    char file[256], path[PATH_MAX];
    size_t i, len = strlen(impl);
    seldon_repo *r = m->repo;

    for (i = 0; i < r->nruntimes; i++) {
        if (strcmp(r->runtimes[i].name, impl) == 0) {
            m->runtime = r->runtimes[i].rt;
            return 0;
        }
    }
    for (i = 0; i < sizeof(plugin_aliases) / sizeof(plugin_aliases[0]); i++)
        if (strcmp(plugin_aliases[i].name, impl) == 0)
            return open_plugin(m, plugin_aliases[i].file);
    if (strchr(impl, '/') != NULL || strstr(impl, "..") != NULL ||
        (len > 3 && strcmp(impl + len - 3, ".so") == 0))
        return open_plugin(m, impl);
    /* MLServer custom models name their class: the Python runtime imports it. */
    if (python_class_name(impl) &&
        find_plugin(r, "libseldon-runtime-python.so", path, sizeof(path)))
        return open_plugin(m, "libseldon-runtime-python.so");
    /* A plain name "x" stands for libseldon-runtime-x.so when the runtime path has one. */
    if (plugin_name_ok(impl) &&
        (size_t)snprintf(file, sizeof(file), "libseldon-runtime-%s.so", impl) < sizeof(file) &&
        find_plugin(r, file, path, sizeof(path)))
        return open_plugin(m, file);
    return sdn_error(SELDON_ENOTFOUND,
                     "implementation '%.128s' is not available: use a builtin (builtin.identity, "
                     "builtin.simple, builtin.add, builtin.mul, builtin.conditional), xgboost, "
                     "sklearn, pytorch, a Python module.ClassName, or a runtime plugin file "
                     "name (.so) found in the runtime path",
                     impl);
}

/* Builds and loads an instance from a settings folder. On failure *out is NULL. */
static int instance_load(seldon_model **out, seldon_repo *r, const char *sdir, const char *name,
                         const char *version)
{
    seldon_model *m = sdn_calloc(1, sizeof(*m));
    int rc;
    *out = NULL;
    if (m == NULL)
        return sdn_error(SELDON_ENOMEM, "model %s: out of memory", name);
    m->repo = r;
    atomic_init(&m->refs, 1);
    sdn_arena_init(&m->arena, NULL, 0);
    pthread_mutex_init(&m->exec_lock, NULL);
    rc = sdn_settings_load(&m->settings, &m->arena, sdir, name, version);
    if (rc == 0)
        rc = resolve_runtime(m);
    if (rc < 0)
        goto fail;
    /* The served name is what the repository API was asked to load (the agent renames folders). */
    m->settings.name = sdn_arena_strndup(&m->arena, name, strlen(name));
    rc = m->runtime->load(m);
    if (rc < 0) {
        const char *why = m->error ? m->error : seldon_strerror(rc);
        /* Name the runtime once: its own message may already start with its name. */
        if (strncmp(why, m->runtime->name, strlen(m->runtime->name)) == 0)
            sdn_error(rc, "model %s: %s", name, why);
        else
            sdn_error(rc, "model %s: %s: %s", name, m->runtime->name, why);
        goto fail;
    }
    m->loaded = 1;
    if (m->runtime->metadata != NULL) {
        rc = m->runtime->metadata(m);
        if (rc < 0) {
            sdn_error(rc, "model %s: %s metadata: %s", name, m->runtime->name,
                      m->error ? m->error : seldon_strerror(rc));
            goto fail;
        }
    }
    *out = m;
    return 0;
fail:
    model_destroy(m);
    return rc;
}

int seldon_repo_load(seldon_repo *repo, const char *name)
{
    char model_dir[PATH_MAX], sdir[PATH_MAX], version[256];
    seldon_model *m = NULL, *old = NULL;
    sdn_entry *e;
    int rc;
    size_t len;

    if (repo == NULL || name == NULL)
        return sdn_error(SELDON_EINVAL, "repo_load: NULL argument");
    len = strlen(name);
    if (!name_ok(name, len))
        return sdn_error(SELDON_EINVAL,
                         "model name '%.128s': use letters, digits, '_', '-' and '.' only", name);
    pthread_mutex_lock(&repo->load_lock);
    pthread_rwlock_rdlock(&repo->lock);
    e = find_entry(repo, name, len);
    model_dir[0] = '\0';
    if (e != NULL && e->dir != NULL)
        snprintf(model_dir, sizeof(model_dir), "%s", e->dir);
    pthread_rwlock_unlock(&repo->lock);
    /* A folder of that name wins: an agent rewrites it and asks for a reload. */
    snprintf(sdir, sizeof(sdir), "%s/%s", repo->root, name);
    if (is_dir(sdir))
        snprintf(model_dir, sizeof(model_dir), "%s", sdir);
    if (model_dir[0] == '\0') {
        scan_locked(repo);
        pthread_rwlock_rdlock(&repo->lock);
        e = find_entry(repo, name, len);
        if (e != NULL && e->dir != NULL)
            snprintf(model_dir, sizeof(model_dir), "%s", e->dir);
        pthread_rwlock_unlock(&repo->lock);
    }
    if (model_dir[0] == '\0' ||
        !settings_dir(model_dir, sdir, sizeof(sdir), version, sizeof(version))) {
        rc = sdn_error(SELDON_ENOTFOUND, "model %s: no model-settings.json under %s", name,
                       model_dir[0] ? model_dir : repo->root);
        goto out;
    }
    rc = note_model(repo, name, model_dir);
    if (rc < 0)
        goto out;

    pthread_rwlock_wrlock(&repo->lock);
    e = find_entry(repo, name, len);
    if (e->current == NULL)
        e->state = SELDON_MODEL_LOADING;
    pthread_rwlock_unlock(&repo->lock);

    rc = instance_load(&m, repo, sdir, name, version);

    pthread_rwlock_wrlock(&repo->lock);
    if (rc == 0) {
        old = e->current;
        e->current = m;
        e->state = SELDON_MODEL_READY;
        set_str(&e->reason, "");
        set_str(&e->version, m->settings.version);
    } else {
        /* An instance already serving keeps serving; the index says why the new one failed. */
        set_str(&e->reason, seldon_last_error());
        if (e->current == NULL)
            e->state = SELDON_MODEL_FAILED;
    }
    pthread_rwlock_unlock(&repo->lock);
    if (rc == 0)
        sdn_log(SELDON_LOG_INFO, "model %s: loaded (version '%s', runtime %s)", name,
                m->settings.version, m->runtime->name);
    else
        sdn_log(SELDON_LOG_WARN, "%s", seldon_last_error());
out:
    pthread_mutex_unlock(&repo->load_lock);
    /* Requests still on the old instance keep it alive; the last one unloads it. */
    sdn_model_unref(old);
    return rc;
}

int seldon_repo_load_all(seldon_repo *repo, size_t *failed)
{
    sdn_arena a;
    index_row *rows = NULL;
    size_t n = 0, i, bad = 0;
    int rc;
    if (failed != NULL)
        *failed = 0;
    rc = seldon_repo_scan(repo);
    if (rc < 0)
        return rc;
    sdn_arena_init(&a, NULL, 0);
    rc = sdn_repo_index_rows(repo, 0, &a, &rows, &n);
    for (i = 0; rc == 0 && i < n; i++)
        bad += seldon_repo_load(repo, rows[i].name) != 0;
    sdn_arena_release(&a);
    if (failed != NULL)
        *failed = bad;
    return rc;
}

int seldon_repo_unload(seldon_repo *repo, const char *name)
{
    sdn_entry *e;
    seldon_model *old = NULL;
    int rc = 0;
    if (repo == NULL || name == NULL)
        return sdn_error(SELDON_EINVAL, "repo_unload: NULL argument");
    pthread_mutex_lock(&repo->load_lock);
    pthread_rwlock_wrlock(&repo->lock);
    e = find_entry(repo, name, strlen(name));
    if (e == NULL || e->current == NULL) {
        rc = sdn_error(SELDON_ENOTFOUND, "model %.128s is not loaded", name);
    } else {
        old = e->current;
        e->current = NULL;
        e->state = SELDON_MODEL_UNAVAILABLE;
        set_str(&e->reason, "unloaded");
    }
    pthread_rwlock_unlock(&repo->lock);
    pthread_mutex_unlock(&repo->load_lock);
    if (old != NULL)
        sdn_log(SELDON_LOG_INFO, "model %s: unloaded", name);
    sdn_model_unref(old);
    return rc;
}

int seldon_repo_acquire(seldon_model **out, seldon_repo *repo, const char *name, size_t name_len,
                        const char *version, size_t version_len)
{
    sdn_entry *e;
    seldon_model *m = NULL;
    int rc = 0;
    if (out == NULL || repo == NULL || (name == NULL && name_len))
        return sdn_error(SELDON_EINVAL, "repo_acquire: NULL argument");
    *out = NULL;
    pthread_rwlock_rdlock(&repo->lock);
    e = find_entry(repo, name ? name : "", name_len);
    if (e == NULL || e->current == NULL) {
        rc = SELDON_ENOTFOUND;
    } else {
        m = e->current;
        if (version_len && (strlen(m->settings.version) != version_len ||
                            memcmp(m->settings.version, version, version_len) != 0))
            rc = SELDON_ENOTFOUND;
        else
            atomic_fetch_add(&m->refs, 1);
    }
    pthread_rwlock_unlock(&repo->lock);
    if (rc == 0) {
        *out = m;
        return 0;
    }
    if (e == NULL)
        return sdn_error(rc, "model %.*s not found", (int)(name_len > 128 ? 128 : name_len), name);
    if (m == NULL)
        return sdn_error(rc, "model %.*s is not ready (%s)", (int)(name_len > 128 ? 128 : name_len),
                         name, seldon_model_state_name(e->state));
    return sdn_error(rc, "model %.*s has no version %.*s", (int)(name_len > 128 ? 128 : name_len),
                     name, (int)(version_len > 64 ? 64 : version_len), version);
}

const char *seldon_model_state_name(int32_t state)
{
    switch (state) {
    case SELDON_MODEL_LOADING:
        return "LOADING";
    case SELDON_MODEL_READY:
        return "READY";
    case SELDON_MODEL_UNLOADING:
        return "UNLOADING";
    case SELDON_MODEL_FAILED:
        return "FAILED";
    default:
        return "UNAVAILABLE";
    }
}

size_t seldon_repo_ready_count(seldon_repo *repo)
{
    size_t i, n = 0;
    if (repo == NULL)
        return 0;
    pthread_rwlock_rdlock(&repo->lock);
    for (i = 0; i < repo->nbuckets; i++) {
        const sdn_entry *e;
        for (e = repo->buckets[i]; e != NULL; e = e->next)
            n += e->state == SELDON_MODEL_READY;
    }
    pthread_rwlock_unlock(&repo->lock);
    return n;
}


static int row_cmp(const void *a, const void *b)
{
    return strcmp(((const index_row *)a)->name, ((const index_row *)b)->name);
}

int sdn_repo_index_rows(seldon_repo *repo, int32_t ready_only, sdn_arena *a, index_row **rows,
                        size_t *n)
{
    size_t i, k = 0;
    int rc = 0;
    pthread_rwlock_rdlock(&repo->lock);
    *rows = sdn_arena_alloc(a, (repo->nentries + 1) * sizeof(index_row));
    if (*rows == NULL)
        rc = sdn_error(SELDON_ENOMEM, "index: out of memory");
    for (i = 0; rc == 0 && i < repo->nbuckets; i++) {
        const sdn_entry *e;
        for (e = repo->buckets[i]; rc == 0 && e != NULL; e = e->next) {
            index_row *row = &(*rows)[k];
            if (ready_only && e->state != SELDON_MODEL_READY)
                continue;
            row->name = sdn_arena_strndup(a, e->name, strlen(e->name));
            row->version = sdn_arena_strndup(a, e->version ? e->version : "",
                                             e->version ? strlen(e->version) : 0);
            row->state = seldon_model_state_name(e->state);
            row->reason = sdn_arena_strndup(a, e->reason, strlen(e->reason));
            if (row->name == NULL || row->version == NULL || row->reason == NULL)
                rc = sdn_error(SELDON_ENOMEM, "index: out of memory");
            k++;
        }
    }
    pthread_rwlock_unlock(&repo->lock);
    if (rc == 0) {
        qsort(*rows, k, sizeof(index_row), row_cmp);
        *n = k;
    }
    return rc;
}

/* --- Accessors for runtimes ----------------------------------------------- */

const char *seldon_model_name(const seldon_model *model)
{
    return model ? model->settings.name : "";
}

const char *seldon_model_version(const seldon_model *model)
{
    return model ? model->settings.version : "";
}

const char *seldon_model_uri(const seldon_model *model)
{
    return model ? model->settings.uri : "";
}

const char *seldon_model_dir(const seldon_model *model)
{
    return model ? model->settings.dir : "";
}

int seldon_model_extra(seldon_param *out, const seldon_model *model, const char *key)
{
    const sdn_jv *v;
    if (out == NULL || model == NULL || key == NULL)
        return sdn_error(SELDON_EINVAL, "model_extra: NULL argument");
    v = sdn_jv_get(model->settings.extra, key);
    if (v == NULL)
        return sdn_error(SELDON_ENOTFOUND, "model %s: parameters.extra.%.64s is not set",
                         model->settings.name, key);
    memset(out, 0, sizeof(*out));
    out->name = key;
    out->name_len = strlen(key);
    switch (v->type) {
    case SDN_JV_BOOL:
        out->type = SELDON_PARAM_BOOL;
        out->bool_value = v->b;
        return 0;
    case SDN_JV_NUMBER:
        out->type = v->is_int ? SELDON_PARAM_INT64 : SELDON_PARAM_DOUBLE;
        out->int64_value = v->i;
        out->double_value = v->d;
        return 0;
    case SDN_JV_STRING:
        out->type = SELDON_PARAM_STRING;
        out->string_value = v->s.p;
        out->string_len = v->s.len;
        return 0;
    default:
        return sdn_error(SELDON_EDATATYPE,
                         "model %s: parameters.extra.%.64s is not a string, bool or number",
                         model->settings.name, key);
    }
}

const char *seldon_model_extra_json(const seldon_model *model)
{
    return model ? model->settings.extra_json : "{}";
}

void seldon_model_set_state(seldon_model *model, void *state)
{
    if (model != NULL)
        model->state = state;
}

void *seldon_model_state(const seldon_model *model)
{
    return model ? model->state : NULL;
}

int seldon_model_set_error(seldon_model *model, const char *message)
{
    if (model != NULL) {
        sdn_free(model->error);
        model->error = dup_str(message ? message : "");
    }
    return SELDON_EINVAL;
}

int seldon_model_add_input(seldon_model *model, const char *name, int32_t datatype,
                           const int64_t *shape, uint32_t ndim)
{
    if (model == NULL || name == NULL || (ndim && shape == NULL))
        return sdn_error(SELDON_EINVAL, "model_add_input: NULL argument");
    return sdn_tmetas_add(&model->settings.inputs, &model->arena, name, datatype, shape, ndim);
}

int seldon_model_add_output(seldon_model *model, const char *name, int32_t datatype,
                            const int64_t *shape, uint32_t ndim)
{
    if (model == NULL || name == NULL || (ndim && shape == NULL))
        return sdn_error(SELDON_EINVAL, "model_add_output: NULL argument");
    return sdn_tmetas_add(&model->settings.outputs, &model->arena, name, datatype, shape, ndim);
}

uint32_t seldon_model_runtime_flags(const seldon_model *model)
{
    return model ? model->runtime->flags : 0;
}

uint32_t seldon_model_max_batch_size(const seldon_model *model)
{
    return model ? model->settings.max_batch_size : 1;
}

int64_t seldon_model_max_batch_time_ns(const seldon_model *model)
{
    return model ? model->settings.max_batch_time_ns : 0;
}
