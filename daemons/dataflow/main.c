/*
 * seldon-dataflow: pipelines over Kafka. Runs libseldon's pipeline engine for
 * the pipelines of --pipeline manifests: consumes their inputs topics and the
 * outputs topics of the models their steps call, produces the step inputs and
 * the pipelines' answers, and commits an input only once its answer (or error
 * record) is acknowledged. Any number of workers share the partitions through
 * one consumer group. docs/dataflow.md has the details.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "df.h"
#include "flags.h"
#include "log.h"
#include "loops.h"
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
    size_t i;
    int have_strategy = 0;
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
    /* Co-partitioning: partition i of every topic goes to the same worker. */
    for (i = 0; i + 1 < c->kafka.n; i += 2)
        if (strcmp(c->kafka.props[i], "partition.assignment.strategy") == 0)
            have_strategy = 1;
    if (!have_strategy && sdk_config_set(&c->kafka, "partition.assignment.strategy", "range") != 0)
        return -1;
    for (int consumer = 0; consumer < 2; consumer++) {
        rd_kafka_conf_t *conf = NULL;
        if (sdk_conf_build(&conf, &c->kafka, consumer) != 0) {
            fprintf(stderr, "seldon-dataflow: %s\n", seldon_last_error());
            return -1;
        }
        rd_kafka_conf_destroy(conf);
    }
    return 0;
}

typedef struct app {
    df *d;
    df_sched *sched;
    seldon_metrics *metrics;
    sdh_server *metrics_http;
    sdf_countdown stopped;
} app;

static void metrics_handler(void *user_data, sdh_req *req, const sdh_request *request)
{
    app *a = user_data;
    sdf_metrics_respond(req, request, a->metrics);
}

static void all_closed(void *arg)
{
    app *a = arg;
    sdf_countdown_done(&a->stopped);
}

static void stop_on_loop(void *arg)
{
    app *a = arg;
    /* The subscription first: the scheduler stops counting this worker at once. */
    df_sched_close(a->sched);
    a->sched = NULL;
    df_stop(a->d, all_closed, a);
}

int main(int argc, char **argv)
{
    static df_config cfg;
    sdf_countdown init = SDF_COUNTDOWN_INIT;
    sdl_loops *loops = NULL;
    app a;
    sigset_t sigs;
    int rc, sig, mport = -1;

    memset(&a, 0, sizeof(a));
    a.stopped = init;
    if (parse_args(&cfg, argc, argv) < 0)
        return 2;
    sdd_log_init("seldon-dataflow", cfg.log_level);
    sdf_signals_block(&sigs, 0);
    rc = seldon_metrics_new(&a.metrics);
    if (rc == 0)
        rc = sdl_loops_new(&loops, 1);
    if (rc == 0)
        rc = df_new(&a.d, &cfg, sdl_loops_loop(loops, 0), a.metrics);
    if (rc == 0)
        rc = sdf_metrics_listen(&a.metrics_http, &mport, sdl_loops_loop(loops, 0), cfg.host,
                                cfg.metrics_port, metrics_handler, &a);
    if (rc == 0 && cfg.scheduler_host != NULL)
        rc = df_sched_new(&a.sched, a.d, &cfg, sdl_loops_loop(loops, 0));
    if (rc == 0)
        rc = sdl_loops_post(loops, 0, df_start, a.d);
    if (rc == 0 && a.sched != NULL)
        rc = sdl_loops_post(loops, 0, df_sched_start, a.sched);
    if (rc == 0)
        rc = sdl_loops_start(loops);
    if (rc != 0) {
        sdd_log(SELDON_LOG_ERROR, "start-up failed: %s", seldon_last_error());
        return 1;
    }
    printf("serving metrics=%d\n", mport);
    fflush(stdout);

    sig = sdf_signals_wait(&sigs);
    sdd_log(SELDON_LOG_INFO, "%s: delivering the answers in flight, then exiting",
            sdf_signal_name(sig));
    sdf_countdown_add(&a.stopped, 1);
    sdl_loops_post(loops, 0, stop_on_loop, &a);
    sdf_countdown_wait(&a.stopped, cfg.grace_ms + 60000);
    if (a.metrics_http != NULL)
        sdh_server_stop(a.metrics_http, 0);
    sdl_loops_stop(loops);
    sdl_loops_join(loops);
    sdh_server_free(a.metrics_http);
    sdl_loops_free(loops);
    df_free(a.d);
    sdk_config_free(&cfg.kafka);
    seldon_metrics_free(a.metrics);
    sdd_log(SELDON_LOG_INFO, "stopped");
    return 0;
}
