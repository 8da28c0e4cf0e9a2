"""The monitor: one process per service (s6-supervise's role).

Forked by the core (never exec'd, so it costs only the pages it touches), it runs the
service as its child, turns the pure state machine's effects (svtree.states) into system
calls, and reports every change of status to the core over a SOCK_SEQPACKET socket.

It knows nothing of other services, of the core's internals, of structlog or watchfiles.
It is a child subreaper, so whatever the service leaves behind (double-forked daemons,
orphaned children) is re-parented to it: "the service" is then exactly this process's
descendants other than its own helpers (finish, the ready probe).

One blocking point: `selector.select(timeout)` where the timeout comes from the
machine's deadline and the probe schedule, or None when idle. Reports never block
either: they wait in a queue of at most MAX_QUEUED_REPORTS until the socket has room;
a report that finds the queue full replaces all of it (the core, which did not read for
that long, gets the newest status and sees from the sequence numbers how many reports
it missed). Reports and commands are the typed values of svtree.messages.
"""

from __future__ import annotations

import _signal
import collections
import errno
import os
import selectors
import signal
import socket
import time
from dataclasses import dataclass

from svtree import osutil, wire
from svtree.messages import Cmd, Report, decode_command, encode
from svtree.states import (
    Ev, Event, Kill, KillFinish, RunFinish, Spawn, StartProbe, State, Status, StopProbe, step,
)

SIGKILL = signal.SIGKILL
_READ, _READ_WRITE = selectors.EVENT_READ, selectors.EVENT_READ | selectors.EVENT_WRITE
# Tests only: the monitor of the service named here stops (SIGSTOP) right after starting
# run, before the core has its pid, to hold open the window in which a dying monitor
# leaves a process the core does not know.
_STOP_AFTER_SPAWN = os.environ.get("SVTREE_TEST_STOP_AFTER_SPAWN")
# Every monitor's name (ps, /proc/PID/comm). A child it forked keeps the name until its
# exec: a process of this name that is not a monitor is a dead monitor's child that has
# not exec'd yet, which the core ends (core/leftovers.py).
PROCESS_NAME = b"svtree-monitor"
MAX_QUEUED_REPORTS = 64  # reports waiting for room in the socket; then only the latest


@dataclass(frozen=True)
class Stdio:
    """The fds the core hands a monitor for its service, kept across restarts of run:
    the only ones the monitor keeps besides its socket. stdout and stderr go to run,
    finish and the ready probe; stdin to run only (a logger's finish or probe must not
    read its lines): None is /dev/null."""

    stdout: int  # a prefix pipe, svtree's own stdout, or the write end of a logger's pipe
    stderr: int  # a prefix pipe, or svtree's own stderr
    stdin: "int | None" = None  # a logger's: the read end of its pipe

    def fds(self) -> "tuple[int, ...]":
        return tuple(fd for fd in (self.stdin, self.stdout, self.stderr) if fd is not None)


class Monitor:
    def __init__(self, spec, sock: socket.socket, stdio: Stdio, env: "dict[str, str]",
                 first_seq: int = 1):
        self.spec = spec
        self.sock = sock
        self.stdio = stdio
        self.env = env
        self.status = Status()
        self.seq = first_seq - 1  # of the last report
        self.reported: "tuple | None" = None  # the status the last report carried
        self.outbox: "collections.deque[bytes]" = collections.deque()  # not sent yet
        self.finish_pid: "int | None" = None
        self.probe_pid: "int | None" = None
        self.probe_next: "float | None" = None  # when to run ready_command again
        self.probing = False
        self.notify_fd: "int | None" = None  # read end of notification_fd's pipe
        self.exit_when_down = False
        self.escalated = False  # strays got SIGKILL: repeat it on every reap
        self.sel = selectors.DefaultSelector()
        self.devnull = os.open(os.devnull, os.O_RDWR)
        # A reload may delete the service directory while it stops; its finish must
        # still run, so keep the script's bytes (see run_finish).
        self.finish_copy = b""
        if spec.finish:
            try:
                with open(spec.finish, "rb") as f:
                    self.finish_copy = f.read(1 << 20)
            except OSError:
                pass

    # --- the loop ---------------------------------------------------------------------

    def run(self) -> None:
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
        self.sel.register(wake_r, selectors.EVENT_READ, "signal")
        self.sel.register(self.sock, selectors.EVENT_READ, "core")
        self.report()
        while True:
            timeout = self._timeout()
            for key, mask in self.sel.select(timeout):
                if key.data == "signal":
                    try:
                        while wake_r.recv(4096):
                            pass
                    except BlockingIOError:
                        pass
                    self.reap()
                elif key.data == "core":
                    if mask & selectors.EVENT_WRITE:
                        self.send_reports()
                    if mask & selectors.EVENT_READ:
                        self.read_core()
                elif key.data == "notify":
                    self.read_notify()
            self.fire_deadlines()
            if self.exit_when_down and self.status.state is State.DOWN and not self._helpers_running():
                # Every change of status was reported as it happened (feed): no report
                # of its own here, only what is still queued, if there is room now; if
                # not, the core learns the same from our exit status (0 after `exit`).
                # (The status changes only in feed, which reports it at once.)
                if self.outbox:
                    self.send_reports()
                os._exit(0)

    def _timeout(self) -> "float | None":
        times = [t for t in (self.status.deadline, self.probe_next) if t is not None]
        if not times:
            return None  # idle: block until a signal or a message
        return max(0.0, min(times) - time.monotonic())

    def fire_deadlines(self) -> None:
        now = time.monotonic()
        if self.status.deadline is not None and now >= self.status.deadline:
            self.feed(Event(Ev.TIMEOUT))
        if self.probe_next is not None and now >= self.probe_next and self.probe_pid is None:
            self.probe_next = None
            self.start_probe()

    # --- events in -----------------------------------------------------------------------

    def feed(self, event: Event) -> None:
        prev = self.status.state
        self.status, effects = step(self.spec, self.status, event, time.monotonic())
        self.report(event=event, prev=prev)
        for effect in effects:
            self.carry_out(effect)

    def read_core(self) -> None:
        try:
            data = self.sock.recv(wire.MAX_DATAGRAM)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            # The core is gone (it was killed): leave nothing behind.
            self.exit_when_down = True
            self.feed(Event(Ev.WANT_DOWN, strays=bool(self.strays())))
            return
        # A command that is not one is a bug of the core's: we exit (70) with a traceback,
        # and the core replaces us (STYLE: a monitor meeting the impossible may exit).
        cmd = decode_command(data)
        if cmd.kind is Cmd.UP:
            self.feed(Event(Ev.WANT_UP))
        elif cmd.kind is Cmd.DOWN:
            self.feed(Event(Ev.WANT_DOWN, strays=bool(self.strays())))
            self.report(force=True)  # the core waits for an answer even if nothing changed
        elif cmd.kind is Cmd.RESTART:
            self.feed(Event(Ev.RESTART))
        elif cmd.kind is Cmd.SIGNAL:
            if self.status.pid is not None:
                osutil.kill_quietly(self.status.pid, cmd.sig)
        elif cmd.kind in (Cmd.EXIT, Cmd.DRAIN):
            self.exit_when_down = True
            ev = Ev.WANT_DOWN if cmd.kind is Cmd.EXIT else Ev.DRAIN
            self.feed(Event(ev, strays=bool(self.strays())))

    def reap(self) -> None:
        while True:
            try:
                pid, wstatus = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            code, sig = osutil.decode_wait_status(wstatus)
            if pid == self.status.pid:
                self._close_notify()
                self.feed(Event(Ev.EXITED, code=code, sig=sig, strays=bool(self.strays())))
            elif pid == self.finish_pid:
                self.finish_pid = None
                self.feed(Event(Ev.FINISH_EXITED, code=code if code is not None else 256 + sig,
                                strays=bool(self.strays())))
            elif pid == self.probe_pid:
                self.probe_pid = None
                if code == 0 and self.probing:
                    self.probing = False
                    self.feed(Event(Ev.READY))
                elif self.probing:
                    self.probe_next = time.monotonic() + self.spec.ready_interval
            # else: a stray (adopted orphan) exited; nothing to record.
        if self.status.state is State.STOPPING and self.status.pid is None:
            left = self.strays()
            if not left:
                self.feed(Event(Ev.STRAYS_GONE))
            elif self.escalated:
                for p in left:  # new ones may have forked before the first SIGKILL landed
                    osutil.kill_quietly(p, SIGKILL)

    def read_notify(self) -> None:
        try:
            data = os.read(self.notify_fd, 4096)
        except BlockingIOError:
            return
        if not data:
            self._close_notify()
            return
        if b"\n" in data:
            self._close_notify()  # s6: one line is the whole protocol
            self.feed(Event(Ev.READY))

    def _close_notify(self) -> None:
        if self.notify_fd is not None:
            self.sel.unregister(self.notify_fd)
            os.close(self.notify_fd)
            self.notify_fd = None

    # --- effects out ---------------------------------------------------------------------

    def carry_out(self, effect) -> None:
        if isinstance(effect, Spawn):
            self.spawn_run()
        elif isinstance(effect, Kill):
            self.kill(effect.sig, effect.scope)
        elif isinstance(effect, RunFinish):
            self.run_finish(effect.exit_arg, effect.sig)
        elif isinstance(effect, KillFinish):
            if self.finish_pid is not None:
                osutil.killpg_quietly(self.finish_pid, SIGKILL)
        elif isinstance(effect, StartProbe):
            self.probing = True
            self.start_probe()
        elif isinstance(effect, StopProbe):
            self.probing = False
            self.probe_next = None
            if self.probe_pid is not None:
                osutil.killpg_quietly(self.probe_pid, SIGKILL)

    def _fds(self) -> "dict[int, int]":
        """The fds every process of the service gets (run, finish, the probe): its fd ->
        ours, stdin /dev/null. The one place they are chosen; run adds a logger's stdin
        and its notification pipe."""
        return {0: self.devnull, 1: self.stdio.stdout, 2: self.stdio.stderr}

    def _spawn(self, argv, fds, cwd=None) -> int:
        s = self.spec
        return osutil.spawn(
            argv, cwd=cwd or s.path, env=self.env, fds=fds, session=True,
            uid=s.uid, gid=s.gid, groups=s.groups, oom_score_adj=s.oom_score_adj,
            signals_clean=True,  # monitor_main made them so
        )

    def spawn_run(self) -> None:
        self.escalated = False
        self._close_notify()
        fds = self._fds()
        if self.stdio.stdin is not None:
            fds[0] = self.stdio.stdin
        slot = self.spec.notification_fd
        if slot is not None:
            # The write end goes onto the slot's placeholder (monitor_main keeps the slot
            # for it): the child gets it at its own number.
            self.notify_fd, notify_w = os.pipe()
            os.set_blocking(self.notify_fd, False)
            self.sel.register(self.notify_fd, selectors.EVENT_READ, "notify")
            os.dup2(notify_w, slot, inheritable=False)
            os.close(notify_w)
            fds[slot] = slot
        try:
            pid = self._spawn([*self.spec.interpreter, self.spec.run], fds)
        except OSError as e:
            self._close_notify()
            self.report(event=Event(Ev.SPAWN_FAILED), error=f"fork: {e.strerror}")
            self.feed(Event(Ev.SPAWN_FAILED))
            return
        finally:
            if slot is not None:  # our copy of the write end goes: its EOF is the child's
                os.dup2(self.devnull, slot, inheritable=False)
        if _STOP_AFTER_SPAWN == self.spec.name:
            os.kill(os.getpid(), signal.SIGSTOP)
        # If we die before the core has this report, run is the core's child then: it
        # carries SVTREE_SERVICE=NAME, or, not exec'd yet, our PROCESS_NAME, and the
        # core ends it (core/leftovers.py).
        self.feed(Event(Ev.SPAWNED, pid=pid))

    def run_finish(self, exit_arg: int, sig: int) -> None:
        s = self.spec
        args = [str(exit_arg), str(sig), s.name, str(self.status.pgid or 0)]
        fds, memfd = self._fds(), None
        path, cwd = s.finish, s.path
        if not os.path.exists(s.finish) and self.finish_copy:
            # The directory is gone (removed by a reload): run the copy from a memfd,
            # handed to the child as fd 3 so the script's interpreter can open it.
            memfd = os.memfd_create("finish", 0)
            os.write(memfd, self.finish_copy)
            fds[3] = memfd
            path = "/proc/self/fd/3"
            if not os.path.isdir(cwd):
                cwd = "/"
        try:
            self.finish_pid = self._spawn([*s.interpreter, path, *args], fds, cwd=cwd)
        except OSError:
            self.finish_pid = None
            self.feed(Event(Ev.FINISH_EXITED, code=127))
        finally:
            if memfd is not None:
                os.close(memfd)

    def start_probe(self) -> None:
        if not self.probing or self.probe_pid is not None:
            return
        try:
            self.probe_pid = self._spawn(["/bin/sh", "-c", self.spec.ready_command], self._fds())
        except OSError:
            self.probe_next = time.monotonic() + self.spec.ready_interval

    def strays(self) -> "list[int]":
        helpers = (self.status.pid, self.finish_pid, self.probe_pid)
        return [p for p in osutil.children(os.getpid()) if p not in helpers]

    def _helpers_running(self) -> bool:
        return self.finish_pid is not None or self.probe_pid is not None

    def kill(self, sig: int, scope: str) -> None:
        st = self.status
        if scope == "main":
            if st.pid is not None:
                osutil.kill_quietly(st.pid, sig)
                if sig not in (SIGKILL, signal.SIGCONT):
                    osutil.kill_quietly(st.pid, signal.SIGCONT)
            return
        # "all": the process group, run itself, everything it left behind, and every
        # descendant of those (setsid daemons left the group but not our subtree).
        targets = []
        roots = ([st.pid] if st.pid is not None else []) + self.strays()
        for root in roots:
            targets.append(root)
            targets.extend(osutil.descendants(root))
        if st.pgid is not None:
            osutil.killpg_quietly(st.pgid, sig)
        for p in targets:
            osutil.kill_quietly(p, sig)
        if sig == SIGKILL:
            self.escalated = True
        elif sig != signal.SIGCONT:
            if st.pgid is not None:
                osutil.killpg_quietly(st.pgid, signal.SIGCONT)
            for p in targets:
                osutil.kill_quietly(p, signal.SIGCONT)

    # --- reports to the core ------------------------------------------------------------

    def report(self, event: "Event | None" = None, prev: "State | None" = None,
               force: bool = False, error: "str | None" = None) -> None:
        """Report the status if it changed (or if forced, or with an error)."""
        st = self.status
        carried = (st.state, st.want, st.pid, st.pgid, st.started_at, st.restarts, st.exit_code,
                   st.exit_signal, st.ready, st.gave_up, st.finish_code, st.last_uptime)
        if carried == self.reported and not force and error is None:
            return
        self.reported = carried
        self.seq += 1
        delay = None
        if st.state is State.BACKOFF and st.deadline is not None:
            delay = round(st.deadline - time.monotonic(), 3)
        report = Report(
            seq=self.seq, state=st.state, prev=st.state if prev is None else prev, want=st.want,
            pid=st.pid, pgid=st.pgid, started_at=st.started_at, restarts=st.restarts,
            exit_code=st.exit_code, exit_signal=st.exit_signal, ready=st.ready,
            gave_up=st.gave_up, finish_code=st.finish_code, last_uptime=st.last_uptime,
            delay=delay, event=None if event is None else event.kind, error=error,
        )
        if len(self.outbox) >= MAX_QUEUED_REPORTS:
            self.outbox.clear()  # the core is not reading: it gets the latest, and the gap
        self.outbox.append(encode(report))
        self.send_reports()

    def send_reports(self) -> None:
        while self.outbox:
            try:
                self.sock.send(self.outbox[0])
            except BlockingIOError:
                # The core is not reading (busy, or stopped): wait for room, keep going.
                if self.sel.get_key(self.sock).events != _READ_WRITE:
                    self.sel.modify(self.sock, _READ_WRITE, "core")
                return
            except OSError as e:
                if e.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                    raise
                self.outbox.clear()  # the core is gone
                break
            self.outbox.popleft()
        if self.sel.get_key(self.sock).events != _READ:
            self.sel.modify(self.sock, _READ, "core")


def _keep_slot(slot: int, channels: "tuple[int | None, ...]") -> "tuple[int | None, ...]":
    """Keep fd `slot` (the service's notification_fd) for run's end of the notification
    pipe: none of our own fds may take that number, so a placeholder holds it (the
    null device, close-on-exec). Returns `channels`, one that had the number moved."""
    moved = tuple(os.dup(fd) if fd == slot else fd for fd in channels)
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    if null != slot:
        os.dup2(null, slot, inheritable=False)  # (closes a channel that had the number)
        os.close(null)
    return moved


def monitor_main(spec, sock_fd: int, stdio: Stdio, env: "dict[str, str]",
                 first_seq: int = 1) -> None:
    """Entry point in the freshly forked child of the core. Never returns."""
    try:
        # Forked by the core with every signal blocked (osutil.fork_quiet).
        os.setsid()  # terminal signals (Ctrl-C) reach the core, not every monitor
        osutil.reset_signal_dispositions()
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        _signal.pthread_sigmask(_signal.SIG_SETMASK, osutil.ORIGINAL_SIGMASK)
        # Close everything the core had open except our own channels.
        osutil.close_fds_except({0, 1, 2, sock_fd, *stdio.fds()})
        if spec.notification_fd is not None:
            sock_fd, stdout, stderr, stdin = _keep_slot(
                spec.notification_fd, (sock_fd, stdio.stdout, stdio.stderr, stdio.stdin))
            stdio = Stdio(stdout, stderr, stdin)
        osutil.set_child_subreaper()
        osutil.set_process_name(PROCESS_NAME)
        sock = socket.socket(fileno=sock_fd)
        sock.setblocking(False)
        Monitor(spec, sock, stdio, env, first_seq).run()
    except BaseException:
        try:
            import traceback

            # Never blocks: a stalled stderr must not keep a dying monitor alive (the
            # core replaces it only once it has exited). What does not fit is dropped.
            osutil.write_nonblocking(
                2, f"svtree monitor {spec.name}: internal error\n{traceback.format_exc()}".encode())
        finally:
            os._exit(70)
    os._exit(0)
