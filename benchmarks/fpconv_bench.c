/* Throughput of util/fpconv against glibc, in ns per conversion.
 *
 *   gcc -O2 -std=c11 -Ilibseldon libseldon/util/fpconv.c benchmarks/fpconv_bench.c -lm \
 *       -o /tmp/fpconv_bench && /tmp/fpconv_bench
 *
 * "random" values are uniform over finite bit patterns; "typical" values are what a model
 * emits: magnitudes 1e-3..1e3 printed with 9 (f32) or 17 (f64) significant digits. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/fpconv.h"

#define N 1000000
#define REPS 5

static uint64_t rng(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts); /* CPU time: the machine is shared */
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static float rand_f32(uint64_t *s)
{
    for (;;) {
        uint32_t u = (uint32_t)rng(s);
        float f;
        memcpy(&f, &u, 4);
        if (isfinite(f))
            return f;
    }
}

static double rand_f64(uint64_t *s)
{
    for (;;) {
        uint64_t u = rng(s);
        double d;
        memcpy(&d, &u, 8);
        if (isfinite(d))
            return d;
    }
}

/* sign * m * 10^e with m uniform in [1, 10), e uniform in [-3, 2] */
static double typical(uint64_t *s)
{
    double m = 1.0 + 9.0 * (double)(rng(s) >> 11) * 0x1p-53;
    int e = (int)(rng(s) % 6) - 3;
    double v = m * pow(10.0, e);
    return (rng(s) & 1) ? -v : v;
}

/* Strings packed back to back; off[i] .. off[i + 1] is the i-th. */
struct strs {
    char *buf;
    size_t *off;
};

static struct strs make_strs(int prec, const double *v)
{
    struct strs s = {malloc((size_t)N * 40), malloc((N + 1) * sizeof(size_t))};
    size_t o = 0;
    for (int i = 0; i < N; i++) {
        s.off[i] = o;
        o += (size_t)snprintf(s.buf + o, 40, "%.*g", prec, v[i]);
    }
    s.off[N] = o;
    return s;
}

static void report(const char *what, double t0, double t1, double sink)
{
    printf("%-44s %7.1f ns/op  (%g)\n", what, (t1 - t0) / ((double)N * REPS), sink);
}

static void bench_parse(const char *name, const struct strs *s, int f32, int glibc)
{
    double sink = 0;
    char tmp[64];
    double t0 = now_ns();
    for (int r = 0; r < REPS; r++) {
        for (int i = 0; i < N; i++) {
            const char *p = s->buf + s->off[i], *e = s->buf + s->off[i + 1], *end;
            if (glibc) {
                /* glibc needs a terminated copy; the copy is part of what a codec would pay */
                memcpy(tmp, p, (size_t)(e - p));
                tmp[e - p] = '\0';
                sink += f32 ? strtof(tmp, NULL) : strtod(tmp, NULL);
            } else if (f32) {
                float f;
                sdn_parse_f32(p, e, &end, &f);
                sink += f;
            } else {
                double d;
                sdn_parse_f64(p, e, &end, &d);
                sink += d;
            }
        }
    }
    report(name, t0, now_ns(), sink);
}

int main(void)
{
    uint64_t seed = 42;
    float *rf = malloc(N * sizeof *rf);
    double *rd = malloc(N * sizeof *rd), *tf = malloc(N * sizeof *tf), *td = malloc(N * sizeof *td);
    double *rfd = malloc(N * sizeof *rfd);
    for (int i = 0; i < N; i++) {
        rf[i] = rand_f32(&seed);
        rfd[i] = rf[i];
        rd[i] = rand_f64(&seed);
        tf[i] = (float)typical(&seed);
        td[i] = typical(&seed);
    }
    char buf[64];
    size_t sink = 0;
    double t0;

    t0 = now_ns();
    for (int r = 0; r < REPS; r++)
        for (int i = 0; i < N; i++)
            sink += sdn_fmt_f32(buf, rf[i]);
    report("sdn_fmt_f32, random finite floats", t0, now_ns(), (double)sink);
    t0 = now_ns();
    for (int r = 0; r < REPS; r++)
        for (int i = 0; i < N; i++)
            sink += sdn_fmt_f32(buf, (float)tf[i]);
    report("sdn_fmt_f32, typical floats", t0, now_ns(), (double)sink);
    t0 = now_ns();
    for (int r = 0; r < REPS; r++)
        for (int i = 0; i < N; i++)
            sink += sdn_fmt_f64(buf, rd[i]);
    report("sdn_fmt_f64, random finite doubles", t0, now_ns(), (double)sink);
    t0 = now_ns();
    for (int r = 0; r < REPS; r++)
        for (int i = 0; i < N; i++)
            sink += sdn_fmt_f64(buf, td[i]);
    report("sdn_fmt_f64, typical doubles", t0, now_ns(), (double)sink);
    t0 = now_ns();
    for (int r = 0; r < 1; r++)
        for (int i = 0; i < N; i++)
            sink += (size_t)snprintf(buf, sizeof buf, "%.9g", (double)rf[i]);
    report("glibc %.9g, random finite floats (x5 scaled)", t0 - 0, t0 + (now_ns() - t0) * REPS,
           (double)sink);
    t0 = now_ns();
    for (int i = 0; i < N; i++)
        sink += (size_t)snprintf(buf, sizeof buf, "%.17g", rd[i]);
    report("glibc %.17g, random finite doubles (x5 scaled)", t0, t0 + (now_ns() - t0) * REPS,
           (double)sink);

    struct strs sf_typ = make_strs(9, tf);
    struct strs sf_rand = make_strs(9, rfd);
    struct strs sd_typ = make_strs(17, td);
    struct strs sd_rand = make_strs(17, rd);
    struct strs sd_short = {malloc((size_t)N * 40), malloc((N + 1) * sizeof(size_t))};
    size_t o = 0;
    for (int i = 0; i < N; i++) {
        sd_short.off[i] = o;
        o += sdn_fmt_f64(sd_short.buf + o, td[i]);
    }
    sd_short.off[N] = o;

    bench_parse("sdn_parse_f32, typical %.9g", &sf_typ, 1, 0);
    bench_parse("sdn_parse_f32, random %.9g", &sf_rand, 1, 0);
    bench_parse("sdn_parse_f64, typical %.17g", &sd_typ, 0, 0);
    bench_parse("sdn_parse_f64, typical shortest", &sd_short, 0, 0);
    bench_parse("sdn_parse_f64, random %.17g", &sd_rand, 0, 0);
    bench_parse("glibc strtof, typical %.9g", &sf_typ, 1, 1);
    bench_parse("glibc strtod, typical %.17g", &sd_typ, 0, 1);
    return 0;
}
