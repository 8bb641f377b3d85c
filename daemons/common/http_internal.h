/*
 * Internals of the HTTP transport, shared by http_conn.c (connections: reading,
 * parsing, ordered writes) and http_server.c (responses, loops, lifecycle). Not
 * for daemons: they include http_server.h.
 *
 * Memory. Each connection reads into one growable input block. A request's view
 * (URL, headers, body) points into that block, so a request costs no copy beyond
 * the read itself. A request handed to its handler holds a reference on its block;
 * while any does, the connection never moves or overwrites bytes in that block and
 * starts a fresh one when it runs out of room. Chunked bodies and folded header
 * lines are joined in place, by moving later pieces down over framing bytes that
 * the parser has already consumed. Request objects are recycled per loop. A
 * request gives its block back when it is answered (its view is then done with).
 * A streamed request keeps the block of its head; its body goes to the handler
 * piece by piece and the connection keeps only the bytes not yet parsed.
 *
 * Threads. The loops belong to the caller (loops.h); the server attaches one
 * sdh_loop (listener, mailbox, timers) to each. Everything about a connection
 * happens on its loop's thread; the connection refcount is therefore plain. A response produced on
 * another thread travels through the loop's mailbox (a mutex-protected list plus uv_async). A stop
 * that gives up waiting turns unanswered requests into orphans: they keep their
 * block (atomic refcount) and mailbox alive, and their late sdh_respond() frees
 * them without touching the loop, which is gone by then.
 *
 * Backpressure. Each connection counts the bytes it holds for requests handed
 * over and not answered (their input) and for responses not yet written (held);
 * with more than max_buffered, or SDH_MAX_PIPELINE requests, it stops reading
 * (bp bits), and resumes below half. A streamed request pauses it the same way.
 *
 * Unless marked otherwise, everything here runs on the loop thread that owns the
 * connection or request.
 */
#ifndef SDH_HTTP_INTERNAL_H
#define SDH_HTTP_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>

#include <http_parser.h>
#include <uv.h>

#include "sdd.h"
#include "http_server.h"

#define SDH_NONE SIZE_MAX
#define SDH_BLOCK_SIZE 8192         /* first input block of a connection */
#define SDH_BLOCK_KEEP (256 * 1024) /* an idle connection shrinks a larger block back */
#define SDH_MIN_READ 2048           /* make room when less than this is free */
#define SDH_PREALLOC_MAX (4u << 20) /* room made at once for a declared body */
#define SDH_MAX_HEADERS 100
#define SDH_INLINE_HEADERS 16
#define SDH_HEAD_INLINE 320
#define SDH_MAX_PIPELINE 32 /* stop reading with this many requests unanswered */
#define SDH_LINGER_MS 2000  /* after a final response: read and discard this long */
#define SDH_REQ_CACHE 128
#define SDH_SCRATCH 65536
#define SDH_STREAM_READ 65536 /* room made per read while a body streams */
#define SDH_MAX_LOOPS 1024

/* Why a connection is not reading (bits of sdh_conn.bp). */
enum { SDH_BP_PIPELINE = 1, SDH_BP_BYTES = 2, SDH_BP_USER = 4 };

enum { SDH_CB_NONE, SDH_CB_FIELD, SDH_CB_VALUE };
enum { SDH_KIND_HANDLER, SDH_KIND_INTERNAL, SDH_KIND_INTERIM };

typedef struct sdh_loop sdh_loop;
typedef struct sdh_conn sdh_conn;
typedef struct sdh_chunk sdh_chunk;

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
    size_t held; /* bytes counted in conn->held for this request */
    uint8_t kind, keep_alive, http10, head_only, ready, responded;
    /* Streaming mode (sdh_stream_*): loop thread only. */
    uint8_t stream, s_started, s_ended, s_chunked, s_body_done, s_want_drain, s_popped;
    uint8_t s_ended_by_handler;
    const sdh_stream_ops *ops;
    void *sud;
    sdh_chunk *oq_head, *oq_tail; /* response pieces not yet handed to the socket */
    size_t s_queued;              /* response bytes queued or being written */
    size_t s_writes;              /* uv_write()s in flight */
    int64_t s_left;               /* announced length still to come, or -1 */
    int64_t declared;             /* request body length, or -1 when chunked */
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
    uint64_t msg_start;  /* when the message being read began (0: between messages) */
    sdh_req *pending;    /* the request of a head handler, until its body is in */
    sdh_req *cur_stream; /* the streamed request whose body is being read */
    const char *err_msg;
    /* Requests in arrival order, until their responses are handed to the socket. */
    sdh_req *fifo_head, *fifo_tail;
    size_t nfifo;
    size_t nwait;    /* requests with a handler and no response yet */
    size_t writes;   /* uv_write()s in flight */
    size_t orphaned; /* scratch for loop_finish() */
    size_t held;     /* bytes of input and output held for requests (see Backpressure) */
    uint64_t last_active, linger_since;
    uint8_t in_parse, bp, reading, no_more, rd_eof, shutting, lingering, closed;
    uint8_t proto_known, adopted, in_msg, stop_after;
};

struct sdh_loop {
    sdh_server *server;
    uv_loop_t *uv; /* the caller's */
    uv_tcp_t listener;
    uv_async_t async;
    uv_timer_t sweep, grace;
    uv_thread_t tid; /* the thread running uv, known once a connection came */
    int closing;     /* our handles with a close pending */
    sdh_mbox *mbox;
    sdh_conn *conns;
    sdh_req *cache;
    size_t ncache;
    size_t nopen;    /* connections with an open handle */
    size_t inflight; /* requests with a handler and no response delivered yet */
    uint64_t next_id;
    unsigned index;
    int fd; /* the listening socket until uv_tcp_open() owns it */
    uint8_t handles, listener_open, stopping, finished, done, tid_set;
    char scratch[SDH_SCRATCH]; /* where reads go once a connection accepts no more requests */
};

struct sdh_server {
    sdh_config cfg;
    sdh_loop *loops[SDH_MAX_LOOPS];
    int nloops;
    int port;
    int stopped;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    char host[64]; /* for messages */
    uv_mutex_t mu; /* guards ndone with cv */
    uv_cond_t cv;
    int ndone; /* loops whose handles are all closed */
};

/* http_conn.c */
void sdh_block_unref(sdh_block *b); /* any thread: orphans release their block off-loop */
/* A request object from the loop's cache; kind is one of SDH_KIND_*. NULL on ENOMEM. */
sdh_req *sdh_req_new(sdh_loop *L, int kind);
void sdh_req_free_storage(sdh_req *r); /* any thread: head, body, headers, block */
/* The request is done with (written, or its connection is gone): back to the cache. */
void sdh_req_release(sdh_req *r);
sdh_req *sdh_fifo_pop(sdh_conn *c);
void sdh_conn_unref(sdh_conn *c); /* frees c at zero */
/* Writes the answered requests at the head of c's FIFO, in order. */
void sdh_conn_flush(sdh_conn *c);
void sdh_conn_close(sdh_conn *c); /* idempotent; c lives on while references remain */
void sdh_conn_408(sdh_conn *c);   /* the request deadline passed */
void sdh_on_connection(uv_stream_t *srv, int status); /* the listeners' callback */
/* Backpressure: c holds add more and sub fewer bytes; stops or resumes reading. */
void sdh_conn_held(sdh_conn *c, size_t add, size_t sub);
/* Sets or clears a bp bit; reading resumes (and buffered bytes are parsed) at 0. */
void sdh_conn_bp_set(sdh_conn *c, uint8_t bit);
void sdh_conn_bp_clear(sdh_conn *c, uint8_t bit);
/* Formats a response head into r (any thread); content_length < 0: none announced. */
int sdh_format_head(sdh_req *r, int status, const sdh_header *h, size_t n, int64_t content_length,
                    int chunked, int keep);

/* http_stream.c */
/* Loop thread, from sdh_conn_flush(): r (streamed, at the head of the FIFO) writes
 * its queued pieces. Returns 1 once r is done and was popped. */
int sdh_stream_flush(sdh_conn *c, sdh_req *r);
/* Loop thread: c is closing; r (streamed, not ended) gets on_abort. */
void sdh_stream_abort(sdh_req *r);
/* Loop thread: a whole response (sdh_respond) for a streamed request. */
void sdh_stream_detach(sdh_req *r);
/* Loop thread: frees the response pieces r never handed to the socket. */
void sdh_stream_drop(sdh_req *r);

/* http_server.c */
/* During a stop: once nothing is in flight and no connection is open, finish the loop. */
void sdh_loop_check_stop(sdh_loop *L);
/* A connection of L was freed: during the end of a stop, L may be done. */
void sdh_loop_maybe_done(sdh_loop *L);
/* Any thread: 1 when the calling thread runs L's loop. */
int sdh_on_loop(const sdh_loop *L);

#endif
