/*
 * HTTP/1.1 client on a libuv loop that the caller owns: one pool per loop per
 * upstream, keep-alive connections, streamed bodies both ways.
 *
 * Thread safety: a pool and its requests belong to the loop the pool was
 * created on. Call every function here on that loop's thread; callbacks run on
 * it too. No threads, no locks.
 *
 * Lifecycle of a request: sdc_request_start() queues it; it runs on an idle
 * keep-alive connection or a new one (at most max_connections per pool; when
 * all are busy it waits in a bounded queue). on_head gives the status and the
 * headers, on_body the body as it arrives, on_done ends it exactly once, with
 * 0 or one SDC_E* code. After on_done returns the handle is gone.
 *
 * Reuse: a connection goes back to the idle list only when the response was
 * read to its end, the request body was fully sent, and neither side said
 * "Connection: close"; otherwise it is closed.
 *
 * Retry: a request that fails on a reused keep-alive connection before any
 * byte of the response arrived (the server closed the idle connection while
 * the request was on its way: EOF or reset) is sent once more on a fresh
 * connection, as browsers and Envoy do, provided the whole request sent so far
 * is still held (the head and the body written until then, at most
 * write_queue_limit bytes; a larger streamed body is not replayed and fails
 * with SDC_ERESET). This holds for every method: the server never saw a
 * complete request it answered, but a non-idempotent request might have been
 * processed by a server that died before answering.
 *
 * Side effect: sdc_pool_new() sets SIGPIPE to SIG_IGN when it is at its
 * default, as sdh_server_start() does: a peer closing while we write must not
 * end the process.
 */
#ifndef SDC_HTTP_CLIENT_H
#define SDC_HTTP_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "http_wire.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Outcomes given to on_done (0 is success: the whole response was read). */
#define SDC_OK 0
#define SDC_EREFUSED (-1)         /* connect refused (nothing listens on the port) */
#define SDC_ECONNECT (-2)         /* connect failed otherwise (unreachable, ...) */
#define SDC_ECONNECT_TIMEOUT (-3) /* connect did not complete within connect_timeout_ms */
#define SDC_ERESET (-4)           /* connection reset or closed before the response ended */
#define SDC_ETIMEOUT (-5)         /* the request did not complete within its timeout */
#define SDC_EBADRESPONSE (-6)     /* malformed response, or a head over max_head_size */
#define SDC_ECANCELED (-7)        /* sdc_request_cancel(), or the pool was freed */
#define SDC_EQUEUEFULL (-8)       /* sdc_request_start(): all connections busy, queue full */
#define SDC_ENOMEM (-9)
#define SDC_EINVAL (-10) /* bad argument (a header with CR/LF, a bad host:port...) */

/* Short name of an outcome ("refused", "reset", ...). Static storage. */
const char *sdc_strerror(int code);

typedef struct sdc_pool sdc_pool;
typedef struct sdc_request sdc_request;

typedef struct sdc_pool_options {
    uint32_t version;            /* 1 */
    uint32_t max_connections;    /* open connections, busy or idle; default 64 */
    uint32_t max_idle;           /* idle keep-alive connections kept; default 16 */
    uint32_t max_queued;         /* requests without a connection yet (those whose connection
                                    is being opened included); default 1024 */
    uint64_t connect_timeout_ms; /* 0 = none; default 2000 */
    uint64_t request_timeout_ms; /* start to done, queueing included; 0 = none; default 30000 */
    uint64_t idle_timeout_ms;    /* an idle connection is closed after this; 0 = never; 60000 */
    uint64_t max_head_size;      /* bound on a response head; default 65536 */
    uint64_t write_queue_limit;  /* request bytes queued before sdc_request_write() says
                                    "full"; also the replay bound for a retry; 262144 */
} sdc_pool_options;

#define SDC_POOL_OPTIONS_INIT                                                                      \
    {                                                                                              \
        1, 64, 16, 1024, 2000, 30000, 60000, 65536, 262144                                         \
    }

/*
 * A pool of connections to one upstream on one loop. upstream is a numeric
 * "IPv4:port" or "[IPv6]:port" (copied); it is also the Host header sent when the
 * request has none. opts may be NULL for the defaults (copied). Returns 0 or
 * SDC_EINVAL/SDC_ENOMEM. Caller owns *out; free with sdc_pool_free().
 */
int sdc_pool_new(sdc_pool **out, uv_loop_t *loop, const char *upstream,
                 const sdc_pool_options *opts);

/*
 * Ends every request (on_done with SDC_ECANCELED, before this returns), closes
 * every connection and, once the loop has run their close callbacks, frees the
 * pool and calls on_freed(user_data) (may be NULL) from the loop, never
 * inside this call. Keep running the loop until then; the loop cannot close
 * before. NULL pool, or a second call, is a no-op. Not from inside this pool's
 * callbacks.
 */
void sdc_pool_free(sdc_pool *pool, void (*on_freed)(void *user_data), void *user_data);

typedef struct sdc_pool_stats {
    uint64_t connects; /* connections opened (connect succeeded) since creation */
    uint64_t reuses;   /* requests sent on a connection that served one before */
    uint64_t retries;  /* requests replayed after a stale keep-alive connection */
    uint32_t open;     /* connections open now (connecting, busy or idle) */
    uint32_t idle;     /* idle keep-alive connections now */
    uint32_t queued;   /* requests waiting for a connection now */
    uint32_t active;   /* requests started and not done */
} sdc_pool_stats;

void sdc_pool_get_stats(sdc_pool_stats *out, const sdc_pool *pool);

typedef struct sdc_callbacks {
    /* The response head (1xx heads are skipped). headers: borrowed, valid until
     * on_head returns; names and values as sent. May be NULL. */
    void (*on_head)(sdc_request *req, int status, const sdh_header *headers, size_t n,
                    void *user_data);
    /* A piece of the body (de-chunked), borrowed for the call. May be NULL. */
    void (*on_body)(sdc_request *req, const char *data, size_t len, void *user_data);
    /* The queued request bytes fell to write_queue_limit or below after a
     * sdc_request_write() returned 1. May be NULL. */
    void (*on_drain)(sdc_request *req, void *user_data);
    /* Last call, exactly once: 0 when the response was read to its end, else
     * an SDC_E* code. The request handle is invalid after it returns. Required. */
    void (*on_done)(sdc_request *req, int result, void *user_data);
} sdc_callbacks;

/*
 * Starts a request. head: method, target, headers (copied, serialised now; its
 * host field is ignored: the pool sets it) and the body framing:
 * content_length >= 0 (Content-Length; the caller then writes exactly that many
 * bytes, none for 0: that request is complete at once), SDH_BODY_CHUNKED (the
 * caller writes until end), or SDH_BODY_NONE (no body, complete at once). cb
 * is copied. On success *out is the request, valid until on_done returns;
 * callbacks never run inside sdc_request_start().
 * Returns 0, SDC_EINVAL (bad head), SDC_EQUEUEFULL or SDC_ENOMEM; on failure
 * no callback is ever called.
 */
int sdc_request_start(sdc_request **out, sdc_pool *pool, const sdh_request_head *head,
                      const sdc_callbacks *cb, void *user_data);

/*
 * sdc_request_start() with the whole body at once (copied; len must equal
 * head->content_length, or it is the only piece of a chunked body): the head
 * and the body leave in one write. Returns as sdc_request_start(); SDC_EINVAL
 * also for a length that does not match.
 */
int sdc_request_start_body(sdc_request **out, sdc_pool *pool, const sdh_request_head *head,
                           const void *body, size_t len, const sdc_callbacks *cb,
                           void *user_data);

/*
 * Queues body bytes (copied; len may be 0 with end = 1). end = 1 marks the last
 * piece: for chunked framing it sends the last chunk; for a Content-Length it
 * must bring the total to exactly that length. Returns 0 (keep writing), 1
 * (queued, but the queue is above write_queue_limit: wait for on_drain before
 * writing more), SDC_EINVAL (after end, beyond Content-Length, or end short of
 * it) or SDC_ENOMEM. Writes are accepted while the request waits for a
 * connection. on_done may come before the whole body was written (the server
 * answered early, e.g. 413, or the request failed): the handle is then gone,
 * so stop writing.
 */
int sdc_request_write(sdc_request *req, const void *data, size_t len, int end);

/*
 * Replaces the request's timeout (pool default: request_timeout_ms from start):
 * the request now ends with SDC_ETIMEOUT timeout_ms after this call; 0 = none.
 * For a per-route deadline. Not after on_done.
 */
void sdc_request_set_timeout(sdc_request *req, uint64_t timeout_ms);

/*
 * Stops (paused = 1) or restarts (0) reading the response: backpressure for a
 * slow consumer. The bytes of the read in progress are still delivered (at
 * most one read buffer, 64 KiB) before reading stops. The request timeout
 * still runs.
 */
void sdc_request_pause(sdc_request *req, int paused);

/*
 * Cancels the request: on_done(SDC_ECANCELED) is called before this returns,
 * and its connection, if it had one, is closed (a partly sent request or
 * partly read response cannot be reused). May be called from inside the
 * request's own on_head/on_body/on_drain. Not after on_done.
 */
void sdc_request_cancel(sdc_request *req);

#ifdef __cplusplus
}
#endif

#endif
