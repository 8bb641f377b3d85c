/*
 * h2_testd: a transparent gRPC proxy built on the h2c transport, for test_h2.py.
 * Each stream that the server side accepts is forwarded on the same loop to the
 * upstream through the client side: headers, data and trailers both ways, with
 * flow control carried across (a chunk is consumed once the other side queued
 * it below its limit). Bodies are never decoded.
 *
 * The response gains "x-seldon-route: <upstream>" and "x-h2-metadata: <keys>",
 * the request's custom metadata names as read through the transport's list.
 * An upstream failure becomes a gRPC status: UNAVAILABLE (refused, reset,
 * GOAWAY, closed), DEADLINE_EXCEEDED (timeout), with the reason in grpc-message.
 *
 * Flags: --host A --port N --upstream HOST:PORT [--request-timeout-ms N]
 *        [--connect-timeout-ms N] [--queue-limit N] [--window N] [--adopt]
 *        [--upstream-max-streams N] [--upstream-max-conns N] [--idle-timeout-ms N]
 *        [--fail-every N] [--one-port] [--forward-only] [--log-level L] [--help]
 * --adopt: accept connections here and hand them to sd2_server_adopt() after
 * reading the preface, as the HTTP/1.1 server does on a shared port.
 * --one-port: the daemons/common HTTP/1.1 server listens, answers REST with "hello", and
 * hands h2c connections (the prior-knowledge preface) over to sd2_server_adopt().
 * --fail-every N: every Nth allocation through libseldon's hooks fails once serving;
 * SIGUSR1 stops that.
 * Prints "listening on <port>" once ready. SIGTERM/SIGINT: drain, exit 0.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h2.h"
#include "http_server.h"
#include "log.h"
#include "sdd.h"

static struct {
    uv_loop_t *loop;
    sd2_server *srv;
    sd2_client *cl;
    sd2_upstream *up;
    char route[96];
    uint64_t request_timeout_ms;
    uv_signal_t sigterm, sigint, sigusr1;
    uv_async_t stop_async; /* --one-port: the main thread asks the loop to stop */
    sdh_server *http;      /* --one-port: the HTTP/1.1 server that hands h2c over */
    int one_port;
    uv_timer_t stop_timer;
    uv_tcp_t adopt_listener;
    int adopt, stopping;
} g;

/* --fail-every N: every Nth allocation through libseldon's hooks (the transport's and
 * nghttp2's) fails, once serving, so that tests reach the out-of-memory paths. */
static struct {
    uint64_t every, count;
} failing;

static void *fail_malloc(void *ud, size_t size)
{
    (void)ud;
    if (failing.every && ++failing.count % failing.every == 0)
        return NULL;
    return malloc(size);
}

static void *fail_realloc(void *ud, void *ptr, size_t size)
{
    (void)ud;
    if (failing.every && ++failing.count % failing.every == 0)
        return NULL;
    return realloc(ptr, size);
}

static void fail_free(void *ud, void *ptr)
{
    (void)ud;
    free(ptr);
}

typedef struct pair {
    sd2_stream *down, *up;
    size_t down_owed, up_owed; /* received, forwarded, not yet consumed */
    int down_done;             /* the response to the client is complete */
    char meta[512];
    size_t meta_len;
} pair;

static void pair_maybe_free(pair *p)
{
    if (p->down == NULL && p->up == NULL)
        free(p);
}

/* --- Client side of the proxy (down) ------------------------------------------ */

static void down_data(sd2_stream *s, void *ud, const uint8_t *data, size_t len)
{
    pair *p = ud;
    int rv = p->up ? sd2_write(p->up, data, len) : -1;
    sdd_log(SELDON_LOG_TRACE, "down %d: %zu bytes -> %d", (int)sd2_stream_id(s), len, rv);
    if (rv == 1) {
        /* The event tests wait for: from here the client's window runs out. */
        if (p->down_owed == 0)
            sdd_log(SELDON_LOG_DEBUG, "down %d: upstream full, holding the client's data",
                    (int)sd2_stream_id(s));
        p->down_owed += len;
    }
    else
        sd2_consume(s, len);
}

static void down_end(sd2_stream *s, void *ud, const sd2_header *tr, size_t n)
{
    pair *p = ud;
    (void)s;
    if (p->up)
        sd2_end(p->up, tr, n);
}

static void down_drain(sd2_stream *s, void *ud)
{
    pair *p = ud;
    (void)s;
    if (p->up && p->up_owed) {
        sd2_consume(p->up, p->up_owed);
        p->up_owed = 0;
    }
}

static void down_close(sd2_stream *s, void *ud, int err, uint32_t code)
{
    pair *p = ud;
    (void)s;
    sdd_log(SELDON_LOG_DEBUG, "down stream %d closed: %s (%u)", (int)sd2_stream_id(s),
            sd2_strerror(err), code);
    p->down = NULL;
    if (p->up)
        sd2_reset(p->up, SD2_H2_CANCEL);
    pair_maybe_free(p);
}

/* --- Upstream side (up) --------------------------------------------------------- */

static void up_headers(sd2_stream *s, void *ud, const sd2_header *h, size_t n, int end)
{
    pair *p = ud;
    sd2_header *hv;
    (void)s;
    if (p->down == NULL)
        return;
    hv = malloc((n + 2) * sizeof(*hv));
    if (hv == NULL) {
        sd2_reset(p->down, SD2_H2_INTERNAL_ERROR);
        return;
    }
    memcpy(hv, h, n * sizeof(*hv));
    hv[n] = (sd2_header){"x-seldon-route", 14, g.route, strlen(g.route)};
    hv[n + 1] = (sd2_header){"x-h2-metadata", 13, p->meta, p->meta_len};
    sd2_send_headers(p->down, hv, n + 2, end);
    free(hv);
    if (end)
        p->down_done = 1;
}

static void up_data(sd2_stream *s, void *ud, const uint8_t *data, size_t len)
{
    pair *p = ud;
    int rv = p->down ? sd2_write(p->down, data, len) : -1;
    sdd_log(SELDON_LOG_TRACE, "up %d: %zu bytes -> %d", (int)sd2_stream_id(s), len, rv);
    if (rv == 1)
        p->up_owed += len;
    else
        sd2_consume(s, len);
}

static void up_end(sd2_stream *s, void *ud, const sd2_header *tr, size_t n)
{
    pair *p = ud;
    (void)s;
    if (p->down && !p->down_done) {
        sd2_end(p->down, tr, n);
        p->down_done = 1;
    }
}

static void up_drain(sd2_stream *s, void *ud)
{
    pair *p = ud;
    (void)s;
    if (p->down && p->down_owed) {
        sd2_consume(p->down, p->down_owed);
        p->down_owed = 0;
    }
}

static void fail_down(pair *p, int err)
{
    char msg[256];
    sd2_header route = {"x-seldon-route", 14, g.route, strlen(g.route)};
    int32_t status = err == SD2_ETIMEOUT ? 4 : 14; /* DEADLINE_EXCEEDED : UNAVAILABLE */
    snprintf(msg, sizeof(msg), "upstream %s: %s", g.route, sd2_strerror(err));
    sd2_grpc_finish(p->down, status, msg, sd2_headers_done(p->down) ? NULL : &route,
                    sd2_headers_done(p->down) ? 0 : 1);
    p->down_done = 1;
}

static void up_close(sd2_stream *s, void *ud, int err, uint32_t code)
{
    pair *p = ud;
    (void)s;
    sdd_log(SELDON_LOG_DEBUG, "up stream closed: %s (%u)", sd2_strerror(err), code);
    p->up = NULL;
    if (p->down && !p->down_done)
        fail_down(p, err == SD2_OK ? SD2_ECLOSED : err);
    pair_maybe_free(p);
}

static const sd2_stream_cbs down_cbs = {NULL, down_data, down_end, down_drain, down_close};
static const sd2_stream_cbs up_cbs = {up_headers, up_data, up_end, up_drain, up_close};

static void on_request(void *ud, sd2_stream *s, const sd2_header *h, size_t n, int end)
{
    pair *p = calloc(1, sizeof(*p));
    const sd2_header *t;
    uint64_t timeout = g.request_timeout_ms, ms;
    size_t i;
    int rv;
    (void)ud;
    if (p == NULL) {
        sd2_reset(s, SD2_H2_INTERNAL_ERROR);
        return;
    }
    p->down = s;
    sd2_stream_bind(s, &down_cbs, p);
    for (i = 0; i < n; i++) {
        if (!sd2_grpc_is_metadata(&h[i]))
            continue;
        if (p->meta_len + h[i].name_len + 1 >= sizeof(p->meta))
            break;
        if (p->meta_len)
            p->meta[p->meta_len++] = ',';
        memcpy(p->meta + p->meta_len, h[i].name, h[i].name_len);
        p->meta_len += h[i].name_len;
    }
    t = sd2_header_find(h, n, "grpc-timeout");
    if (t != NULL && sd2_grpc_timeout_ms(&ms, t->value, t->value_len) == 0 &&
        (timeout == 0 || ms < timeout))
        timeout = ms;
    rv = sd2_request(&p->up, g.up, h, n, end, &up_cbs, p, timeout);
    if (rv < 0) {
        p->up = NULL;
        fail_down(p, rv);
    }
}

/* --- Adoption, as a one-port HTTP/1.1 server would do it ---------------------------- */

typedef struct sniff {
    uv_tcp_t tcp;
    uint8_t buf[256];
    size_t len;
} sniff;

static void sniff_closed(uv_handle_t *h)
{
    free(h->data);
}

static void sniff_release(void *owner)
{
    sniff *sn = owner;
    sn->tcp.data = sn; /* the adopter had it */
    uv_close((uv_handle_t *)&sn->tcp, sniff_closed);
}

static void sniff_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    sniff *sn = h->data;
    (void)hint;
    buf->base = (char *)sn->buf + sn->len;
    buf->len = sizeof(sn->buf) - sn->len;
}

static void sniff_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    sniff *sn = st->data;
    sd_adopt a;
    (void)buf;
    if (n < 0) {
        uv_close((uv_handle_t *)&sn->tcp, sniff_closed);
        return;
    }
    sn->len += (size_t)n;
    if (sn->len < sizeof(preface) - 1)
        return;
    uv_read_stop(st);
    if (memcmp(sn->buf, preface, sizeof(preface) - 1) != 0) {
        uv_close((uv_handle_t *)&sn->tcp, sniff_closed);
        return;
    }
    a.stream = st;
    a.initial = sn->buf;
    a.initial_len = sn->len;
    a.release = sniff_release;
    a.owner = sn;
    if (sd2_server_adopt(g.srv, &a) < 0)
        uv_close((uv_handle_t *)&sn->tcp, sniff_closed);
}

static void adopt_accept(uv_stream_t *l, int status)
{
    sniff *sn;
    if (status < 0 || (sn = calloc(1, sizeof(*sn))) == NULL)
        return;
    uv_tcp_init(g.loop, &sn->tcp);
    sn->tcp.data = sn;
    if (uv_accept(l, (uv_stream_t *)&sn->tcp) < 0 ||
        uv_read_start((uv_stream_t *)&sn->tcp, sniff_alloc, sniff_read) < 0)
        uv_close((uv_handle_t *)&sn->tcp, sniff_closed);
}

static int adopt_listen(const char *host, int port, int *bound)
{
    struct sockaddr_in sa;
    int len = sizeof(sa);
    int rv = uv_ip4_addr(host, port, &sa);
    uv_tcp_init(g.loop, &g.adopt_listener);
    if (rv == 0)
        rv = uv_tcp_bind(&g.adopt_listener, (const struct sockaddr *)&sa, 0);
    if (rv == 0)
        rv = uv_listen((uv_stream_t *)&g.adopt_listener, 256, adopt_accept);
    if (rv == 0)
        rv = uv_tcp_getsockname(&g.adopt_listener, (struct sockaddr *)&sa, &len);
    *bound = ntohs(sa.sin_port);
    return rv;
}

/* --- Start and stop --------------------------------------------------------------------- */

static void client_closed(void *ud)
{
    (void)ud;
    if (g.one_port) {
        uv_close((uv_handle_t *)&g.stop_async, NULL);
    } else {
        uv_close((uv_handle_t *)&g.sigterm, NULL);
        uv_close((uv_handle_t *)&g.sigint, NULL);
    }
    uv_close((uv_handle_t *)&g.sigusr1, NULL);
    /* After libuv restored the defaults: a repeated signal must not kill the process on
     * its way out. */
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    uv_close((uv_handle_t *)&g.stop_timer, NULL);
    if (g.adopt)
        uv_close((uv_handle_t *)&g.adopt_listener, NULL);
}

static void server_closed(void *ud)
{
    (void)ud;
    g.srv = NULL;
    sd2_client_close(g.cl, client_closed, NULL);
}

static void stop_now(uv_timer_t *t)
{
    (void)t;
    /* Drain took too long (a client that never reads): close what is left. */
    if (g.srv)
        sd2_server_close(g.srv, server_closed, NULL);
}

static void stop(void)
{
    if (g.stopping++)
        return;
    sdd_log(SELDON_LOG_INFO, "stopping");
    if (g.adopt)
        uv_read_stop((uv_stream_t *)&g.adopt_listener);
    uv_timer_start(&g.stop_timer, stop_now, 5000, 0);
    sd2_server_drain(g.srv, server_closed, NULL);
}

static void on_signal(uv_signal_t *h, int sig)
{
    (void)h;
    (void)sig;
    stop();
}

static void on_stop_async(uv_async_t *h)
{
    (void)h;
    stop();
}

/* --- One port: REST answered here, h2c handed over by the HTTP/1.1 server ------------- */

static void rest_hello(void *ud, sdh_req *req, const sdh_request *r)
{
    static const sdh_header ctype = {"content-type", 12, "text/plain", 10};
    seldon_buf b = SELDON_BUF_INIT;
    (void)ud;
    (void)r;
    if (seldon_buf_reserve(&b, 5) == 0) {
        memcpy(b.data, "hello", 5);
        b.len = 5;
    }
    sdh_respond(req, 200, &ctype, 1, &b);
}

static void *loop_thread(void *arg)
{
    (void)arg;
    uv_run(g.loop, UV_RUN_DEFAULT);
    return NULL;
}

static void on_sigusr1(uv_signal_t *h, int sig)
{
    (void)h;
    (void)sig;
    failing.every = 0;
    sdd_log(SELDON_LOG_INFO, "allocations no longer fail");
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0')
        return -1;
    *out = v;
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: h2_testd --upstream HOST:PORT [--host A] [--port N]\n"
               "       [--request-timeout-ms N] [--connect-timeout-ms N] [--queue-limit N]\n"
               "       [--window N] [--adopt] [--upstream-max-streams N]\n"
               "       [--upstream-max-conns N] [--idle-timeout-ms N] [--fail-every N]\n"
               "       [--one-port] [--forward-only] [--log-level L]\n"
               "A transparent h2c gRPC proxy for the transport's tests.\n");
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *upstream = NULL;
    uint64_t port = 0, v;
    int32_t level = SELDON_LOG_INFO;
    sd2_opts opts, copts;
    sd2_server_cbs cbs = {on_request};
    char uhost[64];
    const char *colon;
    int i, bound, rv;

    memset(&opts, 0, sizeof(opts));
    memset(&copts, 0, sizeof(copts));
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--adopt") == 0) {
            g.adopt = 1;
            continue;
        } else if (strcmp(a, "--one-port") == 0) {
            g.one_port = 1;
            continue;
        } else if (strcmp(a, "--forward-only") == 0) {
            copts.forward_only = 1;
            continue;
        }
        if (val == NULL) {
            usage(stderr);
            return 2;
        }
        i++;
        if (strcmp(a, "--host") == 0) {
            host = val;
        } else if (strcmp(a, "--upstream") == 0) {
            upstream = val;
        } else if (strcmp(a, "--log-level") == 0 && sdd_log_level_parse(val) >= 0) {
            level = sdd_log_level_parse(val);
        } else if (parse_u64(val, &v) < 0) {
            fprintf(stderr, "h2_testd: %s: not a number: %s\n", a, val);
            return 2;
        } else if (strcmp(a, "--port") == 0 && v < 65536) {
            port = v;
        } else if (strcmp(a, "--request-timeout-ms") == 0) {
            g.request_timeout_ms = v;
        } else if (strcmp(a, "--connect-timeout-ms") == 0) {
            opts.connect_timeout_ms = v;
        } else if (strcmp(a, "--queue-limit") == 0) {
            opts.stream_queue_limit = v;
        } else if (strcmp(a, "--window") == 0 && v <= 0x7fffffff) {
            opts.stream_window = (uint32_t)v;
        } else if (strcmp(a, "--fail-every") == 0) {
            failing.every = v;
        } else if (strcmp(a, "--idle-timeout-ms") == 0) {
            opts.idle_timeout_ms = v;
        } else if (strcmp(a, "--upstream-max-streams") == 0 && v <= 0xffffffffu) {
            copts.max_concurrent_streams = (uint32_t)v;
        } else if (strcmp(a, "--upstream-max-conns") == 0 && v <= 0xffffffffu) {
            copts.max_conns_per_upstream = (uint32_t)v;
        } else {
            fprintf(stderr, "h2_testd: unknown or bad flag %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    colon = upstream ? strrchr(upstream, ':') : NULL;
    if (colon == NULL || (size_t)(colon - upstream) >= sizeof(uhost) ||
        parse_u64(colon + 1, &v) < 0 || v == 0 || v > 65535) {
        fprintf(stderr, "h2_testd: --upstream: expected HOST:PORT\n");
        return 2;
    }
    memcpy(uhost, upstream, (size_t)(colon - upstream));
    uhost[colon - upstream] = '\0';
    snprintf(g.route, sizeof(g.route), "%s", upstream);
    copts.connect_timeout_ms = opts.connect_timeout_ms;
    copts.stream_queue_limit = opts.stream_queue_limit;
    copts.stream_window = opts.stream_window;
    sdd_log_init("h2_testd", level);

    g.loop = uv_default_loop();
    if (sd2_server_new(&g.srv, g.loop, &opts, &cbs, NULL) < 0 ||
        sd2_client_new(&g.cl, g.loop, &copts) < 0 ||
        sd2_upstream_get(&g.up, g.cl, uhost, (int)v) < 0) {
        fprintf(stderr, "h2_testd: start-up failed: %s\n", seldon_last_error());
        return 1;
    }
    if (g.one_port) {
        sdh_config hc;
        memset(&hc, 0, sizeof(hc));
        hc.host = host;
        hc.port = (int)port;
        hc.max_body = 1 << 20;
        hc.handler = rest_hello;
        hc.h2_adopt = sd2_server_adopt;
        hc.h2_user_data = g.srv;
        if (sdh_server_new(&g.http, &hc) < 0 || sdh_server_listen(g.http, g.loop) < 0) {
            fprintf(stderr, "h2_testd: %s\n", seldon_last_error());
            return 1;
        }
        bound = sdh_server_port(g.http);
    } else if (g.adopt) {
        rv = adopt_listen(host, (int)port, &bound);
        if (rv != 0) {
            fprintf(stderr, "h2_testd: listen: %s\n", uv_strerror(rv));
            return 1;
        }
    } else {
        if (sd2_server_listen(g.srv, host, (int)port) < 0) {
            fprintf(stderr, "h2_testd: %s\n", seldon_last_error());
            return 1;
        }
        bound = sd2_server_port(g.srv);
    }
    uv_timer_init(g.loop, &g.stop_timer);
    if (g.one_port) {
        uv_async_init(g.loop, &g.stop_async, on_stop_async);
    } else {
        uv_signal_init(g.loop, &g.sigterm);
        uv_signal_init(g.loop, &g.sigint);
        uv_signal_start(&g.sigterm, on_signal, SIGTERM);
        uv_signal_start(&g.sigint, on_signal, SIGINT);
    }
    uv_signal_init(g.loop, &g.sigusr1);
    uv_signal_start(&g.sigusr1, on_sigusr1, SIGUSR1);
    signal(SIGPIPE, SIG_IGN);
    if (failing.every) {
        seldon_allocator alloc = {SELDON_ALLOCATOR_VERSION, fail_malloc, fail_realloc, fail_free,
                                  NULL};
        uint64_t every = failing.every;
        /* Serving from here: what was allocated so far came from the same malloc. */
        failing.every = 0;
        seldon_set_allocator(&alloc);
        failing.every = every;
    }
    if (g.one_port) {
        /* The HTTP/1.1 server stops from a thread that runs no loop: the loop gets its own. */
        sigset_t set;
        pthread_t t;
        int sig;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
        if (pthread_create(&t, NULL, loop_thread, NULL) != 0) {
            fprintf(stderr, "h2_testd: cannot start the loop thread\n");
            return 1;
        }
        printf("listening on %d\n", bound);
        fflush(stdout);
        sigwait(&set, &sig);
        sdh_server_stop(g.http, 2000); /* adopted connections stay: the h2c server drains */
        uv_async_send(&g.stop_async);
        pthread_join(t, NULL);
        sdh_server_free(g.http);
    } else {
        printf("listening on %d\n", bound);
        fflush(stdout);
        uv_run(g.loop, UV_RUN_DEFAULT);
    }
    rv = uv_loop_close(g.loop);
    if (rv != 0)
        fprintf(stderr, "h2_testd: loop not empty at exit\n");
    sdd_log(SELDON_LOG_INFO, "stopped");
    return rv == 0 ? 0 : 1;
}
