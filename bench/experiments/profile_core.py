#!/usr/bin/env python3
"""cProfile of svtree's core (PID 1) over boot and shutdown of N services.

    python3 bench/experiments/profile_core.py [N] [--watch] [--out FILE.prof] [--timers]

Runs `svtree run` as PID 1 of a fresh PID namespace (unshare) under cProfile, with N
`exec sleep` services on a tmpfs; the bench (outside) waits until every service runs,
waits 1 s, sends SIGTERM and waits for the end. The profiler is switched off in each
forked monitor (the wrapper replaces svtree.core.monitors.monitor_main by one that disables
it first), so the profile is the core's alone. Prints the functions with the largest
cumulative and own time, the module import time (the part before boot), and writes the
raw profile to FILE.prof (default /tmp/svtree-core.prof) for pstats or snakeviz.
"""

from __future__ import annotations

import argparse
import os
import pstats
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import run  # noqa: E402
import systems as S  # noqa: E402

WRAPPER = r'''
import cProfile, sys, os, time, json
TIMERS = @TIMERS@
prof = cProfile.Profile()
if not TIMERS:
    prof.enable()
import svtree.core.monitors as monitors
import svtree.core.core as core
real = monitors.monitor_main
def monitor_main(*a, **k):
    prof.disable()
    sys.setprofile(None)
    return real(*a, **k)
monitors.monitor_main = monitor_main
spent = {}
if TIMERS:
    # Wall time in each of these, nested calls included (a wrapper costs ~1 us): no profiler.
    import svtree.osutil as osutil, svtree.core.main as cmain, svtree.compiler as compiler
    import svtree.core.loop as loop
    def timed(owner, name, label):
        fn = getattr(owner, name)
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                d = spent.setdefault(label, [0.0, 0])
                d[0] += time.perf_counter() - t
                d[1] += 1
        setattr(owner, name, wrapper)
    for owner, name in ((core.Core, "boot"), (core.Core, "_start_monitor"), (osutil, "fork_quiet"),
                        (monitors.Monitors, "send"), (core.Core, "_on_report"),
                        (core.Core, "_converge"), (core.Core, "_shutdown_progress"),
                        (core.Core, "_on_monitor_exit"), (core.Core, "reap"),
                        (core.Core, "_sweep_progress"), (core.Core, "_advance"),
                        (core.Core, "_notify"), (cmain, "_load_plan")):
        timed(owner, name, f"{getattr(owner, '__name__', owner)}.{name}")
    monitors.osutil.fork_quiet = osutil.fork_quiet
t_main = time.perf_counter()
from svtree.cli import main
try:
    code = main(sys.argv[1:])
finally:
    prof.disable()
    if TIMERS:
        spent["whole run (imports of svtree.cli on)"] = [time.perf_counter() - t_main, 1]
        with open(@OUT@ + ".json", "w") as f:
            json.dump(spent, f)
    else:
        prof.dump_stats(@OUT@)
sys.exit(code)
'''


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", type=int, nargs="?", default=100)
    ap.add_argument("--watch", action="store_true")
    ap.add_argument("--out", default="/tmp/svtree-core.prof")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--timers", action="store_true",
                    help="no profiler: wall time in a few core methods, with perf_counter wrappers")
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="prof-", dir="/dev/shm")
    run.snapshot(base, None)
    system = S.Svtree("" if args.watch else "nowatch")
    work = tempfile.mkdtemp(dir=base)
    system.prepare(work, {n: S.RUN_SLEEP for n in S.service_names(args.n)})
    wrapper = os.path.join(base, "wrapper.py")
    with open(wrapper, "w") as f:
        f.write(WRAPPER.replace("@OUT@", repr(args.out)).replace("@TIMERS@", repr(args.timers)))
    argv = [sys.executable, wrapper, *system.argv(work)[3:]]  # drop `python -m svtree`
    inst = S.Instance(system, work, argv, system.env())
    try:
        t_up = inst.wait_services(args.n, 60)
        how = "with timers" if args.timers else "under cProfile"
        print(f"boot {how}: {1000 * (t_up - inst.t_launch):.0f} ms for {args.n} services")
        time.sleep(1.0)
        t0 = time.monotonic()
        inst.signal(15)
        t_end = inst.wait_pid1_exit(30)
        print(f"shutdown {how}: {1000 * (t_end - t0):.0f} ms")
    finally:
        inst.kill()
        subprocess.run(["rm", "-rf", base])
    if args.timers:
        import json

        with open(args.out + ".json") as f:
            spent = json.load(f)
        print(f"{'function (wall time, callees included)':50}{'calls':>7}{'total ms':>10}{'per call ms':>13}")
        for name, (t, n) in sorted(spent.items(), key=lambda kv: -kv[1][0]):
            print(f"{name:50}{n:7}{t * 1000:10.1f}{t * 1000 / n:13.3f}")
        return
    st = pstats.Stats(args.out)
    st.sort_stats("cumulative").print_stats(args.top)
    st.sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
