/*
 * Internal to pipeline serving (plserve.h), included by its parts only (not
 * installed): what plserve.c (the engine per loop, waiters, REST, the
 * asynchronous store), plserve_grpc.c (gRPC framing, ModelInfer and
 * ModelStreamInfer) and plserve_ctl.c (the pipelines' set, set-up and
 * tear-down) share. Everything here runs on an ingress loop unless it says
 * otherwise.
 */

#ifndef SDP_PLSERVE_INT_H
#define SDP_PLSERVE_INT_H

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "plserve.h"

#define NBUCKETS 1024

enum { W_REST, W_GRPC, W_STREAM, W_ASYNC, W_DROP };

/* A waiter's header room before it allocates: x-request-id and a few more, with the
   x-seldon-route of several steps (a waiter stays under 1 KiB, in glibc's tcache). */
#define W_XH_INLINE 4
#define W_HS_INLINE 224

typedef struct sdp_loop sdp_loop;
typedef struct scall scall;

/* An owned header (name and value in one allocation). */
typedef struct oh {
    char *name;
    size_t name_len;
    char *value;
    size_t value_len;
} oh;

static inline int is_x(const char *name, size_t len)
{
    return len > 2 && (name[0] == 'x' || name[0] == 'X') && name[1] == '-';
}

static inline int name_is(const char *name, size_t len, const char *lit)
{
    size_t n = strlen(lit), i;
    if (len != n)
        return 0;
    for (i = 0; i < n; i++) {
        char c = name[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c != lit[i])
            return 0;
    }
    return 1;
}

/* A request waiting for its pipeline's answer, on its loop. */
typedef struct plw plw;
struct plw {
    plw *next;
    uint64_t seq;
    int kind;
    sdh_req *req; /* W_REST */
    void *ctx;    /* W_GRPC: the host's, answered with hooks.grpc_answer */
    scall *sc;    /* W_STREAM */
    int64_t deadline;
    char pipeline[SELDON_ROUTES_NAME_MAX + 1];
    char rid[80]; /* x-request-id */
    oh *xh;       /* the x-* headers to answer with: the request's, then the models' merged */
    size_t nxh, xh_cap;
    char *hs; /* their names and values (xh points into it) */
    size_t hs_len, hs_cap;
    int32_t err_kind; /* with err_msg: the error the host gave (sdp_call_fail_as) */
    char *err_msg;
    int tag; /* the answer's x-seldon-route ends with ":<pipeline>.pipeline:" (sdp_route) */
    /* Room for the usual few headers, so that a request's headers cost no allocation
       (xh and hs start here and move to the heap only when they outgrow it). */
    oh xh_in[W_XH_INLINE];
    char hs_in[W_HS_INLINE];
};

struct sdp_loop {
    sdp *s;
    int loop;
    seldon_pipeline_engine *eng;
    uv_timer_t timer;
    int64_t armed; /* the deadline the timer is set for, INT64_MAX when none */
    plw *buckets[NBUCKETS];
    uint64_t seq;
    char rid_prefix[18]; /* new_rid(): the salt and the loop in hex, made once */
    sdp_call *done_head, *done_tail;
    int pumping;
    const seldon_pipeline **pls; /* the pipelines this loop's engine runs (the engine holds them) */
    size_t npls, cap;
};

typedef struct ctl_ent {
    char *name;
    uint32_t version;
    seldon_pipeline *pl;
} ctl_ent;

typedef struct async_entry {
    int used;
    int done;
    int chained; /* a chained pipeline's result to come (or not: it expires all the same) */
    int status;  /* HTTP */
    int64_t expires_ns;
    char id[80];
    char pipeline[SELDON_ROUTES_NAME_MAX + 1];
    seldon_buf body;
} async_entry;

typedef struct ready_ent {
    char name[SELDON_ROUTES_NAME_MAX + 1];
    int32_t ready;
    char why[192]; /* when not ready: why, as the control side said ("" for the default) */
} ready_ent;

struct sdp {
    sdl_loops *loops;
    int nloops;
    sdp_config cfg;
    sdp_hooks hooks;
    void *ud;
    sdp_loop **pl;
    /* control side */
    ctl_ent *ctl_tab;
    size_t ctl_n, ctl_cap;
    /* readiness given by sdp_sync, read by the loops */
    pthread_mutex_t ready_mu;
    ready_ent *ready;
    size_t nready;
    /* asynchronous results */
    pthread_mutex_t async_mu;
    async_entry *async_tab;
    size_t async_cap;
};

typedef struct plreq {
    const char *pipeline;
    size_t pipeline_len;
    const sdp_header *headers; /* x-* headers of the request */
    size_t nheaders;
    int64_t timeout_ms;        /* 0: the default */
    const seldon_pipeline *pl; /* the pipeline when the caller found it, else NULL */
    int tag;                   /* sdp_route.tag */
} plreq;

/* ---- plserve.c ---- */

void sdp_i_count(sdp *s, const char *protocol, int code);
/* The current ingress loop's engine and waiters; NULL off the ingress loops. */
sdp_loop *sdp_i_cur(sdp *s);
const seldon_pipeline *sdp_i_find_pipeline(sdp *s, const char *name, size_t len);
plw *sdp_i_waiter_new(void);
void sdp_i_waiter_free(plw *w);
/* Runs p's engine until it has nothing to do, then arms its timer. */
void sdp_i_pump(sdp_loop *p);
/* Starts a request (inputs and w taken, on success or not). */
int sdp_i_start(sdp *s, plw *w, const plreq *q, seldon_msg *inputs);
/* route's mirror copy of request q, decoded again from the caller's bytes. */
void sdp_i_mirror_bytes(sdp *s, const plreq *q, const sdp_route *route, const uint8_t *data,
                        size_t len, int json, size_t json_len);
/* A number of milliseconds; -1 when malformed. */
int64_t sdp_i_parse_ms(const char *v, size_t len);
int sdp_i_pipeline_ready(sdp *s, const seldon_pipeline *pl, int depth);

/* ---- plserve_grpc.c ---- */

/* One answer of a stream's request (with w's headers); drops the request's hold on c. */
void sdp_i_scall_answer(scall *c, plw *w, int32_t status, const char *message, seldon_buf *body);
void sdp_i_scall_unref(scall *c);

#endif
