/*
 * seldon-pipelinegateway: flags, loops, the REST and gRPC port, /metrics,
 * signals. See gw.h.
 */
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "flags.h"
#include "gw.h"
#include "log.h"
#include "sdd.h"

static const sdf_program program = {
    "seldon-pipelinegateway",
    "usage: seldon-pipelinegateway --scheduler-host HOST[:PORT] --router HOST:PORT [options]\n"
    "\n"
    "Serves Seldon pipelines outside seldon up: subscribes to the scheduler for the\n"
    "pipelines to serve, runs them on libseldon's pipeline engine and calls every\n"
    "step's model through seldon-router. REST and gRPC (h2c) on one port; routers\n"
    "reach it through the routes <pipeline>.pipeline the scheduler publishes:\n"
    "POST /v2/pipelines/<p>/infer, GET /v2/pipelines/<p>/ready and\n"
    "/v2/pipelines/<p>/requests/<id>, /v2/models/<x>/infer and gRPC ModelInfer or\n"
    "ModelStreamInfer with seldon-model: <p>.pipeline.\n",
    "Requests: seldon-timeout-ms (or grpc-timeout) sets a request's timeout (504,\n"
    "DEADLINE_EXCEEDED); seldon-async: true or ?async=true answers 202 with the\n"
    "request id, whose result GET /v2/pipelines/<p>/requests/<id> gives (asked of\n"
    "the other gateways when not kept here). x-* headers go to every step and come\n"
    "back with the models' x-* answer headers.\n"
    "Kafka mode (--kafka): the pipelines run on seldon-dataflow workers; each request\n"
    "goes to <prefix>.<ns>.pipeline.<p>.inputs keyed <partition>.<p>.<request id>\n"
    "(a partition of the outputs topic this gateway consumes) and is answered from\n"
    "the record of that key on <prefix>.<ns>.pipeline.<p>.outputs, with the same\n"
    "statuses, timeouts and asynchronous mode.\n"
    "Signals: SIGTERM and SIGINT stop accepting, finish what is in flight and exit\n"
    "0. Prints 'listening port=P metrics=P' on stdout once serving.\n",
    27,
};

int gw_parse_hostport(char *host, size_t cap, int *port, const char *spec, int default_port)
{
    const char *colon = strrchr(spec, ':');
    size_t hlen = colon != NULL ? (size_t)(colon - spec) : strlen(spec);
    long p = default_port;
    if (colon != NULL && sdd_parse_long(colon + 1, 1, 65535, &p) < 0)
        return -1;
    if (spec[0] == '[' && hlen >= 2 && spec[hlen - 1] == ']') {
        spec++;
        hlen -= 2;
    }
    if (hlen == 9 && memcmp(spec, "localhost", 9) == 0) {
        spec = "127.0.0.1";
        hlen = 9;
    }
    if (hlen == 0 || hlen >= cap)
        return -1;
    memcpy(host, spec, hlen);
    host[hlen] = '\0';
    *port = (int)p;
    return 0;
}

static int numeric(const char *h)
{
    unsigned char b[16];
    return inet_pton(AF_INET, h, b) == 1 || inet_pton(AF_INET6, h, b) == 1;
}

static int hostport_flag(void *dest, const char *value)
{
    char host[256];
    int port;
    if (gw_parse_hostport(host, sizeof(host), &port, value, 9002) != 0)
        return -1;
    *(const char **)dest = value;
    return 0;
}

static int addr_flag(void *dest, const char *value)
{
    char host[256];
    int port;
    if (strchr(value, ':') == NULL || gw_parse_hostport(host, sizeof(host), &port, value, 0) != 0 ||
        !numeric(host))
        return -1;
    *(const char **)dest = value;
    return 0;
}

static int parse_args(gw_config *c, sdk_config *kcfg, int argc, char **argv)
{
    const sdf_flag flags[] = {
        SDF_CHECK("scheduler-host", &c->scheduler_host, hostport_flag, "HOST or HOST:PORT",
                  "HOST[:PORT]",
                  "the scheduler's RouteService (port 9002 by default);\n"
                  "the last pipelines are kept and served while it is down"),
        SDF_CHECK("router", &c->router, addr_flag, "IP:PORT (localhost allowed)", "IP:PORT",
                  "the seldon-router that steps call their models through"),
        SDF_CHECK("advertise", &c->advertise, addr_flag, "IP:PORT", "IP:PORT",
                  "where routers reach this gateway (default: --host, or\n"
                  "127.0.0.1 for 0.0.0.0, and the port bound)"),
        SDF_FLAG("name", SDF_STR, &c->name, 0, 256, "NAME",
                 "this gateway in the scheduler's logs (default: host name)"),
        SDF_FLAG("port", SDF_INT, &c->port, 0, 65535, "N",
                 "the port for REST and gRPC (default 9010; 0 picks one)"),
        SDF_FLAG("metrics-port", SDF_INT, &c->metrics_port, -1, 65535, "N",
                 "Prometheus /metrics (default 9011; 0 picks one; -1: off)"),
        SDF_FLAG("host", SDF_STR, &c->host, 0, 0, "ADDR", "address to listen on (default 0.0.0.0)"),
        SDF_FLAG("io-threads", SDF_INT, &c->io_threads, 1, 256, "N",
                 "event loops, one thread each (default 1)"),
        SDF_FLAG("pipeline-timeout", SDF_MS, &c->pipeline_timeout_ms, 0, 86400000, "MS",
                 "a request's timeout when it asks for none (default\n"
                 "60000; 0: none)"),
        SDF_FLAG("pipeline-max-requests", SDF_U32, &c->pipeline_max_requests, 0, 1u << 24, "N",
                 "requests alive at once per loop; one more fails the\n"
                 "oldest (default 65536)"),
        SDF_FLAG("pipeline-async-max", SDF_U32, &c->pipeline_async_max, 0, 1u << 20, "N",
                 "asynchronous results kept (default 10000)"),
        SDF_FLAG("pipeline-async-ttl", SDF_MS, &c->pipeline_async_ttl_ms, 1, 86400000, "MS",
                 "how long a result is kept once done (default 600000)"),
        SDF_FLAG("max-body", SDF_SIZE, &c->max_body, 1024, 1L << 32, "BYTES",
                 "largest request body or message (default 64 MiB)"),
        SDF_FLAG("idle-timeout", SDF_MS, &c->idle_timeout_ms, 0, 86400000, "MS",
                 "close idle client connections after MS (default 60000)"),
        SDF_FLAG("grace", SDF_MS, &c->grace_ms, 0, 86400000, "MS",
                 "on SIGTERM, time left to requests in flight (default 30000)"),
        SDF_FLAG("resubscribe-max", SDF_MS, &c->resubscribe_max_ms, 100, 3600000, "MS",
                 "longest wait between subscription attempts (default 5000)"),
        SDF_FLAG("log-level", SDF_LOG, &c->log_level, 0, 0, "LEVEL",
                 "error, warn, info (default), debug, trace"),
        SDF_FLAG("kafka", SDF_SET, &c->kafka, 1, 0, "",
                 "Kafka mode: produce each request to the pipeline's\n"
                 "inputs topic and answer from its outputs topic; the\n"
                 "pipelines run on seldon-dataflow (see --kafka-*)"),
        SDF_FLAG("kafka-group", SDF_STR, &c->kafka_group, 0, 256, "GROUP",
                 "the gateways' consumer group (default\n"
                 "seldon-pipelinegateway)"),
        SDK_FLAGS(kcfg),
    };
    c->host = "0.0.0.0";
    c->port = 9010;
    c->metrics_port = 9011;
    c->io_threads = 1;
    c->pipeline_timeout_ms = 60000;
    c->pipeline_async_max = 10000;
    c->pipeline_async_ttl_ms = 600000;
    c->max_body = (size_t)64 << 20;
    c->idle_timeout_ms = 60000;
    c->grace_ms = 30000;
    c->resubscribe_max_ms = 5000;
    c->log_level = SELDON_LOG_INFO;
    c->kafka_group = "seldon-pipelinegateway";
    if (sdf_parse(&program, flags, sizeof(flags) / sizeof(flags[0]), argc, argv) < 0)
        return -1;
    if (c->name == NULL) {
        static char host[256];
        if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0')
            snprintf(host, sizeof(host), "seldon-pipelinegateway");
        c->name = host;
    }
    if (c->scheduler_host == NULL || c->router == NULL) {
        fprintf(stderr, "seldon-pipelinegateway: --scheduler-host and --router are required (see "
                        "--help)\n");
        return -1;
    }
    return 0;
}

int64_t gw_now_ns(void)
{
    return sdp_mono_ns();
}

static _Thread_local gw_loop *tls_loop;

gw_loop *gw_current(void)
{
    return tls_loop;
}

void gw_count(gw *g, const char *protocol, int code)
{
    char num[16];
    const char *labels[2];
    seldon_series *s = NULL;
    snprintf(num, sizeof(num), "%d", code);
    labels[0] = protocol;
    labels[1] = num;
    if (g->m_requests != NULL && seldon_metric_series(&s, g->m_requests, labels) == 0)
        seldon_series_add(s, 1);
}

void gw_count_step(gw *g, int code)
{
    char num[16];
    const char *labels[1] = {num};
    seldon_series *s = NULL;
    snprintf(num, sizeof(num), "%d", code);
    if (g->m_steps != NULL && seldon_metric_series(&s, g->m_steps, labels) == 0)
        seldon_series_add(s, 1);
}

static void count_hook(void *user_data, const char *protocol, int code)
{
    gw_count(user_data, protocol, code);
}

static void grpc_unused(void *ctx, int32_t status, const char *message, seldon_buf *response,
                        const sdp_header *headers, size_t nheaders)
{
    (void)ctx;
    (void)status;
    (void)message;
    (void)response;
    (void)headers;
    (void)nheaders;
}

/* ------------------------------------------------------------ requests */

static void rest_handler(void *user_data, sdh_req *req, const sdh_request *r)
{
    gw *g = user_data;
    char name[SELDON_ROUTES_NAME_MAX + 16];
    size_t len = 0, hl = 0;
    int32_t status = 500;
    const char *hv = sdh_request_header(r, "seldon-model", &hl);
    size_t il = 0;
    const char *iv = sdh_request_header(r, SELDON_ROUTER_INTERNAL_HEADER, &il);
    int rc;
    if (iv != NULL && il > 9 && memcmp(iv + il - 9, ".pipeline", 9) == 0) {
        hv = iv; /* a router's experiment chose this pipeline */
        hl = il;
    }
    if ((r->path_len == 15 && memcmp(r->path, "/v2/health/live", 15) == 0) ||
        (r->path_len == 16 && memcmp(r->path, "/v2/health/ready", 16) == 0)) {
        sdh_respond(req, 200, NULL, 0, NULL);
        return;
    }
    rc = seldon_router_route_name(name, &len, sizeof(name), SELDON_ROUTER_HTTP, hv, hl, r->path,
                                  r->path_len);
    if (rc != 0) {
        seldon_router_status(&status, NULL, rc);
        gw_count(g, "rest", status);
        sdh_respond_error(req, status, seldon_last_error());
        return;
    }
    if (len <= 9 || memcmp(name + len - 9, ".pipeline", 9) != 0) {
        gw_count(g, "rest", 404);
        sdh_respond_error(req, 404,
                          "seldon-pipelinegateway serves pipelines only: /v2/pipelines/<p>/... "
                          "or seldon-model: <p>.pipeline");
        return;
    }
    sdp_rest(g->pls, req, r, name, len - 9);
}

static void grpc_request(void *user_data, sd2_stream *s, const sd2_header *h, size_t n, int end)
{
    gw_loop *L = user_data;
    const sd2_header *model = sd2_header_find(h, n, SELDON_ROUTER_HEADER);
    const sd2_header *in = sd2_header_find(h, n, SELDON_ROUTER_INTERNAL_HEADER);
    char name[SELDON_ROUTES_NAME_MAX + 16];
    size_t len = 0;
    int rc;
    if (in != NULL && in->value_len > 9 &&
        memcmp(in->value + in->value_len - 9, ".pipeline", 9) == 0)
        model = in; /* a router's experiment chose this pipeline */
    rc = seldon_router_route_name(name, &len, sizeof(name), SELDON_ROUTER_GRPC,
                                  model != NULL ? model->value : NULL,
                                  model != NULL ? model->value_len : 0, NULL, 0);
    if (rc != 0 || len <= 9 || memcmp(name + len - 9, ".pipeline", 9) != 0) {
        gw_count(L->g, "grpc", rc != 0 ? 3 : 5);
        sd2_grpc_finish(s, rc != 0 ? 3 : 5,
                        rc != 0 ? seldon_last_error()
                                : "seldon-pipelinegateway serves pipelines only: "
                                  "seldon-model: <p>.pipeline",
                        NULL, 0);
        return;
    }
    sdp_grpc_stream(L->g->pls, s, h, n, end, name, len - 9);
}

static int adopt_h2(void *user_data, const sd_adopt *conn)
{
    gw_loop *L = gw_current();
    (void)user_data;
    if (L == NULL || L->h2 == NULL)
        return SELDON_EUNAVAIL;
    return sd2_server_adopt(L->h2, conn);
}

static void loop_init(void *arg)
{
    tls_loop = arg;
}

static void kafka_start(void *arg)
{
    gw *g = arg;
    int rc = gw_kafka_new(&g->kafka, g, sdl_loops_loop(g->ctl, 0));
    if (rc != 0)
        sdd_log(SELDON_LOG_ERROR, "kafka (%s): %s: requests fail until restarted",
                sdk_config_brokers(&g->kcfg), seldon_last_error());
    else
        sdd_log(SELDON_LOG_INFO, "kafka mode: brokers %s, group %s", sdk_config_brokers(&g->kcfg),
                g->cfg.kafka_group);
}

/* ------------------------------------------------------------ /metrics */

static void metrics_handler(void *user_data, sdh_req *req, const sdh_request *request)
{
    gw *g = user_data;
    sdf_metrics_respond(req, request, g->metrics);
}

static int add_series(seldon_series **out, seldon_metrics *reg, int32_t type, const char *name,
                      const char *help)
{
    seldon_metric *m = NULL;
    int rc = seldon_metrics_add(&m, reg, type, name, help, NULL, 0, NULL, 0);
    return rc != 0 ? rc : seldon_metric_series(out, m, NULL);
}

static int setup_metrics(gw *g)
{
    const char *labels[2] = {"protocol", "code"};
    int rc = seldon_metrics_new(&g->metrics);
    if (rc == 0)
        rc = seldon_metrics_add(&g->m_requests, g->metrics, SELDON_METRIC_COUNTER,
                                "seldon_pipelinegateway_requests_total",
                                "Pipeline requests answered, by protocol (rest, grpc, async) and "
                                "code (HTTP status or gRPC code).",
                                labels, 2, NULL, 0);
    if (rc == 0)
        rc = seldon_metrics_add(&g->m_steps, g->metrics, SELDON_METRIC_COUNTER,
                                "seldon_pipelinegateway_step_calls_total",
                                "Step calls to models through the router, by gRPC code.",
                                &labels[1], 1, NULL, 0);
    if (rc == 0)
        rc = add_series(&g->m_connected, g->metrics, SELDON_METRIC_GAUGE,
                        "seldon_pipelinegateway_scheduler_connected",
                        "1 while the subscription to the scheduler is up, else 0.");
    if (rc == 0)
        rc = add_series(&g->m_pipelines, g->metrics, SELDON_METRIC_GAUGE,
                        "seldon_pipelinegateway_pipelines", "Pipelines served.");
    return rc;
}

/* ------------------------------------------------------------ shutdown */

static sdf_countdown draining = SDF_COUNTDOWN_INIT;

static void h2_drained(void *arg)
{
    gw_loop *L = arg;
    if (L != NULL)
        L->h2_draining = NULL;
    sdf_countdown_done(&draining);
}

static void drain_on_loop(void *arg)
{
    gw_loop *L = arg;
    if (L->h2 == NULL) {
        h2_drained(NULL);
        return;
    }
    L->h2_draining = L->h2;
    L->h2 = NULL;
    sd2_server_drain(L->h2_draining, h2_drained, L);
}

static void h2_closed(void *arg)
{
    gw_loop *L = arg;
    L->h2_draining = NULL;
}

static void client_closed(void *arg)
{
    (void)arg;
}

static void close_on_loop(void *arg)
{
    gw_loop *L = arg;
    L->closing = 1;
    sdp_close_loop(L->g->pls, L->index);
    gw_peers_close(L);
    if (L->h2 != NULL) {
        sd2_server_close(L->h2, h2_closed, L);
        L->h2 = NULL;
    }
    if (L->h2_draining != NULL)
        sd2_server_close(L->h2_draining, h2_closed, L);
    if (L->h2c != NULL) {
        sd2_client_close(L->h2c, client_closed, NULL);
        L->h2c = NULL;
    }
}

int main(int argc, char **argv)
{
    gw g;
    sdh_config hc;
    sd2_server_cbs h2cbs;
    sd2_opts h2o;
    sdp_config pc;
    sdp_hooks hooks;
    sigset_t sigs;
    int sig, rc, i, mport = -1;

    memset(&g, 0, sizeof(g));
    if (parse_args(&g.cfg, &g.kcfg, argc, argv) < 0)
        return 2;
    sdd_log_init("seldon-pipelinegateway", g.cfg.log_level);
    if (gw_parse_hostport(g.router_host, sizeof(g.router_host), &g.router_port, g.cfg.router, 0) !=
            0 ||
        !numeric(g.router_host)) {
        fprintf(stderr, "seldon-pipelinegateway: --router: bad address '%s'\n", g.cfg.router);
        return 2;
    }
    snprintf(g.router_authority, sizeof(g.router_authority),
             strchr(g.router_host, ':') ? "[%s]:%d" : "%s:%d", g.router_host, g.router_port);
    sdf_signals_block(&sigs, 0);
    pthread_mutex_init(&g.peers_mu, NULL);

    rc = setup_metrics(&g);
    if (rc == 0)
        rc = sdl_loops_new(&g.loops, g.cfg.io_threads);
    if (rc == 0)
        rc = sdl_loops_new(&g.ctl, 1);
    if (rc != 0) {
        sdd_log(SELDON_LOG_ERROR, "start-up failed: %s", seldon_last_error());
        return 1;
    }
    g.nloops = g.cfg.io_threads;
    g.per_loop = sdd_calloc((size_t)g.nloops, sizeof(gw_loop));
    if (g.per_loop == NULL)
        return 1;
    memset(&pc, 0, sizeof(pc));
    pc.timeout_ms = g.cfg.pipeline_timeout_ms;
    pc.max_requests = g.cfg.pipeline_max_requests;
    pc.async_max = g.cfg.pipeline_async_max;
    pc.async_ttl_ms = g.cfg.pipeline_async_ttl_ms;
    pc.max_body = g.cfg.max_body;
    memset(&hooks, 0, sizeof(hooks));
    hooks.call = g.cfg.kafka ? gw_kafka_call : gw_step_call;
    hooks.count = count_hook;
    hooks.grpc_answer = grpc_unused; /* every gRPC call is a whole stream (sdp_grpc_stream) */
    hooks.async_miss = gw_async_miss;
    rc = sdp_new(&g.pls, g.loops, &pc, &hooks, &g);

    memset(&h2o, 0, sizeof(h2o));
    h2o.max_conns_per_upstream = 4;
    h2o.idle_timeout_ms = g.cfg.idle_timeout_ms ? g.cfg.idle_timeout_ms : (uint64_t)1 << 40;
    memset(&h2cbs, 0, sizeof(h2cbs));
    h2cbs.on_request = grpc_request;
    for (i = 0; i < g.nloops && rc == 0; i++) {
        gw_loop *L = &g.per_loop[i];
        L->g = &g;
        L->index = i;
        L->loop = sdl_loops_loop(g.loops, i);
        rc = sd2_server_new(&L->h2, L->loop, &h2o, &h2cbs, L);
        if (rc == 0)
            rc = sd2_client_new(&L->h2c, L->loop, &h2o);
        if (rc == 0)
            rc = sd2_upstream_get(&L->up, L->h2c, g.router_host, g.router_port);
        if (rc == 0)
            rc = sdl_loops_post(g.loops, i, loop_init, L);
    }
    if (rc == 0)
        rc = gw_sub_new(&g.sub, &g, sdl_loops_loop(g.ctl, 0));
    if (rc != 0) {
        sdd_log(SELDON_LOG_ERROR, "start-up failed: %s", seldon_last_error());
        return 1;
    }

    memset(&hc, 0, sizeof(hc));
    hc.host = g.cfg.host;
    hc.port = g.cfg.port;
    hc.max_body = g.cfg.max_body;
    hc.idle_timeout_ms = g.cfg.idle_timeout_ms;
    hc.request_timeout_ms = 30000;
    hc.handler = rest_handler;
    hc.user_data = &g;
    hc.h2_adopt = adopt_h2;
    hc.h2_user_data = &g;
    rc = sdh_server_new(&g.http, &hc);
    for (i = 0; i < g.nloops && rc == 0; i++)
        rc = sdh_server_listen(g.http, sdl_loops_loop(g.loops, i));
    if (rc != 0) {
        sdd_log(SELDON_LOG_ERROR, "port %d: %s", g.cfg.port, seldon_last_error());
        return 1;
    }
    rc = sdf_metrics_listen(&g.metrics_http, &mport, sdl_loops_loop(g.loops, 0), g.cfg.host,
                            g.cfg.metrics_port, metrics_handler, &g);
    if (rc != 0) {
        sdd_log(SELDON_LOG_ERROR, "metrics port %d: %s", g.cfg.metrics_port, seldon_last_error());
        return 1;
    }
    if (g.cfg.advertise != NULL)
        snprintf(g.advertise, sizeof(g.advertise), "%s", g.cfg.advertise);
    else
        snprintf(g.advertise, sizeof(g.advertise), "%s:%d",
                 strcmp(g.cfg.host, "0.0.0.0") == 0 || strcmp(g.cfg.host, "::") == 0 ? "127.0.0.1"
                                                                                     : g.cfg.host,
                 sdh_server_port(g.http));
    rc = sdl_loops_start(g.loops);
    if (rc == 0 && g.cfg.kafka)
        rc = sdl_loops_post(g.ctl, 0, kafka_start, &g);
    if (rc == 0)
        rc = sdl_loops_post(g.ctl, 0, gw_sub_start, g.sub);
    if (rc == 0)
        rc = sdl_loops_start(g.ctl);
    if (rc != 0) {
        sdd_log(SELDON_LOG_ERROR, "start-up failed: %s", seldon_last_error());
        return 1;
    }
    sdd_log(SELDON_LOG_INFO,
            "serving pipelines: REST and gRPC on port %d (advertised as %s), %d loop(s); "
            "steps through the router at %s; pipelines from the scheduler at %s",
            sdh_server_port(g.http), g.advertise, g.nloops, g.router_authority,
            g.cfg.scheduler_host);
    printf("listening port=%d metrics=%d\n", sdh_server_port(g.http), mport);
    fflush(stdout);

    sig = sdf_signals_wait(&sigs);
    sdd_log(SELDON_LOG_INFO, "%s: finishing requests in flight, then exiting",
            sdf_signal_name(sig));
    /* The subscription first: the scheduler drops this gateway from the routes. */
    sdl_loops_post(g.ctl, 0, gw_sub_close, g.sub);
    if (g.kafka != NULL)
        sdl_loops_post(g.ctl, 0, gw_kafka_close, g.kafka);
    sdl_loops_stop(g.ctl);
    sdl_loops_join(g.ctl);
    sdl_loops_free(g.ctl);
    for (i = 0; i < g.nloops; i++) {
        sdf_countdown_add(&draining, 1);
        if (sdl_loops_post(g.loops, i, drain_on_loop, &g.per_loop[i]) != 0)
            h2_drained(NULL);
    }
    sdh_server_stop(g.http, g.cfg.grace_ms);
    sdf_countdown_wait(&draining, g.cfg.grace_ms);
    if (g.metrics_http != NULL)
        sdh_server_stop(g.metrics_http, 0);
    for (i = 0; i < g.nloops; i++)
        sdl_loops_post(g.loops, i, close_on_loop, &g.per_loop[i]);
    sdl_loops_stop(g.loops);
    sdl_loops_join(g.loops);
    sdh_server_free(g.http);
    sdh_server_free(g.metrics_http);
    sdl_loops_free(g.loops);
    sdp_free(g.pls);
    sdd_free(g.per_loop);
    pthread_mutex_destroy(&g.peers_mu);
    seldon_metrics_free(g.metrics);
    sdk_config_free(&g.kcfg);
    sdd_log(SELDON_LOG_INFO, "stopped");
    return 0;
}
