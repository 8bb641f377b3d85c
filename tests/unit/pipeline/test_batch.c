/*
 * Batches with a fake clock: rolling (sliding) batches, and every caller
 * getting exactly its own rows, even when a caller of the batch went away
 * while its call was out. Also the pipeline's own timeout (spec.timeoutMs).
 */
#include "core/core.h"
#include "pl_test.h"

/* A request of `rows` rows of INPUT [rows, 2]: row i holds {base + i, base + i + 0.5}. */
static seldon_msg *rows_of(seldon_pipeline_engine *e, float base, int64_t rows)
{
    seldon_msg *m = req_msg(e);
    float v[16];
    int64_t shape[2] = {rows, 2}, i;
    for (i = 0; i < rows; i++) {
        v[2 * i] = base + (float)i;
        v[2 * i + 1] = base + (float)i + 0.5f;
    }
    cr_assert_eq(seldon_msg_add_tensor(NULL, m, "INPUT", 5, SELDON_DT_FP32, shape, 2, v,
                                       (size_t)rows * 8, SELDON_TENSOR_COPY),
                 0);
    return m;
}

/* The next event, which must be a call of `rows` rows from `batch` entries; returns it. */
static seldon_pipeline_event next_call(seldon_pipeline_engine *e, uint32_t batch, int64_t rows)
{
    seldon_pipeline_event ev;
    seldon_tensor t;
    cr_assert_eq(seldon_pipeline_engine_poll(&ev, e), 1, "a call was due");
    cr_assert_eq(ev.kind, SELDON_PIPELINE_EVENT_CALL, "kind %d (%s)", ev.kind,
                 ev.error ? ev.error : "");
    cr_assert_eq(ev.batch, batch);
    seldon_msg_tensor(&t, ev.msg, 0);
    cr_assert_eq(t.shape[0], rows);
    return ev;
}

/* The call's rows, first column: {first, ...}. */
static float call_row(const seldon_pipeline_event *ev, int64_t i)
{
    seldon_tensor t;
    seldon_msg_tensor(&t, ev->msg, 0);
    return ((const float *)t.data)[2 * i];
}

/* Answers a call as add10 would. */
static void answer(seldon_pipeline_engine *e, const seldon_pipeline_event *ev, int64_t now)
{
    seldon_msg *resp = seldon_pipeline_engine_msg(e, SELDON_MSG_RESPONSE);
    cr_assert_null(fake_model(e, "add10", ev->msg, resp));
    cr_assert_eq(seldon_pipeline_engine_answer(e, ev->call_id, resp, now), 0);
}

/* The next event must be id's output: `rows` rows starting at first + 10. */
static void expect_output(seldon_pipeline_engine *e, const char *id, float first, int64_t rows)
{
    seldon_pipeline_event ev;
    seldon_tensor t;
    int64_t i;
    cr_assert_eq(seldon_pipeline_engine_poll(&ev, e), 1, "an output for %s", id);
    cr_assert_eq(ev.kind, SELDON_PIPELINE_EVENT_OUTPUT, "kind %d (%s)", ev.kind,
                 ev.error ? ev.error : "");
    cr_assert_eq(ev.request_id_len, strlen(id));
    cr_assert_eq(memcmp(ev.request_id, id, ev.request_id_len), 0, "%.*s", (int)ev.request_id_len,
                 ev.request_id);
    seldon_msg_tensor(&t, ev.msg, 0);
    cr_assert_eq(t.shape[0], rows, "%s: %lld rows", id, (long long)t.shape[0]);
    cr_assert_eq(t.nbytes, (size_t)rows * 8);
    for (i = 0; i < rows; i++) {
        cr_assert_float_eq(((const float *)t.data)[2 * i], first + (float)i + 10, 1e-6, "%s", id);
        cr_assert_float_eq(((const float *)t.data)[2 * i + 1], first + (float)i + 10.5f, 1e-6);
    }
}

static seldon_pipeline_engine *batched(pl_set *s, const char *batch)
{
    char yaml[512];
    snprintf(yaml, sizeof(yaml), HEAD "b\nspec:\n  steps:\n  - name: add10\n    batch: %s\n",
             batch);
    cr_assert_eq(pl_add(s, yaml), 0, "%s", seldon_last_error());
    return engine_of(s);
}

Test(batch, rolling_by_size_slides_over_the_rows_and_answers_each_caller_once)
{
    pl_set s = {0};
    seldon_pipeline_engine *e = batched(&s, "{size: 3, rolling: true}");
    seldon_pipeline_event ev;

    /* Filling: nothing goes before 3 rows. */
    push(e, "b", "r1", rows_of(e, 100, 1), T0);
    push(e, "b", "r2", rows_of(e, 200, 1), T0 + MS);
    cr_assert_eq(seldon_pipeline_engine_poll(&ev, e), 0, "no call before the window is full");
    push(e, "b", "r3", rows_of(e, 300, 1), T0 + 2 * MS);
    ev = next_call(e, 3, 3);
    cr_assert_float_eq(call_row(&ev, 0), 100, 1e-6);
    cr_assert_float_eq(call_row(&ev, 2), 300, 1e-6);
    answer(e, &ev, T0 + 3 * MS);
    expect_output(e, "r1", 100, 1);
    expect_output(e, "r2", 200, 1);
    expect_output(e, "r3", 300, 1);

    /* Full: every request goes at once, with the two rows before it. */
    push(e, "b", "r4", rows_of(e, 400, 1), T0 + 4 * MS);
    ev = next_call(e, 3, 3);
    cr_assert_float_eq(call_row(&ev, 0), 200, 1e-6);
    cr_assert_float_eq(call_row(&ev, 1), 300, 1e-6);
    cr_assert_float_eq(call_row(&ev, 2), 400, 1e-6);
    cr_assert_eq(ev.request_id_len, 2);
    cr_assert_eq(memcmp(ev.request_id, "r4", 2), 0, "the call is named after its own caller");
    answer(e, &ev, T0 + 5 * MS);
    expect_output(e, "r4", 400, 1);
    cr_assert_eq(seldon_pipeline_engine_poll(&ev, e), 0, "r2 and r3 are not answered again");

    /* A request of two rows needs one row before it. */
    push(e, "b", "r5", rows_of(e, 500, 2), T0 + 6 * MS);
    ev = next_call(e, 2, 3);
    cr_assert_float_eq(call_row(&ev, 0), 400, 1e-6);
    cr_assert_float_eq(call_row(&ev, 1), 500, 1e-6);
    cr_assert_float_eq(call_row(&ev, 2), 501, 1e-6);
    answer(e, &ev, T0 + 7 * MS);
    expect_output(e, "r5", 500, 2);
    cr_assert_eq(seldon_pipeline_engine_poll(&ev, e), 0);
    cr_assert_eq(seldon_pipeline_engine_requests(e), 0);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

Test(batch, rolling_window_forgets_old_rows_and_flushes_a_partial_window)
{
    pl_set s = {0};
    seldon_pipeline_engine *e = batched(&s, "{size: 2, windowMs: 50, rolling: true}");
    seldon_pipeline_event ev;

    push(e, "b", "a", rows_of(e, 10, 1), T0);
    push(e, "b", "b", rows_of(e, 20, 1), T0 + 10 * MS);
    ev = next_call(e, 2, 2);
    answer(e, &ev, T0 + 11 * MS);
    expect_output(e, "a", 10, 1);
    expect_output(e, "b", 20, 1);

    /* Within the window: the row of "b" (sent at T0 + 10 ms) goes again with "c". */
    push(e, "b", "c", rows_of(e, 30, 1), T0 + 40 * MS);
    ev = next_call(e, 2, 2);
    cr_assert_float_eq(call_row(&ev, 0), 20, 1e-6);
    answer(e, &ev, T0 + 41 * MS);
    expect_output(e, "c", 30, 1);

    /* 50 ms after "c" went, its row is forgotten: "d" waits for a second row, or the window. */
    push(e, "b", "d", rows_of(e, 40, 1), T0 + 90 * MS);
    cr_assert_eq(seldon_pipeline_engine_poll(&ev, e), 0, "the window is empty again");
    cr_assert_eq(seldon_pipeline_engine_deadline(e), T0 + 140 * MS);
    cr_assert_eq(seldon_pipeline_engine_advance(e, T0 + 140 * MS), 0);
    ev = next_call(e, 1, 1);
    cr_assert_float_eq(call_row(&ev, 0), 40, 1e-6);
    answer(e, &ev, T0 + 141 * MS);
    expect_output(e, "d", 40, 1);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

Test(batch, rolling_by_time_sends_each_request_with_the_rows_of_the_window)
{
    pl_set s = {0};
    seldon_pipeline_engine *e = batched(&s, "{windowMs: 100, rolling: true}");
    seldon_pipeline_event ev;

    push(e, "b", "a", rows_of(e, 10, 1), T0);
    ev = next_call(e, 1, 1); /* at once: nothing before it */
    answer(e, &ev, T0);
    expect_output(e, "a", 10, 1);
    push(e, "b", "b", rows_of(e, 20, 2), T0 + 30 * MS);
    ev = next_call(e, 2, 3);
    answer(e, &ev, T0 + 30 * MS);
    expect_output(e, "b", 20, 2);
    push(e, "b", "c", rows_of(e, 30, 1), T0 + 60 * MS);
    ev = next_call(e, 3, 4);
    cr_assert_float_eq(call_row(&ev, 0), 10, 1e-6);
    cr_assert_float_eq(call_row(&ev, 3), 30, 1e-6);
    answer(e, &ev, T0 + 60 * MS);
    expect_output(e, "c", 30, 1);
    /* At T0 + 110 ms, "a" (sent at T0) has left the window. */
    push(e, "b", "d", rows_of(e, 40, 1), T0 + 110 * MS);
    ev = next_call(e, 3, 4);
    cr_assert_float_eq(call_row(&ev, 0), 20, 1e-6);
    answer(e, &ev, T0 + 110 * MS);
    expect_output(e, "d", 40, 1);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

Test(batch, rolling_rows_of_another_shape_are_not_carried)
{
    pl_set s = {0};
    seldon_pipeline_engine *e = batched(&s, "{size: 2, rolling: true}");
    seldon_pipeline_event ev;
    seldon_msg *m;
    int64_t shape[2] = {1, 3};
    float v[3] = {7, 8, 9};

    push(e, "b", "a", rows_of(e, 10, 1), T0);
    push(e, "b", "b", rows_of(e, 20, 1), T0);
    ev = next_call(e, 2, 2);
    answer(e, &ev, T0);
    expect_output(e, "a", 10, 1);
    expect_output(e, "b", 20, 1);
    /* Three columns: the earlier two-column rows cannot go with it; it waits for its own kind. */
    m = req_msg(e);
    cr_assert_eq(seldon_msg_add_tensor(NULL, m, "INPUT", 5, SELDON_DT_FP32, shape, 2, v, 12, 0), 0);
    push(e, "b", "wide", m, T0);
    cr_assert_eq(seldon_pipeline_engine_poll(&ev, e), 1);
    cr_assert_eq(ev.kind, SELDON_PIPELINE_EVENT_CALL);
    cr_assert_eq(ev.batch, 1, "alone: the rows before it do not batch with it");
    answer(e, &ev, T0);
    cr_assert_eq(seldon_pipeline_engine_poll(&ev, e), 1);
    cr_assert_eq(ev.kind, SELDON_PIPELINE_EVENT_OUTPUT);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

Test(batch, a_caller_gone_meanwhile_does_not_shift_the_rows_of_the_next)
{
    pl_set s = {0};
    seldon_pipeline_engine *e = batched(&s, "{size: 4}");
    seldon_pipeline_event ev;

    push(e, "b", "one", rows_of(e, 100, 1), T0);
    push(e, "b", "two", rows_of(e, 200, 2), T0);
    push(e, "b", "three", rows_of(e, 300, 1), T0);
    ev = next_call(e, 3, 4);
    /* "two" goes away while the call is out, then "one" times out... both before the answer. */
    cr_assert_eq(seldon_pipeline_engine_cancel(e, "b", "two", 3, T0 + MS), 0);
    cr_assert_eq(seldon_pipeline_engine_cancel(e, "b", "one", 3, T0 + MS), 0);
    answer(e, &ev, T0 + 2 * MS);
    expect_output(e, "three", 300, 1);
    cr_assert_eq(seldon_pipeline_engine_poll(&ev, e), 0);
    cr_assert_eq(seldon_pipeline_engine_requests(e), 0);
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

Test(batch, a_full_batch_goes_without_waiting_for_its_window)
{
    pl_set s = {0};
    seldon_pipeline_engine *e = batched(&s, "{size: 2, windowMs: 50}");
    seldon_pipeline_event ev;
    push(e, "b", "big", rows_of(e, 100, 2), T0);
    ev = next_call(e, 1, 2);
    answer(e, &ev, T0);
    expect_output(e, "big", 100, 2);
    cr_assert_eq(seldon_pipeline_engine_deadline(e), INT64_MAX, "no window left armed");
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

Test(batch, rolling_needs_a_size_or_a_window)
{
    cr_assert_str_eq(compile_err(HEAD "b\nspec:\n  steps:\n  - name: add10\n"
                                      "    batch: {rolling: true}\n"),
                     "pipeline \"b\": spec.steps[0].batch.rolling: a rolling batch needs "
                     "batch.size or batch.windowMs");
    cr_assert_str_eq(compile_err(HEAD "b\nspec:\n  steps:\n  - name: add10\n"
                                      "    batch: {size: 2, rolling: true}\n"),
                     "");
}

/* Every allocation of a rolling run may fail: reported, nothing leaked (ASan checks). */
Test(batch, rolling_allocation_failures_anywhere)
{
    int64_t n;
    for (n = 0; n < 300; n++) {
        pl_set s = {0};
        seldon_pipeline_engine *e = NULL;
        int k, done = 0;
        cr_assert_eq(pl_add(&s, HEAD "b\nspec:\n  steps:\n  - name: add10\n"
                                     "    batch: {size: 2, windowMs: 5, rolling: true}\n"),
                     0);
        sdn_alloc_fail_after(n);
        if (seldon_pipeline_engine_new(&e, (const seldon_pipeline *const *)s.p, 1, NULL) != 0) {
            sdn_alloc_fail_after(-1);
            pl_set_free(&s);
            continue;
        }
        for (k = 0; k < 5; k++) {
            seldon_pipeline_event ev;
            char id[8];
            seldon_msg *m = req_msg(e);
            snprintf(id, sizeof(id), "r%d", k);
            if (m != NULL &&
                seldon_msg_add_tensor(NULL, m, "INPUT", 5, SELDON_DT_FP32, (int64_t[]){1, 2}, 2,
                                      (float[]){1, 2}, 8, 0) != 0) {
                seldon_msg_free(m);
                m = NULL;
            }
            if (m != NULL)
                seldon_pipeline_engine_push(e, "b", id, 2, NULL, 0, m, 0, T0 + k * MS);
            if (k == 4)
                seldon_pipeline_engine_advance(e, T0 + 100 * MS);
            while (seldon_pipeline_engine_poll(&ev, e) == 1) {
                if (ev.kind == SELDON_PIPELINE_EVENT_CALL) {
                    seldon_msg *r = seldon_pipeline_engine_msg(e, SELDON_MSG_RESPONSE);
                    seldon_tensor t;
                    seldon_msg_tensor(&t, ev.msg, 0);
                    if (r == NULL || seldon_msg_add_tensor(NULL, r, "OUTPUT", 6, SELDON_DT_FP32,
                                                           t.shape, 2, t.data, t.nbytes, 0) != 0) {
                        seldon_msg_free(r);
                        seldon_pipeline_engine_fail(e, ev.call_id, "x", T0);
                    } else {
                        seldon_pipeline_engine_answer(e, ev.call_id, r, T0 + k * MS);
                    }
                } else {
                    done++;
                }
            }
        }
        sdn_alloc_fail_after(-1);
        cr_assert_leq(done, 5, "each caller ends once");
        seldon_pipeline_engine_free(e);
        pl_set_free(&s);
    }
}

/* ---- the pipeline's own timeout ---- */

Test(timeout, spec_timeout_ms_is_the_pipelines_default)
{
    pl_set s = {0};
    seldon_pipeline_engine *e;
    seldon_pipeline_event ev;
    seldon_buf b = SELDON_BUF_INIT;
    cr_assert_eq(pl_add(&s, HEAD "slow\nspec:\n  timeoutMs: 20\n  steps:\n  - name: add10\n"
                                 "---\n" HEAD "plain\nspec:\n  steps:\n  - name: add10\n"),
                 0, "%s", seldon_last_error());
    cr_assert_eq(seldon_pipeline_timeout_ms(s.p[0]), 20);
    cr_assert_eq(seldon_pipeline_timeout_ms(s.p[1]), 0);
    cr_assert_eq(seldon_pipeline_timeout_ms(NULL), 0);
    cr_assert_eq(seldon_pipeline_describe(&b, s.p[0]), 0);
    cr_assert(strstr((const char *)b.data, "; timeout 20ms"), "%.*s", (int)b.len, b.data);
    seldon_buf_free(&b);
    e = engine_of(&s); /* the engine's own default: 60 s */

    /* No timeout of its own: the pipeline's. */
    push(e, "slow", "r1", rows_of(e, 1, 1), T0);
    /* The request's own wins over the pipeline's. */
    cr_assert_eq(seldon_pipeline_engine_push(e, "slow", "r2", 2, NULL, 0, rows_of(e, 1, 1), 5, T0),
                 0);
    cr_assert_eq(seldon_pipeline_engine_push(e, "slow", "r3", 2, NULL, 0, rows_of(e, 1, 1), -1, T0),
                 0);
    /* Without one in its spec: the engine's. */
    push(e, "plain", "r4", rows_of(e, 1, 1), T0);
    while (seldon_pipeline_engine_poll(&ev, e) == 1)
        cr_assert_eq(ev.kind, SELDON_PIPELINE_EVENT_CALL);
    cr_assert_eq(seldon_pipeline_engine_deadline(e), T0 + 5 * MS);
    cr_assert_eq(seldon_pipeline_engine_advance(e, T0 + 5 * MS), 0);
    cr_assert_eq(seldon_pipeline_engine_poll(&ev, e), 1);
    cr_assert_eq(memcmp(ev.request_id, "r2", 2), 0);
    cr_assert_eq(seldon_pipeline_engine_deadline(e), T0 + 20 * MS);
    cr_assert_eq(seldon_pipeline_engine_advance(e, T0 + 20 * MS), 0);
    cr_assert_eq(seldon_pipeline_engine_poll(&ev, e), 1);
    cr_assert_eq(ev.error_kind, SELDON_PIPELINE_ERR_TIMEOUT);
    cr_assert_str_eq(ev.error, "pipeline \"slow\": request timed out");
    cr_assert_eq(memcmp(ev.request_id, "r1", 2), 0);
    cr_assert_eq(seldon_pipeline_engine_deadline(e), T0 + 60000 * MS, "r4: the engine's 60 s");
    seldon_pipeline_engine_free(e);
    pl_set_free(&s);
}

Test(timeout, a_spec_built_in_c_is_checked)
{
    seldon_pipeline_step st = {0};
    seldon_pipeline_spec spec = {0};
    seldon_pipeline *p = NULL;
    st.name = "add10";
    st.inputs_join_type = st.triggers_join_type = "inner";
    spec.steps = &st;
    spec.steps_count = 1;
    spec.input_join_type = spec.input_triggers_join_type = spec.output_steps_join = "inner";
    spec.input_join_window_ms = spec.output_join_window_ms = st.join_window_ms = -1;
    spec.timeout_ms = -1;
    cr_assert_eq(seldon_pipeline_compile(&p, "t", &spec, NULL, NULL), SELDON_EINVAL);
    cr_assert_str_eq(seldon_last_error(),
                     "pipeline \"t\": spec.timeoutMs: -1 is out of range (1 to 4294967295, 0: "
                     "absent)");
    spec.timeout_ms = 0;
    cr_assert_eq(seldon_pipeline_compile(&p, "t", &spec, NULL, NULL), 0, "%s", seldon_last_error());
    cr_assert_eq(seldon_pipeline_timeout_ms(p), 0);
    seldon_pipeline_free(p);
}
