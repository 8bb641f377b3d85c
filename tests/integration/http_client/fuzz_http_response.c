/*
 * Fuzz target: the HTTP client's response path (framing through http-parser,
 * the header collector, keep-alive reuse and the stale-connection retry), end to
 * end on one uv loop. A loopback server in the same loop answers each
 * connection's first request with the input bytes (in two writes, split where
 * the first byte says), then closes its side. Two requests run one after the
 * other, so a well-formed input also exercises reuse.
 *
 * Properties: each request ends exactly once, and never by its timeout (the
 * server always closes); on_head comes at most once and before any body; body
 * bytes come only after a head; the pool frees every handle.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "http_client.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    int heads, dones, body_before_head, result;
} tstate;

typedef struct sconn {
    uv_tcp_t tcp;
    uv_write_t w1, w2;
    uv_shutdown_t sh;
    char seen[4];
    int answered;
} sconn;

static uv_loop_t g_loop;
static uv_tcp_t g_listener;
static int g_port;
static const uint8_t *g_resp;
static size_t g_resp_len, g_split;
static sdc_pool *g_pool;
static int g_freed;

static void fail(const char *what)
{
    fprintf(stderr, "fuzz property broken: %s\n", what);
    abort();
}

static void sconn_closed(uv_handle_t *h)
{
    free(h->data);
}

static void s_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
    (void)h;
    (void)sz;
    static char buf[4096];
    *b = uv_buf_init(buf, sizeof(buf));
}

static void s_written(uv_write_t *w, int status)
{
    (void)w;
    (void)status;
}

static void s_shut(uv_shutdown_t *s, int status)
{
    (void)s;
    (void)status;
}

static void s_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b)
{
    sconn *c = st->data;
    if (n < 0) {
        if (!uv_is_closing((uv_handle_t *)st))
            uv_close((uv_handle_t *)st, sconn_closed);
        return;
    }
    for (ssize_t i = 0; i < n && !c->answered; i++) {
        memmove(c->seen, c->seen + 1, 3);
        c->seen[3] = b->base[i];
        if (memcmp(c->seen, "\r\n\r\n", 4) == 0) {
            c->answered = 1;
            uv_buf_t a = uv_buf_init((char *)g_resp, (unsigned)g_split);
            uv_buf_t z = uv_buf_init((char *)g_resp + g_split, (unsigned)(g_resp_len - g_split));
            if (a.len)
                uv_write(&c->w1, st, &a, 1, s_written);
            if (z.len)
                uv_write(&c->w2, st, &z, 1, s_written);
            uv_shutdown(&c->sh, st, s_shut);
        }
    }
}

static void s_accept(uv_stream_t *l, int status)
{
    if (status < 0)
        return;
    sconn *c = calloc(1, sizeof(*c));
    uv_tcp_init(&g_loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(l, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, sconn_closed);
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, s_alloc, s_read);
}

static void setup(void)
{
    struct sockaddr_in a;
    int len = sizeof(a);
    uv_loop_init(&g_loop);
    uv_tcp_init(&g_loop, &g_listener);
    uv_ip4_addr("127.0.0.1", 0, &a);
    if (uv_tcp_bind(&g_listener, (const struct sockaddr *)&a, 0) != 0 ||
        uv_listen((uv_stream_t *)&g_listener, 64, s_accept) != 0)
        fail("listen");
    uv_tcp_getsockname(&g_listener, (struct sockaddr *)&a, &len);
    g_port = ntohs(a.sin_port);
}

static void on_head(sdc_request *r, int status, const sdh_header *hs, size_t n, void *ud)
{
    (void)r;
    tstate *t = ud;
    if (status < 100 || status > 999)
        fail("status out of range");
    for (size_t i = 0; i < n; i++) {
        if (hs[i].name_len > 0 && hs[i].name == NULL)
            fail("header view");
    }
    t->heads++;
}

static void on_body(sdc_request *r, const char *d, size_t len, void *ud)
{
    (void)r;
    (void)d;
    tstate *t = ud;
    if (t->heads == 0 || len == 0)
        t->body_before_head = 1;
}

static void on_done(sdc_request *r, int result, void *ud)
{
    (void)r;
    tstate *t = ud;
    t->dones++;
    t->result = result;
}

static void freed(void *ud)
{
    (void)ud;
    g_freed = 1;
}

static void run_request(const char *method, tstate *t)
{
    static const sdc_callbacks cb = {on_head, on_body, NULL, on_done};
    sdh_request_head h = {0};
    sdc_request *req = NULL;
    h.method = method;
    h.method_len = strlen(method);
    h.target = "/";
    h.target_len = 1;
    h.content_length = SDH_BODY_NONE;
    if (sdc_request_start(&req, g_pool, &h, &cb, t) != 0)
        fail("start");
    while (t->dones == 0)
        uv_run(&g_loop, UV_RUN_ONCE);
    if (t->dones != 1 || t->heads > 1 || t->body_before_head)
        fail("callback order");
    if (t->result == SDC_OK && t->heads != 1)
        fail("ok without a head");
    /* The server always closes its side after answering: waiting out the
     * timeout means the client missed an end. */
    if (t->result == SDC_ETIMEOUT)
        fail("request hung until its timeout");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        setup();
        ready = 1;
    }
    if (size < 1)
        return 0;
    int head_method = data[0] & 1;
    g_resp = data + 1;
    g_resp_len = size - 1;
    g_split = g_resp_len ? (data[0] >> 1) % (g_resp_len + 1) : 0;
    char up[32];
    snprintf(up, sizeof(up), "127.0.0.1:%d", g_port);
    sdc_pool_options o = SDC_POOL_OPTIONS_INIT;
    o.max_head_size = 4096;
    o.request_timeout_ms = 10000; /* a guard: the server always closes its side */
    if (sdc_pool_new(&g_pool, &g_loop, up, &o) != 0)
        fail("pool");
    tstate t1 = {0}, t2 = {0};
    run_request(head_method ? "HEAD" : "GET", &t1);
    run_request("GET", &t2);
    g_freed = 0;
    sdc_pool_free(g_pool, freed, NULL);
    while (!g_freed)
        uv_run(&g_loop, UV_RUN_ONCE);
    /* Let the server side see its connections close. */
    while (uv_run(&g_loop, UV_RUN_NOWAIT) != 0 && g_loop.active_handles > 1)
        ;
    return 0;
}
