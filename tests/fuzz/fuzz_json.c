/*
 * libFuzzer target for the REST JSON decoder. An input may start with a
 * line "#<n>\n": the rest is then a body whose first n bytes are JSON and
 * the others binary tensor data (Inference-Header-Content-Length: n).
 * Each body is decoded as a request and as a response.
 */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int32_t kinds[2] = {SELDON_MSG_REQUEST, SELDON_MSG_RESPONSE};
    size_t json_len = 0;
    seldon_msg *msg = NULL;
    int k;

    if (size > 1 && data[0] == '#') {
        size_t i = 1;
        while (i < size && i < 12 && data[i] >= '0' && data[i] <= '9')
            json_len = json_len * 10 + (size_t)(data[i++] - '0');
        if (i < size && data[i] == '\n') {
            data += i + 1;
            size -= i + 1;
        } else {
            json_len = 0;
        }
    }
    for (k = 0; k < 2; k++) {
        if (seldon_msg_new(&msg, kinds[k]) != 0)
            fuzz_fail("msg_new");
        if (seldon_msg_decode_json(msg, data, size, json_len, 0) == 0)
            fuzz_roundtrip(msg);
        else if (seldon_last_error()[0] == '\0')
            fuzz_fail("a failure without a message");
        seldon_msg_free(msg);
    }
    return 0;
}
