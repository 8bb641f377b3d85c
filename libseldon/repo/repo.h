/*
 * Internals of the model repository: settings, instances, infers.
 */
#ifndef SDN_REPO_H
#define SDN_REPO_H

#include <pthread.h>
#include <stdatomic.h>

#include "core/core.h"
#include "oip/msg.h"
#include "seldon/repository.h"
#include "util/jdom.h"

/* A declared input or output. */
typedef struct sdn_tmeta {
    sdn_str name;
    int32_t datatype;
    uint32_t ndim;
    int64_t *shape; /* -1: any size */
} sdn_tmeta;

typedef struct sdn_tmetas {
    sdn_tmeta *items;
    uint32_t n;
    uint32_t cap;
} sdn_tmetas;

/* What model-settings.json says, parsed into the instance's arena. */
typedef struct sdn_settings {
    const char *name;
    const char *implementation;
    const char *uri; /* resolved to a local path */
    const char *version;
    const char *dir; /* the folder holding model-settings.json */
    const char *platform;
    const sdn_jv *extra; /* NULL when absent */
    const char *extra_json;
    uint32_t max_batch_size;
    int64_t max_batch_time_ns;
    sdn_tmetas inputs;
    sdn_tmetas outputs;
} sdn_settings;

/*
 * Reads <dir>/model-settings.json into s (allocated in a). default_name is
 * used when the file names no model. Errors name the file and the field.
 */
int sdn_settings_load(sdn_settings *s, sdn_arena *a, const char *dir, const char *default_name,
                      const char *default_version);

/*
 * Parses the text of a model-settings.json (len bytes, need not end in NUL)
 * as if read from <dir>; path names the file in errors.
 */
int sdn_settings_parse(sdn_settings *s, sdn_arena *a, const char *dir, const char *default_name,
                       const char *default_version, const char *text, size_t len,
                       const char *path);

/* Adds a declared tensor unless one of that name is already declared. */
int sdn_tmetas_add(sdn_tmetas *ms, sdn_arena *a, const char *name, int32_t datatype,
                   const int64_t *shape, uint32_t ndim);

typedef struct sdn_entry sdn_entry;

struct seldon_model {
    seldon_repo *repo;
    atomic_int refs;
    sdn_arena arena;
    sdn_settings settings;
    const seldon_runtime *runtime;
    void *dl; /* dlopen handle of a plugin runtime, or NULL */
    void *state;
    char *error;
    int loaded;              /* runtime load succeeded: unload is due */
    pthread_mutex_t exec_lock; /* serializes execute for runtimes that are not concurrent */
    _Atomic(void *) host_data;
    void (*host_free)(void *);
};

/* Drops a reference; the last one unloads and frees the instance. */
void sdn_model_unref(seldon_model *m);

struct seldon_infer {
    const seldon_msg *request;
    seldon_msg *response;
    seldon_infer_done_fn done;
    void *user_data;
    seldon_model *model; /* set while executing, for the response's name and version */
    atomic_int completed;
    /* A merged batch: the parts it stands for, and the messages it owns. */
    seldon_infer **parts;
    size_t nparts;
    seldon_msg *own_request;
    seldon_msg *own_response;
};

/* One row of the repository index, copied out under the registry's lock. */
typedef struct index_row {
    const char *name;
    const char *version;
    const char *state;
    const char *reason;
} index_row;

/* The index rows, sorted by name, allocated in a. */
int sdn_repo_index_rows(seldon_repo *repo, int32_t ready_only, sdn_arena *a, index_row **rows,
                        size_t *n);

#endif
