/*
 * seldon-modelgateway: the model steps of pipelines over Kafka. Consumes the
 * inputs topics of the models the scheduler routes (and of --model), calls each
 * model through seldon-router, produces the answer to the model's outputs topic
 * with the same key and headers (or an error record), and commits an input only
 * once what it produced is acknowledged. Any number of instances share the
 * partitions through one consumer group. docs/modelgateway.md has the details.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flags.h"
#include "kdaemon.h"
#include "log.h"
#include "mg.h"
#include "sdd.h"

static const char *models[MG_MODELS_MAX];

static const sdf_program program = {
    "seldon-modelgateway",
    "usage: seldon-modelgateway [--scheduler-host HOST[:PORT]] [--model NAME...] [options]\n"
    "\n"
    "Serves the model steps of pipelines over Kafka: consumes\n"
    "<prefix>.<namespace>.model.<m>.inputs for every model the scheduler routes (and\n"
    "every --model), calls the model through seldon-router (gRPC ModelInfer,\n"
    "seldon-model: <m>; REST for JSON values), and produces the answer to\n"
    "...model.<m>.outputs with the record's key and headers, or an error record\n"
    "(header seldon-pipeline-errors: <m>) to ...errors.errors. Offsets are\n"
    "committed only once what depends on them is acknowledged by the broker: a\n"
    "crash repeats records, never loses one.\n",
    "The Kafka broker: --kafka-broker, else bootstrap.servers from --kafka-config or\n"
    "--kafka-config-file, else $SELDON_KAFKA_BROKER, else localhost:9092. Any\n"
    "librdkafka property may be set the same way (SASL, TLS, ...). Prints\n"
    "'serving metrics=P' on stdout once started. SIGTERM and SIGINT stop consuming,\n"
    "finish the calls in flight (within --grace), commit and exit 0.\n",
    28,
};

static size_t nmodels;

static int model_flag(void *dest, const char *value)
{
    (void)dest;
    if (nmodels == MG_MODELS_MAX || value[0] == '\0' || strlen(value) > 200)
        return -1;
    models[nmodels++] = value;
    return 0;
}

static int host_flag(void *dest, const char *value)
{
    char addr[64];
    int port = 1;
    if (mg_parse_host(addr, sizeof(addr), &port, value) != 0)
        return -1;
    *(const char **)dest = value;
    return 0;
}

static int parse_args(mg_config *c, int argc, char **argv)
{
    const sdf_flag flags[] = {
        SDF_CHECK("router-host", &c->router_host, host_flag, "HOST or HOST:PORT that resolves",
                  "HOST[:PORT]", "seldon-router (default 127.0.0.1:9000)"),
        SDF_CHECK("scheduler-host", &c->scheduler_host, host_flag,
                  "HOST or HOST:PORT that resolves", "HOST[:PORT]",
                  "serve the models the scheduler routes (RouteService,\n"
                  "port 9002 by default)"),
        SDF_CHECK("model", NULL, model_flag, "a model name", "NAME",
                  "serve this model too (repeatable)"),
        SDF_FLAG("group", SDF_STR, &c->group, 1, 255, "ID",
                 "the consumer group (default seldon-modelgateway);\n"
                 "instances in one group share the partitions"),
        SDF_FLAG("max-inflight", SDF_INT, &c->max_inflight, 1, 100000, "N",
                 "calls at once per input partition (default 8)"),
        SDF_FLAG("timeout", SDF_MS, &c->timeout_ms, 1, 86400000, "MS",
                 "deadline of one model call (default 120000)"),
        SDF_FLAG("max-message", SDF_SIZE, &c->max_message, 1024, 1000000000, "BYTES",
                 "largest answer taken from the router (default 64 MiB)"),
        SDF_FLAG("grace", SDF_MS, &c->grace_ms, 0, 86400000, "MS",
                 "on SIGTERM, time left to calls in flight (default 30000)"),
        SDF_FLAG("metrics-port", SDF_INT, &c->metrics_port, -1, 65535, "N",
                 "Prometheus /metrics (default 9006; 0 picks one; -1: off)"),
        SDF_FLAG("host", SDF_STR, &c->host, 0, 0, "ADDR",
                 "address of the metrics listener (default 0.0.0.0)"),
        SDK_FLAGS(&c->kafka),
        SDF_FLAG("log-level", SDF_LOG, &c->log_level, 0, 0, "LEVEL",
                 "error, warn, info (default), debug, trace"),
    };
    c->router_host = "127.0.0.1:9000";
    c->group = "seldon-modelgateway";
    c->max_inflight = 8;
    c->timeout_ms = 120000;
    c->max_message = 64u << 20;
    c->grace_ms = 30000;
    c->metrics_port = 9006;
    c->host = "0.0.0.0";
    c->log_level = SELDON_LOG_INFO;
    if (sdf_parse(&program, flags, sizeof(flags) / sizeof(flags[0]), argc, argv) < 0)
        return -1;
    c->models = models;
    c->nmodels = nmodels;
    if (sdkd_check_kafka("seldon-modelgateway", &c->kafka) != 0)
        return -1;
    if (c->scheduler_host == NULL && nmodels == 0) {
        fprintf(stderr, "seldon-modelgateway: --scheduler-host or --model is required (see "
                        "--help)\n");
        return -1;
    }
    return 0;
}

static int create(void **obj, const void *cfg, uv_loop_t *loop, seldon_metrics *metrics)
{
    return mg_new((mg **)obj, cfg, loop, metrics);
}

static void stop(void *obj, void (*done)(void *), void *arg)
{
    mg_stop(obj, done, arg);
}

static void destroy(void *obj)
{
    mg_free(obj);
}

int main(int argc, char **argv)
{
    static mg_config cfg;
    sdkd_engine e;
    int rc;

    if (parse_args(&cfg, argc, argv) < 0)
        return 2;
    sdd_log_init("seldon-modelgateway", cfg.log_level);
    memset(&e, 0, sizeof(e));
    e.stopping = "finishing the calls in flight";
    e.host = cfg.host;
    e.metrics_port = cfg.metrics_port;
    e.grace_ms = cfg.grace_ms;
    e.create = create;
    e.cfg = &cfg;
    e.start = mg_start;
    e.stop = stop;
    e.destroy = destroy;
    rc = sdkd_run(&e);
    sdk_config_free(&cfg.kafka);
    return rc;
}
