/*
 * HTTP wire layer shared by the HTTP/1.1 server and client and the h2c
 * transport: header views and (de)serialising helpers. Depends on nothing
 * above it; the server and the client depend on it, never on each other.
 *
 * Thread safety: pure functions over caller-owned memory; an sdh_head_buf is
 * used by one thread at a time.
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

/* ---- Header names and values ---- */

/* 1 when the name (name_len bytes) equals lower (NUL-terminated, lower case), ignoring ASCII case.
 * Inline: proxies call it for every header of every request, mostly with a literal, whose
 * length the compiler knows, so most names are refused on their length alone. */
int sdh_name_eq_n(const char *name, size_t name_len, const char *lower, size_t lower_len);
static inline int sdh_name_eq(const char *name, size_t name_len, const char *lower)
{
    size_t n = __builtin_strlen(lower);
    return name_len == n && sdh_name_eq_n(name, name_len, lower, n);
}

/* The first header named lower (NUL-terminated, lower case) in headers[0..n), or NULL. */
const sdh_header *sdh_header_find(const sdh_header *headers, size_t n, const char *lower);

/* 1 when the comma-separated value holds token (lower case), ignoring case and spaces
 * ("Connection: keep-alive, Close" holds "close"). */
int sdh_value_has_token(const char *value, size_t value_len, const char *token);

/* 1 for the hop-by-hop headers a proxy must not forward (RFC 9110 7.6.1): connection,
 * keep-alive, proxy-connection, te, trailer, transfer-encoding, upgrade. Content-Length is
 * not hop-by-hop, but a proxy that reframes a body drops it too. */
int sdh_header_is_hop_by_hop(const char *name, size_t name_len);

/* ---- Serialising ---- */

/* Body framing of a serialised head. */
#define SDH_BODY_CHUNKED (-1) /* Transfer-Encoding: chunked */
#define SDH_BODY_NONE (-2)    /* no framing header (GET without body, or a 204/304) */

/* A request head to serialise. All pointers borrowed for the call. */
typedef struct sdh_request_head {
    const char *method; /* e.g. "POST" */
    size_t method_len;
    const char *target; /* origin-form path and query, e.g. "/v2/models/m/infer" */
    size_t target_len;
    const sdh_header *headers; /* written as given, except Content-Length and
                                  Transfer-Encoding, which content_length decides */
    size_t n_headers;
    const char *host; /* Host value written when headers have none; NULL = none */
    size_t host_len;
    int64_t content_length; /* >= 0: Content-Length; SDH_BODY_CHUNKED; SDH_BODY_NONE */
} sdh_request_head;

/* Exact byte count of the serialised head, CRLF CRLF included; 0 on overflow or when a
 * field holds CR, LF or NUL (header injection), or the method or target is empty. */
size_t sdh_request_head_size(const sdh_request_head *head);

/* Writes the head into dst, which holds sdh_request_head_size(head) bytes; returns the
 * bytes written (that size), or 0 as sdh_request_head_size() does. */
size_t sdh_request_head_write(char *dst, const sdh_request_head *head);

/* The same, for a head whose size sdh_request_head_size() just returned (size, not 0):
 * writes without checking the fields again. */
size_t sdh_request_head_write_sized(char *dst, const sdh_request_head *head, size_t size);

/* A response head to serialise (for a server or a proxy answering downstream). */
typedef struct sdh_response_head {
    int status;                /* 100..999 */
    const char *reason;        /* NULL = the standard phrase for status (sdh_reason_phrase) */
    const sdh_header *headers; /* as given, except Content-Length and Transfer-Encoding */
    size_t n_headers;
    int64_t content_length; /* >= 0: Content-Length; SDH_BODY_CHUNKED; SDH_BODY_NONE */
    int close;              /* 1: adds "Connection: close" */
} sdh_response_head;

size_t sdh_response_head_size(const sdh_response_head *head);
size_t sdh_response_head_write(char *dst, const sdh_response_head *head);

/* Standard reason phrase ("Not Found"); "Unknown" for others. Static storage. */
const char *sdh_reason_phrase(int status);

/* Chunked framing: a chunk is sdh_chunk_prefix() bytes, the data, then SDH_CHUNK_SUFFIX.
 * The body ends with SDH_CHUNK_LAST (a zero chunk and no trailers). */
#define SDH_CHUNK_PREFIX_MAX 18 /* 16 hex digits + CRLF */
#define SDH_CHUNK_SUFFIX "\r\n"
#define SDH_CHUNK_LAST "0\r\n\r\n"

/* Writes "<hex len>\r\n" into dst (SDH_CHUNK_PREFIX_MAX bytes); returns its length.
 * len must be > 0: a zero chunk ends the body. */
size_t sdh_chunk_prefix(char *dst, size_t len);

/* ---- Parsing (around libhttp-parser's header callbacks) ---- */

/*
 * Collects header fields and values that http-parser hands over in fragments (a
 * name or a value may span reads) into one bounded buffer, then gives them as
 * sdh_header views. Zero-initialise, or sdh_head_buf_reset() after use.
 */
typedef struct sdh_head_buf {
    char *buf;            /* owned */
    size_t len, cap, max; /* max: limit on buf bytes (the head size bound) */
    size_t *offs;         /* owned: per header name_off, name_len, value_off, value_len */
    size_t n, cap_offs;   /* n headers begun */
    int in_value;
    sdh_header *views; /* owned, built by sdh_head_buf_headers() */
    size_t cap_views;
} sdh_head_buf;

/* Sets the bound (bytes of names and values) and empties the collector. */
void sdh_head_buf_init(sdh_head_buf *hb, size_t max);

/* Feed from on_header_field / on_header_value. 0, or -1 when over the bound (max bytes
 * of names and values, 1 + max / 32 headers) or out of memory (the caller fails the
 * message). */
int sdh_head_buf_field(sdh_head_buf *hb, const char *at, size_t len);
int sdh_head_buf_value(sdh_head_buf *hb, const char *at, size_t len);

/* Views of the collected headers (names as sent), valid until the next feed, reset or
 * free. 0, or -1 out of memory. */
int sdh_head_buf_headers(sdh_head_buf *hb, const sdh_header **out, size_t *out_n);

/* Empties the collector for the next message; keeps its memory. */
void sdh_head_buf_reset(sdh_head_buf *hb);

/* Frees the collector's memory. */
void sdh_head_buf_free(sdh_head_buf *hb);

#endif
