"""The HTTP endpoint (svtree/core/http.py) on a real loop and real sockets: routes,
methods, keep-alive and pipelining, and the bounds a slow or hostile client meets.

The loop runs in a thread of its own (as it runs alone in PID 1); the provider is a
plain object standing for the core (what it says is the core's business, tested with
svtree as PID 1 in tests/system/test_observability.py)."""

from __future__ import annotations

import http.client
import json
import socket
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from svtree.core import http as httpmod
from svtree.core.loop import Loop
from svtree.core.metrics import render

from loop_thread import LoopThread

pytestmark = pytest.mark.timeout(60)


class Provider:
    def __init__(self, loop):
        self.loop = loop
        self.live = None
        self.ready = "web is starting, wanted up"
        self.delay = 0.0  # seconds before status and metrics answer
        self.asked = 0
        self.big = False

    def livez(self):
        return self.live

    def readyz(self):
        return self.ready

    def _later(self, reply, value):
        self.asked += 1
        if self.delay:
            self.loop.call_later(self.delay, lambda: reply(value))
        else:
            reply(value)

    def status(self, reply):
        self._later(reply, json.dumps([{"name": "web", "state": "up"}]).encode())

    def metrics(self, reply):
        rows = [{"name": "web", "state": "up", "pid": 5, "restarts": 1, "last_exit": 0, "ready": False,
                 "start_time": 1.5, "cpu_seconds": 0.25, "memory_bytes": 1000}]
        text = render(rows, {"reloads": 3})
        if self.big:
            text += "# " + "x" * 8_000_000 + "\n"
        self._later(reply, text)


class Log:
    def __init__(self):
        self.lines = []

    def info(self, event, **kw):
        self.lines.append((event, kw))

    warning = error = info


@pytest.fixture
def served():
    runner = LoopThread()
    provider = Provider(runner.loop)
    log = Log()
    server = httpmod.start(runner.loop, provider, "127.0.0.1:0", log)
    assert log.lines == [("http_listening", {"address": f"127.0.0.1:{server.port}"})]
    runner.start()
    server.provider_ = provider
    server.runner = runner
    yield server
    runner.stop()
    server.close()
    assert not runner.errors, runner.errors


def get(server, path, method="GET", headers=None):
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    c.request(method, path, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r, body


def raw(server, data: bytes, timeout: float = 5.0) -> bytes:
    s = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    s.sendall(data)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    finally:
        s.close()
    return out


def test_livez_and_readyz(served):
    r, body = get(served, "/livez")
    assert (r.status, body) == (200, b"ok\n")
    r, body = get(served, "/readyz")
    assert (r.status, body) == (503, b"web is starting, wanted up\n")
    assert r.getheader("Content-Type") == "text/plain; charset=utf-8"
    served.provider_.ready = None
    served.provider_.live = "shutting down"
    assert get(served, "/readyz?verbose=1")[0].status == 200  # a query string is ignored
    r, body = get(served, "/livez")
    assert (r.status, body) == (503, b"shutting down\n")


def test_status_and_metrics(served):
    r, body = get(served, "/status")
    assert r.status == 200 and r.getheader("Content-Type") == "application/json"
    assert json.loads(body) == [{"name": "web", "state": "up"}]
    r, body = get(served, "/metrics")
    assert r.getheader("Content-Type") == "text/plain; version=0.0.4; charset=utf-8"
    names = {f.name for f in text_string_to_metric_families(body.decode())}
    assert {"svtree_service_up", "svtree_reloads"} <= names


def test_head_gets_the_headers_of_get_without_the_body(served):
    r_get, body = get(served, "/metrics")
    r_head, nothing = get(served, "/metrics", method="HEAD")
    assert r_head.status == 200 and nothing == b""
    assert r_head.getheader("Content-Length") == r_get.getheader("Content-Length") == str(len(body))


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_other_methods_get_405_with_allow(served, method):
    r, _ = get(served, "/livez", method=method)
    assert r.status == 405 and r.getheader("Allow") == "GET, HEAD"


def test_unknown_paths_get_404_naming_the_endpoints(served):
    r, body = get(served, "/")
    assert r.status == 404 and b"/livez, /readyz, /status, /metrics" in body
    assert get(served, "/metricsx")[0].status == 404


def test_keep_alive_and_pipelining(served):
    c = http.client.HTTPConnection("127.0.0.1", served.port, timeout=5)
    for path in ("/livez", "/status", "/metrics", "/readyz"):
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        assert r.status in (200, 503)
    c.close()
    two = b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n" * 50 + b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    out = raw(served, two)
    assert out.count(b"HTTP/1.1 200 ") == 51


def test_a_head_over_the_limit_gets_431_and_is_closed(served):
    out = raw(served, b"GET /livez HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 20000 + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")


@pytest.mark.parametrize("junk", [b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 40 + b"\r\n\r\n",
                                  b"GET\r\n\r\n", b"GET / FOO/1.1\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n"])
def test_malformed_requests_get_400(served, junk):
    out = raw(served, junk)
    assert out.startswith(b"HTTP/1.1 400 "), out[:200]  # HTTP/1.1 without Host is malformed too


def test_a_silent_client_is_closed_at_its_deadline(served, monkeypatch):
    monkeypatch.setattr(httpmod, "REQUEST_DEADLINE", 0.3)
    s = socket.create_connection(("127.0.0.1", served.port), timeout=5)
    s.sendall(b"GET /livez HTTP/1.1\r\n")  # and never the rest
    t0 = time.monotonic()
    assert s.recv(100) == b""
    assert 0.2 < time.monotonic() - t0 < 3
    s.close()


def test_the_oldest_idle_client_makes_room_and_answers_in_progress_keep_theirs(served, monkeypatch):
    monkeypatch.setattr(httpmod, "MAX_CLIENTS", 4)
    idle = [socket.create_connection(("127.0.0.1", served.port), timeout=5) for _ in range(4)]
    time.sleep(0.1)  # accepted
    assert get(served, "/livez")[0].status == 200  # evicted the oldest idle one
    assert idle[0].recv(10) == b""
    for s in idle:
        s.close()
    # Four clients whose answers are on their way (the provider takes 1 s): a fifth is turned away.
    served.provider_.delay = 1.0
    waiting = []
    for _ in range(4):
        s = socket.create_connection(("127.0.0.1", served.port), timeout=5)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        waiting.append(s)
    time.sleep(0.3)
    out = raw(served, b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 503 ") and out.endswith(b"too many clients\n")
    for s in waiting:
        assert s.recv(100).startswith(b"HTTP/1.1 200 ")
        s.close()


def test_a_client_that_does_not_read_its_answer_never_holds_the_loop(served, monkeypatch):
    monkeypatch.setattr(httpmod, "REPLY_DEADLINE", 1.0)
    served.provider_.big = True  # /metrics: 8 MB, more than the sockets hold
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.connect(("127.0.0.1", served.port))
    slow.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(0.2)  # its answer is stuck in the sockets
    for _ in range(5):
        t0 = time.monotonic()
        assert get(served, "/livez")[0].status == 200
        assert time.monotonic() - t0 < 0.5
    time.sleep(1.5)  # past its deadline: closed, whatever it had not read
    slow.settimeout(5)
    got = b""
    try:
        while chunk := slow.recv(65536):
            got += chunk
    except ConnectionResetError:
        pass
    assert got.startswith(b"HTTP/1.1 200 ") and len(got) < 8_000_000
    slow.close()


def test_a_port_in_use_is_logged_and_svtree_goes_on(served):
    log = Log()
    loop = Loop(lambda what, e: None)
    assert httpmod.start(loop, Provider(loop), f"127.0.0.1:{served.port}", log) is None
    assert log.lines[0][0] == "http_unavailable" and log.lines[0][1]["error"] == "Address already in use"


def test_ipv6_any(served):
    log = Log()
    loop = Loop(lambda what, e: None)
    try:
        server = httpmod.start(loop, Provider(loop), "[::]:0", log)
    except OSError:
        pytest.skip("no IPv6 here")
    if server is None:
        pytest.skip(f"no IPv6 here: {log.lines}")
    assert server.address == f"[::]:{server.port}"
    server.close()
