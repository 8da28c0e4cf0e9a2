"""The core's side of its monitors: forking one per service, commands out (queued while
the monitor's socket is full), reports in, a deadline for its exit after `exit`, and its
end (what it said before dying, its output pipes drained and closed).

The socket is SOCK_SEQPACKET: one message per datagram (svtree/messages.py). Nothing
here decides anything about a service: reports and exits go to the core's callbacks.
"""

from __future__ import annotations

import collections
import gc
import os
import signal
import socket
from typing import Callable

from svtree import osutil, wire
from svtree.core.output import Output, PrefixedPipe
from svtree.core.records import Service
from svtree.messages import Cmd, Command, MessageError, Report, decode_report, encode
from svtree.monitor import Stdio, monitor_main

MAX_QUEUED_COMMANDS = 64  # per monitor that does not read; then only what matters is kept
# A monitor told to `exit` has stop_timeout + finish_timeout to stop its service and
# run finish; one that has not exited this long after that (stopped, hung) is killed,
# with its service, so that shutdown and reload end in bounded time.
MONITOR_EXIT_GRACE = 2.0
SERVICE_ENV = "SVTREE_SERVICE"  # every service's environment holds SVTREE_SERVICE=NAME


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


class Monitors:
    """`on_report(svc, report)` for every report; `on_exit(svc, link, status)` once a
    monitor has been reaped (then `read_last_reports` and `unlink`)."""

    def __init__(self, loop, log, streams: Output, output: str,
                 watch: "Callable[[int, Callable[[int], None]], None]",
                 on_report: "Callable[[Service, Report], None]",
                 on_exit: "Callable[[Service, Link, int], None]") -> None:
        self.loop = loop
        self.log = log
        self.streams = streams
        self.output = output
        self.watch = watch  # the reaper's: who gets a pid's exit status
        self.on_report = on_report
        self.on_exit = on_exit
        self._base_env: "dict[str, str] | None" = None

    def service_env(self, spec) -> "dict[str, str]":
        """svtree's environment, the service's `environment`, and SVTREE_SERVICE=NAME
        (like supervisord's SUPERVISOR_PROCESS_NAME): what the service leaves behind
        carries it, which is how the core finds those processes if the monitor dies."""
        if self._base_env is None:
            self._base_env = dict(os.environ)
        env = dict(self._base_env)
        env.update(dict(spec.environment))
        env[SERVICE_ENV] = spec.name
        return env

    def fork(self, svc: Service, stdin: "int | None" = None, logged: "int | None" = None) -> Link:
        """Fork svc's monitor and link it; OSError (EAGAIN, EMFILE, ...) if it could not.
        `stdin`: a logger's, the read end of its pipe; `logged`: the write end of its
        logger's pipe, its stdout instead of a prefix pipe or svtree's stdout (both
        from core/pipelines.py, which keeps them)."""
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pipes: "list[tuple[int, int, int]]" = []  # (read end, write end, svtree's fd)
        try:
            targets = (1, 2) if logged is None else (2,)  # a logged stdout goes to the logger
            if self.output == "prefix":
                pipes = [(*os.pipe(), target) for target in targets]
            own = {target: w for _, w, target in pipes}
            stdio = Stdio(stdout=logged if logged is not None else own.get(1, 1),
                          stderr=own.get(2, 2), stdin=stdin)
            env = self.service_env(svc.spec)
            gc.freeze()  # keep the monitor's copy-on-write pages shared
            pid = osutil.fork_quiet()
        except OSError:
            parent.close()
            child.close()
            for r, w, _ in pipes:
                os.close(r)
                os.close(w)
            raise
        if pid == 0:
            # never returns; its reports go on from this record's last sequence number
            monitor_main(svc.spec, child.fileno(), stdio, env, svc.report.seq + 1)
        child.close()
        link = svc.link = Link(pid, parent)
        self.watch(pid, lambda status: self.on_exit(svc, link, status))
        parent.setblocking(False)
        self.loop.add_reader(parent, lambda: self._readable(svc, link))
        for r, w, target in pipes:
            os.close(w)
            link.pipes.append(self.streams.pipe(svc.name, r, target))
        return link

    # --- commands out -------------------------------------------------------------------

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
        keep = wants[-1:] + [m for m in link.outbox if m[0] in (Cmd.EXIT, Cmd.DRAIN)][:1]
        link.outbox = collections.deque(keep)

    def send_exit(self, svc: Service, drain: bool = False) -> None:
        """Tell the monitor to stop its service and exit (`drain`: a logger whose input
        is closed, which first gets stop_timeout to end by itself); kill it if it has
        not exited in time (a stopped or hung monitor must not hold shutdown or a
        reload)."""
        self.send(svc, Command(Cmd.DRAIN if drain else Cmd.EXIT))
        link = svc.link
        spec = svc.spec
        stops = 2 if drain else 1
        link.exit_timer = self.loop.call_later(
            stops * spec.stop_timeout + spec.finish_timeout + MONITOR_EXIT_GRACE,
            lambda: self._overdue(svc, link))

    def _overdue(self, svc: Service, link: Link) -> None:
        if svc.link is not link:
            return
        self.log.warning("monitor_stuck", service=svc.name, monitor=link.pid, service_pid=svc.report.pid)
        osutil.kill_quietly(link.pid, signal.SIGKILL)  # its exit then kills its service

    # --- reports in ---------------------------------------------------------------------

    def _readable(self, svc: Service, link: Link) -> None:
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
            self._take(svc, data)

    def _take(self, svc: Service, data: bytes) -> None:
        try:
            report = decode_report(data)
        except MessageError as e:  # a bug of the monitor's: said, never fatal
            self.log.error("internal_error", where=f"report of {svc.name}", error=str(e))
            return
        self.on_report(svc, report)

    # --- the end of a monitor -------------------------------------------------------------

    def read_last_reports(self, svc: Service, link: Link) -> None:
        """The monitor has exited: what it said before dying is still queued."""
        while True:
            try:
                data = link.sock.recv(wire.MAX_DATAGRAM, socket.MSG_DONTWAIT)
            except OSError:
                break
            if not data:
                break
            self._take(svc, data)

    def unlink(self, svc: Service, link: Link) -> None:
        """Forget the monitor's socket, queued commands and exit deadline."""
        if svc.link is link:
            svc.link = None
        self.loop.forget(link.sock)
        link.sock.close()
        link.outbox.clear()
        if link.exit_timer is not None:
            link.exit_timer.cancel()
            link.exit_timer = None

    @staticmethod
    def close_output(link: Link) -> None:
        """What the pipes hold now is read (bounded), then closed: after what the monitor
        ran was killed, so that a leftover writing faster than we read cannot keep us."""
        for pipe in link.pipes:
            pipe.drain_and_close()

    def run_ended(self, link: "Link | None", how: str) -> None:
        """run exited (`how`: "exit 1", "signal KILL"): its partial last line is flushed,
        and the log book told, once what it wrote is read."""
        if link is not None and link.pipes:
            self.streams.run_ended(link.pipes, how)
