/*
 * Helpers shared by the codec tests: checks of calls, and message comparisons
 * (what one codec wrote, the other read back, field by field, data bit for bit).
 */
#ifndef SDN_TEST_OIP_ASSERT_H
#define SDN_TEST_OIP_ASSERT_H

#include <criterion/criterion.h>
#include <string.h>

#include "seldon/oip.h"

/* A call that must succeed; one that must fail with code and a message containing needle. */
#define CHECK_OK(expr) cr_assert_eq((expr), 0, "%s: %s", #expr, seldon_last_error())
#define CHECK_ERR(expr, code, needle)                                                              \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        cr_assert_eq(rc_, (code), "%s gave %s: %s", #expr, seldon_error_name(rc_),                 \
                     seldon_last_error());                                                         \
        cr_assert(strstr(seldon_last_error(), (needle)) != NULL, "'%s' lacks '%s'",                \
                  seldon_last_error(), (needle));                                                  \
    } while (0)

static inline seldon_msg *new_msg(int32_t kind)
{
    seldon_msg *m = NULL;
    CHECK_OK(seldon_msg_new(&m, kind));
    return m;
}

#define OIP_CMP_MODEL 0x1u  /* model name and version (REST requests carry them in the URL) */
#define OIP_CMP_BINARY 0x2u /* binary marks (a JSON notion: protobuf does not carry them) */

static inline void oip_assert_params_equal(const seldon_msg *a, const seldon_msg *b, int32_t scope,
                                           size_t index)
{
    size_t n = seldon_msg_param_count(a, scope, index), k;
    cr_assert_eq(n, seldon_msg_param_count(b, scope, index), "param count, scope %d", scope);
    for (k = 0; k < n; k++) {
        seldon_param pa, pb;
        cr_assert_eq(seldon_msg_param(&pa, a, scope, index, k), 0);
        cr_assert_eq(seldon_msg_param(&pb, b, scope, index, k), 0);
        cr_assert_eq(pa.name_len, pb.name_len);
        cr_assert_eq(memcmp(pa.name, pb.name, pa.name_len), 0, "param %s: order or name", pa.name);
        cr_assert_eq(pa.type, pb.type, "param %s type", pa.name);
        switch (pa.type) {
        case SELDON_PARAM_BOOL:
            cr_assert_eq(pa.bool_value, pb.bool_value);
            break;
        case SELDON_PARAM_INT64:
            cr_assert_eq(pa.int64_value, pb.int64_value);
            break;
        case SELDON_PARAM_DOUBLE:
            cr_assert_eq(memcmp(&pa.double_value, &pb.double_value, 8), 0);
            break;
        default:
            cr_assert_eq(pa.string_len, pb.string_len);
            cr_assert_eq(memcmp(pa.string_value, pb.string_value, pa.string_len), 0);
        }
    }
}

static inline void oip_assert_msgs_equal(const seldon_msg *a, const seldon_msg *b, uint32_t what)
{
    size_t i, n = seldon_msg_tensor_count(a);
    cr_assert_str_eq(seldon_msg_id(a, NULL), seldon_msg_id(b, NULL));
    if (what & OIP_CMP_MODEL) {
        cr_assert_str_eq(seldon_msg_model_name(a, NULL), seldon_msg_model_name(b, NULL));
        cr_assert_str_eq(seldon_msg_model_version(a, NULL), seldon_msg_model_version(b, NULL));
    }
    cr_assert_eq(n, seldon_msg_tensor_count(b));
    oip_assert_params_equal(a, b, SELDON_SCOPE_MSG, 0);
    for (i = 0; i < n; i++) {
        seldon_tensor ta, tb;
        cr_assert_eq(seldon_msg_tensor(&ta, a, i), 0);
        cr_assert_eq(seldon_msg_tensor(&tb, b, i), 0);
        cr_assert_eq(ta.name_len, tb.name_len);
        cr_assert_eq(memcmp(ta.name, tb.name, ta.name_len), 0);
        cr_assert_eq(ta.datatype, tb.datatype, "tensor %s", ta.name);
        cr_assert_eq(ta.ndim, tb.ndim);
        cr_assert_eq(ta.count, tb.count);
        if (ta.ndim)
            cr_assert_eq(memcmp(ta.shape, tb.shape, ta.ndim * sizeof(int64_t)), 0);
        cr_assert_eq(ta.nbytes, tb.nbytes, "tensor %s nbytes", ta.name);
        if (ta.nbytes)
            cr_assert_eq(memcmp(ta.data, tb.data, ta.nbytes), 0, "tensor %s data", ta.name);
        if (what & OIP_CMP_BINARY)
            cr_assert_eq(seldon_msg_is_binary(a, i), seldon_msg_is_binary(b, i));
        oip_assert_params_equal(a, b, SELDON_SCOPE_TENSOR, i);
    }
    cr_assert_eq(seldon_msg_output_count(a), seldon_msg_output_count(b));
    for (i = 0; i < seldon_msg_output_count(a); i++) {
        cr_assert_str_eq(seldon_msg_output_name(a, i, NULL), seldon_msg_output_name(b, i, NULL));
        oip_assert_params_equal(a, b, SELDON_SCOPE_OUTPUT, i);
    }
}

#endif
