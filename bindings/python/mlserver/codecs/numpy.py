"""NumpyCodec (content type "np")."""
import numpy as np

from ..errors import CodecError
from ..types import InferenceRequest, InferenceResponse, Parameters, RequestInput, ResponseOutput
from .base import InputCodec, RequestCodec, register_input_codec, register_request_codec

_DTYPES = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
    "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
    "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
}
_DATATYPES = {np.dtype(v): k for k, v in _DTYPES.items()}


def to_dtype(datatype):
    """The numpy dtype of a protocol datatype (object for BYTES)."""
    datatype = getattr(datatype, "value", datatype)
    if datatype == "BYTES":
        return np.dtype(object)
    try:
        return np.dtype(_DTYPES[datatype])
    except KeyError:
        raise CodecError(f"unknown datatype {datatype}") from None


def to_datatype(dtype):
    """The protocol datatype of a numpy dtype; strings, bytes and objects are BYTES."""
    dtype = np.dtype(dtype)
    found = _DATATYPES.get(dtype)
    if found is not None:
        return found
    if dtype.kind in ("U", "S", "O"):
        return "BYTES"
    raise CodecError(f"numpy dtype {dtype} has no protocol datatype")


def _flat_bytes(data):
    out = []
    for v in np.asarray(data, dtype=object).reshape(-1):
        out.append(v.encode("utf-8") if isinstance(v, str) else bytes(v))
    return out


def to_ndarray(tensor):
    """The tensor's data as an array of its shape and datatype."""
    data = tensor.data
    shape = list(tensor.shape) if tensor.shape is not None else None
    if getattr(tensor.datatype, "value", tensor.datatype) == "BYTES":
        flat = data if isinstance(data, list) else list(np.asarray(data, dtype=object).reshape(-1))
        arr = np.empty(len(flat), dtype=object)
        arr[:] = flat
    else:
        arr = np.asarray(data, dtype=to_dtype(tensor.datatype))
    if shape is not None:
        try:
            arr = arr.reshape(shape)
        except ValueError:
            raise CodecError(f"input {tensor.name}: {arr.size} values do not fit shape "
                             f"{shape}") from None
    return arr


def _shape(payload):
    # MLServer sends a 1-d array as a column: [N] becomes [N, 1].
    shape = list(payload.shape)
    return shape + [1] if len(shape) == 1 else shape


@register_input_codec
class NumpyCodec(InputCodec):
    ContentType = "np"
    TypeHint = np.ndarray

    @classmethod
    def can_encode(cls, payload):
        return isinstance(payload, np.ndarray)

    @classmethod
    def encode_output(cls, name, payload, **kwargs):
        payload = np.asarray(payload)
        datatype = to_datatype(payload.dtype)
        data = _flat_bytes(payload) if datatype == "BYTES" else payload.reshape(-1)
        return ResponseOutput(name=name, datatype=datatype, shape=_shape(payload), data=data,
                              parameters=Parameters(content_type=cls.ContentType))

    @classmethod
    def decode_output(cls, response_output):
        return to_ndarray(response_output)

    @classmethod
    def encode_input(cls, name, payload, **kwargs):
        out = cls.encode_output(name, payload, **kwargs)
        return RequestInput(name=out.name, datatype=out.datatype, shape=out.shape, data=out.data,
                            parameters=out.parameters)

    @classmethod
    def decode_input(cls, request_input):
        return to_ndarray(request_input)


class _SingleInputRequestCodec(RequestCodec):
    InputCodec = None

    @classmethod
    def can_encode(cls, payload):
        return cls.InputCodec.can_encode(payload)

    @classmethod
    def encode_response(cls, model_name, payload, model_version=None, **kwargs):
        output = cls.InputCodec.encode_output("output-1", payload, **kwargs)
        return InferenceResponse(model_name=model_name, model_version=model_version,
                                 parameters=Parameters(content_type=cls.ContentType),
                                 outputs=[output])

    @classmethod
    def decode_response(cls, response):
        if len(response.outputs) != 1:
            raise CodecError(f"{cls.__name__} takes one output ({len(response.outputs)} were given)")
        return cls.InputCodec.decode_output(response.outputs[0])

    @classmethod
    def encode_request(cls, payload, **kwargs):
        inp = cls.InputCodec.encode_input("input-1", payload, **kwargs)
        return InferenceRequest(parameters=Parameters(content_type=cls.ContentType), inputs=[inp])

    @classmethod
    def decode_request(cls, request):
        if len(request.inputs) != 1:
            raise CodecError(f"{cls.__name__} takes one input ({len(request.inputs)} were given)")
        return cls.InputCodec.decode_input(request.inputs[0])


@register_request_codec
class NumpyRequestCodec(_SingleInputRequestCodec):
    ContentType = NumpyCodec.ContentType
    TypeHint = np.ndarray
    InputCodec = NumpyCodec
