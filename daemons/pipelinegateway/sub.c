/*
 * The gateway's subscription to the scheduler: RouteService/SubscribePipelines
 * on --scheduler-host, one gRPC server stream over an h2c client of the control
 * loop. Every PipelineSet received goes to the engines (sdp_sync: new versions
 * compiled and added, the others removed) and names the other gateways, which
 * keep asynchronous results this one may be asked for.
 *
 * A subscription that cannot open, ends or fails is an outage: the pipelines in
 * force stay served, and the subscription is tried again after a backoff that
 * doubles up to --resubscribe-max (daemons/common/sub.c). The stream being open is what makes the
 * scheduler list this gateway among the upstreams of the pipelines' routes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gw.h"
#include "sdd.h"
#include "seldon_control.pb-c.h"
#include "sub.h"

#define SUB_PATH "/seldon.control.v1.RouteService/SubscribePipelines"

struct gw_sub {
    gw *g;
    sds_sub *sub;
    char authority[280];
};

static void on_set(gw_sub *sub, const uint8_t *data, size_t len)
{
    gw *g = sub->g;
    Seldon__Control__V1__PipelineSet *m =
        seldon__control__v1__pipeline_set__unpack(NULL, len, data);
    sdp_spec *specs;
    seldon_buf *kspecs;
    const char **names;
    size_t i;
    if (m == NULL) {
        sdd_log(SELDON_LOG_ERROR, "scheduler %s: a message of %zu bytes is not a PipelineSet",
                sub->authority, len);
        return;
    }
    specs = sdd_calloc(m->n_pipelines + 1, sizeof(*specs));
    if (specs == NULL) {
        seldon__control__v1__pipeline_set__free_unpacked(m, NULL);
        return;
    }
    kspecs = g->kafka != NULL ? sdd_calloc(m->n_pipelines + 1, sizeof(*kspecs)) : NULL;
    names = sdd_calloc(m->n_pipelines + 1, sizeof(*names));
    for (i = 0; i < m->n_pipelines; i++) {
        specs[i].name = m->pipelines[i]->name;
        specs[i].version = m->pipelines[i]->version;
        specs[i].ready = m->pipelines[i]->ready ? 1 : 0;
        /* Kafka mode: ready only while a dataflow worker runs it, once any worker has
           subscribed to the scheduler (before, --pipeline file workers may serve it). */
        if (g->kafka != NULL && m->pipelines[i]->dataflow != 0) {
            if (m->pipelines[i]->dataflow != 1 && specs[i].ready)
                sdd_log(SELDON_LOG_INFO, "pipeline %s v%u: not ready: %s", m->pipelines[i]->name,
                        m->pipelines[i]->version, m->pipelines[i]->dataflow_reason);
            specs[i].ready = specs[i].ready && m->pipelines[i]->dataflow == 1;
            if (!specs[i].ready && m->pipelines[i]->dataflow != 1)
                specs[i].why = m->pipelines[i]->dataflow_reason;
        }
        specs[i].spec = m->pipelines[i]->spec;
        specs[i].spec_len = strlen(m->pipelines[i]->spec);
        if (names != NULL)
            names[i] = m->pipelines[i]->name;
        /* Kafka mode: served as one step, the pipeline run by seldon-dataflow. */
        if (kspecs != NULL && gw_kafka_spec(&kspecs[i], m->pipelines[i]->name) == 0) {
            specs[i].spec = (const char *)kspecs[i].data;
            specs[i].spec_len = kspecs[i].len;
        }
    }
    sdp_sync(g->pls, specs, m->n_pipelines, NULL, NULL);
    if (g->kafka != NULL && names != NULL)
        gw_kafka_subscribe(g->kafka, names, m->n_pipelines);
    for (i = 0; kspecs != NULL && i < m->n_pipelines; i++)
        seldon_buf_free(&kspecs[i]);
    sdd_free(kspecs);
    sdd_free(names);
    seldon_series_set(g->m_pipelines, (double)sdp_count(g->pls));
    pthread_mutex_lock(&g->peers_mu);
    g->npeers = 0;
    for (i = 0; i < m->n_gateways && g->npeers < GW_MAX_PEERS; i++)
        if (*m->gateways[i]->http && strlen(m->gateways[i]->http) < sizeof(g->peers[0]))
            snprintf(g->peers[g->npeers++], sizeof(g->peers[0]), "%s", m->gateways[i]->http);
    pthread_mutex_unlock(&g->peers_mu);
    sdd_log(SELDON_LOG_INFO, "scheduler %s: %zu pipeline(s), %zu gateway(s) (set %llu)",
            sub->authority, m->n_pipelines, m->n_gateways, (unsigned long long)m->generation);
    sdd_free(specs);
    seldon__control__v1__pipeline_set__free_unpacked(m, NULL);
}

/* ------------------------------------------------------------ the subscription */

static int make_request(void *user_data, seldon_buf *out)
{
    gw_sub *sub = user_data;
    Seldon__Control__V1__PipelineSubscribeRequest req =
        SELDON__CONTROL__V1__PIPELINE_SUBSCRIBE_REQUEST__INIT;
    size_t len;
    req.gateway = (char *)sub->g->cfg.name;
    req.http = sub->g->advertise;
    req.grpc = sub->g->advertise;
    req.kafka = sub->g->cfg.kafka != 0; /* its pipelines are ready once a dataflow worker runs them */
    len = seldon__control__v1__pipeline_subscribe_request__get_packed_size(&req);
    if (len > 1024)
        return sdd_error(SELDON_EINVAL, "the gateway's name or address is too long");
    if (seldon_buf_reserve(out, len) != 0)
        return SELDON_ENOMEM;
    out->len = seldon__control__v1__pipeline_subscribe_request__pack(&req, out->data);
    return 0;
}

static void on_message(void *user_data, const uint8_t *data, size_t len)
{
    on_set(user_data, data, len);
}

static void on_connected(void *user_data, int up, const sd2_header *h, size_t n)
{
    gw_sub *sub = user_data;
    (void)h;
    (void)n;
    seldon_series_set(sub->g->m_connected, up ? 1 : 0);
}

static void in_force(void *user_data, char *out, size_t cap)
{
    gw_sub *sub = user_data;
    snprintf(out, cap, "serving the %zu pipeline(s) in force", sdp_count(sub->g->pls));
}

static const sds_hooks hooks = {make_request, on_message, on_connected, in_force};

int gw_sub_new(gw_sub **out, gw *g, uv_loop_t *loop)
{
    gw_sub *sub = sdd_calloc(1, sizeof(*sub));
    sds_config c;
    int rc;
    *out = NULL;
    if (sub == NULL)
        return SELDON_ENOMEM;
    sub->g = g;
    memset(&c, 0, sizeof(c));
    c.scheduler_host = g->cfg.scheduler_host;
    c.path = SUB_PATH;
    c.user_agent = "seldon-pipelinegateway";
    c.subscribed = "subscribed to pipelines";
    c.again = "subscribed to pipelines again";
    c.resubscribe_max_ms = g->cfg.resubscribe_max_ms;
    rc = sds_new(&sub->sub, loop, &c, &hooks, sub);
    if (rc != 0) {
        sdd_free(sub);
        return rc;
    }
    snprintf(sub->authority, sizeof(sub->authority), "%s", sds_authority(sub->sub));
    *out = sub;
    return 0;
}

void gw_sub_start(void *arg)
{
    gw_sub *sub = arg;
    sds_start(sub->sub);
}

void gw_sub_close(void *arg)
{
    gw_sub *sub = arg;
    sds_close(sub->sub); /* no hook runs from here on */
    sdd_free(sub);
}
