"""StringCodec (content type "str"): a BYTES tensor as a list of str."""
from ..types import Parameters, RequestInput, ResponseOutput
from .base import InputCodec, register_input_codec, register_request_codec
from .numpy import _SingleInputRequestCodec


def _decode(v):
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).decode("utf-8")
    return str(v)


def _flat(data):
    if isinstance(data, (list, tuple)):
        out = []
        for v in data:
            out.extend(_flat(v) if isinstance(v, (list, tuple)) else [v])
        return out
    return list(getattr(data, "reshape", lambda *_: [data])(-1))


@register_input_codec
class StringCodec(InputCodec):
    ContentType = "str"
    TypeHint = list  # List[str]

    @classmethod
    def can_encode(cls, payload):
        return isinstance(payload, list) and all(isinstance(v, str) for v in payload)

    @classmethod
    def encode_output(cls, name, payload, use_bytes=True, **kwargs):
        data = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in payload]
        return ResponseOutput(name=name, datatype="BYTES", shape=[len(data), 1], data=data,
                              parameters=Parameters(content_type=cls.ContentType))

    @classmethod
    def decode_output(cls, response_output):
        return [_decode(v) for v in _flat(response_output.data)]

    @classmethod
    def encode_input(cls, name, payload, use_bytes=True, **kwargs):
        out = cls.encode_output(name, payload)
        return RequestInput(name=name, datatype="BYTES", shape=out.shape, data=out.data,
                            parameters=out.parameters)

    @classmethod
    def decode_input(cls, request_input):
        return [_decode(v) for v in _flat(request_input.data)]


@register_request_codec
class StringRequestCodec(_SingleInputRequestCodec):
    ContentType = StringCodec.ContentType
    InputCodec = StringCodec
