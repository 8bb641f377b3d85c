/*
 * gRPC messages over sd2 streams, for the control plane's daemons (the
 * scheduler serves with it, the seldon CLI calls with it): reassembling the
 * length-prefixed messages of a stream, writing a protobuf-c message framed,
 * and a unary or server-streaming call from a client.
 *
 * Thread safety: everything belongs to the loop of the stream it is used with.
 */
#ifndef SDR_RPC_H
#define SDR_RPC_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "h2.h"
#include "seldon/common.h"

/* gRPC status codes used here. */
#define SDR_OK 0
#define SDR_CANCELLED 1
#define SDR_UNKNOWN 2
#define SDR_INVALID_ARGUMENT 3
#define SDR_DEADLINE_EXCEEDED 4
#define SDR_NOT_FOUND 5
#define SDR_ALREADY_EXISTS 6
#define SDR_RESOURCE_EXHAUSTED 8
#define SDR_FAILED_PRECONDITION 9
#define SDR_UNIMPLEMENTED 12
#define SDR_INTERNAL 13
#define SDR_UNAVAILABLE 14

/* Largest message accepted: a manifest file plus its framing. */
#define SDR_MESSAGE_MAX ((size_t)80 << 20)

/* The gRPC status for a SELDON_E* code. */
int32_t sdr_status_of(int err);

/*
 * Reassembles messages from data chunks. A message over max (0: SDR_MESSAGE_MAX)
 * or a compressed one is an error. Bytes are held until their message is whole.
 */
typedef struct sdr_reader {
    seldon_buf buf;
    size_t max;
} sdr_reader;

typedef int (*sdr_message_fn)(void *user_data, const uint8_t *msg, size_t len);

/* Feeds a chunk; calls on_msg for each whole message (a non-zero return stops and is
 * returned). -1 (with seldon_last_error set) on a framing error. */
int sdr_reader_feed(sdr_reader *r, const uint8_t *data, size_t len, sdr_message_fn on_msg,
                    void *user_data);
void sdr_reader_free(sdr_reader *r);

/* Packs m with its 5-byte prefix and writes it on s (sd2_write's result). */
int sdr_write(sd2_stream *s, const ProtobufCMessage *m);

/* Decodes a percent-encoded grpc-message into out (NUL-terminated, truncated to cap). */
void sdr_percent_decode(char *out, size_t cap, const char *in, size_t len);

/* --------------------------------------------------------------- client calls */

typedef struct sdr_call sdr_call;

/*
 * A call's callbacks. on_message for each response message (borrowed for the
 * call); on_done exactly once at the end with the gRPC status (a transport
 * failure is SDR_UNAVAILABLE, its reason in message) and its message (borrowed
 * for the call, "" when none); headers holds the response's headers and
 * trailers for the call. The call is freed when on_done returns.
 */
typedef struct sdr_call_cbs {
    void (*on_message)(sdr_call *c, void *user_data, const uint8_t *msg, size_t len);
    void (*on_done)(sdr_call *c, void *user_data, int32_t status, const char *message,
                    const sd2_header *headers, size_t n);
} sdr_call_cbs;

/*
 * Starts a call of path ("/pkg.Service/Method") on u with one request message
 * (req, already packed without the prefix) and extra metadata headers.
 * timeout_ms 0: none. Returns 0 or a negative code (nothing started).
 */
int sdr_call_start(sdr_call **out, sd2_upstream *u, const char *authority, const char *path,
                   const uint8_t *req, size_t req_len, const sd2_header *extra, size_t nextra,
                   const sdr_call_cbs *cbs, void *user_data, uint64_t timeout_ms);

/* Cancels a call: on_done(SDR_CANCELLED) follows later from the loop. */
void sdr_call_cancel(sdr_call *c);

#endif
