"""The xgboost runtime plugin served by seldon-server: models trained here with
python3-xgboost, served from model.json over REST and gRPC, and compared with
XGBoost's own Booster.predict."""
import os

import numpy as np
import pytest

from conftest import (GUARD, RUNTIME_PATH, Server, assert_error, binary_body, get_json, infer,
                      outputs_of, post_json, request, split_binary, tensor, write_model)

xgb = pytest.importorskip("xgboost")

PLUGIN = os.path.join(RUNTIME_PATH, "libseldon-runtime-xgboost.so")
pytestmark = pytest.mark.skipif(not os.path.exists(PLUGIN),
                                reason=f"the xgboost runtime was not built ({PLUGIN})")

NFEAT = 6
# float32 values travel exactly; the tolerance only absorbs summation order.
TOL = {"rtol": 1e-6, "atol": 1e-6}


def features(n, seed, missing=False):
    x = np.random.default_rng(seed).normal(size=(n, NFEAT)).astype(np.float32)
    if missing:
        x[::5, 1] = np.nan  # XGBoost's default direction for missing values
    return x


def train(objective, seed, rounds=10):
    rng = np.random.default_rng(seed)
    x = features(400, seed)
    params = {"objective": objective, "max_depth": 3, "eta": 0.3, "seed": seed,
              "nthread": 1}
    if objective == "binary:logistic":
        y = (x[:, 0] - x[:, 2] + rng.normal(scale=0.5, size=len(x)) > 0).astype(np.float32)
    elif objective == "multi:softprob":
        y = np.digitize(x[:, 0] + rng.normal(scale=0.3, size=len(x)), [-0.5, 0.5])
        params["num_class"] = 3
    else:
        y = 2 * x[:, 0] - x[:, 3] + rng.normal(scale=0.1, size=len(x))
    return xgb.train(params, xgb.DMatrix(x, label=y), rounds)


def save(root, name, booster, implementation="xgboost", uri=True):
    folder = os.path.join(str(root), name)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, ".model.tmp.json")
    booster.save_model(tmp)
    os.replace(tmp, os.path.join(folder, "model.json"))
    settings = {"implementation": implementation}
    if uri:
        settings["parameters"] = {"uri": "./model.json"}
    write_model(root, name, settings)


def predict(booster, x):
    return booster.predict(xgb.DMatrix(x))


@pytest.fixture(scope="module")
def boosters():
    return {
        "clf": train("binary:logistic", seed=1),
        "multi": train("multi:softprob", seed=2),
        "reg": train("reg:squarederror", seed=3),
    }


@pytest.fixture(scope="module")
def repo(tmp_path_factory, boosters):
    root = tmp_path_factory.mktemp("xgboost")
    save(root, "clf", boosters["clf"])
    save(root, "multi", boosters["multi"], implementation="mlserver_xgboost.XGBoostModel")
    save(root, "reg", boosters["reg"], uri=False)  # found by its well-known name
    return root


@pytest.fixture(scope="module")
def server(repo):
    srv = Server(repo, "--runtime-path", RUNTIME_PATH, env={"OMP_NUM_THREADS": "2"})
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def stub(g, server):
    channel, stub = g.stub(server)
    yield stub
    channel.close()


def test_loaded(server):
    status, doc = post_json(server.http, "/v2/repository/index")
    assert status == 200
    assert {r["name"]: r["state"] for r in doc} == {"clf": "READY", "multi": "READY",
                                                    "reg": "READY"}
    for name in ("clf", "multi", "reg"):
        assert get_json(server.http, f"/v2/models/{name}/ready")[0] == 200


def test_classifier_rest(server, boosters):
    x = features(40, seed=11)
    p = predict(boosters["clf"], x)
    status, doc = infer(server.http, "clf", [tensor("input-0", x)])
    assert status == 200, doc
    out = outputs_of(doc)
    assert list(out) == ["predict"]
    # Saved by Booster.save_model(): predict is P(class 1), as MLServer answers.
    assert out["predict"].dtype == np.float32 and out["predict"].shape == (40,)
    np.testing.assert_allclose(out["predict"], p, **TOL)

    status, doc = infer(server.http, "clf", [tensor("input-0", x)],
                        outputs=["predict", "predict_proba"])
    assert status == 200, doc
    out = outputs_of(doc)
    assert out["predict_proba"].dtype == np.float32 and out["predict_proba"].shape == (40, 2)
    np.testing.assert_allclose(out["predict_proba"], np.stack([1 - p, p], axis=1), **TOL)
    np.testing.assert_allclose(out["predict"], p, **TOL)


def test_multiclass_rest(server, boosters):
    x = features(30, seed=12)
    p = predict(boosters["multi"], x)
    assert p.shape == (30, 3)
    status, doc = infer(server.http, "multi", [tensor("x", x)],
                        outputs=["predict_proba", "predict"])
    assert status == 200, doc
    out = outputs_of(doc)
    np.testing.assert_allclose(out["predict"], p, **TOL)
    np.testing.assert_allclose(out["predict_proba"], p, **TOL)


def test_regressor_rest(server, boosters):
    x = features(50, seed=13)
    status, doc = infer(server.http, "reg", [tensor("input-0", x)])
    assert status == 200, doc
    out = outputs_of(doc)
    assert out["predict"].dtype == np.float32 and out["predict"].shape == (50,)
    np.testing.assert_allclose(out["predict"], predict(boosters["reg"], x), **TOL)
    # A regressor has no probabilities: the reason comes back.
    assert_error(*request(server.http, "POST", "/v2/models/reg/infer",
                          {"inputs": [tensor("input-0", x)],
                           "outputs": [{"name": "predict_proba"}]}), 400, "predict_proba")


def test_binary_extension(server, boosters):
    # Missing values (NaN) cannot be written in JSON: the binary extension carries them.
    x = features(25, seed=14, missing=True)
    p = predict(boosters["multi"], x)
    body, headers = binary_body({"inputs": [{"name": "x"}],
                                 "outputs": [{"name": "predict_proba",
                                              "parameters": {"binary_data": True}},
                                             {"name": "predict"}]}, {"x": x})
    status, rh, data = request(server.http, "POST", "/v2/models/multi/infer", body, headers)
    assert status == 200, data
    doc, out, binary = split_binary(rh, data)
    assert binary == ["predict_proba"]
    np.testing.assert_allclose(out["predict_proba"], p, **TOL)
    np.testing.assert_allclose(out["predict"], p, **TOL)


@pytest.mark.parametrize("raw", [False, True], ids=["contents", "raw"])
def test_grpc(server, stub, g, boosters, raw):
    x = features(33, seed=15, missing=raw)
    p = predict(boosters["clf"], x)
    r = stub.ModelInfer(g.request("clf", {"input-0": x}, raw=raw,
                                  outputs=["predict", "predict_proba"], id="xgb"),
                        timeout=GUARD)
    assert r.id == "xgb"
    out = g.outputs(r)
    np.testing.assert_allclose(out["predict"], p, **TOL)
    np.testing.assert_allclose(out["predict_proba"], np.stack([1 - p, p], axis=1), **TOL)

    p = predict(boosters["multi"], x)
    out = g.outputs(stub.ModelInfer(g.request("multi", {"x": x}, raw=raw,
                                              outputs=["predict_proba"]), timeout=GUARD))
    assert list(out) == ["predict_proba"]
    np.testing.assert_allclose(out["predict_proba"], p, **TOL)

    out = g.outputs(stub.ModelInfer(g.request("reg", {"x": x}, raw=raw), timeout=GUARD))
    np.testing.assert_allclose(out["predict"], predict(boosters["reg"], x), **TOL)


def test_grpc_concurrent(server, stub, g, boosters):
    xs = [features(8 + i, seed=100 + i, missing=True) for i in range(12)]
    futures = [stub.ModelInfer.future(g.request("multi", {"x": x}, raw=True,
                                                outputs=["predict_proba", "predict"]),
                                      timeout=GUARD) for x in xs]
    for x, f in zip(xs, futures):
        out = g.outputs(f.result())
        p = predict(boosters["multi"], x)
        np.testing.assert_allclose(out["predict_proba"], p, **TOL)
        np.testing.assert_allclose(out["predict"], p, **TOL)


def test_reload_new_model(server, repo, stub, g):
    # Retrained and saved over the old file, then loaded again: new requests
    # get the new model's predictions.
    x = features(20, seed=16)
    new = train("binary:logistic", seed=9, rounds=4)
    save(repo, "clf2", train("binary:logistic", seed=1))
    assert request(server.http, "POST", "/v2/repository/models/clf2/load", b"")[0] == 200
    save(repo, "clf2", new)
    assert request(server.http, "POST", "/v2/repository/models/clf2/load", b"")[0] == 200
    status, doc = infer(server.http, "clf2", [tensor("x", x)], outputs=["predict_proba"])
    assert status == 200, doc
    p = predict(new, x)
    np.testing.assert_allclose(outputs_of(doc)["predict_proba"][:, 1], p, **TOL)
    stub.RepositoryModelUnload(g.pb2.RepositoryModelUnloadRequest(model_name="clf2"),
                               timeout=GUARD)
    assert infer(server.http, "clf2", [tensor("x", x)])[0] == 404


@pytest.mark.parametrize("kind", ["broken-file", "no-file", "wrong-runtime-path"])
def test_load_failure(server, repo, stub, g, boosters, kind):
    name = f"bad-{kind}"
    folder = os.path.join(str(repo), name)
    os.makedirs(folder, exist_ok=True)
    if kind == "broken-file":
        with open(os.path.join(folder, "model.json"), "w") as f:
            f.write('{"learner": {"gradient_booster": ')
        write_model(repo, name, {"implementation": "xgboost"})
        why = "model.json"
    elif kind == "no-file":
        write_model(repo, name, {"implementation": "xgboost",
                                 "parameters": {"uri": "./nothing-here.json"}})
        why = "nothing-here.json"
    else:
        # A plugin named by a path that does not exist.
        write_model(repo, name, {"implementation": "/nonexistent/libseldon-runtime-xgboost.so"})
        why = "/nonexistent/libseldon-runtime-xgboost.so"
    assert_error(*request(server.http, "POST", f"/v2/repository/models/{name}/load", b""),
                 400, why)
    with pytest.raises(g.grpc.RpcError) as err:
        stub.RepositoryModelLoad(g.pb2.RepositoryModelLoadRequest(model_name=name),
                                 timeout=GUARD)
    assert err.value.code() == g.grpc.StatusCode.INVALID_ARGUMENT
    assert why in err.value.details()
    status, doc = post_json(server.http, "/v2/repository/index")
    row = {r["name"]: r for r in doc}[name]
    assert row["state"] == "FAILED" and why in row["reason"], row
    # The other models keep serving.
    x = features(5, seed=17)
    status, doc = infer(server.http, "reg", [tensor("x", x)])
    assert status == 200, doc
    np.testing.assert_allclose(outputs_of(doc)["predict"], predict(boosters["reg"], x), **TOL)
