/*
 * libFuzzer target for the CLI's protobuf-to-JSON printer (daemons/cli/pbjson.c):
 * any bytes, as a request and as a response, whole and with a tensor selected.
 * The normal build replays corpus/ through tests/fuzz/replay.c.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "pbjson.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *sink;
    if (sink == NULL)
        sink = fopen("/dev/null", "w");
    if (sink == NULL)
        return 0;
    cli_pbjson_value(sink, data, size, 0, NULL);
    cli_pbjson_value(sink, data, size, 1, NULL);
    cli_pbjson_value(sink, data, size, 0, "INPUT0");
    cli_pbjson_value(sink, data, size, 1, "OUTPUT0");
    return 0;
}
