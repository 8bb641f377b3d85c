#!/usr/bin/python3
"""The seldon-server benchmark driver: seldon-server beside reference servers
measured in the same run, on loopback, with the ratios computed here.

    /usr/bin/python3 benchmarks/server/run.py [--quick | --smoke] [options]

It builds the CMake targets it needs (unless --no-build), makes the request
bodies with libseldon's encoders, starts each server in turn, loads it with
wrk (REST, keep-alive, a Lua script posting the JSON body) or h2load (gRPC,
a pre-framed ModelInferRequest), and prints one table:

    case, ours, reference, ratio, target

followed by every raw measurement. The table is saved under the build dir
(benchmarks/server/bench_server.txt, and the raw figures as .json). Targets
are printed for reading, never enforced: this is a benchmark, not a test.
See README.md beside this file for what each row means.
"""
import argparse
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", ".."))
HOST = "127.0.0.1"
INFER_PATH = "/v2/models/{}/infer"
GRPC_PATH = "/inference.GRPCInferenceService/ModelInfer"
SMALL, LARGE, GRPC_FLOATS = 16, 1000, 256
CORES = os.cpu_count() or 1


def log(msg):
    print(f"[bench_server {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load_average():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


# --- Processes ----------------------------------------------------------------------


class Server:
    """A server process we started; stopped by its own pid, never by name."""

    def __init__(self, name, cmd, workdir, ready=None, env=None):
        self.name = name
        self.errlog = os.path.join(workdir, f"{name}.stderr")
        self.ports = {}
        err = open(self.errlog, "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=err, env=env, cwd=workdir)
        err.close()
        if ready is not None:
            self.ports = self._wait_line(ready)

    def _wait_line(self, pattern, guard=30.0):
        """Reads stdout until a line matches pattern; returns its name=port pairs."""
        deadline = time.monotonic() + guard
        buf = b""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            r, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if not r:
                continue
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                break
            buf += chunk
            for line in buf.decode(errors="replace").splitlines():
                if re.search(pattern, line):
                    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}
        self.stop()
        raise RuntimeError(f"{self.name} did not start: {self.tail()}")

    def tail(self):
        try:
            with open(self.errlog, errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def cpu_seconds(self):
        """User + system CPU of the process and its children (nginx's workers)."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # fields[0] is the state (stat field 3): ppid is field 4, utime 14, stime 15.
            if int(entry) == self.proc.pid or int(fields[1]) == self.proc.pid:
                total += (int(fields[11]) + int(fields[12])) / tick
        return total

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_port(port, guard=15.0):
    deadline = time.monotonic() + guard
    while time.monotonic() < deadline:
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def wait_ready(server, model, guard=60.0):
    """Waits for the model to be ready; fails at once when the server reports a failed load."""
    port = server.ports["http"]
    deadline = time.monotonic() + guard
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection(HOST, port, timeout=2)
            c.request("GET", f"/v2/models/{model}/ready")
            if c.getresponse().status == 200:
                c.close()
                return
            c.close()
        except OSError:
            pass
        if "failed to load" in server.tail() or server.proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"model {model} not ready on port {port}: {server.tail()[-800:]}")


def http_exchange(port, path, body):
    """Posts body on a raw socket; returns (whole response bytes, status, body bytes)."""
    req = (f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    with socket.create_connection((HOST, port), timeout=10) as s:
        s.sendall(req)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                raise RuntimeError("connection closed before the response head")
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        if m is None:
            raise RuntimeError("response without Content-Length")
        need = int(m.group(1))
        while len(rest) < need:
            chunk = s.recv(65536)
            if not chunk:
                raise RuntimeError("connection closed in the response body")
            rest += chunk
    status = int(head.split(b" ", 2)[1])
    return head + b"\r\n\r\n" + rest[:need], status, rest[:need]


def grpc_call(port, framed):
    """One ModelInfer with grpcio, bytes in and out (no generated stubs needed)."""
    import grpc  # /usr/bin/python3 has python3-grpcio
    with grpc.insecure_channel(f"{HOST}:{port}") as ch:
        call = ch.unary_unary(GRPC_PATH)
        return call(framed[5:], timeout=10)


# --- Load generators ----------------------------------------------------------------

UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6}


def parse_duration_us(text):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    return float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")


def wrk_script(workdir, body_path):
    path = os.path.join(workdir, os.path.basename(body_path) + ".lua")
    with open(path, "w") as f:
        f.write('wrk.method = "POST"\n'
                'wrk.headers["Content-Type"] = "application/json"\n'
                f'local f = assert(io.open([[{body_path}]], "rb"))\n'
                'wrk.body = f:read("*a")\n'
                'f:close()\n')
    return path


class Bench:
    def __init__(self, args, workdir):
        self.args = args
        self.workdir = workdir
        self.raw = []  # every measurement, for the second table and the .json

    def _measure(self, label, tool, server, conns, cmd_for):
        """Warm-up run (discarded), then the measured run; the server's CPU is read around it."""
        if self.args.warmup > 0:
            subprocess.run(cmd_for(self.args.warmup), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=self.args.warmup + 60, check=False)
        cpu0 = server.cpu_seconds()
        out = subprocess.run(cmd_for(self.args.seconds), capture_output=True, text=True,
                             timeout=self.args.seconds + 60).stdout
        cpu = server.cpu_seconds() - cpu0
        r = {"label": label, "tool": tool, "conns": conns, "rps": float("nan"),
             "p50_us": float("nan"), "p99_us": float("nan"), "errors": 0, "requests": 0,
             "server_cpu_s": cpu}
        return r, out

    def _done(self, r, out):
        if r["requests"] == 0:
            r["errors"] += 1
            log(f"{r['tool']} produced no figures for {r['label']}:\n{out}")
        r["cpu_us_per_req"] = r["server_cpu_s"] * 1e6 / r["requests"] if r["requests"] else \
            float("nan")
        self.raw.append(r)
        log(f"  {r['label']}: {r['rps']:.0f} rps, p50 {r['p50_us']:.0f} us, p99 "
            f"{r['p99_us']:.0f} us, server CPU {r['cpu_us_per_req']:.1f} us/req"
            + (f", {r['errors']} errors" if r["errors"] else ""))
        return r

    def wrk(self, label, server, port, path, script, conns):
        """REST over wrk: keep-alive, one request in flight per connection."""
        url = f"http://{HOST}:{port}{path}"
        r, out = self._measure(label, "wrk", server, conns, lambda secs: [
            "wrk", f"-t{self.args.threads}", f"-c{conns}", f"-d{secs}s", "--latency", "-s",
            script, url])
        m = re.search(r"Requests/sec:\s*([\d.]+)", out)
        if m:
            r["rps"] = float(m.group(1))
        for pct, key in (("50", "p50_us"), ("99", "p99_us")):
            m = re.search(rf"^\s*{pct}%\s+(\S+)", out, re.M)
            if m:
                r[key] = parse_duration_us(m.group(1))
        m = re.search(r"(\d+) requests in", out)
        if m:
            r["requests"] = int(m.group(1))
        m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
        if m:
            r["errors"] += int(m.group(1))
        m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
        if m:
            r["errors"] += sum(int(x) for x in m.groups())
        return self._done(r, out)

    def h2load_grpc(self, label, server, port, body_path, conns, headers=()):
        """gRPC over h2load for a duration; p50/p99 from its per-request log."""
        logfile = os.path.join(self.workdir, "h2load.log")
        extra = [a for h in headers for a in ("-H", h)]
        r, out = self._measure(label, "h2load", server, conns, lambda secs: [
            "h2load", f"-t{self.args.threads}", f"-c{conns}", "-m1", "-D", str(secs), "-d",
            body_path, "-H", "content-type: application/grpc", "-H", "te: trailers", *extra,
            f"--log-file={logfile}", f"http://{HOST}:{port}{GRPC_PATH}"])
        m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
        if m:
            r["rps"] = float(m.group(1))
        m = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, "
                      r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
        if m:
            r["requests"] = int(m.group(3))
            r["errors"] = int(m.group(4)) + int(m.group(5)) + int(m.group(6))
        m = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", out)
        if m:
            r["mean_us"] = parse_duration_us(m.group(3))
            r["sd_us"] = parse_duration_us(m.group(4))
        try:
            with open(logfile) as f:
                lat = sorted(int(line.split("\t")[2]) for line in f if line.count("\t") == 2)
            os.unlink(logfile)
            if lat:
                r["p50_us"] = float(lat[len(lat) // 2])
                r["p99_us"] = float(lat[min(len(lat) - 1, (len(lat) * 99) // 100)])
        except OSError:
            pass
        return self._done(r, out)

    def h2load_h1_count(self, port, path, body_path, conns, count):
        """Exactly count REST requests over keep-alive HTTP/1.1 (h2load --h1 -n)."""
        cmd = ["h2load", "--h1", f"-t{self.args.threads}", f"-c{conns}", f"-n{count}", "-d",
               body_path, "-H", "content-type: application/json", f"http://{HOST}:{port}{path}"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=3600).stdout
        m = re.search(r"(\d+) succeeded, (\d+) failed, (\d+) errored", out)
        m2 = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
        ok = int(m.group(1)) if m else 0
        bad = int(m.group(2)) + int(m.group(3)) if m else 1
        return ok, bad, (float(m2.group(1)) if m2 else 0.0)


# --- The run ------------------------------------------------------------------------


def build(args):
    if not os.path.exists(os.path.join(args.build_dir, "CMakeCache.txt")):
        subprocess.run(["cmake", "-S", SOURCE, "-B", args.build_dir], check=True,
                       stdout=subprocess.DEVNULL)
    log("building bench_server_deps (seldon-server, reference servers, body maker)")
    subprocess.run(["cmake", "--build", args.build_dir, "-j2", "--target", "bench_server_deps"],
                   check=True, stdout=subprocess.DEVNULL)


def copy_binaries(args, workdir):
    """Copies the binaries, so a concurrent rebuild cannot swap them mid-run."""
    b = args.build_dir
    src = {
        "server": os.path.join(b, "daemons", "server", "seldon-server"),
        "echo": os.path.join(b, "benchmarks", "server", "bench_echo_http"),
        "grpc_fixed": os.path.join(b, "benchmarks", "server", "bench_grpc_fixed"),
        "bodies": os.path.join(b, "benchmarks", "server", "bench_server_bodies"),
    }
    bins = {}
    for key, path in src.items():
        if not os.path.exists(path):
            raise SystemExit(f"bench_server: {path} is missing: build target bench_server_deps")
        bins[key] = os.path.join(workdir, "bin", os.path.basename(path))
        os.makedirs(os.path.dirname(bins[key]), exist_ok=True)
        shutil.copy2(path, bins[key])
    plugin = os.path.join(b, "runtimes", "libseldon-runtime-xgboost.so")
    bins["runtime_path"] = None
    bins["lib_path"] = None
    if os.path.exists(plugin):
        rdir = os.path.join(workdir, "runtimes")
        os.makedirs(rdir, exist_ok=True)
        shutil.copy2(plugin, rdir)
        bins["runtime_path"] = rdir
        # The plugin needs libseldon.so.N (from its RUNPATH in the build tree);
        # a copy found first through LD_LIBRARY_PATH keeps a rebuild out of the run.
        libdir = os.path.join(b, "libseldon")
        names = [n for n in os.listdir(libdir) if re.match(r"libseldon\.so\.\d+$", n)] \
            if os.path.isdir(libdir) else []
        if names:
            ldir = os.path.join(workdir, "lib")
            os.makedirs(ldir, exist_ok=True)
            for n in names:
                shutil.copyfile(os.path.join(libdir, n), os.path.join(ldir, n))
            bins["lib_path"] = ldir
    return bins


def write_model(root, name, settings, files=None):
    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    settings = dict(settings, name=name)
    with open(os.path.join(folder, "model-settings.json"), "w") as f:
        json.dump(settings, f)
    for fname, content in (files or {}).items():
        with open(os.path.join(folder, fname), "wb") as f:
            f.write(content)


def seldon(bins, workdir, repo, fair, name, runtime_path=None):
    env = None
    cmd = [bins["server"], "--model-repository", repo, "--http-port", "0", "--grpc-port", "0",
           "--host", HOST]
    if fair:
        cmd += ["--io-threads", "1", "--grpc-threads", "1", "--workers", "1"]
    if runtime_path:
        cmd += ["--runtime-path", runtime_path]
        if bins["lib_path"]:
            env = dict(os.environ)
            env["LD_LIBRARY_PATH"] = bins["lib_path"] + (
                ":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    s = Server(name, cmd, workdir, ready=r"listening http=\d+ grpc=\d+", env=env)
    return s


NGINX_TOKEN_MAX = 4000  # nginx refuses a configuration token longer than its 4 KiB buffer


def nginx_answer(body, how):
    """The nginx directive answering the POST with body: "static" file or "return".

    static: the body is a file; the static module refuses POST with 405, and
    error_page turns that into an internal GET of the same file, answered 200.
    return: return 200 '<body>', the cheapest answer nginx has; only when the
    body fits a configuration token (4 KiB) and needs no escaping. None when
    it cannot be done.
    """
    if how == "static":
        return "error_page 405 =200 $uri;"
    text = body.decode("utf-8", errors="replace")
    if len(body) < NGINX_TOKEN_MAX and not any(c in text for c in "$'\\\n"):
        return f"return 200 '{text}';"
    return None


def nginx_conf(workdir, port, workers, www, answer):
    d = os.path.join(workdir, f"nginx-{workers}")
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o755)
    conf = f"""
worker_processes {workers};
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    server_tokens off;
    etag off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 120s;
    server {{
        listen {HOST}:{port};
        root {www};
        location = /v2/models/identity/infer {{
            default_type application/json;
            {answer}
        }}
    }}
}}
"""
    path = os.path.join(d, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    return path, d


def train_xgboost(folder, smoke):
    """A small binary classifier, trained with the system's python3-xgboost."""
    import numpy as np
    import xgboost as xgb
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2000, 10)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] - x[:, 2] * x[:, 3] + rng.normal(scale=0.5, size=2000) > 0)
    params = {"objective": "binary:logistic", "max_depth": 4, "eta": 0.3, "seed": 7,
              "nthread": 1}
    bst = xgb.train(params, xgb.DMatrix(x, label=y.astype(np.float32)), 10 if smoke else 50)
    path = os.path.join(folder, "model.json")
    bst.save_model(path)
    with open(path, "rb") as f:
        model = f.read()
    row = rng.normal(size=(1, 10)).astype(np.float32)
    body = json.dumps({"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [1, 10],
                                   "data": [float(v) for v in row.reshape(-1)]}]})
    return model, body.encode()


def fmt(v, unit):
    if v is None or v != v:
        return "n/a"
    if unit == "rps":
        return f"{v:,.0f} rps"
    if unit == "us":
        return f"{v:,.1f} us" if v < 100 else f"{v:,.0f} us"
    if unit == "MiB":
        return f"{v:,.1f} MiB"
    return f"{v:.3g}"


def ratio(a, b):
    try:
        return a / b if a == a and b == b and b != 0 else float("nan")
    except TypeError:
        return float("nan")


def run(args):
    if not args.no_build:
        build(args)
    la = load_average()
    if args.wait_load > 0:
        deadline = time.monotonic() + args.wait_max
        while la >= args.wait_load and time.monotonic() < deadline:
            log(f"load average {la:.2f} >= {args.wait_load}: waiting")
            time.sleep(20)
            la = load_average()
    load_start = la
    log(f"1-minute load average at start: {la:.2f} ({CORES} cores)")
    t_start = time.monotonic()

    workdir = tempfile.mkdtemp(prefix="bench_server.")
    os.chmod(workdir, 0o755)  # nginx workers (user nobody when run as root) read the files
    servers = []

    def start(s):
        servers.append(s)
        return s

    def stop_all():
        while servers:
            servers.pop().stop()

    try:
        bins = copy_binaries(args, workdir)
        bench = Bench(args, workdir)

        # Bodies, made with libseldon's encoders.
        bodies = {}
        for key, kind, n in (("small", "json", SMALL), ("large", "json", LARGE),
                             ("grpc", "grpc", GRPC_FLOATS)):
            ext = "json" if kind == "json" else "bin"
            bodies[key] = os.path.join(workdir, f"request_{key}.{ext}")
            subprocess.run([bins["bodies"], kind, str(n), bodies[key]], check=True)
            os.chmod(bodies[key], 0o644)
        scripts = {k: wrk_script(workdir, bodies[k]) for k in ("small", "large")}
        repo = os.path.join(workdir, "repo")
        write_model(repo, "identity", {"implementation": "builtin.identity"})
        path = INFER_PATH.format("identity")

        # seldon-server, the fair match (one thread each) and its defaults.
        resp = {}
        ours = {}
        for fair in (True, False):
            cfg = "fair" if fair else "default"
            log(f"seldon-server, {'1 I/O thread, 1 gRPC thread, 1 worker' if fair else 'defaults'}")
            s = start(seldon(bins, workdir, repo, fair, f"seldon-{cfg}"))
            wait_ready(s, "identity")
            if fair:
                # The answers every reference server will repeat, byte for byte.
                for key in ("small", "large"):
                    with open(bodies[key], "rb") as f:
                        whole, status, body = http_exchange(s.ports["http"], path, f.read())
                    if status != 200:
                        raise RuntimeError(f"seldon-server answered {status}: {body[:300]!r}")
                    resp[key] = {"whole": os.path.join(workdir, f"response_{key}.http"),
                                 "body": os.path.join(workdir, f"response_{key}.json")}
                    for k, data in (("whole", whole), ("body", body)):
                        with open(resp[key][k], "wb") as f:
                            f.write(data)
                with open(bodies["grpc"], "rb") as f:
                    g = grpc_call(s.ports["grpc"], f.read())
                resp["grpc"] = os.path.join(workdir, "response_grpc.bin")
                with open(resp["grpc"], "wb") as f:
                    f.write(g)
            else:
                with open(bodies["grpc"], "rb") as f:
                    grpc_call(s.ports["grpc"], f.read())
            port, label = s.ports["http"], f"seldon {cfg}"
            ours[cfg] = {
                "small_c1": bench.wrk(f"{label}: REST small c1", s, port, path, scripts["small"],
                                      1),
                "small_c16": bench.wrk(f"{label}: REST small c16", s, port, path, scripts["small"],
                                       16),
                "large_c16": bench.wrk(f"{label}: REST large c16", s, port, path, scripts["large"],
                                       16),
                "grpc_c16": bench.h2load_grpc(f"{label}: gRPC 256 floats c16", s, s.ports["grpc"],
                                              bodies["grpc"], 16),
            }
            stop_all()

        # The HTTP limit: the single-threaded epoll echo, same bytes out.
        ref = {}
        for key in ("small", "large"):
            log(f"echo_http, {key} response ({os.path.getsize(resp[key]['whole'])} bytes)")
            e = start(Server(f"echo-{key}", [bins["echo"], "--response", resp[key]["whole"]],
                             workdir, ready=r"listening http=\d+"))
            if key == "small":
                ref["echo_small_c1"] = bench.wrk("echo: REST small c1", e, e.ports["http"], path,
                                                 scripts["small"], 1)
            ref[f"echo_{key}_c16"] = bench.wrk(f"echo: REST {key} c16", e, e.ports["http"], path,
                                               scripts[key], 16)
            stop_all()

        # nginx serving the same body as a static file.
        www = os.path.join(workdir, "www")
        os.makedirs(os.path.join(www, "v2", "models", "identity"), exist_ok=True)
        for d in (www, os.path.join(www, "v2"), os.path.join(www, "v2", "models"),
                  os.path.join(www, "v2", "models", "identity")):
            os.chmod(d, 0o755)
        for workers in ("1", "auto"):
            for key, how in (("small", "static"), ("small", "return"), ("large", "static")):
                target = os.path.join(www, "v2", "models", "identity", "infer")
                shutil.copyfile(resp[key]["body"], target)
                os.chmod(target, 0o644)
                port = free_port()
                with open(resp[key]["body"], "rb") as f:
                    answer = nginx_answer(f.read(), how)
                if answer is None:
                    continue
                conf, prefix = nginx_conf(workdir, port, workers, www, answer)
                log(f"nginx, worker_processes {workers}, {key} body ({how})")
                ngx = start(Server(f"nginx-{workers}-{key}",
                                   ["nginx", "-c", conf, "-p", prefix, "-e",
                                    os.path.join(prefix, "error.log")], workdir))
                wait_port(port)
                with open(bodies[key], "rb") as f:
                    _, status, body = http_exchange(port, path, f.read())
                with open(resp[key]["body"], "rb") as f:
                    if status != 200 or body != f.read():
                        raise RuntimeError(f"nginx answered {status} with a different body")
                ref[f"nginx{workers}_{how}_{key}_c16"] = bench.wrk(
                    f"nginx {workers} ({how}): REST {key} c16", ngx, port, path, scripts[key], 16)
                stop_all()

        # The gRPC limit: gRPC core answering a fixed pre-encoded response.
        for threads, cfg in ((1, "fair"), (CORES, "default")):
            log(f"grpc_fixed, {threads} completion-queue thread(s)")
            gsrv = start(Server(f"grpc_fixed-{threads}",
                                [bins["grpc_fixed"], "--response", resp["grpc"], "--threads",
                                 str(threads)], workdir, ready=r"listening grpc=\d+"))
            with open(bodies["grpc"], "rb") as f:
                grpc_call(gsrv.ports["grpc"], f.read())
            ref[f"grpc_fixed_{cfg}"] = bench.h2load_grpc(
                f"grpc_fixed {threads} thread(s): gRPC 256 floats c16", gsrv, gsrv.ports["grpc"],
                bodies["grpc"], 16)
            stop_all()

        # The codec's share: decode of the request + encode of the response, same bodies.
        codec = {}
        for key in ("small", "large"):
            out = subprocess.run([bins["bodies"], "codec", bodies[key], resp[key]["body"],
                                  "--seconds", str(0.15 if args.smoke else 0.6)],
                                 capture_output=True, text=True, check=True)
            if out.stderr:
                log(out.stderr.strip())
            m = dict(re.findall(r"(\w+)=([\d.]+)", out.stdout))
            codec[key] = {k.replace("_ns", "_us"): float(v) / 1000.0 for k, v in m.items()}
            log(f"codec {key}: decode {codec[key]['decode_us']:.2f} us + encode "
                f"{codec[key]['encode_us']:.2f} us")

        # xgboost with and without adaptive batching, 32 connections.
        xgb = {}
        if bins["runtime_path"] is None:
            log("the xgboost runtime plugin is not built: xgboost case skipped")
        else:
            try:
                xrepo = os.path.join(workdir, "xgb_repo")
                os.makedirs(os.path.join(xrepo, "tmp"), exist_ok=True)
                model, xbody = train_xgboost(os.path.join(xrepo, "tmp"), args.smoke)
                for name, batch in (("xgb_b32", {"max_batch_size": 32, "max_batch_time": 0.002}),
                                    ("xgb_b1", {"max_batch_size": 1})):
                    write_model(xrepo, name, dict({"implementation": "xgboost"}, **batch),
                                {"model.json": model})
                shutil.rmtree(os.path.join(xrepo, "tmp"))
                xpath = os.path.join(workdir, "request_xgb.json")
                with open(xpath, "wb") as f:
                    f.write(xbody)
                xscript = wrk_script(workdir, xpath)
                log("seldon-server defaults, xgboost classifier (10 features, one row a request)")
                s = start(seldon(bins, workdir, xrepo, False, "seldon-xgb", bins["runtime_path"]))
                for name in ("xgb_b32", "xgb_b1"):
                    wait_ready(s, name)
                    _, status, body = http_exchange(s.ports["http"], INFER_PATH.format(name), xbody)
                    if status != 200:
                        raise RuntimeError(f"xgboost answered {status}: {body[:300]!r}")
                for name in ("xgb_b32", "xgb_b1"):
                    xgb[name] = bench.wrk(f"seldon default: xgboost {name} c32", s, s.ports["http"],
                                          INFER_PATH.format(name), xscript, 32)
                stop_all()
            except (ImportError, RuntimeError) as e:
                stop_all()
                log(f"xgboost case skipped: {e}")

        # Memory: RSS after a few requests and after many, REST small, 16 connections.
        log(f"memory: seldon-server defaults, {args.mem_early:,} then {args.mem_requests:,} "
            f"REST small requests over 16 keep-alive connections (h2load --h1 -n)")
        s = start(seldon(bins, workdir, repo, False, "seldon-mem"))
        wait_ready(s, "identity")
        ok1, bad1, _ = bench.h2load_h1_count(s.ports["http"], path, bodies["small"], 16,
                                             args.mem_early)
        rss_early = s.rss_kib()
        ok2, bad2, rps2 = bench.h2load_h1_count(s.ports["http"], path, bodies["small"], 16,
                                                args.mem_requests - args.mem_early)
        rss_late = s.rss_kib()
        stop_all()
        mem = {"early": args.mem_early, "late": args.mem_requests, "rss_early_kib": rss_early,
               "rss_late_kib": rss_late, "ok": ok1 + ok2, "errors": bad1 + bad2,
               "rps_h2load_h1": rps2}
        log(f"  RSS {rss_early} KiB after {ok1:,} requests, {rss_late} KiB after {ok1 + ok2:,}"
            + (f" ({bad1 + bad2} failed)" if bad1 + bad2 else ""))
    finally:
        stop_all()

    # --- The table ------------------------------------------------------------------
    rows = []

    def row(case, o, r, unit, rat, target, detail=""):
        rows.append((case, fmt(o, unit), fmt(r, unit), "n/a" if rat != rat else f"{rat:.2f}",
                     target, detail))

    for cfg, tag in (("fair", "1 thread"), ("default", "defaults")):
        o = ours[cfg]
        row(f"small REST c16 rps / echo [{tag}]", o["small_c16"]["rps"],
            ref["echo_small_c16"]["rps"], "rps",
            ratio(o["small_c16"]["rps"], ref["echo_small_c16"]["rps"]), ">= 0.5")
        nginx_w = "1" if cfg == "fair" else "auto"
        for how, target in (("static", ">= 1.0"), ("return", "(info)")):
            n = ref.get(f"nginx{nginx_w}_{how}_small_c16")
            if n is None:
                continue
            row(f"small REST c16 rps / nginx {nginx_w} {how} [{tag}]", o["small_c16"]["rps"],
                n["rps"], "rps", ratio(o["small_c16"]["rps"], n["rps"]), target)
        row(f"small REST c1 p50 / echo p50 [{tag}]", o["small_c1"]["p50_us"],
            ref["echo_small_c1"]["p50_us"], "us",
            ratio(o["small_c1"]["p50_us"], ref["echo_small_c1"]["p50_us"]), "<= 1.5")
        t_ours = 1e6 / o["large_c16"]["rps"] if o["large_c16"]["rps"] > 0 else float("nan")
        t_ref = 1e6 / ref["echo_large_c16"]["rps"] + codec["large"]["total_us"]
        row(f"large REST c16 us/req / (echo + codec) [{tag}]", t_ours, t_ref, "us",
            ratio(t_ours, t_ref), "<= 1.3")
        g = ref["grpc_fixed_fair" if cfg == "fair" else "grpc_fixed_default"]
        row(f"gRPC 1 KiB raw c16 rps / grpc_fixed [{tag}]", o["grpc_c16"]["rps"], g["rps"], "rps",
            ratio(o["grpc_c16"]["rps"], g["rps"]), ">= 0.7")
    # Server CPU per request: steadier than rps when the load generator or other
    # work on the machine sets the pace. Information only.
    o = ours["fair"]
    row("CPU/req small REST c16 / echo [1 thread]", o["small_c16"]["cpu_us_per_req"],
        ref["echo_small_c16"]["cpu_us_per_req"], "us",
        ratio(o["small_c16"]["cpu_us_per_req"], ref["echo_small_c16"]["cpu_us_per_req"]), "(info)")
    c_ref = ref["echo_large_c16"]["cpu_us_per_req"] + codec["large"]["total_us"]
    row("CPU/req large REST c16 / (echo + codec) [1 thread]", o["large_c16"]["cpu_us_per_req"],
        c_ref, "us", ratio(o["large_c16"]["cpu_us_per_req"], c_ref), "(info)")
    row("CPU/req gRPC c16 / grpc_fixed [1 thread]", o["grpc_c16"]["cpu_us_per_req"],
        ref["grpc_fixed_fair"]["cpu_us_per_req"], "us",
        ratio(o["grpc_c16"]["cpu_us_per_req"], ref["grpc_fixed_fair"]["cpu_us_per_req"]), "(info)")
    if xgb:
        row("xgboost c32 rps: batch 32 / batch 1", xgb["xgb_b32"]["rps"], xgb["xgb_b1"]["rps"],
            "rps", ratio(xgb["xgb_b32"]["rps"], xgb["xgb_b1"]["rps"]), "(report)")
    else:
        rows.append(("xgboost c32 rps: batch 32 / batch 1", "not run", "", "", "(report)", ""))
    row(f"RSS after {mem['late']:,} / after {mem['early']:,} req", mem["rss_late_kib"] / 1024,
        mem["rss_early_kib"] / 1024, "MiB", ratio(mem["rss_late_kib"], mem["rss_early_kib"]),
        "<= 1.05")

    elapsed = time.monotonic() - t_start
    lines = []
    lines.append(f"seldon-server benchmark, {time.strftime('%Y-%m-%d %H:%M:%S')}, {CORES} cores, "
                 f"load average {load_start:.2f} at start, {load_average():.2f} at end, "
                 f"{elapsed:.0f} s")
    lines.append(f"{args.seconds} s per measurement ({args.warmup} s warm-up), load generator "
                 f"-t{args.threads} on the same cores; small = FP32 x{SMALL}, large = FP32 x{LARGE}"
                 + ("; SMOKE RUN: figures not meaningful" if args.smoke else ""))
    lines.append("")
    widths = [max(len(r[i]) for r in rows + [("case", "ours", "reference", "ratio", "target", "")])
              for i in range(5)]
    header = ("case", "ours", "reference", "ratio", "target")
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r[:5], widths))).rstrip())
    lines.append("")
    lines.append("measurements: rps; latency p50 / p99 in us (gRPC: from h2load's per-request "
                 "log); cpu = server CPU time (all threads and child processes) per request, us")
    for r in bench.raw:
        extra = ""
        if "mean_us" in r:
            extra = f"  mean {r['mean_us']:.0f} +- {r['sd_us']:.0f}"
        err = f"  ERRORS {r['errors']}" if r["errors"] else ""
        lines.append(f"  {r['label']:<44} {r['rps']:>9,.0f} rps  p50 {r['p50_us']:>6,.0f}  "
                     f"p99 {r['p99_us']:>7,.0f}  cpu {r['cpu_us_per_req']:>5.1f}{extra}{err}")
    for key in ("small", "large"):
        c = codec[key]
        lines.append(f"  codec {key} ({os.path.getsize(bodies[key])} B in, "
                     f"{os.path.getsize(resp[key]['body'])} B out){'':<12} decode "
                     f"{c['decode_us']:.2f} us + encode {c['encode_us']:.2f} us = "
                     f"{c['total_us']:.2f} us")
    lines.append(f"  memory: VmRSS {mem['rss_early_kib']} KiB after {mem['early']:,}, "
                 f"{mem['rss_late_kib']} KiB after {mem['late']:,} requests "
                 f"(h2load --h1 -n, 16 conns, {mem['rps_h2load_h1']:,.0f} rps)"
                 + (f"  ERRORS {mem['errors']}" if mem["errors"] else ""))
    text = "\n".join(lines) + "\n"
    print(text, end="", flush=True)

    outdir = os.path.join(args.build_dir, "benchmarks", "server")
    os.makedirs(outdir, exist_ok=True)
    name = "bench_server_smoke" if args.smoke else "bench_server"
    with open(os.path.join(outdir, name + ".txt"), "w") as f:
        f.write(text)
    with open(os.path.join(outdir, name + ".json"), "w") as f:
        json.dump({"raw": bench.raw, "codec_us": codec, "memory": mem, "xgboost": xgb,
                   "table": rows, "load_average_start": load_start}, f, indent=1)
    log(f"saved {os.path.join(outdir, name + '.txt')}")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        log(f"kept {workdir}")
    # A harness failure (a load that measured nothing) is an error; a slow figure never is.
    empty = [r["label"] for r in bench.raw if r["requests"] == 0]
    if empty or mem["ok"] == 0:
        log(f"no requests measured for: {', '.join(empty) or 'memory'}")
        return 1
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build-dir", default=os.path.join(SOURCE, "build"))
    p.add_argument("--no-build", action="store_true", help="use the binaries as they are")
    p.add_argument("--quick", action="store_true",
                   help="3 s per measurement, 200,000 requests for memory")
    p.add_argument("--smoke", action="store_true",
                   help="1 s per measurement, tiny counts: checks the harness, not the server")
    p.add_argument("--seconds", type=int, help="seconds per measurement (default 8)")
    p.add_argument("--warmup", type=int, help="warm-up seconds before each (default 1)")
    p.add_argument("--threads", type=int, default=1, help="wrk/h2load threads (default 1)")
    p.add_argument("--mem-requests", type=int, help="requests for the late RSS (default 1,000,000)")
    p.add_argument("--mem-early", type=int, help="requests for the early RSS (default 10,000)")
    p.add_argument("--wait-load", type=float, default=0.0,
                   help="wait until the 1-minute load average is below this first")
    p.add_argument("--wait-max", type=float, default=1200.0,
                   help="give up waiting for a low load after this many seconds")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = p.parse_args()
    preset = (1, 0, 2000, 200) if args.smoke else (3, 1, 200000, 10000) if args.quick else \
        (8, 1, 1000000, 10000)
    args.seconds = args.seconds or preset[0]
    args.warmup = preset[1] if args.warmup is None else args.warmup
    args.mem_requests = args.mem_requests or preset[2]
    args.mem_early = args.mem_early or preset[3]
    if args.mem_early >= args.mem_requests:
        p.error("--mem-early must be below --mem-requests")
    args.build_dir = os.path.abspath(args.build_dir)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
