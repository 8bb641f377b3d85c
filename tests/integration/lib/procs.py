"""Helpers for the daemons the integration tests start."""
import os
import select
import signal
import subprocess
import time

import pytest


def first_line(proc, guard):
    """The first line a process writes on its stdout (a pipe), read within guard
    seconds; what came so far when it exits or the guard passes."""
    deadline = time.monotonic() + guard
    fd = proc.stdout.fileno()
    data = b""
    while b"\n" not in data and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
        elif proc.poll() is not None:
            break
    return data.decode(errors="replace")


def require(*binaries):
    """For pytest_configure: refuses to run without each (path, variable) binary,
    naming the variable that points at it."""
    for path, var in binaries:
        if not os.path.exists(path):
            raise pytest.UsageError(f"{path} not found: set {var}")


def kill_all(started):
    """SIGKILLs the processes of started that still run (a session's end)."""
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def sigterm(proc, name, stderr, kill, guard=60):
    """SIGTERMs proc (when it still runs) and returns its exit status; one that does
    not exit within guard seconds is killed (kill()) and fails the test with its
    stderr()."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(guard)
    except subprocess.TimeoutExpired:
        kill()
        raise AssertionError(f"{name} did not exit\n{stderr()}")


def wait_until(cond, guard, why, interval=0.01):
    """Waits for an event that only polling observes (a file appearing, a log line):
    checks cond() every interval seconds until it holds and returns its (true) value;
    past guard seconds fails with why() (a callable, so the daemon's stderr is read
    only on failure)."""
    return wait_value(cond, bool, guard, lambda _: why(), interval)


def wait_value(get, done, guard, why, interval=0.01):
    """Like wait_until for a value: calls get() every interval seconds until
    done(value) holds and returns that value; past guard seconds fails with
    why(value), value being the last one get() returned."""
    deadline = time.monotonic() + guard
    while True:
        value = get()
        if done(value):
            return value
        assert time.monotonic() < deadline, why(value)
        # The one sleep of the polling helpers: the pause between two looks at the event.
        time.sleep(interval)


def cpu_ticks(pid):
    """A process's user + system time so far, in clock ticks (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def wait_idle(pid, guard, name):
    """Waits until a process uses no processor time: two looks at its time half a second
    apart agree. One whose loops never sleep uses a whole processor and never passes."""
    last = [None]

    def idle(now):
        prev, last[0] = last[0], now
        return prev is not None and now == prev
    wait_value(lambda: cpu_ticks(pid), idle, guard,
               lambda t: f"{name} still uses the processor while idle: {t} ticks", interval=0.5)
