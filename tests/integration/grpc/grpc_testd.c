/*
 * A daemon that exercises the gRPC transport for test_grpc.py:
 *
 *   ServerLive        answers ServerLiveResponse{live: true}
 *   ModelInfer        echoes the request; metadata "x-fail: N" fails with
 *                     status N, "x-delay-ms: N" answers from another thread
 *                     after N ms (and prints "delaying <id>" when queued)
 *   ModelStreamInfer  echoes each message of a stream; "x-fail: N" fails it
 *                     after the first echo, "x-delay-ms: N" echoes each message
 *                     from another thread after N ms
 *
 * Metadata, on both: "x-route: V" is answered with initial metadata
 * "x-seldon-route: V", "x-request-keys" (the request's metadata keys in order,
 * comma-separated, read through the list API) and "x-bad-key-rc" (what adding
 * an invalid key returned), and with trailing metadata "x-trailer: done".
 *
 * Usage: grpc_testd [--port N] [--threads N] [--max-message N]
 * Prints "listening on <port>" once serving; SIGTERM or SIGINT stops it
 * gracefully (calls in flight finish) and it exits 0.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/status.h>

#include "grpc_server.h"

#define SERVICE "/inference.GRPCInferenceService/"

/* Calls waiting to be answered by the delay thread, earliest first. */
struct delayed {
    struct delayed *next;
    struct timespec due;
    sdg_call *call;
    int stream; /* a stream message: write it and release the hold */
    seldon_buf response;
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct delayed *head;
    int quit;
    unsigned long next_id;
} g_delay = {.mu = PTHREAD_MUTEX_INITIALIZER}; /* cv is set up in main() */

static int ts_before(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

static void *delay_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&g_delay.mu);
    for (;;) {
        struct timespec now;
        struct delayed *d = g_delay.head;
        if (d == NULL) {
            if (g_delay.quit)
                break;
            pthread_cond_wait(&g_delay.cv, &g_delay.mu);
            continue;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (!g_delay.quit && ts_before(&now, &d->due)) {
            pthread_cond_timedwait(&g_delay.cv, &g_delay.mu, &d->due);
            continue;
        }
        g_delay.head = d->next;
        pthread_mutex_unlock(&g_delay.mu);
        /* Answering from this thread is the point: the transport must accept it. */
        if (d->stream) {
            sdg_stream_write(d->call, &d->response);
            sdg_call_release(d->call);
        } else {
            sdg_reply(d->call, &d->response);
        }
        free(d);
        pthread_mutex_lock(&g_delay.mu);
    }
    pthread_mutex_unlock(&g_delay.mu);
    return NULL;
}

/* Stream messages come with a hold on call, which the delay thread releases. */
static void delay_reply(sdg_call *call, int stream, seldon_buf *response, long ms)
{
    struct delayed *d = calloc(1, sizeof(*d));
    struct delayed **p;
    unsigned long id;

    if (d == NULL) {
        seldon_buf_free(response);
        sdg_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        if (stream)
            sdg_call_release(call);
        return;
    }
    clock_gettime(CLOCK_MONOTONIC, &d->due);
    d->due.tv_sec += ms / 1000;
    d->due.tv_nsec += (ms % 1000) * 1000000L;
    if (d->due.tv_nsec >= 1000000000L) {
        d->due.tv_sec++;
        d->due.tv_nsec -= 1000000000L;
    }
    d->call = call;
    d->stream = stream;
    d->response = *response;
    *response = (seldon_buf)SELDON_BUF_INIT;

    pthread_mutex_lock(&g_delay.mu);
    for (p = &g_delay.head; *p != NULL && !ts_before(&d->due, &(*p)->due); p = &(*p)->next)
        ;
    d->next = *p;
    *p = d;
    id = ++g_delay.next_id;
    pthread_cond_signal(&g_delay.cv);
    pthread_mutex_unlock(&g_delay.mu);
    /* Tests wait for this line to know the call is in the server's hands. */
    printf("delaying %lu\n", id);
    fflush(stdout);
}

/* A metadata value as a number; def when absent or malformed. */
static long metadata_long(sdg_call *call, const char *key, long def)
{
    char text[32], *end;
    size_t len = 0;
    const char *v = sdg_call_metadata(call, key, &len);
    long n;

    if (v == NULL || len == 0 || len >= sizeof(text))
        return def;
    memcpy(text, v, len);
    text[len] = '\0';
    errno = 0;
    n = strtol(text, &end, 10);
    return errno == 0 && *end == '\0' ? n : def;
}

/* The response metadata asked for by "x-route" (see the top of the file). */
static void answer_metadata(sdg_call *call)
{
    char keys[1024], rc_text[16];
    size_t len = 0, off = 0, i, n = sdg_call_metadata_count(call);
    const char *route = sdg_call_metadata(call, "x-route", &len);

    if (route == NULL)
        return;
    sdg_call_add_metadata(call, 0, "x-seldon-route", route, len);
    keys[0] = '\0';
    for (i = 0; i < n; i++) {
        const char *k, *v;
        size_t kl, vl;
        if (sdg_call_metadata_at(call, i, &k, &kl, &v, &vl) != 0 || off + kl + 2 >= sizeof(keys))
            break;
        if (off > 0)
            keys[off++] = ',';
        memcpy(keys + off, k, kl);
        off += kl;
        keys[off] = '\0';
    }
    sdg_call_add_metadata(call, 0, "x-request-keys", keys, off);
    snprintf(rc_text, sizeof(rc_text), "%d", sdg_call_add_metadata(call, 0, "Bad Key", "v", 1));
    sdg_call_add_metadata(call, 0, "x-bad-key-rc", rc_text, strlen(rc_text));
    sdg_call_add_metadata(call, 1, "x-trailer", "done", 4);
}

static int copy_bytes(seldon_buf *buf, const uint8_t *p, size_t len)
{
    if (len > 0 && seldon_buf_reserve(buf, len) < 0)
        return -1;
    if (len > 0)
        memcpy(buf->data, p, len);
    buf->len = len;
    return 0;
}

static void server_live(void *user_data, sdg_call *call, const uint8_t *req, size_t len)
{
    static const uint8_t live[] = {0x08, 0x01}; /* ServerLiveResponse{live: true} */
    seldon_buf buf = SELDON_BUF_INIT;

    (void)user_data;
    (void)req;
    (void)len;
    if (copy_bytes(&buf, live, sizeof(live)) < 0) {
        sdg_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    sdg_reply(call, &buf);
}

static void model_infer(void *user_data, sdg_call *call, const uint8_t *req, size_t len)
{
    seldon_buf buf = SELDON_BUF_INIT;
    long fail = metadata_long(call, "x-fail", -1);
    long delay = metadata_long(call, "x-delay-ms", -1);

    (void)user_data;
    answer_metadata(call);
    if (fail >= 0) {
        sdg_fail(call, (int)fail, "failing as asked");
        return;
    }
    if (copy_bytes(&buf, req, len) < 0) {
        sdg_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    if (delay >= 0) {
        delay_reply(call, 0, &buf, delay);
        return;
    }
    sdg_reply(call, &buf);
}

/*
 * Echoes each message. With "x-fail: N" the stream fails with status N after
 * the first echo; with "x-delay-ms: N" each echo comes from the delay thread,
 * the way a model answering asynchronously would.
 */
static void stream_infer(void *user_data, sdg_call *call, const uint8_t *req, size_t len)
{
    seldon_buf buf = SELDON_BUF_INIT;
    long fail = metadata_long(call, "x-fail", -1);
    long delay = metadata_long(call, "x-delay-ms", -1);

    (void)user_data;
    if (sdg_call_user(call) == NULL) {
        /* The first message: the metadata goes out with the first reply. */
        sdg_call_set_user(call, call);
        answer_metadata(call);
    }
    if (copy_bytes(&buf, req, len) < 0) {
        sdg_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
        return;
    }
    if (delay >= 0) {
        sdg_call_hold(call);
        delay_reply(call, 1, &buf, delay);
        return;
    }
    sdg_stream_write(call, &buf);
    if (fail >= 0)
        sdg_fail(call, (int)fail, "failing as asked");
}

static int parse_arg(const char *flag, const char *value, long min, long *out)
{
    char *end;
    long n;

    if (value == NULL) {
        fprintf(stderr, "grpc_testd: %s needs a value\n", flag);
        return -1;
    }
    errno = 0;
    n = strtol(value, &end, 10);
    if (errno != 0 || *end != '\0' || n < min) {
        fprintf(stderr, "grpc_testd: %s: bad value %s\n", flag, value);
        return -1;
    }
    *out = n;
    return 0;
}

int main(int argc, char **argv)
{
    static const sdg_method methods[] = {
        {SERVICE "ServerLive", 0, server_live, NULL, NULL},
        {SERVICE "ModelInfer", 0, model_infer, NULL, NULL},
        {SERVICE "ModelStreamInfer", 1, stream_infer, NULL, NULL},
    };
    long port = 0, threads = 2, max_message = 0;
    char address[64];
    sdg_config cfg;
    sdg_server *server = NULL;
    pthread_t delay_thread;
    pthread_condattr_t cattr;
    sigset_t sigs;
    int sig, rc;

    for (int i = 1; i < argc; i++) {
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--port") == 0)
            rc = parse_arg(argv[i], value, 0, &port);
        else if (strcmp(argv[i], "--threads") == 0)
            rc = parse_arg(argv[i], value, 1, &threads);
        else if (strcmp(argv[i], "--max-message") == 0)
            rc = parse_arg(argv[i], value, 0, &max_message);
        else {
            fprintf(stderr, "usage: grpc_testd [--port N] [--threads N] [--max-message N]\n");
            return 2;
        }
        if (rc < 0 || port > 65535)
            return 2;
        i++;
    }

    /* Blocked here, so every thread started later inherits the mask and sigwait() gets them. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    /* Due times are on the monotonic clock; the condition variable must wait on it too. */
    pthread_condattr_init(&cattr);
    pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
    pthread_cond_init(&g_delay.cv, &cattr);
    pthread_condattr_destroy(&cattr);
    if (pthread_create(&delay_thread, NULL, delay_main, NULL) != 0) {
        fprintf(stderr, "grpc_testd: cannot start the delay thread\n");
        return 1;
    }

    snprintf(address, sizeof(address), "127.0.0.1:%ld", port);
    memset(&cfg, 0, sizeof(cfg));
    cfg.address = address;
    cfg.threads = (int)threads;
    cfg.max_message = (size_t)max_message;
    cfg.methods = methods;
    cfg.nmethods = sizeof(methods) / sizeof(methods[0]);
    rc = sdg_server_start(&server, &cfg);
    if (rc < 0) {
        fprintf(stderr, "grpc_testd: %s: %s\n", seldon_strerror(rc), seldon_last_error());
    } else {
        printf("listening on %d\n", sdg_server_port(server));
        fflush(stdout);
        sigwait(&sigs, &sig);
        sdg_server_stop(server, 30000);
    }

    pthread_mutex_lock(&g_delay.mu);
    g_delay.quit = 1;
    pthread_cond_signal(&g_delay.cv);
    pthread_mutex_unlock(&g_delay.mu);
    pthread_join(delay_thread, NULL);
    sdg_server_free(server);
    return rc < 0 ? 1 : 0;
}
