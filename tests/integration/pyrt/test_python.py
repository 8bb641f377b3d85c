"""The Python runtime through seldon-server, REST and gRPC.

scikit-learn models are trained here with Debian's python3-sklearn and saved
with joblib; answers must equal scikit-learn's own. MLServer custom models
are written as MLServer's documentation writes them (an MLModel subclass,
async, with codecs and settings) and served unchanged; so is the plain
contract (predict(dict) -> dict). Exceptions in load and predict become a
load failure or an error response naming the model, with Python's message,
while the server goes on serving.
"""
import fcntl
import json
import os
import threading

import numpy as np
import pytest

from conftest import grpc_outputs, grpc_request, grpc_stub, plugin, srv
from procs import wait_until

sklearn = pytest.importorskip("sklearn")
joblib = pytest.importorskip("joblib")
from sklearn.datasets import load_iris  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

CUSTOM = '''
import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec, StringCodec
from mlserver.logging import logger
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class Scaler(MLModel):
    async def load(self) -> bool:
        uri = await get_model_uri(self._settings, wellknown_filenames=["factor.txt"])
        with open(uri) as f:
            self._factor = float(f.read())
        self._offset = self.settings.parameters.extra["offset"]
        logger.info("scaler loaded with factor %s", self._factor)
        self.ready = True
        return self.ready

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0])
        words = StringCodec.decode_input(payload.inputs[1])
        y = x * self._factor + self._offset
        return InferenceResponse(
            model_name=self.name, model_version=self.version, id=payload.id,
            outputs=[NumpyCodec.encode_output("scaled", y),
                     StringCodec.encode_output("upper", [w.upper() for w in words])])
'''

DECODED = '''
from typing import List
import asyncio
import numpy as np
from mlserver import MLModel
from mlserver.codecs import decode_args


class Joiner(MLModel):
    @decode_args
    async def predict(self, words: List[str], counts: np.ndarray) -> List[str]:
        await asyncio.sleep(0)  # a coroutine that really waits
        return [w * int(c) for w, c in zip(words, counts.reshape(-1))]
'''

FRAMES = '''
from mlserver import MLModel
from mlserver.codecs import StringCodec
from mlserver.types import InferenceResponse


class Frame(MLModel):
    """The request as a DataFrame (content type pd from the settings), a DataFrame back."""
    async def predict(self, payload):
        df = self.decode_request(payload)
        df["total"] = df["a"] + df["b"]
        df["shout"] = [n.upper() + "!" for n in df["name"]]
        return self.encode_response(df)


class Words(MLModel):
    """Content type str declared for the input in the settings."""
    async def predict(self, payload):
        words = self.decode(payload.inputs[0])
        return InferenceResponse(model_name=self.name, outputs=[
            StringCodec.encode_output("seen", [type(words).__name__] + words)])
'''

PLAIN = '''
import numpy as np


class Doubler:
    def load(self):
        self.k = 2

    def predict(self, inputs):
        return {"doubled": inputs["x"] * self.k, "rows": np.array([inputs["x"].shape[0]],
                                                                   dtype=np.int64)}


class Identity:
    def predict(self, inputs):
        return inputs


class Rows:
    """Answers each row with the number of rows of the batch that predict saw."""
    def predict(self, inputs):
        x = inputs["x"]
        return {"x": x, "batch": np.full((x.shape[0], 1), x.shape[0], dtype=np.int64)}
'''

FAILING = '''
from mlserver import MLModel
from mlserver.errors import InferenceError


class BrokenLoad(MLModel):
    async def load(self):
        raise RuntimeError("the weights are missing")


class BrokenPredict(MLModel):
    async def predict(self, payload):
        if payload.inputs[0].name == "bad-request":
            raise InferenceError("bad-request is not an input this model takes")
        return helper(payload)


def helper(payload):
    return 1 / 0
'''

SLOW = '''
import logging
import fcntl
import numpy as np

log = logging.getLogger("slow")


class Slow:
    """Waits until the test lets go of its lock on the gate file (blocked in flock, so
    without holding the GIL)."""
    def __init__(self, settings):
        self.gate = settings["parameters"]["extra"]["gate"]

    def predict(self, inputs):
        log.info("slow: predict started")
        with open(self.gate) as gate:
            fcntl.flock(gate, fcntl.LOCK_SH)
        return {"y": inputs["x"]}
'''


def iris_model():
    x, y = load_iris(return_X_y=True)
    return LogisticRegression(max_iter=1000).fit(x, y), x.astype(np.float32)


def income_model():
    """A pipeline fitted on a DataFrame with named columns, one of them strings."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(3)
    n = 200
    df = pd.DataFrame({
        "Age": rng.integers(18, 80, n),
        "Hours per week": rng.integers(10, 60, n),
        "Workclass": rng.choice(["private", "state", "self"], n),
    })
    y = ((df["Age"] > 40) & (df["Hours per week"] > 30)).astype(int)
    pipe = Pipeline([
        ("pre", ColumnTransformer([("cat", OneHotEncoder(handle_unknown="ignore"),
                                    ["Workclass"])], remainder="passthrough")),
        ("clf", LogisticRegression(max_iter=1000)),
    ])
    return pipe.fit(df, y), df


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    plugin("python")
    root = tmp_path_factory.mktemp("pyrepo")
    gate = str(tmp_path_factory.mktemp("gate") / "open")
    iris, iris_x = iris_model()
    income, income_df = income_model()
    folder = srv.write_model(root, "iris", {"implementation": "sklearn"})
    joblib.dump(iris, os.path.join(folder, "model.joblib"))
    folder = srv.write_model(root, "iris-mlserver", {
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./weights/model.pkl"}})
    os.makedirs(os.path.join(folder, "weights"))
    joblib.dump(iris, os.path.join(folder, "weights", "model.pkl"))
    folder = srv.write_model(root, "income", {"implementation": "sklearn"})
    joblib.dump(income, os.path.join(folder, "model.pickle"))
    folder = srv.write_model(root, "income-pd", {"implementation": "sklearn",
                                                 "parameters": {"content_type": "pd"}})
    joblib.dump(income, os.path.join(folder, "model.joblib"))
    srv.write_model(root, "scaler", {"implementation": "models.Scaler",
                                     "parameters": {"extra": {"offset": 0.5}}},
                    files={"models.py": CUSTOM, "factor.txt": "3"})
    # Same module name, another folder: each model gets its own models.py.
    srv.write_model(root, "joiner", {"implementation": "models.Joiner"},
                    files={"models.py": DECODED})
    srv.write_model(root, "frame", {"implementation": "frames.Frame",
                                    "parameters": {"content_type": "pd"}},
                    files={"frames.py": FRAMES})
    srv.write_model(root, "words", {
        "implementation": "frames.Words",
        "inputs": [{"name": "w", "datatype": "BYTES", "shape": [-1],
                    "parameters": {"content_type": "str"}}]},
        files={"frames.py": FRAMES})
    srv.write_model(root, "doubler", {"implementation": "plain.Doubler"},
                    files={"plain.py": PLAIN})
    srv.write_model(root, "pyidentity", {"implementation": "plain.Identity"},
                    files={"plain.py": PLAIN})
    srv.write_model(root, "rows", {"implementation": "plain.Rows", "max_batch_size": 4,
                                   "max_batch_time": 30},
                    files={"plain.py": PLAIN})
    srv.write_model(root, "broken-load", {"implementation": "failing.BrokenLoad"},
                    files={"failing.py": FAILING})
    srv.write_model(root, "broken-predict", {"implementation": "failing.BrokenPredict"},
                    files={"failing.py": FAILING})
    srv.write_model(root, "no-module", {"implementation": "nowhere.Model"})
    srv.write_model(root, "slow", {"implementation": "slowmod.Slow",
                                   "parameters": {"extra": {"gate": gate}}},
                    files={"slowmod.py": SLOW})
    server = srv.Server(root, "--workers", "2")

    class World:
        pass
    w = World()
    w.server, w.root, w.gate = server, root, gate
    w.iris, w.iris_x, w.income, w.income_df = iris, iris_x, income, income_df
    yield w
    server.stop()


def rest(w, model, inputs, **kw):
    return srv.infer(w.server.http, model, inputs, **kw)


# --- scikit-learn ------------------------------------------------------------------


def test_iris_answers_as_seldons_sample(world):
    status, doc = rest(world, "iris", [{"name": "predict", "datatype": "FP32", "shape": [1, 4],
                                        "data": [[1, 2, 3, 4]]}])
    assert status == 200, doc
    want = int(world.iris.predict(np.array([[1, 2, 3, 4]], dtype=np.float32))[0])
    assert doc["outputs"] == [{"name": "predict", "datatype": "INT64", "shape": [1, 1],
                               "parameters": {"content_type": "np"}, "data": [want]}]
    assert doc["model_name"] == "iris"


@pytest.mark.parametrize("model", ["iris", "iris-mlserver"])
def test_iris_predict_and_proba_equal_sklearn(world, model):
    x = world.iris_x[::7]
    status, doc = rest(world, model, [srv.tensor("predict", x)],
                       outputs=["predict", "predict_proba"])
    assert status == 200, doc
    got = srv.outputs_of(doc)
    np.testing.assert_array_equal(got["predict"], world.iris.predict(x).reshape(-1, 1))
    np.testing.assert_array_equal(got["predict_proba"], world.iris.predict_proba(x))
    assert got["predict_proba"].dtype == np.float64


def test_iris_over_grpc(world, g):
    stub = grpc_stub(g, world.server)
    x = world.iris_x[:5]
    resp = stub.ModelInfer(grpc_request(g, "iris", [("predict", x)],
                                        outputs=["predict_proba"]), timeout=srv.GUARD)
    got = grpc_outputs(g, resp)
    np.testing.assert_array_equal(got["predict_proba"], world.iris.predict_proba(x))
    assert resp.outputs[0].parameters["content_type"].string_param == "np"


def test_unknown_output_is_400(world):
    status, doc = rest(world, "iris", [srv.tensor("predict", world.iris_x[:1])],
                       outputs=["explain"])
    assert status == 400 and "iris" in doc["error"] and "explain" in doc["error"], doc


def income_inputs(df):
    inputs = []
    for col in df.columns:
        values = df[col].to_numpy()
        if values.dtype.kind in "OU":
            inputs.append({"name": col, "datatype": "BYTES", "shape": [len(df), 1],
                           "data": [str(v) for v in values]})
        else:
            inputs.append(srv.tensor(col, values.astype(np.int64).reshape(-1, 1)))
    return inputs


def test_dataframe_model_with_content_type_pd(world):
    df = world.income_df[:9]
    want = world.income.predict(df).reshape(-1, 1)
    # Content type on the request, as Seldon's income samples send it.
    status, doc = rest(world, "income", income_inputs(df), parameters={"content_type": "pd"},
                       outputs=["predict", "predict_proba"])
    assert status == 200, doc
    got = srv.outputs_of(doc)
    np.testing.assert_array_equal(got["predict"], want)
    np.testing.assert_array_equal(got["predict_proba"], world.income.predict_proba(df))
    # In model-settings.json instead.
    status, doc = rest(world, "income-pd", income_inputs(df))
    assert status == 200, doc
    np.testing.assert_array_equal(srv.outputs_of(doc)["predict"], want)
    # Without it, several inputs are refused with a reason.
    status, doc = rest(world, "income", income_inputs(df))
    assert status == 400 and "single input" in doc["error"], doc


def test_dataframe_model_over_grpc(world, g):
    stub = grpc_stub(g, world.server)
    df = world.income_df[:3]
    req = g.pb2.ModelInferRequest(model_name="income")
    req.parameters["content_type"].string_param = "pd"
    for col in df.columns:
        t = req.inputs.add()
        t.name = col
        t.shape.extend([len(df), 1])
        if df[col].dtype.kind in "OU":
            t.datatype = "BYTES"
            t.contents.bytes_contents.extend(v.encode() for v in df[col])
        else:
            t.datatype = "INT64"
            t.contents.int64_contents.extend(int(v) for v in df[col])
    got = grpc_outputs(g, stub.ModelInfer(req, timeout=srv.GUARD))
    np.testing.assert_array_equal(got["predict"], world.income.predict(df).reshape(-1, 1))


# --- MLServer custom models and the plain contract ----------------------------------


def test_mlserver_custom_model_unchanged(world):
    x = np.array([[1, 2], [3, 4]], dtype=np.float32)
    status, doc = rest(world, "scaler", [
        srv.tensor("x", x),
        {"name": "words", "datatype": "BYTES", "shape": [2],
         "parameters": {"content_type": "str"}, "data": ["tea", "café"]}], id="r-1")
    assert status == 200, doc
    out = {o["name"]: o for o in doc["outputs"]}
    assert out["scaled"]["datatype"] == "FP32" and out["scaled"]["shape"] == [2, 2]
    assert out["scaled"]["parameters"] == {"content_type": "np"}
    np.testing.assert_array_equal(np.array(out["scaled"]["data"]).reshape(2, 2), x * 3 + 0.5)
    assert out["upper"]["data"] == ["TEA", "CAFÉ"]
    assert out["upper"]["parameters"] == {"content_type": "str"}
    assert doc["id"] == "r-1"
    # The model's logger reached the server's log.
    assert "scaler loaded with factor 3.0" in world.server.stderr()


def test_decode_args_and_a_coroutine_that_waits(world, g):
    status, doc = rest(world, "joiner", [
        {"name": "words", "datatype": "BYTES", "shape": [2], "data": ["ab", "c"]},
        srv.tensor("counts", np.array([2, 3], dtype=np.int32))])
    assert status == 200, doc
    assert doc["outputs"][0]["data"] == ["abab", "ccc"]
    assert doc["outputs"][0]["name"] == "output-0"


def test_pandas_codec_both_ways_and_declared_content_types(world):
    status, doc = rest(world, "frame", [
        srv.tensor("a", np.array([[1], [2]], dtype=np.int64)),
        srv.tensor("b", np.array([[0.5], [0.25]], dtype=np.float64)),
        {"name": "name", "datatype": "BYTES", "shape": [2, 1], "data": ["ada", "bob"]}])
    assert status == 200, doc
    out = {o["name"]: o for o in doc["outputs"]}
    assert list(out) == ["a", "b", "name", "total", "shout"]
    assert out["total"]["datatype"] == "FP64" and out["total"]["shape"] == [2, 1]
    assert out["total"]["data"] == [1.5, 2.25]
    assert out["shout"]["data"] == ["ADA!", "BOB!"]
    assert out["shout"]["datatype"] == "BYTES"
    status, doc = rest(world, "words", [{"name": "w", "datatype": "BYTES", "shape": [2],
                                         "data": ["x", "yz"]}])
    assert status == 200, doc
    assert doc["outputs"][0]["data"] == ["list", "x", "yz"]


def test_plain_contract(world, g):
    x = np.arange(6, dtype=np.int32).reshape(3, 2)
    status, doc = rest(world, "doubler", [srv.tensor("x", x)])
    assert status == 200, doc
    got = srv.outputs_of(doc)
    np.testing.assert_array_equal(got["doubled"], x * 2)
    np.testing.assert_array_equal(got["rows"], [3])
    stub = grpc_stub(g, world.server)
    values = np.array([[1.5, -2.25, 1e30]], dtype=np.float64)
    got = grpc_outputs(g, stub.ModelInfer(grpc_request(g, "pyidentity", [("v", values)]),
                                          timeout=srv.GUARD))
    np.testing.assert_array_equal(got["v"], values)


def test_adaptive_batching(world):
    # max_batch_size 4: four requests sent together run as one batch of four rows, and each
    # caller gets back exactly its own row.
    results = {}

    def send(i):
        x = np.array([[i, 10 * i]], dtype=np.float32)
        results[i] = rest(world, "rows", [srv.tensor("x", x)])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(srv.GUARD)
    for i in range(4):
        status, doc = results[i]
        assert status == 200, doc
        got = srv.outputs_of(doc)
        np.testing.assert_array_equal(got["x"], [[i, 10 * i]])
        np.testing.assert_array_equal(got["batch"], [[4]])


# --- Failures -----------------------------------------------------------------------


def index(server):
    status, doc = srv.post_json(server.http, "/v2/repository/index")
    assert status == 200, doc
    return {m["name"]: m for m in doc}


def test_exception_in_load_is_a_load_failure(world):
    row = index(world.server)["broken-load"]
    assert row["state"] == "FAILED"
    assert "broken-load" in row["reason"] and "the weights are missing" in row["reason"], row
    assert "RuntimeError" in row["reason"]
    row = index(world.server)["no-module"]
    assert "nowhere.Model" in row["reason"] and "No module named 'nowhere'" in row["reason"], row
    status, headers, body = srv.request(world.server.http, "POST",
                                        "/v2/repository/models/broken-load/load")
    assert status == 400 and b"the weights are missing" in body
    assert "Traceback" in world.server.stderr()


def test_exception_in_predict_is_500_and_the_server_goes_on(world, g):
    status, doc = rest(world, "broken-predict", [srv.tensor("x", np.ones(2, np.float32))])
    assert status == 500, doc
    assert doc["error"] == "model broken-predict: ZeroDivisionError: division by zero"
    log = world.server.stderr()
    assert "model broken-predict: predict failed" in log and 'in helper' in log
    # MLServer's InferenceError is the caller's fault: 400.
    status, doc = rest(world, "broken-predict", [srv.tensor("bad-request",
                                                            np.ones(2, np.float32))])
    assert status == 400 and "bad-request is not an input" in doc["error"], doc
    stub = grpc_stub(g, world.server)
    with pytest.raises(g.grpc.RpcError) as err:
        stub.ModelInfer(grpc_request(g, "broken-predict", [("x", np.ones(2, np.float32))]),
                        timeout=srv.GUARD)
    assert err.value.code() == g.grpc.StatusCode.INTERNAL
    assert "ZeroDivisionError" in err.value.details()
    # Everything else still answers.
    status, doc = rest(world, "iris", [srv.tensor("predict", world.iris_x[:1])])
    assert status == 200, doc


# --- Threads ------------------------------------------------------------------------


def test_a_slow_model_stalls_neither_health_nor_other_models(world):
    done = {}

    def call():
        done["slow"] = rest(world, "slow", [srv.tensor("x", np.ones(3, np.float32))])

    gate = open(world.gate, "w")
    fcntl.flock(gate, fcntl.LOCK_EX)  # the slow predict waits until this is let go
    t = threading.Thread(target=call)
    t.start()
    try:
        wait_until(lambda: "slow: predict started" in world.server.stderr(), srv.GUARD,
                   lambda: f"no 'slow: predict started' in the log\n{world.server.stderr()}")
        # While the slow predict runs on one worker: health, metadata and other models answer.
        assert srv.request(world.server.http, "GET", "/v2/health/ready")[0] == 200
        assert srv.request(world.server.http, "GET", "/v2/models/iris")[0] == 200
        status, doc = rest(world, "iris", [srv.tensor("predict", world.iris_x[:2])])
        assert status == 200, doc
        status, doc = rest(world, "doubler", [srv.tensor("x", np.ones((1, 2), np.int32))])
        assert status == 200, doc
        assert "slow" not in done
    finally:
        gate.close()
        t.join(srv.GUARD)
    status, doc = done["slow"]
    assert status == 200, doc


def test_models_share_no_module_of_the_same_name(world):
    # scaler's and joiner's models.py were both imported: each model kept its own.
    status, doc = rest(world, "joiner", [
        {"name": "words", "datatype": "BYTES", "shape": [1], "data": ["x"]},
        srv.tensor("counts", np.array([1], dtype=np.int32))])
    assert status == 200, doc
    status, doc = rest(world, "scaler", [
        srv.tensor("x", np.ones((1, 1), np.float32)),
        {"name": "w", "datatype": "BYTES", "shape": [1], "data": ["a"]}])
    assert status == 200, doc


def test_reload_reads_the_new_code(world):
    srv.write_model(world.root, "doubler", {"implementation": "plain.Doubler"},
                    files={"plain.py": PLAIN.replace("self.k = 2", "self.k = 5")})
    status, _, body = srv.request(world.server.http, "POST",
                                  "/v2/repository/models/doubler/load")
    assert status == 200, body
    status, doc = rest(world, "doubler", [srv.tensor("x", np.ones((1, 2), np.int32))])
    assert status == 200, doc
    np.testing.assert_array_equal(srv.outputs_of(doc)["doubled"], [[5, 5]])
