/* The pipeline compiler: references resolved, rules refused with the field named. */
#include <dirent.h>

#include "pl_test.h"

Test(compile, resolves_references_in_seldon_syntax)
{
    pl_set s = {0};
    seldon_buf b = SELDON_BUF_INIT;
    cr_assert_eq(pl_add(&s, HEAD
                        "p\nspec:\n  steps:\n  - name: a\n  - name: b\n    inputs: [a]\n"
                        "  - name: c\n    inputs: [a.outputs.OUTPUT0, b.inputs.X, p.inputs.Y]\n"
                        "    tensorMap:\n      a.outputs.OUTPUT0: IN0\n"
                        "  output:\n    steps: [c]\n"),
                 0, "%s", seldon_last_error());
    cr_assert_eq(seldon_pipeline_step_count(s.p[0]), 3);
    cr_assert_str_eq(seldon_pipeline_step_name(s.p[0], 2), "c");
    cr_assert_eq(seldon_pipeline_describe(&b, s.p[0]), 0);
    b.data[b.len - 1] = b.data[b.len - 1]; /* keep */
    cr_assert(strstr((char *)b.data, "step a <- [p.inputs] inner 60000ms"), "%.*s", (int)b.len,
              b.data);
    cr_assert(strstr((char *)b.data, "step b <- [a.outputs]"), "%.*s", (int)b.len, b.data);
    cr_assert(strstr((char *)b.data, "[a.outputs.OUTPUT0 {OUTPUT0->IN0}, b.inputs.X, p.inputs.Y]"),
              "%.*s", (int)b.len, b.data);
    seldon_buf_free(&b);
    pl_set_free(&s);
}

/* A spec built in C, so the compiler's own checks are reached (the YAML parser has some too). */
typedef struct sstep {
    const char *name;
    const char *in[4];
    const char *trig[4];
    const char *map[4]; /* key, value, key, value */
} sstep;

static const char *spec_err(const char *pname, const sstep *st, size_t n, int allow_cycles)
{
    static char buf[1024];
    seldon_pipeline_step steps[8];
    seldon_kv maps[8][2];
    seldon_pipeline_spec spec = {0};
    seldon_pipeline *p = NULL;
    size_t i, k;
    int rc;
    memset(steps, 0, sizeof(steps));
    for (i = 0; i < n; i++) {
        steps[i].name = st[i].name;
        steps[i].inputs = st[i].in;
        for (k = 0; k < 4 && st[i].in[k]; k++)
            ;
        steps[i].inputs_count = k;
        steps[i].triggers = st[i].trig;
        for (k = 0; k < 4 && st[i].trig[k]; k++)
            ;
        steps[i].triggers_count = k;
        for (k = 0; k < 2 && st[i].map[2 * k]; k++) {
            maps[i][k].name = st[i].map[2 * k];
            maps[i][k].value = st[i].map[2 * k + 1];
        }
        steps[i].tensor_map = maps[i];
        steps[i].tensor_map_count = k;
        steps[i].inputs_join_type = steps[i].triggers_join_type = "inner";
        steps[i].join_window_ms = -1;
    }
    spec.steps = steps;
    spec.steps_count = n;
    spec.allow_cycles = allow_cycles;
    spec.output_join_window_ms = spec.input_join_window_ms = -1;
    rc = seldon_pipeline_compile(&p, pname, &spec, NULL, NULL);
    snprintf(buf, sizeof(buf), "%s", rc < 0 ? seldon_last_error() : "");
    seldon_pipeline_free(p);
    return buf;
}

Test(compile, refuses_with_the_field_named)
{
    sstep join[] = {
        {"a", {0}, {0}, {0}}, {"b", {0}, {0}, {0}}, {"c", {"a", "tfsimple9.outputs"}, {0}, {0}}};
    sstep self[] = {{"iris", {0}, {0}, {0}}};
    sstep dup[] = {{"a", {0}, {0}, {0}}, {"a", {0}, {0}, {0}}};
    sstep cyc[] = {{"a", {"b"}, {0}, {0}}, {"b", {"a"}, {0}, {0}}};
    sstep both[] = {{"a", {0}, {0}, {0}}, {"b", {"p.inputs.X"}, {"p.inputs.X"}, {0}}};
    sstep known[] = {
        {"a", {"p.inputs.X", "p.inputs.Y"}, {0}, {"p.inputs.X", "A", "p.inputs.Y", "B"}},
        {"b", {"a.inputs.C"}, {0}, {0}}};
    sstep io[] = {{"a", {"p.sideways"}, {0}, {0}}};
    sstep map[] = {{"a", {0}, {0}, {"b.outputs.X", "Y"}}};
    sstep out[] = {{"a", {"p.outputs"}, {0}, {0}}};

    cr_assert_str_eq(spec_err("join", join, 3, 0),
                     "pipeline \"join\": spec.steps[2].inputs[1]: unknown step \"tfsimple9\"");
    cr_assert_str_eq(
        spec_err("iris", self, 1, 0),
        "pipeline \"iris\": spec.steps[0].name: a step cannot be named after its pipeline");
    cr_assert(strstr(spec_err("p", dup, 2, 0), "spec.steps[1].name: duplicate step \"a\""));
    cr_assert(
        strstr(spec_err("p", cyc, 2, 0), "spec.steps: a cycle (a -> b -> a): set allowCycles"),
        "%s", seldon_last_error());
    cr_assert_str_eq(spec_err("p", cyc, 2, 1), "");
    cr_assert(strstr(spec_err("p", both, 2, 0),
                     "spec.steps[1].triggers[0]: \"p.inputs.X\" is also an input"));
    cr_assert(strstr(spec_err("p", known, 2, 0),
                     "spec.steps[1].inputs[0]: step \"a\" has no input tensor \"C\""),
              "%s", seldon_last_error());
    cr_assert(strstr(spec_err("p", io, 1, 0),
                     "spec.steps[0].inputs[0]: \"p.sideways\": expected \"inputs\" or \"outputs\""),
              "%s", seldon_last_error());
    cr_assert(
        strstr(spec_err("p", map, 1, 0), "spec.steps[0].tensorMap[\"b.outputs.X\"]: no source"),
        "%s", seldon_last_error());
    cr_assert(strstr(spec_err("p", out, 1, 0), "its own pipeline's outputs"), "%s",
              seldon_last_error());
    /* Through YAML, as a user meets it (the manifest parser checks the names first). */
    cr_assert(strstr(compile_err(HEAD "p\nspec:\n  input:\n    externalInputs: [nope.outputs]\n"
                                      "  steps:\n  - name: a\n"),
                     "spec.input.externalInputs[0]: unknown pipeline \"nope\""),
              "%s", seldon_last_error());
}

Test(compile, a_bad_name_is_refused)
{
    seldon_pipeline *p = NULL;
    seldon_pipeline_spec spec = {0};
    seldon_pipeline_step st = {0};
    st.name = "Bad.Name";
    spec.steps = &st;
    spec.steps_count = 1;
    cr_assert_eq(seldon_pipeline_compile(&p, "ok", &spec, NULL, NULL), SELDON_EINVAL);
    cr_assert(strstr(seldon_last_error(), "spec.steps[0].name: \"Bad.Name\" is not a valid name"));
    st.name = "good";
    cr_assert_eq(seldon_pipeline_compile(&p, "-bad", &spec, NULL, NULL), SELDON_EINVAL);
    cr_assert(strstr(seldon_last_error(), "metadata.name: not a valid name"));
    cr_assert_eq(seldon_pipeline_compile(&p, "ok", &spec, NULL, NULL), 0);
    seldon_pipeline_free(p);
}

Test(compile, cycles_allowed_and_external_steps)
{
    pl_set s = {0};
    cr_assert_eq(pl_add(&s,
                        HEAD "p\nspec:\n  allowCycles: true\n  maxStepRevisits: 3\n  steps:\n"
                             "  - name: a\n    inputs: [p.inputs, b]\n    inputsJoinType: any\n"
                             "  - name: b\n    inputs: [a]\n"
                             "---\n" HEAD
                             "q\nspec:\n  input:\n    externalInputs: [p.step.a.outputs.OUTPUT]\n"
                             "    tensorMap:\n      p.step.a.outputs.OUTPUT: INPUT\n"
                             "  steps:\n  - name: c\n"),
                 0, "%s", seldon_last_error());
    cr_assert_eq(seldon_pipeline_dependency_count(s.p[1]), 1);
    cr_assert_str_eq(seldon_pipeline_dependency(s.p[1], 0), "p");
    pl_set_free(&s);
    cr_assert(
        strstr(compile_err(HEAD "p\nspec:\n  steps:\n  - name: a\n"
                                "---\n" HEAD "q\nspec:\n  input:\n    externalInputs: [p.step.zz]\n"
                                "  steps:\n  - name: c\n"),
               "spec.input.externalInputs[0]: pipeline \"p\" has no step \"zz\""));
}

/* Every sample pipeline of Seldon compiles, except the ones that are errors on purpose. */
Test(compile, seldon_samples)
{
    char dir[1024];
    DIR *d;
    struct dirent *de;
    pl_set s = {0};
    int ok = 0;
    static const char *const order[] = {"tfsimple.yaml", "tfsimple-extended.yaml",
                                        "tfsimple-extended2.yaml"};
    size_t i;
    /* Seldon's samples sit beside the repository (see tests/CMakeLists.txt). */
    snprintf(dir, sizeof(dir), "%s", __FILE__);
    if (strstr(dir, "/tests/unit/pipeline/"))
        strcpy(strstr(dir, "/tests/unit/pipeline/"), "/../shared/compat/seldon-samples/pipelines");
    d = opendir(dir);
    if (d == NULL)
        cr_skip_test("no samples at %s", dir);
    for (i = 0; i < 3; i++) {
        char path[2048], buf[65536];
        FILE *f;
        size_t n;
        snprintf(path, sizeof(path), "%s/%s", dir, order[i]);
        f = fopen(path, "rb");
        cr_assert(f);
        n = fread(buf, 1, sizeof(buf) - 1, f);
        buf[n] = 0;
        fclose(f);
        cr_assert_eq(pl_add(&s, buf), 0, "%s: %s", order[i], seldon_last_error());
    }
    while ((de = readdir(d)) != NULL) {
        char path[2048], buf[65536];
        FILE *f;
        size_t n;
        pl_set one = {0};
        int rc;
        if (!strstr(de->d_name, ".yaml"))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        f = fopen(path, "rb");
        cr_assert(f);
        n = fread(buf, 1, sizeof(buf) - 1, f);
        buf[n] = 0;
        fclose(f);
        /* Chained samples resolve against the ones loaded above. */
        one = s;
        one.nm = 0;
        rc = pl_add(&one, buf);
        for (i = s.np; i < one.np; i++)
            seldon_pipeline_free(one.p[i]);
        for (i = 0; i < one.nm; i++)
            seldon_manifest_free(one.m[i]);
        if (strncmp(de->d_name, "error", 5) == 0) {
            if (strcmp(de->d_name, "error-step-name.yaml") == 0)
                cr_assert(rc < 0, "%s compiled", de->d_name);
            continue;
        }
        cr_assert_eq(rc, 0, "%s: %s", de->d_name, seldon_last_error());
        ok++;
    }
    closedir(d);
    cr_assert_gt(ok, 20);
    pl_set_free(&s);
}
