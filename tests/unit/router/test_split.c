/* Experiments in the route table: the decision (weights, sticky, mirror), the file format. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router/router.h" /* the builder's internal calls, for the scheduler's use */
#include "seldon/router.h"

static seldon_routes *table(const char *text)
{
    seldon_routes *rt = NULL;
    cr_assert_eq(seldon_routes_parse(&rt, text, strlen(text), "t"), 0, "%s", seldon_last_error());
    return rt;
}

static const char *const AB =
    "routes:\n"
    "- name: iris\n"
    "  candidates:\n"
    "  - {name: iris, weight: 75}\n"
    "  - {name: iris2, weight: 25}\n"
    "  mirror: {name: iris3, percent: 10}\n"
    "  upstreams:\n"
    "  - {http: \"127.0.0.1:1001\", version: 1}\n"
    "- name: iris2\n"
    "  upstreams:\n"
    "  - {http: \"127.0.0.1:1002\", grpc: \"127.0.0.1:2002\", version: 3}\n"
    "- name: iris3\n"
    "  upstreams: [{http: \"127.0.0.1:1003\"}]\n"
    "- name: ab.experiment\n"
    "  candidates: [{name: iris, weight: 1}, {name: iris2, weight: 1}]\n";

static size_t idx(const seldon_routes *rt, const char *name)
{
    size_t i = 99;
    cr_assert_eq(seldon_routes_find(&i, rt, name, strlen(name)), 0, "%s", name);
    return i;
}

Test(split, parses_and_round_trips)
{
    seldon_routes *rt = table(AB), *back = NULL;
    seldon_buf b = SELDON_BUF_INIT;
    size_t r, to;
    uint32_t w, pct;
    r = idx(rt, "iris");
    cr_assert_eq(seldon_routes_candidate_count(rt, r), 2);
    cr_assert_eq(seldon_routes_candidate(&to, &w, rt, r, 1), 0);
    cr_assert_eq(to, idx(rt, "iris2"));
    cr_assert_eq(w, 25);
    cr_assert_eq(seldon_routes_mirror(&to, &pct, rt, r), 0);
    cr_assert_eq(to, idx(rt, "iris3"));
    cr_assert_eq(pct, 10);
    cr_assert_eq(seldon_routes_upstream_version(rt, idx(rt, "iris2"), 0), 3);
    cr_assert_eq(seldon_routes_upstream_version(rt, idx(rt, "iris3"), 0), 0);
    cr_assert_eq(seldon_routes_upstream_count(rt, idx(rt, "ab.experiment")), 0);
    cr_assert_eq(seldon_routes_mirror(&to, &pct, rt, idx(rt, "iris2")), SELDON_ENOTFOUND);
    cr_assert_eq(seldon_routes_serialize(&b, rt), 0);
    cr_assert_eq(seldon_routes_parse(&back, (const char *)b.data, b.len, "back"), 0, "%s\n%.*s",
                 seldon_last_error(), (int)b.len, (const char *)b.data);
    cr_assert(seldon_routes_equal(rt, back));
    seldon_buf_free(&b);
    seldon_routes_release(back);
    seldon_routes_release(rt);
}

static void refused(const char *text, const char *needle)
{
    seldon_routes *rt = NULL;
    cr_assert_eq(seldon_routes_parse(&rt, text, strlen(text), "t"), SELDON_EPARSE, "%s", text);
    cr_assert(strstr(seldon_last_error(), needle) != NULL, "%s", seldon_last_error());
}

Test(split, bad_tables_name_the_field)
{
    refused("routes:\n- name: e.experiment\n  candidates: [{name: nope, weight: 1}]\n",
            "candidate \"nope\" is not a route");
    refused("routes:\n- name: a\n  upstreams: [{http: \"127.0.0.1:1\"}]\n"
            "- name: e.experiment\n  candidates: [{name: a, weight: 0}]\n",
            "weights add up to 0");
    refused("routes:\n- name: a\n  upstreams: [{http: \"127.0.0.1:1\"}]\n"
            "- name: e.experiment\n  candidates: [{name: a, weight: 1}, {name: a, weight: 2}]\n",
            "routes[1].candidates[1]: duplicate candidate \"a\"");
    refused("routes:\n- name: a\n  upstreams: [{http: \"127.0.0.1:1\"}]\n"
            "  mirror: {name: a, percent: 101}\n",
            "routes[0].mirror.percent");
    refused("routes:\n- name: a\n  upstreams: [{http: \"127.0.0.1:1\"}]\n"
            "  mirror: {name: a}\n",
            "needs name and percent");
    refused("routes:\n- name: a\n  upstreams: [{http: \"127.0.0.1:1\"}]\n"
            "- name: e.experiment\n  candidates: [{name: a, weight: 1}]\n"
            "- name: f.experiment\n  candidates: [{name: e.experiment, weight: 1}]\n",
            "has no upstreams of its own");
    refused("routes:\n- name: a\n  upstreams: [{http: \"127.0.0.1:1\", version: x}]\n",
            "routes[0].upstreams[0].version");
}

Test(split, weights_are_followed)
{
    seldon_routes *rt = table(AB);
    size_t r = idx(rt, "iris"), iris2 = idx(rt, "iris2"), out;
    uint64_t x = 12345;
    int n2 = 0, i;
    for (i = 0; i < 100000; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        cr_assert_eq(seldon_routes_decide(&out, NULL, NULL, rt, r, NULL, 0, x), 0);
        n2 += out == iris2;
    }
    cr_assert(n2 > 24500 && n2 < 25500, "%d of 100000 to the 25%% candidate", n2);
    /* The extremes of the random input land on the first and the last candidate. */
    seldon_routes_decide(&out, NULL, NULL, rt, r, NULL, 0, 0);
    cr_assert_eq(out, r);
    seldon_routes_decide(&out, NULL, NULL, rt, r, NULL, 0, UINT64_MAX);
    cr_assert_eq(out, iris2);
    seldon_routes_release(rt);
}

Test(split, sticky_header_names_a_candidate)
{
    seldon_routes *rt = table(AB);
    size_t r = idx(rt, "iris"), iris2 = idx(rt, "iris2"), out;
    int32_t sticky = 0;
    static const char *const to2[] = {":iris2_3:", ":iris2:", ":x_1: :iris2_1:", ":iris2_12:,:y:"};
    static const char *const not_sticky[] = {":iris22_1:", "iris2",  ":iris2_:", ":iris2_1",
                                             ":iris2_a:",  ":ris2:", ""};
    size_t i;
    for (i = 0; i < sizeof(to2) / sizeof(to2[0]); i++) {
        /* random 0 would pick the first candidate: the header wins */
        cr_assert_eq(seldon_routes_decide(&out, NULL, &sticky, rt, r, to2[i], strlen(to2[i]), 0),
                     0);
        cr_assert_eq(out, iris2, "%s", to2[i]);
        cr_assert_eq(sticky, 1);
    }
    for (i = 0; i < sizeof(not_sticky) / sizeof(not_sticky[0]); i++) {
        seldon_routes_decide(&out, NULL, &sticky, rt, r, not_sticky[i], strlen(not_sticky[i]), 0);
        cr_assert_eq(out, r, "%s", not_sticky[i]);
        cr_assert_eq(sticky, 0, "%s", not_sticky[i]);
    }
    /* the default itself is a candidate: ":iris_1:" pins it even when the draw says iris2 */
    seldon_routes_decide(&out, NULL, &sticky, rt, r, ":iris_1:", 8, UINT64_MAX);
    cr_assert_eq(out, r);
    cr_assert_eq(sticky, 1);
    /* a route without candidates ignores the header */
    seldon_routes_decide(&out, NULL, &sticky, rt, iris2, ":iris_1:", 8, 0);
    cr_assert_eq(out, iris2);
    seldon_routes_release(rt);
}

Test(split, mirror_takes_its_percent)
{
    seldon_routes *rt = table(AB);
    size_t r = idx(rt, "iris"), iris3 = idx(rt, "iris3"), out;
    int64_t mirror;
    uint64_t x = 99;
    int copies = 0, i;
    for (i = 0; i < 100000; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        seldon_routes_decide(&out, &mirror, NULL, rt, r, NULL, 0, x);
        if (mirror >= 0) {
            cr_assert_eq((size_t)mirror, iris3);
            copies++;
        }
    }
    cr_assert(copies > 9500 && copies < 10500, "%d copies of 100000 at 10%%", copies);
    seldon_routes_decide(&out, &mirror, NULL, rt, idx(rt, "iris2"), NULL, 0, x);
    cr_assert_eq(mirror, -1);
    seldon_routes_release(rt);
}

Test(split, requests_follow_the_decision)
{
    seldon_routes *rt = table(AB);
    seldon_router_lb *lb = NULL;
    seldon_router_req *req = NULL, *m = NULL;
    const seldon_router_upstream *u = NULL;
    char tag[64];
    size_t len = 0;
    int32_t retry;
    int i, n2 = 0, copies = 0;
    cr_assert_eq(seldon_router_lb_new(&lb, rt, NULL, 7), 0);
    seldon_routes_release(rt);
    for (i = 0; i < 4000; i++) {
        cr_assert_eq(
            seldon_router_req_new_split(&req, lb, "iris", 4, NULL, 0, SELDON_ROUTER_HTTP, 0), 0,
            "%s", seldon_last_error());
        cr_assert_eq(seldon_router_req_split(req), 1);
        cr_assert_eq(seldon_router_req_tag(tag, &len, sizeof(tag), req), SELDON_ESTATE);
        cr_assert_eq(seldon_router_pick(&u, req, 0), 0);
        cr_assert_eq(seldon_router_req_tag(tag, &len, sizeof(tag), req), 0);
        if (u->http_port == 1002) {
            n2++;
            cr_assert_str_eq(tag, "iris2_3");
            cr_assert_eq(seldon_router_req_version(req), 3);
        } else {
            cr_assert_str_eq(tag, "iris_1");
            cr_assert_str_eq(seldon_router_req_route_name(req), "iris");
        }
        if (seldon_router_req_mirror_new(&m, req, 0) == 0) {
            cr_assert_eq(seldon_router_req_mirrored(req), 1);
            copies++;
            cr_assert_eq(seldon_router_pick(&u, m, 0), 0);
            cr_assert_eq(u->http_port, 1003);
            cr_assert_eq(seldon_router_req_tag(tag, &len, sizeof(tag), m), 0);
            cr_assert_str_eq(tag, "iris3");
            cr_assert_eq(seldon_router_attempt_end(&retry, NULL, m, SELDON_ROUTER_HTTP_5XX, 1, 0),
                         0);
            cr_assert_eq(retry, 0); /* a copy is never retried */
            seldon_router_req_free(m);
        } else {
            cr_assert_null(m);
            cr_assert_eq(seldon_router_req_mirrored(req), 0);
        }
        seldon_router_attempt_end(&retry, NULL, req, SELDON_ROUTER_OK, 1, 0);
        seldon_router_req_free(req);
    }
    cr_assert(n2 > 850 && n2 < 1150, "%d of 4000", n2);
    cr_assert(copies > 300 && copies < 500, "%d copies of 4000", copies);
    /* sticky through the balancer; a plain route stays plain */
    cr_assert_eq(
        seldon_router_req_new_split(&req, lb, "iris", 4, ":iris2_3:", 9, SELDON_ROUTER_GRPC, 0), 0);
    cr_assert_eq(seldon_router_pick(&u, req, 0), 0);
    cr_assert_eq(u->grpc_port, 2002);
    seldon_router_req_free(req);
    cr_assert_eq(
        seldon_router_req_new_split(&req, lb, "iris2", 5, ":iris_1:", 8, SELDON_ROUTER_HTTP, 0), 0);
    cr_assert_eq(seldon_router_req_split(req), 0);
    cr_assert_eq(seldon_router_req_mirror_new(&m, req, 0), SELDON_ENOTFOUND);
    seldon_router_req_free(req);
    /* an experiment without a default of its own */
    cr_assert_eq(
        seldon_router_req_new_split(&req, lb, "ab.experiment", 13, NULL, 0, SELDON_ROUTER_HTTP, 0),
        0);
    cr_assert_eq(seldon_router_pick(&u, req, 0), 0);
    cr_assert(u->http_port == 1001 || u->http_port == 1002);
    seldon_router_req_free(req);
    cr_assert_eq(seldon_router_req_new_split(&req, lb, "nope", 4, NULL, 0, SELDON_ROUTER_HTTP, 0),
                 SELDON_ENOTFOUND);
    seldon_router_lb_free(lb);
}

Test(split, builder_checks_candidates)
{
    seldon_routes_builder *b = NULL;
    seldon_routes *rt = NULL;
    cr_assert_eq(seldon_routes_builder_new(&b, NULL), 0);
    cr_assert_eq(seldon_routes_builder_add_route(b, "m", -1, -1), 0);
    cr_assert_eq(seldon_routes_builder_add_version(b, "127.0.0.1:1", NULL, 2), 0);
    cr_assert_eq(seldon_routes_builder_add_route(b, "e.experiment", -1, -1), 0);
    cr_assert_eq(seldon_routes_builder_add_candidate(b, "m", 1), 0);
    cr_assert_eq(seldon_routes_builder_add_candidate(b, "m", 1), SELDON_EEXIST);
    cr_assert_eq(seldon_routes_builder_set_mirror(b, "ghost", 5), 0);
    cr_assert_eq(seldon_routes_builder_finish(&rt, b), SELDON_EPARSE);
    cr_assert(strstr(seldon_last_error(), "mirror \"ghost\" is not a route"), "%s",
              seldon_last_error());
    seldon_routes_builder_free(b);
}

Test(split, an_earlier_route_can_be_taken_over)
{
    /* As the scheduler does for a default whose route another part of the table added. */
    seldon_routes_builder *b = NULL;
    seldon_routes *rt = NULL, *back = NULL;
    seldon_buf text = SELDON_BUF_INIT;
    size_t a, e, to;
    uint32_t w, pct;
    cr_assert_eq(seldon_routes_builder_new(&b, NULL), 0);
    cr_assert_eq(seldon_routes_builder_add_route(b, "a.pipeline", -1, -1), 0);
    cr_assert_eq(seldon_routes_builder_add_upstream(b, NULL, "127.0.0.1:1"), 0);
    cr_assert_eq(seldon_routes_builder_add_route(b, "b.pipeline", -1, -1), 0);
    cr_assert_eq(seldon_routes_builder_add_upstream(b, NULL, "127.0.0.1:2"), 0);
    cr_assert_eq(seldon_routes_builder_add_route(b, "e.experiment", -1, -1), 0);
    cr_assert_eq(seldon_routes_builder_add_candidate(b, "a.pipeline", 1), 0);
    cr_assert_eq(seldon_routes_builder_add_candidate(b, "b.pipeline", 3), 0);
    cr_assert_eq(sdn_rt_builder_routable(b, "a.pipeline", 10), 0);
    cr_assert_eq(sdn_rt_builder_routable(b, "e.experiment", 12), -1); /* no upstreams */
    cr_assert_eq(sdn_rt_builder_routable(b, "nope", 4), -1);
    cr_assert_eq(sdn_rt_builder_candidate_at(b, 0, "a.pipeline", 10, 1), 0);
    cr_assert_eq(sdn_rt_builder_candidate_at(b, 0, "b.pipeline", 10, 3), 0);
    cr_assert_eq(sdn_rt_builder_candidate_at(b, 0, "b.pipeline", 10, 3), SELDON_EEXIST);
    cr_assert_eq(sdn_rt_builder_mirror_at(b, 0, "b.pipeline", 10, 5), 0);
    cr_assert_eq(sdn_rt_builder_candidate_at(b, 9, "b.pipeline", 10, 3), SELDON_ESTATE);
    cr_assert_eq(seldon_routes_builder_finish(&rt, b), 0, "%s", seldon_last_error());
    seldon_routes_builder_free(b);
    a = idx(rt, "a.pipeline");
    e = idx(rt, "e.experiment");
    cr_assert_eq(seldon_routes_candidate_count(rt, a), 2);
    cr_assert_eq(seldon_routes_candidate_count(rt, e), 2);
    cr_assert_eq(seldon_routes_candidate_count(rt, idx(rt, "b.pipeline")), 0);
    cr_assert_eq(seldon_routes_candidate(&to, &w, rt, a, 1), 0);
    cr_assert_eq(to, idx(rt, "b.pipeline"));
    cr_assert_eq(w, 3);
    cr_assert_eq(seldon_routes_candidate(&to, &w, rt, e, 0), 0);
    cr_assert_eq(to, a);
    cr_assert_eq(seldon_routes_mirror(&to, &pct, rt, a), 0);
    cr_assert_eq(pct, 5);
    cr_assert_eq(seldon_routes_serialize(&text, rt), 0);
    cr_assert_eq(seldon_routes_parse(&back, (const char *)text.data, text.len, "back"), 0, "%s",
                 seldon_last_error());
    cr_assert(seldon_routes_equal(rt, back));
    seldon_buf_free(&text);
    seldon_routes_release(back);
    seldon_routes_release(rt);
}

/* A rollout: iris serves versions 1 (two replicas) and 2 (one); iris is also the default of
   an experiment with iris2 (version 3, then rolled out to 4 as well). */
static const char *const ROLLOUT =
    "routes:\n"
    "- name: iris\n"
    "  upstreams:\n"
    "  - {http: \"127.0.0.1:1001\", version: 1}\n"
    "  - {http: \"127.0.0.1:1002\", version: 1}\n"
    "  - {http: \"127.0.0.1:1003\", version: 2}\n"
    "- name: iris2\n"
    "  upstreams:\n"
    "  - {http: \"127.0.0.1:2001\", version: 3}\n"
    "  - {http: \"127.0.0.1:2002\", version: 4}\n"
    "  - {http: \"127.0.0.1:2003\", version: 4}\n"
    "- name: ab.experiment\n"
    "  candidates: [{name: iris, weight: 1}, {name: iris2, weight: 1}]\n";

Test(split, sticky_versions_hold_during_a_rollout)
{
    seldon_routes *rt = table(ROLLOUT);
    size_t iris = idx(rt, "iris"), ab = idx(rt, "ab.experiment"), out;
    uint32_t v = 99;
    int32_t sticky;
    seldon_router_lb *lb = NULL;
    seldon_router_req *req = NULL;
    const seldon_router_upstream *u = NULL;
    int32_t retry;
    int i;
    /* The decision says which version: a served one only. */
    cr_assert_eq(seldon_routes_decide_version(&out, &v, NULL, NULL, rt, iris, ":iris_2:", 8, 0), 0);
    cr_assert_eq(out, iris);
    cr_assert_eq(v, 2);
    seldon_routes_decide_version(&out, &v, NULL, NULL, rt, iris, ":x_1: :iris_1:", 14, 0);
    cr_assert_eq(v, 1);
    seldon_routes_decide_version(&out, &v, NULL, NULL, rt, iris, ":iris_7:", 8, 0);
    cr_assert_eq(v, 0, "a version no longer served pins nothing");
    seldon_routes_decide_version(&out, &v, NULL, NULL, rt, iris, ":iris:", 6, 0);
    cr_assert_eq(v, 0);
    seldon_routes_decide_version(&out, &v, NULL, NULL, rt, iris, ":iris_99999999999:", 18, 0);
    cr_assert_eq(v, 0);
    seldon_routes_decide_version(&out, &v, NULL, &sticky, rt, ab, ":iris2_4:", 9, 0);
    cr_assert_eq(out, idx(rt, "iris2"));
    cr_assert_eq(sticky, 1);
    cr_assert_eq(v, 4);
    seldon_routes_decide_version(&out, &v, NULL, &sticky, rt, ab, ":iris2:", 7, 0);
    cr_assert_eq(sticky, 1);
    cr_assert_eq(v, 0, "the candidate, any version");

    cr_assert_eq(seldon_router_lb_new(&lb, rt, NULL, 3), 0);
    /* Through the balancer: every pick is on the pinned version, plain route or split. */
    for (i = 0; i < 200; i++) {
        cr_assert_eq(
            seldon_router_req_new_split(&req, lb, "iris", 4, ":iris_2:", 8, SELDON_ROUTER_HTTP, 0),
            0);
        cr_assert_eq(seldon_router_req_pinned(req), 2);
        cr_assert_eq(seldon_router_req_split(req), 0);
        cr_assert_eq(seldon_router_pick(&u, req, 0), 0);
        cr_assert_eq(u->http_port, 1003);
        cr_assert_eq(seldon_router_req_version(req), 2);
        seldon_router_attempt_end(&retry, NULL, req, SELDON_ROUTER_OK, 1, 0);
        seldon_router_req_free(req);
        cr_assert_eq(seldon_router_req_new_split(&req, lb, "ab.experiment", 13, ":iris2_3:", 9,
                                                 SELDON_ROUTER_HTTP, 0),
                     0);
        cr_assert_eq(seldon_router_pick(&u, req, 0), 0);
        cr_assert_eq(u->http_port, 2001);
        seldon_router_attempt_end(&retry, NULL, req, SELDON_ROUTER_OK, 1, 0);
        seldon_router_req_free(req);
    }
    /* The pinned replica fails: the retry falls back to the route's other version. */
    cr_assert_eq(
        seldon_router_req_new_split(&req, lb, "iris", 4, ":iris_2:", 8, SELDON_ROUTER_HTTP, 0), 0);
    cr_assert_eq(seldon_router_pick(&u, req, 0), 0);
    cr_assert_eq(u->http_port, 1003);
    cr_assert_eq(seldon_router_attempt_end(&retry, NULL, req, SELDON_ROUTER_HTTP_5XX, 1, 0), 0);
    cr_assert_eq(retry, 1);
    cr_assert_eq(seldon_router_pick(&u, req, 0), 0);
    cr_assert(u->http_port == 1001 || u->http_port == 1002, "%u", u->http_port);
    cr_assert_eq(seldon_router_req_version(req), 1);
    seldon_router_attempt_end(&retry, NULL, req, SELDON_ROUTER_OK, 1, 0);
    seldon_router_req_free(req);
    /* Without the header, or with a version gone, both versions serve. */
    {
        int seen1 = 0, seen2 = 0;
        for (i = 0; i < 300; i++) {
            cr_assert_eq(seldon_router_req_new_split(&req, lb, "iris", 4, i % 2 ? ":iris_9:" : NULL,
                                                     i % 2 ? 8 : 0, SELDON_ROUTER_HTTP, 0),
                         0);
            cr_assert_eq(seldon_router_req_pinned(req), 0);
            cr_assert_eq(seldon_router_pick(&u, req, 0), 0);
            seen1 += seldon_router_req_version(req) == 1;
            seen2 += seldon_router_req_version(req) == 2;
            seldon_router_attempt_end(&retry, NULL, req, SELDON_ROUTER_OK, 1, 0);
            seldon_router_req_free(req);
        }
        cr_assert(seen1 > 0 && seen2 > 0, "%d %d", seen1, seen2);
    }
    seldon_router_lb_free(lb);
    seldon_routes_release(rt);
}
