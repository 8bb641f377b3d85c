"""The xgboost runtime as a new user meets it: seldon-server started from the
build tree with no --runtime-path and no $SELDON_RUNTIME_PATH finds the plugin
beside its binary, and answers as MLServer does for the same file.

MLServer loads a file as an XGBRegressor first and as an XGBClassifier only
when the file was saved through the scikit-learn wrapper as a classifier. So
a Booster saved with save_model() answers predict with the booster's own
prediction (for binary:logistic, the probability of class 1, FP32), and only
an sklearn classifier's file answers with labels. predict_proba is there for
every classification objective. Files are made here with python3-xgboost and
answers compared with XGBoost's own predictions.
"""
import json
import os

import numpy as np
import pytest

from conftest import GUARD, Server, get_json, infer, outputs_of, post_json, tensor, write_model

xgb = pytest.importorskip("xgboost")

NFEAT = 4
TOL = {"rtol": 1e-6, "atol": 1e-6}


def features(n, seed):
    return np.random.default_rng(seed).normal(size=(n, NFEAT)).astype(np.float32)


def train(objective, seed=1):
    x = features(300, seed)
    rng = np.random.default_rng(seed)
    params = {"objective": objective, "max_depth": 3, "seed": seed, "nthread": 1}
    if objective == "binary:logistic":
        y = (x[:, 0] - x[:, 1] + rng.normal(scale=0.5, size=len(x)) > 0).astype(np.float32)
    else:
        y = np.digitize(x[:, 0], [-0.5, 0.5])
        params["num_class"] = 3
    return xgb.train(params, xgb.DMatrix(x, label=y), 8)


def as_sklearn_classifier(booster, nclass):
    """The booster as XGBClassifier.save_model() writes it: the wrapper's attributes as
    JSON in the booster attribute "scikit_learn", with "_estimator_type": "classifier"."""
    b = booster.copy()
    b.set_attr(scikit_learn=json.dumps({"n_classes_": nclass, "classes_": list(range(nclass)),
                                        "_estimator_type": "classifier"}))
    return b


def save(root, name, booster, extra=None):
    folder = os.path.join(str(root), name)
    os.makedirs(folder, exist_ok=True)
    booster.save_model(os.path.join(folder, "model.json"))
    settings = {"implementation": "xgboost"}
    if extra:
        settings["parameters"] = {"extra": extra}
    write_model(root, name, settings)


@pytest.fixture(scope="module")
def boosters():
    return {"bin": train("binary:logistic"), "multi": train("multi:softprob", seed=2)}


@pytest.fixture(scope="module")
def server(tmp_path_factory, boosters):
    repo = tmp_path_factory.mktemp("xgb-mlserver")
    save(repo, "booster", boosters["bin"])
    save(repo, "sk-bin", as_sklearn_classifier(boosters["bin"], 2))
    save(repo, "booster-multi", boosters["multi"])
    save(repo, "sk-multi", as_sklearn_classifier(boosters["multi"], 3))
    # No --runtime-path, no $SELDON_RUNTIME_PATH: the plugin is found beside the binary.
    srv = Server(repo, env={"SELDON_RUNTIME_PATH": None, "OMP_NUM_THREADS": None})
    yield srv
    srv.stop()


def predict(booster, x):
    return booster.predict(xgb.DMatrix(x))


def test_found_without_flags(server):
    status, doc = post_json(server.http, "/v2/repository/index")
    assert status == 200
    assert {r["name"]: r["state"] for r in doc} == {
        "booster": "READY", "sk-bin": "READY", "booster-multi": "READY", "sk-multi": "READY"}, doc
    assert get_json(server.http, "/v2/models/booster/ready")[0] == 200


def test_booster_file_predicts_probability(server, g, boosters):
    x = features(30, seed=5)
    p = predict(boosters["bin"], x)
    status, doc = infer(server.http, "booster", [tensor("input-0", x)])
    assert status == 200, doc
    out = outputs_of(doc)
    assert list(out) == ["predict"] and doc["outputs"][0]["datatype"] == "FP32"
    assert out["predict"].shape == (30,)
    np.testing.assert_allclose(out["predict"], p, **TOL)
    # predict_proba is still there for a classification objective.
    status, doc = infer(server.http, "booster", [tensor("input-0", x)],
                        outputs=["predict_proba"])
    assert status == 200, doc
    np.testing.assert_allclose(outputs_of(doc)["predict_proba"], np.stack([1 - p, p], 1), **TOL)

    channel, stub = g.stub(server)
    try:
        r = stub.ModelInfer(g.request("booster", {"x": x}, raw=True), timeout=GUARD)
        assert r.outputs[0].datatype == "FP32"
        np.testing.assert_allclose(g.outputs(r)["predict"], p, **TOL)
    finally:
        channel.close()


def test_sklearn_classifier_file_predicts_labels(server, g, boosters):
    x = features(30, seed=6)
    p = predict(boosters["bin"], x)
    status, doc = infer(server.http, "sk-bin", [tensor("input-0", x)])
    assert status == 200, doc
    assert doc["outputs"][0]["datatype"] == "INT64"
    np.testing.assert_array_equal(outputs_of(doc)["predict"], (p > 0.5).astype(np.int64))

    pm = predict(boosters["multi"], x)
    status, doc = infer(server.http, "sk-multi", [tensor("x", x)],
                        outputs=["predict", "predict_proba"])
    assert status == 200, doc
    out = outputs_of(doc)
    np.testing.assert_array_equal(out["predict"], np.argmax(pm, axis=1))
    np.testing.assert_allclose(out["predict_proba"], pm, **TOL)

    channel, stub = g.stub(server)
    try:
        r = stub.ModelInfer(g.request("sk-bin", {"x": x}), timeout=GUARD)
        np.testing.assert_array_equal(g.outputs(r)["predict"], (p > 0.5).astype(np.int64))
    finally:
        channel.close()


def test_booster_multiclass_predicts_probabilities(server, boosters):
    x = features(12, seed=7)
    pm = predict(boosters["multi"], x)
    status, doc = infer(server.http, "booster-multi", [tensor("x", x)])
    assert status == 200, doc
    out = outputs_of(doc)
    assert out["predict"].dtype == np.float32 and out["predict"].shape == (12, 3)
    np.testing.assert_allclose(out["predict"], pm, **TOL)


def threads_of(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def test_one_xgboost_thread_unless_settings_raise_it(tmp_path, boosters):
    # XGBoost's OpenMP pool stays out of the way by default (one thread per
    # model, our workers are the parallelism); parameters.extra.nthread raises it.
    x = features(2000, seed=8)
    counts = {}
    for label, extra in (("default", None), ("raised", {"nthread": 4})):
        repo = tmp_path / label
        save(repo, "m", train("binary:logistic"), extra)
        srv = Server(repo, "--workers", "1",
                     env={"SELDON_RUNTIME_PATH": None, "OMP_NUM_THREADS": None})
        try:
            before = threads_of(srv.proc.pid)
            for _ in range(3):
                status, doc = infer(srv.http, "m", [tensor("x", x)])
                assert status == 200, doc
            counts[label] = threads_of(srv.proc.pid) - before
        finally:
            srv.stop()
    assert counts["default"] == 0, counts
    # XGBoost may cap its pool at the cores it is allowed: at least one more thread.
    assert counts["raised"] >= 1, counts


def test_flag_and_env_add_folders_before_the_default(tmp_path):
    # --runtime-path first, then $SELDON_RUNTIME_PATH, then the folder beside the binary;
    # each once. The server logs the path it searches.
    flag, env = tmp_path / "from-flag", tmp_path / "from-env"
    flag.mkdir()
    env.mkdir()
    repo = tmp_path / "repo"
    repo.mkdir()
    srv = Server(repo, "--runtime-path", f"{flag}:{env}",
                 env={"SELDON_RUNTIME_PATH": f"{env}:{flag}"})
    try:
        line = next(l for l in srv.stderr().splitlines() if "runtime path: " in l)
    finally:
        srv.stop()
    folders = line.split("runtime path: ", 1)[1].split(":")
    assert folders[:2] == [str(flag), str(env)], folders
    assert len(folders) == 3 and folders[2].endswith("/runtimes"), folders
    assert os.path.exists(os.path.join(folders[2], "libseldon-runtime-xgboost.so"))
