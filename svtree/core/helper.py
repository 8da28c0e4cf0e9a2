"""Short-lived helper children: work PID 1 must not do itself because it can block.

Compiling the tree (core/compiling.py) and reading other processes' /proc/PID/environ
(core/leftovers.py) can wait on a hung filesystem, a slow user lookup or a process whose
memory map is locked. The core forks a helper for such work and never waits for it: a
deadline SIGKILLs it, and the core's one reaper reaps it (`watch` registers it there).

Fork, not spawn: the core is single-threaded, so forking it is safe, and the helper has
what it needs already imported and in memory (copy-on-write).
"""

from __future__ import annotations

import gc
import os
import signal
from typing import Callable

from svtree import osutil


class Helper:
    """Fork a child that runs `body()` (then exits 0; 1 if it raised) with only the fds
    in `keep`. `on_overrun()` is called if it is still running after `timeout` seconds
    (None: no deadline), once it has been SIGKILLed; `on_exit(status)` once it has been
    reaped: `watch(pid, callback)` registers it with the reaper (Core.watch_child).
    Raises OSError if fork fails."""

    def __init__(self, loop, watch: "Callable[[int, Callable[[int], None]], None]", name: bytes,
                 keep: "list[int]", body: "Callable[[], None]", timeout: "float | None",
                 on_overrun: "Callable[[], None] | None" = None,
                 on_exit: "Callable[[int], None] | None" = None) -> None:
        gc.freeze()  # keep the helper's copy-on-write pages shared
        core = os.getpid()
        pid = osutil.fork_quiet()
        if pid == 0:
            try:
                osutil.become_helper(name, keep)
                if os.getppid() != core:  # the core died before the death signal was set
                    os._exit(1)
                body()
                os._exit(0)
            except BaseException:
                os._exit(1)
        self.pid: "int | None" = pid
        self.on_overrun = on_overrun
        self.on_exit = on_exit
        watch(pid, self._exited)
        self.deadline = loop.call_later(timeout, self._overran) if timeout is not None else None

    def kill(self) -> None:
        if self.pid is not None:
            osutil.kill_quietly(self.pid, signal.SIGKILL)

    def _overran(self) -> None:
        self.deadline = None
        self.kill()
        if self.on_overrun is not None:
            self.on_overrun()

    def _exited(self, status: int) -> None:
        self.pid = None
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        if self.on_exit is not None:
            self.on_exit(status)
