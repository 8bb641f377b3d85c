"""Pipelines in process: include/seldon/pipeline_host.h from Python.

A ``Pipeline`` is built from the text of a manifest holding Pipeline
resources. Its steps call models by name: a Python function given in
``steps`` (a dict of tensor name -> numpy array in, the same out), or the
model of that name in a ``Repository`` (builtin runtimes, xgboost, runtime
plugins)::

    repo = seldon.Repository("examples/models")
    repo.load("conditional"); repo.load("mul10")
    pipe = seldon.Pipeline(yaml_text, repository=repo,
                           steps={"add10": lambda t: {"OUTPUT": t["INPUT"] + 10}})
    out = pipe.infer({"CHOICE": np.array([0], np.int32),
                      "INPUT0": np.array([1, 2, 3, 4], np.float32),
                      "INPUT1": np.array([5, 6, 7, 8], np.float32)})
    out["OUTPUT"]          # array([10., 20., 30., 40.], dtype=float32)

``infer()`` runs one request to its end (every step must answer at once, as
Python functions and the builtin models do). ``push()``, ``run()`` and
``results()`` drive requests that wait on time: batch windows, join windows,
timeouts. Time is ``time.monotonic_ns()`` unless ``now_ns`` is passed.

Arrays come in and go out as copies: a step function may keep what it gets,
and the caller owns what ``infer()`` returns.

Thread safety: one Pipeline, one thread at a time (the C host's rule).
"""

import time
import traceback
from ctypes import POINTER, byref, c_char, c_void_p, cast

import numpy as np

from . import _lib as C
from ._lib import SeldonError, check, lib
from .oip import Message, Tensor

__all__ = ["Repository", "Pipeline", "PipelineResult"]


class _Borrowed:
    """A message the C side owns, seen through the oip classes (never freed here)."""

    __slots__ = ("ptr", "keep", "__weakref__")

    def __init__(self, ptr):
        self.ptr = ptr
        self.keep = []

    def lend(self, obj):
        self.keep.append(obj)


def _read(ptr):
    """The tensors of a C message as a dict of name -> new numpy array."""
    h = _Borrowed(ptr)
    out = {}
    for i in range(lib.seldon_msg_tensor_count(ptr)):
        t = Tensor(h, i)
        arr = t.numpy()
        out[t.name] = arr if t.datatype == "BYTES" else np.array(arr, copy=True)
    return out


def _write(ptr, tensors, what):
    """Adds tensors (a dict of name -> array-like) to a C message, copying the data."""
    if not isinstance(tensors, dict):
        raise TypeError("%s: expected a dict of tensor name -> array, got %s"
                        % (what, type(tensors).__name__))
    m = Message.__new__(Message)
    m._h = _Borrowed(ptr)
    for name, value in tensors.items():
        m.add_tensor(name, value, copy=True)


def _request(tensors):
    """A new C request message holding tensors; the caller passes ownership on to C."""
    m = Message.request()
    for name, value in tensors.items():
        m.add_tensor(name, value, copy=True)
    h = m._h
    ptr, h.ptr = h.ptr, None  # ownership goes to the C call
    return ptr


class Repository:
    """A model repository (include/seldon/repository.h): MLServer-style model folders under root."""

    def __init__(self, root, runtime_path=None):
        opts = C.seldon_repo_options(
            C.REPO_OPTIONS_VERSION,
            str(root).encode(),
            runtime_path.encode() if runtime_path else None,
            None,
        )
        self._ptr = None
        ptr = c_void_p()
        check(lib.seldon_repo_new(byref(ptr), byref(opts)))
        self._ptr = ptr

    def load(self, *names):
        """Loads (or reloads) models by folder name."""
        for name in names:
            check(lib.seldon_repo_load(self._ptr, name.encode()))

    def unload(self, name):
        check(lib.seldon_repo_unload(self._ptr, name.encode()))

    def __del__(self, _free=lib.seldon_repo_free):
        ptr, self._ptr = getattr(self, "_ptr", None), None
        if ptr:
            _free(ptr)


class PipelineResult:
    """How one pushed request ended: outputs (a dict of arrays) or an error."""

    __slots__ = ("pipeline", "request_id", "status", "error_kind", "error", "outputs", "headers")

    def __init__(self, pipeline, request_id, status, error_kind, error, outputs, headers):
        self.pipeline = pipeline
        self.request_id = request_id
        self.status = status
        self.error_kind = error_kind
        self.error = error
        self.outputs = outputs
        self.headers = headers

    @property
    def ok(self):
        return self.status == 0

    def __repr__(self):
        if self.ok:
            return "<PipelineResult %s %s: %s>" % (self.pipeline, self.request_id,
                                                   sorted(self.outputs))
        return "<PipelineResult %s %s: error %r>" % (self.pipeline, self.request_id, self.error)


class _PyRuntime:
    """A Python function behind the runtime ABI: one C runtime table per function."""

    def __init__(self, name, fn):
        self.name = name
        self.fn = fn
        self.calls = 0
        # The C side keeps pointers to these: they live as long as this object.
        self._load = C.RUNTIME_LOAD_FN(lambda model: 0)
        self._execute = C.RUNTIME_EXECUTE_FN(self._run)
        self._unload = C.RUNTIME_UNLOAD_FN(lambda model: None)
        self.table = C.seldon_runtime(
            C.RUNTIME_ABI_MAJOR, C.RUNTIME_ABI_MINOR, b"python", 0,
            self._load, C.RUNTIME_LOAD_FN(), self._execute, self._unload,
        )

    def _run(self, model, infers, count):
        for i in range(count):
            inf = infers[i]
            try:
                self.calls += 1
                outputs = self.fn(_read(lib.seldon_infer_request(inf)))
                _write(lib.seldon_infer_response(inf), outputs, "step %s" % self.name)
            except Exception as e:  # noqa: BLE001 - every error goes back to the pipeline
                msg = "%s: %s" % (type(e).__name__, e)
                if not isinstance(e, (SeldonError, TypeError, ValueError, KeyError)):
                    msg += "\n" + traceback.format_exc(limit=3)
                lib.seldon_infer_complete(inf, C.EINVAL, msg.encode("utf-8", "replace"))
                continue
            lib.seldon_infer_complete(inf, 0, None)
        return 0


class Pipeline:
    """One or more pipelines (the Pipeline resources of a manifest) run in this process.

    manifest: the YAML (or JSON) text. steps: a dict of model name -> Python
    function (dict of arrays in, dict of arrays out). repository: a Repository
    whose models serve the steps not given in steps. timeout_ms: a request not
    answered by then ends with a timeout (0: never).
    """

    def __init__(self, manifest, steps=None, repository=None, timeout_ms=0):
        if isinstance(manifest, str):
            manifest = manifest.encode("utf-8")
        self._ptr = None
        self._repo = repository  # must outlive the host
        self._results = []
        self._runtimes = {}
        self._on_result = C.PIPELINE_RESULT_FN(self._result)
        opts = C.seldon_pipeline_host_options()
        opts.version = C.PIPELINE_HOST_OPTIONS_VERSION
        opts.repo = repository._ptr if repository is not None else None
        opts.on_result = self._on_result
        opts.timeout_ms = int(timeout_ms)
        ptr = c_void_p()
        check(lib.seldon_pipeline_host_new(byref(ptr), manifest, len(manifest), byref(opts)))
        self._ptr = ptr
        for name, fn in (steps or {}).items():
            self.attach(name, fn)

    def close(self):
        """Frees the host: live requests are dropped, Python steps released."""
        ptr, self._ptr = self._ptr, None
        if ptr:
            lib.seldon_pipeline_host_free(ptr)

    def __del__(self):
        if getattr(self, "_ptr", None):
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    @property
    def _handle(self):
        if not self._ptr:
            raise ValueError("the pipeline is closed")
        return self._ptr

    @property
    def names(self):
        """The pipelines' names, in manifest order (the first is the default)."""
        h = self._handle
        return [lib.seldon_pipeline_host_pipeline_name(h, i).decode()
                for i in range(lib.seldon_pipeline_host_pipeline_count(h))]

    def attach(self, name, fn):
        """Makes steps called name run fn (dict of arrays in, dict of arrays out)."""
        if not callable(fn):
            raise TypeError("step %s: expected a callable, got %s" % (name, type(fn).__name__))
        rt = _PyRuntime(name, fn)
        check(lib.seldon_pipeline_host_attach_runtime(self._handle, name.encode(),
                                                      byref(rt.table), None))
        self._runtimes[name] = rt  # after the C side let the old one go

    def calls(self, name):
        """How many times the Python step name has run."""
        return self._runtimes[name].calls

    def check(self):
        """Raises SeldonError naming the first step that has no model."""
        check(lib.seldon_pipeline_host_check(self._handle))

    def infer(self, inputs, pipeline=None, now_ns=None):
        """Runs one request to its end; returns the outputs (dict of name -> array).

        Raises SeldonError with "<model> : <error>" when a step fails, and
        SELDON_ESTATE when the request cannot end at once (a window is open).
        """
        h = self._handle
        req = _request(inputs)
        out = POINTER(C.seldon_msg)()
        check(lib.seldon_pipeline_host_infer(
            byref(out), h, pipeline.encode() if pipeline else None, req,
            time.monotonic_ns() if now_ns is None else int(now_ns)))
        try:
            return _read(out)
        finally:
            lib.seldon_msg_free(out)

    def push(self, request_id, inputs, pipeline=None, headers=None, timeout_ms=0, now_ns=None):
        """Starts a request; its PipelineResult arrives in results() (at once when it can end)."""
        h = self._handle
        rid = request_id.encode() if isinstance(request_id, str) else bytes(request_id)
        hdrs, keep = None, []
        if headers:
            hdrs = (C.seldon_pipeline_header * len(headers))()
            for i, (k, v) in enumerate(headers.items()):
                kb, vb = k.encode(), v.encode()
                keep += [kb, vb]
                hdrs[i].name = cast(kb, POINTER(c_char))
                hdrs[i].name_len = len(kb)
                hdrs[i].value = cast(vb, POINTER(c_char))
                hdrs[i].value_len = len(vb)
        req = _request(inputs)
        check(lib.seldon_pipeline_host_push(
            h, pipeline.encode() if pipeline else None, rid, len(rid), hdrs,
            len(headers) if headers else 0, req, int(timeout_ms),
            time.monotonic_ns() if now_ns is None else int(now_ns)))

    def run(self, now_ns=None):
        """Lets time pass to now_ns: windows that close and timeouts take effect."""
        check(lib.seldon_pipeline_host_run(
            self._handle, time.monotonic_ns() if now_ns is None else int(now_ns)))

    @property
    def deadline(self):
        """When run() has work next (ns), or None."""
        d = lib.seldon_pipeline_host_deadline(self._handle)
        return None if d == (1 << 63) - 1 else d

    @property
    def requests(self):
        """Requests pushed and not yet ended."""
        return lib.seldon_pipeline_host_requests(self._handle)

    def results(self):
        """The results that arrived since the last call (a list of PipelineResult)."""
        out, self._results = self._results, []
        return out

    def _result(self, user_data, r):
        r = r.contents
        rid = bytes(r.request_id[: r.request_id_len]).decode("utf-8", "replace")
        headers = {}
        for i in range(r.headers_count):
            hd = r.headers[i]
            headers[bytes(hd.name[: hd.name_len]).decode("utf-8", "replace")] = bytes(
                hd.value[: hd.value_len]).decode("utf-8", "replace")
        if r.status == 0:
            outputs, error = _read(r.response), None
        else:
            outputs, error = None, r.error.decode("utf-8", "replace")
        self._results.append(PipelineResult(r.pipeline.decode(), rid, r.status, r.error_kind,
                                            error, outputs, headers))
