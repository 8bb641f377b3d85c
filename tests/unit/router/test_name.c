/* Which route a request takes, and the statuses that answer router errors. */
#include <criterion/criterion.h>
#include <string.h>

#include "seldon/router.h"

static int name_of(char *out, size_t cap, int32_t protocol, const char *header, const char *path)
{
    size_t len = 12345;
    int rc = seldon_router_route_name(out, &len, cap, protocol, header, header ? strlen(header) : 0,
                                      path, path ? strlen(path) : 0);
    if (rc == 0)
        cr_assert_eq(len, strlen(out));
    return rc;
}

static void derives(const char *path, const char *want)
{
    char out[SELDON_ROUTES_NAME_MAX + 1];
    cr_assert_eq(name_of(out, sizeof(out), SELDON_ROUTER_HTTP, NULL, path), 0, "%s: %s", path,
                 seldon_last_error());
    cr_assert_str_eq(out, want, "%s", path);
}

static void underivable(const char *path)
{
    char out[64];
    cr_assert_eq(name_of(out, sizeof(out), SELDON_ROUTER_HTTP, NULL, path), SELDON_ENOTFOUND, "%s",
                 path);
    cr_assert(strstr(seldon_last_error(), "no seldon-model header") != NULL);
}

Test(name, from_rest_paths)
{
    derives("/v2/models/iris/infer", "iris");
    derives("/v2/models/iris/versions/2/infer", "iris");
    derives("/v2/models/iris/ready", "iris");
    derives("/v2/models/iris", "iris");
    derives("/v2/models/iris/", "iris");
    derives("/v2/models/iris?x=1", "iris");
    derives("/v2/models/iris/infer?timeout=3", "iris");
    derives("/v2/models/iris_3/infer", "iris_3");
    derives("/v2/pipelines/tfsimples/infer", "tfsimples.pipeline");
    derives("/v2/pipelines/tfsimples/ready", "tfsimples.pipeline");
    derives("/v2/pipelines/p", "p.pipeline");
    underivable("/v2/models/");
    underivable("/v2/models");
    underivable("/v2/models//infer");
    underivable("/v2/pipelines/");
    underivable("/v2/health/live");
    underivable("/v2");
    underivable("/");
    underivable("");
    underivable("/v1/models/iris:predict");
    underivable("/v2/modelsx/iris/infer");
}

Test(name, header_wins)
{
    char out[64];
    cr_assert_eq(name_of(out, sizeof(out), SELDON_ROUTER_HTTP, "other", "/v2/models/iris/infer"),
                 0);
    cr_assert_str_eq(out, "other");
    cr_assert_eq(name_of(out, sizeof(out), SELDON_ROUTER_HTTP, " p.pipeline\t", "/x"), 0);
    cr_assert_str_eq(out, "p.pipeline");
    cr_assert_eq(name_of(out, sizeof(out), SELDON_ROUTER_GRPC, "iris",
                         "/inference.GRPCInferenceService/ModelInfer"),
                 0);
    cr_assert_str_eq(out, "iris");
    /* Present but empty is an error, not a fallback to the path. */
    cr_assert_eq(name_of(out, sizeof(out), SELDON_ROUTER_HTTP, "  ", "/v2/models/iris/infer"),
                 SELDON_EINVAL);
    cr_assert_str_eq(seldon_last_error(), "the seldon-model header is empty");
}

Test(name, grpc_needs_the_header)
{
    char out[64];
    cr_assert_eq(name_of(out, sizeof(out), SELDON_ROUTER_GRPC, NULL,
                         "/inference.GRPCInferenceService/ModelInfer"),
                 SELDON_EINVAL);
    cr_assert(strstr(seldon_last_error(), "gRPC call needs the seldon-model metadata") != NULL,
              "%s", seldon_last_error());
}

Test(name, too_long)
{
    char out[8], big[SELDON_ROUTES_NAME_MAX + 1], header[300];
    cr_assert_eq(name_of(out, sizeof(out), SELDON_ROUTER_HTTP, "12345678", NULL), SELDON_ETOOBIG);
    cr_assert_eq(name_of(out, sizeof(out), SELDON_ROUTER_HTTP, "1234567", NULL), 0);
    /* A pipeline's suffix counts. */
    cr_assert_eq(name_of(out, sizeof(out), SELDON_ROUTER_HTTP, NULL, "/v2/pipelines/p/infer"),
                 SELDON_ETOOBIG);
    memset(header, 'a', 254);
    header[254] = '\0';
    cr_assert_eq(name_of(big, sizeof(big), SELDON_ROUTER_HTTP, header, NULL), SELDON_ETOOBIG);
    header[253] = '\0';
    cr_assert_eq(name_of(big, sizeof(big), SELDON_ROUTER_HTTP, header, NULL), 0);
}

Test(name, statuses)
{
    int32_t http = 0, grpc = 0;
    seldon_router_status(&http, &grpc, SELDON_ENOTFOUND);
    cr_assert_eq(http, 404);
    cr_assert_eq(grpc, 5);
    seldon_router_status(&http, &grpc, SELDON_EINVAL);
    cr_assert_eq(http, 400);
    cr_assert_eq(grpc, 3);
    seldon_router_status(&http, &grpc, SELDON_EUNAVAIL);
    cr_assert_eq(http, 503);
    cr_assert_eq(grpc, 14);
    seldon_router_status(&http, &grpc, SELDON_ETIMEDOUT);
    cr_assert_eq(http, 504);
    cr_assert_eq(grpc, 4);
    seldon_router_status(&http, NULL, SELDON_ETOOBIG);
    cr_assert_eq(http, 431);
    seldon_router_status(NULL, &grpc, SELDON_ENOMEM);
    cr_assert_eq(grpc, 13);
}

Test(name, outcomes)
{
    cr_assert_eq(seldon_router_outcome(200, -1), SELDON_ROUTER_OK);
    cr_assert_eq(seldon_router_outcome(404, -1), SELDON_ROUTER_OK);
    cr_assert_eq(seldon_router_outcome(500, -1), SELDON_ROUTER_HTTP_5XX);
    cr_assert_eq(seldon_router_outcome(503, -1), SELDON_ROUTER_HTTP_5XX);
    cr_assert_eq(seldon_router_outcome(200, 14), SELDON_ROUTER_GRPC_UNAVAILABLE);
    cr_assert_eq(seldon_router_outcome(200, 5), SELDON_ROUTER_OK);
    cr_assert_eq(seldon_router_outcome(200, 0), SELDON_ROUTER_OK);
}
