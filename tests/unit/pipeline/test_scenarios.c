/* Seldon's acceptance scenarios (seldon-core2-scenarios.md), at the engine level, with fake models.
 */
#include "pl_test.h"

static const int32_t A[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
static seldon_msg *tfsimple_in(seldon_pipeline_engine *e)
{
    seldon_msg *m = req_msg(e);
    add_i32(m, "INPUT0", A, 1, 16);
    add_i32(m, "INPUT1", A, 1, 16);
    return m;
}

static void expect_i32(const seldon_msg *m, const char *name, int mul)
{
    const int32_t *v = i32(m, name);
    int i;
    for (i = 0; i < 16; i++)
        cr_assert_eq(v[i], mul * A[i], "%s[%d] = %d", name, i, v[i]);
}

Test(scenarios, model_chaining)
{
    pl_set s = {0};
    run_result r = {0};
    seldon_pipeline_engine *e;
    cr_assert_eq(pl_add(&s, HEAD "model-chain-tfsimples\nspec:\n  steps:\n  - name: tfsimple1\n"
                                 "  - name: tfsimple2\n    inputs: [tfsimple1]\n    tensorMap:\n"
                                 "      tfsimple1.outputs.OUTPUT0: INPUT0\n"
                                 "      tfsimple1.outputs.OUTPUT1: INPUT1\n"
                                 "  output:\n    steps: [tfsimple2]\n"),
                 0, "%s", seldon_last_error());
    e = engine_of(&s);
    push(e, "model-chain-tfsimples", "r1", tfsimple_in(e), T0);
    drain(e, &r, T0, 1);
    cr_assert_str_eq(r.calls, "tfsimple1 tfsimple2 ");
    cr_assert_eq(r.outputs, 1);
    cr_assert_eq(seldon_msg_tensor_count(r.out), 2);
    expect_i32(r.out, "OUTPUT0", 2);
    expect_i32(r.out, "OUTPUT1", 2);
    cr_assert_str_eq(r.out_id, "r1");
    cr_assert_eq(seldon_pipeline_engine_requests(e), 0);
    run_free(&r);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

Test(scenarios, input_chaining_reads_a_steps_inputs)
{
    pl_set s = {0};
    run_result r = {0};
    seldon_pipeline_engine *e;
    cr_assert_eq(pl_add(&s, HEAD "chain-from-input\nspec:\n  steps:\n  - name: tfsimple1\n"
                                 "  - name: tfsimple2\n    inputs:\n    - tfsimple1.inputs.INPUT0\n"
                                 "    - tfsimple1.outputs.OUTPUT1\n    tensorMap:\n"
                                 "      tfsimple1.outputs.OUTPUT1: INPUT1\n"
                                 "  output:\n    steps: [tfsimple2]\n"),
                 0, "%s", seldon_last_error());
    e = engine_of(&s);
    push(e, "chain-from-input", "r1", tfsimple_in(e), T0);
    drain(e, &r, T0, 1);
    cr_assert_eq(r.outputs, 1, "%s", r.error);
    expect_i32(r.out, "OUTPUT0", 1);
    expect_i32(r.out, "OUTPUT1", 1);
    run_free(&r);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

Test(scenarios, join_of_two_steps_through_tensor_map)
{
    pl_set s = {0};
    run_result r = {0};
    seldon_pipeline_engine *e;
    cr_assert_eq(pl_add(&s, HEAD
                        "join-pipeline\nspec:\n  steps:\n  - name: tfsimple1\n  - name: tfsimple2\n"
                        "  - name: tfsimple3\n    inputs: [tfsimple1.outputs.OUTPUT0, "
                        "tfsimple2.outputs.OUTPUT1]\n"
                        "    tensorMap:\n      tfsimple1.outputs.OUTPUT0: INPUT0\n"
                        "      tfsimple2.outputs.OUTPUT1: INPUT1\n"
                        "  output:\n    steps: [tfsimple3]\n"),
                 0, "%s", seldon_last_error());
    e = engine_of(&s);
    push(e, "join-pipeline", "r1", tfsimple_in(e), T0);
    drain(e, &r, T0, 1);
    cr_assert_str_eq(r.calls, "tfsimple1 tfsimple2 tfsimple3 ");
    cr_assert_eq(r.outputs, 1, "%s", r.error);
    expect_i32(r.out, "OUTPUT0", 2);
    expect_i32(r.out, "OUTPUT1", 2);
    run_free(&r);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

static const char *COND = HEAD "tfsimple-conditional\nspec:\n  steps:\n  - name: conditional\n"
                               "  - name: mul10\n    inputs: [conditional.outputs.OUTPUT0]\n"
                               "    tensorMap: {conditional.outputs.OUTPUT0: INPUT}\n"
                               "  - name: add10\n    inputs: [conditional.outputs.OUTPUT1]\n"
                               "    tensorMap: {conditional.outputs.OUTPUT1: INPUT}\n"
                               "  output:\n    steps: [mul10, add10]\n    stepsJoin: any\n";

static void conditional(int choice, const char *calls, float want0)
{
    pl_set s = {0};
    run_result r = {0};
    seldon_pipeline_engine *e;
    seldon_msg *m;
    int32_t c = choice;
    int64_t one = 1;
    const float *o;
    int i;
    cr_assert_eq(pl_add(&s, COND), 0, "%s", seldon_last_error());
    e = engine_of(&s);
    m = req_msg(e);
    cr_assert_eq(seldon_msg_add_tensor(NULL, m, "CHOICE", 6, SELDON_DT_INT32, &one, 1, &c, 4, 0),
                 0);
    add_f32(m, "INPUT0", V4, 4);
    add_f32(m, "INPUT1", V4, 4);
    push(e, "tfsimple-conditional", "r1", m, T0);
    drain(e, &r, T0, 1);
    cr_assert_str_eq(r.calls, calls);
    cr_assert_eq(r.outputs, 1, "%s", r.error);
    cr_assert_eq(r.errors, 0, "%s", r.error);
    cr_assert_eq(seldon_msg_tensor_count(r.out), 1);
    o = f32(r.out, "OUTPUT");
    for (i = 0; i < 4; i++)
        cr_assert_float_eq(o[i], choice == 0 ? V4[i] * 10 : V4[i] + 10, 1e-6);
    (void)want0;
    cr_assert_eq(seldon_pipeline_engine_requests(e), 0);
    run_free(&r);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

Test(scenarios, conditional_choice_0_goes_through_mul10_only)
{
    conditional(0, "conditional mul10 ", 10);
}

Test(scenarios, conditional_choice_1_goes_through_add10_only)
{
    conditional(1, "conditional add10 ", 11);
}

Test(scenarios, input_tensors_two_outputs_named_output_in_steps_order)
{
    pl_set s = {0};
    run_result r = {0};
    seldon_pipeline_engine *e;
    seldon_msg *m;
    seldon_tensor t;
    cr_assert_eq(pl_add(&s, HEAD "pipeline-inputs\nspec:\n  steps:\n  - name: mul10\n"
                                 "    inputs: [pipeline-inputs.inputs.INPUT0]\n"
                                 "    tensorMap: {pipeline-inputs.inputs.INPUT0: INPUT}\n"
                                 "  - name: add10\n    inputs: [pipeline-inputs.inputs.INPUT1]\n"
                                 "    tensorMap: {pipeline-inputs.inputs.INPUT1: INPUT}\n"
                                 "  output:\n    steps: [mul10, add10]\n"),
                 0, "%s", seldon_last_error());
    e = engine_of(&s);
    m = req_msg(e);
    add_f32(m, "INPUT0", V4, 4);
    add_f32(m, "INPUT1", V4, 4);
    push(e, "pipeline-inputs", "r1", m, T0);
    /* Answer add10 first: the output keeps output.steps order all the same. */
    {
        seldon_pipeline_event ev[2];
        int i;
        for (i = 0; i < 2; i++)
            cr_assert_eq(seldon_pipeline_engine_poll(&ev[i], e), 1);
        for (i = 1; i >= 0; i--) {
            seldon_msg *resp = seldon_pipeline_engine_msg(e, SELDON_MSG_RESPONSE);
            cr_assert_null(fake_model(e, ev[i].model, ev[i].msg, resp));
            cr_assert_eq(seldon_pipeline_engine_answer(e, ev[i].call_id, resp, T0), 0);
        }
    }
    drain(e, &r, T0, 1);
    cr_assert_eq(r.outputs, 1);
    cr_assert_eq(seldon_msg_tensor_count(r.out), 2);
    seldon_msg_tensor(&t, r.out, 0);
    cr_assert_str_eq(t.name, "OUTPUT");
    cr_assert_float_eq(((float *)t.data)[3], 40, 1e-6);
    seldon_msg_tensor(&t, r.out, 1);
    cr_assert_str_eq(t.name, "OUTPUT");
    cr_assert_float_eq(((float *)t.data)[3], 14, 1e-6);
    run_free(&r);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

static const char *TRIG =
    HEAD "trigger-joins\nspec:\n  steps:\n  - name: mul10\n"
         "    inputs: [trigger-joins.inputs.INPUT]\n"
         "    triggers: [trigger-joins.inputs.ok1, trigger-joins.inputs.ok2]\n"
         "    triggersJoinType: any\n"
         "  - name: add10\n    inputs: [trigger-joins.inputs.INPUT]\n"
         "    triggers: [trigger-joins.inputs.ok3]\n"
         "  output:\n    steps: [mul10, add10]\n    stepsJoin: any\n";

static void trigger_case(const char *trig, const char *calls, float want3)
{
    pl_set s = {0};
    run_result r = {0};
    seldon_pipeline_engine *e;
    seldon_msg *m;
    float one = 1;
    cr_assert_eq(pl_add(&s, TRIG), 0, "%s", seldon_last_error());
    e = engine_of(&s);
    m = req_msg(e);
    add_f32(m, trig, &one, 1);
    add_f32(m, "INPUT", V4, 4);
    push(e, "trigger-joins", "r1", m, T0);
    drain(e, &r, T0, 1);
    cr_assert_str_eq(r.calls, calls);
    cr_assert_eq(r.outputs, 1, "%s", r.error);
    cr_assert_eq(seldon_msg_tensor_count(r.out), 1);
    cr_assert_float_eq(f32(r.out, "OUTPUT")[3], want3, 1e-6);
    run_free(&r);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

Test(scenarios, trigger_any_fires_mul10_and_trigger_tensors_are_not_passed)
{
    trigger_case("ok1", "mul10 ", 40);
    trigger_case("ok2", "mul10 ", 40);
}

Test(scenarios, trigger_ok3_fires_add10)
{
    trigger_case("ok3", "add10 ", 14);
}

static void join_node(const char *yaml, const char *pipe, int t1, int t2)
{
    pl_set s = {0};
    run_result r = {0};
    seldon_pipeline_engine *e;
    seldon_msg *m;
    int64_t one = 1, shape = 1;
    uint8_t yes = 1;
    cr_assert_eq(pl_add(&s, yaml), 0, "%s", seldon_last_error());
    e = engine_of(&s);
    m = req_msg(e);
    cr_assert_eq(
        seldon_msg_add_tensor(NULL, m, "INPUT1", 6, SELDON_DT_INT64, &shape, 1, &one, 8, 0), 0);
    cr_assert_eq(
        seldon_msg_add_tensor(NULL, m, "INPUT2", 6, SELDON_DT_INT64, &shape, 1, &one, 8, 0), 0);
    if (t1)
        cr_assert_eq(
            seldon_msg_add_tensor(NULL, m, "TRIGGER1", 8, SELDON_DT_BOOL, &shape, 1, &yes, 1, 0),
            0);
    if (t2)
        cr_assert_eq(
            seldon_msg_add_tensor(NULL, m, "TRIGGER2", 8, SELDON_DT_BOOL, &shape, 1, &yes, 1, 0),
            0);
    push(e, pipe, "r1", m, T0);
    drain(e, &r, T0, 1);
    cr_assert_eq(r.outputs, 1, "%s", r.error);
    {
        seldon_tensor t;
        cr_assert(has_tensor(r.out, "OUTPUT1", &t));
        cr_assert_eq(t.datatype, SELDON_DT_INT64);
        cr_assert_eq(((int64_t *)t.data)[0], 2);
    }
    run_free(&r);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

Test(scenarios, triggers_join_on_pipeline_inputs_and_internal)
{
    const char *inputs = HEAD
        "triggers-join-inputs\nspec:\n  steps:\n  - name: join_node\n"
        "    inputs: [triggers-join-inputs.inputs.INPUT1, triggers-join-inputs.inputs.INPUT2]\n"
        "    triggers: [triggers-join-inputs.inputs.TRIGGER1, "
        "triggers-join-inputs.inputs.TRIGGER2]\n"
        "    triggersJoinType: any\n  output:\n    steps: [join_node]\n";
    const char *internal =
        HEAD "tji\nspec:\n  steps:\n  - name: id1_node\n    inputs: [tji.inputs.TRIGGER1]\n"
             "    tensorMap: {tji.inputs.TRIGGER1: INPUT1}\n"
             "  - name: id2_node\n    inputs: [tji.inputs.TRIGGER2]\n"
             "    tensorMap: {tji.inputs.TRIGGER2: INPUT1}\n"
             "  - name: join_node\n    inputs: [tji.inputs.INPUT1, tji.inputs.INPUT2]\n"
             "    triggers: [id1_node.outputs.OUTPUT1, id2_node.outputs.OUTPUT1]\n"
             "    triggersJoinType: any\n  output:\n    steps: [join_node]\n";
    join_node(inputs, "triggers-join-inputs", 1, 1);
    join_node(inputs, "triggers-join-inputs", 1, 0);
    join_node(inputs, "triggers-join-inputs", 0, 1);
    join_node(internal, "tji", 1, 1);
    join_node(internal, "tji", 1, 0);
    join_node(internal, "tji", 0, 1);
}

Test(scenarios, pipeline_chaining_through_external_inputs)
{
    pl_set s = {0};
    run_result r = {0};
    seldon_pipeline_engine *e;
    cr_assert_eq(
        pl_add(&s, HEAD
               "tfsimple\nspec:\n  steps:\n  - name: tfsimple1\n  output:\n    steps: [tfsimple1]\n"
               "---\n" HEAD
               "tfsimple-extended\nspec:\n  input:\n    externalInputs: [tfsimple.outputs]\n"
               "    tensorMap:\n      tfsimple.outputs.OUTPUT0: INPUT0\n      "
               "tfsimple.outputs.OUTPUT1: INPUT1\n"
               "  steps:\n  - name: tfsimple2\n  output:\n    steps: [tfsimple2]\n"
               "---\n" HEAD "tfsimple-extended-step\nspec:\n  input:\n    externalInputs: "
               "[tfsimple.step.tfsimple1.outputs]\n"
               "    tensorMap:\n      tfsimple.step.tfsimple1.outputs.OUTPUT0: INPUT0\n"
               "      tfsimple.step.tfsimple1.outputs.OUTPUT1: INPUT1\n"
               "  steps:\n  - name: tfsimple3\n  output:\n    steps: [tfsimple3]\n"),
        0, "%s", seldon_last_error());
    e = engine_of(&s);
    push(e, "tfsimple", "r1", tfsimple_in(e), T0);
    drain(e, &r, T0, 1);
    cr_assert_eq(r.outputs, 3, "%s", r.error);
    cr_assert(strstr(r.calls, "tfsimple1 ") == r.calls, "%s", r.calls);
    cr_assert(strstr(r.calls, "tfsimple2") && strstr(r.calls, "tfsimple3"), "%s", r.calls);
    expect_i32(r.out, "OUTPUT0", 2);
    cr_assert_eq(seldon_pipeline_engine_requests(e), 0);
    run_free(&r);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

Test(scenarios, a_failing_model_ends_the_request_with_model_colon_error)
{
    pl_set s = {0};
    run_result r = {0};
    seldon_pipeline_engine *e;
    cr_assert_eq(
        pl_add(&s, HEAD
               "tfsimples\nspec:\n  steps:\n  - name: tfsimple1\n  - name: tfsimple2\n"
               "    inputs: [tfsimple1]\n    tensorMap:\n      tfsimple1.outputs.OUTPUT0: INPUT0\n"
               "      tfsimple1.outputs.OUTPUT1: INPUT1\n  output:\n    steps: [tfsimple2]\n"),
        0, "%s", seldon_last_error());
    e = engine_of(&s);
    {
        seldon_msg *m = req_msg(e);
        int32_t big[20] = {0};
        add_i32(m, "INPUT0", big, 1, 20);
        add_i32(m, "INPUT1", big, 1, 20);
        push(e, "tfsimples", "r1", m, T0);
    }
    drain(e, &r, T0, 1);
    cr_assert_eq(r.outputs, 0);
    cr_assert_eq(r.errors, 1);
    cr_assert_eq(r.error_kind, SELDON_PIPELINE_ERR_MODEL);
    cr_assert_str_eq(r.error, "tfsimple1 : unexpected shape for input 'INPUT0'");
    cr_assert_str_eq(r.calls, "tfsimple1 ");
    cr_assert_eq(seldon_pipeline_engine_requests(e), 0);
    run_free(&r);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}
