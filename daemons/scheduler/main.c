/*
 * seldon-scheduler: the control plane. One libuv loop owns the scheduler
 * (libseldon's seldon_sched, all state in LMDB) and serves clients (:9004),
 * agents (:9005) and routers (:9002) over h2c gRPC; the main thread waits for
 * SIGTERM/SIGINT and stops it cleanly.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "flags.h"
#include "loops.h"
#include "log.h"
#include "schedd.h"
#include "sdd.h"

static const sdf_program program = {
    "seldon-scheduler",
    "usage: seldon-scheduler [options]\n"
    "\n"
    "The control plane: places models on server replicas, tells their agents what\n"
    "to load and unload, and pushes the route table to routers. Every resource and\n"
    "its state is kept in LMDB under --state-dir; a restart brings it all back,\n"
    "waits for the known agents to reconnect, and reloads nothing they still hold.\n",
    "A port of 0 picks a free one. Prints 'listening client=P agent=P route=P\n"
    "metrics=P' on stdout once serving. SIGTERM and SIGINT end every stream, close\n"
    "the state store and exit 0.\n",
    25,
};

static int parse_args(sc_config *c, int argc, char **argv)
{
    const sdf_flag flags[] = {
        SDF_FLAG("state-dir", SDF_STR, &c->state_dir, 0, 0, "DIR",
                 "LMDB folder (default ./.seldon-scheduler)"),
        SDF_FLAG("ready-timeout", SDF_LONG, &c->ready_timeout_s, 0, 86400 * 365, "S",
                 "after a restart, wait this long for known agents\n"
                 "before moving their models (default 600)"),
        SDF_FLAG("client-port", SDF_INT, &c->ports[SC_SVC_CLIENT], 0, 65535, "N",
                 "SchedulerService, for the seldon CLI (default 9004)"),
        SDF_FLAG("agent-port", SDF_INT, &c->ports[SC_SVC_AGENT], 0, 65535, "N",
                 "AgentService, for seldon-agent (default 9005)"),
        SDF_FLAG("route-port", SDF_INT, &c->ports[SC_SVC_ROUTE], 0, 65535, "N",
                 "RouteService, for seldon-router (default 9002)"),
        SDF_FLAG("metrics-port", SDF_INT, &c->metrics_port, -1, 65535, "N",
                 "Prometheus /metrics, /ready, /live (default 9006;\n"
                 "-1: off)"),
        SDF_FLAG("load-timeout", SDF_LONG, &c->load_timeout_s, 1, 86400, "S",
                 "a load or unload unanswered this long is sent again\n"
                 "(default 300)"),
        SDF_FLAG("fsync", SDF_SET, &c->fsync, 1, 0, "",
                 "flush every commit to disk (survives a machine crash,\n"
                 "not only the process; slower)"),
        SDF_FLAG("host", SDF_STR, &c->host, 0, 0, "ADDR", "address to listen on (default 0.0.0.0)"),
        SDF_FLAG("log-level", SDF_LOG, &c->log_level, 0, 0, "LEVEL",
                 "error, warn, info (default), debug, trace"),
        SDF_FLAG("scale-up-inflight", SDF_U32, &c->scale_up_inflight, 1, 1000000, "N",
                 "autoscaling: a model (with minReplicas/maxReplicas)\n"
                 "gains a replica when its requests in flight per\n"
                 "replica stay above N (default 30)"),
        SDF_FLAG("scale-up-period", SDF_MS, &c->scale_up_period_ms, 1, 86400000, "MS",
                 "... for this long (default 20000)"),
        SDF_FLAG("scale-down-idle", SDF_MS, &c->scale_down_idle_ms, 1, 86400000 * 30L, "MS",
                 "it loses one when a replica has had no request for\n"
                 "this long (default 600000)"),
        SDF_FLAG("server-cooldown", SDF_MS, &c->server_cooldown_ms, 1, 86400000 * 30L, "MS",
                 "a server (with maxReplicas) is asked for fewer\n"
                 "replicas once its models need fewer for this long\n"
                 "(default 600000)"),
        SDF_FLAG("scale-command", SDF_STR, &c->scale_command, 1, 0, "CMD",
                 "run for a server scale request, as /bin/sh -c CMD\n"
                 "with $1 the server, $2 the replicas wanted (also\n"
                 "SELDON_SERVER, SELDON_REPLICAS, SELDON_SCALE_REASON);\n"
                 "see docs/autoscaling.md"),
    };
    c->host = "0.0.0.0";
    c->ports[SC_SVC_CLIENT] = 9004;
    c->ports[SC_SVC_AGENT] = 9005;
    c->ports[SC_SVC_ROUTE] = 9002;
    c->metrics_port = 9006;
    c->state_dir = "./.seldon-scheduler";
    c->ready_timeout_s = 600;
    c->load_timeout_s = 300;
    c->log_level = SELDON_LOG_INFO;
    if (sdf_parse(&program, flags, sizeof(flags) / sizeof(flags[0]), argc, argv) < 0)
        return -1;
    if (*c->state_dir == '\0') {
        fprintf(stderr, "seldon-scheduler: --state-dir: must not be empty\n");
        return -1;
    }
    return 0;
}

/*
 * One scheduler per state folder: a second one on the same LMDB would make
 * decisions the first never sees. The lock goes with the process.
 */
static int lock_state_dir(const char *dir)
{
    char path[4096];
    int fd;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return 0; /* the scheduler reports why it cannot use the folder */
    snprintf(path, sizeof(path), "%s/scheduler.lock", dir);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return 0;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        fprintf(stderr, "seldon-scheduler: %s: another seldon-scheduler uses this state folder\n",
                dir);
        close(fd);
        return -1;
    }
    return 0; /* kept open, and locked, until exit */
}

/* On the loop: first pump (a reloaded state may owe work at once). */
static void start_on_loop(void *arg)
{
    sc_pump(arg);
}

static void stop_on_loop(void *arg)
{
    sc_services_stop(arg);
}

int main(int argc, char **argv)
{
    static sc_daemon d;
    seldon_sched_config scfg = SELDON_SCHED_CONFIG_INIT;
    sdl_loops *loops = NULL;
    sigset_t sigs;
    int sig = 0, rc, mport = -1;

    if (parse_args(&d.cfg, argc, argv) < 0)
        return 2;
    sdd_log_init("seldon-scheduler", d.cfg.log_level);

    sdf_signals_block(&sigs, 0);
    /* A file size limit (RLIMIT_FSIZE) makes a state write fail with EFBIG, which is
       refused like a full volume, instead of killing the process. */
    signal(SIGXFSZ, SIG_IGN);

    if (lock_state_dir(d.cfg.state_dir) != 0)
        return 1;
    scfg.state_dir = d.cfg.state_dir;
    scfg.ready_timeout_ms = (int64_t)d.cfg.ready_timeout_s * 1000;
    scfg.load_timeout_ms = (int64_t)d.cfg.load_timeout_s * 1000;
    scfg.sync_writes = d.cfg.fsync;
    rc = seldon_sched_open(&d.sched, &scfg, sc_now_ns());
    if (rc != 0) {
        fprintf(stderr, "seldon-scheduler: %s: %s\n", d.cfg.state_dir, seldon_last_error());
        return 1;
    }
    d.was_ready = seldon_sched_ready(d.sched) != 0;
    sdd_log(SELDON_LOG_INFO, "state in %s%s", d.cfg.state_dir,
            d.was_ready ? "" : ": reloaded; waiting for known agents to reconnect");

    rc = sc_metrics_setup(&d);
    if (rc == 0)
        rc = sc_autoscale_setup(&d);
    if (rc == 0)
        rc = sdl_loops_new(&loops, 1);
    if (rc == 0) {
        d.loop = sdl_loops_loop(loops, 0);
        rc = sc_services_start(&d);
    }
    if (rc != 0) {
        fprintf(stderr, "seldon-scheduler: %s\n", seldon_last_error());
        sdd_log(SELDON_LOG_ERROR, "start-up failed: %s", seldon_last_error());
        return 1;
    }
    rc = sdf_metrics_listen(&d.metrics_http, &mport, d.loop, d.cfg.host, d.cfg.metrics_port,
                            sc_metrics_handler, &d);
    if (rc != 0) {
        fprintf(stderr, "seldon-scheduler: metrics port %d: %s\n", d.cfg.metrics_port,
                seldon_last_error());
        return 1;
    }
    rc = sdl_loops_post(loops, 0, start_on_loop, &d);
    if (rc == 0)
        rc = sdl_loops_start(loops);
    if (rc != 0) {
        sdd_log(SELDON_LOG_ERROR, "start-up failed: %s", seldon_last_error());
        return 1;
    }
    sdd_log(SELDON_LOG_INFO, "serving clients on %d, agents on %d, routers on %d",
            sd2_server_port(d.ports[SC_SVC_CLIENT].srv), sd2_server_port(d.ports[SC_SVC_AGENT].srv),
            sd2_server_port(d.ports[SC_SVC_ROUTE].srv));
    printf("listening client=%d agent=%d route=%d metrics=%d\n",
           sd2_server_port(d.ports[SC_SVC_CLIENT].srv), sd2_server_port(d.ports[SC_SVC_AGENT].srv),
           sd2_server_port(d.ports[SC_SVC_ROUTE].srv), mport);
    fflush(stdout);

    sig = sdf_signals_wait(&sigs);
    sdd_log(SELDON_LOG_INFO, "%s: stopping", sdf_signal_name(sig));
    if (d.metrics_http != NULL)
        sdh_server_stop(d.metrics_http, 0);
    sdl_loops_post(loops, 0, stop_on_loop, &d);
    sdl_loops_stop(loops);
    sdl_loops_join(loops);
    sdl_loops_free(loops);
    sdh_server_free(d.metrics_http);
    seldon_sched_close(d.sched); /* LMDB closed: every change was committed when made */
    seldon_buf_free(&d.route_frame);
    seldon_metrics_free(d.metrics);
    sdd_log(SELDON_LOG_INFO, "stopped");
    return 0;
}
