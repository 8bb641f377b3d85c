/*
 * bench_server_bodies: the request bodies of the seldon-server benchmark,
 * made with libseldon's own encoders, and the codec's share of a request.
 *
 *   bench_server_bodies json N FILE
 *       a REST JSON ModelInfer body: one FP32 tensor "input-0" of shape
 *       [1, N], values as a model sees them (full float precision).
 *   bench_server_bodies grpc N FILE
 *       the same tensor as a gRPC ModelInferRequest for model "identity",
 *       data in raw_input_contents (4 N bytes), framed for HTTP/2 as gRPC
 *       sends it: 0x00, the 4-byte big-endian length, the message.
 *   bench_server_bodies codec REQUEST.json RESPONSE.json [--seconds S]
 *       times seldon_msg_decode_json of the request body plus
 *       seldon_msg_encode_json of the response (decoded once from the
 *       response body the server really sent), the codec work the server
 *       does per REST inference. Prints
 *           decode_ns=D encode_ns=E total_ns=D+E
 *       each the best of three rounds of S seconds / 3 (default S = 0.6).
 *
 * Values come from a fixed-seed generator, so every run sends the same bytes.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <seldon/seldon.h>

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_server_bodies: %s: %s (%s)\n", what, seldon_strerror(rc),
            seldon_last_error());
    exit(1);
}

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

static float random_float(void)
{
    static const double scales[4] = {1.0, 1e-3, 100.0, 1.0};
    double u = (double)(rng() >> 11) / 9007199254740992.0;
    return (float)((u * 2.0 - 1.0) * scales[rng() & 3]);
}

static void write_file(const char *path, const void *a, size_t alen, const void *b, size_t blen)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(a, 1, alen, f) != alen || (blen && fwrite(b, 1, blen, f) != blen) ||
        fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;
    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
        fseek(f, 0, SEEK_SET) != 0) {
        perror(path);
        exit(1);
    }
    buf = malloc((size_t)n + 1);
    if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        perror(path);
        exit(1);
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* A request with one FP32 [1, n] tensor named input-0. */
static seldon_msg *make_request(size_t n, int with_model)
{
    const int64_t shape[2] = {1, (int64_t)n};
    float *v = malloc(n * sizeof(float) + 1);
    seldon_msg *m = NULL;
    size_t i;
    int rc;
    for (i = 0; i < n; i++)
        v[i] = random_float();
    rc = seldon_msg_new(&m, SELDON_MSG_REQUEST);
    if (rc == 0 && with_model)
        rc = seldon_msg_set_model(m, "identity", 8, "", 0);
    if (rc == 0)
        rc = seldon_msg_add_tensor(NULL, m, "input-0", 7, SELDON_DT_FP32, shape, 2, v,
                                   n * sizeof(float), SELDON_TENSOR_COPY);
    if (rc != 0)
        die("request", rc);
    free(v);
    return m;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct codec_case {
    const char *req;
    size_t req_len;
    seldon_msg *in;
    seldon_msg *out;
    seldon_buf buf;
} codec_case;

static void decode_once(codec_case *c)
{
    int rc = seldon_msg_decode_json(c->in, c->req, c->req_len, 0, 0);
    if (rc != 0)
        die("decode_json", rc);
}

static void encode_once(codec_case *c)
{
    int rc;
    c->buf.len = 0;
    rc = seldon_msg_encode_json(&c->buf, NULL, c->out, 0);
    if (rc != 0)
        die("encode_json", rc);
}

/* Best of three rounds; seconds per call. */
static double time_it(void (*fn)(codec_case *), codec_case *c, double seconds)
{
    double best = 1e30;
    int round;
    for (round = 0; round < 3; round++) {
        long iters = 0;
        double start = now_s(), elapsed;
        do {
            fn(c);
            iters++;
            elapsed = now_s() - start;
        } while (elapsed < seconds / 3 || iters < 3);
        if (elapsed / (double)iters < best)
            best = elapsed / (double)iters;
    }
    return best;
}

static int codec(const char *req_path, const char *resp_path, double seconds)
{
    codec_case c;
    size_t resp_len;
    char *resp;
    double d, e;
    int rc;

    memset(&c, 0, sizeof(c));
    c.req = read_file(req_path, &c.req_len);
    resp = read_file(resp_path, &resp_len);
    rc = seldon_msg_new(&c.in, SELDON_MSG_REQUEST);
    if (rc == 0)
        rc = seldon_msg_new(&c.out, SELDON_MSG_RESPONSE);
    if (rc == 0)
        rc = seldon_msg_decode_json(c.out, resp, resp_len, 0, 0);
    if (rc != 0)
        die("response body", rc);
    /* The response must re-encode to the bytes the server sent, or we time something else. */
    encode_once(&c);
    if (c.buf.len != resp_len || memcmp(c.buf.data, resp, resp_len) != 0)
        fprintf(stderr,
                "bench_server_bodies: note: re-encoded response differs from the server's "
                "(%zu vs %zu bytes)\n",
                c.buf.len, resp_len);
    d = time_it(decode_once, &c, seconds);
    e = time_it(encode_once, &c, seconds);
    printf("decode_ns=%.0f encode_ns=%.0f total_ns=%.0f\n", d * 1e9, e * 1e9, (d + e) * 1e9);
    seldon_msg_free(c.in);
    seldon_msg_free(c.out);
    seldon_buf_free(&c.buf);
    free(resp);
    free((char *)c.req);
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_server_bodies json N FILE\n"
               "       bench_server_bodies grpc N FILE\n"
               "       bench_server_bodies codec REQUEST.json RESPONSE.json [--seconds S]\n");
}

int main(int argc, char **argv)
{
    seldon_buf buf = SELDON_BUF_INIT;
    seldon_msg *m;
    long n;
    int rc;

    if (argc >= 4 && strcmp(argv[1], "codec") == 0) {
        double seconds = 0.6;
        if (argc == 6 && strcmp(argv[4], "--seconds") == 0)
            seconds = atof(argv[5]);
        else if (argc != 4) {
            usage(stderr);
            return 2;
        }
        return codec(argv[2], argv[3], seconds > 0 ? seconds : 0.6);
    }
    if (argc != 4 || (strcmp(argv[1], "json") != 0 && strcmp(argv[1], "grpc") != 0)) {
        usage(argc == 2 && strcmp(argv[1], "--help") == 0 ? stdout : stderr);
        return argc == 2 && strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
    n = atol(argv[2]);
    if (n < 1 || n > 100000000) {
        fprintf(stderr, "bench_server_bodies: bad element count '%s'\n", argv[2]);
        return 2;
    }
    if (strcmp(argv[1], "json") == 0) {
        m = make_request((size_t)n, 0);
        rc = seldon_msg_encode_json(&buf, NULL, m, 0);
        if (rc != 0)
            die("encode_json", rc);
        write_file(argv[3], buf.data, buf.len, NULL, 0);
    } else {
        unsigned char frame[5];
        m = make_request((size_t)n, 1);
        rc = seldon_msg_encode_pb(&buf, m, 0);
        if (rc != 0)
            die("encode_pb", rc);
        frame[0] = 0; /* not compressed */
        frame[1] = (unsigned char)(buf.len >> 24);
        frame[2] = (unsigned char)(buf.len >> 16);
        frame[3] = (unsigned char)(buf.len >> 8);
        frame[4] = (unsigned char)buf.len;
        write_file(argv[3], frame, 5, buf.data, buf.len);
    }
    seldon_msg_free(m);
    seldon_buf_free(&buf);
    return 0;
}
