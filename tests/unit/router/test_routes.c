/* The routes file and the route table. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "seldon/router.h"

static seldon_routes *parse_ok(const char *text)
{
    seldon_routes *rt = NULL;
    int rc = seldon_routes_parse(&rt, text, strlen(text), "routes.yaml");
    cr_assert_eq(rc, 0, "%s", seldon_last_error());
    cr_assert_not_null(rt);
    return rt;
}

/* The file is refused with this code and exactly this message. */
static void refused(const char *text, int code, const char *message)
{
    seldon_routes *rt = (seldon_routes *)1;
    int rc = seldon_routes_parse(&rt, text, strlen(text), "routes.yaml");
    cr_assert_eq(rc, code, "rc %d (%s) for:\n%s", rc, seldon_last_error(), text);
    cr_assert_null(rt);
    cr_assert_str_eq(seldon_last_error(), message, "got: %s\nfor:\n%s", seldon_last_error(), text);
}

static const char *const EXAMPLE = "routes:\n"
                                   "- name: iris                 # matched against seldon-model\n"
                                   "  upstreams:\n"
                                   "  - {http: \"127.0.0.1:9999\", grpc: \"127.0.0.1:9998\"}\n"
                                   "  - {http: \"127.0.0.1:9989\", grpc: \"127.0.0.1:9988\"}\n";

Test(routes, the_issue_example)
{
    seldon_routes *rt = parse_ok(EXAMPLE);
    const seldon_router_upstream *u;
    seldon_routes_defaults d;
    size_t idx = 99;
    cr_assert_eq(seldon_routes_count(rt), 1);
    cr_assert_eq(seldon_routes_find(&idx, rt, "iris", 4), 0);
    cr_assert_eq(idx, 0);
    cr_assert_str_eq(seldon_routes_name(rt, 0), "iris");
    cr_assert_eq(seldon_routes_upstream_count(rt, 0), 2);
    u = seldon_routes_upstream(rt, 0, 0);
    cr_assert_str_eq(u->http, "127.0.0.1:9999");
    cr_assert_str_eq(u->http_host, "127.0.0.1");
    cr_assert_eq(u->http_port, 9999);
    cr_assert_str_eq(u->grpc, "127.0.0.1:9998");
    cr_assert_str_eq(u->grpc_host, "127.0.0.1");
    cr_assert_eq(u->grpc_port, 9998);
    cr_assert_eq(u->index, 0);
    u = seldon_routes_upstream(rt, 0, 1);
    cr_assert_eq(u->http_port, 9989);
    cr_assert_eq(u->grpc_port, 9988);
    cr_assert_eq(u->index, 1);
    cr_assert_null(seldon_routes_upstream(rt, 0, 2));
    cr_assert_null(seldon_routes_upstream(rt, 1, 0));
    /* Defaults when the file gives none. */
    seldon_routes_get_defaults(&d, rt);
    cr_assert_eq(d.timeout_ms, 0);
    cr_assert_eq(d.retries, 3);
    cr_assert_eq(d.connect_timeout_ms, 1000);
    cr_assert_eq(d.eject_failures, 5);
    cr_assert_eq(d.eject_base_ms, 1000);
    cr_assert_eq(d.eject_max_ms, 30000);
    cr_assert_eq(seldon_routes_timeout_ms(rt, 0), 0);
    cr_assert_eq(seldon_routes_retries(rt, 0), 3);
    cr_assert_eq(seldon_routes_timeout_ms(rt, 5), -1);
    cr_assert_eq(seldon_routes_retries(rt, 5), -1);
    seldon_routes_release(rt);
}

static const char *const FULL =
    "defaults:\n"
    "  timeoutMs: 1500\n"
    "  retries: 2\n"
    "  connectTimeoutMs: 250\n"
    "  ejection:\n"
    "    consecutiveFailures: 3\n"
    "    baseMs: 200\n"
    "    maxMs: 5000\n"
    "routes:\n"
    "- name: iris\n"
    "  timeoutMs: 40\n"
    "  retries: 0\n"
    "  upstreams:\n"
    "  - http: localhost:9999\n"
    "    grpc: '[::1]:9998'\n"
    "- name: tfsimples.pipeline\n"
    "  upstreams:\n"
    "  - {grpc: \"127.0.0.1:9010\"}\n"
    "  - {http: \"127.0.0.1:9011\"}\n"
    "- upstreams: [{http: \"10.0.0.1:80\", grpc: \"10.0.0.1:81\"}, {http: \"127.0.0.1:9999\"}]\n"
    "  name: model_2\n";

Test(routes, every_field)
{
    seldon_routes *rt = parse_ok(FULL);
    seldon_routes_defaults d;
    const seldon_router_upstream *u;
    size_t idx;
    seldon_routes_get_defaults(&d, rt);
    cr_assert_eq(d.version, SELDON_ROUTES_DEFAULTS_VERSION);
    cr_assert_eq(d.timeout_ms, 1500);
    cr_assert_eq(d.retries, 2);
    cr_assert_eq(d.connect_timeout_ms, 250);
    cr_assert_eq(d.eject_failures, 3);
    cr_assert_eq(d.eject_base_ms, 200);
    cr_assert_eq(d.eject_max_ms, 5000);
    cr_assert_eq(seldon_routes_count(rt), 3);
    /* A route's own settings win; others take the defaults. */
    cr_assert_eq(seldon_routes_timeout_ms(rt, 0), 40);
    cr_assert_eq(seldon_routes_retries(rt, 0), 0);
    cr_assert_eq(seldon_routes_timeout_ms(rt, 1), 1500);
    cr_assert_eq(seldon_routes_retries(rt, 1), 2);
    u = seldon_routes_upstream(rt, 0, 0);
    cr_assert_str_eq(u->http_host, "localhost");
    cr_assert_str_eq(u->grpc, "[::1]:9998");
    cr_assert_str_eq(u->grpc_host, "::1");
    cr_assert_eq(u->grpc_port, 9998);
    /* One address only. */
    u = seldon_routes_upstream(rt, 1, 0);
    cr_assert_null(u->http);
    cr_assert_null(u->http_host);
    cr_assert_eq(u->http_port, 0);
    cr_assert_eq(u->grpc_port, 9010);
    u = seldon_routes_upstream(rt, 1, 1);
    cr_assert_null(u->grpc);
    cr_assert_eq(u->http_port, 9011);
    cr_assert_eq(seldon_routes_find(&idx, rt, "tfsimples.pipeline", 18), 0);
    cr_assert_eq(idx, 1);
    cr_assert_eq(seldon_routes_find(&idx, rt, "model_2", 7), 0);
    cr_assert_eq(idx, 2);
    cr_assert_str_eq(seldon_routes_upstream(rt, 2, 0)->http, "10.0.0.1:80");
    seldon_routes_release(rt);
}

Test(routes, an_upstream_shared_by_routes_is_one_upstream)
{
    seldon_routes *rt = parse_ok("routes:\n"
                                 "- name: a\n"
                                 "  upstreams: [{http: \"127.0.0.1:1\", grpc: \"127.0.0.1:2\"}]\n"
                                 "- name: b\n"
                                 "  upstreams:\n"
                                 "  - {http: \"127.0.0.1:3\"}\n"
                                 "  - {http: \"127.0.0.1:1\", grpc: \"127.0.0.1:2\"}\n"
                                 "- name: c\n"
                                 "  upstreams: [{http: \"127.0.0.1:1\"}]\n");
    cr_assert_eq(seldon_routes_upstream(rt, 0, 0), seldon_routes_upstream(rt, 1, 1));
    cr_assert_eq(seldon_routes_upstream(rt, 1, 1)->index, 0);
    cr_assert_eq(seldon_routes_upstream(rt, 1, 0)->index, 1);
    /* Same http, different grpc: another upstream. */
    cr_assert_eq(seldon_routes_upstream(rt, 2, 0)->index, 2);
    seldon_routes_release(rt);
}

Test(routes, empty_route_list)
{
    seldon_routes *rt = parse_ok("routes: []\n");
    size_t idx;
    cr_assert_eq(seldon_routes_count(rt), 0);
    cr_assert_eq(seldon_routes_find(&idx, rt, "iris", 4), SELDON_ENOTFOUND);
    cr_assert_str_eq(seldon_last_error(), "no route for model \"iris\"");
    seldon_routes_release(rt);
}

Test(routes, errors_name_line_and_field)
{
    refused("routes:\n"
            "- name: iris\n"
            "  upstreams:\n"
            "  - {http: \"127.0.0.1:9999\"}\n"
            "- name: other\n"
            "  upstreams:\n"
            "  - http: \"abc\"\n",
            SELDON_EPARSE,
            "routes.yaml:7: routes[1].upstreams[0].http: expected host:port, got \"abc\"");
    refused("routes:\n- name: a\n  upstreams: [{grpc: \"h:0\"}]\n", SELDON_EPARSE,
            "routes.yaml:3: routes[0].upstreams[0].grpc: expected host:port (port 1-65535), got "
            "\"h:0\"");
    refused("routes:\n- name: a\n  upstreams: [{grpc: \"h:65536\"}]\n", SELDON_EPARSE,
            "routes.yaml:3: routes[0].upstreams[0].grpc: expected host:port (port 1-65535), got "
            "\"h:65536\"");
    refused("routes:\n- name: a\n  upstreams: [{http: \"ho st:80\"}]\n", SELDON_EPARSE,
            "routes.yaml:3: routes[0].upstreams[0].http: expected host:port, got \"ho st:80\"");
    refused("routes:\n- name: a\n  upstreams: [{http: \"[zz]:80\"}]\n", SELDON_EPARSE,
            "routes.yaml:3: routes[0].upstreams[0].http: expected host:port (bad IPv6 address), "
            "got \"[zz]:80\"");
    refused("routes:\n- name: a\n  upstreams: [{http: \"[::1]80\"}]\n", SELDON_EPARSE,
            "routes.yaml:3: routes[0].upstreams[0].http: expected host:port ([v6addr]:port), got "
            "\"[::1]80\"");
    /* Unknown fields, at every level. */
    refused("route: []\n", SELDON_EPARSE,
            "routes.yaml:1: route: unknown field (expected one of defaults, routes)");
    refused("routes:\n- name: a\n  weight: 3\n  upstreams: [{http: \"h:1\"}]\n", SELDON_EPARSE,
            "routes.yaml:3: routes[0].weight: unknown field (expected one of name, upstreams, "
            "timeoutMs, retries, candidates, mirror)");
    refused("routes:\n- name: a\n  upstreams: [{http: \"h:1\", https: \"h:2\"}]\n", SELDON_EPARSE,
            "routes.yaml:3: routes[0].upstreams[0].https: unknown field (expected one of http, "
            "grpc, version)");
    refused("defaults:\n  timeout: 3\nroutes: []\n", SELDON_EPARSE,
            "routes.yaml:2: defaults.timeout: unknown field (expected one of timeoutMs, retries, "
            "connectTimeoutMs, ejection)");
    refused("defaults:\n  ejection:\n    base: 3\nroutes: []\n", SELDON_EPARSE,
            "routes.yaml:3: defaults.ejection.base: unknown field (expected one of "
            "consecutiveFailures, baseMs, maxMs)");
    /* Wrong types. */
    refused("routes: {}\n", SELDON_EPARSE,
            "routes.yaml:1: routes: expected a list of routes, got a mapping");
    refused("routes:\n- name: a\n  upstreams: {http: \"h:1\"}\n", SELDON_EPARSE,
            "routes.yaml:3: routes[0].upstreams: expected a list of upstreams, got a mapping");
    refused("routes:\n- name: [a]\n  upstreams: [{http: \"h:1\"}]\n", SELDON_EPARSE,
            "routes.yaml:2: routes[0].name: expected a string, got a list");
    refused("routes:\n- name:\n  upstreams: [{http: \"h:1\"}]\n", SELDON_EPARSE,
            "routes.yaml:2: routes[0].name: expected a string, got nothing");
    refused("routes:\n- name: a\n  timeoutMs: soon\n  upstreams: [{http: \"h:1\"}]\n",
            SELDON_EPARSE, "routes.yaml:3: routes[0].timeoutMs: expected an integer, got \"soon\"");
    refused("routes:\n- name: a\n  timeoutMs: \"10\"\n  upstreams: [{http: \"h:1\"}]\n",
            SELDON_EPARSE, "routes.yaml:3: routes[0].timeoutMs: expected an integer, got \"10\"");
    refused("routes:\n- name: a\n  timeoutMs: -1\n  upstreams: [{http: \"h:1\"}]\n", SELDON_EPARSE,
            "routes.yaml:3: routes[0].timeoutMs: expected an integer, got \"-1\"");
    refused("routes:\n- name: a\n  retries: 11\n  upstreams: [{http: \"h:1\"}]\n", SELDON_EPARSE,
            "routes.yaml:3: routes[0].retries: expected an integer from 0 to 10, got 11");
    refused("defaults:\n  connectTimeoutMs: 0\nroutes: []\n", SELDON_EPARSE,
            "routes.yaml:2: defaults.connectTimeoutMs: expected an integer from 1 to 86400000, "
            "got 0");
    refused("defaults:\n  ejection:\n    baseMs: 500\n    maxMs: 100\nroutes: []\n", SELDON_EPARSE,
            "routes.yaml:3: defaults.ejection: maxMs (100) is below baseMs (500)");
    refused("routes:\n- {name: a, upstreams: [\"h:1\"]}\n", SELDON_EPARSE,
            "routes.yaml:2: routes[0].upstreams[0]: expected a mapping with http and/or grpc, got "
            "a scalar");
    /* Missing and empty. */
    refused("routes:\n- name: a\n  upstreams: []\n", SELDON_EPARSE,
            "routes.yaml:3: routes[0].upstreams: expected at least one upstream");
    refused("routes:\n- name: a\n", SELDON_EPARSE,
            "routes.yaml:2: routes[0]: upstreams is required");
    refused("routes:\n- upstreams: [{http: \"h:1\"}]\n", SELDON_EPARSE,
            "routes.yaml:2: routes[0]: name is required");
    refused("routes:\n- name: a\n  upstreams: [{}]\n", SELDON_EPARSE,
            "routes.yaml:3: routes[0].upstreams[0]: needs http or grpc");
    refused("defaults: {retries: 1}\n", SELDON_EPARSE, "routes.yaml:1: routes is required");
    refused("", SELDON_EPARSE, "routes.yaml:1: empty file: expected a mapping with routes");
    refused("# nothing\n", SELDON_EPARSE,
            "routes.yaml:1: empty file: expected a mapping with routes");
    refused("---\n", SELDON_EPARSE,
            "routes.yaml:2: empty document: expected a mapping with routes");
    refused("- a\n", SELDON_EPARSE, "routes.yaml:1: expected a mapping with routes, got a list");
    /* Duplicates. */
    refused("routes:\n"
            "- name: iris\n"
            "  upstreams: [{http: \"h:1\"}]\n"
            "- name: iris\n"
            "  upstreams: [{http: \"h:2\"}]\n",
            SELDON_EPARSE,
            "routes.yaml:4: routes[1].name: duplicate route \"iris\" (first at line 2)");
    refused("routes:\n- name: a\n  name: b\n  upstreams: [{http: \"h:1\"}]\n", SELDON_EPARSE,
            "routes.yaml:3: routes[0].name: duplicate field");
    refused("routes:\n- name: a\n  upstreams:\n  - {http: \"h:1\"}\n  - {http: \"h:1\"}\n",
            SELDON_EPARSE, "routes.yaml:5: routes[0].upstreams[1]: duplicate upstream h:1|");
    /* Names. */
    refused("routes:\n- name: \"a b\"\n  upstreams: [{http: \"h:1\"}]\n", SELDON_EPARSE,
            "routes.yaml:2: routes[0].name: route name may hold only letters, digits, '.', '-' "
            "and '_', got \"a b\"");
    refused("routes:\n- name: \"\"\n  upstreams: [{http: \"h:1\"}]\n", SELDON_EPARSE,
            "routes.yaml:2: routes[0].name: expected a route name, got \"\"");
    /* YAML itself. */
    refused("routes:\n- name: a\n  upstreams: [{http: \"h:1\"\n", SELDON_EPARSE,
            "routes.yaml:4: invalid YAML: did not find expected ',' or '}' while parsing a flow "
            "mapping");
    refused("x: &a [1]\nroutes: *a\n", SELDON_EPARSE,
            "routes.yaml:1: x: unknown field (expected one of defaults, routes)");
    refused("routes: *a\n", SELDON_EPARSE, "routes.yaml:1: aliases are not supported");
    refused("routes: []\n---\nroutes: []\n", SELDON_EPARSE,
            "routes.yaml:2: only one YAML document is allowed");
}

Test(routes, null_source_and_long_name)
{
    seldon_routes *rt = NULL;
    char text[600];
    char name[300];
    memset(name, 'n', 254);
    name[254] = '\0';
    snprintf(text, sizeof(text), "routes:\n- name: %s\n  upstreams: [{http: \"h:1\"}]\n", name);
    cr_assert_eq(seldon_routes_parse(&rt, text, strlen(text), NULL), SELDON_ETOOBIG);
    cr_assert(strncmp(seldon_last_error(), "routes:2: routes[0].name: route name longer than 253",
                      52) == 0,
              "%s", seldon_last_error());
    name[253] = '\0';
    snprintf(text, sizeof(text), "routes:\n- name: %s\n  upstreams: [{http: \"h:1\"}]\n", name);
    cr_assert_eq(seldon_routes_parse(&rt, text, strlen(text), NULL), 0, "%s", seldon_last_error());
    seldon_routes_release(rt);
}

Test(routes, control_bytes_are_escaped_in_messages)
{
    refused("routes:\n- name: \"a\\x01\"\n  upstreams: [{http: \"h:1\"}]\n", SELDON_EPARSE,
            "routes.yaml:2: routes[0].name: route name may hold only letters, digits, '.', '-' "
            "and '_', got \"a\\x01\"");
}

static void round_trip(const char *text)
{
    seldon_routes *a = parse_ok(text), *b = NULL;
    seldon_buf one = SELDON_BUF_INIT, two = SELDON_BUF_INIT;
    cr_assert_eq(seldon_routes_serialize(&one, a), 0);
    cr_assert_eq(seldon_routes_parse(&b, (const char *)one.data, one.len, "saved"), 0, "%s\n%.*s",
                 seldon_last_error(), (int)one.len, (const char *)one.data);
    cr_assert(seldon_routes_equal(a, b), "%.*s", (int)one.len, (const char *)one.data);
    cr_assert_eq(seldon_routes_serialize(&two, b), 0);
    cr_assert_eq(one.len, two.len);
    cr_assert_eq(memcmp(one.data, two.data, one.len), 0);
    seldon_buf_free(&one);
    seldon_buf_free(&two);
    seldon_routes_release(a);
    seldon_routes_release(b);
}

Test(routes, round_trip)
{
    round_trip(EXAMPLE);
    round_trip(FULL);
    round_trip("routes: []\n");
    round_trip("defaults: {retries: 0}\nroutes: []\n");
}

Test(routes, serialised_form)
{
    seldon_routes *rt = parse_ok(FULL);
    seldon_buf out = SELDON_BUF_INIT;
    const char *want = "# seldon-router routes\n"
                       "defaults:\n"
                       "  timeoutMs: 1500\n"
                       "  retries: 2\n"
                       "  connectTimeoutMs: 250\n"
                       "  ejection:\n"
                       "    consecutiveFailures: 3\n"
                       "    baseMs: 200\n"
                       "    maxMs: 5000\n"
                       "routes:\n"
                       "- name: \"iris\"\n"
                       "  timeoutMs: 40\n"
                       "  retries: 0\n"
                       "  upstreams:\n"
                       "  - {http: \"localhost:9999\", grpc: \"[::1]:9998\"}\n"
                       "- name: \"tfsimples.pipeline\"\n"
                       "  upstreams:\n"
                       "  - {grpc: \"127.0.0.1:9010\"}\n"
                       "  - {http: \"127.0.0.1:9011\"}\n"
                       "- name: \"model_2\"\n"
                       "  upstreams:\n"
                       "  - {http: \"10.0.0.1:80\", grpc: \"10.0.0.1:81\"}\n"
                       "  - {http: \"127.0.0.1:9999\"}\n";
    cr_assert_eq(seldon_routes_serialize(&out, rt), 0);
    cr_assert_eq(out.len, strlen(want), "%.*s", (int)out.len, (const char *)out.data);
    cr_assert_eq(memcmp(out.data, want, out.len), 0, "%.*s", (int)out.len, (const char *)out.data);
    seldon_buf_free(&out);
    seldon_routes_release(rt);
}

Test(routes, save_and_load)
{
    char dir[] = "/tmp/routes-test-XXXXXX", path[64];
    seldon_routes *a = parse_ok(FULL), *b = NULL;
    FILE *f;
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/routes.yaml", dir);
    cr_assert_eq(seldon_routes_save(a, path), 0, "%s", seldon_last_error());
    cr_assert_eq(seldon_routes_load(&b, path), 0, "%s", seldon_last_error());
    cr_assert(seldon_routes_equal(a, b));
    seldon_routes_release(b);
    /* A bad file is named by its path. */
    f = fopen(path, "w");
    fputs("routes:\n- name: x\n  upstreams: [{http: nope}]\n", f);
    fclose(f);
    b = NULL;
    cr_assert_eq(seldon_routes_load(&b, path), SELDON_EPARSE);
    cr_assert(strstr(seldon_last_error(), "routes.yaml:3: routes[0].upstreams[0].http:") != NULL,
              "%s", seldon_last_error());
    cr_assert(strncmp(seldon_last_error(), dir, strlen(dir)) == 0);
    unlink(path);
    cr_assert_eq(seldon_routes_load(&b, path), SELDON_EIO);
    cr_assert(strstr(seldon_last_error(), "cannot open") != NULL);
    rmdir(dir);
    seldon_routes_release(a);
}

Test(routes, builder)
{
    seldon_routes_defaults d = SELDON_ROUTES_DEFAULTS_INIT;
    seldon_routes_builder *b = NULL;
    seldon_routes *rt = NULL, *parsed;
    d.retries = 1;
    cr_assert_eq(seldon_routes_builder_new(&b, &d), 0);
    cr_assert_eq(seldon_routes_builder_add_upstream(b, "h:1", NULL), SELDON_ESTATE);
    cr_assert_eq(seldon_routes_builder_add_route(b, "iris", -1, -1), 0);
    cr_assert_eq(seldon_routes_builder_add_upstream(b, NULL, NULL), SELDON_EPARSE);
    cr_assert_eq(seldon_routes_builder_add_upstream(b, "abc", NULL), SELDON_EPARSE);
    cr_assert_str_eq(seldon_last_error(), "route \"iris\": http: expected host:port, got \"abc\"");
    /* A route without upstreams cannot be followed or finished. */
    cr_assert_eq(seldon_routes_builder_add_route(b, "next", -1, -1), SELDON_EPARSE);
    cr_assert_eq(seldon_routes_builder_finish(&rt, b), SELDON_EPARSE);
    cr_assert_eq(seldon_routes_builder_add_upstream(b, "127.0.0.1:9999", "127.0.0.1:9998"), 0);
    cr_assert_eq(seldon_routes_builder_add_upstream(b, "127.0.0.1:9999", "127.0.0.1:9998"),
                 SELDON_EEXIST);
    cr_assert_eq(seldon_routes_builder_add_route(b, "iris", -1, -1), SELDON_EEXIST);
    cr_assert_eq(seldon_routes_builder_add_route(b, "p.pipeline", 20, 0), 0);
    cr_assert_eq(seldon_routes_builder_add_upstream(b, NULL, "127.0.0.1:9998"), 0);
    cr_assert_eq(seldon_routes_builder_finish(&rt, b), 0);
    parsed = parse_ok("defaults: {retries: 1}\n"
                      "routes:\n"
                      "- name: iris\n"
                      "  upstreams: [{http: \"127.0.0.1:9999\", grpc: \"127.0.0.1:9998\"}]\n"
                      "- name: p.pipeline\n"
                      "  timeoutMs: 20\n"
                      "  retries: 0\n"
                      "  upstreams: [{grpc: \"127.0.0.1:9998\"}]\n");
    cr_assert(seldon_routes_equal(rt, parsed));
    /* The builder starts over empty. */
    seldon_routes_release(rt);
    cr_assert_eq(seldon_routes_builder_finish(&rt, b), 0);
    cr_assert_eq(seldon_routes_count(rt), 0);
    seldon_routes_release(rt);
    seldon_routes_release(parsed);
    seldon_routes_builder_free(b);
    d.eject_max_ms = 1;
    cr_assert_eq(seldon_routes_builder_new(&b, &d), SELDON_EINVAL);
}

Test(routes, many_routes_found_by_hash)
{
    seldon_routes_builder *b = NULL;
    seldon_routes *rt = NULL;
    char name[32], addr[32];
    size_t i, idx;
    cr_assert_eq(seldon_routes_builder_new(&b, NULL), 0);
    for (i = 0; i < 5000; i++) {
        snprintf(name, sizeof(name), "model-%zu", i);
        snprintf(addr, sizeof(addr), "127.0.0.%zu:%zu", i % 7, 1000 + i % 50);
        cr_assert_eq(seldon_routes_builder_add_route(b, name, -1, -1), 0);
        cr_assert_eq(seldon_routes_builder_add_upstream(b, addr, NULL), 0);
    }
    cr_assert_eq(seldon_routes_builder_finish(&rt, b), 0);
    cr_assert_eq(seldon_routes_count(rt), 5000);
    for (i = 0; i < 5000; i++) {
        snprintf(name, sizeof(name), "model-%zu", i);
        cr_assert_eq(seldon_routes_find(&idx, rt, name, strlen(name)), 0);
        cr_assert_eq(idx, i);
        cr_assert_str_eq(seldon_routes_name(rt, idx), name);
    }
    /* Prefixes and near misses are not matches. */
    cr_assert_eq(seldon_routes_find(&idx, rt, "model-1", 6), SELDON_ENOTFOUND);
    cr_assert_eq(seldon_routes_find(&idx, rt, "model-50000", 11), SELDON_ENOTFOUND);
    /* 7 hosts x 50 ports = 350 distinct upstreams at most. */
    cr_assert_leq(seldon_routes_upstream(rt, 4999, 0)->index, 349);
    seldon_routes_release(rt);
    seldon_routes_builder_free(b);
}

Test(routes, refcount)
{
    seldon_routes *rt = parse_ok(EXAMPLE);
    cr_assert_eq(seldon_routes_retain(rt), rt);
    seldon_routes_release(rt);
    /* Still alive: one reference left. */
    cr_assert_str_eq(seldon_routes_name(rt, 0), "iris");
    seldon_routes_release(rt);
    seldon_routes_release(NULL);
    cr_assert_null(seldon_routes_retain(NULL));
}

Test(routes, bad_arguments)
{
    seldon_routes *rt;
    size_t idx;
    cr_assert_eq(seldon_routes_parse(NULL, "", 0, NULL), SELDON_EINVAL);
    cr_assert_eq(seldon_routes_parse(&rt, NULL, 3, NULL), SELDON_EINVAL);
    cr_assert_eq(seldon_routes_find(&idx, NULL, "a", 1), SELDON_EINVAL);
    cr_assert_eq(seldon_routes_serialize(NULL, NULL), SELDON_EINVAL);
    cr_assert_eq(seldon_routes_count(NULL), 0);
    cr_assert_null(seldon_routes_name(NULL, 0));
}
