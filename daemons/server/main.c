/*
 * seldon-server: serves the models of a repository folder over the Open
 * Inference Protocol, REST and gRPC.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "loops.h"
#include "paths.h"
#include "sdd.h"
#include "server.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: seldon-server --model-repository DIR [options]\n"
            "\n"
            "Serves the models of DIR (one folder each, with an MLServer-style\n"
            "model-settings.json) over the Open Inference Protocol, REST and gRPC.\n"
            "\n"
            "  --model-repository DIR  the model folder (required)\n"
            "  --http-port N           REST port (default 8080; 0 picks one)\n"
            "  --grpc-port N           gRPC port (default 8081; 0 picks one)\n"
            "  --host ADDR             address to listen on (default 0.0.0.0)\n"
            "  --io-threads N          HTTP I/O threads (default: half the cores, at least 1)\n"
            "  --grpc-threads N        gRPC completion-queue threads (default: half the cores,\n"
            "                          at least 1)\n"
            "  --workers N             inference workers (default: the core count)\n"
            "  --max-body BYTES        largest request body and gRPC message (default 64 MiB)\n"
            "  --idle-timeout MS       close idle HTTP connections after MS (default 60000)\n"
            "  --grace MS              on SIGTERM, time left to requests in flight (default 30000)\n"
            "  --runtime-path DIRS     ':'-separated folders of runtime plugins, searched\n"
            "                          before $SELDON_RUNTIME_PATH and the plugins that\n"
            "                          ship with the server (found relative to this binary)\n"
            "  --load-all / --no-load-all\n"
            "                          load every model at start-up (default) or none\n"
            "  --log-level LEVEL       error, warn, info (default), debug, trace\n"
            "  --help, --version\n"
            "\n"
            "Prints 'listening http=PORT grpc=PORT' on stdout once serving.\n");
}

static int parse_args(srv_config *c, int argc, char **argv)
{
    enum { O_REPO = 1, O_HTTP, O_GRPC, O_HOST, O_IO, O_GT, O_W, O_BODY, O_IDLE, O_GRACE, O_RTP,
           O_LOADALL, O_NOLOAD, O_LOG, O_HELP, O_VERSION };
    static const struct option opts[] = {
        {"model-repository", required_argument, NULL, O_REPO},
        {"http-port", required_argument, NULL, O_HTTP},
        {"grpc-port", required_argument, NULL, O_GRPC},
        {"host", required_argument, NULL, O_HOST},
        {"io-threads", required_argument, NULL, O_IO},
        {"grpc-threads", required_argument, NULL, O_GT},
        {"workers", required_argument, NULL, O_W},
        {"max-body", required_argument, NULL, O_BODY},
        {"idle-timeout", required_argument, NULL, O_IDLE},
        {"grace", required_argument, NULL, O_GRACE},
        {"runtime-path", required_argument, NULL, O_RTP},
        {"load-all", no_argument, NULL, O_LOADALL},
        {"no-load-all", no_argument, NULL, O_NOLOAD},
        {"log-level", required_argument, NULL, O_LOG},
        {"help", no_argument, NULL, O_HELP},
        {"version", no_argument, NULL, O_VERSION},
        {NULL, 0, NULL, 0},
    };
    long cores = sysconf(_SC_NPROCESSORS_ONLN), v;
    int o;
    if (cores < 1)
        cores = 1;
    c->http_port = 8080;
    c->grpc_port = 8081;
    c->host = "0.0.0.0";
    /*
     * Cheap models run on the I/O threads and the rest on the workers, which sleep
     * when idle. Busy I/O and gRPC threads, one per core each, would take every core
     * from each other, from the workers and from a client on the same machine: the
     * queueing that follows shows in the p99. Half the cores each leaves room, and a
     * single gRPC thread also keeps gRPC core from handing each call between threads.
     */
    c->io_threads = c->grpc_threads = cores >= 2 ? (int)(cores / 2) : 1;
    c->workers = (int)cores;
    c->max_body = 64u << 20;
    c->idle_timeout_ms = 60000;
    c->grace_ms = 30000;
    c->runtime_path = getenv("SELDON_RUNTIME_PATH");
    c->load_all = 1;
    c->log_level = SELDON_LOG_INFO;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        const char *bad = NULL;
        switch (o) {
        case O_REPO:
            c->repo_dir = optarg;
            break;
        case O_HTTP:
        case O_GRPC:
            if (sdd_parse_long(optarg, 0, 65535, &v) < 0)
                bad = o == O_HTTP ? "--http-port" : "--grpc-port";
            else if (o == O_HTTP)
                c->http_port = (int)v;
            else
                c->grpc_port = (int)v;
            break;
        case O_HOST:
            c->host = optarg;
            break;
        case O_IO:
        case O_GT:
        case O_W:
            if (sdd_parse_long(optarg, 1, 256, &v) < 0)
                bad = o == O_IO ? "--io-threads" : o == O_GT ? "--grpc-threads" : "--workers";
            else if (o == O_IO)
                c->io_threads = (int)v;
            else if (o == O_GT)
                c->grpc_threads = (int)v;
            else
                c->workers = (int)v;
            break;
        case O_BODY:
            if (sdd_parse_long(optarg, 1024, 1L << 31, &v) < 0)
                bad = "--max-body";
            else
                c->max_body = (size_t)v;
            break;
        case O_IDLE:
        case O_GRACE:
            if (sdd_parse_long(optarg, 0, 86400000, &v) < 0)
                bad = o == O_IDLE ? "--idle-timeout" : "--grace";
            else if (o == O_IDLE)
                c->idle_timeout_ms = (uint64_t)v;
            else
                c->grace_ms = (uint64_t)v;
            break;
        case O_RTP:
            c->runtime_path = optarg;
            break;
        case O_LOADALL:
            c->load_all = 1;
            break;
        case O_NOLOAD:
            c->load_all = 0;
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
            printf("seldon-server %s\n", seldon_version());
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
        if (bad != NULL) {
            fprintf(stderr, "seldon-server: %s: bad value '%s'\n", bad, optarg);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "seldon-server: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (c->repo_dir == NULL) {
        fprintf(stderr, "seldon-server: --model-repository is required (see --help)\n");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    srv s;
    seldon_repo_options ro = SELDON_REPO_OPTIONS_INIT;
    seldon_service_options so = SELDON_SERVICE_OPTIONS_INIT;
    sdh_config hc;
    sdl_loops *loops = NULL;
    sdg_config gc;
    sdg_method methods[16];
    char grpc_addr[128];
    sigset_t sigs;
    char *runtime_path;
    int sig = 0, rc;

    memset(&s, 0, sizeof(s));
    if (parse_args(&s.cfg, argc, argv) < 0)
        return 2;
    sdd_log_init("seldon-server", s.cfg.log_level);

    /* Signals are taken synchronously by main; every thread started later inherits the mask. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    ro.root = s.cfg.repo_dir;
    /* Plugins beside the binary are found without flags; --runtime-path and the env add folders. */
    runtime_path = sdp_runtime_path(s.cfg.runtime_path, getenv("SELDON_RUNTIME_PATH"));
    ro.runtime_path = runtime_path;
    sdd_log(SELDON_LOG_INFO, "runtime path: %s", runtime_path ? runtime_path : "");
    ro.server_name = "seldon";
    rc = seldon_repo_new(&s.repo, &ro);
    if (rc == 0)
        rc = seldon_metrics_new(&s.metrics);
    if (rc == 0) {
        so.repo = s.repo;
        so.metrics = s.metrics;
        so.server_name = "seldon";
        srv_hooks(&so.hooks, &s);
        rc = seldon_service_new(&s.svc, &so);
    }
    if (rc == 0)
        rc = srv_exec_start(&s);
    if (rc != 0) {
        sdd_log(SELDON_LOG_ERROR, "start-up failed: %s", seldon_last_error());
        return 1;
    }

    memset(&hc, 0, sizeof(hc));
    hc.host = s.cfg.host;
    hc.port = s.cfg.http_port;
    hc.max_body = s.cfg.max_body;
    hc.idle_timeout_ms = s.cfg.idle_timeout_ms;
    hc.request_timeout_ms = s.cfg.idle_timeout_ms; /* a whole request within the idle time */
    hc.handler = srv_rest_handler;
    hc.user_data = &s;
    /* One HTTP loop per I/O thread, each with its own listener on the same port. */
    rc = sdl_loops_new(&loops, s.cfg.io_threads);
    if (rc == 0)
        rc = sdh_server_new(&s.http, &hc);
    for (int i = 0; rc == 0 && i < s.cfg.io_threads; i++)
        rc = sdh_server_listen(s.http, sdl_loops_loop(loops, i));
    if (rc == 0)
        rc = sdl_loops_start(loops);
    if (rc != 0) {
        sdd_log(SELDON_LOG_ERROR, "REST on %s:%d: %s", s.cfg.host, s.cfg.http_port,
                seldon_last_error());
        sdh_server_free(s.http);
        sdl_loops_free(loops);
        return 1;
    }
    memset(&gc, 0, sizeof(gc));
    snprintf(grpc_addr, sizeof(grpc_addr), strchr(s.cfg.host, ':') ? "[%s]:%d" : "%s:%d",
             s.cfg.host, s.cfg.grpc_port);
    gc.address = grpc_addr;
    gc.threads = s.cfg.grpc_threads;
    gc.max_message = s.cfg.max_body;
    gc.methods = methods;
    gc.nmethods = srv_grpc_methods(methods, sizeof(methods) / sizeof(methods[0]), &s);
    rc = sdg_server_start(&s.grpc, &gc);
    if (rc != 0) {
        sdd_log(SELDON_LOG_ERROR, "gRPC on %s: %s", grpc_addr, seldon_last_error());
        sdh_server_stop(s.http, 0);
        sdl_loops_free(loops);
        sdh_server_free(s.http);
        return 1;
    }
    sdd_log(SELDON_LOG_INFO, "serving %s: REST on port %d, gRPC on port %d", s.cfg.repo_dir,
            sdh_server_port(s.http), sdg_server_port(s.grpc));
    printf("listening http=%d grpc=%d\n", sdh_server_port(s.http), sdg_server_port(s.grpc));
    fflush(stdout);

    /* Live at once; ready once the start-up loads are done. */
    if (s.cfg.load_all) {
        size_t failed = 0;
        if (seldon_repo_load_all(s.repo, &failed) != 0)
            sdd_log(SELDON_LOG_ERROR, "%s", seldon_last_error());
        else if (failed)
            sdd_log(SELDON_LOG_WARN, "%zu model(s) failed to load; see the repository index",
                    failed);
    }
    seldon_service_refresh(s.svc);
    seldon_service_set_ready(s.svc, 1);
    sdd_log(SELDON_LOG_INFO, "ready: %zu model(s) loaded", seldon_repo_ready_count(s.repo));

    sigwait(&sigs, &sig);
    sdd_log(SELDON_LOG_INFO, "%s: finishing requests in flight, then exiting",
            sig == SIGTERM ? "SIGTERM" : "SIGINT");
    seldon_service_set_ready(s.svc, 0);
    sdh_server_stop(s.http, s.cfg.grace_ms);
    sdg_server_stop(s.grpc, s.cfg.grace_ms);
    srv_exec_stop(&s);
    sdl_loops_free(loops); /* stops and joins them: nothing is attached any more */
    sdh_server_free(s.http);
    sdg_server_free(s.grpc);
    seldon_service_free(s.svc);
    seldon_repo_free(s.repo);
    sdd_free(runtime_path);
    seldon_metrics_free(s.metrics);
    sdd_log(SELDON_LOG_INFO, "stopped");
    return 0;
}
