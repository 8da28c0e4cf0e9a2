#!/usr/bin/env python3
"""USS and PSS of every process svtree runs besides the services, by role.

    python3 bench/experiments/memory_breakdown.py [-n 10] [--no-watch] [--smaps]

Starts svtree as bench/run.py does (PID 1 of a PID namespace, N `exec sleep` services on a
tmpfs, the watcher on unless --no-watch), waits 2.5 s after every service ran, and prints
the core's, the watcher's and the monitors' (sum and median) USS and PSS in kB.
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
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import figures as F  # noqa: E402
import run  # noqa: E402
import systems as S  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=10)
    ap.add_argument("--no-watch", action="store_true")
    ap.add_argument("--smaps", action="store_true", help="also each role's private pages per mapping (smaps.py)")
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="membreak-", dir="/dev/shm")
    try:
        run.snapshot(base, None)
        system = S.Svtree("nowatch" if args.no_watch else "")
        work = tempfile.mkdtemp(dir=base)
        system.prepare(work, {k: S.RUN_SLEEP for k in S.service_names(args.n)})
        inst = system.start(work)
        inst.wait_services(args.n, 60)
        time.sleep(2.5)
        snap = F.Snapshot(inst)
        mons = [p for p in snap.pids if p != 1 and p not in snap.helpers]
        rows = [("core (PID 1)", [1]), ("watcher", sorted(snap.helpers)), (f"{len(mons)} monitors", mons)]
        print(f"{'process':18}{'USS kB':>9}{'PSS kB':>9}")
        for name, pids in rows:
            print(f"{name:18}{sum(snap.uss[p] or 0 for p in pids):9}{sum(snap.pss[p] or 0 for p in pids):9}")
        if mons:
            print(f"{'one monitor (med)':18}{statistics.median(snap.uss[p] for p in mons):9}"
                  f"{statistics.median(snap.pss[p] for p in mons):9}")
        print(f"{'total':18}{snap.total_uss():9}{snap.total_pss():9}")
        if args.smaps:
            import smaps

            hosts = inst.ns.host_pids()
            for name, pids in rows:
                if pids:
                    print(f"\n{name}:")
                    print(smaps.report(hosts[pids[0]], 10))
    finally:
        run.kill_everything()
        subprocess.run(["rm", "-rf", base])


if __name__ == "__main__":
    main()
