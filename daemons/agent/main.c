/*
 * seldon-agent: flags, the loop, signals and /metrics. See agent.h.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "flags.h"
#include "log.h"
#include "sdd.h"
#include "seldon/manifest.h"

static const sdf_program program = {
    "seldon-agent",
    "usage: seldon-agent --server-name NAME --models-dir DIR [options]\n"
    "\n"
    "Runs beside one inference server (Open Inference Protocol with the repository\n"
    "extension, such as seldon-server): registers it with seldon-scheduler as a\n"
    "server replica, loads and unloads the models the scheduler places on it, keeps\n"
    "them within --memory by evicting the least recently used (a request for an\n"
    "evicted model loads it again), and proxies REST and gRPC to the server with the\n"
    "model name mapped to its versioned name (iris -> iris_3).\n",
    "Signals: SIGTERM and SIGINT stop it: requests waiting for a reload are answered,\n"
    "a fetch in progress is stopped, requests and gRPC streams in flight finish\n"
    "(--grace). Prints 'listening http=P grpc=P metrics=P'\n"
    "on stdout once serving.\n",
    25,
};

static int parse_caps(ag_config *c, char *list)
{
    char *save = NULL, *t;
    c->ncaps = 0;
    for (t = strtok_r(list, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
        while (*t == ' ')
            t++;
        if (*t == '\0')
            continue;
        if (c->ncaps == AG_MAX_CAPS)
            return -1;
        c->caps[c->ncaps++] = t;
    }
    return 0;
}

/* --capabilities: the list is split in place (argv's own string). */
static int caps_flag(void *dest, const char *value)
{
    return parse_caps(dest, (char *)value);
}

static int parse_args(ag_config *c, int argc, char **argv)
{
    const sdf_flag flags[] = {
        SDF_FLAG("scheduler-host", SDF_STR, &c->scheduler_host, 0, 0, "H:P",
                 "seldon-scheduler's AgentService (e.g. 127.0.0.1:9005);\n"
                 "without it no command ever comes"),
        SDF_FLAG("server-name", SDF_STR, &c->server_name, 0, 0, "NAME",
                 "the Server this replica belongs to (required)"),
        SDF_FLAG("replica-index", SDF_U32, &c->replica_index, 0, 1000000, "N",
                 "this replica's index (default 0)"),
        SDF_CHECK("capabilities", c, caps_flag, "comma-separated names, at most 64", "A,B",
                  "what the server can run (default mlserver,alibi-detect,\n"
                  "alibi-explain,huggingface,lightgbm,mlflow,python,sklearn,\n"
                  "spark-mlib,xgboost,pytorch)"),
        SDF_FLAG("memory", SDF_QTY, &c->memory, 0, 0, "QTY",
                 "memory for loaded models: bytes, or 512Mi, 2Gi, 1G...\n"
                 "(default 0: no limit)"),
        SDF_FLAG("overcommit-percent", SDF_U32, &c->overcommit, 0, 1000, "N",
                 "the scheduler may place up to memory*(100+N)/100\n"
                 "(default 10)"),
        SDF_FLAG("models-dir", SDF_STR, &c->models_dir, 0, 0, "DIR",
                 "the folder the server serves models from (required)"),
        SDF_FLAG("artifacts-dir", SDF_STR, &c->artifacts_dir, 0, 0, "DIR",
                 "where fetched artifacts are kept, once per storageUri\n"
                 "and artifactVersion (default DIR/.artifacts; on the same\n"
                 "filesystem as --models-dir)"),
        SDF_FLAG("server-http", SDF_STR, &c->server_http, 0, 0, "H:P",
                 "the server's REST address (default 127.0.0.1:8080)"),
        SDF_FLAG("server-grpc", SDF_STR, &c->server_grpc, 0, 0, "H:P",
                 "the server's gRPC address (default 127.0.0.1:8081)"),
        SDF_FLAG("http-port", SDF_INT, &c->http_port, 0, 65535, "N",
                 "the REST proxy (default 9999; 0 picks one); it takes\n"
                 "gRPC (h2c) too"),
        SDF_FLAG("grpc-port", SDF_INT, &c->grpc_port, 0, 65535, "N",
                 "the gRPC proxy (default 9998; 0 picks one)"),
        SDF_FLAG("host", SDF_STR, &c->host, 0, 0, "ADDR", "address to listen on (default 0.0.0.0)"),
        SDF_FLAG("advertise-host", SDF_STR, &c->advertise_host, 0, 0, "HOST",
                 "the address the scheduler gives routers (default\n"
                 "127.0.0.1)"),
        SDF_FLAG("metrics-port", SDF_INT, &c->metrics_port, -1, 65535, "N",
                 "Prometheus /metrics (default 9006; 0 picks one; -1: off)"),
        SDF_FLAG("rclone-config", SDF_STR, &c->rclone_config, 0, 0, "FILE",
                 "rclone's config file, for storageUri remotes"),
        SDF_FLAG("rclone", SDF_STR, &c->rclone, 0, 0, "PATH",
                 "the rclone binary (default rclone, from PATH)"),
        SDF_FLAG("load-wait", SDF_MS, &c->load_wait_ms, 1, 86400000, "MS",
                 "how long a request waits for its evicted model to load\n"
                 "again (default 60000)"),
        SDF_FLAG("server-timeout", SDF_MS, &c->server_timeout_ms, 1, 86400000, "MS",
                 "a load or unload call to the server (default 600000)"),
        SDF_FLAG("reconnect-max", SDF_MS, &c->reconnect_max_ms, 1, 86400000, "MS",
                 "the cap of the reconnect backoff (default 5000)"),
        SDF_FLAG("max-message", SDF_SIZE, &c->max_message, 1024, 1L << 31, "BYTES",
                 "a gRPC request message read whole to rename its model\n"
                 "(default 64 MiB)"),
        SDF_FLAG("grace", SDF_MS, &c->grace_ms, 0, 86400000, "MS",
                 "on SIGTERM, time left to requests in flight (default\n"
                 "10000); also how long an unload waits for them"),
        SDF_FLAG("load-report", SDF_MS, &c->load_report_ms, 0, 86400000, "MS",
                 "how often the requests in flight and idle time of\n"
                 "each model go to the scheduler, for autoscaling\n"
                 "(default 5000; 0: never)"),
        SDF_FLAG("busy-poll", SDF_U32, &c->busy_poll_us, 0, 100000, "US",
                 "after events, the agent's loop looks for more for\n"
                 "up to US microseconds before it sleeps (adaptive,\n"
                 "see seldon-router --help); saves wake-ups on the\n"
                 "proxied path, costs processor time beside the\n"
                 "server (default 200; 0: off)"),
        SDF_FLAG("log-level", SDF_LOG, &c->log_level, 0, 0, "LEVEL",
                 "error, warn, info (default), debug, trace"),
    };
    static char default_caps[] = "mlserver,alibi-detect,alibi-explain,huggingface,lightgbm,"
                                 "mlflow,python,sklearn,spark-mlib,xgboost,pytorch";
    c->replica_index = 0;
    c->overcommit = 10;
    c->server_http = "127.0.0.1:8080";
    c->server_grpc = "127.0.0.1:8081";
    c->http_port = 9999;
    c->grpc_port = 9998;
    c->host = "0.0.0.0";
    c->advertise_host = "127.0.0.1";
    c->metrics_port = 9006;
    c->rclone = "rclone";
    c->load_wait_ms = 60000;
    c->server_timeout_ms = 600000;
    c->reconnect_max_ms = 5000;
    c->max_message = (size_t)64 << 20;
    c->grace_ms = 10000;
    c->load_report_ms = 5000;
    c->log_level = SELDON_LOG_INFO;
    c->busy_poll_us = 200;
    parse_caps(c, default_caps);
    if (sdf_parse(&program, flags, sizeof(flags) / sizeof(flags[0]), argc, argv) < 0)
        return -1;
    if (c->server_name == NULL || c->server_name[0] == '\0') {
        fprintf(stderr, "seldon-agent: --server-name is required (see --help)\n");
        return -1;
    }
    if (c->models_dir == NULL) {
        fprintf(stderr, "seldon-agent: --models-dir is required (see --help)\n");
        return -1;
    }
    return 0;
}

int64_t ag_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int ag_split_addr(const char *addr, char *host, size_t cap, int *port)
{
    const char *colon = strrchr(addr, ':');
    unsigned char tmp[sizeof(struct in6_addr)];
    size_t hl;
    long p;
    if (colon == NULL || sdd_parse_long(colon + 1, 1, 65535, &p) < 0)
        return -1;
    hl = (size_t)(colon - addr);
    if (hl > 1 && addr[0] == '[' && addr[hl - 1] == ']') {
        addr++;
        hl -= 2;
    }
    if (hl == 9 && memcmp(addr, "localhost", 9) == 0) {
        addr = "127.0.0.1";
        hl = 9;
    }
    if (hl == 0 || hl >= cap)
        return -1;
    memcpy(host, addr, hl);
    host[hl] = '\0';
    if (inet_pton(AF_INET, host, tmp) != 1 && inet_pton(AF_INET6, host, tmp) != 1)
        return -1;
    *port = (int)p;
    return 0;
}

/* ------------------------------------------------------------ /metrics */

static void metrics_handler(void *user_data, sdh_req *req, const sdh_request *request)
{
    agent *a = user_data;
    sdf_metrics_respond(req, request, a->metrics);
}

static int setup_metrics(agent *a)
{
    static const char *const per_model[] = {"server", "server_replica", "model", "model_internal"};
    static const char *const infer[] = {"server",         "server_replica", "model",
                                        "model_internal", "method_type",    "code"};
    static const char *const replica[] = {"server", "server_replica"};
    static const char *const agg[] = {"server", "server_replica", "method_type", "code"};
    static const double secs[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                  0.1,    0.25,  0.5,    1,     2.5,  5,     10};
    seldon_series *s = NULL;
    char idx[16];
    const char *rl[2];
    int rc = seldon_metrics_new(&a->metrics);
#define ADD(field, type, name, help, labels, b, nb)                                                \
    if (rc == 0)                                                                                   \
    rc = seldon_metrics_add(&a->field, a->metrics, type, name, help, labels,                       \
                            sizeof(labels) / sizeof(labels[0]), b, nb)
    ADD(m_infer, SELDON_METRIC_COUNTER, "seldon_model_infer_total",
        "Inference requests through the agent's proxy.", infer, NULL, 0);
    ADD(m_infer_secs, SELDON_METRIC_HISTOGRAM, "seldon_model_infer_api_seconds",
        "Inference request time through the agent's proxy, waits for reloads included.", infer,
        secs, sizeof(secs) / sizeof(secs[0]));
    ADD(m_infer_secs_total, SELDON_METRIC_COUNTER, "seldon_model_infer_seconds_total",
        "Seconds spent in inference requests through the agent's proxy.", infer, NULL, 0);
    ADD(m_agg_infer, SELDON_METRIC_COUNTER, "seldon_model_aggregate_infer_total",
        "Inference requests through the agent's proxy, all models together.", agg, NULL, 0);
    ADD(m_agg_secs, SELDON_METRIC_COUNTER, "seldon_model_aggregate_infer_seconds_total",
        "Seconds spent in inference requests, all models together.", agg, NULL, 0);
    ADD(m_loaded, SELDON_METRIC_GAUGE, "seldon_loaded_model_gauge",
        "1 while the model version is loaded on the server.", per_model, NULL, 0);
    ADD(m_loaded_mem, SELDON_METRIC_GAUGE, "seldon_loaded_model_memory_bytes_gauge",
        "Memory of the model version while loaded.", per_model, NULL, 0);
    ADD(m_evict, SELDON_METRIC_COUNTER, "seldon_cache_evict_count",
        "Model versions unloaded from the server to make room.", per_model, NULL, 0);
    ADD(m_miss, SELDON_METRIC_COUNTER, "seldon_cache_miss_count",
        "Requests that found their model evicted and waited for it to load again.", per_model, NULL,
        0);
    ADD(m_load, SELDON_METRIC_COUNTER, "seldon_load_model_counter",
        "Loads on the server (reloads after eviction included).", per_model, NULL, 0);
    ADD(m_unload, SELDON_METRIC_COUNTER, "seldon_unload_model_counter",
        "Unloads from the server (evictions included).", per_model, NULL, 0);
    ADD(m_capacity, SELDON_METRIC_GAUGE, "seldon_server_replica_memory_capacity_bytes_gauge",
        "The replica's memory for models (--memory).", replica, NULL, 0);
#undef ADD
    snprintf(idx, sizeof(idx), "%u", a->cfg.replica_index);
    rl[0] = a->cfg.server_name;
    rl[1] = idx;
    if (rc == 0)
        rc = seldon_metric_series(&s, a->m_capacity, rl);
    if (rc == 0)
        seldon_series_set(s, (double)a->cfg.memory);
    return rc;
}

/* ------------------------------------------------------------ on the loop */

static int start_rc;
static pthread_mutex_t start_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t start_cv = PTHREAD_COND_INITIALIZER;
static int start_done;

static void start_on_loop(void *arg)
{
    agent *a = arg;
    int rc;
    ag_models_check_server(a);
    rc = ag_control_start(a);
    pthread_mutex_lock(&start_mu);
    start_rc = rc;
    start_done = 1;
    pthread_cond_signal(&start_cv);
    pthread_mutex_unlock(&start_mu);
}

static void closed_cb(void *arg)
{
    (void)arg;
}

static void pool_freed(void *arg)
{
    (void)arg;
}

/* First: no new work; requests waiting for a reload are answered. */
static void quiesce_on_loop(void *arg)
{
    ag_models_stop(arg);
}

/* Graceful h2c shutdown: GOAWAY on every connection, then wait for their streams. */
static sdf_countdown draining = SDF_COUNTDOWN_INIT;

static void h2_drained(void *arg)
{
    agent *a = arg;
    a->h2_draining = NULL; /* the server freed itself */
    sdf_countdown_done(&draining);
}

static void drain_on_loop(void *arg)
{
    agent *a = arg;
    if (a->h2 == NULL) {
        h2_drained(a);
        return;
    }
    a->h2_draining = a->h2;
    a->h2 = NULL; /* adopt_h2 refuses new connections now */
    sd2_server_drain(a->h2_draining, h2_drained, a);
}

static void stop_on_loop(void *arg)
{
    agent *a = arg;
    ag_control_stop(a);
    if (a->h2_draining != NULL) /* streams outlived the grace: cut them */
        sd2_server_close(a->h2_draining, closed_cb, NULL);
    a->h2_draining = NULL;
    if (a->h2 != NULL)
        sd2_server_close(a->h2, closed_cb, NULL);
    a->h2 = NULL;
    if (a->h2c != NULL)
        sd2_client_close(a->h2c, closed_cb, NULL);
    a->h2c = NULL;
    if (a->pool != NULL)
        sdc_pool_free(a->pool, pool_freed, NULL);
    a->pool = NULL;
}

static int adopt_h2(void *user_data, const sd_adopt *conn)
{
    agent *a = user_data;
    if (a->h2 == NULL)
        return SELDON_EUNAVAIL;
    return sd2_server_adopt(a->h2, conn);
}

static int ensure_dir(const char *path)
{
    if (mkdir(path, 0755) == 0 || errno == EEXIST)
        return 0;
    return -1;
}

int main(int argc, char **argv)
{
    agent a;
    sdh_config hc;
    sd2_server_cbs h2cbs;
    sd2_opts h2o;
    sdc_pool_options po = SDC_POOL_OPTIONS_INIT;
    sigset_t sigs;
    char arts[4096];
    int sig = 0, rc, mport = -1, gport;

    memset(&a, 0, sizeof(a));
    if (parse_args(&a.cfg, argc, argv) < 0)
        return 2;
    sdd_log_init("seldon-agent", a.cfg.log_level);

    sdf_signals_block(&sigs, 0);

    if (ag_split_addr(a.cfg.server_grpc, a.srv_host, sizeof(a.srv_host), &a.srv_grpc_port) != 0) {
        fprintf(stderr, "seldon-agent: --server-grpc: '%s': expected IP:PORT\n", a.cfg.server_grpc);
        return 2;
    }
    {
        char h[64];
        int p;
        if (ag_split_addr(a.cfg.server_http, h, sizeof(h), &p) != 0) {
            fprintf(stderr, "seldon-agent: --server-http: '%s': expected IP:PORT\n",
                    a.cfg.server_http);
            return 2;
        }
    }
    if (a.cfg.scheduler_host != NULL &&
        ag_split_addr(a.cfg.scheduler_host, a.sched_ip, sizeof(a.sched_ip), &a.sched_port) != 0) {
        fprintf(stderr, "seldon-agent: --scheduler-host: '%s': expected IP:PORT\n",
                a.cfg.scheduler_host);
        return 2;
    }
    if (a.cfg.artifacts_dir == NULL) {
        snprintf(arts, sizeof(arts), "%s/.artifacts", a.cfg.models_dir);
        a.cfg.artifacts_dir = arts;
    }
    if (ensure_dir(a.cfg.models_dir) != 0 || ensure_dir(a.cfg.artifacts_dir) != 0) {
        fprintf(stderr, "seldon-agent: %s: %s\n", a.cfg.models_dir, strerror(errno));
        return 2;
    }

    rc = setup_metrics(&a);
    if (rc == 0)
        rc = ag_cache_new(&a.cache, a.cfg.memory);
    if (rc == 0)
        rc = ag_models_restore(&a);
    if (rc == 0 && (rc = sdl_loops_new(&a.loops, 1)) == 0)
        sdl_loops_busy_poll(a.loops, a.cfg.busy_poll_us);
    if (rc != 0) {
        sdd_log(SELDON_LOG_ERROR, "start-up failed: %s", seldon_last_error());
        return 1;
    }
    a.loop = sdl_loops_loop(a.loops, 0);
    memset(&h2o, 0, sizeof(h2o));
    h2o.max_conns_per_upstream = 4;
    memset(&h2cbs, 0, sizeof(h2cbs));
    h2cbs.on_request = ag_grpc_request;
    rc = sd2_server_new(&a.h2, a.loop, &h2o, &h2cbs, &a);
    if (rc == 0)
        rc = sd2_server_listen(a.h2, a.cfg.host, a.cfg.grpc_port);
    if (rc == 0)
        rc = sd2_client_new(&a.h2c, a.loop, &h2o);
    po.max_connections = 64;
    po.max_idle = 64;
    po.request_timeout_ms = 0; /* inference may take long; the server bounds it */
    if (rc == 0)
        rc = sdc_pool_new(&a.pool, a.loop, a.cfg.server_http, &po);
    if (rc != 0) {
        sdd_log(SELDON_LOG_ERROR, "start-up failed (gRPC port %d): %s", a.cfg.grpc_port,
                seldon_last_error());
        return 1;
    }
    gport = sd2_server_port(a.h2);

    memset(&hc, 0, sizeof(hc));
    hc.host = a.cfg.host;
    hc.port = a.cfg.http_port;
    hc.max_body = (size_t)2 << 30;
    hc.idle_timeout_ms = 60000;
    hc.request_timeout_ms = 0;
    hc.handler = ag_rest_handler;
    hc.head_handler = ag_rest_head;
    hc.user_data = &a;
    hc.h2_adopt = adopt_h2;
    hc.h2_user_data = &a;
    hc.pass_content_encoding = 1;
    rc = sdh_server_new(&a.http, &hc);
    if (rc == 0)
        rc = sdh_server_listen(a.http, a.loop);
    if (rc != 0) {
        sdd_log(SELDON_LOG_ERROR, "port %d: %s", a.cfg.http_port, seldon_last_error());
        return 1;
    }
    rc = sdf_metrics_listen(&a.metrics_http, &mport, a.loop, a.cfg.host, a.cfg.metrics_port,
                            metrics_handler, &a);
    if (rc != 0) {
        sdd_log(SELDON_LOG_ERROR, "metrics port %d: %s", a.cfg.metrics_port, seldon_last_error());
        return 1;
    }
    snprintf(a.http_addr, sizeof(a.http_addr), "%s:%d", a.cfg.advertise_host,
             sdh_server_port(a.http));
    snprintf(a.grpc_addr, sizeof(a.grpc_addr), "%s:%d", a.cfg.advertise_host, gport);

    rc = sdl_loops_start(a.loops);
    if (rc == 0)
        rc = sdl_loops_post(a.loops, 0, start_on_loop, &a);
    if (rc != 0) {
        sdd_log(SELDON_LOG_ERROR, "start-up failed: %s", seldon_last_error());
        return 1;
    }
    pthread_mutex_lock(&start_mu);
    while (!start_done)
        pthread_cond_wait(&start_cv, &start_mu);
    pthread_mutex_unlock(&start_mu);
    if (start_rc != 0) {
        sdd_log(SELDON_LOG_ERROR, "start-up failed: %s", seldon_last_error());
        return 1;
    }
    sdd_log(SELDON_LOG_INFO,
            "replica %s/%u: proxy REST %s, gRPC %s; server %s (REST), %s (gRPC); models in %s; "
            "memory %lld bytes (+%u%% overcommit); scheduler %s",
            a.cfg.server_name, a.cfg.replica_index, a.http_addr, a.grpc_addr, a.cfg.server_http,
            a.cfg.server_grpc, a.cfg.models_dir, (long long)a.cfg.memory, a.cfg.overcommit,
            a.cfg.scheduler_host ? a.cfg.scheduler_host : "(none)");
    printf("listening http=%d grpc=%d metrics=%d\n", sdh_server_port(a.http), gport, mport);
    fflush(stdout);

    sig = sdf_signals_wait(&sigs);
    sdd_log(SELDON_LOG_INFO, "%s: stopping", sdf_signal_name(sig));
    sdl_loops_post(a.loops, 0, quiesce_on_loop, &a);
    sdf_countdown_add(&draining, 1);
    sdl_loops_post(a.loops, 0, drain_on_loop, &a);
    sdh_server_stop(a.http, a.cfg.grace_ms);
    sdf_countdown_wait(&draining, a.cfg.grace_ms);
    if (a.metrics_http != NULL)
        sdh_server_stop(a.metrics_http, 0);
    sdl_loops_post(a.loops, 0, stop_on_loop, &a);
    sdl_loops_stop(a.loops);
    sdl_loops_join(a.loops);
    sdh_server_free(a.http);
    sdh_server_free(a.metrics_http);
    sdl_loops_free(a.loops);
    ag_cache_free(a.cache);
    seldon_metrics_free(a.metrics);
    sdd_log(SELDON_LOG_INFO, "stopped");
    return 0;
}
