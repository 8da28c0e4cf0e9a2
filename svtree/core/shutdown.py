"""The shutdown: its phases (one enum, one total table), the order services stop in,
and the final sweep.

RUN -> MAIN -> SERVICES -> SWEEP -> SWEEP_KILLED -> DONE. MAIN is left at once when no
main command runs; SWEEP goes straight to DONE when nothing is left before kill_grace.
The core changes its phase only through `next_phase`, and entering a phase starts what
the phase is about (Core._phase_event: stop the main command, `Sweep.begin`,
`Sweep.kill`, `Sweep.end`).

In SERVICES a service gets `exit` once everything that depends on it is gone (reverse
dependency order). Then everything svtree started is gone, but not necessarily what
those left behind (or, as PID 1, what `docker exec` added): the sweep sends SIGTERM to
all of it, SIGKILL after kill_grace, and the loop ends once nothing is left.
"""

from __future__ import annotations

import enum
import os
import signal
import time
from typing import Callable

from svtree import osutil
from svtree.core.records import Life, Records


class Phase(enum.Enum):
    RUN = "run"  # not shutting down
    MAIN = "main"  # the main command got SIGTERM (if one runs): waiting for its exit
    SERVICES = "services"  # each service gets `exit` once everything that needs it is gone
    SWEEP = "sweep"  # every monitor is gone: what remains got SIGTERM
    SWEEP_KILLED = "sweep_killed"  # kill_grace passed: what remained got SIGKILL
    DONE = "done"  # nothing is left: the loop ends


class PhaseEv(enum.Enum):
    BEGIN = "begin"  # a reason to shut down: a signal, ctl, the main command, a failure
    MAIN_GONE = "main_gone"  # no main command runs
    SERVICES_GONE = "services_gone"  # every service's record is gone
    GRACE_OVER = "grace_over"  # kill_grace passed since the sweep began
    NOTHING_LEFT = "nothing_left"  # no process is left that svtree must wait for


class PhaseError(RuntimeError):
    """The core fed the shutdown an event its phase cannot take: a bug of the core's."""


P, E = Phase, PhaseEv
_ = None  # impossible: the core never feeds this pair (PhaseError if it does)

PHASE_TABLE: "dict[Phase, dict[PhaseEv, Phase | None]]" = {
    # BEGIN once shutting down: nothing happens (the first reason stands).
    P.RUN: {E.BEGIN: P.MAIN, E.MAIN_GONE: _, E.SERVICES_GONE: _, E.GRACE_OVER: _,
            E.NOTHING_LEFT: _},
    P.MAIN: {E.BEGIN: P.MAIN, E.MAIN_GONE: P.SERVICES, E.SERVICES_GONE: _, E.GRACE_OVER: _,
             E.NOTHING_LEFT: _},
    P.SERVICES: {E.BEGIN: P.SERVICES, E.MAIN_GONE: _, E.SERVICES_GONE: P.SWEEP,
                 E.GRACE_OVER: _, E.NOTHING_LEFT: _},
    P.SWEEP: {E.BEGIN: P.SWEEP, E.MAIN_GONE: _, E.SERVICES_GONE: _,
              E.GRACE_OVER: P.SWEEP_KILLED, E.NOTHING_LEFT: P.DONE},
    P.SWEEP_KILLED: {E.BEGIN: P.SWEEP_KILLED, E.MAIN_GONE: _, E.SERVICES_GONE: _,
                     E.GRACE_OVER: _, E.NOTHING_LEFT: P.DONE},
    P.DONE: {E.BEGIN: P.DONE, E.MAIN_GONE: _, E.SERVICES_GONE: _, E.GRACE_OVER: _,
             E.NOTHING_LEFT: _},
}


def next_phase(phase: Phase, ev: PhaseEv) -> Phase:
    """The one transition function of the shutdown."""
    new = PHASE_TABLE[phase][ev]
    if new is None:
        raise PhaseError(f"{ev.value} cannot happen in the shutdown's phase {phase.value}")
    return new


class StopOrder:
    """Which records may get `exit` in SERVICES: those whose dependents, and theirs, are
    all gone. Built once when SERVICES begins (the records do not change during the
    shutdown: no reload, no new monitor), then kept up by `gone(name)` for each record
    that becomes GONE; so the whole shutdown costs O(services + edges), where asking
    every record again on each event cost O(N) per event: O(N^2) in all.

    A record is *clear* once it is gone and every dependent of its is clear: a dependent
    whose monitor died early is gone, but what depends on it may still run, and that
    needs this record too. `waiting[name]` counts name's dependents not clear yet."""

    def __init__(self, records: Records) -> None:
        dependents = records.live_dependents()
        names = [svc.name for svc in records]  # (in the records' order: the plan's)
        self.gone_ = {svc.name for svc in records if svc.life is Life.GONE}
        self.left = len(names) - len(self.gone_)  # records not gone yet
        self.dependencies: "dict[str, list[str]]" = {name: [] for name in names}
        self.waiting: "dict[str, int]" = {}
        for name in names:
            ds = [d for d in dict.fromkeys(dependents.get(name, ())) if d in self.dependencies]
            self.waiting[name] = len(ds)
            for d in ds:
                self.dependencies[d].append(name)
        self.ready: "list[str]" = []  # may get `exit` now (if not told yet)
        for name in [n for n in names if self.waiting[n] == 0]:
            self._settled(name)

    def _settled(self, name: str) -> None:
        """name's dependents are all clear: it may stop, or, gone itself, it is clear."""
        todo = [name]
        while todo:
            name = todo.pop()
            if name not in self.gone_:
                self.ready.append(name)
                continue
            for dep in self.dependencies[name]:
                self.waiting[dep] -= 1
                if self.waiting[dep] == 0:
                    todo.append(dep)

    def gone(self, name: str) -> None:
        """The record `name` has just become GONE."""
        if name in self.gone_ or name not in self.waiting:
            return
        self.gone_.add(name)
        self.left -= 1
        if self.waiting[name] == 0:
            self._settled(name)

    def take_ready(self) -> "list[str]":
        ready, self.ready = self.ready, []
        return ready


class Sweep:
    """SIGTERM to every process left, SIGKILL after kill_grace; the end once none is left.
    `spared`: pids never signalled (`ctl shutdown --wait` clients waiting for the end)."""

    def __init__(self, loop, log, is_pid1: bool, spared: "set[int]") -> None:
        self.loop = loop
        self.log = log
        self.is_pid1 = is_pid1
        self.spared = spared
        self.deadline = None
        self.strangers: "dict[int, int]" = {}  # pid -> pidfd, of processes not ours

    def remaining(self) -> "list[int]":
        """Every live process but svtree and the spared ctl clients: all of the PID
        namespace's when svtree is PID 1 (`docker exec` adds processes that do not descend
        from it), else svtree's descendants. A walk of /proc: see `nothing_left`."""
        me = os.getpid()
        if self.is_pid1:
            pids = [p for p in osutil.all_pids() if p != me]
        else:
            pids = osutil.descendants(me)
        return [p for p in pids if p not in self.spared and not osutil.is_zombie(p)]

    def begin(self, grace: float, on_grace_over: "Callable[[], None]", started: float) -> None:
        left = self.remaining()
        self.log.info("shutdown_sweep", remaining=len(left), duration=round(time.monotonic() - started, 3))
        for p in left:
            osutil.kill_quietly(p, signal.SIGTERM)
            osutil.kill_quietly(p, signal.SIGCONT)
        self.deadline = self.loop.call_later(grace, on_grace_over)

    def kill(self) -> None:
        left = self.remaining()
        if left:
            self.log.warning("shutdown_kill", remaining=len(left))
        for p in left:
            osutil.kill_quietly(p, signal.SIGKILL)

    def nothing_left(self, killed: bool, again: "Callable[[], None]") -> bool:
        """Asked on every event of the sweep (each reap pass, above all): cheap. While a
        child of ours lives, something is left (its descendants are too): no walk of
        /proc. Once none is left, only processes not descended from svtree can remain (as
        PID 1: `docker exec`'d ones): one walk finds them, and each is watched through a
        pidfd, whose readiness (the process ended) calls `again()`. After SIGKILL
        (`killed`) only our own children must still be reaped; the kernel ends the rest."""
        me = os.getpid()
        if killed:
            return not osutil.children(me)
        if any(p not in self.spared and not osutil.is_zombie(p) for p in osutil.children(me)):
            return False
        if self.is_pid1:
            left = self.remaining()
            if left:
                self._watch_strangers(left, again)
                return False
        return True

    def _watch_strangers(self, pids: "list[int]", again: "Callable[[], None]") -> None:
        """Be woken when any of `pids` (processes svtree did not start) ends. Without
        pidfds (a kernel before 5.3) the kill deadline is the next event instead."""
        for pid in pids:
            if pid in self.strangers:
                continue
            try:
                fd = os.pidfd_open(pid)
            except (AttributeError, OSError):
                continue
            self.strangers[pid] = fd

            def ended(pid: int = pid, fd: int = fd) -> None:
                if self.strangers.pop(pid, None) is not None:
                    self.loop.remove_reader(fd)
                    os.close(fd)
                    again()

            self.loop.add_reader(fd, ended)

    def end(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        for fd in self.strangers.values():
            self.loop.remove_reader(fd)
            os.close(fd)
        self.strangers.clear()
