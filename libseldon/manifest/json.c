/*
 * The fast path for one small JSON document, such as the canonical JSON
 * that seldon_resource_serialize() writes and the scheduler stores: the
 * JSON reader builds the same tree that libyaml's events would, in a third
 * of the time. Anything it does not take (not JSON, too big, a NUL in a
 * string) goes the YAML way, so the results and the messages stay those of
 * libyaml's path.
 */
#include <string.h>

#include "manifest/manifest.h"
#include "util/jdom.h"

/* Small enough that the reader's duplicate-key check (quadratic in an object's size) stays cheap.
 */
#define JSON_FAST_MAX 65536

typedef struct conv {
    sdn_arena *a;
    const char *text; /* the source: positions give lines */
    const char *pos;  /* how far lines are counted */
    size_t line;
    size_t nodes;
} conv;

static uint32_t line_at(conv *c, const char *p)
{
    while (c->pos < p) {
        const char *nl = memchr(c->pos, '\n', (size_t)(p - c->pos));
        if (nl == NULL) {
            c->pos = p;
            break;
        }
        c->line++;
        c->pos = nl + 1;
    }
    return c->line > UINT32_MAX ? UINT32_MAX : (uint32_t)c->line;
}

static sdn_mf_node *scalar(conv *c, const char *s, size_t len, int plain, uint32_t line)
{
    sdn_mf_node *n = sdn_arena_calloc(c->a, sizeof(*n));
    if (n == NULL)
        return NULL;
    n->type = SDN_MF_SCALAR;
    n->plain = (uint8_t)plain;
    n->s = s;
    n->len = len;
    n->line = line;
    return n;
}

static void append(sdn_mf_node *parent, sdn_mf_node *child)
{
    if (parent->last != NULL)
        parent->last->next = child;
    else
        parent->first = child;
    parent->last = child;
}

/* 0, 1 (take the YAML way) or SELDON_ENOMEM. Depth is bounded by the reader (64). */
static int convert(conv *c, const sdn_jv *v, size_t depth, sdn_mf_node **out)
{
    uint32_t line = line_at(c, v->raw);
    sdn_mf_node *n = NULL;
    size_t i;
    int rc;
    if (++c->nodes > SDN_MF_NODES_MAX)
        return 1;
    switch (v->type) {
    case SDN_JV_STRING:
        if (memchr(v->s.p, '\0', v->s.len) != NULL)
            return 1;
        n = scalar(c, v->s.p, v->s.len, 0, line);
        break;
    case SDN_JV_NUMBER: {
        char *t = sdn_arena_strndup(c->a, v->raw, v->raw_len);
        n = t ? scalar(c, t, v->raw_len, 1, line) : NULL;
        break;
    }
    case SDN_JV_BOOL:
        n = scalar(c, v->b ? "true" : "false", v->b ? 4 : 5, 1, line);
        break;
    case SDN_JV_NULL:
        n = scalar(c, "null", 4, 1, line);
        break;
    case SDN_JV_ARRAY:
    case SDN_JV_OBJECT:
        if (depth >= SDN_MF_DEPTH_MAX)
            return 1; /* libyaml's path says how deep is too deep */
        n = sdn_arena_calloc(c->a, sizeof(*n));
        if (n == NULL)
            break;
        n->type = v->type == SDN_JV_ARRAY ? SDN_MF_SEQ : SDN_MF_MAP;
        n->line = line;
        n->n = v->n;
        for (i = 0; i < v->n; i++) {
            sdn_mf_node *child = NULL;
            if (v->type == SDN_JV_OBJECT) {
                const sdn_jmember *m = &v->members[i];
                sdn_mf_node *key;
                if (memchr(m->key.p, '\0', m->key.len) != NULL || ++c->nodes > SDN_MF_NODES_MAX)
                    return 1;
                /* A key's line is its value's: they share one in any JSON a person writes. */
                key = scalar(c, m->key.p, m->key.len, 0, line_at(c, m->value.raw));
                if (key == NULL)
                    return SELDON_ENOMEM;
                append(n, key);
                rc = convert(c, &m->value, depth + 1, &child);
            } else {
                rc = convert(c, &v->items[i], depth + 1, &child);
            }
            if (rc != 0)
                return rc;
            append(n, child);
        }
        break;
    default:
        return 1;
    }
    if (n == NULL)
        return SELDON_ENOMEM;
    *out = n;
    return 0;
}

/* The longest key libyaml takes: it looks 1024 characters ahead for the ':'. */
#define YAML_KEY_SPAN_MAX 1000

/*
 * What libyaml reads otherwise than JSON does: UTF-16 surrogate escapes and
 * the characters its reader refuses (DEL, C1 controls, U+FFFE, U+FFFF), which
 * JSON allows in strings; raw NEL, LS and PS, which are line breaks to YAML
 * (folded inside quotes); and keys it cannot see as keys: longer than it
 * looks ahead, or with a line break before their ':'. Text holding any of
 * them goes the YAML way; canonical JSON holds none.
 */
static int yaml_differs(const uint8_t *p, size_t len)
{
    size_t i, start = 0;
    int in_str = 0;
    for (i = 0; i < len; i++) {
        uint8_t c = p[i], n1 = i + 1 < len ? p[i + 1] : 0, n2 = i + 2 < len ? p[i + 2] : 0;
        uint8_t n3 = i + 3 < len ? p[i + 3] : 0;
        if (c == 0x7F || (c == 0xC2 && n1 >= 0x80 && n1 <= 0x9F) ||
            (c == 0xE2 && n1 == 0x80 && (n2 == 0xA8 || n2 == 0xA9)) ||
            (c == 0xEF && n1 == 0xBF && (n2 == 0xBE || n2 == 0xBF)))
            return 1;
        if (!in_str) {
            if (c == '"') {
                in_str = 1;
                start = i;
            }
            continue;
        }
        if (c == '\\') {
            if (n1 == 'u' && (n2 | 0x20) == 'd' &&
                ((n3 >= '8' && n3 <= '9') || ((n3 | 0x20) >= 'a' && (n3 | 0x20) <= 'b')))
                return 1; /* \uD800-\uDBFF */
            i++;          /* the escaped character cannot start another escape */
            continue;
        }
        if (c == '"') {
            size_t j = i + 1;
            int line_break = 0;
            in_str = 0;
            while (j < len && (p[j] == ' ' || p[j] == '\t' || p[j] == '\n' || p[j] == '\r')) {
                line_break |= p[j] == '\n' || p[j] == '\r';
                j++;
            }
            if (j < len && p[j] == ':' && (line_break || j - start > YAML_KEY_SPAN_MAX))
                return 1;
        }
    }
    return 0;
}

int sdn_mf_json_tree(const char *data, size_t len, sdn_arena *scratch, sdn_mf_node **root)
{
    const sdn_jv *v = NULL;
    sdn_jv *parsed = NULL;
    conv c;
    size_t i = 0;
    int rc;
    *root = NULL;
    if (len > JSON_FAST_MAX)
        return 1;
    while (i < len && (data[i] == ' ' || data[i] == '\n' || data[i] == '\r'))
        i++;
    if (i == len || data[i] != '{' || yaml_differs((const uint8_t *)data, len))
        return 1;
    rc = sdn_json_parse(&parsed, scratch, data, len, "manifest");
    if (rc == SELDON_ENOMEM)
        return rc;
    if (rc != 0)
        return 1; /* libyaml will say what is wrong, or read what JSON does not */
    v = parsed;
    memset(&c, 0, sizeof(c));
    c.a = scratch;
    c.text = c.pos = data;
    c.line = 1;
    return convert(&c, v, 0, root);
}
