/*
 * seldon-server: serves the models of a repository folder over the Open
 * Inference Protocol, REST and gRPC.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "flags.h"
#include "log.h"
#include "loops.h"
#include "paths.h"
#include "sdd.h"
#include "server.h"

static const sdf_program program = {
    "seldon-server",
    "usage: seldon-server --model-repository DIR [options]\n"
    "\n"
    "Serves the models of DIR (one folder each, with an MLServer-style\n"
    "model-settings.json) over the Open Inference Protocol, REST and gRPC.\n",
    "Prints 'listening http=PORT grpc=PORT' on stdout once serving.\n",
    26,
};

static int parse_args(srv_config *c, int argc, char **argv)
{
    const sdf_flag flags[] = {
        SDF_FLAG("model-repository", SDF_STR, &c->repo_dir, 0, 0, "DIR",
                 "the model folder (required)"),
        SDF_FLAG("http-port", SDF_INT, &c->http_port, 0, 65535, "N",
                 "REST port (default 8080; 0 picks one)"),
        SDF_FLAG("grpc-port", SDF_INT, &c->grpc_port, 0, 65535, "N",
                 "gRPC port (default 8081; 0 picks one)"),
        SDF_FLAG("host", SDF_STR, &c->host, 0, 0, "ADDR", "address to listen on (default 0.0.0.0)"),
        SDF_FLAG("io-threads", SDF_INT, &c->io_threads, 1, 256, "N",
                 "HTTP I/O threads (default: half the cores, at least 1)"),
        SDF_FLAG("grpc-threads", SDF_INT, &c->grpc_threads, 1, 256, "N",
                 "gRPC completion-queue threads (default: half the cores,\n"
                 "at least 1)"),
        SDF_FLAG("workers", SDF_INT, &c->workers, 1, 256, "N",
                 "inference workers (default: the core count)"),
        SDF_FLAG("max-body", SDF_SIZE, &c->max_body, 1024, 1L << 31, "BYTES",
                 "largest request body and gRPC message (default 64 MiB)"),
        SDF_FLAG("idle-timeout", SDF_MS, &c->idle_timeout_ms, 0, 86400000, "MS",
                 "close idle HTTP connections after MS (default 60000)"),
        SDF_FLAG("grace", SDF_MS, &c->grace_ms, 0, 86400000, "MS",
                 "on SIGTERM, time left to requests in flight (default 30000)"),
        SDF_FLAG("runtime-path", SDF_STR, &c->runtime_path, 0, 0, "DIRS",
                 "':'-separated folders of runtime plugins, searched\n"
                 "before $SELDON_RUNTIME_PATH and the plugins that\n"
                 "ship with the server (found relative to this binary)"),
        SDF_FLAG("load-all", SDF_SET, &c->load_all, 1, 0, "/ --no-load-all",
                 "load every model at start-up (default) or none"),
        SDF_FLAG("no-load-all", SDF_SET, &c->load_all, 0, 0, "", NULL),
        SDF_FLAG("log-level", SDF_LOG, &c->log_level, 0, 0, "LEVEL",
                 "error, warn, info (default), debug, trace"),
    };
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
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
    if (sdf_parse(&program, flags, sizeof(flags) / sizeof(flags[0]), argc, argv) < 0)
        return -1;
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
    sdf_signals_block(&sigs, 0);

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

    sig = sdf_signals_wait(&sigs);
    sdd_log(SELDON_LOG_INFO, "%s: finishing requests in flight, then exiting",
            sdf_signal_name(sig));
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
