/*
 * seldon-router: the single ingress of the data plane. One port serves REST
 * (HTTP/1.1) and gRPC (h2c); each request goes to an upstream of the route its
 * seldon-model header (or REST path) names. Shared state of its parts:
 * main.c (flags, loops, signals, reloads, /metrics), rest.c (the HTTP/1.1
 * proxy) and grpc.c (the h2c proxy).
 *
 * Threads: the main thread owns the loops and takes signals. Everything about
 * a request happens on the loop that accepted it: its balancer, its upstream
 * connections and its timers are that loop's own (rt_loop), so the forwarding
 * path takes no lock and makes no cross-thread hop.
 */
#ifndef RT_ROUTER_H
#define RT_ROUTER_H

#include <stdatomic.h>
#include <stdint.h>

#include <uv.h>

#include "h2.h"
#include "http_client.h"
#include "http_server.h"
#include "loops.h"
#include "seldon/seldon.h"

typedef struct rt_config {
    const char *host;
    int port;
    int metrics_port;
    const char *routes_path;
    int io_threads;
    size_t max_body;
    uint64_t idle_timeout_ms;
    uint64_t grace_ms;
    size_t replay_limit; /* request bytes kept to replay on another upstream */
    uint32_t upstream_conns;
    int32_t log_level;
} rt_config;

typedef struct router router;

/* One upstream HTTP/1.1 pool of one loop, keyed by "host:port". */
typedef struct rt_pool {
    struct rt_pool *next;
    sdc_pool *pool;
    char addr[];
} rt_pool;

/* What one loop owns. Touched on that loop's thread only. */
typedef struct rt_loop {
    router *r;
    uv_loop_t *loop;
    int index;
    seldon_router_lb *lb;
    rt_pool *pools;
    sd2_server *h2;
    sd2_client *h2c;
    uint64_t seed;
    uv_timer_t gauge_timer;
    sd2_upstream *h2ups[64]; /* the h2c pools used, for the connections gauge */
    size_t nh2ups;
    _Atomic size_t conns_down, conns_up; /* read by /metrics on another loop */
    int closing;                         /* the loop's clients are being closed */
    sd2_server *h2_draining;             /* after SIGTERM, until its streams end */
} rt_loop;

struct router {
    rt_config cfg;
    sdl_loops *loops;
    rt_loop *per_loop;
    int nloops;
    sdh_server *http;
    sdh_server *metrics_http;
    seldon_metrics *metrics;
    seldon_router_metrics *rmetrics;
    seldon_series *down_conns;
    seldon_series *up_conns;
    seldon_metric *m_reloads; /* {result} */
    seldon_routes *routes;    /* the table in force (main thread) */
};

/* The loop state of the calling loop thread. */
rt_loop *rt_current(router *r);

int64_t rt_now_ns(void);

/* A new request id (a UUID, from the loop's balancer) into out[37]. */
void rt_request_id(rt_loop *L, char out[37]);

/* The HTTP/1.1 pool of this loop for an upstream "host:port", created on first use. */
sdc_pool *rt_pool_get(rt_loop *L, const seldon_router_upstream *u);

/*
 * Keeps a request's bytes for a retry while *ok: appended to replay while the total
 * stays within the --replay-limit; past it (or out of memory) the copy is dropped and
 * *ok cleared, and the request can no longer be replayed.
 */
void rt_replay_keep(router *r, seldon_buf *replay, uint8_t *ok, const uint8_t *data, size_t len);

/* Remembers an h2c pool for the connections gauge. */
void rt_note_h2_upstream(rt_loop *L, sd2_upstream *u);

/* rest.c: the HTTP/1.1 server's head and whole-body handlers. */
void rt_rest_head(void *user_data, sdh_req *req, const sdh_request *head);
void rt_rest_handler(void *user_data, sdh_req *req, const sdh_request *request);

/* grpc.c: the h2c server's request callback (user_data: the rt_loop). */
void rt_grpc_request(void *user_data, sd2_stream *s, const sd2_header *h, size_t n, int end);

#endif
