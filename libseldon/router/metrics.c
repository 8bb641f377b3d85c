/*
 * The router's metric families. The daemon creates them once; balancers
 * record requests, attempt latency, retries and ejections into them.
 */
#include <stdio.h>
#include <string.h>

#include "router/router.h"

int seldon_router_metrics_new(seldon_router_metrics **out, seldon_metrics *registry)
{
    static const char *const route_code[] = {"route", "code"};
    static const char *const route[] = {"route"};
    static const char *const upstream[] = {"upstream"};
    static const char *const side[] = {"side"};
    static const double buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                     0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                     1,      2.5,     5,      10,    30};
    seldon_router_metrics *m;
    int rc;
    if (out == NULL || registry == NULL)
        return sdn_error(SELDON_EINVAL, "router_metrics_new: NULL argument");
    *out = NULL;
    m = sdn_calloc(1, sizeof(*m));
    if (m == NULL)
        return sdn_error(SELDON_ENOMEM, "router_metrics_new: out of memory");
    m->registry = registry;
    if ((rc = seldon_metrics_add(
             &m->requests, registry, SELDON_METRIC_COUNTER, "seldon_router_requests_total",
             "Requests answered, by route and status code", route_code, 2, NULL, 0)) != 0 ||
        (rc = seldon_metrics_add(&m->upstream_seconds, registry, SELDON_METRIC_HISTOGRAM,
                                 "seldon_router_upstream_seconds",
                                 "Time of each attempt on an upstream, by route", route, 1, buckets,
                                 sizeof(buckets) / sizeof(buckets[0]))) != 0 ||
        (rc = seldon_metrics_add(&m->retries, registry, SELDON_METRIC_COUNTER,
                                 "seldon_router_retries_total", "Retries on another upstream",
                                 route, 1, NULL, 0)) != 0 ||
        (rc = seldon_metrics_add(
             &m->ejections, registry, SELDON_METRIC_COUNTER, "seldon_router_ejections_total",
             "Upstreams ejected after consecutive failures", upstream, 1, NULL, 0)) != 0 ||
        (rc = seldon_metrics_add(
             &m->connections, registry, SELDON_METRIC_GAUGE, "seldon_router_open_connections",
             "Open connections, downstream (clients) and upstream", side, 1, NULL, 0)) != 0 ||
        (rc = seldon_metrics_add(&m->mirrored, registry, SELDON_METRIC_COUNTER,
                                 "seldon_router_mirrored_total",
                                 "Copies sent to an experiment's mirror, by the mirror's route",
                                 route, 1, NULL, 0)) != 0) {
        sdn_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

void seldon_router_metrics_free(seldon_router_metrics *metrics)
{
    sdn_free(metrics);
}

seldon_series *seldon_router_metrics_connections(seldon_router_metrics *metrics, const char *side)
{
    seldon_series *s = NULL;
    if (metrics == NULL || side == NULL)
        return NULL;
    if (seldon_metric_series(&s, metrics->connections, &side) != 0)
        return NULL;
    return s;
}

void seldon_router_metrics_request(seldon_router_metrics *metrics, const char *route, int32_t code)
{
    seldon_series *s = NULL;
    const char *labels[2];
    char text[16];
    if (metrics == NULL || route == NULL)
        return;
    snprintf(text, sizeof(text), "%d", (int)code);
    labels[0] = route;
    labels[1] = text;
    if (seldon_metric_series(&s, metrics->requests, labels) == 0)
        seldon_series_add(s, 1);
}
