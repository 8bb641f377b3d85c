/* The engine's edges with a fake clock: join types and windows, timeouts, batches, cycles, limits.
 */
#include "pl_test.h"

/* p: a (add10 on X) and b (mul10 on Y) joined into identity c by joinType. */
static seldon_pipeline_engine *joined(pl_set *s, const char *type, const seldon_pipeline_options *o)
{
    char yaml[2048];
    seldon_pipeline_engine *e = NULL;
    snprintf(yaml, sizeof(yaml),
             HEAD "p\nspec:\n  steps:\n  - name: add10\n    inputs: [p.inputs.X]\n"
                  "    tensorMap: {p.inputs.X: INPUT}\n"
                  "  - name: mul10\n    inputs: [p.inputs.Y]\n    tensorMap: {p.inputs.Y: INPUT}\n"
                  "  - name: identity\n    inputs: [add10.outputs.OUTPUT, mul10.outputs.OUTPUT]\n"
                  "    inputsJoinType: %s\n    joinWindowMs: 100\n"
                  "    tensorMap: {add10.outputs.OUTPUT: INPUT, mul10.outputs.OUTPUT: OTHER}\n",
             type);
    cr_assert_eq(pl_add(s, yaml), 0, "%s", seldon_last_error());
    cr_assert_eq(seldon_pipeline_engine_new(&e, (const seldon_pipeline *const *)s->p, s->np, o), 0);
    return e;
}

/* Pushes X and Y; answers add10 only; returns mul10's call id. */
static uint64_t half(seldon_pipeline_engine *e, run_result *r)
{
    seldon_msg *m = req_msg(e);
    seldon_pipeline_event ev[2];
    uint64_t mul = 0;
    int i;
    add_f32(m, "X", V4, 4);
    add_f32(m, "Y", V4, 4);
    push(e, "p", "r1", m, T0);
    for (i = 0; i < 2; i++)
        cr_assert_eq(seldon_pipeline_engine_poll(&ev[i], e), 1);
    for (i = 0; i < 2; i++) {
        if (strcmp(ev[i].model, "add10") == 0) {
            seldon_msg *resp = seldon_pipeline_engine_msg(e, SELDON_MSG_RESPONSE);
            cr_assert_null(fake_model(e, "add10", ev[i].msg, resp));
            cr_assert_eq(seldon_pipeline_engine_answer(e, ev[i].call_id, resp, T0 + MS), 0);
        } else {
            mul = ev[i].call_id;
        }
    }
    drain(e, r, T0 + MS, 0);
    return mul;
}

Test(engine, outer_join_emits_its_partial_record_when_the_window_closes)
{
    pl_set s = {0};
    run_result r = {0};
    seldon_pipeline_engine *e = joined(&s, "outer", NULL);
    uint64_t mul = half(e, &r);
    cr_assert_str_eq(r.calls, "");
    cr_assert_eq(seldon_pipeline_engine_deadline(e), T0 + MS + 100 * MS);
    cr_assert_eq(seldon_pipeline_engine_advance(e, T0 + 100 * MS), 0);
    drain(e, &r, T0 + 100 * MS, 0);
    cr_assert_str_eq(r.calls, "", "nothing before the window closes");
    cr_assert_eq(seldon_pipeline_engine_advance(e, T0 + 101 * MS), 0);
    drain(e, &r, T0 + 101 * MS, 1);
    cr_assert_str_eq(r.calls, "identity ");
    cr_assert_eq(r.outputs, 1, "%s", r.error);
    cr_assert_float_eq(f32(r.out, "OUTPUT")[0], 11, 1e-6);
    cr_assert(!has_tensor(r.out, "OTHER", NULL));
    /* mul10 answers late: the request has ended, its answer is dropped. */
    cr_assert_eq(seldon_pipeline_engine_answer(
                     e, mul, seldon_pipeline_engine_msg(e, SELDON_MSG_RESPONSE), T0 + 200 * MS),
                 0);
    drain(e, &r, T0 + 200 * MS, 1);
    cr_assert_eq(r.outputs, 1);
    cr_assert_eq(seldon_pipeline_engine_requests(e), 0);
    run_free(&r);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

Test(engine, inner_join_within_the_window_joins_both)
{
    pl_set s = {0};
    run_result r = {0};
    seldon_pipeline_engine *e = joined(&s, "inner", NULL);
    uint64_t mul = half(e, &r);
    seldon_msg *resp = seldon_pipeline_engine_msg(e, SELDON_MSG_RESPONSE);
    seldon_msg *in = req_msg(e);
    add_f32(in, "INPUT", V4, 4);
    cr_assert_null(fake_model(e, "mul10", in, resp));
    seldon_msg_free(in);
    cr_assert_eq(seldon_pipeline_engine_answer(e, mul, resp, T0 + 50 * MS), 0);
    drain(e, &r, T0 + 50 * MS, 1);
    cr_assert_str_eq(r.calls, "identity ");
    cr_assert_eq(r.outputs, 1);
    cr_assert_float_eq(f32(r.out, "OUTPUT")[0], 11, 1e-6);
    run_free(&r);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

Test(engine, inner_join_past_the_window_drops_and_the_request_ends_without_output)
{
    pl_set s = {0};
    run_result r = {0};
    seldon_pipeline_engine *e = joined(&s, "inner", NULL);
    uint64_t mul = half(e, &r);
    seldon_msg *resp, *in;
    cr_assert_eq(seldon_pipeline_engine_advance(e, T0 + 150 * MS), 0);
    resp = seldon_pipeline_engine_msg(e, SELDON_MSG_RESPONSE);
    in = req_msg(e);
    add_f32(in, "INPUT", V4, 4);
    cr_assert_null(fake_model(e, "mul10", in, resp));
    seldon_msg_free(in);
    cr_assert_eq(seldon_pipeline_engine_answer(e, mul, resp, T0 + 150 * MS), 0);
    drain(e, &r, T0 + 150 * MS, 1);
    cr_assert_str_eq(r.calls, "");
    cr_assert_eq(r.outputs, 0);
    cr_assert_eq(r.errors, 1);
    cr_assert_eq(r.error_kind, SELDON_PIPELINE_ERR_NO_OUTPUT, "%s", r.error);
    cr_assert_eq(seldon_pipeline_engine_requests(e), 0);
    run_free(&r);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

Test(engine, any_join_forwards_every_arrival)
{
    pl_set s = {0};
    run_result r = {0};
    seldon_pipeline_engine *e = joined(&s, "any", NULL);
    half(e, &r);
    drain(e, &r, T0 + MS, 0);
    cr_assert_str_eq(r.calls, "identity ");
    run_free(&r);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

Test(engine, a_request_times_out)
{
    pl_set s = {0};
    run_result r = {0};
    seldon_pipeline_options o = SELDON_PIPELINE_OPTIONS_INIT;
    seldon_pipeline_engine *e;
    o.timeout_ms = 30;
    e = joined(&s, "inner", &o);
    half(e, &r);
    cr_assert_eq(seldon_pipeline_engine_deadline(e), T0 + 30 * MS);
    cr_assert_eq(seldon_pipeline_engine_advance(e, T0 + 30 * MS), 0);
    drain(e, &r, T0 + 30 * MS, 0);
    cr_assert_eq(r.errors, 1);
    cr_assert_eq(r.error_kind, SELDON_PIPELINE_ERR_TIMEOUT);
    cr_assert_str_eq(r.error, "pipeline \"p\": request timed out");
    /* The outstanding call keeps it until answered; then it goes. */
    cr_assert_eq(seldon_pipeline_engine_requests(e), 1);
    cr_assert_eq(seldon_pipeline_engine_calls(e), 1);
    run_free(&r);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

Test(engine, raw_contents_pass_untouched)
{
    pl_set s = {0};
    seldon_pipeline_engine *e;
    seldon_pipeline_event ev;
    seldon_msg *m;
    seldon_tensor in_t, call_t, out_t;
    const void *pushed;
    cr_assert_eq(pl_add(&s, HEAD "p\nspec:\n  steps:\n  - name: identity\n"), 0);
    e = engine_of(&s);
    m = req_msg(e);
    add_f32(m, "INPUT", V4, 4);
    seldon_msg_tensor(&in_t, m, 0);
    pushed = in_t.data;
    push(e, "p", "r", m, T0);
    cr_assert_eq(seldon_pipeline_engine_poll(&ev, e), 1);
    seldon_msg_tensor(&call_t, ev.msg, 0);
    cr_assert_eq(call_t.data, pushed, "the step's request points at the pushed bytes");
    {
        seldon_msg *resp = seldon_pipeline_engine_msg(e, SELDON_MSG_RESPONSE);
        const void *answered;
        cr_assert_null(fake_model(e, ev.model, ev.msg, resp));
        seldon_msg_tensor(&out_t, resp, 0);
        answered = out_t.data;
        cr_assert_eq(seldon_pipeline_engine_answer(e, ev.call_id, resp, T0), 0);
        cr_assert_eq(seldon_pipeline_engine_poll(&ev, e), 1);
        cr_assert_eq(ev.kind, SELDON_PIPELINE_EVENT_OUTPUT);
        seldon_msg_tensor(&out_t, ev.msg, 0);
        cr_assert_eq(out_t.data, answered, "the output points at the model's bytes");
    }
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

Test(engine, batch_concatenates_and_every_caller_gets_its_rows)
{
    pl_set s = {0};
    run_result r = {0};
    seldon_pipeline_engine *e;
    seldon_pipeline_event ev;
    seldon_tensor t;
    int k;
    cr_assert_eq(
        pl_add(
            &s, HEAD
            "b\nspec:\n  steps:\n  - name: add10\n    batch:\n      size: 3\n      windowMs: 50\n"),
        0);
    e = engine_of(&s);
    for (k = 0; k < 3; k++) {
        float row[2] = {(float)k, (float)(k + 100)};
        int64_t shape[2] = {1, 2};
        seldon_msg *m = req_msg(e);
        char id[8];
        cr_assert_eq(
            seldon_msg_add_tensor(NULL, m, "INPUT", 5, SELDON_DT_FP32, shape, 2, row, 8, 0), 0);
        snprintf(id, sizeof(id), "c%d", k);
        push(e, "b", id, m, T0 + k * MS);
        if (k < 2)
            cr_assert_eq(seldon_pipeline_engine_poll(&ev, e), 0,
                         "no call before the batch is full");
    }
    cr_assert_eq(seldon_pipeline_engine_poll(&ev, e), 1);
    cr_assert_eq(ev.batch, 3);
    seldon_msg_tensor(&t, ev.msg, 0);
    cr_assert_eq(t.shape[0], 3);
    cr_assert_float_eq(((float *)t.data)[4], 2, 1e-6);
    {
        seldon_msg *resp = seldon_pipeline_engine_msg(e, SELDON_MSG_RESPONSE);
        cr_assert_null(fake_model(e, "add10", ev.msg, resp));
        cr_assert_eq(seldon_pipeline_engine_answer(e, ev.call_id, resp, T0 + 5 * MS), 0);
    }
    for (k = 0; k < 3; k++) {
        char id[8];
        cr_assert_eq(seldon_pipeline_engine_poll(&ev, e), 1);
        cr_assert_eq(ev.kind, SELDON_PIPELINE_EVENT_OUTPUT);
        snprintf(id, sizeof(id), "c%d", k);
        cr_assert_eq(ev.request_id_len, 2);
        cr_assert_eq(memcmp(ev.request_id, id, 2), 0);
        seldon_msg_tensor(&t, ev.msg, 0);
        cr_assert_eq(t.shape[0], 1);
        cr_assert_float_eq(((float *)t.data)[0], k + 10, 1e-6);
        cr_assert_float_eq(((float *)t.data)[1], k + 110, 1e-6);
    }
    /* A lone caller goes when the window closes. */
    {
        seldon_msg *m = req_msg(e);
        float row[2] = {7, 8};
        int64_t shape[2] = {1, 2};
        cr_assert_eq(
            seldon_msg_add_tensor(NULL, m, "INPUT", 5, SELDON_DT_FP32, shape, 2, row, 8, 0), 0);
        push(e, "b", "lone", m, T0 + 10 * MS);
        cr_assert_eq(seldon_pipeline_engine_poll(&ev, e), 0);
        cr_assert_eq(seldon_pipeline_engine_deadline(e), T0 + 60 * MS);
        cr_assert_eq(seldon_pipeline_engine_advance(e, T0 + 60 * MS), 0);
        drain(e, &r, T0 + 60 * MS, 1);
        cr_assert_str_eq(r.calls, "add10 ");
        cr_assert_eq(r.outputs, 1);
        cr_assert_float_eq(f32(r.out, "OUTPUT")[1], 18, 1e-6);
    }
    run_free(&r);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

Test(engine, cycles_end_with_max_step_revisits)
{
    pl_set s = {0};
    run_result r = {0};
    seldon_pipeline_engine *e;
    seldon_msg *m;
    cr_assert_eq(pl_add(&s, HEAD
                        "loop\nspec:\n  allowCycles: true\n  maxStepRevisits: 3\n  steps:\n"
                        "  - name: add10\n    inputs: [loop.inputs.INPUT, mul10.outputs.OUTPUT]\n"
                        "    inputsJoinType: any\n    tensorMap: {mul10.outputs.OUTPUT: INPUT}\n"
                        "  - name: mul10\n    inputs: [add10.outputs.OUTPUT]\n"
                        "    tensorMap: {add10.outputs.OUTPUT: INPUT}\n"
                        "  - name: identity\n    inputs: [loop.inputs.NEVER]\n"),
                 0, "%s", seldon_last_error());
    e = engine_of(&s);
    m = req_msg(e);
    add_f32(m, "INPUT", V4, 4);
    push(e, "loop", "r", m, T0);
    drain(e, &r, T0, 1);
    cr_assert_str_eq(r.calls, "add10 mul10 add10 mul10 add10 mul10 add10 mul10 ");
    cr_assert_eq(r.errors, 1);
    cr_assert_str_eq(r.error, "Max step revisits (3) exceeded");
    cr_assert_eq(r.error_kind, SELDON_PIPELINE_ERR_REVISITS);
    cr_assert_eq(seldon_pipeline_engine_requests(e), 0);
    run_free(&r);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

Test(engine, overflow_fails_the_oldest_and_state_stays_bounded)
{
    pl_set s = {0};
    run_result r = {0};
    seldon_pipeline_options o = SELDON_PIPELINE_OPTIONS_INIT;
    seldon_pipeline_engine *e;
    int k;
    o.max_requests = 2;
    cr_assert_eq(pl_add(&s, HEAD "p\nspec:\n  steps:\n  - name: add10\n"), 0);
    cr_assert_eq(seldon_pipeline_engine_new(&e, (const seldon_pipeline *const *)s.p, 1, &o), 0);
    for (k = 0; k < 3; k++) {
        seldon_msg *m = req_msg(e);
        char id[8];
        add_f32(m, "INPUT", V4, 4);
        snprintf(id, sizeof(id), "r%d", k);
        push(e, "p", id, m, T0);
    }
    drain(e, &r, T0, 1);
    cr_assert_eq(r.errors, 1);
    cr_assert_eq(r.error_kind, SELDON_PIPELINE_ERR_OVERFLOW);
    cr_assert(strstr(r.error, "more than 2 requests in progress"), "%s", r.error);
    cr_assert_eq(r.outputs, 2);
    cr_assert_eq(seldon_pipeline_engine_requests(e), 0);
    /* Many more: nothing stays behind. */
    for (k = 0; k < 1000; k++) {
        seldon_msg *m = req_msg(e);
        char id[16];
        add_f32(m, "INPUT", V4, 4);
        snprintf(id, sizeof(id), "x%d", k);
        push(e, "p", id, m, T0 + k);
        drain(e, &r, T0 + k, 1);
    }
    cr_assert_eq(r.outputs, 1002);
    cr_assert_eq(seldon_pipeline_engine_requests(e), 0);
    cr_assert_eq(seldon_pipeline_engine_calls(e), 0);
    cr_assert_eq(seldon_pipeline_engine_deadline(e), INT64_MAX);
    run_free(&r);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

Test(engine, duplicate_ids_and_unknown_pipelines_are_refused)
{
    pl_set s = {0};
    seldon_pipeline_engine *e;
    seldon_msg *m;
    cr_assert_eq(pl_add(&s, HEAD "p\nspec:\n  steps:\n  - name: add10\n"), 0);
    e = engine_of(&s);
    m = req_msg(e);
    add_f32(m, "INPUT", V4, 4);
    push(e, "p", "r", m, T0);
    m = req_msg(e);
    cr_assert_eq(seldon_pipeline_engine_push(e, "p", "r", 1, NULL, 0, m, 0, T0), SELDON_EEXIST);
    m = req_msg(e);
    cr_assert_eq(seldon_pipeline_engine_push(e, "q", "r", 1, NULL, 0, m, 0, T0), SELDON_ENOTFOUND);
    cr_assert_eq(seldon_pipeline_engine_answer(e, 12345, NULL, T0), SELDON_ENOTFOUND);
    cr_assert_eq(seldon_pipeline_engine_cancel(e, "p", "r", 1, T0), 0);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

Test(engine, a_cycle_through_step_inputs_is_stopped_before_the_stack)
{
    pl_set s = {0};
    run_result r = {0};
    seldon_pipeline_engine *e;
    seldon_msg *m;
    cr_assert_eq(
        pl_add(&s, HEAD
               "loop\nspec:\n  allowCycles: true\n  maxStepRevisits: 1000000\n"
               "  steps:\n  - name: add10\n    inputs: [loop.inputs.INPUT, mul10.inputs.INPUT]\n"
               "    inputsJoinType: any\n"
               "  - name: mul10\n    inputs: [add10.inputs.INPUT]\n"),
        0, "%s", seldon_last_error());
    e = engine_of(&s);
    m = req_msg(e);
    add_f32(m, "INPUT", V4, 4);
    push(e, "loop", "r", m, T0);
    drain(e, &r, T0, 1); /* the calls made meanwhile are answered and dropped */
    cr_assert_eq(r.errors, 1);
    cr_assert(strstr(r.error, "more than 256 records passed one to another"), "%s", r.error);
    cr_assert_eq(seldon_pipeline_engine_requests(e), 0);
    run_free(&r);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}
