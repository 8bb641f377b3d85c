/*
 * seldon-agent's pure logic (daemons/agent/cache.c): what a request resolves to, which
 * models are evicted and in what order, the settings rename, the protobuf splice.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "cache.h"
#include "sdd.h"

static ag_entry *loaded(ag_cache *c, const char *model, uint32_t v, int64_t mem)
{
    ag_entry *e = ag_cache_add(c, model, v, mem);
    cr_assert_not_null(e);
    e->state = AG_LOADED;
    e->held = 1;
    return e;
}

Test(cache, resolve_newest_available_or_exact)
{
    ag_cache *c = NULL;
    ag_entry *v1, *v2, *v3;
    cr_assert_eq(ag_cache_new(&c, 0), 0);
    v1 = loaded(c, "iris", 1, 0);
    v2 = loaded(c, "iris", 2, 0);
    v3 = ag_cache_add(c, "iris", 3, 0); /* still loading: not served by name yet */
    cr_assert_str_eq(v2->vname, "iris_2");
    cr_assert_eq(ag_cache_resolve(c, "iris", 4), v2);
    cr_assert_eq(ag_cache_resolve(c, "iris_1", 6), v1);
    cr_assert_eq(ag_cache_resolve(c, "iris_3", 6), v3);
    cr_assert_null(ag_cache_resolve(c, "iri", 3));
    v2->state = AG_EVICTED; /* evicted is still held: a request reloads it */
    cr_assert_eq(ag_cache_resolve(c, "iris", 4), v2);
    v2->state = AG_LOADING; /* loading again: still served by name (requests wait) */
    cr_assert_eq(ag_cache_resolve(c, "iris", 4), v2);
    v2->state = AG_UNLOADING;
    cr_assert_eq(ag_cache_resolve(c, "iris", 4), v1);
    ag_cache_free(c);
}

Test(cache, plan_evicts_least_recently_used_first)
{
    ag_cache *c = NULL;
    ag_entry *a, *b, *d, *n, **v = NULL;
    size_t nv = 0;
    cr_assert_eq(ag_cache_new(&c, 100), 0);
    a = loaded(c, "a", 1, 40);
    b = loaded(c, "b", 1, 40);
    ag_cache_touch(c, a); /* b is now the least recently used */
    n = ag_cache_add(c, "n", 1, 40);
    cr_assert_eq(ag_cache_used(c), 120);
    cr_assert_eq(ag_cache_plan(&v, &nv, c, n), 0);
    cr_assert_eq(nv, 1);
    cr_assert_eq(v[0], b);
    seldon_free(v);
    /* An evicted entry coming back is not counted until planned for. */
    n->state = AG_LOADED;
    b->state = AG_EVICTED;
    d = b;
    cr_assert_eq(ag_cache_used(c), 80);
    cr_assert_eq(ag_cache_plan(&v, &nv, c, d), 0);
    cr_assert_eq(nv, 1);
    cr_assert_eq(v[0], a); /* a was used before n was added */
    seldon_free(v);
    ag_cache_free(c);
}

Test(cache, plan_fits_without_eviction_and_refuses_too_big)
{
    ag_cache *c = NULL;
    ag_entry *n, **v = NULL;
    size_t nv = 7;
    cr_assert_eq(ag_cache_new(&c, 100), 0);
    loaded(c, "a", 1, 30);
    n = ag_cache_add(c, "n", 1, 70);
    cr_assert_eq(ag_cache_plan(&v, &nv, c, n), 0);
    cr_assert_eq(nv, 0);
    cr_assert_null(v);
    ag_cache_remove(c, n);
    n = ag_cache_add(c, "huge", 1, 101);
    cr_assert_eq(ag_cache_plan(&v, &nv, c, n), SELDON_ERANGE);
    cr_assert(strstr(seldon_last_error(), "huge_1 needs 101 bytes") != NULL, "%s",
              seldon_last_error());
    ag_cache_free(c);
}

Test(cache, plan_cannot_evict_what_is_loading)
{
    ag_cache *c = NULL;
    ag_entry *n, **v = NULL;
    size_t nv = 0;
    cr_assert_eq(ag_cache_new(&c, 100), 0);
    ag_cache_add(c, "busy", 1, 60); /* loading: not a victim */
    n = ag_cache_add(c, "n", 1, 60);
    cr_assert_eq(ag_cache_plan(&v, &nv, c, n), SELDON_ERANGE);
    ag_cache_free(c);
}

Test(cache, no_capacity_means_no_limit)
{
    ag_cache *c = NULL;
    ag_entry *n, **v = NULL;
    size_t nv = 0;
    cr_assert_eq(ag_cache_new(&c, 0), 0);
    loaded(c, "a", 1, 1000);
    n = ag_cache_add(c, "n", 1, 1000);
    cr_assert_eq(ag_cache_plan(&v, &nv, c, n), 0);
    cr_assert_eq(nv, 0);
    ag_cache_free(c);
}

static char *renamed(const char *in, const char *name)
{
    seldon_buf b = SELDON_BUF_INIT;
    char *s;
    if (ag_settings_rename(&b, in, strlen(in), name) != 0)
        return NULL;
    s = sdd_strndup((const char *)b.data, b.len);
    seldon_buf_free(&b);
    return s;
}

Test(settings, rename_keeps_the_rest)
{
    char *s = renamed("{\"implementation\": \"x\", \"name\": \"iris\", \"parameters\": "
                      "{\"name\": \"inner\"}}",
                      "iris_3");
    cr_assert_str_eq(s, "{\"implementation\": \"x\", \"name\": \"iris_3\", \"parameters\": "
                        "{\"name\": \"inner\"}}");
    seldon_free(s);
    s = renamed("  {\"implementation\": \"x\"}\n", "a\"b");
    cr_assert_str_eq(s, "  {\"name\": \"a\\\"b\", \"implementation\": \"x\"}\n");
    seldon_free(s);
    s = renamed("{}", "m_1");
    cr_assert_str_eq(s, "{\"name\": \"m_1\"}");
    seldon_free(s);
    cr_assert_null(renamed("[1]", "m"));
    cr_assert_null(renamed("{\"name\": ", "m"));
    cr_assert_null(renamed("", "m"));
}

Test(pb, rewrite_field1_splices_bytes)
{
    /* model_name "iris" (1), model_version "" skipped, id "r" (3), a varint field 9. */
    static const uint8_t msg[] = {0x0a, 4, 'i', 'r', 'i', 's', 0x1a, 1, 'r', 0x48, 0x96, 0x01};
    static const uint8_t want[] = {0x0a, 6,    'i', 'r', 'i',  's',  '_',
                                   '1',  0x1a, 1,   'r', 0x48, 0x96, 0x01};
    seldon_buf b = SELDON_BUF_INIT;
    size_t off = 0, len = 0;
    cr_assert_eq(ag_pb_field1(msg, sizeof(msg), &off, &len), 0);
    cr_assert_eq(off, 2);
    cr_assert_eq(len, 4);
    cr_assert_eq(ag_pb_rewrite_field1(&b, msg, sizeof(msg), "iris_1", 6), 0);
    cr_assert_eq(b.len, sizeof(want));
    cr_assert_arr_eq(b.data, want, sizeof(want));
    seldon_buf_free(&b);
}

Test(pb, field1_after_other_fields_and_long_names)
{
    uint8_t msg[3 + 200 + 2], name[300];
    seldon_buf b = SELDON_BUF_INIT;
    size_t off = 0, len = 0;
    msg[0] = 0x1a; /* id: 200 bytes, a two-byte length */
    msg[1] = 0xc8;
    msg[2] = 0x01;
    memset(msg + 3, 'x', 200);
    msg[203] = 0x0a; /* model_name: "" */
    msg[204] = 0;
    cr_assert_eq(ag_pb_field1(msg, sizeof(msg), &off, &len), 0);
    cr_assert_eq(len, 0);
    memset(name, 'n', sizeof(name));
    cr_assert_eq(ag_pb_rewrite_field1(&b, msg, sizeof(msg), (const char *)name, 300), 0);
    cr_assert_eq(b.len, 203 + 1 + 2 + 300);
    cr_assert_eq(b.data[203], 0x0a);
    cr_assert_eq(b.data[204], (300 & 0x7f) | 0x80);
    cr_assert_eq(b.data[205], 300 >> 7);
    seldon_buf_free(&b);
}

Test(pb, malformed_is_refused)
{
    static const uint8_t truncated[] = {0x0a, 10, 'a'};
    static const uint8_t badwire[] = {0x0f};
    seldon_buf b = SELDON_BUF_INIT;
    size_t off, len;
    cr_assert_eq(ag_pb_field1(truncated, sizeof(truncated), &off, &len), SELDON_EPARSE);
    cr_assert_eq(ag_pb_rewrite_field1(&b, truncated, sizeof(truncated), "x", 1), SELDON_EPARSE);
    cr_assert_eq(ag_pb_rewrite_field1(&b, badwire, sizeof(badwire), "x", 1), SELDON_EPARSE);
    cr_assert_eq(b.len, 0);
    /* No field 1 at all: nothing to find, copied as it is. */
    cr_assert_eq(ag_pb_field1((const uint8_t *)"", 0, &off, &len), SELDON_ENOTFOUND);
}

Test(spec, storage_uri_version_memory)
{
    static const char doc[] = "{\"apiVersion\":\"mlops.seldon.io/v1alpha1\",\"kind\":\"Model\","
                              "\"metadata\":{\"name\":\"iris\"},\"spec\":{\"storageUri\":"
                              "\"gs://b/iris\",\"artifactVersion\":3,\"memory\":\"1Ki\"}}";
    static const char bad[] = "{\"apiVersion\":\"mlops.seldon.io/v1alpha1\",\"kind\":\"Model\","
                              "\"metadata\":{\"name\":\"iris\"},\"spec\":{\"storagUri\":\"x\"}}";
    ag_spec s;
    cr_assert_eq(ag_spec_parse(&s, doc, strlen(doc)), 0);
    cr_assert_str_eq(s.storage_uri, "gs://b/iris");
    cr_assert_eq(s.artifact_version, 3);
    cr_assert_eq(s.memory, 1024);
    ag_spec_clear(&s);
    cr_assert_eq(ag_spec_parse(&s, bad, strlen(bad)), SELDON_EPARSE);
    cr_assert(strstr(seldon_last_error(), "spec.storagUri") != NULL, "%s", seldon_last_error());
}

Test(cache, huge_sizes_saturate_instead_of_wrapping)
{
    ag_cache *c = NULL;
    ag_entry *big, *n, **v = NULL;
    size_t nv = 0;
    cr_assert_eq(ag_cache_new(&c, 100), 0);
    big = loaded(c, "big", 1, INT64_MAX);
    loaded(c, "big", 2, INT64_MAX);
    cr_assert_eq(ag_cache_used(c), INT64_MAX);
    n = ag_cache_add(c, "n", 1, 10);
    cr_assert_eq(ag_cache_plan(&v, &nv, c, n), 0);
    cr_assert_eq(nv, 2); /* both go: never a wrapped sum that looks small */
    cr_assert(v[0] == big || v[1] == big);
    seldon_free(v);
    ag_cache_free(c);
}
