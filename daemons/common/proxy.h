/*
 * What the two reverse proxies (seldon-router and seldon-agent's REST and gRPC
 * proxies) do alike with an upstream's answer: which response headers the HTTP
 * layer writes itself, the announced length of a body, an answer's body passed
 * on with backpressure, and the grpc-status of a trailer. Inline: they run on
 * every proxied request.
 *
 * Thread safety: none of these keep state; each runs on the loop of its request.
 */
#ifndef SDX_PROXY_H
#define SDX_PROXY_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "h2.h"
#include "http_client.h"
#include "http_server.h"
#include "sdd.h"

/* A header that HTTP/1.1 framing owns: the server layer writes its own. */
static inline int sdx_is_frame_header(const sdh_header *h)
{
    return sdh_header_is_hop_by_hop(h->name, h->name_len) ||
           sdh_name_eq(h->name, h->name_len, "content-length");
}

/* The body length an answer's head announces: Content-Length, 0 for 204 and 304, else -1. */
static inline int64_t sdx_content_length(int status, const sdh_header *h, size_t n)
{
    const sdh_header *cl = sdh_header_find(h, n, "content-length");
    if (cl != NULL && !sdh_header_find(h, n, "transfer-encoding")) {
        char num[24];
        size_t m = cl->value_len < sizeof(num) - 1 ? cl->value_len : sizeof(num) - 1;
        memcpy(num, cl->value, m);
        num[m] = '\0';
        return strtoll(num, NULL, 10);
    }
    if (status == 204 || status == 304)
        return 0;
    return -1;
}

/*
 * An upstream's body bytes, to the client: added to held (when holding, and only as
 * far as held's capacity: more than announced ends at the client's parser), or
 * written to down, pausing up while down's output is above its limit (*paused set).
 * Returns 0, or -1 when out of memory (the caller fails the request).
 */
static inline int sdx_body_forward(sdh_req *down, sdc_request *up, int holding, seldon_buf *held,
                                   uint8_t *paused, const char *data, size_t len)
{
    seldon_buf b = SELDON_BUF_INIT;
    if (holding) {
        if (held->len + len <= held->cap) {
            memcpy(held->data + held->len, data, len);
            held->len += len;
        }
        return 0;
    }
    if (seldon_buf_reserve(&b, len) != 0)
        return -1;
    memcpy(b.data, data, len);
    b.len = len;
    if (sdh_stream_write(down, &b) == 1 && !*paused) {
        *paused = 1;
        sdc_request_pause(up, 1);
    }
    return 0;
}

/* The grpc-status of a trailer (or a trailers-only answer); -1 without one. */
static inline int32_t sdx_grpc_status(const sd2_header *h, size_t n)
{
    const sd2_header *g = sd2_header_find(h, n, "grpc-status");
    char num[12];
    size_t m;
    if (g == NULL)
        return -1;
    m = g->value_len < sizeof(num) - 1 ? g->value_len : sizeof(num) - 1;
    memcpy(num, g->value, m);
    num[m] = '\0';
    return (int32_t)strtol(num, NULL, 10);
}

#endif
