/*
 * Internals shared by the REST JSON decoder and encoder (json_decode.c, json_encode.c).
 */
#ifndef SDN_OIP_JSON_H
#define SDN_OIP_JSON_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define SDN_JSON_INLINE static inline __attribute__((always_inline))
#define SDN_JSON_COLD __attribute__((cold, noinline))
#else
#define SDN_JSON_INLINE static inline
#define SDN_JSON_COLD
#endif

/* The binary extension's per-tensor parameter; a transport detail, never kept in a message. */
#define SDN_JSON_BINARY_SIZE "binary_data_size"
#define SDN_JSON_BINARY_SIZE_LEN 16

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

#endif
