/* More edges: headers, external triggers, output joins and maps, trigger windows, batch errors,
 * allocation failures. */
#include "core/core.h"
#include "pl_test.h"

Test(edges, headers_travel_to_every_call_the_output_and_chained_pipelines)
{
    pl_set s = {0};
    seldon_pipeline_engine *e;
    seldon_pipeline_event ev;
    seldon_pipeline_header h[2] = {{"x-request-id", 12, "abc", 3}, {"x-tenant", 8, "t1", 2}};
    int outputs = 0, calls = 0;
    cr_assert_eq(pl_add(&s, HEAD
                        "p\nspec:\n  steps:\n  - name: add10\n"
                        "---\n" HEAD "q\nspec:\n  input:\n    externalInputs: [p]\n"
                        "    tensorMap: {p.outputs.OUTPUT: INPUT}\n  steps:\n  - name: mul10\n"),
                 0, "%s", seldon_last_error());
    e = engine_of(&s);
    cr_assert_eq(seldon_pipeline_engine_push(e, "p", "abc", 3, h, 2, input(e, "INPUT"), 0, T0), 0);
    for (;;) {
        seldon_pipeline_event got[4];
        int n = 0, i;
        while (seldon_pipeline_engine_poll(&ev, e) == 1) {
            cr_assert_eq(ev.headers_count, 2);
            cr_assert_eq(memcmp(ev.headers[1].name, "x-tenant", 8), 0);
            cr_assert_eq(memcmp(ev.headers[1].value, "t1", 2), 0);
            if (ev.kind == SELDON_PIPELINE_EVENT_CALL)
                got[n++] = ev;
            else if (ev.kind == SELDON_PIPELINE_EVENT_OUTPUT) {
                outputs++;
                if (strcmp(ev.pipeline, "q") == 0)
                    cr_assert_float_eq(f32(ev.msg, "OUTPUT")[0], 110, 1e-6);
            }
        }
        if (n == 0)
            break;
        for (i = 0; i < n; i++) {
            seldon_msg *r = seldon_pipeline_engine_msg(e, SELDON_MSG_RESPONSE);
            calls++;
            cr_assert_null(fake_model(e, got[i].model, got[i].msg, r));
            cr_assert_eq(seldon_pipeline_engine_answer(e, got[i].call_id, r, T0), 0);
        }
    }
    cr_assert_eq(calls, 2);
    cr_assert_eq(outputs, 2);
    cr_assert_eq(seldon_pipeline_engine_requests(e), 0);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

Test(edges, external_triggers_gate_a_chained_pipeline)
{
    pl_set s = {0};
    run_result r = {0};
    seldon_pipeline_engine *e;
    cr_assert_eq(pl_add(&s, HEAD
                        "a\nspec:\n  steps:\n  - name: add10\n"
                        "---\n" HEAD "b\nspec:\n  steps:\n  - name: mul10\n"
                        "---\n" HEAD "c\nspec:\n  input:\n    externalInputs: [a.outputs]\n"
                        "    externalTriggers: [b.outputs]\n    joinWindowMs: 100\n"
                        "    tensorMap: {a.outputs.OUTPUT: INPUT}\n  steps:\n  - name: identity\n"),
                 0, "%s", seldon_last_error());
    e = engine_of(&s);
    /* a alone: c's input waits for its trigger one window, then ends without output. */
    push(e, "a", "r1", input(e, "INPUT"), T0);
    drain(e, &r, T0, 1);
    cr_assert_str_eq(r.calls, "add10 ");
    cr_assert_eq(r.outputs, 1);
    cr_assert_eq(r.errors, 0);
    cr_assert_eq(seldon_pipeline_engine_requests(e), 1);
    cr_assert_eq(seldon_pipeline_engine_deadline(e), T0 + 100 * MS + 1);
    cr_assert_eq(seldon_pipeline_engine_advance(e, T0 + 100 * MS + 1), 0);
    drain(e, &r, T0 + 100 * MS + 1, 1);
    cr_assert_eq(r.errors, 1);
    cr_assert_eq(r.error_kind, SELDON_PIPELINE_ERR_NO_OUTPUT);
    cr_assert_eq(seldon_pipeline_engine_requests(e), 0);
    /* b first, then a: the gate is open, c runs on a's output only (b's tensors stay out). */
    r.calls[0] = 0;
    r.outputs = r.errors = 0;
    push(e, "b", "r2", input(e, "INPUT"), T0);
    push(e, "a", "r2", input(e, "INPUT"), T0);
    drain(e, &r, T0, 1);
    cr_assert_str_eq(r.calls, "mul10 add10 identity ");
    cr_assert_eq(r.outputs, 3, "%s", r.error);
    cr_assert_str_eq(r.out_id, "r2");
    cr_assert_eq(seldon_msg_tensor_count(r.out), 1);
    cr_assert_float_eq(f32(r.out, "OUTPUT")[0], 11, 1e-6);
    cr_assert_eq(seldon_pipeline_engine_requests(e), 0);
    run_free(&r);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

Test(edges, output_outer_join_and_output_tensor_map)
{
    pl_set s = {0};
    run_result r = {0};
    seldon_pipeline_engine *e;
    seldon_pipeline_event ev[2];
    int i;
    cr_assert_eq(
        pl_add(&s,
               HEAD "p\nspec:\n  steps:\n  - name: add10\n  - name: mul10\n"
                    "  output:\n    steps: [add10, mul10.outputs.OUTPUT]\n    stepsJoin: outer\n"
                    "    joinWindowMs: 20\n"
                    "    tensorMap: {add10.outputs.OUTPUT: SUM, mul10.outputs.OUTPUT: PRODUCT}\n"),
        0, "%s", seldon_last_error());
    e = engine_of(&s);
    push(e, "p", "r", input(e, "INPUT"), T0);
    for (i = 0; i < 2; i++)
        cr_assert_eq(seldon_pipeline_engine_poll(&ev[i], e), 1);
    {
        seldon_msg *resp = seldon_pipeline_engine_msg(e, SELDON_MSG_RESPONSE);
        cr_assert_str_eq(ev[0].model, "add10");
        cr_assert_null(fake_model(e, "add10", ev[0].msg, resp));
        cr_assert_eq(seldon_pipeline_engine_answer(e, ev[0].call_id, resp, T0 + MS), 0);
    }
    drain(e, &r, T0 + MS, 0);
    cr_assert_eq(r.outputs, 0);
    cr_assert_eq(seldon_pipeline_engine_deadline(e), T0 + 21 * MS);
    cr_assert_eq(seldon_pipeline_engine_advance(e, T0 + 21 * MS), 0);
    drain(e, &r, T0 + 21 * MS, 0);
    cr_assert_eq(r.outputs, 1);
    cr_assert_eq(seldon_msg_tensor_count(r.out), 1);
    cr_assert_float_eq(f32(r.out, "SUM")[0], 11, 1e-6);
    cr_assert_eq(seldon_pipeline_engine_requests(e), 1, "mul10's call is still out");
    cr_assert_eq(seldon_pipeline_engine_fail(e, ev[1].call_id, "late", T0 + 30 * MS), 0);
    drain(e, &r, T0 + 30 * MS, 0);
    cr_assert_eq(r.errors, 0, "an error after the answer is dropped");
    cr_assert_eq(seldon_pipeline_engine_requests(e), 0);
    run_free(&r);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

/* Triggers joined inner: both needed; data waits for them at most one window. */
static seldon_pipeline_engine *inner_triggers(pl_set *s)
{
    cr_assert_eq(pl_add(s, HEAD
                        "p\nspec:\n  steps:\n  - name: add10\n    inputs: [p.inputs.X]\n"
                        "    tensorMap: {p.inputs.X: INPUT}\n"
                        "  - name: mul10\n    inputs: [p.inputs.INPUT]\n"
                        "    triggers: [add10.outputs.OUTPUT, p.inputs.T]\n    joinWindowMs: 10\n"),
                 0, "%s", seldon_last_error());
    return engine_of(s);
}

Test(edges, inner_triggers_need_all_and_the_trigger_tensors_stay_out)
{
    pl_set s = {0};
    run_result r = {0};
    seldon_pipeline_engine *e = inner_triggers(&s);
    seldon_msg *m = input(e, "INPUT");
    float one = 1;
    add_f32(m, "X", V4, 4);
    add_f32(m, "T", &one, 1);
    push(e, "p", "r", m, T0);
    drain(e, &r, T0, 1);
    cr_assert_str_eq(r.calls, "add10 mul10 ");
    cr_assert_eq(r.outputs, 1, "%s", r.error);
    cr_assert_float_eq(f32(r.out, "OUTPUT")[0], 10, 1e-6);
    run_free(&r);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

Test(edges, a_missing_trigger_ends_the_request_without_output)
{
    pl_set s = {0};
    run_result r = {0};
    seldon_pipeline_engine *e = inner_triggers(&s);
    seldon_msg *m = input(e, "INPUT");
    add_f32(m, "X", V4, 4);
    push(e, "p", "r", m, T0);
    drain(e, &r, T0, 1);
    cr_assert_str_eq(r.calls, "add10 ");
    cr_assert_eq(r.outputs, 0);
    cr_assert_eq(r.error_kind, SELDON_PIPELINE_ERR_NO_OUTPUT, "%s", r.error);
    run_free(&r);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

Test(edges, a_trigger_after_the_window_is_too_late)
{
    pl_set s = {0};
    run_result r = {0};
    seldon_pipeline_engine *e = inner_triggers(&s);
    seldon_msg *m = input(e, "INPUT");
    seldon_pipeline_event ev;
    float one = 1;
    add_f32(m, "X", V4, 4);
    add_f32(m, "T", &one, 1);
    push(e, "p", "r", m, T0);
    cr_assert_eq(seldon_pipeline_engine_poll(&ev, e), 1);
    cr_assert_str_eq(ev.model, "add10");
    cr_assert_eq(seldon_pipeline_engine_advance(e, T0 + 11 * MS), 0);
    {
        seldon_msg *resp = seldon_pipeline_engine_msg(e, SELDON_MSG_RESPONSE);
        cr_assert_null(fake_model(e, "add10", ev.msg, resp));
        cr_assert_eq(seldon_pipeline_engine_answer(e, ev.call_id, resp, T0 + 11 * MS), 0);
    }
    drain(e, &r, T0 + 11 * MS, 1);
    cr_assert_str_eq(r.calls, "");
    cr_assert_eq(r.error_kind, SELDON_PIPELINE_ERR_NO_OUTPUT, "%s", r.error);
    run_free(&r);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

static seldon_msg *rows(seldon_pipeline_engine *e, const char *name, int32_t dt, int64_t d0)
{
    seldon_msg *m = req_msg(e);
    float v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    int64_t shape[2] = {d0, 2};
    cr_assert_eq(
        seldon_msg_add_tensor(NULL, m, name, strlen(name), dt, shape, 2, v, (size_t)d0 * 2 * 4, 0),
        0);
    return m;
}

Test(edges, batch_rows_of_several_and_a_mismatch)
{
    pl_set s = {0};
    run_result r = {0};
    seldon_pipeline_engine *e;
    seldon_pipeline_event ev;
    seldon_tensor t;
    cr_assert_eq(
        pl_add(&s, HEAD "b\nspec:\n  steps:\n  - name: add10\n    batch:\n      size: 4\n"), 0);
    e = engine_of(&s);
    push(e, "b", "two", rows(e, "INPUT", SELDON_DT_FP32, 2), T0);
    push(e, "b", "odd", rows(e, "INPUT", SELDON_DT_INT32, 1), T0);
    push(e, "b", "one", rows(e, "INPUT", SELDON_DT_FP32, 1), T0);
    cr_assert_eq(seldon_pipeline_engine_poll(&ev, e), 1);
    cr_assert_eq(ev.kind, SELDON_PIPELINE_EVENT_ERROR);
    cr_assert_eq(ev.error_kind, SELDON_PIPELINE_ERR_BATCH);
    cr_assert_eq(memcmp(ev.request_id, "odd", 3), 0);
    cr_assert_eq(seldon_pipeline_engine_poll(&ev, e), 1);
    cr_assert_eq(ev.kind, SELDON_PIPELINE_EVENT_CALL);
    cr_assert_eq(ev.batch, 2);
    seldon_msg_tensor(&t, ev.msg, 0);
    cr_assert_eq(t.shape[0], 3);
    {
        seldon_msg *resp = seldon_pipeline_engine_msg(e, SELDON_MSG_RESPONSE);
        cr_assert_null(fake_model(e, "add10", ev.msg, resp));
        cr_assert_eq(seldon_pipeline_engine_answer(e, ev.call_id, resp, T0), 0);
    }
    cr_assert_eq(seldon_pipeline_engine_poll(&ev, e), 1);
    cr_assert_eq(memcmp(ev.request_id, "two", 3), 0);
    seldon_msg_tensor(&t, ev.msg, 0);
    cr_assert_eq(t.shape[0], 2);
    cr_assert_float_eq(((float *)t.data)[3], 14, 1e-6);
    cr_assert_eq(seldon_pipeline_engine_poll(&ev, e), 1);
    cr_assert_eq(memcmp(ev.request_id, "one", 3), 0);
    seldon_msg_tensor(&t, ev.msg, 0);
    cr_assert_eq(t.shape[0], 1);
    cr_assert_float_eq(((float *)t.data)[0], 11, 1e-6);
    cr_assert_eq(seldon_pipeline_engine_poll(&ev, e), 0);
    run_free(&r);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

Test(edges, a_batched_model_error_reaches_every_caller_and_a_short_answer_is_refused)
{
    pl_set s = {0};
    seldon_pipeline_engine *e;
    seldon_pipeline_event ev;
    int errors = 0;
    cr_assert_eq(
        pl_add(&s, HEAD "b\nspec:\n  steps:\n  - name: add10\n    batch:\n      size: 2\n"), 0);
    e = engine_of(&s);
    push(e, "b", "r1", rows(e, "INPUT", SELDON_DT_FP32, 1), T0);
    push(e, "b", "r2", rows(e, "INPUT", SELDON_DT_FP32, 1), T0);
    cr_assert_eq(seldon_pipeline_engine_poll(&ev, e), 1);
    cr_assert_eq(seldon_pipeline_engine_fail(e, ev.call_id, "CUDA out of memory", T0), 0);
    while (seldon_pipeline_engine_poll(&ev, e) == 1) {
        cr_assert_str_eq(ev.error, "add10 : CUDA out of memory");
        errors++;
    }
    cr_assert_eq(errors, 2);
    push(e, "b", "r3", rows(e, "INPUT", SELDON_DT_FP32, 1), T0);
    push(e, "b", "r4", rows(e, "INPUT", SELDON_DT_FP32, 1), T0);
    cr_assert_eq(seldon_pipeline_engine_poll(&ev, e), 1);
    cr_assert_eq(
        seldon_pipeline_engine_answer(e, ev.call_id, rows(e, "OUTPUT", SELDON_DT_FP32, 1), T0), 0);
    errors = 0;
    while (seldon_pipeline_engine_poll(&ev, e) == 1) {
        cr_assert_eq(ev.error_kind, SELDON_PIPELINE_ERR_BATCH);
        cr_assert(strstr(ev.error, "add10 : batched answer has an output without the batch's rows"),
                  "%s", ev.error);
        errors++;
    }
    cr_assert_eq(errors, 2);
    cr_assert_eq(seldon_pipeline_engine_requests(e), 0);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

Test(edges, per_request_timeouts_and_a_silent_cancel)
{
    pl_set s = {0};
    seldon_pipeline_engine *e;
    seldon_pipeline_event ev;
    cr_assert_eq(pl_add(&s, HEAD "p\nspec:\n  steps:\n  - name: add10\n"), 0);
    e = engine_of(&s);
    cr_assert_eq(seldon_pipeline_engine_push(e, "p", "short", 5, NULL, 0, input(e, "INPUT"), 5, T0),
                 0);
    cr_assert_eq(
        seldon_pipeline_engine_push(e, "p", "never", 5, NULL, 0, input(e, "INPUT"), -1, T0), 0);
    cr_assert_eq(seldon_pipeline_engine_push(e, "p", "gone", 4, NULL, 0, input(e, "INPUT"), 0, T0),
                 0);
    cr_assert_eq(seldon_pipeline_engine_deadline(e), T0 + 5 * MS);
    while (seldon_pipeline_engine_poll(&ev, e) == 1)
        ;
    cr_assert_eq(seldon_pipeline_engine_cancel(e, "p", "gone", 4, T0), 0);
    cr_assert_eq(seldon_pipeline_engine_poll(&ev, e), 0, "cancel is silent");
    cr_assert_eq(seldon_pipeline_engine_advance(e, T0 + 5 * MS), 0);
    cr_assert_eq(seldon_pipeline_engine_poll(&ev, e), 1);
    cr_assert_eq(ev.error_kind, SELDON_PIPELINE_ERR_TIMEOUT);
    cr_assert_eq(ev.code, SELDON_ETIMEDOUT);
    cr_assert_eq(memcmp(ev.request_id, "short", 5), 0);
    cr_assert_eq(seldon_pipeline_engine_deadline(e), INT64_MAX, "'never' has no timeout");
    seldon_pipeline_engine_free(e); /* with calls out and requests alive: no leak */
    pl_set_free(&s);
}

/* Every allocation of a run may fail: the engine reports it and leaks nothing (ASan checks). */
Test(edges, allocation_failures_anywhere)
{
    int64_t n;
    for (n = 0; n < 400; n++) {
        pl_set s = {0};
        seldon_pipeline_engine *e = NULL;
        seldon_msg *m = NULL;
        int k;
        cr_assert_eq(pl_add(&s,
                            HEAD "p\nspec:\n  steps:\n  - name: add10\n    inputs: [p.inputs.X]\n"
                                 "    tensorMap: {p.inputs.X: INPUT}\n  - name: mul10\n"
                                 "    inputs: [p.inputs.Y]\n    tensorMap: {p.inputs.Y: INPUT}\n"
                                 "  output:\n    steps: [add10, mul10]\n"),
                     0);
        seldon_msg_new(&m, SELDON_MSG_REQUEST);
        add_f32(m, "X", V4, 4);
        add_f32(m, "Y", V4, 4);
        sdn_alloc_fail_after(n);
        if (seldon_pipeline_engine_new(&e, (const seldon_pipeline *const *)s.p, 1, NULL) != 0) {
            sdn_alloc_fail_after(-1);
            seldon_msg_free(m);
            pl_set_free(&s);
            continue;
        }
        seldon_pipeline_engine_push(e, "p", "r", 1, NULL, 0, m, 0, T0);
        for (k = 0; k < 4; k++) {
            seldon_pipeline_event ev;
            while (seldon_pipeline_engine_poll(&ev, e) == 1)
                if (ev.kind == SELDON_PIPELINE_EVENT_CALL) {
                    seldon_msg *r = seldon_pipeline_engine_msg(e, SELDON_MSG_RESPONSE);
                    if (r == NULL || seldon_msg_add_tensor(NULL, r, "OUTPUT", 6, SELDON_DT_FP32,
                                                           (int64_t[]){4}, 1, V4, 16, 0) != 0) {
                        seldon_msg_free(r);
                        seldon_pipeline_engine_fail(e, ev.call_id, "x", T0);
                    } else {
                        seldon_pipeline_engine_answer(e, ev.call_id, r, T0);
                    }
                }
        }
        sdn_alloc_fail_after(-1);
        seldon_pipeline_engine_free(e);
        pl_set_free(&s);
    }
}

Test(edges, outer_triggers_open_the_gate_when_their_window_closes)
{
    pl_set s = {0};
    run_result r = {0};
    seldon_pipeline_engine *e;
    seldon_msg *m;
    float one = 1;
    cr_assert_eq(pl_add(&s, HEAD "p\nspec:\n  steps:\n  - name: add10\n    inputs: [p.inputs.X]\n"
                                 "    tensorMap: {p.inputs.X: INPUT}\n"
                                 "  - name: mul10\n    inputs: [p.inputs.INPUT]\n"
                                 "    triggers: [add10.outputs.OUTPUT, p.inputs.T]\n"
                                 "    triggersJoinType: outer\n    joinWindowMs: 10\n"),
                 0, "%s", seldon_last_error());
    e = engine_of(&s);
    m = input(e, "INPUT");
    add_f32(m, "X", V4, 4);
    add_f32(m, "T", &one, 1);
    push(e, "p", "r", m, T0);
    drain(e, &r, T0, 0); /* add10 is called and left unanswered */
    cr_assert_str_eq(r.calls, "add10 ");
    cr_assert_eq(seldon_pipeline_engine_advance(e, T0 + 10 * MS), 0);
    drain(e, &r, T0 + 10 * MS, 0);
    cr_assert_str_eq(r.calls, "add10 mul10 ");
    run_free(&r);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

Test(edges, two_external_inputs_joined_inner)
{
    pl_set s = {0};
    run_result r = {0};
    seldon_pipeline_engine *e = a_and_b_into_c(&s, &r, "");
    cr_assert_eq(seldon_pipeline_engine_requests(e), 1, "c waits for b");
    push(e, "b", "r", input(e, "INPUT"), T0 + MS);
    drain(e, &r, T0 + MS, 1);
    cr_assert_str_eq(r.calls, "add10 mul10 identity ");
    cr_assert_eq(r.outputs, 3, "%s", r.error);
    cr_assert_float_eq(f32(r.out, "OUTPUT")[0], 11, 1e-6);
    cr_assert_eq(seldon_pipeline_engine_requests(e), 0);
    run_free(&r);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

Test(edges, pipelines_added_and_removed_while_running)
{
    pl_set s = {0};
    run_result r = {0};
    seldon_pipeline_engine *e = NULL;
    seldon_pipeline_event ev;
    seldon_pipeline *p2 = NULL;
    cr_assert_eq(pl_add(&s,
                        HEAD "p\nspec:\n  steps:\n  - name: add10\n"
                             "---\n" HEAD "q\nspec:\n  input:\n    externalInputs: [p.step.add10]\n"
                             "    tensorMap: {p.step.add10.outputs.OUTPUT: INPUT}\n"
                             "  steps:\n  - name: mul10\n"),
                 0, "%s", seldon_last_error());
    cr_assert_eq(seldon_pipeline_engine_new(&e, (const seldon_pipeline *const *)s.p, 1, NULL), 0);
    cr_assert_eq(seldon_pipeline_engine_add(e, s.p[0]), SELDON_EEXIST);
    cr_assert_eq(seldon_pipeline_engine_add(e, s.p[1]), 0, "%s", seldon_last_error());
    push(e, "p", "r1", input(e, "INPUT"), T0);
    drain(e, &r, T0, 1);
    cr_assert_str_eq(r.calls, "add10 mul10 ");
    cr_assert_eq(r.outputs, 2);
    cr_assert_float_eq(f32(r.out, "OUTPUT")[0], 110, 1e-6);
    cr_assert_eq(seldon_pipeline_engine_remove(e, "p", T0), SELDON_ESTATE);
    cr_assert(strstr(seldon_last_error(), "pipeline \"q\" reads it"), "%s", seldon_last_error());
    cr_assert_eq(seldon_pipeline_engine_remove(e, "q", T0), 0);
    cr_assert_eq(seldon_pipeline_engine_remove(e, "q", T0), SELDON_ENOTFOUND);
    /* p runs alone now; removed with a call out, its request ends as unloaded. */
    push(e, "p", "r2", input(e, "INPUT"), T0);
    cr_assert_eq(seldon_pipeline_engine_poll(&ev, e), 1);
    cr_assert_eq(ev.kind, SELDON_PIPELINE_EVENT_CALL);
    cr_assert_eq(seldon_pipeline_engine_remove(e, "p", T0), 0);
    {
        seldon_pipeline_event err;
        uint64_t call = ev.call_id;
        cr_assert_eq(seldon_pipeline_engine_poll(&err, e), 1);
        cr_assert_eq(err.error_kind, SELDON_PIPELINE_ERR_UNLOADED);
        cr_assert_str_eq(err.error, "pipeline \"p\": unloaded");
        cr_assert_eq(seldon_msg_tensor_count(ev.msg), 1, "the call's message lives on");
        cr_assert_eq(seldon_pipeline_engine_answer(
                         e, call, seldon_pipeline_engine_msg(e, SELDON_MSG_RESPONSE), T0),
                     0);
    }
    cr_assert_eq(seldon_pipeline_engine_requests(e), 0);
    cr_assert_eq(seldon_pipeline_engine_push(e, "p", "r3", 2, NULL, 0, input(e, "INPUT"), 0, T0),
                 SELDON_ENOTFOUND);
    /* A new version under the same name, freed by its caller at once: the engine holds it. */
    cr_assert_eq(seldon_pipeline_compile(&p2, "p", &seldon_manifest_at(s.m[0], 0)->spec.pipeline,
                                         NULL, NULL),
                 0);
    cr_assert_eq(seldon_pipeline_engine_add(e, p2), 0);
    seldon_pipeline_free(p2);
    r.calls[0] = 0;
    r.outputs = 0;
    push(e, "p", "r4", input(e, "INPUT"), T0);
    drain(e, &r, T0, 1);
    cr_assert_str_eq(r.calls, "add10 ");
    cr_assert_eq(r.outputs, 1);
    run_free(&r);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}
