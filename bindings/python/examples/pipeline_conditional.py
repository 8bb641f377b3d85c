#!/usr/bin/python3
"""Seldon's conditional pipeline, in process, from Python.

    SELDON_LIB=build/libseldon/libseldon.so PYTHONPATH=bindings/python \
        /usr/bin/python3 bindings/python/examples/pipeline_conditional.py [MODELS_DIR]

The conditional and mul10 steps run the builtin models of the repository
(examples/models); add10 is a Python function. CHOICE 0 ends in mul10,
CHOICE 1 in add10.
"""

import os
import sys

import numpy as np

import seldon

PIPELINE = """
apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata:
  name: tfsimple-conditional
spec:
  steps:
    - name: conditional
    - name: mul10
      inputs: [conditional.outputs.OUTPUT0]
      tensorMap: {conditional.outputs.OUTPUT0: INPUT}
    - name: add10
      inputs: [conditional.outputs.OUTPUT1]
      tensorMap: {conditional.outputs.OUTPUT1: INPUT}
  output:
    steps: [mul10, add10]
    stepsJoin: any
"""


def add10(tensors):
    """A step in Python: a dict of numpy arrays in, a dict out."""
    return {"OUTPUT": tensors["INPUT"] + 10}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    models = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "..", "..",
                                                                  "examples", "models")
    repo = seldon.Repository(models)
    repo.load("conditional", "mul10")
    with seldon.Pipeline(PIPELINE, repository=repo, steps={"add10": add10}) as pipe:
        pipe.check()
        for choice in (0, 1):
            out = pipe.infer({
                "CHOICE": np.array([choice], dtype=np.int32),
                "INPUT0": np.array([1, 2, 3, 4], dtype=np.float32),
                "INPUT1": np.array([5, 6, 7, 8], dtype=np.float32),
            })
            print("CHOICE %d: OUTPUT %s" % (choice, out["OUTPUT"].tolist()))


if __name__ == "__main__":
    main()
