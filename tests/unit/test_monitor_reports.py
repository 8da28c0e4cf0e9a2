"""The monitor's reports never block it: a core that does not read gets the first ones
the socket holds, then (past MAX_QUEUED_REPORTS waiting) the latest, and sees the gap in
the sequence numbers. Real sockets; no process is started."""

from __future__ import annotations

import selectors
import socket

from svtree import wire
from svtree.messages import decode_report
from svtree.monitor import MAX_QUEUED_REPORTS, Monitor, Stdio
from svtree.plan import ServiceSpec

SPEC = ServiceSpec(name="s", path="/tmp", run="/bin/true")


def monitor_with_a_core_that_does_not_read(first_seq=1):
    core, mine = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    mine.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    mine.setblocking(False)
    core.setblocking(False)
    m = Monitor(SPEC, mine, Stdio(1, 2), {}, first_seq)
    m.sel.register(mine, selectors.EVENT_READ, "core")
    return m, core


def received(core) -> "list[int]":
    seqs = []
    while True:
        try:
            seqs.append(decode_report(core.recv(wire.MAX_DATAGRAM)).seq)
        except BlockingIOError:
            return seqs


def test_reports_wait_in_a_bounded_queue_and_collapse_to_the_latest():
    m, core = monitor_with_a_core_that_does_not_read(first_seq=41)
    for _ in range(500):
        m.report(force=True)  # never blocks
        assert len(m.outbox) <= MAX_QUEUED_REPORTS
    assert m.seq == 540 and m.outbox
    sent = received(core)  # what the socket held
    assert sent == list(range(41, 41 + len(sent))) and len(sent) < 100
    queued = []
    while m.outbox:  # room again: the queue goes out, oldest first
        m.send_reports()
        queued += received(core)
    assert queued[-1] == 540 and queued == sorted(queued) and not m.outbox
    assert queued[0] > sent[-1] + 1, "the collapse shows as a gap in the numbers"
    assert m.sel.get_key(m.sock).events == selectors.EVENT_READ  # no writer left behind


def test_a_core_that_reads_misses_nothing():
    m, core = monitor_with_a_core_that_does_not_read()
    seqs = []
    for _ in range(300):
        m.report(force=True)
        seqs += received(core)
        m.send_reports()
    seqs += received(core)
    assert seqs == list(range(1, 301))


def test_a_report_is_sent_only_when_something_changed():
    m, core = monitor_with_a_core_that_does_not_read()
    m.report()
    m.report()
    m.report(error="fork: Resource temporarily unavailable")
    reports = [decode_report(core.recv(wire.MAX_DATAGRAM)) for _ in range(2)]
    assert [r.seq for r in reports] == [1, 2] and reports[1].error
    assert received(core) == []
