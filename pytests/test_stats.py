"""The server's own counters (capability `stats`: a `stats: key=N ...` line on stop) agree with
what happened on the wire."""
import os
import socket
import time

import pytest

from wirelib import echo_stream, read_to_close

pytestmark = [pytest.mark.timeout(120), pytest.mark.needs("stats", "stop")]


def test_stats_agree_with_the_wire(spawn):
    srv = spawn()
    sizes = [1, 1000, 65536, 65537, 1 << 20]
    for n in sizes:
        data = os.urandom(n)
        assert echo_stream(srv.addr, data) == data
    fin_only = 3
    for _ in range(fin_only):  # connect, FIN before any data, wait for the server's EOF
        with socket.create_connection(srv.addr, timeout=10) as s:
            s.shutdown(socket.SHUT_WR)
            read_to_close(s)
    time.sleep(0.3)
    rc = srv.stop()
    st = srv.stats()
    assert st is not None, "no stats line on stop:\n" + srv.output()
    total = sum(sizes)
    # The start-up probe of a server that does not print its port counts as a FIN-only client.
    conns = len(sizes) + fin_only + srv.probes
    want = {"accepted": conns, "closed": conns,
            "bytes_in": total, "bytes_out": total}
    got = {k: st.get(k) for k in want}
    assert got == want, "stats %s, wire %s\n%s" % (got, want, srv.output())
    assert rc is not None
