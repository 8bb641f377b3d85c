/*
 * Kafka clients for the daemons: librdkafka producers and consumers attached to
 * a libuv loop the caller owns, and the --kafka-* flags every Kafka daemon
 * shares.
 *
 * librdkafka runs its own threads (broker I/O); nothing of ours runs there.
 * Delivery reports, messages, rebalances and errors are queued by librdkafka
 * and served on the loop: each client's queue writes a byte to a pipe when it
 * stops being empty (rd_kafka_queue_io_event_enable), a uv_poll on the pipe's
 * other end drains the queue, a little at a time, and a timer drains it too in
 * case a wake-up is lost.
 *
 * Delivery. Producers are idempotent unless the configuration says otherwise:
 * retries never duplicate or reorder a record. Consumers commit by hand: every
 * message handed over is tracked in its partition (seldon_kafka_offsets), the
 * caller says when it is done with it (whatever it produced was acknowledged),
 * and only the offset before the first record not yet done is committed, every
 * --kafka-commit-interval and at each revocation. A crash thus repeats records
 * and never skips one.
 *
 * Configuration, in the order applied (later wins): our defaults, the
 * environment variable SELDON_KAFKA_BROKER (bootstrap.servers), the
 * --kafka-config-file and --kafka-config key=value flags in the order given, and
 * --kafka-broker. Every librdkafka property may be set (SASL, TLS, ...).
 *
 * Thread safety: an sdk_config is built at start-up by one thread and read-only
 * afterwards. A producer or consumer belongs to its loop: call it on that loop's
 * thread only; its callbacks run there.
 */
#ifndef SDK_KAFKA_H
#define SDK_KAFKA_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>
#include <uv.h>

/* --- Configuration ----------------------------------------------------------- */

typedef struct sdk_config {
    char **props;                /* key, value, key, value...; owned */
    size_t n, cap;               /* strings in props */
    const char *broker;          /* --kafka-broker, argv's; NULL: none given */
    const char *prefix;          /* topic prefix (NULL: "seldon") */
    const char *ns;              /* topic namespace (NULL: "default") */
    uint64_t commit_interval_ms; /* 0: 1000 */
} sdk_config;

#define SDK_CONFIG_INIT                                                                            \
    {                                                                                              \
        NULL, 0, 0, NULL, NULL, NULL, 0                                                            \
    }

/* Adds key=value (copied). Returns 0, SELDON_EINVAL, SELDON_ENOMEM. */
int sdk_config_set(sdk_config *c, const char *key, const char *value);

/* Reads a properties file: key=value lines, '#' and '!' comments, blank lines;
 * spaces around keys and values are dropped. Returns 0, or SELDON_EIO/SELDON_EPARSE
 * with the file and line in seldon_last_error(). */
int sdk_config_file(sdk_config *c, const char *path);

void sdk_config_free(sdk_config *c);

/* SDF_FUNC parsers (flags.h) for the shared flags; dest is the sdk_config. */
int sdk_flag_property(void *dest, const char *value);   /* --kafka-config KEY=VALUE */
int sdk_flag_file(void *dest, const char *value);       /* --kafka-config-file FILE */
int sdk_flag_broker(void *dest, const char *value);     /* --kafka-broker HOST:PORT[,...] */
int sdk_flag_topic_part(void *dest, const char *value); /* --kafka-prefix, --kafka-namespace:
                                                           dest is the const char * */

/* The rows of the shared flags, for a daemon's flag table. */
#define SDK_FLAGS(cfgp)                                                                            \
    SDF_CHECK("kafka-broker", (cfgp), sdk_flag_broker, "HOST:PORT[,HOST:PORT...]", "HOSTS",        \
              "Kafka bootstrap servers (default: $SELDON_KAFKA_BROKER,\n"                          \
              "else localhost:9092)"),                                                             \
        SDF_CHECK("kafka-config", (cfgp), sdk_flag_property, "KEY=VALUE", "KEY=VALUE",             \
                  "a librdkafka property (repeatable; SASL, TLS, ...)"),                           \
        SDF_CHECK("kafka-config-file", (cfgp), sdk_flag_file,                                      \
                  "a readable file of KEY=VALUE lines", "FILE",                                    \
                  "librdkafka properties, one KEY=VALUE a line"),                                  \
        SDF_CHECK("kafka-prefix", &(cfgp)->prefix, sdk_flag_topic_part,                            \
                  "1 to 249 of A-Z a-z 0-9 . _ -", "PREFIX", "topic prefix (default seldon)"),     \
        SDF_CHECK("kafka-namespace", &(cfgp)->ns, sdk_flag_topic_part,                             \
                  "1 to 249 of A-Z a-z 0-9 . _ -", "NS", "topic namespace (default default)"),     \
        SDF_FLAG("kafka-commit-interval", SDF_MS, &(cfgp)->commit_interval_ms, 10, 3600000, "MS",  \
                 "commit consumed offsets this often (default 1000)")

/*
 * Builds a librdkafka configuration: defaults for the role (consumer: 1 or 0),
 * then c's properties. Returns 0, or SELDON_EINVAL naming the property that
 * librdkafka refused. Caller owns *out (rd_kafka_conf_destroy, or hand it to
 * rd_kafka_new).
 */
int sdk_conf_build(rd_kafka_conf_t **out, const sdk_config *c, int consumer);

/* The bootstrap servers in force (for logs); borrowed from c or static. */
const char *sdk_config_brokers(const sdk_config *c);

/* --- Producer ------------------------------------------------------------------- */

typedef struct sdk_producer sdk_producer;

/* A header of a record: the name NUL-terminated, the value bytes. Borrowed. */
typedef struct sdk_header {
    const char *name;
    const void *value;
    size_t value_len;
} sdk_header;

/*
 * A record's fate, on the loop: err 0 once the broker acknowledged it (partition
 * and offset set), else the librdkafka error code with why. msg_opaque is
 * sdk_produce's.
 */
typedef void (*sdk_delivered_fn)(void *user_data, void *msg_opaque, int err, const char *why,
                                 int32_t partition, int64_t offset);

/*
 * Creates a producer on loop. Records without an explicit partition and with a
 * Seldon key ("<partition>.<resource>.<id>") go to the key's partition when the
 * topic has it, else to librdkafka's murmur2 choice. Returns 0, or a negative
 * SELDON_E* (detail in seldon_last_error()). Caller owns *out: sdk_producer_close.
 */
int sdk_producer_new(sdk_producer **out, uv_loop_t *loop, const sdk_config *c,
                     sdk_delivered_fn delivered, void *user_data);

/*
 * Queues a record (key, value and headers copied). partition -1: by key as above.
 * Returns 0 (delivered() follows, exactly once), SELDON_EUNAVAIL when the local
 * queue is full (try again after deliveries), or another SELDON_E*; then no
 * delivered() follows.
 */
int sdk_produce(sdk_producer *p, const char *topic, int32_t partition, const void *key,
                size_t key_len, const void *value, size_t value_len, const sdk_header *h, size_t nh,
                void *msg_opaque);

/* Records queued and not yet reported. */
size_t sdk_producer_pending(const sdk_producer *p);

/*
 * Flushes for up to flush_ms (delivered() runs for what completes, on this
 * thread), then closes; done(arg) runs once the handles are closed, on the loop.
 * Records still queued are reported with an error.
 */
void sdk_producer_close(sdk_producer *p, uint64_t flush_ms, void (*done)(void *), void *arg);

/* --- Consumer ------------------------------------------------------------------- */

typedef struct sdk_consumer sdk_consumer;

typedef struct sdk_consumer_cbs {
    /* A message, owned by the callee: rd_kafka_message_destroy() it, and call
     * sdk_consumer_done() with its coordinates once done with it. */
    void (*on_message)(void *user_data, rd_kafka_message_t *m);
    /* Partitions assigned to this member, or taken away (commits of the done records
     * were attempted first; sdk_consumer_done for its records is ignored from now). */
    void (*on_assigned)(void *user_data, const char *topic, int32_t partition);
    void (*on_revoked)(void *user_data, const char *topic, int32_t partition);
} sdk_consumer_cbs;

/*
 * Creates a consumer in group_id on loop. Defaults: no auto commit, no auto
 * offset store, auto.offset.reset earliest, roundrobin assignment; c's properties
 * override them. Returns 0 or a negative SELDON_E*. Caller owns *out:
 * sdk_consumer_close.
 */
int sdk_consumer_new(sdk_consumer **out, uv_loop_t *loop, const sdk_config *c, const char *group_id,
                     const sdk_consumer_cbs *cbs, void *user_data);

/* Replaces the subscription with topics (n may be 0: none). Returns 0 or SELDON_E*. */
int sdk_consumer_subscribe(sdk_consumer *c, const char *const *topics, size_t n);

/* The record at offset of topic/partition is done: its offset may be committed
 * once every earlier one is done too. Records of a revoked partition are ignored. */
void sdk_consumer_done(sdk_consumer *c, const char *topic, int32_t partition, int64_t offset);

/* Stops or restarts fetching topic/partition (bounded work per partition). Messages
 * already fetched may still arrive after a pause. */
void sdk_consumer_pause(sdk_consumer *c, const char *topic, int32_t partition, int pause);

/* Partitions assigned now. */
size_t sdk_consumer_assigned(const sdk_consumer *c);

/* Commits what is done now (asynchronously). */
void sdk_consumer_commit(sdk_consumer *c);

/*
 * Commits what is done, leaves the group (blocking this loop while it does) and
 * closes; done(arg) runs on the loop once the handles are closed.
 */
void sdk_consumer_close(sdk_consumer *c, void (*done)(void *), void *arg);

#endif
