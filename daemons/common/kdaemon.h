/*
 * The life of a Kafka engine daemon (seldon-dataflow, seldon-modelgateway) once
 * its flags are parsed: one loop, the engine attached to it, a metrics listener,
 * signals, a graceful stop. Each engine is "attach to this loop with this
 * config" (create, then start posted to the loop) and "stop, then tell me"
 * (stop on the loop, done(arg) once everything is closed), so that seldon up
 * runs the same engines on its own loops.
 *
 * Thread safety: main thread only.
 */
#ifndef SDKD_KDAEMON_H
#define SDKD_KDAEMON_H

#include <stdint.h>

#include <uv.h>

#include "kafka.h"
#include "seldon/metrics.h"

typedef struct sdkd_engine {
    const char *stopping; /* logged after the signal: "finishing the calls in flight" */
    const char *host;     /* the metrics listener */
    int metrics_port;     /* -1: none; 0: a free one */
    uint64_t grace_ms;    /* the engine's own grace: stop waits this long plus a minute */
    /* Before the loop runs: the engine on loop; 0 or SELDON_E*. */
    int (*create)(void **obj, const void *cfg, uv_loop_t *loop, seldon_metrics *metrics);
    const void *cfg;
    void (*start)(void *obj);                                    /* on the loop */
    void (*stop)(void *obj, void (*done)(void *), void *arg);    /* on the loop */
    void (*destroy)(void *obj);                                  /* after the loop ended */
} sdkd_engine;

/*
 * librdkafka judges the properties: both roles' configurations are built once.
 * 0, or -1 with "<program>: <why>" on stderr (a usage error).
 */
int sdkd_check_kafka(const char *program, const sdk_config *c);

/*
 * Runs e until SIGTERM or SIGINT: prints "serving metrics=P" once started, then
 * stops the engine, closes and frees. Returns the exit status (0, or 1 when the
 * start failed).
 */
int sdkd_run(const sdkd_engine *e);

#endif
