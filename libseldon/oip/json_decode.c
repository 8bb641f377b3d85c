/*
 * REST JSON decoding of Open Inference Protocol (KServe V2) messages, with Triton's binary
 * tensor data extension.
 *
 * One pass over the text and no DOM: strings go straight into the message's arena and tensor
 * data straight into a typed buffer there. The one exception is a "data" member that comes
 * before its tensor's "datatype" or "shape": its span is validated, remembered and parsed once
 * the tensor's object closes.
 *
 * Error messages start with the path of the failing value ("inputs[1].data[37]: expected a
 * number"; "<root>" for the top level). Flat data is indexed by element in row-major order
 * (data[37] is the 38th element); data nested as the shape is indexed per level (data[1][2]),
 * which is how the client wrote it. Malformed JSON adds "at byte N", counted from the start of
 * the body.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "json.h"
#include "msg.h"
#include "util/fpconv.h"

#define JD_MAX_DEPTH 64    /* nesting of skipped values */
#define JD_MAX_PARAMS SDN_MAX_PARAMS
#define JD_PATH_MAX 192
#define JD_KEY_SHOWN 48 /* bytes of a client-chosen key shown in a path */
#define JD_STEPS 16     /* path steps: the decoder's own nesting needs 5 at most */
#define JD_OVERFLOW 1   /* a run met more elements than it wanted */

/* One step of the path to the value being parsed: a member's key (raw, as in the body) or an
 * array index (key NULL). */
typedef struct jd_step {
    const uint8_t *key;
    size_t len;
    uint64_t index;
} jd_step;

typedef struct jd {
    const uint8_t *base; /* the body: byte offsets count from here */
    const uint8_t *p;
    const uint8_t *end; /* end of the JSON part */
    seldon_msg *msg;
    uint32_t flags;
    const uint8_t *bin; /* the binary part */
    size_t bin_len;
    size_t bin_off;
    int nested;     /* the data being parsed is nested as the shape */
    uint32_t level; /* nesting level of the innermost run */
    uint32_t nsteps;
    uint64_t idx[SDN_MAX_NDIM];
    jd_step steps[JD_STEPS];
    size_t plen;
    char path[JD_PATH_MAX]; /* steps as text, written by path_of() */
} jd;

/* Where typed elements land. */
typedef struct dsink {
    sdn_tensor *t;
    uint8_t *buf;
    size_t len; /* BYTES: bytes used */
    size_t cap; /* BYTES: bytes allocated */
    uint64_t n; /* elements stored */
} dsink;

/* Stands in for the buffer of an empty tensor, so that no arithmetic touches NULL. */
static uint8_t jd_nothing[16];

/* --- Paths and errors --------------------------------------------------- */

/*
 * The path is kept as steps and written out only for an error message: every key of every
 * request is pushed, and text for each (even without snprintf) was a visible part of decoding
 * a small body. The text is what appending each step in turn gives: a key shown up to
 * JD_KEY_SHOWN bytes (cut at a UTF-8 boundary) after a '.', an index as [i], the whole cut at
 * JD_PATH_MAX - 1 bytes.
 */
static void path_append(jd *j, const void *s, size_t len)
{
    size_t room = JD_PATH_MAX - 1 - j->plen;
    if (len > room)
        len = room;
    memcpy(j->path + j->plen, s, len);
    j->plen += len;
    j->path[j->plen] = '\0';
}

static void path_write_key(jd *j, const uint8_t *key, size_t len)
{
    if (len > JD_KEY_SHOWN) {
        len = JD_KEY_SHOWN;
        while (len > 0 && (key[len] & 0xC0) == 0x80)
            len--;
    }
    if (j->plen)
        path_append(j, ".", 1);
    path_append(j, key, len);
}

static void path_write_index(jd *j, uint64_t i)
{
    char buf[24], *p = buf + sizeof(buf);

    *--p = ']';
    do {
        *--p = (char)('0' + i % 10);
        i /= 10;
    } while (i);
    *--p = '[';
    path_append(j, p, (size_t)(buf + sizeof(buf) - p));
}

/* Returns the depth to give path_pop(). A step past JD_STEPS (not reached by the decoder's own
 * nesting) is left out of the path rather than overrun it. */
static inline uint32_t path_push_key(jd *j, const uint8_t *key, size_t len)
{
    uint32_t old = j->nsteps;
    if (old < JD_STEPS) {
        j->steps[old].key = key;
        j->steps[old].len = len;
        j->nsteps = old + 1;
    }
    return old;
}

static inline uint32_t path_push_index(jd *j, uint64_t i)
{
    uint32_t old = j->nsteps;
    if (old < JD_STEPS) {
        j->steps[old].key = NULL;
        j->steps[old].index = i;
        j->nsteps = old + 1;
    }
    return old;
}

static inline void path_pop(jd *j, uint32_t old)
{
    j->nsteps = old;
}

/* The path as text ("<root>" at the top), for a message. */
static SDN_JSON_COLD const char *path_of(jd *j)
{
    uint32_t i;
    j->plen = 0;
    j->path[0] = '\0';
    for (i = 0; i < j->nsteps; i++) {
        if (j->steps[i].key != NULL)
            path_write_key(j, j->steps[i].key, j->steps[i].len);
        else
            path_write_index(j, j->steps[i].index);
    }
    return j->plen ? j->path : "<root>";
}

static size_t offset_of(const jd *j, const uint8_t *at)
{
    return (size_t)(at - j->base);
}

static SDN_JSON_COLD SDN_PRINTF(4, 0) int jd_vfail(jd *j, const char *suffix, int code,
                                                   const char *fmt, va_list ap)
{
    char text[320];
    vsnprintf(text, sizeof(text), fmt, ap);
    return sdn_error(code, "%s%s: %s", path_of(j), suffix, text);
}

static SDN_JSON_COLD SDN_PRINTF(3, 4) int jd_fail(jd *j, int code, const char *fmt, ...)
{
    va_list ap;
    int rc;
    va_start(ap, fmt);
    rc = jd_vfail(j, "", code, fmt, ap);
    va_end(ap);
    return rc;
}

static SDN_JSON_COLD int jd_nomem(jd *j)
{
    return jd_fail(j, SELDON_ENOMEM, "out of memory");
}

static SDN_JSON_COLD int jd_syntax_sfx(jd *j, const char *suffix, const uint8_t *at,
                                       const char *expected)
{
    char text[96];
    if (at >= j->end)
        snprintf(text, sizeof(text), "unexpected end of input");
    else if (*at >= 0x20 && *at < 0x7F)
        snprintf(text, sizeof(text), "expected %s, found '%c'", expected, *at);
    else
        snprintf(text, sizeof(text), "expected %s, found byte 0x%02x", expected, *at);
    return sdn_error(SELDON_EPARSE, "%s%s: at byte %zu: %s", path_of(j), suffix, offset_of(j, at),
                     text);
}

static SDN_JSON_COLD int jd_syntax(jd *j, const uint8_t *at, const char *expected)
{
    return jd_syntax_sfx(j, "", at, expected);
}

static void shape_text(char *buf, size_t size, const sdn_tensor *t)
{
    size_t used = 1;
    uint32_t i;

    snprintf(buf, size, "[");
    for (i = 0; i < t->ndim && used < size; i++) {
        int n = snprintf(buf + used, size - used, i ? ",%lld" : "%lld", (long long)t->shape[i]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    if (used < size)
        snprintf(buf + used, size - used, "]");
}

/* --- Lexing ------------------------------------------------------------- */

SDN_JSON_INLINE const uint8_t *ws(const uint8_t *p, const uint8_t *end)
{
    while (p < end && *p <= ' ' && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
        p++;
    return p;
}

static int lit(const uint8_t *p, const uint8_t *end, const char *word, size_t len)
{
    return (size_t)(end - p) >= len && memcmp(p, word, len) == 0;
}

/* Validates the string whose body starts at p; errors carry the path and byte offset. */
static int str_scan(jd *j, const uint8_t *p, const uint8_t **endp, size_t *dlen, int *esc)
{
    const uint8_t *bad = NULL;
    char why[80];
    int rc = sdn_jstr_scan(p, j->end, endp, dlen, esc, &bad, why, sizeof(why));
    if (rc == SDN_JSTR_TRUNCATED)
        return jd_syntax(j, bad, "'\"'");
    if (rc < 0)
        return jd_fail(j, SELDON_EPARSE, "at byte %zu: %s", offset_of(j, bad), why);
    return 0;
}

/* Copies the string at j->p (its opening quote) into the arena. */
static int str_parse(jd *j, sdn_str *out)
{
    const uint8_t *q;
    size_t dlen;
    int esc, rc;
    uint8_t *dst;

    rc = str_scan(j, j->p + 1, &q, &dlen, &esc);
    if (rc < 0)
        return rc;
    dst = sdn_arena_alloc(&j->msg->arena, dlen + 1);
    if (dst == NULL)
        return jd_nomem(j);
    if (esc) {
        sdn_jstr_unescape(dst, j->p + 1, q - 1);
        /*
         * Names, ids and parameter text are C strings everywhere they go (protobuf-c
         * among them): a NUL would cut them short on the way. BYTES data may hold NULs.
         */
        if (memchr(dst, 0, dlen) != NULL)
            return jd_fail(j, SELDON_EPARSE, "at byte %zu: \\u0000 is not allowed in this string",
                           offset_of(j, j->p));
    } else {
        memcpy(dst, j->p + 1, dlen);
    }
    dst[dlen] = '\0';
    out->p = (const char *)dst;
    out->len = dlen;
    j->p = q;
    return 0;
}

static int expect_string(jd *j, sdn_str *out)
{
    if (j->p >= j->end)
        return jd_syntax(j, j->p, "a string");
    if (*j->p != '"')
        return jd_fail(j, SELDON_EPARSE, "expected a string");
    return str_parse(j, out);
}

/* The end of the strict JSON number (or NaN, Infinity, -Infinity) at p, or NULL. */
static const uint8_t *num_scan(const uint8_t *p, const uint8_t *end)
{
    if (lit(p, end, "NaN", 3))
        return p + 3;
    if (p < end && *p == '-')
        p++;
    if (lit(p, end, "Infinity", 8))
        return p + 8;
    if (p >= end || (unsigned)(*p - '0') > 9)
        return NULL;
    if (*p == '0') {
        p++;
        if (p < end && (unsigned)(*p - '0') <= 9)
            return NULL;
    } else {
        while (p < end && (unsigned)(*p - '0') <= 9)
            p++;
    }
    if (p < end && *p == '.') {
        p++;
        if (p >= end || (unsigned)(*p - '0') > 9)
            return NULL;
        while (p < end && (unsigned)(*p - '0') <= 9)
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || (unsigned)(*p - '0') > 9)
            return NULL;
        while (p < end && (unsigned)(*p - '0') <= 9)
            p++;
    }
    return p;
}

#define JI_OK 0
#define JI_SYNTAX 1 /* not a number at all */
#define JI_NOTINT 2 /* a number with a fraction or an exponent */
#define JI_RANGE 3  /* an integer whose magnitude exceeds 64 bits */

/* A JSON integer: sign and magnitude. *pp advances only on JI_OK. */
SDN_JSON_INLINE int int_tok(const uint8_t **pp, const uint8_t *end, int *neg, uint64_t *mag)
{
    const uint8_t *p = *pp;
    uint64_t v = 0;
    int over = 0;

    *neg = 0;
    if (p < end && *p == '-') {
        *neg = 1;
        p++;
    }
    if (p >= end || (unsigned)(*p - '0') > 9)
        return JI_SYNTAX;
    if (*p == '0') {
        p++;
        if (p < end && (unsigned)(*p - '0') <= 9)
            return JI_SYNTAX;
    } else {
        do {
            over |= __builtin_mul_overflow(v, 10, &v);
            over |= __builtin_add_overflow(v, (uint64_t)(*p - '0'), &v);
            p++;
        } while (p < end && (unsigned)(*p - '0') <= 9);
    }
    if (p < end && (*p == '.' || *p == 'e' || *p == 'E'))
        return JI_NOTINT;
    if (over)
        return JI_RANGE;
    *mag = v;
    *pp = p;
    return JI_OK;
}

/*
 * After a value at j->p: steps past a ',' and the whitespace after it (returns 1), or past the
 * closing bracket `close` (returns 0).
 */
static int next_item(jd *j, uint8_t close)
{
    const uint8_t *p = ws(j->p, j->end);
    if (p < j->end && *p == ',') {
        j->p = ws(p + 1, j->end);
        return 1;
    }
    if (p < j->end && *p == close) {
        j->p = p + 1;
        return 0;
    }
    return jd_syntax(j, p, close == '}' ? "',' or '}'" : "',' or ']'");
}

/* --- Skipping ----------------------------------------------------------- */

static int skip_value(jd *j, int depth);

static int skip_container(jd *j, int depth)
{
    const uint8_t *p = j->p, *end = j->end, *q;
    uint8_t close = *p == '{' ? '}' : ']';
    size_t dlen;
    int esc, rc;

    if (depth >= JD_MAX_DEPTH)
        return jd_fail(j, SELDON_ETOOBIG, "at byte %zu: nested deeper than %d levels",
                       offset_of(j, p), JD_MAX_DEPTH);
    p = ws(p + 1, end);
    if (p < end && *p == close) {
        j->p = p + 1;
        return 0;
    }
    for (;;) {
        if (close == '}') {
            if (p >= end || *p != '"')
                return jd_syntax(j, p, "a string key");
            rc = str_scan(j, p + 1, &q, &dlen, &esc);
            if (rc < 0)
                return rc;
            p = ws(q, end);
            if (p >= end || *p != ':')
                return jd_syntax(j, p, "':'");
            p++;
        }
        j->p = p;
        rc = skip_value(j, depth + 1);
        if (rc < 0)
            return rc;
        rc = next_item(j, close);
        if (rc <= 0)
            return rc;
        p = j->p;
    }
}

/*
 * Validates and steps over any value. NaN and Infinity pass, as everywhere in this decoder,
 * because a "data" member may be skipped first and parsed later.
 */
static int skip_value(jd *j, int depth)
{
    const uint8_t *p = ws(j->p, j->end), *end = j->end, *q;
    size_t dlen;
    int esc, rc;

    j->p = p;
    if (p >= end)
        return jd_syntax(j, p, "a value");
    switch (*p) {
    case '{':
    case '[':
        return skip_container(j, depth);
    case '"':
        rc = str_scan(j, p + 1, &q, &dlen, &esc);
        if (rc == 0)
            j->p = q;
        return rc;
    case 't':
        if (!lit(p, end, "true", 4))
            break;
        j->p = p + 4;
        return 0;
    case 'f':
        if (!lit(p, end, "false", 5))
            break;
        j->p = p + 5;
        return 0;
    case 'n':
        if (!lit(p, end, "null", 4))
            break;
        j->p = p + 4;
        return 0;
    default:
        q = num_scan(p, end);
        if (q == NULL)
            break;
        j->p = q;
        return 0;
    }
    return jd_syntax(j, p, "a value");
}

/* --- Objects and arrays ------------------------------------------------- */

/* Called with j->p at a member's value (after whitespace); must step over the value. */
typedef int (*member_fn)(jd *j, void *ctx, const uint8_t *key, size_t klen);
/* Called with j->p at an element (after whitespace); must step over it. */
typedef int (*elem_fn)(jd *j, void *ctx, uint64_t index);

#define KEY_IS(k, n, lit) ((n) == sizeof(lit) - 1 && memcmp((k), (lit), sizeof(lit) - 1) == 0)

static int obj_walk(jd *j, member_fn fn, void *ctx)
{
    const uint8_t *p = ws(j->p + 1, j->end), *end = j->end, *q, *key, *raw;
    uint8_t buf[32];
    size_t dlen, klen, rawlen;
    uint32_t old;
    int esc, rc;

    if (p < end && *p == '}') {
        j->p = p + 1;
        return 0;
    }
    for (;;) {
        if (p >= end || *p != '"')
            return jd_syntax(j, p, "a string key");
        rc = str_scan(j, p + 1, &q, &dlen, &esc);
        if (rc < 0)
            return rc;
        /* Known keys are short: a longer escaped key cannot match, so it stays raw. */
        raw = key = p + 1;
        rawlen = klen = (size_t)(q - 1 - key);
        if (esc && dlen <= sizeof(buf)) {
            sdn_jstr_unescape(buf, key, q - 1);
            key = buf;
            klen = dlen;
        }
        p = ws(q, end);
        if (p >= end || *p != ':')
            return jd_syntax(j, p, "':'");
        j->p = ws(p + 1, end);
        old = path_push_key(j, raw, rawlen);
        rc = fn(j, ctx, key, klen);
        if (rc < 0)
            return rc;
        path_pop(j, old);
        rc = next_item(j, '}');
        if (rc <= 0)
            return rc;
        p = j->p;
    }
}

/* j->p at the value, which must be an array. */
static int arr_walk(jd *j, elem_fn fn, void *ctx)
{
    const uint8_t *p = j->p, *end = j->end;
    uint64_t i = 0;
    uint32_t old;
    int rc;

    if (p >= end)
        return jd_syntax(j, p, "an array");
    if (*p != '[')
        return jd_fail(j, SELDON_EPARSE, "expected an array");
    p = ws(p + 1, end);
    if (p < end && *p == ']') {
        j->p = p + 1;
        return 0;
    }
    for (;; i++) {
        j->p = p;
        old = path_push_index(j, i);
        rc = fn(j, ctx, i);
        if (rc < 0)
            return rc;
        path_pop(j, old);
        rc = next_item(j, ']');
        if (rc <= 0)
            return rc;
        p = j->p;
    }
}

/* --- Parameters --------------------------------------------------------- */

static int param_number(jd *j, sdn_param *prm)
{
    const uint8_t *p = j->p, *q = p, *end = j->end;
    const char *e;
    uint64_t mag;
    int neg, r;

    r = int_tok(&q, end, &neg, &mag);
    if (r == JI_OK) {
        if (mag > (neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX))
            r = JI_RANGE;
        else {
            prm->type = SELDON_PARAM_INT64;
            prm->i = (int64_t)(neg ? 0 - mag : mag);
            j->p = q;
            return 0;
        }
    }
    if (r == JI_RANGE) {
        q = num_scan(p, end);
        return jd_fail(j, SELDON_ERANGE, "%.*s is out of range for an int64 parameter",
                       (int)(q - p > 40 ? 40 : q - p), (const char *)p);
    }
    prm->type = SELDON_PARAM_DOUBLE;
    r = sdn_parse_f64((const char *)p, (const char *)end, &e, &prm->d);
    if (r == SDN_NUM_SYNTAX)
        return jd_fail(j, SELDON_EPARSE, "expected a string, bool or number");
    if (r == SDN_NUM_RANGE)
        return jd_fail(j, SELDON_ERANGE, "%.*s is out of range for a double parameter",
                       (int)(e - (const char *)p > 40 ? 40 : e - (const char *)p), (const char *)p);
    j->p = (const uint8_t *)e;
    return 0;
}

static int param_value(jd *j, sdn_param *prm)
{
    const uint8_t *p = j->p, *end = j->end;

    if (p >= end)
        return jd_syntax(j, p, "a value");
    switch (*p) {
    case '"':
        prm->type = SELDON_PARAM_STRING;
        return str_parse(j, &prm->s);
    case 't':
    case 'f':
        if (lit(p, end, "true", 4) || lit(p, end, "false", 5)) {
            prm->type = SELDON_PARAM_BOOL;
            prm->b = *p == 't';
            j->p = p + (*p == 't' ? 4 : 5);
            return 0;
        }
        break;
    default:
        if (*p == '-' || (unsigned)(*p - '0') <= 9 || *p == 'N' || *p == 'I')
            return param_number(j, prm);
        break;
    }
    return jd_fail(j, SELDON_EPARSE, "expected a string, bool or number");
}

/* j->p at the value of a "parameters" member. */
static int params_parse(jd *j, sdn_params *ps)
{
    const uint8_t *p = j->p, *end = j->end, *key;
    sdn_str name;
    sdn_param *prm;
    uint32_t old;
    int rc;

    if (p >= end)
        return jd_syntax(j, p, "an object");
    if (*p != '{')
        return jd_fail(j, SELDON_EPARSE, "expected an object");
    p = ws(p + 1, end);
    if (p < end && *p == '}') {
        j->p = p + 1;
        return 0;
    }
    for (;;) {
        if (p >= end || *p != '"')
            return jd_syntax(j, p, "a string key");
        j->p = p;
        rc = str_parse(j, &name);
        if (rc < 0)
            return rc;
        key = p + 1;
        old = path_push_key(j, key, (size_t)(j->p - 1 - key));
        if (sdn_params_find(ps, name.p, name.len) != NULL)
            return jd_fail(j, SELDON_EPARSE, "duplicate parameter");
        if (ps->n >= JD_MAX_PARAMS)
            return jd_fail(j, SELDON_ETOOBIG, "more than %d parameters", JD_MAX_PARAMS);
        p = ws(j->p, end);
        if (p >= end || *p != ':')
            return jd_syntax(j, p, "':'");
        j->p = ws(p + 1, end);
        prm = sdn_params_push(&j->msg->arena, ps);
        if (prm == NULL)
            return jd_nomem(j);
        prm->name = name;
        rc = param_value(j, prm);
        if (rc < 0)
            return rc;
        path_pop(j, old);
        rc = next_item(j, '}');
        if (rc <= 0)
            return rc;
        p = j->p;
    }
}

/* --- Tensor data -------------------------------------------------------- */

/* The path suffix of element k: nested data lists the enclosing levels' indices. */
static void elem_suffix(const jd *j, char *buf, size_t size, uint32_t levels, int with_k,
                        uint64_t k)
{
    size_t used = 0;
    uint32_t i;
    int n;

    buf[0] = '\0';
    for (i = 0; i < levels + (with_k ? 1u : 0u) && used < size; i++) {
        n = snprintf(buf + used, size - used, "[%llu]",
                     (unsigned long long)(i < levels ? j->idx[i] : k));
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

static SDN_JSON_COLD SDN_PRINTF(6, 7) int elem_fail(jd *j, uint32_t levels, int with_k, uint64_t k,
                                                    int code, const char *fmt, ...)
{
    char sfx[SDN_MAX_NDIM * 22 + 1];
    va_list ap;
    int rc;
    elem_suffix(j, sfx, sizeof(sfx), levels, with_k, k);
    va_start(ap, fmt);
    rc = jd_vfail(j, sfx, code, fmt, ap);
    va_end(ap);
    return rc;
}

/* Explains why element k of a run, at p, did not parse. */
static SDN_JSON_COLD int elem_bad(jd *j, int single, uint64_t k, const uint8_t *p, int32_t dt,
                                  int why)
{
    char sfx[SDN_MAX_NDIM * 22 + 1];
    uint32_t levels = j->nested ? j->level : 0;
    const uint8_t *q;
    int tl;

    elem_suffix(j, sfx, sizeof(sfx), levels, !single, k);
    if (p >= j->end)
        return jd_syntax_sfx(j, sfx, p, "");
    if (why == JI_RANGE) {
        q = num_scan(p, j->end);
        tl = q ? (int)(q - p > 40 ? 40 : q - p) : 1;
        return elem_fail(j, levels, !single, k, SELDON_ERANGE, "%.*s is out of range for %s", tl,
                         (const char *)p, seldon_datatype_name(dt));
    }
    if (*p == '[') {
        if (j->nested && k == 0)
            return elem_fail(j, levels, !single, k, SELDON_ESHAPE,
                             "nested deeper than the shape's %u dimensions", j->level + 1);
        return elem_fail(j, levels, !single, k, SELDON_ESHAPE, "mixes arrays and scalars");
    }
    if (dt == SELDON_DT_BOOL)
        return elem_fail(j, levels, !single, k, SELDON_EPARSE, "expected true or false");
    if (dt == SELDON_DT_BYTES)
        return elem_fail(j, levels, !single, k, SELDON_EPARSE, "expected a string");
    if (dt >= SELDON_DT_FP16)
        return elem_fail(j, levels, !single, k, SELDON_EPARSE, "expected a number");
    return elem_fail(j, levels, !single, k, SELDON_EPARSE, "expected an integer");
}

static SDN_JSON_COLD int bytes_grow(jd *j, dsink *s, size_t need)
{
    size_t cap = s->cap > 256 ? s->cap : 256;
    void *np;
    while (cap < need)
        if (!sdn_mul_size(&cap, cap, 2))
            return jd_fail(j, SELDON_ETOOBIG, "BYTES data too large");
    np = sdn_arena_grow(&j->msg->arena, s->buf, s->len, cap);
    if (np == NULL)
        return jd_nomem(j);
    s->buf = np;
    s->cap = cap;
    return 0;
}

/* Element sizes and the largest magnitudes per datatype; constant-folded in the hot loops. */
static const uint8_t jd_size[14] = {0, 1, 1, 2, 4, 8, 1, 2, 4, 8, 2, 4, 8, 0};
static const uint64_t jd_pos_max[14] = {0,          0,        UINT8_MAX, UINT16_MAX, UINT32_MAX,
                                        UINT64_MAX, INT8_MAX, INT16_MAX, INT32_MAX,  INT64_MAX};
static const uint64_t jd_neg_max[14] = {0, 0,    0,      0,           0,
                                        0, 128u, 32768u, 2147483648u, (uint64_t)INT64_MAX + 1};

/*
 * The hot loop: parses scalars of datatype dt at j->p, each followed by ',' or ']', through the
 * closing ']' (or one bare scalar, when single), appending to s. Expanded once per datatype
 * (dt is a constant at each call site), so the per-element work has no datatype switch.
 * Returns JD_OVERFLOW, with j->p at the extra element, when there are more than want.
 */
SDN_JSON_INLINE int run_generic(jd *j, dsink *s, uint64_t want, int single, const int32_t dt)
{
    const size_t esize = jd_size[dt];
    const uint8_t *p = j->p, *end = j->end;
    uint8_t *dst = s->buf + (esize ? (size_t)s->n * esize : 0);
    uint64_t k = 0;

    for (;;) {
        p = ws(p, end);
        if (SDN_UNLIKELY(k == want)) {
            j->p = p;
            s->n += k;
            return JD_OVERFLOW;
        }
        if (dt == SELDON_DT_FP32 || dt == SELDON_DT_FP16) {
            const char *e;
            float f;
            int r = sdn_parse_f32((const char *)p, (const char *)end, &e, &f);
            if (SDN_UNLIKELY(r != SDN_NUM_OK))
                return elem_bad(j, single, k, p, dt, r == SDN_NUM_RANGE ? JI_RANGE : JI_SYNTAX);
            if (dt == SELDON_DT_FP32) {
                memcpy(dst + 4 * k, &f, 4);
            } else {
                uint16_t h = sdn_f32_to_f16(f);
                if (SDN_UNLIKELY((h & 0x7FFF) == 0x7C00 && isfinite(f)))
                    return elem_bad(j, single, k, p, dt, JI_RANGE);
                memcpy(dst + 2 * k, &h, 2);
            }
            p = (const uint8_t *)e;
        } else if (dt == SELDON_DT_FP64) {
            const char *e;
            double d;
            int r = sdn_parse_f64((const char *)p, (const char *)end, &e, &d);
            if (SDN_UNLIKELY(r != SDN_NUM_OK))
                return elem_bad(j, single, k, p, dt, r == SDN_NUM_RANGE ? JI_RANGE : JI_SYNTAX);
            memcpy(dst + 8 * k, &d, 8);
            p = (const uint8_t *)e;
        } else if (dt == SELDON_DT_BOOL) {
            if (lit(p, end, "true", 4)) {
                dst[k] = 1;
                p += 4;
            } else if (lit(p, end, "false", 5)) {
                dst[k] = 0;
                p += 5;
            } else {
                return elem_bad(j, single, k, p, dt, JI_SYNTAX);
            }
        } else if (dt == SELDON_DT_BYTES) {
            const uint8_t *q;
            size_t dlen, need;
            uint32_t len32;
            int esc, rc;
            if (SDN_UNLIKELY(p >= end || *p != '"'))
                return elem_bad(j, single, k, p, dt, JI_SYNTAX);
            rc = str_scan(j, p + 1, &q, &dlen, &esc);
            if (rc < 0)
                return rc;
            if (dlen > UINT32_MAX)
                return elem_fail(j, j->nested ? j->level : 0, !single, k, SELDON_ETOOBIG,
                                 "a BYTES element longer than 4 GiB");
            need = s->len + 4 + dlen;
            if (need > s->cap) {
                rc = bytes_grow(j, s, need);
                if (rc < 0)
                    return rc;
            }
            len32 = (uint32_t)dlen;
            memcpy(s->buf + s->len, &len32, 4);
            if (esc)
                sdn_jstr_unescape(s->buf + s->len + 4, p + 1, q - 1);
            else
                memcpy(s->buf + s->len + 4, p + 1, dlen);
            s->len = need;
            p = q;
        } else {
            const uint8_t *tok = p;
            uint64_t mag, u;
            int neg, r = int_tok(&p, end, &neg, &mag);
            if (SDN_UNLIKELY(r != JI_OK))
                return elem_bad(j, single, k, p, dt, r);
            if (SDN_UNLIKELY(mag > (neg ? jd_neg_max[dt] : jd_pos_max[dt])))
                return elem_bad(j, single, k, tok, dt, JI_RANGE);
            u = neg ? 0 - mag : mag;
            if (esize == 1) {
                dst[k] = (uint8_t)u;
            } else if (esize == 2) {
                uint16_t v = (uint16_t)u;
                memcpy(dst + 2 * k, &v, 2);
            } else if (esize == 4) {
                uint32_t v = (uint32_t)u;
                memcpy(dst + 4 * k, &v, 4);
            } else {
                memcpy(dst + 8 * k, &u, 8);
            }
        }
        k++;
        if (single)
            break;
        p = ws(p, end);
        if (SDN_LIKELY(p < end)) {
            if (*p == ',') {
                p++;
                continue;
            }
            if (*p == ']') {
                p++;
                break;
            }
        }
        {
            char sfx[SDN_MAX_NDIM * 22 + 1];
            elem_suffix(j, sfx, sizeof(sfx), j->nested ? j->level : 0, 1, k - 1);
            return jd_syntax_sfx(j, sfx, p, "',' or ']'");
        }
    }
    j->p = p;
    s->n += k;
    return 0;
}

typedef int (*run_fn)(jd *j, dsink *s, uint64_t want, int single);

#define JD_RUN(name, dt)                                                                           \
    static int name(jd *j, dsink *s, uint64_t want, int single)                                    \
    {                                                                                              \
        return run_generic(j, s, want, single, dt);                                                \
    }
JD_RUN(run_bool, SELDON_DT_BOOL)
JD_RUN(run_u8, SELDON_DT_UINT8)
JD_RUN(run_u16, SELDON_DT_UINT16)
JD_RUN(run_u32, SELDON_DT_UINT32)
JD_RUN(run_u64, SELDON_DT_UINT64)
JD_RUN(run_i8, SELDON_DT_INT8)
JD_RUN(run_i16, SELDON_DT_INT16)
JD_RUN(run_i32, SELDON_DT_INT32)
JD_RUN(run_i64, SELDON_DT_INT64)
JD_RUN(run_f16, SELDON_DT_FP16)
JD_RUN(run_f32, SELDON_DT_FP32)
JD_RUN(run_f64, SELDON_DT_FP64)
JD_RUN(run_bytes, SELDON_DT_BYTES)
#undef JD_RUN

static const run_fn jd_runs[14] = {NULL,    run_bool, run_u8,  run_u16,  run_u32,
                                   run_u64, run_i8,   run_i16, run_i32,  run_i64,
                                   run_f16, run_f32,  run_f64, run_bytes};

/* Counts the elements from j->p (an element) through the closing ']', for an error message. */
static SDN_JSON_COLD int count_rest(jd *j, uint64_t *n)
{
    int rc;
    for (;;) {
        rc = skip_value(j, 1);
        if (rc < 0)
            return rc;
        ++*n;
        rc = next_item(j, ']');
        if (rc <= 0)
            return rc;
    }
}

/* Data nested as the shape: j->p at the '[' of a level-`level` array. */
static int data_nested(jd *j, dsink *s, run_fn run, uint32_t level)
{
    const sdn_tensor *t = s->t;
    const uint8_t *p, *end = j->end;
    uint64_t dim, k = 0, before;
    int rc;

    if (level >= t->ndim)
        return elem_fail(j, level, 0, 0, SELDON_ESHAPE,
                         "nested deeper than the shape's %u dimensions", t->ndim);
    dim = (uint64_t)t->shape[level];
    p = ws(j->p + 1, end);
    if (p < end && *p == ']') {
        j->p = p + 1;
    } else if (level + 1 == t->ndim) {
        j->level = level;
        j->p = p;
        before = s->n;
        rc = run(j, s, dim, 0);
        k = s->n - before;
        if (rc == JD_OVERFLOW)
            rc = count_rest(j, &k);
        if (rc < 0)
            return rc;
    } else {
        for (;;) {
            if (k == dim) {
                j->p = p;
                rc = count_rest(j, &k);
                if (rc < 0)
                    return rc;
                break;
            }
            if (p >= end)
                return jd_syntax(j, p, "'['");
            if (*p != '[') {
                if (k > 0)
                    return elem_fail(j, level, 1, k, SELDON_ESHAPE, "mixes arrays and scalars");
                return elem_fail(j, level, 1, k, SELDON_ESHAPE,
                                 "nested %u levels deep, but the shape has %u dimensions",
                                 level + 1, t->ndim);
            }
            j->idx[level] = k;
            j->p = p;
            rc = data_nested(j, s, run, level + 1);
            if (rc < 0)
                return rc;
            k++;
            p = ws(j->p, end);
            if (p < end && *p == ',') {
                p = ws(p + 1, end);
                continue;
            }
            if (p < end && *p == ']') {
                j->p = p + 1;
                break;
            }
            {
                char sfx[SDN_MAX_NDIM * 22 + 1];
                elem_suffix(j, sfx, sizeof(sfx), level, 1, k - 1);
                return jd_syntax_sfx(j, sfx, p, "',' or ']'");
            }
        }
    }
    if (k != dim)
        return elem_fail(j, level, 0, 0, SELDON_ESHAPE,
                         "expected %llu elements along dimension %u, got %llu",
                         (unsigned long long)dim, level, (unsigned long long)k);
    return 0;
}

/* j->p at the value of "data"; the tensor's datatype and shape are known. */
static int data_parse(jd *j, sdn_tensor *t)
{
    dsink s = {t, jd_nothing, 0, 0, 0};
    run_fn run = jd_runs[t->datatype];
    size_t esize = sdn_dt_size[t->datatype], nbytes = 0;
    const uint8_t *p = ws(j->p, j->end), *q, *end = j->end;
    char shape[96];
    int rc;

    /* Each element takes at least two bytes of text: refuse absurd shapes before allocating. */
    if (t->count > (uint64_t)(end - p) / 2 + 1) {
        shape_text(shape, sizeof(shape), t);
        return jd_fail(j, SELDON_ESHAPE, "shape %s holds %llu elements, more than the body holds",
                       shape, (unsigned long long)t->count);
    }
    if (esize != 0) {
        nbytes = (size_t)t->count * esize;
        if (nbytes != 0) {
            s.buf = sdn_arena_alloc(&j->msg->arena, nbytes);
            if (s.buf == NULL)
                return jd_nomem(j);
        }
    }
    j->nested = 0;
    j->level = 0;
    if (p >= end)
        return jd_syntax(j, p, "a value");
    if (*p != '[') {
        if (t->ndim != 0)
            return jd_fail(j, SELDON_EPARSE, "expected an array");
        j->p = p;
        rc = run(j, &s, 1, 1);
    } else {
        q = ws(p + 1, end);
        if (q < end && *q == '[') {
            j->nested = 1;
            j->p = p;
            rc = data_nested(j, &s, run, 0);
        } else if (q < end && *q == ']') {
            j->p = q + 1;
            rc = 0;
        } else {
            j->p = q;
            rc = run(j, &s, t->count, 0);
            if (rc == JD_OVERFLOW) {
                uint64_t n = s.n;
                rc = count_rest(j, &n);
                if (rc < 0)
                    return rc;
                s.n = n;
            }
        }
    }
    if (rc < 0)
        return rc;
    if (s.n != t->count) {
        shape_text(shape, sizeof(shape), t);
        return jd_fail(j, SELDON_ESHAPE, "%llu elements, but shape %s holds %llu",
                       (unsigned long long)s.n, shape, (unsigned long long)t->count);
    }
    t->nbytes = esize ? nbytes : s.len;
    t->data = t->nbytes ? s.buf : NULL;
    return 0;
}

/* --- Tensors ------------------------------------------------------------ */

#define TK_NAME 0x01u
#define TK_DATATYPE 0x02u
#define TK_SHAPE 0x04u
#define TK_PARAMS 0x08u
#define TK_DATA 0x10u

typedef struct tstate {
    sdn_tensor *t;
    uint32_t seen;
    const uint8_t *data_at; /* a "data" value waiting for the datatype or shape */
} tstate;

static int shape_parse(jd *j, sdn_tensor *t)
{
    int64_t dims[SDN_MAX_NDIM];
    const uint8_t *p = j->p, *end = j->end;
    uint64_t count = 1, mag;
    uint32_t n = 0;
    int neg, r;

    if (p >= end)
        return jd_syntax(j, p, "an array");
    if (*p != '[')
        return jd_fail(j, SELDON_EPARSE, "expected an array");
    p = ws(p + 1, end);
    if (p < end && *p == ']') {
        p++;
    } else {
        for (;;) {
            if (n == SDN_MAX_NDIM)
                return jd_fail(j, SELDON_ETOOBIG, "more than %d dimensions", SDN_MAX_NDIM);
            r = int_tok(&p, end, &neg, &mag);
            if (r == JI_RANGE || (r == JI_OK && !neg && mag > INT64_MAX))
                return elem_fail(j, 0, 1, n, SELDON_ETOOBIG, "dimension too large");
            if (r != JI_OK || (neg && mag != 0)) {
                if (p >= end)
                    return jd_syntax(j, p, "a dimension");
                return elem_fail(j, 0, 1, n, SELDON_EPARSE, "expected a non-negative integer");
            }
            dims[n++] = (int64_t)mag;
            if (__builtin_mul_overflow(count, mag, &count) || count > ((uint64_t)1 << 56))
                return jd_fail(j, SELDON_ETOOBIG, "too many elements");
            j->p = p;
            r = next_item(j, ']');
            if (r < 0)
                return r;
            p = j->p;
            if (r == 0)
                break;
        }
    }
    if (n != 0) {
        t->shape = sdn_arena_alloc(&j->msg->arena, n * sizeof(int64_t));
        if (t->shape == NULL)
            return jd_nomem(j);
        memcpy(t->shape, dims, n * sizeof(int64_t));
    }
    t->ndim = n;
    t->count = count;
    j->p = p;
    return 0;
}

static int datatype_parse(jd *j, sdn_tensor *t)
{
    const uint8_t *p = j->p, *q;
    uint8_t buf[16];
    size_t dlen, shown;
    int esc, rc;

    if (p >= j->end)
        return jd_syntax(j, p, "a string");
    if (*p != '"')
        return jd_fail(j, SELDON_EPARSE, "expected a string");
    rc = str_scan(j, p + 1, &q, &dlen, &esc);
    if (rc < 0)
        return rc;
    t->datatype = SELDON_DT_INVALID;
    if (!esc)
        t->datatype = seldon_datatype_from_name((const char *)p + 1, dlen);
    else if (dlen <= sizeof(buf)) {
        sdn_jstr_unescape(buf, p + 1, q - 1);
        t->datatype = seldon_datatype_from_name((const char *)buf, dlen);
    }
    if (t->datatype == SELDON_DT_INVALID) {
        /* The raw text has no control characters: str_scan() rejected them. */
        shown = (size_t)(q - 1 - (p + 1));
        if (shown > 32) {
            shown = 32;
            while (shown > 0 && (p[1 + shown] & 0xC0) == 0x80)
                shown--;
        }
        return jd_fail(j, SELDON_EDATATYPE, "unknown datatype \"%.*s\"", (int)shown,
                       (const char *)p + 1);
    }
    j->p = q;
    return 0;
}

static int tensor_member(jd *j, void *ctx, const uint8_t *k, size_t n)
{
    tstate *ts = ctx;
    uint32_t bit;

    if (KEY_IS(k, n, "name"))
        bit = TK_NAME;
    else if (KEY_IS(k, n, "datatype"))
        bit = TK_DATATYPE;
    else if (KEY_IS(k, n, "shape"))
        bit = TK_SHAPE;
    else if (KEY_IS(k, n, "parameters"))
        bit = TK_PARAMS;
    else if (KEY_IS(k, n, "data"))
        bit = TK_DATA;
    else
        return skip_value(j, 0);
    if (ts->seen & bit)
        return jd_fail(j, SELDON_EPARSE, "duplicate key");
    ts->seen |= bit;
    switch (bit) {
    case TK_NAME:
        return expect_string(j, &ts->t->name);
    case TK_DATATYPE:
        return datatype_parse(j, ts->t);
    case TK_SHAPE:
        return shape_parse(j, ts->t);
    case TK_PARAMS:
        return params_parse(j, &ts->t->params);
    default:
        if ((ts->seen & (TK_DATATYPE | TK_SHAPE)) == (TK_DATATYPE | TK_SHAPE))
            return data_parse(j, ts->t);
        ts->data_at = j->p;
        return skip_value(j, 0);
    }
}

/* Takes size bytes of the binary part as tensor t's data. */
static int binary_take(jd *j, sdn_tensor *t, uint64_t size)
{
    size_t esize = sdn_dt_size[t->datatype], left = j->bin_len - j->bin_off;
    const uint8_t *src = j->bin + j->bin_off;
    char shape[96];

    if (esize != 0 && size != t->count * esize) {
        shape_text(shape, sizeof(shape), t);
        return jd_fail(j, SELDON_ESHAPE,
                       "binary_data_size is %llu, but shape %s of %s takes %llu bytes",
                       (unsigned long long)size, shape, seldon_datatype_name(t->datatype),
                       (unsigned long long)(t->count * esize));
    }
    if (size > left)
        return jd_fail(j, SELDON_ESHAPE,
                       "binary_data_size %llu overruns the binary data (%zu bytes left)",
                       (unsigned long long)size, left);
    if (esize == 0) {
        if (sdn_bytes_check(src, (size_t)size, t->count, "") < 0) {
            path_of(j); /* the check is pure: again, with the path for its message */
            return sdn_bytes_check(src, (size_t)size, t->count, j->path);
        }
    }
    if (t->datatype == SELDON_DT_BOOL) {
        if (sdn_bool_check(src, (size_t)size, "") < 0) {
            path_of(j);
            return sdn_bool_check(src, (size_t)size, j->path);
        }
    }
    t->nbytes = (size_t)size;
    t->flags |= SDN_TENSOR_BINARY;
    if (size == 0) {
        t->data = NULL;
    } else if ((j->flags & SELDON_DECODE_BORROW) &&
               ((uintptr_t)src & (esize ? esize - 1 : 0)) == 0) {
        t->data = (uint8_t *)(uintptr_t)src;
        t->flags |= SDN_TENSOR_BORROWED;
    } else {
        t->data = sdn_arena_alloc(&j->msg->arena, (size_t)size);
        if (t->data == NULL)
            return jd_nomem(j);
        memcpy(t->data, src, (size_t)size);
    }
    j->bin_off += (size_t)size;
    return 0;
}

/* After a tensor's object closed: check what is required, then fetch deferred or binary data. */
static int tensor_finish(jd *j, tstate *ts)
{
    sdn_tensor *t = ts->t;
    const uint8_t *save;
    uint32_t i;
    uint32_t old;
    int rc;

    if (!(ts->seen & TK_NAME))
        return jd_fail(j, SELDON_EPARSE, "missing \"name\"");
    if (!(ts->seen & TK_DATATYPE))
        return jd_fail(j, SELDON_EPARSE, "missing \"datatype\"");
    if (!(ts->seen & TK_SHAPE))
        return jd_fail(j, SELDON_EPARSE, "missing \"shape\"");
    for (i = 0; i < t->params.n; i++) {
        const sdn_param *prm = &t->params.items[i];
        if (prm->name.len == SDN_JSON_BINARY_SIZE_LEN &&
            memcmp(prm->name.p, SDN_JSON_BINARY_SIZE, SDN_JSON_BINARY_SIZE_LEN) == 0) {
            uint64_t size = (uint64_t)prm->i;
            if (prm->type != SELDON_PARAM_INT64 || prm->i < 0) {
                path_push_key(j, (const uint8_t *)"parameters." SDN_JSON_BINARY_SIZE,
                              sizeof("parameters." SDN_JSON_BINARY_SIZE) - 1);
                return jd_fail(j, SELDON_EPARSE, "expected a non-negative integer");
            }
            if (ts->seen & TK_DATA)
                return jd_fail(j, SELDON_EPARSE,
                               "has both \"data\" and a " SDN_JSON_BINARY_SIZE " parameter");
            sdn_params_remove(&t->params, i);
            return binary_take(j, t, size);
        }
    }
    if (!(ts->seen & TK_DATA))
        return jd_fail(j, SELDON_EPARSE, "missing \"data\"");
    if (ts->data_at == NULL)
        return 0;
    save = j->p;
    j->p = ts->data_at;
    old = path_push_key(j, (const uint8_t *)"data", 4);
    rc = data_parse(j, t);
    if (rc < 0)
        return rc;
    path_pop(j, old);
    j->p = save;
    return 0;
}

/* Array elements that must be objects: tensors and requested outputs. */
static int expect_object(jd *j)
{
    if (j->p >= j->end)
        return jd_syntax(j, j->p, "an object");
    if (*j->p != '{')
        return jd_fail(j, SELDON_EPARSE, "expected an object");
    return 0;
}

static int tensor_elem(jd *j, void *ctx, uint64_t index)
{
    tstate ts = {NULL, 0, NULL};
    int rc;
    (void)ctx;
    (void)index;
    if ((rc = expect_object(j)) < 0)
        return rc;
    if (j->msg->ntensors >= SDN_MAX_TENSORS)
        return jd_fail(j, SELDON_ETOOBIG, "more than %d tensors", SDN_MAX_TENSORS);
    ts.t = sdn_msg_push_tensor(j->msg);
    if (ts.t == NULL)
        return jd_nomem(j);
    rc = obj_walk(j, tensor_member, &ts);
    if (rc < 0)
        return rc;
    return tensor_finish(j, &ts);
}

/* --- Requested outputs -------------------------------------------------- */

typedef struct ostate {
    sdn_output *o;
    uint32_t seen;
} ostate;

static int output_member(jd *j, void *ctx, const uint8_t *k, size_t n)
{
    ostate *os = ctx;
    uint32_t bit;

    if (KEY_IS(k, n, "name"))
        bit = TK_NAME;
    else if (KEY_IS(k, n, "parameters"))
        bit = TK_PARAMS;
    else
        return skip_value(j, 0);
    if (os->seen & bit)
        return jd_fail(j, SELDON_EPARSE, "duplicate key");
    os->seen |= bit;
    if (bit == TK_NAME)
        return expect_string(j, &os->o->name);
    return params_parse(j, &os->o->params);
}

static int output_elem(jd *j, void *ctx, uint64_t index)
{
    ostate os = {NULL, 0};
    int rc;
    (void)ctx;
    (void)index;
    if ((rc = expect_object(j)) < 0)
        return rc;
    if (j->msg->noutputs >= SDN_MAX_TENSORS)
        return jd_fail(j, SELDON_ETOOBIG, "more than %d requested outputs", SDN_MAX_TENSORS);
    os.o = sdn_msg_push_output(j->msg);
    if (os.o == NULL)
        return jd_nomem(j);
    rc = obj_walk(j, output_member, &os);
    if (rc < 0)
        return rc;
    if (!(os.seen & TK_NAME))
        return jd_fail(j, SELDON_EPARSE, "missing \"name\"");
    return 0;
}

/* --- The message -------------------------------------------------------- */

#define RK_ID 0x01u
#define RK_MODEL_NAME 0x02u
#define RK_MODEL_VERSION 0x04u
#define RK_PARAMS 0x08u
#define RK_INPUTS 0x10u
#define RK_OUTPUTS 0x20u

static int root_member(jd *j, void *ctx, const uint8_t *k, size_t n)
{
    uint32_t *seen = ctx, bit;
    seldon_msg *msg = j->msg;

    if (KEY_IS(k, n, "id"))
        bit = RK_ID;
    else if (KEY_IS(k, n, "model_name"))
        bit = RK_MODEL_NAME;
    else if (KEY_IS(k, n, "model_version"))
        bit = RK_MODEL_VERSION;
    else if (KEY_IS(k, n, "parameters"))
        bit = RK_PARAMS;
    else if (KEY_IS(k, n, "inputs") && msg->kind == SELDON_MSG_REQUEST)
        bit = RK_INPUTS;
    else if (KEY_IS(k, n, "outputs"))
        bit = RK_OUTPUTS;
    else
        return skip_value(j, 0);
    if (*seen & bit)
        return jd_fail(j, SELDON_EPARSE, "duplicate key");
    *seen |= bit;
    switch (bit) {
    case RK_ID:
        return expect_string(j, &msg->id);
    case RK_MODEL_NAME:
        return expect_string(j, &msg->model_name);
    case RK_MODEL_VERSION:
        return expect_string(j, &msg->model_version);
    case RK_PARAMS:
        return params_parse(j, &msg->params);
    case RK_INPUTS:
        return arr_walk(j, tensor_elem, NULL);
    default:
        return arr_walk(j, msg->kind == SELDON_MSG_REQUEST ? output_elem : tensor_elem, NULL);
    }
}

static int decode(jd *j)
{
    const uint8_t *p = ws(j->base, j->end);
    uint32_t seen = 0;
    int rc;

    if (p >= j->end)
        return jd_syntax(j, p, "an object");
    if (*p != '{')
        return jd_fail(j, SELDON_EPARSE, "expected an object");
    j->p = p;
    rc = obj_walk(j, root_member, &seen);
    if (rc < 0)
        return rc;
    if (j->msg->kind == SELDON_MSG_REQUEST && !(seen & RK_INPUTS))
        return jd_fail(j, SELDON_EPARSE, "missing \"inputs\"");
    if (j->msg->kind == SELDON_MSG_RESPONSE && !(seen & RK_OUTPUTS))
        return jd_fail(j, SELDON_EPARSE, "missing \"outputs\"");
    p = ws(j->p, j->end);
    if (p != j->end)
        return jd_syntax(j, p, "the end of the JSON");
    if (j->bin_off != j->bin_len)
        return jd_fail(j, SELDON_ESHAPE,
                       "%zu bytes of binary data left over after the binary tensors",
                       j->bin_len - j->bin_off);
    return 0;
}

int seldon_msg_decode_json(seldon_msg *msg, const void *body, size_t len, size_t json_len,
                           uint32_t flags)
{
    jd j;
    int rc;

    if (msg == NULL || (body == NULL && len != 0))
        return sdn_error(SELDON_EINVAL, "decode_json: NULL argument");
    sdn_msg_clear(msg);
    if (json_len > len)
        return sdn_error(SELDON_EPARSE,
                         "Inference-Header-Content-Length: %zu exceeds the body's %zu bytes",
                         json_len, len);
    memset(&j, 0, offsetof(jd, idx));
    j.base = body != NULL ? body : (const void *)jd_nothing;
    j.end = j.base + (json_len ? json_len : len);
    j.msg = msg;
    j.flags = flags;
    j.bin = j.end;
    j.bin_len = len - (size_t)(j.end - j.base);
    rc = decode(&j);
    if (rc < 0)
        sdn_msg_clear(msg);
    return rc;
}
