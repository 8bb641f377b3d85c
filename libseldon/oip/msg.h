/*
 * The internal shape of a seldon_msg, shared by the JSON and protobuf codecs.
 */
#ifndef SDN_OIP_MSG_H
#define SDN_OIP_MSG_H

#include "seldon/oip.h"
#include "core/core.h"

/* Strings are always NUL-terminated; len excludes the NUL. */
typedef struct sdn_str {
    const char *p;
    size_t len;
} sdn_str;

typedef struct sdn_param {
    sdn_str name;
    int32_t type; /* SELDON_PARAM_* */
    int32_t b;
    int64_t i;
    double d;
    sdn_str s;
} sdn_param;

typedef struct sdn_params {
    sdn_param *items;
    uint32_t n;
    uint32_t cap;
} sdn_params;

#define SDN_TENSOR_BINARY 0x1u   /* travels through the JSON binary extension */
#define SDN_TENSOR_BORROWED 0x2u /* data is not the message's */

typedef struct sdn_tensor {
    sdn_str name;
    int32_t datatype;
    uint32_t ndim;
    int64_t *shape;
    uint8_t *data;
    size_t nbytes;
    uint64_t count;
    uint32_t flags; /* SDN_TENSOR_* */
    sdn_params params;
} sdn_tensor;

typedef struct sdn_output {
    sdn_str name;
    sdn_params params;
} sdn_output;

#define SDN_MSG_INLINE 2048

struct seldon_msg {
    int32_t kind;
    sdn_str id;
    sdn_str model_name;
    sdn_str model_version;
    sdn_params params;
    sdn_tensor *tensors;
    uint32_t ntensors;
    uint32_t tensors_cap;
    sdn_output *outputs;
    uint32_t noutputs;
    uint32_t outputs_cap;
    sdn_arena arena;
    /* The first arena chunk lives inside the message: a small request costs one malloc. */
    _Alignas(16) uint8_t inline_mem[SDN_MSG_INLINE];
};

/* Limits on untrusted input, so a hostile body cannot ask for absurd memory. */
#define SDN_MAX_NDIM 32
#define SDN_MAX_TENSORS 65536
#define SDN_MAX_PARAMS 4096 /* per scope: keeps duplicate checks linear enough */

extern const char sdn_empty[];

/* Element size per datatype (0 for BYTES and invalid). */
extern const uint8_t sdn_dt_size[14];

static inline int sdn_dt_valid(int32_t dt)
{
    return dt >= SELDON_DT_BOOL && dt <= SELDON_DT_BYTES;
}

/* Empties msg, keeping the arena's memory. */
void sdn_msg_clear(seldon_msg *msg);

/* Appends a zeroed tensor / requested output; NULL on allocation failure. */
sdn_tensor *sdn_msg_push_tensor(seldon_msg *msg);
sdn_output *sdn_msg_push_output(seldon_msg *msg);

/* Appends a parameter (no duplicate check); NULL on allocation failure. */
sdn_param *sdn_params_push(sdn_arena *a, sdn_params *ps);

/* Finds a parameter by name; NULL when absent. */
sdn_param *sdn_params_find(const sdn_params *ps, const char *name, size_t len);

/* Removes the parameter at index i, keeping the order of the rest. */
void sdn_params_remove(sdn_params *ps, uint32_t i);

/*
 * Element count of a shape, checking each dimension is >= 0 and that the
 * product and byte size do not overflow. On error sets the message with the
 * given path prefix (e.g. "inputs[1]") and returns a negative code.
 */
int sdn_shape_count(uint64_t *count, const int64_t *shape, uint32_t ndim, const char *path);

/*
 * Checks that BYTES data holds exactly count well-formed length-prefixed
 * elements. Returns 0 or sets an error naming path.
 */
int sdn_bytes_check(const uint8_t *data, size_t nbytes, uint64_t count, const char *path);

/* Checks that BOOL data holds only 0 and 1, so every encoding says the same. */
int sdn_bool_check(const uint8_t *data, size_t nbytes, const char *path);

#endif
