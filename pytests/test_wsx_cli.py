"""wsx-echo's own command line (not wire behaviour): skipped for other servers."""
import subprocess

import pytest

from conftest import start_wsx_echo, wsx_echo_argv
from wirelib import connect, recv_exact

pytestmark = pytest.mark.timeout(120)


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
    stats = server.stats()  # the exit line: `stats:` (first wsx-echo) or `final:` (engine)
    assert stats is not None and stats.get("accepted") == 1, server.output()

@pytest.mark.parametrize("args, needle", [
    (["--bogus"], "--bogus"),
    (["--listen", "1.2.3:80"], "1.2.3:80"),
    (["--listen", "127.0.0.1:70000"], "127.0.0.1:70000"),
    (["--accepts", "0"], "--accepts"),
    (["--buffer-size", "12ab"], "--buffer-size"),
    (["--listen"], "--listen"),
    (["--initial-data", "99999", "--buffer-size", "1024"], "--initial-data"),
    # No accept waits for data, so there is nothing to time out: an error, not a silent no-op.
    (["--initial-data", "0", "--accept-timeout", "5"], "--accept-timeout"),
    # An option without a value given one: that is the error, not the option's existence.
    (["--version=1"], "--version takes no value"),
    (["--help="], "--help takes no value"),
    # A listener needs a real address of one family, not an IPv4 address in IPv6 clothes.
    (["--listen", "[::ffff:127.0.0.1]:0"], "IPv4-mapped"),
])
def test_bad_usage_exits_2_naming_the_option(wsx_only, args, needle):

    p = subprocess.run(wsx_echo_argv(*args), capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert needle in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr

def test_trace_into_a_directory_exits_1_saying_so(wsx_only, tmp_path):
    p = subprocess.run(wsx_echo_argv("--listen", "127.0.0.1:0", "--trace", str(tmp_path)),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert "is a directory" in p.stderr and "listening on" not in p.stdout, p.stderr


def test_address_in_use_exits_1(wsx_only, echo_server):

    host, port = echo_server
    p = subprocess.run(wsx_echo_argv("--listen", "%s:%d" % (host, port)), capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert "address already in use" in p.stderr, p.stderr
    # The busy address second: no "listening on" line for the first, the server never served.
    p = subprocess.run(wsx_echo_argv("--listen", "127.0.0.1:0", "--listen", "%s:%d" % (host, port)),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert "listening on" not in p.stdout, p.stdout
