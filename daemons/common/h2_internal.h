/*
 * Internals shared by the h2c server and client: one connection type drives an
 * nghttp2 session over a uv stream, on the owner's loop thread.
 */
#ifndef SD2_INTERNAL_H
#define SD2_INTERNAL_H

#include <nghttp2/nghttp2.h>

#include "h2.h"

#define SD2_RBUF 65536
#define SD2_WRITE_BATCH 65536

typedef struct sd2_conn sd2_conn;
typedef struct sd2_owner sd2_owner;

/* Queued bytes up to SD2_CHUNK_SMALL take a pooled chunk of that capacity; each owner
 * keeps up to SD2_CHUNK_POOL of them for reuse, so a small message costs no allocation. */
#define SD2_CHUNK_SMALL 4096
#define SD2_CHUNK_POOL 32
#define SD2_STREAM_POOL 64
#if defined(__SANITIZE_ADDRESS__)
#define SD2_POOLS 0 /* no reuse under AddressSanitizer: a use after free must be caught */
#else
#define SD2_POOLS 1
#endif

typedef struct sd2_chunk {
    struct sd2_chunk *next;
    size_t cap; /* bytes of data[] */
    size_t len;
    size_t off;
    uint8_t data[];
} sd2_chunk;

/* Fields of a received block viewed without an allocation, up to this many. */
#define SD2_HDR_INLINE 32

/* A received header block being assembled: names and values in one arena. */
typedef struct sd2_hbuf {
    char *mem;
    size_t len, cap;
    size_t *ent; /* 4 per field: name offset, name length, value offset, value length */
    size_t n, ncap;
} sd2_hbuf;


struct sd2_stream {
    sd2_conn *conn;
    sd2_stream *prev, *next;
    int32_t id;
    sd2_stream_cbs cbs;
    void *ud;
    int bound;
    size_t unconsumed; /* delivered through on_data, not yet consumed */
    sd2_chunk *q_head, *q_tail;
    size_t queued;
    int want_drain, drain_pending;
    int provider;      /* a data provider was submitted */
    int deferred;      /* its read callback returned DEFERRED */
    int local_end;     /* sd2_end() was called */
    int end_submitted; /* END_STREAM or trailers went to nghttp2 */
    nghttp2_nv *trailers; /* in hkeep, submitted when the queue runs dry */
    size_t ntrailers;
    sd2_chunk *hkeep; /* header blocks given to nghttp2 uncopied: kept until the stream goes */
    int headers_sent, headers_recv, remote_end;
    int reset_local;
    int finishing; /* inside on_close */
    int rst_recv;
    uint32_t rst_code;
    int err_set; /* a reason decided here (timeout, cancel); wins at close */
    int close_err;       /* closed while its connection wrote: told after the write */
    uint32_t close_code;
    /* client */
    uint64_t due_ms;
    size_t heap_idx; /* SIZE_MAX when not in the heap */
};

/* What a server or client shares with its connections. */
struct sd2_owner {
    uv_loop_t *loop;
    sd2_opts opts;
    int is_client;
    uint8_t *rbuf;
    uint8_t *wbuf; /* where a flush gathers the session's output (SD2_WRITE_BATCH) */
    int wbusy;     /* a flush is using wbuf */
    sd2_conn *conns;
    size_t nconns;
    int closing;
    uv_idle_t idle;   /* deferred work: flushes asked for by API calls, */
    uv_check_t check; /* and freeing dead connections */
    sd2_conn *dirty;
    sd2_conn *zombies;
    sd2_chunk *pool; /* free chunks of SD2_CHUNK_SMALL bytes */
    size_t npool;
    sd2_stream *spool; /* freed streams kept for reuse (up to SD2_STREAM_POOL) */
    size_t nspool;
    void (*conn_gone)(sd2_owner *o, sd2_conn *c);
    /* server: a request's header block arrived */
    void (*on_request)(sd2_owner *o, sd2_stream *s, const sd2_header *h, size_t n, int end);
    /* closing, no connection left, zombies freed */
    void (*all_gone)(sd2_owner *o);
};

struct sd2_conn {
    sd2_owner *owner;
    sd2_conn *prev, *next;   /* owner's list */
    sd2_conn *uprev, *unext; /* client: upstream's list */
    struct sd2_upstream *up;
    uv_stream_t *stream;
    uv_tcp_t tcp;
    uv_timer_t ctimer;
    uv_connect_t creq;
    int own_tcp, handles;
    int timer_on; /* ctimer initialised: client connect timeout, server idle timeout */
    int idle_armed;      /* server: the idle timer is running */
    uint64_t idle_since; /* server: loop time (ms) when the last stream ended */
    void (*release)(void *owner);
    void *release_owner;
    nghttp2_session *ses;
    sd2_stream *streams;
    size_t nstreams;
    size_t out_pending, writes_pending;
    int reading, connected;
    int depth, want_flush, want_drains;
    int fail_err, failing;
    int dead, released;
    int dirty;
    sd2_conn *dnext;
    int sending; /* inside sd2_conn_flush's loop: closing streams wait in closed */
    int hold;    /* a write from inside an API call: nobody is told anything */
    sd2_stream *closed, *closed_tail;
    int goaway_recv, goaway_sent;
    int32_t goaway_last;
    /* The header block being received: HTTP/2 sends a block's frames back to back, so
       one per connection serves every stream, and its memory is kept between blocks. */
    sd2_hbuf rx;
    sd2_stream *rx_stream; /* the stream rx belongs to (saves a lookup per field) */
    int32_t rx_id;         /* its id; 0 when none */
    int rid_named;         /* "x-request-id" went out indexed once: the peer knows the name */
};

/* h2_conn.c */
int sd2_owner_init(sd2_owner *o, uv_loop_t *loop, const sd2_opts *opts, int is_client);
void sd2_owner_fini(sd2_owner *o);
int sd2_conn_session(sd2_conn *c);
void sd2_conn_link(sd2_conn *c);
int sd2_conn_start_read(sd2_conn *c);
void sd2_conn_feed(sd2_conn *c, const uint8_t *data, size_t len);
void sd2_conn_flush(sd2_conn *c);
void sd2_conn_mark(sd2_conn *c);
void sd2_conn_idle_arm(sd2_conn *c);
void sd2_owner_close_handles(sd2_owner *o, uv_close_cb cb);
void sd2_conn_fail(sd2_conn *c, int err);
void sd2_conn_enter(sd2_conn *c);
void sd2_conn_leave(sd2_conn *c);
sd2_stream *sd2_stream_alloc(sd2_conn *c);
/* Frees a stream sd2_stream_alloc gave (kept in the owner's pool when there is room). */
void sd2_stream_free(sd2_stream *s);
void sd2_stream_link(sd2_stream *s);
/* Copies a header block into memory stream s owns until it is freed, as fields nghttp2
 * need not copy again: the array to submit (NULL when n is 0), or NULL and *oom set. */
nghttp2_nv *sd2_keep_block(sd2_stream *s, const sd2_header *h, size_t n, int *oom);
extern const nghttp2_data_provider sd2_provider_template;

/* h2_client.c: the client's timer heap */
void sd2_client_unheap(sd2_stream *s);

#endif
