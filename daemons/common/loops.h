/*
 * Event loops owned by a daemon's main: N libuv loops, each run on a thread that
 * this helper starts for the caller. Servers, clients and timers attach to the
 * uv_loop_t's it hands out; transports never start threads of their own.
 *
 * Life cycle (main thread):
 *   sdl_loops_new(&L, n);                          loops exist, not running
 *   attach handles: sdh_server_listen(s, sdl_loops_loop(L, i)), ...
 *   sdl_loops_start(L);                            one thread per loop, running
 *   ... sdl_loops_post(L, i, fn, arg) from any thread runs fn on loop i ...
 *   stop the servers and clients attached (they close their handles)
 *   sdl_loops_stop(L); sdl_loops_join(L);         each loop ends once its handles are closed
 *   sdl_loops_free(L);
 *
 * Thread safety: sdl_loops_post(), sdl_loops_current() and sdl_loops_loop() may be
 * called from any thread; the others from the controlling thread only (never from a
 * loop thread).
 */
#ifndef SDL_LOOPS_H
#define SDL_LOOPS_H

#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sdl_loops sdl_loops;

/*
 * Creates n (1..1024) initialised loops, not yet running. Returns 0 or a negative
 * SELDON_E* (detail in seldon_last_error()). Caller owns *out; free with
 * sdl_loops_free().
 */
int sdl_loops_new(sdl_loops **out, int n);

/* The number of loops. */
int sdl_loops_count(const sdl_loops *L);

/*
 * Busy polling: after each round of events a loop keeps looking for the next for up to
 * us microseconds before it sleeps, in an adaptive window that shrinks to nothing while
 * traffic is sparse (see run_polling() in loops.c). It trades processor time under load
 * for the wake-ups it saves; 0 (the default) sleeps at once. Call before
 * sdl_loops_start(); later calls are ignored.
 */
void sdl_loops_busy_poll(sdl_loops *L, unsigned us);

/* Loop i (0 <= i < count), borrowed until sdl_loops_free(); NULL when out of range. */
uv_loop_t *sdl_loops_loop(sdl_loops *L, int i);

/*
 * Starts one thread per loop; each runs its loop until sdl_loops_stop() and until
 * every handle attached to it is closed. Returns 0, or a negative SELDON_E* (the
 * threads already started are stopped and joined).
 */
int sdl_loops_start(sdl_loops *L);

/*
 * Runs fn(arg) on loop i's thread, soon (from any thread, including loop i's own:
 * then on a later iteration). Returns 0, SELDON_EINVAL for a bad index,
 * SELDON_ENOMEM, or SELDON_ESTATE once the loops are stopping (fn will not run).
 */
int sdl_loops_post(sdl_loops *L, int i, void (*fn)(void *arg), void *arg);

/* The index of the loop whose thread calls this, or -1 on any other thread. */
int sdl_loops_current(const sdl_loops *L);

/*
 * Asks every loop to end: the helper closes its own handle on each, so a loop's
 * thread returns once the handles that others attached are closed too (stop the
 * servers and clients first). Posts still queued run first. Idempotent.
 */
void sdl_loops_stop(sdl_loops *L);

/* Waits for every loop thread to return. */
void sdl_loops_join(sdl_loops *L);

/*
 * Stops and joins if needed, then closes the loops and frees. A handle still
 * attached is closed here (a bug in its owner, reported on stderr). NULL is a no-op.
 */
void sdl_loops_free(sdl_loops *L);

#ifdef __cplusplus
}
#endif

#endif
