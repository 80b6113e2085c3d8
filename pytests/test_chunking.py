"""Random chunking: however the client splits its writes and reads, and however it pauses, the
echo equals the input (hypothesis; each example on a new connection)."""
import random
import socket
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wirelib import connect

pytestmark = [pytest.mark.wire]

MiB = 1 << 20
TOTAL_CAP = 3 * MiB  # bytes per example, so an example stays short
PAUSE_BUDGET = 3.0  # seconds of pauses per side and example: 1-byte reads with pauses end too
PAUSES = st.sampled_from([0, 0, 0, 0, 0.001, 0.005, 0.02, 0.05])
WRITES = st.lists(st.tuples(st.integers(1, MiB), PAUSES), min_size=1, max_size=16)
READS = st.lists(st.tuples(st.integers(1, MiB), PAUSES), min_size=1, max_size=16)


def chunked_echo(addr, seed, writes, reads):
    plan, total = [], 0
    for size, pause in writes:
        size = min(size, TOTAL_CAP - total)
        if size <= 0:
            break
        plan.append((size, pause))
        total += size
    data = random.Random(seed).randbytes(total)
    s = connect(addr, timeout=30)
    got = bytearray()
    err = []

    def reader():
        i, paused = 0, 0.0
        try:
            while len(got) < total:
                size, pause = reads[i % len(reads)]
                i += 1
                if pause and paused < PAUSE_BUDGET:
                    time.sleep(pause)
                    paused += pause
                b = s.recv(size)
                if not b:
                    err.append("EOF after %d of %d bytes" % (len(got), total))
                    return
                got.extend(b)
        except OSError as e:
            err.append(repr(e))

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    off, paused, extra = 0, 0.0, b""
    try:
        for size, pause in plan:
            s.sendall(data[off:off + size])
            off += size
            if pause and paused < PAUSE_BUDGET:
                time.sleep(pause)
                paused += pause
        t.join(60)
        if not t.is_alive() and not err:
            # Nothing more than the input comes back: our FIN, then the server's.
            s.shutdown(socket.SHUT_WR)
            s.settimeout(15)
            while True:
                b = s.recv(65536)
                if not b:
                    break
                extra += b
    finally:
        s.close()
    assert not t.is_alive(), "echo incomplete after 60 s: %d of %d bytes" % (len(got), total)
    assert not err, err
    assert len(got) == total
    assert not extra, "%d bytes more than were sent came back" % len(extra)
    assert bytes(got) == data, "first difference at byte %d" % next(
        i for i in range(total) if got[i] != data[i])


COMMON = dict(deadline=None, database=None, print_blob=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                     HealthCheck.data_too_large])


@pytest.mark.timeout(300)
@settings(max_examples=40, **COMMON)
@given(seed=st.integers(0, 2**32 - 1), writes=WRITES, reads=READS)
def test_random_chunking_echo_equals_input(echo_server, seed, writes, reads):
    chunked_echo(echo_server, seed, writes, reads)


@pytest.mark.slow
@pytest.mark.timeout(900)
@settings(max_examples=200, **COMMON)
@given(seed=st.integers(0, 2**32 - 1), writes=WRITES, reads=READS)
def test_random_chunking_many_examples(echo_server, seed, writes, reads):
    chunked_echo(echo_server, seed, writes, reads)
