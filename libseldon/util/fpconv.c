/* Float <-> decimal text conversion. See fpconv.h for the contract.
 *
 * Formatting is a Schubfach-style shortest-digit search: the rounding interval of v is scaled by
 * a power of ten chosen so that it is between 1 and 10 units wide, which leaves at most one
 * multiple of ten and at most two candidate integers next to v to decide between. The scaling
 * uses one 128-bit table entry and three 64x128-bit products (64x64 for binary32, whose table
 * row is looked up by exponent); tools/gen_pow10.py --verify checks that the products decide
 * every comparison exactly (see sdn_rop128).
 *
 * Parsing takes the first 19 significant digits into a 64-bit integer w so that the value is
 * w * 10^e10, then tries in turn: Clinger's fast path (w and 10^|e10| exact doubles, so one
 * IEEE multiply or divide rounds correctly), a 64x128-bit product with a proven error bound
 * that gives up when the bound leaves the rounding undecided, and at last strtod/strtof on a
 * compact copy of the digits. */
#include "util/fpconv.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "util/fpconv_table.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "fpconv.c reads digit blocks as little-endian words"
#endif

__extension__ typedef unsigned __int128 sdn_u128;

/* floor(x / 2^s) for x >= -2^30 without right-shifting a negative number. */
static inline int sdn_floor_shr(int x, int s)
{
    return (int)((uint32_t)(x + (1 << 30)) >> s) - (1 << (30 - s));
}

/* floor(log2(10^e)) for |e| <= 400 and floor(log10(2^q)), floor(log10(3/4 * 2^q)) for
 * |q| <= 1200; the constants are checked exactly over those ranges by tools/gen_pow10.py. */
static inline int sdn_flog2_pow10(int e)
{
    return sdn_floor_shr(e * 1741647, 19);
}

static inline int sdn_flog10_pow2(int q)
{
    return sdn_floor_shr(q * 315653, 20);
}

static inline int sdn_flog10_34_pow2(int q)
{
    return sdn_floor_shr(q * 315653 - 131237, 20);
}

/* ---------------------------------------------------------------------------------------------
 * Formatting
 */

/* With g = SDN_POW10[e] ~ 10^e * 2^(127 - L) (rounded up) and cp = x << h, h = q + L + 1, the
 * true scaled bound V = x * 2^q * 10^e equals P / 2^128, P = cp * g, up to an overshoot below
 * cp * 2^-128. sdn_rop128 turns P into floor(V) with its lowest bit set when V has a fraction
 * ("round to odd"), which keeps every comparison against an even integer exact. Two facts make
 * the 192-bit product enough, both checked for all exponents by gen_pow10.py --verify:
 *   - a nonzero fraction of V is at least cp * 2^-128, so "low 128 bits >= cp" detects it, while
 *     an integral V leaves only the overshoot (< cp) there;
 *   - a fraction is never so close to 1 that the overshoot carries into the integer part.
 * For binary32 the entry is rounded up to its top 64 bits and P = cp * g64 is taken over 2^64;
 * the script checks the same two facts for that over binary32's exponents. */
static inline uint64_t sdn_rop128(const uint64_t g[2], uint64_t cp)
{
    sdn_u128 lo = (sdn_u128)g[1] * cp;
    sdn_u128 hi = (sdn_u128)g[0] * cp;
    sdn_u128 mid = (lo >> 64) + (uint64_t)hi;
    uint64_t top = (uint64_t)(hi >> 64) + (uint64_t)(mid >> 64);
    return top | ((uint64_t)mid != 0 || (uint64_t)lo >= cp);
}

static inline uint64_t sdn_rop64(uint64_t g, uint64_t cp)
{
    sdn_u128 p = (sdn_u128)g * cp;
    return (uint64_t)(p >> 64) | ((uint64_t)p >= cp);
}

/* The shortest decimal significand in the scaled interval [vbl, vbr] around vb (sdn_rop128
 * values, units of 1/4), nearest vb among the shortest. odd: c is odd. */
static inline uint64_t sdn_pick(uint64_t vbl, uint64_t vb, uint64_t vbr, uint64_t odd)
{
    /* Round-half-even reading back includes the bounds exactly when c is even. */
    uint64_t lo = vbl + odd, hi = vbr - odd;

    /* The integers in the interval nearest v are s and s + 1, and one of them is inside; if
     * both are, take the nearer (v against 4s + 2; ties to even). Without a multiple of ten in
     * the interval, every integer in it has the same length, so this is the result. Selects
     * rather than branches: which case applies is close to random. */
    uint64_t s = vb >> 2;
    uint64_t t = s + 1;
    bool uin = lo <= s << 2;
    bool win = t << 2 <= hi;
    uint64_t mid = (s << 2) + 2;
    bool pick_t = (!uin) | (win & ((vb > mid) | ((vb == mid) & (bool)(s & 1))));
    uint64_t d = pick_t ? t : s;
    /* A multiple of ten in the interval is shorter than any other candidate; there is at most
     * one, and it is next to s. */
    uint64_t sp10 = s / 10 * 10;
    uint64_t tp10 = sp10 + 10;
    d = lo <= sp10 << 2 ? sp10 : d;
    d = tp10 << 2 <= hi ? tp10 : d;
    return d;
}

/* v = c * 2^q (c > 0). Returns the shortest decimal significand d in the rounding interval of v
 * (nearest to v among the shortest) and sets *k10 so that the decimal is d * 10^k10. d may
 * carry trailing zeros. "irregular" means the gap below v is half the gap above (v a power of
 * two whose predecessor has a smaller exponent). f32 selects the 64-bit products. */
__attribute__((always_inline)) static inline uint64_t
sdn_shortest(uint64_t c, int q, bool irregular, bool f32, int *k10)
{
    /* Scaling by 10^-k makes the interval width (2^q, or 3/4 * 2^q when irregular) fall in
     * [1, 10) units, so it holds at least one integer and at most one multiple of 10. */
    int k = irregular ? sdn_flog10_34_pow2(q) : sdn_flog10_pow2(q);
    int h = q + sdn_flog2_pow10(-k) + 1;
    const uint64_t *g = SDN_POW10[-k - SDN_POW10_MIN];
    *k10 = k;

    /* Interval bounds and v itself in units of 2^(q-2), then scaled: 4 * value * 10^-k. */
    uint64_t cb = c << 2;
    uint64_t cbl = cb - 2 + irregular;
    uint64_t cbr = cb + 2;
    uint64_t vbl, vb, vbr;
    if (f32) {
        uint64_t g64 = g[0] + (g[1] != 0);
        vbl = sdn_rop64(g64, cbl << h);
        vb = sdn_rop64(g64, cb << h);
        vbr = sdn_rop64(g64, cbr << h);
    } else {
        vbl = sdn_rop128(g, cbl << h);
        vb = sdn_rop128(g, cb << h);
        vbr = sdn_rop128(g, cbr << h);
    }
    return sdn_pick(vbl, vb, vbr, c & 1);
}

static const char SDN_DIGITS2[201] = "00010203040506070809"
                                     "10111213141516171819"
                                     "20212223242526272829"
                                     "30313233343536373839"
                                     "40414243444546474849"
                                     "50515253545556575859"
                                     "60616263646566676869"
                                     "70717273747576777879"
                                     "80818283848586878889"
                                     "90919293949596979899";

static const uint64_t SDN_POW10_U64[20] = {1u,
                                           10u,
                                           100u,
                                           1000u,
                                           10000u,
                                           100000u,
                                           1000000u,
                                           10000000u,
                                           100000000u,
                                           1000000000u,
                                           10000000000u,
                                           100000000000u,
                                           1000000000000u,
                                           10000000000000u,
                                           100000000000000u,
                                           1000000000000000u,
                                           10000000000000000u,
                                           100000000000000000u,
                                           1000000000000000000u,
                                           10000000000000000000u};

static inline void sdn_put2(char *p, uint32_t v)
{
    memcpy(p, &SDN_DIGITS2[2 * v], 2);
}

/* Number of decimal digits of d > 0. */
static inline int sdn_ndigits(uint64_t d)
{
    int bits = 64 - __builtin_clzll(d);
    int n = (bits * 1233) >> 12; /* floor(bits * log10(2)): 10^n <= 2^bits */
    return n + (d >= SDN_POW10_U64[n]);
}

/* v < 10^8 as eight digit values 0..9 in the bytes of a word, most significant digit in the
 * lowest byte (first in memory once stored). Computed in registers: the digits never take a
 * trip through memory, where reloading them across several small stores would stall.
 * Split into 4-digit halves in 32-bit lanes, then 2-digit quarters in 16-bit lanes, then single
 * digits, dividing all lanes at once by multiply-shift: y / 100 == (y * 5243) >> 19 for
 * y < 10^4 and y / 10 == (y * 103) >> 10 for y < 100; no lane's product reaches the next. */
static inline uint64_t sdn_bcd8(uint32_t v)
{
    uint64_t x = (v / 10000) | (uint64_t)(v % 10000) << 32;
    uint64_t q = ((x * 5243) >> 19) & UINT64_C(0x0000007F0000007F);
    x = q | (x - q * 100) << 16;
    q = ((x * 103) >> 10) & UINT64_C(0x000F000F000F000F);
    return q | (x - q * 10) << 8;
}

/* Zero digits at the end of a sdn_bcd8 word. */
static inline int sdn_bcd8_tz(uint64_t r)
{
    return r ? __builtin_clzll(r) >> 3 : 8;
}

static inline void sdn_st8(char *p, uint64_t w)
{
    memcpy(p, &w, 8);
}

#define SDN_ASCII0 UINT64_C(0x3030303030303030)

/* Writes the decimal whose significant digits are c0 followed by the 16 digits of r1, r2
 * (sdn_bcd8 words; digits past nd are zeros) and whose leading digit has exponent e. Whole
 * words are stored and later ones may overwrite the excess; the worst cases, with p at most
 * buf + 1, are noted so they stay inside SDN_FMT_F32_MAX (nd <= 9) / SDN_FMT_F64_MAX. */
static inline size_t sdn_layout(char *buf, bool neg, uint32_t c0, uint64_t r1, uint64_t r2, int nd,
                                int e)
{
    uint64_t a1 = r1 | SDN_ASCII0, a2 = r2 | SDN_ASCII0;
    char c = (char)('0' + c0);
    char *p = buf;
    *p = '-';
    p += neg;
    if (e >= -4 && e < 16) {
        if (e >= nd - 1) {
            /* Integral: 17 digit positions, zeros past nd, ".0" after e + 1 (p + 18). */
            p[0] = c;
            sdn_st8(p + 1, a1);
            sdn_st8(p + 9, a2);
            memcpy(p + e + 1, ".0", 2);
            return (size_t)(p + e + 3 - buf);
        }
        if (e >= 0) {
            /* The digits after the first e + 1 move one place right for the point. e < nd - 1,
             * so e <= 7 for binary32 (p + 17) and e <= 15 for binary64 (p + 25); a fraction of
             * more than 8 digits needs e <= 7 (p + 25). */
            sdn_u128 w = a1 | (sdn_u128)a2 << 64;
            sdn_u128 f = w >> (8 * e);
            p[0] = c;
            sdn_st8(p + 1, a1);
            sdn_st8(p + 9, a2);
            p[e + 1] = '.';
            sdn_st8(p + e + 2, (uint64_t)f);
            if (nd - e - 1 > 8)
                sdn_st8(p + e + 10, (uint64_t)(f >> 64));
            return (size_t)(p + nd + 1 - buf);
        }
        /* "0.", -e - 1 zeros, the digits (p + 5 + 17). */
        memcpy(p, "0.000000", 8);
        p += 1 - e;
        p[0] = c;
        sdn_st8(p + 1, a1);
        sdn_st8(p + 9, a2);
        return (size_t)(p + nd - buf);
    }
    /* Scientific: d[.ddd]e<sign><two or three digits> (digits to p + 18, then 5 bytes). */
    p[0] = c;
    p[1] = '.';
    sdn_st8(p + 2, a1);
    sdn_st8(p + 10, a2);
    p += nd == 1 ? 1 : nd + 1;
    p[0] = 'e';
    p[1] = e < 0 ? '-' : '+';
    unsigned x = (unsigned)(e < 0 ? -e : e);
    if (x >= 100) {
        p[2] = (char)('0' + x / 100);
        x %= 100;
        p++;
    }
    sdn_put2(p + 2, x);
    return (size_t)(p + 4 - buf);
}

static size_t sdn_special(char *buf, bool neg, bool nan)
{
    if (nan) {
        memcpy(buf, "NaN", 3);
        return 3;
    }
    if (neg) {
        memcpy(buf, "-Infinity", 9);
        return 9;
    }
    memcpy(buf, "Infinity", 8);
    return 8;
}

static size_t sdn_zero(char *buf, bool neg)
{
    buf[0] = '-';
    memcpy(buf + neg, "0.0", 3);
    return 3u + neg;
}

size_t sdn_fmt_f64(char *buf, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    bool neg = (bits >> 63) != 0;
    unsigned be = (unsigned)(bits >> 52) & 0x7ffu;
    uint64_t t = bits & ((UINT64_C(1) << 52) - 1);
    if (be == 0x7ffu)
        return sdn_special(buf, neg, t != 0);
    if (be == 0 && t == 0)
        return sdn_zero(buf, neg);
    uint64_t c = be ? t | UINT64_C(1) << 52 : t;
    int q = be ? (int)be - 1075 : -1074;
    int k10;
    uint64_t d = sdn_shortest(c, q, t == 0 && be > 1, false, &k10);

    /* d < 10^17; pad it to exactly 17 digits, whose trailing zeros then include d's own. */
    int n = sdn_ndigits(d);
    uint64_t m = d * SDN_POW10_U64[17 - n];
    uint64_t rest = m % UINT64_C(10000000000000000);
    uint64_t r1 = sdn_bcd8((uint32_t)(rest / 100000000u));
    uint64_t r2 = sdn_bcd8((uint32_t)(rest % 100000000u));
    int tz = r2 ? sdn_bcd8_tz(r2) : 8 + sdn_bcd8_tz(r1);
    uint32_t c0 = (uint32_t)(m / UINT64_C(10000000000000000));
    return sdn_layout(buf, neg, c0, r1, r2, 17 - tz, k10 + n - 1);
}

size_t sdn_fmt_f32(char *buf, float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    bool neg = (bits >> 31) != 0;
    unsigned be = (bits >> 23) & 0xffu;
    uint32_t t = bits & ((UINT32_C(1) << 23) - 1);
    if (be == 0xffu)
        return sdn_special(buf, neg, t != 0);
    if (be == 0 && t == 0)
        return sdn_zero(buf, neg);
    uint64_t c = be ? t | UINT32_C(1) << 23 : t;
    int k10;
    uint64_t d;
    if (t == 0 && be > 1) {
        d = sdn_shortest(c, (int)be - 150, true, true, &k10);
    } else {
        /* Regular spacing: scale, k and h come from one table row instead of a chain of
         * multiplications (the same values sdn_shortest computes). */
        const struct sdn_f32_scale *sc = &SDN_F32_SCALE[be];
        uint64_t cb = c << 2;
        int h = sc->h;
        d = sdn_pick(sdn_rop64(sc->g, (cb - 2) << h), sdn_rop64(sc->g, cb << h),
                     sdn_rop64(sc->g, (cb + 2) << h), c & 1);
        k10 = sc->k;
    }

    /* d < 10^9; padded to exactly 9 digits. */
    int n = sdn_ndigits(d);
    uint32_t m = (uint32_t)(d * SDN_POW10_U64[9 - n]);
    uint64_t r1 = sdn_bcd8(m % 100000000u);
    return sdn_layout(buf, neg, m / 100000000u, r1, 0, 9 - sdn_bcd8_tz(r1), k10 + n - 1);
}

/* ---------------------------------------------------------------------------------------------
 * Parsing
 */

enum { SDN_KIND_FINITE, SDN_KIND_INF, SDN_KIND_NAN };

struct sdn_num {
    uint64_t w;      /* first nd (<= 19) significant digits */
    int64_t e10;     /* value = w * 10^e10, or in (w, w + 1) * 10^e10 when more */
    int nd;          /* digits in w */
    bool more;       /* nonzero digits were dropped after the 19th */
    bool neg;        /* leading '-' */
    int kind;        /* SDN_KIND_* */
    const char *end; /* first byte after the literal */
};

static inline bool sdn_isdigit(char c)
{
    return (unsigned)((unsigned char)c - '0') <= 9;
}

static inline uint64_t sdn_load8(const char *s)
{
    uint64_t v;
    memcpy(&v, s, 8);
    return v;
}

#define SDN_HI_NIBBLES UINT64_C(0xF0F0F0F0F0F0F0F0)

/* How many of the 8 bytes of v (a little-endian load: first byte lowest) lead with ASCII digits,
 * and their value. A byte is a digit when its high nibble is 3 and adding 6 does not carry out
 * of its low nibble. Carries and borrows between bytes only run towards later bytes, so the
 * first non-digit and everything before it are judged correctly. Runs are parsed without a
 * loop per digit: a branch per digit mispredicts on every change of length. */
static inline unsigned sdn_run8(uint64_t v, uint64_t *val)
{
    uint64_t bad = ((v & SDN_HI_NIBBLES) ^ SDN_ASCII0) |
                   (((v + UINT64_C(0x0606060606060606)) & SDN_HI_NIBBLES) ^ SDN_ASCII0);
    unsigned k = bad ? (unsigned)__builtin_ctzll(bad) >> 3 : 8;
    /* Shift the k digits to the top so the bytes below read as leading zeros; then combine
     * neighbouring bytes, 16-bit lanes and 32-bit lanes (99, 9999 fit their lanes). */
    uint64_t x = k ? (v - SDN_ASCII0) << (64 - 8 * k) : 0;
    x = (x * 10 + (x >> 8)) & UINT64_C(0x00FF00FF00FF00FF);
    x = (x * 100 + (x >> 16)) & UINT64_C(0x0000FFFF0000FFFF);
    *val = (x * 10000 + (x >> 32)) & UINT64_C(0xFFFFFFFF);
    return k;
}

/* A run of digits (integer or fraction part) into n; frac: each kept digit lowers e10. p is the
 * start of the literal: with 8 bytes between p and end, the last few bytes before end are read
 * as the top of the word ending at end, shifted down (zero bytes then stop the run). */
static inline const char *sdn_digits(const char *s, const char *p, const char *end,
                                     struct sdn_num *n, int frac)
{
    while (n->nd <= 11) {
        uint64_t v, val;
        if (end - s >= 8)
            v = sdn_load8(s);
        else if (end - p >= 8 && s < end)
            v = sdn_load8(end - 8) >> (8 * (8 - (end - s)));
        else
            break;
        unsigned k = sdn_run8(v, &val);
        n->w = n->w * SDN_POW10_U64[k] + val;
        n->nd += (int)k;
        n->e10 -= frac * (int)k;
        s += k;
        if (k < 8)
            return s;
    }
    for (; s < end && sdn_isdigit(*s); s++) {
        unsigned dv = (unsigned)(*s - '0');
        if (n->nd < 19) {
            n->w = n->w * 10 + dv;
            n->nd++;
            n->e10 -= frac;
        } else {
            n->e10 += 1 - frac;
            n->more |= dv != 0;
        }
    }
    return s;
}

__attribute__((always_inline)) static inline int sdn_scan(const char *p, const char *end,
                                                          struct sdn_num *n)
{
    const char *s = p;
    n->w = 0;
    n->e10 = 0;
    n->nd = 0;
    n->more = false;
    n->kind = SDN_KIND_FINITE;
    n->neg = s < end && *s == '-';
    s += n->neg;
    if (s == end)
        return SDN_NUM_SYNTAX;
    if (!sdn_isdigit(*s)) {
        if (end - s >= 8 && memcmp(s, "Infinity", 8) == 0) {
            n->kind = SDN_KIND_INF;
            n->end = s + 8;
            return SDN_NUM_OK;
        }
        if (!n->neg && end - s >= 3 && memcmp(s, "NaN", 3) == 0) {
            n->kind = SDN_KIND_NAN;
            n->end = s + 3;
            return SDN_NUM_OK;
        }
        return SDN_NUM_SYNTAX;
    }
    const char *int_start = s;
    s = sdn_digits(s, p, end, n, 0);
    if (*int_start == '0' && s - int_start > 1)
        return SDN_NUM_SYNTAX;
    n->nd = n->w ? n->nd : 0; /* a lone "0" is not a significant digit */
    if (s < end && *s == '.') {
        s++;
        if (s == end || !sdn_isdigit(*s))
            return SDN_NUM_SYNTAX;
        /* Zeros before the first significant digit only move the decimal point; counted in
         * blocks of 8 without a test on whether there are any. */
        bool lead = n->nd == 0;
        while (end - s >= 8) {
            uint64_t z = sdn_load8(s) ^ SDN_ASCII0;
            unsigned k = (z ? (unsigned)__builtin_ctzll(z) >> 3 : 8) & -(unsigned)lead;
            s += k;
            n->e10 -= k;
            if (k < 8)
                break;
        }
        for (; lead && s < end && *s == '0'; s++)
            n->e10--;
        s = sdn_digits(s, p, end, n, 1);
    }
    if (s < end && (*s | 0x20) == 'e') {
        s++;
        bool eneg = false;
        if (s < end && (*s == '+' || *s == '-')) {
            eneg = *s == '-';
            s++;
        }
        if (s == end || !sdn_isdigit(*s))
            return SDN_NUM_SYNTAX;
        /* Saturate: past 10^8 the value is 0 or out of range whatever the digits say. */
        int64_t x = 0;
        for (; s < end && sdn_isdigit(*s); s++) {
            if (x < 100000000)
                x = x * 10 + (*s - '0');
        }
        n->e10 += eneg ? -x : x;
    }
    n->end = s;
    return SDN_NUM_OK;
}

/* w * 10^e10 rounded to a binary format with prec significand bits and maximal biased exponent
 * emax; w > 0 and e10 within the table. Returns the IEEE bits (sign clear), or UINT64_MAX when
 * the error bound leaves the rounding undecided or the result is subnormal.
 *
 * With wn = w << lz normalised and g the table entry (~10^e10 * 2^(127 - L), rounded up), the
 * 192-bit product P overshoots the true wn * 10^e10 * 2^(127 - L) by less than wn < 2^64, and
 * not at all when the entry is exact. The rounding depends on where the bits below the kept
 * significand lie relative to half an ulp; it is decided unless they are within 2^64 above 0
 * or above one half. An exactly halfway literal with an inexact entry lands in the second
 * window, so ties reach the exact fallback. */
static uint64_t sdn_mul_round(uint64_t w, int e10, int prec, unsigned emax)
{
    int lz = __builtin_clzll(w);
    uint64_t wn = w << lz;
    const uint64_t *g = SDN_POW10[e10 - SDN_POW10_MIN];
    sdn_u128 lo = (sdn_u128)g[1] * wn;
    sdn_u128 hi = (sdn_u128)g[0] * wn;
    sdn_u128 mid128 = (lo >> 64) + (uint64_t)hi;
    uint64_t top = (uint64_t)(hi >> 64) + (uint64_t)(mid128 >> 64);
    uint64_t mid = (uint64_t)mid128;
    uint64_t low = (uint64_t)lo;

    /* P >= 2^190, so top has 63 or 64 significant bits. */
    int msb = (int)(top >> 63);
    int shift = 63 - prec + msb;
    uint64_t mant = top >> shift;
    uint64_t rem = top & ((UINT64_C(1) << shift) - 1);
    uint64_t half = UINT64_C(1) << (shift - 1);
    bool exact = (unsigned)e10 <= SDN_POW10_EXACT_MAX;
    if (!exact && mid == 0 && (rem == 0 || rem == half))
        return UINT64_MAX;
    bool up = rem > half || (rem == half && ((mid | low) != 0 || (mant & 1)));

    /* value = mant * 2^(shift + 1 + L - lz); biased exponent of a normal result: */
    int be = 63 + msb + sdn_flog2_pow10(e10) - lz + (int)(emax >> 1);
    if (be < 1)
        return UINT64_MAX;
    if (be > (int)emax)
        return (uint64_t)(emax + 1) << (prec - 1); /* infinity */
    /* Adding the exponent below the hidden bit lets a carry out of the significand bump it. */
    return ((uint64_t)(be - 1) << (prec - 1)) + mant + up;
}

/* sdn_mul_round for binary32 with the entry rounded up to 64 bits: one 64x64-bit product. The
 * same argument holds with 2^64 in place of 2^128 (the overshoot is still below wn < 2^64, and
 * the rounded-up entry is exact for e10 in [0, 27], where 5^e10 < 2^64). */
static inline uint64_t sdn_mul_round32(uint64_t w, int e10)
{
    int lz = __builtin_clzll(w);
    uint64_t wn = w << lz;
    const uint64_t *g = SDN_POW10[e10 - SDN_POW10_MIN];
    sdn_u128 p = (sdn_u128)(g[0] + (g[1] != 0)) * wn;
    uint64_t top = (uint64_t)(p >> 64), low = (uint64_t)p;
    int msb = (int)(top >> 63);
    int shift = 39 + msb;
    uint64_t mant = top >> shift;
    uint64_t rem = top & ((UINT64_C(1) << shift) - 1);
    uint64_t half = UINT64_C(1) << (shift - 1);
    if ((unsigned)e10 > 27 && (rem == 0 || rem == half))
        return UINT64_MAX;
    bool up = (rem > half) | ((rem == half) & ((low != 0) | (bool)(mant & 1)));
    int be = 63 + msb + sdn_flog2_pow10(e10) - lz + 127;
    if (be < 1)
        return UINT64_MAX;
    if (be > 254)
        return UINT64_C(0x7F800000);
    return ((uint64_t)(be - 1) << 23) + mant + up;
}

/* Exact fallback: strtod/strtof on a compact copy "[-]DIGITSe<exp>" (no decimal point, so the
 * locale does not matter). Digits after the 800th are replaced by one nonzero digit when any
 * is nonzero: every rounding boundary of binary64 has fewer than 770 significant digits, so
 * this keeps the value on the same side of all of them. */
#define SDN_SLOW_DIGITS 800

static double sdn_slow(const char *p, const char *end, bool f32, float *fout)
{
    /* Only reached with a nonzero significand, so at least one digit is kept. */
    char buf[SDN_SLOW_DIGITS + 32];
    char *o = buf;
    const char *s = p;
    if (*s == '-')
        *o++ = *s++;
    int64_t dexp = 0;
    int kept = 0;
    bool dropped = false;
    bool frac = false;
    for (; s < end; s++) {
        if (*s == '.') {
            frac = true;
            continue;
        }
        if (!sdn_isdigit(*s))
            break;
        if (kept == 0 && *s == '0') {
            dexp -= frac;
            continue;
        }
        if (kept < SDN_SLOW_DIGITS) {
            *o++ = *s;
            kept++;
            dexp -= frac;
        } else {
            dexp += !frac;
            dropped |= *s != '0';
        }
    }
    if (dropped) {
        *o++ = '1';
        dexp--;
    }
    if (s < end && (*s | 0x20) == 'e') {
        s++;
        bool eneg = *s == '-';
        s += *s == '-' || *s == '+';
        int64_t x = 0;
        for (; s < end && sdn_isdigit(*s); s++) {
            if (x < 100000000)
                x = x * 10 + (*s - '0');
        }
        dexp += eneg ? -x : x;
    }
    if (dexp > 99999999)
        dexp = 99999999;
    if (dexp < -99999999)
        dexp = -99999999;
    *o++ = 'e';
    if (dexp < 0) {
        *o++ = '-';
        dexp = -dexp;
    }
    char rev[12];
    int nr = 0;
    do {
        rev[nr++] = (char)('0' + dexp % 10);
        dexp /= 10;
    } while (dexp);
    while (nr)
        *o++ = rev[--nr];
    *o = '\0';

    int saved = errno;
    double r = 0;
    if (f32)
        *fout = strtof(buf, NULL);
    else
        r = strtod(buf, NULL);
    errno = saved;
    return r;
}

#if FLT_EVAL_METHOD == 0
#define SDN_CLINGER 1
#else
#define SDN_CLINGER 0 /* excess precision would round twice */
#endif

static const double SDN_P10D[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                    1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                    1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* w * 10^e10 as a correctly rounded double when both factors are exact doubles. */
static inline bool sdn_clinger(const struct sdn_num *n, double *r)
{
    if (!SDN_CLINGER || n->more || n->w > (UINT64_C(1) << 53) || n->e10 < -22 || n->e10 > 22)
        return false;
    double x = (double)n->w;
    *r = n->e10 < 0 ? x / SDN_P10D[-n->e10] : x * SDN_P10D[n->e10];
    return true;
}

/* Bits of the finite value of n (w > 0) for a format; UINT64_MAX when undecided. */
static uint64_t sdn_fast_bits(const struct sdn_num *n, bool f32)
{
    int e10 = (int)n->e10;
    uint64_t b = f32 ? sdn_mul_round32(n->w, e10) : sdn_mul_round(n->w, e10, 53, 2046);
    if (n->more && b != UINT64_MAX &&
        b != (f32 ? sdn_mul_round32(n->w + 1, e10) : sdn_mul_round(n->w + 1, e10, 53, 2046)))
        return UINT64_MAX; /* the dropped digits could matter */
    return b;
}

static inline uint64_t sdn_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

int sdn_parse_f64(const char *p, const char *end, const char **endp, double *out)
{
    struct sdn_num n;
    if (sdn_scan(p, end, &n) != SDN_NUM_OK) {
        *endp = p;
        return SDN_NUM_SYNTAX;
    }
    *endp = n.end;
    double r;
    int rc = SDN_NUM_OK;
    if (n.kind == SDN_KIND_NAN) {
        *out = NAN;
        return SDN_NUM_OK;
    }
    if (n.kind == SDN_KIND_INF) {
        r = HUGE_VAL;
    } else if (n.w == 0) {
        r = 0.0;
    } else if (sdn_clinger(&n, &r)) {
        /* done */
    } else if (n.e10 + n.nd <= -324) {
        r = 0.0; /* below 10^-324, under half the smallest subnormal */
    } else if (n.e10 + n.nd - 1 >= 309) {
        r = HUGE_VAL; /* at least 10^309 */
        rc = SDN_NUM_RANGE;
    } else {
        uint64_t b = sdn_fast_bits(&n, false);
        if (b != UINT64_MAX)
            memcpy(&r, &b, sizeof r);
        else
            r = fabs(sdn_slow(p, n.end, false, NULL));
        if (isinf(r))
            rc = SDN_NUM_RANGE;
    }
    *out = n.neg ? -r : r;
    return rc;
}

int sdn_parse_f32(const char *p, const char *end, const char **endp, float *out)
{
    struct sdn_num n;
    if (sdn_scan(p, end, &n) != SDN_NUM_OK) {
        *endp = p;
        return SDN_NUM_SYNTAX;
    }
    *endp = n.end;
    float r;
    int rc = SDN_NUM_OK;
    if (n.kind == SDN_KIND_NAN) {
        *out = NAN;
        return SDN_NUM_OK;
    }
    if (n.kind == SDN_KIND_INF) {
        r = HUGE_VALF;
    } else if (n.w == 0) {
        r = 0.0f;
    } else if (n.e10 + n.nd <= -46) {
        r = 0.0f; /* below 10^-46, under half the smallest subnormal */
    } else if (n.e10 + n.nd - 1 >= 39) {
        r = HUGE_VALF;
        rc = SDN_NUM_RANGE;
    } else {
        uint64_t b = UINT64_MAX;
        double d;
        /* The double is correctly rounded and a normal float is near; narrowing it rounds a
         * second time, which errs only when the double sits exactly halfway between two
         * floats (no float midpoint lies strictly between the value and its double). */
        if (sdn_clinger(&n, &d)) {
            uint64_t db;
            memcpy(&db, &d, sizeof db);
            if ((db & 0x1FFFFFFFu) != 0x10000000u)
                b = sdn_f32_bits((float)d);
        }
        if (b == UINT64_MAX)
            b = sdn_fast_bits(&n, true);
        if (b != UINT64_MAX) {
            uint32_t b32 = (uint32_t)b;
            memcpy(&r, &b32, sizeof r);
        } else {
            (void)sdn_slow(p, n.end, true, &r);
            r = fabsf(r);
        }
        if (isinf(r))
            rc = SDN_NUM_RANGE;
    }
    *out = n.neg ? -r : r;
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * binary16
 */

uint16_t sdn_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7FFFFFFFu;
    if (ax > 0x7F800000u) /* NaN: keep the top payload bits, force quiet so it stays NaN */
        return (uint16_t)(sign | 0x7E00u | ((ax >> 13) & 0x3FFu));
    if (ax >= 0x477FF000u) /* at or past 65520, halfway from 65504 to 2^16: rounds to inf */
        return (uint16_t)(sign | 0x7C00u);
    if (ax >= 0x38800000u) {
        /* Normal half: rebias the exponent (127 -> 15) and round off 13 bits; a carry out of
         * the significand correctly moves to the next binade. */
        uint32_t r = ax - 0x38000000u;
        uint32_t m = r >> 13, rem = r & 0x1FFFu;
        m += rem > 0x1000u || (rem == 0x1000u && (m & 1));
        return (uint16_t)(sign | m);
    }
    if (ax <= 0x33000000u) /* at most 2^-25, half the smallest subnormal: ties to 0 */
        return sign;
    /* Subnormal half: units of 2^-24. The float is m * 2^(E - 150) with the hidden bit. */
    uint32_t e = ax >> 23;
    uint32_t m = (ax & 0x7FFFFFu) | 0x800000u;
    unsigned shift = 126 - e; /* 14..24 */
    uint32_t v = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    v += rem > half || (rem == half && (v & 1));
    return (uint16_t)(sign | v);
}

float sdn_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1Fu;
    uint32_t m = h & 0x3FFu;
    uint32_t x;
    if (e == 0x1F) {
        x = sign | 0x7F800000u | (m << 13);
    } else if (e != 0) {
        x = sign | ((e + 112) << 23) | (m << 13);
    } else if (m == 0) {
        x = sign;
    } else {
        /* Subnormal half m * 2^-24: normalise so the leading 1 becomes the hidden bit. */
        int lz = __builtin_clz(m) - 21; /* shifts to bring bit 10 up */
        m = (m << lz) & 0x3FFu;
        x = sign | ((uint32_t)(113 - lz) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}
