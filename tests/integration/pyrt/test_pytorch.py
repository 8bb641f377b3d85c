"""The TorchScript runtime through seldon-server, REST and gRPC.

Models are traced here with Debian's python3-torch (the same libtorch the
plugin links) and saved as model.pt; answers must equal torch's own. The
mnist model has the shape of Seldon's mnist-pytorch sample (Triton's layout,
1/model.pt): x__0 FP32 [1,1,28,28] in, y__0 FP32 [1,10] out.
"""
import os

import numpy as np
import pytest

from conftest import grpc_outputs, grpc_request, grpc_stub, plugin, srv

torch = pytest.importorskip("torch")


class Mnist(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3)
        self.fc = torch.nn.Linear(4 * 26 * 26, 10)

    def forward(self, x):
        return torch.log_softmax(self.fc(torch.relu(self.conv(x)).flatten(1)), 1)


class Pair(torch.nn.Module):
    """Two inputs, two outputs of other types."""

    def forward(self, a, b):
        return a + b.to(torch.float32), (a * 2).to(torch.int64)


def trace(module, *examples):
    torch.manual_seed(0)
    return torch.jit.trace(module.eval(), examples)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    plugin("pytorch")
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("torchrepo")
    mnist = trace(Mnist(), torch.zeros(1, 1, 28, 28))
    folder = srv.write_model(root, "mnist-pytorch", {"implementation": "pytorch"})
    os.makedirs(os.path.join(folder, "1"))
    mnist.save(os.path.join(folder, "1", "model.pt"))
    pair = trace(Pair(), torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.int32))
    folder = srv.write_model(root, "pair", {"implementation": "pytorch_libtorch"})
    pair.save(os.path.join(folder, "model.pt"))
    # Names declared in the settings give the positions.
    folder = srv.write_model(root, "pair-named", {
        "implementation": "pytorch",
        "parameters": {"uri": "./pair.pt"},
        "inputs": [{"name": "A", "datatype": "FP32", "shape": [-1, 3]},
                   {"name": "B", "datatype": "INT32", "shape": [-1, 3]}],
        "outputs": [{"name": "SUM", "datatype": "FP32", "shape": [-1, 3]},
                    {"name": "TWICE", "datatype": "INT64", "shape": [-1, 3]}]})
    pair.save(os.path.join(folder, "pair.pt"))
    srv.write_model(root, "not-torch", {"implementation": "pytorch"},
                    files={"model.pt": b"this is not a TorchScript archive"})
    server = srv.Server(root, "--workers", "2")

    class World:
        pass
    w = World()
    w.server, w.mnist, w.pair = server, mnist, pair
    yield w
    server.stop()


def test_mnist_shape_equals_torch(world, g):
    x = np.random.default_rng(1).random((1, 1, 28, 28), dtype=np.float32)
    want = world.mnist(torch.from_numpy(x)).detach().numpy()
    status, doc = srv.infer(world.server.http, "mnist-pytorch", [srv.tensor("x__0", x)])
    assert status == 200, doc
    assert [(o["name"], o["datatype"], o["shape"]) for o in doc["outputs"]] == [
        ("y__0", "FP32", [1, 10])]
    np.testing.assert_array_equal(srv.outputs_of(doc)["y__0"], want)
    stub = grpc_stub(g, world.server)
    got = grpc_outputs(g, stub.ModelInfer(grpc_request(g, "mnist-pytorch", [("x__0", x)]),
                                          timeout=srv.GUARD))
    np.testing.assert_array_equal(got["y__0"], want)


def test_batch_of_images(world):
    x = np.random.default_rng(2).random((5, 1, 28, 28), dtype=np.float32)
    status, doc = srv.infer(world.server.http, "mnist-pytorch", [srv.tensor("x__0", x)])
    assert status == 200, doc
    np.testing.assert_array_equal(srv.outputs_of(doc)["y__0"],
                                  world.mnist(torch.from_numpy(x)).detach().numpy())


def test_positions_from_names_and_tuples_out(world, g):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.int32)
    want_sum, want_twice = (t.numpy() for t in world.pair(torch.from_numpy(a),
                                                          torch.from_numpy(b)))
    # Order in the request does not matter: x__1 is the second argument.
    status, doc = srv.infer(world.server.http, "pair", [srv.tensor("x__1", b),
                                                        srv.tensor("x__0", a)])
    assert status == 200, doc
    got = srv.outputs_of(doc)
    np.testing.assert_array_equal(got["y__0"], want_sum)
    np.testing.assert_array_equal(got["y__1"], want_twice)
    assert got["y__1"].dtype == np.int64
    # An output asked for alone.
    status, doc = srv.infer(world.server.http, "pair", [srv.tensor("x__0", a),
                                                        srv.tensor("x__1", b)], outputs=["y__1"])
    assert [o["name"] for o in doc["outputs"]] == ["y__1"]
    stub = grpc_stub(g, world.server)
    got = grpc_outputs(g, stub.ModelInfer(grpc_request(g, "pair-named", [("A", a), ("B", b)]),
                                          timeout=srv.GUARD))
    np.testing.assert_array_equal(got["SUM"], want_sum)
    np.testing.assert_array_equal(got["TWICE"], want_twice)


def test_errors_name_the_model(world):
    status, doc = srv.infer(world.server.http, "mnist-pytorch",
                            [srv.tensor("x__0", np.zeros((1, 28, 28, 2), np.float32))])
    assert status == 400 and "mnist-pytorch" in doc["error"] and "forward" in doc["error"], doc
    status, doc = srv.infer(world.server.http, "pair", [srv.tensor("x__0", np.zeros(3, np.float32)),
                                                        srv.tensor("q", np.zeros(3, np.float32))])
    assert status == 400 and "input q" in doc["error"], doc
    status, doc = srv.post_json(world.server.http, "/v2/repository/index")
    row = {m["name"]: m for m in doc}["not-torch"]
    assert row["state"] == "FAILED" and "cannot load the TorchScript model" in row["reason"], row
    # The server goes on.
    x = np.zeros((1, 1, 28, 28), np.float32)
    assert srv.infer(world.server.http, "mnist-pytorch", [srv.tensor("x__0", x)])[0] == 200
