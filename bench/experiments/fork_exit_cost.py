#!/usr/bin/env python3
"""What it costs a forked child to exit: the kernel's teardown of the address space it
shares with its parent (copy-on-write), by the parent's size.

    python3 bench/experiments/fork_exit_cost.py [-n 100] [--runs 5]

A parent (`python -I -S` with os only: small; or with the core's imports: core-sized)
forks N children, each blocked in read() on a pipe. The parent notes each child's CPU
so far (/proc/PID/schedstat), closes the pipe (each child wakes and calls os._exit(0),
no other Python), and reaps each with wait4: rusage minus the CPU before is the CPU of
waking up and exiting, the kernel's exit_mmap above all. Medians over the runs, per
child, and the wall time from the close to the last reap.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHILD = r'''
import os, sys, time, json
N = @N@
if @CORE@:
    sys.path.insert(0, @REPO@)
    import svtree.core.main, svtree.core.core, svtree.core.loop, svtree.core.control, svtree.core.reload
    import svtree.log, svtree.compiler, structlog
    import gc; gc.freeze()
def sched(pid):
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e6
with open("/proc/self/status") as f:
    rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
r, w = os.pipe()
pids = []
for _ in range(N):
    pid = os.fork()
    if pid == 0:
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    pids.append(pid)
os.close(r)
time.sleep(0.3)
before = {p: sched(p) for p in pids}
t0 = time.monotonic()
os.close(w)
cpu = []
for p in pids:
    _, _, ru = os.wait4(p, 0)
    cpu.append((ru.ru_utime + ru.ru_stime) * 1000 - before[p])
print(json.dumps({"rss_kb": rss, "cpu": cpu, "wall": (time.monotonic() - t0) * 1000}))
'''


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=100)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    rows = {"small parent (python -I -S)": False, "core-sized parent (the core's imports)": True}
    got: "dict[str, list[dict]]" = {k: [] for k in rows}
    for _ in range(args.runs):
        for label, core in rows.items():
            code = CHILD.replace("@N@", str(args.n)).replace("@CORE@", repr(core)).replace("@REPO@", repr(REPO))
            flags = [] if core else ["-I", "-S"]
            out = subprocess.run([sys.executable, *flags, "-c", code], capture_output=True, check=True, text=True)
            got[label].append(json.loads(out.stdout))
    print(f"{'parent':42}{'RSS kB':>9}{'CPU per child exit, ms':>24}{'sum, ms':>9}{'wall, ms':>10}")
    for label, runs in got.items():
        rss = statistics.median(r["rss_kb"] for r in runs)
        per = statistics.median(statistics.median(r["cpu"]) for r in runs)
        tot = statistics.median(sum(r["cpu"]) for r in runs)
        wall = statistics.median(r["wall"] for r in runs)
        print(f"{label:42}{rss:9.0f}{per:24.3f}{tot:9.1f}{wall:10.1f}")


if __name__ == "__main__":
    main()
