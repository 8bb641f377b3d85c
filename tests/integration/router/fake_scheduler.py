"""A stand-in for seldon-scheduler's RouteService (proto/seldon_control.proto),
served by grpcio, for the router's subscription tests.

It pushes whatever table the test gives it: push() sends to every router
subscribed now and is the first table sent to routers that subscribe later, as
the real service does ("the whole route table now, then again after every
change"). stop() takes it off the network; start() brings it back on the same
port, with the table it had.
"""
import importlib
import json
import os
import subprocess
import sys
import threading
from concurrent import futures

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
PROTO_DIR = os.environ.get("SELDON_PROTO_DIR") or os.path.join(SOURCE, "proto")


def compile_control(out):
    """Runs grpc_tools.protoc on seldon_control.proto into out; returns (pb2, pb2_grpc)."""
    proc = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", PROTO_DIR, f"--python_out={out}",
         f"--grpc_python_out={out}", os.path.join(PROTO_DIR, "seldon_control.proto")],
        capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    sys.path.insert(0, str(out))
    try:
        return (importlib.import_module("seldon_control_pb2"),
                importlib.import_module("seldon_control_pb2_grpc"))
    finally:
        sys.path.remove(str(out))


def _serialize(message):
    # bytes go out as they are: push_raw() sends what no RouteTable encodes to.
    return message if isinstance(message, bytes) else message.SerializeToString()


class FakeScheduler:
    """RouteService on a loopback port: tables pushed on cue, stopped and started on cue."""

    def __init__(self, pb2, pb2_grpc, host="127.0.0.1", port=0):
        self.pb2 = pb2
        self.pb2_grpc = pb2_grpc
        self.host = host
        self.port = port
        self.cond = threading.Condition()
        self.table = None        # the RouteTable sent first to a new subscriber
        self.sent = []           # every table pushed, in order
        self.generation = 0
        self.subscribers = []    # the router names that subscribed, in order
        self.active = 0          # streams open now
        self.epoch = 0           # end_streams() ends the streams of earlier epochs
        self.server = None
        self.start()

    # --- the service ---------------------------------------------------------

    def _subscribe(self, request, context):
        with self.cond:
            self.subscribers.append(request.router)
            self.active += 1
            self.cond.notify_all()
        context.add_callback(self._wake)
        try:
            seen = 0
            with self.cond:
                epoch = self.epoch

            def over():
                return not context.is_active() or self.stopping or self.epoch != epoch

            while True:
                with self.cond:
                    # Woken by push(), stop(), end_streams() or the call ending; no polling.
                    self.cond.wait_for(lambda: over() or
                                       (self.table is not None and seen < len(self.sent)))
                    if over():
                        return
                    table = self.table
                    seen = len(self.sent)
                yield table
        finally:
            with self.cond:
                self.active -= 1
                self.cond.notify_all()

    def _wake(self):
        with self.cond:
            self.cond.notify_all()

    # --- what tests call -----------------------------------------------------

    def start(self):
        """Serves on self.port (a free one the first time)."""
        self.stopping = False
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        handler = grpc.unary_stream_rpc_method_handler(
            self._subscribe,
            request_deserializer=self.pb2.RouteSubscribeRequest.FromString,
            response_serializer=_serialize)
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "seldon.control.v1.RouteService", {"Subscribe": handler}),))
        port = self.server.add_insecure_port(f"{self.host}:{self.port}")
        assert port != 0, f"cannot listen on {self.host}:{self.port}"
        self.port = port
        self.server.start()

    def stop(self):
        """Ends every subscription and closes the port."""
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        self.server.stop(grace=None).wait()
        with self.cond:
            self.cond.wait_for(lambda: self.active == 0, timeout=30)

    def end_streams(self):
        """Ends the subscriptions open now with status OK, the server staying up."""
        with self.cond:
            self.epoch += 1
            self.cond.notify_all()

    @property
    def target(self):
        return f"{self.host}:{self.port}"

    def make_table(self, routes, generation=None):
        """A RouteTable from [(name, [(http, grpc)])] or [(name, [(http, grpc)], timeout, retries)]."""
        if generation is None:
            self.generation += 1
            generation = self.generation
        t = self.pb2.RouteTable(generation=generation)
        for r in routes:
            name, ups = r[0], r[1]
            timeout, retries = (r[2], r[3]) if len(r) > 2 else (-1, -1)
            route = t.routes.add(name=name, timeout_ms=timeout, retries=retries)
            for http, grpc_addr in ups:
                route.upstreams.add(http=http or "", grpc=grpc_addr or "")
        return t

    def push(self, routes, generation=None):
        """Sends a table to every subscriber, and to later ones first; returns its generation."""
        table = self.make_table(routes, generation)
        with self.cond:
            self.table = table
            self.sent.append(table)
            self.cond.notify_all()
        return table.generation

    def push_raw(self, data):
        """Sends data as one message, whatever it holds."""
        with self.cond:
            self.table = data
            self.sent.append(data)
            self.cond.notify_all()

    def wait_subscribers(self, count, guard):
        """Waits until count subscriptions were made in all (since this object was made)."""
        with self.cond:
            ok = self.cond.wait_for(lambda: len(self.subscribers) >= count, timeout=guard)
        assert ok, f"{len(self.subscribers)} subscription(s), not {count}"


class SchedulerProcess:
    """The fake in a process of its own, so that a test can kill it (SIGKILL) as an
    operator or a crash would: its sockets close with no gRPC goodbye."""

    def __init__(self, stubs_dir, port=0, python=sys.executable):
        self.proc = subprocess.Popen(
            [python, os.path.abspath(__file__), "--stubs", str(stubs_dir), "--port", str(port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        line = self.proc.stdout.readline()
        assert line.startswith("listening port="), f"fake scheduler did not start: {line!r}"
        self.port = int(line.split("=", 1)[1])
        self.target = f"127.0.0.1:{self.port}"

    def push(self, routes, generation):
        """Pushes [(name, [(http, grpc)])] as the table of that generation; returns it."""
        self.proc.stdin.write(json.dumps({"routes": routes, "generation": generation}) + "\n")
        line = self.proc.stdout.readline()
        assert line == f"pushed {generation}\n", line
        return generation

    def kill(self):
        self.proc.kill()
        self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()


def main():
    import argparse
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--stubs", required=True, help="a folder for the generated stubs")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    os.makedirs(args.stubs, exist_ok=True)
    s = FakeScheduler(*compile_control(args.stubs), port=args.port)
    print(f"listening port={s.port}", flush=True)
    for line in sys.stdin:
        doc = json.loads(line)
        s.push([tuple(r) for r in doc["routes"]], doc["generation"])
        print(f"pushed {doc['generation']}", flush=True)
    s.stop()


if __name__ == "__main__":
    main()
