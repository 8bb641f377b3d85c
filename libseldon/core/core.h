/*
 * Internal core services: allocation, errors, logging, arenas.
 */
#ifndef SDN_CORE_H
#define SDN_CORE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "seldon/common.h"

#if defined(__GNUC__)
#define SDN_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define SDN_LIKELY(x) __builtin_expect(!!(x), 1)
#define SDN_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define SDN_PRINTF(f, a)
#define SDN_LIKELY(x) (x)
#define SDN_UNLIKELY(x) (x)
#endif

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error                                                                                             \
    "libseldon stores tensors in wire (little-endian) order and supports little-endian hosts only"
#endif

/* The one allocation entry point: everything goes through the user's hooks. */
void *sdn_malloc(size_t size);
void *sdn_calloc(size_t n, size_t size);
void *sdn_realloc(void *ptr, size_t size);
void sdn_free(void *ptr);
char *sdn_strndup(const char *s, size_t len);

/*
 * Test hook: make the allocation after the next n succeed-allocations fail
 * (n = 0: the very next one fails); -1 disables. Process-wide.
 */
void sdn_alloc_fail_after(int64_t n);

/*
 * Records code and a formatted message as this thread's last error and
 * returns code, so a failure reads `return sdn_error(SELDON_EPARSE, ...)`.
 */
int sdn_error(int code, const char *fmt, ...) SDN_PRINTF(2, 3);
int sdn_verror(int code, const char *fmt, va_list ap) SDN_PRINTF(2, 0);

/* Returns code after prefixing the current message with "prefix: ". */
int sdn_error_prefix(int code, const char *fmt, ...) SDN_PRINTF(2, 3);

/* Logging to the user's callback. */
extern int32_t sdn_log_level;
void sdn_log_emit(int32_t level, const char *fmt, ...) SDN_PRINTF(2, 3);
#define sdn_log(level, ...)                                                                        \
    do {                                                                                           \
        if ((level) <= sdn_log_level)                                                              \
            sdn_log_emit((level), __VA_ARGS__);                                                    \
    } while (0)

/* Checked arithmetic: return 0 on overflow. */
static inline int sdn_mul_size(size_t *out, size_t a, size_t b)
{
    return !__builtin_mul_overflow(a, b, out);
}
static inline int sdn_add_size(size_t *out, size_t a, size_t b)
{
    return !__builtin_add_overflow(a, b, out);
}

/*
 * A bump allocator: chunks from sdn_malloc, freed all at once. The first
 * chunk may be supplied inline by the owner so that small messages make one
 * allocation in all. Allocations are 16-byte aligned.
 */
typedef struct sdn_arena_chunk {
    struct sdn_arena_chunk *next;
    size_t size; /* usable bytes after the header */
} sdn_arena_chunk;

typedef struct sdn_arena {
    uint8_t *cur;
    uint8_t *end;
    sdn_arena_chunk *chunks; /* heap chunks, newest first */
    uint8_t *inline_buf;     /* owner-supplied first chunk, or NULL */
    size_t inline_size;
    size_t next_size; /* size of the next heap chunk */
} sdn_arena;

#define SDN_ARENA_ALIGN 16

void sdn_arena_init(sdn_arena *a, void *inline_buf, size_t inline_size);
/* Keeps the largest heap chunk for reuse and frees the others. */
void sdn_arena_reset(sdn_arena *a);
void sdn_arena_release(sdn_arena *a);
void *sdn_arena_alloc_slow(sdn_arena *a, size_t size);

static inline void *sdn_arena_alloc(sdn_arena *a, size_t size)
{
    size_t rounded = (size + (SDN_ARENA_ALIGN - 1)) & ~(size_t)(SDN_ARENA_ALIGN - 1);
    if (SDN_LIKELY(rounded >= size && (size_t)(a->end - a->cur) >= rounded)) {
        void *p = a->cur;
        a->cur += rounded;
        return p;
    }
    return sdn_arena_alloc_slow(a, size);
}

void *sdn_arena_calloc(sdn_arena *a, size_t size);
/* Copies s[0..len) and a NUL. */
char *sdn_arena_strndup(sdn_arena *a, const char *s, size_t len);
/* Grows an array allocated in the arena (old storage is abandoned to the arena). */
void *sdn_arena_grow(sdn_arena *a, void *old, size_t old_size, size_t new_size);

/* seldon_buf helpers. */
int sdn_buf_reserve(seldon_buf *b, size_t extra);
int sdn_buf_append(seldon_buf *b, const void *p, size_t n);

#endif
