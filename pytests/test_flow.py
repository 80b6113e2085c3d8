"""Backpressure: a client that stops reading while it sends 64 MiB. The server must stop taking
its bytes (bounded queue) and finish the transfer when the client reads again."""
import os
import threading
import time

import pytest

from wirelib import Pinger, connect, events_with, recv_exact, sha, wait_stalled

MiB = 1 << 20


def slow_reader(addr, size=64 * MiB, pause=1.0):
    """Send `size` bytes from a thread; read the first MiB, then stop reading until the sender
    has stalled for `pause` s, then read the rest. Returns (bytes in flight at the stall, sent
    at the stall)."""
    data = os.urandom(size)
    s = connect(addr, timeout=120)
    sent = [0]
    err = []

    def writer():
        try:
            view = memoryview(data)
            for i in range(0, size, 256 * 1024):
                s.sendall(view[i:i + 256 * 1024])
                sent[0] += len(view[i:i + 256 * 1024])
        except OSError as e:
            err.append(e)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        first = recv_exact(s, MiB)
        stalled = wait_stalled(lambda: sent[0], quiet=pause, limit=60)
        at_stall = sent[0]
        assert stalled, "the sender never stalled while we did not read: no backpressure"
        assert at_stall < size, (
            "the server took all %d bytes from a client that did not read them" % size)
        rest = recv_exact(s, size - MiB)
        t.join(60)
        assert not t.is_alive() and not err, err or "sender stuck"
    finally:
        s.close()
    assert sha(first + rest) == sha(data), "the echo after the pause differs from the input"
    return at_stall - MiB, at_stall


@pytest.mark.wire
@pytest.mark.timeout(240)
def test_slow_reader_64_mib_completes_when_it_reads_again(echo_server):
    """...and other clients are served all the while."""
    pinger = Pinger(echo_server)
    slow_reader(echo_server)
    pinger.stop()  # fails unless the other client was served all along


def reported_queued(srv):
    """What the server itself says it queued: stats peak_queued=, trace "queued" fields."""
    seen = []
    stats = srv.stats() or {}
    if "peak_queued" in stats:
        seen.append(("stats peak_queued", stats["peak_queued"]))
    queued = [e["queued"] for e in events_with(srv.trace(), "queued")
              if isinstance(e.get("queued"), int)]
    if queued:
        seen.append(("trace queued max", max(queued)))
    return seen


@pytest.mark.needs("max-queued")
@pytest.mark.timeout(300)
def test_slow_reader_queue_stays_under_max_queued(spawn, target):
    """A slow reader of 64 MiB against --max-queued 64 KiB and 16 MiB. On the wire: the bytes in
    flight at the stall (kernel buffers of both sides + the server's queue) exceed the 64 KiB
    baseline by no more than the limit (plus 6 MiB for kernel buffer autotuning). Where the
    server reports what it queued (stats or trace), that must be <= the limit."""
    small, limit = 64 * 1024, 16 * MiB
    base_srv = spawn(("max-queued", small), trace=target.has("trace"))
    baseline = max(slow_reader(base_srv.addr)[0] for _ in range(2))
    srv = spawn(("max-queued", limit), trace=target.has("trace"))
    in_flight = slow_reader(srv.addr)[0]
    assert in_flight <= baseline + limit + 6 * MiB, (
        "in flight at the stall: %.1f MiB with --max-queued %d MiB, %.1f MiB with 64 KiB: "
        "the server queues more than its limit" % (in_flight / MiB, limit // MiB, baseline / MiB))
    time.sleep(0.3)
    for server, cap in ((base_srv, small), (srv, limit)):
        server.stop()
        for what, n in reported_queued(server):
            assert n <= cap, "%s = %d > --max-queued %d" % (what, n, cap)
