/*
 * Serving pipelines on a daemon's ingress loops: the glue between the
 * transports (REST on sdh, gRPC on sd2) and libseldon's pipeline engine,
 * shared by seldon-up (daemons/up/pipes.c) and seldon-pipelinegateway.
 *
 * One seldon_pipeline_engine per ingress loop (an sdl_loops the daemon
 * owns), each running the same compiled pipelines, so that a request stays
 * on the loop that accepted it and no lock sits on its path. What differs
 * between daemons is how a step calls its model: the host's `call` hook gets
 * an sdp_call (the model, the request message, the request's x-* headers)
 * and answers it later with sdp_call_done(), from any thread, with the
 * model's x-* answer headers. Everything else is here: the REST endpoints
 * (/infer, /ready, /requests/<id>), gRPC ModelInfer and ModelStreamInfer,
 * timeouts (seldon-timeout-ms, grpc-timeout, the default), the asynchronous
 * mode and its results store, error status mapping, x-request-id and the
 * x-* headers that travel along every step and back, the engine's timer.
 *
 * Which pipelines run comes from the control side: sdp_sync() with the
 * names, versions and specs that should run now (from the scheduler). It
 * compiles what is new, in the order of what reads what, and posts the
 * change to every loop.
 *
 * Thread safety: sdp_new() and sdp_free() on the controlling thread while
 * the loops are not running; sdp_sync() on one thread that is not an
 * ingress loop (the control loop); the request functions on the ingress
 * loop that received the request; sdp_call_done() from any thread.
 */
#ifndef SDP_PLSERVE_H
#define SDP_PLSERVE_H

#include <stddef.h>
#include <stdint.h>

#include "h2.h"
#include "http_server.h"
#include "loops.h"
#include "seldon/seldon.h"

typedef struct sdp sdp;
typedef struct sdp_call sdp_call;

/* A header: not NUL-terminated; borrowed for the call it is passed to. */
typedef struct sdp_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} sdp_header;

#define SDP_MAX_XHEADERS 32

typedef struct sdp_hooks {
    /*
     * Ingress loop: call the model of c (sdp_call_model) with its request
     * (sdp_call_msg; the host may set its model name) and fill
     * sdp_call_response(c); then sdp_call_done(c, ...) exactly once, now or
     * later, from any thread. A non-zero return fails the call with
     * seldon_last_error() (sdp_call_done must then not be called).
     */
    int (*call)(void *user_data, sdp_call *c);
    /* Ingress loop: 1 when model is available (for /ready). May be NULL. */
    int (*model_available)(void *user_data, const char *model);
    /* Requests answered, for the daemon's metrics (protocol "rest", "grpc" or "async"). */
    void (*count)(void *user_data, const char *protocol, int code);
    /*
     * Answers a gRPC request started with sdp_grpc() (ctx: the host's):
     * status 0 with response (the encoded ModelInferResponse, taken) or a
     * gRPC status and message. headers: the x-* headers to return.
     */
    void (*grpc_answer)(void *ctx, int32_t status, const char *message, seldon_buf *response,
                        const sdp_header *headers, size_t nheaders);
    /*
     * GET /v2/pipelines/<p>/requests/<id> for an id not kept here: the host
     * may answer req itself (another gateway may hold it) and return 1, or
     * return 0 for the 404. May be NULL.
     */
    int (*async_miss)(void *user_data, sdh_req *req, const sdh_request *r, const char *pipeline,
                      const char *id, size_t id_len);
} sdp_hooks;

typedef struct sdp_config {
    uint64_t timeout_ms; /* a request's default timeout; 0: none */
    uint32_t max_requests;
    uint32_t async_max; /* asynchronous results kept */
    uint64_t async_ttl_ms;
    size_t max_body; /* gRPC request messages */
} sdp_config;

/*
 * Creates the engines, one per loop of loops (timers attached to them),
 * before the loops run. Caller owns *out: sdp_close_loop() on each loop at
 * shutdown, then sdp_free() once the loops ended.
 */
int sdp_new(sdp **out, sdl_loops *loops, const sdp_config *cfg, const sdp_hooks *hooks,
            void *user_data);
void sdp_close_loop(sdp *s, int loop); /* on loop `loop`, at shutdown */
void sdp_free(sdp *s);

/* A pipeline that should run now. */
typedef struct sdp_spec {
    const char *name;
    uint32_t version;
    int32_t ready;    /* 1 ready, 0 not, -1 unknown: /ready asks the model_available hook */
    const char *spec; /* its Pipeline manifest (YAML or JSON), or NULL: spec_fn gives it */
    size_t spec_len;
    const char *why; /* when ready is 0: why, for /ready's answer (NULL: a model it needs) */
} sdp_spec;

typedef int (*sdp_spec_fn)(void *user_data, const char *name, const char **spec, size_t *len);

/*
 * Control side: these pipelines (and no other) run from now on. New names
 * and versions are compiled (a spec is only read for those, through spec_fn
 * when the entry has none) and added to every engine; the others are
 * removed (their requests end as unloaded), readers of a replaced pipeline
 * are compiled again against it. Returns 1 when something changed.
 */
int sdp_sync(sdp *s, const sdp_spec *specs, size_t n, sdp_spec_fn spec_fn, void *spec_data);

/* Pipelines compiled and running (control side). */
size_t sdp_count(const sdp *s);

/*
 * REST, on an ingress loop: /v2/pipelines/<p>/{infer,ready,requests/<id>}
 * and /v2/models/<x>/infer with seldon-model <p>.pipeline; name: <p>.
 */
void sdp_rest(sdp *s, sdh_req *req, const sdh_request *r, const char *name, size_t name_len);

/*
 * gRPC, on an ingress loop: one ModelInfer request message (data, len) for
 * pipeline name, answered through hooks.grpc_answer(ctx, ...). metadata: the
 * call's x-* metadata. Returns 0, or an error (nothing was started, the
 * hook is not called): SELDON_ENOTFOUND for an unknown pipeline, a decode
 * error.
 */
int sdp_grpc(sdp *s, void *ctx, const char *name, size_t name_len, const uint8_t *data, size_t len,
             int64_t timeout_ms, const sdp_header *metadata, size_t nmetadata);

/*
 * gRPC, on an ingress loop: a whole call to pipeline name (ModelInfer, or
 * ModelStreamInfer where every request of the stream is answered in turn),
 * from its header block h on. The stream is bound here and answered here.
 */
void sdp_grpc_stream(sdp *s, sd2_stream *st, const sd2_header *h, size_t n, int end,
                     const char *name, size_t name_len);

/*
 * How the host routed a request to a pipeline (an experiment's decision), for the
 * *_routed variants of the three calls above (NULL: as those calls).
 */
typedef struct sdp_route {
    /* 1: the answer's x-seldon-route ends with ":<p>.pipeline:" after the steps' values,
       as seldon-router appends it to a pipeline route's answers */
    int tag;
    /* A pipeline (its name, not NUL-terminated; borrowed for the call) that gets a copy of
       every request, its answer dropped; NULL: none. At most 64 copies are in flight in the
       process: past that, or when the mirror is not served here, a request gets no copy. */
    const char *mirror;
    size_t mirror_len;
} sdp_route;

void sdp_rest_routed(sdp *s, sdh_req *req, const sdh_request *r, const char *name, size_t name_len,
                     const sdp_route *route);
int sdp_grpc_routed(sdp *s, void *ctx, const char *name, size_t name_len, const uint8_t *data,
                    size_t len, int64_t timeout_ms, const sdp_header *metadata, size_t nmetadata,
                    const sdp_route *route);
void sdp_grpc_stream_routed(sdp *s, sd2_stream *st, const sd2_header *h, size_t n, int end,
                            const char *name, size_t name_len, const sdp_route *route);

/* ---- gRPC request messages (for plserve's calls and a host's own) ---- */

#define SDP_GRPC_PREFIX 5

/* The 5-byte prefix of an uncompressed gRPC message of n bytes. */
void sdp_grpc_prefix(uint8_t out[SDP_GRPC_PREFIX], size_t n);

/*
 * A call's request bytes until its messages are whole. in: the bytes not taken yet
 * (caller frees with seldon_buf_free); max: the largest message; streaming: 0 for a unary
 * call (exactly one message). On the stream's loop.
 */
typedef struct sdp_grpc_in {
    seldon_buf in;
    size_t max;
    int streaming;
} sdp_grpc_in;

/*
 * One whole message, b->data[off .. off + len): a unary call's ends b, so one may append
 * to b (and put b->len back). Returns 0 to go on, non-zero when the call ended (g may be
 * gone: sdp_grpc_in_drain() touches it no more).
 */
typedef int (*sdp_grpc_msg_fn)(void *user_data, seldon_buf *b, size_t off, size_t len);

/*
 * Received bytes: kept, and for a stream every message now whole goes to one() (as
 * sdp_grpc_in_drain). Returns 0, -1 when one() returned non-zero, or a gRPC status with
 * why (too large, out of memory...) to end the call with.
 */
int32_t sdp_grpc_in_data(sdp_grpc_in *g, const uint8_t *data, size_t len, sdp_grpc_msg_fn one,
                         void *user_data, const char **why);

/*
 * Hands every whole message to one(user_data, ...) and drops it. Returns 0, -1 when one()
 * returned non-zero, or a gRPC status with why (compressed, too large, a second message in
 * a unary call) to end the call with.
 */
int32_t sdp_grpc_in_drain(sdp_grpc_in *g, sdp_grpc_msg_fn one, void *user_data, const char **why);

/*
 * The client ended its side: a unary call's message goes to one() (as above). Returns 0
 * (for a stream: nothing is left over), -1 when one() returned non-zero, or a gRPC status
 * with why (no message, or the bytes of one left unfinished).
 */
int32_t sdp_grpc_in_end(sdp_grpc_in *g, sdp_grpc_msg_fn one, void *user_data, const char **why);

/* A grpc-timeout value ("100m", "5S") in ms; 0 when none or malformed. */
int64_t sdp_grpc_timeout_ms(const char *value, size_t len);

/* CLOCK_MONOTONIC in ns. */
int64_t sdp_mono_ns(void);

/* ---- step calls (for the call hook) ---- */
const char *sdp_call_model(const sdp_call *c);
const char *sdp_call_pipeline(const sdp_call *c);
/* The request to send: the engine's, valid until sdp_call_done(). */
seldon_msg *sdp_call_msg(sdp_call *c);
/* Where the answer goes (a response message the engine gave). */
seldon_msg *sdp_call_response(sdp_call *c);
/* The request's x-* headers (x-request-id first): valid during the call hook only. */
size_t sdp_call_headers(const sdp_call *c, const sdp_header **out);
/* The call's deadline in sdp_mono_ns() time, 0 when none. */
int64_t sdp_call_deadline(const sdp_call *c);
/* The host's pointer, for its own bookkeeping. */
void sdp_call_set_host(sdp_call *c, void *host);
void *sdp_call_host(const sdp_call *c);
/*
 * The model answered (status 0, the response filled) or failed (a non-zero
 * status, message: its text). headers: the model's x-* answer headers
 * (copied), merged into the pipeline's answer. Any thread; exactly once.
 */
void sdp_call_done(sdp_call *c, int32_t status, const char *message, const sdp_header *headers,
                   size_t nheaders);
/*
 * The call failed and so does its request, with kind (a SELDON_PIPELINE_ERR_*)
 * and message as they are, rather than as a step's error "<model> : <message>":
 * for a host whose "model" is a whole pipeline run elsewhere (the gateway's
 * Kafka mode), whose error names its own model. A timeout of the request
 * itself still ends it as a timeout. Any thread; instead of sdp_call_done.
 */
void sdp_call_fail_as(sdp_call *c, int32_t kind, const char *message);

#endif
