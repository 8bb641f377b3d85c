/*
 * seldon-scheduler's request handling under fuzzing: the input is a sequence of
 * calls, each a method (one byte, modulo the methods) and the bytes of its
 * stream (two bytes of length, then gRPC-framed protobuf, or anything), run
 * through the daemon's own handlers against an in-memory scheduler. Calls that
 * stay open (agents, routers, event watchers) end with the input, agents' as
 * disconnects. Nothing may crash or leak.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "schedd.h"
#include "sdd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define OPEN_MAX 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    sc_daemon d;
    seldon_sched_config cfg = SELDON_SCHED_CONFIG_INIT;
    uv_loop_t loop;
    sc_call *open[OPEN_MAX];
    size_t nopen = 0, nmethods = 0, off = 0, i;

    if (!quiet) {
        seldon_set_log(NULL, NULL, SELDON_LOG_NONE);
        quiet = 1;
    }
    while (sc_method_path(nmethods) != NULL)
        nmethods++;
    memset(&d, 0, sizeof(d));
    if (uv_loop_init(&loop) != 0)
        return 0;
    d.loop = &loop;
    sc_timers_init(&d);
    if (sc_metrics_setup(&d) != 0 || seldon_sched_open(&d.sched, &cfg, sc_now_ns()) != 0)
        goto out;
    while (off + 3 <= size) {
        size_t len = (size_t)data[off + 1] << 8 | data[off + 2];
        const char *path = sc_method_path(data[off] % nmethods);
        sc_call *c;
        off += 3;
        if (len > size - off)
            len = size - off;
        c = sc_call_detached(&d, path);
        if (c == NULL)
            break;
        /* In two pieces, as a stream may bring it. */
        sc_call_feed(c, data + off, len / 2);
        sc_call_feed(c, data + off + len / 2, len - len / 2);
        off += len;
        if (sc_call_open(c) && nopen < OPEN_MAX)
            open[nopen++] = c;
        else
            sc_call_end(c);
        sc_routes_now(&d);
    }
    for (i = 0; i < nopen; i++)
        sc_call_end(open[i]);
out:
    seldon_sched_close(d.sched);
    d.closing = 1;
    sc_timers_close(&d);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    seldon_buf_free(&d.route_frame);
    seldon_metrics_free(d.metrics);
    return 0;
}
