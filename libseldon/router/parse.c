/*
 * The routes file, read with libyaml's event parser. Strict: every field is
 * known, typed and range-checked, and an error names the file, the line and
 * the field's path, e.g. `routes.yaml:7: routes[1].upstreams[0].http: ...`.
 * Aliases are refused, so the work done is bounded by the input's size.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <yaml.h>

#include "router/router.h"

typedef struct ups_tmp {
    char *http, *grpc; /* arena copies, NULL when absent */
    size_t http_len, grpc_len;
    size_t line;
    uint32_t version;
} ups_tmp;

typedef struct cand_tmp {
    char *name;
    size_t len;
    size_t line;
    uint32_t weight;
} cand_tmp;

typedef struct parser {
    yaml_parser_t y;
    yaml_event_t ev;
    int have; /* ev holds an event to delete */
    const char *src;
    seldon_routes_builder *b;
    seldon_routes_defaults d;
    sdn_arena tmp;       /* per-route scratch */
    size_t *route_lines; /* line of each route added, for duplicates */
    size_t nroute_lines, route_lines_cap;
} parser;

#define PATH_MAX_LEN 96

static size_t line_of(const yaml_event_t *e)
{
    return e->start_mark.line + 1;
}

/* `src:line: path: message` as the last error; returns code. */
static int fail(parser *p, int code, size_t line, const char *path, const char *fmt, ...)
    SDN_PRINTF(5, 6);
static int fail(parser *p, int code, size_t line, const char *path, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (path != NULL && path[0] != '\0')
        return sdn_error(code, "%s:%zu: %s: %s", p->src, line, path, msg);
    return sdn_error(code, "%s:%zu: %s", p->src, line, msg);
}

/* Wraps the bare reason that a builder call left as the last error. */
static int place(parser *p, int rc, size_t line, const char *path)
{
    char reason[512];
    snprintf(reason, sizeof(reason), "%s", seldon_last_error());
    if (rc == SELDON_EEXIST)
        rc = SELDON_EPARSE;
    return fail(p, rc, line, path, "%s", reason);
}

/* path.field into out, cut at cap (paths are short: the schema is shallow). */
static void join(char *out, size_t cap, const char *path, const char *field)
{
    int n = snprintf(out, cap, "%s%s%s", path, path[0] ? "." : "", field);
    if (n < 0)
        out[0] = '\0';
}

static int next(parser *p)
{
    if (p->have) {
        yaml_event_delete(&p->ev);
        p->have = 0;
    }
    if (!yaml_parser_parse(&p->y, &p->ev)) {
        if (p->y.error == YAML_MEMORY_ERROR)
            return sdn_error(SELDON_ENOMEM, "%s: out of memory", p->src);
        return fail(p, SELDON_EPARSE, p->y.problem_mark.line + 1, NULL, "invalid YAML: %s%s%s",
                    p->y.problem ? p->y.problem : "syntax error", p->y.context ? " " : "",
                    p->y.context ? p->y.context : "");
    }
    p->have = 1;
    if (p->ev.type == YAML_ALIAS_EVENT)
        return fail(p, SELDON_EPARSE, line_of(&p->ev), NULL, "aliases are not supported");
    return 0;
}

static const char *kind_name(yaml_event_type_t t)
{
    switch (t) {
    case YAML_SCALAR_EVENT:
        return "a scalar";
    case YAML_SEQUENCE_START_EVENT:
        return "a list";
    case YAML_MAPPING_START_EVENT:
        return "a mapping";
    default:
        return "nothing";
    }
}

static int expect(parser *p, yaml_event_type_t t, const char *path, const char *what)
{
    if (p->ev.type != t)
        return fail(p, SELDON_EPARSE, line_of(&p->ev), path, "expected %s, got %s", what,
                    kind_name(p->ev.type));
    return 0;
}

static int is_null(const yaml_event_t *e)
{
    const char *v = (const char *)e->data.scalar.value;
    size_t n = e->data.scalar.length;
    if (e->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    return n == 0 || (n == 1 && v[0] == '~') || (n == 4 && memcmp(v, "null", 4) == 0) ||
           (n == 4 && memcmp(v, "Null", 4) == 0) || (n == 4 && memcmp(v, "NULL", 4) == 0);
}

/* The current event as an integer in [lo, hi]. */
static int read_int(parser *p, const char *path, int64_t lo, int64_t hi, int64_t *out)
{
    const char *v;
    size_t n, i;
    int64_t x = 0;
    char q[280];
    if (p->ev.type != YAML_SCALAR_EVENT)
        return fail(p, SELDON_EPARSE, line_of(&p->ev), path, "expected an integer, got %s",
                    kind_name(p->ev.type));
    v = (const char *)p->ev.data.scalar.value;
    n = p->ev.data.scalar.length;
    sdn_rt_quote(q, sizeof(q), v, n);
    if (p->ev.data.scalar.style != YAML_PLAIN_SCALAR_STYLE || n == 0 || n > 12)
        goto bad;
    for (i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            goto bad;
        x = x * 10 + (v[i] - '0');
    }
    if (x < lo || x > hi)
        return fail(p, SELDON_EPARSE, line_of(&p->ev), path,
                    "expected an integer from %lld to %lld, got %lld", (long long)lo, (long long)hi,
                    (long long)x);
    *out = x;
    return 0;
bad:
    return fail(p, SELDON_EPARSE, line_of(&p->ev), path, "expected an integer, got \"%s\"", q);
}

/* The current event as a string, copied into the scratch arena. */
static int read_str(parser *p, const char *path, char **out, size_t *len)
{
    if (p->ev.type != YAML_SCALAR_EVENT)
        return fail(p, SELDON_EPARSE, line_of(&p->ev), path, "expected a string, got %s",
                    kind_name(p->ev.type));
    if (is_null(&p->ev))
        return fail(p, SELDON_EPARSE, line_of(&p->ev), path, "expected a string, got nothing");
    *len = p->ev.data.scalar.length;
    *out = sdn_arena_strndup(&p->tmp, (const char *)p->ev.data.scalar.value, *len);
    if (*out == NULL)
        return sdn_error(SELDON_ENOMEM, "%s: out of memory", p->src);
    return 0;
}

/*
 * Mapping iteration: call with the MAPPING_START current; each call moves
 * to the next key and returns 1 with its text in key (NUL-terminated), 0 at
 * the end, or an error. A key seen twice in one mapping is refused.
 */
static int map_key(parser *p, const char *path, char *key, size_t cap, uint32_t *seen,
                   const char *const *fields, size_t nfields, size_t *field)
{
    int rc;
    size_t i, n;
    char sub[PATH_MAX_LEN + 64], q[280], list[160];
    if ((rc = next(p)) != 0)
        return rc;
    if (p->ev.type == YAML_MAPPING_END_EVENT)
        return 0;
    if (p->ev.type != YAML_SCALAR_EVENT)
        return fail(p, SELDON_EPARSE, line_of(&p->ev), path, "expected a field name, got %s",
                    kind_name(p->ev.type));
    n = p->ev.data.scalar.length;
    sdn_rt_quote(q, sizeof(q), (const char *)p->ev.data.scalar.value, n);
    for (i = 0; i < nfields; i++) {
        if (strlen(fields[i]) == n && memcmp(fields[i], p->ev.data.scalar.value, n) == 0)
            break;
    }
    join(sub, sizeof(sub), path, q);
    if (i == nfields) {
        size_t o = 0, j;
        list[0] = '\0';
        for (j = 0; j < nfields; j++) {
            size_t fl = strlen(fields[j]);
            if (o + fl + 3 >= sizeof(list))
                break;
            if (j) {
                memcpy(list + o, ", ", 2);
                o += 2;
            }
            memcpy(list + o, fields[j], fl + 1);
            o += fl;
        }
        return fail(p, SELDON_EPARSE, line_of(&p->ev), sub, "unknown field (expected one of %s)",
                    list);
    }
    if (*seen & (1u << i))
        return fail(p, SELDON_EPARSE, line_of(&p->ev), sub, "duplicate field");
    *seen |= 1u << i;
    if (strlen(fields[i]) >= cap)
        return sdn_error(SELDON_EINTERNAL, "field name too long");
    memcpy(key, fields[i], strlen(fields[i]) + 1);
    *field = i;
    return 1;
}

static int parse_ejection(parser *p, const char *path)
{
    static const char *const fields[] = {"consecutiveFailures", "baseMs", "maxMs"};
    uint32_t seen = 0;
    size_t f, line = line_of(&p->ev);
    char key[32], sub[PATH_MAX_LEN + 64];
    int64_t v;
    int rc;
    if ((rc = expect(p, YAML_MAPPING_START_EVENT, path, "a mapping")) != 0)
        return rc;
    while ((rc = map_key(p, path, key, sizeof(key), &seen, fields, 3, &f)) == 1) {
        join(sub, sizeof(sub), path, key);
        if ((rc = next(p)) != 0)
            return rc;
        if ((rc = read_int(p, sub, f == 0 ? 0 : 1, f == 0 ? 1000 : 86400000, &v)) != 0)
            return rc;
        if (f == 0)
            p->d.eject_failures = (int32_t)v;
        else if (f == 1)
            p->d.eject_base_ms = v;
        else
            p->d.eject_max_ms = v;
    }
    if (rc == 0 && p->d.eject_max_ms < p->d.eject_base_ms)
        return fail(p, SELDON_EPARSE, line, path, "maxMs (%lld) is below baseMs (%lld)",
                    (long long)p->d.eject_max_ms, (long long)p->d.eject_base_ms);
    return rc;
}

static int parse_defaults(parser *p)
{
    static const char *const fields[] = {"timeoutMs", "retries", "connectTimeoutMs", "ejection"};
    uint32_t seen = 0;
    size_t f;
    char key[32], sub[PATH_MAX_LEN + 64];
    int64_t v;
    int rc;
    if ((rc = expect(p, YAML_MAPPING_START_EVENT, "defaults", "a mapping")) != 0)
        return rc;
    while ((rc = map_key(p, "defaults", key, sizeof(key), &seen, fields, 4, &f)) == 1) {
        join(sub, sizeof(sub), "defaults", key);
        if ((rc = next(p)) != 0)
            return rc;
        switch (f) {
        case 0:
            rc = read_int(p, sub, 0, 86400000, &v);
            p->d.timeout_ms = v;
            break;
        case 1:
            rc = read_int(p, sub, 0, SELDON_ROUTES_RETRIES_MAX, &v);
            p->d.retries = (int32_t)v;
            break;
        case 2:
            rc = read_int(p, sub, 1, 86400000, &v);
            p->d.connect_timeout_ms = v;
            break;
        default:
            rc = parse_ejection(p, sub);
            break;
        }
        if (rc != 0)
            return rc;
    }
    return rc;
}

static int parse_upstream(parser *p, const char *path, ups_tmp *u)
{
    static const char *const fields[] = {"http", "grpc", "version"};
    uint32_t seen = 0;
    size_t f;
    char key[16], sub[PATH_MAX_LEN + 64];
    char *s;
    size_t len;
    uint16_t port;
    const char *host;
    int64_t v;
    int rc;
    memset(u, 0, sizeof(*u));
    u->line = line_of(&p->ev);
    if ((rc = expect(p, YAML_MAPPING_START_EVENT, path, "a mapping with http and/or grpc")) != 0)
        return rc;
    while ((rc = map_key(p, path, key, sizeof(key), &seen, fields, 3, &f)) == 1) {
        join(sub, sizeof(sub), path, key);
        if ((rc = next(p)) != 0)
            return rc;
        if (f == 2) {
            if ((rc = read_int(p, sub, 0, UINT32_MAX, &v)) != 0)
                return rc;
            u->version = (uint32_t)v;
            continue;
        }
        if ((rc = read_str(p, sub, &s, &len)) != 0)
            return rc;
        if ((rc = sdn_rt_parse_addr(s, len, &host, &port, NULL)) != 0)
            return place(p, rc, line_of(&p->ev), sub);
        if (f == 0) {
            u->http = s;
            u->http_len = len;
        } else {
            u->grpc = s;
            u->grpc_len = len;
        }
    }
    if (rc == 0 && u->http == NULL && u->grpc == NULL)
        return fail(p, SELDON_EPARSE, u->line, path, "needs http or grpc");
    return rc;
}

/* {name, weight} or {name, percent}: a candidate or the mirror. */
static int parse_target(parser *p, const char *path, cand_tmp *c, const char *amount, int64_t hi)
{
    const char *fields[2];
    uint32_t seen = 0;
    size_t f;
    char key[16], sub[PATH_MAX_LEN + 64];
    int64_t v;
    int rc;
    fields[0] = "name";
    fields[1] = amount;
    memset(c, 0, sizeof(*c));
    c->line = line_of(&p->ev);
    if ((rc = expect(p, YAML_MAPPING_START_EVENT, path, "a mapping with name and a number")) != 0)
        return rc;
    while ((rc = map_key(p, path, key, sizeof(key), &seen, fields, 2, &f)) == 1) {
        join(sub, sizeof(sub), path, key);
        if ((rc = next(p)) != 0)
            return rc;
        if (f == 0) {
            if ((rc = read_str(p, sub, &c->name, &c->len)) != 0)
                return rc;
            if ((rc = sdn_rt_check_name(c->name, c->len)) != 0)
                return place(p, rc, line_of(&p->ev), sub);
        } else {
            if ((rc = read_int(p, sub, 0, hi, &v)) != 0)
                return rc;
            c->weight = (uint32_t)v;
        }
    }
    if (rc != 0)
        return rc;
    if (seen != 3u)
        return fail(p, SELDON_EPARSE, c->line, path, "needs name and %s", amount);
    return 0;
}

static int note_route_line(parser *p, size_t line)
{
    if (p->nroute_lines == p->route_lines_cap) {
        size_t ncap = p->route_lines_cap ? p->route_lines_cap * 2 : 16;
        size_t *n = sdn_realloc(p->route_lines, ncap * sizeof(*n));
        if (n == NULL)
            return sdn_error(SELDON_ENOMEM, "%s: out of memory", p->src);
        p->route_lines = n;
        p->route_lines_cap = ncap;
    }
    p->route_lines[p->nroute_lines++] = line;
    return 0;
}

static int parse_route(parser *p, size_t index)
{
    static const char *const fields[] = {"name",    "upstreams",  "timeoutMs",
                                         "retries", "candidates", "mirror"};
    uint32_t seen = 0;
    size_t f, line = line_of(&p->ev), name_line = 0, name_len = 0, nups = 0, cap = 0, i;
    size_t ups_line = 0, ncands = 0;
    char key[16], path[PATH_MAX_LEN], sub[PATH_MAX_LEN + 64], *name = NULL;
    ups_tmp *ups = NULL;
    cand_tmp cands[SELDON_ROUTES_CANDIDATES_MAX], mirror;
    int has_mirror = 0;
    int64_t timeout = -1, retries = -1, v, dup;
    int rc;

    sdn_arena_reset(&p->tmp);
    snprintf(path, sizeof(path), "routes[%zu]", index);
    if ((rc = expect(p, YAML_MAPPING_START_EVENT, path, "a mapping")) != 0)
        return rc;
    while ((rc = map_key(p, path, key, sizeof(key), &seen, fields, 6, &f)) == 1) {
        join(sub, sizeof(sub), path, key);
        if ((rc = next(p)) != 0)
            return rc;
        switch (f) {
        case 4:
            if ((rc = expect(p, YAML_SEQUENCE_START_EVENT, sub, "a list of candidates")) != 0)
                return rc;
            for (;;) {
                char cpath[PATH_MAX_LEN + 64];
                if ((rc = next(p)) != 0)
                    return rc;
                if (p->ev.type == YAML_SEQUENCE_END_EVENT)
                    break;
                if (ncands == SELDON_ROUTES_CANDIDATES_MAX)
                    return fail(p, SELDON_ETOOBIG, line_of(&p->ev), sub, "more than %d candidates",
                                SELDON_ROUTES_CANDIDATES_MAX);
                if (snprintf(cpath, sizeof(cpath), "%s[%zu]", sub, ncands) < 0)
                    cpath[0] = '\0';
                if ((rc = parse_target(p, cpath, &cands[ncands], "weight", INT32_MAX)) != 0)
                    return rc;
                ncands++;
            }
            break;
        case 5:
            if ((rc = parse_target(p, sub, &mirror, "percent", 100)) != 0)
                return rc;
            has_mirror = 1;
            break;
        case 0:
            name_line = line_of(&p->ev);
            if ((rc = read_str(p, sub, &name, &name_len)) != 0)
                return rc;
            if ((rc = sdn_rt_check_name(name, name_len)) != 0)
                return place(p, rc, name_line, sub);
            break;
        case 1:
            ups_line = line_of(&p->ev);
            if ((rc = expect(p, YAML_SEQUENCE_START_EVENT, sub, "a list of upstreams")) != 0)
                return rc;
            for (;;) {
                char upath[PATH_MAX_LEN + 64];
                if ((rc = next(p)) != 0)
                    return rc;
                if (p->ev.type == YAML_SEQUENCE_END_EVENT)
                    break;
                if (nups == SELDON_ROUTES_UPSTREAMS_MAX)
                    return fail(p, SELDON_ETOOBIG, line_of(&p->ev), sub, "more than %d upstreams",
                                SELDON_ROUTES_UPSTREAMS_MAX);
                if (nups == cap) {
                    size_t ncap = cap ? cap * 2 : 4;
                    ups_tmp *n =
                        sdn_arena_grow(&p->tmp, ups, cap * sizeof(*ups), ncap * sizeof(*ups));
                    if (n == NULL)
                        return sdn_error(SELDON_ENOMEM, "%s: out of memory", p->src);
                    ups = n;
                    cap = ncap;
                }
                if (snprintf(upath, sizeof(upath), "%s[%zu]", sub, nups) < 0)
                    upath[0] = '\0';
                if ((rc = parse_upstream(p, upath, &ups[nups])) != 0)
                    return rc;
                nups++;
            }
            break;
        case 2:
            if ((rc = read_int(p, sub, 0, 86400000, &v)) != 0)
                return rc;
            timeout = v;
            break;
        default:
            if ((rc = read_int(p, sub, 0, SELDON_ROUTES_RETRIES_MAX, &v)) != 0)
                return rc;
            retries = v;
            break;
        }
    }
    if (rc != 0)
        return rc;
    if (name == NULL)
        return fail(p, SELDON_EPARSE, line, path, "name is required");
    if (!(seen & 2u) && ncands == 0)
        return fail(p, SELDON_EPARSE, line, path, "upstreams is required");
    if (nups == 0 && ncands == 0) {
        join(sub, sizeof(sub), path, "upstreams");
        return fail(p, SELDON_EPARSE, ups_line, sub, "expected at least one upstream");
    }
    join(sub, sizeof(sub), path, "name");
    dup = sdn_rt_builder_find(p->b, name, name_len);
    if (dup >= 0) {
        char q[280];
        sdn_rt_quote(q, sizeof(q), name, name_len);
        return fail(p, SELDON_EPARSE, name_line, sub, "duplicate route \"%s\" (first at line %zu)",
                    q, p->route_lines[dup]);
    }
    if ((rc = sdn_rt_builder_route(p->b, name, name_len, timeout, (int32_t)retries)) != 0)
        return place(p, rc, name_line, sub);
    if ((rc = note_route_line(p, name_line)) != 0)
        return rc;
    for (i = 0; i < nups; i++) {
        rc = sdn_rt_builder_upstream(p->b, ups[i].http, ups[i].http_len, ups[i].grpc,
                                     ups[i].grpc_len);
        if (rc != 0) {
            snprintf(sub, sizeof(sub), "%s.upstreams[%zu]", path, i);
            return place(p, rc, ups[i].line, sub);
        }
        sdn_rt_builder_version(p->b, ups[i].version);
    }
    for (i = 0; i < ncands; i++) {
        rc = sdn_rt_builder_candidate(p->b, cands[i].name, cands[i].len, cands[i].weight);
        if (rc != 0) {
            snprintf(sub, sizeof(sub), "%s.candidates[%zu]", path, i);
            return place(p, rc, cands[i].line, sub);
        }
    }
    if (has_mirror &&
        (rc = sdn_rt_builder_mirror(p->b, mirror.name, mirror.len, mirror.weight)) != 0) {
        join(sub, sizeof(sub), path, "mirror");
        return place(p, rc, mirror.line, sub);
    }
    return 0;
}

static int parse_routes(parser *p)
{
    size_t n = 0;
    int rc;
    if ((rc = expect(p, YAML_SEQUENCE_START_EVENT, "routes", "a list of routes")) != 0)
        return rc;
    for (;;) {
        if ((rc = next(p)) != 0)
            return rc;
        if (p->ev.type == YAML_SEQUENCE_END_EVENT)
            return 0;
        if (n == SELDON_ROUTES_ROUTES_MAX)
            return fail(p, SELDON_ETOOBIG, line_of(&p->ev), "routes", "more than %d routes",
                        SELDON_ROUTES_ROUTES_MAX);
        if ((rc = parse_route(p, n)) != 0)
            return rc;
        n++;
    }
}

static int parse_doc(parser *p)
{
    static const char *const fields[] = {"defaults", "routes"};
    uint32_t seen = 0;
    size_t f, line;
    char key[16];
    int rc;
    if ((rc = next(p)) != 0 || (rc = expect(p, YAML_STREAM_START_EVENT, "", "a stream")) != 0)
        return rc;
    if ((rc = next(p)) != 0)
        return rc;
    if (p->ev.type == YAML_STREAM_END_EVENT)
        return fail(p, SELDON_EPARSE, 1, NULL, "empty file: expected a mapping with routes");
    if ((rc = next(p)) != 0)
        return rc;
    line = line_of(&p->ev);
    if (p->ev.type == YAML_SCALAR_EVENT && is_null(&p->ev))
        return fail(p, SELDON_EPARSE, line, NULL, "empty document: expected a mapping with routes");
    if ((rc = expect(p, YAML_MAPPING_START_EVENT, "", "a mapping with routes")) != 0)
        return rc;
    while ((rc = map_key(p, "", key, sizeof(key), &seen, fields, 2, &f)) == 1) {
        if ((rc = next(p)) != 0)
            return rc;
        rc = f == 0 ? parse_defaults(p) : parse_routes(p);
        if (rc != 0)
            return rc;
    }
    if (rc != 0)
        return rc;
    if (!(seen & 2u))
        return fail(p, SELDON_EPARSE, line, NULL, "routes is required");
    if ((rc = next(p)) != 0) /* DOCUMENT_END */
        return rc;
    if ((rc = next(p)) != 0)
        return rc;
    if (p->ev.type != YAML_STREAM_END_EVENT)
        return fail(p, SELDON_EPARSE, line_of(&p->ev), NULL, "only one YAML document is allowed");
    return 0;
}

int seldon_routes_parse(seldon_routes **out, const char *data, size_t len, const char *source)
{
    seldon_routes_defaults d = SELDON_ROUTES_DEFAULTS_INIT;
    parser p;
    int rc;
    if (out == NULL || (data == NULL && len > 0))
        return sdn_error(SELDON_EINVAL, "routes_parse: NULL argument");
    *out = NULL;
    memset(&p, 0, sizeof(p));
    p.src = source ? source : "routes";
    p.d = d;
    if (len > SELDON_ROUTES_FILE_MAX)
        return sdn_error(SELDON_ETOOBIG, "%s: larger than %d bytes", p.src, SELDON_ROUTES_FILE_MAX);
    if ((rc = seldon_routes_builder_new(&p.b, NULL)) != 0)
        return rc;
    if (!yaml_parser_initialize(&p.y)) {
        seldon_routes_builder_free(p.b);
        return sdn_error(SELDON_ENOMEM, "%s: out of memory", p.src);
    }
    sdn_arena_init(&p.tmp, NULL, 0);
    yaml_parser_set_input_string(&p.y, (const unsigned char *)(data ? data : ""), len);
    rc = parse_doc(&p);
    if (rc == 0) {
        sdn_rt_builder_set_defaults(p.b, &p.d);
        rc = seldon_routes_builder_finish(out, p.b);
        if (rc == SELDON_EPARSE)
            rc = sdn_error_prefix(rc, "%s", p.src);
    }
    if (p.have)
        yaml_event_delete(&p.ev);
    yaml_parser_delete(&p.y);
    sdn_arena_release(&p.tmp);
    sdn_free(p.route_lines);
    seldon_routes_builder_free(p.b);
    return rc;
}

int seldon_routes_load(seldon_routes **out, const char *path)
{
    FILE *f;
    char *buf = NULL;
    size_t len = 0, cap = 0, n;
    int rc;
    if (out == NULL || path == NULL)
        return sdn_error(SELDON_EINVAL, "routes_load: NULL argument");
    *out = NULL;
    f = fopen(path, "rb");
    if (f == NULL)
        return sdn_error(SELDON_EIO, "%s: cannot open: %s", path, strerror(errno));
    for (;;) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 4096;
            char *nb;
            if (cap > SELDON_ROUTES_FILE_MAX) {
                rc = sdn_error(SELDON_ETOOBIG, "%s: larger than %d bytes", path,
                               SELDON_ROUTES_FILE_MAX);
                goto out;
            }
            nb = sdn_realloc(buf, ncap);
            if (nb == NULL) {
                rc = sdn_error(SELDON_ENOMEM, "%s: out of memory", path);
                goto out;
            }
            buf = nb;
            cap = ncap;
        }
        n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    if (ferror(f)) {
        rc = sdn_error(SELDON_EIO, "%s: read error", path);
        goto out;
    }
    rc = seldon_routes_parse(out, buf, len, path);
out:
    fclose(f);
    sdn_free(buf);
    return rc;
}
