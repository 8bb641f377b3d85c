/*
 * HTTP/2 cleartext (h2c, prior knowledge) on libuv loops, through libnghttp2:
 * a server (its own listener, or connections adopted from the HTTP/1.1 server
 * per adopt.h) and a client with per-upstream connection pools. Built for
 * proxying gRPC: headers, data and trailers of a stream are handed over as
 * they arrive, and bodies are never decoded.
 *
 * Streams. Both sides share one stream type, sd2_stream. A server stream is
 * announced by sd2_server_cbs.on_request; a client stream is opened with
 * sd2_request(). Either way its events arrive through an sd2_stream_cbs:
 * headers (client side), data chunks, the end (with trailers, possibly none)
 * and, always last, on_close. After on_close returns the stream is freed and
 * must not be touched.
 *
 * Flow control is manual. Every byte that on_data hands over stays counted
 * against the peer's HTTP/2 window until the consumer calls sd2_consume() for
 * it, typically once it forwarded the bytes. A peer whose data cannot go
 * anywhere is thus throttled by the protocol, and memory stays bounded.
 *
 * Sending. sd2_write() copies a chunk into the stream's send queue and returns
 * 1 once the queue reached its limit: stop writing until on_drain. A connection
 * stops reading its socket while its unsent output is above a limit. The stream
 * calls (send, write, end, reset, consume, request) never run a callback before
 * they return; their frames go out at the end of the loop iteration. When one of
 * them returns SD2_ENOMEM the stream was reset: on_close(SD2_ENOMEM) follows.
 *
 * Thread safety: an sd2_server or sd2_client and all its connections and
 * streams belong to the loop given at creation; call everything on that loop's
 * thread. Nothing here starts a thread.
 */
#ifndef SD2_H
#define SD2_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "adopt.h"

/* A header field; not NUL-terminated. Borrowed from wherever it comes from. */
typedef struct sd2_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} sd2_header;

/* Why a stream closed (on_close err). */
#define SD2_OK 0
#define SD2_EREFUSED (-1)     /* client: the upstream refused the TCP connection */
#define SD2_ECONNECT (-2)     /* client: connecting failed otherwise (unreachable...) */
#define SD2_ECONNTIMEOUT (-3) /* client: connecting took longer than connect_timeout_ms */
#define SD2_ETIMEOUT (-4)     /* client: the request outlived its timeout */
#define SD2_ECLOSED (-5)      /* the connection was lost (EOF, reset, protocol error) */
#define SD2_EGOAWAY (-6)      /* GOAWAY: the peer did not process the stream; safe to retry */
#define SD2_ERESET (-7)       /* the peer sent RST_STREAM; h2_code says why */
#define SD2_ECANCELED (-8)    /* reset here: sd2_reset(), or the owner closed */
#define SD2_ENOMEM (-9)       /* out of memory */
#define SD2_EPROTO (-10)      /* the peer broke the protocol or a limit on this stream */

/* HTTP/2 error codes for sd2_reset() (RFC 9113 section 7). */
#define SD2_H2_NO_ERROR 0x0u
#define SD2_H2_INTERNAL_ERROR 0x2u
#define SD2_H2_REFUSED_STREAM 0x7u
#define SD2_H2_CANCEL 0x8u

/* Static text for an SD2_E* code; never NULL. */
const char *sd2_strerror(int err);

/* Limits. Zero fields take the defaults shown. */
typedef struct sd2_opts {
    uint32_t max_concurrent_streams; /* server: advertised; client: per connection (100) */
    uint32_t max_header_list;        /* bytes of a received header block, advertised (64 KiB) */
    uint32_t stream_window;          /* per-stream receive window (256 KiB) */
    uint32_t conn_window;            /* per-connection receive window (1 MiB) */
    size_t stream_queue_limit;       /* send queue at which sd2_write says stop (256 KiB) */
    size_t out_limit;                /* unsent socket output at which reading stops (256 KiB) */
    uint32_t max_conns_per_upstream; /* client: connections per upstream (4) */
    uint64_t connect_timeout_ms;     /* client (5000) */
    uint64_t idle_timeout_ms;        /* server: GOAWAY and close after this long with no
                                        stream (60000) */
    /* client: the answers are only forwarded, so nghttp2's HTTP checks of them (field
     * syntax, pseudo-header order, content-length) are skipped; a response must still
     * open with a 3-digit ":status" or its stream is reset as SD2_EPROTO (0: all checks) */
    int forward_only;
} sd2_opts;

typedef struct sd2_stream sd2_stream;

/* Per-stream events. user_data is the value bound with the stream. */
typedef struct sd2_stream_cbs {
    /* Client only: response headers (":status" first). end: no body or trailers follow
     * (a gRPC trailers-only response) and on_end is not called. Borrowed for the call. */
    void (*on_headers)(sd2_stream *s, void *user_data, const sd2_header *h, size_t n, int end);
    /* A chunk of the body, borrowed for the call. Call sd2_consume(s, n) when done with it. */
    void (*on_data)(sd2_stream *s, void *user_data, const uint8_t *data, size_t len);
    /* The peer finished its side; trailers (possibly n == 0) borrowed for the call. */
    void (*on_end)(sd2_stream *s, void *user_data, const sd2_header *trailers, size_t n);
    /* The send queue fell below its limit after sd2_write returned 1. */
    void (*on_drain)(sd2_stream *s, void *user_data);
    /* Always last: err is SD2_OK after a complete exchange, else SD2_E*; h2_code is the
     * HTTP/2 error code of a reset. s is freed when this returns; calls on s inside this
     * callback do nothing. */
    void (*on_close)(sd2_stream *s, void *user_data, int err, uint32_t h2_code);
} sd2_stream_cbs;

/* --- Streams (both sides) ------------------------------------------------------ */

/* Binds callbacks (copied) and user data. A server stream must be bound inside on_request
 * to see its body; an unbound one has its body consumed and dropped. */
void sd2_stream_bind(sd2_stream *s, const sd2_stream_cbs *cbs, void *user_data);
void *sd2_stream_user_data(const sd2_stream *s);
int32_t sd2_stream_id(const sd2_stream *s);

/* Sends a header block. Server: the response headers, ":status" included by the caller;
 * client streams send theirs in sd2_request(). end: nothing follows (trailers-only).
 * Header fields are copied. Returns 0 or SD2_E*. */
int sd2_send_headers(sd2_stream *s, const sd2_header *h, size_t n, int end);

/* Queues a copy of data. Returns 0, 1 when the queue is at or above its limit (wait for
 * on_drain before writing more; the chunk was queued all the same), or SD2_E*. */
int sd2_write(sd2_stream *s, const void *data, size_t len);

/* Ends this side after the queued data, with trailers (copied; n may be 0). */
int sd2_end(sd2_stream *s, const sd2_header *trailers, size_t n);

/* Sends RST_STREAM with h2_code; on_close(SD2_ECANCELED) follows. */
int sd2_reset(sd2_stream *s, uint32_t h2_code);

/* Returns len bytes received through on_data to the peer's flow-control window. */
void sd2_consume(sd2_stream *s, size_t len);

/* Bytes waiting in the send queue. */
size_t sd2_queued(const sd2_stream *s);

/* Whether response headers went out (server) or arrived (client). */
int sd2_headers_done(const sd2_stream *s);

/* --- Server ---------------------------------------------------------------------- */

typedef struct sd2_server sd2_server;

typedef struct sd2_server_cbs {
    /* A request's header block (pseudo-headers first), borrowed for the call. end: no body
     * follows and on_end is not called. Bind the stream (sd2_stream_bind) to see its body
     * and its close, then answer now or later. */
    void (*on_request)(void *user_data, sd2_stream *s, const sd2_header *h, size_t n, int end);
} sd2_server_cbs;

/* Creates a server on loop; opts may be NULL. cbs copied. Caller owns *out: sd2_server_close. */
int sd2_server_new(sd2_server **out, uv_loop_t *loop, const sd2_opts *opts,
                   const sd2_server_cbs *cbs, void *user_data);

/* Listens on host (numeric IPv4/IPv6) and port (0: any; see sd2_server_port). */
int sd2_server_listen(sd2_server *srv, const char *host, int port);
int sd2_server_port(const sd2_server *srv);

/* An sd_adopt_fn: takes a connection whose preface was read by another server (adopt.h).
 * user_data is the sd2_server of the connection's loop (SELDON_EINVAL for another loop's). */
int sd2_server_adopt(void *user_data, const sd_adopt *conn);

/* Stops listening and closes every connection (their streams get on_close(SD2_ECANCELED));
 * done(done_data) runs once everything is released, then the server is freed. */
void sd2_server_close(sd2_server *srv, void (*done)(void *), void *done_data);

/* Stops listening and sends GOAWAY on every connection: streams in flight finish, then the
 * connections close. done runs when none is left; the server is then freed. */
void sd2_server_drain(sd2_server *srv, void (*done)(void *), void *done_data);

/* Open connections. */
size_t sd2_server_conns(const sd2_server *srv);

/* --- Client ---------------------------------------------------------------------- */

typedef struct sd2_client sd2_client;
typedef struct sd2_upstream sd2_upstream;

/* Creates a client on loop; opts may be NULL. Caller owns *out: sd2_client_close. */
int sd2_client_new(sd2_client **out, uv_loop_t *loop, const sd2_opts *opts);

/* The pool for host (numeric IPv4/IPv6) and port, created on first use; owned by the client. */
int sd2_upstream_get(sd2_upstream **out, sd2_client *c, const char *host, int port);

/* Opens a stream on a pooled connection (a new one when every connection is at its
 * peer's SETTINGS_MAX_CONCURRENT_STREAMS, up to max_conns_per_upstream). h: the request
 * header block, pseudo-headers first (":method", ":scheme", ":path", ":authority"),
 * copied. end: no body follows. timeout_ms: 0 for none, else the whole exchange's deadline
 * (on_close(SD2_ETIMEOUT) and RST_STREAM(CANCEL) when it passes). *out is valid until its
 * on_close, which never runs before this returns (failures to connect come through it). On
 * an error return nothing was opened and no callback runs. */
int sd2_request(sd2_stream **out, sd2_upstream *u, const sd2_header *h, size_t n, int end,
                const sd2_stream_cbs *cbs, void *user_data, uint64_t timeout_ms);

/* Connections of u that are open or opening. */
size_t sd2_upstream_conns(const sd2_upstream *u);

/* Streams open on u (in flight or queued): for least-request balancing. */
size_t sd2_upstream_streams(const sd2_upstream *u);

/* Closes every connection (open streams get on_close(SD2_ECANCELED)); done runs once
 * every handle is closed, then the client is freed. */
void sd2_client_close(sd2_client *c, void (*done)(void *), void *done_data);

/* --- gRPC helpers ------------------------------------------------------------------ */

/* The first header named name (lower case), or NULL. */
const sd2_header *sd2_header_find(const sd2_header *h, size_t n, const char *name);

/* 1 when h is gRPC custom metadata: not a pseudo-header, not a transport field (te,
 * content-type, user-agent, grpc-timeout, grpc-encoding, ...). */
int sd2_grpc_is_metadata(const sd2_header *h);

/* Parses a grpc-timeout value ("100m", "5S"...) into milliseconds (rounded up). 0 or -1. */
int sd2_grpc_timeout_ms(uint64_t *out, const char *value, size_t len);

/* Server: sends ":status: 200", "content-type: application/grpc" and extra (copied). */
int sd2_grpc_send_headers(sd2_stream *s, const sd2_header *extra, size_t n);

/* Server: finishes with grpc-status, grpc-message (percent-encoded; NULL for none) and
 * extra. Before any headers went out this is a trailers-only response (":status: 200",
 * content-type, then these fields, with END_STREAM). */
int sd2_grpc_finish(sd2_stream *s, int32_t grpc_status, const char *message,
                    const sd2_header *extra, size_t n);

#endif
