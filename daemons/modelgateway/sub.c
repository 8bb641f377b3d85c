/*
 * Which models to serve, from the scheduler: RouteService.Subscribe, as
 * seldon-router subscribes (a stream of RouteTable messages, the whole table
 * each time). Every table's route names become the models whose inputs topics
 * the gateway consumes.
 *
 * The subscription itself (reconnection with a jittered, doubling backoff up to
 * a second, one info line per outage) is daemons/common/sub.c's: the models in
 * force stay while it is down.
 */
#include <stdio.h>
#include <string.h>

#include "mg.h"
#include "sdd.h"
#include "seldon_control.pb-c.h"
#include "sub.h"

#define SUB_PATH "/seldon.control.v1.RouteService/Subscribe"
#define RETRY_MAX_MS 1000

struct mg_sub {
    mg *g;
    sds_sub *sub;
    char spec[300]; /* the scheduler's HOST:PORT, kept for sds_config's life */
};

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

static void on_table(void *user_data, const uint8_t *data, size_t len)
{
    mg_sub *sub = user_data;
    Seldon__Control__V1__RouteTable *m =
        seldon__control__v1__route_table__unpack(&pb_allocator, len, data);
    const char **names;
    size_t i;
    if (m == NULL) {
        sdd_log(SELDON_LOG_ERROR, "scheduler %s: a message of %zu bytes is not a RouteTable",
                sds_authority(sub->sub), len);
        return;
    }
    names = sdd_calloc(m->n_routes ? m->n_routes : 1, sizeof(char *));
    if (names != NULL) {
        for (i = 0; i < m->n_routes; i++)
            names[i] = m->routes[i]->name;
        sdd_log(SELDON_LOG_INFO, "scheduler %s: route table generation %llu: %zu route(s)",
                sds_authority(sub->sub), (unsigned long long)m->generation, m->n_routes);
        mg_route_models(sub->g, names, m->n_routes);
        sdd_free(names);
    }
    seldon__control__v1__route_table__free_unpacked(m, &pb_allocator);
}

static int make_request(void *user_data, seldon_buf *out)
{
    Seldon__Control__V1__RouteSubscribeRequest req =
        SELDON__CONTROL__V1__ROUTE_SUBSCRIBE_REQUEST__INIT;
    (void)user_data;
    req.router = (char *)"seldon-modelgateway";
    if (seldon_buf_reserve(out, seldon__control__v1__route_subscribe_request__get_packed_size(
                                    &req)) != 0)
        return SELDON_ENOMEM;
    out->len = seldon__control__v1__route_subscribe_request__pack(&req, out->data);
    return 0;
}

static void in_force(void *user_data, char *out, size_t cap)
{
    (void)user_data;
    snprintf(out, cap, "keeping the models in force");
}

static const sds_hooks hooks = {make_request, on_table, NULL, in_force};

int mg_sub_new(mg_sub **out, mg *g, uv_loop_t *loop, const char *host, int port)
{
    mg_sub *sub = sdd_calloc(1, sizeof(*sub));
    sds_config c;
    int rc;
    *out = NULL;
    if (sub == NULL)
        return SELDON_ENOMEM;
    sub->g = g;
    snprintf(sub->spec, sizeof(sub->spec), strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
    memset(&c, 0, sizeof(c));
    c.scheduler_host = sub->spec;
    c.path = SUB_PATH;
    c.user_agent = "seldon-modelgateway";
    c.subscribed = "subscribed to routes";
    c.again = "subscribed again";
    c.resubscribe_max_ms = RETRY_MAX_MS;
    rc = sds_new(&sub->sub, loop, &c, &hooks, sub);
    if (rc != 0) {
        sdd_free(sub);
        return rc;
    }
    *out = sub;
    return 0;
}

void mg_sub_start(mg_sub *sub)
{
    sds_start(sub->sub);
}

void mg_sub_close(mg_sub *sub)
{
    sds_close(sub->sub); /* no hook runs from here on */
    sdd_free(sub);
}
