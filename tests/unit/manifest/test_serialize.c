/* Canonical JSON of resources, equality, and allocation failures. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "seldon/manifest.h"

static seldon_manifest *parse(const char *text, size_t len)
{
    seldon_manifest *m = NULL;
    cr_assert_eq(seldon_manifest_parse(&m, text, len, "m.yaml"), 0, "%s\nfor:\n%.*s",
                 seldon_last_error(), (int)len, text);
    return m;
}

/* serialize -> parse -> equal, and the text again the same; returns the text (caller frees). */
static char *round_trip(const seldon_resource *r)
{
    seldon_buf one = SELDON_BUF_INIT, two = SELDON_BUF_INIT;
    seldon_manifest *back;
    char *text;
    cr_assert_eq(seldon_resource_serialize(&one, r), 0, "%s", seldon_last_error());
    back = parse((const char *)one.data, one.len);
    cr_assert(seldon_resource_equal(r, seldon_manifest_at(back, 0)), "differs:\n%.*s", (int)one.len,
              (const char *)one.data);
    cr_assert_eq(seldon_resource_serialize(&two, seldon_manifest_at(back, 0)), 0);
    cr_assert(one.len == two.len && memcmp(one.data, two.data, one.len) == 0, "not stable");
    text = strndup((const char *)one.data, one.len);
    seldon_buf_free(&one);
    seldon_buf_free(&two);
    seldon_manifest_free(back);
    return text;
}

Test(serialize, canonical_text_of_a_model)
{
    const char *y = "apiVersion: mlops.seldon.io/v1alpha1\n"
                    "kind: Model\n"
                    "metadata: {name: iris, namespace: prod, labels: {a: b}}\n"
                    "spec:\n"
                    "  memory: 1Ki\n"
                    "  storageUri: gs://x\n"
                    "  requirements: [sklearn]\n"
                    "  logger: {percent: 5}\n";
    seldon_manifest *m = parse(y, strlen(y));
    char *text = round_trip(seldon_manifest_at(m, 0));
    cr_assert_str_eq(text, "{\"apiVersion\":\"mlops.seldon.io/v1alpha1\",\"kind\":\"Model\","
                           "\"metadata\":{\"name\":\"iris\",\"namespace\":\"prod\"},\"spec\":{"
                           "\"storageUri\":\"gs://x\",\"requirements\":[\"sklearn\"],\"memory\":"
                           "1024,\"replicas\":1,\"logger\":{\"percent\":5}}}\n");
    free(text);
    seldon_manifest_free(m);
}

Test(serialize, strings_that_need_escapes)
{
    /* Quotes, backslashes, controls, C1 controls, NEL, line separators, BOM, non-BMP, U+FFFF. */
    const char *y = "apiVersion: mlops.seldon.io/v1alpha1\n"
                    "kind: Model\n"
                    "metadata: {name: iris}\n"
                    "spec:\n"
                    "  storageUri: \"a\\\"b\\\\c\\td\\ne\\x01f\\x7f\\x85g\\u2028h\\u2029"
                    "i\\ufeffj\\uffffk\\U0001F600l\\u00e9m\\x80\\x9f\"\n"
                    "  parameters: [{name: q, value: \"line one\\nline two  \\r\\n\"}]\n";
    seldon_manifest *m = parse(y, strlen(y));
    const seldon_model_spec *s = &seldon_manifest_at(m, 0)->spec.model;
    char *text;
    cr_assert_str_eq(s->storage_uri, "a\"b\\c\td\ne\x01"
                                     "f\x7f\xc2\x85g\xe2\x80\xa8h\xe2\x80\xa9i\xef\xbb\xbfj\xef\xbf"
                                     "\xbfk\xf0\x9f\x98\x80l\xc3\xa9m\xc2\x80\xc2\x9f");
    text = round_trip(seldon_manifest_at(m, 0));
    cr_assert_not_null(strstr(text, "\"a\\\"b\\\\c\\td\\ne\\u0001f\\u007f\\u0085g\\u2028h\\u2029"
                                    "i\\ufeffj\\uffffk\xf0\x9f\x98\x80l\xc3\xa9m\\u0080\\u009f\""),
                       "%s", text);
    free(text);
    seldon_manifest_free(m);
}

Test(serialize, a_resource_built_by_hand)
{
    static const char *const reqs[] = {"sklearn"};
    static const seldon_kv tmap[] = {{"a.outputs.X", "IN"}};
    seldon_pipeline_step steps[2];
    seldon_resource r;
    seldon_buf b = SELDON_BUF_INIT;
    seldon_manifest *back;
    char *text;

    memset(&r, 0, sizeof(r));
    r.kind = SELDON_KIND_MODEL;
    r.name = "iris";
    r.spec.model.storage_uri = "file:///models/iris";
    r.spec.model.requirements = reqs;
    r.spec.model.requirements_count = 1;
    r.spec.model.artifact_version = -1;
    r.spec.model.memory_bytes = -1;
    r.spec.model.logger_percent = -1;
    r.spec.model.replicas = 2;
    text = round_trip(&r);
    free(text);

    /* Join types left NULL mean inner, as when they are absent from a manifest. */
    memset(&r, 0, sizeof(r));
    memset(steps, 0, sizeof(steps));
    r.kind = SELDON_KIND_PIPELINE;
    r.name = "flow";
    steps[0].name = "a";
    steps[0].join_window_ms = -1;
    steps[1].name = "b";
    steps[1].inputs = (const char *const[]){"a.outputs.X"};
    steps[1].inputs_count = 1;
    steps[1].tensor_map = tmap;
    steps[1].tensor_map_count = 1;
    steps[1].join_window_ms = 20;
    r.spec.pipeline.steps = steps;
    r.spec.pipeline.steps_count = 2;
    r.spec.pipeline.input_join_window_ms = -1;
    r.spec.pipeline.output_join_window_ms = -1;
    r.spec.pipeline.output_steps = (const char *const[]){"b"};
    r.spec.pipeline.output_steps_count = 1;
    text = round_trip(&r);
    free(text);

    /* Bytes that are not UTF-8 (only a hand-built resource can hold them) become U+FFFD. */
    memset(&r, 0, sizeof(r));
    r.kind = SELDON_KIND_SERVER;
    r.name = "mlserver";
    r.spec.server.server_config = "ml\xff";
    r.spec.server.replicas = 1;
    r.spec.server.memory_bytes = 1 << 20;
    cr_assert_eq(seldon_resource_serialize(&b, &r), 0);
    back = parse((const char *)b.data, b.len);
    cr_assert_str_eq(seldon_manifest_at(back, 0)->spec.server.server_config, "ml\xef\xbf\xbd");
    cr_assert_eq(seldon_manifest_at(back, 0)->spec.server.memory_bytes, 1 << 20);
    seldon_manifest_free(back);

    /* It appends. */
    {
        size_t before = b.len;
        cr_assert_eq(seldon_resource_serialize(&b, &r), 0);
        cr_assert_eq(b.len, 2 * before);
    }
    seldon_buf_free(&b);
    cr_assert_eq(seldon_resource_serialize(NULL, &r), SELDON_EINVAL);
    cr_assert_eq(seldon_resource_serialize(&b, NULL), SELDON_EINVAL);
    r.kind = (seldon_kind)9;
    cr_assert_eq(seldon_resource_serialize(&b, &r), SELDON_EINVAL);
    seldon_buf_free(&b);
}

/* Two manifests whose first resources differ in one field only. */
static void differ(const char *a, const char *b)
{
    seldon_manifest *ma = parse(a, strlen(a)), *mb = parse(b, strlen(b));
    cr_assert_not(seldon_resource_equal(seldon_manifest_at(ma, 0), seldon_manifest_at(mb, 0)),
                  "equal:\n%s\n%s", a, b);
    cr_assert(seldon_resource_equal(seldon_manifest_at(ma, 0), seldon_manifest_at(ma, 0)));
    seldon_manifest_free(ma);
    seldon_manifest_free(mb);
}

#define H(kind) "apiVersion: mlops.seldon.io/v1alpha1\nkind: " kind "\nmetadata: {name: x}\nspec:\n"

Test(equal, field_by_field)
{
    differ(H("Model") "  storageUri: a\n", H("Model") "  storageUri: b\n");
    differ(H("Model") "  storageUri: a\n", H("Model") "  storageUri: a\n  replicas: 2\n");
    differ(H("Model") "  storageUri: a\n", H("Model") "  storageUri: a\n  requirements: [x]\n");
    differ(H("Model") "  storageUri: a\n  requirements: [x, y]\n",
           H("Model") "  storageUri: a\n  requirements: [y, x]\n");
    differ(H("Model") "  storageUri: a\n", H("Model") "  storageUri: a\n  memory: 0\n");
    differ(H("Model") "  storageUri: a\n", H("Model") "  storageUri: a\n  artifactVersion: 0\n");
    differ(H("Model") "  storageUri: a\n",
           H("Model") "  storageUri: a\n  parameters: [{name: a, value: b}]\n");
    differ(H("Model") "  storageUri: a\n  parameters: [{name: a, value: b}]\n",
           H("Model") "  storageUri: a\n  parameters: [{name: a, value: c}]\n");
    differ(H("Model") "  storageUri: a\n", H("Model") "  storageUri: a\n  logger: {percent: 0}\n");
    differ(H("Model") "  storageUri: a\n", H("Model") "  storageUri: a\n  llm: {modelRef: m}\n");
    differ(H("Model") "  storageUri: a\n", "apiVersion: mlops.seldon.io/v1alpha1\nkind: Model\n"
                                           "metadata: {name: x, namespace: n}\n"
                                           "spec:\n  storageUri: a\n");
    differ(H("Server") "  serverConfig: a\n", H("Server") "  serverConfig: a\n  memory: 1\n");
    differ(H("Server") "  serverConfig: a\n",
           H("Server") "  serverConfig: a\n  extraCapabilities: [z]\n");
    differ(H("Experiment") "  candidates: [{name: a, weight: 1}]\n",
           H("Experiment") "  candidates: [{name: a, weight: 2}]\n");
    differ(H("Experiment") "  candidates: [{name: a, weight: 1}]\n",
           H("Experiment") "  candidates: [{name: a, weight: 1}]\n  resourceType: pipeline\n");
    differ(H("Pipeline") "  steps: [{name: a}]\n",
           H("Pipeline") "  steps: [{name: a, inputsJoinType: any}]\n");
    differ(H("Pipeline") "  steps: [{name: a}]\n",
           H("Pipeline") "  steps: [{name: a, batch: {rolling: true}}]\n");
    differ(H("Pipeline") "  steps: [{name: a, tensorMap: {p: q, r: s}}]\n",
           H("Pipeline") "  steps: [{name: a, tensorMap: {r: s, p: q}}]\n");
    differ(H("Pipeline") "  steps: [{name: a}]\n", H("Pipeline") "  steps: [{name: a}]\n"
                                                                 "  output: {joinWindowMs: 1}\n");
    differ(H("Model") "  storageUri: a\n", H("Server") "  serverConfig: a\n");
    differ(H("Pipeline") "  steps: [{name: a}]\n",
           H("Pipeline") "  steps: [{name: a}]\n  dataflow: {cleanTopicsOnDelete: true}\n");
    differ(H("Pipeline") "  steps: [{name: a}]\n",
           H("Pipeline") "  steps: [{name: a}]\n  timeoutMs: 500\n");
    differ(H("Pipeline") "  steps: [{name: a}]\n  timeoutMs: 501\n",
           H("Pipeline") "  steps: [{name: a}]\n  timeoutMs: 500\n");
    /* The same resource written two ways is equal, whatever its document position. */
    {
        const char *a = "---\n---\n" H("Pipeline") "  steps: [{name: a, inputsJoinType: inner}]\n";
        const char *b = H("Pipeline") "  steps:\n  - name: a\n";
        seldon_manifest *ma = parse(a, strlen(a)), *mb = parse(b, strlen(b));
        cr_assert_eq(seldon_manifest_at(ma, 0)->document, 2);
        cr_assert(seldon_resource_equal(seldon_manifest_at(ma, 0), seldon_manifest_at(mb, 0)));
        seldon_manifest_free(ma);
        seldon_manifest_free(mb);
    }
    cr_assert(seldon_resource_equal(NULL, NULL));
}

/* Failing any allocation gives SELDON_ENOMEM and leaks nothing (the sanitizer build checks). */
Test(alloc, every_allocation_may_fail)
{
    const char *y =
        "apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata: {name: p}\n"
        "spec:\n  steps:\n  - name: a\n    tensorMap: {x: y}\n  - name: b\n"
        "    inputs: [a]\n  output: {steps: [b]}\n"
        "---\n" H("Model") "  storageUri: a\n  requirements: [a, b]\n"
                           "  parameters: [{name: a, value: b}]\n"
                           "---\n" H("Experiment") "  candidates: [{name: a, weight: 1}, {name: b, "
                                                   "weight: 1}]\n";
    int64_t n;
    int done = 0;
    for (n = 0; n < 10000 && !done; n++) {
        seldon_manifest *m = NULL;
        int rc;
        sdn_alloc_fail_after(n);
        rc = seldon_manifest_parse(&m, y, strlen(y), "m.yaml");
        if (rc == 0) {
            seldon_buf b = SELDON_BUF_INIT;
            size_t i;
            for (i = 0; i < seldon_manifest_count(m) && rc == 0; i++)
                rc = seldon_resource_serialize(&b, seldon_manifest_at(m, i));
            done = rc == 0;
            if (rc != 0)
                cr_assert_eq(rc, SELDON_ENOMEM);
            seldon_buf_free(&b);
            seldon_manifest_free(m);
        } else {
            cr_assert_eq(rc, SELDON_ENOMEM, "after %lld allocations: %d %s", (long long)n, rc,
                         seldon_last_error());
            cr_assert_null(m);
        }
    }
    sdn_alloc_fail_after(-1);
    cr_assert(done, "never succeeded");
    cr_assert_gt(n, 3, "the failures were not exercised");
}

/* ---- the JSON fast path reads what libyaml reads, and fails the same way ---- */

#include "manifest/manifest.h"

/* Both paths: the same code, and the same message or equal resources. */
static void same_both_ways(const char *text, size_t len)
{
    seldon_manifest *fast = NULL, *yaml = NULL;
    char msg[1024];
    int rc1 = seldon_manifest_parse(&fast, text, len, "m.json");
    size_t i;
    snprintf(msg, sizeof(msg), "%s", seldon_last_error());
    int rc2 = sdn_manifest_parse_ex(&yaml, text, len, "m.json", SDN_MF_YAML_ONLY);
    cr_assert_eq(rc1, rc2, "fast %d (%s), libyaml %d (%s)\nfor: %.*s", rc1, msg, rc2,
                 seldon_last_error(), (int)len, text);
    if (rc1 != 0) {
        cr_assert_str_eq(msg, seldon_last_error(), "for: %.*s", (int)len, text);
        return;
    }
    cr_assert_eq(seldon_manifest_count(fast), seldon_manifest_count(yaml));
    for (i = 0; i < seldon_manifest_count(fast); i++) {
        cr_assert(seldon_resource_equal(seldon_manifest_at(fast, i), seldon_manifest_at(yaml, i)));
        cr_assert_eq(seldon_manifest_at(fast, i)->document, seldon_manifest_at(yaml, i)->document);
    }
    seldon_manifest_free(fast);
    seldon_manifest_free(yaml);
}

#define J(spec)                                                                                    \
    "{\"apiVersion\": \"mlops.seldon.io/v1alpha1\", \"kind\": \"Model\", \"metadata\": "           \
    "{\"name\": \"iris\"},\n \"spec\": " spec "}"

#define KEY50 "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"
#define LONG_KEY KEY50 KEY50 KEY50 KEY50 KEY50 KEY50 KEY50 KEY50 KEY50 KEY50 /* 500 bytes */

Test(json, fast_path_and_libyaml_agree)
{
    static const char *const texts[] = {
        J("{\"storageUri\": \"gs://x\", \"replicas\": 2, \"memory\": \"1.5Gi\"}"),
        J("{\"storageUri\": \"gs://x\", \"memory\": 1e3, \"preloaded\": true, \"server\": null}"),
        J("{\"storageUri\": \"gs://x\", \"parameters\": [{\"name\": \"a\", \"value\": "
          "\"\\u00e9\\n\"}]}"),
        J("{\"storagUri\": \"gs://x\"}"),
        J("{\"storageUri\": 5}"),
        J("{\"storageUri\": \"gs://x\", \"replicas\": \"2\"}"),
        J("{\"storageUri\": \"gs://x\", \"replicas\": -1}"),
        J("{\"storageUri\": \"gs://x\", \"replicas\": 2.5}"),
        J("{\"storageUri\": \"gs://x\", \"requirements\": [null]}"),
        J("{\"storageUri\": \"\"}"),
        J("[1]"),
        "{\"apiVersion\": \"mlops.seldon.io/v1alpha1\", \"kind\": \"Pipeline\",\n"
        " \"metadata\": {\"name\": \"p\"},\n"
        " \"spec\": {\n"
        "   \"steps\": [{\"name\": \"a\"}, {\"name\": \"b\", \"inputs\": [\"c\"]}]\n"
        " }\n}\n",
        "{\"apiVersion\": \"mlops.seldon.io/v1alpha1\", \"kind\": \"Pipeline\",\n"
        " \"metadata\": {\"name\": \"p\"},\n"
        " \"spec\": {\"steps\": [{\"name\": \"a\", \"tensorMap\": {\"\": \"x\"}}]}}",
        /* Not for the fast path: a NUL, two documents, a duplicate key, bad JSON. */
        J("{\"storageUri\": \"a\\u0000b\"}"),
        J("{\"storageUri\": \"gs://x\"}") "\n---\n" J("{\"storageUri\": \"gs://y\"}"),
        J("{\"storageUri\": \"gs://x\", \"storageUri\": \"gs://y\"}"),
        J("{\"storageUri\": \"gs://x\",}"),
        "  \n\t{\"kind\": \"Model\"}",
        "{\n\t\"apiVersion\":\t\"mlops.seldon.io/v1alpha1\",\n\t\"kind\": \"Model\",\n"
        "\t\"metadata\": {\"name\": \"iris\"},\n\t\"spec\": {\"storageUri\": \"x\"}\n}\n",
        "{\"kind\": \"Model\", \"spec\": {\"storageUri\": \"\\ud83d\\ude00\"}}",
        J("{\"storageUri\": \"a\xe2\x80\xa8"
          "b\xc2\x85"
          "c\xef\xbb\xbf"
          "d\"}"),
        J("{\"storageUri\": \"a\xe2\x80\xa9"
          "b\"}"),
        J("{\"storageUri\": \"a\xc2\x85"
          "b\"}"),
        J("{\"storageUri\": \"a\x7f"
          "b\"}"),
        J("{\"storageUri\": \"a\xc2\x80"
          "b\"}"),
        J("{\"storageUri\": \"a\xef\xbf\xbe"
          "b\"}"),
        J("{\"storageUri\": \"a\xef\xbf\xbd\xef\xbb\xbf\xf0\x9f\x98\x80"
          "b\"}"),
        J("{\"storageUri\": \"a\\\\ud800\"}"),
        J("{\"storageUri\": \"a\\uDBFF\\uDFFF\"}"),
        /* Keys libyaml does not see as keys: a line break before the ':', too long. */
        J("{\"storageUri\"\n: \"x\"}"),
        "{\"apiVersion\": \"mlops.seldon.io/v1alpha1\", \"kind\": \"Model\", \"metadata\": "
        "{\"name\": \"iris\", \"labels\": {\"" LONG_KEY "\": \"v\"}},\n \"spec\": "
        "{\"storageUri\": \"x\"}}",
        "{\"apiVersion\": \"mlops.seldon.io/v1alpha1\", \"kind\": \"Model\", \"metadata\": "
        "{\"name\": \"iris\", \"labels\": {\"" LONG_KEY LONG_KEY "\": \"v\"}},\n \"spec\": "
        "{\"storageUri\": \"x\"}}",
        "{}",
    };
    size_t i;
    for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
        same_both_ways(texts[i], strlen(texts[i]));
}

Test(json, a_big_document_goes_through_libyaml)
{
    /* Over the fast path's 64 KiB: read by libyaml, same result. */
    size_t n = 8000, i;
    char *text = malloc(n * 16 + 512), *p = text;
    seldon_manifest *m;
    p += sprintf(p, "{\"apiVersion\": \"mlops.seldon.io/v1alpha1\", \"kind\": \"Server\", "
                    "\"metadata\": {\"name\": \"s\"}, \"spec\": {\"serverConfig\": \"x\", "
                    "\"capabilities\": [");
    for (i = 0; i < n; i++)
        p += sprintf(p, "%s\"cap%06zu\"", i ? ", " : "", i);
    p += sprintf(p, "]}}");
    cr_assert_gt((size_t)(p - text), 65536);
    same_both_ways(text, (size_t)(p - text));
    m = parse(text, (size_t)(p - text));
    cr_assert_eq(seldon_manifest_at(m, 0)->spec.server.capabilities_count, n);
    seldon_manifest_free(m);
    free(text);
}

Test(json, nesting_limits_agree)
{
    size_t levels;
    for (levels = 60; levels <= 68; levels++) {
        char text[2048], *p = text;
        size_t i;
        p += sprintf(p, "{\"apiVersion\": \"mlops.seldon.io/v1alpha1\", \"kind\": \"Model\", "
                        "\"metadata\": {\"name\": \"iris\", \"labels\": ");
        for (i = 0; i < levels; i++)
            p += sprintf(p, "{\"a\": ");
        p += sprintf(p, "1");
        for (i = 0; i < levels; i++)
            *p++ = '}';
        p += sprintf(p, "}, \"spec\": {\"storageUri\": \"x\"}}");
        same_both_ways(text, (size_t)(p - text));
    }
}

/* spec.timeoutMs, our extension: written last in spec, read back, left out when absent. */
Test(serialize, a_pipeline_timeout)
{
    const char *y =
        "apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata: {name: p}\n"
        "spec:\n  timeoutMs: 2500\n  steps: [{name: a, batch: {size: 4, rolling: true}}]\n";
    const char *bare = "apiVersion: mlops.seldon.io/v1alpha1\nkind: Pipeline\nmetadata: {name: p}\n"
                       "spec:\n  steps: [{name: a}]\n";
    seldon_manifest *m = parse(y, strlen(y)), *mb = parse(bare, strlen(bare));
    char *text = round_trip(seldon_manifest_at(m, 0));
    cr_assert_eq(seldon_manifest_at(m, 0)->spec.pipeline.timeout_ms, 2500);
    cr_assert_str_eq(text, "{\"apiVersion\":\"mlops.seldon.io/v1alpha1\",\"kind\":\"Pipeline\","
                           "\"metadata\":{\"name\":\"p\"},\"spec\":{\"steps\":[{\"name\":\"a\","
                           "\"inputsJoinType\":\"inner\",\"triggersJoinType\":\"inner\","
                           "\"batch\":{\"size\":4,\"rolling\":true}}],\"timeoutMs\":2500}}\n");
    free(text);
    cr_assert_eq(seldon_manifest_at(mb, 0)->spec.pipeline.timeout_ms, 0);
    text = round_trip(seldon_manifest_at(mb, 0));
    cr_assert_null(strstr(text, "timeoutMs"), "%s", text);
    free(text);
    seldon_manifest_free(m);
    seldon_manifest_free(mb);
}
