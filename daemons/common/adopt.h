/*
 * Handing an accepted connection from one protocol to another on the same loop.
 *
 * The HTTP/1.1 server reads the first bytes of every connection. When they are
 * HTTP/2's prior-knowledge preface ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), it stops
 * reading and offers the connection to its adopter (the h2c transport), so that
 * one port serves REST and gRPC. The contract:
 *
 *   - stream is open, on the loop the adopter's callback runs on, with reading
 *     stopped. The adopter sets stream->data and calls uv_read_start() with its
 *     own callbacks; it may write with uv_write() and call uv_read_stop().
 *   - initial holds the bytes already read from the connection (the preface and
 *     whatever followed it), borrowed for the duration of the callback only.
 *   - The adopter calls release(owner) exactly once, when it is done with the
 *     connection and no write of its is pending; the owner then closes the handle
 *     and frees it. The adopter must not touch stream afterwards.
 *   - The callback returns 0 when it took the connection, or a negative SELDON_E*
 *     when it could not; then the owner closes the connection and release must
 *     not be called.
 *
 * Thread safety: everything happens on the connection's loop thread.
 */
#ifndef SD_ADOPT_H
#define SD_ADOPT_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

typedef struct sd_adopt {
    uv_stream_t *stream;
    const uint8_t *initial;
    size_t initial_len;
    void (*release)(void *owner);
    void *owner;
} sd_adopt;

typedef int (*sd_adopt_fn)(void *user_data, const sd_adopt *conn);

#endif
