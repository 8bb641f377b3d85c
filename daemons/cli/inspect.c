/*
 * seldon pipeline inspect: the last records of a pipeline's Kafka topics, as
 * upstream's CLI prints them (docs/cli.md). The expression names the topics:
 *
 *   <p>                       every step's model inputs and outputs, then the pipeline's
 *   <p>.inputs|outputs[.<t>]  the pipeline's topic
 *   <p>.<step>                the step's model inputs and outputs
 *   <p>.<step>.inputs|outputs[.<tensor>]
 *
 * Model topics are shared by every pipeline using the model: records are kept when
 * their `pipeline` header names <p>. The steps come from the scheduler
 * (PipelineStatus) when it answers.
 *
 * Values are decoded as protobuf ModelInferRequest (inputs topics) and
 * ModelInferResponse (outputs topics) and printed by pbjson.c.
 *
 * The CLI runs one command at a time: the Kafka reads block this thread, for
 * --timeout at most (librdkafka's own threads do the I/O; nothing else is
 * waiting on the loop meanwhile).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "inspect.h"
#include "kafka.h"
#include "pbjson.h"
#include "rpc.h"
#include "sdd.h"
#include "seldon/kafka.h"
#include "seldon/manifest.h"
#include "seldon_control.pb-c.h"

#define MAX_TOPICS 512

/* ------------------------------------------------------------ the command */

typedef struct rec {
    size_t topic; /* index into the topic list */
    int32_t partition;
    int64_t offset, ts;
    char *key;
    size_t key_len;
    char **hn, **hv; /* header names and values, in record order */
    size_t *hvl;
    size_t nh;
    char *value; /* JSON text, or the raw bytes when not a protobuf message */
    size_t value_len;
    int kind; /* 1 JSON, 0 raw bytes, -1 the tensor is not in it */
} rec;

typedef struct inspect {
    cli *c;
    char pipeline[256];
    const char *tensor;
    char *topics[MAX_TOPICS];
    size_t ntopics;
    rec *recs;
    size_t nrecs, cap;
} inspect;

static void rec_free(rec *r)
{
    size_t i;
    for (i = 0; i < r->nh; i++) {
        sdd_free(r->hn[i]);
        sdd_free(r->hv[i]);
    }
    sdd_free(r->hn);
    sdd_free(r->hv);
    sdd_free(r->hvl);
    sdd_free(r->key);
    free(r->value); /* open_memstream's */
}

static int add_topic(inspect *in, int32_t kind, const char *name, int32_t io)
{
    char t[SELDON_KAFKA_TOPIC_MAX + 1];
    if (in->ntopics == MAX_TOPICS)
        return 0;
    if (seldon_kafka_topic(t, sizeof(t), NULL, in->c->o.kafka_prefix, in->c->o.kafka_ns, kind, name,
                           io) != 0) {
        fprintf(stderr, "seldon: pipeline inspect: %s\n", seldon_last_error());
        return -1;
    }
    in->topics[in->ntopics] = sdd_strndup(t, strlen(t));
    return in->topics[in->ntopics++] == NULL ? -1 : 0;
}

/* The newest version's steps from the scheduler. 1 with *m set, 0 when the scheduler
 * does not answer (why says so), -1 after printing an error. */
static int steps_of(cli *c, const char *pipeline, seldon_manifest **m, char *why, size_t cap)
{
    Seldon__Control__V1__StatusRequest req = SELDON__CONTROL__V1__STATUS_REQUEST__INIT;
    Seldon__Control__V1__PipelineStatusResponse *resp;
    const char *spec;
    cli_result r;
    int rc;
    *m = NULL;
    req.name = (char *)pipeline;
    if (cli_sched(c, &r, "PipelineStatus", &req.base) != 0) {
        if (r.status == SDR_NOT_FOUND) {
            fprintf(stderr,
                    "seldon: pipeline inspect: pipeline %s: not found on the scheduler at %s\n",
                    pipeline, c->o.sched_host);
            rc = -1;
        } else {
            snprintf(why, cap, "the scheduler at %.300s: %s: %.600s", c->o.sched_host,
                     cli_status_name(r.status), r.message);
            rc = 0;
        }
        cli_result_free(&r);
        return rc;
    }
    resp = seldon__control__v1__pipeline_status_response__unpack(NULL, r.body.len, r.body.data);
    cli_result_free(&r);
    if (resp == NULL || resp->n_pipelines == 0 || resp->pipelines[0]->n_versions == 0) {
        if (resp != NULL)
            seldon__control__v1__pipeline_status_response__free_unpacked(resp, NULL);
        fprintf(stderr, "seldon: pipeline inspect: pipeline %s: the scheduler has no version\n",
                pipeline);
        return -1;
    }
    spec = resp->pipelines[0]->versions[0]->spec;
    rc = seldon_manifest_parse(m, spec, strlen(spec), "the scheduler's pipeline spec");
    seldon__control__v1__pipeline_status_response__free_unpacked(resp, NULL);
    if (rc != 0 || seldon_manifest_count(*m) == 0 ||
        seldon_manifest_at(*m, 0)->kind != SELDON_KIND_PIPELINE) {
        fprintf(stderr, "seldon: pipeline inspect: %s\n",
                rc != 0 ? seldon_last_error() : "the scheduler's spec is not a pipeline");
        seldon_manifest_free(*m);
        *m = NULL;
        return -1;
    }
    return 1;
}

static const seldon_pipeline_spec *spec_of(const seldon_manifest *m)
{
    return &seldon_manifest_at(m, 0)->spec.pipeline;
}

static int has_step(const seldon_manifest *m, const char *step)
{
    const seldon_pipeline_spec *s = spec_of(m);
    size_t i;
    for (i = 0; i < s->steps_count; i++)
        if (strcmp(s->steps[i].name, step) == 0)
            return 1;
    return 0;
}

static int io_of(const char *s)
{
    return strcmp(s, "inputs") == 0    ? SELDON_KAFKA_INPUTS
           : strcmp(s, "outputs") == 0 ? SELDON_KAFKA_OUTPUTS
                                       : 0;
}

/* The topics an expression names. 0, or 1 after printing why not. *step_unchecked
 * is set when a step could not be checked against the scheduler. */
static int plan(inspect *in, const char *expr, int *step_unchecked, char *why, size_t whycap)
{
    char buf[1024], *parts[4] = {NULL, NULL, NULL, NULL}, *s;
    seldon_manifest *m = NULL;
    size_t np = 0, i;
    int known, rc = 1;
    *step_unchecked = 0;
    if (strlen(expr) >= sizeof(buf) || *expr == '\0') {
        fprintf(stderr, "seldon: pipeline inspect: bad expression '%s'\n", expr);
        return 1;
    }
    snprintf(buf, sizeof(buf), "%s", expr);
    /* <p>.<a>.<b>.<tensor>: a tensor name may hold dots, the others do not */
    for (s = buf; np < 4;) {
        parts[np++] = s;
        if (np == 4)
            break;
        s = strchr(s, '.');
        if (s == NULL)
            break;
        *s++ = '\0';
    }
    for (i = 0; i < np; i++)
        if (*parts[i] == '\0' || (i < 3 && !seldon_kafka_name_ok(parts[i], strlen(parts[i])))) {
            fprintf(stderr,
                    "seldon: pipeline inspect: bad expression '%s' (expected "
                    "<pipeline>[.<step>[.inputs|.outputs[.<tensor>]]])\n",
                    expr);
            return 1;
        }
    snprintf(in->pipeline, sizeof(in->pipeline), "%.250s", parts[0]);
    /* The pipeline's own topics: no step to check. */
    if (np >= 2 && io_of(parts[1])) {
        if (np == 3)
            in->tensor = expr + (parts[2] - buf);
        if (np == 4) {
            fprintf(stderr,
                    "seldon: pipeline inspect: '%s': a pipeline topic is %s.%s[.<tensor>]\n", expr,
                    parts[0], parts[1]);
            return 1;
        }
        return add_topic(in, SELDON_KAFKA_PIPELINE, parts[0], io_of(parts[1])) != 0;
    }
    if (np >= 3 && !io_of(parts[2])) {
        fprintf(stderr, "seldon: pipeline inspect: '%s': '%s' is neither inputs nor outputs\n",
                expr, parts[2]);
        return 1;
    }
    if (np == 4)
        in->tensor = expr + (parts[3] - buf);
    known = steps_of(in->c, parts[0], &m, why, whycap);
    if (known < 0)
        return 1;
    if (np == 1) {
        if (known) {
            const seldon_pipeline_spec *sp = spec_of(m);
            for (i = 0; i < sp->steps_count; i++)
                if (add_topic(in, SELDON_KAFKA_MODEL, sp->steps[i].name, SELDON_KAFKA_INPUTS) ||
                    add_topic(in, SELDON_KAFKA_MODEL, sp->steps[i].name, SELDON_KAFKA_OUTPUTS))
                    goto out;
        } else {
            fprintf(stderr,
                    "seldon: pipeline inspect: %s: the steps are unknown (%s): showing the "
                    "pipeline's own topics only\n",
                    parts[0], why);
        }
        if (add_topic(in, SELDON_KAFKA_PIPELINE, parts[0], SELDON_KAFKA_INPUTS) ||
            add_topic(in, SELDON_KAFKA_PIPELINE, parts[0], SELDON_KAFKA_OUTPUTS))
            goto out;
        rc = 0;
        goto out;
    }
    if (known && !has_step(m, parts[1])) {
        const seldon_pipeline_spec *sp = spec_of(m);
        fprintf(stderr, "seldon: pipeline inspect: pipeline %s has no step %s (steps:", parts[0],
                parts[1]);
        for (i = 0; i < sp->steps_count; i++)
            fprintf(stderr, " %s", sp->steps[i].name);
        fprintf(stderr, ")\n");
        goto out;
    }
    *step_unchecked = !known;
    if (np == 2) {
        if (add_topic(in, SELDON_KAFKA_MODEL, parts[1], SELDON_KAFKA_INPUTS) ||
            add_topic(in, SELDON_KAFKA_MODEL, parts[1], SELDON_KAFKA_OUTPUTS))
            goto out;
    } else if (add_topic(in, SELDON_KAFKA_MODEL, parts[1], io_of(parts[2]))) {
        goto out;
    }
    rc = 0;
out:
    seldon_manifest_free(m);
    return rc;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int remaining(int64_t deadline)
{
    int64_t r = deadline - now_ms();
    return r < 1 ? 1 : r > 3600000 ? 3600000 : (int)r;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Whether a record passes --request-id: its whole key, the request id of a Seldon key,
 * or its x-request-id header. */
static int wanted_id(const char *rid, const rd_kafka_message_t *m, rd_kafka_headers_t *h)
{
    seldon_kafka_key_parts kp;
    const void *v;
    size_t vl, n = strlen(rid);
    if (m->key != NULL && m->key_len == n && memcmp(m->key, rid, n) == 0)
        return 1;
    if (m->key != NULL && seldon_kafka_key_parse(&kp, m->key, m->key_len) == 0 &&
        kp.request_id_len == n && memcmp(kp.request_id, rid, n) == 0)
        return 1;
    if (h != NULL &&
        rd_kafka_header_get_last(h, SELDON_KAFKA_H_REQUEST_ID, &v, &vl) ==
            RD_KAFKA_RESP_ERR_NO_ERROR &&
        v != NULL && vl == n && memcmp(v, rid, n) == 0)
        return 1;
    return 0;
}

static int keep(inspect *in, size_t topic, const rd_kafka_message_t *m)
{
    rd_kafka_headers_t *h = NULL;
    const void *v;
    size_t vl, i, plen = strlen(in->pipeline);
    const char *name;
    rec r;
    FILE *f;
    int k;
    if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR)
        h = NULL;
    /* Model topics are shared by the pipelines using the model. */
    if (h == NULL ||
        rd_kafka_header_get_last(h, SELDON_KAFKA_H_PIPELINE, &v, &vl) !=
            RD_KAFKA_RESP_ERR_NO_ERROR ||
        v == NULL || vl != plen || memcmp(v, in->pipeline, plen) != 0)
        return 0;
    if (in->c->o.request_id != NULL && !wanted_id(in->c->o.request_id, m, h))
        return 0;
    memset(&r, 0, sizeof(r));
    r.topic = topic;
    r.partition = m->partition;
    r.offset = m->offset;
    r.ts = rd_kafka_message_timestamp(m, NULL);
    r.key = sdd_strndup(m->key != NULL ? m->key : "", m->key != NULL ? m->key_len : 0);
    r.key_len = m->key != NULL ? m->key_len : 0;
    if (r.key == NULL)
        return -1;
    if (in->c->o.verbose) {
        size_t nh = rd_kafka_header_cnt(h);
        r.hn = sdd_calloc(nh + 1, sizeof(char *));
        r.hv = sdd_calloc(nh + 1, sizeof(char *));
        r.hvl = sdd_calloc(nh + 1, sizeof(size_t));
        if (r.hn == NULL || r.hv == NULL || r.hvl == NULL) {
            rec_free(&r);
            return -1;
        }
        for (i = 0; rd_kafka_header_get_all(h, i, &name, &v, &vl) == RD_KAFKA_RESP_ERR_NO_ERROR;
             i++) {
            r.hn[r.nh] = sdd_strndup(name, strlen(name));
            r.hv[r.nh] = sdd_strndup(v != NULL ? v : "", v != NULL ? vl : 0);
            r.hvl[r.nh] = v != NULL ? vl : 0;
            r.nh++;
            if (r.hn[r.nh - 1] == NULL || r.hv[r.nh - 1] == NULL) {
                rec_free(&r);
                return -1;
            }
        }
    }
    f = open_memstream(&r.value, &r.value_len);
    if (f == NULL) {
        rec_free(&r);
        return -1;
    }
    k = cli_pbjson_value(f, m->payload, m->len, ends_with(in->topics[topic], ".outputs"),
                         in->tensor);
    if (k < 0)
        fwrite(m->payload, 1, m->len, f);
    fclose(f);
    r.kind = k;
    if (in->nrecs == in->cap) {
        size_t cap = in->cap ? in->cap * 2 : 16;
        rec *p = sdd_realloc(in->recs, cap * sizeof(*p));
        if (p == NULL) {
            rec_free(&r);
            return -1;
        }
        in->recs = p;
        in->cap = cap;
    }
    in->recs[in->nrecs++] = r;
    return 0;
}

static int cmp_rec(const void *a, const void *b)
{
    const rec *x = a, *y = b;
    if (x->topic != y->topic)
        return x->topic < y->topic ? -1 : 1;
    if (x->ts != y->ts)
        return x->ts < y->ts ? -1 : 1;
    if (x->partition != y->partition)
        return x->partition < y->partition ? -1 : 1;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Indexes of r's headers sorted by name (stable), as upstream's map prints them. */
static void sort_headers(size_t *idx, const rec *r)
{
    size_t i, j;
    for (i = 0; i < r->nh; i++)
        idx[i] = i;
    for (i = 1; i < r->nh; i++)
        for (j = i; j > 0 && strcmp(r->hn[idx[j - 1]], r->hn[idx[j]]) > 0; j--) {
            size_t t = idx[j];
            idx[j] = idx[j - 1];
            idx[j - 1] = t;
        }
}

static void print_value(FILE *f, const rec *r, int json)
{
    if (r->kind > 0)
        fwrite(r->value, 1, r->value_len, f);
    else if (r->kind < 0 && json)
        cli_json_bytes(f, r->value, r->value_len);
    else if (r->kind < 0)
        fwrite(r->value, 1, r->value_len, f);
    else if (json)
        fputs("null", f);
}

static void print_all(inspect *in)
{
    int json = in->c->o.json, verbose = in->c->o.verbose;
    size_t t, i = 0, j, k, idx[256];
    if (json)
        printf("{\"topics\":[");
    for (t = 0; t < in->ntopics; t++) {
        size_t first = i;
        if (json) {
            printf("%s{\"name\":", t ? "," : "");
            cli_json_bytes_z(stdout, in->topics[t]);
            printf(",\"msgs\":");
        }
        for (; i < in->nrecs && in->recs[i].topic == t; i++) {
            const rec *r = &in->recs[i];
            size_t nh = r->nh < 256 ? r->nh : 256;
            sort_headers(idx, r);
            if (!json) {
                printf("%s\t%.*s\t", in->topics[t], (int)r->key_len, r->key);
                print_value(stdout, r, 0);
                if (verbose) {
                    fputc('\t', stdout);
                    for (j = 0; j < nh; j = k) {
                        printf("\t%s=[", r->hn[idx[j]]);
                        for (k = j; k < nh && strcmp(r->hn[idx[k]], r->hn[idx[j]]) == 0; k++)
                            printf("%s%.*s", k > j ? " " : "", (int)r->hvl[idx[k]], r->hv[idx[k]]);
                        fputc(']', stdout);
                    }
                }
                fputc('\n', stdout);
                continue;
            }
            printf("%s{\"headers\":", i > first ? "," : "[");
            if (!verbose) {
                printf("null");
            } else {
                fputc('{', stdout);
                for (j = 0; j < nh; j = k) {
                    printf("%s", j ? "," : "");
                    cli_json_bytes_z(stdout, r->hn[idx[j]]);
                    printf(":[");
                    for (k = j; k < nh && strcmp(r->hn[idx[k]], r->hn[idx[j]]) == 0; k++) {
                        if (k > j)
                            fputc(',', stdout);
                        cli_json_bytes(stdout, r->hv[idx[k]], r->hvl[idx[k]]);
                    }
                    fputc(']', stdout);
                }
                fputc('}', stdout);
            }
            printf(",\"key\":");
            cli_json_bytes(stdout, r->key, r->key_len);
            printf(",\"value\":");
            print_value(stdout, r, 1);
            fputc('}', stdout);
        }
        if (json)
            printf("%s}", i > first ? "]" : "null");
    }
    if (json)
        printf("]}\n");
}

/* One partition to read: from start up to (not including) end. */
typedef struct span {
    size_t topic;
    int32_t partition;
    int64_t end;
    int done;
} span;

static int read_topics(inspect *in, rd_kafka_t *rk, int64_t deadline, const char *brokers,
                       int step_unchecked, const char *why)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_partition_list_t *assign = NULL;
    span *spans = NULL;
    size_t nspans = 0, cap = 0, t, i, left;
    int present[MAX_TOPICS], rc = 1, p;
    rd_kafka_resp_err_t e;

    e = rd_kafka_metadata(rk, 1, NULL, &md, remaining(deadline));
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "seldon: pipeline inspect: Kafka at %s: %s\n", brokers,
                rd_kafka_err2str(e));
        return 1;
    }
    assign = rd_kafka_topic_partition_list_new(16);
    for (t = 0; t < in->ntopics; t++) {
        const struct rd_kafka_metadata_topic *mt = NULL;
        present[t] = 0;
        for (i = 0; i < (size_t)md->topic_cnt; i++)
            if (strcmp(md->topics[i].topic, in->topics[t]) == 0 && md->topics[i].err == 0)
                mt = &md->topics[i];
        if (mt == NULL)
            continue;
        present[t] = 1;
        for (p = 0; p < mt->partition_cnt; p++) {
            int64_t lo = 0, hi = 0, start;
            int32_t part = mt->partitions[p].id;
            e = rd_kafka_query_watermark_offsets(rk, in->topics[t], part, &lo, &hi,
                                                 remaining(deadline));
            if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
                fprintf(stderr, "seldon: pipeline inspect: %s [%d]: %s\n", in->topics[t], (int)part,
                        rd_kafka_err2str(e));
                goto out;
            }
            if (hi <= lo)
                continue;
            start = hi - in->c->o.offset > lo ? hi - in->c->o.offset : lo;
            if (nspans == cap) {
                size_t ncap = cap ? cap * 2 : 16;
                span *s = sdd_realloc(spans, ncap * sizeof(*s));
                if (s == NULL)
                    goto out;
                spans = s;
                cap = ncap;
            }
            spans[nspans++] = (span){t, part, hi, 0};
            rd_kafka_topic_partition_list_add(assign, in->topics[t], part)->offset = start;
        }
    }
    for (t = 0; t < in->ntopics; t++)
        if (!present[t]) {
            if (step_unchecked)
                fprintf(stderr,
                        "seldon: pipeline inspect: %s: no such topic: no data (is the step "
                        "right? it could not be checked: %s)\n",
                        in->topics[t], why);
            else
                fprintf(stderr, "seldon: pipeline inspect: %s: no such topic: no data yet\n",
                        in->topics[t]);
        }
    if (step_unchecked) {
        int any = 0;
        for (t = 0; t < in->ntopics; t++)
            any |= present[t];
        if (!any)
            goto out;
    }
    left = nspans;
    if (left > 0 && (e = rd_kafka_assign(rk, assign)) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "seldon: pipeline inspect: %s\n", rd_kafka_err2str(e));
        goto out;
    }
    while (left > 0) {
        rd_kafka_message_t *m;
        int wait = remaining(deadline);
        if (now_ms() >= deadline) {
            fprintf(stderr,
                    "seldon: pipeline inspect: %zu partition(s) not read to their end within "
                    "%lds (--timeout)\n",
                    left, in->c->o.timeout_s);
            if (in->nrecs > 1)
                qsort(in->recs, in->nrecs, sizeof(*in->recs), cmp_rec);
            print_all(in);
            goto out;
        }
        m = rd_kafka_consumer_poll(rk, wait < 100 ? wait : 100);
        if (m == NULL)
            continue;
        for (i = 0; i < nspans; i++) {
            if (spans[i].done || m->rkt == NULL || spans[i].partition != m->partition ||
                strcmp(in->topics[spans[i].topic], rd_kafka_topic_name(m->rkt)) != 0)
                continue;
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF ||
                (m->err == 0 && m->offset + 1 >= spans[i].end)) {
                if (m->err == 0 && keep(in, spans[i].topic, m) < 0) {
                    rd_kafka_message_destroy(m);
                    fprintf(stderr, "seldon: pipeline inspect: out of memory\n");
                    goto out;
                }
                spans[i].done = 1;
                left--;
            } else if (m->err == 0 && keep(in, spans[i].topic, m) < 0) {
                rd_kafka_message_destroy(m);
                fprintf(stderr, "seldon: pipeline inspect: out of memory\n");
                goto out;
            } else if (m->err != 0) {
                fprintf(stderr, "seldon: pipeline inspect: %s [%d]: %s\n",
                        in->topics[spans[i].topic], (int)m->partition, rd_kafka_message_errstr(m));
            }
            break;
        }
        rd_kafka_message_destroy(m);
    }
    if (in->nrecs > 1) /* recs is NULL without records */
        qsort(in->recs, in->nrecs, sizeof(*in->recs), cmp_rec);
    print_all(in);
    rc = 0;
out:
    if (assign != NULL)
        rd_kafka_topic_partition_list_destroy(assign);
    if (md != NULL)
        rd_kafka_metadata_destroy(md);
    sdd_free(spans);
    return rc;
}

int cli_inspect(cli *c, const char *expr)
{
    sdk_config cfg = SDK_CONFIG_INIT;
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_t *rk = NULL;
    inspect in;
    char why[1200] = "", group[64], err[512];
    int64_t deadline;
    int step_unchecked = 0, rc = 1;
    size_t i;

    memset(&in, 0, sizeof(in));
    in.c = c;
    /* The loop's calls (the scheduler) and the Kafka reads share one bound. */
    deadline = now_ms() + (c->o.timeout_given ? c->o.timeout_s : 10) * 1000;
    if (!c->o.timeout_given)
        c->o.timeout_s = 10;
    cfg.broker = c->o.kafka_broker;
    cfg.prefix = c->o.kafka_prefix;
    cfg.ns = c->o.kafka_ns;
    for (i = 0; i < c->o.nkafka; i++) {
        int r = c->o.kafka_kinds[i] == 'f' ? sdk_config_file(&cfg, c->o.kafka_args[i])
                                           : sdk_flag_property(&cfg, c->o.kafka_args[i]);
        if (r != 0) {
            if (c->o.kafka_kinds[i] == 'f')
                fprintf(stderr, "seldon: --kafka-config-file: %s\n", seldon_last_error());
            else
                fprintf(stderr, "seldon: --kafka-config: '%s' is not KEY=VALUE\n",
                        c->o.kafka_args[i]);
            rc = 2;
            goto out;
        }
    }
    if (plan(&in, expr, &step_unchecked, why, sizeof(why)) != 0)
        goto out;
    if (sdk_conf_build(&conf, &cfg, 1) != 0) {
        fprintf(stderr, "seldon: pipeline inspect: %s\n", seldon_last_error());
        rc = 2;
        goto out;
    }
    snprintf(group, sizeof(group), "seldon-cli-%ld-%ld", (long)getpid(), (long)time(NULL));
    /* Reading only: no group membership (partitions are assigned by hand), no commits,
     * no topic created by asking for it. */
    if (rd_kafka_conf_set(conf, "group.id", group, err, sizeof(err)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "allow.auto.create.topics", "false", err, sizeof(err)) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.partition.eof", "true", err, sizeof(err)) !=
            RD_KAFKA_CONF_OK) {
        fprintf(stderr, "seldon: pipeline inspect: %s\n", err);
        rd_kafka_conf_destroy(conf);
        goto out;
    }
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (rk == NULL) {
        fprintf(stderr, "seldon: pipeline inspect: %s\n", err);
        rd_kafka_conf_destroy(conf);
        goto out;
    }
    rc = read_topics(&in, rk, deadline, sdk_config_brokers(&cfg), step_unchecked, why);
out:
    if (rk != NULL)
        rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
    for (i = 0; i < in.nrecs; i++)
        rec_free(&in.recs[i]);
    sdd_free(in.recs);
    for (i = 0; i < in.ntopics; i++)
        sdd_free(in.topics[i]);
    sdk_config_free(&cfg);
    return rc;
}
