/*
 * Pipeline serving over gRPC (plserve.h): the request framing (sdp_grpc_in),
 * grpc-timeout, ModelInfer calls of a host's own gRPC server (sdp_grpc) and
 * the calls of our own h2 streams (sdp_grpc_stream: ModelInfer,
 * ModelStreamInfer, ModelReady), whose answers are framed here.
 */

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "plserve_int.h"
#include "sdd.h"

#define GRPC_HDR SDP_GRPC_PREFIX
#define STREAM_PENDING_MAX 32
#define STREAM_QUEUE_MAX ((size_t)256 << 10)

static int oh_set(oh *h, const char *name, size_t nl, const char *value, size_t vl)
{
    char *m = sdd_malloc(nl + vl + 2);
    if (m == NULL)
        return SELDON_ENOMEM;
    memcpy(m, name, nl);
    m[nl] = '\0';
    memcpy(m + nl + 1, value, vl);
    m[nl + 1 + vl] = '\0';
    sdd_free(h->name);
    h->name = m;
    h->name_len = nl;
    h->value = m + nl + 1;
    h->value_len = vl;
    return 0;
}

/* ------------------------------------------------------- gRPC streams (own) */

struct scall {
    sdp *s;
    sd2_stream *st; /* NULL once closed */
    int streaming;
    int refs; /* the stream's own, and one per request in the engine */
    int ended, finished, headers;
    uint64_t nreq; /* requests dispatched */
    int64_t timeout_ms;
    oh *meta; /* x-* metadata of the call */
    size_t nmeta;
    char rid[80];
    char pipeline[SELDON_ROUTES_NAME_MAX + 1];
    int tag;                                 /* sdp_route's, for every request of the call */
    char mirror[SELDON_ROUTES_NAME_MAX + 1]; /* sdp_route's: each request copied there, or "" */
    sdp_grpc_in in;                          /* request bytes until their messages are whole */
    size_t unconsumed;
};

void sdp_i_scall_unref(scall *c)
{
    size_t i;
    if (--c->refs > 0)
        return;
    for (i = 0; i < c->nmeta; i++)
        sdd_free(c->meta[i].name);
    sdd_free(c->meta);
    seldon_buf_free(&c->in.in);
    sdd_free(c);
}

static void scall_finish(scall *c, int32_t status, const char *message)
{
    if (c->st == NULL || c->finished)
        return;
    c->finished = 1;
    if (!c->streaming || status != 0) /* a stream's answers were counted one by one */
        sdp_i_count(c->s, "grpc", status);
    sd2_grpc_finish(c->st, status, message, NULL, 0);
}

static void maybe_consume(scall *c)
{
    if (c->st == NULL || c->unconsumed == 0 || c->refs - 1 >= STREAM_PENDING_MAX ||
        sd2_queued(c->st) >= STREAM_QUEUE_MAX)
        return;
    sd2_consume(c->st, c->unconsumed);
    c->unconsumed = 0;
}

void sdp_grpc_prefix(uint8_t pre[SDP_GRPC_PREFIX], size_t n)
{
    pre[0] = 0;
    pre[1] = (uint8_t)(n >> 24);
    pre[2] = (uint8_t)(n >> 16);
    pre[3] = (uint8_t)(n >> 8);
    pre[4] = (uint8_t)n;
}

static int32_t grpc_in_add(sdp_grpc_in *g, const uint8_t *data, size_t len, const char **why)
{
    if (g->in.len + len > g->max + SDP_GRPC_PREFIX) {
        *why = "request message larger than --max-body";
        return 8;
    }
    if (len > 0 && seldon_buf_reserve(&g->in, len) != 0) {
        *why = "out of memory";
        return 8;
    }
    if (len > 0)
        memcpy(g->in.data + g->in.len, data, len);
    g->in.len += len;
    return 0;
}

int32_t sdp_grpc_in_drain(sdp_grpc_in *g, sdp_grpc_msg_fn one, void *user_data, const char **why)
{
    size_t off = 0;
    while (g->in.len - off >= SDP_GRPC_PREFIX) {
        const uint8_t *b = g->in.data + off;
        size_t n = ((size_t)b[1] << 24) | ((size_t)b[2] << 16) | ((size_t)b[3] << 8) | b[4];
        if (b[0] != 0) {
            *why = "compressed messages are not supported";
            return 12;
        }
        if (n > g->max) {
            *why = "request message larger than --max-body";
            return 8;
        }
        if (g->in.len - off - SDP_GRPC_PREFIX < n)
            break;
        if (!g->streaming && off > 0) {
            *why = "a unary call takes one request message";
            return 12;
        }
        if (one(user_data, &g->in, off + SDP_GRPC_PREFIX, n) != 0)
            return -1;
        off += SDP_GRPC_PREFIX + n;
    }
    if (off > 0) {
        memmove(g->in.data, g->in.data + off, g->in.len - off);
        g->in.len -= off;
    }
    return 0;
}

int32_t sdp_grpc_in_data(sdp_grpc_in *g, const uint8_t *data, size_t len, sdp_grpc_msg_fn one,
                         void *user_data, const char **why)
{
    int32_t rc = grpc_in_add(g, data, len, why);
    if (rc == 0 && g->streaming)
        rc = sdp_grpc_in_drain(g, one, user_data, why);
    return rc;
}

int32_t sdp_grpc_in_end(sdp_grpc_in *g, sdp_grpc_msg_fn one, void *user_data, const char **why)
{
    int32_t rc;
    if (!g->streaming) {
        if (g->in.len == 0) {
            *why = "the call carried no request message";
            return 13;
        }
        rc = sdp_grpc_in_drain(g, one, user_data, why);
        if (rc != 0)
            return rc;
    }
    if (g->in.len > 0) {
        *why = "the request ended inside a message";
        return 13;
    }
    return 0;
}

static size_t varint(uint8_t *out, size_t n)
{
    size_t k = 0;
    do {
        out[k++] = (uint8_t)((n & 0x7f) | (n > 0x7f ? 0x80 : 0));
        n >>= 7;
    } while (n);
    return k;
}

/* One answer of the call: body (a ModelInferResponse) or an error. */
void sdp_i_scall_answer(scall *c, plw *w, int32_t status, const char *message, seldon_buf *body)
{
    uint8_t pre[GRPC_HDR + 11];
    size_t k;
    if (c->st != NULL && !c->finished) {
        if (!c->streaming && status != 0) {
            scall_finish(c, status, message);
        } else {
            if (!c->headers) {
                sd2_header h[SDP_MAX_XHEADERS + 1];
                size_t n = 0, i;
                for (i = 0; w != NULL && i < w->nxh && n < SDP_MAX_XHEADERS; i++)
                    h[n++] = (sd2_header){w->xh[i].name, w->xh[i].name_len, w->xh[i].value,
                                          w->xh[i].value_len};
                c->headers = 1;
                sd2_grpc_send_headers(c->st, h, n);
            }
            if (!c->streaming) {
                sdp_grpc_prefix(pre, body->len);
                sd2_write(c->st, pre, GRPC_HDR);
                sd2_write(c->st, body->data, body->len);
                scall_finish(c, 0, NULL);
            } else if (status != 0) {
                /* ModelStreamInferResponse { error_message = 1 } */
                size_t ml = strlen(message != NULL ? message : "failed");
                k = varint(pre + GRPC_HDR + 1, ml);
                sdp_grpc_prefix(pre, 1 + k + ml);
                pre[GRPC_HDR] = 0x0a;
                sd2_write(c->st, pre, GRPC_HDR + 1 + k);
                sd2_write(c->st, message != NULL ? message : "failed", ml);
                sdp_i_count(c->s, "grpc", status);
            } else {
                /* ModelStreamInferResponse { infer_response = 2 } */
                k = varint(pre + GRPC_HDR + 1, body->len);
                sdp_grpc_prefix(pre, 1 + k + body->len);
                pre[GRPC_HDR] = 0x12;
                sd2_write(c->st, pre, GRPC_HDR + 1 + k);
                sd2_write(c->st, body->data, body->len);
                sdp_i_count(c->s, "grpc", 0);
            }
        }
    }
    if (c->streaming && c->ended && c->refs == 2)
        scall_finish(c, 0, NULL);
    c->refs--;
    if (c->streaming)
        maybe_consume(c);
    c->refs++;
    sdp_i_scall_unref(c);
}

int64_t sdp_grpc_timeout_ms(const char *v, size_t len)
{
    int64_t x;
    if (len < 2)
        return 0;
    x = sdp_i_parse_ms(v, len - 1);
    if (x < 0)
        return 0;
    switch (v[len - 1]) {
    case 'H':
        return x * 3600000;
    case 'M':
        return x * 60000;
    case 'S':
        return x * 1000;
    case 'm':
        return x > 0 ? x : 1;
    case 'u':
        return x / 1000 > 0 ? x / 1000 : 1;
    case 'n':
        return x / 1000000 > 0 ? x / 1000000 : 1;
    default:
        return 0;
    }
}

int sdp_grpc(sdp *s, void *ctx, const char *name, size_t name_len, const uint8_t *data, size_t len,
             int64_t timeout_ms, const sdp_header *metadata, size_t nmetadata)
{
    return sdp_grpc_routed(s, ctx, name, name_len, data, len, timeout_ms, metadata, nmetadata,
                           NULL);
}

int sdp_grpc_routed(sdp *s, void *ctx, const char *name, size_t name_len, const uint8_t *data,
                    size_t len, int64_t timeout_ms, const sdp_header *metadata, size_t nmetadata,
                    const sdp_route *route)
{
    const seldon_pipeline *pl = sdp_i_find_pipeline(s, name, name_len);
    sdp_loop *p = sdp_i_cur(s);
    seldon_msg *in;
    plreq q;
    plw *w;
    int rc;
    if (pl == NULL)
        return sdd_error(SELDON_ENOTFOUND, "pipeline \"%.*s\" not found",
                         (int)(name_len > 200 ? 200 : name_len), name);
    if (p == NULL)
        return sdd_error(SELDON_EINTERNAL, "not on an ingress loop");
    in = seldon_pipeline_engine_msg(p->eng, SELDON_MSG_REQUEST);
    if (in == NULL)
        return sdd_error(SELDON_ENOMEM, "out of memory");
    rc = seldon_msg_decode_pb(in, data, len, 0);
    if (rc != 0) {
        seldon_msg_free(in);
        return rc;
    }
    w = sdp_i_waiter_new();
    if (w == NULL) {
        seldon_msg_free(in);
        return sdd_error(SELDON_ENOMEM, "out of memory");
    }
    w->kind = W_GRPC;
    w->ctx = ctx;
    memset(&q, 0, sizeof(q));
    q.pipeline = name;
    q.pipeline_len = name_len;
    q.pl = pl;
    q.timeout_ms = timeout_ms;
    q.headers = metadata;
    q.nheaders = nmetadata;
    q.tag = route != NULL && route->tag;
    rc = sdp_i_start(s, w, &q, in);
    if (rc == 0) /* the copy after the caller's request, as seldon-router sends it */
        sdp_i_mirror_bytes(s, &q, route, data, len, 0, 0);
    return rc;
}

/* One whole request message of an own stream. */
static void stream_dispatch(scall *c, const uint8_t *data, size_t len)
{
    sdp *s = c->s;
    sdp_loop *p = sdp_i_cur(s);
    const seldon_pipeline *pl;
    sdp_header xs[SDP_MAX_XHEADERS];
    seldon_msg *in;
    plreq q;
    plw *w;
    size_t i;
    int rc;
    int32_t gs;
    if (p == NULL) {
        scall_finish(c, 13, "not on an ingress loop");
        return;
    }
    pl = sdp_i_find_pipeline(s, c->pipeline, strlen(c->pipeline));
    if (pl == NULL) {
        char msg[300];
        snprintf(msg, sizeof(msg), "pipeline \"%s\" not found", c->pipeline);
        scall_finish(c, 5, msg);
        return;
    }
    in = seldon_pipeline_engine_msg(p->eng, SELDON_MSG_REQUEST);
    w = sdp_i_waiter_new();
    if (in == NULL || w == NULL) {
        seldon_msg_free(in);
        sdd_free(w);
        scall_finish(c, 8, "out of memory");
        return;
    }
    rc = seldon_msg_decode_pb(in, data, len, 0);
    if (rc != 0) {
        seldon_msg_free(in);
        sdd_free(w);
        scall_finish(c, 3, seldon_last_error());
        return;
    }
    memset(&q, 0, sizeof(q));
    q.pipeline = c->pipeline;
    q.pipeline_len = strlen(c->pipeline);
    q.pl = pl;
    q.timeout_ms = c->timeout_ms;
    q.headers = xs;
    /*
     * The request's x-request-id: a stream's requests each have their own, the message's id
     * when it has one (answers are matched by it); else the call's (the first request of a
     * stream), else a new one.
     */
    {
        size_t idl = 0;
        const char *id = c->streaming ? seldon_msg_id(in, &idl) : NULL;
        for (i = 0; i < c->nmeta; i++) {
            int rid = name_is(c->meta[i].name, c->meta[i].name_len, "x-request-id");
            if (rid && (idl > 0 || (c->streaming && c->nreq > 0)))
                continue;
            xs[q.nheaders++] = (sdp_header){c->meta[i].name, c->meta[i].name_len, c->meta[i].value,
                                            c->meta[i].value_len};
        }
        if (id != NULL && idl > 0 && q.nheaders < SDP_MAX_XHEADERS)
            xs[q.nheaders++] = (sdp_header){"x-request-id", 12, id, idl};
    }
    c->nreq++;
    q.tag = c->tag;
    w->kind = W_STREAM;
    w->sc = c;
    c->refs++;
    rc = sdp_i_start(s, w, &q, in);
    if (rc != 0) {
        seldon_router_status(NULL, &gs, rc);
        c->refs--;
        scall_finish(c, gs, seldon_last_error());
    } else if (c->mirror[0] != '\0') { /* the copy after the caller's request (c is held) */
        sdp_route mr;
        memset(&mr, 0, sizeof(mr));
        mr.mirror = c->mirror;
        mr.mirror_len = strlen(c->mirror);
        sdp_i_mirror_bytes(s, &q, &mr, data, len, 0, 0);
    }
}

/* sdp_grpc_in's hand-over: one whole request message of the call. */
static int stream_one(void *user_data, seldon_buf *b, size_t off, size_t len)
{
    scall *c = user_data;
    c->refs++; /* the dispatch may answer at once */
    stream_dispatch(c, b->data + off, len);
    if (c->st == NULL || c->finished) {
        sdp_i_scall_unref(c);
        return -1;
    }
    c->refs--;
    return 0;
}

static void sg_data(sd2_stream *st, void *user_data, const uint8_t *data, size_t len)
{
    scall *c = user_data;
    const char *why = NULL;
    int32_t rc;
    if (c->streaming && !c->finished)
        c->unconsumed += len;
    else
        sd2_consume(st, len);
    if (c->finished)
        return;
    rc = sdp_grpc_in_data(&c->in, data, len, stream_one, c, &why);
    if (rc > 0)
        scall_finish(c, rc, why);
    else if (rc == 0 && c->streaming)
        maybe_consume(c);
}

static void sg_end(sd2_stream *st, void *user_data, const sd2_header *trailers, size_t n)
{
    scall *c = user_data;
    const char *why = NULL;
    int32_t rc;
    (void)st;
    (void)trailers;
    (void)n;
    c->ended = 1;
    if (c->finished)
        return;
    rc = sdp_grpc_in_end(&c->in, stream_one, c, &why);
    if (rc > 0)
        scall_finish(c, rc, why);
    else if (rc == 0 && c->streaming && c->refs == 1)
        scall_finish(c, 0, NULL);
}

static void sg_close(sd2_stream *st, void *user_data, int err, uint32_t h2_code)
{
    scall *c = user_data;
    (void)st;
    (void)err;
    (void)h2_code;
    c->st = NULL;
    sdp_i_scall_unref(c);
}

static void sg_drain(sd2_stream *st, void *user_data)
{
    (void)st;
    maybe_consume(user_data);
}

static const sd2_stream_cbs sg_cbs = {NULL, sg_data, sg_end, sg_drain, sg_close};

void sdp_grpc_stream(sdp *s, sd2_stream *st, const sd2_header *h, size_t n, int end,
                     const char *name, size_t name_len)
{
    sdp_grpc_stream_routed(s, st, h, n, end, name, name_len, NULL);
}

void sdp_grpc_stream_routed(sdp *s, sd2_stream *st, const sd2_header *h, size_t n, int end,
                            const char *name, size_t name_len, const sdp_route *route)
{
    const sd2_header *path = NULL, *tm = NULL, *stm = NULL;
    scall *c;
    size_t i, nx;
    int streaming;
    for (i = 0; i < n; i++) { /* as sd2_header_find() for each, in one pass */
        if (path == NULL && h[i].name_len == 5 && memcmp(h[i].name, ":path", 5) == 0)
            path = &h[i];
        else if (tm == NULL && h[i].name_len == 12 && memcmp(h[i].name, "grpc-timeout", 12) == 0)
            tm = &h[i];
        else if (stm == NULL && h[i].name_len == 17 &&
                 memcmp(h[i].name, "seldon-timeout-ms", 17) == 0)
            stm = &h[i];
    }
    if (path != NULL && path->value_len == 42 &&
        memcmp(path->value, "/inference.GRPCInferenceService/ModelInfer", 42) == 0) {
        streaming = 0;
    } else if (path != NULL && path->value_len == 48 &&
               memcmp(path->value, "/inference.GRPCInferenceService/ModelStreamInfer", 48) == 0) {
        streaming = 1;
    } else if (path != NULL && path->value_len == 42 &&
               memcmp(path->value, "/inference.GRPCInferenceService/ModelReady", 42) == 0) {
        /* ModelReadyResponse { ready = 1 }, as GET /v2/pipelines/<p>/ready */
        const seldon_pipeline *pl = sdp_i_find_pipeline(s, name, name_len);
        uint8_t msg[GRPC_HDR + 2];
        char why[300];
        if (pl == NULL) {
            snprintf(why, sizeof(why), "pipeline \"%.*s\" not found",
                     (int)(name_len > 200 ? 200 : name_len), name);
            sdp_i_count(s, "grpc", 5);
            sd2_grpc_finish(st, 5, why, NULL, 0);
            return;
        }
        sdp_grpc_prefix(msg, 2);
        msg[GRPC_HDR] = 0x08;
        msg[GRPC_HDR + 1] = (uint8_t)(sdp_i_pipeline_ready(s, pl, 0) ? 1 : 0);
        sd2_grpc_send_headers(st, NULL, 0);
        sd2_write(st, msg, sizeof(msg));
        sdp_i_count(s, "grpc", 0);
        sd2_grpc_finish(st, 0, NULL, NULL, 0);
        return;
    } else {
        sdp_i_count(s, "grpc", 12);
        sd2_grpc_finish(st, 12, "pipelines answer ModelInfer, ModelStreamInfer and ModelReady",
                        NULL, 0);
        return;
    }
    if (name_len > SELDON_ROUTES_NAME_MAX || (c = sdd_calloc(1, sizeof(*c))) == NULL) {
        sd2_grpc_finish(st, name_len > SELDON_ROUTES_NAME_MAX ? 3 : 8,
                        name_len > SELDON_ROUTES_NAME_MAX ? "pipeline name too long"
                                                          : "out of memory",
                        NULL, 0);
        return;
    }
    c->s = s;
    c->st = st;
    c->streaming = streaming;
    c->in.streaming = streaming;
    c->in.max = s->cfg.max_body;
    c->refs = 1;
    memcpy(c->pipeline, name, name_len);
    if (route != NULL) {
        c->tag = route->tag;
        if (route->mirror != NULL && route->mirror_len > 0 &&
            route->mirror_len <= SELDON_ROUTES_NAME_MAX)
            memcpy(c->mirror, route->mirror, route->mirror_len);
    }
    if (tm != NULL)
        c->timeout_ms = sdp_grpc_timeout_ms(tm->value, tm->value_len);
    if (stm != NULL) { /* the header wins over the deadline, as for REST */
        int64_t v = sdp_i_parse_ms(stm->value, stm->value_len);
        if (v <= 0) {
            sdd_free(c);
            sdp_i_count(s, "grpc", 3);
            sd2_grpc_finish(st, 3, "seldon-timeout-ms: expected a positive number of milliseconds",
                            NULL, 0);
            return;
        }
        c->timeout_ms = v;
    }
    for (i = 0, nx = 0; i < n && nx < SDP_MAX_XHEADERS; i++)
        nx += is_x(h[i].name, h[i].name_len) ? 1 : 0;
    c->meta = nx > 0 ? sdd_calloc(nx, sizeof(*c->meta)) : NULL; /* as for w->xh in sdp_i_start() */
    for (i = 0; c->meta != NULL && i < n && c->nmeta < nx; i++)
        if (is_x(h[i].name, h[i].name_len) &&
            oh_set(&c->meta[c->nmeta], h[i].name, h[i].name_len, h[i].value, h[i].value_len) == 0)
            c->nmeta++;
    sd2_stream_bind(st, &sg_cbs, c);
    if (end)
        sg_end(st, c, NULL, 0);
}
