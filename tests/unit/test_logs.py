"""`svtree ctl logs` end to end over a real unix socket: ctl's parsing and printing
(svtree/ctl.py) against the core's streaming answer (svtree/core/logreply.py) over log
buffers (svtree/core/logbuffer.py), the loop running in a thread of its own as it runs
alone in PID 1. What reaches the buffers from real services is tested with svtree as
PID 1 in tests/system/test_observability.py."""

from __future__ import annotations

import io
import os
import socket
import sys
import tempfile
import threading
import time

import pytest

from svtree import ctl, wire
from svtree.core import logreply
from svtree.core.logbuffer import MARKER, STDERR, STDOUT, LogBook
from svtree.core.logreply import LogsReply, validate
from svtree.core.loop import Loop

pytestmark = pytest.mark.timeout(60)


# --- ctl's command line --------------------------------------------------------------

@pytest.mark.parametrize("argv,fields", [
    (["logs"], {"names": [], "follow": False}),
    (["logs", "web", "db", "-n", "5", "-f"], {"names": ["web", "db"], "lines": 5, "follow": True}),
    (["logs", "-n5", "web"], {"names": ["web"], "lines": 5, "follow": False}),
    (["logs", "--lines=0", "--follow"], {"names": [], "lines": 0, "follow": True}),
    (["logs", "--lines", "7", "--json"], {"names": [], "lines": 7, "follow": False}),
])
def test_logs_requests(argv, fields):
    req = ctl.parse(argv)["request"]
    assert req == {"v": wire.PROTOCOL, "verb": "logs", **fields}


@pytest.mark.parametrize("argv,message", [
    (["logs", "-n", "x"], '-n takes a number of lines, not "x"'),
    (["logs", "-n", "-3"], '-n takes a number of lines, not "-3"'),
    (["logs", "-n"], "-n needs a value"),
    (["status", "-f"], "-n and -f are options of logs, not of status"),
    (["wait", "--up", "web", "-n", "3"], "-n and -f are options of logs, not of wait"),
])
def test_logs_usage_errors(argv, message):
    with pytest.raises(ctl.Usage, match=message.replace("(", r"\(")):
        ctl.parse(argv)


def test_the_server_checks_the_fields_too():
    assert validate({"lines": 3, "follow": True}) == (3, True)
    assert validate({}) == (None, False)
    for bad in ({"lines": -1}, {"lines": True}, {"lines": "3"}, {"follow": 1}):
        with pytest.raises(ValueError):
            validate(bad)


# --- the core's side over a real socket ---------------------------------------------

class Core:
    """A loop in a thread, a control-like socket that hands each `logs` request to a
    LogsReply, and a way to add lines from the loop's own thread."""

    def __init__(self, book: LogBook) -> None:
        self.book = book
        self.errors = []
        self.loop = Loop(lambda what, e: self.errors.append((what, e)))
        self.dir = tempfile.mkdtemp(prefix="svtree-logs-")
        self.path = os.path.join(self.dir, "sock")
        self.lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.lsock.bind(self.path)
        self.lsock.listen(8)
        self.lsock.setblocking(False)
        self.loop.add_reader(self.lsock, self.accept)
        self.replies = []
        self.closed = []
        self.jobs = []  # callables to run in the loop's thread
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        self.loop.add_reader(self.wake_r, self.run_jobs)
        self.turns = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            self.loop.run_once()
            self.turns += 1

    def call(self, fn):
        """Run fn in the loop's thread; wait for it."""
        done = threading.Event()
        self.jobs.append(lambda: (fn(), done.set()))
        os.write(self.wake_w, b"x")
        assert done.wait(10)

    def run_jobs(self):
        os.read(self.wake_r, 4096)
        while self.jobs:
            self.jobs.pop(0)()

    def accept(self):
        sock, _ = self.lsock.accept()
        sock.settimeout(5)
        req = wire.decode(sock.recv(65536).split(b"\n")[0])
        sock.setblocking(False)
        last, follow = validate(req)
        self.replies.append(LogsReply(self.loop, sock, self.book, req["names"], last, follow,
                                      self.closed.append))

    def close(self):
        self.stop.set()
        os.write(self.wake_w, b"x")
        self.thread.join(5)
        self.lsock.close()
        assert not self.errors, self.errors


def filled_book() -> LogBook:
    book = LogBook(100)
    book.add("web", STDOUT, b"web 1\nweb 2\n", 2, 1000.0)
    book.add("db", STDOUT, b"db 1\n", 1, 1000.5)
    book.add("web", STDERR, b"web err \xff\xfe\n", 1, 1001.0)
    book.add_line("web", MARKER, b"--- web restarted (exit 1) ---", 1002.0)
    book.add("db", STDOUT, b"db 2\n", 1, 1003.0)
    return book


@pytest.fixture
def core():
    c = Core(filled_book())
    yield c
    c.close()


def run_ctl(core, *args):
    """ctl.main in this thread, its stdout and stderr captured as bytes."""
    out, err = io.BytesIO(), io.BytesIO()
    real = sys.stdout, sys.stderr
    wrappers = io.TextIOWrapper(out, write_through=True), io.TextIOWrapper(err, write_through=True)
    sys.stdout, sys.stderr = wrappers
    try:
        code = ctl.main(["--socket", core.path, "logs", *args])
        for w in wrappers:
            w.flush()
        values = out.getvalue(), err.getvalue()
    finally:
        sys.stdout, sys.stderr = real
        for w in wrappers:
            w.detach()
    return (code, *values)


def test_every_service_merged_in_time_order_streams_apart(core):
    code, out, err = run_ctl(core)
    assert code == 0
    assert out == (b"web | web 1\nweb | web 2\ndb | db 1\n--- web restarted (exit 1) ---\ndb | db 2\n")
    assert err == b"web | web err \xff\xfe\n"  # the bytes it wrote, on stderr


def test_one_service_without_prefix_and_n_lines_of_each(core):
    code, out, err = run_ctl(core, "web", "-n", "2")
    assert (code, out, err) == (0, b"--- web restarted (exit 1) ---\n", b"web err \xff\xfe\n")
    code, out, _ = run_ctl(core, "-n", "1")
    assert out == b"--- web restarted (exit 1) ---\ndb | db 2\n"
    assert run_ctl(core, "-n", "0")[:2] == (0, b"")


def test_json_lines(core):
    code, out, err = run_ctl(core, "web", "--json")
    rows = [wire.decode(line) for line in out.splitlines()]
    assert code == 0 and err == b""
    assert rows == [
        {"service": "web", "stream": "stdout", "time": "1970-01-01T00:16:40.000000Z", "line": "web 1"},
        {"service": "web", "stream": "stdout", "time": "1970-01-01T00:16:40.000000Z", "line": "web 2"},
        {"service": "web", "stream": "stderr", "time": "1970-01-01T00:16:41.000000Z", "line": "web err \\xff\\xfe"},
        {"service": "web", "stream": "svtree", "time": "1970-01-01T00:16:42.000000Z",
         "line": "--- web restarted (exit 1) ---"},
    ]


def connect(core, req: dict) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(core.path)
    s.sendall(wire.encode_line({"v": 1, "verb": "logs", **req}))
    return s


def read_messages(s, until, timeout=10.0):
    """JSON lines from s until `until(messages)` holds."""
    s.settimeout(timeout)
    buf, msgs = b"", []
    while not until(msgs):
        data = s.recv(65536)
        assert data, f"closed; got {msgs}"
        lines = (buf + data).split(b"\n")
        buf = lines.pop()
        msgs += [wire.decode(line) for line in lines]
    return msgs


def lines_of(msgs):
    return [line for m in msgs if "lines" in m for line in m["lines"]]


def test_follow_gets_new_lines_of_the_services_it_follows_until_svtree_ends(core):
    s = connect(core, {"names": ["web"], "lines": 0, "follow": True})
    assert read_messages(s, lambda m: m) == [{"ok": True}]
    core.call(lambda: core.book.add("db", STDOUT, b"not followed\n", 1, 2000.0))
    core.call(lambda: core.book.add("web", STDOUT, b"new 1\n", 1, 2001.0))
    core.call(lambda: core.book.add_line("web", MARKER, b"--- web restarted (exit 0) ---", 2002.0))
    core.call(lambda: core.book.add("web", STDOUT, b"new 2\n", 1, 2003.0))
    msgs = read_messages(s, lambda m: len(lines_of(m)) >= 3)
    assert lines_of(msgs) == ["new 1", "--- web restarted (exit 0) ---", "new 2"]
    core.call(lambda: core.replies[-1].end("svtree is shutting down"))
    assert read_messages(s, lambda m: m and "end" in m[-1])[-1] == {"end": True, "reason": "svtree is shutting down"}
    assert s.recv(10) == b""
    s.close()


def test_following_every_service_takes_in_services_a_reload_adds(core):
    s = connect(core, {"names": [], "lines": 0, "follow": True})
    read_messages(s, lambda m: m)
    core.call(lambda: core.book.add("added", STDOUT, b"hello\n", 1, 2000.0))
    assert lines_of(read_messages(s, lambda m: lines_of(m))) == ["hello"]
    s.close()


def test_a_follower_that_does_not_read_holds_nothing_back_and_is_told_what_it_missed(core):
    core.book.resize(1000)
    s = connect(core, {"names": ["web"], "lines": 0, "follow": True})
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    read_messages(s, lambda m: m)
    line = b"x" * 200 + b"\n"
    # 20,000 lines (4 MB) while it reads nothing: far more than its socket and the
    # buffer (1000 lines) hold. Each add returns at once.
    slowest = 0.0

    def flood():
        nonlocal slowest
        for i in range(200):
            t0 = time.perf_counter()
            core.book.add("web", STDOUT, line * 100, 100, 3000.0 + i)
            slowest = max(slowest, time.perf_counter() - t0)

    core.call(flood)
    for _ in range(20):  # the loop goes on serving while the follower is stuck
        t0 = time.monotonic()
        core.call(lambda: None)
        assert time.monotonic() - t0 < 0.5
    assert slowest < 0.05
    msgs = read_messages(s, lambda m: sum(len(x.get("lines", ())) for x in m) + sum(
        x.get("dropped", 0) for x in m) >= 20000)
    dropped = sum(m.get("dropped", 0) for m in msgs)
    got = len(lines_of(msgs))
    assert got + dropped == 20000 and dropped > 10000 and got >= 1000
    assert lines_of(msgs)[-1] == "x" * 200
    s.close()


def test_a_reader_without_follow_that_reads_nothing_is_closed(core, monkeypatch):
    monkeypatch.setattr(logreply, "STALL", 0.3)
    big = LogBook(100000)
    big.add("web", STDOUT, (b"y" * 1000 + b"\n") * 20000, 20000, 1.0)  # 20 MB
    core.call(lambda: setattr(core, "book", big))
    s = connect(core, {"names": [], "follow": False})
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    deadline = time.monotonic() + 10
    while not core.closed and time.monotonic() < deadline:
        time.sleep(0.05)
    assert core.closed and core.closed[0] is core.replies[-1]
    s.close()


def test_a_client_that_hangs_up_is_forgotten(core):
    s = connect(core, {"names": ["web"], "follow": True})
    read_messages(s, lambda m: m)
    s.close()
    deadline = time.monotonic() + 10
    while not core.closed and time.monotonic() < deadline:
        time.sleep(0.02)
    assert core.closed and core.book.watchers == []


def test_ctl_says_so_when_svtree_hangs_up_before_the_end(core):
    def hang_up():
        deadline = time.monotonic() + 10
        while not core.replies and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # ctl has read what was there
        core.call(lambda: core.replies[-1].close())

    threading.Thread(target=hang_up, daemon=True).start()
    code, out, err = run_ctl(core, "-f", "web")
    assert (code, err) == (1, b"web err \xff\xfe\nsvtree ctl: logs: svtree closed the connection\n")
    assert out == b"web 1\nweb 2\n--- web restarted (exit 1) ---\n"
