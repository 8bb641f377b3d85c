/*
 * The Open Inference Protocol (KServe V2) data model and its codecs.
 *
 * A seldon_msg is one inference request or response: an id, the model name
 * and version, parameters, tensors (the request's inputs or the response's
 * outputs) and, for requests, the outputs asked for. It decodes from and
 * encodes to REST JSON (with the binary tensor data extension) and the gRPC
 * protobuf messages inference.ModelInferRequest / ModelInferResponse.
 *
 * Memory: a message owns an arena; everything it hands out (names, shapes,
 * tensor data, parameter strings) is borrowed from it and stays valid until
 * seldon_msg_reset() or seldon_msg_free(), unless stated otherwise.
 *
 * Tensor data layout: fixed-size datatypes are stored contiguously in
 * row-major order, in the host's byte order (libseldon supports
 * little-endian hosts only, which is also the wire order). BYTES tensors are
 * stored as the wire does: each element is a 4-byte little-endian length
 * followed by that many bytes; seldon_bytes_next() walks them.
 *
 * Thread safety: one message, one thread at a time. Distinct messages may be
 * used from different threads concurrently. Decoders and encoders keep no
 * state between calls.
 */
#ifndef SELDON_OIP_H
#define SELDON_OIP_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Datatypes, passed as int32_t. */
#define SELDON_DT_INVALID 0
#define SELDON_DT_BOOL 1
#define SELDON_DT_UINT8 2
#define SELDON_DT_UINT16 3
#define SELDON_DT_UINT32 4
#define SELDON_DT_UINT64 5
#define SELDON_DT_INT8 6
#define SELDON_DT_INT16 7
#define SELDON_DT_INT32 8
#define SELDON_DT_INT64 9
#define SELDON_DT_FP16 10
#define SELDON_DT_FP32 11
#define SELDON_DT_FP64 12
#define SELDON_DT_BYTES 13

/* The protocol's name for a datatype ("FP32"); "INVALID" for an unknown one. */
SELDON_API const char *seldon_datatype_name(int32_t datatype);

/* The datatype named name[0..len) exactly ("FP32"), or SELDON_DT_INVALID. */
SELDON_API int32_t seldon_datatype_from_name(const char *name, size_t len);

/* Bytes per element: 1 for BOOL (0 or 1), 2 for FP16, ...; 0 for BYTES and unknown types. */
SELDON_API size_t seldon_datatype_size(int32_t datatype);

/* Message kinds. */
#define SELDON_MSG_REQUEST 1
#define SELDON_MSG_RESPONSE 2

/* Parameter value types. */
#define SELDON_PARAM_BOOL 1
#define SELDON_PARAM_INT64 2
#define SELDON_PARAM_DOUBLE 3
#define SELDON_PARAM_STRING 4

/*
 * Where a parameter hangs: on the message, on a tensor (index = tensor
 * index), or on a requested output (index = requested output index).
 */
#define SELDON_SCOPE_MSG 0
#define SELDON_SCOPE_TENSOR 1
#define SELDON_SCOPE_OUTPUT 2

/*
 * One parameter. When read from a message, name and string_value are
 * borrowed from it and NUL-terminated. When passed in, they are copied.
 * Only the field matching type is meaningful.
 */
typedef struct seldon_param {
    const char *name;
    size_t name_len;
    int32_t type; /* SELDON_PARAM_* */
    int32_t bool_value;
    int64_t int64_value;
    double double_value;
    const char *string_value;
    size_t string_len;
} seldon_param;

/*
 * A view of one tensor. Every pointer is borrowed from the message. data is
 * writable for tensors the message holds itself, and must not be written
 * through for tensors added or decoded with a BORROW flag.
 */
typedef struct seldon_tensor {
    const char *name; /* NUL-terminated */
    size_t name_len;
    int32_t datatype; /* SELDON_DT_* */
    uint32_t ndim;
    const int64_t *shape; /* ndim entries; NULL when ndim is 0 */
    void *data;           /* nbytes bytes; may be NULL when nbytes is 0 */
    size_t nbytes;
    uint64_t count; /* element count: the product of shape (1 for 0-d) */
} seldon_tensor;

typedef struct seldon_msg seldon_msg;

/* Creates an empty message of kind SELDON_MSG_REQUEST or _RESPONSE. Caller owns *out; free with seldon_msg_free(). */
SELDON_API int seldon_msg_new(seldon_msg **out, int32_t kind);

/* Frees the message and everything borrowed from it. NULL is allowed. */
SELDON_API void seldon_msg_free(seldon_msg *msg);

/*
 * Empties the message and sets its kind, keeping its memory for reuse. All
 * views and pointers obtained from it become invalid.
 */
SELDON_API int seldon_msg_reset(seldon_msg *msg, int32_t kind);

SELDON_API int32_t seldon_msg_kind(const seldon_msg *msg);

/* --- Decoding ----------------------------------------------------------- */

/*
 * The decoder may point tensor data into the input buffer instead of copying
 * it (binary extension data, when suitably aligned). The caller keeps the
 * buffer alive and unchanged until the message is freed or reset.
 */
#define SELDON_DECODE_BORROW 0x1u

/*
 * Decodes a REST JSON body into msg, replacing its content (msg keeps its
 * kind). body[0..len) need not be NUL-terminated. json_len is the value of
 * the Inference-Header-Content-Length header: the JSON part's length, with
 * the binary tensor data after it; pass 0 when the header is absent (the
 * whole body is JSON). Tensors (a request's inputs, a response's outputs)
 * that carry a binary_data_size parameter take their data from the binary
 * part, in order; the parameter is consumed. A size that disagrees with the
 * shape, or binary data left over or missing, is SELDON_ESHAPE.
 *
 * On failure msg is left empty and seldon_last_error() names the failing
 * path, e.g. "inputs[1].data[37]: expected a number". Errors: SELDON_EPARSE
 * (syntax, a missing or duplicate field, a value of the wrong kind such as
 * a string where a number belongs), SELDON_EDATATYPE (an unknown datatype
 * name), SELDON_ESHAPE
 * (element count or nesting differs from the shape), SELDON_ERANGE (a value
 * outside its datatype, including BOOL bytes other than 0 and 1),
 * SELDON_ETOOBIG, SELDON_ENOMEM.
 */
SELDON_API int seldon_msg_decode_json(seldon_msg *msg, const void *body, size_t len,
                                      size_t json_len, uint32_t flags);

/*
 * Decodes a protobuf inference.ModelInferRequest (kind REQUEST) or
 * inference.ModelInferResponse (kind RESPONSE) into msg, replacing its
 * content. Tensor data from raw_*_contents, and typed contents whose element
 * size matches the datatype, stay where the decoder put them: no further copy.
 * Errors as for seldon_msg_decode_json(), with protobuf field paths
 * ("raw_input_contents[1]: ...").
 */
SELDON_API int seldon_msg_decode_pb(seldon_msg *msg, const void *buf, size_t len, uint32_t flags);

/*
 * Checks the string fields of a serialized message of the inference service
 * (proto/grpc_predict_v2.proto), named by its full type name, e.g.
 * "inference.ModelReadyRequest" or "inference.RepositoryModelLoadRequest":
 * proto3 requires them to be UTF-8, and a NUL would cut a name short once it
 * becomes a C string ("add10\0evil" reaching model add10). The walk follows
 * the wire format only; it does not validate the rest of the message.
 * seldon_msg_decode_pb() applies the same check itself.
 * Returns 0; SELDON_EPARSE naming the field ("model_name: at byte 5: a NUL
 * byte is not allowed in this string"); SELDON_ENOTFOUND for an unknown type;
 * SELDON_EINVAL for NULL arguments.
 */
SELDON_API int seldon_pb_check_strings(const void *buf, size_t len, const char *type_name);

/* --- Encoding ----------------------------------------------------------- */

/*
 * JSON: send the data of every tensor through the binary tensor data
 * extension, not only those marked with seldon_msg_set_binary().
 */
#define SELDON_ENCODE_BINARY_ALL 0x1u
/* protobuf: use the typed *_contents fields instead of raw_*_contents. */
#define SELDON_ENCODE_PB_TYPED 0x2u

/*
 * Appends the REST JSON form of msg to out. Tensors marked binary (or all,
 * with SELDON_ENCODE_BINARY_ALL) carry a binary_data_size parameter and
 * their bytes follow the JSON, in order. *json_len (optional) receives the
 * length of the JSON part, which is the Inference-Header-Content-Length to
 * send when it is shorter than the whole. Floating-point values are written
 * with the fewest digits that read back exactly; NaN and infinities as NaN,
 * Infinity and -Infinity. A request's model name and version are not
 * written (REST carries them in the URL). On failure out is left as it was:
 * SELDON_EDATATYPE for a BYTES element or string that is not UTF-8 (ask for
 * such a tensor as binary data), SELDON_ENOMEM.
 */
SELDON_API int seldon_msg_encode_json(seldon_buf *out, size_t *json_len, const seldon_msg *msg,
                                      uint32_t flags);

/* Appends the protobuf ModelInferRequest / ModelInferResponse form of msg to out. */
SELDON_API int seldon_msg_encode_pb(seldon_buf *out, const seldon_msg *msg, uint32_t flags);

/* --- Reading ------------------------------------------------------------ */

/* Borrowed, NUL-terminated; "" when unset. *len (optional) receives the length. */
SELDON_API const char *seldon_msg_id(const seldon_msg *msg, size_t *len);
SELDON_API const char *seldon_msg_model_name(const seldon_msg *msg, size_t *len);
SELDON_API const char *seldon_msg_model_version(const seldon_msg *msg, size_t *len);

/* The number of tensors: a request's inputs or a response's outputs. */
SELDON_API size_t seldon_msg_tensor_count(const seldon_msg *msg);

/* Fills *out with a view of tensor index. SELDON_ENOTFOUND past the end. */
SELDON_API int seldon_msg_tensor(seldon_tensor *out, const seldon_msg *msg, size_t index);

/* The index of the first tensor called name[0..len). SELDON_ENOTFOUND if none. */
SELDON_API int seldon_msg_find_tensor(size_t *out_index, const seldon_msg *msg, const char *name,
                                      size_t len);

/* Whether tensor index is marked to travel through the binary extension. */
SELDON_API int32_t seldon_msg_is_binary(const seldon_msg *msg, size_t index);

/*
 * Whether tensor index's data belongs to someone else (added or decoded
 * with a BORROW flag): 1 means its data must not be written through.
 */
SELDON_API int32_t seldon_msg_is_borrowed(const seldon_msg *msg, size_t index);

/* The number of requested outputs of a request (0 means all). */
SELDON_API size_t seldon_msg_output_count(const seldon_msg *msg);

/* The name of requested output index: borrowed, NUL-terminated. NULL past the end. */
SELDON_API const char *seldon_msg_output_name(const seldon_msg *msg, size_t index, size_t *len);

/* The number of parameters in a scope (SELDON_SCOPE_*, index as described there). */
SELDON_API size_t seldon_msg_param_count(const seldon_msg *msg, int32_t scope, size_t index);

/* Fills *out with parameter param_index of a scope. SELDON_ENOTFOUND past the end. */
SELDON_API int seldon_msg_param(seldon_param *out, const seldon_msg *msg, int32_t scope,
                                size_t index, size_t param_index);

/* Fills *out with the parameter called name in a scope. SELDON_ENOTFOUND if absent. */
SELDON_API int seldon_msg_find_param(seldon_param *out, const seldon_msg *msg, int32_t scope,
                                     size_t index, const char *name, size_t name_len);

/*
 * Walks the elements of a BYTES tensor. Start with *offset = 0; each call
 * sets *elem (borrowed from the tensor) and *elem_len to the next element and
 * advances *offset. Returns 1 for an element, 0 at the end, SELDON_EPARSE if
 * the data is malformed.
 */
SELDON_API int seldon_bytes_next(const uint8_t **elem, uint32_t *elem_len,
                                 const seldon_tensor *tensor, size_t *offset);

/* --- Building ----------------------------------------------------------- */

/* Copies the strings. len is the length in bytes. */
SELDON_API int seldon_msg_set_id(seldon_msg *msg, const char *id, size_t len);
SELDON_API int seldon_msg_set_model(seldon_msg *msg, const char *name, size_t name_len,
                                    const char *version, size_t version_len);

/* Tensor data handling for seldon_msg_add_tensor(). */
#define SELDON_TENSOR_COPY 0x0u   /* copy data into the message */
#define SELDON_TENSOR_BORROW 0x1u /* point at data: the caller keeps it alive until free/reset */
#define SELDON_TENSOR_ALLOC 0x2u  /* data must be NULL: allocate nbytes, zeroed, to fill in place */

/*
 * Adds a tensor (an input of a request, an output of a response). shape has
 * ndim entries, each >= 0. For fixed-size types nbytes must equal the element
 * count times the element size; for BYTES, data holds the length-prefixed
 * elements and their number must equal the element count; BOOL bytes must
 * be 0 or 1 (SELDON_ERANGE otherwise). *out_index (optional) receives the
 * tensor's index.
 */
SELDON_API int seldon_msg_add_tensor(size_t *out_index, seldon_msg *msg, const char *name,
                                     size_t name_len, int32_t datatype, const int64_t *shape,
                                     uint32_t ndim, const void *data, size_t nbytes,
                                     uint32_t flags);

/* Marks tensor index to travel through the binary extension in JSON (on != 0). */
SELDON_API int seldon_msg_set_binary(seldon_msg *msg, size_t index, int32_t on);

/* Adds a requested output to a request. *out_index (optional) receives its index. */
SELDON_API int seldon_msg_add_output(size_t *out_index, seldon_msg *msg, const char *name,
                                     size_t len);

/* Adds a parameter to a scope, copying it; a parameter of the same name is replaced. */
SELDON_API int seldon_msg_add_param(seldon_msg *msg, int32_t scope, size_t index,
                                    const seldon_param *param);


/* --- REST routes ---------------------------------------------------------- */

/* The endpoints of the protocol's REST API, passed as int32_t. */
#define SELDON_ROUTE_HEALTH_LIVE 1     /* GET /v2/health/live */
#define SELDON_ROUTE_HEALTH_READY 2    /* GET /v2/health/ready */
#define SELDON_ROUTE_SERVER_METADATA 3 /* GET /v2 */
#define SELDON_ROUTE_MODEL_METADATA 4  /* GET /v2/models/{m}[/versions/{v}] */
#define SELDON_ROUTE_MODEL_READY 5     /* GET /v2/models/{m}[/versions/{v}]/ready */
#define SELDON_ROUTE_MODEL_INFER 6     /* POST /v2/models/{m}[/versions/{v}]/infer */
#define SELDON_ROUTE_REPO_INDEX 7      /* POST /v2/repository/index */
#define SELDON_ROUTE_REPO_LOAD 8       /* POST /v2/repository/models/{m}/load */
#define SELDON_ROUTE_REPO_UNLOAD 9     /* POST /v2/repository/models/{m}/unload */
#define SELDON_ROUTE_PIPELINE_READY 10 /* GET /v2/pipelines/{p}/ready */
#define SELDON_ROUTE_PIPELINE_INFER 11 /* POST /v2/pipelines/{p}/infer */

/* A parsed REST path: pointers borrow from the path passed in. */
typedef struct seldon_route {
    int32_t kind; /* SELDON_ROUTE_* */
    const char *name; /* the model or pipeline; NULL when the route has none */
    size_t name_len;
    const char *version; /* NULL when absent */
    size_t version_len;
} seldon_route;

/*
 * Matches an HTTP method and path (without the query string) to a route.
 * SELDON_ENOTFOUND for a path the protocol does not define (404);
 * SELDON_EUNSUPPORTED for a defined path with the wrong method (405). A
 * trailing '/' is tolerated.
 */
SELDON_API int seldon_route_parse(seldon_route *out, const char *method, size_t method_len,
                                  const char *path, size_t path_len);

#ifdef __cplusplus
}
#endif

#endif
