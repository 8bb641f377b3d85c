/* Balancing, retries, ejection and table swaps, on a fake clock. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "seldon/router.h"

#define MS 1000000LL

static seldon_routes *table(const char *text)
{
    seldon_routes *rt = NULL;
    cr_assert_eq(seldon_routes_parse(&rt, text, strlen(text), "t"), 0, "%s", seldon_last_error());
    return rt;
}

static seldon_router_lb *lb_over(seldon_routes *rt, seldon_router_metrics *m)
{
    seldon_router_lb *lb = NULL;
    cr_assert_eq(seldon_router_lb_new(&lb, rt, m, 42), 0);
    seldon_routes_release(rt); /* the balancer holds its own reference */
    return lb;
}

static seldon_router_req *start(seldon_router_lb *lb, const char *route, int64_t now)
{
    seldon_router_req *req = NULL;
    cr_assert_eq(seldon_router_req_new(&req, lb, route, strlen(route), SELDON_ROUTER_HTTP, now), 0,
                 "%s", seldon_last_error());
    return req;
}

static const seldon_router_upstream *pick(seldon_router_req *req, int64_t now)
{
    const seldon_router_upstream *u = NULL;
    cr_assert_eq(seldon_router_pick(&u, req, now), 0, "%s", seldon_last_error());
    cr_assert_not_null(u);
    return u;
}

static int32_t end(seldon_router_req *req, int32_t outcome, int64_t now)
{
    int32_t retry = -1;
    cr_assert_eq(seldon_router_attempt_end(&retry, NULL, req, outcome, 1, now), 0, "%s",
                 seldon_last_error());
    return retry;
}

/* One whole request on route, ended with outcome; returns the upstream's port. */
static int one(seldon_router_lb *lb, const char *route, int32_t outcome, int64_t now)
{
    seldon_router_req *req = start(lb, route, now);
    int port = pick(req, now)->http_port;
    end(req, outcome, now);
    seldon_router_req_free(req);
    return port;
}

static const char *const TWO = "routes:\n"
                               "- name: iris\n"
                               "  upstreams:\n"
                               "  - {http: \"127.0.0.1:9001\", grpc: \"127.0.0.1:9101\"}\n"
                               "  - {http: \"127.0.0.1:9002\", grpc: \"127.0.0.1:9102\"}\n";

Test(lb, sequential_requests_spread_evenly)
{
    seldon_router_lb *lb = lb_over(table(TWO), NULL);
    int counts[2] = {0, 0}, i;
    for (i = 0; i < 20000; i++)
        counts[one(lb, "iris", SELDON_ROUTER_OK, i * MS) - 9001]++;
    cr_assert(counts[0] > 9500 && counts[1] > 9500, "%d / %d", counts[0], counts[1]);
    seldon_router_lb_free(lb);
}

Test(lb, concurrent_requests_go_to_the_least_loaded)
{
    seldon_router_lb *lb = lb_over(table(TWO), NULL);
    seldon_routes *rt = seldon_router_lb_routes(lb);
    const seldon_router_upstream *a = seldon_routes_upstream(rt, 0, 0),
                                 *b = seldon_routes_upstream(rt, 0, 1);
    seldon_router_req *reqs[100];
    const seldon_router_upstream *on[100];
    int i, finished = 0;
    for (i = 0; i < 100; i++) {
        reqs[i] = start(lb, "iris", 0);
        on[i] = pick(reqs[i], 0);
    }
    cr_assert_eq(seldon_router_lb_in_flight(lb, a), 50);
    cr_assert_eq(seldon_router_lb_in_flight(lb, b), 50);
    /* Finish ten on a. */
    for (i = 0; i < 100 && finished < 10; i++) {
        if (on[i] != a)
            continue;
        end(reqs[i], SELDON_ROUTER_OK, 1);
        seldon_router_req_free(reqs[i]);
        reqs[i] = NULL;
        finished++;
    }
    cr_assert_eq(seldon_router_lb_in_flight(lb, a), 40);
    /* The next ten all go to a. */
    for (i = 0; i < 10; i++) {
        seldon_router_req *r = start(lb, "iris", 2);
        cr_assert_eq(pick(r, 2), a);
        seldon_router_req_free(r);
    }
    cr_assert_eq(seldon_router_lb_in_flight(lb, a), 40);
    {
        int32_t fa = seldon_router_lb_in_flight(lb, a), fb = seldon_router_lb_in_flight(lb, b);
        int k;
        /* Held open: ten go to a, which evens the loads; then they stay within one. */
        seldon_router_req *held[30];
        for (k = 0; k < 30; k++) {
            const seldon_router_upstream *u;
            held[k] = start(lb, "iris", 2);
            u = pick(held[k], 2);
            if (k < 10)
                cr_assert_eq(u, a);
            else
                cr_assert_leq(
                    abs(seldon_router_lb_in_flight(lb, a) - seldon_router_lb_in_flight(lb, b)), 1);
        }
        for (k = 0; k < 30; k++)
            seldon_router_req_free(held[k]);
        for (k = 0; k < 200; k++) {
            seldon_router_req *r = start(lb, "iris", 2);
            const seldon_router_upstream *u = pick(r, 2);
            /* Always the one with fewer (or equal) in flight. */
            if (fa < fb)
                cr_assert_eq(u, a);
            else if (fb < fa)
                cr_assert_eq(u, b);
            if (u == a)
                fa++;
            else
                fb++;
            cr_assert_eq(seldon_router_lb_in_flight(lb, a), fa);
            cr_assert_eq(seldon_router_lb_in_flight(lb, b), fb);
            seldon_router_req_free(r); /* an open attempt ends as canceled */
            if (u == a)
                fa--;
            else
                fb--;
        }
    }
    for (i = 0; i < 100; i++)
        seldon_router_req_free(reqs[i]);
    cr_assert_eq(seldon_router_lb_in_flight(lb, a), 0);
    cr_assert_eq(seldon_router_lb_in_flight(lb, b), 0);
    seldon_router_lb_free(lb);
}

Test(lb, many_upstreams_power_of_two_choices)
{
    char text[8192];
    size_t o = 0;
    seldon_router_lb *lb;
    seldon_routes *rt;
    seldon_router_req *reqs[2000];
    int i, lo = 1 << 30, hi = 0, seen[32] = {0};
    o += (size_t)snprintf(text + o, sizeof(text) - o, "routes:\n- name: big\n  upstreams:\n");
    for (i = 0; i < 32; i++)
        o += (size_t)snprintf(text + o, sizeof(text) - o, "  - {http: \"127.0.0.1:%d\"}\n",
                              10000 + i);
    lb = lb_over(table(text), NULL);
    rt = seldon_router_lb_routes(lb);
    for (i = 0; i < 2000; i++) {
        reqs[i] = start(lb, "big", 0);
        seen[pick(reqs[i], 0)->http_port - 10000]++;
    }
    for (i = 0; i < 32; i++) {
        int f = seldon_router_lb_in_flight(lb, seldon_routes_upstream(rt, 0, (size_t)i));
        cr_assert_eq(f, seen[i]);
        lo = f < lo ? f : lo;
        hi = f > hi ? f : hi;
    }
    /* 62.5 each on average; two choices keep the spread small. */
    cr_assert_leq(hi - lo, 8, "spread %d..%d", lo, hi);
    for (i = 0; i < 2000; i++)
        seldon_router_req_free(reqs[i]);
    seldon_router_lb_free(lb);
}

static const char *const THREE = "defaults: {retries: 5}\n"
                                 "routes:\n"
                                 "- name: m\n"
                                 "  upstreams:\n"
                                 "  - {http: \"127.0.0.1:1\"}\n"
                                 "  - {http: \"127.0.0.1:2\"}\n"
                                 "  - {http: \"127.0.0.1:3\"}\n"
                                 "- name: one\n"
                                 "  retries: 1\n"
                                 "  upstreams:\n"
                                 "  - {http: \"127.0.0.1:1\"}\n"
                                 "  - {http: \"127.0.0.1:2\"}\n"
                                 "  - {http: \"127.0.0.1:3\"}\n";

Test(lb, retries_never_reuse_a_tried_upstream)
{
    seldon_router_lb *lb = lb_over(table(THREE), NULL);
    int k;
    for (k = 0; k < 50; k++) {
        seldon_router_req *req = start(lb, "m", 0);
        const seldon_router_upstream *u;
        int seen = 0;
        int32_t outcomes[3] = {SELDON_ROUTER_CONNECT_FAILED, SELDON_ROUTER_HTTP_5XX,
                               SELDON_ROUTER_RESET};
        int i;
        for (i = 0; i < 3; i++) {
            u = pick(req, 0);
            cr_assert_eq(seen & (1 << u->http_port), 0, "upstream %d tried twice", u->http_port);
            seen |= 1 << u->http_port;
            /* Retry while an untried upstream remains, though retries allow 5. */
            cr_assert_eq(end(req, outcomes[i], 0), i < 2);
        }
        cr_assert_eq(seldon_router_req_attempts(req), 3);
        cr_assert_eq(seldon_router_pick(&u, req, 0), SELDON_EUNAVAIL);
        cr_assert(strstr(seldon_last_error(), "no REST upstream left") != NULL);
        seldon_router_req_free(req);
    }
    seldon_router_lb_free(lb);
}

Test(lb, retry_conditions)
{
    seldon_router_lb *lb = lb_over(table(THREE), NULL);
    seldon_router_req *req;
    int32_t retry;
    int64_t deadline = -1;
    const seldon_router_upstream *u;

    /* The route's bound: one retry. */
    req = start(lb, "one", 0);
    pick(req, 0);
    cr_assert_eq(end(req, SELDON_ROUTER_GRPC_UNAVAILABLE, 0), 1);
    pick(req, 0);
    cr_assert_eq(end(req, SELDON_ROUTER_CONNECT_FAILED, 0), 0);
    seldon_router_req_free(req);

    /* Outcomes that are not retried. */
    {
        int32_t no[] = {SELDON_ROUTER_OK, SELDON_ROUTER_TIMEOUT, SELDON_ROUTER_CANCELED};
        size_t i;
        for (i = 0; i < 3; i++) {
            req = start(lb, "m", 0);
            pick(req, 0);
            cr_assert_eq(end(req, no[i], 0), 0, "outcome %d", no[i]);
            seldon_router_req_free(req);
        }
    }

    /* Not replayable: the daemon streamed a body it no longer holds. */
    req = start(lb, "m", 0);
    pick(req, 0);
    cr_assert_eq(seldon_router_attempt_end(&retry, &deadline, req, SELDON_ROUTER_HTTP_5XX, 0, 0),
                 0);
    cr_assert_eq(retry, 0);
    cr_assert_eq(deadline, 0);
    seldon_router_req_free(req);

    /* Misuse. */
    req = start(lb, "m", 0);
    cr_assert_eq(seldon_router_attempt_end(&retry, NULL, req, SELDON_ROUTER_OK, 1, 0),
                 SELDON_ESTATE);
    pick(req, 0);
    cr_assert_eq(seldon_router_pick(&u, req, 0), SELDON_ESTATE);
    cr_assert_eq(seldon_router_attempt_end(&retry, NULL, req, 99, 1, 0), SELDON_EINVAL);
    seldon_router_req_free(req);
    seldon_router_lb_free(lb);
}

Test(lb, deadline_from_the_route_timeout)
{
    seldon_router_lb *lb = lb_over(table("defaults: {timeoutMs: 1000}\n"
                                         "routes:\n"
                                         "- name: fast\n"
                                         "  timeoutMs: 40\n"
                                         "  upstreams: [{http: \"h:1\"}, {http: \"h:2\"}]\n"
                                         "- name: slow\n"
                                         "  upstreams: [{http: \"h:1\"}]\n"
                                         "- name: never\n"
                                         "  timeoutMs: 0\n"
                                         "  upstreams: [{http: \"h:1\"}]\n"),
                                   NULL);
    seldon_router_req *req = start(lb, "fast", 5 * MS);
    int32_t retry;
    int64_t deadline = 0;
    cr_assert_eq(seldon_router_req_deadline(req), 45 * MS);
    pick(req, 5 * MS);
    /* A retryable failure after the deadline is not retried. */
    cr_assert_eq(
        seldon_router_attempt_end(&retry, &deadline, req, SELDON_ROUTER_HTTP_5XX, 1, 45 * MS), 0);
    cr_assert_eq(retry, 0);
    cr_assert_eq(deadline, 45 * MS);
    seldon_router_req_free(req);
    req = start(lb, "slow", 0);
    cr_assert_eq(seldon_router_req_deadline(req), 1000 * MS);
    cr_assert_str_eq(seldon_router_req_route_name(req), "slow");
    cr_assert_eq(seldon_router_req_route(req), 1);
    seldon_router_req_free(req);
    req = start(lb, "never", 0);
    cr_assert_eq(seldon_router_req_deadline(req), 0);
    seldon_router_req_free(req);
    seldon_router_lb_free(lb);
}

Test(lb, unknown_route_and_protocol_without_address)
{
    seldon_router_lb *lb =
        lb_over(table("routes:\n- name: rest-only\n  upstreams: [{http: \"h:1\"}]\n"), NULL);
    seldon_router_req *req = NULL;
    const seldon_router_upstream *u;
    cr_assert_eq(seldon_router_req_new(&req, lb, "nope", 4, SELDON_ROUTER_HTTP, 0),
                 SELDON_ENOTFOUND);
    cr_assert_str_eq(seldon_last_error(), "no route for model \"nope\"");
    cr_assert_null(req);
    cr_assert_eq(seldon_router_req_new(&req, lb, "rest-only", 9, 7, 0), SELDON_EINVAL);
    cr_assert_eq(seldon_router_req_new(&req, lb, "rest-only", 9, SELDON_ROUTER_GRPC, 0), 0);
    cr_assert_eq(seldon_router_pick(&u, req, 0), SELDON_EUNAVAIL);
    cr_assert_str_eq(seldon_last_error(), "route \"rest-only\": no gRPC upstream left to try");
    seldon_router_req_free(req);
    seldon_router_lb_free(lb);
}

/* A and B; route "a" reaches A alone, "ab" both: health is per upstream, across routes. */
static const char *const EJECT =
    "defaults:\n"
    "  retries: 0\n"
    "  ejection: {consecutiveFailures: 3, baseMs: 100, maxMs: 250}\n"
    "routes:\n"
    "- name: a\n"
    "  upstreams: [{http: \"127.0.0.1:1\"}]\n"
    "- name: ab\n"
    "  upstreams: [{http: \"127.0.0.1:1\"}, {http: \"127.0.0.1:2\"}]\n";

static void fail_a(seldon_router_lb *lb, int n, int64_t now)
{
    int i;
    for (i = 0; i < n; i++)
        cr_assert_eq(one(lb, "a", SELDON_ROUTER_CONNECT_FAILED, now), 1);
}

static void all_to_b(seldon_router_lb *lb, int64_t now)
{
    int i;
    for (i = 0; i < 50; i++)
        cr_assert_eq(one(lb, "ab", SELDON_ROUTER_OK, now), 2, "pick %d at %lld ms", i,
                     (long long)(now / MS));
}

Test(lb, ejection_probe_and_recovery)
{
    seldon_router_lb *lb = lb_over(table(EJECT), NULL);
    const seldon_router_upstream *a = seldon_routes_upstream(seldon_router_lb_routes(lb), 0, 0);
    seldon_router_req *probe, *other;
    int64_t t = 1000 * MS;
    int i, got_a = 0;

    /* Two failures and a success: the count starts over, nothing is ejected. */
    fail_a(lb, 2, t);
    cr_assert_eq(one(lb, "a", SELDON_ROUTER_OK, t), 1);
    fail_a(lb, 2, t);
    cr_assert_eq(seldon_router_lb_ejected(lb, a, t), 0);
    /* The third in a row ejects A for base = 100 ms. */
    fail_a(lb, 1, t);
    cr_assert_eq(seldon_router_lb_ejected(lb, a, t), 1);
    cr_assert_eq(seldon_router_lb_ejected(lb, a, t + 99 * MS), 1);
    cr_assert_eq(seldon_router_lb_ejected(lb, a, t + 100 * MS), 0);
    all_to_b(lb, t + 50 * MS);

    /* Half-open at +100 ms: A takes one probe at a time. */
    t += 100 * MS;
    for (i = 0; i < 20 && !got_a; i++) {
        probe = start(lb, "ab", t);
        if (pick(probe, t)->http_port == 1)
            got_a = 1;
        else {
            end(probe, SELDON_ROUTER_OK, t);
            seldon_router_req_free(probe);
        }
    }
    cr_assert(got_a, "A never probed");
    other = start(lb, "ab", t);
    for (i = 0; i < 20; i++) {
        cr_assert_eq(pick(other, t)->http_port, 2, "a second probe went to A");
        end(other, SELDON_ROUTER_CANCELED, t);
        seldon_router_req_free(other);
        other = start(lb, "ab", t);
    }
    seldon_router_req_free(other);
    /* The probe fails: ejected again, twice as long (200 ms). */
    end(probe, SELDON_ROUTER_HTTP_5XX, t);
    seldon_router_req_free(probe);
    cr_assert_eq(seldon_router_lb_ejected(lb, a, t + 199 * MS), 1);
    cr_assert_eq(seldon_router_lb_ejected(lb, a, t + 200 * MS), 0);
    all_to_b(lb, t + 150 * MS);

    /* The next probe succeeds: A is back in rotation. */
    t += 200 * MS;
    cr_assert_eq(one(lb, "a", SELDON_ROUTER_OK, t), 1);
    cr_assert_eq(seldon_router_lb_ejected(lb, a, t), 0);
    {
        int counts[3] = {0, 0, 0};
        for (i = 0; i < 400; i++)
            counts[one(lb, "ab", SELDON_ROUTER_OK, t)]++;
        cr_assert(counts[1] > 150 && counts[2] > 150, "%d / %d", counts[1], counts[2]);
    }

    /* Third ejection soon after: 3 x 100 ms, capped at 250 ms. */
    t += 10 * MS;
    fail_a(lb, 3, t);
    cr_assert_eq(seldon_router_lb_ejected(lb, a, t + 249 * MS), 1);
    cr_assert_eq(seldon_router_lb_ejected(lb, a, t + 250 * MS), 0);
    t += 250 * MS;
    cr_assert_eq(one(lb, "a", SELDON_ROUTER_OK, t), 1);

    /* Healthy for the longest ejection (250 ms): the next ejection starts at base again. */
    t += 250 * MS;
    fail_a(lb, 3, t);
    cr_assert_eq(seldon_router_lb_ejected(lb, a, t + 99 * MS), 1);
    cr_assert_eq(seldon_router_lb_ejected(lb, a, t + 100 * MS), 0);
    seldon_router_lb_free(lb);
}

Test(lb, panic_when_every_upstream_is_ejected)
{
    seldon_router_lb *lb = lb_over(table(EJECT), NULL);
    const seldon_router_upstream *a = seldon_routes_upstream(seldon_router_lb_routes(lb), 0, 0);
    fail_a(lb, 3, 0);
    cr_assert_eq(seldon_router_lb_ejected(lb, a, 1), 1);
    /* Route "a" has only A: it is still tried rather than failing outright. */
    cr_assert_eq(one(lb, "a", SELDON_ROUTER_OK, 1), 1);
    /* That success does not cut the ejection short: "ab" still avoids A. */
    all_to_b(lb, 2);
    seldon_router_lb_free(lb);
}

Test(lb, ejection_disabled)
{
    seldon_router_lb *lb =
        lb_over(table("defaults: {ejection: {consecutiveFailures: 0}}\n"
                      "routes:\n- name: a\n  upstreams: [{http: \"127.0.0.1:1\"}]\n"),
                NULL);
    const seldon_router_upstream *a = seldon_routes_upstream(seldon_router_lb_routes(lb), 0, 0);
    fail_a(lb, 100, 0);
    cr_assert_eq(seldon_router_lb_ejected(lb, a, 0), 0);
    seldon_router_lb_free(lb);
}

Test(lb, swap_keeps_the_state_of_upstreams_that_stay)
{
    seldon_router_lb *lb = lb_over(table(EJECT), NULL);
    seldon_routes *old = seldon_router_lb_routes(lb);
    const seldon_router_upstream *a_old = seldon_routes_upstream(old, 0, 0);
    seldon_routes *next;
    seldon_router_req *inflight;
    const seldon_router_upstream *b_old, *u;
    seldon_routes_retain(old); /* to read it after the swap */
    b_old = seldon_routes_upstream(old, 1, 1);
    fail_a(lb, 3, 0);
    inflight = start(lb, "ab", 0);
    cr_assert_eq(pick(inflight, 0)->http_port, 2);
    cr_assert_eq(seldon_router_lb_in_flight(lb, b_old), 1);

    /* New table: A and B stay (under other routes), C is new. */
    next = table("defaults: {ejection: {consecutiveFailures: 3, baseMs: 100, maxMs: 250}}\n"
                 "routes:\n"
                 "- name: ab\n"
                 "  upstreams: [{http: \"127.0.0.1:2\"}, {http: \"127.0.0.1:1\"}]\n"
                 "- name: c\n"
                 "  upstreams: [{http: \"127.0.0.1:3\"}]\n");
    cr_assert_eq(seldon_router_lb_swap(lb, next), 0);
    cr_assert_eq(seldon_router_lb_routes(lb), next);
    seldon_routes_release(next);
    cr_assert_eq(seldon_router_lb_ejected(lb, a_old, 50 * MS), 1);
    cr_assert_eq(seldon_router_lb_in_flight(lb, b_old), 1);
    cr_assert_eq(seldon_router_lb_in_flight(lb, seldon_routes_upstream(next, 1, 0)), 0);
    /* The old route "a" is gone for new requests. */
    {
        seldon_router_req *r = NULL;
        cr_assert_eq(seldon_router_req_new(&r, lb, "a", 1, SELDON_ROUTER_HTTP, 0),
                     SELDON_ENOTFOUND);
    }
    /* A new request sees B loaded and A ejected: it goes to... B, since A is out. */
    {
        seldon_router_req *r = start(lb, "ab", 10 * MS);
        u = pick(r, 10 * MS);
        cr_assert_eq(u->http_port, 2);
        cr_assert_eq(seldon_router_lb_in_flight(lb, b_old), 2);
        end(r, SELDON_ROUTER_OK, 10 * MS);
        seldon_router_req_free(r);
    }
    /* The request from before the swap finishes on its own table and still counts. */
    cr_assert_str_eq(seldon_router_req_route_name(inflight), "ab");
    end(inflight, SELDON_ROUTER_OK, 20 * MS);
    cr_assert_eq(seldon_router_lb_in_flight(lb, b_old), 0);
    seldon_router_req_free(inflight);

    /* A swap that drops A and brings it back starts A afresh. */
    next = table("routes:\n- name: b\n  upstreams: [{http: \"127.0.0.1:2\"}]\n");
    cr_assert_eq(seldon_router_lb_swap(lb, next), 0);
    seldon_routes_release(next);
    next = table(EJECT);
    cr_assert_eq(seldon_router_lb_swap(lb, next), 0);
    seldon_routes_release(next);
    cr_assert_eq(seldon_router_lb_ejected(lb, a_old, 50 * MS), 0);
    seldon_routes_release(old);
    seldon_router_lb_free(lb);
}

Test(lb, the_old_table_lives_while_requests_use_it)
{
    seldon_router_lb *lb = lb_over(table(TWO), NULL);
    seldon_router_req *req = start(lb, "iris", 0);
    const seldon_router_upstream *u = pick(req, 0);
    cr_assert_eq(seldon_router_lb_swap(lb, seldon_routes_retain(seldon_router_lb_routes(lb))), 0);
    seldon_routes_release(seldon_router_lb_routes(lb));
    {
        seldon_routes *next = table("routes: []\n");
        cr_assert_eq(seldon_router_lb_swap(lb, next), 0);
        seldon_routes_release(next);
    }
    /* u points into the first table, which the request keeps alive (ASan checks this). */
    cr_assert(u->http_port == 9001 || u->http_port == 9002);
    cr_assert_str_eq(u->grpc_host, "127.0.0.1");
    end(req, SELDON_ROUTER_OK, 1);
    seldon_router_req_free(req);
    seldon_router_lb_free(lb);
}

static int contains(const seldon_buf *b, const char *needle)
{
    return memmem(b->data, b->len, needle, strlen(needle)) != NULL;
}

Test(lb, metrics)
{
    seldon_metrics *reg = NULL;
    seldon_router_metrics *m = NULL;
    seldon_router_lb *lb;
    seldon_router_req *req;
    seldon_buf text = SELDON_BUF_INIT;
    int i;
    cr_assert_eq(seldon_metrics_new(&reg), 0);
    cr_assert_eq(seldon_router_metrics_new(&m, reg), 0);
    lb = lb_over(table(EJECT), m);
    /* One request failed (retries: 0), answered 503; three failures that eject A. */
    req = start(lb, "ab", 0);
    pick(req, 0);
    cr_assert_eq(end(req, SELDON_ROUTER_CONNECT_FAILED, 0), 0);
    seldon_router_req_finish(req, 503);
    seldon_router_req_free(req);
    fail_a(lb, 3, 0);
    for (i = 0; i < 3; i++) {
        req = start(lb, "ab", MS);
        pick(req, MS);
        end(req, SELDON_ROUTER_OK, 3 * MS);
        seldon_router_req_finish(req, 200);
        seldon_router_req_free(req);
    }
    seldon_series_add(seldon_router_metrics_connections(m, "downstream"), 2);
    cr_assert_eq(seldon_metrics_render(&text, reg), 0);
    cr_assert(contains(&text, "seldon_router_requests_total{route=\"ab\",code=\"200\"} 3"), "%.*s",
              (int)text.len, (const char *)text.data);
    cr_assert(contains(&text, "seldon_router_requests_total{route=\"ab\",code=\"503\"} 1"));
    cr_assert(contains(&text, "seldon_router_ejections_total{upstream=\"127.0.0.1:1|\"} 1"));
    cr_assert(contains(&text, "seldon_router_upstream_seconds_count{route=\"ab\"} 4"));
    cr_assert(contains(&text, "seldon_router_open_connections{side=\"downstream\"} 2"));
    seldon_buf_free(&text);
    seldon_router_lb_free(lb);

    /* Retries are counted by route. */
    lb = lb_over(table(THREE), m);
    req = start(lb, "m", 0);
    pick(req, 0);
    cr_assert_eq(end(req, SELDON_ROUTER_RESET, 0), 1);
    pick(req, 0);
    end(req, SELDON_ROUTER_OK, 0);
    seldon_router_req_finish(req, 200);
    seldon_router_req_free(req);
    cr_assert_eq(seldon_metrics_render(&text, reg), 0);
    cr_assert(contains(&text, "seldon_router_retries_total{route=\"m\"} 1"), "%.*s", (int)text.len,
              (const char *)text.data);
    seldon_buf_free(&text);
    seldon_router_lb_free(lb);
    seldon_router_metrics_free(m);
    seldon_metrics_free(reg);
}

Test(lb, request_ids)
{
    seldon_router_lb *lb = lb_over(table(TWO), NULL);
    char a[37], b[37];
    size_t i;
    seldon_router_lb_request_id(a, lb);
    seldon_router_lb_request_id(b, lb);
    cr_assert_eq(strlen(a), 36);
    cr_assert_str_neq(a, b);
    for (i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            cr_assert_eq(a[i], '-', "%s", a);
        else
            cr_assert(strchr("0123456789abcdef", a[i]) != NULL, "%s", a);
    }
    cr_assert_eq(a[14], '4', "%s", a);
    cr_assert(strchr("89ab", a[19]) != NULL, "%s", a);
    seldon_router_lb_free(lb);
}

Test(lb, requests_refused_before_routing_are_counted)
{
    seldon_metrics *reg = NULL;
    seldon_router_metrics *m = NULL;
    seldon_buf text = SELDON_BUF_INIT;
    cr_assert_eq(seldon_metrics_new(&reg), 0);
    cr_assert_eq(seldon_router_metrics_new(&m, reg), 0);
    seldon_router_metrics_request(m, "", 404);
    seldon_router_metrics_request(m, "", 404);
    seldon_router_metrics_request(NULL, "", 404);
    cr_assert_eq(seldon_metrics_render(&text, reg), 0);
    cr_assert(contains(&text, "seldon_router_requests_total{route=\"\",code=\"404\"} 2"), "%.*s",
              (int)text.len, (const char *)text.data);
    seldon_buf_free(&text);
    seldon_router_metrics_free(m);
    seldon_metrics_free(reg);
}
