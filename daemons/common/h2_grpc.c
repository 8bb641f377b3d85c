/*
 * gRPC over the h2c transport: metadata lists, grpc-timeout, status trailers.
 * Bodies stay opaque: gRPC messages pass through as data.
 */
#include <stdio.h>
#include <string.h>

#include "h2_internal.h"
#include "sdd.h"

static int name_is(const sd2_header *h, const char *name)
{
    size_t n = strlen(name);
    return h->name_len == n && memcmp(h->name, name, n) == 0;
}

const sd2_header *sd2_header_find(const sd2_header *h, size_t n, const char *name)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (name_is(&h[i], name))
            return &h[i];
    return NULL;
}

int sd2_grpc_is_metadata(const sd2_header *h)
{
    static const char *const transport[] = {
        "te",           "content-type",  "user-agent",
        "grpc-timeout", "grpc-encoding", "grpc-accept-encoding",
        "grpc-status",  "grpc-message",  "grpc-status-details-bin"};
    size_t i;
    if (h->name_len == 0 || h->name[0] == ':')
        return 0;
    for (i = 0; i < sizeof(transport) / sizeof(transport[0]); i++)
        if (name_is(h, transport[i]))
            return 0;
    return 1;
}

int sd2_grpc_timeout_ms(uint64_t *out, const char *v, size_t len)
{
    uint64_t n = 0, ms;
    size_t i;
    *out = 0;
    /* TimeoutValue is at most 8 ASCII digits, then one unit. */
    if (len < 2 || len > 9)
        return -1;
    for (i = 0; i + 1 < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        n = n * 10 + (uint64_t)(v[i] - '0');
    }
    switch (v[len - 1]) {
    case 'H':
        ms = n * 3600000u;
        break;
    case 'M':
        ms = n * 60000u;
        break;
    case 'S':
        ms = n * 1000u;
        break;
    case 'm':
        ms = n;
        break;
    case 'u':
        ms = (n + 999) / 1000;
        break;
    case 'n':
        ms = (n + 999999) / 1000000;
        break;
    default:
        return -1;
    }
    *out = ms;
    return 0;
}

int sd2_grpc_send_headers(sd2_stream *s, const sd2_header *extra, size_t n)
{
    static const sd2_header pre[2] = {{":status", 7, "200", 3},
                                      {"content-type", 12, "application/grpc", 16}};
    sd2_header hv[64];
    size_t i;
    if (n > 62)
        return SD2_EPROTO;
    hv[0] = pre[0];
    hv[1] = pre[1];
    for (i = 0; i < n; i++)
        hv[2 + i] = extra[i];
    return sd2_send_headers(s, hv, n + 2, 0);
}

/* grpc-message is percent-encoded: bytes outside 0x20-0x7e and '%' itself. */
static size_t pct_encode(char *out, size_t cap, const char *msg)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (; *msg != '\0' && o + 4 < cap; msg++) {
        unsigned char ch = (unsigned char)*msg;
        if (ch < 0x20 || ch > 0x7e || ch == '%') {
            out[o++] = '%';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        } else {
            out[o++] = (char)ch;
        }
    }
    out[o] = '\0';
    return o;
}

/* The decimal text of a status without snprintf: it runs for every answer. */
static size_t status_text(char out[16], int32_t v)
{
    char tmp[12];
    size_t n = 0, o = 0;
    uint32_t u = v < 0 ? 0u - (uint32_t)v : (uint32_t)v;
    if (v < 0)
        out[o++] = '-';
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    while (n > 0)
        out[o++] = tmp[--n];
    out[o] = '\0';
    return o;
}

int sd2_grpc_finish(sd2_stream *s, int32_t grpc_status, const char *message,
                    const sd2_header *extra, size_t n)
{
    char status[16], msg[1024];
    sd2_header hv[68];
    size_t k = 0, i;
    int head = !s->headers_sent;
    if (n > 62)
        return SD2_EPROTO;
    if (head) {
        hv[k++] = (sd2_header){":status", 7, "200", 3};
        hv[k++] = (sd2_header){"content-type", 12, "application/grpc", 16};
    }
    hv[k++] = (sd2_header){"grpc-status", 11, status, status_text(status, grpc_status)};
    if (message != NULL && *message != '\0') {
        size_t ml = pct_encode(msg, sizeof(msg), message);
        hv[k++] = (sd2_header){"grpc-message", 12, msg, ml};
    }
    for (i = 0; i < n; i++)
        hv[k++] = extra[i];
    if (head)
        return sd2_send_headers(s, hv, k, 1);
    return sd2_end(s, hv, k);
}
