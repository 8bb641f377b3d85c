"""Python bindings of libseldon (ctypes).

Locates the shared library through the SELDON_LIB environment variable (the
full path of libseldon.so), then ctypes.util.find_library("seldon").

    import seldon
    msg = seldon.Message.decode_json(body)
    x = msg["input-0"].numpy()          # zero-copy view
    out = seldon.Message.response()
    out.add_tensor("output-0", x * 2)
    body = out.encode_json()

    # A pipeline in process (seldon.pipeline): numpy in, numpy out.
    pipe = seldon.Pipeline(yaml_text, steps={"double": lambda t: {"OUT": t["IN"] * 2}})
    pipe.infer({"IN": np.arange(4.0)})["OUT"]
"""

from . import _lib
from ._lib import SeldonError
from .oip import (
    Message,
    RequestedOutput,
    Tensor,
    datatype_from_name,
    datatype_name,
    datatype_size,
    numpy_dtype,
    version,
    version_number,
)
from .pipeline import Pipeline, PipelineResult, Repository

# Datatype numbers (SELDON_DT_*), for datatype_name() / datatype_size().
DT_INVALID = _lib.DT_INVALID
DT_BOOL = _lib.DT_BOOL
DT_UINT8 = _lib.DT_UINT8
DT_UINT16 = _lib.DT_UINT16
DT_UINT32 = _lib.DT_UINT32
DT_UINT64 = _lib.DT_UINT64
DT_INT8 = _lib.DT_INT8
DT_INT16 = _lib.DT_INT16
DT_INT32 = _lib.DT_INT32
DT_INT64 = _lib.DT_INT64
DT_FP16 = _lib.DT_FP16
DT_FP32 = _lib.DT_FP32
DT_FP64 = _lib.DT_FP64
DT_BYTES = _lib.DT_BYTES

DATATYPES = (
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
)

__all__ = [
    "Message",
    "Pipeline",
    "PipelineResult",
    "Repository",
    "Tensor",
    "RequestedOutput",
    "SeldonError",
    "version",
    "version_number",
    "datatype_name",
    "datatype_from_name",
    "datatype_size",
    "numpy_dtype",
    "DATATYPES",
    "DT_INVALID",
    "DT_BOOL",
    "DT_UINT8",
    "DT_UINT16",
    "DT_UINT32",
    "DT_UINT64",
    "DT_INT8",
    "DT_INT16",
    "DT_INT32",
    "DT_INT64",
    "DT_FP16",
    "DT_FP32",
    "DT_FP64",
    "DT_BYTES",
]
