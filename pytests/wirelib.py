"""Client side of the wire tests: plain sockets, every wait bounded."""
import errno
import hashlib
import os
import selectors
import socket
import struct
import threading
import time

RESET_ERRNOS = (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED)


def connect(addr, timeout=30, family=None):
    if family is None:
        s = socket.create_connection(addr, timeout=timeout)
    else:
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(addr)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def connect_with_data(addr, data, timeout=30):
    """Data sent with the connect: sendto(MSG_FASTOPEN) where the kernel has it (the bytes go in
    the SYN if the server's listener takes TCP Fast Open, else right behind the handshake), else
    connect and send at once."""
    family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    flag = getattr(socket, "MSG_FASTOPEN", None)
    sent = 0
    if flag is not None:
        try:
            sent = s.sendto(data, flag, addr)  # returns once connected
        except OSError:
            s.close()
            s = socket.socket(family, socket.SOCK_STREAM)
            s.settimeout(timeout)
            sent = 0
    if sent == 0:
        s.connect(addr)
    s.sendall(data[sent:])
    return s


def abort(s):
    """Abortive close: SO_LINGER {1, 0} then close sends RST."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(min(1 << 20, n - len(buf)))
        if not chunk:
            raise AssertionError("EOF after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


def read_to_close(s, timeout=20):
    """Read until the server closes. Returns (bytes read, 'eof' | 'reset'); raises
    AssertionError if the connection is still open after `timeout` seconds."""
    end = time.monotonic() + timeout
    got = bytearray()
    while True:
        left = end - time.monotonic()
        if left <= 0:
            raise AssertionError("connection still open after %.0f s (%d bytes read)"
                                 % (timeout, len(got)))
        s.settimeout(left)
        try:
            b = s.recv(1 << 20)
        except socket.timeout:
            continue
        except OSError as e:
            if e.errno in RESET_ERRNOS:
                return bytes(got), "reset"
            raise
        if not b:
            return bytes(got), "eof"
        got += b


def sha(b):
    return hashlib.sha256(b).hexdigest()


def echo_stream(addr, data, chunk=65536, timeout=120, family=None):
    """Send data while a reader thread collects the echo, then FIN; returns what came back
    before the server's EOF."""
    s = connect(addr, timeout=timeout, family=family)
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

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        view = memoryview(data)
        for i in range(0, len(data), chunk):
            s.sendall(view[i:i + chunk])
        s.shutdown(socket.SHUT_WR)
        t.join(timeout)
    finally:
        s.close()
    assert not t.is_alive(), "no EOF from the server within %d s of our FIN" % timeout
    assert not err, err
    return bytes(got)


def ping(addr, payload=b"ping", timeout=10):
    """One short echo on a new connection."""
    with connect(addr, timeout=timeout) as s:
        s.sendall(payload)
        return recv_exact(s, len(payload)) == payload


class Pinger:
    """A background client that keeps echoing small messages on one connection, and new
    connections, to show the server keeps serving others. Records failures."""

    def __init__(self, addr, period=0.1):
        self.addr = addr
        self.period = period
        self.rounds = 0
        self.errors = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        try:
            with connect(self.addr, timeout=10) as s:
                i = 0
                while not self._stop.is_set():
                    msg = struct.pack("!Q", i) + os.urandom(24)
                    s.sendall(msg)
                    if recv_exact(s, len(msg)) != msg:
                        self.errors.append("wrong echo in round %d" % i)
                        return
                    if i % 5 == 0 and not ping(self.addr, timeout=10):
                        self.errors.append("a new connection got a wrong echo")
                        return
                    i += 1
                    self.rounds = i
                    self._stop.wait(self.period)
        except (OSError, AssertionError) as e:
            self.errors.append(repr(e))

    def stop(self):
        self._stop.set()
        self._t.join(30)
        assert not self._t.is_alive(), "pinger stuck"
        assert not self.errors, "another client was not served: %s" % self.errors
        assert self.rounds > 0, "another client never got an echo"
        return self.rounds


def many_echo(addr, payloads, timeout=60):
    """Open one connection per payload, all at once (non-blocking), send every payload and read
    its echo concurrently. Returns {index: echoed bytes}; raises on timeout."""
    sel = selectors.DefaultSelector()
    family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    state = {}
    socks = []
    try:
        for i, p in enumerate(payloads):
            s = socket.socket(family, socket.SOCK_STREAM)
            s.setblocking(False)
            err = s.connect_ex(addr)
            if err not in (0, errno.EINPROGRESS):
                raise OSError(err, "connect %d: %s" % (i, os.strerror(err)))
            socks.append(s)
            state[s] = [i, p, 0, bytearray()]
            sel.register(s, selectors.EVENT_WRITE | selectors.EVENT_READ)
        left = len(payloads)
        end = time.monotonic() + timeout
        results = {}
        while left:
            if time.monotonic() > end:
                raise AssertionError("%d of %d connections unfinished after %d s"
                                     % (left, len(payloads), timeout))
            for key, ev in sel.select(1):
                s = key.fileobj
                i, p, off, got = state[s]
                if ev & selectors.EVENT_WRITE and off < len(p):
                    try:
                        state[s][2] = off = off + s.send(p[off:off + 65536])
                    except BlockingIOError:
                        pass
                    if off == len(p):
                        sel.modify(s, selectors.EVENT_READ)
                if ev & selectors.EVENT_READ:
                    try:
                        b = s.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError as e:
                        raise AssertionError("connection %d: %r after %d bytes" % (i, e, len(got)))
                    if not b:
                        raise AssertionError("connection %d: EOF after %d of %d bytes"
                                             % (i, len(got), len(p)))
                    got += b
                    if len(got) >= len(p):
                        results[i] = bytes(got)
                        sel.unregister(s)
                        left -= 1
        return results
    finally:
        sel.close()
        for s in socks:
            s.close()


def wait_stalled(progress, quiet=0.5, limit=20):
    """Wait until progress() stops changing for `quiet` seconds. Returns True if it stalled
    within `limit` seconds."""
    end = time.monotonic() + limit
    last, since = progress(), time.monotonic()
    while time.monotonic() < end:
        time.sleep(0.05)
        now = progress()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return True
    return False


def events_with(events, key, value=None):
    """Trace events that have `key` (equal to `value` if given), looking one level into nested
    objects too."""
    out = []
    for ev in events:
        for obj in [ev] + [v for v in ev.values() if isinstance(v, dict)]:
            if key in obj and (value is None or obj[key] == value):
                out.append(obj)
                break
    return out
