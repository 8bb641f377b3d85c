#include <string.h>

#include "core.h"

#define SDN_ARENA_MIN_CHUNK 4096

void sdn_arena_init(sdn_arena *a, void *inline_buf, size_t inline_size)
{
    memset(a, 0, sizeof(*a));
    a->inline_buf = inline_buf;
    a->inline_size = inline_size;
    a->next_size = SDN_ARENA_MIN_CHUNK;
    sdn_arena_reset(a);
}

static uint8_t *align_up(uint8_t *p)
{
    uintptr_t v = (uintptr_t)p;
    v = (v + (SDN_ARENA_ALIGN - 1)) & ~(uintptr_t)(SDN_ARENA_ALIGN - 1);
    return (uint8_t *)v;
}

void sdn_arena_reset(sdn_arena *a)
{
    sdn_arena_chunk *keep = NULL, *c, *next;

    /* Keep the largest chunk: a message reused for similar requests then allocates nothing. */
    for (c = a->chunks; c != NULL; c = c->next)
        if (keep == NULL || c->size > keep->size)
            keep = c;
    for (c = a->chunks; c != NULL; c = next) {
        next = c->next;
        if (c != keep)
            sdn_free(c);
    }
    a->chunks = keep;
    if (keep != NULL) {
        keep->next = NULL;
        a->cur = align_up((uint8_t *)(keep + 1));
        a->end = (uint8_t *)(keep + 1) + keep->size;
    } else if (a->inline_buf != NULL) {
        a->cur = align_up(a->inline_buf);
        a->end = a->inline_buf + a->inline_size;
        if (a->cur > a->end)
            a->cur = a->end;
    } else {
        a->cur = a->end = NULL;
    }
}

void sdn_arena_release(sdn_arena *a)
{
    sdn_arena_chunk *c, *next;
    for (c = a->chunks; c != NULL; c = next) {
        next = c->next;
        sdn_free(c);
    }
    a->chunks = NULL;
    a->cur = a->end = NULL;
}

void *sdn_arena_alloc_slow(sdn_arena *a, size_t size)
{
    size_t want, total;
    sdn_arena_chunk *c;
    uint8_t *p;

    if (!sdn_add_size(&want, size, 2 * SDN_ARENA_ALIGN))
        return NULL;
    if (want < a->next_size)
        want = a->next_size;
    if (!sdn_add_size(&total, want, sizeof(sdn_arena_chunk)))
        return NULL;
    c = sdn_malloc(total);
    if (c == NULL)
        return NULL;
    c->size = want;
    c->next = a->chunks;
    a->chunks = c;
    /* Chunks double so that a large message costs O(log n) allocations. */
    if (a->next_size < ((size_t)1 << 30))
        a->next_size *= 2;
    p = align_up((uint8_t *)(c + 1));
    a->cur = p + ((size + (SDN_ARENA_ALIGN - 1)) & ~(size_t)(SDN_ARENA_ALIGN - 1));
    a->end = (uint8_t *)(c + 1) + c->size;
    if (a->cur > a->end)
        a->cur = a->end;
    return p;
}

void *sdn_arena_calloc(sdn_arena *a, size_t size)
{
    void *p = sdn_arena_alloc(a, size);
    if (p != NULL)
        memset(p, 0, size);
    return p;
}

char *sdn_arena_strndup(sdn_arena *a, const char *s, size_t len)
{
    char *p;
    if (len == SIZE_MAX)
        return NULL;
    p = sdn_arena_alloc(a, len + 1);
    if (p == NULL)
        return NULL;
    if (len)
        memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

void *sdn_arena_grow(sdn_arena *a, void *old, size_t old_size, size_t new_size)
{
    void *p;
    if (new_size <= old_size)
        return old;
    p = sdn_arena_alloc(a, new_size);
    if (p != NULL && old_size)
        memcpy(p, old, old_size);
    return p;
}
