#!/usr/bin/python3
"""Instructions (or system calls) per request in seldon up, deterministic enough to compare
builds on a shared machine (no timings): seldon-up runs under `valgrind --tool=callgrind`
with collection off; after a warm-up, collection is switched on around exactly N requests
(h2load -n N) and the counts are dumped. With --strace, seldon-up runs as it is and
`strace -c -f` is attached around the N requests instead.

    /usr/bin/python3 benchmarks/pipeline_up/instr.py [--build-dir DIR] [--case CASE] \\
        [-n N] [-c CONNS] [--out FILE] [--strace]

CASE: grpc-pipeline (default; the framed ModelInferRequest of run.py with seldon-model:
two.pipeline), grpc-direct (seldon-model: ida), rest-pipeline, rest-direct. Prints Ir per
request (all threads, and the ingress loop's thread alone) and leaves the callgrind file
(--out) for callgrind_annotate. Another build (an older commit's) is measured the same way
by pointing --build-dir at it.
"""
import argparse
import glob
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("bench_pipeline_up", os.path.join(HERE, "run.py"))
bp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bp)
bs = bp.bs
HOST = bs.HOST


def log(msg):
    print(f"[instr {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def control(pid, *args):
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, stdout=subprocess.DEVNULL,
                   timeout=300)


def load(case, port, workdir, n, conns):
    grpc = case.startswith("grpc")
    target = "two.pipeline" if case.endswith("pipeline") else "ida"
    if grpc:
        cmd = ["h2load", "-t1", f"-c{conns}", "-m1", f"-n{n}", "-d",
               os.path.join(workdir, "request.bin"), "-H", "content-type: application/grpc",
               "-H", "te: trailers", "-H", f"seldon-model: {target}",
               f"http://{HOST}:{port}{bs.GRPC_PATH}"]
    else:
        path = "/v2/pipelines/two/infer" if target == "two.pipeline" else "/v2/models/ida/infer"
        cmd = ["h2load", "--h1", "-t1", f"-c{conns}", f"-n{n}", "-d",
               os.path.join(workdir, "request.json"), "-H", "content-type: application/json",
               f"http://{HOST}:{port}{path}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=3600).stdout
    m = re.search(r"(\d+) succeeded, (\d+) failed, (\d+) errored", out)
    if not m or int(m.group(1)) != n:
        raise RuntimeError(f"h2load: not {n} successes:\n{out}")
    if grpc and "status codes: " in out and f"{n} 2xx" not in out:
        raise RuntimeError(f"h2load: {out}")


def totals(path):
    """Ir of every thread in a callgrind output (summary lines), keyed by thread number."""
    res = {}
    for f in glob.glob(path + ".1-*"):
        m = re.search(r"-(\d+)$", f)
        tid = int(m.group(1)) if m else 0
        with open(f) as fh:
            for line in fh:
                if line.startswith("totals:"):
                    res[(f, tid)] = int(line.split()[1])
                    break
    return res


def strace(args, pid, port, workdir):
    """System calls of every thread of pid over N requests, per request."""
    log_path = os.path.join(workdir, "strace.txt")
    tr = subprocess.Popen(["strace", "-c", "-f", "-o", log_path, "-p", str(pid)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # strace says "Process N attached" for each thread once it holds them all.
    attached = 0
    while attached < 1:
        line = tr.stderr.readline()
        if not line:
            raise RuntimeError("strace ended")
        attached += "attached" in line
    time.sleep(0.5)  # the other threads' attach lines; nothing measured runs meanwhile
    log(f"measuring {args.n} requests, {args.c} connection(s), {args.case} (strace)")
    load(args.case, port, workdir, args.n, args.c)
    tr.send_signal(2)
    tr.wait(timeout=60)
    print(f"{args.case} c{args.c} n={args.n}: system calls per request")
    with open(log_path) as f:
        for line in f:
            m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:(\d+)\s+)?(\w+)$", line)
            if m:
                print(f"  {m.group(3):<20} {int(m.group(1)) / args.n:8.3f}")


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build-dir", default=os.path.join(bp.SOURCE, "build"))
    p.add_argument("--case", default="grpc-pipeline",
                   choices=["grpc-pipeline", "grpc-direct", "rest-pipeline", "rest-direct"])
    p.add_argument("-n", type=int, default=2000, help="requests measured (default 2000)")
    p.add_argument("-c", type=int, default=16, help="connections (default 16)")
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--out", default=None, help="callgrind output prefix (default: a temp dir)")
    p.add_argument("--strace", action="store_true", help="count system calls, not instructions")
    args = p.parse_args()

    workdir = tempfile.mkdtemp(prefix="instr_pipeline_up.")
    os.chmod(workdir, 0o755)
    up = None
    out = args.out or os.path.join(workdir, "callgrind.out")
    try:
        for name in ("ida", "idb"):
            bs.write_model(os.path.join(workdir, "models"), name,
                           {"implementation": "builtin.identity"})
        with open(os.path.join(workdir, "models.yaml"), "w") as f:
            f.write(bp.MODELS)
        with open(os.path.join(workdir, "pipeline.yaml"), "w") as f:
            f.write(bp.PIPELINE)
        with open(os.path.join(workdir, "request.json"), "w") as f:
            json.dump({"inputs": [{"name": "INPUT", "datatype": "FP32", "shape": [1, 16],
                                   "data": list(range(16))}]}, f)
        bp.grpc_body(os.path.join(workdir, "request.bin"), 16)
        args.build_dir = os.path.abspath(args.build_dir)
        upbin = os.path.join(args.build_dir, "daemons", "up", "seldon-up")
        cli = os.path.join(args.build_dir, "daemons", "cli", "seldon")
        cmd = [upbin, "--host", HOST, "--port", "0", "--scheduler-port", "0", "--metrics-port",
               "-1", "--io-threads", "1", "--workers", "1"]
        if not args.strace:
            cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes",
                   f"--callgrind-out-file={out}-%p"] + cmd
        up = bs.Server("seldon-up", cmd, workdir)
        up.ports = up._wait_line(r"listening inference=\d+ scheduler=\d+ metrics=-?\d+",
                                 guard=300.0)
        port, sched = up.ports["inference"], up.ports["scheduler"]
        clic = [cli, "--scheduler-host", f"{HOST}:{sched}", "--inference-host", f"{HOST}:{port}"]
        subprocess.run(clic + ["load", "-f", "models.yaml", "-w", "ModelAvailable"], cwd=workdir,
                       check=True, stdout=subprocess.DEVNULL, timeout=600)
        subprocess.run(clic + ["pipeline", "load", "-f", "pipeline.yaml"], cwd=workdir,
                       check=True, stdout=subprocess.DEVNULL, timeout=600)
        body = open(os.path.join(workdir, "request.json"), "rb").read()
        deadline = time.monotonic() + 300
        while True:
            _, st, _ = bs.http_exchange(port, "/v2/pipelines/two/infer", body)
            if st == 200:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"pipeline not served: {st}\n{up.tail()}")
            time.sleep(0.2)
        log(f"warm-up: {args.warmup} requests")
        load(args.case, port, workdir, args.warmup, args.c)
        if args.strace:
            strace(args, up.proc.pid, port, workdir)
            return
        control(up.proc.pid, "-i", "on")
        log(f"measuring {args.n} requests, {args.c} connection(s), {args.case}")
        load(args.case, port, workdir, args.n, args.c)
        control(up.proc.pid, "-i", "off")
        control(up.proc.pid, "-d")
        res = totals(f"{out}-{up.proc.pid}")
        if not res:
            raise RuntimeError("no callgrind output")
        per_thread = sorted(((v, k) for k, v in res.items()), reverse=True)
        total = sum(v for v, _ in per_thread)
        print(f"{args.case} c{args.c} n={args.n}: {total / args.n:,.0f} Ir/request (all threads)")
        for v, (f, tid) in per_thread:
            if v > 0:
                print(f"  thread {tid}: {v / args.n:,.0f} Ir/request  {f}")
    finally:
        if up is not None:
            up.stop()
        if args.out is None:
            log("the counts went with the work folder: pass --out to keep them")
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
