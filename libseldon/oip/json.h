/*
 * Internals shared by the REST JSON decoder and encoder (json_decode.c, json_encode.c).
 */
#ifndef SDN_OIP_JSON_H
#define SDN_OIP_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "util/jsonstr.h"

#if defined(__GNUC__)
#define SDN_JSON_INLINE static inline __attribute__((always_inline))
#define SDN_JSON_COLD __attribute__((cold, noinline))
#else
#define SDN_JSON_INLINE static inline
#define SDN_JSON_COLD
#endif

/* The binary extension's per-tensor parameter; a transport detail, never kept in a message. */
#define SDN_JSON_BINARY_SIZE "binary_data_size"
#define SDN_JSON_BINARY_SIZE_LEN 16

#endif
