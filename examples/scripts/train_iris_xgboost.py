#!/usr/bin/python3
"""Trains the example xgboost model: an iris classifier (scikit-learn's copy of the
iris data, 150 flowers, 4 features, 3 species), saved as an MLServer model folder:

    <out>/model.json            the booster (XGBClassifier.save_model format)
    <out>/model-settings.json   {"name": ..., "implementation": "mlserver_xgboost.XGBoostModel"}

Usage: train_iris_xgboost.py OUT_DIR [NAME]   (NAME defaults to "iris-xgb")

Deterministic: the same data, seed and one thread give the same model on every run.
It prints the training accuracy and one prediction to compare answers against.
"""
import json
import os
import sys

import numpy as np
import xgboost as xgb
from sklearn.datasets import load_iris


def main():
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if len(sys.argv) >= 2 else 2
    out = sys.argv[1]
    name = sys.argv[2] if len(sys.argv) > 2 else "iris-xgb"
    iris = load_iris()
    x = iris.data.astype(np.float32)
    y = iris.target
    clf = xgb.XGBClassifier(n_estimators=20, max_depth=3, random_state=7, n_jobs=1)
    clf.fit(x, y)
    os.makedirs(out, exist_ok=True)
    clf.save_model(os.path.join(out, "model.json"))
    settings = {"name": name, "implementation": "mlserver_xgboost.XGBoostModel"}
    with open(os.path.join(out, "model-settings.json"), "w") as f:
        json.dump(settings, f, indent=2)
        f.write("\n")
    accuracy = float((clf.predict(x) == y).mean())
    sample = x[:1]
    print(json.dumps({"model": out, "accuracy": round(accuracy, 4),
                      "sample": sample.tolist(), "predict": clf.predict(sample).tolist()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
