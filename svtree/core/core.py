"""The core: PID 1's model of the tree, and the narrow interface the rest of svtree uses.

It holds one record per service (core/records.py) and drives their monitors
(core/monitors.py) towards what is wanted: the start order (core/converge.py), a
reload's retirements (core/retire.py), the shutdown in phases (core/shutdown.py), the
main command (core/maincmd.py). Every child's exit comes through the one reaper
(core/reaper.py). A record's life changes only in `_advance`, the shutdown's phase only
in `_phase_event`.

What others may do with it is the public part below: ctl's verbs (status rows, views,
check, want up/down, restart, signal), a reload (apply a plan, is it settled), signals
(begin the shutdown, forward to the main command), children it must reap, listeners.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from typing import Callable

from svtree import exitcodes, osutil
from svtree.core import report_log
from svtree.core.converge import StartOrder
from svtree.core.leftovers import Leftovers
from svtree.core.maincmd import MainCommand
from svtree.core.monitors import Link, Monitors
from svtree.core.output import Output
from svtree.core.pipelines import Pipelines
from svtree.core.reaper import Reaper
from svtree.core.records import Do, Life, LifeEv, Records, Service, View, next_life
from svtree.core.retire import ready_to_exit, retirements, successor
from svtree.core.shutdown import Phase, PhaseEv, StopOrder, Sweep, next_phase
from svtree.messages import Cmd, Command, Report
from svtree.plan import Plan, PlanDiff
from svtree.signames import signal_name
from svtree.states import SATISFIED, State, Want

# Signals svtree does not pass on to the main command (it handles them, or they are
# about svtree itself).
NOT_FORWARDED = {
    signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP,
    signal.SIGKILL, signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU,
    signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGTRAP,
    signal.SIGABRT, signal.SIGSYS, signal.SIGPIPE, signal.SIGXFSZ,
}
RETRY_DELAY = 1.0  # after EAGAIN/EMFILE/ENOMEM


def ended_how(report: Report) -> str:
    """How the run a report says ended: "exit 1", "signal KILL"."""
    if report.exit_signal:
        return f"signal {signal_name(report.exit_signal)}"
    return f"exit {report.exit_code}" if report.exit_code is not None else "ended"


@dataclass(frozen=True)
class Ending:
    """How the run ended, for svtree's exit."""

    exit_code: int
    duration: float  # of the shutdown
    orphans_reaped: int


class Core:
    def __init__(self, loop, plan: Plan, log, *, output: str, main_cmd: "list[str]",
                 is_pid1: bool, streams: "Output | None" = None, started_at: "float | None" = None,
                 children: "dict[int, Callable[[int], None]] | None" = None) -> None:
        """`children`: processes started before the core (the first compile), pid ->
        what to call with their exit status."""
        self.loop = loop
        self.log = log
        self.streams = streams if streams is not None else Output(loop)
        self.records = Records(plan)
        self.pipelines = Pipelines()  # the pipes between services and their loggers
        self.reaper = Reaper(loop, children)
        self.monitors = Monitors(loop, log, self.streams, output, self.reaper.watch,
                                 self._on_report, self._on_monitor_exit)
        self.start_order = StartOrder(self.records, log, self.streams,
                                      time.monotonic() if started_at is None else started_at)
        self.main = MainCommand(loop, log, main_cmd, self.reaper.watch)
        self.leftovers = Leftovers(loop, log, self.reaper, lambda: self.main.pid)
        self.spared: "set[int]" = set()  # ctl clients waiting for the end
        self.sweep = Sweep(loop, log, is_pid1, self.spared)
        self.phase = Phase.RUN  # changed only by _phase_event
        self.stop_order: "StopOrder | None" = None  # from the shutdown's SERVICES phase on
        self.shutdown_started = 0.0
        self.failed = False  # a critical service failed, or the boot (boot_failure "stop"): exit 1
        self.boot_timer = None  # boot_timeout's deadline, while the boot is not over
        self._on_change: "list[Callable[[], None]]" = []
        self._on_settled: "list[Callable[[], None]]" = []

    # === the interface =====================================================================

    def subscribe(self, on_change: "Callable[[], None] | None" = None,
                  on_settled: "Callable[[], None] | None" = None) -> None:
        """on_change(): after any service's status changed. on_settled(): when a record a
        reload retired is gone (a queued reload may run)."""
        if on_change is not None:
            self._on_change.append(on_change)
        if on_settled is not None:
            self._on_settled.append(on_settled)

    @property
    def booted(self) -> bool:
        """Every service not marked down has been ready or done once (tree_up was said)."""
        return self.start_order.booted

    def watch_child(self, pid: int, on_exit: "Callable[[int], None]") -> None:
        """A child the core must reap (the watcher, a compile, a helper): `on_exit(wait
        status)` once it has been reaped."""
        self.reaper.watch(pid, on_exit)

    def spare(self, pid: int) -> None:
        """Never signal `pid` in the final sweep (a ctl client waiting for the end)."""
        self.spared.add(pid)

    @property
    def plan(self) -> Plan:
        return self.records.plan

    @property
    def shutting_down(self) -> bool:
        return self.phase is not Phase.RUN

    @property
    def main_running(self) -> bool:
        return self.main.running

    def boot(self) -> None:
        osutil.prepare_fork()
        timeout = self.plan.settings.boot_timeout
        if timeout is not None:
            self.boot_timer = self.loop.call_later(timeout, self._boot_timed_out)
        self.start_order.boot(self._start_monitor, self._start)
        self._converge()

    def reap(self) -> None:
        """SIGCHLD: reap every child that exited, then move the shutdown on."""
        self.reaper.reap()
        if self.shutting_down:
            self._shutdown_progress()

    def begin_shutdown(self, reason: str) -> None:
        if self.shutting_down:
            return  # the first reason stands
        self.shutdown_started = time.monotonic()
        self.log.info("shutdown_begin", reason=reason)
        self._phase_event(PhaseEv.BEGIN)
        self._shutdown_progress()

    def forward_signal(self, signum: int) -> None:
        self.main.forward(signum)

    def ending(self) -> Ending:
        if self.failed:
            code = exitcodes.FAILURE
        else:
            code = (self.main.code or exitcodes.OK) if self.main.argv else exitcodes.OK
        return Ending(code, time.monotonic() - self.shutdown_started, self.reaper.orphans_reaped)

    # --- what ctl sees and asks --------------------------------------------------------

    def view(self, name: str) -> "View | None":
        svc = self.records.get(name)
        return None if svc is None else svc.view()

    def status_rows(self, names: "list[str] | tuple[str, ...]", now: float) -> "list[dict]":
        """`ctl status`: the named services' lines (all of them, in start order, when none
        is named)."""
        get = self.records.get
        return [get(n).status_row(now) for n in (names or self.records.ordered_names())]

    def monitor_pids(self) -> "dict[str, int | None]":
        """Each service's monitor (None while it has none): its process tree is the
        service's, leftovers included (a monitor is a child subreaper)."""
        return {svc.name: svc.link.pid if svc.link is not None else None for svc in self.records}

    @property
    def orphans_reaped(self) -> int:
        return self.reaper.orphans_reaped

    def check(self) -> "str | None":
        """The first service that keeps the tree from being healthy, as one line."""
        for name in self.records.ordered_names():
            svc = self.records.get(name)
            st = svc.state
            if st is State.FAILED:
                return f"{name} is failed"
            if svc.want is Want.UP and st not in SATISFIED:
                return f"{name} is {st.value}, wanted up"
        return None

    def want_up(self, name: str) -> None:
        svc = self.records.get(name)
        svc.want = Want.UP
        svc.user_set = True
        if svc.life is Life.UP_SENT:  # again: a service that ended on its own starts
            self.monitors.send(svc, Command(Cmd.UP))
        self._converge()

    def want_down(self, name: str) -> None:
        svc = self.records.get(name)
        svc.want = Want.DOWN
        svc.user_set = True
        self._advance(svc, LifeEv.STOP)
        self.monitors.send(svc, Command(Cmd.DOWN))

    def restart(self, name: str) -> None:
        svc = self.records.get(name)
        if svc.life is Life.UP_SENT:
            svc.want = Want.UP
            svc.user_set = True
            self.monitors.send(svc, Command(Cmd.RESTART))
        else:
            self.want_up(name)

    def signal(self, name: str, sig: int) -> None:
        self.monitors.send(self.records.get(name), Command(Cmd.SIGNAL, sig))

    # --- reload ----------------------------------------------------------------------------

    def reload_settled(self) -> bool:
        """No record of the last reload is still retiring."""
        return not self.records.retiring()

    def apply_plan(self, new: Plan, diff: PlanDiff) -> None:
        """Switch to a new plan: unchanged services keep running untouched; removed and
        changed ones stop (dependents first), then changed ones start again."""
        going = retirements(self.records, new, diff.removed, diff.changed)
        self.streams.keep_lines(new.settings.log_buffer)
        specs = new.by_name()
        self.records.plan = new
        for svc in self.records:
            if svc.name in specs and svc.name not in going:
                svc.spec = specs[svc.name]  # same content (same digest)
        for name, retirement in going.items():
            svc = self.records.get(name)
            self.records.retire(svc, retirement)
            self._advance(svc, LifeEv.RETIRE)
        for name in diff.added:
            svc = Service(specs[name])
            self.records.put(svc)
            self._start_monitor(svc)
        self.pipelines.prune(self.records)
        self._converge()

    # === inside ============================================================================

    def _advance(self, svc: Service, ev: LifeEv) -> None:
        """The one place a record's life changes; what the transition asks for is done here."""
        svc.life, do = next_life(svc.life, ev)
        if svc.life is Life.GONE and self.stop_order is not None:
            self.stop_order.gone(svc.name)
        if do is Do.SEND_UP:
            self.monitors.send(svc, Command(Cmd.UP))
        elif do is Do.SEND_EXIT:
            # A logger nothing feeds any more reads its pipe to the end first.
            self.monitors.send_exit(svc, drain=self.pipelines.drain(svc.name, self.records))
        elif do is Do.FORK:
            self._start_monitor(svc)
        elif do is Do.ENDED and svc.retirement is not None:
            self._retired(svc)

    def _start(self, svc: Service) -> None:
        self._advance(svc, LifeEv.START)

    def _start_monitor(self, svc: Service) -> None:
        # A retry after a failed fork finds the record as it is now: still without a
        # monitor and still ours (a reload may have retired it meanwhile), or nothing to do.
        if self.shutting_down or svc.life is not Life.NO_MONITOR or self.records.get(svc.name) is not svc:
            return
        try:
            stdin, logged = self.pipelines.ends(svc.spec, self.plan)
            self.monitors.fork(svc, stdin, logged)
        except OSError as e:
            self.log.warning("retry_later", service=svc.name, what="fork monitor", error=e.strerror)
            self.loop.call_later(RETRY_DELAY, lambda: self._start_monitor(svc))
            return
        self._advance(svc, LifeEv.FORKED)

    def _notify(self) -> None:
        for fn in list(self._on_change):
            fn()

    def _converge(self) -> None:
        if self.shutting_down:
            self._shutdown_progress()
            return
        for svc in ready_to_exit(self.records):
            self._advance(svc, LifeEv.EXIT)
        if not self.start_order.step(self._start):
            return
        if self.boot_timer is not None:  # the boot is over
            self.boot_timer.cancel()
            self.boot_timer = None
        if self.main.argv and not self.main.started:
            if not self.main.start(lambda: self.begin_shutdown("main command exited")):
                self.begin_shutdown("main command could not start")

    # --- the boot's failures ---------------------------------------------------------

    def _boot_timed_out(self) -> None:
        self.boot_timer = None
        if self.shutting_down or self.start_order.booted:
            return
        self._boot_failed("boot_timeout passed", self.start_order.not_ready(), timeout=True)
        if not self.shutting_down:
            self._converge()

    def _boot_failed(self, reason: str, services: "list[str]", timeout: bool = False) -> None:
        """A oneshot failed during the boot, or boot_timeout passed first: the plan's
        boot_failure says what now (s6-overlay's S6_BEHAVIOUR_IF_STAGE2_FAILS). The
        caller converges after it."""
        rule = self.plan.settings.boot_failure
        if rule != "continue":
            self.log.warning("boot_failed", reason=reason, services=services,
                             then="shutdown" if rule == "stop" else "going on without them")
        if rule == "stop":
            self.failed = True
            self.begin_shutdown(reason)
            return
        if timeout:
            self.start_order.timeout()
        else:
            self.start_order.oneshot_failed(services[0])

    # --- monitors: reports and exits --------------------------------------------------

    def _on_report(self, svc: Service, report: Report) -> None:
        last = svc.report
        report = report._replace(restarts=report.restarts + svc.restarts_before)
        svc.report = report
        log = self.log.bind(service=svc.name)
        for level, event, fields in report_log.said(report, missed=max(0, report.seq - last.seq - 1)):
            getattr(log, level)(event, **fields)
        if last.pid and report.pid != last.pid:  # a run ended (and maybe the next began)
            self.monitors.run_ended(svc.link, ended_how(report))
        if report.pid and report.pid != last.pid:
            self.streams.run_started(svc.name)
        if report.gave_up and not last.gave_up:
            # `want` stays what was asked for: a service that ended on its own is still
            # wanted up, so `ctl check` reports it (only `down` and `ctl stop` exempt).
            if svc.spec.critical and not self.shutting_down:
                self.failed = True
                self.begin_shutdown(f"critical service {svc.name} ended")
            elif svc.spec.type == "oneshot" and report.state is State.FAILED and not self.start_order.booted:
                self._boot_failed(f"oneshot {svc.name} failed", [svc.name])
        self._converge()
        self._notify()

    def _on_monitor_exit(self, svc: Service, link: Link, status: int) -> None:
        code, sig = osutil.decode_wait_status(status)
        try:
            self.monitors.read_last_reports(svc, link)
            if not (svc.life is Life.EXIT_SENT and code == 0):
                self._unsupervised(svc, code, sig)
            if svc.report.pid:  # its run was killed with it
                self.monitors.run_ended(link, "its monitor died")
            # Killed first, then drained: a leftover that writes faster than we read must
            # not keep us here (and what it could still write is bounded by the pipe).
            self.monitors.close_output(link)
        finally:
            # Whatever failed above, the record goes on: a new monitor, or finished.
            self.monitors.unlink(svc, link)
            pid = svc.report.pid
            svc.restarts_before = svc.report.restarts + (1 if pid else 0)
            # The core's own report of a dead monitor: a number of its own, so that
            # waiters see it; the next monitor's reports go on from there.
            svc.report = svc.report._replace(seq=svc.report.seq + 1, prev=svc.report.state,
                                             state=State.DOWN, pid=None, ready=False, event=None,
                                             error=None)
            # During shutdown no monitor is forked: the record waits for its turn to end.
            self._advance(svc, LifeEv.MONITOR_EXITED)
        self._converge()
        self._notify()

    def _unsupervised(self, svc: Service, code: "int | None", sig: int) -> None:
        """A monitor died without being told to exit: its service must not run
        unsupervised. Kill what we know of it, and what it left behind (re-parented to us
        when the monitor died)."""
        pid, pgid = svc.report.pid, svc.report.pgid
        if pgid:
            osutil.killpg_quietly(pgid, signal.SIGKILL)
        if pid:
            osutil.kill_quietly(pid, signal.SIGKILL)
        self.leftovers.end(svc.name, pid)
        self.log.warning("monitor_died", exit_code=code, signal=signal_name(sig) if sig else None,
                         service=svc.name, service_pid=pid)

    # --- reload: a retired record ends ------------------------------------------------

    def _retired(self, old: Service) -> None:
        name = old.name
        if self.records.get(name) is not old:
            return
        new = None if self.shutting_down else successor(old)
        if new is None:
            self.records.remove(name)
            self.pipelines.prune(self.records)
            self.streams.forget(name)
        else:
            self.records.put(new)
            self._start_monitor(new)
        for fn in list(self._on_settled):  # a queued reload may run now
            fn()

    # --- shutdown -----------------------------------------------------------------------

    def _phase_event(self, ev: PhaseEv) -> None:
        """The one place the shutdown's phase changes; entering a phase starts its work."""
        new = next_phase(self.phase, ev)
        if new is self.phase:
            return
        self.phase = new
        settings = self.plan.settings
        if new is Phase.MAIN:
            self.main.stop(settings.main_stop_timeout)
        elif new is Phase.SERVICES:
            self.stop_order = StopOrder(self.records)
        elif new is Phase.SWEEP:
            self.pipelines.close_all()  # every monitor is gone: nobody reads or writes them
            self.sweep.begin(settings.kill_grace, self._grace_over, self.shutdown_started)
        elif new is Phase.SWEEP_KILLED:
            self.sweep.kill()
        elif new is Phase.DONE:
            self.sweep.end()
            self.loop.running = False

    def _shutdown_progress(self) -> None:
        if self.phase is Phase.MAIN and not self.main.running:
            self._phase_event(PhaseEv.MAIN_GONE)
        if self.phase is Phase.SERVICES:
            self._stop_in_order()
            if self.stop_order.left == 0:
                self._phase_event(PhaseEv.SERVICES_GONE)
        if self.phase in (Phase.SWEEP, Phase.SWEEP_KILLED):
            self._sweep_progress()

    def _stop_in_order(self) -> None:
        """`exit` to each record whose dependents are all gone (StopOrder); one that had
        no monitor is gone at once, and what waited on it may go too: it is ready next."""
        while ready := self.stop_order.take_ready():
            for name in ready:
                svc = self.records.get(name)
                if svc is not None and svc.life not in (Life.EXIT_SENT, Life.GONE):
                    self._advance(svc, LifeEv.EXIT)

    def _grace_over(self) -> None:
        self._phase_event(PhaseEv.GRACE_OVER)
        self._sweep_progress()

    def _sweep_progress(self) -> None:
        if self.phase in (Phase.SWEEP, Phase.SWEEP_KILLED) and \
                self.sweep.nothing_left(self.phase is Phase.SWEEP_KILLED, self._sweep_progress):
            self._phase_event(PhaseEv.NOTHING_LEFT)
