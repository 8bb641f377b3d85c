/*
 * The HTTP/1.1 server transport shared by the daemons (libuv + http-parser).
 *
 * Thread safety: sdh_server_start(), sdh_server_stop() and sdh_server_free() are
 * called by one controlling thread, never from a handler. Handlers run on the I/O
 * threads. sdh_respond(), sdh_respond_error(), sdh_req_id() and
 * sdh_req_client_gone() may be called from any thread. sdh_request_header() may be
 * called wherever the request view it reads is valid.
 *
 * Side effect: sdh_server_start() sets SIGPIPE to SIG_IGN when it is at its
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
 * Runs on an I/O thread when a whole request has arrived. Must lead to exactly one
 * sdh_respond() (or sdh_respond_error()), from any thread, now or later. Answering
 * inline, before returning, is the fast path. Must not block for long: other
 * connections of the same I/O thread wait meanwhile. A HEAD request may be answered
 * like a GET: the body's length is announced but the body is not sent.
 */
typedef void (*sdh_handler_fn)(void *user_data, sdh_req *req, const sdh_request *request);

typedef struct sdh_config {
    const char *host;         /* numeric IPv4 or IPv6 address, e.g. "0.0.0.0"; NULL = "0.0.0.0" */
    int port;                 /* 0 = pick a free port (see sdh_server_port()) */
    int io_threads;           /* >= 1; one event loop and one SO_REUSEPORT listener each */
    size_t max_body;          /* larger bodies get 413 and the connection is closed */
    uint64_t idle_timeout_ms; /* close connections idle this long (0 = never) */
    sdh_handler_fn handler;
    void *user_data; /* passed to handler */
} sdh_config;

/*
 * Binds, listens and starts the I/O threads; they are running on return. cfg is
 * copied (host is only read during the call). Returns 0, or a negative SELDON_E*
 * with the detail in seldon_last_error() and on stderr. Caller owns *out; release
 * with sdh_server_free().
 */
int sdh_server_start(sdh_server **out, const sdh_config *cfg);

/* The bound port (the picked one when cfg->port was 0). */
int sdh_server_port(const sdh_server *s);

/*
 * Graceful stop: closes the listeners and idle connections, lets requests already
 * handed to handlers finish and their responses flush (up to grace_ms), then closes
 * every connection and joins the I/O threads. Responses sent meanwhile carry
 * "Connection: close". A request still unanswered after grace_ms is abandoned: its
 * view stays valid and its late sdh_respond() just frees it (and returns
 * SELDON_ECANCELED). Calling it again is a no-op. Not from a handler, and not from a
 * signal handler: wait for SIGTERM with sigwait()/signalfd() or a uv_signal_t.
 */
void sdh_server_stop(sdh_server *s, uint64_t grace_ms);

/* Stops (with no grace) if needed, then frees. NULL is a no-op. */
void sdh_server_free(sdh_server *s);

/*
 * Sends the response for req: status (200..599), extra headers (borrowed for the
 * call; e.g. content-type) and body. Content-Length and, when needed, Connection
 * are added here. Takes ownership of body->data in every case and leaves *body
 * empty; body may be NULL for no body. Always consumes req: do not touch req or its
 * view afterwards. Thread-safe: on req's I/O thread the response is written at
 * once; from another thread it is handed to that I/O thread. Responses go out in
 * request order on each connection.
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
 * 1 once the client connection of req has closed (its response would be dropped),
 * else 0. Lets a long-running handler give up early; it must still call
 * sdh_respond(). Thread-safe.
 */
int sdh_req_client_gone(const sdh_req *req);

#ifdef __cplusplus
}
#endif

#endif
