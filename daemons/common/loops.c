/*
 * Caller-owned event loops: one thread per libuv loop, a mailbox per loop for
 * running functions on it (sdl_loops_post), and an orderly stop.
 */
#include <sched.h>
#include <stdio.h>
#include <sys/epoll.h>

#include "loops.h"
#include "sdd.h"

typedef struct sdl_task {
    struct sdl_task *next;
    void (*fn)(void *arg);
    void *arg;
} sdl_task;

typedef struct sdl_one {
    sdl_loops *owner;
    int index;
    uv_loop_t uv;
    uv_async_t async; /* open until the stop */
    uv_thread_t thread;
    uv_mutex_t mu;
    sdl_task *head, *tail; /* under mu */
    int stop;              /* under mu */
    int closed;            /* under mu: async closed, posts refused */
    uint8_t inited, mu_inited, async_inited, async_open, started, joined;
} sdl_one;

struct sdl_loops {
    int n;
    int running;
    uint64_t poll_ns; /* busy polling: the longest a loop polls before it sleeps */
    sdl_one *loops;
};

static _Thread_local const sdl_one *tls_one;

static void on_async_closed(uv_handle_t *h)
{
    (void)h;
}

static void on_async(uv_async_t *a)
{
    sdl_one *o = a->data;
    sdl_task *list, *t;
    int stop;

    uv_mutex_lock(&o->mu);
    list = o->head;
    o->head = o->tail = NULL;
    stop = o->stop && !o->closed;
    if (stop)
        o->closed = 1;
    uv_mutex_unlock(&o->mu);
    while ((t = list) != NULL) {
        list = t->next;
        t->fn(t->arg);
        sdd_free(t);
    }
    if (stop) {
        uv_close((uv_handle_t *)&o->async, on_async_closed);
        o->async_open = 0;
    }
}

/*
 * Runs the loop, and after each round of events keeps looking for the next one for a
 * while before it sleeps in the kernel. A thread asleep in epoll_wait costs whoever
 * wakes it: the peer's write sends an inter-processor interrupt, and on a virtual
 * machine an idle virtual CPU halts, so the wake-up is an exit to the hypervisor and
 * back, tens of microseconds per hop on a request's path. A thread that is still
 * looking needs no waking.
 *
 * The window adapts as the guest halt-polling of Linux does: it is the longest a loop
 * polls (window), halved after a sleep that outlasted the longest window (polling would
 * have been wasted), and back to the longest after a sleep that a longer window would
 * have saved. An idle loop ends up sleeping at once and costs nothing. While polling it
 * yields the processor to any other thread that is ready to run on it, so a loop never
 * holds a processor that the server beside it needs. Timers wait at most one window.
 */
static void run_polling(sdl_one *o, uint64_t max)
{
    uv_loop_t *l = &o->uv;
    int fd = uv_backend_fd(l);
    uint64_t window = max, last = uv_hrtime();
    for (;;) {
        struct epoll_event ev;
        uint64_t now = uv_hrtime();
        if (now - last >= window) {
            uint64_t slept;
            if (uv_run(l, UV_RUN_ONCE) == 0)
                return;
            last = uv_hrtime();
            slept = last - now;
            if (slept > max)
                window /= 2;
            else if (slept > window)
                window = max;
            continue;
        }
        if (uv_backend_timeout(l) == 0 || epoll_wait(fd, &ev, 1, 0) > 0) {
            if (uv_run(l, UV_RUN_NOWAIT) == 0)
                return;
            last = uv_hrtime();
        } else {
            sched_yield();
        }
    }
}

static void loop_main(void *arg)
{
    sdl_one *o = arg;
    tls_one = o;
    if (o->owner->poll_ns > 0)
        run_polling(o, o->owner->poll_ns);
    else
        uv_run(&o->uv, UV_RUN_DEFAULT);
    tls_one = NULL;
}

int sdl_loops_new(sdl_loops **out, int n)
{
    sdl_loops *L = NULL;
    int i, e, rc = 0;

    if (out == NULL || n < 1 || n > 1024)
        return sdd_error(SELDON_EINVAL, "sdl_loops_new: out is NULL or n=%d not in 1..1024", n);
    *out = NULL;
    if ((L = sdd_calloc(1, sizeof(*L))) == NULL ||
        (L->loops = sdd_calloc((size_t)n, sizeof(*L->loops))) == NULL) {
        sdd_free(L);
        return sdd_error(SELDON_ENOMEM, "loops: %d", n);
    }
    L->n = n;
    for (i = 0; i < n; i++) {
        sdl_one *o = &L->loops[i];
        o->owner = L;
        o->index = i;
        if ((e = uv_loop_init(&o->uv)) < 0) {
            rc = sdd_error(SELDON_EIO, "loop %d: uv_loop_init: %s", i, uv_strerror(e));
            goto out;
        }
        o->inited = 1;
        if ((e = uv_mutex_init(&o->mu)) < 0) {
            rc = sdd_error(SELDON_EIO, "loop %d: uv_mutex_init: %s", i, uv_strerror(e));
            goto out;
        }
        o->mu_inited = 1;
        if ((e = uv_async_init(&o->uv, &o->async, on_async)) < 0) {
            rc = sdd_error(SELDON_EIO, "loop %d: uv_async_init: %s", i, uv_strerror(e));
            goto out;
        }
        o->async.data = o;
        o->async_inited = 1;
        o->async_open = 1;
    }
    *out = L;
    L = NULL;
out:
    sdl_loops_free(L);
    return rc;
}

int sdl_loops_count(const sdl_loops *L)
{
    return L != NULL ? L->n : 0;
}

void sdl_loops_busy_poll(sdl_loops *L, unsigned us)
{
    if (L != NULL && !L->running)
        L->poll_ns = (uint64_t)us * 1000u;
}

uv_loop_t *sdl_loops_loop(sdl_loops *L, int i)
{
    if (L == NULL || i < 0 || i >= L->n)
        return NULL;
    return &L->loops[i].uv;
}

int sdl_loops_start(sdl_loops *L)
{
    int i, e;
    if (L == NULL || L->running)
        return sdd_error(SELDON_ESTATE, "sdl_loops_start: NULL or already started");
    for (i = 0; i < L->n; i++) {
        if ((e = uv_thread_create(&L->loops[i].thread, loop_main, &L->loops[i])) < 0) {
            int rc = sdd_error(SELDON_EIO, "loop %d: thread: %s", i, uv_strerror(e));
            sdl_loops_stop(L);
            sdl_loops_join(L);
            return rc;
        }
        L->loops[i].started = 1;
    }
    L->running = 1;
    return 0;
}

int sdl_loops_post(sdl_loops *L, int i, void (*fn)(void *arg), void *arg)
{
    sdl_one *o;
    sdl_task *t;
    int closed;

    if (L == NULL || fn == NULL || i < 0 || i >= L->n)
        return sdd_error(SELDON_EINVAL, "sdl_loops_post: bad loop %d or NULL", i);
    o = &L->loops[i];
    if ((t = sdd_malloc(sizeof(*t))) == NULL)
        return sdd_error(SELDON_ENOMEM, "sdl_loops_post");
    t->next = NULL;
    t->fn = fn;
    t->arg = arg;
    uv_mutex_lock(&o->mu);
    closed = o->closed || o->stop;
    if (!closed) {
        if (o->tail != NULL)
            o->tail->next = t;
        else
            o->head = t;
        o->tail = t;
        uv_async_send(&o->async); /* under the lock: the loop closes it only once closed */
    }
    uv_mutex_unlock(&o->mu);
    if (closed) {
        sdd_free(t);
        return sdd_error(SELDON_ESTATE, "loop %d is stopping", i);
    }
    return 0;
}

int sdl_loops_current(const sdl_loops *L)
{
    const sdl_one *o = tls_one;
    return o != NULL && o->owner == L ? o->index : -1;
}

void sdl_loops_stop(sdl_loops *L)
{
    int i;
    if (L == NULL)
        return;
    for (i = 0; i < L->n; i++) {
        sdl_one *o = &L->loops[i];
        if (!o->async_inited)
            continue;
        uv_mutex_lock(&o->mu);
        if (!o->stop && !o->closed) {
            o->stop = 1;
            uv_async_send(&o->async);
        }
        uv_mutex_unlock(&o->mu);
    }
}

void sdl_loops_join(sdl_loops *L)
{
    int i;
    if (L == NULL)
        return;
    for (i = 0; i < L->n; i++) {
        sdl_one *o = &L->loops[i];
        if (o->started && !o->joined) {
            uv_thread_join(&o->thread);
            o->joined = 1;
        }
    }
    L->running = 0;
}

static void close_walk(uv_handle_t *h, void *arg)
{
    int *n = arg;
    if (!uv_is_closing(h)) {
        (*n)++;
        uv_close(h, NULL);
    }
}

void sdl_loops_free(sdl_loops *L)
{
    int i;
    if (L == NULL)
        return;
    sdl_loops_stop(L);
    sdl_loops_join(L);
    for (i = 0; i < L->n; i++) {
        sdl_one *o = &L->loops[i];
        sdl_task *t;
        if (o->inited) {
            int stray = 0;
            if (o->async_open) {
                uv_close((uv_handle_t *)&o->async, NULL);
                o->async_open = 0;
            }
            uv_walk(&o->uv, close_walk, &stray);
            if (stray > 0)
                fprintf(stderr, "loops: loop %d freed with %d handle(s) still attached\n", i,
                        stray);
            uv_run(&o->uv, UV_RUN_DEFAULT);
            uv_loop_close(&o->uv);
        }
        while ((t = o->head) != NULL) {
            o->head = t->next;
            sdd_free(t);
        }
        if (o->mu_inited)
            uv_mutex_destroy(&o->mu);
    }
    sdd_free(L->loops);
    sdd_free(L);
}
