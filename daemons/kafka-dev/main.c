/*
 * seldon-kafka-dev: a development Kafka broker, librdkafka's mock cluster
 * (rdkafka_mock.h) run as a process of its own, for tests and for trying
 * pipelines on one machine. It speaks enough of the Kafka protocol for
 * producers, consumers, consumer groups, offset commits and idempotent
 * producers; it keeps everything in memory. Its limits are in docs/kafka-dev.md:
 * production points the daemons at a real Kafka cluster (--kafka-broker).
 *
 * --port fixes the listeners' ports, so that clients reconnect to a restarted
 * broker. The mock cluster always binds 127.0.0.1 port 0 and has no option to
 * choose; this executable defines bind() itself (exported to librdkafka, see
 * CMakeLists.txt), and while the cluster is created on the main thread, a bind of
 * an IPv4 address to port 0 gets the next fixed port instead. Every other bind,
 * on any thread, passes through unchanged.
 */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <syslog.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "flags.h"
#include "log.h"
#include "sdd.h"
#include "seldon/kafka.h"

#define MAX_TOPICS 256

typedef struct topic_spec {
    const char *name; /* argv's; up to the colon */
    size_t name_len;
    int partitions; /* 0: --partitions */
} topic_spec;

static struct {
    int port;
    int brokers;
    int partitions;
    int32_t log_level;
    topic_spec topics[MAX_TOPICS];
    int ntopics;
} cfg;

/* ------------------------------------------------------------ fixed ports */

static _Thread_local int fixed_next; /* the port the next listener gets; 0: off */

int bind(int fd, __CONST_SOCKADDR_ARG addr, socklen_t len)
{
    static __typeof__(bind) *real;
    __typeof__(bind) *fn = __atomic_load_n(&real, __ATOMIC_ACQUIRE);
#ifdef __USE_GNU
    const struct sockaddr *sa = addr.__sockaddr__;
#else
    const struct sockaddr *sa = addr;
#endif
    if (fn == NULL) {
        fn = (__typeof__(bind) *)dlsym(RTLD_NEXT, "bind");
        __atomic_store_n(&real, fn, __ATOMIC_RELEASE);
    }
    if (fixed_next > 0 && sa != NULL && sa->sa_family == AF_INET &&
        len >= (socklen_t)sizeof(struct sockaddr_in) &&
        ((const struct sockaddr_in *)sa)->sin_port == 0) {
        struct sockaddr_in in;
        int one = 1;
        memcpy(&in, sa, sizeof(in));
        in.sin_port = htons((uint16_t)fixed_next++);
        /* A restart binds again while the last run's connections linger in TIME_WAIT. */
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        return fn(fd, (const struct sockaddr *)&in, (socklen_t)sizeof(in));
    }
    return fn(fd, addr, len);
}

/*
 * Whether ports [first, first+n) can be bound on 127.0.0.1 now. librdkafka 2.0.2
 * aborts (an assertion in rd_kafka_mock_cluster_destroy) when a listener cannot
 * bind, so a port in use is caught here first.
 */
static int ports_free(int first, int n, int *busy)
{
    int i;
    for (i = 0; i < n; i++) {
        struct sockaddr_in in;
        int one = 1, rc, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return 0;
        memset(&in, 0, sizeof(in));
        in.sin_family = AF_INET;
        in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        in.sin_port = htons((uint16_t)(first + i));
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        rc = bind(fd, (const struct sockaddr *)&in, (socklen_t)sizeof(in));
        close(fd);
        if (rc != 0) {
            *busy = first + i;
            return 0;
        }
    }
    return 1;
}

/* ------------------------------------------------------------ flags */

static int topic_flag(void *dest, const char *value)
{
    const char *colon = strrchr(value, ':');
    topic_spec *t;
    long n = 0;
    (void)dest;
    if (cfg.ntopics == MAX_TOPICS)
        return -1;
    t = &cfg.topics[cfg.ntopics];
    t->name = value;
    t->name_len = colon != NULL ? (size_t)(colon - value) : strlen(value);
    if (colon != NULL && sdd_parse_long(colon + 1, 1, 10000, &n) != 0)
        return -1;
    if (!seldon_kafka_name_ok(t->name, t->name_len))
        return -1;
    t->partitions = (int)n;
    cfg.ntopics++;
    return 0;
}

static const sdf_program program = {
    "seldon-kafka-dev",
    "usage: seldon-kafka-dev [options]\n"
    "\n"
    "A development Kafka broker: librdkafka's mock cluster in a process of its own,\n"
    "on 127.0.0.1, everything in memory. For tests and for trying pipelines on one\n"
    "machine; production points the daemons at a real Kafka cluster\n"
    "(--kafka-broker). Topics are created when first used (Metadata or Produce);\n"
    "the admin API (CreateTopics) is not served: use --topic.\n",
    "Prints 'bootstrap=127.0.0.1:PORT brokers=N' on stdout once serving.\n"
    "SIGTERM and SIGINT stop it (exit 0); what it held is gone. Limits: see\n"
    "docs/kafka-dev.md.\n",
    26,
};

static int parse_args(int argc, char **argv)
{
    const sdf_flag flags[] = {
        SDF_FLAG("port", SDF_INT, &cfg.port, 0, 65535, "N",
                 "the first broker's port; broker i listens on N+i-1\n"
                 "(default 9092; 0 picks free ports, which change\n"
                 "with every start)"),
        SDF_FLAG("brokers", SDF_INT, &cfg.brokers, 1, 16, "N",
                 "brokers in the cluster (default 1)"),
        SDF_FLAG("partitions", SDF_INT, &cfg.partitions, 1, 10000, "N",
                 "partitions of a --topic given without a count\n"
                 "(default 4, as the mock cluster gives topics it\n"
                 "creates on first use)"),
        SDF_CHECK("topic", NULL, topic_flag, "NAME or NAME:PARTITIONS, NAME of A-Z a-z 0-9 . _ -",
                  "NAME[:P]",
                  "create this topic at start, with P partitions\n"
                  "(repeatable; at most 256)"),
        SDF_FLAG("log-level", SDF_LOG, &cfg.log_level, 0, 0, "LEVEL",
                 "error, warn, info (default), debug, trace"),
    };
    cfg.port = 9092;
    cfg.brokers = 1;
    cfg.partitions = 4;
    cfg.log_level = SELDON_LOG_INFO;
    return sdf_parse(&program, flags, sizeof(flags) / sizeof(flags[0]), argc, argv);
}

/* librdkafka's log lines, at our levels. */
static void rk_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    int32_t l = level <= LOG_ERR       ? SELDON_LOG_ERROR
                : level <= LOG_WARNING ? SELDON_LOG_WARN
                : level <= LOG_INFO    ? SELDON_LOG_INFO
                                       : SELDON_LOG_DEBUG;
    (void)rk;
    if (strcmp(fac, "CONFWARN") == 0) /* the handle that hosts the cluster connects nowhere */
        l = SELDON_LOG_DEBUG;
    sdd_log(l, "librdkafka %s: %s", fac, buf);
}

int main(int argc, char **argv)
{
    rd_kafka_conf_t *conf;
    rd_kafka_t *rk = NULL;
    rd_kafka_mock_cluster_t *mc = NULL;
    sigset_t sigs;
    char err[512];
    int sig, i, busy = 0;

    if (parse_args(argc, argv) < 0)
        return 2;
    sdd_log_init("seldon-kafka-dev", cfg.log_level);
    /* Before librdkafka starts its threads: they inherit the mask, the main thread waits. */
    sdf_signals_block(&sigs, 0);

    conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, rk_log);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (rk == NULL) {
        rd_kafka_conf_destroy(conf);
        sdd_log(SELDON_LOG_ERROR, "start-up failed: %s", err);
        return 1;
    }
    if (cfg.port > 0 && cfg.port + cfg.brokers - 1 > 65535) {
        sdd_log(SELDON_LOG_ERROR, "--port %d with %d brokers passes port 65535", cfg.port,
                cfg.brokers);
        rd_kafka_destroy(rk);
        return 2;
    }
    if (cfg.port > 0 && !ports_free(cfg.port, cfg.brokers, &busy)) {
        sdd_log(SELDON_LOG_ERROR, "start-up failed: port %d is in use on 127.0.0.1", busy);
        rd_kafka_destroy(rk);
        return 1;
    }
    fixed_next = cfg.port;
    mc = rd_kafka_mock_cluster_new(rk, cfg.brokers);
    fixed_next = 0;
    if (mc == NULL) {
        sdd_log(SELDON_LOG_ERROR, "start-up failed: no mock cluster");
        rd_kafka_destroy(rk);
        return 1;
    }
    for (i = 0; i < cfg.ntopics; i++) {
        char name[SELDON_KAFKA_TOPIC_MAX + 1];
        const topic_spec *t = &cfg.topics[i];
        int parts = t->partitions ? t->partitions : cfg.partitions;
        rd_kafka_resp_err_t e;
        snprintf(name, sizeof(name), "%.*s", (int)t->name_len, t->name);
        e = rd_kafka_mock_topic_create(mc, name, parts, cfg.brokers < 3 ? cfg.brokers : 3);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            sdd_log(SELDON_LOG_ERROR, "--topic %s: %s", name, rd_kafka_err2str(e));
            rd_kafka_mock_cluster_destroy(mc);
            rd_kafka_destroy(rk);
            return 1;
        }
        sdd_log(SELDON_LOG_INFO, "topic %s: %d partition(s)", name, parts);
    }
    sdd_log(SELDON_LOG_INFO, "serving: bootstrap %s, %d broker(s)",
            rd_kafka_mock_cluster_bootstraps(mc), cfg.brokers);
    printf("bootstrap=%s brokers=%d\n", rd_kafka_mock_cluster_bootstraps(mc), cfg.brokers);
    fflush(stdout);

    sig = sdf_signals_wait(&sigs);
    sdd_log(SELDON_LOG_INFO, "%s: stopping", sdf_signal_name(sig));
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    sdd_log(SELDON_LOG_INFO, "stopped");
    return 0;
}
