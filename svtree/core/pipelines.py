"""The pipes between services and their loggers (s6's `log/` services, s6-rc's pipelines).

One pipe per logger: its read end is the logger's stdin, its write end the stdout of
every service that feeds it (s6-rc lets several producers share one logger: they share
its pipe). The core holds both ends for as long as the logger or one of its producers
has a record, and never reads or writes them: while the logger restarts (or its monitor
is replaced), what its producers write waits in the pipe; while a producer restarts,
the logger never sees end of file. A full pipe blocks the producers in their own
writes, as under s6.

End of file comes once, when the logger's turn to stop has come and nothing feeds it
any more (shutdown: its producers stopped first, as they depend on it; a reload that
removed them): the core closes its write end (`drain`), the producers' monitors are gone
already, and the logger reads what is left, then end of file. A pipe whose input was
closed is never written again: a producer started after that gets a new pipe.

Both ends are close-on-exec, and a monitor keeps only the ends of its own service
(monitor.Stdio), which its service gets as fd 0 or 1: they reach no other service.
"""

from __future__ import annotations

import os

from svtree.core.records import Life, Records
from svtree.plan import Plan, ServiceSpec


class LoggerPipe:
    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()  # O_CLOEXEC both

    @property
    def input_closed(self) -> bool:
        return self.write_fd < 0

    def close_input(self) -> None:
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    def close(self) -> None:
        self.close_input()
        if self.read_fd >= 0:
            os.close(self.read_fd)
            self.read_fd = -1


class Pipelines:
    """The logger pipes, by logger name."""

    def __init__(self) -> None:
        self.pipes: "dict[str, LoggerPipe]" = {}
        self._loggers: "tuple[Plan | None, frozenset[str]]" = (None, frozenset())

    def _is_logger(self, name: str, plan: Plan) -> bool:
        if self._loggers[0] is not plan:  # once per plan, not once per fork
            self._loggers = (plan, frozenset(s.logger for s in plan.services if s.logger))
        return name in self._loggers[1]

    def _open(self, logger: str) -> LoggerPipe:
        """The logger's pipe; a new one if it has none, or if its input was closed.
        OSError (EMFILE, ENFILE) if it cannot be made."""
        pipe = self.pipes.get(logger)
        if pipe is None or pipe.input_closed:
            fresh = LoggerPipe()
            if pipe is not None:
                pipe.close()
            pipe = self.pipes[logger] = fresh
        return pipe

    def ends(self, spec: ServiceSpec, plan: Plan) -> "tuple[int | None, int | None]":
        """(stdin, stdout) for a monitor of `spec`: the read end of its own pipe when it
        is a logger, the write end of its logger's pipe when it has one; None for what
        it does not get. OSError if a pipe cannot be made."""
        stdin = None
        if spec.name in self.pipes or self._is_logger(spec.name, plan):
            stdin = self._open(spec.name).read_fd
        stdout = self._open(spec.logger).write_fd if spec.logger else None
        return stdin, stdout

    def drain(self, name: str, records: Records) -> bool:
        """`name` is about to be told to exit: if it is a logger that nothing feeds any
        more (every record that writes to its pipe is gone), close the core's write end,
        so that it reads what is left and sees end of file. True if so: its monitor
        gets `drain` instead of `exit`."""
        pipe = self.pipes.get(name)
        if pipe is None:
            return False
        if any(svc.spec.logger == name and svc.life is not Life.GONE for svc in records):
            return False  # a producer still runs (a reload retires only the logger)
        pipe.close_input()
        return True

    def prune(self, records: Records) -> None:
        """Close the pipes no record uses any more (a reload removed the pipeline)."""
        used = {svc.spec.logger for svc in records if svc.spec.logger}
        for name in [n for n in self.pipes if n not in used and records.get(n) is None]:
            self.pipes.pop(name).close()

    def close_all(self) -> None:
        for pipe in self.pipes.values():
            pipe.close()
        self.pipes.clear()
