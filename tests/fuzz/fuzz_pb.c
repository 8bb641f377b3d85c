/*
 * libFuzzer target for the protobuf decoder: each input is decoded as an
 * inference.ModelInferRequest and as a ModelInferResponse.
 */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int32_t kinds[2] = {SELDON_MSG_REQUEST, SELDON_MSG_RESPONSE};
    seldon_msg *msg = NULL;
    int k;

    for (k = 0; k < 2; k++) {
        if (seldon_msg_new(&msg, kinds[k]) != 0)
            fuzz_fail("msg_new");
        if (seldon_msg_decode_pb(msg, data, size, 0) == 0)
            fuzz_roundtrip(msg);
        else if (seldon_last_error()[0] == '\0')
            fuzz_fail("a failure without a message");
        seldon_msg_free(msg);
    }
    return 0;
}
