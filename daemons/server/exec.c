/*
 * What the server lends its seldon_service: the inference workers, a load
 * executor (one thread, so loads never take a worker and never block
 * inference on other models), the batch timer (a libuv timer on a loop of
 * its own, monotonic clock) and the clock.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sdd.h"
#include "server.h"

static int64_t now_ns(void *host)
{
    (void)host;
    return (int64_t)uv_hrtime();
}

/* --- Thread pools ------------------------------------------------------------ */

/*
 * Wakes a worker only when one sleeps, and after the unlock: a worker woken while the
 * lock is still held would go back to sleep on the mutex (one more futex call each way).
 */
static void pool_push(srv_pool *p, seldon_job *job)
{
    int wake;
    job->next = NULL;
    pthread_mutex_lock(&p->lock);
    if (p->tail)
        p->tail->next = job;
    else
        p->head = job;
    p->tail = job;
    wake = p->sleeping > p->waking;
    if (wake)
        p->waking++;
    pthread_mutex_unlock(&p->lock);
    if (wake)
        pthread_cond_signal(&p->cond);
}

static void *pool_main(void *arg)
{
    srv_pool *p = arg;
    for (;;) {
        seldon_job *job;
        pthread_mutex_lock(&p->lock);
        while (p->head == NULL && !p->stopping) {
            p->sleeping++;
            pthread_cond_wait(&p->cond, &p->lock);
            p->sleeping--;
            if (p->waking > 0)
                p->waking--;
        }
        job = p->head;
        if (job == NULL) {
            pthread_mutex_unlock(&p->lock);
            return NULL;
        }
        p->head = job->next;
        if (p->head == NULL)
            p->tail = NULL;
        pthread_mutex_unlock(&p->lock);
        job->run(job);
    }
}

static int pool_start(srv_pool *p, int n)
{
    int i;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    p->threads = sdd_calloc((size_t)n, sizeof(pthread_t));
    if (p->threads == NULL)
        return sdd_error(SELDON_ENOMEM, "out of memory");
    for (i = 0; i < n; i++) {
        if (pthread_create(&p->threads[i], NULL, pool_main, p) != 0)
            return sdd_error(SELDON_EINTERNAL, "cannot start a thread");
        p->nthreads++;
    }
    return 0;
}

/* Lets the queue drain, then joins. */
static void pool_stop(srv_pool *p)
{
    int i;
    if (p->threads == NULL)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = 1;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    for (i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    sdd_free(p->threads);
    p->threads = NULL;
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
}

static void submit_infer(void *host, seldon_job *job)
{
    pool_push(&((srv *)host)->workers, job);
}

static void submit_load(void *host, seldon_job *job)
{
    pool_push(&((srv *)host)->loader, job);
}

/* --- The batch timer ------------------------------------------------------------ */

static void on_timer(uv_timer_t *t)
{
    srv *s = t->data;
    s->timer.due_ns = INT64_MAX;
    seldon_service_timer(s->svc, (int64_t)uv_hrtime());
}

/* Loop thread: arms the timer for the earliest deadline asked for, if earlier than the armed one.
 */
static void on_wake(uv_async_t *a)
{
    srv *s = a->data;
    srv_timer *tm = &s->timer;
    int64_t want = atomic_exchange(&tm->want_ns, INT64_MAX), now;
    uint64_t ms;
    if (atomic_load(&tm->stop)) {
        uv_close((uv_handle_t *)&tm->timer, NULL);
        uv_close((uv_handle_t *)&tm->wake, NULL);
        return;
    }
    if (want == INT64_MAX || want >= tm->due_ns)
        return;
    tm->due_ns = want;
    now = (int64_t)uv_hrtime();
    /* Whole milliseconds, rounded up: the service re-arms a timer that fired early. */
    ms = want > now ? (uint64_t)((want - now + 999999) / 1000000) : 0;
    uv_update_time(&tm->loop);
    uv_timer_start(&tm->timer, on_timer, ms, 0);
}

/* Any thread. */
static void arm_timer(void *host, int64_t deadline_ns)
{
    srv_timer *tm = &((srv *)host)->timer;
    int64_t cur = atomic_load(&tm->want_ns);
    /* Once stopping, seldon_service_flush() hands out what waits. */
    if (atomic_load(&tm->stop))
        return;
    while (deadline_ns < cur && !atomic_compare_exchange_weak(&tm->want_ns, &cur, deadline_ns))
        ;
    uv_async_send(&tm->wake);
}

static void *timer_main(void *arg)
{
    srv *s = arg;
    uv_run(&s->timer.loop, UV_RUN_DEFAULT);
    return NULL;
}

static int timer_start(srv *s)
{
    srv_timer *tm = &s->timer;
    atomic_store(&tm->want_ns, INT64_MAX);
    tm->due_ns = INT64_MAX;
    if (uv_loop_init(&tm->loop) != 0)
        return sdd_error(SELDON_EINTERNAL, "cannot create the timer loop");
    uv_async_init(&tm->loop, &tm->wake, on_wake);
    uv_timer_init(&tm->loop, &tm->timer);
    tm->wake.data = s;
    tm->timer.data = s;
    if (pthread_create(&tm->thread, NULL, timer_main, s) != 0)
        return sdd_error(SELDON_EINTERNAL, "cannot start the timer thread");
    tm->started = 1;
    return 0;
}

static void timer_stop(srv *s)
{
    srv_timer *tm = &s->timer;
    if (!tm->started)
        return;
    atomic_store(&tm->stop, 1);
    uv_async_send(&tm->wake);
    pthread_join(tm->thread, NULL);
    uv_loop_close(&tm->loop);
    tm->started = 0;
}

/* --- Wiring ------------------------------------------------------------------------- */

void srv_hooks(seldon_service_hooks *out, srv *s)
{
    memset(out, 0, sizeof(*out));
    out->version = SELDON_SERVICE_HOOKS_VERSION;
    out->submit_infer = submit_infer;
    out->submit_load = submit_load;
    out->arm_timer = arm_timer;
    out->now_ns = now_ns;
    out->host = s;
}

int srv_exec_start(srv *s)
{
    int rc = pool_start(&s->workers, s->cfg.workers);
    if (rc == 0)
        rc = pool_start(&s->loader, 1);
    if (rc == 0)
        rc = timer_start(s);
    return rc;
}

void srv_exec_stop(srv *s)
{
    timer_stop(s);
    /* Loads first: a load answers its caller, and may not queue inference work. */
    pool_stop(&s->loader);
    seldon_service_flush(s->svc);
    pool_stop(&s->workers);
}
