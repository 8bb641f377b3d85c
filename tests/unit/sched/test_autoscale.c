/* Autoscaling: models on their agents' load reports, servers on their models' wants; fake clock. */
#include "sched_test.h"

static seldon_sched *open_as(void)
{
    seldon_sched *s = open_mem();
    seldon_sched_autoscale as = SELDON_SCHED_AUTOSCALE_INIT;
    as.scale_up_inflight = 4;
    as.scale_up_period_ms = 1000;
    as.scale_down_idle_ms = 5000;
    as.server_cooldown_ms = 3000;
    cr_assert_eq(seldon_sched_set_autoscale(s, &as), 0, "%s", seldon_last_error());
    return s;
}

static int32_t desired(seldon_sched *s, const char *model)
{
    seldon_sched_status *ss = NULL;
    int32_t d;
    cr_assert_eq(seldon_sched_models(&ss, s, model), 0);
    d = (int32_t)seldon_sched_status_model(ss, 0)->versions[0].desired_replicas;
    seldon_sched_status_free(ss);
    return d;
}

/* Every replica of server 0..n-1 reports the same load for model version 1. */
static void report(seldon_sched *s, const char *model, uint32_t n, uint32_t inflight,
                   int64_t idle_ms, int64_t now)
{
    uint32_t i;
    for (i = 0; i < n; i++)
        cr_assert_eq(seldon_sched_model_load(s, "mlserver", i, model, 1, inflight, idle_ms, now), 0,
                     "%s", seldon_last_error());
}

Test(autoscale, defaults_and_bad_values)
{
    seldon_sched *s = open_mem();
    seldon_sched_autoscale as = SELDON_SCHED_AUTOSCALE_INIT;
    cr_assert_eq(as.scale_up_inflight, 30);
    cr_assert_eq(as.scale_up_period_ms, 20000);
    cr_assert_eq(as.scale_down_idle_ms, 600000);
    as.scale_up_inflight = 0;
    cr_assert_eq(seldon_sched_set_autoscale(s, &as), SELDON_EINVAL);
    cr_assert(strstr(seldon_last_error(), "scale_up_inflight") != NULL);
    as.scale_up_inflight = 1;
    as.scale_down_idle_ms = -1;
    cr_assert_eq(seldon_sched_set_autoscale(s, &as), SELDON_EINVAL);
    cr_assert(strstr(seldon_last_error(), "scale_down_idle_ms") != NULL);
    cr_assert_eq(seldon_sched_model_load(s, "nope", 0, "m", 1, 1, 0, T0), SELDON_ENOTFOUND);
    seldon_sched_close(s);
}

Test(autoscale, model_up_and_down_within_bounds)
{
    seldon_sched *s = open_as();
    int64_t now = T0, dl;
    uint32_t i;
    for (i = 0; i < 3; i++)
        connect_ok(s, "mlserver", i, "sklearn", GIB, now);
    load_model(s, "iris", "sklearn", NULL, 1, "  minReplicas: 1\n  maxReplicas: 2\n", now);
    ack_all(s, now);
    cr_assert_eq(route_upstreams(s, "iris"), 1);

    /* Above the threshold (4 per replica), but not yet for the period. */
    report(s, "iris", 1, 9, 0, now);
    dl = seldon_sched_tick(s, now);
    cr_assert_eq(dl, now + 1000 * MS);
    cr_assert_eq(desired(s, "iris"), 1);
    /* Load drops below within the period: the clock restarts. */
    now += 500 * MS;
    report(s, "iris", 1, 2, 0, now);
    seldon_sched_tick(s, now);
    now += 600 * MS;
    report(s, "iris", 1, 9, 0, now);
    seldon_sched_tick(s, now);
    cr_assert_eq(desired(s, "iris"), 1);
    /* Above for the whole period: one more replica, loaded before it is routed. */
    now += 1000 * MS;
    report(s, "iris", 1, 9, 0, now);
    seldon_sched_tick(s, now);
    cr_assert_eq(desired(s, "iris"), 2);
    cr_assert(saw_event(s, "iris", "ModelReplicasChanged"));
    cr_assert_eq(route_upstreams(s, "iris"), 1);
    /* Still loaded heavily, but a replica is loading: no step before it is loaded. */
    now += 5000 * MS;
    report(s, "iris", 1, 50, 0, now);
    seldon_sched_tick(s, now);
    cr_assert_eq(desired(s, "iris"), 2);
    ack_all(s, now);
    cr_assert_eq(route_upstreams(s, "iris"), 2);
    /* At maxReplicas: no more, however long the load. */
    for (i = 0; i < 5; i++) {
        now += 1000 * MS;
        report(s, "iris", 3, 50, 0, now);
        seldon_sched_tick(s, now);
    }
    cr_assert_eq(desired(s, "iris"), 2);

    /* Idle: after the idle period one replica goes, leaving the routes before its unload. */
    report(s, "iris", 3, 0, 0, now);
    now += 1000 * MS;
    report(s, "iris", 3, 0, 1000, now);
    dl = seldon_sched_tick(s, now);
    cr_assert_eq(dl, now + 4000 * MS);
    now = dl;
    seldon_sched_tick(s, now);
    cr_assert_eq(desired(s, "iris"), 1);
    cr_assert_eq(route_upstreams(s, "iris"), 1);
    {
        cmd c[8];
        cr_assert_eq(take_cmds(s, c, 8), 0, "no unload before the routes' grace");
    }
    now += 600 * MS;
    seldon_sched_tick(s, now);
    cr_assert_eq(ack_all(s, now), 1);
    /* At minReplicas: idle for ever, still one. */
    for (i = 0; i < 3; i++) {
        now += 10000 * MS;
        report(s, "iris", 3, 0, 60000, now);
        seldon_sched_tick(s, now);
    }
    cr_assert_eq(desired(s, "iris"), 1);
    cr_assert_eq(route_upstreams(s, "iris"), 1);
    seldon_sched_close(s);
}

Test(autoscale, models_without_bounds_do_not_scale)
{
    seldon_sched *s = open_as();
    int64_t now = T0;
    connect_ok(s, "mlserver", 0, "sklearn", GIB, now);
    connect_ok(s, "mlserver", 1, "sklearn", GIB, now);
    load_model(s, "iris", "sklearn", NULL, 1, NULL, now);
    ack_all(s, now);
    report(s, "iris", 1, 100, 0, now);
    seldon_sched_tick(s, now);
    now += 60000 * MS;
    report(s, "iris", 1, 100, 0, now);
    cr_assert_eq(seldon_sched_tick(s, now), INT64_MAX);
    cr_assert_eq(desired(s, "iris"), 1);
    seldon_sched_close(s);
}

Test(autoscale, server_scales_up_to_max_and_down_after_cooldown)
{
    seldon_sched *s = open_as();
    seldon_sched_scale_request rq;
    uint32_t want = 0;
    const char *why = NULL;
    int64_t now = T0, dl;
    apply_ok(s,
             "apiVersion: mlops.seldon.io/v1alpha1\nkind: Server\nmetadata:\n  name: mlserver\n"
             "spec:\n  serverConfig: mlserver\n  replicas: 1\n  maxReplicas: 3\n",
             now);
    connect_ok(s, "mlserver", 0, "sklearn", GIB, now);
    cr_assert_eq(seldon_sched_next_scale(s, &rq), SELDON_ENOTFOUND);
    load_model(s, "iris", "sklearn", NULL, 4, "  minReplicas: 1\n", now);
    seldon_sched_tick(s, now);
    /* Wants 4, the server may have 3: asked for 3. */
    cr_assert_eq(seldon_sched_next_scale(s, &rq), 0);
    cr_assert_str_eq(rq.server, "mlserver");
    cr_assert_eq(rq.replicas, 3);
    cr_assert(strstr(rq.reason, "4") != NULL, "%s", rq.reason);
    cr_assert_eq(seldon_sched_next_scale(s, &rq), SELDON_ENOTFOUND);
    cr_assert_eq(seldon_sched_server_scale(&want, &why, s, "mlserver"), 0);
    cr_assert_eq(want, 3);
    cr_assert(saw_event(s, "mlserver", "ServerScaleRequested"));
    /* The new replicas take placements (they do not drain). */
    connect_ok(s, "mlserver", 1, "sklearn", GIB, now);
    connect_ok(s, "mlserver", 2, "sklearn", GIB, now);
    seldon_sched_tick(s, now);
    ack_all(s, now);
    cr_assert_str_eq(placement(s, "iris", 0), "mlserver:0,1,2");
    /* The model wants 1 again: after the cool-down the server is asked for 1. */
    load_model(s, "iris", "sklearn", NULL, 1, "  minReplicas: 1\n", now);
    dl = seldon_sched_tick(s, now);
    cr_assert_eq(seldon_sched_next_scale(s, &rq), SELDON_ENOTFOUND);
    cr_assert_leq(dl, now + 3000 * MS);
    {
        int64_t t0 = now;
        now = t0 + 2999 * MS;
        seldon_sched_tick(s, now);
        ack_all(s, now);
        seldon_sched_tick(s, now);
        cr_assert_eq(seldon_sched_next_scale(s, &rq), SELDON_ENOTFOUND);
        now = t0 + 3000 * MS;
    }
    seldon_sched_tick(s, now);
    cr_assert_eq(seldon_sched_next_scale(s, &rq), 0);
    cr_assert_eq(rq.replicas, 1);
    cr_assert(strstr(rq.reason, "cool-down") != NULL, "%s", rq.reason);
    now += 1000 * MS;
    seldon_sched_tick(s, now);
    ack_all(s, now);
    cr_assert_str_eq(placement(s, "iris", 0), "mlserver:0");
    seldon_sched_close(s);
}

Test(autoscale, server_without_max_is_not_scaled)
{
    seldon_sched *s = open_as();
    seldon_sched_scale_request rq;
    int64_t now = T0;
    apply_ok(s,
             "apiVersion: mlops.seldon.io/v1alpha1\nkind: Server\nmetadata:\n  name: mlserver\n"
             "spec:\n  serverConfig: mlserver\n  replicas: 1\n",
             now);
    connect_ok(s, "mlserver", 0, "sklearn", GIB, now);
    load_model(s, "iris", "sklearn", NULL, 3, NULL, now);
    seldon_sched_tick(s, now);
    cr_assert_eq(seldon_sched_next_scale(s, &rq), SELDON_ENOTFOUND);
    seldon_sched_close(s);
}

Test(autoscale, a_restart_keeps_the_replicas_a_server_was_scaled_to)
{
    char *dir = temp_dir();
    seldon_sched *s = open_dir(dir, T0, 60000);
    seldon_sched_scale_request rq;
    seldon_sched_loaded held = {"iris", 1};
    seldon_sched_autoscale as = SELDON_SCHED_AUTOSCALE_INIT;
    int64_t now = T0;
    cmd c[16];
    apply_ok(s,
             "apiVersion: mlops.seldon.io/v1alpha1\nkind: Server\nmetadata:\n  name: mlserver\n"
             "spec:\n  serverConfig: mlserver\n  replicas: 1\n  maxReplicas: 2\n",
             now);
    connect_ok(s, "mlserver", 0, "sklearn", GIB, now);
    load_model(s, "iris", "sklearn", NULL, 2, "  minReplicas: 1\n", now);
    seldon_sched_tick(s, now);
    cr_assert_eq(seldon_sched_next_scale(s, &rq), 0);
    cr_assert_eq(rq.replicas, 2);
    connect_ok(s, "mlserver", 1, "sklearn", GIB, now);
    seldon_sched_tick(s, now);
    ack_all(s, now);
    cr_assert_str_eq(placement(s, "iris", 0), "mlserver:0,1");
    seldon_sched_close(s);

    /* Back with both replicas holding the model: the scale request was stored with the
       server; it shows in the status at once and is asked once more at start (the host
       sets the count again); nothing moves, nothing loads. */
    now += 1000 * MS;
    s = open_dir(dir, now, 60000);
    {
        uint32_t want = 0;
        const char *why = NULL;
        cr_assert_eq(seldon_sched_server_scale(&want, &why, s, "mlserver"), 0);
        cr_assert_eq(want, 2);
        cr_assert(why != NULL && strstr(why, "2") != NULL, "%s", why ? why : "(null)");
        cr_assert_eq(seldon_sched_next_scale(s, &rq), 0);
        cr_assert_eq(rq.replicas, 2);
        cr_assert_eq(seldon_sched_next_scale(s, &rq), SELDON_ENOTFOUND);
    }
    as.server_cooldown_ms = 3000;
    cr_assert_eq(seldon_sched_set_autoscale(s, &as), 0);
    cr_assert_eq(connect_r(s, "mlserver", 0, "sklearn", GIB, 0, &held, 1, now), 0);
    cr_assert_eq(connect_r(s, "mlserver", 1, "sklearn", GIB, 0, &held, 1, now), 0);
    seldon_sched_tick(s, now);
    cr_assert_eq(take_cmds(s, c, 16), 0, "a restart moved a model");
    cr_assert_eq(seldon_sched_next_scale(s, &rq), SELDON_ENOTFOUND, "asked again: %u", rq.replicas);
    cr_assert_str_eq(placement(s, "iris", 0), "mlserver:0,1");
    cr_assert_eq(route_upstreams(s, "iris"), 2);
    seldon_sched_close(s);
    rm_dir(dir);
}

Test(autoscale, a_restart_keeps_the_replicas_the_autoscaler_chose)
{
    char *dir = temp_dir();
    seldon_sched *s = open_dir(dir, T0, 60000);
    seldon_sched_autoscale as = SELDON_SCHED_AUTOSCALE_INIT;
    seldon_sched_loaded held = {"iris", 1};
    int64_t now = T0;
    cmd c[16];
    as.scale_up_inflight = 4;
    as.scale_up_period_ms = 1000;
    cr_assert_eq(seldon_sched_set_autoscale(s, &as), 0);
    connect_ok(s, "mlserver", 0, "sklearn", GIB, now);
    connect_ok(s, "mlserver", 1, "sklearn", GIB, now);
    load_model(s, "iris", "sklearn", NULL, 1, "  minReplicas: 1\n  maxReplicas: 2\n", now);
    ack_all(s, now);
    report(s, "iris", 2, 9, 0, now);
    seldon_sched_tick(s, now);
    now += 1000 * MS;
    report(s, "iris", 2, 9, 0, now);
    seldon_sched_tick(s, now);
    ack_all(s, now);
    cr_assert_eq(desired(s, "iris"), 2);
    cr_assert_str_eq(placement(s, "iris", 0), "mlserver:0,1");
    seldon_sched_close(s);
    now += 1000 * MS;
    s = open_dir(dir, now, 60000);
    cr_assert_eq(desired(s, "iris"), 2, "the autoscaled count is stored with the version");
    cr_assert_eq(connect_r(s, "mlserver", 0, "sklearn", GIB, 0, &held, 1, now), 0);
    cr_assert_eq(connect_r(s, "mlserver", 1, "sklearn", GIB, 0, &held, 1, now), 0);
    seldon_sched_tick(s, now);
    cr_assert_eq(take_cmds(s, c, 16), 0, "a restart moved a model");
    cr_assert_eq(desired(s, "iris"), 2);
    cr_assert_str_eq(placement(s, "iris", 0), "mlserver:0,1");
    seldon_sched_close(s);
    rm_dir(dir);
}
