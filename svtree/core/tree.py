"""The core's model of the tree: one record per service, monitors as child processes,
the start order (a service gets `up` once its dependencies are ready or done), the
ordered shutdown (a service gets `exit` once everything that depends on it is gone),
the main command, the final sweep and the reaper.

Reaping happens in exactly one place (`reap`), and each status goes to the owner of
the pid: a monitor, the main command, the watcher, or nobody (an orphan).
"""

from __future__ import annotations

import collections
import errno
import gc
import os
import signal
import socket
import time
from dataclasses import replace
from typing import Callable

from svtree import exitcodes, osutil, wire
from svtree.core import report_log
from svtree.core.records import Do, Life, LifeEv, Retirement, Service, next_life
from svtree.core.shutdown import Phase, PhaseEv, next_phase
from svtree.core.output import Output, PrefixedPipe
from svtree.messages import Cmd, Command, MessageError, Report, decode_report, encode
from svtree.monitor import monitor_main
from svtree.plan import Plan, ServiceSpec
from svtree.signames import signal_name
from svtree.states import SATISFIED, State, Want

NOT_FORWARDED = {
    signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP,
    signal.SIGKILL, signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU,
    signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGTRAP,
    signal.SIGABRT, signal.SIGSYS, signal.SIGPIPE, signal.SIGXFSZ,
}
RETRY_DELAY = 1.0  # after EAGAIN/EMFILE/ENOMEM
# A monitor told to `exit` has stop_timeout + finish_timeout to stop its service and
# run finish; one that has not exited this long after that (stopped, hung) is killed,
# with its service, so that shutdown and reload end in bounded time.
MONITOR_EXIT_GRACE = 2.0
MAX_QUEUED_COMMANDS = 64  # per monitor that does not read; then only what matters is kept
SERVICE_ENV = "SVTREE_SERVICE"


class Link:
    """The core's end of one monitor: its pid, socket, commands waiting for room, output
    pipes, and the deadline of its exit after `exit`."""

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid = pid
        self.sock = sock
        # Commands the monitor's socket had no room for yet (a monitor that does not read).
        self.outbox: "collections.deque[tuple[Cmd, bytes]]" = collections.deque()
        self.pipes: "list[PrefixedPipe]" = []
        self.exit_timer = None


class Core:
    def __init__(self, loop, plan: Plan, log, *, output: str, main_cmd: "list[str]",
                 is_pid1: bool, kill_grace: float, main_stop_timeout: float,
                 streams: "Output | None" = None) -> None:
        self.loop = loop
        self.plan = plan
        self.log = log
        self.output = output
        self.streams = streams if streams is not None else Output(loop)
        self.main_cmd = main_cmd
        self.is_pid1 = is_pid1
        self.kill_grace = kill_grace
        self.main_stop_timeout = main_stop_timeout
        self.services: "dict[str, Service]" = {s.name: Service(s) for s in plan.services}
        self.by_monitor: "dict[int, Service]" = {}
        self.main_pid: "int | None" = None
        self.main_started = False
        self.main_code: "int | None" = None
        self.failed = False  # a critical service or a oneshot at boot failed: exit 1
        self.booted = False  # every service wanted up was once ready/done
        self.phase = Phase.RUN  # changed only by _phase_event
        self.shutdown_started = 0.0
        self.sweep_deadline = None
        self.spared: "set[int]" = set()  # ctl clients waiting for the end
        self.on_exit_hooks: "list[Callable[[], None]]" = []
        self.other_children: "dict[int, Callable[[int], None]]" = {}  # watcher etc.
        self.orphans_reaped = 0
        self.t0 = time.monotonic()
        self.state_listeners: "list[Callable[[], None]]" = []
        self._base_env: "dict[str, str] | None" = None
        self.retired_listeners: "list[Callable[[], None]]" = []
        self.reload: "Callable | None" = None  # set by core.reload.Reloader

    # --- boot ---------------------------------------------------------------------------

    def boot(self) -> None:
        osutil.prepare_fork()
        for name in self._level_order():
            svc = self.services[name]
            self.start_monitor(svc)
            # Services without dependencies start while the next monitors are forked.
            if not svc.spec.depends_on and svc.want is Want.UP and svc.life is Life.HELD:
                self._advance(svc, LifeEv.START)
        self.converge()

    def _level_order(self) -> "list[str]":
        return [n for level in self.plan.levels for n in level if n in self.services]

    def ordered_names(self) -> "list[str]":
        """Services in start order (as `ctl status` lists them); services a reload is
        removing come last while they stop."""
        names = self._level_order()
        return names + sorted(set(self.services) - set(names))

    def service_env(self, spec: ServiceSpec) -> "dict[str, str]":
        """svtree's environment, the service's `environment`, and SVTREE_SERVICE=NAME
        (like supervisord's SUPERVISOR_PROCESS_NAME): what the service leaves behind
        carries it, which is how the core finds those processes if the monitor dies."""
        if self._base_env is None:
            self._base_env = dict(os.environ)
        env = dict(self._base_env)
        env.update(dict(spec.environment))
        env[SERVICE_ENV] = spec.name
        return env

    def _advance(self, svc: Service, ev: LifeEv) -> None:
        """The one place a record's life changes; what the transition asks for is done here."""
        svc.life, do = next_life(svc.life, ev)
        if do is Do.SEND_UP:
            self.send(svc, Command(Cmd.UP))
        elif do is Do.SEND_EXIT:
            self._send_exit(svc)
        elif do is Do.FORK:
            self.start_monitor(svc)
        elif do is Do.ENDED and svc.retirement is not None:
            self.retired(svc)

    def start_monitor(self, svc: Service) -> None:
        # A retry after a failed fork finds the record as it is now: still without a
        # monitor and still ours (a reload may have retired it meanwhile), or nothing to do.
        if self.shutting_down or svc.life is not Life.NO_MONITOR or self.services.get(svc.name) is not svc:
            return
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pipes: "list[tuple[int, int]]" = []
        try:
            if self.output == "prefix":
                pipes = [os.pipe(), os.pipe()]
                out_w, err_w = pipes[0][1], pipes[1][1]
            else:
                out_w, err_w = 1, 2
            env = self.service_env(svc.spec)
            gc.freeze()  # keep the monitor's copy-on-write pages shared
            pid = osutil.fork_quiet()
        except OSError as e:
            parent.close()
            child.close()
            for r, w in pipes:
                os.close(r)
                os.close(w)
            self.log.warning("retry_later", service=svc.name, what="fork monitor", error=e.strerror)
            self.loop.call_later(RETRY_DELAY, lambda: self.start_monitor(svc))
            return
        if pid == 0:
            # never returns; its reports go on from this record's last sequence number
            monitor_main(svc.spec, child.fileno(), out_w, err_w, env, svc.report.seq + 1)
        child.close()
        link = svc.link = Link(pid, parent)
        self.by_monitor[pid] = svc
        parent.setblocking(False)
        self.loop.add_reader(parent, lambda: self.on_monitor_message(svc, link))
        for (r, w), target in zip(pipes, (1, 2)):
            os.close(w)
            link.pipes.append(self.streams.pipe(svc.name, r, target))
        self._advance(svc, LifeEv.FORKED)

    def send(self, svc: Service, cmd: Command) -> None:
        """Send a command to the monitor; what finds no room waits, in order, until
        the socket is writable (a lost `exit` would hang shutdown)."""
        link = svc.link
        if link is None:
            return
        if len(link.outbox) >= MAX_QUEUED_COMMANDS:
            self._compact_commands(link)
        link.outbox.append((cmd.kind, encode(cmd)))
        if len(link.outbox) == 1:
            self._send_commands(link)

    def _send_commands(self, link: Link) -> None:
        sock = link.sock
        while link.outbox:
            try:
                sock.send(link.outbox[0][1])
            except BlockingIOError:
                self.loop.add_writer(sock, lambda: self._send_commands(link))
                return
            except OSError:
                link.outbox.clear()  # a dead monitor: the reaper deals with it
                break
            link.outbox.popleft()
        self.loop.remove_writer(sock)

    @staticmethod
    def _compact_commands(link: Link) -> None:
        """A monitor that reads nothing (stopped): keep its latest want and an `exit`;
        signals for a process nobody supervises right now are dropped."""
        wants = [m for m in link.outbox if m[0] in (Cmd.UP, Cmd.DOWN, Cmd.RESTART)]
        keep = wants[-1:] + [m for m in link.outbox if m[0] is Cmd.EXIT][:1]
        link.outbox = collections.deque(keep)

    # --- output -------------------------------------------------------------------------

    @staticmethod
    def close_output(link: Link) -> None:
        """The monitor is gone: what its pipes hold now is read (bounded), then closed."""
        for pipe in link.pipes:
            pipe.drain_and_close()

    # --- monitor reports ----------------------------------------------------------------

    def on_monitor_message(self, svc: Service, link: Link) -> None:
        sock = link.sock
        try:
            data = sock.recv(wire.MAX_DATAGRAM)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.loop.remove_reader(sock)
            return  # EOF: the reaper will see the monitor's exit
        if link is svc.link:
            self.take_report(svc, data)

    def take_report(self, svc: Service, data: bytes) -> None:
        try:
            report = decode_report(data)
        except MessageError as e:  # a bug of the monitor's: said, never fatal
            self.log.error("internal_error", where=f"report of {svc.name}", error=str(e))
            return
        self.on_report(svc, report)

    def on_report(self, svc: Service, msg: Report) -> None:
        old = svc.report
        msg = replace(msg, restarts=msg.restarts + svc.restarts_before)
        svc.report = msg
        log = self.log.bind(service=svc.name)
        for level, event, fields in report_log.said(msg, missed=max(0, msg.seq - old.seq - 1)):
            getattr(log, level)(event, **fields)
        if old.pid and msg.pid is None and svc.link is not None:
            for pipe in svc.link.pipes:
                pipe.run_ended()
        if msg.gave_up and not old.gave_up:
            # `want` stays what was asked for: a service that ended on its own is still
            # wanted up, so `ctl check` reports it (only `down` and `ctl stop` exempt).
            if svc.spec.critical and not self.shutting_down:
                self.failed = True
                self.begin_shutdown(f"critical service {svc.name} ended")
            elif svc.spec.type == "oneshot" and msg.state is State.FAILED and not self.booted:
                self.failed = True
                self.begin_shutdown(f"oneshot {svc.name} failed")
        self.converge()
        self.notify_listeners()

    # --- converging on what is wanted --------------------------------------------------

    def deps_ready(self, svc: Service) -> bool:
        for dep in svc.spec.depends_on:
            d = self.services.get(dep)
            if d is None or d.retirement is not None or d.report.state not in SATISFIED:
                return False
        return True

    def converge(self) -> None:
        if self.shutting_down:
            self.shutdown_progress()
            return
        self.retire_progress()
        for svc in list(self.services.values()):
            if svc.want is Want.UP and svc.life is Life.HELD and self.deps_ready(svc):
                self._advance(svc, LifeEv.START)
        if not self.booted and all(
            s.report.state in SATISFIED for s in self.services.values() if not s.spec.down
        ):
            self.booted = True
            took = time.monotonic() - self.t0
            up = sum(1 for s in self.services.values() if s.report.state in SATISFIED)
            self.log.info("tree_up", services=up, duration=round(took, 3))
            if os.isatty(1):  # a person is watching: one plain summary line
                self.streams.own_line(1, f"{up} service{'s' if up != 1 else ''} up in {took * 1000:.0f} ms\n")
            if self.main_cmd and not self.main_started:
                self.start_main()

    def notify_listeners(self) -> None:
        for fn in list(self.state_listeners):
            fn()

    # --- requests (ctl) -----------------------------------------------------------------

    def want_up(self, svc: Service) -> None:
        svc.want = Want.UP
        svc.user_set = True
        if svc.life is Life.UP_SENT:  # again: a service that ended on its own starts
            self.send(svc, Command(Cmd.UP))
        self.converge()

    def want_down(self, svc: Service) -> None:
        svc.want = Want.DOWN
        svc.user_set = True
        self._advance(svc, LifeEv.STOP)
        self.send(svc, Command(Cmd.DOWN))

    def restart(self, svc: Service) -> None:
        if svc.life is Life.UP_SENT:
            svc.want = Want.UP
            svc.user_set = True
            self.send(svc, Command(Cmd.RESTART))
        else:
            self.want_up(svc)

    def signal_service(self, svc: Service, sig: int) -> None:
        self.send(svc, Command(Cmd.SIGNAL, sig))

    # --- the main command ---------------------------------------------------------------

    def start_main(self) -> None:
        self.main_started = True
        try:
            self.main_pid = osutil.spawn(
                self.main_cmd if "/" in self.main_cmd[0] else [_which(self.main_cmd[0])] + self.main_cmd[1:],
                cwd=None, env=dict(os.environ), fds={0: 0, 1: 1, 2: 2},
                session=False, foreground_tty=True,
            )
        except OSError as e:
            self.log.error("main_exited", error=e.strerror, exit_code=127)
            self.main_code = 127
            self.begin_shutdown("main command could not start")
            return
        self.log.info("main_started", pid=self.main_pid, argv=self.main_cmd)

    def forward_signal(self, signum: int) -> None:
        if self.main_pid is not None:
            osutil.kill_quietly(self.main_pid, signum)
            self.log.debug("signal_forwarded", signal=signal_name(signum), pid=self.main_pid)

    def on_main_exit(self, code: "int | None", sig: int) -> None:
        self.main_code = code if code is not None else exitcodes.SIGNAL_BASE + sig
        self.log.info("main_exited", pid=self.main_pid, exit_code=self.main_code)
        self.main_pid = None
        self.begin_shutdown("main command exited")

    # --- shutdown -----------------------------------------------------------------------

    @property
    def shutting_down(self) -> bool:
        return self.phase is not Phase.RUN

    def _phase_event(self, ev: PhaseEv) -> None:
        """The one place the shutdown's phase changes; entering a phase starts its work."""
        new = next_phase(self.phase, ev)
        if new is self.phase:
            return
        self.phase = new
        if new is Phase.MAIN:
            self._stop_main()
        elif new is Phase.SWEEP:
            self.begin_sweep()
        elif new is Phase.SWEEP_KILLED:
            self._kill_remaining()
        elif new is Phase.DONE:
            self._sweep_done()

    def begin_shutdown(self, reason: str) -> None:
        if self.shutting_down:
            return  # the first reason stands
        self.shutdown_started = time.monotonic()
        self.log.info("shutdown_begin", reason=reason)
        self._phase_event(PhaseEv.BEGIN)
        self.shutdown_progress()

    def _stop_main(self) -> None:
        if self.main_pid is not None:
            osutil.kill_quietly(self.main_pid, signal.SIGTERM)
            osutil.kill_quietly(self.main_pid, signal.SIGCONT)
            pid = self.main_pid
            self.loop.call_later(self.main_stop_timeout,
                                 lambda: self.main_pid == pid and osutil.kill_quietly(pid, signal.SIGKILL))

    def shutdown_progress(self) -> None:
        if self.phase is Phase.MAIN:
            if self.main_pid is not None:
                return
            self._phase_event(PhaseEv.MAIN_GONE)
        if self.phase is Phase.SERVICES:
            dependents = self.live_dependents()
            memo: "dict[str, bool]" = {}

            def gone(name: str) -> bool:
                return name not in self.services or self.services[name].life is Life.GONE

            def all_gone(name: str) -> bool:
                # Transitively: a dependent whose monitor died early is gone, but what
                # depends on it may still run, and that needs us too.
                if name not in memo:
                    memo[name] = all(gone(d) and all_gone(d) for d in dependents.get(name, ()))
                return memo[name]

            for svc in list(self.services.values()):
                if svc.life not in (Life.EXIT_SENT, Life.GONE) and all_gone(svc.name):
                    self._advance(svc, LifeEv.EXIT)
                    if svc.life is Life.GONE:  # it had no monitor: what waited on it may go now
                        return self.shutdown_progress()
            if all(s.life is Life.GONE for s in self.services.values()):
                self._phase_event(PhaseEv.SERVICES_GONE)
        if self.phase in (Phase.SWEEP, Phase.SWEEP_KILLED):
            self.sweep_progress()

    def live_dependents(self) -> "dict[str, list[str]]":
        """Reverse edges of the services that exist now: the plan's, plus the old edges
        of services a reload is still retiring (not in the new plan, but still running
        on top of their dependencies)."""
        if not any(s.retirement is not None for s in self.services.values()):
            return self.plan.dependents()
        rev: "dict[str, list[str]]" = {}
        for svc in self.services.values():
            for dep in svc.spec.depends_on:
                rev.setdefault(dep, []).append(svc.name)
        return rev

    def _send_exit(self, svc: Service) -> None:
        """Tell the monitor to stop its service and exit (shutdown, or retirement)."""
        self.send(svc, Command(Cmd.EXIT))
        link = svc.link
        spec = svc.spec
        link.exit_timer = self.loop.call_later(
            spec.stop_timeout + spec.finish_timeout + MONITOR_EXIT_GRACE,
            lambda: self._monitor_overdue(svc, link))

    def _monitor_overdue(self, svc: Service, link: Link) -> None:
        if svc.link is not link:
            return
        self.log.warning("monitor_stuck", service=svc.name, monitor=link.pid, service_pid=svc.report.pid)
        osutil.kill_quietly(link.pid, signal.SIGKILL)  # on_monitor_exit then kills its service

    def remaining(self) -> "list[int]":
        """Every live process but svtree and the spared ctl clients: all of the PID
        namespace's when svtree is PID 1 (`docker exec` adds processes that do not descend
        from it), else svtree's descendants. A walk of /proc: see sweep_progress."""
        me = os.getpid()
        if self.is_pid1:
            pids = [p for p in osutil.all_pids() if p != me]
        else:
            pids = osutil.descendants(me)
        return [p for p in pids if p not in self.spared and not osutil.is_zombie(p)]

    def begin_sweep(self) -> None:
        left = self.remaining()
        self.log.info("shutdown_sweep", remaining=len(left),
                      duration=round(time.monotonic() - self.shutdown_started, 3))
        for p in left:
            osutil.kill_quietly(p, signal.SIGTERM)
            osutil.kill_quietly(p, signal.SIGCONT)
        self.sweep_strangers: "dict[int, int]" = {}  # pid -> pidfd, of processes not ours
        self.sweep_deadline = self.loop.call_later(self.kill_grace, self.sweep_kill)

    def sweep_kill(self) -> None:
        self._phase_event(PhaseEv.GRACE_OVER)
        self.sweep_progress()

    def _kill_remaining(self) -> None:
        left = self.remaining()
        if left:
            self.log.warning("shutdown_kill", remaining=len(left))
        for p in left:
            osutil.kill_quietly(p, signal.SIGKILL)

    def sweep_progress(self) -> None:
        """Called on every event of the sweep (each reap pass, above all): cheap. While a
        child of ours lives, something is left (its descendants are too): no walk of
        /proc. Once none is left, only processes not descended from svtree can remain (as
        PID 1: `docker exec`'d ones): one walk finds them, and each is watched through a
        pidfd, whose readiness (the process ended) is the next event."""
        me = os.getpid()
        if self.phase is Phase.SWEEP:
            if any(p not in self.spared and not osutil.is_zombie(p) for p in osutil.children(me)):
                return
            if self.is_pid1:
                left = self.remaining()
                if left:
                    self._watch_strangers(left)
                    return
        elif self.phase is Phase.SWEEP_KILLED:
            # Our own children must be reaped; others (docker exec'd) the kernel ends.
            if osutil.children(me):
                return
        else:
            return
        self._phase_event(PhaseEv.NOTHING_LEFT)

    def _sweep_done(self) -> None:
        if self.sweep_deadline is not None:
            self.sweep_deadline.cancel()
        for fd in self.sweep_strangers.values():
            self.loop.remove_reader(fd)
            os.close(fd)
        self.sweep_strangers.clear()
        self.loop.running = False

    def _watch_strangers(self, pids: "list[int]") -> None:
        """Be woken when any of `pids` (processes svtree did not start) ends. Without
        pidfds (a kernel before 5.3) the kill deadline is the next event instead."""
        for pid in pids:
            if pid in self.sweep_strangers:
                continue
            try:
                fd = os.pidfd_open(pid)
            except (AttributeError, OSError):
                continue
            self.sweep_strangers[pid] = fd

            def ended(pid: int = pid, fd: int = fd) -> None:
                if self.sweep_strangers.pop(pid, None) is not None:
                    self.loop.remove_reader(fd)
                    os.close(fd)
                    self.sweep_progress()

            self.loop.add_reader(fd, ended)

    # --- reaping: the only waitpid of the core -----------------------------------------

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            if pid == 0:
                break
            code, sig = osutil.decode_wait_status(status)
            if pid in self.by_monitor:
                self.on_monitor_exit(self.by_monitor.pop(pid), code, sig)
            elif pid == self.main_pid:
                self.on_main_exit(code, sig)
            elif pid in self.other_children:
                self.other_children.pop(pid)(status)
            else:
                self.orphans_reaped += 1
        if self.shutting_down:
            self.shutdown_progress()

    def on_monitor_exit(self, svc: Service, code: "int | None", sig: int) -> None:
        # Read what the monitor said before it died, then forget its socket.
        link = svc.link
        sock = link.sock
        while True:  # what it said before dying is still queued
            try:
                data = sock.recv(wire.MAX_DATAGRAM, socket.MSG_DONTWAIT)
            except OSError:
                break
            if not data:
                break
            self.take_report(svc, data)
        self.loop.forget(sock)
        sock.close()
        svc.link = None
        link.outbox.clear()
        if link.exit_timer is not None:
            link.exit_timer.cancel()
            link.exit_timer = None
        expected = svc.life is Life.EXIT_SENT and code == 0
        pid, pgid = svc.report.pid, svc.report.pgid
        if not expected:
            # Its service must not run unsupervised: kill what we know of it, and what it
            # left behind (re-parented to us when the monitor died).
            if pgid:
                osutil.killpg_quietly(pgid, signal.SIGKILL)
            if pid:
                osutil.kill_quietly(pid, signal.SIGKILL)
            self.kill_orphans_of(svc.name)
            self.log.warning("monitor_died", exit_code=code, signal=signal_name(sig) if sig else None,
                             service=svc.name, service_pid=pid)
        # Killed first, then drained: a leftover that writes faster than we read must
        # not keep us here (and what it could still write is bounded by the pipe).
        self.close_output(link)
        svc.restarts_before = svc.report.restarts + (1 if pid else 0)
        # The core's own report of a dead monitor: a number of its own, so that waiters
        # see it; the next monitor's reports go on from there.
        svc.report = replace(svc.report, seq=svc.report.seq + 1, prev=svc.report.state,
                             state=State.DOWN, pid=None, ready=False, event=None, error=None)
        # A new monitor, or (told to exit, retiring) the record is finished. During
        # shutdown no monitor is forked: the record waits for its turn to be done.
        self._advance(svc, LifeEv.MONITOR_EXITED)
        self.converge()
        self.notify_listeners()

    def kill_orphans_of(self, name: str) -> None:
        """SIGKILL our children (and their descendants) that carry SVTREE_SERVICE=name:
        what a dead monitor's service left behind. Monitors, the main command, the watcher
        and helpers are known and never touched; a process that cleared its environment
        escapes this and is ended by the final sweep. The environments are read by a
        helper (core/leftovers.py), never here: a read can block on the target's lock."""
        from svtree.core import leftovers

        known = set(self.by_monitor) | set(self.other_children) | {self.main_pid}
        children = osutil.children(os.getpid())
        candidates = [c for c in children if c not in known]
        if candidates and not leftovers.end_leftovers(
                self.loop, self.other_children, candidates, f"{SERVICE_ENV}={name}".encode(), self.log):
            self.loop.call_later(RETRY_DELAY, lambda: self.kill_orphans_of(name))
        # The service's own process (its report still holds it while its dead monitor is
        # handled) was just SIGKILLed and is ours now. What it started in another session
        # is re-parented to us only once it is dead, maybe after the helper looked: look
        # again once it has been reaped.
        svc = self.services.get(name)
        pid = svc.report.pid if svc is not None else None
        if pid in candidates:

            def reaped(status: int) -> None:
                self.orphans_reaped += 1
                self.kill_orphans_of(name)

            self.other_children[pid] = reaped

    # --- reload: retiring removed and changed services --------------------------------

    def apply_plan(self, new: Plan, added, removed, changed) -> None:
        """Switch to a new plan: unchanged services keep running untouched; removed and
        changed ones stop (dependents first), then changed ones start again."""
        old_dependents = self.plan.dependents()
        going = set(removed) | set(changed)
        specs = new.by_name()
        self.plan = new
        for name, svc in self.services.items():
            if name in specs and name not in going:
                svc.spec = specs[name]  # same content (same digest)
        for name in going:
            svc = self.services[name]
            svc.retirement = Retirement(
                specs.get(name), frozenset(d for d in old_dependents.get(name, ()) if d in going))
            self._advance(svc, LifeEv.RETIRE)
        for name in added:
            svc = Service(specs[name])
            self.services[name] = svc
            self.start_monitor(svc)
        self.kill_grace = new.settings.kill_grace
        self.main_stop_timeout = new.settings.main_stop_timeout
        self.converge()

    def retiring_count(self) -> int:
        return sum(1 for s in self.services.values() if s.retirement is not None)

    def retire_progress(self) -> None:
        for svc in list(self.services.values()):
            if svc.life is Life.RETIRING:
                if not any(self.services.get(n) is not None and self.services[n].retirement is not None
                           for n in svc.retirement.after):
                    self._advance(svc, LifeEv.EXIT)

    def retired(self, old: Service) -> None:
        name = old.name
        if self.services.get(name) is not old:
            return
        replacement = old.retirement.replacement
        if replacement is None or self.shutting_down:
            del self.services[name]
        else:
            new = Service(replacement, seq=old.report.seq + 1)  # its reports' numbers go on
            if old.user_set and old.spec.down == new.spec.down:
                new.want, new.user_set = old.want, True
            new.restarts_before = old.report.restarts
            self.services[name] = new
            self.start_monitor(new)
        for fn in list(self.retired_listeners):  # a queued reload may run now
            fn()


def _which(prog: str) -> str:
    for d in os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin").split(os.pathsep):
        path = os.path.join(d or ".", prog)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return prog  # exec fails with ENOENT: the child says so and exits 127
