/*
 * seldon up --kafka: pipelines over Kafka, with the three Kafka daemons' roles
 * run in this process on the control loop, each the same engine as its daemon:
 *
 *  - the pipeline gateway's Kafka side (daemons/common/kgw.c, as
 *    seldon-pipelinegateway --kafka): plserve on the ingress loops serves each
 *    pipeline as one step whose call produces the request to the pipeline's
 *    inputs topic and waits for its record on the outputs topic;
 *  - the dataflow engine (daemons/dataflow/df.c, as seldon-dataflow), its
 *    pipelines pushed from the scheduler's store with df_sync();
 *  - the model gateway (daemons/modelgateway/gw.c, as seldon-modelgateway),
 *    its models the scheduler's routes, calling them in process: the replica
 *    the lookup table picks runs the request by function call (model_call);
 *    JSON values and versions waiting for a reload go through seldon up's own
 *    inference port (loopback, as it calls seldon-router).
 *
 * The broker is --kafka-broker's (or bootstrap.servers from the Kafka
 * configuration, or $SELDON_KAFKA_BROKER); with none named, seldon up starts
 * seldon-kafka-dev (found beside its binary or in the build tree) as a child
 * process and stops it on exit.
 *
 * Threads: up_kafka_setup() and up_kafka_free() on the main thread (before the
 * loops run, after they ended); up_kafka_call() on an ingress loop; the rest on
 * the control loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "df.h"
#include "kgw.h"
#include "mg.h"
#include "plserve.h"
#include "sdd.h"
#include "seldon/kafka.h"
#include "up.h"

#define SYNC_MS 500 /* readiness follows the gateway's partitions at least this often */

struct up_kafka {
    sdk_config df_kcfg; /* the dataflow's: the range assignor on top of the shared flags */
    char *bootstrap;    /* the child broker's, owned */
    pid_t child;        /* seldon-kafka-dev, or 0 */
    df *df;
    mg *mg;
    df_config dcfg;
    mg_config mcfg;
    char router[80];
    uv_timer_t sync_timer;
    uint64_t routes_gen;   /* the routes the model gateway consumes for */
    uint64_t pending_gen;  /* newer routes, passed on once they stay for a sync tick */
    int64_t pending_since;
    int routes_seen;
    int stopping;
    int left; /* roles still stopping */
    void (*done)(void *);
    void *done_arg;
};

/* ------------------------------------------------------------ the development broker */

/* Whether the configuration names a broker (then no child is started). */
static int broker_named(const sdk_config *c)
{
    const char *env = getenv("SELDON_KAFKA_BROKER");
    size_t i;
    if (c->broker != NULL || (env != NULL && env[0] != '\0'))
        return 1;
    for (i = 0; i + 1 < c->n; i += 2)
        if (strcmp(c->props[i], "bootstrap.servers") == 0 ||
            strcmp(c->props[i], "metadata.broker.list") == 0)
            return 1;
    return 0;
}

/* seldon-kafka-dev: $SELDON_KAFKA_DEV, beside this binary, in the build tree, else PATH. */
static void find_broker(char *out, size_t cap)
{
    const char *env = getenv("SELDON_KAFKA_DEV");
    char self[PATH_MAX - 64]; /* room for the suffixes in out */
    ssize_t n;
    if (env != NULL && env[0] != '\0') {
        snprintf(out, cap, "%s", env);
        return;
    }
    n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n > 0) {
        char *slash;
        self[n] = '\0';
        slash = strrchr(self, '/');
        if (slash != NULL) {
            *slash = '\0';
            snprintf(out, cap, "%s/seldon-kafka-dev", self);
            if (access(out, X_OK) == 0)
                return;
            snprintf(out, cap, "%s/../kafka-dev/seldon-kafka-dev", self);
            if (access(out, X_OK) == 0)
                return;
        }
    }
    snprintf(out, cap, "seldon-kafka-dev");
}

static void stop_child(pid_t pid)
{
    int status, i;
    if (pid <= 0)
        return;
    kill(pid, SIGTERM);
    for (i = 0; i < 300; i++) { /* 30 s, then it is killed */
        struct timespec ts = {0, 100000000};
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid || (r < 0 && errno == ECHILD))
            return;
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
}

/* Starts the broker and reads its "bootstrap=..." line (within 30 s). */
static int start_broker(up_kafka *k, int port)
{
    char path[PATH_MAX], portarg[16], line[1024];
    size_t len = 0;
    int fds[2], status;
    pid_t pid;
    find_broker(path, sizeof(path));
    snprintf(portarg, sizeof(portarg), "%d", port);
    if (pipe(fds) != 0)
        return sdd_error(SELDON_EIO, "pipe: %s", strerror(errno));
    pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return sdd_error(SELDON_EIO, "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        pthread_sigmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlives seldon up */
        setpgid(0, 0);                    /* Ctrl-C is ours to pass on, after the flush */
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execlp(path, path, "--port", portarg, "--log-level", "warn", (char *)NULL);
        fprintf(stderr, "seldon-up: %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    k->child = pid;
    line[0] = '\0';
    for (;;) {
        struct pollfd p = {fds[0], POLLIN, 0};
        char *nl;
        ssize_t n;
        if (poll(&p, 1, 30000) <= 0)
            break;
        n = read(fds[0], line + len, sizeof(line) - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        line[len] = '\0';
        if ((nl = strchr(line, '\n')) != NULL) {
            *nl = '\0';
            break;
        }
        if (len == sizeof(line) - 1)
            break;
    }
    close(fds[0]);
    if (strncmp(line, "bootstrap=", 10) == 0) {
        char *sp = strchr(line, ' ');
        if (sp != NULL)
            *sp = '\0';
        k->bootstrap = sdd_strndup(line + 10, strlen(line + 10));
        if (k->bootstrap != NULL)
            return 0;
    }
    stop_child(pid);
    k->child = 0;
    (void)status;
    return sdd_error(SELDON_EIO,
                     "the development broker (%s --port %d) did not start (see its log above); "
                     "give --kafka-broker HOST:PORT to use a Kafka cluster",
                     path, port);
}

/* ------------------------------------------------------------ model calls in process */

#define INFER_METHOD "/inference.GRPCInferenceService/ModelInfer"

/* A model gateway's call run by a replica: the gRPC path of the service, bytes in, bytes out. */
typedef struct ucall {
    up *u;
    mg_call *c;
    up_replica *r;
    int32_t status;
    char message[512];
    seldon_buf resp;
    char vname[];
} ucall;

static void ucall_on_ctl(void *arg)
{
    ucall *uc = arg;
    mg_call_done(uc->c, uc->status == 0, uc->resp.data, uc->resp.len, uc->message);
    seldon_buf_free(&uc->resp);
    sdd_free(uc);
}

/* Any thread (a worker, or the control loop for inline models). */
static void ucall_done(void *user_data, int32_t status, const char *message, seldon_buf *response)
{
    ucall *uc = user_data;
    atomic_fetch_sub_explicit(&uc->r->in_flight, 1, memory_order_relaxed);
    uc->status = status;
    if (status != 0)
        snprintf(uc->message, sizeof(uc->message), "%s (grpc-status %d)",
                 message != NULL && message[0] != '\0' ? message : "the model failed",
                 (int)status);
    if (response != NULL) {
        uc->resp = *response; /* taken */
        response->data = NULL;
        response->len = response->cap = 0;
    }
    /* Answered on the loop's own thread or not, the gateway hears of it on a later turn. */
    if (sdl_loops_post(uc->u->ctl_loops, 0, ucall_on_ctl, uc) != 0) {
        seldon_buf_free(&uc->resp); /* stopping: the gateway closed without waiting for it */
        sdd_free(uc);
    }
}

/*
 * The model gateway's hook, on the control loop: the replica the lookup table picks, as the
 * ingress picks it, runs the request by function call. Versions evicted (waiting for a
 * reload) and unknown models go through the inference port, which waits or answers the
 * error as it does for any client.
 */
static int model_call(void *user_data, mg_call *c, const char *model, const uint8_t *request,
                      size_t len)
{
    up *u = user_data;
    seldon_buf req = SELDON_BUF_INIT;
    up_target t;
    ucall *uc;
    if (up_pick(&t, u, model, strlen(model)) != 0 || t.evicted)
        return MG_CALL_ROUTER;
    uc = sdd_calloc(1, sizeof(*uc) + t.vname_len + 1);
    if (uc == NULL)
        return MG_CALL_ROUTER;
    memcpy(uc->vname, t.vname, t.vname_len);
    if (seldon_kafka_request_set_model(&req, request, len, uc->vname) != 0) {
        sdd_free(uc);
        return MG_CALL_ROUTER;
    }
    uc->u = u;
    uc->c = c;
    uc->r = t.r;
    atomic_fetch_add_explicit(&t.r->in_flight, 1, memory_order_relaxed);
    if (seldon_service_grpc(t.r->s.svc, INFER_METHOD, sizeof(INFER_METHOD) - 1, req.data, req.len,
                            ucall_done, uc) != 0) {
        atomic_fetch_sub_explicit(&t.r->in_flight, 1, memory_order_relaxed);
        sdd_free(uc);
        seldon_buf_free(&req);
        return MG_CALL_ROUTER;
    }
    seldon_buf_free(&req); /* the service copied what it keeps */
    return 0;
}

/* ------------------------------------------------------------ set-up */

static int copy_config(sdk_config *out, const sdk_config *in)
{
    size_t i;
    int rc = 0;
    *out = *in;
    out->props = NULL;
    out->n = out->cap = 0;
    for (i = 0; rc == 0 && i + 1 < in->n; i += 2)
        rc = sdk_config_set(out, in->props[i], in->props[i + 1]);
    return rc;
}

int up_kafka_setup(up *u, int port)
{
    up_kafka *k = sdd_calloc(1, sizeof(*k));
    sdk_config *kc = &u->cfg.kafka_cfg;
    int rc = 0;
    if (k == NULL)
        return SELDON_ENOMEM;
    u->kafka = k;
    if (!broker_named(kc)) {
        rc = start_broker(k, u->cfg.kafka_dev_port);
        if (rc != 0)
            return rc;
        kc->broker = k->bootstrap;
        /* One machine: short fetch waits keep each hop short, a short session keeps
           rebalances short (docs/kafka-dev.md). The flags given still win: they come later. */
        if (rc == 0) {
            sdk_config d = SDK_CONFIG_INIT;
            size_t i;
            rc = sdk_config_set(&d, "fetch.wait.max.ms", "10");
            if (rc == 0) /* the mock's rebalances wait for this (docs/kafka-dev.md) */
                rc = sdk_config_set(&d, "session.timeout.ms", "6000");
            for (i = 0; rc == 0 && i + 1 < kc->n; i += 2)
                rc = sdk_config_set(&d, kc->props[i], kc->props[i + 1]);
            if (rc == 0) {
                d.broker = kc->broker;
                d.prefix = kc->prefix;
                d.ns = kc->ns;
                d.commit_interval_ms = kc->commit_interval_ms;
                sdk_config_free(kc);
                *kc = d;
            } else {
                sdk_config_free(&d);
            }
        }
        sdd_log(SELDON_LOG_INFO, "kafka: development broker %s (pid %d)", k->bootstrap,
                (int)k->child);
    }
    if (rc == 0)
        rc = copy_config(&k->df_kcfg, kc);
    if (rc == 0)
        rc = df_kafka_defaults(&k->df_kcfg);
    if (rc != 0)
        return rc;

    k->dcfg.group = "seldon-up-dataflow";
    k->dcfg.timeout_ms = u->cfg.pipeline_timeout_ms;
    k->dcfg.max_requests = u->cfg.pipeline_max_requests;
    k->dcfg.max_live = 4096;
    k->dcfg.grace_ms = u->cfg.grace_ms;
    k->dcfg.metrics_port = -1;
    k->dcfg.log_level = u->cfg.log_level;
    k->dcfg.kafka = k->df_kcfg;
    rc = df_new(&k->df, &k->dcfg, u->ctl, u->metrics); /* seldon_dataflow_* */
    if (rc != 0)
        return rc;

    snprintf(k->router, sizeof(k->router), "%s:%d",
             strcmp(u->cfg.host, "0.0.0.0") == 0 || strcmp(u->cfg.host, "::") == 0
                 ? "127.0.0.1"
                 : u->cfg.host,
             port);
    k->mcfg.router_host = k->router;
    k->mcfg.group = "seldon-up-modelgateway";
    k->mcfg.max_inflight = 8;
    k->mcfg.timeout_ms = 120000;
    k->mcfg.grace_ms = u->cfg.grace_ms;
    k->mcfg.max_message = u->cfg.max_body;
    k->mcfg.metrics_port = -1;
    k->mcfg.log_level = u->cfg.log_level;
    k->mcfg.kafka = *kc;
    k->mcfg.call = model_call;
    k->mcfg.call_data = u;
    return mg_new(&k->mg, &k->mcfg, u->ctl, u->metrics); /* seldon_modelgateway_* */
}

const char *up_kafka_brokers(up *u)
{
    return sdk_config_brokers(&u->cfg.kafka_cfg);
}

/* ------------------------------------------------------------ the control loop */

static void sync_due(uv_timer_t *t)
{
    up_kafka_sync(t->data);
}

void up_kafka_start(void *arg)
{
    up *u = arg;
    up_kafka *k = u->kafka;
    int rc = sdkg_new(&u->kgw, u->ctl, &u->cfg.kafka_cfg, "seldon-up-gateway");
    if (rc != 0) {
        sdd_log(SELDON_LOG_ERROR, "kafka (%s): %s: pipeline requests fail until restarted",
                up_kafka_brokers(u), seldon_last_error());
        return;
    }
    df_start(k->df);
    mg_start(k->mg);
    uv_timer_init(u->ctl, &k->sync_timer);
    k->sync_timer.data = u;
    uv_timer_start(&k->sync_timer, sync_due, SYNC_MS, SYNC_MS);
    sdd_log(SELDON_LOG_INFO,
            "kafka: brokers %s; pipeline gateway, dataflow and model gateway in process "
            "(models called in process, else through %s)",
            up_kafka_brokers(u), k->router);
}

/* The scheduler's routed models to the model gateway, when the routes change. */
static void sync_models(up *u)
{
    up_kafka *k = u->kafka;
    seldon_routes *routes = NULL;
    const char **names = NULL;
    uint64_t gen = seldon_sched_routes_generation(u->sched.sched);
    size_t i, n;
    int64_t now = up_mono_ns();
    if (k->routes_seen && gen == k->routes_gen)
        return;
    /* Models come available one by one: each change of the subscription restarts the
       group's rebalance, so a change waits until the routes stay the same a while. */
    if (gen != k->pending_gen) {
        k->pending_gen = gen;
        k->pending_since = now;
        return;
    }
    if (now - k->pending_since < (int64_t)SYNC_MS * 1000000 / 2 ||
        seldon_sched_routes(&routes, u->sched.sched) != 0)
        return;
    n = seldon_routes_count(routes);
    names = sdd_calloc(n + 1, sizeof(*names));
    if (names != NULL) {
        for (i = 0; i < n; i++)
            names[i] = seldon_routes_name(routes, i);
        mg_route_models(k->mg, names, n);
        k->routes_seen = 1;
        k->routes_gen = gen;
    }
    sdd_free(names);
    seldon_routes_release(routes);
}

void up_kafka_sync(up *u)
{
    up_kafka *k = u->kafka;
    seldon_sched_status *st = NULL;
    const seldon_sched_pipeline_status *ps;
    sdp_spec *specs = NULL;
    df_spec *dspecs = NULL;
    seldon_buf *kspecs = NULL;
    const char **names = NULL;
    size_t i, j, n = 0, m = 0;

    if (k == NULL || k->stopping || u->pls == NULL)
        return;
    sync_models(u);
    if (seldon_sched_pipelines(&st, u->sched.sched, NULL) != 0)
        return;
    while (seldon_sched_status_pipeline(st, n) != NULL)
        n++;
    specs = sdd_calloc(n + 1, sizeof(*specs));
    dspecs = sdd_calloc(n + 1, sizeof(*dspecs));
    kspecs = sdd_calloc(n + 1, sizeof(*kspecs));
    names = sdd_calloc(n + 1, sizeof(*names));
    if (specs == NULL || dspecs == NULL || kspecs == NULL || names == NULL)
        goto out;
    for (i = 0; i < n; i++) {
        ps = seldon_sched_status_pipeline(st, i);
        if (ps->deleted || ps->spec == NULL || sdkg_spec(&kspecs[m], ps->name) != 0)
            continue;
        dspecs[m] = (df_spec){ps->name, ps->version, ps->spec, strlen(ps->spec)};
        /* Served here as one step: the pipeline over Kafka. Ready once the scheduler says
           so and this gateway holds a partition of its outputs topic to wait on. */
        specs[m].name = ps->name;
        specs[m].version = ps->version;
        specs[m].ready = strcmp(ps->state, "PipelineReady") == 0 && sdkg_holds(u->kgw, ps->name) &&
                         df_holds(k->df, ps->name);
        for (j = 0; specs[m].ready && j < ps->models_count; j++)
            specs[m].ready = mg_holds(k->mg, ps->models[j]);
        specs[m].spec = (const char *)kspecs[m].data;
        specs[m].spec_len = kspecs[m].len;
        names[m] = ps->name;
        m++;
    }
    if (df_sync(k->df, dspecs, m) < 0)
        sdd_log(SELDON_LOG_ERROR, "dataflow: %s", seldon_last_error());
    sdp_sync(u->pls, specs, m, NULL, NULL);
    if (u->kgw != NULL)
        sdkg_subscribe(u->kgw, names, m);
out:
    for (i = 0; kspecs != NULL && i < n; i++)
        seldon_buf_free(&kspecs[i]);
    sdd_free(kspecs);
    sdd_free(dspecs);
    sdd_free(specs);
    sdd_free(names);
    seldon_sched_status_free(st);
}

int up_kafka_call(void *user_data, sdp_call *c)
{
    up *u = user_data;
    return sdkg_call(&u->kgw, u->loops, u->ctl_loops, c);
}

static void role_stopped(void *arg)
{
    up_kafka *k = arg;
    if (--k->left == 0 && k->done != NULL)
        k->done(k->done_arg);
}

static void timer_closed(uv_handle_t *h)
{
    up *u = h->data;
    role_stopped(u->kafka);
}

void up_kafka_stop(up *u, void (*done)(void *), void *arg)
{
    up_kafka *k = u->kafka;
    k->stopping = 1;
    k->done = done;
    k->done_arg = arg;
    k->left = 1;
    if (u->kgw != NULL) { /* started */
        k->left = 3;
        sdkg_close(u->kgw); /* requests still waiting fail: the ingress has drained */
        uv_timer_stop(&k->sync_timer);
        uv_close((uv_handle_t *)&k->sync_timer, timer_closed);
        df_stop(k->df, role_stopped, k);
        mg_stop(k->mg, role_stopped, k);
        return;
    }
    role_stopped(k);
}

/* ------------------------------------------------------------ the end */

void up_kafka_free(up *u)
{
    up_kafka *k = u->kafka;
    if (k == NULL)
        return;
    df_free(k->df);
    mg_free(k->mg);
    sdk_config_free(&k->df_kcfg);
    if (k->child > 0) {
        sdd_log(SELDON_LOG_INFO, "kafka: stopping the development broker (pid %d)", (int)k->child);
        stop_child(k->child);
    }
    sdd_free(k->bootstrap);
    sdd_free(k);
    u->kafka = NULL;
}
