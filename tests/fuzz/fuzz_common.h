/*
 * Shared checks for the decoder fuzz targets: whatever decodes must encode,
 * and its encodings must decode back to the same message.
 */
#ifndef SDN_FUZZ_COMMON_H
#define SDN_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "seldon/oip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static inline void fuzz_fail(const char *what)
{
    fprintf(stderr, "fuzz property broken: %s (%s)\n", what, seldon_last_error());
    abort();
}

/*
 * The property: encode(msg) to JSON and to protobuf; each decodes again,
 * and re-encoding to JSON gives the same text as the first JSON encoding.
 * A JSON encoding may fail only for a BYTES element that is not UTF-8.
 */
static inline void fuzz_roundtrip(const seldon_msg *msg)
{
    seldon_buf j1 = SELDON_BUF_INIT, j2 = SELDON_BUF_INIT, pb = SELDON_BUF_INIT;
    seldon_msg *back = NULL;
    size_t jl1 = 0, jl2 = 0;
    int rc;

    if (seldon_msg_new(&back, seldon_msg_kind(msg)) != 0)
        fuzz_fail("msg_new");
    rc = seldon_msg_encode_json(&j1, &jl1, msg, 0);
    if (rc == 0) {
        if (seldon_msg_decode_json(back, j1.data, j1.len, jl1 < j1.len ? jl1 : 0, 0) != 0)
            fuzz_fail("our JSON does not decode");
        if (seldon_msg_encode_json(&j2, &jl2, back, 0) != 0)
            fuzz_fail("re-encoding JSON");
        if (j1.len != j2.len || memcmp(j1.data, j2.data, j1.len) != 0)
            fuzz_fail("JSON -> decode -> JSON differs");
    } else if (rc != SELDON_EDATATYPE) {
        fuzz_fail("encode_json failed");
    }
    if (seldon_msg_encode_pb(&pb, msg, 0) != 0)
        fuzz_fail("encode_pb failed");
    if (seldon_msg_decode_pb(back, pb.data, pb.len, 0) != 0)
        fuzz_fail("our protobuf does not decode");
    if (rc == 0) {
        size_t i;
        /* Which tensors travel as binary JSON is not a protobuf notion: carry it over by hand. */
        for (i = 0; i < seldon_msg_tensor_count(back); i++)
            seldon_msg_set_binary(back, i, seldon_msg_is_binary(msg, i));
        j2.len = 0;
        if (seldon_msg_encode_json(&j2, &jl2, back, 0) != 0)
            fuzz_fail("JSON of the protobuf round trip");
        if (j1.len != j2.len || memcmp(j1.data, j2.data, j1.len) != 0)
            fuzz_fail("protobuf -> decode -> JSON differs");
    }
    seldon_buf_free(&j1);
    seldon_buf_free(&j2);
    seldon_buf_free(&pb);
    seldon_msg_free(back);
}

#endif
