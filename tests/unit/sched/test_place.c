/* Placement: Seldon's filters and sorters, partial scheduling, ScheduleFailed reasons. */
#include "sched_test.h"

#define MLSERVER_CAPS "mlserver,sklearn,xgboost,python"
#define TRITON_CAPS "triton,onnx,tensorflow,python"

Test(place, requirements_pick_the_server_with_those_capabilities)
{
    seldon_sched *s = open_mem();
    connect_ok(s, "mlserver", 0, MLSERVER_CAPS, GIB, T0);
    connect_ok(s, "triton", 0, TRITON_CAPS, GIB, T0);
    load_model(s, "iris", "sklearn", NULL, 1, NULL, T0);
    load_model(s, "mnist", "onnx", NULL, 1, NULL, T0);
    load_model(s, "both", "python", NULL, 1, NULL, T0);
    cr_assert_str_eq(placement(s, "iris", 0), "mlserver:0");
    cr_assert_str_eq(placement(s, "mnist", 0), "triton:0");
    cr_assert_str_eq(placement(s, "both", 0), "mlserver:0"); /* first registered */
    cr_assert_str_eq(vstate(s, "iris", 0, NULL, 0), "ModelProgressing");
    seldon_sched_close(s);
}

Test(place, model_type_is_a_requirement)
{
    seldon_sched *s = open_mem();
    connect_ok(s, "mlserver", 0, MLSERVER_CAPS, GIB, T0);
    connect_ok(s, "triton", 0, TRITON_CAPS, GIB, T0);
    load_model(s, "m", "python", NULL, 1, "  modelType: tensorflow\n", T0);
    cr_assert_str_eq(placement(s, "m", 0), "triton:0");
    seldon_sched_close(s);
}

Test(place, server_pin_is_honoured)
{
    seldon_sched *s = open_mem();
    char reason[600];
    connect_ok(s, "a", 0, MLSERVER_CAPS, GIB, T0);
    connect_ok(s, "b", 0, MLSERVER_CAPS, GIB, T0);
    load_model(s, "pinned", "sklearn", NULL, 1, "  server: b\n", T0);
    cr_assert_str_eq(placement(s, "pinned", 0), "b:0");
    load_model(s, "nowhere", "sklearn", NULL, 1, "  server: c\n", T0);
    cr_assert_str_eq(vstate(s, "nowhere", 0, reason, sizeof(reason)), "ScheduleFailed");
    cr_assert(strstr(reason, "spec.server") && strstr(reason, "\"c\""), "%s", reason);
    /* A pin to a server whose replicas lack a requirement names it. */
    load_model(s, "lacking", "onnx", NULL, 1, "  server: a\n", T0);
    cr_assert_str_eq(vstate(s, "lacking", 0, reason, sizeof(reason)), "ScheduleFailed");
    cr_assert(strstr(reason, "\"a\"") && strstr(reason, "\"onnx\""), "%s", reason);
    seldon_sched_close(s);
}

Test(place, unknown_requirement_is_named)
{
    seldon_sched *s = open_mem();
    char reason[600];
    connect_ok(s, "mlserver", 0, MLSERVER_CAPS, GIB, T0);
    connect_ok(s, "triton", 0, TRITON_CAPS, GIB, T0);
    load_model(s, "gpu", "sklearn, cuda-12", NULL, 1, NULL, T0);
    cr_assert_str_eq(vstate(s, "gpu", 0, reason, sizeof(reason)), "ScheduleFailed");
    cr_assert(strstr(reason, "no server has \"cuda-12\""), "%s", reason);
    cr_assert_null(strstr(reason, "sklearn"), "%s", reason);
    /* Each requirement exists, never together. */
    load_model(s, "mixed", "sklearn, onnx", NULL, 1, NULL, T0);
    cr_assert_str_eq(vstate(s, "mixed", 0, reason, sizeof(reason)), "ScheduleFailed");
    cr_assert(strstr(reason, "all of the requirements [\"sklearn\", \"onnx\"]"), "%s", reason);
    /* A server that gains the capability later takes it: no rescan needed from the user. */
    connect_ok(s, "gpu", 0, "sklearn,cuda-12", GIB, T0);
    cr_assert_str_eq(placement(s, "gpu", 0), "gpu:0");
    cr_assert_str_eq(vstate(s, "gpu", 0, NULL, 0), "ModelProgressing");
    seldon_sched_close(s);
}

Test(place, no_replicas_connected)
{
    seldon_sched *s = open_mem();
    char reason[600];
    load_model(s, "iris", "sklearn", NULL, 1, NULL, T0);
    cr_assert_str_eq(vstate(s, "iris", 0, reason, sizeof(reason)), "ScheduleFailed");
    cr_assert_str_eq(reason, "no server replicas are connected");
    connect_ok(s, "mlserver", 0, MLSERVER_CAPS, GIB, T0);
    cr_assert_str_eq(placement(s, "iris", 0), "mlserver:0");
    seldon_sched_close(s);
}

Test(place, memory_must_suffice_and_the_shortfall_is_named)
{
    seldon_sched *s = open_mem();
    char reason[600];
    connect_ok(s, "mlserver", 0, MLSERVER_CAPS, 1000, T0);
    connect_ok(s, "mlserver", 1, MLSERVER_CAPS, 1500, T0);
    load_model(s, "big", "sklearn", "2000", 1, NULL, T0);
    cr_assert_str_eq(vstate(s, "big", 0, reason, sizeof(reason)), "ScheduleFailed");
    cr_assert_str_eq(reason,
                     "not enough memory: the model needs 2000 bytes (spec.memory) on 1 replica "
                     "(spec.replicas); on server \"mlserver\" 0 replicas have room, the closest "
                     "is replica 1 with 1500 bytes available (500 bytes short)");
    /* Placed models use memory up. */
    load_model(s, "a", "sklearn", "1200", 1, NULL, T0);
    cr_assert_str_eq(placement(s, "a", 0), "mlserver:1");
    load_model(s, "b", "sklearn", "900", 1, NULL, T0);
    cr_assert_str_eq(placement(s, "b", 0), "mlserver:0");
    load_model(s, "c", "sklearn", "301", 1, NULL, T0);
    cr_assert_str_eq(vstate(s, "c", 0, NULL, 0), "ScheduleFailed");
    load_model(s, "d", "sklearn", "300", 1, NULL, T0);
    cr_assert_str_eq(placement(s, "d", 0), "mlserver:1");
    seldon_sched_close(s);
}

/* The over_commit scenario: 1 GiB with 10% overcommit. */
Test(place, overcommit_adds_to_the_memory)
{
    seldon_sched *s = open_mem();
    cr_assert_eq(connect_r(s, "mlserver", 0, MLSERVER_CAPS, GIB, 10, NULL, 0, T0), 0);
    load_model(s, "overcommit-1", "sklearn, mlserver", "334000000", 1, NULL, T0);
    load_model(s, "overcommit-2", "sklearn, mlserver", "334000000", 1, NULL, T0);
    load_model(s, "overcommit-3", "sklearn, mlserver", "334000000", 1, NULL, T0);
    /* 1 GiB * 1.1 = 1181116006: 3 * 334 MB fit, plus 179116006 more, not 179116007. */
    load_model(s, "fits", "sklearn", "179116006", 1, NULL, T0);
    load_model(s, "over", "sklearn", "1", 1, NULL, T0);
    cr_assert_str_eq(placement(s, "overcommit-3", 0), "mlserver:0");
    cr_assert_str_eq(placement(s, "fits", 0), "mlserver:0");
    cr_assert_str_eq(vstate(s, "over", 0, NULL, 0), "ScheduleFailed");
    ack_all(s, T0);
    cr_assert_str_eq(vstate(s, "overcommit-3", 0, NULL, 0), "ModelAvailable");
    seldon_sched_close(s);
}

Test(place, most_free_memory_then_lowest_index)
{
    seldon_sched *s = open_mem();
    connect_ok(s, "m", 2, MLSERVER_CAPS, 1000, T0);
    connect_ok(s, "m", 0, MLSERVER_CAPS, 1000, T0);
    connect_ok(s, "m", 1, MLSERVER_CAPS, 1000, T0);
    load_model(s, "a", "sklearn", "100", 1, NULL, T0);
    cr_assert_str_eq(placement(s, "a", 0), "m:0"); /* equal memory: lowest index */
    load_model(s, "b", "sklearn", "100", 1, NULL, T0);
    cr_assert_str_eq(placement(s, "b", 0), "m:1"); /* most free */
    load_model(s, "c", "sklearn", "50", 1, NULL, T0);
    cr_assert_str_eq(placement(s, "c", 0), "m:2");
    load_model(s, "d", "sklearn", "10", 2, NULL, T0);
    cr_assert_str_eq(placement(s, "d", 0), "m:0,2"); /* 950 free on 2, then 900 on 0 and 1 */
    seldon_sched_close(s);
}

Test(place, one_server_per_model_one_replica_per_server_replica)
{
    seldon_sched *s = open_mem();
    char reason[600];
    connect_ok(s, "a", 0, MLSERVER_CAPS, GIB, T0);
    connect_ok(s, "a", 1, MLSERVER_CAPS, GIB, T0);
    connect_ok(s, "b", 0, MLSERVER_CAPS, GIB, T0);
    /* 3 replicas: a has 2 replicas, b has 1; never 2+1 across servers, never 2 on one replica. */
    load_model(s, "three", "sklearn", NULL, 3, NULL, T0);
    cr_assert_str_eq(vstate(s, "three", 0, reason, sizeof(reason)), "ScheduleFailed");
    cr_assert_str_eq(reason, "not enough replicas: the model wants 3 replicas (spec.replicas) on "
                             "one server; server \"a\" has 2 with the requirements");
    cr_assert_str_eq(placement(s, "three", 0), "-:");
    connect_ok(s, "b", 1, MLSERVER_CAPS, GIB, T0);
    connect_ok(s, "b", 2, MLSERVER_CAPS, GIB, T0);
    cr_assert_str_eq(placement(s, "three", 0), "b:0,1,2");
    seldon_sched_close(s);
}

/* The partial_scheduling scenario: placed down to minReplicas, Available with what fits. */
Test(place, partial_scheduling_down_to_min_replicas)
{
    seldon_sched *s = open_mem();
    char reason[600];
    connect_ok(s, "mlserver", 0, MLSERVER_CAPS, GIB, T0);
    connect_ok(s, "mlserver", 1, MLSERVER_CAPS, GIB, T0);
    load_model(s, "iris", "sklearn", NULL, 3, "  minReplicas: 2\n  maxReplicas: 5\n", T0);
    cr_assert_str_eq(placement(s, "iris", 0), "mlserver:0,1");
    cr_assert_eq(ack_all(s, T0), 2);
    cr_assert_str_eq(vstate(s, "iris", 0, reason, sizeof(reason)), "ModelAvailable");
    cr_assert(strstr(reason, "2 of 3 replicas available") && strstr(reason, "partially"), "%s",
              reason);
    cr_assert_eq(route_upstreams(s, "iris"), 2);
    /* Room appears: the missing replica is placed without a new apply. */
    connect_ok(s, "mlserver", 2, MLSERVER_CAPS, GIB, T0);
    cr_assert_str_eq(placement(s, "iris", 0), "mlserver:0,1,2");
    cr_assert_eq(ack_all(s, T0), 1);
    cr_assert_str_eq(vstate(s, "iris", 0, reason, sizeof(reason)), "ModelAvailable");
    cr_assert_str_eq(reason, "");
    /* Below minReplicas: refused. */
    load_model(s, "wide", "sklearn", NULL, 5, "  minReplicas: 4\n", T0);
    cr_assert_str_eq(vstate(s, "wide", 0, reason, sizeof(reason)), "ScheduleFailed");
    cr_assert_str_eq(reason, "not enough replicas: the model wants 5 replicas, at least 4 "
                             "(spec.minReplicas) on one server; server \"mlserver\" has 3 with "
                             "the requirements");
    /* Enough replicas, not enough memory on enough of them. */
    load_model(s, "fat", "sklearn", "2Gi", 2, "  minReplicas: 2\n", T0);
    cr_assert_str_eq(vstate(s, "fat", 0, reason, sizeof(reason)), "ScheduleFailed");
    cr_assert(strstr(reason, "not enough memory") && strstr(reason, "at least 2") &&
                  strstr(reason, "0 replicas have room"),
              "%s", reason);
    seldon_sched_close(s);
}

Test(place, draining_replicas_are_skipped)
{
    seldon_sched *s = open_mem();
    apply_ok(s,
             "apiVersion: mlops.seldon.io/v1alpha1\nkind: Server\nmetadata: {name: mlserver}\n"
             "spec: {serverConfig: mlserver, replicas: 1}\n",
             T0);
    connect_ok(s, "mlserver", 0, NULL, 1000, T0);
    connect_ok(s, "mlserver", 1, NULL, 100000, T0); /* more memory, but beyond spec.replicas */
    load_model(s, "iris", "sklearn", NULL, 1, NULL, T0);
    cr_assert_str_eq(placement(s, "iris", 0), "mlserver:0");
    seldon_sched_close(s);
}

Test(place, server_capabilities_replace_extra_capabilities_add)
{
    seldon_sched *s = open_mem();
    char reason[600];
    apply_ok(s,
             "apiVersion: mlops.seldon.io/v1alpha1\nkind: Server\nmetadata: {name: custom}\n"
             "spec: {serverConfig: mlserver, capabilities: [only-this], replicas: 2}\n"
             "---\n"
             "apiVersion: mlops.seldon.io/v1alpha1\nkind: Server\nmetadata: {name: extra}\n"
             "spec: {serverConfig: mlserver, extraCapabilities: [gpu]}\n",
             T0);
    connect_ok(s, "custom", 0, NULL, GIB, T0); /* no capabilities of its own */
    connect_ok(s, "extra", 0, NULL, GIB, T0);
    load_model(s, "a", "only-this", NULL, 1, NULL, T0);
    load_model(s, "b", "sklearn, gpu", NULL, 1, NULL, T0);
    load_model(s, "c", "lightgbm", NULL, 1, NULL, T0); /* an mlserver default */
    cr_assert_str_eq(placement(s, "a", 0), "custom:0");
    cr_assert_str_eq(placement(s, "b", 0), "extra:0");
    cr_assert_str_eq(placement(s, "c", 0), "extra:0");
    /* A replica's own capabilities win over its Server resource's. */
    connect_ok(s, "custom", 1, "own", GIB, T0);
    load_model(s, "d", "own", NULL, 1, NULL, T0);
    cr_assert_str_eq(vstate(s, "d", 0, reason, sizeof(reason)), "ModelProgressing");
    cr_assert_str_eq(reason, "");
    cr_assert_str_eq(placement(s, "d", 0), "custom:1");
    load_model(s, "e", "only-this", NULL, 2, NULL, T0);
    cr_assert_str_eq(vstate(s, "e", 0, reason, sizeof(reason)), "ScheduleFailed");
    seldon_sched_close(s);
}

Test(place, servers_named_like_a_server_config_get_its_defaults)
{
    seldon_sched *s = open_mem();
    connect_ok(s, "triton", 0, NULL, GIB, T0);
    connect_ok(s, "mlserver", 0, NULL, GIB, T0);
    load_model(s, "a", "pytorch", NULL, 1, NULL, T0);
    load_model(s, "b", "alibi-detect", NULL, 1, NULL, T0);
    cr_assert_str_eq(placement(s, "a", 0), "triton:0");
    cr_assert_str_eq(placement(s, "b", 0), "mlserver:0");
    seldon_sched_close(s);
}

Test(place, a_new_version_prefers_the_server_and_replicas_holding_the_model)
{
    seldon_sched *s = open_mem();
    connect_ok(s, "a", 0, MLSERVER_CAPS, 1000, T0);
    connect_ok(s, "b", 0, MLSERVER_CAPS, 1000, T0);
    connect_ok(s, "b", 1, MLSERVER_CAPS, 100000, T0);
    load_model(s, "iris", "sklearn", "10", 1, "  server: a\n", T0);
    ack_all(s, T0);
    cr_assert_str_eq(placement(s, "iris", 1), "a:0");
    /* v2 without the pin: b:1 has more memory, but a holds the model. */
    load_model(s, "iris", "sklearn", "10", 1, NULL, T0);
    cr_assert_str_eq(placement(s, "iris", 2), "a:0");
    seldon_sched_close(s);
}

Test(place, bad_arguments)
{
    seldon_sched *s = open_mem();
    seldon_sched_replica r;
    memset(&r, 0, sizeof(r));
    cr_assert_eq(seldon_sched_agent_connect(s, &r, NULL, 0, T0), SELDON_EINVAL);
    cr_assert(strstr(seldon_last_error(), "replica.server"));
    r.server = "x";
    r.memory_bytes = -1;
    cr_assert_eq(seldon_sched_agent_connect(s, &r, NULL, 0, T0), SELDON_EINVAL);
    cr_assert(strstr(seldon_last_error(), "memory_bytes"));
    cr_assert_eq(seldon_sched_agent_disconnect(s, "nope", 0, T0), SELDON_ENOTFOUND);
    cr_assert_eq(seldon_sched_unload(s, SELDON_KIND_MODEL, "nope", T0), SELDON_ENOTFOUND);
    cr_assert_eq(seldon_sched_apply(s, NULL, NULL, T0), SELDON_EINVAL);
    cr_assert_eq(seldon_sched_open(NULL, NULL, T0), SELDON_EINVAL);
    {
        seldon_sched *o = NULL;
        seldon_sched_config cfg = SELDON_SCHED_CONFIG_INIT;
        cfg.version = 99;
        cr_assert_eq(seldon_sched_open(&o, &cfg, T0), SELDON_EINVAL);
        cr_assert_null(o);
    }
    seldon_sched_close(s);
    seldon_sched_close(NULL);
}
