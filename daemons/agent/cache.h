/*
 * seldon-agent's pure logic: which models a replica holds and in what state, the
 * memory they take, which ones to evict (least recently used first) to make room,
 * and the small text jobs of a load: reading a model spec (canonical JSON of the
 * Model manifest, through seldon_manifest_parse()), renaming a model-settings.json.
 * No I/O, no clock: recency is a counter bumped by ag_cache_touch().
 *
 * Thread safety: one ag_cache belongs to one thread (the agent's loop).
 */
#ifndef AG_CACHE_H
#define AG_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "seldon/common.h"

/* States of a model version held by the replica. */
#define AG_LOADING 1   /* being fetched or loaded: its memory is counted */
#define AG_LOADED 2    /* loaded on the server */
#define AG_EVICTED 3   /* unloaded from the server to make room; files kept: reloads on use */
#define AG_UNLOADING 4 /* being removed for good */
#define AG_EVICTING 5  /* being unloaded from the server to make room */

typedef struct ag_entry {
    struct ag_entry *next;
    char *model; /* unversioned name ("iris") */
    char *vname; /* versioned name ("iris_3"): the name on the server */
    uint32_t version;
    int64_t memory; /* bytes; 0 when the model declared none */
    int state;      /* AG_* */
    uint64_t used;  /* recency tick */
    int held;       /* was loaded once: an eviction or a reload keeps it served by name */
    void *user;     /* the agent's per-model data (waiters...) */
    /* Load, for the scheduler's autoscaler (the agent's models.c keeps them). */
    uint32_t inflight;  /* requests for it being proxied now */
    int64_t idle_since; /* monotonic ns the last one ended; 0: not known yet */
} ag_entry;

typedef struct ag_cache ag_cache;

/* capacity: bytes the loaded models may take (the replica's --memory); 0: no limit. */
int ag_cache_new(ag_cache **out, int64_t capacity);
void ag_cache_free(ag_cache *c);

/* Adds model_version in state AG_LOADING (caller owns nothing; the cache does). NULL on OOM. */
ag_entry *ag_cache_add(ag_cache *c, const char *model, uint32_t version, int64_t memory);
void ag_cache_remove(ag_cache *c, ag_entry *e);

/* The entry of a versioned name, or NULL. */
ag_entry *ag_cache_find(ag_cache *c, const char *vname, size_t len);
/* The entry of model version, or NULL. */
ag_entry *ag_cache_find_version(ag_cache *c, const char *model, uint32_t version);

/*
 * The version a request for name reaches: an exact versioned name held here, else the
 * newest version of the model name that is held: loaded, or loaded before and now evicted
 * or loading again (a request for it waits).
 * NULL when the replica holds none.
 */
ag_entry *ag_cache_resolve(ag_cache *c, const char *name, size_t len);

/* Marks e as used now (it becomes the most recently used). */
void ag_cache_touch(ag_cache *c, ag_entry *e);

/* Bytes taken by entries loading or loaded. */
int64_t ag_cache_used(const ag_cache *c);
int64_t ag_cache_capacity(const ag_cache *c);

/*
 * Room for e (whose memory is not counted yet when it is evicted, or is counted when
 * it is loading): fills victims[0..*n) with the loaded entries to evict, least recently
 * used first, so that the loaded ones plus e fit the capacity. Returns 0, or
 * SELDON_ERANGE when they cannot fit even with every other model evicted (the reason
 * in seldon_last_error()), or SELDON_ENOMEM.
 * *victims is caller-owned (free with seldon_free) when *n > 0.
 */
int ag_cache_plan(ag_entry ***victims, size_t *n, ag_cache *c, const ag_entry *e);

/* Iteration: the first entry, then e->next. */
ag_entry *ag_cache_first(ag_cache *c);

/* --- text helpers ------------------------------------------------------------------ */

typedef struct ag_spec {
    char *storage_uri;        /* seldon_malloc'd; NULL when absent */
    int64_t artifact_version; /* -1 when absent */
    int64_t memory;           /* bytes; -1 when absent */
} ag_spec;

/*
 * Reads spec.storageUri, spec.artifactVersion and spec.memory from a Model manifest
 * (the scheduler sends its canonical JSON) with libseldon's strict manifest parser. 0,
 * or SELDON_EPARSE with the document and field named in seldon_last_error(). Free with
 * ag_spec_clear().
 */
int ag_spec_parse(ag_spec *out, const char *json, size_t len);
void ag_spec_clear(ag_spec *s);

/*
 * A model-settings.json text with its top-level "name" set to name (added when absent);
 * everything else kept byte for byte. 0, or SELDON_EPARSE when the text is not a JSON
 * object. out is appended to.
 */
int ag_settings_rename(seldon_buf *out, const char *json, size_t len, const char *name);

/*
 * Field 1 of a protobuf message, when length-delimited: model_name of ModelInferRequest,
 * name of ModelMetadataRequest and ModelReadyRequest. The top-level fields are walked,
 * nothing is decoded. ag_pb_field1: the first one's value as *off and *flen within msg;
 * 0, SELDON_ENOTFOUND when there is none, SELDON_EPARSE when msg is malformed.
 * ag_pb_rewrite_field1: appends msg to out with every such field set to name (splicing
 * bytes; a message without one is copied as it is); 0, SELDON_EPARSE (malformed: nothing
 * appended) or SELDON_ENOMEM.
 */
int ag_pb_field1(const uint8_t *msg, size_t len, size_t *off, size_t *flen);
int ag_pb_rewrite_field1(seldon_buf *out, const uint8_t *msg, size_t len, const char *name,
                         size_t name_len);

#endif
