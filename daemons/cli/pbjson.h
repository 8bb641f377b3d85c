/*
 * Protobuf values of Seldon's Kafka topics as JSON (pbjson.c), for `seldon
 * pipeline inspect`: protobuf's JSON mapping as upstream's CLI prints it (Go's
 * protojson): camelCase names, fields in declaration order, default values left
 * out, 64-bit integers as strings, bytes as base64, floats in their shortest form,
 * map keys sorted. Raw contents are shown as the typed contents they stand for.
 * Reentrant; writes to the FILE it is given.
 */
#ifndef SELDON_CLI_PBJSON_H
#define SELDON_CLI_PBJSON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/*
 * Writes value (len bytes) as a ModelInferRequest (outputs 0) or a
 * ModelInferResponse (outputs 1); with tensor, only that tensor (the first of the
 * name). Raw contents: the i-th raw entry fills the i-th tensor without typed
 * contents, decoded by its datatype (little-endian; BYTES elements 4-byte-length
 * prefixed); when an entry does not decode, or does not find its tensor, the raw
 * list is shown as it is (base64). Returns 1 when written, 0 when tensor is not
 * in the message, -1 when value is not such a message (nothing written then).
 */
int cli_pbjson_value(FILE *f, const uint8_t *value, size_t len, int outputs, const char *tensor);

/* A JSON string of n bytes (control characters escaped). */
void cli_json_bytes(FILE *f, const char *s, size_t n);

/* The same for a NUL-terminated string (NULL: ""). */
static inline void cli_json_bytes_z(FILE *f, const char *s)
{
    cli_json_bytes(f, s != NULL ? s : "", s != NULL ? __builtin_strlen(s) : 0);
}

#endif
