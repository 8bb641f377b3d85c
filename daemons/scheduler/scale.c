/*
 * Server scaling requests (docs/autoscaling.md). The scheduler library decides
 * how many replicas a server should run; this hands each request to the
 * embedding host (seldon-up starts or stops embedded replicas) or runs
 * --scale-command:
 *
 *   /bin/sh -c "$SCALE_COMMAND" seldon-scale SERVER REPLICAS
 *
 * so the command sees the server name as $1 and the wanted replica count as
 * $2, and also SELDON_SERVER, SELDON_REPLICAS and SELDON_SCALE_REASON in its
 * environment. It runs beside the loop (uv_spawn) and its exit status is
 * logged; a wrapper (kubectl scale statefulset "$1" --replicas "$2", a systemd
 * template unit per replica) makes it happen. The request stays in the
 * server's status either way.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "schedd.h"
#include "sdd.h"

extern char **environ;

typedef struct scale_child {
    uv_process_t proc;
    char server[256];
    uint32_t replicas;
    sc_daemon *d;
} scale_child;

static void count(sc_daemon *d, const char *server, const char *outcome)
{
    seldon_series *s = NULL;
    const char *labels[2] = {server, outcome};
    if (d->m_scale != NULL && seldon_metric_series(&s, d->m_scale, labels) == 0)
        seldon_series_add(s, 1);
}

static void child_closed(uv_handle_t *h)
{
    sdd_free(h->data);
}

static void child_exit(uv_process_t *p, int64_t status, int sig)
{
    scale_child *c = p->data;
    if (status == 0 && sig == 0) {
        sdd_log(SELDON_LOG_INFO, "server %s: scale command for %u replicas: done", c->server,
                c->replicas);
        count(c->d, c->server, "done");
    } else {
        sdd_log(SELDON_LOG_WARN, "server %s: scale command for %u replicas: failed (exit %lld%s%s)",
                c->server, c->replicas, (long long)status, sig ? ", signal " : "",
                sig ? strsignal(sig) : "");
        count(c->d, c->server, "failed");
    }
    uv_close((uv_handle_t *)p, child_closed);
}

static void run_command(sc_daemon *d, const seldon_sched_scale_request *rq)
{
    scale_child *c = sdd_calloc(1, sizeof(*c));
    char n[16], env_server[300], env_replicas[48], env_reason[600];
    char *args[7], **env = NULL;
    size_t ne = 0, i;
    uv_process_options_t o;
    int rc;
    if (c == NULL)
        return;
    for (ne = 0; environ != NULL && environ[ne] != NULL; ne++)
        ;
    env = sdd_calloc(ne + 4, sizeof(char *));
    if (env == NULL) {
        sdd_free(c);
        return;
    }
    snprintf(c->server, sizeof(c->server), "%s", rq->server);
    c->replicas = rq->replicas;
    c->d = d;
    snprintf(n, sizeof(n), "%u", rq->replicas);
    snprintf(env_server, sizeof(env_server), "SELDON_SERVER=%s", rq->server);
    snprintf(env_replicas, sizeof(env_replicas), "SELDON_REPLICAS=%u", rq->replicas);
    snprintf(env_reason, sizeof(env_reason), "SELDON_SCALE_REASON=%s",
             rq->reason ? rq->reason : "");
    for (i = 0; i < ne; i++)
        env[i] = environ[i];
    env[ne] = env_server;
    env[ne + 1] = env_replicas;
    env[ne + 2] = env_reason;
    args[0] = "/bin/sh";
    args[1] = "-c";
    args[2] = (char *)d->scale_command;
    args[3] = "seldon-scale";
    args[4] = c->server;
    args[5] = n;
    args[6] = NULL;
    memset(&o, 0, sizeof(o));
    o.file = args[0];
    o.args = args;
    o.env = env;
    o.exit_cb = child_exit;
    c->proc.data = c;
    rc = uv_spawn(d->loop, &c->proc, &o);
    sdd_free(env);
    if (rc != 0) {
        sdd_log(SELDON_LOG_ERROR, "server %s: scale command could not start: %s", rq->server,
                uv_strerror(rc));
        count(d, rq->server, "failed");
        uv_close((uv_handle_t *)&c->proc, child_closed);
        return;
    }
    sdd_log(SELDON_LOG_INFO, "server %s: scale command started for %u replicas (%s)", rq->server,
            rq->replicas, rq->reason ? rq->reason : "");
}

void sc_scale_pump(sc_daemon *d)
{
    seldon_sched_scale_request rq;
    int guard;
    for (guard = 0; guard < 100000 && seldon_sched_next_scale(d->sched, &rq) == 0; guard++) {
        sdd_log(SELDON_LOG_INFO, "server %s: %u replicas requested: %s", rq.server, rq.replicas,
                rq.reason ? rq.reason : "");
        if (d->scale_hook != NULL) {
            count(d, rq.server, "requested");
            d->scale_hook(d->local_data, &rq);
        } else if (d->scale_command != NULL && *d->scale_command != '\0') {
            count(d, rq.server, "requested");
            run_command(d, &rq);
        } else {
            count(d, rq.server, "no_command");
        }
    }
}

int sc_autoscale_setup(sc_daemon *d)
{
    static const char *const labels[] = {"server", "outcome"};
    seldon_sched_autoscale as = SELDON_SCHED_AUTOSCALE_INIT;
    int rc;
    if (d->cfg.scale_up_inflight > 0)
        as.scale_up_inflight = d->cfg.scale_up_inflight;
    if (d->cfg.scale_up_period_ms > 0)
        as.scale_up_period_ms = (int64_t)d->cfg.scale_up_period_ms;
    if (d->cfg.scale_down_idle_ms > 0)
        as.scale_down_idle_ms = (int64_t)d->cfg.scale_down_idle_ms;
    if (d->cfg.server_cooldown_ms > 0)
        as.server_cooldown_ms = (int64_t)d->cfg.server_cooldown_ms;
    d->scale_command = d->cfg.scale_command;
    if ((rc = seldon_sched_set_autoscale(d->sched, &as)) != 0)
        return rc;
    if (d->metrics != NULL && d->m_scale == NULL)
        rc = seldon_metrics_add(&d->m_scale, d->metrics, SELDON_METRIC_COUNTER,
                                "seldon_scheduler_scale_requests_total",
                                "Server scale requests, by server and outcome (requested, done, "
                                "failed, no_command).",
                                labels, 2, NULL, 0);
    return rc;
}
