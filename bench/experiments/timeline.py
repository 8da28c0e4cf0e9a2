#!/usr/bin/env python3
"""Where boot, restart and shutdown time goes, from the kernel's process events.

    python3 bench/experiments/timeline.py [--rows svtree,svtree --no-watch,s6,runit] [-n 100] [--runs 5]
                                          [--revs REV,REV...]

--revs runs each svtree row once per git revision (`work`: the working tree), in
interleaved rounds, as columns `ROW@REV`: a change's before and after under the same load.

For each row (a system as bench/run.py runs it) and run: launch N services, then SIGKILL
one service (up > 2 s), then SIGTERM the whole namespace; every fork, exec and exit of
the namespace comes with the kernel's CLOCK_MONOTONIC time (procevents.py), so the
phases are exact whatever the bench itself does meanwhile:

  boot      launch -> exec of PID 1's program -> its first child (for svtree: the
            interpreter, the imports and compiling the tree) -> its last child (N
            monitors forked: the time per fork) -> the exec of the last service's sleep
  per service (medians over the N): supervisor forked -> it forks the service's process
            -> that process execs run (`sh`) -> sh execs `sleep`
  restart   SIGKILL -> the supervisor forks the new process -> exec of run -> exec of sleep
  shutdown  SIGTERM -> first service exit -> last service exit -> last supervisor exit ->
            PID 1's exit

Medians over the runs, in ms.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

sys.path.insert(0, HERE)
import run  # noqa: E402
import systems as S  # noqa: E402
from common import med, print_medians  # noqa: E402


def one(row: str, n: int, base: str) -> "dict[str, float]":
    system = S.of_row(row)
    work = tempfile.mkdtemp(dir=base)
    system.prepare(work, {k: S.RUN_SLEEP for k in S.service_names(n)})
    inst = system.start(work, timeline=True)
    out: "dict[str, float]" = {}
    try:
        ev = inst.events
        t_up = inst.wait_services(n, 60)
        L = inst.t_launch
        pid1 = inst.pid1
        out["boot: launch -> PID 1 exec"] = ev.execs.get(pid1).t - L if pid1 in ev.execs else None
        # PID 1's exec is its program; later execs of pid1 overwrite... it does not re-exec.
        first_exec = min((t for t, what, p in ev.log if p == pid1), default=None)
        kids = sorted(t for t, parent, child in ev.forks if parent == pid1)
        if first_exec is not None and kids:
            out["boot: PID 1 exec -> its first fork"] = kids[0] - first_exec
            out["boot: first -> last fork of PID 1"] = kids[-1] - kids[0]
            out["boot: per fork of PID 1"] = (kids[-1] - kids[0]) / max(1, len(kids) - 1)
            out["boot: last fork of PID 1 -> last service runs"] = t_up - kids[-1]
        out["boot: total"] = t_up - L
        # per service: supervisor born -> forks service -> exec run -> exec sleep
        born = {child: t for t, parent, child in ev.forks}
        parent_of = {child: parent for t, parent, child in ev.forks}
        execs: "dict[int, list[tuple[float, str]]]" = {}
        for t, what, p in ev.log:
            if what.startswith("exec"):
                execs.setdefault(p, []).append((t, what[5:]))
        a, b, c = [], [], []
        for p, e in ev.running(S.SERVICE_COMM).items():
            sup = parent_of.get(p)
            if sup is None or p not in born:
                continue
            if sup in born and sup != pid1:
                a.append(born[p] - born[sup])
            seq = sorted(execs.get(p, []))
            if len(seq) >= 2:
                b.append(seq[0][0] - born[p])
                c.append(seq[-1][0] - seq[0][0])
            elif seq:
                b.append(seq[0][0] - born[p])
        out["service: supervisor born -> forks its service"] = med(a)
        out["service: fork -> exec run (child's setup before exec)"] = med(b)
        out["service: exec run -> exec sleep (sh)"] = med(c)
        # CPU time the boot took, every process of the namespace (schedstat: ns on a CPU)
        cpu = {"PID 1": 0.0, "supervisors": 0.0, "services": 0.0}
        for ns_pid, host in inst.ns.host_pids().items():
            try:
                with open(f"/proc/{host}/schedstat") as f:
                    on_cpu = int(f.read().split()[0]) / 1e9
            except OSError:
                continue
            kind = ("PID 1" if host == pid1 else "services" if inst.ns.comm(ns_pid) == S.SERVICE_COMM
                    else "supervisors")
            cpu[kind] += on_cpu
        for kind, v in cpu.items():
            out[f"boot CPU: {kind} (ms, all processes summed)"] = v
        out["boot CPU: total"] = sum(cpu.values())
        time.sleep(2.5)
        # restart after SIGKILL
        if system.can_restart:
            d = system.service_dir(S.service_names(1)[0])
            victim_ns = next(p for p, cwd in inst.service_pids().items() if cwd == d)
            victim = inst.ns.host_pids()[victim_ns]
            t0 = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            t_new = inst.wait_new_service(t0, 10, d)
            new = next(p for p, e in ev.running(S.SERVICE_COMM).items() if e.t == t_new)
            t_fork = next((t for t, parent, child in ev.forks if child == new), None)
            seq = sorted(t for t, what, p in ev.log if p == new and what.startswith("exec"))
            out["restart: SIGKILL -> supervisor forks"] = t_fork - t0 if t_fork else None
            out["restart: fork -> exec run"] = seq[0] - t_fork if t_fork and seq else None
            out["restart: exec run -> exec sleep"] = seq[-1] - seq[0] if len(seq) > 1 else None
            out["restart: total"] = t_new - t0
            time.sleep(0.5)
        # shutdown
        hosts = inst.ns.host_pids()
        services = {hosts[p] for p in inst.service_pids() if p in hosts}
        supervisors = set(hosts.values()) - services - {pid1}
        ev.watch_exits(hosts.values())
        t0 = time.monotonic()
        system.shutdown(inst)
        t_end = inst.wait_pid1_exit(30)
        ev.pump()
        s_exits = sorted(ev.exits[p][0] for p in services if p in ev.exits)
        m_exits = sorted(ev.exits[p][0] for p in supervisors if p in ev.exits)
        if s_exits:
            out["shutdown: SIGTERM -> first service exit"] = s_exits[0] - t0
            out["shutdown: first -> last service exit"] = s_exits[-1] - s_exits[0]
        if m_exits and s_exits:
            out["shutdown: last service exit -> last supervisor exit"] = m_exits[-1] - s_exits[-1]
        if t_end is not None:
            last = max(s_exits[-1:] + m_exits[-1:] or [t0])
            out["shutdown: last exit -> PID 1 exit"] = t_end - last
            out["shutdown: total"] = t_end - t0
    finally:
        inst.kill()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default="svtree,svtree --no-watch,s6,runit")
    ap.add_argument("-n", type=int, default=100)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--revs", default="work", help="git revisions of svtree to compare (work: the working tree)")
    args = ap.parse_args()
    revs = [r.strip() for r in args.revs.split(",")]
    base = tempfile.mkdtemp(prefix="timeline-", dir="/dev/shm")
    try:
        # (row as run.py names it, the svtree snapshot it runs or None, its column's name)
        columns = []
        for r in (r.strip() for r in args.rows.split(",")):
            if not r.startswith("svtree"):
                columns.append((r, None, r))
                continue
            for rev in revs:
                where = os.path.join(base, f"rev-{rev}")
                if not os.path.isdir(where):
                    os.makedirs(where)
                    run.snapshot(where, None if rev == "work" else rev)
                columns.append((r, S.SVTREE_PATH[0] if len(revs) == 1 else os.path.join(where, "src"),
                                r if len(revs) == 1 else f"{r}@{rev}"))
        rows = [name for _, _, name in columns]
        got: "dict[str, list[dict]]" = {r: [] for r in rows}
        for _ in range(args.runs):
            for row, path, name in columns:
                if path is not None:
                    S.SVTREE_PATH[0] = path
                got[name].append(one(row, args.n, base))
        print_medians(f"phase (ms; median of {args.runs})", rows, got, 58, 19, scale=1000)
    finally:
        run.kill_everything()
        subprocess.run(["rm", "-rf", base])


if __name__ == "__main__":
    main()
