/*
 * librdkafka on a libuv loop (kafka.h): configuration from flags, files and the
 * environment; a producer and a consumer whose queues are served on the loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "kafka.h"
#include "sdd.h"
#include "seldon/kafka.h"

#define SERVE_BATCH 256    /* events served per wake-up before yielding to the loop */
#define SAFETY_POLL_MS 100 /* the queues are served this often whatever the pipe says */
#define DEFAULT_BROKERS "localhost:9092"

/* ------------------------------------------------------------ configuration */

int sdk_config_set(sdk_config *c, const char *key, const char *value)
{
    char *k, *v;
    if (c == NULL || key == NULL || value == NULL || key[0] == '\0')
        return sdd_error(SELDON_EINVAL, "kafka config: empty property name");
    if (c->n + 2 > c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        char **p = sdd_realloc(c->props, cap * sizeof(char *));
        if (p == NULL)
            return SELDON_ENOMEM;
        c->props = p;
        c->cap = cap;
    }
    k = sdd_strndup(key, strlen(key));
    v = sdd_strndup(value, strlen(value));
    if (k == NULL || v == NULL) {
        sdd_free(k);
        sdd_free(v);
        return SELDON_ENOMEM;
    }
    c->props[c->n++] = k;
    c->props[c->n++] = v;
    return 0;
}

void sdk_config_free(sdk_config *c)
{
    size_t i;
    if (c == NULL)
        return;
    for (i = 0; i < c->n; i++)
        sdd_free(c->props[i]);
    sdd_free(c->props);
    c->props = NULL;
    c->n = c->cap = 0;
}

static char *trim(char *s)
{
    char *e;
    while (*s == ' ' || *s == '\t')
        s++;
    e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
        *--e = '\0';
    return s;
}

/* "key=value" into the config; line is modified. */
static int set_line(sdk_config *c, char *line, const char *where)
{
    char *eq = strchr(line, '='), *k, *v;
    if (eq == NULL)
        return sdd_error(SELDON_EPARSE, "%s: expected KEY=VALUE", where);
    *eq = '\0';
    k = trim(line);
    v = trim(eq + 1);
    if (k[0] == '\0')
        return sdd_error(SELDON_EPARSE, "%s: empty property name", where);
    return sdk_config_set(c, k, v);
}

int sdk_config_file(sdk_config *c, const char *path)
{
    char line[8192], where[4200];
    FILE *f = fopen(path, "r");
    int no = 0, rc = 0;
    if (f == NULL)
        return sdd_error(SELDON_EIO, "%s: %s", path, strerror(errno));
    while (rc == 0 && fgets(line, sizeof(line), f) != NULL) {
        char *s = trim(line);
        no++;
        if (s[0] == '\0' || s[0] == '#' || s[0] == '!')
            continue;
        snprintf(where, sizeof(where), "%s:%d", path, no);
        rc = set_line(c, s, where);
    }
    fclose(f);
    return rc;
}

int sdk_flag_property(void *dest, const char *value)
{
    char buf[8192];
    if (strlen(value) >= sizeof(buf))
        return -1;
    snprintf(buf, sizeof(buf), "%s", value);
    return set_line(dest, buf, "--kafka-config") == 0 ? 0 : -1;
}

int sdk_flag_file(void *dest, const char *value)
{
    int rc = sdk_config_file(dest, value);
    if (rc != 0)
        fprintf(stderr, "%s\n", seldon_last_error());
    return rc == 0 ? 0 : -1;
}

int sdk_flag_broker(void *dest, const char *value)
{
    if (value[0] == '\0' || strchr(value, ' ') != NULL)
        return -1;
    ((sdk_config *)dest)->broker = value;
    return 0;
}

int sdk_flag_topic_part(void *dest, const char *value)
{
    if (!seldon_kafka_name_ok(value, strlen(value)))
        return -1;
    *(const char **)dest = value;
    return 0;
}

const char *sdk_config_brokers(const sdk_config *c)
{
    const char *b = NULL, *env;
    size_t i;
    if (c->broker != NULL)
        return c->broker;
    for (i = 0; i + 1 < c->n; i += 2)
        if (strcmp(c->props[i], "bootstrap.servers") == 0 ||
            strcmp(c->props[i], "metadata.broker.list") == 0)
            b = c->props[i + 1];
    if (b != NULL)
        return b;
    env = getenv("SELDON_KAFKA_BROKER");
    return env != NULL && env[0] != '\0' ? env : DEFAULT_BROKERS;
}

static int conf_put(rd_kafka_conf_t *conf, const char *k, const char *v)
{
    char err[512];
    if (rd_kafka_conf_set(conf, k, v, err, sizeof(err)) != RD_KAFKA_CONF_OK)
        return sdd_error(SELDON_EINVAL, "kafka property %s: %s", k, err);
    return 0;
}

/* librdkafka's log lines at our levels; they come from its threads (sdd_log is thread-safe). */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    int32_t l = level <= LOG_ERR       ? SELDON_LOG_ERROR
                : level <= LOG_WARNING ? SELDON_LOG_WARN
                : level <= LOG_INFO    ? SELDON_LOG_INFO
                                       : SELDON_LOG_DEBUG;
    /* One configuration serves both roles: the other role's properties are expected. */
    if (strcmp(fac, "CONFWARN") == 0 && (strstr(buf, "is a consumer property") != NULL ||
                                         strstr(buf, "is a producer property") != NULL))
        l = SELDON_LOG_DEBUG;
    sdd_log(l, "librdkafka %s %s: %s", rd_kafka_name(rk), fac, buf);
}

int sdk_conf_build(rd_kafka_conf_t **out, const sdk_config *c, int consumer)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *env = getenv("SELDON_KAFKA_BROKER");
    size_t i;
    int rc = 0;
    *out = NULL;
    if (conf == NULL)
        return SELDON_ENOMEM;
    rc = conf_put(conf, "bootstrap.servers", DEFAULT_BROKERS);
    if (rc == 0 && env != NULL && env[0] != '\0')
        rc = conf_put(conf, "bootstrap.servers", env);
    if (rc == 0 && consumer) {
        static const char *const d[] = {"enable.auto.commit", "false", "enable.auto.offset.store",
                                        "false", "auto.offset.reset", "earliest",
                                        "partition.assignment.strategy", "roundrobin",
                                        /* the development broker has no CreateTopics */
                                        "allow.auto.create.topics", "true"};
        for (i = 0; i < sizeof(d) / sizeof(d[0]) && rc == 0; i += 2)
            rc = conf_put(conf, d[i], d[i + 1]);
    } else if (rc == 0) {
        static const char *const d[] = {"enable.idempotence", "true", "linger.ms", "0"};
        for (i = 0; i < sizeof(d) / sizeof(d[0]) && rc == 0; i += 2)
            rc = conf_put(conf, d[i], d[i + 1]);
    }
    for (i = 0; i + 1 < c->n && rc == 0; i += 2)
        rc = conf_put(conf, c->props[i], c->props[i + 1]);
    if (rc == 0 && c->broker != NULL)
        rc = conf_put(conf, "bootstrap.servers", c->broker);
    if (rc != 0) {
        rd_kafka_conf_destroy(conf);
        return rc;
    }
    rd_kafka_conf_set_log_cb(conf, log_cb);
    *out = conf;
    return 0;
}

/* ------------------------------------------------------------ queue wake-ups */

/* What a producer and a consumer share: a queue served on the loop. */
typedef struct waker {
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    int fds[2];
    uv_poll_t poll;
    uv_timer_t timer;
    int handles; /* open handles, while closing */
    void (*serve)(struct waker *w);
    void (*closed)(struct waker *w);
} waker;

static void drain_pipe(int fd)
{
    char buf[64];
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
}

static void on_readable(uv_poll_t *h, int status, int events)
{
    waker *w = h->data;
    (void)status;
    (void)events;
    drain_pipe(w->fds[0]);
    w->serve(w);
}

static void on_tick(uv_timer_t *t)
{
    waker *w = t->data;
    w->serve(w);
}

static int waker_start(waker *w, uv_loop_t *loop, rd_kafka_queue_t *q)
{
    w->q = q;
    w->fds[0] = w->fds[1] = -1;
    if (pipe2(w->fds, O_NONBLOCK | O_CLOEXEC) != 0)
        return sdd_error(SELDON_EIO, "kafka: pipe: %s", strerror(errno));
    rd_kafka_queue_io_event_enable(q, w->fds[1], "1", 1);
    uv_poll_init(loop, &w->poll, w->fds[0]);
    w->poll.data = w;
    uv_poll_start(&w->poll, UV_READABLE, on_readable);
    uv_timer_init(loop, &w->timer);
    w->timer.data = w;
    uv_timer_start(&w->timer, on_tick, SAFETY_POLL_MS, SAFETY_POLL_MS);
    return 0;
}

static void waker_handle_closed(uv_handle_t *h)
{
    waker *w = h->data;
    if (--w->handles == 0)
        w->closed(w);
}

/* Stops the wake-ups (the queue must be released by the caller first). */
static void waker_close(waker *w)
{
    w->handles = 2;
    uv_close((uv_handle_t *)&w->poll, waker_handle_closed);
    uv_close((uv_handle_t *)&w->timer, waker_handle_closed);
}

static void waker_fds_close(waker *w)
{
    if (w->fds[0] >= 0)
        close(w->fds[0]);
    if (w->fds[1] >= 0)
        close(w->fds[1]);
    w->fds[0] = w->fds[1] = -1;
}

/* ------------------------------------------------------------ producer */

struct sdk_producer {
    waker w; /* first: the waker's callbacks cast back */
    sdk_delivered_fn delivered;
    void *user_data;
    size_t pending;
    void (*done)(void *);
    void *done_arg;
};

/* Seldon keys name the partition of the waiting gateway; others hash as librdkafka does. */
static int32_t partitioner(const rd_kafka_topic_t *rkt, const void *key, size_t keylen,
                           int32_t partition_cnt, void *rkt_opaque, void *msg_opaque)
{
    int32_t p = seldon_kafka_key_partition(key, keylen, partition_cnt);
    if (p >= 0)
        return p;
    return rd_kafka_msg_partitioner_murmur2_random(rkt, key, keylen, partition_cnt, rkt_opaque,
                                                   msg_opaque);
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    sdk_producer *p = opaque;
    (void)rk;
    p->pending--;
    p->delivered(p->user_data, m->_private, (int)m->err, m->err ? rd_kafka_err2str(m->err) : NULL,
                 m->partition, m->offset);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)opaque;
    if (rd_kafka_fatal_error(rk, NULL, 0) != RD_KAFKA_RESP_ERR_NO_ERROR)
        sdd_log(SELDON_LOG_ERROR, "kafka %s: fatal: %s: %s", rd_kafka_name(rk),
                rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
    else
        sdd_log(err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN ? SELDON_LOG_WARN : SELDON_LOG_INFO,
                "kafka %s: %s: %s", rd_kafka_name(rk), rd_kafka_err2name((rd_kafka_resp_err_t)err),
                reason);
}

static void producer_serve(waker *w)
{
    rd_kafka_poll(w->rk, 0);
}

int sdk_producer_new(sdk_producer **out, uv_loop_t *loop, const sdk_config *c,
                     sdk_delivered_fn delivered, void *user_data)
{
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_topic_conf_t *tc;
    sdk_producer *p;
    char err[512];
    int rc;
    *out = NULL;
    p = sdd_calloc(1, sizeof(*p));
    if (p == NULL)
        return SELDON_ENOMEM;
    p->delivered = delivered;
    p->user_data = user_data;
    p->w.serve = producer_serve;
    if ((rc = sdk_conf_build(&conf, c, 0)) != 0) {
        sdd_free(p);
        return rc;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_opaque(conf, p);
    tc = rd_kafka_topic_conf_new();
    rd_kafka_topic_conf_set_partitioner_cb(tc, partitioner);
    rd_kafka_conf_set_default_topic_conf(conf, tc);
    p->w.rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (p->w.rk == NULL) {
        rd_kafka_conf_destroy(conf);
        sdd_free(p);
        return sdd_error(SELDON_EINVAL, "kafka producer: %s", err);
    }
    if ((rc = waker_start(&p->w, loop, rd_kafka_queue_get_main(p->w.rk))) != 0) {
        rd_kafka_queue_destroy(p->w.q);
        rd_kafka_destroy(p->w.rk);
        waker_fds_close(&p->w);
        sdd_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

int sdk_produce(sdk_producer *p, const char *topic, int32_t partition, const void *key,
                size_t key_len, const void *value, size_t value_len, const sdk_header *h, size_t nh,
                void *msg_opaque)
{
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(nh ? nh : 1);
    rd_kafka_resp_err_t e;
    size_t i;
    if (hdrs == NULL)
        return SELDON_ENOMEM;
    for (i = 0; i < nh; i++)
        rd_kafka_header_add(hdrs, h[i].name, -1, h[i].value, (ssize_t)h[i].value_len);
    e = rd_kafka_producev(p->w.rk, RD_KAFKA_V_TOPIC(topic),
                          RD_KAFKA_V_PARTITION(partition < 0 ? RD_KAFKA_PARTITION_UA : partition),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                          RD_KAFKA_V_KEY((void *)key, key_len),
                          RD_KAFKA_V_VALUE((void *)value, value_len), RD_KAFKA_V_HEADERS(hdrs),
                          RD_KAFKA_V_OPAQUE(msg_opaque), RD_KAFKA_V_END);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_headers_destroy(hdrs); /* ownership passes on success only */
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            return sdd_error(SELDON_EUNAVAIL, "kafka: %s: producer queue full", topic);
        return sdd_error(SELDON_EIO, "kafka: %s: %s", topic, rd_kafka_err2str(e));
    }
    p->pending++;
    return 0;
}

size_t sdk_producer_pending(const sdk_producer *p)
{
    return p->pending;
}

static void producer_closed(waker *w)
{
    sdk_producer *p = (sdk_producer *)w;
    void (*done)(void *) = p->done;
    void *arg = p->done_arg;
    rd_kafka_destroy(w->rk);
    waker_fds_close(w);
    sdd_free(p);
    if (done != NULL)
        done(arg);
}

void sdk_producer_close(sdk_producer *p, uint64_t flush_ms, void (*done)(void *), void *arg)
{
    if (p == NULL) {
        if (done != NULL)
            done(arg);
        return;
    }
    p->done = done;
    p->done_arg = arg;
    if (rd_kafka_flush(p->w.rk, (int)(flush_ms > 3600000 ? 3600000 : flush_ms)) != 0)
        sdd_log(SELDON_LOG_WARN, "kafka: %zu record(s) not delivered before the flush ended",
                p->pending);
    rd_kafka_purge(p->w.rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(p->w.rk, 0); /* their reports, with errors */
    rd_kafka_queue_io_event_enable(p->w.q, -1, NULL, 0);
    rd_kafka_queue_destroy(p->w.q);
    p->w.closed = producer_closed;
    waker_close(&p->w);
}

/* ------------------------------------------------------------ consumer */

typedef struct part {
    char *topic;
    int32_t partition;
    seldon_kafka_offsets *offsets;
    int64_t commit;    /* the offset to commit next, -1: none new */
    int64_t committed; /* the last one asked for */
    struct part *next;
} part;

struct sdk_consumer {
    waker w;
    sdk_consumer_cbs cbs;
    void *user_data;
    part *parts;
    size_t nparts;
    uv_timer_t commit_timer;
    uint64_t commit_ms;
    void (*done)(void *);
    void *done_arg;
    int closing;
};

static part *find_part(sdk_consumer *c, const char *topic, int32_t partition)
{
    part *p;
    for (p = c->parts; p != NULL; p = p->next)
        if (p->partition == partition && strcmp(p->topic, topic) == 0)
            return p;
    return NULL;
}

static void free_part(part *p)
{
    seldon_kafka_offsets_free(p->offsets);
    sdd_free(p->topic);
    sdd_free(p);
}

/* The offsets to commit now for the partitions in only (NULL: all); NULL if none. */
static rd_kafka_topic_partition_list_t *to_commit(sdk_consumer *c,
                                                  const rd_kafka_topic_partition_list_t *only)
{
    rd_kafka_topic_partition_list_t *l = NULL;
    part *p;
    for (p = c->parts; p != NULL; p = p->next) {
        if (p->commit < 0 || p->commit == p->committed)
            continue;
        if (only != NULL &&
            rd_kafka_topic_partition_list_find(only, p->topic, p->partition) == NULL)
            continue;
        if (l == NULL)
            l = rd_kafka_topic_partition_list_new(4);
        rd_kafka_topic_partition_list_add(l, p->topic, p->partition)->offset = p->commit;
        p->committed = p->commit;
    }
    return l;
}

static void commit_now(sdk_consumer *c, const rd_kafka_topic_partition_list_t *only, int async)
{
    rd_kafka_topic_partition_list_t *l = to_commit(c, only);
    rd_kafka_resp_err_t e;
    if (l == NULL)
        return;
    e = rd_kafka_commit(c->w.rk, l, async);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        sdd_log(SELDON_LOG_WARN, "kafka: commit: %s (the records will be consumed again)",
                rd_kafka_err2str(e));
    rd_kafka_topic_partition_list_destroy(l);
}

void sdk_consumer_commit(sdk_consumer *c)
{
    commit_now(c, NULL, 1);
}

static void on_commit_tick(uv_timer_t *t)
{
    sdk_consumer_commit(t->data);
}

static void assigned(sdk_consumer *c, rd_kafka_topic_partition_list_t *l)
{
    int i;
    for (i = 0; i < l->cnt; i++) {
        const char *topic = l->elems[i].topic;
        int32_t partition = l->elems[i].partition;
        part *p;
        if (find_part(c, topic, partition) != NULL)
            continue;
        p = sdd_calloc(1, sizeof(*p));
        if (p == NULL || (p->topic = sdd_strndup(topic, strlen(topic))) == NULL ||
            seldon_kafka_offsets_new(&p->offsets) != 0) {
            if (p != NULL)
                free_part(p);
            sdd_log(SELDON_LOG_ERROR, "kafka: %s [%d]: out of memory", topic, (int)partition);
            continue;
        }
        p->partition = partition;
        p->commit = p->committed = -1;
        p->next = c->parts;
        c->parts = p;
        c->nparts++;
        sdd_log(SELDON_LOG_INFO, "kafka: assigned %s [%d]", topic, (int)partition);
        if (c->cbs.on_assigned != NULL)
            c->cbs.on_assigned(c->user_data, topic, partition);
    }
}

static void revoked(sdk_consumer *c, rd_kafka_topic_partition_list_t *l)
{
    part **pp;
    /* What is done is committed before another member takes the partitions over. */
    commit_now(c, l, 0);
    for (pp = &c->parts; *pp != NULL;) {
        part *p = *pp;
        if (rd_kafka_topic_partition_list_find(l, p->topic, p->partition) == NULL) {
            pp = &p->next;
            continue;
        }
        *pp = p->next;
        c->nparts--;
        sdd_log(SELDON_LOG_INFO, "kafka: revoked %s [%d]: %zu record(s) in flight", p->topic,
                (int)p->partition, seldon_kafka_offsets_pending(p->offsets));
        if (c->cbs.on_revoked != NULL)
            c->cbs.on_revoked(c->user_data, p->topic, p->partition);
        free_part(p);
    }
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *l, void *opaque)
{
    sdk_consumer *c = opaque;
    int coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    rd_kafka_error_t *e = NULL;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        assigned(c, l);
        if (coop)
            e = rd_kafka_incremental_assign(rk, l);
        else
            rd_kafka_assign(rk, l);
        /* A partition paused by its last owner here fetches again. */
        rd_kafka_resume_partitions(rk, l);
    } else {
        revoked(c, l);
        if (coop)
            e = rd_kafka_incremental_unassign(rk, l);
        else
            rd_kafka_assign(rk, NULL);
    }
    if (e != NULL) {
        sdd_log(SELDON_LOG_ERROR, "kafka: rebalance: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
}

static void consumer_serve(waker *w)
{
    sdk_consumer *c = (sdk_consumer *)w;
    int i;
    if (c->closing)
        return;
    for (i = 0; i < SERVE_BATCH; i++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(w->rk, 0);
        part *p;
        if (m == NULL)
            return;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                sdd_log(SELDON_LOG_WARN, "kafka: consumer: %s%s%s",
                        m->rkt ? rd_kafka_topic_name(m->rkt) : "", m->rkt ? ": " : "",
                        rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        p = find_part(c, rd_kafka_topic_name(m->rkt), m->partition);
        if (p == NULL || seldon_kafka_offsets_add(p->offsets, m->offset) != 0) {
            /* Not ours (any more), or seen already (a resumed fetch): not handed over twice. */
            rd_kafka_message_destroy(m);
            continue;
        }
        c->cbs.on_message(c->user_data, m);
    }
    /* More may be queued, and the pipe only says when the queue stops being empty. */
    uv_timer_start(&w->timer, on_tick, 0, SAFETY_POLL_MS);
}

int sdk_consumer_new(sdk_consumer **out, uv_loop_t *loop, const sdk_config *cfg,
                     const char *group_id, const sdk_consumer_cbs *cbs, void *user_data)
{
    rd_kafka_conf_t *conf = NULL;
    sdk_consumer *c;
    char err[512];
    int rc;
    *out = NULL;
    c = sdd_calloc(1, sizeof(*c));
    if (c == NULL)
        return SELDON_ENOMEM;
    c->cbs = *cbs;
    c->user_data = user_data;
    c->w.serve = consumer_serve;
    c->commit_ms = cfg->commit_interval_ms ? cfg->commit_interval_ms : 1000;
    if ((rc = sdk_conf_build(&conf, cfg, 1)) != 0) {
        sdd_free(c);
        return rc;
    }
    if ((rc = conf_put(conf, "group.id", group_id)) != 0) {
        rd_kafka_conf_destroy(conf);
        sdd_free(c);
        return rc;
    }
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
    rd_kafka_conf_set_opaque(conf, c);
    c->w.rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (c->w.rk == NULL) {
        rd_kafka_conf_destroy(conf);
        sdd_free(c);
        return sdd_error(SELDON_EINVAL, "kafka consumer: %s", err);
    }
    /* Rebalances, errors and logs come through the consumer queue too. */
    rd_kafka_poll_set_consumer(c->w.rk);
    if ((rc = waker_start(&c->w, loop, rd_kafka_queue_get_consumer(c->w.rk))) != 0) {
        rd_kafka_queue_destroy(c->w.q);
        rd_kafka_destroy(c->w.rk);
        waker_fds_close(&c->w);
        sdd_free(c);
        return rc;
    }
    uv_timer_init(loop, &c->commit_timer);
    c->commit_timer.data = c;
    uv_timer_start(&c->commit_timer, on_commit_tick, c->commit_ms, c->commit_ms);
    *out = c;
    return 0;
}

int sdk_consumer_subscribe(sdk_consumer *c, const char *const *topics, size_t n)
{
    rd_kafka_topic_partition_list_t *l;
    rd_kafka_resp_err_t e;
    size_t i;
    if (n == 0) {
        e = rd_kafka_unsubscribe(c->w.rk);
    } else {
        l = rd_kafka_topic_partition_list_new((int)n);
        for (i = 0; i < n; i++)
            rd_kafka_topic_partition_list_add(l, topics[i], RD_KAFKA_PARTITION_UA);
        e = rd_kafka_subscribe(c->w.rk, l);
        rd_kafka_topic_partition_list_destroy(l);
    }
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        return sdd_error(SELDON_EIO, "kafka: subscribe: %s", rd_kafka_err2str(e));
    return 0;
}

void sdk_consumer_done(sdk_consumer *c, const char *topic, int32_t partition, int64_t offset)
{
    part *p = find_part(c, topic, partition);
    int64_t commit;
    if (p == NULL || seldon_kafka_offsets_done(&commit, p->offsets, offset) != 0)
        return;
    if (commit >= 0)
        p->commit = commit;
}

void sdk_consumer_pause(sdk_consumer *c, const char *topic, int32_t partition, int pause)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition);
    if (pause)
        rd_kafka_pause_partitions(c->w.rk, l);
    else
        rd_kafka_resume_partitions(c->w.rk, l);
    rd_kafka_topic_partition_list_destroy(l);
}

size_t sdk_consumer_assigned(const sdk_consumer *c)
{
    return c->nparts;
}

static void consumer_closed(waker *w)
{
    sdk_consumer *c = (sdk_consumer *)w;
    void (*done)(void *) = c->done;
    void *arg = c->done_arg;
    rd_kafka_destroy(w->rk);
    waker_fds_close(w);
    while (c->parts != NULL) {
        part *p = c->parts;
        c->parts = p->next;
        free_part(p);
    }
    sdd_free(c);
    if (done != NULL)
        done(arg);
}

static void commit_timer_closed(uv_handle_t *h)
{
    sdk_consumer *c = h->data;
    c->w.closed = consumer_closed;
    waker_close(&c->w);
}

void sdk_consumer_close(sdk_consumer *c, void (*done)(void *), void *arg)
{
    rd_kafka_resp_err_t e;
    if (c == NULL) {
        if (done != NULL)
            done(arg);
        return;
    }
    c->done = done;
    c->done_arg = arg;
    commit_now(c, NULL, 0);
    /* Leaving the group runs the revocation (its commit included) right here. */
    e = rd_kafka_consumer_close(c->w.rk);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        sdd_log(SELDON_LOG_WARN, "kafka: leaving the group: %s", rd_kafka_err2str(e));
    c->closing = 1;
    rd_kafka_queue_io_event_enable(c->w.q, -1, NULL, 0);
    rd_kafka_queue_destroy(c->w.q);
    uv_close((uv_handle_t *)&c->commit_timer, commit_timer_closed);
}
