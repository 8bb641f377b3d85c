/*
 * gRPC message framing and client calls on sd2 streams (see rpc.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc.h"
#include "sdd.h"

int32_t sdr_status_of(int err)
{
    switch (err) {
    case 0:
        return SDR_OK;
    case SELDON_EINVAL:
    case SELDON_EPARSE:
    case SELDON_ERANGE:
    case SELDON_ESHAPE:
    case SELDON_EDATATYPE:
    case SELDON_ETOOBIG:
        return SDR_INVALID_ARGUMENT;
    case SELDON_ENOTFOUND:
        return SDR_NOT_FOUND;
    case SELDON_EEXIST:
        return SDR_ALREADY_EXISTS;
    case SELDON_ENOMEM:
        return SDR_RESOURCE_EXHAUSTED;
    case SELDON_ESTATE:
        return SDR_FAILED_PRECONDITION;
    case SELDON_EUNSUPPORTED:
        return SDR_UNIMPLEMENTED;
    case SELDON_EUNAVAIL:
        return SDR_UNAVAILABLE;
    case SELDON_ETIMEDOUT:
        return SDR_DEADLINE_EXCEEDED;
    case SELDON_ECANCELED:
        return SDR_CANCELLED;
    default:
        return SDR_INTERNAL;
    }
}

int sdr_reader_feed(sdr_reader *r, const uint8_t *data, size_t len, sdr_message_fn on_msg,
                    void *user_data)
{
    size_t max = r->max ? r->max : SDR_MESSAGE_MAX, off = 0;
    const uint8_t *p;
    size_t avail;
    int rc;

    /* Whole messages straight from the chunk when nothing is held. */
    if (r->buf.len == 0) {
        p = data;
        avail = len;
    } else {
        if (seldon_buf_reserve(&r->buf, len) != 0)
            return -1;
        memcpy(r->buf.data + r->buf.len, data, len);
        r->buf.len += len;
        p = r->buf.data;
        avail = r->buf.len;
    }
    while (avail - off >= 5) {
        uint32_t mlen = ((uint32_t)p[off + 1] << 24) | ((uint32_t)p[off + 2] << 16) |
                        ((uint32_t)p[off + 3] << 8) | p[off + 4];
        if (p[off] != 0) {
            seldon_set_error(SELDON_EUNSUPPORTED, "compressed gRPC messages are not accepted");
            return -1;
        }
        if (mlen > max) {
            sdd_error(SELDON_ETOOBIG, "gRPC message of %u bytes: the limit is %zu", mlen, max);
            return -1;
        }
        if (avail - off - 5 < mlen)
            break;
        rc = on_msg(user_data, p + off + 5, mlen);
        off += 5 + (size_t)mlen;
        if (rc != 0) {
            r->buf.len = 0;
            return rc;
        }
    }
    if (p == data) {
        if (off < len) {
            if (seldon_buf_reserve(&r->buf, len - off) != 0)
                return -1;
            memcpy(r->buf.data, data + off, len - off);
            r->buf.len = len - off;
        }
    } else if (off > 0) {
        memmove(r->buf.data, r->buf.data + off, r->buf.len - off);
        r->buf.len -= off;
    }
    return 0;
}

void sdr_reader_free(sdr_reader *r)
{
    seldon_buf_free(&r->buf);
}

int sdr_write(sd2_stream *s, const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t stackbuf[512], *buf = stackbuf;
    int rc;
    if (n + 5 > sizeof(stackbuf)) {
        buf = sdd_malloc(n + 5);
        if (buf == NULL)
            return SD2_ENOMEM;
    }
    buf[0] = 0;
    buf[1] = (uint8_t)(n >> 24);
    buf[2] = (uint8_t)(n >> 16);
    buf[3] = (uint8_t)(n >> 8);
    buf[4] = (uint8_t)n;
    protobuf_c_message_pack(m, buf + 5);
    rc = sd2_write(s, buf, n + 5);
    if (buf != stackbuf)
        sdd_free(buf);
    return rc;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void sdr_percent_decode(char *out, size_t cap, const char *in, size_t len)
{
    size_t i, k = 0;
    if (cap == 0)
        return;
    for (i = 0; i < len && k + 1 < cap; i++) {
        if (in[i] == '%' && i + 2 < len && hexval(in[i + 1]) >= 0 && hexval(in[i + 2]) >= 0) {
            out[k++] = (char)(hexval(in[i + 1]) * 16 + hexval(in[i + 2]));
            i += 2;
        } else {
            out[k++] = in[i];
        }
    }
    out[k] = '\0';
}

/* --------------------------------------------------------------- client calls */

#define CALL_HEADERS_MAX 64

struct sdr_call {
    sd2_stream *s;
    sdr_call_cbs cbs;
    void *user_data;
    sdr_reader reader;
    int32_t status; /* -1 until a grpc-status arrived */
    char message[1024];
    sd2_header h[CALL_HEADERS_MAX];
    size_t nh;
    char *failure; /* a framing error, kept for on_done */
};

static void keep_headers(sdr_call *c, const sd2_header *h, size_t n)
{
    size_t i;
    const sd2_header *st = sd2_header_find(h, n, "grpc-status");
    const sd2_header *msg = sd2_header_find(h, n, "grpc-message");
    if (st != NULL) {
        char num[12];
        size_t m = st->value_len < sizeof(num) - 1 ? st->value_len : sizeof(num) - 1;
        memcpy(num, st->value, m);
        num[m] = '\0';
        c->status = (int32_t)strtol(num, NULL, 10);
    }
    if (msg != NULL)
        sdr_percent_decode(c->message, sizeof(c->message), msg->value, msg->value_len);
    for (i = 0; i < n && c->nh < CALL_HEADERS_MAX; i++) {
        char *name = sdd_strndup(h[i].name, h[i].name_len);
        char *value = sdd_strndup(h[i].value, h[i].value_len);
        if (name == NULL || value == NULL) {
            sdd_free(name);
            sdd_free(value);
            return;
        }
        c->h[c->nh++] = (sd2_header){name, h[i].name_len, value, h[i].value_len};
    }
}

static int call_msg(void *user_data, const uint8_t *msg, size_t len)
{
    sdr_call *c = user_data;
    if (c->cbs.on_message != NULL)
        c->cbs.on_message(c, c->user_data, msg, len);
    return 0;
}

static void call_headers(sd2_stream *s, void *user_data, const sd2_header *h, size_t n, int end)
{
    (void)s;
    (void)end;
    keep_headers(user_data, h, n);
}

static void call_data(sd2_stream *s, void *user_data, const uint8_t *data, size_t len)
{
    sdr_call *c = user_data;
    if (c->failure == NULL && sdr_reader_feed(&c->reader, data, len, call_msg, c) < 0) {
        c->failure = sdd_strndup(seldon_last_error(), strlen(seldon_last_error()));
        sd2_reset(s, SD2_H2_CANCEL);
    }
    sd2_consume(s, len);
}

static void call_end(sd2_stream *s, void *user_data, const sd2_header *trailers, size_t n)
{
    (void)s;
    keep_headers(user_data, trailers, n);
}

static void call_close(sd2_stream *s, void *user_data, int err, uint32_t h2_code)
{
    sdr_call *c = user_data;
    int32_t status = c->status;
    const char *message = c->message;
    char why[256];
    size_t i;
    (void)s;
    (void)h2_code;
    if (c->failure != NULL) {
        status = SDR_INTERNAL;
        message = c->failure;
    } else if (status < 0) {
        if (err == SD2_ECANCELED) {
            status = SDR_CANCELLED;
            message = "canceled";
        } else if (err == SD2_ETIMEOUT) {
            status = SDR_DEADLINE_EXCEEDED;
            message = "deadline exceeded";
        } else {
            status = err == SD2_OK ? SDR_UNKNOWN : SDR_UNAVAILABLE;
            snprintf(why, sizeof(why), "%s",
                     err == SD2_OK ? "the answer carried no grpc-status" : sd2_strerror(err));
            message = why;
        }
    }
    c->cbs.on_done(c, c->user_data, status, message, c->h, c->nh);
    for (i = 0; i < c->nh; i++) {
        sdd_free((void *)c->h[i].name);
        sdd_free((void *)c->h[i].value);
    }
    sdd_free(c->failure);
    sdr_reader_free(&c->reader);
    sdd_free(c);
}

static const sd2_stream_cbs call_cbs = {call_headers, call_data, call_end, NULL, call_close};

int sdr_call_start(sdr_call **out, sd2_upstream *u, const char *authority, const char *path,
                   const uint8_t *req, size_t req_len, const sd2_header *extra, size_t nextra,
                   const sdr_call_cbs *cbs, void *user_data, uint64_t timeout_ms)
{
    sd2_header h[6 + 32];
    size_t n = 0, i;
    uint8_t prefix[5];
    sdr_call *c;
    int rc;

    if (nextra > 32)
        return SELDON_EINVAL;
    c = sdd_calloc(1, sizeof(*c));
    if (c == NULL)
        return SELDON_ENOMEM;
    c->cbs = *cbs;
    c->user_data = user_data;
    c->status = -1;
    h[n++] = (sd2_header){":method", 7, "POST", 4};
    h[n++] = (sd2_header){":scheme", 7, "http", 4};
    h[n++] = (sd2_header){":path", 5, path, strlen(path)};
    h[n++] = (sd2_header){":authority", 10, authority, strlen(authority)};
    h[n++] = (sd2_header){"content-type", 12, "application/grpc", 16};
    h[n++] = (sd2_header){"te", 2, "trailers", 8};
    for (i = 0; i < nextra; i++)
        h[n++] = extra[i];
    rc = sd2_request(&c->s, u, h, n, 0, &call_cbs, c, timeout_ms);
    if (rc != 0) {
        sdd_free(c);
        return rc;
    }
    prefix[0] = 0;
    prefix[1] = (uint8_t)(req_len >> 24);
    prefix[2] = (uint8_t)(req_len >> 16);
    prefix[3] = (uint8_t)(req_len >> 8);
    prefix[4] = (uint8_t)req_len;
    /* Failures here reset the stream: on_close reports them. */
    if (sd2_write(c->s, prefix, 5) >= 0 && (req_len == 0 || sd2_write(c->s, req, req_len) >= 0))
        sd2_end(c->s, NULL, 0);
    if (out != NULL)
        *out = c;
    return 0;
}

void sdr_call_cancel(sdr_call *c)
{
    sd2_reset(c->s, SD2_H2_CANCEL);
}
