"""The Python and TorchScript runtimes through seldon up, from Seldon-format manifests.

Models as Seldon's samples deploy them: an iris classifier (requirements
[sklearn], MLServer's model-settings.json naming mlserver_sklearn.SKLearnModel),
an MLServer custom model ([python]) and mnist-pytorch ([pytorch], Triton's
layout, no model-settings.json of its own: the implementation comes with the
folder we write). Loaded with the real seldon CLI, asked over REST (curl) and
gRPC (grpcio) through seldon up's one inference port.
"""
import json
import os

import numpy as np
import pytest

from conftest import SOURCE, _load, grpc_outputs, grpc_request, plugin

SELDON_UP = os.environ.get("SELDON_UP")
SELDON_CLI = os.environ.get("SELDON_CLI")


@pytest.fixture(scope="module")
def up_helpers():
    if not SELDON_UP or not SELDON_CLI:
        pytest.skip("SELDON_UP / SELDON_CLI are not set (run through ctest)")
    return _load("pyrt_up_helpers", os.path.join(SOURCE, "tests", "integration", "up",
                                                 "conftest.py"))


def manifest(name, folder, requirements):
    return (f"apiVersion: mlops.seldon.io/v1alpha1\nkind: Model\nmetadata:\n  name: {name}\n"
            f"spec:\n  storageUri: ./models/{folder}\n  requirements:\n"
            + "".join(f"  - {r}\n" for r in requirements))


CUSTOM = '''
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceResponse


class Negate(MLModel):
    async def predict(self, payload):
        x = self.decode(payload.inputs[0], default_codec=NumpyCodec)
        return InferenceResponse(model_name=self.name,
                                 outputs=[NumpyCodec.encode_output("negated", -x)])
'''


def write(folder, name, content):
    os.makedirs(folder, exist_ok=True)
    mode = "wb" if isinstance(content, bytes) else "w"
    with open(os.path.join(folder, name), mode) as f:
        f.write(content)


def test_sklearn_python_and_pytorch_models_from_manifests(tmp_path, up_helpers, g):
    plugin("python")
    plugin("pytorch")
    joblib = pytest.importorskip("joblib")
    torch = pytest.importorskip("torch")
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    iris = LogisticRegression(max_iter=1000).fit(x, y)
    models = tmp_path / "models"
    write(models / "iris", "model-settings.json",
          json.dumps({"name": "iris", "implementation": "mlserver_sklearn.SKLearnModel",
                      "parameters": {"uri": "./model.joblib", "version": "v0.1.0"}}))
    joblib.dump(iris, models / "iris" / "model.joblib")
    write(models / "negate", "model-settings.json",
          json.dumps({"name": "negate", "implementation": "models.Negate"}))
    write(models / "negate", "models.py", CUSTOM)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    traced = torch.jit.trace(net.eval(), torch.zeros(1, 1, 28, 28))
    write(models / "mnist", "model-settings.json",
          json.dumps({"name": "mnist", "implementation": "pytorch"}))
    os.makedirs(models / "mnist" / "1")
    traced.save(str(models / "mnist" / "1" / "model.pt"))
    (tmp_path / "iris.yaml").write_text(manifest("iris", "iris", ["sklearn"]))
    (tmp_path / "negate.yaml").write_text(manifest("negate", "negate", ["python"]))
    (tmp_path / "mnist.yaml").write_text(manifest("mnist", "mnist", ["pytorch"]))

    u = up_helpers.Up(tmp_path)
    try:
        up_helpers.load(u, "iris.yaml", "negate.yaml", "mnist.yaml")
        # REST, as Seldon's iris sample asks.
        body = json.dumps({"inputs": [{"name": "predict", "shape": [1, 4], "datatype": "FP32",
                                       "data": [[1, 2, 3, 4]]}]})
        code, text, _ = u.curl("/v2/models/iris/infer", body)
        assert code == 200, text
        doc = json.loads(text)
        want = int(iris.predict(np.array([[1, 2, 3, 4]], dtype=np.float32))[0])
        assert doc["outputs"] == [{"name": "predict", "datatype": "INT64", "shape": [1, 1],
                                   "parameters": {"content_type": "np"}, "data": [want]}]
        assert doc["model_name"] == "iris_1"
        body = json.dumps({"inputs": [{"name": "x", "shape": [2], "datatype": "INT32",
                                       "data": [1, -2]}]})
        code, text, _ = u.curl("/v2/models/negate/infer", body)
        assert code == 200, text
        assert json.loads(text)["outputs"][0]["data"] == [-1, 2]
        # gRPC, with the seldon-model header as Seldon's clients send it.
        channel = g.grpc.insecure_channel(u.target)
        g.grpc.channel_ready_future(channel).result(timeout=up_helpers.GUARD)
        stub = g.pb2_grpc.GRPCInferenceServiceStub(channel)
        image = np.random.default_rng(0).random((1, 1, 28, 28), dtype=np.float32)
        resp = stub.ModelInfer(grpc_request(g, "mnist", [("x__0", image)]),
                               metadata=[("seldon-model", "mnist")], timeout=up_helpers.GUARD)
        got = grpc_outputs(g, resp)
        np.testing.assert_array_equal(got["y__0"], traced(torch.from_numpy(image)).detach().numpy())
        assert list(resp.outputs[0].shape) == [1, 10]
        resp = stub.ModelInfer(grpc_request(g, "iris", [("predict", x[:3].astype(np.float32))],
                                            outputs=["predict_proba"]),
                               metadata=[("seldon-model", "iris")], timeout=up_helpers.GUARD)
        np.testing.assert_array_equal(grpc_outputs(g, resp)["predict_proba"],
                                      iris.predict_proba(x[:3].astype(np.float32)))
        channel.close()
    finally:
        assert u.stop() == 0, u.stderr()
