/*
 * The JSON decoder's error messages, pinned byte for byte where they carry a
 * path: the decoder keeps the path as steps and writes it out only for an
 * error, and these tests hold the text to what eager building gave (keys cut
 * at 48 bytes on a UTF-8 boundary, indices, the binary extension's checks).
 */
#include <criterion/criterion.h>
#include <string.h>

#include "seldon/oip.h"

static void expect_exact(int32_t kind, const char *body, size_t len, size_t json_len, int code,
                         const char *text)
{
    seldon_msg *m = NULL;
    int rc;
    cr_assert_eq(seldon_msg_new(&m, kind), 0);
    rc = seldon_msg_decode_json(m, body, len, json_len, 0);
    cr_assert_eq(rc, code, "gave %s: %s", seldon_error_name(rc), seldon_last_error());
    cr_assert_str_eq(seldon_last_error(), text);
    seldon_msg_free(m);
}

#define EXPECT(body, code, text)                                                                   \
    expect_exact(SELDON_MSG_REQUEST, (body), sizeof(body) - 1, 0, (code), (text))

Test(json_errors, root_and_members)
{
    EXPECT("[]", SELDON_EPARSE, "<root>: expected an object");
    EXPECT("{\"id\": 5, \"inputs\": []}", SELDON_EPARSE, "id: expected a string");
    EXPECT(
        "{\"inputs\": [{\"name\": \"a\", \"datatype\": \"FP32\", \"shape\": [1], \"data\": [1]}, "
        "{\"name\": \"b\", \"datatype\": \"FP32\", \"shape\": [2], \"data\": [1, \"x\"]}]}",
        SELDON_EPARSE, "inputs[1].data[1]: expected a number");
    EXPECT("{\"inputs\": [{\"name\": \"a\", \"datatype\": \"FP32\", \"shape\": [1], \"data\": [1], "
           "\"parameters\": {\"p\": 1, \"q\": null}}]}",
           SELDON_EPARSE, "inputs[0].parameters.q: expected a string, bool or number");
    EXPECT("{\"inputs\": [], \"outputs\": [{\"name\": \"o\"}, {\"name\": \"p\", \"parameters\": "
           "{\"x\": [1]}}]}",
           SELDON_EPARSE, "outputs[1].parameters.x: expected a string, bool or number");
}

Test(json_errors, long_keys_are_cut_on_a_character)
{
    /* 47 ASCII bytes then a 2-byte character: the cut at 48 falls inside it, so 47 stay. */
    EXPECT("{\"inputs\": [], \"parameters\": "
           "{\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\xc3\xa9"
           "zz\": {}}}",
           SELDON_EPARSE,
           "parameters.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa: expected a string, bool or "
           "number");
}

Test(json_errors, binary_extension)
{
    static const char bool_json[] =
        "{\"inputs\":[{\"name\":\"b\",\"datatype\":\"BOOL\",\"shape\":[3],"
        "\"parameters\":{\"binary_data_size\":3}}]}";
    static const char neg_json[] =
        "{\"inputs\":[{\"name\":\"b\",\"datatype\":\"BOOL\",\"shape\":[3],"
        "\"parameters\":{\"binary_data_size\":-1}}]}";
    static const char bytes_json[] =
        "{\"inputs\":[{\"name\":\"a\",\"datatype\":\"BOOL\",\"shape\":[0],\"data\":[]},"
        "{\"name\":\"s\",\"datatype\":\"BYTES\",\"shape\":[1],"
        "\"parameters\":{\"binary_data_size\":6}}]}";
    char body[256];
    size_t n = sizeof(bool_json) - 1;

    memcpy(body, bool_json, n);
    memcpy(body + n, "\x01\x02\x01", 3);
    expect_exact(SELDON_MSG_REQUEST, body, n + 3, n, SELDON_ERANGE,
                 "inputs[0]: BOOL element 1 is 2; expected 0 or 1");

    n = sizeof(neg_json) - 1;
    memcpy(body, neg_json, n);
    expect_exact(SELDON_MSG_REQUEST, body, n + 3, n, SELDON_EPARSE,
                 "inputs[0].parameters.binary_data_size: expected a non-negative integer");

    n = sizeof(bytes_json) - 1;
    memcpy(body, bytes_json, n);
    memcpy(body + n, "\x09\x00\x00\x00hi", 6);
    expect_exact(SELDON_MSG_REQUEST, body, n + 6, n, SELDON_EPARSE,
                 "inputs[1]: BYTES element 0 of 9 bytes overruns the data");
}
