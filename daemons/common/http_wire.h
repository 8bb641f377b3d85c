/*
 * HTTP wire layer shared by the HTTP/1.1 server and client and the h2c
 * transport: header views and (de)serialising helpers. Depends on nothing
 * above it; the server and the client depend on it, never on each other.
 *
 * Thread safety: pure functions over caller-owned memory.
 */
#ifndef SDH_HTTP_WIRE_H
#define SDH_HTTP_WIRE_H

#include <stddef.h>
#include <stdint.h>

/* One header, as a view: borrowed, valid as long as the message it points into. */
typedef struct sdh_header {
    const char *name; /* not NUL-terminated */
    size_t name_len;
    const char *value; /* not NUL-terminated */
    size_t value_len;
} sdh_header;

#endif
