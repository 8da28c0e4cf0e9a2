"""The kernel's own clock for the timed figures: the process events connector.

Polling /proc for "the service runs" costs a core on a 2-core machine while the system
under test boots (a listing plus one read per process, every half millisecond), and it
sees a change only at its next look. The proc connector (netlink, CONFIG_PROC_EVENTS,
root only) instead sends one message per exec and per exit of every process of the
machine, stamped by the kernel with CLOCK_MONOTONIC (the clock of time.monotonic), and
the bench blocks on the socket in between. So a figure is the kernel's time of the exec
of the service's `sleep` (or of PID 1's exit) minus the bench's time of its own action,
whatever the load, and the bench takes no CPU from the system it measures.

Only exec and exit events are asked for (the filter Linux 6.6 added to the connector);
the socket buffer is raised to hold every event of an experiment, and losing one
(ENOBUFS) fails the experiment instead of skewing it. Processes are matched to the
namespace under test by their pid namespace (the inode of /proc/PID/ns/pid), read
when the event is handled.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import time

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
PROC_EVENT_FORK = 0x00000001
PROC_EVENT_EXEC = 0x00000002
PROC_EVENT_EXIT = 0x80000000
SO_RCVBUFFORCE = 33
RCVBUF = 32 << 20

_NLMSG = struct.Struct("IHHII")  # len, type, flags, seq, pid
_CNMSG = struct.Struct("IIIIHH")  # idx, val, seq, ack, len, flags
_HEAD = struct.Struct("IIQ")  # what, cpu, timestamp_ns
_EXEC = struct.Struct("II")  # pid, tgid
_EXIT = struct.Struct("IIII")  # pid, tgid, exit_code (a wait status), exit_signal
_FORK = struct.Struct("IIII")  # parent pid, parent tgid, child pid, child tgid
_EVENT_AT = _NLMSG.size + _CNMSG.size
_DATA_AT = _EVENT_AT + _HEAD.size


class EventsLost(RuntimeError):
    pass


class Unavailable(RuntimeError):
    pass


def _read(path: str) -> "str | None":
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace").strip()
    except OSError:
        return None


def ns_inode(pid: int) -> "int | None":
    try:
        return os.stat(f"/proc/{pid}/ns/pid").st_ino
    except OSError:
        return None


class Exec:
    __slots__ = ("t", "comm", "cwd")

    def __init__(self, t: float, comm: str, cwd: "str | None") -> None:
        self.t, self.comm, self.cwd = t, comm, cwd


class ProcEvents:
    """Exec and exit events of one PID namespace (set `ns_of` once its PID 1 exists)."""

    def __init__(self, forks: bool = False) -> None:
        """forks: also keep every fork in the namespace (bench/experiments' timelines)."""
        try:
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_CONNECTOR)
        except OSError as e:
            raise Unavailable(f"no process events connector ({e.strerror}): the bench needs "
                              "root and a kernel with CONFIG_PROC_EVENTS") from None
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
            self.sock.bind((0, CN_IDX_PROC))
            kinds = PROC_EVENT_EXEC | PROC_EVENT_EXIT | (PROC_EVENT_FORK if forks else 0)
            op = struct.pack("II", PROC_CN_MCAST_LISTEN, kinds)
            cn = _CNMSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(op), 0) + op
            self.sock.send(_NLMSG.pack(_NLMSG.size + len(cn), 3, 0, 0, 0) + cn)  # NLMSG_DONE
        except OSError as e:
            self.sock.close()
            raise Unavailable(f"cannot listen to process events ({e.strerror})") from None
        self.sock.setblocking(False)
        self.ns: "int | None" = None
        self.pid1: "int | None" = None
        self.execs: "dict[int, Exec]" = {}  # host pid -> its latest exec in the namespace
        self.exits: "dict[int, tuple[float, int]]" = {}  # host pid -> (time, wait status)
        self._pending: "list[tuple[int, int]]" = []  # execs seen before the namespace was known
        self.watched: "set[int]" = set()
        self.forks: "list[tuple[float, int, int]]" = []  # (time, parent, child): forks=True only
        self.log: "list[tuple[float, str, int]]" = []  # (time, "exec"|"exit", pid): forks=True only
        self._timeline = forks

    def watch(self, pid1: int) -> None:
        """From now on, keep the events of pid1's namespace."""
        self.pid1 = pid1
        self.ns = ns_inode(pid1)
        pending, self._pending = self._pending, []
        for pid, ts in pending:
            self._on_exec(pid, ts)

    def close(self) -> None:
        self.sock.close()

    # --- reading ---------------------------------------------------------------------------

    def pump(self, timeout: float = 0.0) -> None:
        """Handle every queued event, waiting up to `timeout` for the first."""
        if timeout > 0:
            select.select([self.sock], [], [], timeout)
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    raise EventsLost("process events were lost (socket buffer full)") from None
                raise
            if len(data) < _DATA_AT:
                continue
            what, _cpu, ts = _HEAD.unpack_from(data, _EVENT_AT)
            if what == PROC_EVENT_EXEC:
                pid, tgid = _EXEC.unpack_from(data, _DATA_AT)
                if pid == tgid:
                    if self.ns is None:
                        self._pending.append((pid, ts))
                    else:
                        self._on_exec(pid, ts)
            elif what == PROC_EVENT_FORK:
                _ppid, ptgid, pid, tgid = _FORK.unpack_from(data, _DATA_AT)
                if pid == tgid and self.ns is not None and (ptgid in self.watched or ptgid in self.execs):
                    self.forks.append((ts / 1e9, ptgid, pid))
                    self.watched.add(pid)
            elif what == PROC_EVENT_EXIT:
                pid, tgid, code, _sig = _EXIT.unpack_from(data, _DATA_AT)
                if pid == tgid and (pid in self.execs or pid in self.watched or pid == self.pid1):
                    self.exits[pid] = (ts / 1e9, code)
                    if self._timeline:
                        self.log.append((ts / 1e9, "exit", pid))

    def watch_exits(self, pids) -> None:
        """Also keep the exits of these host pids (processes that never exec'd since the
        namespace was known: monitors, forked supervisors)."""
        self.watched.update(pids)

    def _on_exec(self, pid: int, ts: int) -> None:
        if ns_inode(pid) != self.ns:
            return  # another namespace's, or gone already (not a service: those stay)
        comm = _read(f"/proc/{pid}/comm")
        if comm is None:
            return
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            cwd = None
        # A pid execs twice (sh run, then sleep): the later event wins, and the comm read
        # now is that of the latest exec.
        self.execs[pid] = Exec(ts / 1e9, comm, cwd)
        self.exits.pop(pid, None)
        if self._timeline:
            self.log.append((ts / 1e9, "exec " + comm, pid))

    def wait(self, predicate, timeout: float, what: str):
        """Pump until predicate() returns something other than None; return it."""
        deadline = time.monotonic() + timeout
        while True:
            self.pump()
            got = predicate()
            if got is not None:
                self.pump()  # an exec that raced with the comm read overwrites its twin
                again = predicate()
                return again if again is not None else got
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{what}: not within {timeout:g} s")
            self.pump(min(left, 0.05))

    # --- questions -------------------------------------------------------------------------

    def running(self, comm: str) -> "dict[int, Exec]":
        """Processes of the namespace whose latest exec made them `comm` and that have not
        exited."""
        return {p: e for p, e in self.execs.items() if e.comm == comm and p not in self.exits}
