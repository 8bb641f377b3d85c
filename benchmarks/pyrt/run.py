#!/usr/bin/python3
"""The Python runtime benchmark: what Python costs a request, and what batching buys.

    /usr/bin/python3 benchmarks/pyrt/run.py [--quick | --smoke] [--build-dir build]

One seldon-server, started here on loopback with a model folder written here,
loaded with wrk (REST, keep-alive, a small JSON body):

  identity c1, c16   builtin.identity beside a Python identity model (the plain
                     contract, predict returns its inputs), same body, same run.
                     The Python runtime's cost per request is
                     1e6/rps(python) - 1e6/rps(builtin) microseconds: at c1 the
                     latency it adds, at c16 the server time it adds. Target:
                     at most 20 us. With a small body the builtin runs inline on
                     the I/O thread while Python runs on an inference worker, so
                     c1 includes two thread hand-offs; the 12 KB row puts both on
                     a worker (as the server does for any body of 8 KiB or more)
                     and leaves Python's own cost.
  iris c16           a scikit-learn LogisticRegression (trained here with
                     python3-sklearn) with max_batch_size 1 and 32 (max_batch_time 1 ms); the ratio of
                     their throughputs is what adaptive batching buys. For
                     context only (other hardware): MLServer publishes about
                     1,440 requests/s for a simple model over REST, 4 workers.

Figures are printed, never checked. The table is saved to
<build>/benchmarks/pyrt/bench_pyrt.txt. Timings on a shared machine move
with its load: the load average is printed beside them.
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", ".."))
HOST = "127.0.0.1"

IDENTITY_PY = '''
class Identity:
    def predict(self, inputs):
        return inputs
'''


def log(msg):
    print(f"[bench_pyrt {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load_average():
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def write_model(root, name, settings, files=None):
    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "model-settings.json"), "w") as f:
        json.dump(dict(settings, name=name), f)
    for fname, content in (files or {}).items():
        with open(os.path.join(folder, fname), "wb" if isinstance(content, bytes) else "w") as f:
            f.write(content)
    return folder


def make_repo(root):
    import joblib
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    x, y = load_iris(return_X_y=True)
    iris = LogisticRegression(max_iter=1000).fit(x, y)
    write_model(root, "identity", {"implementation": "builtin.identity"})
    write_model(root, "pyidentity", {"implementation": "ident.Identity"},
                {"ident.py": IDENTITY_PY})
    for batch in (1, 32):
        folder = write_model(root, f"iris-b{batch}", {
            "implementation": "sklearn", "max_batch_size": batch, "max_batch_time": 0.001})
        joblib.dump(iris, os.path.join(folder, "model.joblib"))


SMALL_BODY = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4],
                                     "data": [1.0, 2.0, 3.0, 4.0]}]})
# 12 KB: at 8 KiB and above the server decodes and runs every model on an inference worker,
# so builtin.identity pays the same thread hand-off as the Python model.
LARGE_BODY = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2500],
                                     "data": [1.25] * 2500}]})
IRIS_BODY = json.dumps({"inputs": [{"name": "predict", "datatype": "FP32", "shape": [1, 4],
                                    "data": [5.1, 3.5, 1.4, 0.2]}]})


def wrk(port, model, body, conns, seconds, workdir):
    script = os.path.join(workdir, f"{model}.lua")
    with open(script, "w") as f:
        f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                f"wrk.body = {json.dumps(body)}\n")
    url = f"http://{HOST}:{port}/v2/models/{model}/infer"
    p = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "-s", script, url],
                       capture_output=True, text=True, timeout=seconds + 60)
    out = p.stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if p.returncode != 0 or m is None:
        raise RuntimeError(f"wrk failed: {out}\n{p.stderr}")
    if re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        raise RuntimeError(f"{model}: errors under load:\n{out}")
    return float(m.group(1))


def start_server(binary, repo, workdir, runtime_path):
    errlog = open(os.path.join(workdir, "seldon-server.stderr"), "wb")
    proc = subprocess.Popen(
        [binary, "--model-repository", repo, "--http-port", "0", "--grpc-port", "0",
         "--host", HOST, "--io-threads", "1", "--log-level", "warn"],
        stdout=subprocess.PIPE, stderr=errlog,
        env=dict(os.environ, SELDON_RUNTIME_PATH=runtime_path, OMP_NUM_THREADS="1"))
    line = proc.stdout.readline().decode()
    m = re.fullmatch(r"listening http=(\d+) grpc=(\d+)", line.strip())
    if not m:
        proc.kill()
        raise RuntimeError(f"seldon-server did not start: {line!r}")
    port = int(m.group(1))
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/v2/health/ready", timeout=5) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("seldon-server not ready")
        time.sleep(0.05)
    return proc, port


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", default=os.path.join(SOURCE, "build"))
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--quick", action="store_true", help="3 s per measurement")
    ap.add_argument("--smoke", action="store_true", help="1 s per measurement: harness check")
    args = ap.parse_args()
    seconds = args.seconds or (1 if args.smoke else 3 if args.quick else 8)
    seconds = max(1, int(seconds))
    build = os.path.abspath(args.build_dir)
    runtimes = os.path.join(build, "runtimes")
    if not os.path.exists(os.path.join(runtimes, "libseldon-runtime-python.so")):
        log("the python runtime plugin was not built: nothing to measure")
        return 0
    if shutil.which("wrk") is None:
        log("wrk is not installed (scripts/install-deps.sh): nothing to measure")
        return 0
    workdir = tempfile.mkdtemp(prefix="bench-pyrt-")
    binary = os.path.join(workdir, "seldon-server")
    shutil.copy2(os.path.join(build, "daemons", "server", "seldon-server"), binary)
    repo = os.path.join(workdir, "models")
    make_repo(repo)
    proc, port = start_server(binary, repo, workdir, runtimes)
    rows = []
    try:
        for model, body in (("identity", SMALL_BODY), ("pyidentity", SMALL_BODY),
                            ("iris-b1", IRIS_BODY), ("iris-b32", IRIS_BODY)):
            wrk(port, model, body, 4, 1, workdir)  # warm-up
        figures = {}
        for conns in (1, 16):
            for model in ("identity", "pyidentity"):
                figures[(model, conns)] = wrk(port, model, SMALL_BODY, conns, seconds, workdir)
                log(f"{model} c{conns}: {figures[(model, conns)]:.0f} req/s")
        for model in ("identity", "pyidentity"):
            figures[(model, "large")] = wrk(port, model, LARGE_BODY, 1, seconds, workdir)
            log(f"{model} c1 12 KB: {figures[(model, 'large')]:.0f} req/s")
        for model in ("iris-b1", "iris-b32"):
            figures[(model, 16)] = wrk(port, model, IRIS_BODY, 16, seconds, workdir)
            log(f"{model} c16: {figures[(model, 16)]:.0f} req/s")
        for conns in (1, 16):
            b, p = figures[("identity", conns)], figures[("pyidentity", conns)]
            rows.append((f"identity c{conns}: builtin / python req/s", f"{b:.0f}", f"{p:.0f}",
                         f"python adds {1e6 / p - 1e6 / b:.1f} us/request", "<= 20 us"))
        b, p = figures[("identity", "large")], figures[("pyidentity", "large")]
        rows.append(("identity c1, 12 KB (both on a worker) req/s", f"{b:.0f}", f"{p:.0f}",
                     f"python adds {1e6 / p - 1e6 / b:.1f} us/request", "<= 20 us"))
        b1, b32 = figures[("iris-b1", 16)], figures[("iris-b32", 16)]
        rows.append(("iris sklearn c16: max_batch_size 1 / 32 req/s", f"{b1:.0f}", f"{b32:.0f}",
                     f"batching x{b32 / b1:.2f}", "MLServer ~1,440 (4 workers, other hw)"))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    lines = [f"bench_pyrt: {seconds} s per measurement, {os.cpu_count()} cores, load average "
             f"{load_average()} at the end (a shared machine moves these figures)", ""]
    width = max(len(r[0]) for r in rows)
    for r in rows:
        lines.append(f"{r[0]:<{width}}  {r[1]:>8}  {r[2]:>8}  {r[3]:<32}  target {r[4]}")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    outdir = os.path.join(build, "benchmarks", "pyrt")
    os.makedirs(outdir, exist_ok=True)
    name = "bench_pyrt_smoke.txt" if args.smoke else "bench_pyrt.txt"
    with open(os.path.join(outdir, name), "w") as f:
        f.write(text)
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
