/* Every allocation failure in the router's calls is reported, never a crash or a leak. */
#include <criterion/criterion.h>
#include <string.h>

#include "core/core.h"
#include "seldon/router.h"

static const char *const TEXT = "defaults: {retries: 2, ejection: {consecutiveFailures: 1}}\n"
                                "routes:\n"
                                "- name: iris\n"
                                "  timeoutMs: 40\n"
                                "  upstreams:\n"
                                "  - {http: \"127.0.0.1:9999\", grpc: \"127.0.0.1:9998\"}\n"
                                "  - {http: \"[::1]:9989\"}\n"
                                "- name: p.pipeline\n"
                                "  upstreams: [{grpc: \"localhost:9010\"}]\n";

/* Parse, write, balance, swap: returns the first failure. */
static int run(seldon_metrics *reg)
{
    seldon_routes *rt = NULL, *next = NULL;
    seldon_router_metrics *m = NULL;
    seldon_router_lb *lb = NULL;
    seldon_router_req *req = NULL;
    const seldon_router_upstream *u;
    seldon_buf out = SELDON_BUF_INIT;
    int32_t retry;
    int rc;
    if ((rc = seldon_routes_parse(&rt, TEXT, strlen(TEXT), "t")) != 0)
        goto out;
    if ((rc = seldon_routes_serialize(&out, rt)) != 0)
        goto out;
    if ((rc = seldon_routes_parse(&next, (const char *)out.data, out.len, "t")) != 0)
        goto out;
    if ((rc = seldon_router_metrics_new(&m, reg)) != 0)
        goto out;
    if ((rc = seldon_router_lb_new(&lb, rt, m, 1)) != 0)
        goto out;
    if ((rc = seldon_router_req_new(&req, lb, "iris", 4, SELDON_ROUTER_HTTP, 0)) != 0)
        goto out;
    if ((rc = seldon_router_pick(&u, req, 0)) != 0)
        goto out;
    if ((rc = seldon_router_lb_swap(lb, next)) != 0)
        goto out;
    if ((rc = seldon_router_attempt_end(&retry, NULL, req, SELDON_ROUTER_RESET, 1, 0)) != 0)
        goto out;
    seldon_router_req_finish(req, 200);
out:
    seldon_router_req_free(req);
    seldon_router_lb_free(lb);
    seldon_router_metrics_free(m);
    seldon_routes_release(rt);
    seldon_routes_release(next);
    seldon_buf_free(&out);
    return rc;
}

Test(router_alloc, every_failure_is_reported)
{
    int64_t n;
    int done = 0;
    for (n = 0; n < 2000 && !done; n++) {
        seldon_metrics *reg = NULL;
        int rc;
        cr_assert_eq(seldon_metrics_new(&reg), 0);
        sdn_alloc_fail_after(n);
        rc = run(reg);
        sdn_alloc_fail_after(-1);
        cr_assert(rc == 0 || rc == SELDON_ENOMEM, "n=%lld: rc %d: %s", (long long)n, rc,
                  seldon_last_error());
        done = rc == 0;
        seldon_metrics_free(reg);
    }
    cr_assert(done, "every allocation succeeded within the sweep");
}
