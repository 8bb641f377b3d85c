"""grpcio stubs for the Open Inference Protocol, generated from our own proto at test time."""
import importlib
import os
import subprocess
import sys


def compile_stubs(out, proto_dir):
    """Runs grpc_tools.protoc into out; returns (grpc_predict_v2_pb2, grpc_predict_v2_pb2_grpc)."""
    proc = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", proto_dir, f"--python_out={out}",
         f"--grpc_python_out={out}", os.path.join(proto_dir, "grpc_predict_v2.proto")],
        capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    sys.path.insert(0, str(out))
    try:
        return (importlib.import_module("grpc_predict_v2_pb2"),
                importlib.import_module("grpc_predict_v2_pb2_grpc"))
    finally:
        sys.path.remove(str(out))
