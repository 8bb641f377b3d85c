/*
 * The router fed by the scheduler: one gRPC server stream,
 * RouteService.Subscribe on --scheduler-host, over an h2c client of the
 * control loop. Every RouteTable received becomes a seldon_routes table,
 * installed on every loop exactly as a SIGHUP reload is, and saved to the
 * routes cache, so that a router started while the scheduler is down serves
 * the last routes it was given.
 *
 * The subscription itself (reconnection with a jittered, doubling backoff up
 * to --resubscribe-max, one info line per outage) is daemons/common/sub.c's:
 * the routes in force stay while it is down.
 *
 * Threads: everything here runs on the control loop, which serves no request:
 * building a large table and writing the cache (with fsync) delay no request.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "router.h"
#include "sdd.h"
#include "seldon_control.pb-c.h"
#include "sub.h"

#define SUB_PATH "/seldon.control.v1.RouteService/Subscribe"

struct rt_sub {
    router *r;
    sds_sub *sub;
    char authority[280];
};

/* ------------------------------------------------------------ protobuf allocation */

static void *pb_alloc(void *data, size_t size)
{
    (void)data;
    return sdd_malloc(size);
}

static void pb_free(void *data, void *p)
{
    (void)data;
    sdd_free(p);
}

static ProtobufCAllocator pb_allocator = {pb_alloc, pb_free, NULL};

/* ------------------------------------------------------------ the cache file */

uint64_t rt_sub_cached_generation(const char *path)
{
    char line[256];
    const char *g;
    uint64_t gen = 0;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return 0;
    if (fgets(line, sizeof(line), f) != NULL && strncmp(line, "# seldon-router:", 16) == 0 &&
        (g = strstr(line, "generation ")) != NULL)
        gen = strtoull(g + 11, NULL, 10);
    fclose(f);
    return gen;
}

/*
 * Writes the table to the cache atomically: a temporary file beside it, flushed
 * and synced, renamed over it, and the folder synced so that the rename holds
 * across a crash. The first line, a comment, keeps the generation for the next
 * start; the rest is the routes file format.
 */
static int save_cache(rt_sub *sub, const seldon_routes *t, uint64_t generation)
{
    const char *path = sub->r->cache_path;
    seldon_buf b = SELDON_BUF_INIT;
    char head[200], tmp[4200], dir[4096];
    const char *slash;
    size_t off = 0;
    int fd = -1, rc = 0, n;

    n = snprintf(head, sizeof(head),
                 "# seldon-router: routes from the scheduler at %s, generation %llu\n",
                 sub->authority, (unsigned long long)generation);
    if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        return sdd_error(SELDON_EINVAL, "%s: path too long", path);
    if (seldon_buf_reserve(&b, (size_t)n) != 0)
        return SELDON_ENOMEM;
    memcpy(b.data, head, (size_t)n);
    b.len = (size_t)n;
    if ((rc = seldon_routes_serialize(&b, t)) != 0)
        goto out;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = sdd_error(SELDON_EIO, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    while (off < b.len) {
        ssize_t w = write(fd, b.data + off, b.len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            rc = sdd_error(SELDON_EIO, "%s: %s", tmp, strerror(errno));
            goto out;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        fd = -1;
        rc = sdd_error(SELDON_EIO, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        rc = sdd_error(SELDON_EIO, "%s: %s", path, strerror(errno));
        goto out;
    }
    slash = strrchr(path, '/');
    if (slash == NULL)
        snprintf(dir, sizeof(dir), ".");
    else
        snprintf(dir, sizeof(dir), "%.*s", slash == path ? 1 : (int)(slash - path), path);
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd); /* best effort: some file systems refuse it on a folder */
        close(fd);
        fd = -1;
    }
out:
    if (fd >= 0) {
        close(fd);
        unlink(tmp);
    } else if (rc != 0) {
        unlink(tmp);
    }
    seldon_buf_free(&b);
    return rc;
}

/* ------------------------------------------------------------ tables */

/* Builds a table from a RouteTable message, with the defaults in force. */
static int build_table(seldon_routes **out, router *r, const Seldon__Control__V1__RouteTable *m)
{
    seldon_routes_builder *b = NULL;
    seldon_routes_defaults d;
    size_t i, j;
    int rc;

    pthread_mutex_lock(&r->routes_mu);
    d = r->defaults;
    pthread_mutex_unlock(&r->routes_mu);
    rc = seldon_routes_builder_new(&b, &d);
    for (i = 0; i < m->n_routes && rc == 0; i++) {
        const Seldon__Control__V1__Route *rt = m->routes[i];
        rc = seldon_routes_builder_add_route(b, rt->name, rt->timeout_ms, rt->retries);
        for (j = 0; j < rt->n_upstreams && rc == 0; j++) {
            const Seldon__Control__V1__RouteUpstream *u = rt->upstreams[j];
            rc = seldon_routes_builder_add_version(b, u->http[0] ? u->http : NULL,
                                                   u->grpc[0] ? u->grpc : NULL, u->version);
        }
        for (j = 0; j < rt->n_candidates && rc == 0; j++)
            rc = seldon_routes_builder_add_candidate(b, rt->candidates[j]->name,
                                                     rt->candidates[j]->weight);
        if (rc == 0 && rt->mirror[0] != '\0')
            rc = seldon_routes_builder_set_mirror(b, rt->mirror, rt->mirror_percent);
    }
    if (rc == 0)
        rc = seldon_routes_builder_finish(out, b);
    seldon_routes_builder_free(b);
    if (rc == 0 && (rc = rt_routes_check(*out, NULL)) != 0) {
        seldon_routes_release(*out);
        *out = NULL;
    }
    return rc;
}

/* What is said once a table is in force on every loop. */
typedef struct table_note {
    seldon_series *gauge; /* the generation gauge; the subscription may be gone by then */
    char authority[280];
    uint64_t generation;
    size_t count;
    int same;
} table_note;

/* Runs on the last loop to swap (or here, when nothing was swapped). */
static void table_in_force(void *arg)
{
    table_note *n = arg;
    seldon_series_set(n->gauge, (double)n->generation);
    sdd_log(SELDON_LOG_INFO, "scheduler %s: route table generation %llu: %zu route(s)%s",
            n->authority, (unsigned long long)n->generation, n->count,
            n->same ? ", unchanged" : "");
    sdd_free(n);
}

/* One RouteTable message received: build it, save it, install it. */
static void on_table(rt_sub *sub, const uint8_t *data, size_t len)
{
    router *r = sub->r;
    Seldon__Control__V1__RouteTable *m;
    seldon_routes *t = NULL;
    table_note *note;
    uint64_t gen;
    int same;

    seldon_series_add(r->m_tables_received, 1);
    m = seldon__control__v1__route_table__unpack(&pb_allocator, len, data);
    if (m == NULL) {
        seldon_series_add(r->m_tables_rejected, 1);
        sdd_log(SELDON_LOG_ERROR,
                "scheduler %s: a message of %zu bytes is not a RouteTable: the routes in "
                "force stay",
                sub->authority, len);
        return;
    }
    gen = m->generation;
    if (build_table(&t, r, m) != 0) {
        seldon_series_add(r->m_tables_rejected, 1);
        sdd_log(SELDON_LOG_ERROR,
                "scheduler %s: route table generation %llu rejected: %s: the routes in "
                "force stay",
                sub->authority, (unsigned long long)gen, seldon_last_error());
        seldon__control__v1__route_table__free_unpacked(m, &pb_allocator);
        return;
    }
    seldon__control__v1__route_table__free_unpacked(m, &pb_allocator);
    note = sdd_malloc(sizeof(*note));
    if (note != NULL) {
        note->gauge = r->m_generation;
        memcpy(note->authority, sub->authority, sizeof(note->authority));
        note->generation = gen;
        note->count = seldon_routes_count(t);
    }
    /* Saved before it is served: whatever a client got, a restarted router serves too. */
    if (save_cache(sub, t, gen) != 0)
        sdd_log(SELDON_LOG_ERROR, "routes cache: %s: a restart would not see these routes",
                seldon_last_error());
    pthread_mutex_lock(&r->routes_mu);
    same = r->from_scheduler && seldon_routes_equal(r->routes, t);
    r->from_scheduler = 1;
    if (note != NULL)
        note->same = same;
    if (!same)
        rt_routes_install(r, t, note != NULL ? table_in_force : NULL, note);
    else
        seldon_routes_release(t);
    pthread_mutex_unlock(&r->routes_mu);
    if (same && note != NULL)
        table_in_force(note);
}

/* ------------------------------------------------------------ the subscription */

static int make_request(void *user_data, seldon_buf *out)
{
    rt_sub *sub = user_data;
    Seldon__Control__V1__RouteSubscribeRequest req =
        SELDON__CONTROL__V1__ROUTE_SUBSCRIBE_REQUEST__INIT;
    size_t len;
    req.router = (char *)sub->r->cfg.name;
    len = seldon__control__v1__route_subscribe_request__get_packed_size(&req);
    if (len > 512) /* --name is bounded when parsed */
        return sdd_error(SELDON_EINVAL, "the router's name is too long");
    if (seldon_buf_reserve(out, len) != 0)
        return SELDON_ENOMEM;
    out->len = seldon__control__v1__route_subscribe_request__pack(&req, out->data);
    return 0;
}

static void on_message(void *user_data, const uint8_t *data, size_t len)
{
    on_table(user_data, data, len);
}

static void on_connected(void *user_data, int up, const sd2_header *h, size_t n)
{
    rt_sub *sub = user_data;
    (void)h;
    (void)n;
    seldon_series_set(sub->r->m_sub_connected, up ? 1.0 : 0.0);
}

static void in_force(void *user_data, char *out, size_t cap)
{
    rt_sub *sub = user_data;
    router *r = sub->r;
    size_t n;
    pthread_mutex_lock(&r->routes_mu);
    n = seldon_routes_count(r->routes);
    pthread_mutex_unlock(&r->routes_mu);
    snprintf(out, cap, "serving on the %zu route(s) in force", n);
}

static const sds_hooks hooks = {make_request, on_message, on_connected, in_force};

int rt_sub_parse_host(char *host, size_t cap, int *port, const char *spec)
{
    return sds_parse_host(host, cap, port, spec, 9002);
}

int rt_sub_new(rt_sub **out, router *r, uv_loop_t *loop)
{
    rt_sub *sub;
    sds_config c;
    int rc;
    *out = NULL;
    sub = sdd_calloc(1, sizeof(*sub));
    if (sub == NULL)
        return SELDON_ENOMEM;
    sub->r = r;
    memset(&c, 0, sizeof(c));
    c.scheduler_host = r->cfg.scheduler_host;
    c.path = SUB_PATH;
    c.user_agent = "seldon-router";
    c.subscribed = "subscribed to routes";
    c.again = "subscribed again";
    c.resubscribe_max_ms = r->cfg.resubscribe_max_ms;
    rc = sds_new(&sub->sub, loop, &c, &hooks, sub);
    if (rc != 0) {
        sdd_free(sub);
        return rc;
    }
    snprintf(sub->authority, sizeof(sub->authority), "%s", sds_authority(sub->sub));
    seldon_series_set(r->m_sub_connected, 0.0);
    *out = sub;
    return 0;
}

void rt_sub_start(void *arg)
{
    rt_sub *sub = arg;
    sds_start(sub->sub);
}

void rt_sub_close(void *arg)
{
    rt_sub *sub = arg;
    /* The subscription frees itself once closed; this part goes now (nothing of the
       subscription calls back into it after sds_close). */
    sds_close(sub->sub);
    sdd_free(sub);
}
