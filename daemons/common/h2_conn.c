/*
 * One h2c connection, server or client side: bytes from uv_read go into the
 * nghttp2 session, the session's output goes out through uv_write, and stream
 * events go up to the stream's callbacks. Everything runs on the owner's loop.
 *
 * Re-entrancy: nghttp2 forbids calling the session's send/recv from inside its
 * own callbacks, and a user callback may act on any stream. So every entry into
 * the session is bracketed by sd2_conn_enter/leave; a flush or a failure asked
 * for inside is done at the outermost leave.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "h2_internal.h"
#include "sdd.h"

const char *sd2_strerror(int err)
{
    switch (err) {
    case SD2_OK:
        return "ok";
    case SD2_EREFUSED:
        return "connection refused";
    case SD2_ECONNECT:
        return "connect failed";
    case SD2_ECONNTIMEOUT:
        return "connect timed out";
    case SD2_ETIMEOUT:
        return "request timed out";
    case SD2_ECLOSED:
        return "connection closed";
    case SD2_EGOAWAY:
        return "connection going away; stream not processed";
    case SD2_ERESET:
        return "stream reset by peer";
    case SD2_ECANCELED:
        return "canceled";
    case SD2_ENOMEM:
        return "out of memory";
    case SD2_EPROTO:
        return "protocol error";
    default:
        return "unknown error";
    }
}

/* --- Header blocks ------------------------------------------------------------------ */

static void conn_write_now(sd2_conn *c);

static void hbuf_reset(sd2_hbuf *b)
{
    b->len = 0;
    b->n = 0;
}

static void hbuf_free(sd2_hbuf *b)
{
    sdd_free(b->mem);
    sdd_free(b->ent);
    memset(b, 0, sizeof(*b));
}

static int hbuf_add(sd2_hbuf *b, const uint8_t *name, size_t nl, const uint8_t *value, size_t vl)
{
    size_t need = b->len + nl + vl;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 512;
        char *m;
        while (cap < need)
            cap *= 2;
        m = sdd_realloc(b->mem, cap);
        if (m == NULL)
            return -1;
        b->mem = m;
        b->cap = cap;
    }
    if (b->n == b->ncap) {
        size_t ncap = b->ncap ? b->ncap * 2 : 16;
        size_t *e = sdd_realloc(b->ent, ncap * 4 * sizeof(size_t));
        if (e == NULL)
            return -1;
        b->ent = e;
        b->ncap = ncap;
    }
    b->ent[b->n * 4] = b->len;
    b->ent[b->n * 4 + 1] = nl;
    memcpy(b->mem + b->len, name, nl);
    b->len += nl;
    b->ent[b->n * 4 + 2] = b->len;
    b->ent[b->n * 4 + 3] = vl;
    memcpy(b->mem + b->len, value, vl);
    b->len += vl;
    b->n++;
    return 0;
}

/* The block as sd2_header entries: in inl when they fit, else an array the caller frees.
   NULL with n == 0 is fine. */
static sd2_header *hbuf_view(const sd2_hbuf *b, sd2_header *inl, size_t ninl, int *oom)
{
    sd2_header *h;
    size_t i;
    *oom = 0;
    if (b->n == 0)
        return NULL;
    h = b->n <= ninl ? inl : sdd_malloc(b->n * sizeof(*h));
    if (h == NULL) {
        *oom = 1;
        return NULL;
    }
    for (i = 0; i < b->n; i++) {
        h[i].name = b->mem + b->ent[i * 4];
        h[i].name_len = b->ent[i * 4 + 1];
        h[i].value = b->mem + b->ent[i * 4 + 2];
        h[i].value_len = b->ent[i * 4 + 3];
    }
    return h;
}

/* --- Streams ------------------------------------------------------------------------ */

sd2_stream *sd2_stream_alloc(sd2_conn *c)
{
    sd2_owner *o = c->owner;
    sd2_stream *s = o->spool;
    if (s != NULL) {
        o->spool = s->next;
        o->nspool--;
        memset(s, 0, sizeof(*s));
    } else if ((s = sdd_calloc(1, sizeof(*s))) == NULL) {
        return NULL;
    }
    s->conn = c;
    s->heap_idx = SIZE_MAX;
    return s;
}

void sd2_stream_link(sd2_stream *s)
{
    sd2_conn *c = s->conn;
    s->prev = NULL;
    s->next = c->streams;
    if (c->streams)
        c->streams->prev = s;
    c->streams = s;
    c->nstreams++; /* the idle timer stays armed: it looks at nstreams when it fires */
}

static void stream_unlink(sd2_stream *s)
{
    sd2_conn *c = s->conn;
    if (s->prev)
        s->prev->next = s->next;
    else
        c->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    if (--c->nstreams == 0)
        sd2_conn_idle_arm(c);
}

static sd2_chunk *chunk_get(sd2_owner *o, size_t len)
{
    sd2_chunk *k;
    if (len <= SD2_CHUNK_SMALL && o->pool != NULL) {
        k = o->pool;
        o->pool = k->next;
        o->npool--;
        return k;
    }
    if (len < SD2_CHUNK_SMALL)
        len = SD2_CHUNK_SMALL;
    k = sdd_malloc(sizeof(*k) + len);
    if (k != NULL)
        k->cap = len;
    return k;
}

static void chunk_put(sd2_owner *o, sd2_chunk *k)
{
    if (SD2_POOLS && k->cap == SD2_CHUNK_SMALL && o->npool < SD2_CHUNK_POOL) {
        k->next = o->pool;
        o->pool = k;
        o->npool++;
        return;
    }
    sdd_free(k);
}

/* Whether any of the n bytes at p is an upper-case ASCII letter, eight at a time. */
static int has_upper(const uint8_t *p, size_t n)
{
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x, t;
        memcpy(&x, p + i, 8);
        t = x & ~high; /* each byte below 0x80: adding below carries into no neighbour */
        if (((t + (0x80 - 'A') * ones) & ~(t + (0x80 - 'Z' - 1) * ones) & ~x & high) != 0)
            return 1;
    }
    for (; i < n; i++)
        if (p[i] >= 'A' && p[i] <= 'Z')
            return 1;
    return 0;
}

nghttp2_nv *sd2_keep_block(sd2_stream *s, const sd2_header *h, size_t n, int *oom)
{
    sd2_conn *c = s->conn;
    sd2_owner *o = c->owner;
    size_t bytes = n * sizeof(nghttp2_nv), i;
    sd2_chunk *k;
    nghttp2_nv *nv;
    uint8_t *m;
    *oom = 0;
    if (n == 0)
        return NULL;
    for (i = 0; i < n; i++)
        bytes += h[i].name_len + h[i].value_len;
    if (SD2_POOLS && bytes <= SD2_CHUNK_SMALL && o->pool != NULL) {
        k = o->pool;
        o->pool = k->next;
        o->npool--;
    } else if ((k = sdd_malloc(sizeof(*k) + bytes)) != NULL) {
        k->cap = bytes; /* exact: a block held by a long stream costs what it is */
    } else {
        *oom = 1;
        return NULL;
    }
    k->next = s->hkeep;
    s->hkeep = k;
    nv = (nghttp2_nv *)(void *)k->data;
    m = k->data + n * sizeof(*nv);
    for (i = 0; i < n; i++) {
        const sd2_header *x = &h[i];
        memcpy(m, x->name, x->name_len);
        nv[i].name = m;
        nv[i].namelen = x->name_len;
        m += x->name_len;
        memcpy(m, x->value, x->value_len);
        nv[i].value = m;
        nv[i].valuelen = x->value_len;
        m += x->value_len;
        /* nghttp2 copies and lowers a name only when asked to; HTTP/2 names are lower
           case, so that is rare. */
        nv[i].flags = NGHTTP2_NV_FLAG_NO_COPY_VALUE |
                      (has_upper(nv[i].name, x->name_len) ? 0 : NGHTTP2_NV_FLAG_NO_COPY_NAME);
        /* A request id is new with every request: in the HPACK table it would only push
           out the fields that repeat, at both ends. The first goes in once, so that the
           others name it by index (a never-indexed field may still use an indexed name). */
        if (x->name_len == 12 && memcmp(x->name, "x-request-id", 12) == 0) {
            if (c->rid_named)
                nv[i].flags |= NGHTTP2_NV_FLAG_NO_INDEX;
            c->rid_named = 1;
        }
    }
    return nv;
}

static void keep_free(sd2_stream *s)
{
    sd2_chunk *k = s->hkeep, *next;
    for (; k != NULL; k = next) {
        next = k->next;
        chunk_put(s->conn->owner, k);
    }
    s->hkeep = NULL;
}

static void queue_free(sd2_stream *s)
{
    sd2_chunk *k = s->q_head, *next;
    for (; k != NULL; k = next) {
        next = k->next;
        chunk_put(s->conn->owner, k);
    }
    s->q_head = s->q_tail = NULL;
    s->queued = 0;
}

/* Forgets the stream: the session no longer knows it, the connection no longer counts
 * it, and calls on it are no-ops. The session may still hold its id (connection failure)
 * or has just dropped it (on_stream_close). */
static void stream_detach(sd2_stream *s, int err, uint32_t code)
{
    sd2_conn *c = s->conn;
    if (s->err_set)
        err = s->err_set;
    if (s->unconsumed > 0 && c->ses != NULL && !c->dead)
        nghttp2_session_consume_connection(c->ses, s->unconsumed);
    s->unconsumed = 0;
    if (c->ses != NULL && s->id > 0)
        nghttp2_session_set_stream_user_data(c->ses, s->id, NULL);
    stream_unlink(s);
    if (c->owner->is_client)
        sd2_client_unheap(s);
    if (c->rx_stream == s) {
        c->rx_stream = NULL;
        c->rx_id = 0;
    }
    s->finishing = 1; /* from here, calls on s are no-ops */
    s->close_err = err;
    s->close_code = code;
}

/* Tells the user and frees a detached stream. */
static void stream_tell(sd2_stream *s)
{
    if (s->bound && s->cbs.on_close)
        s->cbs.on_close(s, s->ud, s->close_err, s->close_code);
    queue_free(s);
    sd2_stream_free(s);
}

static void stream_finish(sd2_stream *s, int err, uint32_t code)
{
    stream_detach(s, err, code);
    stream_tell(s);
}

/* Streams that closed while their connection wrote are told once the bytes are out: the
 * answer does not wait for its own bookkeeping. */
static void tell_closed(sd2_conn *c)
{
    while (c->closed != NULL) {
        sd2_stream *s = c->closed;
        c->closed = s->next;
        if (c->closed == NULL)
            c->closed_tail = NULL;
        stream_tell(s);
    }
}

void sd2_stream_free(sd2_stream *s)
{
    sd2_owner *o = s->conn->owner;
    keep_free(s);
    if (SD2_POOLS && o->nspool < SD2_STREAM_POOL) {
        s->next = o->spool;
        o->spool = s;
        o->nspool++;
        return;
    }
    sdd_free(s);
}

void sd2_stream_bind(sd2_stream *s, const sd2_stream_cbs *cbs, void *user_data)
{
    s->cbs = *cbs;
    s->ud = user_data;
    s->bound = 1;
}

void *sd2_stream_user_data(const sd2_stream *s)
{
    return s->ud;
}

int32_t sd2_stream_id(const sd2_stream *s)
{
    return s->id;
}

size_t sd2_queued(const sd2_stream *s)
{
    return s->queued;
}

int sd2_headers_done(const sd2_stream *s)
{
    return s->conn->owner->is_client ? s->headers_recv : s->headers_sent;
}

static ssize_t provider_read(nghttp2_session *ses, int32_t id, uint8_t *buf, size_t len,
                             uint32_t *flags, nghttp2_data_source *src, void *ud)
{
    sd2_stream *s = src->ptr;
    size_t done = 0;
    (void)ud;
    (void)id;
    while (done < len && s->q_head != NULL) {
        sd2_chunk *k = s->q_head;
        size_t take = k->len - k->off;
        if (take > len - done)
            take = len - done;
        memcpy(buf + done, k->data + k->off, take);
        k->off += take;
        done += take;
        if (k->off == k->len) {
            s->q_head = k->next;
            if (s->q_head == NULL)
                s->q_tail = NULL;
            chunk_put(s->conn->owner, k);
        }
    }
    s->queued -= done;
    if (s->want_drain && s->queued < s->conn->owner->opts.stream_queue_limit) {
        s->want_drain = 0;
        s->drain_pending = 1;
        s->conn->want_drains = 1;
    }
    if (s->q_head == NULL) {
        if (s->local_end) {
            *flags |= NGHTTP2_DATA_FLAG_EOF;
            if (s->ntrailers > 0) {
                *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
                if (nghttp2_submit_trailer(ses, s->id, s->trailers, s->ntrailers) != 0)
                    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
                s->ntrailers = 0;
            }
            s->end_submitted = 1;
        } else if (done == 0) {
            s->deferred = 1;
            return NGHTTP2_ERR_DEFERRED;
        }
    }
    return (ssize_t)done;
}

const nghttp2_data_provider sd2_provider_template = {{0}, provider_read};

static void stream_resume(sd2_stream *s)
{
    if (s->deferred) {
        s->deferred = 0;
        nghttp2_session_resume_data(s->conn->ses, s->id);
    }
}

static int stream_usable(const sd2_stream *s)
{
    return !s->conn->dead && !s->reset_local && !s->finishing;
}

/* A send call could not get memory: the stream cannot go on as asked, so it is reset
 * (on_close(SD2_ENOMEM) follows) rather than left waiting for what will never come. When
 * even the RST cannot be queued, the connection goes. */
static int stream_oom(sd2_stream *s)
{
    sd2_conn *c = s->conn;
    s->err_set = SD2_ENOMEM;
    s->reset_local = 1;
    queue_free(s);
    if (nghttp2_submit_rst_stream(c->ses, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR) != 0 &&
        !c->failing) {
        c->failing = 1;
        c->fail_err = SD2_ENOMEM;
    }
    sd2_conn_mark(c);
    return SD2_ENOMEM;
}

int sd2_send_headers(sd2_stream *s, const sd2_header *h, size_t n, int end)
{
    sd2_conn *c = s->conn;
    nghttp2_data_provider prd = sd2_provider_template;
    nghttp2_nv *nv;
    int rv, oom;
    if (!stream_usable(s))
        return SD2_ECLOSED;
    if (c->owner->is_client || s->headers_sent)
        return SD2_EPROTO;
    if ((nv = sd2_keep_block(s, h, n, &oom)) == NULL && oom)
        return stream_oom(s);
    prd.source.ptr = s;
    rv = nghttp2_submit_response(c->ses, s->id, nv, n, end ? NULL : &prd);
    if (rv == NGHTTP2_ERR_NOMEM)
        return stream_oom(s);
    if (rv != 0)
        return SD2_EPROTO;
    s->headers_sent = 1;
    sd2_conn_mark(c);
    if (end) {
        s->local_end = 1;
        s->end_submitted = 1;
        conn_write_now(c);
    } else {
        s->provider = 1;
    }
    return 0;
}

int sd2_write(sd2_stream *s, const void *data, size_t len)
{
    sd2_conn *c = s->conn;
    sd2_chunk *k;
    int full;
    if (!stream_usable(s))
        return SD2_ECLOSED;
    if (s->local_end)
        return SD2_EPROTO;
    if (len == 0)
        return s->queued >= c->owner->opts.stream_queue_limit;
    if (s->q_tail != NULL && s->q_tail->cap - s->q_tail->len >= len) {
        /* Room left in the last chunk: small writes share it, so memory stays within
         * about twice the bytes queued. */
        memcpy(s->q_tail->data + s->q_tail->len, data, len);
        s->q_tail->len += len;
    } else {
        k = chunk_get(c->owner, len);
        if (k == NULL)
            return stream_oom(s);
        k->next = NULL;
        k->len = len;
        k->off = 0;
        memcpy(k->data, data, len);
        if (s->q_tail)
            s->q_tail->next = k;
        else
            s->q_head = k;
        s->q_tail = k;
    }
    s->queued += len;
    full = s->queued >= c->owner->opts.stream_queue_limit;
    if (full)
        s->want_drain = 1;
    stream_resume(s);
    sd2_conn_mark(c);
    return full;
}

int sd2_end(sd2_stream *s, const sd2_header *trailers, size_t n)
{
    sd2_conn *c = s->conn;
    if (!stream_usable(s))
        return SD2_ECLOSED;
    if (s->local_end || !s->provider)
        return SD2_EPROTO;
    if (n > 0) {
        int oom;
        s->trailers = sd2_keep_block(s, trailers, n, &oom);
        if (oom)
            return stream_oom(s);
        s->ntrailers = n;
    }
    s->local_end = 1;
    stream_resume(s);
    sd2_conn_mark(c);
    conn_write_now(c);
    return 0;
}

int sd2_reset(sd2_stream *s, uint32_t h2_code)
{
    sd2_conn *c = s->conn;
    if (!stream_usable(s))
        return SD2_ECLOSED;
    s->reset_local = 1;
    if (!s->err_set)
        s->err_set = SD2_ECANCELED;
    queue_free(s);
    nghttp2_submit_rst_stream(c->ses, NGHTTP2_FLAG_NONE, s->id, h2_code);
    sd2_conn_mark(c);
    return 0;
}

void sd2_consume(sd2_stream *s, size_t len)
{
    sd2_conn *c = s->conn;
    if (len > s->unconsumed)
        len = s->unconsumed;
    if (len == 0 || c->dead)
        return;
    s->unconsumed -= len;
    nghttp2_session_consume(c->ses, s->id, len);
    sd2_conn_mark(c);
}

/* --- Session callbacks ---------------------------------------------------------------- */

static sd2_stream *stream_of(nghttp2_session *ses, int32_t id)
{
    return id > 0 ? nghttp2_session_get_stream_user_data(ses, id) : NULL;
}

static int on_begin_headers(nghttp2_session *ses, const nghttp2_frame *f, void *ud)
{
    sd2_conn *c = ud;
    sd2_stream *s;
    if (f->hd.type != NGHTTP2_HEADERS)
        return 0;
    s = stream_of(ses, f->hd.stream_id);
    if (s == NULL) {
        if (c->owner->is_client || f->headers.cat != NGHTTP2_HCAT_REQUEST)
            return 0;
        if (c->owner->closing)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        s = sd2_stream_alloc(c);
        if (s == NULL)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        s->id = f->hd.stream_id;
        sd2_stream_link(s);
        nghttp2_session_set_stream_user_data(ses, s->id, s);
    }
    hbuf_reset(&c->rx);
    c->rx_stream = s;
    c->rx_id = f->hd.stream_id;
    return 0;
}

/* The stream of the header block being received: HTTP/2 sends a block's frames back to
 * back, so the one on_begin_headers found serves every field of it. */
static sd2_stream *rx_stream_of(sd2_conn *c, nghttp2_session *ses, int32_t id)
{
    return id == c->rx_id ? c->rx_stream : stream_of(ses, id);
}

static int on_header(nghttp2_session *ses, const nghttp2_frame *f, const uint8_t *name, size_t nl,
                     const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
    sd2_conn *c = ud;
    sd2_stream *s = rx_stream_of(c, ses, f->hd.stream_id);
    (void)flags;
    if (s == NULL || f->hd.type != NGHTTP2_HEADERS)
        return 0;
    /* RFC 9113 counts 32 bytes per field on top of name and value. */
    if (c->rx.len + nl + vl + 32 * (c->rx.n + 1) > c->owner->opts.max_header_list) {
        s->err_set = SD2_EPROTO;
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    if (hbuf_add(&c->rx, name, nl, value, vl) < 0) {
        s->err_set = SD2_ENOMEM;
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return 0;
}

/* A response's block opens with ":status" and three digits. */
static int status_first(const sd2_header *h, size_t n)
{
    const char *v;
    if (n == 0 || h[0].name_len != 7 || memcmp(h[0].name, ":status", 7) != 0 ||
        h[0].value_len != 3)
        return 0;
    v = h[0].value;
    return v[0] >= '1' && v[0] <= '9' && v[1] >= '0' && v[1] <= '9' && v[2] >= '0' && v[2] <= '9';
}

static int deliver_headers(sd2_conn *c, sd2_stream *s, const nghttp2_frame *f)
{
    int end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    int oom;
    sd2_header inl[SD2_HDR_INLINE];
    sd2_hbuf *rx = &c->rx;
    sd2_header *h = hbuf_view(rx, inl, SD2_HDR_INLINE, &oom);
    if (oom) {
        s->err_set = SD2_ENOMEM;
        nghttp2_submit_rst_stream(c->ses, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
        return 0;
    }
    if (end)
        s->remote_end = 1;
    if (f->headers.cat == NGHTTP2_HCAT_REQUEST) {
        c->owner->on_request(c->owner, s, h, rx->n, end);
    } else if (f->headers.cat == NGHTTP2_HCAT_RESPONSE) {
        if (c->owner->opts.forward_only && !status_first(h, rx->n)) {
            /* What nghttp2 would have refused, had its HTTP checks been on. */
            s->err_set = SD2_EPROTO;
            nghttp2_submit_rst_stream(c->ses, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_PROTOCOL_ERROR);
        } else {
            s->headers_recv = 1;
            if (s->bound && !s->reset_local && s->cbs.on_headers)
                s->cbs.on_headers(s, s->ud, h, rx->n, end);
        }
    } else if (f->headers.cat == NGHTTP2_HCAT_HEADERS) {
        /* Trailers (or a 1xx's follow-up, which h2c gRPC does not use). */
        if (end && s->bound && !s->reset_local && s->cbs.on_end)
            s->cbs.on_end(s, s->ud, h, rx->n);
    }
    if (h != inl)
        sdd_free(h);
    hbuf_reset(rx);
    return 0;
}

static int on_frame_recv(nghttp2_session *ses, const nghttp2_frame *f, void *ud)
{
    sd2_conn *c = ud;
    sd2_stream *s;
    switch (f->hd.type) {
    case NGHTTP2_HEADERS:
        s = rx_stream_of(c, ses, f->hd.stream_id);
        c->rx_stream = NULL;
        c->rx_id = 0;
        if (s != NULL)
            return deliver_headers(c, s, f);
        break;
    case NGHTTP2_DATA:
        s = stream_of(ses, f->hd.stream_id);
        if (s != NULL && (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
            s->remote_end = 1;
            if (s->bound && !s->reset_local && s->cbs.on_end)
                s->cbs.on_end(s, s->ud, NULL, 0);
        }
        break;
    case NGHTTP2_RST_STREAM:
        s = stream_of(ses, f->hd.stream_id);
        if (s != NULL) {
            s->rst_recv = 1;
            s->rst_code = f->rst_stream.error_code;
        }
        break;
    case NGHTTP2_GOAWAY:
        c->goaway_recv = 1;
        c->goaway_last = f->goaway.last_stream_id;
        break;
    default:
        break;
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *ses, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *ud)
{
    sd2_stream *s = stream_of(ses, id);
    (void)flags;
    (void)ud;
    if (s == NULL || !s->bound || s->reset_local || s->cbs.on_data == NULL) {
        nghttp2_session_consume(ses, id, len);
        return 0;
    }
    s->unconsumed += len;
    s->cbs.on_data(s, s->ud, data, len);
    return 0;
}

static int on_stream_close(nghttp2_session *ses, int32_t id, uint32_t code, void *ud)
{
    sd2_conn *c = ud;
    sd2_stream *s = stream_of(ses, id);
    int err = SD2_OK;
    if (s == NULL)
        return 0;
    if (s->rst_recv && s->rst_code != NGHTTP2_NO_ERROR) {
        err = SD2_ERESET;
        code = s->rst_code;
    } else if (c->goaway_recv && id > c->goaway_last) {
        err = SD2_EGOAWAY;
    } else if (code == NGHTTP2_REFUSED_STREAM) {
        err = SD2_EGOAWAY;
    } else if (code != NGHTTP2_NO_ERROR) {
        err = SD2_EPROTO;
    } else if (!s->remote_end || !s->end_submitted) {
        /* RST_STREAM(NO_ERROR) before the exchange finished. */
        err = SD2_ERESET;
    }
    if (!c->sending) {
        stream_finish(s, err, code);
        return 0;
    }
    stream_detach(s, err, code);
    s->next = NULL;
    if (c->closed_tail != NULL)
        c->closed_tail->next = s;
    else
        c->closed = s;
    c->closed_tail = s;
    return 0;
}

static int on_invalid_frame(nghttp2_session *ses, const nghttp2_frame *f, int lib_error, void *ud)
{
    sd2_stream *s = stream_of(ses, f->hd.stream_id);
    (void)ud;
    (void)lib_error;
    if (s != NULL && !s->err_set)
        s->err_set = SD2_EPROTO;
    return 0;
}

/* --- The connection ---------------------------------------------------------------------- */

int sd2_owner_init(sd2_owner *o, uv_loop_t *loop, const sd2_opts *opts, int is_client)
{
    memset(o, 0, sizeof(*o));
    o->loop = loop;
    if (opts)
        o->opts = *opts;
    if (!o->opts.max_concurrent_streams)
        o->opts.max_concurrent_streams = 100;
    if (!o->opts.max_header_list)
        o->opts.max_header_list = 64 << 10;
    if (!o->opts.stream_window)
        o->opts.stream_window = 256 << 10;
    if (!o->opts.conn_window)
        o->opts.conn_window = 1 << 20;
    if (o->opts.conn_window < 65535)
        o->opts.conn_window = 65535;
    if (!o->opts.stream_queue_limit)
        o->opts.stream_queue_limit = 256 << 10;
    if (!o->opts.out_limit)
        o->opts.out_limit = 256 << 10;
    if (!o->opts.max_conns_per_upstream)
        o->opts.max_conns_per_upstream = 4;
    if (!o->opts.connect_timeout_ms)
        o->opts.connect_timeout_ms = 5000;
    if (!o->opts.idle_timeout_ms)
        o->opts.idle_timeout_ms = 60000;
    o->is_client = is_client;
    o->rbuf = sdd_malloc(SD2_RBUF);
    o->wbuf = sdd_malloc(SD2_WRITE_BATCH);
    if (o->rbuf == NULL || o->wbuf == NULL) {
        sd2_owner_fini(o);
        return SD2_ENOMEM;
    }
    uv_idle_init(loop, &o->idle);
    uv_check_init(loop, &o->check);
    o->idle.data = o;
    o->check.data = o;
    return 0;
}

void sd2_owner_fini(sd2_owner *o)
{
    while (o->pool != NULL) {
        sd2_chunk *k = o->pool;
        o->pool = k->next;
        sdd_free(k);
    }
    o->npool = 0;
    while (o->spool != NULL) {
        sd2_stream *st = o->spool;
        o->spool = st->next;
        sdd_free(st);
    }
    o->nspool = 0;
    sdd_free(o->rbuf);
    o->rbuf = NULL;
    sdd_free(o->wbuf);
    o->wbuf = NULL;
}

/* nghttp2 allocates through libseldon's hooks too, like everything in the daemons. */
static void *mem_malloc(size_t size, void *ud)
{
    (void)ud;
    return sdd_malloc(size);
}

static void mem_free(void *ptr, void *ud)
{
    (void)ud;
    sdd_free(ptr);
}

static void *mem_calloc(size_t n, size_t size, void *ud)
{
    (void)ud;
    return sdd_calloc(n, size);
}

static void *mem_realloc(void *ptr, size_t size, void *ud)
{
    (void)ud;
    return sdd_realloc(ptr, size);
}

static nghttp2_mem sd2_mem = {NULL, mem_malloc, mem_free, mem_calloc, mem_realloc};

int sd2_conn_session(sd2_conn *c)
{
    sd2_owner *o = c->owner;
    nghttp2_session_callbacks *cb = NULL;
    nghttp2_option *opt = NULL;
    nghttp2_settings_entry iv[3];
    int rv = SD2_ENOMEM;
    if (nghttp2_session_callbacks_new(&cb) != 0 || nghttp2_option_new(&opt) != 0)
        goto out;
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cb, on_invalid_frame);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_max_send_header_block_length(opt, o->opts.max_header_list + 4096);
    if (o->is_client) {
        if (o->opts.forward_only)
            nghttp2_option_set_no_http_messaging(opt, 1);
        nghttp2_option_set_peer_max_concurrent_streams(opt, o->opts.max_concurrent_streams);
        rv = nghttp2_session_client_new3(&c->ses, cb, c, opt, &sd2_mem);
    } else {
        rv = nghttp2_session_server_new3(&c->ses, cb, c, opt, &sd2_mem);
    }
    if (rv != 0) {
        c->ses = NULL;
        rv = SD2_ENOMEM;
        goto out;
    }
    iv[0].settings_id = NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS;
    iv[0].value = o->is_client ? 100 : o->opts.max_concurrent_streams;
    iv[1].settings_id = NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE;
    iv[1].value = o->opts.stream_window;
    iv[2].settings_id = NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE;
    iv[2].value = o->opts.max_header_list;
    rv = nghttp2_submit_settings(c->ses, NGHTTP2_FLAG_NONE, iv, 3);
    if (rv == 0)
        rv = nghttp2_session_set_local_window_size(c->ses, NGHTTP2_FLAG_NONE, 0,
                                                   (int32_t)o->opts.conn_window);
    if (rv != 0) {
        nghttp2_session_del(c->ses);
        c->ses = NULL;
        rv = SD2_ENOMEM;
    }
out:
    nghttp2_session_callbacks_del(cb);
    nghttp2_option_del(opt);
    return rv;
}

void sd2_conn_link(sd2_conn *c)
{
    sd2_owner *o = c->owner;
    c->prev = NULL;
    c->next = o->conns;
    if (o->conns)
        o->conns->prev = c;
    o->conns = c;
    o->nconns++;
}

static void conn_unlink(sd2_conn *c)
{
    sd2_owner *o = c->owner;
    if (c->prev)
        c->prev->next = c->next;
    else
        o->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    o->nconns--;
}

/* Deferred work, once per loop iteration: flush what the API calls marked, then free
 * dead connections. The idle handle keeps the poll from blocking while work waits;
 * the check handle runs it right after the poll. */
static void owner_work(sd2_owner *o)
{
    while (o->dirty != NULL) {
        sd2_conn *c = o->dirty;
        o->dirty = c->dnext;
        c->dnext = NULL;
        c->dirty = 0;
        sd2_conn_flush(c);
    }
    while (o->zombies != NULL) {
        sd2_conn *c = o->zombies;
        o->zombies = c->next;
        hbuf_free(&c->rx);
        sdd_free(c);
    }
    uv_idle_stop(&o->idle);
    uv_check_stop(&o->check);
    if (o->closing && o->nconns == 0 && o->all_gone)
        o->all_gone(o);
}

static void on_idle(uv_idle_t *h)
{
    owner_work(h->data);
}

static void on_check(uv_check_t *h)
{
    owner_work(h->data);
}

static void owner_wake(sd2_owner *o)
{
    uv_idle_start(&o->idle, on_idle);
    uv_check_start(&o->check, on_check);
}

void sd2_conn_mark(sd2_conn *c)
{
    if (c->dirty || c->dead)
        return;
    c->dirty = 1;
    c->dnext = c->owner->dirty;
    c->owner->dirty = c;
    owner_wake(c->owner);
}

/*
 * An answer or request just ended on c: when it is the connection's only stream, its bytes
 * go out now rather than at the end of the loop iteration, ahead of the bookkeeping that
 * the rest of this iteration does (the other side's stream closing, its counters). The
 * caller may be inside a callback of another connection and go on using its own state, so
 * nothing here calls anybody back: streams that close on the way, drains and failures wait
 * for the deferred flush the caller already asked for with sd2_conn_mark().
 */
static void conn_write_now(sd2_conn *c)
{
    if (c->nstreams != 1 || c->depth > 0 || c->dead || c->released || c->failing ||
        c->owner->wbusy || (c->owner->is_client && !c->connected))
        return;
    c->hold = 1;
    sd2_conn_flush(c);
    c->hold = 0;
}

/* The connection is gone for good: no handle, no write, no stream refers to it. Its
 * memory goes at the next loop iteration, as callers up the stack may still look at it. */
static void conn_gone(sd2_conn *c)
{
    sd2_owner *o = c->owner;
    conn_unlink(c);
    o->conn_gone(o, c);
    c->next = o->zombies;
    o->zombies = c;
    owner_wake(o);
}

static void handle_closed(uv_handle_t *h)
{
    sd2_conn *c = h->data;
    if (--c->handles == 0)
        conn_gone(c);
}

static void conn_release(sd2_conn *c)
{
    if (c->released)
        return;
    if (!c->own_tcp) {
        /* Adopted: give the handle back once no write of ours is pending. */
        uv_read_stop(c->stream);
        c->reading = 0;
        if (c->writes_pending > 0)
            return;
    }
    c->released = 1;
    c->handles = 1; /* held while closing below */
    if (c->own_tcp) {
        c->handles++;
        c->tcp.data = c;
        uv_close((uv_handle_t *)&c->tcp, handle_closed);
    } else {
        c->release(c->release_owner);
        c->stream = NULL;
    }
    if (c->timer_on) {
        c->handles++;
        c->ctimer.data = c;
        uv_close((uv_handle_t *)&c->ctimer, handle_closed);
    }
    if (--c->handles == 0)
        conn_gone(c);
}

/* Server side: a connection without streams for idle_timeout_ms gets GOAWAY, and closes
 * once it is sent (the session then wants nothing more). The timer is not moved with every
 * request: it fires at the first deadline and compares against the time the connection last
 * became idle, re-arming for what is left. While streams are open it lapses, and the last
 * stream to finish arms it again. */
static void on_idle_timeout(uv_timer_t *t)
{
    sd2_conn *c = t->data;
    uint64_t ms = c->owner->opts.idle_timeout_ms, now;
    if (c->dead || c->goaway_sent)
        return;
    if (c->nstreams > 0) {
        c->idle_armed = 0;
        return;
    }
    now = uv_now(c->owner->loop);
    if (now - c->idle_since < ms) {
        uv_timer_start(&c->ctimer, on_idle_timeout, c->idle_since + ms - now, 0);
        return;
    }
    c->idle_armed = 0;
    sdd_log(SELDON_LOG_DEBUG, "h2: closing a connection idle for %llu ms",
            (unsigned long long)c->owner->opts.idle_timeout_ms);
    c->goaway_sent = 1;
    nghttp2_submit_goaway(c->ses, NGHTTP2_FLAG_NONE,
                          nghttp2_session_get_last_proc_stream_id(c->ses), NGHTTP2_NO_ERROR, NULL,
                          0);
    sd2_conn_mark(c);
}

void sd2_conn_idle_arm(sd2_conn *c)
{
    if (!c->timer_on || c->dead || c->owner->is_client || c->nstreams > 0)
        return;
    c->idle_since = uv_now(c->owner->loop);
    if (!c->idle_armed) {
        c->idle_armed = 1;
        uv_timer_start(&c->ctimer, on_idle_timeout, c->owner->opts.idle_timeout_ms, 0);
    }
}

void sd2_conn_fail(sd2_conn *c, int err)
{
    if (c->dead)
        return;
    if (c->depth > 0) {
        if (!c->failing) {
            c->failing = 1;
            c->fail_err = err;
        }
        return;
    }
    c->dead = 1;
    c->depth++; /* nothing below may re-enter the session */
    tell_closed(c);
    while (c->streams != NULL) {
        sd2_stream *s = c->streams;
        /* Past the peer's GOAWAY: it never processed the stream, whatever came next. */
        int e = c->goaway_recv && s->id > c->goaway_last ? SD2_EGOAWAY : err;
        stream_finish(s, e, 0);
    }
    nghttp2_session_del(c->ses);
    c->ses = NULL;
    c->depth--;
    if (c->reading && c->stream != NULL && c->connected)
        uv_read_stop(c->stream);
    c->reading = 0;
    conn_release(c);
}

void sd2_conn_enter(sd2_conn *c)
{
    c->depth++;
}

static void run_drains(sd2_conn *c)
{
    while (c->want_drains && !c->dead) {
        sd2_stream *s;
        c->want_drains = 0;
        for (s = c->streams; s != NULL; s = s->next) {
            if (s->drain_pending) {
                s->drain_pending = 0;
                if (s->bound && !s->reset_local && s->cbs.on_drain) {
                    s->cbs.on_drain(s, s->ud);
                    /* The list may have changed under the callback: start over. */
                    c->want_drains = 1;
                    break;
                }
            }
        }
    }
}

void sd2_conn_leave(sd2_conn *c)
{
    if (--c->depth > 0)
        return;
    while (!c->dead && !c->failing && c->want_flush) {
        c->want_flush = 0;
        sd2_conn_flush(c);
    }
    if (c->failing && !c->dead) {
        c->failing = 0;
        sd2_conn_fail(c, c->fail_err);
    }
}

static void read_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    sd2_conn *c = h->data;
    (void)hint;
    buf->base = (char *)c->owner->rbuf;
    buf->len = SD2_RBUF;
}

static void read_done(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    sd2_conn *c = st->data;
    if (n > 0) {
        sd2_conn_feed(c, (const uint8_t *)buf->base, (size_t)n);
    } else if (n < 0) {
        sd2_conn_fail(c, SD2_ECLOSED);
    }
}

int sd2_conn_start_read(sd2_conn *c)
{
    int rv;
    if (c->reading || c->dead)
        return 0;
    c->stream->data = c;
    rv = uv_read_start(c->stream, read_alloc, read_done);
    if (rv == 0)
        c->reading = 1;
    return rv;
}

/* Closes when the session has nothing left to do (GOAWAY exchanged, streams done). */
static void maybe_done(sd2_conn *c)
{
    if (c->dead || c->depth > 0 || (c->owner->is_client && !c->connected))
        return;
    if (!nghttp2_session_want_read(c->ses) && !nghttp2_session_want_write(c->ses) &&
        c->writes_pending == 0)
        sd2_conn_fail(c, SD2_ECLOSED);
}

void sd2_conn_feed(sd2_conn *c, const uint8_t *data, size_t len)
{
    ssize_t rv;
    if (c->dead)
        return;
    sd2_conn_enter(c);
    rv = nghttp2_session_mem_recv(c->ses, data, len);
    if (rv < 0 || (size_t)rv != len) {
        sdd_log(SELDON_LOG_DEBUG, "h2: bad input from peer: %s",
                rv < 0 ? nghttp2_strerror((int)rv) : "short read");
        /* Say why before closing, when the session can: the GOAWAY goes out, then the
         * session wants nothing more and maybe_done() closes. */
        if (rv < 0 && rv != NGHTTP2_ERR_NOMEM &&
            nghttp2_session_terminate_session(c->ses, NGHTTP2_PROTOCOL_ERROR) == 0) {
            c->want_flush = 1;
        } else {
            c->failing = 1;
            c->fail_err = SD2_ECLOSED;
        }
        sd2_conn_leave(c);
        maybe_done(c);
        return;
    }
    c->want_flush = 1;
    sd2_conn_leave(c);
    maybe_done(c);
}

typedef struct sd2_wreq {
    uv_write_t req;
    sd2_conn *conn;
    size_t len;
    uint8_t data[];
} sd2_wreq;

static void write_done(uv_write_t *req, int status)
{
    sd2_wreq *w = (sd2_wreq *)req;
    sd2_conn *c = w->conn;
    c->out_pending -= w->len;
    c->writes_pending--;
    sdd_free(w);
    if (c->released || c->dead) {
        if (c->dead && !c->own_tcp && c->writes_pending == 0 && !c->released)
            conn_release(c);
        return;
    }
    if (status < 0) {
        sd2_conn_fail(c, SD2_ECLOSED);
        return;
    }
    if (!c->reading && c->out_pending < c->owner->opts.out_limit)
        sd2_conn_start_read(c);
    sd2_conn_flush(c);
    maybe_done(c);
}

/*
 * Writes len bytes of data: tried on the socket at once when nothing is ahead of them
 * (no poller change, no callback a loop iteration later, no copy); what it does not
 * take is copied into a write request for uv_write. 0, SD2_ENOMEM, or a libuv error.
 */
static int send_bytes(sd2_conn *c, const uint8_t *data, size_t len)
{
    sd2_wreq *w;
    int rv;
    if (c->writes_pending == 0) {
        uv_buf_t b = uv_buf_init((char *)(uintptr_t)data, (unsigned)len);
        rv = uv_try_write(c->stream, &b, 1);
        if (rv == (int)len)
            return 0;
        if (rv > 0) {
            data += rv;
            len -= (size_t)rv;
        } else if (rv != UV_EAGAIN && rv != UV_ENOSYS) {
            return rv;
        }
    }
    w = sdd_malloc(sizeof(*w) + len);
    if (w == NULL)
        return SD2_ENOMEM;
    memcpy(w->data, data, len);
    w->len = len;
    w->conn = c;
    {
        uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)w->len);
        rv = uv_write(&w->req, c->stream, &b, 1, write_done);
    }
    if (rv < 0) {
        sdd_free(w);
        return rv;
    }
    c->out_pending += w->len;
    c->writes_pending++;
    return 0;
}

static void send_failed(sd2_conn *c, int rv)
{
    c->failing = 1;
    c->fail_err = rv == SD2_ENOMEM ? SD2_ENOMEM : SD2_ECLOSED;
}

/* Whether a chunk nghttp2 gave (one frame, or the first of a header block) ends its
 * stream. In a write-now flush the connection's only stream is done with it: the bytes go
 * out before nghttp2 closes the stream in its next call. A wrong guess costs one write. */
static int ends_stream(const uint8_t *p, size_t n)
{
    return n >= 9 && (p[3] == NGHTTP2_DATA || p[3] == NGHTTP2_HEADERS) &&
           (p[4] & NGHTTP2_FLAG_END_STREAM) != 0;
}

void sd2_conn_flush(sd2_conn *c)
{
    sd2_owner *o = c->owner;
    uint8_t *buf = NULL; /* the owner's batch buffer, or (nested) one of our own */
    size_t len = 0, cap = 0;
    int own = 0, rv;
    if (c->dead || c->released)
        return;
    if (c->depth > 0) {
        c->want_flush = 1;
        return;
    }
    if (c->failing) {
        c->failing = 0;
        sd2_conn_fail(c, c->fail_err);
        return;
    }
    if (o->is_client && !c->connected)
        return;
    if (!o->wbusy) {
        /* The session's output is gathered here, then written in one call. A flush
           nested in a callback of this one (another connection) gathers in its own. */
        buf = o->wbuf;
        cap = SD2_WRITE_BATCH;
        own = 1;
        o->wbusy = 1;
    }
    sd2_conn_enter(c);
    c->sending = 1;
    while (c->out_pending + len < o->opts.out_limit) {
        const uint8_t *p;
        ssize_t n = nghttp2_session_mem_send(c->ses, &p);
        if (n < 0) {
            c->failing = 1;
            c->fail_err = SD2_ECLOSED;
            break;
        }
        if (n == 0)
            break;
        if (len + (size_t)n > cap) {
            if (own) {
                if (len > 0 && (rv = send_bytes(c, buf, len)) < 0) {
                    send_failed(c, rv);
                    len = 0;
                    break;
                }
                len = 0;
                if ((size_t)n > cap) { /* larger than the batch: straight from nghttp2 */
                    if ((rv = send_bytes(c, p, (size_t)n)) < 0) {
                        send_failed(c, rv);
                        break;
                    }
                    continue;
                }
            } else {
                size_t ncap = cap ? cap : 4096;
                uint8_t *nb;
                while (ncap < len + (size_t)n)
                    ncap *= 2;
                nb = sdd_realloc(buf, ncap);
                if (nb == NULL) {
                    c->failing = 1;
                    c->fail_err = SD2_ENOMEM;
                    break;
                }
                buf = nb;
                cap = ncap;
            }
        }
        memcpy(buf + len, p, (size_t)n);
        len += (size_t)n;
        if (len >= SD2_WRITE_BATCH || (c->hold && ends_stream(p, (size_t)n))) {
            rv = send_bytes(c, buf, len);
            len = 0;
            if (rv < 0) {
                send_failed(c, rv);
                break;
            }
        }
    }
    if (len > 0 && !c->failing && (rv = send_bytes(c, buf, len)) < 0)
        send_failed(c, rv);
    c->sending = 0;
    if (own)
        o->wbusy = 0;
    else
        sdd_free(buf);
    /* Unsent output above the limit: stop taking input until the socket drains. */
    if (c->reading && c->out_pending >= o->opts.out_limit) {
        uv_read_stop(c->stream);
        c->reading = 0;
    }
    if (c->hold) {
        /* The connection is marked: the deferred flush tells, drains and fails. */
        c->depth--;
        return;
    }
    tell_closed(c);
    if (c->want_drains) {
        /* on_drain may act on this connection: run it as a re-entrant caller would. */
        c->depth--;
        run_drains(c);
        c->depth++;
    }
    sd2_conn_leave(c);
    maybe_done(c);
}

/* Closes the owner's two work handles; cb runs for each, with handle->data = o. */
void sd2_owner_close_handles(sd2_owner *o, uv_close_cb cb)
{
    uv_close((uv_handle_t *)&o->idle, cb);
    uv_close((uv_handle_t *)&o->check, cb);
}
