#!/usr/bin/env python3
"""What observability costs the core (PID 1): CPU per probe, memory of full log books.

    python3 bench/experiments/observability_cost.py [-n 100] [--probes 100] [--lines 1000] [--width 100]

1. CPU of the core per probe, median of --probes each, from the core's
   /proc/PID/schedstat (time on CPU, in ns) read before and after each probe:
   - `GET /readyz`, a new TCP connection each time (as the kubelet's httpGet probe);
   - `svtree ctl check`, a new process each time (as an exec probe): the core's share,
     and the probe process's own CPU (user + system, from the children's rusage).
   - `status` on the control socket from this process (no ctl process): with a sample
     of /proc taken for it (a second after the last) and with the sample reused.
   The tree is -n `exec sleep` services; nothing else talks to svtree meanwhile.
   --repo DIR runs the svtree of another checkout (main's, to compare).
2. The core's memory (USS = Private_Clean + Private_Dirty, and RSS, from
   /proc/PID/smaps_rollup) with -n services each holding a full log book (--lines lines
   of --width bytes, the default log_buffer), against the same tree whose services print
   nothing. Each run is svtree as PID 1 of `unshare --pid --fork --mount-proc`, the tree
   on /dev/shm.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from common import rollup_kb  # noqa: E402
from figures import status_over_socket  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Run:
    """svtree as PID 1 of its own PID namespace, on a tree of n services."""

    def __init__(self, n: int, run_script: str, http: bool, repo: str = REPO) -> None:
        self.root = tempfile.mkdtemp(prefix="obscost-", dir="/dev/shm")
        tree = os.path.join(self.root, "services.d")
        for i in range(n):
            d = os.path.join(tree, f"s{i:03d}")
            os.makedirs(d)
            with open(os.path.join(d, "run"), "w") as f:
                f.write(run_script)
            os.chmod(os.path.join(d, "run"), 0o755)
        self.socket = os.path.join(self.root, "sock")
        self.port = free_port() if http else None
        argv = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", sys.executable, "-m", "svtree",
                "run", "--dir", tree, "--socket", self.socket, "--no-watch",
                *(["--http", f"127.0.0.1:{self.port}"] if http else [])]
        self.env = dict(os.environ, PYTHONPATH=repo)
        self.out = open(os.path.join(self.root, "out"), "wb")
        self.proc = subprocess.Popen(argv, stdout=self.out, stderr=subprocess.STDOUT, env=self.env,
                                     start_new_session=True)
        self.pid1 = None
        try:
            self.pid1 = self._wait(self._child, "svtree to start")
            self._wait(lambda: os.path.exists(self.socket), "the control socket")
            r = self.ctl("wait", "--ready", "--timeout", "120", *[f"s{i:03d}" for i in range(n)])
            assert r.returncode == 0, r.stderr
        except BaseException:
            self.close()
            raise

    def _wait(self, fn, what: str, timeout: float = 120.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = fn()
            if v:
                return v
            time.sleep(0.02)
        raise SystemExit(f"timed out waiting for {what}")

    def _child(self) -> "int | None":
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                kids = f.read().split()
        except OSError:
            return None
        return int(kids[0]) if kids else None

    def ctl(self, *args) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "svtree", "ctl", "--socket", self.socket, *args],
                              capture_output=True, text=True, env=self.env, timeout=120)

    def cpu_ns(self) -> int:
        with open(f"/proc/{self.pid1}/schedstat") as f:
            return int(f.read().split()[0])

    def memory_kb(self) -> "tuple[int, int]":
        """(USS, RSS) of the core in kB."""
        f = rollup_kb(self.pid1)
        return f["Private_Clean"] + f["Private_Dirty"], f["Rss"]

    def close(self) -> None:
        if self.proc.poll() is None:
            # SIGKILL to the namespace's PID 1 makes the kernel kill the rest; before it
            # is known, to unshare (--kill-child takes its child along).
            try:
                os.kill(self.pid1 or self.proc.pid, 9)
            except ProcessLookupError:
                pass
            self.proc.wait(30)
        self.out.close()
        shutil.rmtree(self.root, ignore_errors=True)


def readyz(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /readyz HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    assert data.startswith(b"HTTP/1.1 200"), data[:100]


def settle() -> None:
    time.sleep(0.05)  # the core's share of the last probe (its close, its reap) is counted


def median_line(what: str, values: "list[float]", unit: str, scale: float) -> str:
    v = sorted(values)
    k = len(v)
    return (f"{what}, median of {k}: {statistics.median(v) * scale:.0f} {unit} "
            f"(p10 {v[k // 10] * scale:.0f}, p90 {v[k * 9 // 10] * scale:.0f})")


def status_costs(n: int, count: int, repo: str) -> None:
    run = Run(n, "#!/bin/sh\nexec sleep 100000\n", http=False, repo=repo)
    try:
        time.sleep(1.0)
        for label, pause in (("a new sample each", 1.1), ("the sample reused", 0.0)):
            cpu, wall = [], []
            status_over_socket(run.socket, resources=True)
            for _ in range(count):
                time.sleep(pause)
                before = run.cpu_ns()
                wall.append(status_over_socket(run.socket, resources=True))
                settle()
                cpu.append(run.cpu_ns() - before)
            print(median_line(f"core CPU per status ({label})", cpu, "us", 1e-3))
            print(median_line(f"status round trip ({label})", wall, "us", 1e6))
    finally:
        run.close()


def probe_costs(n: int, count: int) -> None:
    run = Run(n, "#!/bin/sh\nexec sleep 100000\n", http=True)
    try:
        time.sleep(1.0)
        http_ns = []
        for _ in range(count):
            before = run.cpu_ns()
            readyz(run.port)
            settle()
            http_ns.append(run.cpu_ns() - before)
        core_ns, own_s = [], []
        for _ in range(count):
            before, kids = run.cpu_ns(), resource.getrusage(resource.RUSAGE_CHILDREN)
            r = run.ctl("check")
            assert r.returncode == 0, r.stderr
            settle()
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            core_ns.append(run.cpu_ns() - before)
            own_s.append(after.ru_utime + after.ru_stime - kids.ru_utime - kids.ru_stime)
    finally:
        run.close()
    print(median_line("core CPU per GET /readyz (new connection)", http_ns, "us", 1e-3))
    print(median_line("core CPU per `svtree ctl check`", core_ns, "us", 1e-3))
    print(f"the ctl check process's own CPU, median of {count}: {statistics.median(own_s) * 1000:.1f} ms")


def memory_costs(n: int, lines: int, width: int) -> None:
    line = "x" * (width - 1)
    printing = (f"#!/bin/sh\nawk 'BEGIN {{ for (i = 0; i < {lines}; i++) print \"{line}\" }}'\n"
                "exec sleep 100000\n")
    results = {}
    for label, script in (("empty books", "#!/bin/sh\nexec sleep 100000\n"), ("full books", printing)):
        run = Run(n, script, http=False)
        try:
            if label == "full books":
                path = os.path.join(run.root, "out")
                run._wait(lambda: _count_lines(path) >= n * lines, "every line on svtree's stdout", 300)
            time.sleep(2.0)
            results[label] = run.memory_kb()
            if label == "full books":
                r = run.ctl("logs", "s000")
                held = len(r.stdout.splitlines())
                assert held == lines, held
        finally:
            run.close()
    (e_uss, e_rss), (f_uss, f_rss) = results["empty books"], results["full books"]
    print(f"core memory, {n} services, printing nothing: USS {e_uss} kB, RSS {e_rss} kB")
    print(f"core memory, {n} services x {lines} lines of {width} bytes held: USS {f_uss} kB, RSS {f_rss} kB "
          f"(+{f_uss - e_uss} kB USS; the lines themselves are {n * lines * width // 1024} kB)")


def _count_lines(path: str) -> int:
    with open(path, "rb") as f:
        return f.read().count(b"\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=100, help="services")
    ap.add_argument("--probes", type=int, default=100)
    ap.add_argument("--lines", type=int, default=1000, help="lines each service prints (log_buffer's default)")
    ap.add_argument("--width", type=int, default=100, help="bytes a line, its newline included")
    ap.add_argument("--repo", default=REPO, help="the checkout whose svtree runs (for --only status)")
    ap.add_argument("--only", choices=("probes", "status", "memory"))
    args = ap.parse_args()
    if args.only in (None, "probes"):
        probe_costs(args.n, args.probes)
    if args.only in (None, "status"):
        status_costs(args.n, min(args.probes, 30), args.repo)
    if args.only in (None, "memory"):
        memory_costs(args.n, args.lines, args.width)


if __name__ == "__main__":
    main()
