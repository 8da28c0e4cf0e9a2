"""What `ctl status` and the HTTP endpoint read of the running tree: liveness, readiness,
status rows with each service's CPU and memory, and the Prometheus metrics.

It asks the core through its interface (status rows, check, monitor pids, counters) and
the reloader for its counts; CPU and memory come from core/resources.py, read only
when someone asks (a sample is reused for a second, and read a slice per turn of the
loop), so an idle tree reads nothing. It implements core/http.py's Provider.
"""

from __future__ import annotations

import time
from typing import Callable

from svtree import wire
from svtree.core import metrics
from svtree.core.resources import Resources


class Probes:
    def __init__(self, loop, core, reloader) -> None:
        self.core = core  # through its interface only
        self.reloader = reloader  # its counts: applied, rejected
        self.resources = Resources(loop, core.monitor_pids)

    def livez(self) -> "str | None":
        return "svtree is shutting down" if self.core.shutting_down else None

    def readyz(self) -> "str | None":
        if self.core.shutting_down:
            return "svtree is shutting down"
        return self.core.check()

    def rows(self, names: "list[str]", reply: "Callable[[list[dict]], None]") -> None:
        """reply(the status rows of `names` (all: none named), with cpu_seconds and
        memory_bytes, and start_time for /metrics): the rows as they are now, the usage
        once a sample is there."""
        rows = self.core.status_rows(names, time.monotonic())

        def with_usage() -> None:
            usage = self.resources.usage()
            wall = time.time()
            for r in rows:
                u = usage.get(r["name"])
                r["cpu_seconds"] = round(u.cpu_seconds, 3) if u is not None else None
                r["memory_bytes"] = u.memory_bytes if u is not None else None
                r["start_time"] = round(wall - r["uptime"], 3) if r["uptime"] is not None else None
            reply(rows)

        self.resources.refresh(with_usage)

    def status(self, reply: "Callable[[bytes], None]") -> None:
        """The JSON of `ctl status --json --resources`."""
        keys = wire.STATUS_KEYS + wire.RESOURCE_KEYS
        self.rows([], lambda rows: reply(wire.encode([{k: r[k] for k in keys} for r in rows])))

    def metrics(self, reply: "Callable[[str], None]") -> None:
        counters = {"reloads": self.reloader.applied, "reload_failures": self.reloader.rejected,
                    "orphans_reaped": self.core.orphans_reaped}
        self.rows([], lambda rows: reply(metrics.render(rows, counters)))
