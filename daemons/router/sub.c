/*
 * The router fed by the scheduler: one gRPC server stream,
 * RouteService.Subscribe on --scheduler-host, over an h2c client of the
 * control loop. Every RouteTable received becomes a seldon_routes table,
 * installed on every loop exactly as a SIGHUP reload is, and saved to the
 * routes cache, so that a router started while the scheduler is down serves
 * the last routes it was given.
 *
 * A subscription that cannot open, that ends, or that fails is an outage: the
 * routes in force stay, and the subscription is tried again after a backoff
 * that doubles up to --resubscribe-max (jittered, so that many routers do not
 * come back in step). One info line says an outage began and one that it
 * ended, whatever the number of attempts in between.
 *
 * Threads: everything here runs on the control loop, which serves no request:
 * building a large table and writing the cache (with fsync) delay no request.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "router.h"
#include "sdd.h"
#include "seldon_control.pb-c.h"

#define SUB_PATH "/seldon.control.v1.RouteService/Subscribe"
#define SUB_MSG_MAX (64u << 20)     /* bytes in one RouteTable message */
#define SUB_ANSWER_TIMEOUT_MS 10000 /* an attempt without response headers by then fails */
#define SUB_CONNECT_TIMEOUT_MS 3000

struct rt_sub {
    router *r;
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
    char why[256]; /* what ended the stream, when known before its on_close */
    uint64_t backoff_ms;
    uint64_t rng;
    uint64_t attempts; /* since the outage began */
    int answered;      /* this stream got its response headers */
    int delivered;     /* this stream brought a table */
    int connected;     /* the subscription is up (the gauge says 1) */
    int outage;        /* an outage was logged and has not ended */
    int closing;
    int handles; /* timer and client, until closed */
};

static void attempt(rt_sub *sub);

/* ------------------------------------------------------------ protobuf allocation */

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

/* ------------------------------------------------------------ the cache file */

uint64_t rt_sub_cached_generation(const char *path)
{
    char line[256];
    const char *g;
    uint64_t gen = 0;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return 0;
    if (fgets(line, sizeof(line), f) != NULL && strncmp(line, "# seldon-router:", 16) == 0 &&
        (g = strstr(line, "generation ")) != NULL)
        gen = strtoull(g + 11, NULL, 10);
    fclose(f);
    return gen;
}

/*
 * Writes the table to the cache atomically: a temporary file beside it, flushed
 * and synced, renamed over it, and the folder synced so that the rename holds
 * across a crash. The first line, a comment, keeps the generation for the next
 * start; the rest is the routes file format.
 */
static int save_cache(rt_sub *sub, const seldon_routes *t, uint64_t generation)
{
    const char *path = sub->r->cache_path;
    seldon_buf b = SELDON_BUF_INIT;
    char head[200], tmp[4200], dir[4096];
    const char *slash;
    size_t off = 0;
    int fd = -1, rc = 0, n;

    n = snprintf(head, sizeof(head),
                 "# seldon-router: routes from the scheduler at %s, generation %llu\n",
                 sub->authority, (unsigned long long)generation);
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        return sdd_error(SELDON_EINVAL, "%s: path too long", path);
    if (seldon_buf_reserve(&b, (size_t)n) != 0)
        return SELDON_ENOMEM;
    memcpy(b.data, head, (size_t)n);
    b.len = (size_t)n;
    if ((rc = seldon_routes_serialize(&b, t)) != 0)
        goto out;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = sdd_error(SELDON_EIO, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    while (off < b.len) {
        ssize_t w = write(fd, b.data + off, b.len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            rc = sdd_error(SELDON_EIO, "%s: %s", tmp, strerror(errno));
            goto out;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        fd = -1;
        rc = sdd_error(SELDON_EIO, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        rc = sdd_error(SELDON_EIO, "%s: %s", path, strerror(errno));
        goto out;
    }
    slash = strrchr(path, '/');
    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else
        snprintf(dir, sizeof(dir), "%.*s", slash == path ? 1 : (int)(slash - path), path);
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd); /* best effort: some file systems refuse it on a folder */
        close(fd);
        fd = -1;
    }
out:
    if (fd >= 0) {
        close(fd);
        unlink(tmp);
    } else if (rc != 0) {
        unlink(tmp);
    }
    seldon_buf_free(&b);
    return rc;
}

/* ------------------------------------------------------------ tables */

/* Builds a table from a RouteTable message, with the defaults in force. */
static int build_table(seldon_routes **out, router *r, const Seldon__Control__V1__RouteTable *m)
{
    seldon_routes_builder *b = NULL;
    seldon_routes_defaults d;
    size_t i, j;
    int rc;

    pthread_mutex_lock(&r->routes_mu);
    d = r->defaults;
    pthread_mutex_unlock(&r->routes_mu);
    rc = seldon_routes_builder_new(&b, &d);
    for (i = 0; i < m->n_routes && rc == 0; i++) {
        const Seldon__Control__V1__Route *rt = m->routes[i];
        rc = seldon_routes_builder_add_route(b, rt->name, rt->timeout_ms, rt->retries);
        for (j = 0; j < rt->n_upstreams && rc == 0; j++) {
            const Seldon__Control__V1__RouteUpstream *u = rt->upstreams[j];
            rc = seldon_routes_builder_add_version(b, u->http[0] ? u->http : NULL,
                                                   u->grpc[0] ? u->grpc : NULL, u->version);
        }
        for (j = 0; j < rt->n_candidates && rc == 0; j++)
            rc = seldon_routes_builder_add_candidate(b, rt->candidates[j]->name,
                                                     rt->candidates[j]->weight);
        if (rc == 0 && rt->mirror[0] != '\0')
            rc = seldon_routes_builder_set_mirror(b, rt->mirror, rt->mirror_percent);
    }
    if (rc == 0)
        rc = seldon_routes_builder_finish(out, b);
    seldon_routes_builder_free(b);
    if (rc == 0 && (rc = rt_routes_check(*out, NULL)) != 0) {
        seldon_routes_release(*out);
        *out = NULL;
    }
    return rc;
}

/* What is said once a table is in force on every loop. */
typedef struct table_note {
    seldon_series *gauge; /* the generation gauge; the subscription may be gone by then */
    char authority[280];
    uint64_t generation;
    size_t count;
    int same;
} table_note;

/* Runs on the last loop to swap (or here, when nothing was swapped). */
static void table_in_force(void *arg)
{
    table_note *n = arg;
    seldon_series_set(n->gauge, (double)n->generation);
    sdd_log(SELDON_LOG_INFO, "scheduler %s: route table generation %llu: %zu route(s)%s",
            n->authority, (unsigned long long)n->generation, n->count,
            n->same ? ", unchanged" : "");
    sdd_free(n);
}

/* One RouteTable message received: build it, save it, install it. */
static void on_table(rt_sub *sub, const uint8_t *data, size_t len)
{
    router *r = sub->r;
    Seldon__Control__V1__RouteTable *m;
    seldon_routes *t = NULL;
    table_note *note;
    uint64_t gen;
    int same;

    seldon_series_add(r->m_tables_received, 1);
    m = seldon__control__v1__route_table__unpack(&pb_allocator, len, data);
    if (m == NULL) {
        seldon_series_add(r->m_tables_rejected, 1);
        sdd_log(SELDON_LOG_ERROR,
                "scheduler %s: a message of %zu bytes is not a RouteTable: the routes in "
                "force stay",
                sub->authority, len);
        return;
    }
    gen = m->generation;
    if (build_table(&t, r, m) != 0) {
        seldon_series_add(r->m_tables_rejected, 1);
        sdd_log(SELDON_LOG_ERROR,
                "scheduler %s: route table generation %llu rejected: %s: the routes in "
                "force stay",
                sub->authority, (unsigned long long)gen, seldon_last_error());
        seldon__control__v1__route_table__free_unpacked(m, &pb_allocator);
        return;
    }
    seldon__control__v1__route_table__free_unpacked(m, &pb_allocator);
    note = sdd_malloc(sizeof(*note));
    if (note != NULL) {
        note->gauge = r->m_generation;
        memcpy(note->authority, sub->authority, sizeof(note->authority));
        note->generation = gen;
        note->count = seldon_routes_count(t);
    }
    /* Saved before it is served: whatever a client got, a restarted router serves too. */
    if (save_cache(sub, t, gen) != 0)
        sdd_log(SELDON_LOG_ERROR, "routes cache: %s: a restart would not see these routes",
                seldon_last_error());
    pthread_mutex_lock(&r->routes_mu);
    same = r->from_scheduler && seldon_routes_equal(r->routes, t);
    r->from_scheduler = 1;
    if (note != NULL)
        note->same = same;
    if (!same)
        rt_routes_install(r, t, note != NULL ? table_in_force : NULL, note);
    else
        seldon_routes_release(t);
    pthread_mutex_unlock(&r->routes_mu);
    if (same && note != NULL)
        table_in_force(note);
}

/* ------------------------------------------------------------ outages */

static uint64_t next_random(rt_sub *sub)
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

static void set_connected(rt_sub *sub, int up)
{
    sub->connected = up;
    seldon_series_set(sub->r->m_sub_connected, up ? 1.0 : 0.0);
}

/* The subscription is down (why says how): keep serving, try again later. */
static void outage(rt_sub *sub, const char *why)
{
    router *r = sub->r;
    uint64_t delay;
    size_t n;
    int had = sub->delivered;

    set_connected(sub, 0);
    sub->s = NULL;
    sub->in.len = 0;
    if (sub->closing)
        return;
    if (!sub->outage) {
        pthread_mutex_lock(&r->routes_mu);
        n = seldon_routes_count(r->routes);
        pthread_mutex_unlock(&r->routes_mu);
        sdd_log(SELDON_LOG_INFO,
                "scheduler %s: %s: serving on the %zu route(s) in force; retrying the "
                "subscription",
                sub->authority, why, n);
        sub->outage = 1;
        sub->attempts = 0;
    } else {
        sdd_log(SELDON_LOG_DEBUG, "scheduler %s: attempt %llu: %s", sub->authority,
                (unsigned long long)sub->attempts, why);
    }
    /* A stream that brought routes ends when the scheduler restarts: come back soon.
       One that ends before any (a scheduler not ready) waits longer each time. */
    if (had || sub->backoff_ms == 0)
        sub->backoff_ms = RT_SUB_BACKOFF_MIN_MS;
    else if (sub->backoff_ms < r->cfg.resubscribe_max_ms)
        sub->backoff_ms = sub->backoff_ms * 2 < r->cfg.resubscribe_max_ms
                              ? sub->backoff_ms * 2
                              : r->cfg.resubscribe_max_ms;
    /* Between half the backoff and all of it. */
    delay = sub->backoff_ms / 2 + next_random(sub) % (sub->backoff_ms / 2 + 1);
    uv_timer_start(&sub->timer, retry_due, delay, 0);
}

/* ------------------------------------------------------------ the stream */

static void stream_reset(rt_sub *sub, sd2_stream *s, const char *why)
{
    if (sub->why[0] == '\0')
        snprintf(sub->why, sizeof(sub->why), "%s", why);
    sd2_reset(s, SD2_H2_CANCEL);
}

static void copy_status(rt_sub *sub, const char *what, const sd2_header *h, size_t n)
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
    rt_sub *sub = user_data;
    const sd2_header *st = sd2_header_find(h, n, ":status");
    if (s != sub->s)
        return;
    if (st == NULL || st->value_len != 3 || memcmp(st->value, "200", 3) != 0) {
        char why[64];
        snprintf(why, sizeof(why), "HTTP status %.*s, not a gRPC answer",
                 st ? (int)(st->value_len > 8 ? 8 : st->value_len) : 1, st ? st->value : "?");
        stream_reset(sub, s, why);
        return;
    }
    if (end) { /* trailers-only: the scheduler refused the call */
        copy_status(sub, "the subscription was refused", h, n);
        return;
    }
    uv_timer_stop(&sub->timer);
    sub->answered = 1;
    set_connected(sub, 1);
}

/* The first table of a stream ends an outage: routes flow again. */
static void delivered(rt_sub *sub)
{
    sub->delivered = 1;
    if (sub->outage)
        sdd_log(SELDON_LOG_INFO,
                "scheduler %s: subscribed again, %llu attempt(s) after the outage began",
                sub->authority, (unsigned long long)sub->attempts);
    else
        sdd_log(SELDON_LOG_INFO, "scheduler %s: subscribed to routes", sub->authority);
    sub->outage = 0;
    sub->backoff_ms = 0;
}

static void on_data(sd2_stream *s, void *user_data, const uint8_t *data, size_t len)
{
    rt_sub *sub = user_data;
    size_t at = 0;
    sd2_consume(s, len); /* copied below, or dropped with the stream */
    if (s != sub->s)
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
        on_table(sub, p + 5, mlen);
        at += 5 + (size_t)mlen;
    }
    if (at > 0) {
        memmove(sub->in.data, sub->in.data + at, sub->in.len - at);
        sub->in.len -= at;
    }
}

static void on_end(sd2_stream *s, void *user_data, const sd2_header *trailers, size_t n)
{
    rt_sub *sub = user_data;
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
    rt_sub *sub = user_data;
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
    rt_sub *sub = t->data;
    if (sub->s != NULL && !sub->answered)
        stream_reset(sub, sub->s, "no answer to the subscription in time");
}

/*
 * The scheduler's address for this attempt. A name is resolved again each time, so a
 * scheduler that comes back elsewhere is found; the lookup blocks this control loop
 * only, which serves no request.
 */
static int resolve(rt_sub *sub)
{
    struct addrinfo hints, *res = NULL;
    char addr[64];
    int rc;
    if (rt_numeric_host(sub->host)) { /* at most 45 characters */
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

static void attempt(rt_sub *sub)
{
    Seldon__Control__V1__RouteSubscribeRequest req =
        SELDON__CONTROL__V1__ROUTE_SUBSCRIBE_REQUEST__INIT;
    uint8_t body[5 + 512];
    size_t len;
    int rc;
    const sd2_header h[] = {
        {":method", 7, "POST", 4},
        {":scheme", 7, "http", 4},
        {":path", 5, SUB_PATH, sizeof(SUB_PATH) - 1},
        {":authority", 10, sub->authority, strlen(sub->authority)},
        {"content-type", 12, "application/grpc", 16},
        {"te", 2, "trailers", 8},
        {"grpc-accept-encoding", 20, "identity", 8},
        {"user-agent", 10, "seldon-router", 13},
    };

    if (sub->closing || sub->s != NULL)
        return;
    sub->attempts++;
    sub->answered = 0;
    sub->delivered = 0;
    sub->why[0] = '\0';
    sub->in.len = 0;
    req.router = (char *)sub->r->cfg.name;
    len = seldon__control__v1__route_subscribe_request__get_packed_size(&req);
    if (len > sizeof(body) - 5) { /* --name is bounded when parsed */
        outage(sub, "the router's name is too long");
        return;
    }
    seldon__control__v1__route_subscribe_request__pack(&req, body + 5);
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

/* ------------------------------------------------------------ life cycle */

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

int rt_sub_parse_host(char *host, size_t cap, int *port, const char *spec)
{
    const char *h = spec, *colon = NULL, *close;
    size_t hlen;
    long p = 9002;
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
        return rt_numeric_host(host) ? 0 : -1;
    return rt_numeric_host(host) || host_name(host, hlen) ? 0 : -1;
}

int rt_sub_new(rt_sub **out, router *r, uv_loop_t *loop)
{
    rt_sub *sub;
    sd2_opts o;
    *out = NULL;
    sub = sdd_calloc(1, sizeof(*sub));
    if (sub == NULL)
        return SELDON_ENOMEM;
    sub->r = r;
    sub->loop = loop;
    if (rt_sub_parse_host(sub->host, sizeof(sub->host), &sub->port, r->cfg.scheduler_host) != 0) {
        sdd_free(sub);
        return sdd_error(SELDON_EINVAL, "--scheduler-host: bad address '%s'",
                         r->cfg.scheduler_host);
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
    sub->rng = (uint64_t)rt_now_ns() ^ ((uint64_t)getpid() << 29) ^ 0x9e3779b97f4a7c15ull;
    set_connected(sub, 0);
    *out = sub;
    return 0;
}

void rt_sub_start(void *arg)
{
    attempt(arg);
}

static void sub_freed(rt_sub *sub)
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

void rt_sub_close(void *arg)
{
    rt_sub *sub = arg;
    sub->closing = 1;
    sub->handles = 2;
    uv_close((uv_handle_t *)&sub->timer, timer_closed);
    /* Its stream, if any, closes with it (on_close sees closing and stops there). */
    sd2_client_close(sub->h2c, client_closed, sub);
}
