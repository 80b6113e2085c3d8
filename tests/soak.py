#!/usr/bin/env python3
"""Soak and fault run against wsx-echo: well-behaved clients checked byte for byte while others
misbehave (RST storms, connect-and-send-nothing floods, slow readers, half-open clients, clients
that vanish mid-send, bursts above --max-conns).

Pass when: every well-behaved client got every byte back in order; the server kept accepting
(no accept probe waited longer than --max-gap seconds); its memory at the end is within 10% of
after warm-up; its final stats add up (accepted = closed + open, open = 0 after the stop).

  tests/soak.py [--seconds 600] [--build build] [--max-gap 1.0] [--hold N]

--hold N (default: 10000 for runs of 5 minutes or more, else 0): after the mixed load, hold N
connections open at once and have each echo once.
"""
import argparse
import hashlib
import os
import random
import re
import resource
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WINE_RUN = os.path.join(ROOT, "cmake", "wine-run")


class Soak:
    def __init__(self, args):
        self.args = args
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.errors = []
        self.count = {}
        self.max_gap = 0.0
        self.addr = None

    def bump(self, key, n=1):
        with self.lock:
            self.count[key] = self.count.get(key, 0) + n

    def error(self, what):
        with self.lock:
            self.errors.append(what)
        self.stop.set()

    def connect(self, timeout=10):
        s = socket.create_connection(self.addr, timeout=timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def loop(self, name, fn, pause=0.0):
        def run():
            rnd = random.Random(hash(name))
            while not self.stop.is_set():
                try:
                    fn(rnd)
                except (OSError, AssertionError) as e:
                    if name == "good":
                        self.error("%s: %r" % (name, e))
                    elif isinstance(e, AssertionError):
                        self.bump(name + "-wrong")  # got bytes back, not the right ones
                    else:
                        self.bump(name + "-error")  # refused or reset (a burst over the limit)
                if pause:
                    self.stop.wait(pause)
        t = threading.Thread(target=run, name=name, daemon=True)
        t.start()
        return t

    # Well-behaved: random chunks out, everything back in order, orderly end.
    def good(self, rnd):
        data = rnd.randbytes(rnd.randint(1, 512 * 1024))
        s = self.connect(timeout=30)
        got = bytearray()

        ended = []

        def reader():
            try:
                while True:
                    b = s.recv(1 << 20)
                    if not b:
                        break
                    got.extend(b)
            except OSError as e:
                ended.append(e)
        r = threading.Thread(target=reader, daemon=True)
        r.start()
        i = 0
        try:
            while i < len(data):
                n = rnd.randint(1, 64 * 1024)
                s.sendall(data[i:i + n])
                i += n
            s.shutdown(socket.SHUT_WR)
        except OSError as e:
            ended.append(e)
        r.join(60)
        s.close()
        if not got and not r.is_alive() and ended:
            # Reset before any echo: refused over --max-conns during a burst. Try again.
            self.bump("good-refused")
            return
        if ended:
            raise AssertionError("connection failed after %d of %d bytes echoed: %r"
                                 % (len(got), len(data), ended[0]))
        if r.is_alive() or hashlib.sha256(got).digest() != hashlib.sha256(data).digest():
            raise AssertionError("echo of %d bytes came back as %d bytes%s" % (
                len(data), len(got), " (no EOF)" if r.is_alive() else ", different"))
        self.bump("good-bytes", len(data))
        self.bump("good-conns")

    def rst_storm(self, rnd):
        s = self.connect()
        s.sendall(rnd.randbytes(rnd.randint(1, 4096)))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        self.bump("rst")

    def no_send_flood(self, rnd):
        socks = [self.connect() for _ in range(10)]
        self.stop.wait(self.args.accept_timeout + 2.5)
        for s in socks:
            s.settimeout(0.2)
            try:
                if s.recv(1) == b"":
                    self.bump("reaped-seen")
            except (socket.timeout, OSError):
                pass
            s.close()
        self.bump("no-send", len(socks))

    def slow_reader(self, rnd):
        data = rnd.randbytes(4 * 1024 * 1024)
        s = self.connect(timeout=60)
        send_err = []
        def send_all():
            try:
                s.sendall(data)
            except OSError as e:
                send_err.append(e)  # refused or reset during a burst (Linux then reads EOF)
        sender = threading.Thread(target=send_all, daemon=True)
        sender.start()
        time.sleep(2.0)  # not reading: the server must stop reading us, not grow
        got = bytearray()
        while len(got) < len(data):
            b = s.recv(1 << 20)
            if not b:
                break
            got.extend(b)
        sender.join(30)
        s.close()
        if bytes(got) != data[:len(got)]:
            raise AssertionError("slow reader got wrong data")
        if len(got) < len(data):
            if send_err:  # the reset's error went to the sender; the reader saw an EOF
                raise send_err[0]
            raise AssertionError("slow reader got %d of %d bytes, then EOF" % (len(got), len(data)))
        self.bump("slow")

    def half_open(self, rnd):
        s = self.connect()
        data = rnd.randbytes(rnd.randint(1, 100000))
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        got = bytearray()
        while True:
            b = s.recv(65536)
            if not b:
                break
            got.extend(b)
        s.close()
        if bytes(got) != data:
            raise AssertionError("half-open client lost data")
        self.bump("half-open")

    def vanish(self, rnd):
        s = self.connect()
        s.sendall(rnd.randbytes(rnd.randint(1, 300000)))
        s.close()  # never reads the echo
        self.bump("vanish")

    def burst(self, rnd):
        socks = []
        for _ in range(self.args.max_conns + 50):
            try:
                s = self.connect(timeout=5)
                s.sendall(b"b")
                socks.append(s)
            except OSError:
                break
        time.sleep(0.5)
        for s in socks:
            s.close()
        self.bump("burst", len(socks))

    def probe(self, rnd):
        t0 = time.monotonic()
        s = self.connect(timeout=30)
        s.sendall(b"p")
        ok = s.recv(1) == b"p"
        s.close()
        gap = time.monotonic() - t0
        with self.lock:
            self.max_gap = max(self.max_gap, gap)
        if not ok:
            self.bump("probe-lost")


def hold_many(addr, n):
    """Open n connections, then echo 4 bytes on each while all are open. Returns (held, echoed)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, n + 1024)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(30)
            s.connect(addr)
            socks.append(s)
        for i, s in enumerate(socks):
            s.sendall(struct.pack("!I", i))
        echoed = 0
        for i, s in enumerate(socks):
            got = b""
            while len(got) < 4:
                b = s.recv(4 - len(got))
                if not b:
                    break
                got += b
            echoed += got == struct.pack("!I", i)
        return len(socks), echoed
    finally:
        for s in socks:
            s.close()


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--max-gap", type=float, default=1.0)
    ap.add_argument("--max-conns", type=int, default=300)
    ap.add_argument("--accept-timeout", type=int, default=2)
    ap.add_argument("--hold", type=int, default=None)
    args = ap.parse_args()
    if args.hold is None:
        args.hold = 10000 if args.seconds >= 300 else 0

    subprocess.run([WINE_RUN, "--start-server"], check=True)
    exe = os.path.join(args.build, "server", "wsx-echo.exe")
    proc = subprocess.Popen(
        [WINE_RUN, exe, "--listen", "127.0.0.1:0", "--threads", "2",
         "--max-conns", str(args.max_conns), "--accept-timeout", str(args.accept_timeout),
         "--accepts", "32"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    STARTED.append(proc)
    lines = []
    found = threading.Event()
    soak = Soak(args)

    def read():
        for line in proc.stdout:
            lines.append(line.rstrip("\r\n"))
            m = re.search(r"listening on ([\d.]+):(\d+)", line)
            if m:
                soak.addr = (m.group(1), int(m.group(2)))
                found.set()
    threading.Thread(target=read, daemon=True).start()
    if not found.wait(60):
        proc.kill()
        sys.exit("soak: wsx-echo did not start:\n" + "\n".join(lines))

    threads = [soak.loop("good", soak.good) for _ in range(6)]
    threads += [soak.loop("rst", soak.rst_storm, 0.01), soak.loop("no-send", soak.no_send_flood),
                soak.loop("slow", soak.slow_reader, 1.0), soak.loop("half-open", soak.half_open),
                soak.loop("vanish", soak.vanish, 0.05), soak.loop("burst", soak.burst, 5.0),
                soak.loop("probe", soak.probe, 0.25)]
    start = time.monotonic()
    warm = None
    while time.monotonic() - start < args.seconds and not soak.stop.is_set():
        time.sleep(1)
        if warm is None and time.monotonic() - start >= min(30, args.seconds / 4):
            warm = rss_kib(proc.pid)
            print("soak: warmed up, wsx-echo RSS %s KiB" % warm, flush=True)
    soak.stop.set()
    for t in threads:
        t.join(90)
    time.sleep(3)  # let the server settle: closes, reaper, pools
    end_rss = rss_kib(proc.pid)
    proc.send_signal(signal.SIGINT)
    try:
        rc = proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = None
    time.sleep(0.2)
    held = echoed = 0
    hold_s = 0.0
    if args.hold:
        # A fresh instance without --max-conns: N connections open at once, each echoing once.
        # Accepts complete on connect (--initial-data 0): the clients connect all before sending.
        hp = subprocess.Popen([WINE_RUN, exe, "--listen", "127.0.0.1:0", "--threads", "2",
                               "--accepts", "256", "--initial-data", "0",
                               "--accept-timeout", "0"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
        STARTED.append(hp)
        line = hp.stdout.readline()
        m = re.search(r"listening on ([\d.]+):(\d+)", line)
        t0 = time.monotonic()
        try:
            held, echoed = hold_many((m.group(1), int(m.group(2))), args.hold)
        except (OSError, AttributeError) as e:
            soak.errors.append("holding %d connections: %r" % (args.hold, e))
        hold_s = time.monotonic() - t0
        hp.send_signal(signal.SIGINT)
        try:
            hp.wait(60)
        except subprocess.TimeoutExpired:
            hp.kill()
    final = [l for l in lines if l.startswith("final:")]
    stats = {k: int(v) for k, v in re.findall(r"([a-z_-]+)=(\d+)", final[-1])} if final else {}

    failures = list(soak.errors)
    # A misbehaving client may be refused (RST during a burst), never given wrong or cut data.
    failures += ["%d %s" % (n, k) for k, n in sorted(soak.count.items()) if k.endswith("-wrong")]
    if rc != 0:
        failures.append("wsx-echo exit code %r" % rc)
    if not stats:
        failures.append("no final stats line")
    elif stats["accepted"] != stats["closed"] + stats["open"] or stats["open"] != 0:
        failures.append("stats do not add up: accepted %d, closed %d, open %d" % (
            stats["accepted"], stats["closed"], stats["open"]))
    if soak.max_gap > args.max_gap:
        failures.append("an accept probe waited %.2f s (limit %.2f s)" % (soak.max_gap, args.max_gap))
    if warm and end_rss and end_rss > warm * 1.10:
        failures.append("memory grew: %d KiB after warm-up, %d KiB at the end" % (warm, end_rss))
    if args.hold and (held != args.hold or echoed != args.hold):
        failures.append("held %d of %d connections, %d echoed" % (held, args.hold, echoed))
    if soak.count.get("good-conns", 0) == 0:
        failures.append("no well-behaved client completed")

    print("soak: %.0f s; well-behaved: %d connections, %.1f MiB echoed byte-exact" % (
        args.seconds, soak.count.get("good-conns", 0), soak.count.get("good-bytes", 0) / 2**20))
    print("soak: misbehaving: " + ", ".join("%s %d" % kv for kv in sorted(soak.count.items())
                                             if not kv[0].startswith("good")))
    print("soak: slowest accept probe %.3f s; wsx-echo RSS %s KiB after warm-up, %s KiB at the end"
          % (soak.max_gap, warm, end_rss))
    if args.hold:
        print("soak: %d connections held at once, %d echoed once each, in %.1f s"
              % (held, echoed, hold_s))
    print("soak: server " + (final[-1] if final else "(no final line)"))
    if failures:
        print("soak: FAILED\n  " + "\n  ".join(failures))
        sys.exit(1)
    print("soak: passed")


STARTED = []  # server processes of this run, stopped by PID if the run is cut short


def _stop_started():
    for p in STARTED:
        if p.poll() is None:
            p.kill()


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))
    try:
        main()
    finally:
        _stop_started()
