/*
 * The model gateway on its loop: records of the model input topics in, a
 * ModelInfer call through the router for each, the answer (or an error record)
 * out, and the input's offset committed only once that is acknowledged.
 *
 * A record's life: consumed (sdk hands it over) -> waiting, when its partition
 * already has --max-inflight calls (the partition is then paused) -> called
 * (gRPC over h2c to the router, seldon-model: <model>, --timeout) -> produced
 * (the answer to the model's outputs topic, or an error record to the errors
 * topic; same key, so the key's partition) -> delivered (the broker has it)
 * -> done: sdk_consumer_done lets the commit pass it. A failed delivery is
 * produced again; nothing is done until it is delivered. docs/modelgateway.md
 * says what a crash between any two of these steps does.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http_client.h"
#include "mg.h"
#include "sdd.h"
#include "seldon/kafka.h"

#define INFER_PATH "/inference.GRPCInferenceService/ModelInfer"
#define MAX_FWD_HEADERS 64 /* x-* headers forwarded to the router per call */
#define MAX_ANSWER_HEADERS 32
#define RETRY_MS 200 /* a record the producer refused is tried again after this */
#define FLUSH_MS 10000

typedef struct mg_part {
    char *topic;
    int32_t partition;
    int inflight; /* jobs started and not finished */
    int paused;
    int revoked; /* kept while jobs of it run */
    struct job *wait_head, *wait_tail;
    struct mg_part *next;
} mg_part;

typedef struct job {
    mg *g;
    rd_kafka_message_t *m;
    mg_part *part;
    char model[SELDON_KAFKA_TOPIC_MAX + 1];
    sd2_stream *s;
    seldon_buf buf;                      /* the request frame, then the response bytes */
    char *ans_h[MAX_ANSWER_HEADERS * 2]; /* x-* headers of the answer: name, value */
    size_t nans;
    int status_seen;
    int32_t grpc_status;
    int failed; /* the record to produce is an error record */
    int rest;   /* called over REST: the answer is the whole body, no gRPC frame */
    int http_status;
    sdc_request *rq;
    char err[512];
    int64_t t0;
    struct job *next; /* waiting list, or retry list */
} job;

struct mg {
    mg_config cfg;
    uv_loop_t *loop;
    char router_addr[64];
    int router_port;
    char authority[300];
    sd2_client *h2c;
    sd2_upstream *up;
    sdc_pool *pool; /* REST, for records that are JSON rather than protobuf */
    sdk_consumer *consumer;
    sdk_producer *producer;
    mg_sub *sub;
    mg_part *parts;
    char **route_models;
    size_t nroute_models;
    char **topics; /* subscribed now */
    size_t ntopics;
    size_t jobs; /* alive, waiting ones included */
    job *retry_head, *retry_tail;
    uv_timer_t retry_timer;
    uv_timer_t grace_timer;
    int stopping, hard;
    int closing_left;
    void (*done)(void *);
    void *done_arg;
    seldon_series *m_ok, *m_err, *m_inflight, *m_partitions, *m_models, *m_retries, *m_seconds;
};

static void start(job *j);
static void retry_due(uv_timer_t *t);
static void produce(job *j);
static void close_all(mg *g);
static void grace_over(uv_timer_t *t);

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ------------------------------------------------------------ partitions */

static mg_part *get_part(mg *g, const char *topic, int32_t partition, int create)
{
    mg_part *p;
    for (p = g->parts; p != NULL; p = p->next)
        if (p->partition == partition && strcmp(p->topic, topic) == 0)
            return p;
    if (!create)
        return NULL;
    p = sdd_calloc(1, sizeof(*p));
    if (p == NULL || (p->topic = sdd_strndup(topic, strlen(topic))) == NULL) {
        sdd_free(p);
        return NULL;
    }
    p->partition = partition;
    p->next = g->parts;
    g->parts = p;
    return p;
}

static void set_paused(mg *g, mg_part *p, int pause)
{
    if (p->paused == pause || g->consumer == NULL)
        return;
    p->paused = pause;
    sdk_consumer_pause(g->consumer, p->topic, p->partition, pause);
}

static void job_free(job *j)
{
    size_t i;
    if (j->m != NULL)
        rd_kafka_message_destroy(j->m);
    for (i = 0; i < j->nans * 2; i++)
        sdd_free(j->ans_h[i]);
    seldon_buf_free(&j->buf);
    sdd_free(j);
}

/* Starts waiting jobs while the partition has room; resumes it once nothing waits. */
static void pump(mg *g, mg_part *p)
{
    while (p->wait_head != NULL && p->inflight < g->cfg.max_inflight && !g->stopping) {
        job *j = p->wait_head;
        p->wait_head = j->next;
        if (p->wait_head == NULL)
            p->wait_tail = NULL;
        j->next = NULL;
        start(j);
    }
    if (p->wait_head == NULL && p->inflight < g->cfg.max_inflight && !p->revoked && !g->stopping)
        set_paused(g, p, 0);
}

/* A job leaves: its partition gets room, the gateway may finish stopping. */
static void finish(job *j)
{
    mg *g = j->g;
    mg_part *p = j->part;
    job_free(j);
    g->jobs--;
    p->inflight--;
    seldon_series_add(g->m_inflight, -1);
    if (!g->hard)
        pump(g, p);
    /* Not from here: this may run inside a client's callback, which must not close it. */
    if (g->stopping && !g->hard && g->jobs == 0)
        uv_timer_start(&g->grace_timer, grace_over, 0, 0);
}

/* Waiting jobs of p are dropped (not started: whoever consumes p next does them). */
static void drop_waiting(mg *g, mg_part *p)
{
    while (p->wait_head != NULL) {
        job *j = p->wait_head;
        p->wait_head = j->next;
        job_free(j);
        g->jobs--;
    }
    p->wait_tail = NULL;
}

/* ------------------------------------------------------------ the call */

static void SDD_PRINTF(2, 3) fail(job *j, const char *fmt, ...)
{
    va_list ap;
    if (j->failed)
        return;
    j->failed = 1;
    va_start(ap, fmt);
    vsnprintf(j->err, sizeof(j->err), fmt, ap);
    va_end(ap);
}

static int printable(const void *v, size_t len)
{
    const unsigned char *s = v;
    size_t i;
    for (i = 0; i < len; i++)
        if (s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

static void keep_answer_header(job *j, const sd2_header *h)
{
    if (j->nans == MAX_ANSWER_HEADERS || !seldon_kafka_header_from_answer(h->name, h->name_len))
        return;
    j->ans_h[j->nans * 2] = sdd_strndup(h->name, h->name_len);
    j->ans_h[j->nans * 2 + 1] = sdd_strndup(h->value, h->value_len);
    if (j->ans_h[j->nans * 2] == NULL || j->ans_h[j->nans * 2 + 1] == NULL) {
        sdd_free(j->ans_h[j->nans * 2]);
        sdd_free(j->ans_h[j->nans * 2 + 1]);
        return;
    }
    j->nans++;
}

static void grpc_status(job *j, const sd2_header *h, size_t n)
{
    const sd2_header *st = sd2_header_find(h, n, "grpc-status");
    const sd2_header *msg = sd2_header_find(h, n, "grpc-message");
    char code[16], text[400];
    if (st == NULL)
        return;
    j->status_seen = 1;
    snprintf(code, sizeof(code), "%.*s", (int)(st->value_len > 8 ? 8 : st->value_len), st->value);
    j->grpc_status = (int32_t)atoi(code);
    if (j->grpc_status != 0) {
        snprintf(text, sizeof(text), "%.*s",
                 msg ? (int)(msg->value_len > 380 ? 380 : msg->value_len) : 0,
                 msg ? msg->value : "");
        fail(j, "%s (grpc-status %s)", text[0] ? text : "the model failed", code);
    }
}

static void on_headers(sd2_stream *s, void *user_data, const sd2_header *h, size_t n, int end)
{
    job *j = user_data;
    const sd2_header *st = sd2_header_find(h, n, ":status");
    size_t i;
    (void)s;
    if (st == NULL || st->value_len != 3 || memcmp(st->value, "200", 3) != 0) {
        char v[16];
        snprintf(v, sizeof(v), "%.*s", st ? (int)(st->value_len > 8 ? 8 : st->value_len) : 1,
                 st ? st->value : "?");
        fail(j, "the router answered HTTP %s", v);
    }
    for (i = 0; i < n; i++)
        keep_answer_header(j, &h[i]);
    if (end)
        grpc_status(j, h, n);
}

static void on_data(sd2_stream *s, void *user_data, const uint8_t *data, size_t len)
{
    job *j = user_data;
    sd2_consume(s, len);
    if (j->failed || len == 0)
        return;
    if (j->buf.len + len > j->g->cfg.max_message + 5) {
        char lim[32];
        snprintf(lim, sizeof(lim), "%zu", j->g->cfg.max_message);
        fail(j, "the answer is larger than --max-message (%s bytes)", lim);
        sd2_reset(s, SD2_H2_CANCEL);
        return;
    }
    if (seldon_buf_reserve(&j->buf, len) != 0) {
        fail(j, "out of memory");
        sd2_reset(s, SD2_H2_CANCEL);
        return;
    }
    memcpy(j->buf.data + j->buf.len, data, len);
    j->buf.len += len;
}

static void on_end(sd2_stream *s, void *user_data, const sd2_header *trailers, size_t n)
{
    size_t i;
    job *j = user_data;
    (void)s;
    for (i = 0; i < n; i++)
        keep_answer_header(j, &trailers[i]);
    grpc_status(j, trailers, n);
}

static void on_drain(sd2_stream *s, void *user_data)
{
    (void)s;
    (void)user_data;
}

static void on_close(sd2_stream *s, void *user_data, int err, uint32_t h2_code)
{
    job *j = user_data;
    mg *g = j->g;
    char ms[32];
    (void)s;
    (void)h2_code;
    j->s = NULL;
    if (g->hard) { /* shutting down: not done, so consumed again by whoever comes next */
        finish(j);
        return;
    }
    seldon_series_observe(g->m_seconds, (double)(now_ns() - j->t0) / 1e9);
    if (err == SD2_ETIMEOUT) {
        snprintf(ms, sizeof(ms), "%llu", (unsigned long long)g->cfg.timeout_ms);
        fail(j, "no answer from the model within --timeout (%s ms)", ms);
    } else if (err != SD2_OK && !j->status_seen) {
        fail(j, "router %s: %s", g->authority, sd2_strerror(err));
    } else if (!j->status_seen) {
        fail(j, "the router's answer has no grpc-status");
    }
    if (!j->failed) {
        uint32_t mlen = 0;
        if (j->buf.len >= 5)
            mlen = (uint32_t)j->buf.data[1] << 24 | (uint32_t)j->buf.data[2] << 16 |
                   (uint32_t)j->buf.data[3] << 8 | j->buf.data[4];
        if (j->buf.len < 5 || j->buf.data[0] != 0 || (size_t)mlen + 5 != j->buf.len)
            fail(j, "the answer is not one uncompressed gRPC message");
    }
    produce(j);
}

static const sd2_stream_cbs call_cbs = {on_headers, on_data, on_end, on_drain, on_close};

/* ------------------------------------------------------------ REST */

/* As upstream: a value that is not protobuf but JSON goes over REST, as it is. */
static int json_value(const void *v, size_t len)
{
    const unsigned char *s = v;
    size_t i;
    for (i = 0; i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'); i++)
        ;
    return i < len && s[i] == '{';
}

static void rest_head(sdc_request *rq, int status, const sdh_header *h, size_t n, void *user_data)
{
    job *j = user_data;
    size_t i;
    (void)rq;
    j->http_status = status;
    for (i = 0; i < n; i++) {
        char name[128];
        sd2_header lh;
        size_t c;
        if (h[i].name_len >= sizeof(name))
            continue;
        for (c = 0; c < h[i].name_len; c++)
            name[c] = (char)(h[i].name[c] >= 'A' && h[i].name[c] <= 'Z' ? h[i].name[c] + 32
                                                                        : h[i].name[c]);
        lh = (sd2_header){name, h[i].name_len, h[i].value, h[i].value_len};
        keep_answer_header(j, &lh);
    }
}

static void rest_body(sdc_request *rq, const char *data, size_t len, void *user_data)
{
    job *j = user_data;
    if (j->failed || len == 0)
        return;
    if (j->buf.len + len > j->g->cfg.max_message) {
        fail(j, "the answer is larger than --max-message (%zu bytes)", j->g->cfg.max_message);
        sdc_request_cancel(rq);
        return;
    }
    if (seldon_buf_reserve(&j->buf, len) != 0) {
        fail(j, "out of memory");
        sdc_request_cancel(rq);
        return;
    }
    memcpy(j->buf.data + j->buf.len, data, len);
    j->buf.len += len;
}

static void rest_done(sdc_request *rq, int result, void *user_data)
{
    job *j = user_data;
    mg *g = j->g;
    (void)rq;
    j->rq = NULL;
    if (g->hard) {
        finish(j);
        return;
    }
    seldon_series_observe(g->m_seconds, (double)(now_ns() - j->t0) / 1e9);
    if (result == SDC_ETIMEOUT)
        fail(j, "no answer from the model within --timeout (%llu ms)",
             (unsigned long long)g->cfg.timeout_ms);
    else if (result != SDC_OK)
        fail(j, "router %s: %s", g->authority, sdc_strerror(result));
    else if (j->http_status != 200)
        fail(j, "HTTP %d: %.*s", j->http_status, (int)(j->buf.len > 400 ? 400 : j->buf.len),
             j->buf.data ? (const char *)j->buf.data : "");
    produce(j);
}

static void start_rest(job *j)
{
    static const sdc_callbacks cbs = {rest_head, rest_body, NULL, rest_done};
    mg *g = j->g;
    rd_kafka_headers_t *kh = NULL;
    sdh_header h[2 + MAX_FWD_HEADERS];
    char target[SELDON_KAFKA_TOPIC_MAX + 32];
    sdh_request_head head;
    size_t n = 0, idx, vlen;
    const char *name;
    const void *val;
    int rc, tl;

    j->rest = 1;
    j->buf.len = 0;
    tl = snprintf(target, sizeof(target), "/v2/models/%s/infer", j->model);
    h[n++] = (sdh_header){"content-type", 12, "application/json", 16};
    h[n++] = (sdh_header){"seldon-model", 12, j->model, strlen(j->model)};
    if (rd_kafka_message_headers(j->m, &kh) == RD_KAFKA_RESP_ERR_NO_ERROR)
        for (idx = 0;
             n < 2 + MAX_FWD_HEADERS &&
             rd_kafka_header_get_all(kh, idx, &name, &val, &vlen) == RD_KAFKA_RESP_ERR_NO_ERROR;
             idx++)
            if (seldon_kafka_header_from_answer(name, strlen(name)) && val != NULL &&
                printable(val, vlen))
                h[n++] = (sdh_header){name, strlen(name), val, vlen};
    memset(&head, 0, sizeof(head));
    head.method = "POST";
    head.method_len = 4;
    head.target = target;
    head.target_len = (size_t)tl;
    head.headers = h;
    head.n_headers = n;
    head.content_length = (int64_t)j->m->len;
    rc = sdc_request_start_body(&j->rq, g->pool, &head, j->m->payload, j->m->len, &cbs, j);
    if (rc != 0) {
        fail(j, "router %s: %s", g->authority, sdc_strerror(rc));
        produce(j);
    }
}

static void start(job *j)
{
    mg *g = j->g;
    rd_kafka_headers_t *kh = NULL;
    sd2_header h[8 + MAX_FWD_HEADERS];
    char lower[MAX_FWD_HEADERS][128];
    size_t n = 0, idx, at;
    const char *name;
    const void *val;
    size_t vlen;
    int rc;

    j->part->inflight++;
    seldon_series_add(g->m_inflight, 1);
    j->t0 = now_ns();
    /* The frame: a flag byte and a length, then the request with the topic's model name. */
    if (seldon_buf_reserve(&j->buf, 5) != 0) {
        fail(j, "out of memory");
        produce(j);
        return;
    }
    j->buf.len = 5;
    rc = seldon_kafka_request_set_model(&j->buf, j->m->payload, j->m->len, j->model);
    if (rc != 0 && json_value(j->m->payload, j->m->len)) {
        start_rest(j);
        return;
    }
    if (rc != 0) {
        fail(j, "the record is neither a ModelInferRequest (%s) nor JSON", seldon_last_error());
        produce(j);
        return;
    }
    at = j->buf.len - 5;
    if (g->cfg.call != NULL &&
        g->cfg.call(g->cfg.call_data, j, j->model, j->buf.data + 5, at) != MG_CALL_ROUTER)
        return; /* the host's: mg_call_done() follows */
    j->buf.data[0] = 0;
    j->buf.data[1] = (uint8_t)(at >> 24);
    j->buf.data[2] = (uint8_t)(at >> 16);
    j->buf.data[3] = (uint8_t)(at >> 8);
    j->buf.data[4] = (uint8_t)at;

    h[n++] = (sd2_header){":method", 7, "POST", 4};
    h[n++] = (sd2_header){":scheme", 7, "http", 4};
    h[n++] = (sd2_header){":path", 5, INFER_PATH, sizeof(INFER_PATH) - 1};
    h[n++] = (sd2_header){":authority", 10, g->authority, strlen(g->authority)};
    h[n++] = (sd2_header){"content-type", 12, "application/grpc", 16};
    h[n++] = (sd2_header){"te", 2, "trailers", 8};
    h[n++] = (sd2_header){"seldon-model", 12, j->model, strlen(j->model)};
    /* The record's x-* headers go along as metadata (HTTP/2 wants lower-case names). */
    if (rd_kafka_message_headers(j->m, &kh) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        size_t k = 0;
        for (idx = 0; k < MAX_FWD_HEADERS && rd_kafka_header_get_all(kh, idx, &name, &val, &vlen) ==
                                                 RD_KAFKA_RESP_ERR_NO_ERROR;
             idx++) {
            size_t nl = strlen(name), c;
            if (!seldon_kafka_header_from_answer(name, nl) || nl >= sizeof(lower[0]) ||
                val == NULL || !printable(val, vlen))
                continue;
            for (c = 0; c < nl; c++)
                lower[k][c] = (char)(name[c] >= 'A' && name[c] <= 'Z' ? name[c] + 32 : name[c]);
            h[n++] = (sd2_header){lower[k], nl, val, vlen};
            k++;
        }
    }
    rc = sd2_request(&j->s, g->up, h, n, 0, &call_cbs, j, g->cfg.timeout_ms);
    if (rc != 0) {
        fail(j, "router %s: %s", g->authority, sd2_strerror(rc));
        produce(j);
        return;
    }
    sd2_write(j->s, j->buf.data, j->buf.len);
    sd2_end(j->s, NULL, 0);
    j->buf.len = 0; /* now the answer's */
}

void mg_call_done(mg_call *j, int ok, const uint8_t *response, size_t len, const char *error)
{
    mg *g = j->g;
    if (g->hard) { /* shutting down: not done, so consumed again by whoever comes next */
        finish(j);
        return;
    }
    seldon_series_observe(g->m_seconds, (double)(now_ns() - j->t0) / 1e9);
    j->buf.len = 0;
    j->rest = 1; /* the answer is the whole buffer (no gRPC frame) */
    if (!ok)
        fail(j, "%s", error != NULL && error[0] != '\0' ? error : "the model failed");
    else if (len > g->cfg.max_message)
        fail(j, "the answer is larger than --max-message (%zu bytes)", g->cfg.max_message);
    else if (seldon_buf_reserve(&j->buf, len + 1) != 0)
        fail(j, "out of memory");
    else {
        memcpy(j->buf.data, response, len);
        j->buf.len = len;
    }
    produce(j);
}

/* ------------------------------------------------------------ producing */

static void retry_later(job *j)
{
    mg *g = j->g;
    j->next = NULL;
    if (g->retry_tail != NULL)
        g->retry_tail->next = j;
    else
        g->retry_head = j;
    g->retry_tail = j;
    if (!uv_is_active((uv_handle_t *)&g->retry_timer))
        uv_timer_start(&g->retry_timer, retry_due, RETRY_MS, 0);
}

static int header_present(sdk_header *h, size_t n, const char *name)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (strcmp(h[i].name, name) == 0)
            return 1;
    return 0;
}

static void produce(job *j)
{
    mg *g = j->g;
    rd_kafka_headers_t *kh = NULL;
    sdk_header h[MAX_FWD_HEADERS + MAX_ANSWER_HEADERS + 1];
    char topic[SELDON_KAFKA_TOPIC_MAX + 1];
    size_t n = 0, idx, i, vlen;
    const char *name;
    const void *val;
    int rc;

    rc = seldon_kafka_topic(topic, sizeof(topic), NULL, g->cfg.kafka.prefix, g->cfg.kafka.ns,
                            j->failed ? SELDON_KAFKA_ERRORS : SELDON_KAFKA_MODEL, j->model,
                            SELDON_KAFKA_OUTPUTS);
    if (rc != 0) { /* the input topic's parts were valid: cannot happen */
        sdd_log(SELDON_LOG_ERROR, "%s: %s", j->model, seldon_last_error());
        finish(j);
        return;
    }
    if (rd_kafka_message_headers(j->m, &kh) == RD_KAFKA_RESP_ERR_NO_ERROR)
        for (idx = 0; n < MAX_FWD_HEADERS && rd_kafka_header_get_all(kh, idx, &name, &val, &vlen) ==
                                                 RD_KAFKA_RESP_ERR_NO_ERROR;
             idx++)
            if (seldon_kafka_header_propagates(name, strlen(name)))
                h[n++] = (sdk_header){name, val, val ? vlen : 0};
    for (i = 0; i < j->nans; i++)
        if (!header_present(h, n, j->ans_h[i * 2]))
            h[n++] =
                (sdk_header){j->ans_h[i * 2], j->ans_h[i * 2 + 1], strlen(j->ans_h[i * 2 + 1])};
    if (j->failed)
        h[n++] = (sdk_header){SELDON_KAFKA_H_ERRORS, j->model, strlen(j->model)};
    if (j->failed)
        rc = sdk_produce(g->producer, topic, -1, j->m->key, j->m->key_len, j->err, strlen(j->err),
                         h, n, j);
    else
        rc = sdk_produce(g->producer, topic, -1, j->m->key, j->m->key_len,
                         j->buf.data + (j->rest ? 0 : 5), j->buf.len - (j->rest ? 0 : 5), h, n, j);
    if (rc != 0) {
        seldon_series_add(g->m_retries, 1);
        sdd_log(SELDON_LOG_WARN, "%s: %s: producing again in %d ms", topic, seldon_last_error(),
                RETRY_MS);
        retry_later(j);
    }
}

static void retry_due(uv_timer_t *t)
{
    mg *g = t->data;
    job *list = g->retry_head;
    g->retry_head = g->retry_tail = NULL;
    while (list != NULL) {
        job *j = list;
        list = j->next;
        j->next = NULL;
        produce(j);
    }
}

static void delivered(void *user_data, void *msg_opaque, int err, const char *why,
                      int32_t partition, int64_t offset)
{
    mg *g = user_data;
    job *j = msg_opaque;
    (void)partition;
    (void)offset;
    if (err != 0 && !g->hard) {
        seldon_series_add(g->m_retries, 1);
        sdd_log(SELDON_LOG_WARN,
                "%s [%d] offset %lld: the output was not delivered (%s): "
                "producing it again",
                rd_kafka_topic_name(j->m->rkt), (int)j->m->partition, (long long)j->m->offset, why);
        retry_later(j);
        return;
    }
    if (err == 0) {
        seldon_series_add(j->failed ? g->m_err : g->m_ok, 1);
        if (j->failed)
            sdd_log(SELDON_LOG_INFO, "%s: error record for %.*s: %s", j->model, (int)j->m->key_len,
                    j->m->key ? (const char *)j->m->key : "", j->err);
        if (g->consumer != NULL)
            sdk_consumer_done(g->consumer, rd_kafka_topic_name(j->m->rkt), j->m->partition,
                              j->m->offset);
    }
    finish(j);
}

/* ------------------------------------------------------------ consuming */

static void on_message(void *user_data, rd_kafka_message_t *m)
{
    mg *g = user_data;
    const char *topic = rd_kafka_topic_name(m->rkt);
    seldon_kafka_topic_parts tp;
    mg_part *p;
    job *j;
    if (seldon_kafka_topic_parse(&tp, topic, strlen(topic), g->cfg.kafka.prefix, g->cfg.kafka.ns) !=
            0 ||
        tp.kind != SELDON_KAFKA_MODEL || tp.io != SELDON_KAFKA_INPUTS) {
        sdd_log(SELDON_LOG_WARN, "%s: not a model inputs topic: record skipped", topic);
        sdk_consumer_done(g->consumer, topic, m->partition, m->offset);
        rd_kafka_message_destroy(m);
        return;
    }
    p = get_part(g, topic, m->partition, 1);
    j = sdd_calloc(1, sizeof(*j));
    if (p == NULL || j == NULL) {
        /* Never done, so never committed: a restart consumes it again. */
        sdd_log(SELDON_LOG_ERROR, "%s [%d]: out of memory: record left", topic, (int)m->partition);
        sdd_free(j);
        rd_kafka_message_destroy(m);
        return;
    }
    j->g = g;
    j->m = m;
    j->part = p;
    snprintf(j->model, sizeof(j->model), "%.*s", (int)tp.name_len, tp.name);
    g->jobs++;
    if (p->inflight < g->cfg.max_inflight && p->wait_head == NULL) {
        start(j);
        return;
    }
    if (p->wait_tail != NULL)
        p->wait_tail->next = j;
    else
        p->wait_head = j;
    p->wait_tail = j;
    set_paused(g, p, 1);
}

static void on_assigned(void *user_data, const char *topic, int32_t partition)
{
    mg *g = user_data;
    mg_part *p = get_part(g, topic, partition, 1);
    if (p == NULL)
        return;
    p->revoked = 0;
    p->paused = 0; /* a new assignment fetches */
    seldon_series_set(g->m_partitions, (double)sdk_consumer_assigned(g->consumer));
}

static void on_revoked(void *user_data, const char *topic, int32_t partition)
{
    mg *g = user_data;
    mg_part *p = get_part(g, topic, partition, 0);
    if (p != NULL) {
        p->revoked = 1;
        p->paused = 0;
        drop_waiting(g, p);
    }
    seldon_series_set(g->m_partitions, (double)sdk_consumer_assigned(g->consumer));
}

/* ------------------------------------------------------------ models */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Subscribes to the inputs topics of the static models and the routed ones. */
static void resubscribe(mg *g)
{
    size_t n = g->cfg.nmodels + g->nroute_models, k = 0, i, out = 0;
    char **t = n ? sdd_calloc(n, sizeof(char *)) : NULL;
    char topic[SELDON_KAFKA_TOPIC_MAX + 1];
    int same;
    if (n > 0 && t == NULL)
        return;
    for (i = 0; i < n; i++) {
        const char *m = i < g->cfg.nmodels ? g->cfg.models[i] : g->route_models[i - g->cfg.nmodels];
        if (seldon_kafka_topic(topic, sizeof(topic), NULL, g->cfg.kafka.prefix, g->cfg.kafka.ns,
                               SELDON_KAFKA_MODEL, m, SELDON_KAFKA_INPUTS) != 0) {
            sdd_log(SELDON_LOG_WARN, "model %s: no topic: %s", m, seldon_last_error());
            continue;
        }
        t[k] = sdd_strndup(topic, strlen(topic));
        if (t[k] != NULL)
            k++;
    }
    if (k > 1)
        qsort(t, k, sizeof(char *), cmp_str);
    for (i = 0; i < k; i++) /* unique */
        if (out == 0 || strcmp(t[out - 1], t[i]) != 0)
            t[out++] = t[i];
        else
            sdd_free(t[i]);
    k = out;
    same = k == g->ntopics;
    for (i = 0; same && i < k; i++)
        same = strcmp(t[i], g->topics[i]) == 0;
    if (same) {
        for (i = 0; i < k; i++)
            sdd_free(t[i]);
        sdd_free(t);
        return;
    }
    for (i = 0; i < g->ntopics; i++)
        sdd_free(g->topics[i]);
    sdd_free(g->topics);
    g->topics = t;
    g->ntopics = k;
    seldon_series_set(g->m_models, (double)k);
    if (sdk_consumer_subscribe(g->consumer, (const char *const *)t, k) != 0)
        sdd_log(SELDON_LOG_ERROR, "%s", seldon_last_error());
    else
        sdd_log(SELDON_LOG_INFO, "consuming the inputs of %zu model(s)", k);
}

void mg_route_models(mg *g, const char *const *names, size_t n)
{
    size_t i, k = 0;
    char **m = n ? sdd_calloc(n, sizeof(char *)) : NULL;
    if (n > 0 && m == NULL)
        return;
    for (i = 0; i < n; i++) {
        size_t len = strlen(names[i]);
        /* Pipelines are routed too ("<p>.pipeline"); their steps' models have their own. */
        if (len > 9 && strcmp(names[i] + len - 9, ".pipeline") == 0)
            continue;
        if ((m[k] = sdd_strndup(names[i], len)) != NULL)
            k++;
    }
    for (i = 0; i < g->nroute_models; i++)
        sdd_free(g->route_models[i]);
    sdd_free(g->route_models);
    g->route_models = m;
    g->nroute_models = k;
    if (!g->stopping)
        resubscribe(g);
}

/* ------------------------------------------------------------ life cycle */

int mg_parse_host(char *addr, size_t cap, int *port, const char *spec)
{
    char host[256];
    const char *colon = strrchr(spec, ':');
    long p = *port;
    size_t hlen;
    struct in6_addr a6;
    struct in_addr a4;
    if (spec[0] == '[') {
        const char *close = strchr(spec, ']');
        if (close == NULL)
            return -1;
        hlen = (size_t)(close - spec - 1);
        if (hlen >= sizeof(host))
            return -1;
        memcpy(host, spec + 1, hlen);
        host[hlen] = '\0';
        colon = close[1] == ':' ? close + 1 : NULL;
        if (close[1] != '\0' && close[1] != ':')
            return -1;
    } else {
        if (colon != NULL && strchr(spec, ':') != colon)
            return -1; /* a bare IPv6 address wants brackets */
        hlen = colon ? (size_t)(colon - spec) : strlen(spec);
        if (hlen == 0 || hlen >= sizeof(host))
            return -1;
        memcpy(host, spec, hlen);
        host[hlen] = '\0';
    }
    if (colon != NULL && sdd_parse_long(colon + 1, 1, 65535, &p) != 0)
        return -1;
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof(host), "127.0.0.1");
    if (inet_pton(AF_INET, host, &a4) != 1 && inet_pton(AF_INET6, host, &a6) != 1) {
        struct addrinfo hints, *res = NULL;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_INET;
        hints.ai_socktype = SOCK_STREAM;
        if (getaddrinfo(host, NULL, &hints, &res) != 0 || res == NULL)
            return -1;
        inet_ntop(AF_INET, &((struct sockaddr_in *)res->ai_addr)->sin_addr, host, sizeof(host));
        freeaddrinfo(res);
    }
    if (strlen(host) >= cap)
        return -1;
    snprintf(addr, cap, "%s", host);
    *port = (int)p;
    return 0;
}

static int add_series(seldon_series **out, seldon_metrics *reg, int32_t type, const char *name,
                      const char *help, const char *label, const char *value)
{
    seldon_metric *m = NULL;
    static const double buckets[] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120};
    const char *ln[1] = {label};
    const char *lv[1] = {value};
    int rc = seldon_metrics_add(&m, reg, type, name, help, label ? ln : NULL, label ? 1 : 0,
                                type == SELDON_METRIC_HISTOGRAM ? buckets : NULL,
                                type == SELDON_METRIC_HISTOGRAM ? 10 : 0);
    return rc != 0 ? rc : seldon_metric_series(out, m, label ? lv : NULL);
}

int mg_new(mg **out, const mg_config *cfg, uv_loop_t *loop, seldon_metrics *metrics)
{
    mg *g;
    seldon_metric *rec = NULL;
    const char *ln[1] = {"result"}, *ok[1] = {"ok"}, *er[1] = {"error"};
    int rc;
    *out = NULL;
    g = sdd_calloc(1, sizeof(*g));
    if (g == NULL)
        return SELDON_ENOMEM;
    g->cfg = *cfg;
    g->loop = loop;
    g->router_port = 9000;
    if (mg_parse_host(g->router_addr, sizeof(g->router_addr), &g->router_port, cfg->router_host) !=
        0) {
        sdd_free(g);
        return sdd_error(SELDON_EINVAL, "--router-host: '%s' does not resolve", cfg->router_host);
    }
    snprintf(g->authority, sizeof(g->authority), strchr(g->router_addr, ':') ? "[%s]:%d" : "%s:%d",
             g->router_addr, g->router_port);
    rc = seldon_metrics_add(
        &rec, metrics, SELDON_METRIC_COUNTER, "seldon_modelgateway_records_total",
        "Records answered: result=ok (an output) or error (an error record)", ln, 1, NULL, 0);
    if (rc == 0)
        rc = seldon_metric_series(&g->m_ok, rec, ok);
    if (rc == 0)
        rc = seldon_metric_series(&g->m_err, rec, er);
    if (rc == 0)
        rc =
            add_series(&g->m_inflight, metrics, SELDON_METRIC_GAUGE, "seldon_modelgateway_inflight",
                       "Records called and not yet delivered", NULL, NULL);
    if (rc == 0)
        rc = add_series(&g->m_partitions, metrics, SELDON_METRIC_GAUGE,
                        "seldon_modelgateway_partitions", "Input partitions assigned", NULL, NULL);
    if (rc == 0)
        rc = add_series(&g->m_models, metrics, SELDON_METRIC_GAUGE, "seldon_modelgateway_models",
                        "Model input topics subscribed", NULL, NULL);
    if (rc == 0)
        rc = add_series(&g->m_retries, metrics, SELDON_METRIC_COUNTER,
                        "seldon_modelgateway_produce_retries_total",
                        "Outputs produced again after a refusal or a failed delivery", NULL, NULL);
    if (rc == 0)
        rc = add_series(&g->m_seconds, metrics, SELDON_METRIC_HISTOGRAM,
                        "seldon_modelgateway_call_seconds", "Model calls through the router", NULL,
                        NULL);
    if (rc != 0) {
        sdd_free(g);
        return rc;
    }
    *out = g;
    return 0;
}

void mg_start(void *arg)
{
    mg *g = arg;
    sdk_consumer_cbs cbs = {on_message, on_assigned, on_revoked};
    sd2_opts o;
    int rc;
    uv_timer_init(g->loop, &g->retry_timer);
    g->retry_timer.data = g;
    uv_timer_init(g->loop, &g->grace_timer);
    g->grace_timer.data = g;
    memset(&o, 0, sizeof(o));
    o.max_conns_per_upstream = 4;
    rc = sd2_client_new(&g->h2c, g->loop, &o);
    if (rc == 0)
        rc = sd2_upstream_get(&g->up, g->h2c, g->router_addr, g->router_port);
    if (rc == 0) {
        sdc_pool_options po = SDC_POOL_OPTIONS_INIT;
        po.request_timeout_ms = g->cfg.timeout_ms;
        rc = sdc_pool_new(&g->pool, g->loop, g->authority, &po) == 0 ? 0 : SELDON_ENOMEM;
    }
    if (rc == 0)
        rc = sdk_producer_new(&g->producer, g->loop, &g->cfg.kafka, delivered, g);
    if (rc == 0)
        rc = sdk_consumer_new(&g->consumer, g->loop, &g->cfg.kafka, g->cfg.group, &cbs, g);
    if (rc != 0) {
        sdd_log(SELDON_LOG_ERROR, "start-up failed: %s", seldon_last_error());
        exit(1);
    }
    resubscribe(g);
    if (g->cfg.scheduler_host != NULL) {
        char addr[64];
        int port = 9002;
        if (mg_parse_host(addr, sizeof(addr), &port, g->cfg.scheduler_host) != 0 ||
            mg_sub_new(&g->sub, g, g->loop, addr, port) != 0) {
            sdd_log(SELDON_LOG_ERROR, "--scheduler-host %s: %s", g->cfg.scheduler_host,
                    seldon_last_error());
            exit(1);
        }
        mg_sub_start(g->sub);
    }
    sdd_log(SELDON_LOG_INFO,
            "serving: Kafka %s, group %s, router %s, %d call(s) at most per partition",
            sdk_config_brokers(&g->cfg.kafka), g->cfg.group, g->authority, g->cfg.max_inflight);
}

static void one_closed(void *arg)
{
    mg *g = arg;
    if (--g->closing_left == 0 && g->done != NULL)
        g->done(g->done_arg);
}

static void handle_closed(uv_handle_t *h)
{
    one_closed(h->data);
}

/* Everything done (or the grace is over): commit, leave, flush, close. */
static void close_all(mg *g)
{
    mg_part *p;
    if (g->hard)
        return;
    g->hard = 1;
    uv_timer_stop(&g->grace_timer);
    for (p = g->parts; p != NULL; p = p->next)
        drop_waiting(g, p);
    if (g->jobs > 0)
        sdd_log(SELDON_LOG_WARN,
                "%zu record(s) unfinished at the end of the grace: not committed, they will be "
                "consumed again",
                g->jobs);
    g->closing_left = 7;
    /* Calls in flight end here (not done: consumed again by the next owner). */
    sd2_client_close(g->h2c, one_closed, g);
    sdc_pool_free(g->pool, one_closed, g);
    sdk_consumer_close(g->consumer, one_closed, g);
    g->consumer = NULL;
    while (g->retry_head != NULL) {
        job *j = g->retry_head;
        g->retry_head = j->next;
        finish(j);
    }
    g->retry_tail = NULL;
    sdk_producer_close(g->producer, FLUSH_MS, one_closed, g);
    g->producer = NULL;
    if (g->sub != NULL)
        mg_sub_close(g->sub);
    uv_close((uv_handle_t *)&g->retry_timer, handle_closed);
    uv_close((uv_handle_t *)&g->grace_timer, handle_closed);
    one_closed(g); /* the sub's share: it closes on its own */
}

static void grace_over(uv_timer_t *t)
{
    close_all(t->data);
}

void mg_stop(mg *g, void (*done)(void *), void *arg)
{
    mg_part *p;
    g->done = done;
    g->done_arg = arg;
    g->stopping = 1;
    for (p = g->parts; p != NULL; p = p->next) {
        drop_waiting(g, p);
        set_paused(g, p, 1);
    }
    sdd_log(SELDON_LOG_INFO, "stopping: %zu record(s) in flight", g->jobs);
    if (g->jobs == 0) {
        close_all(g);
        return;
    }
    uv_timer_start(&g->grace_timer, grace_over, g->cfg.grace_ms, 0);
}

void mg_free(mg *g)
{
    size_t i;
    if (g == NULL)
        return;
    while (g->parts != NULL) {
        mg_part *p = g->parts;
        g->parts = p->next;
        sdd_free(p->topic);
        sdd_free(p);
    }
    for (i = 0; i < g->nroute_models; i++)
        sdd_free(g->route_models[i]);
    sdd_free(g->route_models);
    for (i = 0; i < g->ntopics; i++)
        sdd_free(g->topics[i]);
    sdd_free(g->topics);
    sdd_free(g);
}

int mg_holds(mg *g, const char *model)
{
    char t[SELDON_KAFKA_TOPIC_MAX + 1];
    mg_part *p;
    if (seldon_kafka_topic(t, sizeof(t), NULL, g->cfg.kafka.prefix, g->cfg.kafka.ns,
                           SELDON_KAFKA_MODEL, model, SELDON_KAFKA_INPUTS) != 0)
        return 0;
    for (p = g->parts; p != NULL; p = p->next)
        if (!p->revoked && strcmp(p->topic, t) == 0)
            return 1;
    return 0;
}
