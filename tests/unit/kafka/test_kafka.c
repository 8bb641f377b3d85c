/* Seldon Core 2's Kafka conventions: topics, keys, headers, values, offsets. */
#include <criterion/criterion.h>
#include <string.h>

#include "seldon/kafka.h"

Test(topics, defaults)
{
    char t[256];
    size_t n;
    cr_assert_eq(seldon_kafka_topic(t, sizeof(t), &n, NULL, NULL, SELDON_KAFKA_MODEL, "iris",
                                    SELDON_KAFKA_INPUTS),
                 0);
    cr_assert_str_eq(t, "seldon.default.model.iris.inputs");
    cr_assert_eq(n, strlen(t));
    cr_assert_eq(seldon_kafka_topic(t, sizeof(t), NULL, NULL, NULL, SELDON_KAFKA_PIPELINE,
                                    "tfsimples", SELDON_KAFKA_OUTPUTS),
                 0);
    cr_assert_str_eq(t, "seldon.default.pipeline.tfsimples.outputs");
    cr_assert_eq(seldon_kafka_topic(t, sizeof(t), NULL, NULL, NULL, SELDON_KAFKA_ERRORS, NULL, 0),
                 0);
    cr_assert_str_eq(t, "seldon.default.errors.errors");
}

Test(topics, configured)
{
    char t[256];
    cr_assert_eq(seldon_kafka_topic(t, sizeof(t), NULL, "acme", "ns1", SELDON_KAFKA_MODEL, "m.v2",
                                    SELDON_KAFKA_OUTPUTS),
                 0);
    cr_assert_str_eq(t, "acme.ns1.model.m.v2.outputs");
}

Test(topics, refusals)
{
    char t[256], small[16];
    char big[300];
    cr_assert_eq(seldon_kafka_topic(t, sizeof(t), NULL, "bad prefix", NULL, SELDON_KAFKA_MODEL, "m",
                                    SELDON_KAFKA_INPUTS),
                 SELDON_EINVAL);
    cr_assert(strstr(seldon_last_error(), "prefix") != NULL);
    cr_assert_eq(seldon_kafka_topic(t, sizeof(t), NULL, NULL, "", SELDON_KAFKA_MODEL, "m",
                                    SELDON_KAFKA_INPUTS),
                 SELDON_EINVAL);
    cr_assert(strstr(seldon_last_error(), "namespace") != NULL);
    cr_assert_eq(seldon_kafka_topic(t, sizeof(t), NULL, NULL, NULL, SELDON_KAFKA_MODEL, "a/b",
                                    SELDON_KAFKA_INPUTS),
                 SELDON_EINVAL);
    cr_assert(strstr(seldon_last_error(), "model") != NULL);
    cr_assert_eq(seldon_kafka_topic(t, sizeof(t), NULL, NULL, NULL, 9, "m", SELDON_KAFKA_INPUTS),
                 SELDON_EINVAL);
    cr_assert_eq(seldon_kafka_topic(t, sizeof(t), NULL, NULL, NULL, SELDON_KAFKA_MODEL, "m", 7),
                 SELDON_EINVAL);
    cr_assert_eq(seldon_kafka_topic(small, sizeof(small), NULL, NULL, NULL, SELDON_KAFKA_MODEL,
                                    "iris", SELDON_KAFKA_INPUTS),
                 SELDON_ETOOBIG);
    cr_assert_str_eq(small, "");
    memset(big, 'a', 240);
    big[240] = '\0';
    cr_assert_eq(seldon_kafka_topic(t, sizeof(t), NULL, NULL, NULL, SELDON_KAFKA_MODEL, big,
                                    SELDON_KAFKA_INPUTS),
                 SELDON_ETOOBIG);
}

Test(topics, parse)
{
    seldon_kafka_topic_parts p;
    const char *t = "seldon.default.model.m.v2.outputs";
    cr_assert_eq(seldon_kafka_topic_parse(&p, t, strlen(t), NULL, NULL), 0);
    cr_assert_eq(p.kind, SELDON_KAFKA_MODEL);
    cr_assert_eq(p.io, SELDON_KAFKA_OUTPUTS);
    cr_assert_eq(p.name_len, 4);
    cr_assert(memcmp(p.name, "m.v2", 4) == 0);
    t = "acme.ns.pipeline.p.inputs";
    cr_assert_eq(seldon_kafka_topic_parse(&p, t, strlen(t), "acme", "ns"), 0);
    cr_assert_eq(p.kind, SELDON_KAFKA_PIPELINE);
    cr_assert_eq(p.io, SELDON_KAFKA_INPUTS);
    t = "seldon.default.errors.errors";
    cr_assert_eq(seldon_kafka_topic_parse(&p, t, strlen(t), NULL, NULL), 0);
    cr_assert_eq(p.kind, SELDON_KAFKA_ERRORS);
    cr_assert_null(p.name);
    t = "seldon.default.model.inputs";
    cr_assert_eq(seldon_kafka_topic_parse(&p, t, strlen(t), NULL, NULL), SELDON_EPARSE);
    t = "seldon.other.model.m.inputs";
    cr_assert_eq(seldon_kafka_topic_parse(&p, t, strlen(t), NULL, NULL), SELDON_EPARSE);
    cr_assert(strstr(seldon_last_error(), "namespace") != NULL);
    t = "seldon.default.model.m.middle";
    cr_assert_eq(seldon_kafka_topic_parse(&p, t, strlen(t), NULL, NULL), SELDON_EPARSE);
    cr_assert_eq(seldon_kafka_topic_parse(&p, "", 0, NULL, NULL), SELDON_EPARSE);
}

Test(keys, build_and_parse)
{
    char k[128];
    size_t n;
    seldon_kafka_key_parts p;
    cr_assert_eq(seldon_kafka_key(k, sizeof(k), &n, 3, "my.pipe", "cg5u1df3bq8s73f0slsg"), 0);
    cr_assert_str_eq(k, "3.my.pipe.cg5u1df3bq8s73f0slsg");
    cr_assert_eq(seldon_kafka_key_parse(&p, k, n), 0);
    cr_assert_eq(p.partition, 3);
    cr_assert_eq(p.resource_len, 7);
    cr_assert(memcmp(p.resource, "my.pipe", 7) == 0);
    cr_assert_eq(p.request_id_len, 20);
    cr_assert_eq(seldon_kafka_key_partition(k, n, 4), 3);
    cr_assert_eq(seldon_kafka_key_partition(k, n, 3), -1);
    cr_assert_eq(seldon_kafka_key_partition("x", 1, 3), -1);
}

Test(keys, refusals)
{
    char k[16];
    seldon_kafka_key_parts p;
    const char *bad[] = {
        "", "3", "3.", "3.p", "3.p.", ".p.id", "a.p.id", "3..id", "99999999999.p.id", "3.p q.id"};
    size_t i;
    cr_assert_eq(seldon_kafka_key(k, sizeof(k), NULL, -1, "p", "id"), SELDON_EINVAL);
    cr_assert_eq(seldon_kafka_key(k, sizeof(k), NULL, 0, "p", "a.b"), SELDON_EINVAL);
    cr_assert(strstr(seldon_last_error(), "request id") != NULL);
    cr_assert_eq(seldon_kafka_key(k, sizeof(k), NULL, 0, "p", ""), SELDON_EINVAL);
    cr_assert_eq(seldon_kafka_key(k, sizeof(k), NULL, 0, "p p", "id"), SELDON_EINVAL);
    cr_assert(strstr(seldon_last_error(), "resource") != NULL);
    cr_assert_eq(seldon_kafka_key(k, sizeof(k), NULL, 0, "pipeline", "0123456789"), SELDON_ETOOBIG);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(seldon_kafka_key_parse(&p, bad[i], strlen(bad[i])), SELDON_EPARSE, "%s",
                     bad[i]);
}

Test(headers, propagation)
{
    cr_assert(seldon_kafka_header_propagates("pipeline", 8));
    cr_assert(seldon_kafka_header_propagates("x-request-id", 12));
    cr_assert(seldon_kafka_header_propagates("x-pipeline-version", 18));
    cr_assert(seldon_kafka_header_propagates("X-Custom", 8));
    cr_assert(!seldon_kafka_header_propagates("seldon-pipeline-errors", 22));
    cr_assert(!seldon_kafka_header_propagates("content-type", 12));
    cr_assert(!seldon_kafka_header_propagates("x-", 2));
    cr_assert(!seldon_kafka_header_propagates("pipelines", 9));
    cr_assert(seldon_kafka_header_from_answer("x-seldon-route", 14));
    cr_assert(!seldon_kafka_header_from_answer("pipeline", 8));
}

/* A request: model_name "old", id "r1", raw contents bytes, model_version "2". */
static const uint8_t REQ[] = {0x0a, 3,   'o', 'l',  'd', 0x12, 1, '2', 0x1a,
                              2,    'r', '1', 0x3a, 3,   1,    2, 3};

Test(values, set_model)
{
    seldon_buf b = SELDON_BUF_INIT;
    static const uint8_t want[] = {0x0a, 4, 'i', 'r', 'i',  's', 0x12, 1, '2',
                                   0x1a, 2, 'r', '1', 0x3a, 3,   1,    2, 3};
    cr_assert_eq(seldon_kafka_request_set_model(&b, REQ, sizeof(REQ), "iris"), 0);
    cr_assert_eq(b.len, sizeof(want));
    cr_assert(memcmp(b.data, want, sizeof(want)) == 0);
    b.len = 0;
    cr_assert_eq(seldon_kafka_request_set_model(&b, NULL, 0, "m"), 0);
    cr_assert_eq(b.len, 3);
    seldon_buf_free(&b);
}

Test(values, refusals)
{
    seldon_buf b = SELDON_BUF_INIT;
    static const uint8_t trunc[] = {0x0a, 9, 'o'};
    static const uint8_t group[] = {0x0b};
    cr_assert_eq(seldon_kafka_request_set_model(&b, trunc, sizeof(trunc), "m"), SELDON_EPARSE);
    cr_assert(strstr(seldon_last_error(), "byte 0") != NULL);
    cr_assert_eq(seldon_kafka_request_set_model(&b, group, sizeof(group), "m"), SELDON_EPARSE);
    cr_assert_eq(b.len, 0);
    seldon_buf_free(&b);
}

Test(offsets, commit_moves_past_leading_done_run)
{
    seldon_kafka_offsets *o = NULL;
    int64_t c;
    int64_t i;
    cr_assert_eq(seldon_kafka_offsets_new(&o), 0);
    for (i = 10; i < 15; i++)
        cr_assert_eq(seldon_kafka_offsets_add(o, i), 0);
    cr_assert_eq(seldon_kafka_offsets_add(o, 12), SELDON_EINVAL);
    cr_assert_eq(seldon_kafka_offsets_done(&c, o, 12), 0);
    cr_assert_eq(c, -1);
    cr_assert_eq(seldon_kafka_offsets_done(&c, o, 11), 0);
    cr_assert_eq(c, -1);
    cr_assert_eq(seldon_kafka_offsets_done(&c, o, 10), 0);
    cr_assert_eq(c, 13);
    cr_assert_eq(seldon_kafka_offsets_done(&c, o, 12), SELDON_ENOTFOUND);
    cr_assert_eq(seldon_kafka_offsets_pending(o), 2);
    cr_assert_eq(seldon_kafka_offsets_done(&c, o, 14), 0);
    cr_assert_eq(c, -1);
    cr_assert_eq(seldon_kafka_offsets_done(&c, o, 13), 0);
    cr_assert_eq(c, 15);
    cr_assert_eq(seldon_kafka_offsets_pending(o), 0);
    /* Many, out of order: the commit never passes a pending record. */
    for (i = 100; i < 1100; i++)
        cr_assert_eq(seldon_kafka_offsets_add(o, i), 0);
    for (i = 1099; i > 100; i--) {
        cr_assert_eq(seldon_kafka_offsets_done(&c, o, i), 0);
        cr_assert_eq(c, -1);
    }
    cr_assert_eq(seldon_kafka_offsets_done(&c, o, 100), 0);
    cr_assert_eq(c, 1100);
    seldon_kafka_offsets_free(o);
    seldon_kafka_offsets_free(NULL);
}
