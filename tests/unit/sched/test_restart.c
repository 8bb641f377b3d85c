/* Persistence: everything in LMDB, reloaded on open; a restart waits for replicas, moves nothing.
 */
#include <lmdb.h>
#include <sys/wait.h>

#include "sched_test.h"

#define CAPS "mlserver,sklearn,xgboost"

static void loaded_list(seldon_sched_loaded *l, const char *model, uint32_t version)
{
    l->model = model;
    l->version = version;
}

Test(restart, everything_comes_back_and_nothing_is_reloaded)
{
    char *dir = temp_dir();
    seldon_sched *s = open_dir(dir, T0, 60000);
    seldon_sched_loaded l[4];
    seldon_sched_status *st = NULL;
    seldon_sched_command c;
    int64_t t1 = T0 + 1000 * MS;
    uint64_t gen;

    connect_ok(s, "mlserver", 0, CAPS, GIB, T0);
    connect_ok(s, "mlserver", 1, CAPS, GIB, T0);
    load_model(s, "iris", "sklearn", "1Mi", 2, NULL, T0);
    load_model(s, "income", "xgboost", NULL, 1, NULL, T0);
    cr_assert_eq(ack_all(s, T0), 3);
    apply_ok(s,
             "apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata: {name: p}\n"
             "spec:\n  steps: [{name: iris}]\n  output: {steps: [iris]}\n",
             T0);
    seldon_sched_close(s); /* the process ends: no disconnects */

    s = open_dir(dir, t1, 60000);
    cr_assert_eq(seldon_sched_ready(s), 0);
    /* Status and routes are back at once: routers keep serving. */
    cr_assert_str_eq(vstate(s, "iris", 1, NULL, 0), "ModelAvailable");
    cr_assert_str_eq(vstate(s, "income", 1, NULL, 0), "ModelAvailable");
    cr_assert_str_eq(placement(s, "iris", 1), "mlserver:0,1");
    cr_assert_eq(route_upstreams(s, "iris"), 2);
    cr_assert_eq(seldon_sched_servers(&st, s, "mlserver"), 0);
    cr_assert_eq(seldon_sched_status_server(st, 0)->replicas_count, 2);
    cr_assert_eq(seldon_sched_status_server(st, 0)->connected_replicas, 0);
    cr_assert_eq(seldon_sched_status_server(st, 0)->replicas[0].available_memory_bytes,
                 GIB - (1 << 20) - 0);
    seldon_sched_status_free(st);
    cr_assert_eq(seldon_sched_unload(s, SELDON_KIND_PIPELINE, "p", t1), 0);
    apply_ok(s,
             "apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata: {name: p}\n"
             "spec:\n  steps: [{name: iris}]\n  output: {steps: [iris]}\n",
             t1);

    /* The replicas come back holding what they held: nothing is loaded again. */
    gen = seldon_sched_routes_generation(s);
    loaded_list(&l[0], "iris", 1);
    loaded_list(&l[1], "income", 1);
    cr_assert_eq(connect_r(s, "mlserver", 0, CAPS, GIB, 0, l, 2, t1), 0);
    cr_assert_eq(seldon_sched_ready(s), 0);
    cr_assert_eq(seldon_sched_next_command(s, &c), SELDON_ENOTFOUND);
    cr_assert_eq(connect_r(s, "mlserver", 1, CAPS, GIB, 0, l, 1, t1), 0);
    cr_assert_eq(seldon_sched_ready(s), 1);
    cr_assert_eq(seldon_sched_next_command(s, &c), SELDON_ENOTFOUND);
    cr_assert_str_eq(vstate(s, "iris", 1, NULL, 0), "ModelAvailable");
    cr_assert_str_eq(vstate(s, "income", 1, NULL, 0), "ModelAvailable");
    cr_assert_eq(route_upstreams(s, "iris"), 2);
    cr_assert_geq(seldon_sched_routes_generation(s), gen);
    seldon_sched_close(s);

    /* The pipeline was stored too. */
    s = open_dir(dir, t1, 0);
    cr_assert_eq(seldon_sched_ready(s), 1);
    cr_assert_eq(seldon_sched_unload(s, SELDON_KIND_PIPELINE, "p", t1), 0);
    seldon_sched_close(s);
    rm_dir(dir);
}

Test(restart, a_replica_that_lost_a_model_loads_it_again)
{
    char *dir = temp_dir();
    seldon_sched *s = open_dir(dir, T0, 60000);
    seldon_sched_loaded l[1];
    cmd c[4];
    connect_ok(s, "mlserver", 0, CAPS, GIB, T0);
    load_model(s, "a", "sklearn", NULL, 1, NULL, T0);
    load_model(s, "b", "sklearn", NULL, 1, NULL, T0);
    ack_all(s, T0);
    seldon_sched_close(s);

    s = open_dir(dir, T0, 60000);
    loaded_list(&l[0], "a", 1);
    cr_assert_eq(connect_r(s, "mlserver", 0, CAPS, GIB, 0, l, 1, T0), 0);
    cr_assert_eq(seldon_sched_ready(s), 1);
    cr_assert_eq(take_cmds(s, c, 4), 1);
    cr_assert_eq(c[0].op, SELDON_SCHED_LOAD);
    cr_assert_str_eq(c[0].model, "b");
    cr_assert_str_eq(vstate(s, "a", 1, NULL, 0), "ModelAvailable");
    cr_assert_str_eq(vstate(s, "b", 1, NULL, 0), "ModelProgressing");
    cr_assert_eq(route_upstreams(s, "b"), -1);
    seldon_sched_close(s);
    rm_dir(dir);
}

Test(restart, waits_for_the_ready_timeout_then_moves_models)
{
    char *dir = temp_dir();
    seldon_sched *s = open_dir(dir, T0, 60000);
    seldon_sched_loaded l[1];
    cmd c[4];
    int64_t next;
    connect_ok(s, "mlserver", 0, CAPS, GIB, T0);
    connect_ok(s, "mlserver", 1, CAPS, GIB, T0);
    load_model(s, "a", "sklearn", "1Mi", 1, NULL, T0); /* on 0 */
    load_model(s, "b", "sklearn", "1Mi", 1, NULL, T0); /* on 1: more free memory */
    ack_all(s, T0);
    cr_assert_str_eq(placement(s, "b", 1), "mlserver:1");
    seldon_sched_close(s);

    s = open_dir(dir, T0, 60000);
    loaded_list(&l[0], "a", 1);
    cr_assert_eq(connect_r(s, "mlserver", 0, CAPS, GIB, 0, l, 1, T0), 0);
    /* Before ready: a new model waits, nothing moves. */
    load_model(s, "c", "sklearn", NULL, 1, NULL, T0);
    cr_assert_str_eq(vstate(s, "c", 1, NULL, 0), "ModelProgressing");
    cr_assert_eq(take_cmds(s, c, 4), 0);
    cr_assert_eq(route_upstreams(s, "b"), 1); /* still served where it was */
    next = seldon_sched_tick(s, T0 + MS);
    cr_assert_eq(next, T0 + 60000 * MS);
    cr_assert_eq(seldon_sched_ready(s), 0);
    seldon_sched_tick(s, next);
    cr_assert_eq(seldon_sched_ready(s), 1);
    cr_assert_eq(take_cmds(s, c, 4), 2); /* b moved to 0; c placed */
    cr_assert_str_eq(c[0].server, "mlserver");
    cr_assert_eq(c[0].index, 0);
    cr_assert_eq(c[1].index, 0);
    cr_assert_str_eq(placement(s, "b", 1), "mlserver:0");
    cr_assert_eq(route_upstreams(s, "b"), -1);
    seldon_sched_close(s);

    /* The replica that never came back is not waited for again. */
    s = open_dir(dir, next, 60000);
    cr_assert_eq(connect_r(s, "mlserver", 0, CAPS, GIB, 0, l, 1, next), 0);
    cr_assert_eq(seldon_sched_ready(s), 1);
    seldon_sched_close(s);
    rm_dir(dir);
}

Test(restart, versions_deletions_and_servers_persist)
{
    char *dir = temp_dir();
    seldon_sched *s = open_dir(dir, T0, 0);
    seldon_sched_status *st = NULL;
    connect_ok(s, "mlserver", 0, CAPS, GIB, T0);
    apply_ok(s,
             "apiVersion: mlops.seldon.io/v1alpha1\nkind: Server\nmetadata: {name: mlserver}\n"
             "spec: {serverConfig: mlserver, replicas: 3, extraCapabilities: [gpu]}\n",
             T0);
    load_model(s, "gone", "sklearn", NULL, 1, NULL, T0);
    load_model(s, "iris", "sklearn", NULL, 1, NULL, T0);
    ack_all(s, T0);
    load_model(s, "iris", "xgboost", NULL, 1, NULL, T0); /* version 2, loading */
    cr_assert_eq(seldon_sched_unload(s, SELDON_KIND_MODEL, "gone", T0), 0);
    seldon_sched_tick(s, T0 + 1000 * MS);
    ack_all(s, T0 + 1000 * MS);
    seldon_sched_close(s);

    s = open_dir(dir, T0, 60000);
    cr_assert_eq(seldon_sched_ready(s), 0);
    cr_assert_str_eq(vstate(s, "iris", 0, NULL, 0), "ModelAvailable");
    cr_assert_eq(seldon_sched_models(&st, s, "iris"), 0);
    cr_assert_eq(seldon_sched_status_model(st, 0)->versions[0].version, 2);
    seldon_sched_status_free(st);
    cr_assert_eq(seldon_sched_models(&st, s, "gone"), 0);
    cr_assert_eq(seldon_sched_status_model(st, 0)->deleted, 1);
    cr_assert_str_eq(seldon_sched_status_model(st, 0)->versions[0].state, "ModelTerminated");
    seldon_sched_status_free(st);
    cr_assert_eq(seldon_sched_servers(&st, s, "mlserver"), 0);
    cr_assert_eq(seldon_sched_status_server(st, 0)->desired_replicas, 3);
    seldon_sched_status_free(st);
    /* The version numbers continue. */
    cr_assert_eq(load_model(s, "iris", "python", NULL, 1, NULL, T0), 3);
    cr_assert_eq(load_model(s, "gone", "sklearn", NULL, 1, NULL, T0), 2);
    seldon_sched_close(s);
    rm_dir(dir);
}

Test(restart, a_damaged_record_is_refused_with_its_name)
{
    char *dir = temp_dir();
    seldon_sched *s = open_dir(dir, T0, 0);
    seldon_sched_config cfg = SELDON_SCHED_CONFIG_INIT;
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    MDB_val k = {8, (void *)"mlserver"}, v = {3, (void *)"\x01\x01\x01"};
    connect_ok(s, "mlserver", 0, CAPS, GIB, T0);
    seldon_sched_close(s);
    /* Cut the server record short, as a disk fault might. */
    cr_assert_eq(mdb_env_create(&env), 0);
    mdb_env_set_maxdbs(env, 8);
    cr_assert_eq(mdb_env_open(env, dir, 0, 0600), 0);
    cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    cr_assert_eq(mdb_dbi_open(txn, "servers", 0, &dbi), 0);
    cr_assert_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
    cr_assert_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    s = NULL;
    cfg.state_dir = dir;
    cr_assert_eq(seldon_sched_open(&s, &cfg, T0), SELDON_EPARSE);
    cr_assert_null(s);
    cr_assert(strstr(seldon_last_error(), "server record \"mlserver\" is damaged"), "%s",
              seldon_last_error());
    rm_dir(dir);
}

Test(restart, a_load_sent_before_a_crash_and_done_is_not_sent_again)
{
    char *dir = temp_dir();
    seldon_sched *s;
    seldon_sched_loaded l[2];
    cmd c[4];
    int status = 0;
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        /* The scheduler process: it sends the load and dies before any answer or close. */
        s = open_dir(dir, T0, 60000);
        connect_ok(s, "mlserver", 0, CAPS, GIB, T0);
        load_model(s, "a", "sklearn", NULL, 1, NULL, T0);
        load_model(s, "b", "sklearn", NULL, 1, NULL, T0);
        if (take_cmds(s, c, 4) != 2)
            _exit(1);
        /* b's answer arrives; a's never does. */
        _exit(seldon_sched_agent_event(s, "mlserver", 0, c[1].id, c[1].model, 1,
                                       SELDON_SCHED_LOADED, NULL, T0) == 0 &&
                      strcmp(c[1].model, "b") == 0
                  ? 0
                  : 1);
    }
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* Everything was stored before each call returned: nothing is lost. */
    s = open_dir(dir, T0, 60000);
    cr_assert_eq(seldon_sched_ready(s), 0);
    cr_assert_str_eq(placement(s, "a", 1), "mlserver:0");
    cr_assert_str_eq(vstate(s, "a", 1, NULL, 0), "ModelProgressing");
    cr_assert_str_eq(vstate(s, "b", 1, NULL, 0), "ModelAvailable");
    loaded_list(&l[0], "a", 1);
    loaded_list(&l[1], "b", 1);
    cr_assert_eq(connect_r(s, "mlserver", 0, CAPS, GIB, 0, l, 2, T0), 0);
    cr_assert_eq(take_cmds(s, c, 4), 0);
    cr_assert_str_eq(vstate(s, "a", 1, NULL, 0), "ModelAvailable");
    seldon_sched_close(s);
    rm_dir(dir);
}

Test(restart, one_scheduler_per_state_folder)
{
    char *dir = temp_dir();
    seldon_sched *s = open_dir(dir, T0, 0), *t = NULL;
    seldon_sched_config cfg = SELDON_SCHED_CONFIG_INIT;
    cfg.state_dir = dir;
    cr_assert_eq(seldon_sched_open(&t, &cfg, T0), SELDON_EUNAVAIL);
    cr_assert(strstr(seldon_last_error(), "in use by another scheduler"), "%s",
              seldon_last_error());
    cr_assert_null(t);
    seldon_sched_close(s);
    cr_assert_eq(seldon_sched_open(&t, &cfg, T0), 0);
    seldon_sched_close(t);
    rm_dir(dir);
}

Test(restart, a_full_store_refuses_the_change_and_keeps_what_was_stored)
{
    char *dir = temp_dir();
    seldon_sched *s = NULL;
    seldon_sched_config cfg = SELDON_SCHED_CONFIG_INIT;
    seldon_manifest *m = NULL;
    size_t cap = 4000 * 300, len = 0, i;
    char *text = malloc(cap);
    int rc;
    for (i = 0; i < 4000; i++)
        len += (size_t)snprintf(text + len, cap - len,
                                "%sapiVersion: mlops.seldon.io/v1alpha1\nkind: Model\nmetadata: "
                                "{name: m%zu}\nspec: {storageUri: 'file:///%0100zu'}\n",
                                i ? "---\n" : "", i, i);
    cr_assert_eq(seldon_manifest_parse(&m, text, len, "t"), 0, "%s", seldon_last_error());
    cfg.state_dir = dir;
    cfg.map_size_bytes = 1 << 20;
    cr_assert_eq(seldon_sched_open(&s, &cfg, T0), 0);
    load_model(s, "kept", "sklearn", NULL, 1, NULL, T0);
    /* Refused before anything moves: an error, and no effect. */
    rc = seldon_sched_apply(s, m, NULL, T0);
    cr_assert_eq(rc, SELDON_ETOOBIG, "%d %s", rc, seldon_last_error());
    cr_assert(strstr(seldon_last_error(), "state store"), "%s", seldon_last_error());
    cr_assert(strstr(seldon_last_error(), "nothing was changed"), "%s", seldon_last_error());
    cr_assert_str_eq(vstate(s, "m3999", 1, NULL, 0), "");
    cr_assert_str_eq(vstate(s, "m0", 1, NULL, 0), "");
    cr_assert_str_eq(vstate(s, "kept", 1, NULL, 0), "ScheduleFailed");
    seldon_sched_close(s);
    /* What was acknowledged is stored. */
    cr_assert_eq(seldon_sched_open(&s, &cfg, T0), 0);
    cr_assert_str_eq(vstate(s, "kept", 1, NULL, 0), "ScheduleFailed");
    cr_assert_str_eq(vstate(s, "m0", 1, NULL, 0), "");
    seldon_sched_close(s);
    seldon_manifest_free(m);
    free(text);
    rm_dir(dir);
}
