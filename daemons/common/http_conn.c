/*
 * HTTP transport, connections: reading into the input block, parsing with
 * http-parser, handing requests to the handler, and writing responses in request
 * order. Everything here runs on the connection's loop thread unless marked.
 * See http_internal.h for the memory and threading model.
 */
#include <string.h>

#include "http_internal.h"

static const uint8_t empty_body[1];
static const char continue_head[] = "HTTP/1.1 100 Continue\r\n\r\n";

static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

static void conn_parse(sdh_conn *c);
static void conn_read_start(sdh_conn *c);
static void conn_maybe_finish(sdh_conn *c);
static void conn_drop_pending(sdh_conn *c);

/* ---------------------------------------------------------------- blocks, requests */

static sdh_block *block_new(size_t cap)
{
    sdh_block *b = sdd_malloc(sizeof(*b) + cap);
    if (b != NULL) {
        atomic_init(&b->refs, 1);
        b->cap = cap;
    }
    return b;
}

/* Any thread: orphans release their block off-loop. */
void sdh_block_unref(sdh_block *b)
{
    if (b != NULL && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1)
        sdd_free(b);
}

/* Loop thread. */
sdh_req *sdh_req_new(sdh_loop *L, int kind)
{
    sdh_req *r = L->cache;
    if (r != NULL) {
        L->cache = r->next;
        L->ncache--;
    } else if ((r = sdd_malloc(sizeof(*r))) == NULL) {
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
    r->head_only = 0;
    r->ready = 0;
    r->responded = 0;
    r->held = 0;
    r->stream = 0;
    r->s_started = 0;
    r->s_ended = 0;
    r->s_chunked = 0;
    r->s_body_done = 0;
    r->s_want_drain = 0;
    r->s_popped = 0;
    r->s_ended_by_handler = 0;
    r->ops = NULL;
    r->sud = NULL;
    r->oq_head = r->oq_tail = NULL;
    r->s_queued = 0;
    r->s_writes = 0;
    r->s_left = -1;
    r->declared = 0;
    return r;
}

/* Any thread. */
void sdh_req_free_storage(sdh_req *r)
{
    sdd_free(r->head_heap);
    r->head_heap = NULL;
    seldon_buf_free(&r->body);
    sdd_free(r->headers_heap);
    r->headers_heap = NULL;
    sdh_block_unref(r->block);
    r->block = NULL;
}

void sdh_conn_unref(sdh_conn *c)
{
    sdh_loop *L = c->loop;
    int adopted = c->adopted;
    if (--c->refs > 0)
        return;
    if (!adopted) { /* an adopted connection left the loop's list at adoption */
        if (c->prev != NULL)
            c->prev->next = c->next;
        else
            L->conns = c->next;
        if (c->next != NULL)
            c->next->prev = c->prev;
    }
    sdh_block_unref(c->block);
    sdd_free(c->hdrs);
    sdd_free(c);
    if (!adopted)
        sdh_loop_maybe_done(L);
}

/* Loop thread: the request is done with (written, or its connection is gone). */
void sdh_req_release(sdh_req *r)
{
    sdh_loop *L = r->loop;
    sdh_conn *c = r->conn;
    if (r->oq_head != NULL)
        sdh_stream_drop(r);
    if (c != NULL && r->held > 0)
        sdh_conn_held(c, 0, r->held);
    sdh_req_free_storage(r);
    if (L->ncache < SDH_REQ_CACHE) {
        r->next = L->cache;
        L->cache = r;
        L->ncache++;
    } else {
        sdd_free(r);
    }
    if (c != NULL)
        sdh_conn_unref(c);
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

sdh_req *sdh_fifo_pop(sdh_conn *c)
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

static void on_write(uv_write_t *w, int status)
{
    sdh_req *r = w->data;
    sdh_conn *c = r->conn;
    c->refs++;
    c->writes--;
    sdh_req_release(r);
    if (status < 0)
        sdh_conn_close(c);
    else
        c->last_active = uv_now(c->loop->uv);
    conn_maybe_finish(c);
    sdh_conn_unref(c);
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
    if (r->body.len > 0 && !r->head_only) {
        b[1].base = (char *)r->body.data;
        b[1].len = r->body.len;
        total += r->body.len;
        nb = 2;
    }
    n = uv_try_write((uv_stream_t *)&c->tcp, b, nb);
    if (n == UV_EAGAIN || n == UV_ENOSYS)
        n = 0;
    if (n < 0) {
        sdh_req_release(r);
        sdh_conn_close(c);
        return;
    }
    if ((size_t)n == total) {
        c->last_active = uv_now(c->loop->uv);
        sdh_req_release(r);
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
        sdh_req_release(r);
        sdh_conn_close(c);
        return;
    }
    c->writes++;
}

/* Loop thread: writes the answered requests at the head of the FIFO. */
void sdh_conn_flush(sdh_conn *c)
{
    sdh_req *r;
    c->refs++;
    while ((r = c->fifo_head) != NULL) {
        if (r->stream) {
            if (!sdh_stream_flush(c, r))
                break;
            continue;
        }
        if (!r->ready)
            break;
        sdh_fifo_pop(c);
        if (c->closed) {
            sdh_req_release(r);
            continue;
        }
        if (!r->keep_alive && r->kind != SDH_KIND_INTERIM)
            c->no_more = 1;
        conn_write(c, r);
    }
    if ((c->bp & SDH_BP_PIPELINE) && !c->closed && c->nfifo <= SDH_MAX_PIPELINE / 2)
        sdh_conn_bp_clear(c, SDH_BP_PIPELINE);
    conn_maybe_finish(c);
    sdh_conn_unref(c);
}

/* ---------------------------------------------------------------- backpressure */

void sdh_conn_bp_set(sdh_conn *c, uint8_t bit)
{
    c->bp |= bit;
    if (c->reading && !c->lingering) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
}

void sdh_conn_bp_clear(sdh_conn *c, uint8_t bit)
{
    if (!(c->bp & bit))
        return;
    c->bp &= (uint8_t)~bit;
    if (c->bp || c->closed)
        return;
    if (c->in_msg) /* time spent paused does not count against the request deadline */
        c->msg_start = uv_now(c->loop->uv);
    if (!c->rd_eof)
        conn_read_start(c);
    conn_parse(c);
}

void sdh_conn_held(sdh_conn *c, size_t add, size_t sub)
{
    size_t lim = c->loop->server->cfg.max_buffered;
    c->held += add;
    c->held -= sub;
    if (c->held > lim) {
        if (!(c->bp & SDH_BP_BYTES))
            sdh_conn_bp_set(c, SDH_BP_BYTES);
    } else if ((c->bp & SDH_BP_BYTES) && c->held <= lim / 2 && !c->closed) {
        sdh_conn_bp_clear(c, SDH_BP_BYTES);
    }
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
    c->last_cb = SDH_CB_NONE;
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
    sdh_conn *c = p->data;
    msg_reset(c);
    c->in_msg = 1;
    c->msg_start = uv_now(c->loop->uv);
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

    if (c->cur_stream != NULL)
        return 0; /* trailers of a streamed body: not kept, the body has gone on */
    /* Lower-case in place: these bytes are parsed and ours. */
    for (i = 0; i < n; i++)
        if (s[i] >= 'A' && s[i] <= 'Z')
            s[i] |= 0x20;
    if (c->last_cb == SDH_CB_FIELD) {
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
        if ((nh = sdd_realloc(c->hdrs, cap * sizeof(*nh))) == NULL)
            return msg_fail(c, 503, "out of memory");
        c->hdrs = nh;
        c->hdrs_cap = cap;
    }
    h = &c->hdrs[c->nhdrs++];
    h->name_off = OFF(c, at);
    h->name_len = n;
    h->value_off = h->name_off + n; /* an empty value until one arrives */
    h->value_len = 0;
    c->last_cb = SDH_CB_FIELD;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
    sdh_conn *c = p->data;
    sdh_hoff *h;
    if (c->nhdrs == 0 || c->cur_stream != NULL)
        return 0;
    h = &c->hdrs[c->nhdrs - 1];
    if (c->last_cb == SDH_CB_FIELD) {
        h->value_off = OFF(c, at);
        h->value_len = n;
        c->last_cb = SDH_CB_VALUE;
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
    sdh_req *r = sdh_req_new(c->loop, SDH_KIND_INTERIM);
    if (r == NULL)
        return; /* the client sends its body after its own timeout */
    r->conn = c;
    c->refs++;
    r->head = (char *)continue_head;
    r->head_len = sizeof(continue_head) - 1;
    r->keep_alive = 1;
    r->ready = 1;
    fifo_push(c, r);
    sdh_conn_flush(c);
}

/* A Content-Encoding other than identity (a body we could not read). */
static int encoded(const sdh_conn *c)
{
    static const char id[] = "identity";
    const uint8_t *base = c->block->data;
    size_t i, k;
    for (i = 0; i < c->nhdrs; i++) {
        const sdh_hoff *h = &c->hdrs[i];
        const uint8_t *v = base + h->value_off;
        size_t n = h->value_len;
        if (h->name_len != 16 || memcmp(base + h->name_off, "content-encoding", 16) != 0)
            continue;
        while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
            n--;
        while (n > 0 && (*v == ' ' || *v == '\t')) {
            v++;
            n--;
        }
        if (n == 0)
            continue;
        if (n != sizeof(id) - 1)
            return 1;
        for (k = 0; k < n; k++)
            if ((v[k] | 0x20) != id[k])
                return 1;
    }
    return 0;
}

static int build_view(sdh_conn *c, sdh_req *r);

/* Loop thread, in the parser: the head handler sees the request; it may take it. */
static int call_head_handler(sdh_conn *c, http_parser *p, int chunked)
{
    sdh_loop *L = c->loop;
    sdh_server *s = L->server;
    sdh_req *r = sdh_req_new(L, SDH_KIND_HANDLER);

    if (r == NULL)
        return msg_fail(c, 503, "out of memory");
    if (build_view(c, r) < 0) {
        sdh_req_release(r);
        return msg_fail(c, 503, "out of memory");
    }
    r->id = (L->next_id++ << 10) | L->index;
    r->conn = c;
    c->refs++;
    r->keep_alive = (uint8_t)(http_should_keep_alive(p) && !L->stopping);
    r->http10 = p->http_major == 1 && p->http_minor == 0;
    r->head_only = p->method == HTTP_HEAD;
    r->declared = chunked ? -1 : (p->flags & F_CONTENTLENGTH) ? (int64_t)p->content_length : 0;
    c->pending = r;
    s->cfg.head_handler(s->cfg.user_data, r, &r->view);
    if (r->stream) {
        /* The view now holds its block; the connection needs none of this message. */
        c->url_off = SDH_NONE;
        c->nhdrs = 0;
        c->body_expected = 0;
        c->in_msg = 0; /* the handler owns the body's pace from here */
        if (c->closed || c->no_more || c->bp)
            http_parser_pause(p, 1);
    }
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    sdh_conn *c = p->data;
    const sdh_config *cfg = &c->loop->server->cfg;
    int chunked = (p->flags & F_CHUNKED) != 0;

    c->last_cb = SDH_CB_NONE;
    if (p->http_major != 1 || p->http_minor > 1)
        return msg_fail(c, 505, "HTTP version not supported; use HTTP/1.1");
    if (!chunked && (p->flags & F_CONTENTLENGTH)) {
        if (p->content_length > cfg->max_body)
            return msg_fail(c, 413, "request body exceeds the size limit");
        c->body_expected = p->content_length;
    }
    if ((chunked || c->body_expected > 0) && !cfg->pass_content_encoding && encoded(c))
        return msg_fail(c, 415,
                        "header Content-Encoding: only identity is supported; send the body "
                        "uncompressed");
    if ((chunked || c->body_expected > 0) && p->http_major == 1 && p->http_minor >= 1 &&
        expects_continue(c))
        queue_continue(c);
    if (cfg->head_handler != NULL && !c->closed && !c->no_more)
        return call_head_handler(c, p, chunked);
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
    sdh_req *r = c->cur_stream;
    c->last_cb = SDH_CB_NONE; /* trailer fields start new headers */
    if (n > c->loop->server->cfg.max_body - c->body_len)
        return msg_fail(c, 413, "request body exceeds the size limit");
    if (r != NULL) {
        c->body_len += n; /* the running total, for max_body */
        r->ops->on_body(r->sud, r, (const uint8_t *)at, n);
        if (c->closed || c->no_more || c->bp)
            http_parser_pause(p, 1);
        return 0;
    }
    if (c->no_more)
        return 0; /* a streamed request answered before its body ended: discard */
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
        split_url(v, (const char *)base + c->url_off, c->url_len, c->parser.method == HTTP_CONNECT);
    else
        split_url(v, "/", 1, 0);
    if (c->nhdrs > SDH_INLINE_HEADERS &&
        (hs = r->headers_heap = sdd_malloc(c->nhdrs * sizeof(*hs))) == NULL)
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

/* Loop thread: after a request was handed over, pause parsing if c must stop. */
static void after_handover(sdh_conn *c, http_parser *p)
{
    if (!c->closed && c->nfifo >= SDH_MAX_PIPELINE)
        sdh_conn_bp_set(c, SDH_BP_PIPELINE); /* a client pipelining faster than answers */
    if (c->no_more || c->closed || c->bp)
        http_parser_pause(p, 1);
}

/* Loop thread, inside http_parser_execute(): a whole request is in; hand it over. */
static int on_message_complete(http_parser *p)
{
    sdh_conn *c = p->data;
    sdh_loop *L = c->loop;
    sdh_server *s = L->server;
    sdh_req *r = c->cur_stream;
    size_t i, in;

    c->in_msg = 0;
    if (r != NULL) { /* a streamed request's body is complete */
        c->cur_stream = NULL;
        r->s_body_done = 1;
        if (!r->keep_alive || p->upgrade || c->stop_after)
            c->no_more = 1;
        msg_reset(c);
        r->ops->on_end(r->sud, r);
        after_handover(c, p);
        return 0;
    }
    if (c->no_more)
        return 0;                   /* the rest of a streamed request answered early */
    if ((r = c->pending) != NULL) { /* the head handler saw it and left it whole */
        c->pending = NULL;
        sdd_free(r->headers_heap);
        r->headers_heap = NULL;
        if (build_view(c, r) < 0) {
            sdh_req_release(r);
            return msg_fail(c, 503, "out of memory");
        }
    } else {
        if ((r = sdh_req_new(L, SDH_KIND_HANDLER)) == NULL)
            return msg_fail(c, 503, "out of memory");
        if (build_view(c, r) < 0) {
            sdh_req_release(r);
            return msg_fail(c, 503, "out of memory");
        }
        r->id = (L->next_id++ << 10) | L->index;
        r->conn = c;
        c->refs++;
        r->keep_alive = (uint8_t)(http_should_keep_alive(p) && !L->stopping);
        r->http10 = p->http_major == 1 && p->http_minor == 0;
        r->head_only = p->method == HTTP_HEAD;
    }
    r->block = c->block;
    atomic_fetch_add_explicit(&c->block->refs, 1, memory_order_relaxed);
    /* what this request holds until it is answered: roughly its bytes */
    in = c->body_len + c->url_len + 64;
    for (i = 0; i < c->nhdrs; i++)
        in += c->hdrs[i].name_len + c->hdrs[i].value_len + 4;
    fifo_push(c, r);
    c->nwait++;
    L->inflight++;
    if (!r->keep_alive || p->upgrade)
        c->no_more = 1;
    msg_reset(c);
    r->held = in;
    sdh_conn_held(c, in, 0);
    s->cfg.handler(s->cfg.user_data, r, &r->view); /* may answer, even close c, inline */
    after_handover(c, p);
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

/* Loop thread: a head handler's request that will not complete. */
static void conn_drop_pending(sdh_conn *c)
{
    sdh_req *r = c->pending;
    if (r != NULL) {
        c->pending = NULL;
        sdh_req_release(r);
    }
}

/* Loop thread: an error response (internal request) ends the connection. */
static void conn_fail(sdh_conn *c, int status, const char *msg)
{
    sdh_req *r;
    c->err_status = 0;
    c->no_more = 1;
    c->in_msg = 0;
    msg_reset(c);
    conn_drop_pending(c);
    if (c->cur_stream != NULL) {
        /* mid-body of a streamed request, whose response may have begun: just close */
        sdh_conn_close(c);
        return;
    }
    if ((r = sdh_req_new(c->loop, SDH_KIND_INTERNAL)) == NULL) {
        sdh_conn_close(c);
        return;
    }
    r->conn = c;
    c->refs++;
    r->http10 = c->parser.http_major == 1 && c->parser.http_minor == 0;
    fifo_push(c, r);
    sdh_respond_error(r, status, msg);
}

/* ---------------------------------------------------------------- adoption (h2c) */

static void on_adopted_close(uv_handle_t *h)
{
    sdh_conn_unref(h->data);
}

static void adopt_release(void *owner)
{
    sdh_conn *c = owner;
    c->tcp.data = c; /* the adopter had it */
    uv_close((uv_handle_t *)&c->tcp, on_adopted_close);
}

/*
 * Loop thread, in conn_parse(): c opened with HTTP/2's preface. It leaves the
 * loop's list (the adopter owns it now, and a stop of this server leaves it be)
 * and goes to the adopter, with the bytes read so far.
 */
static void conn_adopt(sdh_conn *c)
{
    sdh_loop *L = c->loop;
    const sdh_config *cfg = &L->server->cfg;
    sd_adopt a;

    if (cfg->h2_adopt == NULL) {
        conn_fail(c, 505, "HTTP/2 is not served on this port; use HTTP/1.1");
        return;
    }
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = 0;
    }
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        L->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    c->adopted = 1;
    c->closed = 1; /* for this server: nothing more to do with it */
    L->nopen--;
    a.stream = (uv_stream_t *)&c->tcp;
    a.initial = c->block->data;
    a.initial_len = c->len;
    a.release = adopt_release;
    a.owner = c;
    c->parsed = c->len;
    if (cfg->h2_adopt(cfg->h2_user_data, &a) < 0) {
        sdd_log(SELDON_LOG_WARN, "http: the h2c adopter refused a connection: %s",
                seldon_last_error());
        adopt_release(c);
    }
    if (L->stopping)
        sdh_loop_check_stop(L);
}

/* Loop thread: 1 once c's first bytes decided (HTTP/1.1, or adopted), 0 to wait. */
static int conn_sniff(sdh_conn *c)
{
    size_t n = c->len < sizeof(h2_preface) - 1 ? c->len : sizeof(h2_preface) - 1;
    if (memcmp(c->block->data, h2_preface, n) != 0) {
        c->proto_known = 1;
        return 1;
    }
    if (n < sizeof(h2_preface) - 1)
        return 0;
    c->proto_known = 1;
    conn_adopt(c);
    return 1;
}

void sdh_conn_408(sdh_conn *c)
{
    conn_fail(c, 408, "request timeout: the request did not arrive in time");
}

/* Loop thread: feeds unparsed bytes to the parser until done, paused or failed. */
static void conn_parse(sdh_conn *c)
{
    if (c->in_parse)
        return; /* a handler answered inline; the outer call carries on */
    if (!c->proto_known && c->len > 0 && (!conn_sniff(c) || c->adopted))
        return;
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
    sdh_conn_unref(c);
}

/* ---------------------------------------------------------------- connections */

/* Loop thread, before each read: room at the block's tail (see the memory notes above). */
static int conn_make_room(sdh_conn *c)
{
    sdh_block *b = c->block, *nb;
    size_t keep = c->url_off != SDH_NONE ? c->url_off : c->parsed;
    size_t want = c->cur_stream != NULL ? SDH_STREAM_READ : SDH_MIN_READ, live, need, cap;

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
                (nb = sdd_realloc(b, sizeof(*b) + SDH_BLOCK_SIZE)) != NULL) {
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
        if ((nb = sdd_realloc(b, sizeof(*b) + cap)) == NULL)
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
    sdh_block_unref(b);
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
        sdd_log(SELDON_LOG_ERROR, "http: out of memory for a connection's input");
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
        c->last_active = uv_now(c->loop->uv);
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
        if (c->cur_stream != NULL || c->pending != NULL) {
            sdh_conn_close(c); /* a request body that will never end */
            return;
        }
        conn_maybe_finish(c);
        return;
    }
    sdh_conn_close(c);
}

static void conn_read_start(sdh_conn *c)
{
    if (c->reading || c->closed)
        return;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
        c->reading = 1;
    else
        sdh_conn_close(c);
}

static void on_conn_close(uv_handle_t *h)
{
    sdh_conn_unref(h->data);
}

void sdh_conn_close(sdh_conn *c)
{
    sdh_req *r;
    if (c->closed)
        return;
    c->closed = 1;
    c->reading = 0;
    c->lingering = 0;
    c->cur_stream = NULL;
    c->refs++;
    conn_drop_pending(c);
    for (r = c->fifo_head; r != NULL; r = r->next)
        atomic_store_explicit(&r->client_gone, 1, memory_order_relaxed);
    uv_close((uv_handle_t *)&c->tcp, on_conn_close);
    c->loop->nopen--;
    /* streamed requests end here: their handlers hear it through on_abort */
    for (;;) {
        for (r = c->fifo_head; r != NULL; r = r->next)
            if (r->stream && !r->s_ended)
                break;
        if (r == NULL)
            break;
        sdh_stream_abort(r);
    }
    sdh_conn_unref(c);
    if (c->loop->stopping)
        sdh_loop_check_stop(c->loop);
}

static void on_shutdown(uv_shutdown_t *sr, int status)
{
    sdh_conn *c = sr->handle->data;
    if (c->closed)
        return;
    if (status < 0 || c->rd_eof || c->loop->stopping) {
        sdh_conn_close(c);
        return;
    }
    /*
     * Closing now, with the client's unread bytes in our receive queue, would send
     * a reset that can destroy the response in flight. Read and discard until the
     * client closes, for a while.
     */
    c->lingering = 1;
    c->linger_since = uv_now(c->loop->uv);
    conn_read_start(c);
}

/* Loop thread: closes c once nothing is left to answer or write. */
static void conn_maybe_finish(sdh_conn *c)
{
    if (c->closed || c->nfifo > 0 || c->writes > 0)
        return;
    if (c->rd_eof || c->loop->stopping) {
        sdh_conn_close(c);
    } else if (c->no_more && !c->shutting) {
        c->shutting = 1;
        if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) < 0)
            sdh_conn_close(c);
    }
}

void sdh_on_connection(uv_stream_t *srv, int status)
{
    sdh_loop *L = srv->data;
    sdh_conn *c;

    if (status < 0) {
        sdd_log(SELDON_LOG_WARN, "http: accept: %s", uv_strerror(status));
        return;
    }
    if ((c = sdd_calloc(1, sizeof(*c))) == NULL) {
        /* libuv pauses this listener until the next accept; nothing better to do */
        sdd_log(SELDON_LOG_ERROR, "http: out of memory for a new connection");
        return;
    }
    if (!L->tid_set) {
        L->tid = uv_thread_self();
        L->tid_set = 1;
    }
    uv_tcp_init(L->uv, &c->tcp);
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
    c->last_active = uv_now(L->uv);
    if (uv_accept(srv, (uv_stream_t *)&c->tcp) < 0 || L->stopping) {
        sdh_conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    conn_read_start(c);
}
