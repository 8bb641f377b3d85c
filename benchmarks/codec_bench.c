/*
 * The Open Inference Protocol codec benchmark: decode and encode of one FP32
 * tensor of 16, 1,000 and 100,000 elements, in REST JSON and in protobuf, in
 * ns per element, side by side with peers measured in the same run:
 *   - JSON decode: jansson parses the same body into its DOM, and the values
 *     are copied into a typed float buffer;
 *   - JSON encode: glibc's snprintf("%.9g") per element, the usual way to
 *     print a float that reads back exactly;
 *   - protobuf: memcpy of the same tensor bytes, the floor for any decoder.
 *
 *   bench_codec [--smoke] [--seconds S]
 *   bench_codec --instr CASE [--iters N]
 *
 * --smoke runs each case a few times only: a check that the harness works,
 * not a measurement.
 *
 * --instr runs one codec call N times (default 10,000) inside instr_loop() and
 * nothing else, for instruction counts on a loaded machine, where timings say
 * little:
 *   valgrind --tool=callgrind --toggle-collect=instr_loop bench_codec --instr pb-decode
 * gives Ir per call as the total divided by N. The bodies are the small ones
 * of benchmarks/pipeline_up and benchmarks/server (one FP32 [1,16] tensor;
 * JSON data as integers, protobuf data in raw_input_contents); the "rich"
 * cases add an id, parameters at every level, a second input and a requested
 * output, so every path-bearing field of the decoders is crossed. Encode cases
 * write the identity model's response: model name and version, id, the
 * tensor(s) as outputs.
 */
#define _POSIX_C_SOURCE 200809L
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <seldon/seldon.h>

static double min_seconds = 0.4;
static int smoke;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_codec: %s: %s (%s)\n", what, seldon_strerror(rc), seldon_last_error());
    exit(1);
}

/* A deterministic PRNG so every run measures the same bodies. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

/* Values as a model emits them: mostly O(1) with full float precision, some scaled. */
static float random_float(void)
{
    double u = (double)(rng() >> 11) / 9007199254740992.0;
    static const double scales[4] = {1.0, 1e-3, 100.0, 1.0};
    return (float)((u * 2.0 - 1.0) * scales[rng() & 3]);
}

typedef void (*bench_fn)(void *ctx);

/* Runs fn until min_seconds have passed (at least 3 times); returns seconds per call. */
static double time_it(bench_fn fn, void *ctx)
{
    double best = 1e30;
    int round;
    for (round = 0; round < (smoke ? 1 : 3); round++) {
        long iters = 0;
        double start = now_s(), elapsed;
        do {
            fn(ctx);
            iters++;
            elapsed = now_s() - start;
        } while (!smoke ? (elapsed < min_seconds / 3 || iters < 3) : iters < 2);
        if (elapsed / (double)iters < best)
            best = elapsed / (double)iters;
    }
    return best;
}

typedef struct bench_case {
    size_t n;
    float *values;
    seldon_buf json;
    seldon_buf pb;
    seldon_buf out;
    seldon_msg *msg;
    float *typed;  /* the peer's typed output buffer */
    char *scratch; /* snprintf peer output */
    volatile double sink;
} bench_case;

static void ours_json_decode(void *p)
{
    bench_case *c = p;
    int rc = seldon_msg_decode_json(c->msg, c->json.data, c->json.len, 0, 0);
    if (rc != 0)
        die("decode_json", rc);
}

static void jansson_json_decode(void *p)
{
    bench_case *c = p;
    json_error_t err;
    json_t *root = json_loadb((const char *)c->json.data, c->json.len, 0, &err);
    json_t *input, *data;
    size_t i, n;
    if (root == NULL) {
        fprintf(stderr, "jansson: %s\n", err.text);
        exit(1);
    }
    /* What a server must do at the least: find the tensor, check it, and fill a typed buffer. */
    input = json_array_get(json_object_get(root, "inputs"), 0);
    if (strcmp(json_string_value(json_object_get(input, "datatype")), "FP32") != 0)
        exit(1);
    data = json_object_get(input, "data");
    n = json_array_size(data);
    for (i = 0; i < n; i++)
        c->typed[i] = (float)json_number_value(json_array_get(data, i));
    c->sink = c->typed[n - 1];
    json_decref(root);
}

static void ours_json_encode(void *p)
{
    bench_case *c = p;
    int rc;
    c->out.len = 0;
    rc = seldon_msg_encode_json(&c->out, NULL, c->msg, 0);
    if (rc != 0)
        die("encode_json", rc);
}

static void snprintf_encode(void *p)
{
    bench_case *c = p;
    char *o = c->scratch;
    size_t i;
    for (i = 0; i < c->n; i++) {
        o += snprintf(o, 24, "%.9g", (double)c->values[i]);
        *o++ = ',';
    }
    c->sink = (double)(o - c->scratch);
}

static void ours_pb_decode(void *p)
{
    bench_case *c = p;
    int rc = seldon_msg_decode_pb(c->msg, c->pb.data, c->pb.len, 0);
    if (rc != 0)
        die("decode_pb", rc);
}

static void ours_pb_encode(void *p)
{
    bench_case *c = p;
    int rc;
    c->out.len = 0;
    rc = seldon_msg_encode_pb(&c->out, c->msg, 0);
    if (rc != 0)
        die("encode_pb", rc);
}

static void memcpy_peer(void *p)
{
    bench_case *c = p;
    memcpy(c->typed, c->values, c->n * sizeof(float));
    c->sink = c->typed[c->n / 2];
}

static void setup(bench_case *c, size_t n)
{
    const int64_t shape[2] = {1, (int64_t)n};
    seldon_msg *m = NULL;
    int rc;
    size_t i;

    memset(c, 0, sizeof(*c));
    c->n = n;
    c->values = malloc(n * sizeof(float));
    c->typed = malloc(n * sizeof(float));
    c->scratch = malloc(n * 26 + 16);
    for (i = 0; i < n; i++)
        c->values[i] = random_float();
    rc = seldon_msg_new(&m, SELDON_MSG_REQUEST);
    if (rc == 0)
        rc = seldon_msg_add_tensor(NULL, m, "input-0", 7, SELDON_DT_FP32, shape, 2, c->values,
                                   n * sizeof(float), SELDON_TENSOR_COPY);
    if (rc == 0)
        rc = seldon_msg_encode_json(&c->json, NULL, m, 0);
    if (rc == 0)
        rc = seldon_msg_encode_pb(&c->pb, m, 0);
    if (rc != 0)
        die("setup", rc);
    seldon_msg_free(m);
    rc = seldon_msg_new(&c->msg, SELDON_MSG_REQUEST);
    if (rc != 0)
        die("msg_new", rc);
}

/* The benchmark also proves what it measures is right: the JSON reads back bit-exactly. */
static void check_exact(bench_case *c)
{
    seldon_tensor t;
    int rc = seldon_msg_decode_json(c->msg, c->json.data, c->json.len, 0, 0);
    if (rc == 0)
        rc = seldon_msg_tensor(&t, c->msg, 0);
    if (rc != 0)
        die("check", rc);
    if (t.nbytes != c->n * sizeof(float) || memcmp(t.data, c->values, t.nbytes) != 0) {
        fprintf(stderr, "bench_codec: JSON round trip is not exact for n=%zu\n", c->n);
        exit(1);
    }
}

static void teardown(bench_case *c)
{
    free(c->values);
    free(c->typed);
    free(c->scratch);
    seldon_buf_free(&c->json);
    seldon_buf_free(&c->pb);
    seldon_buf_free(&c->out);
    seldon_msg_free(c->msg);
}

/* --- Instruction counts ------------------------------------------------ */

typedef struct instr_case {
    seldon_buf body; /* what a decode case decodes */
    seldon_msg *msg; /* decode target; for encode cases, the response */
    seldon_buf out;
    int op; /* 0 pb decode, 1 pb encode, 2 JSON decode, 3 JSON encode */
} instr_case;

/* Only this function is counted (callgrind --toggle-collect=instr_loop); kept out of line. */
__attribute__((noinline)) void instr_loop(instr_case *ic, long iters);
__attribute__((noinline)) void instr_loop(instr_case *ic, long iters)
{
    long k;
    int rc = 0;
    for (k = 0; k < iters && rc == 0; k++) {
        switch (ic->op) {
        case 0:
            rc = seldon_msg_decode_pb(ic->msg, ic->body.data, ic->body.len, 0);
            break;
        case 1:
            ic->out.len = 0;
            rc = seldon_msg_encode_pb(&ic->out, ic->msg, 0);
            break;
        case 2:
            rc = seldon_msg_decode_json(ic->msg, ic->body.data, ic->body.len, 0, 0);
            break;
        default:
            ic->out.len = 0;
            rc = seldon_msg_encode_json(&ic->out, NULL, ic->msg, 0);
            break;
        }
    }
    if (rc != 0)
        die("instr_loop", rc);
}

static void add_str_param(seldon_msg *m, int32_t scope, size_t index, const char *name,
                          const char *value)
{
    seldon_param p;
    int rc;
    memset(&p, 0, sizeof(p));
    p.name = name;
    p.name_len = strlen(name);
    p.type = SELDON_PARAM_STRING;
    p.string_value = value;
    p.string_len = strlen(value);
    rc = seldon_msg_add_param(m, scope, index, &p);
    if (rc != 0)
        die("add_param", rc);
}

/* The request (kind REQUEST) or the identity model's response (kind RESPONSE) of a case. */
static seldon_msg *instr_msg(int32_t kind, int rich)
{
    static const int64_t shape[2] = {1, 16};
    float values[16];
    seldon_msg *m = NULL;
    int rc, i;
    for (i = 0; i < 16; i++)
        values[i] = (float)i;
    rc = seldon_msg_new(&m, kind);
    if (rc == 0 && kind == SELDON_MSG_RESPONSE)
        rc = seldon_msg_set_model(m, "ida", 3, "1", 1);
    if (rc == 0 && (rich || kind == SELDON_MSG_RESPONSE))
        rc = seldon_msg_set_id(m, "2f1c9e0a-5b7d-4e8f-9a6b-3c2d1e0f4a5b", 36);
    if (rc == 0)
        rc = seldon_msg_add_tensor(NULL, m, "INPUT", 5, SELDON_DT_FP32, shape, 2, values,
                                   sizeof(values), SELDON_TENSOR_COPY);
    if (rc == 0 && rich)
        rc = seldon_msg_add_tensor(NULL, m, "MASK", 4, SELDON_DT_FP32, shape, 2, values,
                                   sizeof(values), SELDON_TENSOR_COPY);
    if (rc == 0 && rich && kind == SELDON_MSG_REQUEST)
        rc = seldon_msg_add_output(NULL, m, "OUTPUT", 6);
    if (rc != 0)
        die("instr_msg", rc);
    if (rich) {
        add_str_param(m, SELDON_SCOPE_MSG, 0, "content_type", "np");
        add_str_param(m, SELDON_SCOPE_TENSOR, 0, "content_type", "np");
        add_str_param(m, SELDON_SCOPE_TENSOR, 1, "content_type", "np");
        if (kind == SELDON_MSG_REQUEST)
            add_str_param(m, SELDON_SCOPE_OUTPUT, 0, "content_type", "np");
    }
    return m;
}

static int run_instr(const char *name, long iters)
{
    static const char *const names[] = {"pb-decode",        "pb-encode",       "json-decode",
                                        "json-encode",      "pb-decode-rich",  "pb-encode-rich",
                                        "json-decode-rich", "json-encode-rich"};
    static const char small_json[] =
        "{\"inputs\": [{\"name\": \"INPUT\", \"datatype\": \"FP32\", \"shape\": [1, 16], "
        "\"data\": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]}]}";
    instr_case ic;
    int c, rich, rc = 0;
    seldon_msg *src;

    for (c = 0; c < 8; c++)
        if (strcmp(name, names[c]) == 0)
            break;
    if (c == 8) {
        fprintf(stderr, "bench_codec: unknown --instr case %s\n", name);
        return 2;
    }
    memset(&ic, 0, sizeof(ic));
    ic.op = c % 4;
    rich = c >= 4;
    if (ic.op == 1 || ic.op == 3) {
        ic.msg = instr_msg(SELDON_MSG_RESPONSE, rich);
    } else {
        src = instr_msg(SELDON_MSG_REQUEST, rich);
        if (ic.op == 0)
            rc = seldon_msg_encode_pb(&ic.body, src, 0);
        else if (rich)
            rc = seldon_msg_encode_json(&ic.body, NULL, src, 0);
        else
            rc = seldon_buf_reserve(&ic.body, sizeof(small_json));
        if (rc == 0 && ic.op == 2 && !rich) {
            memcpy(ic.body.data, small_json, sizeof(small_json) - 1);
            ic.body.len = sizeof(small_json) - 1;
        }
        seldon_msg_free(src);
        if (rc == 0)
            rc = seldon_msg_new(&ic.msg, SELDON_MSG_REQUEST);
        if (rc != 0)
            die("instr body", rc);
    }
    instr_loop(&ic, 1); /* first use: the arena grows to its working size outside the count */
    instr_loop(&ic, iters);
    printf("bench_codec --instr %s: %ld calls (%zu-byte %s)\n", name, iters,
           ic.op == 0 || ic.op == 2 ? ic.body.len : ic.out.len,
           ic.op == 0 || ic.op == 2 ? "body" : "output");
    seldon_buf_free(&ic.body);
    seldon_buf_free(&ic.out);
    seldon_msg_free(ic.msg);
    return 0;
}

int main(int argc, char **argv)
{
    static const size_t sizes[3] = {16, 1000, 100000};
    const char *instr = NULL;
    long iters = 10000;
    int i;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--smoke") == 0) {
            smoke = 1;
        } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            min_seconds = atof(argv[++i]);
        } else if (strcmp(argv[i], "--instr") == 0 && i + 1 < argc) {
            instr = argv[++i];
        } else if (strcmp(argv[i], "--iters") == 0 && i + 1 < argc) {
            iters = atol(argv[++i]);
        } else if (strcmp(argv[i], "--help") == 0) {
            printf("usage: bench_codec [--smoke] [--seconds S]\n"
                   "       bench_codec --instr CASE [--iters N]   (CASE: pb-decode, pb-encode,\n"
                   "         json-decode, json-encode, and each with -rich; run under\n"
                   "         valgrind --tool=callgrind --toggle-collect=instr_loop)\n");
            return 0;
        } else {
            fprintf(stderr,
                    "usage: bench_codec [--smoke] [--seconds S] | --instr CASE [--iters N]\n");
            return 2;
        }
    }
    if (instr != NULL)
        return run_instr(instr, iters > 0 ? iters : 1);

    printf("libseldon %s codec benchmark: one FP32 tensor, ns per element (lower is better)\n",
           seldon_version());
    printf("%-9s %-22s %10s %10s %12s %9s\n", "elements", "case", "ours", "peer", "peer is",
           "ratio");
    for (i = 0; i < 3; i++) {
        bench_case c;
        double n, ours, peer;
        setup(&c, sizes[i]);
        n = (double)c.n;
        check_exact(&c);

        ours = time_it(ours_json_decode, &c) * 1e9 / n;
        peer = time_it(jansson_json_decode, &c) * 1e9 / n;
        printf("%-9zu %-22s %10.1f %10.1f %12s %8.2fx\n", c.n, "JSON decode", ours, peer, "jansson",
               peer / ours);

        /* Encode from the decoded message, as a server answers after decoding. */
        ours_json_decode(&c);
        ours = time_it(ours_json_encode, &c) * 1e9 / n;
        peer = time_it(snprintf_encode, &c) * 1e9 / n;
        printf("%-9zu %-22s %10.1f %10.1f %12s %8.2fx\n", c.n, "JSON encode", ours, peer, "%.9g",
               peer / ours);

        ours = time_it(ours_pb_decode, &c) * 1e9 / n;
        peer = time_it(memcpy_peer, &c) * 1e9 / n;
        printf("%-9zu %-22s %10.2f %10.2f %12s %8.2fx   %.2f GB/s\n", c.n, "protobuf raw decode",
               ours, peer, "memcpy", peer / ours, 4.0 / ours);
        ours = time_it(ours_pb_encode, &c) * 1e9 / n;
        printf("%-9zu %-22s %10.2f %10.2f %12s %8.2fx   %.2f GB/s\n", c.n, "protobuf raw encode",
               ours, peer, "memcpy", peer / ours, 4.0 / ours);
        printf("%-9zu %-22s %10zu bytes JSON, %zu bytes protobuf\n", c.n, "body size", c.json.len,
               c.pb.len);
        teardown(&c);
    }
    if (smoke)
        printf("bench_codec: smoke run complete (figures not meaningful)\n");
    return 0;
}
