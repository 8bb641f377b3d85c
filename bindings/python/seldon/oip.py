"""Open Inference Protocol messages: a thin Pythonic layer over include/seldon/oip.h.

Memory model. A ``Message`` owns one C ``seldon_msg`` through a private handle.
Everything that points into the message's memory holds that handle: ``Tensor``
objects and the numpy arrays returned by ``Tensor.numpy()``. The C message is
freed when the last of them goes, so an array stays valid after the user drops
(or closes) the ``Message``. Python objects whose memory the C message points
into (arrays added with zero copy, the body decoded with SELDON_DECODE_BORROW)
are kept on the handle, so they outlive the C message.

Thread safety: as in C, one message is used by one thread at a time; distinct
messages may be used from different threads.
"""

import ctypes
import math
import struct
from collections import namedtuple
from ctypes import POINTER, byref, c_char, c_int64, c_size_t, c_uint8, c_uint32, c_void_p

import numpy as np

from . import _lib as C
from ._lib import SeldonError, check, lib

__all__ = [
    "Message",
    "Tensor",
    "RequestedOutput",
    "SeldonError",
    "version",
    "version_number",
    "datatype_name",
    "datatype_from_name",
    "datatype_size",
    "numpy_dtype",
]

_LE_U32 = struct.Struct("<I")
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1

# Tensor data is stored in wire order, which is little-endian.
_NP_DTYPES = {
    C.DT_BOOL: np.dtype(np.bool_),
    C.DT_UINT8: np.dtype("<u1"),
    C.DT_UINT16: np.dtype("<u2"),
    C.DT_UINT32: np.dtype("<u4"),
    C.DT_UINT64: np.dtype("<u8"),
    C.DT_INT8: np.dtype("<i1"),
    C.DT_INT16: np.dtype("<i2"),
    C.DT_INT32: np.dtype("<i4"),
    C.DT_INT64: np.dtype("<i8"),
    C.DT_FP16: np.dtype("<f2"),
    C.DT_FP32: np.dtype("<f4"),
    C.DT_FP64: np.dtype("<f8"),
}

_FROM_KIND = {
    ("b", 1): C.DT_BOOL,
    ("u", 1): C.DT_UINT8,
    ("u", 2): C.DT_UINT16,
    ("u", 4): C.DT_UINT32,
    ("u", 8): C.DT_UINT64,
    ("i", 1): C.DT_INT8,
    ("i", 2): C.DT_INT16,
    ("i", 4): C.DT_INT32,
    ("i", 8): C.DT_INT64,
    ("f", 2): C.DT_FP16,
    ("f", 4): C.DT_FP32,
    ("f", 8): C.DT_FP64,
}

_KINDS = {"request": C.MSG_REQUEST, "response": C.MSG_RESPONSE}
_KIND_NAMES = {v: k for k, v in _KINDS.items()}


# --- Small helpers ----------------------------------------------------------


def _addr(p):
    """The address held by a ctypes pointer (0 for NULL)."""
    return ctypes.cast(p, c_void_p).value or 0


def _read(addr, n):
    """A bytes copy of n bytes at addr (string_at takes a C int length; this does not)."""
    if n == 0:
        return b""
    return (c_char * n).from_address(addr).raw


def _text(b):
    return b.decode("utf-8", "surrogateescape")


def _enc(s, what):
    if isinstance(s, str):
        return s.encode("utf-8", "surrogateescape")
    if isinstance(s, (bytes, bytearray, memoryview)):
        return bytes(s)
    raise TypeError("%s must be str or bytes, not %s" % (what, type(s).__name__))


def _kind(kind):
    if isinstance(kind, str):
        try:
            return _KINDS[kind]
        except KeyError:
            raise ValueError("kind must be 'request' or 'response', not %r" % kind) from None
    if kind in _KIND_NAMES:
        return int(kind)
    raise ValueError("kind must be 'request' or 'response', not %r" % (kind,))


def _dt(datatype):
    """A datatype given as a name ("FP32") or a SELDON_DT_* number, as the number."""
    if isinstance(datatype, str):
        b = datatype.encode("ascii", "replace")
        dt = lib.seldon_datatype_from_name(b, len(b))
        if dt == C.DT_INVALID:
            raise ValueError("unknown datatype %r" % datatype)
        return dt
    dt = int(datatype)
    if not C.DT_BOOL <= dt <= C.DT_BYTES:
        raise ValueError("unknown datatype %r" % (datatype,))
    return dt


# --- Library-wide functions -------------------------------------------------


def version():
    """The loaded library's version string, e.g. "0.1.0"."""
    return lib.seldon_version().decode()


def version_number():
    """The loaded library's SELDON_VERSION_NUMBER (major * 10000 + minor * 100 + patch)."""
    return lib.seldon_version_number()


def datatype_name(datatype):
    """The protocol's name for a SELDON_DT_* number ("FP32"); "INVALID" for an unknown one."""
    return lib.seldon_datatype_name(int(datatype)).decode()


def datatype_from_name(name):
    """The SELDON_DT_* number for a name ("FP32"); 0 (SELDON_DT_INVALID) for an unknown one."""
    b = _enc(name, "name")
    return lib.seldon_datatype_from_name(b, len(b))


def datatype_size(datatype):
    """Bytes per element of a datatype (name or number); 0 for BYTES and unknown types."""
    if isinstance(datatype, str):
        datatype = datatype_from_name(datatype)
    return lib.seldon_datatype_size(int(datatype))


def numpy_dtype(datatype):
    """The numpy dtype of a fixed-size datatype (name or number); object for BYTES."""
    dt = _dt(datatype)
    return np.dtype(object) if dt == C.DT_BYTES else _NP_DTYPES[dt]


# --- Parameters ---------------------------------------------------------------


def _param_value(p):
    if p.type == C.PARAM_BOOL:
        return bool(p.bool_value)
    if p.type == C.PARAM_INT64:
        return int(p.int64_value)
    if p.type == C.PARAM_DOUBLE:
        return float(p.double_value)
    if p.type == C.PARAM_STRING:
        return _text(_read(_addr(p.string_value), p.string_len))
    raise SeldonError(C.EINTERNAL, "parameter of unknown type %d" % p.type)


def _read_params(h, scope, index):
    out = {}
    p = C.seldon_param()
    n = lib.seldon_msg_param_count(h.ptr, scope, index)
    for i in range(n):
        check(lib.seldon_msg_param(byref(p), h.ptr, scope, index, i))
        out[_text(_read(_addr(p.name), p.name_len))] = _param_value(p)
    return out


def _add_param(h, scope, index, name, value):
    name_b = _enc(name, "parameter name")
    p = C.seldon_param()
    keep = []  # the buffers p points into, alive until the call returns
    nbuf = ctypes.create_string_buffer(name_b, len(name_b) + 1)
    keep.append(nbuf)
    p.name = ctypes.cast(nbuf, POINTER(c_char))
    p.name_len = len(name_b)
    # bool before int: bool is an int subclass.
    if isinstance(value, (bool, np.bool_)):
        p.type = C.PARAM_BOOL
        p.bool_value = 1 if value else 0
    elif isinstance(value, (int, np.integer)):
        v = int(value)
        if not _INT64_MIN <= v <= _INT64_MAX:
            raise OverflowError("parameter %r: %d does not fit in int64" % (name, v))
        p.type = C.PARAM_INT64
        p.int64_value = v
    elif isinstance(value, (float, np.floating)):
        p.type = C.PARAM_DOUBLE
        p.double_value = float(value)
    elif isinstance(value, (str, bytes, bytearray, memoryview)):
        sb = _enc(value, "parameter value")
        sbuf = ctypes.create_string_buffer(sb, len(sb) + 1)
        keep.append(sbuf)
        p.type = C.PARAM_STRING
        p.string_value = ctypes.cast(sbuf, POINTER(c_char))
        p.string_len = len(sb)
    else:
        raise TypeError(
            "parameter %r: value must be bool, int, float or str, not %s"
            % (name, type(value).__name__)
        )
    check(lib.seldon_msg_add_param(h.ptr, scope, index, byref(p)))


# --- The handle -------------------------------------------------------------


class _Handle:
    """Owns one seldon_msg. Whatever points into the message holds a reference to this."""

    __slots__ = ("ptr", "keep", "__weakref__")

    def __init__(self, kind):
        self.ptr = None
        self.keep = []  # Python objects the C message points into
        ptr = POINTER(C.seldon_msg)()
        check(lib.seldon_msg_new(byref(ptr), kind))
        self.ptr = ptr

    def lend(self, obj):
        """Keeps obj alive while the C message may point at its memory."""
        self.keep.append(obj)

    def __del__(self, _free=lib.seldon_msg_free):
        ptr, self.ptr = self.ptr, None
        if ptr:
            _free(ptr)


# --- Tensors ------------------------------------------------------------------


class Tensor:
    """A view of one tensor of a Message (a request's input or a response's output).

    Holds the message's memory alive. Obtain it from Message.tensors, msg[name]
    or Message.add_tensor().
    """

    __slots__ = ("_h", "index", "_t")

    def __init__(self, handle, index):
        self._h = handle
        self.index = index
        self._t = C.seldon_tensor()
        check(lib.seldon_msg_tensor(byref(self._t), handle.ptr, index))

    @property
    def name(self):
        return _text(_read(_addr(self._t.name), self._t.name_len))

    @property
    def datatype(self):
        """The protocol datatype name, e.g. "FP32"."""
        return datatype_name(self._t.datatype)

    @property
    def datatype_id(self):
        """The SELDON_DT_* number."""
        return self._t.datatype

    @property
    def shape(self):
        t = self._t
        return tuple(int(t.shape[i]) for i in range(t.ndim))

    @property
    def ndim(self):
        return self._t.ndim

    @property
    def count(self):
        """The element count (1 for 0-d)."""
        return int(self._t.count)

    @property
    def nbytes(self):
        return int(self._t.nbytes)

    @property
    def data_ptr(self):
        """The address of the tensor's data in memory (0 when it has none)."""
        return self._t.data or 0

    @property
    def parameters(self):
        """The tensor's parameters, as a new dict."""
        return _read_params(self._h, C.SCOPE_TENSOR, self.index)

    def set_parameter(self, name, value):
        _add_param(self._h, C.SCOPE_TENSOR, self.index, name, value)

    @property
    def binary(self):
        """Whether the tensor travels through the JSON binary data extension."""
        return bool(lib.seldon_msg_is_binary(self._h.ptr, self.index))

    @binary.setter
    def binary(self, on):
        check(lib.seldon_msg_set_binary(self._h.ptr, self.index, 1 if on else 0))

    @property
    def borrowed(self):
        """Whether the data lives in memory the message borrowed (a user array, a decoded body)."""
        return bool(lib.seldon_msg_is_borrowed(self._h.ptr, self.index))

    def numpy(self):
        """The tensor as a numpy array of its shape.

        Fixed-size datatypes: a zero-copy view of the message's memory that keeps
        the message alive. It is writable when the message holds the data itself,
        read-only when the data is borrowed (the C API forbids writes there).
        BYTES: a new object array of bytes.
        """
        t = self._t
        shape = self.shape
        if t.datatype == C.DT_BYTES:
            return self._bytes_array(shape)
        dtype = _NP_DTYPES[t.datatype]
        if t.nbytes == 0 or not t.data:
            return np.empty(shape, dtype)
        buf = (c_char * t.nbytes).from_address(t.data)
        buf._seldon_owner = self._h  # the array's base keeps the C message alive
        arr = np.frombuffer(buf, dtype=dtype, count=int(t.count)).reshape(shape)
        if self.borrowed:
            arr.flags.writeable = False
        return arr

    def _bytes_array(self, shape):
        elem = POINTER(c_uint8)()
        elem_len = c_uint32()
        offset = c_size_t(0)
        items = []
        while True:
            rc = lib.seldon_bytes_next(byref(elem), byref(elem_len), byref(self._t), byref(offset))
            if rc == 0:
                break
            check(rc)
            items.append(_read(_addr(elem), elem_len.value))
        arr = np.empty(len(items), dtype=object)
        arr[:] = items
        return arr.reshape(shape)

    def __array__(self, dtype=None):
        arr = self.numpy()
        return arr if dtype is None else arr.astype(dtype)

    def __repr__(self):
        return "<seldon.Tensor %r %s %s>" % (self.name, self.datatype, list(self.shape))


RequestedOutput = namedtuple("RequestedOutput", ["name", "parameters"])
RequestedOutput.__doc__ = "An output a request asks for: its name and parameters (a dict)."


# --- Preparing data for add_tensor ----------------------------------------------


def _to_array(value, dt):
    if isinstance(value, np.ndarray):
        return value
    if dt == C.DT_BYTES:
        return np.array(value, dtype=object)
    arr = np.asarray(value)
    if arr.dtype.kind in "SU":
        # Keep str/bytes elements intact: 'S' arrays drop trailing NUL bytes.
        arr = np.array(value, dtype=object)
    return arr


def _infer_dt(arr):
    if arr.dtype.kind in "OSU":
        return C.DT_BYTES
    dt = _FROM_KIND.get((arr.dtype.kind, arr.dtype.itemsize))
    if dt is None:
        raise TypeError("no OIP datatype for numpy dtype %s" % arr.dtype)
    return dt


def _views_handle(arr, h):
    """Whether arr is a view of message h's own memory. Borrowing it would make h keep itself
    alive through the array: a cycle the garbage collector cannot see through numpy's base."""
    base = arr
    while base is not None:
        if getattr(base, "_seldon_owner", None) is h:
            return True
        base = getattr(base, "base", None)
    return False


def _pack_bytes(arr):
    """BYTES wire form: each element as a 4-byte little-endian length, then its bytes."""
    parts = []
    for i, e in enumerate(arr.ravel(order="C").tolist()):
        if isinstance(e, str):
            b = e.encode("utf-8")
        elif isinstance(e, (bytes, bytearray, memoryview)):
            b = bytes(e)
        else:
            raise TypeError("BYTES element %d: expected str or bytes, not %s" % (i, type(e).__name__))
        if len(b) > 0xFFFFFFFF:
            raise OverflowError("BYTES element %d: longer than 4 GiB" % i)
        parts.append(_LE_U32.pack(len(b)))
        parts.append(b)
    return b"".join(parts)


# --- Messages ---------------------------------------------------------------


class Message:
    """An inference request or response (a C seldon_msg).

    Frees the C message when dropped or closed, once no Tensor or numpy view of
    it remains. Usable as a context manager.
    """

    def __init__(self, kind="request"):
        self._h = _Handle(_kind(kind))

    @classmethod
    def request(cls):
        return cls("request")

    @classmethod
    def response(cls):
        return cls("response")

    # -- lifetime --

    def close(self):
        """Drops this object's hold on the C message; its memory goes with the last view of it."""
        self._h = None

    def __del__(self):
        self._h = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    @property
    def closed(self):
        return self._h is None

    @property
    def _handle(self):
        h = self._h
        if h is None:
            raise ValueError("the message is closed")
        return h

    @property
    def kind(self):
        """ "request" or "response"."""
        return _KIND_NAMES[lib.seldon_msg_kind(self._handle.ptr)]

    # -- codecs --

    @classmethod
    def decode_json(cls, body, kind="request", json_len=0):
        """Decodes a REST JSON body.

        json_len is the Inference-Header-Content-Length (the JSON part's length
        when binary tensor data follows it); 0 when the whole body is JSON.
        """
        msg = cls(kind)
        h = msg._handle
        data, addr = msg._lend_body(body)
        check(lib.seldon_msg_decode_json(h.ptr, addr, len(data), json_len, C.DECODE_BORROW))
        return msg

    @classmethod
    def decode_pb(cls, body, kind="request"):
        """Decodes a protobuf ModelInferRequest (kind "request") or ModelInferResponse."""
        msg = cls(kind)
        h = msg._handle
        data, addr = msg._lend_body(body)
        check(lib.seldon_msg_decode_pb(h.ptr, addr, len(data), C.DECODE_BORROW))
        return msg

    def _lend_body(self, body):
        # Decoding with SELDON_DECODE_BORROW lets tensors point into the body, which
        # must then stay alive and unchanged: bytes are immutable and are kept on
        # the handle; anything mutable is copied to bytes first.
        if isinstance(body, str):
            body = body.encode("utf-8")
        elif not isinstance(body, bytes):
            body = bytes(body)
        cbody = ctypes.c_char_p(body)  # points at the bytes object's own storage
        addr = ctypes.cast(cbody, c_void_p).value or 0
        self._handle.lend(body)
        return body, addr

    def encode_json(self, binary_all=False):
        """The REST JSON body. With binary tensors it includes their binary part: use encode_json_ext()."""
        return self.encode_json_ext(binary_all)[0]

    def encode_json_ext(self, binary_all=False):
        """(body, json_len): json_len is the JSON part's length, the Inference-Header-Content-Length
        to send when binary tensor data follows it (json_len < len(body))."""
        h = self._handle
        buf = C.seldon_buf()
        json_len = c_size_t(0)
        flags = C.ENCODE_BINARY_ALL if binary_all else 0
        try:
            check(lib.seldon_msg_encode_json(byref(buf), byref(json_len), h.ptr, flags))
            out = _read(_addr(buf.data), buf.len)
        finally:
            lib.seldon_buf_free(byref(buf))
        return out, json_len.value

    def encode_pb(self, typed=False):
        """The protobuf ModelInferRequest / ModelInferResponse. typed: use the typed *_contents
        fields instead of raw_*_contents."""
        h = self._handle
        buf = C.seldon_buf()
        flags = C.ENCODE_PB_TYPED if typed else 0
        try:
            check(lib.seldon_msg_encode_pb(byref(buf), h.ptr, flags))
            out = _read(_addr(buf.data), buf.len)
        finally:
            lib.seldon_buf_free(byref(buf))
        return out

    # -- identity --

    def _str(self, fn):
        n = c_size_t(0)
        p = fn(self._handle.ptr, byref(n))
        return _text(_read(p or 0, n.value))

    @property
    def id(self):
        return self._str(lib.seldon_msg_id)

    @id.setter
    def id(self, value):
        b = _enc(value, "id")
        check(lib.seldon_msg_set_id(self._handle.ptr, b, len(b)))

    @property
    def model_name(self):
        return self._str(lib.seldon_msg_model_name)

    @model_name.setter
    def model_name(self, value):
        self._set_model(_enc(value, "model_name"), _enc(self.model_version, "model_version"))

    @property
    def model_version(self):
        return self._str(lib.seldon_msg_model_version)

    @model_version.setter
    def model_version(self, value):
        self._set_model(_enc(self.model_name, "model_name"), _enc(value, "model_version"))

    def _set_model(self, name, ver):
        check(lib.seldon_msg_set_model(self._handle.ptr, name, len(name), ver, len(ver)))

    # -- parameters --

    @property
    def parameters(self):
        """The message-level parameters, as a new dict (change them with set_parameter())."""
        return _read_params(self._handle, C.SCOPE_MSG, 0)

    def set_parameter(self, name, value, tensor=None, output=None):
        """Adds or replaces a parameter (bool, int, float or str) on the message, on a tensor
        (tensor= its index, name or Tensor) or on a requested output (output= index or name)."""
        h = self._handle
        if tensor is not None and output is not None:
            raise ValueError("pass tensor= or output=, not both")
        if tensor is not None:
            _add_param(h, C.SCOPE_TENSOR, self._tensor_index(tensor), name, value)
        elif output is not None:
            _add_param(h, C.SCOPE_OUTPUT, self._output_index(output), name, value)
        else:
            _add_param(h, C.SCOPE_MSG, 0, name, value)

    # -- tensors --

    def __len__(self):
        return lib.seldon_msg_tensor_count(self._handle.ptr)

    @property
    def tensors(self):
        """The tensors (a request's inputs, a response's outputs), in order."""
        h = self._handle
        return [Tensor(h, i) for i in range(lib.seldon_msg_tensor_count(h.ptr))]

    def __iter__(self):
        return iter(self.tensors)

    def _find(self, name):
        b = _enc(name, "tensor name")
        idx = c_size_t(0)
        rc = lib.seldon_msg_find_tensor(byref(idx), self._handle.ptr, b, len(b))
        if rc == C.ENOTFOUND:
            return None
        check(rc)
        return idx.value

    def _tensor_index(self, tensor):
        if isinstance(tensor, Tensor):
            if tensor._h is not self._h:
                raise ValueError("the tensor belongs to another message")
            return tensor.index
        if isinstance(tensor, (str, bytes)):
            idx = self._find(tensor)
            if idx is None:
                raise KeyError(tensor)
            return idx
        idx = int(tensor)
        if not 0 <= idx < len(self):
            raise IndexError("tensor index %d out of range" % idx)
        return idx

    def __getitem__(self, key):
        """msg["name"]: the first tensor of that name; msg[i]: tensor i."""
        if isinstance(key, (str, bytes)):
            idx = self._find(key)
            if idx is None:
                raise KeyError(key)
            return Tensor(self._handle, idx)
        n = len(self)
        i = int(key)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("tensor index %d out of range" % key)
        return Tensor(self._handle, i)

    def __contains__(self, name):
        return self._find(name) is not None

    def get(self, name, default=None):
        idx = self._find(name)
        return default if idx is None else Tensor(self._handle, idx)

    def add_tensor(self, name, array, datatype=None, binary=False, parameters=None, copy=False):
        """Adds a tensor from a numpy array, a (nested) list or a scalar; returns its Tensor.

        The datatype is inferred from the dtype unless given (a name like "FP32"):
        float32 -> FP32, int64 -> INT64, bool -> BOOL, float16 -> FP16, ...;
        str/bytes/object -> BYTES (str encoded as UTF-8). A C-contiguous array of the
        right dtype is added without a copy: the message keeps a reference to it and
        reads it in place, so do not modify it while the message is in use (or pass
        copy=True). Anything else is converted and copied into the message.
        """
        h = self._handle
        name_b = _enc(name, "tensor name")
        dt = None if datatype is None else _dt(datatype)
        arr = _to_array(array, dt)
        if dt is None:
            dt = _infer_dt(arr)

        borrow = False
        if dt == C.DT_BYTES:
            if arr.dtype.kind not in "OSU":
                raise TypeError("BYTES tensor %r from numpy dtype %s" % (name, arr.dtype))
            data = _pack_bytes(arr)
            ptr, nbytes = data, len(data)
        else:
            target = _NP_DTYPES[dt]
            if arr.dtype != target:
                if arr.dtype.kind in "OSU" or not np.can_cast(arr.dtype, target, "same_kind"):
                    raise TypeError(
                        "tensor %r: cannot convert numpy %s to %s"
                        % (name, arr.dtype, datatype_name(dt))
                    )
                arr = arr.astype(target)
            elif arr.flags.c_contiguous and not copy and not _views_handle(arr, h):
                borrow = True
            if not arr.flags.c_contiguous:
                arr = np.ascontiguousarray(arr)
            if dt == C.DT_BOOL and arr.size and arr.view(np.uint8).max() > 1:
                # A bool view of other bytes; the wire wants 0 or 1, and the library does not check.
                arr = arr.view(np.uint8) != 0
                borrow = False
            ptr, nbytes = arr.ctypes.data, arr.nbytes

        shape = arr.shape
        ndim = len(shape)
        cshape = (c_int64 * ndim)(*shape) if ndim else None
        flags = C.TENSOR_BORROW if borrow else C.TENSOR_COPY
        idx = c_size_t(0)
        check(
            lib.seldon_msg_add_tensor(
                byref(idx), h.ptr, name_b, len(name_b), dt, cshape, ndim, ptr, nbytes, flags
            )
        )
        if borrow:
            h.lend(arr)
        index = idx.value
        if binary:
            check(lib.seldon_msg_set_binary(h.ptr, index, 1))
        for k, v in (parameters or {}).items():
            _add_param(h, C.SCOPE_TENSOR, index, k, v)
        return Tensor(h, index)

    def alloc_tensor(self, name, shape, datatype, binary=False, parameters=None):
        """Adds a zero-filled tensor of a fixed-size datatype that the message allocates
        (SELDON_TENSOR_ALLOC); fill it in place through tensor.numpy(), which is writable."""
        h = self._handle
        name_b = _enc(name, "tensor name")
        dt = _dt(datatype)
        if dt == C.DT_BYTES:
            raise TypeError("alloc_tensor: BYTES has no fixed size; use add_tensor()")
        shape = tuple(int(d) for d in shape)
        ndim = len(shape)
        count = math.prod(shape)
        # A negative dimension goes to the library as is, which reports it (SELDON_ESHAPE).
        nbytes = count * _NP_DTYPES[dt].itemsize if min(shape, default=0) >= 0 else 0
        cshape = (c_int64 * ndim)(*shape) if ndim else None
        idx = c_size_t(0)
        check(
            lib.seldon_msg_add_tensor(
                byref(idx), h.ptr, name_b, len(name_b), dt, cshape, ndim, None, nbytes,
                C.TENSOR_ALLOC,
            )
        )
        if binary:
            check(lib.seldon_msg_set_binary(h.ptr, idx.value, 1))
        for k, v in (parameters or {}).items():
            _add_param(h, C.SCOPE_TENSOR, idx.value, k, v)
        return Tensor(h, idx.value)

    # -- requested outputs --

    @property
    def requested_outputs(self):
        """The outputs a request asks for (empty: all), as RequestedOutput(name, parameters)."""
        h = self._handle
        out = []
        n = c_size_t(0)
        for i in range(lib.seldon_msg_output_count(h.ptr)):
            p = lib.seldon_msg_output_name(h.ptr, i, byref(n))
            out.append(
                RequestedOutput(_text(_read(p or 0, n.value)), _read_params(h, C.SCOPE_OUTPUT, i))
            )
        return out

    def _output_index(self, output):
        if isinstance(output, (str, bytes)):
            want = output if isinstance(output, str) else _text(output)
            for i, o in enumerate(self.requested_outputs):
                if o.name == want:
                    return i
            raise KeyError(output)
        return int(output)

    def add_output(self, name, parameters=None):
        """Asks for an output (requests only); returns its index."""
        h = self._handle
        b = _enc(name, "output name")
        idx = c_size_t(0)
        check(lib.seldon_msg_add_output(byref(idx), h.ptr, b, len(b)))
        for k, v in (parameters or {}).items():
            _add_param(h, C.SCOPE_OUTPUT, idx.value, k, v)
        return idx.value

    def __repr__(self):
        if self._h is None:
            return "<seldon.Message closed>"
        return "<seldon.Message %s model=%r id=%r tensors=%d>" % (
            self.kind,
            self.model_name,
            self.id,
            len(self),
        )
