"""CPU and memory of a service's process tree (svtree/core/resources.py): /proc/PID/stat
parsed right, a real process tree measured, and the CPU counter kept monotonic."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from svtree.core.loop import Loop
from svtree.core.resources import (
    CLK_TCK, PAGE_SIZE, ProcStat, Resources, children_map, parse_stat, read_stat, scan, tree_usage,
)

pytestmark = pytest.mark.timeout(60)


def test_parse_stat_takes_the_fields_after_the_last_parenthesis():
    fields = ["S", "42"] + ["0"] * 9 + ["100", "20", "7", "3"] + ["0"] * 6 + ["2500"] + ["0"] * 20
    data = b"1234 (we ird) (name)) " + " ".join(fields).encode() + b"\n"
    assert parse_stat(data) == ProcStat(ppid=42, ticks=120, child_ticks=10, rss_pages=2500)
    assert parse_stat(b"garbage") is None
    assert parse_stat(b"1 (x) S 0") is None


def test_read_stat_of_this_process_matches_what_the_kernel_says_elsewhere():
    st = read_stat(os.getpid())
    assert st.ppid == os.getppid()
    t = os.times()
    assert abs(st.ticks / CLK_TCK - (t.user + t.system)) < 0.05
    with open(f"/proc/{os.getpid()}/statm") as f:
        resident = int(f.read().split()[1])
    assert abs(st.rss_pages - resident) < 256  # the same counter, a moment apart
    assert read_stat(2 ** 22 + 12345) is None  # no such pid


def test_scan_sees_this_process_and_stops_at_its_limit():
    assert scan()[os.getpid()].ppid == os.getppid()
    assert len(scan(limit=3)) == 3


TREE = textwrap.dedent("""
    import os, sys, time

    def burn(seconds):
        end = time.process_time() + seconds
        while time.process_time() < end:
            pass

    a = os.fork()
    if a == 0:  # lives on: 64 MiB touched, 0.2 s of CPU
        block = bytearray(64 << 20)
        for i in range(0, len(block), 4096):
            block[i] = 1
        burn(0.2)
        os.write(1, b"a")
        time.sleep(60)
        os._exit(0)
    b = os.fork()
    if b == 0:  # ends after 0.3 s of CPU, reaped by this process (the "monitor")
        burn(0.3)
        os._exit(0)
    os.waitpid(b, 0)
    os.write(1, b"b")
    time.sleep(60)
""")


def test_a_real_tree_counts_live_descendants_and_what_the_root_reaped():
    root = subprocess.Popen([sys.executable, "-c", TREE], stdout=subprocess.PIPE, start_new_session=True)
    try:
        got = b""
        while len(got) < 2:
            got += root.stdout.read(1)
        assert sorted(got) == sorted(b"ab")
        procs = scan()
        kids = children_map(procs)
        ticks, rss = tree_usage(root.pid, procs, kids)
        cpu, memory = ticks / CLK_TCK, rss * PAGE_SIZE
        # A's 0.2 s and B's 0.3 s (each a few ticks more: start-up); not the root's own.
        assert 0.48 <= cpu < 1.5, cpu
        assert (64 << 20) <= memory < (64 << 20) + (40 << 20), memory
        assert tree_usage(2 ** 22 + 12345, procs, kids) is None
    finally:
        os.killpg(root.pid, signal.SIGKILL)
        root.wait()


class Fake:
    """A /proc to sample from: the test sets `procs` before each sample."""

    def __init__(self):
        self.procs = {}
        self.listed = 0
        self.now = 0.0
        self.monitors = {}

    def pids(self):
        self.listed += 1
        return list(self.procs)

    def stat(self, pid):
        return self.procs.get(pid)

    def clock(self):
        return self.now


def proc(ppid, ticks=0, child=0, rss=0):
    return ProcStat(ppid, ticks, child, rss)


@pytest.fixture
def loop():
    errors = []
    lp = Loop(lambda what, e: errors.append((what, e)))
    yield lp
    assert not errors


def sample(res, loop, fake, monitors):
    fake.monitors = monitors
    done = []
    res.refresh(lambda: done.append(True))
    while not done:
        loop.run_once()
    return res.usage()


def test_the_cpu_counter_carries_over_a_new_monitor_and_never_goes_back(loop):
    fake = Fake()
    res = Resources(loop, lambda: fake.monitors, pids=fake.pids, stat=fake.stat, clock=fake.clock, ttl=1.0)
    fake.procs = {100: proc(1, ticks=999, child=50), 101: proc(100, ticks=30, child=20, rss=10),
                  102: proc(101, ticks=5, rss=3)}
    u = sample(res, loop, fake, {"web": 100})["web"]
    assert u.cpu_seconds == (50 + 30 + 20 + 5) / CLK_TCK  # not the monitor's own 999
    assert u.memory_bytes == 13 * PAGE_SIZE
    fake.now = 2.0
    fake.procs = {}  # the monitor died: nothing of the service runs
    u = sample(res, loop, fake, {"web": None})["web"]
    assert (u.cpu_seconds, u.memory_bytes) == (105 / CLK_TCK, 0)
    fake.now = 4.0
    fake.procs = {200: proc(1), 201: proc(200, ticks=7, rss=1)}  # its replacement
    assert sample(res, loop, fake, {"web": 200})["web"].cpu_seconds == (105 + 7) / CLK_TCK
    fake.now = 6.0
    fake.procs = {200: proc(1)}  # 201 ended, reaped by nobody: its 7 ticks are not lost
    assert sample(res, loop, fake, {"web": 200})["web"].cpu_seconds == (105 + 7) / CLK_TCK
    fake.now = 8.0
    fake.procs = {200: proc(1, child=10)}  # a new run ended after 10 ticks
    assert sample(res, loop, fake, {"web": 200})["web"].cpu_seconds == (105 + 7 + 10) / CLK_TCK


def test_a_sample_is_reused_within_its_ttl_and_names_removed_are_forgotten(loop):
    fake = Fake()
    res = Resources(loop, lambda: fake.monitors, pids=fake.pids, stat=fake.stat, clock=fake.clock, ttl=1.0)
    fake.procs = {100: proc(1), 101: proc(100, ticks=1)}
    sample(res, loop, fake, {"a": 100, "b": None})
    fake.now = 0.5
    sample(res, loop, fake, {"a": 100})
    assert fake.listed == 1
    fake.now = 1.6
    assert set(sample(res, loop, fake, {"b": None})) == {"b"}
    assert fake.listed == 2 and set(res.carry) == {"b"}


def test_a_scan_is_spread_over_turns_of_the_loop_and_callers_join_it(loop):
    fake = Fake()
    res = Resources(loop, lambda: {"a": 1}, pids=fake.pids, stat=fake.stat, clock=fake.clock, slice_size=10)
    fake.procs = {1: proc(0)} | {p: proc(1, ticks=1) for p in range(2, 100)}
    done = []
    res.refresh(lambda: done.append(1))
    res.refresh(lambda: done.append(2))  # joins the scan under way
    turns = 0
    while len(done) < 2:
        loop.run_once()
        turns += 1
    assert fake.listed == 1 and sorted(done) == [1, 2]
    assert turns >= 9  # 99 processes, 10 a turn
    assert res.usage()["a"].cpu_seconds == 98 / CLK_TCK
