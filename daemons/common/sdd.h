/*
 * What every daemon file needs from the core, through the public API alone:
 * allocation through libseldon's hooks, this thread's last error, logging with
 * levels, checked size arithmetic. Daemons include this and seldon/ headers, never a
 * private library header.
 *
 * Thread safety: everything here may be called from any thread.
 */
#ifndef SDD_H
#define SDD_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "seldon/common.h"

#if defined(__GNUC__)
#define SDD_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define SDD_LIKELY(x) __builtin_expect(!!(x), 1)
#define SDD_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define SDD_PRINTF(f, a)
#define SDD_LIKELY(x) (x)
#define SDD_UNLIKELY(x) (x)
#endif

#define sdd_malloc seldon_malloc
#define sdd_calloc seldon_calloc
#define sdd_realloc seldon_realloc
#define sdd_free seldon_free

/* Records a formatted message as this thread's last error; returns code. */
static inline int SDD_PRINTF(2, 3) sdd_error(int code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return seldon_set_error(code, msg);
}

static inline void SDD_PRINTF(2, 3) sdd_log_emit(int32_t level, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    seldon_log(level, line);
}

/* Formats only when the level is enabled. */
#define sdd_log(level, ...)                                                                        \
    do {                                                                                           \
        if (seldon_log_enabled(level))                                                             \
            sdd_log_emit((level), __VA_ARGS__);                                                    \
    } while (0)

/* Checked arithmetic: 0 on overflow. */
static inline int sdd_add_size(size_t *out, size_t a, size_t b)
{
    return !__builtin_add_overflow(a, b, out);
}
static inline int sdd_mul_size(size_t *out, size_t a, size_t b)
{
    return !__builtin_mul_overflow(a, b, out);
}

/* A whole decimal number in [lo, hi] (a command-line flag's value): 0, or -1. */
static inline int sdd_parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static inline char *sdd_strndup(const char *s, size_t len)
{
    char *p = (char *)seldon_malloc(len + 1);
    if (p != NULL) {
        memcpy(p, s, len);
        p[len] = '\0';
    }
    return p;
}

#endif
