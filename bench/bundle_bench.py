#!/usr/bin/env python3
"""The bundle against a pip install: `svtree ctl check` time and svtree's memory.

    python3 bench/bundle_bench.py --tarball dist/svtree-VERSION-linux-ARCH.tar.gz [--runs 100]

Unpacks the tarball and makes a venv with a plain (not editable) `pip install .` of this
repository, both under a temporary directory. For each, svtree runs 10 services
(`exec sleep`) with the watcher on, as PID 1 of `unshare --pid --fork --mount-proc
--kill-child`; then:

- memory: USS and PSS summed over every process svtree runs for itself (the core, its
  monitors, the watcher; the services are the same `sleep` for both and left out);
- `svtree ctl check` run RUNS times against each, the two interleaved: wall time and the
  CPU time of the client (user + system, from the children's rusage), median and p95.

Every namespace is killed by its PID 1 (SIGKILL) at the end, and on any error.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from procfs import NsProc, children  # noqa: E402

SERVICES = 10


def p95(values: "list[float]") -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


class Running:
    def __init__(self, label: str, exe: str, work: str) -> None:
        self.label = label
        self.exe = exe
        self.dir = os.path.join(work, f"tree-{label}")
        self.socket = os.path.join(work, f"{label}.sock")
        for i in range(SERVICES):
            d = os.path.join(self.dir, f"s{i:02d}")
            os.makedirs(d)
            with open(os.path.join(d, "run"), "w") as f:
                f.write("#!/bin/sh\nexec sleep 100000\n")
            os.chmod(os.path.join(d, "run"), 0o755)
        self.log = open(os.path.join(work, f"{label}.log"), "wb")
        self.proc = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
             exe, "run", "--dir", self.dir, "--socket", self.socket],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 20
        self.pid1 = None
        while self.pid1 is None and time.monotonic() < deadline:
            kids = children(self.proc.pid)
            self.pid1 = kids[0] if kids else None
            time.sleep(0.01)
        if self.pid1 is None:
            raise RuntimeError(f"{label}: svtree did not start")
        self.ns = NsProc(self.pid1)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while not os.path.exists(self.socket):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.label}: no control socket after 30 s")
            time.sleep(0.02)
        r = subprocess.run([self.exe, "ctl", "--socket", self.socket, "wait", "--ready", "--timeout", "30",
                            *[f"s{i:02d}" for i in range(SERVICES)]], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"{self.label}: {r.stderr.strip()}")
        with open(self.log.name, "rb") as f:
            deadline = time.monotonic() + 30
            while b"watcher_ready" not in f.read() and time.monotonic() < deadline:
                time.sleep(0.05)
                f.seek(0)

    def memory(self) -> "tuple[int, int, int]":
        """(USS kB, PSS kB, processes) of every process of svtree's own (not the services)."""
        pids = [p for p in self.ns.pids() if self.ns.comm(p) != "sleep"]
        return (sum(self.ns.uss_kb(p) or 0 for p in pids), sum(self.ns.pss_kb(p) or 0 for p in pids), len(pids))

    def check(self) -> "tuple[float, float]":
        """One `svtree ctl check`: (wall ms, CPU ms of the client)."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        r = subprocess.run([self.exe, "ctl", "--socket", self.socket, "check"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wall = time.monotonic() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if r.returncode != 0:
            raise RuntimeError(f"{self.label}: ctl check: {r.stderr.decode().strip()}")
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return wall * 1000, cpu * 1000

    def kill(self) -> None:
        if self.pid1 is not None:
            try:
                os.kill(self.pid1, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(10)
        self.log.close()


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/bundle_bench.py")
    parser.add_argument("--tarball", required=True)
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="svtree-bundle-bench-")
    running: "list[Running]" = []
    try:
        with tarfile.open(args.tarball) as tar:
            tar.extractall(work)
        bundled = os.path.join(work, "opt", "svtree", "bin", "svtree")
        venv = os.path.join(work, "venv")
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", "--disable-pip-version-check", REPO],
                       check=True)
        installed = os.path.join(venv, "bin", "svtree")
        # Pages of files written a moment ago are still dirty in the page cache, and smaps
        # counts them as the mapping process's Private_Dirty: write them back first.
        os.sync()
        for label, exe in (("bundle", bundled), ("pip", installed)):
            running.append(Running(label, exe, work))
        for r in running:
            r.wait_ready()
        time.sleep(2.0)  # settle
        print(f"memory of svtree's own processes with {SERVICES} services (core, monitors, watcher):")
        for r in running:
            uss, pss, n = r.memory()
            print(f"  {r.label:7} USS {uss / 1024:6.1f} MiB   PSS {pss / 1024:6.1f} MiB   ({n} processes)")
        times: "dict[str, list[tuple[float, float]]]" = {r.label: [] for r in running}
        for _ in range(args.runs):
            for r in running:
                times[r.label].append(r.check())
        print(f"svtree ctl check, {args.runs} runs each (interleaved):")
        for label, samples in times.items():
            wall = [w for w, _ in samples]
            cpu = [c for _, c in samples]
            print(f"  {label:7} wall median {statistics.median(wall):6.1f} ms  p95 {p95(wall):6.1f} ms   "
                  f"CPU median {statistics.median(cpu):6.1f} ms  p95 {p95(cpu):6.1f} ms")
        return 0
    finally:
        for r in running:
            r.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
