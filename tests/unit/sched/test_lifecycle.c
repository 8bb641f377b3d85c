/* Model life cycle: load, states, commands, events, timeouts, versions, unload, routes, status. */
#include "sched_test.h"

#define CAPS "mlserver,sklearn,xgboost"

Test(lifecycle, load_makes_a_command_then_available_and_a_route)
{
    seldon_sched *s = open_mem();
    seldon_sched_command c;
    seldon_sched_event e;
    uint64_t gen;
    int saw_progressing = 0, saw_available = 0, saw_loading = 0;

    connect_ok(s, "mlserver", 0, CAPS, GIB, T0);
    gen = seldon_sched_routes_generation(s);
    cr_assert_eq(load_model(s, "iris", "sklearn", "1Mi", 1, NULL, T0), 1);
    cr_assert_eq(route_upstreams(s, "iris"), -1);
    cr_assert_eq(seldon_sched_next_command(s, &c), 0);
    cr_assert_eq(c.op, SELDON_SCHED_LOAD);
    cr_assert_str_eq(c.server, "mlserver");
    cr_assert_eq(c.index, 0);
    cr_assert_str_eq(c.model, "iris");
    cr_assert_eq(c.version, 1);
    cr_assert_eq(c.memory_bytes, 1 << 20);
    cr_assert(c.spec && strstr(c.spec, "\"storageUri\":\"file:///models/iris\""), "%s", c.spec);
    cr_assert_eq(seldon_sched_next_command(s, &(seldon_sched_command){0}), SELDON_ENOTFOUND);
    cr_assert_str_eq(vstate(s, "iris", 1, NULL, 0), "ModelProgressing");
    cr_assert_eq(seldon_sched_agent_event(s, "mlserver", 0, c.id, "iris", 1, SELDON_SCHED_LOADED,
                                          NULL, T0 + MS),
                 0);
    cr_assert_str_eq(vstate(s, "iris", 1, NULL, 0), "ModelAvailable");
    cr_assert_eq(route_upstreams(s, "iris"), 1);
    cr_assert_gt(seldon_sched_routes_generation(s), gen);
    while (seldon_sched_next_event(s, &e) == 0) {
        if (e.kind != SELDON_KIND_MODEL || strcmp(e.name, "iris") != 0)
            continue;
        saw_progressing |= strcmp(e.state, "ModelProgressing") == 0;
        saw_loading |= strcmp(e.state, "Loading") == 0 && e.server_index == 0 &&
                       strcmp(e.server, "mlserver") == 0;
        if (strcmp(e.state, "ModelAvailable") == 0) {
            saw_available = 1;
            cr_assert_eq(e.time_ns, T0 + MS);
            cr_assert_eq(e.server_index, -1);
        }
    }
    cr_assert(saw_progressing && saw_loading && saw_available);
    {
        seldon_routes *rt = NULL;
        size_t idx;
        const seldon_router_upstream *u;
        cr_assert_eq(seldon_sched_routes(&rt, s), 0);
        cr_assert_eq(seldon_routes_find(&idx, rt, "iris", 4), 0);
        u = seldon_routes_upstream(rt, idx, 0);
        cr_assert_str_eq(u->http, "127.0.0.1:19000");
        cr_assert_str_eq(u->grpc, "127.0.0.1:19001");
        seldon_routes_release(rt);
    }
    seldon_sched_close(s);
}

Test(lifecycle, reapplying_the_same_spec_changes_nothing)
{
    seldon_sched *s = open_mem();
    uint64_t gen;
    connect_ok(s, "mlserver", 0, CAPS, GIB, T0);
    cr_assert_eq(load_model(s, "iris", "sklearn", NULL, 1, NULL, T0), 1);
    ack_all(s, T0);
    gen = seldon_sched_routes_generation(s);
    cr_assert_eq(load_model(s, "iris", "sklearn", NULL, 1, NULL, T0), 1);
    cr_assert_eq(ack_all(s, T0), 0);
    cr_assert_eq(seldon_sched_routes_generation(s), gen);
    seldon_sched_close(s);
}

Test(lifecycle, load_failed_is_model_failed_with_the_reason)
{
    seldon_sched *s = open_mem();
    cmd c[4];
    char reason[600];
    connect_ok(s, "mlserver", 0, CAPS, GIB, T0);
    load_model(s, "iris", "sklearn", NULL, 1, NULL, T0);
    cr_assert_eq(take_cmds(s, c, 4), 1);
    cr_assert_eq(seldon_sched_agent_event(s, "mlserver", 0, c[0].id, "iris", 1,
                                          SELDON_SCHED_LOAD_FAILED, "storageUri: no such folder",
                                          T0),
                 0);
    cr_assert_str_eq(vstate(s, "iris", 1, reason, sizeof(reason)), "ModelFailed");
    cr_assert_str_eq(reason, "load failed: storageUri: no such folder");
    cr_assert_eq(route_upstreams(s, "iris"), -1);
    /* Applying the same spec again retries the load. */
    cr_assert_eq(load_model(s, "iris", "sklearn", NULL, 1, NULL, T0), 1);
    cr_assert_str_eq(vstate(s, "iris", 1, NULL, 0), "ModelProgressing");
    cr_assert_eq(ack_all(s, T0), 1);
    cr_assert_str_eq(vstate(s, "iris", 1, NULL, 0), "ModelAvailable");
    seldon_sched_close(s);
}

Test(lifecycle, a_load_that_never_answers_is_sent_again_then_fails)
{
    seldon_sched *s = NULL;
    seldon_sched_config cfg = SELDON_SCHED_CONFIG_INIT;
    cmd c[4];
    char reason[600];
    int64_t next;
    cfg.load_timeout_ms = 1000;
    cfg.load_retries = 1;
    cr_assert_eq(seldon_sched_open(&s, &cfg, T0), 0);
    connect_ok(s, "mlserver", 0, CAPS, GIB, T0);
    load_model(s, "iris", "sklearn", NULL, 1, NULL, T0);
    cr_assert_eq(take_cmds(s, c, 4), 1);
    next = seldon_sched_tick(s, T0 + 10 * MS);
    cr_assert_eq(next, T0 + 1000 * MS);
    cr_assert_eq(take_cmds(s, c, 4), 0);
    seldon_sched_tick(s, next);
    cr_assert_eq(take_cmds(s, c + 1, 3), 1); /* sent again, a new id */
    cr_assert_eq(c[1].op, SELDON_SCHED_LOAD);
    cr_assert_neq(c[1].id, c[0].id);
    cr_assert_str_eq(vstate(s, "iris", 1, NULL, 0), "ModelProgressing");
    next = seldon_sched_tick(s, next + 1);
    cr_assert_eq(next, T0 + 2000 * MS);
    cr_assert_eq(seldon_sched_tick(s, next), INT64_MAX);
    cr_assert_eq(take_cmds(s, c, 4), 0);
    cr_assert_str_eq(vstate(s, "iris", 1, reason, sizeof(reason)), "ModelFailed");
    cr_assert(strstr(reason, "load timed out after 2 attempts"), "%s", reason);
    /* A late answer still counts. */
    cr_assert_eq(seldon_sched_agent_event(s, "mlserver", 0, c[1].id, "iris", 1, SELDON_SCHED_LOADED,
                                          NULL, next + MS),
                 0);
    cr_assert_str_eq(vstate(s, "iris", 1, NULL, 0), "ModelAvailable");
    seldon_sched_close(s);
}

Test(lifecycle, unload_terminates_after_the_route_grace)
{
    seldon_sched *s = open_mem(); /* grace 500 ms */
    cmd c[4];
    int64_t next;
    connect_ok(s, "mlserver", 0, CAPS, GIB, T0);
    load_model(s, "iris", "sklearn", NULL, 1, NULL, T0);
    ack_all(s, T0);
    cr_assert_eq(seldon_sched_unload(s, SELDON_KIND_MODEL, "iris", T0 + MS), 0);
    cr_assert_str_eq(vstate(s, "iris", 1, NULL, 0), "ModelTerminating");
    cr_assert_eq(route_upstreams(s, "iris"), -1); /* out of the routes first */
    cr_assert_eq(take_cmds(s, c, 4), 0);          /* the unload waits for routers */
    next = seldon_sched_tick(s, T0 + 2 * MS);
    cr_assert_eq(next, T0 + 501 * MS);
    seldon_sched_tick(s, next);
    cr_assert_eq(take_cmds(s, c, 4), 1);
    cr_assert_eq(c[0].op, SELDON_SCHED_UNLOAD);
    cr_assert_str_eq(c[0].model, "iris");
    cr_assert_eq(c[0].version, 1);
    cr_assert_str_eq(vstate(s, "iris", 1, NULL, 0), "ModelTerminating");
    cr_assert_eq(seldon_sched_agent_event(s, "mlserver", 0, c[0].id, "iris", 1,
                                          SELDON_SCHED_UNLOADED, NULL, next),
                 0);
    cr_assert_str_eq(vstate(s, "iris", 1, NULL, 0), "ModelTerminated");
    {
        seldon_sched_status *st = NULL;
        cr_assert_eq(seldon_sched_models(&st, s, "iris"), 0);
        cr_assert_eq(seldon_sched_status_model(st, 0)->deleted, 1);
        seldon_sched_status_free(st);
        cr_assert_eq(seldon_sched_servers(&st, s, "mlserver"), 0);
        cr_assert_eq(seldon_sched_status_server(st, 0)->replicas[0].available_memory_bytes, GIB);
        seldon_sched_status_free(st);
    }
    cr_assert_eq(seldon_sched_unload(s, SELDON_KIND_MODEL, "iris", next), SELDON_ENOTFOUND);
    /* Applied again: a new version. */
    cr_assert_eq(load_model(s, "iris", "sklearn", NULL, 1, NULL, next), 2);
    cr_assert_eq(ack_all(s, next), 1);
    cr_assert_str_eq(vstate(s, "iris", 0, NULL, 0), "ModelAvailable");
    seldon_sched_close(s);
}

Test(lifecycle, unload_before_the_load_was_sent_drops_it)
{
    seldon_sched *s = open_mem();
    cmd c[4];
    connect_ok(s, "mlserver", 0, CAPS, GIB, T0);
    load_model(s, "iris", "sklearn", NULL, 1, NULL, T0);
    cr_assert_eq(seldon_sched_unload(s, SELDON_KIND_MODEL, "iris", T0), 0);
    cr_assert_eq(take_cmds(s, c, 4), 0);
    cr_assert_str_eq(vstate(s, "iris", 1, NULL, 0), "ModelTerminated");
    seldon_sched_close(s);
}

/* The versions scenario: a spec change makes version 2; the old one goes once it is available. */
Test(lifecycle, rollout_keeps_the_old_version_until_the_new_one_is_available)
{
    seldon_sched *s = open_mem();
    cmd c[8];
    size_t n, i;
    connect_ok(s, "mlserver", 0, "mlserver,sklearn", GIB, T0);
    connect_ok(s, "mlserver", 1, "mlserver,sklearn", GIB, T0);
    connect_ok(s, "xgb", 0, "mlserver,xgboost", GIB, T0);
    connect_ok(s, "xgb", 1, "mlserver,xgboost", GIB, T0);
    cr_assert_eq(load_model(s, "model-version", "sklearn, mlserver", NULL, 2, NULL, T0), 1);
    cr_assert_eq(ack_all(s, T0), 2);
    cr_assert_str_eq(vstate(s, "model-version", 1, NULL, 0), "ModelAvailable");

    cr_assert_eq(load_model(s, "model-version", "xgboost, mlserver", NULL, 2, NULL, T0), 2);
    n = take_cmds(s, c, 8);
    cr_assert_eq(n, 2);
    for (i = 0; i < n; i++) {
        cr_assert_eq(c[i].op, SELDON_SCHED_LOAD);
        cr_assert_str_eq(c[i].server, "xgb");
        cr_assert_eq(c[i].version, 2);
    }
    cr_assert_str_eq(vstate(s, "model-version", 1, NULL, 0), "ModelAvailable");
    cr_assert_str_eq(vstate(s, "model-version", 2, NULL, 0), "ModelProgressing");
    cr_assert_eq(route_upstreams(s, "model-version"), 2);
    /* One new replica up: traffic splits over both versions' replicas. */
    cr_assert_eq(seldon_sched_agent_event(s, "xgb", c[0].index, c[0].id, "model-version", 2,
                                          SELDON_SCHED_LOADED, NULL, T0),
                 0);
    cr_assert_eq(route_upstreams(s, "model-version"), 3);
    cr_assert_eq(take_cmds(s, c + 2, 6), 0); /* nothing unloads yet */
    cr_assert_eq(seldon_sched_agent_event(s, "xgb", c[1].index, c[1].id, "model-version", 2,
                                          SELDON_SCHED_LOADED, NULL, T0),
                 0);
    cr_assert_str_eq(vstate(s, "model-version", 2, NULL, 0), "ModelAvailable");
    cr_assert_str_eq(vstate(s, "model-version", 1, NULL, 0), "ModelTerminating");
    cr_assert_eq(route_upstreams(s, "model-version"), 2);
    seldon_sched_tick(s, T0 + 1000 * MS);
    n = take_cmds(s, c, 8);
    cr_assert_eq(n, 2);
    for (i = 0; i < n; i++) {
        cr_assert_eq(c[i].op, SELDON_SCHED_UNLOAD);
        cr_assert_str_eq(c[i].server, "mlserver");
        cr_assert_eq(c[i].version, 1);
        cr_assert_eq(seldon_sched_agent_event(s, c[i].server, c[i].index, c[i].id, c[i].model, 1,
                                              SELDON_SCHED_UNLOADED, NULL, T0 + 1000 * MS),
                     0);
    }
    /* The old version is gone from status once terminated. */
    cr_assert_str_eq(vstate(s, "model-version", 1, NULL, 0), "");
    cr_assert_str_eq(vstate(s, "model-version", 0, NULL, 0), "ModelAvailable");
    seldon_sched_close(s);
}

Test(lifecycle, a_failed_new_version_leaves_the_old_one_serving)
{
    seldon_sched *s = open_mem();
    cmd c[4];
    connect_ok(s, "mlserver", 0, CAPS, GIB, T0);
    load_model(s, "iris", "sklearn", NULL, 1, NULL, T0);
    ack_all(s, T0);
    load_model(s, "iris", "xgboost", NULL, 1, NULL, T0);
    cr_assert_eq(take_cmds(s, c, 4), 1);
    cr_assert_eq(c[0].version, 2);
    seldon_sched_agent_event(s, "mlserver", 0, c[0].id, "iris", 2, SELDON_SCHED_LOAD_FAILED,
                             "bad artifact", T0);
    cr_assert_str_eq(vstate(s, "iris", 2, NULL, 0), "ModelFailed");
    cr_assert_str_eq(vstate(s, "iris", 1, NULL, 0), "ModelAvailable");
    cr_assert_eq(route_upstreams(s, "iris"), 1);
    seldon_sched_close(s);
}

Test(lifecycle, a_replicas_only_change_applies_in_place)
{
    seldon_sched *s = open_mem();
    cmd c[8];
    connect_ok(s, "mlserver", 0, CAPS, GIB, T0);
    connect_ok(s, "mlserver", 1, CAPS, GIB, T0);
    connect_ok(s, "mlserver", 2, CAPS, GIB, T0);
    cr_assert_eq(load_model(s, "iris", "sklearn", NULL, 1, NULL, T0), 1);
    ack_all(s, T0);
    cr_assert_eq(load_model(s, "iris", "sklearn", NULL, 3, NULL, T0), 1);
    cr_assert_eq(take_cmds(s, c, 8), 2);
    cr_assert_eq(c[0].op, SELDON_SCHED_LOAD);
    cr_assert_eq(c[0].version, 1);
    seldon_sched_agent_event(s, c[0].server, c[0].index, c[0].id, "iris", 1, SELDON_SCHED_LOADED,
                             NULL, T0);
    seldon_sched_agent_event(s, c[1].server, c[1].index, c[1].id, "iris", 1, SELDON_SCHED_LOADED,
                             NULL, T0);
    cr_assert_str_eq(placement(s, "iris", 1), "mlserver:0,1,2");
    cr_assert_eq(route_upstreams(s, "iris"), 3);
    /* Down to 1: two replicas leave the routes, then unload. */
    cr_assert_eq(load_model(s, "iris", "sklearn", NULL, 1, NULL, T0), 1);
    cr_assert_eq(route_upstreams(s, "iris"), 1);
    seldon_sched_tick(s, T0 + 1000 * MS);
    cr_assert_eq(take_cmds(s, c, 8), 2);
    cr_assert_eq(c[0].op, SELDON_SCHED_UNLOAD);
    cr_assert_eq(c[1].op, SELDON_SCHED_UNLOAD);
    seldon_sched_agent_event(s, c[0].server, c[0].index, c[0].id, "iris", 1, SELDON_SCHED_UNLOADED,
                             NULL, T0 + 1000 * MS);
    seldon_sched_agent_event(s, c[1].server, c[1].index, c[1].id, "iris", 1, SELDON_SCHED_UNLOADED,
                             NULL, T0 + 1000 * MS);
    cr_assert_eq(strlen(placement(s, "iris", 1)), strlen("mlserver:0"));
    cr_assert_str_eq(vstate(s, "iris", 1, NULL, 0), "ModelAvailable");
    seldon_sched_close(s);
}

Test(lifecycle, status_snapshots)
{
    seldon_sched *s = open_mem();
    seldon_sched_status *st = NULL;
    const seldon_sched_model_status *m;
    const seldon_sched_server_status *sv;
    connect_ok(s, "mlserver", 0, CAPS, 1000, T0);
    load_model(s, "a", "sklearn", "100", 1, NULL, T0);
    load_model(s, "b", "sklearn", "200", 1, NULL, T0);
    ack_all(s, T0 + MS);
    cr_assert_eq(seldon_sched_models(&st, s, NULL), 0);
    cr_assert_eq(seldon_sched_status_count(st), 2);
    cr_assert_null(seldon_sched_status_server(st, 0));
    m = seldon_sched_status_model(st, 1);
    cr_assert_str_eq(m->name, "b");
    cr_assert_eq(m->versions_count, 1);
    cr_assert_str_eq(m->versions[0].server, "mlserver");
    cr_assert_str_eq(m->versions[0].state, "ModelAvailable");
    cr_assert_eq(m->versions[0].available_replicas, 1);
    cr_assert_eq(m->versions[0].desired_replicas, 1);
    cr_assert_eq(m->versions[0].replicas_count, 1);
    cr_assert_str_eq(m->versions[0].replicas[0].state, "Available");
    cr_assert_eq(m->versions[0].last_change_ns, T0 + MS);
    cr_assert(strstr(m->versions[0].spec, "\"name\":\"b\""), "%s", m->versions[0].spec);
    cr_assert_null(seldon_sched_status_model(st, 2));
    seldon_sched_status_free(st);
    cr_assert_eq(seldon_sched_models(&st, s, "zzz"), SELDON_ENOTFOUND);

    cr_assert_eq(seldon_sched_servers(&st, s, NULL), 0);
    cr_assert_eq(seldon_sched_status_count(st), 1);
    sv = seldon_sched_status_server(st, 0);
    cr_assert_str_eq(sv->name, "mlserver");
    cr_assert_eq(sv->connected_replicas, 1);
    cr_assert_eq(sv->desired_replicas, 1);
    cr_assert_eq(sv->loaded_models, 2);
    cr_assert_eq(sv->replicas_count, 1);
    cr_assert_eq(sv->replicas[0].memory_bytes, 1000);
    cr_assert_eq(sv->replicas[0].available_memory_bytes, 700);
    cr_assert_eq(sv->replicas[0].capabilities_count, 3);
    cr_assert_eq(sv->replicas[0].models_count, 2);
    cr_assert_str_eq(sv->replicas[0].models[0], "a_1");
    cr_assert_eq(sv->replicas[0].connected, 1);
    cr_assert_eq(sv->replicas[0].draining, 0);
    seldon_sched_status_free(st);
    seldon_sched_close(s);
}

Test(lifecycle, pipelines_and_experiments_are_stored_and_unloaded)
{
    seldon_sched *s = open_mem();
    uint32_t v[8];
    apply_ok(s,
             "apiVersion: mlops.seldon.io/v1alpha1\nkind: Experiment\nmetadata: {name: ab}\n"
             "spec:\n  default: iris\n  candidates: [{name: iris, weight: 50}, {name: iris2, "
             "weight: 50}]\n",
             T0);
    cr_assert(saw_event(s, "ab", "Stored")); /* named after the manifest is gone */
    cr_assert_eq(seldon_sched_unload(s, SELDON_KIND_EXPERIMENT, "ab", T0), 0);
    cr_assert(saw_event(s, "ab", "Deleted"));
    cr_assert_eq(seldon_sched_unload(s, SELDON_KIND_EXPERIMENT, "ab", T0), SELDON_ENOTFOUND);
    cr_assert_eq(seldon_sched_unload(s, SELDON_KIND_PIPELINE, "p", T0), SELDON_ENOTFOUND);
    /* A model is the default of at most one experiment. */
    cr_assert_eq(apply_v(s,
                         "apiVersion: mlops.seldon.io/v1alpha1\nkind: Experiment\nmetadata: "
                         "{name: e1}\nspec:\n  default: iris\n  candidates: [{name: iris, weight: "
                         "50}, {name: iris2, weight: 50}]\n---\n"
                         "apiVersion: mlops.seldon.io/v1alpha1\nkind: Experiment\nmetadata: "
                         "{name: e2}\nspec:\n  default: iris\n  candidates: [{name: iris, weight: "
                         "50}, {name: iris3, weight: 50}]\n",
                         v, T0),
                 SELDON_EINVAL);
    cr_assert(strstr(seldon_last_error(), "document 2 (Experiment \"e2\"): spec.default"), "%s",
              seldon_last_error());
    seldon_sched_close(s);
}

#define EXP(name, def, cand)                                                                       \
    "apiVersion: mlops.seldon.io/v1alpha1\nkind: Experiment\nmetadata: {name: " name "}\n"         \
    "spec:\n  default: " def "\n  candidates: [{name: " def ", weight: 50}, {name: " cand          \
    ", weight: 50}]\n"

Test(lifecycle, one_default_per_model_across_applies_and_restarts)
{
    char *dir = temp_dir();
    seldon_sched *s = open_dir(dir, T0, 0);
    apply_ok(s, EXP("e1", "iris", "iris2"), T0);
    apply_ok(s, EXP("e1", "iris", "iris3"), T0); /* the same experiment again: fine */
    cr_assert_eq(apply_v(s, EXP("e2", "iris", "iris4"), NULL, T0), SELDON_EINVAL);
    cr_assert(strstr(seldon_last_error(), "already the default of experiment \"e1\""), "%s",
              seldon_last_error());
    seldon_sched_close(s);
    s = open_dir(dir, T0, 0);
    cr_assert_eq(apply_v(s, EXP("e2", "iris", "iris4"), NULL, T0), SELDON_EINVAL);
    cr_assert_eq(seldon_sched_unload(s, SELDON_KIND_EXPERIMENT, "e1", T0), 0);
    apply_ok(s, EXP("e2", "iris", "iris4"), T0);
    seldon_sched_close(s);
    rm_dir(dir);
}

Test(lifecycle, scaled_to_zero_replicas_and_back)
{
    seldon_sched *s = open_mem();
    cmd c[4];
    connect_ok(s, "mlserver", 0, CAPS, GIB, T0);
    cr_assert_eq(load_model(s, "iris", "sklearn", NULL, 1, NULL, T0), 1);
    ack_all(s, T0);
    cr_assert_eq(load_model(s, "iris", "sklearn", NULL, 0, NULL, T0), 1); /* in place */
    cr_assert_eq(route_upstreams(s, "iris"), -1);
    cr_assert_str_eq(vstate(s, "iris", 1, NULL, 0), "ModelProgressing");
    seldon_sched_tick(s, T0 + 1000 * MS);
    cr_assert_eq(ack_all(s, T0 + 1000 * MS), 1);
    cr_assert_str_eq(vstate(s, "iris", 1, NULL, 0), "ModelScaledDown");
    cr_assert_eq(load_model(s, "iris", "sklearn", NULL, 1, NULL, T0), 1);
    cr_assert_eq(take_cmds(s, c, 4), 1);
    cr_assert_eq(c[0].op, SELDON_SCHED_LOAD);
    seldon_sched_close(s);
}
