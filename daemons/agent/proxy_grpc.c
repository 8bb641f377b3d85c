/*
 * The agent's gRPC proxy: calls of inference.GRPCInferenceService that name a model
 * (ModelInfer, ModelStreamInfer, ModelMetadata, ModelReady) have that name, field 1
 * of their request messages, replaced by the versioned name: the message's bytes are
 * spliced, the rest of it is never decoded. Other calls pass as they are. Responses
 * stream back untouched. A call for an evicted model waits (bounded by --load-wait)
 * until the model is loaded again.
 *
 * Flow control: bytes read from the client are returned to its window once the
 * server's send queue took them below its limit; a message being read whole is
 * bounded by --max-message.
 */
#include <stdio.h>
#include <string.h>

#include "agent.h"
#include "proxy.h"
#include "sdd.h"

typedef struct gp {
    agent *a;
    sd2_stream *down, *up;
    ag_waiter w;
    uv_timer_t *timer;
    char *mem;
    sd2_header *h;
    size_t nh;
    /* the message being read (rewrite mode) */
    uint8_t fh[5];
    size_t fh_got, need;
    seldon_buf msg;
    seldon_buf pend; /* rewritten bytes not sent yet (no upstream yet) */
    seldon_buf sent; /* rewritten bytes sent, while they fit AG_REPLAY: to send them again */
    size_t down_unconsumed, up_unconsumed;
    int64_t started;
    int32_t grpc_status;
    uint8_t rewrite, resolved, waiting, body_done, finished, up_full, headers_sent, is_infer;
    uint8_t counted; /* in its model's in-flight count */
    uint8_t replay_ok, retried;
    char model[256];
    char vname[300];
    char internal[300]; /* seldon-internal-model */
} gp;

static const sd2_stream_cbs up_cbs, quiet_cbs, down_cbs;

/* A call whose request is at most this is kept whole, to be sent again when the server
   answers NOT_FOUND for a model the agent holds (the server restarted). */
#define AG_REPLAY (64 * 1024)

static int retry_lost(gp *p);

/* Remembers bytes going to the server, while the call stays small enough. */
static void keep_sent(gp *p, const uint8_t *data, size_t len)
{
    if (!p->replay_ok)
        return;
    if (p->sent.len + len > AG_REPLAY || seldon_buf_reserve(&p->sent, len) != 0) {
        p->replay_ok = 0;
        seldon_buf_free(&p->sent);
        return;
    }
    memcpy(p->sent.data + p->sent.len, data, len);
    p->sent.len += len;
}

static void timer_closed(uv_handle_t *h)
{
    sdd_free(h);
}

static void stop_timer(gp *p)
{
    if (p->timer != NULL) {
        uv_timer_stop(p->timer);
        uv_close((uv_handle_t *)p->timer, timer_closed);
        p->timer = NULL;
    }
}

static void maybe_free(gp *p)
{
    if (p->down != NULL || p->up != NULL)
        return;
    stop_timer(p);
    ag_waiter_cancel(&p->w);
    if (p->counted)
        ag_models_end(p->a, p->vname);
    seldon_buf_free(&p->msg);
    seldon_buf_free(&p->pend);
    seldon_buf_free(&p->sent);
    sdd_free(p->mem);
    sdd_free(p);
}

static void done(gp *p, int32_t status)
{
    if (p->finished)
        return;
    p->finished = 1;
    if (p->resolved && p->is_infer)
        ag_metrics_infer(p->a, p->model, p->vname, "grpc", status, p->started);
    if (p->counted) {
        p->counted = 0;
        ag_models_end(p->a, p->vname);
    }
}

static void drop_up(gp *p)
{
    sd2_stream *up = p->up;
    if (up == NULL)
        return;
    p->up = NULL;
    p->up_unconsumed = 0;
    sd2_stream_bind(up, &quiet_cbs, NULL);
    sd2_reset(up, SD2_H2_CANCEL);
}

static void fail(gp *p, int32_t status, const char *message)
{
    drop_up(p);
    stop_timer(p);
    ag_waiter_cancel(&p->w);
    done(p, status);
    if (p->down != NULL) {
        if (p->down_unconsumed > 0)
            sd2_consume(p->down, p->down_unconsumed);
        p->down_unconsumed = 0;
        sd2_grpc_finish(p->down, status, message, NULL, 0);
    }
}

/* ------------------------------------------------------------ upstream */

static void up_headers(sd2_stream *s, void *ud, const sd2_header *h, size_t n, int end)
{
    gp *p = ud;
    if (s != p->up || p->down == NULL)
        return;
    if (end && sdx_grpc_status(h, n) == 5 && retry_lost(p))
        return;
    sd2_send_headers(p->down, h, n, end);
    p->headers_sent = 1;
    if (end) {
        int32_t st = sdx_grpc_status(h, n);
        done(p, st >= 0 ? st : 2);
    }
}

static void up_data(sd2_stream *s, void *ud, const uint8_t *data, size_t len)
{
    gp *p = ud;
    if (s != p->up)
        return;
    if (p->down == NULL) {
        sd2_consume(s, len);
        return;
    }
    if (sd2_write(p->down, data, len) == 1)
        p->up_unconsumed += len;
    else
        sd2_consume(s, len);
}

static void up_end(sd2_stream *s, void *ud, const sd2_header *t, size_t n)
{
    gp *p = ud;
    int32_t st;
    if (s != p->up || p->finished)
        return;
    st = sdx_grpc_status(t, n);
    if (p->down != NULL)
        sd2_end(p->down, t, n);
    done(p, st >= 0 ? st : 2);
}

static void up_drain(sd2_stream *s, void *ud)
{
    gp *p = ud;
    if (s != p->up || p->down == NULL)
        return;
    p->up_full = 0;
    if (p->down_unconsumed > 0) {
        sd2_consume(p->down, p->down_unconsumed);
        p->down_unconsumed = 0;
    }
}

static void up_close(sd2_stream *s, void *ud, int err, uint32_t code)
{
    gp *p = ud;
    (void)code;
    if (s != p->up)
        return;
    p->up = NULL;
    p->up_unconsumed = 0;
    if (!p->finished && p->down != NULL) {
        char msg[200];
        snprintf(msg, sizeof(msg), "the inference server: %s", sd2_strerror(err));
        if (p->headers_sent) {
            done(p, 14);
            sd2_reset(p->down, SD2_H2_INTERNAL_ERROR);
        } else {
            fail(p, 14, msg);
        }
    }
    maybe_free(p);
}

static const sd2_stream_cbs up_cbs = {up_headers, up_data, up_end, up_drain, up_close};

static void q_headers(sd2_stream *s, void *ud, const sd2_header *h, size_t n, int end)
{
    (void)s, (void)ud, (void)h, (void)n, (void)end;
}
static void q_data(sd2_stream *s, void *ud, const uint8_t *d, size_t len)
{
    (void)ud, (void)d;
    sd2_consume(s, len);
}
static void q_end(sd2_stream *s, void *ud, const sd2_header *h, size_t n)
{
    (void)s, (void)ud, (void)h, (void)n;
}
static void q_drain(sd2_stream *s, void *ud)
{
    (void)s, (void)ud;
}
static void q_close(sd2_stream *s, void *ud, int err, uint32_t code)
{
    (void)s, (void)ud, (void)err, (void)code;
}
static const sd2_stream_cbs quiet_cbs = {q_headers, q_data, q_end, q_drain, q_close};

/* Opens the call to the server and sends what was held. */
static void open_up(gp *p)
{
    sd2_upstream *pool = NULL;
    int rc = sd2_upstream_get(&pool, p->a->h2c, p->a->srv_host, p->a->srv_grpc_port);
    int end_now = p->body_done && p->pend.len == 0;
    if (rc == 0)
        rc = sd2_request(&p->up, pool, p->h, p->nh, end_now, &up_cbs, p, 0);
    if (rc != 0) {
        p->up = NULL;
        fail(p, 14, "the inference server cannot take the call");
        return;
    }
    if (p->pend.len > 0) {
        keep_sent(p, p->pend.data, p->pend.len);
        if (sd2_write(p->up, p->pend.data, p->pend.len) == 1)
            p->up_full = 1;
        seldon_buf_free(&p->pend);
        if (p->body_done)
            sd2_end(p->up, NULL, 0);
    }
}

/* ------------------------------------------------------------ waiting for a reload */

static void loaded_again(void *arg, int ok, const char *reason)
{
    gp *p = arg;
    char msg[600];
    p->waiting = 0;
    stop_timer(p);
    if (!ok) {
        snprintf(msg, sizeof(msg), "model %s is not available: %s", p->vname, reason);
        fail(p, 14, msg);
        return;
    }
    if (p->down != NULL)
        open_up(p);
}

static void wait_expired(uv_timer_t *t)
{
    gp *p = t->data;
    char msg[400];
    snprintf(msg, sizeof(msg), "model %s was not loaded again within %llu ms (--load-wait)",
             p->vname, (unsigned long long)p->a->cfg.load_wait_ms);
    fail(p, 14, msg);
}

/*
 * NOT_FOUND from the server for a model the agent holds as loaded: the server lost it (it
 * restarted). Loads it again and sends the whole call once more. 1 when the call now
 * waits for that.
 */
static int retry_lost(gp *p)
{
    ag_entry *e;
    int rc;
    if (!p->rewrite || !p->resolved || !p->replay_ok || !p->body_done || p->retried)
        return 0;
    e = ag_cache_find(p->a->cache, p->vname, strlen(p->vname));
    if (e == NULL || e->state != AG_LOADED)
        return 0;
    p->retried = 1;
    drop_up(p);
    seldon_buf_free(&p->pend);
    p->pend = p->sent; /* sent again by open_up */
    p->sent = (seldon_buf)SELDON_BUF_INIT;
    ag_models_lost(p->a, e);
    rc = ag_models_acquire(p->a, e, &p->w);
    if (rc < 0) {
        fail(p, 14, seldon_last_error());
        return 1;
    }
    if (rc == 1) {
        open_up(p);
        return 1;
    }
    p->waiting = 1;
    p->timer = sdd_malloc(sizeof(*p->timer));
    if (p->timer != NULL) {
        uv_timer_init(p->a->loop, p->timer);
        p->timer->data = p;
        uv_timer_start(p->timer, wait_expired, p->a->cfg.load_wait_ms, 0);
    }
    return 1;
}

/* ------------------------------------------------------------ messages */

/* Finds the model of the call (the header's, else the message's name) and takes it,
 * waiting for a reload when it is evicted. 0, or -1 when the call failed. */
static int resolve(gp *p, const char *given, size_t flen)
{
    agent *a = p->a;
    ag_entry *e;
    int acq;
    char why[400];
    if (p->internal[0] != '\0')
        e = ag_cache_find(a->cache, p->internal, strlen(p->internal));
    else
        e = flen > 0 ? ag_cache_resolve(a->cache, given, flen) : NULL;
    if (e == NULL) {
        if (p->internal[0] != '\0')
            snprintf(why, sizeof(why), "model %s is not held by this replica", p->internal);
        else if (flen == 0)
            snprintf(why, sizeof(why), "the request names no model");
        else
            snprintf(why, sizeof(why), "model %.*s is not loaded on this replica",
                     (int)(flen > 200 ? 200 : flen), given);
        fail(p, 5, why);
        return -1;
    }
    snprintf(p->model, sizeof(p->model), "%s", e->model);
    snprintf(p->vname, sizeof(p->vname), "%s", e->vname);
    p->resolved = 1;
    if (!p->counted) {
        ag_models_begin(a, p->vname);
        p->counted = 1;
    }
    acq = ag_models_acquire(a, e, &p->w);
    if (acq < 0) {
        fail(p, 14, seldon_last_error());
        return -1;
    }
    if (acq == 0) {
        p->waiting = 1;
        p->timer = sdd_malloc(sizeof(*p->timer));
        if (p->timer != NULL) {
            uv_timer_init(a->loop, p->timer);
            p->timer->data = p;
            uv_timer_start(p->timer, wait_expired, a->cfg.load_wait_ms, 0);
        }
    }
    return 0;
}

/* Appends one whole rewritten message to where it goes next. 0, or -1 (failed). */
static int emit(gp *p, const uint8_t *msg, size_t len)
{
    seldon_buf out = SELDON_BUF_INIT;
    size_t off = 0, flen = 0, mlen;
    const char *name = NULL;
    size_t name_len = 0;
    int rc;

    if (seldon_buf_reserve(&out, 5) != 0) {
        fail(p, 8, "agent out of memory");
        return -1;
    }
    out.len = 5;
    rc = ag_pb_field1(msg, len, &off, &flen);
    if (rc == SELDON_EPARSE) {
        seldon_buf_free(&out);
        fail(p, 3, "the request message does not decode as protobuf");
        return -1;
    }
    if (!p->resolved && resolve(p, rc == 0 ? (const char *)msg + off : "", flen) != 0) {
        seldon_buf_free(&out);
        return -1;
    }
    if (rc == 0) {
        const char *given = (const char *)msg + off;
        /* A seldon-internal-model header (a router's experiment split) decides the model. */
        if (p->internal[0] != '\0' || flen == 0 ||
            (flen == strlen(p->model) && memcmp(given, p->model, flen) == 0) ||
            (flen == strlen(p->vname) && memcmp(given, p->vname, flen) == 0)) {
            name = p->vname;
            name_len = strlen(p->vname);
        } else {
            ag_entry *o = ag_cache_resolve(p->a->cache, given, flen);
            if (o != NULL) {
                name = o->vname;
                name_len = strlen(o->vname);
            }
        }
    } else if (p->internal[0] != '\0') {
        /* No name in the message (proto3 leaves an empty one out): the header's goes in. */
        uint8_t tag[11];
        size_t n = 0, vl = strlen(p->vname), v = vl;
        tag[n++] = 0x0a;
        do {
            tag[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
            v >>= 7;
        } while (v != 0);
        if (seldon_buf_reserve(&out, n + vl) != 0) {
            seldon_buf_free(&out);
            fail(p, 8, "agent out of memory");
            return -1;
        }
        memcpy(out.data + out.len, tag, n);
        memcpy(out.data + out.len + n, p->vname, vl);
        out.len += n + vl;
    }
    if (name != NULL)
        rc = ag_pb_rewrite_field1(&out, msg, len, name, name_len);
    else if (seldon_buf_reserve(&out, len) == 0) {
        if (len > 0)
            memcpy(out.data + out.len, msg, len);
        out.len += len;
        rc = 0;
    } else {
        rc = SELDON_ENOMEM;
    }
    if (rc != 0) {
        seldon_buf_free(&out);
        fail(p, 8, "agent out of memory");
        return -1;
    }
    mlen = out.len - 5;
    out.data[0] = 0;
    out.data[1] = (uint8_t)(mlen >> 24);
    out.data[2] = (uint8_t)(mlen >> 16);
    out.data[3] = (uint8_t)(mlen >> 8);
    out.data[4] = (uint8_t)mlen;
    if (p->up != NULL) {
        keep_sent(p, out.data, out.len);
        if (sd2_write(p->up, out.data, out.len) == 1)
            p->up_full = 1;
        seldon_buf_free(&out);
        return 0;
    }
    if (p->pend.len == 0) {
        p->pend = out;
        out = (seldon_buf)SELDON_BUF_INIT;
    } else {
        if (seldon_buf_reserve(&p->pend, out.len) != 0) {
            seldon_buf_free(&out);
            fail(p, 8, "agent out of memory");
            return -1;
        }
        memcpy(p->pend.data + p->pend.len, out.data, out.len);
        p->pend.len += out.len;
        seldon_buf_free(&out);
    }
    if (!p->waiting && p->resolved)
        open_up(p);
    return 0;
}

/* Feeds request bytes through the message reader. 0, or -1 when the call failed. */
static int feed(gp *p, const uint8_t *data, size_t len)
{
    while (len > 0) {
        if (p->fh_got < 5) {
            size_t k = 5 - p->fh_got < len ? 5 - p->fh_got : len;
            memcpy(p->fh + p->fh_got, data, k);
            p->fh_got += k;
            data += k;
            len -= k;
            if (p->fh_got < 5)
                return 0;
            if (p->fh[0] != 0) {
                fail(p, 12, "compressed request messages are not supported by the agent");
                return -1;
            }
            p->need = ((size_t)p->fh[1] << 24) | ((size_t)p->fh[2] << 16) |
                      ((size_t)p->fh[3] << 8) | p->fh[4];
            if (p->need > p->a->cfg.max_message) {
                fail(p, 8, "the request message is larger than the agent's --max-message");
                return -1;
            }
            p->msg.len = 0;
            if (seldon_buf_reserve(&p->msg, p->need ? p->need : 1) != 0) {
                fail(p, 8, "agent out of memory");
                return -1;
            }
        }
        {
            size_t k = p->need - p->msg.len < len ? p->need - p->msg.len : len;
            if (k > 0)
                memcpy(p->msg.data + p->msg.len, data, k);
            p->msg.len += k;
            data += k;
            len -= k;
        }
        if (p->msg.len == p->need) {
            p->fh_got = 0;
            if (emit(p, p->msg.data, p->msg.len) != 0)
                return -1;
            if (p->msg.cap > (1u << 20))
                seldon_buf_free(&p->msg);
        }
    }
    return 0;
}

/* ------------------------------------------------------------ downstream */

static void down_data(sd2_stream *s, void *ud, const uint8_t *data, size_t len)
{
    gp *p = ud;
    if (p->finished) {
        sd2_consume(s, len);
        return;
    }
    if (!p->rewrite) {
        if (p->up != NULL && sd2_write(p->up, data, len) == 1)
            p->down_unconsumed += len;
        else
            sd2_consume(s, len);
        return;
    }
    if (feed(p, data, len) != 0) {
        sd2_consume(s, len); /* the call failed: its bytes still count in the windows */
        return;
    }
    if (p->up_full)
        p->down_unconsumed += len;
    else
        sd2_consume(s, len);
}

static void down_end(sd2_stream *s, void *ud, const sd2_header *t, size_t n)
{
    gp *p = ud;
    (void)s, (void)t, (void)n;
    p->body_done = 1;
    if (p->finished)
        return;
    if (p->up != NULL) {
        sd2_end(p->up, NULL, 0);
    } else if (p->rewrite && !p->resolved) {
        fail(p, 3, "the call carried no request message");
    }
}

static void down_drain(sd2_stream *s, void *ud)
{
    gp *p = ud;
    (void)s;
    if (p->up != NULL && p->up_unconsumed > 0) {
        sd2_consume(p->up, p->up_unconsumed);
        p->up_unconsumed = 0;
    }
}

static void down_close(sd2_stream *s, void *ud, int err, uint32_t code)
{
    gp *p = ud;
    (void)s, (void)code;
    p->down = NULL;
    if (err != SD2_OK || !p->finished)
        done(p, 1);
    drop_up(p);
    maybe_free(p);
}

static const sd2_stream_cbs down_cbs = {NULL, down_data, down_end, down_drain, down_close};

/* ------------------------------------------------------------ a new call */

static int keep_headers(gp *p, const sd2_header *h, size_t n)
{
    size_t need = 0, i;
    char *m;
    for (i = 0; i < n; i++)
        need += h[i].name_len + h[i].value_len;
    p->mem = sdd_malloc((n ? n : 1) * sizeof(sd2_header) + need);
    if (p->mem == NULL)
        return -1;
    p->h = (sd2_header *)p->mem;
    m = p->mem + (n ? n : 1) * sizeof(sd2_header);
    for (i = 0; i < n; i++) {
        p->h[i].name = m;
        p->h[i].name_len = h[i].name_len;
        memcpy(m, h[i].name, h[i].name_len);
        m += h[i].name_len;
        p->h[i].value = m;
        p->h[i].value_len = h[i].value_len;
        memcpy(m, h[i].value, h[i].value_len);
        m += h[i].value_len;
    }
    p->nh = n;
    return 0;
}

static int ends_with(const sd2_header *path, const char *suffix)
{
    size_t n = strlen(suffix);
    return path->value_len >= n && memcmp(path->value + path->value_len - n, suffix, n) == 0;
}

void ag_grpc_request(void *user_data, sd2_stream *s, const sd2_header *h, size_t n, int end)
{
    agent *a = user_data;
    const sd2_header *path = sd2_header_find(h, n, ":path");
    const sd2_header *internal = sd2_header_find(h, n, "seldon-internal-model");
    gp *p;

    if (a->stopping) {
        sd2_grpc_finish(s, 14, "the agent is stopping", NULL, 0);
        return;
    }
    p = sdd_calloc(1, sizeof(*p));
    if (p == NULL || keep_headers(p, h, n) != 0) {
        sdd_free(p);
        sd2_grpc_finish(s, 8, "agent out of memory", NULL, 0);
        return;
    }
    p->a = a;
    p->started = ag_now_ns();
    p->grpc_status = -1;
    p->w.fn = loaded_again;
    p->w.arg = p;
    p->body_done = end != 0;
    p->replay_ok = 1;
    if (internal != NULL && internal->value_len > 0 && internal->value_len < sizeof(p->internal))
        snprintf(p->internal, sizeof(p->internal), "%.*s", (int)internal->value_len,
                 internal->value);
    if (path != NULL && path->value_len > 31 &&
        memcmp(path->value, "/inference.GRPCInferenceService/", 32) == 0 &&
        (ends_with(path, "/ModelInfer") || ends_with(path, "/ModelStreamInfer") ||
         ends_with(path, "/ModelMetadata") || ends_with(path, "/ModelReady"))) {
        p->rewrite = 1;
        p->is_infer = ends_with(path, "Infer");
    }
    p->down = s;
    sd2_stream_bind(s, &down_cbs, p);
    if (!p->rewrite || end)
        open_up(p);
}
