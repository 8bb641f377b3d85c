/*
 * The model name inside a serialised ModelInferRequest, replaced without
 * decoding the rest: the fields are walked at the top level only and copied
 * byte for byte, so raw_input_contents and every tensor stay as they came.
 */
#include <string.h>

#include "core/core.h"
#include "seldon/kafka.h"

static int varint(const uint8_t *p, size_t len, size_t *at, uint64_t *out)
{
    uint64_t v = 0;
    unsigned shift = 0;
    while (*at < len && shift < 64) {
        uint8_t b = p[(*at)++];
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
        shift += 7;
    }
    return -1;
}

static size_t put_varint(uint8_t *out, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        out[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    out[n++] = (uint8_t)v;
    return n;
}

int seldon_kafka_request_set_model(seldon_buf *out, const uint8_t *msg, size_t len,
                                   const char *model)
{
    uint8_t head[16];
    size_t at = 0, mlen, hn, total;
    int rc;
    if (out == NULL || (msg == NULL && len > 0) || model == NULL)
        return sdn_error(SELDON_EINVAL, "request: NULL argument");
    mlen = strlen(model);
    /* First pass: check the framing, so nothing is appended to out for a bad message. */
    while (at < len) {
        size_t start = at;
        uint64_t tag, n;
        if (varint(msg, len, &at, &tag) != 0 || (tag >> 3) == 0)
            return sdn_error(SELDON_EPARSE, "request: bad field tag at byte %zu", start);
        switch (tag & 7) {
        case 0:
            if (varint(msg, len, &at, &n) != 0)
                return sdn_error(SELDON_EPARSE, "request: bad varint at byte %zu", start);
            break;
        case 1:
            if (len - at < 8)
                return sdn_error(SELDON_EPARSE, "request: truncated at byte %zu", start);
            at += 8;
            break;
        case 5:
            if (len - at < 4)
                return sdn_error(SELDON_EPARSE, "request: truncated at byte %zu", start);
            at += 4;
            break;
        case 2:
            if (varint(msg, len, &at, &n) != 0 || n > len - at)
                return sdn_error(SELDON_EPARSE, "request: bad length at byte %zu", start);
            at += (size_t)n;
            break;
        default:
            return sdn_error(SELDON_EPARSE, "request: wire type %u at byte %zu",
                             (unsigned)(tag & 7), start);
        }
    }
    head[0] = 0x0a; /* field 1, length-delimited */
    hn = 1 + put_varint(head + 1, mlen);
    if (!sdn_add_size(&total, hn, mlen) || !sdn_add_size(&total, total, len))
        return sdn_error(SELDON_ETOOBIG, "request: too large");
    if ((rc = sdn_buf_reserve(out, total)) != 0)
        return rc;
    memcpy(out->data + out->len, head, hn);
    memcpy(out->data + out->len + hn, model, mlen);
    out->len += hn + mlen;
    /* Second pass: copy every field but model_name. */
    at = 0;
    while (at < len) {
        size_t start = at;
        uint64_t tag = 0, n = 0;
        (void)varint(msg, len, &at, &tag);
        switch (tag & 7) {
        case 0:
            (void)varint(msg, len, &at, &n);
            break;
        case 1:
            at += 8;
            break;
        case 5:
            at += 4;
            break;
        default:
            (void)varint(msg, len, &at, &n);
            at += (size_t)n;
            break;
        }
        if (tag == 0x0a)
            continue;
        memcpy(out->data + out->len, msg + start, at - start);
        out->len += at - start;
    }
    return 0;
}
