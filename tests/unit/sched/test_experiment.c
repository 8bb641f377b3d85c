/* Experiments in the scheduler: validation, readiness, routes (split, takeover), restarts. */
#include "sched_test.h"

#define CAPS "mlserver,sklearn"

#define EXPERIMENT(name, body)                                                                     \
    "apiVersion: mlops.seldon.io/v1alpha1\nkind: Experiment\nmetadata: {name: " name "}\n"         \
    "spec:\n" body

static const char *const AB = EXPERIMENT("ab", "  default: iris\n"
                                               "  candidates:\n"
                                               "  - {name: iris, weight: 75}\n"
                                               "  - {name: iris2, weight: 25}\n"
                                               "  mirror: {name: iris3, percent: 20}\n");

static seldon_routes *routes(seldon_sched *s)
{
    seldon_routes *rt = NULL;
    cr_assert_eq(seldon_sched_routes(&rt, s), 0, "%s", seldon_last_error());
    return rt;
}

static const seldon_sched_experiment_status *one(seldon_sched_status **st, seldon_sched *s,
                                                 const char *name)
{
    cr_assert_eq(seldon_sched_experiments(st, s, name), 0, "%s", seldon_last_error());
    cr_assert_eq(seldon_sched_status_count(*st), 1);
    return seldon_sched_status_experiment(*st, 0);
}

static void three_models(seldon_sched *s)
{
    connect_ok(s, "mlserver", 0, CAPS, GIB, T0);
    load_model(s, "iris", "sklearn", NULL, 1, NULL, T0);
    load_model(s, "iris2", "sklearn", NULL, 1, NULL, T0);
    ack_all(s, T0);
}

Test(experiment, waits_for_its_candidates_then_splits_the_default)
{
    seldon_sched *s = open_mem();
    seldon_sched_status *st = NULL;
    const seldon_sched_experiment_status *e;
    seldon_routes *rt;
    size_t r, c, m;
    uint32_t w, pct;
    three_models(s);
    apply_ok(s, AB, T0);
    cr_assert(saw_event(s, "ab", "ExperimentWaiting"));
    e = one(&st, s, "ab");
    cr_assert_eq(e->active, 0);
    cr_assert_eq(e->candidates_ready, 1);
    cr_assert_eq(e->mirror_ready, 0);
    cr_assert_str_eq(e->waiting_for, "iris3");
    cr_assert_str_eq(e->reason, "waiting for mirror model \"iris3\"");
    cr_assert_str_eq(e->default_name, "iris");
    cr_assert_str_eq(e->resource_type, "model");
    cr_assert_eq(e->candidates_count, 2);
    cr_assert_eq(e->weights[1], 25);
    cr_assert_str_eq(e->mirror, "iris3");
    seldon_sched_status_free(st);
    /* Waiting: iris is a plain route and there is no experiment route yet. */
    rt = routes(s);
    cr_assert_eq(seldon_routes_find(&r, rt, "iris", 4), 0);
    cr_assert_eq(seldon_routes_candidate_count(rt, r), 0);
    cr_assert_eq(seldon_routes_upstream_version(rt, r, 0), 1);
    cr_assert_eq(seldon_routes_find(&r, rt, "ab.experiment", 13), SELDON_ENOTFOUND);
    seldon_routes_release(rt);

    load_model(s, "iris3", "sklearn", NULL, 1, NULL, T0);
    ack_all(s, T0);
    cr_assert(saw_event(s, "ab", "ExperimentActive"));
    e = one(&st, s, "ab");
    cr_assert_eq(e->active, 1);
    cr_assert_str_eq(e->state, "ExperimentActive");
    cr_assert_null(e->waiting_for);
    seldon_sched_status_free(st);
    rt = routes(s);
    cr_assert_eq(seldon_routes_find(&r, rt, "iris", 4), 0);
    cr_assert_eq(seldon_routes_candidate_count(rt, r), 2);
    cr_assert_eq(seldon_routes_candidate(&c, &w, rt, r, 0), 0);
    cr_assert_eq(c, r); /* the default is its own first candidate */
    cr_assert_eq(w, 75);
    cr_assert_eq(seldon_routes_candidate(&c, &w, rt, r, 1), 0);
    cr_assert_str_eq(seldon_routes_name(rt, c), "iris2");
    cr_assert_eq(seldon_routes_mirror(&m, &pct, rt, r), 0);
    cr_assert_str_eq(seldon_routes_name(rt, m), "iris3");
    cr_assert_eq(pct, 20);
    cr_assert_eq(seldon_routes_find(&r, rt, "ab.experiment", 13), 0);
    cr_assert_eq(seldon_routes_candidate_count(rt, r), 2);
    cr_assert_eq(seldon_routes_upstream_count(rt, r), 0);
    seldon_routes_release(rt);

    /* A candidate going away sends the experiment back to waiting: routes plain again. */
    cr_assert_eq(seldon_sched_unload(s, SELDON_KIND_MODEL, "iris2", T0), 0);
    cr_assert(saw_event(s, "ab", "ExperimentWaiting"));
    rt = routes(s);
    cr_assert_eq(seldon_routes_find(&r, rt, "iris", 4), 0);
    cr_assert_eq(seldon_routes_candidate_count(rt, r), 0);
    seldon_routes_release(rt);
    seldon_sched_close(s);
}

Test(experiment, stopping_gives_the_endpoint_back)
{
    seldon_sched *s = open_mem();
    seldon_sched_status *st = NULL;
    seldon_routes *rt;
    uint64_t gen;
    size_t r;
    three_models(s);
    apply_ok(s,
             EXPERIMENT("ab", "  default: iris\n  candidates: [{name: iris, weight: 1}, "
                              "{name: iris2, weight: 1}]\n"),
             T0);
    rt = routes(s);
    cr_assert_eq(seldon_routes_find(&r, rt, "iris", 4), 0);
    cr_assert_eq(seldon_routes_candidate_count(rt, r), 2);
    seldon_routes_release(rt);
    gen = seldon_sched_routes_generation(s);
    cr_assert_eq(seldon_sched_unload(s, SELDON_KIND_EXPERIMENT, "ab", T0), 0);
    cr_assert_gt(seldon_sched_routes_generation(s), gen);
    rt = routes(s);
    cr_assert_eq(seldon_routes_find(&r, rt, "iris", 4), 0);
    cr_assert_eq(seldon_routes_candidate_count(rt, r), 0);
    cr_assert_eq(seldon_routes_upstream_count(rt, r), 1);
    cr_assert_eq(seldon_routes_find(&r, rt, "ab.experiment", 13), SELDON_ENOTFOUND);
    seldon_routes_release(rt);
    cr_assert_eq(seldon_sched_experiments(&st, s, "ab"), SELDON_ENOTFOUND);
    cr_assert(strstr(seldon_last_error(), "Experiment \"ab\" not found"));
    cr_assert_eq(seldon_sched_experiments(&st, s, NULL), 0);
    cr_assert_eq(seldon_sched_status_count(st), 0);
    seldon_sched_status_free(st);
    seldon_sched_close(s);
}

Test(experiment, no_default_is_an_experiment_route_only)
{
    seldon_sched *s = open_mem();
    seldon_routes *rt;
    size_t r;
    three_models(s);
    apply_ok(
        s, EXPERIMENT("ab", "  candidates: [{name: iris, weight: 1}, {name: iris2, weight: 3}]\n"),
        T0);
    rt = routes(s);
    cr_assert_eq(seldon_routes_find(&r, rt, "iris", 4), 0);
    cr_assert_eq(seldon_routes_candidate_count(rt, r), 0);
    cr_assert_eq(seldon_routes_find(&r, rt, "ab.experiment", 13), 0);
    cr_assert_eq(seldon_routes_candidate_count(rt, r), 2);
    seldon_routes_release(rt);
    seldon_sched_close(s);
}

static void refused(seldon_sched *s, const char *yaml, const char *needle)
{
    seldon_manifest *m = NULL;
    int rc = seldon_manifest_parse(&m, yaml, strlen(yaml), "e.yaml");
    if (rc == 0) {
        rc = seldon_sched_apply(s, m, NULL, T0);
        cr_assert_eq(rc, SELDON_EINVAL, "%s", yaml);
    } else {
        cr_assert_eq(rc, SELDON_EPARSE, "%s", yaml);
    }
    cr_assert(strstr(seldon_last_error(), needle) != NULL, "%s", seldon_last_error());
    seldon_manifest_free(m);
}

Test(experiment, validation_names_the_field)
{
    seldon_sched *s = open_mem();
    seldon_sched_status *st = NULL;
    refused(s, EXPERIMENT("e", "  default: iris\n  candidates: [{name: iris2, weight: 1}]\n"),
            "spec.default: \"iris\" is not one of the candidates");
    refused(s, EXPERIMENT("e", "  default: iris\n"), "spec");
    refused(s, EXPERIMENT("e", "  resourceType: model\n"),
            "an experiment needs at least one candidate or a mirror");
    refused(s, EXPERIMENT("e", "  candidates: [{name: a, weight: 1}, {name: a, weight: 2}]\n"),
            "spec.candidates[1].name: \"a\" is already a candidate");
    refused(s,
            EXPERIMENT("e", "  candidates: [{name: a, weight: 1}]\n"
                            "  mirror: {name: a, percent: 10}\n"),
            "document 1 (Experiment \"e\"): spec.mirror.name: \"a\" is already a candidate");
    apply_ok(s, EXPERIMENT("e1", "  default: a\n  candidates: [{name: a, weight: 1}]\n"), T0);
    refused(s, EXPERIMENT("e2", "  default: a\n  candidates: [{name: a, weight: 1}]\n"),
            "spec.default: \"a\" is already the default of experiment \"e1\"");
    /* the refused ones left nothing behind */
    cr_assert_eq(seldon_sched_experiments(&st, s, NULL), 0);
    cr_assert_eq(seldon_sched_status_count(st), 1);
    seldon_sched_status_free(st);
    seldon_sched_close(s);
}

Test(experiment, pipelines_keep_their_resource_type)
{
    seldon_sched *s = open_mem();
    seldon_sched_status *st = NULL;
    const seldon_sched_experiment_status *e;
    apply_ok(s,
             EXPERIMENT("pe", "  resourceType: pipeline\n  default: p1\n"
                              "  candidates: [{name: p1, weight: 1}, {name: p2, weight: 1}]\n"),
             T0);
    e = one(&st, s, "pe");
    cr_assert_str_eq(e->resource_type, "pipeline");
    cr_assert_eq(e->active, 0);
    cr_assert_str_eq(e->reason, "waiting for candidate pipeline \"p1\"");
    seldon_sched_status_free(st);
    /* a model may be the default of one model experiment and a pipeline of the same name of
       another */
    apply_ok(s, EXPERIMENT("me", "  default: p1\n  candidates: [{name: p1, weight: 1}]\n"), T0);
    seldon_sched_close(s);
}

Test(experiment, survives_a_restart)
{
    char *dir = temp_dir();
    seldon_sched *s = open_dir(dir, T0, 60000);
    seldon_sched_loaded held[2] = {{"iris", 1}, {"iris2", 1}};
    seldon_sched_status *st = NULL;
    const seldon_sched_experiment_status *e;
    seldon_routes *rt;
    size_t r;
    three_models(s);
    apply_ok(s,
             EXPERIMENT("ab", "  default: iris\n  candidates: [{name: iris, weight: 3}, "
                              "{name: iris2, weight: 1}]\n"),
             T0);
    seldon_sched_close(s);
    s = open_dir(dir, T0 + 1000 * MS, 60000);
    cr_assert_eq(connect_r(s, "mlserver", 0, CAPS, GIB, 0, held, 2, T0 + 1000 * MS), 0);
    e = one(&st, s, "ab");
    cr_assert_eq(e->active, 1);
    cr_assert_eq(e->weights[0], 3);
    seldon_sched_status_free(st);
    rt = routes(s);
    cr_assert_eq(seldon_routes_find(&r, rt, "iris", 4), 0);
    cr_assert_eq(seldon_routes_candidate_count(rt, r), 2);
    seldon_routes_release(rt);
    seldon_sched_close(s);
    rm_dir(dir);
}

#define PIPELINE(name, step)                                                                       \
    "apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata: {name: " name "}\n"           \
    "spec:\n  steps:\n  - name: " step "\n  output: {steps: [" step "]}\n"

Test(experiment, pipeline_routes_and_a_pipeline_experiment_split)
{
    seldon_sched *s = open_mem();
    seldon_sched_status *st = NULL;
    const seldon_sched_experiment_status *e;
    seldon_sched_upstream gw[2] = {{"127.0.0.1:9010", "127.0.0.1:9011"}, {"127.0.0.2:9010", NULL}};
    seldon_routes *rt;
    size_t r, c;
    uint32_t w;
    uint64_t gen;
    three_models(s);
    apply_ok(s, PIPELINE("p1", "iris"), T0);
    apply_ok(s, PIPELINE("p2", "iris2"), T0);
    /* No pipeline routes until the host says who serves them. */
    rt = routes(s);
    cr_assert_eq(seldon_routes_find(&r, rt, "p1.pipeline", 11), SELDON_ENOTFOUND);
    seldon_routes_release(rt);
    gen = seldon_sched_routes_generation(s);
    cr_assert_eq(seldon_sched_set_pipeline_upstreams(s, gw, 2), 0, "%s", seldon_last_error());
    cr_assert_gt(seldon_sched_routes_generation(s), gen);
    gen = seldon_sched_routes_generation(s);
    cr_assert_eq(seldon_sched_set_pipeline_upstreams(s, gw, 2), 0);
    cr_assert_eq(seldon_sched_routes_generation(s), gen, "the same upstreams: the same table");
    rt = routes(s);
    cr_assert_eq(seldon_routes_find(&r, rt, "p1.pipeline", 11), 0);
    cr_assert_eq(seldon_routes_upstream_count(rt, r), 2);
    cr_assert_eq(seldon_routes_retries(rt, r), 0);
    cr_assert_eq(seldon_routes_timeout_ms(rt, r), 0);
    cr_assert_str_eq(seldon_routes_upstream(rt, r, 1)->http, "127.0.0.2:9010");
    cr_assert_eq(seldon_routes_candidate_count(rt, r), 0);
    seldon_routes_release(rt);

    apply_ok(s,
             EXPERIMENT("pe", "  resourceType: pipeline\n  default: p1\n"
                              "  candidates: [{name: p1, weight: 3}, {name: p2, weight: 1}]\n"),
             T0);
    e = one(&st, s, "pe");
    cr_assert_eq(e->active, 1, "%s", e->reason);
    seldon_sched_status_free(st);
    rt = routes(s);
    /* The default pipeline's own route splits, and so does "pe.experiment". */
    cr_assert_eq(seldon_routes_find(&r, rt, "p1.pipeline", 11), 0);
    cr_assert_eq(seldon_routes_candidate_count(rt, r), 2);
    cr_assert_eq(seldon_routes_candidate(&c, &w, rt, r, 1), 0);
    cr_assert_str_eq(seldon_routes_name(rt, c), "p2.pipeline");
    cr_assert_eq(w, 1);
    cr_assert_eq(seldon_routes_find(&r, rt, "pe.experiment", 13), 0);
    cr_assert_eq(seldon_routes_candidate_count(rt, r), 2);
    {
        /* sticky: the route value a gateway's answer carries names the pipeline */
        const char *hv = ":iris2_1: :p2.pipeline:";
        cr_assert_eq(seldon_routes_decide(&c, NULL, NULL, rt, r, hv, strlen(hv), 0), 0);
        cr_assert_str_eq(seldon_routes_name(rt, c), "p2.pipeline");
    }
    seldon_routes_release(rt);

    /* Unloading a candidate: the experiment waits, its routes go, the pipeline's too. */
    cr_assert_eq(seldon_sched_unload(s, SELDON_KIND_PIPELINE, "p2", T0), 0);
    rt = routes(s);
    cr_assert_eq(seldon_routes_find(&r, rt, "p2.pipeline", 11), SELDON_ENOTFOUND);
    cr_assert_eq(seldon_routes_find(&r, rt, "pe.experiment", 13), SELDON_ENOTFOUND);
    cr_assert_eq(seldon_routes_find(&r, rt, "p1.pipeline", 11), 0);
    cr_assert_eq(seldon_routes_candidate_count(rt, r), 0);
    seldon_routes_release(rt);
    /* No gateway: no pipeline routes, the experiment is not routed. */
    apply_ok(s, PIPELINE("p2", "iris2"), T0);
    rt = routes(s);
    cr_assert_eq(seldon_routes_find(&r, rt, "pe.experiment", 13), 0);
    seldon_routes_release(rt);
    cr_assert_eq(seldon_sched_set_pipeline_upstreams(s, NULL, 0), 0);
    rt = routes(s);
    cr_assert_eq(seldon_routes_find(&r, rt, "p2.pipeline", 11), SELDON_ENOTFOUND);
    cr_assert_eq(seldon_routes_find(&r, rt, "pe.experiment", 13), SELDON_ENOTFOUND);
    seldon_routes_release(rt);
    gw[0].http = gw[0].grpc = NULL;
    cr_assert_eq(seldon_sched_set_pipeline_upstreams(s, gw, 1), SELDON_EINVAL);
    gw[0].http = "nohost:0";
    cr_assert_eq(seldon_sched_set_pipeline_upstreams(s, gw, 1), SELDON_EINVAL);
    cr_assert(strstr(seldon_last_error(), "pipeline upstreams[0]") != NULL, "%s",
              seldon_last_error());
    seldon_sched_close(s);
}
