#!/usr/bin/env python3
"""What starting a process costs from a small and from a core-sized Python parent:
fork + exec (svtree's way: the child's Python code runs before exec) against vfork-style
spawns (os.posix_spawn and _posixsubprocess, which clone with CLONE_VM|CLONE_VFORK).

    python3 bench/experiments/spawn_cost.py [--reps 50]

Each parent runs in its own interpreter:
  small   `python -I -S` that imports os, signal, select, json, socket
  core    the modules svtree's core (PID 1) imports (the core, the compiler, structlog,
          the control socket) and 100 dicts of per-service state, gc.freeze()'d
and, for each, with 100 children alive (monitors sharing its pages, as in a tree of
100 services) and without. Per method: the parent's time in the call (fork returns
once the page tables are copied; a vfork-style spawn once the child has exec'd) and the
time until the kernel reports the exec of /bin/true (procevents.py), medians in ms.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.dirname(HERE)
REPO = os.path.dirname(BENCH)

CHILD = r'''
import os, sys, time, json, signal, statistics, gc
sys.path.insert(0, BENCH)
sys.path.insert(0, REPO)
KIND = sys.argv[1]
if KIND == "core":
    import svtree.core.main, svtree.core.core, svtree.core.loop, svtree.core.control, svtree.core.reload
    import svtree.log, svtree.compiler, structlog
    from svtree import osutil
    state = [{"name": f"s{i:03d}", "report": {"state": "up", "pid": i}, "env": dict(os.environ)} for i in range(100)]
    osutil.prepare_fork()
    gc.freeze()
else:
    import signal, select, json, socket
from svtree import osutil  # the spawn under test (a leaf: stdlib only)
import _posixsubprocess
from procevents import Exec, ProcEvents


class AllExecs(ProcEvents):
    """Every exec of the machine, unfiltered: /bin/true is gone before it could be checked."""

    def _on_exec(self, pid, ts):
        self.execs[pid] = Exec(ts / 1e9, "", None)


ev = AllExecs()
ev.watch(os.getpid())
TRUE = "/bin/true"
ENV = dict(os.environ)
SIGS = set(range(1, 65)) - {9, 19, 32, 33}

def fork_exec():
    pid = os.fork()
    if pid == 0:
        os.execv(TRUE, [TRUE])
    return pid

def fork_svtree():
    return osutil.spawn([TRUE], cwd="/", env=ENV, fds={0: 0, 1: 1, 2: 2}, session=True)

def posix_spawn():
    return os.posix_spawn(TRUE, [TRUE], ENV, setsid=True, setsigdef=SIGS, setsigmask=())

def posixsubprocess():
    # What subprocess.Popen(close_fds=True, start_new_session=True) does (vfork in 3.11
    # when there is no preexec_fn).
    r, w = os.pipe()
    pid = _posixsubprocess.fork_exec(
        [TRUE], [os.fsencode(TRUE)], True, (), "/", [b"A=1"], -1, -1, -1, -1, -1, -1,
        r, w, True, True, -1, None, None, None, -1, None, True)  # 3.11's order; allow_vfork
    os.close(w)
    os.read(r, 100)
    os.close(r)
    return pid

kids = []
if sys.argv[2] == "100":
    for _ in range(100):
        pid = os.fork()
        if pid == 0:
            import select
            select.select([], [], [])
        kids.append(pid)
out = {}
for name, fn in (("fork + exec at once", fork_exec), ("fork + svtree's child setup (osutil.spawn)", fork_svtree),
                 ("os.posix_spawn (vfork)", posix_spawn), ("_posixsubprocess (vfork)", posixsubprocess)):
    call, to_exec = [], []
    for _ in range(REPS):
        t0 = time.monotonic()
        pid = fn()
        t1 = time.monotonic()
        got = ev.wait(lambda: ev.execs.get(pid) and ev.execs[pid].t, 5, "exec")
        os.waitpid(pid, 0)
        call.append(t1 - t0)
        to_exec.append(got - t0)
    out[name] = (statistics.median(call) * 1000, statistics.median(to_exec) * 1000)
rss = int(open("/proc/self/statm").read().split()[1]) * 4
for k in kids:
    os.kill(k, 9)
    os.waitpid(k, 0)
print(json.dumps({"rss_kb": rss, "out": out}))
'''


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=50)
    args = ap.parse_args()
    code = CHILD.replace("BENCH", repr(BENCH)).replace("REPO", repr(REPO)).replace("REPS", str(args.reps))
    results = {}
    for kind in ("small", "core"):
        for kids in ("0", "100"):
            flags = ["-I", "-S"] if kind == "small" else ["-I"]
            r = subprocess.run([sys.executable, *flags, "-c", code, kind, kids], capture_output=True, text=True,
                               timeout=300)
            if r.returncode != 0:
                sys.exit(r.stderr)
            results[(kind, kids)] = json.loads(r.stdout)
    methods = list(next(iter(results.values()))["out"])
    print(f"{'parent':34}{'RSS kB':>8}  " + "".join(f"{m[:26]:>28}" for m in methods))
    print(f"{'':44}" + "".join(f"{'call / to exec (ms)':>28}" for _ in methods))
    for (kind, kids), d in results.items():
        cells = "".join(f"{d['out'][m][0]:13.3f} /{d['out'][m][1]:8.3f}     " for m in methods)
        print(f"{kind + ', ' + kids + ' children alive':34}{d['rss_kb']:8d}  {cells}")


if __name__ == "__main__":
    main()
