#!/usr/bin/env python3
"""What svtree's file watcher costs, started as it was before issue 18 (a second
interpreter, exec'd) or forked from a parent that already runs, importing watchfiles only
in the child (svtree forks it now: core/reload.py, the "fork core, .so only" case).

    python3 bench/experiments/watcher_cost.py [--runs 5]

Cases (each watches one directory of a tmpfs and says `ready` once its watches are set):
  exec                  a second interpreter that imports svtree's cli and watchfiles'
                        package and watches (what `svtree _watcher DIR` was)
  fork core, package    forked from a core-sized parent (svtree's core modules, structlog,
                        gc.freeze()), then `from watchfiles._rust_notify import RustNotify`
                        (which runs watchfiles/__init__: watchfiles.main, .run, .filters)
  fork core, .so only   the same, loading the compiled _rust_notify module by itself
                        (importlib's ExtensionFileLoader), without the package's Python
  fork small, .so only  forked from a small `python -I -S` parent instead
Per case: ms from the start (exec or fork) to `ready`, CPU ms of the watcher until then
(schedstat), and its USS and PSS in kB 0.5 s later. Medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from common import rollup  # noqa: E402

PARENT = r'''
import os, sys, time, gc
sys.path.insert(0, REPO)
sys.path.append(PURELIB)  # -S: site-packages by hand, without running its .pth files
if KIND == "core":
    import svtree.core.main, svtree.core.core, svtree.core.loop, svtree.core.control, svtree.core.reload
    import svtree.log, svtree.compiler, structlog
    gc.freeze()
else:
    import signal, select, json, socket
r, w = os.pipe()
t0 = time.monotonic()
pid = os.fork()
if pid == 0:
    os.close(r)
    if HOW == "package":
        from watchfiles._rust_notify import RustNotify
    else:
        import importlib.machinery, importlib.util
        spec = importlib.util.find_spec("watchfiles")
        d = os.path.dirname(spec.origin)
        so = next(os.path.join(d, f) for f in os.listdir(d) if f.startswith("_rust_notify") and f.endswith(".so"))
        loader = importlib.machinery.ExtensionFileLoader("watchfiles._rust_notify", so)
        mod = importlib.util.module_from_spec(importlib.util.spec_from_loader("watchfiles._rust_notify", loader))
        loader.exec_module(mod)
        RustNotify = mod.RustNotify
    n = RustNotify([DIR], False, False, 300, True, False)
    os.write(w, b"ready\n")
    while True:
        n.watch(100, 50, 0, None)
os.close(w)
os.read(r, 100)
print(pid, time.monotonic() - t0, flush=True)
sys.stdin.read()
os.kill(pid, 9)
'''


def cpu_ms(pid: int) -> float:
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            total += int(f.read().split()[0])
    return total / 1e6


def exec_case(d: str) -> "tuple[float, float, int, int]":
    env = dict(os.environ, PYTHONPATH=REPO)
    t0 = time.monotonic()
    code = ("import sys, svtree.cli, watchfiles; from svtree.watcher import watch; "
            "from watchfiles._rust_notify import RustNotify; watch([('tree', sys.argv[1])], 1)")
    p = subprocess.Popen([sys.executable, "-c", code, d], stdout=subprocess.PIPE, env=env)
    try:
        p.stdout.readline()
        took = time.monotonic() - t0
        cpu = cpu_ms(p.pid)
        time.sleep(0.5)
        return took * 1000, cpu, *rollup(p.pid)
    finally:
        p.kill()
        p.wait()


def fork_case(d: str, kind: str, how: str) -> "tuple[float, float, int, int]":
    import sysconfig

    code = PARENT.replace("PURELIB", repr(sysconfig.get_paths()["purelib"])).replace("REPO", repr(REPO)).replace("KIND", repr(kind)).replace("HOW", repr(how)).replace("DIR", repr(d))
    flags = ["-I", "-S"] if kind == "small" else ["-I"]
    p = subprocess.Popen([sys.executable, *flags, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        pid, took = p.stdout.readline().split()
        pid = int(pid)
        cpu = cpu_ms(pid)
        time.sleep(0.5)
        return float(took) * 1000, cpu, *rollup(pid)
    finally:
        p.stdin.close()
        p.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    d = tempfile.mkdtemp(prefix="watch-", dir="/dev/shm")
    cases = {
        "exec (before)": lambda: exec_case(d),
        "fork core, package": lambda: fork_case(d, "core", "package"),
        "fork core, .so only": lambda: fork_case(d, "core", "so"),
        "fork small, .so only": lambda: fork_case(d, "small", "so"),
    }
    print(f"{'case':24}{'to ready ms':>12}{'CPU ms':>9}{'USS kB':>9}{'PSS kB':>9}   (median of {args.runs})")
    for name, fn in cases.items():
        got = [fn() for _ in range(args.runs)]
        cols = [statistics.median(g[i] for g in got) for i in range(4)]
        print(f"{name:24}{cols[0]:12.1f}{cols[1]:9.1f}{cols[2]:9.0f}{cols[3]:9.0f}")
    os.rmdir(d)


if __name__ == "__main__":
    main()
