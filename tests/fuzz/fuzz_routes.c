/*
 * libFuzzer target for the routes file. Whatever parses must serialise,
 * parse back to an equal table and serialise to the same text; every route
 * must be found by its name; a refusal must say why. The same bytes are
 * also tried as a REST path and a seldon-model header.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "seldon/router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
    fprintf(stderr, "fuzz property broken: %s (%s)\n", what, seldon_last_error());
    abort();
}

static void check_table(seldon_routes *rt, const uint8_t *data, size_t size)
{
    seldon_buf one = SELDON_BUF_INIT, two = SELDON_BUF_INIT;
    seldon_routes *back = NULL;
    seldon_router_lb *lb = NULL;
    size_t i, idx;
    if (seldon_routes_serialize(&one, rt) != 0)
        fail("serialize");
    if (seldon_routes_parse(&back, (const char *)one.data, one.len, "saved") != 0)
        fail("our own output does not parse");
    if (!seldon_routes_equal(rt, back))
        fail("parse -> serialize -> parse differs");
    if (seldon_routes_serialize(&two, back) != 0 || one.len != two.len ||
        memcmp(one.data, two.data, one.len) != 0)
        fail("serialize is not stable");
    if (seldon_router_lb_new(&lb, rt, NULL, 1) != 0)
        fail("lb_new");
    for (i = 0; i < seldon_routes_count(rt); i++) {
        const char *name = seldon_routes_name(rt, i);
        seldon_router_req *req = NULL;
        const seldon_router_upstream *u;
        int32_t retry = 1;
        if (seldon_routes_find(&idx, rt, name, strlen(name)) != 0 || idx != i)
            fail("a route is not found by its name");
        if (seldon_routes_upstream_count(rt, i) == 0 && seldon_routes_candidate_count(rt, i) == 0)
            fail("a route without upstreams or candidates");
        {
            /* The experiment's decision, with the input as an x-seldon-route value. */
            size_t to;
            int64_t mirror;
            int32_t sticky;
            uint64_t rnd = size >= 8 ? (uint64_t)data[0] << 56 | (uint64_t)data[size - 1] : size;
            if (seldon_routes_decide(&to, &mirror, &sticky, rt, i, (const char *)data, size, rnd) !=
                0)
                fail("decide");
            if (to >= seldon_routes_count(rt) || seldon_routes_upstream_count(rt, to) == 0)
                fail("decided for a route without upstreams");
            if (mirror >= 0 && ((size_t)mirror >= seldon_routes_count(rt) ||
                                seldon_routes_upstream_count(rt, (size_t)mirror) == 0))
                fail("mirrored to a route without upstreams");
            if (sticky && seldon_routes_candidate_count(rt, i) == 0)
                fail("sticky without candidates");
        }
        if (seldon_router_req_new_split(&req, lb, name, strlen(name), (const char *)data, size,
                                        SELDON_ROUTER_HTTP, 0) != 0)
            fail("req_new");
        while (retry && seldon_router_pick(&u, req, 0) == 0) {
            if (u->http == NULL || u->http_port == 0)
                fail("picked an upstream without a REST address");
            if (seldon_router_attempt_end(&retry, NULL, req, SELDON_ROUTER_CONNECT_FAILED, 1, 0) !=
                0)
                fail("attempt_end");
        }
        seldon_router_req_free(req);
    }
    seldon_router_lb_free(lb);
    seldon_buf_free(&one);
    seldon_buf_free(&two);
    seldon_routes_release(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    seldon_routes *rt = NULL;
    char name[SELDON_ROUTES_NAME_MAX + 1];
    size_t len;
    int rc = seldon_routes_parse(&rt, (const char *)data, size, "fuzz");
    if (rc == 0) {
        check_table(rt, data, size);
        seldon_routes_release(rt);
    } else if (seldon_last_error()[0] == '\0' || rt != NULL) {
        fail("a refusal without a message");
    }
    rc = seldon_router_route_name(name, &len, sizeof(name), SELDON_ROUTER_HTTP, NULL, 0,
                                  (const char *)data, size);
    if (rc == 0 && (len == 0 || strlen(name) > len))
        fail("route name from a path");
    rc = seldon_router_route_name(name, &len, sizeof(name), SELDON_ROUTER_GRPC, (const char *)data,
                                  size, NULL, 0);
    if (rc == 0 && len == 0)
        fail("route name from a header");
    return 0;
}
