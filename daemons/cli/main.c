/*
 * seldon: the command-line client of the control plane (the scheduler's
 * SchedulerService) and of the data plane (inference through the router).
 * Output is JSON on stdout; a failure exits non-zero with the reason on stderr.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "rpc.h"
#include "sdd.h"
#include "seldon/kafka.h"
#include "seldon/manifest.h"
#include "seldon_control.pb-c.h"
#ifdef SELDON_CLI_KAFKA
#include "inspect.h"
#endif

typedef Seldon__Control__V1__ModelStatus ModelStatus;
typedef Seldon__Control__V1__ModelStatusResponse ModelStatusResponse;
typedef Seldon__Control__V1__ServerStatus ServerStatus;
typedef Seldon__Control__V1__ServerStatusResponse ServerStatusResponse;
typedef Seldon__Control__V1__PipelineStatus PipelineStatus;
typedef Seldon__Control__V1__PipelineVersionStatus PipelineVersionStatus;
typedef Seldon__Control__V1__PipelineStatusResponse PipelineStatusResponse;
typedef Seldon__Control__V1__ExperimentStatus ExperimentStatus;
typedef Seldon__Control__V1__ExperimentStatusResponse ExperimentStatusResponse;

static int waits_pipelines(const struct cli *c);
static int waits_experiments(const struct cli *c);
static int wait_experiment(cli *c, const char *name);
static int experiment_status(cli *c, const char *name);

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: seldon <command> [options]\n"
        "\n"
        "Commands:\n"
        "  model load -f FILE          apply the file's resources (models, servers, ...)\n"
        "  model unload NAME | -f FILE unload models\n"
        "  model status NAME | -f FILE a model's status (versions, replicas, states)\n"
        "  model list                  every model and its state\n"
        "  model infer NAME 'JSON'     an inference request (Open Inference Protocol JSON)\n"
        "  model metadata NAME         a model's metadata\n"
        "  pipeline load -f FILE       apply the file's pipelines (compiled by the scheduler:\n"
        "                              a bad one is refused naming the field)\n"
        "  pipeline unload NAME | -f FILE   unload pipelines\n"
        "  pipeline status NAME | -f FILE   a pipeline's status (version, state, the models\n"
        "                              it waits for)\n"
        "  pipeline list               every pipeline and its state\n"
        "  pipeline inspect P[.STEP[.inputs|.outputs[.TENSOR]]]\n"
        "                              the last records of the pipeline's Kafka topics (P:\n"
        "                              every step's and the pipeline's; P.inputs|outputs;\n"
        "                              a step's model topics, kept when their pipeline\n"
        "                              header is P); values decoded as JSON, one a line:\n"
        "                              TOPIC<tab>KEY<tab>VALUE\n"
        "  pipeline infer NAME 'JSON'  an inference request to a pipeline (seldon-model:\n"
        "                              NAME.pipeline on /v2/models/NAME/infer, or gRPC)\n"
        "  experiment start -f FILE    start the file's experiments (-w: wait until active)\n"
        "  experiment stop NAME | -f FILE   stop experiments (the default model's endpoint\n"
        "                              is its own again)\n"
        "  experiment status NAME | -f FILE an experiment's status (-w: wait until active)\n"
        "  experiment list             every experiment and whether it is active\n"
        "  server status NAME          a server's replicas, memory and models\n"
        "  server list                 every server\n"
        "  load -f FILE                apply every resource of the file (any kind)\n"
        "  unload -f FILE              unload every resource of the file\n"
        "  status -f FILE              the status of every resource of the file\n"
        "  up [options]                the whole system in one process (seldon-up --help)\n"
        "\n"
        "Options:\n"
        "  -f, --file-path FILE        a manifest (YAML, several documents allowed); checked\n"
        "                              here first: an error names the field and nothing is sent\n"
        "  -w, --wait STATE            wait until the models reach STATE (ModelAvailable,\n"
        "                              ModelTerminated, ...) or the pipelines do\n"
        "                              (PipelineReady, PipelineTerminated, ...); with\n"
        "                              experiment commands -w alone waits until active\n"
        "  -t, --timeout-secs N        bound on calls and waits (default 60)\n"
        "  --scheduler-host HOST:PORT  default $SELDON_SCHEDULE_HOST or 0.0.0.0:9004\n"
        "  --inference-host HOST:PORT  default $SELDON_INFER_HOST or 0.0.0.0:9000\n"
        "  --inference-mode rest|grpc  for infer and metadata (default rest)\n"
        "  --header K=V                an extra request header for infer (repeatable)\n"
        "  -i, --iterations N          send the request N times; prints the count per\n"
        "                              x-seldon-route value and the failures\n"
        "  -s, --sticky-session        with -i: send the first answer's x-seldon-route\n"
        "                              back on the later requests (pins an experiment)\n"
        "  --show-headers              print the response headers on stderr\n"
        "\n"
        "pipeline inspect:\n"
        "  --offset N                  the last N records of each partition (default 1)\n"
        "  --request-id ID             only records of this request (the key, the key's\n"
        "                              request id, or the x-request-id header)\n"
        "  --format raw|json           raw: one record a line (default); json: one document\n"
        "  -v, --verbose               the headers too\n"
        "  -t, --timeout-secs N        bound on the whole read (default 10 here)\n"
        "  --kafka-broker HOSTS        default $SELDON_KAFKA_BROKER or localhost:9092\n"
        "  --kafka-config KEY=VALUE    a librdkafka property (repeatable; SASL, TLS, ...)\n"
        "  --kafka-config-file FILE    librdkafka properties, one KEY=VALUE a line\n"
        "  --kafka-prefix P            topic prefix (default seldon)\n"
        "  --kafka-namespace NS        topic namespace (default default; --namespace too)\n"
        "  -h, --help, --version\n"
        "\n"
        "Exit status: 0 on success, 1 when the command failed (the reason on stderr),\n"
        "2 for a usage error.\n");
}

/* ------------------------------------------------------------- status output */

static void print_model(const ModelStatus *m)
{
    size_t i, j;
    printf("{\"modelName\":");
    json_str(stdout, m->name);
    printf(",\"versions\":[");
    for (i = 0; i < m->n_versions; i++) {
        const Seldon__Control__V1__ModelVersionStatus *v = m->versions[i];
        printf("%s{\"version\":%u,\"serverName\":", i ? "," : "", v->version);
        json_str(stdout, v->server);
        printf(",\"kubernetesMeta\":{},\"modelReplicaState\":{");
        for (j = 0; j < v->n_replicas; j++) {
            printf("%s\"%u\":{\"state\":", j ? "," : "", v->replicas[j]->server_index);
            json_str(stdout, v->replicas[j]->state);
            printf(",\"reason\":");
            json_str(stdout, v->replicas[j]->reason);
            printf(",\"lastChangeTimestamp\":");
            json_time(stdout, v->replicas[j]->last_change_unix_ms);
            printf("}");
        }
        printf("},\"state\":{\"state\":");
        json_str(stdout, v->state);
        printf(",\"reason\":");
        json_str(stdout, v->reason);
        printf(",\"availableReplicas\":%u,\"desiredReplicas\":%u,\"lastChangeTimestamp\":",
               v->available_replicas, v->desired_replicas);
        json_time(stdout, v->last_change_unix_ms);
        printf("}");
        if (*v->spec == '{') {
            /* Raw line breaks in JSON text are whitespace (inside strings they are
               escaped): dropped, so each status stays on one line. */
            const char *p;
            printf(",\"modelDefn\":");
            for (p = v->spec; *p; p++)
                if (*p != '\n' && *p != '\r')
                    fputc(*p, stdout);
        }
        printf("}");
    }
    printf("],\"deleted\":%s}\n", m->deleted ? "true" : "false");
}

static void print_server(const ServerStatus *s)
{
    size_t i, j;
    printf("{\"serverName\":");
    json_str(stdout, s->name);
    printf(",\"state\":");
    json_str(stdout, s->state);
    printf(",\"expectedReplicas\":%u,\"availableReplicas\":%u,\"numLoadedModelReplicas\":%u,"
           "\"kubernetesMeta\":{},\"resources\":[",
           s->desired_replicas, s->connected_replicas, s->loaded_models);
    for (i = 0; i < s->n_replicas; i++) {
        const Seldon__Control__V1__ServerReplica *r = s->replicas[i];
        printf("%s{\"replicaIdx\":%u,\"totalMemoryBytes\":%lld,\"availableMemoryBytes\":%lld,"
               "\"numLoadedModels\":%zu,\"overCommitPercentage\":%u,\"connected\":%s,"
               "\"draining\":%s,\"http\":",
               i ? "," : "", r->index, (long long)r->memory_bytes,
               (long long)r->available_memory_bytes, r->n_models, r->overcommit_percent,
               r->connected ? "true" : "false", r->draining ? "true" : "false");
        json_str(stdout, r->http);
        printf(",\"grpc\":");
        json_str(stdout, r->grpc);
        printf(",\"capabilities\":[");
        for (j = 0; j < r->n_capabilities; j++) {
            if (j)
                fputc(',', stdout);
            json_str(stdout, r->capabilities[j]);
        }
        printf("],\"models\":[");
        for (j = 0; j < r->n_models; j++) {
            if (j)
                fputc(',', stdout);
            json_str(stdout, r->models[j]);
        }
        printf("]}");
    }
    printf("]");
    if (s->requested_replicas > 0) { /* a scale request (docs/autoscaling.md) */
        printf(",\"requestedReplicas\":%u,\"scaleReason\":", s->requested_replicas);
        json_str(stdout, s->scale_reason);
    }
    printf("}\n");
}

static int fail(const char *what, const cli_result *r)
{
    fprintf(stderr, "seldon: %s: %s: %s\n", what, cli_status_name(r->status), r->message);
    return 1;
}

/* ------------------------------------------------------------------ calls */

/* ModelStatus; *out NULL with NOT_FOUND. Returns 0, or 1 after printing the failure. */
static int get_models(cli *c, const char *name, ModelStatusResponse **out, int *not_found)
{
    Seldon__Control__V1__StatusRequest req = SELDON__CONTROL__V1__STATUS_REQUEST__INIT;
    cli_result r;
    *out = NULL;
    *not_found = 0;
    req.name = (char *)(name != NULL ? name : "");
    if (cli_sched(c, &r, "ModelStatus", &req.base) != 0) {
        int rc = 1;
        if (r.status == SDR_NOT_FOUND) {
            *not_found = 1;
            rc = 0;
        } else {
            fail("ModelStatus", &r);
        }
        cli_result_free(&r);
        return rc;
    }
    *out = seldon__control__v1__model_status_response__unpack(NULL, r.body.len, r.body.data);
    cli_result_free(&r);
    if (*out == NULL) {
        fprintf(stderr, "seldon: ModelStatus: the answer is not a ModelStatusResponse\n");
        return 1;
    }
    return 0;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Polls the model's status until its version (0: the newest) is in state.
 * A model that is gone counts as ModelTerminated.
 */
static int wait_model(cli *c, const char *name, uint32_t version, const char *state)
{
    int64_t deadline = mono_ms() + (c->o.timeout_s > 0 ? c->o.timeout_s : 60) * 1000;
    char last[1100] = "not found";
    for (;;) {
        ModelStatusResponse *resp = NULL;
        int nf = 0;
        if (get_models(c, name, &resp, &nf) != 0)
            return 1;
        if (nf) {
            if (strcmp(state, "ModelTerminated") == 0)
                return 0;
        } else if (resp->n_models > 0) {
            const ModelStatus *m = resp->models[0];
            size_t i;
            for (i = 0; i < m->n_versions; i++) {
                const Seldon__Control__V1__ModelVersionStatus *v = m->versions[i];
                if (version != 0 && v->version != version)
                    continue;
                if (strcmp(v->state, state) == 0) {
                    seldon__control__v1__model_status_response__free_unpacked(resp, NULL);
                    return 0;
                }
                snprintf(last, sizeof(last), "version %u is %s%s%.1000s", v->version, v->state,
                         *v->reason ? ": " : "", v->reason);
                break;
            }
            if (m->deleted && m->n_versions == 0 && strcmp(state, "ModelTerminated") == 0) {
                seldon__control__v1__model_status_response__free_unpacked(resp, NULL);
                return 0;
            }
        }
        seldon__control__v1__model_status_response__free_unpacked(resp, NULL);
        if (mono_ms() >= deadline) {
            fprintf(stderr, "seldon: model %s: not %s after %lds: %s\n", name, state,
                    c->o.timeout_s > 0 ? c->o.timeout_s : 60L, last);
            return 1;
        }
        cli_sleep(c, 100);
    }
}

static int model_status(cli *c, const char *name)
{
    ModelStatusResponse *resp = NULL;
    int nf = 0;
    size_t i;
    if (c->o.wait_state != NULL && !waits_pipelines(c) &&
        wait_model(c, name, 0, c->o.wait_state) != 0)
        return 1;
    if (get_models(c, name, &resp, &nf) != 0)
        return 1;
    if (nf) {
        fprintf(stderr, "seldon: model %s: NOT_FOUND: no such model\n", name);
        return 1;
    }
    for (i = 0; i < resp->n_models; i++)
        print_model(resp->models[i]);
    seldon__control__v1__model_status_response__free_unpacked(resp, NULL);
    return 0;
}

static int model_list(cli *c)
{
    ModelStatusResponse *resp = NULL;
    int nf = 0;
    size_t i;
    if (get_models(c, NULL, &resp, &nf) != 0)
        return 1;
    printf("{\"models\":[");
    for (i = 0; resp != NULL && i < resp->n_models; i++) {
        const ModelStatus *m = resp->models[i];
        const Seldon__Control__V1__ModelVersionStatus *v = m->n_versions ? m->versions[0] : NULL;
        printf("%s{\"name\":", i ? "," : "");
        json_str(stdout, m->name);
        printf(",\"version\":%u,\"state\":", v ? v->version : 0);
        json_str(stdout, v ? v->state : "");
        printf(",\"reason\":");
        json_str(stdout, v ? v->reason : "");
        printf(",\"server\":");
        json_str(stdout, v ? v->server : "");
        printf("}");
    }
    printf("]}\n");
    if (resp != NULL)
        seldon__control__v1__model_status_response__free_unpacked(resp, NULL);
    return 0;
}

static int server_status(cli *c, const char *name, int list)
{
    Seldon__Control__V1__StatusRequest req = SELDON__CONTROL__V1__STATUS_REQUEST__INIT;
    ServerStatusResponse *resp;
    cli_result r;
    size_t i;
    req.name = (char *)(name != NULL ? name : "");
    if (cli_sched(c, &r, "ServerStatus", &req.base) != 0) {
        int rc = fail(name != NULL ? name : "ServerStatus", &r);
        cli_result_free(&r);
        return rc;
    }
    resp = seldon__control__v1__server_status_response__unpack(NULL, r.body.len, r.body.data);
    cli_result_free(&r);
    if (resp == NULL) {
        fprintf(stderr, "seldon: ServerStatus: the answer is not a ServerStatusResponse\n");
        return 1;
    }
    if (list) {
        printf("{\"servers\":[");
        for (i = 0; i < resp->n_servers; i++) {
            printf("%s{\"name\":", i ? "," : "");
            json_str(stdout, resp->servers[i]->name);
            printf(",\"state\":");
            json_str(stdout, resp->servers[i]->state);
            printf(",\"replicas\":%u,\"connectedReplicas\":%u,\"loadedModels\":%u}",
                   resp->servers[i]->desired_replicas, resp->servers[i]->connected_replicas,
                   resp->servers[i]->loaded_models);
        }
        printf("]}\n");
    } else {
        for (i = 0; i < resp->n_servers; i++)
            print_server(resp->servers[i]);
    }
    seldon__control__v1__server_status_response__free_unpacked(resp, NULL);
    return 0;
}

/* --------------------------------------------------------------- pipelines */

static void print_pipeline(const PipelineStatus *p)
{
    size_t i, j;
    printf("{\"pipelineName\":");
    json_str(stdout, p->name);
    printf(",\"versions\":[");
    for (i = 0; i < p->n_versions; i++) {
        const PipelineVersionStatus *v = p->versions[i];
        printf("%s{", i ? "," : "");
        if (*v->spec == '{') {
            const char *q;
            printf("\"pipeline\":");
            for (q = v->spec; *q; q++)
                if (*q != '\n' && *q != '\r')
                    fputc(*q, stdout);
            printf(",");
        }
        printf("\"state\":{\"pipelineVersion\":%u,\"status\":", v->version);
        json_str(stdout, v->state);
        printf(",\"reason\":");
        json_str(stdout, v->reason);
        printf(",\"lastChangeTimestamp\":");
        json_time(stdout, v->last_change_unix_ms);
        printf(",\"modelsReady\":%s,\"waitingFor\":[", v->models_ready ? "true" : "false");
        for (j = 0; j < v->n_waiting_for; j++) {
            if (j)
                fputc(',', stdout);
            json_str(stdout, v->waiting_for[j]);
        }
        printf("]}}");
    }
    printf("],\"deleted\":%s}\n", p->deleted ? "true" : "false");
}

/* PipelineStatus; *out NULL with NOT_FOUND. Returns 0, or 1 after printing the failure. */
static int get_pipelines(cli *c, const char *name, PipelineStatusResponse **out, int *not_found)
{
    Seldon__Control__V1__StatusRequest req = SELDON__CONTROL__V1__STATUS_REQUEST__INIT;
    cli_result r;
    *out = NULL;
    *not_found = 0;
    req.name = (char *)(name != NULL ? name : "");
    if (cli_sched(c, &r, "PipelineStatus", &req.base) != 0) {
        int rc = 1;
        if (r.status == SDR_NOT_FOUND) {
            *not_found = 1;
            rc = 0;
        } else {
            fail("PipelineStatus", &r);
        }
        cli_result_free(&r);
        return rc;
    }
    *out = seldon__control__v1__pipeline_status_response__unpack(NULL, r.body.len, r.body.data);
    cli_result_free(&r);
    if (*out == NULL) {
        fprintf(stderr, "seldon: PipelineStatus: the answer is not a PipelineStatusResponse\n");
        return 1;
    }
    return 0;
}

/*
 * Polls the pipeline's status until its version (0: any) is in state. A
 * pipeline that is gone counts as PipelineTerminated.
 */
static int wait_pipeline(cli *c, const char *name, uint32_t version, const char *state)
{
    int64_t deadline = mono_ms() + (c->o.timeout_s > 0 ? c->o.timeout_s : 60) * 1000;
    char last[1100] = "not found";
    for (;;) {
        PipelineStatusResponse *resp = NULL;
        int nf = 0, done = 0;
        if (get_pipelines(c, name, &resp, &nf) != 0)
            return 1;
        if (nf) {
            done = strcmp(state, "PipelineTerminated") == 0;
        } else if (resp->n_pipelines > 0 && resp->pipelines[0]->n_versions > 0) {
            const PipelineVersionStatus *v = resp->pipelines[0]->versions[0];
            if (version == 0 || v->version >= version) {
                done = strcmp(v->state, state) == 0 && (version == 0 || v->version == version);
                snprintf(last, sizeof(last), "version %u is %s%s%.1000s", v->version, v->state,
                         *v->reason ? ": " : "", v->reason);
            }
        }
        if (resp != NULL)
            seldon__control__v1__pipeline_status_response__free_unpacked(resp, NULL);
        if (done)
            return 0;
        if (mono_ms() >= deadline) {
            fprintf(stderr, "seldon: pipeline %s: not %s after %lds: %s\n", name, state,
                    c->o.timeout_s > 0 ? c->o.timeout_s : 60L, last);
            return 1;
        }
        cli_sleep(c, 100);
    }
}

static int pipeline_status(cli *c, const char *name)
{
    PipelineStatusResponse *resp = NULL;
    int nf = 0;
    size_t i;
    if (waits_pipelines(c) && wait_pipeline(c, name, 0, c->o.wait_state) != 0)
        return 1;
    if (get_pipelines(c, name, &resp, &nf) != 0)
        return 1;
    if (nf) {
        fprintf(stderr, "seldon: pipeline %s: NOT_FOUND: no such pipeline\n", name);
        return 1;
    }
    for (i = 0; i < resp->n_pipelines; i++)
        print_pipeline(resp->pipelines[i]);
    seldon__control__v1__pipeline_status_response__free_unpacked(resp, NULL);
    return 0;
}

static int pipeline_list(cli *c)
{
    PipelineStatusResponse *resp = NULL;
    int nf = 0;
    size_t i;
    if (get_pipelines(c, NULL, &resp, &nf) != 0)
        return 1;
    printf("{\"pipelines\":[");
    for (i = 0; resp != NULL && i < resp->n_pipelines; i++) {
        const PipelineStatus *p = resp->pipelines[i];
        const PipelineVersionStatus *v = p->n_versions ? p->versions[0] : NULL;
        printf("%s{\"name\":", i ? "," : "");
        json_str(stdout, p->name);
        printf(",\"version\":%u,\"state\":", v ? v->version : 0);
        json_str(stdout, v ? v->state : "");
        printf(",\"reason\":");
        json_str(stdout, v ? v->reason : "");
        printf("}");
    }
    printf("]}\n");
    if (resp != NULL)
        seldon__control__v1__pipeline_status_response__free_unpacked(resp, NULL);
    return 0;
}

/* 1 when -w names a pipeline state: the wait is on pipelines, not models. */
static int waits_pipelines(const struct cli *c)
{
    return c->o.wait_state != NULL && strncmp(c->o.wait_state, "Pipeline", 8) == 0;
}

/* ------------------------------------------------------------- experiments */

/* 1 when -w names the experiment state (a bare -w on an experiment command). */
static int waits_experiments(const struct cli *c)
{
    return c->o.wait_state != NULL && strncmp(c->o.wait_state, "Experiment", 10) == 0;
}

/* As Seldon's CLI prints it, plus the spec's split and the state. */
static void print_experiment(const ExperimentStatus *e, int brief)
{
    size_t i;
    printf("{\"experimentName\":");
    json_str(stdout, e->name);
    printf(",\"active\":%s,\"candidatesReady\":%s,\"mirrorReady\":%s,\"statusDescription\":",
           e->active ? "true" : "false", e->candidates_ready ? "true" : "false",
           e->mirror_ready ? "true" : "false");
    json_str(stdout, e->reason);
    if (!brief) {
        printf(",\"state\":");
        json_str(stdout, e->state);
        printf(",\"resourceType\":");
        json_str(stdout, e->resource_type);
        printf(",\"default\":");
        if (*e->default_)
            json_str(stdout, e->default_);
        else
            printf("null");
        printf(",\"candidates\":[");
        for (i = 0; i < e->n_candidates; i++) {
            printf("%s{\"name\":", i ? "," : "");
            json_str(stdout, e->candidates[i]->name);
            printf(",\"weight\":%u}", e->candidates[i]->weight);
        }
        printf("],\"mirror\":");
        if (*e->mirror) {
            printf("{\"name\":");
            json_str(stdout, e->mirror);
            printf(",\"percent\":%u}", e->mirror_percent);
        } else {
            printf("null");
        }
        printf(",\"lastChangeTimestamp\":");
        json_time(stdout, e->last_change_unix_ms);
    }
    printf(",\"kubernetesMeta\":{}}\n");
}

/* ExperimentStatus; *out NULL with NOT_FOUND. Returns 0, or 1 after printing the failure. */
static int get_experiments(cli *c, const char *name, ExperimentStatusResponse **out, int *not_found)
{
    Seldon__Control__V1__StatusRequest req = SELDON__CONTROL__V1__STATUS_REQUEST__INIT;
    cli_result r;
    *out = NULL;
    *not_found = 0;
    req.name = (char *)(name != NULL ? name : "");
    if (cli_sched(c, &r, "ExperimentStatus", &req.base) != 0) {
        int rc = 1;
        if (r.status == SDR_NOT_FOUND) {
            *not_found = 1;
            rc = 0;
        } else {
            fail("ExperimentStatus", &r);
        }
        cli_result_free(&r);
        return rc;
    }
    *out = seldon__control__v1__experiment_status_response__unpack(NULL, r.body.len, r.body.data);
    cli_result_free(&r);
    if (*out == NULL) {
        fprintf(stderr,
                "seldon: ExperimentStatus: the answer is not an ExperimentStatusResponse\n");
        return 1;
    }
    return 0;
}

/* Polls the experiment until it is active (every candidate and the mirror routed). */
static int wait_experiment(cli *c, const char *name)
{
    int64_t deadline = mono_ms() + (c->o.timeout_s > 0 ? c->o.timeout_s : 60) * 1000;
    char last[1100] = "not found";
    for (;;) {
        ExperimentStatusResponse *resp = NULL;
        int nf = 0, done = 0;
        if (get_experiments(c, name, &resp, &nf) != 0)
            return 1;
        if (!nf && resp->n_experiments > 0) {
            done = resp->experiments[0]->active;
            snprintf(last, sizeof(last), "%.1000s", resp->experiments[0]->reason);
        }
        if (resp != NULL)
            seldon__control__v1__experiment_status_response__free_unpacked(resp, NULL);
        if (done)
            return 0;
        if (mono_ms() >= deadline) {
            fprintf(stderr, "seldon: experiment %s: not active after %lds: %s\n", name,
                    c->o.timeout_s > 0 ? c->o.timeout_s : 60L, last);
            return 1;
        }
        cli_sleep(c, 100);
    }
}

static int experiment_status(cli *c, const char *name)
{
    ExperimentStatusResponse *resp = NULL;
    int nf = 0;
    size_t i;
    if (waits_experiments(c) && wait_experiment(c, name) != 0)
        return 1;
    if (get_experiments(c, name, &resp, &nf) != 0)
        return 1;
    if (nf) {
        fprintf(stderr, "seldon: experiment %s: NOT_FOUND: no such experiment\n", name);
        return 1;
    }
    for (i = 0; i < resp->n_experiments; i++)
        print_experiment(resp->experiments[i], 0);
    seldon__control__v1__experiment_status_response__free_unpacked(resp, NULL);
    return 0;
}

static int experiment_list(cli *c)
{
    ExperimentStatusResponse *resp = NULL;
    int nf = 0;
    size_t i;
    if (get_experiments(c, NULL, &resp, &nf) != 0)
        return 1;
    printf("{\"experiments\":[");
    for (i = 0; resp != NULL && i < resp->n_experiments; i++) {
        const ExperimentStatus *e = resp->experiments[i];
        printf("%s{\"name\":", i ? "," : "");
        json_str(stdout, e->name);
        printf(",\"active\":%s,\"statusDescription\":", e->active ? "true" : "false");
        json_str(stdout, e->reason);
        printf("}");
    }
    printf("]}\n");
    if (resp != NULL)
        seldon__control__v1__experiment_status_response__free_unpacked(resp, NULL);
    return 0;
}

/* --------------------------------------------------------------- manifests */

static int read_file(char **out, size_t *len, const char *path)
{
    FILE *f = fopen(path, "rb");
    long n;
    char *buf;
    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
        fseek(f, 0, SEEK_SET) != 0) {
        if (f != NULL)
            fclose(f);
        fprintf(stderr, "seldon: %s: cannot read the file\n", path);
        return 1;
    }
    buf = sdd_malloc((size_t)n + 1);
    if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        sdd_free(buf);
        fclose(f);
        fprintf(stderr, "seldon: %s: cannot read the file\n", path);
        return 1;
    }
    fclose(f);
    buf[n] = '\0';
    *out = buf;
    *len = (size_t)n;
    return 0;
}

/* Parses the file here: a bad manifest is reported without contacting the scheduler. */
static int load_manifest(seldon_manifest **m, char **text, size_t *len, const char *path)
{
    if (read_file(text, len, path) != 0)
        return 1;
    if (seldon_manifest_parse(m, *text, *len, path) != 0) {
        fprintf(stderr, "seldon: %s\n", seldon_last_error());
        sdd_free(*text);
        *text = NULL;
        return 1;
    }
    return 0;
}

/* only: 0 for every kind, else the one kind acted on. */
static int apply_file(cli *c, const char *path, seldon_kind only)
{
    seldon_manifest *m = NULL;
    Seldon__Control__V1__ApplyRequest req = SELDON__CONTROL__V1__APPLY_REQUEST__INIT;
    Seldon__Control__V1__ApplyResponse *resp = NULL;
    cli_result r;
    char *text = NULL;
    size_t len, i;
    int rc = 1;

    if (load_manifest(&m, &text, &len, path) != 0)
        return 1;
    for (i = 0; only != 0 && i < seldon_manifest_count(m); i++) {
        const seldon_resource *res = seldon_manifest_at(m, i);
        if (res->kind != only) {
            fprintf(stderr,
                    "seldon: %s: document %zu is a %s; use `seldon load -f` for "
                    "files with several kinds\n",
                    path, res->document, seldon_kind_name(res->kind));
            goto out;
        }
    }
    req.manifest = text;
    req.source = (char *)path;
    if (cli_sched(c, &r, "Apply", &req.base) != 0) {
        rc = fail("Apply", &r);
        cli_result_free(&r);
        goto out;
    }
    resp = seldon__control__v1__apply_response__unpack(NULL, r.body.len, r.body.data);
    cli_result_free(&r);
    if (resp == NULL) {
        fprintf(stderr, "seldon: Apply: the answer is not an ApplyResponse\n");
        goto out;
    }
    if (c->o.wait_state != NULL) {
        const char *kind = waits_experiments(c) ? "Experiment"
                           : waits_pipelines(c) ? "Pipeline"
                                                : "Model";
        for (i = 0; i < resp->n_resources; i++) {
            const Seldon__Control__V1__ResourceRef *ref = resp->resources[i];
            if (strcmp(ref->kind, kind) != 0)
                continue;
            if (kind[0] == 'E' ? wait_experiment(c, ref->name) != 0
                               : (kind[0] == 'M' ? wait_model : wait_pipeline)(
                                     c, ref->name, ref->version, c->o.wait_state) != 0)
                goto out;
        }
    }
    printf("{\"resources\":[");
    for (i = 0; i < resp->n_resources; i++) {
        printf("%s{\"kind\":", i ? "," : "");
        json_str(stdout, resp->resources[i]->kind);
        printf(",\"name\":");
        json_str(stdout, resp->resources[i]->name);
        printf(",\"version\":%u}", resp->resources[i]->version);
    }
    printf("]}\n");
    rc = 0;
out:
    if (resp != NULL)
        seldon__control__v1__apply_response__free_unpacked(resp, NULL);
    seldon_manifest_free(m);
    sdd_free(text);
    return rc;
}

static int unload_one(cli *c, const char *kind, const char *name)
{
    Seldon__Control__V1__UnloadRequest req = SELDON__CONTROL__V1__UNLOAD_REQUEST__INIT;
    cli_result r;
    char what[400];
    req.kind = (char *)kind;
    req.name = (char *)name;
    if (cli_sched(c, &r, "Unload", &req.base) != 0) {
        snprintf(what, sizeof(what), "unload %s %s", kind, name);
        fail(what, &r);
        cli_result_free(&r);
        return 1;
    }
    cli_result_free(&r);
    if (c->o.wait_state != NULL && strcmp(kind, "Model") == 0 && !waits_pipelines(c) &&
        wait_model(c, name, 0, c->o.wait_state) != 0)
        return 1;
    if (c->o.wait_state != NULL && strcmp(kind, "Pipeline") == 0 && waits_pipelines(c) &&
        wait_pipeline(c, name, 0, c->o.wait_state) != 0)
        return 1;
    printf("{\"kind\":");
    json_str(stdout, kind);
    printf(",\"name\":");
    json_str(stdout, name);
    printf(",\"unloaded\":true}\n");
    return 0;
}

static int file_each(cli *c, const char *path, seldon_kind only, int status)
{
    seldon_manifest *m = NULL;
    char *text = NULL;
    size_t len, i;
    int rc = 0;
    if (load_manifest(&m, &text, &len, path) != 0)
        return 1;
    for (i = 0; i < seldon_manifest_count(m) && rc == 0; i++) {
        const seldon_resource *res = seldon_manifest_at(m, i);
        if (only != 0 && res->kind != only)
            continue;
        if (!status) {
            rc = unload_one(c, seldon_kind_name(res->kind), res->name);
        } else if (res->kind == SELDON_KIND_MODEL) {
            rc = model_status(c, res->name);
        } else if (res->kind == SELDON_KIND_SERVER) {
            rc = server_status(c, res->name, 0);
        } else if (res->kind == SELDON_KIND_PIPELINE) {
            rc = pipeline_status(c, res->name);
        } else if (res->kind == SELDON_KIND_EXPERIMENT) {
            rc = experiment_status(c, res->name);
        } else {
            printf("{\"kind\":");
            json_str(stdout, seldon_kind_name(res->kind));
            printf(",\"name\":");
            json_str(stdout, res->name);
            printf(",\"status\":null}\n");
        }
    }
    seldon_manifest_free(m);
    sdd_free(text);
    return rc;
}

/* ------------------------------------------------------------------- main */

static int parse_args(cli_opts *o, int argc, char **argv)
{
    enum {
        O_SCHED = 256,
        O_INFER,
        O_MODE,
        O_HEADER,
        O_SHOW,
        O_VERSION,
        O_OFFSET,
        O_RID,
        O_FORMAT,
        O_KBROKER,
        O_KCONFIG,
        O_KFILE,
        O_KPREFIX,
        O_KNS
    };
    static const struct option opts[] = {
        {"file-path", required_argument, NULL, 'f'},
        {"file", required_argument, NULL, 'f'},
        {"wait", required_argument, NULL, 'w'},
        {"timeout-secs", required_argument, NULL, 't'},
        {"timeout", required_argument, NULL, 't'},
        {"scheduler-host", required_argument, NULL, O_SCHED},
        {"inference-host", required_argument, NULL, O_INFER},
        {"inference-mode", required_argument, NULL, O_MODE},
        {"header", required_argument, NULL, O_HEADER},
        {"iterations", required_argument, NULL, 'i'},
        {"show-headers", no_argument, NULL, O_SHOW},
        {"sticky-session", no_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, O_VERSION},
        {"offset", required_argument, NULL, O_OFFSET},
        {"request-id", required_argument, NULL, O_RID},
        {"format", required_argument, NULL, O_FORMAT},
        {"verbose", no_argument, NULL, 'v'},
        {"kafka-broker", required_argument, NULL, O_KBROKER},
        {"kafka-config", required_argument, NULL, O_KCONFIG},
        {"kafka-config-file", required_argument, NULL, O_KFILE},
        {"kafka-config-path", required_argument, NULL, O_KFILE},
        {"kafka-prefix", required_argument, NULL, O_KPREFIX},
        {"kafka-namespace", required_argument, NULL, O_KNS},
        {"namespace", required_argument, NULL, O_KNS},
        {NULL, 0, NULL, 0},
    };
    const char *env;
    long v;
    int opt;
    env = getenv("SELDON_SCHEDULE_HOST");
    snprintf(o->sched_host, sizeof(o->sched_host), "%s",
             env != NULL && *env ? env : "0.0.0.0:9004");
    env = getenv("SELDON_INFER_HOST");
    snprintf(o->infer_host, sizeof(o->infer_host), "%s",
             env != NULL && *env ? env : "0.0.0.0:9000");
    o->mode = "rest";
    o->timeout_s = 60;
    o->iterations = 1;
    o->offset = 1;
    /* Experiment commands take -w alone, as Seldon's CLI does: it waits until active. */
    for (opt = 1; opt < argc; opt++)
        if (strcmp(argv[opt], "experiment") == 0)
            break;
    if (opt < argc) {
        int i;
        for (i = 1; i < argc; i++)
            if ((strcmp(argv[i], "-w") == 0 || strcmp(argv[i], "--wait") == 0) &&
                (i + 1 == argc || argv[i + 1][0] == '-'))
                argv[i] = (char *)"--wait=ExperimentActive";
    }
    while ((opt = getopt_long(argc, argv, "f:w:t:i:shv", opts, NULL)) != -1) {
        switch (opt) {
        case 'f':
            o->file = optarg;
            break;
        case 'w':
            o->wait_state = optarg;
            break;
        case 't':
            if (sdd_parse_long(optarg, 1, 86400 * 7, &v) < 0) {
                fprintf(stderr, "seldon: --timeout-secs: bad value '%s'\n", optarg);
                return -1;
            }
            o->timeout_s = v;
            o->timeout_given = 1;
            break;
        case 'i':
            if (sdd_parse_long(optarg, 1, 100000000, &v) < 0) {
                fprintf(stderr, "seldon: --iterations: bad value '%s'\n", optarg);
                return -1;
            }
            o->iterations = v;
            break;
        case O_SCHED:
            snprintf(o->sched_host, sizeof(o->sched_host), "%s", optarg);
            break;
        case O_INFER:
            snprintf(o->infer_host, sizeof(o->infer_host), "%s", optarg);
            break;
        case O_MODE:
            if (strcmp(optarg, "rest") != 0 && strcmp(optarg, "grpc") != 0) {
                fprintf(stderr, "seldon: --inference-mode: '%s' is not rest or grpc\n", optarg);
                return -1;
            }
            o->mode = optarg;
            break;
        case O_HEADER:
            if (strchr(optarg, '=') == NULL || optarg[0] == '=') {
                fprintf(stderr, "seldon: --header: '%s' is not key=value\n", optarg);
                return -1;
            }
            if (o->nheaders == CLI_HEADERS_MAX) {
                fprintf(stderr, "seldon: --header: at most %d\n", CLI_HEADERS_MAX);
                return -1;
            }
            o->headers[o->nheaders++] = optarg;
            break;
        case O_SHOW:
            o->show_headers = 1;
            break;
        case 's':
            o->sticky = 1;
            break;
        case O_OFFSET:
            if (sdd_parse_long(optarg, 1, 1000000, &v) < 0) {
                fprintf(stderr, "seldon: --offset: bad value '%s' (1 to 1000000)\n", optarg);
                return -1;
            }
            o->offset = v;
            break;
        case O_RID:
            o->request_id = optarg;
            break;
        case O_FORMAT:
            if (strcmp(optarg, "json") != 0 && strcmp(optarg, "raw") != 0 &&
                strcmp(optarg, "text") != 0) {
                fprintf(stderr, "seldon: --format: '%s' is not raw or json\n", optarg);
                return -1;
            }
            o->json = strcmp(optarg, "json") == 0;
            break;
        case 'v':
            o->verbose = 1;
            break;
        case O_KBROKER:
            if (optarg[0] == '\0' || strchr(optarg, ' ') != NULL) {
                fprintf(stderr, "seldon: --kafka-broker: bad value '%s' (HOST:PORT[,...])\n",
                        optarg);
                return -1;
            }
            o->kafka_broker = optarg;
            break;
        case O_KCONFIG:
        case O_KFILE:
            if (o->nkafka == CLI_KAFKA_ARGS_MAX) {
                fprintf(stderr, "seldon: --kafka-config(-file): at most %d\n", CLI_KAFKA_ARGS_MAX);
                return -1;
            }
            if (opt == O_KCONFIG && (strchr(optarg, '=') == NULL || optarg[0] == '=')) {
                fprintf(stderr, "seldon: --kafka-config: '%s' is not KEY=VALUE\n", optarg);
                return -1;
            }
            o->kafka_kinds[o->nkafka] = opt == O_KCONFIG ? 'p' : 'f';
            o->kafka_args[o->nkafka++] = optarg;
            break;
        case O_KPREFIX:
        case O_KNS:
            if (!seldon_kafka_name_ok(optarg, strlen(optarg))) {
                fprintf(stderr, "seldon: --%s: bad value '%s' (1 to 249 of A-Z a-z 0-9 . _ -)\n",
                        opt == O_KPREFIX ? "kafka-prefix" : "kafka-namespace", optarg);
                return -1;
            }
            if (opt == O_KPREFIX)
                o->kafka_prefix = optarg;
            else
                o->kafka_ns = optarg;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        case O_VERSION:
            printf("seldon %s\n", seldon_version());
            exit(0);
        default:
            fprintf(stderr, "seldon: see seldon --help\n");
            return -1;
        }
    }
    return 0;
}

static int need(const char *what, int have)
{
    if (!have)
        fprintf(stderr, "seldon: %s (see seldon --help)\n", what);
    return have;
}

static int run(cli *c, int nargs, char **args)
{
    const char *noun = nargs > 0 ? args[0] : "";
    const char *verb = nargs > 1 ? args[1] : "";
    const char *name = nargs > 2 ? args[2] : NULL;

    if (strcmp(noun, "model") == 0) {
        if (strcmp(verb, "load") == 0)
            return need("model load needs -f FILE", c->o.file != NULL && nargs == 2)
                       ? apply_file(c, c->o.file, SELDON_KIND_MODEL)
                       : 2;
        if (strcmp(verb, "unload") == 0) {
            if (c->o.file != NULL && nargs == 2)
                return file_each(c, c->o.file, SELDON_KIND_MODEL, 0);
            return need("model unload needs NAME or -f FILE", name != NULL && nargs == 3)
                       ? unload_one(c, "Model", name)
                       : 2;
        }
        if (strcmp(verb, "status") == 0) {
            if (c->o.file != NULL && nargs == 2)
                return file_each(c, c->o.file, SELDON_KIND_MODEL, 1);
            return need("model status needs NAME or -f FILE", name != NULL && nargs == 3)
                       ? model_status(c, name)
                       : 2;
        }
        if (strcmp(verb, "list") == 0)
            return need("model list takes no argument", nargs == 2) ? model_list(c) : 2;
        if (strcmp(verb, "infer") == 0)
            return need("model infer needs NAME and a JSON request", nargs == 4)
                       ? cli_infer(c, name, args[3], 0)
                       : 2;
        if (strcmp(verb, "metadata") == 0)
            return need("model metadata needs NAME", nargs == 3) ? cli_metadata(c, name) : 2;
    } else if (strcmp(noun, "pipeline") == 0) {
        if (strcmp(verb, "load") == 0)
            return need("pipeline load needs -f FILE", c->o.file != NULL && nargs == 2)
                       ? apply_file(c, c->o.file, SELDON_KIND_PIPELINE)
                       : 2;
        if (strcmp(verb, "unload") == 0) {
            if (c->o.file != NULL && nargs == 2)
                return file_each(c, c->o.file, SELDON_KIND_PIPELINE, 0);
            return need("pipeline unload needs NAME or -f FILE", name != NULL && nargs == 3)
                       ? unload_one(c, "Pipeline", name)
                       : 2;
        }
        if (strcmp(verb, "status") == 0) {
            if (c->o.file != NULL && nargs == 2)
                return file_each(c, c->o.file, SELDON_KIND_PIPELINE, 1);
            return need("pipeline status needs NAME or -f FILE", name != NULL && nargs == 3)
                       ? pipeline_status(c, name)
                       : 2;
        }
        if (strcmp(verb, "list") == 0)
            return need("pipeline list takes no argument", nargs == 2) ? pipeline_list(c) : 2;
        if (strcmp(verb, "infer") == 0)
            return need("pipeline infer needs NAME and a JSON request", nargs == 4)
                       ? cli_infer(c, name, args[3], 1)
                       : 2;
        if (strcmp(verb, "inspect") == 0) {
#ifdef SELDON_CLI_KAFKA
            return need("pipeline inspect needs PIPELINE[.STEP[.inputs|.outputs[.TENSOR]]]",
                        nargs == 3)
                       ? cli_inspect(c, name)
                       : 2;
#else
            fprintf(stderr, "seldon: pipeline inspect: built without librdkafka\n");
            return 1;
#endif
        }
    } else if (strcmp(noun, "experiment") == 0) {
        if (strcmp(verb, "start") == 0)
            return need("experiment start needs -f FILE", c->o.file != NULL && nargs == 2)
                       ? apply_file(c, c->o.file, SELDON_KIND_EXPERIMENT)
                       : 2;
        if (strcmp(verb, "stop") == 0) {
            if (c->o.file != NULL && nargs == 2)
                return file_each(c, c->o.file, SELDON_KIND_EXPERIMENT, 0);
            return need("experiment stop needs NAME or -f FILE", name != NULL && nargs == 3)
                       ? unload_one(c, "Experiment", name)
                       : 2;
        }
        if (strcmp(verb, "status") == 0) {
            if (c->o.file != NULL && nargs == 2)
                return file_each(c, c->o.file, SELDON_KIND_EXPERIMENT, 1);
            return need("experiment status needs NAME or -f FILE", name != NULL && nargs == 3)
                       ? experiment_status(c, name)
                       : 2;
        }
        if (strcmp(verb, "list") == 0)
            return need("experiment list takes no argument", nargs == 2) ? experiment_list(c) : 2;
    } else if (strcmp(noun, "server") == 0) {
        if (strcmp(verb, "status") == 0) {
            if (c->o.file != NULL && nargs == 2)
                return file_each(c, c->o.file, SELDON_KIND_SERVER, 1);
            return need("server status needs NAME", name != NULL && nargs == 3)
                       ? server_status(c, name, 0)
                       : 2;
        }
        if (strcmp(verb, "list") == 0)
            return need("server list takes no argument", nargs == 2) ? server_status(c, NULL, 1)
                                                                     : 2;
    } else if (strcmp(noun, "load") == 0 || strcmp(noun, "unload") == 0 ||
               strcmp(noun, "status") == 0) {
        char what[64];
        snprintf(what, sizeof(what), "%s needs -f FILE", noun);
        if (!need(what, c->o.file != NULL && nargs == 1))
            return 2;
        if (noun[0] == 'l')
            return apply_file(c, c->o.file, 0);
        return file_each(c, c->o.file, 0, noun[0] == 's');
    }
    if (nargs == 0)
        usage(stderr);
    else
        fprintf(stderr, "seldon: unknown command '%s%s%s' (see seldon --help)\n", noun,
                nargs > 1 ? " " : "", verb);
    return 2;
}

static void client_closed(void *arg)
{
    (void)arg;
}

static void pool_freed(void *arg)
{
    (void)arg;
}

/*
 * `seldon up ...` runs seldon-up with the same arguments: the one beside this binary (an
 * install's bin/), the build tree's (../up/), else the first on PATH.
 */
static int exec_up(char **argv)
{
    static const char *const rel[] = {"seldon-up", "../up/seldon-up"};
    char path[4096];
    ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 32);
    size_t i;
    argv[1] = "seldon-up";
    for (i = 0; n > 0 && i < sizeof(rel) / sizeof(rel[0]); i++) {
        char *slash;
        path[n] = '\0';
        slash = strrchr(path, '/');
        if (slash == NULL)
            break;
        strcpy(slash + 1, rel[i]);
        if (access(path, X_OK) == 0)
            execv(path, argv + 1);
    }
    execvp("seldon-up", argv + 1);
    fprintf(stderr, "seldon: up: cannot run seldon-up: %s\n", strerror(errno));
    return 1;
}

int main(int argc, char **argv)
{
    static cli c;
    int rc;

    if (argc >= 2 && strcmp(argv[1], "up") == 0)
        return exec_up(argv);
    signal(SIGPIPE, SIG_IGN);
    if (parse_args(&c.o, argc, argv) < 0)
        return 2;
    if (uv_loop_init(&c.loop) != 0) {
        fprintf(stderr, "seldon: cannot start an event loop\n");
        return 1;
    }
    rc = run(&c, argc - optind, argv + optind);
    fflush(stdout);
    if (c.h2 != NULL)
        sd2_client_close(c.h2, client_closed, NULL);
    if (c.rest != NULL)
        sdc_pool_free(c.rest, pool_freed, NULL);
    uv_run(&c.loop, UV_RUN_DEFAULT);
    uv_loop_close(&c.loop);
    return rc;
}
