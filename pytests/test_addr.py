"""IPv6 and dual-stack listeners."""
import os
import socket

import pytest

from wirelib import connect, echo_stream, recv_exact

pytestmark = [pytest.mark.timeout(120), pytest.mark.needs("listen")]


def have_ipv6_loopback():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.fixture(autouse=True)
def _ipv6():
    if not have_ipv6_loopback():
        pytest.skip("this host has no IPv6 loopback (::1)")


def test_ipv6_loopback(spawn):
    srv = spawn(("listen", "[::1]:0"))
    assert srv.host == "::1", srv.output()
    data = os.urandom(1 << 20)
    assert echo_stream(("::1", srv.port), data, family=socket.AF_INET6) == data


def test_dual_stack_serves_ipv4_and_ipv6(spawn):
    srv = spawn(("listen", "[::]:0"))
    port = srv.port
    data = os.urandom(300000)
    assert echo_stream(("::1", port), data, family=socket.AF_INET6) == data
    assert echo_stream(("127.0.0.1", port), data, family=socket.AF_INET) == data
    # Both at once, on one listener.
    with connect(("::1", port), family=socket.AF_INET6) as a, \
            connect(("127.0.0.1", port), family=socket.AF_INET) as b:
        a.sendall(b"six")
        b.sendall(b"four")
        assert recv_exact(b, 4) == b"four"
        assert recv_exact(a, 3) == b"six"


def test_ipv4_and_ipv6_listeners_side_by_side(spawn):
    srv = spawn(("listen", "127.0.0.1:0"), ("listen", "[::1]:0"))
    assert srv.wait_listeners(2) and len(srv.listeners) == 2, (
        "expected two 'listening on' lines:\n" + srv.output())
    for host, port in srv.listeners:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with connect((host, port), family=family) as s:
            s.sendall(host.encode())
            assert recv_exact(s, len(host)) == host.encode()
