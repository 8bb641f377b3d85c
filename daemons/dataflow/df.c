/*
 * The dataflow engine over Kafka, on its loop: libseldon's pipeline engine fed
 * by records and feeding records.
 *
 * In: the inputs topic of every pipeline served (a record is a request: key
 * "<partition>.<resource>.<id>", value a ModelInferRequest), the outputs topic
 * of every model a step calls and the errors topic (records whose `pipeline`
 * header names a pipeline served, answering a step call by key and model).
 * Out: step inputs to the models' inputs topics, and each request's answer or
 * error to its pipeline's outputs topic, on the partition the key names.
 *
 * Delivery: a pipeline input is marked done (so its offset may be committed)
 * only once its request's answer or error record is acknowledged by the
 * broker. Model outputs are done as soon as they are applied: if this worker
 * dies, the inputs not done are consumed again by the next owner, which runs
 * them again from the start (duplicates, never a loss). The same happens on a
 * rebalance: the requests of a revoked input partition are cancelled here and
 * run again by the partition's next owner. docs/dataflow.md has the table.
 *
 * Work sharing: all workers of a group subscribe to the same topics with the
 * range assignor, so partition i of every topic (of one partition count) goes
 * to the same worker: the worker that holds a request's input partition also
 * reads the model outputs that answer it, since every record of a request is
 * keyed with the same key and goes to the partition the key names.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "df.h"
#include "sdd.h"
#include "seldon/kafka.h"
#include "seldon/manifest.h"
#include "seldon/oip.h"
#include "seldon/pipeline.h"

#define NBUCKETS 4096
#define MAX_HEADERS 64
#define RETRY_MS 200

typedef struct dcall dcall;

/* A live request: where its input record sits, and its step calls. */
typedef struct dreq {
    char *pipeline;
    char *key; /* the record's key */
    size_t key_len;
    char *eid; /* the engine's request id: "<key>/<run>" */
    size_t eid_len;
    char *topic;
    int32_t partition;
    int64_t offset;
    uint64_t gen; /* the assignment of its partition it was consumed in */
    dcall *calls;
    struct dreq *next; /* hash chain */
} dreq;

/* A step call waiting for its model's output record. */
struct dcall {
    char *model;
    char *pipeline;
    char *key;
    size_t key_len;
    uint64_t call_id;
    dreq *r;      /* the request it belongs to; NULL for a batch (no one request owns it) */
    dcall *next;  /* hash chain */
    dcall *rnext; /* the request's calls, or the batches' list */
    int64_t expires; /* a batch: forgotten then, if never answered */
};

enum { OUT_STEP = 1, OUT_ANSWER = 2 };

/* A record being produced, kept until the broker acknowledges it. */
typedef struct dout {
    int kind;
    uint64_t call_id; /* OUT_STEP: failed when the record cannot be delivered */
    char topic[SELDON_KAFKA_TOPIC_MAX + 1];
    char *key;
    size_t key_len;
    seldon_buf value;
    char *hn[MAX_HEADERS], *hv[MAX_HEADERS];
    size_t hvl[MAX_HEADERS];
    size_t nh;
    int error; /* OUT_ANSWER: an error record */
    /* OUT_ANSWER: the input record to mark done once delivered (in_topic NULL: none) */
    char *in_topic;
    int32_t in_partition;
    int64_t in_offset;
    uint64_t in_gen;
    struct dout *next; /* retry list */
} dout;

/* An assignment of a partition: records done from an earlier one are not ours to mark. */
typedef struct dpart {
    char *topic;
    int32_t partition;
    uint64_t gen; /* 0: not assigned now */
    int inputs;   /* a pipeline inputs topic: paused while too many requests live */
    struct dpart *next;
} dpart;

typedef struct dpl {
    char *name;
    uint32_t version; /* df_sync's; 0 for a --pipeline file's */
    int file;         /* from a --pipeline file: never withdrawn */
    seldon_pipeline *pl;
} dpl;

struct df {
    df_config cfg;
    uv_loop_t *loop;
    seldon_pipeline_engine *eng;
    dpl *pls;
    size_t npls, plcap;
    df_state *states; /* of the scheduler's last set */
    size_t nstates;
    char **topics;
    size_t ntopics;
    dreq *reqs[NBUCKETS];
    dcall *calls[NBUCKETS];
    dcall *batches; /* batched calls in flight (owned by the table, listed here) */
    size_t nreqs;
    uint64_t runs, gens;
    dpart *parts;
    int paused; /* the inputs partitions, while nreqs >= max_live */
    sdk_consumer *consumer;
    sdk_producer *producer;
    uv_timer_t timer;       /* the engine's deadline */
    uv_timer_t retry_timer; /* answers produced again */
    dout *retry_head, *retry_tail;
    int hard;
    int closing_left;
    void (*done)(void *);
    void *done_arg;
    seldon_series *m_ok, *m_err, *m_live, *m_partitions, *m_retries, *m_ignored, *m_pipelines;
};

static void pump(df *d);
static dpl *find_pipeline(df *d, const char *name, size_t len);
static void retry_due(uv_timer_t *t);

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    size_t i;
    for (i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static size_t req_bucket(const char *pipeline, const char *key, size_t key_len)
{
    uint64_t h = fnv(14695981039346656037ull, pipeline, strlen(pipeline) + 1);
    return (size_t)(fnv(h, key, key_len) % NBUCKETS);
}

static size_t call_bucket(const char *model, size_t model_len, const char *pipeline,
                          size_t pipeline_len, const char *key, size_t key_len)
{
    uint64_t h = fnv(14695981039346656037ull, model, model_len);
    h = fnv(h, "", 1);
    h = fnv(h, pipeline, pipeline_len);
    h = fnv(h, "", 1);
    return (size_t)(fnv(h, key, key_len) % NBUCKETS);
}

static int span_is(const char *s, size_t len, const char *z)
{
    return strlen(z) == len && memcmp(s, z, len) == 0;
}

/* The record key within an engine request id ("<key>/<run>"). */
static size_t key_of(const char *eid, size_t len)
{
    size_t i = len;
    while (i > 0 && eid[i - 1] != '/')
        i--;
    return i > 0 ? i - 1 : len;
}

static dpart *part_get(df *d, const char *topic, int32_t partition, int create)
{
    dpart *p;
    for (p = d->parts; p != NULL; p = p->next)
        if (p->partition == partition && strcmp(p->topic, topic) == 0)
            return p;
    if (!create || (p = sdd_calloc(1, sizeof(*p))) == NULL)
        return NULL;
    if ((p->topic = sdd_strndup(topic, strlen(topic))) == NULL) {
        sdd_free(p);
        return NULL;
    }
    p->partition = partition;
    p->next = d->parts;
    d->parts = p;
    return p;
}

static uint64_t part_gen(df *d, const char *topic, int32_t partition)
{
    dpart *p = part_get(d, topic, partition, 0);
    return p != NULL ? p->gen : 0;
}

/*
 * Back-pressure: the inputs partitions stop fetching while --max-live requests run, and
 * fetch again below three quarters of it. Records fetched before the pause still come.
 */
static void throttle(df *d)
{
    dpart *p;
    int want = d->paused ? d->nreqs * 4 >= (size_t)d->cfg.max_live * 3
                         : d->nreqs >= (size_t)d->cfg.max_live;
    if (want == d->paused || d->consumer == NULL)
        return;
    d->paused = want;
    for (p = d->parts; p != NULL; p = p->next)
        if (p->inputs && p->gen != 0)
            sdk_consumer_pause(d->consumer, p->topic, p->partition, want);
    sdd_log(SELDON_LOG_DEBUG, "%zu request(s) live: inputs %s", d->nreqs,
            want ? "paused" : "resumed");
}

/* ------------------------------------------------------------ tables */

static dreq *req_find(df *d, const char *pipeline, const char *key, size_t key_len, int unlink)
{
    dreq **pp = &d->reqs[req_bucket(pipeline, key, key_len)];
    for (; *pp != NULL; pp = &(*pp)->next) {
        dreq *r = *pp;
        if (r->key_len == key_len && memcmp(r->key, key, key_len) == 0 &&
            strcmp(r->pipeline, pipeline) == 0) {
            if (unlink) {
                *pp = r->next;
                d->nreqs--;
                seldon_series_set(d->m_live, (double)d->nreqs);
            }
            return r;
        }
    }
    return NULL;
}

static void call_unlink(df *d, dcall *c)
{
    dcall **pp = &d->calls[call_bucket(c->model, strlen(c->model), c->pipeline, strlen(c->pipeline),
                                       c->key, c->key_len)];
    for (; *pp != NULL; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            return;
        }
}

static void call_free(dcall *c)
{
    sdd_free(c->model);
    sdd_free(c->pipeline);
    sdd_free(c->key);
    sdd_free(c);
}

/* A call answered or failed: out of the table and of its request's list. */
static void call_drop(df *d, dcall *c)
{
    dcall **pp;
    call_unlink(d, c);
    for (pp = c->r != NULL ? &c->r->calls : &d->batches; *pp != NULL; pp = &(*pp)->rnext)
        if (*pp == c) {
            *pp = c->rnext;
            break;
        }
    call_free(c);
}

static dcall *call_find(df *d, const char *model, size_t model_len, const char *pipeline,
                        size_t pipeline_len, const char *key, size_t key_len)
{
    dcall *c = d->calls[call_bucket(model, model_len, pipeline, pipeline_len, key, key_len)];
    for (; c != NULL; c = c->next)
        if (c->key_len == key_len && memcmp(c->key, key, key_len) == 0 &&
            span_is(model, model_len, c->model) && span_is(pipeline, pipeline_len, c->pipeline))
            return c;
    return NULL;
}

/* The request is over (answered, failed or cancelled): its calls go with it. */
static void req_free(df *d, dreq *r)
{
    while (r->calls != NULL) {
        dcall *c = r->calls;
        r->calls = c->rnext;
        call_unlink(d, c);
        call_free(c);
    }
    sdd_free(r->pipeline);
    sdd_free(r->key);
    sdd_free(r->eid);
    sdd_free(r->topic);
    sdd_free(r);
}

/* ------------------------------------------------------------ producing */

static void dout_free(dout *o)
{
    size_t i;
    for (i = 0; i < o->nh; i++) {
        sdd_free(o->hn[i]);
        sdd_free(o->hv[i]);
    }
    seldon_buf_free(&o->value);
    sdd_free(o->key);
    sdd_free(o->in_topic);
    sdd_free(o);
}

static int dout_header(dout *o, const char *name, size_t nl, const char *value, size_t vl)
{
    size_t i;
    if (o->nh == MAX_HEADERS)
        return 0;
    for (i = 0; i < o->nh; i++)
        if (span_is(name, nl, o->hn[i]))
            return 0; /* the first wins */
    o->hn[o->nh] = sdd_strndup(name, nl);
    o->hv[o->nh] = sdd_strndup(value ? value : "", value ? vl : 0);
    if (o->hn[o->nh] == NULL || o->hv[o->nh] == NULL) {
        sdd_free(o->hn[o->nh]);
        sdd_free(o->hv[o->nh]);
        return SELDON_ENOMEM;
    }
    o->hvl[o->nh++] = value ? vl : 0;
    return 0;
}

static void retry_later(df *d, dout *o)
{
    o->next = NULL;
    if (d->retry_tail != NULL)
        d->retry_tail->next = o;
    else
        d->retry_head = o;
    d->retry_tail = o;
    if (!uv_is_active((uv_handle_t *)&d->retry_timer))
        uv_timer_start(&d->retry_timer, retry_due, RETRY_MS, 0);
}

/* Queues o; a step input the producer refuses fails its call, an answer is tried again. */
static void emit(df *d, dout *o)
{
    sdk_header h[MAX_HEADERS];
    size_t i;
    int rc;
    for (i = 0; i < o->nh; i++)
        h[i] = (sdk_header){o->hn[i], o->hv[i], o->hvl[i]};
    rc = sdk_produce(d->producer, o->topic, -1, o->key, o->key_len, o->value.data, o->value.len, h,
                     o->nh, o);
    if (rc == 0)
        return;
    if (o->kind == OUT_STEP) {
        char why[400];
        snprintf(why, sizeof(why), "the step input could not be produced to %s: %s", o->topic,
                 seldon_last_error());
        seldon_pipeline_engine_fail(d->eng, o->call_id, why, now_ns());
        dout_free(o);
        return;
    }
    seldon_series_add(d->m_retries, 1);
    sdd_log(SELDON_LOG_WARN, "%s: %s: producing again in %d ms", o->topic, seldon_last_error(),
            RETRY_MS);
    retry_later(d, o);
}

static void retry_due(uv_timer_t *t)
{
    df *d = t->data;
    dout *list = d->retry_head;
    d->retry_head = d->retry_tail = NULL;
    while (list != NULL) {
        dout *o = list;
        list = o->next;
        o->next = NULL;
        emit(d, o);
    }
    pump(d);
}

static void delivered(void *user_data, void *msg_opaque, int err, const char *why,
                      int32_t partition, int64_t offset)
{
    df *d = user_data;
    dout *o = msg_opaque;
    (void)partition;
    (void)offset;
    if (err != 0 && o->kind == OUT_STEP) {
        char text[400];
        if (!d->hard) {
            snprintf(text, sizeof(text), "the step input was not delivered to %s: %s", o->topic,
                     why);
            seldon_pipeline_engine_fail(d->eng, o->call_id, text, now_ns());
            pump(d);
        }
        dout_free(o);
        return;
    }
    if (err != 0 && !d->hard) {
        seldon_series_add(d->m_retries, 1);
        sdd_log(SELDON_LOG_WARN, "%s: the answer %.*s was not delivered (%s): producing it again",
                o->topic, (int)o->key_len, o->key, why);
        retry_later(d, o);
        return;
    }
    if (err == 0 && o->kind == OUT_ANSWER) {
        seldon_series_add(o->error ? d->m_err : d->m_ok, 1);
        if (o->in_topic != NULL && d->consumer != NULL && o->in_gen != 0 &&
            part_gen(d, o->in_topic, o->in_partition) == o->in_gen)
            sdk_consumer_done(d->consumer, o->in_topic, o->in_partition, o->in_offset);
    }
    dout_free(o);
}

static dout *dout_new(int kind, const char *topic, const char *key, size_t key_len)
{
    dout *o = sdd_calloc(1, sizeof(*o));
    if (o == NULL)
        return NULL;
    o->kind = kind;
    snprintf(o->topic, sizeof(o->topic), "%s", topic);
    if ((o->key = sdd_strndup(key, key_len)) == NULL) {
        sdd_free(o);
        return NULL;
    }
    o->key_len = key_len;
    return o;
}

static int topic_of(df *d, char *out, int32_t kind, const char *name, int32_t io)
{
    return seldon_kafka_topic(out, SELDON_KAFKA_TOPIC_MAX + 1, NULL, d->cfg.kafka.prefix,
                              d->cfg.kafka.ns, kind, name, io);
}

/* A step call: its request to the model's inputs topic. */
static void do_call(df *d, const seldon_pipeline_event *ev)
{
    char topic[SELDON_KAFKA_TOPIC_MAX + 1];
    size_t kl = key_of(ev->request_id, ev->request_id_len);
    dreq *r = req_find(d, ev->pipeline, ev->request_id, kl, 0);
    dcall *c = NULL;
    dout *o = NULL;
    size_t i;
    const char *why = "out of memory";
    if (topic_of(d, topic, SELDON_KAFKA_MODEL, ev->model, SELDON_KAFKA_INPUTS) != 0) {
        why = seldon_last_error();
        goto fail;
    }
    if (r != NULL &&
        (r->eid_len != ev->request_id_len || memcmp(r->eid, ev->request_id, r->eid_len) != 0))
        r = NULL; /* another run's */
    o = dout_new(OUT_STEP, topic, ev->request_id, kl);
    c = sdd_calloc(1, sizeof(*c));
    if (o == NULL || c == NULL)
        goto fail;
    o->call_id = ev->call_id;
    if (seldon_msg_encode_pb(&o->value, ev->msg, 0) != 0) {
        why = seldon_last_error();
        goto fail;
    }
    if (dout_header(o, SELDON_KAFKA_H_PIPELINE, strlen(SELDON_KAFKA_H_PIPELINE), ev->pipeline,
                    strlen(ev->pipeline)) != 0)
        goto fail;
    for (i = 0; i < ev->headers_count; i++)
        if (dout_header(o, ev->headers[i].name, ev->headers[i].name_len, ev->headers[i].value,
                        ev->headers[i].value_len) != 0)
            goto fail;
    c->model = sdd_strndup(ev->model, strlen(ev->model));
    c->pipeline = sdd_strndup(ev->pipeline, strlen(ev->pipeline));
    c->key = sdd_strndup(ev->request_id, kl);
    if (c->model == NULL || c->pipeline == NULL || c->key == NULL)
        goto fail;
    c->key_len = kl;
    c->call_id = ev->call_id;
    /*
     * A batch goes out under its first request's key (its answer comes back on that key's
     * partition) but answers every request of it: it must outlive the first request, which
     * may end before the answer comes (its own timeout, another step's failure, its
     * partition revoked). So no request owns it: it lives until answered, or until its
     * requests must all have timed out.
     */
    if (ev->batch > 1) {
        const dpl *p = find_pipeline(d, ev->pipeline, strlen(ev->pipeline));
        int64_t ms = p != NULL ? seldon_pipeline_timeout_ms(p->pl) : 0;
        if (ms <= 0)
            ms = d->cfg.timeout_ms > 0 ? (int64_t)d->cfg.timeout_ms : 3600000;
        c->expires = now_ns() + (ms + 1000) * 1000000;
        r = NULL;
    }
    c->r = r;
    {
        size_t b = call_bucket(c->model, strlen(c->model), c->pipeline, strlen(c->pipeline), c->key,
                               c->key_len);
        c->next = d->calls[b];
        d->calls[b] = c;
    }
    if (r != NULL) {
        c->rnext = r->calls;
        r->calls = c;
    } else if (ev->batch > 1) {
        c->rnext = d->batches;
        d->batches = c;
    }
    emit(d, o); /* may fail the call, which drops c through its request's end */
    return;
fail:
    if (c != NULL)
        call_free(c);
    if (o != NULL)
        dout_free(o);
    seldon_pipeline_engine_fail(d->eng, ev->call_id, why, now_ns());
}

static const char *error_kind_name(int32_t k)
{
    switch (k) {
    case SELDON_PIPELINE_ERR_MODEL:
        return "model";
    case SELDON_PIPELINE_ERR_TIMEOUT:
        return "timeout";
    case SELDON_PIPELINE_ERR_OVERFLOW:
        return "overflow";
    case SELDON_PIPELINE_ERR_NO_OUTPUT:
        return "no-output";
    case SELDON_PIPELINE_ERR_REVISITS:
        return "revisits";
    case SELDON_PIPELINE_ERR_BATCH:
        return "batch";
    case SELDON_PIPELINE_ERR_UNLOADED:
        return "unloaded";
    default:
        return "internal";
    }
}

/* A request's end: its answer or error record to the pipeline's outputs topic. */
static void do_end(df *d, const seldon_pipeline_event *ev)
{
    char topic[SELDON_KAFKA_TOPIC_MAX + 1];
    size_t kl = key_of(ev->request_id, ev->request_id_len);
    dreq *r = req_find(d, ev->pipeline, ev->request_id, kl, 0);
    dout *o = NULL;
    size_t i;
    int rc = SELDON_ENOMEM;
    if (r != NULL && r->eid_len == ev->request_id_len &&
        memcmp(r->eid, ev->request_id, r->eid_len) == 0)
        req_find(d, ev->pipeline, ev->request_id, kl, 1);
    else
        r = NULL; /* a chained pipeline's answer, or another run's */
    if (topic_of(d, topic, SELDON_KAFKA_PIPELINE, ev->pipeline, SELDON_KAFKA_OUTPUTS) != 0 ||
        (o = dout_new(OUT_ANSWER, topic, ev->request_id, kl)) == NULL)
        goto out;
    if (r != NULL) {
        o->in_topic = r->topic;
        r->topic = NULL;
        o->in_partition = r->partition;
        o->in_offset = r->offset;
        o->in_gen = r->gen;
    }
    rc = dout_header(o, SELDON_KAFKA_H_PIPELINE, strlen(SELDON_KAFKA_H_PIPELINE), ev->pipeline,
                     strlen(ev->pipeline));
    for (i = 0; rc == 0 && i < ev->headers_count; i++)
        rc = dout_header(o, ev->headers[i].name, ev->headers[i].name_len, ev->headers[i].value,
                         ev->headers[i].value_len);
    if (rc != 0)
        goto out;
    if (ev->kind == SELDON_PIPELINE_EVENT_OUTPUT) {
        seldon_msg *m = (seldon_msg *)(uintptr_t)ev->msg; /* the engine's answer, ours to finish */
        seldon_msg_set_model(m, ev->pipeline, strlen(ev->pipeline), NULL, 0);
        rc = seldon_msg_encode_pb(&o->value, m, 0);
    } else {
        /* "<model> : <error>" names the model; other errors name the pipeline. */
        const char *sep = strstr(ev->error, " : ");
        size_t wl = ev->error_kind == SELDON_PIPELINE_ERR_MODEL && sep != NULL
                        ? (size_t)(sep - ev->error)
                        : strlen(ev->pipeline);
        const char *who =
            ev->error_kind == SELDON_PIPELINE_ERR_MODEL && sep != NULL ? ev->error : ev->pipeline;
        const char *kind = error_kind_name(ev->error_kind);
        o->error = 1;
        rc = dout_header(o, SELDON_KAFKA_H_ERRORS, strlen(SELDON_KAFKA_H_ERRORS), who, wl);
        if (rc == 0)
            rc = dout_header(o, "seldon-error-kind", 17, kind, strlen(kind));
        if (rc == 0)
            rc = seldon_buf_reserve(&o->value, strlen(ev->error));
        if (rc == 0) {
            memcpy(o->value.data, ev->error, strlen(ev->error));
            o->value.len = strlen(ev->error);
        }
        sdd_log(SELDON_LOG_INFO, "%s: %.*s: %s", ev->pipeline, (int)kl, ev->request_id, ev->error);
    }
    if (rc != 0)
        goto out;
    emit(d, o);
    o = NULL;
out:
    if (rc != 0)
        sdd_log(SELDON_LOG_ERROR,
                "%s: %.*s: the answer could not be produced (%s): the input "
                "stays uncommitted",
                ev->pipeline, (int)kl, ev->request_id, seldon_last_error());
    if (o != NULL)
        dout_free(o);
    if (r != NULL)
        req_free(d, r);
}

static void deadline_due(uv_timer_t *t)
{
    df *d = t->data;
    seldon_pipeline_engine_advance(d->eng, now_ns());
    pump(d);
}

/* Takes the engine's events, then arms its deadline. */
static void pump(df *d)
{
    seldon_pipeline_event ev;
    int64_t dl, now;
    if (d->hard)
        return;
    if (d->batches != NULL) { /* batches whose requests have all timed out by now */
        dcall **pp = &d->batches;
        now = now_ns();
        while (*pp != NULL) {
            dcall *c = *pp;
            if (c->expires > now) {
                pp = &c->rnext;
                continue;
            }
            *pp = c->rnext;
            call_unlink(d, c);
            call_free(c);
        }
    }
    while (seldon_pipeline_engine_poll(&ev, d->eng) == 1) {
        if (ev.kind == SELDON_PIPELINE_EVENT_CALL)
            do_call(d, &ev);
        else
            do_end(d, &ev);
    }
    throttle(d);
    dl = seldon_pipeline_engine_deadline(d->eng);
    if (dl == INT64_MAX) {
        uv_timer_stop(&d->timer);
        return;
    }
    now = now_ns();
    uv_timer_start(&d->timer, deadline_due,
                   dl <= now ? 0 : (uint64_t)((dl - now + 999999) / 1000000), 0);
}

/* ------------------------------------------------------------ consuming */

static int header_value(rd_kafka_message_t *m, const char *name, const char **v, size_t *vl)
{
    rd_kafka_headers_t *kh = NULL;
    const void *val = NULL;
    if (rd_kafka_message_headers(m, &kh) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(kh, name, &val, vl) != RD_KAFKA_RESP_ERR_NO_ERROR || val == NULL)
        return 0;
    *v = val;
    return 1;
}

static dpl *find_pipeline(df *d, const char *name, size_t len)
{
    size_t i;
    for (i = 0; i < d->npls; i++)
        if (span_is(name, len, d->pls[i].name))
            return &d->pls[i];
    return NULL;
}

/* An error record for a request that never started (its input is then done). */
static void reject(df *d, rd_kafka_message_t *m, const char *pipeline, const char *why)
{
    char topic[SELDON_KAFKA_TOPIC_MAX + 1];
    dout *o = NULL;
    const char *kind = "input";
    if (topic_of(d, topic, SELDON_KAFKA_PIPELINE, pipeline, SELDON_KAFKA_OUTPUTS) != 0 ||
        (o = dout_new(OUT_ANSWER, topic, m->key, m->key_len)) == NULL ||
        (o->in_topic = sdd_strndup(rd_kafka_topic_name(m->rkt),
                                   strlen(rd_kafka_topic_name(m->rkt)))) == NULL) {
        if (o != NULL)
            dout_free(o);
        return; /* not done: consumed again */
    }
    o->in_partition = m->partition;
    o->in_offset = m->offset;
    o->in_gen = part_gen(d, o->in_topic, m->partition);
    o->error = 1;
    {
        rd_kafka_headers_t *kh = NULL;
        const char *name;
        const void *val;
        size_t idx, vl;
        if (rd_kafka_message_headers(m, &kh) == RD_KAFKA_RESP_ERR_NO_ERROR)
            for (idx = 0;
                 rd_kafka_header_get_all(kh, idx, &name, &val, &vl) == RD_KAFKA_RESP_ERR_NO_ERROR;
                 idx++)
                if (seldon_kafka_header_propagates(name, strlen(name)))
                    dout_header(o, name, strlen(name), val, vl);
    }
    dout_header(o, SELDON_KAFKA_H_PIPELINE, strlen(SELDON_KAFKA_H_PIPELINE), pipeline,
                strlen(pipeline));
    dout_header(o, SELDON_KAFKA_H_ERRORS, strlen(SELDON_KAFKA_H_ERRORS), pipeline,
                strlen(pipeline));
    dout_header(o, "seldon-error-kind", 17, kind, strlen(kind));
    if (seldon_buf_reserve(&o->value, strlen(why)) == 0) {
        memcpy(o->value.data, why, strlen(why));
        o->value.len = strlen(why);
    }
    sdd_log(SELDON_LOG_INFO, "%s: %.*s: %s", pipeline, (int)m->key_len, (const char *)m->key, why);
    emit(d, o);
}

static void on_request(df *d, rd_kafka_message_t *m, const char *topic, dpl *p)
{
    seldon_pipeline_header h[MAX_HEADERS];
    rd_kafka_headers_t *kh = NULL;
    seldon_msg *in = NULL;
    dreq *r = NULL;
    size_t nh = 0, idx, vl, b;
    const char *name;
    const void *val;
    char why[512];
    int rc;

    if (m->key == NULL || m->key_len == 0 || m->key_len > SELDON_KAFKA_KEY_MAX) {
        sdd_log(SELDON_LOG_WARN, "%s [%d] offset %lld: a request without a key: skipped", topic,
                (int)m->partition, (long long)m->offset);
        sdk_consumer_done(d->consumer, topic, m->partition, m->offset);
        return;
    }
    in = seldon_pipeline_engine_msg(d->eng, SELDON_MSG_REQUEST);
    if (in == NULL)
        return; /* not done: consumed again after a restart */
    rc = seldon_msg_decode_pb(in, m->payload, m->len, 0);
    if (rc != 0) {
        snprintf(why, sizeof(why), "%s: the record is not a ModelInferRequest: %s", p->name,
                 seldon_last_error());
        seldon_msg_free(in);
        reject(d, m, p->name, why);
        return;
    }
    if (rd_kafka_message_headers(m, &kh) == RD_KAFKA_RESP_ERR_NO_ERROR)
        for (idx = 0; nh < MAX_HEADERS && rd_kafka_header_get_all(kh, idx, &name, &val, &vl) ==
                                              RD_KAFKA_RESP_ERR_NO_ERROR;
             idx++) {
            size_t nl = strlen(name);
            if (val != NULL && seldon_kafka_header_propagates(name, nl) &&
                !span_is(name, nl, SELDON_KAFKA_H_PIPELINE))
                h[nh++] = (seldon_pipeline_header){name, nl, val, vl};
        }
    if (req_find(d, p->name, m->key, m->key_len, 0) != NULL) {
        /* The same request is live here (consumed again): its run answers it. */
        sdd_log(SELDON_LOG_DEBUG, "%s: %.*s is running already", p->name, (int)m->key_len,
                (const char *)m->key);
        seldon_msg_free(in);
        sdk_consumer_done(d->consumer, topic, m->partition, m->offset);
        return;
    }
    r = sdd_calloc(1, sizeof(*r));
    if (r == NULL || (r->pipeline = sdd_strndup(p->name, strlen(p->name))) == NULL ||
        (r->key = sdd_strndup(m->key, m->key_len)) == NULL ||
        (r->eid = sdd_malloc(m->key_len + 24)) == NULL ||
        (r->topic = sdd_strndup(topic, strlen(topic))) == NULL) {
        seldon_msg_free(in);
        if (r != NULL)
            req_free(d, r);
        return;
    }
    r->key_len = m->key_len;
    /* A run of its own in the engine: a cancelled run of the same key may linger there
       until its calls are answered. */
    memcpy(r->eid, m->key, m->key_len);
    r->eid_len = m->key_len +
                 (size_t)snprintf(r->eid + m->key_len, 24, "/%llu", (unsigned long long)++d->runs);
    r->partition = m->partition;
    r->offset = m->offset;
    r->gen = part_gen(d, topic, m->partition);
    rc = seldon_pipeline_engine_push(d->eng, p->name, r->eid, r->eid_len, h, nh, in, 0, now_ns());
    if (rc != 0) {
        snprintf(why, sizeof(why), "%s: %s", p->name, seldon_last_error());
        req_free(d, r);
        reject(d, m, p->name, why);
        return;
    }
    b = req_bucket(r->pipeline, r->key, r->key_len);
    r->next = d->reqs[b];
    d->reqs[b] = r;
    d->nreqs++;
    seldon_series_set(d->m_live, (double)d->nreqs);
}

/* A model's output or error record: the answer of a step call of ours, if any. */
static void on_answer(df *d, rd_kafka_message_t *m, const char *topic,
                      const seldon_kafka_topic_parts *tp)
{
    const char *pl = NULL, *model = NULL;
    size_t pl_len = 0, model_len = 0;
    dcall *c;
    uint64_t call_id;
    if (!header_value(m, SELDON_KAFKA_H_PIPELINE, &pl, &pl_len) ||
        find_pipeline(d, pl, pl_len) == NULL || m->key == NULL)
        goto done; /* another pipeline's, or no pipeline's */
    if (tp->kind == SELDON_KAFKA_ERRORS) {
        if (!header_value(m, SELDON_KAFKA_H_ERRORS, &model, &model_len))
            goto done;
    } else {
        model = tp->name;
        model_len = tp->name_len;
    }
    c = call_find(d, model, model_len, pl, pl_len, m->key, m->key_len);
    if (c == NULL) {
        seldon_series_add(d->m_ignored, 1);
        goto done; /* a call of a run that ended, or of another worker's */
    }
    call_id = c->call_id;
    call_drop(d, c);
    if (tp->kind == SELDON_KAFKA_ERRORS) {
        char text[1024];
        snprintf(text, sizeof(text), "%.*s", (int)(m->len > 1000 ? 1000 : m->len),
                 m->payload ? (const char *)m->payload : "");
        seldon_pipeline_engine_fail(d->eng, call_id, text, now_ns());
    } else {
        seldon_msg *resp = seldon_pipeline_engine_msg(d->eng, SELDON_MSG_RESPONSE);
        if (resp == NULL) {
            seldon_pipeline_engine_fail(d->eng, call_id, "out of memory", now_ns());
        } else if (seldon_msg_decode_pb(resp, m->payload, m->len, 0) != 0) {
            char text[600];
            snprintf(text, sizeof(text), "the output record is not a ModelInferResponse: %s",
                     seldon_last_error());
            seldon_msg_free(resp);
            seldon_pipeline_engine_fail(d->eng, call_id, text, now_ns());
        } else {
            seldon_pipeline_engine_answer(d->eng, call_id, resp, now_ns());
        }
    }
done:
    sdk_consumer_done(d->consumer, topic, m->partition, m->offset);
}

static void on_message(void *user_data, rd_kafka_message_t *m)
{
    df *d = user_data;
    const char *topic = rd_kafka_topic_name(m->rkt);
    seldon_kafka_topic_parts tp;
    if (d->hard) {
        rd_kafka_message_destroy(m);
        return;
    }
    if (seldon_kafka_topic_parse(&tp, topic, strlen(topic), d->cfg.kafka.prefix, d->cfg.kafka.ns) !=
        0) {
        sdk_consumer_done(d->consumer, topic, m->partition, m->offset);
    } else if (tp.kind == SELDON_KAFKA_PIPELINE && tp.io == SELDON_KAFKA_INPUTS) {
        dpl *p = find_pipeline(d, tp.name, tp.name_len);
        if (p != NULL)
            on_request(d, m, topic, p);
        else
            sdk_consumer_done(d->consumer, topic, m->partition, m->offset);
    } else if (tp.kind == SELDON_KAFKA_ERRORS ||
               (tp.kind == SELDON_KAFKA_MODEL && tp.io == SELDON_KAFKA_OUTPUTS)) {
        on_answer(d, m, topic, &tp);
    } else {
        sdk_consumer_done(d->consumer, topic, m->partition, m->offset);
    }
    rd_kafka_message_destroy(m);
    pump(d);
}

static void on_assigned(void *user_data, const char *topic, int32_t partition)
{
    df *d = user_data;
    dpart *p = part_get(d, topic, partition, 1);
    seldon_kafka_topic_parts tp;
    if (p != NULL) {
        p->gen = ++d->gens;
        p->inputs = seldon_kafka_topic_parse(&tp, topic, strlen(topic), d->cfg.kafka.prefix,
                                             d->cfg.kafka.ns) == 0 &&
                    tp.kind == SELDON_KAFKA_PIPELINE && tp.io == SELDON_KAFKA_INPUTS;
        if (p->inputs && d->paused) /* a new assignment fetches: not while paused */
            sdk_consumer_pause(d->consumer, topic, partition, 1);
    }
    seldon_series_set(d->m_partitions, (double)sdk_consumer_assigned(d->consumer));
}

/*
 * An inputs partition goes: its requests are cancelled here (silently: no answer is
 * produced), since their inputs are not committed and the partition's next owner runs
 * them again from the start.
 */
static void on_revoked(void *user_data, const char *topic, int32_t partition)
{
    df *d = user_data;
    dpart *p = part_get(d, topic, partition, 0);
    size_t b, n = 0;
    int64_t now = now_ns();
    if (p != NULL)
        p->gen = 0;
    seldon_series_set(d->m_partitions, (double)sdk_consumer_assigned(d->consumer));
    for (b = 0; b < NBUCKETS; b++) {
        dreq **pp = &d->reqs[b];
        while (*pp != NULL) {
            dreq *r = *pp;
            if (r->partition != partition || r->topic == NULL || strcmp(r->topic, topic) != 0) {
                pp = &r->next;
                continue;
            }
            *pp = r->next;
            d->nreqs--;
            seldon_pipeline_engine_cancel(d->eng, r->pipeline, r->eid, r->eid_len, now);
            req_free(d, r);
            n++;
        }
    }
    seldon_series_set(d->m_live, (double)d->nreqs);
    if (n > 0 && !d->hard) /* the back-pressure is judged again, outside this callback */
        uv_timer_start(&d->timer, deadline_due, 0, 0);
    if (n > 0)
        sdd_log(SELDON_LOG_INFO,
                "%s [%d] revoked: %zu request(s) in progress handed over (their next owner runs "
                "them again)",
                topic, (int)partition, n);
}

/* ------------------------------------------------------------ life cycle */

static int lookup(const seldon_pipeline **out, void *user_data, const char *name)
{
    df *d = user_data;
    dpl *p = find_pipeline(d, name, strlen(name));
    if (p == NULL)
        return SELDON_ENOTFOUND;
    *out = p->pl;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

typedef struct tlist {
    char **v;
    size_t n, cap;
} tlist;

static void tlist_free(tlist *l)
{
    size_t i;
    for (i = 0; i < l->n; i++)
        sdd_free(l->v[i]);
    sdd_free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

static int add_topic(df *d, tlist *l, int32_t kind, const char *name, int32_t io)
{
    char t[SELDON_KAFKA_TOPIC_MAX + 1];
    size_t i;
    int rc = topic_of(d, t, kind, name, io);
    if (rc != 0)
        return rc;
    for (i = 0; i < l->n; i++)
        if (strcmp(l->v[i], t) == 0)
            return 0;
    if (l->n == l->cap) {
        char **n = sdd_realloc(l->v, (l->cap * 2 + 8) * sizeof(char *));
        if (n == NULL)
            return SELDON_ENOMEM;
        l->v = n;
        l->cap = l->cap * 2 + 8;
    }
    if ((l->v[l->n] = sdd_strndup(t, strlen(t))) == NULL)
        return SELDON_ENOMEM;
    l->n++;
    return 0;
}

/* The topics the pipelines served need (none without a pipeline), sorted. */
static int topics_build(df *d, tlist *l)
{
    size_t i, k;
    int rc = 0;
    for (i = 0; rc == 0 && i < d->npls; i++) {
        rc = add_topic(d, l, SELDON_KAFKA_PIPELINE, d->pls[i].name, SELDON_KAFKA_INPUTS);
        for (k = 0; rc == 0 && k < seldon_pipeline_step_count(d->pls[i].pl); k++)
            rc = add_topic(d, l, SELDON_KAFKA_MODEL, seldon_pipeline_step_name(d->pls[i].pl, k),
                           SELDON_KAFKA_OUTPUTS);
    }
    if (rc == 0 && d->npls > 0)
        rc = add_topic(d, l, SELDON_KAFKA_ERRORS, NULL, 0);
    if (rc == 0 && l->n > 1)
        qsort(l->v, l->n, sizeof(char *), cmp_str);
    return rc;
}

/* The topics again after a change of pipelines: the consumer subscribes anew when they
   changed (a rebalance: requests of revoked partitions run again at their next owner). */
static void topics_refresh(df *d)
{
    tlist l = {NULL, 0, 0};
    size_t i;
    int same;
    if (topics_build(d, &l) != 0) {
        sdd_log(SELDON_LOG_ERROR, "topics: %s: the subscription stays", seldon_last_error());
        tlist_free(&l);
        return;
    }
    same = l.n == d->ntopics;
    for (i = 0; same && i < l.n; i++)
        same = strcmp(l.v[i], d->topics[i]) == 0;
    if (same) {
        tlist_free(&l);
        return;
    }
    for (i = 0; i < d->ntopics; i++)
        sdd_free(d->topics[i]);
    sdd_free(d->topics);
    d->topics = l.v;
    d->ntopics = l.n;
    if (d->consumer != NULL) {
        if (sdk_consumer_subscribe(d->consumer, (const char *const *)d->topics, d->ntopics) != 0)
            sdd_log(SELDON_LOG_ERROR, "subscribe: %s", seldon_last_error());
        else
            sdd_log(SELDON_LOG_INFO, "consuming %zu topic(s)", d->ntopics);
    }
}

static int pls_add(df *d, const char *name, uint32_t version, int file, seldon_pipeline *pl)
{
    if (d->npls == d->plcap) {
        dpl *n = sdd_realloc(d->pls, (d->plcap * 2 + 8) * sizeof(*n));
        if (n == NULL)
            return SELDON_ENOMEM;
        d->pls = n;
        d->plcap = d->plcap * 2 + 8;
    }
    if ((d->pls[d->npls].name = sdd_strndup(name, strlen(name))) == NULL)
        return SELDON_ENOMEM;
    d->pls[d->npls].version = version;
    d->pls[d->npls].file = file;
    d->pls[d->npls].pl = pl;
    d->npls++;
    return 0;
}

/* Compiles the pipelines of every --pipeline file, in the order of what reads what. */
static int load(df *d)
{
    seldon_manifest **ms = sdd_calloc(d->cfg.nfiles + 1, sizeof(*ms));
    size_t i, k;
    int rc = 0, progress;
    if (ms == NULL)
        return SELDON_ENOMEM;
    for (i = 0; i < d->cfg.nfiles && rc == 0; i++)
        rc = seldon_manifest_load(&ms[i], d->cfg.files[i]);
    for (progress = 1; rc == 0 && progress;) {
        progress = 0;
        for (i = 0; i < d->cfg.nfiles; i++)
            for (k = 0; rc == 0 && k < seldon_manifest_count(ms[i]); k++) {
                const seldon_resource *res = seldon_manifest_at(ms[i], k);
                seldon_pipeline *pl = NULL;
                if (res->kind != SELDON_KIND_PIPELINE ||
                    find_pipeline(d, res->name, strlen(res->name)) != NULL)
                    continue;
                if (seldon_pipeline_compile(&pl, res->name, &res->spec.pipeline, lookup, d) != 0)
                    continue;
                rc = pls_add(d, res->name, 0, 1, pl);
                if (rc != 0)
                    seldon_pipeline_free(pl);
                progress = 1;
            }
    }
    /* Whatever did not compile: its error, once more, for the log. */
    for (i = 0; rc == 0 && i < d->cfg.nfiles; i++)
        for (k = 0; rc == 0 && k < seldon_manifest_count(ms[i]); k++) {
            const seldon_resource *res = seldon_manifest_at(ms[i], k);
            seldon_pipeline *pl = NULL;
            if (res->kind != SELDON_KIND_PIPELINE ||
                find_pipeline(d, res->name, strlen(res->name)) != NULL)
                continue;
            rc = seldon_pipeline_compile(&pl, res->name, &res->spec.pipeline, lookup, d);
            seldon_pipeline_free(pl);
            if (rc == 0)
                rc = sdd_error(SELDON_EINVAL, "pipeline %s did not compile", res->name);
        }
    if (rc == 0 && d->npls == 0 && d->cfg.nfiles > 0)
        rc = sdd_error(SELDON_EINVAL, "--pipeline: no Pipeline in the files given");
    if (rc == 0) {
        tlist l = {NULL, 0, 0};
        rc = topics_build(d, &l);
        d->topics = l.v;
        d->ntopics = l.n;
    }
    for (i = 0; i < d->cfg.nfiles; i++)
        seldon_manifest_free(ms[i]);
    sdd_free(ms);
    return rc;
}

/* ------------------------------------------------------------ the scheduler's pipelines */

static void states_free(df *d)
{
    size_t i;
    for (i = 0; i < d->nstates; i++) {
        sdd_free(d->states[i].name);
        sdd_free(d->states[i].reason);
    }
    sdd_free(d->states);
    d->states = NULL;
    d->nstates = 0;
}

static const df_spec *spec_find(const df_spec *specs, size_t n, const char *name)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (strcmp(specs[i].name, name) == 0)
            return &specs[i];
    return NULL;
}

/* Compiles one spec against the pipelines here: 0, or the compiler's error. */
static int compile_spec(df *d, const df_spec *sp, seldon_pipeline **out)
{
    seldon_manifest *m = NULL;
    const seldon_resource *res;
    int rc = seldon_manifest_parse(&m, sp->spec, sp->spec_len, sp->name);
    *out = NULL;
    if (rc == 0) {
        res = seldon_manifest_at(m, 0);
        if (res == NULL || res->kind != SELDON_KIND_PIPELINE)
            rc = sdd_error(SELDON_EINVAL, "the spec is not a Pipeline");
        else
            rc = seldon_pipeline_compile(out, sp->name, &res->spec.pipeline, lookup, d);
    }
    seldon_manifest_free(m);
    return rc;
}

/* Takes pipeline i out of the engine and the table. SELDON_ESTATE while another reads it. */
static int withdraw(df *d, size_t i, int64_t now)
{
    int rc = seldon_pipeline_engine_remove(d->eng, d->pls[i].name, now);
    if (rc == SELDON_ESTATE)
        return rc;
    sdd_log(SELDON_LOG_INFO, "pipeline %s v%u: removed", d->pls[i].name, d->pls[i].version);
    sdd_free(d->pls[i].name);
    seldon_pipeline_free(d->pls[i].pl);
    d->pls[i] = d->pls[--d->npls];
    return 0;
}

/* 1 when the last set's states said this version failed already (logged then). */
static int df_was_failed(const df *d, const df_state *st)
{
    size_t i;
    for (i = 0; i < d->nstates; i++)
        if (!d->states[i].loaded && d->states[i].version == st->version &&
            strcmp(d->states[i].name, st->name) == 0)
            return 1;
    return 0;
}

int df_sync(df *d, const df_spec *specs, size_t n)
{
    int64_t now = now_ns();
    size_t i, k, left;
    int progress, changed = 0;
    char *gone = NULL;
    df_state *st = NULL;

    /* Withdrawn: gone from the set or of another version; then whatever reads them, to be
       compiled again against the new versions. */
    gone = sdd_calloc(d->npls + 1, 1);
    if (gone == NULL)
        return SELDON_ENOMEM;
    for (i = 0; i < d->npls; i++) {
        const df_spec *sp = spec_find(specs, n, d->pls[i].name);
        gone[i] = !d->pls[i].file && (sp == NULL || sp->version != d->pls[i].version);
    }
    for (progress = 1; progress;) {
        progress = 0;
        for (i = 0; i < d->npls; i++)
            for (k = 0; !gone[i] && !d->pls[i].file &&
                        k < seldon_pipeline_dependency_count(d->pls[i].pl);
                 k++) {
                size_t j;
                const char *dep = seldon_pipeline_dependency(d->pls[i].pl, k);
                for (j = 0; j < d->npls; j++)
                    if (gone[j] && strcmp(d->pls[j].name, dep) == 0) {
                        gone[i] = 1;
                        progress = 1;
                    }
            }
    }
    /* Readers first: the engine refuses to remove what another pipeline reads. */
    for (progress = 1; progress;) {
        progress = 0;
        for (i = d->npls; i-- > 0;)
            if (gone[i] && withdraw(d, i, now) == 0) {
                gone[i] = gone[d->npls]; /* withdraw moved the last entry here */
                gone[d->npls] = 0;
                progress = changed = 1;
            }
    }
    sdd_free(gone);
    /* New: compiled in the order of what reads what. */
    for (progress = 1; progress;) {
        progress = 0;
        for (i = 0; i < n; i++) {
            seldon_pipeline *pl = NULL;
            if (find_pipeline(d, specs[i].name, strlen(specs[i].name)) != NULL)
                continue;
            if (compile_spec(d, &specs[i], &pl) != 0)
                continue;
            if (seldon_pipeline_engine_add(d->eng, pl) != 0 ||
                pls_add(d, specs[i].name, specs[i].version, 0, pl) != 0) {
                sdd_log(SELDON_LOG_ERROR, "pipeline %s v%u: %s", specs[i].name, specs[i].version,
                        seldon_last_error());
                seldon_pipeline_engine_remove(d->eng, specs[i].name, now);
                seldon_pipeline_free(pl);
                continue;
            }
            sdd_log(SELDON_LOG_INFO, "pipeline %s v%u: running (%zu step(s))", specs[i].name,
                    specs[i].version, seldon_pipeline_step_count(pl));
            progress = changed = 1;
        }
    }
    /* What runs, and why the others do not. */
    st = sdd_calloc(n + 1, sizeof(*st));
    for (i = 0, left = 0; st != NULL && i < n; i++) {
        const dpl *p = find_pipeline(d, specs[i].name, strlen(specs[i].name));
        char why[600];
        seldon_pipeline *pl = NULL;
        why[0] = '\0';
        if (p != NULL && p->file) {
            snprintf(why, sizeof(why), "a --pipeline file's pipeline of that name runs here");
        } else if (p == NULL || p->version != specs[i].version) {
            int rc = compile_spec(d, &specs[i], &pl);
            seldon_pipeline_free(pl);
            snprintf(why, sizeof(why), "%s", rc != 0 ? seldon_last_error() : "not added");
        }
        st[i].name = sdd_strndup(specs[i].name, strlen(specs[i].name));
        st[i].version = specs[i].version;
        st[i].loaded = why[0] == '\0';
        st[i].reason = sdd_strndup(why, strlen(why));
        if (!st[i].loaded && !df_was_failed(d, &st[i]))
            sdd_log(SELDON_LOG_WARN, "pipeline %s v%u: failed: %s", specs[i].name,
                    specs[i].version, why);
        left += !st[i].loaded;
    }
    states_free(d);
    if (st != NULL) {
        d->states = st;
        d->nstates = n;
    }
    if (changed) {
        topics_refresh(d);
        seldon_series_set(d->m_pipelines, (double)d->npls);
    }
    pump(d); /* requests of removed pipelines end with an error record */
    if (st == NULL)
        return sdd_error(SELDON_ENOMEM, "pipeline states: out of memory");
    return changed;
}

size_t df_states(const df *d, const df_state **out)
{
    *out = d->states;
    return d->nstates;
}

static int add_series(seldon_series **out, seldon_metrics *reg, int32_t type, const char *name,
                      const char *help)
{
    seldon_metric *m = NULL;
    int rc = seldon_metrics_add(&m, reg, type, name, help, NULL, 0, NULL, 0);
    return rc != 0 ? rc : seldon_metric_series(out, m, NULL);
}

int df_new(df **out, const df_config *cfg, uv_loop_t *loop, seldon_metrics *metrics)
{
    seldon_pipeline_options o = SELDON_PIPELINE_OPTIONS_INIT;
    const seldon_pipeline **arr = NULL;
    seldon_metric *rec = NULL;
    const char *ln[1] = {"result"}, *ok[1] = {"ok"}, *er[1] = {"error"};
    size_t i;
    int rc = 0;
    df *d;
    *out = NULL;
    d = sdd_calloc(1, sizeof(*d));
    if (d == NULL)
        return SELDON_ENOMEM;
    d->cfg = *cfg;
    d->loop = loop;
    /* No files (seldon up --kafka, --scheduler-host): the pipelines come through df_sync(). */
    rc = load(d);
    if (rc == 0 && (arr = sdd_calloc(d->npls + 1, sizeof(*arr))) == NULL)
        rc = SELDON_ENOMEM;
    for (i = 0; rc == 0 && i < d->npls; i++)
        arr[i] = d->pls[i].pl;
    o.timeout_ms = (int64_t)cfg->timeout_ms;
    o.max_requests = cfg->max_requests;
    if (rc == 0)
        rc = seldon_pipeline_engine_new(&d->eng, arr, d->npls, &o);
    sdd_free(arr);
    if (rc == 0)
        rc = seldon_metrics_add(&rec, metrics, SELDON_METRIC_COUNTER,
                                "seldon_dataflow_requests_total",
                                "Pipeline requests answered (result=ok) or failed (result=error), "
                                "their record acknowledged",
                                ln, 1, NULL, 0);
    if (rc == 0)
        rc = seldon_metric_series(&d->m_ok, rec, ok);
    if (rc == 0)
        rc = seldon_metric_series(&d->m_err, rec, er);
    if (rc == 0)
        rc = add_series(&d->m_live, metrics, SELDON_METRIC_GAUGE, "seldon_dataflow_requests_live",
                        "Requests running in the engine");
    if (rc == 0)
        rc = add_series(&d->m_partitions, metrics, SELDON_METRIC_GAUGE,
                        "seldon_dataflow_partitions", "Partitions assigned (all topics)");
    if (rc == 0)
        rc = add_series(&d->m_retries, metrics, SELDON_METRIC_COUNTER,
                        "seldon_dataflow_produce_retries_total",
                        "Answers produced again after a refusal or a failed delivery");
    if (rc == 0)
        rc = add_series(&d->m_ignored, metrics, SELDON_METRIC_COUNTER,
                        "seldon_dataflow_answers_ignored_total",
                        "Model outputs of this worker's pipelines that answer no live call "
                        "(a run that ended, a request handed over)");
    if (rc == 0)
        rc = add_series(&d->m_pipelines, metrics, SELDON_METRIC_GAUGE, "seldon_dataflow_pipelines",
                        "Pipelines running (--pipeline files and the scheduler's)");
    if (rc != 0) {
        df_free(d);
        return rc;
    }
    seldon_series_set(d->m_pipelines, (double)d->npls);
    *out = d;
    return 0;
}

void df_start(void *arg)
{
    df *d = arg;
    sdk_consumer_cbs cbs = {on_message, on_assigned, on_revoked};
    size_t i;
    int rc;
    uv_timer_init(d->loop, &d->timer);
    d->timer.data = d;
    uv_timer_init(d->loop, &d->retry_timer);
    d->retry_timer.data = d;
    rc = sdk_producer_new(&d->producer, d->loop, &d->cfg.kafka, delivered, d);
    if (rc == 0)
        rc = sdk_consumer_new(&d->consumer, d->loop, &d->cfg.kafka, d->cfg.group, &cbs, d);
    if (rc == 0)
        rc = sdk_consumer_subscribe(d->consumer, (const char *const *)d->topics, d->ntopics);
    if (rc != 0) {
        sdd_log(SELDON_LOG_ERROR, "start-up failed: %s", seldon_last_error());
        exit(1);
    }
    for (i = 0; i < d->npls; i++)
        sdd_log(SELDON_LOG_INFO, "pipeline %s: %zu step(s)", d->pls[i].name,
                seldon_pipeline_step_count(d->pls[i].pl));
    sdd_log(SELDON_LOG_INFO, "serving: Kafka %s, group %s, %zu topic(s)",
            sdk_config_brokers(&d->cfg.kafka), d->cfg.group, d->ntopics);
}

static void one_closed(void *arg)
{
    df *d = arg;
    if (--d->closing_left == 0 && d->done != NULL)
        d->done(d->done_arg);
}

static void handle_closed(uv_handle_t *h)
{
    one_closed(h->data);
}

void df_stop(df *d, void (*done)(void *), void *arg)
{
    d->done = done;
    d->done_arg = arg;
    sdd_log(SELDON_LOG_INFO,
            "stopping: %zu request(s) in progress (not committed: run again by "
            "the next owner of their partitions)",
            d->nreqs);
    d->closing_left = 4;
    d->hard = 1; /* from here, nothing new is produced */
    /* Answers in flight first (delivered() marks their inputs done), then the commit. */
    sdk_producer_close(d->producer, d->cfg.grace_ms, one_closed, d);
    d->producer = NULL;
    sdk_consumer_close(d->consumer, one_closed, d);
    d->consumer = NULL;
    while (d->retry_head != NULL) {
        dout *o = d->retry_head;
        d->retry_head = o->next;
        dout_free(o);
    }
    d->retry_tail = NULL;
    uv_close((uv_handle_t *)&d->timer, handle_closed);
    uv_close((uv_handle_t *)&d->retry_timer, handle_closed);
}

void df_free(df *d)
{
    size_t i;
    if (d == NULL)
        return;
    for (i = 0; i < NBUCKETS; i++)
        while (d->reqs[i] != NULL) {
            dreq *r = d->reqs[i];
            d->reqs[i] = r->next;
            req_free(d, r);
        }
    for (i = 0; i < NBUCKETS; i++)
        while (d->calls[i] != NULL) {
            dcall *c = d->calls[i];
            d->calls[i] = c->next;
            call_free(c);
        }
    while (d->parts != NULL) {
        dpart *p = d->parts;
        d->parts = p->next;
        sdd_free(p->topic);
        sdd_free(p);
    }
    seldon_pipeline_engine_free(d->eng);
    for (i = 0; i < d->npls; i++) {
        sdd_free(d->pls[i].name);
        seldon_pipeline_free(d->pls[i].pl);
    }
    sdd_free(d->pls);
    states_free(d);
    for (i = 0; i < d->ntopics; i++)
        sdd_free(d->topics[i]);
    sdd_free(d->topics);
    sdd_free(d);
}

int df_kafka_defaults(sdk_config *c)
{
    size_t i;
    /* Co-partitioning: partition i of every topic goes to the same worker. */
    for (i = 0; i + 1 < c->n; i += 2)
        if (strcmp(c->props[i], "partition.assignment.strategy") == 0)
            return 0;
    return sdk_config_set(c, "partition.assignment.strategy", "range");
}

int df_holds(df *d, const char *pipeline)
{
    char t[SELDON_KAFKA_TOPIC_MAX + 1];
    dpart *p;
    if (find_pipeline(d, pipeline, strlen(pipeline)) == NULL ||
        topic_of(d, t, SELDON_KAFKA_PIPELINE, pipeline, SELDON_KAFKA_INPUTS) != 0)
        return 0;
    for (p = d->parts; p != NULL; p = p->next)
        if (p->gen != 0 && strcmp(p->topic, t) == 0)
            return 1;
    return 0;
}
