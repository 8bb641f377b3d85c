/*
 * http_testd: the HTTP transport behind a few routes, for test_http.py.
 *
 *   GET  /hello      200 "hello"
 *   POST /echo       200, the body echoed, x-body-length: <n>
 *   GET  /slow?ms=N  200 "slow", answered from another thread after N ms
 *   GET  /slow/stats 200 "queued=N answered=M": /slow requests handed to the
 *                    worker and answered by it so far
 *   GET  /headers    200, the request headers as "name: value\n" lines
 *   GET  /loop       200 "same" when the request's loop is the one running the handler
 *   GET  /posted     200 "posted", answered from a function posted to the handler's loop
 *
 * Streaming mode (taken by the head handler):
 *   POST /stream/echo[?len]  the body echoed as it arrives, chunked (with ?len: under
 *                            the request's Content-Length); reading pauses while the
 *                            response queue is full and resumes on drain
 *   POST /stream/count       the body counted as it arrives: 200 "count=N"
 *   POST /stream/reject      404 at once, before the body
 *
 * A connection that opens with the HTTP/2 preface goes to a tiny adopter: it reads
 * up to the first newline after the preface and answers "adopted: <that line>\n".
 *
 * Flags: --host A --port N --io-threads N --max-body N --idle-ms N --grace-ms N
 * --request-ms N --max-buffered N --h2 0|1 --head 0|1.
 * Prints "listening on <port>" once ready. SIGTERM/SIGINT: graceful stop, exit 0.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http_server.h"
#include "loops.h"

/* /slow requests wait here for their deadline, answered by one worker thread. */
typedef struct slow_item {
    struct slow_item *next;
    sdh_req *req;
    uint64_t due_ns;
} slow_item;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    slow_item *items;
    int quit;
    unsigned long long queued, answered; /* for GET /slow/stats: tests wait on these */
} slow = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0, 0, 0};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int buf_set(seldon_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    if (seldon_buf_reserve(b, n) < 0)
        return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

static void respond_text(sdh_req *req, const char *text, size_t n)
{
    static const sdh_header ctype = {"content-type", 12, "text/plain", 10};
    seldon_buf b = SELDON_BUF_INIT;
    if (buf_set(&b, text, n) < 0) {
        sdh_respond_error(req, 500, "out of memory");
        return;
    }
    sdh_respond(req, 200, &ctype, 1, &b);
}

static void *slow_worker(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&slow.mu);
    for (;;) {
        slow_item *it, **best = NULL, **pp;
        uint64_t now = now_ns();
        for (pp = &slow.items; *pp != NULL; pp = &(*pp)->next)
            if (best == NULL || (*pp)->due_ns < (*best)->due_ns)
                best = pp;
        if (best == NULL) {
            if (slow.quit)
                break;
            pthread_cond_wait(&slow.cv, &slow.mu);
            continue;
        }
        if ((*best)->due_ns > now && !slow.quit) {
            uint64_t due = (*best)->due_ns;
            struct timespec ts = {(time_t)(due / 1000000000u), (long)(due % 1000000000u)};
            pthread_cond_timedwait(&slow.cv, &slow.mu, &ts);
            continue;
        }
        it = *best;
        *best = it->next;
        pthread_mutex_unlock(&slow.mu);
        respond_text(it->req, "slow", 4);
        free(it);
        pthread_mutex_lock(&slow.mu);
        slow.answered++;
    }
    pthread_mutex_unlock(&slow.mu);
    return NULL;
}

static sdl_loops *loops;

static void answer_posted(void *arg)
{
    respond_text(arg, "posted", 6);
}

static int path_is(const sdh_request *r, const char *method, const char *path)
{
    return r->method_len == strlen(method) && memcmp(r->method, method, r->method_len) == 0 &&
           r->path_len == strlen(path) && memcmp(r->path, path, r->path_len) == 0;
}

static uint64_t query_ms(const sdh_request *r)
{
    uint64_t ms = 0;
    size_t i;
    if (r->query_len < 3 || memcmp(r->query, "ms=", 3) != 0)
        return 0;
    for (i = 3; i < r->query_len && r->query[i] >= '0' && r->query[i] <= '9'; i++)
        ms = ms * 10 + (uint64_t)(r->query[i] - '0');
    return ms;
}

static void handle_echo(sdh_req *req, const sdh_request *r)
{
    sdh_header hs[2];
    char len[24];
    seldon_buf b = SELDON_BUF_INIT;
    size_t nh = 1, ctlen = 0;
    const char *ct = sdh_request_header(r, "content-type", &ctlen);

    if (buf_set(&b, r->body, r->body_len) < 0) {
        sdh_respond_error(req, 500, "out of memory");
        return;
    }
    hs[0].name = "x-body-length";
    hs[0].name_len = 13;
    hs[0].value = len;
    hs[0].value_len = (size_t)snprintf(len, sizeof(len), "%zu", r->body_len);
    if (ct != NULL) {
        hs[1].name = "content-type";
        hs[1].name_len = 12;
        hs[1].value = ct;
        hs[1].value_len = ctlen;
        nh = 2;
    }
    sdh_respond(req, 200, hs, nh, &b);
}

static void handle_headers(sdh_req *req, const sdh_request *r)
{
    seldon_buf b = SELDON_BUF_INIT;
    size_t i;
    for (i = 0; i < r->nheaders; i++) {
        const sdh_header *h = &r->headers[i];
        if (buf_set(&b, h->name, h->name_len) < 0 || buf_set(&b, ": ", 2) < 0 ||
            buf_set(&b, h->value, h->value_len) < 0 || buf_set(&b, "\n", 1) < 0) {
            seldon_buf_free(&b);
            sdh_respond_error(req, 500, "out of memory");
            return;
        }
    }
    sdh_respond(req, 200, NULL, 0, &b);
}

static void handle(void *user_data, sdh_req *req, const sdh_request *r)
{
    (void)user_data;
    if (path_is(r, "GET", "/hello")) {
        respond_text(req, "hello", 5);
    } else if (path_is(r, "POST", "/echo")) {
        handle_echo(req, r);
    } else if (path_is(r, "GET", "/headers")) {
        handle_headers(req, r);
    } else if (path_is(r, "GET", "/loop")) {
        int i = sdl_loops_current(loops);
        if (i >= 0 && sdl_loops_loop(loops, i) == sdh_req_loop(req))
            respond_text(req, "same", 4);
        else
            respond_text(req, "other", 5);
    } else if (path_is(r, "GET", "/posted")) {
        if (sdl_loops_post(loops, sdl_loops_current(loops), answer_posted, req) < 0)
            sdh_respond_error(req, 500, "cannot post");
    } else if (path_is(r, "GET", "/slow/stats")) {
        char text[64];
        int n;
        pthread_mutex_lock(&slow.mu);
        n = snprintf(text, sizeof(text), "queued=%llu answered=%llu", slow.queued, slow.answered);
        pthread_mutex_unlock(&slow.mu);
        respond_text(req, text, (size_t)n);
    } else if (path_is(r, "GET", "/slow")) {
        slow_item *it = malloc(sizeof(*it));
        if (it == NULL) {
            sdh_respond_error(req, 500, "out of memory");
            return;
        }
        it->req = req;
        it->due_ns = now_ns() + query_ms(r) * 1000000u;
        pthread_mutex_lock(&slow.mu);
        it->next = slow.items;
        slow.items = it;
        slow.queued++;
        pthread_cond_signal(&slow.cv);
        pthread_mutex_unlock(&slow.mu);
    } else {
        sdh_respond_error(req, 404, "no such route");
    }
}

/* ---------------------------------------------------------------- streaming routes */

static void echo_body(void *ud, sdh_req *req, const uint8_t *data, size_t len)
{
    seldon_buf b = SELDON_BUF_INIT;
    (void)ud;
    if (buf_set(&b, data, len) < 0)
        return; /* the response comes out short; the connection then closes */
    if (sdh_stream_write(req, &b) == 1)
        sdh_stream_pause(req); /* the client reads slower than it sends */
}

static void echo_drain(void *ud, sdh_req *req)
{
    (void)ud;
    sdh_stream_resume(req);
}

static void echo_end(void *ud, sdh_req *req)
{
    (void)ud;
    sdh_stream_end(req);
}

static void stream_abort(void *ud, sdh_req *req)
{
    (void)ud;
    (void)req;
}

static const sdh_stream_ops echo_ops = {echo_body, echo_end, echo_drain, stream_abort};

typedef struct counter {
    uint64_t n;
} counter;

static void count_body(void *ud, sdh_req *req, const uint8_t *data, size_t len)
{
    (void)req;
    (void)data;
    ((counter *)ud)->n += len;
}

static void count_end(void *ud, sdh_req *req)
{
    char text[40];
    int n = snprintf(text, sizeof(text), "count=%llu", (unsigned long long)((counter *)ud)->n);
    free(ud);
    respond_text(req, text, (size_t)n);
}

static void count_abort(void *ud, sdh_req *req)
{
    (void)req;
    free(ud);
}

static const sdh_stream_ops count_ops = {count_body, count_end, NULL, count_abort};

static void head(void *user_data, sdh_req *req, const sdh_request *r)
{
    (void)user_data;
    if (path_is(r, "POST", "/stream/echo")) {
        static const sdh_header ctype = {"content-type", 12, "application/octet-stream", 24};
        int64_t len =
            r->query_len >= 3 && memcmp(r->query, "len", 3) == 0 ? sdh_stream_body_length(req) : -1;
        if (sdh_stream_take(req, &echo_ops, NULL) == 0)
            sdh_stream_respond(req, 200, &ctype, 1, len);
    } else if (path_is(r, "POST", "/stream/count")) {
        counter *k = calloc(1, sizeof(*k));
        if (k != NULL && sdh_stream_take(req, &count_ops, k) != 0)
            free(k);
    } else if (path_is(r, "POST", "/stream/reject")) {
        if (sdh_stream_take(req, &echo_ops, NULL) == 0)
            sdh_respond_error(req, 404, "rejected before the body");
    }
}

/* ---------------------------------------------------------------- h2c adopter */

typedef struct adopted {
    sd_adopt a;
    uv_write_t w;
    char got[256];
    size_t len, skip; /* skip: preface bytes still to drop */
    char out[300];
    int answered;
} adopted;

static void adopted_written(uv_write_t *w, int status)
{
    adopted *x = w->data;
    (void)status;
    x->a.release(x->a.owner);
    free(x);
}

/* Takes bytes after the preface until a newline, then answers once. */
static void adopted_take(adopted *x, const uint8_t *p, size_t n)
{
    size_t i;
    uv_buf_t b;
    for (i = 0; i < n && !x->answered; i++) {
        if (x->skip > 0) {
            x->skip--;
            continue;
        }
        if (p[i] == '\n' || x->len == sizeof(x->got) - 1) {
            x->answered = 1;
            uv_read_stop(x->a.stream);
            b.base = x->out;
            b.len =
                (size_t)snprintf(x->out, sizeof(x->out), "adopted: %.*s\n", (int)x->len, x->got);
            x->w.data = x;
            if (uv_write(&x->w, x->a.stream, &b, 1, adopted_written) < 0) {
                x->a.release(x->a.owner);
                free(x);
            }
            return;
        }
        x->got[x->len++] = (char)p[i];
    }
}

static void adopted_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static _Thread_local char tl[4096]; /* taken at once by adopted_read() */
    (void)h;
    (void)suggested;
    buf->base = tl;
    buf->len = sizeof(tl);
}

static void adopted_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    adopted *x = s->data;
    if (n > 0) {
        adopted_take(x, (const uint8_t *)buf->base, (size_t)n);
    } else if (n < 0 && !x->answered) {
        uv_read_stop(s);
        x->a.release(x->a.owner);
        free(x);
    }
}

static int adopt(void *user_data, const sd_adopt *a)
{
    adopted *x = calloc(1, sizeof(*x));
    (void)user_data;
    if (x == NULL)
        return SELDON_ENOMEM;
    x->a = *a;
    x->skip = 24; /* "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" */
    a->stream->data = x;
    adopted_take(x, a->initial, a->initial_len);
    if (!x->answered && uv_read_start(a->stream, adopted_alloc, adopted_read) < 0) {
        free(x);
        return SELDON_EIO;
    }
    return 0;
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

int main(int argc, char **argv)
{
    sdh_config cfg;
    sdh_server *srv = NULL;
    pthread_condattr_t ca;
    pthread_t worker;
    sigset_t sigs;
    uint64_t v, grace_ms = 10000;
    int i, sig = 0, nloops = 1, rc = 1;

    memset(&cfg, 0, sizeof(cfg));
    cfg.host = "127.0.0.1";
    cfg.max_body = 1 << 20;
    cfg.handler = handle;
    cfg.head_handler = head;
    cfg.h2_adopt = adopt;
    for (i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *val = argv[i + 1];
        if (strcmp(k, "--host") == 0) {
            cfg.host = val;
            continue;
        }
        if (parse_u64(val, &v) < 0)
            goto usage;
        if (strcmp(k, "--port") == 0 && v <= 65535)
            cfg.port = (int)v;
        else if (strcmp(k, "--io-threads") == 0 && v >= 1 && v <= 64)
            nloops = (int)v;
        else if (strcmp(k, "--request-ms") == 0)
            cfg.request_timeout_ms = v;
        else if (strcmp(k, "--max-buffered") == 0)
            cfg.max_buffered = (size_t)v;
        else if (strcmp(k, "--h2") == 0 && v <= 1)
            cfg.h2_adopt = v ? adopt : NULL;
        else if (strcmp(k, "--head") == 0 && v <= 1)
            cfg.head_handler = v ? head : NULL;
        else if (strcmp(k, "--max-body") == 0)
            cfg.max_body = (size_t)v;
        else if (strcmp(k, "--idle-ms") == 0)
            cfg.idle_timeout_ms = v;
        else if (strcmp(k, "--grace-ms") == 0)
            grace_ms = v;
        else
            goto usage;
    }
    if (i != argc)
        goto usage;

    /* Block the stop signals before any thread starts, so that sigwait() gets them. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_destroy(&slow.cv);
    pthread_cond_init(&slow.cv, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&worker, NULL, slow_worker, NULL) != 0) {
        fprintf(stderr, "http_testd: cannot start the worker thread\n");
        return 1;
    }
    /* The loops are the main's; the server attaches a listener to each. */
    if (sdl_loops_new(&loops, nloops) < 0 || sdh_server_new(&srv, &cfg) < 0)
        goto out;
    for (i = 0; i < nloops; i++)
        if (sdh_server_listen(srv, sdl_loops_loop(loops, i)) < 0)
            goto out;
    if (sdl_loops_start(loops) < 0)
        goto out;
    printf("listening on %d\n", sdh_server_port(srv));
    fflush(stdout);

    while (sigwait(&sigs, &sig) != 0)
        ;
    /* The worker keeps answering while the server drains; then it stops too. */
    sdh_server_stop(srv, grace_ms);
    rc = 0;
out:
    pthread_mutex_lock(&slow.mu);
    slow.quit = 1;
    pthread_cond_signal(&slow.cv);
    pthread_mutex_unlock(&slow.mu);
    pthread_join(worker, NULL);
    sdl_loops_stop(loops);
    sdl_loops_join(loops);
    sdh_server_free(srv);
    sdl_loops_free(loops);
    return rc;

usage:
    fprintf(stderr,
            "usage: %s [--host A] [--port N] [--io-threads N] [--max-body N] "
            "[--idle-ms N] [--grace-ms N] [--request-ms N] [--max-buffered N] [--h2 0|1] "
            "[--head 0|1]\n",
            argv[0]);
    return 2;
}
