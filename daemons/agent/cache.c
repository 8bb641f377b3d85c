/*
 * seldon-agent's pure logic (see cache.h): the models held, LRU eviction planning,
 * spec and settings text, the protobuf field-1 splice.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "cache.h"
#include "sdd.h"
#include "seldon/manifest.h"

struct ag_cache {
    ag_entry *head;
    int64_t capacity;
    uint64_t tick;
};

int ag_cache_new(ag_cache **out, int64_t capacity)
{
    ag_cache *c = sdd_calloc(1, sizeof(*c));
    if (c == NULL)
        return sdd_error(SELDON_ENOMEM, "cache: out of memory");
    c->capacity = capacity;
    *out = c;
    return 0;
}

static void entry_free(ag_entry *e)
{
    sdd_free(e->model);
    sdd_free(e->vname);
    sdd_free(e);
}

void ag_cache_free(ag_cache *c)
{
    ag_entry *e, *next;
    if (c == NULL)
        return;
    for (e = c->head; e != NULL; e = next) {
        next = e->next;
        entry_free(e);
    }
    sdd_free(c);
}

ag_entry *ag_cache_add(ag_cache *c, const char *model, uint32_t version, int64_t memory)
{
    ag_entry *e = sdd_calloc(1, sizeof(*e));
    size_t n = strlen(model);
    if (e == NULL)
        return NULL;
    e->model = sdd_strndup(model, n);
    e->vname = sdd_malloc(n + 16);
    if (e->model == NULL || e->vname == NULL) {
        entry_free(e);
        return NULL;
    }
    snprintf(e->vname, n + 16, "%s_%u", model, version);
    e->version = version;
    e->memory = memory > 0 ? memory : 0;
    e->state = AG_LOADING;
    e->used = ++c->tick;
    e->next = c->head;
    c->head = e;
    return e;
}

void ag_cache_remove(ag_cache *c, ag_entry *e)
{
    ag_entry **p;
    for (p = &c->head; *p != NULL; p = &(*p)->next) {
        if (*p == e) {
            *p = e->next;
            entry_free(e);
            return;
        }
    }
}

ag_entry *ag_cache_find(ag_cache *c, const char *vname, size_t len)
{
    ag_entry *e;
    for (e = c->head; e != NULL; e = e->next)
        if (strlen(e->vname) == len && memcmp(e->vname, vname, len) == 0)
            return e;
    return NULL;
}

ag_entry *ag_cache_find_version(ag_cache *c, const char *model, uint32_t version)
{
    ag_entry *e;
    for (e = c->head; e != NULL; e = e->next)
        if (e->version == version && strcmp(e->model, model) == 0)
            return e;
    return NULL;
}

ag_entry *ag_cache_resolve(ag_cache *c, const char *name, size_t len)
{
    ag_entry *e, *best = NULL;
    e = ag_cache_find(c, name, len);
    if (e != NULL && e->state != AG_UNLOADING)
        return e;
    for (e = c->head; e != NULL; e = e->next) {
        if (!e->held || e->state == AG_UNLOADING)
            continue;
        if (strlen(e->model) != len || memcmp(e->model, name, len) != 0)
            continue;
        if (best == NULL || e->version > best->version)
            best = e;
    }
    return best;
}

void ag_cache_touch(ag_cache *c, ag_entry *e)
{
    e->used = ++c->tick;
}

int64_t ag_cache_used(const ag_cache *c)
{
    const ag_entry *e;
    int64_t used = 0;
    for (e = c->head; e != NULL; e = e->next)
        if ((e->state == AG_LOADING || e->state == AG_LOADED || e->state == AG_EVICTING) &&
            __builtin_add_overflow(used, e->memory, &used))
            return INT64_MAX; /* saturates: absurd sizes never wrap into room */
    return used;
}

int64_t ag_cache_capacity(const ag_cache *c)
{
    return c->capacity;
}

ag_entry *ag_cache_first(ag_cache *c)
{
    return c->head;
}

static int64_t sat_add(int64_t a, int64_t b)
{
    int64_t r;
    return __builtin_add_overflow(a, b, &r) ? INT64_MAX : r;
}

/*
 * Evicting the least recently used until the rest fits keeps the longest run of most
 * recently used models that fits beside what cannot be evicted: computed that way, every
 * sum stays within the capacity and nothing can wrap.
 */
int ag_cache_plan(ag_entry ***victims, size_t *n, ag_cache *c, const ag_entry *e)
{
    ag_entry *x, **v = NULL;
    size_t nv = 0, cand = 0, i, j, k;
    int64_t fixed = 0;
    *victims = NULL;
    *n = 0;
    if (c->capacity <= 0)
        return 0;
    if (e->memory > c->capacity)
        return sdd_error(SELDON_ERANGE,
                         "model %s needs %lld bytes; the replica has %lld in all (--memory)",
                         e->vname, (long long)e->memory, (long long)c->capacity);
    for (x = c->head; x != NULL; x = x->next) {
        if (x == e)
            continue;
        if (x->state == AG_LOADING || x->state == AG_EVICTING)
            fixed = sat_add(fixed, x->memory);
        else if (x->state == AG_LOADED)
            cand++;
    }
    fixed = sat_add(fixed, e->memory);
    if (fixed > c->capacity)
        return sdd_error(SELDON_ERANGE,
                         "model %s needs %lld bytes: %lld are taken by models loading, and "
                         "the replica has %lld (--memory)",
                         e->vname, (long long)e->memory, (long long)(fixed - e->memory),
                         (long long)c->capacity);
    if (cand == 0)
        return 0;
    v = sdd_malloc(cand * sizeof(*v));
    if (v == NULL)
        return sdd_error(SELDON_ENOMEM, "cache: out of memory");
    for (x = c->head; x != NULL; x = x->next)
        if (x != e && x->state == AG_LOADED)
            v[nv++] = x;
    /* Most recently used first (insertion sort: a replica holds few models). */
    for (i = 1; i < nv; i++) {
        ag_entry *key = v[i];
        for (j = i; j > 0 && v[j - 1]->used < key->used; j--)
            v[j] = v[j - 1];
        v[j] = key;
    }
    for (i = 0; i < nv && v[i]->memory <= c->capacity - fixed; i++)
        fixed += v[i]->memory;
    if (i == nv) {
        sdd_free(v);
        return 0;
    }
    /* v[i..nv) go, least recently used first. */
    for (j = i, k = nv - 1; j < k; j++, k--) {
        x = v[j];
        v[j] = v[k];
        v[k] = x;
    }
    memmove(v, v + i, (nv - i) * sizeof(*v));
    *victims = v;
    *n = nv - i;
    return 0;
}

/* --------------------------------------------------------------- JSON scanning */

typedef struct jscan {
    const char *p, *end;
} jscan;

static void j_ws(jscan *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

/* Skips a string (at its opening quote); 0 or -1. */
static int j_skip_string(jscan *j)
{
    if (j->p >= j->end || *j->p != '"')
        return -1;
    for (j->p++; j->p < j->end; j->p++) {
        if (*j->p == '\\') {
            j->p++;
            continue;
        }
        if (*j->p == '"') {
            j->p++;
            return 0;
        }
    }
    return -1;
}

static int j_skip_value(jscan *j, int depth)
{
    j_ws(j);
    if (j->p >= j->end || depth > 64)
        return -1;
    if (*j->p == '"')
        return j_skip_string(j);
    if (*j->p == '{' || *j->p == '[') {
        char close = *j->p == '{' ? '}' : ']';
        int obj = *j->p == '{';
        j->p++;
        j_ws(j);
        if (j->p < j->end && *j->p == close) {
            j->p++;
            return 0;
        }
        for (;;) {
            if (obj) {
                j_ws(j);
                if (j_skip_string(j) != 0)
                    return -1;
                j_ws(j);
                if (j->p >= j->end || *j->p != ':')
                    return -1;
                j->p++;
            }
            if (j_skip_value(j, depth + 1) != 0)
                return -1;
            j_ws(j);
            if (j->p >= j->end)
                return -1;
            if (*j->p == ',') {
                j->p++;
                continue;
            }
            if (*j->p == close) {
                j->p++;
                return 0;
            }
            return -1;
        }
    }
    while (j->p < j->end &&
           (isalnum((unsigned char)*j->p) || *j->p == '-' || *j->p == '+' || *j->p == '.'))
        j->p++;
    return 0;
}

/* Walks the members of the object at j->p; calls fn for each key (value at j->p). */
typedef int (*j_member_fn)(void *arg, const char *key, size_t klen, jscan *j);

static int j_object(jscan *j, j_member_fn fn, void *arg)
{
    j_ws(j);
    if (j->p >= j->end || *j->p != '{')
        return -1;
    j->p++;
    j_ws(j);
    if (j->p < j->end && *j->p == '}') {
        j->p++;
        return 0;
    }
    for (;;) {
        const char *k;
        size_t klen;
        const char *before;
        j_ws(j);
        k = j->p + 1;
        if (j_skip_string(j) != 0)
            return -1;
        klen = (size_t)(j->p - 1 - k);
        j_ws(j);
        if (j->p >= j->end || *j->p != ':')
            return -1;
        j->p++;
        j_ws(j);
        before = j->p;
        if (fn(arg, k, klen, j) != 0)
            return -1;
        if (j->p == before && j_skip_value(j, 1) != 0)
            return -1;
        j_ws(j);
        if (j->p >= j->end)
            return -1;
        if (*j->p == ',') {
            j->p++;
            continue;
        }
        if (*j->p == '}') {
            j->p++;
            return 0;
        }
        return -1;
    }
}

static int key_is(const char *k, size_t klen, const char *name)
{
    return strlen(name) == klen && memcmp(k, name, klen) == 0;
}

int ag_spec_parse(ag_spec *out, const char *json, size_t len)
{
    seldon_manifest *m = NULL;
    const seldon_resource *r;
    int rc;
    memset(out, 0, sizeof(*out));
    out->artifact_version = -1;
    out->memory = -1;
    rc = seldon_manifest_parse(&m, json, len, "model spec");
    if (rc != 0)
        return rc; /* seldon_last_error() names the field */
    r = seldon_manifest_at(m, 0);
    if (r == NULL || r->kind != SELDON_KIND_MODEL || seldon_manifest_count(m) != 1) {
        seldon_manifest_free(m);
        return sdd_error(SELDON_EPARSE, "model spec: expected one Model resource");
    }
    out->storage_uri = sdd_strndup(r->spec.model.storage_uri, strlen(r->spec.model.storage_uri));
    out->artifact_version = r->spec.model.artifact_version;
    out->memory = r->spec.model.memory_bytes;
    seldon_manifest_free(m);
    if (out->storage_uri == NULL)
        return sdd_error(SELDON_ENOMEM, "model spec: out of memory");
    return 0;
}

void ag_spec_clear(ag_spec *s)
{
    sdd_free(s->storage_uri);
    s->storage_uri = NULL;
}

/* --------------------------------------------------------------- settings rename */

static int buf_put(seldon_buf *b, const void *d, size_t n)
{
    if (seldon_buf_reserve(b, n) != 0)
        return -1;
    memcpy(b->data + b->len, d, n);
    b->len += n;
    return 0;
}

static int put_json_string(seldon_buf *b, const char *s)
{
    char esc[8];
    if (buf_put(b, "\"", 1) != 0)
        return -1;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            esc[0] = '\\';
            esc[1] = (char)ch;
            if (buf_put(b, esc, 2) != 0)
                return -1;
        } else if (ch < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", ch);
            if (buf_put(b, esc, 6) != 0)
                return -1;
        } else if (buf_put(b, s, 1) != 0) {
            return -1;
        }
    }
    return buf_put(b, "\"", 1);
}

typedef struct rename_ctx {
    const char *vstart, *vend; /* the value of "name", when found */
} rename_ctx;

static int rename_member(void *arg, const char *k, size_t klen, jscan *j)
{
    rename_ctx *c = arg;
    if (key_is(k, klen, "name") && c->vstart == NULL) {
        c->vstart = j->p;
        if (j_skip_value(j, 1) != 0)
            return -1;
        c->vend = j->p;
    }
    return 0;
}

int ag_settings_rename(seldon_buf *out, const char *json, size_t len, const char *name)
{
    jscan j = {json, json + len};
    rename_ctx c = {NULL, NULL};
    size_t start = out->len;
    const char *brace;
    if (j_object(&j, rename_member, &c) != 0)
        return sdd_error(SELDON_EPARSE, "model-settings.json: not a JSON object");
    if (c.vstart != NULL) {
        if (buf_put(out, json, (size_t)(c.vstart - json)) != 0 || put_json_string(out, name) ||
            buf_put(out, c.vend, (size_t)(json + len - c.vend)) != 0)
            goto oom;
        return 0;
    }
    brace = memchr(json, '{', len);
    if (buf_put(out, json, (size_t)(brace + 1 - json)) != 0 || buf_put(out, "\"name\": ", 8) ||
        put_json_string(out, name) != 0)
        goto oom;
    j.p = brace + 1;
    j_ws(&j);
    if (*j.p != '}' && buf_put(out, ", ", 2) != 0)
        goto oom;
    if (buf_put(out, brace + 1, (size_t)(json + len - brace - 1)) != 0)
        goto oom;
    return 0;
oom:
    out->len = start;
    return sdd_error(SELDON_ENOMEM, "model-settings.json: out of memory");
}

/* --------------------------------------------------------------- protobuf field 1 */

static int pb_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *v)
{
    int shift = 0;
    *v = 0;
    while (*pos < len && shift < 64) {
        uint8_t b = p[(*pos)++];
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return 0;
        shift += 7;
    }
    return -1;
}

/* Walks the top-level fields; for each field 1 of wire type 2 calls back with its spans. */
typedef int (*pb_fn)(void *arg, size_t field_start, size_t val_off, size_t val_len);

static int pb_walk(const uint8_t *msg, size_t len, pb_fn fn, void *arg)
{
    size_t pos = 0;
    while (pos < len) {
        size_t start = pos;
        uint64_t tag, v;
        if (pb_varint(msg, len, &pos, &tag) != 0)
            return -1;
        switch (tag & 7) {
        case 0:
            if (pb_varint(msg, len, &pos, &v) != 0)
                return -1;
            break;
        case 1:
            if (len - pos < 8)
                return -1;
            pos += 8;
            break;
        case 5:
            if (len - pos < 4)
                return -1;
            pos += 4;
            break;
        case 2:
            if (pb_varint(msg, len, &pos, &v) != 0 || v > len - pos)
                return -1;
            if ((tag >> 3) == 1 && fn != NULL && fn(arg, start, pos, (size_t)v) != 0)
                return -1;
            pos += (size_t)v;
            break;
        default:
            return -1;
        }
    }
    return 0;
}

typedef struct f1_ctx {
    int found;
    size_t off, len;
} f1_ctx;

static int f1_first(void *arg, size_t field_start, size_t off, size_t len)
{
    f1_ctx *c = arg;
    (void)field_start;
    if (!c->found) {
        c->found = 1;
        c->off = off;
        c->len = len;
    }
    return 0;
}

int ag_pb_field1(const uint8_t *msg, size_t len, size_t *off, size_t *flen)
{
    f1_ctx c = {0, 0, 0};
    if (pb_walk(msg, len, f1_first, &c) != 0)
        return sdd_error(SELDON_EPARSE, "malformed protobuf message");
    *off = c.off;
    *flen = c.found ? c.len : 0;
    return c.found ? 0 : SELDON_ENOTFOUND;
}

typedef struct rw_ctx {
    seldon_buf *out;
    const uint8_t *msg;
    size_t copied; /* msg bytes before this offset are in out */
    const char *name;
    size_t name_len;
    int oom;
} rw_ctx;

static int rw_field(void *arg, size_t field_start, size_t off, size_t len)
{
    rw_ctx *c = arg;
    uint8_t hdr[11];
    size_t n = 0;
    uint64_t v = c->name_len;
    if (buf_put(c->out, c->msg + c->copied, field_start - c->copied) != 0)
        return c->oom = -1;
    hdr[n++] = 0x0a; /* field 1, wire type 2 */
    do {
        hdr[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v != 0);
    if (buf_put(c->out, hdr, n) != 0 || buf_put(c->out, c->name, c->name_len) != 0)
        return c->oom = -1;
    c->copied = off + len;
    return 0;
}

int ag_pb_rewrite_field1(seldon_buf *out, const uint8_t *msg, size_t len, const char *name,
                         size_t name_len)
{
    size_t start = out->len;
    rw_ctx c = {out, msg, 0, name, name_len, 0};
    if (pb_walk(msg, len, NULL, NULL) != 0)
        return sdd_error(SELDON_EPARSE, "malformed protobuf message");
    if (pb_walk(msg, len, rw_field, &c) != 0 || buf_put(out, msg + c.copied, len - c.copied)) {
        out->len = start;
        return sdd_error(SELDON_ENOMEM, "out of memory");
    }
    return 0;
}
