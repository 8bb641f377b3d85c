/*
 * YAML documents as trees, read with libyaml's event parser. The work is
 * bounded by the input: aliases are refused (a billion laughs cannot
 * expand), nesting stops at SDN_MF_DEPTH_MAX and a document holds at most
 * SDN_MF_NODES_MAX nodes. The builder is iterative: no recursion on depth.
 */
#include <stdio.h>
#include <string.h>

#include "manifest/manifest.h"

#define YAML_TAG_PREFIX "tag:yaml.org,2002:"

void sdn_mf_reader_init(sdn_mf_reader *r, const char *data, size_t len, const char *src)
{
    memset(r, 0, sizeof(*r));
    r->src = src;
    yaml_parser_initialize(&r->y);
    yaml_parser_set_input_string(&r->y, (const unsigned char *)data, len);
}

void sdn_mf_reader_free(sdn_mf_reader *r)
{
    if (r->have)
        yaml_event_delete(&r->ev);
    r->have = 0;
    yaml_parser_delete(&r->y);
}

void sdn_mf_quote(char *out, size_t cap, const char *s, size_t len)
{
    size_t room, i;
    int cut = 0;
    if (cap == 0)
        return;
    room = len;
    if (len >= cap) {
        room = cap > 4 ? cap - 4 : 0;
        while (room > 0 && ((unsigned char)s[room] & 0xC0) == 0x80)
            room--; /* cut at a character boundary */
        cut = cap > 4;
    }
    for (i = 0; i < room; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (cut) {
        memcpy(out + room, "...", 3);
        room += 3;
    }
    out[room] = '\0';
}

/* The error of a document being read: `src: document N: line L: message`. */
static int tree_fail(sdn_mf_reader *r, int code, size_t line, const char *fmt, ...)
    SDN_PRINTF(4, 5);
static int tree_fail(sdn_mf_reader *r, int code, size_t line, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return sdn_error(code, "%.200s: document %zu: line %zu: %s", r->src, r->doc, line, msg);
}

static int next_event(sdn_mf_reader *r)
{
    if (r->have) {
        yaml_event_delete(&r->ev);
        r->have = 0;
    }
    if (!yaml_parser_parse(&r->y, &r->ev)) {
        size_t doc = r->in_doc ? r->doc : r->doc + 1;
        if (r->y.error == YAML_MEMORY_ERROR)
            return sdn_error(SELDON_ENOMEM, "%.200s: out of memory", r->src);
        return sdn_error(
            SELDON_EPARSE, "%.200s: document %zu: line %zu, column %zu: invalid YAML: %s%s%s",
            r->src, doc, (size_t)r->y.problem_mark.line + 1, (size_t)r->y.problem_mark.column + 1,
            r->y.problem ? r->y.problem : "syntax error", r->y.context ? " " : "",
            r->y.context ? r->y.context : "");
    }
    r->have = 1;
    return 0;
}

static size_t ev_line(const yaml_event_t *e)
{
    return (size_t)e->start_mark.line + 1;
}

/*
 * A tag: the standard ones are allowed (str makes a plain scalar text; the
 * others leave it typed by its text); "!" is the non-specific tag, text.
 * 1: the scalar is text, 0: typed by its text, <0: refused.
 */
static int check_tag(sdn_mf_reader *r, const yaml_char_t *tag, size_t line)
{
    const char *t = (const char *)tag;
    char q[80];
    if (t == NULL)
        return 0;
    if (strcmp(t, "!") == 0 || strcmp(t, YAML_TAG_PREFIX "str") == 0)
        return 1;
    if (strncmp(t, YAML_TAG_PREFIX, sizeof(YAML_TAG_PREFIX) - 1) == 0) {
        const char *s = t + sizeof(YAML_TAG_PREFIX) - 1;
        if (strcmp(s, "int") == 0 || strcmp(s, "float") == 0 || strcmp(s, "bool") == 0 ||
            strcmp(s, "null") == 0 || strcmp(s, "map") == 0 || strcmp(s, "seq") == 0)
            return 0;
    }
    sdn_mf_quote(q, sizeof(q), t, strlen(t));
    return tree_fail(r, SELDON_EPARSE, line, "the tag \"%s\" is not supported", q);
}

int sdn_mf_reader_next(sdn_mf_reader *r, sdn_arena *scratch, sdn_mf_node **root)
{
    sdn_mf_node *stack[SDN_MF_DEPTH_MAX];
    size_t depth = 0, nodes = 0;
    int rc;

    *root = NULL;
    if (r->ended)
        return 0;
    /* Up to the start of a document. */
    for (;;) {
        if ((rc = next_event(r)) != 0)
            return rc;
        if (r->ev.type == YAML_STREAM_END_EVENT) {
            r->ended = 1;
            return 0;
        }
        if (r->ev.type == YAML_DOCUMENT_START_EVENT)
            break;
    }
    if (r->doc >= SELDON_MANIFEST_DOCS_MAX)
        return sdn_error(SELDON_ETOOBIG, "%.200s: more than %d documents", r->src,
                         SELDON_MANIFEST_DOCS_MAX);
    r->doc++;
    r->in_doc = 1;
    for (;;) {
        sdn_mf_node *node = NULL;
        size_t line;
        int text;
        if ((rc = next_event(r)) != 0)
            return rc;
        line = ev_line(&r->ev);
        switch (r->ev.type) {
        case YAML_DOCUMENT_END_EVENT:
            r->in_doc = 0;
            return 1;
        case YAML_ALIAS_EVENT:
            return tree_fail(r, SELDON_EPARSE, line, "aliases (*name) are not supported");
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            if (depth > 0) {
                depth--;
                if (stack[depth]->type == SDN_MF_MAP)
                    stack[depth]->n /= 2;
            }
            continue;
        case YAML_SCALAR_EVENT:
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            break;
        default:
            continue;
        }
        if (++nodes > SDN_MF_NODES_MAX)
            return tree_fail(r, SELDON_ETOOBIG, line, "more than %d values in one document",
                             SDN_MF_NODES_MAX);
        node = sdn_arena_calloc(scratch, sizeof(*node));
        if (node == NULL)
            return sdn_error(SELDON_ENOMEM, "%.200s: out of memory", r->src);
        node->line = line > UINT32_MAX ? UINT32_MAX : (uint32_t)line;
        if (r->ev.type == YAML_SCALAR_EVENT) {
            const char *v = (const char *)r->ev.data.scalar.value;
            size_t n = r->ev.data.scalar.length;
            if ((text = check_tag(r, r->ev.data.scalar.tag, line)) < 0)
                return text;
            if (memchr(v, '\0', n) != NULL)
                return tree_fail(r, SELDON_EPARSE, line, "NUL characters are not allowed");
            node->type = SDN_MF_SCALAR;
            node->plain = r->ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !text;
            node->s = sdn_arena_strndup(scratch, v, n);
            node->len = n;
            if (node->s == NULL)
                return sdn_error(SELDON_ENOMEM, "%.200s: out of memory", r->src);
        } else {
            const yaml_char_t *tag = r->ev.type == YAML_SEQUENCE_START_EVENT
                                         ? r->ev.data.sequence_start.tag
                                         : r->ev.data.mapping_start.tag;
            if ((text = check_tag(r, tag, line)) < 0)
                return text;
            node->type = r->ev.type == YAML_SEQUENCE_START_EVENT ? SDN_MF_SEQ : SDN_MF_MAP;
        }
        if (depth == 0) {
            *root = node;
        } else {
            sdn_mf_node *parent = stack[depth - 1];
            if (parent->type == SDN_MF_MAP && parent->n % 2 == 0 && node->type != SDN_MF_SCALAR)
                return tree_fail(r, SELDON_EPARSE, line, "a key must be a plain value, not a %s",
                                 node->type == SDN_MF_SEQ ? "list" : "mapping");
            if (parent->last != NULL)
                parent->last->next = node;
            else
                parent->first = node;
            parent->last = node;
            parent->n++; /* children for now; maps are halved when they end */
        }
        if (node->type != SDN_MF_SCALAR) {
            if (depth == SDN_MF_DEPTH_MAX)
                return tree_fail(r, SELDON_ETOOBIG, line, "nested deeper than %d levels",
                                 SDN_MF_DEPTH_MAX);
            stack[depth++] = node;
        }
    }
}

int sdn_mf_is_null(const sdn_mf_node *n)
{
    if (n == NULL)
        return 1;
    if (n->type != SDN_MF_SCALAR || !n->plain)
        return 0;
    return n->len == 0 || strcmp(n->s, "~") == 0 || strcmp(n->s, "null") == 0 ||
           strcmp(n->s, "Null") == 0 || strcmp(n->s, "NULL") == 0;
}

int sdn_mf_is_bool(const sdn_mf_node *n, int *value)
{
    static const char *const t[] = {"true", "True", "TRUE"}, *const f[] = {"false", "False",
                                                                           "FALSE"};
    size_t i;
    if (n == NULL || n->type != SDN_MF_SCALAR || !n->plain)
        return 0;
    for (i = 0; i < 3; i++) {
        if (strcmp(n->s, t[i]) == 0) {
            *value = 1;
            return 1;
        }
        if (strcmp(n->s, f[i]) == 0) {
            *value = 0;
            return 1;
        }
    }
    return 0;
}

static int all_of(const char *s, const char *set)
{
    if (*s == '\0')
        return 0;
    for (; *s; s++)
        if (strchr(set, *s) == NULL)
            return 0;
    return 1;
}

int sdn_mf_is_number(const sdn_mf_node *n)
{
    const char *s;
    int digits = 0;
    if (n == NULL || n->type != SDN_MF_SCALAR || !n->plain)
        return 0;
    s = n->s;
    if (strncmp(s, "0x", 2) == 0)
        return all_of(s + 2, "0123456789abcdefABCDEF");
    if (strncmp(s, "0o", 2) == 0)
        return all_of(s + 2, "01234567");
    if (*s == '+' || *s == '-')
        s++;
    if (strcmp(s, ".inf") == 0 || strcmp(s, ".Inf") == 0 || strcmp(s, ".INF") == 0)
        return 1;
    if (s == n->s && (strcmp(s, ".nan") == 0 || strcmp(s, ".NaN") == 0 || strcmp(s, ".NAN") == 0))
        return 1;
    while (*s >= '0' && *s <= '9') {
        s++;
        digits++;
    }
    if (*s == '.') {
        s++;
        while (*s >= '0' && *s <= '9') {
            s++;
            digits++;
        }
    }
    if (digits == 0)
        return 0;
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-')
            s++;
        if (!(*s >= '0' && *s <= '9'))
            return 0;
        while (*s >= '0' && *s <= '9')
            s++;
    }
    return *s == '\0';
}
