/*
 * Where inference runs. Cheap, non-blocking runtimes (SELDON_RUNTIME_INLINE)
 * run on the thread that decoded the request; everything else goes to the
 * inference workers, so a slow model never stalls the I/O threads. Models
 * with max_batch_size > 1 gather requests in a batcher; a timer thread
 * dispatches a batch when its first request has waited max_batch_time.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sdd.h"
#include "server.h"

int64_t srv_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int srv_http_status(int rc)
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

int srv_grpc_status(int rc)
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

/* What the server keeps with each model instance (its host data). */
typedef struct model_ext {
    pthread_mutex_t lock;
    seldon_batcher *batcher; /* NULL unless max_batch_size > 1 */
    int timer_armed;
    /* The success series, [0] REST and [1] gRPC, found once per instance. */
    seldon_series *ok_total[2];
    seldon_series *ok_seconds[2];
} model_ext;

static seldon_series *series3(seldon_metric *m, const char *name, const char *method, int code);

static void model_ext_free(void *p)
{
    model_ext *x = p;
    pthread_mutex_destroy(&x->lock);
    seldon_batcher_free(x->batcher);
    free(x);
}

static model_ext *ext_of(srv *s, seldon_model *model)
{
    model_ext *x = seldon_model_host_data(model, NULL, NULL), *mine;
    const char *name = seldon_model_name(model);
    int k;
    if (x != NULL)
        return x;
    mine = calloc(1, sizeof(*mine));
    if (mine == NULL)
        return NULL;
    pthread_mutex_init(&mine->lock, NULL);
    if (seldon_model_max_batch_size(model) > 1 &&
        seldon_batcher_new(&mine->batcher, seldon_model_max_batch_size(model),
                           seldon_model_max_batch_time_ns(model)) != 0) {
        model_ext_free(mine);
        return NULL;
    }
    for (k = 0; k < 2; k++) {
        const char *method = k ? SRV_GRPC : SRV_REST;
        int ok = k ? 0 : 200;
        mine->ok_total[k] = series3(s->m_infer_total, name, method, ok);
        mine->ok_seconds[k] = series3(s->m_infer_seconds, name, method, ok);
    }
    x = seldon_model_host_data(model, mine, model_ext_free);
    if (x != mine)
        model_ext_free(mine);
    return x;
}

/* --- Metrics ------------------------------------------------------------ */

/* The series of a {name, method_type, code} family; NULL when it cannot be had. */
static seldon_series *series3(seldon_metric *m, const char *name, const char *method, int code)
{
    char codebuf[16];
    const char *labels[3];
    seldon_series *series = NULL;
    snprintf(codebuf, sizeof(codebuf), "%d", code);
    labels[0] = name;
    labels[1] = method;
    labels[2] = codebuf;
    return seldon_metric_series(&series, m, labels) == 0 ? series : NULL;
}

void srv_count_infer(srv *s, seldon_model *model, const char *method, int code, double seconds)
{
    int k = strcmp(method, SRV_GRPC) == 0;
    model_ext *x;
    if (model != NULL && code == (k ? 0 : 200) && (x = ext_of(s, model)) != NULL &&
        x->ok_total[k] != NULL) {
        seldon_series_add(x->ok_total[k], 1);
        seldon_series_observe(x->ok_seconds[k], seconds);
        return;
    }
    seldon_series_add(series3(s->m_infer_total, model ? seldon_model_name(model) : "", method, code),
                      1);
    seldon_series_observe(
        series3(s->m_infer_seconds, model ? seldon_model_name(model) : "", method, code), seconds);
}

void srv_count_request(srv *s, const char *endpoint, const char *method, int code)
{
    seldon_series_add(series3(s->m_requests, endpoint, method, code), 1);
}

void srv_refresh_loaded(srv *s)
{
    seldon_series_set(s->s_loaded, (double)seldon_repo_ready_count(s->repo));
}

/* --- Workers ------------------------------------------------------------- */

void srv_enqueue(srv *s, srv_job *job)
{
    job->next = NULL;
    pthread_mutex_lock(&s->qlock);
    if (s->qtail)
        s->qtail->next = job;
    else
        s->qhead = job;
    s->qtail = job;
    pthread_cond_signal(&s->qcond);
    pthread_mutex_unlock(&s->qlock);
}

static void *worker_main(void *arg)
{
    srv *s = arg;
    for (;;) {
        srv_job *job;
        pthread_mutex_lock(&s->qlock);
        while (s->qhead == NULL && !s->stopping)
            pthread_cond_wait(&s->qcond, &s->qlock);
        job = s->qhead;
        if (job == NULL) {
            pthread_mutex_unlock(&s->qlock);
            return NULL;
        }
        s->qhead = job->next;
        if (s->qhead == NULL)
            s->qtail = NULL;
        pthread_mutex_unlock(&s->qlock);
        job->run(job);
    }
}

/* An inference (or a batch of them) to run on a worker. */
typedef struct exec_job {
    srv_job job;
    srv *s;
    seldon_model *model; /* a reference of the job's own */
    size_t count;
    seldon_infer *infers[];
} exec_job;

static void observe_batch(srv *s, seldon_model *model, size_t count)
{
    const char *labels[1] = {seldon_model_name(model)};
    seldon_series *series = NULL;
    if (seldon_metric_series(&series, s->m_batch_size, labels) == 0)
        seldon_series_observe(series, (double)count);
}

static void exec_run(srv_job *job)
{
    exec_job *e = (exec_job *)job;
    if (seldon_model_max_batch_size(e->model) > 1) {
        observe_batch(e->s, e->model, e->count);
        seldon_model_execute_batch(e->model, e->infers, e->count);
    } else {
        seldon_model_execute(e->model, e->infers, e->count);
    }
    seldon_model_release(e->model);
    free(e);
}

static void dispatch(srv *s, seldon_model *model, seldon_infer **infers, size_t count)
{
    exec_job *e = malloc(sizeof(*e) + count * sizeof(seldon_infer *));
    size_t i;
    if (e == NULL) {
        for (i = 0; i < count; i++)
            seldon_infer_complete(infers[i], SELDON_ENOMEM, "server out of memory");
        return;
    }
    e->job.run = exec_run;
    e->s = s;
    e->model = model;
    seldon_model_retain(model);
    e->count = count;
    memcpy(e->infers, infers, count * sizeof(*infers));
    srv_enqueue(s, &e->job);
}

/* --- Batching ------------------------------------------------------------ */

struct srv_timer_entry {
    srv_timer_entry *next;
    seldon_model *model; /* a reference of the timer's own */
    int64_t due_ns;
};

static void timer_arm(srv *s, seldon_model *model, int64_t due_ns)
{
    srv_timer_entry *t = malloc(sizeof(*t)), **pp;
    if (t == NULL) {
        /* Without a timer the batch would wait for company forever: run what waits now. */
        model_ext *x = ext_of(s, model);
        seldon_infer *batch[256];
        size_t n;
        pthread_mutex_lock(&x->lock);
        x->timer_armed = 0;
        n = seldon_batcher_take(x->batcher, batch, 256, srv_now_ns(), 1);
        pthread_mutex_unlock(&x->lock);
        if (n)
            dispatch(s, model, batch, n);
        return;
    }
    seldon_model_retain(model);
    t->model = model;
    t->due_ns = due_ns;
    pthread_mutex_lock(&s->tlock);
    for (pp = &s->timers; *pp != NULL && (*pp)->due_ns <= due_ns; pp = &(*pp)->next)
        ;
    t->next = *pp;
    *pp = t;
    pthread_cond_signal(&s->tcond);
    pthread_mutex_unlock(&s->tlock);
}

/* Takes every batch of model that is due, and re-arms for the one after. */
static void timer_fire(srv *s, seldon_model *model, int force)
{
    model_ext *x = ext_of(s, model);
    seldon_infer *batch[256];
    int64_t next = INT64_MAX;
    size_t n;
    for (;;) {
        pthread_mutex_lock(&x->lock);
        n = seldon_batcher_take(x->batcher, batch, 256, srv_now_ns(), force);
        if (n == 0) {
            next = seldon_batcher_deadline(x->batcher);
            x->timer_armed = next != INT64_MAX;
        }
        pthread_mutex_unlock(&x->lock);
        if (n == 0)
            break;
        dispatch(s, model, batch, n);
    }
    if (next != INT64_MAX)
        timer_arm(s, model, next);
}

static void *timer_main(void *arg)
{
    srv *s = arg;
    pthread_mutex_lock(&s->tlock);
    for (;;) {
        srv_timer_entry *t = s->timers;
        int64_t now = srv_now_ns();
        if (t == NULL && s->timer_stop)
            break;
        if (t == NULL) {
            pthread_cond_wait(&s->tcond, &s->tlock);
            continue;
        }
        if (t->due_ns > now && !s->timer_stop) {
            struct timespec ts;
            int64_t wait = t->due_ns - now;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += (time_t)(wait / 1000000000);
            ts.tv_nsec += (long)(wait % 1000000000);
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&s->tcond, &s->tlock, &ts);
            continue;
        }
        s->timers = t->next;
        pthread_mutex_unlock(&s->tlock);
        timer_fire(s, t->model, s->timer_stop);
        seldon_model_release(t->model);
        free(t);
        pthread_mutex_lock(&s->tlock);
    }
    pthread_mutex_unlock(&s->tlock);
    return NULL;
}

void srv_submit(srv *s, seldon_model *model, seldon_infer *infer)
{
    model_ext *x;
    seldon_infer *batch[256];
    size_t n = 0;
    int arm = 0, full;
    int64_t now;

    if (seldon_model_max_batch_size(model) <= 1) {
        if (seldon_model_runtime_flags(model) & SELDON_RUNTIME_INLINE)
            seldon_model_execute(model, &infer, 1);
        else
            dispatch(s, model, &infer, 1);
        return;
    }
    x = ext_of(s, model);
    if (x == NULL) {
        dispatch(s, model, &infer, 1);
        return;
    }
    now = srv_now_ns();
    pthread_mutex_lock(&x->lock);
    full = seldon_batcher_push(x->batcher, infer, now);
    if (full < 0) {
        pthread_mutex_unlock(&x->lock);
        dispatch(s, model, &infer, 1);
        return;
    }
    if (full)
        n = seldon_batcher_take(x->batcher, batch, 256, now, 0);
    if (!x->timer_armed && seldon_batcher_size(x->batcher) > 0) {
        x->timer_armed = 1;
        arm = 1;
    }
    pthread_mutex_unlock(&x->lock);
    if (n)
        dispatch(s, model, batch, n);
    if (arm)
        timer_arm(s, model, now + seldon_model_max_batch_time_ns(model));
}

int srv_exec_start(srv *s)
{
    int i;
    pthread_mutex_init(&s->qlock, NULL);
    pthread_cond_init(&s->qcond, NULL);
    pthread_mutex_init(&s->tlock, NULL);
    pthread_cond_init(&s->tcond, NULL);
    s->workers = calloc((size_t)s->cfg.workers, sizeof(pthread_t));
    if (s->workers == NULL)
        return SELDON_ENOMEM;
    for (i = 0; i < s->cfg.workers; i++) {
        if (pthread_create(&s->workers[i], NULL, worker_main, s) != 0)
            return SELDON_EINTERNAL;
        s->nworkers++;
    }
    if (pthread_create(&s->timer, NULL, timer_main, s) != 0)
        return SELDON_EINTERNAL;
    return 0;
}

/* After the transports stopped: flush waiting batches, finish queued work, join. */
void srv_exec_stop(srv *s)
{
    int i;
    pthread_mutex_lock(&s->tlock);
    s->timer_stop = 1;
    pthread_cond_signal(&s->tcond);
    pthread_mutex_unlock(&s->tlock);
    pthread_join(s->timer, NULL);
    pthread_mutex_lock(&s->qlock);
    s->stopping = 1;
    pthread_cond_broadcast(&s->qcond);
    pthread_mutex_unlock(&s->qlock);
    for (i = 0; i < s->nworkers; i++)
        pthread_join(s->workers[i], NULL);
    free(s->workers);
    s->workers = NULL;
}
