/*
 * The builtin runtimes, driven through the real repository: each test
 * writes model folders into a temporary root, loads them with
 * seldon_repo_load() and runs requests with seldon_model_execute().
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <criterion/criterion.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "seldon/repository.h"

static char root[64];
static seldon_repo *repo;
static seldon_model *acquired[16];
static size_t nacquired;

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void setup(void)
{
    seldon_repo_options opts = SELDON_REPO_OPTIONS_INIT;

    snprintf(root, sizeof root, "/tmp/sdn_builtin_XXXXXX");
    cr_assert_not_null(mkdtemp(root));
    opts.root = root;
    cr_assert_eq(seldon_repo_new(&repo, &opts), 0, "%s", seldon_last_error());
}

static void teardown(void)
{
    size_t i;

    for (i = 0; i < nacquired; i++)
        seldon_model_release(acquired[i]);
    nacquired = 0;
    seldon_repo_free(repo);
    repo = NULL;
    nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(builtin, .init = setup, .fini = teardown);

static void write_settings(const char *name, const char *json)
{
    char path[256];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", root, name);
    cr_assert_eq(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/%s/model-settings.json", root, name);
    f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(json, f);
    fclose(f);
}

/* Writes the settings, loads the model and acquires it (released by teardown). */
static seldon_model *load(const char *name, const char *json)
{
    seldon_model *m = NULL;

    write_settings(name, json);
    cr_assert_eq(seldon_repo_load(repo, name), 0, "load %s: %s", name, seldon_last_error());
    cr_assert_eq(seldon_repo_acquire(&m, repo, name, strlen(name), NULL, 0), 0, "%s",
                 seldon_last_error());
    cr_assert_lt(nacquired, sizeof acquired / sizeof acquired[0]);
    acquired[nacquired++] = m;
    return m;
}

typedef struct outcome {
    int calls;
    int32_t status;
    char message[1024];
} outcome;

static void on_done(void *user_data, seldon_infer *infer, int32_t status, const char *message)
{
    outcome *o = user_data;

    (void)infer;
    o->calls++;
    o->status = status;
    snprintf(o->message, sizeof o->message, "%s", message ? message : "");
}

/* Runs req on m into resp; returns the status, the message in o. */
static int32_t run(outcome *o, seldon_model *m, const seldon_msg *req, seldon_msg *resp)
{
    seldon_infer *infer = NULL;

    memset(o, 0, sizeof *o);
    cr_assert_eq(seldon_infer_new(&infer, req, resp, on_done, o), 0, "%s", seldon_last_error());
    seldon_model_execute(m, &infer, 1);
    cr_assert_eq(o->calls, 1, "done ran %d times", o->calls);
    seldon_infer_free(infer);
    return o->status;
}

static seldon_msg *new_msg(int32_t kind)
{
    seldon_msg *msg = NULL;
    cr_assert_eq(seldon_msg_new(&msg, kind), 0);
    return msg;
}

static void add(seldon_msg *req, const char *name, int32_t datatype, const int64_t *shape,
                uint32_t ndim, const void *data, size_t nbytes)
{
    cr_assert_eq(seldon_msg_add_tensor(NULL, req, name, strlen(name), datatype, shape, ndim, data,
                                       nbytes, SELDON_TENSOR_COPY),
                 0, "%s", seldon_last_error());
}

static void want_output(seldon_msg *req, const char *name)
{
    cr_assert_eq(seldon_msg_add_output(NULL, req, name, strlen(name)), 0);
}

/* The response's tensor called name; fails the test when absent. */
static seldon_tensor get(const seldon_msg *resp, const char *name)
{
    seldon_tensor t;
    size_t index;

    cr_assert_eq(seldon_msg_find_tensor(&index, resp, name, strlen(name)), 0, "no output %s", name);
    cr_assert_eq(seldon_msg_tensor(&t, resp, index), 0);
    return t;
}

static int has(const seldon_msg *resp, const char *name)
{
    size_t index;
    return seldon_msg_find_tensor(&index, resp, name, strlen(name)) == 0;
}

static void assert_shape(const seldon_tensor *t, const int64_t *shape, uint32_t ndim)
{
    cr_assert_eq(t->ndim, ndim, "%s: ndim %u, want %u", t->name, t->ndim, ndim);
    if (ndim)
        cr_assert_arr_eq(t->shape, shape, ndim * sizeof(int64_t), "%s: shape differs", t->name);
}

/* --- identity ----------------------------------------------------------- */

Test(builtin, identity_every_datatype)
{
    seldon_model *m = load("id", "{\"name\": \"id\", \"implementation\": \"builtin.identity\"}");
    seldon_msg *req = new_msg(SELDON_MSG_REQUEST), *resp = new_msg(SELDON_MSG_RESPONSE);
    static const int64_t shape[2] = {2, 3}, empty[2] = {2, 0}, three[1] = {3};
    static const uint8_t bytes[] = {2, 0, 0, 0, 'h', 'i', 0, 0, 0, 0, 3, 0, 0, 0, 0, 1, 2};
    uint8_t raw[6 * 8];
    seldon_tensor in, out;
    outcome o;
    int32_t dt;
    size_t i, k, n;
    float scalar = 3.5f;
    void *copies[32];

    for (k = 0; k < sizeof raw; k++)
        raw[k] = (uint8_t)(k * 37 + 11);
    for (dt = SELDON_DT_BOOL; dt <= SELDON_DT_FP64; dt++) {
        char name[32];
        size_t size = seldon_datatype_size(dt);
        if (dt == SELDON_DT_BOOL) {
            uint8_t b[6] = {0, 1, 1, 0, 1, 0};
            add(req, "BOOL", dt, shape, 2, b, 6);
            continue;
        }
        snprintf(name, sizeof name, "%s", seldon_datatype_name(dt));
        add(req, name, dt, shape, 2, raw, 6 * size);
    }
    add(req, "BYTES", SELDON_DT_BYTES, three, 1, bytes, sizeof bytes);
    add(req, "scalar", SELDON_DT_FP32, NULL, 0, &scalar, sizeof scalar);
    add(req, "empty", SELDON_DT_INT64, empty, 2, NULL, 0);
    add(req, "empty_bytes", SELDON_DT_BYTES, empty, 2, NULL, 0);

    cr_assert_eq(run(&o, m, req, resp), 0, "%s", o.message);
    n = seldon_msg_tensor_count(req);
    cr_assert_eq(seldon_msg_tensor_count(resp), n);
    for (i = 0; i < n; i++) {
        seldon_msg_tensor(&in, req, i);
        out = get(resp, in.name);
        cr_assert_eq(out.datatype, in.datatype, "%s", in.name);
        assert_shape(&out, in.shape, in.ndim);
        cr_assert_eq(out.nbytes, in.nbytes, "%s", in.name);
        cr_assert_eq(out.count, in.count, "%s", in.name);
        if (in.nbytes) {
            cr_assert_neq(out.data, in.data, "%s: borrowed, not copied", in.name);
            cr_assert_arr_eq(out.data, in.data, in.nbytes, "%s", in.name);
        }
    }

    /* The response owns its bytes: it outlives the request. */
    for (i = 0; i < n && i < 32; i++) {
        seldon_msg_tensor(&out, resp, i);
        copies[i] = malloc(out.nbytes + 1);
        memcpy(copies[i], out.data ? out.data : "", out.nbytes);
    }
    seldon_msg_free(req);
    for (i = 0; i < n && i < 32; i++) {
        seldon_msg_tensor(&out, resp, i);
        if (out.nbytes)
            cr_assert_arr_eq(out.data, copies[i], out.nbytes);
        free(copies[i]);
    }
    out = get(resp, "scalar");
    cr_assert_eq(out.ndim, 0);
    cr_assert_eq(*(float *)out.data, 3.5f);
    seldon_msg_free(resp);
}

Test(builtin, identity_requested_outputs)
{
    seldon_model *m = load("id", "{\"name\": \"id\", \"implementation\": \"builtin.identity\"}");
    seldon_msg *req = new_msg(SELDON_MSG_REQUEST), *resp = new_msg(SELDON_MSG_RESPONSE);
    static const int64_t shape[1] = {2};
    const int32_t a[2] = {1, 2}, b[2] = {3, 4};
    seldon_tensor t;
    outcome o;

    add(req, "a", SELDON_DT_INT32, shape, 1, a, sizeof a);
    add(req, "b", SELDON_DT_INT32, shape, 1, b, sizeof b);
    want_output(req, "b");
    cr_assert_eq(run(&o, m, req, resp), 0, "%s", o.message);
    cr_assert_eq(seldon_msg_tensor_count(resp), 1);
    t = get(resp, "b");
    cr_assert_arr_eq(t.data, b, sizeof b);
    seldon_msg_free(req);
    seldon_msg_free(resp);
}

/* --- simple ------------------------------------------------------------- */

#define SIMPLE_SETTINGS "{\"name\": \"tfsimple\", \"implementation\": \"builtin.simple\"}"

Test(builtin, simple_sum_and_difference)
{
    seldon_model *m = load("tfsimple", SIMPLE_SETTINGS);
    seldon_msg *req = new_msg(SELDON_MSG_REQUEST), *resp = new_msg(SELDON_MSG_RESPONSE);
    static const int64_t shape[2] = {1, 16};
    int32_t a[16], b[16], sum[16], diff[16];
    seldon_tensor t;
    outcome o;
    int k;

    for (k = 0; k < 16; k++) {
        a[k] = k * 1000 - 3;
        b[k] = 7 - k * k;
    }
    /* Wraparound as int32 does on two's complement hardware, without UB in the runtime. */
    a[14] = INT32_MAX;
    b[14] = 1;
    a[15] = INT32_MIN;
    b[15] = 1;
    for (k = 0; k < 16; k++) {
        sum[k] = (int32_t)((uint32_t)a[k] + (uint32_t)b[k]);
        diff[k] = (int32_t)((uint32_t)a[k] - (uint32_t)b[k]);
    }
    cr_assert_eq(sum[14], INT32_MIN);
    cr_assert_eq(diff[15], INT32_MAX);

    add(req, "INPUT0", SELDON_DT_INT32, shape, 2, a, sizeof a);
    add(req, "INPUT1", SELDON_DT_INT32, shape, 2, b, sizeof b);
    cr_assert_eq(run(&o, m, req, resp), 0, "%s", o.message);
    cr_assert_eq(seldon_msg_tensor_count(resp), 2);
    t = get(resp, "OUTPUT0");
    cr_assert_eq(t.datatype, SELDON_DT_INT32);
    assert_shape(&t, shape, 2);
    cr_assert_arr_eq(t.data, sum, sizeof sum);
    t = get(resp, "OUTPUT1");
    assert_shape(&t, shape, 2);
    cr_assert_arr_eq(t.data, diff, sizeof diff);

    /* Only OUTPUT1 asked for. */
    seldon_msg_free(resp);
    resp = new_msg(SELDON_MSG_RESPONSE);
    want_output(req, "OUTPUT1");
    cr_assert_eq(run(&o, m, req, resp), 0, "%s", o.message);
    cr_assert_eq(seldon_msg_tensor_count(resp), 1);
    t = get(resp, "OUTPUT1");
    cr_assert_arr_eq(t.data, diff, sizeof diff);
    seldon_msg_free(req);
    seldon_msg_free(resp);
}

Test(builtin, simple_metadata_declares_tensors)
{
    seldon_model *m = load("tfsimple", SIMPLE_SETTINGS);
    seldon_buf buf = SELDON_BUF_INIT;
    char *text;

    cr_assert_eq(seldon_model_metadata_json(&buf, m), 0, "%s", seldon_last_error());
    text = strndup((const char *)buf.data, buf.len);
    cr_assert(strstr(text, "INPUT0") && strstr(text, "INPUT1") && strstr(text, "OUTPUT0") &&
                  strstr(text, "OUTPUT1"),
              "%s", text);
    cr_assert(strstr(text, "INT32"), "%s", text);
    free(text);
    seldon_buf_free(&buf);
}

Test(builtin, simple_errors_name_the_input)
{
    seldon_model *m = load("tfsimple", SIMPLE_SETTINGS);
    static const int64_t s1[2] = {1, 16}, s2[2] = {2, 16};
    int32_t a[32] = {0};
    float f[16] = {0};
    seldon_msg *req, *resp = new_msg(SELDON_MSG_RESPONSE);
    outcome o;

    /* INPUT1 missing. */
    req = new_msg(SELDON_MSG_REQUEST);
    add(req, "INPUT0", SELDON_DT_INT32, s1, 2, a, 64);
    cr_assert_lt(run(&o, m, req, resp), 0);
    cr_assert(strstr(o.message, "INPUT1"), "%s", o.message);
    seldon_msg_free(req);

    /* INPUT1 of the wrong datatype. */
    req = new_msg(SELDON_MSG_REQUEST);
    add(req, "INPUT0", SELDON_DT_INT32, s1, 2, a, 64);
    add(req, "INPUT1", SELDON_DT_FP32, s1, 2, f, 64);
    cr_assert_eq(run(&o, m, req, resp), SELDON_EDATATYPE, "%s", o.message);
    cr_assert(strstr(o.message, "INPUT1"), "%s", o.message);
    seldon_msg_free(req);

    /* Shapes that differ. */
    req = new_msg(SELDON_MSG_REQUEST);
    add(req, "INPUT0", SELDON_DT_INT32, s1, 2, a, 64);
    add(req, "INPUT1", SELDON_DT_INT32, s2, 2, a, 128);
    cr_assert_eq(run(&o, m, req, resp), SELDON_ESHAPE, "%s", o.message);
    cr_assert(strstr(o.message, "INPUT1"), "%s", o.message);
    seldon_msg_free(req);
    seldon_msg_free(resp);
}

/* --- add and mul -------------------------------------------------------- */

#define ADD10                                                                                      \
    "{\"name\": \"add10\", \"implementation\": \"builtin.add\", "                                  \
    "\"parameters\": {\"extra\": {\"constant\": 10}}}"
#define ADD20                                                                                      \
    "{\"name\": \"add20\", \"implementation\": \"builtin.add\", "                                  \
    "\"parameters\": {\"extra\": {\"constant\": 20}}}"
#define MUL10                                                                                      \
    "{\"name\": \"mul10\", \"implementation\": \"builtin.mul\", "                                  \
    "\"parameters\": {\"extra\": {\"constant\": 10}}}"

/* Runs one FP32 INPUT through m and checks OUTPUT against want. */
static void check_fp32(seldon_model *m, const int64_t *shape, uint32_t ndim, const float *in,
                       const float *want, size_t n)
{
    seldon_msg *req = new_msg(SELDON_MSG_REQUEST), *resp = new_msg(SELDON_MSG_RESPONSE);
    seldon_tensor t;
    outcome o;

    add(req, "INPUT", SELDON_DT_FP32, shape, ndim, in, n * sizeof(float));
    cr_assert_eq(run(&o, m, req, resp), 0, "%s", o.message);
    cr_assert_eq(seldon_msg_tensor_count(resp), 1);
    t = get(resp, "OUTPUT");
    cr_assert_eq(t.datatype, SELDON_DT_FP32);
    assert_shape(&t, shape, ndim);
    cr_assert_arr_eq(t.data, want, n * sizeof(float));
    seldon_msg_free(req);
    seldon_msg_free(resp);
}

Test(builtin, add10_add20_mul10_samples)
{
    seldon_model *add10 = load("add10", ADD10);
    seldon_model *add20 = load("add20", ADD20);
    seldon_model *mul10 = load("mul10", MUL10);
    static const int64_t flat[1] = {4}, row[2] = {1, 4};
    const float in[4] = {1, 2, 3, 4};
    const float p10[4] = {11, 12, 13, 14}, p20[4] = {21, 22, 23, 24}, t10[4] = {10, 20, 30, 40};

    check_fp32(add10, flat, 1, in, p10, 4);
    check_fp32(add10, row, 2, in, p10, 4);
    check_fp32(add20, flat, 1, in, p20, 4);
    check_fp32(add20, row, 2, in, p20, 4);
    check_fp32(mul10, flat, 1, in, t10, 4);
    check_fp32(mul10, row, 2, in, t10, 4);
}

Test(builtin, add_float_rounding_is_the_tensors_type)
{
    seldon_model *m = load("addf", "{\"name\": \"addf\", \"implementation\": \"builtin.add\", "
                                   "\"parameters\": {\"extra\": {\"constant\": 0.1}}}");
    seldon_msg *req = new_msg(SELDON_MSG_REQUEST), *resp = new_msg(SELDON_MSG_RESPONSE);
    static const int64_t shape[1] = {3};
    volatile float cf = 0.1f;
    volatile double cd = 0.1;
    const float f[3] = {1e8f, 0.2f, -0.1f};
    const double d[3] = {1e17, 0.2, -0.1};
    float wf[3];
    double wd[3];
    seldon_tensor t;
    outcome o;
    int k;

    for (k = 0; k < 3; k++) {
        wf[k] = f[k] + cf;
        wd[k] = d[k] + cd;
    }
    add(req, "INPUT0", SELDON_DT_FP32, shape, 1, f, sizeof f);
    add(req, "INPUT1", SELDON_DT_FP64, shape, 1, d, sizeof d);
    cr_assert_eq(run(&o, m, req, resp), 0, "%s", o.message);
    t = get(resp, "OUTPUT0");
    cr_assert_eq(t.datatype, SELDON_DT_FP32);
    cr_assert_arr_eq(t.data, wf, sizeof wf);
    t = get(resp, "OUTPUT1");
    cr_assert_eq(t.datatype, SELDON_DT_FP64);
    cr_assert_arr_eq(t.data, wd, sizeof wd);
    seldon_msg_free(req);
    seldon_msg_free(resp);
}

Test(builtin, add_mul_integers_wrap)
{
    seldon_model *add10 = load("add10", ADD10);
    seldon_model *mul10 = load("mul10", MUL10);
    seldon_msg *req = new_msg(SELDON_MSG_REQUEST), *resp = new_msg(SELDON_MSG_RESPONSE);
    static const int64_t two[1] = {2};
    const int8_t i8[2] = {100, -128};
    const uint8_t u8[2] = {200, 3};
    const int16_t i16[2] = {INT16_MAX, -5};
    const uint16_t u16[2] = {65535, 6553};
    const int32_t i32[2] = {INT32_MAX, INT32_MIN};
    const uint32_t u32[2] = {UINT32_MAX, 429496729u};
    const int64_t i64[2] = {INT64_MAX, INT64_MIN};
    const uint64_t u64[2] = {UINT64_MAX, 5};
    outcome o;

    add(req, "INPUT0", SELDON_DT_INT8, two, 1, i8, sizeof i8);
    add(req, "INPUT1", SELDON_DT_UINT8, two, 1, u8, sizeof u8);
    add(req, "INPUT2", SELDON_DT_INT16, two, 1, i16, sizeof i16);
    add(req, "INPUT3", SELDON_DT_UINT16, two, 1, u16, sizeof u16);
    add(req, "INPUT4", SELDON_DT_INT32, two, 1, i32, sizeof i32);
    add(req, "INPUT5", SELDON_DT_UINT32, two, 1, u32, sizeof u32);
    add(req, "INPUT6", SELDON_DT_INT64, two, 1, i64, sizeof i64);
    add(req, "INPUT7", SELDON_DT_UINT64, two, 1, u64, sizeof u64);

    cr_assert_eq(run(&o, add10, req, resp), 0, "%s", o.message);
    cr_assert_eq(seldon_msg_tensor_count(resp), 8);
    {
        const int8_t w8[2] = {110, -118};
        const uint8_t wu8[2] = {210, 13};
        const int16_t w16[2] = {INT16_MIN + 9, 5};
        const uint16_t wu16[2] = {9, 6563};
        const int32_t w32[2] = {INT32_MIN + 9, INT32_MIN + 10};
        const uint32_t wu32[2] = {9, 429496739u};
        const int64_t w64[2] = {INT64_MIN + 9, INT64_MIN + 10};
        const uint64_t wu64[2] = {9, 15};
        cr_assert_arr_eq(get(resp, "OUTPUT0").data, w8, sizeof w8);
        cr_assert_arr_eq(get(resp, "OUTPUT1").data, wu8, sizeof wu8);
        cr_assert_arr_eq(get(resp, "OUTPUT2").data, w16, sizeof w16);
        cr_assert_arr_eq(get(resp, "OUTPUT3").data, wu16, sizeof wu16);
        cr_assert_arr_eq(get(resp, "OUTPUT4").data, w32, sizeof w32);
        cr_assert_arr_eq(get(resp, "OUTPUT5").data, wu32, sizeof wu32);
        cr_assert_arr_eq(get(resp, "OUTPUT6").data, w64, sizeof w64);
        cr_assert_arr_eq(get(resp, "OUTPUT7").data, wu64, sizeof wu64);
    }

    seldon_msg_free(resp);
    resp = new_msg(SELDON_MSG_RESPONSE);
    cr_assert_eq(run(&o, mul10, req, resp), 0, "%s", o.message);
    {
        /* The products modulo 2^width, read back in the element's type. */
        const int8_t w8[2] = {(int8_t)(1000 - 1024), 0};
        const uint8_t wu8[2] = {(uint8_t)2000, 30};
        const int16_t w16[2] = {-10, -50};
        const uint16_t wu16[2] = {65526, 65530};
        const int32_t w32[2] = {-10, 0};
        const uint32_t wu32[2] = {UINT32_MAX - 9, 4294967290u};
        const int64_t w64[2] = {-10, 0};
        const uint64_t wu64[2] = {UINT64_MAX - 9, 50};
        cr_assert_arr_eq(get(resp, "OUTPUT0").data, w8, sizeof w8);
        cr_assert_arr_eq(get(resp, "OUTPUT1").data, wu8, sizeof wu8);
        cr_assert_arr_eq(get(resp, "OUTPUT2").data, w16, sizeof w16);
        cr_assert_arr_eq(get(resp, "OUTPUT3").data, wu16, sizeof wu16);
        cr_assert_arr_eq(get(resp, "OUTPUT4").data, w32, sizeof w32);
        cr_assert_arr_eq(get(resp, "OUTPUT5").data, wu32, sizeof wu32);
        cr_assert_arr_eq(get(resp, "OUTPUT6").data, w64, sizeof w64);
        cr_assert_arr_eq(get(resp, "OUTPUT7").data, wu64, sizeof wu64);
    }
    seldon_msg_free(req);
    seldon_msg_free(resp);
}

Test(builtin, add_output_names_and_requested_outputs)
{
    seldon_model *m = load("add10", ADD10);
    seldon_msg *req = new_msg(SELDON_MSG_REQUEST), *resp = new_msg(SELDON_MSG_RESPONSE);
    static const int64_t one[1] = {1};
    const float x = 1.0f, eleven = 11.0f;
    outcome o;

    add(req, "INPUT", SELDON_DT_FP32, one, 1, &x, 4);
    add(req, "INPUT12", SELDON_DT_FP32, one, 1, &x, 4);
    add(req, "INPUTX", SELDON_DT_FP32, one, 1, &x, 4);
    add(req, "features", SELDON_DT_FP32, one, 1, &x, 4);
    cr_assert_eq(run(&o, m, req, resp), 0, "%s", o.message);
    cr_assert_eq(seldon_msg_tensor_count(resp), 4);
    cr_assert(has(resp, "OUTPUT") && has(resp, "OUTPUT12") && has(resp, "INPUTX") &&
              has(resp, "features"));
    cr_assert_eq(*(float *)get(resp, "features").data, eleven);

    seldon_msg_free(resp);
    resp = new_msg(SELDON_MSG_RESPONSE);
    want_output(req, "OUTPUT12");
    cr_assert_eq(run(&o, m, req, resp), 0, "%s", o.message);
    cr_assert_eq(seldon_msg_tensor_count(resp), 1);
    cr_assert(has(resp, "OUTPUT12"));
    seldon_msg_free(req);
    seldon_msg_free(resp);
}

Test(builtin, add_unsupported_datatypes)
{
    seldon_model *m = load("add10", ADD10);
    seldon_model *half = load("addh", "{\"name\": \"addh\", \"implementation\": \"builtin.add\", "
                                      "\"parameters\": {\"extra\": {\"constant\": 2.5}}}");
    seldon_msg *req, *resp = new_msg(SELDON_MSG_RESPONSE);
    static const int64_t one[1] = {1};
    static const uint8_t text[] = {1, 0, 0, 0, 'x'};
    const uint16_t h = 0x3c00;
    const int32_t i = 1;
    outcome o;

    req = new_msg(SELDON_MSG_REQUEST);
    add(req, "words", SELDON_DT_BYTES, one, 1, text, sizeof text);
    cr_assert_eq(run(&o, m, req, resp), SELDON_EDATATYPE, "%s", o.message);
    cr_assert(strstr(o.message, "words") && strstr(o.message, "BYTES"), "%s", o.message);
    seldon_msg_free(req);

    req = new_msg(SELDON_MSG_REQUEST);
    add(req, "INPUT", SELDON_DT_FP16, one, 1, &h, sizeof h);
    cr_assert_eq(run(&o, m, req, resp), SELDON_EDATATYPE, "%s", o.message);
    cr_assert(strstr(o.message, "INPUT"), "%s", o.message);
    seldon_msg_free(req);

    /* A fractional constant cannot apply to integers. */
    req = new_msg(SELDON_MSG_REQUEST);
    add(req, "counts", SELDON_DT_INT32, one, 1, &i, sizeof i);
    cr_assert_eq(run(&o, half, req, resp), SELDON_EDATATYPE, "%s", o.message);
    cr_assert(strstr(o.message, "counts"), "%s", o.message);
    seldon_msg_free(req);
    seldon_msg_free(resp);
}

Test(builtin, constant_spelled_as_string)
{
    seldon_model *m = load("add10s", "{\"name\": \"add10s\", \"implementation\": \"builtin.add\", "
                                     "\"parameters\": {\"extra\": {\"constant\": \"10\"}}}");
    static const int64_t flat[1] = {4};
    const float in[4] = {1, 2, 3, 4}, want[4] = {11, 12, 13, 14};

    check_fp32(m, flat, 1, in, want, 4);
}

Test(builtin, missing_constant_fails_load)
{
    static const char *const bad[] = {
        "{\"name\": \"nocon\", \"implementation\": \"builtin.add\"}",
        "{\"name\": \"nocon\", \"implementation\": \"builtin.mul\", "
        "\"parameters\": {\"extra\": {\"other\": 1}}}",
        "{\"name\": \"nocon\", \"implementation\": \"builtin.add\", "
        "\"parameters\": {\"extra\": {\"constant\": true}}}",
        "{\"name\": \"nocon\", \"implementation\": \"builtin.mul\", "
        "\"parameters\": {\"extra\": {\"constant\": \"ten\"}}}",
        "{\"name\": \"nocon\", \"implementation\": \"builtin.add\", "
        "\"parameters\": {\"extra\": {\"constant\": [10]}}}",
    };
    char path[256];
    size_t i;

    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        seldon_model *m = NULL;
        write_settings("nocon", bad[i]);
        cr_assert_lt(seldon_repo_load(repo, "nocon"), 0, "case %zu loaded", i);
        cr_assert(strstr(seldon_last_error(), "constant"), "case %zu: %s", i, seldon_last_error());
        cr_assert_lt(seldon_repo_acquire(&m, repo, "nocon", 5, NULL, 0), 0);
        snprintf(path, sizeof path, "%s/nocon/model-settings.json", root);
        remove(path);
        snprintf(path, sizeof path, "%s/nocon", root);
        rmdir(path);
    }
}

/* --- conditional -------------------------------------------------------- */

#define CONDITIONAL "{\"name\": \"conditional\", \"implementation\": \"builtin.conditional\"}"

static seldon_msg *conditional_request(int32_t choice)
{
    seldon_msg *req = new_msg(SELDON_MSG_REQUEST);
    static const int64_t one[1] = {1}, four[1] = {4};
    const float a[4] = {1, 2, 3, 4}, b[4] = {5, 6, 7, 8};

    add(req, "CHOICE", SELDON_DT_INT32, one, 1, &choice, sizeof choice);
    add(req, "INPUT0", SELDON_DT_FP32, four, 1, a, sizeof a);
    add(req, "INPUT1", SELDON_DT_FP32, four, 1, b, sizeof b);
    return req;
}

Test(builtin, conditional_branches)
{
    seldon_model *m = load("conditional", CONDITIONAL);
    seldon_msg *req, *resp = new_msg(SELDON_MSG_RESPONSE);
    static const int64_t four[1] = {4};
    const float a[4] = {1, 2, 3, 4}, b[4] = {5, 6, 7, 8};
    seldon_tensor t;
    outcome o;

    req = conditional_request(0);
    cr_assert_eq(run(&o, m, req, resp), 0, "%s", o.message);
    cr_assert_eq(seldon_msg_tensor_count(resp), 1);
    t = get(resp, "OUTPUT0");
    cr_assert_eq(t.datatype, SELDON_DT_FP32);
    assert_shape(&t, four, 1);
    cr_assert_arr_eq(t.data, a, sizeof a);
    seldon_msg_free(req);

    req = conditional_request(1);
    cr_assert_eq(run(&o, m, req, resp), 0, "%s", o.message);
    cr_assert_eq(seldon_msg_tensor_count(resp), 1);
    t = get(resp, "OUTPUT1");
    cr_assert_arr_eq(t.data, b, sizeof b);
    seldon_msg_free(req);

    /* Any non-zero choice takes the second branch. */
    req = conditional_request(-7);
    cr_assert_eq(run(&o, m, req, resp), 0, "%s", o.message);
    cr_assert(has(resp, "OUTPUT1") && !has(resp, "OUTPUT0"));
    seldon_msg_free(req);

    /* Naming the output of the branch taken. */
    req = conditional_request(5);
    want_output(req, "OUTPUT1");
    cr_assert_eq(run(&o, m, req, resp), 0, "%s", o.message);
    cr_assert_eq(seldon_msg_tensor_count(resp), 1);
    cr_assert_arr_eq(get(resp, "OUTPUT1").data, b, sizeof b);
    seldon_msg_free(req);
    seldon_msg_free(resp);
}

Test(builtin, conditional_errors)
{
    seldon_model *m = load("conditional", CONDITIONAL);
    seldon_msg *req, *resp = new_msg(SELDON_MSG_RESPONSE);
    static const int64_t one[1] = {1}, two[1] = {2};
    const float f[2] = {0, 0};
    const int32_t c[2] = {1, 1};
    outcome o;

    req = new_msg(SELDON_MSG_REQUEST);
    add(req, "INPUT0", SELDON_DT_FP32, one, 1, f, 4);
    cr_assert_lt(run(&o, m, req, resp), 0);
    cr_assert(strstr(o.message, "CHOICE"), "%s", o.message);
    seldon_msg_free(req);

    req = new_msg(SELDON_MSG_REQUEST);
    add(req, "CHOICE", SELDON_DT_FP32, one, 1, f, 4);
    cr_assert_eq(run(&o, m, req, resp), SELDON_EDATATYPE, "%s", o.message);
    seldon_msg_free(req);

    req = new_msg(SELDON_MSG_REQUEST);
    add(req, "CHOICE", SELDON_DT_INT32, two, 1, c, sizeof c);
    cr_assert_eq(run(&o, m, req, resp), SELDON_ESHAPE, "%s", o.message);
    seldon_msg_free(req);

    /* The selected input is missing. */
    req = new_msg(SELDON_MSG_REQUEST);
    add(req, "CHOICE", SELDON_DT_INT32, one, 1, c, 4);
    add(req, "INPUT0", SELDON_DT_FP32, one, 1, f, 4);
    cr_assert_lt(run(&o, m, req, resp), 0);
    cr_assert(strstr(o.message, "INPUT1"), "%s", o.message);
    seldon_msg_free(req);
    seldon_msg_free(resp);
}

/* --- several inferences in one execute ---------------------------------- */

Test(builtin, batch_of_inferences_completes_each)
{
    seldon_model *m = load("add10", ADD10);
    static const int64_t one[1] = {1};
    seldon_msg *req[3], *resp[3];
    seldon_infer *infers[3];
    outcome o[3];
    const float x[3] = {1, 2, 3};
    static const uint8_t text[] = {1, 0, 0, 0, 'x'};
    int k;

    for (k = 0; k < 3; k++) {
        req[k] = new_msg(SELDON_MSG_REQUEST);
        resp[k] = new_msg(SELDON_MSG_RESPONSE);
        if (k == 1)
            add(req[k], "INPUT", SELDON_DT_BYTES, one, 1, text, sizeof text);
        else
            add(req[k], "INPUT", SELDON_DT_FP32, one, 1, &x[k], 4);
        memset(&o[k], 0, sizeof o[k]);
        cr_assert_eq(seldon_infer_new(&infers[k], req[k], resp[k], on_done, &o[k]), 0);
    }
    seldon_model_execute(m, infers, 3);
    for (k = 0; k < 3; k++) {
        cr_assert_eq(o[k].calls, 1);
        seldon_infer_free(infers[k]);
    }
    cr_assert_eq(o[0].status, 0);
    cr_assert_eq(o[1].status, SELDON_EDATATYPE);
    cr_assert_eq(o[2].status, 0);
    cr_assert_eq(*(float *)get(resp[0], "OUTPUT").data, 11.0f);
    cr_assert_eq(*(float *)get(resp[2], "OUTPUT").data, 13.0f);
    for (k = 0; k < 3; k++) {
        seldon_msg_free(req[k]);
        seldon_msg_free(resp[k]);
    }
}

Test(builtin, flags_are_concurrent_and_inline)
{
    seldon_model *m = load("id", "{\"name\": \"id\", \"implementation\": \"builtin.identity\"}");
    uint32_t want = SELDON_RUNTIME_CONCURRENT | SELDON_RUNTIME_INLINE;

    cr_assert_eq(seldon_model_runtime_flags(m) & want, want);
}
