/*
 * gRPC server transport on gRPC core's completion-queue API.
 *
 * Shape: one completion queue per thread, each registered with the server.
 * Every queue keeps a pool of calls requested ahead for every registered
 * method, plus a few generic requests that catch unknown methods. A call is
 * bound to the queue that accepted it, so all of its events come back to the
 * same thread. When a request is matched, its thread first requests a
 * replacement (keeping the pool full) and then runs the handler inline.
 *
 * Unary methods are registered with GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER,
 * so the request message arrives together with the call, and the whole reply
 * (initial metadata, message, status, close) goes out as one batch: one
 * completion per call after the match.
 *
 * Backpressure on streams: a stream does not read its next message while
 * more than max_pending replies are owed to its client (queued, being sent,
 * or still being computed under a hold) or more than max_pending_bytes are
 * queued. A client that sends and never reads then stalls on HTTP/2 flow
 * control, and the server's memory stays bounded. Reading resumes when the
 * backlog falls to half the limit.
 *
 * Metadata: request metadata can be read as a list; each call can carry
 * response initial metadata (sent with the first message or the status) and
 * trailing metadata (sent with the status), e.g. x-seldon-route.
 *
 * An sdg_call is reference counted. The references are the operations gRPC
 * has in flight for it, the handler's duty to answer (unary) or the read loop
 * (streaming), and the caller's holds. The last reference frees it, on
 * whichever thread drops it.
 */
#include "grpc_server.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "sdd.h"

/*
 * Calls requested ahead per method and per queue. Unary methods carry the
 * load; a matched request is replaced at once, so the pool only has to cover
 * the calls that arrive between two passes of one thread over its queue. When
 * it runs dry, gRPC parks new calls in its own pending list, which is correct
 * but slower.
 */
#define AHEAD_UNARY 32
#define AHEAD_STREAM 4
#define AHEAD_GENERIC 4

/* Stream backpressure defaults (sdg_config.stream_max_pending, ..._bytes). */
#define STREAM_MAX_PENDING 16
#define STREAM_MAX_PENDING_BYTES (8u << 20)

/* Response metadata entries per call, initial and trailing each. */
#define MD_MAX 16

/*
 * Completion tags. Each call carries a small array whose element k holds k,
 * and an element's address is the tag, so one byte gives both the kind of
 * event and (by stepping back k bytes) the call.
 */
enum {
    TAG_NEW,   /* a requested call was matched (or failed at shutdown) */
    TAG_DONE,  /* the final batch: unary reply/failure, stream status */
    TAG_RECV,  /* streaming: one incoming message or the end of them */
    TAG_SEND,  /* streaming: one outgoing message left */
    TAG_CLOSE, /* streaming: RECV_CLOSE_ON_SERVER, the call is over */
    TAG_COUNT,
    TAG_SHUTDOWN = TAG_COUNT /* the server's shutdown notification */
};

struct method_entry {
    void *handle; /* from grpc_server_register_method */
    int streaming;
    sdg_unary_fn handler;
    sdg_end_fn on_end;
    void *user_data;
};

struct queue {
    sdg_server *server;
    grpc_completion_queue *cq;
    pthread_t thread;
    int running; /* thread created, to be joined */
};

struct sdg_server {
    grpc_server *server;
    struct queue *queues;
    int nqueues;
    struct method_entry *methods;
    size_t nmethods;
    int port;
    int max_pending;          /* stream backpressure: replies owed */
    size_t max_pending_bytes; /* stream backpressure: bytes queued */
    int grpc_inited;
    int started; /* grpc_server_start() was called */
    int stopped; /* sdg_server_stop() ran */
    /*
     * sdg_call objects alive, requests included. Decremented without a lock
     * so that the hot path stays lock-free; stop() polls it instead.
     */
    atomic_long live;
    atomic_int stopping;
    pthread_mutex_t mu; /* guards shutdown_seen and the stream list */
    pthread_cond_t cv;
    int shutdown_seen;
    struct sdg_call *streams; /* open streaming calls, so stop() can end the idle ones */
    uint8_t shutdown_tag;
};

/* One message waiting for its turn on a stream. */
struct wmsg {
    struct wmsg *next;
    grpc_byte_buffer *bb;
    size_t len;
};

/* Response metadata the caller set: keys and values owned as slices. */
struct mdlist {
    grpc_metadata items[MD_MAX];
    size_t n;
};

/* Streaming state; mu serializes the send-side batches, as gRPC requires. */
struct stream {
    pthread_mutex_t mu;
    struct wmsg *head, *tail;   /* queued writes */
    grpc_byte_buffer *inflight; /* the write gRPC is sending */
    grpc_byte_buffer *recv;     /* RECV_MESSAGE target; read loop only */
    grpc_slice flat;            /* recv as one slice when it came in pieces */
    int has_flat;
    int holds;         /* sdg_call_hold() count */
    int md_sent;       /* initial metadata went with a batch */
    int sending;       /* inflight is set */
    int read_done;     /* on_end has returned */
    int status_queued; /* sdg_fail() chose the status */
    int status_sent;   /* the final batch was started */
    int dead;          /* cancelled or broken: no more sends */
    int nqueued;       /* messages in head..tail */
    size_t qbytes;     /* their bytes */
    int read_paused;   /* backpressure: the read loop waits for the backlog to fall */
    int paused_logged; /* the first pause was logged */
    int code;
    grpc_slice details;
    int has_details;
};

struct sdg_call {
    sdg_server *server;
    const struct method_entry *method; /* NULL: a method nobody registered */
    struct queue *q;
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array md;
    grpc_call_details details; /* unregistered calls only */
    grpc_byte_buffer *payload; /* unary request */
    grpc_slice flat;           /* unary request as one slice when in pieces */
    int has_flat;
    grpc_byte_buffer *reply; /* unary response being sent */
    int cancelled;           /* RECV_CLOSE_ON_SERVER's out parameter */
    atomic_int refs;
    atomic_int answered; /* unary: sdg_reply()/sdg_fail() happened */
    void *user;
    struct mdlist initial_md;  /* response initial metadata */
    struct mdlist trailing_md; /* response trailing metadata */
    struct stream st; /* streaming calls only */
    struct sdg_call *snext, *sprev; /* the server's stream list; streaming calls only */
    int listed;
    uint8_t tags[TAG_COUNT];
};

static int is_stream(const sdg_call *c)
{
    return c->method != NULL && c->method->streaming;
}

/* ---- call lifetime ------------------------------------------------------ */

static void drop_queue_locked(struct stream *st)
{
    struct wmsg *w = st->head;
    while (w != NULL) {
        struct wmsg *next = w->next;
        grpc_byte_buffer_destroy(w->bb);
        sdd_free(w);
        w = next;
    }
    st->head = st->tail = NULL;
    st->nqueued = 0;
    st->qbytes = 0;
}

static void md_clear(struct mdlist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        grpc_slice_unref(l->items[i].key);
        grpc_slice_unref(l->items[i].value);
    }
    l->n = 0;
}

/* Runs on whichever thread dropped the last reference. */
static void call_destroy(sdg_call *c)
{
    sdg_server *s = c->server;

    if (c->call != NULL)
        grpc_call_unref(c->call);
    grpc_metadata_array_destroy(&c->md);
    if (c->method == NULL)
        grpc_call_details_destroy(&c->details);
    if (c->payload != NULL)
        grpc_byte_buffer_destroy(c->payload);
    if (c->has_flat)
        grpc_slice_unref(c->flat);
    if (c->reply != NULL)
        grpc_byte_buffer_destroy(c->reply);
    md_clear(&c->initial_md);
    md_clear(&c->trailing_md);
    if (is_stream(c)) {
        struct stream *st = &c->st;
        if (c->listed) {
            pthread_mutex_lock(&s->mu);
            if (c->sprev != NULL)
                c->sprev->snext = c->snext;
            else
                s->streams = c->snext;
            if (c->snext != NULL)
                c->snext->sprev = c->sprev;
            pthread_mutex_unlock(&s->mu);
        }
        drop_queue_locked(st);
        if (st->inflight != NULL)
            grpc_byte_buffer_destroy(st->inflight);
        if (st->recv != NULL)
            grpc_byte_buffer_destroy(st->recv);
        if (st->has_details)
            grpc_slice_unref(st->details);
        pthread_mutex_destroy(&st->mu);
    }
    sdd_free(c);
    /* The last touch of the server: stop() may free it right after. */
    atomic_fetch_sub_explicit(&s->live, 1, memory_order_release);
}

static void call_unref(sdg_call *c)
{
    if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
        call_destroy(c);
}

/* Asks gRPC for the next call of method m (NULL: any unregistered method) on q. */
static int request_call(struct queue *q, const struct method_entry *m)
{
    sdg_server *s = q->server;
    sdg_call *c = sdd_calloc(1, sizeof(*c));
    grpc_call_error err;

    if (c == NULL)
        return sdd_error(SELDON_ENOMEM, "grpc: cannot allocate a call");
    c->server = s;
    c->method = m;
    c->q = q;
    atomic_init(&c->refs, 1);
    atomic_init(&c->answered, 0);
    for (int k = 0; k < TAG_COUNT; k++)
        c->tags[k] = (uint8_t)k;
    grpc_metadata_array_init(&c->md);
    if (m != NULL && m->streaming)
        pthread_mutex_init(&c->st.mu, NULL);
    atomic_fetch_add_explicit(&s->live, 1, memory_order_relaxed);

    if (m != NULL) {
        err = grpc_server_request_registered_call(s->server, m->handle, &c->call, &c->deadline,
                                                  &c->md, m->streaming ? NULL : &c->payload, q->cq,
                                                  q->cq, &c->tags[TAG_NEW]);
    } else {
        grpc_call_details_init(&c->details);
        err = grpc_server_request_call(s->server, &c->call, &c->details, &c->md, q->cq, q->cq,
                                       &c->tags[TAG_NEW]);
    }
    if (err != GRPC_CALL_OK) {
        call_destroy(c);
        return sdd_error(SELDON_EINTERNAL, "grpc: requesting a call failed: %s",
                         grpc_call_error_to_string(err));
    }
    return 0;
}

/*
 * The request bytes of a received message, without a copy when gRPC holds
 * them in one slice (the common case for small messages); otherwise joined
 * into *flat, which the caller releases.
 */
static int message_bytes(grpc_byte_buffer *bb, grpc_slice *flat, int *has_flat, const uint8_t **p,
                         size_t *n)
{
    grpc_byte_buffer_reader reader;

    if (bb->type == GRPC_BB_RAW && bb->data.raw.compression == GRPC_COMPRESS_NONE) {
        grpc_slice_buffer *sb = &bb->data.raw.slice_buffer;
        if (sb->count == 0) {
            *p = (const uint8_t *)"";
            *n = 0;
            return 0;
        }
        if (sb->count == 1) {
            /* Taken from the slice in place: an inlined slice keeps its bytes inside. */
            *p = GRPC_SLICE_START_PTR(sb->slices[0]);
            *n = GRPC_SLICE_LENGTH(sb->slices[0]);
            return 0;
        }
    }
    if (!grpc_byte_buffer_reader_init(&reader, bb))
        return -1;
    *flat = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    *has_flat = 1;
    *p = GRPC_SLICE_START_PTR(*flat);
    *n = GRPC_SLICE_LENGTH(*flat);
    return 0;
}

static void free_slice_data(void *p, size_t len)
{
    (void)len;
    seldon_free(p);
}

/*
 * Wraps a seldon_buf as a byte buffer and empties the seldon_buf. Large
 * payloads are lent to gRPC as they are; tiny ones are copied into an inlined
 * slice, which is cheaper than the refcount object a borrowed slice needs.
 */
static grpc_byte_buffer *buf_to_bb(seldon_buf *b)
{
    grpc_byte_buffer *bb;
    grpc_slice s;

    if (b->len == 0) {
        s = grpc_empty_slice();
    } else if (b->len <= GRPC_SLICE_INLINED_SIZE) {
        s = grpc_slice_from_copied_buffer((const char *)b->data, b->len);
    } else {
        s = grpc_slice_new_with_len(b->data, b->len, free_slice_data);
        b->data = NULL;
    }
    seldon_buf_free(b);
    bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

static int clamp_status(int code)
{
    return code >= GRPC_STATUS_OK && code <= GRPC_STATUS_UNAUTHENTICATED ? code
                                                                         : GRPC_STATUS_UNKNOWN;
}

/* Starts a unary call's last batch; takes over the handler's reference. */
static int finish_batch(sdg_call *c, grpc_op *ops, size_t n)
{
    grpc_call_error err = grpc_call_start_batch(c->call, ops, n, &c->tags[TAG_DONE], NULL);
    if (err != GRPC_CALL_OK) {
        grpc_call_cancel_with_status(c->call, GRPC_STATUS_INTERNAL, "reply refused", NULL);
        call_unref(c);
        return sdd_error(SELDON_EINTERNAL, "grpc: reply refused: %s",
                         grpc_call_error_to_string(err));
    }
    return 0;
}

/* Status-only answer for unary and unregistered calls. */
static int send_status(sdg_call *c, int code, const char *message)
{
    grpc_op ops[3];
    grpc_slice details;
    int rc;

    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = c->initial_md.n;
    ops[0].data.send_initial_metadata.metadata = c->initial_md.items;
    ops[1].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[1].data.send_status_from_server.status = (grpc_status_code)clamp_status(code);
    ops[1].data.send_status_from_server.trailing_metadata_count = c->trailing_md.n;
    ops[1].data.send_status_from_server.trailing_metadata = c->trailing_md.items;
    if (message != NULL) {
        details = grpc_slice_from_copied_string(message);
        ops[1].data.send_status_from_server.status_details = &details;
    }
    ops[2].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[2].data.recv_close_on_server.cancelled = &c->cancelled;
    rc = finish_batch(c, ops, 3);
    /* gRPC keeps no pointer to the details past start_batch. */
    if (message != NULL)
        grpc_slice_unref(details);
    return rc;
}

/* ---- unary and unknown calls -------------------------------------------- */

static void unary_begin(sdg_call *c)
{
    const uint8_t *p = NULL;
    size_t n = 0;

    if (c->payload == NULL) {
        /* The client half-closed without sending the one message a unary call has. */
        atomic_store(&c->answered, 1);
        send_status(c, GRPC_STATUS_INTERNAL, "request message missing");
        return;
    }
    if (message_bytes(c->payload, &c->flat, &c->has_flat, &p, &n) < 0) {
        atomic_store(&c->answered, 1);
        send_status(c, GRPC_STATUS_INTERNAL, "cannot read the request message");
        return;
    }
    c->method->handler(c->method->user_data, c, p, n);
}

static void unknown_begin(sdg_call *c)
{
    char msg[256];
    int len = (int)GRPC_SLICE_LENGTH(c->details.method);
    snprintf(msg, sizeof(msg), "unknown method %.*s", len,
             (const char *)GRPC_SLICE_START_PTR(c->details.method));
    send_status(c, GRPC_STATUS_UNIMPLEMENTED, msg);
}

int sdg_reply(sdg_call *call, seldon_buf *response)
{
    grpc_byte_buffer *bb;
    grpc_op ops[4];

    if (call == NULL || response == NULL)
        return sdd_error(SELDON_EINVAL, "sdg_reply: %s is NULL", call ? "response" : "call");
    if (call->method == NULL || call->method->streaming)
        return sdd_error(SELDON_EINVAL, "sdg_reply: not a unary call");
    bb = buf_to_bb(response);
    if (atomic_exchange(&call->answered, 1)) {
        grpc_byte_buffer_destroy(bb);
        return sdd_error(SELDON_ESTATE, "sdg_reply: call already answered");
    }
    call->reply = bb;

    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[0].data.send_initial_metadata.count = call->initial_md.n;
    ops[0].data.send_initial_metadata.metadata = call->initial_md.items;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = call->reply;
    ops[2].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[2].data.send_status_from_server.status = GRPC_STATUS_OK;
    ops[2].data.send_status_from_server.trailing_metadata_count = call->trailing_md.n;
    ops[2].data.send_status_from_server.trailing_metadata = call->trailing_md.items;
    ops[3].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[3].data.recv_close_on_server.cancelled = &call->cancelled;
    return finish_batch(call, ops, 4);
}

/* ---- streaming calls ----------------------------------------------------- */

/* Called with st->mu held; the caller holds a reference, so refs stays > 0. */
static void stream_send_next_locked(sdg_call *c)
{
    struct stream *st = &c->st;
    struct wmsg *w = st->head;
    grpc_op ops[2];
    size_t n = 0;
    grpc_call_error err;

    st->head = w->next;
    if (st->head == NULL)
        st->tail = NULL;
    st->nqueued--;
    st->qbytes -= w->len;
    st->inflight = w->bb;
    sdd_free(w);

    memset(ops, 0, sizeof(ops));
    if (!st->md_sent) {
        ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[n].data.send_initial_metadata.count = c->initial_md.n;
        ops[n++].data.send_initial_metadata.metadata = c->initial_md.items;
        st->md_sent = 1;
    }
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = st->inflight;
    st->sending = 1;
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    err = grpc_call_start_batch(c->call, ops, n, &c->tags[TAG_SEND], NULL);
    if (err != GRPC_CALL_OK) {
        sdd_log(SELDON_LOG_ERROR, "grpc: stream write refused: %s", grpc_call_error_to_string(err));
        st->sending = 0;
        grpc_byte_buffer_destroy(st->inflight);
        st->inflight = NULL;
        st->dead = 1;
        drop_queue_locked(st);
        atomic_fetch_sub_explicit(&c->refs, 1, memory_order_relaxed);
        grpc_call_cancel_with_status(c->call, GRPC_STATUS_INTERNAL, "write refused", NULL);
    }
}

/*
 * Sends the final status once it is decided and every queued write is out.
 * Called with st->mu held by a thread that holds a reference.
 */
static void stream_maybe_finish_locked(sdg_call *c)
{
    struct stream *st = &c->st;
    grpc_op ops[2];
    size_t n = 0;
    grpc_call_error err;

    if (st->status_sent || st->dead || st->sending || st->head != NULL)
        return;
    if (!st->status_queued && !(st->read_done && st->holds == 0))
        return;

    memset(ops, 0, sizeof(ops));
    if (!st->md_sent) {
        ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
        ops[n].data.send_initial_metadata.count = c->initial_md.n;
        ops[n++].data.send_initial_metadata.metadata = c->initial_md.items;
        st->md_sent = 1;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status =
        st->status_queued ? (grpc_status_code)st->code : GRPC_STATUS_OK;
    ops[n].data.send_status_from_server.trailing_metadata_count = c->trailing_md.n;
    ops[n].data.send_status_from_server.trailing_metadata = c->trailing_md.items;
    if (st->status_queued && st->has_details)
        ops[n].data.send_status_from_server.status_details = &st->details;
    n++;
    st->status_sent = 1;
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    err = grpc_call_start_batch(c->call, ops, n, &c->tags[TAG_DONE], NULL);
    if (err != GRPC_CALL_OK) {
        sdd_log(SELDON_LOG_ERROR, "grpc: stream status refused: %s",
                grpc_call_error_to_string(err));
        st->dead = 1;
        atomic_fetch_sub_explicit(&c->refs, 1, memory_order_relaxed);
        grpc_call_cancel_with_status(c->call, GRPC_STATUS_INTERNAL, "status refused", NULL);
    }
}

/* Replies owed to the client: queued, being sent, or being computed under a hold. */
static int stream_backlog_locked(const struct stream *st)
{
    return st->nqueued + st->sending + st->holds;
}

static int stream_over_limit_locked(const sdg_call *c, int low_water)
{
    const struct stream *st = &c->st;
    int max = c->server->max_pending;
    size_t bytes = c->server->max_pending_bytes;
    if (low_water) {
        max = max / 2;
        bytes = bytes / 2;
    }
    return stream_backlog_locked(st) > max || st->qbytes > bytes;
}

/*
 * Called with st->mu held whenever the backlog falls or the stream dies:
 * 1 when a paused read loop must start again (the caller then calls
 * stream_read() without the lock). A dead or finished stream is resumed too,
 * so that its read completes at once and the read loop ends.
 */
static int stream_resume_locked(sdg_call *c)
{
    struct stream *st = &c->st;
    if (!st->read_paused)
        return 0;
    if (!st->dead && !st->status_queued && !st->status_sent && stream_over_limit_locked(c, 1))
        return 0;
    st->read_paused = 0;
    return 1;
}

static void stream_read(sdg_call *c);

/* The read side is over: tell the handler, then drop the read loop's reference. */
static void stream_read_end(sdg_call *c)
{
    struct stream *st = &c->st;

    if (c->method->on_end != NULL)
        c->method->on_end(c->method->user_data, c);
    pthread_mutex_lock(&st->mu);
    st->read_done = 1;
    stream_maybe_finish_locked(c);
    pthread_mutex_unlock(&st->mu);
    call_unref(c);
}

/* Only the read loop starts receive batches, so they need no lock. */
static void stream_read(sdg_call *c)
{
    grpc_op op;
    grpc_call_error err;

    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->st.recv;
    err = grpc_call_start_batch(c->call, &op, 1, &c->tags[TAG_RECV], NULL);
    if (err != GRPC_CALL_OK) {
        sdd_log(SELDON_LOG_ERROR, "grpc: stream read refused: %s", grpc_call_error_to_string(err));
        grpc_call_cancel_with_status(c->call, GRPC_STATUS_INTERNAL, "read refused", NULL);
        stream_read_end(c);
    }
}

static void stream_begin(sdg_call *c)
{
    grpc_op op;
    grpc_call_error err;
    sdg_server *s = c->server;

    pthread_mutex_lock(&s->mu);
    c->sprev = NULL;
    c->snext = s->streams;
    if (s->streams != NULL)
        s->streams->sprev = c;
    s->streams = c;
    c->listed = 1;
    pthread_mutex_unlock(&s->mu);

    /* One reference for the close notification, one for the read loop. */
    atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
    memset(&op, 0, sizeof(op));
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->cancelled;
    err = grpc_call_start_batch(c->call, &op, 1, &c->tags[TAG_CLOSE], NULL);
    if (err != GRPC_CALL_OK) {
        sdd_log(SELDON_LOG_ERROR, "grpc: stream setup refused: %s", grpc_call_error_to_string(err));
        grpc_call_cancel_with_status(c->call, GRPC_STATUS_INTERNAL, "setup refused", NULL);
        c->st.dead = 1;
        call_unref(c);
        call_unref(c);
        return;
    }
    stream_read(c);
}

static void stream_on_recv(sdg_call *c, int ok)
{
    struct stream *st = &c->st;
    grpc_byte_buffer *bb = st->recv;
    const uint8_t *p = NULL;
    size_t n = 0;
    int more;

    st->recv = NULL;
    pthread_mutex_lock(&st->mu);
    more = !st->status_queued && !st->status_sent && !st->dead;
    pthread_mutex_unlock(&st->mu);
    /* A read resumed after the stream ended only closes the read side. */
    if (!ok || bb == NULL || !more) {
        if (bb != NULL)
            grpc_byte_buffer_destroy(bb);
        stream_read_end(c);
        return;
    }
    if (message_bytes(bb, &st->flat, &st->has_flat, &p, &n) == 0) {
        c->method->handler(c->method->user_data, c, p, n);
    } else {
        sdg_fail(c, GRPC_STATUS_INTERNAL, "cannot read a request message");
    }
    if (st->has_flat) {
        grpc_slice_unref(st->flat);
        st->has_flat = 0;
    }
    grpc_byte_buffer_destroy(bb);

    pthread_mutex_lock(&st->mu);
    more = !st->status_queued && !st->status_sent && !st->dead;
    if (more && stream_over_limit_locked(c, 0)) {
        /* Backpressure: the next read waits until the client takes its replies. */
        st->read_paused = 1;
        more = -1;
        if (!st->paused_logged) {
            st->paused_logged = 1;
            sdd_log(SELDON_LOG_DEBUG,
                    "grpc: stream paused: %d replies owed to the client (limit %d)",
                    stream_backlog_locked(st), c->server->max_pending);
        }
    }
    pthread_mutex_unlock(&st->mu);
    if (more > 0)
        stream_read(c);
    else if (more == 0)
        stream_read_end(c);
}

static void stream_on_send(sdg_call *c, int ok)
{
    struct stream *st = &c->st;
    int resume;

    pthread_mutex_lock(&st->mu);
    grpc_byte_buffer_destroy(st->inflight);
    st->inflight = NULL;
    st->sending = 0;
    if (!ok)
        st->dead = 1;
    if (st->dead)
        drop_queue_locked(st);
    else if (st->head != NULL)
        stream_send_next_locked(c);
    stream_maybe_finish_locked(c);
    resume = stream_resume_locked(c);
    pthread_mutex_unlock(&st->mu);
    if (resume)
        stream_read(c);
    call_unref(c);
}

static void stream_on_close(sdg_call *c, int ok)
{
    struct stream *st = &c->st;
    int resume;

    pthread_mutex_lock(&st->mu);
    if (c->cancelled || !ok) {
        st->dead = 1;
        drop_queue_locked(st);
    }
    resume = stream_resume_locked(c);
    pthread_mutex_unlock(&st->mu);
    if (resume)
        stream_read(c);
    call_unref(c);
}

int sdg_stream_write(sdg_call *call, seldon_buf *message)
{
    struct stream *st;
    struct wmsg *w;
    grpc_byte_buffer *bb;
    int rc = 0;

    if (call == NULL || message == NULL)
        return sdd_error(SELDON_EINVAL, "sdg_stream_write: %s is NULL", call ? "message" : "call");
    if (!is_stream(call))
        return sdd_error(SELDON_EINVAL, "sdg_stream_write: not a streaming call");
    st = &call->st;
    bb = buf_to_bb(message);
    if ((w = sdd_malloc(sizeof(*w))) == NULL) {
        grpc_byte_buffer_destroy(bb);
        return sdd_error(SELDON_ENOMEM, "sdg_stream_write: out of memory");
    }
    w->next = NULL;
    w->bb = bb;
    w->len = grpc_byte_buffer_length(bb);

    pthread_mutex_lock(&st->mu);
    if (st->status_queued || st->status_sent)
        rc = SELDON_ESTATE;
    else if (st->dead)
        rc = SELDON_ECANCELED;
    if (rc == 0) {
        if (st->tail != NULL)
            st->tail->next = w;
        else
            st->head = w;
        st->tail = w;
        st->nqueued++;
        st->qbytes += w->len;
        w = NULL;
        if (!st->sending)
            stream_send_next_locked(call);
    }
    pthread_mutex_unlock(&st->mu);
    if (w != NULL) {
        grpc_byte_buffer_destroy(w->bb);
        sdd_free(w);
        return sdd_error(rc, "sdg_stream_write: %s",
                         rc == SELDON_ESTATE ? "the stream has ended" : "the client has gone");
    }
    return 0;
}

int sdg_fail(sdg_call *call, int grpc_status, const char *message)
{
    struct stream *st;
    int rc = 0, resume;

    if (call == NULL)
        return sdd_error(SELDON_EINVAL, "sdg_fail: call is NULL");
    if (!is_stream(call)) {
        if (call->method == NULL)
            return sdd_error(SELDON_EINVAL, "sdg_fail: not a registered call");
        if (atomic_exchange(&call->answered, 1))
            return sdd_error(SELDON_ESTATE, "sdg_fail: call already answered");
        return send_status(call, grpc_status, message);
    }

    st = &call->st;
    pthread_mutex_lock(&st->mu);
    if (st->status_queued || st->status_sent) {
        rc = SELDON_ESTATE;
    } else if (st->dead) {
        rc = SELDON_ECANCELED;
    } else {
        st->status_queued = 1;
        st->code = clamp_status(grpc_status);
        if (message != NULL) {
            st->details = grpc_slice_from_copied_string(message);
            st->has_details = 1;
        }
        stream_maybe_finish_locked(call);
    }
    resume = rc == 0 && stream_resume_locked(call);
    pthread_mutex_unlock(&st->mu);
    if (resume)
        stream_read(call);
    if (rc != 0)
        return sdd_error(rc, "sdg_fail: %s",
                         rc == SELDON_ESTATE ? "the stream has ended" : "the client has gone");
    return 0;
}

/* ---- call accessors ------------------------------------------------------ */

const char *sdg_call_metadata(const sdg_call *call, const char *key, size_t *len)
{
    size_t klen;

    if (call == NULL || key == NULL)
        return NULL;
    klen = strlen(key);
    for (size_t i = 0; i < call->md.count; i++) {
        const grpc_metadata *e = &call->md.metadata[i];
        if (GRPC_SLICE_LENGTH(e->key) == klen &&
            memcmp(GRPC_SLICE_START_PTR(e->key), key, klen) == 0) {
            if (len != NULL)
                *len = GRPC_SLICE_LENGTH(e->value);
            return (const char *)GRPC_SLICE_START_PTR(e->value);
        }
    }
    return NULL;
}

size_t sdg_call_metadata_count(const sdg_call *call)
{
    return call != NULL ? call->md.count : 0;
}

int sdg_call_metadata_at(const sdg_call *call, size_t index, const char **key, size_t *key_len,
                         const char **value, size_t *value_len)
{
    const grpc_metadata *e;
    if (call == NULL || key == NULL || key_len == NULL || value == NULL || value_len == NULL)
        return sdd_error(SELDON_EINVAL, "sdg_call_metadata_at: NULL argument");
    if (index >= call->md.count)
        return sdd_error(SELDON_ERANGE, "sdg_call_metadata_at: index %zu of %zu", index,
                         call->md.count);
    e = &call->md.metadata[index];
    *key = (const char *)GRPC_SLICE_START_PTR(e->key);
    *key_len = GRPC_SLICE_LENGTH(e->key);
    *value = (const char *)GRPC_SLICE_START_PTR(e->value);
    *value_len = GRPC_SLICE_LENGTH(e->value);
    return 0;
}

/* Lowercase token characters, as HTTP/2 and gRPC require of metadata keys. */
static int md_key_ok(const char *key, size_t n)
{
    if (n == 0 || n > 256 || strncmp(key, "grpc-", 5) == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = key[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' ||
              ch == '.'))
            return 0;
    }
    return 1;
}

/* Printable ASCII for text values; "-bin" keys carry any bytes (gRPC base64-encodes them). */
static int md_value_ok(const char *key, size_t klen, const char *v, size_t n)
{
    if (klen > 4 && memcmp(key + klen - 4, "-bin", 4) == 0)
        return 1;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x20 || (unsigned char)v[i] > 0x7e)
            return 0;
    return 1;
}

int sdg_call_add_metadata(sdg_call *call, int trailing, const char *key, const char *value,
                          size_t value_len)
{
    struct mdlist *l;
    size_t klen;
    int rc = 0, locked = 0;

    if (call == NULL || key == NULL || (value == NULL && value_len > 0))
        return sdd_error(SELDON_EINVAL, "sdg_call_add_metadata: NULL argument");
    if (call->method == NULL)
        return sdd_error(SELDON_EINVAL, "sdg_call_add_metadata: not a registered call");
    klen = strlen(key);
    if (!md_key_ok(key, klen))
        return sdd_error(SELDON_EINVAL,
                         "metadata key '%.64s': use lowercase letters, digits, '-', '_', '.' "
                         "(and not the reserved grpc- prefix)",
                         key);
    if (!md_value_ok(key, klen, value, value_len))
        return sdd_error(SELDON_EINVAL,
                         "metadata %.64s: a text value must be printable ASCII (use a -bin key "
                         "for bytes)",
                         key);
    l = trailing ? &call->trailing_md : &call->initial_md;
    if (is_stream(call)) {
        pthread_mutex_lock(&call->st.mu);
        locked = 1;
        if (trailing ? call->st.status_sent : call->st.md_sent)
            rc = SELDON_ESTATE;
    } else if (atomic_load(&call->answered)) {
        rc = SELDON_ESTATE;
    }
    if (rc == 0 && l->n == MD_MAX)
        rc = SELDON_ETOOBIG;
    if (rc == 0) {
        l->items[l->n].key = grpc_slice_from_copied_buffer(key, klen);
        l->items[l->n].value = grpc_slice_from_copied_buffer(value ? value : "", value_len);
        l->n++;
    }
    if (locked)
        pthread_mutex_unlock(&call->st.mu);
    if (rc == SELDON_ESTATE)
        return sdd_error(rc, "metadata %.64s: the %s metadata was already sent", key,
                         trailing ? "trailing" : "initial");
    if (rc == SELDON_ETOOBIG)
        return sdd_error(rc, "metadata %.64s: more than %d %s entries", key, MD_MAX,
                         trailing ? "trailing" : "initial");
    return 0;
}

void sdg_call_hold(sdg_call *call)
{
    if (call == NULL)
        return;
    atomic_fetch_add_explicit(&call->refs, 1, memory_order_relaxed);
    if (is_stream(call)) {
        pthread_mutex_lock(&call->st.mu);
        call->st.holds++;
        pthread_mutex_unlock(&call->st.mu);
    }
}

void sdg_call_release(sdg_call *call)
{
    int resume = 0;
    if (call == NULL)
        return;
    if (is_stream(call)) {
        pthread_mutex_lock(&call->st.mu);
        call->st.holds--;
        stream_maybe_finish_locked(call);
        resume = stream_resume_locked(call);
        pthread_mutex_unlock(&call->st.mu);
    }
    /* The read loop's own reference keeps the call alive through the read. */
    if (resume)
        stream_read(call);
    call_unref(call);
}

void sdg_call_set_user(sdg_call *call, void *user)
{
    if (call != NULL)
        call->user = user;
}

void *sdg_call_user(const sdg_call *call)
{
    return call != NULL ? call->user : NULL;
}

size_t sdg_call_peer(const sdg_call *call, char *buf, size_t cap)
{
    char *peer;
    size_t len;

    if (cap > 0 && buf != NULL)
        buf[0] = '\0';
    if (call == NULL || call->call == NULL)
        return 0;
    if ((peer = grpc_call_get_peer(call->call)) == NULL)
        return 0;
    len = strlen(peer);
    if (buf != NULL && cap > 0) {
        size_t n = len < cap - 1 ? len : cap - 1;
        memcpy(buf, peer, n);
        buf[n] = '\0';
    }
    gpr_free(peer);
    return len;
}

int64_t sdg_call_timeout_ms(const sdg_call *call)
{
    gpr_timespec deadline, now, left;

    if (call == NULL)
        return -1;
    deadline = call->method != NULL ? call->deadline : call->details.deadline;
    if (deadline.tv_sec == INT64_MAX)
        return -1;
    deadline = gpr_convert_clock_type(deadline, GPR_CLOCK_MONOTONIC);
    now = gpr_now(GPR_CLOCK_MONOTONIC);
    if (gpr_time_cmp(deadline, now) <= 0)
        return 0;
    left = gpr_time_sub(deadline, now);
    return left.tv_sec * 1000 + left.tv_nsec / 1000000;
}

/* ---- completion-queue threads -------------------------------------------- */

static void on_new_call(sdg_call *c, int ok)
{
    struct queue *q = c->q;

    if (!ok) {
        /* The server is shutting down and handed the request back. */
        call_unref(c);
        return;
    }
    /* Replace the matched request before the handler runs, so the pool stays full. */
    if (!atomic_load_explicit(&q->server->stopping, memory_order_relaxed)) {
        if (request_call(q, c->method) < 0)
            sdd_log(SELDON_LOG_ERROR, "%s", seldon_last_error());
    }
    if (c->method == NULL)
        unknown_begin(c);
    else if (c->method->streaming)
        stream_begin(c);
    else
        unary_begin(c);
}

static void dispatch(struct queue *q, uint8_t *tag, int ok)
{
    sdg_call *c;

    if (*tag == TAG_SHUTDOWN) {
        sdg_server *s = q->server;
        pthread_mutex_lock(&s->mu);
        s->shutdown_seen = 1;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        return;
    }
    c = (sdg_call *)(void *)((char *)(tag - *tag) - offsetof(sdg_call, tags));
    switch (*tag) {
    case TAG_NEW:
        on_new_call(c, ok);
        break;
    case TAG_DONE:
        call_unref(c);
        break;
    case TAG_RECV:
        stream_on_recv(c, ok);
        break;
    case TAG_SEND:
        stream_on_send(c, ok);
        break;
    case TAG_CLOSE:
        stream_on_close(c, ok);
        break;
    default:
        sdd_log(SELDON_LOG_ERROR, "grpc: unknown completion tag %d", *tag);
        break;
    }
}

static void *queue_main(void *arg)
{
    struct queue *q = arg;

    for (;;) {
        grpc_event ev = grpc_completion_queue_next(q->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type == GRPC_OP_COMPLETE)
            dispatch(q, ev.tag, ev.success);
    }
    return NULL;
}

/* ---- server -------------------------------------------------------------- */

static int check_config(const sdg_config *cfg)
{
    if (cfg->address == NULL)
        return sdd_error(SELDON_EINVAL, "grpc: address is NULL");
    if (cfg->threads < 1)
        return sdd_error(SELDON_EINVAL, "grpc: threads must be >= 1, got %d", cfg->threads);
    if (cfg->nmethods > 0 && cfg->methods == NULL)
        return sdd_error(SELDON_EINVAL, "grpc: methods is NULL");
    for (size_t i = 0; i < cfg->nmethods; i++) {
        const sdg_method *m = &cfg->methods[i];
        if (m->path == NULL || m->path[0] != '/')
            return sdd_error(SELDON_EINVAL,
                             "grpc: methods[%zu].path: expected \"/pkg.Service/Method\"", i);
        if (m->handler == NULL)
            return sdd_error(SELDON_EINVAL, "grpc: methods[%zu].handler is NULL", i);
        if (m->streaming != 0 && m->streaming != 1)
            return sdd_error(SELDON_EINVAL, "grpc: methods[%zu].streaming: expected 0 or 1", i);
    }
    return 0;
}

static int init_sync(sdg_server *s)
{
    pthread_condattr_t attr;

    if (pthread_condattr_init(&attr) != 0)
        return sdd_error(SELDON_EINTERNAL, "grpc: pthread_condattr_init failed");
    /* The grace period is measured on the monotonic clock, immune to clock steps. */
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (pthread_cond_init(&s->cv, &attr) != 0) {
        pthread_condattr_destroy(&attr);
        return sdd_error(SELDON_EINTERNAL, "grpc: pthread_cond_init failed");
    }
    pthread_condattr_destroy(&attr);
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        pthread_cond_destroy(&s->cv);
        return sdd_error(SELDON_EINTERNAL, "grpc: pthread_mutex_init failed");
    }
    return 0;
}

static int fill_requests(sdg_server *s)
{
    int rc;

    for (int i = 0; i < s->nqueues; i++) {
        struct queue *q = &s->queues[i];
        for (size_t m = 0; m < s->nmethods; m++) {
            int ahead = s->methods[m].streaming ? AHEAD_STREAM : AHEAD_UNARY;
            for (int k = 0; k < ahead; k++)
                if ((rc = request_call(q, &s->methods[m])) < 0)
                    return rc;
        }
        for (int k = 0; k < AHEAD_GENERIC; k++)
            if ((rc = request_call(q, NULL)) < 0)
                return rc;
    }
    return 0;
}

int sdg_server_start(sdg_server **out, const sdg_config *cfg)
{
    sdg_server *s = NULL;
    grpc_server_credentials *creds;
    grpc_arg args[2];
    grpc_channel_args chargs;
    int rc = 0;

    if (out == NULL || cfg == NULL) {
        rc = sdd_error(SELDON_EINVAL, "grpc: %s is NULL", out ? "cfg" : "out");
        goto out;
    }
    *out = NULL;
    if ((rc = check_config(cfg)) < 0)
        goto out;
    if ((s = sdd_calloc(1, sizeof(*s))) == NULL) {
        rc = sdd_error(SELDON_ENOMEM, "grpc: cannot allocate the server");
        goto out;
    }
    atomic_init(&s->live, 0);
    atomic_init(&s->stopping, 0);
    s->max_pending = cfg->stream_max_pending > 0 ? cfg->stream_max_pending : STREAM_MAX_PENDING;
    s->max_pending_bytes =
        cfg->stream_max_pending_bytes > 0 ? cfg->stream_max_pending_bytes : STREAM_MAX_PENDING_BYTES;
    s->shutdown_tag = TAG_SHUTDOWN;
    if ((rc = init_sync(s)) < 0) {
        sdd_free(s);
        s = NULL;
        goto out;
    }
    grpc_init();
    s->grpc_inited = 1;

    memset(args, 0, sizeof(args));
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = cfg->max_message == 0        ? GRPC_DEFAULT_MAX_RECV_MESSAGE_LENGTH
                            : cfg->max_message > INT_MAX ? INT_MAX
                                                         : (int)cfg->max_message;
    /* Without this, a second server on a taken port would share it silently. */
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = GRPC_ARG_ALLOW_REUSEPORT;
    args[1].value.integer = 0;
    chargs.num_args = 2;
    chargs.args = args;
    if ((s->server = grpc_server_create(&chargs, NULL)) == NULL) {
        rc = sdd_error(SELDON_EINTERNAL, "grpc: grpc_server_create failed");
        goto out;
    }

    if ((s->queues = sdd_calloc((size_t)cfg->threads, sizeof(*s->queues))) == NULL) {
        rc = sdd_error(SELDON_ENOMEM, "grpc: cannot allocate %d queues", cfg->threads);
        goto out;
    }
    for (int i = 0; i < cfg->threads; i++) {
        struct queue *q = &s->queues[i];
        q->server = s;
        if ((q->cq = grpc_completion_queue_create_for_next(NULL)) == NULL) {
            rc = sdd_error(SELDON_EINTERNAL, "grpc: cannot create a completion queue");
            goto out;
        }
        s->nqueues++;
        grpc_server_register_completion_queue(s->server, q->cq, NULL);
    }

    if (cfg->nmethods > 0 &&
        (s->methods = sdd_calloc(cfg->nmethods, sizeof(*s->methods))) == NULL) {
        rc = sdd_error(SELDON_ENOMEM, "grpc: cannot allocate %zu methods", cfg->nmethods);
        goto out;
    }
    for (size_t i = 0; i < cfg->nmethods; i++) {
        const sdg_method *m = &cfg->methods[i];
        struct method_entry *e = &s->methods[i];
        e->streaming = m->streaming;
        e->handler = m->handler;
        e->on_end = m->on_end;
        e->user_data = m->user_data;
        e->handle = grpc_server_register_method(
            s->server, m->path, NULL,
            m->streaming ? GRPC_SRM_PAYLOAD_NONE : GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
        if (e->handle == NULL) {
            rc = sdd_error(SELDON_EINVAL, "grpc: methods[%zu].path: cannot register %s (twice?)", i,
                           m->path);
            goto out;
        }
        s->nmethods++;
    }

    for (int i = 0; i < s->nqueues; i++) {
        if (pthread_create(&s->queues[i].thread, NULL, queue_main, &s->queues[i]) != 0) {
            rc = sdd_error(SELDON_EINTERNAL, "grpc: cannot start thread %d", i);
            goto out;
        }
        s->queues[i].running = 1;
    }

    creds = grpc_insecure_server_credentials_create();
    s->port = grpc_server_add_http2_port(s->server, cfg->address, creds);
    grpc_server_credentials_release(creds);
    if (s->port == 0) {
        rc = sdd_error(SELDON_EIO, "grpc: cannot listen on %s", cfg->address);
        goto out;
    }
    grpc_server_start(s->server);
    s->started = 1;
    if ((rc = fill_requests(s)) < 0)
        goto out;

    *out = s;
    s = NULL;
out:
    sdg_server_free(s);
    return rc;
}

int sdg_server_port(const sdg_server *s)
{
    return s != NULL ? s->port : 0;
}

static void deadline_after(struct timespec *ts, uint64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    if (ms > (uint64_t)INT32_MAX * 1000u)
        ms = (uint64_t)INT32_MAX * 1000u;
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/*
 * Ends the streams that wait for a client message with nothing of theirs in
 * flight: an idle stream would otherwise hold a graceful stop for the whole
 * grace period. Streams still working keep going until their holds are gone.
 */
static void end_idle_streams(sdg_server *s)
{
    sdg_call *idle[64];
    size_t n = 0, i;
    sdg_call *c;

    pthread_mutex_lock(&s->mu);
    for (c = s->streams; c != NULL && n < 64; c = c->snext) {
        struct stream *st = &c->st;
        int quiet;
        pthread_mutex_lock(&st->mu);
        quiet = st->holds == 0 && !st->sending && st->head == NULL && !st->status_queued &&
                !st->status_sent && !st->dead;
        pthread_mutex_unlock(&st->mu);
        if (quiet) {
            atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
            idle[n++] = c;
        }
    }
    pthread_mutex_unlock(&s->mu);
    for (i = 0; i < n; i++) {
        sdg_fail(idle[i], GRPC_STATUS_UNAVAILABLE, "the server is shutting down");
        call_unref(idle[i]);
    }
}

void sdg_server_stop(sdg_server *s, uint64_t grace_ms)
{
    if (s == NULL || s->stopped)
        return;
    s->stopped = 1;
    atomic_store(&s->stopping, 1);

    if (s->started) {
        struct timespec until;
        deadline_after(&until, grace_ms);
        grpc_server_shutdown_and_notify(s->server, s->queues[0].cq, &s->shutdown_tag);
        pthread_mutex_lock(&s->mu);
        while (!s->shutdown_seen) {
            struct timespec tick;
            int timed_out;
            /* Every 20 ms, end the streams that went idle since the last look. */
            deadline_after(&tick, 20);
            if (tick.tv_sec > until.tv_sec ||
                (tick.tv_sec == until.tv_sec && tick.tv_nsec > until.tv_nsec))
                tick = until;
            pthread_mutex_unlock(&s->mu);
            end_idle_streams(s);
            pthread_mutex_lock(&s->mu);
            if (s->shutdown_seen)
                break;
            timed_out = pthread_cond_timedwait(&s->cv, &s->mu, &tick) == ETIMEDOUT;
            if (timed_out && tick.tv_sec == until.tv_sec && tick.tv_nsec == until.tv_nsec)
                break;
        }
        if (!s->shutdown_seen) {
            pthread_mutex_unlock(&s->mu);
            grpc_server_cancel_all_calls(s->server);
            pthread_mutex_lock(&s->mu);
            while (!s->shutdown_seen)
                pthread_cond_wait(&s->cv, &s->mu);
        }
        pthread_mutex_unlock(&s->mu);
        /*
         * Cancelled calls still wait for their handlers' answers and holds.
         * Polling keeps the per-call release path free of locks; a stop is rare.
         */
        while (atomic_load_explicit(&s->live, memory_order_acquire) != 0) {
            struct timespec nap = {0, 1000000L};
            nanosleep(&nap, NULL);
        }
    }
    if (s->server != NULL) {
        grpc_server_destroy(s->server);
        s->server = NULL;
    }
    for (int i = 0; i < s->nqueues; i++)
        grpc_completion_queue_shutdown(s->queues[i].cq);
    for (int i = 0; i < s->nqueues; i++)
        if (s->queues[i].running)
            pthread_join(s->queues[i].thread, NULL);
    for (int i = 0; i < s->nqueues; i++)
        grpc_completion_queue_destroy(s->queues[i].cq);
    s->nqueues = 0;
}

void sdg_server_free(sdg_server *s)
{
    if (s == NULL)
        return;
    sdg_server_stop(s, 0);
    sdd_free(s->queues);
    sdd_free(s->methods);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    if (s->grpc_inited)
        grpc_shutdown_blocking();
    sdd_free(s);
}
