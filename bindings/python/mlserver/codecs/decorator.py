"""decode_args: a predict written with typed arguments instead of an InferenceRequest.

    @decode_args
    async def predict(self, questions: List[str], context: np.ndarray) -> np.ndarray:

Each argument is the input of the same name, decoded by its type hint
(np.ndarray: NumpyCodec, List[str]: StringCodec; a pandas DataFrame takes the
whole request through PandasCodec); the return value is encoded the same way,
as outputs output-0, output-1...
"""
import functools
import inspect
import typing

import numpy as np

from ..errors import InferenceError
from ..types import InferenceResponse
from .numpy import NumpyCodec
from .pandas import PandasCodec
from .string import StringCodec


def _is_dataframe_hint(hint):
    return getattr(hint, "__name__", None) == "DataFrame"


def _input_codec(hint):
    if hint is np.ndarray:
        return NumpyCodec
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (list, typing.List) and args and args[0] is str:
        return StringCodec
    return None


def _encode(name, value):
    if isinstance(value, np.ndarray):
        return [NumpyCodec.encode_output(name, value)]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [StringCodec.encode_output(name, value)]
    if PandasCodec.can_encode(value):
        return PandasCodec.encode_response("", value).outputs
    return [NumpyCodec.encode_output(name, np.asarray(value))]


def decode_args(predict):
    hints = typing.get_type_hints(predict)
    names = list(inspect.signature(predict).parameters)[1:]

    @functools.wraps(predict)
    async def wrapper(self, request):
        kwargs = {}
        by_name = {i.name: i for i in request.inputs}
        for name in names:
            hint = hints.get(name)
            if _is_dataframe_hint(hint):
                kwargs[name] = PandasCodec.decode_request(request)
                continue
            tensor = by_name.get(name)
            if tensor is None and len(names) == 1 and len(request.inputs) == 1:
                tensor = request.inputs[0]
            if tensor is None:
                raise InferenceError(f"predict takes an input called {name}, which the request "
                                     "does not have")
            codec = _input_codec(hint)
            kwargs[name] = codec.decode_input(tensor) if codec else self.decode(tensor)
        result = predict(self, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        values = result if isinstance(result, tuple) else (result,)
        outputs = []
        for i, value in enumerate(values):
            outputs.extend(_encode(f"output-{i}", value))
        return InferenceResponse(model_name=self.name, model_version=self.version,
                                 outputs=outputs)

    return wrapper
