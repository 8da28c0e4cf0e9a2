"""The model: an abstract svtree that says, from the example and from what the runner did,
what must be true of each service (up, down, done, ...), when the tree must fail, and
which services must have restarted; only what it is sure of is checked."""

from __future__ import annotations

from svfuzz.example import RESTART_DELAY_MAX, TRAPS_TERM, Example, Svc


class Model:
    """An abstract svtree: per service one of
      up       a steady longrun that runs (and keeps running)
      down     not running and will not run without an action (down_kind says why)
      done     a oneshot that exited 0
      failed   a oneshot that failed
      waiting  wanted up, a dependency is not ready: it starts when they are
      flap     a flapping longrun (exits or kills itself over and over)
      unknown  the model cannot tell (races between actions)
      removed  removed by a reload
    Only what the model is sure of is checked."""

    def __init__(self, ex: Example) -> None:
        self.ex = ex
        self.svcs: "dict[str, Svc]" = {s.name: s for s in ex.services}
        self.deps_union: "dict[str, set[str]]" = {s.name: set(s.deps) for s in ex.services}
        self.status: "dict[str, str]" = {}
        self.down_kind: "dict[str, str]" = {}  # file, user, ended
        self.user_want: "dict[str, str]" = {}
        self.touched: "dict[str, list[int]]" = {s.name: [] for s in ex.services}
        self.pending: "dict[str, int]" = {s.name: 0 for s in ex.services}
        self.boot_up: "set[str]" = set()
        self.booted: "bool | None" = False
        self.booted_at: "int | None" = None
        self.boot_failure = False
        # (lo, hi, name): when the shutdown a failure of `name` causes starts, at the
        # earliest and at the latest
        self.failures_certain: "list[tuple[int, int, str]]" = []
        self.failures_possible: "list[int]" = []
        self.added = 0
        self.edits = 0
        self.expect_restart: "list[tuple[str, int, str]]" = []  # (name, since, why): a new pid
        self.removed_svc: "dict[str, Svc]" = {}
        # A changed service's new record starts only when the old one is gone, and then
        # only if its dependencies are ready at that moment: until when that may be.
        self.deferred_start: "dict[str, int]" = {}
        self._boot()

    # --- helpers ----------------------------------------------------------------------

    def order(self) -> "list[str]":
        seen, out = set(), []

        def visit(n):
            if n in seen:
                return
            seen.add(n)
            for d in self.svcs[n].deps:
                visit(d)
            out.append(n)

        for n in sorted(self.svcs):
            visit(n)
        return out

    def dependents_closure(self, name: str) -> "set[str]":
        """Every service that depends on `name`, directly or not, in any version of the tree."""
        out, todo = set(), [name]
        while todo:
            d = todo.pop()
            for p, deps in self.deps_union.items():
                if d in deps and p not in out:
                    out.add(p)
                    todo.append(p)
        return out

    def satisfied(self, dep: str) -> "bool | None":
        s = self.status.get(dep)
        if s in ("up", "done"):
            return True
        if s == "flap":
            # Ready for a moment in each life: the core starts a dependent at one of those
            # moments if the flapper keeps coming back (and nothing else flaps).
            return True if self.svcs[dep].flaps_forever() else None
        if s in ("down", "waiting", "failed", "removed"):
            return False
        return None

    def deps_ok(self, name: str, t: "int | None" = None) -> "bool | None":
        """Whether the core will find every dependency ready (or done) at one moment;
        with `t`, for a start the core makes at t: a dependency a reload is restarting
        is not ready until its new record runs, which it may never do (its own
        dependency may go down first), so it counts as unknown meanwhile."""
        deps = self.svcs[name].deps
        vals = [self.satisfied(d) for d in deps]
        if t is not None:
            vals = [None if v is True and self.deferred_start.get(d, -1) >= t else v
                    for d, v in zip(deps, vals)]
        if any(v is False for v in vals):
            return False
        if any(v is None for v in vals):
            return None
        if sum(1 for d in deps if self.status.get(d) == "flap") > 1:
            return None  # two flappers' ready moments need not ever overlap
        return True

    def _run_state(self, name: str) -> str:
        svc = self.svcs[name]
        if svc.type == "oneshot":
            return "done" if svc.code == 0 else "failed"
        return "up" if svc.steady else "flap"

    def _boot(self) -> None:
        for name in self.order():
            svc = self.svcs[name]
            if svc.down:
                self.status[name], self.down_kind[name] = "down", "file"
                continue
            ok = self.deps_ok(name)
            if ok is None:
                self.status[name] = "unknown"
                if svc.type == "oneshot" and svc.code != 0:
                    self.failures_possible.append(0)  # it may run (and fail the boot), or not
                continue
            self.status[name] = self._run_state(name) if ok else "waiting"
            if self.status[name] == "failed":
                self.boot_failure = True
            if self.status[name] == "up":
                self.boot_up.add(name)
        self._update_booted(None)

    def _update_booted(self, t: "int | None") -> None:
        """The core's `booted`: once every service not marked down was ready or done at
        the same moment. True stays True; None (it may have happened) stays None."""
        if self.booted is True:
            return
        if self.boot_failure:
            self.booted = False
            return
        vals = []
        for name, svc in self.svcs.items():
            if svc.down or self.status[name] == "removed":
                continue
            s = self.status[name]
            if s in ("up", "done"):
                vals.append(True)
            elif s == "flap":
                vals.append(True if svc.flaps_forever() else None)
            elif s in ("waiting", "down", "failed"):
                vals.append(False)
            else:
                vals.append(None)
        flappers = sum(1 for n, svc in self.svcs.items() if not svc.down and self.status[n] == "flap")
        if flappers > 1 and all(v is True for v in vals):
            vals.append(None)  # their ready moments need not ever overlap
        if all(v is True for v in vals):
            self.booted, self.booted_at = True, t
        elif self.booted is None or any(v is None for v in vals):
            self.booted = None

    def _oneshot_failed_run(self, name: str, t: int) -> None:
        """A oneshot failed after boot: a failure of the tree only if boot never completed."""
        if self.booted is False and not self.svcs[name].down:
            self.failures_certain.append((t, t + int(3e9), name))
        elif self.booted is not True:
            self.failures_possible.append(t)

    def _interrupt_failure(self, name: "str | None", t: int) -> None:
        """A stop, restart, removal, monitor death (name) or shutdown (None) that comes
        before svtree may have concluded a failure (a critical service's finish may still
        run, or its monitor has not reported yet): it can prevent the failure (a
        requested stop ends in down, not "ended for good"). Certain becomes possible."""
        keep = []
        for lo, hi, who in self.failures_certain:
            if t < hi and (name is None or who == name):
                self.failures_possible.append(lo)
            else:
                keep.append((lo, hi, who))
        self.failures_certain = keep

    def _start_like(self, name: str, t: int, pending_s: float = 1.5) -> None:
        """A start the core makes (it waits for the dependencies)."""
        ok = self.deps_ok(name, t)
        if ok is None:
            self.status[name] = "unknown"
        elif ok is False:
            self.status[name] = "waiting"
        else:
            self.status[name] = self._run_state(name)
            if self.status[name] == "failed":
                self._oneshot_failed_run(name, t)
        self.pending[name] = max(self.pending[name], t + int(pending_s * 1e9))

    def _spawn_direct(self, name: str, t: int, pending_s: float) -> None:
        """A start the monitor makes on its own (restart policy, restart of a gave-up service)."""
        self.status[name] = self._run_state(name)
        if self.status[name] == "failed":
            self._oneshot_failed_run(name, t)
        self.pending[name] = max(self.pending[name], t + int(pending_s * 1e9))

    def converge(self, t: int) -> None:
        for name, until in list(self.deferred_start.items()):
            if t > until:
                del self.deferred_start[name]
            elif self.status.get(name) == "up":
                ok = self.deps_ok(name, t)
                if ok is not True:  # a dependency went away before the new record started
                    self.status[name] = "waiting" if ok is False else "unknown"
        changed = True
        while changed:
            changed = False
            for name in self.order():
                if self.status[name] == "waiting" and self.deps_ok(name, t) is not False:
                    self._start_like(name, t)
                    changed = self.status[name] != "waiting"
        self._update_booted(t)

    def stop_time(self, svc: Svc) -> float:
        """The longest one stop of svc can take: stop_timeout, then finish."""
        return svc.stop_timeout + svc.finish_time()

    # --- actions ----------------------------------------------------------------------

    def kill(self, name: str, sig: str, hit: bool, t: int) -> None:
        self._kill(name, sig, hit, t)
        self.converge(t)

    def _kill(self, name: str, sig: str, hit: bool, t: int) -> None:
        if not hit or name not in self.svcs:
            return
        svc = self.svcs[name]
        self.touched[name].append(t)
        s = self.status[name]
        if svc.type == "oneshot" or s == "flap":
            return
        if sig == "TERM" and svc.behaviour == "ignore_term":
            return
        kind = "zero" if sig == "TERM" and svc.behaviour in TRAPS_TERM else "failure"
        quiet = t >= self.pending[name]
        extra = svc.delay if (kind == "zero" and svc.behaviour == "slow_stop") else 0.0
        if s in ("down", "removed"):
            return  # a process still stopping: it stays down
        if svc.restarts_after(kind):
            if s != "up":
                self.status[name] = "unknown"
            self.pending[name] = max(self.pending[name], t + int(
                (extra + svc.finish_time() + RESTART_DELAY_MAX + 1.5) * 1e9))
            return
        if s == "up" and quiet:
            self.status[name], self.down_kind[name] = "down", "ended"
            if svc.critical:
                self.failures_certain.append(
                    (t, t + int((min(extra, svc.stop_timeout) + svc.finish_time() + 1.5) * 1e9), name))
        else:
            self.status[name] = "unknown"
            if svc.critical:
                self.failures_possible.append(t)
        self.pending[name] = max(self.pending[name], t + int((extra + svc.finish_time() + 1.5) * 1e9))

    def kill_monitor(self, name: str, hit: bool, t: int) -> None:
        if not hit or name not in self.svcs:
            return
        self.touched[name].append(t)
        self._interrupt_failure(name, t)
        if self.status[name] == "up" and t >= self.pending[name]:
            self._start_like(name, t)
        elif self.status[name] == "up":
            self.status[name] = "unknown"
        elif self.status[name] == "down" and self.down_kind.get(name) == "ended":
            # Ended by its finish's 125 or its policy: still wanted up, so the next
            # monitor starts it again (README: "a new monitor then starts the service
            # again"). Maybe not yet ended when the kill came (a monitor killed while that
            # finish runs, kill_monitor "@spawn", takes the 125 with it): unknown then.
            if t < self.pending[name]:
                self.status[name] = "unknown"
            else:
                self._start_like(name, t)
        self.pending[name] = max(self.pending[name], t + int(2e9))
        self.converge(t)

    def ctl(self, verb: str, name: str, t: int) -> None:
        svc = self.svcs[name]
        self.touched[name].append(t)
        s = self.status[name]
        if verb in ("stop", "restart"):
            self._interrupt_failure(name, t)
            if svc.critical and svc.finish == "f125" and s != "down":
                # finish exits 125 after the requested stop: svtree counts that as "ended
                # for good" and fails the tree; the README can be read either way.
                self.failures_possible.append(t)
        if verb == "stop":
            self.status[name], self.down_kind[name] = "down", "user"
            self.user_want[name] = "down"
            self.pending[name] = max(self.pending[name], t + int((self.stop_time(svc) + 1.5) * 1e9))
        elif verb == "start":
            self.user_want[name] = "up"
            if s in ("down", "failed"):
                if s == "down" and self.down_kind.get(name) == "ended":
                    # want_up on a service whose monitor was sent `up` before: the
                    # monitor starts it again (it does not wait for dependencies)
                    self._spawn_direct(name, t, self.stop_time(svc) + 1.5)
                elif s == "failed":
                    self._spawn_direct(name, t, 1.5)
                else:
                    self._start_like(name, t, self.stop_time(svc) + 1.5)
        elif verb == "restart":
            self.user_want[name] = "up"
            pend = self.stop_time(svc) + (svc.delay if svc.behaviour == "slow_stop" else 0) + 1.5
            if svc.finish == "f125" and s in ("up", "done", "flap", "unknown"):
                # the requested stop runs finish, which exits 125: "not restarted, stays
                # down" (as in s6); a flapper or an unknown may have been between runs
                self.status[name] = "down" if s in ("up", "done") else "unknown"
                self.down_kind[name] = "ended"
                self.pending[name] = max(self.pending[name], t + int(pend * 1e9))
                self.converge(t)
                return
            if s == "up":
                self.expect_restart.append((name, t, "ctl restart"))
            if s in ("up", "done", "flap", "unknown"):
                if s == "done":
                    self._spawn_direct(name, t, svc.finish_time() + 1.5)
                self.pending[name] = max(self.pending[name], t + int(pend * 1e9))
            elif s == "failed":
                self._spawn_direct(name, t, pend)
            elif s == "down":
                if self.down_kind.get(name) == "ended":
                    self._spawn_direct(name, t, pend)
                else:
                    self._start_like(name, t, pend)
        self.converge(t)

    def reload_change(self, name: str, t: int) -> None:
        """The service's run changed: the old one stops, a new record starts it."""
        svc = self.svcs[name]
        self._interrupt_failure(name, t)
        if svc.critical and svc.finish == "f125":
            self.failures_possible.append(t)  # as for ctl stop/restart
        self.touched[name].append(t)
        s = self.status[name]
        want_down = (self.user_want.get(name) == "down") or (svc.down and self.user_want.get(name) != "up")
        if want_down:
            self.status[name], self.down_kind[name] = "down", "user" if self.user_want.get(name) else "file"
        elif self.user_want.get(name) and (
                (s == "down" and self.down_kind.get(name) == "ended") or svc.finish == "f125"):
            # the new record copies the old one's want, which a restart policy or a
            # finish exiting 125 (also after this stop) may have turned to down
            self.status[name] = "unknown"
        elif s != "unknown":
            self._start_like(name, t, self.stop_time(svc) + 2.0)
            if s == "up" and self.status[name] == "up":
                self.expect_restart.append((name, t, "reload changed it"))
            if self.status[name] == "up":
                self.deferred_start[name] = t + int((self.stop_time(svc) + 2.0) * 1e9)
        self.pending[name] = max(self.pending[name], t + int((self.stop_time(svc) + 2.0) * 1e9))
        self.converge(t)

    def reload_add(self, name: str, deps: tuple, t: int) -> Svc:
        svc = Svc(name, deps)
        self.svcs[name] = svc
        self.deps_union[name] = set(deps)
        self.touched[name] = [t]
        self.pending[name] = 0
        self._start_like(name, t, 2.0)
        self.converge(t)
        return svc

    def reload_remove(self, name: str, t: int) -> None:
        svc = self.svcs.pop(name)
        self._interrupt_failure(name, t)
        if svc.critical and svc.finish == "f125":
            self.failures_possible.append(t)  # svtree counts its finish's 125 as "ended"
        self.status[name] = "removed"
        self.touched[name].append(t)
        self.pending[name] = max(self.pending[name], t + int((self.stop_time(svc) + 2.0) * 1e9))
        self.removed_svc[name] = svc
        self._update_booted(t)

    # --- summaries --------------------------------------------------------------------

    def failed_certain(self) -> bool:
        return self.boot_failure or bool(self.failures_certain)

    def failed_possible(self) -> bool:
        return self.failed_certain() or bool(self.failures_possible)

    def all_svcs(self) -> "dict[str, Svc]":
        out = dict(self.removed_svc)
        out.update(self.svcs)
        return out
