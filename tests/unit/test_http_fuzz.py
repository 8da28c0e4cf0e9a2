"""The HTTP endpoint (svtree/core/http.py) against random bytes, in pieces, on a real
loop and real sockets: it never raises into the loop, every connection ends (answered or
closed) once the client has sent all it will, and no connection is left behind.

The system-level fuzz (svtree as PID 1, supervision on time) is
tests/system/test_observability_abuse.py; this one is fast, so it tries many more inputs.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from svtree.core import http as httpmod

from harness import http_exchange
from loop_thread import LoopThread

pytestmark = pytest.mark.timeout(120)


class Provider:
    def livez(self):
        return None

    def readyz(self):
        return "web is starting, wanted up"

    def status(self, reply):
        reply(b"[]\n")

    def metrics(self, reply):
        reply("# nothing\n")


class Log:
    def info(self, event, **kw):
        pass

    warning = error = info


@pytest.fixture(scope="module")
def server():
    runner = LoopThread()
    srv = httpmod.start(runner.loop, Provider(), "127.0.0.1:0", Log())
    runner.start()
    srv.errors = runner.errors
    yield srv
    runner.stop()
    srv.close()


REQUEST = st.sampled_from([
    b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n",
    b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /status HTTP/1.0\r\n\r\n",
    b"POST /readyz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    b"GET /readyz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
])
JUNK = st.binary(max_size=300)
STREAM = st.lists(st.one_of(REQUEST, JUNK), min_size=1, max_size=6).map(b"".join)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=STREAM, cuts=st.lists(st.integers(0, 2000), max_size=5), close_write=st.booleans())
def test_any_bytes_in_any_pieces_end_answered_or_closed(server, data, cuts, close_write):
    pieces, last = [], 0
    for cut in sorted(c for c in cuts if c < len(data)):
        pieces.append(data[last:cut])
        last = cut
    pieces.append(data[last:])
    http_exchange(server.port, pieces, close_write)
    assert not server.errors, server.errors


def test_every_fuzzed_connection_is_gone_afterwards(server):
    deadline = time.monotonic() + httpmod.REQUEST_DEADLINE + httpmod.LINGER + 2
    while (server.clients or server.turned_away) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not server.clients and not server.turned_away
    assert not server.errors, server.errors
