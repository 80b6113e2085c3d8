"""Black-box fixtures: an echo server to talk to over loopback.

By default the fixture starts wsx-echo under Wine on port 0 and reads its `listening on` line.
  --server-cmd "CMD"       start another echo server; it must print "listening on HOST:PORT"
  --server-addr HOST:PORT  use one that is already running (nothing is started or stopped)
"""
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("WSX_BUILD", os.path.join(ROOT, "build"))
WINE_RUN = os.path.join(ROOT, "cmake", "wine-run")
ECHO_EXE = os.path.join(BUILD, "server", "wsx-echo.exe")
LISTENING = re.compile(r"listening on (\[[^\]]+\]|[^\s:]+):(\d+)")


def pytest_addoption(parser):
    parser.addoption("--server-cmd", default=None, help="command that starts an echo server")
    parser.addoption("--server-addr", default=None, help="HOST:PORT of a running echo server")


def pytest_configure(config):
    config.addinivalue_line("markers", "wire: pure black-box behaviour on the wire")
    config.addinivalue_line("markers", "wsx_only: needs wsx-echo itself (its CLI)")


class Server:
    """A started echo server: its address, and its output kept for failure reports."""

    def __init__(self, argv, env=None):
        self.argv = argv
        self.lines = []
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=env, text=True, errors="replace")
        self._found = threading.Event()
        self.host = self.port = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._found.wait(60):
            self.stop()
            raise RuntimeError("no 'listening on' line within 60 s from %r; output:\n%s"
                               % (argv, self.output()))

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\r\n"))
            m = LISTENING.search(line)
            if m and not self._found.is_set():
                self.host = m.group(1).strip("[]")
                self.port = int(m.group(2))
                self._found.set()
        self._found.set()

    def output(self):
        return "\n".join(self.lines)

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=15):
        """SIGINT (Wine turns it into a console Ctrl-C), then kill if it does not exit."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(5)
        return self.proc.returncode


def wsx_echo_argv(*args):
    if not os.path.exists(ECHO_EXE):
        pytest.exit("wsx-echo.exe not found at %s: run `make build` first" % ECHO_EXE, 2)
    return [WINE_RUN, ECHO_EXE, *args]


def start_wsx_echo(*args):
    subprocess.run([WINE_RUN, "--start-server"], check=True)
    return Server(wsx_echo_argv(*args))


@pytest.fixture(scope="module")
def echo_server(request):
    """(host, port) of the server under test, started once per module."""
    addr = request.config.getoption("--server-addr")
    if addr:
        host, _, port = addr.rpartition(":")
        yield host.strip("[]"), int(port)
        return
    cmd = request.config.getoption("--server-cmd")
    if cmd:
        server = Server(shlex.split(cmd))
    else:
        server = start_wsx_echo("--listen", "127.0.0.1:0")
    yield server.host, server.port
    alive = server.alive()
    rc = server.stop()
    if not alive:
        sys.stderr.write("echo server died during the tests (rc=%s); output:\n%s\n"
                         % (rc, server.output()))
        pytest.fail("the echo server exited during the tests")


@pytest.fixture
def wsx_only(request):
    if request.config.getoption("--server-cmd") or request.config.getoption("--server-addr"):
        pytest.skip("tests wsx-echo's own command line")


@pytest.fixture
def deadline():
    """Seconds left helper for loops that must bound their own time."""
    start = time.monotonic()
    return lambda limit: limit - (time.monotonic() - start)
