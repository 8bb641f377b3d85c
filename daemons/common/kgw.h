/*
 * The pipeline gateway's Kafka side, shared by seldon-pipelinegateway --kafka
 * and seldon up --kafka: pipelines served through plserve (plserve.h) as one
 * step each, that step being the pipeline run elsewhere over Kafka. A call
 * produces the request to the pipeline's inputs topic and waits for the record
 * of its key on the outputs topic (kgw.c says how every wait ends).
 *
 * The host keeps an `sdkg *` slot that outlives the loops: sdkg_new() fills it
 * and sdkg_close() empties it, both on the control loop that owns the Kafka
 * clients; calls posted while it is empty fail with a clear error.
 *
 * Thread safety: sdkg_call() on an ingress loop of `loops` (the plserve call
 * hook); everything else on the control loop (loop 0 of `ctl`).
 */
#ifndef SDKG_KGW_H
#define SDKG_KGW_H

#include <stddef.h>

#include <uv.h>

#include "kafka.h"
#include "loops.h"
#include "plserve.h"

typedef struct sdkg sdkg;

/*
 * The plserve call hook's work for a host whose client sits in *slot: the call's
 * request is encoded here and handed to the control loop (loop 0 of ctl), which
 * produces it; its answer comes back to this ingress loop of loops. Returns 0, or
 * an error (nothing started): the request has no usable x-request-id, the loops
 * are stopping.
 */
int sdkg_call(sdkg **slot, sdl_loops *loops, sdl_loops *ctl, sdp_call *c);

/*
 * Control loop: creates the producer and the consumer (group) on loop and sets
 * *slot. kcfg is borrowed and must outlive the client. Returns 0 or SELDON_E*.
 */
int sdkg_new(sdkg **slot, uv_loop_t *loop, const sdk_config *kcfg, const char *group);

/* Control loop: consume the outputs topics of these pipelines (and no other). */
void sdkg_subscribe(sdkg *k, const char *const *pipelines, size_t n);

/* Control loop: 1 when a partition of the pipeline's outputs topic is assigned here. */
int sdkg_holds(const sdkg *k, const char *pipeline);

/*
 * Control loop: the calls waiting fail ("the gateway is stopping"), *slot is
 * emptied, the clients close; the client frees itself once its handles are closed.
 */
void sdkg_close(void *k);

/* The one-step Pipeline manifest (JSON) pipeline is served as: "<pipeline>-kafka". */
int sdkg_spec(seldon_buf *out, const char *pipeline);

#endif
