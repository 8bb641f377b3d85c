/*
 * seldon-router: the single ingress of the data plane. One port serves REST
 * (HTTP/1.1) and gRPC (h2c); each request goes to an upstream of the route its
 * seldon-model header (or REST path) names. Shared state of its parts:
 * main.c (flags, loops, signals, reloads, /metrics), rest.c (the HTTP/1.1
 * proxy), grpc.c (the h2c proxy) and sub.c (routes pushed by the scheduler).
 *
 * Threads: the main thread owns the loops and takes signals. Everything about
 * a request happens on the loop that accepted it: its balancer, its upstream
 * connections and its timers are that loop's own (rt_loop), so the forwarding
 * path takes no lock and makes no cross-thread hop. The subscription to the
 * scheduler runs on a control loop of its own, which serves no request.
 */
#ifndef RT_ROUTER_H
#define RT_ROUTER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

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
    uint32_t busy_poll_us;
    size_t max_body;
    uint64_t idle_timeout_ms;
    uint64_t grace_ms;
    size_t replay_limit; /* request bytes kept to replay on another upstream */
    uint32_t upstream_conns;
    int32_t log_level;
    const char *scheduler_host;  /* --scheduler-host "HOST:PORT", or NULL: no subscription */
    const char *routes_cache;    /* --routes-cache, or NULL: <state_dir>/routes.yaml */
    const char *state_dir;       /* --state-dir (default ./.seldon-router) */
    const char *name;            /* --name: how the scheduler's logs call this router */
    uint64_t resubscribe_max_ms; /* cap on the backoff between subscription attempts */
    uint64_t hold_ms;            /* --hold: how long a request waits for a route's upstreams */
} rt_config;

typedef struct rt_sub rt_sub;

#define RT_SUB_BACKOFF_MIN_MS 100 /* the first wait after a failed subscription attempt */

typedef struct router router;

/* A request held until its route has an upstream again (hold.c). */
typedef struct rt_held {
    struct rt_held *prev, *next;
    int64_t until_ns; /* then it fails */
    /* Called off the list: try again, or fail when expired (park again to wait on). */
    void (*wake)(struct rt_held *h, int expired);
    int linked;
} rt_held;

#define RT_GONE_MAX 8 /* tables swapped out within --hold, kept to know a route moved */

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
    rt_held held;                        /* requests waiting for upstreams (hold.c) */
    uv_timer_t hold_timer;
    seldon_routes *gone[RT_GONE_MAX]; /* tables swapped out lately, oldest first */
    int64_t gone_at[RT_GONE_MAX];
    int ngone;
    int mirrors; /* experiment mirror copies in flight on this loop */
} rt_loop;

/*
 * Mirror copies in flight on one loop, at most: past it a copy is not sent, so that a
 * slow mirror never takes the connections the callers' requests need.
 */
#define RT_MIRRORS_MAX(r) ((int)((r)->cfg.upstream_conns / 4 > 0 ? (r)->cfg.upstream_conns / 4 : 1))

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
    seldon_metric *m_reloads;         /* {result} */
    seldon_series *m_sub_connected;   /* seldon_router_scheduler_connected */
    seldon_series *m_tables_received; /* seldon_router_route_tables_received_total */
    seldon_series *m_tables_rejected; /* seldon_router_route_tables_rejected_total */
    seldon_series *m_generation;      /* seldon_router_route_generation */
    /* Guards routes, defaults and from_scheduler, and orders the swaps posted to the
       loops: the main thread (SIGHUP) and the control loop (the scheduler) both install. */
    pthread_mutex_t routes_mu;
    seldon_routes *routes;           /* the table in force */
    seldon_routes_defaults defaults; /* what the scheduler's tables are built with */
    int from_scheduler;              /* routes came from the scheduler (or its cache) */
    char *cache_path;                /* where the scheduler's routes are saved */
    sdl_loops *ctl;                  /* the control loop (with --scheduler-host) */
    rt_sub *sub;
};

/*
 * Makes fresh (one reference, taken over) the table in force on every loop, as a
 * SIGHUP reload does; requests in flight finish on the table they started with.
 * Callers hold r->routes_mu, so that every loop sees the swaps in the same order.
 * done (may be NULL) runs once every loop has swapped, on the thread of the last
 * one (or of a loop that could not take the swap), with arg.
 */
void rt_routes_install(router *r, seldon_routes *fresh, void (*done)(void *arg), void *arg);

/*
 * Refuses a table whose upstreams the transports cannot reach: they connect to IP
 * addresses and resolve no names. source (may be NULL) prefixes the error message.
 */
int rt_routes_check(const seldon_routes *t, const char *source);

/* 1 when host is a numeric IPv4 or IPv6 address. */
int rt_numeric_host(const char *host);

/*
 * sub.c: the subscription to the scheduler's RouteService. rt_sub_parse_host
 * reads --scheduler-host ("HOST[:PORT]", port 9002 by default; HOST an IP address
 * or a name, resolved at each attempt) and returns -1 for a bad one. rt_sub_new runs on the
 * main thread before the control loop starts (loop: that loop), rt_sub_start and
 * rt_sub_close on the control loop (post them); rt_sub_close frees the subscription
 * once its handles are closed. The cache file's generation comment is read by
 * rt_sub_cached_generation (0 when it has none).
 */
int rt_sub_parse_host(char *host, size_t cap, int *port, const char *spec);
int rt_sub_new(rt_sub **out, router *r, uv_loop_t *loop);
void rt_sub_start(void *sub);
void rt_sub_close(void *sub);
uint64_t rt_sub_cached_generation(const char *path);

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
/* The copy of rr for its mirror, once per request (*sent set): NULL when rr is not
 * mirrored, its copy went already, or the copy cannot be made. Caller owns the copy. */
seldon_router_req *rt_mirror_req(uint8_t *sent, seldon_router_req *rr, int64_t now_ns);
/* An upstream timeout for a deadline on the monotonic clock: 0 without one (deadline <= 0),
 * else the milliseconds left rounded up, at least 1. */
uint64_t rt_timeout_ms(int64_t deadline, int64_t now_ns);

/* Remembers an h2c pool for the connections gauge. */
void rt_note_h2_upstream(rt_loop *L, sd2_upstream *u);

/*
 * hold.c, on the loop's thread. rt_hold_until: when a request starting its hold now
 * must give up (0: holding is off). rt_hold parks h (its until_ns and wake set);
 * rt_unhold takes it off (no-op when not parked). After a table swap on a loop,
 * rt_hold_swapped keeps the old table (takes its reference) and rt_hold_wake retries
 * every held request. rt_route_gone: 1 when a table swapped out within the hold had the
 * route. A route in force with no upstream for the request's protocol is a
 * misconfiguration, not a move: such requests fail at once (rt_route_serves). rt_hold_close fails
 * what is held and closes the timer.
 */
void rt_hold_init(rt_loop *L);
int64_t rt_hold_until(rt_loop *L, int64_t now_ns);
void rt_hold(rt_loop *L, rt_held *h);
void rt_unhold(rt_held *h);
void rt_hold_swapped(rt_loop *L, seldon_routes *old);
void rt_hold_wake(rt_loop *L);
int rt_route_gone(rt_loop *L, const char *name, size_t len);
/* 1 when the route in force has an upstream for protocol (SELDON_ROUTER_HTTP or _GRPC). */
int rt_route_serves(rt_loop *L, const char *name, size_t len, int32_t protocol);
void rt_hold_close(rt_loop *L);

/* rest.c: the HTTP/1.1 server's head and whole-body handlers. */
void rt_rest_head(void *user_data, sdh_req *req, const sdh_request *head);
void rt_rest_handler(void *user_data, sdh_req *req, const sdh_request *request);

/* grpc.c: the h2c server's request callback (user_data: the rt_loop). */
void rt_grpc_request(void *user_data, sd2_stream *s, const sd2_header *h, size_t n, int end);

/*
 * 1 when the upstream of req's last pick is told what to serve in seldon-internal-model
 * (its tag): a model version, or a pipeline route "<p>.pipeline" (a gateway reached
 * through an experiment serves the candidate, not the client's seldon-model).
 */
static inline int rt_tags_upstream(const seldon_router_req *rr)
{
    const char *n;
    size_t l;
    if (seldon_router_req_version(rr) != 0)
        return 1;
    n = seldon_router_req_route_name(rr);
    l = n != NULL ? strlen(n) : 0;
    return l > 9 && memcmp(n + l - 9, SELDON_ROUTER_PIPELINE_SUFFIX, 9) == 0;
}

#endif
