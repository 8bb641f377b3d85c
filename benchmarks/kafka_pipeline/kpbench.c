/*
 * kpbench: a Kafka round-trip driver for benchmarks/kafka_pipeline (run.py).
 * Produces records keyed "<partition>.<resource>.<n>" to --in and waits for the
 * record of the same key on --out (every partition assigned, from its end),
 * keeping --concurrency records in flight. With --in equal to --out it
 * measures one produce-to-consume hop; with a pipeline's inputs and outputs
 * topics, the pipeline end to end. Prints one line: count, p50, p99 (ms) and
 * throughput (records/s). Figures only; nothing here is asserted.
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void usage(void)
{
    fprintf(stderr, "usage: kpbench --broker B --in TOPIC --out TOPIC --resource R "
                    "--value-file F [--partitions K] [--concurrency C] [--requests N] "
                    "[--seconds S] [--warmup N]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *fetch_wait = "500";
    const char *broker = NULL, *in = NULL, *out = NULL, *res = NULL, *vfile = NULL;
    int partitions = 4, conc = 1, warm = 20, i;
    long requests = 200;
    double seconds = 0;
    char err[512], key[256];
    rd_kafka_conf_t *pc, *cc;
    rd_kafka_t *prod, *cons;
    rd_kafka_topic_partition_list_t *tl;
    unsigned char *value;
    size_t vlen;
    FILE *f;
    int64_t *sent, *lat, t0, t_end;
    long next = 0, done = 0, cap, measured_from;
    for (i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--broker"))
            broker = argv[i + 1];
        else if (!strcmp(argv[i], "--in"))
            in = argv[i + 1];
        else if (!strcmp(argv[i], "--out"))
            out = argv[i + 1];
        else if (!strcmp(argv[i], "--resource"))
            res = argv[i + 1];
        else if (!strcmp(argv[i], "--value-file"))
            vfile = argv[i + 1];
        else if (!strcmp(argv[i], "--partitions"))
            partitions = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--concurrency"))
            conc = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--requests"))
            requests = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds"))
            seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--warmup"))
            warm = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--fetch-wait"))
            fetch_wait = argv[i + 1];
        else
            usage();
    }
    if (!broker || !in || !out || !res || !vfile || partitions < 1 || conc < 1)
        usage();
    f = fopen(vfile, "rb");
    if (f == NULL) {
        perror(vfile);
        return 1;
    }
    value = malloc(1 << 20);
    vlen = fread(value, 1, 1 << 20, f);
    fclose(f);

    pc = rd_kafka_conf_new();
    rd_kafka_conf_set(pc, "bootstrap.servers", broker, err, sizeof(err));
    rd_kafka_conf_set(pc, "linger.ms", "0", err, sizeof(err));
    rd_kafka_conf_set(pc, "enable.idempotence", "true", err, sizeof(err));
    prod = rd_kafka_new(RD_KAFKA_PRODUCER, pc, err, sizeof(err));
    cc = rd_kafka_conf_new();
    rd_kafka_conf_set(cc, "bootstrap.servers", broker, err, sizeof(err));
    rd_kafka_conf_set(cc, "group.id", "kpbench", err, sizeof(err));
    rd_kafka_conf_set(cc, "enable.auto.commit", "false", err, sizeof(err));
    rd_kafka_conf_set(cc, "fetch.wait.max.ms", fetch_wait, err, sizeof(err));
    cons = rd_kafka_new(RD_KAFKA_CONSUMER, cc, err, sizeof(err));
    if (prod == NULL || cons == NULL) {
        fprintf(stderr, "kpbench: %s\n", err);
        return 1;
    }
    rd_kafka_poll_set_consumer(cons);
    tl = rd_kafka_topic_partition_list_new(partitions);
    for (i = 0; i < partitions; i++)
        rd_kafka_topic_partition_list_add(tl, out, i)->offset = RD_KAFKA_OFFSET_END;
    rd_kafka_assign(cons, tl);
    rd_kafka_topic_partition_list_destroy(tl);

    cap = (seconds > 0 ? 10000000 : requests) + warm + conc + 1;
    sent = calloc((size_t)cap, sizeof(int64_t));
    lat = calloc((size_t)cap, sizeof(int64_t));
    t0 = now_ns();
    t_end = seconds > 0 ? 0 : INT64_MAX;
    measured_from = warm;
    /* The first record may wait for the consumer's position: it is the warm-up's. */
    for (;;) {
        rd_kafka_message_t *m;
        while (next - done < conc && next < cap - 1 &&
               (seconds > 0 ? (t_end == 0 || now_ns() < t_end) : next < requests + warm)) {
            int kl = snprintf(key, sizeof(key), "%ld.%s.%ld", next % partitions, res, next);
            sent[next] = now_ns();
            if (rd_kafka_producev(prod, RD_KAFKA_V_TOPIC(in),
                                  RD_KAFKA_V_PARTITION(next % partitions),
                                  RD_KAFKA_V_KEY(key, (size_t)kl), RD_KAFKA_V_VALUE(value, vlen),
                                  RD_KAFKA_V_HEADER("pipeline", res, -1),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END) != 0) {
                rd_kafka_poll(prod, 10);
                break;
            }
            next++;
        }
        rd_kafka_poll(prod, 0);
        m = rd_kafka_consumer_poll(cons, 5);
        if (m != NULL) {
            if (!m->err && m->key != NULL) {
                const char *k = m->key, *dot = NULL;
                size_t j;
                for (j = 0; j < m->key_len; j++)
                    if (k[j] == '.')
                        dot = k + j;
                if (dot != NULL) {
                    long id = strtol(dot + 1, NULL, 10);
                    if (id >= 0 && id < next && lat[id] == 0) {
                        lat[id] = now_ns() - sent[id];
                        done++;
                        if (done == warm && seconds > 0) {
                            t0 = now_ns();
                            t_end = t0 + (int64_t)(seconds * 1e9);
                            measured_from = next;
                        }
                        if (done == warm && seconds == 0)
                            t0 = now_ns();
                    }
                }
            }
            rd_kafka_message_destroy(m);
        }
        if (seconds > 0 && t_end != 0 && now_ns() >= t_end + 2000000000LL)
            break; /* stragglers get 2 s */
        if (seconds > 0 && t_end != 0 && now_ns() >= t_end && done == next)
            break;
        if (seconds == 0 && done == requests + warm)
            break;
    }
    {
        double el = (double)(now_ns() - t0) / 1e9;
        long n = 0, got = 0;
        int64_t *v = calloc((size_t)cap, sizeof(int64_t));
        for (i = 0; i < next; i++)
            if (i >= measured_from && lat[i] != 0)
                v[n++] = lat[i];
        got = n;
        qsort(v, (size_t)n, sizeof(int64_t), cmp_i64);
        if (seconds > 0)
            el = seconds;
        printf("count=%ld p50_ms=%.3f p99_ms=%.3f per_s=%.1f\n", got,
               n ? (double)v[n / 2] / 1e6 : 0.0, n ? (double)v[(n * 99) / 100] / 1e6 : 0.0,
               el > 0 ? (double)got / el : 0.0);
        free(v);
    }
    rd_kafka_consumer_close(cons);
    rd_kafka_destroy(cons);
    rd_kafka_flush(prod, 2000);
    rd_kafka_destroy(prod);
    free(sent);
    free(lat);
    free(value);
    return 0;
}
