/* Pipelines as resources of the scheduler: compile on apply, readiness from models, versions,
 * unload, restart, the host's view. */
#include "sched_test.h"

#define CAPS "sklearn,xgboost"

#define PL_HEAD "apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata: {name: %s}\n"

static char pl_buf[4096];

/* A Pipeline named name with the spec given as YAML lines. */
static const char *pl(const char *name, const char *spec)
{
    int n = snprintf(pl_buf, sizeof(pl_buf), PL_HEAD "spec:\n%s", name, spec);
    cr_assert(n > 0 && (size_t)n < sizeof(pl_buf));
    return pl_buf;
}

static const char *const CHAIN = "  steps:\n  - name: m1\n  - name: m2\n    inputs: [m1]\n"
                                 "  output: {steps: [m2]}\n";

/* A pipeline's status, copied out. */
typedef struct pst {
    char state[64];
    char reason[512];
    uint32_t version;
    int ready, deleted;
    size_t nwaiting;
    char waiting0[64];
    size_t nwaiting_pl;
    char waiting_pl0[64];
} pst;

static int pstatus(pst *out, seldon_sched *s, const char *name)
{
    seldon_sched_status *st = NULL;
    const seldon_sched_pipeline_status *p;
    int rc = seldon_sched_pipelines(&st, s, name);
    memset(out, 0, sizeof(*out));
    if (rc != 0)
        return rc;
    cr_assert_eq(seldon_sched_status_count(st), 1);
    cr_assert_null(seldon_sched_status_model(st, 0));
    cr_assert_null(seldon_sched_status_server(st, 0));
    p = seldon_sched_status_pipeline(st, 0);
    cr_assert_not_null(p);
    cr_assert_str_eq(p->name, name);
    snprintf(out->state, sizeof(out->state), "%s", p->state);
    snprintf(out->reason, sizeof(out->reason), "%s", p->reason ? p->reason : "");
    out->version = p->version;
    out->ready = p->models_ready;
    out->deleted = p->deleted;
    out->nwaiting = p->waiting_count;
    if (p->waiting_count > 0)
        snprintf(out->waiting0, sizeof(out->waiting0), "%s", p->waiting[0]);
    out->nwaiting_pl = p->waiting_pipelines_count;
    if (p->waiting_pipelines_count > 0)
        snprintf(out->waiting_pl0, sizeof(out->waiting_pl0), "%s", p->waiting_pipelines[0]);
    seldon_sched_status_free(st);
    return 0;
}

/* Counts pipeline events for name with state (any version), draining the queue. */
static int pevents(seldon_sched *s, const char *name, const char *state)
{
    seldon_sched_event e;
    int n = 0;
    while (seldon_sched_next_event(s, &e) == 0)
        if (e.kind == SELDON_KIND_PIPELINE && strcmp(e.name, name) == 0 &&
            strcmp(e.state, state) == 0)
            n++;
    return n;
}

/* Parses and applies; the parser's code when it refuses already. */
static int try_apply(seldon_sched *s, const char *yaml)
{
    seldon_manifest *m = NULL;
    int rc = seldon_manifest_parse(&m, yaml, strlen(yaml), "test.yaml");
    if (rc == 0)
        rc = seldon_sched_apply(s, m, NULL, T0);
    seldon_manifest_free(m);
    return rc;
}

static void drain(seldon_sched *s)
{
    seldon_sched_event e;
    while (seldon_sched_next_event(s, &e) == 0) {
    }
}

Test(pipeline, ready_only_while_its_models_are_available)
{
    seldon_sched *s = open_mem();
    pst p;
    seldon_sched_event e;
    int ready_events = 0, creating = 0;

    connect_ok(s, "mlserver", 0, CAPS, GIB, T0);
    cr_assert_eq(apply_ok(s, pl("chain", CHAIN), T0), 1);
    cr_assert_eq(pstatus(&p, s, "chain"), 0);
    cr_assert_str_eq(p.state, "PipelineCreating");
    cr_assert_eq(p.version, 1);
    cr_assert_eq(p.ready, 0);
    cr_assert_eq(p.nwaiting, 2);
    cr_assert_str_eq(p.waiting0, "m1");
    cr_assert(strstr(p.reason, "\"m1\", \"m2\""), "%s", p.reason);
    while (seldon_sched_next_event(s, &e) == 0)
        if (e.kind == SELDON_KIND_PIPELINE) {
            cr_assert_str_eq(e.name, "chain");
            cr_assert_eq(e.version, 1);
            creating += strcmp(e.state, "PipelineCreating") == 0;
            cr_assert(creating || strcmp(e.state, "PipelineCreate") == 0, "%s", e.state);
        }
    cr_assert_eq(creating, 1);

    /* One model: still waiting, for the other. */
    load_model(s, "m1", "sklearn", NULL, 1, NULL, T0);
    ack_all(s, T0);
    cr_assert_eq(pstatus(&p, s, "chain"), 0);
    cr_assert_str_eq(p.state, "PipelineCreating");
    cr_assert_eq(p.nwaiting, 1);
    cr_assert_str_eq(p.waiting0, "m2");
    cr_assert(strstr(p.reason, "waiting for model \"m2\""), "%s", p.reason);

    load_model(s, "m2", "sklearn", NULL, 1, NULL, T0);
    cr_assert_eq(pstatus(&p, s, "chain"), 0);
    cr_assert_str_eq(p.state, "PipelineCreating"); /* placed, not loaded yet */
    drain(s);
    ack_all(s, T0);
    cr_assert_eq(pstatus(&p, s, "chain"), 0);
    cr_assert_str_eq(p.state, "PipelineReady");
    cr_assert_eq(p.ready, 1);
    cr_assert_eq(p.nwaiting, 0);
    cr_assert_str_eq(p.reason, "");
    while (seldon_sched_next_event(s, &e) == 0)
        ready_events += e.kind == SELDON_KIND_PIPELINE && !strcmp(e.state, "PipelineReady");
    cr_assert_eq(ready_events, 1);

    /* The model goes: not ready, naming it; it comes back: ready again. */
    cr_assert_eq(seldon_sched_unload(s, SELDON_KIND_MODEL, "m2", T0), 0);
    cr_assert_eq(pstatus(&p, s, "chain"), 0);
    cr_assert_str_eq(p.state, "PipelineCreating");
    cr_assert_str_eq(p.waiting0, "m2");
    cr_assert_eq(pevents(s, "chain", "PipelineCreating"), 1);
    load_model(s, "m2", "sklearn", NULL, 1, NULL, T0);
    ack_all(s, T0 + 1000 * MS);
    seldon_sched_tick(s, T0 + 2000 * MS);
    ack_all(s, T0 + 2000 * MS);
    cr_assert_eq(pstatus(&p, s, "chain"), 0);
    cr_assert_str_eq(p.state, "PipelineReady");

    /* The replica disconnects: its models are not available any more. */
    cr_assert_eq(seldon_sched_agent_disconnect(s, "mlserver", 0, T0 + 3000 * MS), 0);
    cr_assert_eq(pstatus(&p, s, "chain"), 0);
    cr_assert_str_eq(p.state, "PipelineCreating");
    cr_assert_eq(p.nwaiting, 2);
    seldon_sched_close(s);
}

Test(pipeline, bad_pipelines_are_refused_naming_the_field_before_anything_changes)
{
    seldon_sched *s = open_mem();
    uint32_t v[8];
    pst p;
    /* An unknown step input. */
    cr_assert_neq(try_apply(s, pl("bad", "  steps:\n  - name: a\n    inputs: [nosuch]\n"
                                         "  output: {steps: [a]}\n")),
                  0);
    cr_assert(strstr(seldon_last_error(), "(Pipeline \"bad\")"), "%s", seldon_last_error());
    cr_assert(strstr(seldon_last_error(), "spec.steps[0].inputs[0]"), "%s", seldon_last_error());
    cr_assert(strstr(seldon_last_error(), "nosuch"), "%s", seldon_last_error());
    cr_assert_eq(pstatus(&p, s, "bad"), SELDON_ENOTFOUND);

    /* A cycle without allowCycles. */
    cr_assert_eq(try_apply(s, pl("cyc", "  steps:\n  - name: a\n    inputs: [b]\n"
                                        "  - name: b\n    inputs: [a]\n  output: {steps: [b]}\n")),
                 SELDON_EINVAL);
    cr_assert(strstr(seldon_last_error(), "cycle"), "%s", seldon_last_error());

    /* A bad pipeline refuses the whole manifest: the model before it is not applied. */
    {
        char buf[8192], mb[2048];
        snprintf(buf, sizeof(buf), "%s---\n%s",
                 model_yaml(mb, sizeof(mb), "m9", "sklearn", NULL, 1, NULL),
                 pl("bad2", "  steps:\n  - name: a\n    inputs: [b]\n"
                            "  - name: b\n    inputs: [a]\n  output: {steps: [b]}\n"));
        cr_assert_eq(try_apply(s, buf), SELDON_EINVAL);
        cr_assert(strstr(seldon_last_error(), "document 2 (Pipeline \"bad2\")"), "%s",
                  seldon_last_error());
        cr_assert_str_eq(vstate(s, "m9", 0, NULL, 0), "");
    }
    /* An unknown external pipeline. */
    cr_assert_eq(apply_v(s,
                         pl("ext", "  input: {externalInputs: [other.outputs]}\n"
                                   "  steps:\n  - name: a\n  output: {steps: [a]}\n"),
                         v, T0),
                 SELDON_EINVAL);
    cr_assert(strstr(seldon_last_error(), "unknown pipeline \"other\""), "%s", seldon_last_error());
    seldon_sched_close(s);
}

Test(pipeline, versions_unload_and_chaining)
{
    seldon_sched *s = open_mem();
    uint32_t v[8];
    pst p;
    const char *spec;
    size_t len;
    uint32_t version;
    int32_t ready;
    const seldon_pipeline *cp;

    cr_assert_eq(apply_ok(s, pl("a", CHAIN), T0), 1);
    cr_assert_eq(apply_ok(s, pl("a", CHAIN), T0), 1); /* the same spec: no new version */
    cr_assert_eq(apply_ok(s, pl("a", "  steps:\n  - name: m1\n  output: {steps: [m1]}\n"), T0), 2);
    cr_assert_eq(pstatus(&p, s, "a"), 0);
    cr_assert_eq(p.version, 2);
    cr_assert_eq(p.nwaiting, 1);
    cr_assert_eq(seldon_sched_pipeline_spec(&spec, &len, &version, &ready, s, "a"), 0);
    cr_assert_eq(version, 2);
    cr_assert_eq(ready, 0);
    cr_assert(len == strlen(spec) && strstr(spec, "\"kind\":\"Pipeline\""), "%s", spec);
    cr_assert_eq(seldon_sched_pipeline_get(&cp, &version, NULL, s, "a"), 0);
    cr_assert_eq(seldon_pipeline_step_count(cp), 1);
    cr_assert_str_eq(seldon_pipeline_name(cp), "a");

    /* b reads a (and a later pipeline of the same manifest, c, reads b). */
    {
        char buf[8192];
        int n = snprintf(buf, sizeof(buf),
                         PL_HEAD "spec:\n  input: {externalInputs: [b.outputs]}\n"
                                 "  steps:\n  - name: m3\n  output: {steps: [m3]}\n---\n",
                         "c");
        snprintf(buf + n, sizeof(buf) - (size_t)n,
                 PL_HEAD "spec:\n  input: {externalInputs: [a.outputs.m1]}\n"
                         "  steps:\n  - name: m1\n  output: {steps: [m1]}\n",
                 "b");
        cr_assert_eq(apply_v(s, buf, v, T0), 0, "%s", seldon_last_error());
        cr_assert_eq(v[0], 1);
        cr_assert_eq(v[1], 1);
    }
    /* a is read by b: not unloaded. */
    cr_assert_eq(seldon_sched_unload(s, SELDON_KIND_PIPELINE, "a", T0), SELDON_ESTATE);
    cr_assert(strstr(seldon_last_error(), "pipeline \"b\" reads it"), "%s", seldon_last_error());
    drain(s);
    cr_assert_eq(seldon_sched_unload(s, SELDON_KIND_PIPELINE, "c", T0), 0);
    cr_assert_eq(seldon_sched_unload(s, SELDON_KIND_PIPELINE, "b", T0), 0);
    cr_assert_eq(pevents(s, "b", "PipelineTerminated"), 1);
    cr_assert_eq(seldon_sched_unload(s, SELDON_KIND_PIPELINE, "a", T0), 0);
    cr_assert_eq(pstatus(&p, s, "a"), 0);
    cr_assert_str_eq(p.state, "PipelineTerminated");
    cr_assert_eq(p.deleted, 1);
    cr_assert_eq(seldon_sched_pipeline_spec(&spec, &len, &version, &ready, s, "a"),
                 SELDON_ENOTFOUND);
    cr_assert_eq(seldon_sched_unload(s, SELDON_KIND_PIPELINE, "a", T0), SELDON_ENOTFOUND);
    /* Applied again: the next version. */
    cr_assert_eq(apply_ok(s, pl("a", CHAIN), T0), 3);
    cr_assert_eq(pstatus(&p, s, "a"), 0);
    cr_assert_str_eq(p.state, "PipelineCreating");
    {
        seldon_sched_status *st = NULL;
        cr_assert_eq(seldon_sched_pipelines(&st, s, NULL), 0);
        cr_assert_eq(seldon_sched_status_count(st), 3);
        seldon_sched_status_free(st);
    }
    seldon_sched_close(s);
}

Test(pipeline, pipelines_come_back_after_a_restart)
{
    char *dir = temp_dir();
    seldon_sched *s = open_dir(dir, T0, 60000);
    seldon_sched_loaded l[2];
    pst p;
    int64_t t1 = T0 + 1000 * MS;

    connect_ok(s, "mlserver", 0, CAPS, GIB, T0);
    load_model(s, "m1", "sklearn", NULL, 1, NULL, T0);
    load_model(s, "m2", "sklearn", NULL, 1, NULL, T0);
    ack_all(s, T0);
    apply_ok(s, pl("a", "  steps:\n  - name: m1\n  output: {steps: [m1]}\n"), T0);
    cr_assert_eq(apply_ok(s, pl("a", CHAIN), T0), 2);
    apply_ok(s,
             pl("b", "  input: {externalInputs: [a.outputs]}\n"
                     "  steps:\n  - name: m1\n  output: {steps: [m1]}\n"),
             T0);
    apply_ok(s, pl("gone", CHAIN), T0);
    cr_assert_eq(seldon_sched_unload(s, SELDON_KIND_PIPELINE, "gone", T0), 0);
    cr_assert_eq(pstatus(&p, s, "a"), 0);
    cr_assert_str_eq(p.state, "PipelineReady");
    seldon_sched_close(s);

    s = open_dir(dir, t1, 60000);
    cr_assert_eq(pstatus(&p, s, "a"), 0);
    cr_assert_eq(p.version, 2);
    cr_assert_str_eq(p.state, "PipelineReady"); /* the models' reloaded state */
    cr_assert_eq(pstatus(&p, s, "b"), 0);
    cr_assert_eq(p.version, 1);
    cr_assert_str_eq(p.state, "PipelineReady");
    cr_assert_eq(pstatus(&p, s, "gone"), SELDON_ENOTFOUND);
    /* The replica comes back without m2: a waits for it. */
    l[0].model = "m1";
    l[0].version = 1;
    cr_assert_eq(connect_r(s, "mlserver", 0, CAPS, GIB, 0, l, 1, t1), 0);
    cr_assert_eq(pstatus(&p, s, "a"), 0);
    cr_assert_str_eq(p.state, "PipelineCreating");
    cr_assert_str_eq(p.waiting0, "m2");
    ack_all(s, t1);
    cr_assert_eq(pstatus(&p, s, "a"), 0);
    cr_assert_str_eq(p.state, "PipelineReady");
    /* The next version continues from the stored one. */
    cr_assert_eq(apply_ok(s, pl("a", "  steps:\n  - name: m2\n  output: {steps: [m2]}\n"), t1), 3);
    seldon_sched_close(s);
    rm_dir(dir);
}

/* A pipeline reading others (externalInputs, externalTriggers) is Ready only while they are. */
Test(pipeline, a_reader_is_ready_only_while_the_pipelines_it_reads_are)
{
    char *dir = temp_dir();
    seldon_sched *s = open_dir(dir, T0, 60000);
    seldon_sched_loaded l[1];
    pst p;
    int64_t t1 = T0 + 1000 * MS;

    connect_ok(s, "mlserver", 0, CAPS, GIB, T0);
    load_model(s, "m1", "sklearn", NULL, 1, NULL, T0);
    ack_all(s, T0);
    /* b reads a, c is triggered by b: a chain a <- b <- c. */
    apply_ok(s, pl("a", "  steps:\n  - name: m1\n  output: {steps: [m1]}\n"), T0);
    apply_ok(s,
             pl("b", "  input: {externalInputs: [a.outputs]}\n"
                     "  steps:\n  - name: m1\n  output: {steps: [m1]}\n"),
             T0);
    apply_ok(s,
             pl("c", "  input: {externalInputs: [a.outputs], externalTriggers: [b.outputs]}\n"
                     "  steps:\n  - name: m1\n  output: {steps: [m1]}\n"),
             T0);
    cr_assert_eq(pstatus(&p, s, "c"), 0);
    cr_assert_str_eq(p.state, "PipelineReady", "%s", p.reason);
    cr_assert_eq(p.nwaiting_pl, 0);
    drain(s);

    /* a's next version calls a model that is not there: a waits, and so do b and c. */
    apply_ok(s, pl("a", "  steps:\n  - name: m2\n  output: {steps: [m2]}\n"), T0);
    cr_assert_eq(pstatus(&p, s, "a"), 0);
    cr_assert_str_eq(p.state, "PipelineCreating");
    cr_assert_eq(pstatus(&p, s, "b"), 0);
    cr_assert_str_eq(p.state, "PipelineCreating");
    cr_assert_str_eq(p.reason, "waiting for pipeline \"a\" (PipelineCreating)");
    cr_assert_eq(p.ready, 1, "its models are there");
    cr_assert_eq(p.nwaiting, 0);
    cr_assert_eq(p.nwaiting_pl, 1);
    cr_assert_str_eq(p.waiting_pl0, "a");
    cr_assert_eq(pstatus(&p, s, "c"), 0);
    cr_assert_str_eq(p.state, "PipelineCreating");
    cr_assert_str_eq(p.reason, "waiting for pipelines \"a\" (PipelineCreating), \"b\" "
                               "(PipelineCreating)");
    cr_assert_eq(pevents(s, "b", "PipelineCreating"), 1);

    /* m2 comes: the whole chain is Ready again, readers after what they read. */
    load_model(s, "m2", "sklearn", NULL, 1, NULL, T0);
    ack_all(s, T0);
    {
        seldon_sched_event e;
        int order = 0, a_at = 0, b_at = 0, c_at = 0;
        while (seldon_sched_next_event(s, &e) == 0)
            if (e.kind == SELDON_KIND_PIPELINE && strcmp(e.state, "PipelineReady") == 0) {
                order++;
                a_at = strcmp(e.name, "a") == 0 ? order : a_at;
                b_at = strcmp(e.name, "b") == 0 ? order : b_at;
                c_at = strcmp(e.name, "c") == 0 ? order : c_at;
            }
        cr_assert(a_at > 0 && a_at < b_at && b_at < c_at, "Ready events a %d, b %d, c %d", a_at,
                  b_at, c_at);
    }
    cr_assert_eq(pstatus(&p, s, "c"), 0);
    cr_assert_str_eq(p.state, "PipelineReady");
    cr_assert_str_eq(p.reason, "");
    cr_assert_eq(p.nwaiting_pl, 0);

    /* A reader that waits for a model and a pipeline names both. */
    apply_ok(s,
             pl("d", "  input: {externalInputs: [b.outputs]}\n"
                     "  steps:\n  - name: m9\n  output: {steps: [m9]}\n"),
             T0);
    cr_assert_eq(seldon_sched_unload(s, SELDON_KIND_MODEL, "m2", T0), 0);
    cr_assert_eq(pstatus(&p, s, "d"), 0);
    cr_assert_str_eq(p.reason, "waiting for model \"m9\"; waiting for pipeline \"b\" "
                               "(PipelineCreating)");
    cr_assert_eq(pstatus(&p, s, "b"), 0);
    cr_assert_str_eq(p.reason, "waiting for pipeline \"a\" (PipelineCreating)");
    cr_assert_eq(seldon_sched_unload(s, SELDON_KIND_PIPELINE, "d", T0), 0);
    seldon_sched_close(s);

    /* After a restart: the replica comes back without m2, so a waits and its readers too. */
    s = open_dir(dir, t1, 60000);
    l[0].model = "m1";
    l[0].version = 1;
    cr_assert_eq(connect_r(s, "mlserver", 0, CAPS, GIB, 0, l, 1, t1), 0);
    cr_assert_eq(pstatus(&p, s, "a"), 0);
    cr_assert_str_eq(p.state, "PipelineCreating");
    cr_assert_eq(pstatus(&p, s, "c"), 0);
    cr_assert_str_eq(p.state, "PipelineCreating");
    cr_assert_eq(p.nwaiting_pl, 2);
    load_model(s, "m2", "sklearn", NULL, 1, NULL, t1);
    ack_all(s, t1);
    cr_assert_eq(pstatus(&p, s, "c"), 0);
    cr_assert_str_eq(p.state, "PipelineReady", "%s", p.reason);
    cr_assert_eq(pstatus(&p, s, "b"), 0);
    cr_assert_str_eq(p.state, "PipelineReady", "%s", p.reason);
    seldon_sched_close(s);
    rm_dir(dir);
}

/* Pipelines reading each other in a ring are refused: records would go round for ever. */
Test(pipeline, a_ring_of_pipelines_is_refused)
{
    seldon_sched *s = open_mem();
    pst p;
    apply_ok(s, pl("a", "  steps:\n  - name: m1\n  output: {steps: [m1]}\n"), T0);
    apply_ok(s,
             pl("b", "  input: {externalInputs: [a.outputs]}\n"
                     "  steps:\n  - name: m1\n  output: {steps: [m1]}\n"),
             T0);
    apply_ok(s,
             pl("c", "  input: {externalInputs: [b.outputs]}\n"
                     "  steps:\n  - name: m1\n  output: {steps: [m1]}\n"),
             T0);
    cr_assert_eq(try_apply(s, pl("a", "  input: {externalTriggers: [c.outputs], externalInputs: "
                                      "[c.inputs]}\n  steps:\n  - name: m1\n"
                                      "  output: {steps: [m1]}\n")),
                 SELDON_EINVAL);
    cr_assert_str_eq(seldon_last_error(),
                     "document 1 (Pipeline \"a\"): pipeline \"a\": spec.input: pipelines would "
                     "read each other in a ring (a -> c -> b -> a)");
    cr_assert_eq(pstatus(&p, s, "a"), 0);
    cr_assert_eq(p.version, 1, "nothing changed");
    seldon_sched_close(s);
}
