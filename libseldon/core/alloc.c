#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

static void *default_malloc(void *ud, size_t size)
{
    (void)ud;
    return malloc(size);
}

static void *default_realloc(void *ud, void *ptr, size_t size)
{
    (void)ud;
    return realloc(ptr, size);
}

static void default_free(void *ud, void *ptr)
{
    (void)ud;
    free(ptr);
}

static seldon_allocator hooks = {SELDON_ALLOCATOR_VERSION, default_malloc, default_realloc,
                                 default_free, NULL};

/* -1: never fail. Otherwise the number of allocations still allowed to succeed. */
static _Atomic int64_t fail_countdown = -1;

int seldon_set_allocator(const seldon_allocator *alloc)
{
    if (alloc == NULL) {
        hooks.malloc_fn = default_malloc;
        hooks.realloc_fn = default_realloc;
        hooks.free_fn = default_free;
        hooks.user_data = NULL;
        return 0;
    }
    if (alloc->version != SELDON_ALLOCATOR_VERSION || alloc->malloc_fn == NULL ||
        alloc->realloc_fn == NULL || alloc->free_fn == NULL)
        return sdn_error(SELDON_EINVAL, "allocator: version %u or a missing hook",
                         (unsigned)alloc->version);
    hooks = *alloc;
    return 0;
}

void sdn_alloc_fail_after(int64_t n)
{
    atomic_store(&fail_countdown, n);
}

static int should_fail(void)
{
    int64_t left = atomic_load_explicit(&fail_countdown, memory_order_relaxed);
    if (SDN_LIKELY(left < 0))
        return 0;
    left = atomic_fetch_sub(&fail_countdown, 1);
    if (left <= 0) {
        atomic_store(&fail_countdown, 0);
        return 1;
    }
    return 0;
}

void *sdn_malloc(size_t size)
{
    if (should_fail())
        return NULL;
    return hooks.malloc_fn(hooks.user_data, size ? size : 1);
}

void *sdn_calloc(size_t n, size_t size)
{
    size_t total;
    void *p;
    if (!sdn_mul_size(&total, n, size))
        return NULL;
    p = sdn_malloc(total);
    if (p != NULL)
        memset(p, 0, total);
    return p;
}

void *sdn_realloc(void *ptr, size_t size)
{
    if (should_fail())
        return NULL;
    if (ptr == NULL)
        return hooks.malloc_fn(hooks.user_data, size ? size : 1);
    return hooks.realloc_fn(hooks.user_data, ptr, size ? size : 1);
}

void sdn_free(void *ptr)
{
    if (ptr != NULL)
        hooks.free_fn(hooks.user_data, ptr);
}

char *sdn_strndup(const char *s, size_t len)
{
    char *p = sdn_malloc(len + 1);
    if (p == NULL)
        return NULL;
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

void *seldon_malloc(size_t size)
{
    return sdn_malloc(size);
}

void *seldon_calloc(size_t n, size_t size)
{
    return sdn_calloc(n, size);
}

void *seldon_realloc(void *ptr, size_t size)
{
    return sdn_realloc(ptr, size);
}

void seldon_free(void *ptr)
{
    sdn_free(ptr);
}

int sdn_buf_reserve(seldon_buf *b, size_t extra)
{
    size_t need, cap;
    uint8_t *p;
    if (!sdn_add_size(&need, b->len, extra))
        return sdn_error(SELDON_ENOMEM, "buffer: size overflow");
    /* A reserved buffer always has storage, so data + len is a valid pointer even at 0. */
    if (need <= b->cap && b->data != NULL)
        return 0;
    cap = b->cap ? b->cap : 256;
    while (cap < need) {
        if (!sdn_mul_size(&cap, cap, 2)) {
            cap = need;
            break;
        }
    }
    p = sdn_realloc(b->data, cap);
    if (p == NULL)
        return sdn_error(SELDON_ENOMEM, "buffer: cannot grow to %zu bytes", cap);
    b->data = p;
    b->cap = cap;
    return 0;
}

int sdn_buf_append(seldon_buf *b, const void *p, size_t n)
{
    int rc = sdn_buf_reserve(b, n);
    if (rc < 0)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

int seldon_buf_reserve(seldon_buf *buf, size_t extra)
{
    if (buf == NULL)
        return sdn_error(SELDON_EINVAL, "buf: NULL");
    return sdn_buf_reserve(buf, extra);
}

void seldon_buf_free(seldon_buf *buf)
{
    if (buf == NULL)
        return;
    sdn_free(buf->data);
    buf->data = NULL;
    buf->len = 0;
    buf->cap = 0;
}
