"""Backpressure: a client that stops reading while it sends 64 MiB. The server must stop taking
its bytes (bounded queue) and finish the transfer when the client reads again."""
import os
import threading
import time

import pytest

from wirelib import connect, events_with, recv_exact, sha, wait_stalled

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
    in_flight, _ = slow_reader(echo_server)
    # Everything between the two applications: both sides' kernel buffers and the server's queue.
    assert in_flight < 64 * MiB


@pytest.mark.needs("max-queued")
@pytest.mark.timeout(240)
def test_slow_reader_queue_stays_under_max_queued(spawn, target):
    limit = 256 * 1024
    srv = spawn(("max-queued", limit), trace=target.has("trace"))
    slow_reader(srv.addr)
    time.sleep(0.3)
    srv.stop()
    seen = []
    stats = srv.stats() or {}
    if "peak_queued" in stats:
        seen.append(("stats peak_queued", stats["peak_queued"]))
    queued = [e["queued"] for e in events_with(srv.trace(), "queued")
              if isinstance(e.get("queued"), int)]
    if queued:
        seen.append(("trace queued max", max(queued)))
    if not seen:
        pytest.skip("the server reports no queued bytes (stats peak_queued= or trace "
                    "\"queued\"): only the transfer could be checked")
    for what, n in seen:
        assert n <= limit, "%s = %d > --max-queued %d" % (what, n, limit)
