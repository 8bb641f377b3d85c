/*
 * A daemon's subscription to the scheduler (prefix sds_): one gRPC server
 * stream (RouteService/Subscribe for routers, RouteService/SubscribePipelines
 * for pipeline gateways and dataflow workers) on --scheduler-host, over an h2c
 * client of a loop the caller gives. Every message of the stream goes to the
 * caller's hook as it is (a RouteTable, a PipelineSet: the caller decodes it).
 *
 * A subscription that cannot open, that ends or that fails is an outage: the
 * caller keeps serving what it has, and the subscription is tried again after
 * a backoff that doubles up to resubscribe_max_ms (jittered between half of it
 * and all of it, so that many daemons do not come back in step; a stream that
 * had brought a message starts again from the shortest wait). One info line
 * says an outage began and one that it ended, whatever the number of attempts
 * in between. A host name is resolved again at each attempt (blocking the
 * loop: give this a control loop that serves no request).
 *
 * Thread safety: everything runs on the loop given to sds_new; sds_start,
 * sds_call and sds_close are called on it (post them), hooks run there.
 */
#ifndef SDS_SUB_H
#define SDS_SUB_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "h2.h"
#include "seldon/common.h"

#define SDS_BACKOFF_MIN_MS 100 /* the first wait after a failed attempt */

typedef struct sds_sub sds_sub;

typedef struct sds_hooks {
    /* The request message, packed without its 5-byte prefix into out (empty on entry), at
     * each attempt. Returns 0, or non-zero with the reason in seldon_last_error(): the
     * attempt is then an outage. Required. */
    int (*request)(void *user_data, seldon_buf *out);
    /* One message of the stream (borrowed for the call). Required. */
    void (*message)(void *user_data, const uint8_t *data, size_t len);
    /* The stream answered (up 1: its response headers, h/n, borrowed) or the
     * subscription is down (up 0, h NULL). Optional. */
    void (*connected)(void *user_data, int up, const sd2_header *h, size_t n);
    /* What is served meanwhile, for the outage's line, e.g. "serving on the 3 route(s)
     * in force". Optional. */
    void (*in_force)(void *user_data, char *out, size_t cap);
} sds_hooks;

typedef struct sds_config {
    const char *scheduler_host;  /* "HOST[:PORT]" (port 9002 by default), borrowed */
    const char *path;            /* the method, e.g. "/seldon.control.v1.RouteService/Subscribe" */
    const char *user_agent;      /* e.g. "seldon-router" */
    const char *subscribed;      /* logged at a first message: "subscribed to routes" */
    const char *again;           /* logged at the first message after an outage */
    uint64_t resubscribe_max_ms; /* the longest wait between attempts */
} sds_config;

/*
 * Reads "HOST[:PORT]", "[V6]:PORT" or a bare IPv6 address into host (cap bytes)
 * and *port (default_port when none). HOST is an IP address or a name; "localhost"
 * becomes 127.0.0.1. Returns 0, or -1 for a bad one.
 */
int sds_parse_host(char *host, size_t cap, int *port, const char *spec, int default_port);

/* 1 when host is a numeric IPv4 or IPv6 address. */
int sds_numeric_host(const char *host);

/*
 * Creates a subscription on loop (nothing is sent until sds_start). cfg's strings and
 * hooks are borrowed for its life. Returns 0, or SELDON_EINVAL naming --scheduler-host,
 * or SELDON_ENOMEM. Freed by sds_close.
 */
int sds_new(sds_sub **out, uv_loop_t *loop, const sds_config *cfg, const sds_hooks *hooks,
            void *user_data);

/* The first attempt. */
void sds_start(sds_sub *sub);

/* Ends the stream and closes; sub is freed once its handles are closed. No hook, and no
 * sds_call done, runs from here on. */
void sds_close(sds_sub *sub);

/* "host:port" of the scheduler, for log lines; borrowed from sub. */
const char *sds_authority(const sds_sub *sub);

/* 1 while the stream is open and answered. */
int sds_connected(const sds_sub *sub);

/*
 * A unary call of path on the subscription's connection: msg (packed, without the
 * prefix; copied) and extra request headers (copied). done(user_data, status, message)
 * runs once, on the loop, with the gRPC status (14 UNAVAILABLE when the transport
 * failed, with its reason) and its message ("" when none). The answer message is not
 * read. Returns 0, or a negative code when nothing was sent (no scheduler address
 * yet, out of memory): then done does not run.
 */
int sds_call(sds_sub *sub, const char *path, const uint8_t *msg, size_t len,
             const sd2_header *extra, size_t nextra,
             void (*done)(void *user_data, int32_t status, const char *message), void *user_data);

#endif
