/* Exact conversions between IEEE binary32/binary64 and decimal text, and binary16 helpers.
 *
 * Formatting gives the shortest decimal that reads back to the same value (Schubfach-style, with a
 * 128-bit power-of-ten table); parsing is correctly rounded like strtof/strtod. Neither depends
 * on the locale or on any global state, so both are safe to call from any thread. */
#ifndef SDN_UTIL_FPCONV_H
#define SDN_UTIL_FPCONV_H

#include <stddef.h>
#include <stdint.h>

#define SDN_FMT_F32_MAX 24 /* buffer size enough for any sdn_fmt_f32 output */
#define SDN_FMT_F64_MAX 32

/* Writes the shortest decimal that reads back (with correct rounding) to exactly v. Returns the
 * length written; no NUL. Ties between equally short candidates go to the one nearest v.
 * Format follows Python's float repr: fixed notation when the decimal exponent is in [-4, 16),
 * e.g. "0.0001", "123.0", "1.5", "-0.0"; otherwise scientific with at least 2 exponent digits,
 * e.g. "1e-05", "1.5e+16", "3.4028235e+38". Integral values in fixed notation carry ".0".
 * NaN -> "NaN" (whatever its sign or payload), +inf -> "Infinity", -inf -> "-Infinity".
 * The whole buffer (SDN_FMT_F32_MAX / SDN_FMT_F64_MAX bytes) may be used as scratch. */
size_t sdn_fmt_f32(char *buf, float v);  /* at most 9 significant digits */
size_t sdn_fmt_f64(char *buf, double v); /* at most 17 significant digits */

enum { SDN_NUM_OK = 0, SDN_NUM_SYNTAX = -1, SDN_NUM_RANGE = -2 };

/* Parse one JSON number starting at p; end bounds the input (no NUL needed, nothing at or past
 * end is read). Accepts -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? and the tokens NaN,
 * Infinity, -Infinity. The number ends at the first byte that cannot extend it; the caller
 * checks what follows. A digit right after a leading "0" is a syntax error ("01").
 *
 * SDN_NUM_OK: *out is the correctly rounded value (round-half-even, as strtof/strtod), -0 kept;
 *     values below the smallest subnormal round to (signed) zero. *endp = first byte after.
 * SDN_NUM_RANGE: the finite literal rounds past the largest finite value (1e39 for f32);
 *     *out = signed infinity, *endp = first byte after the literal.
 * SDN_NUM_SYNTAX: *out is untouched and *endp = p. */
int sdn_parse_f32(const char *p, const char *end, const char **endp, float *out);
int sdn_parse_f64(const char *p, const char *end, const char **endp, double *out);

/* IEEE binary16 stored in uint16_t. Round-half-even; overflow gives infinity; NaN stays NaN
 * (quieted, top payload bits kept); sign of zero kept. f16 -> f32 is exact. */
uint16_t sdn_f32_to_f16(float f);
float sdn_f16_to_f32(uint16_t h);

#endif
