/*
 * Requests held while their route has no upstream to take them. A model that moves
 * (its only replica died, or a rollout put it elsewhere) has, for a moment, no
 * replica in the route table, or only one that refuses connections. Rather than fail
 * those requests, the router parks them on their loop and tries them again when the
 * next table arrives, and at the latest every RT_HOLD_TICK_MS, until --hold (or the
 * route's timeout) passes; then they fail with the error they had.
 *
 * A request for a route that is absent is held only when a table swapped out within
 * the hold had that route: the model was served moments ago. A name never routed is
 * a 404 at once. Everything here runs on the loop that owns the requests.
 */
#include <string.h>

#include "router.h"
#include "sdd.h"

#define RT_HOLD_TICK_MS 100

static void on_tick(uv_timer_t *t);

void rt_hold_init(rt_loop *L)
{
    L->held.prev = L->held.next = &L->held;
    uv_timer_init(L->loop, &L->hold_timer);
    L->hold_timer.data = L;
}

int64_t rt_hold_until(rt_loop *L, int64_t now_ns)
{
    uint64_t ms = L->r->cfg.hold_ms;
    return ms == 0 ? 0 : now_ns + (int64_t)ms * 1000000;
}

static void arm(rt_loop *L)
{
    int64_t now = rt_now_ns(), first = INT64_MAX, ms;
    rt_held *h;
    if (L->closing || L->held.next == &L->held)
        return;
    for (h = L->held.next; h != &L->held; h = h->next)
        if (h->until_ns < first)
            first = h->until_ns;
    ms = first > now ? (first - now + 999999) / 1000000 : 0;
    if (ms > RT_HOLD_TICK_MS)
        ms = RT_HOLD_TICK_MS;
    uv_timer_start(&L->hold_timer, on_tick, (uint64_t)ms, 0);
}

void rt_hold(rt_loop *L, rt_held *h)
{
    h->prev = L->held.prev;
    h->next = &L->held;
    L->held.prev->next = h;
    L->held.prev = h;
    h->linked = 1;
    if (!uv_is_active((uv_handle_t *)&L->hold_timer))
        arm(L);
}

void rt_unhold(rt_held *h)
{
    if (!h->linked)
        return;
    h->prev->next = h->next;
    h->next->prev = h->prev;
    h->prev = h->next = NULL;
    h->linked = 0;
}

/* Takes every held request off the list, then lets each try again (or fail, when its
   time is up); those that find nothing yet park again, on the list emptied here. */
static void wake_all(rt_loop *L, int all_expired)
{
    rt_held list, *h;
    int64_t now = rt_now_ns();
    if (L->held.next == &L->held)
        return;
    list.next = L->held.next;
    list.prev = L->held.prev;
    list.next->prev = &list;
    list.prev->next = &list;
    L->held.prev = L->held.next = &L->held;
    while ((h = list.next) != &list) {
        h->prev->next = h->next;
        h->next->prev = h->prev;
        h->prev = h->next = NULL;
        h->linked = 0;
        h->wake(h, all_expired || now >= h->until_ns);
    }
    arm(L);
}

static void on_tick(uv_timer_t *t)
{
    wake_all(t->data, 0);
}

void rt_hold_swapped(rt_loop *L, seldon_routes *old)
{
    int64_t now = rt_now_ns(), keep = (int64_t)L->r->cfg.hold_ms * 1000000;
    int i, k = 0;
    /* Forget tables swapped out longer ago than the hold. */
    for (i = 0; i < L->ngone; i++) {
        if (now - L->gone_at[i] > keep) {
            seldon_routes_release(L->gone[i]);
            continue;
        }
        L->gone[k] = L->gone[i];
        L->gone_at[k++] = L->gone_at[i];
    }
    L->ngone = k;
    if (old == NULL)
        return;
    if (keep == 0) {
        seldon_routes_release(old);
        return;
    }
    if (L->ngone == RT_GONE_MAX) { /* the oldest goes */
        seldon_routes_release(L->gone[0]);
        memmove(L->gone, L->gone + 1, (RT_GONE_MAX - 1) * sizeof(L->gone[0]));
        memmove(L->gone_at, L->gone_at + 1, (RT_GONE_MAX - 1) * sizeof(L->gone_at[0]));
        L->ngone--;
    }
    L->gone[L->ngone] = old;
    L->gone_at[L->ngone++] = now;
}

void rt_hold_wake(rt_loop *L)
{
    wake_all(L, 0);
}

int rt_route_gone(rt_loop *L, const char *name, size_t len)
{
    int64_t now = rt_now_ns(), keep = (int64_t)L->r->cfg.hold_ms * 1000000;
    size_t idx;
    int i;
    for (i = 0; i < L->ngone; i++)
        if (now - L->gone_at[i] <= keep && seldon_routes_find(&idx, L->gone[i], name, len) == 0)
            return 1;
    return 0;
}

int rt_route_serves(rt_loop *L, const char *name, size_t len, int32_t protocol)
{
    const seldon_routes *t = seldon_router_lb_routes(L->lb);
    size_t idx, i, n;
    if (seldon_routes_find(&idx, t, name, len) != 0)
        return 0;
    n = seldon_routes_upstream_count(t, idx);
    for (i = 0; i < n; i++) {
        const seldon_router_upstream *u = seldon_routes_upstream(t, idx, i);
        if (u != NULL && (protocol == SELDON_ROUTER_GRPC ? u->grpc : u->http) != NULL)
            return 1;
    }
    return 0;
}

void rt_hold_close(rt_loop *L)
{
    int i;
    wake_all(L, 1); /* L->closing: each fails at once */
    uv_close((uv_handle_t *)&L->hold_timer, NULL);
    for (i = 0; i < L->ngone; i++)
        seldon_routes_release(L->gone[i]);
    L->ngone = 0;
}
