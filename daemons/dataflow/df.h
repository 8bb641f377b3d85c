/*
 * seldon-dataflow's parts: the engine over Kafka on its loop (df.c) and the
 * main (main.c). Everything runs on one libuv loop; librdkafka's threads only
 * queue events for it. docs/dataflow.md describes the behaviour.
 */
#ifndef DF_H
#define DF_H

#include <stdint.h>

#include <uv.h>

#include "kafka.h"
#include "seldon/metrics.h"

#define DF_FILES_MAX 256

typedef struct df_config {
    const char **files; /* --pipeline, argv's */
    size_t nfiles;
    const char *scheduler_host; /* --scheduler-host, or NULL: the files' pipelines only */
    const char *name;           /* --name: this worker in the scheduler's logs */
    uint64_t resubscribe_max_ms;
    const char *group;
    uint64_t timeout_ms; /* a request's default timeout in the engine */
    uint32_t max_requests;
    uint32_t max_live; /* inputs paused while this many requests live */
    uint64_t grace_ms;
    int metrics_port;
    const char *host;
    int32_t log_level;
    sdk_config kafka;
} df_config;

typedef struct df df;

/* A pipeline to run, for df_sync (borrowed for the call). */
typedef struct df_spec {
    const char *name;
    uint32_t version;
    const char *spec; /* its Pipeline manifest: YAML or JSON (the scheduler's: JSON) */
    size_t spec_len;
} df_spec;

/* What runs of df_sync's last set: loaded, else why not (reason). */
typedef struct df_state {
    char *name;
    uint32_t version;
    int loaded;
    char *reason;
} df_state;

/* Loads and compiles the pipelines (before the loop runs). Returns 0 or SELDON_E*. */
int df_new(df **out, const df_config *cfg, uv_loop_t *loop, seldon_metrics *metrics);
/* On the loop: creates the clients and subscribes. */
void df_start(void *d);
/* On the loop: stops consuming, waits (within the grace) for the outputs in flight to be
 * acknowledged, commits and closes; done(arg) runs on the loop at the end. */
void df_stop(df *d, void (*done)(void *), void *arg);
void df_free(df *d);

/*
 * On the loop: these pipelines (specs[0..n)) run from now on, beside the --pipeline files'
 * (which always stay). The scheduler's (sched.c) and seldon up --kafka's (created with no
 * files, nfiles 0) come this way. Pipelines gone from the set or of another version leave
 * the engine (their live requests end with an "unloaded" error record), and so do the
 * readers of one replaced, compiled again against the new version; new ones are compiled
 * in the order of what reads what and added; the consumer subscribes anew when the topics
 * changed. The states of the set are kept for df_states. Returns 1 when the pipelines
 * running changed, 0 when not, or SELDON_ENOMEM (what could be done is done).
 */
int df_sync(df *d, const df_spec *specs, size_t n);
/* The states of the last df_sync's pipelines (borrowed until the next df_sync). */
size_t df_states(const df *d, const df_state **out);

/* On the loop: 1 when pipeline runs here and a partition of its inputs topic is assigned. */
int df_holds(df *d, const char *pipeline);

/* Our consumer defaults on top of c: the range assignor unless c names one. */
int df_kafka_defaults(sdk_config *c);

/*
 * sched.c, --scheduler-host: the subscription to the scheduler's pipelines (new before
 * the loop runs; start and close on the loop). Each set goes to df_sync and the states
 * back to the scheduler.
 */
typedef struct df_sched df_sched;
int df_sched_new(df_sched **out, df *d, const df_config *cfg, uv_loop_t *loop);
void df_sched_start(void *s);
void df_sched_close(df_sched *s);

#endif
