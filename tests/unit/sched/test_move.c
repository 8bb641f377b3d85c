/* Models moving: a replica disconnects, a server scales down, a replica holds strays. */
#include "sched_test.h"

#define CAPS "mlserver,sklearn,xgboost"

Test(move, a_disconnected_replica_has_its_models_placed_elsewhere)
{
    seldon_sched *s = open_mem();
    cmd c[8];
    connect_ok(s, "mlserver", 0, CAPS, GIB, T0);
    connect_ok(s, "mlserver", 1, CAPS, GIB, T0);
    load_model(s, "a", "sklearn", "1Mi", 1, NULL, T0);
    load_model(s, "b", "sklearn", "1Mi", 1, NULL, T0);
    ack_all(s, T0);
    cr_assert_str_eq(placement(s, "b", 1), "mlserver:1");
    cr_assert_eq(seldon_sched_agent_disconnect(s, "mlserver", 1, T0), 0);
    cr_assert_eq(route_upstreams(s, "b"), -1);
    cr_assert_str_eq(vstate(s, "b", 1, NULL, 0), "ModelProgressing");
    cr_assert_eq(take_cmds(s, c, 8), 1);
    cr_assert_eq(c[0].op, SELDON_SCHED_LOAD);
    cr_assert_str_eq(c[0].model, "b");
    cr_assert_eq(c[0].index, 0);
    seldon_sched_agent_event(s, "mlserver", 0, c[0].id, "b", 1, SELDON_SCHED_LOADED, NULL, T0);
    cr_assert_str_eq(vstate(s, "b", 1, NULL, 0), "ModelAvailable");
    cr_assert_str_eq(placement(s, "b", 1), "mlserver:0");
    seldon_sched_close(s);
}

Test(move, with_nowhere_to_go_the_reason_says_so)
{
    seldon_sched *s = open_mem();
    char reason[600];
    connect_ok(s, "mlserver", 0, CAPS, GIB, T0);
    load_model(s, "a", "sklearn", NULL, 1, NULL, T0);
    ack_all(s, T0);
    cr_assert_eq(seldon_sched_agent_disconnect(s, "mlserver", 0, T0), 0);
    cr_assert_str_eq(vstate(s, "a", 1, reason, sizeof(reason)), "ScheduleFailed");
    cr_assert_str_eq(reason, "no server replicas are connected");
    /* It comes back: placed again. */
    connect_ok(s, "mlserver", 0, CAPS, GIB, T0);
    cr_assert_eq(ack_all(s, T0), 1);
    cr_assert_str_eq(vstate(s, "a", 1, NULL, 0), "ModelAvailable");
    seldon_sched_close(s);
}

Test(move, a_replica_reconnecting_with_its_models_keeps_them)
{
    seldon_sched *s = open_mem();
    seldon_sched_loaded l[2] = {{"a", 1}, {"ghost", 7}};
    cmd c[8];
    connect_ok(s, "mlserver", 0, CAPS, GIB, T0);
    load_model(s, "a", "sklearn", NULL, 1, NULL, T0);
    ack_all(s, T0);
    /* Its stream restarts before anything else happened: the scheduler sees a new connect. */
    cr_assert_eq(connect_r(s, "mlserver", 0, CAPS, GIB, 0, l, 2, T0), 0);
    cr_assert_eq(take_cmds(s, c, 8), 1); /* only the unknown model is unloaded */
    cr_assert_eq(c[0].op, SELDON_SCHED_UNLOAD);
    cr_assert_str_eq(c[0].model, "ghost");
    cr_assert_eq(c[0].version, 7);
    cr_assert_null(NULL);
    cr_assert_eq(seldon_sched_agent_event(s, "mlserver", 0, c[0].id, "ghost", 7,
                                          SELDON_SCHED_UNLOADED, NULL, T0),
                 0);
    cr_assert_str_eq(vstate(s, "a", 1, NULL, 0), "ModelAvailable");
    seldon_sched_close(s);
}

Test(move, a_load_in_flight_is_sent_again_after_a_reconnect)
{
    seldon_sched *s = open_mem();
    cmd c[8];
    connect_ok(s, "mlserver", 0, CAPS, GIB, T0);
    load_model(s, "a", "sklearn", NULL, 1, NULL, T0);
    cr_assert_eq(take_cmds(s, c, 8), 1);
    connect_ok(s, "mlserver", 0, CAPS, GIB, T0); /* it did not get to load it */
    cr_assert_eq(take_cmds(s, c, 8), 1);
    cr_assert_eq(c[0].op, SELDON_SCHED_LOAD);
    cr_assert_str_eq(c[0].model, "a");
    seldon_sched_close(s);
}

/* Server replicas lowered: models move off the removed replicas first, then those unload. */
Test(move, server_scale_down_drains_the_removed_replicas)
{
    seldon_sched *s = open_mem();
    seldon_sched_status *st = NULL;
    cmd c[8];
    size_t n, i;
    apply_ok(s,
             "apiVersion: mlops.seldon.io/v1alpha1\nkind: Server\nmetadata: {name: mlserver}\n"
             "spec: {serverConfig: mlserver, replicas: 3}\n",
             T0);
    connect_ok(s, "mlserver", 0, NULL, GIB, T0);
    connect_ok(s, "mlserver", 1, NULL, GIB, T0);
    connect_ok(s, "mlserver", 2, NULL, GIB, T0);
    load_model(s, "a", "sklearn", "100", 1, NULL, T0);
    load_model(s, "b", "sklearn", "100", 1, NULL, T0);
    load_model(s, "c", "sklearn", "100", 1, NULL, T0);
    load_model(s, "d", "sklearn", "100", 2, NULL, T0);
    ack_all(s, T0);
    cr_assert_str_eq(placement(s, "c", 1), "mlserver:2");
    cr_assert_str_eq(placement(s, "d", 1), "mlserver:0,1");

    apply_ok(s,
             "apiVersion: mlops.seldon.io/v1alpha1\nkind: Server\nmetadata: {name: mlserver}\n"
             "spec: {serverConfig: mlserver, replicas: 1}\n",
             T0 + MS);
    cr_assert_eq(seldon_sched_servers(&st, s, "mlserver"), 0);
    cr_assert_eq(seldon_sched_status_server(st, 0)->desired_replicas, 1);
    cr_assert_eq(seldon_sched_status_server(st, 0)->replicas[2].draining, 1);
    seldon_sched_status_free(st);
    /* b, c and d's second replica are loaded on replica 0 first; the old ones keep serving. */
    n = take_cmds(s, c, 8);
    cr_assert_eq(n, 2, "%zu", n); /* b and c: d already holds replica 0 */
    for (i = 0; i < n; i++) {
        cr_assert_eq(c[i].op, SELDON_SCHED_LOAD);
        cr_assert_eq(c[i].index, 0);
    }
    cr_assert_eq(route_upstreams(s, "c"), 1);
    {
        char reason[600];
        cr_assert_str_eq(vstate(s, "c", 1, reason, sizeof(reason)), "ModelAvailable");
        cr_assert_str_eq(reason, "moving to server \"mlserver\": 0 of 1 replicas loaded there, 1 "
                                 "draining replicas serve meanwhile");
    }
    for (i = 0; i < n; i++)
        seldon_sched_agent_event(s, "mlserver", 0, c[i].id, c[i].model, 1, SELDON_SCHED_LOADED,
                                 NULL, T0 + MS);
    cr_assert_str_eq(vstate(s, "c", 1, NULL, 0), "ModelAvailable");
    cr_assert_eq(route_upstreams(s, "c"), 1); /* the drained one left the routes */
    seldon_sched_tick(s, T0 + 1000 * MS);
    n = take_cmds(s, c, 8);
    cr_assert_eq(n, 2);
    for (i = 0; i < n; i++) {
        cr_assert_eq(c[i].op, SELDON_SCHED_UNLOAD);
        cr_assert_neq(c[i].index, 0);
        seldon_sched_agent_event(s, "mlserver", c[i].index, c[i].id, c[i].model, 1,
                                 SELDON_SCHED_UNLOADED, NULL, T0 + 1000 * MS);
    }
    cr_assert_str_eq(placement(s, "b", 1), "mlserver:0");
    cr_assert_str_eq(placement(s, "c", 1), "mlserver:0");
    /* d wants 2 replicas, only 1 remains: it keeps the one it can and says why. */
    cr_assert_str_eq(placement(s, "d", 1), "mlserver:0,1");
    /* The removed replicas go away; they are forgotten. */
    cr_assert_eq(seldon_sched_agent_disconnect(s, "mlserver", 1, T0 + 2000 * MS), 0);
    cr_assert_eq(seldon_sched_agent_disconnect(s, "mlserver", 2, T0 + 2000 * MS), 0);
    cr_assert_eq(seldon_sched_servers(&st, s, "mlserver"), 0);
    cr_assert_eq(seldon_sched_status_server(st, 0)->replicas_count, 1);
    seldon_sched_status_free(st);
    cr_assert_str_eq(placement(s, "d", 1), "mlserver:0");
    seldon_sched_close(s);
}

Test(move, a_deleted_server_drains_everything)
{
    seldon_sched *s = open_mem();
    cmd c[8];
    apply_ok(s,
             "apiVersion: mlops.seldon.io/v1alpha1\nkind: Server\nmetadata: {name: old}\n"
             "spec: {serverConfig: mlserver}\n",
             T0);
    connect_ok(s, "old", 0, NULL, GIB, T0);
    load_model(s, "a", "sklearn", NULL, 1, NULL, T0);
    ack_all(s, T0);
    connect_ok(s, "new", 0, CAPS, GIB, T0);
    cr_assert_eq(seldon_sched_unload(s, SELDON_KIND_SERVER, "old", T0), 0);
    cr_assert_eq(take_cmds(s, c, 8), 1);
    cr_assert_str_eq(c[0].server, "new");
    cr_assert_eq(seldon_sched_unload(s, SELDON_KIND_SERVER, "old", T0), SELDON_ENOTFOUND);
    seldon_sched_close(s);
}

Test(move, an_agent_eviction_keeps_the_model_placed)
{
    seldon_sched *s = open_mem();
    cmd c[4];
    uint64_t gen;
    connect_ok(s, "mlserver", 0, CAPS, GIB, T0);
    load_model(s, "a", "sklearn", NULL, 1, NULL, T0);
    ack_all(s, T0);
    gen = seldon_sched_routes_generation(s);
    /* Overcommit: the agent dropped it to make room and will load it again on demand. */
    cr_assert_eq(
        seldon_sched_agent_event(s, "mlserver", 0, 0, "a", 1, SELDON_SCHED_UNLOADED, "evicted", T0),
        0);
    cr_assert_str_eq(vstate(s, "a", 1, NULL, 0), "ModelAvailable");
    cr_assert_eq(route_upstreams(s, "a"), 1);
    cr_assert_eq(seldon_sched_routes_generation(s), gen);
    cr_assert_eq(take_cmds(s, c, 4), 0);
    seldon_sched_close(s);
}

Test(move, a_model_found_on_a_replica_is_adopted_when_wanted)
{
    seldon_sched *s = open_mem();
    seldon_sched_loaded l[1] = {{"a", 1}};
    cmd c[4];
    connect_ok(s, "mlserver", 0, CAPS, 1000, T0);
    load_model(s, "a", "sklearn", "600", 2, "  minReplicas: 1\n", T0); /* 1 of 2 fits */
    ack_all(s, T0);
    cr_assert_str_eq(placement(s, "a", 1), "mlserver:0");
    /* A second replica appears already holding it (say a restarted scheduler lost track). */
    cr_assert_eq(connect_r(s, "mlserver", 1, CAPS, 1000, 0, l, 1, T0), 0);
    cr_assert_eq(take_cmds(s, c, 4), 0);
    cr_assert_str_eq(placement(s, "a", 1), "mlserver:0,1");
    cr_assert_str_eq(vstate(s, "a", 1, NULL, 0), "ModelAvailable");
    cr_assert_eq(route_upstreams(s, "a"), 2);
    seldon_sched_close(s);
}

Test(move, replica_connections_are_events)
{
    seldon_sched *s = open_mem();
    seldon_sched_event e;
    int connected = 0, disconnected = 0;
    connect_ok(s, "mlserver", 3, CAPS, GIB, T0);
    cr_assert_eq(seldon_sched_agent_disconnect(s, "mlserver", 3, T0 + MS), 0);
    while (seldon_sched_next_event(s, &e) == 0) {
        cr_assert_eq(e.kind, SELDON_KIND_SERVER);
        cr_assert_str_eq(e.name, "mlserver");
        cr_assert_eq(e.server_index, 3);
        connected += strcmp(e.state, "ServerReplicaConnected") == 0;
        disconnected += strcmp(e.state, "ServerReplicaDisconnected") == 0 && e.time_ns == T0 + MS;
    }
    cr_assert_eq(connected, 1);
    cr_assert_eq(disconnected, 1);
    seldon_sched_close(s);
}

Test(move, a_found_model_that_does_not_fit_the_replica_is_unloaded)
{
    seldon_sched *s = open_mem();
    seldon_sched_loaded l[1] = {{"onnx-model", 1}};
    cmd c[4];
    load_model(s, "onnx-model", "onnx", NULL, 1, NULL, T0); /* ScheduleFailed: no replicas */
    cr_assert_eq(connect_r(s, "mlserver", 0, CAPS, GIB, 0, l, 1, T0), 0);
    cr_assert_eq(take_cmds(s, c, 4), 1);
    cr_assert_eq(c[0].op, SELDON_SCHED_UNLOAD);
    cr_assert_str_eq(vstate(s, "onnx-model", 1, NULL, 0), "ScheduleFailed");
    seldon_sched_close(s);
}

Test(move, a_move_whose_load_fails_keeps_the_old_replica_serving)
{
    seldon_sched *s = open_mem();
    char reason[600];
    cmd c[4];
    apply_ok(s,
             "apiVersion: mlops.seldon.io/v1alpha1\nkind: Server\nmetadata: {name: mlserver}\n"
             "spec: {serverConfig: mlserver, replicas: 2}\n",
             T0);
    connect_ok(s, "mlserver", 0, NULL, GIB, T0);
    connect_ok(s, "mlserver", 1, NULL, 2 * GIB, T0);
    load_model(s, "a", "sklearn", NULL, 1, NULL, T0);
    ack_all(s, T0);
    cr_assert_str_eq(placement(s, "a", 1), "mlserver:1");
    apply_ok(s,
             "apiVersion: mlops.seldon.io/v1alpha1\nkind: Server\nmetadata: {name: mlserver}\n"
             "spec: {serverConfig: mlserver, replicas: 1}\n",
             T0);
    cr_assert_eq(take_cmds(s, c, 4), 1);
    cr_assert_eq(c[0].index, 0);
    seldon_sched_agent_event(s, "mlserver", 0, c[0].id, "a", 1, SELDON_SCHED_LOAD_FAILED,
                             "disk full", T0);
    cr_assert_str_eq(vstate(s, "a", 1, reason, sizeof(reason)), "ModelAvailable");
    cr_assert(strstr(reason, "moving to server \"mlserver\" failed: load failed: disk full"), "%s",
              reason);
    cr_assert_eq(route_upstreams(s, "a"), 1);
    seldon_sched_tick(s, T0 + 1000 * MS);
    cr_assert_eq(take_cmds(s, c, 4), 0); /* the draining replica is not unloaded */
    seldon_sched_close(s);
}
