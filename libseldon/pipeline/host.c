/*
 * Pipelines in a host program: the engine's events turned into model calls
 * (include/seldon/pipeline_host.h).
 *
 * Everything runs on the thread that drives the host, except the completion
 * of an inference, which a runtime may make from any thread: completions go
 * through one locked list, which the driving thread drains. A synchronous
 * runtime completes inside execute, so its answer is drained by the same
 * pump that dispatched the call, and a pipeline of such models ends inside
 * the push that started it.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "repo/repo.h"
#include "seldon/manifest.h"
#include "seldon/pipeline.h"
#include "seldon/pipeline_host.h"

/* A model the steps call, by name. */
typedef struct hmodel {
    char *name;
    seldon_model *model; /* one reference held */
} hmodel;

/* One step call in flight: the inference handed to the runtime. */
typedef struct hcall {
    struct seldon_infer inf; /* first: the runtime sees a seldon_infer */
    struct hcall *next;
    seldon_pipeline_host *host;
    uint64_t call_id;
    seldon_msg *response;
    int32_t status;
    char *error; /* status < 0: the model's message, or NULL */
} hcall;

struct seldon_pipeline_host {
    seldon_pipeline_engine *engine;
    seldon_pipeline **pipes; /* document order; one reference each */
    size_t npipes;
    seldon_repo *repo;
    seldon_pipeline_result_fn on_result;
    void (*wake)(void *);
    void *user_data;

    hmodel *models;
    size_t nmodels, cap_models;

    hcall *free_calls; /* driving thread only */

    pthread_mutex_t lock; /* guards done */
    hcall *done;          /* completed calls, newest first */

    /* seldon_pipeline_host_infer()'s request, caught before on_result. */
    int cap_active, cap_done;
    const char *cap_pipe;
    char cap_id[32];
    size_t cap_id_len;
    int32_t cap_status;
    seldon_msg *cap_msg;
    char *cap_error;
    uint64_t seq;
};

/* ---- models ---- */

static hmodel *model_slot(seldon_pipeline_host *h, const char *name)
{
    size_t i;
    for (i = 0; i < h->nmodels; i++)
        if (strcmp(h->models[i].name, name) == 0)
            return &h->models[i];
    return NULL;
}

/* Takes ownership of model's reference (released on failure). */
static int model_put(seldon_pipeline_host *h, const char *name, seldon_model *model)
{
    hmodel *s = model_slot(h, name);
    if (s != NULL) {
        seldon_model_release(s->model);
        s->model = model;
        return 0;
    }
    if (h->nmodels == h->cap_models) {
        size_t cap = h->cap_models ? 2 * h->cap_models : 8;
        hmodel *m = sdn_realloc(h->models, cap * sizeof(*m));
        if (m == NULL) {
            seldon_model_release(model);
            return sdn_error(SELDON_ENOMEM, "pipeline host: out of memory");
        }
        h->models = m;
        h->cap_models = cap;
    }
    s = &h->models[h->nmodels];
    s->name = sdn_strndup(name, strlen(name));
    if (s->name == NULL) {
        seldon_model_release(model);
        return sdn_error(SELDON_ENOMEM, "pipeline host: out of memory");
    }
    s->model = model;
    h->nmodels++;
    return 0;
}

/* The model of step `name`: attached, else acquired from the repository. NULL with the error set.
 */
static seldon_model *model_find(seldon_pipeline_host *h, const char *name)
{
    hmodel *s = model_slot(h, name);
    seldon_model *m = NULL;
    if (s != NULL)
        return s->model;
    if (h->repo == NULL) {
        sdn_error(SELDON_ENOTFOUND, "model %s is not attached (and the host has no repository)",
                  name);
        return NULL;
    }
    if (seldon_repo_acquire(&m, h->repo, name, strlen(name), NULL, 0) < 0)
        return NULL;
    if (model_put(h, name, m) < 0)
        return NULL;
    return m;
}

int seldon_pipeline_host_attach_model(seldon_pipeline_host *host, const char *name,
                                      seldon_model *model)
{
    if (host == NULL || name == NULL || model == NULL)
        return sdn_error(SELDON_EINVAL, "pipeline_host_attach_model: NULL argument");
    seldon_model_retain(model);
    return model_put(host, name, model);
}

int seldon_pipeline_host_attach_runtime(seldon_pipeline_host *host, const char *name,
                                        const seldon_runtime *runtime, void *state)
{
    seldon_model *m;
    int rc;
    if (host == NULL || name == NULL || runtime == NULL)
        return sdn_error(SELDON_EINVAL, "pipeline_host_attach_runtime: NULL argument");
    if (runtime->abi_major != SELDON_RUNTIME_ABI_MAJOR)
        return sdn_error(SELDON_EVERSION, "model %s: runtime ABI major %u, libseldon speaks %u",
                         name, runtime->abi_major, (unsigned)SELDON_RUNTIME_ABI_MAJOR);
    if (runtime->load == NULL || runtime->execute == NULL)
        return sdn_error(SELDON_EINVAL, "model %s: the runtime has no load or no execute", name);
    m = sdn_calloc(1, sizeof(*m));
    if (m == NULL)
        return sdn_error(SELDON_ENOMEM, "model %s: out of memory", name);
    atomic_init(&m->refs, 1);
    sdn_arena_init(&m->arena, NULL, 0);
    pthread_mutex_init(&m->exec_lock, NULL);
    m->runtime = runtime;
    m->state = state;
    m->settings.name = sdn_arena_strndup(&m->arena, name, strlen(name));
    m->settings.implementation = runtime->name ? runtime->name : "host";
    m->settings.version = "";
    m->settings.uri = "";
    m->settings.dir = "";
    m->settings.platform = "";
    m->settings.extra_json = "{}";
    if (m->settings.name == NULL) {
        rc = sdn_error(SELDON_ENOMEM, "model %s: out of memory", name);
        goto fail;
    }
    rc = runtime->load(m);
    if (rc < 0) {
        sdn_error(rc, "model %s: %s", name, m->error ? m->error : seldon_strerror(rc));
        goto fail;
    }
    m->loaded = 1;
    if (runtime->metadata != NULL && (rc = runtime->metadata(m)) < 0) {
        sdn_error(rc, "model %s: metadata: %s", name, m->error ? m->error : seldon_strerror(rc));
        goto fail;
    }
    return model_put(host, name, m);
fail:
    sdn_model_unref(m);
    return rc;
}

int seldon_pipeline_host_detach(seldon_pipeline_host *host, const char *name)
{
    hmodel *s;
    if (host == NULL || name == NULL)
        return sdn_error(SELDON_EINVAL, "pipeline_host_detach: NULL argument");
    s = model_slot(host, name);
    if (s == NULL)
        return sdn_error(SELDON_ENOTFOUND, "model %s is not held", name);
    seldon_model_release(s->model);
    sdn_free(s->name);
    *s = host->models[--host->nmodels];
    return 0;
}

int seldon_pipeline_host_check(seldon_pipeline_host *host)
{
    size_t i, j;
    if (host == NULL)
        return sdn_error(SELDON_EINVAL, "pipeline_host_check: NULL argument");
    for (i = 0; i < host->npipes; i++) {
        const seldon_pipeline *p = host->pipes[i];
        for (j = 0; j < seldon_pipeline_step_count(p); j++) {
            const char *step = seldon_pipeline_step_name(p, j);
            if (model_find(host, step) == NULL)
                return sdn_error(SELDON_ENOTFOUND, "pipeline \"%s\": step \"%s\": %s",
                                 seldon_pipeline_name(p), step, seldon_last_error());
        }
    }
    return 0;
}

/* ---- calls ---- */

/* The host this thread is pumping, if any: completions made inside a pump need no wake. */
static _Thread_local seldon_pipeline_host *pumping;

static void call_done(void *user_data, seldon_infer *infer, int32_t status, const char *message)
{
    hcall *c = user_data;
    seldon_pipeline_host *h = c->host;
    (void)infer;
    c->status = status;
    if (status < 0 && message != NULL)
        c->error = sdn_strndup(message, strlen(message));
    pthread_mutex_lock(&h->lock);
    c->next = h->done;
    h->done = c;
    pthread_mutex_unlock(&h->lock);
    if (pumping != h && h->wake != NULL)
        h->wake(h->user_data);
}

static hcall *call_get(seldon_pipeline_host *h)
{
    hcall *c = h->free_calls;
    if (c != NULL) {
        h->free_calls = c->next;
        return c;
    }
    return sdn_malloc(sizeof(*c));
}

static void call_put(seldon_pipeline_host *h, hcall *c)
{
    sdn_free(c->error);
    c->error = NULL;
    c->next = h->free_calls;
    h->free_calls = c;
}

static void dispatch(seldon_pipeline_host *h, const seldon_pipeline_event *ev, int64_t now_ns)
{
    seldon_model *m = model_find(h, ev->model);
    seldon_infer *inf;
    hcall *c;
    if (m == NULL || seldon_model_check_request(m, ev->msg) < 0) {
        seldon_pipeline_engine_fail(h->engine, ev->call_id, seldon_last_error(), now_ns);
        return;
    }
    c = call_get(h);
    if (c == NULL) {
        seldon_pipeline_engine_fail(h->engine, ev->call_id, "out of memory", now_ns);
        return;
    }
    memset(c, 0, sizeof(*c));
    c->host = h;
    c->call_id = ev->call_id;
    c->response = seldon_pipeline_engine_msg(h->engine, SELDON_MSG_RESPONSE);
    if (c->response == NULL) {
        call_put(h, c);
        seldon_pipeline_engine_fail(h->engine, ev->call_id, "out of memory", now_ns);
        return;
    }
    c->inf.request = ev->msg;
    c->inf.response = c->response;
    c->inf.done = call_done;
    c->inf.user_data = c;
    atomic_init(&c->inf.completed, 0);
    inf = &c->inf;
    seldon_model_execute(m, &inf, 1);
}

/* Copies an answer for seldon_pipeline_host_infer(): its tensors, id and model. */
static int msg_copy(seldon_msg **out, const seldon_msg *src)
{
    seldon_msg *m = NULL;
    const char *s;
    size_t len, i, k;
    int rc = seldon_msg_new(&m, SELDON_MSG_RESPONSE);
    if (rc < 0)
        goto out;
    s = seldon_msg_id(src, &len);
    if ((rc = seldon_msg_set_id(m, s, len)) < 0)
        goto out;
    s = seldon_msg_model_name(src, &len);
    if (len > 0 && (rc = seldon_msg_set_model(m, s, len, NULL, 0)) < 0)
        goto out;
    for (i = 0; i < seldon_msg_tensor_count(src); i++) {
        seldon_tensor t;
        if ((rc = seldon_msg_tensor(&t, src, i)) < 0 ||
            (rc = seldon_msg_add_tensor(&k, m, t.name, t.name_len, t.datatype, t.shape, t.ndim,
                                        t.data, t.nbytes, SELDON_TENSOR_COPY)) < 0 ||
            (rc = seldon_msg_set_binary(m, k, seldon_msg_is_binary(src, i))) < 0)
            goto out;
    }
out:
    if (rc < 0) {
        seldon_msg_free(m);
        m = NULL;
    }
    *out = m;
    return rc;
}

static void deliver(seldon_pipeline_host *h, const seldon_pipeline_event *ev)
{
    seldon_pipeline_result r;
    if (h->cap_active && !h->cap_done && ev->request_id_len == h->cap_id_len &&
        memcmp(ev->request_id, h->cap_id, h->cap_id_len) == 0 &&
        strcmp(ev->pipeline, h->cap_pipe) == 0) {
        h->cap_done = 1;
        if (ev->kind == SELDON_PIPELINE_EVENT_OUTPUT) {
            h->cap_status = msg_copy(&h->cap_msg, ev->msg);
            if (h->cap_status < 0)
                h->cap_error = sdn_strndup(seldon_last_error(), strlen(seldon_last_error()));
        } else {
            h->cap_status = ev->code < 0 ? ev->code : SELDON_EINTERNAL;
            h->cap_error =
                sdn_strndup(ev->error ? ev->error : "", ev->error ? strlen(ev->error) : 0);
        }
        return;
    }
    if (h->on_result == NULL)
        return;
    memset(&r, 0, sizeof(r));
    r.pipeline = ev->pipeline;
    r.request_id = ev->request_id;
    r.request_id_len = ev->request_id_len;
    r.headers = ev->headers;
    r.headers_count = ev->headers_count;
    if (ev->kind == SELDON_PIPELINE_EVENT_OUTPUT) {
        r.response = ev->msg;
    } else {
        r.status = ev->code < 0 ? ev->code : SELDON_EINTERNAL;
        r.error_kind = ev->error_kind;
        r.error = ev->error ? ev->error : "";
    }
    h->on_result(h->user_data, &r);
}

static hcall *take_done(seldon_pipeline_host *h)
{
    hcall *list, *fifo = NULL;
    pthread_mutex_lock(&h->lock);
    list = h->done;
    h->done = NULL;
    pthread_mutex_unlock(&h->lock);
    while (list != NULL) { /* newest first: reverse to answer in completion order */
        hcall *n = list->next;
        list->next = fifo;
        fifo = list;
        list = n;
    }
    return fifo;
}

/* Runs every event the engine has, and every answer that came back, until neither is left. */
static void pump(seldon_pipeline_host *h, int64_t now_ns)
{
    seldon_pipeline_event ev;
    hcall *c;
    seldon_pipeline_host *outer = pumping;
    pumping = h;
    for (;;) {
        while (seldon_pipeline_engine_poll(&ev, h->engine) == 1) {
            if (ev.kind == SELDON_PIPELINE_EVENT_CALL)
                dispatch(h, &ev, now_ns);
            else
                deliver(h, &ev);
        }
        c = take_done(h);
        if (c == NULL)
            break;
        while (c != NULL) {
            hcall *n = c->next;
            if (c->status == 0) {
                seldon_pipeline_engine_answer(h->engine, c->call_id, c->response, now_ns);
            } else {
                seldon_msg_free(c->response);
                seldon_pipeline_engine_fail(h->engine, c->call_id,
                                            c->error ? c->error : seldon_strerror(c->status),
                                            now_ns);
            }
            call_put(h, c);
            c = n;
        }
    }
    pumping = outer;
}

/* ---- the host ---- */

typedef struct build_ctx {
    seldon_pipeline **pipes;
    const seldon_resource **res;
    size_t n;
} build_ctx;

static int lookup(const seldon_pipeline **out, void *user_data, const char *name)
{
    build_ctx *b = user_data;
    size_t i;
    for (i = 0; i < b->n; i++)
        if (b->pipes[i] != NULL && strcmp(seldon_pipeline_name(b->pipes[i]), name) == 0) {
            *out = b->pipes[i];
            return 0;
        }
    return SELDON_ENOTFOUND;
}

int seldon_pipeline_host_new(seldon_pipeline_host **out, const char *text, size_t len,
                             const seldon_pipeline_host_options *opts)
{
    static const seldon_pipeline_host_options defaults = SELDON_PIPELINE_HOST_OPTIONS_INIT;
    seldon_pipeline_options eo = SELDON_PIPELINE_OPTIONS_INIT;
    seldon_pipeline_host *h = NULL;
    seldon_manifest *man = NULL;
    build_ctx b = {NULL, NULL, 0};
    size_t i, n, left, progress;
    int rc;

    if (out == NULL || text == NULL)
        return sdn_error(SELDON_EINVAL, "pipeline_host_new: NULL argument");
    *out = NULL;
    if (opts == NULL)
        opts = &defaults;
    if (opts->version < 1 || opts->version > SELDON_PIPELINE_HOST_OPTIONS_VERSION)
        return sdn_error(SELDON_EVERSION, "pipeline_host_new: options version %u is unknown",
                         opts->version);
    rc = seldon_manifest_parse(&man, text, len, "pipeline host");
    if (rc < 0)
        return rc;
    n = seldon_manifest_count(man);
    b.pipes = sdn_calloc(n, sizeof(*b.pipes));
    b.res = sdn_calloc(n, sizeof(*b.res));
    h = sdn_calloc(1, sizeof(*h));
    if (b.pipes == NULL || b.res == NULL || h == NULL) {
        rc = sdn_error(SELDON_ENOMEM, "pipeline_host_new: out of memory");
        goto out;
    }
    pthread_mutex_init(&h->lock, NULL);
    for (i = 0; i < n; i++) {
        const seldon_resource *r = seldon_manifest_at(man, i);
        if (r->kind == SELDON_KIND_PIPELINE)
            b.res[b.n++] = r;
    }
    if (b.n == 0) {
        rc = sdn_error(SELDON_EINVAL, "pipeline host: no Pipeline in the manifest");
        goto out;
    }
    /* Chained pipelines compile after those they read: pass after pass until none is left. */
    for (left = b.n, progress = 1; left > 0 && progress;) {
        progress = 0;
        for (i = 0; i < b.n; i++) {
            if (b.pipes[i] != NULL)
                continue;
            if (seldon_pipeline_compile(&b.pipes[i], b.res[i]->name, &b.res[i]->spec.pipeline,
                                        lookup, &b) == 0) {
                left--;
                progress = 1;
            }
        }
    }
    for (i = 0; i < b.n; i++)
        if (b.pipes[i] == NULL) { /* again, for its own error message */
            rc = seldon_pipeline_compile(&b.pipes[i], b.res[i]->name, &b.res[i]->spec.pipeline,
                                         lookup, &b);
            if (rc == 0)
                rc =
                    sdn_error(SELDON_EINVAL, "pipeline \"%s\": cannot be compiled", b.res[i]->name);
            goto out;
        }
    eo.timeout_ms = opts->timeout_ms;
    eo.max_requests = opts->max_requests;
    rc = seldon_pipeline_engine_new(&h->engine, (const seldon_pipeline *const *)b.pipes, b.n, &eo);
    if (rc < 0)
        goto out;
    h->pipes = b.pipes;
    h->npipes = b.n;
    b.pipes = NULL;
    h->repo = opts->repo;
    h->on_result = opts->on_result;
    h->wake = opts->wake;
    h->user_data = opts->user_data;
    *out = h;
    h = NULL;
out:
    if (b.pipes != NULL)
        for (i = 0; i < b.n; i++)
            seldon_pipeline_free(b.pipes[i]);
    sdn_free(b.pipes);
    sdn_free(b.res);
    seldon_manifest_free(man);
    seldon_pipeline_host_free(h);
    return rc;
}

void seldon_pipeline_host_free(seldon_pipeline_host *host)
{
    size_t i;
    hcall *c;
    if (host == NULL)
        return;
    for (c = take_done(host); c != NULL;) {
        hcall *n = c->next;
        seldon_msg_free(c->response);
        call_put(host, c);
        c = n;
    }
    seldon_pipeline_engine_free(host->engine);
    for (i = 0; i < host->npipes; i++)
        seldon_pipeline_free(host->pipes[i]);
    sdn_free(host->pipes);
    for (i = 0; i < host->nmodels; i++) {
        seldon_model_release(host->models[i].model);
        sdn_free(host->models[i].name);
    }
    sdn_free(host->models);
    while ((c = host->free_calls) != NULL) {
        host->free_calls = c->next;
        sdn_free(c);
    }
    seldon_msg_free(host->cap_msg);
    sdn_free(host->cap_error);
    pthread_mutex_destroy(&host->lock);
    sdn_free(host);
}

size_t seldon_pipeline_host_pipeline_count(const seldon_pipeline_host *host)
{
    return host ? host->npipes : 0;
}

const char *seldon_pipeline_host_pipeline_name(const seldon_pipeline_host *host, size_t i)
{
    return host && i < host->npipes ? seldon_pipeline_name(host->pipes[i]) : NULL;
}

seldon_msg *seldon_pipeline_host_msg(seldon_pipeline_host *host)
{
    return host ? seldon_pipeline_engine_msg(host->engine, SELDON_MSG_REQUEST) : NULL;
}

int seldon_pipeline_host_push(seldon_pipeline_host *host, const char *pipeline,
                              const char *request_id, size_t request_id_len,
                              const seldon_pipeline_header *headers, size_t headers_count,
                              seldon_msg *inputs, int64_t timeout_ms, int64_t now_ns)
{
    int rc;
    if (host == NULL || inputs == NULL || (request_id == NULL && request_id_len > 0)) {
        seldon_msg_free(inputs);
        return sdn_error(SELDON_EINVAL, "pipeline_host_push: NULL argument");
    }
    if (pipeline == NULL)
        pipeline = seldon_pipeline_name(host->pipes[0]);
    rc = seldon_pipeline_engine_push(host->engine, pipeline, request_id ? request_id : "",
                                     request_id_len, headers, headers_count, inputs, timeout_ms,
                                     now_ns);
    if (rc < 0)
        return rc;
    pump(host, now_ns);
    return 0;
}

int seldon_pipeline_host_infer(seldon_msg **out, seldon_pipeline_host *host, const char *pipeline,
                               seldon_msg *inputs, int64_t now_ns)
{
    int rc, n;
    if (out == NULL || host == NULL || inputs == NULL) {
        seldon_msg_free(inputs);
        return sdn_error(SELDON_EINVAL, "pipeline_host_infer: NULL argument");
    }
    *out = NULL;
    if (host->cap_active) {
        seldon_msg_free(inputs);
        return sdn_error(SELDON_ESTATE, "pipeline_host_infer: called from a result callback");
    }
    if (pipeline == NULL)
        pipeline = seldon_pipeline_name(host->pipes[0]);
    n = snprintf(host->cap_id, sizeof(host->cap_id), "seldon-host-%llu",
                 (unsigned long long)++host->seq);
    host->cap_id_len = (size_t)n;
    host->cap_active = 1;
    host->cap_done = 0;
    host->cap_status = 0;
    rc = seldon_pipeline_engine_push(host->engine, pipeline, host->cap_id, host->cap_id_len, NULL,
                                     0, inputs, -1, now_ns);
    if (rc == 0) {
        host->cap_pipe = pipeline;
        pump(host, now_ns);
        if (!host->cap_done) {
            seldon_pipeline_engine_cancel(host->engine, pipeline, host->cap_id, host->cap_id_len,
                                          now_ns);
            pump(host, now_ns);
            rc = sdn_error(SELDON_ESTATE,
                           "pipeline \"%s\": the request could not end at once (a model answers "
                           "later, or a join or batch window is open): use push and run",
                           pipeline);
        } else if (host->cap_status < 0) {
            rc = sdn_error(host->cap_status, "%s", host->cap_error ? host->cap_error : "");
        } else {
            *out = host->cap_msg;
            host->cap_msg = NULL;
        }
    }
    host->cap_active = 0;
    seldon_msg_free(host->cap_msg);
    host->cap_msg = NULL;
    sdn_free(host->cap_error);
    host->cap_error = NULL;
    return rc;
}

int seldon_pipeline_host_run(seldon_pipeline_host *host, int64_t now_ns)
{
    int rc;
    if (host == NULL)
        return sdn_error(SELDON_EINVAL, "pipeline_host_run: NULL argument");
    pump(host, now_ns);
    rc = seldon_pipeline_engine_advance(host->engine, now_ns);
    pump(host, now_ns);
    return rc;
}

int64_t seldon_pipeline_host_deadline(const seldon_pipeline_host *host)
{
    return host ? seldon_pipeline_engine_deadline(host->engine) : INT64_MAX;
}

size_t seldon_pipeline_host_requests(const seldon_pipeline_host *host)
{
    return host ? seldon_pipeline_engine_requests(host->engine) : 0;
}
