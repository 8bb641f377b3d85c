"""A small MLServer-compatible package for libseldon's Python runtime.

It provides only what MLServer custom models import (MLModel, the request and
response types, the Numpy, String and Pandas codecs, decode_args,
get_model_uri and the settings), so that such models run unchanged inside
seldon-server. It is not MLServer: there is no server here.
"""
from .errors import InferenceError, MLServerError
from .model import MLModel
from .settings import ModelParameters, ModelSettings, Settings

__version__ = "1.3.5"

__all__ = ["MLModel", "ModelSettings", "ModelParameters", "Settings", "MLServerError",
           "InferenceError"]
