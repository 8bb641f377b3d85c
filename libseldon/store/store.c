/*
 * LMDB behind sdn_store: one environment, named databases, one write
 * transaction at a time (the scheduler is single-threaded).
 */
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "core/core.h"
#include "store/store.h"

struct sdn_store {
    MDB_env *env;
    MDB_dbi dbi[SDN_STORE_DBS_MAX];
    size_t ndbs;
    char *dir;
    int lock_fd; /* flock()ed: one process owns the folder */
};

struct sdn_store_txn {
    sdn_store *store;
    MDB_txn *txn;
};

static int lmdb_error(int rc, const char *what, const char *dir)
{
    int code = rc == MDB_MAP_FULL ? SELDON_ETOOBIG : rc == ENOMEM ? SELDON_ENOMEM : SELDON_EIO;
    return sdn_error(code, "state store %s: %s: %s", dir ? dir : "", what, mdb_strerror(rc));
}

int sdn_store_open(sdn_store **out, const char *dir, int64_t map_size, const char *const *dbs,
                   size_t ndbs, int32_t sync_writes)
{
    sdn_store *s = NULL;
    MDB_txn *txn = NULL;
    unsigned flags = MDB_NOTLS | (sync_writes ? 0u : (unsigned)MDB_NOSYNC);
    int rc = 0;
    size_t i;

    *out = NULL;
    if (ndbs > SDN_STORE_DBS_MAX)
        return sdn_error(SELDON_EINVAL, "state store: too many databases");
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return sdn_error(SELDON_EIO, "state store %s: mkdir: %s", dir, strerror(errno));
    s = sdn_calloc(1, sizeof(*s));
    if (s == NULL)
        return sdn_error(SELDON_ENOMEM, "state store: out of memory");
    s->lock_fd = -1;
    s->dir = sdn_strndup(dir, strlen(dir));
    if (s->dir == NULL) {
        rc = sdn_error(SELDON_ENOMEM, "state store: out of memory");
        goto out;
    }
    {
        /* LMDB lets two processes write the same folder; two schedulers must not. */
        char path[4096];
        if ((size_t)snprintf(path, sizeof(path), "%s/seldon.lock", dir) >= sizeof(path)) {
            rc = sdn_error(SELDON_EINVAL, "state store: folder name too long");
            goto out;
        }
        s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (s->lock_fd < 0) {
            rc = sdn_error(SELDON_EIO, "state store %s: %s", path, strerror(errno));
            goto out;
        }
        if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
            rc = errno == EWOULDBLOCK
                     ? sdn_error(SELDON_EUNAVAIL, "state store %s: in use by another scheduler",
                                 dir)
                     : sdn_error(SELDON_EIO, "state store %s: lock: %s", dir, strerror(errno));
            goto out;
        }
    }
    if ((rc = mdb_env_create(&s->env)) != 0) {
        s->env = NULL;
        rc = lmdb_error(rc, "create", dir);
        goto out;
    }
    mdb_env_set_maxdbs(s->env, SDN_STORE_DBS_MAX);
    if ((rc = mdb_env_set_mapsize(s->env, (size_t)map_size)) != 0) {
        rc = lmdb_error(rc, "map size", dir);
        goto out;
    }
    if ((rc = mdb_env_open(s->env, dir, flags, 0600)) != 0) {
        rc = lmdb_error(rc, "open", dir);
        goto out;
    }
    if ((rc = mdb_txn_begin(s->env, NULL, 0, &txn)) != 0) {
        rc = lmdb_error(rc, "begin", dir);
        goto out;
    }
    for (i = 0; i < ndbs; i++) {
        if ((rc = mdb_dbi_open(txn, dbs[i], MDB_CREATE, &s->dbi[i])) != 0) {
            mdb_txn_abort(txn);
            rc = lmdb_error(rc, dbs[i], dir);
            goto out;
        }
    }
    if ((rc = mdb_txn_commit(txn)) != 0) {
        rc = lmdb_error(rc, "commit", dir);
        goto out;
    }
    s->ndbs = ndbs;
    *out = s;
    s = NULL;
out:
    sdn_store_close(s);
    return rc;
}

void sdn_store_close(sdn_store *store)
{
    if (store == NULL)
        return;
    if (store->env != NULL) {
        mdb_env_sync(store->env, 1);
        mdb_env_close(store->env);
    }
    if (store->lock_fd >= 0)
        close(store->lock_fd); /* releases the lock */
    sdn_free(store->dir);
    sdn_free(store);
}

int sdn_store_sync(sdn_store *store)
{
    int rc = mdb_env_sync(store->env, 1);
    return rc == 0 ? 0 : lmdb_error(rc, "sync", store->dir);
}

int sdn_store_begin(sdn_store_txn **out, sdn_store *store)
{
    sdn_store_txn *t = sdn_calloc(1, sizeof(*t));
    int rc;
    *out = NULL;
    if (t == NULL)
        return sdn_error(SELDON_ENOMEM, "state store: out of memory");
    if ((rc = mdb_txn_begin(store->env, NULL, 0, &t->txn)) != 0) {
        sdn_free(t);
        return lmdb_error(rc, "begin", store->dir);
    }
    t->store = store;
    *out = t;
    return 0;
}

int sdn_store_put(sdn_store_txn *txn, size_t db, const void *key, size_t klen, const void *val,
                  size_t vlen)
{
    MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
    int rc = mdb_put(txn->txn, txn->store->dbi[db], &k, &v, 0);
    return rc == 0 ? 0 : lmdb_error(rc, "put", txn->store->dir);
}

int sdn_store_del(sdn_store_txn *txn, size_t db, const void *key, size_t klen)
{
    MDB_val k = {klen, (void *)key};
    int rc = mdb_del(txn->txn, txn->store->dbi[db], &k, NULL);
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : lmdb_error(rc, "delete", txn->store->dir);
}

int sdn_store_commit(sdn_store_txn *txn)
{
    int rc = mdb_txn_commit(txn->txn);
    sdn_store *s = txn->store;
    sdn_free(txn);
    return rc == 0 ? 0 : lmdb_error(rc, "commit", s->dir);
}

void sdn_store_abort(sdn_store_txn *txn)
{
    if (txn == NULL)
        return;
    mdb_txn_abort(txn->txn);
    sdn_free(txn);
}

int sdn_store_walk(sdn_store *store, size_t db, sdn_store_walk_fn fn, void *user_data)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    int rc;

    if ((rc = mdb_txn_begin(store->env, NULL, MDB_RDONLY, &txn)) != 0)
        return lmdb_error(rc, "begin", store->dir);
    if ((rc = mdb_cursor_open(txn, store->dbi[db], &cur)) != 0) {
        mdb_txn_abort(txn);
        return lmdb_error(rc, "cursor", store->dir);
    }
    rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (rc == 0) {
        int r = fn(user_data, k.mv_data, k.mv_size, v.mv_data, v.mv_size);
        if (r != 0) {
            rc = r;
            goto out;
        }
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    rc = rc == MDB_NOTFOUND ? 0 : lmdb_error(rc, "read", store->dir);
out:
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return rc;
}
