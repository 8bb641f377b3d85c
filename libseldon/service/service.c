/*
 * The inference service: status mapping, metrics, and where an inference
 * runs. Cheap, non-blocking runtimes (SELDON_RUNTIME_INLINE) run on the
 * caller's thread; everything else goes to the host's inference executor.
 * Models with max_batch_size > 1 gather requests in a batcher, and the host's
 * timer calls back when the first waiting request of a batch falls due.
 */
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "service/service.h"

int32_t seldon_status_http(int32_t rc)
{
    switch (rc) {
    case 0:
        return 200;
    case SELDON_ENOTFOUND:
        return 404;
    case SELDON_EINVAL:
    case SELDON_EPARSE:
    case SELDON_ERANGE:
    case SELDON_ESHAPE:
    case SELDON_EDATATYPE:
    case SELDON_EEXIST:
        return 400;
    case SELDON_ETOOBIG:
        return 413;
    case SELDON_EUNSUPPORTED:
        /* Something the model or codec cannot do for this request (a route's wrong method is
           the REST handler's 405). */
        return 400;
    case SELDON_EUNAVAIL:
        return 503;
    case SELDON_ETIMEDOUT:
        return 504;
    default:
        return 500;
    }
}

int32_t seldon_status_grpc(int32_t rc)
{
    switch (rc) {
    case 0:
        return 0; /* OK */
    case SELDON_ENOTFOUND:
        return 5; /* NOT_FOUND */
    case SELDON_EINVAL:
    case SELDON_EPARSE:
    case SELDON_ERANGE:
    case SELDON_ESHAPE:
    case SELDON_EDATATYPE:
        return 3; /* INVALID_ARGUMENT */
    case SELDON_EEXIST:
        return 6; /* ALREADY_EXISTS */
    case SELDON_ETOOBIG:
        return 8; /* RESOURCE_EXHAUSTED */
    case SELDON_EUNSUPPORTED:
        return 12; /* UNIMPLEMENTED */
    case SELDON_EUNAVAIL:
        return 14; /* UNAVAILABLE */
    case SELDON_ETIMEDOUT:
        return 4; /* DEADLINE_EXCEEDED */
    case SELDON_ECANCELED:
        return 1; /* CANCELLED */
    default:
        return 13; /* INTERNAL */
    }
}

/* --- The object ------------------------------------------------------------ */

static int setup_metrics(seldon_service *svc)
{
    static const double latency[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                     0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
    static const double sizes[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
    const char *infer_labels[3] = {"model", "method_type", "code"};
    const char *req_labels[3] = {"endpoint", "method_type", "code"};
    const char *batch_labels[1] = {"model"};
    seldon_metric *loaded = NULL;
    int rc = seldon_metrics_add(
        &svc->m_infer_total, svc->metrics, SELDON_METRIC_COUNTER, "seldon_model_infer_total",
        "Inference requests by model, protocol and status code.", infer_labels, 3, NULL, 0);
    if (rc == 0)
        rc = seldon_metrics_add(&svc->m_infer_seconds, svc->metrics, SELDON_METRIC_HISTOGRAM,
                                "seldon_model_infer_seconds",
                                "Inference latency from decoded request to encoded response.",
                                infer_labels, 3, latency, sizeof(latency) / sizeof(latency[0]));
    if (rc == 0)
        rc = seldon_metrics_add(&svc->m_batch_size, svc->metrics, SELDON_METRIC_HISTOGRAM,
                                "seldon_model_batch_size",
                                "Requests per batch handed to a runtime (adaptive batching).",
                                batch_labels, 1, sizes, sizeof(sizes) / sizeof(sizes[0]));
    if (rc == 0)
        rc = seldon_metrics_add(&svc->m_requests, svc->metrics, SELDON_METRIC_COUNTER,
                                "seldon_server_requests_total",
                                "Requests other than inference, by endpoint, protocol and code.",
                                req_labels, 3, NULL, 0);
    if (rc == 0)
        rc = seldon_metrics_add(&loaded, svc->metrics, SELDON_METRIC_GAUGE,
                                "seldon_loaded_model_gauge", "Models loaded and ready.", NULL, 0,
                                NULL, 0);
    if (rc == 0)
        rc = seldon_metric_series(&svc->s_loaded, loaded, NULL);
    return rc;
}

int seldon_service_new(seldon_service **out, const seldon_service_options *opts)
{
    seldon_service *svc = NULL;
    const seldon_service_hooks *h;
    int rc;
    if (out == NULL || opts == NULL)
        return sdn_error(SELDON_EINVAL, "seldon_service_new: NULL argument");
    *out = NULL;
    if (opts->version != SELDON_SERVICE_OPTIONS_VERSION)
        return sdn_error(SELDON_EINVAL, "seldon_service_new: options version %u unknown",
                         opts->version);
    h = &opts->hooks;
    if (opts->repo == NULL || h->version != SELDON_SERVICE_HOOKS_VERSION ||
        h->submit_infer == NULL || h->submit_load == NULL || h->arm_timer == NULL ||
        h->now_ns == NULL)
        return sdn_error(SELDON_EINVAL, "seldon_service_new: repo and every hook are required");
    svc = sdn_calloc(1, sizeof(*svc));
    if (svc == NULL)
        return sdn_error(SELDON_ENOMEM, "seldon_service_new: out of memory");
    svc->repo = opts->repo;
    svc->hooks = *h;
    svc->metrics = opts->metrics;
    svc->armed_ns = INT64_MAX;
    pthread_mutex_init(&svc->lock, NULL);
    svc->server_name = sdn_strndup(opts->server_name ? opts->server_name : "seldon",
                                   strlen(opts->server_name ? opts->server_name : "seldon"));
    if (svc->server_name == NULL) {
        seldon_service_free(svc);
        return sdn_error(SELDON_ENOMEM, "seldon_service_new: out of memory");
    }
    if (svc->metrics != NULL && (rc = setup_metrics(svc)) != 0) {
        seldon_service_free(svc);
        return rc;
    }
    *out = svc;
    return 0;
}

void seldon_service_free(seldon_service *svc)
{
    if (svc == NULL)
        return;
    pthread_mutex_destroy(&svc->lock);
    sdn_free(svc->server_name);
    sdn_free(svc);
}

void seldon_service_set_ready(seldon_service *svc, int32_t ready)
{
    if (svc != NULL)
        atomic_store(&svc->ready, ready != 0);
}

int64_t sdn_svc_now(seldon_service *svc)
{
    return svc->hooks.now_ns(svc->hooks.host);
}

/* --- Metrics ---------------------------------------------------------------- */

const char *sdn_svc_method_label(int kind)
{
    switch (kind) {
    case SDN_SVC_REST:
        return "rest";
    case SDN_SVC_LOCAL:
        return "local";
    default:
        return "grpc";
    }
}

/* The series of a {name, method_type, code} family (held: released by the caller), NULL
   when it cannot be had. */
static seldon_series *held3(seldon_metric *m, const char *name, const char *method, int code)
{
    char codebuf[16];
    const char *labels[3];
    seldon_series *series = NULL;
    if (m == NULL)
        return NULL;
    snprintf(codebuf, sizeof(codebuf), "%d", code);
    labels[0] = name;
    labels[1] = method;
    labels[2] = codebuf;
    return seldon_metric_series_hold(&series, m, labels) == 0 ? series : NULL;
}

/* The series of a {name, method_type, code} family; NULL when it cannot be had. */
static seldon_series *series3(seldon_metric *m, const char *name, const char *method, int code)
{
    char codebuf[16];
    const char *labels[3];
    seldon_series *series = NULL;
    if (m == NULL)
        return NULL;
    snprintf(codebuf, sizeof(codebuf), "%d", code);
    labels[0] = name;
    labels[1] = method;
    labels[2] = codebuf;
    return seldon_metric_series(&series, m, labels) == 0 ? series : NULL;
}

void sdn_svc_count_request(seldon_service *svc, const char *endpoint, int kind, int code)
{
    seldon_series *s = series3(svc->m_requests, endpoint, sdn_svc_method_label(kind), code);
    if (s != NULL)
        seldon_series_add(s, 1);
}

void seldon_service_refresh(seldon_service *svc)
{
    if (svc != NULL && svc->s_loaded != NULL)
        seldon_series_set(svc->s_loaded, (double)seldon_repo_ready_count(svc->repo));
}

/* What the service keeps with each model instance (its host data). */
struct sdn_svc_model {
    pthread_mutex_t lock;
    seldon_batcher *batcher; /* NULL unless max_batch_size > 1 */
    int listed;              /* under lock: on (or going onto) the service's pending list */
    /* Under the service's lock. */
    sdn_svc_model *next;
    seldon_model *model; /* a reference of the list's own while listed */
    /* The success series, by method label (rest, grpc, local), found once per instance and
       held by it: they leave the registry with the last instance of the model's name, so a
       server that loads many versions keeps only the live ones' (docs/autoscaling.md). */
    seldon_series *ok_total[3];
    seldon_series *ok_seconds[3];
    seldon_series *batch_size; /* held too; NULL without batching */
};

static void svc_model_free(void *p)
{
    sdn_svc_model *x = p;
    int k;
    for (k = 0; k < 3; k++) {
        seldon_series_release(x->ok_total[k]);
        seldon_series_release(x->ok_seconds[k]);
    }
    seldon_series_release(x->batch_size);
    pthread_mutex_destroy(&x->lock);
    seldon_batcher_free(x->batcher);
    sdn_free(x);
}

static int label_index(int kind)
{
    return kind == SDN_SVC_REST ? 0 : kind == SDN_SVC_LOCAL ? 2 : 1;
}

static sdn_svc_model *ext_of(seldon_service *svc, seldon_model *model)
{
    sdn_svc_model *x = seldon_model_host_data(model, NULL, NULL), *mine;
    const char *name = seldon_model_name(model);
    static const int kinds[3] = {SDN_SVC_REST, SDN_SVC_GRPC, SDN_SVC_LOCAL};
    int k;
    if (x != NULL)
        return x;
    mine = sdn_calloc(1, sizeof(*mine));
    if (mine == NULL)
        return NULL;
    pthread_mutex_init(&mine->lock, NULL);
    if (seldon_model_max_batch_size(model) > 1 &&
        seldon_batcher_new(&mine->batcher, seldon_model_max_batch_size(model),
                           seldon_model_max_batch_time_ns(model)) != 0) {
        svc_model_free(mine);
        return NULL;
    }
    for (k = 0; k < 3; k++) {
        int ok = kinds[k] == SDN_SVC_REST ? 200 : 0;
        mine->ok_total[k] = held3(svc->m_infer_total, name, sdn_svc_method_label(kinds[k]), ok);
        mine->ok_seconds[k] = held3(svc->m_infer_seconds, name, sdn_svc_method_label(kinds[k]), ok);
    }
    if (mine->batcher != NULL && svc->m_batch_size != NULL) {
        const char *labels[1] = {name};
        if (seldon_metric_series_hold(&mine->batch_size, svc->m_batch_size, labels) != 0)
            mine->batch_size = NULL;
    }
    x = seldon_model_host_data(model, mine, svc_model_free);
    if (x != mine)
        svc_model_free(mine);
    return x;
}

void sdn_svc_count_infer(seldon_service *svc, seldon_model *model, int kind, int code,
                         double seconds)
{
    int k = label_index(kind);
    const char *method = sdn_svc_method_label(kind);
    sdn_svc_model *x;
    seldon_series *s;
    if (svc->metrics == NULL)
        return;
    if (model != NULL && code == (kind == SDN_SVC_REST ? 200 : 0) &&
        (x = ext_of(svc, model)) != NULL && x->ok_total[k] != NULL && x->ok_seconds[k] != NULL) {
        seldon_series_add(x->ok_total[k], 1);
        seldon_series_observe(x->ok_seconds[k], seconds);
        return;
    }
    if ((s = series3(svc->m_infer_total, model ? seldon_model_name(model) : "", method, code)))
        seldon_series_add(s, 1);
    if ((s = series3(svc->m_infer_seconds, model ? seldon_model_name(model) : "", method, code)))
        seldon_series_observe(s, seconds);
}

/* --- Execution ----------------------------------------------------------------- */

void sdn_svc_call_free(sdn_svc_call *c)
{
    if (c == NULL)
        return;
    seldon_infer_free(c->infer);
    if (c->kind != SDN_SVC_LOCAL) {
        seldon_msg_free(c->request);
        seldon_msg_free(c->response);
    }
    seldon_model_release(c->model);
    sdn_free(c);
}

/* A lone inference on a worker: the call's own job. */
static void run_single(seldon_job *job)
{
    sdn_svc_call *c = (sdn_svc_call *)job;
    seldon_model *model = c->model;
    /* The call, and its model reference, may be gone once its inference completes. */
    seldon_model_retain(model);
    seldon_model_execute(model, &c->infer, 1);
    seldon_model_release(model);
}

/* A batch on a worker. */
typedef struct batch_job {
    seldon_job job;
    seldon_service *svc;
    seldon_model *model; /* a reference of the job's own */
    size_t count;
    seldon_infer *infers[];
} batch_job;

static void observe_batch(seldon_service *svc, seldon_model *model, size_t count)
{
    const char *labels[1] = {seldon_model_name(model)};
    seldon_series *series = NULL;
    sdn_svc_model *x = seldon_model_host_data(model, NULL, NULL);
    if (x != NULL && x->batch_size != NULL) { /* batching: its instance holds the series */
        seldon_series_observe(x->batch_size, (double)count);
        return;
    }
    if (svc->m_batch_size != NULL && seldon_metric_series(&series, svc->m_batch_size, labels) == 0)
        seldon_series_observe(series, (double)count);
}

static void run_batch(seldon_job *job)
{
    batch_job *b = (batch_job *)job;
    observe_batch(b->svc, b->model, b->count);
    seldon_model_execute_batch(b->model, b->infers, b->count);
    seldon_model_release(b->model);
    sdn_free(b);
}

static void dispatch_batch(seldon_service *svc, seldon_model *model, seldon_infer **infers,
                           size_t count)
{
    batch_job *b = sdn_malloc(sizeof(*b) + count * sizeof(seldon_infer *));
    size_t i;
    if (b == NULL) {
        for (i = 0; i < count; i++)
            seldon_infer_complete(infers[i], SELDON_ENOMEM, "server out of memory");
        return;
    }
    b->job.next = NULL;
    b->job.run = run_batch;
    b->svc = svc;
    b->model = model;
    seldon_model_retain(model);
    b->count = count;
    memcpy(b->infers, infers, count * sizeof(*infers));
    svc->hooks.submit_infer(svc->hooks.host, &b->job);
}

static void dispatch_single(sdn_svc_call *c)
{
    c->job.next = NULL;
    c->job.run = run_single;
    c->svc->hooks.submit_infer(c->svc->hooks.host, &c->job);
}

/* Puts x on the pending list with its deadline; arms the timer when that is the earliest. */
static void list_pending(seldon_service *svc, sdn_svc_model *x, seldon_model *model,
                         int64_t deadline)
{
    int arm = 0;
    seldon_model_retain(model);
    pthread_mutex_lock(&svc->lock);
    x->model = model;
    x->next = svc->pending;
    svc->pending = x;
    if (deadline < svc->armed_ns) {
        svc->armed_ns = deadline;
        arm = 1;
    }
    pthread_mutex_unlock(&svc->lock);
    if (arm)
        svc->hooks.arm_timer(svc->hooks.host, deadline);
}

#define BATCH_TAKE 256

/*
 * Hands every batch of x that is due (all of them with force) to the
 * workers. Returns the next deadline, or INT64_MAX when nothing waits (x is
 * then off the list).
 */
static int64_t drain(seldon_service *svc, sdn_svc_model *x, seldon_model *model, int64_t now,
                     int force)
{
    seldon_infer *batch[BATCH_TAKE];
    int64_t next = INT64_MAX;
    size_t n;
    for (;;) {
        pthread_mutex_lock(&x->lock);
        n = seldon_batcher_take(x->batcher, batch, BATCH_TAKE, now, force);
        if (n == 0) {
            next = seldon_batcher_deadline(x->batcher);
            x->listed = next != INT64_MAX;
        }
        pthread_mutex_unlock(&x->lock);
        if (n == 0)
            return next;
        dispatch_batch(svc, model, batch, n);
    }
}

static void timer_pass(seldon_service *svc, int64_t now, int force)
{
    sdn_svc_model *list, *x;
    pthread_mutex_lock(&svc->lock);
    list = svc->pending;
    svc->pending = NULL;
    svc->armed_ns = INT64_MAX;
    pthread_mutex_unlock(&svc->lock);
    while ((x = list) != NULL) {
        seldon_model *model = x->model;
        int64_t next;
        list = x->next;
        x->next = NULL;
        next = drain(svc, x, model, now, force);
        if (next != INT64_MAX)
            list_pending(svc, x, model, next);
        seldon_model_release(model);
    }
}

void seldon_service_timer(seldon_service *svc, int64_t now_ns)
{
    if (svc != NULL)
        timer_pass(svc, now_ns, 0);
}

void seldon_service_flush(seldon_service *svc)
{
    if (svc != NULL)
        timer_pass(svc, sdn_svc_now(svc), 1);
}

void sdn_svc_submit(sdn_svc_call *c)
{
    seldon_service *svc = c->svc;
    seldon_model *model = c->model;
    sdn_svc_model *x;
    seldon_infer *batch[BATCH_TAKE];
    size_t n = 0;
    int full, list = 0;
    int64_t now;

    if (seldon_model_max_batch_size(model) <= 1) {
        if (seldon_model_runtime_flags(model) & SELDON_RUNTIME_INLINE) {
            /* The fast path: on this thread, now. The call may be freed inside. */
            seldon_model_retain(model);
            seldon_model_execute(model, &c->infer, 1);
            seldon_model_release(model);
        } else {
            dispatch_single(c);
        }
        return;
    }
    x = ext_of(svc, model);
    if (x == NULL) {
        dispatch_single(c);
        return;
    }
    /* Once pushed, c may complete (and drop its reference) on another thread. */
    seldon_model_retain(model);
    now = sdn_svc_now(svc);
    pthread_mutex_lock(&x->lock);
    full = seldon_batcher_push(x->batcher, c->infer, now);
    if (full < 0) {
        pthread_mutex_unlock(&x->lock);
        seldon_model_release(model);
        dispatch_single(c);
        return;
    }
    if (full)
        n = seldon_batcher_take(x->batcher, batch, BATCH_TAKE, now, 0);
    if (!x->listed && seldon_batcher_size(x->batcher) > 0) {
        x->listed = 1;
        list = 1;
    }
    pthread_mutex_unlock(&x->lock);
    if (n)
        dispatch_batch(svc, model, batch, n);
    if (list)
        list_pending(svc, x, model, now + seldon_model_max_batch_time_ns(model));
    seldon_model_release(model);
}

/* --- Loads and unloads --------------------------------------------------------- */

/*
 * Not found only for a model the repository does not know (or, to unload, one
 * not loaded). Runtimes and plugin lookup say SELDON_ENOTFOUND too (an
 * unknown implementation, a missing model file), but once the model is known
 * its load was tried and failed: the caller's problem to fix, SELDON_EINVAL.
 */
int sdn_svc_repo_code(seldon_service *svc, const sdn_svc_repo_job *j, int rc)
{
    if (rc == SELDON_ENOTFOUND &&
        (j->unload || seldon_repo_model_state(svc->repo, j->name, strlen(j->name)) < 0))
        return SELDON_ENOTFOUND;
    return SELDON_EINVAL;
}
