/* Unit tests for util/fpconv: exactness against glibc's correctly rounded strtof/strtod and
 * printf, shortest-digit minimality, the repr-style layout, JSON number syntax, and binary16. */
#include <criterion/criterion.h>

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/fpconv.h"

/* Fixed-seed splitmix64 so failures reproduce. */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float f32_from(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint64_t f64_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, 8);
    return u;
}

static double f64_from(uint64_t u)
{
    double d;
    memcpy(&d, &u, 8);
    return d;
}

/* Formats into a heap block of exactly the documented maximum so ASan sees any overrun;
 * returns a NUL-terminated copy in out. */
static size_t fmt32(char *out, float v)
{
    char *b = malloc(SDN_FMT_F32_MAX);
    size_t n = sdn_fmt_f32(b, v);
    cr_assert_leq(n, SDN_FMT_F32_MAX);
    memcpy(out, b, n);
    out[n] = '\0';
    free(b);
    return n;
}

static size_t fmt64(char *out, double v)
{
    char *b = malloc(SDN_FMT_F64_MAX);
    size_t n = sdn_fmt_f64(b, v);
    cr_assert_leq(n, SDN_FMT_F64_MAX);
    memcpy(out, b, n);
    out[n] = '\0';
    free(b);
    return n;
}

/* Significant digits of a decimal string (no sign, point, leading or trailing zeros) and the
 * exponent of its first digit. */
static int sig_digits(const char *s, char *dig, int *exp_first)
{
    int nd = 0, point = -1, e = 0;
    const char *p = s + (*s == '-');
    for (; *p && *p != 'e' && *p != 'E'; p++) {
        if (*p == '.')
            point = nd;
        else
            dig[nd++] = *p;
    }
    if (*p)
        e = atoi(p + 1);
    if (point < 0)
        point = nd;
    int lead = 0;
    while (lead < nd - 1 && dig[lead] == '0')
        lead++;
    memmove(dig, dig + lead, (size_t)(nd - lead));
    nd -= lead;
    point -= lead;
    while (nd > 1 && dig[nd - 1] == '0')
        nd--;
    dig[nd] = '\0';
    *exp_first = point + e - 1;
    return nd;
}

/* The expected layout, built character by character from digits and exponent. */
static void ref_layout(char *out, int neg, const char *dig, int nd, int e)
{
    char *o = out;
    if (neg)
        *o++ = '-';
    if (e >= -4 && e < 16) {
        if (e < 0) {
            *o++ = '0';
            *o++ = '.';
            for (int i = 0; i < -e - 1; i++)
                *o++ = '0';
            for (int i = 0; i < nd; i++)
                *o++ = dig[i];
        } else {
            for (int i = 0; i <= e; i++)
                *o++ = i < nd ? dig[i] : '0';
            *o++ = '.';
            if (nd <= e + 1)
                *o++ = '0';
            for (int i = e + 1; i < nd; i++)
                *o++ = dig[i];
        }
        *o = '\0';
        return;
    }
    *o++ = dig[0];
    if (nd > 1) {
        *o++ = '.';
        for (int i = 1; i < nd; i++)
            *o++ = dig[i];
    }
    sprintf(o, "e%c%02d", e < 0 ? '-' : '+', abs(e));
}

/* Round trip, layout and (when check_short) minimality of one float. */
static void check_f32(float x, int check_short)
{
    char s[64];
    size_t n = fmt32(s, x);
    float y = strtof(s, NULL);
    cr_assert_eq(f32_bits(y), f32_bits(x), "%08x -> %s -> %08x", f32_bits(x), s, f32_bits(y));
    const char *end;
    float z = -1.0f;
    cr_assert_eq(sdn_parse_f32(s, s + n, &end, &z), SDN_NUM_OK, "%s", s);
    cr_assert_eq(f32_bits(z), f32_bits(x), "%s", s);
    cr_assert_eq(end, s + n);
    if (x == 0)
        return;
    char dig[40], exp_s[64];
    int e;
    int nd = sig_digits(s, dig, &e);
    cr_assert_leq(nd, 9, "%s", s);
    ref_layout(exp_s, signbit(x) != 0, dig, nd, e);
    cr_assert_str_eq(s, exp_s);
    if (!check_short)
        return;
    char r[64], rdig[40];
    int p, re;
    for (p = 1; p <= 9; p++) {
        snprintf(r, sizeof r, "%.*g", p, (double)x);
        if (f32_bits(strtof(r, NULL)) == f32_bits(x))
            break;
    }
    int rnd = sig_digits(r, rdig, &re);
    /* %.pg may need one digit more than the shortest when the gap below x is the narrower
     * one (powers of two); with equal length both must be the digits nearest x. */
    cr_assert_leq(nd, rnd, "%s vs %s", s, r);
    if (nd == rnd) {
        cr_assert_str_eq(dig, rdig, "%s vs %s", s, r);
        cr_assert_eq(e, re, "%s vs %s", s, r);
    }
}

static void check_f64(double x, int check_short)
{
    char s[64];
    size_t n = fmt64(s, x);
    double y = strtod(s, NULL);
    cr_assert_eq(f64_bits(y), f64_bits(x), "%016llx -> %s", (unsigned long long)f64_bits(x), s);
    const char *end;
    double z = -1.0;
    cr_assert_eq(sdn_parse_f64(s, s + n, &end, &z), SDN_NUM_OK, "%s", s);
    cr_assert_eq(f64_bits(z), f64_bits(x), "%s", s);
    cr_assert_eq(end, s + n);
    if (x == 0)
        return;
    char dig[40], exp_s[64];
    int e;
    int nd = sig_digits(s, dig, &e);
    cr_assert_leq(nd, 17, "%s", s);
    ref_layout(exp_s, signbit(x) != 0, dig, nd, e);
    cr_assert_str_eq(s, exp_s);
    if (!check_short)
        return;
    char r[64], rdig[40];
    int p, re;
    for (p = 1; p <= 17; p++) {
        snprintf(r, sizeof r, "%.*g", p, x);
        if (f64_bits(strtod(r, NULL)) == f64_bits(x))
            break;
    }
    int rnd = sig_digits(r, rdig, &re);
    cr_assert_leq(nd, rnd, "%s vs %s", s, r);
    if (nd == rnd) {
        cr_assert_str_eq(dig, rdig, "%s vs %s", s, r);
        cr_assert_eq(e, re, "%s vs %s", s, r);
    }
}

/* Random bits biased towards interesting exponents: uniform bits, then tiny and subnormal
 * values, then the normal range around 1. */
static uint32_t rand_f32_bits(uint64_t *st)
{
    uint64_t r = rng_next(st);
    uint32_t u = (uint32_t)r;
    switch ((r >> 32) & 7) {
    case 0:
        return u & 0x807FFFFFu; /* subnormal */
    case 1:
        return (u & 0x807FFFFFu) | (((uint32_t)(r >> 40) % 8) << 23); /* near subnormal */
    case 2:
        return (u & 0x807FFFFFu) | ((uint32_t)(120 + (r >> 40) % 40) << 23); /* [2^-7, 2^32) */
    default:
        return u;
    }
}

static uint64_t rand_f64_bits(uint64_t *st)
{
    uint64_t r = rng_next(st);
    uint64_t sel = rng_next(st);
    const uint64_t mant = UINT64_C(0x800FFFFFFFFFFFFF);
    switch (sel & 7) {
    case 0:
        return r & mant;
    case 1:
        return (r & mant) | (((sel >> 8) % 8) << 52);
    case 2:
        return (r & mant) | ((1000 + (sel >> 8) % 80) << 52);
    case 3:
        /* short mantissas: values like 0.5, 3.75, large integers */
        return (r & UINT64_C(0x800FF00000000000)) | (((sel >> 8) % 2047) << 52);
    default:
        return r;
    }
}

/* ------------------------------------------------------------------------------------------ */

struct fcase32 {
    float v;
    const char *s;
};

struct fcase64 {
    double v;
    const char *s;
};

Test(fpconv_fmt, f64_known)
{
    static const struct fcase64 cases[] = {
        {0.0, "0.0"},
        {-0.0, "-0.0"},
        {1.0, "1.0"},
        {-1.0, "-1.0"},
        {1.5, "1.5"},
        {123.0, "123.0"},
        {0.1, "0.1"},
        {0.3, "0.3"},
        {0.1 + 0.2, "0.30000000000000004"},
        {1.0 / 3.0, "0.3333333333333333"},
        {2.0 / 3.0, "0.6666666666666666"},
        {0.0001, "0.0001"},
        {0.00012345, "0.00012345"},
        {1e-5, "1e-05"},
        {1.5e-5, "1.5e-05"},
        {1e15, "1000000000000000.0"},
        {1e16, "1e+16"},
        {1.5e16, "1.5e+16"},
        {9007199254740992.0, "9007199254740992.0"},
        {123456789012345678.0, "1.2345678901234568e+17"},
        {1234567890123456.7, "1234567890123456.8"},
        {12345.678, "12345.678"},
        {1e22, "1e+22"},
        {1e23, "1e+23"},
        {1e100, "1e+100"},
        {-1.25e-7, "-1.25e-07"},
        {5e-324, "5e-324"},
        {1e-323, "1e-323"},
        {DBL_MAX, "1.7976931348623157e+308"},
        {DBL_MIN, "2.2250738585072014e-308"},
        {2.2250738585072009e-308, "2.225073858507201e-308"},
        {9.5, "9.5"},
        {0.001, "0.001"},
        {100.0, "100.0"},
        {2.5e-300, "2.5e-300"},
        {4.35, "4.35"},
        {5.0e-5, "5e-05"},
        {INFINITY, "Infinity"},
        {-INFINITY, "-Infinity"},
        {NAN, "NaN"},
        {-NAN, "NaN"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char s[64];
        fmt64(s, cases[i].v);
        cr_expect_str_eq(s, cases[i].s);
    }
}

Test(fpconv_fmt, f32_known)
{
    static const struct fcase32 cases[] = {
        {0.0f, "0.0"},
        {-0.0f, "-0.0"},
        {1.0f, "1.0"},
        {0.1f, "0.1"},
        {0.3f, "0.3"},
        {-2.5f, "-2.5"},
        {100.0f, "100.0"},
        {123.456f, "123.456"},
        {123456.79f, "123456.79"},
        {16777216.0f, "16777216.0"},
        {1e15f, "1000000000000000.0"},
        {1e16f, "1e+16"},
        {0.0001f, "0.0001"},
        {0.00001f, "1e-05"},
        {3.4028235e38f, "3.4028235e+38"},
        {FLT_MIN, "1.1754944e-38"},
        {1e-45f, "1e-45"},
        {3e-45f, "3e-45"},
        {1.17549421e-38f, "1.1754942e-38"},
        {33554432.0f, "33554432.0"},
        {8.589973e9f, "8589974000.0"}, /* 496 from v; "8589973000" is 504 away */
        {7.038531e-26f, "7.038531e-26"},
        {INFINITY, "Infinity"},
        {-INFINITY, "-Infinity"},
        {NAN, "NaN"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char s[64];
        fmt32(s, cases[i].v);
        cr_expect_str_eq(s, cases[i].s);
    }
}

Test(fpconv_fmt, f32_special_values)
{
    /* every power of two, each exponent's extremes, powers of ten and their neighbours */
    for (uint32_t e = 0; e < 255; e++) {
        for (uint32_t sign = 0; sign < 2; sign++) {
            uint32_t base = (sign << 31) | (e << 23);
            check_f32(f32_from(base), 1);
            check_f32(f32_from(base | 1), 1);
            check_f32(f32_from(base | 0x7FFFFFu), 1);
            check_f32(f32_from(base | 0x400000u), 1);
        }
    }
    for (uint32_t m = 1; m < 4096; m++)
        check_f32(f32_from(m), 1);
    for (int k = -45; k <= 38; k++) {
        char b[16];
        snprintf(b, sizeof b, "1e%d", k);
        float x = strtof(b, NULL);
        check_f32(x, 1);
        check_f32(nextafterf(x, 0), 1);
        check_f32(nextafterf(x, INFINITY), 1);
    }
    check_f32(FLT_MAX, 1);
    check_f32(FLT_MIN, 1);
    check_f32(FLT_TRUE_MIN, 1);
}

Test(fpconv_fmt, f64_special_values)
{
    for (uint64_t e = 0; e < 2047; e++) {
        for (uint64_t sign = 0; sign < 2; sign++) {
            uint64_t base = (sign << 63) | (e << 52);
            check_f64(f64_from(base), 1);
            check_f64(f64_from(base | 1), e % 8 == 0);
            check_f64(f64_from(base | UINT64_C(0xFFFFFFFFFFFFF)), e % 8 == 0);
        }
    }
    for (uint64_t m = 1; m < 2048; m++)
        check_f64(f64_from(m), 1);
    for (int k = -323; k <= 308; k++) {
        char b[16];
        snprintf(b, sizeof b, "1e%d", k);
        double x = strtod(b, NULL);
        check_f64(x, 1);
        check_f64(nextafter(x, 0), 1);
        check_f64(nextafter(x, INFINITY), 1);
    }
    for (int i = 0; i < 1000; i++) {
        check_f64((double)i, 1);
        check_f64(i / 1000.0, 1);
        check_f64(ldexp(i, 43), 1);
    }
    check_f64(DBL_MAX, 1);
    check_f64(DBL_MIN, 1);
    check_f64(DBL_TRUE_MIN, 1);
}

Test(fpconv_fmt, f32_random_roundtrip)
{
    uint64_t st = 1;
    for (int i = 0; i < 3000000; i++) {
        float x = f32_from(rand_f32_bits(&st));
        if (isfinite(x))
            check_f32(x, i % 30 == 0);
    }
}

Test(fpconv_fmt, f64_random_roundtrip)
{
    uint64_t st = 2;
    for (int i = 0; i < 1500000; i++) {
        double x = f64_from(rand_f64_bits(&st));
        if (isfinite(x))
            check_f64(x, i % 25 == 0);
    }
}

/* ------------------------------------------------------------------------------------------ */

/* Parses a NUL-terminated string from a heap block of exactly its length (no terminator), so
 * ASan reports any read past end, and checks against strtof. */
static void cmp_parse_f32(const char *s)
{
    size_t len = strlen(s);
    char *b = malloc(len ? len : 1);
    memcpy(b, s, len);
    const char *end = NULL;
    float got = -12345.0f;
    int rc = sdn_parse_f32(b, b + len, &end, &got);
    char *rend;
    float want = strtof(s, &rend);
    cr_assert_eq(end - b, rend - s, "%s", s);
    if (isinf(want) && !strstr(s, "Infinity"))
        cr_assert_eq(rc, SDN_NUM_RANGE, "%s", s);
    else
        cr_assert_eq(rc, SDN_NUM_OK, "%s", s);
    cr_assert_eq(f32_bits(got), f32_bits(want), "%s: got %a want %a", s, (double)got, (double)want);
    free(b);
}

static void cmp_parse_f64(const char *s)
{
    size_t len = strlen(s);
    char *b = malloc(len ? len : 1);
    memcpy(b, s, len);
    const char *end = NULL;
    double got = -12345.0;
    int rc = sdn_parse_f64(b, b + len, &end, &got);
    char *rend;
    double want = strtod(s, &rend);
    cr_assert_eq(end - b, rend - s, "%s", s);
    if (isinf(want) && !strstr(s, "Infinity"))
        cr_assert_eq(rc, SDN_NUM_RANGE, "%s", s);
    else
        cr_assert_eq(rc, SDN_NUM_OK, "%s", s);
    cr_assert_eq(f64_bits(got), f64_bits(want), "%s: got %a want %a", s, got, want);
    free(b);
}

static void cmp_parse_both(const char *s)
{
    cmp_parse_f32(s);
    cmp_parse_f64(s);
}

/* A random JSON number: sign, integer part, fraction, exponent, with lengths and exponent
 * ranges drawn to cover short and long mantissas, leading zeros, runs of 0 and 9, and
 * exponents around both formats' limits. */
static void gen_number(uint64_t *st, char *b, int f32)
{
    uint64_t r = rng_next(st);
    char *o = b;
    if (r & 1)
        *o++ = '-';
    int style = (int)((r >> 1) % 8);
    int nint = (int)((r >> 4) % 20);
    if ((r >> 9) % 16 == 0)
        nint = 20 + (int)((r >> 13) % 40);
    int nfrac = (int)((r >> 19) % 22);
    if ((r >> 24) % 16 == 0)
        nfrac = 20 + (int)((r >> 28) % 40);
    int lead_zeros = (r >> 34) % 4 == 0 ? (int)((r >> 36) % 12) : 0;
    uint64_t dr = rng_next(st);
    for (int i = 0; i < nint + nfrac + lead_zeros + 1; i++) {
        char c;
        if (style == 1)
            c = (rng_next(st) % 4) ? '9' : (char)('0' + rng_next(st) % 10);
        else if (style == 2)
            c = (rng_next(st) % 4) ? '0' : (char)('0' + rng_next(st) % 10);
        else
            c = (char)('0' + (dr = rng_next(st)) % 10);
        if (i == 0) {
            if (nint == 0) {
                *o++ = '0';
                if (nfrac == 0)
                    break;
                *o++ = '.';
                for (int z = 0; z < lead_zeros; z++)
                    *o++ = '0';
                i += lead_zeros;
                *o++ = c;
                continue;
            }
            *o++ = c == '0' ? '1' : c;
            continue;
        }
        if (i == nint)
            *o++ = '.';
        if (i >= nint + nfrac + lead_zeros)
            break;
        *o++ = c;
    }
    if (o[-1] == '.')
        *o++ = '0';
    uint64_t er = rng_next(st);
    if (er % 5 != 0) {
        *o++ = (er & 8) ? 'e' : 'E';
        int span = f32 ? 100 : 700;
        long ex = (long)((er >> 4) % (uint64_t)span) - span / 2 - nint / 2;
        if ((er >> 20) % 50 == 0)
            ex = (long)((er >> 30) % 200000) - 100000;
        if (ex < 0) {
            *o++ = '-';
            ex = -ex;
        } else if ((er >> 40) & 1) {
            *o++ = '+';
        }
        o += sprintf(o, (er >> 41) % 8 == 0 ? "%03ld" : "%ld", ex);
    }
    *o = '\0';
}

Test(fpconv_parse, random_f32)
{
    uint64_t st = 3;
    char b[256];
    for (int i = 0; i < 400000; i++) {
        gen_number(&st, b, 1);
        cmp_parse_f32(b);
    }
}

Test(fpconv_parse, random_f64)
{
    uint64_t st = 4;
    char b[256];
    for (int i = 0; i < 400000; i++) {
        gen_number(&st, b, 0);
        cmp_parse_f64(b);
    }
}

/* Shortest and fixed-precision renderings of random values, each digit count 1..17 and
 * the neighbours in the last digit, as a JSON codec sees them. */
Test(fpconv_parse, printed_values)
{
    uint64_t st = 5;
    char b[64];
    for (int i = 0; i < 150000; i++) {
        float x = f32_from(rand_f32_bits(&st));
        double y = f64_from(rand_f64_bits(&st));
        if (!isfinite(x) || !isfinite(y))
            continue;
        int p = 1 + (int)(rng_next(&st) % 17);
        snprintf(b, sizeof b, "%.*e", p, (double)x);
        cmp_parse_both(b);
        snprintf(b, sizeof b, "%.9g", (double)x);
        cmp_parse_f32(b);
        snprintf(b, sizeof b, "%.*e", p, y);
        cmp_parse_both(b);
        snprintf(b, sizeof b, "%.17g", y);
        cmp_parse_f64(b);
        fmt64(b, y);
        cmp_parse_f64(b);
        /* "%.6f" of small values: many leading fraction zeros */
        snprintf(b, sizeof b, "%.6f", fmod(y, 1e6));
        if (strchr(b, 'n') == NULL)
            cmp_parse_both(b);
    }
}

/* Exact midpoints between neighbouring floats/doubles, and values just below and above. */
static void check_halfway(const char *exact, int f32)
{
    /* exact has the form [-]d.ddd...e[+-]xx */
    char b[1024];
    const char *epos = strchr(exact, 'e');
    size_t mant_len = (size_t)(epos - exact);
    /* trim trailing zeros of the mantissa */
    while (exact[mant_len - 1] == '0')
        mant_len--;
    void (*cmp)(const char *) = f32 ? cmp_parse_f32 : cmp_parse_f64;
    snprintf(b, sizeof b, "%.*s%s", (int)mant_len, exact, epos);
    cmp(b); /* exact tie */
    snprintf(b, sizeof b, "%.*s1%s", (int)mant_len, exact, epos);
    cmp(b); /* just above */
    snprintf(b, sizeof b, "%.*s00000000000000000000001%s", (int)mant_len, exact, epos);
    cmp(b);
    for (size_t cut = 3; cut < mant_len; cut += 1 + cut / 3) {
        snprintf(b, sizeof b, "%.*s%s", (int)cut, exact, epos);
        cmp(b); /* truncated: below */
    }
    /* last digit lowered: just below */
    memcpy(b, exact, mant_len);
    size_t j = mant_len - 1;
    if (b[j] != '.' && b[j] > '0') {
        b[j]--;
        snprintf(b + mant_len, sizeof b - mant_len, "9999%s", epos);
        cmp(b);
    }
}

Test(fpconv_parse, halfway_f32)
{
    uint64_t st = 6;
    char b[256];
    for (int i = 0; i < 6000; i++) {
        float x = f32_from(rand_f32_bits(&st) & 0x7FFFFFFFu);
        if (i < 300)
            x = f32_from((uint32_t)i * 0x7F800000u / 300u); /* spread over all exponents */
        float nx = nextafterf(x, INFINITY);
        if (!isfinite(x) || !isfinite(nx))
            continue;
        double mid = ((double)x + (double)nx) / 2; /* exact: 25 bits */
        snprintf(b, sizeof b, "%.*e", 120, mid);
        check_halfway(b, 1);
    }
    /* midpoint above FLT_MAX: the overflow threshold */
    snprintf(b, sizeof b, "%.*e", 60, (double)FLT_MAX + ldexp(1, 103));
    check_halfway(b, 1);
    cmp_parse_f32("1.00000005960464477539062");
    cmp_parse_f32("1.000000059604644775390625");
    cmp_parse_f32("1.0000000596046447753906251");
    cmp_parse_f32("16777217");
    cmp_parse_f32("16777219");
    cmp_parse_f32("1.4012984643248170709e-45");
    cmp_parse_f32("7.0064923216240853546e-46");
    cmp_parse_f32("7.0064923216240853547e-46");
}

Test(fpconv_parse, halfway_f64)
{
    uint64_t st = 7;
    static char b[1024];
    for (int i = 0; i < 1200; i++) {
        double x = f64_from(rand_f64_bits(&st) & UINT64_C(0x7FFFFFFFFFFFFFFF));
        if (i < 200)
            x = f64_from((uint64_t)i * (UINT64_C(0x7FF0000000000000) / 200));
        double nx = nextafter(x, INFINITY);
        if (!isfinite(x) || !isfinite(nx))
            continue;
        long double mid = ((long double)x + (long double)nx) / 2; /* exact: 54 bits */
        snprintf(b, sizeof b, "%.*Le", 800, mid);
        check_halfway(b, 0);
    }
    snprintf(b, sizeof b, "%.*Le", 400, (long double)DBL_MAX + ldexpl(1, 970));
    check_halfway(b, 0);
    cmp_parse_f64("9007199254740993");
    cmp_parse_f64("9007199254740995");
    cmp_parse_f64("2.2250738585072011e-308");
    cmp_parse_f64("2.2250738585072012e-308");
    cmp_parse_f64("4.9406564584124654e-324");
    cmp_parse_f64("2.4703282292062327e-324");
    cmp_parse_f64("2.4703282292062328e-324");
    cmp_parse_f64("1.7976931348623158e308");
    cmp_parse_f64("1.7976931348623159e308");
    cmp_parse_f64("179769313486231580793728971405301e276");
}

Test(fpconv_parse, specific)
{
    static const char *cases[] = {
        "0",
        "-0",
        "0.0",
        "-0.0",
        "0e-999",
        "-0e+999",
        "0.000000000000000000000000000000e5",
        "1",
        "-1",
        "1.5",
        "0.1",
        "0.3",
        "123456789",
        "0.123456789",
        "1e10",
        "1E10",
        "1e+10",
        "1e-10",
        "3.4028235e38",
        "3.4028236e38",
        "3.40282356779733661637539395458142568447e38",
        "3.40282356779733661637539395458142568448e38",
        "1e38",
        "1e39",
        "-1e39",
        "1e-45",
        "1e-46",
        "1e-50",
        "1.17549435e-38",
        "1e308",
        "1e309",
        "-1e309",
        "1e-400",
        "1e999999999999",
        "-1e-999999999999",
        "1234567890123456789012345",
        "0.1234567890123456789012345",
        "1234567890123456789012345e-20",
        "9999999999999999999",
        "10000000000000000000",
        "18446744073709551615",
        "18446744073709551616",
        "12345678901234567890",
        "0.000000000000000000000000000000000000000000001",
        "100000000000000000000000",
        "9007199254740993",
        "8.98846567431158e307",
        "4.35",
        "0.30000000000000004",
        "2.2250738585072014e-308",
        "1e22",
        "1e23",
        "123456.789e3",
        "7e-45",
        "4e-45",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        cmp_parse_both(cases[i]);

    float f;
    double d;
    const char *e;
    const char *s = "-0";
    cr_assert_eq(sdn_parse_f64(s, s + 2, &e, &d), SDN_NUM_OK);
    cr_assert(d == 0 && signbit(d));
    cr_assert_eq(sdn_parse_f32(s, s + 2, &e, &f), SDN_NUM_OK);
    cr_assert(f == 0 && signbit(f));
    s = "3.4028236e38";
    cr_assert_eq(sdn_parse_f32(s, s + strlen(s), &e, &f), SDN_NUM_RANGE);
    cr_assert(isinf(f) && f > 0);
    cr_assert_eq(e, s + strlen(s));
    s = "-1e309";
    cr_assert_eq(sdn_parse_f64(s, s + strlen(s), &e, &d), SDN_NUM_RANGE);
    cr_assert(isinf(d) && d < 0);
    s = "3.4028235e38";
    cr_assert_eq(sdn_parse_f32(s, s + strlen(s), &e, &f), SDN_NUM_OK);
    cr_assert_eq(f, FLT_MAX);
}

Test(fpconv_parse, special_tokens_and_ends)
{
    struct {
        const char *s;
        size_t used;
        int kind; /* 0 finite, 1 +inf, 2 -inf, 3 nan */
    } cases[] = {
        {"NaN", 3, 3},       {"NaN,", 3, 3},  {"Infinity", 8, 1}, {"-Infinity", 9, 2},
        {"Infinity]", 8, 1}, {"1.5x", 3, 0},  {"1.5,2", 3, 0},    {"0x10", 1, 0},
        {"1e5e3", 3, 0},     {"1e5.5", 3, 0}, {"-0]", 2, 0},      {"12 ", 2, 0},
        {"1.25e-3}", 7, 0},  {"0.5.5", 3, 0}, {"7-", 1, 0},       {"2E+3 ", 4, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *s = cases[i].s;
        size_t len = strlen(s);
        char *b = malloc(len);
        memcpy(b, s, len);
        const char *e;
        double d;
        float f;
        cr_assert_eq(sdn_parse_f64(b, b + len, &e, &d), SDN_NUM_OK, "%s", s);
        cr_assert_eq((size_t)(e - b), cases[i].used, "%s", s);
        cr_assert_eq(sdn_parse_f32(b, b + len, &e, &f), SDN_NUM_OK, "%s", s);
        cr_assert_eq((size_t)(e - b), cases[i].used, "%s", s);
        switch (cases[i].kind) {
        case 0: {
            char pre[32];
            snprintf(pre, sizeof pre, "%.*s", (int)cases[i].used, s);
            cr_assert_eq(f64_bits(d), f64_bits(strtod(pre, NULL)), "%s", s);
            cr_assert_eq(f32_bits(f), f32_bits(strtof(pre, NULL)), "%s", s);
            break;
        }
        case 1:
            cr_assert(isinf(d) && d > 0 && isinf(f) && f > 0);
            break;
        case 2:
            cr_assert(isinf(d) && d < 0 && isinf(f) && f < 0);
            break;
        default:
            cr_assert(isnan(d) && isnan(f));
        }
        free(b);
    }
}

Test(fpconv_parse, syntax_errors)
{
    static const char *bad[] = {
        "",    "-",    "01",  "1.",  ".5",       "1e",      "+1",      "1e+", "--1",      "nan",
        "inf", "-NaN", "Inf", "NAN", "infinity", "Infinit", "-01",     "00",  "1.e5",     "e5",
        "-.5", "- 1",  " 1",  "1e-", "0.e1",     "-e1",     "1.5e+-3", "x",   "-Infinit", "1E",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *s = bad[i];
        size_t len = strlen(s);
        char *b = malloc(len ? len : 1);
        memcpy(b, s, len);
        const char *e = NULL;
        double d = 42.0;
        float f = 42.0f;
        cr_expect_eq(sdn_parse_f64(b, b + len, &e, &d), SDN_NUM_SYNTAX, "'%s'", s);
        cr_expect_eq(e, b, "'%s'", s);
        cr_expect_eq(d, 42.0, "'%s'", s);
        e = NULL;
        cr_expect_eq(sdn_parse_f32(b, b + len, &e, &f), SDN_NUM_SYNTAX, "'%s'", s);
        cr_expect_eq(e, b, "'%s'", s);
        cr_expect_eq(f, 42.0f, "'%s'", s);
        free(b);
    }
}

/* Every prefix of valid numbers, from exact-size buffers: each prefix is either a number
 * strtod agrees on or a syntax error, and nothing past end is read (ASan). */
Test(fpconv_parse, prefixes_bounded)
{
    uint64_t st = 8;
    char b[256];
    for (int i = 0; i < 3000; i++) {
        gen_number(&st, b, i & 1);
        size_t len = strlen(b);
        for (size_t cut = 0; cut <= len; cut++) {
            char *h = malloc(cut ? cut : 1);
            memcpy(h, b, cut);
            const char *e;
            double d;
            int rc = sdn_parse_f64(h, h + cut, &e, &d);
            char tmp[256];
            memcpy(tmp, b, cut);
            tmp[cut] = '\0';
            char *rend;
            double want = strtod(tmp, &rend);
            int complete = (size_t)(rend - tmp) == cut && cut > 0 && tmp[cut - 1] != '.' &&
                           (tmp[cut - 1] | 0x20) != 'e' && tmp[cut - 1] != '+' &&
                           tmp[cut - 1] != '-';
            if (complete) {
                cr_assert_neq(rc, SDN_NUM_SYNTAX, "%s", tmp);
                cr_assert_eq(f64_bits(d), f64_bits(want), "%s", tmp);
            } else if (rc != SDN_NUM_SYNTAX) {
                /* a shorter valid number followed by the byte that was cut off */
                cr_assert_fail("'%s' accepted", tmp);
            }
            free(h);
        }
    }
}

/* Inputs past the exact fallback's 800 kept digits: ties, just above, just below. */
Test(fpconv_parse, long_inputs)
{
    static char b[4096], m[2048];
    const double xs[] = {DBL_TRUE_MIN, 3 * DBL_TRUE_MIN, ldexp(0x1.234567p0, -1060), DBL_MIN,
                         ldexp(1, -1000)};
    for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++) {
        long double mid = ((long double)xs[i] + (long double)nextafter(xs[i], 1)) / 2;
        snprintf(m, sizeof m, "%.*Le", 900, mid);
        char *e = strchr(m, 'e');
        size_t ml = (size_t)(e - m);
        while (m[ml - 1] == '0')
            ml--;
        snprintf(b, sizeof b, "%.*s%0300d%s", (int)ml, m, 0, e); /* tie, 300 more zeros */
        cmp_parse_both(b);
        snprintf(b, sizeof b, "%.*s%0300d1%s", (int)ml, m, 0, e); /* just above */
        cmp_parse_both(b);
        memcpy(b, m, ml);
        b[ml - 1] = (char)(b[ml - 1] - 1); /* just below, then many nines */
        memset(b + ml, '9', 400);
        snprintf(b + ml + 400, sizeof b - ml - 400, "%s", e);
        cmp_parse_both(b);
    }
    /* long integer parts: dropped digits raise the exponent */
    memset(b, '0', 2000);
    b[0] = '1';
    snprintf(b + 2000, 32, "e-1999");
    cmp_parse_both(b); /* 1.0 */
    b[1500] = '7';
    cmp_parse_both(b);
    snprintf(b + 2000, 32, "e-2300");
    cmp_parse_both(b);
    /* long fraction of zeros before the first digit */
    memset(b, '0', 1500);
    b[1] = '.';
    snprintf(b + 1500, 64, "123456789e1480");
    cmp_parse_both(b);
}

/* ------------------------------------------------------------------------------------------ */

/* Half value from its fields: (-1)^s * 2^(e-15) * 1.m, subnormals 2^-14 * 0.m. */
static double half_ref(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
    return (h & 0x8000) ? -v : v;
}

Test(fpconv_f16, all_halves_roundtrip)
{
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t h = (uint16_t)i;
        float f = sdn_f16_to_f32(h);
        int e = (h >> 10) & 31, m = h & 1023;
        if (e == 31 && m != 0) {
            cr_assert(isnan(f), "%04x", h);
            uint16_t back = sdn_f32_to_f16(f);
            cr_assert_eq(back, h | 0x200, "%04x -> %04x", h, back);
            continue;
        }
        if (e == 31)
            cr_assert(isinf(f) && (f < 0) == ((h & 0x8000) != 0));
        else
            cr_assert_eq((double)f, half_ref(h), "%04x", h);
        cr_assert_eq(signbit(f) != 0, (h & 0x8000) != 0);
        cr_assert_eq(sdn_f32_to_f16(f), h, "%04x", h);
    }
}

/* Nearest half by search over the sorted finite halves; ties to even; 65520 and up -> inf. */
static uint16_t f16_ref(float x)
{
    if (isnan(x))
        return 0x7E00;
    uint16_t sign = signbit(x) ? 0x8000 : 0;
    double a = fabs((double)x);
    if (a >= 65520.0)
        return sign | 0x7C00;
    unsigned lo = 0, hi = 0x7BFF;
    while (lo < hi) { /* largest h with value(h) <= a */
        unsigned mid = (lo + hi + 1) / 2;
        if (half_ref((uint16_t)mid) <= a)
            lo = mid;
        else
            hi = mid - 1;
    }
    if (lo == 0x7BFF)
        return sign | 0x7BFF;
    double dl = a - half_ref((uint16_t)lo), du = half_ref((uint16_t)(lo + 1)) - a;
    unsigned r = dl < du ? lo : du < dl ? lo + 1 : (lo & 1) ? lo + 1 : lo;
    return (uint16_t)(sign | r);
}

static void check_f16(float x)
{
    uint16_t got = sdn_f32_to_f16(x), want = f16_ref(x);
    if (isnan(x))
        cr_assert((got & 0x7C00) == 0x7C00 && (got & 0x3FF) != 0, "%a", (double)x);
    else
        cr_assert_eq(got, want, "%a (%08x): got %04x want %04x", (double)x, f32_bits(x), got, want);
}

Test(fpconv_f16, rounding)
{
    for (uint32_t h = 0; h < 0x7C00; h++) {
        float v = sdn_f16_to_f32((uint16_t)h);
        float nv = h < 0x7BFF ? sdn_f16_to_f32((uint16_t)(h + 1)) : 65536.0f;
        float mid = (v + nv) / 2; /* exact: 12 significant bits */
        float pts[] = {v,   nextafterf(v, 0),   nextafterf(v, INFINITY),
                       mid, nextafterf(mid, 0), nextafterf(mid, INFINITY)};
        for (size_t k = 0; k < sizeof pts / sizeof pts[0]; k++) {
            check_f16(pts[k]);
            check_f16(-pts[k]);
        }
    }
    uint64_t st = 9;
    for (int i = 0; i < 300000; i++) {
        uint64_t r = rng_next(&st);
        uint32_t u = (uint32_t)r;
        if (r >> 63)
            u = (u & 0x807FFFFFu) | ((uint32_t)(98 + (r >> 40) % 50) << 23);
        check_f16(f32_from(u));
    }
    check_f16(INFINITY);
    check_f16(-INFINITY);
    check_f16(NAN);
    check_f16(FLT_MAX);
    check_f16(FLT_TRUE_MIN);
    cr_assert_eq(sdn_f32_to_f16(f32_from(0x7F800001u)) & 0x7E00u, 0x7E00u); /* sNaN stays NaN */
}
