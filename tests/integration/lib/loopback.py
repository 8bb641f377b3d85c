"""What the kernel can tell a test about a server's loopback sockets.

The receive queue of a server-side socket empties when the server reads it, so
"every byte sent has been read" is an event a test can wait for, where a fixed
pause would only guess. Linux only: /proc/net/tcp and /proc/net/tcp6.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import procs  # noqa: E402


def server_socket_queues(port):
    """The receive-queue lengths of the server's established sockets on port."""
    queues, readable = [], False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        readable = True
        for row in rows:
            cols = row.split()
            local, state, queue = cols[1], cols[3], cols[4]
            if int(local.rsplit(":", 1)[1], 16) == port and state == "01":  # ESTABLISHED
                queues.append(int(queue.split(":")[1], 16))
    assert readable, "neither /proc/net/tcp nor /proc/net/tcp6 can be read"
    return queues


def wait_server_read_all(port, guard):
    """Waits until the server has read every byte sent to its connections on port.

    The server parses what it read in the same callback, before it can see a
    signal's stop request or the client's next bytes.
    """
    procs.wait_value(lambda: server_socket_queues(port),
                     lambda queues: queues and all(q == 0 for q in queues), guard,
                     lambda queues: f"server did not read its input: {queues}", interval=0.005)
