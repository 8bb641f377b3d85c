/*
 * seldon-pipelinegateway's Kafka mode (--kafka): the pipelines run on
 * seldon-dataflow workers. The work is daemons/common/kgw.c's, shared with
 * seldon up --kafka; here it is bound to this gateway's loops and flags.
 */
#include "gw.h"

int gw_kafka_call(void *user_data, sdp_call *c)
{
    gw *g = user_data;
    return sdkg_call(&g->kafka, g->loops, g->ctl, c);
}

int gw_kafka_new(gw_kafka **out, gw *g, uv_loop_t *loop)
{
    (void)out; /* &g->kafka: the slot calls read */
    return sdkg_new(&g->kafka, loop, &g->kcfg, g->cfg.kafka_group);
}

void gw_kafka_subscribe(gw_kafka *k, const char *const *pipelines, size_t n)
{
    sdkg_subscribe(k, pipelines, n);
}

void gw_kafka_close(void *k)
{
    sdkg_close(k);
}

int gw_kafka_spec(seldon_buf *out, const char *pipeline)
{
    return sdkg_spec(out, pipeline);
}
