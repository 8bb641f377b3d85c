/*
 * seldon-up: the scheduler, its client API, N embedded server replicas and
 * the ingress in one process (see up.h).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "flags.h"
#include "log.h"
#include "cache.h"
#include "paths.h"
#include "sdd.h"
#include "up.h"

/* What an embedded replica serves: the builtin runtimes and the plugins (MLServer's and Triton's
   names, so that upstream manifests' requirements fit). */
static const char *const default_caps[] = {
    "mlserver", "alibi-detect", "alibi-explain", "huggingface", "lightgbm",   "mlflow",
    "python",   "sklearn",      "spark-mlib",    "xgboost",     "triton",     "dali",
    "fil",      "onnx",         "openvino",      "pytorch",     "tensorflow", "tensorrt"};

#define UP_STR_(x) #x
#define UP_STR(x) UP_STR_(x)

static const sdf_program program = {
    "seldon-up",
    "usage: seldon-up [options]   (also: seldon up [options])\n"
    "\n"
    "The whole system in one process: the scheduler (state in --state-dir), its\n"
    "client API for the seldon CLI, N server replicas and the ingress, REST and gRPC\n"
    "on one port. Models are loaded with the CLI (seldon model load -f FILE) and\n"
    "placed on the replicas; requests are routed by the seldon-model header or\n"
    "the REST path. Run again in the same folder, it brings every model back.\n",
    "A port of 0 picks a free one. Prints 'listening inference=P scheduler=P\n"
    "metrics=P' on stdout once serving (with --kafka: ' kafka=BROKERS' too).\n"
    "SIGTERM and SIGINT finish requests in flight, close the state store and exit 0.\n"
    "With --kafka, pipelines run over Kafka as with seldon-pipelinegateway --kafka,\n"
    "seldon-dataflow and seldon-modelgateway, all in this process; the --kafka-*\n"
    "flags and $SELDON_KAFKA_BROKER are theirs.\n",
    27,
};

static int parse_caps(up_config *c, char *list)
{
    char *save = NULL, *tok;
    c->ncaps = 0;
    for (tok = strtok_r(list, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        if (*tok == '\0')
            continue;
        if (c->ncaps == UP_MAX_CAPS)
            return -1;
        c->caps[c->ncaps++] = tok;
    }
    return 0;
}

/* --capabilities: the list is split in place (argv's own string). */
static int caps_flag(void *dest, const char *value)
{
    return parse_caps(dest, (char *)value);
}

static int parse_args(up_config *c, int argc, char **argv)
{
    const sdf_flag flags[] = {
        SDF_FLAG("state-dir", SDF_STR, &c->state_dir, 1, 0, "DIR",
                 "scheduler state (LMDB) and fetched artifacts\n"
                 "(default ./.seldon)"),
        SDF_FLAG("port", SDF_INT, &c->port, 0, 65535, "N",
                 "inference, REST and gRPC (default 9000)"),
        SDF_FLAG("scheduler-port", SDF_INT, &c->scheduler_port, 0, 65535, "N",
                 "the scheduler's client API (default 9004)"),
        SDF_FLAG("metrics-port", SDF_INT, &c->metrics_port, -1, 65535, "N",
                 "Prometheus /metrics (default 9006; -1: off)"),
        SDF_FLAG("host", SDF_STR, &c->host, 0, 0, "ADDR", "address to listen on (default 0.0.0.0)"),
        SDF_FLAG("servers", SDF_INT, &c->servers, 1, UP_MAX_SERVERS, "N",
                 "embedded server replicas (default 1, at most " UP_STR(UP_MAX_SERVERS) ")"),
        SDF_FLAG("server-name", SDF_STR, &c->server_name, 1, 100, "NAME",
                 "their server's name (default mlserver)"),
        SDF_FLAG("server-memory", SDF_QTY, &c->server_memory, 1, 0, "QTY",
                 "memory of each replica: 512Mi, 2Gi... (default 1Gi)"),
        SDF_CHECK("capabilities", c, caps_flag, "comma-separated names, at most 64", "A,B,...",
                  "what each replica offers models' requirements\n"
                  "(default: mlserver's and triton's capabilities)"),
        SDF_FLAG("overcommit-percent", SDF_U32, &c->overcommit, 0, 1000, "N",
                 "memory overcommit the scheduler allows (default 10)"),
        SDF_FLAG("workers", SDF_INT, &c->workers, 1, 256, "N",
                 "inference workers per replica (default: the cores)"),
        SDF_FLAG("io-threads", SDF_INT, &c->io_threads, 1, 256, "N",
                 "ingress event loops (default: half the cores)"),
        SDF_FLAG("busy-poll", SDF_U32, &c->busy_poll_us, 0, 100000, "US",
                 "after events, an ingress loop looks for more for\n"
                 "up to US microseconds before it sleeps (adaptive,\n"
                 "see seldon-router --help); saves wake-ups at low\n"
                 "concurrency, costs processor time (default 200;\n"
                 "0: off)"),
        SDF_FLAG("max-body", SDF_SIZE, &c->max_body, 1024, 1L << 31, "BYTES",
                 "largest request (default 64 MiB)"),
        SDF_FLAG("grace", SDF_MS, &c->grace_ms, 0, 86400000, "MS",
                 "on SIGTERM, time left to requests (default 10000)"),
        SDF_FLAG("ready-timeout", SDF_LONG, &c->ready_timeout_s, 0, 86400 * 365, "S",
                 "after a restart, wait this long for the replicas\n"
                 "before moving models (default 600)"),
        SDF_FLAG("runtime-path", SDF_STR, &c->runtime_path, 0, 0, "DIRS",
                 "':'-separated folders of runtime plugins"),
        SDF_FLAG("rclone", SDF_STR, &c->rclone, 0, 0, "PATH",
                 "the rclone binary for remote storageUri (default rclone)"),
        SDF_FLAG("rclone-config", SDF_STR, &c->rclone_config, 0, 0, "FILE", "rclone's config file"),
        SDF_FLAG("pipeline-timeout", SDF_MS, &c->pipeline_timeout_ms, 1, 86400000, "MS",
                 "a pipeline request's timeout unless it sets\n"
                 "seldon-timeout-ms or a gRPC deadline (default 60000)"),
        SDF_FLAG("pipeline-max-requests", SDF_U32, &c->pipeline_max_requests, 1, 1u << 24, "N",
                 "pipeline requests alive per ingress loop (default 65536)"),
        SDF_FLAG("pipeline-async-max", SDF_U32, &c->pipeline_async_max, 1, 1u << 20, "N",
                 "asynchronous pipeline results kept (default 1024)"),
        SDF_FLAG("pipeline-async-ttl", SDF_MS, &c->pipeline_async_ttl_ms, 1, 86400000, "MS",
                 "how long an asynchronous result is kept (default 60000)"),
        SDF_FLAG("server-cooldown", SDF_MS, &c->server_cooldown_ms, 1, 86400000 * 30L, "MS",
                 "a Server resource with maxReplicas gets more embedded\n"
                 "replicas when its models want them; the extra ones go\n"
                 "once fewer are wanted for this long (default 600000;\n"
                 "docs/autoscaling.md)"),
        SDF_FLAG("load-report", SDF_MS, &c->load_report_ms, 0, 86400000, "MS",
                 "how often the replicas' requests in flight and idle\n"
                 "time per model go to the autoscaler (default 5000;\n"
                 "0: never)"),
        SDF_FLAG("scale-up-inflight", SDF_U32, &c->scale_up_inflight, 1, 1000000, "N",
                 "autoscaling: a model (with minReplicas/maxReplicas)\n"
                 "gains a replica when its requests in flight per\n"
                 "replica stay above N (default 30)"),
        SDF_FLAG("scale-up-period", SDF_MS, &c->scale_up_period_ms, 1, 86400000, "MS",
                 "... for this long (default 20000)"),
        SDF_FLAG("scale-down-idle", SDF_MS, &c->scale_down_idle_ms, 1, 86400000 * 30L, "MS",
                 "it loses one when a replica has had no request for\n"
                 "this long (default 600000)"),
        SDF_FLAG("kafka", SDF_SET, &c->kafka, 1, 0, "",
                 "pipelines over Kafka: the pipeline gateway, dataflow\n"
                 "and model gateway roles run in process; the broker is\n"
                 "--kafka-broker's, else a development broker started\n"
                 "here (seldon-kafka-dev)"),
        SDF_FLAG("kafka-dev-port", SDF_INT, &c->kafka_dev_port, 0, 65535, "N",
                 "the development broker's port (default 9092; 0 picks one)"),
        SDK_FLAGS(&c->kafka_cfg),
        SDF_FLAG("log-level", SDF_LOG, &c->log_level, 0, 0, "LEVEL",
                 "error, warn, info (default), debug, trace"),
    };
    int rc;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    size_t i;
    if (cores < 1)
        cores = 1;
    c->state_dir = "./.seldon";
    c->host = "0.0.0.0";
    c->port = 9000;
    c->scheduler_port = 9004;
    c->metrics_port = 9006;
    c->servers = 1;
    c->server_name = "mlserver";
    c->server_memory = (int64_t)1 << 30;
    for (i = 0; i < sizeof(default_caps) / sizeof(default_caps[0]); i++)
        c->caps[i] = default_caps[i];
    c->ncaps = i;
    c->overcommit = 10;
    c->workers = (int)cores;
    c->io_threads = cores >= 2 ? (int)(cores / 2) : 1;
    c->busy_poll_us = 200;
    c->max_body = 64u << 20;
    c->grace_ms = 10000;
    c->ready_timeout_s = 600;
    c->runtime_path = getenv("SELDON_RUNTIME_PATH");
    c->rclone = "rclone";
    c->log_level = SELDON_LOG_INFO;
    c->pipeline_timeout_ms = 60000;
    c->pipeline_max_requests = 65536;
    c->pipeline_async_max = 1024;
    c->pipeline_async_ttl_ms = 60000;
    c->load_report_ms = 5000;
    c->kafka_dev_port = 9092;
    rc = sdf_parse(&program, flags, sizeof(flags) / sizeof(flags[0]), argc, argv);
    if (rc < 0)
        return rc;
    if (c->kafka_cfg.broker != NULL)
        c->kafka = 1; /* --kafka-broker names the cluster pipelines run on */
    if (c->kafka) {
        for (int consumer = 0; consumer < 2; consumer++) {
            rd_kafka_conf_t *conf = NULL;
            if (sdk_conf_build(&conf, &c->kafka_cfg, consumer) != 0) {
                fprintf(stderr, "seldon-up: %s\n", seldon_last_error());
                return -1;
            }
            rd_kafka_conf_destroy(conf);
        }
    }
    return rc;
}

int64_t up_mono_ns(void)
{
    return (int64_t)uv_hrtime();
}

static int make_dir(const char *path)
{
    if (mkdir(path, 0755) == 0 || errno == EEXIST)
        return 0;
    return sdd_error(SELDON_EIO, "%s: %s", path, strerror(errno));
}

/* An embedded replica: a seldon-server core over the artifacts folder. */
int up_replica_start(up *u, up_replica *r, uint32_t index, int port)
{
    seldon_repo_options ro = SELDON_REPO_OPTIONS_INIT;
    seldon_service_options so = SELDON_SERVICE_OPTIONS_INIT;
    int rc;
    r->u = u;
    r->index = index;
    snprintf(r->addr, sizeof(r->addr), "%s-%u.seldon-up:%d", u->cfg.server_name, index,
             port > 0 ? port : 9000);
    r->s.cfg.workers = u->cfg.workers;
    rc = ag_cache_new(&r->cache, u->cfg.server_memory); /* evictions keep loads within it */
    if (rc != 0)
        return rc;
    ro.root = u->models_dir;
    ro.runtime_path = u->runtime_path;
    ro.server_name = "seldon";
    rc = seldon_repo_new(&r->s.repo, &ro);
    if (rc == 0)
        rc = seldon_metrics_new(&r->s.metrics);
    if (rc == 0) {
        so.repo = r->s.repo;
        so.metrics = r->s.metrics;
        so.server_name = "seldon";
        srv_hooks(&so.hooks, &r->s);
        r->hooks = so.hooks;
        rc = seldon_service_new(&r->s.svc, &so);
    }
    if (rc == 0)
        rc = srv_exec_start(&r->s);
    if (rc == 0)
        seldon_service_set_ready(r->s.svc, 1);
    return rc;
}

/* ------------------------------------------------------------------ shutdown of h2c */

static sdf_countdown draining = SDF_COUNTDOWN_INIT;

typedef struct h2_slot {
    up *u;
    int i;
} h2_slot;

static h2_slot slots[1024];

static void h2_done(void *arg)
{
    h2_slot *s = arg;
    s->u->h2[s->i] = NULL;
    sdf_countdown_done(&draining);
}

/* GOAWAY: streams in flight finish, then the connections close. */
static void drain_on_loop(void *arg)
{
    h2_slot *s = arg;
    if (s->u->h2[s->i] != NULL)
        sd2_server_drain(s->u->h2[s->i], h2_done, s);
    else
        h2_done(s);
}

/* Streams that outlived the grace are cut. */
static void close_on_loop(void *arg)
{
    h2_slot *s = arg;
    if (s->u->h2[s->i] != NULL)
        sd2_server_close(s->u->h2[s->i], NULL, NULL);
    up_pl_close(s->u, s->i);
}

static sdf_countdown kafka_stopped = SDF_COUNTDOWN_INIT;

static void kafka_stopped_done(void *arg)
{
    (void)arg;
    sdf_countdown_done(&kafka_stopped);
}

static void kafka_stop_on_loop(void *arg)
{
    up_kafka_stop(arg, kafka_stopped_done, NULL);
}

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv)
{
    static up u;
    seldon_sched_config scfg = SELDON_SCHED_CONFIG_INIT;
    sdh_config hc;
    sd2_server_cbs h2cbs;
    sd2_opts h2o;
    sigset_t sigs;
    struct rlimit rl;
    int sig = 0, rc, i, port, mport = -1;
    size_t n;

    if (parse_args(&u.cfg, argc, argv) < 0)
        return 2;
    sdd_log_init("seldon-up", u.cfg.log_level);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    sdf_signals_block(&sigs, 0); /* every thread started later inherits it */

    n = strlen(u.cfg.state_dir) + 16;
    u.artifacts_dir = sdd_malloc(n);
    u.models_dir = sdd_malloc(n);
    if (u.artifacts_dir == NULL || u.models_dir == NULL)
        return 1;
    snprintf(u.artifacts_dir, n, "%s/artifacts", u.cfg.state_dir);
    snprintf(u.models_dir, n, "%s/models", u.cfg.state_dir);
    rc = make_dir(u.cfg.state_dir);
    if (rc == 0)
        rc = make_dir(u.artifacts_dir);
    if (rc == 0)
        rc = make_dir(u.models_dir);
    if (rc != 0) {
        fprintf(stderr, "seldon-up: --state-dir: %s\n", seldon_last_error());
        return 1;
    }
    u.runtime_path = sdp_runtime_path(u.cfg.runtime_path, getenv("SELDON_RUNTIME_PATH"));
    sdd_log(SELDON_LOG_INFO, "runtime path: %s", u.runtime_path ? u.runtime_path : "");

    /* The scheduler, its state reloaded from the folder when there is one. */
    scfg.state_dir = u.cfg.state_dir;
    scfg.ready_timeout_ms = (int64_t)u.cfg.ready_timeout_s * 1000;
    rc = seldon_sched_open(&u.sched.sched, &scfg, sc_now_ns());
    if (rc != 0) {
        fprintf(stderr, "seldon-up: %s: %s\n", u.cfg.state_dir, seldon_last_error());
        return 1;
    }
    u.sched.was_ready = seldon_sched_ready(u.sched.sched) != 0;
    sdd_log(SELDON_LOG_INFO, "state in %s%s", u.cfg.state_dir,
            u.sched.was_ready ? "" : ": reloaded; the replicas reconnect and get their models");

    /* The ingress: REST and gRPC on one port, one h2c server per loop for adopted connections. */
    rc = up_metrics_setup(&u);
    if (rc == 0 && (rc = sdl_loops_new(&u.loops, u.cfg.io_threads)) == 0)
        sdl_loops_busy_poll(u.loops, u.cfg.busy_poll_us);
    u.h2 = sdd_calloc((size_t)u.cfg.io_threads, sizeof(*u.h2));
    if (rc != 0 || u.h2 == NULL) {
        sdd_log(SELDON_LOG_ERROR, "start-up failed: %s", seldon_last_error());
        return 1;
    }
    rc = up_pl_setup(&u);
    if (rc != 0) {
        fprintf(stderr, "seldon-up: pipelines: %s\n", seldon_last_error());
        return 1;
    }
    memset(&h2o, 0, sizeof(h2o));
    h2o.idle_timeout_ms = 60000;
    memset(&h2cbs, 0, sizeof(h2cbs));
    h2cbs.on_request = up_grpc_request;
    for (i = 0; i < u.cfg.io_threads && rc == 0; i++)
        rc = sd2_server_new(&u.h2[i], sdl_loops_loop(u.loops, i), &h2o, &h2cbs, &u);
    memset(&hc, 0, sizeof(hc));
    hc.host = u.cfg.host;
    hc.port = u.cfg.port;
    hc.max_body = u.cfg.max_body;
    hc.idle_timeout_ms = 60000;
    hc.request_timeout_ms = 60000;
    hc.handler = up_rest_handler;
    hc.user_data = &u;
    hc.h2_adopt = up_adopt_h2;
    hc.h2_user_data = &u;
    if (rc == 0)
        rc = sdh_server_new(&u.http, &hc);
    for (i = 0; i < u.cfg.io_threads && rc == 0; i++)
        rc = sdh_server_listen(u.http, sdl_loops_loop(u.loops, i));
    if (rc != 0) {
        fprintf(stderr, "seldon-up: --port %d: %s\n", u.cfg.port, seldon_last_error());
        return 1;
    }
    port = sdh_server_port(u.http);

    /* The replicas. */
    u.nreplicas = u.cfg.servers;
    /* Room for every replica a scale request may start (pointers to them stay valid). */
    u.replicas = sdd_calloc(UP_MAX_SERVERS, sizeof(*u.replicas));
    if (u.replicas == NULL)
        return 1;
    for (i = 0; i < u.nreplicas; i++) {
        rc = up_replica_start(&u, &u.replicas[i], (uint32_t)i, port);
        if (rc != 0) {
            fprintf(stderr, "seldon-up: replica %d: %s\n", i, seldon_last_error());
            return 1;
        }
    }

    /* The control loop: the scheduler's client API and the agent stage. */
    u.sched.cfg.host = u.cfg.host;
    u.sched.cfg.ports[SC_SVC_CLIENT] = u.cfg.scheduler_port;
    u.sched.cfg.ports[SC_SVC_AGENT] = -1; /* the replicas are in process */
    u.sched.cfg.ports[SC_SVC_ROUTE] = -1; /* and so is the router */
    u.sched.cfg.state_dir = u.cfg.state_dir;
    u.sched.cfg.log_level = u.cfg.log_level;
    u.sched.local_command = up_command;
    u.sched.after_pump = up_after_pump;
    u.sched.pipelines_in_process = 1; /* pipes.c serves them: no gateway, no pipeline routes */
    u.sched.local_data = &u;
    u.sched.scale_hook = up_scale;
    u.sched.cfg.server_cooldown_ms = u.cfg.server_cooldown_ms;
    u.sched.cfg.scale_up_inflight = u.cfg.scale_up_inflight; /* load.c reports the load */
    u.sched.cfg.scale_up_period_ms = u.cfg.scale_up_period_ms;
    u.sched.cfg.scale_down_idle_ms = u.cfg.scale_down_idle_ms;
    rc = sc_metrics_setup(&u.sched);
    if (rc == 0)
        rc = sc_autoscale_setup(&u.sched);
    if (rc == 0)
        rc = sdl_loops_new(&u.ctl_loops, 1);
    if (rc == 0) {
        u.ctl = sdl_loops_loop(u.ctl_loops, 0);
        u.sched.loop = u.ctl;
        rc = sc_services_start(&u.sched);
    }
    if (rc != 0) {
        fprintf(stderr, "seldon-up: --scheduler-port %d: %s\n", u.cfg.scheduler_port,
                seldon_last_error());
        return 1;
    }
    if (u.cfg.kafka && (rc = up_kafka_setup(&u, port)) != 0) {
        fprintf(stderr, "seldon-up: --kafka: %s\n", seldon_last_error());
        up_kafka_free(&u);
        return 1;
    }
    rc = sdf_metrics_listen(&u.metrics_http, &mport, u.ctl, u.cfg.host, u.cfg.metrics_port,
                            up_metrics_handler, &u);
    if (rc != 0) {
        fprintf(stderr, "seldon-up: --metrics-port %d: %s\n", u.cfg.metrics_port,
                seldon_last_error());
        return 1;
    }
    rc = sdl_loops_post(u.ctl_loops, 0, up_control_start, &u);
    if (rc == 0 && u.kafka != NULL)
        rc = sdl_loops_post(u.ctl_loops, 0, up_kafka_start, &u);
    if (rc == 0)
        rc = sdl_loops_start(u.ctl_loops);
    if (rc == 0)
        rc = sdl_loops_start(u.loops);
    if (rc != 0) {
        sdd_log(SELDON_LOG_ERROR, "start-up failed: %s", seldon_last_error());
        return 1;
    }
    sdd_log(SELDON_LOG_INFO,
            "serving: inference (REST and gRPC) on %d, scheduler on %d, %d replica(s) of %s", port,
            sd2_server_port(u.sched.ports[SC_SVC_CLIENT].srv), u.nreplicas, u.cfg.server_name);
    printf("listening inference=%d scheduler=%d metrics=%d%s%s\n", port,
           sd2_server_port(u.sched.ports[SC_SVC_CLIENT].srv), mport, u.kafka ? " kafka=" : "",
           u.kafka ? up_kafka_brokers(&u) : "");
    fflush(stdout);

    sig = sdf_signals_wait(&sigs);
    sdd_log(SELDON_LOG_INFO, "%s: finishing requests in flight, then exiting",
            sdf_signal_name(sig));

    /* 1. The ingress stops taking requests and lets those in flight finish. */
    for (i = 0; i < u.cfg.io_threads && i < 1024; i++) {
        slots[i].u = &u;
        slots[i].i = i;
        sdf_countdown_add(&draining, 1);
        if (sdl_loops_post(u.loops, i, drain_on_loop, &slots[i]) != 0)
            h2_done(&slots[i]);
    }
    sdh_server_stop(u.http, u.cfg.grace_ms);
    sdf_countdown_wait(&draining, u.cfg.grace_ms);
    if (u.metrics_http != NULL)
        sdh_server_stop(u.metrics_http, 0);
    /* 2. --kafka: the roles deliver what is in flight, commit and close. */
    if (u.kafka != NULL) {
        sdf_countdown_add(&kafka_stopped, 1);
        if (sdl_loops_post(u.ctl_loops, 0, kafka_stop_on_loop, &u) != 0)
            sdf_countdown_done(&kafka_stopped);
        sdf_countdown_wait(&kafka_stopped, u.cfg.grace_ms + 60000);
    }
    /* 3. The control loop: the client API closes, fetches are stopped, nothing new starts. */
    sdl_loops_post(u.ctl_loops, 0, up_control_stop, &u);
    sdl_loops_stop(u.ctl_loops);
    sdl_loops_join(u.ctl_loops);
    /* 4. The replicas finish their queued work. */
    for (i = 0; i < u.nreplicas; i++)
        srv_exec_stop(&u.replicas[i].s);
    /* 5. The ingress loops end. */
    for (i = 0; i < u.cfg.io_threads && i < 1024; i++)
        sdl_loops_post(u.loops, i, close_on_loop, &slots[i]);
    sdl_loops_stop(u.loops);
    sdl_loops_join(u.loops);
    sdh_server_free(u.http);
    sdh_server_free(u.metrics_http);
    sdl_loops_free(u.loops);
    sdl_loops_free(u.ctl_loops);
    up_pl_free(&u);
    up_kafka_free(&u); /* and the development broker stops */
    sdk_config_free(&u.cfg.kafka_cfg);
    up_control_free(&u);
    for (i = 0; i < u.nreplicas; i++) {
        ag_entry *e;
        seldon_service_free(u.replicas[i].s.svc);
        seldon_repo_free(u.replicas[i].s.repo);
        seldon_metrics_free(u.replicas[i].s.metrics);
        for (e = u.replicas[i].cache ? ag_cache_first(u.replicas[i].cache) : NULL; e != NULL;
             e = e->next)
            sdd_free(e->user);
        ag_cache_free(u.replicas[i].cache);
    }
    up_table_free(atomic_load(&u.table));
    seldon_sched_close(u.sched.sched); /* every change was committed when it was made */
    seldon_buf_free(&u.sched.route_frame);
    seldon_metrics_free(u.sched.metrics);
    seldon_metrics_free(u.metrics);
    sdd_free(u.replicas);
    sdd_free(u.h2);
    sdd_free(u.runtime_path);
    sdd_free(u.artifacts_dir);
    sdd_free(u.models_dir);
    sdd_log(SELDON_LOG_INFO, "stopped");
    return 0;
}
