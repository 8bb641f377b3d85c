/*
 * Step calls through seldon-router: each is a gRPC ModelInfer on the loop's h2c
 * connection pool to --router, with seldon-model naming the step's model and the
 * request's x-* headers as metadata; the model's x-* answer metadata (headers and
 * trailers) comes back with its answer. Tensor data goes as protobuf: raw contents
 * pass through untouched.
 *
 * And the asynchronous results another gateway keeps: a GET for an id not kept
 * here is asked of the other gateways in turn (GW_PEER_HEADER set, so that they do
 * not ask further), and the first answer that is not a 404 is returned as is.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw.h"
#include "sdd.h"

#define STEP_PATH "/inference.GRPCInferenceService/ModelInfer"
#define MAX_ANSWER_HEADERS SDP_MAX_XHEADERS

typedef struct stepc {
    gw *g;
    sdp_call *c;
    sd2_stream *s;
    seldon_buf in;
    seldon_buf hbuf; /* answer header names and values */
    size_t hoff[MAX_ANSWER_HEADERS][4];
    size_t nh;
    int32_t grpc_status; /* -1 until known */
    char message[512];
} stepc;

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

/* grpc-message is percent-encoded. */
static void set_message(stepc *sc, const char *v, size_t len)
{
    size_t i, k = 0;
    for (i = 0; i < len && k + 1 < sizeof(sc->message); i++) {
        if (v[i] == '%' && i + 2 < len && hexval(v[i + 1]) >= 0 && hexval(v[i + 2]) >= 0) {
            sc->message[k++] = (char)(hexval(v[i + 1]) * 16 + hexval(v[i + 2]));
            i += 2;
        } else {
            sc->message[k++] = v[i];
        }
    }
    sc->message[k] = '\0';
}

static void take_headers(stepc *sc, const sd2_header *h, size_t n)
{
    const sd2_header *st = sd2_header_find(h, n, "grpc-status");
    const sd2_header *msg = sd2_header_find(h, n, "grpc-message");
    size_t i;
    if (st != NULL) {
        long v = 0;
        char num[12];
        snprintf(num, sizeof(num), "%.*s", (int)(st->value_len > 10 ? 10 : st->value_len),
                 st->value);
        sc->grpc_status = sdd_parse_long(num, 0, 1000, &v) == 0 ? (int32_t)v : 2;
    }
    if (msg != NULL)
        set_message(sc, msg->value, msg->value_len);
    for (i = 0; i < n && sc->nh < MAX_ANSWER_HEADERS; i++) {
        if (h[i].name_len < 3 || h[i].name[0] != 'x' || h[i].name[1] != '-')
            continue;
        sc->hoff[sc->nh][0] = sc->hbuf.len;
        sc->hoff[sc->nh][1] = h[i].name_len;
        if (seldon_buf_reserve(&sc->hbuf, h[i].name_len + h[i].value_len) != 0)
            return;
        memcpy(sc->hbuf.data + sc->hbuf.len, h[i].name, h[i].name_len);
        sc->hbuf.len += h[i].name_len;
        sc->hoff[sc->nh][2] = sc->hbuf.len;
        sc->hoff[sc->nh][3] = h[i].value_len;
        memcpy(sc->hbuf.data + sc->hbuf.len, h[i].value, h[i].value_len);
        sc->hbuf.len += h[i].value_len;
        sc->nh++;
    }
}

static void on_headers(sd2_stream *s, void *user_data, const sd2_header *h, size_t n, int end)
{
    stepc *sc = user_data;
    const sd2_header *st = sd2_header_find(h, n, ":status");
    (void)end;
    if (st == NULL || st->value_len != 3 || memcmp(st->value, "200", 3) != 0) {
        snprintf(sc->message, sizeof(sc->message), "the router answered HTTP %.*s",
                 st != NULL ? (int)(st->value_len > 8 ? 8 : st->value_len) : 1,
                 st != NULL ? st->value : "?");
        sc->grpc_status = 14;
        sd2_reset(s, SD2_H2_CANCEL);
        return;
    }
    take_headers(sc, h, n);
}

static void on_data(sd2_stream *s, void *user_data, const uint8_t *data, size_t len)
{
    stepc *sc = user_data;
    sd2_consume(s, len);
    if (sc->in.len + len > sc->g->cfg.max_body + 5) {
        snprintf(sc->message, sizeof(sc->message), "the model's answer is larger than --max-body");
        sc->grpc_status = 8;
        sd2_reset(s, SD2_H2_CANCEL);
        return;
    }
    if (seldon_buf_reserve(&sc->in, len) != 0) {
        sc->grpc_status = 8;
        snprintf(sc->message, sizeof(sc->message), "out of memory");
        sd2_reset(s, SD2_H2_CANCEL);
        return;
    }
    memcpy(sc->in.data + sc->in.len, data, len);
    sc->in.len += len;
}

static void on_end(sd2_stream *s, void *user_data, const sd2_header *trailers, size_t n)
{
    (void)s;
    take_headers(user_data, trailers, n);
}

static void on_close(sd2_stream *s, void *user_data, int err, uint32_t h2_code)
{
    stepc *sc = user_data;
    sdp_header hs[MAX_ANSWER_HEADERS];
    size_t i, mlen;
    int rc;
    (void)s;
    (void)h2_code;
    for (i = 0; i < sc->nh; i++)
        hs[i] = (sdp_header){(const char *)sc->hbuf.data + sc->hoff[i][0], sc->hoff[i][1],
                             (const char *)sc->hbuf.data + sc->hoff[i][2], sc->hoff[i][3]};
    if (sc->grpc_status == 0 && err == SD2_OK) {
        if (sc->in.len < 5 || sc->in.data[0] != 0 ||
            (mlen = ((size_t)sc->in.data[1] << 24) | ((size_t)sc->in.data[2] << 16) |
                    ((size_t)sc->in.data[3] << 8) | sc->in.data[4]) != sc->in.len - 5) {
            gw_count_step(sc->g, 13);
            sdp_call_done(sc->c, SELDON_EPARSE, "the model's answer is not one gRPC message", NULL,
                          0);
        } else {
            rc = seldon_msg_decode_pb(sdp_call_response(sc->c), sc->in.data + 5, mlen, 0);
            gw_count_step(sc->g, rc == 0 ? 0 : 13);
            if (rc == 0)
                sdp_call_done(sc->c, 0, NULL, hs, sc->nh);
            else
                sdp_call_done(sc->c, rc, seldon_last_error(), NULL, 0);
        }
    } else {
        if (sc->grpc_status <= 0)
            sc->grpc_status = err == SD2_ETIMEOUT ? 4 : 14;
        if (sc->message[0] == '\0')
            snprintf(sc->message, sizeof(sc->message), "%s",
                     err != SD2_OK ? sd2_strerror(err) : "failed");
        gw_count_step(sc->g, sc->grpc_status);
        sdp_call_done(sc->c,
                      sc->grpc_status == 4    ? SELDON_ETIMEDOUT
                      : sc->grpc_status == 5  ? SELDON_ENOTFOUND
                      : sc->grpc_status == 14 ? SELDON_EUNAVAIL
                                              : SELDON_EINVAL,
                      sc->message, NULL, 0);
    }
    seldon_buf_free(&sc->in);
    seldon_buf_free(&sc->hbuf);
    sdd_free(sc);
}

static void on_drain(sd2_stream *s, void *user_data)
{
    (void)s;
    (void)user_data;
}

static const sd2_stream_cbs step_cbs = {on_headers, on_data, on_end, on_drain, on_close};

int gw_step_call(void *user_data, sdp_call *c)
{
    gw *g = user_data;
    gw_loop *L = gw_current();
    const char *model = sdp_call_model(c);
    const sdp_header *xs = NULL;
    size_t nx = sdp_call_headers(c, &xs), n = 0, i;
    sd2_header h[8 + SDP_MAX_XHEADERS];
    seldon_buf body = SELDON_BUF_INIT;
    int64_t deadline = sdp_call_deadline(c), left_ms = 0;
    char tmo[24];
    stepc *sc;
    int rc;

    if (L == NULL || L->up == NULL)
        return sdd_error(SELDON_EINTERNAL, "not on an ingress loop");
    if (deadline > 0) {
        left_ms = (deadline - gw_now_ns() + 999999) / 1000000;
        if (left_ms < 1)
            left_ms = 1;
    }
    sc = sdd_calloc(1, sizeof(*sc));
    if (sc == NULL)
        return sdd_error(SELDON_ENOMEM, "out of memory");
    sc->g = g;
    sc->c = c;
    sc->grpc_status = -1;
    if (seldon_buf_reserve(&body, 5) != 0) {
        sdd_free(sc);
        return sdd_error(SELDON_ENOMEM, "out of memory");
    }
    body.len = 5;
    rc = seldon_msg_encode_pb(&body, sdp_call_msg(c), 0);
    if (rc != 0) {
        seldon_buf_free(&body);
        sdd_free(sc);
        return rc;
    }
    body.data[0] = 0;
    body.data[1] = (uint8_t)((body.len - 5) >> 24);
    body.data[2] = (uint8_t)((body.len - 5) >> 16);
    body.data[3] = (uint8_t)((body.len - 5) >> 8);
    body.data[4] = (uint8_t)(body.len - 5);
    h[n++] = (sd2_header){":method", 7, "POST", 4};
    h[n++] = (sd2_header){":scheme", 7, "http", 4};
    h[n++] = (sd2_header){":path", 5, STEP_PATH, sizeof(STEP_PATH) - 1};
    h[n++] = (sd2_header){":authority", 10, g->router_authority, strlen(g->router_authority)};
    h[n++] = (sd2_header){"content-type", 12, "application/grpc", 16};
    h[n++] = (sd2_header){"te", 2, "trailers", 8};
    h[n++] = (sd2_header){"seldon-model", 12, model, strlen(model)};
    if (left_ms > 0) {
        /* A margin past the request's own deadline: the engine's timer ends it first, as a
           timeout of the pipeline rather than an error of this step. */
        snprintf(tmo, sizeof(tmo), "%lldm", (long long)left_ms + 200);
        h[n++] = (sd2_header){"grpc-timeout", 12, tmo, strlen(tmo)};
    }
    for (i = 0; i < nx && n < sizeof(h) / sizeof(h[0]); i++)
        h[n++] = (sd2_header){xs[i].name, xs[i].name_len, xs[i].value, xs[i].value_len};
    rc = sd2_request(&sc->s, L->up, h, n, 0, &step_cbs, sc,
                     left_ms > 0 ? (uint64_t)left_ms + 1000 : 0);
    if (rc != 0) {
        seldon_buf_free(&body);
        sdd_free(sc);
        return sdd_error(SELDON_EUNAVAIL, "the router %s: %s", g->router_authority,
                         sd2_strerror(rc));
    }
    sd2_write(sc->s, body.data, body.len);
    sd2_end(sc->s, NULL, 0);
    seldon_buf_free(&body);
    return 0;
}

/* ------------------------------------------------------ results of other gateways */

typedef struct gw_peer_pool {
    struct gw_peer_pool *next;
    sdc_pool *pool;
    char addr[64];
} gw_peer_pool;

typedef struct peerq {
    gw *g;
    sdh_req *req;
    char path[600];
    char peers[GW_MAX_PEERS][64];
    size_t npeers, next;
    int status;
    int truncated;
    char ctype[64];
    seldon_buf body;
} peerq;

static sdc_pool *peer_pool(gw_loop *L, const char *addr)
{
    gw_peer_pool *p;
    sdc_pool_options o = SDC_POOL_OPTIONS_INIT;
    for (p = L->peers; p != NULL; p = p->next)
        if (strcmp(p->addr, addr) == 0)
            return p->pool;
    p = sdd_calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    snprintf(p->addr, sizeof(p->addr), "%s", addr);
    o.max_connections = 4;
    o.max_idle = 4;
    o.request_timeout_ms = 5000;
    if (sdc_pool_new(&p->pool, L->loop, addr, &o) != 0) {
        sdd_free(p);
        return NULL;
    }
    p->next = L->peers;
    L->peers = p;
    return p->pool;
}

void gw_peers_close(gw_loop *L)
{
    gw_peer_pool *p, *next;
    for (p = L->peers; p != NULL; p = next) {
        next = p->next;
        sdc_pool_free(p->pool, NULL, NULL);
        sdd_free(p);
    }
    L->peers = NULL;
}

static void ask_next(peerq *q);

static void peer_head(sdc_request *r, int status, const sdh_header *h, size_t n, void *ud)
{
    peerq *q = ud;
    size_t i;
    (void)r;
    q->status = status;
    q->truncated = 0;
    q->ctype[0] = '\0';
    q->body.len = 0;
    for (i = 0; i < n; i++)
        if (sdh_name_eq(h[i].name, h[i].name_len, "content-type"))
            snprintf(q->ctype, sizeof(q->ctype), "%.*s",
                     (int)(h[i].value_len > 60 ? 60 : h[i].value_len), h[i].value);
}

static void peer_body(sdc_request *r, const char *data, size_t len, void *ud)
{
    peerq *q = ud;
    (void)r;
    if (q->truncated)
        return;
    if (q->body.len + len > q->g->cfg.max_body || seldon_buf_reserve(&q->body, len) != 0) {
        q->truncated = 1; /* answered 502 once done, rather than cut short */
        return;
    }
    memcpy(q->body.data + q->body.len, data, len);
    q->body.len += len;
}

static void peer_done(sdc_request *r, int result, void *ud)
{
    peerq *q = ud;
    (void)r;
    if (result == 0 && q->truncated) {
        gw_count(q->g, "rest", 502);
        sdh_respond_error(q->req, 502,
                          "the result kept by another gateway is larger than --max-body");
        seldon_buf_free(&q->body);
        sdd_free(q);
        return;
    }
    if (result == 0 && q->status != 404) {
        sdh_header h = {"content-type", 12, q->ctype, strlen(q->ctype)};
        gw_count(q->g, "rest", q->status);
        sdh_respond(q->req, q->status, &h, q->ctype[0] ? 1 : 0, &q->body);
        seldon_buf_free(&q->body);
        sdd_free(q);
        return;
    }
    ask_next(q);
}

static const sdc_callbacks peer_cbs = {peer_head, peer_body, NULL, peer_done};

static void ask_next(peerq *q)
{
    gw_loop *L = gw_current();
    while (L != NULL && !L->closing && q->next < q->npeers) {
        const char *addr = q->peers[q->next++];
        sdh_header h = {GW_PEER_HEADER, sizeof(GW_PEER_HEADER) - 1, "1", 1};
        sdh_request_head head;
        sdc_request *r = NULL;
        sdc_pool *pool = peer_pool(L, addr);
        if (pool == NULL)
            continue;
        memset(&head, 0, sizeof(head));
        head.method = "GET";
        head.method_len = 3;
        head.target = q->path;
        head.target_len = strlen(q->path);
        head.headers = &h;
        head.n_headers = 1;
        head.host = addr;
        head.host_len = strlen(addr);
        head.content_length = SDH_BODY_NONE;
        if (sdc_request_start(&r, pool, &head, &peer_cbs, q) == 0)
            return;
    }
    gw_count(q->g, "rest", 404);
    sdh_respond_error(q->req, 404,
                      q->path[0] ? "request not found or expired on any gateway"
                                 : "request not found");
    seldon_buf_free(&q->body);
    sdd_free(q);
}

int gw_async_miss(void *user_data, sdh_req *req, const sdh_request *r, const char *pipeline,
                  const char *id, size_t id_len)
{
    gw *g = user_data;
    size_t i, hl = 0;
    peerq *q;
    if (sdh_request_header(r, GW_PEER_HEADER, &hl) != NULL || gw_current() == NULL)
        return 0; /* another gateway asks: only what is kept here counts */
    q = sdd_calloc(1, sizeof(*q));
    if (q == NULL)
        return 0;
    q->g = g;
    q->req = req;
    snprintf(q->path, sizeof(q->path), "/v2/pipelines/%.200s/requests/%.*s", pipeline,
             (int)(id_len > 300 ? 300 : id_len), id);
    pthread_mutex_lock(&g->peers_mu);
    for (i = 0; i < g->npeers; i++)
        if (strcmp(g->peers[i], g->advertise) != 0)
            snprintf(q->peers[q->npeers++], sizeof(q->peers[0]), "%s", g->peers[i]);
    pthread_mutex_unlock(&g->peers_mu);
    if (q->npeers == 0) {
        sdd_free(q);
        return 0;
    }
    ask_next(q);
    return 1;
}
