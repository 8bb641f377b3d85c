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

/* Loads and compiles the pipelines (before the loop runs). Returns 0 or SELDON_E*. */
int df_new(df **out, const df_config *cfg, uv_loop_t *loop, seldon_metrics *metrics);
/* On the loop: creates the clients and subscribes. */
void df_start(void *d);
/* On the loop: stops consuming, waits (within the grace) for the outputs in flight to be
 * acknowledged, commits and closes; done(arg) runs on the loop at the end. */
void df_stop(df *d, void (*done)(void *), void *arg);
void df_free(df *d);

/*
 * The engine as a role of another daemon (seldon up --kafka): created with no
 * files (nfiles 0), its pipelines are pushed on the loop with df_sync().
 */
typedef struct df_spec {
    const char *name;
    uint32_t version;
    const char *spec; /* its Pipeline manifest (YAML or JSON) */
    size_t spec_len;
} df_spec;

/*
 * On the loop: these pipelines (and no other) run from now on. New names and
 * versions are compiled (in the order of what reads what) and added; the others
 * are withdrawn (their requests end with error records, kind "unloaded"), and
 * so are the readers of a replaced one, compiled again against it. The
 * subscription follows. Returns 1 when something changed, 0, or SELDON_E*.
 */
int df_sync(df *d, const df_spec *specs, size_t n);

/* On the loop: 1 when pipeline runs here and a partition of its inputs topic is assigned. */
int df_holds(df *d, const char *pipeline);

/* Our consumer defaults on top of c: the range assignor unless c names one. */
int df_kafka_defaults(sdk_config *c);

#endif
