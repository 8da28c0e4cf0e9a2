"""What the runner sees: the records the services wrote (Rec), facts from /proc (a
process's pid in the namespace, alive or not, which processes carry the example's
token), and the Observer, which notes from outside when TERM-ignoring mains die."""

from __future__ import annotations

import os
import select
import threading
import time
from dataclasses import dataclass

from harness import proc_status


@dataclass(frozen=True)
class Rec:
    kind: str
    name: str
    pid: int
    ts: int  # ns, CLOCK_REALTIME
    extra: str = ""


def parse_records(path: str) -> "list[Rec]":
    out = []
    with open(path, errors="replace") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 4 or not parts[2].isdigit() or not parts[3].isdigit():
                continue  # `date` could not run (EAGAIN): nothing to learn from the line
            out.append(Rec(parts[0], parts[1], int(parts[2]), int(parts[3]),
                           " ".join(parts[4:])))
    out.sort(key=lambda r: r.ts)
    return out


def now_ns() -> int:
    return time.time_ns()


def fmt_t(ts: "int | None", t0: int) -> str:
    return "-" if ts is None else f"{(ts - t0) / 1e9:+.3f}s"


def nspid_of(pid: int) -> "int | None":
    try:
        st_ = proc_status(pid)
    except OSError:
        return None
    v = st_.get("NSpid", "").split()
    return int(v[-1]) if v else None


def comm(pid: int) -> str:
    """A process's name (a monitor's child that has not exec'd yet has the monitor's)."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "gone"


def is_alive(pid: int) -> bool:
    try:
        return not proc_status(pid).get("State", "").startswith("Z")
    except OSError:
        return False


def token_pids(token: bytes) -> "list[int]":
    """Live processes whose environment carries the example's token."""
    out = []
    me = os.getpid()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue
        if token in env and is_alive(int(d)):
            out.append(int(d))
    return out


def poll(pred, timeout: float) -> bool:
    """Whether `pred()` became true within `timeout` seconds (checked every 50 ms)."""
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


class Observer(threading.Thread):
    """Tails the events file; for each start of a watched service finds the host pid,
    opens a pidfd and notes when the process dies (a pidfd polls readable at death).
    The time noted is an upper bound of the death (the thread may be late), which is the
    safe side for "SIGKILL came no earlier than stop_timeout"."""

    def __init__(self, run: "svfuzz.runner.Run", names: "set[str]") -> None:
        super().__init__(daemon=True)
        self.run_ = run
        self.names = names
        self.deaths: "dict[tuple[str, int], int]" = {}
        self.exited_at: "int | None" = None  # when svtree's process was seen gone
        self.halt = threading.Event()

    def run(self) -> None:
        pos, buf = 0, b""
        pending: "list[tuple[str, int, float]]" = []
        seen: "set[tuple[str, int]]" = set()
        fds: "dict[int, tuple[str, int]]" = {}
        poller = select.poll()
        try:
            while not self.halt.is_set():
                if self.exited_at is None and self.run_.sv.proc.poll() is not None:
                    self.exited_at = now_ns()
                try:
                    with open(self.run_.tree.events, "rb") as f:
                        f.seek(pos)
                        data = f.read()
                except OSError:
                    data = b""
                pos += len(data)
                buf += data
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    p = line.split()
                    first = len(p) >= 2 and (p[0] == b"start" or (p[0] == b"mhb" and p[1] == b"maind"))
                    key = (p[1].decode(), int(p[2])) if len(p) >= 3 and p[2].isdigit() else None
                    if first and key and key[0] in self.names and key not in seen:
                        seen.add(key)
                        pending.append((p[1].decode(), int(p[2]), time.monotonic() + 2.0))
                still = []
                for name, nspid, until in pending:
                    host = self.run_.host_pid(name, nspid)
                    if host is None:
                        if time.monotonic() < until:
                            still.append((name, nspid, until))
                        continue
                    try:
                        fd = os.pidfd_open(host)
                    except OSError:
                        continue
                    if self.run_.host_pid(name, nspid) != host:  # it died meanwhile
                        os.close(fd)
                        continue
                    fds[fd] = (name, nspid)
                    poller.register(fd, select.POLLIN)
                pending = still
                for fd, _ in poller.poll(20):
                    self.deaths[fds.pop(fd)] = now_ns()
                    poller.unregister(fd)
                    os.close(fd)
        finally:
            for fd in fds:
                os.close(fd)
