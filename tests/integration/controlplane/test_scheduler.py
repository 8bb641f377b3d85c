"""seldon-scheduler driven by the seldon CLI, with agents and a router played by grpcio.

Two server replicas with different capabilities and memory register; manifests
applied with the CLI must put LOAD commands where the placement rules say, the
reported outcome must show in `seldon model status` and in the route table
pushed to routers, and a restart on the same --state-dir must bring everything
back without sending a LOAD for what the reconnecting agents still hold.
"""
import json
import subprocess

import pytest

from conftest import (GUARD, SCHEDULER, FakeAgent, RouteWatcher, Scheduler, cli, model_yaml,
                      routes_of, wait_status, write)

GI = 1 << 30
MI = 1 << 20

MLSERVER = ("mlserver", 0, ["sklearn", "mlserver", "xgboost"], 1 * GI, "127.0.0.1:19001",
            "127.0.0.1:19002")
TRITON = ("triton", 0, ["tensorflow", "onnx", "triton"], 2 * GI, "127.0.0.1:19011",
          "127.0.0.1:19012")


def agent(stubs, sched, spec, loaded=()):
    server, index, caps, mem, http, grpc_addr = spec
    return FakeAgent(stubs, sched, server, index, caps, mem, http, grpc_addr, loaded=loaded)


def load(sched, tmp_path, name, *more, **kw):
    r = cli("model", "load", "-f", write(tmp_path, f"{name}.yaml", model_yaml(name, **kw)),
            *more, scheduler=sched)
    assert r.code == 0, r
    return r


def expect_load(a, model, version=1):
    cmd = a.next_command()
    assert (cmd.op, cmd.model, cmd.version) == (cmd.LOAD, model, version), cmd
    return cmd


def test_models_land_where_the_rules_say(scheduler, stubs, tmp_path):
    a = agent(stubs, scheduler, MLSERVER)
    b = agent(stubs, scheduler, TRITON)
    router = RouteWatcher(stubs, scheduler)
    first = router.next_table()  # the current table, at once
    assert routes_of(first) == {}

    r = load(scheduler, tmp_path, "iris", requirements=["sklearn"], memory="100Mi")
    assert r.json() == {"resources": [{"kind": "Model", "name": "iris", "version": 1}]}
    cmd = expect_load(a, "iris")
    assert cmd.memory_bytes == 100 * MI
    spec = json.loads(cmd.spec)
    assert spec["kind"] == "Model" and spec["spec"]["storageUri"].endswith("iris-sklearn")

    load(scheduler, tmp_path, "tfsimple", requirements=["tensorflow"], memory="200Mi")
    tcmd = expect_load(b, "tfsimple")

    # Not available before the agent says so.
    doc = cli("model", "status", "iris", scheduler=scheduler).json()
    assert doc["versions"][0]["state"]["state"] != "ModelAvailable"

    a.report(cmd, "LOADED")
    doc = wait_status(scheduler, "iris", "ModelAvailable")
    v = doc["versions"][0]
    assert doc["modelName"] == "iris"
    assert v["version"] == 1 and v["serverName"] == "mlserver"
    assert v["state"]["availableReplicas"] == 1
    assert v["modelReplicaState"]["0"]["state"] == "Available"
    r = cli("model", "status", "iris", "-w", "ModelAvailable", scheduler=scheduler)
    assert r.code == 0, r

    t = router.wait_for(lambda t: "iris" in routes_of(t))
    assert routes_of(t)["iris"] == [(MLSERVER[4], MLSERVER[5])]

    b.report(tcmd, "LOADED")
    t = router.wait_for(lambda t: "tfsimple" in routes_of(t))
    assert routes_of(t)["tfsimple"] == [(TRITON[4], TRITON[5])]
    assert routes_of(t)["iris"] == [(MLSERVER[4], MLSERVER[5])]
    assert a.pending() == [] and b.pending() == []

    listed = cli("model", "list", scheduler=scheduler).json()["models"]
    assert {m["name"]: m["state"] for m in listed} == {"iris": "ModelAvailable",
                                                         "tfsimple": "ModelAvailable"}
    srv = cli("server", "status", "mlserver", scheduler=scheduler)
    assert srv.code == 0, srv
    res = srv.json()["resources"]
    assert len(res) == 1 and res[0]["connected"] and "iris_1" in res[0]["models"]
    assert res[0]["totalMemoryBytes"] == GI
    servers = cli("server", "list", scheduler=scheduler).json()["servers"]
    assert sorted(s["name"] for s in servers) == ["mlserver", "triton"]

    assert scheduler.metric("seldon_scheduler_agents_connected") == 2
    assert scheduler.metric("seldon_scheduler_routers_connected") == 1
    assert scheduler.metric("seldon_scheduler_commands_sent_total", op="load") == 2
    assert scheduler.metric("seldon_scheduler_models", state="ModelAvailable") == 2
    router.close()
    a.close()
    b.close()


def test_unsatisfiable_requirements_give_schedule_failed(scheduler, stubs, tmp_path):
    a = agent(stubs, scheduler, MLSERVER)
    b = agent(stubs, scheduler, TRITON)
    load(scheduler, tmp_path, "needs-gpu", requirements=["gpu"])
    doc = wait_status(scheduler, "needs-gpu", "ScheduleFailed")
    assert "gpu" in doc["versions"][0]["state"]["reason"], doc
    # Waiting for it to be available ends with -t, saying where it is and why.
    r = cli("model", "status", "needs-gpu", "-w", "ModelAvailable", "-t", "1",
            scheduler=scheduler)
    assert r.code == 1 and "ScheduleFailed" in r.err and "gpu" in r.err, r
    # Memory: sklearn is on mlserver only, which has 1 GiB.
    load(scheduler, tmp_path, "too-big", requirements=["sklearn"], memory="5Gi")
    doc = wait_status(scheduler, "too-big", "ScheduleFailed")
    assert "memory" in doc["versions"][0]["state"]["reason"].lower(), doc
    # Nothing was sent for either: the next command each agent sees is for a model that fits.
    load(scheduler, tmp_path, "iris", requirements=["sklearn"])
    expect_load(a, "iris")
    load(scheduler, tmp_path, "tf", requirements=["tensorflow"])
    expect_load(b, "tf")
    a.close()
    b.close()


def test_a_bad_manifest_is_refused_with_the_field_named(scheduler, stubs, tmp_path):
    bad = model_yaml("iris").replace("storageUri", "storagUri")
    path = write(tmp_path, "bad.yaml", bad)
    r = cli("model", "load", "-f", path, scheduler=scheduler)
    assert r.code == 1, r
    assert "storagUri" in r.err and "bad.yaml" in r.err, r
    assert r.out == ""
    # Checked locally: the scheduler never saw it.
    assert scheduler.metric("seldon_scheduler_apply_seconds_count") in (None, 0)
    # The scheduler refuses it too, naming the field.
    stub = stubs.rpc.SchedulerServiceStub(stubs.grpc.insecure_channel(scheduler.client_target))
    with pytest.raises(stubs.grpc.RpcError) as e:
        stub.Apply(stubs.pb.ApplyRequest(manifest=bad, source="bad.yaml"), timeout=GUARD)
    assert e.value.code() == stubs.grpc.StatusCode.INVALID_ARGUMENT
    assert "storagUri" in e.value.details()
    # A rule across fields.
    bounds = model_yaml("iris", replicas=3) + "  maxReplicas: 2\n"
    r = cli("load", "-f", write(tmp_path, "bounds.yaml", bounds), scheduler=scheduler)
    assert r.code == 1 and "eplicas" in r.err, r
    # No file, no scheduler, unknown model.
    r = cli("model", "load", "-f", str(tmp_path / "absent.yaml"), scheduler=scheduler)
    assert r.code == 1 and "absent.yaml" in r.err, r
    r = cli("model", "status", "nope", scheduler=scheduler)
    assert r.code == 1 and "nope" in r.err, r
    r = cli("model", "list", "--scheduler-host", "127.0.0.1:1")
    assert r.code == 1 and "127.0.0.1:1" in r.err, r


def test_unload(scheduler, stubs, tmp_path):
    a = agent(stubs, scheduler, MLSERVER)
    router = RouteWatcher(stubs, scheduler)
    load(scheduler, tmp_path, "iris", requirements=["sklearn"])
    a.report(expect_load(a, "iris"), "LOADED")
    router.wait_for(lambda t: "iris" in routes_of(t))
    r = cli("model", "unload", "iris", scheduler=scheduler)
    assert r.code == 0, r
    cmd = a.next_command()
    assert (cmd.op, cmd.model, cmd.version) == (cmd.UNLOAD, "iris", 1)
    router.wait_for(lambda t: "iris" not in routes_of(t))
    a.report(cmd, "UNLOADED")
    r = cli("model", "status", "iris", "-w", "ModelTerminated", scheduler=scheduler)
    assert r.code == 0, r
    assert r.json()["versions"][0]["state"]["state"] == "ModelTerminated"
    assert r.json()["deleted"] is True
    assert scheduler.metric("seldon_scheduler_commands_sent_total", op="unload") == 1
    r = cli("model", "unload", "never-loaded", scheduler=scheduler)
    assert r.code == 1 and "NOT_FOUND" in r.err, r
    router.close()
    a.close()


def test_a_disconnected_replica_has_its_models_moved(scheduler, stubs, tmp_path):
    caps = ["sklearn"]
    a0 = FakeAgent(stubs, scheduler, "mlserver", 0, caps, GI, "127.0.0.1:19101", "127.0.0.1:19102")
    a1 = FakeAgent(stubs, scheduler, "mlserver", 1, caps, GI, "127.0.0.1:19111", "127.0.0.1:19112")
    load(scheduler, tmp_path, "iris", requirements=["sklearn"])
    a0.report(expect_load(a0, "iris"), "LOADED")  # the lowest index first
    wait_status(scheduler, "iris", "ModelAvailable")
    a0.close()
    a1.report(expect_load(a1, "iris"), "LOADED")
    doc = wait_status(scheduler, "iris", "ModelAvailable")
    assert doc["versions"][0]["modelReplicaState"]["1"]["state"] == "Available", doc
    a1.close()


def test_events_stream(scheduler, stubs, tmp_path):
    a = agent(stubs, scheduler, MLSERVER)
    channel = stubs.grpc.insecure_channel(scheduler.client_target)
    stream = stubs.rpc.SchedulerServiceStub(channel).SubscribeEvents(stubs.pb.EventsRequest())
    stream.initial_metadata()
    load(scheduler, tmp_path, "iris", requirements=["sklearn"])
    a.report(expect_load(a, "iris"), "LOADED")
    seen = []
    for ev in stream:
        seen.append((ev.kind, ev.name, ev.version, ev.state))
        if ev.state == "ModelAvailable":
            break
    assert ("Model", "iris", 1, "ModelAvailable") in seen, seen
    stream.cancel()
    channel.close()
    a.close()


def test_restart_brings_everything_back_and_reloads_nothing(stubs, tmp_path):
    sched = Scheduler(tmp_path / "state")
    a = agent(stubs, sched, MLSERVER)
    b = agent(stubs, sched, TRITON)
    load(sched, tmp_path, "iris", requirements=["sklearn"], memory="100Mi")
    load(sched, tmp_path, "tfsimple", requirements=["tensorflow"])
    a.report(expect_load(a, "iris"), "LOADED")
    b.report(expect_load(b, "tfsimple"), "LOADED")
    wait_status(sched, "iris", "ModelAvailable")
    wait_status(sched, "tfsimple", "ModelAvailable")

    sched.restart()  # SIGTERM: clean exit 0; same --state-dir
    a.close()
    b.close()
    # Before any agent is back the resources are there, loaded as they were.
    doc = cli("model", "status", "iris", scheduler=sched).json()
    assert doc["versions"][0]["serverName"] == "mlserver"
    a = agent(stubs, sched, MLSERVER, loaded=[("iris", 1)])
    b = agent(stubs, sched, TRITON, loaded=[("tfsimple", 1)])
    wait_status(sched, "iris", "ModelAvailable")
    wait_status(sched, "tfsimple", "ModelAvailable")
    router = RouteWatcher(stubs, sched)
    t = router.wait_for(lambda t: {"iris", "tfsimple"} <= set(routes_of(t)))
    assert routes_of(t)["iris"] == [(MLSERVER[4], MLSERVER[5])]
    # Commands on a stream keep their order: had iris or tfsimple been sent
    # again, it would come before these.
    load(sched, tmp_path, "late", requirements=["sklearn"])
    expect_load(a, "late")
    load(sched, tmp_path, "late-tf", requirements=["tensorflow"])
    expect_load(b, "late-tf")
    assert sched.metric("seldon_scheduler_commands_sent_total", op="load") == 2
    router.close()
    a.close()
    b.close()
    sched.stop()


def test_files_with_several_kinds(scheduler, stubs, tmp_path):
    a = agent(stubs, scheduler, MLSERVER)
    text = ("apiVersion: mlops.seldon.io/v1alpha1\nkind: Server\nmetadata:\n  name: mlserver\n"
            "spec:\n  serverConfig: mlserver\n  replicas: 1\n---\n" +
            model_yaml("iris", requirements=["sklearn"]))
    path = write(tmp_path, "both.yaml", text)
    r = cli("model", "load", "-f", path, scheduler=scheduler)
    assert r.code == 1 and "Server" in r.err, r
    r = cli("load", "-f", path, scheduler=scheduler)
    assert r.code == 0, r
    assert r.json()["resources"] == [{"kind": "Server", "name": "mlserver", "version": 0},
                                     {"kind": "Model", "name": "iris", "version": 1}]
    a.report(expect_load(a, "iris"), "LOADED")
    r = cli("status", "-f", path, "-w", "ModelAvailable", scheduler=scheduler)
    assert r.code == 0, r
    docs = r.jsons()
    assert docs[0]["serverName"] == "mlserver" and docs[0]["expectedReplicas"] == 1
    assert docs[1]["modelName"] == "iris"
    assert docs[1]["versions"][0]["state"]["state"] == "ModelAvailable"
    a.close()


def test_environment_and_usage(scheduler):
    r = cli("model", "list", env={"SELDON_SCHEDULE_HOST": scheduler.client_target})
    assert r.code == 0 and r.json() == {"models": []}, r
    r = cli("--help")
    assert r.code == 0 and "model load" in r.out
    r = cli("model", "frobnicate")
    assert r.code == 2 and "frobnicate" in r.err
    r = cli("model", "load")
    assert r.code == 2 and "-f" in r.err
    r = cli("model", "infer", "x", "{}", "--header", "novalue")
    assert r.code == 2 and "novalue" in r.err


def test_after_a_restart_nothing_moves_until_the_known_agents_are_back(stubs, tmp_path):
    sched = Scheduler(tmp_path / "state")
    a = agent(stubs, sched, MLSERVER)
    b = agent(stubs, sched, TRITON)
    load(sched, tmp_path, "iris", requirements=["sklearn"])
    a.report(expect_load(a, "iris"), "LOADED")
    wait_status(sched, "iris", "ModelAvailable")
    sched.restart()
    a.close()
    b.close()
    assert sched.metric("seldon_scheduler_ready") == 0
    # A router subscribing meanwhile gets the stored routes.
    router = RouteWatcher(stubs, sched)
    assert routes_of(router.next_table())["iris"] == [(MLSERVER[4], MLSERVER[5])]
    a = agent(stubs, sched, MLSERVER, loaded=[("iris", 1)])
    # Accepted and stored, but not placed while triton is awaited.
    load(sched, tmp_path, "late", requirements=["sklearn"])
    assert sched.metric("seldon_scheduler_ready") == 0
    # The scheduler answers on one loop: had a command gone out, these would show it.
    assert sched.metric("seldon_scheduler_commands_sent_total", op="load") in (None, 0)
    late = cli("model", "status", "late", scheduler=sched).json()["versions"][0]
    assert late["modelReplicaState"] == {} and late["state"]["state"] != "ModelAvailable"
    b = agent(stubs, sched, TRITON)
    expect_load(a, "late")  # the first command after a restart
    assert sched.metric("seldon_scheduler_ready") == 1
    router.close()
    a.close()
    b.close()
    sched.stop()


def test_a_second_subscribe_replaces_the_first_stream(scheduler, stubs, tmp_path):
    a = agent(stubs, scheduler, MLSERVER)
    load(scheduler, tmp_path, "iris", requirements=["sklearn"])
    a.report(expect_load(a, "iris"), "LOADED")
    wait_status(scheduler, "iris", "ModelAvailable")
    again = agent(stubs, scheduler, MLSERVER, loaded=[("iris", 1)])
    with pytest.raises(AssertionError, match="ABORTED"):
        a.next_command()
    # Not a disconnect: iris stays where it is, and the new stream gets the next command.
    load(scheduler, tmp_path, "late", requirements=["sklearn"])
    expect_load(again, "late")
    doc = wait_status(scheduler, "iris", "ModelAvailable")
    assert doc["versions"][0]["modelReplicaState"]["0"]["state"] == "Available"
    assert scheduler.metric("seldon_scheduler_agents_connected") == 1
    a.close()
    again.close()


def test_bad_requests_are_refused_and_the_scheduler_lives_on(scheduler, stubs, tmp_path):
    grpc = stubs.grpc
    channel = grpc.insecure_channel(scheduler.client_target)
    agents = grpc.insecure_channel(scheduler.agent_target)

    def raw(ch, path, payload):
        call = ch.unary_unary(path, request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as e:
            call(payload, timeout=GUARD)
        return e.value

    svc = "/seldon.control.v1.SchedulerService/"
    junk = [b"\xff" * 7, b"\x0a\xff\xff\xff\xff\x0f", bytes(range(256)), b"\x12\x05abc"]
    for payload in junk:
        for method in ("Apply", "Unload", "ModelStatus", "ServerStatus"):
            e = raw(channel, svc + method, payload)
            assert e.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND), \
                (method, payload, e)
        e = raw(agents, "/seldon.control.v1.AgentService/Report", payload)
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
    # A method of another service, on this port.
    e = raw(channel, "/seldon.control.v1.AgentService/Report", b"")
    assert e.code() == grpc.StatusCode.UNIMPLEMENTED
    # An agent without a server name; a report for a replica nobody registered.
    e = raw(agents, "/seldon.control.v1.AgentService/Subscribe",
            stubs.pb.AgentSubscribeRequest().SerializeToString())
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "replica.server" in e.details()
    stub = stubs.rpc.AgentServiceStub(agents)
    with pytest.raises(grpc.RpcError) as e:
        stub.Report(stubs.pb.AgentEvent(server="ghost", index=3, model="m", version=1,
                                        type=stubs.pb.AgentEvent.LOADED), timeout=GUARD)
    assert e.value.code() != grpc.StatusCode.OK
    # Unload of an unknown kind names the field.
    s = stubs.rpc.SchedulerServiceStub(channel)
    with pytest.raises(grpc.RpcError) as e:
        s.Unload(stubs.pb.UnloadRequest(kind="Gadget", name="x"), timeout=GUARD)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "kind" in e.value.details()
    # Still serving.
    r = cli("model", "list", scheduler=scheduler)
    assert r.code == 0 and r.json() == {"models": []}, r
    channel.close()
    agents.close()


def test_versions_roll_out_and_replicas_change_in_place(scheduler, stubs, tmp_path):
    a0 = FakeAgent(stubs, scheduler, "mlserver", 0, ["sklearn"], GI, "127.0.0.1:19201",
                   "127.0.0.1:19202")
    a1 = FakeAgent(stubs, scheduler, "mlserver", 1, ["sklearn"], GI, "127.0.0.1:19211",
                   "127.0.0.1:19212")
    router = RouteWatcher(stubs, scheduler)
    load(scheduler, tmp_path, "iris", requirements=["sklearn"])
    a0.report(expect_load(a0, "iris", 1), "LOADED")
    wait_status(scheduler, "iris", "ModelAvailable")
    # Replicas only: the same version, one more replica.
    r = load(scheduler, tmp_path, "iris", requirements=["sklearn"], replicas=2)
    assert r.json()["resources"][0]["version"] == 1
    a1.report(expect_load(a1, "iris", 1), "LOADED")
    t = router.wait_for(lambda t: len(routes_of(t).get("iris", [])) == 2)
    assert sorted(routes_of(t)["iris"]) == [("127.0.0.1:19201", "127.0.0.1:19202"),
                                            ("127.0.0.1:19211", "127.0.0.1:19212")]
    # A spec change: version 2 beside version 1 until it is available.
    r = load(scheduler, tmp_path, "iris", requirements=["sklearn"], replicas=2,
             uri="gs://seldon-models/scv2/samples/mlserver_1.3.5/iris-sklearn-v2")
    assert r.json()["resources"][0]["version"] == 2
    new = [expect_load(a, "iris", 2) for a in (a0, a1)]
    assert json.loads(new[0].spec)["spec"]["storageUri"].endswith("iris-sklearn-v2")
    doc = cli("model", "status", "iris", scheduler=scheduler).json()
    assert [v["version"] for v in doc["versions"]] == [2, 1]
    assert doc["versions"][1]["state"]["state"] == "ModelAvailable"
    assert a0.pending() == [] and a1.pending() == []  # version 1 stays while 2 loads
    for a, cmd in zip((a0, a1), new):
        a.report(cmd, "LOADED")
    wait_status(scheduler, "iris", "ModelAvailable")
    old = [a.next_command() for a in (a0, a1)]
    assert [(c.op, c.model, c.version) for c in old] == [(old[0].UNLOAD, "iris", 1)] * 2
    r = cli("model", "status", "iris", "-w", "ModelAvailable", scheduler=scheduler)
    assert r.code == 0 and r.json()["versions"][0]["version"] == 2, r
    router.close()
    a0.close()
    a1.close()


def test_one_scheduler_per_state_folder(scheduler):
    proc = subprocess.run([SCHEDULER, "--state-dir", scheduler.state_dir, "--host", "127.0.0.1",
                           "--client-port", "0", "--agent-port", "0", "--route-port", "0",
                           "--metrics-port", "-1"], capture_output=True, timeout=60)
    assert proc.returncode == 1
    assert b"another seldon-scheduler uses this state folder" in proc.stderr
    r = cli("model", "list", scheduler=scheduler)  # the first one serves on
    assert r.code == 0, r
    assert subprocess.run([SCHEDULER, "--help"], capture_output=True).stdout.startswith(
        b"usage: seldon-scheduler")


def test_a_replica_that_never_comes_back_is_replaced_after_the_ready_timeout(stubs, tmp_path):
    sched = Scheduler(tmp_path / "state", "--ready-timeout", "1")
    caps = ["sklearn"]
    a0 = FakeAgent(stubs, sched, "mlserver", 0, caps, GI, "127.0.0.1:19301", "127.0.0.1:19302")
    a1 = FakeAgent(stubs, sched, "mlserver", 1, caps, GI, "127.0.0.1:19311", "127.0.0.1:19312")
    load(sched, tmp_path, "iris", requirements=["sklearn"])
    a0.report(expect_load(a0, "iris"), "LOADED")
    wait_status(sched, "iris", "ModelAvailable")
    sched.restart()
    a0.close()
    a1.close()
    a1 = FakeAgent(stubs, sched, "mlserver", 1, caps, GI, "127.0.0.1:19311", "127.0.0.1:19312")
    # Replica 0 never returns: once the timeout passes, iris goes to replica 1.
    cmd = expect_load(a1, "iris")
    assert sched.metric("seldon_scheduler_ready") == 1
    a1.report(cmd, "LOADED")
    doc = wait_status(sched, "iris", "ModelAvailable")
    assert doc["versions"][0]["modelReplicaState"]["1"]["state"] == "Available", doc
    a1.close()
    sched.stop()
