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

#include "df.h"
#include "flags.h"
#include "kdaemon.h"
#include "log.h"
#include "sdd.h"

static const char *files[DF_FILES_MAX];
static size_t nfiles;

static const sdf_program program = {
    "seldon-dataflow",
    "usage: seldon-dataflow --pipeline FILE... [options]\n"
    "\n"
    "Runs the pipelines of the manifests given over Kafka: a record of\n"
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

static int parse_args(df_config *c, int argc, char **argv)
{
    const sdf_flag flags[] = {
        SDF_CHECK("pipeline", NULL, file_flag, "a manifest file", "FILE",
                  "Pipeline manifests to run (repeatable; YAML or JSON)"),
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
    if (sdf_parse(&program, flags, sizeof(flags) / sizeof(flags[0]), argc, argv) < 0)
        return -1;
    c->files = files;
    c->nfiles = nfiles;
    if (nfiles == 0) {
        fprintf(stderr, "seldon-dataflow: --pipeline is required (see --help)\n");
        return -1;
    }
    if (df_kafka_defaults(&c->kafka) != 0)
        return -1;
    if (sdkd_check_kafka("seldon-dataflow", &c->kafka) != 0)
        return -1;
    return 0;
}

static int create(void **obj, const void *cfg, uv_loop_t *loop, seldon_metrics *metrics)
{
    return df_new((df **)obj, cfg, loop, metrics);
}

static void stop(void *obj, void (*done)(void *), void *arg)
{
    df_stop(obj, done, arg);
}

static void destroy(void *obj)
{
    df_free(obj);
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
    e.start = df_start;
    e.stop = stop;
    e.destroy = destroy;
    rc = sdkd_run(&e);
    sdk_config_free(&cfg.kafka);
    return rc;
}
