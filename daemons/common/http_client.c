/*
 * HTTP/1.1 client: see http_client.h. Everything runs on the pool's loop.
 *
 * A request holds its outgoing bytes as a list of chunks: the serialised head,
 * then the body pieces (with their chunked framing). In order, the list holds
 * chunks written and kept for a replay (n_kept), chunks in the connection's
 * one uv_write in flight, then chunks not yet handed to libuv (from `send`).
 *
 * Memory lifetime: a request is freed when three holders let go: its owner
 * (until on_done), its timer handle (until its close callback), and the
 * connection that may have writes in flight pointing into its chunks (until
 * that connection's close callback, or at once when it completes cleanly).
 * Connections and the pool are freed in close callbacks, so a callback that
 * cancels or frees never pulls memory from under the code that called it.
 */
#include "http_client.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <http_parser.h>

#include "sdd.h"

#define READ_BUF_SIZE 65536
#define MAX_WRITE_BUFS 32
#define MAX_PIECE ((size_t)1 << 30)

typedef struct chunk {
    struct chunk *next;
    size_t len;
    char data[];
} chunk;

typedef struct conn conn;

enum { C_CONNECTING, C_IDLE, C_BUSY, C_CLOSING };

struct sdc_request {
    sdc_pool *pool;
    sdc_callbacks cb;
    void *ud;
    conn *conn;                 /* the connection serving it (or connecting for it) */
    sdc_request *qprev, *qnext; /* in the pool's queue */
    uv_timer_t timer;
    int refs;
    chunk *first, *last, *send; /* send: first chunk not handed to libuv */
    size_t n_kept, kept;        /* chunks/bytes written and kept for a replay */
    size_t unsent;              /* bytes not yet written (in flight or not sent) */
    int replayable;             /* every byte sent so far is still held */
    int tried_sync;             /* its first write was tried at once (see flush()) */
    int64_t content_length;
    uint64_t body_written;
    uint8_t chunked, ended, want_drain, done, paused, is_head, says_close, retried, queued;
};

struct conn {
    sdc_pool *pool;
    conn *prev, *next;   /* every connection of the pool */
    conn *iprev, *inext; /* idle list */
    uv_tcp_t tcp;
    uv_timer_t timer; /* connect timeout, then idle timeout */
    uv_connect_t creq;
    uv_write_t wreq;
    http_parser parser;
    sdh_head_buf hb;
    int state;
    int handles;           /* open handles while closing */
    sdc_request *req;      /* the request being served, or the one this connect is for */
    sdc_request *held;     /* the request whose chunks writes may point into */
    sdc_request *retry;    /* a request to replay on a fresh connection once closed */
    int connect_err;       /* a connect that failed at once: reported from the close callback */
    uint64_t served;       /* responses completed on it */
    size_t wr_n, wr_bytes; /* the write in flight */
    uint8_t dedicated, writing, write_failed, reading, resp_bytes, head_done, msg_done,
        informational, bad;
    uint8_t finishing; /* answered; goes idle once the request's last write completes */
};

struct sdc_pool {
    uv_loop_t *loop;
    sdc_pool_options o;
    char *host;
    size_t host_len;
    struct sockaddr_storage addr;
    char *rbuf;
    conn *conns;
    conn *idle;
    sdc_request *qhead, *qtail;
    uint32_t n_open, n_idle, n_queued, n_active, n_connecting; /* n_connecting: undedicated */
    uint64_t alive; /* connections and requests not yet freed */
    sdc_pool_stats stats;
    uv_timer_t closer; /* never started: closing it makes on_freed always asynchronous */
    int freeing;
    void (*on_freed)(void *);
    void *freed_ud;
};

static void conn_close(conn *c);
static void dispatch(sdc_pool *p);
static int conn_new(sdc_pool *p, sdc_request *dedicated);
static void flush(conn *c);
static const http_parser_settings g_settings;

const char *sdc_strerror(int code)
{
    switch (code) {
    case SDC_OK:
        return "ok";
    case SDC_EREFUSED:
        return "refused";
    case SDC_ECONNECT:
        return "connect_error";
    case SDC_ECONNECT_TIMEOUT:
        return "connect_timeout";
    case SDC_ERESET:
        return "reset";
    case SDC_ETIMEOUT:
        return "timeout";
    case SDC_EBADRESPONSE:
        return "bad_response";
    case SDC_ECANCELED:
        return "canceled";
    case SDC_EQUEUEFULL:
        return "queue_full";
    case SDC_ENOMEM:
        return "no_memory";
    case SDC_EINVAL:
        return "invalid";
    default:
        return "unknown";
    }
}

/* ---- Pool bookkeeping ---- */

static void pool_maybe_freed(sdc_pool *p)
{
    if (!p->freeing || p->alive != 0)
        return;
    void (*cb)(void *) = p->on_freed;
    void *ud = p->freed_ud;
    sdd_free(p->host);
    sdd_free(p->rbuf);
    sdd_free(p);
    if (cb != NULL)
        cb(ud);
}

static void queue_push(sdc_pool *p, sdc_request *r, int front)
{
    r->queued = 1;
    p->n_queued++;
    if (front) {
        r->qprev = NULL;
        r->qnext = p->qhead;
        if (p->qhead)
            p->qhead->qprev = r;
        else
            p->qtail = r;
        p->qhead = r;
    } else {
        r->qnext = NULL;
        r->qprev = p->qtail;
        if (p->qtail)
            p->qtail->qnext = r;
        else
            p->qhead = r;
        p->qtail = r;
    }
}

static void queue_remove(sdc_pool *p, sdc_request *r)
{
    if (!r->queued)
        return;
    if (r->qprev)
        r->qprev->qnext = r->qnext;
    else
        p->qhead = r->qnext;
    if (r->qnext)
        r->qnext->qprev = r->qprev;
    else
        p->qtail = r->qprev;
    r->qprev = r->qnext = NULL;
    r->queued = 0;
    p->n_queued--;
}

static void idle_remove(sdc_pool *p, conn *c)
{
    if (c->iprev)
        c->iprev->inext = c->inext;
    else
        p->idle = c->inext;
    if (c->inext)
        c->inext->iprev = c->iprev;
    c->iprev = c->inext = NULL;
    p->n_idle--;
}

/* ---- Requests ---- */

static void req_release(sdc_request *r)
{
    if (--r->refs > 0)
        return;
    sdc_pool *p = r->pool;
    chunk *k = r->first;
    while (k != NULL) {
        chunk *n = k->next;
        sdd_free(k);
        k = n;
    }
    sdd_free(r);
    p->alive--;
    pool_maybe_freed(p);
}

static void req_timer_closed(uv_handle_t *h)
{
    req_release((sdc_request *)h->data);
}

/* Ends r with result: detaches it from the queue and its connection (closing that
 * connection unless the response completed), then calls on_done. */
static void req_finish(sdc_request *r, int result)
{
    if (r->done)
        return;
    sdc_pool *p = r->pool;
    r->done = 1;
    queue_remove(p, r);
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *)&r->timer, req_timer_closed);
    conn *c = r->conn;
    r->conn = NULL;
    if (c != NULL) {
        if (c->req == r)
            c->req = NULL;
        if (result != SDC_OK)
            conn_close(c);
    }
    p->n_active--;
    r->cb.on_done(r, result, r->ud);
    req_release(r);
}

static void req_timeout(uv_timer_t *t)
{
    req_finish((sdc_request *)t->data, SDC_ETIMEOUT);
}

/* Frees the chunks kept for a replay: once a response byte arrived, no replay. */
static void req_drop_kept(sdc_request *r)
{
    while (r->n_kept > 0) {
        chunk *k = r->first;
        r->first = k->next;
        if (r->last == k)
            r->last = NULL;
        sdd_free(k);
        r->n_kept--;
    }
    r->kept = 0;
    r->replayable = 0;
}

static chunk *chunk_append(sdc_request *r, size_t len)
{
    chunk *k = sdd_malloc(sizeof(chunk) + len);
    if (k == NULL)
        return NULL;
    k->next = NULL;
    k->len = len;
    if (r->last)
        r->last->next = k;
    else
        r->first = k;
    r->last = k;
    if (r->send == NULL)
        r->send = k;
    r->unsent += len;
    return k;
}

/* ---- Connections ---- */

static void conn_freed(conn *c)
{
    sdc_pool *p = c->pool;
    if (c->prev)
        c->prev->next = c->next;
    else
        p->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    p->n_open--;
    p->alive++; /* holds the pool while this runs; released below */
    sdc_request *retry = c->retry;
    sdc_request *held = c->held;
    sdc_request *target = c->req; /* a dedicated connect that failed at once */
    int err = c->connect_err;
    sdh_head_buf_free(&c->hb);
    sdd_free(c);
    p->alive--; /* this connection */
    if (err != 0 && target != NULL && !target->done) {
        target->conn = NULL;
        req_finish(target, err);
    } else if (err != 0 && p->qhead != NULL) {
        req_finish(p->qhead, err);
    }
    if (retry != NULL && !retry->done) {
        /* Replay everything from the head on a fresh connection. */
        retry->send = retry->first;
        retry->n_kept = 0;
        retry->kept = 0;
        retry->unsent = 0;
        for (chunk *k = retry->first; k; k = k->next)
            retry->unsent += k->len;
        int rc = p->freeing ? SDC_ECANCELED : conn_new(p, retry);
        if (rc != 0)
            req_finish(retry, rc);
    }
    if (retry != NULL)
        req_release(retry);
    if (held != NULL)
        req_release(held);
    dispatch(p);
    p->alive--;
    pool_maybe_freed(p);
}

static void conn_handle_closed(uv_handle_t *h)
{
    conn *c = (conn *)h->data;
    if (--c->handles == 0)
        conn_freed(c);
}

static void conn_close(conn *c)
{
    sdc_pool *p = c->pool;
    if (c->state == C_CLOSING)
        return;
    if (c->state == C_IDLE)
        idle_remove(p, c);
    if (c->state == C_CONNECTING && !c->dedicated)
        p->n_connecting--;
    c->state = C_CLOSING;
    if (c->req != NULL && c->connect_err == 0) {
        /* Closing under a live request: the caller ends it (req_finish) itself. */
        c->req->conn = NULL;
        c->req = NULL;
    }
    uv_timer_stop(&c->timer);
    c->handles = 2;
    uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
}

static void conn_idle_timeout(uv_timer_t *t)
{
    conn_close((conn *)t->data);
}

static void read_start(conn *c);

static void conn_to_idle(conn *c)
{
    sdc_pool *p = c->pool;
    if (p->freeing || p->n_idle >= p->o.max_idle) {
        conn_close(c);
        return;
    }
    c->state = C_IDLE;
    c->iprev = NULL;
    c->inext = p->idle;
    if (p->idle)
        p->idle->iprev = c;
    p->idle = c;
    p->n_idle++;
    if (p->o.idle_timeout_ms > 0)
        uv_timer_start(&c->timer, conn_idle_timeout, p->o.idle_timeout_ms, 0);
    /* Reading while idle notices the server closing the connection. */
    read_start(c);
}

static void conn_attach(conn *c, sdc_request *r)
{
    sdc_pool *p = c->pool;
    uv_timer_stop(&c->timer);
    c->state = C_BUSY;
    c->req = r;
    c->held = r;
    r->refs++;
    r->conn = c;
    if (c->served > 0)
        p->stats.reuses++;
    http_parser_init(&c->parser, HTTP_RESPONSE);
    c->parser.data = c;
    sdh_head_buf_reset(&c->hb);
    c->resp_bytes = c->head_done = c->msg_done = c->informational = c->bad = 0;
    c->write_failed = 0;
    if (r->paused) {
        if (c->reading)
            uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    } else {
        read_start(c);
    }
    flush(c);
    /* Writes queued while it waited may have left at once: the writer may go on. */
    if (r->want_drain && c->req == r && !c->writing &&
        r->unsent <= p->o.write_queue_limit) {
        r->want_drain = 0;
        if (r->cb.on_drain != NULL)
            r->cb.on_drain(r, r->ud);
    }
}

/* ---- Writing ---- */

/* The write of chunks [wr_n, wr_bytes] left: account for it, then send what follows. */
static void write_done(conn *c, sdc_request *r)
{
    sdc_pool *p = c->pool;
    r->unsent -= c->wr_bytes;
    if (r->replayable && !c->resp_bytes && r->kept + c->wr_bytes <= p->o.write_queue_limit) {
        r->n_kept += c->wr_n;
        r->kept += c->wr_bytes;
    } else {
        r->n_kept += c->wr_n;
        req_drop_kept(r);
    }
    c->wr_n = c->wr_bytes = 0;
    if (c->req != r)
        return;
    flush(c);
    if (r->want_drain && r->unsent <= p->o.write_queue_limit && c->req == r && !c->writing) {
        r->want_drain = 0;
        if (r->cb.on_drain != NULL)
            r->cb.on_drain(r, r->ud);
    }
}

static void on_write(uv_write_t *w, int status)
{
    conn *c = (conn *)w->data;
    sdc_request *r = c->held;
    c->writing = 0;
    if (status < 0) {
        /* EPIPE or a reset: stop writing and let the read side tell what happened
         * (the server may have answered before closing, e.g. 413). */
        c->write_failed = 1;
        if (c->finishing) {
            c->finishing = 0;
            conn_close(c); /* answered already: nobody is left to tell */
        }
        return;
    }
    if (c->state == C_CLOSING || r == NULL)
        return;
    write_done(c, r);
    if (c->finishing && !c->writing) {
        /* The answer came before the kernel took the request's last bytes: the
         * connection is reusable now that they are sent. */
        c->finishing = 0;
        c->held = NULL;
        req_release(r);
        conn_to_idle(c);
        dispatch(c->pool);
    }
}

/*
 * Sends the queued chunks through uv_write. A request's first write (its head,
 * and its body when it came with it) is tried at once with uv_try_write: no
 * poller change and no callback a loop iteration later on the latency path of
 * small requests. Later writes of a streamed body stay asynchronous, so that a
 * writer paced by on_drain yields to the loop and an early answer is read.
 */
static void flush(conn *c)
{
    sdc_request *r = c->req;
    for (;;) {
        if (c->writing || c->write_failed || c->state != C_BUSY || r == NULL || r->send == NULL)
            return;
        uv_buf_t bufs[MAX_WRITE_BUFS];
        size_t n = 0, bytes = 0, i;
        chunk *k = r->send;
        while (k != NULL && n < MAX_WRITE_BUFS) {
            bufs[n++] = uv_buf_init(k->data, (unsigned int)k->len);
            bytes += k->len;
            k = k->next;
        }
        r->send = k;
        c->wr_n = n;
        c->wr_bytes = bytes;
        int w = r->tried_sync ? 0 : uv_try_write((uv_stream_t *)&c->tcp, bufs, (unsigned int)n);
        r->tried_sync = 1;
        if (w == UV_EAGAIN || w == UV_ENOSYS)
            w = 0;
        if (w < 0) {
            c->write_failed = 1;
            return;
        }
        if ((size_t)w == bytes) {
            if (c->state == C_CLOSING)
                return;
            /* Done now: account as on_write would, then go round for what follows. */
            sdc_pool *p = c->pool;
            r->unsent -= c->wr_bytes;
            if (r->replayable && !c->resp_bytes &&
                r->kept + c->wr_bytes <= p->o.write_queue_limit) {
                r->n_kept += c->wr_n;
                r->kept += c->wr_bytes;
            } else {
                r->n_kept += c->wr_n;
                req_drop_kept(r);
            }
            c->wr_n = c->wr_bytes = 0;
            continue;
        }
        /* Partly written: the rest goes through uv_write, the accounting at its end. */
        size_t skip = (size_t)w;
        for (i = 0; i < n && skip >= bufs[i].len; i++)
            skip -= bufs[i].len;
        bufs[i].base += skip;
        bufs[i].len -= (unsigned int)skip;
        c->wreq.data = c;
        if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs + i, (unsigned int)(n - i),
                     on_write) != 0) {
            c->write_failed = 1;
            return;
        }
        c->writing = 1;
        return;
    }
}

/* ---- Reading ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    conn *c = (conn *)h->data;
    /* One buffer per pool: the loop runs one read callback at a time and the
     * parser consumes the whole read before returning. */
    *buf = uv_buf_init(c->pool->rbuf, READ_BUF_SIZE);
}

/* A failure on a busy connection: a replay on a fresh one, or the end of its request. */
static void conn_fail(conn *c, int code)
{
    sdc_request *r = c->req;
    sdc_pool *p = c->pool;
    if (r != NULL && code == SDC_ERESET && c->served > 0 && !c->resp_bytes && r->replayable &&
        !r->retried && !p->freeing) {
        r->retried = 1;
        p->stats.retries++;
        c->req = NULL;
        r->conn = NULL;
        c->retry = r;
        r->refs++;
        conn_close(c);
        return;
    }
    conn_close(c);
    if (r != NULL)
        req_finish(r, code);
}

/* The response ended (on_message_complete, seen after the parser returned).
 * no_reuse: bytes followed the response, or the peer closed after it. */
static void conn_complete(conn *c, int no_reuse)
{
    sdc_request *r = c->req;
    sdc_pool *p = c->pool;
    int keep = http_should_keep_alive(&c->parser) && !no_reuse && r->ended && !c->write_failed &&
               !r->says_close;
    /* Everything was handed to the kernel but the last write's callback is still to
     * come (a loaded machine): the connection goes idle from on_write. */
    int later = keep && c->writing && r->unsent == c->wr_bytes;
    keep = keep && r->unsent == 0 && !c->writing;
    c->served++;
    c->req = NULL;
    r->conn = NULL;
    if (later) {
        c->finishing = 1; /* busy without a request: on_read closes it on any byte */
        if (p->o.idle_timeout_ms > 0)
            uv_timer_start(&c->timer, conn_idle_timeout, p->o.idle_timeout_ms, 0);
    } else if (keep) {
        c->held = NULL;
        req_release(r);
        conn_to_idle(c);
    } else {
        conn_close(c);
    }
    req_finish(r, SDC_OK);
    dispatch(p);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = (conn *)s->data;
    if (nread == 0 || c->state == C_CLOSING)
        return;
    if (c->state != C_BUSY || c->req == NULL) {
        /* Bytes or EOF on an idle connection: the server closed it, or misbehaves. */
        conn_close(c);
        return;
    }
    if (nread < 0) {
        if (nread == UV_EOF && c->resp_bytes) {
            /* A body delimited by the close ends here. */
            http_parser_execute(&c->parser, &g_settings, NULL, 0);
            if (c->state == C_CLOSING)
                return;
            if (c->msg_done) {
                conn_complete(c, 1); /* the peer closed: never reused */
                return;
            }
        }
        conn_fail(c, SDC_ERESET);
        return;
    }
    if (!c->resp_bytes) {
        c->resp_bytes = 1;
        req_drop_kept(c->req);
    }
    size_t n = http_parser_execute(&c->parser, &g_settings, buf->base, (size_t)nread);
    if (c->state == C_CLOSING)
        return; /* canceled from a callback */
    if (c->msg_done) {
        conn_complete(c, n < (size_t)nread);
        return;
    }
    if (HTTP_PARSER_ERRNO(&c->parser) != HPE_OK || n != (size_t)nread)
        conn_fail(c, SDC_EBADRESPONSE);
}

static void read_start(conn *c)
{
    if (!c->reading && uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
        c->reading = 1;
}

static int p_message_begin(http_parser *hp)
{
    conn *c = (conn *)hp->data;
    sdh_head_buf_reset(&c->hb);
    return 0;
}

static int p_header_field(http_parser *hp, const char *at, size_t len)
{
    conn *c = (conn *)hp->data;
    if (sdh_head_buf_field(&c->hb, at, len) != 0) {
        c->bad = 1;
        return -1;
    }
    return 0;
}

static int p_header_value(http_parser *hp, const char *at, size_t len)
{
    conn *c = (conn *)hp->data;
    if (sdh_head_buf_value(&c->hb, at, len) != 0) {
        c->bad = 1;
        return -1;
    }
    return 0;
}

static int p_headers_complete(http_parser *hp)
{
    conn *c = (conn *)hp->data;
    sdc_request *r = c->req;
    int status = (int)hp->status_code;
    if (status < 100 || status > 999)
        return -1; /* http-parser takes "HTTP/1.1 20 OK"; a status has three digits */
    if (status < 200) {
        if (status == 101)
            return -1; /* no upgrades here */
        c->informational = 1;
        return 1; /* an interim response has no body, whatever its headers say */
    }
    const sdh_header *hs = NULL;
    size_t n = 0;
    if (sdh_head_buf_headers(&c->hb, &hs, &n) != 0)
        return -1;
    c->head_done = 1;
    if (r->cb.on_head != NULL)
        r->cb.on_head(r, status, hs, n, r->ud);
    if (c->req != r)
        return -1; /* canceled; conn is closing */
    return r->is_head ? 1 : 0;
}

static int p_body(http_parser *hp, const char *at, size_t len)
{
    conn *c = (conn *)hp->data;
    sdc_request *r = c->req;
    if (!c->head_done)
        return -1;
    if (r->cb.on_body != NULL)
        r->cb.on_body(r, at, len, r->ud);
    return c->req == r ? 0 : -1;
}

static int p_message_complete(http_parser *hp)
{
    conn *c = (conn *)hp->data;
    if (c->informational) {
        c->informational = 0;
        return 0;
    }
    c->msg_done = 1;
    /* Stop here: what follows belongs to no request. */
    http_parser_pause(hp, 1);
    return 0;
}

static const http_parser_settings g_settings = {
    .on_message_begin = p_message_begin,
    .on_header_field = p_header_field,
    .on_header_value = p_header_value,
    .on_headers_complete = p_headers_complete,
    .on_body = p_body,
    .on_message_complete = p_message_complete,
};

/* ---- Connecting ---- */

static void on_connect(uv_connect_t *cr, int status)
{
    conn *c = (conn *)cr->data;
    sdc_pool *p = c->pool;
    if (c->state == C_CLOSING)
        return;
    if (!c->dedicated)
        p->n_connecting--;
    uv_timer_stop(&c->timer);
    if (status < 0) {
        int code = status == UV_ECONNREFUSED ? SDC_EREFUSED
                   : status == UV_ETIMEDOUT  ? SDC_ECONNECT_TIMEOUT
                                             : SDC_ECONNECT;
        sdc_request *r = c->dedicated ? c->req : p->qhead;
        c->dedicated = 1; /* keeps n_connecting right in conn_close */
        conn_close(c);
        if (r != NULL)
            req_finish(r, code);
        return;
    }
    p->stats.connects++;
    uv_tcp_nodelay(&c->tcp, 1);
    if (c->dedicated && c->req != NULL) {
        sdc_request *r = c->req;
        c->dedicated = 0;
        conn_attach(c, r);
        return;
    }
    c->dedicated = 0;
    if (p->qhead != NULL) {
        sdc_request *r = p->qhead;
        queue_remove(p, r);
        conn_attach(c, r);
    } else {
        conn_to_idle(c);
    }
}

static void connect_timeout(uv_timer_t *t)
{
    conn *c = (conn *)t->data;
    sdc_pool *p = c->pool;
    if (c->state != C_CONNECTING)
        return;
    sdc_request *r = c->dedicated ? c->req : p->qhead;
    if (!c->dedicated)
        p->n_connecting--;
    c->dedicated = 1;
    conn_close(c);
    if (r != NULL)
        req_finish(r, SDC_ECONNECT_TIMEOUT);
}

/* Opens a connection, for the queue or dedicated to one request (a replay). */
static int conn_new(sdc_pool *p, sdc_request *dedicated)
{
    conn *c = sdd_calloc(1, sizeof(*c));
    if (c == NULL)
        return SDC_ENOMEM;
    c->pool = p;
    c->state = C_CONNECTING;
    sdh_head_buf_init(&c->hb, p->o.max_head_size);
    if (uv_tcp_init(p->loop, &c->tcp) != 0) {
        sdd_free(c);
        return SDC_ENOMEM;
    }
    uv_timer_init(p->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->creq.data = c;
    c->next = p->conns;
    if (p->conns)
        p->conns->prev = c;
    p->conns = c;
    p->n_open++;
    p->alive++;
    if (dedicated != NULL) {
        c->dedicated = 1;
        c->req = dedicated;
        dedicated->conn = c;
    } else {
        p->n_connecting++;
    }
    int rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&p->addr, on_connect);
    if (rc != 0) {
        /* Reported from the close callback, so that no callback runs in the caller. */
        c->connect_err = rc == UV_ECONNREFUSED ? SDC_EREFUSED : SDC_ECONNECT;
        if (!dedicated) {
            p->n_connecting--;
            c->dedicated = 1;
        }
        conn_close(c);
        return 0;
    }
    if (p->o.connect_timeout_ms > 0)
        uv_timer_start(&c->timer, connect_timeout, p->o.connect_timeout_ms, 0);
    return 0;
}

static void dispatch(sdc_pool *p)
{
    if (p->freeing)
        return;
    while (p->qhead != NULL && p->idle != NULL) {
        conn *c = p->idle;
        idle_remove(p, c);
        sdc_request *r = p->qhead;
        queue_remove(p, r);
        conn_attach(c, r);
    }
    while (p->n_queued > p->n_connecting && p->n_open < p->o.max_connections) {
        if (conn_new(p, NULL) != 0)
            break;
    }
}

/* ---- Public API ---- */

static int parse_upstream(sdc_pool *p, const char *up)
{
    char host[64];
    const char *colon;
    int v6 = up[0] == '[';
    if (v6) {
        const char *end = strchr(up, ']');
        if (end == NULL || end[1] != ':' || (size_t)(end - up - 1) >= sizeof(host))
            return -1;
        memcpy(host, up + 1, (size_t)(end - up - 1));
        host[end - up - 1] = '\0';
        colon = end + 1;
    } else {
        colon = strrchr(up, ':');
        if (colon == NULL || (size_t)(colon - up) >= sizeof(host))
            return -1;
        memcpy(host, up, (size_t)(colon - up));
        host[colon - up] = '\0';
    }
    char *endp = NULL;
    long port = strtol(colon + 1, &endp, 10);
    if (colon[1] == '\0' || *endp != '\0' || port < 1 || port > 65535)
        return -1;
    if (v6)
        return uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)&p->addr) == 0 ? 0 : -1;
    return uv_ip4_addr(host, (int)port, (struct sockaddr_in *)&p->addr) == 0 ? 0 : -1;
}

int sdc_pool_new(sdc_pool **out, uv_loop_t *loop, const char *upstream,
                 const sdc_pool_options *opts)
{
    static const sdc_pool_options defaults = SDC_POOL_OPTIONS_INIT;
    sdc_pool *p = NULL;
    int rc = SDC_EINVAL;
    if (out == NULL || loop == NULL || upstream == NULL || (opts && opts->version != 1))
        goto fail;
    *out = NULL;
    p = sdd_calloc(1, sizeof(*p));
    if (p == NULL) {
        rc = SDC_ENOMEM;
        goto fail;
    }
    p->loop = loop;
    p->o = opts ? *opts : defaults;
    if (p->o.max_connections == 0 || p->o.max_head_size == 0 || p->o.write_queue_limit == 0)
        goto fail;
    if (parse_upstream(p, upstream) != 0) {
        sdd_error(SELDON_EINVAL, "upstream %s: expected a numeric IPv4:port or [IPv6]:port",
                  upstream);
        goto fail;
    }
    p->host_len = strlen(upstream);
    p->host = sdd_strndup(upstream, p->host_len);
    p->rbuf = sdd_malloc(READ_BUF_SIZE);
    if (p->host == NULL || p->rbuf == NULL) {
        rc = SDC_ENOMEM;
        goto fail;
    }
    /* A peer that closes while we write must not kill the process. */
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
        sa.sa_handler = SIG_IGN;
        sigaction(SIGPIPE, &sa, NULL);
    }
    uv_timer_init(loop, &p->closer);
    p->closer.data = p;
    *out = p;
    return 0;
fail:
    if (p != NULL) {
        sdd_free(p->host);
        sdd_free(p->rbuf);
        sdd_free(p);
    }
    return rc;
}

static void pool_closer_closed(uv_handle_t *h)
{
    sdc_pool *p = (sdc_pool *)h->data;
    p->alive--;
    pool_maybe_freed(p);
}

void sdc_pool_free(sdc_pool *p, void (*on_freed)(void *user_data), void *user_data)
{
    if (p == NULL || p->freeing)
        return;
    p->freeing = 1;
    p->alive++; /* the closer handle */
    uv_close((uv_handle_t *)&p->closer, pool_closer_closed);
    p->on_freed = on_freed;
    p->freed_ud = user_data;
    while (p->qhead != NULL)
        req_finish(p->qhead, SDC_ECANCELED);
    for (conn *c = p->conns; c != NULL; c = c->next) {
        if (c->req != NULL && c->connect_err == 0)
            req_finish(c->req, SDC_ECANCELED);
        if (c->retry != NULL)
            req_finish(c->retry, SDC_ECANCELED);
        conn_close(c);
    }
    pool_maybe_freed(p);
}

void sdc_pool_get_stats(sdc_pool_stats *out, const sdc_pool *p)
{
    *out = p->stats;
    out->open = p->n_open;
    out->idle = p->n_idle;
    out->queued = p->n_queued;
    out->active = p->n_active;
}

static int request_start(sdc_request **out, sdc_pool *p, const sdh_request_head *head,
                         const void *body, size_t body_len, int with_body,
                         const sdc_callbacks *cb, void *user_data)
{
    if (out == NULL || p == NULL || head == NULL || cb == NULL || cb->on_done == NULL || p->freeing)
        return SDC_EINVAL;
    *out = NULL;
    if (p->idle == NULL && p->n_queued >= p->o.max_queued)
        return SDC_EQUEUEFULL;
    sdh_request_head h = *head;
    h.host = p->host;
    h.host_len = p->host_len;
    size_t hsz = sdh_request_head_size(&h);
    if (hsz == 0) {
        sdd_error(SELDON_EINVAL, "request head: empty method or target, CR/LF/NUL in a field, "
                                 "or bad content_length");
        return SDC_EINVAL;
    }
    sdc_request *r = sdd_calloc(1, sizeof(*r));
    if (r == NULL)
        return SDC_ENOMEM;
    r->pool = p;
    r->cb = *cb;
    r->ud = user_data;
    r->refs = 2; /* owner, timer */
    r->replayable = 1;
    r->content_length = h.content_length;
    r->chunked = h.content_length == SDH_BODY_CHUNKED;
    r->ended = h.content_length == SDH_BODY_NONE || h.content_length == 0;
    r->is_head = h.method_len == 4 && memcmp(h.method, "HEAD", 4) == 0;
    const sdh_header *conn_h = sdh_header_find(h.headers, h.n_headers, "connection");
    r->says_close = conn_h && sdh_value_has_token(conn_h->value, conn_h->value_len, "close");
    /* A whole body of the announced length goes in the head's chunk: one allocation,
       one buffer in the first write. */
    int whole = with_body && h.content_length >= 0 && body_len == (uint64_t)h.content_length &&
                body_len <= MAX_PIECE - hsz;
    chunk *k = chunk_append(r, whole ? hsz + body_len : hsz);
    if (k == NULL) {
        sdd_free(r);
        return SDC_ENOMEM;
    }
    sdh_request_head_write_sized(k->data, &h, hsz);
    if (whole) {
        if (body_len > 0)
            memcpy(k->data + hsz, body, body_len);
        r->body_written = body_len;
        r->ended = 1;
        with_body = 0;
    }
    p->alive++;
    p->n_active++;
    uv_timer_init(p->loop, &r->timer);
    r->timer.data = r;
    if (p->o.request_timeout_ms > 0)
        uv_timer_start(&r->timer, req_timeout, p->o.request_timeout_ms, 0);
    queue_push(p, r, 0);
    *out = r;
    if (with_body && sdc_request_write(r, body, body_len, 1) < 0) {
        /* Only a wrong length or no memory: nothing was sent, nothing is called back. */
        queue_remove(p, r);
        p->n_active--;
        r->done = 1;
        uv_close((uv_handle_t *)&r->timer, req_timer_closed); /* the timer's reference */
        req_release(r);                                       /* the owner's */
        *out = NULL;
        return SDC_EINVAL;
    }
    dispatch(p);
    return 0;
}

int sdc_request_start(sdc_request **out, sdc_pool *p, const sdh_request_head *head,
                      const sdc_callbacks *cb, void *user_data)
{
    return request_start(out, p, head, NULL, 0, 0, cb, user_data);
}

int sdc_request_start_body(sdc_request **out, sdc_pool *p, const sdh_request_head *head,
                           const void *body, size_t len, const sdc_callbacks *cb,
                           void *user_data)
{
    return request_start(out, p, head, body, len, 1, cb, user_data);
}

int sdc_request_write(sdc_request *r, const void *data, size_t len, int end)
{
    if (r == NULL || r->done || r->ended || (len > 0 && data == NULL))
        return SDC_EINVAL;
    /* A libuv buffer holds at most UINT_MAX bytes: a larger piece goes in parts. */
    while (len > MAX_PIECE) {
        int rc = sdc_request_write(r, data, MAX_PIECE, 0);
        if (rc < 0)
            return rc;
        data = (const char *)data + MAX_PIECE;
        len -= MAX_PIECE;
    }
    size_t total = len;
    if (r->chunked) {
        if (len > 0)
            total += SDH_CHUNK_PREFIX_MAX + 2;
        if (end)
            total += sizeof(SDH_CHUNK_LAST) - 1;
    } else {
        uint64_t after = r->body_written + len;
        if (after > (uint64_t)r->content_length || (end && after != (uint64_t)r->content_length))
            return SDC_EINVAL;
    }
    if (total > 0) {
        chunk *k = chunk_append(r, total);
        if (k == NULL)
            return SDC_ENOMEM;
        size_t at = 0;
        if (r->chunked && len > 0)
            at = sdh_chunk_prefix(k->data, len);
        if (len > 0)
            memcpy(k->data + at, data, len);
        at += len;
        if (r->chunked && len > 0) {
            memcpy(k->data + at, SDH_CHUNK_SUFFIX, 2);
            at += 2;
        }
        if (r->chunked && end) {
            memcpy(k->data + at, SDH_CHUNK_LAST, sizeof(SDH_CHUNK_LAST) - 1);
            at += sizeof(SDH_CHUNK_LAST) - 1;
        }
        r->unsent -= total - at; /* the prefix reserve not used */
        k->len = at;
    }
    r->body_written += len;
    if (end)
        r->ended = 1;
    if (r->conn != NULL && r->conn->state == C_BUSY)
        flush(r->conn);
    if (r->unsent > r->pool->o.write_queue_limit) {
        r->want_drain = 1;
        return 1;
    }
    return 0;
}

void sdc_request_set_timeout(sdc_request *r, uint64_t timeout_ms)
{
    if (r == NULL || r->done)
        return;
    uv_timer_stop(&r->timer);
    if (timeout_ms > 0)
        uv_timer_start(&r->timer, req_timeout, timeout_ms, 0);
}

void sdc_request_pause(sdc_request *r, int paused)
{
    if (r == NULL || r->done)
        return;
    r->paused = paused != 0;
    conn *c = r->conn;
    if (c == NULL || c->state != C_BUSY || c->req != r)
        return;
    if (r->paused) {
        if (c->reading)
            uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    } else {
        read_start(c);
    }
}

void sdc_request_cancel(sdc_request *r)
{
    if (r != NULL && !r->done)
        req_finish(r, SDC_ECANCELED);
}
