/*
 * The HTTP/1.1 server transport shared by the daemons (libuv + http-parser), on
 * event loops that the caller owns (see loops.h).
 *
 * Thread safety: sdh_server_new(), sdh_server_stop() and sdh_server_free() are
 * called by one controlling thread that runs none of the loops, never from a
 * handler. sdh_server_listen() is called before its loop runs, or on its thread.
 * Handlers run on the loop threads. sdh_respond(), sdh_respond_error(), sdh_req_id()
 * and sdh_req_client_gone() may be called from any thread for a whole-body request.
 * sdh_request_header() may be called wherever the request view it reads is valid.
 * The streaming calls (sdh_stream_*) are for the request's loop thread only.
 *
 * Memory is bounded per connection: it stops reading while its unanswered
 * requests and unsent responses hold more than max_buffered bytes (or
 * 32 pipelined requests), and starts again below half of that.
 *
 * Side effect: sdh_server_new() sets SIGPIPE to SIG_IGN when it is at its
 * default, because libuv writes to sockets with writev(), and a peer that has gone
 * away must cost an EPIPE, not the process.
 *
 * Runtime problems (accept failures, out of memory on a connection) are reported
 * through libseldon's log callback (seldon_set_log()); the hot path logs nothing.
 */
#ifndef SDH_HTTP_SERVER_H
#define SDH_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "adopt.h"
#include "http_wire.h"
#include "seldon/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdh_server sdh_server;

/* One request awaiting its response. Valid from the handler call until sdh_respond(). */
typedef struct sdh_req sdh_req;

/*
 * A request, as a view into the connection's input buffer: borrowed, valid until
 * sdh_respond() for this request. Only method is NUL-terminated.
 */
typedef struct sdh_request {
    const char *method; /* "GET", static storage */
    size_t method_len;
    const char *path; /* raw (not percent-decoded) path, no query string */
    size_t path_len;
    const char *query; /* after '?', may be empty */
    size_t query_len;
    const sdh_header *headers; /* names lower-cased; values as sent */
    size_t nheaders;
    const uint8_t *body; /* the whole body, de-chunked; never NULL, even when empty */
    size_t body_len;
} sdh_request;

/*
 * Runs on a loop thread when a whole request has arrived. Must lead to exactly one
 * sdh_respond() (or sdh_respond_error()), from any thread, now or later. Answering
 * inline, before returning, is the fast path. Must not block for long: other
 * connections of the same loop wait meanwhile. A HEAD request may be answered
 * like a GET: the body's length is announced but the body is not sent.
 */
typedef void (*sdh_handler_fn)(void *user_data, sdh_req *req, const sdh_request *request);

/*
 * Streaming mode (for proxies). Called on the loop thread when a request's head
 * is complete, before its body; head->body is empty. The handler may take the
 * request in streaming mode by calling sdh_stream_take() before it returns; the
 * body then arrives through ops->on_body as it is read, and the response may be
 * streamed. Otherwise the request goes on in whole-body mode: the handler of
 * sdh_config is called with the same req once the whole body is in (the head view
 * passed here is valid during this call only).
 */
typedef void (*sdh_head_fn)(void *user_data, sdh_req *req, const sdh_request *head);

typedef struct sdh_config {
    const char *host;         /* numeric IPv4 or IPv6 address, e.g. "0.0.0.0"; NULL = "0.0.0.0" */
    int port;                 /* 0 = pick a free port (see sdh_server_port()) */
    size_t max_body;          /* larger bodies get 413 and the connection is closed */
    uint64_t idle_timeout_ms; /* close connections idle this long (0 = never) */
    /*
     * A request's head (and, in whole-body mode, its body) must arrive within this
     * once its first byte came, else 408 and close. Time paused for backpressure
     * does not count. 0 = no limit.
     */
    uint64_t request_timeout_ms;
    size_t max_buffered;      /* per connection, see above; 0 = SDH_DEFAULT_BUFFERED */
    sdh_handler_fn handler;   /* required */
    void *user_data;          /* passed to handler and head_handler */
    sdh_head_fn head_handler; /* optional: streaming mode */
    /*
     * Optional: takes connections that open with HTTP/2's prior-knowledge preface
     * (see adopt.h). Without one they get 505 and are closed. Adopted connections
     * belong to the adopter: sdh_server_stop() leaves them alone.
     */
    sd_adopt_fn h2_adopt;
    void *h2_user_data;
    /*
     * 0: a request with a body and a Content-Encoding other than identity gets 415
     * (the body cannot be read). 1: passed through (a proxy forwards it as is).
     */
    int pass_content_encoding;
} sdh_config;

#define SDH_DEFAULT_BUFFERED (1u << 20)

/*
 * Checks and copies cfg (host is only read during the call) and resolves the
 * address; binds nothing yet. Returns 0, or a negative SELDON_E* with the detail in
 * seldon_last_error() and on stderr. Caller owns *out; release with
 * sdh_server_free().
 */
int sdh_server_new(sdh_server **out, const sdh_config *cfg);

/*
 * Binds one SO_REUSEPORT listener on loop and serves its connections there; call
 * once per loop. The first call picks the port when cfg->port was 0; later calls
 * share it. Call before the loop runs, or on the loop's thread. Returns 0 or a
 * negative SELDON_E* (detail in seldon_last_error() and on stderr).
 */
int sdh_server_listen(sdh_server *s, uv_loop_t *loop);

/* The bound port (the picked one when cfg->port was 0). */
int sdh_server_port(const sdh_server *s);

/*
 * Graceful stop, from the controlling thread while the loops run: closes the
 * listeners and idle connections, lets requests already handed to handlers finish
 * and their responses flush (up to grace_ms), then closes every connection, and
 * returns once the server's handles on every loop are closed (the loops go on
 * running). Responses sent meanwhile carry "Connection: close". A whole-body
 * request still unanswered after grace_ms is abandoned: its view stays valid and
 * its late sdh_respond() just frees it (and returns SELDON_ECANCELED); a streamed
 * one gets on_abort. Calling it again is a no-op. Not from a handler or a loop
 * thread, and not from a signal handler: wait for SIGTERM with sigwait() or a
 * uv_signal_t on another loop.
 */
void sdh_server_stop(sdh_server *s, uint64_t grace_ms);

/*
 * Frees a stopped server. A server never stopped (e.g. on a start-up error) is
 * closed here, which is allowed only while its loops are not running. NULL is a
 * no-op.
 */
void sdh_server_free(sdh_server *s);

/*
 * Sends the response for req: status (200..599), extra headers (borrowed for the
 * call; e.g. content-type) and body. Content-Length and, when needed, Connection
 * are added here. Takes ownership of body->data in every case and leaves *body
 * empty; body may be NULL for no body. Always consumes req: do not touch req or its
 * view afterwards. Thread-safe: on req's loop thread the response is written at
 * once; from another thread it is handed to that loop (a streamed request is
 * answered on its loop thread only). Responses go out in request order on each
 * connection.
 *
 * Returns 0; SELDON_EINVAL for a bad status or a header containing CR/LF (a 500 is
 * sent instead); SELDON_ENOMEM (a bare 500 is sent); SELDON_ESTATE when req was
 * already answered (nothing happens); SELDON_ECANCELED when the server stopped
 * waiting for this request (it is freed). A client that went away is not an error:
 * the response is dropped silently.
 */
int sdh_respond(sdh_req *req, int status, const sdh_header *headers, size_t nheaders,
                seldon_buf *body);

/*
 * sdh_respond() with a JSON body {"error": "<message, escaped>"} and
 * content-type application/json. message is borrowed for the call.
 */
int sdh_respond_error(sdh_req *req, int status, const char *message);

/*
 * The value of the first header named lower_name (lower-case), or NULL if absent;
 * *len receives its length (len may be NULL). Borrowed from the request view.
 */
const char *sdh_request_header(const sdh_request *r, const char *lower_name, size_t *len);

/* A number unique per server, for logs. */
uint64_t sdh_req_id(const sdh_req *req);

/*
 * The loop that accepted req's connection (borrowed): a proxy forwards on it,
 * through that loop's own upstream connections. Thread-safe.
 */
uv_loop_t *sdh_req_loop(const sdh_req *req);

/*
 * 1 once the client connection of req has closed (its response would be dropped),
 * else 0. Lets a long-running handler give up early; it must still call
 * sdh_respond(). Thread-safe.
 */
int sdh_req_client_gone(const sdh_req *req);

/* ---------------------------------------------------------------- streaming mode */

/* Callbacks of a streamed request, on its loop thread; user_data of sdh_stream_take(). */
typedef struct sdh_stream_ops {
    /*
     * Body bytes as they arrive, de-chunked; borrowed for the call. It may pause,
     * respond, write or end (the rest of the body is then not read).
     */
    void (*on_body)(void *user_data, sdh_req *req, const uint8_t *data, size_t len);
    /* The request body is complete (after the last on_body). */
    void (*on_end)(void *user_data, sdh_req *req);
    /* The response queue fell to half the limit after sdh_stream_write() returned 1. */
    void (*on_drain)(void *user_data, sdh_req *req);
    /*
     * The connection is gone (reset, closed mid-body, or the server stopped past its
     * grace). req is freed when this returns: do not use it again, do not end it.
     */
    void (*on_abort)(void *user_data, sdh_req *req);
} sdh_stream_ops;

/*
 * From the head handler only: takes req in streaming mode. ops is borrowed until
 * the request ends (static storage is usual). From then on the request ends with
 * exactly one sdh_stream_end(), or one sdh_respond() (a whole response), or
 * on_abort. Returns 0 or SELDON_EINVAL.
 */
int sdh_stream_take(sdh_req *req, const sdh_stream_ops *ops, void *user_data);

/* The declared body length of a streamed request, or -1 when chunked. */
int64_t sdh_stream_body_length(const sdh_req *req);

/*
 * Stops delivering body bytes (no on_body until sdh_stream_resume()) and stops
 * reading the connection: backpressure towards the client. Idempotent.
 * sdh_stream_resume() may deliver buffered body bytes (on_body, on_end) before it
 * returns, or, when they are malformed, on_abort.
 */
void sdh_stream_pause(sdh_req *req);
void sdh_stream_resume(sdh_req *req);

/*
 * Starts the response: status (200..599) and headers (borrowed for the call).
 * Framing headers among them (Content-Length, Transfer-Encoding, Connection,
 * Keep-Alive) are dropped: this call sets its own, so a proxy may pass an
 * upstream's header list as it is.
 * content_length >= 0 announces the body's length; -1 sends it chunked (or, to an
 * HTTP/1.0 client, delimited by closing the connection). Returns 0, SELDON_EINVAL
 * (bad status or header; nothing sent), SELDON_ESTATE (already started),
 * SELDON_ENOMEM, or SELDON_ECANCELED (see sdh_stream_write()).
 */
int sdh_stream_respond(sdh_req *req, int status, const sdh_header *headers, size_t nheaders,
                       int64_t content_length);

/*
 * Queues body bytes of the response. Takes ownership of chunk->data in every case
 * and leaves *chunk empty. Returns 0; 1 when the response's queued bytes are above
 * the limit (max_buffered): produce no more until on_drain; SELDON_ECANCELED
 * when the connection failed meanwhile (on_abort has run: req is gone, as it is
 * for sdh_stream_respond() returning it); SELDON_ESTATE before
 * sdh_stream_respond() or after sdh_stream_end(); SELDON_EINVAL past the announced
 * Content-Length (the excess is dropped).
 */
int sdh_stream_write(sdh_req *req, seldon_buf *chunk);

/*
 * Ends the response (sends the last chunk when chunked) and consumes req. A
 * response shorter than its announced length, or ended before the request body,
 * closes the connection after it. Returns 0 or SELDON_ESTATE (not started: a
 * 500 is sent instead).
 */
int sdh_stream_end(sdh_req *req);

#ifdef __cplusplus
}
#endif

#endif
