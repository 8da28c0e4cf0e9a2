"""The start order: a service's monitor gets `up` once the service is wanted up and
everything it depends on is ready (or a oneshot that is done), and never while a reload
retires it or one of its dependencies; a service that waits for them says so, once per
wait (`service_waiting`). Boot is over once every service not marked `down` has been
ready or done: then `tree_up` is said (and shown on a terminal), and the main command
may start.
"""

from __future__ import annotations

import os
import time
from typing import Callable

from svtree.core.records import Life, Records, Service
from svtree.states import SATISFIED, Want


class StartOrder:
    def __init__(self, records: Records, log, streams, started_at: float) -> None:
        self.records = records
        self.log = log
        self.streams = streams
        self.started_at = started_at  # svtree's start: "N services up in T" counts the compile
        self.booted = False  # every service not marked down was once ready or done
        self.waiting: "set[Service]" = set()  # said service_waiting, still waiting

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
        """Start what may start now. True the one time the whole tree has just come up."""
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
        if self.booted or not all(s.report.state in SATISFIED for s in self.records if not s.spec.down):
            return False
        self.booted = True
        took = time.monotonic() - self.started_at
        up = sum(1 for s in self.records if s.report.state in SATISFIED)
        self.log.info("tree_up", services=up, duration=round(took, 3))
        if os.isatty(1):  # a person is watching: one plain summary line
            self.streams.own_line(1, f"{up} service{'s' if up != 1 else ''} up in {took * 1000:.0f} ms\n")
        return True
