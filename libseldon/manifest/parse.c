/*
 * The schema walk: each document's tree becomes one seldon_resource. Every
 * field is known and typed; an error names the source, the document, the
 * resource and the field's path, and ends with the line, e.g.
 *   model.yaml: document 1 (Model "iris"): spec.storagUri: unknown field (line 6)
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manifest/manifest.h"

#define PATH_CAP 192

typedef struct mf_ctx {
    const char *src;
    size_t doc;
    const char *kind; /* for messages: the document's kind when it is one we know */
    char name[80];    /* for messages: metadata.name, quoted, or "" */
    sdn_arena *a;     /* the manifest's arena: what the resource keeps */
    sdn_arena *tmp;   /* the document's scratch arena */
    char path[PATH_CAP];
    size_t plen;
} mf_ctx;

/* ---- errors and paths ---- */

static int fail(mf_ctx *c, size_t line, const char *fmt, ...) SDN_PRINTF(3, 4);
static int fail(mf_ctx *c, size_t line, const char *fmt, ...)
{
    char msg[300], who[120];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    who[0] = '\0';
    if (c->kind != NULL && c->name[0] != '\0')
        snprintf(who, sizeof(who), " (%s \"%s\")", c->kind, c->name);
    else if (c->kind != NULL)
        snprintf(who, sizeof(who), " (%s)", c->kind);
    else if (c->name[0] != '\0')
        snprintf(who, sizeof(who), " (\"%s\")", c->name);
    return sdn_error(SELDON_EPARSE, "%.160s: document %zu%s: %s%s%s (line %zu)", c->src, c->doc,
                     who, c->path, c->plen ? ": " : "", msg, line);
}

static int oom(mf_ctx *c)
{
    return sdn_error(SELDON_ENOMEM, "%.200s: out of memory", c->src);
}

/* Appends to the path; returns the length to go back to. */
static size_t enter(mf_ctx *c, const char *fmt, ...) SDN_PRINTF(2, 3);
static size_t enter(mf_ctx *c, const char *fmt, ...)
{
    size_t old = c->plen;
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(c->path + c->plen, sizeof(c->path) - c->plen, fmt, ap);
    va_end(ap);
    if (n > 0)
        c->plen += (size_t)n;
    if (c->plen >= sizeof(c->path))
        c->plen = sizeof(c->path) - 1;
    return old;
}

static size_t enter_field(mf_ctx *c, const char *field)
{
    return enter(c, "%s%s", c->plen ? "." : "", field);
}

static void leave(mf_ctx *c, size_t old)
{
    c->plen = old;
    c->path[old] = '\0';
}

static const char *what(const sdn_mf_node *n)
{
    int b;
    if (n == NULL || sdn_mf_is_null(n))
        return "nothing";
    if (n->type == SDN_MF_SEQ)
        return "a list";
    if (n->type == SDN_MF_MAP)
        return "a mapping";
    if (sdn_mf_is_bool(n, &b))
        return "true/false";
    if (sdn_mf_is_number(n))
        return "a number";
    return "text";
}

/* A scalar that is text: quoted, or plain but not null, true/false or a number. */
static int is_text(const sdn_mf_node *n)
{
    int b;
    if (n == NULL || n->type != SDN_MF_SCALAR)
        return 0;
    if (!n->plain)
        return 1;
    return !sdn_mf_is_null(n) && !sdn_mf_is_bool(n, &b) && !sdn_mf_is_number(n);
}

static int wrong_type(mf_ctx *c, const sdn_mf_node *n, const char *expected)
{
    if (n->type == SDN_MF_SCALAR && n->plain && !sdn_mf_is_null(n) &&
        strcmp(expected, "text") == 0) {
        char q[64];
        sdn_mf_quote(q, sizeof(q), n->s, n->len);
        return fail(c, n->line, "expected text, got %s (write it in quotes: \"%s\")", what(n), q);
    }
    return fail(c, n->line, "expected %s, got %s", expected, what(n));
}

/* ---- field lookup ---- */

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), i, j;
    size_t row[40];
    if (la >= 40 || lb >= 40)
        return 99;
    for (j = 0; j <= lb; j++)
        row[j] = j;
    for (i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/*
 * The fields of a mapping: out[i] is the value of names[i], NULL when
 * absent or null (Kubernetes treats a null field as an absent one). A null
 * mapping has no fields. An unknown field or a repeated one is an error.
 */
static int fields_of(mf_ctx *c, const sdn_mf_node *map, const char *const *names, size_t count,
                     const sdn_mf_node **out)
{
    const sdn_mf_node *k;
    uint64_t seen = 0;
    size_t i;
    for (i = 0; i < count; i++)
        out[i] = NULL;
    if (map == NULL || sdn_mf_is_null(map))
        return 0;
    if (map->type != SDN_MF_MAP)
        return wrong_type(c, map, "a mapping");
    for (k = map->first; k != NULL && k->next != NULL; k = k->next->next) {
        char q[64];
        for (i = 0; i < count; i++)
            if (strcmp(k->s, names[i]) == 0 && strlen(names[i]) == k->len)
                break;
        if (i == count) {
            size_t best = 0, bestd = 99;
            for (i = 0; i < count; i++) {
                size_t d = edit_distance(k->s, names[i]);
                if (d < bestd) {
                    bestd = d;
                    best = i;
                }
            }
            sdn_mf_quote(q, sizeof(q), k->s, k->len);
            enter_field(c, q);
            if (bestd <= 2 && bestd < k->len)
                return fail(c, k->line, "unknown field (did you mean \"%s\"?)", names[best]);
            return fail(c, k->line, "unknown field");
        }
        if (seen & ((uint64_t)1 << i)) {
            enter_field(c, names[i]);
            return fail(c, k->line, "the field is given twice");
        }
        seen |= (uint64_t)1 << i;
        out[i] = sdn_mf_is_null(k->next) ? NULL : k->next;
    }
    return 0;
}

static int missing(mf_ctx *c, const sdn_mf_node *parent, const char *field)
{
    enter_field(c, field);
    return fail(c, parent ? parent->line : 1, "required field missing");
}

/* ---- names ---- */

/*
 * Resource names: 1 to max bytes of lowercase letters, digits, '-', '_' and
 * (when dots) '.', starting and ending with a letter or a digit. Seldon's
 * samples use `id1_node` and `mlserver.name`, so '_' and '.' are in.
 */
static int name_ok(const char *s, size_t len, size_t max, int dots)
{
    size_t i;
    if (len == 0 || len > max)
        return 0;
    for (i = 0; i < len; i++) {
        char ch = s[i];
        int alnum = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
        if (alnum)
            continue;
        if (i == 0 || i == len - 1)
            return 0;
        if (ch != '-' && ch != '_' && !(dots && ch == '.'))
            return 0;
    }
    return 1;
}

static int bad_name(mf_ctx *c, const sdn_mf_node *n, size_t max, int dots)
{
    char q[64];
    sdn_mf_quote(q, sizeof(q), n->s, n->len);
    if (n->len > max)
        return fail(c, n->line, "\"%s\" is not a valid name: longer than %zu bytes", q, max);
    return fail(c, n->line,
                "\"%s\" is not a valid name: use lowercase letters, digits, '-', '_'%s, starting "
                "and ending with a letter or a digit",
                q, dots ? " and '.'" : "");
}

/* ---- scalars ---- */

#define F_REQ 1      /* must be present */
#define F_NONEMPTY 2 /* must not be "" */
#define F_NAME 4     /* a resource name (dots allowed) */
#define F_STEP 8     /* a step or pipeline name (no dots: references split on them) */

static const char *keep(mf_ctx *c, const sdn_mf_node *n)
{
    return sdn_arena_strndup(c->a, n->s, n->len);
}

/* A text value (already inside its field's path). */
static int text_value(mf_ctx *c, const sdn_mf_node *v, int flags, const char **out)
{
    if (v == NULL || sdn_mf_is_null(v)) {
        if (v != NULL && (flags & F_NONEMPTY))
            return fail(c, v->line, "must not be empty");
        return fail(c, v ? v->line : 1, "expected text, got nothing");
    }
    if (!is_text(v))
        return wrong_type(c, v, "text");
    if ((flags & (F_NONEMPTY | F_NAME | F_STEP)) && v->len == 0)
        return fail(c, v->line, "must not be empty");
    if ((flags & F_NAME) && !name_ok(v->s, v->len, SELDON_MANIFEST_NAME_MAX, 1))
        return bad_name(c, v, SELDON_MANIFEST_NAME_MAX, 1);
    if ((flags & F_STEP) && !name_ok(v->s, v->len, SELDON_MANIFEST_NAME_MAX, 0))
        return bad_name(c, v, SELDON_MANIFEST_NAME_MAX, 0);
    if ((*out = keep(c, v)) == NULL)
        return oom(c);
    return 0;
}

/* An optional (or, with F_REQ, required) text field of parent. */
static int text_field(mf_ctx *c, const sdn_mf_node *parent, const sdn_mf_node *v, const char *field,
                      int flags, const char **out)
{
    size_t old;
    int rc;
    if (v == NULL) {
        if (flags & F_REQ)
            return missing(c, parent, field);
        return 0;
    }
    old = enter_field(c, field);
    if ((rc = text_value(c, v, flags, out)) == 0)
        leave(c, old);
    return rc;
}

/* An integer field in [lo, hi]: 1 when present (in *out), 0 when absent. */
static int int_field(mf_ctx *c, const sdn_mf_node *v, const char *field, int64_t lo, int64_t hi,
                     int64_t *out)
{
    size_t old, i;
    const char *s;
    int neg = 0;
    uint64_t x = 0;
    if (v == NULL)
        return 0;
    old = enter_field(c, field);
    if (v->type != SDN_MF_SCALAR || !v->plain || !sdn_mf_is_number(v))
        return wrong_type(c, v, "an integer");
    s = v->s;
    i = 0;
    if (s[0] == '+' || s[0] == '-') {
        neg = s[0] == '-';
        i = 1;
    }
    if (s[i] == '\0')
        return wrong_type(c, v, "an integer");
    for (; s[i]; i++) {
        if (s[i] < '0' || s[i] > '9')
            return fail(c, v->line, "expected an integer, got %.40s", s);
        if (x > (uint64_t)INT64_MAX / 10)
            return fail(c, v->line, "%.40s is out of range (%lld to %lld)", s, (long long)lo,
                        (long long)hi);
        x = x * 10 + (uint64_t)(s[i] - '0');
    }
    if (x > (uint64_t)INT64_MAX)
        return fail(c, v->line, "%.40s is out of range (%lld to %lld)", s, (long long)lo,
                    (long long)hi);
    *out = neg ? -(int64_t)x : (int64_t)x;
    if (*out < lo && lo == 0)
        return fail(c, v->line, "must not be negative, got %lld", (long long)*out);
    if (*out < lo || *out > hi)
        return fail(c, v->line, "%lld is out of range (%lld to %lld)", (long long)*out,
                    (long long)lo, (long long)hi);
    leave(c, old);
    return 1;
}

static int int32_field(mf_ctx *c, const sdn_mf_node *v, const char *field, int64_t lo, int64_t hi,
                       int32_t *out)
{
    int64_t x;
    int rc = int_field(c, v, field, lo, hi, &x);
    if (rc == 1)
        *out = (int32_t)x;
    return rc;
}

static int bool_field(mf_ctx *c, const sdn_mf_node *v, const char *field, int32_t *out)
{
    size_t old;
    int b;
    if (v == NULL)
        return 0;
    old = enter_field(c, field);
    if (!sdn_mf_is_bool(v, &b))
        return wrong_type(c, v, "true or false");
    *out = b;
    leave(c, old);
    return 1;
}

/* A memory quantity: text ("1Gi") or a number of bytes. */
static int quantity_value(mf_ctx *c, const sdn_mf_node *v, int64_t *out)
{
    int rc;
    if (v->type != SDN_MF_SCALAR || sdn_mf_is_null(v))
        return wrong_type(c, v, "a quantity such as 512Mi");
    {
        int b;
        if (sdn_mf_is_bool(v, &b))
            return wrong_type(c, v, "a quantity such as 512Mi");
    }
    rc = seldon_parse_quantity(out, v->s, v->len);
    if (rc != 0) {
        char reason[300];
        snprintf(reason, sizeof(reason), "%s", seldon_last_error());
        return fail(c, v->line, "%s", reason);
    }
    return 0;
}

static int quantity_field(mf_ctx *c, const sdn_mf_node *v, const char *field, int64_t *out)
{
    size_t old;
    int rc;
    if (v == NULL)
        return 0;
    old = enter_field(c, field);
    if ((rc = quantity_value(c, v, out)) != 0)
        return rc;
    leave(c, old);
    return 1;
}

/* A list of text values; each must be non-empty (and a name with F_NAME / F_STEP). */
static int list_field(mf_ctx *c, const sdn_mf_node *v, const char *field, int flags,
                      const char *const **out, size_t *count)
{
    const sdn_mf_node *it;
    const char **arr;
    size_t old, i = 0;
    int rc;
    *out = NULL;
    *count = 0;
    if (v == NULL)
        return 0;
    old = enter_field(c, field);
    if (v->type != SDN_MF_SEQ)
        return wrong_type(c, v, "a list");
    if (v->n == 0) {
        leave(c, old);
        return 0;
    }
    arr = sdn_arena_alloc(c->a, v->n * sizeof(*arr));
    if (arr == NULL)
        return oom(c);
    for (it = v->first; it != NULL; it = it->next, i++) {
        size_t o2 = enter(c, "[%zu]", i);
        if (sdn_mf_is_null(it))
            return fail(c, it->line, "must not be empty");
        if ((rc = text_value(c, it, flags | F_NONEMPTY, &arr[i])) != 0)
            return rc;
        leave(c, o2);
    }
    *out = arr;
    *count = v->n;
    leave(c, old);
    return 0;
}

/* ---- repeated names ---- */

typedef struct named {
    const char *s;
    size_t i;
} named;

static int named_cmp(const void *a, const void *b)
{
    const named *x = a, *y = b;
    int r = strcmp(x->s, y->s);
    if (r != 0)
        return r;
    return x->i < y->i ? -1 : x->i > y->i;
}

/*
 * The first position (in document order) whose name came before, or n when
 * all differ. O(n log n): lists can be long.
 */
static size_t first_repeat(mf_ctx *c, const char *const *names, size_t stride, size_t n, int *err)
{
    named *v;
    size_t i, best = n;
    *err = 0;
    if (n < 2)
        return n;
    v = sdn_arena_alloc(c->tmp, n * sizeof(*v));
    if (v == NULL) {
        *err = oom(c);
        return n;
    }
    for (i = 0; i < n; i++) {
        v[i].s = *(const char *const *)(const void *)((const char *)names + i * stride);
        v[i].i = i;
    }
    qsort(v, n, sizeof(*v), named_cmp);
    for (i = 1; i < n; i++)
        if (strcmp(v[i].s, v[i - 1].s) == 0 && v[i].i < best)
            best = v[i].i;
    return best;
}

/* tensorMap: text keys to text values, in document order. */
static int kv_map_field(mf_ctx *c, const sdn_mf_node *v, const char *field, const seldon_kv **out,
                        size_t *count)
{
    const sdn_mf_node *k;
    seldon_kv *arr;
    const char **keys;
    size_t old, i = 0, j, rep;
    int rc, err;
    *out = NULL;
    *count = 0;
    if (v == NULL)
        return 0;
    old = enter_field(c, field);
    if (v->type != SDN_MF_MAP)
        return wrong_type(c, v, "a mapping");
    if (v->n == 0) {
        leave(c, old);
        return 0;
    }
    arr = sdn_arena_alloc(c->a, v->n * sizeof(*arr));
    keys = sdn_arena_alloc(c->tmp, v->n * sizeof(*keys));
    if (arr == NULL || keys == NULL)
        return oom(c);
    for (k = v->first; k != NULL && k->next != NULL; k = k->next->next, i++) {
        char q[64];
        size_t o2;
        sdn_mf_quote(q, sizeof(q), k->s, k->len);
        o2 = enter(c, "[\"%s\"]", q);
        if (k->len == 0 || sdn_mf_is_null(k))
            return fail(c, k->line, "a key must not be empty");
        if (k->len > SDN_MF_MAPKEY_MAX)
            return fail(c, k->line, "a key is longer than %d bytes", SDN_MF_MAPKEY_MAX);
        for (j = 0; j < k->len; j++)
            if ((unsigned char)k->s[j] < 0x20 || k->s[j] == 0x7f)
                return fail(c, k->line, "a key must not hold control characters");
        if ((rc = text_value(c, k->next, F_NONEMPTY, &arr[i].value)) != 0)
            return rc;
        if ((arr[i].name = keep(c, k)) == NULL)
            return oom(c);
        keys[i] = k->s;
        leave(c, o2);
    }
    rep = first_repeat(c, keys, sizeof(*keys), i, &err);
    if (err)
        return err;
    if (rep < i) {
        char q[64];
        for (k = v->first, j = 0; j < rep; j++)
            k = k->next->next;
        sdn_mf_quote(q, sizeof(q), keys[rep], strlen(keys[rep]));
        enter(c, "[\"%s\"]", q);
        return fail(c, k->line, "the key is given twice");
    }
    *out = arr;
    *count = v->n;
    leave(c, old);
    return 0;
}

/* ---- shared pieces ---- */

static const char *const JOIN_TYPES[] = {"inner", "outer", "any"};

static int join_field(mf_ctx *c, const sdn_mf_node *v, const char *field, const char **out)
{
    size_t old, i;
    char q[64];
    *out = JOIN_TYPES[0];
    if (v == NULL)
        return 0;
    old = enter_field(c, field);
    if (!is_text(v))
        return wrong_type(c, v, "inner, outer or any");
    for (i = 0; i < 3; i++) {
        if (strcmp(v->s, JOIN_TYPES[i]) == 0) {
            *out = JOIN_TYPES[i];
            leave(c, old);
            return 0;
        }
    }
    sdn_mf_quote(q, sizeof(q), v->s, v->len);
    return fail(c, v->line, "\"%s\" is not a join type: use inner, outer or any", q);
}

/* replicas, minReplicas, maxReplicas, with upstream's rules. */
static int scaling(mf_ctx *c, const sdn_mf_node *rep, const sdn_mf_node *min,
                   const sdn_mf_node *max, int32_t *replicas, int32_t *min_replicas,
                   int32_t *max_replicas)
{
    int has_rep, rc;
    *replicas = 1;
    *min_replicas = 0;
    *max_replicas = 0;
    if ((rc = int32_field(c, rep, "replicas", 0, INT32_MAX, replicas)) < 0)
        return rc;
    has_rep = rc;
    if ((rc = int32_field(c, min, "minReplicas", 0, INT32_MAX, min_replicas)) < 0)
        return rc;
    if (rc == 1 && !has_rep && *min_replicas > 0)
        *replicas = *min_replicas; /* replicas not given: start at the minimum */
    if ((rc = int32_field(c, max, "maxReplicas", 0, INT32_MAX, max_replicas)) < 0)
        return rc;
    if (*replicas < *min_replicas) {
        enter_field(c, "replicas");
        return fail(c, rep ? rep->line : min->line, "%d is below minReplicas (%d)", *replicas,
                    *min_replicas);
    }
    if (*max_replicas > 0 && *min_replicas > *max_replicas) {
        enter_field(c, "minReplicas");
        return fail(c, min->line, "%d is above maxReplicas (%d)", *min_replicas, *max_replicas);
    }
    if (*max_replicas > 0 && *replicas > *max_replicas) {
        enter_field(c, "replicas");
        return fail(c, rep ? rep->line : max->line, "%d is above maxReplicas (%d)", *replicas,
                    *max_replicas);
    }
    return 0;
}

/* ---- Model ---- */

enum {
    M_STORAGE_URI,
    M_ARTIFACT_VERSION,
    M_MODEL_TYPE,
    M_SCHEMA_URI,
    M_SECRET_NAME,
    M_REQUIREMENTS,
    M_MEMORY,
    M_REPLICAS,
    M_MIN_REPLICAS,
    M_MAX_REPLICAS,
    M_SERVER,
    M_PRELOADED,
    M_DEDICATED,
    M_LOGGER,
    M_EXPLAINER,
    M_LLM,
    M_PARAMETERS,
    M_DATAFLOW,
    M_COUNT
};
static const char *const MODEL_FIELDS[M_COUNT] = {
    "storageUri", "artifactVersion", "modelType",   "schemaUri",   "secretName", "requirements",
    "memory",     "replicas",        "minReplicas", "maxReplicas", "server",     "preloaded",
    "dedicated",  "logger",          "explainer",   "llm",         "parameters", "dataflow"};

static int refs(mf_ctx *c, const sdn_mf_node *map, const char *field, int with_type,
                const char **type, const char **model_ref, const char **pipeline_ref)
{
    static const char *const names[] = {"modelRef", "pipelineRef", "type"};
    const sdn_mf_node *f[3];
    size_t old = enter_field(c, field);
    int rc;
    if ((rc = fields_of(c, map, names, with_type ? 3 : 2, f)) != 0)
        return rc;
    if ((rc = text_field(c, map, f[0], "modelRef", F_NAME, model_ref)) != 0 ||
        (rc = text_field(c, map, f[1], "pipelineRef", F_STEP, pipeline_ref)) != 0)
        return rc;
    if (with_type && (rc = text_field(c, map, f[2], "type", F_NONEMPTY, type)) != 0)
        return rc;
    if (f[0] != NULL && f[1] != NULL)
        return fail(c, f[1]->line, "give modelRef or pipelineRef, not both");
    if (!with_type && f[0] == NULL && f[1] == NULL)
        return fail(c, map->line, "needs modelRef or pipelineRef");
    leave(c, old);
    return 0;
}

static int model_spec(mf_ctx *c, const sdn_mf_node *spec, seldon_model_spec *m)
{
    const sdn_mf_node *f[M_COUNT];
    const sdn_mf_node *it;
    int64_t x;
    size_t old, i;
    int rc;

    m->artifact_version = -1;
    m->memory_bytes = -1;
    m->logger_percent = -1;
    if ((rc = fields_of(c, spec, MODEL_FIELDS, M_COUNT, f)) != 0)
        return rc;
    if ((rc = text_field(c, spec, f[M_STORAGE_URI], "storageUri", F_REQ | F_NONEMPTY,
                         &m->storage_uri)) != 0)
        return rc;
    if ((rc = int_field(c, f[M_ARTIFACT_VERSION], "artifactVersion", 0, UINT32_MAX, &x)) < 0)
        return rc;
    if (rc == 1)
        m->artifact_version = x;
    if ((rc = text_field(c, spec, f[M_MODEL_TYPE], "modelType", F_NONEMPTY, &m->model_type)) != 0 ||
        (rc = text_field(c, spec, f[M_SCHEMA_URI], "schemaUri", F_NONEMPTY, &m->schema_uri)) != 0 ||
        (rc = text_field(c, spec, f[M_SECRET_NAME], "secretName", F_NONEMPTY, &m->secret_name)) !=
            0)
        return rc;
    if ((rc = list_field(c, f[M_REQUIREMENTS], "requirements", 0, &m->requirements,
                         &m->requirements_count)) != 0)
        return rc;
    if ((rc = quantity_field(c, f[M_MEMORY], "memory", &m->memory_bytes)) < 0)
        return rc;
    if ((rc = scaling(c, f[M_REPLICAS], f[M_MIN_REPLICAS], f[M_MAX_REPLICAS], &m->replicas,
                      &m->min_replicas, &m->max_replicas)) != 0)
        return rc;
    if ((rc = text_field(c, spec, f[M_SERVER], "server", F_NAME, &m->server)) != 0)
        return rc;
    if ((rc = bool_field(c, f[M_PRELOADED], "preloaded", &m->preloaded)) < 0 ||
        (rc = bool_field(c, f[M_DEDICATED], "dedicated", &m->dedicated)) < 0)
        return rc;
    if (f[M_LOGGER] != NULL) {
        static const char *const names[] = {"percent"};
        const sdn_mf_node *lf[1];
        old = enter_field(c, "logger");
        if ((rc = fields_of(c, f[M_LOGGER], names, 1, lf)) != 0 ||
            (rc = int32_field(c, lf[0], "percent", 0, 100, &m->logger_percent)) < 0)
            return rc;
        leave(c, old);
    }
    if (f[M_EXPLAINER] != NULL && f[M_LLM] != NULL) {
        enter_field(c, "llm");
        return fail(c, f[M_LLM]->line, "a model has an explainer or an llm, not both");
    }
    if (f[M_EXPLAINER] != NULL &&
        (rc = refs(c, f[M_EXPLAINER], "explainer", 1, &m->explainer_type, &m->explainer_model_ref,
                   &m->explainer_pipeline_ref)) != 0)
        return rc;
    if (f[M_LLM] != NULL &&
        (rc = refs(c, f[M_LLM], "llm", 0, NULL, &m->llm_model_ref, &m->llm_pipeline_ref)) != 0)
        return rc;
    if ((it = f[M_PARAMETERS]) != NULL) {
        static const char *const names[] = {"name", "value"};
        seldon_kv *arr;
        old = enter_field(c, "parameters");
        if (it->type != SDN_MF_SEQ)
            return wrong_type(c, it, "a list of {name, value}");
        arr = sdn_arena_calloc(c->a, (it->n ? it->n : 1) * sizeof(*arr));
        if (arr == NULL)
            return oom(c);
        i = 0;
        for (it = it->first; it != NULL; it = it->next, i++) {
            const sdn_mf_node *pf[2];
            size_t o2 = enter(c, "[%zu]", i);
            if (sdn_mf_is_null(it))
                return fail(c, it->line, "must not be empty");
            if ((rc = fields_of(c, it, names, 2, pf)) != 0 ||
                (rc = text_field(c, it, pf[0], "name", F_REQ | F_NONEMPTY, &arr[i].name)) != 0)
                return rc;
            if (pf[1] == NULL) {
                arr[i].value = ""; /* a null or absent value is the empty text */
                if ((arr[i].value = sdn_arena_strndup(c->a, "", 0)) == NULL)
                    return oom(c);
            } else if ((rc = text_field(c, it, pf[1], "value", 0, &arr[i].value)) != 0) {
                return rc;
            }
            leave(c, o2);
        }
        m->parameters = i ? arr : NULL;
        m->parameters_count = i;
        leave(c, old);
    }
    if (f[M_DATAFLOW] != NULL) {
        static const char *const names[] = {"cleanTopicsOnDelete"};
        const sdn_mf_node *df[1];
        old = enter_field(c, "dataflow");
        if ((rc = fields_of(c, f[M_DATAFLOW], names, 1, df)) != 0 ||
            (rc = bool_field(c, df[0], "cleanTopicsOnDelete", &m->clean_topics_on_delete)) < 0)
            return rc;
        leave(c, old);
    }
    return 0;
}

/* ---- Server ---- */

enum {
    S_SERVER_CONFIG,
    S_CAPABILITIES,
    S_EXTRA_CAPABILITIES,
    S_REPLICAS,
    S_MIN_REPLICAS,
    S_MAX_REPLICAS,
    S_MEMORY,
    S_POD_SPEC,
    S_IMAGE_OVERRIDES,
    S_COUNT
};
static const char *const SERVER_FIELDS[S_COUNT] = {
    "serverConfig", "capabilities", "extraCapabilities", "replicas",      "minReplicas",
    "maxReplicas",  "memory",       "podSpec",           "imageOverrides"};

/* The value of key in a mapping, or NULL (no error: podSpec is Kubernetes' business). */
static const sdn_mf_node *lookup(const sdn_mf_node *map, const char *key)
{
    const sdn_mf_node *k;
    if (map == NULL || map->type != SDN_MF_MAP)
        return NULL;
    for (k = map->first; k != NULL && k->next != NULL; k = k->next->next)
        if (strcmp(k->s, key) == 0 && strlen(key) == k->len)
            return sdn_mf_is_null(k->next) ? NULL : k->next;
    return NULL;
}

/* podSpec is accepted as it is; its first container's memory limit (else request) sizes the server.
 */
static int pod_memory(mf_ctx *c, const sdn_mf_node *pod, int64_t *out)
{
    const sdn_mf_node *containers, *first, *res, *mem;
    const char *which = "limits";
    size_t old;
    int rc;
    if (pod->type != SDN_MF_MAP) {
        enter_field(c, "podSpec");
        return wrong_type(c, pod, "a mapping");
    }
    containers = lookup(pod, "containers");
    if (containers == NULL || containers->type != SDN_MF_SEQ || containers->first == NULL)
        return 0;
    first = containers->first;
    res = lookup(first, "resources");
    mem = lookup(lookup(res, "limits"), "memory");
    if (mem == NULL) {
        mem = lookup(lookup(res, "requests"), "memory");
        which = "requests";
    }
    if (mem == NULL)
        return 0;
    old = enter(c, "%spodSpec.containers[0].resources.%s.memory", c->plen ? "." : "", which);
    if ((rc = quantity_value(c, mem, out)) != 0)
        return rc;
    leave(c, old);
    return 0;
}

static int server_spec(mf_ctx *c, const sdn_mf_node *spec, seldon_server_spec *s)
{
    const sdn_mf_node *f[S_COUNT];
    int rc;
    s->memory_bytes = -1;
    if ((rc = fields_of(c, spec, SERVER_FIELDS, S_COUNT, f)) != 0)
        return rc;
    if ((rc = text_field(c, spec, f[S_SERVER_CONFIG], "serverConfig", F_REQ | F_NONEMPTY,
                         &s->server_config)) != 0)
        return rc;
    if ((rc = list_field(c, f[S_CAPABILITIES], "capabilities", 0, &s->capabilities,
                         &s->capabilities_count)) != 0 ||
        (rc = list_field(c, f[S_EXTRA_CAPABILITIES], "extraCapabilities", 0, &s->extra_capabilities,
                         &s->extra_capabilities_count)) != 0)
        return rc;
    if ((rc = scaling(c, f[S_REPLICAS], f[S_MIN_REPLICAS], f[S_MAX_REPLICAS], &s->replicas,
                      &s->min_replicas, &s->max_replicas)) != 0)
        return rc;
    if (f[S_POD_SPEC] != NULL && (rc = pod_memory(c, f[S_POD_SPEC], &s->memory_bytes)) != 0)
        return rc;
    /* An explicit spec.memory wins over the pod's. */
    if ((rc = quantity_field(c, f[S_MEMORY], "memory", &s->memory_bytes)) < 0)
        return rc;
    return 0;
}

/* ---- Experiment ---- */

static int experiment_spec(mf_ctx *c, const sdn_mf_node *spec, seldon_experiment_spec *e)
{
    static const char *const names[] = {"default", "candidates", "mirror", "resourceType"};
    static const char *const cand_names[] = {"name", "weight"};
    static const char *const mirror_names[] = {"name", "percent"};
    const sdn_mf_node *f[4], *it;
    seldon_experiment_candidate *arr = NULL;
    size_t old, i = 0, rep;
    int64_t total = 0;
    int rc, err;

    e->resource_type = "model";
    if ((rc = fields_of(c, spec, names, 4, f)) != 0)
        return rc;
    if ((rc = text_field(c, spec, f[0], "default", F_NAME, &e->default_name)) != 0)
        return rc;
    if ((it = f[1]) != NULL) {
        old = enter_field(c, "candidates");
        if (it->type != SDN_MF_SEQ)
            return wrong_type(c, it, "a list of {name, weight}");
        if (it->n > 0 && (arr = sdn_arena_calloc(c->a, it->n * sizeof(*arr))) == NULL)
            return oom(c);
        for (it = it->first; it != NULL; it = it->next, i++) {
            const sdn_mf_node *cf[2];
            size_t o2 = enter(c, "[%zu]", i);
            if (sdn_mf_is_null(it))
                return fail(c, it->line, "must not be empty");
            if ((rc = fields_of(c, it, cand_names, 2, cf)) != 0 ||
                (rc = text_field(c, it, cf[0], "name", F_REQ | F_NAME, &arr[i].name)) != 0)
                return rc;
            if (cf[1] == NULL)
                return missing(c, it, "weight");
            if ((rc = int32_field(c, cf[1], "weight", 0, INT32_MAX, &arr[i].weight)) < 0)
                return rc;
            total += arr[i].weight;
            leave(c, o2);
        }
        leave(c, old);
        e->candidates = arr;
        e->candidates_count = i;
        rep = i >= 2 ? first_repeat(c, &arr[0].name, sizeof(*arr), i, &err) : i;
        if (i >= 2 && err)
            return err;
        if (rep < i) {
            const sdn_mf_node *at = f[1]->first;
            char q[64];
            size_t k;
            for (k = 0; k < rep && at != NULL; k++)
                at = at->next;
            sdn_mf_quote(q, sizeof(q), arr[rep].name, strlen(arr[rep].name));
            enter(c, "%scandidates[%zu].name", c->plen ? "." : "", rep);
            return fail(c, at ? at->line : f[1]->line, "\"%s\" is already a candidate", q);
        }
    }
    if (f[2] != NULL) {
        const sdn_mf_node *mf[2];
        old = enter_field(c, "mirror");
        if ((rc = fields_of(c, f[2], mirror_names, 2, mf)) != 0 ||
            (rc = text_field(c, f[2], mf[0], "name", F_REQ | F_NAME, &e->mirror_name)) != 0)
            return rc;
        if (mf[1] == NULL)
            return missing(c, f[2], "percent");
        if ((rc = int32_field(c, mf[1], "percent", 0, 100, &e->mirror_percent)) < 0)
            return rc;
        leave(c, old);
    }
    if (f[3] != NULL) {
        const char *rt = NULL;
        old = enter_field(c, "resourceType");
        if ((rc = text_value(c, f[3], F_NONEMPTY, &rt)) != 0)
            return rc;
        if (strcmp(rt, "model") == 0)
            e->resource_type = "model";
        else if (strcmp(rt, "pipeline") == 0)
            e->resource_type = "pipeline";
        else {
            char q[64];
            sdn_mf_quote(q, sizeof(q), rt, strlen(rt));
            return fail(c, f[3]->line, "\"%s\" is not a resource type: use model or pipeline", q);
        }
        leave(c, old);
    }
    if (e->candidates_count == 0 && e->mirror_name == NULL)
        return fail(c, spec->line, "an experiment needs at least one candidate or a mirror");
    if (e->candidates_count > 0 && total == 0) {
        enter_field(c, "candidates");
        return fail(c, f[1]->line, "the weights add up to 0: give at least one a positive weight");
    }
    if (e->default_name != NULL) {
        for (i = 0; i < e->candidates_count; i++)
            if (strcmp(e->candidates[i].name, e->default_name) == 0)
                break;
        if (i == e->candidates_count) {
            char q[64];
            sdn_mf_quote(q, sizeof(q), e->default_name, strlen(e->default_name));
            enter_field(c, "default");
            return fail(c, f[0]->line, "\"%s\" is not one of the candidates", q);
        }
    }
    return 0;
}

/* ---- Pipeline ---- */

/* Sorted step names, to check what references point at. */
typedef struct steps_index {
    const char **names;
    size_t n;
} steps_index;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* 1 when the first dot-separated part of ref names a step. */
static int is_step(const steps_index *ix, const char *ref, size_t len)
{
    size_t lo = 0, hi = ix->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *s = ix->names[mid];
        int r = strncmp(s, ref, len);
        if (r == 0 && s[len] != '\0')
            r = 1;
        if (r == 0)
            return 1;
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

static size_t head_len(const char *ref)
{
    const char *dot = strchr(ref, '.');
    return dot ? (size_t)(dot - ref) : strlen(ref);
}

/* Each reference of a list starts with a step's name (or, when self is given, the pipeline's). */
static int check_refs(mf_ctx *c, const steps_index *ix, const char *self, const sdn_mf_node *list,
                      const char *field, const char *const *refs, size_t count)
{
    const sdn_mf_node *it = list ? list->first : NULL;
    size_t i;
    for (i = 0; i < count; i++, it = it ? it->next : NULL) {
        size_t h = head_len(refs[i]);
        char q[64];
        if (is_step(ix, refs[i], h))
            continue;
        if (self != NULL && strlen(self) == h && strncmp(self, refs[i], h) == 0)
            continue;
        sdn_mf_quote(q, sizeof(q), refs[i], h);
        enter(c, "%s%s[%zu]", c->plen ? "." : "", field, i);
        if (self != NULL)
            return fail(c, it ? it->line : 1,
                        "\"%s\" is neither a step of this pipeline nor the pipeline itself", q);
        return fail(c, it ? it->line : 1, "\"%s\" is not a step of this pipeline", q);
    }
    return 0;
}

enum {
    P_NAME,
    P_INPUTS,
    P_JOIN_WINDOW,
    P_TENSOR_MAP,
    P_TRIGGERS,
    P_INPUTS_JOIN,
    P_TRIGGERS_JOIN,
    P_BATCH,
    P_COUNT
};
static const char *const STEP_FIELDS[P_COUNT] = {
    "name",     "inputs",         "joinWindowMs",     "tensorMap",
    "triggers", "inputsJoinType", "triggersJoinType", "batch"};

static int window_field(mf_ctx *c, const sdn_mf_node *v, const char *field, int64_t *out)
{
    int rc;
    *out = -1;
    rc = int_field(c, v, field, 0, UINT32_MAX, out);
    return rc < 0 ? rc : 0;
}

static int pipeline_step(mf_ctx *c, const sdn_mf_node *node, seldon_pipeline_step *st,
                         const sdn_mf_node **lists)
{
    const sdn_mf_node *f[P_COUNT];
    int rc;
    if ((rc = fields_of(c, node, STEP_FIELDS, P_COUNT, f)) != 0)
        return rc;
    if ((rc = text_field(c, node, f[P_NAME], "name", F_REQ | F_STEP, &st->name)) != 0)
        return rc;
    if ((rc = list_field(c, f[P_INPUTS], "inputs", 0, &st->inputs, &st->inputs_count)) != 0 ||
        (rc = list_field(c, f[P_TRIGGERS], "triggers", 0, &st->triggers, &st->triggers_count)) != 0)
        return rc;
    if ((rc = window_field(c, f[P_JOIN_WINDOW], "joinWindowMs", &st->join_window_ms)) != 0 ||
        (rc = kv_map_field(c, f[P_TENSOR_MAP], "tensorMap", &st->tensor_map,
                           &st->tensor_map_count)) != 0 ||
        (rc = join_field(c, f[P_INPUTS_JOIN], "inputsJoinType", &st->inputs_join_type)) != 0 ||
        (rc = join_field(c, f[P_TRIGGERS_JOIN], "triggersJoinType", &st->triggers_join_type)) != 0)
        return rc;
    if (f[P_BATCH] != NULL) {
        static const char *const names[] = {"size", "windowMs", "rolling"};
        const sdn_mf_node *bf[3];
        size_t old = enter_field(c, "batch");
        if ((rc = fields_of(c, f[P_BATCH], names, 3, bf)) != 0 ||
            (rc = int32_field(c, bf[0], "size", 0, INT32_MAX, &st->batch.size)) < 0 ||
            (rc = int_field(c, bf[1], "windowMs", 0, UINT32_MAX, &st->batch.window_ms)) < 0 ||
            (rc = bool_field(c, bf[2], "rolling", &st->batch.rolling)) < 0)
            return rc;
        leave(c, old);
    }
    lists[0] = f[P_INPUTS];
    lists[1] = f[P_TRIGGERS];
    return 0;
}

static int pipeline_spec(mf_ctx *c, const sdn_mf_node *spec, const char *self,
                         seldon_pipeline_spec *p)
{
    static const char *const names[] = {"steps",           "input",    "output",   "allowCycles",
                                        "maxStepRevisits", "dataflow", "timeoutMs"};
    static const char *const in_names[] = {"externalInputs", "externalTriggers", "joinWindowMs",
                                           "joinType",       "triggersJoinType", "tensorMap"};
    static const char *const out_names[] = {"steps", "joinWindowMs", "stepsJoin", "tensorMap"};
    const sdn_mf_node *f[7], *it, *in[6], *out[4], **lists = NULL;
    seldon_pipeline_step *steps;
    steps_index ix = {NULL, 0};
    size_t old, i, rep;
    int rc, err;

    p->input_join_type = p->input_triggers_join_type = p->output_steps_join = JOIN_TYPES[0];
    p->input_join_window_ms = p->output_join_window_ms = -1;
    if ((rc = fields_of(c, spec, names, 7, f)) != 0)
        return rc;
    if ((it = f[0]) == NULL)
        return missing(c, spec, "steps");
    old = enter_field(c, "steps");
    if (it->type != SDN_MF_SEQ)
        return wrong_type(c, it, "a list of steps");
    if (it->n == 0)
        return fail(c, it->line, "a pipeline needs at least one step");
    steps = sdn_arena_calloc(c->a, it->n * sizeof(*steps));
    lists = sdn_arena_calloc(c->tmp, it->n * 2 * sizeof(*lists));
    ix.names = sdn_arena_alloc(c->tmp, it->n * sizeof(*ix.names));
    if (steps == NULL || lists == NULL || ix.names == NULL)
        return oom(c);
    i = 0;
    for (it = it->first; it != NULL; it = it->next, i++) {
        size_t o2 = enter(c, "[%zu]", i);
        if (sdn_mf_is_null(it))
            return fail(c, it->line, "must not be empty");
        if ((rc = pipeline_step(c, it, &steps[i], &lists[2 * i])) != 0)
            return rc;
        if (strcmp(steps[i].name, self) == 0) {
            enter_field(c, "name");
            return fail(c, it->line, "a step cannot have the pipeline's own name");
        }
        ix.names[i] = steps[i].name;
        leave(c, o2);
    }
    p->steps = steps;
    p->steps_count = i;
    rep = first_repeat(c, &steps[0].name, sizeof(*steps), i, &err);
    if (err)
        return err;
    if (rep < i) {
        const sdn_mf_node *at = f[0]->first;
        char q[64];
        size_t k;
        for (k = 0; k < rep && at != NULL; k++)
            at = at->next;
        sdn_mf_quote(q, sizeof(q), steps[rep].name, strlen(steps[rep].name));
        enter(c, "[%zu].name", rep);
        return fail(c, at ? at->line : f[0]->line, "\"%s\" is already a step", q);
    }
    ix.n = i;
    qsort(ix.names, ix.n, sizeof(*ix.names), cmp_str);
    for (i = 0; i < p->steps_count; i++) {
        size_t o2 = enter(c, "[%zu]", i);
        if ((rc = check_refs(c, &ix, self, lists[2 * i], "inputs", steps[i].inputs,
                             steps[i].inputs_count)) != 0 ||
            (rc = check_refs(c, &ix, self, lists[2 * i + 1], "triggers", steps[i].triggers,
                             steps[i].triggers_count)) != 0)
            return rc;
        leave(c, o2);
    }
    leave(c, old);

    if (f[1] != NULL) {
        old = enter_field(c, "input");
        if ((rc = fields_of(c, f[1], in_names, 6, in)) != 0 ||
            (rc = list_field(c, in[0], "externalInputs", 0, &p->external_inputs,
                             &p->external_inputs_count)) != 0 ||
            (rc = list_field(c, in[1], "externalTriggers", 0, &p->external_triggers,
                             &p->external_triggers_count)) != 0 ||
            (rc = window_field(c, in[2], "joinWindowMs", &p->input_join_window_ms)) != 0 ||
            (rc = join_field(c, in[3], "joinType", &p->input_join_type)) != 0 ||
            (rc = join_field(c, in[4], "triggersJoinType", &p->input_triggers_join_type)) != 0 ||
            (rc = kv_map_field(c, in[5], "tensorMap", &p->input_tensor_map,
                               &p->input_tensor_map_count)) != 0)
            return rc;
        leave(c, old);
    }
    if (f[2] != NULL) {
        old = enter_field(c, "output");
        if ((rc = fields_of(c, f[2], out_names, 4, out)) != 0 ||
            (rc = list_field(c, out[0], "steps", 0, &p->output_steps, &p->output_steps_count)) !=
                0 ||
            (rc = check_refs(c, &ix, NULL, out[0], "steps", p->output_steps,
                             p->output_steps_count)) != 0 ||
            (rc = window_field(c, out[1], "joinWindowMs", &p->output_join_window_ms)) != 0 ||
            (rc = join_field(c, out[2], "stepsJoin", &p->output_steps_join)) != 0 ||
            (rc = kv_map_field(c, out[3], "tensorMap", &p->output_tensor_map,
                               &p->output_tensor_map_count)) != 0)
            return rc;
        leave(c, old);
    }
    if ((rc = bool_field(c, f[3], "allowCycles", &p->allow_cycles)) < 0 ||
        (rc = int32_field(c, f[4], "maxStepRevisits", 0, INT32_MAX, &p->max_step_revisits)) < 0)
        return rc;
    /* Our extension: 0 would read as "no timeout" to some and "absent" to others; refused. */
    if ((rc = int_field(c, f[6], "timeoutMs", 1, UINT32_MAX, &p->timeout_ms)) < 0)
        return rc;
    if (f[5] != NULL) {
        static const char *const df_names[] = {"cleanTopicsOnDelete"};
        const sdn_mf_node *df[1];
        old = enter_field(c, "dataflow");
        if ((rc = fields_of(c, f[5], df_names, 1, df)) != 0 ||
            (rc = bool_field(c, df[0], "cleanTopicsOnDelete", &p->clean_topics_on_delete)) < 0)
            return rc;
        leave(c, old);
    }
    return 0;
}

/* ---- documents ---- */

static const char *const TOP_FIELDS[] = {"apiVersion", "kind", "metadata", "spec", "status"};
static const char *const META_FIELDS[] = {"name",
                                          "namespace",
                                          "labels",
                                          "annotations",
                                          "uid",
                                          "resourceVersion",
                                          "generation",
                                          "creationTimestamp",
                                          "deletionTimestamp",
                                          "deletionGracePeriodSeconds",
                                          "finalizers",
                                          "ownerReferences",
                                          "managedFields",
                                          "selfLink",
                                          "generateName"};
#define META_COUNT (sizeof(META_FIELDS) / sizeof(META_FIELDS[0]))

static int kind_of(const char *s, seldon_kind *out)
{
    int k;
    for (k = SELDON_KIND_MODEL; k <= SELDON_KIND_EXPERIMENT; k++) {
        if (strcmp(s, seldon_kind_name((seldon_kind)k)) == 0) {
            *out = (seldon_kind)k;
            return 1;
        }
    }
    return 0;
}

/* kind and metadata.name as far as they can be read, so that every error can name them. */
static void who_is_it(mf_ctx *c, const sdn_mf_node *root)
{
    const sdn_mf_node *kind = lookup(root, "kind"),
                      *name = lookup(lookup(root, "metadata"), "name");
    seldon_kind k;
    if (kind != NULL && kind->type == SDN_MF_SCALAR && kind_of(kind->s, &k))
        c->kind = seldon_kind_name(k);
    if (name != NULL && name->type == SDN_MF_SCALAR)
        sdn_mf_quote(c->name, sizeof(c->name), name->s, name->len);
}

static int document(mf_ctx *c, const sdn_mf_node *root, seldon_resource *r)
{
    const sdn_mf_node *f[5], *meta[META_COUNT];
    const char *api = NULL, *kind = NULL;
    size_t old;
    int rc;

    who_is_it(c, root);
    if (root->type != SDN_MF_MAP)
        return fail(c, root->line,
                    "expected a resource (a mapping with apiVersion, kind, "
                    "metadata and spec), got %s",
                    what(root));
    if ((rc = fields_of(c, root, TOP_FIELDS, 5, f)) != 0)
        return rc;
    if ((rc = text_field(c, root, f[0], "apiVersion", F_REQ, &api)) != 0)
        return rc;
    if (strcmp(api, SELDON_MANIFEST_API_VERSION) != 0) {
        char q[64];
        sdn_mf_quote(q, sizeof(q), api, strlen(api));
        enter_field(c, "apiVersion");
        return fail(c, f[0]->line, "\"%s\" is not supported: use %s", q,
                    SELDON_MANIFEST_API_VERSION);
    }
    if ((rc = text_field(c, root, f[1], "kind", F_REQ, &kind)) != 0)
        return rc;
    if (!kind_of(kind, &r->kind)) {
        char q[64];
        sdn_mf_quote(q, sizeof(q), kind, strlen(kind));
        enter_field(c, "kind");
        return fail(c, f[1]->line,
                    "\"%s\" is not a kind we know: use Model, Server, Pipeline or "
                    "Experiment",
                    q);
    }
    if (f[2] == NULL)
        return missing(c, root, "metadata");
    old = enter_field(c, "metadata");
    if ((rc = fields_of(c, f[2], META_FIELDS, META_COUNT, meta)) != 0)
        return rc;
    if ((rc = text_field(c, f[2], meta[0], "name", F_REQ | F_NAME, &r->name)) != 0)
        return rc;
    if (meta[1] != NULL) {
        size_t o2 = enter_field(c, "namespace");
        if ((rc = text_value(c, meta[1], F_NONEMPTY, &r->namespace_)) != 0)
            return rc;
        if (!name_ok(meta[1]->s, meta[1]->len, 63, 0) || strchr(meta[1]->s, '_') != NULL)
            return fail(c, meta[1]->line,
                        "\"%.63s\" is not a valid namespace: up to 63 lowercase letters, digits "
                        "and '-', starting and ending with a letter or a digit",
                        meta[1]->s);
        leave(c, o2);
    }
    leave(c, old);
    if (f[3] == NULL)
        return missing(c, root, "spec");
    old = enter_field(c, "spec");
    switch (r->kind) {
    case SELDON_KIND_MODEL:
        rc = model_spec(c, f[3], &r->spec.model);
        break;
    case SELDON_KIND_SERVER:
        rc = server_spec(c, f[3], &r->spec.server);
        break;
    case SELDON_KIND_PIPELINE:
        if (strchr(r->name, '.') != NULL) {
            leave(c, old);
            enter(c, "metadata.name");
            return fail(c, meta[0]->line,
                        "\"%s\": a pipeline's name cannot hold '.' (references split on it)",
                        c->name);
        }
        rc = pipeline_spec(c, f[3], r->name, &r->spec.pipeline);
        break;
    case SELDON_KIND_EXPERIMENT:
        rc = experiment_spec(c, f[3], &r->spec.experiment);
        break;
    default:
        rc = SELDON_EINTERNAL;
        break;
    }
    if (rc != 0)
        return rc;
    leave(c, old);
    return 0;
}

/* ---- the public face ---- */

void seldon_manifest_free(seldon_manifest *m)
{
    if (m == NULL)
        return;
    sdn_free(m->res);
    sdn_arena_release(&m->arena);
    sdn_free(m);
}

size_t seldon_manifest_count(const seldon_manifest *m)
{
    return m ? m->count : 0;
}

const seldon_resource *seldon_manifest_at(const seldon_manifest *m, size_t i)
{
    if (m == NULL || i >= m->count)
        return NULL;
    return &m->res[i];
}

/* One more resource from a document's tree. */
static int add_document(seldon_manifest *m, sdn_arena *tmp, const sdn_mf_node *root, size_t doc,
                        const char *source)
{
    seldon_resource *r;
    mf_ctx c;
    int rc;
    if (m->count == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 4;
        seldon_resource *grown = sdn_realloc(m->res, cap * sizeof(*grown));
        if (grown == NULL)
            return sdn_error(SELDON_ENOMEM, "%.200s: out of memory", source);
        m->res = grown;
        m->cap = cap;
    }
    r = &m->res[m->count];
    memset(r, 0, sizeof(*r));
    memset(&c, 0, sizeof(c));
    c.src = source;
    c.doc = doc;
    c.a = &m->arena;
    c.tmp = tmp;
    r->document = doc;
    rc = document(&c, root, r);
    if (rc == 0)
        m->count++;
    return rc;
}

int sdn_manifest_parse_ex(seldon_manifest **out, const char *data, size_t len, const char *source,
                          int flags)
{
    seldon_manifest *m = NULL;
    sdn_mf_node *root = NULL;
    sdn_mf_reader rd;
    sdn_arena tmp;
    int rc, reader = 0;

    if (out == NULL || (data == NULL && len > 0))
        return sdn_error(SELDON_EINVAL, "manifest_parse: NULL argument");
    *out = NULL;
    if (source == NULL)
        source = "manifest";
    if (data == NULL)
        data = "";
    if (len > SELDON_MANIFEST_FILE_MAX)
        return sdn_error(SELDON_ETOOBIG, "%.200s: %zu bytes, more than the %d a manifest may hold",
                         source, len, SELDON_MANIFEST_FILE_MAX);
    sdn_arena_init(&tmp, NULL, 0);
    m = sdn_calloc(1, sizeof(*m));
    if (m == NULL) {
        rc = sdn_error(SELDON_ENOMEM, "%.200s: out of memory", source);
        goto out;
    }
    sdn_arena_init(&m->arena, NULL, 0);
    if (!(flags & SDN_MF_YAML_ONLY)) {
        rc = sdn_mf_json_tree(data, len, &tmp, &root);
        if (rc < 0) {
            rc = sdn_error(SELDON_ENOMEM, "%.200s: out of memory", source);
            goto out;
        }
        if (rc == 0) {
            if ((rc = add_document(m, &tmp, root, 1, source)) != 0)
                goto out;
            goto done;
        }
        seldon_clear_error(); /* the JSON reader's complaint: libyaml has the last word */
    }
    sdn_mf_reader_init(&rd, data, len, source);
    reader = 1;
    for (;;) {
        sdn_arena_reset(&tmp);
        rc = sdn_mf_reader_next(&rd, &tmp, &root);
        if (rc <= 0)
            break;
        if (root == NULL || sdn_mf_is_null(root))
            continue; /* an empty document */
        if ((rc = add_document(m, &tmp, root, rd.doc, source)) != 0)
            goto out;
    }
    if (rc < 0)
        goto out;
    if (m->count == 0) {
        rc = sdn_error(SELDON_EPARSE, "%.200s: no resource in it (an empty file?)", source);
        goto out;
    }
done:
    *out = m;
    m = NULL;
    rc = 0;
out:
    if (reader)
        sdn_mf_reader_free(&rd);
    sdn_arena_release(&tmp);
    seldon_manifest_free(m);
    return rc;
}

int seldon_manifest_parse(seldon_manifest **out, const char *data, size_t len, const char *source)
{
    return sdn_manifest_parse_ex(out, data, len, source, 0);
}

int seldon_manifest_load(seldon_manifest **out, const char *path)
{
    FILE *f = NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc;

    if (out == NULL || path == NULL)
        return sdn_error(SELDON_EINVAL, "manifest_load: NULL argument");
    *out = NULL;
    f = fopen(path, "rb");
    if (f == NULL)
        return sdn_error(SELDON_EIO, "%.200s: %s", path, strerror(errno));
    for (;;) {
        size_t n;
        if (len == cap) {
            char *grown;
            if (cap > SELDON_MANIFEST_FILE_MAX) {
                rc = sdn_error(SELDON_ETOOBIG, "%.200s: more than the %d bytes a manifest may hold",
                               path, SELDON_MANIFEST_FILE_MAX);
                goto out;
            }
            cap = cap ? cap * 2 : 65536;
            grown = sdn_realloc(buf, cap + 1);
            if (grown == NULL) {
                rc = sdn_error(SELDON_ENOMEM, "%.200s: out of memory", path);
                goto out;
            }
            buf = grown;
        }
        n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            if (ferror(f)) {
                rc = sdn_error(SELDON_EIO, "%.200s: read error", path);
                goto out;
            }
            break;
        }
    }
    rc = seldon_manifest_parse(out, buf ? buf : "", len, path);
out:
    fclose(f);
    sdn_free(buf);
    return rc;
}
