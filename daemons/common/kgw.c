/*
 * The pipeline gateway's Kafka side (kgw.h): the pipelines run on dataflow
 * workers (seldon-dataflow, or seldon up's own with --kafka), not here. Each
 * pipeline is served by plserve as a one-step pipeline whose step is "the
 * pipeline over Kafka" (sdkg_spec), so that plserve's REST, gRPC, asynchronous
 * mode, timeouts and status mapping are the same as in process; the step's call
 * (sdkg_call, in the plserve call hook) produces the request to
 * <prefix>.<ns>.pipeline.<p>.inputs with the key "<partition>.<p>.<request id>",
 * where partition is one of the pipeline's outputs topic that this gateway's
 * consumer holds, and waits for the record of that key on the outputs topic: an
 * answer (a ModelInferResponse) or an error record (seldon-pipeline-errors,
 * seldon-error-kind, the error text), passed on as is with sdp_call_fail_as().
 *
 * The producer, the consumer and the table of waiting calls live on the
 * control loop; a call's request is encoded on its ingress loop and posted
 * there, and an answer is posted back to the ingress loop to be decoded.
 *
 * A waiting call always ends: with its record; with a clear error when the
 * produce fails, when its partition is revoked by a rebalance of the gateways
 * (503: the record may still be answered, to the partition's next owner, which
 * has no one waiting) or when the gateway stops; or, past its request's
 * deadline, dropped here after plserve answered the timeout. A key answered
 * twice (a dataflow rebalance) is answered once: the first record ends the
 * wait and later ones find no one.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kgw.h"
#include "sdd.h"
#include "seldon/kafka.h"
#include "seldon/pipeline.h"

#define SDKG_BUCKETS 1024
#define SDKG_MAX_PARTS 256

typedef struct sdkg_wait sdkg_wait;
struct sdkg_wait {
    sdkg_wait *next;
    sdkg **slot;       /* the host's: the live client, or NULL */
    sdl_loops *loops;  /* the ingress loops */
    sdp_call *c;
    int loop; /* the ingress loop of the call */
    char *key;
    size_t key_len;
    char topic[SELDON_KAFKA_TOPIC_MAX + 1]; /* the outputs topic waited on */
    int32_t partition;
    int64_t deadline; /* sdp_mono_ns; 0: none */
    /* request, from the ingress loop */
    char pipeline[SELDON_ROUTES_NAME_MAX + 1];
    char rid[128];
    seldon_buf value;
    seldon_buf hbuf; /* header names (NUL-terminated) and values */
    size_t hoff[SDP_MAX_XHEADERS][3];
    size_t nh;
    /* answer, to the ingress loop */
    int error;
    int32_t kind;
    seldon_buf answer;
};

typedef struct sdkg_part {
    char topic[SELDON_KAFKA_TOPIC_MAX + 1];
    int32_t partition;
} sdkg_part;

struct sdkg {
    sdkg **slot;
    const sdk_config *kcfg;
    uv_loop_t *loop;
    sdk_producer *producer;
    sdk_consumer *consumer;
    uv_timer_t sweep;
    sdkg_wait *buckets[SDKG_BUCKETS];
    sdkg_part parts[SDKG_MAX_PARTS]; /* outputs partitions held */
    size_t nparts;
    uint32_t rr;
    uint64_t subscribed; /* a hash of the topics subscribed (0: none yet) */
    int closing;
};

static size_t bucket_of(const char *key, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    size_t i;
    for (i = 0; i < len; i++)
        h = (h ^ (unsigned char)key[i]) * 1099511628211ull;
    return (size_t)(h % SDKG_BUCKETS);
}

static sdkg_wait *wait_take(sdkg *k, const char *key, size_t len)
{
    sdkg_wait **pp = &k->buckets[bucket_of(key, len)];
    for (; *pp != NULL; pp = &(*pp)->next) {
        sdkg_wait *w = *pp;
        if (w->key_len == len && memcmp(w->key, key, len) == 0) {
            *pp = w->next;
            w->next = NULL;
            return w;
        }
    }
    return NULL;
}

static void wait_free(sdkg_wait *w)
{
    if (w == NULL)
        return;
    sdd_free(w->key);
    seldon_buf_free(&w->value);
    seldon_buf_free(&w->hbuf);
    seldon_buf_free(&w->answer);
    sdd_free(w);
}

static int32_t kind_of(const char *v, size_t n)
{
    static const struct {
        const char *name;
        int32_t kind;
    } kinds[] = {
        {"model", SELDON_PIPELINE_ERR_MODEL},       {"timeout", SELDON_PIPELINE_ERR_TIMEOUT},
        {"overflow", SELDON_PIPELINE_ERR_OVERFLOW}, {"no-output", SELDON_PIPELINE_ERR_NO_OUTPUT},
        {"revisits", SELDON_PIPELINE_ERR_REVISITS}, {"batch", SELDON_PIPELINE_ERR_BATCH},
        {"unloaded", SELDON_PIPELINE_ERR_UNLOADED}};
    size_t i;
    for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (strlen(kinds[i].name) == n && memcmp(kinds[i].name, v, n) == 0)
            return kinds[i].kind;
    return SELDON_PIPELINE_ERR_INTERNAL;
}

/* ---- ingress loop side ---- */

/* On the call's ingress loop: the answer decoded into the call's response. */
static void answer_on_loop(void *arg)
{
    sdkg_wait *w = arg;
    if (w->error) {
        seldon_buf_reserve(&w->answer, 1);
        w->answer.data[w->answer.len] = '\0';
        sdp_call_fail_as(w->c, w->kind, (const char *)w->answer.data);
    } else {
        int rc = seldon_msg_decode_pb(sdp_call_response(w->c), w->answer.data, w->answer.len, 0);
        if (rc == 0)
            sdp_call_done(w->c, 0, NULL, NULL, 0);
        else
            sdp_call_fail_as(w->c, SELDON_PIPELINE_ERR_INTERNAL, seldon_last_error());
    }
    wait_free(w);
}

/* Control loop: ends w's call with an error of kind (w is taken off the table). */
static void fail_wait(sdkg_wait *w, int32_t kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail_wait(sdkg_wait *w, int32_t kind, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    w->error = 1;
    w->kind = kind;
    w->answer.len = 0;
    if (seldon_buf_reserve(&w->answer, strlen(msg) + 1) == 0) {
        memcpy(w->answer.data, msg, strlen(msg));
        w->answer.len = strlen(msg);
    }
    if (sdl_loops_post(w->loops, w->loop, answer_on_loop, w) != 0)
        wait_free(w); /* the loops are stopping: the engine goes with them */
}

static void delivered(void *user_data, void *msg_opaque, int err, const char *why,
                      int32_t partition, int64_t offset)
{
    sdkg *k = user_data;
    char *key = msg_opaque; /* the record's key, ours */
    sdkg_wait *found;
    (void)partition;
    (void)offset;
    /* Failed while still waiting (not answered, not swept)? Then the request fails now. */
    if (err != 0 && key != NULL && (found = wait_take(k, key, strlen(key))) != NULL)
        fail_wait(found, SELDON_PIPELINE_ERR_UNLOADED,
                  "%s: the request could not be written to Kafka: %s", found->pipeline, why);
    sdd_free(key);
}

static void submit_on_ctl(void *arg)
{
    sdkg_wait *w = arg;
    sdkg *k = *w->slot;
    char in[SELDON_KAFKA_TOPIC_MAX + 1], key[SELDON_KAFKA_KEY_MAX + 1];
    sdk_header h[SDP_MAX_XHEADERS + 1];
    size_t i, nh = 0, kl = 0, n;
    char *opaque;
    int rc;
    if (k == NULL || k->closing) {
        fail_wait(w, SELDON_PIPELINE_ERR_UNLOADED, "%s: %s", w->pipeline,
                  "the gateway is stopping");
        return;
    }
    if (seldon_kafka_topic(w->topic, sizeof(w->topic), NULL, k->kcfg->prefix, k->kcfg->ns,
                           SELDON_KAFKA_PIPELINE, w->pipeline, SELDON_KAFKA_OUTPUTS) != 0 ||
        seldon_kafka_topic(in, sizeof(in), NULL, k->kcfg->prefix, k->kcfg->ns,
                           SELDON_KAFKA_PIPELINE, w->pipeline, SELDON_KAFKA_INPUTS) != 0) {
        fail_wait(w, SELDON_PIPELINE_ERR_INTERNAL, "%s: %s", w->pipeline, seldon_last_error());
        return;
    }
    /* One of the outputs partitions held here, in turn. */
    w->partition = -1;
    for (n = 0; n < k->nparts && w->partition < 0; n++) {
        sdkg_part *p = &k->parts[(k->rr + n) % k->nparts];
        if (strcmp(p->topic, w->topic) == 0) {
            w->partition = p->partition;
            k->rr = (uint32_t)((k->rr + n + 1) % k->nparts);
        }
    }
    if (w->partition < 0) {
        fail_wait(w, SELDON_PIPELINE_ERR_UNLOADED,
                  "%s: no partition of its outputs topic is assigned to this gateway yet (%s)",
                  w->pipeline, w->topic);
        return;
    }
    if (seldon_kafka_key(key, sizeof(key), &kl, w->partition, w->pipeline, w->rid) != 0 ||
        (w->key = sdd_strndup(key, kl)) == NULL) {
        fail_wait(w, SELDON_PIPELINE_ERR_INTERNAL, "%s: %s", w->pipeline, seldon_last_error());
        return;
    }
    w->key_len = kl;
    h[nh++] = (sdk_header){SELDON_KAFKA_H_PIPELINE, w->pipeline, strlen(w->pipeline)};
    for (i = 0; i < w->nh; i++)
        h[nh++] = (sdk_header){(const char *)w->hbuf.data + w->hoff[i][0],
                               w->hbuf.data + w->hoff[i][1], w->hoff[i][2]};
    w->next = k->buckets[bucket_of(key, kl)];
    k->buckets[bucket_of(key, kl)] = w;
    opaque = sdd_strndup(key, kl);
    rc = opaque == NULL ? SELDON_ENOMEM
                        : sdk_produce(k->producer, in, -1, key, kl, w->value.data, w->value.len, h,
                                      nh, opaque);
    if (rc != 0) {
        sdd_free(opaque);
        sdkg_wait *found = wait_take(k, key, kl);
        if (found != NULL)
            fail_wait(found, SELDON_PIPELINE_ERR_OVERFLOW,
                      "%s: the request could not be written to Kafka: %s", found->pipeline,
                      seldon_last_error());
        return;
    }
    seldon_buf_free(&w->value);
}

int sdkg_call(sdkg **slot, sdl_loops *loops, sdl_loops *ctl, sdp_call *c)
{
    const sdp_header *xs = NULL;
    size_t nx = sdp_call_headers(c, &xs), i;
    int ingress = sdl_loops_current(loops);
    sdkg_wait *w;
    if (ingress < 0)
        return sdd_error(SELDON_EINTERNAL, "not on an ingress loop");
    w = sdd_calloc(1, sizeof(*w));
    if (w == NULL)
        return sdd_error(SELDON_ENOMEM, "out of memory");
    w->slot = slot;
    w->loops = loops;
    w->c = c;
    w->loop = ingress;
    w->deadline = sdp_call_deadline(c);
    snprintf(w->pipeline, sizeof(w->pipeline), "%s", sdp_call_pipeline(c));
    for (i = 0; i < nx; i++) {
        size_t need = xs[i].name_len + 1 + xs[i].value_len;
        if (xs[i].name_len == 12 && memcmp(xs[i].name, "x-request-id", 12) == 0 &&
            w->rid[0] == '\0')
            snprintf(w->rid, sizeof(w->rid), "%.*s",
                     (int)(xs[i].value_len < sizeof(w->rid) ? xs[i].value_len : 0), xs[i].value);
        if (w->nh >= SDP_MAX_XHEADERS || seldon_buf_reserve(&w->hbuf, need) != 0)
            continue;
        w->hoff[w->nh][0] = w->hbuf.len;
        memcpy(w->hbuf.data + w->hbuf.len, xs[i].name, xs[i].name_len);
        w->hbuf.data[w->hbuf.len + xs[i].name_len] = '\0';
        w->hbuf.len += xs[i].name_len + 1;
        w->hoff[w->nh][1] = w->hbuf.len;
        w->hoff[w->nh][2] = xs[i].value_len;
        memcpy(w->hbuf.data + w->hbuf.len, xs[i].value, xs[i].value_len);
        w->hbuf.len += xs[i].value_len;
        w->nh++;
    }
    if (w->rid[0] == '\0' || strchr(w->rid, '.') != NULL) {
        wait_free(w);
        return sdd_error(SELDON_EINVAL, "x-request-id: missing, too long or holding a '.'");
    }
    if (seldon_msg_encode_pb(&w->value, sdp_call_msg(c), 0) != 0) {
        wait_free(w);
        return seldon_last_error_code();
    }
    if (sdl_loops_post(ctl, 0, submit_on_ctl, w) != 0) {
        wait_free(w);
        return sdd_error(SELDON_EUNAVAIL, "the gateway is stopping");
    }
    return 0;
}

/* ---- control loop: the consumer ---- */

static void on_message(void *user_data, rd_kafka_message_t *m)
{
    sdkg *k = user_data;
    const char *topic = rd_kafka_topic_name(m->rkt);
    rd_kafka_headers_t *hdrs = NULL;
    const void *kv = NULL;
    size_t kvl = 0;
    sdkg_wait *w = NULL;
    if (m->err == 0 && m->key != NULL && m->key_len > 0)
        w = wait_take(k, m->key, m->key_len);
    if (w != NULL && strcmp(w->topic, topic) != 0) {
        /* the same key on another topic: not ours (put back) */
        w->next = k->buckets[bucket_of(w->key, w->key_len)];
        k->buckets[bucket_of(w->key, w->key_len)] = w;
        w = NULL;
    }
    if (w != NULL) {
        w->answer.len = 0;
        if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR &&
            rd_kafka_header_get_last(hdrs, "seldon-error-kind", &kv, &kvl) ==
                RD_KAFKA_RESP_ERR_NO_ERROR) {
            w->error = 1;
            w->kind = kind_of(kv, kvl);
        } else if (hdrs != NULL && rd_kafka_header_get_last(hdrs, SELDON_KAFKA_H_ERRORS, &kv,
                                                            &kvl) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            w->error = 1;
            w->kind = SELDON_PIPELINE_ERR_MODEL;
        }
        if (m->len > 0 && seldon_buf_reserve(&w->answer, m->len + 1) == 0) {
            memcpy(w->answer.data, m->payload, m->len);
            w->answer.len = m->len;
        }
        if (sdl_loops_post(w->loops, w->loop, answer_on_loop, w) != 0)
            wait_free(w);
    }
    if (m->err == 0)
        sdk_consumer_done(k->consumer, topic, m->partition, m->offset);
    rd_kafka_message_destroy(m);
}

static void on_assigned(void *user_data, const char *topic, int32_t partition)
{
    sdkg *k = user_data;
    if (k->nparts < SDKG_MAX_PARTS && strlen(topic) <= SELDON_KAFKA_TOPIC_MAX) {
        snprintf(k->parts[k->nparts].topic, sizeof(k->parts[0].topic), "%s", topic);
        k->parts[k->nparts++].partition = partition;
    }
    sdd_log(SELDON_LOG_DEBUG, "kafka: %s [%d] assigned", topic, (int)partition);
}

static void on_revoked(void *user_data, const char *topic, int32_t partition)
{
    sdkg *k = user_data;
    size_t i;
    for (i = 0; i < k->nparts; i++)
        if (k->parts[i].partition == partition && strcmp(k->parts[i].topic, topic) == 0) {
            k->parts[i] = k->parts[--k->nparts];
            break;
        }
    /* Requests waiting on it end now with a clear error rather than never. */
    for (i = 0; i < SDKG_BUCKETS; i++) {
        sdkg_wait **pp = &k->buckets[i];
        while (*pp != NULL) {
            sdkg_wait *w = *pp;
            if (w->partition == partition && strcmp(w->topic, topic) == 0) {
                *pp = w->next;
                fail_wait(w, SELDON_PIPELINE_ERR_UNLOADED,
                          "%s: the gateway's partition was revoked by a rebalance while the "
                          "request ran (%s); it may still have run: retry with another "
                          "x-request-id",
                          w->pipeline, topic);
            } else {
                pp = &w->next;
            }
        }
    }
    sdd_log(SELDON_LOG_INFO, "kafka: %s [%d] revoked", topic, (int)partition);
}

/* Calls whose request timed out (plserve answered 504) are let go a little later. */
static void sweep(uv_timer_t *t)
{
    sdkg *k = t->data;
    int64_t now = sdp_mono_ns();
    size_t i;
    for (i = 0; i < SDKG_BUCKETS; i++) {
        sdkg_wait **pp = &k->buckets[i];
        while (*pp != NULL) {
            sdkg_wait *w = *pp;
            if (w->deadline > 0 && now > w->deadline + 200000000) {
                *pp = w->next;
                fail_wait(w, SELDON_PIPELINE_ERR_TIMEOUT, "%s: %s", w->pipeline, "timed out");
            } else {
                pp = &w->next;
            }
        }
    }
}

int sdkg_new(sdkg **slot, uv_loop_t *loop, const sdk_config *kcfg, const char *group)
{
    sdkg *k = sdd_calloc(1, sizeof(*k));
    static const sdk_consumer_cbs cbs = {on_message, on_assigned, on_revoked};
    int rc;
    if (k == NULL)
        return sdd_error(SELDON_ENOMEM, "out of memory");
    k->slot = slot;
    k->kcfg = kcfg;
    k->loop = loop;
    rc = sdk_producer_new(&k->producer, loop, kcfg, delivered, k);
    if (rc == 0)
        rc = sdk_consumer_new(&k->consumer, loop, kcfg, group, &cbs, k);
    if (rc != 0) {
        if (k->producer != NULL)
            sdk_producer_close(k->producer, 0, NULL, NULL);
        sdd_free(k);
        return rc;
    }
    uv_timer_init(loop, &k->sweep);
    k->sweep.data = k;
    uv_timer_start(&k->sweep, sweep, 100, 100);
    *slot = k;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void sdkg_subscribe(sdkg *k, const char *const *pipelines, size_t n)
{
    char **topics = sdd_calloc(n + 1, sizeof(*topics));
    size_t i, nt = 0;
    uint64_t h = 1469598103934665603ull;
    if (topics == NULL || k->closing)
        goto out;
    for (i = 0; i < n; i++) {
        char t[SELDON_KAFKA_TOPIC_MAX + 1];
        if (seldon_kafka_topic(t, sizeof(t), NULL, k->kcfg->prefix, k->kcfg->ns,
                               SELDON_KAFKA_PIPELINE, pipelines[i], SELDON_KAFKA_OUTPUTS) == 0 &&
            (topics[nt] = sdd_strndup(t, strlen(t))) != NULL)
            nt++;
    }
    /* The same topics again would only restart the group's rebalance. */
    if (nt > 1)
        qsort(topics, nt, sizeof(char *), cmp_str);
    for (i = 0; i < nt; i++) {
        const char *c;
        for (c = topics[i]; *c != '\0'; c++)
            h = (h ^ (unsigned char)*c) * 1099511628211ull;
        h = (h ^ ',') * 1099511628211ull;
    }
    h |= 1;
    if (h == k->subscribed)
        goto out;
    if (sdk_consumer_subscribe(k->consumer, (const char *const *)topics, nt) != 0)
        sdd_log(SELDON_LOG_ERROR, "kafka: subscribe: %s", seldon_last_error());
    else
        k->subscribed = h;
out:
    for (i = 0; i < nt; i++)
        sdd_free(topics[i]);
    sdd_free(topics);
}

static void closed_noop(void *arg)
{
    (void)arg;
}

static void timer_closed(uv_handle_t *h)
{
    sdd_free(h->data);
}

void sdkg_close(void *arg)
{
    sdkg *k = arg;
    size_t i;
    k->closing = 1;
    *k->slot = NULL; /* calls posted from now on fail (submit_on_ctl) */
    for (i = 0; i < SDKG_BUCKETS; i++)
        while (k->buckets[i] != NULL) {
            sdkg_wait *w = k->buckets[i];
            k->buckets[i] = w->next;
            fail_wait(w, SELDON_PIPELINE_ERR_UNLOADED, "%s: %s", w->pipeline,
                      "the gateway is stopping");
        }
    sdk_consumer_close(k->consumer, closed_noop, NULL);
    sdk_producer_close(k->producer, 1000, closed_noop, NULL);
    uv_timer_stop(&k->sweep);
    uv_close((uv_handle_t *)&k->sweep, timer_closed);
}

int sdkg_spec(seldon_buf *out, const char *pipeline)
{
    char tmp[600];
    int n = snprintf(tmp, sizeof(tmp),
                     "{\"apiVersion\":\"mlops.seldon.io/v1alpha1\",\"kind\":\"Pipeline\","
                     "\"metadata\":{\"name\":\"%s\"},\"spec\":{\"steps\":[{\"name\":\"%s-kafka\"}],"
                     "\"output\":{\"steps\":[\"%s-kafka\"]}}}",
                     pipeline, pipeline, pipeline);
    out->len = 0;
    if (n < 0 || (size_t)n >= sizeof(tmp) || seldon_buf_reserve(out, (size_t)n + 1) != 0)
        return sdd_error(SELDON_ETOOBIG, "pipeline name too long");
    memcpy(out->data, tmp, (size_t)n + 1);
    out->len = (size_t)n;
    return 0;
}

int sdkg_holds(const sdkg *k, const char *pipeline)
{
    char t[SELDON_KAFKA_TOPIC_MAX + 1];
    size_t i;
    if (k == NULL || seldon_kafka_topic(t, sizeof(t), NULL, k->kcfg->prefix, k->kcfg->ns,
                                        SELDON_KAFKA_PIPELINE, pipeline, SELDON_KAFKA_OUTPUTS) != 0)
        return 0;
    for (i = 0; i < k->nparts; i++)
        if (strcmp(k->parts[i].topic, t) == 0)
            return 1;
    return 0;
}
