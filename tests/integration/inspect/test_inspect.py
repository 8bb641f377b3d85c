"""`seldon pipeline inspect` against seldon-kafka-dev: records produced by kcat
(protobuf values from the Python stubs, Seldon's keys and headers) onto pipeline
and model topics; the CLI's output is checked against what kcat reads back."""
import base64
import json
import os
import tempfile

import numpy as np
import pytest
from google.protobuf import json_format

from conftest import (HOST, KafkaDev, Scheduler, cli, consume_all, g, inspect_lines,  # noqa: F401
                      produce)

P = "tfsimples"
PIPE_IN = f"seldon.default.pipeline.{P}.inputs"
PIPE_OUT = f"seldon.default.pipeline.{P}.outputs"
M_IN = "seldon.default.model.{}.inputs"
M_OUT = "seldon.default.model.{}.outputs"

PIPELINE_YAML = f"""apiVersion: mlops.seldon.io/v1alpha1
kind: Pipeline
metadata:
  name: {P}
spec:
  steps:
    - name: tfsimple1
    - name: tfsimple2
      inputs:
      - tfsimple1
      tensorMap:
        tfsimple1.outputs.OUTPUT0: INPUT0
        tfsimple1.outputs.OUTPUT1: INPUT1
  output:
    steps:
    - tfsimple2
"""

NP = {"BOOL": np.bool_, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
      "INT64": np.int64, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
      "UINT64": np.uint64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64}
FIELD = {"BOOL": "boolContents", "INT8": "intContents", "INT16": "intContents",
         "INT32": "intContents", "INT64": "int64Contents", "UINT8": "uintContents",
         "UINT16": "uintContents", "UINT32": "uintContents", "UINT64": "uint64Contents",
         "FP16": "fp32Contents", "FP32": "fp32Contents", "FP64": "fp64Contents"}


def expected(msg):
    """The JSON that upstream's inspect shows for msg: protobuf's JSON mapping, raw
    contents turned into the typed contents of the tensors without contents."""
    d = json_format.MessageToDict(msg)
    request = hasattr(msg, "raw_input_contents")
    raw_key = "rawInputContents" if request else "rawOutputContents"
    tensors = d.get("inputs" if request else "outputs", [])
    raws = list(msg.raw_input_contents if request else msg.raw_output_contents)
    for t in tensors:
        if not raws:
            break
        if "contents" in t:
            continue
        raw = raws.pop(0)
        if t["datatype"] == "BYTES":
            items, at = [], 0
            while at < len(raw):
                n = int.from_bytes(raw[at:at + 4], "little")
                items.append(base64.b64encode(raw[at + 4:at + 4 + n]).decode())
                at += 4 + n
            t["contents"] = {"bytesContents": items}
            continue
        vals = np.frombuffer(raw, dtype=NP[t["datatype"]])
        field = FIELD[t["datatype"]]
        if field in ("int64Contents", "uint64Contents"):
            t["contents"] = {field: [str(int(v)) for v in vals]}
        elif t["datatype"] == "BOOL":
            t["contents"] = {field: [bool(v) for v in vals]}
        elif field.startswith("fp"):
            t["contents"] = {field: [float(v) for v in vals]}
        else:
            t["contents"] = {field: [int(v) for v in vals]}
    d.pop(raw_key, None)
    return d


def request(g, rid, x):
    """A ModelInferRequest with raw contents: FP32 INPUT0, INT32 INPUT1, BYTES names."""
    r = g.pb2.ModelInferRequest(id=rid)
    a = g.pb2.ModelInferRequest.InferInputTensor(name="INPUT0", datatype="FP32", shape=[1, 4])
    b = g.pb2.ModelInferRequest.InferInputTensor(name="INPUT1", datatype="INT32", shape=[1, 4])
    c = g.pb2.ModelInferRequest.InferInputTensor(name="names", datatype="BYTES", shape=[2])
    r.inputs.extend([a, b, c])
    r.raw_input_contents.append(np.asarray(x, dtype=np.float32).tobytes())
    r.raw_input_contents.append(np.asarray([1, -2, 3, -4], dtype=np.int32).tobytes())
    r.raw_input_contents.append(b"".join(len(s).to_bytes(4, "little") + s for s in [b"ab", b"c"]))
    r.parameters["tag"].string_param = "t1"
    r.parameters["n"].int64_param = 5
    return r


def response(g, rid, model, x):
    """A ModelInferResponse: OUTPUT0 typed (FP32), OUTPUT1 raw (INT64), a parameter."""
    r = g.pb2.ModelInferResponse(model_name=model, model_version="1", id=rid)
    o0 = g.pb2.ModelInferResponse.InferOutputTensor(name="OUTPUT0", datatype="FP32", shape=[1, 4])
    o0.contents.fp32_contents.extend([float(v) for v in x])
    o1 = g.pb2.ModelInferResponse.InferOutputTensor(name="OUTPUT1", datatype="INT64", shape=[1, 2])
    r.outputs.extend([o0, o1])
    r.raw_output_contents.append(np.asarray([7, -(1 << 40)], dtype=np.int64).tobytes())
    r.parameters["flag"].bool_param = True
    return r


def headers(rid, pipeline=P):
    return [("pipeline", pipeline), ("x-request-id", rid), ("x-pipeline-version", "1")]


@pytest.fixture(scope="module")
def world(g, tmp_path_factory):
    """A broker with records of two requests of P (and one of another pipeline sharing
    tfsimple1) on the pipeline's and the steps' topics, and a scheduler that has P."""
    broker = KafkaDev("--topic", PIPE_IN + ":2", "--topic", M_IN.format("tfsimple1") + ":2")
    sched = Scheduler(tmp_path_factory.mktemp("state"))
    b = broker.bootstrap
    reqs = {}
    try:
        yml = tmp_path_factory.mktemp("p") / "p.yaml"
        yml.write_text(PIPELINE_YAML)
        cli("pipeline", "load", "-f", yml, "--scheduler-host", sched.target)
        for i, rid in enumerate(["cg5g6ogfh5ss73a44vv0", "cg5g6ogfh5ss73a44vv1"]):
            key = f"{i}.{P}.{rid}"
            x = [1.5 + i, 2, 3.25, -4]
            reqs[rid] = x
            produce(b, PIPE_IN, request(g, rid, x).SerializeToString(), key=key,
                    headers=headers(rid), partition=i)
            produce(b, M_IN.format("tfsimple1"), request(g, rid, x).SerializeToString(),
                    key=key, headers=headers(rid), partition=i)
            produce(b, M_OUT.format("tfsimple1"),
                    response(g, rid, "tfsimple1_1", x).SerializeToString(), key=key,
                    headers=headers(rid) + [("x-seldon-route", ":tfsimple1_1:")])
            produce(b, M_IN.format("tfsimple2"), request(g, rid, x).SerializeToString(),
                    key=key, headers=headers(rid))
            produce(b, M_OUT.format("tfsimple2"),
                    response(g, rid, "tfsimple2_1", x).SerializeToString(), key=key,
                    headers=headers(rid))
            produce(b, PIPE_OUT, response(g, rid, "", x).SerializeToString(), key=key,
                    headers=headers(rid))
        # Another pipeline's record on the shared model topic: not P's.
        produce(b, M_IN.format("tfsimple1"), request(g, "other1", [9, 9, 9, 9]).SerializeToString(),
                key=f"0.other.other1", headers=headers("other1", "other"), partition=0)
        yield {"broker": b, "sched": sched.target, "reqs": reqs}
    finally:
        sched.stop()
        broker.stop()


def kafka_args(world, *more):
    return ["--kafka-broker", world["broker"], "--scheduler-host", world["sched"], *more]


def last_per_partition(recs, n):
    """What --offset n reads: the last n records of each partition."""
    out = []
    for p in sorted({r.partition for r in recs}):
        out += sorted((r for r in recs if r.partition == p), key=lambda r: r.offset)[-n:]
    return out


def msg_of(g, topic, value):
    m = g.pb2.ModelInferResponse() if topic.endswith(".outputs") else g.pb2.ModelInferRequest()
    m.ParseFromString(value)
    return m


def check_rows(g, rows, topic, recs):
    """rows (the CLI's lines of topic) show exactly recs (kcat's), keys and values."""
    mine = [r for r in rows if r[0] == topic]
    assert sorted(r[1] for r in mine) == sorted(r.key for r in recs), (mine, recs)
    by_key = {r.key: r for r in recs}
    for _, key, value, _ in mine:
        assert value == expected(msg_of(g, topic, by_key[key].value)), key


def test_pipeline_inputs_last_record_per_partition(g, world):
    out = cli("pipeline", "inspect", f"{P}.inputs", *kafka_args(world)).stdout
    rows = inspect_lines(out)
    recs = consume_all(world["broker"], PIPE_IN)
    assert len(recs) == 2
    check_rows(g, rows, PIPE_IN, last_per_partition(recs, 1))
    # Raw contents are shown decoded, as upstream's CLI shows them.
    value = rows[0][2]
    assert "rawInputContents" not in value
    assert value["inputs"][0]["contents"]["fp32Contents"][1:] == [2, 3.25, -4]
    assert value["inputs"][1]["contents"]["intContents"] == [1, -2, 3, -4]
    assert value["inputs"][2]["contents"]["bytesContents"] == ["YWI=", "Yw=="]
    assert value["inputs"][0]["shape"] == ["1", "4"]  # int64 as strings, as protojson
    assert value["parameters"] == {"n": {"int64Param": "5"}, "tag": {"stringParam": "t1"}}
    # The exact text of one line: topic, key and compact JSON separated by tabs.
    line = out.splitlines()[0]
    assert line.startswith(PIPE_IN + "\t" + rows[0][1] + '\t{"id":"')


def test_whole_pipeline_lists_steps_then_pipeline(g, world):
    out = cli("pipeline", "inspect", P, *kafka_args(world, "--offset", "10")).stdout
    rows = inspect_lines(out)
    order = [M_IN.format("tfsimple1"), M_OUT.format("tfsimple1"), M_IN.format("tfsimple2"),
             M_OUT.format("tfsimple2"), PIPE_IN, PIPE_OUT]
    seen = []
    for r in rows:
        if not seen or seen[-1] != r[0]:
            seen.append(r[0])
    assert seen == order
    for topic in order:
        # Model topics are shared: only records whose pipeline header is P.
        recs = [r for r in consume_all(world["broker"], topic) if r.header("pipeline") == P]
        check_rows(g, rows, topic, recs)
    assert "other1" not in out


def test_step_outputs_verbose_headers(g, world):
    out = cli("pipeline", "inspect", f"{P}.tfsimple1.outputs", "-v", "--offset", "5",
              *kafka_args(world)).stdout
    rows = inspect_lines(out)
    recs = consume_all(world["broker"], M_OUT.format("tfsimple1"))
    check_rows(g, rows, M_OUT.format("tfsimple1"), recs)
    by_key = {r.key: r for r in recs}
    for _, key, value, hdrs in rows:
        want = "\t".join(f"{k}=[{v}]" for k, v in sorted(by_key[key].headers))
        assert hdrs == want
        assert value["modelName"] == "tfsimple1_1"
        assert value["outputs"][1]["contents"]["int64Contents"] == ["7", str(-(1 << 40))]
        assert value["parameters"] == {"flag": {"boolParam": True}}


def test_request_id_and_tensor(g, world):
    rid = "cg5g6ogfh5ss73a44vv1"
    out = cli("pipeline", "inspect", f"{P}.tfsimple2.outputs.OUTPUT1", "--request-id", rid,
              "--offset", "10", *kafka_args(world)).stdout
    rows = inspect_lines(out)
    [rec] = [r for r in consume_all(world["broker"], M_OUT.format("tfsimple2"))
             if r.header("x-request-id") == rid]
    assert [(r[0], r[1]) for r in rows] == [(M_OUT.format("tfsimple2"), rec.key)]
    whole = expected(msg_of(g, M_OUT.format("tfsimple2"), rec.value))
    assert rows[0][2] == whole["outputs"][1]
    assert rows[0][2] == {"name": "OUTPUT1", "datatype": "INT64", "shape": ["1", "2"],
                          "contents": {"int64Contents": ["7", str(-(1 << 40))]}}
    # An input tensor of a step's inputs, matched by the request id inside the key.
    out = cli("pipeline", "inspect", f"{P}.tfsimple1.inputs.INPUT0", "--request-id", rid,
              "--offset", "10", *kafka_args(world)).stdout
    [(topic, key, value, _)] = inspect_lines(out)
    assert key.endswith("." + rid)
    assert value["contents"]["fp32Contents"] == world["reqs"][rid]


def test_json_format(g, world):
    out = cli("pipeline", "inspect", f"{P}.tfsimple1", "--format", "json", "-v", "--offset", "10",
              *kafka_args(world)).stdout
    doc = json.loads(out)
    assert [t["name"] for t in doc["topics"]] == [M_IN.format("tfsimple1"),
                                                 M_OUT.format("tfsimple1")]
    for t in doc["topics"]:
        recs = [r for r in consume_all(world["broker"], t["name"]) if r.header("pipeline") == P]
        by_key = {r.key: r for r in recs}
        assert sorted(m["key"] for m in t["msgs"]) == sorted(by_key)
        for m in t["msgs"]:
            rec = by_key[m["key"]]
            assert m["value"] == expected(msg_of(g, t["name"], rec.value))
            want = {}
            for k, v in rec.headers:
                want.setdefault(k, []).append(v)
            assert m["headers"] == want
    # Without -v the headers are null, as upstream; a topic without records has null msgs.
    out = cli("pipeline", "inspect", f"{P}.tfsimple1.inputs", "--format", "json",
              "--request-id", "nobody", *kafka_args(world)).stdout
    assert json.loads(out) == {"topics": [{"name": M_IN.format("tfsimple1"), "msgs": None}]}
    out = cli("pipeline", "inspect", f"{P}.outputs", "--format", "json", *kafka_args(world)).stdout
    assert all(m["headers"] is None for m in json.loads(out)["topics"][0]["msgs"])


def test_offset_counts_per_partition(g, world):
    b = world["broker"]
    topic = M_OUT.format("offsets")
    for i in range(5):
        produce(b, topic, response(g, f"o{i}", "offsets_1", [i, 0, 0, 0]).SerializeToString(),
                key=f"{i % 2}.{P}.o{i}", headers=headers(f"o{i}"), partition=i % 2)
    recs = consume_all(b, topic)
    assert len(recs) == 5
    for n in (1, 2, 3):
        # "offsets" is no step of P: with the scheduler away the step cannot be checked
        # and the topic is read (it has data, so no word about the check).
        out = cli("pipeline", "inspect", f"{P}.offsets.outputs", "--offset", n, "--kafka-broker",
                  b, "--scheduler-host", f"{HOST}:1", "--kafka-prefix", "seldon", "--namespace",
                  "default")
        rows = inspect_lines(out.stdout)
        want = last_per_partition(recs, n)
        assert sorted(r[1] for r in rows) == sorted(r.key for r in want)
        assert "could not be checked" not in out.stderr


def test_unknown_step_named_by_the_scheduler(world):
    out = cli("pipeline", "inspect", f"{P}.nostep", *kafka_args(world), check=False)
    assert out.returncode == 1
    assert "pipeline tfsimples has no step nostep (steps: tfsimple1 tfsimple2)" in out.stderr
    out = cli("pipeline", "inspect", "nopipe.inputs.x.y", *kafka_args(world), check=False)
    assert out.returncode == 1 and "nopipe.inputs" in out.stderr
    out = cli("pipeline", "inspect", f"{P}.tfsimple1.sideways", *kafka_args(world), check=False)
    assert out.returncode == 1 and "'sideways' is neither inputs nor outputs" in out.stderr
    out = cli("pipeline", "inspect", "nopipe.s1", *kafka_args(world), check=False)
    assert out.returncode == 1 and "pipeline nopipe: not found on the scheduler" in out.stderr


def test_unknown_step_without_scheduler_says_no_data(world):
    out = cli("pipeline", "inspect", f"{P}.nostep", "--kafka-broker", world["broker"],
              "--scheduler-host", f"{HOST}:1", check=False)
    assert out.returncode == 1
    assert "seldon.default.model.nostep.inputs: no such topic: no data" in out.stderr
    assert "could not be checked" in out.stderr and f"{HOST}:1" in out.stderr
    # The whole pipeline with the scheduler away: its own topics, and a word on why.
    out = cli("pipeline", "inspect", P, "--kafka-broker", world["broker"], "--scheduler-host",
              f"{HOST}:1")
    assert {r[0] for r in inspect_lines(out.stdout)} == {PIPE_IN, PIPE_OUT}
    assert "the steps are unknown" in out.stderr


def test_broker_from_environment_and_config_file(world):
    out = cli("pipeline", "inspect", f"{P}.inputs", "--scheduler-host", world["sched"],
              env={"SELDON_KAFKA_BROKER": world["broker"]})
    assert {r[0] for r in inspect_lines(out.stdout)} == {PIPE_IN}
    with tempfile.NamedTemporaryFile("w", suffix=".properties", delete=False) as f:
        f.write(f"# properties\n\nbootstrap.servers = {world['broker']}\n")
        path = f.name
    try:
        out = cli("pipeline", "inspect", f"{P}.inputs", "--kafka-config-file", path,
                  env={"SELDON_KAFKA_BROKER": f"{HOST}:1"})
        assert {r[0] for r in inspect_lines(out.stdout)} == {PIPE_IN}
    finally:
        os.unlink(path)
    out = cli("pipeline", "inspect", f"{P}.inputs", "--kafka-broker", world["broker"],
              "--kafka-config", "no.such.property=1", check=False)
    assert out.returncode == 2 and "no.such.property" in out.stderr


def test_broker_away_ends_within_the_timeout():
    out = cli("pipeline", "inspect", f"{P}.inputs", "--kafka-broker", f"{HOST}:1", "-t", "2",
              check=False)
    assert out.returncode == 1
    assert f"Kafka at {HOST}:1" in out.stderr


def test_prefix_and_namespace(g, world):
    b = world["broker"]
    topic = f"acme.ns1.pipeline.{P}.outputs"
    produce(b, topic, response(g, "pn1", "", [1, 2, 3, 4]).SerializeToString(),
            key=f"0.{P}.pn1", headers=headers("pn1"))
    out = cli("pipeline", "inspect", f"{P}.outputs", "--kafka-broker", b, "--kafka-prefix", "acme",
              "--kafka-namespace", "ns1")
    [(t, key, value, _)] = inspect_lines(out.stdout)
    assert (t, key) == (topic, f"0.{P}.pn1")
    assert value == expected(msg_of(g, topic, consume_all(b, topic)[0].value))
    out = cli("pipeline", "inspect", f"{P}.outputs", "--kafka-broker", b, "--kafka-prefix", "a/b",
              check=False)
    assert out.returncode == 2 and "--kafka-prefix" in out.stderr
