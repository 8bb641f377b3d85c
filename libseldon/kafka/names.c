/*
 * Seldon Core 2's topic names, message keys and header rules (seldon/kafka.h).
 * Upstream builds keys and topics with plain string formatting; the checks here
 * make sure what is built parses back to the same parts.
 */
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "seldon/kafka.h"

static int part_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

int seldon_kafka_name_ok(const char *s, size_t len)
{
    size_t i;
    if (s == NULL || len == 0 || len > SELDON_KAFKA_TOPIC_MAX)
        return 0;
    for (i = 0; i < len; i++)
        if (!part_char(s[i]))
            return 0;
    return 1;
}

static int check_part(const char *what, const char *s)
{
    if (s == NULL)
        return sdn_error(SELDON_EINVAL, "%s: missing", what);
    if (!seldon_kafka_name_ok(s, strlen(s)))
        return sdn_error(SELDON_EINVAL,
                         "%s: '%.64s' is not a topic name part (1 to 249 of A-Z a-z 0-9 . _ -)",
                         what, s);
    return 0;
}

int seldon_kafka_topic(char *out, size_t cap, size_t *out_len, const char *prefix, const char *ns,
                       int32_t kind, const char *name, int32_t io)
{
    const char *k, *suffix;
    int rc, n;
    if (out == NULL || cap == 0)
        return sdn_error(SELDON_EINVAL, "topic: no output buffer");
    out[0] = '\0';
    if (prefix == NULL)
        prefix = SELDON_KAFKA_PREFIX_DEFAULT;
    if (ns == NULL)
        ns = SELDON_KAFKA_NAMESPACE_DEFAULT;
    if ((rc = check_part("prefix", prefix)) != 0 || (rc = check_part("namespace", ns)) != 0)
        return rc;
    if (kind == SELDON_KAFKA_ERRORS) {
        n = snprintf(out, cap, "%s.%s.errors.errors", prefix, ns);
    } else {
        if (kind == SELDON_KAFKA_MODEL)
            k = "model";
        else if (kind == SELDON_KAFKA_PIPELINE)
            k = "pipeline";
        else
            return sdn_error(SELDON_EINVAL, "topic: unknown kind %d", (int)kind);
        if (io == SELDON_KAFKA_INPUTS)
            suffix = "inputs";
        else if (io == SELDON_KAFKA_OUTPUTS)
            suffix = "outputs";
        else
            return sdn_error(SELDON_EINVAL, "topic: io must be inputs or outputs, not %d", (int)io);
        if ((rc = check_part(kind == SELDON_KAFKA_MODEL ? "model" : "pipeline", name)) != 0)
            return rc;
        n = snprintf(out, cap, "%s.%s.%s.%s.%s", prefix, ns, k, name, suffix);
    }
    if (n < 0 || (size_t)n >= cap || n > SELDON_KAFKA_TOPIC_MAX) {
        out[0] = '\0';
        return sdn_error(SELDON_ETOOBIG, "topic: %d bytes, more than %d", n,
                         (size_t)n >= cap && cap <= SELDON_KAFKA_TOPIC_MAX
                             ? (int)cap - 1
                             : SELDON_KAFKA_TOPIC_MAX);
    }
    if (out_len != NULL)
        *out_len = (size_t)n;
    return 0;
}

/* Whether topic[*at..] starts with s followed by a dot; moves *at past both. */
static int take(const char *topic, size_t len, size_t *at, const char *s)
{
    size_t n = strlen(s);
    if (len - *at < n + 1 || memcmp(topic + *at, s, n) != 0 || topic[*at + n] != '.')
        return 0;
    *at += n + 1;
    return 1;
}

int seldon_kafka_topic_parse(seldon_kafka_topic_parts *out, const char *topic, size_t len,
                             const char *prefix, const char *ns)
{
    size_t at = 0, rest;
    int32_t kind;
    if (out == NULL || (topic == NULL && len > 0))
        return sdn_error(SELDON_EINVAL, "topic: NULL argument");
    memset(out, 0, sizeof(*out));
    if (prefix == NULL)
        prefix = SELDON_KAFKA_PREFIX_DEFAULT;
    if (ns == NULL)
        ns = SELDON_KAFKA_NAMESPACE_DEFAULT;
    if (!seldon_kafka_name_ok(topic, len))
        return sdn_error(SELDON_EPARSE, "topic: not a Kafka topic name");
    if (!take(topic, len, &at, prefix))
        return sdn_error(SELDON_EPARSE, "topic: does not start with the prefix '%s.'", prefix);
    if (!take(topic, len, &at, ns))
        return sdn_error(SELDON_EPARSE, "topic: namespace is not '%s'", ns);
    rest = len - at;
    if (rest == 13 && memcmp(topic + at, "errors.errors", 13) == 0) {
        out->kind = SELDON_KAFKA_ERRORS;
        return 0;
    }
    if (take(topic, len, &at, "model"))
        kind = SELDON_KAFKA_MODEL;
    else if (take(topic, len, &at, "pipeline"))
        kind = SELDON_KAFKA_PIPELINE;
    else
        return sdn_error(SELDON_EPARSE, "topic: neither model, pipeline nor errors.errors");
    rest = len - at;
    if (rest > 7 && memcmp(topic + len - 7, ".inputs", 7) == 0) {
        out->io = SELDON_KAFKA_INPUTS;
        out->name_len = rest - 7;
    } else if (rest > 8 && memcmp(topic + len - 8, ".outputs", 8) == 0) {
        out->io = SELDON_KAFKA_OUTPUTS;
        out->name_len = rest - 8;
    } else {
        return sdn_error(SELDON_EPARSE, "topic: does not end in .inputs or .outputs after a name");
    }
    out->kind = kind;
    out->name = topic + at;
    return 0;
}

/* ------------------------------------------------------------ keys */

static int id_char(char c)
{
    return c > ' ' && c < 0x7f;
}

int seldon_kafka_key(char *out, size_t cap, size_t *out_len, int32_t partition,
                     const char *resource, const char *request_id)
{
    size_t i, idlen;
    int rc, n;
    if (out == NULL || cap == 0)
        return sdn_error(SELDON_EINVAL, "key: no output buffer");
    out[0] = '\0';
    if (partition < 0)
        return sdn_error(SELDON_EINVAL, "key: partition %d is negative", (int)partition);
    if ((rc = check_part("key: resource", resource)) != 0)
        return rc;
    if (request_id == NULL || (idlen = strlen(request_id)) == 0)
        return sdn_error(SELDON_EINVAL, "key: request id: empty");
    for (i = 0; i < idlen; i++)
        if (!id_char(request_id[i]) || request_id[i] == '.')
            return sdn_error(SELDON_EINVAL,
                             "key: request id: byte %zu is not printable ASCII without '.'", i);
    n = snprintf(out, cap, "%d.%s.%s", (int)partition, resource, request_id);
    if (n < 0 || (size_t)n >= cap || n > SELDON_KAFKA_KEY_MAX) {
        out[0] = '\0';
        return sdn_error(SELDON_ETOOBIG, "key: %d bytes, more than %d", n,
                         (size_t)n >= cap && cap <= SELDON_KAFKA_KEY_MAX ? (int)cap - 1
                                                                         : SELDON_KAFKA_KEY_MAX);
    }
    if (out_len != NULL)
        *out_len = (size_t)n;
    return 0;
}

int seldon_kafka_key_parse(seldon_kafka_key_parts *out, const char *key, size_t len)
{
    size_t i, dot = 0, last = 0;
    int64_t p = 0;
    if (out == NULL || (key == NULL && len > 0))
        return sdn_error(SELDON_EINVAL, "key: NULL argument");
    memset(out, 0, sizeof(*out));
    if (len == 0)
        return sdn_error(SELDON_EPARSE, "key: empty");
    if (len > SELDON_KAFKA_KEY_MAX)
        return sdn_error(SELDON_EPARSE, "key: %zu bytes, more than %d", len, SELDON_KAFKA_KEY_MAX);
    for (i = 0; i < len && key[i] != '.'; i++) {
        if (key[i] < '0' || key[i] > '9')
            return sdn_error(SELDON_EPARSE, "key: partition: byte %zu is not a digit", i);
        p = p * 10 + (key[i] - '0');
        if (p > INT32_MAX)
            return sdn_error(SELDON_EPARSE, "key: partition: larger than %d", INT32_MAX);
    }
    if (i == 0 || i == len)
        return sdn_error(SELDON_EPARSE, "key: no '<partition>.' at the start");
    dot = i;
    for (i = dot + 1; i < len; i++) {
        if (!id_char(key[i]))
            return sdn_error(SELDON_EPARSE, "key: byte %zu is not printable ASCII", i);
        if (key[i] == '.')
            last = i;
    }
    if (last <= dot + 1)
        return sdn_error(SELDON_EPARSE, "key: no '<resource>.<request id>' after the partition");
    if (last == len - 1)
        return sdn_error(SELDON_EPARSE, "key: empty request id");
    out->partition = (int32_t)p;
    out->resource = key + dot + 1;
    out->resource_len = last - dot - 1;
    out->request_id = key + last + 1;
    out->request_id_len = len - last - 1;
    return 0;
}

int32_t seldon_kafka_key_partition(const char *key, size_t len, int32_t partitions)
{
    seldon_kafka_key_parts k;
    if (key == NULL || seldon_kafka_key_parse(&k, key, len) != 0 || k.partition >= partitions)
        return -1;
    return k.partition;
}

/* ------------------------------------------------------------ headers */

static int x_header(const char *name, size_t len)
{
    return len > 2 && (name[0] == 'x' || name[0] == 'X') && name[1] == '-';
}

int seldon_kafka_header_propagates(const char *name, size_t len)
{
    if (name == NULL)
        return 0;
    if (len == 8 && memcmp(name, SELDON_KAFKA_H_PIPELINE, 8) == 0)
        return 1;
    return x_header(name, len);
}

int seldon_kafka_header_from_answer(const char *name, size_t len)
{
    return name != NULL && x_header(name, len);
}
