"""seldon-kafka-dev as users and clients see it: --help, topics created at start and
on first use, fixed ports that survive a restart, a clean exit on SIGTERM."""
import socket
import subprocess

from conftest import KAFKA_DEV, KCAT, GUARD, KafkaDev, consume, produce


def metadata(broker):
    p = subprocess.run([KCAT, "-L", "-b", broker], capture_output=True, timeout=GUARD)
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout.decode()


def free_ports(n):
    """n consecutive free loopback ports (checked, not reserved), below the kernel's
    ephemeral range: a port from that range can be taken by any outgoing connection of a
    test running beside this one between a stop and a restart."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    top = max(low, 12000) - n
    for base in range(10000 + (hash(KAFKA_DEV) % max(1, top - 10000 - 7 * 64)), top, 7):
        socks = []
        try:
            for i in range(n):
                s = socket.socket()
                s.bind(("127.0.0.1", base + i))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no free ports")


def test_help():
    p = subprocess.run([KAFKA_DEV, "--help"], capture_output=True, timeout=GUARD)
    assert p.returncode == 0
    out = p.stdout.decode()
    for flag in ("--port", "--brokers", "--partitions", "--topic"):
        assert flag in out
    p = subprocess.run([KAFKA_DEV, "--topic", "bad name"], capture_output=True, timeout=GUARD)
    assert p.returncode == 2
    assert "--topic" in p.stderr.decode()


def test_topics_at_start_and_on_first_use():
    b = KafkaDev("--brokers", "2", "--partitions", "3", "--topic", "pre.a", "--topic", "pre.b:5")
    try:
        assert b.match.group(2) == "2"
        md = metadata(b.bootstrap)
        assert "2 brokers" in md
        assert 'topic "pre.a" with 3 partitions' in md
        assert 'topic "pre.b" with 5 partitions' in md
        produce(b.bootstrap, "auto.made", b"v", key="k")
        assert 'topic "auto.made" with 4 partitions' in metadata(b.bootstrap)
        [rec] = consume(b.bootstrap, "auto.made", 1)
        assert rec.value == b"v" and rec.key == "k"
    finally:
        b.stop()


def test_fixed_port_survives_a_restart():
    port = free_ports(2)
    b = KafkaDev("--brokers", "2", port=port)
    assert b.bootstrap == f"127.0.0.1:{port},127.0.0.1:{port + 1}"
    produce(b.bootstrap, "t", b"before")
    b.stop()  # exit 0 on SIGTERM; what it held is gone
    b = KafkaDev("--brokers", "2", port=port)
    try:
        assert b.bootstrap == f"127.0.0.1:{port},127.0.0.1:{port + 1}"
        produce(b.bootstrap, "t", b"after")
        recs = consume(b.bootstrap, "t", 1)
        assert [r.value for r in recs] == [b"after"]
    finally:
        b.stop()


def test_port_in_use_is_an_error():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    try:
        p = subprocess.run([KAFKA_DEV, "--port", str(s.getsockname()[1])], capture_output=True,
                           timeout=GUARD)
        assert p.returncode == 1
        assert "in use" in p.stderr.decode()
    finally:
        s.close()
