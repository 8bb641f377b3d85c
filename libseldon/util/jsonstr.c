/* JSON strings: see jsonstr.h. */
#include <stdio.h>
#include <string.h>

#include "jsonstr.h"

#if defined(__GNUC__)
#define JSTR_INLINE static inline __attribute__((always_inline))
#define JSTR_COLD __attribute__((cold, noinline))
#else
#define JSTR_INLINE static inline
#define JSTR_COLD
#endif

static JSTR_COLD int truncated(const uint8_t **bad, const uint8_t *end)
{
    *bad = end;
    return SDN_JSTR_TRUNCATED;
}

static JSTR_COLD int invalid(const uint8_t **bad, const uint8_t *at, char *why, size_t why_size,
                             const char *reason)
{
    *bad = at;
    snprintf(why, why_size, "%s", reason);
    return SDN_JSTR_INVALID;
}

static JSTR_COLD int lone_surrogate(const uint8_t **bad, const uint8_t *at, char *why,
                                    size_t why_size, uint32_t cp)
{
    *bad = at;
    snprintf(why, why_size, "lone surrogate \\u%04X", (unsigned)cp);
    return SDN_JSTR_INVALID;
}

static JSTR_COLD int control_char(const uint8_t **bad, const uint8_t *at, char *why,
                                  size_t why_size)
{
    *bad = at;
    snprintf(why, why_size, "control character 0x%02x in a string must be escaped", *at);
    return SDN_JSTR_INVALID;
}

static int hex4(const uint8_t *p, uint32_t *out)
{
    uint32_t v = 0;
    int i;
    for (i = 0; i < 4; i++) {
        uint32_t c = p[i], d;
        if (c - '0' < 10)
            d = c - '0';
        else if ((c | 0x20) - 'a' < 6)
            d = (c | 0x20) - 'a' + 10;
        else
            return 0;
        v = v << 4 | d;
    }
    *out = v;
    return 1;
}

/* What the escape \c stands for, or -1 (\u aside). */
static int unescape_char(uint8_t c)
{
    /* Pairs: the escape letter at an even index, its meaning after it. */
    static const char map[] = "\"\"\\\\//b\bf\fn\nr\rt\t";
    const char *m = memchr(map, c, sizeof(map) - 1);
    return m != NULL && (m - map) % 2 == 0 ? (uint8_t)m[1] : -1;
}

static size_t utf8_len(uint32_t cp)
{
    return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
}

/* Eight bytes at a time: any byte that is < 0x20, '"', '\\' or >= 0x80 needs a closer look. */
JSTR_INLINE int plain8(const uint8_t *p)
{
    const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
    uint64_t v, q, b;
    memcpy(&v, p, 8);
    q = v ^ (ones * '"');
    b = v ^ (ones * '\\');
    return ((v | ((v - ones * 0x20) & ~v) | ((q - ones) & ~q) | ((b - ones) & ~b)) & highs) == 0;
}

/*
 * Validates the string whose body starts at p (just past the opening quote): escapes,
 * surrogate pairs, UTF-8, no raw control characters. *endp is set past the closing quote,
 * *dlen to the decoded length, *esc when there are escapes to decode.
 */
int sdn_jstr_scan(const uint8_t *p, const uint8_t *end, const uint8_t **endp, size_t *dlen,
                  int *esc, const uint8_t **bad, char *why, size_t why_size)
{
    const uint8_t *start = p;
    size_t shrink = 0; /* escapes never decode longer than they are written */
    int e = 0;

    for (;;) {
        uint8_t c;
        while (end - p >= 8 && plain8(p))
            p += 8;
        while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
            p++;
        if (p >= end)
            return truncated(bad, end);
        c = *p;
        if (c == '"')
            break;
        if (c == '\\') {
            uint32_t cp, lo;
            e = 1;
            if (end - p < 2)
                return truncated(bad, end);
            if (p[1] != 'u') {
                if (unescape_char(p[1]) < 0)
                    return invalid(bad, p, why, why_size, "invalid escape in a string");
                p += 2;
                shrink += 1;
            } else {
                if (end - p < 6 || !hex4(p + 2, &cp))
                    return end - p < 6 ? truncated(bad, end)
                                       : invalid(bad, p, why, why_size,
                                                 "\\u needs four hex digits");
                if (cp >= 0xDC00 && cp < 0xE000)
                    return lone_surrogate(bad, p, why, why_size, cp);
                if (cp >= 0xD800 && cp < 0xDC00) {
                    /* A pair cut short by the end of input is a truncation, not a lone half. */
                    if (end - p < 12 && (end - p == 6 || p[6] == '\\'))
                        return truncated(bad, end);
                    if (end - p < 12 || p[6] != '\\' || p[7] != 'u' || !hex4(p + 8, &lo) ||
                        lo < 0xDC00 || lo >= 0xE000)
                        return lone_surrogate(bad, p, why, why_size, cp);
                    p += 12;
                    shrink += 8;
                } else {
                    p += 6;
                    shrink += 6 - utf8_len(cp);
                }
            }
        } else if (c < 0x20) {
            return control_char(bad, p, why, why_size);
        } else {
            size_t n = sdn_utf8_seq(p, end);
            if (n == 0)
                return invalid(bad, p, why, why_size, "invalid UTF-8 in a string");
            p += n;
        }
    }
    *dlen = (size_t)(p - start) - shrink;
    *endp = p + 1;
    *esc = e;
    return 0;
}

static uint8_t *put_utf8(uint8_t *d, uint32_t cp)
{
    if (cp < 0x80) {
        *d++ = (uint8_t)cp;
    } else if (cp < 0x800) {
        *d++ = (uint8_t)(0xC0 | cp >> 6);
        *d++ = (uint8_t)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *d++ = (uint8_t)(0xE0 | cp >> 12);
        *d++ = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
        *d++ = (uint8_t)(0x80 | (cp & 0x3F));
    } else {
        *d++ = (uint8_t)(0xF0 | cp >> 18);
        *d++ = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
        *d++ = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
        *d++ = (uint8_t)(0x80 | (cp & 0x3F));
    }
    return d;
}

void sdn_jstr_unescape(uint8_t *d, const uint8_t *p, const uint8_t *q)
{
    while (p < q) {
        const uint8_t *bs = memchr(p, '\\', (size_t)(q - p));
        size_t run = (size_t)((bs ? bs : q) - p);
        uint32_t cp = 0, lo = 0;

        memcpy(d, p, run);
        d += run;
        p += run;
        if (bs == NULL)
            break;
        if (p[1] != 'u') {
            *d++ = (uint8_t)unescape_char(p[1]);
            p += 2;
            continue;
        }
        hex4(p + 2, &cp);
        if (cp >= 0xD800 && cp < 0xDC00) {
            hex4(p + 8, &lo);
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            p += 6;
        }
        d = put_utf8(d, cp);
        p += 6;
    }
}


void sdn_utf8_repair(char *s, size_t cap)
{
    char tmp[1024];
    const uint8_t *p = (const uint8_t *)s, *end;
    size_t len = strlen(s), out = 0;
    end = p + len;
    while (p < end && (*p < 0x80 || sdn_utf8_seq(p, end) != 0))
        p += *p < 0x80 ? 1 : sdn_utf8_seq(p, end);
    if (p == end || cap == 0)
        return; /* the common case: already valid */
    if (cap > sizeof(tmp))
        cap = sizeof(tmp);
    for (p = (const uint8_t *)s; p < end;) {
        size_t n = *p < 0x80 ? 1 : sdn_utf8_seq(p, end);
        const char *src = n ? (const char *)p : "\xEF\xBF\xBD";
        size_t w = n ? n : 3;
        if (out + w >= cap)
            break;
        memcpy(tmp + out, src, w);
        out += w;
        p += n ? n : 1;
    }
    memcpy(s, tmp, out);
    s[out] = '\0';
}
