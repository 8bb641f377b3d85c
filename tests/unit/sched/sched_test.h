/* Helpers shared by the scheduler's unit tests: a fake clock, fake agents. */
#ifndef SCHED_TEST_H
#define SCHED_TEST_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "seldon/scheduler.h"

#define MS 1000000LL
#define T0 (1700000000000LL * MS)
#define GIB (1LL << 30)

static inline seldon_sched *open_mem(void)
{
    seldon_sched *s = NULL;
    seldon_sched_config cfg = SELDON_SCHED_CONFIG_INIT;
    cr_assert_eq(seldon_sched_open(&s, &cfg, T0), 0, "%s", seldon_last_error());
    return s;
}

static inline seldon_sched *open_dir(const char *dir, int64_t now, int64_t ready_timeout_ms)
{
    seldon_sched *s = NULL;
    seldon_sched_config cfg = SELDON_SCHED_CONFIG_INIT;
    cfg.state_dir = dir;
    cfg.ready_timeout_ms = ready_timeout_ms;
    cfg.map_size_bytes = 64 << 20;
    cr_assert_eq(seldon_sched_open(&s, &cfg, now), 0, "%s", seldon_last_error());
    return s;
}

/* A temp folder for LMDB; removed by rm_dir. */
static inline char *temp_dir(void)
{
    char *d = strdup("/tmp/sched_test_XXXXXX");
    cr_assert_not_null(mkdtemp(d));
    return d;
}

static inline void rm_dir(char *d)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d);
    cr_assert_eq(system(cmd), 0);
    free(d);
}

/* Applies YAML; returns the code, versions of the first 8 resources in v. */
static inline int apply_v(seldon_sched *s, const char *yaml, uint32_t *v, int64_t now)
{
    seldon_manifest *m = NULL;
    uint32_t tmp[64] = {0};
    int rc = seldon_manifest_parse(&m, yaml, strlen(yaml), "test.yaml");
    cr_assert_eq(rc, 0, "parse: %s\n%s", seldon_last_error(), yaml);
    cr_assert(seldon_manifest_count(m) <= 64);
    rc = seldon_sched_apply(s, m, tmp, now);
    if (v)
        memcpy(v, tmp, 8 * sizeof(uint32_t));
    seldon_manifest_free(m);
    return rc;
}

static inline uint32_t apply_ok(seldon_sched *s, const char *yaml, int64_t now)
{
    uint32_t v[8];
    int rc = apply_v(s, yaml, v, now);
    cr_assert_eq(rc, 0, "apply: %s", seldon_last_error());
    return v[0];
}

/* A Model document. extra: more spec lines, each "  key: value\n". */
static inline const char *model_yaml(char *buf, size_t cap, const char *name, const char *reqs,
                                     const char *memory, int replicas, const char *extra)
{
    snprintf(buf, cap,
             "apiVersion: mlops.seldon.io/v1alpha1\n"
             "kind: Model\n"
             "metadata:\n"
             "  name: %s\n"
             "spec:\n"
             "  storageUri: file:///models/%s\n"
             "  requirements: [%s]\n"
             "%s%s%s"
             "  replicas: %d\n"
             "%s",
             name, name, reqs, memory ? "  memory: " : "", memory ? memory : "", memory ? "\n" : "",
             replicas, extra ? extra : "");
    return buf;
}

static inline uint32_t load_model(seldon_sched *s, const char *name, const char *reqs,
                                  const char *memory, int replicas, const char *extra, int64_t now)
{
    char buf[2048];
    return apply_ok(s, model_yaml(buf, sizeof(buf), name, reqs, memory, replicas, extra), now);
}

/* Registers replica index of server with caps (comma-separated, NULL: none) and memory. */
static inline int connect_r(seldon_sched *s, const char *server, uint32_t index, const char *caps,
                            int64_t memory, uint32_t overcommit, const seldon_sched_loaded *loaded,
                            size_t nloaded, int64_t now)
{
    char http[64], grpc[64], copy[512];
    const char *capv[32];
    size_t ncaps = 0;
    seldon_sched_replica r;
    snprintf(http, sizeof(http), "127.0.0.1:%u",
             10000 + (unsigned)(server[0] % 10) * 1000 + index * 2);
    snprintf(grpc, sizeof(grpc), "127.0.0.1:%u",
             10001 + (unsigned)(server[0] % 10) * 1000 + index * 2);
    if (caps != NULL) {
        char *p, *save = NULL;
        snprintf(copy, sizeof(copy), "%s", caps);
        for (p = strtok_r(copy, ",", &save); p && ncaps < 32; p = strtok_r(NULL, ",", &save))
            capv[ncaps++] = p;
    }
    memset(&r, 0, sizeof(r));
    r.server = server;
    r.index = index;
    r.http = http;
    r.grpc = grpc;
    r.capabilities = capv;
    r.capabilities_count = ncaps;
    r.memory_bytes = memory;
    r.overcommit_percent = overcommit;
    return seldon_sched_agent_connect(s, &r, loaded, nloaded, now);
}

static inline void connect_ok(seldon_sched *s, const char *server, uint32_t index, const char *caps,
                              int64_t memory, int64_t now)
{
    int rc = connect_r(s, server, index, caps, memory, 0, NULL, 0, now);
    cr_assert_eq(rc, 0, "connect: %s", seldon_last_error());
}

/* Commands taken, copied. */
typedef struct cmd {
    int op;
    uint64_t id;
    char server[64];
    uint32_t index;
    char model[64];
    uint32_t version;
    int has_spec;
    int64_t memory;
} cmd;

static inline size_t take_cmds(seldon_sched *s, cmd *out, size_t cap)
{
    seldon_sched_command c;
    size_t n = 0;
    while (seldon_sched_next_command(s, &c) == 0) {
        cr_assert(n < cap, "more commands than expected");
        out[n].op = c.op;
        out[n].id = c.id;
        snprintf(out[n].server, sizeof(out[n].server), "%s", c.server);
        out[n].index = c.index;
        snprintf(out[n].model, sizeof(out[n].model), "%s", c.model);
        out[n].version = c.version;
        out[n].has_spec = c.spec != NULL && strstr(c.spec, "\"kind\":\"Model\"") != NULL;
        out[n].memory = c.memory_bytes;
        n++;
    }
    return n;
}

/* Answers every command as done (LOADED / UNLOADED); returns how many. */
static inline size_t ack_all(seldon_sched *s, int64_t now)
{
    cmd c[256];
    size_t n = take_cmds(s, c, 256), i;
    for (i = 0; i < n; i++) {
        int rc = seldon_sched_agent_event(
            s, c[i].server, c[i].index, c[i].id, c[i].model, c[i].version,
            c[i].op == SELDON_SCHED_LOAD ? SELDON_SCHED_LOADED : SELDON_SCHED_UNLOADED, NULL, now);
        cr_assert_eq(rc, 0, "event: %s", seldon_last_error());
    }
    return n;
}

/* The state of a model's version (0: the newest), or "" when absent. Copied to a static buffer. */
static inline const char *vstate(seldon_sched *s, const char *model, uint32_t version, char *reason,
                                 size_t rcap)
{
    static char st[64];
    seldon_sched_status *ss = NULL;
    const seldon_sched_model_status *m;
    size_t i;
    st[0] = '\0';
    if (reason)
        reason[0] = '\0';
    if (seldon_sched_models(&ss, s, model) != 0)
        return st;
    m = seldon_sched_status_model(ss, 0);
    for (i = 0; i < m->versions_count; i++) {
        if (version == 0 || m->versions[i].version == version) {
            snprintf(st, sizeof(st), "%s", m->versions[i].state);
            if (reason && m->versions[i].reason)
                snprintf(reason, rcap, "%s", m->versions[i].reason);
            break;
        }
    }
    seldon_sched_status_free(ss);
    return st;
}

/* The server a version was placed on and its replica indexes as "server:0,1". */
static inline const char *placement(seldon_sched *s, const char *model, uint32_t version)
{
    static char out[256];
    seldon_sched_status *ss = NULL;
    const seldon_sched_model_status *m;
    size_t i, j, o;
    out[0] = '\0';
    if (seldon_sched_models(&ss, s, model) != 0)
        return out;
    m = seldon_sched_status_model(ss, 0);
    for (i = 0; i < m->versions_count; i++) {
        const seldon_sched_version_status *v = &m->versions[i];
        uint32_t idx[64];
        size_t n = 0, a, b;
        if (version != 0 && v->version != version)
            continue;
        for (j = 0; j < v->replicas_count && n < 64; j++)
            idx[n++] = v->replicas[j].server_index;
        for (a = 0; a < n; a++)
            for (b = a + 1; b < n; b++)
                if (idx[b] < idx[a]) {
                    uint32_t t = idx[a];
                    idx[a] = idx[b];
                    idx[b] = t;
                }
        o = (size_t)snprintf(out, sizeof(out), "%s:", v->server ? v->server : "-");
        for (j = 0; j < n && o < sizeof(out); j++)
            o += (size_t)snprintf(out + o, sizeof(out) - o, "%s%u", j ? "," : "", idx[j]);
        break;
    }
    seldon_sched_status_free(ss);
    return out;
}

/* The upstream count of a model's route (-1: no route). */
static inline int route_upstreams(seldon_sched *s, const char *model)
{
    seldon_routes *rt = NULL;
    size_t idx;
    int n = -1;
    cr_assert_eq(seldon_sched_routes(&rt, s), 0, "%s", seldon_last_error());
    if (seldon_routes_find(&idx, rt, model, strlen(model)) == 0)
        n = (int)seldon_routes_upstream_count(rt, idx);
    seldon_routes_release(rt);
    return n;
}

/* 1 when an event with this name, version (0: any) and state is queued; drains the queue. */
static inline int saw_event(seldon_sched *s, const char *name, const char *state)
{
    seldon_sched_event e;
    int seen = 0;
    while (seldon_sched_next_event(s, &e) == 0)
        if (strcmp(e.name, name) == 0 && strcmp(e.state, state) == 0)
            seen = 1;
    return seen;
}

#endif
