#!/usr/bin/python3
"""The end-to-end benchmark: the whole control plane's data path, measured beside
seldon-server alone in the same run, on loopback, with the ratios computed here.

    /usr/bin/python3 benchmarks/e2e/run.py [--quick | --smoke] [options]

Three parts, each with real daemons and models loaded by the real `seldon` CLI:

1. Separate daemons: seldon-scheduler, seldon-server (--no-load-all) with its
   seldon-agent, and seldon-router fed by the scheduler (--scheduler-host). add10
   (4 floats, REST) at 1 connection through router -> agent -> server, and each hop
   alone: server direct, agent -> server, a second router with a static routes file
   -> server. Target: p50 at most 0.5 ms through the chain.
2. seldon-up (scheduler, agent stage, server core and ingress in one process) against
   a seldon-server alone serving the same add10: p50 at 1 connection (target at most
   1.2x the server alone) and throughput at 16 connections.
3. Overcommit at +10%: N xgboost models of a few MB (trained here) whose memory totals
   110% of an agent's --memory, beside the same N models on an agent whose --memory
   holds them all; requests spread uniformly at random over the models, through the
   router. Target: p95 with overcommit at most 2x the p95 with everything loaded.
   Evictions and cache misses come from the agent's /metrics.

Load is h2load --h1 (keep-alive, one request in flight per connection, every
request's latency logged; percentiles computed here from the raw samples). Prints one table (case, ours,
reference, ratio, target) and every raw figure; saves them under the build folder
(benchmarks/e2e/bench_e2e.txt and .json). Targets are printed, never enforced.
"""
import argparse
import importlib.util
import json
import random
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", ".."))

# The server benchmark's process and formatting helpers.
_spec = importlib.util.spec_from_file_location("bench_server",
                                               os.path.join(SOURCE, "benchmarks", "server",
                                                            "run.py"))
bs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bs)

HOST = bs.HOST
ADD10_BODY = json.dumps({"inputs": [{"name": "INPUT", "datatype": "FP32", "shape": [4],
                                     "data": [1.0, 2.0, 3.0, 4.0]}]}).encode()
MODEL_MEMORY_MI = 10   # spec.memory of each xgboost model
OVERCOMMIT = 10        # percent: the models total 110% of the overcommitted agent's memory


def log(msg):
    print(f"[bench_e2e {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- Build and binaries -------------------------------------------------------------

TARGETS = ("seldon-server", "seldon-agent", "seldon-router", "seldon-scheduler", "seldon-cli",
           "seldon-up", "seldon_runtime_xgboost")


def build(args):
    if not os.path.exists(os.path.join(args.build_dir, "CMakeCache.txt")):
        subprocess.run(["cmake", "-S", SOURCE, "-B", args.build_dir], check=True,
                       stdout=subprocess.DEVNULL)
    log("building bench_e2e_deps (the daemons, the CLI, the xgboost runtime)")
    subprocess.run(["cmake", "--build", args.build_dir, "-j2", "--target", "bench_e2e_deps"],
                   check=True, stdout=subprocess.DEVNULL)


def copy_binaries(args, workdir):
    """Copies the binaries (and the xgboost plugin with its libseldon.so), so that a
    concurrent rebuild cannot swap them mid-run."""
    b = args.build_dir
    src = {
        "server": os.path.join(b, "daemons", "server", "seldon-server"),
        "agent": os.path.join(b, "daemons", "agent", "seldon-agent"),
        "router": os.path.join(b, "daemons", "router", "seldon-router"),
        "scheduler": os.path.join(b, "daemons", "scheduler", "seldon-scheduler"),
        "cli": os.path.join(b, "daemons", "cli", "seldon"),
        "up": os.path.join(b, "daemons", "up", "seldon-up"),
    }
    bins = {}
    for key, path in src.items():
        if not os.path.exists(path):
            raise SystemExit(f"bench_e2e: {path} is missing: build target bench_e2e_deps")
        bins[key] = os.path.join(workdir, "bin", os.path.basename(path))
        os.makedirs(os.path.dirname(bins[key]), exist_ok=True)
        shutil.copy2(path, bins[key])
    plugin = os.path.join(b, "runtimes", "libseldon-runtime-xgboost.so")
    if not os.path.exists(plugin):
        raise SystemExit(f"bench_e2e: {plugin} is missing: build target bench_e2e_deps")
    rdir = os.path.join(workdir, "runtimes")
    os.makedirs(rdir, exist_ok=True)
    shutil.copy2(plugin, rdir)
    bins["runtime_path"] = rdir
    libdir = os.path.join(b, "libseldon")
    ldir = os.path.join(workdir, "lib")
    os.makedirs(ldir, exist_ok=True)
    for n in os.listdir(libdir):
        if re.match(r"libseldon\.so\.\d+$", n):
            shutil.copyfile(os.path.join(libdir, n), os.path.join(ldir, n))
    bins["env"] = dict(os.environ, LD_LIBRARY_PATH=ldir + (
        ":" + os.environ["LD_LIBRARY_PATH"] if os.environ.get("LD_LIBRARY_PATH") else ""))
    return bins


# --- Processes ----------------------------------------------------------------------


def daemon(bins, workdir, name, cmd):
    """A daemon that prints 'listening k=P ...' once serving; stderr in workdir."""
    return bs.Server(name, cmd, workdir, ready=r"^listening ", env=bins["env"])


def scheduler(bins, workdir):
    return daemon(bins, workdir, "seldon-scheduler", [
        bins["scheduler"], "--state-dir", os.path.join(workdir, "scheduler"), "--host", HOST,
        "--client-port", "0", "--agent-port", "0", "--route-port", "0", "--metrics-port", "0",
        "--log-level", "warn"])


def server(bins, workdir, name, repo, *extra):
    return daemon(bins, workdir, name, [
        bins["server"], "--model-repository", repo, "--http-port", "0", "--grpc-port", "0",
        "--host", HOST, "--runtime-path", bins["runtime_path"], "--log-level", "warn", *extra])


# --busy-poll for the routers, the agents and seldon-up (empty: each daemon's default).
BUSY = []


def agent(bins, workdir, name, sched, srv, models, server_name, memory, overcommit=OVERCOMMIT):
    return daemon(bins, workdir, name, [
        bins["agent"], "--scheduler-host", f"{HOST}:{sched.ports['agent']}",
        "--server-name", server_name, "--replica-index", "0", "--memory", memory,
        "--overcommit-percent", str(overcommit), "--models-dir", models,
        "--server-http", f"{HOST}:{srv.ports['http']}",
        "--server-grpc", f"{HOST}:{srv.ports['grpc']}", "--http-port", "0", "--grpc-port", "0",
        "--metrics-port", "0", "--host", HOST, "--advertise-host", HOST,
        "--reconnect-max", "200", "--log-level", "warn", *BUSY])


def cli(bins, sched_port, *args, timeout=600):
    cmd = [bins["cli"], "--scheduler-host", f"{HOST}:{sched_port}", *[str(a) for a in args]]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=bins["env"])
    if p.returncode != 0:
        raise RuntimeError(f"seldon {' '.join(map(str, args))}: exit {p.returncode}: "
                           f"{p.stderr.strip()}")
    return p.stdout


def write_manifest(path, models):
    """models: (name, storageUri, requirements, memory, server pin or None)."""
    docs = []
    for name, uri, reqs, memory, pin in models:
        text = ("apiVersion: mlops.seldon.io/v1alpha1\nkind: Model\nmetadata:\n"
                f"  name: {name}\nspec:\n  storageUri: \"{uri}\"\n")
        if reqs:
            text += "  requirements:\n" + "".join(f"  - {r}\n" for r in reqs)
        if memory:
            text += f"  memory: {memory}\n"
        if pin:
            text += f"  server: {pin}\n"
        docs.append(text)
    with open(path, "w") as f:
        f.write("---\n".join(docs))
    return path


def infer(port, path, body, guard=60.0):
    """Posts until a 200 answer (routes reach a router shortly after ModelAvailable)."""
    deadline = time.monotonic() + guard
    last = None
    while time.monotonic() < deadline:
        try:
            _, status, answer = bs.http_exchange(port, path, body)
            if status == 200:
                return json.loads(answer)
            last = (status, answer[:300])
        except (OSError, RuntimeError) as e:
            last = e
        time.sleep(0.05)
    raise RuntimeError(f"POST {path} on port {port}: no 200 answer: {last}")


def outputs(answer):
    return [(o["name"], o["data"]) for o in answer["outputs"]]


def metric_sum(port, name):
    """The sum of every series of one metric family on a /metrics endpoint."""
    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=30) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


# --- h2load ---------------------------------------------------------------------


def percentile(sorted_lat, pct):
    if not sorted_lat:
        return float("nan")
    return float(sorted_lat[min(len(sorted_lat) - 1, (len(sorted_lat) * pct) // 100)])


class Bench:
    """h2load --h1: keep-alive HTTP/1.1, one request in flight per connection, every
    request's latency in its log file. The percentiles are computed here from those raw
    samples (wrk would add coordinated-omission samples for every long stall, which turns
    a few slow reloads into a slow median)."""

    def __init__(self, args, workdir):
        self.args = args
        self.workdir = workdir
        self.raw = []
        self.seq = 0

    def _once(self, port, paths, body_path, conns, seconds, logfile):
        cmd = ["h2load", "--h1", "-t1", f"-c{conns}", "-m1", "-D", str(seconds), "-d",
               body_path, "-H", "content-type: application/json"]
        if len(paths) == 1:
            cmd.append(f"http://{HOST}:{port}{paths[0]}")
        else:
            # Uniformly at random, the same sequence in every configuration (--seed).
            rng = random.Random(self.args.seed)
            urls = os.path.join(self.workdir, "urls.txt")
            with open(urls, "w") as f:
                for _ in range(max(1000, 400 * seconds * conns)):
                    f.write(f"http://{HOST}:{port}{rng.choice(paths)}\n")
            cmd += ["-i", urls]
        if logfile:
            cmd.append(f"--log-file={logfile}")
        return subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 180).stdout

    def measure(self, label, port, paths, body, conns, seconds=None, warmup=None, rounds=1,
                record=True):
        """rounds runs (each after its warm-up), their samples pooled into one figure."""
        seconds = seconds or self.args.seconds
        warmup = self.args.warmup if warmup is None else warmup
        self.seq += 1
        body_path = os.path.join(self.workdir, f"body{self.seq}.json")
        with open(body_path, "wb") as f:
            f.write(body)
        r = {"label": label, "conns": conns, "seconds": seconds * rounds, "rps": float("nan"),
             "requests": 0, "errors": 0, "round_p50_us": []}
        lat = []
        rps = []
        for _ in range(rounds):
            if warmup > 0:
                self._once(port, paths, body_path, conns, warmup, None)
            logfile = os.path.join(self.workdir, "h2load.log")
            out = self._once(port, paths, body_path, conns, seconds, logfile)
            m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
            if m:
                rps.append(float(m.group(1)))
            m = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, "
                          r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
            if m:
                r["requests"] += int(m.group(3))
                r["errors"] += int(m.group(4)) + int(m.group(5)) + int(m.group(6))
            else:
                r["errors"] += 1
                log(f"h2load produced no figures for {label}:\n{out}")
            m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
            if m:
                r["errors"] += sum(int(x) for x in m.groups()[1:])
            try:
                with open(logfile) as f:
                    one = [int(line.split("\t")[2]) for line in f if line.count("\t") == 2]
                os.unlink(logfile)
            except OSError:
                one = []
            r["round_p50_us"].append(percentile(sorted(one), 50))
            lat += one
        lat.sort()
        if rps:
            r["rps"] = sum(rps) / len(rps)
        for pct in (50, 90, 95, 99):
            r[f"p{pct}_us"] = percentile(lat, pct)
        r["max_us"] = float(lat[-1]) if lat else float("nan")
        if not record:
            r["_lat"] = lat
            return r
        self.raw.append(r)
        log(f"  {label}: {r['rps']:,.0f} rps, p50 {r['p50_us']:.0f} us, p95 {r['p95_us']:.0f} "
            f"us, p99 {r['p99_us']:.0f} us"
            + (f" (p50 by round {', '.join(f'{x:.0f}' for x in r['round_p50_us'])})"
               if rounds > 1 else "")
            + (f", {r['errors']} errors" if r["errors"] else ""))
        return r

    def interleaved(self, cases, conns):
        """cases: (label, port, path). --rounds rounds, each measuring every case in turn,
        so that a change of the machine's load (or of which core the scheduler puts the
        client and the server on: at one connection that moves the p50 between about 20
        and 60 us here) falls on every case alike. Each case's samples are pooled."""
        parts = {label: [] for label, _, _ in cases}
        for k in range(self.args.rounds):
            for label, port, path in cases:
                parts[label].append(self.measure(f"{label} (round {k + 1})", port, [path],
                                                 ADD10_BODY, conns, record=False))
        out = {}
        for label, _, _ in cases:
            rs = parts[label]
            lat = sorted(x for r in rs for x in r.pop("_lat"))
            r = {"label": f"{label}: add10 REST c{conns}", "conns": conns,
                 "seconds": sum(x["seconds"] for x in rs),
                 "rps": sum(x["rps"] for x in rs) / len(rs),
                 "requests": sum(x["requests"] for x in rs),
                 "errors": sum(x["errors"] for x in rs),
                 "round_p50_us": [x["p50_us"] for x in rs]}
            for pct in (50, 90, 95, 99):
                r[f"p{pct}_us"] = percentile(lat, pct)
            r["max_us"] = float(lat[-1]) if lat else float("nan")
            self.raw.append(r)
            log(f"  {r['label']}: p50 {r['p50_us']:.0f} us pooled (by round "
                f"{', '.join(f'{x:.0f}' for x in r['round_p50_us'])}), p99 {r['p99_us']:.0f} us")
            out[label] = r
        return out


# --- xgboost models -----------------------------------------------------------------


def train_xgboost(path, smoke):
    """One binary classifier of a few MB (250 trees of depth 8; 10 trees in a smoke run),
    trained with the system's python3-xgboost. Returns (file size, request body)."""
    import numpy as np
    import xgboost as xgb
    rng = np.random.default_rng(7)
    x = rng.normal(size=(20000, 10)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] - x[:, 2] * x[:, 3] + rng.normal(scale=0.5, size=20000) > 0)
    params = {"objective": "binary:logistic", "max_depth": 8, "eta": 0.1, "seed": 7,
              "nthread": 2}
    bst = xgb.train(params, xgb.DMatrix(x, label=y.astype(np.float32)), 10 if smoke else 250)
    bst.save_model(path)
    row = rng.normal(size=(1, 10)).astype(np.float32)
    body = json.dumps({"inputs": [{"name": "input-0", "datatype": "FP32", "shape": [1, 10],
                                   "data": [float(v) for v in row.reshape(-1)]}]})
    return os.path.getsize(path), body.encode()


# --- The run ------------------------------------------------------------------------


def add10_source(workdir):
    """examples/models/add10, copied (an absolute storageUri: agents run elsewhere)."""
    src = os.path.join(workdir, "src", "add10")
    shutil.copytree(os.path.join(SOURCE, "examples", "models", "add10"), src)
    return src


def part_chain(args, bins, workdir, bench, start, add10_src, figures):
    """Part 1: router -> agent -> server as separate daemons, and each hop alone."""
    log("part 1: seldon-scheduler, seldon-server + seldon-agent, seldon-router")
    sched = start(scheduler(bins, workdir))
    models = os.path.join(workdir, "chain-models")
    os.makedirs(models)
    srv = start(server(bins, workdir, "chain-server", models, "--no-load-all"))
    ag = start(agent(bins, workdir, "chain-agent", sched, srv, models, "mlserver", "1Gi"))
    router = start(daemon(bins, workdir, "chain-router", [
        bins["router"], "--scheduler-host", f"{HOST}:{sched.ports['route']}",
        "--state-dir", os.path.join(workdir, "router-state"), "--port", "0",
        "--metrics-port", "0", "--host", HOST, "--resubscribe-max", "200",
        "--log-level", "warn", *BUSY]))
    manifest = write_manifest(os.path.join(workdir, "add10.yaml"),
                              [("add10", add10_src, [], "1Mi", None)])
    t0 = time.monotonic()
    cli(bins, sched.ports["client"], "model", "load", "-f", manifest, "-w", "ModelAvailable",
        "-t", "60")
    figures["chain_load_s"] = time.monotonic() - t0
    # A second router with a static routes file straight to the server: the router hop alone.
    routes = os.path.join(workdir, "static-routes.yaml")
    with open(routes, "w") as f:
        f.write("routes:\n- name: add10_1\n  upstreams:\n"
                f"  - {{http: \"{HOST}:{srv.ports['http']}\", "
                f"grpc: \"{HOST}:{srv.ports['grpc']}\"}}\n")
    static = start(daemon(bins, workdir, "static-router", [
        bins["router"], "--routes", routes, "--port", "0", "--metrics-port", "0", "--host",
        HOST, "--log-level", "warn", *BUSY]))
    cases = [
        ("server direct", srv.ports["http"], "/v2/models/add10_1/infer"),
        ("agent -> server", ag.ports["http"], "/v2/models/add10/infer"),
        ("router -> server", static.ports["port"], "/v2/models/add10_1/infer"),
        ("router -> agent -> server", router.ports["port"], "/v2/models/add10/infer"),
    ]
    want = None
    for name, port, path in cases:
        got = outputs(infer(port, path, ADD10_BODY))
        want = want or got
        if got != want or got[0][1] != [11.0, 12.0, 13.0, 14.0]:
            raise RuntimeError(f"{name} answered {got}, expected add10's {want}")
    c1 = bench.interleaved(cases, 1)
    chain = {}
    for name, port, path in cases:
        chain[name] = {1: c1[name], 16: bench.measure(f"{name}: add10 REST c16", port, [path],
                                                      ADD10_BODY, 16)}
    figures["chain"] = chain
    return sched, router


def part_up(args, bins, workdir, bench, start, add10_src, figures):
    """Part 2: seldon-up beside seldon-server alone, same model, same client."""
    log("part 2: seldon-up and seldon-server alone")
    alone_repo = os.path.join(workdir, "alone-models")
    os.makedirs(alone_repo)
    shutil.copytree(add10_src, os.path.join(alone_repo, "add10"))
    alone = start(server(bins, workdir, "alone-server", alone_repo))
    bs.wait_ready(alone, "add10")
    updir = os.path.join(workdir, "up")
    os.makedirs(updir)
    up = start(bs.Server("seldon-up", [
        bins["up"], "--state-dir", os.path.join(updir, ".seldon"), "--port", "0",
        "--scheduler-port", "0", "--metrics-port", "0", "--host", HOST, "--log-level", "warn",
        *BUSY],
        updir, ready=r"^listening ", env=bins["env"]))
    manifest = write_manifest(os.path.join(workdir, "up-add10.yaml"),
                              [("add10", add10_src, [], "1Mi", None)])
    cli(bins, up.ports["scheduler"], "model", "load", "-f", manifest, "-w", "ModelAvailable",
        "-t", "60")
    path = "/v2/models/add10/infer"
    a = outputs(infer(alone.ports["http"], path, ADD10_BODY))
    u = outputs(infer(up.ports["inference"], path, ADD10_BODY))
    if a != u:
        raise RuntimeError(f"seldon-up answered {u}, seldon-server {a}")
    cases = [("seldon-server alone", alone.ports["http"], path),
             ("seldon up", up.ports["inference"], path)]
    c1 = bench.interleaved(cases, 1)
    res = {}
    for name, port, _ in cases:
        res[name] = {1: c1[name], 16: bench.measure(f"{name}: add10 REST c16", port, [path],
                                                    ADD10_BODY, 16)}
    figures["up"] = res
    alone.stop()
    up.stop()


def part_overcommit(args, bins, workdir, bench, start, sched, router, figures):
    """Part 3: N xgboost models on an agent with room for all, and on one with room for
    N/1.1 of them; requests uniformly at random over the N models, through the router."""
    n = args.models
    log(f"part 3: overcommit, {n} xgboost models of {MODEL_MEMORY_MI}Mi each")
    src = os.path.join(workdir, "src")
    model_file = os.path.join(workdir, "model.json")
    t0 = time.monotonic()
    size, body = train_xgboost(model_file, args.smoke)
    log(f"  trained one booster: {size / 1e6:.1f} MB in {time.monotonic() - t0:.1f} s")
    figures["xgb_file_bytes"] = size
    full_mem = n * MODEL_MEMORY_MI * 2
    # The models total 110% of this: the scheduler places them all with 10% overcommit.
    oc_mem_ki = (n * MODEL_MEMORY_MI * 1024 * 100) // (100 + OVERCOMMIT)
    docs = []
    for cfg in ("full", "oc"):
        for i in range(n):
            name = f"{cfg}-xgb-{i}"
            d = os.path.join(src, name)
            os.makedirs(d)
            shutil.copyfile(model_file, os.path.join(d, "model.json"))
            with open(os.path.join(d, "model-settings.json"), "w") as f:
                json.dump({"name": name, "implementation": "xgboost"}, f)
            docs.append((name, d, ["xgboost"], f"{MODEL_MEMORY_MI}Mi", cfg))
    pairs = {}
    for cfg, mem in (("full", f"{full_mem}Mi"), ("oc", f"{oc_mem_ki}Ki")):
        models = os.path.join(workdir, f"{cfg}-models")
        os.makedirs(models)
        srv = start(server(bins, workdir, f"{cfg}-server", models, "--no-load-all"))
        ag = start(agent(bins, workdir, f"{cfg}-agent", sched, srv, models, cfg, mem))
        pairs[cfg] = (srv, ag, mem)
    manifest = write_manifest(os.path.join(workdir, "xgb.yaml"), docs)
    t0 = time.monotonic()
    cli(bins, sched.ports["client"], "model", "load", "-f", manifest, "-w", "ModelAvailable",
        "-t", "600")
    figures["xgb_load_all_s"] = time.monotonic() - t0
    log(f"  {2 * n} models available in {figures['xgb_load_all_s']:.1f} s")
    want = outputs(infer(router.ports["port"], "/v2/models/full-xgb-0/infer", body))
    for i in range(n):
        got = outputs(infer(router.ports["port"], f"/v2/models/oc-xgb-{i}/infer", body))
        if got != want:
            raise RuntimeError(f"oc-xgb-{i} answered {got}, full-xgb-0 {want}")
    res = {}
    for cfg in ("full", "oc"):
        ag = pairs[cfg][1]
        paths = [f"/v2/models/{cfg}-xgb-{i}/infer" for i in range(n)]
        # The warm-up is the same uniform load: the measured run starts in the steady state.
        if args.warmup:
            bench.measure(f"{cfg}: warm-up", router.ports["port"], paths, body, args.oc_conns,
                          seconds=args.warmup, warmup=0, record=False)
        ev0 = metric_sum(ag.ports["metrics"], "seldon_cache_evict_count")
        mi0 = metric_sum(ag.ports["metrics"], "seldon_cache_miss_count")
        r = bench.measure(f"{cfg}: {n} xgboost models, uniform, c{args.oc_conns}",
                          router.ports["port"], paths, body, args.oc_conns,
                          seconds=args.oc_seconds, warmup=0)
        r["evictions"] = metric_sum(ag.ports["metrics"], "seldon_cache_evict_count") - ev0
        r["misses"] = metric_sum(ag.ports["metrics"], "seldon_cache_miss_count") - mi0
        r["memory"] = pairs[cfg][2]
        log(f"    evictions {r['evictions']:.0f}, cache misses {r['misses']:.0f}")
        res[cfg] = r
    figures["overcommit"] = res


def table(args, figures, raw, load_start, elapsed):
    rows = []

    def row(case, ours, ref, unit, target):
        rat = bs.ratio(ours, ref) if ref is not None else float("nan")
        rows.append((case, bs.fmt(ours, unit), bs.fmt(ref, unit) if ref is not None else "",
                     "" if rat != rat else f"{rat:.2f}", target))

    ch = figures.get("chain")
    if ch:
        srv1 = ch["server direct"][1]["p50_us"]
        e2e = ch["router -> agent -> server"][1]
        row("e2e c1 p50: router->agent->server / 0.5 ms", e2e["p50_us"], 500.0, "us",
            "<= 1.0")
        row("e2e c1 p99: router->agent->server", e2e["p99_us"], None, "us", "(report)")
        row("e2e c1 p50 / Seldon Core 2's k6 (17 ms)", e2e["p50_us"], 17000.0, "us", "(report)")
        row("server direct c1 p50 (seldon-server alone)", srv1, None, "us", "(report)")
        row("server direct c1 p99", ch["server direct"][1]["p99_us"], None, "us", "(report)")
        for name, hop in (("agent -> server", "agent hop"), ("router -> server", "router hop"),
                          ("router -> agent -> server", "both hops")):
            added = ch[name][1]["p50_us"] - srv1
            row(f"{hop}: c1 p50 added over server direct", added, None, "us", "(report)")
        row("e2e c16 rps: chain / server direct", ch["router -> agent -> server"][16]["rps"],
            ch["server direct"][16]["rps"], "rps", "(report)")
    up = figures.get("up")
    if up:
        u, a = up["seldon up"], up["seldon-server alone"]
        row("seldon up c1 p50 / seldon-server alone", u[1]["p50_us"], a[1]["p50_us"], "us",
            "<= 1.2")
        row("seldon up c1 p99 / seldon-server alone", u[1]["p99_us"], a[1]["p99_us"], "us",
            "(report)")
        row("seldon up c16 rps / seldon-server alone", u[16]["rps"], a[16]["rps"], "rps",
            "(report)")
    oc = figures.get("overcommit")
    if oc:
        o, f = oc["oc"], oc["full"]
        row("overcommit +10%: p95 / all loaded", o["p95_us"], f["p95_us"], "us",
            "<= 2 (SC2 ~8)")
        row("overcommit +10%: p50 / all loaded", o["p50_us"], f["p50_us"], "us", "(report)")
        row("overcommit +10%: p90 / all loaded", o["p90_us"], f["p90_us"], "us", "(report)")
        row("overcommit +10%: p99 / all loaded", o["p99_us"], f["p99_us"], "us", "(report)")
        row("overcommit +10%: rps / all loaded", o["rps"], f["rps"], "rps", "(report)")
        for cfg, r in (("overcommit", o), ("all loaded", f)):
            req = r["requests"] or float("nan")
            rows.append((f"{cfg}: evictions, cache misses / requests",
                         f"{r['evictions']:.0f}, {r['misses']:.0f}", f"{r['requests']:,}",
                         f"{r['misses'] / req:.3f}", "(report)"))
    lines = [f"end-to-end benchmark, {time.strftime('%Y-%m-%d %H:%M:%S')}, {bs.CORES} cores, "
             f"load average {load_start:.2f} at start, {bs.load_average():.2f} at end, "
             f"{elapsed:.0f} s",
             f"{args.seconds} s per measurement ({args.warmup} s warm-up), c1 cases in {args.rounds} "
             f"interleaved rounds, h2load --h1 -t1; add10 = "
             f"REST, 4 FP32 in and out; overcommit: {args.models} xgboost models of "
             f"{figures.get('xgb_file_bytes', 0) / 1e6:.1f} MB (spec.memory "
             f"{MODEL_MEMORY_MI}Mi), {args.oc_seconds} s at c{args.oc_conns} through the router; "
             f"--busy-poll {args.busy_poll if args.busy_poll is not None else 'default'}"
             + ("; SMOKE RUN: figures not meaningful" if args.smoke else ""), ""]
    header = ("case", "ours", "reference", "ratio", "target")
    widths = [max(len(x[i]) for x in rows + [header]) for i in range(5)]
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    lines.append("  ".join("-" * w for w in widths))
    for x in rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(x, widths))).rstrip())
    lines.append("")
    lines.append("measurements: rps; latency percentiles in us (h2load, every request)")
    for m in raw:
        err = f"  ERRORS {m['errors']}" if m["errors"] else ""
        lines.append(f"  {m['label']:<46} {m['rps']:>9,.0f} rps  p50 {m.get('p50_us', 0):>7,.0f}"
                     f"  p90 {m.get('p90_us', 0):>7,.0f}  p95 {m.get('p95_us', 0):>7,.0f}"
                     f"  p99 {m.get('p99_us', 0):>7,.0f}  max {m.get('max_us', 0):>8,.0f}{err}"
                     + (f"  (p50 by round: {', '.join(f'{x:.0f}' for x in m['round_p50_us'])})"
                        if len(m.get("round_p50_us", [])) > 1 else ""))
    return rows, "\n".join(lines) + "\n"


def run(args):
    if not args.no_build:
        build(args)
    load_start = bs.load_average()
    log(f"1-minute load average at start: {load_start:.2f} ({bs.CORES} cores)")
    t_start = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="bench_e2e.")
    procs = []

    def start(p):
        procs.append(p)
        return p

    figures = {}
    bench = None
    failed = None
    try:
        bins = copy_binaries(args, workdir)
        bench = Bench(args, workdir)
        add10_src = add10_source(workdir)
        parts = args.parts.split(",")
        sched = router = None
        if "chain" in parts or "overcommit" in parts:
            sched, router = part_chain(args, bins, workdir, bench, start, add10_src, figures) \
                if "chain" in parts else (None, None)
        if "up" in parts:
            part_up(args, bins, workdir, bench, start, add10_src, figures)
        if "overcommit" in parts:
            if sched is None:
                sched = start(scheduler(bins, workdir))
                router = start(daemon(bins, workdir, "chain-router", [
                    bins["router"], "--scheduler-host", f"{HOST}:{sched.ports['route']}",
                    "--state-dir", os.path.join(workdir, "router-state"), "--port", "0",
                    "--metrics-port", "0", "--host", HOST, "--resubscribe-max", "200",
                    "--log-level", "warn", *BUSY]))
            part_overcommit(args, bins, workdir, bench, start, sched, router, figures)
    except Exception as e:  # the table of what was measured still prints
        failed = e
        log(f"FAILED: {e}")
        for p in procs:
            t = p.tail()
            if t:
                log(f"--- {p.name} stderr ---\n{t}")
    finally:
        while procs:
            procs.pop().stop()
    raw = bench.raw if bench else []
    rows, text = table(args, figures, raw, load_start, time.monotonic() - t_start)
    print(text, end="", flush=True)
    outdir = os.path.join(args.build_dir, "benchmarks", "e2e")
    os.makedirs(outdir, exist_ok=True)
    name = "bench_e2e_smoke" if args.smoke else "bench_e2e"
    with open(os.path.join(outdir, name + ".txt"), "w") as f:
        f.write(text)
    with open(os.path.join(outdir, name + ".json"), "w") as f:
        json.dump({"raw": raw, "table": rows, "figures": figures}, f, indent=1, default=str)
    log(f"saved {os.path.join(outdir, name + '.txt')}")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        log(f"kept {workdir}")
    if failed is not None:
        return 1
    bad = [m["label"] for m in raw if m["requests"] == 0 or m["errors"]]
    if bad:
        log(f"measurements without requests, or with errors: {', '.join(bad)}")
        return 1
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--build-dir", default=os.path.join(SOURCE, "build"))
    p.add_argument("--no-build", action="store_true")
    p.add_argument("--quick", action="store_true", help="3 s per measurement")
    p.add_argument("--smoke", action="store_true", help="1 s per measurement: checks the harness")
    p.add_argument("--seconds", type=int, help="seconds per latency measurement")
    p.add_argument("--warmup", type=int)
    p.add_argument("--rounds", type=int, help="interleaved rounds of the 1-connection cases")
    p.add_argument("--seed", type=int, default=12, help="the overcommit part's request order")
    p.add_argument("--models", type=int, default=11,
                   help="xgboost models per configuration (default 11: one over 10)")
    p.add_argument("--oc-seconds", type=int, help="seconds per overcommit measurement")
    p.add_argument("--oc-conns", type=int, default=1, help="connections for the overcommit part")
    p.add_argument("--parts", default="chain,up,overcommit",
                   help="comma-separated: chain, up, overcommit")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument("--busy-poll", type=int, metavar="US",
                   help="--busy-poll for every router, agent and seldon-up (default: theirs, "
                        "200 us)")
    args = p.parse_args()
    preset = (1, 0, 2, 1) if args.smoke else (3, 1, 10, 2) if args.quick else (5, 1, 30, 3)
    args.seconds = args.seconds or preset[0]
    args.rounds = args.rounds or preset[3]
    args.warmup = preset[1] if args.warmup is None else args.warmup
    args.oc_seconds = args.oc_seconds or preset[2]
    args.build_dir = os.path.abspath(args.build_dir)
    if args.busy_poll is not None:
        BUSY[:] = ["--busy-poll", str(args.busy_poll)]
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
