"""Server modes that must not change what is on the wire: worker threads, idle timeout, and
wsx-echo's engine switches. Each starts its own instance and runs a compact echo battery."""
import os
import socket
import threading
import time

import pytest

from wirelib import (Pinger, connect, echo_stream, many_echo, read_to_close, recv_exact, sha)

pytestmark = pytest.mark.timeout(180)

MiB = 1 << 20


def battery(addr):
    """Pipelined small writes, 4 parallel 4 MiB streams, 300 concurrent connections, half-close."""
    msgs = b"".join(b"%d," % i for i in range(3000))
    assert echo_stream(addr, msgs, chunk=7) == msgs, "pipelined small writes"
    results = {}

    def stream(i):
        data = os.urandom(4 * MiB)
        try:
            results[i] = sha(echo_stream(addr, data, chunk=100003)) == sha(data)
        except (OSError, AssertionError) as e:
            results[i] = repr(e)

    threads = [threading.Thread(target=stream, args=(i,), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == 4 and all(r is True for r in results.values()), results
    payloads = [os.urandom(1 + (i * 37) % 3000) for i in range(300)]
    got = many_echo(addr, payloads)
    assert all(got[i] == p for i, p in enumerate(payloads)), "concurrent connections"
    with connect(addr) as s:
        s.sendall(b"half")
        s.shutdown(socket.SHUT_WR)
        assert read_to_close(s) == (b"half", "eof")


@pytest.mark.needs("threads")
@pytest.mark.parametrize("threads", [1, 4])
def test_worker_threads_keep_each_connection_in_order(spawn, threads):
    srv = spawn(("threads", threads))
    battery(srv.addr)


@pytest.mark.needs("idle-timeout")
@pytest.mark.timeout(60)
def test_idle_connection_is_closed_busy_ones_are_not(spawn):
    limit = 2
    srv = spawn(("idle-timeout", limit))
    idle = connect(srv.addr)
    idle.sendall(b"once")
    assert recv_exact(idle, 4) == b"once"
    t0 = time.monotonic()
    pinger = Pinger(srv.addr, period=0.2)  # never idle for long
    data, how = read_to_close(idle, timeout=limit + 15)
    elapsed = time.monotonic() - t0
    idle.close()
    # The busy connection outlives the limit by far: closed for its age, not for being idle,
    # it would fail here.
    time.sleep(limit + 1)
    pinger.stop()
    assert data == b""
    assert elapsed >= min(1.0, limit - 0.5), "closed after %.2f s, limit %d s" % (elapsed, limit)
    assert elapsed <= limit + 10, "closed after %.2f s, limit %d s" % (elapsed, limit)


def _send_then_read_late(addr, data, pause):
    """Send `data` from one thread (the echo fills both ways and the server stops reading from
    us) and read the echo from another, `pause` s from now: (socket, threads, {"r": (echo,
    'eof' | 'reset')})."""
    s = connect(addr, timeout=60)
    out = {}

    def send():
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            out["send-error"] = True  # a reset found by the sender: the reader then sees EOF

    def read():
        time.sleep(pause)
        out["r"] = read_to_close(s, timeout=60)

    ts = [threading.Thread(target=send, daemon=True), threading.Thread(target=read, daemon=True)]
    for t in ts:
        t.start()
    return s, ts, out


@pytest.mark.needs("idle-timeout")
@pytest.mark.timeout(120)
def test_idle_timeout_spares_a_client_slow_to_read_its_echo(spawn):
    """A client whose echo waits for it to read is not idle (data is queued both ways): the idle
    timeout must not close it. Closed with a FIN all the same, it would drop what the client
    still sends, and the client would take the cut echo, ended by a clean EOF, for a whole one."""
    limit = 2
    srv = spawn(("idle-timeout", limit))
    data = os.urandom(16 * MiB)
    s, ts, out = _send_then_read_late(srv.addr, data, limit + 1.5)
    for t in ts:
        t.join(90)
    s.close()
    assert "r" in out, "the client's reader hangs"
    got, how = out["r"]
    assert got == data[:len(got)], "the echo is not a prefix of what was sent"
    assert how != "eof" or got == data or out.get("send-error"), (
        "%d of %d bytes echoed, then a clean EOF: a cut echo passed off as whole"
        % (len(got), len(data)))


@pytest.mark.parametrize("raw", [
    ["--skip-on-success", "off"],
    ["--zero-byte-reads", "off"],
    ["--skip-on-success", "off", "--zero-byte-reads", "off", "--threads", "1"],
    ["--buffer-size", "512", "--initial-data", "512", "--max-queued", "512", "--accepts", "1"],
], ids=["no-skip-on-success", "no-zero-byte-reads", "both-off-1-thread", "tiny-buffers"])
def test_wsx_engine_modes_echo_the_same(wsx_only, spawn, raw):
    srv = spawn(raw=raw)
    battery(srv.addr)
