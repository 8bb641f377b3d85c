"""seldon-server tried as an attacker would: what a model folder may not do.

Whoever can write a model folder must not run code in the server: runtime
plugins load by file name from the runtime path only, never by a path and
never from the model folder, and parameters.uri stays inside the model's
folder. The plugin used here has a constructor that writes a marker file, so
"its code never ran" is observed, not assumed; a control run shows that the
same plugin, placed in the runtime path, does run.
"""
import os
import shutil
import subprocess

import pytest

from conftest import SERVER, GUARD, Server, assert_error, post_json, request, write_model

EVIL_C = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void evil(void)
{
    const char *path = getenv("SELDON_TEST_MARKER");
    FILE *f = path ? fopen(path, "w") : NULL;
    if (f) {
        fputs("constructor ran\n", f);
        fclose(f);
    }
}
"""


@pytest.fixture(scope="module")
def evil_so(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler to build the test plugin")
    folder = tmp_path_factory.mktemp("evil-src")
    src = folder / "evil.c"
    src.write_text(EVIL_C)
    out = folder / "evil.so"
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(out), str(src)], check=True,
                   timeout=GUARD)
    return str(out)


def index(server):
    status, doc = post_json(server.http, "/v2/repository/index")
    assert status == 200
    return {r["name"]: r for r in doc}


def load(server, name):
    return request(server.http, "POST", f"/v2/repository/models/{name}/load", b"")


def test_plugin_in_the_model_folder_never_runs(tmp_path, evil_so):
    repo = tmp_path / "repo"
    marker = tmp_path / "marker"
    folder = write_model(repo, "abs", {"implementation": "placeholder"})
    inside = os.path.join(folder, "evil.so")
    shutil.copy(evil_so, inside)
    # Each names the plugin that sits in a model folder, by every route there was.
    cases = {
        "abs": inside,
        "rel": "./evil.so",
        "up": "../abs/evil.so",
        "upup": "../../repo/abs/evil.so",
        "plain": "evil.so",  # a plain name: the model folder is no longer searched
        "uri-like": "file://" + inside,
    }
    for name, impl in cases.items():
        f = write_model(repo, name, {"implementation": impl})
        if name != "abs":
            shutil.copy(evil_so, os.path.join(f, "evil.so"))
    srv = Server(repo, env={"SELDON_TEST_MARKER": str(marker), "SELDON_RUNTIME_PATH": None})
    try:
        rows = index(srv)
        for name, impl in cases.items():
            assert rows[name]["state"] == "FAILED", rows[name]
            if "/" in impl:
                assert "a path is refused" in rows[name]["reason"], rows[name]
            else:
                assert "not found in the runtime path" in rows[name]["reason"], rows[name]
            # Asked again through the API: the same refusal, 400, naming the implementation.
            assert_error(*load(srv, name), 400, impl if "/" in impl else "evil.so")
        assert not marker.exists(), "a plugin from a model folder ran its constructor"
    finally:
        srv.stop()
    assert not marker.exists()


def test_same_plugin_from_the_runtime_path_does_run(tmp_path, evil_so):
    # The control: the marker is written when the plugin is loaded the legitimate way,
    # so its absence above means the code never ran.
    runtimes = tmp_path / "runtimes"
    runtimes.mkdir()
    shutil.copy(evil_so, runtimes / "libseldon-test-evil.so")
    marker = tmp_path / "marker"
    repo = tmp_path / "repo"
    write_model(repo, "m", {"implementation": "libseldon-test-evil.so"})
    srv = Server(repo, "--runtime-path", runtimes,
                 env={"SELDON_TEST_MARKER": str(marker), "SELDON_RUNTIME_PATH": None})
    try:
        row = index(srv)["m"]
        # Not a runtime (no entry point), but it was found and opened.
        assert row["state"] == "FAILED" and "seldon_runtime_entry" in row["reason"], row
        assert marker.exists()
    finally:
        srv.stop()


def test_uri_stays_inside_the_model_folder(tmp_path):
    repo = tmp_path / "repo"
    outside = tmp_path / "secret.json"
    outside.write_text("{}")
    cases = {
        "dotdot": ("../../secret.json", "'..' is refused"),
        "absolute": (str(outside), "outside the model folder"),
        "file-url": ("file://" + str(outside), "outside the model folder"),
        "link": ("./model.json", "outside the model folder"),
        "link-dir": ("./sub/secret.json", "outside the model folder"),
    }
    for name, (uri, _) in cases.items():
        folder = write_model(repo, name, {"implementation": "builtin.identity",
                                          "parameters": {"uri": uri}})
        if name == "link":
            os.symlink(outside, os.path.join(folder, "model.json"))
        if name == "link-dir":
            os.symlink(tmp_path, os.path.join(folder, "sub"))
    # Inside the folder, through a symlink that stays inside, is fine.
    folder = write_model(repo, "ok", {"implementation": "builtin.identity",
                                      "parameters": {"uri": "./data/model.json"}})
    os.makedirs(os.path.join(folder, "real"))
    open(os.path.join(folder, "real", "model.json"), "w").close()
    os.symlink("real", os.path.join(folder, "data"))
    srv = Server(repo)
    try:
        rows = index(srv)
        for name, (uri, why) in cases.items():
            assert rows[name]["state"] == "FAILED", rows[name]
            assert why in rows[name]["reason"] and "parameters.uri" in rows[name]["reason"]
            assert_error(*load(srv, name), 400, "parameters.uri", why)
        assert rows["ok"]["state"] == "READY", rows["ok"]
    finally:
        srv.stop()


def runtime_path_of(server):
    line = next(l for l in server.stderr().splitlines() if "runtime path: " in l)
    return line.split("runtime path: ", 1)[1].split(":")


def test_default_folders_are_trusted_only_where_they_belong(tmp_path, evil_so, monkeypatch):
    # A copy of the binary outside its build tree must not search <copy>/../../runtimes
    # (here a folder anyone could have written a plugin into); an install layout beside
    # the binary is searched only when nobody else can write to it.
    prefix = tmp_path / "prefix"
    (prefix / "bin").mkdir(parents=True)
    exe = prefix / "bin" / "seldon-server"
    shutil.copy2(SERVER, exe)
    planted = tmp_path / "runtimes"  # = <copy>/../../runtimes, the build-tree relative path
    planted.mkdir()
    shutil.copy(evil_so, planted / "libseldon-runtime-xgboost.so")
    # Candidates for the install layout (${libdir} is lib or lib/<multiarch>).
    installed = [prefix / "lib" / "seldon" / "runtimes"] + [
        prefix / "lib" / d / "seldon" / "runtimes" for d in ("x86_64-linux-gnu",
                                                          "aarch64-linux-gnu")]
    for d in installed:
        d.mkdir(parents=True)
    marker = tmp_path / "marker"
    repo = tmp_path / "repo"
    write_model(repo, "m", {"implementation": "xgboost"})

    import conftest
    monkeypatch.setattr(conftest, "SERVER", str(exe))  # Server starts the copy
    srv = Server(repo, env={"SELDON_TEST_MARKER": str(marker), "SELDON_RUNTIME_PATH": None})
    try:
        folders = runtime_path_of(srv)
        assert str(planted) not in folders, folders
        assert not marker.exists()
        assert any(str(d) in folders for d in installed), folders
    finally:
        srv.stop()
    for d in installed:
        os.chmod(d, 0o777)
    srv = Server(repo, env={"SELDON_TEST_MARKER": str(marker), "SELDON_RUNTIME_PATH": None})
    try:
        folders = runtime_path_of(srv)
        assert not any(str(d) in folders for d in installed), folders
    finally:
        srv.stop()
    assert not marker.exists()
