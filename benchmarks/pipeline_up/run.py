#!/usr/bin/python3
"""Pipelines in seldon up: a 2-step pipeline of identity models beside the same identity
model called directly, in one seldon-up, in the same run, on loopback.

    /usr/bin/python3 benchmarks/pipeline_up/run.py [--quick | --smoke] [options]

REST is loaded with wrk (keep-alive, a Lua script posting a small JSON body), gRPC with
h2load (a pre-framed ModelInferRequest with the seldon-model header), at 1 and 16
connections. The figure (issue 13's first benchmark): the overhead per step, p50, over
calling the model directly:

    (p50 of the pipeline - p50 of one direct model call) / 2 steps

which charges the pipeline with its second model call too (the identity model is a copy
of pointers). Target: at most 20 us. Printed, never enforced; the CTest smoke run only
checks that the harness works.
"""
import argparse
import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", ".."))

_spec = importlib.util.spec_from_file_location("bench_server",
                                               os.path.join(SOURCE, "benchmarks", "server",
                                                            "run.py"))
bs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bs)

HOST = bs.HOST
TARGET_US = 20.0

MODELS = """apiVersion: mlops.seldon.io/v1alpha1
kind: Model
metadata:
  name: ida
spec:
  storageUri: "./models/ida"
---
apiVersion: mlops.seldon.io/v1alpha1
kind: Model
metadata:
  name: idb
spec:
  storageUri: "./models/idb"
"""

PIPELINE = """apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata:
  name: two
spec:
  steps:
  - name: ida
  - name: idb
    inputs:
    - ida
  output:
    steps:
    - idb
"""


def log(msg):
    print(f"[bench_pipeline_up {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def build(args):
    if not os.path.exists(os.path.join(args.build_dir, "CMakeCache.txt")):
        subprocess.run(["cmake", "-S", SOURCE, "-B", args.build_dir], check=True,
                       stdout=subprocess.DEVNULL)
    log("building seldon-up and seldon-cli")
    subprocess.run(["cmake", "--build", args.build_dir, "-j2", "--target", "seldon-up",
                    "seldon-cli"], check=True, stdout=subprocess.DEVNULL)


def copy_binaries(args, workdir):
    """Copies the binaries, so a concurrent rebuild cannot swap them mid-run."""
    src = {"up": os.path.join(args.build_dir, "daemons", "up", "seldon-up"),
           "cli": os.path.join(args.build_dir, "daemons", "cli", "seldon")}
    bins = {}
    for key, path in src.items():
        if not os.path.exists(path):
            raise SystemExit(f"bench_pipeline_up: {path} is missing: build seldon-up, seldon-cli")
        bins[key] = os.path.join(workdir, "bin", os.path.basename(path))
        os.makedirs(os.path.dirname(bins[key]), exist_ok=True)
        shutil.copy2(path, bins[key])
    return bins


def pb_field(num, wire, payload):
    def varint(v):
        out = b""
        while True:
            b = v & 0x7F
            v >>= 7
            out += bytes([b | (0x80 if v else 0)])
            if not v:
                return out
    key = varint((num << 3) | wire)
    if wire == 2:
        return key + varint(len(payload)) + payload
    return key + varint(payload)


def grpc_body(path, floats):
    """A framed ModelInferRequest: one FP32 tensor INPUT [1, floats] in raw_input_contents."""
    shape = b"".join(pb_field(0, 0, v)[1:] for v in (1, floats))  # packed varints
    tensor = pb_field(1, 2, b"INPUT") + pb_field(2, 2, b"FP32") + pb_field(3, 2, shape)
    raw = struct.pack(f"<{floats}f", *[float(i) for i in range(floats)])
    msg = pb_field(5, 2, tensor) + pb_field(7, 2, raw)
    with open(path, "wb") as f:
        f.write(b"\0" + struct.pack(">I", len(msg)) + msg)


def run(args):
    if not args.no_build:
        build(args)
    workdir = tempfile.mkdtemp(prefix="bench_pipeline_up.")
    os.chmod(workdir, 0o755)
    up = None
    try:
        bins = copy_binaries(args, workdir)
        for name in ("ida", "idb"):
            bs.write_model(os.path.join(workdir, "models"), name,
                           {"implementation": "builtin.identity"})
        with open(os.path.join(workdir, "models.yaml"), "w") as f:
            f.write(MODELS)
        with open(os.path.join(workdir, "pipeline.yaml"), "w") as f:
            f.write(PIPELINE)
        body = os.path.join(workdir, "request.json")
        with open(body, "w") as f:
            json.dump({"inputs": [{"name": "INPUT", "datatype": "FP32", "shape": [1, 16],
                                   "data": list(range(16))}]}, f)
        gbody = os.path.join(workdir, "request.bin")
        grpc_body(gbody, 16)
        script = bs.wrk_script(workdir, body)
        cmd = [bins["up"], "--host", HOST, "--port", "0", "--scheduler-port", "0",
               "--metrics-port", "-1", "--io-threads", str(args.io_threads), "--workers", "1"]
        up = bs.Server("seldon-up", cmd, workdir,
                       ready=r"listening inference=\d+ scheduler=\d+ metrics=-?\d+")
        port, sched = up.ports["inference"], up.ports["scheduler"]
        cli = [bins["cli"], "--scheduler-host", f"{HOST}:{sched}", "--inference-host",
               f"{HOST}:{port}"]
        subprocess.run(cli + ["load", "-f", "models.yaml", "-w", "ModelAvailable"], cwd=workdir,
                       check=True, stdout=subprocess.DEVNULL)
        subprocess.run(cli + ["pipeline", "load", "-f", "pipeline.yaml"], cwd=workdir,
                       check=True, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:  # the pipeline reaches the ingress loops after the scheduler's pump
            _, st, _ = bs.http_exchange(port, "/v2/pipelines/two/infer", open(body, "rb").read())
            if st == 200:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"pipeline not served: {st}\n{up.tail()}")
            time.sleep(0.05)
        bench = bs.Bench(args, workdir)
        fig = {}
        for conns in (1, 16):
            fig[("rest", "direct", conns)] = bench.wrk(
                f"REST c{conns} model ida", up, port, "/v2/models/ida/infer", script, conns)
            fig[("rest", "pipeline", conns)] = bench.wrk(
                f"REST c{conns} pipeline two", up, port, "/v2/pipelines/two/infer", script,
                conns)
            fig[("grpc", "direct", conns)] = bench.h2load_grpc(
                f"gRPC c{conns} model ida", up, port, gbody, conns,
                headers=["seldon-model: ida"])
            fig[("grpc", "pipeline", conns)] = bench.h2load_grpc(
                f"gRPC c{conns} pipeline two", up, port, gbody, conns,
                headers=["seldon-model: two.pipeline"])
        rows = []
        print()
        print(f"{'case':<34}{'direct p50':>12}{'pipeline p50':>14}{'per step':>11}"
              f"{'target':>9}")
        for proto in ("rest", "grpc"):
            for conns in (1, 16):
                d = fig[(proto, "direct", conns)]
                p = fig[(proto, "pipeline", conns)]
                per_step = (p["p50_us"] - d["p50_us"]) / 2
                rows.append({"protocol": proto, "conns": conns, "direct_p50_us": d["p50_us"],
                             "pipeline_p50_us": p["p50_us"], "per_step_us": per_step,
                             "direct_rps": d["rps"], "pipeline_rps": p["rps"],
                             "errors": d["errors"] + p["errors"]})
                print(f"{proto + ' c' + str(conns) + ' overhead per step (us)':<34}"
                      f"{d['p50_us']:>12.0f}{p['p50_us']:>14.0f}{per_step:>11.1f}"
                      f"{'<= ' + str(int(TARGET_US)):>9}")
        print()
        for r in bench.raw:
            print(f"  {r['label']:<28} {r['rps']:>9.0f} rps  p50 {r['p50_us']:>7.0f} us  "
                  f"p99 {r['p99_us']:>7.0f} us  errors {r['errors']}")
        out = os.path.join(args.build_dir, "benchmarks", "pipeline_up")
        os.makedirs(out, exist_ok=True)
        with open(os.path.join(out, "bench_pipeline_up.json"), "w") as f:
            json.dump({"rows": rows, "raw": bench.raw}, f, indent=1)
        bad = sum(r["errors"] for r in bench.raw)
        return 1 if bad else 0
    finally:
        if up is not None:
            up.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build-dir", default=os.path.join(SOURCE, "build"))
    p.add_argument("--no-build", action="store_true", help="use the binaries as built")
    p.add_argument("--seconds", type=int, default=8, help="per measurement (default 8)")
    p.add_argument("--warmup", type=int, default=2, help="discarded run before each (default 2)")
    p.add_argument("--threads", type=int, default=1, help="wrk/h2load threads (default 1)")
    p.add_argument("--io-threads", type=int, default=1, help="seldon-up's ingress loops")
    p.add_argument("--quick", action="store_true", help="3 s per measurement")
    p.add_argument("--smoke", action="store_true", help="1 s, no warm-up: checks the harness")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    args = p.parse_args()
    if args.quick:
        args.seconds, args.warmup = 3, 1
    if args.smoke:
        args.seconds, args.warmup = 1, 0
    sys.exit(run(args))


if __name__ == "__main__":
    main()
