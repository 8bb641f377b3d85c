/*
 * proto3 strings on the gRPC path: every string field must be UTF-8 and a
 * NUL must not cut a name short; refusals name the field as the JSON decoder
 * does. Messages are written byte by byte so that nothing in the way (a
 * protobuf library) cleans them first. Also: error messages stay UTF-8
 * whatever they quote.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "seldon/oip.h"

#define CHECK_FAILS(rc, needle)                                                                    \
    do {                                                                                           \
        int rc_ = (rc);                                                                            \
        cr_assert_eq(rc_, SELDON_EPARSE, "gave %s: %s", seldon_error_name(rc_),                    \
                     seldon_last_error());                                                         \
        cr_assert(strstr(seldon_last_error(), (needle)) != NULL, "'%s' lacks '%s'",              \
                  seldon_last_error(), (needle));                                                  \
    } while (0)

/* ModelInferRequest{model_name: <name>, inputs: [{name: <tensor>, datatype: FP32, shape: [1]}],
 *                   raw_input_contents: [1.0f]} */
static size_t infer_request(uint8_t *out, const char *name, size_t nlen, const char *tensor,
                            size_t tlen)
{
    size_t n = 0, tstart;
    out[n++] = 0x0a;
    out[n++] = (uint8_t)nlen;
    memcpy(out + n, name, nlen);
    n += nlen;
    out[n++] = 0x2a;
    tstart = n++;
    out[n++] = 0x0a;
    out[n++] = (uint8_t)tlen;
    memcpy(out + n, tensor, tlen);
    n += tlen;
    memcpy(out + n, "\x12\x04" "FP32" "\x1a\x01\x01", 9);
    n += 9;
    out[tstart] = (uint8_t)(n - tstart - 1);
    memcpy(out + n, "\x3a\x04\x00\x00\x80\x3f", 6);
    return n + 6;
}

static int decode(const uint8_t *buf, size_t len)
{
    seldon_msg *msg = NULL;
    int rc;
    cr_assert_eq(seldon_msg_new(&msg, SELDON_MSG_REQUEST), 0);
    rc = seldon_msg_decode_pb(msg, buf, len, 0);
    seldon_msg_free(msg);
    return rc;
}

Test(pb_strings, valid_request_decodes)
{
    uint8_t buf[128];
    size_t n = infer_request(buf, "add10", 5, "INPUT", 5);
    cr_assert_eq(decode(buf, n), 0, "%s", seldon_last_error());
    /* Multibyte UTF-8 is fine. */
    n = infer_request(buf, "mod\xc3\xa9l\xe2\x9c\x93", 9, "\xf0\x9f\x98\x80", 4);
    cr_assert_eq(decode(buf, n), 0, "%s", seldon_last_error());
}

Test(pb_strings, nul_in_model_or_tensor_name_is_refused)
{
    uint8_t buf[128];
    size_t n = infer_request(buf, "add10\0evil", 10, "INPUT", 5);
    CHECK_FAILS(decode(buf, n), "model_name: at byte 5: a NUL byte is not allowed");
    n = infer_request(buf, "add10", 5, "INPUT\0x", 7);
    CHECK_FAILS(decode(buf, n), "inputs[0].name: at byte 5: a NUL byte");
}

Test(pb_strings, invalid_utf8_is_refused_naming_the_field)
{
    static const struct {
        const char *s;
        size_t len;
    } bad[] = {
        {"\xff\xfe", 2},         /* never valid */
        {"a\xc3", 2},            /* truncated sequence */
        {"\xc0\xaf", 2},         /* overlong '/' */
        {"\xed\xa0\x80", 3},     /* UTF-16 surrogate */
        {"\xf4\x90\x80\x80", 4}, /* past U+10FFFF */
    };
    uint8_t buf[128];
    size_t i, n;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        n = infer_request(buf, bad[i].s, bad[i].len, "x", 1);
        CHECK_FAILS(decode(buf, n), "model_name: at byte");
        cr_assert(strstr(seldon_last_error(), "invalid UTF-8") != NULL);
        n = infer_request(buf, "m", 1, bad[i].s, bad[i].len);
        CHECK_FAILS(decode(buf, n), "inputs[0].name: at byte");
    }
}

Test(pb_strings, ids_outputs_and_parameters_are_checked)
{
    /* id (field 3) */
    static const uint8_t id[] = {0x0a, 0x01, 'm', 0x1a, 0x02, 'i', 0xff};
    /* outputs[0].name (field 6 -> 1) */
    static const uint8_t out[] = {0x0a, 0x01, 'm', 0x32, 0x03, 0x0a, 0x01, 0x80};
    /* parameters{"k": {string_param: "\xe2\x82"}} (field 4, map entry: key 1, value 2 -> 3) */
    static const uint8_t param[] = {0x0a, 0x01, 'm', 0x22, 0x09, 0x0a, 0x01, 'k',
                                    0x12, 0x04, 0x1a, 0x02, 0xe2, 0x82};
    CHECK_FAILS(decode(id, sizeof(id)), "id: at byte 1: invalid UTF-8");
    CHECK_FAILS(decode(out, sizeof(out)), "outputs[0].name: at byte 0");
    CHECK_FAILS(decode(param, sizeof(param)), "parameters[0].value.string_param: at byte 0");
}

Test(pb_strings, other_service_messages)
{
    /* ModelReadyRequest{name: "add10\0evil"} */
    static const uint8_t ready[] = {0x0a, 0x0a, 'a', 'd', 'd', '1', '0', 0, 'e', 'v', 'i', 'l'};
    static const uint8_t ok[] = {0x0a, 0x05, 'a', 'd', 'd', '1', '0'};
    CHECK_FAILS(seldon_pb_check_strings(ready, sizeof(ready), "inference.ModelReadyRequest"),
                "name: at byte 5: a NUL byte");
    cr_assert_eq(seldon_pb_check_strings(ok, sizeof(ok), "inference.ModelReadyRequest"), 0);
    cr_assert_eq(seldon_pb_check_strings(ready, sizeof(ready), "inference.RepositoryModelLoadRequest"),
                 SELDON_EPARSE, "model_name is field 1 there too");
    cr_assert_eq(seldon_pb_check_strings(ok, sizeof(ok), "inference.NoSuchMessage"),
                 SELDON_ENOTFOUND);
    cr_assert_eq(seldon_pb_check_strings(NULL, 1, "inference.ModelReadyRequest"), SELDON_EINVAL);
}

Test(pb_strings, error_messages_stay_utf8)
{
    const unsigned char *m;
    seldon_set_error(SELDON_ENOTFOUND, "model \xff\xfe not found");
    cr_assert_str_eq(seldon_last_error(), "model \xef\xbf\xbd\xef\xbf\xbd not found");
    seldon_set_error(SELDON_ENOTFOUND, "ok \xc3\xa9 stays");
    cr_assert_str_eq(seldon_last_error(), "ok \xc3\xa9 stays");
    /* A long message cut inside a sequence is cut at a character boundary instead. */
    {
        char big[700];
        memset(big, 'a', sizeof(big));
        for (size_t i = 0; i + 1 < sizeof(big); i += 2) {
            big[i] = (char)0xc3;
            big[i + 1] = (char)0xa9;
        }
        big[sizeof(big) - 1] = '\0';
        seldon_set_error(SELDON_EINVAL, big);
    }
    for (m = (const unsigned char *)seldon_last_error(); *m; m++)
        if (*m == 0xc3)
            cr_assert(m[1] == 0xa9, "a sequence was cut");
}
