/*
 * Kubernetes memory quantities ("100Ki", "1.5Gi", "3G", "1e9", "512") as
 * bytes, computed exactly in 128-bit integers; a fraction of a byte rounds
 * up, as Kubernetes does.
 */
#include <string.h>

#include "manifest/manifest.h"

const char *seldon_kind_name(seldon_kind kind)
{
    switch (kind) {
    case SELDON_KIND_MODEL:
        return "Model";
    case SELDON_KIND_SERVER:
        return "Server";
    case SELDON_KIND_PIPELINE:
        return "Pipeline";
    case SELDON_KIND_EXPERIMENT:
        return "Experiment";
    default:
        return NULL;
    }
}

#define FRAC_DIGITS_MAX                                                                            \
    18 /* digits of a fraction kept exactly; any further non-zero one rounds up */

typedef unsigned __int128 u128;

static int suffix_mult(u128 *mult, const char *s, size_t n)
{
    static const char dec[] = "kMGTPE";
    static const char bin[] = "KMGTPE";
    const char *p;
    size_t i;
    if (n == 0) {
        *mult = 1;
        return 0;
    }
    if (n == 1 && (p = strchr(dec, s[0])) != NULL && s[0] != '\0') {
        *mult = 1;
        for (i = 0; i <= (size_t)(p - dec); i++)
            *mult *= 1000;
        return 0;
    }
    if (n == 2 && s[1] == 'i' && (p = strchr(bin, s[0])) != NULL && s[0] != '\0') {
        *mult = (u128)1 << (10 * (1 + (p - bin)));
        return 0;
    }
    if (s[0] == 'e' || s[0] == 'E') {
        /* A decimal exponent, e.g. 1e9: digits only, at most 18 (more is out of range anyway). */
        unsigned e = 0;
        if (n < 2)
            return SELDON_EPARSE;
        for (i = 1; i < n; i++) {
            if (s[i] < '0' || s[i] > '9')
                return SELDON_EPARSE;
            e = e * 10 + (unsigned)(s[i] - '0');
            if (e > 1000)
                e = 1000;
        }
        if (e > 18)
            return SELDON_ERANGE;
        *mult = 1;
        while (e--)
            *mult *= 10;
        return 0;
    }
    return SELDON_EPARSE;
}

int seldon_parse_quantity(int64_t *out_bytes, const char *text, size_t len)
{
    char q[80];
    size_t i = 0, int_digits = 0, frac_digits = 0, frac_kept = 0;
    u128 ip = 0, fp = 0, scale = 1, mult = 1, total;
    int frac_rest = 0, rc;

    if (out_bytes == NULL || (text == NULL && len > 0))
        return sdn_error(SELDON_EINVAL, "parse_quantity: NULL argument");
    sdn_mf_quote(q, sizeof(q), text ? text : "", len);
    if (len > 0 && text[0] == '+')
        i++;
    if (len > 0 && text[0] == '-')
        return sdn_error(SELDON_EPARSE, "\"%s\": a quantity of memory cannot be negative", q);
    for (; i < len && text[i] >= '0' && text[i] <= '9'; i++, int_digits++) {
        ip = ip * 10 + (u128)(text[i] - '0');
        if (ip > (u128)INT64_MAX)
            return sdn_error(SELDON_ERANGE, "\"%s\": more than %lld bytes", q,
                             (long long)INT64_MAX);
    }
    if (i < len && text[i] == '.') {
        for (i++; i < len && text[i] >= '0' && text[i] <= '9'; i++, frac_digits++) {
            if (frac_kept < FRAC_DIGITS_MAX) {
                fp = fp * 10 + (u128)(text[i] - '0');
                scale *= 10;
                frac_kept++;
            } else if (text[i] != '0') {
                frac_rest = 1;
            }
        }
    }
    if (int_digits + frac_digits == 0)
        return sdn_error(SELDON_EPARSE,
                         "\"%s\" is not a quantity: expected a number of bytes with an optional "
                         "suffix (k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei), e.g. 512Mi",
                         q);
    rc = suffix_mult(&mult, text + i, len - i);
    if (rc == SELDON_ERANGE)
        return sdn_error(SELDON_ERANGE, "\"%s\": more than %lld bytes", q, (long long)INT64_MAX);
    if (rc != 0)
        return sdn_error(SELDON_EPARSE,
                         "\"%s\" is not a quantity: unknown suffix; use k, M, G, T, P, E (powers "
                         "of 1000) or Ki, Mi, Gi, Ti, Pi, Ei (powers of 1024)",
                         q);
    /* ip < 2^63 and mult <= 10^18 < 2^60: the product fits 128 bits. */
    total = ip * mult;
    if (total > (u128)INT64_MAX)
        return sdn_error(SELDON_ERANGE, "\"%s\": more than %lld bytes", q, (long long)INT64_MAX);
    if (fp != 0 || frac_rest) {
        /* fp < 10^18 < 2^60 and mult < 2^61: exact; round a fraction of a byte up. */
        u128 num = fp * mult;
        u128 whole = num / scale;
        if (num % scale != 0 || frac_rest)
            whole++;
        total += whole;
        if (total > (u128)INT64_MAX)
            return sdn_error(SELDON_ERANGE, "\"%s\": more than %lld bytes", q,
                             (long long)INT64_MAX);
    }
    *out_bytes = (int64_t)total;
    return 0;
}
