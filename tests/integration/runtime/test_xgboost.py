"""The xgboost runtime plugin against XGBoost's own Python predictions.

Models are trained here with Debian's python3-xgboost (the same libxgboost
the plugin links), saved in each of XGBoost's formats, served through the
repository, and compared with Booster.predict on a DMatrix: probabilities
and regression values must match to the float32 bit, labels exactly.

As MLServer does, a file saved by Booster.save_model() answers predict with
the booster's prediction (XGBRegressor.predict), and only a file saved by the
scikit-learn wrapper as a classifier answers with labels (XGBClassifier.predict).
"""
import json
import os

import numpy as np
import pytest

xgb = pytest.importorskip("xgboost")

from conftest import Failure, plugin, run, tensor, write_model  # noqa: E402

FORMATS = ["model.json", "model.ubj", "model.bst"]
NFEAT = 5


@pytest.fixture(scope="module", autouse=True)
def _built():
    plugin("xgboost")


def features(n, seed, missing=True):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, NFEAT)).astype(np.float32)
    if missing:
        x[::7, 2] = np.nan  # exercises the default direction for missing values
    return x


def train(objective, seed=1):
    """A small model; each (objective, seed) is trained once per session."""
    key = (objective, seed)
    if key not in _trained:
        _trained[key] = _train(objective, seed)
    return _trained[key].copy()


_trained = {}


def _train(objective, seed, rounds=12):
    params = {}
    rng = np.random.default_rng(seed)
    x = features(300, seed)
    if objective == "binary:logistic":
        y = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(scale=0.5, size=len(x)) > 0).astype(np.float32)
    elif objective.startswith("multi:"):
        y = np.digitize(x[:, 0] + rng.normal(scale=0.3, size=len(x)), [-0.5, 0.5])
        params["num_class"] = 3
    else:
        y = 3 * x[:, 0] - x[:, 1] + rng.normal(scale=0.1, size=len(x))
    params.update({"objective": objective, "max_depth": 3, "eta": 0.3, "seed": seed})
    return xgb.train(params, xgb.DMatrix(x, label=y), rounds)


def save(booster, root, name, fname, uri=True, implementation="xgboost"):
    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    booster.save_model(os.path.join(folder, fname))
    settings = {"implementation": implementation}
    if uri:
        settings["parameters"] = {"uri": "./" + fname}
    write_model(root, name, settings)
    return folder


def expected(booster, x):
    return booster.predict(xgb.DMatrix(x))


def sklearn_meta(booster, estimator_type="classifier", nclass=2):
    """Marks a booster as XGBClassifier.save_model() (or XGBRegressor's) marks it.

    The wrapper stores its attributes as the booster attribute "scikit_learn",
    a JSON object written by json.dumps whose "_estimator_type" names the kind
    (xgboost/sklearn.py, XGBModel.save_model). The wrapper itself needs
    scikit-learn, which is not installed here; the test with the real class
    runs where it is.
    """
    meta = {"n_estimators": 12, "objective": json.loads(booster.save_config())["learner"]
            ["objective"]["name"], "_estimator_type": estimator_type}
    if estimator_type == "classifier":
        meta.update({"n_classes_": nclass, "classes_": list(range(nclass))})
    booster = booster.copy()
    booster.set_attr(scikit_learn=json.dumps(meta))
    return booster


def classifier_labels(objective, p):
    """What XGBClassifier.predict gives for the booster's output p."""
    if objective == "binary:logistic":
        return (p > 0.5).astype(np.int64)
    if objective == "multi:softmax":
        return p.astype(np.int32)
    return np.argmax(p, axis=1)


@pytest.mark.parametrize("fname", FORMATS)
def test_binary_booster_predicts_probability(tmp_path, fname):
    # Booster.save_model(): MLServer loads it as an XGBRegressor, whose
    # predict is the probability of class 1, float32.
    bst = train("binary:logistic")
    save(bst, tmp_path, "bin", fname)
    x = features(40, seed=7)
    p = expected(bst, x)

    out = run(tmp_path, "bin", [tensor("input-0", x)])
    assert list(out) == ["predict"]
    assert out["predict"].dtype == np.float32 and out["predict"].shape == (40,)
    np.testing.assert_array_equal(out["predict"], p)
    assert not np.all(np.isin(out["predict"], [0, 1]))  # probabilities, not labels

    out = run(tmp_path, "bin", [tensor("input-0", x)], outputs=["predict_proba"])
    assert list(out) == ["predict_proba"]
    proba = np.stack([np.float32(1) - p, p], axis=1)
    assert out["predict_proba"].shape == (40, 2)
    np.testing.assert_array_equal(out["predict_proba"], proba)


@pytest.mark.parametrize("fname", FORMATS)
@pytest.mark.parametrize("objective", ["binary:logistic", "multi:softprob", "multi:softmax"])
def test_sklearn_classifier_predicts_labels(tmp_path, fname, objective):
    bst = train(objective, seed=2)
    nclass = 2 if objective == "binary:logistic" else 3
    save(sklearn_meta(bst, nclass=nclass), tmp_path, "clf", fname)
    x = features(50, seed=8)
    p = expected(bst, x)
    want = classifier_labels(objective, p)

    out = run(tmp_path, "clf", [tensor("x", x)])
    assert list(out) == ["predict"]
    assert out["predict"].dtype == want.dtype and out["predict"].shape == (50,)
    np.testing.assert_array_equal(out["predict"], want)

    out = run(tmp_path, "clf", [tensor("x", x)], outputs=["predict", "predict_proba"])
    assert sorted(out) == ["predict", "predict_proba"]
    np.testing.assert_array_equal(out["predict"], want)
    if objective == "multi:softmax":
        bst.set_param({"objective": "multi:softprob"})
        p = expected(bst, x)
    elif objective == "binary:logistic":
        p = np.stack([np.float32(1) - p, p], axis=1)
    np.testing.assert_array_equal(out["predict_proba"], p)


def test_sklearn_regressor_and_real_wrapper(tmp_path):
    # Saved by XGBRegressor: the prediction itself, even for a logistic objective.
    bst = train("binary:logistic")
    save(sklearn_meta(bst, "regressor"), tmp_path, "r", "model.json")
    x = features(20, seed=3)
    out = run(tmp_path, "r", [tensor("x", x)])
    assert out["predict"].dtype == np.float32
    np.testing.assert_array_equal(out["predict"], expected(bst, x))
    try:
        import sklearn  # noqa: F401
    except ImportError:
        return
    # Where scikit-learn is installed, the real wrapper's files and answers.
    y = (x[:, 0] > 0).astype(int)
    clf = xgb.XGBClassifier(n_estimators=4, max_depth=2)
    clf.fit(x, y)
    clf.save_model(os.path.join(tmp_path, "real.json"))
    os.makedirs(os.path.join(tmp_path, "real"), exist_ok=True)
    os.replace(os.path.join(tmp_path, "real.json"), os.path.join(tmp_path, "real", "model.json"))
    write_model(tmp_path, "real", {"implementation": "xgboost"})
    out = run(tmp_path, "real", [tensor("x", x)])
    np.testing.assert_array_equal(out["predict"], clf.predict(x))


@pytest.mark.parametrize("fname", FORMATS)
def test_softprob_booster(tmp_path, fname):
    bst = train("multi:softprob", seed=2)
    save(bst, tmp_path, "sp", fname)
    x = features(50, seed=8)
    p = expected(bst, x)
    assert p.shape == (50, 3)

    out = run(tmp_path, "sp", [tensor("x", x)], outputs=["predict", "predict_proba"])
    assert sorted(out) == ["predict", "predict_proba"]
    assert out["predict"].dtype == np.float32
    np.testing.assert_array_equal(out["predict"], p)
    np.testing.assert_array_equal(out["predict_proba"], p)


def test_softmax_booster(tmp_path):
    bst = train("multi:softmax", seed=3)
    save(bst, tmp_path, "sm", "model.json")
    x = features(30, seed=9)
    labels = expected(bst, x)

    out = run(tmp_path, "sm", [tensor("x", x)], outputs=["predict", "predict_proba"])
    assert out["predict"].dtype == np.float32
    np.testing.assert_array_equal(out["predict"], labels)
    bst.set_param({"objective": "multi:softprob"})
    np.testing.assert_array_equal(out["predict_proba"], expected(bst, x))


def test_nthread_setting(tmp_path):
    bst = train("reg:squarederror", seed=4)
    x = features(30, seed=5)
    for nthread in (1, 2, 0):
        folder = save(bst, tmp_path, f"n{nthread}", "model.json")
        write_model(tmp_path, f"n{nthread}", {"implementation": "xgboost",
                                              "parameters": {"extra": {"nthread": nthread}}})
        assert os.path.exists(os.path.join(folder, "model.json"))
        out = run(tmp_path, f"n{nthread}", [tensor("x", x)])
        np.testing.assert_array_equal(out["predict"], expected(bst, x))
    for bad in ("many", -1, 1.5):
        save(bst, tmp_path, "bad", "model.json")
        write_model(tmp_path, "bad", {"implementation": "xgboost",
                                      "parameters": {"extra": {"nthread": bad}}})
        with pytest.raises(Failure) as err:
            run(tmp_path, "bad", [])
        assert err.value.stage == "load" and "nthread" in err.value.error


@pytest.mark.parametrize("fname", FORMATS)
def test_regressor(tmp_path, fname):
    bst = train("reg:squarederror", seed=4)
    save(bst, tmp_path, "reg", fname, uri=False)  # found by its well-known name
    x = features(60, seed=10)
    out = run(tmp_path, "reg", [tensor("input-0", x)])
    assert out["predict"].dtype == np.float32 and out["predict"].shape == (60,)
    np.testing.assert_array_equal(out["predict"], expected(bst, x))

    with pytest.raises(Failure) as err:
        run(tmp_path, "reg", [tensor("input-0", x)], outputs=["predict_proba"])
    assert "not a classifier" in err.value.error


def test_multi_output_regressor(tmp_path):
    rng = np.random.default_rng(5)
    x = features(200, seed=5)
    y = np.stack([x[:, 0] * 2, x[:, 1] - x[:, 3]], axis=1) + rng.normal(scale=0.1, size=(200, 2))
    bst = xgb.train({"tree_method": "hist", "max_depth": 3}, xgb.DMatrix(x, label=y), 8)
    save(bst, tmp_path, "mo", "model.json")
    xt = features(20, seed=11)
    want = expected(bst, xt)
    assert want.shape == (20, 2)
    out = run(tmp_path, "mo", [tensor("input-0", xt)])
    assert out["predict"].shape == (20, 2)
    np.testing.assert_array_equal(out["predict"], want)


def test_input_datatypes_and_single_row(tmp_path):
    bst = train("binary:logistic", seed=6)
    save(bst, tmp_path, "m", "model.json", implementation="mlserver_xgboost.XGBoostModel")
    x = features(10, seed=12, missing=False)
    want = expected(bst, x)
    ask = ["predict_proba"]

    # FP64 and integers are converted to float32 by XGBoost, as a DMatrix does.
    x64 = x.astype(np.float64) * 1.000001
    got = run(tmp_path, "m", [tensor("in", x64)], outputs=ask)["predict_proba"][:, 1]
    np.testing.assert_array_equal(got, expected(bst, x64))
    xi = np.round(x * 3).astype(np.int32)
    for dtype in (np.int8, np.int16, np.int32, np.int64):
        got = run(tmp_path, "m", [tensor("in", xi.astype(dtype))], outputs=ask)["predict_proba"]
        np.testing.assert_array_equal(got[:, 1], expected(bst, xi.astype(np.float32)))
    xu = np.abs(xi).astype(np.uint16)
    got = run(tmp_path, "m", [tensor("in", xu)], outputs=ask)["predict_proba"]
    np.testing.assert_array_equal(got[:, 1], expected(bst, xu.astype(np.float32)))

    # [F] is one row.
    got = run(tmp_path, "m", [tensor("in", x[3])], outputs=ask)["predict_proba"]
    assert got.shape == (1, 2)
    assert got[0, 1] == want[3]


def test_model_file_precedence(tmp_path):
    # model.json wins over model.ubj and model.bst when the uri is the folder.
    clf = train("binary:logistic", seed=1)
    reg = train("reg:squarederror", seed=2)
    folder = save(clf, tmp_path, "both", "model.json", uri=False)
    reg.save_model(os.path.join(folder, "model.bst"))
    reg.save_model(os.path.join(folder, "model.ubj"))
    x = features(5, seed=3)
    out = run(tmp_path, "both", [tensor("x", x)], outputs=["predict_proba"])
    np.testing.assert_array_equal(out["predict_proba"][:, 1], expected(clf, x))
    os.remove(os.path.join(folder, "model.json"))
    out = run(tmp_path, "both", [tensor("x", x)])
    np.testing.assert_array_equal(out["predict"], expected(reg, x))


def test_empty_batch(tmp_path):
    save(train("multi:softprob", seed=2), tmp_path, "sp", "model.json")
    save(train("binary:logistic"), tmp_path, "bin", "model.json")
    save(train("reg:squarederror"), tmp_path, "reg", "model.json")
    x = features(0, seed=1)
    both = ["predict", "predict_proba"]
    out = run(tmp_path, "sp", [tensor("x", x)], outputs=both)
    assert out["predict"].shape == (0, 3) and out["predict_proba"].shape == (0, 3)
    out = run(tmp_path, "bin", [tensor("x", x)], outputs=both)
    assert out["predict"].shape == (0,) and out["predict_proba"].shape == (0, 2)
    out = run(tmp_path, "reg", [tensor("x", x)])
    assert out["predict"].shape == (0,) and out["predict"].dtype == np.float32


@pytest.mark.parametrize("objective", ["multi:softprob", "multi:softmax", "reg:squarederror"])
def test_concurrent_predictions(tmp_path, objective):
    # The runtime is CONCURRENT: inplace prediction from several threads at
    # once on one booster must give every caller the same, right answer.
    bst = train(objective, seed=3)
    save(bst, tmp_path, "m", "model.ubj")
    x = features(64, seed=4)
    outputs = None if objective.startswith("reg") else ["predict", "predict_proba"]
    out = run(tmp_path, "m", [tensor("x", x)], outputs=outputs, threads=4)
    want = expected(bst, x)
    if objective == "multi:softprob":
        np.testing.assert_array_equal(out["predict_proba"], want)
    else:
        np.testing.assert_array_equal(out["predict"], want.astype(out["predict"].dtype))


def test_bad_requests(tmp_path):
    bst = train("binary:logistic")
    save(bst, tmp_path, "m", "model.json")
    x = features(4, seed=1)
    cases = [
        ([tensor("a", x), tensor("b", x)], None, "one input tensor"),
        ([tensor("a", x[:, :3])], None, "has 3 features, the model expects 5"),
        ([tensor("a", x.reshape(2, 2, 5))], None, "[N, F] or [F]"),
        ([{"name": "s", "datatype": "BYTES", "shape": [1], "data": ["x"]}], None, "BYTES"),
        ([tensor("a", x)], ["nope"], "output nope is not available"),
    ]
    for inputs, outputs, text in cases:
        with pytest.raises(Failure) as err:
            run(tmp_path, "m", inputs, outputs)
        assert err.value.stage == "infer"
        assert text in err.value.error


def test_load_failures(tmp_path):
    write_model(tmp_path, "nofile", {"implementation": "xgboost",
                                     "parameters": {"uri": "./missing.json"}})
    with pytest.raises(Failure) as err:
        run(tmp_path, "nofile", [])
    assert err.value.stage == "load"
    assert "missing.json" in err.value.error

    write_model(tmp_path, "empty", {"implementation": "xgboost"})
    with pytest.raises(Failure) as err:
        run(tmp_path, "empty", [])
    assert "no model.json, model.ubj or model.bst" in err.value.error

    write_model(tmp_path, "corrupt", {"implementation": "xgboost"},
                {"model.json": '{"learner": {"this is": "not a model"'})
    with pytest.raises(Failure) as err:
        run(tmp_path, "corrupt", [])
    assert err.value.stage == "load"
    assert "cannot load" in err.value.error and "model.json" in err.value.error
    # XGBoost's own reason follows the path.
    assert len(err.value.error.split("model.json: ", 1)[1]) > 0
