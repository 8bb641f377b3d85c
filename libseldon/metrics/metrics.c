/*
 * Prometheus metrics. Values are atomics (doubles kept as their bit
 * patterns and updated by compare-and-swap), so request threads never
 * contend on a lock; the registry lock is taken only to add a family or a
 * series, and to render.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "seldon/metrics.h"
#include "util/fpconv.h"

#define METRICS_MAX_LABELS 8
#define METRICS_MAX_BUCKETS 32

struct seldon_series {
    seldon_metric *family;
    char **values; /* label values */
    _Atomic uint64_t value; /* a double's bits: counter/gauge value, histogram sum */
    _Atomic uint64_t count; /* histogram observations */
    _Atomic uint64_t *buckets; /* histogram cumulative counts are computed at render */
    seldon_series *next;
    uint32_t refs; /* under the registry lock: holders of a held series */
    uint8_t held;  /* freed when the last holder releases it (else permanent) */
};

struct seldon_metric {
    seldon_metrics *registry;
    int32_t type;
    char *name;
    char *help;
    char *labels[METRICS_MAX_LABELS];
    size_t nlabels;
    double bounds[METRICS_MAX_BUCKETS];
    size_t nbounds;
    seldon_series *series; /* newest first; rendered in creation order */
    size_t nseries;
    seldon_metric *next;
};

struct seldon_metrics {
    pthread_mutex_t lock;
    seldon_metric *first;
    seldon_metric *last;
};

static double bits_to_double(uint64_t b)
{
    double d;
    memcpy(&d, &b, sizeof(d));
    return d;
}

static uint64_t double_to_bits(double d)
{
    uint64_t b;
    memcpy(&b, &d, sizeof(b));
    return b;
}

static void atomic_add_double(_Atomic uint64_t *slot, double amount)
{
    uint64_t old = atomic_load_explicit(slot, memory_order_relaxed), upd;
    do {
        upd = double_to_bits(bits_to_double(old) + amount);
    } while (!atomic_compare_exchange_weak_explicit(slot, &old, upd, memory_order_relaxed,
                                                    memory_order_relaxed));
}

int seldon_metrics_new(seldon_metrics **out)
{
    seldon_metrics *r;
    if (out == NULL)
        return sdn_error(SELDON_EINVAL, "metrics_new: NULL");
    r = sdn_calloc(1, sizeof(*r));
    if (r == NULL)
        return sdn_error(SELDON_ENOMEM, "metrics_new: out of memory");
    pthread_mutex_init(&r->lock, NULL);
    *out = r;
    return 0;
}

static void series_free(seldon_series *s, size_t nlabels)
{
    size_t i;
    for (i = 0; s->values != NULL && i < nlabels; i++)
        sdn_free(s->values[i]);
    sdn_free(s->values);
    sdn_free((void *)s->buckets);
    sdn_free(s);
}

void seldon_metrics_free(seldon_metrics *registry)
{
    seldon_metric *m, *mn;
    if (registry == NULL)
        return;
    for (m = registry->first; m != NULL; m = mn) {
        seldon_series *s, *sn;
        size_t i;
        mn = m->next;
        for (s = m->series; s != NULL; s = sn) {
            sn = s->next;
            series_free(s, m->nlabels);
        }
        for (i = 0; i < m->nlabels; i++)
            sdn_free(m->labels[i]);
        sdn_free(m->name);
        sdn_free(m->help);
        sdn_free(m);
    }
    pthread_mutex_destroy(&registry->lock);
    sdn_free(registry);
}

static int name_ok(const char *s)
{
    size_t i;
    if (s == NULL || s[0] == '\0' || (s[0] >= '0' && s[0] <= '9'))
        return 0;
    for (i = 0; s[i]; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == ':'))
            return 0;
    return 1;
}

int seldon_metrics_add(seldon_metric **out, seldon_metrics *registry, int32_t type,
                       const char *name, const char *help, const char *const *label_names,
                       size_t nlabels, const double *buckets, size_t nbuckets)
{
    seldon_metric *m;
    size_t i;
    if (out == NULL || registry == NULL || (nlabels && label_names == NULL))
        return sdn_error(SELDON_EINVAL, "metrics_add: NULL argument");
    if (type < SELDON_METRIC_COUNTER || type > SELDON_METRIC_HISTOGRAM || !name_ok(name))
        return sdn_error(SELDON_EINVAL, "metrics_add: bad type or name '%.64s'",
                         name ? name : "");
    if (nlabels > METRICS_MAX_LABELS || nbuckets > METRICS_MAX_BUCKETS ||
        (type == SELDON_METRIC_HISTOGRAM && (nbuckets == 0 || buckets == NULL)))
        return sdn_error(SELDON_EINVAL, "metrics_add %s: labels <= %d, 1..%d buckets", name,
                         METRICS_MAX_LABELS, METRICS_MAX_BUCKETS);
    for (i = 0; i < nlabels; i++)
        if (!name_ok(label_names[i]))
            return sdn_error(SELDON_EINVAL, "metrics_add %s: bad label name", name);
    for (i = 1; i < nbuckets; i++)
        if (!(buckets[i] > buckets[i - 1]))
            return sdn_error(SELDON_EINVAL, "metrics_add %s: buckets must ascend", name);
    m = sdn_calloc(1, sizeof(*m));
    if (m == NULL)
        return sdn_error(SELDON_ENOMEM, "metrics_add: out of memory");
    m->registry = registry;
    m->type = type;
    m->name = sdn_strndup(name, strlen(name));
    m->help = sdn_strndup(help ? help : "", help ? strlen(help) : 0);
    m->nlabels = nlabels;
    for (i = 0; i < nlabels; i++)
        m->labels[i] = sdn_strndup(label_names[i], strlen(label_names[i]));
    if (type == SELDON_METRIC_HISTOGRAM) {
        memcpy(m->bounds, buckets, nbuckets * sizeof(double));
        m->nbounds = nbuckets;
    }
    pthread_mutex_lock(&registry->lock);
    if (registry->last)
        registry->last->next = m;
    else
        registry->first = m;
    registry->last = m;
    pthread_mutex_unlock(&registry->lock);
    *out = m;
    return 0;
}

static seldon_series *find_series(seldon_metric *m, const char *const *values)
{
    seldon_series *s;
    for (s = m->series; s != NULL; s = s->next) {
        size_t i;
        for (i = 0; i < m->nlabels; i++)
            if (strcmp(s->values[i], values[i]) != 0)
                break;
        if (i == m->nlabels)
            return s;
    }
    return NULL;
}

static int series_get(seldon_series **out, seldon_metric *metric, const char *const *label_values,
                      int hold)
{
    seldon_series *s;
    size_t i;
    if (out == NULL || metric == NULL || (metric->nlabels && label_values == NULL))
        return sdn_error(SELDON_EINVAL, "metric_series: NULL argument");
    for (i = 0; i < metric->nlabels; i++)
        if (label_values[i] == NULL)
            return sdn_error(SELDON_EINVAL, "metric_series %s: label %zu is NULL", metric->name, i);
    pthread_mutex_lock(&metric->registry->lock);
    s = find_series(metric, label_values);
    if (s != NULL) {
        if (!hold)
            s->held = 0; /* a plain pointer to it may be kept: permanent now */
        else if (s->held)
            s->refs++;
    } else {
        s = sdn_calloc(1, sizeof(*s));
        if (s != NULL) {
            s->family = metric;
            s->values = sdn_calloc(metric->nlabels + 1, sizeof(char *));
            if (metric->type == SELDON_METRIC_HISTOGRAM)
                s->buckets = sdn_calloc(metric->nbounds, sizeof(*s->buckets));
            for (i = 0; s->values != NULL && i < metric->nlabels; i++)
                s->values[i] = sdn_strndup(label_values[i], strlen(label_values[i]));
            if (s->values == NULL || (metric->type == SELDON_METRIC_HISTOGRAM && !s->buckets) ||
                (metric->nlabels && s->values[metric->nlabels - 1] == NULL)) {
                series_free(s, metric->nlabels);
                s = NULL;
            } else {
                s->held = (uint8_t)(hold != 0);
                s->refs = hold ? 1 : 0;
                s->next = metric->series;
                metric->series = s;
                metric->nseries++;
            }
        }
    }
    pthread_mutex_unlock(&metric->registry->lock);
    if (s == NULL)
        return sdn_error(SELDON_ENOMEM, "metric_series %s: out of memory", metric->name);
    *out = s;
    return 0;
}

int seldon_metric_series(seldon_series **out, seldon_metric *metric,
                         const char *const *label_values)
{
    return series_get(out, metric, label_values, 0);
}

int seldon_metric_series_hold(seldon_series **out, seldon_metric *metric,
                              const char *const *label_values)
{
    return series_get(out, metric, label_values, 1);
}

void seldon_series_release(seldon_series *series)
{
    seldon_metric *m;
    seldon_series **pp;
    if (series == NULL)
        return;
    m = series->family;
    pthread_mutex_lock(&m->registry->lock);
    if (series->held && --series->refs == 0) {
        for (pp = &m->series; *pp != NULL; pp = &(*pp)->next) {
            if (*pp == series) {
                *pp = series->next;
                m->nseries--;
                series_free(series, m->nlabels);
                break;
            }
        }
    }
    pthread_mutex_unlock(&m->registry->lock);
}

size_t seldon_metric_remove(seldon_metric *metric, size_t label_index, const char *value)
{
    seldon_series **pp, *s;
    size_t n = 0;
    if (metric == NULL || value == NULL || label_index >= metric->nlabels)
        return 0;
    pthread_mutex_lock(&metric->registry->lock);
    for (pp = &metric->series; (s = *pp) != NULL;) {
        if (strcmp(s->values[label_index], value) == 0 && !(s->held && s->refs > 0)) {
            *pp = s->next;
            series_free(s, metric->nlabels);
            metric->nseries--;
            n++;
        } else {
            pp = &s->next;
        }
    }
    pthread_mutex_unlock(&metric->registry->lock);
    return n;
}

void seldon_series_add(seldon_series *series, double amount)
{
    if (series == NULL || (series->family->type == SELDON_METRIC_COUNTER && !(amount >= 0)))
        return;
    atomic_add_double(&series->value, amount);
}

void seldon_series_set(seldon_series *series, double value)
{
    if (series != NULL && series->family->type == SELDON_METRIC_GAUGE)
        atomic_store_explicit(&series->value, double_to_bits(value), memory_order_relaxed);
}

void seldon_series_observe(seldon_series *series, double value)
{
    seldon_metric *m;
    size_t i;
    if (series == NULL || series->family->type != SELDON_METRIC_HISTOGRAM || isnan(value))
        return;
    m = series->family;
    for (i = 0; i < m->nbounds; i++) {
        if (value <= m->bounds[i]) {
            atomic_fetch_add_explicit(&series->buckets[i], 1, memory_order_relaxed);
            break;
        }
    }
    atomic_add_double(&series->value, value);
    atomic_fetch_add_explicit(&series->count, 1, memory_order_relaxed);
}

double seldon_series_value(const seldon_series *series)
{
    if (series == NULL)
        return 0;
    if (series->family->type == SELDON_METRIC_HISTOGRAM)
        return (double)atomic_load((_Atomic uint64_t *)&series->count);
    return bits_to_double(atomic_load((_Atomic uint64_t *)&series->value));
}

static int put(seldon_buf *b, const char *s)
{
    return sdn_buf_append(b, s, strlen(s));
}

/* Label values escape backslash, quote and newline, as the exposition format asks. */
static int put_escaped(seldon_buf *b, const char *s)
{
    int rc = 0;
    for (; rc == 0 && *s; s++) {
        if (*s == '\\')
            rc = put(b, "\\\\");
        else if (*s == '"')
            rc = put(b, "\\\"");
        else if (*s == '\n')
            rc = put(b, "\\n");
        else
            rc = sdn_buf_append(b, s, 1);
    }
    return rc;
}

static int put_number(seldon_buf *b, double v)
{
    char tmp[SDN_FMT_F64_MAX];
    size_t n;
    if (isinf(v))
        return put(b, v > 0 ? "+Inf" : "-Inf");
    if (v == (double)(int64_t)v && fabs(v) < 1e15) {
        snprintf(tmp, sizeof(tmp), "%lld", (long long)v);
        return put(b, tmp);
    }
    n = sdn_fmt_f64(tmp, v);
    return sdn_buf_append(b, tmp, n);
}

static int put_labels(seldon_buf *b, const seldon_metric *m, const seldon_series *s,
                      const char *le)
{
    size_t i;
    int rc = 0;
    if (m->nlabels == 0 && le == NULL)
        return 0;
    rc = put(b, "{");
    for (i = 0; rc == 0 && i < m->nlabels; i++) {
        rc = put(b, i ? "," : "");
        if (rc == 0)
            rc = put(b, m->labels[i]);
        if (rc == 0)
            rc = put(b, "=\"");
        if (rc == 0)
            rc = put_escaped(b, s->values[i]);
        if (rc == 0)
            rc = put(b, "\"");
    }
    if (rc == 0 && le != NULL) {
        rc = put(b, m->nlabels ? ",le=\"" : "le=\"");
        if (rc == 0)
            rc = put(b, le);
        if (rc == 0)
            rc = put(b, "\"");
    }
    if (rc == 0)
        rc = put(b, "}");
    return rc;
}

static int render_series(seldon_buf *b, const seldon_metric *m, const seldon_series *s)
{
    int rc = 0;
    if (m->type != SELDON_METRIC_HISTOGRAM) {
        rc = put(b, m->name);
        if (rc == 0)
            rc = put_labels(b, m, s, NULL);
        if (rc == 0)
            rc = put(b, " ");
        if (rc == 0)
            rc = put_number(b, seldon_series_value(s));
        if (rc == 0)
            rc = put(b, "\n");
        return rc;
    } else {
        uint64_t cum = 0;
        size_t i;
        char le[SDN_FMT_F64_MAX + 1];
        for (i = 0; rc == 0 && i <= m->nbounds; i++) {
            if (i < m->nbounds) {
                cum += atomic_load((_Atomic uint64_t *)&s->buckets[i]);
                le[sdn_fmt_f64(le, m->bounds[i])] = '\0';
            } else {
                cum = atomic_load((_Atomic uint64_t *)&s->count);
                snprintf(le, sizeof(le), "+Inf");
            }
            rc = put(b, m->name);
            if (rc == 0)
                rc = put(b, "_bucket");
            if (rc == 0)
                rc = put_labels(b, m, s, le);
            if (rc == 0)
                rc = put(b, " ");
            if (rc == 0)
                rc = put_number(b, (double)cum);
            if (rc == 0)
                rc = put(b, "\n");
        }
        if (rc == 0)
            rc = put(b, m->name);
        if (rc == 0)
            rc = put(b, "_sum");
        if (rc == 0)
            rc = put_labels(b, m, s, NULL);
        if (rc == 0)
            rc = put(b, " ");
        if (rc == 0)
            rc = put_number(b, bits_to_double(atomic_load((_Atomic uint64_t *)&s->value)));
        if (rc == 0)
            rc = put(b, "\n");
        if (rc == 0)
            rc = put(b, m->name);
        if (rc == 0)
            rc = put(b, "_count");
        if (rc == 0)
            rc = put_labels(b, m, s, NULL);
        if (rc == 0)
            rc = put(b, " ");
        if (rc == 0)
            rc = put_number(b, (double)atomic_load((_Atomic uint64_t *)&s->count));
        if (rc == 0)
            rc = put(b, "\n");
        return rc;
    }
}

static int render_family(seldon_buf *b, const seldon_metric *m)
{
    static const char *const types[4] = {"", "counter", "gauge", "histogram"};
    const seldon_series **order;
    const seldon_series *s;
    size_t i = 0;
    int rc;
    rc = put(b, "# HELP ");
    if (rc == 0)
        rc = put(b, m->name);
    if (rc == 0)
        rc = put(b, " ");
    if (rc == 0)
        rc = put(b, m->help);
    if (rc == 0)
        rc = put(b, "\n# TYPE ");
    if (rc == 0)
        rc = put(b, m->name);
    if (rc == 0)
        rc = put(b, " ");
    if (rc == 0)
        rc = put(b, types[m->type]);
    if (rc == 0)
        rc = put(b, "\n");
    if (rc < 0 || m->nseries == 0)
        return rc;
    /* Series were pushed newest first; render them in the order they appeared. */
    order = sdn_malloc(m->nseries * sizeof(*order));
    if (order == NULL)
        return sdn_error(SELDON_ENOMEM, "metrics: out of memory");
    for (s = m->series; s != NULL; s = s->next)
        order[m->nseries - 1 - i++] = s;
    for (i = 0; rc == 0 && i < m->nseries; i++)
        rc = render_series(b, m, order[i]);
    sdn_free(order);
    return rc;
}

int seldon_metrics_render(seldon_buf *out, seldon_metrics *registry)
{
    const seldon_metric *m;
    size_t start;
    int rc = 0;
    if (out == NULL || registry == NULL)
        return sdn_error(SELDON_EINVAL, "metrics_render: NULL argument");
    start = out->len;
    pthread_mutex_lock(&registry->lock);
    for (m = registry->first; rc == 0 && m != NULL; m = m->next)
        rc = render_family(out, m);
    pthread_mutex_unlock(&registry->lock);
    if (rc < 0)
        out->len = start;
    return rc;
}
