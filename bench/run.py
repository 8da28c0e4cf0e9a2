#!/usr/bin/env python3
"""svtree against s6, runit, supervisord and tini, each as PID 1 of its own PID namespace.

    python3 bench/run.py [--quick] [--only svtree,s6,...] [--json FILE] [--out FILE]

Installs the peers from Debian's packages if they are missing (not with --only svtree),
says which versions it uses, runs every figure for every system in one go (rounds
interleave the systems, so background noise spreads over all of them), prints one
markdown table per figure with svtree's ratio to each row, and writes the same to
bench/results.md (--quick: bench/results-quick.md). Exit 0 when every experiment ran.

svtree's main row is svtree as users run it, with its file watcher (the default); the
`svtree --no-watch` row beside it shows what the watcher costs.

Figures (figures.py: one object each, which measures and renders): 1 memory per service,
2 total memory with 10 and 100 services, 3 boot of 1, 10 and 100 services, 4 restart
after SIGKILL, 5 ctl restart and 5b status round trip, 6 shutdown of 100 services, 7
shutdown of services that ignore SIGTERM, 8 10,000 orphans, 9 idle context switches, 10
file write until a new service runs (reload); then issue 18's table of targets.

An experiment (below) is one namespace: it starts a system with a tree of services and
hands the running namespace to the figures it serves. Times come from the kernel's
process events (procevents.py); service trees live on a tmpfs (/dev/shm, or a tmpfs
mounted for the run), dated an hour back as in an image (systems.py says why). Every
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
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import figures as F  # noqa: E402
import systems as S  # noqa: E402

PEER_PACKAGES = ("s6", "runit", "supervisor", "tini")
DPKG_OF = {"s6": "s6", "runit": "runit", "supervisord": "supervisor", "tini": "tini"}


# --- settings --------------------------------------------------------------------------

class Config:
    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.n_small = 10  # services for figures 1, 2 (first half), 4, 5, 7, 9
        self.n_boot = 10 if quick else 100  # services for figures 2 (second half), 3 and 6
        self.runs_small = 1 if quick else 3  # N=10 namespaces per row
        self.runs_boot = 1 if quick else 5  # boot of 1; boot, memory and shutdown of N=100
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


# --- the experiments -------------------------------------------------------------------

class Bench:
    def __init__(self, cfg: Config, names: "list[str]", base: str, maker: "list[str]") -> None:
        self.cfg = cfg
        self.names = names
        self.base = base
        self.maker = maker
        self.errors: "list[str]" = []
        self.memory = F.MonitorMemory(cfg)
        self.total = F.TotalMemory(cfg)
        self.boot = F.Boot(cfg)
        self.kill = F.RestartAfterKill(cfg)
        self.ctl = F.CtlRestart(cfg)
        self.status = F.Status(cfg)
        self.shutdown = F.Shutdown(cfg, "6", "shutdown", cfg.n_boot, ignoring=False)
        self.ignore = F.Shutdown(cfg, "7", "shutdown_ignoring_term", cfg.n_small, ignoring=True)
        self.orphan = F.Orphans(cfg)
        self.idle = F.IdleSwitches(cfg)
        self.reload = F.Reload(cfg)
        self.figures = [self.memory, self.total, self.boot, self.kill, self.ctl, self.status,
                        self.shutdown, self.ignore, self.orphan, self.idle, self.reload]
        for fig in self.figures:
            fig.systems = tuple(names)

    def rows(self, *wanted: str) -> "list[str]":
        return S.rows(self.names, *wanted)

    def work(self, tag: str) -> str:
        safe = "".join(c if c.isalnum() else "-" for c in tag)  # a row's name has spaces, ( and )
        return tempfile.mkdtemp(prefix=f"{safe}-", dir=self.base)

    def attempt(self, what: str, seconds: float, fn, *args):
        """Run one experiment under a hard timeout; whatever happens, kill its namespaces
        and delete its files. Returns what fn returned (None when it failed)."""
        before = set(os.listdir(self.base))
        print(f"  {what} ...", end="", flush=True)
        t0 = time.monotonic()
        try:
            with hard_timeout(seconds):
                got = fn(*args)
            print(f" {time.monotonic() - t0:.1f} s", flush=True)
            return got
        except Exception as e:
            self.errors.append(f"{what}: {e}")
            print(f" FAILED: {e}", flush=True)
            return None
        finally:
            kill_everything()
            for d in set(os.listdir(self.base)) - before:
                shutil.rmtree(os.path.join(self.base, d), ignore_errors=True)

    def launch(self, row: str, services: "dict[str, str]", events: bool = True, **settings) -> S.Instance:
        system = S.of_row(row)
        work = self.work(row)
        system.prepare(work, services, **settings)
        return system.start(work, events)

    def services(self, n: int, run: str = S.RUN_SLEEP) -> "dict[str, str]":
        return {name: run for name in S.service_names(n)}

    # figures 1, 2 (10), 3 (10), 4, 5, 9: one namespace with 10 services ---------------------

    def small(self, row: str, first_round: bool) -> None:
        cfg = self.cfg
        inst = self.launch(row, self.services(cfg.n_small))
        self.boot.measure(row, inst, cfg.n_small, "boot10", 30)
        time.sleep(cfg.settle)
        snap = F.Snapshot(inst)
        self.memory.measure(row, inst.system, snap, cfg.n_small)
        self.total.measure(row, snap, "10")
        if first_round:
            self.idle.measure(row, inst)
        if not inst.system.can_restart:
            return
        names = iter(S.service_names(cfg.n_small))
        for _ in range(cfg.kills):
            self.kill.measure(row, inst, next(names))
            time.sleep(0.2)
        # svtree's client also runs with `python -S`: this machine's site-packages hold a
        # .pth that imports certifi into every interpreter; -S shows svtree without it.
        system = inst.system
        clients = [(row, ())] + ([("svtree -S", ("-S",))] if row == "svtree" else [])
        for client, flags in clients:
            for _ in range(cfg.restarts):
                self.ctl.measure(client, inst, next(names), flags)
                time.sleep(0.3)
        first = S.service_names(1)[0]
        for client, flags in clients:
            cmd = system.status_cmd(first, flags) if flags else system.status_cmd(first)
            how = " ".join(["python3", *flags, "-m svtree ctl status"]) if flags else system.status_how
            for _ in range(cfg.status_reps):
                self.status.measure(client, system, cmd, how)
        if row == "svtree":
            for _ in range(cfg.socket_reps):
                self.status.measure_socket(system.socket)
            for floor, flags in (("python", ()), ("python -S", ("-S",))):
                for _ in range(cfg.status_reps):
                    self.status.measure_floor(floor, flags)

    def restart_only(self, row: str) -> None:
        """Figure 4 alone (s6 with notification-fd)."""
        cfg = self.cfg
        inst = self.launch(row, self.services(cfg.n_small))
        inst.wait_services(cfg.n_small, 30)
        time.sleep(max(cfg.settle, 2.2))  # up > 2 s, and ready > 1 s ago
        for name in S.service_names(cfg.kills):
            self.kill.measure(row, inst, name)
            time.sleep(0.2)

    def empty(self, row: str) -> None:
        """Figure 1's baseline: the same system with no service at all."""
        inst = self.launch(row, {}, events=False)
        time.sleep(self.cfg.settle + (0.2 if self.cfg.quick else 0.5))
        if inst.exited():
            raise RuntimeError(f"{row} exited with no service ({inst.tail()})")
        self.memory.measure(row, inst.system, F.Snapshot(inst), 0)

    def boot_one(self, row: str) -> None:
        inst = self.launch(row, self.services(1))
        self.boot.measure(row, inst, 1, "boot1", 30)

    # figures 2 (100), 3 (100) and 6: boot N services, read their memory, shut them down ---

    def boot_shutdown(self, row: str, shutdown: bool = True) -> bool:
        """False when the shutdown hit the cap (a system that never ended once is not made
        to hit it again: `shutdown` false then)."""
        cfg = self.cfg
        inst = self.launch(row, self.services(cfg.n_boot))
        same = "runit" if row.startswith("runit") else row  # runit's two shutdowns boot alike
        self.boot.measure(same, inst, cfg.n_boot, "boot100", 60)
        time.sleep(cfg.settle)
        self.total.measure(same, F.Snapshot(inst), "100")
        if not shutdown:
            return True
        return self.shutdown.measure(row, inst, cfg.cap_shutdown)

    def ignore_term(self, row: str) -> bool:
        cfg = self.cfg
        inst = self.launch(row, self.services(cfg.n_small, S.RUN_IGNORE_TERM),
                           stop_timeout=cfg.stop_timeout, kill_grace=cfg.kill_grace)
        inst.wait_services(cfg.n_small, 30)
        time.sleep(1.0)
        return self.ignore.measure(row, inst, cfg.cap_ignore)

    def orphans(self, row: str) -> bool:
        """False when zombies were still there at the cap."""
        cfg = self.cfg
        work = self.work(f"orphans-{row}")
        marker = os.path.join(work, "marker")
        run = ("#!/bin/sh\nsleep 0.5\n" + " ".join(self.maker) + f" {cfg.orphans} {marker}\n"
               f"exec sleep {S.SLEEP_ARG}\n")
        system = S.of_row(row)
        system.prepare(work, {"orphans": run})
        # No process events here: 20,000 forks and exits are not worth the bench's CPU.
        return self.orphan.measure(row, system.start(work, events=False), marker)

    # figure 10: file write until a new service runs --------------------------------------

    def reload_watch(self) -> None:
        """svtree with the watcher: rename a new service directory into the tree."""
        cfg = self.cfg
        inst = self.launch("svtree", self.services(cfg.n_small))
        inst.wait_services(cfg.n_small, 30)
        time.sleep(2.0)  # the watcher has set its watches and the core has done its first reload
        self.reload.text("svtree", "how", "rename a new service directory into the tree")
        for i in range(cfg.reload_samples):
            try:
                self.reload.measure("svtree", inst, f"new{i:02d}", 5.0 if i == 0 else 10.0)
            except TimeoutError:
                if i == 0:
                    self.reload.note("svtree", "not available (no reload within 5 s of the write)")
                    return
                raise
            time.sleep(0.5)

    def reload_explicit(self, row: str) -> None:
        """svtree ctl reload, s6-svscanctl -a, or runsvdir's own scan, after the rename."""
        cfg = self.cfg
        inst = self.launch(row, self.services(cfg.n_small))
        inst.wait_services(cfg.n_small, 30)
        time.sleep(1.0)
        system = inst.system
        samples = cfg.reload_samples if row.startswith("svtree") else cfg.reload_peer_samples
        cmd, how = {
            "svtree --no-watch": (system.reload_cmd() if row.startswith("svtree") else None,
                                  "rename, then svtree ctl reload"),
            "s6": (["s6-svscanctl", "-a", system.svc], "rename, then s6-svscanctl -a"),
            "runit": (None, "rename; runsvdir's own scan (every 5 s, plus a 1 s sleep when the "
                            "directory changed in the second of the scan)"),
        }[row]
        self.reload.text(row, "how", how)
        for i in range(samples):
            self.reload.measure(row, inst, f"new{i:02d}", 15.0, cmd)
            time.sleep(0.3)


def run_all(bench: Bench) -> None:
    cfg, a, rows = bench.cfg, bench.attempt, bench.rows
    everyone = rows("svtree", "svtree --no-watch", "s6", "runit", "supervisord", "tini")
    print(f"bench: figures 1, 2, 4, 5, 9 ({cfg.runs_small} round(s) of {cfg.n_small} services)")
    for r in range(cfg.runs_small):
        for row in everyone:
            a(f"round {r + 1}: {row}, {cfg.n_small} services", 60 + cfg.idle, bench.small, row, r == 0)
            if row != "tini":
                a(f"round {r + 1}: {row}, no service", 30, bench.empty, row)
        for row in rows("s6 (notification-fd)"):
            a(f"round {r + 1}: {row}, restart only", 60, bench.restart_only, row)
    print(f"bench: figures 2, 3 and 6 ({cfg.runs_boot} round(s) of 1 and {cfg.n_boot} services)")
    shutdown_rows = rows("svtree", "svtree --no-watch", "s6", "runit (SIGHUP)", "runit (stage-3 way)",
                         "supervisord", "tini")
    capped: "set[str]" = set()
    for r in range(cfg.runs_boot):
        for row in everyone:
            a(f"round {r + 1}: {row}, 1 service", 40, bench.boot_one, row)
        for row in shutdown_rows:
            ok = a(f"round {r + 1}: {row}{' (boot only: its shutdown hit the cap)' if row in capped else ''}",
                   cfg.cap_shutdown + 90, bench.boot_shutdown, row, row not in capped)
            if ok is False:
                capped.add(row)
    print(f"bench: figure 7 ({cfg.runs_ignore} round(s); a row that hits the cap is not run again)")
    capped = set()
    for r in range(cfg.runs_ignore):
        for row in shutdown_rows:
            if row not in capped and a(f"round {r + 1}: {row}", cfg.cap_ignore + 60, bench.ignore_term, row) is False:
                capped.add(row)
    print(f"bench: figure 8 ({cfg.runs_orphans} round(s) of {cfg.orphans:,} orphans; "
          "a row still holding zombies at the cap is not run again)")
    capped = set()
    for r in range(cfg.runs_orphans):
        for row in rows("svtree", "s6", "runit", "supervisord", "tini"):
            if row not in capped and a(f"round {r + 1}: {row}", 90 + cfg.orphans / 100, bench.orphans, row) is False:
                capped.add(row)
    print("bench: figure 10 (reload)")
    if "svtree" in bench.names:
        a("svtree, watcher", 60 + cfg.reload_samples * 12, bench.reload_watch)
    for row in rows("svtree --no-watch", "runit", "s6"):
        n = cfg.reload_samples if row.startswith("svtree") else cfg.reload_peer_samples
        a(f"{row}, explicit", 60 + n * 16, bench.reload_explicit, row)


def render(bench: Bench) -> "tuple[str, dict]":
    out: "list[str]" = []
    data: dict = {}
    lines, data["summary"] = F.Summary({f.key: f for f in bench.figures}).render()
    out += lines
    for fig in bench.figures:
        lines, data[fig.key] = fig.render()
        out += lines
    return "\n".join(out) + "\n", data


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


# --- main ---------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="CI smoke test: N=10 everywhere, one repetition, short timeouts")
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
    try:
        S.ProcEvents().close()
    except RuntimeError as e:
        print(f"bench: {e}", file=sys.stderr)
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
            run_all(bench)
        except KeyboardInterrupt:
            print("\nbench: interrupted; killing every namespace", file=sys.stderr)
            kill_everything()
            return 130
    bench.errors.extend(f"{n}: not available" for n in missing)
    wall = time.monotonic() - started
    body, data = render(bench)
    head = header(args, cfg, vers, maker_how, wall, f"{load_before} before, {loadavg()} after")
    text = head + body
    if bench.errors:
        text += "\n### Experiments that did not complete\n\n" + "".join(f"- {e}\n" for e in bench.errors)
    print()
    print(text)
    out = args.out or os.path.join(HERE, "results-quick.md" if args.quick else "results.md")
    with open(out, "w") as f:
        f.write(text)
    print(f"bench: tables written to {os.path.relpath(out)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"quick": args.quick, "systems": names, "versions": vers, "figures": data,
                       "errors": bench.errors, "wall_seconds": wall}, f, indent=1, default=str)
    return 0 if not bench.errors else 1


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
        f"- services: `#!/bin/sh` + `exec sleep`; orphans made by {maker_how}; every tree dated an hour "
        "back (as in an image: runsvdir sleeps 1 s before scanning a directory changed this second)",
        "- times: the kernel's process events (exec of a service's `sleep`, exit of PID 1), "
        "CLOCK_MONOTONIC, against the bench's own clock when it acted",
        "- `svtree` is svtree as users run it, with its file watcher (the default); `svtree --no-watch` beside it",
        "- medians over the rounds; 'svtree ÷ row' below 1 means svtree is smaller/faster",
        "- versions: " + "; ".join(f"{k} {v}" for k, v in vers.items()),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        kill_everything()
