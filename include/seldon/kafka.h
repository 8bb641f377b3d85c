/*
 * Seldon Core 2's Kafka wire conventions, as pure logic: topic names, message
 * keys, which headers travel with a record, the model name inside a raw
 * ModelInferRequest, and the offsets a consumer may commit once the records
 * that depend on them are produced. No Kafka client lives here: the daemons'
 * librdkafka glue (daemons/common/kafka.h) calls these. docs/kafka.md has the
 * conventions in prose.
 *
 * Thread safety: the free functions are reentrant. A seldon_kafka_offsets
 * belongs to one thread at a time.
 */
#ifndef SELDON_KAFKA_H
#define SELDON_KAFKA_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* --- Topics ------------------------------------------------------------- */

#define SELDON_KAFKA_TOPIC_MAX 249 /* bytes in a Kafka topic name */
#define SELDON_KAFKA_PREFIX_DEFAULT "seldon"
#define SELDON_KAFKA_NAMESPACE_DEFAULT "default"

/* What a topic carries (seldon_kafka_topic kind). */
#define SELDON_KAFKA_MODEL 1    /* <prefix>.<ns>.model.<name>.<io> */
#define SELDON_KAFKA_PIPELINE 2 /* <prefix>.<ns>.pipeline.<name>.<io> */
#define SELDON_KAFKA_ERRORS 3   /* <prefix>.<ns>.errors.errors (no name, no io) */

/* Which side of a model or pipeline (seldon_kafka_topic io). */
#define SELDON_KAFKA_INPUTS 1
#define SELDON_KAFKA_OUTPUTS 2

/*
 * Whether s (len bytes) may stand in a topic name as a prefix, a namespace or a
 * resource name: 1 to 249 bytes of [A-Za-z0-9._-] (upstream's prefix rule).
 * Returns 1 or 0.
 */
SELDON_API int seldon_kafka_name_ok(const char *s, size_t len);

/*
 * Writes the topic name, NUL-terminated, into out (cap bytes) and its length into
 * *out_len (may be NULL). prefix and ns: NULL for the defaults. name is ignored
 * for SELDON_KAFKA_ERRORS, and io too. Returns 0; SELDON_EINVAL naming the part
 * that is not a valid topic part, or a bad kind or io; SELDON_ETOOBIG when the
 * name would pass SELDON_KAFKA_TOPIC_MAX or cap.
 */
SELDON_API int seldon_kafka_topic(char *out, size_t cap, size_t *out_len, const char *prefix,
                                  const char *ns, int32_t kind, const char *name, int32_t io);

/* A topic name taken apart. Spans point into the parsed string (borrowed). */
typedef struct seldon_kafka_topic_parts {
    int32_t kind;     /* SELDON_KAFKA_MODEL, _PIPELINE or _ERRORS */
    int32_t io;       /* SELDON_KAFKA_INPUTS or _OUTPUTS; 0 for errors */
    const char *name; /* the model or pipeline; NULL for errors */
    size_t name_len;
} seldon_kafka_topic_parts;

/*
 * Takes topic (len bytes) apart, given the prefix and namespace in force (NULL:
 * defaults). Returns 0, or SELDON_EPARSE (detail in seldon_last_error()) for a
 * topic that is not one of Seldon's under that prefix and namespace.
 */
SELDON_API int seldon_kafka_topic_parse(seldon_kafka_topic_parts *out, const char *topic,
                                        size_t len, const char *prefix, const char *ns);

/* --- Keys --------------------------------------------------------------- */

#define SELDON_KAFKA_KEY_MAX 1024 /* bytes in a key this code builds or accepts */

/*
 * Writes the key "<partition>.<resource>.<request id>" NUL-terminated into out
 * (cap bytes); *out_len (may be NULL) gets its length. The partition is the one
 * of the outputs topic the waiting gateway consumes: whoever answers sends the
 * output there. resource is a valid topic part; request_id is 1 or more
 * printable ASCII bytes. Returns 0, SELDON_EINVAL (naming the field),
 * SELDON_ETOOBIG.
 */
SELDON_API int seldon_kafka_key(char *out, size_t cap, size_t *out_len, int32_t partition,
                                const char *resource, const char *request_id);

/* A key taken apart. Spans point into the parsed key (borrowed). */
typedef struct seldon_kafka_key_parts {
    int32_t partition;    /* 0 .. INT32_MAX */
    const char *resource; /* up to the last '.' before the request id */
    size_t resource_len;
    const char *request_id; /* after the last '.' */
    size_t request_id_len;
} seldon_kafka_key_parts;

/*
 * Takes key (len bytes) apart. Resource names may hold dots and request ids
 * generated here never do, so the request id is what follows the last dot.
 * Returns 0, or SELDON_EPARSE (detail names what is wrong) for a key without a
 * decimal partition, a resource or a request id.
 */
SELDON_API int seldon_kafka_key_parse(seldon_kafka_key_parts *out, const char *key, size_t len);

/*
 * The partition an output keyed key goes to among partitions partitions: the key's
 * own partition when it parses and is below partitions, else -1 (the producer's
 * own partitioner decides).
 */
SELDON_API int32_t seldon_kafka_key_partition(const char *key, size_t len, int32_t partitions);

/* --- Headers ------------------------------------------------------------ */

#define SELDON_KAFKA_H_PIPELINE "pipeline"
#define SELDON_KAFKA_H_REQUEST_ID "x-request-id"
#define SELDON_KAFKA_H_PIPELINE_VERSION "x-pipeline-version"
#define SELDON_KAFKA_H_ERRORS "seldon-pipeline-errors"
#define SELDON_KAFKA_H_MODEL "seldon-model" /* the router's routing header */

/*
 * Whether a header of a consumed record travels with what is produced from it:
 * "pipeline", and every header whose name starts with "x-" (any case; which
 * includes x-request-id and x-pipeline-version). seldon-pipeline-errors is not
 * copied: only the record that reports an error carries it. Returns 1 or 0.
 */
SELDON_API int seldon_kafka_header_propagates(const char *name, size_t len);

/*
 * Whether a header of an HTTP or gRPC answer is added to the output record:
 * "x-*" headers, as upstream appends them. Returns 1 or 0.
 */
SELDON_API int seldon_kafka_header_from_answer(const char *name, size_t len);

/* --- Values ------------------------------------------------------------- */

/*
 * Sets model_name (field 1) of a serialised ModelInferRequest (msg, len bytes) to
 * model, keeping every other field's bytes as they are (raw contents stay raw):
 * the output is model_name first, then the other fields in their order. Appends
 * to out (caller owns; seldon_buf_free). Returns 0; SELDON_EPARSE (detail names
 * the byte offset) when msg is not a protobuf message; SELDON_EINVAL; SELDON_ENOMEM.
 */
SELDON_API int seldon_kafka_request_set_model(seldon_buf *out, const uint8_t *msg, size_t len,
                                              const char *model);

/* --- Offsets to commit -------------------------------------------------- */

/*
 * One partition's records between consumed and done. A record is added when it
 * is consumed (offsets grow) and marked done once everything produced from it is
 * acknowledged by the broker; the offset to commit is then the first offset not
 * yet done, so a crash repeats records and never skips one.
 */
typedef struct seldon_kafka_offsets seldon_kafka_offsets;

/* Caller owns *out; free with seldon_kafka_offsets_free(). */
SELDON_API int seldon_kafka_offsets_new(seldon_kafka_offsets **out);
SELDON_API void seldon_kafka_offsets_free(seldon_kafka_offsets *o);

/*
 * A consumed record at offset (larger than every offset added before, else
 * SELDON_EINVAL). Returns 0, SELDON_ENOMEM.
 */
SELDON_API int seldon_kafka_offsets_add(seldon_kafka_offsets *o, int64_t offset);

/*
 * Marks offset done. *commit gets the offset to commit now (one past the last of
 * the leading run of done records), or -1 when it did not move. Returns 0, or
 * SELDON_ENOTFOUND for an offset not added or already done.
 */
SELDON_API int seldon_kafka_offsets_done(int64_t *commit, seldon_kafka_offsets *o, int64_t offset);

/* Records added and not yet done. */
SELDON_API size_t seldon_kafka_offsets_pending(const seldon_kafka_offsets *o);

#ifdef __cplusplus
}
#endif

#endif
