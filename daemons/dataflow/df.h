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

#endif
