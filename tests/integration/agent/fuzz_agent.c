/*
 * The agent's decoders under fuzzing: a model spec, a model-settings.json rename and
 * the protobuf field-1 splice, all from the same bytes. Nothing may crash, and a
 * splice that succeeds must decode to the new name.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "sdd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    seldon_buf b = SELDON_BUF_INIT;
    ag_spec s;
    size_t off, len;
    if (ag_spec_parse(&s, (const char *)data, size) == 0)
        ag_spec_clear(&s);
    if (ag_settings_rename(&b, (const char *)data, size, "model_1") == 0) {
        /* The result is an object whose name is the new one. */
        b.len = 0;
    }
    if (ag_pb_rewrite_field1(&b, data, size, "model_1", 7) == 0 && b.len > 0) {
        if (ag_pb_field1(b.data, b.len, &off, &len) == 0 &&
            (len != 7 || memcmp(b.data + off, "model_1", 7) != 0))
            abort();
    }
    seldon_buf_free(&b);
    return 0;
}
