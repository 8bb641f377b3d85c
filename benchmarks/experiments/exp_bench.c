/*
 * The experiment benchmark, in process (libseldon's router library alone):
 *   - the cost of a request's routing decisions on a route with an experiment in
 *     front (75/25 split, a 10% mirror, versioned upstreams: seldon_router_req_new_split,
 *     pick, the x-seldon-route tag, attempt_end, free) beside the same on a plain route
 *     (seldon_router_req_new, pick, attempt_end, free), measured in the same run,
 *     alternating, best of R rounds; the target is at most 1 us more;
 *   - the same with a sticky x-seldon-route header (which pins the candidate's version);
 *   - a plain route during a rollout (versions 1 and 2 both served) with a sticky
 *     x-seldon-route naming version 2: the request stays on that version's upstreams;
 *   - the split's accuracy over 100,000 picks (seldon_routes_decide with a 64-bit
 *     generator, and through a balancer): each candidate's share beside its weight;
 *     the target is within 0.5 percentage points. A 10% mirror's share too.
 *
 *   bench_experiments [--smoke] [--reps R] [--n N]
 *
 * --smoke runs small sizes once: a check that the harness works, not a measurement.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <seldon/router.h>

static const char *const TABLE =
    "routes:\n"
    "- name: plain\n"
    "  upstreams:\n"
    "  - {http: \"10.0.0.1:9000\", grpc: \"10.0.0.1:9001\", version: 1}\n"
    "  - {http: \"10.0.0.2:9000\", grpc: \"10.0.0.2:9001\", version: 1}\n"
    "  - {http: \"10.0.0.3:9000\", grpc: \"10.0.0.3:9001\", version: 1}\n"
    "- name: iris\n"
    "  candidates: [{name: iris, weight: 75}, {name: iris2, weight: 25}]\n"
    "  mirror: {name: iris3, percent: 10}\n"
    "  upstreams:\n"
    "  - {http: \"10.0.1.1:9000\", grpc: \"10.0.1.1:9001\", version: 1}\n"
    "  - {http: \"10.0.1.2:9000\", grpc: \"10.0.1.2:9001\", version: 1}\n"
    "  - {http: \"10.0.1.3:9000\", grpc: \"10.0.1.3:9001\", version: 1}\n"
    "- name: iris2\n"
    "  upstreams:\n"
    "  - {http: \"10.0.2.1:9000\", grpc: \"10.0.2.1:9001\", version: 2}\n"
    "  - {http: \"10.0.2.2:9000\", grpc: \"10.0.2.2:9001\", version: 2}\n"
    "  - {http: \"10.0.2.3:9000\", grpc: \"10.0.2.3:9001\", version: 2}\n"
    "- name: iris3\n"
    "  upstreams: [{http: \"10.0.3.1:9000\", version: 1}]\n"
    "- name: rolled\n"
    "  upstreams:\n"
    "  - {http: \"10.0.4.1:9000\", grpc: \"10.0.4.1:9001\", version: 1}\n"
    "  - {http: \"10.0.4.2:9000\", grpc: \"10.0.4.2:9001\", version: 1}\n"
    "  - {http: \"10.0.4.3:9000\", grpc: \"10.0.4.3:9001\", version: 2}\n"
    "- name: trio.experiment\n"
    "  candidates: [{name: plain, weight: 50}, {name: iris2, weight: 30}, "
    "{name: iris3, weight: 20}]\n";

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_experiments: %s: %s (%s)\n", what, seldon_strerror(rc),
            seldon_last_error());
    exit(1);
}

static volatile size_t sink;

/* ns per request: plain (sticky NULL, split 0) or through the experiment; split 2: the
   rollout route "rolled" through req_new_split with a sticky version. */
static double run(seldon_router_lb *lb, long n, int split, const char *sticky)
{
    const seldon_router_upstream *u;
    seldon_router_req *req;
    char tag[300];
    size_t len;
    int32_t retry;
    double t0 = now_ns();
    long i;
    int rc;
    for (i = 0; i < n; i++) {
        if (split == 2)
            rc = seldon_router_req_new_split(&req, lb, "rolled", 6, sticky, strlen(sticky),
                                             SELDON_ROUTER_HTTP, i);
        else if (split)
            rc = seldon_router_req_new_split(&req, lb, "iris", 4, sticky,
                                             sticky ? strlen(sticky) : 0, SELDON_ROUTER_HTTP, i);
        else
            rc = seldon_router_req_new(&req, lb, "plain", 5, SELDON_ROUTER_HTTP, i);
        if (rc != 0 || (rc = seldon_router_pick(&u, req, i)) != 0)
            die("pick", rc);
        if (split == 2 && seldon_router_req_version(req) != 2)
            die("rollout pin", SELDON_EINTERNAL);
        if (split && seldon_router_req_tag(tag, &len, sizeof(tag), req) == 0)
            sink += len;
        sink += u->http_port;
        seldon_router_attempt_end(&retry, NULL, req, SELDON_ROUTER_OK, 1, i);
        seldon_router_req_free(req);
    }
    return (now_ns() - t0) / (double)n;
}

static uint64_t xs(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

static int accuracy(const seldon_routes *rt, seldon_router_lb *lb, long n)
{
    static const char *const names[] = {"iris", "iris2"};
    static const double weights[] = {0.75, 0.25};
    size_t iris, trio, out, k;
    long counts[2] = {0, 0}, lbcounts[2] = {0, 0}, mirrors = 0, tcounts[3] = {0, 0, 0};
    size_t tidx[3];
    int64_t mirror;
    uint64_t s = 0x243F6A8885A308D3ULL;
    long i;
    int ok = 1;
    if (seldon_routes_find(&iris, rt, "iris", 4) != 0 ||
        seldon_routes_find(&trio, rt, "trio.experiment", 15) != 0)
        die("find", SELDON_ENOTFOUND);
    for (k = 0; k < 3; k++)
        seldon_routes_candidate(&tidx[k], NULL, rt, trio, k);
    for (i = 0; i < n; i++) {
        seldon_routes_decide(&out, &mirror, NULL, rt, iris, NULL, 0, xs(&s));
        counts[out != iris]++;
        mirrors += mirror >= 0;
        seldon_routes_decide(&out, NULL, NULL, rt, trio, NULL, 0, xs(&s));
        for (k = 0; k < 3; k++)
            tcounts[k] += out == tidx[k];
    }
    for (i = 0; i < n; i++) {
        seldon_router_req *req;
        if (seldon_router_req_new_split(&req, lb, "iris", 4, NULL, 0, SELDON_ROUTER_HTTP, 0) != 0)
            die("req", SELDON_EINVAL);
        lbcounts[strcmp(seldon_router_req_route_name(req), "iris") != 0]++;
        seldon_router_req_free(req);
    }
    printf("\nsplit accuracy over %ld picks (target: within 0.5 points of the weight)\n", n);
    printf("%-34s %8s %8s %8s\n", "", "weight", "share", "delta");
    for (k = 0; k < 2; k++) {
        double a = (double)counts[k] / (double)n, b = (double)lbcounts[k] / (double)n;
        printf("decide     75/25  %-16s %7.2f%% %7.3f%% %+7.3f\n", names[k], weights[k] * 100,
               a * 100, (a - weights[k]) * 100);
        printf("balancer   75/25  %-16s %7.2f%% %7.3f%% %+7.3f\n", names[k], weights[k] * 100,
               b * 100, (b - weights[k]) * 100);
        ok &= (a - weights[k]) * 100 < 0.5 && (weights[k] - a) * 100 < 0.5;
        ok &= (b - weights[k]) * 100 < 0.5 && (weights[k] - b) * 100 < 0.5;
    }
    {
        static const double tw[] = {0.5, 0.3, 0.2};
        static const char *const tn[] = {"plain", "iris2", "iris3"};
        for (k = 0; k < 3; k++) {
            double a = (double)tcounts[k] / (double)n;
            printf("decide  50/30/20  %-16s %7.2f%% %7.3f%% %+7.3f\n", tn[k], tw[k] * 100, a * 100,
                   (a - tw[k]) * 100);
            ok &= (a - tw[k]) * 100 < 0.5 && (tw[k] - a) * 100 < 0.5;
        }
    }
    {
        double a = (double)mirrors / (double)n;
        printf("mirror      10%%   %-16s %7.2f%% %7.3f%% %+7.3f\n", "iris3", 10.0, a * 100,
               (a - 0.10) * 100);
        ok &= (a - 0.10) * 100 < 0.5 && (0.10 - a) * 100 < 0.5;
    }
    printf("within 0.5 points: %s\n", ok ? "yes" : "NO");
    return ok;
}

int main(int argc, char **argv)
{
    seldon_routes *rt = NULL;
    seldon_router_lb *lb = NULL;
    long n = 2000000, picks = 100000;
    int reps = 7, smoke = 0, i, rc;
    double best_plain = 1e18, best_exp = 1e18, best_sticky = 1e18, best_roll = 1e18;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--smoke") == 0) {
            smoke = 1;
        } else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--n") == 0 && i + 1 < argc) {
            n = atol(argv[++i]);
        } else {
            fprintf(stderr, "usage: bench_experiments [--smoke] [--reps R] [--n N]\n");
            return 2;
        }
    }
    if (smoke) {
        n = 20000;
        reps = 1;
    }
    if (n < 1 || reps < 1)
        return 2;
    if ((rc = seldon_routes_parse(&rt, TABLE, strlen(TABLE), "bench")) != 0)
        die("routes", rc);
    if ((rc = seldon_router_lb_new(&lb, rt, NULL, 42)) != 0)
        die("balancer", rc);
    /* Warm up, then alternate so that both see the same machine. */
    run(lb, n / 10 + 1, 0, NULL);
    run(lb, n / 10 + 1, 1, NULL);
    for (i = 0; i < reps; i++) {
        double a = run(lb, n, 0, NULL), b = run(lb, n, 1, NULL), c = run(lb, n, 1, ":iris2_2:");
        double d = run(lb, n, 2, ":rolled_2:");
        best_roll = d < best_roll ? d : best_roll;
        best_plain = a < best_plain ? a : best_plain;
        best_exp = b < best_exp ? b : best_exp;
        best_sticky = c < best_sticky ? c : best_sticky;
    }
    printf("router decision per request, best of %d rounds of %ld (target: experiment <= plain "
           "+ 1000 ns)\n",
           reps, n);
    printf("%-44s %9.1f ns\n", "plain route (req_new, pick, end, free)", best_plain);
    printf("%-44s %9.1f ns  +%.1f ns  (x%.2f)\n", "experiment 75/25 + 10% mirror (+ tag)", best_exp,
           best_exp - best_plain, best_exp / best_plain);
    printf("%-44s %9.1f ns  +%.1f ns  (x%.2f)\n", "experiment, sticky x-seldon-route", best_sticky,
           best_sticky - best_plain, best_sticky / best_plain);
    printf("%-44s %9.1f ns  +%.1f ns  (x%.2f)\n", "rollout, sticky version :rolled_2:", best_roll,
           best_roll - best_plain, best_roll / best_plain);
    printf("within 1 us: %s\n", best_exp - best_plain <= 1000 && best_sticky - best_plain <= 1000 &&
                                        best_roll - best_plain <= 1000
                                    ? "yes"
                                    : "NO");
    accuracy(rt, lb, smoke ? 20000 : picks);
    seldon_router_lb_free(lb);
    seldon_routes_release(rt);
    return 0;
}
