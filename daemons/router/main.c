/*
 * seldon-router: the data plane's single ingress. REST and gRPC on one port,
 * routed by the seldon-model header to the upstreams of a routes file.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
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
#include "router.h"
#include "sdd.h"

static const sdf_program program = {
    "seldon-router",
    "usage: seldon-router --routes FILE [options]\n"
    "       seldon-router --scheduler-host HOST[:PORT] [--routes FILE] [options]\n"
    "\n"
    "The single ingress of the data plane: REST (HTTP/1.1) and gRPC (h2c) on one\n"
    "port, each request sent to an upstream of the route that its seldon-model\n"
    "header names (REST without the header: the model or pipeline of the path).\n",
    "Signals: SIGHUP reloads the routes file (a bad file is refused and the routes\n"
    "in force stay; with --scheduler-host, the file's routes replace the\n"
    "scheduler's only if none came yet, and its defaults apply from the next\n"
    "table). SIGTERM and SIGINT stop accepting, finish what is in flight and\n"
    "exit 0. Prints 'listening port=P metrics=P' on stdout once serving.\n",
    25,
};

/* --scheduler-host: checked here, resolved by the subscription. */
static int scheduler_host_flag(void *dest, const char *value)
{
    char host[256];
    int port;
    if (rt_sub_parse_host(host, sizeof(host), &port, value) != 0)
        return -1;
    *(const char **)dest = value;
    return 0;
}

static int parse_args(rt_config *c, int argc, char **argv)
{
    const sdf_flag flags[] = {
        SDF_FLAG("routes", SDF_STR, &c->routes_path, 0, 0, "FILE",
                 "the routes file (YAML; see docs/router.md); with\n"
                 "--scheduler-host: the defaults for the scheduler's\n"
                 "routes, and the routes to start on when none were\n"
                 "saved"),
        SDF_CHECK("scheduler-host", &c->scheduler_host, scheduler_host_flag,
                  "HOST or HOST:PORT, HOST an IP address or a name", "HOST[:PORT]",
                  "take routes from the scheduler's RouteService (port\n"
                  "9002 by default; HOST an IP address or a name);\n"
                  "the last routes are kept and served while it is down"),
        SDF_FLAG("routes-cache", SDF_STR, &c->routes_cache, 1, 4000, "FILE",
                 "where the scheduler's routes are saved, and read at\n"
                 "start (default: STATE_DIR/routes.yaml)"),
        SDF_FLAG("state-dir", SDF_STR, &c->state_dir, 1, 3900, "DIR",
                 "the router's own files (default ./.seldon-router)"),
        SDF_FLAG("name", SDF_STR, &c->name, 0, 256, "NAME",
                 "this router in the scheduler's logs (default: host name)"),
        SDF_FLAG("resubscribe-max", SDF_MS, &c->resubscribe_max_ms, RT_SUB_BACKOFF_MIN_MS, 3600000,
                 "MS",
                 "longest wait between subscription attempts (default\n"
                 "5000)"),
        SDF_FLAG("port", SDF_INT, &c->port, 0, 65535, "N",
                 "the port for REST and gRPC (default 9000; 0 picks one)"),
        SDF_FLAG("metrics-port", SDF_INT, &c->metrics_port, -1, 65535, "N",
                 "Prometheus /metrics (default 9003; 0 picks one; -1: off)"),
        SDF_FLAG("host", SDF_STR, &c->host, 0, 0, "ADDR", "address to listen on (default 0.0.0.0)"),
        SDF_FLAG("io-threads", SDF_INT, &c->io_threads, 1, 256, "N",
                 "event loops, one thread each (default: half the cores,\n"
                 "at least 1)"),
        SDF_FLAG("busy-poll", SDF_U32, &c->busy_poll_us, 0, 100000, "US",
                 "after events, a loop looks for more for up to US\n"
                 "microseconds before it sleeps, saving the wake-ups\n"
                 "that dominate a forwarded request's latency (the\n"
                 "window adapts: none while traffic is sparse); costs\n"
                 "processor time under load (default 200; 0: off)"),
        SDF_FLAG("max-body", SDF_SIZE, &c->max_body, 1024, 1L << 40, "BYTES",
                 "largest REST request body (default 2 GiB)"),
        SDF_FLAG("idle-timeout", SDF_MS, &c->idle_timeout_ms, 0, 86400000, "MS",
                 "close idle client connections after MS (default 60000)"),
        SDF_FLAG("grace", SDF_MS, &c->grace_ms, 0, 86400000, "MS",
                 "on SIGTERM, time left to requests in flight (default 30000)"),
        SDF_FLAG("replay-limit", SDF_SIZE, &c->replay_limit, 0, 1L << 30, "BYTES",
                 "request bytes kept to retry on another upstream\n"
                 "(default 1 MiB; a larger body is not retried)"),
        SDF_FLAG("upstream-conns", SDF_U32, &c->upstream_conns, 1, 65536, "N",
                 "HTTP/1.1 connections per upstream per loop (default 64)"),
        SDF_FLAG("hold", SDF_MS, &c->hold_ms, 0, 3600000, "MS",
                 "how long a request waits for its route's upstreams\n"
                 "when they are momentarily gone (a model moving),\n"
                 "within the route's timeout (default 10000; 0: never)"),
        SDF_FLAG("log-level", SDF_LOG, &c->log_level, 0, 0, "LEVEL",
                 "error, warn, info (default), debug, trace"),
    };
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    c->host = "0.0.0.0";
    c->port = 9000;
    c->metrics_port = 9003;
    /* A proxy shares the machine with what it forwards to and with its clients:
       one loop per two cores keeps it from competing with them for every core. */
    c->io_threads = cores >= 2 ? (int)(cores / 2) : 1;
    c->busy_poll_us = 200;
    c->max_body = (size_t)2 << 30;
    c->idle_timeout_ms = 60000;
    c->grace_ms = 30000;
    c->replay_limit = 1u << 20;
    c->upstream_conns = 64;
    c->log_level = SELDON_LOG_INFO;
    c->state_dir = "./.seldon-router";
    c->resubscribe_max_ms = 5000;
    c->hold_ms = 10000;
    if (sdf_parse(&program, flags, sizeof(flags) / sizeof(flags[0]), argc, argv) < 0)
        return -1;
    if (c->name == NULL) {
        static char host[256];
        if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0')
            snprintf(host, sizeof(host), "seldon-router");
        c->name = host;
    }
    if (c->routes_path == NULL && c->scheduler_host == NULL) {
        fprintf(stderr, "seldon-router: --routes is required, or --scheduler-host (see --help)\n");
        return -1;
    }
    return 0;
}

int64_t rt_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static _Thread_local rt_loop *tls_loop;

rt_loop *rt_current(router *r)
{
    (void)r;
    return tls_loop;
}

void rt_request_id(rt_loop *L, char out[37])
{
    seldon_router_lb_request_id(out, L->lb);
}

sdc_pool *rt_pool_get(rt_loop *L, const seldon_router_upstream *u)
{
    rt_pool *p;
    sdc_pool_options o = SDC_POOL_OPTIONS_INIT;
    size_t len;
    seldon_routes_defaults d;

    for (p = L->pools; p != NULL; p = p->next)
        if (strcmp(p->addr, u->http) == 0)
            return p->pool;
    len = strlen(u->http);
    p = sdd_malloc(sizeof(*p) + len + 1);
    if (p == NULL)
        return NULL;
    memcpy(p->addr, u->http, len + 1);
    seldon_routes_get_defaults(&d, seldon_router_lb_routes(L->lb));
    o.max_connections = L->r->cfg.upstream_conns;
    o.max_idle = L->r->cfg.upstream_conns;
    o.connect_timeout_ms = d.connect_timeout_ms > 0 ? (uint64_t)d.connect_timeout_ms : 0;
    o.request_timeout_ms = 0; /* the route's deadline is the router's own timer */
    o.write_queue_limit = 256 * 1024;
    if (sdc_pool_new(&p->pool, L->loop, u->http, &o) != 0) {
        sdd_free(p);
        return NULL;
    }
    p->next = L->pools;
    L->pools = p;
    return p->pool;
}

void rt_replay_keep(router *r, seldon_buf *replay, uint8_t *ok, const uint8_t *data, size_t len)
{
    if (!*ok)
        return;
    if (replay->len + len <= r->cfg.replay_limit && seldon_buf_reserve(replay, len) == 0) {
        memcpy(replay->data + replay->len, data, len);
        replay->len += len;
        return;
    }
    *ok = 0;
    seldon_buf_free(replay);
}

seldon_router_req *rt_mirror_req(uint8_t *sent, seldon_router_req *rr, int64_t now_ns)
{
    seldon_router_req *copy = NULL;
    if (*sent || !seldon_router_req_mirrored(rr))
        return NULL; /* not mirrored: the usual case */
    *sent = 1;
    return seldon_router_req_mirror_new(&copy, rr, now_ns) == 0 ? copy : NULL;
}

uint64_t rt_timeout_ms(int64_t deadline, int64_t now_ns)
{
    if (deadline <= 0)
        return 0;
    return deadline > now_ns ? (uint64_t)(deadline - now_ns) / 1000000 + 1 : 1;
}

void rt_note_h2_upstream(rt_loop *L, sd2_upstream *u)
{
    size_t i;
    for (i = 0; i < L->nh2ups; i++)
        if (L->h2ups[i] == u)
            return;
    if (L->nh2ups < sizeof(L->h2ups) / sizeof(L->h2ups[0]))
        L->h2ups[L->nh2ups++] = u;
}

/* ------------------------------------------------------------ loop set-up */

/* Each loop counts its own connections; /metrics adds the loops up. */
static void count_connections(uv_timer_t *t)
{
    rt_loop *L = t->data;
    size_t down = 0, up = 0, i;
    rt_pool *p;
    sdc_pool_stats st;
    if (L->closing)
        return;
    down = sdh_server_loop_connections(L->r->http, L->loop);
    if (L->h2 != NULL)
        down += sd2_server_conns(L->h2);
    for (p = L->pools; p != NULL; p = p->next) {
        sdc_pool_get_stats(&st, p->pool);
        up += st.open;
    }
    for (i = 0; i < L->nh2ups; i++)
        up += sd2_upstream_conns(L->h2ups[i]);
    atomic_store_explicit(&L->conns_down, down, memory_order_relaxed);
    atomic_store_explicit(&L->conns_up, up, memory_order_relaxed);
}

static void loop_init(void *arg)
{
    rt_loop *L = arg;
    tls_loop = L;
    uv_timer_init(L->loop, &L->gauge_timer);
    L->gauge_timer.data = L;
    uv_timer_start(&L->gauge_timer, count_connections, 0, 250);
    rt_hold_init(L);
}

/* Runs on the connection's loop: hands an h2c connection to that loop's h2 server. */
static int adopt_h2(void *user_data, const sd_adopt *conn)
{
    router *r = user_data;
    rt_loop *L = rt_current(r);
    if (L == NULL || L->h2 == NULL)
        return SELDON_EUNAVAIL;
    return sd2_server_adopt(L->h2, conn);
}

/* One install: the loops left to swap, and what runs after the last one. */
typedef struct swap_all {
    atomic_int left;
    void (*done)(void *arg);
    void *arg;
} swap_all;

typedef struct swap_msg {
    rt_loop *L;
    seldon_routes *routes; /* one reference, dropped here */
    swap_all *all;         /* shared by the install's messages, or NULL */
} swap_msg;

/* Counts one loop done with an install (swapped, or never to be); the last runs done. */
static void swap_counted(swap_all *all)
{
    if (all == NULL || atomic_fetch_sub(&all->left, 1) != 1)
        return;
    all->done(all->arg);
    sdd_free(all);
}

static void swap_on_loop(void *arg)
{
    swap_msg *m = arg;
    seldon_routes *old = seldon_routes_retain(seldon_router_lb_routes(m->L->lb));
    if (seldon_router_lb_swap(m->L->lb, m->routes) != 0) {
        sdd_log(SELDON_LOG_ERROR, "loop %d: routes swap failed: %s", m->L->index,
                seldon_last_error());
        seldon_routes_release(old);
    } else {
        rt_hold_swapped(m->L, old);
        rt_hold_wake(m->L); /* requests waiting for upstreams try the new table */
    }
    swap_counted(m->all);
    seldon_routes_release(m->routes);
    sdd_free(m);
}

int rt_numeric_host(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

int rt_routes_check(const seldon_routes *t, const char *source)
{
    size_t i, j;
    char msg[512];
    for (i = 0; i < seldon_routes_count(t); i++) {
        for (j = 0; j < seldon_routes_upstream_count(t, i); j++) {
            const seldon_router_upstream *u = seldon_routes_upstream(t, i, j);
            const char *bad = u->http_host != NULL && !rt_numeric_host(u->http_host)   ? u->http
                              : u->grpc_host != NULL && !rt_numeric_host(u->grpc_host) ? u->grpc
                                                                                       : NULL;
            if (bad != NULL) {
                snprintf(msg, sizeof(msg),
                         "%s%sroute \"%s\", upstream %zu: \"%s\": host names are not "
                         "resolved; give an IP address",
                         source ? source : "", source ? ": " : "", seldon_routes_name(t, i), j,
                         bad);
                return seldon_set_error(SELDON_EINVAL, msg);
            }
        }
    }
    return 0;
}

/*
 * Loads a routes file, and refuses upstreams the transports cannot reach: they
 * connect to IP addresses and resolve no names (the scheduler pushes addresses).
 */
static int load_routes(seldon_routes **out, const char *path)
{
    seldon_routes *t = NULL;
    int rc = seldon_routes_load(&t, path);
    if (rc != 0)
        return rc;
    if ((rc = rt_routes_check(t, path)) != 0) {
        seldon_routes_release(t);
        return rc;
    }
    *out = t;
    return 0;
}

void rt_routes_install(router *r, seldon_routes *fresh, void (*done)(void *arg), void *arg)
{
    swap_all *all = NULL;
    int i;
    if (done != NULL) {
        all = sdd_malloc(sizeof(*all));
        if (all == NULL) {
            done(arg); /* the swaps go out all the same; only the notice is early */
        } else {
            atomic_init(&all->left, r->nloops);
            all->done = done;
            all->arg = arg;
        }
    }
    for (i = 0; i < r->nloops; i++) {
        swap_msg *m = sdd_malloc(sizeof(*m));
        if (m == NULL) {
            swap_counted(all);
            continue;
        }
        m->L = &r->per_loop[i];
        m->routes = seldon_routes_retain(fresh);
        m->all = all;
        if (sdl_loops_post(r->loops, i, swap_on_loop, m) != 0) {
            seldon_routes_release(m->routes);
            sdd_free(m);
            swap_counted(all);
        }
    }
    seldon_routes_release(r->routes);
    r->routes = fresh;
}

/*
 * Main thread: reads the routes file again; a bad one leaves the routes in force.
 * With a scheduler, the file gives the defaults of the tables it pushes from now
 * on, and its routes are used only while the scheduler gave none.
 */
static void reload(router *r)
{
    seldon_routes *fresh = NULL;
    seldon_series *s = NULL;
    const char *result = "ok";
    size_t n;
    if (r->cfg.routes_path == NULL) {
        sdd_log(SELDON_LOG_WARN, "SIGHUP: no --routes file to reload: routes come from the "
                                 "scheduler");
        return;
    }
    if (load_routes(&fresh, r->cfg.routes_path) != 0) {
        sdd_log(SELDON_LOG_ERROR, "SIGHUP: %s: the routes in force stay", seldon_last_error());
        result = "error";
    } else {
        n = seldon_routes_count(fresh);
        pthread_mutex_lock(&r->routes_mu);
        seldon_routes_get_defaults(&r->defaults, fresh);
        if (r->from_scheduler) {
            seldon_routes_release(fresh);
            pthread_mutex_unlock(&r->routes_mu);
            sdd_log(SELDON_LOG_INFO,
                    "SIGHUP: %s reloaded: its defaults apply from the scheduler's next "
                    "table; the scheduler's routes stay",
                    r->cfg.routes_path);
        } else {
            rt_routes_install(r, fresh, NULL, NULL);
            pthread_mutex_unlock(&r->routes_mu);
            sdd_log(SELDON_LOG_INFO, "SIGHUP: %s reloaded: %zu route(s)", r->cfg.routes_path, n);
        }
    }
    if (seldon_metric_series(&s, r->m_reloads, &result) == 0)
        seldon_series_add(s, 1);
}

/* Creates dir and its parents (mkdir -p). */
static int make_dirs(const char *dir)
{
    char path[4096];
    struct stat st;
    size_t i, n = strlen(dir);
    if (n == 0 || n >= sizeof(path))
        return sdd_error(SELDON_EINVAL, "%s: bad folder name", dir);
    memcpy(path, dir, n + 1);
    for (i = 1; i <= n; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        path[i] = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            return sdd_error(SELDON_EIO, "%s: %s", path, strerror(errno));
        if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
            return sdd_error(SELDON_EIO, "%s: not a folder", path);
        path[i] = i < n ? '/' : '\0';
    }
    return 0;
}

/*
 * With --scheduler-host: where the scheduler's routes are saved, and the table to
 * start on. The saved routes win when they load (the scheduler's word is newer than
 * any file); else the --routes file; else no route until the scheduler gives some.
 */
static int scheduler_start_table(router *r, const char **source, uint64_t *generation)
{
    seldon_routes *t = NULL;
    seldon_routes_builder *b = NULL;
    const char *slash;
    char dir[4096];
    size_t n;
    int rc;

    n = r->cfg.routes_cache != NULL ? strlen(r->cfg.routes_cache)
                                    : strlen(r->cfg.state_dir) + sizeof("/routes.yaml");
    r->cache_path = sdd_malloc(n + 1);
    if (r->cache_path == NULL)
        return SELDON_ENOMEM;
    if (r->cfg.routes_cache != NULL)
        memcpy(r->cache_path, r->cfg.routes_cache, n + 1);
    else
        snprintf(r->cache_path, n + 1, "%s/routes.yaml", r->cfg.state_dir);
    slash = strrchr(r->cache_path, '/');
    if (slash != NULL && slash != r->cache_path) {
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - r->cache_path), r->cache_path);
        if (make_dirs(dir) != 0) /* serving matters more than saving: go on */
            sdd_log(SELDON_LOG_ERROR, "routes cache: %s: routes will not be saved",
                    seldon_last_error());
    }
    if (access(r->cache_path, F_OK) == 0) {
        if (load_routes(&t, r->cache_path) == 0) {
            seldon_routes_release(r->routes);
            r->routes = t;
            r->from_scheduler = 1;
            *source = r->cache_path;
            *generation = rt_sub_cached_generation(r->cache_path);
            sdd_log(SELDON_LOG_INFO,
                    "starting on the scheduler's routes saved in %s (generation %llu)",
                    r->cache_path, (unsigned long long)*generation);
            return 0;
        }
        sdd_log(SELDON_LOG_ERROR, "routes cache: %s: not used", seldon_last_error());
    }
    if (r->routes != NULL)
        return 0;
    rc = seldon_routes_builder_new(&b, &r->defaults);
    if (rc == 0)
        rc = seldon_routes_builder_finish(&r->routes, b);
    seldon_routes_builder_free(b);
    *source = "nowhere yet (waiting for the scheduler)";
    return rc;
}

/* ------------------------------------------------------------ /metrics */

static void metrics_handler(void *user_data, sdh_req *req, const sdh_request *request)
{
    router *r = user_data;
    if (request->path_len == 8 && memcmp(request->path, "/metrics", 8) == 0) {
        size_t down = 0, up = 0;
        int i;
        for (i = 0; i < r->nloops; i++) {
            down += atomic_load_explicit(&r->per_loop[i].conns_down, memory_order_relaxed);
            up += atomic_load_explicit(&r->per_loop[i].conns_up, memory_order_relaxed);
        }
        seldon_series_set(r->down_conns, (double)down);
        seldon_series_set(r->up_conns, (double)up);
    }
    sdf_metrics_respond(req, request, r->metrics);
}

/* A family without labels, and its one series. */
static int add_series(seldon_series **out, seldon_metrics *reg, int32_t type, const char *name,
                      const char *help)
{
    seldon_metric *m = NULL;
    int rc = seldon_metrics_add(&m, reg, type, name, help, NULL, 0, NULL, 0);
    return rc != 0 ? rc : seldon_metric_series(out, m, NULL);
}

static int setup_metrics(router *r)
{
    const char *labels[1] = {"result"};
    int rc = seldon_metrics_new(&r->metrics);
    if (rc == 0)
        rc = seldon_router_metrics_new(&r->rmetrics, r->metrics);
    if (rc == 0)
        rc = seldon_metrics_add(&r->m_reloads, r->metrics, SELDON_METRIC_COUNTER,
                                "seldon_router_reloads_total",
                                "Routes file reloads (SIGHUP), by result.", labels, 1, NULL, 0);
    if (rc == 0 && r->cfg.scheduler_host != NULL)
        rc = add_series(&r->m_sub_connected, r->metrics, SELDON_METRIC_GAUGE,
                        "seldon_router_scheduler_connected",
                        "1 while the subscription to the scheduler's routes is up, else 0.");
    if (rc == 0 && r->cfg.scheduler_host != NULL)
        rc = add_series(&r->m_tables_received, r->metrics, SELDON_METRIC_COUNTER,
                        "seldon_router_route_tables_received_total",
                        "Route tables received from the scheduler, rejected ones included.");
    if (rc == 0 && r->cfg.scheduler_host != NULL)
        rc = add_series(&r->m_tables_rejected, r->metrics, SELDON_METRIC_COUNTER,
                        "seldon_router_route_tables_rejected_total",
                        "Route tables from the scheduler that could not be used (logged).");
    if (rc == 0 && r->cfg.scheduler_host != NULL)
        rc = add_series(&r->m_generation, r->metrics, SELDON_METRIC_GAUGE,
                        "seldon_router_route_generation",
                        "Generation of the scheduler's route table in force (0: none).");
    if (rc == 0)
        r->down_conns = seldon_router_metrics_connections(r->rmetrics, "downstream");
    if (rc == 0)
        r->up_conns = seldon_router_metrics_connections(r->rmetrics, "upstream");
    return rc;
}

/* ------------------------------------------------------------ shutdown */

static void h2_closed(void *arg)
{
    rt_loop *L = arg;
    L->h2_draining = NULL;
}

static void client_closed(void *arg)
{
    (void)arg; /* the loop ends once every handle is closed: nothing to count */
}

/* On each loop, after the servers stopped: closes that loop's clients and h2 server. */
static void close_on_loop(void *arg)
{
    rt_loop *L = arg;
    rt_pool *p, *next;
    L->closing = 1;
    uv_close((uv_handle_t *)&L->gauge_timer, NULL);
    rt_hold_close(L);
    for (p = L->pools; p != NULL; p = next) {
        next = p->next;
        sdc_pool_free(p->pool, NULL, NULL);
        sdd_free(p);
    }
    L->pools = NULL;
    if (L->h2 != NULL) { /* never drained (start-up failed) */
        sd2_server_close(L->h2, h2_closed, L);
        L->h2 = NULL;
    }
    if (L->h2_draining != NULL) /* streams outlived the grace: cut them, or the loop never ends */
        sd2_server_close(L->h2_draining, h2_closed, L);
    if (L->h2c != NULL) {
        sd2_client_close(L->h2c, client_closed, NULL);
        L->h2c = NULL;
    }
}

/* Graceful h2c shutdown: GOAWAY on every connection, then wait for their streams. */
static sdf_countdown draining = SDF_COUNTDOWN_INIT;

static void h2_drained(void *arg)
{
    rt_loop *L = arg;
    if (L != NULL)
        L->h2_draining = NULL; /* the server freed itself */
    sdf_countdown_done(&draining);
}

static void drain_on_loop(void *arg)
{
    rt_loop *L = arg;
    if (L->h2 == NULL) {
        h2_drained(NULL);
        return;
    }
    L->h2_draining = L->h2;
    L->h2 = NULL;
    sd2_server_drain(L->h2_draining, h2_drained, L);
}

static void drain_h2_start(router *r)
{
    int i;
    for (i = 0; i < r->nloops; i++) {
        sdf_countdown_add(&draining, 1);
        if (sdl_loops_post(r->loops, i, drain_on_loop, &r->per_loop[i]) != 0)
            h2_drained(NULL);
    }
}

int main(int argc, char **argv)
{
    router r;
    sdh_config hc;
    sd2_server_cbs h2cbs;
    sd2_opts h2o;
    sigset_t sigs;
    struct rlimit rl;
    int sig = 0, rc, i, mport = -1;
    const char *source;
    uint64_t generation_at_start = 0;

    memset(&r, 0, sizeof(r));
    if (parse_args(&r.cfg, argc, argv) < 0)
        return 2;
    sdd_log_init("seldon-router", r.cfg.log_level);
    source = r.cfg.routes_path;

    /* An ingress holds many idle keep-alive connections: take every descriptor allowed. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    sdf_signals_block(&sigs, 1);

    pthread_mutex_init(&r.routes_mu, NULL);
    if (r.cfg.routes_path != NULL && load_routes(&r.routes, r.cfg.routes_path) != 0) {
        sdd_log(SELDON_LOG_ERROR, "%s", seldon_last_error());
        fprintf(stderr, "seldon-router: %s\n", seldon_last_error());
        return 2;
    }
    r.defaults = (seldon_routes_defaults)SELDON_ROUTES_DEFAULTS_INIT;
    seldon_routes_get_defaults(&r.defaults, r.routes); /* the file's, when there is one */
    if (r.cfg.scheduler_host != NULL &&
        scheduler_start_table(&r, &source, &generation_at_start) != 0) {
        sdd_log(SELDON_LOG_ERROR, "start-up failed: %s", seldon_last_error());
        return 1;
    }
    rc = setup_metrics(&r);
    if (rc == 0 && r.cfg.scheduler_host != NULL) {
        seldon_series_set(r.m_generation, (double)generation_at_start);
        rc = sdl_loops_new(&r.ctl, 1);
        if (rc == 0)
            rc = rt_sub_new(&r.sub, &r, sdl_loops_loop(r.ctl, 0));
    }
    if (rc == 0 && (rc = sdl_loops_new(&r.loops, r.cfg.io_threads)) == 0)
        sdl_loops_busy_poll(r.loops, r.cfg.busy_poll_us);
    if (rc != 0) {
        sdd_log(SELDON_LOG_ERROR, "start-up failed: %s", seldon_last_error());
        return 1;
    }
    r.nloops = r.cfg.io_threads;
    r.per_loop = sdd_calloc((size_t)r.nloops, sizeof(rt_loop));
    if (r.per_loop == NULL)
        return 1;

    memset(&h2o, 0, sizeof(h2o));
    h2o.max_conns_per_upstream = 4;
    /* --idle-timeout 0 (never) must reach h2c as "very long": its 0 means its default. */
    h2o.idle_timeout_ms = r.cfg.idle_timeout_ms ? r.cfg.idle_timeout_ms : (uint64_t)1 << 40;
    h2o.forward_only = 1; /* upstream answers are only forwarded (servers ignore this) */
    memset(&h2cbs, 0, sizeof(h2cbs));
    h2cbs.on_request = rt_grpc_request;
    for (i = 0; i < r.nloops && rc == 0; i++) {
        rt_loop *L = &r.per_loop[i];
        L->r = &r;
        L->index = i;
        L->loop = sdl_loops_loop(r.loops, i);
        L->seed = (uint64_t)rt_now_ns() ^ ((uint64_t)getpid() << 32) ^ ((uint64_t)i << 56);
        rc = seldon_router_lb_new(&L->lb, r.routes, r.rmetrics, L->seed);
        if (rc == 0)
            rc = sd2_server_new(&L->h2, L->loop, &h2o, &h2cbs, L);
        if (rc == 0)
            rc = sd2_client_new(&L->h2c, L->loop, &h2o);
        if (rc == 0)
            rc = sdl_loops_post(r.loops, i, loop_init, L);
    }
    if (rc != 0) {
        sdd_log(SELDON_LOG_ERROR, "start-up failed: %s", seldon_last_error());
        return 1;
    }

    memset(&hc, 0, sizeof(hc));
    hc.host = r.cfg.host;
    hc.port = r.cfg.port;
    hc.max_body = r.cfg.max_body;
    hc.idle_timeout_ms = r.cfg.idle_timeout_ms;
    hc.request_timeout_ms = 30000;
    hc.handler = rt_rest_handler;
    hc.head_handler = rt_rest_head;
    hc.user_data = &r;
    hc.h2_adopt = adopt_h2;
    hc.h2_user_data = &r;
    hc.pass_content_encoding = 1;
    rc = sdh_server_new(&r.http, &hc);
    for (i = 0; i < r.nloops && rc == 0; i++)
        rc = sdh_server_listen(r.http, sdl_loops_loop(r.loops, i));
    if (rc != 0) {
        sdd_log(SELDON_LOG_ERROR, "port %d: %s", r.cfg.port, seldon_last_error());
        return 1;
    }
    rc = sdf_metrics_listen(&r.metrics_http, &mport, sdl_loops_loop(r.loops, 0), r.cfg.host,
                            r.cfg.metrics_port, metrics_handler, &r);
    if (rc != 0) {
        sdd_log(SELDON_LOG_ERROR, "metrics port %d: %s", r.cfg.metrics_port, seldon_last_error());
        return 1;
    }
    rc = sdl_loops_start(r.loops);
    if (rc == 0 && r.ctl != NULL)
        rc = sdl_loops_post(r.ctl, 0, rt_sub_start, r.sub);
    if (rc == 0 && r.ctl != NULL)
        rc = sdl_loops_start(r.ctl);
    if (rc != 0) {
        sdd_log(SELDON_LOG_ERROR, "start-up failed: %s", seldon_last_error());
        return 1;
    }
    sdd_log(SELDON_LOG_INFO, "routing %zu route(s) from %s: REST and gRPC on port %d, %d loop(s)",
            seldon_routes_count(r.routes), source, sdh_server_port(r.http), r.nloops);
    if (r.cfg.scheduler_host != NULL)
        sdd_log(SELDON_LOG_INFO, "subscribing to routes from the scheduler at %s; saved to %s",
                r.cfg.scheduler_host, r.cache_path);
    printf("listening port=%d metrics=%d\n", sdh_server_port(r.http), mport);
    fflush(stdout);

    for (;;) {
        sig = sdf_signals_wait(&sigs);
        if (sig == SIGHUP) {
            reload(&r);
            continue;
        }
        break;
    }
    sdd_log(SELDON_LOG_INFO, "%s: finishing requests in flight, then exiting",
            sdf_signal_name(sig));
    /* Stop taking connections; let REST requests and gRPC streams in flight finish. */
    drain_h2_start(&r);
    sdh_server_stop(r.http, r.cfg.grace_ms);
    sdf_countdown_wait(&draining, r.cfg.grace_ms);
    if (r.metrics_http != NULL)
        sdh_server_stop(r.metrics_http, 0);
    /* The subscription first: it posts table swaps to the loops closed next. */
    if (r.ctl != NULL) {
        sdl_loops_post(r.ctl, 0, rt_sub_close, r.sub);
        sdl_loops_stop(r.ctl);
        sdl_loops_join(r.ctl);
        sdl_loops_free(r.ctl);
    }
    for (i = 0; i < r.nloops; i++)
        sdl_loops_post(r.loops, i, close_on_loop, &r.per_loop[i]);
    sdl_loops_stop(r.loops);
    sdl_loops_join(r.loops);
    sdh_server_free(r.http);
    sdh_server_free(r.metrics_http);
    for (i = 0; i < r.nloops; i++)
        seldon_router_lb_free(r.per_loop[i].lb);
    sdl_loops_free(r.loops);
    sdd_free(r.per_loop);
    seldon_routes_release(r.routes);
    sdd_free(r.cache_path);
    pthread_mutex_destroy(&r.routes_mu);
    seldon_router_metrics_free(r.rmetrics);
    seldon_metrics_free(r.metrics);
    sdd_log(SELDON_LOG_INFO, "stopped");
    return 0;
}
