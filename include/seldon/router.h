/*
 * The router's decisions: the routes file, the route table, which route a
 * request takes, least-request balancing, retries and outlier ejection.
 * Pure logic: no sockets, no threads; time comes in as now_ns (monotonic
 * nanoseconds) and deadlines come back. The format and the rules are in
 * docs/router.md.
 *
 * Thread safety:
 * - A route table (seldon_routes) is immutable once built. Any thread may
 *   read it, retain it and release it at any time (the count is atomic), so
 *   a daemon swaps a new table in while requests in flight keep the old one.
 * - A balancer (seldon_router_lb), and every request made from it, belongs to
 *   one thread at a time: the daemon keeps one per I/O loop. Nothing on that
 *   path takes a lock or an atomic, except the metrics it records.
 * - seldon_router_metrics may be shared by every balancer of a process.
 * - The remaining free functions are reentrant.
 */
#ifndef SELDON_ROUTER_H
#define SELDON_ROUTER_H

#include "common.h"
#include "metrics.h"

#ifdef __cplusplus
extern "C" {
#endif

/* --- Limits ------------------------------------------------------------- */

#define SELDON_ROUTES_NAME_MAX 253        /* bytes in a route name */
#define SELDON_ROUTES_UPSTREAMS_MAX 1024  /* upstreams in one route */
#define SELDON_ROUTES_ROUTES_MAX 100000   /* routes in one table */
#define SELDON_ROUTES_RETRIES_MAX 10      /* retries after the first attempt */
#define SELDON_ROUTES_FILE_MAX (16 << 20) /* bytes in a routes file */

/* --- The route table ---------------------------------------------------- */

typedef struct seldon_routes seldon_routes; /* immutable, refcounted */
typedef struct seldon_routes_builder seldon_routes_builder;

/* Settings that apply to every route unless the route says otherwise. */
typedef struct seldon_routes_defaults {
    uint32_t version;           /* SELDON_ROUTES_DEFAULTS_VERSION */
    int64_t timeout_ms;         /* whole request, retries included; 0: none. Default 0 */
    int32_t retries;            /* retries after the first attempt. Default 3 */
    int64_t connect_timeout_ms; /* for the daemon's connects. Default 1000 */
    int32_t eject_failures;     /* consecutive failures that eject; 0: never. Default 5 */
    int64_t eject_base_ms;      /* first ejection lasts this; the k-th k times it. Default 1000 */
    int64_t eject_max_ms;       /* cap on one ejection. Default 30000 */
} seldon_routes_defaults;

#define SELDON_ROUTES_DEFAULTS_VERSION 1
#define SELDON_ROUTES_DEFAULTS_INIT                                                                \
    {                                                                                              \
        SELDON_ROUTES_DEFAULTS_VERSION, 0, 3, 1000, 5, 1000, 30000                                 \
    }

/*
 * One upstream server: its REST and gRPC addresses (at least one is set).
 * Every pointer is borrowed from the table: valid while the table is retained.
 */
typedef struct seldon_router_upstream {
    const char *http;      /* "host:port" as written, or NULL */
    const char *http_host; /* the host alone, IPv6 without brackets; NULL with http */
    const char *grpc;      /* "host:port" as written, or NULL */
    const char *grpc_host;
    uint16_t http_port; /* 0 when http is NULL */
    uint16_t grpc_port;
    uint32_t index; /* position in the table's set of distinct upstreams */
} seldon_router_upstream;

/*
 * Parses a routes file held in memory. source names it in error messages
 * ("routes.yaml"; NULL: "routes"). On failure seldon_last_error() reads
 * `routes.yaml:7: routes[1].upstreams[0].http: expected host:port, got "abc"`
 * and the code is SELDON_EPARSE (not YAML, wrong shape, unknown field, bad
 * value, duplicate) or SELDON_ETOOBIG (a limit above). Caller owns *out;
 * release with seldon_routes_release().
 */
SELDON_API int seldon_routes_parse(seldon_routes **out, const char *data, size_t len,
                                   const char *source);

/* Reads and parses the file at path (named by its path in errors). As seldon_routes_parse(). */
SELDON_API int seldon_routes_load(seldon_routes **out, const char *path);

/*
 * Appends the table as a routes file that seldon_routes_parse() reads back to
 * an equal table: defaults in full, then each route in table order.
 */
SELDON_API int seldon_routes_serialize(seldon_buf *out, const seldon_routes *routes);

/*
 * Writes the serialised table to path atomically (a temporary file beside
 * it, flushed, then renamed over path). SELDON_EIO on a file system error.
 */
SELDON_API int seldon_routes_save(const seldon_routes *routes, const char *path);

/* Adds a reference (atomic); returns routes. NULL is allowed. */
SELDON_API seldon_routes *seldon_routes_retain(seldon_routes *routes);

/* Drops a reference (atomic); the last one frees the table. NULL is allowed. */
SELDON_API void seldon_routes_release(seldon_routes *routes);

/* 1 when both tables hold the same defaults and routes, in the same order. */
SELDON_API int32_t seldon_routes_equal(const seldon_routes *a, const seldon_routes *b);

/* Copies the table's defaults into *out (whose version field is overwritten). */
SELDON_API void seldon_routes_get_defaults(seldon_routes_defaults *out,
                                           const seldon_routes *routes);

/* The number of routes. */
SELDON_API size_t seldon_routes_count(const seldon_routes *routes);

/* The index of the route named name[0..len), or SELDON_ENOTFOUND. Hashed: O(1). */
SELDON_API int seldon_routes_find(size_t *out_index, const seldon_routes *routes, const char *name,
                                  size_t len);

/* A route's name, NUL-terminated; borrowed from the table. NULL for a bad index. */
SELDON_API const char *seldon_routes_name(const seldon_routes *routes, size_t route);

/* A route's timeout in ms after defaults apply (0: none); -1 for a bad index. */
SELDON_API int64_t seldon_routes_timeout_ms(const seldon_routes *routes, size_t route);

/* A route's retry bound after defaults apply; -1 for a bad index. */
SELDON_API int32_t seldon_routes_retries(const seldon_routes *routes, size_t route);

/* The number of upstreams of a route (0 for a bad index). */
SELDON_API size_t seldon_routes_upstream_count(const seldon_routes *routes, size_t route);

/* The i-th upstream of a route, borrowed from the table; NULL for a bad index. */
SELDON_API const seldon_router_upstream *seldon_routes_upstream(const seldon_routes *routes,
                                                                size_t route, size_t i);

/*
 * Building a table in code (e.g. from routes the scheduler pushes). The
 * builder checks what the parser checks and names the route in its errors.
 * Caller owns *out; free with seldon_routes_builder_free(). defaults may be
 * NULL for SELDON_ROUTES_DEFAULTS_INIT; it is copied.
 */
SELDON_API int seldon_routes_builder_new(seldon_routes_builder **out,
                                         const seldon_routes_defaults *defaults);
SELDON_API void seldon_routes_builder_free(seldon_routes_builder *builder);

/*
 * Starts a route; the upstreams added next belong to it. timeout_ms and
 * retries of -1 take the defaults. name is copied. SELDON_EEXIST for a
 * duplicate name.
 */
SELDON_API int seldon_routes_builder_add_route(seldon_routes_builder *builder, const char *name,
                                               int64_t timeout_ms, int32_t retries);

/* Adds an upstream to the last route: "host:port" strings, copied; either may be NULL, not both. */
SELDON_API int seldon_routes_builder_add_upstream(seldon_routes_builder *builder, const char *http,
                                                  const char *grpc);

/*
 * Builds the table. Caller owns *out (release with seldon_routes_release());
 * the builder is left empty and may be freed or reused.
 */
SELDON_API int seldon_routes_builder_finish(seldon_routes **out, seldon_routes_builder *builder);

/* --- Which route -------------------------------------------------------- */

#define SELDON_ROUTER_HTTP 1 /* REST over HTTP/1.1 */
#define SELDON_ROUTER_GRPC 2 /* gRPC over h2c */

#define SELDON_ROUTER_HEADER "seldon-model"
#define SELDON_ROUTER_PIPELINE_SUFFIX ".pipeline"

/*
 * The route name of a request, written to out (cap bytes, NUL-terminated)
 * with its length in *out_len. The seldon-model header wins when present
 * (header non-NULL, even empty: an empty value is refused). Otherwise, for
 * REST only, the path gives it: /v2/models/<m>[/...] -> <m>,
 * /v2/pipelines/<p>[/...] -> <p>.pipeline (a query string is ignored).
 * Errors, with a message the daemon may send as is:
 * SELDON_EINVAL   a gRPC call without the header, or an empty header;
 * SELDON_ENOTFOUND a REST path that names no model or pipeline;
 * SELDON_ETOOBIG  a name longer than SELDON_ROUTES_NAME_MAX or than cap-1.
 */
SELDON_API int seldon_router_route_name(char *out, size_t *out_len, size_t cap, int32_t protocol,
                                        const char *header, size_t header_len, const char *path,
                                        size_t path_len);

/*
 * The HTTP status and gRPC status code that answer a router error code:
 * ENOTFOUND 404/NOT_FOUND, EINVAL 400/INVALID_ARGUMENT, EUNAVAIL
 * 503/UNAVAILABLE, ETIMEDOUT 504/DEADLINE_EXCEEDED, ETOOBIG 431/INVALID_ARGUMENT,
 * anything else 500/INTERNAL. Either out pointer may be NULL.
 */
SELDON_API void seldon_router_status(int32_t *out_http, int32_t *out_grpc, int32_t code);

/* --- Metrics ------------------------------------------------------------ */

typedef struct seldon_router_metrics seldon_router_metrics;

/*
 * Adds the router's families to registry:
 *   seldon_router_requests_total{route,code}            counter (code: HTTP status, or gRPC code)
 *   seldon_router_mirrored_total{route}                 counter: mirror copies (their first pick)
 *   seldon_router_upstream_seconds{route}               histogram of each attempt's time
 *   seldon_router_retries_total{route}                  counter
 *   seldon_router_ejections_total{upstream}             counter
 *   seldon_router_open_connections{side}                gauge (side: "downstream" | "upstream")
 * Balancers given this handle record into them. Caller owns *out; free with
 * seldon_router_metrics_free() after every balancer using it; registry must
 * outlive it.
 */
SELDON_API int seldon_router_metrics_new(seldon_router_metrics **out, seldon_metrics *registry);
SELDON_API void seldon_router_metrics_free(seldon_router_metrics *metrics);

/* The open-connections gauge of one side ("downstream" or "upstream"), for the daemon to move. */
SELDON_API seldon_series *seldon_router_metrics_connections(seldon_router_metrics *metrics,
                                                            const char *side);

/*
 * Counts one answer in seldon_router_requests_total without a request object:
 * for requests refused before a route was found. Pass route "" for those, so
 * that names chosen by clients never become label values. Takes the
 * registry's lock to find the series: not for the hot path.
 */
SELDON_API void seldon_router_metrics_request(seldon_router_metrics *metrics, const char *route,
                                              int32_t code);

/* --- Balancing, retries, ejection (one balancer per I/O loop) ----------- */

typedef struct seldon_router_lb seldon_router_lb;
typedef struct seldon_router_req seldon_router_req;

/* How an attempt ended. */
#define SELDON_ROUTER_OK 0               /* an answer that is not a failure below */
#define SELDON_ROUTER_CONNECT_FAILED 1   /* refused, unreachable, connect timeout */
#define SELDON_ROUTER_HTTP_5XX 2         /* a 5xx status */
#define SELDON_ROUTER_GRPC_UNAVAILABLE 3 /* grpc-status 14 */
#define SELDON_ROUTER_TIMEOUT 4          /* the request's deadline passed */
#define SELDON_ROUTER_RESET 5            /* the connection closed or reset before the answer */
#define SELDON_ROUTER_CANCELED 6         /* the client went away: counts neither way */

/*
 * A balancer over routes, for one loop. Retains routes. seed drives the
 * random choices (tests pass a constant). metrics may be NULL; borrowed, it
 * must outlive the balancer. Caller owns *out; free with seldon_router_lb_free()
 * once every request made from it is freed.
 */
SELDON_API int seldon_router_lb_new(seldon_router_lb **out, seldon_routes *routes,
                                    seldon_router_metrics *metrics, uint64_t seed);
SELDON_API void seldon_router_lb_free(seldon_router_lb *lb);

/*
 * Makes routes the table for requests started from now on (retains it).
 * Requests in flight finish on the table they started with. An upstream
 * that stays (same http and grpc addresses) keeps its in-flight count and
 * its health; the others start fresh.
 */
SELDON_API int seldon_router_lb_swap(seldon_router_lb *lb, seldon_routes *routes);

/*
 * Writes a fresh x-request-id (a random UUID, version 4, lowercase: 36
 * characters and a NUL) to out, which holds at least 37 bytes. The bits come
 * from the balancer's generator (seeded by seldon_router_lb_new()).
 */
SELDON_API void seldon_router_lb_request_id(char *out, seldon_router_lb *lb);

/* The current table; borrowed, valid until the next swap (retain it to keep it). */
SELDON_API seldon_routes *seldon_router_lb_routes(const seldon_router_lb *lb);

/* Requests started and not yet ended on an upstream (any table), by address; 0 if unknown. */
SELDON_API int32_t seldon_router_lb_in_flight(const seldon_router_lb *lb,
                                              const seldon_router_upstream *upstream);

/* 1 when that upstream is ejected at now_ns (its probe not yet due), else 0. */
SELDON_API int32_t seldon_router_lb_ejected(const seldon_router_lb *lb,
                                            const seldon_router_upstream *upstream, int64_t now_ns);

/*
 * Starts a request on the route named name[0..len) of the current table
 * (see seldon_router_route_name()). protocol is SELDON_ROUTER_HTTP or _GRPC:
 * only upstreams with an address for it are picked. SELDON_ENOTFOUND when
 * the table has no such route (message: `no route for model "iris"`).
 * Caller owns *out; free with seldon_router_req_free().
 */
SELDON_API int seldon_router_req_new(seldon_router_req **out, seldon_router_lb *lb,
                                     const char *name, size_t len, int32_t protocol,
                                     int64_t now_ns);

/*
 * Ends any attempt still open (as SELDON_ROUTER_CANCELED) and frees the
 * request. NULL is allowed.
 */
SELDON_API void seldon_router_req_free(seldon_router_req *req);

/* When the request must be answered 504/DEADLINE_EXCEEDED, in now_ns time; 0: never. */
SELDON_API int64_t seldon_router_req_deadline(const seldon_router_req *req);

/* The route's index and name in the request's table (borrowed, valid until the request is freed).
 */
SELDON_API size_t seldon_router_req_route(const seldon_router_req *req);
SELDON_API const char *seldon_router_req_route_name(const seldon_router_req *req);

/* Attempts started so far (1 after the first pick). */
SELDON_API int32_t seldon_router_req_attempts(const seldon_router_req *req);

/*
 * Picks the upstream for the next attempt and counts it in flight: the
 * least loaded among the route's upstreams not yet tried by this request
 * and not ejected (true least over few upstreams, the better of two random
 * ones over many; ties broken at random). An upstream whose ejection has run
 * out takes one probe at a time. When every untried upstream is ejected, the
 * one whose ejection ends first is used rather than failing (panic).
 * *out is borrowed from the request's table, valid until the request is freed.
 * SELDON_EUNAVAIL when no untried upstream has an address for the protocol;
 * SELDON_ESTATE when an attempt is already open.
 */
SELDON_API int seldon_router_pick(const seldon_router_upstream **out, seldon_router_req *req,
                                  int64_t now_ns);

/*
 * Ends the open attempt with outcome (SELDON_ROUTER_*) and says, in
 * *out_retry, whether to pick again: 1 only when the outcome is a connect
 * failure, a 5xx, UNAVAILABLE or a reset, the request can be replayed
 * (replayable: the daemon still holds the whole request, or sent none of it),
 * the route's retry bound is not reached, the deadline has not passed and an
 * untried upstream remains. Failures (all but OK and CANCELED) count toward
 * the upstream's ejection; an OK clears them. *out_deadline_ns (may be NULL)
 * receives the request's deadline, so the daemon re-arms one timer.
 * SELDON_ESTATE when no attempt is open.
 */
SELDON_API int seldon_router_attempt_end(int32_t *out_retry, int64_t *out_deadline_ns,
                                         seldon_router_req *req, int32_t outcome,
                                         int32_t replayable, int64_t now_ns);

/*
 * The outcome of an answer: http_status (0 when none) and grpc_status (-1
 * when none, e.g. REST or not yet known). 5xx -> HTTP_5XX, grpc 14 ->
 * GRPC_UNAVAILABLE, else OK.
 */
SELDON_API int32_t seldon_router_outcome(int32_t http_status, int32_t grpc_status);

/*
 * Records the request's answer in the metrics (requests_total with code:
 * the HTTP status for REST, the grpc-status for gRPC). Call once, after the
 * last attempt; no-op without metrics.
 */
SELDON_API void seldon_router_req_finish(seldon_router_req *req, int32_t code);

/* --- Experiments: weighted splits, sticky sessions, mirrors ------------- */

/*
 * A route may put an experiment in front of its requests (docs/experiments.md):
 * candidates, each another route of the table (or the route itself) with a
 * weight, and a mirror route that receives a copy of a share of the requests.
 * A route with candidates needs no upstreams of its own ("<e>.experiment").
 * Candidates and the mirror are served by their own upstreams: an experiment
 * in front of a candidate is not followed (one level, as Seldon Core 2).
 * Upstreams may carry the model version they serve, which names the answer
 * in x-seldon-route (":<route>_<version>:") and the upstream's model in
 * seldon-internal-model ("<route>_<version>").
 */

#define SELDON_ROUTES_CANDIDATES_MAX 64
#define SELDON_ROUTER_ROUTE_HEADER "x-seldon-route"
#define SELDON_ROUTER_INTERNAL_HEADER "seldon-internal-model"
#define SELDON_ROUTER_EXPERIMENT_SUFFIX ".experiment"

/* As seldon_routes_builder_add_upstream(), with the model version it serves (0: none). */
SELDON_API int seldon_routes_builder_add_version(seldon_routes_builder *builder, const char *http,
                                                 const char *grpc, uint32_t version);

/*
 * Adds a candidate to the last route: the route named name (copied; it may
 * come later in the table, or be the route itself) takes weight (0 to
 * INT32_MAX) parts of the requests. SELDON_EEXIST for a repeated candidate.
 * seldon_routes_builder_finish() refuses (SELDON_EPARSE) a candidate or a
 * mirror that is not a route of the table or has no upstreams of its own,
 * and candidates whose weights add up to 0.
 */
SELDON_API int seldon_routes_builder_add_candidate(seldon_routes_builder *builder, const char *name,
                                                   uint32_t weight);

/* Gives the last route a mirror: percent (0-100) of its requests are copied to route name. */
SELDON_API int seldon_routes_builder_set_mirror(seldon_routes_builder *builder, const char *name,
                                                uint32_t percent);

/* The version the i-th upstream of a route serves; 0 when it has none (or a bad index). */
SELDON_API uint32_t seldon_routes_upstream_version(const seldon_routes *routes, size_t route,
                                                   size_t i);

/* The number of candidates of a route (0: no experiment, or a bad index). */
SELDON_API size_t seldon_routes_candidate_count(const seldon_routes *routes, size_t route);

/* The i-th candidate of a route: its route index and weight (either may be NULL). */
SELDON_API int seldon_routes_candidate(size_t *out_route, uint32_t *out_weight,
                                       const seldon_routes *routes, size_t route, size_t i);

/* A route's mirror: its route index and percent; SELDON_ENOTFOUND when it has none. */
SELDON_API int seldon_routes_mirror(size_t *out_route, uint32_t *out_percent,
                                    const seldon_routes *routes, size_t route);

/*
 * The routing decision for a request on route: pure, and deterministic given
 * random (64 random bits; the balancer passes its own). *out_route is the
 * route that serves it: route itself when it has no candidates; else the
 * candidate that the request's x-seldon-route value (sticky, sticky_len;
 * NULL or empty when absent) names, as a ":<candidate>:" or
 * ":<candidate>_<version>:" token, checked in candidate order (*out_sticky
 * 1); else a candidate drawn with the weights. *out_mirror is the mirror's
 * route index when this request is to be copied (percent of requests, drawn
 * independently of the split), else -1. out_mirror and out_sticky may be NULL.
 */
SELDON_API int seldon_routes_decide(size_t *out_route, int64_t *out_mirror, int32_t *out_sticky,
                                    const seldon_routes *routes, size_t route, const char *sticky,
                                    size_t sticky_len, uint64_t random);

/*
 * seldon_router_req_new() with the experiment decision applied: the request
 * is made on the route seldon_routes_decide() chooses (random bits from the
 * balancer) for the route named name, given the request's x-seldon-route
 * value (sticky; NULL when absent). seldon_router_req_route() is then the
 * serving route; the mirror chosen, if any, is kept for
 * seldon_router_req_mirror_new().
 */
SELDON_API int seldon_router_req_new_split(seldon_router_req **out, seldon_router_lb *lb,
                                           const char *name, size_t len, const char *sticky,
                                           size_t sticky_len, int32_t protocol, int64_t now_ns);

/* 1 when the request went through an experiment (its route has candidates), else 0. */
SELDON_API int32_t seldon_router_req_split(const seldon_router_req *req);

/* 1 when the decision chose to copy the request to its route's mirror, else 0. */
SELDON_API int32_t seldon_router_req_mirrored(const seldon_router_req *req);

/*
 * A request for the mirror copy of req, on the same table, without retries:
 * pick, attempt_end, finish and free it as any request. SELDON_ENOTFOUND when
 * req is not to be mirrored. Caller owns *out; free it before the balancer.
 */
SELDON_API int seldon_router_req_mirror_new(seldon_router_req **out, seldon_router_req *req,
                                            int64_t now_ns);

/* The version served by the upstream of the last pick (0: none, or no pick yet). */
SELDON_API uint32_t seldon_router_req_version(const seldon_router_req *req);

/*
 * What served the last pick, as Seldon names it: "<route>_<version>", or the
 * route name alone when the upstream has no version. Written to out (cap
 * bytes, NUL-terminated), its length in *out_len (may be NULL). SELDON_ESTATE
 * before the first pick, SELDON_ETOOBIG when cap is too small.
 */
SELDON_API int seldon_router_req_tag(char *out, size_t *out_len, size_t cap,
                                     const seldon_router_req *req);

/* --- Sticky versions ------------------------------------------------------ */

/*
 * seldon_routes_decide() that also says which model version the request
 * sticks to: when the x-seldon-route token that chose the serving route (or,
 * on a route without candidates, a token naming the route) is
 * ":<route>_<version>:" and an upstream of the serving route still serves
 * that version (a rollout keeps both versions' replicas in the route),
 * *out_version is that version, else 0: the request then goes to any
 * upstream of the route, as a request without the header. out_version may
 * be NULL. Pure, like seldon_routes_decide().
 */
SELDON_API int seldon_routes_decide_version(size_t *out_route, uint32_t *out_version,
                                            int64_t *out_mirror, int32_t *out_sticky,
                                            const seldon_routes *routes, size_t route,
                                            const char *sticky, size_t sticky_len, uint64_t random);

/*
 * The version seldon_router_req_new_split() pinned the request to (0: none).
 * Picks prefer that version's upstreams; once none of them is left untried
 * (failed, ejected or gone), the route's other upstreams serve the request.
 */
SELDON_API uint32_t seldon_router_req_pinned(const seldon_router_req *req);

#ifdef __cplusplus
}
#endif

#endif
