/*
 * seldon-modelgateway's parts: the gateway on its loop (gw.c), the scheduler's
 * route table as the list of models to serve (sub.c), the main (main.c).
 * Everything runs on one libuv loop, the gateway's; librdkafka's threads only
 * queue events for it.
 */
#ifndef MG_H
#define MG_H

#include <stdint.h>

#include <uv.h>

#include "h2.h"
#include "http_server.h"
#include "kafka.h"
#include "seldon/metrics.h"

#define MG_MODELS_MAX 4096

typedef struct job mg_call; /* a record's model call */

/*
 * A host that runs the models itself (seldon up --kafka) calls them without the router:
 * on the gateway's loop, call model with request (a ModelInferRequest whose model_name is
 * model; borrowed for the call) and answer with mg_call_done() once, on the loop, now or
 * later. Returns 0 (called), or MG_CALL_ROUTER: this one goes through the router as usual.
 */
#define MG_CALL_ROUTER 1
typedef int (*mg_call_fn)(void *user_data, mg_call *c, const char *model, const uint8_t *request,
                          size_t len);

/* The answer of a hooked call: ok with the ModelInferResponse bytes, or error's text. */
void mg_call_done(mg_call *c, int ok, const uint8_t *response, size_t len, const char *error);

typedef struct mg_config {
    const char *router_host;    /* HOST[:PORT] */
    const char *scheduler_host; /* HOST[:PORT], or NULL */
    const char **models;        /* --model, argv's */
    size_t nmodels;
    const char *group;
    int max_inflight;    /* per partition */
    uint64_t timeout_ms; /* per call */
    uint64_t grace_ms;   /* on SIGTERM */
    size_t max_message;  /* bytes of a response */
    int metrics_port;
    const char *host;
    int32_t log_level;
    sdk_config kafka;
    mg_call_fn call; /* NULL: every call through the router */
    void *call_data;
} mg_config;

typedef struct mg mg;
typedef struct mg_sub mg_sub;

/* The gateway: created and started on the loop's thread (mg_start posted there). */
int mg_new(mg **out, const mg_config *cfg, uv_loop_t *loop, seldon_metrics *metrics);
void mg_start(void *g);
/* Stops consuming; finishes the calls in flight (within the grace), commits, closes. done
 * runs on the loop when everything is closed. */
void mg_stop(mg *g, void (*done)(void *), void *arg);
void mg_free(mg *g);

/* The models served because the scheduler routes them (names copied); replaces the last set. */
void mg_route_models(mg *g, const char *const *names, size_t n);

/* On the loop: 1 when a partition of the model's inputs topic is assigned here. */
int mg_holds(mg *g, const char *model);

/* HOST[:PORT] (an IP address or a name; localhost is 127.0.0.1) into a numeric address:
 * 0, or -1 with nothing written. port keeps its value when the spec has none. */
int mg_parse_host(char *addr, size_t cap, int *port, const char *spec);

/* The route subscription (--scheduler-host), on the gateway's loop. */
int mg_sub_new(mg_sub **out, mg *g, uv_loop_t *loop, const char *host, int port);
void mg_sub_start(mg_sub *sub);
void mg_sub_close(mg_sub *sub);

#endif
