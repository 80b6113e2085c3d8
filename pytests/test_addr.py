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


def listener_port(srv, host, n=1):
    """The port of the server's listener on `host` (a server may also listen elsewhere)."""
    srv.wait_listeners(n)
    ports = [p for h, p in srv.listeners if h == host]
    assert ports, "no listener on %s:\n%s" % (host, srv.output())
    return ports[0]


def test_ipv6_loopback(spawn):
    srv = spawn(("listen", "[::1]:0"))
    port = listener_port(srv, "::1")
    data = os.urandom(1 << 20)
    assert echo_stream(("::1", port), data, family=socket.AF_INET6) == data


def test_dual_stack_serves_ipv4_and_ipv6(spawn):
    srv = spawn(("listen", "[::]:0"))
    port = listener_port(srv, "::1")  # [::] is reached on ::1
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


@pytest.mark.needs("multi-listen")
def test_ipv4_and_ipv6_listeners_side_by_side(spawn):
    srv = spawn(("listen", "127.0.0.1:0"), ("listen", "[::1]:0"))
    ports = {host: listener_port(srv, host, 2) for host in ("127.0.0.1", "::1")}
    for host, port in ports.items():
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with connect((host, port), family=family) as s:
            s.sendall(host.encode())
            assert recv_exact(s, len(host)) == host.encode()
