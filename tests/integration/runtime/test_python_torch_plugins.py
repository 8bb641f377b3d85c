"""The Python and TorchScript plugins under the C driver: loaded through the
repository API and run from many threads at once (each thread a new Python
thread state, the GIL taken and given back each call), answers identical to
the first and equal to the libraries' own. Sanitizer builds check the plugins
through this driver too.
"""
import os

import numpy as np
import pytest

from conftest import Failure, plugin, run, tensor, write_model

PLAIN = '''
import numpy as np

class Poly:
    def predict(self, inputs):
        x = inputs["x"]
        return {"y": x * x + 1, "n": np.array([x.size], dtype=np.int64)}

class Fails:
    def predict(self, inputs):
        raise KeyError("no such feature")
'''


def test_python_plain_model_from_many_threads(tmp_path):
    plugin("python")
    write_model(tmp_path, "poly", {"implementation": "poly.Poly"}, {"poly.py": PLAIN})
    x = np.arange(12, dtype=np.float64).reshape(3, 4)
    out = run(tmp_path, "poly", [tensor("x", x)], threads=4)
    np.testing.assert_array_equal(out["y"], x * x + 1)
    np.testing.assert_array_equal(out["n"], [12])


def test_python_errors(tmp_path):
    plugin("python")
    write_model(tmp_path, "fails", {"implementation": "poly.Fails"}, {"poly.py": PLAIN})
    with pytest.raises(Failure) as err:
        run(tmp_path, "fails", [tensor("x", np.ones(2))])
    assert err.value.stage == "infer"
    assert err.value.error == "model fails: KeyError: 'no such feature'"
    write_model(tmp_path, "nothing", {"implementation": "poly.Missing"}, {"poly.py": PLAIN})
    with pytest.raises(Failure) as err:
        run(tmp_path, "nothing", [tensor("x", np.ones(2))])
    assert err.value.stage == "load" and "module poly has no Missing" in err.value.error


def test_sklearn_from_many_threads(tmp_path):
    plugin("python")
    joblib = pytest.importorskip("joblib")
    from sklearn.datasets import load_iris
    from sklearn.tree import DecisionTreeClassifier

    x, y = load_iris(return_X_y=True)
    model = DecisionTreeClassifier(random_state=0).fit(x, y)
    folder = write_model(tmp_path, "tree", {"implementation": "sklearn"})
    joblib.dump(model, os.path.join(folder, "model.joblib"))
    q = x[::10].astype(np.float32)
    out = run(tmp_path, "tree", [tensor("predict", q)], outputs=["predict", "predict_proba"],
              threads=4)
    np.testing.assert_array_equal(out["predict"], model.predict(q).reshape(-1, 1))
    np.testing.assert_array_equal(out["predict_proba"], model.predict_proba(q))


def test_torchscript_from_many_threads(tmp_path):
    plugin("pytorch")
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    traced = torch.jit.trace(net.eval(), torch.zeros(1, 4))
    folder = write_model(tmp_path, "net", {"implementation": "pytorch"})
    traced.save(os.path.join(folder, "model.pt"))
    q = np.random.default_rng(0).random((5, 4), dtype=np.float32)
    out = run(tmp_path, "net", [tensor("x__0", q)], threads=4)
    np.testing.assert_array_equal(out["y__0"], traced(torch.from_numpy(q)).detach().numpy())
