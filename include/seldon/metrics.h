/*
 * Prometheus metrics: counters, gauges and histograms with labels, rendered
 * in the Prometheus text exposition format.
 *
 * Thread safety: everything here may be called from any thread. Updating a
 * series is lock-free (atomics); creating a series takes a lock once, so a
 * hot path looks its series up once and keeps the pointer, which stays valid
 * until the registry is freed.
 */
#ifndef SELDON_METRICS_H
#define SELDON_METRICS_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct seldon_metrics seldon_metrics; /* a registry */
typedef struct seldon_metric seldon_metric;   /* a family: one name, several label sets */
typedef struct seldon_series seldon_series;   /* one label set of a family */

#define SELDON_METRIC_COUNTER 1
#define SELDON_METRIC_GAUGE 2
#define SELDON_METRIC_HISTOGRAM 3

/* Caller owns *out; free with seldon_metrics_free(). */
SELDON_API int seldon_metrics_new(seldon_metrics **out);
SELDON_API void seldon_metrics_free(seldon_metrics *registry);

/*
 * Adds a family. name, help and label names are copied. A histogram takes
 * its upper bucket bounds, ascending (+Inf is implicit); others pass NULL/0.
 * *out is borrowed from the registry.
 */
SELDON_API int seldon_metrics_add(seldon_metric **out, seldon_metrics *registry, int32_t type,
                                  const char *name, const char *help,
                                  const char *const *label_names, size_t nlabels,
                                  const double *buckets, size_t nbuckets);

/* The series of a family for these label values (nlabels of them), created on first use. Borrowed. */
SELDON_API int seldon_metric_series(seldon_series **out, seldon_metric *metric,
                                    const char *const *label_values);

/* Counter: add a non-negative amount. Gauge: add any amount. */
SELDON_API void seldon_series_add(seldon_series *series, double amount);
/* Gauge: set. */
SELDON_API void seldon_series_set(seldon_series *series, double value);
/* Histogram: record one observation. */
SELDON_API void seldon_series_observe(seldon_series *series, double value);
/* The current value of a counter or gauge, or a histogram's count. */
SELDON_API double seldon_series_value(const seldon_series *series);

/*
 * Removes every series of the family whose label label_index has this value
 * (a model version unloaded: its series go, so a long-lived process does not
 * keep one per version it ever served). Returns how many went; a series held
 * (seldon_metric_series_hold) stays until released. The removed
 * series are freed: a pointer to one must not be used afterwards, so call it
 * where nothing can still update them (the thread that does, or once the
 * holder of the cached pointers is gone). A later seldon_metric_series() for
 * the same labels starts a new series at zero.
 */
SELDON_API size_t seldon_metric_remove(seldon_metric *metric, size_t label_index,
                                       const char *value);

/*
 * A series held while something uses it: as seldon_metric_series(), but the
 * call takes a reference, given back with seldon_series_release(); when the
 * last one goes, the series leaves the registry and is freed (a series of a
 * model instance goes with the instance). A series also asked for through
 * seldon_metric_series() becomes permanent (references are then ignored), so
 * a pointer from that call stays valid until the registry is freed.
 * Borrowed until released; the registry must outlive every holder.
 */
SELDON_API int seldon_metric_series_hold(seldon_series **out, seldon_metric *metric,
                                         const char *const *label_values);
/* Gives back a reference from seldon_metric_series_hold(); NULL does nothing. */
SELDON_API void seldon_series_release(seldon_series *series);

/* Appends every family, in the order added, as Prometheus text (version 0.0.4). */
SELDON_API int seldon_metrics_render(seldon_buf *out, seldon_metrics *registry);

#ifdef __cplusplus
}
#endif

#endif
