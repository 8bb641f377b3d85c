/*
 * seldon-dataflow: pipelines over Kafka. Runs libseldon's pipeline engine for
 * the pipelines of --pipeline manifests: consumes their inputs topics and the
 * outputs topics of the models their steps call, produces the step inputs and
 * the pipelines' answers, and commits an input only once its answer (or error
 * record) is acknowledged. Any number of workers share the partitions through
 * one consumer group. docs/dataflow.md has the details.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "df.h"
#include "flags.h"
#include "kdaemon.h"
#include "log.h"
#include "sdd.h"
#include "sub.h"

static const char *files[DF_FILES_MAX];
static size_t nfiles;

static const sdf_program program = {
    "seldon-dataflow",
    "usage: seldon-dataflow --scheduler-host HOST[:PORT] | --pipeline FILE... [options]\n"
    "\n"
    "Runs pipelines over Kafka: those the scheduler gives (--scheduler-host; their\n"
    "states are reported back) and those of --pipeline manifests. A record of\n"
    "<prefix>.<namespace>.pipeline.<p>.inputs (key <partition>.<p>.<id>, value a\n"
    "ModelInferRequest) starts a request; each step's request goes to\n"
    "...model.<m>.inputs with the same key, the `pipeline` header and the x-*\n"
    "headers; the answers come back from ...model.<m>.outputs (or errors.errors);\n"
    "the pipeline's answer, or an error record (header seldon-pipeline-errors), goes\n"
    "to ...pipeline.<p>.outputs on the partition the key names. An input is committed\n"
    "only once its answer is acknowledged: a crash or a rebalance runs a request\n"
    "again, never loses it.\n",
    "The Kafka broker: --kafka-broker, else bootstrap.servers from --kafka-config or\n"
    "--kafka-config-file, else $SELDON_KAFKA_BROKER, else localhost:9092. Workers of one\n"
    "--group share the partitions with the range assignor (partition i of every topic\n"
    "to one worker): every topic must have the same number of partitions. Prints\n"
    "'serving metrics=P' on stdout once started. SIGTERM and SIGINT flush the answers\n"
    "in flight (within --grace), commit and exit 0.\n",
    28,
};

static int file_flag(void *dest, const char *value)
{
    (void)dest;
    if (nfiles == DF_FILES_MAX || value[0] == '\0')
        return -1;
    files[nfiles++] = value;
    return 0;
}

static int host_flag(void *dest, const char *value)
{
    char host[256];
    int port;
    if (sds_parse_host(host, sizeof(host), &port, value, 9002) != 0)
        return -1;
    *(const char **)dest = value;
    return 0;
}

static char hostname[256];

static int parse_args(df_config *c, int argc, char **argv)
{
    const sdf_flag flags[] = {
        SDF_CHECK("pipeline", NULL, file_flag, "a manifest file", "FILE",
                  "Pipeline manifests to run (repeatable; YAML or JSON)"),
        SDF_CHECK("scheduler-host", &c->scheduler_host, host_flag, "HOST or HOST:PORT",
                  "HOST[:PORT]",
                  "the scheduler's RouteService (port 9002 by default):\n"
                  "runs the pipelines it gives and reports their states;\n"
                  "the last ones keep running while it is down"),
        SDF_FLAG("name", SDF_STR, &c->name, 1, 200, "NAME",
                 "this worker in the scheduler's logs (default: host name)"),
        SDF_FLAG("resubscribe-max", SDF_MS, &c->resubscribe_max_ms, SDS_BACKOFF_MIN_MS, 3600000,
                 "MS", "longest wait between subscription attempts (default 5000)"),
        SDF_FLAG("group", SDF_STR, &c->group, 1, 255, "ID",
                 "the consumer group (default seldon-dataflow);\n"
                 "workers in one group share the partitions"),
        SDF_FLAG("timeout", SDF_MS, &c->timeout_ms, 0, 86400000, "MS",
                 "a request's timeout when its pipeline sets none\n"
                 "(default 60000; 0: none)"),
        SDF_FLAG("max-requests", SDF_U32, &c->max_requests, 1, 10000000, "N",
                 "requests alive at once (default 65536)"),
        SDF_FLAG("max-live", SDF_U32, &c->max_live, 1, 10000000, "N",
                 "stop fetching requests while N run (default 4096;\n"
                 "fetch again below 3/4 of it)"),
        SDF_FLAG("grace", SDF_MS, &c->grace_ms, 0, 86400000, "MS",
                 "on SIGTERM, time left to deliver the answers in flight\n"
                 "(default 10000)"),
        SDF_FLAG("metrics-port", SDF_INT, &c->metrics_port, -1, 65535, "N",
                 "Prometheus /metrics (default 9007; 0 picks one; -1: off)"),
        SDF_FLAG("host", SDF_STR, &c->host, 0, 0, "ADDR",
                 "address of the metrics listener (default 0.0.0.0)"),
        SDK_FLAGS(&c->kafka),
        SDF_FLAG("log-level", SDF_LOG, &c->log_level, 0, 0, "LEVEL",
                 "error, warn, info (default), debug, trace"),
    };
    c->group = "seldon-dataflow";
    c->timeout_ms = 60000;
    c->max_requests = 65536;
    c->max_live = 4096;
    c->grace_ms = 10000;
    c->metrics_port = 9007;
    c->host = "0.0.0.0";
    c->log_level = SELDON_LOG_INFO;
    c->resubscribe_max_ms = 5000;
    if (gethostname(hostname, sizeof(hostname) - 1) != 0 || hostname[0] == '\0')
        snprintf(hostname, sizeof(hostname), "seldon-dataflow");
    c->name = hostname;
    if (sdf_parse(&program, flags, sizeof(flags) / sizeof(flags[0]), argc, argv) < 0)
        return -1;
    c->files = files;
    c->nfiles = nfiles;
    if (nfiles == 0 && c->scheduler_host == NULL) {
        fprintf(stderr,
                "seldon-dataflow: --scheduler-host or --pipeline is required (see --help)\n");
        return -1;
    }
    if (df_kafka_defaults(&c->kafka) != 0)
        return -1;
    if (sdkd_check_kafka("seldon-dataflow", &c->kafka) != 0)
        return -1;
    return 0;
}

/* The engine and, with --scheduler-host, its subscription to the scheduler's pipelines. */
typedef struct app {
    df *d;
    df_sched *sched;
} app;

static void destroy(void *obj)
{
    app *a = obj;
    if (a == NULL)
        return;
    df_sched_close(a->sched);
    df_free(a->d);
    sdd_free(a);
}

static int create(void **obj, const void *arg, uv_loop_t *loop, seldon_metrics *metrics)
{
    const df_config *cfg = arg;
    app *a = sdd_calloc(1, sizeof(*a));
    int rc;
    *obj = NULL;
    if (a == NULL)
        return SELDON_ENOMEM;
    rc = df_new(&a->d, cfg, loop, metrics);
    if (rc == 0 && cfg->scheduler_host != NULL)
        rc = df_sched_new(&a->sched, a->d, cfg, loop);
    if (rc != 0) {
        destroy(a);
        return rc;
    }
    *obj = a;
    return 0;
}

static void start(void *obj)
{
    app *a = obj;
    df_start(a->d);
    if (a->sched != NULL)
        df_sched_start(a->sched);
}

static void stop(void *obj, void (*done)(void *), void *arg)
{
    app *a = obj;
    /* The subscription first: the scheduler stops counting this worker at once. */
    df_sched_close(a->sched);
    a->sched = NULL;
    df_stop(a->d, done, arg);
}

int main(int argc, char **argv)
{
    static df_config cfg;
    sdkd_engine e;
    int rc;

    if (parse_args(&cfg, argc, argv) < 0)
        return 2;
    sdd_log_init("seldon-dataflow", cfg.log_level);
    memset(&e, 0, sizeof(e));
    e.stopping = "delivering the answers in flight";
    e.host = cfg.host;
    e.metrics_port = cfg.metrics_port;
    e.grace_ms = cfg.grace_ms;
    e.create = create;
    e.cfg = &cfg;
    e.start = start;
    e.stop = stop;
    e.destroy = destroy;
    rc = sdkd_run(&e);
    sdk_config_free(&cfg.kafka);
    return rc;
}
