/*
 * HTTP transport, streaming mode: a request taken by the head handler gets its
 * body as it is read (with pause and resume), and its response goes out in
 * pieces (Content-Length or chunked) through a per-request queue whose size the
 * handler watches (sdh_stream_write() returns 1 above the limit, on_drain below
 * half). Everything here runs on the request's loop thread.
 */
#include <stdio.h>
#include <string.h>

#include "http_internal.h"

struct sdh_chunk {
    sdh_chunk *next;
    sdh_req *r;
    uv_write_t w;
    seldon_buf data; /* owned */
    size_t bytes;    /* counted in r->s_queued and the connection's held bytes */
    unsigned nb;
    uv_buf_t b[3];
    char frame[20]; /* a chunk's size line */
};

static const char last_chunk[] = "0\r\n\r\n";

static int no_body(const sdh_req *r, int status)
{
    return r->head_only || status == 204 || status == 304;
}

int sdh_stream_take(sdh_req *req, const sdh_stream_ops *ops, void *user_data)
{
    sdh_conn *c;
    if (req == NULL || ops == NULL || ops->on_body == NULL || ops->on_end == NULL ||
        ops->on_abort == NULL)
        return sdd_error(SELDON_EINVAL, "sdh_stream_take: NULL request or callback");
    c = req->conn;
    if (c == NULL || c->pending != req || req->stream)
        return sdd_error(SELDON_EINVAL, "sdh_stream_take: only from the head handler, once");
    c->pending = NULL;
    req->stream = 1;
    req->ops = ops;
    req->sud = user_data;
    /* the head view stays valid: the request holds the block it points into */
    req->block = c->block;
    atomic_fetch_add_explicit(&c->block->refs, 1, memory_order_relaxed);
    req->next = NULL;
    if (c->fifo_tail != NULL)
        c->fifo_tail->next = req;
    else
        c->fifo_head = req;
    c->fifo_tail = req;
    c->nfifo++;
    c->nwait++;
    c->loop->inflight++;
    c->cur_stream = req;
    return 0;
}

int64_t sdh_stream_body_length(const sdh_req *req)
{
    return req != NULL ? req->declared : -1;
}

void sdh_stream_pause(sdh_req *req)
{
    if (req != NULL && req->stream && req->conn != NULL && !req->conn->closed)
        sdh_conn_bp_set(req->conn, SDH_BP_USER);
}

void sdh_stream_resume(sdh_req *req)
{
    if (req != NULL && req->stream && req->conn != NULL && !req->conn->closed)
        sdh_conn_bp_clear(req->conn, SDH_BP_USER);
}

/* Queues a piece; the caller flushes. bytes: what it costs on the wire. */
static void queue(sdh_req *r, sdh_chunk *ch)
{
    ch->next = NULL;
    ch->r = r;
    if (r->oq_tail != NULL)
        r->oq_tail->next = ch;
    else
        r->oq_head = ch;
    r->oq_tail = ch;
    r->s_queued += ch->bytes;
    r->held += ch->bytes;
    sdh_conn_held(r->conn, ch->bytes, 0);
}

static sdh_chunk *chunk_new(void)
{
    sdh_chunk *ch = sdd_malloc(sizeof(*ch));
    if (ch != NULL) {
        memset(ch, 0, sizeof(*ch));
        ch->data = (seldon_buf)SELDON_BUF_INIT;
    }
    return ch;
}

/*
 * Flushes c while r (streamed, the caller's) cannot be freed under it: a
 * connection that fails meanwhile aborts r (or a callback ends it), and then it
 * goes here. Returns 0, or SELDON_ECANCELED when r was aborted (on_abort has
 * run; r is gone).
 */
static int flush_guarded(sdh_conn *c, sdh_req *r)
{
    int aborted;
    r->s_writes++;
    sdh_conn_flush(c);
    aborted = r->s_popped && !r->s_ended_by_handler;
    if (--r->s_writes == 0 && r->s_popped)
        sdh_req_release(r); /* ended meanwhile (from a callback), or aborted */
    return aborted ? sdd_error(SELDON_ECANCELED, "the client connection is gone") : 0;
}

/* The request is over for its handler: in-flight accounting, as deliver() does. */
static void finish(sdh_req *r)
{
    sdh_conn *c = r->conn;
    r->s_ended = 1;
    r->ready = 1;
    c->nwait--;
    c->loop->inflight--;
    if (c->cur_stream == r) {
        c->cur_stream = NULL;
        c->no_more = 1; /* the rest of its body is not read */
    }
}

int sdh_stream_respond(sdh_req *req, int status, const sdh_header *headers, size_t nheaders,
                       int64_t content_length)
{
    sdh_conn *c;
    sdh_chunk *ch;
    int keep, chunked = 0, rc;

    if (req == NULL || !req->stream || req->conn == NULL)
        return sdd_error(SELDON_EINVAL, "sdh_stream_respond: not a streamed request");
    if (req->responded || req->s_ended)
        return sdd_error(SELDON_ESTATE, "request %llu: response already started",
                         (unsigned long long)req->id);
    if (status < 200 || status > 599 || (nheaders > 0 && headers == NULL))
        return sdd_error(SELDON_EINVAL, "sdh_stream_respond: status %d or headers invalid", status);
    c = req->conn;
    keep = req->keep_alive && !c->loop->stopping;
    if (content_length < 0 && !no_body(req, status)) {
        if (req->http10)
            keep = 0; /* no chunked encoding: the body ends with the connection */
        else
            chunked = 1;
    }
    if ((ch = chunk_new()) == NULL)
        return sdd_error(SELDON_ENOMEM, "response head");
    if ((rc = sdh_format_head(req, status, headers, nheaders,
                              no_body(req, status) && content_length < 0 ? -1 : content_length,
                              chunked, keep)) < 0) {
        sdd_free(ch);
        return rc;
    }
    req->responded = 1;
    req->s_started = 1;
    req->s_chunked = (uint8_t)chunked;
    req->keep_alive = (uint8_t)keep;
    req->s_left = no_body(req, status) ? 0 : content_length;
    if (no_body(req, status))
        req->head_only = 1; /* nothing after the head */
    ch->b[0] = uv_buf_init(req->head, (unsigned)req->head_len);
    ch->nb = 1;
    ch->bytes = req->head_len;
    queue(req, ch);
    return flush_guarded(c, req);
}

int sdh_stream_write(sdh_req *req, seldon_buf *chunk)
{
    seldon_buf b = SELDON_BUF_INIT;
    sdh_chunk *ch;
    size_t lim;
    int rc = 0;

    if (chunk != NULL) {
        b = *chunk;
        chunk->data = NULL;
        chunk->len = chunk->cap = 0;
    }
    if (req == NULL || !req->stream || !req->s_started || req->s_ended) {
        seldon_buf_free(&b);
        return sdd_error(SELDON_ESTATE, "sdh_stream_write: response not started, or ended");
    }
    lim = req->conn->loop->server->cfg.max_buffered;
    if (req->head_only || b.len == 0) {
        seldon_buf_free(&b);
        return req->s_queued > lim;
    }
    if (req->s_left >= 0 && (uint64_t)b.len > (uint64_t)req->s_left) {
        rc = sdd_error(SELDON_EINVAL, "request %llu: body past its Content-Length",
                       (unsigned long long)req->id);
        b.len = (size_t)req->s_left;
        if (b.len == 0) {
            seldon_buf_free(&b);
            return rc;
        }
    }
    if ((ch = chunk_new()) == NULL) {
        seldon_buf_free(&b);
        sdh_conn_close(req->conn); /* the body is broken: the client must see it */
        return sdd_error(SELDON_ENOMEM, "response piece");
    }
    if (req->s_left >= 0)
        req->s_left -= (int64_t)b.len;
    ch->data = b;
    if (req->s_chunked) {
        int n = snprintf(ch->frame, sizeof(ch->frame), "%zx\r\n", b.len);
        ch->b[0] = uv_buf_init(ch->frame, (unsigned)n);
        ch->b[1] = uv_buf_init((char *)b.data, (unsigned)b.len);
        ch->b[2] = uv_buf_init((char *)"\r\n", 2);
        ch->nb = 3;
        ch->bytes = (size_t)n + b.len + 2;
    } else {
        ch->b[0] = uv_buf_init((char *)b.data, (unsigned)b.len);
        ch->nb = 1;
        ch->bytes = b.len;
    }
    queue(req, ch);
    if (req->s_queued > lim) {
        req->s_want_drain = 1;
        if (rc == 0)
            rc = 1;
    }
    if (flush_guarded(req->conn, req) < 0)
        return SELDON_ECANCELED;
    return rc;
}

int sdh_stream_end(sdh_req *req)
{
    sdh_conn *c;
    sdh_chunk *ch;

    if (req == NULL || !req->stream || req->conn == NULL || req->s_ended)
        return sdd_error(SELDON_ESTATE, "sdh_stream_end: not a streamed request, or ended");
    if (!req->s_started) {
        sdh_respond_error(req, 500, "the response was ended before it began");
        return sdd_error(SELDON_ESTATE, "sdh_stream_end: response not started");
    }
    c = req->conn;
    if (req->s_chunked && !req->head_only) {
        if ((ch = chunk_new()) == NULL) {
            req->keep_alive = 0; /* the body ends with the connection instead */
        } else {
            ch->b[0] = uv_buf_init((char *)last_chunk, sizeof(last_chunk) - 1);
            ch->nb = 1;
            ch->bytes = sizeof(last_chunk) - 1;
            queue(req, ch);
        }
    }
    req->s_ended_by_handler = 1;
    if (req->s_left > 0 || !req->s_body_done)
        req->keep_alive = 0; /* a short body, or a request body left unread */
    if (!req->s_chunked && req->s_left < 0)
        req->keep_alive = 0; /* delimited by the close */
    finish(req);
    c->refs++;
    sdh_conn_flush(c);
    if (c->loop->stopping)
        sdh_loop_check_stop(c->loop);
    sdh_conn_unref(c);
    return 0;
}

static void on_chunk_write(uv_write_t *w, int status)
{
    sdh_chunk *ch = w->data;
    sdh_req *r = ch->r;
    sdh_conn *c = r->conn;
    size_t lim = c->loop->server->cfg.max_buffered;

    c->refs++;
    c->writes--;
    r->s_writes--;
    r->s_queued -= ch->bytes;
    r->held -= ch->bytes;
    sdh_conn_held(c, 0, ch->bytes);
    seldon_buf_free(&ch->data);
    sdd_free(ch);
    /* r may be freed by each branch: not touched after it */
    if (r->s_popped) {
        if (r->s_writes == 0)
            sdh_req_release(r);
    } else if (status >= 0 && r->s_want_drain && r->s_queued <= lim / 2) {
        r->s_want_drain = 0;
        if (r->ops->on_drain != NULL)
            r->ops->on_drain(r->sud, r);
    }
    if (status < 0) {
        sdh_conn_close(c); /* a streamed request still in the FIFO gets on_abort */
    } else {
        c->last_active = uv_now(c->loop->uv);
        sdh_conn_flush(c);
    }
    sdh_conn_unref(c);
}

int sdh_stream_flush(sdh_conn *c, sdh_req *r)
{
    sdh_chunk *ch;
    while ((ch = r->oq_head) != NULL) {
        if (c->closed)
            break;
        r->oq_head = ch->next;
        if (r->oq_head == NULL)
            r->oq_tail = NULL;
        ch->w.data = ch;
        if (uv_write(&ch->w, (uv_stream_t *)&c->tcp, ch->b, ch->nb, on_chunk_write) < 0) {
            r->s_queued -= ch->bytes;
            r->held -= ch->bytes;
            sdh_conn_held(c, 0, ch->bytes);
            seldon_buf_free(&ch->data);
            sdd_free(ch);
            sdh_conn_close(c);
            return 0; /* closing aborted r, or it ended: it left the FIFO either way */
        }
        r->s_writes++;
        c->writes++;
    }
    if (!r->s_ended)
        return 0;
    sdh_fifo_pop(c);
    if (!r->keep_alive)
        c->no_more = 1;
    r->s_popped = 1;
    if (r->s_writes == 0)
        sdh_req_release(r);
    return 1;
}

void sdh_stream_drop(sdh_req *r)
{
    sdh_chunk *ch;
    while ((ch = r->oq_head) != NULL) {
        r->oq_head = ch->next;
        r->s_queued -= ch->bytes;
        seldon_buf_free(&ch->data);
        sdd_free(ch);
    }
    r->oq_tail = NULL;
}

void sdh_stream_abort(sdh_req *r)
{
    sdh_conn *c = r->conn;
    sdh_req **pp;

    finish(r);
    for (pp = &c->fifo_head; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == r) {
            *pp = r->next;
            c->nfifo--;
            break;
        }
    }
    c->fifo_tail = NULL;
    for (pp = &c->fifo_head; *pp != NULL; pp = &(*pp)->next)
        c->fifo_tail = *pp;
    r->next = NULL;
    r->s_popped = 1;
    c->refs++;
    r->ops->on_abort(r->sud, r);
    if (r->s_writes == 0)
        sdh_req_release(r);
    if (c->loop->stopping)
        sdh_loop_check_stop(c->loop);
    sdh_conn_unref(c);
}

void sdh_stream_detach(sdh_req *r)
{
    sdh_conn *c = r->conn;
    if (c->cur_stream == r)
        c->cur_stream = NULL;
    if (!r->s_body_done) {
        r->keep_alive = 0;
        c->no_more = 1; /* the rest of the body is not read */
    }
    r->stream = 0; /* from here on, a whole response like any other */
}
