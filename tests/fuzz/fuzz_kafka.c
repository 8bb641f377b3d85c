/*
 * libFuzzer target for the Kafka conventions' parsers: the bytes as a message
 * key, as a topic name and as a ModelInferRequest whose model is replaced.
 * Whatever parses must build back to the same bytes (keys and topics), and a
 * replaced model must leave a message that parses with the new name first.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "seldon/kafka.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
    fprintf(stderr, "fuzz property broken: %s (%s)\n", what, seldon_last_error());
    abort();
}

static void key(const char *s, size_t n)
{
    seldon_kafka_key_parts k;
    char res[SELDON_KAFKA_KEY_MAX + 1], id[SELDON_KAFKA_KEY_MAX + 1],
        back[SELDON_KAFKA_KEY_MAX + 1];
    size_t len;
    if (seldon_kafka_key_parse(&k, s, n) != 0) {
        if (seldon_last_error()[0] == '\0')
            fail("key refused without a reason");
        return;
    }
    if (k.resource_len == 0 || k.request_id_len == 0 || k.resource + k.resource_len > s + n ||
        k.request_id + k.request_id_len != s + n)
        fail("key spans");
    memcpy(res, k.resource, k.resource_len);
    res[k.resource_len] = '\0';
    memcpy(id, k.request_id, k.request_id_len);
    id[k.request_id_len] = '\0';
    /* Built keys are stricter (topic-part resources), so only those are rebuilt. */
    if (seldon_kafka_name_ok(res, k.resource_len) && n < sizeof(back) && s[0] != '0') {
        if (seldon_kafka_key(back, sizeof(back), &len, k.partition, res, id) != 0)
            fail("parsed key does not build");
        if (len != n || memcmp(back, s, n) != 0)
            fail("key round trip");
    }
}

static void topic(const char *s, size_t n)
{
    seldon_kafka_topic_parts t;
    char name[SELDON_KAFKA_TOPIC_MAX + 1], back[SELDON_KAFKA_TOPIC_MAX + 1];
    size_t len;
    if (seldon_kafka_topic_parse(&t, s, n, NULL, NULL) != 0)
        return;
    if (t.kind != SELDON_KAFKA_ERRORS) {
        if (t.name_len == 0 || t.name_len > SELDON_KAFKA_TOPIC_MAX)
            fail("topic name span");
        memcpy(name, t.name, t.name_len);
        name[t.name_len] = '\0';
    }
    if (seldon_kafka_topic(back, sizeof(back), &len, NULL, NULL, t.kind,
                           t.kind == SELDON_KAFKA_ERRORS ? NULL : name, t.io) != 0)
        fail("parsed topic does not build");
    if (len != n || memcmp(back, s, n) != 0)
        fail("topic round trip");
}

static void value(const uint8_t *data, size_t size)
{
    seldon_buf b = SELDON_BUF_INIT, again = SELDON_BUF_INIT;
    if (seldon_kafka_request_set_model(&b, data, size, "m") != 0) {
        if (b.len != 0)
            fail("refused message left output");
        return;
    }
    if (b.len < 3 || b.data[0] != 0x0a || b.data[1] != 1 || b.data[2] != 'm')
        fail("model name not first");
    /* Idempotent: the second replacement yields the same bytes. */
    if (seldon_kafka_request_set_model(&again, b.data, b.len, "m") != 0)
        fail("output does not parse");
    if (again.len != b.len || memcmp(again.data, b.data, b.len) != 0)
        fail("replacement not idempotent");
    seldon_buf_free(&b);
    seldon_buf_free(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    key((const char *)data, size);
    topic((const char *)data, size);
    value(data, size);
    return 0;
}
