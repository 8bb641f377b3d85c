/*
 * The scheduler subscription shared by seldon-router, seldon-pipelinegateway and
 * seldon-dataflow (sub.h). Runs on the loop it was given, which should serve
 * no request: building a large table, or resolving the scheduler's name, blocks
 * it.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sdd.h"
#include "sub.h"

#define SUB_MSG_MAX (64u << 20)     /* bytes in one message */
#define SUB_ANSWER_TIMEOUT_MS 10000 /* an attempt without response headers by then fails */
#define SUB_CONNECT_TIMEOUT_MS 3000
#define CALL_TIMEOUT_MS 10000

struct sds_sub {
    sds_config cfg;
    sds_hooks hooks;
    void *ud;
    uv_loop_t *loop;
    sd2_client *h2c;
    sd2_upstream *up;
    sd2_stream *s;    /* the subscription's stream, or NULL between attempts */
    uv_timer_t timer; /* the next attempt, or the answer deadline of this one */
    char host[256];   /* as given: an IP address or a name */
    int port;
    char authority[280];
    char addr[64]; /* the address connected to: host, or what it resolved to */
    seldon_buf in; /* bytes of the message being received */
    seldon_buf req;
    char why[256]; /* what ended the stream, when known before its on_close */
    uint64_t backoff_ms;
    uint64_t rng;
    uint64_t attempts; /* since the outage began */
    int answered;      /* this stream got its response headers */
    int delivered;     /* this stream brought a message */
    int connected;
    int outage; /* an outage was logged and has not ended */
    int closing;
    int handles; /* timer and client, until closed */
};

static void attempt(sds_sub *sub);

/* ------------------------------------------------------------ outages */

static uint64_t next_random(sds_sub *sub)
{
    /* xorshift64: jitter only, needs no quality. */
    sub->rng ^= sub->rng << 13;
    sub->rng ^= sub->rng >> 7;
    sub->rng ^= sub->rng << 17;
    return sub->rng;
}

static void retry_due(uv_timer_t *t)
{
    attempt(t->data);
}

static void set_connected(sds_sub *sub, int up, const sd2_header *h, size_t n)
{
    sub->connected = up;
    if (sub->hooks.connected != NULL)
        sub->hooks.connected(sub->ud, up, h, n);
}

/* The subscription is down (why says how): keep serving, try again later. */
static void outage(sds_sub *sub, const char *why)
{
    uint64_t delay, cap = sub->cfg.resubscribe_max_ms;
    int had = sub->delivered;
    char what[200];

    sub->s = NULL;
    sub->in.len = 0;
    if (sub->closing)
        return; /* no hook runs after sds_close */
    set_connected(sub, 0, NULL, 0);
    if (!sub->outage) {
        what[0] = '\0';
        if (sub->hooks.in_force != NULL)
            sub->hooks.in_force(sub->ud, what, sizeof(what));
        sdd_log(SELDON_LOG_INFO, "scheduler %s: %s: %s%sretrying the subscription",
                sub->authority, why, what, what[0] ? "; " : "");
        sub->outage = 1;
        sub->attempts = 0;
    } else {
        sdd_log(SELDON_LOG_DEBUG, "scheduler %s: attempt %llu: %s", sub->authority,
                (unsigned long long)sub->attempts, why);
    }
    /* A stream that brought messages ends when the scheduler restarts: come back soon.
       One that ends before any (a scheduler not ready) waits longer each time. */
    if (cap < SDS_BACKOFF_MIN_MS)
        cap = SDS_BACKOFF_MIN_MS;
    if (had || sub->backoff_ms == 0)
        sub->backoff_ms = SDS_BACKOFF_MIN_MS;
    else if (sub->backoff_ms < cap)
        sub->backoff_ms = sub->backoff_ms * 2 < cap ? sub->backoff_ms * 2 : cap;
    /* Between half the backoff and all of it. */
    delay = sub->backoff_ms / 2 + next_random(sub) % (sub->backoff_ms / 2 + 1);
    uv_timer_start(&sub->timer, retry_due, delay, 0);
}

/* ------------------------------------------------------------ the stream */

static void stream_reset(sds_sub *sub, sd2_stream *s, const char *why)
{
    if (sub->why[0] == '\0')
        snprintf(sub->why, sizeof(sub->why), "%s", why);
    sd2_reset(s, SD2_H2_CANCEL);
}

static void copy_status(char *out, size_t cap, const char *what, const sd2_header *h, size_t n)
{
    const sd2_header *st = sd2_header_find(h, n, "grpc-status");
    const sd2_header *msg = sd2_header_find(h, n, "grpc-message");
    if (out[0] != '\0')
        return;
    snprintf(out, cap, "%s (grpc-status %.*s%s%.*s)", what,
             st ? (int)(st->value_len > 8 ? 8 : st->value_len) : 1, st ? st->value : "?",
             msg ? ": " : "", msg ? (int)(msg->value_len > 160 ? 160 : msg->value_len) : 0,
             msg ? msg->value : "");
}

static void on_headers(sd2_stream *s, void *user_data, const sd2_header *h, size_t n, int end)
{
    sds_sub *sub = user_data;
    const sd2_header *st = sd2_header_find(h, n, ":status");
    if (s != sub->s || sub->closing)
        return;
    if (st == NULL || st->value_len != 3 || memcmp(st->value, "200", 3) != 0) {
        char why[64];
        snprintf(why, sizeof(why), "HTTP status %.*s, not a gRPC answer",
                 st ? (int)(st->value_len > 8 ? 8 : st->value_len) : 1, st ? st->value : "?");
        stream_reset(sub, s, why);
        return;
    }
    if (end) { /* trailers-only: the scheduler refused the call */
        copy_status(sub->why, sizeof(sub->why), "the subscription was refused", h, n);
        return;
    }
    uv_timer_stop(&sub->timer);
    sub->answered = 1;
    set_connected(sub, 1, h, n);
}

/* The first message of a stream ends an outage. */
static void delivered(sds_sub *sub)
{
    sub->delivered = 1;
    if (sub->outage)
        sdd_log(SELDON_LOG_INFO, "scheduler %s: %s, %llu attempt(s) after the outage began",
                sub->authority, sub->cfg.again, (unsigned long long)sub->attempts);
    else
        sdd_log(SELDON_LOG_INFO, "scheduler %s: %s", sub->authority, sub->cfg.subscribed);
    sub->outage = 0;
    sub->backoff_ms = 0;
}

static void on_data(sd2_stream *s, void *user_data, const uint8_t *data, size_t len)
{
    sds_sub *sub = user_data;
    size_t at = 0;
    sd2_consume(s, len); /* copied below, or dropped with the stream */
    if (s != sub->s || sub->closing)
        return;
    if (seldon_buf_reserve(&sub->in, len) != 0) {
        stream_reset(sub, s, "out of memory");
        return;
    }
    memcpy(sub->in.data + sub->in.len, data, len);
    sub->in.len += len;
    /* Messages: a flag byte (0: not compressed), a 4-byte big-endian length, the bytes. */
    while (sub->in.len - at >= 5) {
        const uint8_t *p = sub->in.data + at;
        uint32_t mlen = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4];
        if (p[0] != 0) {
            stream_reset(sub, s, "a compressed message, which was not asked for");
            return;
        }
        if (mlen > SUB_MSG_MAX) {
            char why[96];
            snprintf(why, sizeof(why), "a message of %u bytes (more than %u)", mlen, SUB_MSG_MAX);
            stream_reset(sub, s, why);
            return;
        }
        if (sub->in.len - at - 5 < mlen)
            break;
        if (!sub->delivered)
            delivered(sub);
        sub->hooks.message(sub->ud, p + 5, mlen);
        at += 5 + (size_t)mlen;
        if (sub->s != s || sub->closing)
            return; /* the hook closed it */
    }
    if (at > 0) {
        memmove(sub->in.data, sub->in.data + at, sub->in.len - at);
        sub->in.len -= at;
    }
}

static void on_end(sd2_stream *s, void *user_data, const sd2_header *trailers, size_t n)
{
    sds_sub *sub = user_data;
    if (s == sub->s)
        copy_status(sub->why, sizeof(sub->why), "the scheduler ended the subscription", trailers,
                    n);
}

static void on_drain(sd2_stream *s, void *user_data)
{
    (void)s;
    (void)user_data;
}

static void on_close(sd2_stream *s, void *user_data, int err, uint32_t h2_code)
{
    sds_sub *sub = user_data;
    char why[300];
    (void)h2_code;
    if (s != sub->s)
        return;
    if (sub->why[0] != '\0')
        snprintf(why, sizeof(why), "%s", sub->why);
    else if (err == SD2_OK)
        snprintf(why, sizeof(why), "the scheduler ended the subscription");
    else
        snprintf(why, sizeof(why), "%s", sd2_strerror(err));
    outage(sub, why);
}

static const sd2_stream_cbs sub_cbs = {on_headers, on_data, on_end, on_drain, on_close};

/* No response headers in time: the scheduler is there but does not answer. */
static void answer_late(uv_timer_t *t)
{
    sds_sub *sub = t->data;
    if (sub->s != NULL && !sub->answered)
        stream_reset(sub, sub->s, "no answer to the subscription in time");
}

/*
 * The scheduler's address for this attempt. A name is resolved again each time, so a
 * scheduler that comes back elsewhere is found.
 */
static int resolve(sds_sub *sub)
{
    struct addrinfo hints, *res = NULL;
    char addr[64];
    int rc;
    if (sds_numeric_host(sub->host)) { /* at most 45 characters */
        snprintf(addr, sizeof(addr), "%.63s", sub->host);
    } else {
        /* IPv4 first: a scheduler listening on 0.0.0.0 is not on the name's IPv6 address. */
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_INET;
        hints.ai_socktype = SOCK_STREAM;
        rc = getaddrinfo(sub->host, NULL, &hints, &res);
        if (rc != 0 && rc != EAI_AGAIN) {
            hints.ai_family = AF_INET6;
            rc = getaddrinfo(sub->host, NULL, &hints, &res);
        }
        if (rc != 0)
            return sdd_error(SELDON_EUNAVAIL, "%s does not resolve: %s", sub->host,
                             gai_strerror(rc));
        if (res->ai_family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)res->ai_addr)->sin_addr, addr, sizeof(addr));
        else
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)res->ai_addr)->sin6_addr, addr,
                      sizeof(addr));
        freeaddrinfo(res);
    }
    if (sub->up != NULL && strcmp(addr, sub->addr) == 0)
        return 0;
    if (sub->up != NULL)
        sdd_log(SELDON_LOG_INFO, "scheduler %s: now at %s", sub->authority, addr);
    snprintf(sub->addr, sizeof(sub->addr), "%s", addr);
    return sd2_upstream_get(&sub->up, sub->h2c, sub->addr, sub->port);
}

static void attempt(sds_sub *sub)
{
    uint8_t pre[5];
    size_t len;
    int rc;
    const sd2_header h[] = {
        {":method", 7, "POST", 4},
        {":scheme", 7, "http", 4},
        {":path", 5, sub->cfg.path, strlen(sub->cfg.path)},
        {":authority", 10, sub->authority, strlen(sub->authority)},
        {"content-type", 12, "application/grpc", 16},
        {"te", 2, "trailers", 8},
        {"grpc-accept-encoding", 20, "identity", 8},
        {"user-agent", 10, sub->cfg.user_agent, strlen(sub->cfg.user_agent)},
    };

    if (sub->closing || sub->s != NULL)
        return;
    sub->attempts++;
    sub->answered = 0;
    sub->delivered = 0;
    sub->why[0] = '\0';
    sub->in.len = 0;
    sub->req.len = 0;
    if (sub->hooks.request(sub->ud, &sub->req) != 0) {
        outage(sub, seldon_last_error());
        return;
    }
    len = sub->req.len;
    pre[0] = 0;
    pre[1] = (uint8_t)(len >> 24);
    pre[2] = (uint8_t)(len >> 16);
    pre[3] = (uint8_t)(len >> 8);
    pre[4] = (uint8_t)len;
    if (resolve(sub) != 0) {
        outage(sub, seldon_last_error());
        return;
    }
    rc = sd2_request(&sub->s, sub->up, h, sizeof(h) / sizeof(h[0]), 0, &sub_cbs, sub, 0);
    if (rc != 0) {
        outage(sub, sd2_strerror(rc));
        return;
    }
    sd2_write(sub->s, pre, 5);
    if (len > 0)
        sd2_write(sub->s, sub->req.data, len);
    sd2_end(sub->s, NULL, 0);
    uv_timer_start(&sub->timer, answer_late, SUB_ANSWER_TIMEOUT_MS, 0);
}

/* ------------------------------------------------------------ unary calls */

typedef struct sds_ucall {
    sds_sub *sub;
    void (*done)(void *user_data, int32_t status, const char *message);
    void *ud;
    int32_t status; /* -1 until a grpc-status was seen */
    char message[256];
} sds_ucall;

static void take_status(sds_ucall *c, const sd2_header *h, size_t n)
{
    const sd2_header *st = sd2_header_find(h, n, "grpc-status");
    const sd2_header *msg = sd2_header_find(h, n, "grpc-message");
    long v;
    char num[16];
    if (st == NULL || c->status >= 0)
        return;
    snprintf(num, sizeof(num), "%.*s", (int)(st->value_len > 8 ? 8 : st->value_len), st->value);
    c->status = sdd_parse_long(num, 0, 16, &v) == 0 ? (int32_t)v : 2 /* UNKNOWN */;
    if (msg != NULL)
        snprintf(c->message, sizeof(c->message), "%.*s",
                 (int)(msg->value_len > 250 ? 250 : msg->value_len), msg->value);
}

static void uc_headers(sd2_stream *s, void *user_data, const sd2_header *h, size_t n, int end)
{
    sds_ucall *c = user_data;
    const sd2_header *st = sd2_header_find(h, n, ":status");
    if (st == NULL || st->value_len != 3 || memcmp(st->value, "200", 3) != 0) {
        snprintf(c->message, sizeof(c->message), "HTTP status %.*s, not a gRPC answer",
                 st ? (int)(st->value_len > 8 ? 8 : st->value_len) : 1, st ? st->value : "?");
        c->status = 14;
        sd2_reset(s, SD2_H2_CANCEL);
        return;
    }
    if (end)
        take_status(c, h, n);
}

static void uc_data(sd2_stream *s, void *user_data, const uint8_t *data, size_t len)
{
    (void)user_data;
    (void)data;
    sd2_consume(s, len); /* the answer is not read */
}

static void uc_end(sd2_stream *s, void *user_data, const sd2_header *trailers, size_t n)
{
    (void)s;
    take_status(user_data, trailers, n);
}

static void uc_close(sd2_stream *s, void *user_data, int err, uint32_t h2_code)
{
    sds_ucall *c = user_data;
    (void)s;
    (void)h2_code;
    if (c->status < 0) {
        c->status = 14; /* UNAVAILABLE */
        snprintf(c->message, sizeof(c->message), "%s",
                 err == SD2_OK ? "the answer had no grpc-status" : sd2_strerror(err));
    }
    if (!c->sub->closing) /* the client closes before the subscription is freed */
        c->done(c->ud, c->status, c->message);
    sdd_free(c);
}

static const sd2_stream_cbs ucall_cbs = {uc_headers, uc_data, uc_end, on_drain, uc_close};

int sds_call(sds_sub *sub, const char *path, const uint8_t *msg, size_t len,
             const sd2_header *extra, size_t nextra,
             void (*done)(void *user_data, int32_t status, const char *message), void *user_data)
{
    sd2_header h[16];
    uint8_t pre[5];
    sds_ucall *c;
    sd2_stream *s = NULL;
    size_t i, n = 0;
    int rc;
    if (sub->closing || sub->up == NULL)
        return sdd_error(SELDON_EUNAVAIL, "scheduler %s: not connected", sub->authority);
    if (nextra > 8)
        return sdd_error(SELDON_EINVAL, "too many headers");
    c = sdd_calloc(1, sizeof(*c));
    if (c == NULL)
        return SELDON_ENOMEM;
    c->sub = sub;
    c->done = done;
    c->ud = user_data;
    c->status = -1;
    h[n++] = (sd2_header){":method", 7, "POST", 4};
    h[n++] = (sd2_header){":scheme", 7, "http", 4};
    h[n++] = (sd2_header){":path", 5, path, strlen(path)};
    h[n++] = (sd2_header){":authority", 10, sub->authority, strlen(sub->authority)};
    h[n++] = (sd2_header){"content-type", 12, "application/grpc", 16};
    h[n++] = (sd2_header){"te", 2, "trailers", 8};
    h[n++] = (sd2_header){"user-agent", 10, sub->cfg.user_agent, strlen(sub->cfg.user_agent)};
    for (i = 0; i < nextra; i++)
        h[n++] = extra[i];
    rc = sd2_request(&s, sub->up, h, n, 0, &ucall_cbs, c, CALL_TIMEOUT_MS);
    if (rc != 0) {
        sdd_free(c);
        return sdd_error(SELDON_EUNAVAIL, "scheduler %s: %s", sub->authority, sd2_strerror(rc));
    }
    pre[0] = 0;
    pre[1] = (uint8_t)(len >> 24);
    pre[2] = (uint8_t)(len >> 16);
    pre[3] = (uint8_t)(len >> 8);
    pre[4] = (uint8_t)len;
    sd2_write(s, pre, 5);
    if (len > 0)
        sd2_write(s, msg, len);
    sd2_end(s, NULL, 0);
    return 0;
}

/* ------------------------------------------------------------ life cycle */

int sds_numeric_host(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* A host name: letters, digits, '-' and '.', as DNS has them (and '_', as some use). */
static int host_name(const char *h, size_t len)
{
    size_t i;
    for (i = 0; i < len; i++) {
        char c = h[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_'))
            return 0;
    }
    return len > 0 && h[0] != '-' && h[0] != '.';
}

int sds_parse_host(char *host, size_t cap, int *port, const char *spec, int default_port)
{
    const char *h = spec, *colon = NULL, *close;
    size_t hlen;
    long p = default_port;
    int v6 = 0;
    if (spec[0] == '[') { /* [v6] or [v6]:port */
        close = strchr(spec, ']');
        if (close == NULL || (close[1] != '\0' && close[1] != ':'))
            return -1;
        h = spec + 1;
        hlen = (size_t)(close - h);
        if (close[1] == ':')
            colon = close + 1;
        v6 = 1;
    } else if (strchr(spec, ':') != strrchr(spec, ':')) { /* a bare IPv6 address */
        hlen = strlen(spec);
        v6 = 1;
    } else {
        colon = strchr(spec, ':');
        hlen = colon != NULL ? (size_t)(colon - spec) : strlen(spec);
    }
    if (colon != NULL && sdd_parse_long(colon + 1, 1, 65535, &p) < 0)
        return -1;
    if (hlen == 9 && memcmp(h, "localhost", 9) == 0) { /* whatever its IPv6 entry says */
        h = "127.0.0.1";
        hlen = strlen(h);
    }
    if (hlen == 0 || hlen >= cap)
        return -1;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    *port = (int)p;
    if (v6)
        return sds_numeric_host(host) ? 0 : -1;
    return sds_numeric_host(host) || host_name(host, hlen) ? 0 : -1;
}

int sds_new(sds_sub **out, uv_loop_t *loop, const sds_config *cfg, const sds_hooks *hooks,
            void *user_data)
{
    sds_sub *sub;
    sd2_opts o;
    *out = NULL;
    sub = sdd_calloc(1, sizeof(*sub));
    if (sub == NULL)
        return SELDON_ENOMEM;
    sub->cfg = *cfg;
    sub->hooks = *hooks;
    sub->ud = user_data;
    sub->loop = loop;
    if (cfg->scheduler_host == NULL ||
        sds_parse_host(sub->host, sizeof(sub->host), &sub->port, cfg->scheduler_host, 9002) != 0) {
        sdd_free(sub);
        return sdd_error(SELDON_EINVAL, "--scheduler-host: bad address '%s'",
                         cfg->scheduler_host ? cfg->scheduler_host : "");
    }
    if (strchr(sub->host, ':') != NULL)
        snprintf(sub->authority, sizeof(sub->authority), "[%s]:%d", sub->host, sub->port);
    else
        snprintf(sub->authority, sizeof(sub->authority), "%s:%d", sub->host, sub->port);
    memset(&o, 0, sizeof(o));
    o.max_conns_per_upstream = 1;
    o.connect_timeout_ms = SUB_CONNECT_TIMEOUT_MS;
    if (sd2_client_new(&sub->h2c, loop, &o) != 0) {
        sdd_free(sub);
        return sdd_error(SELDON_ENOMEM, "scheduler subscription: out of memory");
    }
    uv_timer_init(loop, &sub->timer);
    sub->timer.data = sub;
    sub->rng = (uint64_t)uv_hrtime() ^ ((uint64_t)getpid() << 29) ^ 0x9e3779b97f4a7c15ull;
    *out = sub;
    return 0;
}

void sds_start(sds_sub *sub)
{
    set_connected(sub, 0, NULL, 0);
    attempt(sub);
}

const char *sds_authority(const sds_sub *sub)
{
    return sub->authority;
}

int sds_connected(const sds_sub *sub)
{
    return sub->connected;
}

static void sub_freed(sds_sub *sub)
{
    if (--sub->handles > 0)
        return;
    seldon_buf_free(&sub->in);
    seldon_buf_free(&sub->req);
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

void sds_close(sds_sub *sub)
{
    sub->closing = 1;
    sub->handles = 2;
    uv_close((uv_handle_t *)&sub->timer, timer_closed);
    /* Its streams, if any, close with it (on_close sees closing and stops there). */
    sd2_client_close(sub->h2c, client_closed, sub);
}
