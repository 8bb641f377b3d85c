/*
 * A small recursive-descent JSON reader into an arena document, and the
 * writer helpers. Configuration and control-plane bodies only: inference
 * payloads go through the OIP codec.
 */
#include <stdio.h>
#include <string.h>

#include "jdom.h"
#include "util/jsonstr.h"
#include "util/fpconv.h"

#define JDOM_MAX_DEPTH 64

typedef struct jp {
    const char *start;
    const char *p;
    const char *end;
    sdn_arena *a;
    const char *what;
    char path[160];
    size_t path_len;
} jp;

static int jp_fail(jp *j, const char *msg)
{
    return sdn_error(SELDON_EPARSE, "%s: at byte %zu%s%s%s: %s", j->what, (size_t)(j->p - j->start),
                     j->path_len ? " (" : "", j->path, j->path_len ? ")" : "", msg);
}

static void ws(jp *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static size_t path_push_key(jp *j, const char *key, size_t n)
{
    size_t old = j->path_len, room = sizeof(j->path) - j->path_len;
    int w = snprintf(j->path + j->path_len, room, "%s%.*s", old ? "." : "",
                     (int)(n > 60 ? 60 : n), key);
    if (w > 0)
        j->path_len += (size_t)w < room ? (size_t)w : room - 1;
    return old;
}

static size_t path_push_index(jp *j, size_t i)
{
    size_t old = j->path_len, room = sizeof(j->path) - j->path_len;
    int w = snprintf(j->path + j->path_len, room, "[%zu]", i);
    if (w > 0)
        j->path_len += (size_t)w < room ? (size_t)w : room - 1;
    return old;
}

static void path_pop(jp *j, size_t old)
{
    j->path_len = old;
    j->path[old] = '\0';
}

/* Strings follow the same rules as the OIP decoder's: one scanner for both. */
static int parse_string(jp *j, sdn_str *out)
{
    const uint8_t *q, *bad = NULL;
    size_t dlen;
    int esc, rc;
    char why[80], *buf;
    if (j->p >= j->end || *j->p != '"')
        return jp_fail(j, "expected a string");
    rc = sdn_jstr_scan((const uint8_t *)j->p + 1, (const uint8_t *)j->end, &q, &dlen, &esc, &bad,
                       why, sizeof(why));
    if (rc < 0) {
        j->p = (const char *)bad;
        return jp_fail(j, rc == SDN_JSTR_TRUNCATED ? "unterminated string" : why);
    }
    buf = sdn_arena_alloc(j->a, dlen + 1);
    if (buf == NULL)
        return sdn_error(SELDON_ENOMEM, "%s: out of memory", j->what);
    if (esc)
        sdn_jstr_unescape((uint8_t *)buf, (const uint8_t *)j->p + 1, q - 1);
    else
        memcpy(buf, j->p + 1, dlen);
    buf[dlen] = '\0';
    out->p = buf;
    out->len = dlen;
    j->p = (const char *)q;
    return 0;
}

static int parse_number(jp *j, sdn_jv *v)
{
    const char *endp = NULL;
    const char *q = j->p;
    int rc = sdn_parse_f64(j->p, j->end, &endp, &v->d);
    if (rc != SDN_NUM_OK)
        return jp_fail(j, rc == SDN_NUM_RANGE ? "number out of range" : "bad number");
    v->type = SDN_JV_NUMBER;
    /* Integers keep their exact value: int64 ids and sizes lose nothing to a double. */
    if (q < endp && (*q == '-' || (*q >= '0' && *q <= '9'))) {
        const char *s = q;
        int neg = *s == '-';
        uint64_t acc = 0;
        int ok = 1;
        if (neg)
            s++;
        for (; s < endp; s++) {
            if (*s < '0' || *s > '9' || acc > (UINT64_MAX - 9) / 10) {
                ok = 0;
                break;
            }
            acc = acc * 10 + (uint64_t)(*s - '0');
        }
        if (ok && (neg ? acc <= (uint64_t)INT64_MAX + 1 : acc <= (uint64_t)INT64_MAX)) {
            v->is_int = 1;
            v->i = neg ? (int64_t)(0 - acc) : (int64_t)acc;
        }
    }
    j->p = endp;
    return 0;
}

static int parse_value(jp *j, sdn_jv *v, int depth);

/* Doubles an arena array of elem-sized items. */
static int grow(jp *j, void **items, size_t *cap, size_t elem)
{
    size_t ncap = *cap ? *cap * 2 : 4;
    void *p = sdn_arena_grow(j->a, *items, *cap * elem, ncap * elem);
    if (p == NULL)
        return sdn_error(SELDON_ENOMEM, "%s: out of memory", j->what);
    *items = p;
    *cap = ncap;
    return 0;
}

static int parse_array(jp *j, sdn_jv *v, int depth)
{
    size_t cap = 0;
    v->type = SDN_JV_ARRAY;
    j->p++;
    ws(j);
    if (j->p < j->end && *j->p == ']') {
        j->p++;
        return 0;
    }
    for (;;) {
        size_t old;
        int rc;
        if (v->n == cap && grow(j, (void **)&v->items, &cap, sizeof(sdn_jv)) < 0)
            return SELDON_ENOMEM;
        old = path_push_index(j, v->n);
        rc = parse_value(j, &v->items[v->n], depth + 1);
        path_pop(j, old);
        if (rc < 0)
            return rc;
        v->n++;
        ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        if (j->p < j->end && *j->p == ']') {
            j->p++;
            return 0;
        }
        return jp_fail(j, "expected ',' or ']'");
    }
}

static int parse_object(jp *j, sdn_jv *v, int depth)
{
    size_t cap = 0;
    v->type = SDN_JV_OBJECT;
    j->p++;
    ws(j);
    if (j->p < j->end && *j->p == '}') {
        j->p++;
        return 0;
    }
    for (;;) {
        sdn_jmember *m;
        size_t old, k;
        int rc;
        if (v->n == cap && grow(j, (void **)&v->members, &cap, sizeof(sdn_jmember)) < 0)
            return SELDON_ENOMEM;
        m = &v->members[v->n];
        memset(m, 0, sizeof(*m));
        ws(j);
        rc = parse_string(j, &m->key);
        if (rc < 0)
            return rc;
        for (k = 0; k < v->n; k++)
            if (v->members[k].key.len == m->key.len &&
                memcmp(v->members[k].key.p, m->key.p, m->key.len) == 0)
                return jp_fail(j, "duplicate key");
        ws(j);
        if (j->p >= j->end || *j->p != ':')
            return jp_fail(j, "expected ':'");
        j->p++;
        old = path_push_key(j, m->key.p, m->key.len);
        rc = parse_value(j, &m->value, depth + 1);
        path_pop(j, old);
        if (rc < 0)
            return rc;
        v->n++;
        ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        if (j->p < j->end && *j->p == '}') {
            j->p++;
            return 0;
        }
        return jp_fail(j, "expected ',' or '}'");
    }
}

static int literal(jp *j, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0)
        return 0;
    j->p += n;
    return 1;
}

static int parse_value(jp *j, sdn_jv *v, int depth)
{
    int rc = 0;
    const char *begin;
    memset(v, 0, sizeof(*v));
    v->s.p = sdn_empty;
    ws(j);
    if (depth > JDOM_MAX_DEPTH)
        return jp_fail(j, "nested too deeply");
    if (j->p >= j->end)
        return jp_fail(j, "unexpected end of input");
    begin = j->p;
    switch (*j->p) {
    case '{':
        rc = parse_object(j, v, depth);
        break;
    case '[':
        rc = parse_array(j, v, depth);
        break;
    case '"':
        v->type = SDN_JV_STRING;
        rc = parse_string(j, &v->s);
        break;
    case 't':
    case 'f':
    case 'n':
        if (literal(j, "true")) {
            v->type = SDN_JV_BOOL;
            v->b = 1;
        } else if (literal(j, "false")) {
            v->type = SDN_JV_BOOL;
        } else if (literal(j, "null")) {
            v->type = SDN_JV_NULL;
        } else {
            rc = jp_fail(j, "unexpected token");
        }
        break;
    default:
        rc = parse_number(j, v);
    }
    v->raw = begin;
    v->raw_len = (size_t)(j->p - begin);
    return rc;
}

int sdn_json_parse(sdn_jv **out, sdn_arena *a, const char *text, size_t len, const char *what)
{
    jp j;
    sdn_jv *v;
    int rc;
    memset(&j, 0, sizeof(j));
    j.start = j.p = text;
    j.end = text + len;
    j.a = a;
    j.what = what ? what : "JSON";
    v = sdn_arena_alloc(a, sizeof(*v));
    if (v == NULL)
        return sdn_error(SELDON_ENOMEM, "%s: out of memory", j.what);
    rc = parse_value(&j, v, 0);
    if (rc < 0)
        return rc;
    ws(&j);
    if (j.p != j.end)
        return jp_fail(&j, "unexpected text after the document");
    *out = v;
    return 0;
}

const sdn_jv *sdn_jv_get(const sdn_jv *v, const char *key)
{
    size_t i, n;
    if (v == NULL || v->type != SDN_JV_OBJECT)
        return NULL;
    n = strlen(key);
    for (i = 0; i < v->n; i++)
        if (v->members[i].key.len == n && memcmp(v->members[i].key.p, key, n) == 0)
            return &v->members[i].value;
    return NULL;
}

int sdn_jw_raw(seldon_buf *b, const char *s, size_t len)
{
    return sdn_buf_append(b, s, len);
}

int sdn_jw_string(seldon_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t i;
    int rc = sdn_buf_reserve(b, len * 6 + 2);
    uint8_t *d;
    if (rc < 0)
        return rc;
    d = b->data + b->len;
    *d++ = '"';
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            *d++ = '\\';
            *d++ = c;
        } else if (c == '\n') {
            *d++ = '\\';
            *d++ = 'n';
        } else if (c == '\t') {
            *d++ = '\\';
            *d++ = 't';
        } else if (c == '\r') {
            *d++ = '\\';
            *d++ = 'r';
        } else if (c < 0x20 || c == 0x7f) {
            memcpy(d, "\\u00", 4);
            d[4] = (uint8_t)hex[c >> 4];
            d[5] = (uint8_t)hex[c & 15];
            d += 6;
        } else if (c >= 0x80) {
            /* Text from files and runtimes is not trusted to be UTF-8: keep the JSON valid. */
            size_t n = sdn_utf8_seq((const uint8_t *)s + i, (const uint8_t *)s + len);
            if (n == 0) {
                memcpy(d, "\\ufffd", 6);
                d += 6;
            } else {
                memcpy(d, s + i, n);
                d += n;
                i += n - 1;
            }
        } else {
            *d++ = c;
        }
    }
    *d++ = '"';
    b->len = (size_t)(d - b->data);
    return 0;
}

int sdn_jw_int(seldon_buf *b, int64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof(tmp), "%lld", (long long)v);
    return sdn_buf_append(b, tmp, (size_t)n);
}

int sdn_jw_double(seldon_buf *b, double v)
{
    char tmp[SDN_FMT_F64_MAX];
    size_t n = sdn_fmt_f64(tmp, v);
    return sdn_buf_append(b, tmp, n);
}
