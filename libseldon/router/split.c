/*
 * The experiment decision: which candidate serves a request (sticky, else
 * weighted), and whether a copy goes to the mirror. Pure: the random bits
 * come in, so a test replays any decision.
 */
#include <string.h>

#include "router/router.h"

/* Another 64 bits from the same input (splitmix64), for the mirror's draw. */
static uint64_t mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

/* The high 64 bits of a * b. */
static uint64_t mulhi(uint64_t a, uint64_t b)
{
    uint64_t al = a & 0xffffffffu, ah = a >> 32, bl = b & 0xffffffffu, bh = b >> 32;
    uint64_t ll = al * bl, lh = al * bh, hl = ah * bl, hh = ah * bh;
    uint64_t mid = (ll >> 32) + (lh & 0xffffffffu) + (hl & 0xffffffffu);
    return hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
}

/*
 * Whether the header holds ":<name>:" or ":<name>_<digits>:" as one token: -1 when
 * not, else the version the first such token names (0 for ":<name>:", or digits past
 * 32 bits).
 */
static int64_t names(const char *h, size_t hl, const char *name, size_t nl)
{
    size_t i = 0;
    while (i < hl) {
        const char *p = memchr(h + i, ':', hl - i), *q;
        size_t at, j;
        if (p == NULL)
            return -1;
        at = (size_t)(p - h) + 1;
        if (at + nl >= hl)
            return -1;
        if (memcmp(h + at, name, nl) == 0) {
            q = h + at + nl;
            if (*q == ':')
                return 0;
            if (*q == '_') {
                uint64_t v = 0;
                for (j = at + nl + 1; j < hl && h[j] >= '0' && h[j] <= '9'; j++)
                    v = v > UINT32_MAX ? v : v * 10 + (uint64_t)(h[j] - '0');
                if (j > at + nl + 1 && j < hl && h[j] == ':')
                    return v > UINT32_MAX ? 0 : (int64_t)v;
            }
        }
        i = at;
    }
    return -1;
}

/* version when an upstream of route r serves it (a rollout keeps both), else 0. */
static uint32_t served(const seldon_routes *rt, const sdn_rt_route *r, int64_t version)
{
    uint32_t i;
    if (version <= 0 || !r->versioned)
        return 0;
    for (i = 0; i < r->nups; i++)
        if (rt->route_vers[r->first + i] == (uint32_t)version)
            return (uint32_t)version;
    return 0;
}

int seldon_routes_decide(size_t *out_route, int64_t *out_mirror, int32_t *out_sticky,
                         const seldon_routes *routes, size_t route, const char *sticky,
                         size_t sticky_len, uint64_t random)
{
    return seldon_routes_decide_version(out_route, NULL, out_mirror, out_sticky, routes, route,
                                        sticky, sticky_len, random);
}

int seldon_routes_decide_version(size_t *out_route, uint32_t *out_version, int64_t *out_mirror,
                                 int32_t *out_sticky, const seldon_routes *routes, size_t route,
                                 const char *sticky, size_t sticky_len, uint64_t random)
{
    const sdn_rt_route *r;
    uint32_t i;
    int64_t v;
    if (out_version != NULL)
        *out_version = 0;
    if (out_route == NULL || routes == NULL || route >= routes->nroutes ||
        (sticky == NULL && sticky_len > 0))
        return sdn_error(SELDON_EINVAL, "routes_decide: bad argument");
    r = &routes->routes[route];
    *out_route = route;
    if (out_sticky != NULL)
        *out_sticky = 0;
    if (out_mirror != NULL) {
        *out_mirror = -1;
        /* A point in [0, 100) from a second draw: copy when it falls below percent. */
        if (r->mirror >= 0 && r->mirror_percent > 0 && mulhi(mix(random), 100) < r->mirror_percent)
            *out_mirror = r->mirror;
    }
    if (r->ncands == 0) {
        /* A version this route still serves (a rollout): the request stays on it. */
        if (out_version != NULL && sticky_len > 2 && r->versioned)
            *out_version = served(routes, r, names(sticky, sticky_len, r->name, r->name_len));
        return 0;
    }
    if (sticky_len > 2) {
        for (i = 0; i < r->ncands; i++) {
            const sdn_rt_cand *c = &routes->cands[r->cfirst + i];
            if ((v = names(sticky, sticky_len, c->name, c->name_len)) >= 0) {
                *out_route = c->route;
                if (out_sticky != NULL)
                    *out_sticky = 1;
                if (out_version != NULL)
                    *out_version = served(routes, &routes->routes[c->route], v);
                return 0;
            }
        }
    }
    {
        /* A point in [0, total): the high half of random * total. */
        uint64_t at = mulhi(random, r->total_weight);
        for (i = 0; i < r->ncands; i++) {
            const sdn_rt_cand *c = &routes->cands[r->cfirst + i];
            if (at < c->weight) {
                *out_route = c->route;
                return 0;
            }
            at -= c->weight;
        }
        /* unreachable: at < total */
        *out_route = routes->cands[r->cfirst + r->ncands - 1].route;
    }
    return 0;
}
