/*
 * HTTP/1.1 server transport: N libuv loops, each with its own SO_REUSEPORT listener,
 * http-parser for requests, responses in request order per connection.
 *
 * Memory. Each connection reads into one growable input block. A request's view
 * (URL, headers, body) points into that block, so a request costs no copy beyond
 * the read itself. A request handed to its handler holds a reference on its block;
 * while any does, the connection never moves or overwrites bytes in that block and
 * starts a fresh one when it runs out of room. Chunked bodies and folded header
 * lines are joined in place, by moving later pieces down over framing bytes that
 * the parser has already consumed. Request objects are recycled per loop.
 *
 * Threads. Everything about a connection happens on its loop's thread; the
 * connection refcount is therefore plain. A response produced on another thread
 * travels through the loop's mailbox (a mutex-protected list plus uv_async). A stop
 * that gives up waiting turns unanswered requests into orphans: they keep their
 * block (atomic refcount) and mailbox alive, and their late sdh_respond() frees
 * them without touching the loop, which is gone by then.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <http_parser.h>
#include <uv.h>

#include "core/core.h"
#include "http_server.h"

#define SDH_NONE SIZE_MAX
#define SDH_BLOCK_SIZE 8192           /* first input block of a connection */
#define SDH_BLOCK_KEEP (256 * 1024)   /* an idle connection shrinks a larger block back */
#define SDH_MIN_READ 2048             /* make room when less than this is free */
#define SDH_PREALLOC_MAX (4u << 20)   /* room made at once for a declared body */
#define SDH_MAX_HEADERS 100
#define SDH_INLINE_HEADERS 16
#define SDH_HEAD_INLINE 320
#define SDH_MAX_PIPELINE 32 /* stop reading with this many requests unanswered */
#define SDH_LINGER_MS 2000  /* after a final response: read and discard this long */
#define SDH_REQ_CACHE 128
#define SDH_SCRATCH 65536

enum { CB_NONE, CB_FIELD, CB_VALUE };
enum { KIND_HANDLER, KIND_INTERNAL, KIND_INTERIM };

typedef struct sdh_loop sdh_loop;
typedef struct sdh_conn sdh_conn;

typedef struct sdh_block {
    atomic_uint refs; /* the connection's, plus one per request viewing it */
    size_t cap;
    uint8_t data[];
} sdh_block;

/* A header of the message being parsed, as offsets into the block (which may move). */
typedef struct sdh_hoff {
    size_t name_off, name_len, value_off, value_len;
} sdh_hoff;

/* Outlives its loop while orphans exist (see loop_finish()). */
typedef struct sdh_mbox {
    uv_mutex_t mu;
    sdh_req *list;     /* answered off-loop, not yet taken by the loop */
    uv_async_t *async; /* valid while !closed */
    atomic_int stopping;
    int closed;   /* the loop takes no more responses */
    int detached; /* the loop is freed; the last orphan frees the mailbox */
    int stop_cmd;
    uint64_t grace_ms;
    size_t orphans;
} sdh_mbox;

struct sdh_req {
    sdh_req *next;    /* connection FIFO, or the loop's cache */
    sdh_req *mb_next; /* mailbox list */
    sdh_conn *conn;   /* holds a connection reference; NULL for an orphan */
    sdh_loop *loop;
    sdh_mbox *mbox;
    sdh_block *block; /* holds a block reference while the view points into it */
    uint64_t id;
    sdh_request view;
    sdh_header *headers_heap;
    char *head; /* the response head: head_inline, head_heap or static */
    char *head_heap;
    size_t head_len;
    seldon_buf body;
    atomic_int client_gone;
    uint8_t kind, keep_alive, http10, ready, responded;
    uv_write_t wreq;
    uv_buf_t wbufs[2];
    sdh_header headers_inline[SDH_INLINE_HEADERS];
    char head_inline[SDH_HEAD_INLINE];
};

struct sdh_conn {
    uv_tcp_t tcp;
    uv_shutdown_t sreq;
    http_parser parser;
    sdh_loop *loop;
    sdh_conn *prev, *next; /* every connection of the loop not yet freed */
    unsigned refs;         /* the open handle, each request in the FIFO or being written */
    sdh_block *block;
    size_t len;    /* bytes in block */
    size_t parsed; /* bytes of block fed to the parser */
    /* The message being parsed. */
    size_t url_off, url_len;
    size_t body_off, body_len;
    uint64_t body_expected;
    sdh_hoff *hdrs;
    size_t nhdrs, hdrs_cap;
    int last_cb;
    int err_status;
    const char *err_msg;
    /* Requests in arrival order, until their responses are handed to the socket. */
    sdh_req *fifo_head, *fifo_tail;
    size_t nfifo;
    size_t nwait;    /* requests with a handler and no response yet */
    size_t writes;   /* uv_write()s in flight */
    size_t orphaned; /* scratch for loop_finish() */
    uint64_t last_active, linger_since;
    uint8_t in_parse, bp, reading, no_more, rd_eof, shutting, lingering, closed;
};

struct sdh_loop {
    sdh_server *server;
    uv_loop_t uv;
    uv_tcp_t listener;
    uv_async_t async;
    uv_timer_t sweep, grace;
    uv_thread_t thread;
    sdh_mbox *mbox;
    sdh_conn *conns;
    sdh_req *cache;
    size_t ncache;
    size_t nopen;    /* connections with an open handle */
    size_t inflight; /* requests with a handler and no response delivered yet */
    uint64_t next_id;
    unsigned index;
    int fd; /* the listening socket until uv_tcp_open() owns it */
    uint8_t uv_inited, thread_started, listener_open, stopping, finished;
    char scratch[SDH_SCRATCH]; /* where reads go once a connection accepts no more requests */
};

struct sdh_server {
    sdh_config cfg;
    sdh_loop **loops;
    int nloops;
    int port;
    int stopped;
};

/* The loop this thread runs, so that sdh_respond() can tell on-loop from off-loop. */
static _Thread_local sdh_loop *tls_loop;
static const uint8_t empty_body[1];
static const char continue_head[] = "HTTP/1.1 100 Continue\r\n\r\n";
static const char bare_500[] =
    "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

static void conn_parse(sdh_conn *c);
static void conn_read_start(sdh_conn *c);
static void conn_flush(sdh_conn *c);
static void conn_close(sdh_conn *c);
static void conn_maybe_finish(sdh_conn *c);
static void loop_check_stop(sdh_loop *L);

/* ---------------------------------------------------------------- blocks, requests */

static sdh_block *block_new(size_t cap)
{
    sdh_block *b = sdn_malloc(sizeof(*b) + cap);
    if (b != NULL) {
        atomic_init(&b->refs, 1);
        b->cap = cap;
    }
    return b;
}

/* Any thread: orphans release their block off-loop. */
static void block_unref(sdh_block *b)
{
    if (b != NULL && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1)
        sdn_free(b);
}

/* Loop thread. */
static sdh_req *req_new(sdh_loop *L, int kind)
{
    sdh_req *r = L->cache;
    if (r != NULL) {
        L->cache = r->next;
        L->ncache--;
    } else if ((r = sdn_malloc(sizeof(*r))) == NULL) {
        return NULL;
    }
    r->next = NULL;
    r->mb_next = NULL;
    r->conn = NULL;
    r->loop = L;
    r->mbox = L->mbox;
    r->block = NULL;
    r->id = 0;
    r->headers_heap = NULL;
    r->head = NULL;
    r->head_heap = NULL;
    r->head_len = 0;
    r->body.data = NULL;
    r->body.len = 0;
    r->body.cap = 0;
    atomic_store_explicit(&r->client_gone, 0, memory_order_relaxed);
    r->kind = (uint8_t)kind;
    r->keep_alive = 0;
    r->http10 = 0;
    r->ready = 0;
    r->responded = 0;
    return r;
}

/* Any thread. */
static void req_free_storage(sdh_req *r)
{
    sdn_free(r->head_heap);
    r->head_heap = NULL;
    seldon_buf_free(&r->body);
    sdn_free(r->headers_heap);
    r->headers_heap = NULL;
    block_unref(r->block);
    r->block = NULL;
}

static void conn_unref(sdh_conn *c)
{
    sdh_loop *L = c->loop;
    if (--c->refs > 0)
        return;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        L->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    block_unref(c->block);
    sdn_free(c->hdrs);
    sdn_free(c);
}

/* Loop thread: the request is done with (written, or its connection is gone). */
static void req_release(sdh_req *r)
{
    sdh_loop *L = r->loop;
    sdh_conn *c = r->conn;
    req_free_storage(r);
    if (L->ncache < SDH_REQ_CACHE) {
        r->next = L->cache;
        L->cache = r;
        L->ncache++;
    } else {
        sdn_free(r);
    }
    if (c != NULL)
        conn_unref(c);
}

static void fifo_push(sdh_conn *c, sdh_req *r)
{
    r->next = NULL;
    if (c->fifo_tail != NULL)
        c->fifo_tail->next = r;
    else
        c->fifo_head = r;
    c->fifo_tail = r;
    c->nfifo++;
}

static sdh_req *fifo_pop(sdh_conn *c)
{
    sdh_req *r = c->fifo_head;
    if (r != NULL) {
        c->fifo_head = r->next;
        if (c->fifo_head == NULL)
            c->fifo_tail = NULL;
        c->nfifo--;
        r->next = NULL;
    }
    return r;
}

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

/* Any thread: writes the status line and headers into r. */
static int format_head(sdh_req *r, int status, const sdh_header *h, size_t n, size_t body_len,
                       int keep)
{
    const char *reason = http_status_str((enum http_status)status);
    size_t rlen, need, i;
    char *p;

    if (reason[0] == '<') /* "<unknown>" */
        reason = "Status";
    rlen = strlen(reason);
    /* status line, Content-Length, Connection, blank line */
    need = 13 + rlen + 2 + 16 + 20 + 2 + 24 + 2;
    for (i = 0; i < n; i++) {
        if (h[i].name == NULL || h[i].name_len == 0 || (h[i].value == NULL && h[i].value_len) ||
            has_crlf(h[i].name, h[i].name_len) || has_crlf(h[i].value, h[i].value_len))
            return sdn_error(SELDON_EINVAL, "response header %zu: empty name or CR/LF", i);
        if (!sdn_add_size(&need, need, h[i].name_len) ||
            !sdn_add_size(&need, need, h[i].value_len) || !sdn_add_size(&need, need, 4))
            return sdn_error(SELDON_EINVAL, "response headers: size overflow");
    }
    if (need <= sizeof(r->head_inline)) {
        p = r->head_inline;
    } else if ((p = r->head_heap = sdn_malloc(need)) == NULL) {
        return sdn_error(SELDON_ENOMEM, "response head: %zu bytes", need);
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
        p = put(p, h[i].name, h[i].name_len);
        p = put(p, ": ", 2);
        if (h[i].value_len)
            p = put(p, h[i].value, h[i].value_len);
        p = put(p, "\r\n", 2);
    }
    if (status != 204) {
        p = put(p, "Content-Length: ", 16);
        p = put_u64(p, body_len);
        p = put(p, "\r\n", 2);
    }
    if (!keep)
        p = put(p, "Connection: close\r\n", 19);
    else if (r->http10)
        p = put(p, "Connection: keep-alive\r\n", 24);
    p = put(p, "\r\n", 2);
    r->head_len = (size_t)(p - r->head);
    return 0;
}

static void on_write(uv_write_t *w, int status)
{
    sdh_req *r = w->data;
    sdh_conn *c = r->conn;
    c->refs++;
    c->writes--;
    req_release(r);
    if (status < 0)
        conn_close(c);
    else
        c->last_active = uv_now(&c->loop->uv);
    conn_maybe_finish(c);
    conn_unref(c);
}

/* Loop thread: head and body in one writev, queued only if the socket is full. */
static void conn_write(sdh_conn *c, sdh_req *r)
{
    uv_buf_t *b = r->wbufs;
    unsigned nb = 1;
    size_t total = r->head_len, done;
    int n;

    b[0].base = r->head;
    b[0].len = r->head_len;
    if (r->body.len > 0) {
        b[1].base = (char *)r->body.data;
        b[1].len = r->body.len;
        total += r->body.len;
        nb = 2;
    }
    n = uv_try_write((uv_stream_t *)&c->tcp, b, nb);
    if (n == UV_EAGAIN || n == UV_ENOSYS)
        n = 0;
    if (n < 0) {
        req_release(r);
        conn_close(c);
        return;
    }
    if ((size_t)n == total) {
        c->last_active = uv_now(&c->loop->uv);
        req_release(r);
        return;
    }
    done = (size_t)n;
    if (done >= b[0].len) { /* only with a body, since done < total */
        done -= b[0].len;
        b[0] = b[1];
        nb = 1;
    }
    b[0].base += done;
    b[0].len -= done;
    r->wreq.data = r;
    if (uv_write(&r->wreq, (uv_stream_t *)&c->tcp, b, nb, on_write) < 0) {
        req_release(r);
        conn_close(c);
        return;
    }
    c->writes++;
}

/* Loop thread: writes the answered requests at the head of the FIFO. */
static void conn_flush(sdh_conn *c)
{
    sdh_req *r;
    c->refs++;
    while ((r = c->fifo_head) != NULL && r->ready) {
        fifo_pop(c);
        if (c->closed) {
            req_release(r);
            continue;
        }
        if (!r->keep_alive && r->kind != KIND_INTERIM)
            c->no_more = 1;
        conn_write(c, r);
    }
    if (c->bp && !c->closed && c->nfifo <= SDH_MAX_PIPELINE / 2) {
        c->bp = 0;
        if (!c->rd_eof)
            conn_read_start(c);
        conn_parse(c);
    }
    conn_maybe_finish(c);
    conn_unref(c);
}

/* Loop thread: a response is ready (on-loop answer, mailbox, or internal). */
static void deliver(sdh_req *r)
{
    sdh_loop *L = r->loop;
    sdh_conn *c = r->conn;
    r->ready = 1;
    if (r->kind == KIND_HANDLER) {
        L->inflight--;
        c->nwait--;
    }
    conn_flush(c);
    if (L->stopping)
        loop_check_stop(L);
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
    req_free_storage(r);
    sdn_free(r);
    if (last) {
        uv_mutex_destroy(&mb->mu);
        sdn_free(mb);
    }
    return sdn_error(SELDON_ECANCELED, "request abandoned by a stopped server");
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
        return sdn_error(SELDON_EINVAL, "sdh_respond: req is NULL");
    }
    if (req->responded) {
        seldon_buf_free(&b);
        return sdn_error(SELDON_ESTATE, "request %llu: already answered",
                         (unsigned long long)req->id);
    }
    req->responded = 1;
    on_loop = tls_loop == req->loop;
    keep = req->keep_alive &&
           !(on_loop ? req->loop->stopping
                     : atomic_load_explicit(&req->mbox->stopping, memory_order_relaxed));
    if (status < 200 || status > 599 || (nheaders > 0 && headers == NULL)) {
        rc = sdn_error(SELDON_EINVAL, "sdh_respond: status %d or headers invalid", status);
        status = 500;
        nheaders = 0;
        seldon_buf_free(&b);
    }
    if ((frc = format_head(req, status, headers, nheaders, b.len, keep)) < 0) {
        if (rc == 0)
            rc = frc;
        if (frc == SELDON_EINVAL)
            frc = format_head(req, 500, NULL, 0, 0, keep);
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

int sdh_req_client_gone(const sdh_req *req)
{
    return req != NULL && atomic_load_explicit(&req->client_gone, memory_order_relaxed);
}

/* ---------------------------------------------------------------- parsing */

#define OFF(c, at) ((size_t)((const uint8_t *)(at) - (c)->block->data))

static void msg_reset(sdh_conn *c)
{
    c->url_off = SDH_NONE;
    c->url_len = 0;
    c->body_off = SDH_NONE;
    c->body_len = 0;
    c->body_expected = 0;
    c->nhdrs = 0;
    c->last_cb = CB_NONE;
}

/* The block's live bytes moved down by d: shift every offset of the partial message. */
static void conn_rebase(sdh_conn *c, size_t d)
{
    size_t i;
    c->len -= d;
    c->parsed -= d;
    if (c->url_off != SDH_NONE)
        c->url_off -= d;
    if (c->body_off != SDH_NONE)
        c->body_off -= d;
    for (i = 0; i < c->nhdrs; i++) {
        c->hdrs[i].name_off -= d;
        c->hdrs[i].value_off -= d;
    }
}

/*
 * Appends the piece at off to the token at start. When the parser skipped bytes in
 * between (chunk framing, a folded header line), those bytes are already consumed,
 * so the piece can move down over them; a fold becomes one space.
 */
static void join(uint8_t *base, size_t start, size_t *len, size_t off, size_t n, int fold)
{
    size_t end = start + *len;
    if (off != end) {
        if (fold && off > end) {
            base[end++] = ' ';
            while (n > 0 && (base[off] == ' ' || base[off] == '\t')) {
                off++;
                n--;
            }
        }
        memmove(base + end, base + off, n);
    }
    *len = end - start + n;
}

/* Inside a parser callback: stop parsing; conn_parse() answers status and closes. */
static int msg_fail(sdh_conn *c, int status, const char *msg)
{
    c->err_status = status;
    c->err_msg = msg;
    http_parser_pause(&c->parser, 1);
    return 0;
}

static int on_message_begin(http_parser *p)
{
    msg_reset(p->data);
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
    sdh_conn *c = p->data;
    if (c->url_off == SDH_NONE) {
        c->url_off = OFF(c, at);
        c->url_len = n;
    } else {
        join(c->block->data, c->url_off, &c->url_len, OFF(c, at), n, 0);
    }
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
    sdh_conn *c = p->data;
    uint8_t *s = (uint8_t *)at;
    sdh_hoff *h;
    size_t i;

    /* Lower-case in place: these bytes are parsed and ours. */
    for (i = 0; i < n; i++)
        if (s[i] >= 'A' && s[i] <= 'Z')
            s[i] |= 0x20;
    if (c->last_cb == CB_FIELD) {
        h = &c->hdrs[c->nhdrs - 1];
        join(c->block->data, h->name_off, &h->name_len, OFF(c, at), n, 0);
        return 0;
    }
    if (c->nhdrs == c->hdrs_cap) {
        size_t cap = c->hdrs_cap ? c->hdrs_cap * 2 : 16;
        sdh_hoff *nh;
        if (c->nhdrs >= SDH_MAX_HEADERS)
            return msg_fail(c, 431, "too many header fields");
        if (cap > SDH_MAX_HEADERS)
            cap = SDH_MAX_HEADERS;
        if ((nh = sdn_realloc(c->hdrs, cap * sizeof(*nh))) == NULL)
            return msg_fail(c, 503, "out of memory");
        c->hdrs = nh;
        c->hdrs_cap = cap;
    }
    h = &c->hdrs[c->nhdrs++];
    h->name_off = OFF(c, at);
    h->name_len = n;
    h->value_off = h->name_off + n; /* an empty value until one arrives */
    h->value_len = 0;
    c->last_cb = CB_FIELD;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    sdh_conn *c = p->data;
    sdh_hoff *h;
    if (c->nhdrs == 0)
        return 0;
    h = &c->hdrs[c->nhdrs - 1];
    if (c->last_cb == CB_FIELD) {
        h->value_off = OFF(c, at);
        h->value_len = n;
        c->last_cb = CB_VALUE;
    } else {
        join(c->block->data, h->value_off, &h->value_len, OFF(c, at), n, 1);
    }
    return 0;
}

static int expects_continue(const sdh_conn *c)
{
    static const char want[] = "100-continue";
    const uint8_t *base = c->block->data;
    size_t i, k;
    for (i = 0; i < c->nhdrs; i++) {
        const sdh_hoff *h = &c->hdrs[i];
        if (h->name_len != 6 || memcmp(base + h->name_off, "expect", 6) != 0 ||
            h->value_len != sizeof(want) - 1)
            continue;
        for (k = 0; k < h->value_len; k++)
            if ((base[h->value_off + k] | 0x20) != want[k])
                break;
        if (k == h->value_len)
            return 1;
    }
    return 0;
}

/* Loop thread: "100 Continue" takes its place in the FIFO, after earlier responses. */
static void queue_continue(sdh_conn *c)
{
    sdh_req *r = req_new(c->loop, KIND_INTERIM);
    if (r == NULL)
        return; /* the client sends its body after its own timeout */
    r->conn = c;
    c->refs++;
    r->head = (char *)continue_head;
    r->head_len = sizeof(continue_head) - 1;
    r->keep_alive = 1;
    r->ready = 1;
    fifo_push(c, r);
    conn_flush(c);
}

static int on_headers_complete(http_parser *p)
{
    sdh_conn *c = p->data;
    size_t max = c->loop->server->cfg.max_body;
    int chunked = (p->flags & F_CHUNKED) != 0;

    c->last_cb = CB_NONE;
    if (!chunked && (p->flags & F_CONTENTLENGTH)) {
        if (p->content_length > max)
            return msg_fail(c, 413, "request body exceeds the size limit");
        c->body_expected = p->content_length;
    }
    if ((chunked || c->body_expected > 0) && p->http_major == 1 && p->http_minor >= 1 &&
        expects_continue(c))
        queue_continue(c);
    return 0;
}

static int on_chunk_header(http_parser *p)
{
    sdh_conn *c = p->data;
    /* max_body bounds the running total, checked before the chunk arrives */
    if (p->content_length > c->loop->server->cfg.max_body - c->body_len)
        return msg_fail(c, 413, "request body exceeds the size limit");
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
    sdh_conn *c = p->data;
    c->last_cb = CB_NONE; /* trailer fields start new headers */
    if (n > c->loop->server->cfg.max_body - c->body_len)
        return msg_fail(c, 413, "request body exceeds the size limit");
    if (c->body_off == SDH_NONE) {
        c->body_off = OFF(c, at);
        c->body_len = n;
    } else {
        join(c->block->data, c->body_off, &c->body_len, OFF(c, at), n, 0);
    }
    return 0;
}

static void split_url(sdh_request *v, const char *url, size_t n, int is_connect)
{
    const char *q, *f;
    if ((f = memchr(url, '#', n)) != NULL)
        n = (size_t)(f - url);
    if (n > 0 && url[0] != '/' && n <= UINT16_MAX) {
        /* absolute-form (or authority-form): take its path and query */
        struct http_parser_url u;
        http_parser_url_init(&u);
        if (http_parser_parse_url(url, n, is_connect, &u) == 0) {
            v->path = url + n;
            v->path_len = 0;
            v->query = url + n;
            v->query_len = 0;
            if (u.field_set & (1 << UF_PATH)) {
                v->path = url + u.field_data[UF_PATH].off;
                v->path_len = u.field_data[UF_PATH].len;
            }
            if (u.field_set & (1 << UF_QUERY)) {
                v->query = url + u.field_data[UF_QUERY].off;
                v->query_len = u.field_data[UF_QUERY].len;
            }
            return;
        }
    }
    q = memchr(url, '?', n);
    v->path = url;
    v->path_len = q ? (size_t)(q - url) : n;
    v->query = q ? q + 1 : url + n;
    v->query_len = q ? n - v->path_len - 1 : 0;
}

static int build_view(sdh_conn *c, sdh_req *r)
{
    const uint8_t *base = c->block->data;
    sdh_request *v = &r->view;
    sdh_header *hs = r->headers_inline;
    size_t i;

    v->method = http_method_str((enum http_method)c->parser.method);
    v->method_len = strlen(v->method);
    if (c->url_off != SDH_NONE)
        split_url(v, (const char *)base + c->url_off, c->url_len,
                  c->parser.method == HTTP_CONNECT);
    else
        split_url(v, "/", 1, 0);
    if (c->nhdrs > SDH_INLINE_HEADERS &&
        (hs = r->headers_heap = sdn_malloc(c->nhdrs * sizeof(*hs))) == NULL)
        return SELDON_ENOMEM;
    for (i = 0; i < c->nhdrs; i++) {
        hs[i].name = (const char *)base + c->hdrs[i].name_off;
        hs[i].name_len = c->hdrs[i].name_len;
        hs[i].value = (const char *)base + c->hdrs[i].value_off;
        hs[i].value_len = c->hdrs[i].value_len;
    }
    v->headers = hs;
    v->nheaders = c->nhdrs;
    v->body = c->body_len ? base + c->body_off : empty_body;
    v->body_len = c->body_len;
    return 0;
}

/* Loop thread, inside http_parser_execute(): a whole request is in; hand it over. */
static int on_message_complete(http_parser *p)
{
    sdh_conn *c = p->data;
    sdh_loop *L = c->loop;
    sdh_server *s = L->server;
    sdh_req *r = req_new(L, KIND_HANDLER);

    if (r == NULL)
        return msg_fail(c, 503, "out of memory");
    if (build_view(c, r) < 0) {
        req_release(r);
        return msg_fail(c, 503, "out of memory");
    }
    r->id = L->next_id++ * (uint64_t)s->nloops + L->index;
    r->conn = c;
    c->refs++;
    r->block = c->block;
    atomic_fetch_add_explicit(&c->block->refs, 1, memory_order_relaxed);
    r->keep_alive = (uint8_t)(http_should_keep_alive(p) && !L->stopping);
    r->http10 = p->http_major == 1 && p->http_minor == 0;
    fifo_push(c, r);
    c->nwait++;
    L->inflight++;
    if (!r->keep_alive || p->upgrade)
        c->no_more = 1;
    msg_reset(c);
    s->cfg.handler(s->cfg.user_data, r, &r->view); /* may answer, even close c, inline */
    if (c->no_more || c->closed) {
        http_parser_pause(p, 1);
    } else if (c->nfifo >= SDH_MAX_PIPELINE) {
        /* Backpressure: a client pipelining faster than handlers answer waits. */
        c->bp = 1;
        if (c->reading) {
            uv_read_stop((uv_stream_t *)&c->tcp);
            c->reading = 0;
        }
        http_parser_pause(p, 1);
    }
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
    .on_chunk_header = on_chunk_header,
};

/* Loop thread: an error response (internal request) ends the connection. */
static void conn_fail(sdh_conn *c, int status, const char *msg)
{
    sdh_req *r;
    c->err_status = 0;
    c->no_more = 1;
    msg_reset(c);
    if ((r = req_new(c->loop, KIND_INTERNAL)) == NULL) {
        conn_close(c);
        return;
    }
    r->conn = c;
    c->refs++;
    r->http10 = c->parser.http_major == 1 && c->parser.http_minor == 0;
    fifo_push(c, r);
    sdh_respond_error(r, status, msg);
}

/* Loop thread: feeds unparsed bytes to the parser until done, paused or failed. */
static void conn_parse(sdh_conn *c)
{
    if (c->in_parse)
        return; /* a handler answered inline; the outer call carries on */
    c->in_parse = 1;
    c->refs++;
    while (!c->closed && !c->no_more && !c->bp && c->parsed < c->len) {
        const char *data = (const char *)c->block->data + c->parsed;
        size_t n = http_parser_execute(&c->parser, &parser_settings, data, c->len - c->parsed);
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        c->parsed += n;
        if (e == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
            if (c->err_status)
                conn_fail(c, c->err_status, c->err_msg);
            continue;
        }
        if (e != HPE_OK) {
            conn_fail(c, e == HPE_HEADER_OVERFLOW ? 431 : 400, http_errno_description(e));
            break;
        }
        if (c->parser.upgrade)
            c->no_more = 1; /* what follows is another protocol */
    }
    c->in_parse = 0;
    conn_unref(c);
}

/* ---------------------------------------------------------------- connections */

/* Loop thread, before each read: room at the block's tail (see the memory notes above). */
static int conn_make_room(sdh_conn *c)
{
    sdh_block *b = c->block, *nb;
    size_t keep = c->url_off != SDH_NONE ? c->url_off : c->parsed;
    size_t want = SDH_MIN_READ, live, need, cap;

    if (c->body_expected > c->body_len) {
        uint64_t rest = c->body_expected - c->body_len;
        if (rest > want)
            want = rest < SDH_PREALLOC_MAX ? (size_t)rest : SDH_PREALLOC_MAX;
    }
    if (b == NULL) {
        c->block = block_new(want > SDH_BLOCK_SIZE ? want : SDH_BLOCK_SIZE);
        return c->block ? 0 : -1;
    }
    live = c->len - keep;
    if (atomic_load_explicit(&b->refs, memory_order_acquire) == 1) {
        if (live == 0 && keep > 0) {
            conn_rebase(c, keep); /* nothing to keep: start over at the front */
            keep = 0;
            if (b->cap > SDH_BLOCK_KEEP && want <= SDH_BLOCK_SIZE &&
                (nb = sdn_realloc(b, sizeof(*b) + SDH_BLOCK_SIZE)) != NULL) {
                nb->cap = SDH_BLOCK_SIZE;
                c->block = b = nb;
            }
        }
        if (b->cap - c->len >= want)
            return 0;
        if (keep > 0) {
            memmove(b->data, b->data + keep, live);
            conn_rebase(c, keep);
            if (b->cap - c->len >= want)
                return 0;
        }
        need = live + want;
        cap = b->cap * 2 > need ? b->cap * 2 : need;
        if ((nb = sdn_realloc(b, sizeof(*b) + cap)) == NULL)
            return -1;
        nb->cap = cap;
        c->block = nb;
        return 0;
    }
    /* Requests still view this block: leave it be, carry the partial message over. */
    if (b->cap - c->len >= want)
        return 0;
    need = live + want;
    if ((nb = block_new(need > SDH_BLOCK_SIZE ? need : SDH_BLOCK_SIZE)) == NULL)
        return -1;
    memcpy(nb->data, b->data + keep, live);
    conn_rebase(c, keep);
    c->block = nb;
    block_unref(b);
    return 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    sdh_conn *c = h->data;
    (void)suggested;
    if (c->no_more) {
        buf->base = c->loop->scratch;
        buf->len = sizeof(c->loop->scratch);
        return;
    }
    if (conn_make_room(c) < 0) {
        sdn_log(SELDON_LOG_ERROR, "http: out of memory for a connection's input");
        buf->base = NULL; /* libuv reports UV_ENOBUFS */
        buf->len = 0;
        return;
    }
    buf->base = (char *)c->block->data + c->len;
    buf->len = c->block->cap - c->len;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    sdh_conn *c = s->data;
    if (nread > 0) {
        c->last_active = uv_now(&c->loop->uv);
        if (buf->base == c->loop->scratch)
            return; /* no more requests on this connection: discard */
        c->len += (size_t)nread;
        conn_parse(c);
        return;
    }
    if (nread == 0)
        return;
    if (nread == UV_EOF) {
        c->rd_eof = 1;
        uv_read_stop(s);
        c->reading = 0;
        conn_maybe_finish(c);
        return;
    }
    conn_close(c);
}

static void conn_read_start(sdh_conn *c)
{
    if (c->reading || c->closed)
        return;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
        c->reading = 1;
    else
        conn_close(c);
}

static void on_conn_close(uv_handle_t *h)
{
    conn_unref(h->data);
}

static void conn_close(sdh_conn *c)
{
    sdh_req *r;
    if (c->closed)
        return;
    c->closed = 1;
    c->reading = 0;
    c->lingering = 0;
    for (r = c->fifo_head; r != NULL; r = r->next)
        atomic_store_explicit(&r->client_gone, 1, memory_order_relaxed);
    uv_close((uv_handle_t *)&c->tcp, on_conn_close);
    c->loop->nopen--;
    if (c->loop->stopping)
        loop_check_stop(c->loop);
}

static void on_shutdown(uv_shutdown_t *sr, int status)
{
    sdh_conn *c = sr->handle->data;
    if (c->closed)
        return;
    if (status < 0 || c->rd_eof || c->loop->stopping) {
        conn_close(c);
        return;
    }
    /*
     * Closing now, with the client's unread bytes in our receive queue, would send
     * a reset that can destroy the response in flight. Read and discard until the
     * client closes, for a while.
     */
    c->lingering = 1;
    c->linger_since = uv_now(&c->loop->uv);
    conn_read_start(c);
}

/* Loop thread: closes c once nothing is left to answer or write. */
static void conn_maybe_finish(sdh_conn *c)
{
    if (c->closed || c->nfifo > 0 || c->writes > 0)
        return;
    if (c->rd_eof || c->loop->stopping) {
        conn_close(c);
    } else if (c->no_more && !c->shutting) {
        c->shutting = 1;
        if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) < 0)
            conn_close(c);
    }
}

static void on_connection(uv_stream_t *srv, int status)
{
    sdh_loop *L = srv->data;
    sdh_conn *c;

    if (status < 0) {
        sdn_log(SELDON_LOG_WARN, "http: accept: %s", uv_strerror(status));
        return;
    }
    if ((c = sdn_calloc(1, sizeof(*c))) == NULL) {
        /* libuv pauses this listener until the next accept; nothing better to do */
        sdn_log(SELDON_LOG_ERROR, "http: out of memory for a new connection");
        return;
    }
    uv_tcp_init(&L->uv, &c->tcp);
    c->tcp.data = c;
    c->loop = L;
    c->refs = 1;
    c->next = L->conns;
    if (L->conns != NULL)
        L->conns->prev = c;
    L->conns = c;
    L->nopen++;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    msg_reset(c);
    c->last_active = uv_now(&L->uv);
    if (uv_accept(srv, (uv_stream_t *)&c->tcp) < 0 || L->stopping) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    conn_read_start(c);
}

/* ---------------------------------------------------------------- loops */

static void on_sweep(uv_timer_t *t)
{
    sdh_loop *L = t->data;
    uint64_t now = uv_now(&L->uv), idle = L->server->cfg.idle_timeout_ms;
    sdh_conn *c, *next;

    for (c = L->conns; c != NULL; c = next) {
        next = c->next; /* conn_close() frees nothing now */
        if (c->closed)
            continue;
        if (c->lingering) {
            if (now - c->linger_since >= SDH_LINGER_MS)
                conn_close(c);
        } else if (idle > 0 && c->nwait == 0 && now - c->last_active >= idle) {
            conn_close(c);
        }
    }
}

/*
 * Loop thread: the end. Takes the last responses from the mailbox and closes it;
 * requests still unanswered become orphans. Then closes every handle, so that
 * uv_run() returns.
 */
static void loop_finish(sdh_loop *L)
{
    sdh_mbox *mb = L->mbox;
    sdh_req *r, *list, **pp;
    sdh_conn *c, *next;

    if (L->finished)
        return;
    L->finished = 1;
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
            if (r->ready) {
                c->fifo_tail = r;
                pp = &r->next;
                continue;
            }
            *pp = r->next;
            c->nfifo--;
            r->conn = NULL;
            mb->orphans++;
            c->orphaned++;
            c->nwait--;
            L->inflight--;
        }
    }
    uv_mutex_unlock(&mb->mu);
    for (c = L->conns; c != NULL; c = next) {
        c->refs++;
        conn_close(c);
        while ((r = fifo_pop(c)) != NULL)
            req_release(r);
        c->refs -= (unsigned)c->orphaned;
        next = c->next;
        conn_unref(c);
    }
    if (L->listener_open) {
        uv_close((uv_handle_t *)&L->listener, NULL);
        L->listener_open = 0;
    }
    uv_close((uv_handle_t *)&L->async, NULL);
    uv_close((uv_handle_t *)&L->sweep, NULL);
    uv_close((uv_handle_t *)&L->grace, NULL);
}

static void on_grace(uv_timer_t *t)
{
    loop_finish(t->data);
}

static void loop_check_stop(sdh_loop *L)
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
        uv_close((uv_handle_t *)&L->listener, NULL);
        L->listener_open = 0;
    }
    uv_timer_start(&L->grace, on_grace, grace_ms, 0);
    for (c = L->conns; c != NULL; c = next) {
        next = c->next;
        if (c->closed)
            continue;
        c->no_more = 1; /* answer what is in flight, accept nothing new */
        if (c->nfifo == 0 && c->writes == 0)
            conn_close(c);
    }
    loop_check_stop(L);
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
    for (r = list; r != NULL; r = next) {
        next = r->mb_next;
        deliver(r);
    }
    if (stop && !L->stopping)
        begin_stop(L, grace);
}

static void loop_main(void *arg)
{
    sdh_loop *L = arg;
    tls_loop = L;
    uv_run(&L->uv, UV_RUN_DEFAULT);
    tls_loop = NULL;
}

static int uv_fail(int e, const char *what)
{
    return sdn_error(SELDON_EIO, "http: %s: %s", what, uv_strerror(e));
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
        return sdn_error(SELDON_EIO, "http: socket: %s", strerror(errno));
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) {
        rc = sdn_error(SELDON_EIO, "http: setsockopt: %s", strerror(errno));
        goto out;
    }
    if (bind(fd, (struct sockaddr *)&a, sslen) < 0) {
        rc = sdn_error(SELDON_EIO, "http: bind %s port %d: %s", host, port, strerror(errno));
        goto out;
    }
    if (listen(fd, SOMAXCONN) < 0) {
        rc = sdn_error(SELDON_EIO, "http: listen: %s", strerror(errno));
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
        return sdn_error(SELDON_EIO, "http: getsockname: %s", strerror(errno));
    if (a.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&a)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&a)->sin6_port);
}

static int loop_init(sdh_loop *L)
{
    uint64_t idle = L->server->cfg.idle_timeout_ms, every = 1000;
    int e;

    if ((e = uv_loop_init(&L->uv)) < 0)
        return uv_fail(e, "uv_loop_init");
    L->uv_inited = 1;
    if ((L->mbox = sdn_calloc(1, sizeof(*L->mbox))) == NULL)
        return sdn_error(SELDON_ENOMEM, "http: mailbox");
    if ((e = uv_mutex_init(&L->mbox->mu)) < 0) {
        sdn_free(L->mbox);
        L->mbox = NULL;
        return uv_fail(e, "uv_mutex_init");
    }
    L->mbox->async = &L->async;
    if ((e = uv_async_init(&L->uv, &L->async, on_async)) < 0)
        return uv_fail(e, "uv_async_init");
    L->async.data = L;
    uv_timer_init(&L->uv, &L->sweep);
    L->sweep.data = L;
    uv_timer_init(&L->uv, &L->grace);
    L->grace.data = L;
    uv_tcp_init(&L->uv, &L->listener);
    L->listener.data = L;
    L->listener_open = 1;
    if ((e = uv_tcp_open(&L->listener, L->fd)) < 0)
        return uv_fail(e, "uv_tcp_open");
    L->fd = -1; /* the handle owns it now */
    if ((e = uv_listen((uv_stream_t *)&L->listener, SOMAXCONN, on_connection)) < 0)
        return uv_fail(e, "uv_listen");
    if (idle > 0) {
        every = idle / 4;
        every = every < 10 ? 10 : every > 1000 ? 1000 : every;
    }
    uv_timer_start(&L->sweep, on_sweep, every, every);
    return 0;
}

static void close_walk(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
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
        sdn_free(mb);
    }
}

/* Controlling thread, after the loop's thread (if any) has ended. */
static void loop_destroy(sdh_loop *L)
{
    sdh_req *r;
    if (L == NULL)
        return;
    if (L->uv_inited) {
        if (!L->thread_started) {
            uv_walk(&L->uv, close_walk, NULL);
            uv_run(&L->uv, UV_RUN_DEFAULT);
        }
        if (uv_loop_close(&L->uv) != 0)
            sdn_log(SELDON_LOG_ERROR, "http: loop %u closed with handles open", L->index);
    }
    if (L->fd >= 0)
        close(L->fd);
    while ((r = L->cache) != NULL) {
        L->cache = r->next;
        sdn_free(r);
    }
    mbox_release(L->mbox);
    sdn_free(L);
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
    return sdn_error(SELDON_EINVAL, "http: host \"%s\": not a numeric IPv4/IPv6 address", host);
}

static void ignore_sigpipe(void)
{
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
        sa.sa_handler = SIG_IGN;
        sigaction(SIGPIPE, &sa, NULL);
    }
}

int sdh_server_start(sdh_server **out, const sdh_config *cfg)
{
    sdh_server *s = NULL;
    struct sockaddr_storage ss;
    socklen_t sslen = 0;
    const char *host;
    int rc = 0, i, port, e;

    if (out == NULL || cfg == NULL || cfg->handler == NULL) {
        rc = sdn_error(SELDON_EINVAL, "http: out, cfg and cfg->handler must not be NULL");
        goto out;
    }
    *out = NULL;
    if (cfg->io_threads < 1 || cfg->io_threads > 1024 || cfg->port < 0 || cfg->port > 65535) {
        rc = sdn_error(SELDON_EINVAL, "http: io_threads %d or port %d out of range",
                       cfg->io_threads, cfg->port);
        goto out;
    }
    host = cfg->host ? cfg->host : "0.0.0.0";
    if ((rc = parse_host(&ss, &sslen, host)) < 0)
        goto out;
    ignore_sigpipe();
    if ((s = sdn_calloc(1, sizeof(*s))) == NULL ||
        (s->loops = sdn_calloc((size_t)cfg->io_threads, sizeof(*s->loops))) == NULL) {
        rc = sdn_error(SELDON_ENOMEM, "http: server");
        goto out;
    }
    s->cfg = *cfg;
    s->cfg.host = NULL; /* borrowed for this call only */
    s->nloops = cfg->io_threads;
    port = cfg->port;
    for (i = 0; i < s->nloops; i++) {
        sdh_loop *L = sdn_calloc(1, sizeof(*L));
        if (L == NULL) {
            rc = sdn_error(SELDON_ENOMEM, "http: loop");
            goto out;
        }
        s->loops[i] = L;
        L->server = s;
        L->index = (unsigned)i;
        L->fd = -1;
        /* port 0: the first socket picks the port, the others share it */
        if ((rc = open_listener(&L->fd, &ss, sslen, host, port)) < 0)
            goto out;
        if (port == 0 && (port = rc = bound_port(L->fd)) < 0)
            goto out;
        rc = 0;
        if ((rc = loop_init(L)) < 0)
            goto out;
    }
    s->port = port;
    for (i = 0; i < s->nloops; i++) {
        if ((e = uv_thread_create(&s->loops[i]->thread, loop_main, s->loops[i])) < 0) {
            rc = uv_fail(e, "uv_thread_create");
            goto out;
        }
        s->loops[i]->thread_started = 1;
    }
    *out = s;
    s = NULL;
out:
    if (rc < 0)
        fprintf(stderr, "%s\n", seldon_last_error());
    sdh_server_free(s);
    return rc;
}

int sdh_server_port(const sdh_server *s)
{
    return s != NULL ? s->port : -1;
}

void sdh_server_stop(sdh_server *s, uint64_t grace_ms)
{
    int i;
    if (s == NULL || s->stopped)
        return;
    s->stopped = 1;
    for (i = 0; i < s->nloops; i++) {
        sdh_loop *L = s->loops[i];
        if (L == NULL || !L->thread_started)
            continue;
        uv_mutex_lock(&L->mbox->mu);
        atomic_store(&L->mbox->stopping, 1);
        if (!L->mbox->closed) {
            L->mbox->stop_cmd = 1;
            L->mbox->grace_ms = grace_ms;
            uv_async_send(&L->async);
        }
        uv_mutex_unlock(&L->mbox->mu);
    }
    for (i = 0; i < s->nloops; i++)
        if (s->loops[i] != NULL && s->loops[i]->thread_started)
            uv_thread_join(&s->loops[i]->thread);
}

void sdh_server_free(sdh_server *s)
{
    int i;
    if (s == NULL)
        return;
    sdh_server_stop(s, 0);
    if (s->loops != NULL)
        for (i = 0; i < s->nloops; i++)
            loop_destroy(s->loops[i]);
    sdn_free(s->loops);
    sdn_free(s);
}
