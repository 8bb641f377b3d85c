/*
 * The CLI's protobuf-to-JSON printer (daemons/cli/pbjson.c) on hand-made values:
 * floats in Go protojson's shortest form, raw contents of every datatype decoded,
 * raw lists that do not decode shown as base64, tensor selection, non-messages.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc_predict_v2.pb-c.h"
#include "pbjson.h"

typedef Inference__ModelInferResponse Resp;
typedef Inference__ModelInferResponse__InferOutputTensor Out;

static char *print(const Resp *r, int outputs, const char *tensor, int *rc)
{
    size_t n = protobuf_c_message_get_packed_size(&r->base), len = 0;
    uint8_t *buf = malloc(n + 1);
    char *text = NULL;
    FILE *f = open_memstream(&text, &len);
    protobuf_c_message_pack(&r->base, buf);
    *rc = cli_pbjson_value(f, buf, n, outputs, tensor);
    fclose(f);
    free(buf);
    return text;
}

static char *one_output(Out *o, ProtobufCBinaryData *raw, size_t nraw)
{
    Resp r = INFERENCE__MODEL_INFER_RESPONSE__INIT;
    Out *outs[1] = {o};
    int rc;
    char *t;
    r.n_outputs = 1;
    r.outputs = outs;
    r.n_raw_output_contents = nraw;
    r.raw_output_contents = raw;
    t = print(&r, 1, NULL, &rc);
    cr_assert_eq(rc, 1);
    return t;
}

Test(pbjson, floats_as_protojson)
{
    Out o = INFERENCE__MODEL_INFER_RESPONSE__INFER_OUTPUT_TENSOR__INIT;
    Inference__InferTensorContents c = INFERENCE__INFER_TENSOR_CONTENTS__INIT;
    double d[] = {0.1, 1e21, 1e20, 1e-7, 1.5e-6, -2.5, 123456789.125, 5e-324, NAN, -INFINITY, 0};
    float fl[] = {0.1f, 16777216.0f, 3.4028235e38f, 1e-7f, -0.5f};
    char *t;
    o.name = "x";
    o.contents = &c;
    c.n_fp64_contents = sizeof(d) / sizeof(d[0]);
    c.fp64_contents = d;
    c.n_fp32_contents = sizeof(fl) / sizeof(fl[0]);
    c.fp32_contents = fl;
    t = one_output(&o, NULL, 0);
    cr_assert_str_eq(t, "{\"outputs\":[{\"name\":\"x\",\"contents\":{"
                        "\"fp32Contents\":[0.1,16777216,3.4028235e+38,1e-7,-0.5],"
                        "\"fp64Contents\":[0.1,1e+21,100000000000000000000,1e-7,0.0000015,-2.5,"
                        "123456789.125,5e-324,\"NaN\",\"-Infinity\",0]}}]}");
    free(t);
}

Test(pbjson, raw_of_every_datatype)
{
    static const struct {
        const char *dt;
        const char *bytes;
        size_t n;
        const char *want;
    } cases[] = {
        {"BOOL", "\x01\x00", 2, "\"boolContents\":[true,false]"},
        {"UINT8", "\xff\x01", 2, "\"uintContents\":[255,1]"},
        {"UINT16", "\xff\xff", 2, "\"uintContents\":[65535]"},
        {"UINT32", "\xff\xff\xff\xff", 4, "\"uintContents\":[4294967295]"},
        {"UINT64", "\xff\xff\xff\xff\xff\xff\xff\xff", 8,
         "\"uint64Contents\":[\"18446744073709551615\"]"},
        {"INT8", "\xff\x7f", 2, "\"intContents\":[-1,127]"},
        {"INT16", "\x00\x80", 2, "\"intContents\":[-32768]"},
        {"INT32", "\xfe\xff\xff\xff", 4, "\"intContents\":[-2]"},
        {"INT64", "\xfe\xff\xff\xff\xff\xff\xff\xff", 8, "\"int64Contents\":[\"-2\"]"},
        {"FP16", "\x00\x3c\x00\xc1", 4, "\"fp32Contents\":[1,-2.5]"},
        {"BF16", "\xc0\x3f", 2, "\"fp32Contents\":[1.5]"},
        {"FP32", "\x00\x00\xc0\x3f", 4, "\"fp32Contents\":[1.5]"},
        {"FP64", "\x00\x00\x00\x00\x00\x00\xf8\x3f", 8, "\"fp64Contents\":[1.5]"},
        {"BYTES", "\x02\x00\x00\x00hi\x00\x00\x00\x00", 10, "\"bytesContents\":[\"aGk=\",\"\"]"},
    };
    size_t i;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        Out o = INFERENCE__MODEL_INFER_RESPONSE__INFER_OUTPUT_TENSOR__INIT;
        ProtobufCBinaryData raw = {cases[i].n, (uint8_t *)cases[i].bytes};
        char want[256], *t;
        o.name = "t";
        o.datatype = (char *)cases[i].dt;
        t = one_output(&o, &raw, 1);
        snprintf(want, sizeof(want),
                 "{\"outputs\":[{\"name\":\"t\",\"datatype\":\"%s\",\"contents\":{%s}}]}",
                 cases[i].dt, cases[i].want);
        cr_assert_str_eq(t, want, "%s", cases[i].dt);
        free(t);
    }
}

Test(pbjson, raw_that_does_not_decode_stays_base64)
{
    Out o = INFERENCE__MODEL_INFER_RESPONSE__INFER_OUTPUT_TENSOR__INIT;
    ProtobufCBinaryData raw[2] = {{3, (uint8_t *)"abc"}, {1, (uint8_t *)"d"}};
    char *t;
    o.name = "t";
    o.datatype = "FP32"; /* 3 bytes: not whole FP32 elements */
    t = one_output(&o, raw, 1);
    cr_assert_str_eq(t, "{\"outputs\":[{\"name\":\"t\",\"datatype\":\"FP32\"}],"
                        "\"rawOutputContents\":[\"YWJj\"]}");
    free(t);
    o.datatype = "BYTES"; /* a length past the end */
    raw[0] = (ProtobufCBinaryData){5, (uint8_t *)"\x09\x00\x00\x00x"};
    t = one_output(&o, raw, 1);
    cr_assert(strstr(t, "\"rawOutputContents\":[\"CQAAAHg=\"]") != NULL, "%s", t);
    free(t);
    o.datatype = "INT32"; /* more raw entries than tensors */
    raw[0] = (ProtobufCBinaryData){4, (uint8_t *)"\x01\x00\x00\x00"};
    t = one_output(&o, raw, 2);
    cr_assert(strstr(t, "\"rawOutputContents\":[\"AQAAAA==\",\"ZA==\"]") != NULL, "%s", t);
    free(t);
}

Test(pbjson, tensor_selection_and_non_messages)
{
    Resp r = INFERENCE__MODEL_INFER_RESPONSE__INIT;
    Out a = INFERENCE__MODEL_INFER_RESPONSE__INFER_OUTPUT_TENSOR__INIT;
    Out b = INFERENCE__MODEL_INFER_RESPONSE__INFER_OUTPUT_TENSOR__INIT;
    Out *outs[2] = {&a, &b};
    int64_t shape[2] = {1, 1};
    ProtobufCBinaryData raw[2] = {{4, (uint8_t *)"\x01\x00\x00\x00"},
                                  {4, (uint8_t *)"\x02\x00\x00\x00"}};
    char *t, *text = NULL;
    size_t len = 0;
    FILE *f;
    int rc;
    a.name = "A";
    b.name = "B";
    a.datatype = b.datatype = "INT32";
    a.n_shape = b.n_shape = 2;
    a.shape = b.shape = shape;
    r.n_outputs = 2;
    r.outputs = outs;
    r.n_raw_output_contents = 2;
    r.raw_output_contents = raw;
    t = print(&r, 1, "B", &rc);
    cr_assert_eq(rc, 1);
    cr_assert_str_eq(t, "{\"name\":\"B\",\"datatype\":\"INT32\",\"shape\":[\"1\",\"1\"],"
                        "\"contents\":{\"intContents\":[2]}}");
    free(t);
    t = print(&r, 1, "C", &rc);
    cr_assert_eq(rc, 0);
    cr_assert_str_eq(t, "");
    free(t);
    f = open_memstream(&text, &len);
    cr_assert_eq(cli_pbjson_value(f, (const uint8_t *)"{\"inputs\":[]}", 13, 0, NULL), -1);
    fclose(f);
    cr_assert_eq(len, 0);
    free(text);
}
