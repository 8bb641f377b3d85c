/*
 * Edges of the library list not covered elsewhere: which request an
 * overflow fails, max_batch as a pending limit, an outer join of external
 * inputs firing on time, output joins inner and any over two steps, a step
 * reading another step's inputs, and chained requests taking their own
 * pipeline's timeout.
 */
#include "pl_test.h"

Test(review, an_overflow_fails_the_oldest_request_by_name)
{
    pl_set s = {0};
    seldon_pipeline_options o = SELDON_PIPELINE_OPTIONS_INIT;
    seldon_pipeline_engine *e;
    seldon_pipeline_event ev;
    int calls = 0, errors = 0;
    o.max_requests = 3;
    cr_assert_eq(pl_add(&s, HEAD "p\nspec:\n  steps:\n  - name: add10\n"), 0);
    cr_assert_eq(seldon_pipeline_engine_new(&e, (const seldon_pipeline *const *)s.p, 1, &o), 0);
    push(e, "p", "old", input(e, "INPUT"), T0);
    push(e, "p", "mid", input(e, "INPUT"), T0 + MS);
    push(e, "p", "new", input(e, "INPUT"), T0 + 2 * MS);
    push(e, "p", "newest", input(e, "INPUT"), T0 + 3 * MS);
    while (seldon_pipeline_engine_poll(&ev, e) == 1) {
        if (ev.kind == SELDON_PIPELINE_EVENT_CALL) {
            calls++;
            continue;
        }
        errors++;
        cr_assert_eq(ev.kind, SELDON_PIPELINE_EVENT_ERROR);
        cr_assert_eq(ev.error_kind, SELDON_PIPELINE_ERR_OVERFLOW);
        cr_assert_eq(ev.code, SELDON_ETOOBIG);
        cr_assert_eq(ev.request_id_len, 3);
        cr_assert_eq(memcmp(ev.request_id, "old", 3), 0, "the oldest goes: %.*s",
                     (int)ev.request_id_len, ev.request_id);
        cr_assert_str_eq(ev.error,
                         "pipeline \"p\": request dropped: more than 3 requests in progress");
    }
    cr_assert_eq(calls, 4);
    cr_assert_eq(errors, 1);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

Test(review, max_batch_sends_a_batch_before_its_size)
{
    pl_set s = {0};
    seldon_pipeline_options o = SELDON_PIPELINE_OPTIONS_INIT;
    seldon_pipeline_engine *e;
    seldon_pipeline_event ev;
    run_result r = {0};
    o.max_batch = 2;
    cr_assert_eq(pl_add(&s, HEAD "b\nspec:\n  steps:\n  - name: add10\n    batch: {size: 100}\n"),
                 0);
    cr_assert_eq(seldon_pipeline_engine_new(&e, (const seldon_pipeline *const *)s.p, 1, &o), 0);
    push(e, "b", "r1", input(e, "INPUT"), T0);
    cr_assert_eq(seldon_pipeline_engine_poll(&ev, e), 0);
    push(e, "b", "r2", input(e, "INPUT"), T0);
    cr_assert_eq(seldon_pipeline_engine_poll(&ev, e), 1);
    cr_assert_eq(ev.kind, SELDON_PIPELINE_EVENT_CALL);
    cr_assert_eq(ev.batch, 2, "two waiting: the limit, whatever batch.size says");
    {
        seldon_msg *resp = seldon_pipeline_engine_msg(e, SELDON_MSG_RESPONSE);
        cr_assert_null(fake_model(e, "add10", ev.msg, resp));
        cr_assert_eq(seldon_pipeline_engine_answer(e, ev.call_id, resp, T0), 0);
    }
    drain(e, &r, T0, 1);
    cr_assert_eq(r.outputs, 2);
    cr_assert_eq(seldon_pipeline_engine_requests(e), 0);
    run_free(&r);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

/* c reads a and b, joined outer: b never comes, c runs on a's record when the window closes. */
Test(review, external_inputs_joined_outer_fire_when_the_window_closes)
{
    pl_set s = {0};
    run_result r = {0};
    seldon_pipeline_engine *e =
        a_and_b_into_c(&s, &r, "    joinType: outer\n    joinWindowMs: 40\n");
    cr_assert_eq(seldon_pipeline_engine_deadline(e), T0 + 40 * MS);
    cr_assert_eq(seldon_pipeline_engine_advance(e, T0 + 39 * MS), 0);
    drain(e, &r, T0 + 39 * MS, 1);
    cr_assert_str_eq(r.calls, "add10 ", "not before the window closes");
    cr_assert_eq(seldon_pipeline_engine_advance(e, T0 + 40 * MS), 0);
    drain(e, &r, T0 + 40 * MS, 1);
    cr_assert_str_eq(r.calls, "add10 identity ");
    cr_assert_eq(r.outputs, 2, "%s", r.error);
    cr_assert_str_eq(r.out_id, "r");
    cr_assert_float_eq(f32(r.out, "OUTPUT")[0], 11, 1e-6);
    cr_assert_eq(seldon_msg_tensor_count(r.out), 1);
    cr_assert_eq(seldon_pipeline_engine_requests(e), 0);
    run_free(&r);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

/* Output stepsJoin inner waits for both steps (tensors in output.steps order); any takes the first.
 */
Test(review, output_steps_join_inner_and_any)
{
    pl_set s = {0};
    seldon_pipeline_engine *e;
    seldon_pipeline_event ev[2], out;
    seldon_tensor t;
    int i;
    cr_assert_eq(pl_add(&s, HEAD "in\nspec:\n  steps:\n  - name: add10\n  - name: mul10\n"
                                 "  output:\n    steps: [mul10, add10]\n"
                                 "---\n" HEAD "an\nspec:\n  steps:\n  - name: add10\n"
                                 "  - name: mul10\n"
                                 "  output:\n    steps: [mul10, add10]\n    stepsJoin: any\n"),
                 0, "%s", seldon_last_error());
    e = engine_of(&s);
    push(e, "in", "r", input(e, "INPUT"), T0);
    push(e, "an", "r", input(e, "INPUT"), T0);
    for (i = 0; i < 2; i++) {
        cr_assert_eq(seldon_pipeline_engine_poll(&ev[i], e), 1);
        cr_assert_str_eq(ev[i].pipeline, "in");
    }
    /* "in": add10 answers first; no output until mul10 does too. */
    for (i = 0; i < 2; i++) {
        int k = strcmp(ev[0].model, "add10") == 0 ? i : 1 - i;
        seldon_msg *resp = seldon_pipeline_engine_msg(e, SELDON_MSG_RESPONSE);
        cr_assert_null(fake_model(e, ev[k].model, ev[k].msg, resp));
        cr_assert_eq(seldon_pipeline_engine_answer(e, ev[k].call_id, resp, T0 + MS), 0);
        if (i == 0) {
            while (seldon_pipeline_engine_poll(&out, e) == 1)
                cr_assert_neq(out.kind, SELDON_PIPELINE_EVENT_OUTPUT,
                              "an inner output join waits for both");
        }
    }
    cr_assert_eq(seldon_pipeline_engine_poll(&out, e), 1);
    cr_assert_eq(out.kind, SELDON_PIPELINE_EVENT_OUTPUT);
    cr_assert_str_eq(out.pipeline, "in");
    cr_assert_eq(seldon_msg_tensor_count(out.msg), 2);
    seldon_msg_tensor(&t, out.msg, 0);
    cr_assert_float_eq(((const float *)t.data)[0], 10, 1e-6, "mul10's OUTPUT first");
    seldon_msg_tensor(&t, out.msg, 1);
    cr_assert_float_eq(((const float *)t.data)[0], 11, 1e-6, "then add10's");
    cr_assert_eq(t.name_len, 6);
    cr_assert_eq(memcmp(t.name, "OUTPUT", 6), 0, "two outputs share the name");
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

/* A step may read another step's request (step.inputs.T): the same tensors, renamed. */
Test(review, a_step_reads_another_steps_inputs)
{
    pl_set s = {0};
    run_result r = {0};
    seldon_pipeline_engine *e;
    cr_assert_eq(pl_add(&s, HEAD "p\nspec:\n  steps:\n  - name: add10\n"
                                 "  - name: mul10\n    inputs: [add10.inputs.INPUT]\n"
                                 "  output:\n    steps: [mul10]\n"),
                 0, "%s", seldon_last_error());
    e = engine_of(&s);
    push(e, "p", "r", input(e, "INPUT"), T0);
    drain(e, &r, T0, 1);
    cr_assert_eq(r.outputs, 1, "%s", r.error);
    cr_assert_float_eq(f32(r.out, "OUTPUT")[3], 40, 1e-6, "mul10 of the pipeline's input");
    run_free(&r);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

/* A request started by chaining takes the timeout of its own pipeline. */
Test(review, a_chained_request_takes_its_own_pipelines_timeout)
{
    pl_set s = {0};
    seldon_pipeline_engine *e;
    seldon_pipeline_event ev;
    run_result r = {0};
    cr_assert_eq(pl_add(&s, HEAD "a\nspec:\n  steps:\n  - name: add10\n"
                                 "---\n" HEAD "b\nspec:\n  timeoutMs: 7\n"
                                 "  input:\n    externalInputs: [a.outputs.OUTPUT]\n"
                                 "    tensorMap: {a.outputs.OUTPUT: INPUT}\n"
                                 "  steps:\n  - name: mul10\n"),
                 0, "%s", seldon_last_error());
    e = engine_of(&s);
    push(e, "a", "r", input(e, "INPUT"), T0);
    cr_assert_eq(seldon_pipeline_engine_poll(&ev, e), 1);
    {
        seldon_msg *resp = seldon_pipeline_engine_msg(e, SELDON_MSG_RESPONSE);
        cr_assert_null(fake_model(e, "add10", ev.msg, resp));
        cr_assert_eq(seldon_pipeline_engine_answer(e, ev.call_id, resp, T0 + MS), 0);
    }
    drain(e, &r, T0 + MS, 0); /* b's call of mul10 stays out */
    cr_assert_eq(r.outputs, 1);
    cr_assert_str_eq(r.calls, "mul10 ");
    cr_assert_eq(seldon_pipeline_engine_deadline(e), T0 + 8 * MS, "b's 7 ms from its start");
    cr_assert_eq(seldon_pipeline_engine_advance(e, T0 + 8 * MS), 0);
    drain(e, &r, T0 + 8 * MS, 0);
    cr_assert_eq(r.errors, 1);
    cr_assert_str_eq(r.error, "pipeline \"b\": request timed out");
    run_free(&r);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}
