/*
 * Which models to serve, from the scheduler: RouteService.Subscribe, as
 * seldon-router subscribes (a stream of RouteTable messages, the whole table
 * each time). Every table's route names become the models whose inputs topics
 * the gateway consumes. A stream that fails or ends is tried again after a
 * second; the models in force stay meanwhile.
 */
#include <stdio.h>
#include <string.h>

#include "mg.h"
#include "sdd.h"
#include "seldon_control.pb-c.h"

#define SUB_PATH "/seldon.control.v1.RouteService/Subscribe"
#define SUB_MSG_MAX (64u << 20)
#define RETRY_MS 1000

struct mg_sub {
    mg *g;
    sd2_client *h2c;
    sd2_upstream *up;
    sd2_stream *s;
    uv_timer_t timer;
    char authority[300];
    seldon_buf in;
    int closing;
    int down_logged;
    int handles; /* timer and client, while closing */
};

static void attempt(mg_sub *sub);

static void *pb_alloc(void *data, size_t size)
{
    (void)data;
    return sdd_malloc(size);
}

static void pb_free(void *data, void *p)
{
    (void)data;
    sdd_free(p);
}

static ProtobufCAllocator pb_allocator = {pb_alloc, pb_free, NULL};

static void on_table(mg_sub *sub, const uint8_t *data, size_t len)
{
    Seldon__Control__V1__RouteTable *m =
        seldon__control__v1__route_table__unpack(&pb_allocator, len, data);
    const char **names;
    size_t i;
    if (m == NULL) {
        sdd_log(SELDON_LOG_ERROR, "scheduler %s: a message of %zu bytes is not a RouteTable",
                sub->authority, len);
        return;
    }
    names = sdd_calloc(m->n_routes ? m->n_routes : 1, sizeof(char *));
    if (names != NULL) {
        for (i = 0; i < m->n_routes; i++)
            names[i] = m->routes[i]->name;
        sdd_log(SELDON_LOG_INFO, "scheduler %s: route table generation %llu: %zu route(s)",
                sub->authority, (unsigned long long)m->generation, m->n_routes);
        mg_route_models(sub->g, names, m->n_routes);
        sdd_free(names);
    }
    seldon__control__v1__route_table__free_unpacked(m, &pb_allocator);
}

static void retry_due(uv_timer_t *t)
{
    attempt(t->data);
}

static void down(mg_sub *sub, const char *why)
{
    sub->s = NULL;
    sub->in.len = 0;
    if (sub->closing)
        return;
    if (!sub->down_logged)
        sdd_log(SELDON_LOG_WARN, "scheduler %s: %s: keeping the models in force, retrying",
                sub->authority, why);
    sub->down_logged = 1;
    uv_timer_start(&sub->timer, retry_due, RETRY_MS, 0);
}

static void on_headers(sd2_stream *s, void *user_data, const sd2_header *h, size_t n, int end)
{
    mg_sub *sub = user_data;
    const sd2_header *st = sd2_header_find(h, n, ":status");
    if (st == NULL || st->value_len != 3 || memcmp(st->value, "200", 3) != 0 || end) {
        sd2_reset(s, SD2_H2_CANCEL);
        return;
    }
    if (sub->down_logged)
        sdd_log(SELDON_LOG_INFO, "scheduler %s: subscribed again", sub->authority);
    sub->down_logged = 0;
}

static void on_data(sd2_stream *s, void *user_data, const uint8_t *data, size_t len)
{
    mg_sub *sub = user_data;
    size_t at = 0;
    sd2_consume(s, len);
    if (len == 0)
        return;
    if (seldon_buf_reserve(&sub->in, len) != 0) {
        sd2_reset(s, SD2_H2_CANCEL);
        return;
    }
    memcpy(sub->in.data + sub->in.len, data, len);
    sub->in.len += len;
    while (sub->in.len - at >= 5) {
        const uint8_t *p = sub->in.data + at;
        uint32_t mlen = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
        if (p[0] != 0 || mlen > SUB_MSG_MAX) {
            sd2_reset(s, SD2_H2_CANCEL);
            return;
        }
        if (sub->in.len - at - 5 < mlen)
            break;
        on_table(sub, p + 5, mlen);
        at += 5 + (size_t)mlen;
    }
    if (at > 0) {
        memmove(sub->in.data, sub->in.data + at, sub->in.len - at);
        sub->in.len -= at;
    }
}

static void on_end(sd2_stream *s, void *user_data, const sd2_header *t, size_t n)
{
    (void)s;
    (void)user_data;
    (void)t;
    (void)n;
}

static void on_drain(sd2_stream *s, void *user_data)
{
    (void)s;
    (void)user_data;
}

static void on_close(sd2_stream *s, void *user_data, int err, uint32_t h2_code)
{
    mg_sub *sub = user_data;
    (void)s;
    (void)h2_code;
    down(sub, err == SD2_OK ? "the subscription ended" : sd2_strerror(err));
}

static const sd2_stream_cbs cbs = {on_headers, on_data, on_end, on_drain, on_close};

static void attempt(mg_sub *sub)
{
    Seldon__Control__V1__RouteSubscribeRequest req =
        SELDON__CONTROL__V1__ROUTE_SUBSCRIBE_REQUEST__INIT;
    uint8_t body[5 + 64];
    size_t len;
    const sd2_header h[] = {
        {":method", 7, "POST", 4},
        {":scheme", 7, "http", 4},
        {":path", 5, SUB_PATH, sizeof(SUB_PATH) - 1},
        {":authority", 10, sub->authority, strlen(sub->authority)},
        {"content-type", 12, "application/grpc", 16},
        {"te", 2, "trailers", 8},
        {"user-agent", 10, "seldon-modelgateway", 19},
    };
    if (sub->closing || sub->s != NULL)
        return;
    req.router = (char *)"seldon-modelgateway";
    len = seldon__control__v1__route_subscribe_request__get_packed_size(&req);
    seldon__control__v1__route_subscribe_request__pack(&req, body + 5);
    body[0] = 0;
    body[1] = (uint8_t)(len >> 24);
    body[2] = (uint8_t)(len >> 16);
    body[3] = (uint8_t)(len >> 8);
    body[4] = (uint8_t)len;
    if (sd2_request(&sub->s, sub->up, h, sizeof(h) / sizeof(h[0]), 0, &cbs, sub, 0) != 0) {
        down(sub, "cannot open a stream");
        return;
    }
    sd2_write(sub->s, body, 5 + len);
    sd2_end(sub->s, NULL, 0);
}

int mg_sub_new(mg_sub **out, mg *g, uv_loop_t *loop, const char *host, int port)
{
    mg_sub *sub = sdd_calloc(1, sizeof(*sub));
    sd2_opts o;
    *out = NULL;
    if (sub == NULL)
        return SELDON_ENOMEM;
    sub->g = g;
    snprintf(sub->authority, sizeof(sub->authority), strchr(host, ':') ? "[%s]:%d" : "%s:%d", host,
             port);
    memset(&o, 0, sizeof(o));
    o.max_conns_per_upstream = 1;
    o.connect_timeout_ms = 3000;
    if (sd2_client_new(&sub->h2c, loop, &o) != 0 ||
        sd2_upstream_get(&sub->up, sub->h2c, host, port) != 0) {
        if (sub->h2c != NULL)
            sd2_client_close(sub->h2c, NULL, NULL);
        sdd_free(sub);
        return sdd_error(SELDON_EINVAL, "scheduler %s:%d: cannot set up a client", host, port);
    }
    uv_timer_init(loop, &sub->timer);
    sub->timer.data = sub;
    *out = sub;
    return 0;
}

void mg_sub_start(mg_sub *sub)
{
    attempt(sub);
}

static void sub_release(mg_sub *sub)
{
    if (--sub->handles > 0)
        return;
    seldon_buf_free(&sub->in);
    sdd_free(sub);
}

static void timer_closed(uv_handle_t *h)
{
    sub_release(h->data);
}

static void client_closed(void *arg)
{
    sub_release(arg);
}

void mg_sub_close(mg_sub *sub)
{
    sub->closing = 1;
    sub->handles = 2;
    uv_close((uv_handle_t *)&sub->timer, timer_closed);
    sd2_client_close(sub->h2c, client_closed, sub);
}
