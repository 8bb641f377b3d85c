"""Helpers for the runtime plugin tests: model folders and the C driver.

The driver (runtime_driver.c) loads a model through libseldon's repository
API with the plugin search path, runs one REST JSON request and prints the
REST JSON response, so these tests exercise the same path as the server.
"""
import json
import os
import subprocess

import numpy as np
import pytest

DRIVER = os.environ.get("SELDON_RUNTIME_DRIVER", "")
RUNTIME_PATH = os.environ.get("SELDON_RUNTIME_PATH", "")

NUMPY_TYPES = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP32": np.float32,
    "FP64": np.float64,
}
DATATYPES = {np.dtype(v): k for k, v in NUMPY_TYPES.items()}


def plugin(name):
    """The path of a built plugin, or skip the test when it was not built."""
    path = os.path.join(RUNTIME_PATH, f"libseldon-runtime-{name}.so")
    if not os.path.exists(path):
        pytest.skip(f"{path} was not built")
    return path


def write_model(root, name, settings, files=None):
    """Creates <root>/<name>/model-settings.json (name filled in) and extra files."""
    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    settings = dict(settings)
    settings.setdefault("name", name)
    with open(os.path.join(folder, "model-settings.json"), "w") as f:
        json.dump(settings, f)
    for fname, content in (files or {}).items():
        mode = "wb" if isinstance(content, bytes) else "w"
        with open(os.path.join(folder, fname), mode) as f:
            f.write(content)
    return folder


def tensor(name, array):
    """A REST JSON input: float32 values go out as the doubles they are, so exactly."""
    array = np.asarray(array)
    return {
        "name": name,
        "datatype": DATATYPES[array.dtype],
        "shape": list(array.shape),
        "data": array.reshape(-1).tolist(),
    }


class Failure(Exception):
    def __init__(self, report):
        super().__init__(f"{report['stage']} failed ({report['code']}): {report['error']}")
        self.stage = report["stage"]
        self.code = report["code"]
        self.error = report["error"]


def run(root, model, inputs, outputs=None, threads=0):
    """Runs one request; returns {output name: numpy array} or raises Failure.

    threads > 0 also runs it many times on that many threads at once and
    fails unless every response is identical to the first.
    """
    if not DRIVER:
        pytest.skip("SELDON_RUNTIME_DRIVER is not set (run through ctest)")
    request = {"inputs": inputs}
    if outputs is not None:
        request["outputs"] = [{"name": n} for n in outputs]
    args = [DRIVER] + (["-t", str(threads)] if threads else []) + [str(root), model, RUNTIME_PATH]
    proc = subprocess.run(
        args,
        input=json.dumps(request).encode(),
        capture_output=True,
        timeout=120,
    )
    text = proc.stdout.decode()
    if proc.returncode in (2, 3, 4):
        raise Failure(json.loads(text))
    assert proc.returncode == 0, f"driver exited {proc.returncode}: {proc.stderr.decode()}"
    response = json.loads(text)
    result = {}
    for out in response["outputs"]:
        dtype = NUMPY_TYPES[out["datatype"]]
        result[out["name"]] = np.array(out["data"], dtype=dtype).reshape(out["shape"])
    return result
