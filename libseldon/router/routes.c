/*
 * The route table: built once (by the builder, which the YAML parser drives),
 * then immutable and shared by refcount. Names and upstream addresses are
 * hashed (xxhash) into open-addressing indexes, so a lookup is one probe in
 * the common case.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "router/router.h"

struct seldon_routes_builder {
    seldon_routes *t;
};

uint64_t sdn_rt_hash(const char *s, size_t len)
{
    return XXH3_64bits(s, len);
}

void sdn_rt_quote(char *out, size_t cap, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0, i;
    if (cap == 0)
        return;
    for (i = 0; i < len && i < 64; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            if (o + 1 >= cap)
                break;
            out[o++] = (char)c;
        } else {
            if (o + 4 >= cap)
                break;
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    if (i < len && o + 3 < cap) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

static int bad_addr(const char *s, size_t len, const char *why)
{
    char q[280];
    sdn_rt_quote(q, sizeof(q), s, len);
    return sdn_error(SELDON_EPARSE, "expected host:port%s, got \"%s\"", why, q);
}

static int host_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || c == '_';
}

int sdn_rt_parse_addr(const char *s, size_t len, const char **host, uint16_t *port, sdn_arena *a)
{
    const char *h, *p;
    size_t hlen, plen, i;
    uint32_t v = 0;
    char *copy;
    if (len == 0)
        return bad_addr(s, len, "");
    if (s[0] == '[') {
        const char *close = memchr(s, ']', len);
        int colon = 0;
        if (close == NULL || close + 1 >= s + len || close[1] != ':')
            return bad_addr(s, len, " ([v6addr]:port)");
        h = s + 1;
        hlen = (size_t)(close - h);
        for (i = 0; i < hlen; i++) {
            unsigned char c = (unsigned char)h[i];
            if (c == ':')
                colon = 1;
            else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
                       c == '.'))
                return bad_addr(s, len, " (bad IPv6 address)");
        }
        if (!colon || hlen < 2)
            return bad_addr(s, len, " (bad IPv6 address)");
        p = close + 2;
    } else {
        const char *colon = NULL;
        for (i = 0; i < len; i++)
            if (s[i] == ':')
                colon = s + i;
        if (colon == NULL)
            return bad_addr(s, len, "");
        h = s;
        hlen = (size_t)(colon - s);
        if (hlen == 0 || hlen > 253)
            return bad_addr(s, len, "");
        for (i = 0; i < hlen; i++)
            if (!host_char((unsigned char)h[i]))
                return bad_addr(s, len, "");
        p = colon + 1;
    }
    plen = (size_t)(s + len - p);
    if (plen == 0 || plen > 5)
        return bad_addr(s, len, " (port 1-65535)");
    for (i = 0; i < plen; i++) {
        if (p[i] < '0' || p[i] > '9')
            return bad_addr(s, len, " (port 1-65535)");
        v = v * 10 + (uint32_t)(p[i] - '0');
    }
    if (v == 0 || v > 65535)
        return bad_addr(s, len, " (port 1-65535)");
    if (a != NULL) {
        copy = sdn_arena_strndup(a, h, hlen);
        if (copy == NULL)
            return sdn_error(SELDON_ENOMEM, "out of memory");
        *host = copy;
    }
    *port = (uint16_t)v;
    return 0;
}

int sdn_rt_check_name(const char *name, size_t len)
{
    size_t i;
    char q[280];
    if (len == 0)
        return sdn_error(SELDON_EPARSE, "expected a route name, got \"\"");
    if (len > SELDON_ROUTES_NAME_MAX) {
        sdn_rt_quote(q, sizeof(q), name, len);
        return sdn_error(SELDON_ETOOBIG, "route name longer than %d bytes: \"%s\"",
                         SELDON_ROUTES_NAME_MAX, q);
    }
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!host_char(c)) {
            sdn_rt_quote(q, sizeof(q), name, len);
            return sdn_error(SELDON_EPARSE,
                             "route name may hold only letters, digits, '.', '-' and '_', got "
                             "\"%s\"",
                             q);
        }
    }
    return 0;
}

int sdn_rt_check_defaults(const seldon_routes_defaults *d)
{
    const int64_t day = 86400000;
    if (d->timeout_ms < 0 || d->timeout_ms > day)
        return sdn_error(SELDON_EPARSE, "timeoutMs: expected 0 to %lld", (long long)day);
    if (d->retries < 0 || d->retries > SELDON_ROUTES_RETRIES_MAX)
        return sdn_error(SELDON_EPARSE, "retries: expected 0 to %d", SELDON_ROUTES_RETRIES_MAX);
    if (d->connect_timeout_ms < 1 || d->connect_timeout_ms > day)
        return sdn_error(SELDON_EPARSE, "connectTimeoutMs: expected 1 to %lld", (long long)day);
    if (d->eject_failures < 0 || d->eject_failures > 1000)
        return sdn_error(SELDON_EPARSE, "ejection.consecutiveFailures: expected 0 to 1000");
    if (d->eject_base_ms < 1 || d->eject_base_ms > day)
        return sdn_error(SELDON_EPARSE, "ejection.baseMs: expected 1 to %lld", (long long)day);
    if (d->eject_max_ms < d->eject_base_ms || d->eject_max_ms > day)
        return sdn_error(SELDON_EPARSE, "ejection.maxMs: expected baseMs to %lld", (long long)day);
    return 0;
}

size_t sdn_rt_make_key(char *buf, size_t cap, const char *http, const char *grpc)
{
    size_t hl = http ? strlen(http) : 0, gl = grpc ? strlen(grpc) : 0;
    if (hl + gl + 2 > cap)
        return 0;
    if (hl)
        memcpy(buf, http, hl);
    buf[hl] = '|';
    if (gl)
        memcpy(buf + hl + 1, grpc, gl);
    buf[hl + 1 + gl] = '\0';
    return hl + 1 + gl;
}

const char *sdn_rt_key(const seldon_routes *rt, size_t i, size_t *len)
{
    *len = rt->key_lens[i];
    return rt->keys[i];
}

/* --- Open-addressing indexes ------------------------------------------- */

static int index_grow(uint32_t **slots, size_t *cap, size_t count, const uint64_t *hashes_of)
{
    size_t ncap = *cap ? *cap * 2 : 16, i;
    uint32_t *ns = sdn_calloc(ncap, sizeof(*ns));
    if (ns == NULL)
        return SELDON_ENOMEM;
    for (i = 0; i < count; i++) {
        size_t s = (size_t)hashes_of[i] & (ncap - 1);
        while (ns[s] != 0)
            s = (s + 1) & (ncap - 1);
        ns[s] = (uint32_t)(i + 1);
    }
    sdn_free(*slots);
    *slots = ns;
    *cap = ncap;
    return 0;
}

static int64_t find_name(const seldon_routes *t, const char *name, size_t len, uint64_t h)
{
    size_t s;
    if (t->name_cap == 0)
        return -1;
    s = (size_t)h & (t->name_cap - 1);
    while (t->name_index[s] != 0) {
        const sdn_rt_route *r = &t->routes[t->name_index[s] - 1];
        if (r->hash == h && r->name_len == len && memcmp(r->name, name, len) == 0)
            return (int64_t)t->name_index[s] - 1;
        s = (s + 1) & (t->name_cap - 1);
    }
    return -1;
}

static int64_t find_key(const seldon_routes *t, const char *key, size_t len, uint64_t h)
{
    size_t s;
    if (t->key_cap == 0)
        return -1;
    s = (size_t)h & (t->key_cap - 1);
    while (t->key_index[s] != 0) {
        size_t i = t->key_index[s] - 1;
        if (t->key_lens[i] == len && memcmp(t->keys[i], key, len) == 0)
            return (int64_t)i;
        s = (s + 1) & (t->key_cap - 1);
    }
    return -1;
}

/* Rebuilds the name index at twice the size when it is half full. */
static int name_index_room(seldon_routes *t)
{
    uint64_t *hs;
    size_t i;
    int rc;
    if ((t->nroutes + 1) * 2 <= t->name_cap)
        return 0;
    hs = sdn_malloc((t->nroutes + 1) * sizeof(*hs));
    if (hs == NULL)
        return SELDON_ENOMEM;
    for (i = 0; i < t->nroutes; i++)
        hs[i] = t->routes[i].hash;
    rc = index_grow(&t->name_index, &t->name_cap, t->nroutes, hs);
    sdn_free(hs);
    return rc;
}

static int key_index_room(seldon_routes *t)
{
    uint64_t *hs;
    size_t i;
    int rc;
    if ((t->nups + 1) * 2 <= t->key_cap)
        return 0;
    hs = sdn_malloc((t->nups + 1) * sizeof(*hs));
    if (hs == NULL)
        return SELDON_ENOMEM;
    for (i = 0; i < t->nups; i++)
        hs[i] = sdn_rt_hash(t->keys[i], t->key_lens[i]);
    rc = index_grow(&t->key_index, &t->key_cap, t->nups, hs);
    sdn_free(hs);
    return rc;
}

/* --- Table lifetime ------------------------------------------------------ */

static seldon_routes *table_new(const seldon_routes_defaults *d)
{
    seldon_routes *t = sdn_calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->refs = 1;
    t->d = *d;
    t->d.version = SELDON_ROUTES_DEFAULTS_VERSION;
    sdn_arena_init(&t->arena, NULL, 0);
    return t;
}

static void table_free(seldon_routes *t)
{
    if (t == NULL)
        return;
    sdn_free(t->routes);
    sdn_free(t->route_ups);
    sdn_free(t->route_vers);
    sdn_free(t->cands);
    sdn_free(t->ups);
    sdn_free(t->keys);
    sdn_free(t->key_lens);
    sdn_free(t->stamp);
    sdn_free(t->name_index);
    sdn_free(t->key_index);
    sdn_arena_release(&t->arena);
    sdn_free(t);
}

seldon_routes *seldon_routes_retain(seldon_routes *routes)
{
    if (routes != NULL)
        __atomic_add_fetch(&routes->refs, 1, __ATOMIC_RELAXED);
    return routes;
}

void seldon_routes_release(seldon_routes *routes)
{
    if (routes != NULL && __atomic_sub_fetch(&routes->refs, 1, __ATOMIC_ACQ_REL) == 0)
        table_free(routes);
}

/* --- Builder ------------------------------------------------------------ */

int seldon_routes_builder_new(seldon_routes_builder **out, const seldon_routes_defaults *defaults)
{
    seldon_routes_defaults d = SELDON_ROUTES_DEFAULTS_INIT;
    seldon_routes_builder *b;
    int rc;
    if (out == NULL)
        return sdn_error(SELDON_EINVAL, "routes_builder_new: NULL out");
    *out = NULL;
    if (defaults != NULL) {
        if (defaults->version != SELDON_ROUTES_DEFAULTS_VERSION)
            return sdn_error(SELDON_EINVAL, "routes_builder_new: unknown defaults version %u",
                             (unsigned)defaults->version);
        d = *defaults;
        if ((rc = sdn_rt_check_defaults(&d)) != 0)
            return sdn_error_prefix(SELDON_EINVAL, "defaults");
    }
    b = sdn_calloc(1, sizeof(*b));
    if (b == NULL || (b->t = table_new(&d)) == NULL) {
        sdn_free(b);
        return sdn_error(SELDON_ENOMEM, "routes_builder_new: out of memory");
    }
    *out = b;
    return 0;
}

void seldon_routes_builder_free(seldon_routes_builder *builder)
{
    if (builder == NULL)
        return;
    table_free(builder->t);
    sdn_free(builder);
}

void sdn_rt_builder_set_defaults(seldon_routes_builder *b, const seldon_routes_defaults *d)
{
    b->t->d = *d;
    b->t->d.version = SELDON_ROUTES_DEFAULTS_VERSION;
}

int64_t sdn_rt_builder_find(const seldon_routes_builder *b, const char *name, size_t len)
{
    return find_name(b->t, name, len, sdn_rt_hash(name, len));
}

int sdn_rt_builder_route(seldon_routes_builder *b, const char *name, size_t len, int64_t timeout_ms,
                         int32_t retries)
{
    seldon_routes *t = b->t;
    sdn_rt_route *r;
    uint64_t h;
    int rc;
    size_t s;
    if ((rc = sdn_rt_check_name(name, len)) != 0)
        return rc;
    if (timeout_ms < -1 || timeout_ms > 86400000)
        return sdn_error(SELDON_EPARSE, "timeoutMs: expected 0 to 86400000");
    if (retries < -1 || retries > SELDON_ROUTES_RETRIES_MAX)
        return sdn_error(SELDON_EPARSE, "retries: expected 0 to %d", SELDON_ROUTES_RETRIES_MAX);
    if (t->nroutes > 0 && t->routes[t->nroutes - 1].nups == 0 &&
        t->routes[t->nroutes - 1].ncands == 0)
        return sdn_error(SELDON_EPARSE, "route \"%s\" has no upstreams",
                         t->routes[t->nroutes - 1].name);
    if (t->nroutes >= SELDON_ROUTES_ROUTES_MAX)
        return sdn_error(SELDON_ETOOBIG, "more than %d routes", SELDON_ROUTES_ROUTES_MAX);
    h = sdn_rt_hash(name, len);
    if (find_name(t, name, len, h) >= 0) {
        char q[280];
        sdn_rt_quote(q, sizeof(q), name, len);
        return sdn_error(SELDON_EEXIST, "duplicate route \"%s\"", q);
    }
    if (t->nroutes == t->routes_cap) {
        size_t ncap = t->routes_cap ? t->routes_cap * 2 : 8;
        sdn_rt_route *nr = sdn_realloc(t->routes, ncap * sizeof(*nr));
        if (nr == NULL)
            return sdn_error(SELDON_ENOMEM, "out of memory");
        t->routes = nr;
        t->routes_cap = ncap;
    }
    if (name_index_room(t) != 0)
        return sdn_error(SELDON_ENOMEM, "out of memory");
    r = &t->routes[t->nroutes];
    memset(r, 0, sizeof(*r));
    r->name = sdn_arena_strndup(&t->arena, name, len);
    if (r->name == NULL)
        return sdn_error(SELDON_ENOMEM, "out of memory");
    r->name_len = len;
    r->hash = h;
    r->timeout_ms = timeout_ms;
    r->retries = retries;
    r->first = (uint32_t)t->nroute_ups;
    r->cfirst = (uint32_t)t->ncands;
    r->mirror = -1;
    t->nroutes++;
    s = (size_t)h & (t->name_cap - 1);
    while (t->name_index[s] != 0)
        s = (s + 1) & (t->name_cap - 1);
    t->name_index[s] = (uint32_t)t->nroutes;
    return 0;
}

/* The distinct upstream for these addresses, added on first sight. */
static int intern_upstream(seldon_routes *t, const char *http, size_t hl, const char *grpc,
                           size_t gl, size_t *out)
{
    seldon_router_upstream u;
    char *key;
    size_t klen = hl + gl + 1, s;
    uint64_t h;
    int64_t found;
    int rc;
    memset(&u, 0, sizeof(u));
    if (http != NULL && (rc = sdn_rt_parse_addr(http, hl, &u.http_host, &u.http_port, NULL)) != 0)
        return sdn_error_prefix(rc, "http");
    if (grpc != NULL && (rc = sdn_rt_parse_addr(grpc, gl, &u.grpc_host, &u.grpc_port, NULL)) != 0)
        return sdn_error_prefix(rc, "grpc");
    key = sdn_malloc(klen + 1);
    if (key == NULL)
        return sdn_error(SELDON_ENOMEM, "out of memory");
    if (hl)
        memcpy(key, http, hl);
    key[hl] = '|';
    if (gl)
        memcpy(key + hl + 1, grpc, gl);
    key[klen] = '\0';
    h = sdn_rt_hash(key, klen);
    found = find_key(t, key, klen, h);
    if (found >= 0) {
        sdn_free(key);
        *out = (size_t)found;
        return 0;
    }
    if (t->nups == t->ups_cap) {
        size_t ncap = t->ups_cap ? t->ups_cap * 2 : 8;
        seldon_router_upstream *nu = sdn_realloc(t->ups, ncap * sizeof(*nu));
        char **nk;
        size_t *nl;
        uint32_t *ns;
        if (nu != NULL)
            t->ups = nu;
        nk = nu ? sdn_realloc(t->keys, ncap * sizeof(*nk)) : NULL;
        if (nk != NULL)
            t->keys = nk;
        nl = nk ? sdn_realloc(t->key_lens, ncap * sizeof(*nl)) : NULL;
        if (nl != NULL)
            t->key_lens = nl;
        ns = nl ? sdn_realloc(t->stamp, ncap * sizeof(*ns)) : NULL;
        if (ns == NULL) {
            sdn_free(key);
            return sdn_error(SELDON_ENOMEM, "out of memory");
        }
        t->stamp = ns;
        t->ups_cap = ncap;
    }
    if (key_index_room(t) != 0) {
        sdn_free(key);
        return sdn_error(SELDON_ENOMEM, "out of memory");
    }
    /* Strings live in the arena; the key moves there too. */
    {
        char *k2 = sdn_arena_strndup(&t->arena, key, klen);
        sdn_free(key);
        if (k2 == NULL)
            return sdn_error(SELDON_ENOMEM, "out of memory");
        key = k2;
    }
    u.index = (uint32_t)t->nups;
    if (http != NULL) {
        if ((u.http = sdn_arena_strndup(&t->arena, http, hl)) == NULL ||
            sdn_rt_parse_addr(http, hl, &u.http_host, &u.http_port, &t->arena) != 0)
            return sdn_error(SELDON_ENOMEM, "out of memory");
    }
    if (grpc != NULL) {
        if ((u.grpc = sdn_arena_strndup(&t->arena, grpc, gl)) == NULL ||
            sdn_rt_parse_addr(grpc, gl, &u.grpc_host, &u.grpc_port, &t->arena) != 0)
            return sdn_error(SELDON_ENOMEM, "out of memory");
    }
    t->ups[t->nups] = u;
    t->keys[t->nups] = key;
    t->key_lens[t->nups] = klen;
    t->stamp[t->nups] = 0;
    t->nups++;
    s = (size_t)h & (t->key_cap - 1);
    while (t->key_index[s] != 0)
        s = (s + 1) & (t->key_cap - 1);
    t->key_index[s] = (uint32_t)t->nups;
    *out = t->nups - 1;
    return 0;
}

int sdn_rt_builder_upstream(seldon_routes_builder *b, const char *http, size_t http_len,
                            const char *grpc, size_t grpc_len)
{
    seldon_routes *t = b->t;
    sdn_rt_route *r;
    size_t idx = 0;
    int rc;
    if (t->nroutes == 0)
        return sdn_error(SELDON_ESTATE, "an upstream needs a route first");
    if (http == NULL && grpc == NULL)
        return sdn_error(SELDON_EPARSE, "an upstream needs http or grpc");
    r = &t->routes[t->nroutes - 1];
    if (r->nups >= SELDON_ROUTES_UPSTREAMS_MAX)
        return sdn_error(SELDON_ETOOBIG, "more than %d upstreams", SELDON_ROUTES_UPSTREAMS_MAX);
    if ((rc = intern_upstream(t, http, http_len, grpc, grpc_len, &idx)) != 0)
        return rc;
    if (t->stamp[idx] == t->nroutes)
        return sdn_error(SELDON_EEXIST, "duplicate upstream %s", t->keys[idx]);
    t->stamp[idx] = (uint32_t)t->nroutes;
    if (t->nroute_ups == t->route_ups_cap) {
        size_t ncap = t->route_ups_cap ? t->route_ups_cap * 2 : 16;
        uint32_t *n = sdn_realloc(t->route_ups, ncap * sizeof(*n)), *vs;
        if (n == NULL)
            return sdn_error(SELDON_ENOMEM, "out of memory");
        t->route_ups = n;
        vs = sdn_realloc(t->route_vers, ncap * sizeof(*vs));
        if (vs == NULL)
            return sdn_error(SELDON_ENOMEM, "out of memory");
        t->route_vers = vs;
        t->route_ups_cap = ncap;
    }
    t->route_vers[t->nroute_ups] = 0;
    t->route_ups[t->nroute_ups++] = (uint32_t)idx;
    r->nups++;
    return 0;
}

void sdn_rt_builder_version(seldon_routes_builder *b, uint32_t version)
{
    seldon_routes *t = b->t;
    if (t->nroutes == 0 || t->routes[t->nroutes - 1].nups == 0)
        return;
    t->route_vers[t->nroute_ups - 1] = version;
    if (version != 0)
        t->routes[t->nroutes - 1].versioned = 1;
}

int64_t sdn_rt_builder_routable(const seldon_routes_builder *b, const char *name, size_t len)
{
    int64_t k = find_name(b->t, name, len, sdn_rt_hash(name, len));
    return k >= 0 && b->t->routes[k].nups > 0 ? k : -1;
}

int sdn_rt_builder_candidate(seldon_routes_builder *b, const char *name, size_t len,
                             uint32_t weight)
{
    if (b->t->nroutes == 0)
        return sdn_error(SELDON_ESTATE, "a candidate needs a route first");
    return sdn_rt_builder_candidate_at(b, b->t->nroutes - 1, name, len, weight);
}

int sdn_rt_builder_candidate_at(seldon_routes_builder *b, size_t route, const char *name,
                                size_t len, uint32_t weight)
{
    seldon_routes *t = b->t;
    sdn_rt_route *r;
    sdn_rt_cand *c;
    size_t i;
    int rc;
    if (route >= t->nroutes)
        return sdn_error(SELDON_ESTATE, "a candidate needs a route first");
    r = &t->routes[route];
    if ((rc = sdn_rt_check_name(name, len)) != 0)
        return rc;
    if (weight > INT32_MAX)
        return sdn_error(SELDON_EPARSE, "weight: expected 0 to %d", INT32_MAX);
    if (r->ncands >= SELDON_ROUTES_CANDIDATES_MAX)
        return sdn_error(SELDON_ETOOBIG, "more than %d candidates", SELDON_ROUTES_CANDIDATES_MAX);
    if (r->ncands == 0)
        r->cfirst = (uint32_t)t->ncands; /* its candidates are at or after here until built */
    for (i = r->cfirst; r->ncands > 0 && i < t->ncands; i++) {
        const sdn_rt_cand *o = &t->cands[i];
        if (o->owner == route && o->name_len == len && memcmp(o->name, name, len) == 0) {
            char q[280];
            sdn_rt_quote(q, sizeof(q), name, len);
            return sdn_error(SELDON_EEXIST, "duplicate candidate \"%s\"", q);
        }
    }
    if (t->ncands == t->cands_cap) {
        size_t ncap = t->cands_cap ? t->cands_cap * 2 : 8;
        sdn_rt_cand *n = sdn_realloc(t->cands, ncap * sizeof(*n));
        if (n == NULL)
            return sdn_error(SELDON_ENOMEM, "out of memory");
        t->cands = n;
        t->cands_cap = ncap;
    }
    c = &t->cands[t->ncands];
    memset(c, 0, sizeof(*c));
    if ((c->name = sdn_arena_strndup(&t->arena, name, len)) == NULL)
        return sdn_error(SELDON_ENOMEM, "out of memory");
    c->name_len = len;
    c->weight = weight;
    c->owner = (uint32_t)route;
    t->ncands++;
    r->ncands++;
    r->total_weight += weight;
    return 0;
}

int sdn_rt_builder_mirror(seldon_routes_builder *b, const char *name, size_t len, uint32_t percent)
{
    if (b->t->nroutes == 0)
        return sdn_error(SELDON_ESTATE, "a mirror needs a route first");
    return sdn_rt_builder_mirror_at(b, b->t->nroutes - 1, name, len, percent);
}

int sdn_rt_builder_mirror_at(seldon_routes_builder *b, size_t route, const char *name, size_t len,
                             uint32_t percent)
{
    seldon_routes *t = b->t;
    sdn_rt_route *r;
    int rc;
    if (route >= t->nroutes)
        return sdn_error(SELDON_ESTATE, "a mirror needs a route first");
    r = &t->routes[route];
    if ((rc = sdn_rt_check_name(name, len)) != 0)
        return rc;
    if (percent > 100)
        return sdn_error(SELDON_EPARSE, "percent: expected 0 to 100");
    if (r->mirror_name != NULL)
        return sdn_error(SELDON_EEXIST, "the route has a mirror already");
    if ((r->mirror_name = sdn_arena_strndup(&t->arena, name, len)) == NULL)
        return sdn_error(SELDON_ENOMEM, "out of memory");
    r->mirror_name_len = len;
    r->mirror_percent = percent;
    return 0;
}

/*
 * Candidates added to earlier routes (sdn_rt_builder_candidate_at) are moved
 * next to their route's others: each route's candidates end up contiguous, in
 * the order they were added. Nothing moves in the usual case (route by route).
 */
static int group_candidates(seldon_routes *t)
{
    sdn_rt_cand *sorted;
    size_t i, pos = 0, *next;
    int grouped = 1;
    for (i = 1; i < t->ncands && grouped; i++)
        grouped = t->cands[i].owner >= t->cands[i - 1].owner;
    if (grouped) {
        for (i = 0; i < t->ncands; i++)
            if (i == 0 || t->cands[i].owner != t->cands[i - 1].owner)
                t->routes[t->cands[i].owner].cfirst = (uint32_t)i;
        return 0;
    }
    sorted = sdn_malloc(t->ncands * sizeof(*sorted));
    next = sdn_calloc(t->nroutes, sizeof(*next));
    if (sorted == NULL || next == NULL) {
        sdn_free(sorted);
        sdn_free(next);
        return sdn_error(SELDON_ENOMEM, "out of memory");
    }
    for (i = 0; i < t->nroutes; i++) {
        t->routes[i].cfirst = (uint32_t)pos;
        next[i] = pos;
        pos += t->routes[i].ncands;
    }
    for (i = 0; i < t->ncands; i++)
        sorted[next[t->cands[i].owner]++] = t->cands[i];
    memcpy(t->cands, sorted, t->ncands * sizeof(*sorted));
    sdn_free(sorted);
    sdn_free(next);
    return 0;
}

/* Resolves candidates and mirrors to route indices; bare reason naming the route on failure. */
static int resolve_splits(seldon_routes *t)
{
    size_t i;
    uint32_t j;
    int rc;
    if ((rc = group_candidates(t)) != 0)
        return rc;
    for (i = 0; i < t->nroutes; i++) {
        sdn_rt_route *r = &t->routes[i];
        int64_t k;
        if (r->ncands > 0 && r->total_weight == 0)
            return sdn_error(SELDON_EPARSE, "route \"%s\": the candidates' weights add up to 0",
                             r->name);
        for (j = 0; j < r->ncands; j++) {
            sdn_rt_cand *c = &t->cands[r->cfirst + j];
            k = find_name(t, c->name, c->name_len, sdn_rt_hash(c->name, c->name_len));
            if (k < 0)
                return sdn_error(SELDON_EPARSE, "route \"%s\": candidate \"%s\" is not a route",
                                 r->name, c->name);
            if (t->routes[k].nups == 0)
                return sdn_error(SELDON_EPARSE,
                                 "route \"%s\": candidate \"%s\" has no upstreams of its own",
                                 r->name, c->name);
            c->route = (uint32_t)k;
        }
        if (r->mirror_name != NULL) {
            k = find_name(t, r->mirror_name, r->mirror_name_len,
                          sdn_rt_hash(r->mirror_name, r->mirror_name_len));
            if (k < 0)
                return sdn_error(SELDON_EPARSE, "route \"%s\": mirror \"%s\" is not a route",
                                 r->name, r->mirror_name);
            if (t->routes[k].nups == 0)
                return sdn_error(SELDON_EPARSE,
                                 "route \"%s\": mirror \"%s\" has no upstreams of its own", r->name,
                                 r->mirror_name);
            r->mirror = k;
        }
    }
    return 0;
}

int seldon_routes_builder_add_version(seldon_routes_builder *builder, const char *http,
                                      const char *grpc, uint32_t version)
{
    int rc = seldon_routes_builder_add_upstream(builder, http, grpc);
    if (rc == 0)
        sdn_rt_builder_version(builder, version);
    return rc;
}

int seldon_routes_builder_add_candidate(seldon_routes_builder *builder, const char *name,
                                        uint32_t weight)
{
    int rc;
    if (builder == NULL || name == NULL)
        return sdn_error(SELDON_EINVAL, "routes_builder_add_candidate: NULL argument");
    rc = sdn_rt_builder_candidate(builder, name, strlen(name), weight);
    if (rc != 0 && builder->t->nroutes > 0)
        return sdn_error_prefix(rc, "route \"%s\"",
                                builder->t->routes[builder->t->nroutes - 1].name);
    return rc;
}

int seldon_routes_builder_set_mirror(seldon_routes_builder *builder, const char *name,
                                     uint32_t percent)
{
    int rc;
    if (builder == NULL || name == NULL)
        return sdn_error(SELDON_EINVAL, "routes_builder_set_mirror: NULL argument");
    rc = sdn_rt_builder_mirror(builder, name, strlen(name), percent);
    if (rc != 0 && builder->t->nroutes > 0)
        return sdn_error_prefix(rc, "route \"%s\"",
                                builder->t->routes[builder->t->nroutes - 1].name);
    return rc;
}

int seldon_routes_builder_add_route(seldon_routes_builder *builder, const char *name,
                                    int64_t timeout_ms, int32_t retries)
{
    int rc;
    if (builder == NULL || name == NULL)
        return sdn_error(SELDON_EINVAL, "routes_builder_add_route: NULL argument");
    rc = sdn_rt_builder_route(builder, name, strlen(name), timeout_ms, retries);
    return rc == 0 ? 0 : sdn_error_prefix(rc, "route %zu", builder->t->nroutes);
}

int seldon_routes_builder_add_upstream(seldon_routes_builder *builder, const char *http,
                                       const char *grpc)
{
    int rc;
    if (builder == NULL)
        return sdn_error(SELDON_EINVAL, "routes_builder_add_upstream: NULL builder");
    rc = sdn_rt_builder_upstream(builder, http, http ? strlen(http) : 0, grpc,
                                 grpc ? strlen(grpc) : 0);
    if (rc != 0 && builder->t->nroutes > 0)
        return sdn_error_prefix(rc, "route \"%s\"",
                                builder->t->routes[builder->t->nroutes - 1].name);
    return rc;
}

int seldon_routes_builder_finish(seldon_routes **out, seldon_routes_builder *builder)
{
    seldon_routes *fresh;
    if (out == NULL || builder == NULL)
        return sdn_error(SELDON_EINVAL, "routes_builder_finish: NULL argument");
    *out = NULL;
    if (builder->t->nroutes > 0 && builder->t->routes[builder->t->nroutes - 1].nups == 0 &&
        builder->t->routes[builder->t->nroutes - 1].ncands == 0)
        return sdn_error(SELDON_EPARSE, "route \"%s\" has no upstreams",
                         builder->t->routes[builder->t->nroutes - 1].name);
    {
        int rc = resolve_splits(builder->t);
        if (rc != 0)
            return rc;
    }
    fresh = table_new(&builder->t->d);
    if (fresh == NULL)
        return sdn_error(SELDON_ENOMEM, "out of memory");
    *out = builder->t;
    builder->t = fresh;
    return 0;
}

/* --- Reading a table ---------------------------------------------------- */

void seldon_routes_get_defaults(seldon_routes_defaults *out, const seldon_routes *routes)
{
    if (out != NULL && routes != NULL)
        *out = routes->d;
}

size_t seldon_routes_count(const seldon_routes *routes)
{
    return routes ? routes->nroutes : 0;
}

int seldon_routes_find(size_t *out_index, const seldon_routes *routes, const char *name, size_t len)
{
    int64_t i;
    if (out_index == NULL || routes == NULL || (name == NULL && len > 0))
        return sdn_error(SELDON_EINVAL, "routes_find: NULL argument");
    if (name == NULL)
        name = "";
    i = find_name(routes, name, len, sdn_rt_hash(name, len));
    if (i < 0) {
        char q[280];
        sdn_rt_quote(q, sizeof(q), name, len);
        return sdn_error(SELDON_ENOTFOUND, "no route for model \"%s\"", q);
    }
    *out_index = (size_t)i;
    return 0;
}

const char *seldon_routes_name(const seldon_routes *routes, size_t route)
{
    return routes && route < routes->nroutes ? routes->routes[route].name : NULL;
}

int64_t seldon_routes_timeout_ms(const seldon_routes *routes, size_t route)
{
    if (routes == NULL || route >= routes->nroutes)
        return -1;
    return routes->routes[route].timeout_ms >= 0 ? routes->routes[route].timeout_ms
                                                 : routes->d.timeout_ms;
}

int32_t seldon_routes_retries(const seldon_routes *routes, size_t route)
{
    if (routes == NULL || route >= routes->nroutes)
        return -1;
    return routes->routes[route].retries >= 0 ? routes->routes[route].retries : routes->d.retries;
}

size_t seldon_routes_upstream_count(const seldon_routes *routes, size_t route)
{
    return routes && route < routes->nroutes ? routes->routes[route].nups : 0;
}

const seldon_router_upstream *seldon_routes_upstream(const seldon_routes *routes, size_t route,
                                                     size_t i)
{
    const sdn_rt_route *r;
    if (routes == NULL || route >= routes->nroutes)
        return NULL;
    r = &routes->routes[route];
    if (i >= r->nups)
        return NULL;
    return &routes->ups[routes->route_ups[r->first + i]];
}

int32_t seldon_routes_equal(const seldon_routes *a, const seldon_routes *b)
{
    size_t i, j;
    if (a == NULL || b == NULL)
        return a == b;
    if (a->d.timeout_ms != b->d.timeout_ms || a->d.retries != b->d.retries ||
        a->d.connect_timeout_ms != b->d.connect_timeout_ms ||
        a->d.eject_failures != b->d.eject_failures || a->d.eject_base_ms != b->d.eject_base_ms ||
        a->d.eject_max_ms != b->d.eject_max_ms || a->nroutes != b->nroutes)
        return 0;
    for (i = 0; i < a->nroutes; i++) {
        const sdn_rt_route *ra = &a->routes[i], *rb = &b->routes[i];
        if (ra->name_len != rb->name_len || memcmp(ra->name, rb->name, ra->name_len) != 0 ||
            ra->timeout_ms != rb->timeout_ms || ra->retries != rb->retries ||
            ra->nups != rb->nups || ra->ncands != rb->ncands || ra->mirror != rb->mirror ||
            ra->mirror_percent != rb->mirror_percent)
            return 0;
        for (j = 0; j < ra->ncands; j++) {
            const sdn_rt_cand *ca = &a->cands[ra->cfirst + j], *cb = &b->cands[rb->cfirst + j];
            if (ca->route != cb->route || ca->weight != cb->weight)
                return 0;
        }
        for (j = 0; j < ra->nups; j++) {
            uint32_t ua = a->route_ups[ra->first + j], ub = b->route_ups[rb->first + j];
            if (a->route_vers[ra->first + j] != b->route_vers[rb->first + j])
                return 0;
            if (a->key_lens[ua] != b->key_lens[ub] ||
                memcmp(a->keys[ua], b->keys[ub], a->key_lens[ua]) != 0)
                return 0;
        }
    }
    return 1;
}

/* --- Writing a table ---------------------------------------------------- */

static int put(seldon_buf *b, const char *s)
{
    return sdn_buf_append(b, s, strlen(s));
}

static int putf(seldon_buf *b, const char *fmt, ...) SDN_PRINTF(2, 3);
static int putf(seldon_buf *b, const char *fmt, ...)
{
    char tmp[600];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return SELDON_EINTERNAL;
    return sdn_buf_append(b, tmp, (size_t)n);
}

int seldon_routes_serialize(seldon_buf *out, const seldon_routes *routes)
{
    const seldon_routes_defaults *d;
    size_t i, j;
    int rc = 0;
    if (out == NULL || routes == NULL)
        return sdn_error(SELDON_EINVAL, "routes_serialize: NULL argument");
    d = &routes->d;
    rc |= put(out, "# seldon-router routes\n");
    rc |= putf(out,
               "defaults:\n  timeoutMs: %lld\n  retries: %d\n  connectTimeoutMs: %lld\n"
               "  ejection:\n    consecutiveFailures: %d\n    baseMs: %lld\n    maxMs: %lld\n",
               (long long)d->timeout_ms, (int)d->retries, (long long)d->connect_timeout_ms,
               (int)d->eject_failures, (long long)d->eject_base_ms, (long long)d->eject_max_ms);
    rc |= put(out, routes->nroutes ? "routes:\n" : "routes: []\n");
    for (i = 0; i < routes->nroutes && rc == 0; i++) {
        const sdn_rt_route *r = &routes->routes[i];
        /* Names and addresses hold no character that a double-quoted scalar must escape. */
        rc |= putf(out, "- name: \"%s\"\n", r->name);
        if (r->timeout_ms >= 0)
            rc |= putf(out, "  timeoutMs: %lld\n", (long long)r->timeout_ms);
        if (r->retries >= 0)
            rc |= putf(out, "  retries: %d\n", (int)r->retries);
        if (r->ncands > 0) {
            rc |= put(out, "  candidates:\n");
            for (j = 0; j < r->ncands; j++) {
                const sdn_rt_cand *c = &routes->cands[r->cfirst + j];
                rc |= putf(out, "  - {name: \"%s\", weight: %u}\n", c->name, (unsigned)c->weight);
            }
        }
        if (r->mirror_name != NULL)
            rc |= putf(out, "  mirror: {name: \"%s\", percent: %u}\n", r->mirror_name,
                       (unsigned)r->mirror_percent);
        rc |= put(out, r->nups ? "  upstreams:\n" : "  upstreams: []\n");
        for (j = 0; j < r->nups; j++) {
            const seldon_router_upstream *u = &routes->ups[routes->route_ups[r->first + j]];
            char ver[32] = "";
            if (routes->route_vers[r->first + j] != 0)
                snprintf(ver, sizeof(ver), ", version: %u",
                         (unsigned)routes->route_vers[r->first + j]);
            if (u->http && u->grpc)
                rc |= putf(out, "  - {http: \"%s\", grpc: \"%s\"%s}\n", u->http, u->grpc, ver);
            else if (u->http)
                rc |= putf(out, "  - {http: \"%s\"%s}\n", u->http, ver);
            else
                rc |= putf(out, "  - {grpc: \"%s\"%s}\n", u->grpc, ver);
        }
    }
    if (rc != 0)
        return sdn_error(SELDON_ENOMEM, "routes_serialize: out of memory");
    return 0;
}

int seldon_routes_save(const seldon_routes *routes, const char *path)
{
    seldon_buf b = SELDON_BUF_INIT;
    char *tmp = NULL;
    FILE *f = NULL;
    size_t plen;
    int rc;
    if (routes == NULL || path == NULL)
        return sdn_error(SELDON_EINVAL, "routes_save: NULL argument");
    if ((rc = seldon_routes_serialize(&b, routes)) != 0)
        goto out;
    plen = strlen(path);
    tmp = sdn_malloc(plen + 8);
    if (tmp == NULL) {
        rc = sdn_error(SELDON_ENOMEM, "routes_save: out of memory");
        goto out;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    f = fopen(tmp, "wb");
    if (f == NULL) {
        rc = sdn_error(SELDON_EIO, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    if (fwrite(b.data, 1, b.len, f) != b.len || fflush(f) != 0 || fsync(fileno(f)) != 0) {
        rc = sdn_error(SELDON_EIO, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    if (fclose(f) != 0) {
        f = NULL;
        rc = sdn_error(SELDON_EIO, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    f = NULL;
    if (rename(tmp, path) != 0) {
        rc = sdn_error(SELDON_EIO, "%s: %s", path, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    if (f != NULL)
        fclose(f);
    if (rc != 0 && tmp != NULL)
        remove(tmp);
    sdn_free(tmp);
    seldon_buf_free(&b);
    return rc;
}

/* --- Experiments: reading a table ----------------------------------------- */

uint32_t seldon_routes_upstream_version(const seldon_routes *routes, size_t route, size_t i)
{
    const sdn_rt_route *r;
    if (routes == NULL || route >= routes->nroutes)
        return 0;
    r = &routes->routes[route];
    return i < r->nups ? routes->route_vers[r->first + i] : 0;
}

size_t seldon_routes_candidate_count(const seldon_routes *routes, size_t route)
{
    return routes && route < routes->nroutes ? routes->routes[route].ncands : 0;
}

int seldon_routes_candidate(size_t *out_route, uint32_t *out_weight, const seldon_routes *routes,
                            size_t route, size_t i)
{
    const sdn_rt_route *r;
    if (routes == NULL || route >= routes->nroutes)
        return sdn_error(SELDON_EINVAL, "routes_candidate: bad route");
    r = &routes->routes[route];
    if (i >= r->ncands)
        return sdn_error(SELDON_ENOTFOUND, "route \"%s\" has no candidate %zu", r->name, i);
    if (out_route != NULL)
        *out_route = routes->cands[r->cfirst + i].route;
    if (out_weight != NULL)
        *out_weight = routes->cands[r->cfirst + i].weight;
    return 0;
}

int seldon_routes_mirror(size_t *out_route, uint32_t *out_percent, const seldon_routes *routes,
                         size_t route)
{
    const sdn_rt_route *r;
    if (routes == NULL || route >= routes->nroutes)
        return sdn_error(SELDON_EINVAL, "routes_mirror: bad route");
    r = &routes->routes[route];
    if (r->mirror < 0)
        return sdn_error(SELDON_ENOTFOUND, "route \"%s\" has no mirror", r->name);
    if (out_route != NULL)
        *out_route = (size_t)r->mirror;
    if (out_percent != NULL)
        *out_percent = r->mirror_percent;
    return 0;
}
