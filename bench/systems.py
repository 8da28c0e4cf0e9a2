"""The systems under test, each as PID 1 of its own PID namespace, with the same services.

Every service is the same `run` script (`exec sleep ...`, or one that ignores SIGTERM, or
the orphan maker) in DIR/NAME/run on a tmpfs. Each system gets its own copy of the tree and
its own way of being started, stopped and told to restart a service:

    svtree       python3 -m svtree run --dir DIR --socket SOCK --no-watch
    s6           s6-svscan DIR                 (one s6-supervise per service)
    runit        runsvdir DIR                  (one runsv per service)
    supervisord  supervisord -n -c CONF        (one [program:NAME] per service)
    tini         tini -- /bin/sh tini.sh       (the script starts every run in the
                                               background, forwards SIGTERM, waits)

An Instance is one namespace: `unshare --pid --fork --mount-proc --kill-child` with a
parent-death signal on unshare, so a benchmark killed by anything takes its namespaces
with it. Instance.kill() sends SIGKILL to the namespace's PID 1, which makes the kernel
kill everything else in it.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import subprocess
import sys
import time

from procfs import NsProc, children

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Where svtree is imported from: the repository, or (run.py) a compiled snapshot of it.
SVTREE_PATH = [REPO]
SLEEP_ARG = "100000"

RUN_SLEEP = f"#!/bin/sh\nexec sleep {SLEEP_ARG}\n"
RUN_IGNORE_TERM = f"#!/bin/sh\ntrap '' TERM\nexec sleep {SLEEP_ARG}\n"

LIVE: "set[Instance]" = set()  # every namespace still running: killed at exit


def _pdeathsig() -> None:
    """In unshare, before exec: die with the benchmark (unshare --kill-child then takes
    the namespace's PID 1 along)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


def write(path: str, text: str, executable: bool = False) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    if executable:
        os.chmod(path, 0o755)


def service_names(n: int) -> "list[str]":
    return [f"s{i:03d}" for i in range(n)]


class Instance:
    """One system running as PID 1 of a fresh PID namespace."""

    def __init__(self, system: "System", work: str, argv: "list[str]", env: "dict | None" = None) -> None:
        self.system = system
        self.work = work
        self.log_path = os.path.join(work, "output.log")
        self.log = open(self.log_path, "wb")
        self.t_launch = time.monotonic()
        self.proc = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", *argv],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            env=env or os.environ.copy(), cwd=work, start_new_session=True,
            preexec_fn=_pdeathsig,
        )
        LIVE.add(self)
        self.helpers: "list[subprocess.Popen]" = []  # commands run on its behalf (shutdown)
        self.pid1 = None
        self.pidfd = None
        deadline = time.monotonic() + 10
        while self.pid1 is None:
            kids = children(self.proc.pid)
            if kids:
                self.pid1 = kids[0]
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"{system.name}: unshare did not start ({self.tail()})")
            time.sleep(0.0002)
        self.pidfd = os.pidfd_open(self.pid1)
        self.ns = NsProc(self.pid1)
        while not self.ns.mounted():
            if self.exited() or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"{system.name}: namespace proc never mounted ({self.tail()})")
            time.sleep(0.0002)

    def exited(self, timeout: float = 0.0) -> bool:
        """True once PID 1 has exited (its pidfd turns readable; the kernel has by then
        killed and reaped every other process of the namespace)."""
        r, _, _ = select.select([self.pidfd], [], [], timeout)
        return bool(r)

    def pid1_exiting(self) -> bool:
        """PID 1 has begun to exit (PF_EXITING in its flags) or is gone: from then on the
        kernel, not the supervisor, kills what is left in the namespace."""
        try:
            with open(f"/proc/{self.pid1}/stat", "rb") as f:
                data = f.read()
        except OSError:
            return True
        fields = data[data.rfind(b")") + 2:].split()
        return fields[0] in (b"Z", b"X") or bool(int(fields[6]) & 0x4)  # flags: PF_EXITING

    def signal(self, sig: int) -> None:
        try:
            os.kill(self.pid1, sig)
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        if self.pid1 is not None:
            self.signal(signal.SIGKILL)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        for h in self.helpers:
            if h.poll() is None:
                h.kill()
            h.wait(10)
        self.helpers = []
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        if not self.log.closed:
            self.log.close()
        LIVE.discard(self)

    def tail(self, n: int = 400) -> str:
        try:
            self.log.flush()
            with open(self.log_path, "rb") as f:
                data = f.read()
        except (OSError, ValueError):
            return ""
        return data[-n:].decode(errors="replace").strip().replace("\n", " | ")

    # --- what runs in it -----------------------------------------------------------------

    def service_pids(self) -> "dict[int, str]":
        """{ns pid: cwd} of every `sleep` (a running service) in the namespace."""
        out = {}
        for p in self.ns.pids():
            if self.ns.comm(p) == "sleep":
                out[p] = self.ns.cwd(p) or ""
        return out

    def supervisor_pids(self) -> "list[int]":
        """Every process of the namespace that is not a service (`sleep`) nor a zombie."""
        out = []
        for p in self.ns.pids():
            st = self.ns.stat(p)
            if st is not None and st[0] != "sleep" and st[1] != "Z":
                out.append(p)
        return out

    def wait_services(self, n: int, timeout: float, poll: float = 0.0002) -> float:
        """Poll until n `sleep` processes run in the namespace; the monotonic time seen."""
        deadline = time.monotonic() + timeout
        confirmed: "set[int]" = set()
        while True:
            pids = self.ns.pids()
            alive = set(pids)
            confirmed &= alive
            for p in pids:
                if p not in confirmed and self.ns.comm(p) == "sleep":
                    confirmed.add(p)
            now = time.monotonic()
            if len(confirmed) >= n:
                return now
            if now > deadline:
                raise TimeoutError(f"{len(confirmed)} of {n} services running after {timeout:g} s "
                                   f"({self.tail()})")
            if self.exited():
                raise RuntimeError(f"PID 1 exited during boot ({self.tail()})")
            time.sleep(poll)

    def wait_new_service(self, before: "set[int]", timeout: float, cwd: "str | None" = None) -> float:
        """Tight poll until a `sleep` that is not in `before` runs (in `cwd` if given)."""
        deadline = time.monotonic() + timeout
        seen_other: "set[int]" = set()
        while True:
            for p in self.ns.pids():
                if p in before or p in seen_other:
                    continue
                if self.ns.comm(p) == "sleep":
                    if cwd is None or self.ns.cwd(p) == cwd:
                        return time.monotonic()
                    seen_other.add(p)
            if time.monotonic() > deadline:
                raise TimeoutError(f"no new service process within {timeout:g} s")


class System:
    """A supervision system: how to lay out its tree, start it, stop it, restart a service."""

    name = "?"
    label = "?"
    binaries: "tuple[str, ...]" = ()
    per_service_process = True  # one monitor process per service (svtree, s6-supervise, runsv)
    can_restart = True  # has a restart command and restarts a service that died

    def __init__(self, variant: str = "") -> None:
        self.variant = variant

    def available(self) -> bool:
        from shutil import which

        return all(which(b) for b in self.binaries)

    # layout ------------------------------------------------------------------------------
    def prepare(self, work: str, services: "dict[str, str]", *, stop_timeout: "float | None" = None,
                kill_grace: "float | None" = None) -> None:
        """Write the tree for these {name: run script} under work/."""
        self.svc = os.path.join(work, "svc")
        os.makedirs(self.svc, exist_ok=True)
        for name, run in services.items():
            write(os.path.join(self.svc, name, "run"), run, executable=True)
        self.names = list(services)

    def service_dir(self, name: str) -> str:
        return os.path.join(self.svc, name)

    def argv(self, work: str) -> "list[str]":
        raise NotImplementedError

    def env(self) -> "dict[str, str] | None":
        return None

    def start(self, work: str) -> Instance:
        return Instance(self, work, self.argv(work), self.env())

    # control -----------------------------------------------------------------------------
    def shutdown(self, inst: Instance) -> None:
        """Begin the documented shutdown (SIGTERM to PID 1 unless said otherwise)."""
        inst.signal(signal.SIGTERM)

    shutdown_how = "SIGTERM to PID 1"

    def restart_cmd(self, name: str) -> "list[str] | None":
        return None

    restart_how = "n/a"

    def status_cmd(self, name: str) -> "list[str] | None":
        return None

    status_how = "n/a"


class Svtree(System):
    name = "svtree"
    label = "svtree"
    binaries = ("unshare",)

    def __init__(self, variant: str = "") -> None:
        super().__init__(variant)
        self.watch = variant == "watch"
        if self.watch:
            self.name, self.label = "svtree+watch", "svtree (watcher on)"

    def prepare(self, work, services, *, stop_timeout=None, kill_grace=None):
        super().prepare(work, services)
        if stop_timeout is not None:
            for name in services:
                write(os.path.join(self.svc, name, "service.toml"), f"stop_timeout = {stop_timeout}\n")
        if kill_grace is not None:
            write(os.path.join(self.svc, "svtree.toml"), f"kill_grace = {kill_grace}\n")
        self.socket = os.path.join(work, "control.sock")

    def argv(self, work):
        return [sys.executable, "-m", "svtree", "run", "--dir", self.svc, "--socket", self.socket,
                *([] if self.watch else ["--no-watch"])]

    def env(self):
        env = os.environ.copy()
        env["PYTHONPATH"] = SVTREE_PATH[0] + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.pop("SVTREE_SOCKET", None)
        env.pop("SVTREE_DIR", None)
        return env

    def ctl(self, *args: str, flags: "tuple[str, ...]" = ()) -> "list[str]":
        return [sys.executable, *flags, "-m", "svtree", "ctl", "--socket", self.socket, *args]

    def restart_cmd(self, name, flags=()):
        return self.ctl("restart", name, "--wait", flags=flags)

    restart_how = "svtree ctl restart NAME --wait"

    def status_cmd(self, name, flags=()):
        return self.ctl("status", flags=flags)

    status_how = "svtree ctl status"

    def reload_cmd(self):
        return self.ctl("reload")


class S6(System):
    name = "s6"
    label = "s6 (s6-svscan)"
    binaries = ("s6-svscan", "s6-supervise", "s6-svc", "s6-svstat", "s6-svscanctl")

    def prepare(self, work, services, *, stop_timeout=None, kill_grace=None):
        super().prepare(work, services)
        if stop_timeout is not None:  # s6-supervise's own SIGKILL-after, in milliseconds
            for name in services:
                write(os.path.join(self.svc, name, "timeout-kill"), f"{int(stop_timeout * 1000)}\n")

    def argv(self, work):
        return ["s6-svscan", self.svc]

    shutdown_how = "SIGTERM to s6-svscan (= s6-svscanctl -t)"

    def restart_cmd(self, name):
        return ["s6-svc", "-wr", "-r", self.service_dir(name)]

    restart_how = "s6-svc -wr -r DIR (race-free form of s6-svc -r + s6-svwait)"

    def status_cmd(self, name):
        return ["s6-svstat", self.service_dir(name)]

    status_how = "s6-svstat DIR"


class Runit(System):
    name = "runit"
    label = "runit (runsvdir)"
    binaries = ("runsvdir", "runsv", "sv")

    def __init__(self, variant: str = "hup") -> None:
        super().__init__(variant)
        if variant == "stage3":
            self.label = "runit (stage-3 way)"
            self.shutdown_how = ("sv -w T force-stop DIR/*; sv exit DIR/*; SIGTERM to runsvdir "
                                 "(Debian's /etc/runit/3)")
        else:
            self.label = "runit (SIGHUP)"
            self.shutdown_how = ("SIGHUP to runsvdir (runsv's get SIGTERM, runsvdir exits at once; "
                                 "the kernel kills what is left)")
        self.force_stop_wait = 196

    def prepare(self, work, services, *, stop_timeout=None, kill_grace=None):
        super().prepare(work, services)
        self.force_stop_wait = stop_timeout if stop_timeout is not None else 196

    def argv(self, work):
        return ["runsvdir", self.svc]

    def shutdown(self, inst):
        if self.variant != "stage3":
            inst.signal(signal.SIGHUP)
            return
        # Debian's /etc/runit/3, then what runit(8) does next: end the scanner. Run by a
        # helper shell so the caller keeps watching the namespace meanwhile.
        dirs = " ".join(self.service_dir(n) for n in self.names)
        script = (f"sv -w {self.force_stop_wait:g} force-stop {dirs} >/dev/null 2>&1; "
                  f"sv exit {dirs} >/dev/null 2>&1; kill -TERM {inst.pid1}")
        inst.helpers.append(subprocess.Popen(["sh", "-c", script], stdin=subprocess.DEVNULL))

    def restart_cmd(self, name):
        return ["sv", "restart", self.service_dir(name)]

    restart_how = "sv restart DIR"

    def status_cmd(self, name):
        return ["sv", "status", self.service_dir(name)]

    status_how = "sv status DIR"


class Supervisord(System):
    name = "supervisord"
    label = "supervisord -n"
    binaries = ("supervisord", "supervisorctl")
    per_service_process = False

    def prepare(self, work, services, *, stop_timeout=None, kill_grace=None):
        super().prepare(work, services)
        self.conf = os.path.join(work, "supervisord.conf")
        sock = os.path.join(work, "supervisor.sock")
        lines = [
            "[unix_http_server]", f"file={sock}", "",
            "[supervisord]", "nodaemon=true", "user=root",
            f"logfile={os.path.join(work, 'supervisord.log')}", "logfile_maxbytes=0",
            f"pidfile={os.path.join(work, 'supervisord.pid')}", f"childlogdir={work}", "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface", "",
            "[supervisorctl]", f"serverurl=unix://{sock}", "",
        ]
        for name in services:
            lines += [
                f"[program:{name}]", f"command={self.service_dir(name)}/run",
                f"directory={self.service_dir(name)}",
                "autorestart=true", "startsecs=0", "startretries=1000",
                f"stopwaitsecs={stop_timeout if stop_timeout is not None else 10:g}",
                "stdout_logfile=NONE", "stderr_logfile=NONE", "",
            ]
        write(self.conf, "\n".join(lines))

    def argv(self, work):
        return ["supervisord", "-n", "-c", self.conf]

    shutdown_how = "SIGTERM to supervisord"

    def restart_cmd(self, name):
        return ["supervisorctl", "-c", self.conf, "restart", name]

    restart_how = "supervisorctl restart NAME (startsecs=0)"

    def status_cmd(self, name):
        return ["supervisorctl", "-c", self.conf, "status", name]

    status_how = "supervisorctl status NAME"


class Tini(System):
    name = "tini"
    label = "tini + sh"
    binaries = ("tini",)
    per_service_process = False
    can_restart = False

    def prepare(self, work, services, *, stop_timeout=None, kill_grace=None):
        super().prepare(work, services)
        self.script = os.path.join(work, "tini.sh")
        body = ["#!/bin/sh", "# tini's child: start every service, forward SIGTERM to them, wait.",
                "pids=", "trap 'kill $pids 2>/dev/null; wait; exit 0' TERM INT"]
        for name in services:
            body.append(f"(cd {self.service_dir(name)} && exec ./run) & pids=\"$pids $!\"")
        body.append("wait")
        write(self.script, "\n".join(body) + "\n", executable=True)

    def argv(self, work):
        return ["tini", "--", "/bin/sh", self.script]

    shutdown_how = "SIGTERM to tini (forwarded to the script, which TERMs its children and waits)"


def make(name: str) -> System:
    return {
        "svtree": Svtree, "s6": S6, "runit": Runit, "supervisord": Supervisord, "tini": Tini,
    }[name]()


ALL = ("svtree", "s6", "runit", "supervisord", "tini")
