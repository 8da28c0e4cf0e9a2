#!/usr/bin/env python3
"""svtree against s6, runit, supervisord and tini, each as PID 1 of its own PID namespace.

    python3 bench/run.py [--quick] [--only svtree,s6,...] [--json FILE] [--out FILE]

Installs the peers from Debian's packages if they are missing (not with --only svtree),
says which versions it uses, runs every figure for every system in one go (rounds
interleave the systems, so background noise spreads over all of them), prints one
markdown table per figure with svtree's ratio to each system, and writes the same to
bench/results.md (--quick: bench/results-quick.md). Exit 0 when every experiment ran.

Figures: 1 USS per service, 2 total USS, 3 boot, 4 restart after SIGKILL, 5 ctl restart
and status round trip, 6 shutdown, 7 shutdown of services that ignore SIGTERM, 8 10,000
orphans, 9 idle context switches, 10 file write until a new service runs (reload).

Service trees live on a tmpfs (/dev/shm, or a tmpfs mounted for the run). Every
experiment has a hard timeout and kills its namespace by pid (SIGKILL to its PID 1);
unshare carries a parent-death signal, so nothing outlives the benchmark.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import systems as S  # noqa: E402

PEER_PACKAGES = ("s6", "runit", "supervisor", "tini")
DPKG_OF = {"s6": "s6", "runit": "runit", "supervisord": "supervisor", "tini": "tini"}


# --- settings --------------------------------------------------------------------------

class Config:
    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.n_small = 10  # services for figures 1, 2, 4, 5, 7, 9
        self.n_boot = 10 if quick else 100  # services for figures 3 and 6
        self.runs_small = 1 if quick else 3  # N=10 namespaces per system
        self.runs_boot = 1 if quick else 5  # N=100 boot + shutdown per system
        self.runs_ignore = 1 if quick else 3  # figure 7
        self.runs_orphans = 1 if quick else 2  # figure 8
        self.settle = 0.8 if quick else 2.5  # after every service runs, before measuring
        self.idle = 1.5 if quick else 10.0  # figure 9's window
        self.kills = 1 if quick else 3  # figure 4, per namespace
        self.restarts = 2 if quick else 3  # figure 5, per namespace (svtree: twice, with and without -S)
        self.status_reps = 3 if quick else 10
        self.socket_reps = 10 if quick else 50
        self.cap_ignore = 3.0 if quick else 20.0  # figure 7's hard cap
        self.cap_shutdown = 10.0 if quick else 30.0  # figure 6's
        self.settle_shutdown = 0.5 if quick else 1.5  # every service runs -> shutdown
        self.orphans = 2000 if quick else 10000
        self.orphans_clear_cap = 3.0 if quick else 10.0  # figure 8: zombies may stay this long
        self.reload_samples = 3 if quick else 20
        self.reload_peer_samples = 1 if quick else 5
        self.stop_timeout = 1.0  # figure 7: svtree stop_timeout, s6 timeout-kill, ...
        self.kill_grace = 0.5  # figure 7: svtree's kill_grace


# --- hard timeouts ---------------------------------------------------------------------

class ExperimentTimeout(Exception):
    pass


class hard_timeout:
    """SIGALRM raises in whatever the experiment is doing (a poll, a subprocess wait)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def _fire(self, signum, frame):
        raise ExperimentTimeout(f"hard timeout after {self.seconds:g} s")

    def __enter__(self):
        self.old = signal.signal(signal.SIGALRM, self._fire)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, *exc):
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self.old)
        return False


def kill_everything() -> None:
    for inst in list(S.LIVE):
        try:
            inst.kill()
        except Exception as e:  # keep killing the others
            print(f"bench: could not kill namespace {inst.pid1}: {e!r}", file=sys.stderr)


# --- results ---------------------------------------------------------------------------

class Results:
    def __init__(self) -> None:
        self.samples: "dict[tuple[str, str], list]" = {}
        self.notes: "dict[tuple[str, str], str]" = {}
        self.errors: "list[str]" = []

    def add(self, fig: str, label: str, value) -> None:
        self.samples.setdefault((fig, label), []).append(value)

    def note(self, fig: str, label: str, text: str) -> None:
        self.notes[(fig, label)] = text

    def get(self, fig: str, label: str) -> list:
        return self.samples.get((fig, label), [])

    def median(self, fig: str, label: str):
        vals = [v for v in self.get(fig, label) if v is not None]
        return statistics.median(vals) if vals else None


def ms(seconds: float) -> float:
    return seconds * 1000.0


# --- the experiments -------------------------------------------------------------------

class Bench:
    def __init__(self, cfg: Config, names: "list[str]", base: str, maker: "list[str]") -> None:
        self.cfg = cfg
        self.names = names
        self.base = base
        self.maker = maker
        self.res = Results()

    def work(self, tag: str) -> str:
        return tempfile.mkdtemp(prefix=f"{tag}-", dir=self.base)

    def attempt(self, what: str, seconds: float, fn, *args) -> None:
        """Run one experiment under a hard timeout; whatever happens, kill its namespaces
        and delete its files."""
        before = set(os.listdir(self.base))
        print(f"  {what} ...", end="", flush=True)
        t0 = time.monotonic()
        try:
            with hard_timeout(seconds):
                fn(*args)
            print(f" {time.monotonic() - t0:.1f} s", flush=True)
        except Exception as e:
            msg = f"{what}: {e}"
            self.res.errors.append(msg)
            print(f" FAILED: {e}", flush=True)
        finally:
            kill_everything()
            for d in set(os.listdir(self.base)) - before:
                shutil.rmtree(os.path.join(self.base, d), ignore_errors=True)

    def services(self, n: int, run: str = S.RUN_SLEEP) -> "dict[str, str]":
        return {name: run for name in S.service_names(n)}

    def run_cmd(self, system: S.System, cmd: "list[str]", timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, env=system.env(), timeout=timeout)

    # figures 1, 2, 4, 5, 9: one namespace with 10 services --------------------------------

    def small(self, name: str, run_index: int, variant: str = "") -> None:
        cfg, res = self.cfg, self.res
        system = S.Svtree("watch") if variant == "watch" else S.make(name)
        label = system.label if variant else name
        work = self.work(f"small-{system.name}")
        system.prepare(work, self.services(cfg.n_small))
        inst = system.start(work)
        t_up = inst.wait_services(cfg.n_small, 30)
        res.add("boot10", label, ms(t_up - inst.t_launch))
        time.sleep(cfg.settle)

        # 1, 2: private memory of every supervisor process
        pids = inst.supervisor_pids()
        uss = {p: inst.ns.uss_kb(p) for p in pids}
        res.add("2", label, sum(v for v in uss.values() if v))
        res.add("2pss", label, sum(inst.ns.pss_kb(p) or 0 for p in pids))
        res.note("2", label, f"{len(pids)} process(es)")
        if system.per_service_process and not variant:
            monitors = [uss[p] for p in pids if p != 1 and uss[p]]
            if monitors:
                res.add("1m", label, statistics.median(monitors))

        # 9: context switches over an idle window (the first round only)
        if run_index == 0:
            before = {p: inst.ns.ctxt(p) for p in pids}
            time.sleep(cfg.idle)
            after = {p: inst.ns.ctxt(p) for p in inst.supervisor_pids()}
            total = sum(after[p] - before[p] for p in after if before.get(p) is not None
                        and after[p] is not None)
            res.add("9", label, total)
            new = set(after) - set(before)
            if new:
                res.note("9", label, f"{len(new)} process(es) appeared during the window")
        if variant:
            return

        names = S.service_names(cfg.n_small)
        # 4: SIGKILL a service that has run > 2 s; time until its new process runs
        if system.can_restart:
            for i in range(cfg.kills):
                d = system.service_dir(names[i])
                sp = inst.service_pids()
                victim = next((p for p, c in sp.items() if c == d), None)
                if victim is None:
                    raise RuntimeError(f"no process of {names[i]} to kill")
                host = inst.ns.host_pids()[victim]
                t0 = time.monotonic()
                os.kill(host, signal.SIGKILL)
                t1 = inst.wait_new_service(set(sp), 10, d)
                res.add("4", label, ms(t1 - t0))
                time.sleep(0.2)

            # 5: ctl restart until the command returned and the new process runs. svtree's
            # client also runs with `python -S`: this machine's site-packages hold a .pth
            # that imports certifi into every interpreter; -S shows svtree without it.
            variants = [(label, ())] + ([("svtree-S", ("-S",))] if name == "svtree" else [])
            j = cfg.kills
            for row, flags in variants:
                for _ in range(cfg.restarts):
                    name_j = names[j]
                    j += 1
                    d = system.service_dir(name_j)
                    cmd = system.restart_cmd(name_j, flags) if flags else system.restart_cmd(name_j)
                    before_pids = set(inst.service_pids())
                    t0 = time.monotonic()
                    r = self.run_cmd(system, cmd)
                    t_ret = time.monotonic()
                    if r.returncode != 0:
                        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: "
                                           f"{r.stderr.decode(errors='replace').strip()[:200]}")
                    t_new = inst.wait_new_service(before_pids, 10, d)
                    res.add("5", row, ms(max(t_ret, t_new) - t0))
                    if t_new > t_ret:
                        res.add("5late", row, ms(t_new - t_ret))
                    time.sleep(0.3)

            # 5b: status round trip
            for row, flags in variants:
                for _ in range(cfg.status_reps):
                    cmd = system.status_cmd(names[0], flags) if flags else system.status_cmd(names[0])
                    t0 = time.monotonic()
                    r = self.run_cmd(system, cmd)
                    t1 = time.monotonic()
                    if r.returncode != 0:
                        raise RuntimeError(f"status: exit {r.returncode}: {r.stderr.decode(errors='replace')[:200]}")
                    res.add("5s", row, ms(t1 - t0))
            if name == "svtree":
                for _ in range(cfg.socket_reps):
                    res.add("5s", "svtree-socket", ms(socket_status(system.socket)))
                # The floor under any Python client here: the interpreter doing nothing.
                for row, flags in (("python", ()), ("python-S", ("-S",))):
                    for _ in range(cfg.status_reps):
                        t0 = time.monotonic()
                        subprocess.run([sys.executable, *flags, "-c", "pass"], check=True)
                        res.add("5s", row, ms(time.monotonic() - t0))

    def empty(self, name: str) -> None:
        """Figure 1's baseline: the same system with no service at all."""
        system = S.make(name)
        work = self.work(f"empty-{name}")
        system.prepare(work, {})
        inst = system.start(work)
        time.sleep(self.cfg.settle + (0.2 if self.cfg.quick else 0.5))
        if inst.exited():
            raise RuntimeError(f"{name} exited with no service ({inst.tail()})")
        pids = inst.supervisor_pids()
        self.res.add("0", name, sum(inst.ns.uss_kb(p) or 0 for p in pids))
        self.res.add("0pss", name, sum(inst.ns.pss_kb(p) or 0 for p in pids))

    # figures 3 and 6: boot N services, then shut them down ------------------------------

    def boot_shutdown(self, name: str, variant: str = "", shutdown: bool = True) -> bool:
        """Figure 3, then figure 6 unless `shutdown` is false (a system that never ended
        once is not made to hit the cap again). False when the shutdown was capped."""
        cfg, res = self.cfg, self.res
        system = S.Runit(variant) if name == "runit" else S.make(name)
        row = system.label if name == "runit" else name
        work = self.work(f"boot-{name}{variant}")
        system.prepare(work, self.services(cfg.n_boot))
        inst = system.start(work)
        t_up = inst.wait_services(cfg.n_boot, 60, poll=0.0005)
        res.add("3", name, ms(t_up - inst.t_launch))
        if not shutdown:
            return True
        time.sleep(cfg.settle_shutdown)
        took, left = self.shut_down(system, inst, cfg.cap_shutdown)
        if took is None:
            res.add("6", row, None)
            res.note("6", row, f"never ends (capped at {cfg.cap_shutdown:g} s; left: {left[0]}: {left[1]})")
            return False
        res.add("6", row, ms(took))
        res.add("6left", row, left)
        return True

    def shut_down(self, system: S.System, inst: S.Instance, cap: float):
        """Begin the system's shutdown; seconds until PID 1 exited (None: capped), and how
        many other processes the namespace still held at the last look before that (the
        kernel kills those when PID 1 exits)."""
        names: "dict[int, str]" = {}  # pid -> comm, read once per pid (they are gone later)

        def look(pids):
            for p in pids:
                if p not in names:
                    names[p] = inst.ns.comm(p) or "?"
            return [p for p in pids if p != 1]

        left = look(inst.ns.pids())
        t0 = time.monotonic()
        system.shutdown(inst)
        while True:
            pids = inst.ns.pids()
            # A look counts only if PID 1 had not begun to exit when it ended.
            if pids and not inst.pid1_exiting():
                left = look(pids)
            elapsed = time.monotonic() - t0
            # Look often at first (fast shutdowns), then every 5 ms (slow ones): the exit
            # itself is seen at once either way, through PID 1's pidfd.
            if inst.exited(0.0002 if elapsed < 2 else 0.005):
                return time.monotonic() - t0, self.describe(left, names)
            if elapsed > cap:
                return None, self.describe(left, names)

    @staticmethod
    def describe(pids: "list[int]", names: "dict[int, str]") -> "tuple[int, str]":
        """(12, 'runsv×2, sleep×10'): what the last look saw besides PID 1."""
        counts: "dict[str, int]" = {}
        for p in pids:
            counts[names.get(p, "?")] = counts.get(names.get(p, "?"), 0) + 1
        return len(pids), ", ".join(f"{k}×{v}" for k, v in sorted(counts.items()))

    # figure 7: services that ignore SIGTERM -----------------------------------------------

    def ignore_term(self, name: str, variant: str = "") -> bool:
        cfg, res = self.cfg, self.res
        system = S.Runit(variant) if name == "runit" else S.make(name)
        row = system.label if name == "runit" else name
        work = self.work(f"ignore-{name}{variant}")
        system.prepare(work, self.services(cfg.n_small, S.RUN_IGNORE_TERM),
                       stop_timeout=cfg.stop_timeout, kill_grace=cfg.kill_grace)
        inst = system.start(work)
        inst.wait_services(cfg.n_small, 30)
        time.sleep(1.0)
        took, left = self.shut_down(system, inst, cfg.cap_ignore)
        if took is None:
            res.add("7", row, None)
            res.note("7", row, f"never ends (capped at {cfg.cap_ignore:g} s; left: {left[0]}: {left[1]})")
            return False
        res.add("7", row, ms(took))
        res.add("7left", row, left)
        return True

    # figure 8: 10,000 orphans -------------------------------------------------------------

    def orphans(self, name: str) -> bool:
        """False when zombies were still there at the cap."""
        cfg, res = self.cfg, self.res
        system = S.make(name)
        work = self.work(f"orphans-{name}")
        marker = os.path.join(work, "marker")
        run = ("#!/bin/sh\nsleep 0.5\n" + " ".join(self.maker) + f" {cfg.orphans} {marker}\n"
               f"exec sleep {S.SLEEP_ARG}\n")
        system.prepare(work, {"orphans": run})
        inst = system.start(work)
        ns = inst.ns
        deadline = time.monotonic() + 60 + cfg.orphans / 200
        maker_pid = None
        t_end = None
        max_unreaped = 0
        clear_cap = cfg.orphans_clear_cap
        while True:
            if inst.exited():
                raise RuntimeError(f"PID 1 exited ({inst.tail()})")
            if maker_pid is None and os.path.exists(marker + ".start"):
                with open(marker + ".start") as f:
                    fields = f.read().split()
                maker_pid, t_start = int(fields[0]), float(fields[1])
            if t_end is None and os.path.exists(marker + ".end"):
                with open(marker + ".end") as f:
                    t_end = float(f.read())
            unreaped = 0
            makers = 0
            for p in ns.pids():
                st = ns.stat(p)
                if st is None:
                    continue
                comm, state, ppid = st
                if comm == "orphanmaker":
                    makers += 1
                # The maker's own child is a zombie for a moment until the maker reaps it:
                # that one is not an orphan. Every other zombie is the reaper's to reap.
                if state == "Z" and ppid != maker_pid:
                    unreaped += 1
            now = time.monotonic()
            max_unreaped = max(max_unreaped, unreaped)
            if t_end is not None and makers == 0 and unreaped == 0:
                res.add("8", name, ms(max(0.0, now - t_end)))
                res.add("8max", name, max_unreaped)
                res.add("8rate", name, cfg.orphans / (t_end - t_start))
                return True
            if t_end is not None and now - t_end > clear_cap:
                res.add("8", name, None)
                res.note("8", name, f"not clear {clear_cap:g} s after the maker ended "
                                    f"({unreaped} zombies left; capped)")
                res.add("8max", name, max_unreaped)
                res.add("8rate", name, cfg.orphans / (t_end - t_start))
                return False
            if now > deadline:
                raise TimeoutError(f"zombies still there after {deadline - inst.t_launch:.0f} s "
                                   f"({unreaped} unreaped, maker {'done' if t_end else 'running'})")
            time.sleep(0.0002)

    # figure 10: file write until a new service runs --------------------------------------

    def reload_watch(self) -> None:
        """svtree with the watcher: rename a new service directory into the tree."""
        cfg, res = self.cfg, self.res
        system = S.Svtree("watch")
        work = self.work("reload-watch")
        system.prepare(work, self.services(cfg.n_small))
        inst = system.start(work)
        inst.wait_services(cfg.n_small, 30)
        time.sleep(2.0)  # the watcher has set its watches and the core has done its first reload
        for i in range(cfg.reload_samples):
            try:
                took = self.add_service(system, inst, f"new{i:02d}", 5.0 if i == 0 else 10.0)
            except TimeoutError:
                if i == 0:
                    res.note("10", "svtree-watch", "not available (no reload within 5 s of the write)")
                    res.add("10", "svtree-watch", None)
                    return
                raise
            res.add("10", "svtree-watch", ms(took))
            time.sleep(0.5)

    def reload_explicit(self, name: str) -> None:
        """svtree ctl reload, s6-svscanctl -a, or runit's own 5 s poll, after the rename."""
        cfg, res = self.cfg, self.res
        system = S.make(name)
        work = self.work(f"reload-{name}")
        system.prepare(work, self.services(cfg.n_small))
        inst = system.start(work)
        inst.wait_services(cfg.n_small, 30)
        time.sleep(1.0)
        samples = cfg.reload_samples if name == "svtree" else cfg.reload_peer_samples
        for i in range(samples):
            if name == "svtree":
                cmd = system.reload_cmd()
            elif name == "s6":
                cmd = ["s6-svscanctl", "-a", system.svc]
            else:
                cmd = None
            res.add("10", name, ms(self.add_service(system, inst, f"new{i:02d}", 15.0, cmd)))
            time.sleep(0.3)

    def add_service(self, system, inst, new: str, timeout: float, cmd=None) -> float:
        staging = os.path.join(inst.work, "staging", new)
        S.write(os.path.join(staging, "run"), S.RUN_SLEEP, executable=True)
        target = os.path.join(system.svc, new)
        before = set(inst.service_pids())
        t0 = time.monotonic()
        os.rename(staging, target)  # one event, the whole service at once
        t_ret = t0
        if cmd is not None:
            r = self.run_cmd(system, cmd)
            t_ret = time.monotonic()
            if r.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.decode(errors='replace')[:200]}")
        t_new = inst.wait_new_service(before, timeout, target)
        return max(t_new, t_ret) - t0


def socket_status(path: str) -> float:
    """One `status` request on svtree's control socket, without starting an interpreter:
    what the core itself costs per request."""
    t0 = time.monotonic()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(path)
        s.sendall(json.dumps({"v": 1, "verb": "status", "names": []}).encode() + b"\n")
        buf = b""
        while b"\n" not in buf:
            data = s.recv(65536)
            if not data:
                break
            buf += data
    if not json.loads(buf).get("ok"):
        raise RuntimeError("status over the socket failed")
    return time.monotonic() - t0


# --- set-up: peers, tmpfs, the orphan maker ---------------------------------------------

def ensure_peers(wanted: "list[str]") -> "list[str]":
    """Install missing peers with apt-get (update once, then install). Returns the systems
    that are available afterwards."""
    peers = [n for n in wanted if n != "svtree"]
    missing = [n for n in peers if not S.make(n).available()]
    if missing:
        print(f"bench: installing {' '.join(PEER_PACKAGES)} (missing: {', '.join(missing)})", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        r = subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            # apt's sandbox user cannot write to a /tmp that is mode 0700 (seen here):
            # update again as root rather than give up.
            r = subprocess.run(["apt-get", "update", "-qq", "-o", "APT::Sandbox::User=root"],
                               env=env, capture_output=True, text=True, timeout=600)
        r = subprocess.run(["apt-get", "install", "-y", "-qq", *PEER_PACKAGES], env=env,
                           capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            print(f"bench: apt-get install failed: {r.stderr.strip()[-500:]}", file=sys.stderr)
    return [n for n in wanted if S.make(n).available()]


def versions(names: "list[str]", rev: "str | None") -> "dict[str, str]":
    out = {}
    for n in names:
        if n == "svtree":
            sys.path.insert(0, S.REPO)
            try:
                from svtree import __version__ as v
            except ImportError:
                v = "?"
            commit = subprocess.run(["git", "-C", S.REPO, "rev-parse", "--short", rev or "HEAD"],
                                    capture_output=True, text=True).stdout.strip()
            dirty = not rev and subprocess.run(["git", "-C", S.REPO, "status", "--porcelain", "svtree"],
                                               capture_output=True, text=True).stdout.strip()
            where = f"commit {commit or '?'}" + (", svtree/ of the working tree, modified" if dirty else "")
            out[n] = f"{v} ({where}; Python {platform.python_version()})"
        else:
            r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", DPKG_OF[n]],
                               capture_output=True, text=True)
            out[n] = f"{DPKG_OF[n]} {r.stdout.strip() or '?'} (Debian package)"
    return out


def is_tmpfs(path: str) -> bool:
    best, fstype = "", ""
    real = os.path.realpath(path)
    with open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            mnt = parts[1]
            if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                best, fstype = mnt, parts[2]
    return fstype == "tmpfs"


class Tmpfs:
    """A directory on a tmpfs: under /dev/shm when that is one, else a tmpfs mounted on a
    fresh temporary directory (and unmounted at the end)."""

    def __enter__(self) -> str:
        self.mounted = None
        if os.path.isdir("/dev/shm") and is_tmpfs("/dev/shm"):
            self.path = tempfile.mkdtemp(prefix="svtree-bench-", dir="/dev/shm")
        else:
            self.mounted = tempfile.mkdtemp(prefix="svtree-bench-")
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512m", "tmpfs", self.mounted], check=True)
            self.path = self.mounted
        return self.path

    def __exit__(self, *exc) -> None:
        kill_everything()
        if self.mounted:
            subprocess.run(["umount", "-l", self.mounted])
            os.rmdir(self.mounted)
        else:
            shutil.rmtree(self.path, ignore_errors=True)


def snapshot(base: str, rev: "str | None") -> None:
    """Run svtree from a byte-compiled copy on the tmpfs (of the working tree, or of a git
    revision): the numbers then belong to one version of the code even if the checkout
    changes during the run, and imports cost what they cost in an installed package (this
    environment sets PYTHONDONTWRITEBYTECODE, so the checkout itself has no .pyc files)."""
    src = os.path.join(base, "src")
    if rev:
        os.makedirs(src)
        archive = subprocess.run(["git", "-C", S.REPO, "archive", "--format=tar", rev, "svtree"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", src], input=archive, check=True)
    else:
        shutil.copytree(os.path.join(S.REPO, "svtree"), os.path.join(src, "svtree"),
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    subprocess.run([sys.executable, "-m", "compileall", "-q", os.path.join(src, "svtree")],
                   check=True, stdout=subprocess.DEVNULL)
    S.SVTREE_PATH[0] = src


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def orphan_maker(base: str) -> "tuple[list[str], str]":
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc:
        out = os.path.join(base, "orphanmaker")
        r = subprocess.run([cc, "-O2", "-o", out, os.path.join(HERE, "orphan_maker.c")],
                           capture_output=True, text=True, timeout=120)
        if r.returncode == 0:
            return [out], "orphan_maker.c (C)"
    return [sys.executable, os.path.join(HERE, "orphan_maker.py")], "orphan_maker.py (no C compiler)"


# --- tables ---------------------------------------------------------------------------

def fmt(v, digits: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    if abs(v) >= 100 or float(v).is_integer():
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def ratio(a, b) -> str:
    if a is None or b is None or isinstance(a, str) or isinstance(b, str):
        return "–"
    if b == 0:
        return "–" if a else "1.00"
    if b < 0 or a < 0:  # a difference lost in the noise (figure 1's deltas): no ratio
        return "–"
    return f"{a / b:.2f}"


def _numeric(text: str) -> bool:
    t = text.replace(",", "").replace(".", "").replace("–", "").replace(" kB", "").replace(" ms", "").strip()
    return t == "" or t.isdigit()


def table(header: "list[str]", rows: "list[list[str]]") -> "list[str]":
    """Markdown; a column is right-aligned when every cell in it is a number."""
    align = ["---:" if i and all(_numeric(r[i]) for r in rows) else "---" for i in range(len(header))]
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def describe_left(lefts: "list[tuple[int, str]]") -> str:
    """Processes seen at the last look before PID 1 began to exit, over the runs."""
    if not lefts:
        return "–"
    counts = [n for n, _ in lefts]
    if max(counts) == 0:
        return "0"
    most = max(lefts)
    spread = f" (runs: {min(counts)}–{max(counts)})" if len(counts) > 1 else ""
    return f"{statistics.median(counts):g}{spread}; most: {most[1]}"


def label_of(name: str) -> str:
    return {"svtree": "svtree", "s6": "s6 (s6-svscan + s6-supervise)", "runit": "runit (runsvdir + runsv)",
            "supervisord": "supervisord -n", "tini": "tini + sh script"}.get(name, name)


def render(bench: Bench, names: "list[str]", meta: dict) -> "tuple[str, dict]":
    cfg, res = bench.cfg, bench.res
    out: "list[str]" = []
    data: dict = {}
    med = res.median

    def n_of(fig, label):
        return len([v for v in res.get(fig, label) if v is not None])

    def cell(fig, label, unit_digits=1):
        vals = res.get(fig, label)
        if not vals:
            return res.notes.get((fig, label), "not run")
        if all(v is None for v in vals):
            return res.notes.get((fig, label), "–")
        return fmt(med(fig, label), unit_digits)

    def figure(key: str, title: str, header: "list[str]", rows: "list[list[str]]", values: dict) -> None:
        out.extend(["", f"### {title}", ""])
        out.extend(table(header, rows))
        data[key] = {"title": title, "values": values}

    peers = [n for n in names if n != "svtree"]

    # 1. USS per service
    rows, values = [], {}
    sv_delta = None
    deltas, pdeltas = {}, {}
    for n in names:
        if n == "tini":
            continue
        m0, m10 = med("0", n), med("2", n)
        deltas[n] = (m10 - m0) / cfg.n_small if m0 is not None and m10 is not None else None
        p0, p10 = med("0pss", n), med("2pss", n)
        pdeltas[n] = (p10 - p0) / cfg.n_small if p0 is not None and p10 is not None else None
    sv_delta, sv_mon, sv_pss = deltas.get("svtree"), med("1m", "svtree"), pdeltas.get("svtree")
    for n in names:
        if n == "tini":
            rows.append([label_of(n), "n/a (no supervisor per service)", "n/a", "n/a", "–", "–", "–"])
            continue
        mon = med("1m", n)
        rows.append([label_of(n), fmt(deltas[n]), fmt(mon) if mon is not None else "n/a (one process)",
                     fmt(pdeltas[n]), ratio(sv_delta, deltas[n]),
                     ratio(sv_mon, mon) if mon is not None else "–", ratio(sv_pss, pdeltas[n])])
        values[n] = {"per_service_kb": deltas[n], "per_monitor_kb": mon, "pss_per_service_kb": pdeltas[n]}
    figure("1", f"1. Memory per supervised service, supervisor processes only (kB; median of {cfg.runs_small})",
           ["system", f"USS: (with {cfg.n_small} − with 0) / {cfg.n_small}", "USS of one monitor process",
            f"PSS: (with {cfg.n_small} − with 0) / {cfg.n_small}",
            "svtree ÷ system (USS per service)", "svtree ÷ system (per monitor)", "svtree ÷ system (PSS)"],
           rows, values)

    # 2. total USS with 10 services
    rows, values = [], {}
    sv = med("2", "svtree")
    for label in names + (["svtree (watcher on)"] if "svtree" in names else []):
        v = med("2", label)
        if not res.get("2", label):
            continue
        rows.append([label_of(label), fmt(v), fmt(med("2pss", label)), res.notes.get(("2", label), ""),
                     ratio(sv, v)])
        values[label] = v
    figure("2", f"2. Total USS of the supervisor's own processes with {cfg.n_small} services (kB; median)",
           ["system", "USS (kB)", "PSS (kB)", "processes", "svtree ÷ system (USS)"], rows, values)

    # 3. boot
    rows, values = [], {}
    sv = med("3", "svtree")
    for n in names:
        rows.append([label_of(n), cell("3", n, 1), str(n_of("3", n)), ratio(sv, med("3", n))])
        values[n] = med("3", n)
    figure("3", f"3. Boot: launch until all {cfg.n_boot} services run (ms; median)",
           ["system", "ms", "runs", "svtree ÷ system"], rows, values)

    # 4. restart after SIGKILL
    rows, values = [], {}
    sv = med("4", "svtree")
    for n in names:
        if n == "tini":
            rows.append([label_of(n), "n/a (does not restart)", "–", "–"])
            continue
        rows.append([label_of(n), cell("4", n, 2), str(n_of("4", n)), ratio(sv, med("4", n))])
        values[n] = med("4", n)
    figure("4", "4. Restart after SIGKILL of a service up > 2 s: kill until its new process runs (ms; median)",
           ["system", "ms", "samples", "svtree ÷ system"], rows, values)

    # 5. ctl restart; 5b status round trip
    rows, values = [], {}
    sv = med("5", "svtree")
    for n in names:
        system = S.make(n)
        if not system.can_restart:
            rows.append([label_of(n), "n/a", "no restart command", "–", "–"])
            continue
        late = med("5late", n)
        rows.append([label_of(n), cell("5", n, 1), system.restart_how, str(n_of("5", n)),
                     ratio(sv, med("5", n))])
        values[n] = med("5", n)
        if late is not None:
            res.note("5", n, f"new process ran {late:.1f} ms after the command returned")
    if res.get("5", "svtree-S"):
        rows.insert(1, ["svtree, client run as `python -S`", cell("5", "svtree-S", 1),
                        "python3 -S -m svtree ctl restart NAME --wait (no site-packages .pth)",
                        str(n_of("5", "svtree-S")), ratio(sv, med("5", "svtree-S"))])
        values["svtree-S"] = med("5", "svtree-S")
    figure("5", "5. ctl restart until the command returned and the new process runs (ms; median)",
           ["system", "ms", "command", "samples", "svtree ÷ system"], rows, values)
    rows, values = [], {}
    sv = med("5s", "svtree")
    extra = {
        "svtree-S": ("svtree, client run as `python -S`", "python3 -S -m svtree ctl status"),
        "svtree-socket": ("svtree, the socket round trip alone (no interpreter start)",
                          "connect, one status request, reply, from the bench's own process"),
        "python": ("the interpreter alone (floor of any Python client here)", "python3 -c pass"),
        "python-S": ("the interpreter alone, without site", "python3 -S -c pass"),
    }
    for n in names[:1] + (list(extra) if "svtree" in names else []) + names[1:]:
        if n in extra:
            rows.append([extra[n][0], cell("5s", n, 2 if n == "svtree-socket" else 1), extra[n][1], str(n_of("5s", n)),
                         ratio(sv, med("5s", n)) if n == "svtree-S" else "–"])
            values[n] = med("5s", n)
            continue
        system = S.make(n)
        if not system.can_restart:
            continue
        rows.append([label_of(n), cell("5s", n, 1), system.status_how, str(n_of("5s", n)), ratio(sv, med("5s", n))])
        values[n] = med("5s", n)
    figure("5s", "5b. Status round trip: the status command alone (ms; median)",
           ["system", "ms", "command", "samples", "svtree ÷ system"], rows, values)

    # 6. shutdown of N services that exit on SIGTERM
    def shutdown_rows(fig: str, left_fig: str):
        rows, values = [], {}
        order = []
        for n in names:
            if n == "runit":
                order += [("runit (SIGHUP)", S.Runit("hup")), ("runit (stage-3 way)", S.Runit("stage3"))]
            else:
                order.append((n, S.make(n)))
        sv = med(fig, "svtree")
        for row, system in order:
            left = describe_left(res.get(left_fig, row))
            rows.append([label_of(row), cell(fig, row, 1), system.shutdown_how, left,
                         ratio(sv, med(fig, row))])
            values[row] = med(fig, row)
        return rows, values

    rows, values = shutdown_rows("6", "6left")
    figure("6", f"6. Shutdown of {cfg.n_boot} services that exit on SIGTERM: signal until PID 1 exited (ms; median)",
           ["system", "ms", "how", "processes left at the last look before PID 1 began to exit "
            "(median; the kernel kills them)", "svtree ÷ system"], rows, values)

    # 7. services that ignore SIGTERM
    rows, values = shutdown_rows("7", "7left")
    figure("7", f"7. Shutdown of {cfg.n_small} services that ignore SIGTERM, capped at {cfg.cap_ignore:g} s "
                f"(ms; median). Set: svtree stop_timeout = {cfg.stop_timeout:g}, kill_grace = {cfg.kill_grace:g}; "
                f"s6 timeout-kill = {int(cfg.stop_timeout * 1000)}; runit sv -w {cfg.stop_timeout:g} force-stop; "
                f"supervisord stopwaitsecs = {cfg.stop_timeout:g}; tini: nothing to set",
           ["system", "ms", "how", "processes left at the last look before PID 1 began to exit "
            "(median; the kernel kills them)", "svtree ÷ system"], rows, values)

    # 8. orphans
    rows, values = [], {}
    sv = med("8", "svtree")
    for n in names:
        most = max(res.get("8max", n), default=None)
        rows.append([label_of(n), cell("8", n, 2), fmt(most, 0), fmt(med("8rate", n)),
                     str(n_of("8", n)), ratio(sv, med("8", n))])
        values[n] = {"clear_ms": med("8", n), "max_unreaped": most}
    figure("8", f"8. {cfg.orphans:,} orphans: maker's end until no zombie is left (ms; median), "
                f"most unreaped zombies seen at once over all runs "
                f"(sampled every ~0.2-1 ms)",
           ["system", "ms", "max unreaped", "orphans made / s", "runs", "svtree ÷ system"], rows, values)

    # 9. idle context switches
    rows, values = [], {}
    sv = med("9", "svtree")
    for label in names + (["svtree (watcher on)"] if "svtree" in names else []):
        if not res.get("9", label):
            continue
        v = med("9", label)
        rows.append([label_of(label) + (" --no-watch" if label == "svtree" else ""), fmt(v),
                     res.notes.get(("9", label), ""), ratio(sv, v)])
        values[label] = v
    figure("9", f"9. Context switches of the supervisor's processes over {cfg.idle:g} s idle with "
                f"{cfg.n_small} services (voluntary + involuntary, every thread)",
           ["system", "switches", "note", "svtree ÷ system"], rows, values)

    # 10. reload
    rows, values = [], {}
    sv = med("10", "svtree-watch")
    reload_rows = []
    if "svtree" in names:
        reload_rows += [("svtree-watch", "svtree, watcher (default)", "rename a new service directory into the tree"),
                        ("svtree", "svtree --no-watch + ctl reload", "rename, then svtree ctl reload")]
    if "runit" in names:
        reload_rows.append(("runit", "runit (runsvdir)", "rename; runsvdir's own periodic scan"))
    if "s6" in names:
        reload_rows.append(("s6", "s6 (s6-svscan)", "rename, then s6-svscanctl -a"))
    for key, lab, how in reload_rows:
        rows.append([lab, cell("10", key, 1), how, str(n_of("10", key)), ratio(sv, med("10", key))])
        values[key] = med("10", key)
    figure("10", "10. File write until the new service runs (reload; ms; median)",
           ["system", "ms", "how", "samples", "svtree (watcher) ÷ system"], rows, values)

    # targets
    trows = []

    def target(fig, what, value, goal, ok):
        trows.append([fig, what, value, goal, "met" if ok is True else ("missed" if ok is False else "–")])

    v = sv_delta
    target("1", "USS per service (delta)", fmt(v) + " kB" if v is not None else "–", "≤ 900 kB",
           None if v is None else v <= 900)
    v = sv_mon
    target("1", "USS of one monitor", fmt(v) + " kB" if v is not None else "–", "≤ 900 kB",
           None if v is None else v <= 900)
    sv2, sd2 = med("2", "svtree"), med("2", "supervisord")
    target("2", "total USS, 10 services", fmt(sv2) + " kB" if sv2 is not None else "–",
           f"< supervisord ({fmt(sd2)} kB)" if sd2 is not None else "< supervisord",
           None if sv2 is None or sd2 is None else sv2 < sd2)
    sv2p, sd2p = med("2pss", "svtree"), med("2pss", "supervisord")
    if sv2p is not None and sd2p is not None:
        trows.append(["2", "total PSS, 10 services (for information)", fmt(sv2p) + " kB",
                      f"< supervisord ({fmt(sd2p)} kB)", "below" if sv2p < sd2p else "above"])
    for fig, key, what in (("3", "3", "boot"), ("4", "4", "restart after SIGKILL")):
        a, b = med(key, "svtree"), med(key, "runit")
        target(fig, what, fmt(a) + " ms" if a is not None else "–",
               f"≤ runit ({fmt(b)} ms)" if b is not None else "≤ runit",
               None if a is None or b is None else a <= b)
    a = med("5", "svtree")
    target("5", "ctl restart --wait", fmt(a) + " ms" if a is not None else "–", "≤ 30 ms",
           None if a is None else a <= 30)
    a = med("6", "svtree")
    for variant in ("runit (SIGHUP)", "runit (stage-3 way)"):
        b = med("6", variant)
        target("6", f"shutdown vs {variant}", fmt(a) + " ms" if a is not None else "–",
               f"≤ {variant} ({fmt(b)} ms)" if b is not None else f"≤ {variant}",
               None if a is None or b is None else a <= b)
    a, z = med("8", "svtree"), max(res.get("8max", "svtree"), default=None)
    target("8", "orphans: clear after maker ends", fmt(a) + " ms" if a is not None else "–", "≤ 1 ms",
           None if a is None else a <= 1)
    target("8", "orphans: most unreaped at once", fmt(z) if z is not None else "–", "≤ 50",
           None if z is None else z <= 50)
    out.extend(["", "### Targets (svtree)", ""])
    out.extend(table(["figure", "what", "svtree", "target", "verdict"], trows))
    data["targets"] = trows
    return "\n".join(out) + "\n", data


# --- main ---------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help=f"CI smoke test: N=10 everywhere, one repetition, short timeouts")
    p.add_argument("--only", default=",".join(S.ALL),
                   help=f"comma-separated systems to run, of: {', '.join(S.ALL)} (default: all)")
    p.add_argument("--rev", help="benchmark svtree/ as of this git revision (default: the working tree)")
    p.add_argument("--json", help="also write the figures as JSON to this file")
    p.add_argument("--out", help="markdown file (default bench/results.md; bench/results-quick.md with --quick)")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    bad = [n for n in names if n not in S.ALL]
    if bad or not names:
        p.error(f"--only: unknown system(s) {', '.join(bad) or '(none)'}; choose from {', '.join(S.ALL)}")
    args.names = [n for n in S.ALL if n in names]  # a fixed order
    return args


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        print("bench: needs root and unshare (util-linux) for PID namespaces", file=sys.stderr)
        return 2
    cfg = Config(args.quick)
    started = time.monotonic()
    names = ensure_peers(args.names)
    missing = [n for n in args.names if n not in names]
    vers = versions(names, args.rev)
    print("bench: systems and versions:")
    for n in names:
        print(f"  {n}: {vers[n]}")
    for n in missing:
        print(f"  {n}: NOT AVAILABLE (install failed), skipped")

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    load_before = loadavg()
    with Tmpfs() as base:
        snapshot(base, args.rev)
        maker, maker_how = orphan_maker(base)
        bench = Bench(cfg, names, base, maker)
        try:
            run_all(bench, names)
        except KeyboardInterrupt:
            print("\nbench: interrupted; killing every namespace", file=sys.stderr)
            kill_everything()
            return 130
    bench.res.errors.extend(f"{n}: not available" for n in missing)
    wall = time.monotonic() - started
    body, data = render(bench, names, {})
    head = header(args, cfg, vers, maker_how, wall, f"{load_before} before, {loadavg()} after")
    text = head + body
    if bench.res.errors:
        text += "\n### Experiments that did not complete\n\n" + "".join(f"- {e}\n" for e in bench.res.errors)
    print()
    print(text)
    out = args.out or os.path.join(HERE, "results-quick.md" if args.quick else "results.md")
    with open(out, "w") as f:
        f.write(text)
    print(f"bench: tables written to {os.path.relpath(out)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"quick": args.quick, "systems": names, "versions": vers, "figures": data,
                       "errors": bench.res.errors, "wall_seconds": wall}, f, indent=1, default=str)
    return 0 if not bench.res.errors else 1


def run_all(bench: Bench, names: "list[str]") -> None:
    cfg = bench.cfg
    a = bench.attempt
    small_cap = 60 + cfg.idle
    print(f"bench: figures 1, 2, 4, 5, 9 ({cfg.runs_small} round(s) of {cfg.n_small} services)")
    for r in range(cfg.runs_small):
        for n in names:
            a(f"round {r + 1}: {n}, {cfg.n_small} services", small_cap, bench.small, n, r)
            if n != "tini":
                a(f"round {r + 1}: {n}, no service", 30, bench.empty, n)
        if r == 0 and "svtree" in names:
            a("round 1: svtree with the watcher, 10 services", small_cap, bench.small, "svtree", 0, "watch")
    print(f"bench: figures 3 and 6 ({cfg.runs_boot} round(s) of {cfg.n_boot} services)")
    capped: "set[str]" = set()
    for r in range(cfg.runs_boot):
        for n in names:
            for variant in (("hup", "stage3") if n == "runit" else ("",)):
                key = n + variant
                box = []
                a(f"round {r + 1}: {n}{' ' + variant if variant else ''}"
                  f"{' (boot only: its shutdown hit the cap)' if key in capped else ''}",
                  cfg.cap_shutdown + 90,
                  lambda: box.append(bench.boot_shutdown(n, variant, key not in capped)))
                if box and box[0] is False:
                    capped.add(key)
    print(f"bench: figure 7 ({cfg.runs_ignore} round(s); a system that hits the cap is not run again)")
    capped = set()
    for r in range(cfg.runs_ignore):
        for n in names:
            for variant in (("hup", "stage3") if n == "runit" else ("",)):
                key = n + variant
                if key in capped:
                    continue
                box = []
                a(f"round {r + 1}: {n}{' ' + variant if variant else ''}", cfg.cap_ignore + 60,
                  lambda: box.append(bench.ignore_term(n, variant)))
                if box and box[0] is False:
                    capped.add(key)
    print(f"bench: figure 8 ({cfg.runs_orphans} round(s) of {cfg.orphans:,} orphans; "
          "a system still holding zombies at the cap is not run again)")
    capped = set()
    for r in range(cfg.runs_orphans):
        for n in names:
            if n in capped:
                continue
            box = []
            a(f"round {r + 1}: {n}", 90 + cfg.orphans / 100, lambda: box.append(bench.orphans(n)))
            if box and box[0] is False:
                capped.add(n)
    print("bench: figure 10 (reload)")
    if "svtree" in names:
        a("svtree, watcher", 60 + cfg.reload_samples * 12, bench.reload_watch)
        a("svtree, ctl reload", 60 + cfg.reload_samples * 16, bench.reload_explicit, "svtree")
    for n in ("runit", "s6"):
        if n in names:
            a(n, 60 + cfg.reload_peer_samples * 16, bench.reload_explicit, n)


def header(args, cfg: Config, vers: dict, maker_how: str, wall: float, load: str) -> str:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"## svtree benchmark{' (quick)' if cfg.quick else ''}",
        "",
        f"- command: `python3 bench/run.py {' '.join(sys.argv[1:])}`".rstrip(),
        f"- date: {now}; nproc: {os.cpu_count()}; kernel: {platform.release()}; CPU: {cpu}",
        f"- wall time: {wall:.0f} s; trees on tmpfs; every system is PID 1 of its own "
        "`unshare --pid --fork --mount-proc`",
        f"- load average (1, 5, 15 min): {load} (the machine is shared: other work may run meanwhile)",
        f"- svtree runs from a byte-compiled snapshot of {('git revision ' + args.rev) if args.rev else 'the working tree'}"
        " copied to the tmpfs at the start",
        f"- services: `#!/bin/sh` + `exec sleep`; orphans made by {maker_how}",
        "- medians over the rounds; 'svtree ÷ system' below 1 means svtree is smaller/faster",
        "- versions: " + "; ".join(f"{k} {v}" for k, v in vers.items()),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        kill_everything()
