/* The model repository: settings, loading, reloading, the index, metadata, batching. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "seldon/repository.h"

#define CHECK_OK(expr) cr_assert_eq((expr), 0, "%s: %s", #expr, seldon_last_error())
#define CHECK_ERR(expr, code, needle)                                                              \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        cr_assert_eq(rc_, (code), "%s gave %s: %s", #expr, seldon_error_name(rc_),                 \
                     seldon_last_error());                                                         \
        cr_assert(strstr(seldon_last_error(), (needle)) != NULL, "'%s' lacks '%s'",              \
                  seldon_last_error(), (needle));                                                  \
    } while (0)

static char root[256];

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    FILE *f;
    mkdir(dir, 0755);
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "w");
    cr_assert_not_null(f, "%s", path);
    fputs(text, f);
    fclose(f);
}

static void model_dir(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", root, name);
}

static void write_settings(const char *folder, const char *json)
{
    char dir[512];
    model_dir(dir, sizeof(dir), folder);
    write_file(dir, "model-settings.json", json);
}

static void setup(void)
{
    snprintf(root, sizeof(root), "/tmp/seldon-repo-test-XXXXXX");
    cr_assert_not_null(mkdtemp(root));
}

static void teardown(void)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    cr_assert_eq(system(cmd), 0);
}

static seldon_repo *new_repo(void)
{
    seldon_repo_options o = SELDON_REPO_OPTIONS_INIT;
    seldon_repo *r = NULL;
    o.root = root;
    CHECK_OK(seldon_repo_new(&r, &o));
    return r;
}

/* --- A test runtime that records how it is called ------------------------ */

typedef struct rec {
    int executes;
    size_t last_count;
    int64_t last_rows;
    int unloads;
} rec;

static rec recorder;

static int rec_load(seldon_model *m)
{
    seldon_param p;
    if (seldon_model_extra(&p, m, "fail") == 0 && p.type == SELDON_PARAM_BOOL && p.bool_value)
        return seldon_model_set_error(m, "asked to fail in extra.fail");
    seldon_model_set_state(m, &recorder);
    return 0;
}

/* OUT = IN * 2 for FP32 IN of shape [rows, k]; also ROWS = rows, which breaks row splitting. */
static int rec_execute(seldon_model *m, seldon_infer *const *infers, size_t count)
{
    rec *r = seldon_model_state(m);
    size_t i, k;
    r->executes++;
    r->last_count = count;
    for (i = 0; i < count; i++) {
        const seldon_msg *req = seldon_infer_request(infers[i]);
        seldon_msg *resp = seldon_infer_response(infers[i]);
        seldon_tensor in, out;
        size_t idx;
        int rc;
        seldon_msg_tensor(&in, req, 0);
        r->last_rows = in.ndim ? in.shape[0] : 0;
        rc = seldon_msg_add_tensor(&idx, resp, "OUT", 3, SELDON_DT_FP32, in.shape, in.ndim, NULL,
                                   in.nbytes, SELDON_TENSOR_ALLOC);
        if (rc == 0 && seldon_msg_output_count(req) > 0 &&
            seldon_infer_wants_output(infers[i], "ROWS", 4)) {
            const int64_t one = 1;
            int64_t rows = r->last_rows;
            rc = seldon_msg_add_tensor(NULL, resp, "ROWS", 4, SELDON_DT_INT64, &one, 1, &rows, 8, 0);
        }
        if (rc != 0) {
            seldon_infer_complete(infers[i], rc, seldon_last_error());
            continue;
        }
        seldon_msg_tensor(&out, resp, idx);
        for (k = 0; k < in.count; k++)
            ((float *)out.data)[k] = ((const float *)in.data)[k] * 2;
        seldon_infer_complete(infers[i], 0, NULL);
    }
    return 0;
}

static void rec_unload(seldon_model *m)
{
    ((rec *)seldon_model_state(m))->unloads++;
}

static const seldon_runtime rec_runtime = {SELDON_RUNTIME_ABI_MAJOR, SELDON_RUNTIME_ABI_MINOR,
                                           "test.rec", 0, rec_load, NULL, rec_execute, rec_unload};

/* --- Helpers to run one inference ------------------------------------------- */

typedef struct outcome {
    int called;
    int32_t status;
    char message[256];
} outcome;

static void on_done(void *ud, seldon_infer *inf, int32_t status, const char *message)
{
    outcome *o = ud;
    (void)inf;
    o->called++;
    o->status = status;
    snprintf(o->message, sizeof(o->message), "%s", message ? message : "");
}

static seldon_msg *fp32_request(const char *id, const float *v, int64_t rows, int64_t cols)
{
    seldon_msg *m = NULL;
    int64_t shape[2] = {rows, cols};
    CHECK_OK(seldon_msg_new(&m, SELDON_MSG_REQUEST));
    CHECK_OK(seldon_msg_set_id(m, id, strlen(id)));
    CHECK_OK(seldon_msg_add_tensor(NULL, m, "IN", 2, SELDON_DT_FP32, shape, 2, v,
                                   (size_t)(rows * cols) * 4, 0));
    return m;
}

Test(repo, settings_errors_name_the_field, .init = setup, .fini = teardown)
{
    seldon_repo *r = new_repo();
    write_settings("a", "{\"name\": \"a\", \"implementation\": \"builtin.identity\", "
                        "\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP33\", \"shape\": [1]}]}");
    CHECK_ERR(seldon_repo_load(r, "a"), SELDON_EDATATYPE, "inputs[0].datatype: unknown datatype");
    write_settings("b", "{\"name\": \"b\", \"implementation\": \"builtin.identity\", "
                        "\"max_batch_size\": \"lots\"}");
    CHECK_ERR(seldon_repo_load(r, "b"), SELDON_EPARSE, "max_batch_size: expected an integer");
    write_settings("c", "{\"name\": \"c\", \"implementation\": 3}");
    CHECK_ERR(seldon_repo_load(r, "c"), SELDON_EPARSE, "implementation: expected a string");
    write_settings("d", "{\"name\": \"d\", \"implementation\": \"builtin.identity\",,}");
    CHECK_ERR(seldon_repo_load(r, "d"), SELDON_EPARSE, "model-settings.json: at byte");
    write_settings("e", "{\"name\": \"e\", \"implementation\": \"mlserver_sklearn.SKLearnModel\"}");
    /* MLServer's sklearn runtime is the Python plugin, absent from this runtime path. */
    CHECK_ERR(seldon_repo_load(r, "e"), SELDON_ENOTFOUND,
              "runtime libseldon-runtime-python.so: not found in the runtime path");
    write_settings("f", "{\"name\": \"f\", \"implementation\": \"my_models.Custom\"}");
    CHECK_ERR(seldon_repo_load(r, "f"), SELDON_ENOTFOUND,
              "implementation 'my_models.Custom' is not available");
    CHECK_ERR(seldon_repo_load(r, "../etc"), SELDON_EINVAL, "model name '../etc'");
    CHECK_ERR(seldon_repo_load(r, "nothere"), SELDON_ENOTFOUND, "no model-settings.json");
    seldon_repo_free(r);
}

Test(repo, load_acquire_metadata_index_unload, .init = setup, .fini = teardown)
{
    seldon_repo *r = new_repo();
    seldon_model *m = NULL;
    seldon_buf b = SELDON_BUF_INIT;
    char dir[512];

    write_settings("iris", "{\"name\": \"iris\", \"implementation\": \"builtin.identity\", "
                           "\"parameters\": {\"uri\": \"./model.bin\", \"version\": \"2\"},"
                           "\"inputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", \"shape\": [-1, 4]}],"
                           "\"outputs\": [{\"name\": \"x\", \"datatype\": \"FP32\", \"shape\": [-1, 4]}]}");
    write_settings("broken", "{\"name\": \"broken\", \"implementation\": \"builtin.add\"}");
    CHECK_OK(seldon_repo_scan(r));
    CHECK_OK(seldon_repo_index_json(&b, r, 0));
    cr_assert_str_eq((char *)(b.len = b.len, b.data[b.len] = 0, b.data),
                     "[{\"name\":\"broken\",\"version\":\"\",\"state\":\"UNAVAILABLE\",\"reason\":\"\"},"
                     "{\"name\":\"iris\",\"version\":\"\",\"state\":\"UNAVAILABLE\",\"reason\":\"\"}]");
    CHECK_ERR(seldon_repo_acquire(&m, r, "iris", 4, NULL, 0), SELDON_ENOTFOUND,
              "model iris is not ready (UNAVAILABLE)");
    CHECK_OK(seldon_repo_load(r, "iris"));
    cr_assert(seldon_repo_load(r, "broken") < 0);
    cr_assert_eq(seldon_repo_ready_count(r), 1);

    CHECK_OK(seldon_repo_acquire(&m, r, "iris", 4, "2", 1));
    model_dir(dir, sizeof(dir), "iris");
    cr_assert_str_eq(seldon_model_dir(m), dir);
    strcat(dir, "/model.bin");
    cr_assert_str_eq(seldon_model_uri(m), dir);
    b.len = 0;
    CHECK_OK(seldon_model_metadata_json(&b, m));
    b.data[b.len] = 0;
    cr_assert_str_eq((char *)b.data,
                     "{\"name\":\"iris\",\"versions\":[\"2\"],\"platform\":\"builtin.identity\","
                     "\"inputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[-1,4]}],"
                     "\"outputs\":[{\"name\":\"x\",\"datatype\":\"FP32\",\"shape\":[-1,4]}]}");
    b.len = 0;
    CHECK_OK(seldon_model_metadata_pb(&b, m));
    cr_assert_gt(b.len, 20);
    seldon_model_release(m);
    CHECK_ERR(seldon_repo_acquire(&m, r, "iris", 4, "3", 1), SELDON_ENOTFOUND,
              "model iris has no version 3");

    b.len = 0;
    CHECK_OK(seldon_repo_index_json(&b, r, 0));
    b.data[b.len] = 0;
    cr_assert(strstr((char *)b.data, "\"name\":\"broken\",\"version\":\"\",\"state\":\"FAILED\","
                                     "\"reason\":\"model broken: builtin.add:") != NULL,
              "%s", b.data);
    cr_assert(strstr((char *)b.data, "\"name\":\"iris\",\"version\":\"2\",\"state\":\"READY\"") != NULL);
    b.len = 0;
    CHECK_OK(seldon_repo_index_json(&b, r, 1));
    b.data[b.len] = 0;
    cr_assert(strstr((char *)b.data, "broken") == NULL, "ready_only hides the failed one");
    b.len = 0;
    CHECK_OK(seldon_repo_index_pb(&b, r, 0));
    cr_assert_gt(b.len, 10);

    CHECK_OK(seldon_repo_unload(r, "iris"));
    CHECK_ERR(seldon_repo_unload(r, "iris"), SELDON_ENOTFOUND, "not loaded");
    CHECK_ERR(seldon_repo_acquire(&m, r, "iris", 4, NULL, 0), SELDON_ENOTFOUND, "not ready");
    CHECK_ERR(seldon_repo_acquire(&m, r, "zzz", 3, NULL, 0), SELDON_ENOTFOUND,
              "model zzz not found");
    seldon_buf_free(&b);
    seldon_repo_free(r);
}

Test(repo, version_folders_pick_the_latest, .init = setup, .fini = teardown)
{
    seldon_repo *r = new_repo();
    seldon_model *m = NULL;
    char dir[512], vdir[600];
    model_dir(dir, sizeof(dir), "mv");
    mkdir(dir, 0755);
    snprintf(vdir, sizeof(vdir), "%s/2", dir);
    write_file(vdir, "model-settings.json", "{\"implementation\": \"builtin.identity\"}");
    snprintf(vdir, sizeof(vdir), "%s/10", dir);
    write_file(vdir, "model-settings.json", "{\"implementation\": \"builtin.identity\"}");
    CHECK_OK(seldon_repo_load(r, "mv"));
    CHECK_OK(seldon_repo_acquire(&m, r, "mv", 2, NULL, 0));
    cr_assert_str_eq(seldon_model_version(m), "10");
    cr_assert_str_eq(seldon_model_name(m), "mv");
    seldon_model_release(m);
    seldon_repo_free(r);
}

Test(repo, reload_is_atomic_and_old_instance_finishes, .init = setup, .fini = teardown)
{
    seldon_repo *r = new_repo();
    seldon_model *old = NULL, *cur = NULL;
    const float v[2] = {1, 2};
    seldon_msg *req = fp32_request("r1", v, 1, 2), *resp = NULL;
    seldon_infer *inf = NULL;
    outcome o = {0};

    memset(&recorder, 0, sizeof(recorder));
    CHECK_OK(seldon_repo_add_runtime(r, &rec_runtime, "rec-alias"));
    write_settings("m", "{\"name\": \"m\", \"implementation\": \"rec-alias\", "
                        "\"parameters\": {\"version\": \"1\"}}");
    CHECK_OK(seldon_repo_load(r, "m"));
    CHECK_OK(seldon_repo_acquire(&old, r, "m", 1, NULL, 0));
    write_settings("m", "{\"name\": \"m\", \"implementation\": \"test.rec\", "
                        "\"parameters\": {\"version\": \"2\"}}");
    CHECK_OK(seldon_repo_load(r, "m"));
    cr_assert_eq(recorder.unloads, 0, "the old instance is still in use");
    CHECK_OK(seldon_repo_acquire(&cur, r, "m", 1, NULL, 0));
    cr_assert_str_eq(seldon_model_version(cur), "2");
    cr_assert_str_eq(seldon_model_version(old), "1");

    /* A request that started on the old instance finishes there. */
    CHECK_OK(seldon_msg_new(&resp, SELDON_MSG_RESPONSE));
    CHECK_OK(seldon_infer_new(&inf, req, resp, on_done, &o));
    seldon_model_execute(old, &inf, 1);
    cr_assert_eq(o.status, 0, "%s", o.message);
    cr_assert_str_eq(seldon_msg_model_version(resp, NULL), "1");
    cr_assert_str_eq(seldon_msg_id(resp, NULL), "r1");
    seldon_infer_free(inf);
    seldon_model_release(old);
    cr_assert_eq(recorder.unloads, 1, "the last release unloads the old instance");

    /* A failed reload leaves the current instance serving, and says why. */
    write_settings("m", "{\"name\": \"m\", \"implementation\": \"test.rec\", "
                        "\"parameters\": {\"version\": \"3\", \"extra\": {\"fail\": true}}}");
    CHECK_ERR(seldon_repo_load(r, "m"), SELDON_EINVAL, "asked to fail in extra.fail");
    seldon_model_release(cur);
    CHECK_OK(seldon_repo_acquire(&cur, r, "m", 1, NULL, 0));
    cr_assert_str_eq(seldon_model_version(cur), "2");
    seldon_model_release(cur);
    seldon_msg_free(req);
    seldon_msg_free(resp);
    seldon_repo_free(r);
    cr_assert_eq(recorder.unloads, 2);
}

Test(repo, outputs_filtered_binary_marked_and_missing_output_refused, .init = setup,
     .fini = teardown)
{
    seldon_repo *r = new_repo();
    seldon_model *m = NULL;
    const float v[4] = {1, 2, 3, 4};
    seldon_msg *req = fp32_request("x", v, 2, 2), *resp = NULL;
    seldon_infer *inf = NULL;
    seldon_param bin = {0};
    outcome o = {0};
    size_t idx;

    CHECK_OK(seldon_repo_add_runtime(r, &rec_runtime, NULL));
    write_settings("m", "{\"implementation\": \"test.rec\"}");
    CHECK_OK(seldon_repo_load(r, "m"));
    CHECK_OK(seldon_repo_acquire(&m, r, "m", 1, NULL, 0));
    CHECK_OK(seldon_msg_new(&resp, SELDON_MSG_RESPONSE));

    CHECK_OK(seldon_msg_add_output(&idx, req, "ROWS", 4));
    bin.name = "binary_data";
    bin.name_len = 11;
    bin.type = SELDON_PARAM_BOOL;
    bin.bool_value = 1;
    CHECK_OK(seldon_msg_add_param(req, SELDON_SCOPE_OUTPUT, idx, &bin));
    CHECK_OK(seldon_infer_new(&inf, req, resp, on_done, &o));
    seldon_model_execute(m, &inf, 1);
    cr_assert_eq(o.status, 0, "%s", o.message);
    cr_assert_eq(seldon_msg_tensor_count(resp), 1, "only the requested output remains");
    cr_assert_str_eq(seldon_msg_output_name(req, 0, NULL), "ROWS");
    cr_assert_eq(seldon_msg_is_binary(resp, 0), 1);
    seldon_infer_free(inf);

    /* An output the model neither produces nor declares: a bad request naming it. */
    CHECK_OK(seldon_msg_add_output(NULL, req, "NOPE", 4));
    CHECK_OK(seldon_infer_new(&inf, req, resp, on_done, &o));
    seldon_model_execute(m, &inf, 1);
    cr_assert_eq(o.status, SELDON_EINVAL, "%d %s", o.status, o.message);
    cr_assert(strstr(o.message, "outputs[1].name: model m has no output 'NOPE'") != NULL, "%s",
              o.message);
    seldon_infer_free(inf);
    seldon_model_release(m);

    /* Declared but not produced (a conditional branch that did not fire): simply absent. */
    write_settings("m", "{\"implementation\": \"test.rec\", \"outputs\": [{\"name\": \"NOPE\", "
                        "\"datatype\": \"FP32\", \"shape\": [-1]}]}");
    CHECK_OK(seldon_repo_load(r, "m"));
    CHECK_OK(seldon_repo_acquire(&m, r, "m", 1, NULL, 0));
    memset(&o, 0, sizeof(o));
    CHECK_OK(seldon_infer_new(&inf, req, resp, on_done, &o));
    seldon_model_execute(m, &inf, 1);
    cr_assert_eq(o.status, 0, "%s", o.message);
    cr_assert_eq(seldon_msg_tensor_count(resp), 1, "ROWS is there, NOPE simply absent");
    seldon_infer_free(inf);
    seldon_model_release(m);
    seldon_msg_free(req);
    seldon_msg_free(resp);
    seldon_repo_free(r);
}

Test(repo, check_request_names_field, .init = setup, .fini = teardown)
{
    seldon_repo *r = new_repo();
    seldon_model *m = NULL;
    const float v[4] = {1, 2, 3, 4};
    seldon_msg *ok = fp32_request("a", v, 1, 4), *bad = fp32_request("b", v, 2, 2);
    write_settings("m", "{\"implementation\": \"builtin.identity\", \"inputs\": "
                        "[{\"name\": \"IN\", \"datatype\": \"FP32\", \"shape\": [-1, 4]}]}");
    CHECK_OK(seldon_repo_load(r, "m"));
    CHECK_OK(seldon_repo_acquire(&m, r, "m", 1, NULL, 0));
    CHECK_OK(seldon_model_check_request(m, ok));
    CHECK_ERR(seldon_model_check_request(m, bad), SELDON_ESHAPE,
              "inputs[0].shape: model m expects [-1,4] for IN, got [2,2]");
    seldon_model_release(m);
    seldon_msg_free(ok);
    seldon_msg_free(bad);
    seldon_repo_free(r);
}

Test(batcher, fills_and_times_out_with_a_fake_clock)
{
    seldon_batcher *b = NULL;
    seldon_infer *fake[5] = {(seldon_infer *)1, (seldon_infer *)2, (seldon_infer *)3,
                             (seldon_infer *)4, (seldon_infer *)5};
    seldon_infer *out[8];
    CHECK_OK(seldon_batcher_new(&b, 3, 1000));
    cr_assert_eq(seldon_batcher_deadline(b), INT64_MAX);
    cr_assert_eq(seldon_batcher_push(b, fake[0], 100), 0);
    cr_assert_eq(seldon_batcher_push(b, fake[1], 150), 0);
    cr_assert_eq(seldon_batcher_deadline(b), 1100);
    cr_assert_eq(seldon_batcher_take(b, out, 8, 1099, 0), 0, "not due yet");
    cr_assert_eq(seldon_batcher_push(b, fake[2], 200), 1, "full");
    cr_assert_eq(seldon_batcher_push(b, fake[3], 300), 1);
    cr_assert_eq(seldon_batcher_take(b, out, 8, 400, 0), 3);
    cr_assert(out[0] == fake[0] && out[1] == fake[1] && out[2] == fake[2], "in order");
    cr_assert_eq(seldon_batcher_deadline(b), 1300);
    cr_assert_eq(seldon_batcher_take(b, out, 8, 1299, 0), 0);
    cr_assert_eq(seldon_batcher_take(b, out, 8, 1300, 0), 1);
    cr_assert(out[0] == fake[3]);
    cr_assert_eq(seldon_batcher_push(b, fake[4], 2000), 0);
    cr_assert_eq(seldon_batcher_take(b, out, 8, 2000, 1), 1, "force takes what waits");
    cr_assert_eq(seldon_batcher_size(b), 0);
    seldon_batcher_free(b);
}

Test(repo, batch_merges_compatible_and_splits_rows, .init = setup, .fini = teardown)
{
    seldon_repo *r = new_repo();
    seldon_model *m = NULL;
    const float a[2] = {1, 2}, bv[4] = {3, 4, 5, 6}, c[2] = {7, 8}, d[3] = {9, 9, 9};
    seldon_msg *reqs[4], *resps[4];
    seldon_infer *infs[4];
    outcome o[4];
    size_t i;

    memset(&recorder, 0, sizeof(recorder));
    memset(o, 0, sizeof(o));
    CHECK_OK(seldon_repo_add_runtime(r, &rec_runtime, NULL));
    write_settings("m", "{\"implementation\": \"test.rec\", \"max_batch_size\": 8, "
                        "\"max_batch_time\": 0.01}");
    CHECK_OK(seldon_repo_load(r, "m"));
    CHECK_OK(seldon_repo_acquire(&m, r, "m", 1, NULL, 0));
    cr_assert_eq(seldon_model_max_batch_size(m), 8);
    cr_assert_eq(seldon_model_max_batch_time_ns(m), 10000000);
    reqs[0] = fp32_request("a", a, 1, 2);
    reqs[1] = fp32_request("b", bv, 2, 2);
    reqs[2] = fp32_request("c", c, 1, 2);
    reqs[3] = fp32_request("d", d, 1, 3); /* another row shape: runs alone */
    for (i = 0; i < 4; i++) {
        CHECK_OK(seldon_msg_new(&resps[i], SELDON_MSG_RESPONSE));
        CHECK_OK(seldon_infer_new(&infs[i], reqs[i], resps[i], on_done, &o[i]));
    }
    seldon_model_execute_batch(m, infs, 4);
    cr_assert_eq(recorder.executes, 2, "one merged run and one alone");
    for (i = 0; i < 4; i++) {
        seldon_tensor in, out;
        size_t k;
        cr_assert_eq(o[i].called, 1);
        cr_assert_eq(o[i].status, 0, "%zu: %s", i, o[i].message);
        cr_assert_str_eq(seldon_msg_id(resps[i], NULL), seldon_msg_id(reqs[i], NULL));
        CHECK_OK(seldon_msg_tensor(&in, reqs[i], 0));
        CHECK_OK(seldon_msg_tensor(&out, resps[i], 0));
        cr_assert_eq(out.ndim, 2);
        cr_assert_eq(out.shape[0], in.shape[0], "each caller gets its own rows");
        for (k = 0; k < in.count; k++)
            cr_assert_eq(((float *)out.data)[k], ((const float *)in.data)[k] * 2);
        seldon_infer_free(infs[i]);
    }

    /* An output that is not one row per input row cannot be split: every part says so. */
    for (i = 0; i < 2; i++) {
        CHECK_OK(seldon_msg_add_output(NULL, reqs[i], "ROWS", 4));
        CHECK_OK(seldon_infer_new(&infs[i], reqs[i], resps[i], on_done, &o[i]));
    }
    seldon_model_execute_batch(m, infs, 2);
    for (i = 0; i < 2; i++) {
        cr_assert_eq(o[i].status, SELDON_ESHAPE);
        cr_assert(strstr(o[i].message, "output ROWS has 1 rows for a batch of 3") != NULL, "%s",
                  o[i].message);
        seldon_infer_free(infs[i]);
    }
    for (i = 0; i < 4; i++) {
        seldon_msg_free(reqs[i]);
        seldon_msg_free(resps[i]);
    }
    seldon_model_release(m);
    seldon_repo_free(r);
}
