/* Each rule of the manifest format, and the exact message of each refusal. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "seldon/manifest.h"

#define HEAD(kind, name)                                                                           \
    "apiVersion: mlops.seldon.io/v1alpha1\nkind: " kind "\nmetadata:\n  name: " name "\nspec:\n"
/* Spec fields start on line 6. */
#define MODEL HEAD("Model", "iris")
#define SERVER HEAD("Server", "mlserver")
#define PIPELINE HEAD("Pipeline", "flow")
#define EXPERIMENT HEAD("Experiment", "ab")
#define URI "  storageUri: gs://models/iris\n"

static seldon_manifest *ok(const char *text)
{
    seldon_manifest *m = NULL;
    int rc = seldon_manifest_parse(&m, text, strlen(text), "m.yaml");
    cr_assert_eq(rc, 0, "%s\nfor:\n%s", seldon_last_error(), text);
    cr_assert_not_null(m);
    return m;
}

static const seldon_resource *first(seldon_manifest *m)
{
    cr_assert_geq(seldon_manifest_count(m), 1);
    return seldon_manifest_at(m, 0);
}

/* Refused with SELDON_EPARSE and exactly this message (after "m.yaml: "). */
static void refused(const char *text, const char *message)
{
    seldon_manifest *m = (seldon_manifest *)1;
    char want[1024];
    int rc = seldon_manifest_parse(&m, text, strlen(text), "m.yaml");
    snprintf(want, sizeof(want), "m.yaml: %s", message);
    cr_assert_eq(rc, SELDON_EPARSE, "rc %d (%s) for:\n%s", rc, seldon_last_error(), text);
    cr_assert_null(m);
    cr_assert_str_eq(seldon_last_error(), want, "\n got: %s\nwant: %s\nfor:\n%s",
                     seldon_last_error(), want, text);
}

/* Refused with this code and a message holding part. */
static void refused_with(const char *text, size_t len, int code, const char *part)
{
    seldon_manifest *m = (seldon_manifest *)1;
    int rc = seldon_manifest_parse(&m, text, len, "m.yaml");
    cr_assert_eq(rc, code, "rc %d (%s)", rc, seldon_last_error());
    cr_assert_null(m);
    cr_assert_not_null(strstr(seldon_last_error(), part), "got: %s\nwant a part: %s",
                       seldon_last_error(), part);
}

/* ---- documents and the envelope ---- */

Test(envelope, a_model_with_every_field)
{
    seldon_manifest *m = ok(MODEL URI "  artifactVersion: 3\n"
                                      "  modelType: sklearn\n"
                                      "  schemaUri: gs://models/iris/schema\n"
                                      "  secretName: s3-secret\n"
                                      "  requirements: [sklearn, mlserver]\n"
                                      "  memory: 1.5Gi\n"
                                      "  replicas: 2\n"
                                      "  minReplicas: 1\n"
                                      "  maxReplicas: 4\n"
                                      "  server: mlserver\n"
                                      "  preloaded: true\n"
                                      "  dedicated: false\n"
                                      "  logger: {percent: 10}\n"
                                      "  explainer: {type: anchor_tabular, modelRef: income}\n"
                                      "  parameters:\n"
                                      "  - {name: query, value: \"choice == 1\"}\n"
                                      "  - {name: empty}\n"
                                      "  dataflow: {cleanTopicsOnDelete: true}\n");
    const seldon_resource *r = first(m);
    const seldon_model_spec *s = &r->spec.model;
    cr_assert_eq(r->kind, SELDON_KIND_MODEL);
    cr_assert_str_eq(r->name, "iris");
    cr_assert_null(r->namespace_);
    cr_assert_eq(r->document, 1);
    cr_assert_str_eq(s->storage_uri, "gs://models/iris");
    cr_assert_eq(s->artifact_version, 3);
    cr_assert_str_eq(s->model_type, "sklearn");
    cr_assert_str_eq(s->schema_uri, "gs://models/iris/schema");
    cr_assert_str_eq(s->secret_name, "s3-secret");
    cr_assert_eq(s->requirements_count, 2);
    cr_assert_str_eq(s->requirements[0], "sklearn");
    cr_assert_str_eq(s->requirements[1], "mlserver");
    cr_assert_eq(s->memory_bytes, 3LL << 29);
    cr_assert_eq(s->replicas, 2);
    cr_assert_eq(s->min_replicas, 1);
    cr_assert_eq(s->max_replicas, 4);
    cr_assert_str_eq(s->server, "mlserver");
    cr_assert_eq(s->preloaded, 1);
    cr_assert_eq(s->dedicated, 0);
    cr_assert_eq(s->logger_percent, 10);
    cr_assert_str_eq(s->explainer_type, "anchor_tabular");
    cr_assert_str_eq(s->explainer_model_ref, "income");
    cr_assert_null(s->explainer_pipeline_ref);
    cr_assert_null(s->llm_model_ref);
    cr_assert_eq(s->parameters_count, 2);
    cr_assert_str_eq(s->parameters[0].name, "query");
    cr_assert_str_eq(s->parameters[0].value, "choice == 1");
    cr_assert_str_eq(s->parameters[1].name, "empty");
    cr_assert_str_eq(s->parameters[1].value, "");
    cr_assert_eq(s->clean_topics_on_delete, 1);
    seldon_manifest_free(m);
}

Test(envelope, defaults_of_a_bare_model)
{
    seldon_manifest *m = ok(MODEL URI);
    const seldon_model_spec *s = &first(m)->spec.model;
    cr_assert_eq(s->artifact_version, -1);
    cr_assert_null(s->model_type);
    cr_assert_eq(s->requirements_count, 0);
    cr_assert_null(s->requirements);
    cr_assert_eq(s->memory_bytes, -1);
    cr_assert_eq(s->replicas, 1);
    cr_assert_eq(s->min_replicas, 0);
    cr_assert_eq(s->max_replicas, 0);
    cr_assert_null(s->server);
    cr_assert_eq(s->logger_percent, -1);
    cr_assert_eq(s->parameters_count, 0);
    seldon_manifest_free(m);
}

Test(envelope, several_documents_and_empty_ones)
{
    seldon_manifest *m = ok("---\n" MODEL URI "---\n"
                            "# nothing here\n"
                            "---\n" SERVER "  serverConfig: mlserver\n"
                            "...\n"
                            "---\n" EXPERIMENT "  candidates: [{name: iris, weight: 1}]\n");
    cr_assert_eq(seldon_manifest_count(m), 3);
    cr_assert_eq(seldon_manifest_at(m, 0)->kind, SELDON_KIND_MODEL);
    cr_assert_eq(seldon_manifest_at(m, 0)->document, 1);
    cr_assert_eq(seldon_manifest_at(m, 1)->kind, SELDON_KIND_SERVER);
    cr_assert_eq(seldon_manifest_at(m, 1)->document, 3);
    cr_assert_eq(seldon_manifest_at(m, 2)->kind, SELDON_KIND_EXPERIMENT);
    cr_assert_eq(seldon_manifest_at(m, 2)->document, 4);
    cr_assert_null(seldon_manifest_at(m, 3));
    seldon_manifest_free(m);
    /* The document number in a refusal counts the empty ones too. */
    refused("---\n" MODEL URI "---\n---\n" MODEL "  storageUri: x\n  replica: 2\n",
            "document 3 (Model \"iris\"): spec.replica: unknown field (did you mean "
            "\"replicas\"?) (line 16)");
}

Test(envelope, json_is_read_too)
{
    const char *j =
        "{\"apiVersion\": \"mlops.seldon.io/v1alpha1\", \"kind\": \"Model\",\n"
        " \"spec\": {\"storageUri\": \"gs://x\", \"replicas\": 3, \"preloaded\": false},\n"
        " \"metadata\": {\"name\": \"iris\"}}";
    seldon_manifest *m = ok(j);
    cr_assert_eq(first(m)->spec.model.replicas, 3);
    seldon_manifest_free(m);
    /* kind and name come after spec, yet the refusal names them. */
    refused("{\"apiVersion\": \"mlops.seldon.io/v1alpha1\", \"spec\": {\"storageUri\": 1},\n"
            " \"kind\": \"Model\", \"metadata\": {\"name\": \"iris\"}}",
            "document 1 (Model \"iris\"): spec.storageUri: expected text, got a number (write it "
            "in quotes: \"1\") (line 1)");
}

Test(envelope, kubernetes_metadata_and_status_are_accepted)
{
    seldon_manifest *m = ok("apiVersion: mlops.seldon.io/v1alpha1\n"
                            "kind: Model\n"
                            "metadata:\n"
                            "  name: iris\n"
                            "  namespace: seldon-mesh\n"
                            "  labels: {app: iris, tier: {nested: [1, 2]}}\n"
                            "  annotations:\n"
                            "    kubectl.kubernetes.io/last-applied-configuration: |\n"
                            "      {\"whatever\": true}\n"
                            "  uid: 0b3c\n"
                            "  resourceVersion: \"12\"\n"
                            "  generation: 2\n"
                            "  creationTimestamp: 2024-01-01T00:00:00Z\n"
                            "  finalizers: [seldon.io/finalizer]\n"
                            "spec:\n" URI "status:\n"
                            "  replicas: 1\n"
                            "  conditions: [{type: Ready, status: \"True\"}]\n");
    cr_assert_str_eq(first(m)->namespace_, "seldon-mesh");
    seldon_manifest_free(m);
    refused("apiVersion: mlops.seldon.io/v1alpha1\nkind: Model\nmetadata:\n  name: iris\n"
            "  namespace: Seldon_Mesh\nspec:\n" URI,
            "document 1 (Model \"iris\"): metadata.namespace: \"Seldon_Mesh\" is not a valid "
            "namespace: up to 63 lowercase letters, digits and '-', starting and ending with a "
            "letter or a digit (line 5)");
    refused("apiVersion: mlops.seldon.io/v1alpha1\nkind: Model\nmetadata:\n  name: iris\n"
            "  labelz: {}\nspec:\n" URI,
            "document 1 (Model \"iris\"): metadata.labelz: unknown field (did you mean "
            "\"labels\"?) (line 5)");
}

Test(envelope, api_version_kind_metadata_and_spec)
{
    refused("apiVersion: mlops.seldon.io/v1\nkind: Model\nmetadata: {name: iris}\nspec:\n" URI,
            "document 1 (Model \"iris\"): apiVersion: \"mlops.seldon.io/v1\" is not supported: "
            "use mlops.seldon.io/v1alpha1 (line 1)");
    refused("kind: Model\nmetadata: {name: iris}\nspec:\n" URI,
            "document 1 (Model \"iris\"): apiVersion: required field missing (line 1)");
    refused("apiVersion: mlops.seldon.io/v1alpha1\nkind: SeldonRuntime\nmetadata: {name: x}\n"
            "spec: {}\n",
            "document 1 (\"x\"): kind: \"SeldonRuntime\" is not a kind we know: use Model, "
            "Server, Pipeline or Experiment (line 2)");
    refused("apiVersion: mlops.seldon.io/v1alpha1\nmetadata: {name: x}\nspec: {}\n",
            "document 1 (\"x\"): kind: required field missing (line 1)");
    refused("apiVersion: mlops.seldon.io/v1alpha1\nkind: Model\nspec:\n" URI,
            "document 1 (Model): metadata: required field missing (line 1)");
    refused(
        "apiVersion: mlops.seldon.io/v1alpha1\nkind: Model\nmetadata: {namespace: a}\nspec:\n" URI,
        "document 1 (Model): metadata.name: required field missing (line 3)");
    refused("apiVersion: mlops.seldon.io/v1alpha1\nkind: Model\nmetadata: {name: iris}\n",
            "document 1 (Model \"iris\"): spec: required field missing (line 1)");
    refused("apiVersion: mlops.seldon.io/v1alpha1\nkind: Model\nmetadata: {name: iris}\n"
            "spec: [1]\n",
            "document 1 (Model \"iris\"): spec: expected a mapping, got a list (line 4)");
    refused("apiVersion: mlops.seldon.io/v1alpha1\nkind: Model\nmetadata: {name: iris}\n"
            "spec:\n" URI "extra: 1\n",
            "document 1 (Model \"iris\"): extra: unknown field (line 6)");
    refused("- 1\n- 2\n", "document 1: expected a resource (a mapping with apiVersion, kind, "
                          "metadata and spec), got a list (line 1)");
    refused("just text\n", "document 1: expected a resource (a mapping with apiVersion, kind, "
                           "metadata and spec), got text (line 1)");
}

Test(envelope, a_field_given_twice)
{
    refused(MODEL URI URI,
            "document 1 (Model \"iris\"): spec.storageUri: the field is given twice (line 7)");
}

Test(envelope, nothing_to_read)
{
    refused("", "no resource in it (an empty file?)");
    refused("# only a comment\n", "no resource in it (an empty file?)");
    refused("---\n---\n", "no resource in it (an empty file?)");
}

Test(envelope, yaml_syntax_errors_give_the_position)
{
    refused("apiVersion: a\nkind: [\n",
            "document 1: line 3, column 1: invalid YAML: did not find expected node content "
            "while parsing a flow node");
    refused(MODEL URI "---\nkey: [1, 2\nother: 1\n",
            "document 2: line 9, column 6: invalid YAML: did not find expected ',' or ']' "
            "while parsing a flow sequence");
}

Test(envelope, arguments)
{
    seldon_manifest *m = (seldon_manifest *)1;
    cr_assert_eq(seldon_manifest_parse(NULL, "", 0, NULL), SELDON_EINVAL);
    cr_assert_eq(seldon_manifest_parse(&m, NULL, 3, NULL), SELDON_EINVAL);
    cr_assert_eq(seldon_manifest_count(NULL), 0);
    cr_assert_null(seldon_manifest_at(NULL, 0));
    seldon_manifest_free(NULL);
    /* No source: "manifest" names it. */
    cr_assert_eq(seldon_manifest_parse(&m, "", 0, NULL), SELDON_EPARSE);
    cr_assert_str_eq(seldon_last_error(), "manifest: no resource in it (an empty file?)");
    cr_assert_eq(seldon_manifest_load(&m, "/nonexistent/model.yaml"), SELDON_EIO);
    cr_assert_str_eq(seldon_last_error(), "/nonexistent/model.yaml: No such file or directory");
    cr_assert_null(m);
    cr_assert_str_eq(seldon_kind_name(SELDON_KIND_MODEL), "Model");
    cr_assert_str_eq(seldon_kind_name(SELDON_KIND_SERVER), "Server");
    cr_assert_str_eq(seldon_kind_name(SELDON_KIND_PIPELINE), "Pipeline");
    cr_assert_str_eq(seldon_kind_name(SELDON_KIND_EXPERIMENT), "Experiment");
    cr_assert_null(seldon_kind_name((seldon_kind)0));
    cr_assert_null(seldon_kind_name((seldon_kind)5));
}

Test(envelope, load_reads_a_file)
{
    char path[] = "/tmp/seldon-manifest-XXXXXX";
    int fd = mkstemp(path);
    seldon_manifest *m = NULL;
    FILE *f;
    cr_assert_geq(fd, 0);
    f = fdopen(fd, "w");
    fputs(MODEL URI, f);
    fclose(f);
    cr_assert_eq(seldon_manifest_load(&m, path), 0, "%s", seldon_last_error());
    cr_assert_str_eq(first(m)->spec.model.storage_uri, "gs://models/iris");
    seldon_manifest_free(m);
    f = fopen(path, "w");
    fputs(MODEL "  storageUri: [x]\n", f);
    fclose(f);
    cr_assert_eq(seldon_manifest_load(&m, path), SELDON_EPARSE);
    cr_assert_eq(strncmp(seldon_last_error(), path, strlen(path)), 0, "%s", seldon_last_error());
    unlink(path);
}

/* ---- names ---- */

Test(names, accepted)
{
    static const char *const good[] = {"a",       "iris",  "id1_node", "mlserver.name",
                                       "a-b_c.d", "\"0\"", "9lives"};
    char text[1024];
    size_t i;
    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        seldon_manifest *m;
        snprintf(text, sizeof(text), HEAD("Model", "%s") URI, good[i]);
        m = ok(text);
        cr_assert_str_eq(first(m)->name, good[i][0] == '"' ? "0" : good[i]);
        seldon_manifest_free(m);
    }
}

Test(names, refused)
{
    static const char *const bad[] = {"Iris", "-iris", "iris-", "ir is", "iris.", "_x", "\"\""};
    char text[1024], want[512];
    size_t i;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        seldon_manifest *m = NULL;
        snprintf(text, sizeof(text), HEAD("Model", "%s") URI, bad[i]);
        cr_assert_eq(seldon_manifest_parse(&m, text, strlen(text), "m.yaml"), SELDON_EPARSE,
                     "%s accepted", bad[i]);
        cr_assert_not_null(strstr(seldon_last_error(), "metadata.name: "), "%s",
                           seldon_last_error());
    }
    refused(HEAD("Model", "Iris") URI,
            "document 1 (Model \"Iris\"): metadata.name: \"Iris\" is not a valid name: use "
            "lowercase letters, digits, '-', '_' and '.', starting and ending with a letter or a "
            "digit (line 4)");
    refused(HEAD("Model", "\"\"") URI,
            "document 1 (Model): metadata.name: must not be empty (line 4)");
    refused(HEAD("Model", "42") URI,
            "document 1 (Model \"42\"): metadata.name: expected text, got a number (write it in "
            "quotes: \"42\") (line 4)");
    /* The longest name, and one byte more. */
    {
        char name[300];
        seldon_manifest *m;
        memset(name, 'a', SELDON_MANIFEST_NAME_MAX);
        name[SELDON_MANIFEST_NAME_MAX] = '\0';
        snprintf(text, sizeof(text), HEAD("Model", "%s") URI, name);
        m = ok(text);
        cr_assert_eq(strlen(first(m)->name), SELDON_MANIFEST_NAME_MAX);
        seldon_manifest_free(m);
        strcat(name, "a");
        snprintf(text, sizeof(text), HEAD("Model", "%s") URI, name);
        snprintf(want, sizeof(want), "longer than %d bytes (line 4)", SELDON_MANIFEST_NAME_MAX);
        refused_with(text, strlen(text), SELDON_EPARSE, want);
    }
}

Test(names, pipelines_and_steps_have_no_dots)
{
    refused(HEAD("Pipeline", "my.flow") "  steps: [{name: a}]\n",
            "document 1 (Pipeline \"my.flow\"): metadata.name: \"my.flow\": a pipeline's name "
            "cannot hold '.' (references split on it) (line 4)");
    refused(PIPELINE "  steps: [{name: a.b}]\n",
            "document 1 (Pipeline \"flow\"): spec.steps[0].name: \"a.b\" is not a valid name: use "
            "lowercase letters, digits, '-', '_', starting and ending with a letter or a digit "
            "(line 6)");
}

Test(names, references_are_names)
{
    refused(MODEL URI "  server: MLServer\n",
            "document 1 (Model \"iris\"): spec.server: \"MLServer\" is not a valid name: use "
            "lowercase letters, digits, '-', '_' and '.', starting and ending with a letter or a "
            "digit (line 7)");
    refused(EXPERIMENT "  candidates: [{name: Iris, weight: 1}]\n",
            "document 1 (Experiment \"ab\"): spec.candidates[0].name: \"Iris\" is not a valid "
            "name: use lowercase letters, digits, '-', '_' and '.', starting and ending with a "
            "letter or a digit (line 6)");
}

/* ---- types ---- */

Test(types, wrong_types_are_named)
{
    refused(MODEL URI "  replicas: \"3\"\n",
            "document 1 (Model \"iris\"): spec.replicas: expected an integer, got text (line 7)");
    refused(MODEL URI "  replicas: 1.5\n",
            "document 1 (Model \"iris\"): spec.replicas: expected an integer, got 1.5 (line 7)");
    refused(MODEL URI "  replicas: [1]\n",
            "document 1 (Model \"iris\"): spec.replicas: expected an integer, got a list (line 7)");
    refused(MODEL URI "  replicas: 99999999999999999999\n",
            "document 1 (Model \"iris\"): spec.replicas: 99999999999999999999 is out of range (0 "
            "to 2147483647) (line 7)");
    refused(MODEL URI "  replicas: 2147483648\n",
            "document 1 (Model \"iris\"): spec.replicas: 2147483648 is out of range (0 to "
            "2147483647) (line 7)");
    refused(MODEL "  storageUri: true\n",
            "document 1 (Model \"iris\"): spec.storageUri: expected text, got true/false (write "
            "it in quotes: \"true\") (line 6)");
    refused(MODEL "  storageUri: {a: b}\n",
            "document 1 (Model \"iris\"): spec.storageUri: expected text, got a mapping (line 6)");
    refused(MODEL URI "  requirements: sklearn\n",
            "document 1 (Model \"iris\"): spec.requirements: expected a list, got text (line 7)");
    refused(MODEL URI "  requirements: [sklearn, [x]]\n",
            "document 1 (Model \"iris\"): spec.requirements[1]: expected text, got a list (line "
            "7)");
    refused(MODEL URI "  preloaded: yes\n",
            "document 1 (Model \"iris\"): spec.preloaded: expected true or false, got text (line "
            "7)");
    refused(MODEL URI "  preloaded: \"true\"\n",
            "document 1 (Model \"iris\"): spec.preloaded: expected true or false, got text (line "
            "7)");
    refused(MODEL URI "  logger: 10\n",
            "document 1 (Model \"iris\"): spec.logger: expected a mapping, got a number (line 7)");
}

Test(types, text_by_quotes_or_tag)
{
    seldon_manifest *m = ok(MODEL "  storageUri: !!str 123\n  modelType: \"456\"\n");
    cr_assert_str_eq(first(m)->spec.model.storage_uri, "123");
    cr_assert_str_eq(first(m)->spec.model.model_type, "456");
    seldon_manifest_free(m);
    refused(MODEL "  storageUri: !custom x\n",
            "document 1: line 6: the tag \"!custom\" is not supported");
}

Test(types, nulls_are_absent)
{
    seldon_manifest *m = ok(MODEL URI "  modelType:\n  replicas: ~\n  requirements: null\n"
                                      "  explainer:\n");
    const seldon_model_spec *s = &first(m)->spec.model;
    cr_assert_null(s->model_type);
    cr_assert_eq(s->replicas, 1);
    cr_assert_eq(s->requirements_count, 0);
    cr_assert_null(s->explainer_type);
    seldon_manifest_free(m);
    refused(MODEL "  storageUri:\n",
            "document 1 (Model \"iris\"): spec.storageUri: required field missing (line 6)");
    refused(MODEL URI "  requirements: [a, ~]\n",
            "document 1 (Model \"iris\"): spec.requirements[1]: must not be empty (line 7)");
    refused(MODEL URI "  requirements: [a, \"\"]\n",
            "document 1 (Model \"iris\"): spec.requirements[1]: must not be empty (line 7)");
}

Test(types, nul_characters_are_refused)
{
    refused(MODEL "  storageUri: \"a\\0b\"\n",
            "document 1: line 6: NUL characters are not allowed");
    refused_with("a\0b", 3, SELDON_EPARSE, "invalid YAML");
}

/* ---- replicas ---- */

Test(replicas, bounds)
{
    seldon_manifest *m = ok(MODEL URI "  minReplicas: 2\n");
    cr_assert_eq(first(m)->spec.model.replicas, 2, "replicas start at the minimum");
    cr_assert_eq(first(m)->spec.model.min_replicas, 2);
    seldon_manifest_free(m);
    m = ok(MODEL URI "  minReplicas: 0\n");
    cr_assert_eq(first(m)->spec.model.replicas, 1, "a minimum of 0 does not scale to 0");
    seldon_manifest_free(m);
    m = ok(MODEL URI "  replicas: 0\n");
    cr_assert_eq(first(m)->spec.model.replicas, 0);
    seldon_manifest_free(m);
    m = ok(MODEL URI "  replicas: 3\n  minReplicas: 3\n  maxReplicas: 3\n");
    cr_assert_eq(first(m)->spec.model.replicas, 3);
    seldon_manifest_free(m);
    m = ok(MODEL URI "  replicas: 7\n  maxReplicas: 0\n");
    cr_assert_eq(first(m)->spec.model.max_replicas, 0, "0 is no bound");
    seldon_manifest_free(m);
    refused(MODEL URI "  replicas: -1\n",
            "document 1 (Model \"iris\"): spec.replicas: must not be negative, got -1 (line 7)");
    refused(MODEL URI "  minReplicas: -2\n",
            "document 1 (Model \"iris\"): spec.minReplicas: must not be negative, got -2 (line "
            "7)");
    refused(MODEL URI "  maxReplicas: -2\n",
            "document 1 (Model \"iris\"): spec.maxReplicas: must not be negative, got -2 (line "
            "7)");
    refused(MODEL URI "  replicas: 1\n  minReplicas: 2\n",
            "document 1 (Model \"iris\"): spec.replicas: 1 is below minReplicas (2) (line 7)");
    refused(MODEL URI "  replicas: 5\n  maxReplicas: 4\n",
            "document 1 (Model \"iris\"): spec.replicas: 5 is above maxReplicas (4) (line 7)");
    refused(MODEL URI "  maxReplicas: 4\n  minReplicas: 5\n",
            "document 1 (Model \"iris\"): spec.minReplicas: 5 is above maxReplicas (4) (line 8)");
    refused(SERVER "  serverConfig: mlserver\n  replicas: 3\n  maxReplicas: 2\n",
            "document 1 (Server \"mlserver\"): spec.replicas: 3 is above maxReplicas (2) (line "
            "7)");
}

/* ---- memory ---- */

Test(memory, quantities)
{
    static const struct {
        const char *text;
        int64_t bytes;
    } good[] = {
        {"0", 0},
        {"512", 512},
        {"+512", 512},
        {"100Ki", 102400},
        {"1Mi", 1 << 20},
        {"1Gi", 1LL << 30},
        {"1.5Gi", 3LL << 29},
        {"3G", 3000000000LL},
        {"1k", 1000},
        {"2M", 2000000},
        {"1T", 1000000000000LL},
        {"1P", 1000000000000000LL},
        {"1E", 1000000000000000000LL},
        {"1Ti", 1LL << 40},
        {"1Pi", 1LL << 50},
        {"7Ei", 7LL << 60},
        {"1e3", 1000},
        {"1E9", 1000000000},
        {"0.5", 1},
        {".5Ki", 512},
        {"1.", 1},
        {"0.1Ki", 103},
        {"1.0000000000000000000001", 2},
        {"9223372036854775807", INT64_MAX},
        {"8589934591.999999999Gi", INT64_MAX},
    };
    static const char *const parse_errors[] = {"",      "Ki", "1Gb", "1 Gi", "1KI",  "1m", "abc",
                                               "1.2.3", "-1", "1e",  "1e-3", "0x10", ".",  "1i"};
    static const char *const range_errors[] = {
        "9223372036854775808", "8Ei", "10E", "1e19", "1e100", "99999999999999999999999"};
    size_t i;
    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        int64_t b = -7;
        int rc = seldon_parse_quantity(&b, good[i].text, strlen(good[i].text));
        cr_assert_eq(rc, 0, "%s: %s", good[i].text, seldon_last_error());
        cr_assert_eq(b, good[i].bytes, "%s: %lld, want %lld", good[i].text, (long long)b,
                     (long long)good[i].bytes);
    }
    for (i = 0; i < sizeof(parse_errors) / sizeof(parse_errors[0]); i++) {
        int64_t b = -7;
        cr_assert_eq(seldon_parse_quantity(&b, parse_errors[i], strlen(parse_errors[i])),
                     SELDON_EPARSE, "%s accepted (%lld)", parse_errors[i], (long long)b);
        cr_assert_eq(b, -7);
    }
    for (i = 0; i < sizeof(range_errors) / sizeof(range_errors[0]); i++) {
        int64_t b = -7;
        cr_assert_eq(seldon_parse_quantity(&b, range_errors[i], strlen(range_errors[i])),
                     SELDON_ERANGE, "%s: %s", range_errors[i], seldon_last_error());
    }
    cr_assert_eq(seldon_parse_quantity(NULL, "1", 1), SELDON_EINVAL);
    /* len bounds the text: "12" of "123". */
    {
        int64_t b;
        cr_assert_eq(seldon_parse_quantity(&b, "123", 2), 0);
        cr_assert_eq(b, 12);
    }
}

Test(memory, in_manifests)
{
    seldon_manifest *m = ok(MODEL URI "  memory: 1000000\n");
    cr_assert_eq(first(m)->spec.model.memory_bytes, 1000000);
    seldon_manifest_free(m);
    m = ok(MODEL URI "  memory: \"100Ki\"\n");
    cr_assert_eq(first(m)->spec.model.memory_bytes, 102400);
    seldon_manifest_free(m);
    refused(MODEL URI "  memory: 1Gb\n",
            "document 1 (Model \"iris\"): spec.memory: \"1Gb\" is not a quantity: unknown "
            "suffix; use k, M, G, T, P, E (powers of 1000) or Ki, Mi, Gi, Ti, Pi, Ei (powers of "
            "1024) (line 7)");
    refused(MODEL URI "  memory: -1Gi\n",
            "document 1 (Model \"iris\"): spec.memory: \"-1Gi\": a quantity of memory cannot be "
            "negative (line 7)");
    refused(MODEL URI "  memory: 9Ei\n",
            "document 1 (Model \"iris\"): spec.memory: \"9Ei\": more than 9223372036854775807 "
            "bytes (line 7)");
    refused(MODEL URI "  memory: true\n",
            "document 1 (Model \"iris\"): spec.memory: expected a quantity such as 512Mi, got "
            "true/false (line 7)");
}

/* ---- servers ---- */

Test(servers, pod_spec_is_accepted_and_sizes_the_server)
{
    seldon_manifest *m = ok(SERVER "  serverConfig: mlserver\n"
                                   "  extraCapabilities: [extra]\n"
                                   "  imageOverrides: {agent: {image: x}}\n"
                                   "  podSpec:\n"
                                   "    nodeSelector: {gpu: \"true\"}\n"
                                   "    tolerations: [{key: a, operator: Exists}]\n"
                                   "    containers:\n"
                                   "    - name: mlserver\n"
                                   "      image: seldonio/mlserver:1.3.4\n"
                                   "      env: [{name: A, value: \"1\"}]\n"
                                   "      resources:\n"
                                   "        requests: {memory: 1Gi, cpu: 500m}\n"
                                   "        limits: {memory: 2Gi, nvidia.com/gpu: 1}\n"
                                   "    - name: second\n"
                                   "      resources: {limits: {memory: 64Gi}}\n");
    const seldon_server_spec *s = &first(m)->spec.server;
    cr_assert_str_eq(s->server_config, "mlserver");
    cr_assert_eq(s->extra_capabilities_count, 1);
    cr_assert_str_eq(s->extra_capabilities[0], "extra");
    cr_assert_eq(s->memory_bytes, 2LL << 30, "the first container's limit");
    seldon_manifest_free(m);
    m = ok(SERVER "  serverConfig: mlserver\n  podSpec:\n    containers:\n"
                  "    - resources: {requests: {memory: 1Gi}}\n");
    cr_assert_eq(first(m)->spec.server.memory_bytes, 1LL << 30, "else its request");
    seldon_manifest_free(m);
    m = ok(SERVER "  serverConfig: mlserver\n  memory: 4Gi\n  podSpec:\n    containers:\n"
                  "    - resources: {requests: {memory: 1Gi}}\n");
    cr_assert_eq(first(m)->spec.server.memory_bytes, 4LL << 30, "spec.memory wins");
    seldon_manifest_free(m);
    m = ok(SERVER "  serverConfig: triton\n  capabilities: [a, b]\n  podSpec: {containers: 3}\n");
    cr_assert_eq(first(m)->spec.server.memory_bytes, -1);
    cr_assert_eq(first(m)->spec.server.capabilities_count, 2);
    seldon_manifest_free(m);
    refused(SERVER "  serverConfig: mlserver\n  podSpec:\n    containers:\n"
                   "    - resources: {limits: {memory: lots}}\n",
            "document 1 (Server \"mlserver\"): spec.podSpec.containers[0].resources.limits.memory: "
            "\"lots\" is not a quantity: expected a number of bytes with an optional suffix (k, "
            "M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei), e.g. 512Mi (line 9)");
    refused(SERVER "  serverConfig: mlserver\n  podSpec: [1]\n",
            "document 1 (Server \"mlserver\"): spec.podSpec: expected a mapping, got a list (line "
            "7)");
    refused(SERVER "  capabilities: [a]\n",
            "document 1 (Server \"mlserver\"): spec.serverConfig: required field missing (line "
            "6)");
}

/* ---- models ---- */

Test(models, explainers_and_llms)
{
    seldon_manifest *m = ok(MODEL URI "  llm: {pipelineRef: chat}\n");
    cr_assert_str_eq(first(m)->spec.model.llm_pipeline_ref, "chat");
    seldon_manifest_free(m);
    refused(MODEL URI "  explainer: {type: anchor, modelRef: a, pipelineRef: b}\n",
            "document 1 (Model \"iris\"): spec.explainer: give modelRef or pipelineRef, not both "
            "(line 7)");
    refused(MODEL URI "  explainer: {type: anchor}\n  llm: {modelRef: a}\n",
            "document 1 (Model \"iris\"): spec.llm: a model has an explainer or an llm, not both "
            "(line 8)");
    refused(MODEL URI "  llm: {}\n",
            "document 1 (Model \"iris\"): spec.llm: needs modelRef or pipelineRef (line 7)");
    refused(MODEL URI "  llm: {type: x, modelRef: a}\n",
            "document 1 (Model \"iris\"): spec.llm.type: unknown field (line 7)");
    refused(MODEL URI "  explainer: {typ: anchor}\n",
            "document 1 (Model \"iris\"): spec.explainer.typ: unknown field (did you mean "
            "\"type\"?) (line 7)");
}

Test(models, logger_parameters_dataflow_artifact_version)
{
    refused(MODEL URI "  logger: {percent: 101}\n",
            "document 1 (Model \"iris\"): spec.logger.percent: 101 is out of range (0 to 100) "
            "(line 7)");
    refused(MODEL URI "  logger: {uri: x}\n",
            "document 1 (Model \"iris\"): spec.logger.uri: unknown field (line 7)");
    refused(MODEL URI "  parameters: [{value: x}]\n",
            "document 1 (Model \"iris\"): spec.parameters[0].name: required field missing (line "
            "7)");
    refused(MODEL URI "  parameters: {name: x}\n",
            "document 1 (Model \"iris\"): spec.parameters: expected a list of {name, value}, got "
            "a mapping (line 7)");
    refused(MODEL URI "  parameters:\n  - name: a\n    value: 1\n",
            "document 1 (Model \"iris\"): spec.parameters[0].value: expected text, got a number "
            "(write it in quotes: \"1\") (line 9)");
    refused(MODEL URI "  dataflow: {cleanTopicsOnDelete: 1}\n",
            "document 1 (Model \"iris\"): spec.dataflow.cleanTopicsOnDelete: expected true or "
            "false, got a number (line 7)");
    refused(MODEL URI "  artifactVersion: 4294967296\n",
            "document 1 (Model \"iris\"): spec.artifactVersion: 4294967296 is out of range (0 to "
            "4294967295) (line 7)");
}

/* ---- experiments ---- */

Test(experiments, rules)
{
    seldon_manifest *m = ok(EXPERIMENT "  mirror: {name: iris2, percent: 0}\n");
    const seldon_experiment_spec *e = &first(m)->spec.experiment;
    cr_assert_eq(e->candidates_count, 0);
    cr_assert_str_eq(e->mirror_name, "iris2");
    cr_assert_eq(e->mirror_percent, 0);
    cr_assert_str_eq(e->resource_type, "model");
    cr_assert_null(e->default_name);
    seldon_manifest_free(m);
    m = ok(EXPERIMENT "  candidates: [{name: a, weight: 0}, {name: b, weight: 3}]\n");
    cr_assert_eq(first(m)->spec.experiment.candidates[0].weight, 0);
    cr_assert_eq(first(m)->spec.experiment.candidates[1].weight, 3);
    seldon_manifest_free(m);
    refused(EXPERIMENT "  default: iris\n  candidates: [{name: iris2, weight: 1}]\n",
            "document 1 (Experiment \"ab\"): spec.default: \"iris\" is not one of the candidates "
            "(line 6)");
    refused(EXPERIMENT "  default: iris\n",
            "document 1 (Experiment \"ab\"): spec: an experiment needs at least one candidate or "
            "a mirror (line 6)");
    refused(EXPERIMENT "  candidates: []\n",
            "document 1 (Experiment \"ab\"): spec: an experiment needs at least one candidate or "
            "a mirror (line 6)");
    refused(EXPERIMENT "  candidates:\n  - {name: a, weight: 1}\n  - {name: b, weight: 1}\n"
                       "  - {name: a, weight: 1}\n",
            "document 1 (Experiment \"ab\"): spec.candidates[2].name: \"a\" is already a "
            "candidate (line 9)");
    refused(EXPERIMENT "  candidates: [{name: a, weight: -1}]\n",
            "document 1 (Experiment \"ab\"): spec.candidates[0].weight: must not be negative, got "
            "-1 (line 6)");
    refused(EXPERIMENT "  candidates: [{name: a, weight: 0}, {name: b, weight: 0}]\n",
            "document 1 (Experiment \"ab\"): spec.candidates: the weights add up to 0: give at "
            "least one a positive weight (line 6)");
    refused(EXPERIMENT "  candidates: [{name: a}]\n",
            "document 1 (Experiment \"ab\"): spec.candidates[0].weight: required field missing "
            "(line 6)");
    refused(EXPERIMENT "  mirror: {name: a, percent: 101}\n",
            "document 1 (Experiment \"ab\"): spec.mirror.percent: 101 is out of range (0 to 100) "
            "(line 6)");
    refused(EXPERIMENT "  mirror: {name: a}\n",
            "document 1 (Experiment \"ab\"): spec.mirror.percent: required field missing (line "
            "6)");
    refused(EXPERIMENT "  mirror: {percent: 5}\n",
            "document 1 (Experiment \"ab\"): spec.mirror.name: required field missing (line 6)");
    refused(EXPERIMENT "  resourceType: service\n  mirror: {name: a, percent: 5}\n",
            "document 1 (Experiment \"ab\"): spec.resourceType: \"service\" is not a resource "
            "type: use model or pipeline (line 6)");
    refused(EXPERIMENT "  candidates: [{name: a, weight: 1, sticky: true}]\n",
            "document 1 (Experiment \"ab\"): spec.candidates[0].sticky: unknown field (line 6)");
}

/* ---- pipelines ---- */

Test(pipelines, every_field_kept_as_written)
{
    seldon_manifest *m = ok(PIPELINE "  input:\n"
                                     "    externalInputs: [other.outputs]\n"
                                     "    externalTriggers: [other.outputs.T]\n"
                                     "    joinWindowMs: 500\n"
                                     "    joinType: outer\n"
                                     "    triggersJoinType: any\n"
                                     "    tensorMap: {other.outputs.OUT: IN, z: a}\n"
                                     "  steps:\n"
                                     "  - name: b\n"
                                     "    inputs: [flow.inputs.IN, a.outputs.X]\n"
                                     "    triggers: [a]\n"
                                     "    joinWindowMs: 0\n"
                                     "    inputsJoinType: any\n"
                                     "    triggersJoinType: outer\n"
                                     "    tensorMap: {a.outputs.X: INPUT}\n"
                                     "    batch: {size: 8, windowMs: 20, rolling: true}\n"
                                     "  - name: a\n"
                                     "  output:\n"
                                     "    steps: [b, a.outputs.X]\n"
                                     "    joinWindowMs: 100\n"
                                     "    stepsJoin: any\n"
                                     "    tensorMap: {b.outputs.OUTPUT: RESULT}\n"
                                     "  allowCycles: true\n"
                                     "  maxStepRevisits: 5\n"
                                     "  dataflow: {cleanTopicsOnDelete: true}\n");
    const seldon_pipeline_spec *p = &first(m)->spec.pipeline;
    const seldon_pipeline_step *b = &p->steps[0];
    cr_assert_eq(p->external_inputs_count, 1);
    cr_assert_str_eq(p->external_inputs[0], "other.outputs");
    cr_assert_str_eq(p->external_triggers[0], "other.outputs.T");
    cr_assert_eq(p->input_join_window_ms, 500);
    cr_assert_str_eq(p->input_join_type, "outer");
    cr_assert_str_eq(p->input_triggers_join_type, "any");
    cr_assert_eq(p->input_tensor_map_count, 2);
    cr_assert_str_eq(p->input_tensor_map[0].name, "other.outputs.OUT");
    cr_assert_str_eq(p->input_tensor_map[1].name, "z", "document order, not sorted");
    cr_assert_eq(p->steps_count, 2);
    cr_assert_str_eq(b->name, "b");
    cr_assert_eq(b->inputs_count, 2);
    cr_assert_str_eq(b->triggers[0], "a");
    cr_assert_eq(b->join_window_ms, 0);
    cr_assert_str_eq(b->inputs_join_type, "any");
    cr_assert_str_eq(b->triggers_join_type, "outer");
    cr_assert_str_eq(b->tensor_map[0].value, "INPUT");
    cr_assert_eq(b->batch.size, 8);
    cr_assert_eq(b->batch.window_ms, 20);
    cr_assert_eq(b->batch.rolling, 1);
    cr_assert_str_eq(p->steps[1].inputs_join_type, "inner");
    cr_assert_eq(p->steps[1].join_window_ms, -1);
    cr_assert_eq(p->steps[1].batch.size, 0);
    cr_assert_eq(p->output_steps_count, 2);
    cr_assert_eq(p->output_join_window_ms, 100);
    cr_assert_str_eq(p->output_steps_join, "any");
    cr_assert_str_eq(p->output_tensor_map[0].value, "RESULT");
    cr_assert_eq(p->allow_cycles, 1);
    cr_assert_eq(p->max_step_revisits, 5);
    cr_assert_eq(p->clean_topics_on_delete, 1);
    seldon_manifest_free(m);
}

Test(pipelines, rules)
{
    refused(PIPELINE "  steps: [{name: a, inputsJoinType: left}]\n",
            "document 1 (Pipeline \"flow\"): spec.steps[0].inputsJoinType: \"left\" is not a join "
            "type: use inner, outer or any (line 6)");
    refused(PIPELINE "  steps: [{name: a}]\n  output: {steps: [a], stepsJoin: INNER}\n",
            "document 1 (Pipeline \"flow\"): spec.output.stepsJoin: \"INNER\" is not a join type: "
            "use inner, outer or any (line 7)");
    refused(PIPELINE "  steps:\n  - name: a\n  - name: b\n  - name: a\n",
            "document 1 (Pipeline \"flow\"): spec.steps[2].name: \"a\" is already a step (line "
            "9)");
    refused(PIPELINE "  steps: [{name: \"\"}]\n",
            "document 1 (Pipeline \"flow\"): spec.steps[0].name: must not be empty (line 6)");
    refused(PIPELINE "  steps: [{inputs: [a]}]\n",
            "document 1 (Pipeline \"flow\"): spec.steps[0].name: required field missing (line "
            "6)");
    refused(PIPELINE "  steps: []\n",
            "document 1 (Pipeline \"flow\"): spec.steps: a pipeline needs at least one step "
            "(line 6)");
    refused(PIPELINE "  output: {steps: [a]}\n",
            "document 1 (Pipeline \"flow\"): spec.steps: required field missing (line 6)");
    refused(PIPELINE "  steps:\n  - name: a\n    inputs: [b.outputs]\n",
            "document 1 (Pipeline \"flow\"): spec.steps[0].inputs[0]: \"b\" is neither a step of "
            "this pipeline nor the pipeline itself (line 8)");
    refused(PIPELINE "  steps:\n  - name: a\n    triggers: [flow2.inputs.T]\n",
            "document 1 (Pipeline \"flow\"): spec.steps[0].triggers[0]: \"flow2\" is neither a "
            "step of this pipeline nor the pipeline itself (line 8)");
    refused(PIPELINE "  steps: [{name: a}]\n  output: {steps: [a, iris]}\n",
            "document 1 (Pipeline \"flow\"): spec.output.steps[1]: \"iris\" is not a step of this "
            "pipeline (line 7)");
    refused(PIPELINE "  steps: [{name: a, batch: {size: -1}}]\n",
            "document 1 (Pipeline \"flow\"): spec.steps[0].batch.size: must not be negative, got "
            "-1 (line 6)");
    refused(PIPELINE "  steps: [{name: a, batch: {sise: 1}}]\n",
            "document 1 (Pipeline \"flow\"): spec.steps[0].batch.sise: unknown field (did you mean "
            "\"size\"?) (line 6)");
    refused(PIPELINE "  steps: [{name: a, joinWindowMs: 4294967296}]\n",
            "document 1 (Pipeline \"flow\"): spec.steps[0].joinWindowMs: 4294967296 is out of "
            "range (0 to 4294967295) (line 6)");
    refused(PIPELINE "  steps: [{name: a, tensorMap: {x: [1]}}]\n",
            "document 1 (Pipeline \"flow\"): spec.steps[0].tensorMap[\"x\"]: expected text, got "
            "a list (line 6)");
    refused(PIPELINE "  steps: [{name: a, tensorMap: {x: a, x: b}}]\n",
            "document 1 (Pipeline \"flow\"): spec.steps[0].tensorMap[\"x\"]: the key is given "
            "twice (line 6)");
    refused(PIPELINE "  steps: [{name: a, tensorMap: {\"x\\ty\": a}}]\n",
            "document 1 (Pipeline \"flow\"): spec.steps[0].tensorMap[\"x?y\"]: a key must not "
            "hold control characters (line 6)");
    refused(PIPELINE "  steps: [{name: a, tensorMap: [x]}]\n",
            "document 1 (Pipeline \"flow\"): spec.steps[0].tensorMap: expected a mapping, got a "
            "list (line 6)");
    refused(PIPELINE "  steps: [{name: a}]\n  maxStepRevisits: -3\n",
            "document 1 (Pipeline \"flow\"): spec.maxStepRevisits: must not be negative, got -3 "
            "(line 7)");
    refused(PIPELINE "  steps: [{name: a}]\n  input: {externalInputs: [\"\"]}\n",
            "document 1 (Pipeline \"flow\"): spec.input.externalInputs[0]: must not be empty "
            "(line 7)");
}

Test(pipelines, a_long_tensor_map_key)
{
    char text[2048], key[400];
    memset(key, 'k', 256);
    key[256] = '\0';
    snprintf(text, sizeof(text), PIPELINE "  steps: [{name: a, tensorMap: {%s: v}}]\n", key);
    seldon_manifest_free(ok(text));
    strcat(key, "k");
    snprintf(text, sizeof(text), PIPELINE "  steps: [{name: a, tensorMap: {%s: v}}]\n", key);
    refused_with(text, strlen(text), SELDON_EPARSE, "a key is longer than 256 bytes (line 6)");
}

/* ---- bounds: the work is bounded by the input, whatever it holds ---- */

Test(bounds, aliases_are_refused)
{
    const char *laughs = "a: &a [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]\n"
                         "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                         "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                         "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                         "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                         "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
                         "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
                         "h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
                         "i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]\n";
    refused(laughs, "document 1: line 2: aliases (*name) are not supported");
    /* An anchor alone is harmless. */
    seldon_manifest_free(ok(MODEL "  storageUri: &u gs://models/iris\n"));
}

Test(bounds, deep_nesting)
{
    size_t n = 100000, i;
    char *text = malloc(2 * n + 64);
    seldon_manifest *m = NULL;
    char want[128];
    strcpy(text, "a: ");
    for (i = 0; i < n; i++)
        text[3 + i] = '[';
    text[3 + n] = '\0';
    snprintf(want, sizeof(want), "nested deeper than %d levels", 64);
    refused_with(text, strlen(text), SELDON_ETOOBIG, want);
    /* Inside a pod spec too, where anything else goes. */
    snprintf(text, 2 * n + 64, SERVER "  serverConfig: x\n  podSpec: ");
    for (i = 0; i < 70; i++)
        strcat(text, "{a: ");
    strcat(text, "1");
    for (i = 0; i < 70; i++)
        strcat(text, "}");
    strcat(text, "\n");
    cr_assert_eq(seldon_manifest_parse(&m, text, strlen(text), "m.yaml"), SELDON_ETOOBIG);
    cr_assert_str_eq(seldon_last_error(), "m.yaml: document 1: line 7: nested deeper than 64 "
                                          "levels");
    free(text);
}

Test(bounds, too_many_values)
{
    size_t n = 1000001, i;
    char *text = malloc(2 * n + 64), *p = text;
    p += sprintf(p, "a: [");
    for (i = 0; i < n; i++) {
        *p++ = '1';
        *p++ = ',';
    }
    p[-1] = ']';
    *p = '\0';
    refused_with(text, (size_t)(p - text), SELDON_ETOOBIG,
                 "more than 1000000 values in one "
                 "document");
    free(text);
}

Test(bounds, too_many_documents)
{
    size_t n = SELDON_MANIFEST_DOCS_MAX + 1, i;
    char *text = malloc(4 * n + 1);
    for (i = 0; i < n; i++)
        memcpy(text + 4 * i, "---\n", 4);
    text[4 * n] = '\0';
    refused_with(text, 4 * n, SELDON_ETOOBIG, "m.yaml: more than 100000 documents");
    free(text);
}

Test(bounds, too_big_a_file)
{
    /* calloc'd pages are never touched: the size is refused before any byte is read. */
    size_t len = (size_t)SELDON_MANIFEST_FILE_MAX + 1;
    char *text = calloc(1, len);
    refused_with(text, len, SELDON_ETOOBIG,
                 "m.yaml: 67108865 bytes, more than the 67108864 a "
                 "manifest may hold");
    free(text);
}

/* spec.timeoutMs: our extension, strict like every field. */
Test(pipelines, timeout_ms)
{
    seldon_manifest *m = ok(PIPELINE "  steps: [{name: a}]\n  timeoutMs: 1500\n");
    cr_assert_eq(first(m)->spec.pipeline.timeout_ms, 1500);
    seldon_manifest_free(m);
    m = ok(PIPELINE "  steps: [{name: a}]\n  timeoutMs: ~\n");
    cr_assert_eq(first(m)->spec.pipeline.timeout_ms, 0, "null is absent");
    seldon_manifest_free(m);
    refused(PIPELINE "  steps: [{name: a}]\n  timeoutMs: 0\n",
            "document 1 (Pipeline \"flow\"): spec.timeoutMs: 0 is out of range (1 to 4294967295) "
            "(line 7)");
    refused(PIPELINE "  steps: [{name: a}]\n  timeoutMs: -5\n",
            "document 1 (Pipeline \"flow\"): spec.timeoutMs: -5 is out of range (1 to 4294967295) "
            "(line 7)");
    refused(PIPELINE "  steps: [{name: a}]\n  timeoutMs: 4294967296\n",
            "document 1 (Pipeline \"flow\"): spec.timeoutMs: 4294967296 is out of range (1 to "
            "4294967295) (line 7)");
    refused(
        PIPELINE "  steps: [{name: a}]\n  timeoutMs: \"5s\"\n",
        "document 1 (Pipeline \"flow\"): spec.timeoutMs: expected an integer, got text (line 7)");
    refused(PIPELINE "  steps: [{name: a}]\n  timeoutMS: 5\n",
            "document 1 (Pipeline \"flow\"): spec.timeoutMS: unknown field (did you mean "
            "\"timeoutMs\"?) (line 7)");
    refused(PIPELINE "  steps: [{name: a, timeoutMs: 5}]\n",
            "document 1 (Pipeline \"flow\"): spec.steps[0].timeoutMs: unknown field (line 6)");
}
