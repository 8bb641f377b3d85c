"""Tests of the Python bindings against the real libseldon: the OIP message, its codecs,
zero-copy numpy access and error reporting."""

import ctypes
import gc
import json
import struct
import threading
import weakref

import numpy as np
import pytest

import seldon
from seldon import Message, SeldonError

FIXED = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
         "FP16", "FP32", "FP64"]
ALL = FIXED + ["BYTES"]
NP = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
    "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32,
    "INT64": np.int64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
}
UINT_OF = {np.dtype(np.float16): np.uint16, np.dtype(np.float32): np.uint32,
           np.dtype(np.float64): np.uint64}

REQUEST = {
    "id": "req-1",
    "parameters": {"flag": True, "count": 3, "ratio": 0.25, "note": "h\u00e9llo"},
    "inputs": [
        {"name": "a", "shape": [2, 3], "datatype": "FP32",
         "parameters": {"content_type": "np", "scale": 2},
         "data": [[1.5, 2, 3], [4, 5, -6.25]]},
        {"name": "b", "shape": [3], "datatype": "INT64", "data": [1, -2, 9007199254740993]},
        {"name": "c", "shape": [2], "datatype": "BYTES", "data": ["h\u00e9llo", "\u65e5\u672c"]},
        {"name": "d", "shape": [2, 2], "datatype": "BOOL", "data": [True, False, False, True]},
    ],
    "outputs": [{"name": "out", "parameters": {"binary_data": True}}, {"name": "other"}],
}


def jbody(obj):
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


# --- helpers ----------------------------------------------------------------


def random_array(rng, datatype, shape, text_only=False):
    """Random values covering each type's whole range (floats from random bits, no NaN)."""
    n = int(np.prod(shape))
    if datatype == "BYTES":
        items = []
        for _ in range(n):
            k = int(rng.integers(0, 12))
            if text_only:
                cps = [int(c) for c in rng.integers(0x20, 0x3000, size=k)]
                cps = [c for c in cps if not 0xD800 <= c <= 0xDFFF]
                items.append("".join(map(chr, cps)).encode("utf-8"))
            else:
                items.append(rng.integers(0, 256, size=k, dtype=np.uint8).tobytes())
        arr = np.empty(n, dtype=object)
        arr[:] = items
        return arr.reshape(shape)
    dt = np.dtype(NP[datatype])
    if dt.kind == "b":
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        a = rng.integers(info.min, info.max, size=n, dtype=dt, endpoint=True)
        a[:2] = [info.min, info.max][: min(n, 2)]
        return a.reshape(shape)
    u = UINT_OF[dt]
    a = rng.integers(0, np.iinfo(u).max, size=n, dtype=u, endpoint=True).view(dt)
    a[np.isnan(a)] = 0
    specials = np.array([np.inf, -np.inf, -0.0, np.finfo(dt).tiny / 4, np.finfo(dt).max], dtype=dt)
    a[: min(n, len(specials))] = specials[: min(n, len(specials))]
    return a.reshape(shape)


def assert_same(got, want):
    """Equal dtype, shape and values; floats compared bit for bit."""
    got = np.asarray(got)
    want = np.asarray(want)
    assert got.shape == want.shape
    if want.dtype == object:
        assert got.dtype == object
        assert [bytes(x) for x in got.ravel()] == [bytes(x) for x in want.ravel()]
        return
    assert got.dtype == want.dtype
    if want.dtype in UINT_OF:
        u = UINT_OF[want.dtype]
        assert np.array_equal(got.view(u), want.view(u))
    else:
        assert np.array_equal(got, want)


def snapshot(msg):
    """Everything a message carries, as plain Python values."""
    tensors = []
    for t in msg.tensors:
        a = t.numpy()
        value = [bytes(x) for x in a.ravel()] if t.datatype == "BYTES" else a.tobytes()
        tensors.append((t.name, t.datatype, t.shape, t.parameters, value))
    return {
        "kind": msg.kind,
        "id": msg.id,
        "model_name": msg.model_name,
        "model_version": msg.model_version,
        "parameters": msg.parameters,
        "tensors": tensors,
        "outputs": msg.requested_outputs,
    }


def via_json(msg, binary_all=False):
    body, json_len = msg.encode_json_ext(binary_all=binary_all)
    assert 0 < json_len <= len(body)
    return Message.decode_json(body, kind=msg.kind, json_len=json_len if json_len < len(body) else 0)


def via_pb(msg, typed=False):
    return Message.decode_pb(msg.encode_pb(typed=typed), kind=msg.kind)


def expect_error(code_name, fragment, fn, *args, **kwargs):
    with pytest.raises(SeldonError) as ei:
        fn(*args, **kwargs)
    e = ei.value
    assert e.name == code_name, str(e)
    assert e.code < 0 and SeldonError(e.code).name == code_name
    assert fragment in e.message, str(e)
    assert code_name in str(e)
    return e


def pb_varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_field(num, payload):
    """A length-delimited protobuf field."""
    return pb_varint(num << 3 | 2) + pb_varint(len(payload)) + payload


# --- library, datatypes -------------------------------------------------------


def test_version():
    v = seldon.version()
    parts = [int(x) for x in v.split(".")]
    assert len(parts) == 3
    assert seldon.version_number() == parts[0] * 10000 + parts[1] * 100 + parts[2]


def test_datatype_helpers():
    for name in ALL:
        dt = seldon.datatype_from_name(name)
        assert dt == getattr(seldon, "DT_" + name)
        assert seldon.datatype_name(dt) == name
        want = 0 if name == "BYTES" else np.dtype(NP[name]).itemsize
        assert seldon.datatype_size(dt) == want
        assert seldon.datatype_size(name) == want
    assert seldon.datatype_from_name("fp32") == seldon.DT_INVALID
    assert seldon.datatype_from_name("FP8") == seldon.DT_INVALID
    assert seldon.datatype_name(99) == "INVALID"
    assert seldon.datatype_size(99) == 0
    assert seldon.numpy_dtype("FP16") == np.float16
    assert seldon.numpy_dtype("BOOL") == np.bool_
    assert seldon.numpy_dtype(seldon.DT_BYTES) == object


# --- decoding JSON ----------------------------------------------------------------


def test_decode_json_request():
    msg = Message.decode_json(jbody(REQUEST))
    assert msg.kind == "request"
    assert msg.id == "req-1"
    p = msg.parameters
    assert p == {"flag": True, "count": 3, "ratio": 0.25, "note": "h\u00e9llo"}
    assert type(p["flag"]) is bool and type(p["count"]) is int and type(p["ratio"]) is float

    assert [t.name for t in msg.tensors] == ["a", "b", "c", "d"]
    a = msg["a"]
    assert (a.datatype, a.shape, a.count, a.nbytes) == ("FP32", (2, 3), 6, 24)
    assert a.parameters == {"content_type": "np", "scale": 2}
    assert_same(a.numpy(), np.array([[1.5, 2, 3], [4, 5, -6.25]], dtype=np.float32))
    # An int64 beyond 2**53 must not pass through a double.
    assert_same(msg["b"].numpy(), np.array([1, -2, 9007199254740993], dtype=np.int64))
    c = msg["c"].numpy()
    assert c.dtype == object and c.shape == (2,)
    assert list(c) == ["h\u00e9llo".encode(), "\u65e5\u672c".encode()]
    assert_same(msg["d"].numpy(), np.array([[True, False], [False, True]]))

    outs = msg.requested_outputs
    assert [o.name for o in outs] == ["out", "other"]
    assert outs[0].parameters == {"binary_data": True}
    assert outs[1].parameters == {}

    assert "a" in msg and "zz" not in msg
    assert len(msg) == 4 and msg[-1].name == "d"
    with pytest.raises(KeyError):
        msg["zz"]
    with pytest.raises(IndexError):
        msg[4]


def test_decode_json_response():
    body = {
        "model_name": "mnist", "model_version": "7", "id": "r",
        "parameters": {"took_ms": 1.5},
        "outputs": [{"name": "probs", "shape": [1, 2], "datatype": "FP64", "data": [0.25, 0.75]}],
    }
    msg = Message.decode_json(jbody(body), kind="response")
    assert msg.kind == "response"
    assert (msg.model_name, msg.model_version, msg.id) == ("mnist", "7", "r")
    assert msg.parameters == {"took_ms": 1.5}
    assert_same(msg["probs"].numpy(), np.array([[0.25, 0.75]]))
    assert msg.requested_outputs == []


def test_nested_and_flat_data_agree():
    nested = {"inputs": [{"name": "x", "shape": [2, 2, 2], "datatype": "INT32",
                          "data": [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]}]}
    flat = {"inputs": [{"name": "x", "shape": [2, 2, 2], "datatype": "INT32",
                        "data": [1, 2, 3, 4, 5, 6, 7, 8]}]}
    want = np.arange(1, 9, dtype=np.int32).reshape(2, 2, 2)
    assert_same(Message.decode_json(jbody(nested))["x"].numpy(), want)
    assert_same(Message.decode_json(jbody(flat))["x"].numpy(), want)


def test_zero_dim_and_empty_tensors_from_json():
    body = {"inputs": [
        {"name": "s", "shape": [], "datatype": "FP64", "data": [2.5]},
        {"name": "e", "shape": [0, 3], "datatype": "FP32", "data": []},
        {"name": "eb", "shape": [0], "datatype": "BYTES", "data": []},
    ]}
    msg = Message.decode_json(jbody(body))
    s = msg["s"]
    assert s.shape == () and s.count == 1 and s.ndim == 0
    a = s.numpy()
    assert a.shape == () and a.dtype == np.float64 and float(a) == 2.5
    e = msg["e"]
    assert e.shape == (0, 3) and e.count == 0 and e.nbytes == 0
    assert e.numpy().shape == (0, 3) and e.numpy().dtype == np.float32
    eb = msg["eb"].numpy()
    assert eb.shape == (0,) and eb.dtype == object


# --- errors ---------------------------------------------------------------------


def test_error_names_the_element():
    body = {"inputs": [{"name": "x", "shape": [3], "datatype": "FP32", "data": [1, 2, "three"]}]}
    e = expect_error("SELDON_EPARSE", "inputs[0].data[2]", Message.decode_json, jbody(body))
    assert e.code == -3
    assert "expected a number" in e.message


def test_error_shape_mismatch():
    body = {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3]}]}
    expect_error("SELDON_ESHAPE", "inputs[0]", Message.decode_json, jbody(body))
    ragged = {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "INT8",
                          "data": [[1, 2], [3, 4, 5]]}]}
    expect_error("SELDON_ESHAPE", "inputs[0].data[1]", Message.decode_json, jbody(ragged))


def test_error_range_and_datatype():
    body = {"inputs": [{"name": "x", "shape": [2], "datatype": "INT8", "data": [1, 300]}]}
    expect_error("SELDON_ERANGE", "inputs[0].data[1]", Message.decode_json, jbody(body))
    body = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP8", "data": [1]}]}
    expect_error("SELDON_EDATATYPE", "inputs[0].datatype", Message.decode_json, jbody(body))


def test_error_syntax():
    e = expect_error("SELDON_EPARSE", "", Message.decode_json, b'{"inputs": [')
    assert e.message  # a detailed message, not only the code's text
    expect_error("SELDON_EPARSE", "", Message.decode_pb, b"\xff\xff\xff\xff")


def test_error_pb_names_the_field():
    tensor = pb_field(1, b"x") + pb_field(2, b"FP32") + pb_field(3, pb_varint(2))
    body = pb_field(5, tensor) + pb_field(7, b"\0\0\0\0")  # 4 bytes for two FP32 values
    expect_error("SELDON_ESHAPE", "raw_input_contents[0]", Message.decode_pb, body)


def test_error_from_builder():
    resp = Message.response()
    expect_error("SELDON_ESTATE", "add_output", resp.add_output, "y")
    err = SeldonError(-5)
    assert (err.code, err.name) == (-5, "SELDON_ESHAPE")
    assert err.message == "shape or size mismatch"


def test_error_message_is_per_thread():
    failures = {}

    def work(k):
        data = [0] * 8
        data[k] = "bad"
        body = jbody({"inputs": [{"name": "x", "shape": [8], "datatype": "INT32", "data": data}]})
        seen = set()
        for _ in range(200):
            try:
                Message.decode_json(body)
            except SeldonError as e:
                seen.add(e.message)
        failures[k] = seen

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(8):
        assert len(failures[k]) == 1
        assert "inputs[0].data[%d]" % k in next(iter(failures[k]))


# --- building -------------------------------------------------------------------


def test_build_identity_and_parameters():
    msg = Message.request()
    msg.id = "abc"
    msg.model_name = "m"
    msg.model_version = "3"
    msg.model_name = "m2"  # keeps the version
    assert (msg.id, msg.model_name, msg.model_version) == ("abc", "m2", "3")

    msg.set_parameter("b", True)
    msg.set_parameter("i", 1)
    msg.set_parameter("big", -(1 << 63))
    msg.set_parameter("f", 1.0)
    msg.set_parameter("s", "\u00fc\u00f1\u00ee")
    msg.set_parameter("npb", np.bool_(False))
    msg.set_parameter("npi", np.int32(-4))
    p = msg.parameters
    assert p == {"b": True, "i": 1, "big": -(1 << 63), "f": 1.0, "s": "\u00fc\u00f1\u00ee",
                 "npb": False, "npi": -4}
    assert type(p["b"]) is bool and type(p["i"]) is int and type(p["f"]) is float
    assert type(p["npb"]) is bool
    msg.set_parameter("i", "replaced")
    assert msg.parameters["i"] == "replaced" and len(msg.parameters) == 7
    with pytest.raises(TypeError):
        msg.set_parameter("x", [1])
    with pytest.raises(OverflowError):
        msg.set_parameter("x", 1 << 63)

    t = msg.add_tensor("x", np.zeros(2, np.float32), parameters={"content_type": "np"})
    msg.set_parameter("k", 5, tensor="x")
    t.set_parameter("j", False)
    assert t.parameters == {"content_type": "np", "k": 5, "j": False}
    idx = msg.add_output("y", parameters={"binary_data": True})
    assert idx == 0
    msg.set_parameter("top_k", 3, output="y")
    assert msg.requested_outputs == [("y", {"binary_data": True, "top_k": 3})]


def test_add_tensor_infers_datatypes():
    msg = Message.request()
    for name in FIXED:
        t = msg.add_tensor(name, np.zeros(3, dtype=NP[name]))
        assert t.datatype == name and t.numpy().dtype == np.dtype(NP[name])
    assert msg.add_tensor("f16", np.zeros(2, np.float16)).numpy().dtype == np.float16
    assert msg.add_tensor("bool", [True, False]).numpy().dtype == np.bool_
    assert msg.add_tensor("ints", [1, 2]).datatype == "INT64"
    assert msg.add_tensor("floats", [1.0, 2.0]).datatype == "FP64"
    assert msg.add_tensor("strs", ["a", "b"]).datatype == "BYTES"
    assert msg.add_tensor("bytes", [b"a\0", b""]).datatype == "BYTES"
    assert list(msg["bytes"].numpy()) == [b"a\0", b""]  # trailing NUL bytes survive
    assert msg.add_tensor("S", np.array([b"xy", b"z"])).datatype == "BYTES"
    assert msg.add_tensor("U", np.array(["xy", "\u00e9"])).datatype == "BYTES"
    assert list(msg["U"].numpy()) == [b"xy", "\u00e9".encode()]
    odd = np.array([2, 0, 255], np.uint8).view(np.bool_)  # bool bytes other than 0 and 1
    assert list(msg.add_tensor("odd", odd).numpy().view(np.uint8)) == [1, 0, 1]
    t = msg.add_tensor("explicit", [[1, 2], [3, 4]], datatype="FP32")
    assert t.datatype == "FP32" and t.shape == (2, 2)
    assert_same(t.numpy(), np.array([[1, 2], [3, 4]], np.float32))
    with pytest.raises(TypeError):
        msg.add_tensor("lossy", [1.5], datatype="INT32")
    with pytest.raises(TypeError):
        msg.add_tensor("c", np.zeros(2, np.complex64))
    with pytest.raises(TypeError):
        msg.add_tensor("nums-as-bytes", np.zeros(2), datatype="BYTES")
    with pytest.raises(ValueError):
        msg.add_tensor("bad", [1], datatype="FP8")


# --- round trips ------------------------------------------------------------------


def build_all_types(rng, kind="request", text_only=False, binary=False):
    msg = Message(kind)
    msg.id = "rt-%s" % kind
    want = {}
    for i, name in enumerate(ALL):
        shape = [(2, 3), (7,), (1, 2, 2, 2)][i % 3]
        arr = random_array(rng, name, shape, text_only=text_only)
        msg.add_tensor("t_" + name, arr, datatype=name, binary=binary)
        want["t_" + name] = arr
    return msg, want


def check_all_types(msg, want):
    assert [t.name for t in msg.tensors] == list(want)
    for name, arr in want.items():
        t = msg[name]
        assert t.datatype == name[2:]
        assert_same(t.numpy(), arr)


@pytest.mark.parametrize("kind", ["request", "response"])
def test_every_datatype_json_round_trip(kind):
    rng = np.random.default_rng(1234)
    msg, want = build_all_types(rng, kind, text_only=True)
    check_all_types(msg, want)
    body = msg.encode_json()
    doc = json.loads(body)  # valid JSON (NaN/Infinity aside, which json accepts)
    tensors = doc["inputs" if kind == "request" else "outputs"]
    assert [t["name"] for t in tensors] == list(want)
    assert all("data" in t for t in tensors)
    check_all_types(Message.decode_json(body, kind=kind), want)


@pytest.mark.parametrize("kind", ["request", "response"])
@pytest.mark.parametrize("typed", [False, True])
def test_every_datatype_pb_round_trip(kind, typed):
    rng = np.random.default_rng(99)
    msg, want = build_all_types(rng, kind)
    if typed:
        # The gRPC protocol has no typed field for FP16: it must travel raw.
        expect_error("SELDON_EUNSUPPORTED", "FP16", msg.encode_pb, typed=True)
        msg = Message(kind)
        del want["t_FP16"]
        for name, arr in want.items():
            msg.add_tensor(name, arr, datatype=name[2:])
    msg.model_name = "model"
    msg.model_version = "v1"
    back = via_pb(msg, typed=typed)
    assert (back.model_name, back.model_version) == ("model", "v1")
    check_all_types(back, want)


@pytest.mark.parametrize("binary_all", [False, True])
def test_binary_extension_round_trip(binary_all):
    rng = np.random.default_rng(7)
    # Binary data carries any bytes, not only UTF-8 text.
    msg, want = build_all_types(rng, binary=not binary_all)
    msg.add_tensor("plain", np.arange(3, dtype=np.int16))
    want["plain"] = np.arange(3, dtype=np.int16)
    body, json_len = msg.encode_json_ext(binary_all=binary_all)
    assert json_len < len(body)
    head = json.loads(body[:json_len])
    for t in head["inputs"]:
        nbytes = msg[t["name"]].nbytes
        if t["name"] == "plain" and not binary_all:
            assert "data" in t and "binary_data_size" not in t.get("parameters", {})
        else:
            assert "data" not in t
            assert t["parameters"]["binary_data_size"] == nbytes
    back = Message.decode_json(body, json_len=json_len)
    for name, arr in want.items():
        assert_same(back[name].numpy(), arr)
        assert "binary_data_size" not in back[name].parameters
    # Without the header the JSON part is taken to be the whole body: no binary data is left.
    expect_error("SELDON_ESHAPE", "binary_data_size", Message.decode_json, body)


def test_json_len_of_plain_json_is_whole_body():
    msg = Message.decode_json(jbody(REQUEST))
    body, json_len = msg.encode_json_ext()
    assert json_len == len(body)
    assert snapshot(Message.decode_json(body, json_len=json_len)) == snapshot(msg)


def test_json_to_pb_to_json_keeps_everything():
    first = Message.decode_json(jbody(REQUEST))
    first.model_name = "m"
    first.model_version = "2"
    pb = via_pb(first)
    assert snapshot(pb) == snapshot(first)
    typed = via_pb(first, typed=True)
    assert snapshot(typed) == snapshot(first)
    again = Message.decode_json(pb.encode_json())
    want = snapshot(first)
    want["model_name"] = want["model_version"] = ""  # the REST request body has no model
    got = snapshot(again)
    got["model_name"] = got["model_version"] = ""
    assert got == want
    assert json.loads(again.encode_json()) == json.loads(Message.decode_json(first.encode_json())
                                                         .encode_json())
    assert json.loads(pb.encode_json()) == json.loads(first.encode_json())


def test_response_json_pb_json():
    body = {"model_name": "m", "model_version": "1", "id": "i", "parameters": {"a": "b"},
            "outputs": [{"name": "y", "shape": [2], "datatype": "UINT8", "data": [0, 255],
                         "parameters": {"p": 1.25}}]}
    first = Message.decode_json(jbody(body), kind="response")
    again = via_json(via_pb(first))
    assert snapshot(again) == snapshot(first)


def test_parameter_types_survive_json():
    msg = Message.request()
    for k, v in {"t": True, "f": False, "zero": 0, "one": 1, "min": -(1 << 63), "max": (1 << 63) - 1,
                 "half": 0.5, "whole": 2.0, "neg": -1e300, "s": "\u00e9\u65e5 \"q\" \\ \n",
                 "empty": ""}.items():
        msg.set_parameter(k, v)
    msg.add_tensor("x", np.zeros(1, np.float32), parameters={"whole": 3.0, "i": 3})
    msg.add_output("o", {"b": True})
    for back in (via_json(msg), via_pb(msg)):
        p = back.parameters
        assert p == msg.parameters
        for k in p:
            assert type(p[k]) is type(msg.parameters[k]), k
        assert back["x"].parameters == {"whole": 3.0, "i": 3}
        assert type(back["x"].parameters["whole"]) is float
        assert back.requested_outputs == [("o", {"b": True})]


def test_nan_round_trip():
    for dt in (np.float16, np.float32, np.float64):
        arr = np.array([np.nan, 1.0, -np.nan], dtype=dt)
        msg = Message.request()
        msg.add_tensor("x", arr)
        for back in (via_json(msg), via_pb(msg), via_pb(msg, typed=dt != np.float16)):
            got = back["x"].numpy()
            assert got.dtype == dt
            assert np.isnan(got[0]) and got[1] == 1.0 and np.isnan(got[2])


def test_bytes_non_ascii():
    texts = ["h\u00e9llo", "\u65e5\u672c\u8a9e", "\U0001F600 emoji", "", "tab\tquote\"back\\",
             "nul\0inside"]
    msg = Message.request()
    msg.add_tensor("t", np.array(texts, dtype=object).reshape(2, 3))
    want = np.array([s.encode("utf-8") for s in texts], dtype=object).reshape(2, 3)
    assert_same(msg["t"].numpy(), want)
    raw = [b"\xff\xfe", b"\0", bytes(range(256))]
    msg.add_tensor("raw", raw, binary=True)
    for back in (via_json(msg), via_pb(msg), via_pb(msg, typed=True)):
        assert_same(back["t"].numpy(), want)
        assert list(back["raw"].numpy()) == raw


def test_zero_dim_and_empty_round_trip():
    msg = Message.request()
    msg.add_tensor("s", np.float32(1.25))
    msg.add_tensor("sb", "only")
    msg.add_tensor("e", np.zeros((3, 0), np.int64))
    msg.add_tensor("eb", np.empty((0, 2), dtype=object))
    assert msg["s"].shape == () and msg["sb"].shape == () and msg["e"].shape == (3, 0)
    for back in (msg, via_json(msg), via_json(msg, binary_all=True), via_pb(msg),
                 via_pb(msg, typed=True)):
        s = back["s"].numpy()
        assert s.shape == () and s.dtype == np.float32 and s == np.float32(1.25)
        sb = back["sb"].numpy()
        assert sb.shape == () and sb.item() == b"only"
        assert back["e"].numpy().shape == (3, 0)
        assert back["eb"].numpy().shape == (0, 2)


# --- zero copy ------------------------------------------------------------------------


def churn():
    """Allocate and free enough that freed message memory would be reused."""
    for i in range(50):
        m = Message.request()
        m.add_tensor("junk", np.full(4096, i, np.float32), copy=True)
        m.close()
    gc.collect()


def test_zero_copy_out_survives_message():
    body = {"inputs": [{"name": "x", "shape": [64, 64], "datatype": "FP32",
                        "data": [float(i) for i in range(4096)]}]}
    msg = Message.decode_json(jbody(body))
    t = msg["x"]
    arr = t.numpy()
    assert arr.ctypes.data == t.data_ptr
    assert np.shares_memory(arr, t.numpy())
    assert arr.flags.writeable  # the message holds this data itself
    arr[0, 0] = -1.0
    assert t.numpy()[0, 0] == -1.0  # one memory, seen through both
    alive = weakref.ref(msg)
    handle = weakref.ref(msg._h)
    del msg, t
    gc.collect()
    assert alive() is None  # the Message object is gone ...
    churn()
    want = np.arange(4096, dtype=np.float32).reshape(64, 64)
    want[0, 0] = -1.0
    assert_same(arr, want)  # ... but its memory lives as long as the array
    assert handle() is not None
    del arr
    gc.collect()
    assert handle() is None  # and is freed with it


def test_zero_copy_out_after_close_and_from_pb():
    src = Message.response()
    src.add_tensor("y", np.arange(1000, dtype=np.int64))
    with Message.decode_pb(src.encode_pb(), kind="response") as msg:
        arr = msg["y"].numpy()
        assert arr.ctypes.data == msg["y"].data_ptr
    assert msg.closed
    with pytest.raises(ValueError):
        msg.tensors
    del msg, src
    churn()
    assert_same(arr, np.arange(1000, dtype=np.int64))


def test_zero_copy_in():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    msg = Message.request()
    t = msg.add_tensor("x", x)
    assert t.data_ptr == x.ctypes.data  # the message reads the array in place
    assert t.borrowed
    view = t.numpy()
    assert np.shares_memory(view, x)
    assert not view.flags.writeable  # borrowed data must not be written through
    x[0, 0] = 42.0
    assert Message.decode_json(msg.encode_json())["x"].numpy()[0, 0] == 42.0

    # The message keeps the array alive though the caller dropped it.
    msg.add_tensor("tmp", np.arange(5000, dtype=np.int32))
    gc.collect()
    churn()
    assert_same(via_pb(msg)["tmp"].numpy(), np.arange(5000, dtype=np.int32))

    # Anything else is copied.
    nc = np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2]
    assert msg.add_tensor("nc", nc).data_ptr != nc.ctypes.data
    assert_same(msg["nc"].numpy(), np.ascontiguousarray(nc))
    wrong = np.arange(4, dtype=np.int32)
    t = msg.add_tensor("conv", wrong, datatype="INT64")
    assert t.data_ptr != wrong.ctypes.data and t.numpy().dtype == np.int64
    be = np.arange(4, dtype=">i4")
    assert_same(msg.add_tensor("be", be).numpy(), np.arange(4, dtype=np.int32))
    t = msg.add_tensor("copied", x, copy=True)
    assert t.data_ptr != x.ctypes.data and not t.borrowed and t.numpy().flags.writeable


def test_alloc_tensor_fills_in_place():
    msg = Message.response()
    t = msg.alloc_tensor("y", (2, 3), "FP16", parameters={"p": 1})
    y = t.numpy()
    assert y.dtype == np.float16 and y.shape == (2, 3) and y.flags.writeable
    assert not y.any()
    y[:] = np.arange(6, dtype=np.float16).reshape(2, 3)
    assert_same(via_pb(msg)["y"].numpy(), np.arange(6, dtype=np.float16).reshape(2, 3))
    s = msg.alloc_tensor("s", (), "INT8").numpy()
    assert s.shape == () and s == 0
    expect_error("SELDON_ESHAPE", "shape[1]", msg.alloc_tensor, "neg", (2, -1), "FP32")
    with pytest.raises(TypeError):
        msg.alloc_tensor("b", (1,), "BYTES")


def test_decode_borrow_keeps_body_alive():
    src = Message.request()
    src.add_tensor("u8", np.arange(200, dtype=np.uint8), binary=True)
    src.add_tensor("f64", np.linspace(0, 1, 300), binary=True)
    body, json_len = src.encode_json_ext()
    del src
    body_addr = ctypes.cast(ctypes.c_char_p(body), ctypes.c_void_p).value
    msg = Message.decode_json(body, json_len=json_len)
    assert msg["u8"].binary and msg["f64"].binary
    u8 = msg["u8"]
    # 1-byte elements are always aligned, so the decoder points into the body itself.
    assert body_addr <= u8.data_ptr < body_addr + len(body)
    assert u8.borrowed
    arr = u8.numpy()
    assert not arr.flags.writeable  # never write into a borrowed body
    f64 = msg["f64"].numpy()
    assert f64.flags.writeable == (not msg["f64"].borrowed)
    del msg, u8, body
    churn()
    assert_same(arr, np.arange(200, dtype=np.uint8))
    assert_same(f64, np.linspace(0, 1, 300))


def test_own_view_is_copied_not_borrowed():
    msg = Message.request()
    x = msg.add_tensor("x", np.arange(4, dtype=np.int32), copy=True)
    y = msg.add_tensor("y", x.numpy())  # borrowing would make the message keep itself alive
    assert not y.borrowed and y.data_ptr != x.data_ptr
    assert_same(y.numpy(), np.arange(4, dtype=np.int32))
    handle = weakref.ref(msg._h)
    del msg, x, y
    gc.collect()
    assert handle() is None  # the C message was freed


def test_seldon_error_pickles():
    import pickle

    e = pickle.loads(pickle.dumps(SeldonError(-3, "inputs[0]: bad")))
    assert (e.code, e.name, e.message, str(e)) == (-3, "SELDON_EPARSE", "inputs[0]: bad",
                                                   "SELDON_EPARSE: inputs[0]: bad")


def test_tensor_keeps_message_alive():
    msg = Message.request()
    msg.add_tensor("x", np.arange(3, dtype=np.uint16), copy=True)
    t = msg["x"]
    del msg
    churn()
    assert t.name == "x" and t.shape == (3,)
    assert_same(t.numpy(), np.arange(3, dtype=np.uint16))
    assert_same(np.asarray(t), np.arange(3, dtype=np.uint16))


def test_struct_layouts_match_c():
    """The ctypes mirrors have the C layout (LP64: the platforms libseldon supports)."""
    from seldon import _lib

    assert struct.calcsize("P") == 8, "libseldon targets 64-bit little-endian hosts"

    def layout(cls):
        return [(name, getattr(cls, name).offset) for name, _ in cls._fields_], ctypes.sizeof(cls)

    assert layout(_lib.seldon_buf) == ([("data", 0), ("len", 8), ("cap", 16)], 24)
    assert layout(_lib.seldon_param) == (
        [("name", 0), ("name_len", 8), ("type", 16), ("bool_value", 20), ("int64_value", 24),
         ("double_value", 32), ("string_value", 40), ("string_len", 48)], 56)
    assert layout(_lib.seldon_tensor) == (
        [("name", 0), ("name_len", 8), ("datatype", 16), ("ndim", 20), ("shape", 24),
         ("data", 32), ("nbytes", 40), ("count", 48)], 56)
