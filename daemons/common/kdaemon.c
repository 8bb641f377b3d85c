/* See kdaemon.h. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "flags.h"
#include "kdaemon.h"
#include "loops.h"
#include "sdd.h"

int sdkd_check_kafka(const char *program, const sdk_config *c)
{
    for (int consumer = 0; consumer < 2; consumer++) {
        rd_kafka_conf_t *conf = NULL;
        if (sdk_conf_build(&conf, c, consumer) != 0) {
            fprintf(stderr, "%s: %s\n", program, seldon_last_error());
            return -1;
        }
        rd_kafka_conf_destroy(conf);
    }
    return 0;
}

typedef struct kd_app {
    const sdkd_engine *e;
    void *obj;
    seldon_metrics *metrics;
    sdh_server *metrics_http;
    sdf_countdown stopped;
} kd_app;

static void metrics_handler(void *user_data, sdh_req *req, const sdh_request *request)
{
    kd_app *a = user_data;
    sdf_metrics_respond(req, request, a->metrics);
}

static void all_closed(void *arg)
{
    kd_app *a = arg;
    sdf_countdown_done(&a->stopped);
}

static void stop_on_loop(void *arg)
{
    kd_app *a = arg;
    a->e->stop(a->obj, all_closed, a);
}

int sdkd_run(const sdkd_engine *e)
{
    sdf_countdown init = SDF_COUNTDOWN_INIT;
    sdl_loops *loops = NULL;
    kd_app a;
    sigset_t sigs;
    int rc, sig, mport = -1;

    memset(&a, 0, sizeof(a));
    a.e = e;
    a.stopped = init;
    sdf_signals_block(&sigs, 0);
    rc = seldon_metrics_new(&a.metrics);
    if (rc == 0)
        rc = sdl_loops_new(&loops, 1);
    if (rc == 0)
        rc = e->create(&a.obj, e->cfg, sdl_loops_loop(loops, 0), a.metrics);
    if (rc == 0)
        rc = sdf_metrics_listen(&a.metrics_http, &mport, sdl_loops_loop(loops, 0), e->host,
                                e->metrics_port, metrics_handler, &a);
    if (rc == 0)
        rc = sdl_loops_post(loops, 0, e->start, a.obj);
    if (rc == 0)
        rc = sdl_loops_start(loops);
    if (rc != 0) {
        sdd_log(SELDON_LOG_ERROR, "start-up failed: %s", seldon_last_error());
        return 1;
    }
    printf("serving metrics=%d\n", mport);
    fflush(stdout);

    sig = sdf_signals_wait(&sigs);
    sdd_log(SELDON_LOG_INFO, "%s: %s, then exiting", sdf_signal_name(sig), e->stopping);
    sdf_countdown_add(&a.stopped, 1);
    sdl_loops_post(loops, 0, stop_on_loop, &a);
    /* The engine's own grace bounds this; the extra is for the commit and the flush. */
    sdf_countdown_wait(&a.stopped, e->grace_ms + 60000);
    if (a.metrics_http != NULL)
        sdh_server_stop(a.metrics_http, 0);
    sdl_loops_stop(loops);
    sdl_loops_join(loops);
    sdh_server_free(a.metrics_http);
    sdl_loops_free(loops);
    e->destroy(a.obj);
    seldon_metrics_free(a.metrics);
    sdd_log(SELDON_LOG_INFO, "stopped");
    return 0;
}
