/*
 * gRPC server transport for the daemons, on gRPC core (the C API).
 *
 * The transport moves bytes: each registered method receives whole request
 * messages as contiguous bytes and answers with seldon_buf bytes; protobuf
 * decoding and encoding is the caller's business. Methods that are not
 * registered are answered with UNIMPLEMENTED.
 *
 * Threads: sdg_server_start() runs cfg->threads completion-queue threads.
 * Handlers are called on those threads, and a handler that answers inline
 * costs no thread handoff. Every sdg_call function below may be called from
 * any thread; the server functions (start, port, stop, free) belong to the
 * thread that owns the server.
 *
 * Call lifetime: a unary call stays valid from its handler's entry until the
 * handler's single sdg_reply() or sdg_fail(); a streaming call stays valid
 * inside its handler and on_end callbacks. sdg_call_hold() extends either,
 * until the matching sdg_call_release(). A client that cancels or disconnects
 * does not shorten this: answering a dead call is harmless and cheap.
 */
#ifndef SDG_GRPC_SERVER_H
#define SDG_GRPC_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "seldon/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdg_server sdg_server;
typedef struct sdg_call sdg_call;

/*
 * Unary: called on a completion-queue thread with the whole request message.
 * Must lead to exactly one sdg_reply() or sdg_fail(), from any thread, now or
 * later. request is borrowed, valid until that reply or failure.
 *
 * Streaming: called once per incoming message, in order, on a completion-queue
 * thread; the next message is not read until the handler returns, nor while
 * the stream's backlog of owed replies is over its limit (sdg_config). request
 * is borrowed, valid until the handler returns.
 */
typedef void (*sdg_unary_fn)(void *user_data, sdg_call *call, const uint8_t *request, size_t len);

/*
 * Streaming only: the incoming side ended, because the client half-closed or
 * the call died (cancellation, deadline, disconnect). Called once, after the
 * last handler call, on a completion-queue thread. Writes are still accepted
 * here and afterwards while the call is held. The transport sends status OK
 * once on_end has returned, no holds remain and every queued write is sent.
 */
typedef void (*sdg_end_fn)(void *user_data, sdg_call *call);

typedef struct sdg_method {
    const char *path;     /* "/inference.GRPCInferenceService/ModelInfer"; borrowed for start */
    int streaming;        /* 0 unary, 1 bidirectional stream */
    sdg_unary_fn handler; /* unary: the request; streaming: each message */
    sdg_end_fn on_end;    /* streaming only; may be NULL */
    void *user_data;      /* passed to handler and on_end */
} sdg_method;

typedef struct sdg_config {
    const char *address;       /* "0.0.0.0:8081"; port 0 picks a free port */
    int threads;               /* completion-queue threads, >= 1 */
    size_t max_message;        /* largest request accepted, bytes; 0 = gRPC's 4 MiB;
                                  larger requests fail with RESOURCE_EXHAUSTED */
    const sdg_method *methods; /* borrowed for the duration of sdg_server_start() */
    size_t nmethods;
    /*
     * Stream backpressure: a stream does not read its next message while more
     * than stream_max_pending replies are owed to the client (queued, being
     * sent, or computed under an sdg_call_hold()), or more than
     * stream_max_pending_bytes are queued; it reads again once the backlog is
     * down to half. A client that sends and never reads then costs a bounded
     * amount of memory. 0 picks the defaults: 16 replies, 8 MiB.
     */
    int stream_max_pending;
    size_t stream_max_pending_bytes;
} sdg_config;

/*
 * Binds, starts serving and returns once the port is open. Caller owns *out;
 * stop it with sdg_server_stop() and free it with sdg_server_free().
 * Returns 0, or SELDON_EINVAL / SELDON_EIO (cannot bind) / SELDON_ENOMEM /
 * SELDON_EINTERNAL with seldon_last_error() telling why.
 */
int sdg_server_start(sdg_server **out, const sdg_config *cfg);

/* The bound port, useful after asking for port 0. */
int sdg_server_port(const sdg_server *s);

/*
 * Stops accepting calls and lets calls in flight finish for up to grace_ms,
 * then cancels the rest. Returns once every call has been answered and
 * released (a cancelled call still waits for its handler's answer, which is
 * then discarded), the completion queues are drained and their threads are
 * joined. Must not be called from a handler. A second call does nothing.
 */
void sdg_server_stop(sdg_server *s, uint64_t grace_ms);

/* Stops the server (grace 0) if needed and frees it. NULL is a no-op. */
void sdg_server_free(sdg_server *s);

/*
 * Answers a unary call with status OK and response as the message. Always
 * takes response->data, whatever the outcome, and resets *response to empty;
 * the bytes are handed to gRPC without a copy and freed with seldon_free()
 * once sent. Ends the handler's ownership of call.
 * Returns 0; SELDON_EINVAL on NULL arguments or a streaming call (nothing is
 * taken); SELDON_ESTATE if the call was already answered; SELDON_EINTERNAL if
 * gRPC refused the reply (the call is then cancelled).
 */
int sdg_reply(sdg_call *call, seldon_buf *response);

/*
 * Ends a call with a non-OK status (a grpc_status_code, e.g.
 * GRPC_STATUS_NOT_FOUND = 5; out-of-range codes become UNKNOWN) and message
 * (copied; NULL for none). Unary: ends the handler's ownership, as
 * sdg_reply() does. Streaming: the status follows the writes already queued,
 * and later writes are refused.
 * Returns 0, SELDON_EINVAL, SELDON_ESTATE (already answered or ended),
 * SELDON_ECANCELED (the stream is already dead) or SELDON_EINTERNAL.
 */
int sdg_fail(sdg_call *call, int grpc_status, const char *message);

/*
 * Queues one message on a streaming call; messages go out in the order of
 * the calls that queued them. Always takes message->data and resets
 * *message to empty, as sdg_reply() does.
 * Returns 0; SELDON_EINVAL (NULL argument, unary call); SELDON_ESTATE when
 * the final status is already decided; SELDON_ECANCELED when the client has
 * gone (the message is dropped).
 */
int sdg_stream_write(sdg_call *call, seldon_buf *message);

/*
 * The value of a client initial metadata entry, e.g. "seldon-model"; key in
 * lowercase, as HTTP/2 carries it. Not NUL-terminated: *len receives its
 * length. Borrowed, valid while the call is. NULL if absent.
 */
const char *sdg_call_metadata(const sdg_call *call, const char *key, size_t *len);

/*
 * Client initial metadata as a list: the number of entries, and entry index
 * (keys in lowercase; values not NUL-terminated, "-bin" values decoded).
 * Borrowed, valid while the call is. sdg_call_metadata_at() returns 0, or
 * SELDON_EINVAL / SELDON_ERANGE.
 */
size_t sdg_call_metadata_count(const sdg_call *call);
int sdg_call_metadata_at(const sdg_call *call, size_t index, const char **key, size_t *key_len,
                         const char **value, size_t *value_len);

/*
 * Adds an entry to the call's response metadata: initial (trailing = 0), sent
 * before the first message or with the status, or trailing (trailing = 1),
 * sent with the status, e.g. ("x-seldon-route", ":iris_1:"). key is lowercase
 * letters, digits, '-', '_', '.', not "grpc-..." (the status and its message
 * come from sdg_reply()/sdg_fail()); a text value is printable ASCII, a key
 * ending in "-bin" takes any bytes. Both are copied. At most 16 of each.
 * Call before the reply (unary) or before the metadata goes out (streams:
 * the first write, or the status for trailing metadata); from the thread
 * that owns the call's answer.
 * Returns 0, SELDON_EINVAL (bad key or value, unregistered call),
 * SELDON_ESTATE (already sent) or SELDON_ETOOBIG (too many entries).
 */
int sdg_call_add_metadata(sdg_call *call, int trailing, const char *key, const char *value,
                          size_t value_len);

/*
 * Keeps call valid past the point where the transport would release it, until
 * the matching sdg_call_release(); holds nest. On a stream, a hold also
 * postpones the final OK status, so a handler that answers messages
 * asynchronously takes one hold per message and releases it after its write.
 */
void sdg_call_hold(sdg_call *call);
void sdg_call_release(sdg_call *call);

/* A pointer of the caller's, kept with the call (NULL at first). */
void sdg_call_set_user(sdg_call *call, void *user);
void *sdg_call_user(const sdg_call *call);

/*
 * Copies the peer address ("ipv4:127.0.0.1:51234") into buf, truncated and
 * NUL-terminated to cap bytes. Returns the untruncated length, or 0 if unknown.
 */
size_t sdg_call_peer(const sdg_call *call, char *buf, size_t cap);

/*
 * Milliseconds left before the client's deadline (0 once passed), or -1 when
 * the client set none. gRPC core cancels the call at the deadline by itself;
 * this is for forwarding the budget or skipping work that is already late.
 */
int64_t sdg_call_timeout_ms(const sdg_call *call);

#ifdef __cplusplus
}
#endif

#endif
