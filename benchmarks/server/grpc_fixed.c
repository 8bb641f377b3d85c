/*
 * grpc_fixed: the gRPC limit of this machine, for the seldon-server
 * benchmark. A gRPC-core server (C API) with one registered method,
 * inference.GRPCInferenceService/ModelInfer, that answers every call with
 * the same pre-encoded ModelInferResponse, read once from a file (the driver
 * saves seldon-server's own answer there, so both send the same bytes).
 *
 *   bench_grpc_fixed --response FILE [--port N] [--host ADDR] [--threads N]
 *
 * Prints "listening grpc=PORT" on stdout once serving, and runs until
 * SIGTERM or SIGINT.
 *
 * Shape: one completion queue per thread, each registered with the server
 * and holding AHEAD calls requested in advance. The request message arrives
 * with the call (GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER), is dropped
 * unread, and the reply goes out as one batch: initial metadata, the
 * message, status OK, and close. That is the least work gRPC core allows
 * per unary call; nothing is decoded or encoded.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/time.h>

#define METHOD "/inference.GRPCInferenceService/ModelInfer"
#define AHEAD 32
#define MAX_THREADS 64

typedef struct slot {
    struct queue *q;
    grpc_call *call;
    gpr_timespec deadline;
    grpc_metadata_array meta;
    grpc_byte_buffer *payload;
    int recv_cancelled;
    int replying; /* 0: waiting for a call, 1: the reply batch is in flight */
} slot;

typedef struct queue {
    grpc_completion_queue *cq;
    pthread_t thread;
    slot slots[AHEAD];
} queue;

static grpc_server *server;
static void *method;
static grpc_slice response; /* the serialized ModelInferResponse */

static void request_call(slot *s)
{
    grpc_call_error err;
    s->replying = 0;
    s->call = NULL;
    s->payload = NULL;
    grpc_metadata_array_init(&s->meta);
    err = grpc_server_request_registered_call(server, method, &s->call, &s->deadline, &s->meta,
                                              &s->payload, s->q->cq, s->q->cq, s);
    if (err != GRPC_CALL_OK)
        fprintf(stderr, "bench_grpc_fixed: request_registered_call: %d\n", (int)err);
}

static void reply(slot *s)
{
    grpc_op ops[4];
    grpc_byte_buffer *msg = grpc_raw_byte_buffer_create(&response, 1);
    grpc_call_error err;

    memset(ops, 0, sizeof(ops));
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = msg;
    ops[2].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[2].data.send_status_from_server.status = GRPC_STATUS_OK;
    ops[3].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[3].data.recv_close_on_server.cancelled = &s->recv_cancelled;
    s->replying = 1;
    err = grpc_call_start_batch(s->call, ops, 4, s, NULL);
    /* gRPC core holds its own reference to the message's slices. */
    grpc_byte_buffer_destroy(msg);
    if (err != GRPC_CALL_OK) {
        fprintf(stderr, "bench_grpc_fixed: start_batch: %d\n", (int)err);
        grpc_call_unref(s->call);
        request_call(s);
    }
}

static void *queue_main(void *arg)
{
    queue *q = arg;
    int i;
    for (i = 0; i < AHEAD; i++) {
        q->slots[i].q = q;
        request_call(&q->slots[i]);
    }
    for (;;) {
        grpc_event ev =
            grpc_completion_queue_next(q->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        slot *s;
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        s = ev.tag;
        if (!s->replying) {
            grpc_metadata_array_destroy(&s->meta);
            if (s->payload != NULL)
                grpc_byte_buffer_destroy(s->payload);
            if (!ev.success) /* the server is shutting down */
                continue;
            reply(s);
        } else {
            grpc_call_unref(s->call);
            request_call(s);
        }
    }
    return NULL;
}

static grpc_slice read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;
    grpc_slice sl;
    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
        fseek(f, 0, SEEK_SET) != 0) {
        perror(path);
        exit(1);
    }
    buf = malloc((size_t)n + 1);
    if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        perror(path);
        exit(1);
    }
    fclose(f);
    sl = grpc_slice_from_copied_buffer(buf, (size_t)n);
    free(buf);
    return sl;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_grpc_fixed --response FILE [--port N] [--host ADDR] [--threads N]\n");
}

int main(int argc, char **argv)
{
    const char *path = NULL, *host = "127.0.0.1";
    int port = 0, threads = 2, bound, i, sig;
    char addr[128];
    grpc_server_credentials *creds;
    queue *queues;
    sigset_t sigs;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--response") == 0 && i + 1 < argc) {
            path = argv[++i];
        } else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            port = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--host") == 0 && i + 1 < argc) {
            host = argv[++i];
        } else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            threads = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (path == NULL || threads < 1 || threads > MAX_THREADS) {
        usage(stderr);
        return 2;
    }

    /* Every thread inherits the mask; main takes the signal with sigwait. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    grpc_init();
    response = read_file(path);
    server = grpc_server_create(NULL, NULL);
    method = grpc_server_register_method(server, METHOD, NULL,
                                         GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
    queues = calloc((size_t)threads, sizeof(*queues));
    if (method == NULL || queues == NULL) {
        fprintf(stderr, "bench_grpc_fixed: set-up failed\n");
        return 1;
    }
    for (i = 0; i < threads; i++) {
        queues[i].cq = grpc_completion_queue_create_for_next(NULL);
        grpc_server_register_completion_queue(server, queues[i].cq, NULL);
    }
    snprintf(addr, sizeof(addr), "%s:%d", host, port);
    creds = grpc_insecure_server_credentials_create();
    bound = grpc_server_add_http2_port(server, addr, creds);
    grpc_server_credentials_release(creds);
    if (bound <= 0) {
        fprintf(stderr, "bench_grpc_fixed: cannot listen on %s\n", addr);
        return 1;
    }
    grpc_server_start(server);
    for (i = 0; i < threads; i++)
        pthread_create(&queues[i].thread, NULL, queue_main, &queues[i]);
    printf("listening grpc=%d\n", bound);
    fflush(stdout);

    sigwait(&sigs, &sig);
    {
        grpc_completion_queue *done = grpc_completion_queue_create_for_pluck(NULL);
        grpc_server_shutdown_and_notify(server, done, NULL);
        grpc_server_cancel_all_calls(server);
        grpc_completion_queue_pluck(done, NULL, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
        grpc_completion_queue_destroy(done);
    }
    for (i = 0; i < threads; i++)
        grpc_completion_queue_shutdown(queues[i].cq);
    for (i = 0; i < threads; i++) {
        pthread_join(queues[i].thread, NULL);
        grpc_completion_queue_destroy(queues[i].cq);
    }
    grpc_server_destroy(server);
    grpc_slice_unref(response);
    free(queues);
    grpc_shutdown();
    return 0;
}
