/*
 * The gateway's subscription to the scheduler: RouteService/SubscribePipelines
 * on --scheduler-host, one gRPC server stream over an h2c client of the control
 * loop. Every PipelineSet received goes to the engines (sdp_sync: new versions
 * compiled and added, the others removed) and names the other gateways, which
 * keep asynchronous results this one may be asked for.
 *
 * A subscription that cannot open, ends or fails is an outage: the pipelines in
 * force stay served, and the subscription is tried again after a backoff that
 * doubles up to --resubscribe-max. The stream being open is what makes the
 * scheduler list this gateway among the upstreams of the pipelines' routes.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gw.h"
#include "sdd.h"
#include "seldon_control.pb-c.h"

#define SUB_PATH "/seldon.control.v1.RouteService/SubscribePipelines"
#define SUB_MSG_MAX (64u << 20)
#define SUB_ANSWER_TIMEOUT_MS 10000
#define SUB_BACKOFF_MIN_MS 100

struct gw_sub {
    gw *g;
    uv_loop_t *loop;
    sd2_client *h2c;
    sd2_upstream *up;
    sd2_stream *s;
    uv_timer_t timer;
    char host[256];
    int port;
    char authority[280];
    char addr[64];
    seldon_buf in;
    char why[256];
    uint64_t backoff_ms;
    uint64_t rng;
    int answered, delivered, outage, closing, handles;
};

static void attempt(gw_sub *sub);

static void on_set(gw_sub *sub, const uint8_t *data, size_t len)
{
    gw *g = sub->g;
    Seldon__Control__V1__PipelineSet *m =
        seldon__control__v1__pipeline_set__unpack(NULL, len, data);
    sdp_spec *specs;
    seldon_buf *kspecs;
    const char **names;
    size_t i;
    if (m == NULL) {
        sdd_log(SELDON_LOG_ERROR, "scheduler %s: a message of %zu bytes is not a PipelineSet",
                sub->authority, len);
        return;
    }
    specs = sdd_calloc(m->n_pipelines + 1, sizeof(*specs));
    if (specs == NULL) {
        seldon__control__v1__pipeline_set__free_unpacked(m, NULL);
        return;
    }
    kspecs = g->kafka != NULL ? sdd_calloc(m->n_pipelines + 1, sizeof(*kspecs)) : NULL;
    names = sdd_calloc(m->n_pipelines + 1, sizeof(*names));
    for (i = 0; i < m->n_pipelines; i++) {
        specs[i].name = m->pipelines[i]->name;
        specs[i].version = m->pipelines[i]->version;
        specs[i].ready = m->pipelines[i]->ready ? 1 : 0;
        specs[i].spec = m->pipelines[i]->spec;
        specs[i].spec_len = strlen(m->pipelines[i]->spec);
        if (names != NULL)
            names[i] = m->pipelines[i]->name;
        /* Kafka mode: served as one step, the pipeline run by seldon-dataflow. */
        if (kspecs != NULL && gw_kafka_spec(&kspecs[i], m->pipelines[i]->name) == 0) {
            specs[i].spec = (const char *)kspecs[i].data;
            specs[i].spec_len = kspecs[i].len;
        }
    }
    sdp_sync(g->pls, specs, m->n_pipelines, NULL, NULL);
    if (g->kafka != NULL && names != NULL)
        gw_kafka_subscribe(g->kafka, names, m->n_pipelines);
    for (i = 0; kspecs != NULL && i < m->n_pipelines; i++)
        seldon_buf_free(&kspecs[i]);
    sdd_free(kspecs);
    sdd_free(names);
    seldon_series_set(g->m_pipelines, (double)sdp_count(g->pls));
    pthread_mutex_lock(&g->peers_mu);
    g->npeers = 0;
    for (i = 0; i < m->n_gateways && g->npeers < GW_MAX_PEERS; i++)
        if (*m->gateways[i]->http && strlen(m->gateways[i]->http) < sizeof(g->peers[0]))
            snprintf(g->peers[g->npeers++], sizeof(g->peers[0]), "%s", m->gateways[i]->http);
    pthread_mutex_unlock(&g->peers_mu);
    sdd_log(SELDON_LOG_INFO, "scheduler %s: %zu pipeline(s), %zu gateway(s) (set %llu)",
            sub->authority, m->n_pipelines, m->n_gateways, (unsigned long long)m->generation);
    sdd_free(specs);
    seldon__control__v1__pipeline_set__free_unpacked(m, NULL);
}

static uint64_t next_random(gw_sub *sub)
{
    sub->rng ^= sub->rng << 13;
    sub->rng ^= sub->rng >> 7;
    sub->rng ^= sub->rng << 17;
    return sub->rng;
}

static void retry_due(uv_timer_t *t)
{
    attempt(t->data);
}

static void outage(gw_sub *sub, const char *why)
{
    uint64_t delay;
    int had = sub->delivered;
    seldon_series_set(sub->g->m_connected, 0);
    sub->s = NULL;
    sub->in.len = 0;
    if (sub->closing)
        return;
    if (!sub->outage) {
        sdd_log(SELDON_LOG_INFO,
                "scheduler %s: %s: serving the %zu pipeline(s) in force; retrying the "
                "subscription",
                sub->authority, why, sdp_count(sub->g->pls));
        sub->outage = 1;
    } else {
        sdd_log(SELDON_LOG_DEBUG, "scheduler %s: %s", sub->authority, why);
    }
    if (had || sub->backoff_ms == 0)
        sub->backoff_ms = SUB_BACKOFF_MIN_MS;
    else if (sub->backoff_ms < sub->g->cfg.resubscribe_max_ms)
        sub->backoff_ms = sub->backoff_ms * 2 < sub->g->cfg.resubscribe_max_ms
                              ? sub->backoff_ms * 2
                              : sub->g->cfg.resubscribe_max_ms;
    delay = sub->backoff_ms / 2 + next_random(sub) % (sub->backoff_ms / 2 + 1);
    uv_timer_start(&sub->timer, retry_due, delay, 0);
}

static void stream_reset(gw_sub *sub, sd2_stream *s, const char *why)
{
    if (sub->why[0] == '\0')
        snprintf(sub->why, sizeof(sub->why), "%s", why);
    sd2_reset(s, SD2_H2_CANCEL);
}

static void copy_status(gw_sub *sub, const char *what, const sd2_header *h, size_t n)
{
    const sd2_header *st = sd2_header_find(h, n, "grpc-status");
    const sd2_header *msg = sd2_header_find(h, n, "grpc-message");
    if (sub->why[0] != '\0')
        return;
    snprintf(sub->why, sizeof(sub->why), "%s (grpc-status %.*s%s%.*s)", what,
             st ? (int)(st->value_len > 8 ? 8 : st->value_len) : 1, st ? st->value : "?",
             msg ? ": " : "", msg ? (int)(msg->value_len > 160 ? 160 : msg->value_len) : 0,
             msg ? msg->value : "");
}

static void on_headers(sd2_stream *s, void *user_data, const sd2_header *h, size_t n, int end)
{
    gw_sub *sub = user_data;
    const sd2_header *st = sd2_header_find(h, n, ":status");
    if (s != sub->s)
        return;
    if (st == NULL || st->value_len != 3 || memcmp(st->value, "200", 3) != 0) {
        stream_reset(sub, s, "not a gRPC answer");
        return;
    }
    if (end) {
        copy_status(sub, "the subscription was refused", h, n);
        return;
    }
    uv_timer_stop(&sub->timer);
    sub->answered = 1;
    seldon_series_set(sub->g->m_connected, 1);
}

static void on_data(sd2_stream *s, void *user_data, const uint8_t *data, size_t len)
{
    gw_sub *sub = user_data;
    size_t at = 0;
    sd2_consume(s, len);
    if (s != sub->s)
        return;
    if (seldon_buf_reserve(&sub->in, len) != 0) {
        stream_reset(sub, s, "out of memory");
        return;
    }
    memcpy(sub->in.data + sub->in.len, data, len);
    sub->in.len += len;
    while (sub->in.len - at >= 5) {
        const uint8_t *p = sub->in.data + at;
        uint32_t mlen = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
        if (p[0] != 0 || mlen > SUB_MSG_MAX) {
            stream_reset(sub, s, p[0] != 0 ? "a compressed message" : "a message too large");
            return;
        }
        if (sub->in.len - at - 5 < mlen)
            break;
        if (!sub->delivered) {
            sub->delivered = 1;
            sdd_log(SELDON_LOG_INFO, "scheduler %s: subscribed to pipelines%s", sub->authority,
                    sub->outage ? " again" : "");
            sub->outage = 0;
            sub->backoff_ms = 0;
        }
        on_set(sub, p + 5, mlen);
        at += 5 + (size_t)mlen;
    }
    if (at > 0) {
        memmove(sub->in.data, sub->in.data + at, sub->in.len - at);
        sub->in.len -= at;
    }
}

static void on_end(sd2_stream *s, void *user_data, const sd2_header *trailers, size_t n)
{
    gw_sub *sub = user_data;
    if (s == sub->s)
        copy_status(sub, "the scheduler ended the subscription", trailers, n);
}

static void on_drain(sd2_stream *s, void *user_data)
{
    (void)s;
    (void)user_data;
}

static void on_close(sd2_stream *s, void *user_data, int err, uint32_t h2_code)
{
    gw_sub *sub = user_data;
    char why[300];
    (void)h2_code;
    if (s != sub->s)
        return;
    if (sub->why[0] != '\0')
        snprintf(why, sizeof(why), "%s", sub->why);
    else
        snprintf(why, sizeof(why), "%s",
                 err == SD2_OK ? "the scheduler ended the subscription" : sd2_strerror(err));
    outage(sub, why);
}

static const sd2_stream_cbs sub_cbs = {on_headers, on_data, on_end, on_drain, on_close};

static void answer_late(uv_timer_t *t)
{
    gw_sub *sub = t->data;
    if (sub->s != NULL && !sub->answered)
        stream_reset(sub, sub->s, "no answer to the subscription in time");
}

static int resolve(gw_sub *sub)
{
    struct addrinfo hints, *res = NULL;
    char addr[64];
    unsigned char buf[16];
    int rc;
    if (inet_pton(AF_INET, sub->host, buf) == 1 || inet_pton(AF_INET6, sub->host, buf) == 1) {
        snprintf(addr, sizeof(addr), "%.63s", sub->host);
    } else {
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_INET;
        hints.ai_socktype = SOCK_STREAM;
        rc = getaddrinfo(sub->host, NULL, &hints, &res);
        if (rc != 0)
            return sdd_error(SELDON_EUNAVAIL, "%s does not resolve: %s", sub->host,
                             gai_strerror(rc));
        inet_ntop(AF_INET, &((struct sockaddr_in *)res->ai_addr)->sin_addr, addr, sizeof(addr));
        freeaddrinfo(res);
    }
    if (sub->up != NULL && strcmp(addr, sub->addr) == 0)
        return 0;
    snprintf(sub->addr, sizeof(sub->addr), "%s", addr);
    return sd2_upstream_get(&sub->up, sub->h2c, sub->addr, sub->port);
}

static void attempt(gw_sub *sub)
{
    Seldon__Control__V1__PipelineSubscribeRequest req =
        SELDON__CONTROL__V1__PIPELINE_SUBSCRIBE_REQUEST__INIT;
    uint8_t body[5 + 1024];
    size_t len;
    int rc;
    const sd2_header h[] = {
        {":method", 7, "POST", 4},
        {":scheme", 7, "http", 4},
        {":path", 5, SUB_PATH, sizeof(SUB_PATH) - 1},
        {":authority", 10, sub->authority, strlen(sub->authority)},
        {"content-type", 12, "application/grpc", 16},
        {"te", 2, "trailers", 8},
        {"user-agent", 10, "seldon-pipelinegateway", 22},
    };
    if (sub->closing || sub->s != NULL)
        return;
    sub->answered = 0;
    sub->delivered = 0;
    sub->why[0] = '\0';
    sub->in.len = 0;
    req.gateway = (char *)sub->g->cfg.name;
    req.http = sub->g->advertise;
    req.grpc = sub->g->advertise;
    len = seldon__control__v1__pipeline_subscribe_request__get_packed_size(&req);
    if (len > sizeof(body) - 5) {
        outage(sub, "the gateway's name or address is too long");
        return;
    }
    seldon__control__v1__pipeline_subscribe_request__pack(&req, body + 5);
    body[0] = 0;
    body[1] = (uint8_t)(len >> 24);
    body[2] = (uint8_t)(len >> 16);
    body[3] = (uint8_t)(len >> 8);
    body[4] = (uint8_t)len;
    if (resolve(sub) != 0) {
        outage(sub, seldon_last_error());
        return;
    }
    rc = sd2_request(&sub->s, sub->up, h, sizeof(h) / sizeof(h[0]), 0, &sub_cbs, sub, 0);
    if (rc != 0) {
        outage(sub, sd2_strerror(rc));
        return;
    }
    sd2_write(sub->s, body, 5 + len);
    sd2_end(sub->s, NULL, 0);
    uv_timer_start(&sub->timer, answer_late, SUB_ANSWER_TIMEOUT_MS, 0);
}

int gw_sub_new(gw_sub **out, gw *g, uv_loop_t *loop)
{
    gw_sub *sub = sdd_calloc(1, sizeof(*sub));
    sd2_opts o;
    *out = NULL;
    if (sub == NULL)
        return SELDON_ENOMEM;
    sub->g = g;
    sub->loop = loop;
    if (gw_parse_hostport(sub->host, sizeof(sub->host), &sub->port, g->cfg.scheduler_host, 9002) !=
        0) {
        sdd_free(sub);
        return sdd_error(SELDON_EINVAL, "--scheduler-host: bad address '%s'",
                         g->cfg.scheduler_host);
    }
    snprintf(sub->authority, sizeof(sub->authority), strchr(sub->host, ':') ? "[%s]:%d" : "%s:%d",
             sub->host, sub->port);
    memset(&o, 0, sizeof(o));
    o.max_conns_per_upstream = 1;
    o.connect_timeout_ms = 3000;
    if (sd2_client_new(&sub->h2c, loop, &o) != 0) {
        sdd_free(sub);
        return sdd_error(SELDON_ENOMEM, "scheduler subscription: out of memory");
    }
    uv_timer_init(loop, &sub->timer);
    sub->timer.data = sub;
    sub->rng = (uint64_t)gw_now_ns() ^ ((uint64_t)getpid() << 29) ^ 0x9e3779b97f4a7c15ull;
    *out = sub;
    return 0;
}

void gw_sub_start(void *arg)
{
    attempt(arg);
}

static void sub_freed(gw_sub *sub)
{
    if (--sub->handles > 0)
        return;
    seldon_buf_free(&sub->in);
    sdd_free(sub);
}

static void timer_closed(uv_handle_t *h)
{
    sub_freed(h->data);
}

static void client_closed(void *arg)
{
    sub_freed(arg);
}

void gw_sub_close(void *arg)
{
    gw_sub *sub = arg;
    sub->closing = 1;
    sub->handles = 2;
    uv_close((uv_handle_t *)&sub->timer, timer_closed);
    sd2_client_close(sub->h2c, client_closed, sub);
}
