/*
 * seldon-dataflow --scheduler-host: the pipelines come from the scheduler.
 * RouteService/SubscribePipelines with `dataflow` set (daemons/common/sub.c:
 * reconnection with backoff; the pipelines in force keep running while the
 * scheduler is down); every PipelineSet goes to df_sync, and what runs then
 * (per pipeline: running, or failed with the reason) goes back with
 * RouteService/ReportPipelines, for the subscription the stream's
 * "seldon-subscription" header named. One report in flight at a time; a set
 * that comes meanwhile is reported once that one is answered.
 *
 * Threads: the worker's one loop (the subscription resolves a host name on
 * it: give an IP address to keep that off the loop).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "df.h"
#include "sdd.h"
#include "seldon_control.pb-c.h"
#include "sub.h"

#define SUB_PATH "/seldon.control.v1.RouteService/SubscribePipelines"
#define REPORT_PATH "/seldon.control.v1.RouteService/ReportPipelines"

struct df_sched {
    df *d;
    const df_config *cfg;
    sds_sub *sub;
    uint64_t sub_id; /* of the stream open now; 0: none */
    int reporting;   /* a report is in flight */
    int report_due;  /* another is owed once it is answered */
};

static void report(df_sched *s);

static void report_done(void *user_data, int32_t status, const char *message)
{
    df_sched *s = user_data;
    s->reporting = 0;
    if (status != 0)
        sdd_log(SELDON_LOG_WARN, "scheduler: ReportPipelines: grpc-status %d: %s", (int)status,
                message);
    if (s->report_due)
        report(s);
}

static void report(df_sched *s)
{
    Seldon__Control__V1__PipelineReport m = SELDON__CONTROL__V1__PIPELINE_REPORT__INIT;
    Seldon__Control__V1__PipelineLoadState *ps = NULL, **pp = NULL;
    const df_state *st;
    seldon_buf b = SELDON_BUF_INIT;
    size_t i, n;
    if (s->sub_id == 0)
        return; /* a new stream brings a set, reported then */
    if (s->reporting) {
        s->report_due = 1;
        return;
    }
    s->report_due = 0;
    n = df_states(s->d, &st);
    ps = sdd_calloc(n + 1, sizeof(*ps));
    pp = sdd_calloc(n + 1, sizeof(*pp));
    if (ps == NULL || pp == NULL)
        goto out;
    for (i = 0; i < n; i++) {
        seldon__control__v1__pipeline_load_state__init(&ps[i]);
        ps[i].name = st[i].name != NULL ? st[i].name : "";
        ps[i].version = st[i].version;
        ps[i].loaded = st[i].loaded != 0;
        ps[i].reason = st[i].reason != NULL ? st[i].reason : "";
        pp[i] = &ps[i];
    }
    m.worker = (char *)s->cfg->name;
    m.n_pipelines = n;
    m.pipelines = pp;
    m.subscription = s->sub_id;
    if (seldon_buf_reserve(&b, protobuf_c_message_get_packed_size(&m.base)) != 0)
        goto out;
    b.len = protobuf_c_message_pack(&m.base, b.data);
    if (sds_call(s->sub, REPORT_PATH, b.data, b.len, NULL, 0, report_done, s) == 0)
        s->reporting = 1;
    else
        sdd_log(SELDON_LOG_WARN, "scheduler: ReportPipelines: %s", seldon_last_error());
out:
    seldon_buf_free(&b);
    sdd_free(ps);
    sdd_free(pp);
}

static int make_request(void *user_data, seldon_buf *out)
{
    df_sched *s = user_data;
    Seldon__Control__V1__PipelineSubscribeRequest req =
        SELDON__CONTROL__V1__PIPELINE_SUBSCRIBE_REQUEST__INIT;
    size_t len;
    req.gateway = (char *)s->cfg->name;
    req.dataflow = 1;
    len = seldon__control__v1__pipeline_subscribe_request__get_packed_size(&req);
    if (seldon_buf_reserve(out, len) != 0)
        return SELDON_ENOMEM;
    out->len = seldon__control__v1__pipeline_subscribe_request__pack(&req, out->data);
    return 0;
}

static void on_message(void *user_data, const uint8_t *data, size_t len)
{
    df_sched *s = user_data;
    Seldon__Control__V1__PipelineSet *m =
        seldon__control__v1__pipeline_set__unpack(NULL, len, data);
    df_spec *specs;
    size_t i;
    if (m == NULL) {
        sdd_log(SELDON_LOG_ERROR, "scheduler %s: a message of %zu bytes is not a PipelineSet",
                sds_authority(s->sub), len);
        return;
    }
    specs = sdd_calloc(m->n_pipelines + 1, sizeof(*specs));
    if (specs != NULL) {
        for (i = 0; i < m->n_pipelines; i++) {
            specs[i].name = m->pipelines[i]->name;
            specs[i].version = m->pipelines[i]->version;
            specs[i].spec = m->pipelines[i]->spec;
            specs[i].spec_len = strlen(m->pipelines[i]->spec);
        }
        sdd_log(SELDON_LOG_INFO, "scheduler %s: %zu pipeline(s) (set %llu)",
                sds_authority(s->sub), m->n_pipelines, (unsigned long long)m->generation);
        if (df_sync(s->d, specs, m->n_pipelines) < 0)
            sdd_log(SELDON_LOG_ERROR, "scheduler %s: set %llu: %s", sds_authority(s->sub),
                    (unsigned long long)m->generation, seldon_last_error());
        report(s);
    }
    sdd_free(specs);
    seldon__control__v1__pipeline_set__free_unpacked(m, NULL);
}

static void on_connected(void *user_data, int up, const sd2_header *h, size_t n)
{
    df_sched *s = user_data;
    const sd2_header *id = up ? sd2_header_find(h, n, "seldon-subscription") : NULL;
    char num[24];
    s->sub_id = 0;
    if (id != NULL && id->value_len < sizeof(num)) {
        memcpy(num, id->value, id->value_len);
        num[id->value_len] = '\0';
        s->sub_id = strtoull(num, NULL, 10);
    }
    if (up && s->sub_id == 0)
        sdd_log(SELDON_LOG_WARN, "scheduler %s: no seldon-subscription header: an older "
                                 "scheduler? states are not reported",
                sds_authority(s->sub));
}

static void in_force(void *user_data, char *out, size_t cap)
{
    df_sched *s = user_data;
    const df_state *st;
    snprintf(out, cap, "running the %zu pipeline(s) in force", df_states(s->d, &st));
}

static const sds_hooks hooks = {make_request, on_message, on_connected, in_force};

int df_sched_new(df_sched **out, df *d, const df_config *cfg, uv_loop_t *loop)
{
    df_sched *s = sdd_calloc(1, sizeof(*s));
    sds_config c;
    int rc;
    *out = NULL;
    if (s == NULL)
        return SELDON_ENOMEM;
    s->d = d;
    s->cfg = cfg;
    memset(&c, 0, sizeof(c));
    c.scheduler_host = cfg->scheduler_host;
    c.path = SUB_PATH;
    c.user_agent = "seldon-dataflow";
    c.subscribed = "subscribed to pipelines";
    c.again = "subscribed to pipelines again";
    c.resubscribe_max_ms = cfg->resubscribe_max_ms;
    rc = sds_new(&s->sub, loop, &c, &hooks, s);
    if (rc != 0) {
        sdd_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void df_sched_start(void *arg)
{
    df_sched *s = arg;
    sds_start(s->sub);
}

void df_sched_close(df_sched *s)
{
    if (s == NULL)
        return;
    sds_close(s->sub); /* no hook, nor report_done, runs from here on */
    sdd_free(s);
}
