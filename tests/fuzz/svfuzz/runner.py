"""Running one example: the configuration a profile sets, the tree under /tmp, svtree
(as PID 1 of a PID namespace, or as a plain child subreaper), the schedule, the bounds
of the shutdown, the report of a failure, and `run_example`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass

from harness import REPO, PipeReader, Svtree, Tree, children, descendants, proc_status, read_cmdline, wait_for
from svfuzz import checks
from svfuzz.example import MAIN_STOP_TIMEOUT, RESTART_DELAY_MAX, Action, Example, Svc, describe, signum
from svfuzz.model import Model
from svfuzz.observe import (Observer, Rec, comm, fmt_t, is_alive, nspid_of, now_ns, parse_records, poll,
                            token_pids)
from svfuzz.scripts import LIB, finish_script, main_command, run_script, service_toml


# --- configuration (set by conftest from the profile) ------------------------------------

CONFIG = {
    "profile": "ci",
    "shrink_budget": 240.0,  # seconds of shrinking after the first failure, then stop
    "stats": os.environ.get("SVTREE_FUZZ_STATS"),  # a JSON line per example, if set
    "failures": os.environ.get("SVTREE_FUZZ_FAILURES", "/tmp/svtree-fuzz-failures.log"),
    "keep_dirs": 20,
}
_STATE = {"first_failure": None, "kept": 0, "examples": 0}

# The bugs this fuzzer found have a regression test each in test_fuzz_tree.py.


def configure(profile: str) -> None:
    CONFIG["profile"] = profile
    CONFIG["shrink_budget"] = float(os.environ.get("SVTREE_FUZZ_SHRINK_BUDGET")
                                    or (240.0 if profile == "ci" else 1200.0))


def svtree_path() -> str:
    """PYTHONPATH for svtree: whatever the caller put first (a snapshot, a scratch copy
    with a planted bug), then the repository."""
    return os.pathsep.join(p for p in (os.environ.get("PYTHONPATH", ""), REPO) if p)


_SOURCE: "dict[str, str]" = {}


def svtree_source() -> str:
    """Which svtree package the examples run (checked once: a vanished snapshot on
    PYTHONPATH would silently fall back to the repository)."""
    path = svtree_path()
    if path not in _SOURCE:
        first = os.environ.get("PYTHONPATH", "").split(os.pathsep)[0]
        if first and not os.path.isdir(os.path.join(first, "svtree")):
            raise RuntimeError(f"PYTHONPATH starts with {first}, which holds no svtree package")
        r = subprocess.run([sys.executable, "-c", "import svtree, os; print(os.path.dirname(svtree.__file__))"],
                           capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=path), timeout=30,
                           cwd="/")  # as svtree runs: not from the repository's directory
        _SOURCE[path] = r.stdout.strip() or r.stderr.strip()
    return _SOURCE[path]


def past_deadline() -> bool:
    """SVTREE_FUZZ_DEADLINE (seconds since the epoch) has passed, and no failure is being
    shrunk: the long run's time budget is spent."""
    deadline = os.environ.get("SVTREE_FUZZ_DEADLINE")
    return bool(deadline) and time.time() > float(deadline) and _STATE["first_failure"] is None


def shrink_budget_spent() -> bool:
    """True while shrinking after the budget is spent, so the caller can reject the
    example and end the shrink; never on hypothesis's final replay of the failure."""
    from hypothesis.control import current_build_context

    t = _STATE["first_failure"]
    if t is None or time.monotonic() - t <= CONFIG["shrink_budget"]:
        return False
    return not current_build_context().is_final


# --- the tree and svtree ----------------------------------------------------------------

class FuzzTree(Tree):
    """The harness's Tree, under a prefix of its own (other suites use svtree-test-)."""

    def __init__(self) -> None:
        import tempfile

        self.root = tempfile.mkdtemp(prefix="svfuzz-")
        self.dir = os.path.join(self.root, "services.d")
        os.mkdir(self.dir)
        self.events = os.path.join(self.root, "events")
        open(self.events, "w").close()


class SubreaperSvtree(Svtree):
    """svtree as a plain child of the test (not PID 1): it makes itself a child subreaper.
    Here a process svtree leaves behind would really survive it."""

    def __init__(self, tree, cmd=None, env=None, stdout=None) -> None:  # noqa: super().__init__ unshares
        self.tree = tree
        self.socket = os.path.join(tree.root, "control.sock")
        self.stdout_path = os.path.join(tree.root, "stdout")
        self.stderr_path = os.path.join(tree.root, "stderr")
        argv = [sys.executable, "-m", "svtree", "run", "--dir", tree.dir, "--socket", self.socket,
                "--no-watch"]
        if cmd:
            argv += ["--", *cmd]
        full_env = dict(os.environ)
        full_env.pop("SVTREE_SOCKET", None)
        full_env.update(env or {})
        out, err = self._open_outputs(stdout, None)
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                     env=full_env, start_new_session=True, cwd=tree.root)
        self._outputs_given()
        self.pid1 = self.proc.pid


# --- one run ----------------------------------------------------------------------------

class Violation(AssertionError):
    pass


@dataclass
class Done:
    """What the runner did: one row per action."""
    t: int
    kind: str
    target: str
    arg: str
    outcome: str
    t_end: int = 0


class Run:
    """One example from start to end: write the tree, start svtree, wait for the boot,
    play the schedule (keeping the model in step), check at a quiet moment, end svtree
    (or let it end by itself) within a computed bound, and check what was recorded."""

    def __init__(self, ex: Example, hang_grace: float = 15.0) -> None:
        self.ex = ex
        self.hang_grace = hang_grace  # seconds past a bound before "it hangs"
        self.tree = FuzzTree()
        self.lib = os.path.join(self.tree.root, "lib.sh")
        self.token = f"SVFUZZ_TOKEN={uuid.uuid4().hex}"
        self.model = Model(ex)
        self.log: "list[Done]" = []
        self.violations: "list[str]" = []
        self.sv = None
        self.stdout = PipeReader()  # svtree's stdout: a pipe, whose reader `stall` pauses
        self.stalls: "list[threading.Timer]" = []
        self.observer: "Observer | None" = None
        self.t0 = now_ns()
        self.t_sigterm: "int | None" = None
        self.t_exit: "int | None" = None
        self.exit_code: "int | None" = None
        self.quiet_checked = False
        self._host_cache: "dict[int, int]" = {}
        self.leftovers: "list[int]" = []
        self.checked: "dict[str, int]" = {}  # how many comparisons each check made

    def count(self, what: str, n: int = 1) -> None:
        self.checked[what] = self.checked.get(what, 0) + n

    # --- files ------------------------------------------------------------------------

    def write(self) -> None:
        with open(self.lib, "w") as f:
            f.write(LIB.format(events=self.tree.events))
        for svc in self.ex.services:
            self.write_service(svc)
        with open(os.path.join(self.tree.dir, "svtree.toml"), "w") as f:
            f.write(f"kill_grace = {self.ex.kill_grace}\nmain_stop_timeout = {MAIN_STOP_TIMEOUT}\n")

    def write_service(self, svc: Svc) -> None:
        self.tree.service(svc.name, run_script(svc, self.lib), finish=finish_script(svc, self.lib),
                          toml=service_toml(svc), down=svc.down)

    # --- svtree ----------------------------------------------------------------------

    def start(self) -> None:
        # A scratch copy of the package (a planted bug) can go first on PYTHONPATH.
        path = svtree_path()
        svtree_source()
        token_name, token_value = self.token.split("=", 1)
        env = {"PYTHONPATH": path, token_name: token_value}
        cmd = main_command(self.ex, self.lib)
        if self.ex.mode == "pidns":
            self.sv = Svtree(self.tree, cmd=cmd, env=env, stdout=self.stdout)
        else:
            self.sv = SubreaperSvtree(self.tree, cmd=cmd, env=env, stdout=self.stdout)

    def alive(self) -> bool:
        return self.sv.proc.poll() is None

    def ctl(self, *args: str, timeout: float = 15) -> "subprocess.CompletedProcess | None":
        try:
            return self.sv.ctl(*args, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def records(self) -> "list[Rec]":
        return parse_records(self.tree.events)

    def host_pid(self, name: str, nspid: int) -> "int | None":
        """The host pid of a service's main process `nspid` (or of the main command's
        daemon, name "maind"), if it is alive and is it."""
        if self.ex.mode == "subreaper":
            host = nspid
        else:
            host = self._host_cache.get(nspid)
            if host is None or nspid_of(host) != nspid:
                host = None
                for p in descendants(self.sv.pid1):
                    if nspid_of(p) == nspid:
                        host = p
                        break
            if host is None:
                return None
            self._host_cache[nspid] = host
        marker = b"N=maind;" if name == "maind" else f"/services.d/{name}/run".encode()
        if marker not in read_cmdline(host) or not is_alive(host):
            return None
        return host

    def current_main(self, name: str) -> "int | None":
        starts = [r for r in self.records() if r.kind == "start" and r.name == name]
        if not starts:
            return None
        return self.host_pid(name, starts[-1].pid)

    # --- phases ----------------------------------------------------------------------

    def boot(self) -> None:
        """Wait until the services the model says come up at boot are ready (or done):
        that is also the check that they do. Then, if every service should have been
        ready at once, the main command must have started."""
        m = self.model
        bound = 5.0 + sum(s.delay + 0.5 for s in self.ex.services)
        wait_for(lambda: os.path.exists(self.sv.socket) or not self.alive(), 20,
                 what="the control socket")
        if m.boot_failure:
            # A oneshot fails at boot: the tree must shut down by itself (exit 1). The
            # schedule then only meets a dead or dying svtree.
            if not self._wait_exit(bound + self.shutdown_bound() + self.hang_grace):
                self.violations.append(f"boot: a oneshot fails at boot, but svtree still runs "
                                       f"after {bound + self.shutdown_bound() + self.hang_grace:.1f}s")
            return
        names = sorted(n for n, st_ in m.status.items() if st_ in ("up", "done"))
        if names and self.alive():
            r = self.ctl("wait", "--ready", "--timeout", str(bound), *names, timeout=bound + 15)
            if (r is None or r.returncode != 0) and self.alive() and not m.boot_failure:
                self.violations.append(
                    f"boot: {', '.join(names)} should all be ready within {bound:.1f}s: "
                    f"{'timeout' if r is None else r.stderr.strip()}")
        if m.booted is True and self.ex.main and not m.boot_failure:
            started = poll(lambda: any(r.kind == "main-start" for r in self.records())
                                 or not self.alive(), 3.0 + RESTART_DELAY_MAX * 2)
            if not started:
                self.violations.append(
                    "boot: every service should have been ready, but the main command has not started")

    def act(self, a: Action) -> None:
        """Play one action of the schedule, keep the model in step, log what happened."""
        time.sleep(a.delay)
        names = sorted(self.model.svcs)
        t = now_ns()
        if a.kind == "stall":
            self._stall(a, t)
            return
        if a.kind == "sigterm":
            self._sigterm(t)
            return
        if not names:
            return
        name = names[a.target % len(names)]
        if not self.alive():
            self.log.append(Done(t, a.kind, name, a.arg, "svtree gone"))
            return
        {"kill": self._kill, "kill_monitor": self._kill_monitor, "ctl": self._ctl,
         "reload": self.reload}[a.kind](a, name, t)

    def _stall(self, a: Action, t: int) -> None:
        """The reader of svtree's stdout pauses, and resumes by itself a while later (the
        next actions happen meanwhile)."""
        self.stdout.pause()
        timer = threading.Timer(float(a.arg), self.stdout.resume)
        timer.daemon = True
        timer.start()
        self.stalls.append(timer)
        self.log.append(Done(t, "stall", "", a.arg, "stdout paused"))

    def _sigterm(self, t: int) -> None:
        if self.alive():
            self.t_sigterm = now_ns()
            self.sv.signal(signal.SIGTERM)
            self.model._interrupt_failure(None, self.t_sigterm)
        self.log.append(Done(t, "sigterm", "", "", "sent" if self.t_sigterm else "svtree gone"))

    @staticmethod
    def _send(pid: "int | None", sig: str, t: int) -> "tuple[bool, int]":
        """SIG`sig` to `pid` if there is one: whether it hit, and when it was sent (else `t`)."""
        if pid is None:
            return False, t
        t = now_ns()
        try:
            os.kill(pid, signum(sig))
            return True, t
        except ProcessLookupError:
            return False, t

    def _kill(self, a: Action, name: str, t: int) -> None:
        host = self.current_main(name)
        hit, t = self._send(host, a.arg, t)
        self.model.kill(name, a.arg, hit, t)
        self.log.append(Done(t, "kill", name, a.arg, f"hit {host}" if hit else "miss"))

    def _kill_monitor(self, a: Action, name: str, t: int) -> None:
        sig, _, when = a.arg.partition("@")
        host = self.current_main(name)
        monitor = self._monitor_of(host)
        if when == "spawn" and monitor is not None:
            # The service first, then its monitor the moment it has a new child (its next
            # run, in the middle of its spawn maybe, or its finish): the window in which
            # only the marker and the monitor's name tell the core what the child is.
            before = set(descendants(monitor))  # (what run leaves is re-parented to it: not new)
            hit, t_main = self._send(host, "KILL", t)
            self.model.kill(name, "KILL", hit, t_main)
            self.log.append(Done(t_main, "kill", name, "KILL", f"hit {host}" if hit else "miss"))
            deadline = time.monotonic() + RESTART_DELAY_MAX + 0.5
            while not (new := set(children(monitor)) - before - {host}) and time.monotonic() < deadline:
                time.sleep(0.0002)
        hit, t = self._send(monitor, sig, t)
        self.model.kill_monitor(name, hit, t)
        seen = f" ({', '.join(f'{p} {comm(p)}' for p in sorted(new))})" if when == "spawn" and monitor else ""
        self.log.append(Done(t, "kill_monitor", name, a.arg, (f"hit {monitor}" if hit else "miss") + seen))

    def _monitor_of(self, host: "int | None") -> "int | None":
        """The monitor of a service's main process: its parent, if that is a monitor (a
        fork of the core: same command line). Right after its monitor died, run's parent
        is the core itself (a subreaper): not a monitor."""
        if host is None:
            return None
        try:
            monitor = int(proc_status(host)["PPid"])
        except (OSError, KeyError, ValueError):
            return None
        if monitor == self.sv.pid1 or read_cmdline(monitor) != read_cmdline(self.sv.pid1):
            return None
        return monitor

    def _ctl(self, a: Action, name: str, t: int) -> None:
        r = self.ctl(a.arg, name)
        rc = None if r is None else r.returncode
        done = Done(t, "ctl", name, a.arg, f"rc={rc} {(r.stderr.strip() if r else 'timeout')}"[:120],
                    now_ns())
        self.log.append(done)
        if rc == 0:
            self.model.ctl(a.arg, name, t)
        elif self.before_any_shutdown(done.t_end):
            self.violations.append(f"ctl {a.arg} {name} failed before any shutdown: {done.outcome}")

    def before_any_shutdown(self, t: int, margin_s: float = 1.0) -> bool:
        lo = self.shutdown_lo(now=True)
        return lo is None or t < lo - int(margin_s * 1e9)

    def reload(self, a: Action, name: str, t: int) -> None:
        m = self.model
        d = self.tree.dir
        expect_ok = True
        undo = None
        m.edits += 1
        what = a.arg
        if what == "change":
            with open(os.path.join(d, name, "run"), "a") as f:
                f.write(f"# edit {m.edits}\n")
        elif what == "invalid":
            expect_ok = False
            path = os.path.join(d, name, "service.toml")
            before = open(path).read()
            with open(path, "a") as f:
                f.write("no_such_key = 1\n")
            undo = lambda: open(path, "w").write(before)  # noqa: E731
        elif what == "add":
            new = f"z{m.added}"
            m.added += 1
            deps = () if a.target % 2 == 0 else (name,)
            svc = Svc(new, deps)
            self.write_service(svc)
            name = new
        elif what == "remove" and any(name in s.deps for s in m.svcs.values()):
            # Removing a service others depend on makes an invalid tree, but moving its
            # directory away would also take the run file from under a service that
            # restarts meanwhile: make the tree invalid by naming a missing dependency.
            expect_ok = False
            what = "remove (has dependents: a dangling dependency instead)"
            path = os.path.join(d, name, "service.toml")
            before = open(path).read()
            with open(path, "a") as f:
                f.write(f'depends_on = ["{name}-gone"]\n' if "depends_on" not in before else "")
                if "depends_on" in before:
                    f.write("no_such_key = 2\n")
            undo = lambda: open(path, "w").write(before)  # noqa: E731
        elif what == "remove":
            aside = os.path.join(self.tree.root, f"removed-{name}-{m.edits}")
            os.rename(os.path.join(d, name), aside)
            restore = lambda: os.rename(aside, os.path.join(d, name))  # noqa: E731
        r = self.ctl("reload", timeout=5 + self.hang_grace)
        rc = None if r is None else r.returncode
        t_end = now_ns()
        out = "timeout" if r is None else (r.stdout + r.stderr).strip().replace("\n", " | ")
        self.log.append(Done(t, "reload", name, what, f"rc={rc} {out}"[:160], t_end))
        if undo is not None:
            undo()
        elif what == "remove" and rc != 0:
            restore()  # not applied: the service stays, with its files
        if rc == 0 and expect_ok:
            if what == "change":
                m.reload_change(name, t)
            elif what == "add":
                m.reload_add(name, svc.deps, t)
            elif what == "remove":
                m.reload_remove(name, t)
            # "remove (has dependents ...)" is invalid: expect_ok is False
        elif self.before_any_shutdown(t_end) and self.alive():
            if expect_ok:
                self.violations.append(f"reload ({what} {name}) should apply, got {out}")
            elif rc == 0:
                self.violations.append(f"reload ({what} {name}) made an invalid tree but was accepted: {out}")

    # --- the quiet moment --------------------------------------------------------------

    def quiet_allowed(self) -> bool:
        m = self.model
        if not self.alive() or self.t_sigterm is not None or m.failed_possible():
            return False
        if self.ex.main:
            recs = self.records()
            if any(r.kind == "main-exit" for r in recs):
                return False
            starts = [r for r in recs if r.kind == "main-start"]
            end = (starts[0].ts if starts else now_ns()) + int(self.ex.main[0] * 1e9)
            if end < now_ns() + int(25e9):
                return False
        return True

    # --- shutdown ----------------------------------------------------------------------

    def shutdown_lo(self, now: bool = False) -> "int | None":
        """The earliest moment the shutdown may have begun."""
        m = self.model
        cands = [t for t, _, _ in m.failures_certain] + list(m.failures_possible)
        if self.t_sigterm is not None:
            cands.append(self.t_sigterm)
        recs = self.records()
        cands += [r.ts for r in recs if r.kind == "main-exit"]
        if m.boot_failure:
            fails = [r.ts for r in recs if r.kind == "oneshot-exit" and r.extra != "0"]
            cands += fails[:1]
        if self.t_exit is not None and not cands:
            cands.append(self.t_exit)
        return min(cands) if cands else None

    def shutdown_hi(self, possible: bool = False) -> "int | None":
        """The latest moment by which the shutdown had certainly begun; with `possible`,
        also by which a failure that may shut svtree down would have (for the order
        check only: as a reference of the shutdown's duration it would inflate it)."""
        m = self.model
        cands = [hi for _, hi, _ in m.failures_certain]
        if possible:
            finish = max((s.finish_time() for s in m.all_svcs().values()), default=0.0)
            cands += [t + int((finish + 3.0) * 1e9) for t in m.failures_possible if t]
        if self.t_sigterm is not None:
            cands.append(self.t_sigterm)
        recs = self.records()
        cands += [r.ts + int(0.5e9) for r in recs if r.kind == "main-exit"]
        if m.boot_failure:
            fails = [r.ts for r in recs if r.kind == "oneshot-exit" and r.extra != "0"]
            cands += [f + int(0.5e9) for f in fails[:1]]
        return min(cands) if cands else None

    def shutdown_bound(self) -> float:
        """Seconds the ordered shutdown may take: the longest chain of stops through the
        dependency graph, then kill_grace, plus room for a loaded 2-core machine."""
        svcs = self.model.all_svcs()
        memo: "dict[str, float]" = {}

        def chain(n: str) -> float:
            if n not in memo:
                svc = svcs[n]
                own = svc.stop_timeout + svc.finish_time() + 0.3
                if svc.behaviour == "slow_stop":
                    own += 0.2
                after = [chain(p) for p in self.model.dependents_closure(n) if n in self.model.deps_union.get(p, ())]
                memo[n] = own + max(after, default=0.0)
            return memo[n]

        longest = max((chain(n) for n in svcs), default=0.0)
        # ctl actions answered during the shutdown may add one more stop each
        extra = sum(self.model.stop_time(svcs[d.target]) + RESTART_DELAY_MAX
                    for d in self.log if d.kind == "ctl" and d.outcome.startswith("rc=0")
                    and d.target in svcs and self.shutdown_lo() is not None and d.t >= self.shutdown_lo())
        return longest + extra + self.ex.kill_grace + (MAIN_STOP_TIMEOUT if self.ex.main else 0) \
            + 4.0 + 0.5 * len(svcs)

    def _wait_exit(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        return not self.alive()

    def finish(self) -> None:
        """Let svtree end by itself when it should (the main command's exit, a failure),
        else send SIGTERM; wait for its exit."""
        m = self.model
        if self.alive() and self.t_sigterm is None:
            own_end, why = None, ""
            if m.failed_certain():
                own_end = (self.shutdown_hi() or now_ns()) + int(self.shutdown_bound() * 1e9)
                why = "a critical service ended for good or a boot oneshot failed"
            elif m.failures_possible:
                # It may shut down by itself (how the README's "ends for good" is read):
                # give it the time, so that such a shutdown is checked too, then SIGTERM.
                self._wait_exit(max(0.0, (max(m.failures_possible) - now_ns()) / 1e9)
                                + max(s.finish_time() for s in m.all_svcs().values()) + 3.0)
            elif self.ex.main:
                starts = [r for r in self.records() if r.kind == "main-start"]
                if starts:
                    main_end = starts[0].ts + int(self.ex.main[0] * 1e9)
                    if main_end < now_ns() + int(12e9):
                        own_end = main_end + int(self.shutdown_bound() * 1e9)
                        why = "the main command exited"
            if own_end is not None:
                self._wait_exit(max(0.0, (own_end - now_ns()) / 1e9) + self.hang_grace / 2)
                if self.alive():
                    self.violations.append(f"svtree should have shut down by itself ({why}), "
                                           "but it still runs")
            if self.alive():
                self.t_sigterm = now_ns()
                self.sv.signal(signal.SIGTERM)
        self._wait_exit(self.shutdown_bound() + self.hang_grace)
        self.t_exit = (self.observer.exited_at if self.observer else None) or now_ns()
        if self.alive():
            self.violations.append(f"svtree did not exit within the shutdown bound + {self.hang_grace:.0f}s "
                                   f"({self.shutdown_bound():.1f}s + {self.hang_grace:.0f}s); killed it")
            return
        self.exit_code = self.sv.proc.returncode
        # Nothing of the tree may be left (in a PID namespace the kernel sees to it).
        self.leftovers = token_pids(self.token.encode())
        self.count("nothing left")
        if self.leftovers:
            desc = [(p, read_cmdline(p).replace(b"\0", b" ").decode(errors="replace")[:80])
                    for p in self.leftovers]
            self.violations.append(f"processes of the tree outlived svtree: {desc}")

    # --- the whole story ---------------------------------------------------------------

    def go(self) -> None:
        self.write()
        self.start()
        watched = {s.name for s in self.ex.services if s.behaviour in ("ignore_term", "slow_stop")}
        watched.add("maind")
        self.observer = Observer(self, watched)
        self.observer.start()
        self.boot()
        if not self.alive() and self.observer.exited_at is None:
            self.observer.exited_at = now_ns()
        for a in self.ex.actions:
            self.act(a)
        if self.quiet_allowed():
            checks.quiet_checks(self)
        self.finish()
        time.sleep(0.05)
        self.observer.halt.set()
        self.observer.join(5)
        if self.exit_code is not None:
            checks.check_all(self)

    def kill_everything(self) -> None:
        """By pid: svtree, everything under it, then anything still carrying the token."""
        if self.sv is not None:
            pids = [self.sv.pid1, *descendants(self.sv.pid1)] if self.alive() else []
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.sv.kill()
        for _ in range(20):
            left = token_pids(self.token.encode())
            if not left:
                break
            for p in left:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        self.stdout.close()

    def report(self) -> str:
        lines = [describe(self.ex), "", f"svtree from {svtree_source()}", "violations:"]
        lines += [f"  - {v}" for v in self.violations]
        lines.append(f"exit code {self.exit_code}; tree kept at {self.tree.root}")
        lines.append("checks made: " + ", ".join(f"{k} {v}" for k, v in sorted(self.checked.items())))
        lines.append("what the runner did (times from svtree's start):")
        for d in self.log:
            lines.append(f"  {fmt_t(d.t, self.t0)} {d.kind} {d.target} {d.arg}: {d.outcome}")
        if self.t_sigterm:
            lines.append(f"  {fmt_t(self.t_sigterm, self.t0)} SIGTERM to svtree")
        lines.append(f"  {fmt_t(self.t_exit, self.t0)} svtree exited")
        lines.append("model: " + ", ".join(f"{n}={s}" for n, s in sorted(self.model.status.items())))
        try:
            err = self.sv.stderr().splitlines()
        except Exception:  # noqa: BLE001 - a report must not fail
            err = []
        keep = [line for line in err if " | " not in line][-40:]
        lines.append("svtree's stderr (last 40 lines of its own):")
        lines += ["  " + line[:240] for line in keep]
        return "\n".join(lines)

def run_example(ex: Example, hang_grace: float = 15.0) -> None:
    """Run one example; raise Violation with a full report when a check fails.
    hang_grace: seconds past a computed bound before svtree counts as hung."""
    run = Run(ex, hang_grace)
    started = time.monotonic()
    keep = False
    try:
        run.go()
        if run.violations:
            keep = _STATE["kept"] < CONFIG["keep_dirs"]
            _STATE["kept"] += keep
            if _STATE["first_failure"] is None:
                _STATE["first_failure"] = time.monotonic()
            report = run.report()
            try:
                with open(CONFIG["failures"], "a") as f:
                    f.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}\n{report}\n\n")
            except OSError:
                pass
            raise Violation(report)
        if os.environ.get("SVTREE_FUZZ_VERBOSE"):
            sys.stderr.write(run.report() + "\n\n")
    finally:
        run.kill_everything()
        _STATE["examples"] += 1
        if CONFIG["stats"]:
            try:
                with open(CONFIG["stats"], "a") as f:
                    f.write(json.dumps({
                        "t": time.time(), "seconds": round(time.monotonic() - started, 2),
                        "services": len(ex.services), "actions": len(ex.actions), "mode": ex.mode,
                        "main": ex.main is not None, "quiet_checked": run.quiet_checked,
                        "violations": len(run.violations), "exit_code": run.exit_code,
                        "checked": run.checked,
                    }) + "\n")
            except OSError:
                pass
        if not keep:
            run.tree.cleanup()
