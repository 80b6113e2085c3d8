"""Echo on the wire: what any echo server must do, checked byte for byte."""
import hashlib
import os
import socket
import struct
import threading

import pytest

from conftest import start_wsx_echo, wsx_echo_argv

pytestmark = pytest.mark.timeout(120)


def connect(addr, timeout=30):
    s = socket.create_connection(addr, timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(min(1 << 20, n - len(buf)))
        if not chunk:
            raise AssertionError("EOF after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


def echo_stream(addr, data, chunk=65536):
    """Send data while a reader thread collects the echo; returns what came back, then EOF."""
    s = connect(addr)
    got = bytearray()
    err = []

    def reader():
        try:
            while True:
                b = s.recv(1 << 20)
                if not b:
                    return
                got.extend(b)
        except OSError as e:
            err.append(e)

    t = threading.Thread(target=reader)
    t.start()
    for i in range(0, len(data), chunk):
        s.sendall(data[i:i + chunk])
    s.shutdown(socket.SHUT_WR)
    t.join(90)
    s.close()
    assert not t.is_alive(), "no EOF from the server after our FIN"
    assert not err, err
    return bytes(got)


@pytest.mark.wire
def test_one_byte(echo_server):
    with connect(echo_server) as s:
        s.sendall(b"\x00")
        assert recv_exact(s, 1) == b"\x00"


@pytest.mark.wire
def test_one_mebibyte_integrity(echo_server):
    data = os.urandom(1 << 20)
    got = echo_stream(echo_server, data)
    assert len(got) == len(data)
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()


@pytest.mark.wire
def test_every_byte_value(echo_server):
    data = bytes(range(256)) * 64
    assert echo_stream(echo_server, data, chunk=1000) == data


@pytest.mark.wire
def test_pipelined_small_writes(echo_server):
    msgs = [struct.pack("!I", i) + b"x" * (i % 7) for i in range(2000)]
    data = b"".join(msgs)
    assert echo_stream(echo_server, data, chunk=5) == data


@pytest.mark.wire
def test_half_close_gets_every_byte_then_eof(echo_server):
    """Client sends, shuts down its write side, and still reads the whole echo, then EOF."""
    data = os.urandom(300000)
    with connect(echo_server) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        got = bytearray()
        while True:
            b = s.recv(65536)
            if not b:
                break
            got += b
    assert bytes(got) == data


@pytest.mark.wire
def test_concurrent_clients(echo_server):
    results = {}

    def one(i):
        data = os.urandom(10000 + i)
        results[i] = echo_stream(echo_server, data, chunk=4096) == data

    threads = [threading.Thread(target=one, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert len(results) == 32 and all(results.values()), results


@pytest.mark.wire
def test_connect_and_close_at_once_then_reset_do_not_stop_service(echo_server):
    for _ in range(20):
        socket.create_connection(echo_server, timeout=10).close()
    for _ in range(20):
        s = socket.create_connection(echo_server, timeout=10)
        s.sendall(b"abc")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    with connect(echo_server) as s:
        s.sendall(b"still here")
        assert recv_exact(s, 10) == b"still here"


@pytest.mark.wire
def test_connect_then_send_later(echo_server):
    with connect(echo_server) as s:
        threading.Event().wait(0.5)
        s.sendall(b"late")
        assert recv_exact(s, 4) == b"late"


def test_listening_line_and_clean_stop(wsx_only):
    server = start_wsx_echo("--listen", "127.0.0.1:0", "--listen", "[::1]:0")
    try:
        lines = [line for line in server.lines if line.startswith("listening on ")]
        assert server.port > 0
        with connect(("127.0.0.1", server.port)) as s:
            s.sendall(b"v4")
            assert recv_exact(s, 2) == b"v4"
    finally:
        rc = server.stop()
    assert rc == 0, server.output()
    assert any(line.startswith("listening on [::1]:") for line in server.lines), server.lines
    assert len(lines) >= 1
    assert any(line.startswith("stats: accepted=1 ") for line in server.lines), server.output()


@pytest.mark.parametrize("args, needle", [
    (["--bogus"], "--bogus"),
    (["--listen", "1.2.3:80"], "1.2.3:80"),
    (["--listen", "127.0.0.1:70000"], "127.0.0.1:70000"),
    (["--accepts", "0"], "--accepts"),
    (["--buffer-size", "12ab"], "--buffer-size"),
    (["--listen"], "--listen"),
    (["--initial-data", "99999", "--buffer-size", "1024"], "--initial-data"),
])
def test_bad_usage_exits_2_naming_the_option(wsx_only, args, needle):
    import subprocess
    p = subprocess.run(wsx_echo_argv(*args), capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert needle in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_address_in_use_exits_1(wsx_only, echo_server):
    import subprocess
    host, port = echo_server
    p = subprocess.run(wsx_echo_argv("--listen", "%s:%d" % (host, port)), capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert "address already in use" in p.stderr, p.stderr
