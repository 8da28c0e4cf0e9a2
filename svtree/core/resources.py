"""CPU and memory of each service's whole process tree, read from /proc.

A service's processes are exactly its monitor's descendants: the monitor is a child
subreaper, so what the service leaves behind (double-forked daemons, orphans) is
re-parented to it, not to svtree. Its CPU time is then

    the monitor's reaped children (cutime + cstime: every run that ended, finish, the
    ready_command probes, leftovers; each with what it had reaped itself)
    + every live descendant's own time and its reaped children's (utime + stime +
      cutime + cstime)

which counts each process once, ended ones included. Its memory is the RSS of its live
descendants, summed (shared pages count once per process, as `ps` shows them).

Only /proc/PID/stat is read, one read per process: it holds the parent, the CPU times
and the RSS together. The kernel fills it from counters without taking the target's
memory-map lock; smaps, smaps_rollup, cmdline and environ take that lock, and a process
stuck in a page fault on a hung filesystem holds it for as long as it is stuck: PID 1
must never wait on it. (statm is lock-free too, but its RSS is the same number, in a
second file.)

Reading /proc/PID/stat costs the kernel ~30 us a process. So the work is bounded and
spread: one pass over /proc per sample, SLICE processes per turn of the core's loop (a
few ms; fds and timers are served between slices), at most MAX_SCAN processes, and a
sample is reused for SAMPLE_TTL seconds however often `/metrics` or `ctl status` ask.
Nothing is read while nobody asks.
"""

from __future__ import annotations

import os
import time
from typing import Callable, NamedTuple

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
MAX_SCAN = 20000  # processes read per sample
SAMPLE_TTL = 1.0  # seconds a sample is reused
SLICE = 128  # processes read per turn of the loop (~4 ms)


class ProcStat(NamedTuple):
    ppid: int
    ticks: int  # utime + stime
    child_ticks: int  # cutime + cstime: the children it has reaped
    rss_pages: int


def parse_stat(data: bytes) -> "ProcStat | None":
    """/proc/PID/stat's fields. The command name (field 2) may hold spaces and
    parentheses: the fields after it start after its last ')'."""
    end = data.rfind(b")")
    if end < 0:
        return None
    f = data[end + 2:].split()
    try:
        # f[0] is field 3 (state): ppid is field 4, utime..cstime 14..17, rss 24.
        return ProcStat(int(f[1]), int(f[11]) + int(f[12]), int(f[13]) + int(f[14]), int(f[21]))
    except (IndexError, ValueError):
        return None


def read_stat(pid: int, proc: str = "/proc") -> "ProcStat | None":
    try:
        fd = os.open(f"{proc}/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None  # gone meanwhile
    try:
        return parse_stat(os.read(fd, 4096))
    except OSError:
        return None
    finally:
        os.close(fd)


def list_pids(proc: str = "/proc", limit: int = MAX_SCAN) -> "list[int]":
    try:
        names = os.listdir(proc)
    except OSError:
        return []
    return [int(n) for n in names if n.isdigit()][:limit]


def scan(proc: str = "/proc", limit: int = MAX_SCAN) -> "dict[int, ProcStat]":
    """Every process's stat (at most `limit` of them), at once."""
    out: "dict[int, ProcStat]" = {}
    for pid in list_pids(proc, limit):
        st = read_stat(pid, proc)
        if st is not None:
            out[pid] = st
    return out


def children_map(procs: "dict[int, ProcStat]") -> "dict[int, list[int]]":
    kids: "dict[int, list[int]]" = {}
    for pid, st in procs.items():
        kids.setdefault(st.ppid, []).append(pid)
    return kids


def tree_usage(root: int, procs: "dict[int, ProcStat]",
               kids: "dict[int, list[int]]") -> "tuple[int, int] | None":
    """(CPU ticks, RSS pages) of root's descendants, with what root reaped; None when
    root is not there."""
    top = procs.get(root)
    if top is None:
        return None
    ticks, rss = top.child_ticks, 0
    todo = list(kids.get(root, ()))
    while todo:
        pid = todo.pop()
        st = procs[pid]
        ticks += st.ticks + st.child_ticks
        rss += st.rss_pages
        todo.extend(kids.get(pid, ()))
    return ticks, rss


class Usage(NamedTuple):
    cpu_seconds: float
    memory_bytes: int


class Resources:
    """Samples of every service's usage, by the pid of its monitor.

    `refresh(callback)` calls back once a sample at most `ttl` old is there (at once if
    there is one; else when the scan it starts, or joins, is complete); `usage()` then
    gives it. `monitors` (called when a scan completes) maps each service's name to its
    monitor's pid, None when it has none.

    The CPU counter never goes back: a new monitor (the old one died) starts from
    nothing, and a child reaped by nobody (a parent that ignores SIGCHLD) takes its
    time with it; the last value carries over instead."""

    def __init__(self, loop, monitors: "Callable[[], dict[str, int | None]]", *,
                 pids: "Callable[[], list[int]]" = list_pids,
                 stat: "Callable[[int], ProcStat | None]" = read_stat,
                 clock: "Callable[[], float]" = time.monotonic,
                 ttl: float = SAMPLE_TTL, slice_size: int = SLICE) -> None:
        self.loop = loop
        self.monitors = monitors
        self.pids = pids
        self.stat = stat
        self.clock = clock
        self.ttl = ttl
        self.slice_size = slice_size
        self.taken: "float | None" = None  # when the last complete sample began
        self._usage: "dict[str, Usage]" = {}
        # name -> (monitor pid, ticks reported last, ticks to add to what is read now)
        self.carry: "dict[str, tuple[int | None, int, int]]" = {}
        self.waiting: "list[Callable[[], None]]" = []
        self._scan: "tuple[float, list[int], dict[int, ProcStat]] | None" = None

    def fresh(self) -> bool:
        return self.taken is not None and self.clock() - self.taken < self.ttl

    def usage(self) -> "dict[str, Usage]":
        """The last complete sample (empty before the first)."""
        return self._usage

    def refresh(self, callback: "Callable[[], None]") -> None:
        if self.fresh():
            callback()
            return
        self.waiting.append(callback)
        if self._scan is None:
            self._scan = (self.clock(), self.pids(), {})
            self._step()

    def _step(self) -> None:
        started, todo, procs = self._scan
        try:
            for _ in range(min(self.slice_size, len(todo))):
                pid = todo.pop()
                st = self.stat(pid)
                if st is not None:
                    procs[pid] = st
        except BaseException:
            self._complete(started, procs)  # whatever goes wrong, nobody waits for ever
            raise
        if todo:
            self.loop.call_later(0, self._step)
        else:
            self._complete(started, procs)

    def _complete(self, started: float, procs: "dict[int, ProcStat]") -> None:
        self._scan = None
        kids = children_map(procs)
        monitors = self.monitors()
        self._usage = {name: self._account(name, pid, tree_usage(pid, procs, kids) if pid else None)
                       for name, pid in monitors.items()}
        for name in set(self.carry) - set(monitors):  # removed by a reload
            del self.carry[name]
        self.taken = started
        waiting, self.waiting = self.waiting, []
        for callback in waiting:
            self.loop.call_later(0, callback)  # each in its own guard

    def _account(self, name: str, monitor: "int | None", read: "tuple[int, int] | None") -> Usage:
        was_monitor, last, offset = self.carry.get(name, (monitor, 0, 0))
        if read is None:  # no monitor right now: nothing of the service runs
            self.carry[name] = (was_monitor, last, offset)
            return Usage(last / CLK_TCK, 0)
        ticks, rss = read
        if monitor != was_monitor:  # a new monitor counts from 0
            offset = last
        value = ticks + offset
        if value < last:
            offset += last - value
            value = last
        self.carry[name] = (monitor, value, offset)
        return Usage(value / CLK_TCK, rss * PAGE_SIZE)
