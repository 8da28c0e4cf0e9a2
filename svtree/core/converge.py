"""The start order and the boot: a service's monitor gets `up` once the service is wanted
up and everything it depends on is ready (or a oneshot that is done), and never while a
reload retires it or one of its dependencies; a service that waits for them says so,
once per wait (`service_waiting`).

The boot is one enum (`Boot`) changed in one place (`_enter`). It is BOOTING until
every service not marked `down` has been ready or done at once (UP: `tree_up` is said,
and shown on a terminal), unless it fails first: a oneshot failed, or `boot_timeout`
passed. What a failure does is the plan's `boot_failure` (s6-overlay's
S6_BEHAVIOUR_IF_STAGE2_FAILS), decided by the core: "stop" shuts the tree down; "warn"
(with a warning) and "continue" go on without what failed, and the boot is over
(FAILED) once the rest has settled: every other service ready, done or failed, or
waiting on what failed (a dependency failed, or one of its own dependencies waits on
one); after the timeout, at once, and what was still starting goes on. The main command
starts when the boot is over, UP or FAILED.
"""

from __future__ import annotations

import enum
import os
import time
from typing import Callable

from svtree.core.records import Life, Records, Service
from svtree.states import SATISFIED, State, Want


class Boot(enum.Enum):
    BOOTING = "booting"  # services are starting
    UP = "up"  # every service not marked down was ready or done at once
    FAILED = "failed"  # a oneshot failed or boot_timeout passed; the tree goes on without it


class StartOrder:
    def __init__(self, records: Records, log, streams, started_at: float) -> None:
        self.records = records
        self.log = log
        self.streams = streams
        self.started_at = started_at  # svtree's start: "N services up in T" counts the compile
        self.boot_state = Boot.BOOTING  # changed only by _enter
        self.failed: "list[str]" = []  # oneshots that failed during the boot, in order
        self.timed_out = False  # boot_timeout passed during the boot
        self.waiting: "set[Service]" = set()  # said service_waiting, still waiting

    @property
    def booted(self) -> bool:
        """The boot is over (the main command may start): UP, or FAILED and settled."""
        return self.boot_state is not Boot.BOOTING

    def may_start(self, svc: Service) -> bool:
        return svc.want is Want.UP and svc.life is Life.HELD and self.records.deps_ready(svc)

    def boot(self, fork: "Callable[[Service], None]", start: "Callable[[Service], None]") -> None:
        """Fork every monitor, level by level; services without dependencies are told `up`
        at once, so that they start while the next monitors are forked."""
        for name in self.records.level_order():
            svc = self.records.get(name)
            fork(svc)
            if not svc.spec.depends_on and self.may_start(svc):
                start(svc)

    def step(self, start: "Callable[[Service], None]") -> bool:
        """Start what may start now. True the one time the boot has just ended (UP, or
        FAILED once settled)."""
        self._start_what_may(start)
        if self.boot_state is not Boot.BOOTING:
            return False
        booting = [s for s in self.records if not s.spec.down]
        if all(s.report.state in SATISFIED for s in booting):
            self._enter(Boot.UP)
            return True
        if (self.failed or self.timed_out) and self._settled(booting):
            self._enter(Boot.FAILED)
            return True
        return False

    def oneshot_failed(self, name: str) -> None:
        """A oneshot failed during the boot, and boot_failure goes on without it."""
        if self.boot_state is Boot.BOOTING and name not in self.failed:
            self.failed.append(name)

    def timeout(self) -> None:
        """boot_timeout passed (the core checked the boot is not over): it is over now,
        without what is not ready yet."""
        self.timed_out = True

    def not_ready(self) -> "list[str]":
        """What keeps the boot from being over, in start order."""
        return [n for n in self.records.ordered_names()
                if not (s := self.records.get(n)).spec.down and s.report.state not in SATISFIED]

    def _start_what_may(self, start: "Callable[[Service], None]") -> None:
        waiting = set()
        up, held = Want.UP, Life.HELD
        for svc in self.records:
            if svc.want is not up:
                continue
            if svc.life is held:
                if self.records.deps_ready(svc):
                    start(svc)
                    continue
                waiting.add(svc)
                if svc not in self.waiting:
                    self.log.info("service_waiting", service=svc.name,
                                  dependencies=self.records.not_ready(svc))
            elif svc.life is Life.NO_MONITOR and svc in self.waiting:
                waiting.add(svc)  # its monitor died while it waited: the same wait
        self.waiting = waiting

    def _settled(self, booting: "list[Service]") -> bool:
        """After the timeout, at once; after a failed oneshot, once every service of the
        boot is ready or done, or failed, or waits on what failed."""
        if self.timed_out:
            return True
        blocked: "dict[str, bool]" = {}
        for name in self.records.level_order():  # dependencies come first
            svc = self.records.get(name)
            blocked[name] = (svc.report.state is State.FAILED and not svc.spec.may_fail) or any(
                blocked.get(dep, False) for dep in svc.spec.depends_on)
        return all(s.report.state in SATISFIED or s.report.state is State.FAILED or blocked.get(s.name, False)
                   for s in booting)

    def _enter(self, boot: Boot) -> None:
        """The one place the boot's state changes."""
        self.boot_state = boot
        if boot is not Boot.UP:
            return
        took = time.monotonic() - self.started_at
        up = sum(1 for s in self.records if s.report.state in SATISFIED)
        self.log.info("tree_up", services=up, duration=round(took, 3))
        if os.isatty(1):  # a person is watching: one plain summary line
            self.streams.own_line(1, f"{up} service{'s' if up != 1 else ''} up in {took * 1000:.0f} ms\n")
