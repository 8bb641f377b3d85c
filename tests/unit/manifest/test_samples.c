/*
 * Seldon Core 2's own sample manifests: every one parses, save the error-*
 * ones, which are refused with the reason below; and every resource goes
 * through canonical JSON and back unchanged.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "seldon/manifest.h"

#ifndef SELDON_SAMPLES_DIR
#error "SELDON_SAMPLES_DIR must name the folder of Seldon's sample manifests"
#endif

static const char *const FOLDERS[] = {"models", "servers", "pipelines", "experiments"};

/* The error-* samples this parser refuses, and the message's telling part. */
static const struct {
    const char *file;
    const char *reason;
} REFUSED[] = {
    {"experiments/error-bad-spec.yaml",
     "document 1 (Experiment \"experiment-sample\"): spec.candidate: unknown field (did you mean "
     "\"candidates\"?) (line 7)"},
    {"models/error-bad-spec.yaml",
     "document 1 (Model \"iris\"): spec.storagUri: unknown field (did you mean \"storageUri\"?) "
     "(line 6)"},
    {"models/error-no-uri.yaml",
     "document 1 (Model \"bad-uri\"): spec.storageUri: must not be empty (line 6)"},
    {"pipelines/error-bad-spec.yaml", "document 1 (Pipeline \"tfsimple-conditional\"): "
                                      "spec.steps[1].input: unknown field (did you mean "
                                      "\"inputs\"?) (line 9)"},
    {"pipelines/error-empty-input.yaml",
     "document 1 (Pipeline \"iris-pipeline\"): spec.steps[1].inputs[0]: must not be empty (line "
     "10)"},
    {"pipelines/error-empty-trigger.yaml",
     "document 1 (Pipeline \"iris-pipeline\"): spec.steps[2].triggers[0]: must not be empty "
     "(line 13)"},
    {"pipelines/error-step-name.yaml", "document 1 (Pipeline \"iris\"): spec.steps[0].name: a "
                                       "step cannot have the pipeline's own name (line 7)"},
};

/*
 * The error-* samples that are well-formed manifests: what is wrong with
 * them shows only when the system acts on them, as upstream.
 */
static const struct {
    const char *file;
    const char *why;
} LATER[] = {
    {"models/error-bad-capabilities.yaml",
     "requirement foobar: no server has it, so the scheduler answers ScheduleFailed"},
    {"models/error-uri-notexist.yaml",
     "storageUri gs://seldon-models/scv2/xyz does not exist: the agent's load fails"},
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* Parses back the canonical JSON of every resource; both must be equal, and the text stable. */
static void round_trip(const char *file, const seldon_manifest *m)
{
    size_t i;
    for (i = 0; i < seldon_manifest_count(m); i++) {
        const seldon_resource *r = seldon_manifest_at(m, i);
        seldon_buf one = SELDON_BUF_INIT, two = SELDON_BUF_INIT;
        seldon_manifest *back = NULL;
        cr_assert_eq(seldon_resource_serialize(&one, r), 0, "%s: %s", file, seldon_last_error());
        cr_assert_eq(seldon_manifest_parse(&back, (const char *)one.data, one.len, "saved"), 0,
                     "%s: our JSON does not parse: %s\n%.*s", file, seldon_last_error(),
                     (int)one.len, (const char *)one.data);
        cr_assert_eq(seldon_manifest_count(back), 1);
        cr_assert(seldon_resource_equal(r, seldon_manifest_at(back, 0)),
                  "%s: resource %zu differs after a round trip:\n%.*s", file, i, (int)one.len,
                  (const char *)one.data);
        cr_assert_eq(seldon_resource_serialize(&two, seldon_manifest_at(back, 0)), 0);
        cr_assert(one.len == two.len && memcmp(one.data, two.data, one.len) == 0,
                  "%s: the JSON is not stable", file);
        seldon_buf_free(&one);
        seldon_buf_free(&two);
        seldon_manifest_free(back);
    }
}

Test(samples, every_sample_parses_or_is_refused_with_its_reason)
{
    size_t f, parsed = 0, refused = 0, later = 0, resources = 0;
    int kinds[5] = {0};
    for (f = 0; f < N(FOLDERS); f++) {
        char dir[1024];
        DIR *d;
        struct dirent *e;
        size_t in_folder = 0;
        snprintf(dir, sizeof(dir), "%s/%s", SELDON_SAMPLES_DIR, FOLDERS[f]);
        d = opendir(dir);
        cr_assert_not_null(d, "cannot open %s", dir);
        while ((e = readdir(d)) != NULL) {
            char path[2048], rel[512];
            seldon_manifest *m = NULL;
            size_t i, j;
            int rc;
            if (strstr(e->d_name, ".yaml") == NULL)
                continue;
            in_folder++;
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
            snprintf(rel, sizeof(rel), "%s/%s", FOLDERS[f], e->d_name);
            rc = seldon_manifest_load(&m, path);
            if (strncmp(e->d_name, "error-", 6) == 0) {
                for (i = 0; i < N(REFUSED) && strcmp(REFUSED[i].file, rel) != 0; i++)
                    ;
                for (j = 0; j < N(LATER) && strcmp(LATER[j].file, rel) != 0; j++)
                    ;
                cr_assert(i < N(REFUSED) || j < N(LATER),
                          "%s: a new error sample: say whether it is refused here (%s)", rel,
                          rc ? seldon_last_error() : "it parses");
                if (i < N(REFUSED)) {
                    cr_assert_eq(rc, SELDON_EPARSE, "%s: expected a refusal, got %d", rel, rc);
                    cr_assert_null(m);
                    cr_assert_not_null(strstr(seldon_last_error(), REFUSED[i].reason),
                                       "%s: refused for another reason:\n  %s\nexpected:\n  %s",
                                       rel, seldon_last_error(), REFUSED[i].reason);
                    cr_assert_eq(strncmp(seldon_last_error(), path, strlen(path)), 0,
                                 "the message names the file: %s", seldon_last_error());
                    printf("refused  %-40s %s\n", rel, seldon_last_error());
                    refused++;
                    continue;
                }
                cr_assert_eq(rc, 0, "%s: %s", rel, seldon_last_error());
                printf("accepted %-40s (refused later: %s)\n", rel, LATER[j].why);
                later++;
            } else {
                cr_assert_eq(rc, 0, "%s: %s", rel, seldon_last_error());
                parsed++;
            }
            cr_assert_gt(seldon_manifest_count(m), 0);
            for (i = 0; i < seldon_manifest_count(m); i++) {
                const seldon_resource *r = seldon_manifest_at(m, i);
                cr_assert_not_null(r->name);
                cr_assert_eq(r->document, i + 1);
                kinds[r->kind]++;
                resources++;
            }
            /* Each folder holds its own kind. */
            cr_assert_eq((int)seldon_manifest_at(m, 0)->kind, (int)f + 1, "%s: kind %d", rel,
                         (int)seldon_manifest_at(m, 0)->kind);
            round_trip(rel, m);
            seldon_manifest_free(m);
        }
        closedir(d);
        cr_assert_gt(in_folder, 0, "%s holds no sample", dir);
    }
    printf("%zu samples parsed, %zu refused, %zu accepted and refused later; %zu resources "
           "(%d models, %d servers, %d pipelines, %d experiments)\n",
           parsed, refused, later, resources, kinds[1], kinds[2], kinds[3], kinds[4]);
    cr_assert_eq(refused, N(REFUSED), "a refused sample is missing");
    cr_assert_eq(later, N(LATER), "a sample refused later is missing");
    cr_assert_geq(parsed, 100, "only %zu samples: is %s complete?", parsed, SELDON_SAMPLES_DIR);
}

/* What the samples say, field by field, for a few that use many fields. */
static seldon_manifest *load(const char *rel)
{
    char path[1024];
    seldon_manifest *m = NULL;
    snprintf(path, sizeof(path), "%s/%s", SELDON_SAMPLES_DIR, rel);
    cr_assert_eq(seldon_manifest_load(&m, path), 0, "%s", seldon_last_error());
    return m;
}

Test(samples, a_server_sized_by_its_pod)
{
    seldon_manifest *m = load("servers/triton-gpu.yaml");
    const seldon_server_spec *s = &seldon_manifest_at(m, 0)->spec.server;
    cr_assert_str_eq(seldon_manifest_at(m, 0)->name, "triton-gpu");
    cr_assert_str_eq(s->server_config, "triton");
    cr_assert_eq(s->memory_bytes, 3LL << 30);
    cr_assert_eq(s->replicas, 1);
    cr_assert_eq(s->capabilities_count, 0);
    seldon_manifest_free(m);
}

Test(samples, names_with_dots_and_underscores)
{
    seldon_manifest *m = load("servers/mlserver-badname.yaml");
    cr_assert_str_eq(seldon_manifest_at(m, 0)->name, "mlserver.name");
    seldon_manifest_free(m);
    m = load("models/id1_node.yaml");
    cr_assert_str_eq(seldon_manifest_at(m, 0)->name, "id1_node");
    seldon_manifest_free(m);
}

Test(samples, a_model_with_memory_and_scaling)
{
    seldon_manifest *m = load("models/tfsimple_scaling.yaml");
    const seldon_model_spec *s = &seldon_manifest_at(m, 0)->spec.model;
    cr_assert_str_eq(s->storage_uri, "gs://seldon-models/triton/simple");
    cr_assert_eq(s->requirements_count, 1);
    cr_assert_str_eq(s->requirements[0], "tensorflow");
    cr_assert_eq(s->memory_bytes, 100 * 1024);
    cr_assert_eq(s->min_replicas, 1);
    cr_assert_eq(s->replicas, 1);
    cr_assert_eq(s->max_replicas, 0);
    cr_assert_eq(s->artifact_version, -1);
    cr_assert_eq(s->logger_percent, -1);
    cr_assert_null(s->server);
    seldon_manifest_free(m);
}

Test(samples, a_pipeline_with_triggers)
{
    seldon_manifest *m = load("pipelines/triggers_join_internal.yaml");
    const seldon_pipeline_spec *p = &seldon_manifest_at(m, 0)->spec.pipeline;
    cr_assert_eq(p->steps_count, 3);
    cr_assert_str_eq(p->steps[2].name, "join_node");
    cr_assert_eq(p->steps[2].inputs_count, 2);
    cr_assert_str_eq(p->steps[2].inputs[1], "triggers_join_internal.inputs.INPUT2");
    cr_assert_eq(p->steps[2].triggers_count, 2);
    cr_assert_str_eq(p->steps[2].triggers[0], "id1_node.outputs.OUTPUT1");
    cr_assert_str_eq(p->steps[2].triggers_join_type, "any");
    cr_assert_str_eq(p->steps[2].inputs_join_type, "inner");
    cr_assert_eq(p->steps[0].tensor_map_count, 1);
    cr_assert_str_eq(p->steps[0].tensor_map[0].name, "triggers_join_internal.inputs.TRIGGER1");
    cr_assert_str_eq(p->steps[0].tensor_map[0].value, "INPUT1");
    cr_assert_eq(p->output_steps_count, 1);
    cr_assert_str_eq(p->output_steps[0], "join_node");
    cr_assert_str_eq(p->output_steps_join, "inner");
    cr_assert_eq(p->steps[0].join_window_ms, -1);
    seldon_manifest_free(m);
}

Test(samples, an_experiment_with_a_mirror)
{
    seldon_manifest *m = load("experiments/addmul10-mirror.yaml");
    const seldon_experiment_spec *e = &seldon_manifest_at(m, 0)->spec.experiment;
    cr_assert_str_eq(e->default_name, "pipeline-add10");
    cr_assert_str_eq(e->resource_type, "pipeline");
    cr_assert_eq(e->candidates_count, 1);
    cr_assert_str_eq(e->candidates[0].name, "pipeline-add10");
    cr_assert_eq(e->candidates[0].weight, 100);
    cr_assert_str_eq(e->mirror_name, "pipeline-mul10");
    cr_assert_eq(e->mirror_percent, 100);
    seldon_manifest_free(m);
}
