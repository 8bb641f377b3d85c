"""Loading libseldon and declaring the C ABI (include/seldon/common.h, oip.h).

Everything here mirrors the C headers one to one; the Pythonic layer lives in
``seldon.oip``. Structs mirror the C field order and types exactly; char
pointers are ``POINTER(c_char)`` rather than ``c_char_p`` so that lengths, not
NUL bytes, bound the strings we read.
"""

import ctypes
import ctypes.util
import os
from ctypes import (
    POINTER,
    Structure,
    c_char,
    c_char_p,
    c_double,
    c_int,
    c_int32,
    c_int64,
    c_size_t,
    c_uint8,
    c_uint32,
    c_uint64,
    c_void_p,
)

# The major version these bindings were written against (SOVERSION).
ABI_MAJOR = 0

# --- Constants (oip.h) ------------------------------------------------------

DT_INVALID = 0
DT_BOOL = 1
DT_UINT8 = 2
DT_UINT16 = 3
DT_UINT32 = 4
DT_UINT64 = 5
DT_INT8 = 6
DT_INT16 = 7
DT_INT32 = 8
DT_INT64 = 9
DT_FP16 = 10
DT_FP32 = 11
DT_FP64 = 12
DT_BYTES = 13

MSG_REQUEST = 1
MSG_RESPONSE = 2

PARAM_BOOL = 1
PARAM_INT64 = 2
PARAM_DOUBLE = 3
PARAM_STRING = 4

SCOPE_MSG = 0
SCOPE_TENSOR = 1
SCOPE_OUTPUT = 2

DECODE_BORROW = 0x1
ENCODE_BINARY_ALL = 0x1
ENCODE_PB_TYPED = 0x2

TENSOR_COPY = 0x0
TENSOR_BORROW = 0x1
TENSOR_ALLOC = 0x2

ENOTFOUND = -7
EINTERNAL = -17


# --- Structs ----------------------------------------------------------------


class seldon_buf(Structure):
    _fields_ = [
        ("data", POINTER(c_uint8)),
        ("len", c_size_t),
        ("cap", c_size_t),
    ]


class seldon_param(Structure):
    _fields_ = [
        ("name", POINTER(c_char)),
        ("name_len", c_size_t),
        ("type", c_int32),
        ("bool_value", c_int32),
        ("int64_value", c_int64),
        ("double_value", c_double),
        ("string_value", POINTER(c_char)),
        ("string_len", c_size_t),
    ]


class seldon_tensor(Structure):
    _fields_ = [
        ("name", POINTER(c_char)),
        ("name_len", c_size_t),
        ("datatype", c_int32),
        ("ndim", c_uint32),
        ("shape", POINTER(c_int64)),
        ("data", c_void_p),
        ("nbytes", c_size_t),
        ("count", c_uint64),
    ]


class seldon_msg(Structure):
    """Opaque."""


# repository.h, runtime.h, pipeline.h, pipeline_host.h

RUNTIME_ABI_MAJOR = 1
RUNTIME_ABI_MINOR = 0
EINVAL = -1
ESTATE = -11
PIPELINE_HOST_OPTIONS_VERSION = 1
REPO_OPTIONS_VERSION = 1


class seldon_repo_options(Structure):
    _fields_ = [
        ("version", c_uint32),
        ("root", c_char_p),
        ("runtime_path", c_char_p),
        ("server_name", c_char_p),
    ]


RUNTIME_LOAD_FN = ctypes.CFUNCTYPE(c_int, c_void_p)
RUNTIME_EXECUTE_FN = ctypes.CFUNCTYPE(c_int, c_void_p, POINTER(c_void_p), c_size_t)
RUNTIME_UNLOAD_FN = ctypes.CFUNCTYPE(None, c_void_p)


class seldon_runtime(Structure):
    _fields_ = [
        ("abi_major", c_uint32),
        ("abi_minor", c_uint32),
        ("name", c_char_p),
        ("flags", c_uint32),
        ("load", RUNTIME_LOAD_FN),
        ("metadata", RUNTIME_LOAD_FN),
        ("execute", RUNTIME_EXECUTE_FN),
        ("unload", RUNTIME_UNLOAD_FN),
    ]


class seldon_pipeline_header(Structure):
    _fields_ = [
        ("name", POINTER(c_char)),
        ("name_len", c_size_t),
        ("value", POINTER(c_char)),
        ("value_len", c_size_t),
    ]


class seldon_pipeline_result(Structure):
    _fields_ = [
        ("pipeline", c_char_p),
        ("request_id", POINTER(c_char)),
        ("request_id_len", c_size_t),
        ("status", c_int32),
        ("error_kind", c_int32),
        ("error", c_char_p),
        ("response", POINTER(seldon_msg)),
        ("headers", POINTER(seldon_pipeline_header)),
        ("headers_count", c_size_t),
    ]


PIPELINE_RESULT_FN = ctypes.CFUNCTYPE(None, c_void_p, POINTER(seldon_pipeline_result))
WAKE_FN = ctypes.CFUNCTYPE(None, c_void_p)


class seldon_pipeline_host_options(Structure):
    _fields_ = [
        ("version", c_uint32),
        ("repo", c_void_p),
        ("on_result", PIPELINE_RESULT_FN),
        ("user_data", c_void_p),
        ("wake", WAKE_FN),
        ("timeout_ms", c_int64),
        ("max_requests", c_uint32),
    ]


# --- Loading ----------------------------------------------------------------


def _find():
    path = os.environ.get("SELDON_LIB")
    if path:
        if not os.path.exists(path):
            raise OSError("SELDON_LIB=%s: no such file" % path)
        return path
    path = ctypes.util.find_library("seldon")
    if path:
        return path
    raise OSError(
        "libseldon not found: set SELDON_LIB to the full path of libseldon.so "
        "(CMake builds it in <build>/libseldon/), or install it where "
        "ctypes.util.find_library('seldon') looks"
    )


def _load():
    path = _find()
    try:
        lib = ctypes.CDLL(path)
    except OSError as e:
        raise OSError("cannot load libseldon from %s: %s" % (path, e)) from e
    lib._seldon_path = path
    return lib


lib = _load()

_MSG_P = POINTER(seldon_msg)

# name: (restype, argtypes). Every function the bindings call is declared here.
_PROTOTYPES = {
    # common.h
    "seldon_version": (c_char_p, []),
    "seldon_version_number": (c_int32, []),
    "seldon_strerror": (c_char_p, [c_int32]),
    "seldon_error_name": (c_char_p, [c_int32]),
    "seldon_last_error": (c_char_p, []),
    "seldon_buf_free": (None, [POINTER(seldon_buf)]),
    # oip.h: datatypes
    "seldon_datatype_name": (c_char_p, [c_int32]),
    "seldon_datatype_from_name": (c_int32, [c_char_p, c_size_t]),
    "seldon_datatype_size": (c_size_t, [c_int32]),
    # lifetime
    "seldon_msg_new": (c_int, [POINTER(_MSG_P), c_int32]),
    "seldon_msg_free": (None, [_MSG_P]),
    "seldon_msg_kind": (c_int32, [_MSG_P]),
    # codecs
    "seldon_msg_decode_json": (c_int, [_MSG_P, c_void_p, c_size_t, c_size_t, c_uint32]),
    "seldon_msg_decode_pb": (c_int, [_MSG_P, c_void_p, c_size_t, c_uint32]),
    "seldon_msg_encode_json": (c_int, [POINTER(seldon_buf), POINTER(c_size_t), _MSG_P, c_uint32]),
    "seldon_msg_encode_pb": (c_int, [POINTER(seldon_buf), _MSG_P, c_uint32]),
    # reading
    "seldon_msg_id": (c_void_p, [_MSG_P, POINTER(c_size_t)]),
    "seldon_msg_model_name": (c_void_p, [_MSG_P, POINTER(c_size_t)]),
    "seldon_msg_model_version": (c_void_p, [_MSG_P, POINTER(c_size_t)]),
    "seldon_msg_tensor_count": (c_size_t, [_MSG_P]),
    "seldon_msg_tensor": (c_int, [POINTER(seldon_tensor), _MSG_P, c_size_t]),
    "seldon_msg_find_tensor": (c_int, [POINTER(c_size_t), _MSG_P, c_char_p, c_size_t]),
    "seldon_msg_is_binary": (c_int32, [_MSG_P, c_size_t]),
    "seldon_msg_is_borrowed": (c_int32, [_MSG_P, c_size_t]),
    "seldon_msg_output_count": (c_size_t, [_MSG_P]),
    "seldon_msg_output_name": (c_void_p, [_MSG_P, c_size_t, POINTER(c_size_t)]),
    "seldon_msg_param_count": (c_size_t, [_MSG_P, c_int32, c_size_t]),
    "seldon_msg_param": (c_int, [POINTER(seldon_param), _MSG_P, c_int32, c_size_t, c_size_t]),
    "seldon_bytes_next": (
        c_int,
        [POINTER(POINTER(c_uint8)), POINTER(c_uint32), POINTER(seldon_tensor), POINTER(c_size_t)],
    ),
    # building
    "seldon_msg_set_id": (c_int, [_MSG_P, c_char_p, c_size_t]),
    "seldon_msg_set_model": (c_int, [_MSG_P, c_char_p, c_size_t, c_char_p, c_size_t]),
    "seldon_msg_add_tensor": (
        c_int,
        [
            POINTER(c_size_t),
            _MSG_P,
            c_char_p,
            c_size_t,
            c_int32,
            POINTER(c_int64),
            c_uint32,
            c_void_p,
            c_size_t,
            c_uint32,
        ],
    ),
    "seldon_msg_set_binary": (c_int, [_MSG_P, c_size_t, c_int32]),
    "seldon_msg_add_output": (c_int, [POINTER(c_size_t), _MSG_P, c_char_p, c_size_t]),
    "seldon_msg_add_param": (c_int, [_MSG_P, c_int32, c_size_t, POINTER(seldon_param)]),
    # repository.h
    "seldon_repo_new": (c_int, [POINTER(c_void_p), POINTER(seldon_repo_options)]),
    "seldon_repo_free": (None, [c_void_p]),
    "seldon_repo_load": (c_int, [c_void_p, c_char_p]),
    "seldon_repo_unload": (c_int, [c_void_p, c_char_p]),
    # runtime.h (for host runtimes written in Python)
    "seldon_infer_request": (_MSG_P, [c_void_p]),
    "seldon_infer_response": (_MSG_P, [c_void_p]),
    "seldon_infer_complete": (None, [c_void_p, c_int32, c_char_p]),
    # pipeline_host.h
    "seldon_pipeline_host_new": (
        c_int,
        [POINTER(c_void_p), c_char_p, c_size_t, POINTER(seldon_pipeline_host_options)],
    ),
    "seldon_pipeline_host_free": (None, [c_void_p]),
    "seldon_pipeline_host_pipeline_count": (c_size_t, [c_void_p]),
    "seldon_pipeline_host_pipeline_name": (c_char_p, [c_void_p, c_size_t]),
    "seldon_pipeline_host_attach_runtime": (
        c_int,
        [c_void_p, c_char_p, POINTER(seldon_runtime), c_void_p],
    ),
    "seldon_pipeline_host_detach": (c_int, [c_void_p, c_char_p]),
    "seldon_pipeline_host_check": (c_int, [c_void_p]),
    "seldon_pipeline_host_push": (
        c_int,
        [
            c_void_p,
            c_char_p,
            c_char_p,
            c_size_t,
            POINTER(seldon_pipeline_header),
            c_size_t,
            _MSG_P,
            c_int64,
            c_int64,
        ],
    ),
    "seldon_pipeline_host_infer": (c_int, [POINTER(_MSG_P), c_void_p, c_char_p, _MSG_P, c_int64]),
    "seldon_pipeline_host_run": (c_int, [c_void_p, c_int64]),
    "seldon_pipeline_host_deadline": (c_int64, [c_void_p]),
    "seldon_pipeline_host_requests": (c_size_t, [c_void_p]),
}

for _name, (_res, _args) in _PROTOTYPES.items():
    try:
        _fn = getattr(lib, _name)
    except AttributeError as e:
        raise OSError("%s does not export %s" % (lib._seldon_path, _name)) from e
    _fn.restype = _res
    _fn.argtypes = _args
del _name, _res, _args, _fn

_major = lib.seldon_version_number() // 10000
if _major != ABI_MAJOR:
    raise OSError(
        "%s is libseldon %s (major %d); these bindings need major %d"
        % (lib._seldon_path, lib.seldon_version().decode(), _major, ABI_MAJOR)
    )


# --- Errors -----------------------------------------------------------------


class SeldonError(Exception):
    """A libseldon call failed.

    code is the negative SELDON_E* value, name its symbol ("SELDON_ESHAPE"),
    message the detailed text from seldon_last_error() (it names the failing
    field, e.g. "inputs[0].data[2]: expected a number").
    """

    def __init__(self, code, message=None, name=None):
        self.code = int(code)
        self.name = name if name is not None else lib.seldon_error_name(self.code).decode()
        if not message:
            message = lib.seldon_strerror(self.code).decode()
        self.message = message
        super().__init__("%s: %s" % (self.name, message))

    def __reduce__(self):
        return (SeldonError, (self.code, self.message, self.name))


def check(rc):
    """Raises SeldonError for a negative rc, with this thread's last error message.

    Must run right after the failing call, on the same thread: the message is
    per-thread and the next libseldon call may overwrite it.
    """
    if rc < 0:
        raw = lib.seldon_last_error()
        raise SeldonError(rc, raw.decode("utf-8", "replace") if raw else "")
    return rc

