/* Core services: errors, allocator hooks, logging, arenas, buffers, message building. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "oip/msg.h"
#include "seldon/seldon.h"

Test(core, version_matches_macros)
{
    cr_assert_str_eq(seldon_version(), SELDON_VERSION_STRING);
    cr_assert_eq(seldon_version_number(), SELDON_VERSION_NUMBER);
}

Test(core, every_error_has_text_and_name)
{
    int32_t seen = 0;
#define CHECK_ONE(name, value, text)                                                               \
    cr_assert_lt(value, 0);                                                                        \
    cr_assert_str_eq(seldon_strerror(value), text);                                                \
    cr_assert_str_eq(seldon_error_name(value), "SELDON_" #name);                                   \
    seen++;
    SELDON_ERROR_MAP(CHECK_ONE)
#undef CHECK_ONE
    cr_assert_gt(seen, 10);
    cr_assert_str_eq(seldon_strerror(0), "success");
    cr_assert_str_eq(seldon_strerror(-9999), "unknown error");
    cr_assert_str_eq(seldon_error_name(-9999), "SELDON_EUNKNOWN");
}

static void *other_thread(void *arg)
{
    (void)arg;
    sdn_error(SELDON_ERANGE, "thread-local %d", 2);
    return NULL;
}

Test(core, last_error_is_per_thread)
{
    pthread_t t;
    seldon_clear_error();
    cr_assert_str_eq(seldon_last_error(), "");
    cr_assert_eq(sdn_error(SELDON_EPARSE, "inputs[%d].data[%d]: expected a number", 1, 37),
                 SELDON_EPARSE);
    pthread_create(&t, NULL, other_thread, NULL);
    pthread_join(t, NULL);
    cr_assert_str_eq(seldon_last_error(), "inputs[1].data[37]: expected a number");
    cr_assert_eq(seldon_last_error_code(), SELDON_EPARSE);
    sdn_error_prefix(SELDON_EPARSE, "model %s", "iris");
    cr_assert_str_eq(seldon_last_error(), "model iris: inputs[1].data[37]: expected a number");
}

static size_t hook_allocs, hook_frees;
static void *hook_malloc(void *ud, size_t n)
{
    (void)ud;
    hook_allocs++;
    return malloc(n);
}
static void *hook_realloc(void *ud, void *p, size_t n)
{
    (void)ud;
    return realloc(p, n);
}
static void hook_free(void *ud, void *p)
{
    (void)ud;
    hook_frees++;
    free(p);
}

Test(core, allocator_hooks_see_every_allocation)
{
    seldon_allocator a = SELDON_ALLOCATOR_INIT;
    seldon_allocator bad = SELDON_ALLOCATOR_INIT;
    seldon_msg *m = NULL;
    const int64_t shape[1] = {100000};

    cr_assert_eq(seldon_set_allocator(&bad), SELDON_EINVAL);
    a.malloc_fn = hook_malloc;
    a.realloc_fn = hook_realloc;
    a.free_fn = hook_free;
    cr_assert_eq(seldon_set_allocator(&a), 0);
    cr_assert_eq(seldon_msg_new(&m, SELDON_MSG_REQUEST), 0);
    cr_assert_eq(seldon_msg_add_tensor(NULL, m, "x", 1, SELDON_DT_FP64, shape, 1, NULL, 100000 * 8,
                                       SELDON_TENSOR_ALLOC),
                 0);
    seldon_msg_free(m);
    cr_assert_geq(hook_allocs, 2, "the message and its large tensor chunk");
    cr_assert_eq(hook_allocs, hook_frees);
    cr_assert_eq(seldon_set_allocator(NULL), 0);
}

static char log_seen[256];
static int32_t log_level_seen;
static void log_cb(void *ud, int32_t level, const char *message)
{
    (void)ud;
    log_level_seen = level;
    snprintf(log_seen, sizeof(log_seen), "%s", message);
}

Test(core, log_callback_filters_by_level)
{
    seldon_set_log(log_cb, NULL, SELDON_LOG_INFO);
    sdn_log(SELDON_LOG_DEBUG, "hidden %d", 1);
    cr_assert_str_eq(log_seen, "");
    sdn_log(SELDON_LOG_WARN, "shown %d", 2);
    cr_assert_str_eq(log_seen, "shown 2");
    cr_assert_eq(log_level_seen, SELDON_LOG_WARN);
    cr_assert_str_eq(seldon_log_level_name(SELDON_LOG_WARN), "warn");
    seldon_set_log(NULL, NULL, SELDON_LOG_TRACE);
    sdn_log(SELDON_LOG_ERROR, "dropped");
    cr_assert_str_eq(log_seen, "shown 2");
}

Test(core, arena_aligns_grows_and_reuses)
{
    _Alignas(16) uint8_t inline_buf[256];
    sdn_arena a;
    size_t i;
    uint8_t *big;

    sdn_arena_init(&a, inline_buf, sizeof(inline_buf));
    for (i = 1; i < 100; i++) {
        uint8_t *p = sdn_arena_alloc(&a, i);
        cr_assert_not_null(p);
        cr_assert_eq((uintptr_t)p % SDN_ARENA_ALIGN, 0);
        memset(p, 0xab, i);
    }
    big = sdn_arena_alloc(&a, 1 << 20);
    cr_assert_not_null(big);
    memset(big, 1, 1 << 20);
    sdn_arena_reset(&a);
    /* The large chunk is kept: the same request again allocates nothing new. */
    cr_assert_not_null(a.chunks);
    cr_assert_null(a.chunks->next);
    cr_assert_geq(a.chunks->size, (size_t)1 << 20);
    cr_assert_eq(sdn_arena_alloc(&a, SIZE_MAX - 8), NULL);
    cr_assert_str_eq(sdn_arena_strndup(&a, "abcdef", 3), "abc");
    sdn_arena_release(&a);
}

Test(core, buf_grows_and_frees)
{
    seldon_buf b = SELDON_BUF_INIT;
    int i;
    for (i = 0; i < 10000; i++)
        cr_assert_eq(sdn_buf_append(&b, "0123456789", 10), 0);
    cr_assert_eq(b.len, 100000);
    cr_assert_eq(memcmp(b.data + 99990, "0123456789", 10), 0);
    cr_assert_eq(seldon_buf_reserve(&b, SIZE_MAX), SELDON_ENOMEM);
    seldon_buf_free(&b);
    cr_assert_null(b.data);
    seldon_buf_free(NULL);
}

Test(core, datatype_table)
{
    int32_t dt;
    for (dt = SELDON_DT_BOOL; dt <= SELDON_DT_BYTES; dt++) {
        const char *n = seldon_datatype_name(dt);
        cr_assert_eq(seldon_datatype_from_name(n, strlen(n)), dt);
    }
    cr_assert_eq(seldon_datatype_size(SELDON_DT_FP16), 2);
    cr_assert_eq(seldon_datatype_size(SELDON_DT_BYTES), 0);
    cr_assert_eq(seldon_datatype_from_name("FP3", 3), SELDON_DT_INVALID);
    cr_assert_eq(seldon_datatype_from_name("fp32", 4), SELDON_DT_INVALID);
    cr_assert_str_eq(seldon_datatype_name(99), "INVALID");
}

Test(core, builder_rejects_bad_tensors)
{
    seldon_msg *m = NULL;
    const int64_t shape[2] = {2, 3}, neg[1] = {-1};
    float data[6] = {0};
    const uint8_t bytes_bad[3] = {9, 0, 0};
    seldon_tensor t;
    size_t idx;

    cr_assert_eq(seldon_msg_new(NULL, SELDON_MSG_REQUEST), SELDON_EINVAL);
    cr_assert_eq(seldon_msg_new(&m, 7), SELDON_EINVAL);
    cr_assert_eq(seldon_msg_new(&m, SELDON_MSG_REQUEST), 0);
    cr_assert_eq(seldon_msg_add_tensor(NULL, m, "x", 1, SELDON_DT_FP32, shape, 2, data, 20, 0),
                 SELDON_ESHAPE);
    cr_assert_eq(seldon_msg_add_tensor(NULL, m, "x", 1, 77, shape, 2, data, 24, 0),
                 SELDON_EDATATYPE);
    cr_assert_eq(seldon_msg_add_tensor(NULL, m, "x", 1, SELDON_DT_FP32, neg, 1, data, 0, 0),
                 SELDON_ESHAPE);
    cr_assert_eq(seldon_msg_add_tensor(NULL, m, "b", 1, SELDON_DT_BYTES, shape, 1, bytes_bad, 3, 0),
                 SELDON_EPARSE);
    cr_assert_eq(seldon_msg_add_tensor(NULL, m, "x", 1, SELDON_DT_FP32, shape, 2, data, 24,
                                       SELDON_TENSOR_ALLOC),
                 SELDON_EINVAL);
    cr_assert_eq(seldon_msg_tensor_count(m), 0, "failed adds leave nothing behind");
    cr_assert_eq(seldon_msg_add_tensor(&idx, m, "x", 1, SELDON_DT_FP32, shape, 2, data, 24,
                                       SELDON_TENSOR_BORROW),
                 0);
    cr_assert_eq(seldon_msg_tensor(&t, m, idx), 0);
    cr_assert_eq(t.data, (void *)data, "borrowed data is not copied");
    cr_assert_eq(t.count, 6);
    cr_assert_eq(seldon_msg_tensor(&t, m, 1), SELDON_ENOTFOUND);
    cr_assert_eq(seldon_msg_find_tensor(&idx, m, "y", 1), SELDON_ENOTFOUND);
    cr_assert_eq(seldon_msg_reset(m, SELDON_MSG_RESPONSE), 0);
    cr_assert_eq(seldon_msg_tensor_count(m), 0);
    cr_assert_eq(seldon_msg_add_output(NULL, m, "o", 1), SELDON_ESTATE);
    seldon_msg_free(m);
    seldon_msg_free(NULL);
}
