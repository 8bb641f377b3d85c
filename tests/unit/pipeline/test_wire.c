/*
 * Seldon's gRPC scenarios at the wire: a ModelInferRequest decoded, run
 * through the engine with models answering in raw form (as Triton does), the
 * pipeline's answer encoded as a ModelInferResponse; its outputs must be
 * exactly {name, datatype, shape} with raw_output_contents equal to the
 * scenario's base64 strings.
 */
#include "pl_test.h"

static size_t b64d(uint8_t *out, const char *s)
{
    static const char *abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint32_t acc = 0;
    int bits = 0;
    size_t n = 0;
    for (; *s && *s != '='; s++) {
        acc = (acc << 6) | (uint32_t)(strchr(abc, *s) - abc);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (uint8_t)(acc >> bits);
        }
    }
    return n;
}

/* Decodes body as kind, as the gateway would. */
static seldon_msg *decoded(seldon_pipeline_engine *e, const seldon_buf *b, int32_t kind)
{
    seldon_msg *m = seldon_pipeline_engine_msg(e, kind);
    cr_assert_eq(seldon_msg_decode_pb(m, b->data, b->len, 0), 0, "%s", seldon_last_error());
    return m;
}

/* Runs one request; models answer through the protobuf codec (raw contents). */
static seldon_msg *run_wire(seldon_pipeline_engine *e, const char *pipe, seldon_msg *typed)
{
    seldon_buf b = SELDON_BUF_INIT;
    seldon_pipeline_event ev;
    seldon_msg *out = NULL;
    /* The client sends typed contents (int_contents, fp32_contents). */
    cr_assert_eq(seldon_msg_encode_pb(&b, typed, SELDON_ENCODE_PB_TYPED), 0);
    seldon_msg_free(typed);
    push(e, pipe, "wire", decoded(e, &b, SELDON_MSG_REQUEST), T0);
    for (;;) {
        seldon_pipeline_event calls[8];
        int n = 0, i;
        while (seldon_pipeline_engine_poll(&ev, e) == 1) {
            if (ev.kind == SELDON_PIPELINE_EVENT_CALL)
                calls[n++] = ev;
            else if (ev.kind == SELDON_PIPELINE_EVENT_OUTPUT) {
                b.len = 0;
                cr_assert_eq(seldon_msg_encode_pb(&b, ev.msg, 0), 0);
                cr_assert_null(out);
                cr_assert_eq(seldon_msg_new(&out, SELDON_MSG_RESPONSE), 0);
                cr_assert_eq(seldon_msg_decode_pb(out, b.data, b.len, 0), 0);
            } else {
                cr_assert_fail("error: %s", ev.error);
            }
        }
        if (n == 0)
            break;
        for (i = 0; i < n; i++) {
            /* The model's answer crosses the wire in raw form, like Triton's. */
            seldon_msg *r = seldon_pipeline_engine_msg(e, SELDON_MSG_RESPONSE);
            b.len = 0;
            cr_assert_null(fake_model(e, calls[i].model, calls[i].msg, r));
            cr_assert_eq(seldon_msg_encode_pb(&b, r, 0), 0);
            seldon_msg_free(r);
            cr_assert_eq(seldon_pipeline_engine_answer(e, calls[i].call_id,
                                                       decoded(e, &b, SELDON_MSG_RESPONSE), T0),
                         0);
        }
    }
    seldon_buf_free(&b);
    cr_assert_not_null(out, "no output");
    return out;
}

static void expect_out(const seldon_msg *m, size_t i, const char *name, int32_t dt,
                       const int64_t *shape, uint32_t ndim, const char *b64)
{
    seldon_tensor t;
    uint8_t want[256];
    size_t n = b64d(want, b64);
    cr_assert_eq(seldon_msg_tensor(&t, m, i), 0);
    cr_assert_str_eq(t.name, name);
    cr_assert_eq(t.datatype, dt);
    cr_assert_eq(t.ndim, ndim);
    cr_assert_arr_eq(t.shape, shape, ndim * sizeof(int64_t));
    cr_assert_eq(t.nbytes, n);
    cr_assert_arr_eq(t.data, want, n);
    cr_assert_eq(seldon_msg_param_count(m, SELDON_SCOPE_TENSOR, i), 0, "no parameters added");
}

static const char *B2_32 =
    "AgAAAAQAAAAGAAAACAAAAAoAAAAMAAAADgAAABAAAAASAAAAFAAAABYAAAAYAAAAGgAAABwAAAAe"
    "AAAAIAAAAA==";

Test(wire, model_chaining_grpc)
{
    pl_set s = {0};
    seldon_pipeline_engine *e;
    seldon_msg *m, *out;
    int32_t a[16];
    int64_t shape[2] = {1, 16};
    int i;
    for (i = 0; i < 16; i++)
        a[i] = i + 1;
    cr_assert_eq(pl_add(&s, HEAD "model-chain-tfsimples-iuw3\nspec:\n  steps:\n"
                                 "  - name: model-chain-tfsimple1-iuw3\n"
                                 "  - name: model-chain-tfsimple2-iuw3\n"
                                 "    inputs: [model-chain-tfsimple1-iuw3]\n    tensorMap:\n"
                                 "      model-chain-tfsimple1-iuw3.outputs.OUTPUT0: INPUT0\n"
                                 "      model-chain-tfsimple1-iuw3.outputs.OUTPUT1: INPUT1\n"
                                 "  output: { steps: [model-chain-tfsimple2-iuw3] }\n"),
                 0, "%s", seldon_last_error());
    e = engine_of(&s);
    cr_assert_eq(seldon_msg_new(&m, SELDON_MSG_REQUEST), 0);
    add_i32(m, "INPUT0", a, 1, 16);
    add_i32(m, "INPUT1", a, 1, 16);
    out = run_wire(e, "model-chain-tfsimples-iuw3", m);
    cr_assert_eq(seldon_msg_tensor_count(out), 2);
    expect_out(out, 0, "OUTPUT0", SELDON_DT_INT32, shape, 2, B2_32);
    expect_out(out, 1, "OUTPUT1", SELDON_DT_INT32, shape, 2, B2_32);
    seldon_msg_free(out);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

Test(wire, conditional_grpc)
{
    pl_set s = {0};
    seldon_pipeline_engine *e;
    seldon_msg *m, *out;
    int32_t choice = 0;
    int64_t one = 1, four = 4;
    const float v[4] = {1, 2, 3, 4};
    cr_assert_eq(pl_add(&s, HEAD
                        "tfsimple-conditional-nbsl\nspec:\n  steps:\n"
                        "  - name: conditional-nbsl\n  - name: mul10-nbsl\n"
                        "    inputs: [conditional-nbsl.outputs.OUTPUT0]\n"
                        "    tensorMap: { conditional-nbsl.outputs.OUTPUT0: INPUT }\n"
                        "  - name: add10-nbsl\n    inputs: [conditional-nbsl.outputs.OUTPUT1]\n"
                        "    tensorMap: { conditional-nbsl.outputs.OUTPUT1: INPUT }\n"
                        "  output:\n    steps: [mul10-nbsl, add10-nbsl]\n    stepsJoin: any\n"),
                 0, "%s", seldon_last_error());
    e = engine_of(&s);
    cr_assert_eq(seldon_msg_new(&m, SELDON_MSG_REQUEST), 0);
    cr_assert_eq(
        seldon_msg_add_tensor(NULL, m, "CHOICE", 6, SELDON_DT_INT32, &one, 1, &choice, 4, 0), 0);
    add_f32(m, "INPUT0", v, 4);
    add_f32(m, "INPUT1", v, 4);
    out = run_wire(e, "tfsimple-conditional-nbsl", m);
    cr_assert_eq(seldon_msg_tensor_count(out), 1);
    expect_out(out, 0, "OUTPUT", SELDON_DT_FP32, &four, 1, "AAAgQQAAoEEAAPBBAAAgQg==");
    seldon_msg_free(out);
    /* CHOICE 1 goes through add10: 11, 12, 13, 14. */
    choice = 1;
    cr_assert_eq(seldon_msg_new(&m, SELDON_MSG_REQUEST), 0);
    cr_assert_eq(
        seldon_msg_add_tensor(NULL, m, "CHOICE", 6, SELDON_DT_INT32, &one, 1, &choice, 4, 0), 0);
    add_f32(m, "INPUT0", v, 4);
    add_f32(m, "INPUT1", v, 4);
    out = run_wire(e, "tfsimple-conditional-nbsl", m);
    expect_out(out, 0, "OUTPUT", SELDON_DT_FP32, &four, 1, "AAAwQQAAQEEAAFBBAABgQQ==");
    seldon_msg_free(out);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

Test(wire, input_tensors_grpc_duplicate_names_in_steps_order)
{
    pl_set s = {0};
    seldon_pipeline_engine *e;
    seldon_msg *m, *out;
    int64_t four = 4;
    const float v[4] = {1, 2, 3, 4};
    cr_assert_eq(pl_add(&s, HEAD
                        "pipeline-inputs-tw2x\nspec:\n  steps:\n  - name: mul10-tw2x\n"
                        "    inputs: [pipeline-inputs-tw2x.inputs.INPUT0]\n"
                        "    tensorMap: { pipeline-inputs-tw2x.inputs.INPUT0: INPUT }\n"
                        "  - name: add10-tw2x\n    inputs: [pipeline-inputs-tw2x.inputs.INPUT1]\n"
                        "    tensorMap: { pipeline-inputs-tw2x.inputs.INPUT1: INPUT }\n"
                        "  output: { steps: [mul10-tw2x, add10-tw2x] }\n"),
                 0, "%s", seldon_last_error());
    e = engine_of(&s);
    cr_assert_eq(seldon_msg_new(&m, SELDON_MSG_REQUEST), 0);
    add_f32(m, "INPUT0", v, 4);
    add_f32(m, "INPUT1", v, 4);
    out = run_wire(e, "pipeline-inputs-tw2x", m);
    cr_assert_eq(seldon_msg_tensor_count(out), 2);
    expect_out(out, 0, "OUTPUT", SELDON_DT_FP32, &four, 1, "AAAgQQAAoEEAAPBBAAAgQg==");
    expect_out(out, 1, "OUTPUT", SELDON_DT_FP32, &four, 1, "AAAwQQAAQEEAAFBBAABgQQ==");
    seldon_msg_free(out);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}
