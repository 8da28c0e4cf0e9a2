"""What the benchmark reads from /proc: the processes of one PID namespace, their names,
states, private memory and context switches.

A system under test runs as PID 1 of `unshare --pid --fork --mount-proc`, which mounts a
proc of its own in a mount namespace of its own. `/proc/HOSTPID` + `/root` + `/proc` is that mount
seen from outside, so listing it lists exactly the namespace's processes (by their pids
inside it) in one getdents, without walking /proc/*/task/*/children.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo


# The same /proc walk svtree itself uses to find what a service left behind.
from svtree.osutil import children, descendants  # noqa: E402,F401


def _read(path: str) -> "bytes | None":
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:  # gone (ENOENT, ESRCH) or not readable: the process is no more
        return None


class NsProc:
    """The proc of the PID namespace whose PID 1 has host pid `pid1`."""

    def __init__(self, pid1: int) -> None:
        self.pid1 = pid1
        self.root = os.path.join(f"/proc/{pid1}", "root", "proc")

    def mounted(self) -> bool:
        """True once unshare has mounted the namespace's own proc (before that, the path
        still shows the host's, with every process of the machine in it)."""
        try:
            return os.stat(self.root).st_dev != os.stat("/proc").st_dev
        except OSError:
            return False

    def pids(self) -> "list[int]":
        try:
            return [int(d) for d in os.listdir(self.root) if d.isdigit()]
        except OSError:
            return []

    def comm(self, pid: int) -> "str | None":
        data = _read(f"{self.root}/{pid}/comm")
        return data.decode(errors="replace").strip() if data is not None else None

    def stat(self, pid: int) -> "tuple[str, str, int] | None":
        """(comm, state letter, ppid) from one read of /proc/PID/stat."""
        data = _read(f"{self.root}/{pid}/stat")
        if not data:
            return None
        lp, rp = data.find(b"("), data.rfind(b")")
        fields = data[rp + 2:].split()
        return data[lp + 1:rp].decode(errors="replace"), fields[0].decode(), int(fields[1])

    def cmdline(self, pid: int) -> "list[str]":
        data = _read(f"{self.root}/{pid}/cmdline")
        return data.decode(errors="replace").split("\0") if data else []

    def cwd(self, pid: int) -> "str | None":
        try:
            return os.readlink(f"{self.root}/{pid}/cwd")
        except OSError:
            return None

    def uss_kb(self, pid: int) -> "int | None":
        """Unique set size: the pages only this process maps (Private_Clean+Private_Dirty)."""
        data = _read(f"{self.root}/{pid}/smaps_rollup")
        if data is None:
            return None
        total = 0
        for line in data.decode().splitlines():
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
        return total

    def pss_kb(self, pid: int) -> "int | None":
        """Proportional set size: private pages plus a share of each shared page. Fairer
        than USS for a forking design, where pages the core shares with its monitors
        (copy-on-write) count for nobody in USS."""
        data = _read(f"{self.root}/{pid}/smaps_rollup")
        if data is None:
            return None
        for line in data.decode().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
        return None

    def ctxt(self, pid: int) -> "int | None":
        """Voluntary + involuntary context switches, summed over every thread."""
        try:
            tids = os.listdir(f"{self.root}/{pid}/task")
        except OSError:
            return None
        total = 0
        for tid in tids:
            data = _read(f"{self.root}/{pid}/task/{tid}/status")
            if data is None:
                continue
            for line in data.decode().splitlines():
                if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                    total += int(line.split()[1])
        return total

    def host_pids(self) -> "dict[int, int]":
        """{pid in the namespace: host pid}, from the host's NSpid lines (to signal them)."""
        out = {}
        for hp in [self.pid1, *descendants(self.pid1)]:
            data = _read(f"/proc/{hp}/status")
            if data is None:
                continue
            for line in data.decode().splitlines():
                if line.startswith("NSpid:"):
                    out[int(line.split()[-1])] = hp
                    break
        return out
