#!/usr/bin/python3
"""The Kafka pipeline benchmark: a 2-step identity pipeline (ida -> idb) on seldon-kafka-dev,
with seldon-dataflow, seldon-modelgateway, seldon-router and seldon-server as processes of
their own (the integration tests' helpers start them).

1. One produce-to-consume hop on the same broker, in the same run (kpbench with --in = --out),
   p50 at 1 record in flight.
2. The pipeline end to end at 1 in flight: p50, against 6 hops (in -> dataflow -> ida.inputs ->
   modelgateway -> ida.outputs -> dataflow -> idb.inputs -> modelgateway -> idb.outputs ->
   dataflow -> outputs -> client); the two model calls through the router come on top.
3. Throughput at 16 in flight ("connections") with topics of 1, 4 and 16 partitions.

Figures only, on whatever machine runs it; see README.md.
"""
import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SOURCE, "tests", "integration", "dataflow"))

PIPELINE = """apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata:
  name: bp
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default=os.path.join(SOURCE, "build"))
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--fetch-wait", default="5",
                    help="fetch.wait.max.ms of every consumer (the development broker does not "
                         "end a fetch early when records arrive)")
    a = ap.parse_args()
    b = a.build_dir
    os.environ.setdefault("SELDON_DATAFLOW", f"{b}/daemons/dataflow/seldon-dataflow")
    os.environ.setdefault("SELDON_KAFKA_DEV", f"{b}/daemons/kafka-dev/seldon-kafka-dev")
    os.environ.setdefault("SELDON_MODELGATEWAY", f"{b}/daemons/modelgateway/seldon-modelgateway")
    os.environ.setdefault("SELDON_ROUTER", f"{b}/daemons/router/seldon-router")
    os.environ.setdefault("SELDON_SERVER", f"{b}/daemons/server/seldon-server")
    os.environ.setdefault("SELDON_PROTO_DIR", os.path.join(SOURCE, "proto"))
    kpbench = f"{b}/benchmarks/kafka_pipeline/kpbench"
    if a.smoke:
        a.requests, a.seconds = 20, 1
    import conftest as dc
    kh = dc.kh
    sh, rh = kh.sh, kh.rh
    import numpy as np
    g = None
    tmp = tempfile.mkdtemp(prefix="kpbench-")
    repo = os.path.join(tmp, "repo")
    for m in ("ida", "idb"):
        sh.write_model(repo, m, {"implementation": "builtin.identity"})
    manifest = os.path.join(tmp, "bp.yaml")
    with open(manifest, "w") as f:
        f.write(PIPELINE)
    value = os.path.join(tmp, "value.pb")
    with open(value, "wb") as f:
        f.write(request_bytes(g, np))
    server = sh.Server(repo)
    router = rh.Router(rh.routes_yaml([(n, [rh.upstream_of(server)], None) for n in ("ida", "idb")]))
    rows = []
    try:
        for parts in (4, 1, 16):
            topics = [f"seldon.default.pipeline.bp.{io}" for io in ("inputs", "outputs")]
            topics += [f"seldon.default.model.{m}.{io}" for m in ("ida", "idb")
                       for io in ("inputs", "outputs")]
            topics += ["seldon.default.errors.errors", "kpbench.hop"]
            broker = kh.KafkaDev(*sum((["--topic", f"{t}:{parts}"] for t in topics), []))
            fw = ["--kafka-config", f"fetch.wait.max.ms={a.fetch_wait}"]
            mg = kh.ModelGateway(router, "--model", "ida", "--model", "idb", "--max-inflight", "64",
                                 *fw, broker=broker.bootstrap)
            df = dc.Dataflow(broker.bootstrap, [manifest], *fw)
            try:
                df.wait_log(r"assigned seldon\.default\.pipeline\.bp\.inputs")
                mg.wait_log(r"assigned seldon\.default\.model\.idb\.inputs")

                def run(inp, out, conc, requests=None, seconds=None):
                    cmd = [kpbench, "--broker", broker.bootstrap, "--in", inp, "--out", out,
                           "--resource", "bp", "--value-file", value, "--partitions", str(parts),
                           "--concurrency", str(conc), "--fetch-wait", a.fetch_wait]
                    cmd += ["--requests", str(requests)] if requests else ["--seconds",
                                                                          str(seconds)]
                    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
                    if p.returncode != 0:
                        raise SystemExit(p.stderr)
                    return dict(kv.split("=") for kv in p.stdout.split())
                if parts == 4:
                    hop = run("kpbench.hop", "kpbench.hop", 1, requests=a.requests)
                    e2e = run(topics[0], topics[1], 1, requests=a.requests)
                    h = float(hop["p50_ms"])
                    p = float(e2e["p50_ms"])
                    print(f"hop p50 {h:.3f} ms; 6 hops {6 * h:.3f} ms; pipeline p50 {p:.3f} ms "
                          f"(p99 {float(e2e['p99_ms']):.3f}); ratio {p / (6 * h):.2f} "
                          f"(target <= 1.5)")
                t = run(topics[0], topics[1], 16, seconds=a.seconds)
                rows.append((parts, float(t["per_s"]), float(t["p50_ms"])))
                print(f"16 in flight, {parts:2d} partition(s): {float(t['per_s']):8.1f} req/s, "
                      f"p50 {float(t['p50_ms']):.3f} ms")
            finally:
                df.stop()
                mg.stop()
                broker.stop()
    finally:
        router.stop()
        server.stop()
        kh.procs.kill_all(kh.STARTED)


def request_bytes(g, np):
    sys.path.insert(0, os.path.join(SOURCE, "tests", "integration", "lib"))
    import oipstubs
    pb2 = oipstubs.compile_stubs(tempfile.mkdtemp(prefix="kpbench-stubs-"),
                                 os.path.join(SOURCE, "proto"))[0]
    req = pb2.ModelInferRequest()
    t = req.inputs.add()
    t.name = "x"
    t.datatype = "FP32"
    t.shape.extend([1, 4])
    req.raw_input_contents.append(np.arange(4, dtype=np.float32).tobytes())
    return req.SerializeToString()


if __name__ == "__main__":
    main()
