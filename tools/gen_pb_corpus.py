#!/usr/bin/python3
"""Seeds the protobuf fuzz corpus from the JSON one.

Every JSON seed that decodes is written as protobuf, with raw contents and,
where the datatypes allow, with typed contents, as a request or a response.

    SELDON_LIB=build/libseldon/libseldon.so tools/gen_pb_corpus.py
"""
import os
import pathlib
import sys

top = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(top / "bindings" / "python"))
import seldon  # noqa: E402

src = top / "tests" / "fuzz" / "corpus" / "json"
dst = top / "tests" / "fuzz" / "corpus" / "pb"
dst.mkdir(parents=True, exist_ok=True)
written = 0
for path in sorted(src.iterdir()):
    body = path.read_bytes()
    json_len = 0
    if body.startswith(b"#"):
        head, _, rest = body.partition(b"\n")
        json_len, body = int(head[1:]), rest
    for kind in ("request", "response"):
        try:
            msg = seldon.Message.decode_json(body, kind=kind, json_len=json_len)
        except seldon.SeldonError:
            continue
        for typed in (False, True):
            try:
                data = msg.encode_pb(typed=typed)
            except seldon.SeldonError:
                continue
            name = f"{path.stem}-{kind}-{'typed' if typed else 'raw'}.pb"
            (dst / name).write_bytes(data)
            written += 1
(dst / "garbage.pb").write_bytes(bytes([0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x01, 0x2A]))
(dst / "empty.pb").write_bytes(b"")
print(f"gen_pb_corpus: {written + 2} files in {os.path.relpath(dst, top)}")
