"""Ending what a dead monitor's service left behind, without reading /proc in PID 1.

Every service and what it starts carries SVTREE_SERVICE=NAME in its environment; when a
monitor dies, the processes its service left (a setsid daemon, a crashed run's child) are
re-parented to the core, and must not run unsupervised. Telling them apart from other
orphans means reading /proc/PID/environ, which takes the target's mmap lock: a process
stuck on a hung filesystem would hold the reader there. So a helper (core/helper.py)
reads them, with a deadline, and SIGKILLs the ones that match, with their descendants.

This is also what guarantees that no service runs unknown to the core when its monitor
dies at any instant, even while it starts one (no "go" pipe holds the child back):
  - before the child's exec, it is a copy of the monitor (forked, or vfork'd and still
    in the monitor's memory): its name is the monitor's (svtree.monitor.PROCESS_NAME),
    which nothing else of the core's children has; it is ended whatever its service;
  - once its exec has replaced the name, it carries the marker: the kernel sets the
    name (under the lock /proc/PID/environ takes) before the new environment, which is
    empty until the exec has laid it out. So the name is read first, then the
    environment; one found empty is read again until it is not, or the process is
    gone, or EXEC_WAIT has passed (a process started with no environment at all).

The candidates are the core's own children, listed by the core (its own /proc entry,
no other process's lock) and each pinned by a pidfd opened before the fork: a candidate
the core reaps meanwhile cannot be confused with a new process given the same pid, since
the helper signals through the pidfd and trusts an environ it read only if the process
was still alive after the read.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Callable

from svtree import osutil
from svtree.core.helper import Helper
from svtree.core.monitors import SERVICE_ENV
from svtree.monitor import PROCESS_NAME

DEADLINE = 5.0  # seconds; what is left is ended by the final sweep at the latest
NAME = b"svtree-leftover"
RETRY_DELAY = 1.0  # after a failed fork of the helper
EXEC_WAIT = 1.0  # seconds an empty environment is read again (an exec laying it out)


def _pidfd(pid: int) -> "int | None":
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # gone, or a kernel before 5.3: by pid, as kill(2)
        return None


def _signal(pid: int, pidfd: "int | None", sig: int) -> bool:
    try:
        if pidfd is None:
            os.kill(pid, sig)
        else:
            signal.pidfd_send_signal(pidfd, sig)
        return True
    except OSError:
        return False


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def _left_by_a_monitor(pid: int, marker: bytes) -> bool:
    """Whether `pid` is a dead monitor's child not exec'd yet, or carries `marker` (see
    the module's docstring for the order of the reads)."""
    until = time.monotonic() + EXEC_WAIT
    while True:
        if _read(f"/proc/{pid}/comm").rstrip(b"\n") == PROCESS_NAME:
            return True
        env = _read(f"/proc/{pid}/environ")
        if env:
            return marker in env.split(b"\0")
        if time.monotonic() > until or osutil.is_zombie(pid) or not os.path.exists(f"/proc/{pid}"):
            return False
        time.sleep(0.002)


def _end_marked(candidates: "list[tuple[int, int | None]]", marker: bytes) -> None:
    """In the helper: SIGKILL each candidate left by a monitor (`_left_by_a_monitor`),
    and its descendants (listed first: once it is dead they are re-parented and
    unlisted). A candidate is trusted only if it is still alive after the reads (its pid
    was not reused meanwhile: the pidfd says)."""
    for pid, pidfd in candidates:
        if not _left_by_a_monitor(pid, marker) or not _signal(pid, pidfd, 0):
            continue
        below = osutil.descendants(pid)
        _signal(pid, pidfd, signal.SIGKILL)
        for p in below:
            osutil.kill_quietly(p, signal.SIGKILL)


def end_leftovers(loop, watch, candidates: "list[int]", marker: bytes, log) -> bool:
    """Start a helper that ends the `candidates` (children of the core, none of them a
    known monitor, the main command or a helper) whose environment holds `marker`. The
    core does not wait for it (`watch`: the reaper's, who reaps it). False when it could
    not be started (fork failed)."""
    pinned = [(pid, _pidfd(pid)) for pid in candidates]
    fds = [fd for _, fd in pinned if fd is not None]

    def overran() -> None:
        log.warning("leftover_scan_slow", deadline=DEADLINE, candidates=len(candidates),
                    note="a process's /proc/PID/environ could not be read in time; the final "
                         "sweep ends what it missed")

    try:
        Helper(loop, watch, NAME, fds, lambda: _end_marked(pinned, marker), DEADLINE,
               on_overrun=overran)
        return True
    except OSError as e:
        log.warning("retry_later", what="end leftovers", error=e.strerror)
        return False
    finally:
        for fd in fds:
            os.close(fd)


class Leftovers:
    """Ends what a dead monitor's service left behind: the core's children (and their
    descendants) that carry SVTREE_SERVICE=NAME. Monitors, the main command, the watcher
    and helpers are known to the reaper (or are `main_pid()`) and never touched; a
    process that cleared its environment escapes this and is ended by the final sweep."""

    def __init__(self, loop, log, reaper, main_pid: "Callable[[], int | None]") -> None:
        self.loop = loop
        self.log = log
        self.reaper = reaper
        self.main_pid = main_pid

    def end(self, name: str, service_pid: "int | None" = None) -> None:
        """`service_pid`: the service's own process, just SIGKILLed, ours now."""
        known = self.reaper.known() | {self.main_pid()}
        candidates = [c for c in osutil.children(os.getpid()) if c not in known]
        if candidates and not end_leftovers(self.loop, self.reaper.watch, candidates,
                                            f"{SERVICE_ENV}={name}".encode(), self.log):
            self.loop.call_later(RETRY_DELAY, lambda: self.end(name))
        # What the service started in another session is re-parented to us only once the
        # service is dead, maybe after the helper looked: look again once it is reaped.
        if service_pid in candidates:

            def reaped(status: int) -> None:
                self.reaper.orphans_reaped += 1
                self.end(name)

            self.reaper.watch(service_pid, reaped)
