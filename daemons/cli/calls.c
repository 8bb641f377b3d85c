/*
 * The CLI's calls: each starts one exchange on the CLI's loop and runs the
 * loop until it ended.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cli.h"
#include "rpc.h"
#include "sdd.h"

void cli_result_free(cli_result *r)
{
    seldon_buf_free(&r->body);
    seldon_buf_free(&r->headers);
}

/* "host:port: message": a transport failure names where it went. */
static void prefix_message(cli_result *r, const char *where)
{
    size_t w = strlen(where), m = strlen(r->message);
    if (w + 3 >= sizeof(r->message))
        return;
    if (w + 2 + m + 1 > sizeof(r->message))
        m = sizeof(r->message) - w - 3;
    memmove(r->message + w + 2, r->message, m);
    memcpy(r->message, where, w);
    r->message[w] = ':';
    r->message[w + 1] = ' ';
    r->message[w + 2 + m] = '\0';
}

static void run_until(cli *c, const int *done)
{
    while (!*done)
        uv_run(&c->loop, UV_RUN_ONCE);
}

static void buf_append(seldon_buf *b, const void *data, size_t len)
{
    if (seldon_buf_reserve(b, len + 1) != 0)
        return;
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0'; /* kept NUL-terminated for printing */
}

static void note_header(cli_result *r, const char *name, size_t nlen, const char *value,
                        size_t vlen)
{
    buf_append(&r->headers, name, nlen);
    buf_append(&r->headers, ": ", 2);
    buf_append(&r->headers, value, vlen);
    buf_append(&r->headers, "\n", 1);
    if (nlen == 14 && strncasecmp(name, "x-seldon-route", 14) == 0) {
        size_t m = vlen < sizeof(r->route) - 1 ? vlen : sizeof(r->route) - 1;
        memcpy(r->route, value, m);
        r->route[m] = '\0';
    }
}

int cli_split_host(char *host, size_t cap, int *port, const char *hostport, char *why,
                   size_t why_cap)
{
    const char *colon, *h = hostport;
    size_t hlen;
    long p;
    char name[256];
    unsigned char tmp[sizeof(struct in6_addr)];
    struct addrinfo hints, *res = NULL;

    if (hostport[0] == '[') {
        const char *end = strchr(hostport, ']');
        if (end == NULL || end[1] != ':')
            goto bad;
        h = hostport + 1;
        hlen = (size_t)(end - h);
        colon = end + 1;
    } else {
        colon = strrchr(hostport, ':');
        if (colon == NULL)
            goto bad;
        hlen = (size_t)(colon - hostport);
    }
    if (hlen == 0 || hlen >= sizeof(name) || sdd_parse_long(colon + 1, 1, 65535, &p) < 0)
        goto bad;
    memcpy(name, h, hlen);
    name[hlen] = '\0';
    *port = (int)p;
    if (inet_pton(AF_INET, name, tmp) == 1 || inet_pton(AF_INET6, name, tmp) == 1) {
        snprintf(host, cap, "%s", name);
        return 0;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(name, NULL, &hints, &res) != 0 || res == NULL) {
        snprintf(why, why_cap, "%s: cannot resolve host %s", hostport, name);
        return -1;
    }
    if (res->ai_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)res->ai_addr)->sin_addr, host, (socklen_t)cap);
    else
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)res->ai_addr)->sin6_addr, host,
                  (socklen_t)cap);
    freeaddrinfo(res);
    return 0;
bad:
    snprintf(why, why_cap, "%s: expected host:port", hostport);
    return -1;
}

/* ------------------------------------------------------------------- gRPC */

static void g_message(sdr_call *call, void *user_data, const uint8_t *msg, size_t len)
{
    cli_result *r = user_data;
    (void)call;
    if (r->body.len == 0)
        buf_append(&r->body, msg, len);
}

static void g_done(sdr_call *call, void *user_data, int32_t status, const char *message,
                   const sd2_header *h, size_t n)
{
    cli_result *r = user_data;
    size_t i;
    (void)call;
    r->status = status;
    snprintf(r->message, sizeof(r->message), "%s", message);
    for (i = 0; i < n; i++)
        if (h[i].name_len == 0 || h[i].name[0] != ':')
            note_header(r, h[i].name, h[i].name_len, h[i].value, h[i].value_len);
    r->done = 1;
}

int cli_grpc(cli *c, cli_result *out, const char *hostport, const char *path, const uint8_t *req,
             size_t req_len, const sd2_header *extra, size_t nextra, uint64_t timeout_ms)
{
    static const sdr_call_cbs cbs = {g_message, g_done};
    char host[INET6_ADDRSTRLEN + 1];
    sd2_upstream *u = NULL;
    int port, rc;

    memset(out, 0, sizeof(*out));
    if (cli_split_host(host, sizeof(host), &port, hostport, out->message, sizeof(out->message)) <
        0) {
        out->status = SDR_INVALID_ARGUMENT;
        return -1;
    }
    if (c->h2 == NULL && sd2_client_new(&c->h2, &c->loop, NULL) != 0) {
        snprintf(out->message, sizeof(out->message), "%s", seldon_last_error());
        out->status = SDR_INTERNAL;
        return -1;
    }
    rc = sd2_upstream_get(&u, c->h2, host, port);
    if (rc == 0)
        rc = sdr_call_start(NULL, u, hostport, path, req, req_len, extra, nextra, &cbs, out,
                            timeout_ms);
    if (rc != 0) {
        snprintf(out->message, sizeof(out->message), "%s: %s", hostport,
                 *seldon_last_error() ? seldon_last_error() : "cannot start the call");
        out->status = SDR_INTERNAL;
        return -1;
    }
    run_until(c, &out->done);
    if (out->status == SDR_UNAVAILABLE)
        prefix_message(out, hostport);
    return out->status == 0 ? 0 : -1;
}

int cli_sched(cli *c, cli_result *out, const char *method, const ProtobufCMessage *req)
{
    char path[128];
    size_t n = protobuf_c_message_get_packed_size(req);
    uint8_t *buf = sdd_malloc(n ? n : 1);
    uint64_t timeout = c->o.timeout_s > 0 ? (uint64_t)c->o.timeout_s * 1000 : 60000;
    int rc;
    if (buf == NULL) {
        memset(out, 0, sizeof(*out));
        out->status = SDR_RESOURCE_EXHAUSTED;
        snprintf(out->message, sizeof(out->message), "out of memory");
        return -1;
    }
    protobuf_c_message_pack(req, buf);
    snprintf(path, sizeof(path), "/seldon.control.v1.SchedulerService/%s", method);
    rc = cli_grpc(c, out, c->o.sched_host, path, buf, n, NULL, 0, timeout);
    sdd_free(buf);
    return rc;
}

/* ------------------------------------------------------------------- REST */

static void r_head(sdc_request *req, int status, const sdh_header *h, size_t n, void *user_data)
{
    cli_result *r = user_data;
    size_t i;
    (void)req;
    r->http_status = status;
    for (i = 0; i < n; i++)
        note_header(r, h[i].name, h[i].name_len, h[i].value, h[i].value_len);
}

static void r_body(sdc_request *req, const char *data, size_t len, void *user_data)
{
    cli_result *r = user_data;
    (void)req;
    buf_append(&r->body, data, len);
}

static void r_done(sdc_request *req, int result, void *user_data)
{
    cli_result *r = user_data;
    (void)req;
    if (result != 0) {
        r->status = SDR_UNAVAILABLE;
        snprintf(r->message, sizeof(r->message), "%s", sdc_strerror(result));
    } else if (r->http_status < 200 || r->http_status > 299) {
        r->status = SDR_UNKNOWN;
        snprintf(r->message, sizeof(r->message), "HTTP %d: %.*s", r->http_status,
                 (int)(r->body.len > 1500 ? 1500 : r->body.len),
                 r->body.data != NULL ? (const char *)r->body.data : "");
    }
    r->done = 1;
}

int cli_rest(cli *c, cli_result *out, const char *method, const char *target, const char *body,
             size_t len, const char *model)
{
    static const sdc_callbacks cbs = {r_head, r_body, NULL, r_done};
    sdh_header h[CLI_HEADERS_MAX + 2];
    sdh_request_head head;
    sdc_request *req = NULL;
    size_t n = 0, i;
    int rc;

    memset(out, 0, sizeof(*out));
    if (c->rest == NULL) {
        char host[INET6_ADDRSTRLEN + 1], addr[INET6_ADDRSTRLEN + 10];
        int port;
        sdc_pool_options po = SDC_POOL_OPTIONS_INIT;
        if (cli_split_host(host, sizeof(host), &port, c->o.infer_host, out->message,
                           sizeof(out->message)) < 0) {
            out->status = SDR_INVALID_ARGUMENT;
            return -1;
        }
        snprintf(addr, sizeof(addr), strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
        po.max_connections = 1;
        po.request_timeout_ms = c->o.timeout_s > 0 ? (uint64_t)c->o.timeout_s * 1000 : 60000;
        if (sdc_pool_new(&c->rest, &c->loop, addr, &po) != 0) {
            out->status = SDR_INVALID_ARGUMENT;
            snprintf(out->message, sizeof(out->message), "%s: bad address", c->o.infer_host);
            return -1;
        }
    }
    if (body != NULL)
        h[n++] = (sdh_header){"content-type", 12, "application/json", 16};
    if (model != NULL)
        h[n++] = (sdh_header){"seldon-model", 12, model, strlen(model)};
    for (i = 0; i < c->o.nheaders; i++) {
        const char *eq = strchr(c->o.headers[i], '=');
        h[n++] =
            (sdh_header){c->o.headers[i], (size_t)(eq - c->o.headers[i]), eq + 1, strlen(eq + 1)};
    }
    memset(&head, 0, sizeof(head));
    head.method = method;
    head.method_len = strlen(method);
    head.target = target;
    head.target_len = strlen(target);
    head.headers = h;
    head.n_headers = n;
    head.content_length = body != NULL ? (int64_t)len : SDH_BODY_NONE;
    rc = body != NULL ? sdc_request_start_body(&req, c->rest, &head, body, len, &cbs, out)
                      : sdc_request_start(&req, c->rest, &head, &cbs, out);
    if (rc != 0) {
        out->status = SDR_INVALID_ARGUMENT;
        snprintf(out->message, sizeof(out->message), "request: %s", sdc_strerror(rc));
        return -1;
    }
    run_until(c, &out->done);
    if (out->status == SDR_UNAVAILABLE)
        prefix_message(out, c->o.infer_host);
    return out->status == 0 ? 0 : -1;
}

static void woke(uv_timer_t *t)
{
    *(int *)t->data = 1;
}

void cli_sleep(cli *c, uint64_t ms)
{
    uv_timer_t t;
    int done = 0;
    uv_timer_init(&c->loop, &t);
    t.data = &done;
    uv_timer_start(&t, woke, ms, 0);
    run_until(c, &done);
    done = 0;
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&c->loop, UV_RUN_NOWAIT); /* runs the close callback: t lives on this stack */
}
