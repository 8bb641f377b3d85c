"""grpcio stubs for the Open Inference Protocol, generated from our own proto at test time."""
import importlib
import os
import struct
import subprocess
import sys
import types


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



def grpc_stubs(out, proto_dir):
    """grpcio and the compiled stubs together: .grpc, .pb2 and .pb2_grpc."""
    import grpc
    pb2, pb2_grpc = compile_stubs(out, proto_dir)
    return types.SimpleNamespace(grpc=grpc, pb2=pb2, pb2_grpc=pb2_grpc)

def infer_request(stubs, tensors, raw=False, rid=""):
    """A ModelInferRequest from (name, datatype, shape, values) tuples, values in the typed
    contents or, with raw, packed little-endian in raw_input_contents (values already bytes go
    there unchanged). stubs has .pb2."""
    req = stubs.pb2.ModelInferRequest(id=rid)
    for name, dt, shape, values in tensors:
        t = req.inputs.add()
        t.name = name
        t.datatype = dt
        t.shape.extend(shape)
        if isinstance(values, bytes):
            req.raw_input_contents.append(values)  # sent as they are
        elif raw:
            fmt = {"FP32": "f", "INT32": "i"}[dt]
            req.raw_input_contents.append(struct.pack(f"<{len(values)}{fmt}", *values))
        elif dt == "FP32":
            t.contents.fp32_contents.extend(values)
        else:
            t.contents.int_contents.extend(values)
    return req


def output_values(resp, i):
    """Output i of a ModelInferResponse as a list, from raw_output_contents when it has them."""
    o = resp.outputs[i]
    if len(resp.raw_output_contents) > i:
        fmt = {"FP32": "f", "INT32": "i"}[o.datatype]
        raw = resp.raw_output_contents[i]
        return list(struct.unpack(f"<{len(raw) // 4}{fmt}", raw))
    return list(o.contents.fp32_contents) or list(o.contents.int_contents)
