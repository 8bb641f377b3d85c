/*
 * seldon-up: the scheduler, its client API, N embedded server replicas and
 * the ingress in one process (see up.h).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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

static void usage(FILE *f)
{
    fprintf(f,
            "usage: seldon-up [options]   (also: seldon up [options])\n"
            "\n"
            "The whole system in one process: the scheduler (state in --state-dir), its\n"
            "client API for the seldon CLI, N server replicas and the ingress, REST and gRPC\n"
            "on one port. Models are loaded with the CLI (seldon model load -f FILE) and\n"
            "placed on the replicas; requests are routed by the seldon-model header or\n"
            "the REST path. Run again in the same folder, it brings every model back.\n"
            "\n"
            "  --state-dir DIR          scheduler state (LMDB) and fetched artifacts\n"
            "                           (default ./.seldon)\n"
            "  --port N                 inference, REST and gRPC (default 9000)\n"
            "  --scheduler-port N       the scheduler's client API (default 9004)\n"
            "  --metrics-port N         Prometheus /metrics (default 9006; -1: off)\n"
            "  --host ADDR              address to listen on (default 0.0.0.0)\n"
            "  --servers N              embedded server replicas (default 1, at most %d)\n"
            "  --server-name NAME       their server's name (default mlserver)\n"
            "  --server-memory QTY      memory of each replica: 512Mi, 2Gi... (default 1Gi)\n"
            "  --capabilities A,B,...   what each replica offers models' requirements\n"
            "                           (default: mlserver's and triton's capabilities)\n"
            "  --overcommit-percent N   memory overcommit the scheduler allows (default 10)\n"
            "  --workers N              inference workers per replica (default: the cores)\n"
            "  --io-threads N           ingress event loops (default: half the cores)\n"
            "  --max-body BYTES         largest request (default 64 MiB)\n"
            "  --grace MS               on SIGTERM, time left to requests (default 10000)\n"
            "  --ready-timeout S        after a restart, wait this long for the replicas\n"
            "                           before moving models (default 600)\n"
            "  --runtime-path DIRS      ':'-separated folders of runtime plugins\n"
            "  --rclone PATH            the rclone binary for remote storageUri (default rclone)\n"
            "  --rclone-config FILE     rclone's config file\n"
            "  --log-level LEVEL        error, warn, info (default), debug, trace\n"
            "  --help, --version\n"
            "\n"
            "A port of 0 picks a free one. Prints 'listening inference=P scheduler=P\n"
            "metrics=P' on stdout once serving. SIGTERM and SIGINT finish requests in\n"
            "flight, close the state store and exit 0.\n",
            UP_MAX_SERVERS);
}

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

static int parse_args(up_config *c, int argc, char **argv)
{
    enum {
        O_STATE = 1,
        O_PORT,
        O_SPORT,
        O_MPORT,
        O_HOST,
        O_SERVERS,
        O_NAME,
        O_MEM,
        O_CAPS,
        O_OVER,
        O_W,
        O_IO,
        O_BODY,
        O_GRACE,
        O_READY,
        O_RTP,
        O_RCLONE,
        O_RCONF,
        O_LOG,
        O_HELP,
        O_VERSION
    };
    static const struct option opts[] = {
        {"state-dir", required_argument, NULL, O_STATE},
        {"port", required_argument, NULL, O_PORT},
        {"scheduler-port", required_argument, NULL, O_SPORT},
        {"metrics-port", required_argument, NULL, O_MPORT},
        {"host", required_argument, NULL, O_HOST},
        {"servers", required_argument, NULL, O_SERVERS},
        {"server-name", required_argument, NULL, O_NAME},
        {"server-memory", required_argument, NULL, O_MEM},
        {"capabilities", required_argument, NULL, O_CAPS},
        {"overcommit-percent", required_argument, NULL, O_OVER},
        {"workers", required_argument, NULL, O_W},
        {"io-threads", required_argument, NULL, O_IO},
        {"max-body", required_argument, NULL, O_BODY},
        {"grace", required_argument, NULL, O_GRACE},
        {"ready-timeout", required_argument, NULL, O_READY},
        {"runtime-path", required_argument, NULL, O_RTP},
        {"rclone", required_argument, NULL, O_RCLONE},
        {"rclone-config", required_argument, NULL, O_RCONF},
        {"log-level", required_argument, NULL, O_LOG},
        {"help", no_argument, NULL, O_HELP},
        {"version", no_argument, NULL, O_VERSION},
        {NULL, 0, NULL, 0},
    };
    long cores = sysconf(_SC_NPROCESSORS_ONLN), v;
    size_t i;
    int o;
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
    c->max_body = 64u << 20;
    c->grace_ms = 10000;
    c->ready_timeout_s = 600;
    c->runtime_path = getenv("SELDON_RUNTIME_PATH");
    c->rclone = "rclone";
    c->log_level = SELDON_LOG_INFO;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        const char *bad = NULL;
        switch (o) {
        case O_STATE:
            c->state_dir = optarg;
            if (*optarg == '\0')
                bad = "--state-dir";
            break;
        case O_PORT:
        case O_SPORT:
            if (sdd_parse_long(optarg, 0, 65535, &v) < 0)
                bad = o == O_PORT ? "--port" : "--scheduler-port";
            else if (o == O_PORT)
                c->port = (int)v;
            else
                c->scheduler_port = (int)v;
            break;
        case O_MPORT:
            if (sdd_parse_long(optarg, -1, 65535, &v) < 0)
                bad = "--metrics-port";
            else
                c->metrics_port = (int)v;
            break;
        case O_HOST:
            c->host = optarg;
            break;
        case O_SERVERS:
            if (sdd_parse_long(optarg, 1, UP_MAX_SERVERS, &v) < 0)
                bad = "--servers";
            else
                c->servers = (int)v;
            break;
        case O_NAME:
            c->server_name = optarg;
            if (*optarg == '\0' || strlen(optarg) > 100)
                bad = "--server-name";
            break;
        case O_MEM:
            if (seldon_parse_quantity(&c->server_memory, optarg, strlen(optarg)) != 0 ||
                c->server_memory <= 0)
                bad = "--server-memory";
            break;
        case O_CAPS:
            if (parse_caps(c, optarg) != 0)
                bad = "--capabilities";
            break;
        case O_OVER:
            if (sdd_parse_long(optarg, 0, 1000, &v) < 0)
                bad = "--overcommit-percent";
            else
                c->overcommit = (uint32_t)v;
            break;
        case O_W:
        case O_IO:
            if (sdd_parse_long(optarg, 1, 256, &v) < 0)
                bad = o == O_W ? "--workers" : "--io-threads";
            else if (o == O_W)
                c->workers = (int)v;
            else
                c->io_threads = (int)v;
            break;
        case O_BODY:
            if (sdd_parse_long(optarg, 1024, 1L << 31, &v) < 0)
                bad = "--max-body";
            else
                c->max_body = (size_t)v;
            break;
        case O_GRACE:
            if (sdd_parse_long(optarg, 0, 86400000, &v) < 0)
                bad = "--grace";
            else
                c->grace_ms = (uint64_t)v;
            break;
        case O_READY:
            if (sdd_parse_long(optarg, 0, 86400 * 365, &v) < 0)
                bad = "--ready-timeout";
            else
                c->ready_timeout_s = v;
            break;
        case O_RTP:
            c->runtime_path = optarg;
            break;
        case O_RCLONE:
            c->rclone = optarg;
            break;
        case O_RCONF:
            c->rclone_config = optarg;
            break;
        case O_LOG:
            c->log_level = sdd_log_level_parse(optarg);
            if (c->log_level < 0)
                bad = "--log-level";
            break;
        case O_HELP:
        case 'h':
            usage(stdout);
            exit(0);
        case O_VERSION:
            printf("seldon-up %s\n", seldon_version());
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
        if (bad != NULL) {
            fprintf(stderr, "seldon-up: %s: bad value '%s'\n", bad, optarg);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "seldon-up: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    return 0;
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
static int replica_start(up *u, up_replica *r, uint32_t index, int port)
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

static pthread_mutex_t drain_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t drain_cv = PTHREAD_COND_INITIALIZER;
static int drain_left;

typedef struct h2_slot {
    up *u;
    int i;
} h2_slot;

static h2_slot slots[1024];

static void h2_done(void *arg)
{
    h2_slot *s = arg;
    s->u->h2[s->i] = NULL;
    pthread_mutex_lock(&drain_mu);
    drain_left--;
    pthread_cond_signal(&drain_cv);
    pthread_mutex_unlock(&drain_mu);
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
}

static void wait_drained(uint64_t grace_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)(grace_ms / 1000);
    until.tv_nsec += (long)(grace_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&drain_mu);
    while (drain_left > 0)
        if (pthread_cond_timedwait(&drain_cv, &drain_mu, &until) != 0)
            break;
    pthread_mutex_unlock(&drain_mu);
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
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL); /* every thread started later inherits it */
    signal(SIGPIPE, SIG_IGN);

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
    if (rc == 0)
        rc = sdl_loops_new(&u.loops, u.cfg.io_threads);
    u.h2 = sdd_calloc((size_t)u.cfg.io_threads, sizeof(*u.h2));
    if (rc != 0 || u.h2 == NULL) {
        sdd_log(SELDON_LOG_ERROR, "start-up failed: %s", seldon_last_error());
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
    u.replicas = sdd_calloc((size_t)u.nreplicas, sizeof(*u.replicas));
    if (u.replicas == NULL)
        return 1;
    for (i = 0; i < u.nreplicas; i++) {
        rc = replica_start(&u, &u.replicas[i], (uint32_t)i, port);
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
    u.sched.local_data = &u;
    rc = sc_metrics_setup(&u.sched);
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
    if (u.cfg.metrics_port >= 0) {
        memset(&hc, 0, sizeof(hc));
        hc.host = u.cfg.host;
        hc.port = u.cfg.metrics_port;
        hc.max_body = 4096;
        hc.idle_timeout_ms = 60000;
        hc.handler = up_metrics_handler;
        hc.user_data = &u;
        rc = sdh_server_new(&u.metrics_http, &hc);
        if (rc == 0)
            rc = sdh_server_listen(u.metrics_http, u.ctl);
        if (rc != 0) {
            fprintf(stderr, "seldon-up: --metrics-port %d: %s\n", u.cfg.metrics_port,
                    seldon_last_error());
            return 1;
        }
        mport = sdh_server_port(u.metrics_http);
    }
    rc = sdl_loops_post(u.ctl_loops, 0, up_control_start, &u);
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
    printf("listening inference=%d scheduler=%d metrics=%d\n", port,
           sd2_server_port(u.sched.ports[SC_SVC_CLIENT].srv), mport);
    fflush(stdout);

    while (sigwait(&sigs, &sig) != 0)
        ;
    sdd_log(SELDON_LOG_INFO, "%s: finishing requests in flight, then exiting",
            sig == SIGTERM ? "SIGTERM" : "SIGINT");

    /* 1. The ingress stops taking requests and lets those in flight finish. */
    for (i = 0; i < u.cfg.io_threads && i < 1024; i++) {
        slots[i].u = &u;
        slots[i].i = i;
        pthread_mutex_lock(&drain_mu);
        drain_left++;
        pthread_mutex_unlock(&drain_mu);
        if (sdl_loops_post(u.loops, i, drain_on_loop, &slots[i]) != 0)
            h2_done(&slots[i]);
    }
    sdh_server_stop(u.http, u.cfg.grace_ms);
    wait_drained(u.cfg.grace_ms);
    if (u.metrics_http != NULL)
        sdh_server_stop(u.metrics_http, 0);
    /* 2. The control loop: the client API closes, fetches are stopped, nothing new starts. */
    sdl_loops_post(u.ctl_loops, 0, up_control_stop, &u);
    sdl_loops_stop(u.ctl_loops);
    sdl_loops_join(u.ctl_loops);
    /* 3. The replicas finish their queued work. */
    for (i = 0; i < u.nreplicas; i++)
        srv_exec_stop(&u.replicas[i].s);
    /* 4. The ingress loops end. */
    for (i = 0; i < u.cfg.io_threads && i < 1024; i++)
        sdl_loops_post(u.loops, i, close_on_loop, &slots[i]);
    sdl_loops_stop(u.loops);
    sdl_loops_join(u.loops);
    sdh_server_free(u.http);
    sdh_server_free(u.metrics_http);
    sdl_loops_free(u.loops);
    sdl_loops_free(u.ctl_loops);
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
