/* Every allocation failure in the scheduler's calls is reported, never a crash or a leak. */
#include "core/core.h"
#include "sched_test.h"

static const char *const MODELS =
    "apiVersion: mlops.seldon.io/v1alpha1\nkind: Model\nmetadata: {name: a}\n"
    "spec: {storageUri: 'file:///a', requirements: [sklearn], memory: 100, replicas: 2}\n"
    "---\n"
    "apiVersion: mlops.seldon.io/v1alpha1\nkind: Model\nmetadata: {name: b}\n"
    "spec: {storageUri: 'file:///b', requirements: [nothing-has-this]}\n"
    "---\n"
    "apiVersion: mlops.seldon.io/v1alpha1\nkind: Server\nmetadata: {name: mlserver}\n"
    "spec: {serverConfig: mlserver, replicas: 3}\n"
    "---\n"
    "apiVersion: mlops.seldon.io/v1alpha1\nkind: Experiment\nmetadata: {name: e}\n"
    "spec: {default: a, candidates: [{name: a, weight: 1}, {name: b, weight: 1}]}\n"
    "---\n"
    "apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata: {name: q}\n"
    "spec: {input: {externalInputs: [p.outputs]}, steps: [{name: b}], output: {steps: [b]}}\n"
    "---\n"
    "apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata: {name: p}\n"
    "spec: {steps: [{name: a}, {name: b, inputs: [a]}], output: {steps: [b]}}\n";

static const char *const V2 =
    "apiVersion: mlops.seldon.io/v1alpha1\nkind: Model\nmetadata: {name: a}\n"
    "spec: {storageUri: 'file:///a2', requirements: [sklearn], memory: 100, replicas: 2}\n";

#define STEP(call)                                                                                 \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != 0 && first == 0)                                                                \
            first = rc_;                                                                           \
    } while (0)

/* A whole life: connect, apply, load, roll out, move, unload, restart. First failure or 0. */
static int run(const char *dir, const seldon_manifest *m1, const seldon_manifest *m2)
{
    seldon_sched *s = NULL;
    seldon_sched_config cfg = SELDON_SCHED_CONFIG_INIT;
    seldon_sched_replica r;
    seldon_sched_loaded l[2] = {{"a", 1}, {"ghost", 3}};
    seldon_sched_command c;
    seldon_sched_event e;
    seldon_sched_status *st = NULL;
    seldon_routes *rt = NULL;
    const char *caps[] = {"mlserver", "sklearn"};
    int first = 0, i, k;
    cfg.state_dir = dir;
    cfg.map_size_bytes = 16 << 20;
    cfg.ready_timeout_ms = 10;
    if ((first = seldon_sched_open(&s, &cfg, T0)) != 0)
        return first;
    memset(&r, 0, sizeof(r));
    r.server = "mlserver";
    r.http = "127.0.0.1:1";
    r.capabilities = caps;
    r.capabilities_count = 2;
    r.memory_bytes = 1000;
    for (k = 0; k < 3; k++) {
        r.index = (uint32_t)k;
        STEP(seldon_sched_agent_connect(s, &r, k == 0 ? l : NULL, k == 0 ? 2 : 0, T0));
    }
    STEP(seldon_sched_apply(s, m1, NULL, T0));
    for (i = 0; i < 3; i++) {
        while (seldon_sched_next_command(s, &c) == 0)
            STEP(seldon_sched_agent_event(
                s, c.server, c.index, c.id, c.model, c.version,
                c.op == SELDON_SCHED_LOAD ? SELDON_SCHED_LOADED : SELDON_SCHED_UNLOADED, NULL, T0));
        if (i == 0)
            STEP(seldon_sched_apply(s, m2, NULL, T0));
        if (i == 1)
            STEP(seldon_sched_agent_disconnect(s, "mlserver", 1, T0));
        seldon_sched_tick(s, T0 + (int64_t)(i + 1) * 1000 * MS);
    }
    STEP(seldon_sched_routes(&rt, s));
    seldon_routes_release(rt);
    STEP(seldon_sched_servers(&st, s, NULL));
    seldon_sched_status_free(st);
    st = NULL;
    STEP(seldon_sched_pipelines(&st, s, NULL));
    seldon_sched_status_free(st);
    st = NULL;
    STEP(seldon_sched_unload(s, SELDON_KIND_MODEL, "a", T0));
    STEP(seldon_sched_unload(s, SELDON_KIND_EXPERIMENT, "e", T0));
    while (seldon_sched_next_event(s, &e) == 0)
        ;
    seldon_sched_close(s);
    s = NULL;
    STEP(seldon_sched_open(&s, &cfg, T0));
    if (s != NULL) {
        r.index = 0;
        STEP(seldon_sched_agent_connect(s, &r, l, 1, T0));
        seldon_sched_tick(s, T0 + 100 * MS);
        STEP(seldon_sched_models(&st, s, NULL));
        seldon_sched_status_free(st);
        st = NULL;
        STEP(seldon_sched_pipelines(&st, s, "q"));
        seldon_sched_status_free(st);
        STEP(seldon_sched_unload(s, SELDON_KIND_PIPELINE, "q", T0));
        STEP(seldon_sched_unload(s, SELDON_KIND_PIPELINE, "p", T0));
        seldon_sched_close(s);
    }
    return first;
}

Test(sched_alloc, every_failure_is_reported)
{
    seldon_manifest *m1 = NULL, *m2 = NULL;
    int64_t n;
    int done = 0;
    cr_assert_eq(seldon_manifest_parse(&m1, MODELS, strlen(MODELS), "t"), 0, "%s",
                 seldon_last_error());
    cr_assert_eq(seldon_manifest_parse(&m2, V2, strlen(V2), "t"), 0, "%s", seldon_last_error());
    for (n = 0; n < 5000 && !done; n += 1 + n / 200) {
        char *dir = temp_dir();
        int rc;
        sdn_alloc_fail_after(n);
        rc = run(dir, m1, m2);
        sdn_alloc_fail_after(-1);
        cr_assert(rc == 0 || rc == SELDON_ENOMEM || rc == SELDON_EIO || rc == SELDON_ENOTFOUND,
                  "n=%lld: rc %d: %s", (long long)n, rc, seldon_last_error());
        done = rc == 0;
        rm_dir(dir);
    }
    cr_assert(done, "every allocation succeeded within the sweep");
    seldon_manifest_free(m1);
    seldon_manifest_free(m2);
}
