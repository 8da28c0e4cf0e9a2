"""The core's one `waitpid`: every child's exit goes to the owner of its pid.

Owners register a callback for a pid they started (`watch`): a monitor, the main
command, the watcher, a helper (a compile, a leftover scan), a killed service process
the core adopted. Anything else reaped is an orphan of the tree, counted. Each exit is
handed over in its own error guard: a bug in one owner's handling is logged and the
other zombies of the same pass are still reaped and handed over.
"""

from __future__ import annotations

import os
from typing import Callable


class Reaper:
    def __init__(self, loop, children: "dict[int, Callable[[int], None]] | None" = None) -> None:
        self.loop = loop
        self.owners: "dict[int, Callable[[int], None]]" = dict(children or {})
        self.orphans_reaped = 0

    def watch(self, pid: int, on_exit: "Callable[[int], None]") -> None:
        """`on_exit(wait status)` once `pid` has been reaped."""
        self.owners[pid] = on_exit

    def known(self) -> "set[int]":
        return set(self.owners)

    def reap(self) -> None:
        """Reap every child that has exited (WNOHANG until none)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            if pid == 0:
                break
            owner = self.owners.pop(pid, None)
            if owner is None:
                self.orphans_reaped += 1
            else:
                self.loop.guard(f"exit of pid {pid}", owner, status)
