/*
 * The state store: named LMDB databases in one environment, written in one
 * transaction per change. A thin layer, so the scheduler's codec stays apart
 * from LMDB's calls.
 *
 * Writes go to the OS page cache before a commit returns (MDB_NOSYNC): they
 * survive the process being killed; sdn_store_sync() flushes them to disk
 * (the scheduler calls it on close), and sync_writes makes every commit do so.
 */
#ifndef SDN_STORE_H
#define SDN_STORE_H

#include <stddef.h>
#include <stdint.h>

#define SDN_STORE_DBS_MAX 8

typedef struct sdn_store sdn_store;
typedef struct sdn_store_txn sdn_store_txn;

/* Opens (creating the folder and the databases) dir with dbs names. */
int sdn_store_open(sdn_store **out, const char *dir, int64_t map_size, const char *const *dbs,
                   size_t ndbs, int32_t sync_writes);
void sdn_store_close(sdn_store *store);
int sdn_store_sync(sdn_store *store);

/* A write transaction; exactly one of commit or abort ends it. */
int sdn_store_begin(sdn_store_txn **out, sdn_store *store);
int sdn_store_put(sdn_store_txn *txn, size_t db, const void *key, size_t klen, const void *val,
                  size_t vlen);
/* Deleting an absent key is not an error. */
int sdn_store_del(sdn_store_txn *txn, size_t db, const void *key, size_t klen);
int sdn_store_commit(sdn_store_txn *txn);
void sdn_store_abort(sdn_store_txn *txn);

/*
 * Calls fn for every record of db in key order, in one read transaction.
 * Key and value are borrowed for the call. A non-zero return from fn stops
 * the walk and is returned.
 */
typedef int (*sdn_store_walk_fn)(void *user_data, const void *key, size_t klen, const void *val,
                                 size_t vlen);
int sdn_store_walk(sdn_store *store, size_t db, sdn_store_walk_fn fn, void *user_data);

#endif
