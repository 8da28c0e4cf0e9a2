#!/usr/bin/env python3
"""How long a process with svtree's core modules takes to exit: CPython's finalisation
against os._exit.

    python3 bench/experiments/exit_cost.py [--runs 7]

A child interpreter imports what the core imports, prints the monotonic time, and then
either returns (CPython finalises: atexit, module teardown, a last collection) or calls
os._exit(0). The kernel's exit event (procevents.py) gives the end. Medians in ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
REPO = os.path.dirname(os.path.dirname(HERE))

from procevents import Exec, ProcEvents  # noqa: E402

CHILD = r'''
import sys, time, os
sys.path.insert(0, @REPO@)
import svtree.core.main, svtree.core.core, svtree.core.loop, svtree.core.control, svtree.core.reload
import svtree.log, svtree.compiler, structlog
print(time.monotonic(), flush=True)
if sys.argv[1] == "os._exit":
    os._exit(0)
'''


class AllExits(ProcEvents):
    def _on_exec(self, pid, ts):
        self.execs[pid] = Exec(ts / 1e9, "", None)


def one(mode: str) -> float:
    ev = AllExits()
    ev.watch(os.getpid())
    try:
        p = subprocess.Popen([sys.executable, "-c", CHILD.replace("@REPO@", repr(REPO)), mode],
                             stdout=subprocess.PIPE, text=True)
        ev.watched.add(p.pid)
        t_last = float(p.stdout.readline())
        t_exit = ev.wait(lambda: ev.exits.get(p.pid, (None,))[0], 10, "exit")
        p.wait()
        return (t_exit - t_last) * 1000
    finally:
        ev.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    for mode in ("return", "os._exit"):
        print(f"{mode:9} last statement -> exit: "
              f"{statistics.median(one(mode) for _ in range(args.runs)):.1f} ms (median of {args.runs})")


if __name__ == "__main__":
    main()
