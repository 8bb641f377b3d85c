/*
 * The protobuf decoder's error messages, pinned byte for byte for errors
 * deep in a message: the decoder formats a field's path only once it fails,
 * and these tests hold that path to what it names (tensor, parameter, output,
 * string field at any depth).
 */
#include <criterion/criterion.h>
#include <string.h>

#include "grpc_predict_v2.pb-c.h"
#include "seldon/oip.h"

typedef Inference__ModelInferRequest req_t;
typedef Inference__ModelInferRequest__InferInputTensor in_t;
typedef Inference__ModelInferRequest__InferInputTensor__ParametersEntry in_param_t;
typedef Inference__ModelInferRequest__InferRequestedOutputTensor out_t;
typedef Inference__ModelInferRequest__InferRequestedOutputTensor__ParametersEntry out_param_t;
typedef Inference__InferParameter param_t;

/* ModelInferRequest with two FP32 [2] inputs in raw contents, each with a string parameter "k",
 * and two requested outputs, the second with a parameter "o": the tests break one field each. */
typedef struct two_req {
    req_t req;
    in_t in[2], *inp[2];
    in_param_t ip[2], *ipp[2][1];
    param_t ipv[2], opv;
    out_t out[2], *outp[2];
    out_param_t op, *opp[1];
    int64_t shape[2][2];
    ProtobufCBinaryData raw[2];
    float data[2][2];
} two_req;

static void two_init(two_req *r)
{
    int i;
    memset(r, 0, sizeof(*r));
    inference__model_infer_request__init(&r->req);
    r->req.model_name = "m";
    r->req.id = "req-1";
    for (i = 0; i < 2; i++) {
        inference__model_infer_request__infer_input_tensor__init(&r->in[i]);
        r->in[i].name = i ? "b" : "a";
        r->in[i].datatype = "FP32";
        r->shape[i][0] = 1;
        r->shape[i][1] = 2;
        r->in[i].n_shape = 2;
        r->in[i].shape = r->shape[i];
        inference__model_infer_request__infer_input_tensor__parameters_entry__init(&r->ip[i]);
        inference__infer_parameter__init(&r->ipv[i]);
        r->ipv[i].parameter_choice_case = INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_STRING_PARAM;
        r->ipv[i].string_param = "v";
        r->ip[i].key = "k";
        r->ip[i].value = &r->ipv[i];
        r->ipp[i][0] = &r->ip[i];
        r->in[i].n_parameters = 1;
        r->in[i].parameters = r->ipp[i];
        r->inp[i] = &r->in[i];
        r->raw[i].data = (uint8_t *)r->data[i];
        r->raw[i].len = sizeof(r->data[i]);
        inference__model_infer_request__infer_requested_output_tensor__init(&r->out[i]);
        r->out[i].name = i ? "y" : "x";
        r->outp[i] = &r->out[i];
    }
    inference__model_infer_request__infer_requested_output_tensor__parameters_entry__init(&r->op);
    inference__infer_parameter__init(&r->opv);
    r->opv.parameter_choice_case = INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_BOOL_PARAM;
    r->op.key = "o";
    r->op.value = &r->opv;
    r->opp[0] = &r->op;
    r->out[1].n_parameters = 1;
    r->out[1].parameters = r->opp;
    r->req.n_inputs = 2;
    r->req.inputs = r->inp;
    r->req.n_raw_input_contents = 2;
    r->req.raw_input_contents = r->raw;
    r->req.n_outputs = 2;
    r->req.outputs = r->outp;
}

/* Packs r, decodes it as a request and checks the code and the whole message. */
static void expect_exact(two_req *r, int code, const char *text)
{
    uint8_t buf[1024];
    size_t n = inference__model_infer_request__get_packed_size(&r->req);
    seldon_msg *m = NULL;
    int rc;
    cr_assert(n <= sizeof(buf));
    inference__model_infer_request__pack(&r->req, buf);
    cr_assert_eq(seldon_msg_new(&m, SELDON_MSG_REQUEST), 0);
    rc = seldon_msg_decode_pb(m, buf, n, 0);
    cr_assert_eq(rc, code, "gave %s: %s", seldon_error_name(rc), seldon_last_error());
    cr_assert_str_eq(seldon_last_error(), text);
    cr_assert_eq(seldon_msg_tensor_count(m), 0, "a failed decode leaves the message empty");
    seldon_msg_free(m);
}

Test(pb_errors, the_unbroken_request_decodes)
{
    two_req r;
    two_init(&r);
    {
        uint8_t buf[1024];
        size_t n = inference__model_infer_request__pack(&r.req, buf);
        seldon_msg *m = NULL;
        cr_assert_eq(seldon_msg_new(&m, SELDON_MSG_REQUEST), 0);
        cr_assert_eq(seldon_msg_decode_pb(m, buf, n, 0), 0, "%s", seldon_last_error());
        cr_assert_eq(seldon_msg_tensor_count(m), 2);
        cr_assert_eq(seldon_msg_output_count(m), 2);
        seldon_msg_free(m);
    }
}

Test(pb_errors, second_tensor_fields)
{
    two_req r;

    two_init(&r);
    r.in[1].datatype = "FP99";
    expect_exact(&r, SELDON_EDATATYPE, "inputs[1].datatype: unknown datatype \"FP99\"");

    two_init(&r);
    r.shape[1][1] = -2;
    expect_exact(&r, SELDON_ESHAPE, "inputs[1].shape[1]: negative dimension -2");

    two_init(&r);
    r.shape[1][0] = (int64_t)1 << 40;
    r.shape[1][1] = (int64_t)1 << 40;
    expect_exact(&r, SELDON_ETOOBIG, "inputs[1].shape: too many elements");

    two_init(&r);
    r.raw[1].len = 4;
    expect_exact(&r, SELDON_ESHAPE,
                 "raw_input_contents[1]: 4 bytes, but inputs[1] (2 x FP32) needs 8");

    two_init(&r);
    r.in[1].datatype = "BOOL";
    r.raw[1].len = 2;
    ((uint8_t *)r.raw[1].data)[0] = 1;
    ((uint8_t *)r.raw[1].data)[1] = 2;
    expect_exact(&r, SELDON_ERANGE, "raw_input_contents[1]: BOOL element 1 is 2; expected 0 or 1");

    two_init(&r);
    r.in[1].datatype = "BYTES";
    memset(r.data[1], 0xff, sizeof(r.data[1]));
    expect_exact(&r, SELDON_EPARSE,
                 "raw_input_contents[1]: BYTES element 0 of 4294967295 bytes overruns the data");
}

Test(pb_errors, typed_contents_of_the_second_tensor)
{
    two_req r;
    Inference__InferTensorContents c;
    int32_t ints[2] = {5, 300};
    float f[3] = {1, 2, 3};

    two_init(&r);
    inference__infer_tensor_contents__init(&c);
    r.req.n_raw_input_contents = 0;
    r.in[0].datatype = "INT32";
    r.in[0].contents = &c;
    c.n_int_contents = 2;
    c.int_contents = ints;
    r.in[1].datatype = "INT8";
    r.in[1].contents = &c;
    expect_exact(&r, SELDON_ERANGE,
                 "inputs[1].contents.int_contents[1]: 300 is out of range for INT8");

    r.in[1].datatype = "FP32";
    c.n_fp32_contents = 3;
    c.fp32_contents = f;
    c.n_int_contents = 0;
    r.in[0].datatype = "FP32";
    r.shape[0][1] = 3;
    expect_exact(&r, SELDON_ESHAPE,
                 "inputs[1].contents.fp32_contents: 3 elements, but the shape holds 2");

    r.in[1].contents = NULL;
    expect_exact(&r, SELDON_EPARSE,
                 "inputs[1]: no data: neither contents nor raw_input_contents[1]");
}

Test(pb_errors, parameters_at_each_level)
{
    two_req r;

    two_init(&r);
    r.ipv[1].parameter_choice_case = INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE__NOT_SET;
    expect_exact(&r, SELDON_EPARSE, "inputs[1].parameters.k: no value");

    two_init(&r);
    r.ipv[1].parameter_choice_case = INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_UINT64_PARAM;
    r.ipv[1].uint64_param = UINT64_MAX;
    expect_exact(&r, SELDON_ERANGE,
                 "inputs[1].parameters.k: 18446744073709551615 does not fit an int64");

    two_init(&r);
    r.op.value = NULL;
    expect_exact(&r, SELDON_EPARSE, "outputs[1].parameters.o: no value");
}

Test(pb_errors, strings_deep_in_the_message)
{
    two_req r;

    two_init(&r);
    r.in[1].name = "b\xc3";
    expect_exact(&r, SELDON_EPARSE, "inputs[1].name: at byte 1: invalid UTF-8");

    two_init(&r);
    r.ipv[1].string_param = "ab\xed\xa0\x80";
    expect_exact(&r, SELDON_EPARSE,
                 "inputs[1].parameters[0].value.string_param: at byte 2: invalid UTF-8");

    two_init(&r);
    r.op.key = "\x80";
    expect_exact(&r, SELDON_EPARSE, "outputs[1].parameters[0].key: at byte 0: invalid UTF-8");

    two_init(&r);
    r.out[1].name = "yy\xf5";
    expect_exact(&r, SELDON_EPARSE, "outputs[1].name: at byte 2: invalid UTF-8");
}

/* A NUL has to be written into the wire bytes: protobuf-c strings stop at one. */
Test(pb_errors, nul_in_a_nested_name)
{
    two_req r;
    uint8_t buf[1024];
    size_t n, i;
    seldon_msg *m = NULL;
    two_init(&r);
    r.in[1].name = "bQc";
    n = inference__model_infer_request__pack(&r.req, buf);
    for (i = 0; i + 2 < n; i++)
        if (memcmp(buf + i, "bQc", 3) == 0)
            buf[i + 1] = 0;
    cr_assert_eq(seldon_msg_new(&m, SELDON_MSG_REQUEST), 0);
    cr_assert_eq(seldon_msg_decode_pb(m, buf, n, 0), SELDON_EPARSE);
    cr_assert_str_eq(seldon_last_error(),
                     "inputs[1].name: at byte 1: a NUL byte is not allowed in this string");
    seldon_msg_free(m);
}

/* The deepest path of the service: a stream response's output parameter text. */
Test(pb_errors, stream_response_path)
{
    Inference__ModelStreamInferResponse s;
    Inference__ModelInferResponse resp;
    Inference__ModelInferResponse__InferOutputTensor o[2], *op[2] = {&o[0], &o[1]};
    Inference__ModelInferResponse__InferOutputTensor__ParametersEntry e[2], *ep[2] = {&e[0], &e[1]};
    Inference__InferParameter v[2];
    uint8_t buf[512];
    size_t n;
    int i;

    inference__model_stream_infer_response__init(&s);
    inference__model_infer_response__init(&resp);
    for (i = 0; i < 2; i++) {
        inference__model_infer_response__infer_output_tensor__init(&o[i]);
        inference__model_infer_response__infer_output_tensor__parameters_entry__init(&e[i]);
        inference__infer_parameter__init(&v[i]);
        v[i].parameter_choice_case = INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_STRING_PARAM;
        v[i].string_param = "fine";
        e[i].key = "k";
        e[i].value = &v[i];
        o[i].name = "o";
        o[i].datatype = "FP32";
    }
    o[1].n_parameters = 2;
    o[1].parameters = ep;
    v[1].string_param = "\xfe";
    resp.n_outputs = 2;
    resp.outputs = op;
    s.infer_response = &resp;
    n = inference__model_stream_infer_response__pack(&s, buf);
    cr_assert_eq(seldon_pb_check_strings(buf, n, "inference.ModelStreamInferResponse"),
                 SELDON_EPARSE);
    cr_assert_str_eq(seldon_last_error(),
                     "infer_response.outputs[1].parameters[1].value.string_param: at byte 0: "
                     "invalid UTF-8");
}
