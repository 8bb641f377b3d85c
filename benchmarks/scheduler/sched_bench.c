/*
 * The scheduler benchmark, in process (libseldon alone, no sockets):
 *   - place N models on 100 server replicas and build the route table:
 *     apply (placement), take every load command and answer it LOADED
 *     (the replica states, the model states), build the routes;
 *     N = 10,000 and 100,000;
 *   - apply 10,000 models with the LMDB store (one transaction);
 *   - recover 10,000 placed models from LMDB (seldon_sched_open), then the
 *     100 replicas reconnecting with what they hold (nothing reloads).
 * Each figure is printed beside its target and Seldon Core 2's published
 * figure (its Go scheduler benchmark: 10,000 models scheduled and routed in
 * about 413 ms), with the ratio.
 *
 *   bench_scheduler [--smoke] [--reps R] [--dir DIR]
 *
 * --smoke runs small sizes once: a check that the harness works, not a
 * measurement. DIR holds the LMDB files (default: a temporary folder in /tmp).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <seldon/manifest.h>
#include <seldon/scheduler.h>

#define REPLICAS 100
#define T0 (1700000000000LL * 1000000LL)

static int smoke;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_scheduler: %s: %s (%s)\n", what, seldon_strerror(rc),
            seldon_last_error());
    exit(1);
}

static seldon_manifest *make_manifest(size_t n, double *parse_ms)
{
    size_t cap = n * 260 + 64, len = 0, i;
    char *text = malloc(cap);
    seldon_manifest *m = NULL;
    double t;
    int rc;
    if (text == NULL)
        die("malloc", SELDON_ENOMEM);
    for (i = 0; i < n; i++)
        len += (size_t)snprintf(text + len, cap - len,
                                "%sapiVersion: mlops.seldon.io/v1alpha1\n"
                                "kind: Model\n"
                                "metadata:\n"
                                "  name: model-%06zu\n"
                                "spec:\n"
                                "  storageUri: gs://seldon-models/scv2/samples/iris-sklearn\n"
                                "  requirements: [sklearn]\n"
                                "  memory: 1Mi\n",
                                i ? "---\n" : "", i);
    t = now_ms();
    if ((rc = seldon_manifest_parse(&m, text, len, "bench.yaml")) != 0)
        die("parse", rc);
    *parse_ms = now_ms() - t;
    free(text);
    return m;
}

static seldon_sched *open_sched(const char *dir)
{
    seldon_sched *s = NULL;
    seldon_sched_config cfg = SELDON_SCHED_CONFIG_INIT;
    int rc;
    cfg.state_dir = dir;
    cfg.ready_timeout_ms = 60000;
    cfg.map_size_bytes = (int64_t)4 << 30;
    if ((rc = seldon_sched_open(&s, &cfg, T0)) != 0)
        die("open", rc);
    return s;
}

static void connect_all(seldon_sched *s, seldon_sched_loaded *const *loaded, const size_t *nloaded)
{
    static const char *const caps[] = {"mlserver", "sklearn", "xgboost", "python"};
    int rc;
    uint32_t i;
    for (i = 0; i < REPLICAS; i++) {
        char http[32], grpc[32];
        seldon_sched_replica r;
        snprintf(http, sizeof(http), "10.0.%u.%u:9999", i / 250, i % 250 + 1);
        snprintf(grpc, sizeof(grpc), "10.0.%u.%u:9998", i / 250, i % 250 + 1);
        memset(&r, 0, sizeof(r));
        r.server = "mlserver";
        r.index = i;
        r.http = http;
        r.grpc = grpc;
        r.capabilities = caps;
        r.capabilities_count = 4;
        r.memory_bytes = (int64_t)8 << 30;
        r.overcommit_percent = 10;
        if ((rc = seldon_sched_agent_connect(s, &r, loaded ? loaded[i] : NULL,
                                             nloaded ? nloaded[i] : 0, T0)) != 0)
            die("agent_connect", rc);
    }
}

/* Takes every command and answers it LOADED. Returns how many. */
static size_t load_all(seldon_sched *s)
{
    seldon_sched_command c;
    size_t n = 0, cap = 1024;
    struct pending {
        uint64_t id;
        const char *server;
        uint32_t index;
        char *model;
        uint32_t version;
    } *p = malloc(cap * sizeof(*p));
    size_t i;
    int rc;
    /* Take them all first, as agents would receive them, then answer. */
    while (seldon_sched_next_command(s, &c) == 0) {
        if (n == cap) {
            cap *= 2;
            p = realloc(p, cap * sizeof(*p));
            if (p == NULL)
                die("realloc", SELDON_ENOMEM);
        }
        p[n].id = c.id;
        p[n].server = "mlserver";
        p[n].index = c.index;
        p[n].model = strdup(c.model);
        p[n].version = c.version;
        n++;
    }
    for (i = 0; i < n; i++) {
        if ((rc = seldon_sched_agent_event(s, p[i].server, p[i].index, p[i].id, p[i].model,
                                           p[i].version, SELDON_SCHED_LOADED, NULL, T0)) != 0)
            die("agent_event", rc);
        free(p[i].model);
    }
    free(p);
    return n;
}

static void drain_events(seldon_sched *s)
{
    seldon_sched_event e;
    while (seldon_sched_next_event(s, &e) == 0)
        ;
}

typedef struct place_result {
    double apply, load, routes, total;
} place_result;

static place_result place_once(const seldon_manifest *m, size_t n)
{
    seldon_sched *s = open_sched(NULL);
    seldon_routes *rt = NULL;
    place_result r;
    double t0, t1, t2, t3;
    size_t loads;
    int rc;
    connect_all(s, NULL, NULL);
    t0 = now_ms();
    if ((rc = seldon_sched_apply(s, m, NULL, T0)) != 0)
        die("apply", rc);
    t1 = now_ms();
    loads = load_all(s);
    t2 = now_ms();
    if ((rc = seldon_sched_routes(&rt, s)) != 0)
        die("routes", rc);
    t3 = now_ms();
    if (loads != n || seldon_routes_count(rt) != n) {
        fprintf(stderr, "bench_scheduler: %zu loads and %zu routes for %zu models\n", loads,
                seldon_routes_count(rt), n);
        exit(1);
    }
    seldon_routes_release(rt);
    drain_events(s);
    seldon_sched_close(s);
    r.apply = t1 - t0;
    r.load = t2 - t1;
    r.routes = t3 - t2;
    r.total = t3 - t0;
    return r;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The run with the median total. */
static place_result place_median(const seldon_manifest *m, size_t n, int reps)
{
    place_result *rs = calloc((size_t)reps, sizeof(*rs));
    double *tot = calloc((size_t)reps, sizeof(double));
    place_result out;
    int i;
    for (i = 0; i < reps; i++) {
        rs[i] = place_once(m, n);
        tot[i] = rs[i].total;
    }
    qsort(tot, (size_t)reps, sizeof(double), cmp_double);
    out = rs[0];
    for (i = 0; i < reps; i++)
        if (rs[i].total == tot[reps / 2])
            out = rs[i];
    free(rs);
    free(tot);
    return out;
}

static void row(const char *what, double ours, double target, const char *reference)
{
    printf("%-52s %10.1f ms  %10.1f ms  %5.2f  %s\n", what, ours, target, ours / target, reference);
}

int main(int argc, char **argv)
{
    int reps = 5, i, rc;
    const char *dir_arg = NULL;
    char dir[256];
    size_t n10 = 10000, n100 = 100000;
    double parse10, parse100, t, apply_lmdb, recover, reconnect;
    seldon_manifest *m10, *m100;
    place_result p10, p100;
    seldon_sched *s;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--smoke") == 0)
            smoke = 1;
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            dir_arg = argv[++i];
        else {
            printf("usage: bench_scheduler [--smoke] [--reps R] [--dir DIR]\n"
                   "Places 10,000 and 100,000 models on 100 server replicas and builds the "
                   "route table;\nrecovers 10,000 models from LMDB. DIR holds the LMDB files.\n");
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    if (smoke) {
        n10 = 500;
        n100 = 2000;
        reps = 1;
    }
    if (reps < 1)
        reps = 1;
    if (dir_arg != NULL) {
        snprintf(dir, sizeof(dir), "%s", dir_arg);
    } else {
        snprintf(dir, sizeof(dir), "/tmp/bench_scheduler_XXXXXX");
        if (mkdtemp(dir) == NULL) {
            perror("mkdtemp");
            return 1;
        }
    }

    m10 = make_manifest(n10, &parse10);
    m100 = make_manifest(n100, &parse100);
    p10 = place_median(m10, n10, reps);
    p100 = place_median(m100, n100, reps > 3 ? 3 : reps);

    /* With the store: apply in one transaction, then every load answered (one each). */
    s = open_sched(dir);
    connect_all(s, NULL, NULL);
    t = now_ms();
    if ((rc = seldon_sched_apply(s, m10, NULL, T0)) != 0)
        die("apply (LMDB)", rc);
    apply_lmdb = now_ms() - t;
    load_all(s);
    drain_events(s);
    seldon_sched_close(s);

    /* Recover: open the folder (every record decoded, indexes rebuilt). */
    t = now_ms();
    s = open_sched(dir);
    recover = now_ms() - t;
    {
        /* The replicas come back with what they hold: 10,000 confirmations, no loads. */
        seldon_sched_status *st = NULL;
        seldon_sched_loaded *loaded[REPLICAS];
        size_t nloaded[REPLICAS] = {0}, k;
        seldon_sched_command c;
        const seldon_sched_model_status *ms;
        for (k = 0; k < REPLICAS; k++)
            loaded[k] = malloc(n10 * sizeof(seldon_sched_loaded));
        if ((rc = seldon_sched_models(&st, s, NULL)) != 0)
            die("models", rc);
        for (k = 0; k < seldon_sched_status_count(st); k++) {
            ms = seldon_sched_status_model(st, k);
            uint32_t idx = ms->versions[0].replicas[0].server_index;
            loaded[idx][nloaded[idx]].model = ms->name;
            loaded[idx][nloaded[idx]].version = ms->versions[0].version;
            nloaded[idx]++;
        }
        if (seldon_sched_ready(s)) {
            fprintf(stderr, "bench_scheduler: ready before the replicas came back\n");
            return 1;
        }
        t = now_ms();
        connect_all(s, loaded, nloaded);
        reconnect = now_ms() - t;
        if (!seldon_sched_ready(s) || seldon_sched_next_command(s, &c) == 0) {
            fprintf(stderr, "bench_scheduler: the restart was not clean\n");
            return 1;
        }
        seldon_sched_status_free(st);
        for (k = 0; k < REPLICAS; k++)
            free(loaded[k]);
    }
    seldon_sched_close(s);
    if (dir_arg == NULL) {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "bench_scheduler: could not remove %s\n", dir);
    }

    printf("%s%zu and %zu models, 100 server replicas, median of %d runs\n\n",
           smoke ? "SMOKE RUN (sizes reduced, figures meaningless): " : "", n10, n100, reps);
    printf("%-52s %13s  %13s  %5s  %s\n", "case", "ours", "target", "ratio", "Seldon Core 2");
    printf("%-52s %13s  %13s  %5s  %s\n", "----------------------------------------------------",
           "-------------", "-------------", "-----", "-------------");
    {
        char what[96];
        snprintf(what, sizeof(what), "place %zu models + route table", n10);
        row(what, p10.total, 50.0, "413 ms (Go scheduler bench)");
        snprintf(what, sizeof(what), "place %zu models + route table", n100);
        row(what, p100.total, 500.0, "(not published; target: 10x the 10,000 one)");
        snprintf(what, sizeof(what), "recover %zu models from LMDB", n10);
        row(what, recover, 100.0, "(not persisted: rebuilt from agents)");
    }
    printf("\nphases (ms)                                   apply    loads   routes\n");
    printf("  %6zu models                           %9.1f %8.1f %8.1f\n", n10, p10.apply, p10.load,
           p10.routes);
    printf("  %6zu models                           %9.1f %8.1f %8.1f\n", n100, p100.apply,
           p100.load, p100.routes);
    printf("\n(info) apply %zu models with the LMDB store, one transaction: %.1f ms\n", n10,
           apply_lmdb);
    printf("(info) 100 replicas reconnect holding %zu models, nothing reloaded: %.1f ms\n", n10,
           reconnect);
    printf("(info) parse the manifest: %zu models %.1f ms, %zu models %.1f ms\n", n10, parse10,
           n100, parse100);
    seldon_manifest_free(m10);
    seldon_manifest_free(m100);
    return 0;
}
