/*
 * Fuzz target for the h2c server: the input is what a client sends after the
 * connection preface. The connection is one end of a socketpair, adopted by an
 * sd2_server (adopt.h) with the preface and the input as the bytes already read;
 * every request is answered as a gRPC server would (headers, its body echoed,
 * trailers), so the send path runs too. Then the server closes, and everything
 * must be released: ASan and LeakSanitizer check the rest.
 *
 * Built with tests/fuzz/replay.c as a CTest replay of corpus/; with libFuzzer
 * when configured with SELDON_FUZZ.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "h2.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

typedef struct owner {
    uv_tcp_t tcp;
    int released, closed;
} owner;

static void on_owner_closed(uv_handle_t *h)
{
    ((owner *)h->data)->closed = 1;
}

static void release(void *o)
{
    owner *ow = o;
    ow->released = 1;
    ow->tcp.data = ow;
    uv_close((uv_handle_t *)&ow->tcp, on_owner_closed);
}

static void echo_data(sd2_stream *s, void *ud, const uint8_t *d, size_t n)
{
    (void)ud;
    if (!sd2_headers_done(s))
        sd2_grpc_send_headers(s, NULL, 0);
    sd2_write(s, d, n);
    sd2_consume(s, n);
}

static void echo_end(sd2_stream *s, void *ud, const sd2_header *tr, size_t n)
{
    (void)ud;
    (void)tr;
    (void)n;
    sd2_grpc_finish(s, 0, "done", NULL, 0);
}

static const sd2_stream_cbs echo = {NULL, echo_data, echo_end, NULL, NULL};

static void on_request(void *ud, sd2_stream *s, const sd2_header *h, size_t n, int end)
{
    const sd2_header *t = sd2_header_find(h, n, "grpc-timeout");
    uint64_t ms;
    size_t i, meta = 0;
    (void)ud;
    for (i = 0; i < n; i++)
        meta += (size_t)sd2_grpc_is_metadata(&h[i]);
    if (t != NULL)
        sd2_grpc_timeout_ms(&ms, t->value, t->value_len);
    if (end) {
        sd2_grpc_finish(s, meta > 0 ? 3 : 0, "no body\xff", NULL, 0);
        return;
    }
    sd2_stream_bind(s, &echo, NULL);
}

static void server_done(void *flag)
{
    *(int *)flag = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uv_loop_t loop;
    sd2_server *srv = NULL;
    sd2_server_cbs cbs = {on_request};
    sd2_opts opts;
    owner ow;
    sd_adopt a;
    uint8_t *initial;
    char sink[65536];
    int fds[2], done = 0, i;

    memset(&opts, 0, sizeof(opts));
    opts.max_header_list = 4096; /* reachable limits */
    opts.stream_queue_limit = 4096;
    opts.out_limit = 8192;
    initial = malloc(sizeof(preface) - 1 + size);
    if (initial == NULL || socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0)
        abort();
    memcpy(initial, preface, sizeof(preface) - 1);
    if (size > 0)
        memcpy(initial + sizeof(preface) - 1, data, size);
    uv_loop_init(&loop);
    memset(&ow, 0, sizeof(ow));
    uv_tcp_init(&loop, &ow.tcp);
    if (uv_tcp_open(&ow.tcp, fds[0]) != 0 || sd2_server_new(&srv, &loop, &opts, &cbs, NULL) != 0)
        abort();
    a.stream = (uv_stream_t *)&ow.tcp;
    a.initial = initial;
    a.initial_len = sizeof(preface) - 1 + size;
    a.release = release;
    a.owner = &ow;
    if (sd2_server_adopt(srv, &a) != 0)
        release(&ow);
    free(initial);
    /* Let the answers go out (the peer end drains them), then close. */
    for (i = 0; i < 8; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        while (recv(fds[1], sink, sizeof(sink), MSG_DONTWAIT) > 0)
            ;
    }
    sd2_server_close(srv, server_done, &done);
    close(fds[1]); /* pending writes fail, so an adopted connection can be released */
    while (!done || !ow.closed)
        if (uv_run(&loop, UV_RUN_ONCE) == 0 && (!done || !ow.closed))
            abort(); /* nothing left to wait for, yet not released */
    if (uv_loop_close(&loop) != 0)
        abort();
    return 0;
}
