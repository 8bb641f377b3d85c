"""Helpers for the daemons the integration tests start."""
import os
import select
import time


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
