#!/usr/bin/env python3
"""An echo server on asyncio, independent of wsx: the second server the conformance suite is run
against (it shares no code with wsx-echo or the tests).

  asyncio_echo.py [--port N] [--host H] [--listen ADDR:PORT]... [--max-conns N]
                  [--accept-timeout SECONDS] [--max-queued BYTES] [--trace FILE]

Prints "listening on ADDR:PORT" per listener. --listen replaces --host/--port; [::]:PORT is
dual-stack. Backpressure: a connection stops reading while more than --max-queued bytes (default
1 MiB) wait to be sent to it. --accept-timeout closes a client that sent nothing in time.
--max-conns closes (RST) clients past the limit at once. On SIGINT or SIGTERM it closes every
connection, prints "stats: accepted=.. closed=.. bytes_in=.. bytes_out=.. refused=.. reaped=..
peak_queued=.." and exits 0. The trace is JSON lines: accept, close (with "kind": eof,
peer-reset, reaped, refused, aborted-locally, error), queued (a new per-connection peak).

Run with --server-cmd "python3 pytests/peers/asyncio_echo.py --port 0" and
--server-caps "listen,stats,max-conns,reaper,max-queued,trace".
"""
import argparse
import asyncio
import json
import signal
import socket
import sys
import time

READ_CHUNK = 65536


def parse_addr(text):
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError("%r is not ADDR:PORT" % text)
    if host.startswith("["):
        if not host.endswith("]"):
            raise argparse.ArgumentTypeError("%r is not ADDR:PORT" % text)
        host = host[1:-1]
    return host, int(port)


def fmt_addr(host, port):
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


class Echo:
    def __init__(self, args):
        self.args = args
        self.conns = set()
        self.stats = dict(accepted=0, closed=0, bytes_in=0, bytes_out=0, refused=0, reaped=0,
                          peak_queued=0)
        self.trace_file = open(args.trace, "a", buffering=1) if args.trace else None
        self.next_id = 0

    def trace(self, **ev):
        if self.trace_file:
            ev["t"] = round(time.monotonic(), 6)
            self.trace_file.write(json.dumps(ev) + "\n")


class Conn(asyncio.BufferedProtocol):
    def __init__(self, echo):
        self.echo = echo
        self.transport = None
        self.buf = bytearray(min(READ_CHUNK, echo.args.max_queued))
        self.got_any = False
        self.kind = None
        self.peak = 0
        self.reap_handle = None

    # connection life

    def connection_made(self, transport):
        e = self.echo
        self.transport = transport
        self.id = e.next_id
        e.next_id += 1
        peer = transport.get_extra_info("peername")
        if e.args.max_conns and len(e.conns) >= e.args.max_conns:
            e.stats["refused"] += 1
            self.kind = "refused"
            e.trace(event="refuse", conn=self.id, peer=str(peer))
            sock = transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            transport.abort()
            return
        e.conns.add(self)
        e.stats["accepted"] += 1
        e.trace(event="accept", conn=self.id, peer=str(peer))
        # Queue at most max_queued: pause reading while more than (max_queued - one read) wait.
        transport.set_write_buffer_limits(high=max(0, e.args.max_queued - len(self.buf)), low=0)
        if e.args.accept_timeout:
            loop = asyncio.get_running_loop()
            self.reap_handle = loop.call_later(e.args.accept_timeout, self.reap)

    def reap(self):
        if not self.got_any and self.transport and not self.transport.is_closing():
            self.kind = "reaped"
            self.echo.stats["reaped"] += 1
            self.transport.abort()

    def connection_lost(self, exc):
        e = self.echo
        if self.reap_handle:
            self.reap_handle.cancel()
        if self.kind == "refused":
            return
        if self.kind is None:
            if exc is None:
                self.kind = "eof"
            elif isinstance(exc, (ConnectionResetError, BrokenPipeError)):
                self.kind = "peer-reset"
            else:
                self.kind = "error"
        e.trace(event="close", conn=self.id, kind=self.kind, error=repr(exc) if exc else None)
        if self in e.conns:
            e.conns.discard(self)
            e.stats["closed"] += 1

    # reading and echoing

    def get_buffer(self, sizehint):
        return self.buf

    def buffer_updated(self, nbytes):
        e = self.echo
        self.got_any = True
        e.stats["bytes_in"] += nbytes
        self.transport.write(bytes(self.buf[:nbytes]))
        queued = self.transport.get_write_buffer_size()
        e.stats["bytes_out"] += nbytes  # handed to the transport, which sends all before closing
        if queued > self.peak:
            self.peak = queued
            e.stats["peak_queued"] = max(e.stats["peak_queued"], queued)
            e.trace(event="queued", conn=self.id, queued=queued)

    def eof_received(self):
        # Half-close: echo what is queued, then FIN (close() flushes the buffer first).
        self.kind = "eof"
        return False

    def pause_writing(self):
        self.transport.pause_reading()

    def resume_writing(self):
        if not self.transport.is_closing():
            self.transport.resume_reading()


async def main(args):
    echo = Echo(args)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGBREAK", None)):
        if sig is None:
            continue
        try:
            loop.add_signal_handler(sig, stop.set)
        except NotImplementedError:  # Windows
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
    servers = []
    for host, port in args.listen or [(args.host, args.port)]:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            # [::] is dual-stack; a specific IPv6 address is IPv6 only.
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if host == "::" else 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            print("asyncio_echo: %s: cannot listen: %s" % (fmt_addr(host, port), e),
                  file=sys.stderr)
            return 1
        sock.listen(1024)
        server = await loop.create_server(lambda: Conn(echo), sock=sock)
        servers.append(server)
        print("listening on %s" % fmt_addr(host, sock.getsockname()[1]), flush=True)
    await stop.wait()
    for server in servers:
        server.close()
    for c in list(echo.conns):
        c.kind = "aborted-locally"
        c.transport.abort()
    await asyncio.sleep(0)
    for server in servers:
        await server.wait_closed()
    print("stats: " + " ".join("%s=%d" % kv for kv in echo.stats.items()), flush=True)
    return 0


def cli():
    p = argparse.ArgumentParser(description="asyncio echo server (conformance peer)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7007)
    p.add_argument("--listen", type=parse_addr, action="append")
    p.add_argument("--max-conns", type=int, default=0)
    p.add_argument("--accept-timeout", type=float, default=0)
    p.add_argument("--max-queued", type=int, default=1 << 20)
    p.add_argument("--trace", default=None)
    args = p.parse_args()
    if args.max_queued < 1:
        p.error("--max-queued must be at least 1")
    sys.exit(asyncio.run(main(args)))


if __name__ == "__main__":
    cli()
