/* The protobuf codec: inference.ModelInferRequest / ModelInferResponse. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "core/core.h"
#include "grpc_predict_v2.pb-c.h"
#include "oip_assert.h"
#include "seldon/oip.h"

/* A request with one tensor of every datatype, parameters everywhere and requested outputs. */
static seldon_msg *every_type_request(void)
{
    seldon_msg *m = new_msg(SELDON_MSG_REQUEST);
    const uint8_t b[3] = {1, 0, 1};
    const uint8_t u8[3] = {0, 128, 255};
    const uint16_t u16[3] = {0, 1000, 65535};
    const uint32_t u32[3] = {0, 7, 4294967295u};
    const uint64_t u64[3] = {0, 9, UINT64_MAX};
    const int8_t i8[3] = {-128, 0, 127};
    const int16_t i16[3] = {-32768, 5, 32767};
    const int32_t i32[3] = {INT32_MIN, -1, INT32_MAX};
    const int64_t i64[3] = {INT64_MIN, 42, INT64_MAX};
    const uint16_t f16[3] = {0x3c00, 0xc000, 0x7bff};
    const float f32[3] = {0.1f, -2.5e-38f, INFINITY};
    const double f64[3] = {0.1, -1e308, 4.9e-324};
    const uint8_t bytes[] = {5, 0, 0, 0, 'h', 'e', 'l', 'l',  'o',  0,
                             0, 0, 0, 3, 0,   0,   0,   0xff, 0x00, 'x'};
    const int64_t shape[1] = {3};
    const void *data[13] = {b, u8, u16, u32, u64, i8, i16, i32, i64, f16, f32, f64, bytes};
    seldon_param p = {0};
    int32_t dt;

    CHECK_OK(seldon_msg_set_id(m, "req-1", 5));
    CHECK_OK(seldon_msg_set_model(m, "iris", 4, "2", 1));
    for (dt = SELDON_DT_BOOL; dt <= SELDON_DT_BYTES; dt++) {
        const char *name = seldon_datatype_name(dt);
        size_t nbytes = dt == SELDON_DT_BYTES ? sizeof(bytes) : 3 * seldon_datatype_size(dt);
        CHECK_OK(seldon_msg_add_tensor(NULL, m, name, strlen(name), dt, shape, 1, data[dt - 1],
                                       nbytes, SELDON_TENSOR_COPY));
    }
    p.name = "flag";
    p.name_len = 4;
    p.type = SELDON_PARAM_BOOL;
    p.bool_value = 1;
    CHECK_OK(seldon_msg_add_param(m, SELDON_SCOPE_MSG, 0, &p));
    p.name = "count";
    p.name_len = 5;
    p.type = SELDON_PARAM_INT64;
    p.int64_value = -77;
    CHECK_OK(seldon_msg_add_param(m, SELDON_SCOPE_TENSOR, 3, &p));
    p.name = "ratio";
    p.name_len = 5;
    p.type = SELDON_PARAM_DOUBLE;
    p.double_value = 0.25;
    CHECK_OK(seldon_msg_add_param(m, SELDON_SCOPE_MSG, 0, &p));
    CHECK_OK(seldon_msg_add_output(NULL, m, "out", 3));
    p.name = "binary_data";
    p.name_len = 11;
    p.type = SELDON_PARAM_BOOL;
    p.bool_value = 1;
    CHECK_OK(seldon_msg_add_param(m, SELDON_SCOPE_OUTPUT, 0, &p));
    p.name = "content_type";
    p.name_len = 12;
    p.type = SELDON_PARAM_STRING;
    p.string_value = "np";
    p.string_len = 2;
    CHECK_OK(seldon_msg_add_param(m, SELDON_SCOPE_OUTPUT, 0, &p));
    return m;
}

static void assert_msgs_equal(const seldon_msg *a, const seldon_msg *b)
{
    oip_assert_msgs_equal(a, b, OIP_CMP_MODEL);
}

static seldon_msg *pb_roundtrip(const seldon_msg *m, uint32_t flags)
{
    seldon_buf buf = SELDON_BUF_INIT;
    seldon_msg *back = new_msg(seldon_msg_kind(m));
    CHECK_OK(seldon_msg_encode_pb(&buf, m, flags));
    CHECK_OK(seldon_msg_decode_pb(back, buf.data, buf.len, 0));
    seldon_buf_free(&buf);
    return back;
}

Test(pb, every_datatype_raw_roundtrip)
{
    seldon_msg *m = every_type_request(), *back = pb_roundtrip(m, 0);
    size_t i;
    assert_msgs_equal(m, back);
    /* Raw contents stay where protobuf-c put them: in the message, aligned for any type. */
    for (i = 0; i < seldon_msg_tensor_count(back); i++) {
        seldon_tensor t;
        CHECK_OK(seldon_msg_tensor(&t, back, i));
        cr_assert_eq((uintptr_t)t.data % 8, 0, "tensor %s misaligned", t.name);
    }
    seldon_msg_free(m);
    seldon_msg_free(back);
}

Test(pb, typed_contents_roundtrip_except_fp16)
{
    seldon_msg *m = every_type_request(), *back;
    seldon_buf buf = SELDON_BUF_INIT;
    size_t fp16;

    CHECK_ERR(seldon_msg_encode_pb(&buf, m, SELDON_ENCODE_PB_TYPED), SELDON_EUNSUPPORTED,
              "inputs[9]: FP16");
    /* Without the FP16 tensor, every typed field carries its datatype exactly. */
    seldon_msg_free(m);
    m = new_msg(SELDON_MSG_REQUEST);
    {
        seldon_msg *full = every_type_request();
        size_t i;
        CHECK_OK(seldon_msg_find_tensor(&fp16, full, "FP16", 4));
        for (i = 0; i < seldon_msg_tensor_count(full); i++) {
            seldon_tensor t;
            if (i == fp16)
                continue;
            CHECK_OK(seldon_msg_tensor(&t, full, i));
            CHECK_OK(seldon_msg_add_tensor(NULL, m, t.name, t.name_len, t.datatype, t.shape, t.ndim,
                                           t.data, t.nbytes, 0));
        }
        seldon_msg_free(full);
    }
    back = pb_roundtrip(m, SELDON_ENCODE_PB_TYPED);
    assert_msgs_equal(m, back);
    seldon_buf_free(&buf);
    seldon_msg_free(m);
    seldon_msg_free(back);
}

Test(pb, response_roundtrip_and_empty_and_scalar)
{
    seldon_msg *m = new_msg(SELDON_MSG_RESPONSE), *back;
    const int64_t empty_shape[2] = {2, 0};
    const float scalar = 3.5f;
    CHECK_OK(seldon_msg_set_model(m, "add10", 5, "", 0));
    CHECK_OK(seldon_msg_set_id(m, "r", 1));
    CHECK_OK(
        seldon_msg_add_tensor(NULL, m, "empty", 5, SELDON_DT_FP32, empty_shape, 2, NULL, 0, 0));
    CHECK_OK(seldon_msg_add_tensor(NULL, m, "scalar", 6, SELDON_DT_FP32, NULL, 0, &scalar, 4, 0));
    back = pb_roundtrip(m, 0);
    assert_msgs_equal(m, back);
    seldon_msg_free(back);
    back = pb_roundtrip(m, SELDON_ENCODE_PB_TYPED);
    assert_msgs_equal(m, back);
    seldon_msg_free(back);
    seldon_msg_free(m);
}

/* Packs a hand-built request so tests can send what our encoder never would. */
static void pack_request(seldon_buf *out, const Inference__ModelInferRequest *r)
{
    size_t n = inference__model_infer_request__get_packed_size(r);
    out->len = 0;
    CHECK_OK(seldon_buf_reserve(out, n));
    out->len = inference__model_infer_request__pack(r, out->data);
}

typedef struct hand_req {
    Inference__ModelInferRequest req;
    Inference__ModelInferRequest__InferInputTensor in;
    Inference__ModelInferRequest__InferInputTensor *inputs[1];
    Inference__InferTensorContents contents;
    int64_t shape[2];
    ProtobufCBinaryData raw[2];
} hand_req;

static void hand_init(hand_req *h, const char *datatype, int64_t d0, int64_t d1)
{
    inference__model_infer_request__init(&h->req);
    inference__model_infer_request__infer_input_tensor__init(&h->in);
    inference__infer_tensor_contents__init(&h->contents);
    h->in.name = "x";
    h->in.datatype = (char *)datatype;
    h->shape[0] = d0;
    h->shape[1] = d1;
    h->in.n_shape = 2;
    h->in.shape = h->shape;
    h->inputs[0] = &h->in;
    h->req.n_inputs = 1;
    h->req.inputs = h->inputs;
}

static void expect_decode_error(hand_req *h, int code, const char *needle)
{
    seldon_buf buf = SELDON_BUF_INIT;
    seldon_msg *m = new_msg(SELDON_MSG_REQUEST);
    pack_request(&buf, &h->req);
    CHECK_ERR(seldon_msg_decode_pb(m, buf.data, buf.len, 0), code, needle);
    cr_assert_eq(seldon_msg_tensor_count(m), 0, "a failed decode leaves the message empty");
    seldon_buf_free(&buf);
    seldon_msg_free(m);
}

Test(pb, narrowing_checks_ranges)
{
    hand_req h;
    int32_t ints[2] = {127, 128};
    uint32_t uints[2] = {65535, 65536};

    hand_init(&h, "INT8", 1, 2);
    h.contents.n_int_contents = 2;
    h.contents.int_contents = ints;
    h.in.contents = &h.contents;
    expect_decode_error(&h, SELDON_ERANGE,
                        "inputs[0].contents.int_contents[1]: 128 is out of range for INT8");

    hand_init(&h, "UINT16", 2, 1);
    h.contents.n_uint_contents = 2;
    h.contents.uint_contents = uints;
    h.in.contents = &h.contents;
    expect_decode_error(&h, SELDON_ERANGE, "uint_contents[1]: 65536 is out of range for UINT16");
}

Test(pb, bad_tensors_are_named)
{
    hand_req h;
    float f[3] = {1, 2, 3};
    int32_t i[2] = {1, 2};
    uint8_t raw4[4] = {0};
    uint8_t badbytes[6] = {9, 0, 0, 0, 'a', 'b'};

    hand_init(&h, "FP32", 1, 2);
    h.contents.n_fp32_contents = 3;
    h.contents.fp32_contents = f;
    h.in.contents = &h.contents;
    expect_decode_error(&h, SELDON_ESHAPE,
                        "inputs[0].contents.fp32_contents: 3 elements, but the shape holds 2");

    hand_init(&h, "FP32", 1, 2);
    h.contents.n_int_contents = 2;
    h.contents.int_contents = i;
    h.in.contents = &h.contents;
    expect_decode_error(&h, SELDON_EDATATYPE, "takes its data from fp32_contents alone");

    hand_init(&h, "FP128", 1, 2);
    expect_decode_error(&h, SELDON_EDATATYPE, "inputs[0].datatype: unknown datatype \"FP128\"");

    hand_init(&h, "FP32", 1, -2);
    expect_decode_error(&h, SELDON_ESHAPE, "inputs[0].shape[1]: negative dimension -2");

    hand_init(&h, "FP32", 1, 2);
    expect_decode_error(&h, SELDON_EPARSE, "inputs[0]: no data");

    hand_init(&h, "FP16", 1, 2);
    h.contents.n_fp32_contents = 2;
    h.contents.fp32_contents = f;
    h.in.contents = &h.contents;
    expect_decode_error(&h, SELDON_EDATATYPE, "FP16 has no typed contents field");

    hand_init(&h, "FP32", 1, 2);
    h.raw[0].len = 4;
    h.raw[0].data = raw4;
    h.req.n_raw_input_contents = 1;
    h.req.raw_input_contents = h.raw;
    expect_decode_error(&h, SELDON_ESHAPE,
                        "raw_input_contents[0]: 4 bytes, but inputs[0] (2 x FP32) needs 8");

    hand_init(&h, "FP32", 1, 1);
    h.raw[0].len = 4;
    h.raw[0].data = raw4;
    h.raw[1] = h.raw[0];
    h.req.n_raw_input_contents = 2;
    h.req.raw_input_contents = h.raw;
    expect_decode_error(&h, SELDON_EPARSE, "raw_input_contents: 2 entries for 1 inputs");

    hand_init(&h, "FP32", 1, 1);
    h.raw[0].len = 4;
    h.raw[0].data = raw4;
    h.req.n_raw_input_contents = 1;
    h.req.raw_input_contents = h.raw;
    h.contents.n_fp32_contents = 1;
    h.contents.fp32_contents = f;
    h.in.contents = &h.contents;
    expect_decode_error(&h, SELDON_EPARSE, "data given both typed and in raw_input_contents[0]");

    hand_init(&h, "BYTES", 1, 1);
    h.raw[0].len = sizeof(badbytes);
    h.raw[0].data = badbytes;
    h.req.n_raw_input_contents = 1;
    h.req.raw_input_contents = h.raw;
    expect_decode_error(&h, SELDON_EPARSE,
                        "raw_input_contents[0]: BYTES element 0 of 9 bytes overruns");
}

Test(pb, uint64_parameter_and_missing_value)
{
    Inference__ModelInferRequest req;
    Inference__ModelInferRequest__ParametersEntry ent, *ents[1] = {&ent};
    Inference__InferParameter val;
    seldon_buf buf = SELDON_BUF_INIT;
    seldon_msg *m = new_msg(SELDON_MSG_REQUEST);
    seldon_param p;

    inference__model_infer_request__init(&req);
    inference__model_infer_request__parameters_entry__init(&ent);
    inference__infer_parameter__init(&val);
    ent.key = "big";
    ent.value = &val;
    req.n_parameters = 1;
    req.parameters = ents;
    val.parameter_choice_case = INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_UINT64_PARAM;
    val.uint64_param = 12345;
    pack_request(&buf, &req);
    CHECK_OK(seldon_msg_decode_pb(m, buf.data, buf.len, 0));
    CHECK_OK(seldon_msg_find_param(&p, m, SELDON_SCOPE_MSG, 0, "big", 3));
    cr_assert_eq(p.type, SELDON_PARAM_INT64);
    cr_assert_eq(p.int64_value, 12345);

    val.uint64_param = UINT64_MAX;
    pack_request(&buf, &req);
    CHECK_ERR(seldon_msg_decode_pb(m, buf.data, buf.len, 0), SELDON_ERANGE,
              "parameters.big: 18446744073709551615 does not fit an int64");

    val.parameter_choice_case = INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE__NOT_SET;
    pack_request(&buf, &req);
    CHECK_ERR(seldon_msg_decode_pb(m, buf.data, buf.len, 0), SELDON_EPARSE,
              "parameters.big: no value");
    seldon_buf_free(&buf);
    seldon_msg_free(m);
}

Test(pb, garbage_and_every_truncation_fail_cleanly)
{
    seldon_msg *m = every_type_request(), *back = new_msg(SELDON_MSG_REQUEST);
    seldon_buf buf = SELDON_BUF_INIT;
    const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0x01};
    size_t cut, ok = 0;

    CHECK_ERR(seldon_msg_decode_pb(back, garbage, sizeof(garbage), 0), SELDON_EPARSE,
              "not a valid inference.ModelInferRequest");
    CHECK_OK(seldon_msg_encode_pb(&buf, m, 0));
    for (cut = 0; cut < buf.len; cut++) {
        /* A heap copy of exactly cut bytes, so that ASan sees any overread. */
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, buf.data, cut);
        if (seldon_msg_decode_pb(back, copy, cut, 0) == 0)
            ok++;
        else
            cr_assert_neq(seldon_last_error()[0], '\0');
        free(copy);
    }
    /* Some prefixes end on a field boundary and are valid (smaller) messages. */
    cr_assert_lt(ok, buf.len);
    seldon_buf_free(&buf);
    seldon_msg_free(m);
    seldon_msg_free(back);
}

Test(pb, allocation_failures_are_reported)
{
    seldon_msg *m = every_type_request(), *back = NULL;
    seldon_buf buf = SELDON_BUF_INIT, out = SELDON_BUF_INIT;
    int64_t n;
    int done = 0;

    CHECK_OK(seldon_msg_encode_pb(&buf, m, 0));
    for (n = 0; n < 200 && !done; n++) {
        int rc;
        seldon_msg_free(back);
        back = NULL;
        sdn_alloc_fail_after(n);
        rc = seldon_msg_new(&back, SELDON_MSG_REQUEST);
        if (rc == 0)
            rc = seldon_msg_decode_pb(back, buf.data, buf.len, 0);
        if (rc == 0) {
            out.len = 0;
            rc = seldon_msg_encode_pb(&out, back, SELDON_ENCODE_PB_TYPED);
            /* The FP16 tensor makes a typed encoding fail; that is not an allocation error. */
            if (rc == SELDON_EUNSUPPORTED) {
                done = 1;
                rc = 0;
            }
        }
        sdn_alloc_fail_after(-1);
        cr_assert(rc == 0 || rc == SELDON_ENOMEM, "n=%lld: %s", (long long)n, seldon_last_error());
    }
    cr_assert(done, "every allocation succeeded within the sweep");
    seldon_msg_free(back);
    seldon_buf_free(&buf);
    seldon_buf_free(&out);
    seldon_msg_free(m);
}
