/*
 * JSON strings: validation, unescaping and UTF-8, shared by every JSON
 * reader in libseldon (the OIP codec's streaming decoder and the small
 * document model), so that both accept exactly the same strings.
 */
#ifndef SDN_JSONSTR_H
#define SDN_JSONSTR_H

#include <stddef.h>
#include <stdint.h>

/*
 * The length of the well-formed UTF-8 sequence that starts at p (whose first byte is >= 0x80),
 * or 0 when it is ill-formed: overlong forms, UTF-16 surrogates and code points past U+10FFFF
 * are rejected, as RFC 3629 requires, so that what we accept is what any peer accepts.
 */
static inline size_t sdn_utf8_seq(const uint8_t *p, const uint8_t *end)
{
    size_t avail = (size_t)(end - p);
    uint8_t c = p[0], lo = 0x80, hi = 0xBF;

    if (c < 0xC2)
        return 0;
    if (c < 0xE0)
        return avail >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c < 0xF0) {
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
        return avail >= 3 && p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 ? 3 : 0;
    }
    if (c < 0xF5) {
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
        return avail >= 4 && p[1] >= lo && p[1] <= hi && (p[2] & 0xC0) == 0x80 &&
                       (p[3] & 0xC0) == 0x80
                   ? 4
                   : 0;
    }
    return 0;
}

/*
 * Makes the C string s (in a buffer of cap bytes) valid UTF-8 in place: each
 * byte that does not start a well-formed sequence becomes U+FFFD, and the
 * result is cut at a character boundary if it no longer fits. Error messages
 * go through it, since they quote what clients sent.
 */
void sdn_utf8_repair(char *s, size_t cap);

#define SDN_JSTR_TRUNCATED (-1) /* the input ended inside the string; *bad is the end */
#define SDN_JSTR_INVALID (-2)   /* *bad is the offending byte, why says what is wrong */

/*
 * Validates the string whose body starts at p (just past the opening quote):
 * escapes, surrogate pairs, UTF-8, no raw control characters. On success
 * returns 0, sets *endp past the closing quote, *dlen to the decoded length
 * and *esc when there are escapes to decode.
 */
int sdn_jstr_scan(const uint8_t *p, const uint8_t *end, const uint8_t **endp, size_t *dlen,
                  int *esc, const uint8_t **bad, char *why, size_t why_size);

/* Decodes the body p..q of a string that sdn_jstr_scan() accepted into d (*dlen bytes). */
void sdn_jstr_unescape(uint8_t *d, const uint8_t *p, const uint8_t *q);

#endif
