"""The Python side of libseldon's Python runtime (python_runtime.c).

The plugin calls three functions, always holding the GIL, on the server's
load executor (load, unload) and inference workers (execute). None of them
raises: failures come back as (code, message), code a negative SELDON_E*,
with the traceback in the server's log.

    load(name, version, folder, uri) -> (0, handle) | (code, message)
    execute(handle, requests)        -> [(0, outputs) | (code, message), ...]
    unload(handle)

What a model is, from model-settings.json's "implementation":

- "sklearn" or "mlserver_sklearn.SKLearnModel": MLServer's scikit-learn
  runtime (bindings/python/mlserver_sklearn).
- "module.ClassName" naming a subclass of mlserver.MLModel: an MLServer custom
  model, imported from the model's folder and run unchanged (async load and
  predict with InferenceRequest / InferenceResponse).
- "module.ClassName" naming any other class: the plain contract, load() and
  predict(inputs: dict[str, ndarray]) -> dict[str, ndarray]; sync or async.
"""
import asyncio
import importlib
import inspect
import json
import logging
import os
import sys
import threading
import traceback

import _seldon

# SELDON_E* codes (include/seldon/common.h).
EINVAL = -1
ENOTFOUND = -7
EUNAVAIL = -13
EINTERNAL = -17

# SELDON_LOG_* levels.
_LEVELS = ((logging.ERROR, 1), (logging.WARNING, 2), (logging.INFO, 3), (logging.DEBUG, 4))

ALIASES = {"sklearn": "mlserver_sklearn.SKLearnModel"}


class _ServerLog(logging.Handler):
    """Python's logging into the server's log, with the logger's name."""

    def emit(self, record):
        try:
            level = next((lv for py, lv in _LEVELS if record.levelno >= py), 5)
            _seldon.log(level, f"python {record.name}: {self.format(record)}")
        except Exception:  # noqa: BLE001 (a log line must never fail a request)
            pass


def _setup():
    root = logging.getLogger()
    if not any(isinstance(h, _ServerLog) for h in root.handlers):
        handler = _ServerLog()
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
        if root.level == logging.WARNING:  # untouched default
            root.setLevel(logging.INFO)
    # stdout belongs to the daemon (it prints its ports there): models' print() goes to stderr.
    if sys.stdout is not None and sys.stdout is sys.__stdout__:
        sys.stdout = sys.stderr


_setup()

import numpy as np  # noqa: E402 (after logging is routed)

_DTYPES = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype(np.uint8), "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32), "UINT64": np.dtype(np.uint64), "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16), "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16), "FP32": np.dtype(np.float32), "FP64": np.dtype(np.float64),
}
_DATATYPES = {v: k for k, v in _DTYPES.items()}


def _log_exception(name, what):
    """The traceback into the server's log, from the model's own frames on."""
    etype, exc, tb = sys.exc_info()
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    text = "".join(traceback.format_exception(etype, exc, tb)).rstrip()
    _seldon.log(1, f"model {name}: {what}:\n{text}")


def _describe(exc):
    return f"{type(exc).__name__}: {exc}"


# --- Coroutines without an event loop when they never wait ---------------------

_local = threading.local()


def _loop():
    loop = getattr(_local, "loop", None)
    if loop is None:
        loop = _local.loop = asyncio.new_event_loop()
    return loop


class _Continue:
    """Finishes a coroutine that yielded first, on this thread's event loop."""

    def __init__(self, coro, pending):
        self.coro, self.pending = coro, pending

    def __await__(self):
        pending = self.pending
        while True:
            try:
                yield pending
            except BaseException as exc:  # thrown in by the task: pass it on
                try:
                    pending = self.coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
                continue
            try:
                pending = self.coro.send(None)
            except StopIteration as stop:
                return stop.value


async def _finish(coro, pending):
    return await _Continue(coro, pending)


def run(value):
    """The value, or the coroutine's result. Most model coroutines never wait on anything, so
    they run here directly; one that awaits (asyncio.sleep, a client) finishes on a loop of this
    thread's own."""
    if not inspect.iscoroutine(value):
        return value
    loop = _loop()
    asyncio.events._set_running_loop(loop)
    try:
        pending = value.send(None)
    except StopIteration as stop:
        return stop.value
    except BaseException:
        value.close()
        raise
    finally:
        asyncio.events._set_running_loop(None)
    return loop.run_until_complete(_finish(value, pending))


# --- Loading ---------------------------------------------------------------------

def _settings(folder, name, version, uri):
    from mlserver.settings import ModelSettings

    path = os.path.join(folder, "model-settings.json")
    try:
        with open(path) as f:
            raw = json.load(f)
    except FileNotFoundError:
        raw = {}
    raw["name"] = name
    raw["_source"] = os.path.abspath(path)
    params = dict(raw.get("parameters") or {})
    if uri:
        params["uri"] = uri
    if version:
        params["version"] = version
    params.setdefault("extra", {})
    raw["parameters"] = params
    return raw, ModelSettings(**raw)


_model_modules = {}  # top-level module name -> the folder it was imported from


def _import_class(path, folder):
    module_name, _, class_name = path.rpartition(".")
    if not module_name or not class_name:
        raise ImportError(f"implementation '{path}' is not module.ClassName")
    top = module_name.split(".")[0]
    folder = os.path.abspath(folder)
    local = os.path.isfile(os.path.join(folder, top + ".py")) or os.path.isdir(
        os.path.join(folder, top))
    if local:
        # Each model's folder comes first for its own import; a module of the same name imported
        # earlier (another model's models.py, an older version of this one) is not reused.
        if folder in sys.path:
            sys.path.remove(folder)
        sys.path.insert(0, folder)
        for key in [k for k in sys.modules if k == top or k.startswith(top + ".")]:
            del sys.modules[key]
        importlib.invalidate_caches()
        _model_modules[top] = folder
    module = importlib.import_module(module_name)
    try:
        return getattr(module, class_name)
    except AttributeError:
        raise ImportError(f"module {module_name} has no {class_name}") from None


class _MLServerModel:
    """An mlserver.MLModel: requests become InferenceRequest objects."""

    def __init__(self, name, model):
        self.name, self.model = name, model

    def infer(self, request):
        from mlserver.types import InferenceRequest, Parameters, RequestInput, RequestOutput

        rid, params, inputs, wanted = request
        tensors = []
        for tname, datatype, shape, data, tparams in inputs:
            if datatype != "BYTES":
                data = np.frombuffer(data, dtype=_DTYPES[datatype])
            tensors.append(RequestInput(name=tname, datatype=datatype, shape=list(shape),
                                        data=data, parameters=Parameters(**tparams)))
        payload = InferenceRequest(
            id=rid or None, parameters=Parameters(**params), inputs=tensors,
            outputs=[RequestOutput(name=n) for n in wanted] if wanted else None)
        response = run(self.model.predict(payload))
        if response is None or not hasattr(response, "outputs"):
            raise TypeError(f"predict returned {type(response).__name__}, not an "
                            "InferenceResponse")
        return [_response_output(o) for o in response.outputs or []]

    def unload(self):
        run(self.model.unload())


def _response_output(out):
    datatype = getattr(out.datatype, "value", out.datatype)
    shape = tuple(int(d) for d in out.shape)
    params = out.parameters
    ct = params.content_type if params is not None else None
    if datatype == "BYTES":
        data = [v.encode("utf-8") if isinstance(v, str) else bytes(v)
                for v in np.asarray(out.data, dtype=object).reshape(-1)]
    else:
        data = np.ascontiguousarray(np.asarray(out.data, dtype=_DTYPES[datatype]).reshape(-1))
    return (str(out.name), datatype, shape, data, ct)


class _PlainModel:
    """load() and predict(dict[str, ndarray]) -> dict[str, ndarray]."""

    def __init__(self, name, model, content_types):
        self.name, self.model, self.content_types = name, model, content_types

    def infer(self, request):
        _, params, inputs, _ = request
        request_ct = params.get("content_type")
        arrays = {}
        for tname, datatype, shape, data, tparams in inputs:
            ct = tparams.get("content_type") or self.content_types.get(tname) or request_ct
            if datatype == "BYTES":
                if ct == "str":
                    arrays[tname] = [b.decode("utf-8") for b in data]
                    continue
                arr = np.empty(len(data), dtype=object)
                arr[:] = data
                arrays[tname] = arr.reshape(shape)
            else:
                arrays[tname] = np.frombuffer(data, dtype=_DTYPES[datatype]).reshape(shape)
        result = run(self.model.predict(arrays))
        if not isinstance(result, dict):
            raise TypeError(f"predict returned {type(result).__name__}, not a dict of arrays")
        outputs = []
        for oname, value in result.items():
            if isinstance(value, list) and all(isinstance(v, (str, bytes)) for v in value):
                data = [v.encode("utf-8") if isinstance(v, str) else v for v in value]
                outputs.append((str(oname), "BYTES", (len(data),), data, "str"))
                continue
            arr = np.asarray(value)
            datatype = _DATATYPES.get(arr.dtype)
            if datatype is None:
                if arr.dtype.kind not in ("O", "U", "S"):
                    raise TypeError(f"output {oname}: numpy dtype {arr.dtype} has no protocol "
                                    "datatype")
                data = [v.encode("utf-8") if isinstance(v, str) else bytes(v)
                        for v in arr.reshape(-1)]
                outputs.append((str(oname), "BYTES", arr.shape, data, None))
                continue
            outputs.append((str(oname), datatype, arr.shape, np.ascontiguousarray(arr), None))
        return outputs

    def unload(self):
        fn = getattr(self.model, "unload", None)
        if fn is not None:
            run(fn())


def _new_plain(cls, raw):
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        params = {}
    return cls(raw) if len(params) >= 1 else cls()


def load(name, version, folder, uri):
    try:
        from mlserver import MLModel

        folder = os.path.abspath(folder)
        raw, settings = _settings(folder, name, version, os.path.abspath(uri) if uri else "")
        impl = raw.get("implementation") or ""
        impl = ALIASES.get(impl, impl)
        settings.implementation = impl
        cls = _import_class(impl, folder)
        if isinstance(cls, type) and issubclass(cls, MLModel):
            model = cls(settings)
            if run(model.load()) is False:
                raise RuntimeError("load() returned False")
            hosted = _MLServerModel(name, model)
        else:
            model = _new_plain(cls, raw)
            fn = getattr(model, "load", None)
            if fn is not None and run(fn()) is False:
                raise RuntimeError("load() returned False")
            if not callable(getattr(model, "predict", None)):
                raise TypeError(f"{impl} has no predict()")
            cts = {}
            for t in raw.get("inputs") or []:
                ct = (t.get("parameters") or {}).get("content_type")
                if ct:
                    cts[t.get("name")] = ct
            hosted = _PlainModel(name, model, cts)
        return (0, hosted)
    except BaseException as exc:  # noqa: BLE001 (load failures are reported, never raised)
        _log_exception(name, "load failed")
        impl = locals().get("impl") or "?"
        # The server puts "model NAME: python: " in front.
        return (EINVAL, f"load failed: implementation '{impl}': {_describe(exc)}")


def _status(exc):
    from mlserver.errors import MLServerError

    if isinstance(exc, MLServerError):
        code = getattr(exc, "status_code", 500)
        return {400: EINVAL, 404: ENOTFOUND, 422: EINVAL, 503: EUNAVAIL}.get(code, EINTERNAL)
    return EINTERNAL


def execute(handle, requests):
    results = []
    for request in requests:
        try:
            results.append((0, handle.infer(request)))
        except BaseException as exc:  # noqa: BLE001 (one failed request, the server goes on)
            code = _status(exc)
            if code == EINTERNAL:
                _log_exception(handle.name, "predict failed")
            results.append((code, f"model {handle.name}: {_describe(exc)}"))
    return results


def unload(handle):
    try:
        handle.unload()
    except BaseException:  # noqa: BLE001
        _log_exception(handle.name, "unload failed")
