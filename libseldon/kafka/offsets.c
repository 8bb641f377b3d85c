/*
 * The offsets a consumer may commit: records of one partition from consumed to
 * done, oldest first. Offsets grow as records are consumed, so the window is a
 * queue; done records leave it from the front only, which is what makes the
 * committed offset safe (nothing before it is still pending).
 */
#include <string.h>

#include "core/core.h"
#include "seldon/kafka.h"

typedef struct slot {
    int64_t offset;
    int done;
} slot;

struct seldon_kafka_offsets {
    slot *q;
    size_t head, len, cap; /* live slots: q[head .. head+len) */
    int64_t last;          /* the last offset added, -1 before any */
};

int seldon_kafka_offsets_new(seldon_kafka_offsets **out)
{
    seldon_kafka_offsets *o;
    if (out == NULL)
        return sdn_error(SELDON_EINVAL, "offsets: NULL out");
    *out = NULL;
    o = sdn_calloc(1, sizeof(*o));
    if (o == NULL)
        return SELDON_ENOMEM;
    o->last = -1;
    *out = o;
    return 0;
}

void seldon_kafka_offsets_free(seldon_kafka_offsets *o)
{
    if (o == NULL)
        return;
    sdn_free(o->q);
    sdn_free(o);
}

int seldon_kafka_offsets_add(seldon_kafka_offsets *o, int64_t offset)
{
    if (o == NULL || offset < 0)
        return sdn_error(SELDON_EINVAL, "offsets: bad argument");
    if (offset <= o->last)
        return sdn_error(SELDON_EINVAL, "offsets: %lld added after %lld", (long long)offset,
                         (long long)o->last);
    if (o->head + o->len == o->cap) {
        if (o->head > 0) { /* slide down before growing */
            memmove(o->q, o->q + o->head, o->len * sizeof(slot));
            o->head = 0;
        }
        if (o->len == o->cap) {
            size_t cap = o->cap ? o->cap * 2 : 16;
            slot *q = sdn_realloc(o->q, cap * sizeof(slot));
            if (q == NULL)
                return SELDON_ENOMEM;
            o->q = q;
            o->cap = cap;
        }
    }
    o->q[o->head + o->len].offset = offset;
    o->q[o->head + o->len].done = 0;
    o->len++;
    o->last = offset;
    return 0;
}

int seldon_kafka_offsets_done(int64_t *commit, seldon_kafka_offsets *o, int64_t offset)
{
    size_t lo, hi;
    int64_t c = -1;
    if (commit == NULL || o == NULL)
        return sdn_error(SELDON_EINVAL, "offsets: NULL argument");
    *commit = -1;
    /* Binary search: offsets in the window are increasing. */
    lo = 0;
    hi = o->len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (o->q[o->head + mid].offset < offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == o->len || o->q[o->head + lo].offset != offset || o->q[o->head + lo].done)
        return sdn_error(SELDON_ENOTFOUND, "offsets: %lld is not pending", (long long)offset);
    o->q[o->head + lo].done = 1;
    while (o->len > 0 && o->q[o->head].done) {
        c = o->q[o->head].offset + 1;
        o->head++;
        o->len--;
    }
    if (o->len == 0)
        o->head = 0;
    *commit = c;
    return 0;
}

size_t seldon_kafka_offsets_pending(const seldon_kafka_offsets *o)
{
    size_t i, n = 0;
    if (o == NULL)
        return 0;
    for (i = 0; i < o->len; i++)
        n += !o->q[o->head + i].done;
    return n;
}
