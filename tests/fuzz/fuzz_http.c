/*
 * libFuzzer target for the HTTP/1.1 request framing of the server transport
 * (daemons/common/http_*.c): the input is the byte stream a client sends on one
 * connection. The server runs on a loop of this thread, on loopback; the harness
 * writes the input, half-closes, and reads until the server closes, driving the
 * loop in between. Routes exercise both modes:
 *   - paths starting with /s are taken in streaming mode by the head handler and
 *     echoed as they arrive (chunked), with a pause and resume on each piece;
 *   - /r is streamed and answered at once, before its body;
 *   - anything else is answered whole, inline, echoing the body.
 * An input opening with the HTTP/2 preface goes to an adopter that lets it go.
 * The property: no crash, no leak, no hang (a hang aborts after a bound), the
 * server closes the connection once the client has said all, and then nothing of
 * it is left on the loop.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http_internal.h" /* to check that every connection is gone after each input */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uv_loop_t loop;
static sdh_server *srv;
static int port;
static uv_idle_t resumer;
static sdh_req *paused; /* a streamed request to resume on the next loop turn */
static int verbose;     /* FUZZ_HTTP_SHOW=1: print what the server answered */

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_http: %s\n", what);
    abort();
}

static void on_resume(uv_idle_t *h)
{
    sdh_req *r = paused;
    uv_idle_stop(h);
    paused = NULL;
    if (r != NULL)
        sdh_stream_resume(r);
}

static void echo_body(void *ud, sdh_req *req, const uint8_t *p, size_t n)
{
    seldon_buf b = SELDON_BUF_INIT;
    (void)ud;
    if (seldon_buf_reserve(&b, n) == 0) {
        memcpy(b.data, p, n);
        b.len = n;
        sdh_stream_write(req, &b);
    }
    if (paused == NULL) {
        paused = req;
        sdh_stream_pause(req);
        uv_idle_start(&resumer, on_resume);
    }
}

static void echo_end(void *ud, sdh_req *req)
{
    (void)ud;
    if (paused == req)
        paused = NULL;
    sdh_stream_end(req);
}

static void echo_abort(void *ud, sdh_req *req)
{
    (void)ud;
    if (paused == req)
        paused = NULL;
}

static const sdh_stream_ops ops = {echo_body, echo_end, NULL, echo_abort};

static void head(void *ud, sdh_req *req, const sdh_request *r)
{
    (void)ud;
    if (r->path_len >= 2 && r->path[0] == '/' && r->path[1] == 'r') {
        if (sdh_stream_take(req, &ops, NULL) == 0)
            sdh_respond_error(req, 404, "rejected");
    } else if (r->path_len >= 2 && r->path[0] == '/' && r->path[1] == 's') {
        if (sdh_stream_take(req, &ops, NULL) == 0)
            sdh_stream_respond(req, 200, r->headers, r->nheaders > 2 ? 2 : r->nheaders, -1);
    }
}

static void handle(void *ud, sdh_req *req, const sdh_request *r)
{
    seldon_buf b = SELDON_BUF_INIT;
    (void)ud;
    if (r->body_len > 0 && seldon_buf_reserve(&b, r->body_len) == 0) {
        memcpy(b.data, r->body, r->body_len);
        b.len = r->body_len;
    }
    sdh_respond(req, 200, r->headers, r->nheaders > 3 ? 3 : r->nheaders, &b);
}

static int adopt(void *ud, const sd_adopt *a)
{
    (void)ud;
    a->release(a->owner);
    return 0;
}

static void setup(void)
{
    sdh_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.host = "127.0.0.1";
    cfg.max_body = 1 << 16;
    cfg.max_buffered = 1 << 14; /* small, so that backpressure happens */
    cfg.idle_timeout_ms = 10000;
    cfg.request_timeout_ms = 10000;
    cfg.handler = handle;
    cfg.head_handler = head;
    cfg.h2_adopt = adopt;
    if (uv_loop_init(&loop) != 0 || sdh_server_new(&srv, &cfg) != 0 ||
        sdh_server_listen(srv, &loop) != 0)
        fail("cannot start the server");
    uv_idle_init(&loop, &resumer);
    port = sdh_server_port(srv);
    verbose = getenv("FUZZ_HTTP_SHOW") != NULL;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sockaddr_in a;
    size_t sent = 0;
    int fd, one = 1, eof = 0, shut = 0;
    double deadline;
    char sink[65536];

    if (srv == NULL)
        setup();
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
        fail("socket");
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 && errno != EINPROGRESS)
        fail("connect");
    deadline = now_s() + 20.0;
    while (!eof) {
        struct pollfd p = {fd, POLLIN, 0};
        ssize_t n;
        if (now_s() > deadline)
            fail("the server neither answered nor closed: a hang");
        uv_run(&loop, UV_RUN_NOWAIT);
        if (sent < size) {
            n = send(fd, data + sent, size - sent, MSG_NOSIGNAL);
            if (n > 0)
                sent += (size_t)n;
            else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOTCONN)
                sent = size; /* the server closed early: fine */
        }
        if (sent == size && !shut) {
            shutdown(fd, SHUT_WR);
            shut = 1;
        }
        for (;;) {
            n = recv(fd, sink, sizeof(sink), 0);
            if (n > 0) {
                if (verbose)
                    fwrite(sink, 1, (size_t)n, stderr);
                continue;
            }
            if (n == 0 ||
                (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOTCONN && errno != EINTR))
                eof = 1;
            break;
        }
        if (!eof)
            poll(&p, 1, 1);
    }
    close(fd);
    /* the server finishes with its side of the connection, and frees it */
    while (srv->loops[0]->conns != NULL || srv->loops[0]->inflight != 0) {
        if (now_s() > deadline)
            fail("a connection or request outlived its client: a leak");
        uv_run(&loop, UV_RUN_NOWAIT);
        poll(NULL, 0, 1);
    }
    return 0;
}
