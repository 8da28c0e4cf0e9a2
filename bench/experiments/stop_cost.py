#!/usr/bin/env python3
"""Where the boot and the shutdown of N services go, per process: the core's CPU, each
monitor's CPU, its /proc walks, its reports, the core's log lines, and the critical path.

    python3 bench/experiments/stop_cost.py [-n 100] [--runs 5] [--revs work,REV]

Runs `svtree run --no-watch` as PID 1 of a fresh PID namespace (unshare) with N
`exec sleep` services on a tmpfs, through a wrapper that counts, without a profiler:
- in the core: its CPU (time.process_time) at the start of its Python, at the first
  fork, when every service runs (the bench's first look after that), at the SIGTERM
  (begin_shutdown), when the last monitor is reaped, at its end; its log lines
  (the bytes it wrote, counted in the bench's output file between the marks);
- in each monitor (the wrapper replaces monitor_main in the forked child): its CPU and
  CLOCK_MONOTONIC time at its fork, at the spawn of run, at the `exit` command, at the
  reap of run, at os._exit; its calls of osutil.children (one /proc walk of one pid's
  task/*/children) inside and outside descendants(), and the reports it sent, per phase
  ("boot": from its fork to the core's first command; "up": from that command, `up`,
  to `exit`; "stop": from `exit` on).
Each monitor writes one JSON line to a file at its exit; the core one at its end.
STOPCOST_PROFILE=FILE in the environment: the core's shutdown under cProfile, to FILE.
With --revs (`work`: the working tree), each revision runs once per round, interleaved.
Prints medians over the runs (per-monitor figures: the median monitor's, and the sum).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

sys.path.insert(0, HERE)
import run  # noqa: E402
import systems as S  # noqa: E402
from common import med, print_medians, schedstat  # noqa: E402

WRAPPER = r'''
import json, os, sys, time
OUT = @OUT@
t0c = time.process_time()
import svtree.core.monitors as monitors
import svtree.core.core as core
import svtree.monitor as mon
import svtree.osutil as osutil
from svtree.messages import Cmd
marks = {"python start": (time.monotonic(), t0c, 0)}
def minflt():
    with open("/proc/self/stat", "rb") as f:
        st = f.read()
    return int(st[st.rfind(b")") + 2:].split()[7])
def mark(name):
    marks.setdefault(name, (time.monotonic(), time.process_time(), minflt()))

real_main = monitors.monitor_main
def monitor_main(spec, *a, **k):
    m = {"name": spec.name, "t": {}, "cpu": {}, "children": {}, "desc": {}, "reports": {}}
    phase = ["boot"]
    def at(name):
        m["t"].setdefault(name, time.monotonic())
        m["cpu"].setdefault(name, time.process_time())
        m.setdefault("minflt", {}).setdefault(name, minflt())
    at("fork")
    os.waitpid = real_waitpid  # the core's wait4 below is the core's only
    depth = [0]
    real_children, real_desc = osutil.children, osutil.descendants
    def children(pid):
        key = "desc" if depth[0] else "children"
        m[key][phase[0]] = m[key].get(phase[0], 0) + 1
        return real_children(pid)
    def descendants(pid):
        depth[0] += 1
        try:
            return real_desc(pid)
        finally:
            depth[0] -= 1
    osutil.children = children
    osutil.descendants = descendants
    real_report = mon.Monitor.report
    def report(self, *a, **k):
        seq = self.seq
        real_report(self, *a, **k)
        if self.seq != seq:
            m["reports"][phase[0]] = m["reports"].get(phase[0], 0) + 1
    mon.Monitor.report = report
    real_spawn = mon.Monitor.spawn_run
    def spawn_run(self):
        real_spawn(self)
        at("spawned")
    mon.Monitor.spawn_run = spawn_run
    real_feed = mon.Monitor.feed
    def feed(self, event):
        if phase[0] == "stop" and event.kind.name == "EXITED":
            at("run reaped")
        real_feed(self, event)
    mon.Monitor.feed = feed
    real_decode = mon.decode_command
    def decode_command(data):
        cmd = real_decode(data)
        if cmd.kind is Cmd.EXIT:
            phase[0] = "stop"
            at("exit cmd")
        elif phase[0] == "boot":
            phase[0] = "up"
        return cmd
    mon.decode_command = decode_command
    real_exit = os._exit
    def _exit(code):
        at("exit")
        m["code"] = code
        try:
            fd = os.open(OUT + ".monitors", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.write(fd, (json.dumps(m) + "\n").encode())
            os.close(fd)
        finally:
            real_exit(code)
    os._exit = _exit
    return real_main(spec, *a, **k)
monitors.monitor_main = monitor_main

real_fork = osutil.fork_quiet
def fork_quiet(*a, **k):
    mark("first fork")
    return real_fork(*a, **k)
osutil.fork_quiet = fork_quiet
monitors.osutil.fork_quiet = fork_quiet
real_begin = core.Core.begin_shutdown
def sched(pid):
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e6
    except OSError:
        return 0.0
before = {}  # monitor pid -> its and its service's CPU (ms) at the SIGTERM
after = {}  # monitor pid -> the CPU wait4 reports at its reap (its service's included)
real_waitpid = os.waitpid
def waitpid(pid, flags):
    got, status, ru = os.wait4(pid, flags)
    if got in before:
        after[got] = (ru.ru_utime + ru.ru_stime) * 1000
    return got, status
os.waitpid = waitpid
PROFILE = os.environ.get("STOPCOST_PROFILE")  # a file: cProfile of the core's shutdown
if PROFILE:
    import cProfile
    prof = cProfile.Profile()
def begin_shutdown(self, reason):
    mark("shutdown begin")
    if PROFILE:
        prof.enable()
    for svc in self.records:
        if svc.link is not None:
            before[svc.link.pid] = sched(svc.link.pid) + (sched(svc.report.pid) if svc.report.pid else 0)
    return real_begin(self, reason)
core.Core.begin_shutdown = begin_shutdown
real_phase = core.Core._phase_event
def _phase_event(self, ev):
    if ev.name == "SERVICES_GONE":
        mark("services gone")
    return real_phase(self, ev)
core.Core._phase_event = _phase_event
real_sio = core.Core._stop_in_order
BATCH = os.environ.get("STOPCOST_BATCH") == "1"
def _stop_in_order(self):
    if BATCH and "exits sent" not in marks:
        for svc in self.records:
            if svc.link is not None:
                try:
                    os.sched_setscheduler(svc.link.pid, os.SCHED_BATCH | os.SCHED_RESET_ON_FORK, os.sched_param(0))
                except OSError:
                    pass
    real_sio(self)
    mark("exits sent")
core.Core._stop_in_order = _stop_in_order
real_boot = core.Core.boot
def boot(self):
    mark("boot")
    real_boot(self)
    mark("boot returned")
core.Core.boot = boot

from svtree.cli import main
try:
    code = main(sys.argv[1:])
finally:
    mark("end")
    if PROFILE:
        prof.disable()
        prof.dump_stats(PROFILE)
    marks["monitors at stop"] = [after[p] - before[p] for p in after]
    with open(OUT + ".core", "w") as f:
        json.dump(marks, f)
sys.exit(code)
'''


def one(n: int, base: str, src: str, plain: bool = False) -> "dict[str, float]":
    system = S.Svtree("nowatch")
    work = tempfile.mkdtemp(dir=base)
    system.prepare(work, {k: S.RUN_SLEEP for k in S.service_names(n)})
    out_base = os.path.join(work, "stats")
    wrapper = os.path.join(work, "wrapper.py")
    with open(wrapper, "w") as f:
        f.write(WRAPPER.replace("@OUT@", repr(out_base)))
    env = system.env()
    env["PYTHONPATH"] = src
    argv = [sys.executable, wrapper, *system.argv(work)[3:]]  # drop `python -m svtree`
    if plain:
        argv = system.argv(work)
    inst = S.Instance(system, work, argv, env, timeline=True)
    out: "dict[str, float]" = {}
    try:
        t_up = inst.wait_services(n, 60)
        out["boot: launch -> last service runs (ms)"] = (t_up - inst.t_launch) * 1000
        time.sleep(1.0)
        with open(inst.log_path, "rb") as f:
            boot_lines = f.read().count(b"\n")
        hosts = list(inst.ns.host_pids().values())
        before = sum(schedstat(p) for p in [inst.proc.pid, *hosts])
        t0 = time.monotonic()
        inst.signal(15)
        t_end = inst.wait_pid1_exit(30)
        out["shutdown: SIGTERM -> PID 1 exit (ms)"] = (t_end - t0) * 1000
        # Every process of the namespace has exited and been reaped by then; unshare's
        # rusage adds up all their CPU (its own too): minus what they had used before.
        _, _, ru = os.wait4(inst.proc.pid, 0)
        out["shutdown: CPU of every process, exits included"] = (ru.ru_utime + ru.ru_stime) * 1000 - before
        with open(inst.log_path, "rb") as f:
            lines = f.read().count(b"\n")
    finally:
        inst.kill()
    if plain:
        return out
    out["boot: log lines"] = boot_lines
    out["shutdown: log lines"] = lines - boot_lines
    out["shutdown: CPU per service, every process, exits included"] = out[
        "shutdown: CPU of every process, exits included"] / n
    with open(out_base + ".core") as f:
        c = json.load(f)
    ms = lambda a, b, i: (c[b][i] - c[a][i]) * 1000  # noqa: E731
    out["boot: core CPU, python start -> first fork"] = ms("python start", "first fork", 1)
    out["boot: core CPU, first fork -> boot() returned"] = ms("first fork", "boot returned", 1)
    out["boot: core wall, first fork -> boot() returned"] = ms("first fork", "boot returned", 0)
    out["boot: core minor faults, first fork -> boot() returned (count)"] = (
        c["boot returned"][2] - c["first fork"][2])
    out["shutdown: core minor faults, SIGTERM -> services gone (count)"] = (
        c["services gone"][2] - c["shutdown begin"][2])
    out["shutdown: core CPU, SIGTERM -> services gone"] = ms("shutdown begin", "services gone", 1)
    out["shutdown: core CPU, services gone -> end"] = ms("services gone", "end", 1)
    out["shutdown: core wall, SIGTERM seen -> services gone"] = ms("shutdown begin", "services gone", 0)
    out["shutdown: core wall, services gone -> end of main()"] = ms("services gone", "end", 0)
    out["shutdown: core wall, SIGTERM seen -> every exit sent"] = ms("shutdown begin", "exits sent", 0)
    out["shutdown: core CPU, SIGTERM seen -> every exit sent"] = ms("shutdown begin", "exits sent", 1)
    stop = c["monitors at stop"]
    out["shutdown: CPU of a monitor and its service, exits included (median)"] = med(stop)
    out["shutdown: the same, summed over the monitors"] = sum(stop)
    out["shutdown: SIGTERM sent -> core sees it"] = (c["shutdown begin"][0] - t0) * 1000
    mons = []
    with open(out_base + ".monitors") as f:
        for line in f:
            mons.append(json.loads(line))
    out["monitors that reported"] = len(mons)
    d = lambda m, k, a, b: (m[k][b] - m[k][a]) * (1 if k == "minflt" else 1000) if a in m[k] and b in m[k] else None  # noqa: E731
    for label, k, a, b in (
            ("boot: monitor CPU, fork -> run spawned", "cpu", "fork", "spawned"),
            ("boot: monitor wall, fork -> run spawned", "t", "fork", "spawned"),
            ("shutdown: monitor CPU, exit cmd -> run reaped", "cpu", "exit cmd", "run reaped"),
            ("shutdown: monitor CPU, run reaped -> os._exit", "cpu", "run reaped", "exit"),
            ("shutdown: monitor wall, exit cmd -> run reaped", "t", "exit cmd", "run reaped"),
            ("boot: monitor minor faults, fork -> run spawned", "minflt", "fork", "spawned"),
            ("shutdown: monitor minor faults, exit cmd -> os._exit", "minflt", "exit cmd", "exit"),
            ("shutdown: monitor wall, run reaped -> os._exit", "t", "run reaped", "exit")):
        vals = [d(m, k, a, b) for m in mons]
        out[label + " (median)"] = med(vals)
        if k == "cpu":
            out[label + " (sum)"] = sum(v for v in vals if v is not None)
    for what in ("children", "desc", "reports"):
        for ph in ("boot", "up", "stop"):
            out[f"{ph}: monitor {what} per monitor (median)"] = med([m[what].get(ph, 0) for m in mons])
    exits = sorted(m["t"]["exit cmd"] for m in mons if "exit cmd" in m["t"])
    gone = sorted(m["t"]["exit"] for m in mons)
    if exits:
        out["shutdown: core sees SIGTERM -> first exit cmd received"] = (exits[0] - c["shutdown begin"][0]) * 1000
        out["shutdown: first -> last exit cmd received"] = (exits[-1] - exits[0]) * 1000
        out["shutdown: last exit cmd -> last monitor os._exit"] = (gone[-1] - exits[-1]) * 1000
        out["shutdown: last monitor os._exit -> core: services gone"] = (c["services gone"][0] - gone[-1]) * 1000
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=100)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--revs", default="work")
    ap.add_argument("--plain", action="store_true",
                    help="no wrapper: only the wall times and the shutdown's CPU of svtree as it is")
    args = ap.parse_args()
    revs = [r.strip() for r in args.revs.split(",")]
    base = tempfile.mkdtemp(prefix="stopcost-", dir="/dev/shm")
    try:
        srcs = {}
        for rev in revs:
            where = os.path.join(base, f"rev-{rev}")
            os.makedirs(where)
            run.snapshot(where, None if rev == "work" else rev)
            srcs[rev] = os.path.join(where, "src")
        got: "dict[str, list[dict]]" = {r: [] for r in revs}
        for _ in range(args.runs):
            for rev in revs:
                got[rev].append(one(args.n, base, srcs[rev], args.plain))
        print_medians(f"figure (median of {args.runs} runs; ms unless said)", revs, got, 66, 13)
    finally:
        run.kill_everything()
        subprocess.run(["rm", "-rf", base])


if __name__ == "__main__":
    main()
