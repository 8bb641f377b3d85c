/* The protocol's REST paths. */
#include <criterion/criterion.h>
#include <string.h>

#include "seldon/oip.h"

static int parse(seldon_route *r, const char *method, const char *path)
{
    return seldon_route_parse(r, method, strlen(method), path, strlen(path));
}

static void expect(const char *method, const char *path, int32_t kind, const char *name,
                   const char *version)
{
    seldon_route r;
    cr_assert_eq(parse(&r, method, path), 0, "%s %s: %s", method, path, seldon_last_error());
    cr_assert_eq(r.kind, kind, "%s", path);
    if (name == NULL) {
        cr_assert_null(r.name);
    } else {
        cr_assert_eq(r.name_len, strlen(name), "%s", path);
        cr_assert_eq(memcmp(r.name, name, r.name_len), 0);
    }
    if (version == NULL) {
        cr_assert_null(r.version);
    } else {
        cr_assert_eq(r.version_len, strlen(version));
        cr_assert_eq(memcmp(r.version, version, r.version_len), 0);
    }
}

Test(route, every_endpoint)
{
    expect("GET", "/v2", SELDON_ROUTE_SERVER_METADATA, NULL, NULL);
    expect("GET", "/v2/", SELDON_ROUTE_SERVER_METADATA, NULL, NULL);
    expect("GET", "/v2/health/live", SELDON_ROUTE_HEALTH_LIVE, NULL, NULL);
    expect("HEAD", "/v2/health/ready", SELDON_ROUTE_HEALTH_READY, NULL, NULL);
    expect("GET", "/v2/models/iris", SELDON_ROUTE_MODEL_METADATA, "iris", NULL);
    expect("GET", "/v2/models/iris/versions/3", SELDON_ROUTE_MODEL_METADATA, "iris", "3");
    expect("GET", "/v2/models/iris/ready", SELDON_ROUTE_MODEL_READY, "iris", NULL);
    expect("GET", "/v2/models/iris/versions/3/ready", SELDON_ROUTE_MODEL_READY, "iris", "3");
    expect("POST", "/v2/models/iris_3/infer", SELDON_ROUTE_MODEL_INFER, "iris_3", NULL);
    expect("POST", "/v2/models/m/versions/v1/infer", SELDON_ROUTE_MODEL_INFER, "m", "v1");
    expect("POST", "/v2/repository/index", SELDON_ROUTE_REPO_INDEX, NULL, NULL);
    expect("POST", "/v2/repository/models/iris/load", SELDON_ROUTE_REPO_LOAD, "iris", NULL);
    expect("POST", "/v2/repository/models/iris/unload", SELDON_ROUTE_REPO_UNLOAD, "iris", NULL);
    expect("POST", "/v2/pipelines/p1/infer", SELDON_ROUTE_PIPELINE_INFER, "p1", NULL);
    expect("GET", "/v2/pipelines/p1/ready", SELDON_ROUTE_PIPELINE_READY, "p1", NULL);
}

Test(route, unknown_paths_and_wrong_methods)
{
    seldon_route r;
    const char *unknown[] = {"", "/", "/v1/models/x", "/v2/models", "/v2/models/x/predict",
                             "/v2/health", "/v2/repository/models/x", "/v2/a/b/c/d/e/f/g/h/i",
                             "v2/health/live"};
    size_t i;
    for (i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++)
        cr_assert_eq(parse(&r, "GET", unknown[i]), SELDON_ENOTFOUND, "%s", unknown[i]);
    cr_assert_eq(parse(&r, "GET", "/v2/models/iris/infer"), SELDON_EUNSUPPORTED);
    cr_assert(strstr(seldon_last_error(), "method GET not allowed; use POST") != NULL);
    cr_assert_eq(r.kind, SELDON_ROUTE_MODEL_INFER, "the route is known even when the method is not");
    cr_assert_eq(parse(&r, "POST", "/v2/health/live"), SELDON_EUNSUPPORTED);
    cr_assert_eq(parse(&r, "DELETE", "/v2/repository/index"), SELDON_EUNSUPPORTED);
}

Test(route, names_must_be_utf8_without_nul)
{
    seldon_route r;
    static const char nul_path[] = "/v2/models/add10\0evil/infer";
    expect("POST", "/v2/models/mod\xc3\xa9l/infer", SELDON_ROUTE_MODEL_INFER, "mod\xc3\xa9l", NULL);
    cr_assert_eq(parse(&r, "POST", "/v2/models/\xff\xfe/infer"), SELDON_EPARSE);
    cr_assert_str_eq(seldon_last_error(), "model_name: at byte 0: invalid UTF-8");
    cr_assert_eq(parse(&r, "GET", "/v2/models/m/versions/1\xc3/ready"), SELDON_EPARSE);
    cr_assert_str_eq(seldon_last_error(), "model_version: at byte 1: invalid UTF-8");
    cr_assert_eq(parse(&r, "POST", "/v2/pipelines/p\xed\xa0\x80/infer"), SELDON_EPARSE);
    cr_assert_str_eq(seldon_last_error(), "pipeline_name: at byte 1: invalid UTF-8");
    cr_assert_eq(seldon_route_parse(&r, "POST", 4, nul_path, sizeof(nul_path) - 1), SELDON_EPARSE);
    cr_assert_str_eq(seldon_last_error(),
                     "model_name: at byte 5: a NUL byte is not allowed in this string");
}
