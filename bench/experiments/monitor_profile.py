#!/usr/bin/env python3
"""cProfile and page faults of one svtree monitor from its fork to its service's spawn.

    python3 bench/experiments/monitor_profile.py [--parent core|zygote]

A parent (the core's imports, or a small `python -I -S` zygote with the monitor's)
forks svtree's real monitor (monitor_main) for one service and tells it `up`. In the
child, cProfile runs from the fork until the monitor reports its service's pid (the
report sent before it lets the service exec); then the child writes the profile and its
minor page faults (copy-on-write copies, mostly) to files, and the parent prints them.
"""

from __future__ import annotations

import argparse
import os
import pstats
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import UP_AND_WAIT  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))

CODE = r'''
import os, sys, gc, socket, time
sys.path.insert(0, @REPO@)
if @KIND@ == "core":
    import svtree.core.main, svtree.core.core, svtree.core.loop, svtree.core.control, svtree.core.reload
    import svtree.log, svtree.compiler, structlog
from svtree import messages, osutil, wire, monitor
from svtree.plan import ServiceSpec
osutil.prepare_fork()
gc.freeze()

def minflt():
    with open("/proc/self/stat", "rb") as f:
        data = f.read()
    return int(data[data.rfind(b")") + 2:].split()[7])

spec = ServiceSpec(name="s000", path=@SVC@, run=@SVC@ + "/run")
parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
env = dict(os.environ, SVTREE_SERVICE="s000")
pid = osutil.fork_quiet()
if pid == 0:
    import cProfile
    faults0 = minflt()
    t0 = time.perf_counter()
    prof = cProfile.Profile()
    real = monitor.Monitor.report
    def report(self, *a, **k):
        real(self, *a, **k)
        if self.status.pid is not None and prof is not None:
            prof.disable()
            took = time.perf_counter() - t0
            prof.dump_stats(@OUT@ + ".prof")
            with open(@OUT@ + ".txt", "w") as f:
                f.write(f"{minflt() - faults0} {took}")
    monitor.Monitor.report = report
    prof.enable()
    monitor.monitor_main(spec, child.fileno(), monitor.Stdio(1, 2), env)
@UP_AND_WAIT@
time.sleep(0.3)
os.kill(pid, 9)
os.kill(service, 9)
'''


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parent", choices=("core", "zygote"), default="core")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    d = tempfile.mkdtemp(prefix="monprof-", dir="/dev/shm")
    with open(os.path.join(d, "run"), "w") as f:
        f.write("#!/bin/sh\nexec sleep 1000\n")
    os.chmod(os.path.join(d, "run"), 0o755)
    out = os.path.join(d, "mon")
    code = CODE.replace("@UP_AND_WAIT@", UP_AND_WAIT)
    for key, value in (("REPO", REPO), ("KIND", args.parent), ("SVC", d), ("OUT", out)):
        code = code.replace(f"@{key}@", repr(value))
    subprocess.run([sys.executable, "-I"] + (["-S"] if args.parent == "zygote" else []) + ["-c", code],
                   check=True, timeout=30)
    with open(out + ".txt") as f:
        faults, took = f.read().split()
    print(f"parent {args.parent}: fork -> service pid reported: {float(took) * 1000:.2f} ms under cProfile, "
          f"{faults} minor page faults in the monitor")
    pstats.Stats(out + ".prof").sort_stats("tottime").print_stats(args.top)
    subprocess.run(["rm", "-rf", d])


if __name__ == "__main__":
    main()
