#!/usr/bin/env python3
"""What a forked Python monitor costs in private memory, by the parent it is forked from.

    python3 bench/experiments/fork_floor.py [--python PYTHON]

Each case starts a parent interpreter (`PYTHON -I -S`, no site), which imports a set of
modules, optionally runs gc.freeze(), and forks a child. The child does what a monitor
does at rest: a socketpair, a selector, one JSON message each way, then it blocks in
select(). After it settled, the USS (Private_Clean + Private_Dirty of smaps_rollup) of
the child is read; the parent's too. Medians of 5.

Cases:
  floor          imports os, signal, select, json, socket (the issue's 778 kB floor)
  floor+freeze   the same, gc.freeze() before fork
  zygote         imports svtree.monitor (states, osutil, wire, selectors, socket) and
                 loads ctypes (prctl), gc.freeze(), then forks svtree's real monitor
                 (monitor_main) on a one-service spec, which the parent, as a core would,
                 tells `up`: the child then runs the service; read once it ran
  zygote-nofreeze  the same without gc.freeze()
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import smaps  # noqa: E402
from common import UP_AND_WAIT, rollup  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CHILD_IDLE = r'''
def child_idle():
    a, b = socket.socketpair()
    sel = selectors.DefaultSelector() if 'selectors' in globals() else None
    b.send(json.dumps({"state": "up", "pid": 1}).encode())
    json.loads(a.recv(4096))
    os.write(w, b"x")
    select.select([a], [], [])
'''

FLOOR = r'''
import os, signal, select, json, socket, gc, sys
FREEZE
r, w = os.pipe()
CHILD
pid = os.fork()
if pid == 0:
    child_idle()
    os._exit(0)
os.read(r, 1)
print(pid, flush=True)
sys.stdin.read()
os.kill(pid, 9)
'''

ZYGOTE = r'''
import os, sys, gc, socket
sys.path.insert(0, REPO)
from svtree import osutil
from svtree.monitor import Stdio, monitor_main
from svtree.plan import ServiceSpec
from svtree import messages
osutil.prepare_fork()
FREEZE
spec = ServiceSpec(name="s000", path=SVC, run=SVC + "/run")
parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
env = dict(os.environ, SVTREE_SERVICE="s000")
pid = osutil.fork_quiet()
if pid == 0:
    monitor_main(spec, child.fileno(), Stdio(1, 2), env)
@UP_AND_WAIT@
print(pid, flush=True)
sys.stdin.read()
os.kill(pid, 9)
os.kill(service, 9)
'''


def uss(pid: int) -> int:
    return rollup(pid)[0]


def one(python: str, code: str, settle: float, show: bool = False) -> "tuple[int, int]":
    p = subprocess.Popen([python, "-I", "-S", "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    try:
        child = int(p.stdout.readline())
        time.sleep(settle)
        if show:
            print(smaps.report(child, 8))
        return uss(child), uss(p.pid)
    finally:
        p.stdin.close()
        p.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--smaps", action="store_true", help="print each case's child per mapping once")
    args = ap.parse_args()
    svc = tempfile.mkdtemp(prefix="floor-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    with open(os.path.join(svc, "run"), "w") as f:
        f.write("#!/bin/sh\nexec sleep 1000\n")
    os.chmod(os.path.join(svc, "run"), 0o755)
    floor = FLOOR.replace("CHILD", CHILD_IDLE)
    zygote = ZYGOTE.replace("@UP_AND_WAIT@", UP_AND_WAIT).replace("REPO", repr(REPO)).replace("SVC", repr(svc))
    cases = {
        "floor": floor.replace("FREEZE", ""),
        "floor+freeze": floor.replace("FREEZE", "gc.freeze()"),
        "zygote": zygote.replace("FREEZE", "gc.freeze()"),
        "zygote-nofreeze": zygote.replace("FREEZE", ""),
    }
    print(f"{'case':18} {'child USS kB':>12} {'parent USS kB':>13}   (median of {args.runs})")
    for name, code in cases.items():
        if args.smaps:
            one(args.python, code, 0.3, show=True)
        got = [one(args.python, code, 0.3) for _ in range(args.runs)]
        print(f"{name:18} {statistics.median(c for c, _ in got):12.0f} "
              f"{statistics.median(p for _, p in got):13.0f}")
    subprocess.run(["rm", "-rf", svc])


if __name__ == "__main__":
    main()
