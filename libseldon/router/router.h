/*
 * Internal parts of the router module shared by its files: the table's
 * layout, the builder's extra calls for the YAML parser, error helpers.
 */
#ifndef SDN_ROUTER_H
#define SDN_ROUTER_H

#include "core/core.h"
#include "seldon/router.h"

typedef struct sdn_rt_route {
    char *name;
    size_t name_len;
    uint64_t hash;
    int64_t timeout_ms; /* -1: the default */
    int32_t retries;    /* -1: the default */
    uint32_t first;     /* into seldon_routes.route_ups */
    uint32_t nups;
    /* An experiment in front (docs/experiments.md): candidates[cfirst .. +ncands). */
    uint32_t cfirst, ncands;
    uint64_t total_weight;
    char *mirror_name; /* arena; NULL: no mirror */
    size_t mirror_name_len;
    int64_t mirror; /* the mirror's route index once built, else -1 */
    uint32_t mirror_percent;
    uint8_t versioned; /* an upstream of the route has a version */
} sdn_rt_route;

typedef struct sdn_rt_cand {
    char *name; /* arena */
    size_t name_len;
    uint32_t route; /* the candidate's route index once built */
    uint32_t weight;
    uint32_t owner; /* the route whose experiment it belongs to */
} sdn_rt_cand;

struct seldon_routes {
    int refs; /* __atomic */
    seldon_routes_defaults d;
    sdn_rt_route *routes;
    size_t nroutes, routes_cap;
    uint32_t *route_ups;  /* upstream indices of every route, route after route */
    uint32_t *route_vers; /* parallel: the model version each upstream serves (0: none) */
    size_t nroute_ups, route_ups_cap;
    sdn_rt_cand *cands; /* experiment candidates of every route, route after route */
    size_t ncands, cands_cap;
    seldon_router_upstream *ups; /* distinct upstreams */
    char **keys;                 /* "http|grpc" of each, the identity a balancer keeps state by */
    size_t *key_lens;
    uint32_t *stamp; /* builder: the route that last added each upstream, +1 */
    size_t nups, ups_cap;
    uint32_t *name_index; /* open addressing: route index + 1, 0 empty */
    size_t name_cap;      /* power of two */
    uint32_t *key_index;  /* same, over keys */
    size_t key_cap;
    sdn_arena arena; /* strings */
};

/* Text safe to quote in a message: at most 64 bytes, non-printables as \xHH. */
void sdn_rt_quote(char *out, size_t cap, const char *s, size_t len);

/*
 * Checks "host:port". On success fills host (arena copy, brackets removed)
 * and port; on failure returns SELDON_EPARSE with the bare reason as the
 * last error (`expected host:port, got "abc"`).
 */
int sdn_rt_parse_addr(const char *s, size_t len, const char **host, uint16_t *port, sdn_arena *a);

/* SELDON_EPARSE with a bare reason when name is not a valid route name. */
int sdn_rt_check_name(const char *name, size_t len);

/* Builder calls whose errors carry a bare reason, for the parser to place. */
int sdn_rt_builder_route(seldon_routes_builder *b, const char *name, size_t len, int64_t timeout_ms,
                         int32_t retries);
int sdn_rt_builder_upstream(seldon_routes_builder *b, const char *http, size_t http_len,
                            const char *grpc, size_t grpc_len);
/* Sets the version of the last upstream added. */
void sdn_rt_builder_version(seldon_routes_builder *b, uint32_t version);
int sdn_rt_builder_candidate(seldon_routes_builder *b, const char *name, size_t len,
                             uint32_t weight);
int sdn_rt_builder_mirror(seldon_routes_builder *b, const char *name, size_t len, uint32_t percent);
/*
 * The same for any route already added (route: its index), so that an experiment
 * can take over a route that another part of the table added (the scheduler's
 * pipelines, say). Bare reasons.
 */
int sdn_rt_builder_candidate_at(seldon_routes_builder *b, size_t route, const char *name,
                                size_t len, uint32_t weight);
int sdn_rt_builder_mirror_at(seldon_routes_builder *b, size_t route, const char *name, size_t len,
                             uint32_t percent);
/* The index of the route name if it is in the builder with upstreams of its own, else -1. */
int64_t sdn_rt_builder_routable(const seldon_routes_builder *b, const char *name, size_t len);
/* The index of a route already added under that name, or -1. */
int64_t sdn_rt_builder_find(const seldon_routes_builder *b, const char *name, size_t len);
void sdn_rt_builder_set_defaults(seldon_routes_builder *b, const seldon_routes_defaults *d);
/* Checks a defaults struct's ranges; bare reason naming the field. */
int sdn_rt_check_defaults(const seldon_routes_defaults *d);

/* The balancer's key of upstream i of a table. */
const char *sdn_rt_key(const seldon_routes *rt, size_t i, size_t *len);
/* The key of an upstream as a table would write it, into buf; 0 if it does not fit. */
size_t sdn_rt_make_key(char *buf, size_t cap, const char *http, const char *grpc);

uint64_t sdn_rt_hash(const char *s, size_t len);

/* Metrics the balancer records into (metrics.c). */
struct seldon_router_metrics {
    seldon_metrics *registry;
    seldon_metric *requests;
    seldon_metric *upstream_seconds;
    seldon_metric *retries;
    seldon_metric *ejections;
    seldon_metric *connections;
    seldon_metric *mirrored; /* {route}: copies picked an upstream of the mirror's route */
};

#endif
