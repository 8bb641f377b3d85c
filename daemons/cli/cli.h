/*
 * The seldon CLI: one libuv loop owned by main, driven call by call (each
 * call runs the loop until its answer is in). No threads.
 */
#ifndef SELDON_CLI_H
#define SELDON_CLI_H

#include <stdint.h>
#include <stdio.h>

#include <protobuf-c/protobuf-c.h>
#include <uv.h>

#include "h2.h"
#include "http_client.h"
#include "seldon/common.h"

#define CLI_HEADERS_MAX 32
#define CLI_KAFKA_ARGS_MAX 64

typedef struct cli_opts {
    const char *file;
    const char *wait_state;
    long timeout_s;
    char sched_host[300];
    char infer_host[300];
    const char *mode; /* "rest" or "grpc" */
    const char *headers[CLI_HEADERS_MAX];
    size_t nheaders;
    long iterations;
    int show_headers;
    int sticky; /* -s: send the first answer's x-seldon-route back on later requests */
    int timeout_given; /* -t was given (pipeline inspect has its own default) */
    /* pipeline inspect */
    long offset;            /* --offset: records per partition (default 1) */
    const char *request_id; /* --request-id */
    int json;               /* --format json */
    int verbose;            /* -v: headers too */
    /* --kafka-config KEY=VALUE ('p') and --kafka-config-file FILE ('f'), in order */
    const char *kafka_args[CLI_KAFKA_ARGS_MAX];
    char kafka_kinds[CLI_KAFKA_ARGS_MAX];
    size_t nkafka;
    const char *kafka_broker, *kafka_prefix, *kafka_ns;
} cli_opts;

typedef struct cli {
    cli_opts o;
    uv_loop_t loop;
    sd2_client *h2;
    sdc_pool *rest;
} cli;

/* The outcome of a call. */
typedef struct cli_result {
    int done;
    int32_t status; /* gRPC status; for REST: 0 when 2xx, else 2 */
    int http_status;
    char message[2048];
    seldon_buf body;    /* the (first) response message, or the REST body */
    seldon_buf headers; /* "name: value\n" lines, response headers and trailers */
    char route[256];    /* x-seldon-route, "" when absent */
} cli_result;

void cli_result_free(cli_result *r);

/* "host:port" (names resolved) into numeric host and port. 0, or -1 with a message. */
int cli_split_host(char *host, size_t cap, int *port, const char *hostport, char *why,
                   size_t why_cap);

/* A unary call of path on host:port ("/pkg.Service/Method"), req packed. Runs the loop. */
int cli_grpc(cli *c, cli_result *out, const char *hostport, const char *path, const uint8_t *req,
             size_t req_len, const sd2_header *extra, size_t nextra, uint64_t timeout_ms);

/* A call of the scheduler's SchedulerService. */
int cli_sched(cli *c, cli_result *out, const char *method, const ProtobufCMessage *req);

/* A REST call on the inference host. body may be NULL (GET). */
int cli_rest(cli *c, cli_result *out, const char *method, const char *target, const char *body,
             size_t len, const char *model);

/* Waits ms on the loop. */
void cli_sleep(cli *c, uint64_t ms);

/* infer.c */
/* pipeline: 1 to ask for pipeline `model` (seldon-model: <model>.pipeline). */
int cli_infer(cli *c, const char *model, const char *json, int pipeline);
int cli_metadata(cli *c, const char *model);

/* print.c: JSON on f */
void json_str(FILE *f, const char *s);
void json_time(FILE *f, int64_t unix_ms);
const char *cli_status_name(int32_t status);

#endif
