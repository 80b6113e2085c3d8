"""Echo on the wire: what any echo server must do, checked byte for byte."""
import os
import random
import socket
import struct
import threading

import pytest

from wirelib import connect, echo_stream, many_echo, recv_exact, sha

pytestmark = [pytest.mark.wire, pytest.mark.timeout(120)]

MiB = 1 << 20


def test_one_byte(echo_server):
    with connect(echo_server) as s:
        s.sendall(b"\x00")
        assert recv_exact(s, 1) == b"\x00"
        s.sendall(b"\xff")
        assert recv_exact(s, 1) == b"\xff"


def check_integrity(addr, size):
    data = os.urandom(size)
    got = echo_stream(addr, data, chunk=MiB, timeout=240)
    assert len(got) == len(data), "echoed %d of %d bytes" % (len(got), len(data))
    assert sha(got) == sha(data), "echo differs from the input (sha256)"


@pytest.mark.timeout(240)
def test_64_mib_integrity(echo_server):
    check_integrity(echo_server, 64 * MiB)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_256_mib_integrity(echo_server):
    check_integrity(echo_server, 256 * MiB)


def test_garbage_binary_every_byte_value(echo_server):
    """All 256 byte values, in every position mod 256, then random garbage with NULs, CR/LF
    and 0xFF runs: an echo server must not treat any byte specially."""
    data = bytes(range(256)) * 64 + bytes(reversed(range(256))) * 64
    data += b"\r\n\x00\xff" * 1000 + b"\x00" * 5000 + b"\xff" * 5000 + os.urandom(MiB)
    got = echo_stream(echo_server, data, chunk=1000)
    assert got == data


def test_pipelined_small_writes(echo_server):
    """Thousands of writes of 1-12 bytes, none waiting for its echo (Nagle off)."""
    msgs = [struct.pack("!I", i) + b"x" * (i % 9) for i in range(5000)]
    data = b"".join(msgs)
    assert echo_stream(echo_server, data, chunk=5) == data
    rng = random.Random(7)
    sizes, i = [], 0
    while i < len(data):
        n = rng.randint(1, 12)
        sizes.append(data[i:i + n])
        i += n
    # one write per message: sendall of each piece on its own
    s = connect(echo_server)
    got = bytearray()
    t = threading.Thread(target=lambda: got.extend(recv_exact(s, len(data))), daemon=True)
    t.start()
    for piece in sizes:
        s.sendall(piece)
    t.join(60)
    s.close()
    assert not t.is_alive(), "echo of %d pipelined writes incomplete: %d of %d bytes" % (
        len(sizes), len(got), len(data))
    assert bytes(got) == data


def test_ping_pong_many_round_trips(echo_server):
    """Strict request/response: each small message waits for its echo."""
    with connect(echo_server) as s:
        for i in range(2000):
            msg = struct.pack("!I", i) * (1 + i % 4)
            s.sendall(msg)
            assert recv_exact(s, len(msg)) == msg, "round %d" % i


def test_concurrent_clients(echo_server):
    results = {}

    def one(i):
        data = os.urandom(10000 + 997 * i)
        try:
            results[i] = echo_stream(echo_server, data, chunk=4096) == data
        except (OSError, AssertionError) as e:
            results[i] = repr(e)

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert len(results) == 32 and all(r is True for r in results.values()), results


@pytest.mark.timeout(180)
def test_parallel_large_streams(echo_server):
    """8 connections each streaming 8 MiB at once: every one byte-exact."""
    results = {}

    def one(i):
        data = os.urandom(8 * MiB)
        try:
            results[i] = sha(echo_stream(echo_server, data, chunk=256 * 1024)) == sha(data)
        except (OSError, AssertionError) as e:
            results[i] = repr(e)

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(150)
    assert len(results) == 8 and all(r is True for r in results.values()), results


def run_many(addr, n):
    rng = random.Random(n)
    payloads = [rng.randbytes(rng.randint(1, 2048)) for _ in range(n)]
    got = many_echo(addr, payloads, timeout=120)
    bad = [i for i, p in enumerate(payloads) if got.get(i) != p]
    assert not bad, "%d of %d connections echoed wrong data (first: %d)" % (len(bad), n, bad[0])


@pytest.mark.timeout(180)
def test_1000_concurrent_connections(echo_server):
    """1,000 connections open at once, each sending its own payload and reading its echo."""
    run_many(echo_server, 1000)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_3000_concurrent_connections(echo_server):
    run_many(echo_server, 3000)


def test_nagle_and_small_client_buffers(echo_server):
    """Nagle on, small buffers on our side: the echo is still exact."""
    s = socket.create_connection(echo_server, timeout=30)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    data = os.urandom(100000)
    got = bytearray()
    t = threading.Thread(target=lambda: got.extend(recv_exact(s, len(data))), daemon=True)
    t.start()
    for i in range(0, len(data), 777):
        s.sendall(data[i:i + 777])
    t.join(60)
    s.close()
    assert bytes(got) == data


@pytest.mark.timeout(90)
def test_idle_connections_are_kept(echo_server):
    """With no option given, a connection that has talked and then idles for 15 s, and one that
    went quiet halfway through a message, are still served afterwards: an echo server has no
    reason to drop a client for thinking."""
    talked = connect(echo_server, timeout=30)
    halfway = connect(echo_server, timeout=30)
    try:
        talked.sendall(b"hello")
        assert recv_exact(talked, 5) == b"hello"
        halfway.sendall(b"first half, ")
        assert recv_exact(halfway, 12) == b"first half, "
        threading.Event().wait(15)
        talked.sendall(b"still here")
        assert recv_exact(talked, 10) == b"still here", "the idle client lost its connection"
        halfway.sendall(b"second half")
        assert recv_exact(halfway, 11) == b"second half"
    finally:
        talked.close()
        halfway.close()


@pytest.mark.timeout(180)
def test_connection_churn(echo_server):
    """6,000 connections in turn, from 4 threads: connect, echo, close; every fourth resets
    instead. Nothing may be refused or lost, and 500 connections at once are served after."""
    errors = []

    def churn(tid, n):
        try:
            for i in range(n):
                msg = struct.pack("!II", tid, i)
                with socket.create_connection(echo_server, timeout=30) as s:
                    s.sendall(msg)
                    got = recv_exact(s, len(msg))
                    if got != msg:
                        errors.append("thread %d cycle %d: got %r" % (tid, i, got))
                        return
                    if i % 4 == 3:
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except (OSError, AssertionError) as e:
            errors.append("thread %d cycle %d: %r" % (tid, i, e))

    threads = [threading.Thread(target=churn, args=(t, 1500), daemon=True) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(150)
    assert not any(t.is_alive() for t in threads), "churn did not finish in 150 s"
    assert not errors, errors[:5]
    run_many(echo_server, 500)
