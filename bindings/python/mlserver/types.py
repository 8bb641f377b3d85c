"""The Open Inference Protocol types, as MLServer names them.

MLServer defines these with pydantic; here they are plain classes with the
same fields and keyword constructors, which is what models use.
"""
from enum import Enum


class Datatype(str, Enum):
    BOOL = "BOOL"
    UINT8 = "UINT8"
    UINT16 = "UINT16"
    UINT32 = "UINT32"
    UINT64 = "UINT64"
    INT8 = "INT8"
    INT16 = "INT16"
    INT32 = "INT32"
    INT64 = "INT64"
    FP16 = "FP16"
    FP32 = "FP32"
    FP64 = "FP64"
    BYTES = "BYTES"


class _Base:
    _fields = ()

    def __init__(self, **kwargs):
        for name, default in self._fields:
            value = kwargs.pop(name, default)
            if isinstance(value, (list, dict)) and value is default:
                value = type(value)(value)
            setattr(self, name, value)
        for name, value in kwargs.items():
            setattr(self, name, value)

    def dict(self, exclude_none=False, **_):
        out = {}
        for name, value in self.__dict__.items():
            if exclude_none and value is None:
                continue
            if isinstance(value, _Base):
                value = value.dict(exclude_none=exclude_none)
            elif isinstance(value, list):
                value = [v.dict(exclude_none=exclude_none) if isinstance(v, _Base) else v
                         for v in value]
            out[name] = value
        return out

    def __repr__(self):
        inner = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items())
        return f"{type(self).__name__}({inner})"


class Parameters(_Base):
    """Free-form parameters; content_type and headers are the known ones."""
    _fields = (("content_type", None), ("headers", None))

    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return None


def _params(value):
    if value is None or isinstance(value, Parameters):
        return value
    return Parameters(**dict(value))


class TensorData(list):
    """MLServer's TensorData: the flat or nested values of a tensor."""

    @property
    def __root__(self):
        return self


class MetadataTensor(_Base):
    _fields = (("name", None), ("datatype", None), ("shape", None), ("parameters", None))

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.parameters = _params(self.parameters)


class RequestInput(_Base):
    _fields = (("name", None), ("shape", None), ("datatype", None), ("parameters", None),
               ("data", None))

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.parameters = _params(self.parameters)


class RequestOutput(_Base):
    _fields = (("name", None), ("parameters", None))

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.parameters = _params(self.parameters)


class ResponseOutput(_Base):
    _fields = (("name", None), ("shape", None), ("datatype", None), ("parameters", None),
               ("data", None))

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.parameters = _params(self.parameters)


class InferenceRequest(_Base):
    _fields = (("id", None), ("parameters", None), ("inputs", []), ("outputs", None))

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.parameters = _params(self.parameters)


class InferenceResponse(_Base):
    _fields = (("model_name", None), ("model_version", None), ("id", None),
               ("parameters", None), ("outputs", []))

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.parameters = _params(self.parameters)


class MetadataModelResponse(_Base):
    _fields = (("name", None), ("versions", None), ("platform", ""), ("inputs", None),
               ("outputs", None), ("parameters", None))
