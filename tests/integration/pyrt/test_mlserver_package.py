"""The MLServer-compatible package (bindings/python/mlserver) on its own, in plain Python:
the codecs both ways, content-type resolution in MLModel, decode_args, get_model_uri and
the settings, with the values and shapes MLServer gives."""
import asyncio
import json
import os
import sys
from typing import List

import numpy as np
import pytest

from conftest import SOURCE

sys.path.insert(0, os.path.join(SOURCE, "bindings", "python"))
from mlserver import MLModel  # noqa: E402
from mlserver.codecs import (NumpyCodec, NumpyRequestCodec, PandasCodec,  # noqa: E402
                             StringCodec, decode_args)
from mlserver.errors import InvalidModelURI  # noqa: E402
from mlserver.settings import ModelSettings  # noqa: E402
from mlserver.types import (InferenceRequest, Parameters, RequestInput,  # noqa: E402
                            RequestOutput)
from mlserver.utils import get_model_uri  # noqa: E402


def test_numpy_codec():
    out = NumpyCodec.encode_output("p", np.array([2, 0], dtype=np.int64))
    assert (out.name, out.datatype, out.shape) == ("p", "INT64", [2, 1])
    assert out.parameters.content_type == "np"
    back = NumpyCodec.decode_output(out)
    np.testing.assert_array_equal(back, [[2], [0]])
    ri = RequestInput(name="x", datatype="FP32", shape=[2, 2], data=[[1, 2], [3, 4]])
    x = NumpyCodec.decode_input(ri)
    assert x.dtype == np.float32 and x.shape == (2, 2)
    assert NumpyRequestCodec.decode_request(InferenceRequest(inputs=[ri])).shape == (2, 2)
    resp = NumpyRequestCodec.encode_response("m", x, "1")
    assert resp.outputs[0].name == "output-1" and resp.model_version == "1"


def test_string_codec():
    out = StringCodec.encode_output("s", ["a", "bé"])
    assert out.datatype == "BYTES" and out.shape == [2, 1] and out.data == [b"a", "bé".encode()]
    ri = RequestInput(name="s", datatype="BYTES", shape=[2], data=[b"x", b"y"])
    assert StringCodec.decode_input(ri) == ["x", "y"]


def test_pandas_codec():
    pd = pytest.importorskip("pandas")
    req = InferenceRequest(inputs=[
        RequestInput(name="a", datatype="INT64", shape=[2, 1], data=np.array([1, 2])),
        RequestInput(name="s", datatype="BYTES", shape=[2, 1], data=[b"u", b"v"])])
    df = PandasCodec.decode_request(req)
    assert list(df.columns) == ["a", "s"] and list(df["s"]) == ["u", "v"]
    assert list(df["a"]) == [1, 2]
    resp = PandasCodec.encode_response("m", pd.DataFrame({"y": [0.5, 1.5], "t": ["p", "q"]}))
    y, t = resp.outputs
    assert (y.datatype, y.shape, list(y.data)) == ("FP64", [2, 1], [0.5, 1.5])
    assert (t.datatype, t.data, t.parameters.content_type) == ("BYTES", [b"p", b"q"], "str")
    assert resp.parameters.content_type == "pd"


def settings(tmp_path, **raw):
    path = tmp_path / "model-settings.json"
    path.write_text(json.dumps(dict({"name": "m"}, **raw)))
    return ModelSettings.parse_file(str(path))


def test_content_type_resolution(tmp_path):
    s = settings(tmp_path, inputs=[{"name": "w", "datatype": "BYTES", "shape": [-1],
                                    "parameters": {"content_type": "str"}}],
                 parameters={"content_type": "np", "extra": {"k": 1}})
    m = MLModel(s)
    w = RequestInput(name="w", datatype="BYTES", shape=[1], data=[b"hi"])
    assert m.decode(w) == ["hi"]  # from the settings' input
    x = RequestInput(name="x", datatype="INT32", shape=[1], data=[7],
                     parameters=Parameters(content_type="np"))
    assert m.decode(x).tolist() == [7]  # from the input
    # The request's content type wins over the settings'.
    req = InferenceRequest(parameters=Parameters(content_type="str"), inputs=[w])
    assert m.decode_request(req) == ["hi"]
    assert m.decode_request(InferenceRequest(inputs=[x])).tolist() == [7]
    assert m.settings.parameters.extra == {"k": 1}
    out = m.encode(np.array([1.5]), RequestOutput(name="y"))
    assert out.parameters.content_type == "np" and out.shape == [1, 1]


def test_decode_args():
    class M(MLModel):
        @decode_args
        async def predict(self, words: List[str], n: np.ndarray) -> np.ndarray:
            return np.array([len(w) * int(k) for w, k in zip(words, n)])

    m = M(ModelSettings(name="m"))
    req = InferenceRequest(inputs=[
        RequestInput(name="n", datatype="INT32", shape=[2], data=[2, 3]),
        RequestInput(name="words", datatype="BYTES", shape=[2], data=[b"ab", b"c"])])
    resp = asyncio.run(m.predict(req))
    assert resp.outputs[0].name == "output-0"
    assert list(resp.outputs[0].data) == [4, 3]


def test_get_model_uri(tmp_path):
    (tmp_path / "model.pkl").write_bytes(b"x")
    s = settings(tmp_path)
    got = asyncio.run(get_model_uri(s, wellknown_filenames=["model.joblib", "model.pkl"]))
    assert got == str(tmp_path / "model.pkl")
    s = settings(tmp_path, parameters={"uri": "./model.pkl"})
    assert asyncio.run(get_model_uri(s)) == str(tmp_path / "model.pkl")
    s = settings(tmp_path, parameters={"uri": "./missing.bin"})
    with pytest.raises(InvalidModelURI):
        asyncio.run(get_model_uri(s))
