"""PandasCodec (content type "pd"): a request's inputs as the columns of a DataFrame."""
import numpy as np

from ..errors import CodecError
from ..types import InferenceRequest, InferenceResponse, Parameters, RequestInput, ResponseOutput
from .base import RequestCodec, find_input_codec, register_request_codec
from .numpy import to_datatype, to_ndarray
from .string import StringCodec


def _pd():
    try:
        import pandas
    except ImportError:
        raise CodecError("content type pd needs pandas (Debian: python3-pandas)") from None
    return pandas


def _column(tensor):
    ct = tensor.parameters.content_type if tensor.parameters is not None else None
    if ct is not None and ct not in ("np", "str", "pd"):
        codec = find_input_codec(content_type=ct)
        if codec is None:
            raise CodecError(f"input {tensor.name}: unknown content type {ct}")
        return codec.decode_input(tensor)
    if tensor.datatype == "BYTES":
        try:
            return StringCodec.decode_input(tensor)
        except UnicodeDecodeError:
            return list(to_ndarray(tensor).reshape(-1))
    arr = to_ndarray(tensor)
    if arr.ndim == 2 and arr.shape[1] == 1:
        return arr[:, 0]
    if arr.ndim > 1:
        return list(arr)
    return arr


def _output(name, series):
    values = series.to_numpy()
    if values.dtype.kind == "O" and len(values) and isinstance(values[0], np.ndarray):
        values = np.stack(values)  # a column of rows: one tensor [N, ...]
    if values.dtype.kind in ("O", "U", "S"):
        out = StringCodec.encode_output(name, [v if isinstance(v, (str, bytes)) else str(v)
                                               for v in values])
        out.shape = [len(values), 1]
        return out
    return ResponseOutput(name=str(name), datatype=to_datatype(values.dtype),
                          shape=[len(values)] + list(values.shape[1:]) + ([1] if values.ndim == 1 else []),
                          data=values.reshape(-1))


@register_request_codec
class PandasCodec(RequestCodec):
    ContentType = "pd"

    @classmethod
    def can_encode(cls, payload):
        try:
            return isinstance(payload, _pd().DataFrame)
        except CodecError:
            return False

    @classmethod
    def decode_request(cls, request):
        pd = _pd()
        columns = {}
        for tensor in request.inputs:
            columns[tensor.name] = _column(tensor)
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise CodecError("content type pd: inputs have different numbers of rows "
                             f"({sorted(lengths)})")
        return pd.DataFrame(columns)

    @classmethod
    def encode_response(cls, model_name, payload, model_version=None, **kwargs):
        outputs = [_output(name, payload[name]) for name in payload.columns]
        return InferenceResponse(model_name=model_name, model_version=model_version,
                                 parameters=Parameters(content_type=cls.ContentType),
                                 outputs=outputs)

    @classmethod
    def decode_response(cls, response):
        pd = _pd()
        return pd.DataFrame({o.name: _column(o) for o in response.outputs})

    @classmethod
    def encode_request(cls, payload, **kwargs):
        inputs = []
        for name in payload.columns:
            out = _output(name, payload[name])
            inputs.append(RequestInput(name=out.name, datatype=out.datatype, shape=out.shape,
                                       data=out.data, parameters=out.parameters))
        return InferenceRequest(parameters=Parameters(content_type=cls.ContentType), inputs=inputs)
