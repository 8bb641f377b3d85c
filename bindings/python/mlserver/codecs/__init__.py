"""MLServer's content types: np (NumpyCodec), str (StringCodec), pd (PandasCodec)."""
from .base import (InputCodec, RequestCodec, find_input_codec, find_request_codec,
                   register_input_codec, register_request_codec)
from .decorator import decode_args
from .numpy import NumpyCodec, NumpyRequestCodec
from .pandas import PandasCodec
from .string import StringCodec, StringRequestCodec

__all__ = ["NumpyCodec", "NumpyRequestCodec", "StringCodec", "StringRequestCodec",
           "PandasCodec", "InputCodec", "RequestCodec", "decode_args", "find_input_codec",
           "find_request_codec", "register_input_codec", "register_request_codec"]
