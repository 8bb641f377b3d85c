/* HTTP wire layer: see http_wire.h. */
#include "http_wire.h"

#include <string.h>

#include "sdd.h"

static inline char lower_ascii(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c + ('a' - 'A')) : c;
}

int sdh_name_eq_n(const char *name, size_t name_len, const char *lower, size_t lower_len)
{
    if (name_len != lower_len)
        return 0;
    for (size_t i = 0; i < name_len; i++) {
        if (lower_ascii(name[i]) != lower[i])
            return 0;
    }
    return 1;
}

const sdh_header *sdh_header_find(const sdh_header *headers, size_t n, const char *lower)
{
    size_t len = strlen(lower);
    for (size_t i = 0; i < n; i++) {
        if (headers[i].name_len == len && sdh_name_eq_n(headers[i].name, len, lower, len))
            return &headers[i];
    }
    return NULL;
}

int sdh_value_has_token(const char *value, size_t value_len, const char *token)
{
    size_t i = 0;
    while (i < value_len) {
        while (i < value_len && (value[i] == ' ' || value[i] == '\t' || value[i] == ','))
            i++;
        size_t start = i;
        while (i < value_len && value[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (value[end - 1] == ' ' || value[end - 1] == '\t'))
            end--;
        if (end > start && sdh_name_eq(value + start, end - start, token))
            return 1;
    }
    return 0;
}

int sdh_header_is_hop_by_hop(const char *name, size_t name_len)
{
    /* By length first: most names are of none of these lengths. */
    switch (name_len) {
    case 2:
        return sdh_name_eq_n(name, 2, "te", 2);
    case 7:
        return sdh_name_eq_n(name, 7, "trailer", 7) || sdh_name_eq_n(name, 7, "upgrade", 7);
    case 10:
        return sdh_name_eq_n(name, 10, "connection", 10) ||
               sdh_name_eq_n(name, 10, "keep-alive", 10);
    case 16:
        return sdh_name_eq_n(name, 16, "proxy-connection", 16);
    case 17:
        return sdh_name_eq_n(name, 17, "transfer-encoding", 17);
    default:
        return 0;
    }
}

/* ---- Serialising ---- */

/* Whether any byte of the 8 in v is zero (the classic SWAR test: exact, no false hits). */
static inline uint64_t has_zero(uint64_t v)
{
    return (v - 0x0101010101010101ull) & ~v & 0x8080808080808080ull;
}

/* 1 when s holds no CR, LF or NUL: eight bytes at a time, as headers are scanned on
 * every forwarded request. */
static int clean(const char *s, size_t len)
{
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t v;
        memcpy(&v, s + i, 8);
        if (has_zero(v) | has_zero(v ^ 0x0d0d0d0d0d0d0d0dull) | has_zero(v ^ 0x0a0a0a0a0a0a0a0aull))
            return 0;
    }
    for (; i < len; i++) {
        if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
            return 0;
    }
    return 1;
}

/* clean(), and no ':' either (a header name). */
static int clean_name(const char *s, size_t len)
{
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t v;
        memcpy(&v, s + i, 8);
        if (has_zero(v) | has_zero(v ^ 0x0d0d0d0d0d0d0d0dull) |
            has_zero(v ^ 0x0a0a0a0a0a0a0a0aull) | has_zero(v ^ 0x3a3a3a3a3a3a3a3aull))
            return 0;
    }
    for (; i < len; i++) {
        if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0' || s[i] == ':')
            return 0;
    }
    return 1;
}

static int is_framing(const sdh_header *h)
{
    return (h->name_len == 14 && sdh_name_eq_n(h->name, 14, "content-length", 14)) ||
           (h->name_len == 17 && sdh_name_eq_n(h->name, 17, "transfer-encoding", 17));
}

/* Bytes of decimal digits of v. */
static size_t dec_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

static char *put(char *p, const char *s, size_t len)
{
    memcpy(p, s, len);
    return p + len;
}

static char *put_dec(char *p, uint64_t v)
{
    size_t n = dec_len(v);
    for (size_t i = n; i > 0; i--) {
        p[i - 1] = (char)('0' + v % 10);
        v /= 10;
    }
    return p + n;
}

#define LIT(s) (s), (sizeof(s) - 1)

/* Size of the headers block (each "name: value\r\n") and the framing line; 0 on bad input. */
static size_t headers_size(const sdh_header *hs, size_t n, int64_t content_length, size_t *total)
{
    size_t sz = 0;
    for (size_t i = 0; i < n; i++) {
        if (is_framing(&hs[i]))
            continue;
        if (hs[i].name_len == 0 || !clean_name(hs[i].name, hs[i].name_len) ||
            !clean(hs[i].value, hs[i].value_len))
            return 0;
        size_t line;
        if (!sdd_add_size(&line, hs[i].name_len, hs[i].value_len) ||
            !sdd_add_size(&line, line, 4) || !sdd_add_size(&sz, sz, line))
            return 0;
    }
    if (content_length >= 0)
        sz += sizeof("Content-Length: \r\n") - 1 + dec_len((uint64_t)content_length);
    else if (content_length == SDH_BODY_CHUNKED)
        sz += sizeof("Transfer-Encoding: chunked\r\n") - 1;
    else if (content_length != SDH_BODY_NONE)
        return 0;
    if (!sdd_add_size(total, *total, sz))
        return 0;
    return 1;
}

static char *write_headers(char *p, const sdh_header *hs, size_t n, int64_t content_length)
{
    for (size_t i = 0; i < n; i++) {
        if (is_framing(&hs[i]))
            continue;
        p = put(p, hs[i].name, hs[i].name_len);
        p = put(p, LIT(": "));
        p = put(p, hs[i].value, hs[i].value_len);
        p = put(p, LIT("\r\n"));
    }
    if (content_length >= 0) {
        p = put(p, LIT("Content-Length: "));
        p = put_dec(p, (uint64_t)content_length);
        p = put(p, LIT("\r\n"));
    } else if (content_length == SDH_BODY_CHUNKED) {
        p = put(p, LIT("Transfer-Encoding: chunked\r\n"));
    }
    return p;
}

static int needs_host(const sdh_request_head *h)
{
    return h->host != NULL && sdh_header_find(h->headers, h->n_headers, "host") == NULL;
}

size_t sdh_request_head_size(const sdh_request_head *h)
{
    size_t sz = 0;
    if (h == NULL || h->method_len == 0 || h->target_len == 0 || !clean(h->method, h->method_len) ||
        !clean(h->target, h->target_len) || memchr(h->method, ' ', h->method_len) ||
        memchr(h->target, ' ', h->target_len))
        return 0;
    /* "M T HTTP/1.1\r\n" ... "\r\n" */
    if (!sdd_add_size(&sz, h->method_len, h->target_len) ||
        !sdd_add_size(&sz, sz, sizeof(" HTTP/1.1\r\n") + 2))
        return 0;
    if (needs_host(h)) {
        if (!clean(h->host, h->host_len) ||
            !sdd_add_size(&sz, sz, h->host_len + sizeof("Host: \r\n") - 1))
            return 0;
    }
    if (!headers_size(h->headers, h->n_headers, h->content_length, &sz))
        return 0;
    return sz;
}

size_t sdh_request_head_write(char *dst, const sdh_request_head *h)
{
    size_t sz = sdh_request_head_size(h);
    if (sz == 0)
        return 0;
    return sdh_request_head_write_sized(dst, h, sz);
}

size_t sdh_request_head_write_sized(char *dst, const sdh_request_head *h, size_t size)
{
    (void)size;
    char *p = dst;
    p = put(p, h->method, h->method_len);
    *p++ = ' ';
    p = put(p, h->target, h->target_len);
    p = put(p, LIT(" HTTP/1.1\r\n"));
    if (needs_host(h)) {
        p = put(p, LIT("Host: "));
        p = put(p, h->host, h->host_len);
        p = put(p, LIT("\r\n"));
    }
    p = write_headers(p, h->headers, h->n_headers, h->content_length);
    p = put(p, LIT("\r\n"));
    return (size_t)(p - dst);
}

const char *sdh_reason_phrase(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 415:
        return "Unsupported Media Type";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 499:
        return "Client Closed Request";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Unknown";
    }
}

static const char *response_reason(const sdh_response_head *h)
{
    return h->reason != NULL ? h->reason : sdh_reason_phrase(h->status);
}

size_t sdh_response_head_size(const sdh_response_head *h)
{
    if (h == NULL || h->status < 100 || h->status > 999)
        return 0;
    const char *reason = response_reason(h);
    size_t rlen = strlen(reason);
    if (!clean(reason, rlen))
        return 0;
    /* "HTTP/1.1 NNN reason\r\n" ... "\r\n" */
    size_t sz = sizeof("HTTP/1.1 NNN \r\n") - 1 + rlen + 2;
    if (h->close)
        sz += sizeof("Connection: close\r\n") - 1;
    if (!headers_size(h->headers, h->n_headers, h->content_length, &sz))
        return 0;
    return sz;
}

size_t sdh_response_head_write(char *dst, const sdh_response_head *h)
{
    size_t sz = sdh_response_head_size(h);
    if (sz == 0)
        return 0;
    const char *reason = response_reason(h);
    char *p = dst;
    p = put(p, LIT("HTTP/1.1 "));
    p = put_dec(p, (uint64_t)h->status);
    *p++ = ' ';
    p = put(p, reason, strlen(reason));
    p = put(p, LIT("\r\n"));
    p = write_headers(p, h->headers, h->n_headers, h->content_length);
    if (h->close)
        p = put(p, LIT("Connection: close\r\n"));
    p = put(p, LIT("\r\n"));
    return (size_t)(p - dst);
}

size_t sdh_chunk_prefix(char *dst, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    char tmp[16];
    size_t n = 0;
    do {
        tmp[n++] = hex[len & 15];
        len >>= 4;
    } while (len != 0);
    for (size_t i = 0; i < n; i++)
        dst[i] = tmp[n - 1 - i];
    dst[n] = '\r';
    dst[n + 1] = '\n';
    return n + 2;
}

/* ---- Header collector ---- */

void sdh_head_buf_init(sdh_head_buf *hb, size_t max)
{
    memset(hb, 0, sizeof(*hb));
    hb->max = max;
}

static int hb_append(sdh_head_buf *hb, const char *at, size_t len)
{
    size_t need;
    if (!sdd_add_size(&need, hb->len, len) || need > hb->max)
        return -1;
    if (need > hb->cap) {
        size_t cap = hb->cap ? hb->cap : 512;
        while (cap < need)
            cap *= 2;
        if (cap > hb->max)
            cap = hb->max;
        char *nb = sdd_realloc(hb->buf, cap);
        if (nb == NULL)
            return -1;
        hb->buf = nb;
        hb->cap = cap;
    }
    memcpy(hb->buf + hb->len, at, len);
    hb->len = need;
    return 0;
}

int sdh_head_buf_field(sdh_head_buf *hb, const char *at, size_t len)
{
    if (hb->n == 0 || hb->in_value) {
        /* A new header begins. Their count is bounded too: each costs a view
         * and offsets beyond its bytes. */
        if (hb->n >= 1 + hb->max / 32)
            return -1;
        if (hb->n == hb->cap_offs) {
            size_t cap = hb->cap_offs ? hb->cap_offs * 2 : 16;
            size_t *no = sdd_realloc(hb->offs, cap * 4 * sizeof(size_t));
            if (no == NULL)
                return -1;
            hb->offs = no;
            hb->cap_offs = cap;
        }
        size_t *o = hb->offs + hb->n * 4;
        o[0] = hb->len;
        o[1] = 0;
        o[2] = hb->len;
        o[3] = 0;
        hb->n++;
        hb->in_value = 0;
    }
    if (hb_append(hb, at, len) != 0)
        return -1;
    size_t *o = hb->offs + (hb->n - 1) * 4;
    o[1] += len;
    o[2] = hb->len;
    return 0;
}

int sdh_head_buf_value(sdh_head_buf *hb, const char *at, size_t len)
{
    if (hb->n == 0)
        return -1;
    if (!hb->in_value) {
        hb->in_value = 1;
        hb->offs[(hb->n - 1) * 4 + 2] = hb->len;
    }
    if (hb_append(hb, at, len) != 0)
        return -1;
    hb->offs[(hb->n - 1) * 4 + 3] += len;
    return 0;
}

int sdh_head_buf_headers(sdh_head_buf *hb, const sdh_header **out, size_t *out_n)
{
    if (hb->n > hb->cap_views) {
        sdh_header *nv = sdd_realloc(hb->views, hb->n * sizeof(sdh_header));
        if (nv == NULL)
            return -1;
        hb->views = nv;
        hb->cap_views = hb->n;
    }
    for (size_t i = 0; i < hb->n; i++) {
        const size_t *o = hb->offs + i * 4;
        hb->views[i].name = hb->buf + o[0];
        hb->views[i].name_len = o[1];
        hb->views[i].value = hb->buf + o[2];
        hb->views[i].value_len = o[3];
    }
    *out = hb->views;
    *out_n = hb->n;
    return 0;
}

void sdh_head_buf_reset(sdh_head_buf *hb)
{
    hb->len = 0;
    hb->n = 0;
    hb->in_value = 0;
}

void sdh_head_buf_free(sdh_head_buf *hb)
{
    sdd_free(hb->buf);
    sdd_free(hb->offs);
    sdd_free(hb->views);
    size_t max = hb->max;
    memset(hb, 0, sizeof(*hb));
    hb->max = max;
}
