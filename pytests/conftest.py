"""Black-box fixtures: the echo server under test, and fresh instances of it for tests that need
special options.

Targets (pick one; the default is wsx-echo):
  (default)                 wsx-echo under Wine on 127.0.0.1:0; capabilities read from its --help
  --server-cmd "CMD"        start another echo server. It must print "listening on HOST:PORT", or
                            take the port from a `{port}` placeholder in CMD (a free port is put
                            there; if it exits because another process took that port meanwhile,
                            it is started again on another), or listen on the fixed --server-port.
                            An `{addr}` placeholder gets the address to listen on: the first
                            `listen` a test asks for, else HOST:--server-port when that is given,
                            else 127.0.0.1:0. SIGINT at the stop goes to CMD's process group.
  --server-addr HOST:PORT   a server that is already running: nothing is started or stopped, so
                            only tests that need no options and no stop run.
  --server-caps LIST        what a --server-cmd server can do, comma-separated; each item is NAME
                            or NAME=TEMPLATE, TEMPLATE being the argument(s) that turn it on with
                            `{}` for the value (default: wsx-echo's option, see CAPS below);
                            a word `env:VAR=...` sets an environment variable instead.
  --slow                    also run the long variants (marker `slow`).

A capability the target lacks makes the tests that need it skip with the reason. The server output
(stats) and trace of every server started here are written under the pytest temporary directory and
kept, with their path in the summary, when a test failed while that server ran.
"""
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("WSX_BUILD", os.path.join(ROOT, "build"))
WINE_RUN = os.path.join(ROOT, "cmake", "wine-run")
ECHO_EXE = os.path.join(BUILD, "server", "wsx-echo.exe")
LISTENING = re.compile(r"listening on (\[[^\]]+\]|[^\s:]+):(\d+)")
STATS_LINE = re.compile(r"^(stats|final):\s")  # periodic lines, and the exit line if labelled
STATS_PAIR = re.compile(r"([A-Za-z_][\w-]*)=(\d+)\b")

# Capability -> the wsx-echo option that provides it (and the default template for --server-caps).
# `stats` (a final "stats: key=N ..." line on stop) and `wine` (the server runs under Wine 8.0)
# take no option.
CAPS = {
    "listen": "--listen {}",              # listen on a given ADDR:PORT ([::1]:0, [::]:0 dual-stack)
    "initial-data": "--initial-data {}",  # accept completes with the client's first BYTES (0 = on connect)
    "accepts": "--accepts {}",            # accepts kept posted per listener
    "reaper": "--accept-timeout {}",      # close a client that sent nothing within SECONDS
    "max-conns": "--max-conns {}",        # serve at most N connections, refuse the others
    "max-queued": "--max-queued {}",      # bytes queued per connection at most (backpressure)
    "trace": "--trace {}",                # write JSON-lines events to FILE
    "threads": "--threads {}",            # worker threads
    "idle-timeout": "--idle-timeout {}",  # close a connection idle for SECONDS
    "multi-listen": None,  # `listen` more than once: one server on several addresses
    "stats": None,
    "wine": None,
}
WSX_ALWAYS = {"multi-listen", "stats", "wine"}  # wsx-echo prints stats on stop, runs under Wine


def pytest_addoption(parser):
    g = parser.getgroup("wsx", "echo server under test")
    g.addoption("--server-cmd", default=None, help="command that starts an echo server")
    g.addoption("--server-addr", default=None, help="HOST:PORT of a running echo server")
    g.addoption("--server-port", type=int, default=None,
                help="fixed port of a --server-cmd server that does not print its port")
    g.addoption("--server-host", default="127.0.0.1",
                help="host to reach a --server-cmd server on when it does not print one")
    g.addoption("--server-caps", default="",
                help="capabilities of a --server-cmd server: NAME[=TEMPLATE],... (see CAPS)")
    g.addoption("--slow", action="store_true", default=False, help="also run tests marked slow")


def pytest_configure(config):
    for line in [
        "wire: pure black-box behaviour on the wire",
        "trace: needs the server's trace (capability `trace`)",
        "slow: long variant, run with --slow",
        "wine_deviation(item): asserts a Wine 8.0 behaviour that differs from Windows "
        "(docs/semantics.md item)",
        "needs(*caps): capabilities the target must have, else the test skips",
        "wsx_only: needs wsx-echo itself (its CLI)",
    ]:
        config.addinivalue_line("markers", line)
    config._wsx_kept = []
    # Tests hold up to 3,000 client sockets at once: take the whole fd allowance.
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY
                                                        else max(soft, 65536), hard))
    except (ImportError, ValueError, OSError):
        pass  # not on this OS, or not allowed: the big tests say so when they run out


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(60))
        if item.get_closest_marker("trace") is not None:
            item.add_marker(pytest.mark.needs("trace"))


# ---------------------------------------------------------------------------------------------
# Server processes


class ServerExited(RuntimeError):
    """The server exited before it was listening."""


class Server:
    """A started echo server: its listeners, its output, its trace file, its exit code."""

    def __init__(self, argv, env=None, port=None, host="127.0.0.1", trace=None, name="server",
                 wait=60):
        self.argv = argv
        self.name = name
        self.trace_path = trace
        self.lines = []
        self.listeners = []
        self.stopped = False
        self.stop_rc = None  # what stop() returned: the exit code, None if it had to be killed
        self.probes = 0  # connections made only to see the server is up (it may count them)
        # Own process group: a Ctrl-C at the terminal reaches pytest, not the server directly.
        group = (dict(creationflags=subprocess.CREATE_NEW_PROCESS_GROUP) if os.name == "nt"
                 else dict(start_new_session=True))
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=env, text=True, errors="replace", **group)
        self._found = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if port is not None:
            self._wait_connectable(host, port, wait)
        elif not self._found.wait(wait) or not self.listeners:
            self.kill()
            raise RuntimeError("no 'listening on' line within %d s from %r; output:\n%s"
                               % (wait, argv, self.output()))
        # Let every listener's line arrive (they are printed together).
        time.sleep(0.05)
        self.host, self.port = self.listeners[0]

    def wait_listeners(self, n, timeout=10):
        """Wait until `n` 'listening on' lines have come (a server prints one per listener)."""
        end = time.monotonic() + timeout
        while len(self.listeners) < n and time.monotonic() < end and self.alive():
            time.sleep(0.05)
        return len(self.listeners) >= n

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\r\n"))
            m = LISTENING.search(line)
            if m:
                host = m.group(1).strip("[]")
                # A wildcard listener is reached on the loopback address of its family.
                host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
                self.listeners.append((host, int(m.group(2))))
                self._found.set()
        self._found.set()

    def _wait_connectable(self, host, port, wait):
        end = time.monotonic() + wait
        while True:
            if self.proc.poll() is not None:
                self._reader.join(5)
                raise ServerExited("server exited (rc=%s) before listening on %s:%d; output:\n%s"
                                   % (self.proc.returncode, host, port, self.output()))
            try:
                socket.create_connection((host, port), timeout=1).close()
                self.probes += 1
                # Another process may hold the port (a {port} taken since we found it free): a
                # server that failed to bind it exits, give it a moment to.
                time.sleep(0.3)
                if self.proc.poll() is None:
                    break
            except OSError:
                if time.monotonic() > end:
                    self.kill()
                    raise RuntimeError("nothing listening on %s:%d within %d s" % (host, port, wait))
                time.sleep(0.1)
        self.listeners.append((host, port))

    @property
    def addr(self):
        return self.host, self.port

    def output(self):
        return "\n".join(self.lines)

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=20):
        """SIGINT (Wine turns it into a console Ctrl-C; on Windows, CTRL_BREAK to the server's
        group), then kill if it does not exit in time. Returns the exit code, or None if it had
        to be killed."""
        self.stopped = True
        if self.proc.poll() is None:
            self._signal(signal.CTRL_BREAK_EVENT if os.name == "nt" else signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                self._reader.join(5)
                self.stop_rc = None
                return None
        self._end_group()
        self._reader.join(5)
        self.stop_rc = self.proc.returncode
        return self.proc.returncode

    def _signal(self, sig):
        """To the server's process group, which we created for it: a server started by a wrapper
        (`sh -c`, a run script, `cargo run`) gets it too, not only the wrapper. (Wine's own
        wineserver and services run in sessions of their own.)"""
        if os.name != "nt":
            try:
                os.killpg(self.proc.pid, sig)
                return
            except OSError:
                pass  # the group is gone; the process may linger as a zombie
        self.proc.send_signal(sig)

    def _end_group(self):
        """The wrapper has exited: kill what it left running in its group (by the group we made)."""
        if os.name == "nt":
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except OSError:
            pass  # nothing left

    def kill(self):
        if self.proc.poll() is None:
            self._signal(signal.SIGKILL)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self._end_group()

    def stats(self):
        """The counters of the last `final:` line, else of the last `stats:` line, as a dict of
        ints (every key=N in the line), or None."""
        found = [line.strip() for line in self.lines if STATS_LINE.match(line.strip())]
        finals = [line for line in found if line.startswith("final:")]
        if not found:
            return None
        line = (finals or found)[-1]
        return {k: int(v) for k, v in STATS_PAIR.findall(line)}

    def trace(self):
        """Every JSON object of the trace file (lines that do not parse are skipped)."""
        events = []
        if self.trace_path and os.path.exists(self.trace_path):
            with open(self.trace_path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    try:
                        ev = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(ev, dict):
                        events.append(ev)
        return events


def wsx_echo_argv(*args):
    if not os.path.exists(ECHO_EXE):
        pytest.exit("wsx-echo.exe not found at %s: run `make build` first" % ECHO_EXE, 2)
    return [WINE_RUN, ECHO_EXE, *args]


_wine_started = False


def start_wine_server():
    global _wine_started
    if not _wine_started:
        subprocess.run([WINE_RUN, "--start-server"], check=True, timeout=300)
        _wine_started = True


_direct = []  # servers started by start_wsx_echo, outside the fixtures


def start_wsx_echo(*args, **kw):
    start_wine_server()
    srv = Server(wsx_echo_argv(*args), **kw)
    _direct.append(srv)
    return srv


@pytest.fixture(autouse=True)
def _no_server_left_behind():
    """A test that started wsx-echo by hand and failed before stopping it: kill it (by its PID)
    so that it does not hold its port and its Wine process into the next tests."""
    yield
    while _direct:
        srv = _direct.pop()
        if srv.alive():
            srv.kill()


def _bracket(host):
    return "[%s]" % host if ":" in host else host


def _port_taken(port, host="127.0.0.1"):
    """Whether something else holds `port` now (a bind without SO_REUSEADDR fails)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
            return False
        except OSError:
            return True


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    with socket.socket(family) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# The target: what is tested, what it can do, how to start another instance


def parse_caps(text):
    caps = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        name, eq, template = item.partition("=")
        name = name.strip()
        if name not in CAPS:
            raise pytest.UsageError("--server-caps: unknown capability %r (known: %s)"
                                    % (name, ", ".join(sorted(CAPS))))
        caps[name] = template.strip() if eq else CAPS[name]
    return caps


def wsx_help_caps():
    """wsx-echo's capabilities: an option in its --help is a capability."""
    start_wine_server()
    p = subprocess.run(wsx_echo_argv("--help"), capture_output=True, text=True, timeout=60)
    options = set(re.findall(r"(--[a-z][a-z0-9-]*)", p.stdout))
    caps = {name: tpl for name, tpl in CAPS.items() if tpl and tpl.split()[0] in options}
    if "trace" not in caps and "WSX_TRACE" in p.stdout:
        caps["trace"] = "env:WSX_TRACE={}"  # the library's switch, if --help documents it
    caps.update({name: None for name in WSX_ALWAYS})
    return caps


class Target:
    """The server under test: kind 'wsx', 'cmd' or 'addr'."""

    def __init__(self, config):
        self.config = config
        self.cmd = config.getoption("--server-cmd")
        self.addr = config.getoption("--server-addr")
        self.fixed_port = config.getoption("--server-port")
        self.host = config.getoption("--server-host")
        if self.cmd and self.addr:
            raise pytest.UsageError("give --server-cmd or --server-addr, not both")
        if self.addr:
            self.kind, self.caps = "addr", {}
            if config.getoption("--server-caps"):
                raise pytest.UsageError("--server-caps needs --server-cmd: a running server "
                                        "cannot be restarted with options")
        elif self.cmd:
            self.kind, self.caps = "cmd", parse_caps(config.getoption("--server-caps"))
        else:
            if config.getoption("--server-caps"):
                raise pytest.UsageError("--server-caps describes a --server-cmd server; without "
                                        "--server-cmd the suite tests wsx-echo")
            self.kind, self.caps = "wsx", None  # read from --help on first use
        self.artifacts = None

    @property
    def name(self):
        return {"wsx": "wsx-echo", "cmd": "the --server-cmd server",
                "addr": "the --server-addr server"}[self.kind]

    def has(self, cap):
        if self.caps is None:
            self.caps = wsx_help_caps()
        return cap in self.caps

    def why_not(self, cap):
        """None if the target has the capability, else the reason to skip."""
        if cap == "spawn":
            if self.kind == "addr":
                return "needs its own server instance; --server-addr targets a running server"
            if self.kind == "cmd" and self.fixed_port is not None and "{port}" not in self.cmd:
                return "needs its own server instance; the --server-cmd server has a fixed port"
            return None
        if cap == "stop":
            if self.kind == "addr":
                return "stops the server; --server-addr targets a server it did not start"
            return None
        if self.kind == "addr":
            return "needs capability %r; a --server-addr server's options are unknown" % cap
        if self.has(cap):
            return None
        if self.kind == "wsx":
            tpl = CAPS[cap]
            return ("wsx-echo lacks capability %r (no %s in its --help)"
                    % (cap, tpl.split()[0] if tpl else cap))
        return "the --server-cmd server lacks capability %r (declare it with --server-caps)" % cap

    def option_args(self, cap, value, env=None):
        """The arguments that turn `cap` on with `value`; template words `env:NAME=VALUE` go to
        `env` instead."""
        tpl = self.caps[cap]
        if tpl is None:
            raise ValueError("capability %r takes no option" % cap)
        args = []
        for word in shlex.split(tpl):
            word = word.replace("{}", str(value))
            if word.startswith("env:") and "=" in word:
                name, _, val = word[4:].partition("=")
                if env is None:
                    raise ValueError("capability %r is set by the environment" % cap)
                env[name] = val
            else:
                args.append(word)
        return args

    def start(self, name, options=(), trace=False, wait=60, raw=()):
        """Start an instance. options: (capability, value) pairs. trace: write a trace file.
        raw: arguments passed as they are (wsx-echo's own options, for wsx-only tests)."""
        artdir = os.path.join(self.artifacts, re.sub(r"[^\w.-]+", "_", name)[-120:])
        os.makedirs(artdir, exist_ok=True)
        trace_path = os.path.join(artdir, "trace.jsonl") if trace else None
        extra = []
        env = dict(os.environ)
        listen = [v for c, v in options if c == "listen"]
        options = list(options)
        cmd = self.cmd
        if self.kind == "cmd" and "{addr}" in cmd:
            # The server takes its address in its command: the first `listen` goes there, else
            # the fixed --server-port's, else port 0 (the server must then print its port).
            if listen:
                cmd = cmd.replace("{addr}", listen[0])
                options.remove(("listen", listen[0]))
            elif self.fixed_port is not None:
                cmd = cmd.replace("{addr}", "%s:%d" % (_bracket(self.host), self.fixed_port))
            else:
                cmd = cmd.replace("{addr}", "127.0.0.1:0")
        for cap, value in options:
            extra += self.option_args(cap, value, env)
        if trace_path:
            extra += self.option_args("trace", trace_path, env)
        extra += list(raw)
        if self.kind == "wsx":
            if not listen:
                extra = ["--listen", "127.0.0.1:0"] + extra
            start_wine_server()
            srv = Server(wsx_echo_argv(*extra), env=env, trace=trace_path, name=name, wait=wait)
        else:
            srv = self._start_cmd(cmd, extra, listen, env, trace_path, name, wait)
        srv.artdir = artdir
        return srv

    def _start_cmd(self, cmd, extra, listen, env, trace_path, name, wait):
        """A --server-cmd server. A `{port}` is a port that was free a moment ago: if the server
        exits because another process took it meanwhile, try again with another one."""
        for attempt in range(3):
            port, argv = None, cmd
            if "{port}" in cmd:
                port = free_port()
                argv = cmd.replace("{port}", str(port))
            elif self.fixed_port is not None:
                port = self.fixed_port
            if listen:
                port = None  # a server given --listen must print where it listens
            try:
                return Server(shlex.split(argv) + extra, env=env, port=port, host=self.host,
                              trace=trace_path, name=name, wait=wait)
            except ServerExited:
                if attempt == 2 or "{port}" not in cmd or not _port_taken(port):
                    raise
        raise AssertionError("unreachable")


def pytest_sessionstart(session):
    session.config._wsx_target = Target(session.config)


@pytest.fixture(scope="session")
def target(request, tmp_path_factory):
    t = request.config._wsx_target
    t.artifacts = str(tmp_path_factory.mktemp("servers"))
    return t


def _keep_or_clean(config, srv, failed):
    """Write the server's output next to its trace; keep both if a test failed while it ran."""
    if not hasattr(srv, "artdir"):
        return
    with open(os.path.join(srv.artdir, "output.txt"), "w") as f:
        f.write(srv.output() + "\n")
    if failed:
        config._wsx_kept.append(srv.artdir)
    else:
        shutil.rmtree(srv.artdir, ignore_errors=True)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    kept = getattr(config, "_wsx_kept", [])
    if kept:
        terminalreporter.section("server output and traces kept")
        for d in kept:
            terminalreporter.write_line(d)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
    if rep.failed:
        for srv in getattr(item, "_wsx_servers", []):
            text = srv.output()
            if len(text) > 8000:
                text = "...\n" + text[-8000:]
            rep.sections.append(("server %s %s" % (srv.name, " ".join(srv.argv[-6:])), text))


# ---------------------------------------------------------------------------------------------
# Fixtures


def _test_failed(item):
    return any(getattr(item, "rep_" + w, None) is not None and getattr(item, "rep_" + w).failed
               for w in ("setup", "call"))


@pytest.fixture(scope="module")
def _shared_server(request, target):
    """The module's server: (Server or None, (host, port))."""
    if target.kind == "addr":
        host, _, port = target.addr.rpartition(":")
        yield None, (host.strip("[]"), int(port))
        return
    failed_before = request.session.testsfailed
    srv = target.start("shared-" + request.module.__name__, trace=target.has("trace"))
    yield srv, srv.addr
    problem = None
    if not srv.alive():
        problem = "%s exited during the module (rc=%s)" % (srv.name, srv.proc.returncode)
    elif srv.stop() is None:
        problem = "%s did not stop within 20 s of SIGINT" % srv.name
    elif target.kind == "wsx" and srv.stop_rc != 0:
        problem = "%s exited %s on SIGINT, not 0" % (srv.name, srv.stop_rc)
    _keep_or_clean(request.config, srv,
                   problem is not None or request.session.testsfailed > failed_before)
    if problem:
        pytest.fail(problem + "\n" + srv.output())


@pytest.fixture
def echo_server(request, _shared_server):
    """(host, port) of the server under test, shared by a module. After each test the server
    must still be running and still echo on a new connection."""
    srv, addr = _shared_server
    if srv is not None:
        request.node._wsx_servers = getattr(request.node, "_wsx_servers", []) + [srv]
    yield addr
    if srv is not None and not srv.alive():
        pytest.fail("the echo server exited during this test (rc=%s)" % srv.proc.returncode)
    try:
        with socket.create_connection(addr, timeout=15) as s:
            s.settimeout(15)
            s.sendall(b"?")
            if s.recv(1) != b"?":
                pytest.fail("after this test the server no longer echoes")
    except OSError as e:
        pytest.fail("after this test the server no longer echoes: %r" % e)


@pytest.fixture
def spawn(request, target):
    """Start a fresh server instance: spawn(option=(cap, value), ..., trace=True).
    Stopped after the test; a death during the test is an error."""
    reason = target.why_not("spawn")
    if reason:
        pytest.skip(reason)
    started = []

    def start(*options, trace=False, wait=60, raw=()):
        if raw and target.kind != "wsx":
            pytest.skip("passes wsx-echo's own options")
        for cap, _ in options:
            r = target.why_not(cap)
            if r:
                pytest.skip(r)
        if trace:
            r = target.why_not("trace")
            if r:
                pytest.skip(r)
        srv = target.start("%s-%d" % (request.node.name, len(started)), options, trace=trace,
                           wait=wait, raw=raw)
        started.append(srv)
        request.node._wsx_servers = getattr(request.node, "_wsx_servers", []) + [srv]
        return srv

    yield start
    problems = []
    for srv in started:
        if not srv.stopped and not srv.alive():
            problems.append("%s exited during the test (rc=%s)" % (srv.name, srv.proc.returncode))
        # A test that stopped the server itself and failed has reported what the stop did.
        elif srv.stopped and _test_failed(request.node):
            pass
        # Stopped here or by the test itself: a hang or (wsx) a non-zero exit fails the test.
        elif (srv.stop_rc if srv.stopped else srv.stop()) is None:
            problems.append("%s did not stop within 20 s of SIGINT" % srv.name)
        elif target.kind == "wsx" and srv.stop_rc != 0:
            problems.append("%s exited %s on SIGINT, not 0" % (srv.name, srv.stop_rc))
        _keep_or_clean(request.config, srv, bool(problems) or _test_failed(request.node))
    if problems:
        pytest.fail("; ".join(problems) + "\n" + "\n".join(s.output() for s in started))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Skip before any fixture starts a server: slow variants, missing capabilities."""
    if item.get_closest_marker("slow") and not item.config.getoption("--slow"):
        pytest.skip("slow variant: run with --slow")
    target = item.config._wsx_target
    for mark in item.iter_markers("needs"):
        for cap in mark.args:
            reason = target.why_not(cap)
            if reason:
                pytest.skip(reason)
    if item.get_closest_marker("wine_deviation"):
        reason = target.why_not("wine")
        if reason:
            pytest.skip("asserts a Wine 8.0 behaviour: " + reason)
    if "wsx_only" in getattr(item, "fixturenames", ()) and target.kind != "wsx":
        pytest.skip("tests wsx-echo's own command line")  # before a module's server starts


@pytest.fixture
def wsx_only(request):
    if request.config._wsx_target.kind != "wsx":
        pytest.skip("tests wsx-echo's own command line")


@pytest.fixture
def deadline():
    """Seconds left helper for loops that must bound their own time."""
    start = time.monotonic()
    return lambda limit: limit - (time.monotonic() - start)
