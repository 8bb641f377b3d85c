"""The daemons' command lines, from the one table each daemon's flags come from
(daemons/common/flags.c): what --help names, the parser takes; a bad value is
refused naming the flag and what it expects; usage errors exit 2 before anything
starts (a stray argument after the flags ends every run here at the parser).
"""
import os
import re
import subprocess

import pytest

GUARD = 30
DAEMONS = {
    "seldon-scheduler": "SELDON_SCHEDULER",
    "seldon-agent": "SELDON_AGENT",
    "seldon-router": "SELDON_ROUTER",
    "seldon-server": "SELDON_SERVER",
    "seldon-up": "SELDON_UP",
}


def binary(name):
    path = os.environ.get(DAEMONS[name])
    if not path or not os.path.exists(path):
        raise pytest.UsageError(f"{name} not found: set {DAEMONS[name]}")
    return path


def run(name, *args):
    return subprocess.run([binary(name), *args], capture_output=True, text=True, timeout=GUARD)


def help_flags(text):
    """{flag: takes_value} for every entry of a --help text."""
    flags = {}
    for line in text.splitlines():
        if not line.startswith("  -"):
            continue
        head = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
        if head.startswith("--help"):
            continue
        words = [w.rstrip(",") for w in head.split()]
        names = [w[2:] for w in words if w.startswith("--")]
        takes_value = any(not w.startswith("-") and w != "/" for w in words)
        for n in names:
            flags[n] = takes_value
    return flags


@pytest.mark.parametrize("name", sorted(DAEMONS))
def test_help_and_version(name):
    p = run(name, "--help")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"usage: {name}")
    assert "  --help, --version\n" in p.stdout
    assert run(name, "-h").stdout == p.stdout
    v = run(name, "--version")
    assert v.returncode == 0 and re.fullmatch(rf"{name} \d+\.\d+\.\d+\S*\n", v.stdout), v.stdout


@pytest.mark.parametrize("name", sorted(DAEMONS))
def test_every_flag_in_help_is_parsed(name):
    flags = help_flags(run(name, "--help").stdout)
    assert len(flags) >= 8, flags
    for flag, takes_value in flags.items():
        args = [f"--{flag}", "1"] if takes_value else [f"--{flag}"]
        p = run(name, *args, "stray")
        assert p.returncode == 2, (flag, p.stderr)
        assert "unrecognized option" not in p.stderr, (flag, p.stderr)
        assert (f"{name}: unexpected argument 'stray'" in p.stderr or
                f"{name}: --{flag}: bad value '1'" in p.stderr), (flag, p.stderr)


@pytest.mark.parametrize("name,args,message", [
    ("seldon-scheduler", ["--client-port", "70000"],
     "seldon-scheduler: --client-port: bad value '70000' (expected an integer from 0 to 65535)"),
    ("seldon-scheduler", ["--log-level", "loud"],
     "seldon-scheduler: --log-level: bad value 'loud' (expected error, warn, info, debug or trace)"),
    ("seldon-agent", ["--memory", "lots"], "seldon-agent: --memory: bad value 'lots' (expected a "
     "memory quantity"),
    ("seldon-agent", ["--grace", "-1"],
     "seldon-agent: --grace: bad value '-1' (expected milliseconds from 0 to 86400000)"),
    ("seldon-router", ["--max-body", "12"],
     "seldon-router: --max-body: bad value '12' (expected bytes from 1024 to 1099511627776)"),
    ("seldon-router", ["--routes-cache", ""],
     "seldon-router: --routes-cache: bad value '' (expected not empty, 4000 characters at most)"),
    ("seldon-server", ["--workers", "0"],
     "seldon-server: --workers: bad value '0' (expected an integer from 1 to 256)"),
    ("seldon-up", ["--server-memory", "0"],
     "seldon-up: --server-memory: bad value '0' (expected a memory quantity above 0"),
    ("seldon-up", ["--capabilities", ",".join(f"c{i}" for i in range(65))],
     "seldon-up: --capabilities: bad value 'c0,c1,c2,"),
])
def test_bad_value_names_flag_and_expectation(name, args, message):
    p = run(name, *args)
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith(message), p.stderr
    assert p.stdout == ""


@pytest.mark.parametrize("name", sorted(DAEMONS))
def test_unknown_flag_prints_usage(name):
    p = run(name, "--no-such-flag")
    assert p.returncode == 2
    assert "unrecognized option" in p.stderr and f"usage: {name}" in p.stderr
