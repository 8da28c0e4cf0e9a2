"""The checks of one run (see the package's docstring for what each one guarantees):
at a quiet moment while svtree runs (`quiet_checks`: the model's states, reaping), and
on what was recorded once svtree has exited (`check_all`). Each takes the Run, adds
violations to it and counts its comparisons (`run.count`), so that a report says how
much was checked."""

from __future__ import annotations

import re
import signal
import time

from harness import children, descendants, proc_status, read_cmdline
from svfuzz.example import FLOOD_LINES, Svc
from svfuzz.observe import Rec, fmt_t, is_alive, now_ns, poll


def quiet_checks(run) -> None:
    m = run.model
    wait_until = max([now_ns()] + list(m.pending.values())) + int(0.3e9)
    while now_ns() < wait_until and run.alive():
        time.sleep(0.05)
    if not run.quiet_allowed():
        return
    run.quiet_checked = True
    check_reaping(run)
    recs = run.records()
    for name, s in sorted(m.status.items()):
        svc = m.all_svcs().get(name)
        if svc is None:
            continue
        if s in ("up", "down", "removed"):
            run.count(f"model {s}")
        if s == "up":
            ok = poll(lambda: run.current_main(name) is not None, 8.0)
            if not ok:
                last = [r for r in run.records() if r.name == name][-3:]
                run.violations.append(
                    f"{name} should be up (it was {_why(run, name)}), but no live process "
                    f"runs its latest start; its last lines: {_lines(run, last)}")
            elif name in m.boot_up and not m.touched.get(name):
                run.count("kept pid")
                starts = [r for r in recs if r.kind == "start" and r.name == name]
                if len(starts) != 1:
                    run.violations.append(
                        f"{name} was never touched and should have kept its first pid, but it "
                        f"started {len(starts)} times: {_lines(run, starts)}")
        elif s in ("down", "removed"):
            ok = poll(lambda: run.current_main(name) is None, run.model.stop_time(svc) + 8.0)
            if not ok:
                run.violations.append(
                    f"{name} should be {s} ({_why(run, name)}), but its process is alive")
            else:
                t_last = max(m.touched.get(name) or [run.t0])
                late = [r for r in run.records() if r.kind == "start" and r.name == name
                        and r.ts > t_last + int(1.0e9) and r.ts > m.pending[name]]
                if s == "down" and late:
                    run.violations.append(
                        f"{name} should stay {s} ({_why(run, name)}), but started again: "
                        f"{_lines(run, late)}")

    recs = run.records()  # again: the polls above took time
    for name, since, why in m.expect_restart:
        if m.status.get(name) != "up":
            continue
        run.count("restarted")
        if not any(r.kind == "start" and r.name == name and r.ts > since for r in recs):
            run.violations.append(f"{name} should have restarted ({why} at {fmt_t(since, run.t0)}), "
                                   "but it has no start since")


def _why(run, name: str) -> str:
    acts = [f"{d.kind} {d.arg} at {fmt_t(d.t, run.t0)}" for d in run.log if d.target == name]
    return "boot" + ("; " + ", ".join(acts) if acts else "") + \
        (f"; down because {run.model.down_kind.get(name)}" if run.model.status.get(name) == "down" else "")


def _lines(run, recs) -> str:
    return "; ".join(f"{r.kind} {r.name} {r.pid} {fmt_t(r.ts, run.t0)} {r.extra}".strip() for r in recs)


def check_reaping(run) -> None:
    """Zombies whose parent is svtree or a monitor, and live processes hanging off
    svtree that no monitor supervises, that survive ~1.5 s of reap passes."""
    pid1 = run.sv.pid1
    me = read_cmdline(pid1)
    snaps = []
    for i in range(4):
        if i:
            time.sleep(0.5)
        if not run.alive():
            return
        kids = children(pid1)
        monitors = {p for p in kids if read_cmdline(p) == me}
        reapers = {pid1} | monitors
        bad_z, stray = set(), set()
        for p in [pid1, *descendants(pid1)]:
            try:
                s = proc_status(p)
            except OSError:
                continue
            ppid = int(s.get("PPid", "0"))
            if s.get("State", "").startswith("Z") and ppid in reapers:
                bad_z.add((p, ppid, s.get("Name")))
        for p in kids:
            if p in monitors or not is_alive(p):
                continue
            if b"N=main;" in read_cmdline(p) or b"N=maind;" in read_cmdline(p):
                continue  # the main command and what it left: not a service's
            stray.add((p, read_cmdline(p).replace(b"\0", b" ").decode(errors="replace")[:80]))
        snaps.append((bad_z, stray))
    run.count("reap snapshots", len(snaps))
    z = set.intersection(*[s[0] for s in snaps])
    left = set.intersection(*[s[1] for s in snaps])
    if z:
        run.violations.append(f"zombies not reaped by svtree or a monitor for 1.5s: {sorted(z)}")
    if left:
        run.violations.append(f"processes left unsupervised under svtree for 1.5s: {sorted(left)}")


def check_all(run) -> None:
    recs = run.records()
    check_exit_code(run, recs)
    check_bound(run)
    check_order(run, recs)
    check_boot_order(run, recs)
    check_kill_timing(run, recs)
    check_finish_timing(run, recs)
    check_sweep_timing(run, recs)
    check_output(run, recs)
    check_internal_errors(run)


def check_exit_code(run, recs) -> None:
    if run.exit_code is None:
        return
    m = run.model
    mains = [r for r in recs if r.kind == "main-start"]
    exits = [r for r in recs if r.kind == "main-exit"]
    if exits:
        base = {int(exits[0].extra)}
    elif mains:
        base = {128 + signal.SIGTERM}
    elif run.ex.main:
        # The shutdown may have begun just after svtree started the main command and
        # before it could record its start: SIGTERM ended it unrecorded, or it never ran.
        base = {0, 128 + signal.SIGTERM}
    else:
        base = {0}
    boot_failed = [r for r in recs if r.kind == "oneshot-exit" and r.extra != "0"]
    if m.boot_failure and not m.failures_certain and not boot_failed:
        want = {1} | base  # the failing oneshot was stopped before it could fail
    elif m.failed_certain():
        want = {1}
    elif m.failed_possible():
        want = {1} | base
    else:
        want = base
    run.count("exit code")
    if run.exit_code not in want:
        why = []
        if m.boot_failure:
            why.append("a oneshot fails at boot")
        if m.failures_certain:
            why.append("a critical service ended for good")
        if exits:
            why.append(f"the main command exited {exits[0].extra}")
        elif mains:
            why.append("the main command was stopped by SIGTERM")
        run.violations.append(f"svtree exited {run.exit_code}, expected {sorted(want)} "
                               f"({', '.join(why) or 'plain shutdown'})")


def check_bound(run) -> None:
    hi = run.shutdown_hi()
    if hi is None or run.exit_code is None:
        return
    took = (run.t_exit - hi) / 1e9
    bound = run.shutdown_bound()
    run.count("bound")
    if took > bound:
        run.violations.append(f"shutdown took {took:.2f}s, more than the bound {bound:.2f}s")


def check_order(run, recs) -> None:
    """Every dependent (transitively, in any version of the tree) was gone before its
    dependency got the stop signal of the shutdown."""
    lo, hi = run.shutdown_lo(), run.shutdown_hi(possible=True)
    if hi is None:
        return
    m = run.model
    svcs = m.all_svcs()
    window = int((1.5 + sum(m.stop_time(s) for s in svcs.values())) * 1e9)
    for dep, svc in sorted(svcs.items()):
        # Lines of dep caused by our own requests (ctl, reload, kill -TERM) near the
        # shutdown are not the shutdown's: leave dep out then.
        disturbed = [d for d in run.log if d.target == dep and d.t >= lo - window and (
            d.kind in ("ctl", "reload") or (d.kind == "kill" and d.arg == "TERM"))]
        if disturbed:
            continue
        mark_kind = "finish-start" if svc.type == "oneshot" else "term"
        marks = [r for r in recs if r.name == dep and r.kind == mark_kind and r.ts >= hi]
        if not marks:
            continue
        mark = marks[0]
        for p in sorted(m.dependents_closure(dep)):
            run.count("order", sum(1 for r in recs if r.name == p))
            late = [r for r in recs if r.name == p and r.ts > mark.ts]
            if late:
                run.violations.append(
                    f"order: {dep} got its stop signal ({mark_kind} at {fmt_t(mark.ts, run.t0)}) "
                    f"while its dependent {p} was still alive: {_lines(run, late[:4])}")


def check_boot_order(run, recs) -> None:
    """A dependent's first start comes after its dependencies were ready (notify) or
    done (oneshot): those lines are written before the readiness is signalled."""
    for svc in run.ex.services:
        first = next((r for r in recs if r.kind == "start" and r.name == svc.name), None)
        if first is None:
            continue
        for d in svc.deps:
            dsvc = run.model.all_svcs().get(d)
            if dsvc is None:
                continue
            if dsvc.type == "oneshot":
                kind, extra = "oneshot-exit", "0"
            elif dsvc.behaviour == "notify":
                kind, extra = "ready", None
            else:
                continue
            ready = next((r for r in recs if r.name == d and r.kind == kind
                          and (extra is None or r.extra == extra)), None)
            run.count("start order")
            if ready is None or ready.ts > first.ts:
                run.violations.append(
                    f"start order: {svc.name} started at {fmt_t(first.ts, run.t0)} before its "
                    f"dependency {d} was {'done' if kind != 'ready' else 'ready'} "
                    f"({fmt_t(ready.ts if ready else None, run.t0)})")


def check_kill_timing(run, recs) -> None:
    """SIGKILL came no earlier than stop_timeout after the stop signal, and not much later."""
    svcs = run.model.all_svcs()
    ours = {}  # (name) -> times of our own kills (any signal) and monitor kills
    for d in run.log:
        if d.kind in ("kill", "kill_monitor") and d.outcome.startswith("hit"):
            ours.setdefault(d.target, []).append((d.t, d.kind, d.arg))
    for svc in svcs.values():
        if svc.type != "longrun" or svc.behaviour not in ("ignore_term", "slow_stop"):
            continue
        starts = [r for r in recs if r.kind == "start" and r.name == svc.name]
        for s in starts:
            terms = [r for r in recs if r.kind == "term" and r.name == svc.name and r.pid == s.pid]
            if not terms:
                _died_without_term(run, svc, s, recs, ours)
                continue
            term = terms[0]
            alive = [r for r in recs if r.kind == "alive" and r.name == svc.name and r.pid == s.pid]
            death = run.observer.deaths.get((svc.name, s.pid)) if run.observer else None
            if death is not None:
                end = death
            else:
                end = alive[-1].ts if alive else term.ts
            if any(s.ts <= t <= end + int(1e9) for t, _, _ in ours.get(svc.name, [])):
                continue  # we killed it (or its monitor) ourselves, or sent our own TERM
            tol = 0.15
            if svc.behaviour == "ignore_term" and death is not None:
                run.count("kill not early")
                lived = (death - term.ts) / 1e9
                if lived < svc.stop_timeout - tol:
                    run.violations.append(
                        f"kill: {svc.name} (pid {s.pid}) ignores TERM and died {lived:.3f}s after "
                        f"its stop signal, before stop_timeout={svc.stop_timeout}")
            if alive:
                run.count("kill not late")
                lasted = (alive[-1].ts - term.ts) / 1e9
                if lasted > svc.stop_timeout + 1.5:
                    run.violations.append(
                        f"kill: {svc.name} (pid {s.pid}) was still alive {lasted:.3f}s after its "
                        f"stop signal, stop_timeout={svc.stop_timeout}")


def check_sweep_timing(run, recs) -> None:
    """The main command's daemon is left for the final sweep: SIGTERM, and SIGKILL
    no earlier than kill_grace (it ignores TERM when stubborn), no later than +slack."""
    for (name, pid), death in sorted(run.observer.deaths.items() if run.observer else []):
        if name != "maind":
            continue
        terms = [r for r in recs if r.kind == "cterm" and r.name == "maind" and r.pid == pid]
        if not terms or run.exit_code is None:
            continue
        run.count("sweep kill")
        lived = (death - terms[0].ts) / 1e9
        if lived < run.ex.kill_grace - 0.15:
            run.violations.append(
                f"sweep: the main command's daemon ignored SIGTERM and died {lived:.3f}s after it, "
                f"before kill_grace={run.ex.kill_grace}")
        beats = [r for r in recs if r.kind == "mhb" and r.pid == pid and r.ts > terms[0].ts]
        if beats and (beats[-1].ts - terms[0].ts) / 1e9 > run.ex.kill_grace + 1.5:
            run.violations.append(
                f"sweep: the main command's daemon was alive {(beats[-1].ts - terms[0].ts) / 1e9:.3f}s "
                f"after SIGTERM, kill_grace={run.ex.kill_grace}")


def _died_without_term(run, svc: Svc, start: Rec, recs, ours) -> None:
    """A TERM-ignoring main that died while svtree ran, not by our hand, with no `term`
    line (written the instant its trap runs): SIGKILL without the stop signal first."""
    if svc.behaviour != "ignore_term" or not run.observer:
        return
    death = run.observer.deaths.get((svc.name, start.pid))
    if death is None:
        return
    # (Killed by the kernel as svtree, PID 1 of the namespace, exited: that is wrong
    # too, svtree must stop every service before it exits.)
    if any(start.ts <= t <= death + int(1e9) for t, _, _ in ours.get(svc.name, [])):
        return
    run.count("kill not early")
    run.violations.append(
        f"kill: {svc.name} (pid {start.pid}) ignores TERM and was killed before its TERM trap "
        f"could run (SIGKILL without, or at once after, the stop signal), "
        f"{(death - start.ts) / 1e9:.3f}s after it started")


def check_finish_timing(run, recs) -> None:
    for svc in run.model.all_svcs().values():
        if svc.finish != "hung":
            continue
        for s in [r for r in recs if r.kind == "finish-start" and r.name == svc.name]:
            alive = [r for r in recs if r.kind == "fin-alive" and r.pid == s.pid]
            run.count("finish killed", bool(alive))
            if alive and (alive[-1].ts - s.ts) / 1e9 > svc.finish_timeout + 1.5:
                run.violations.append(
                    f"finish: {svc.name}'s hung finish (pid {s.pid}) was alive "
                    f"{(alive[-1].ts - s.ts) / 1e9:.3f}s after it began, finish_timeout="
                    f"{svc.finish_timeout}")


def check_internal_errors(run) -> None:
    """svtree must never log an internal error (its guard against its own bugs), and
    no monitor may die of one. A crash detector on svtree's log, not an expectation."""
    try:
        err = run.sv.stderr()
    except OSError:
        return
    run.count("internal errors")
    for line in err.splitlines():
        if " | " in line.split("internal", 1)[0]:
            continue  # a service's own output
        if "internal_error" in line or ("svtree monitor" in line and "internal error" in line):
            run.violations.append("svtree logged an internal error: " + line[:600])
            return


def check_output(run, recs) -> None:
    if run.exit_code is None:
        return
    flooded = [r for r in recs if r.kind == "flooded"]
    if not flooded:
        return
    # Every writer of svtree's stdout is gone once svtree has exited (in a PID
    # namespace; a subreaper's sweep ended the rest): the reader sees EOF.
    for timer in run.stalls:
        timer.join(5)
    run.stdout.resume()
    poll(lambda: run.stdout.eof, 10.0)
    out, err = run.sv.stdout(), run.sv.stderr()
    for r in flooded:
        for text, word in ((out, "flood"), (err, "eflood")):
            nums = [int(n) for n in re.findall(rf"^{re.escape(r.name)} \| {word} {r.pid} (\d+)$", text, re.M)]
            run.count("output lines", len(nums))
            if len(nums) != FLOOD_LINES:
                run.violations.append(
                    f"output: {r.name} (pid {r.pid}) wrote {FLOOD_LINES} '{word}' lines, "
                    f"svtree passed on {len(nums)}")
            elif nums != list(range(1, FLOOD_LINES + 1)):
                bad = next(i for i, n in enumerate(nums) if n != i + 1)
                run.violations.append(
                    f"output: {r.name} (pid {r.pid})'s '{word}' lines out of order: line {bad + 1} "
                    f"is {nums[bad]}")
