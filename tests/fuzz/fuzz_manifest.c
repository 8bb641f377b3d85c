/*
 * libFuzzer target for manifests. Whatever parses must serialise to JSON
 * that parses back to an equal resource, by the JSON fast path and by
 * libyaml alike, and serialises to the same text; a refusal must say why and
 * leave no manifest. The same bytes are also tried as a memory quantity.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manifest/manifest.h"
#include "seldon/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
    fprintf(stderr, "fuzz property broken: %s (%s)\n", what, seldon_last_error());
    abort();
}

static void check(const seldon_manifest *m)
{
    size_t i, n = seldon_manifest_count(m);
    if (n == 0)
        fail("a manifest without resources");
    if (seldon_manifest_at(m, n) != NULL)
        fail("a resource past the end");
    for (i = 0; i < n; i++) {
        const seldon_resource *r = seldon_manifest_at(m, i);
        seldon_buf one = SELDON_BUF_INIT, two = SELDON_BUF_INIT;
        seldon_manifest *back = NULL;
        if (r == NULL || r->name == NULL || seldon_kind_name(r->kind) == NULL)
            fail("a resource without kind or name");
        if (i > 0 && r->document <= seldon_manifest_at(m, i - 1)->document)
            fail("document positions out of order");
        if (seldon_resource_serialize(&one, r) != 0)
            fail("serialize");
        if (seldon_manifest_parse(&back, (const char *)one.data, one.len, "saved") != 0) {
            fprintf(stderr, "%.*s", (int)one.len, (const char *)one.data);
            fail("our own JSON does not parse");
        }
        if (seldon_manifest_count(back) != 1 ||
            !seldon_resource_equal(r, seldon_manifest_at(back, 0)))
            fail("parse -> serialize -> parse differs");
        if (seldon_resource_serialize(&two, seldon_manifest_at(back, 0)) != 0 ||
            one.len != two.len || memcmp(one.data, two.data, one.len) != 0)
            fail("serialize is not stable");
        seldon_manifest_free(back);
        back = NULL;
        if (sdn_manifest_parse_ex(&back, (const char *)one.data, one.len, "saved",
                                  SDN_MF_YAML_ONLY) != 0) {
            fprintf(stderr, "%.*s", (int)one.len, (const char *)one.data);
            fail("our own JSON does not parse through libyaml");
        }
        if (seldon_manifest_count(back) != 1 ||
            !seldon_resource_equal(r, seldon_manifest_at(back, 0)))
            fail("parse -> serialize -> libyaml's parse differs");
        seldon_buf_free(&one);
        seldon_buf_free(&two);
        seldon_manifest_free(back);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    seldon_manifest *m = (seldon_manifest *)1;
    int64_t bytes = -1;
    int rc = seldon_manifest_parse(&m, (const char *)data, size, "fuzz");
    if (rc == 0) {
        seldon_manifest *y = NULL;
        size_t i;
        check(m);
        /* What the JSON fast path reads, libyaml reads the same. */
        if (sdn_manifest_parse_ex(&y, (const char *)data, size, "fuzz", SDN_MF_YAML_ONLY) != 0)
            fail("parsed, but not through libyaml");
        if (seldon_manifest_count(y) != seldon_manifest_count(m))
            fail("libyaml counts other resources");
        for (i = 0; i < seldon_manifest_count(m); i++)
            if (!seldon_resource_equal(seldon_manifest_at(m, i), seldon_manifest_at(y, i)) ||
                seldon_manifest_at(m, i)->document != seldon_manifest_at(y, i)->document)
                fail("libyaml reads another resource");
        seldon_manifest_free(y);
        seldon_manifest_free(m);
    } else if (seldon_last_error()[0] == '\0' || m != NULL) {
        fail("a refusal without a message");
    } else if (rc != SELDON_EPARSE && rc != SELDON_ETOOBIG) {
        fail("a refusal with an unexpected code");
    }
    rc = seldon_parse_quantity(&bytes, (const char *)data, size < 64 ? size : 64);
    if (rc == 0 && bytes < 0)
        fail("a negative quantity");
    if (rc != 0 && rc != SELDON_EPARSE && rc != SELDON_ERANGE)
        fail("a quantity refused with an unexpected code");
    return 0;
}
