/* The REST JSON codec: KServe V2 requests and responses, with the binary tensor data extension. */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "oip_assert.h"
#include "seldon/oip.h"

static int dec(seldon_msg *m, const char *json)
{
    return seldon_msg_decode_json(m, json, strlen(json), 0, 0);
}

/* Decodes json as a request and checks the failure, and that it left the message empty. */
static void req_fails(const char *json, int code, const char *needle)
{
    seldon_msg *m = new_msg(SELDON_MSG_REQUEST);
    CHECK_ERR(dec(m, json), code, needle);
    cr_assert_eq(seldon_msg_tensor_count(m), 0);
    cr_assert_eq(seldon_msg_output_count(m), 0);
    cr_assert_eq(seldon_msg_param_count(m, SELDON_SCOPE_MSG, 0), 0);
    seldon_msg_free(m);
}

/* A request whose one input "x" has the given datatype, shape and data texts. */
static const char *one_input(char *buf, size_t size, const char *dt, const char *shape,
                             const char *data)
{
    snprintf(buf, size,
             "{\"inputs\":[{\"name\":\"x\",\"datatype\":\"%s\",\"shape\":%s,\"data\":%s}]}", dt,
             shape, data);
    return buf;
}

static seldon_msg *decode_one(const char *dt, const char *shape, const char *data, seldon_tensor *t)
{
    static char buf[100000];
    seldon_msg *m = new_msg(SELDON_MSG_REQUEST);
    CHECK_OK(dec(m, one_input(buf, sizeof(buf), dt, shape, data)));
    cr_assert_eq(seldon_msg_tensor_count(m), 1);
    CHECK_OK(seldon_msg_tensor(t, m, 0));
    return m;
}

static void one_fails(const char *dt, const char *shape, const char *data, int code,
                      const char *needle)
{
    char buf[4096];
    req_fails(one_input(buf, sizeof(buf), dt, shape, data), code, needle);
}

/* Encodes m into a NUL-terminated string (JSON part only); caller frees. */
static char *enc(const seldon_msg *m, uint32_t flags)
{
    seldon_buf b = SELDON_BUF_INIT;
    size_t jl = 12345;
    char *s;
    CHECK_OK(seldon_msg_encode_json(&b, &jl, m, flags));
    cr_assert_leq(jl, b.len);
    s = malloc(jl + 1);
    memcpy(s, b.data, jl);
    s[jl] = '\0';
    seldon_buf_free(&b);
    return s;
}

static void add(seldon_msg *m, const char *name, int32_t dt, const int64_t *shape, uint32_t ndim,
                const void *data, size_t nbytes)
{
    CHECK_OK(seldon_msg_add_tensor(NULL, m, name, strlen(name), dt, shape, ndim, data, nbytes,
                                   SELDON_TENSOR_COPY));
}

static void add_param(seldon_msg *m, int32_t scope, size_t index, const char *name, int32_t type,
                      int64_t i, double d, const char *s)
{
    seldon_param p = {0};
    p.name = name;
    p.name_len = strlen(name);
    p.type = type;
    p.bool_value = (int32_t)i;
    p.int64_value = i;
    p.double_value = d;
    p.string_value = s;
    p.string_len = s ? strlen(s) : 0;
    CHECK_OK(seldon_msg_add_param(m, scope, index, &p));
}

/* Everything but a request's model name and version, which REST carries in the URL. */
static void assert_msgs_equal(const seldon_msg *a, const seldon_msg *b)
{
    oip_assert_msgs_equal(a, b,
                          OIP_CMP_BINARY |
                              (seldon_msg_kind(a) == SELDON_MSG_RESPONSE ? OIP_CMP_MODEL : 0));
}

/* encode -> decode, checking json_len, that nothing changed, and that re-encoding is identical. */
static void roundtrip_ex(const seldon_msg *m, uint32_t flags, int same_bits)
{
    seldon_buf b1 = SELDON_BUF_INIT, b2 = SELDON_BUF_INIT;
    seldon_msg *back = new_msg(seldon_msg_kind(m));
    size_t jl1 = 0, jl2 = 0;

    CHECK_OK(seldon_msg_encode_json(&b1, &jl1, m, flags));
    CHECK_OK(seldon_msg_decode_json(back, b1.data, b1.len, jl1, 0));
    if (flags == 0 && same_bits)
        assert_msgs_equal(m, back);
    CHECK_OK(seldon_msg_encode_json(&b2, &jl2, back, 0));
    cr_assert_eq(jl1, jl2);
    cr_assert_eq(b1.len, b2.len);
    cr_assert_eq(memcmp(b1.data, b2.data, b1.len), 0, "%.*s\nvs\n%.*s", (int)jl1, b1.data, (int)jl2,
                 b2.data);
    seldon_buf_free(&b1);
    seldon_buf_free(&b2);
    seldon_msg_free(back);
}

static void roundtrip(const seldon_msg *m, uint32_t flags)
{
    roundtrip_ex(m, flags, 1);
}

/* --- Requests, responses, keys ------------------------------------------ */

static const char full_request[] =
    "{\n"
    "  \"id\": \"req-7\",\n"
    "  \"model_name\": \"iris\", \"model_version\": \"3\",\n"
    "  \"parameters\": {\"s\": \"text\", \"b\": true, \"i\": -42, \"d\": 0.5},\n"
    "  \"inputs\": [\n"
    "    {\"name\": \"a\", \"datatype\": \"FP32\", \"shape\": [2, 2],\n"
    "     \"parameters\": {\"content_type\": \"np\", \"f\": false},\n"
    "     \"data\": [[1.5, -2], [3e2, 0.25]]},\n"
    "    {\"name\": \"b\", \"datatype\": \"BYTES\", \"shape\": [2], \"data\": [\"hi\", \"\"]},\n"
    "    {\"name\": \"c\", \"datatype\": \"INT64\", \"shape\": [3], \"data\": [1, -2, 3]}\n"
    "  ],\n"
    "  \"outputs\": [{\"name\": \"y\", \"parameters\": {\"binary_data\": true, \"n\": 7}},\n"
    "              {\"name\": \"z\"}]\n"
    "}\n";

Test(json, full_request)
{
    seldon_msg *m = new_msg(SELDON_MSG_REQUEST);
    seldon_tensor t;
    seldon_param p;
    const float a[4] = {1.5f, -2.0f, 300.0f, 0.25f};
    const int64_t c[3] = {1, -2, 3};
    const uint8_t b[] = {2, 0, 0, 0, 'h', 'i', 0, 0, 0, 0};
    size_t len;

    CHECK_OK(dec(m, full_request));
    cr_assert_str_eq(seldon_msg_id(m, &len), "req-7");
    cr_assert_eq(len, 5);
    cr_assert_str_eq(seldon_msg_model_name(m, NULL), "iris");
    cr_assert_str_eq(seldon_msg_model_version(m, NULL), "3");
    cr_assert_eq(seldon_msg_param_count(m, SELDON_SCOPE_MSG, 0), 4);
    CHECK_OK(seldon_msg_find_param(&p, m, SELDON_SCOPE_MSG, 0, "s", 1));
    cr_assert_eq(p.type, SELDON_PARAM_STRING);
    cr_assert_str_eq(p.string_value, "text");
    CHECK_OK(seldon_msg_find_param(&p, m, SELDON_SCOPE_MSG, 0, "b", 1));
    cr_assert(p.type == SELDON_PARAM_BOOL && p.bool_value == 1);
    CHECK_OK(seldon_msg_find_param(&p, m, SELDON_SCOPE_MSG, 0, "i", 1));
    cr_assert(p.type == SELDON_PARAM_INT64 && p.int64_value == -42);
    CHECK_OK(seldon_msg_find_param(&p, m, SELDON_SCOPE_MSG, 0, "d", 1));
    cr_assert(p.type == SELDON_PARAM_DOUBLE && p.double_value == 0.5);

    cr_assert_eq(seldon_msg_tensor_count(m), 3);
    CHECK_OK(seldon_msg_tensor(&t, m, 0));
    cr_assert_str_eq(t.name, "a");
    cr_assert_eq(t.datatype, SELDON_DT_FP32);
    cr_assert(t.ndim == 2 && t.shape[0] == 2 && t.shape[1] == 2 && t.count == 4);
    cr_assert_eq(t.nbytes, sizeof(a));
    cr_assert_eq(memcmp(t.data, a, sizeof(a)), 0);
    cr_assert_eq(seldon_msg_param_count(m, SELDON_SCOPE_TENSOR, 0), 2);
    CHECK_OK(seldon_msg_find_param(&p, m, SELDON_SCOPE_TENSOR, 0, "f", 1));
    cr_assert(p.type == SELDON_PARAM_BOOL && p.bool_value == 0);
    cr_assert_eq(seldon_msg_is_binary(m, 0), 0);
    CHECK_OK(seldon_msg_tensor(&t, m, 1));
    cr_assert_eq(t.datatype, SELDON_DT_BYTES);
    cr_assert_eq(t.nbytes, sizeof(b));
    cr_assert_eq(memcmp(t.data, b, sizeof(b)), 0);
    CHECK_OK(seldon_msg_tensor(&t, m, 2));
    cr_assert_eq(memcmp(t.data, c, sizeof(c)), 0);

    cr_assert_eq(seldon_msg_output_count(m), 2);
    cr_assert_str_eq(seldon_msg_output_name(m, 0, NULL), "y");
    cr_assert_str_eq(seldon_msg_output_name(m, 1, NULL), "z");
    CHECK_OK(seldon_msg_find_param(&p, m, SELDON_SCOPE_OUTPUT, 0, "binary_data", 11));
    cr_assert(p.type == SELDON_PARAM_BOOL && p.bool_value == 1);
    CHECK_OK(seldon_msg_find_param(&p, m, SELDON_SCOPE_OUTPUT, 0, "n", 1));
    cr_assert(p.type == SELDON_PARAM_INT64 && p.int64_value == 7);
    cr_assert_eq(seldon_msg_param_count(m, SELDON_SCOPE_OUTPUT, 1), 0);
    seldon_msg_free(m);
}

Test(json, response_and_kinds)
{
    const char *resp = "{\"model_name\":\"m\",\"model_version\":\"v2\",\"id\":\"r\",\"inputs\":7,"
                       "\"outputs\":[{\"name\":\"o\",\"datatype\":\"INT32\",\"shape\":[1],"
                       "\"data\":[5]}]}";
    seldon_msg *m = new_msg(SELDON_MSG_RESPONSE);
    seldon_tensor t;

    /* A response's "inputs" is nobody's business: skipped like any unknown key. */
    CHECK_OK(dec(m, resp));
    cr_assert_str_eq(seldon_msg_model_name(m, NULL), "m");
    cr_assert_str_eq(seldon_msg_model_version(m, NULL), "v2");
    cr_assert_eq(seldon_msg_tensor_count(m), 1);
    cr_assert_eq(seldon_msg_output_count(m), 0);
    CHECK_OK(seldon_msg_tensor(&t, m, 0));
    cr_assert_eq(*(int32_t *)t.data, 5);
    CHECK_ERR(dec(m, "{\"model_name\":\"m\"}"), SELDON_EPARSE, "<root>: missing \"outputs\"");
    CHECK_ERR(dec(m, "{\"error\":\"boom\"}"), SELDON_EPARSE, "missing \"outputs\"");
    cr_assert_eq(seldon_msg_tensor_count(m), 0);
    seldon_msg_free(m);

    req_fails("{\"id\":\"x\"}", SELDON_EPARSE, "<root>: missing \"inputs\"");
    req_fails(resp, SELDON_EPARSE, "inputs: expected an array");
    m = new_msg(SELDON_MSG_REQUEST);
    CHECK_OK(dec(m, "{\"inputs\":[]}"));
    cr_assert_eq(seldon_msg_tensor_count(m), 0);
    CHECK_OK(dec(m, "{\"inputs\":[],\"outputs\":[]}"));
    seldon_msg_free(m);
}

Test(json, decode_replaces_and_failure_empties)
{
    seldon_msg *m = new_msg(SELDON_MSG_REQUEST);
    CHECK_OK(dec(m, full_request));
    CHECK_OK(dec(m, "{\"inputs\":[{\"name\":\"q\",\"datatype\":\"BOOL\",\"shape\":[1],"
                    "\"data\":[true]}]}"));
    cr_assert_eq(seldon_msg_tensor_count(m), 1);
    cr_assert_eq(seldon_msg_output_count(m), 0);
    cr_assert_str_eq(seldon_msg_id(m, NULL), "");
    CHECK_OK(dec(m, full_request));
    CHECK_ERR(dec(m, "{\"inputs\":[{\"name\":\"q\"}]}"), SELDON_EPARSE,
              "inputs[0]: missing \"datatype\"");
    cr_assert_eq(seldon_msg_tensor_count(m), 0);
    cr_assert_eq(seldon_msg_output_count(m), 0);
    cr_assert_str_eq(seldon_msg_id(m, NULL), "");
    cr_assert_str_eq(seldon_msg_model_name(m, NULL), "");
    cr_assert_eq(seldon_msg_param_count(m, SELDON_SCOPE_MSG, 0), 0);
    cr_assert_eq(seldon_msg_kind(m), SELDON_MSG_REQUEST);
    seldon_msg_free(m);
}

Test(json, bad_arguments)
{
    seldon_msg *m = new_msg(SELDON_MSG_REQUEST);
    seldon_buf b = SELDON_BUF_INIT;
    size_t jl = 99;
    CHECK_ERR(seldon_msg_decode_json(NULL, "{}", 2, 0, 0), SELDON_EINVAL, "NULL");
    CHECK_ERR(seldon_msg_decode_json(m, NULL, 2, 0, 0), SELDON_EINVAL, "NULL");
    CHECK_ERR(seldon_msg_decode_json(m, NULL, 0, 0, 0), SELDON_EPARSE, "unexpected end of input");
    CHECK_ERR(seldon_msg_encode_json(NULL, &jl, m, 0), SELDON_EINVAL, "NULL");
    cr_assert_eq(jl, 0);
    CHECK_ERR(seldon_msg_encode_json(&b, NULL, NULL, 0), SELDON_EINVAL, "NULL");
    seldon_msg_free(m);
}

Test(json, keys_in_any_order_and_data_first)
{
    seldon_msg *m = new_msg(SELDON_MSG_REQUEST);
    seldon_tensor t;
    const int16_t want[6] = {1, 2, 3, -4, 5, 6};

    CHECK_OK(dec(m, "{\"outputs\":[{\"parameters\":{\"k\":1},\"name\":\"o\"}],\"inputs\":["
                    "{\"data\":[[1,2,3],[-4,5,6]],\"shape\":[2,3],\"name\":\"x\","
                    "\"datatype\":\"INT16\"},"
                    "{\"shape\":[2],\"data\":[7,8],\"datatype\":\"INT16\",\"name\":\"y\"},"
                    "{\"datatype\":\"INT16\",\"data\":[9],\"name\":\"z\",\"shape\":[1]}],"
                    "\"id\":\"late\"}"));
    cr_assert_str_eq(seldon_msg_id(m, NULL), "late");
    cr_assert_eq(seldon_msg_tensor_count(m), 3);
    CHECK_OK(seldon_msg_tensor(&t, m, 0));
    cr_assert_eq(t.count, 6);
    cr_assert_eq(memcmp(t.data, want, sizeof(want)), 0);
    CHECK_OK(seldon_msg_tensor(&t, m, 1));
    cr_assert(((int16_t *)t.data)[0] == 7 && ((int16_t *)t.data)[1] == 8);
    CHECK_OK(seldon_msg_tensor(&t, m, 2));
    cr_assert_eq(((int16_t *)t.data)[0], 9);
    cr_assert_str_eq(seldon_msg_output_name(m, 0, NULL), "o");
    seldon_msg_free(m);

    /* Deferred data is checked as strictly, with the same paths. */
    req_fails("{\"inputs\":[{\"data\":[1,2,\"x\"],\"name\":\"x\",\"datatype\":\"FP32\","
              "\"shape\":[3]}]}",
              SELDON_EPARSE, "inputs[0].data[2]: expected a number");
    req_fails("{\"inputs\":[{\"data\":[1,2],\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[3]}]}",
              SELDON_ESHAPE, "inputs[0].data: 2 elements, but shape [3] holds 3");
    req_fails("{\"inputs\":[{\"data\":[1,2,],\"name\":\"x\",\"datatype\":\"FP32\","
              "\"shape\":[3]}]}",
              SELDON_EPARSE, "inputs[0].data: at byte 24: expected a value");
    req_fails("{\"inputs\":[{\"data\":[1,2,3],\"name\":\"x\",\"shape\":[3]}]}", SELDON_EPARSE,
              "inputs[0]: missing \"datatype\"");
}

Test(json, duplicate_keys)
{
    req_fails("{\"id\":\"a\",\"inputs\":[],\"id\":\"b\"}", SELDON_EPARSE, "id: duplicate key");
    req_fails("{\"inputs\":[],\"inputs\":[]}", SELDON_EPARSE, "inputs: duplicate key");
    req_fails("{\"inputs\":[],\"parameters\":{},\"parameters\":{}}", SELDON_EPARSE,
              "parameters: duplicate key");
    req_fails("{\"inputs\":[{\"name\":\"x\",\"name\":\"y\",\"datatype\":\"BOOL\",\"shape\":[],"
              "\"data\":true}]}",
              SELDON_EPARSE, "inputs[0].name: duplicate key");
    req_fails("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"BOOL\",\"shape\":[1],\"data\":[true],"
              "\"data\":[false]}]}",
              SELDON_EPARSE, "inputs[0].data: duplicate key");
    req_fails("{\"inputs\":[{\"name\":\"x\",\"datatype\":\"BOOL\",\"shape\":[1],\"shape\":[1],"
              "\"data\":[true]}]}",
              SELDON_EPARSE, "inputs[0].shape: duplicate key");
    req_fails("{\"inputs\":[],\"outputs\":[{\"name\":\"a\",\"name\":\"b\"}]}", SELDON_EPARSE,
              "outputs[0].name: duplicate key");
    req_fails("{\"inputs\":[],\"parameters\":{\"a\":1,\"b\":2,\"a\":3}}", SELDON_EPARSE,
              "parameters.a: duplicate parameter");
    /* An escaped spelling of a known key is the same key. */
    req_fails("{\"inputs\":[],\"\\u0069d\":\"a\",\"id\":\"b\"}", SELDON_EPARSE,
              "id: duplicate key");
}

Test(json, unknown_keys_are_skipped)
{
    seldon_msg *m = new_msg(SELDON_MSG_REQUEST);
    seldon_tensor t;
    char deep[400];
    size_t i;

    CHECK_OK(dec(m, "{\"x\":{\"a\":[1,{\"b\":null},[[]],\"s\\\"]\"],\"c\":{}},\"inputs\":[{\"n\":1,"
                    "\"name\":\"x\",\"extra\":[true,false,null,-1.5e3,{\"d\":[\"}\"]}],"
                    "\"datatype\":\"UINT8\",\"shape\":[1],\"data\":[9],\"z\":\"\"}],"
                    "\"outputs\":[{\"name\":\"o\",\"what\":{\"ever\":[]}}],\"y\":NaN,"
                    "\"model\\u005fname\":\"escaped\"}"));
    cr_assert_eq(seldon_msg_tensor_count(m), 1);
    CHECK_OK(seldon_msg_tensor(&t, m, 0));
    cr_assert_eq(*(uint8_t *)t.data, 9);
    cr_assert_str_eq(seldon_msg_model_name(m, NULL), "escaped");
    seldon_msg_free(m);

    /* Skipped values are still validated. */
    req_fails("{\"inputs\":[],\"x\":[1,2}", SELDON_EPARSE, "x: at byte 21: expected ',' or ']'");
    req_fails("{\"inputs\":[],\"x\":{\"a\" 1}}", SELDON_EPARSE, "x: at byte 22: expected ':'");
    req_fails("{\"inputs\":[],\"x\":tru}", SELDON_EPARSE, "x: at byte 17: expected a value");
    req_fails("{\"inputs\":[],\"x\":01}", SELDON_EPARSE, "x: at byte 17");
    req_fails("{\"inputs\":[],\"x\":1.}", SELDON_EPARSE, "x: at byte 17");
    req_fails("{\"inputs\":[],\"x\":{1:2}}", SELDON_EPARSE, "expected a string key");
    req_fails("{\"inputs\":[],\"x\":[1,]}", SELDON_EPARSE, "x: at byte 20: expected a value");
    req_fails("{\"inputs\":[],\"x\":+1}", SELDON_EPARSE, "x: at byte 17");

    /* 64 levels of skipped nesting pass; 65 do not. */
    strcpy(deep, "{\"inputs\":[],\"x\":");
    for (i = 0; i < 64; i++)
        strcat(deep, "[");
    for (i = 0; i < 64; i++)
        strcat(deep, "]");
    strcat(deep, "}");
    m = new_msg(SELDON_MSG_REQUEST);
    CHECK_OK(dec(m, deep));
    seldon_msg_free(m);
    strcpy(deep, "{\"inputs\":[],\"x\":");
    for (i = 0; i < 65; i++)
        strcat(deep, "[");
    for (i = 0; i < 65; i++)
        strcat(deep, "]");
    strcat(deep, "}");
    req_fails(deep, SELDON_ETOOBIG, "x: at byte 81: nested deeper than 64 levels");
}

Test(json, top_level_and_trailing)
{
    seldon_msg *m = new_msg(SELDON_MSG_REQUEST);
    CHECK_OK(dec(m, " \t\r\n{ \"inputs\" : [ ] } \n\t"));
    seldon_msg_free(m);
    req_fails("[]", SELDON_EPARSE, "<root>: expected an object");
    req_fails("\"s\"", SELDON_EPARSE, "<root>: expected an object");
    req_fails("7", SELDON_EPARSE, "<root>: expected an object");
    req_fails("null", SELDON_EPARSE, "<root>: expected an object");
    req_fails("", SELDON_EPARSE, "<root>: at byte 0: unexpected end of input");
    req_fails("   ", SELDON_EPARSE, "<root>: at byte 3: unexpected end of input");
    req_fails("{\"inputs\":[]} x", SELDON_EPARSE, "<root>: at byte 14: expected the end");
    req_fails("{\"inputs\":[]}{}", SELDON_EPARSE, "at byte 13");
}

Test(json, embedded_nul_is_trailing_garbage)
{
    seldon_msg *m = new_msg(SELDON_MSG_REQUEST);
    static const char body[] = "{\"inputs\":[]}\0";
    CHECK_ERR(seldon_msg_decode_json(m, body, sizeof(body) - 1, 0, 0), SELDON_EPARSE,
              "at byte 13: expected the end of the JSON, found byte 0x00");
    seldon_msg_free(m);
}

/* --- Datatypes ---------------------------------------------------------- */

typedef struct int_case {
    const char *dt;
    const char *min, *max;     /* in range */
    const char *below, *above; /* one past each end */
} int_case;

static const int_case int_cases[] = {
    {"UINT8", "0", "255", "-1", "256"},
    {"UINT16", "0", "65535", "-1", "65536"},
    {"UINT32", "0", "4294967295", "-1", "4294967296"},
    {"UINT64", "0", "18446744073709551615", "-1", "18446744073709551616"},
    {"INT8", "-128", "127", "-129", "128"},
    {"INT16", "-32768", "32767", "-32769", "32768"},
    {"INT32", "-2147483648", "2147483647", "-2147483649", "2147483648"},
    {"INT64", "-9223372036854775808", "9223372036854775807", "-9223372036854775809",
     "9223372036854775808"},
};

Test(json, integer_ranges)
{
    size_t i;
    for (i = 0; i < sizeof(int_cases) / sizeof(int_cases[0]); i++) {
        const int_case *c = &int_cases[i];
        char data[128], needle[128];
        seldon_tensor t;
        seldon_msg *m;
        int32_t dt = seldon_datatype_from_name(c->dt, strlen(c->dt));
        size_t es = seldon_datatype_size(dt);
        uint64_t lo = 0, hi = 0;

        snprintf(data, sizeof(data), "[%s,0,%s]", c->min, c->max);
        m = decode_one(c->dt, "[3]", data, &t);
        cr_assert_eq(t.nbytes, 3 * es);
        memcpy(&lo, t.data, es);
        memcpy(&hi, (uint8_t *)t.data + 2 * es, es);
        if (c->dt[0] == 'U') {
            cr_assert_eq(lo, 0);
            cr_assert_eq(hi, es == 8 ? UINT64_MAX : (1ull << (8 * es)) - 1, "%s", c->dt);
        } else {
            /* The extremes are the two's complement patterns 0x80.. and 0x7f.. */
            cr_assert_eq(lo, 1ull << (8 * es - 1), "%s min", c->dt);
            cr_assert_eq(hi, (1ull << (8 * es - 1)) - 1, "%s max", c->dt);
        }
        seldon_msg_free(m);

        snprintf(data, sizeof(data), "[0,%s]", c->below);
        snprintf(needle, sizeof(needle), "inputs[0].data[1]: %s is out of range for %s", c->below,
                 c->dt);
        one_fails(c->dt, "[2]", data, SELDON_ERANGE, needle);
        snprintf(data, sizeof(data), "[%s]", c->above);
        snprintf(needle, sizeof(needle), "inputs[0].data[0]: %s is out of range for %s", c->above,
                 c->dt);
        one_fails(c->dt, "[1]", data, SELDON_ERANGE, needle);

        one_fails(c->dt, "[2]", "[1,1.5]", SELDON_EPARSE, "inputs[0].data[1]: expected an integer");
        one_fails(c->dt, "[1]", "[1e2]", SELDON_EPARSE, "inputs[0].data[0]: expected an integer");
        one_fails(c->dt, "[1]", "[1.0]", SELDON_EPARSE, "expected an integer");
        one_fails(c->dt, "[1]", "[\"1\"]", SELDON_EPARSE, "expected an integer");
        one_fails(c->dt, "[1]", "[true]", SELDON_EPARSE, "expected an integer");
        one_fails(c->dt, "[1]", "[NaN]", SELDON_EPARSE, "expected an integer");
        one_fails(c->dt, "[1]", "[01]", SELDON_EPARSE, "expected an integer");
        one_fails(c->dt, "[1]", "[-]", SELDON_EPARSE, "expected an integer");
    }
    one_fails("UINT64", "[1]", "[99999999999999999999999]", SELDON_ERANGE,
              "99999999999999999999999 is out of range for UINT64");
    one_fails("INT8", "[1]", "[-0.5]", SELDON_EPARSE, "expected an integer");
}

Test(json, bool_and_negative_zero_integers)
{
    seldon_tensor t;
    seldon_msg *m = decode_one("BOOL", "[3]", "[true, false ,true]", &t);
    const uint8_t want[3] = {1, 0, 1};
    cr_assert_eq(memcmp(t.data, want, 3), 0);
    seldon_msg_free(m);
    one_fails("BOOL", "[1]", "[1]", SELDON_EPARSE, "inputs[0].data[0]: expected true or false");
    one_fails("BOOL", "[1]", "[\"true\"]", SELDON_EPARSE, "expected true or false");
    one_fails("BOOL", "[2]", "[true,nul]", SELDON_EPARSE, "data[1]: expected true or false");
    one_fails("BOOL", "[1]", "[truex]", SELDON_EPARSE,
              "inputs[0].data[0]: at byte 65: expected ',' or ']', found 'x'");
    m = decode_one("UINT8", "[1]", "[-0]", &t);
    cr_assert_eq(*(uint8_t *)t.data, 0);
    seldon_msg_free(m);
}

Test(json, floats)
{
    seldon_tensor t;
    seldon_msg *m;
    const float f32[6] = {1.0f, -0.0f, 0.1f, 3.4028235e38f, 1e-45f, 7.0f};
    const double f64[5] = {0.1, -1e308, 4.9e-324, 2.0, -0.0};
    const uint16_t f16[5] = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x8000};
    float f;
    uint16_t h;

    m = decode_one("FP32", "[6]", "[1, -0.0, 0.1, 3.4028235e38, 1e-45, 7]", &t);
    cr_assert_eq(memcmp(t.data, f32, sizeof(f32)), 0);
    seldon_msg_free(m);
    m = decode_one("FP64", "[5]", "[0.1,-1e308,4.9e-324,2,-0.0]", &t);
    cr_assert_eq(memcmp(t.data, f64, sizeof(f64)), 0);
    seldon_msg_free(m);
    m = decode_one("FP16", "[5]", "[1,-2.0,65504,5.960464477539063e-8,-0]", &t);
    cr_assert_eq(memcmp(t.data, f16, sizeof(f16)), 0);
    seldon_msg_free(m);

    m = decode_one("FP32", "[3]", "[NaN,Infinity,-Infinity]", &t);
    cr_assert(isnan(((float *)t.data)[0]));
    cr_assert(isinf(((float *)t.data)[1]) && ((float *)t.data)[1] > 0);
    cr_assert(isinf(((float *)t.data)[2]) && ((float *)t.data)[2] < 0);
    seldon_msg_free(m);
    m = decode_one("FP64", "[2]", "[NaN,-Infinity]", &t);
    cr_assert(isnan(((double *)t.data)[0]) && isinf(((double *)t.data)[1]));
    seldon_msg_free(m);
    m = decode_one("FP16", "[3]", "[NaN,Infinity,-Infinity]", &t);
    memcpy(&h, (uint8_t *)t.data + 2, 2);
    cr_assert_eq(h, 0x7C00);
    memcpy(&h, (uint8_t *)t.data + 4, 2);
    cr_assert_eq(h, 0xFC00);
    memcpy(&h, t.data, 2);
    cr_assert((h & 0x7C00) == 0x7C00 && (h & 0x3FF) != 0);
    seldon_msg_free(m);

    /* Tiny values round to zero; finite values past the type's range are errors. */
    m = decode_one("FP32", "[1]", "[1e-60]", &t);
    memcpy(&f, t.data, 4);
    cr_assert_eq(f, 0.0f);
    seldon_msg_free(m);
    one_fails("FP32", "[2]", "[0,1e39]", SELDON_ERANGE,
              "inputs[0].data[1]: 1e39 is out of range for FP32");
    one_fails("FP32", "[1]", "[-3.5e38]", SELDON_ERANGE, "-3.5e38 is out of range for FP32");
    one_fails("FP64", "[1]", "[1e309]", SELDON_ERANGE, "1e309 is out of range for FP64");
    one_fails("FP16", "[1]", "[65520]", SELDON_ERANGE, "65520 is out of range for FP16");
    one_fails("FP16", "[1]", "[-1e5]", SELDON_ERANGE, "-1e5 is out of range for FP16");
    m = decode_one("FP16", "[1]", "[65519]", &t);
    memcpy(&h, t.data, 2);
    cr_assert_eq(h, 0x7BFF);
    seldon_msg_free(m);
    m = decode_one("FP64", "[1]", "[1e39]", &t);
    seldon_msg_free(m);

    one_fails("FP32", "[2]", "[1,\"2\"]", SELDON_EPARSE, "inputs[0].data[1]: expected a number");
    one_fails("FP32", "[1]", "[nan]", SELDON_EPARSE, "inputs[0].data[0]: expected a number");
    one_fails("FP32", "[1]", "[.5]", SELDON_EPARSE, "expected a number");
    one_fails("FP32", "[1]", "[1.]", SELDON_EPARSE, "expected a number");
    one_fails("FP32", "[1]", "[+1]", SELDON_EPARSE, "expected a number");
    one_fails("FP32", "[1]", "[null]", SELDON_EPARSE, "expected a number");
    one_fails("FP64", "[1]", "[true]", SELDON_EPARSE, "expected a number");
    one_fails("FP16", "[1]", "[{}]", SELDON_EPARSE, "expected a number");
}

Test(json, bytes)
{
    seldon_tensor t;
    seldon_msg *m = decode_one("BYTES", "[3]", "[\"abc\", \"\", \"\\u00ff\\n\"]", &t);
    const uint8_t want[] = {3, 0, 0, 0, 'a', 'b', 'c', 0, 0, 0, 0, 3, 0, 0, 0, 0xC3, 0xBF, '\n'};
    const uint8_t *e;
    uint32_t el;
    size_t off = 0;

    cr_assert_eq(t.nbytes, sizeof(want));
    cr_assert_eq(memcmp(t.data, want, sizeof(want)), 0);
    cr_assert_eq(seldon_bytes_next(&e, &el, &t, &off), 1);
    cr_assert(el == 3 && memcmp(e, "abc", 3) == 0);
    seldon_msg_free(m);
    one_fails("BYTES", "[2]", "[\"a\",1]", SELDON_EPARSE, "inputs[0].data[1]: expected a string");
    one_fails("BYTES", "[1]", "[null]", SELDON_EPARSE, "expected a string");
    one_fails("BYTES", "[1]", "[\"a\\q\"]", SELDON_EPARSE, "invalid escape");

    /* Elements large enough to grow the buffer several times. */
    {
        static char data[70000];
        size_t i, n = 0;
        n += (size_t)sprintf(data + n, "[");
        for (i = 0; i < 40; i++) {
            n += (size_t)sprintf(data + n, "%s\"", i ? "," : "");
            memset(data + n, 'a' + (int)(i % 26), 1000 + i);
            n += 1000 + i;
            n += (size_t)sprintf(data + n, "\"");
        }
        sprintf(data + n, "]");
        m = decode_one("BYTES", "[40]", data, &t);
        cr_assert_eq(t.nbytes, 40 * 4 + 40 * 1000 + 39 * 40 / 2);
        off = 0;
        for (i = 0; i < 40; i++) {
            cr_assert_eq(seldon_bytes_next(&e, &el, &t, &off), 1);
            cr_assert_eq(el, 1000 + i);
            cr_assert(e[0] == 'a' + (int)(i % 26) && e[el - 1] == e[0]);
        }
        seldon_msg_free(m);
    }
}

Test(json, unknown_datatype)
{
    one_fails("FP128", "[1]", "[1]", SELDON_EDATATYPE,
              "inputs[0].datatype: unknown datatype \"FP128\"");
    one_fails("fp32", "[1]", "[1]", SELDON_EDATATYPE, "unknown datatype \"fp32\"");
    one_fails("", "[1]", "[1]", SELDON_EDATATYPE, "unknown datatype \"\"");
    req_fails("{\"inputs\":[{\"name\":\"x\",\"datatype\":32,\"shape\":[1],\"data\":[1]}]}",
              SELDON_EPARSE, "inputs[0].datatype: expected a string");
    {
        seldon_tensor t;
        /* Escapes in a datatype name are still the name. */
        seldon_msg *m = decode_one("FP\\u00332", "[1]", "[1]", &t);
        cr_assert_eq(t.datatype, SELDON_DT_FP32);
        seldon_msg_free(m);
    }
}

/* --- Shapes and nesting ------------------------------------------------- */

Test(json, scalars_and_empty_tensors)
{
    seldon_tensor t;
    seldon_msg *m;

    m = decode_one("INT32", "[]", "[7]", &t);
    cr_assert(t.ndim == 0 && t.shape == NULL && t.count == 1 && *(int32_t *)t.data == 7);
    seldon_msg_free(m);
    m = decode_one("INT32", "[]", "-7", &t);
    cr_assert(t.ndim == 0 && t.count == 1 && *(int32_t *)t.data == -7);
    seldon_msg_free(m);
    m = decode_one("BYTES", "[]", "\"solo\"", &t);
    cr_assert(t.count == 1 && t.nbytes == 8);
    seldon_msg_free(m);
    m = decode_one("BOOL", "[ ]", "true", &t);
    cr_assert_eq(*(uint8_t *)t.data, 1);
    seldon_msg_free(m);
    one_fails("INT32", "[]", "[[7]]", SELDON_ESHAPE,
              "inputs[0].data: nested deeper than the shape's 0 dimensions");
    one_fails("INT32", "[]", "[]", SELDON_ESHAPE,
              "inputs[0].data: 0 elements, but shape [] holds 1");
    one_fails("INT32", "[]", "[1,2]", SELDON_ESHAPE, "2 elements, but shape [] holds 1");
    one_fails("INT32", "[1]", "7", SELDON_EPARSE, "inputs[0].data: expected an array");
    one_fails("INT32", "[]", "\"7\"", SELDON_EPARSE, "inputs[0].data: expected an integer");
    one_fails("FP32", "[]", "null", SELDON_EPARSE, "inputs[0].data: expected a number");

    m = decode_one("FP32", "[0]", "[]", &t);
    cr_assert(t.ndim == 1 && t.count == 0 && t.nbytes == 0);
    seldon_msg_free(m);
    m = decode_one("FP32", "[2,0]", "[]", &t);
    cr_assert(t.ndim == 2 && t.count == 0 && t.nbytes == 0);
    seldon_msg_free(m);
    m = decode_one("FP32", "[2,0]", "[[],[ ]]", &t);
    cr_assert(t.count == 0 && t.nbytes == 0);
    seldon_msg_free(m);
    m = decode_one("BYTES", "[0,3]", "[]", &t);
    cr_assert(t.count == 0 && t.nbytes == 0);
    seldon_msg_free(m);
    one_fails("FP32", "[0]", "[1]", SELDON_ESHAPE,
              "inputs[0].data: 1 elements, but shape [0] holds 0");
    one_fails("FP32", "[2,0]", "[[],[],[]]", SELDON_ESHAPE,
              "inputs[0].data: expected 2 elements along dimension 0, got 3");
    one_fails("FP32", "[2,0]", "[[],[1]]", SELDON_ESHAPE,
              "inputs[0].data[1]: expected 0 elements along dimension 1, got 1");
}

Test(json, shapes)
{
    seldon_tensor t;
    seldon_msg *m = decode_one("UINT8",
                               "[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,"
                               "1,1,1]",
                               "[5]", &t);
    cr_assert_eq(t.ndim, 32);
    seldon_msg_free(m);
    one_fails("UINT8", "[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]", "[5]",
              SELDON_ETOOBIG, "inputs[0].shape: more than 32 dimensions");
    one_fails("UINT8", "[2,-1]", "[]", SELDON_EPARSE,
              "inputs[0].shape[1]: expected a non-negative integer");
    one_fails("UINT8", "[2,1,1.5]", "[]", SELDON_EPARSE,
              "inputs[0].shape[2]: expected a non-negative integer");
    one_fails("UINT8", "[\"2\"]", "[]", SELDON_EPARSE,
              "inputs[0].shape[0]: expected a non-negative integer");
    one_fails("UINT8", "2", "[]", SELDON_EPARSE, "inputs[0].shape: expected an array");
    one_fails("UINT8", "[2,]", "[]", SELDON_EPARSE, "inputs[0].shape[1]: expected a non-negative");
    one_fails("UINT8", "[9223372036854775808]", "[]", SELDON_ETOOBIG,
              "inputs[0].shape[0]: dimension too large");
    one_fails("UINT8", "[4294967296,4294967296]", "[]", SELDON_ETOOBIG,
              "inputs[0].shape: too many elements");
    /* A shape far beyond what the text could hold fails before anything is allocated. */
    one_fails("FP64", "[1000000000000]", "[1]", SELDON_ESHAPE,
              "inputs[0].data: shape [1000000000000] holds 1000000000000 elements");
    one_fails("FP64", "[1000000000,1000]", "[1,2]", SELDON_ESHAPE, "more than the body holds");
}

Test(json, nested_data)
{
    seldon_tensor t;
    seldon_msg *m;
    const int32_t want2[6] = {1, 2, 3, 4, 5, 6};
    const float want3[8] = {1, 2, 3, 4, 5, 6, 7, 8};

    m = decode_one("INT32", "[2,3]", "[[1,2,3],[4,5,6]]", &t);
    cr_assert_eq(memcmp(t.data, want2, sizeof(want2)), 0);
    seldon_msg_free(m);
    m = decode_one("INT32", "[2,3]", "[1,2,3,4,5,6]", &t);
    cr_assert_eq(memcmp(t.data, want2, sizeof(want2)), 0);
    seldon_msg_free(m);
    m = decode_one("FP32", "[2,2,2]", " [ [ [1,2] , [3,4] ] , [[5,6],[7,8]] ] ", &t);
    cr_assert_eq(memcmp(t.data, want3, sizeof(want3)), 0);
    seldon_msg_free(m);
    m = decode_one("BYTES", "[2,1]", "[[\"a\"],[\"bc\"]]", &t);
    cr_assert_eq(t.nbytes, 11);
    seldon_msg_free(m);

    one_fails("INT32", "[2,2]", "[[1,2],[3,4,5]]", SELDON_ESHAPE,
              "inputs[0].data[1]: expected 2 elements along dimension 1, got 3");
    one_fails("INT32", "[2,2]", "[[1,2],[3]]", SELDON_ESHAPE,
              "inputs[0].data[1]: expected 2 elements along dimension 1, got 1");
    one_fails("INT32", "[2,2]", "[[1,2],[3,4],[5,6]]", SELDON_ESHAPE,
              "inputs[0].data: expected 2 elements along dimension 0, got 3");
    one_fails("INT32", "[3,2]", "[[1,2],[3,4]]", SELDON_ESHAPE,
              "inputs[0].data: expected 3 elements along dimension 0, got 2");
    one_fails("INT32", "[2,2]", "[[1,2],3]", SELDON_ESHAPE,
              "inputs[0].data[1]: mixes arrays and scalars");
    one_fails("INT32", "[2,2]", "[1,[2,3]]", SELDON_ESHAPE,
              "inputs[0].data[1]: mixes arrays and scalars");
    one_fails("INT32", "[2,2]", "[[1,[2]],[3,4]]", SELDON_ESHAPE,
              "inputs[0].data[0][1]: mixes arrays and scalars");
    one_fails("INT32", "[4]", "[[1,2],[3,4]]", SELDON_ESHAPE,
              "inputs[0].data[0]: nested deeper than the shape's 1 dimensions");
    one_fails("INT32", "[2,2,1]", "[[1,2],[3,4]]", SELDON_ESHAPE,
              "inputs[0].data[0][0]: nested 2 levels deep, but the shape has 3 dimensions");
    one_fails("INT32", "[2,2]", "[[1,2],[3,\"4\"]]", SELDON_EPARSE,
              "inputs[0].data[1][1]: expected an integer");
    one_fails("INT32", "[2,2]", "[[1,2],[3,4]", SELDON_EPARSE,
              "inputs[0].data[1]: at byte 75: expected ',' or ']', found '}'");
    one_fails("INT32", "[2,2]", "[[1,2] [3,4]]", SELDON_EPARSE,
              "inputs[0].data[0]: at byte 70: expected ',' or ']', found '['");
    m = decode_one("INT32", "[1,2,2]", "[[[1,2],[3,4]]]", &t);
    cr_assert_eq(t.count, 4);
    seldon_msg_free(m);
}

/* --- Strings ------------------------------------------------------------ */

Test(json, string_escapes)
{
    seldon_msg *m = new_msg(SELDON_MSG_REQUEST);
    size_t len;
    const char *id;
    static const char want[] = "q\"b\\s/b\bf\fn\nr\rt\tu\x01"
                               "A\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80"
                               "\xF4\x8F\xBF\xBF"
                               "z";

    CHECK_OK(dec(m, "{\"inputs\":[],\"id\":\"q\\\"b\\\\s\\/b\\bf\\fn\\nr\\rt\\tu\\u0001\\u0041"
                    "\\u00e9\\u20AC\\ud83d\\ude00\\uDBFF\\uDFFFz\"}"));
    id = seldon_msg_id(m, &len);
    cr_assert_eq(len, sizeof(want) - 1);
    cr_assert_eq(memcmp(id, want, len), 0);
    /* A NUL would cut a name or id short in every C string it becomes: refused, by place. */
    cr_assert_eq(dec(m, "{\"inputs\":[],\"id\":\"nul\\u0000in\"}"), SELDON_EPARSE);
    cr_assert(strstr(seldon_last_error(), "id: at byte 18: \\u0000 is not allowed") != NULL,
              "%s", seldon_last_error());
    /* Raw UTF-8 passes through: 2, 3 and 4 byte sequences, and DEL. */
    CHECK_OK(dec(m, "{\"inputs\":[],\"id\":\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\x7F\"}"));
    cr_assert_str_eq(seldon_msg_id(m, NULL), "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\x7F");
    /* Long strings take the eight-bytes-at-a-time path, with an escape deep inside. */
    CHECK_OK(dec(m, "{\"inputs\":[],\"id\":\"0123456789abcdef0123456789abcdef\\n0123456789\"}"));
    cr_assert_str_eq(seldon_msg_id(m, NULL), "0123456789abcdef0123456789abcdef\n0123456789");
    seldon_msg_free(m);
}

Test(json, bad_strings)
{
    req_fails("{\"inputs\":[],\"id\":\"\\ud83d\"}", SELDON_EPARSE,
              "id: at byte 19: lone surrogate");
    req_fails("{\"inputs\":[],\"id\":\"\\ude00\"}", SELDON_EPARSE, "lone surrogate \\uDE00");
    req_fails("{\"inputs\":[],\"id\":\"\\ud83dx\"}", SELDON_EPARSE, "lone surrogate");
    req_fails("{\"inputs\":[],\"id\":\"\\ud83d\\u0041\"}", SELDON_EPARSE, "lone surrogate");
    req_fails("{\"inputs\":[],\"id\":\"\\ud83d\\ud83d\"}", SELDON_EPARSE, "lone surrogate");
    req_fails("{\"inputs\":[],\"id\":\"\\u12g4\"}", SELDON_EPARSE, "four hex digits");
    req_fails("{\"inputs\":[],\"id\":\"\\x\"}", SELDON_EPARSE, "id: at byte 19: invalid escape");
    req_fails("{\"inputs\":[],\"id\":\"\\U0041\"}", SELDON_EPARSE, "invalid escape");
    req_fails("{\"inputs\":[],\"id\":\"a\nb\"}", SELDON_EPARSE,
              "id: at byte 20: control character 0x0a");
    req_fails("{\"inputs\":[],\"id\":\"a\tb\"}", SELDON_EPARSE, "control character 0x09");
    req_fails("{\"inputs\":[],\"id\":\"\x1f\"}", SELDON_EPARSE, "control character 0x1f");
    /* Ill-formed UTF-8: overlong, surrogate, past U+10FFFF, stray and cut-short sequences. */
    req_fails("{\"inputs\":[],\"id\":\"\xC0\x80\"}", SELDON_EPARSE,
              "id: at byte 19: invalid UTF-8");
    req_fails("{\"inputs\":[],\"id\":\"\xE0\x80\xAF\"}", SELDON_EPARSE, "invalid UTF-8");
    req_fails("{\"inputs\":[],\"id\":\"\xED\xA0\x80\"}", SELDON_EPARSE, "invalid UTF-8");
    req_fails("{\"inputs\":[],\"id\":\"\xF4\x90\x80\x80\"}", SELDON_EPARSE, "invalid UTF-8");
    req_fails("{\"inputs\":[],\"id\":\"\xF5\x80\x80\x80\"}", SELDON_EPARSE, "invalid UTF-8");
    req_fails("{\"inputs\":[],\"id\":\"\x80\"}", SELDON_EPARSE, "invalid UTF-8");
    req_fails("{\"inputs\":[],\"id\":\"\xE2\x82\"}", SELDON_EPARSE, "invalid UTF-8");
    req_fails("{\"inputs\":[],\"id\":\"abcdefgh\xFF\"}", SELDON_EPARSE,
              "at byte 27: invalid UTF-8");
    req_fails("{\"inputs\":[],\"\xFF\":1}", SELDON_EPARSE, "<root>: at byte 14: invalid UTF-8");
    req_fails("{\"inputs\":[],\"id\":7}", SELDON_EPARSE, "id: expected a string");
    req_fails("{\"inputs\":[],\"model_name\":null}", SELDON_EPARSE,
              "model_name: expected a string");
    req_fails("{\"inputs\":[],\"model_version\":[]}", SELDON_EPARSE,
              "model_version: expected a string");
    req_fails("{\"inputs\":[{\"name\":1}]}", SELDON_EPARSE, "inputs[0].name: expected a string");
    req_fails("{\"inputs\":[],\"outputs\":[{\"name\":{}}]}", SELDON_EPARSE,
              "outputs[0].name: expected a string");
}

/* --- Parameters --------------------------------------------------------- */

static void check_four_params(const seldon_msg *m, int32_t scope, size_t index)
{
    seldon_param p;
    cr_assert_eq(seldon_msg_param_count(m, scope, index), 4);
    CHECK_OK(seldon_msg_param(&p, m, scope, index, 0));
    cr_assert(p.type == SELDON_PARAM_STRING && strcmp(p.string_value, "v\n") == 0);
    cr_assert_str_eq(p.name, "s\t");
    CHECK_OK(seldon_msg_param(&p, m, scope, index, 1));
    cr_assert(p.type == SELDON_PARAM_BOOL && p.bool_value == 0);
    CHECK_OK(seldon_msg_param(&p, m, scope, index, 2));
    cr_assert(p.type == SELDON_PARAM_INT64 && p.int64_value == INT64_MIN);
    CHECK_OK(seldon_msg_param(&p, m, scope, index, 3));
    cr_assert(p.type == SELDON_PARAM_DOUBLE && p.double_value == -1.25e-7);
}

Test(json, parameters_everywhere)
{
    seldon_msg *m = new_msg(SELDON_MSG_REQUEST);
    seldon_param p;
#define FOUR "{\"s\\t\":\"v\\n\",\"b\":false,\"i\":-9223372036854775808,\"d\":-1.25e-7}"
    CHECK_OK(dec(m, "{\"parameters\":" FOUR ",\"inputs\":[{\"name\":\"x\",\"parameters\":" FOUR
                    ",\"datatype\":\"BOOL\",\"shape\":[],\"data\":false}],"
                    "\"outputs\":[{\"name\":\"o\",\"parameters\":" FOUR "}]}"));
#undef FOUR
    check_four_params(m, SELDON_SCOPE_MSG, 0);
    check_four_params(m, SELDON_SCOPE_TENSOR, 0);
    check_four_params(m, SELDON_SCOPE_OUTPUT, 0);
    CHECK_OK(dec(m, "{\"inputs\":[],\"parameters\":{\"a\":9223372036854775807,\"b\":1.0,"
                    "\"c\":1e2,\"d\":NaN,\"e\":-Infinity,\"f\":-0,\"g\":\"\",\"\":true}}"));
    CHECK_OK(seldon_msg_find_param(&p, m, SELDON_SCOPE_MSG, 0, "a", 1));
    cr_assert(p.type == SELDON_PARAM_INT64 && p.int64_value == INT64_MAX);
    CHECK_OK(seldon_msg_find_param(&p, m, SELDON_SCOPE_MSG, 0, "b", 1));
    cr_assert(p.type == SELDON_PARAM_DOUBLE && p.double_value == 1.0);
    CHECK_OK(seldon_msg_find_param(&p, m, SELDON_SCOPE_MSG, 0, "c", 1));
    cr_assert(p.type == SELDON_PARAM_DOUBLE && p.double_value == 100.0);
    CHECK_OK(seldon_msg_find_param(&p, m, SELDON_SCOPE_MSG, 0, "d", 1));
    cr_assert(p.type == SELDON_PARAM_DOUBLE && isnan(p.double_value));
    CHECK_OK(seldon_msg_find_param(&p, m, SELDON_SCOPE_MSG, 0, "e", 1));
    cr_assert(p.type == SELDON_PARAM_DOUBLE && isinf(p.double_value));
    CHECK_OK(seldon_msg_find_param(&p, m, SELDON_SCOPE_MSG, 0, "f", 1));
    cr_assert(p.type == SELDON_PARAM_INT64 && p.int64_value == 0);
    CHECK_OK(seldon_msg_find_param(&p, m, SELDON_SCOPE_MSG, 0, "g", 1));
    cr_assert(p.type == SELDON_PARAM_STRING && p.string_len == 0);
    CHECK_OK(seldon_msg_find_param(&p, m, SELDON_SCOPE_MSG, 0, "", 0));
    cr_assert(p.type == SELDON_PARAM_BOOL && p.bool_value == 1);
    seldon_msg_free(m);

    req_fails("{\"inputs\":[],\"parameters\":{\"foo\":null}}", SELDON_EPARSE,
              "parameters.foo: expected a string, bool or number");
    req_fails("{\"inputs\":[],\"parameters\":{\"foo\":[1]}}", SELDON_EPARSE,
              "parameters.foo: expected a string, bool or number");
    req_fails("{\"inputs\":[],\"parameters\":{\"foo\":{}}}", SELDON_EPARSE,
              "parameters.foo: expected a string, bool or number");
    req_fails("{\"inputs\":[],\"parameters\":{\"foo\":-x}}", SELDON_EPARSE,
              "parameters.foo: expected a string, bool or number");
    req_fails(
        "{\"inputs\":[],\"outputs\":[{\"name\":\"o\",\"parameters\":{\"binary_data\":null}}]}",
        SELDON_EPARSE, "outputs[0].parameters.binary_data: expected a string, bool or number");
    req_fails("{\"inputs\":[{\"name\":\"x\",\"parameters\":{\"p\":[]},\"datatype\":\"BOOL\","
              "\"shape\":[],\"data\":false}]}",
              SELDON_EPARSE, "inputs[0].parameters.p: expected a string, bool or number");
    req_fails("{\"inputs\":[],\"parameters\":{\"big\":9223372036854775808}}", SELDON_ERANGE,
              "parameters.big: 9223372036854775808 is out of range");
    req_fails("{\"inputs\":[],\"parameters\":{\"big\":-9223372036854775809}}", SELDON_ERANGE,
              "parameters.big: -9223372036854775809 is out of range");
    req_fails("{\"inputs\":[],\"parameters\":{\"big\":1e999}}", SELDON_ERANGE,
              "parameters.big: 1e999 is out of range");
    req_fails("{\"inputs\":[],\"parameters\":[]}", SELDON_EPARSE, "parameters: expected an object");
    req_fails("{\"inputs\":[],\"parameters\":{\"a\" 1}}", SELDON_EPARSE,
              "parameters.a: at byte 31: expected ':'");
    req_fails("{\"inputs\":[],\"parameters\":{\"a\":1 \"b\":2}}", SELDON_EPARSE,
              "parameters: at byte 33: expected ',' or '}'");
}

Test(json, many_parameters)
{
    static char body[200000];
    seldon_msg *m = new_msg(SELDON_MSG_REQUEST);
    size_t n = 0, i;

    n += (size_t)sprintf(body + n, "{\"inputs\":[],\"parameters\":{");
    for (i = 0; i < 4096; i++)
        n += (size_t)sprintf(body + n, "%s\"p%zu\":%zu", i ? "," : "", i, i);
    sprintf(body + n, "}}");
    CHECK_OK(dec(m, body));
    cr_assert_eq(seldon_msg_param_count(m, SELDON_SCOPE_MSG, 0), 4096);
    sprintf(body + n, ",\"one_more\":1}}");
    CHECK_ERR(dec(m, body), SELDON_ETOOBIG, "parameters.one_more: more than 4096 parameters");
    seldon_msg_free(m);
}

/* --- Truncation and garbage ------------------------------------------- */

Test(json, every_truncation_fails_cleanly)
{
    seldon_msg *m = new_msg(SELDON_MSG_REQUEST);
    size_t len = strlen(full_request), cut;
    /* The last byte is a newline: dropping it still leaves a whole request. */
    for (cut = 0; cut + 1 < len; cut++) {
        char *copy = malloc(cut ? cut : 1);
        int rc;
        memcpy(copy, full_request, cut);
        rc = seldon_msg_decode_json(m, copy, cut, 0, 0);
        cr_assert(rc < 0, "prefix of %zu bytes decoded", cut);
        cr_assert_neq(seldon_last_error()[0], '\0');
        cr_assert_eq(seldon_msg_tensor_count(m), 0);
        free(copy);
    }
    CHECK_OK(seldon_msg_decode_json(m, full_request, len - 1, 0, 0));
    seldon_msg_free(m);
}

Test(json, every_byte_corruption_is_handled)
{
    /* Each byte replaced by a few troublemakers: the decoder may accept or refuse, never crash. */
    static const uint8_t bad[] = {0, '"', '\\', ']', '}', ',', 0xFF, 'x', '9', '['};
    seldon_msg *m = new_msg(SELDON_MSG_REQUEST);
    size_t len = strlen(full_request), i, k;
    char *copy = malloc(len);
    for (i = 0; i < len; i++) {
        for (k = 0; k < sizeof(bad); k++) {
            int rc;
            memcpy(copy, full_request, len);
            copy[i] = (char)bad[k];
            rc = seldon_msg_decode_json(m, copy, len, 0, 0);
            if (rc < 0) {
                cr_assert_neq(seldon_last_error()[0], '\0');
                cr_assert_eq(seldon_msg_tensor_count(m), 0);
            }
        }
    }
    free(copy);
    seldon_msg_free(m);
}

/* --- Binary extension --------------------------------------------------- */

/* Lays out json followed by n binary bytes at offset `shift` of a 16-byte-aligned buffer. */
typedef struct body {
    _Alignas(16) uint8_t mem[4096];
    uint8_t *p;
    size_t json_len, len;
} body;

static void body_make(body *b, size_t shift, const char *json, const void *bin, size_t n)
{
    b->p = b->mem + shift;
    b->json_len = strlen(json);
    memcpy(b->p, json, b->json_len);
    memcpy(b->p + b->json_len, bin, n);
    b->len = b->json_len + n;
}

static const char bin_json[] =
    "{\"inputs\":["
    "{\"name\":\"f\",\"datatype\":\"FP32\",\"shape\":[2],\"parameters\":{\"binary_data_size\":8}},"
    "{\"name\":\"j\",\"datatype\":\"INT8\",\"shape\":[2],\"data\":[-1,1]},"
    "{\"name\":\"s\",\"datatype\":\"BYTES\",\"shape\":[2],"
    "\"parameters\":{\"keep\":1,\"binary_data_size\":11}},"
    "{\"parameters\":{\"binary_data_size\":16},\"name\":\"i\",\"datatype\":\"INT64\","
    "\"shape\":[1,2]}]}";

static size_t bin_data(uint8_t *out)
{
    const float f[2] = {1.5f, -3.0f};
    const uint8_t s[11] = {3, 0, 0, 0, 'a', 'b', 'c', 0, 0, 0, 0};
    const int64_t i[2] = {INT64_MIN, 77};
    memcpy(out, f, 8);
    memcpy(out + 8, s, 11);
    memcpy(out + 19, i, 16);
    return 35;
}

static void check_bin_msg(const seldon_msg *m)
{
    seldon_tensor t;
    seldon_param p;
    cr_assert_eq(seldon_msg_tensor_count(m), 4);
    CHECK_OK(seldon_msg_tensor(&t, m, 0));
    cr_assert(t.nbytes == 8 && ((float *)t.data)[0] == 1.5f && ((float *)t.data)[1] == -3.0f);
    cr_assert_eq(seldon_msg_is_binary(m, 0), 1);
    cr_assert_eq(seldon_msg_param_count(m, SELDON_SCOPE_TENSOR, 0), 0);
    CHECK_OK(seldon_msg_tensor(&t, m, 1));
    cr_assert(t.nbytes == 2 && ((int8_t *)t.data)[0] == -1);
    cr_assert_eq(seldon_msg_is_binary(m, 1), 0);
    CHECK_OK(seldon_msg_tensor(&t, m, 2));
    cr_assert(t.nbytes == 11 && memcmp((uint8_t *)t.data + 4, "abc", 3) == 0);
    cr_assert_eq(seldon_msg_is_binary(m, 2), 1);
    cr_assert_eq(seldon_msg_param_count(m, SELDON_SCOPE_TENSOR, 2), 1);
    CHECK_OK(seldon_msg_param(&p, m, SELDON_SCOPE_TENSOR, 2, 0));
    cr_assert_str_eq(p.name, "keep");
    CHECK_ERR(seldon_msg_find_param(&p, m, SELDON_SCOPE_TENSOR, 2, "binary_data_size", 16),
              SELDON_ENOTFOUND, "not found");
    CHECK_OK(seldon_msg_tensor(&t, m, 3));
    cr_assert(t.nbytes == 16 && ((int64_t *)t.data)[0] == INT64_MIN &&
              ((int64_t *)t.data)[1] == 77);
    cr_assert_eq(seldon_msg_is_binary(m, 3), 1);
}

Test(json, binary_extension_mixed)
{
    static body b;
    uint8_t bin[64];
    size_t n = bin_data(bin);
    seldon_msg *m = new_msg(SELDON_MSG_REQUEST);
    char *text;

    body_make(&b, 0, bin_json, bin, n);
    CHECK_OK(seldon_msg_decode_json(m, b.p, b.len, b.json_len, 0));
    check_bin_msg(m);
    /* Copied: no tensor points into the body. */
    {
        seldon_tensor t;
        CHECK_OK(seldon_msg_tensor(&t, m, 0));
        cr_assert((uint8_t *)t.data < b.mem || (uint8_t *)t.data >= b.mem + sizeof(b.mem));
    }
    /* Re-encoding keeps the binary tensors binary, in order, after the JSON. */
    text = enc(m, 0);
    cr_assert_str_eq(text, "{\"inputs\":["
                           "{\"name\":\"f\",\"datatype\":\"FP32\",\"shape\":[2],\"parameters\":{"
                           "\"binary_data_size\":8}},"
                           "{\"name\":\"j\",\"datatype\":\"INT8\",\"shape\":[2],\"data\":[-1,1]},"
                           "{\"name\":\"s\",\"datatype\":\"BYTES\",\"shape\":[2],"
                           "\"parameters\":{\"keep\":1,\"binary_data_size\":11}},"
                           "{\"name\":\"i\",\"datatype\":\"INT64\",\"shape\":[1,2],"
                           "\"parameters\":{\"binary_data_size\":16}}]}");
    free(text);
    roundtrip(m, 0);
    seldon_msg_free(m);
}

Test(json, binary_borrow)
{
    static body b;
    uint8_t bin[64];
    size_t n = bin_data(bin), pad;
    seldon_msg *m = new_msg(SELDON_MSG_REQUEST);
    char json[sizeof(bin_json) + 16];
    seldon_tensor t;

    /* Pad the JSON with spaces so that the binary part starts 8-aligned. */
    strcpy(json, bin_json);
    for (pad = strlen(json); pad % 8; pad++)
        strcat(json, " ");
    body_make(&b, 0, json, bin, n);
    CHECK_OK(seldon_msg_decode_json(m, b.p, b.len, b.json_len, SELDON_DECODE_BORROW));
    check_bin_msg(m);
    CHECK_OK(seldon_msg_tensor(&t, m, 0));
    cr_assert_eq((uint8_t *)t.data, b.p + b.json_len);
    /* BYTES need no alignment; INT64 at offset 19 is misaligned and so copied. */
    CHECK_OK(seldon_msg_tensor(&t, m, 2));
    cr_assert_eq((uint8_t *)t.data, b.p + b.json_len + 8);
    CHECK_OK(seldon_msg_tensor(&t, m, 3));
    cr_assert((uint8_t *)t.data < b.mem || (uint8_t *)t.data >= b.mem + sizeof(b.mem));
    cr_assert_eq((uintptr_t)t.data % 8, 0);

    /* Shifted by one byte, the FP32 data is misaligned too: copied, aligned. */
    body_make(&b, 1, json, bin, n);
    CHECK_OK(seldon_msg_decode_json(m, b.p, b.len, b.json_len, SELDON_DECODE_BORROW));
    check_bin_msg(m);
    CHECK_OK(seldon_msg_tensor(&t, m, 0));
    cr_assert((uint8_t *)t.data < b.mem || (uint8_t *)t.data >= b.mem + sizeof(b.mem));
    cr_assert_eq((uintptr_t)t.data % 4, 0);
    seldon_msg_free(m);
}

static void bin_fails(const char *json, const void *bin, size_t n, int code, const char *needle)
{
    static body b;
    seldon_msg *m = new_msg(SELDON_MSG_REQUEST);
    body_make(&b, 0, json, bin, n);
    CHECK_ERR(seldon_msg_decode_json(m, b.p, b.len, b.json_len, 0), code, needle);
    cr_assert_eq(seldon_msg_tensor_count(m), 0);
    seldon_msg_free(m);
}

Test(json, binary_errors)
{
    uint8_t bin[64];
    size_t n = bin_data(bin);
    seldon_msg *m = new_msg(SELDON_MSG_REQUEST);
    static const uint8_t bad_bytes[8] = {9, 0, 0, 0, 'a', 'b', 'c', 'd'};
    static const uint8_t two_bytes[10] = {1, 0, 0, 0, 'a', 1, 0, 0, 0, 'b'};

    CHECK_ERR(seldon_msg_decode_json(m, "{\"inputs\":[]}", 13, 14, 0), SELDON_EPARSE,
              "Inference-Header-Content-Length: 14 exceeds the body's 13 bytes");
    seldon_msg_free(m);
    bin_fails(bin_json, bin, n - 1, SELDON_ESHAPE,
              "inputs[3]: binary_data_size 16 overruns the binary data (15 bytes left)");
    bin_fails(bin_json, bin, n + 3, SELDON_ESHAPE,
              "<root>: 3 bytes of binary data left over after the binary tensors");
    bin_fails("{\"inputs\":[{\"name\":\"f\",\"datatype\":\"FP32\",\"shape\":[2],"
              "\"parameters\":{\"binary_data_size\":7}}]}",
              bin, 7, SELDON_ESHAPE,
              "inputs[0]: binary_data_size is 7, but shape [2] of FP32 takes 8 bytes");
    bin_fails("{\"inputs\":[{\"name\":\"f\",\"datatype\":\"FP32\",\"shape\":[2],\"data\":[1,2],"
              "\"parameters\":{\"binary_data_size\":8}}]}",
              bin, 8, SELDON_EPARSE, "inputs[0]: has both \"data\" and a binary_data_size");
    bin_fails("{\"inputs\":[{\"name\":\"f\",\"datatype\":\"FP32\",\"shape\":[2],"
              "\"parameters\":{\"binary_data_size\":\"8\"}}]}",
              bin, 8, SELDON_EPARSE,
              "inputs[0].parameters.binary_data_size: expected a non-negative integer");
    bin_fails("{\"inputs\":[{\"name\":\"f\",\"datatype\":\"FP32\",\"shape\":[2],"
              "\"parameters\":{\"binary_data_size\":-8}}]}",
              bin, 8, SELDON_EPARSE, "expected a non-negative integer");
    bin_fails("{\"inputs\":[{\"name\":\"f\",\"datatype\":\"FP32\",\"shape\":[2]}]}", bin, 8,
              SELDON_EPARSE, "inputs[0]: missing \"data\"");
    bin_fails("{\"inputs\":[{\"name\":\"s\",\"datatype\":\"BYTES\",\"shape\":[1],"
              "\"parameters\":{\"binary_data_size\":8}}]}",
              bad_bytes, 8, SELDON_EPARSE, "inputs[0]");
    bin_fails("{\"inputs\":[{\"name\":\"s\",\"datatype\":\"BYTES\",\"shape\":[1],"
              "\"parameters\":{\"binary_data_size\":10}}]}",
              two_bytes, 10, SELDON_ESHAPE, "inputs[0]: 2 BYTES elements, but the shape holds 1");
    bin_fails("{\"inputs\":[{\"name\":\"s\",\"datatype\":\"BYTES\",\"shape\":[2],"
              "\"parameters\":{\"binary_data_size\":9}}]}",
              two_bytes, 9, SELDON_EPARSE, "inputs[0]");
    /* Binary bytes with no tensor asking for them. */
    bin_fails("{\"inputs\":[]}", bin, 4, SELDON_ESHAPE, "4 bytes of binary data left over");

    /* An empty binary tensor and json_len == len are fine. */
    m = new_msg(SELDON_MSG_REQUEST);
    {
        static const char j[] = "{\"inputs\":[{\"name\":\"e\",\"datatype\":\"FP64\",\"shape\":[0],"
                                "\"parameters\":{\"binary_data_size\":0}}]}";
        seldon_tensor t;
        CHECK_OK(seldon_msg_decode_json(m, j, sizeof(j) - 1, sizeof(j) - 1, 0));
        CHECK_OK(seldon_msg_tensor(&t, m, 0));
        cr_assert(t.nbytes == 0 && t.count == 0 && seldon_msg_is_binary(m, 0));
    }
    seldon_msg_free(m);
}

Test(json, binary_response)
{
    static body b;
    const float f[3] = {1, 2, 3};
    seldon_msg *m = new_msg(SELDON_MSG_RESPONSE);
    seldon_tensor t;
    body_make(&b, 0,
              "{\"model_name\":\"m\",\"outputs\":[{\"name\":\"o\",\"datatype\":\"FP32\","
              "\"shape\":[3],\"parameters\":{\"binary_data_size\":12}}]}",
              f, sizeof(f));
    CHECK_OK(seldon_msg_decode_json(m, b.p, b.len, b.json_len, 0));
    CHECK_OK(seldon_msg_tensor(&t, m, 0));
    cr_assert_eq(memcmp(t.data, f, sizeof(f)), 0);
    roundtrip(m, 0);
    seldon_msg_free(m);
}

/* --- Encoding ----------------------------------------------------------- */

Test(json, encode_small_request_exactly)
{
    seldon_msg *m = new_msg(SELDON_MSG_REQUEST);
    const int64_t shape[1] = {2};
    const float x[2] = {1.5f, -2.0f};
    char *text;

    CHECK_OK(seldon_msg_set_id(m, "r1", 2));
    CHECK_OK(seldon_msg_set_model(m, "not", 3, "sent", 4));
    add_param(m, SELDON_SCOPE_MSG, 0, "a", SELDON_PARAM_INT64, 1, 0, NULL);
    add(m, "x", SELDON_DT_FP32, shape, 1, x, sizeof(x));
    CHECK_OK(seldon_msg_add_output(NULL, m, "y", 1));
    add_param(m, SELDON_SCOPE_OUTPUT, 0, "binary_data", SELDON_PARAM_BOOL, 1, 0, NULL);
    CHECK_OK(seldon_msg_add_output(NULL, m, "z", 1));
    text = enc(m, 0);
    cr_assert_str_eq(text, "{\"id\":\"r1\",\"parameters\":{\"a\":1},\"inputs\":[{\"name\":\"x\","
                           "\"datatype\":\"FP32\",\"shape\":[2],\"data\":[1.5,-2.0]}],"
                           "\"outputs\":[{\"name\":\"y\",\"parameters\":{\"binary_data\":true}},"
                           "{\"name\":\"z\"}]}");
    free(text);
    roundtrip(m, 0);
    seldon_msg_free(m);

    m = new_msg(SELDON_MSG_REQUEST);
    text = enc(m, 0);
    cr_assert_str_eq(text, "{\"inputs\":[]}");
    free(text);
    seldon_msg_free(m);
}

Test(json, encode_small_response_exactly)
{
    seldon_msg *m = new_msg(SELDON_MSG_RESPONSE);
    const int64_t shape[2] = {1, 2};
    const int32_t z[2] = {3, -4};
    char *text;

    CHECK_OK(seldon_msg_set_id(m, "r1", 2));
    CHECK_OK(seldon_msg_set_model(m, "m", 1, "1", 1));
    add(m, "z", SELDON_DT_INT32, shape, 2, z, sizeof(z));
    add_param(m, SELDON_SCOPE_TENSOR, 0, "p", SELDON_PARAM_STRING, 0, 0, "q");
    add_param(m, SELDON_SCOPE_MSG, 0, "d", SELDON_PARAM_DOUBLE, 0, 0.5, NULL);
    text = enc(m, 0);
    cr_assert_str_eq(text, "{\"model_name\":\"m\",\"model_version\":\"1\",\"id\":\"r1\","
                           "\"parameters\":{\"d\":0.5},\"outputs\":[{\"name\":\"z\","
                           "\"datatype\":\"INT32\",\"shape\":[1,2],\"parameters\":{\"p\":\"q\"},"
                           "\"data\":[3,-4]}]}");
    free(text);
    roundtrip(m, 0);
    seldon_msg_free(m);

    m = new_msg(SELDON_MSG_RESPONSE);
    text = enc(m, 0);
    cr_assert_str_eq(text, "{\"model_name\":\"\",\"outputs\":[]}");
    free(text);
    seldon_msg_free(m);
}

Test(json, encode_every_datatype)
{
    const struct {
        int32_t dt;
        const void *data;
        size_t nbytes, count;
        const char *text;
    } cases[] = {
        {SELDON_DT_BOOL, (const uint8_t[]){1, 0, 1}, 3, 3, "[true,false,true]"},
        {SELDON_DT_UINT8, (const uint8_t[]){0, 9, 10, 99, 100, 255}, 6, 6, "[0,9,10,99,100,255]"},
        {SELDON_DT_UINT16, (const uint16_t[]){0, 65535}, 4, 2, "[0,65535]"},
        {SELDON_DT_UINT32, (const uint32_t[]){1000, 4294967295u}, 8, 2, "[1000,4294967295]"},
        {SELDON_DT_UINT64, (const uint64_t[]){0, 12345678901234567890ull, UINT64_MAX}, 24, 3,
         "[0,12345678901234567890,18446744073709551615]"},
        {SELDON_DT_INT8, (const int8_t[]){-128, -1, 0, 127}, 4, 4, "[-128,-1,0,127]"},
        {SELDON_DT_INT16, (const int16_t[]){-32768, 32767}, 4, 2, "[-32768,32767]"},
        {SELDON_DT_INT32, (const int32_t[]){INT32_MIN, INT32_MAX}, 8, 2,
         "[-2147483648,2147483647]"},
        {SELDON_DT_INT64, (const int64_t[]){INT64_MIN, -10, INT64_MAX}, 24, 3,
         "[-9223372036854775808,-10,9223372036854775807]"},
        {SELDON_DT_FP16, (const uint16_t[]){0x3C00, 0xC000, 0x7BFF, 0x3555, 0x8000}, 10, 5,
         "[1.0,-2.0,65504.0,0.33325195,-0.0]"},
        {SELDON_DT_FP32, (const float[]){0.1f, -2.5f, 1e20f, 1e-5f, 123.0f}, 20, 5,
         "[0.1,-2.5,1e+20,1e-05,123.0]"},
        {SELDON_DT_FP64, (const double[]){0.1, 1e300, 5e-324, 1e16, 1e15}, 40, 5,
         "[0.1,1e+300,5e-324,1e+16,1000000000000000.0]"},
        {SELDON_DT_BYTES, "\5\0\0\0hello\12\0\0\0a\"b\\c\n\1\x7f\xc3\xa9\0\0\0\0\1\0\0\0\0", 32, 4,
         "[\"hello\",\"a\\\"b\\\\c\\n\\u0001\x7f\xc3\xa9\",\"\",\"\\u0000\"]"},
    };
    size_t i;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        seldon_msg *m = new_msg(SELDON_MSG_RESPONSE);
        const int64_t shape[1] = {(int64_t)cases[i].count};
        const char *name = seldon_datatype_name(cases[i].dt);
        char want[512], *text;
        add(m, "t", cases[i].dt, shape, 1, cases[i].data, cases[i].nbytes);
        snprintf(want, sizeof(want),
                 "{\"model_name\":\"\",\"outputs\":[{\"name\":\"t\",\"datatype\":\"%s\","
                 "\"shape\":[%zu],\"data\":%s}]}",
                 name, cases[i].count, cases[i].text);
        text = enc(m, 0);
        cr_assert_str_eq(text, want, "%s", name);
        free(text);
        roundtrip(m, 0);
        seldon_msg_free(m);
    }
}

Test(json, encode_shapes_nan_and_infinity)
{
    seldon_msg *m = new_msg(SELDON_MSG_RESPONSE);
    const int64_t s0[1] = {0}, s20[2] = {2, 0}, s3[1] = {3};
    const int32_t v = 42;
    const float f[3] = {NAN, INFINITY, -INFINITY};
    const double d[3] = {-NAN, -INFINITY, INFINITY};
    const uint16_t h[3] = {0x7E00, 0x7C00, 0xFC00};
    char *text;

    add(m, "s", SELDON_DT_INT32, NULL, 0, &v, 4);
    add(m, "e", SELDON_DT_FP32, s0, 1, NULL, 0);
    add(m, "e2", SELDON_DT_BYTES, s20, 2, NULL, 0);
    add(m, "f", SELDON_DT_FP32, s3, 1, f, sizeof(f));
    add(m, "d", SELDON_DT_FP64, s3, 1, d, sizeof(d));
    add(m, "h", SELDON_DT_FP16, s3, 1, h, sizeof(h));
    text = enc(m, 0);
    cr_assert_str_eq(
        text,
        "{\"model_name\":\"\",\"outputs\":["
        "{\"name\":\"s\",\"datatype\":\"INT32\",\"shape\":[],\"data\":[42]},"
        "{\"name\":\"e\",\"datatype\":\"FP32\",\"shape\":[0],\"data\":[]},"
        "{\"name\":\"e2\",\"datatype\":\"BYTES\",\"shape\":[2,0],\"data\":[]},"
        "{\"name\":\"f\",\"datatype\":\"FP32\",\"shape\":[3],\"data\":[NaN,Infinity,-Infinity]},"
        "{\"name\":\"d\",\"datatype\":\"FP64\",\"shape\":[3],\"data\":[NaN,-Infinity,Infinity]},"
        "{\"name\":\"h\",\"datatype\":\"FP16\",\"shape\":[3],"
        "\"data\":[NaN,Infinity,-Infinity]}]}");
    free(text);
    /* NaN keeps neither sign nor payload through text: compare the texts only. */
    roundtrip_ex(m, 0, 0);
    seldon_msg_free(m);
}

Test(json, encode_strings_escaped)
{
    seldon_msg *m = new_msg(SELDON_MSG_RESPONSE);
    char *text;
    CHECK_OK(seldon_msg_set_id(m, "\"\\\b\f\n\r\t\x1f/\xe2\x82\xac", 12));
    CHECK_OK(seldon_msg_set_model(m, "m\x01x", 3, "", 0));
    add_param(m, SELDON_SCOPE_MSG, 0, "k\"", SELDON_PARAM_STRING, 0, 0, "v\x01");
    text = enc(m, 0);
    cr_assert_str_eq(text, "{\"model_name\":\"m\\u0001x\",\"id\":\"\\\"\\\\\\b\\f\\n\\r\\t\\u001f/"
                           "\xe2\x82\xac\",\"parameters\":{\"k\\\"\":\"v\\u0001\"},"
                           "\"outputs\":[]}");
    free(text);
    roundtrip(m, 0);
    seldon_msg_free(m);
}

Test(json, encode_errors_restore_the_buffer)
{
    seldon_msg *m = new_msg(SELDON_MSG_RESPONSE);
    seldon_buf b = SELDON_BUF_INIT;
    const int64_t shape[1] = {4};
    static const uint8_t bytes[] = {1, 0, 0, 0,   'a', 1, 0, 0, 0,    'b', 1,
                                    0, 0, 0, 'c', 2,   0, 0, 0, 0xC3, 0x28};
    size_t jl = 7;

    CHECK_OK(sdn_buf_append(&b, "prefix", 6));
    add(m, "ok", SELDON_DT_UINT8, shape, 1, "abcd", 4);
    add(m, "bad", SELDON_DT_BYTES, shape, 1, bytes, sizeof(bytes));
    CHECK_ERR(seldon_msg_encode_json(&b, &jl, m, 0), SELDON_EDATATYPE,
              "outputs[1].data[3]: not valid UTF-8; ask for it as binary data");
    cr_assert_eq(b.len, 6);
    cr_assert_eq(jl, 0);
    /* As binary data it goes through untouched. */
    CHECK_OK(seldon_msg_set_binary(m, 1, 1));
    CHECK_OK(seldon_msg_encode_json(&b, &jl, m, 0));
    cr_assert_eq(b.len, 6 + jl + sizeof(bytes));
    cr_assert_eq(memcmp(b.data + 6 + jl, bytes, sizeof(bytes)), 0);
    seldon_msg_free(m);

    /* Names, ids and parameters are checked too. */
    m = new_msg(SELDON_MSG_REQUEST);
    b.len = 0;
    add(m, "x\xff", SELDON_DT_UINT8, shape, 1, "abcd", 4);
    CHECK_ERR(seldon_msg_encode_json(&b, NULL, m, 0), SELDON_EDATATYPE,
              "inputs[0].name: not valid UTF-8");
    cr_assert_eq(b.len, 0);
    CHECK_OK(seldon_msg_reset(m, SELDON_MSG_REQUEST));
    CHECK_OK(seldon_msg_set_id(m, "\xc0\xaf", 2));
    CHECK_ERR(seldon_msg_encode_json(&b, NULL, m, 0), SELDON_EDATATYPE, "id: not valid UTF-8");
    CHECK_OK(seldon_msg_reset(m, SELDON_MSG_REQUEST));
    CHECK_OK(seldon_msg_add_output(NULL, m, "o", 1));
    add_param(m, SELDON_SCOPE_OUTPUT, 0, "p", SELDON_PARAM_STRING, 0, 0, "\xed\xa0\x80");
    CHECK_ERR(seldon_msg_encode_json(&b, NULL, m, 0), SELDON_EDATATYPE,
              "outputs[0].parameters.p: not valid UTF-8");
    CHECK_OK(seldon_msg_reset(m, SELDON_MSG_REQUEST));
    add_param(m, SELDON_SCOPE_MSG, 0, "\x80", SELDON_PARAM_BOOL, 1, 0, NULL);
    CHECK_ERR(seldon_msg_encode_json(&b, NULL, m, 0), SELDON_EDATATYPE, "not valid UTF-8");
    cr_assert_eq(b.len, 0);
    seldon_buf_free(&b);
    seldon_msg_free(m);
}

Test(json, encode_binary_and_json_len)
{
    seldon_msg *m = new_msg(SELDON_MSG_REQUEST);
    seldon_buf b = SELDON_BUF_INIT;
    const int64_t shape[1] = {2};
    const float f[2] = {1, 2};
    const int16_t s[2] = {-1, 1};
    size_t jl = 0;

    add(m, "f", SELDON_DT_FP32, shape, 1, f, sizeof(f));
    add(m, "s", SELDON_DT_INT16, shape, 1, s, sizeof(s));
    /* A stale binary_data_size set by hand is not the encoder's: it is dropped. */
    add_param(m, SELDON_SCOPE_TENSOR, 1, "binary_data_size", SELDON_PARAM_INT64, 99, 0, NULL);
    CHECK_OK(seldon_msg_encode_json(&b, &jl, m, 0));
    cr_assert_eq(jl, b.len);
    cr_assert_eq(memchr(b.data, 'b', b.len), NULL);

    b.len = 0;
    CHECK_OK(seldon_msg_set_binary(m, 1, 1));
    CHECK_OK(seldon_msg_encode_json(&b, &jl, m, 0));
    cr_assert_eq(b.len, jl + 4);
    cr_assert_eq(memcmp(b.data + jl, s, 4), 0);
    cr_assert(strstr((char *)b.data, "\"parameters\":{\"binary_data_size\":4}}") != NULL);

    b.len = 0;
    CHECK_OK(seldon_msg_encode_json(&b, &jl, m, SELDON_ENCODE_BINARY_ALL));
    cr_assert_eq(b.len, jl + 12);
    cr_assert_eq(memcmp(b.data + jl, f, 8), 0);
    cr_assert_eq(memcmp(b.data + jl + 8, s, 4), 0);
    {
        /* What BINARY_ALL wrote decodes, every tensor binary, with the same data. */
        seldon_msg *back = new_msg(SELDON_MSG_REQUEST);
        seldon_tensor t;
        CHECK_OK(seldon_msg_decode_json(back, b.data, b.len, jl, 0));
        cr_assert(seldon_msg_is_binary(back, 0) && seldon_msg_is_binary(back, 1));
        CHECK_OK(seldon_msg_tensor(&t, back, 0));
        cr_assert_eq(memcmp(t.data, f, 8), 0);
        seldon_msg_free(back);
    }
    roundtrip(m, SELDON_ENCODE_BINARY_ALL);
    seldon_buf_free(&b);
    seldon_msg_free(m);
}

/* --- Round trips -------------------------------------------------------- */

static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

Test(json, roundtrip_random_floats_bit_exact)
{
    enum { N = 20000 };
    seldon_msg *m = new_msg(SELDON_MSG_RESPONSE);
    float *f = malloc(N * sizeof(float));
    double *d = malloc(N * sizeof(double));
    const int64_t shape[1] = {N};
    size_t i;

    for (i = 0; i < N; i++) {
        uint32_t u32;
        uint64_t u64;
        /* Random bit patterns cover subnormals and extremes; NaNs do not keep payloads. */
        do {
            u32 = (uint32_t)rng();
            memcpy(&f[i], &u32, 4);
        } while (isnan(f[i]));
        do {
            u64 = rng();
            memcpy(&d[i], &u64, 8);
        } while (isnan(d[i]));
        if (i % 4 == 0)
            f[i] = (float)(rng() % 1000000) / 1000000.0f;
        if (i % 4 == 1)
            d[i] = (double)(rng() % 1000000000) / 1e9;
    }
    add(m, "f", SELDON_DT_FP32, shape, 1, f, N * sizeof(float));
    add(m, "d", SELDON_DT_FP64, shape, 1, d, N * sizeof(double));
    roundtrip(m, 0);
    free(f);
    free(d);
    seldon_msg_free(m);
}

Test(json, roundtrip_every_fp16)
{
    enum { N = 65536 };
    seldon_msg *m = new_msg(SELDON_MSG_REQUEST), *back = new_msg(SELDON_MSG_REQUEST);
    uint16_t *h = malloc(N * 2);
    const int64_t shape[1] = {N};
    seldon_buf b = SELDON_BUF_INIT;
    seldon_tensor t;
    size_t i;

    for (i = 0; i < N; i++)
        h[i] = (uint16_t)i;
    add(m, "h", SELDON_DT_FP16, shape, 1, h, N * 2);
    CHECK_OK(seldon_msg_encode_json(&b, NULL, m, 0));
    CHECK_OK(seldon_msg_decode_json(back, b.data, b.len, 0, 0));
    CHECK_OK(seldon_msg_tensor(&t, back, 0));
    for (i = 0; i < N; i++) {
        uint16_t got = ((uint16_t *)t.data)[i];
        if ((i & 0x7C00) == 0x7C00 && (i & 0x3FF))
            cr_assert((got & 0x7C00) == 0x7C00 && (got & 0x3FF), "NaN %zx", i);
        else
            cr_assert_eq(got, i, "half %zx came back as %x", i, got);
    }
    free(h);
    seldon_buf_free(&b);
    seldon_msg_free(m);
    seldon_msg_free(back);
}

Test(json, roundtrip_decoded_request)
{
    seldon_msg *m = new_msg(SELDON_MSG_REQUEST);
    CHECK_OK(dec(m, full_request));
    roundtrip(m, 0);
    roundtrip(m, SELDON_ENCODE_BINARY_ALL);
    seldon_msg_free(m);
}

Test(json, roundtrip_every_type_with_random_integers)
{
    enum { N = 257 };
    seldon_msg *m = new_msg(SELDON_MSG_REQUEST);
    uint8_t *buf = malloc(N * 8);
    const int64_t shape[2] = {1, N};
    int32_t dt;
    size_t i;

    for (dt = SELDON_DT_BOOL; dt < SELDON_DT_FP16; dt++) {
        size_t es = seldon_datatype_size(dt);
        for (i = 0; i < N * es; i++)
            buf[i] = (uint8_t)rng();
        if (dt == SELDON_DT_BOOL)
            for (i = 0; i < N; i++)
                buf[i] &= 1;
        add(m, seldon_datatype_name(dt), dt, shape, 2, buf, N * es);
    }
    add_param(m, SELDON_SCOPE_TENSOR, 3, "n", SELDON_PARAM_DOUBLE, 0, 1e16, NULL);
    add_param(m, SELDON_SCOPE_TENSOR, 3, "whole", SELDON_PARAM_DOUBLE, 0, 3.0, NULL);
    add_param(m, SELDON_SCOPE_TENSOR, 3, "neg", SELDON_PARAM_INT64, INT64_MIN, 0, NULL);
    roundtrip(m, 0);
    free(buf);
    seldon_msg_free(m);
}

/* --- Allocation failures ------------------------------------------------ */

static char *mid_sized_request(size_t *len)
{
    char *s = malloc(65536);
    size_t n = 0, i;
    n += (size_t)sprintf(s + n,
                         "{\"id\":\"alloc\",\"parameters\":{\"a\":\"b\",\"c\":1},\"inputs\":[");
    for (i = 0; i < 6; i++) {
        size_t k;
        n += (size_t)sprintf(s + n, "%s{\"data\":[", i ? "," : "");
        for (k = 0; k < 300; k++)
            n += (size_t)sprintf(s + n, i == 5 ? "%s\"s%zu\"" : "%s%zu.5", k ? "," : "", k);
        n += (size_t)sprintf(s + n,
                             "],\"name\":\"t%zu\",\"datatype\":\"%s\",\"shape\":[3,100],"
                             "\"parameters\":{\"p%zu\":true}}",
                             i, i == 5 ? "BYTES" : "FP64", i);
    }
    n += (size_t)sprintf(s + n, "],\"outputs\":[{\"name\":\"o\",\"parameters\":{\"x\":1}}]}");
    *len = n;
    return s;
}

Test(json, allocation_failures_decode)
{
    size_t len;
    char *body = mid_sized_request(&len);
    int64_t n;
    int done = 0;

    for (n = 0; n < 200 && !done; n++) {
        seldon_msg *m = new_msg(SELDON_MSG_REQUEST);
        int rc;
        sdn_alloc_fail_after(n);
        rc = seldon_msg_decode_json(m, body, len, 0, 0);
        sdn_alloc_fail_after(-1);
        if (rc == 0) {
            cr_assert_eq(seldon_msg_tensor_count(m), 6);
            done = 1;
        } else {
            cr_assert_eq(rc, SELDON_ENOMEM, "n=%lld: %s", (long long)n, seldon_last_error());
            cr_assert_eq(seldon_msg_tensor_count(m), 0);
        }
        seldon_msg_free(m);
    }
    cr_assert(done, "decoding never succeeded");
    cr_assert_gt(n, 2, "the request should need several allocations");
    free(body);
}

Test(json, allocation_failures_encode)
{
    size_t len;
    char *body = mid_sized_request(&len);
    seldon_msg *m = new_msg(SELDON_MSG_REQUEST);
    int64_t n;
    int done = 0;

    CHECK_OK(seldon_msg_decode_json(m, body, len, 0, 0));
    CHECK_OK(seldon_msg_set_binary(m, 2, 1));
    for (n = 0; n < 200 && !done; n++) {
        seldon_buf b = SELDON_BUF_INIT;
        size_t jl;
        int rc;
        sdn_alloc_fail_after(n);
        rc = seldon_msg_encode_json(&b, &jl, m, 0);
        sdn_alloc_fail_after(-1);
        if (rc == 0)
            done = 1;
        else
            cr_assert_eq(rc, SELDON_ENOMEM, "n=%lld: %s", (long long)n, seldon_last_error());
        cr_assert_eq(b.len, rc == 0 ? b.len : 0);
        seldon_buf_free(&b);
    }
    cr_assert(done, "encoding never succeeded");
    cr_assert_gt(n, 1);
    free(body);
    seldon_msg_free(m);
}
