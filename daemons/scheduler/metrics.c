/*
 * seldon-scheduler's /metrics, served on the scheduler's own loop: gauges are
 * counted from status snapshots when scraped, counters and the apply latency
 * are recorded as things happen (svc.c).
 */
#include <string.h>

#include "schedd.h"
#include "sdd.h"

int sc_metrics_setup(sc_daemon *d)
{
    static const double apply_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                           0.05,   0.1,   0.25,   0.5,   1,    2.5};
    const char *state[1] = {"state"};
    const char *op[1] = {"op"};
    int rc = seldon_metrics_new(&d->metrics);
    if (rc == 0)
        rc = seldon_metrics_add(&d->m_models, d->metrics, SELDON_METRIC_GAUGE,
                                "seldon_scheduler_models",
                                "Models by the state of their newest version.", state, 1, NULL, 0);
    if (rc == 0)
        rc = seldon_metrics_add(&d->m_pipelines, d->metrics, SELDON_METRIC_GAUGE,
                                "seldon_scheduler_pipelines",
                                "Pipelines by state (PipelineReady, PipelineCreating: waiting "
                                "for models, ...); unloaded ones not counted.",
                                state, 1, NULL, 0);
    if (rc == 0)
        rc = seldon_metrics_add(&d->m_experiments, d->metrics, SELDON_METRIC_GAUGE,
                                "seldon_scheduler_experiments",
                                "Experiments by state (ExperimentActive: its routes split; "
                                "ExperimentWaiting: for a candidate or the mirror).",
                                state, 1, NULL, 0);
    if (rc == 0)
        rc = seldon_metrics_add(
            &d->m_servers, d->metrics, SELDON_METRIC_GAUGE, "seldon_scheduler_servers",
            "Servers by state (Ready: every desired replica connected).", state, 1, NULL, 0);
    if (rc == 0)
        rc = seldon_metrics_add(
            &d->m_replicas, d->metrics, SELDON_METRIC_GAUGE, "seldon_scheduler_server_replicas",
            "Server replicas known, by state (connected, disconnected).", state, 1, NULL, 0);
    if (rc == 0)
        rc = seldon_metrics_add(&d->m_agents, d->metrics, SELDON_METRIC_GAUGE,
                                "seldon_scheduler_agents_connected",
                                "Agent streams open (AgentService.Subscribe).", NULL, 0, NULL, 0);
    if (rc == 0)
        rc = seldon_metrics_add(
            &d->m_routers, d->metrics, SELDON_METRIC_GAUGE, "seldon_scheduler_routers_connected",
            "Routers subscribed to routes (RouteService.Subscribe).", NULL, 0, NULL, 0);
    if (rc == 0)
        rc = seldon_metrics_add(
            &d->m_watchers, d->metrics, SELDON_METRIC_GAUGE, "seldon_scheduler_event_subscribers",
            "Clients subscribed to events (SubscribeEvents).", NULL, 0, NULL, 0);
    if (rc == 0)
        rc = seldon_metrics_add(&d->m_gateways, d->metrics, SELDON_METRIC_GAUGE,
                                "seldon_scheduler_pipeline_gateways_connected",
                                "Pipeline gateways subscribed (RouteService.SubscribePipelines).",
                                NULL, 0, NULL, 0);
    if (rc == 0)
        rc = seldon_metrics_add(&d->m_dataflows, d->metrics, SELDON_METRIC_GAUGE,
                                "seldon_scheduler_dataflow_workers_connected",
                                "Dataflow workers subscribed (RouteService.SubscribePipelines "
                                "with dataflow set).",
                                NULL, 0, NULL, 0);
    if (rc == 0)
        rc = seldon_metrics_add(&d->m_ready, d->metrics, SELDON_METRIC_GAUGE,
                                "seldon_scheduler_ready",
                                "1 once the scheduler acts on its state (after a restart: every "
                                "known replica reconnected, or --ready-timeout passed).",
                                NULL, 0, NULL, 0);
    if (rc == 0)
        rc = seldon_metrics_add(&d->m_commands, d->metrics, SELDON_METRIC_COUNTER,
                                "seldon_scheduler_commands_sent_total",
                                "Commands sent to agents, by op (load, unload).", op, 1, NULL, 0);
    if (rc == 0)
        rc = seldon_metrics_add(&d->m_apply, d->metrics, SELDON_METRIC_HISTOGRAM,
                                "seldon_scheduler_apply_seconds",
                                "Time to apply a manifest, stored in LMDB, in seconds.", NULL, 0,
                                apply_buckets, sizeof(apply_buckets) / sizeof(apply_buckets[0]));
    return rc;
}

#define STATES_MAX 32

typedef struct tally {
    const char *name[STATES_MAX];
    double n[STATES_MAX];
    size_t count;
} tally;

static void tally_add(tally *t, const char *name)
{
    size_t i;
    if (name == NULL)
        name = "Unknown";
    for (i = 0; i < t->count; i++)
        if (strcmp(t->name[i], name) == 0) {
            t->n[i]++;
            return;
        }
    if (t->count < STATES_MAX) {
        t->name[t->count] = name;
        t->n[t->count++] = 1;
    }
}

/* Sets every state seen so far: states now empty read 0, not their last count. */
static void tally_set(seldon_metric *m, const tally *t, const char *const *always, size_t nalways)
{
    seldon_series *s;
    size_t i;
    for (i = 0; i < nalways; i++)
        if (seldon_metric_series(&s, m, &always[i]) == 0)
            seldon_series_set(s, 0);
    for (i = 0; i < t->count; i++)
        if (seldon_metric_series(&s, m, &t->name[i]) == 0)
            seldon_series_set(s, t->n[i]);
}

static void set_gauge(seldon_metric *m, double v)
{
    seldon_series *s;
    if (seldon_metric_series(&s, m, NULL) == 0)
        seldon_series_set(s, v);
}

/* Runs on the scheduler's loop: refreshes the gauges from the scheduler, then appends the
   registry as Prometheus text to out. */
int sc_metrics_render(seldon_buf *out, sc_daemon *d)
{
    static const char *const model_states[] = {"ModelAvailable", "ModelProgressing", "ModelFailed",
                                               "ScheduleFailed"};
    static const char *const server_states[] = {"Ready", "NotReady"};
    static const char *const replica_states[] = {"connected", "disconnected"};
    static const char *const pipeline_states[] = {"PipelineReady", "PipelineCreating",
                                                  "PipelineFailed"};
    static const char *const experiment_states[] = {"ExperimentActive", "ExperimentWaiting"};
    seldon_sched_status *ms = NULL, *ss = NULL, *ps = NULL, *es = NULL;
    tally tm, ts, tr, tp, te;
    size_t i, j;
    int rc;

    memset(&tm, 0, sizeof(tm));
    memset(&ts, 0, sizeof(ts));
    memset(&tr, 0, sizeof(tr));
    memset(&tp, 0, sizeof(tp));
    memset(&te, 0, sizeof(te));
    if (d->sched != NULL && !d->closing && seldon_sched_experiments(&es, d->sched, NULL) == 0) {
        for (i = 0; i < seldon_sched_status_count(es); i++) {
            const seldon_sched_experiment_status *e = seldon_sched_status_experiment(es, i);
            if (e != NULL)
                tally_add(&te, e->state);
        }
    }
    if (d->sched != NULL && !d->closing && seldon_sched_pipelines(&ps, d->sched, NULL) == 0) {
        for (i = 0; i < seldon_sched_status_count(ps); i++) {
            const seldon_sched_pipeline_status *p = seldon_sched_status_pipeline(ps, i);
            if (p != NULL && !p->deleted)
                tally_add(&tp, p->state);
        }
    }
    if (d->sched != NULL && !d->closing && seldon_sched_models(&ms, d->sched, NULL) == 0) {
        for (i = 0; i < seldon_sched_status_count(ms); i++) {
            const seldon_sched_model_status *m = seldon_sched_status_model(ms, i);
            if (m != NULL && m->versions_count > 0)
                tally_add(&tm, m->versions[0].state);
        }
    }
    if (d->sched != NULL && !d->closing && seldon_sched_servers(&ss, d->sched, NULL) == 0) {
        for (i = 0; i < seldon_sched_status_count(ss); i++) {
            const seldon_sched_server_status *s = seldon_sched_status_server(ss, i);
            if (s == NULL)
                continue;
            tally_add(&ts, s->connected_replicas >= s->desired_replicas && s->connected_replicas > 0
                               ? "Ready"
                               : "NotReady");
            for (j = 0; j < s->replicas_count; j++)
                tally_add(&tr, s->replicas[j].connected ? "connected" : "disconnected");
        }
    }
    tally_set(d->m_models, &tm, model_states, 4);
    tally_set(d->m_pipelines, &tp, pipeline_states, 3);
    tally_set(d->m_experiments, &te, experiment_states, 2);
    tally_set(d->m_servers, &ts, server_states, 2);
    tally_set(d->m_replicas, &tr, replica_states, 2);
    set_gauge(d->m_agents, (double)d->nagents);
    set_gauge(d->m_routers, (double)d->nrouters);
    set_gauge(d->m_watchers, (double)d->nwatchers);
    set_gauge(d->m_gateways, (double)d->ngateways);
    set_gauge(d->m_dataflows, (double)d->ndataflows);
    set_gauge(d->m_ready, d->sched != NULL && seldon_sched_ready(d->sched) ? 1 : 0);
    /* The tallies borrow state names from the snapshots: render before freeing them. */
    rc = seldon_metrics_render(out, d->metrics);
    seldon_sched_status_free(ms);
    seldon_sched_status_free(ss);
    seldon_sched_status_free(ps);
    seldon_sched_status_free(es);
    return rc;
}

/* Runs on the scheduler's loop: the scheduler may be read here. */
void sc_metrics_handler(void *user_data, sdh_req *req, const sdh_request *request)
{
    sc_daemon *d = user_data;
    static const sdh_header ctype = {"content-type", 12, "text/plain; version=0.0.4", 25};
    seldon_buf b = SELDON_BUF_INIT;

    if (request->path_len == 5 && memcmp(request->path, "/live", 5) == 0) {
        sdh_respond(req, 200, NULL, 0, NULL);
        return;
    }
    if (request->path_len == 6 && memcmp(request->path, "/ready", 6) == 0) {
        if (d->sched != NULL && seldon_sched_ready(d->sched))
            sdh_respond(req, 200, NULL, 0, NULL);
        else
            sdh_respond_error(req, 503, "waiting for known agents to reconnect");
        return;
    }
    if (!(request->path_len == 8 && memcmp(request->path, "/metrics", 8) == 0)) {
        sdh_respond_error(req, 404, "not found: the metrics port serves /metrics");
        return;
    }
    if (sc_metrics_render(&b, d) != 0) {
        seldon_buf_free(&b);
        sdh_respond_error(req, 500, seldon_last_error());
    } else {
        sdh_respond(req, 200, &ctype, 1, &b);
    }
}
