/*
 * HTTP/1.1 server transport: on each loop the caller gives, its own SO_REUSEPORT
 * listener. This file: the response API, the per-loop state (mailbox, idle and
 * deadline sweep, graceful stop) and the server's lifecycle. Connections live in http_conn.c; the
 * memory and threading model is described in http_internal.h.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_internal.h"

static const char bare_500[] =
    "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/* ---------------------------------------------------------------- responses */

static char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

static char *put_u64(char *p, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0)
        *p++ = tmp[--n];
    return p;
}

static int has_crlf(const char *s, size_t n)
{
    return n > 0 && (memchr(s, '\r', n) != NULL || memchr(s, '\n', n) != NULL);
}

/* Framing headers that sdh_stream_respond() sets itself. */
static int framing_header(const sdh_header *h)
{
    static const char *const names[] = {"content-length", "transfer-encoding", "connection",
                                        "keep-alive"};
    size_t i, k;
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        size_t n = strlen(names[i]);
        if (h->name_len != n)
            continue;
        for (k = 0; k < n && (h->name[k] | 0x20) == names[i][k]; k++)
            ;
        if (k == n)
            return 1;
    }
    return 0;
}

/*
 * Any thread: writes the status line and headers into r. content_length < 0
 * announces none; chunked adds Transfer-Encoding and drops framing headers of h.
 */
int sdh_format_head(sdh_req *r, int status, const sdh_header *h, size_t n, int64_t content_length,
                    int chunked, int keep)
{
    const char *reason = http_status_str((enum http_status)status);
    size_t rlen, need, i;
    char *p;

    if (reason[0] == '<') /* "<unknown>" */
        reason = "Status";
    rlen = strlen(reason);
    /* status line, Content-Length, Connection, blank line */
    need = 13 + rlen + 2 + 16 + 20 + 2 + 28 + 24 + 2;
    for (i = 0; i < n; i++) {
        if (h[i].name == NULL || h[i].name_len == 0 || (h[i].value == NULL && h[i].value_len) ||
            has_crlf(h[i].name, h[i].name_len) || has_crlf(h[i].value, h[i].value_len))
            return sdd_error(SELDON_EINVAL, "response header %zu: empty name or CR/LF", i);
        if (!sdd_add_size(&need, need, h[i].name_len) ||
            !sdd_add_size(&need, need, h[i].value_len) || !sdd_add_size(&need, need, 4))
            return sdd_error(SELDON_EINVAL, "response headers: size overflow");
    }
    if (need <= sizeof(r->head_inline)) {
        p = r->head_inline;
    } else if ((p = r->head_heap = sdd_malloc(need)) == NULL) {
        return sdd_error(SELDON_ENOMEM, "response head: %zu bytes", need);
    }
    r->head = p;
    p = put(p, "HTTP/1.1 ", 9);
    *p++ = (char)('0' + status / 100);
    *p++ = (char)('0' + status / 10 % 10);
    *p++ = (char)('0' + status % 10);
    *p++ = ' ';
    p = put(p, reason, rlen);
    p = put(p, "\r\n", 2);
    for (i = 0; i < n; i++) {
        if (chunked >= 0 && r->stream && framing_header(&h[i]))
            continue;
        p = put(p, h[i].name, h[i].name_len);
        p = put(p, ": ", 2);
        if (h[i].value_len)
            p = put(p, h[i].value, h[i].value_len);
        p = put(p, "\r\n", 2);
    }
    if (status != 204 && status != 304) {
        if (chunked > 0) {
            p = put(p, "Transfer-Encoding: chunked\r\n", 28);
        } else if (content_length >= 0) {
            p = put(p, "Content-Length: ", 16);
            p = put_u64(p, (uint64_t)content_length);
            p = put(p, "\r\n", 2);
        }
    }
    if (!keep)
        p = put(p, "Connection: close\r\n", 19);
    else if (r->http10)
        p = put(p, "Connection: keep-alive\r\n", 24);
    p = put(p, "\r\n", 2);
    r->head_len = (size_t)(p - r->head);
    return 0;
}

/* Loop thread: a response is ready (on-loop answer, mailbox, or internal). */
static void deliver(sdh_req *r)
{
    sdh_loop *L = r->loop;
    sdh_conn *c = r->conn;
    size_t out = r->head_len + (r->head_only ? 0 : r->body.len);
    r->ready = 1;
    if (r->kind == SDH_KIND_HANDLER) {
        L->inflight--;
        c->nwait--;
    }
    /* The view is done with: its input goes, the response counts instead. */
    sdh_block_unref(r->block);
    r->block = NULL;
    sdd_free(r->headers_heap);
    r->headers_heap = NULL;
    sdh_conn_held(c, out, r->held);
    r->held = out;
    sdh_conn_flush(c);
    if (L->stopping)
        sdh_loop_check_stop(L);
}

/* Off the loop thread: hand r to its loop, or free it if the loop gave up on it. */
static int post(sdh_req *r)
{
    sdh_mbox *mb = r->mbox;
    int orphan, last = 0;

    uv_mutex_lock(&mb->mu);
    orphan = mb->closed;
    if (!orphan) {
        r->mb_next = mb->list;
        mb->list = r;
        uv_async_send(mb->async); /* under the lock: the loop closes it only once closed */
    } else {
        last = --mb->orphans == 0 && mb->detached;
    }
    uv_mutex_unlock(&mb->mu);
    if (!orphan)
        return 0;
    sdh_req_free_storage(r);
    sdd_free(r);
    if (last) {
        uv_mutex_destroy(&mb->mu);
        sdd_free(mb);
    }
    return sdd_error(SELDON_ECANCELED, "request abandoned by a stopped server");
}

int sdh_respond(sdh_req *req, int status, const sdh_header *headers, size_t nheaders,
                seldon_buf *body)
{
    seldon_buf b = SELDON_BUF_INIT;
    int rc = 0, frc, on_loop, keep;

    if (body != NULL) {
        b = *body;
        body->data = NULL;
        body->len = 0;
        body->cap = 0;
    }
    if (req == NULL) {
        seldon_buf_free(&b);
        return sdd_error(SELDON_EINVAL, "sdh_respond: req is NULL");
    }
    if (req->responded) {
        seldon_buf_free(&b);
        return sdd_error(SELDON_ESTATE, "request %llu: already answered",
                         (unsigned long long)req->id);
    }
    on_loop = sdh_on_loop(req->loop);
    if (on_loop && req->conn != NULL && req->conn->pending == req) {
        seldon_buf_free(&b);
        return sdd_error(SELDON_ESTATE,
                         "request %llu: its body is not in; take it with "
                         "sdh_stream_take() to answer from the head handler",
                         (unsigned long long)req->id);
    }
    if (req->stream) {
        if (!on_loop) { /* a streamed request lives on its loop thread */
            seldon_buf_free(&b);
            return sdd_error(SELDON_ESTATE, "request %llu: streamed; answer on its loop thread",
                             (unsigned long long)req->id);
        }
        sdh_stream_detach(req);
    }
    req->responded = 1;
    keep = req->keep_alive &&
           !(on_loop ? req->loop->stopping
                     : atomic_load_explicit(&req->mbox->stopping, memory_order_relaxed));
    if (status < 200 || status > 599 || (nheaders > 0 && headers == NULL)) {
        rc = sdd_error(SELDON_EINVAL, "sdh_respond: status %d or headers invalid", status);
        status = 500;
        nheaders = 0;
        seldon_buf_free(&b);
    }
    if (status == 204 || status == 304)
        seldon_buf_free(&b); /* no Content-Length, so no body may follow */
    if ((frc = sdh_format_head(req, status, headers, nheaders, (int64_t)b.len, -1, keep)) < 0) {
        if (rc == 0)
            rc = frc;
        if (frc == SELDON_EINVAL)
            frc = sdh_format_head(req, 500, NULL, 0, 0, -1, keep);
        seldon_buf_free(&b);
        if (frc < 0) {
            req->head = (char *)bare_500;
            req->head_len = sizeof(bare_500) - 1;
            keep = 0;
        }
    }
    req->body = b;
    req->keep_alive = (uint8_t)keep;
    if (on_loop) {
        deliver(req);
        return rc;
    }
    frc = post(req);
    return rc < 0 ? rc : frc;
}

int sdh_respond_error(sdh_req *req, int status, const char *message)
{
    static const sdh_header ctype = {"content-type", 12, "application/json", 16};
    static const char hex[] = "0123456789abcdef";
    seldon_buf b = SELDON_BUF_INIT;
    const unsigned char *m = (const unsigned char *)(message ? message : "");
    size_t n = strlen((const char *)m), i;
    uint8_t *p;

    /* worst case: every byte becomes \u00XX */
    if (seldon_buf_reserve(&b, 14 + 6 * n) < 0)
        return sdh_respond(req, status, NULL, 0, NULL);
    p = b.data;
    memcpy(p, "{\"error\": \"", 11);
    p += 11;
    for (i = 0; i < n; i++) {
        unsigned char ch = m[i];
        if (ch == '"' || ch == '\\') {
            *p++ = '\\';
            *p++ = ch;
        } else if (ch == '\n') {
            *p++ = '\\';
            *p++ = 'n';
        } else if (ch < 0x20 || ch == 0x7f) {
            memcpy(p, "\\u00", 4);
            p[4] = (uint8_t)hex[ch >> 4];
            p[5] = (uint8_t)hex[ch & 15];
            p += 6;
        } else {
            *p++ = ch;
        }
    }
    memcpy(p, "\"}", 2);
    p += 2;
    b.len = (size_t)(p - b.data);
    return sdh_respond(req, status, &ctype, 1, &b);
}

const char *sdh_request_header(const sdh_request *r, const char *lower_name, size_t *len)
{
    size_t n, i;
    if (r == NULL || lower_name == NULL)
        return NULL;
    n = strlen(lower_name);
    for (i = 0; i < r->nheaders; i++) {
        const sdh_header *h = &r->headers[i];
        if (h->name_len == n && memcmp(h->name, lower_name, n) == 0) {
            if (len != NULL)
                *len = h->value_len;
            return h->value;
        }
    }
    return NULL;
}

uint64_t sdh_req_id(const sdh_req *req)
{
    return req != NULL ? req->id : 0;
}

uv_loop_t *sdh_req_loop(const sdh_req *req)
{
    return req != NULL ? req->loop->uv : NULL;
}

int sdh_req_client_gone(const sdh_req *req)
{
    return req != NULL && atomic_load_explicit(&req->client_gone, memory_order_relaxed);
}

/* ---------------------------------------------------------------- loops */

int sdh_on_loop(const sdh_loop *L)
{
    uv_thread_t self;
    if (!L->tid_set)
        return 0; /* no connection yet, so no request either */
    self = uv_thread_self();
    return uv_thread_equal(&self, &L->tid);
}

static void on_sweep(uv_timer_t *t)
{
    sdh_loop *L = t->data;
    const sdh_config *cfg = &L->server->cfg;
    uint64_t now = uv_now(L->uv), idle = cfg->idle_timeout_ms, rt = cfg->request_timeout_ms;
    sdh_conn *c, *next;

    for (c = L->conns; c != NULL; c = next) {
        next = c->next; /* sdh_conn_close() frees nothing now */
        if (c->closed)
            continue;
        if (c->lingering) {
            if (now - c->linger_since >= SDH_LINGER_MS)
                sdh_conn_close(c);
        } else if (rt > 0 && c->in_msg && !c->bp && !c->no_more && now - c->msg_start >= rt) {
            /* a client trickling its request: it gets an answer and the door */
            sdd_log(SELDON_LOG_DEBUG, "http: request not received within %llu ms",
                    (unsigned long long)rt);
            c->refs++;
            sdh_conn_408(c);
            next = c->next;
            sdh_conn_unref(c);
        } else if (idle > 0 && c->nwait == 0 && now - c->last_active >= idle) {
            sdh_conn_close(c);
        }
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    sdh_loop *L = h->data;
    L->closing--;
    sdh_loop_maybe_done(L);
}

static void close_handle(sdh_loop *L, uv_handle_t *h)
{
    L->closing++;
    uv_close(h, on_handle_closed);
}

/* Loop thread: once the stop closed everything of ours on L, the controller may go on. */
void sdh_loop_maybe_done(sdh_loop *L)
{
    sdh_server *s = L->server;
    if (!L->finished || L->done || L->closing > 0 || L->conns != NULL)
        return;
    L->done = 1;
    uv_mutex_lock(&s->mu);
    s->ndone++;
    uv_cond_broadcast(&s->cv);
    uv_mutex_unlock(&s->mu);
}

/*
 * Loop thread: the end. Closes every connection (streamed requests get on_abort),
 * takes the last responses from the mailbox and closes it; whole-body requests
 * still unanswered become orphans. Then closes our handles; the controller waits
 * for their close callbacks (sdh_loop_maybe_done()).
 */
static void loop_finish(sdh_loop *L)
{
    sdh_mbox *mb = L->mbox;
    sdh_req *r, *list, **pp;
    sdh_conn *c, *next;

    if (L->finished)
        return;
    L->finished = 1;
    for (c = L->conns; c != NULL; c = c->next)
        c->refs++;
    for (c = L->conns; c != NULL; c = c->next)
        sdh_conn_close(c);
    uv_mutex_lock(&mb->mu);
    list = mb->list;
    mb->list = NULL;
    mb->closed = 1;
    for (r = list; r != NULL; r = r->mb_next) {
        r->ready = 1;
        L->inflight--;
        r->conn->nwait--;
    }
    for (c = L->conns; c != NULL; c = c->next) {
        c->orphaned = 0;
        c->fifo_tail = NULL;
        for (pp = &c->fifo_head; (r = *pp) != NULL;) {
            if (r->ready || r->stream) {
                c->fifo_tail = r;
                pp = &r->next;
                continue;
            }
            *pp = r->next;
            c->nfifo--;
            if (r->held > 0)
                sdh_conn_held(c, 0, r->held);
            r->held = 0;
            r->conn = NULL;
            mb->orphans++;
            c->orphaned++;
            c->nwait--;
            L->inflight--;
        }
    }
    uv_mutex_unlock(&mb->mu);
    for (c = L->conns; c != NULL; c = next) {
        while ((r = sdh_fifo_pop(c)) != NULL)
            sdh_req_release(r);
        c->refs -= (unsigned)c->orphaned;
        next = c->next;
        sdh_conn_unref(c);
    }
    if (L->listener_open) {
        close_handle(L, (uv_handle_t *)&L->listener);
        L->listener_open = 0;
    }
    if (L->handles) {
        close_handle(L, (uv_handle_t *)&L->async);
        close_handle(L, (uv_handle_t *)&L->sweep);
        close_handle(L, (uv_handle_t *)&L->grace);
        L->handles = 0;
    }
}

static void on_grace(uv_timer_t *t)
{
    loop_finish(t->data);
}

void sdh_loop_check_stop(sdh_loop *L)
{
    /* from a timer, so that loop_finish() never runs under a connection's callback */
    if (L->stopping && !L->finished && L->inflight == 0 && L->nopen == 0)
        uv_timer_start(&L->grace, on_grace, 0, 0);
}

static void begin_stop(sdh_loop *L, uint64_t grace_ms)
{
    sdh_conn *c, *next;
    L->stopping = 1;
    if (L->listener_open) {
        close_handle(L, (uv_handle_t *)&L->listener);
        L->listener_open = 0;
    }
    uv_timer_start(&L->grace, on_grace, grace_ms, 0);
    for (c = L->conns; c != NULL; c = next) {
        next = c->next;
        if (c->closed)
            continue;
        if (c->cur_stream != NULL)
            c->stop_after = 1; /* a streamed body in flight: read it to its end */
        else
            c->no_more = 1; /* answer what is in flight, accept nothing new */
        if (c->nfifo == 0 && c->writes == 0)
            sdh_conn_close(c);
    }
    sdh_loop_check_stop(L);
}

static void on_async(uv_async_t *a)
{
    sdh_loop *L = a->data;
    sdh_mbox *mb = L->mbox;
    sdh_req *list, *r, *next;
    uint64_t grace;
    int stop;

    uv_mutex_lock(&mb->mu);
    list = mb->list;
    mb->list = NULL;
    stop = mb->stop_cmd;
    mb->stop_cmd = 0;
    grace = mb->grace_ms;
    uv_mutex_unlock(&mb->mu);
    /* responses were posted newest first: deliver them in the order they came */
    for (r = NULL; list != NULL; list = next) {
        next = list->mb_next;
        list->mb_next = r;
        r = list;
    }
    for (; r != NULL; r = next) {
        next = r->mb_next;
        deliver(r);
    }
    if (stop && !L->stopping)
        begin_stop(L, grace);
}

static int uv_fail(int e, const char *what)
{
    return sdd_error(SELDON_EIO, "http: %s: %s", what, uv_strerror(e));
}

static int open_listener(int *out, const struct sockaddr_storage *ss, socklen_t sslen,
                         const char *host, int port)
{
    struct sockaddr_storage a = *ss;
    int fd, one = 1, rc = 0;

    if (a.ss_family == AF_INET)
        ((struct sockaddr_in *)&a)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)&a)->sin6_port = htons((uint16_t)port);
    if ((fd = socket(a.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
        return sdd_error(SELDON_EIO, "http: socket: %s", strerror(errno));
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
        rc = sdd_error(SELDON_EIO, "http: setsockopt: %s", strerror(errno));
        goto out;
    }
    if (bind(fd, (struct sockaddr *)&a, sslen) < 0) {
        rc = sdd_error(SELDON_EIO, "http: bind %s port %d: %s", host, port, strerror(errno));
        goto out;
    }
    if (listen(fd, SOMAXCONN) < 0) {
        rc = sdd_error(SELDON_EIO, "http: listen: %s", strerror(errno));
        goto out;
    }
    *out = fd;
    fd = -1;
out:
    if (fd >= 0)
        close(fd);
    return rc;
}

static int bound_port(int fd)
{
    struct sockaddr_storage a;
    socklen_t len = sizeof(a);
    if (getsockname(fd, (struct sockaddr *)&a, &len) < 0)
        return sdd_error(SELDON_EIO, "http: getsockname: %s", strerror(errno));
    if (a.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&a)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&a)->sin6_port);
}

static int loop_init(sdh_loop *L, int fd)
{
    uint64_t idle = L->server->cfg.idle_timeout_ms, rt = L->server->cfg.request_timeout_ms;
    uint64_t every = 1000, least;
    int e;

    if ((L->mbox = sdd_calloc(1, sizeof(*L->mbox))) == NULL) {
        close(fd);
        return sdd_error(SELDON_ENOMEM, "http: mailbox");
    }
    if ((e = uv_mutex_init(&L->mbox->mu)) < 0) {
        sdd_free(L->mbox);
        L->mbox = NULL;
        close(fd);
        return uv_fail(e, "uv_mutex_init");
    }
    L->mbox->async = &L->async;
    if ((e = uv_async_init(L->uv, &L->async, on_async)) < 0) {
        close(fd);
        return uv_fail(e, "uv_async_init");
    }
    L->async.data = L;
    uv_timer_init(L->uv, &L->sweep);
    L->sweep.data = L;
    uv_timer_init(L->uv, &L->grace);
    L->grace.data = L;
    L->handles = 1;
    uv_tcp_init(L->uv, &L->listener);
    L->listener.data = L;
    L->listener_open = 1;
    if ((e = uv_tcp_open(&L->listener, fd)) < 0) {
        close(fd);
        return uv_fail(e, "uv_tcp_open");
    }
    if ((e = uv_listen((uv_stream_t *)&L->listener, SOMAXCONN, sdh_on_connection)) < 0)
        return uv_fail(e, "uv_listen");
    least = idle > 0 && (rt == 0 || idle < rt) ? idle : rt;
    if (least > 0) {
        every = least / 4;
        every = every < 10 ? 10 : every > 1000 ? 1000 : every;
    }
    uv_timer_start(&L->sweep, on_sweep, every, every);
    return 0;
}

static void mbox_release(sdh_mbox *mb)
{
    int keep;
    if (mb == NULL)
        return;
    uv_mutex_lock(&mb->mu);
    keep = mb->orphans > 0;
    mb->detached = 1;
    uv_mutex_unlock(&mb->mu);
    if (!keep) {
        uv_mutex_destroy(&mb->mu);
        sdd_free(mb);
    }
}

/* Controlling thread, once L is done (or its loop is not running). */
static void loop_destroy(sdh_loop *L)
{
    sdh_req *r;
    if (L == NULL)
        return;
    while ((r = L->cache) != NULL) {
        L->cache = r->next;
        sdd_free(r);
    }
    mbox_release(L->mbox);
    sdd_free(L);
}

/* ---------------------------------------------------------------- server */

static int parse_host(struct sockaddr_storage *ss, socklen_t *len, const char *host)
{
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    memset(ss, 0, sizeof(*ss));
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        *len = sizeof(*a4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        *len = sizeof(*a6);
        return 0;
    }
    return sdd_error(SELDON_EINVAL, "http: host \"%s\": not a numeric IPv4/IPv6 address", host);
}

static void ignore_sigpipe(void)
{
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
        sa.sa_handler = SIG_IGN;
        sigaction(SIGPIPE, &sa, NULL);
    }
}

int sdh_server_new(sdh_server **out, const sdh_config *cfg)
{
    sdh_server *s = NULL;
    const char *host;
    int rc = 0;

    if (out == NULL || cfg == NULL || cfg->handler == NULL) {
        rc = sdd_error(SELDON_EINVAL, "http: out, cfg and cfg->handler must not be NULL");
        goto out;
    }
    *out = NULL;
    if (cfg->port < 0 || cfg->port > 65535) {
        rc = sdd_error(SELDON_EINVAL, "http: port %d out of range", cfg->port);
        goto out;
    }
    if ((s = sdd_calloc(1, sizeof(*s))) == NULL) {
        rc = sdd_error(SELDON_ENOMEM, "http: server");
        goto out;
    }
    host = cfg->host ? cfg->host : "0.0.0.0";
    if ((rc = parse_host(&s->addr, &s->addr_len, host)) < 0) {
        sdd_free(s);
        s = NULL;
        goto out;
    }
    if (uv_mutex_init(&s->mu) < 0 || uv_cond_init(&s->cv) < 0) {
        sdd_free(s); /* a mutex that failed to initialise holds nothing */
        s = NULL;
        rc = sdd_error(SELDON_EIO, "http: mutex");
        goto out;
    }
    ignore_sigpipe();
    snprintf(s->host, sizeof(s->host), "%s", host);
    s->cfg = *cfg;
    s->cfg.host = NULL; /* borrowed for this call only */
    if (s->cfg.max_buffered == 0)
        s->cfg.max_buffered = SDH_DEFAULT_BUFFERED;
    s->port = cfg->port;
    *out = s;
out:
    if (rc < 0)
        fprintf(stderr, "%s\n", seldon_last_error());
    return rc;
}

int sdh_server_listen(sdh_server *s, uv_loop_t *loop)
{
    sdh_loop *L;
    int rc = 0, fd = -1, port;

    if (s == NULL || loop == NULL) {
        rc = sdd_error(SELDON_EINVAL, "sdh_server_listen: NULL server or loop");
        goto out;
    }
    if (s->stopped || s->nloops >= SDH_MAX_LOOPS) {
        rc = sdd_error(SELDON_ESTATE, "http: server stopped, or %d loops already", s->nloops);
        goto out;
    }
    if ((L = sdd_calloc(1, sizeof(*L))) == NULL) {
        rc = sdd_error(SELDON_ENOMEM, "http: loop");
        goto out;
    }
    L->server = s;
    L->uv = loop;
    L->index = (unsigned)s->nloops;
    /* port 0: the first socket picks the port, the others share it */
    if ((rc = open_listener(&fd, &s->addr, s->addr_len, s->host, s->port)) < 0) {
        sdd_free(L);
        goto out;
    }
    if (s->port == 0) {
        if ((port = bound_port(fd)) < 0) {
            rc = port;
            close(fd);
            sdd_free(L);
            goto out;
        }
        s->port = port;
    }
    s->loops[s->nloops++] = L; /* from here on, sdh_server_free() cleans it */
    rc = loop_init(L, fd);
out:
    if (rc < 0)
        fprintf(stderr, "%s\n", seldon_last_error());
    return rc;
}

int sdh_server_port(const sdh_server *s)
{
    return s != NULL ? s->port : -1;
}

void sdh_server_stop(sdh_server *s, uint64_t grace_ms)
{
    int i, n = 0;
    if (s == NULL || s->stopped)
        return;
    s->stopped = 1;
    for (i = 0; i < s->nloops; i++) {
        sdh_loop *L = s->loops[i];
        if (!L->handles)
            continue;
        n++;
        uv_mutex_lock(&L->mbox->mu);
        atomic_store(&L->mbox->stopping, 1);
        if (!L->mbox->closed) {
            L->mbox->stop_cmd = 1;
            L->mbox->grace_ms = grace_ms;
            uv_async_send(&L->async);
        }
        uv_mutex_unlock(&L->mbox->mu);
    }
    uv_mutex_lock(&s->mu);
    while (s->ndone < n)
        uv_cond_wait(&s->cv, &s->mu);
    uv_mutex_unlock(&s->mu);
}

void sdh_server_free(sdh_server *s)
{
    int i, spins;
    if (s == NULL)
        return;
    if (!s->stopped) {
        /* Never stopped: its loops do not run (see the header); close here. */
        s->stopped = 1;
        for (i = 0; i < s->nloops; i++) {
            sdh_loop *L = s->loops[i];
            L->stopping = 1;
            if (L->mbox != NULL) {
                uv_mutex_lock(&L->mbox->mu);
                atomic_store(&L->mbox->stopping, 1);
                uv_mutex_unlock(&L->mbox->mu);
            }
            if (L->handles) {
                loop_finish(L);
            } else if (L->listener_open) {
                close_handle(L, (uv_handle_t *)&L->listener);
                L->listener_open = 0;
            }
            for (spins = 0; spins < 1000 && (L->closing > 0 || L->conns != NULL); spins++)
                uv_run(L->uv, UV_RUN_NOWAIT);
        }
    }
    for (i = 0; i < s->nloops; i++)
        loop_destroy(s->loops[i]);
    uv_cond_destroy(&s->cv);
    uv_mutex_destroy(&s->mu);
    sdd_free(s);
}
