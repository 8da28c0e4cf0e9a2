#!/usr/bin/env python3
"""Prototype: boot N monitors from a small zygote instead of the core. svtree/ is not
changed: this script plays the core's part of the protocol (socketpair, `up`, reports)
around svtree's real monitor code (svtree.monitor.monitor_main, which starts `run` the
way svtree does: osutil.spawn).

    python3 bench/experiments/zygote_boot.py [-n 100] [--runs 5]

Each case runs in a fresh PID namespace (unshare; the parent is its PID 1, as svtree is):
  core     the parent first imports what svtree's core imports (core, compiler,
           structlog, control, reload) and gc.freeze()s before each fork, as svtree does
  zygote   a `python -I -S` parent that imports only the monitor's modules (svtree.monitor:
           states, osutil, wire, messages) and the plan's (the spec), gc.freeze()s once
Per case: ms from the first fork to the exec of the last service's `sleep` (kernel time),
the parent's wall ms per fork (on 2 busy cores: mostly waiting for a CPU), CPU ms per
service (schedstat of every process 1 s after boot, less the parent's CPU before its
first fork, over N) and the median USS of one monitor; then ms from SIGKILL of a
service (up > 2 s) to the exec of its new `sleep` (median of 3 per run). Medians over
the runs.

(Before osutil.spawn started run vfork-style, a third case replaced it here by
os.posix_spawn: bench/PROFILE.md section 2 quotes those figures.)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
REPO = os.path.dirname(BENCH)
sys.path.insert(0, HERE)
from common import rollup, schedstat  # noqa: E402

PARENT = r'''
import os, sys, time, gc, socket, json
sys.path.insert(0, @REPO@)
sys.path.insert(0, @BENCH@)
if @KIND@ == "core":
    import svtree.core.main, svtree.core.core, svtree.core.loop, svtree.core.control, svtree.core.reload
    import svtree.log, svtree.compiler, structlog
from svtree import osutil, wire
from svtree.messages import Cmd, Command, encode
from svtree.monitor import Stdio, monitor_main
from svtree.plan import ServiceSpec
osutil.prepare_fork()
osutil.set_child_subreaper()
gc.freeze()
specs = [ServiceSpec(name=f"s{i:03d}", path=f"{@SVC@}/s{i:03d}", run=f"{@SVC@}/s{i:03d}/run") for i in range(@N@)]
state = [{"name": s.name, "env": dict(os.environ, SVTREE_SERVICE=s.name), "report": {}} for s in specs]
socks = []
with open("/proc/self/schedstat") as f:
    cpu_before = int(f.read().split()[0]) / 1e6
t0 = time.monotonic()
fork_times = []
for spec, st in zip(specs, state):
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    if @KIND@ == "core":
        gc.freeze()
    a = time.monotonic()
    pid = osutil.fork_quiet()
    if pid == 0:
        monitor_main(spec, child.fileno(), Stdio(1, 2), st["env"])
    fork_times.append(time.monotonic() - a)
    child.close()
    parent.send(encode(Command(Cmd.UP)))
    socks.append((pid, parent))
with open(@INFO@ + ".tmp", "w") as f:
    json.dump({"t0": t0, "per_fork": sum(fork_times) / len(fork_times), "cpu_before": cpu_before}, f)
os.rename(@INFO@ + ".tmp", @INFO@)
import select
select.select([], [], [])
'''


def one(kind: str, n: int) -> dict:
    sys.path.insert(0, BENCH)
    import systems as S
    from procfs import descendants

    base = tempfile.mkdtemp(prefix="zygote-", dir="/dev/shm")
    svc = os.path.join(base, "svc")
    info_path = os.path.join(base, "info.json")
    for i in range(n):
        S.write(os.path.join(svc, f"s{i:03d}", "run"), S.RUN_SLEEP, executable=True)
    code = PARENT
    for key, value in (("REPO", REPO), ("BENCH", BENCH), ("KIND", kind), ("SVC", svc),
                       ("INFO", info_path), ("N", n)):
        code = code.replace(f"@{key}@", repr(value))
    flags = ["-I"] if kind == "core" else ["-I", "-S"]
    system = S.System()
    system.name = kind
    inst = S.Instance(system, base, [sys.executable, *flags, "-c", code])
    try:
        t_up = inst.wait_services(n, 60)
        import time
        time.sleep(1.0)
        with open(info_path) as f:
            info = json.load(f)
        hosts = [inst.pid1, *descendants(inst.pid1)]
        cpu = sum(schedstat(p) for p in hosts)
        monitors = [p for p in hosts if inst.events.execs.get(p) is None and p != inst.pid1]
        time.sleep(1.2)  # every service up > 2 s
        restarts = []
        for name in [f"s{i:03d}" for i in range(min(n, 3))]:
            d = os.path.join(svc, name)
            victim = next(p for p, e in inst.events.running(S.SERVICE_COMM).items() if e.cwd == d)
            t0 = time.monotonic()
            os.kill(victim, 9)
            restarts.append((inst.wait_new_service(t0, 10, d) - t0) * 1000)
            time.sleep(0.2)
        return {"restart": statistics.median(restarts),"boot": (t_up - info["t0"]) * 1000, "per_fork": info["per_fork"] * 1000,
                "cpu": (cpu - info["cpu_before"]) / n,
                "monitor_uss": statistics.median(rollup(p)[0] for p in monitors)}
    finally:
        inst.kill()
        subprocess.run(["rm", "-rf", base])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=100)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    cases = ["core", "zygote"]
    got = {c: [] for c in cases}
    for _ in range(args.runs):
        for c in cases:
            got[c].append(one(c, args.n))
    print(f"{'case (N=' + str(args.n) + ')':24}{'boot ms':>9}{'ms/fork':>9}{'CPU ms/service':>16}{'monitor USS kB':>16}"
          f"{'restart ms':>12}   (median of {args.runs})")
    for kind, rs in got.items():
        m = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        print(f"{kind:24}{m['boot']:9.0f}{m['per_fork']:9.2f}{m['cpu']:16.2f}{m['monitor_uss']:16.0f}{m['restart']:12.2f}")


if __name__ == "__main__":
    main()
