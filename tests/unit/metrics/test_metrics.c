/* Prometheus metrics: families, series, concurrency, and the text format. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "seldon/metrics.h"

#define CHECK_OK(expr) cr_assert_eq((expr), 0, "%s: %s", #expr, seldon_last_error())

static char *render(seldon_metrics *r)
{
    static char text[8192];
    seldon_buf b = SELDON_BUF_INIT;
    CHECK_OK(seldon_metrics_render(&b, r));
    cr_assert_lt(b.len, sizeof(text));
    memcpy(text, b.data, b.len);
    text[b.len] = '\0';
    seldon_buf_free(&b);
    return text;
}

Test(metrics, text_format_for_each_type)
{
    seldon_metrics *r = NULL;
    seldon_metric *req = NULL, *loaded = NULL, *lat = NULL;
    seldon_series *a = NULL, *b = NULL, *g = NULL, *h = NULL;
    const char *labels[2] = {"model", "method"};
    const char *va[2] = {"iris", "rest"}, *vb[2] = {"we\"ird\n", "grpc"};
    const double buckets[3] = {0.001, 0.01, 0.1};

    CHECK_OK(seldon_metrics_new(&r));
    CHECK_OK(seldon_metrics_add(&req, r, SELDON_METRIC_COUNTER, "seldon_requests_total",
                                "Requests served.", labels, 2, NULL, 0));
    CHECK_OK(seldon_metrics_add(&loaded, r, SELDON_METRIC_GAUGE, "seldon_loaded_models",
                                "Models loaded.", NULL, 0, NULL, 0));
    CHECK_OK(seldon_metrics_add(&lat, r, SELDON_METRIC_HISTOGRAM, "seldon_latency_seconds",
                                "Latency.", labels, 1, buckets, 3));
    CHECK_OK(seldon_metric_series(&a, req, va));
    CHECK_OK(seldon_metric_series(&b, req, vb));
    CHECK_OK(seldon_metric_series(&g, loaded, NULL));
    CHECK_OK(seldon_metric_series(&h, lat, va));
    seldon_series_add(a, 2);
    seldon_series_add(a, -5); /* counters never go down */
    seldon_series_add(b, 1);
    seldon_series_set(g, 3);
    seldon_series_observe(h, 0.005);
    seldon_series_observe(h, 0.5);
    cr_assert_str_eq(render(r),
                     "# HELP seldon_requests_total Requests served.\n"
                     "# TYPE seldon_requests_total counter\n"
                     "seldon_requests_total{model=\"iris\",method=\"rest\"} 2\n"
                     "seldon_requests_total{model=\"we\\\"ird\\n\",method=\"grpc\"} 1\n"
                     "# HELP seldon_loaded_models Models loaded.\n"
                     "# TYPE seldon_loaded_models gauge\n"
                     "seldon_loaded_models 3\n"
                     "# HELP seldon_latency_seconds Latency.\n"
                     "# TYPE seldon_latency_seconds histogram\n"
                     "seldon_latency_seconds_bucket{model=\"iris\",le=\"0.001\"} 0\n"
                     "seldon_latency_seconds_bucket{model=\"iris\",le=\"0.01\"} 1\n"
                     "seldon_latency_seconds_bucket{model=\"iris\",le=\"0.1\"} 1\n"
                     "seldon_latency_seconds_bucket{model=\"iris\",le=\"+Inf\"} 2\n"
                     "seldon_latency_seconds_sum{model=\"iris\"} 0.505\n"
                     "seldon_latency_seconds_count{model=\"iris\"} 2\n");
    seldon_metrics_free(r);
}

Test(metrics, rejects_bad_definitions)
{
    seldon_metrics *r = NULL;
    seldon_metric *m = NULL;
    const double desc[2] = {1, 0.5};
    const char *bad_label[1] = {"a-b"};
    CHECK_OK(seldon_metrics_new(&r));
    cr_assert_eq(seldon_metrics_add(&m, r, SELDON_METRIC_COUNTER, "1bad", "", NULL, 0, NULL, 0),
                 SELDON_EINVAL);
    cr_assert_eq(seldon_metrics_add(&m, r, SELDON_METRIC_HISTOGRAM, "h", "", NULL, 0, desc, 2),
                 SELDON_EINVAL);
    cr_assert_eq(seldon_metrics_add(&m, r, SELDON_METRIC_GAUGE, "g", "", bad_label, 1, NULL, 0),
                 SELDON_EINVAL);
    seldon_metrics_free(r);
}

static seldon_series *shared;

static void *bump(void *arg)
{
    int i;
    (void)arg;
    for (i = 0; i < 100000; i++)
        seldon_series_add(shared, 1);
    return NULL;
}

Test(metrics, concurrent_updates_lose_nothing)
{
    seldon_metrics *r = NULL;
    seldon_metric *m = NULL;
    pthread_t t[4];
    int i;
    CHECK_OK(seldon_metrics_new(&r));
    CHECK_OK(seldon_metrics_add(&m, r, SELDON_METRIC_COUNTER, "c", "", NULL, 0, NULL, 0));
    CHECK_OK(seldon_metric_series(&shared, m, NULL));
    for (i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, bump, NULL);
    for (i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(seldon_series_value(shared), 400000.0);
    seldon_metrics_free(r);
}

Test(metrics, remove_drops_the_series_of_a_label_value)
{
    seldon_metrics *r = NULL;
    seldon_metric *req = NULL;
    seldon_series *s = NULL;
    const char *labels[2] = {"model", "method"};
    const char *v1[2] = {"iris_1", "rest"}, *v1g[2] = {"iris_1", "grpc"},
               *v2[2] = {"iris_2", "rest"};
    int i;

    CHECK_OK(seldon_metrics_new(&r));
    CHECK_OK(seldon_metrics_add(&req, r, SELDON_METRIC_COUNTER, "seldon_requests_total", "R.",
                                labels, 2, NULL, 0));
    CHECK_OK(seldon_metric_series(&s, req, v1));
    seldon_series_add(s, 1);
    CHECK_OK(seldon_metric_series(&s, req, v2));
    seldon_series_add(s, 2);
    CHECK_OK(seldon_metric_series(&s, req, v1g));
    seldon_series_add(s, 3);
    cr_assert_eq(seldon_metric_remove(req, 0, "iris_1"), 2);
    cr_assert_eq(seldon_metric_remove(req, 0, "iris_1"), 0);
    cr_assert_eq(seldon_metric_remove(req, 2, "iris_1"), 0, "no such label");
    cr_assert_eq(seldon_metric_remove(NULL, 0, "x"), 0);
    cr_assert_str_eq(render(r), "# HELP seldon_requests_total R.\n"
                                "# TYPE seldon_requests_total counter\n"
                                "seldon_requests_total{model=\"iris_2\",method=\"rest\"} 2\n");
    /* Many versions come and go: nothing stays behind. */
    for (i = 0; i < 1000; i++) {
        char name[32];
        const char *v[2] = {name, "rest"};
        snprintf(name, sizeof(name), "m_%d", i);
        CHECK_OK(seldon_metric_series(&s, req, v));
        seldon_series_add(s, 1);
        cr_assert_eq(seldon_metric_remove(req, 0, name), 1);
    }
    cr_assert_str_eq(render(r), "# HELP seldon_requests_total R.\n"
                                "# TYPE seldon_requests_total counter\n"
                                "seldon_requests_total{model=\"iris_2\",method=\"rest\"} 2\n");
    /* A series asked for again starts from zero. */
    CHECK_OK(seldon_metric_series(&s, req, v1));
    cr_assert_eq(seldon_series_value(s), 0);
    seldon_metrics_free(r);
}

Test(metrics, held_series_go_with_their_last_holder)
{
    seldon_metrics *r = NULL;
    seldon_metric *req = NULL;
    seldon_series *a = NULL, *b = NULL, *p = NULL;
    const char *labels[1] = {"model"};
    const char *v1[1] = {"iris_1"}, *v2[1] = {"iris_2"};

    CHECK_OK(seldon_metrics_new(&r));
    CHECK_OK(seldon_metrics_add(&req, r, SELDON_METRIC_COUNTER, "seldon_requests_total", "R.",
                                labels, 1, NULL, 0));
    /* Two holders of iris_1 (an old instance and its reload): one release keeps it. */
    CHECK_OK(seldon_metric_series_hold(&a, req, v1));
    CHECK_OK(seldon_metric_series_hold(&b, req, v1));
    cr_assert_eq(a, b);
    seldon_series_add(a, 2);
    cr_assert_eq(seldon_metric_remove(req, 0, "iris_1"), 0, "a held series is not removed");
    seldon_series_release(a);
    seldon_series_add(b, 1);
    cr_assert_str_eq(render(r), "# HELP seldon_requests_total R.\n"
                                "# TYPE seldon_requests_total counter\n"
                                "seldon_requests_total{model=\"iris_1\"} 3\n");
    seldon_series_release(b);
    cr_assert_str_eq(render(r), "# HELP seldon_requests_total R.\n"
                                "# TYPE seldon_requests_total counter\n");
    /* Asked for plainly too: permanent, releases do not free it. */
    CHECK_OK(seldon_metric_series_hold(&a, req, v2));
    CHECK_OK(seldon_metric_series(&p, req, v2));
    seldon_series_release(a);
    seldon_series_add(p, 5);
    cr_assert_str_eq(render(r), "# HELP seldon_requests_total R.\n"
                                "# TYPE seldon_requests_total counter\n"
                                "seldon_requests_total{model=\"iris_2\"} 5\n");
    seldon_series_release(NULL);
    seldon_metrics_free(r);
}
