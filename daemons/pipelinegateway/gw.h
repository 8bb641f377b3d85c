/*
 * seldon-pipelinegateway: pipelines served outside seldon up. It subscribes
 * to the scheduler for the pipelines to serve (RouteService/
 * SubscribePipelines, sub.c), runs them on libseldon's pipeline engine
 * through the serving glue seldon up uses too (daemons/common/plserve.c),
 * and calls every step's model through seldon-router (call.c), which
 * balances, retries and ejects as it does for any client. One port serves
 * REST and gRPC (h2c); routers reach it through the routes "<p>.pipeline"
 * that the scheduler publishes with the connected gateways as upstreams.
 *
 * Threads: the main thread owns the loops and takes signals. A request, its
 * engine, its step calls and their connections belong to the ingress loop
 * that accepted it. The subscription runs on a control loop of its own.
 */
#ifndef GW_H
#define GW_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <uv.h>

#include "h2.h"
#include "http_client.h"
#include "http_server.h"
#include "kafka.h"
#include "kgw.h"
#include "loops.h"
#include "plserve.h"
#include "seldon/seldon.h"

typedef struct gw_config {
    const char *host;
    int port;
    int metrics_port;
    int io_threads;
    const char *scheduler_host; /* "HOST[:PORT]" of the RouteService */
    const char *router;         /* "HOST:PORT" of the seldon-router steps call */
    const char *advertise;      /* "HOST:PORT" routers reach this gateway at */
    const char *name;
    size_t max_body;
    uint64_t idle_timeout_ms;
    uint64_t grace_ms;
    uint64_t resubscribe_max_ms;
    uint64_t pipeline_timeout_ms;
    uint32_t pipeline_max_requests;
    uint32_t pipeline_async_max;
    uint64_t pipeline_async_ttl_ms;
    int32_t log_level;
    int kafka;               /* --kafka: pipelines run on seldon-dataflow, over Kafka */
    const char *kafka_group; /* the gateways' consumer group */
} gw_config;

typedef struct gw gw;
typedef struct gw_sub gw_sub;
typedef struct sdkg gw_kafka; /* daemons/common/kgw.h */

#define GW_MAX_PEERS 64
#define GW_PEER_HEADER "seldon-gateway-peer" /* a result asked by another gateway */

/* What one ingress loop owns; its thread only. */
typedef struct gw_loop {
    gw *g;
    int index;
    uv_loop_t *loop;
    sd2_server *h2;
    sd2_server *h2_draining;
    sd2_client *h2c;            /* to the router */
    sd2_upstream *up;           /* the router's pool */
    struct gw_peer_pool *peers; /* HTTP/1.1 pools to other gateways (async results) */
    int closing;
} gw_loop;

struct gw {
    gw_config cfg;
    char router_host[64];
    int router_port;
    char router_authority[80];
    char advertise[300];
    sdl_loops *loops;
    gw_loop *per_loop;
    int nloops;
    sdh_server *http;
    sdh_server *metrics_http;
    sdp *pls;
    sdl_loops *ctl;
    gw_sub *sub;
    sdk_config kcfg; /* --kafka-* */
    gw_kafka *kafka; /* Kafka mode: on the control loop */
    /* the other gateways (from the scheduler), for async results kept there */
    pthread_mutex_t peers_mu;
    char peers[GW_MAX_PEERS][64];
    size_t npeers;
    /* metrics */
    seldon_metrics *metrics;
    seldon_metric *m_requests;  /* {protocol, code} */
    seldon_metric *m_steps;     /* {code}: step calls through the router */
    seldon_series *m_connected; /* the subscription is up */
    seldon_series *m_pipelines; /* pipelines served */
};

int64_t gw_now_ns(void);
gw_loop *gw_current(void);
void gw_count(gw *g, const char *protocol, int code);
void gw_count_step(gw *g, int code);
int gw_parse_hostport(char *host, size_t cap, int *port, const char *spec, int default_port);

/* call.c: a step's model call through the router (the plserve call hook). */
int gw_step_call(void *user_data, sdp_call *c);
/* call.c: GET /v2/pipelines/<p>/requests/<id> asked of the other gateways in turn. */
int gw_async_miss(void *user_data, sdh_req *req, const sdh_request *r, const char *pipeline,
                  const char *id, size_t id_len);
void gw_peers_close(gw_loop *L);

/* sub.c: the subscription, on the control loop (post start and close to it). */
int gw_sub_new(gw_sub **out, gw *g, uv_loop_t *loop);
void gw_sub_start(void *sub);
void gw_sub_close(void *sub);

/*
 * kafka.c, Kafka mode: the call hook (produce the request, wait for its record),
 * on the control loop the client (new, subscribe to the pipelines' outputs
 * topics, close) and the one-step spec a pipeline is served as here.
 */
int gw_kafka_call(void *user_data, sdp_call *c);
int gw_kafka_new(gw_kafka **out, gw *g, uv_loop_t *loop);
void gw_kafka_subscribe(gw_kafka *k, const char *const *pipelines, size_t n);
void gw_kafka_close(void *k);
int gw_kafka_spec(seldon_buf *out, const char *pipeline);

#endif
