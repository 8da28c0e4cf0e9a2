"""The systems under test, each as PID 1 of its own PID namespace, with the same services.

Every service is the same `run` script (`exec sleep ...`, or one that ignores SIGTERM, or
the orphan maker) in DIR/NAME/run on a tmpfs. Each system gets its own copy of the tree and
its own way of being started, stopped and told to restart a service:

    svtree       python3 -m svtree run --dir DIR --socket SOCK [--no-watch]
    s6           s6-svscan DIR                 (one s6-supervise per service)
    runit        runsvdir DIR                  (one runsv per service)
    supervisord  supervisord -n -c CONF        (one [program:NAME] per service)
    tini         tini -- /bin/sh tini.sh       (the script starts every run in the
                                               background, forwards SIGTERM, waits)

A row of a table is one system in one way of running it (ROWS): svtree with its watcher
(the default) and with --no-watch, s6 with a run script that does or does not write to
notification-fd, runit's two ways of shutting down.

The tree is dated an hour back once written, as a tree in an image is: runsvdir sleeps a
second before its scan when the directory changed in the current second (its guard
against mtime's one-second granularity), which a tree written just before the launch
would hit and a real container never does.

An Instance is one namespace: `unshare --pid --fork --mount-proc --kill-child` with a
parent-death signal on unshare, so a benchmark killed by anything takes its namespaces
with it. Instance.kill() sends SIGKILL to the namespace's PID 1, which makes the kernel
kill everything else in it. Its timed waits read the kernel's process events
(procevents.py), not /proc.
"""

from __future__ import annotations

import os
import select
import shlex
import signal
import subprocess
import sys
import time

from procevents import ProcEvents
from procfs import NsProc, children
from svtree.osutil import set_parent_death_signal  # procfs put the repository on sys.path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Where svtree is imported from: the repository, or (run.py) a compiled snapshot of it.
SVTREE_PATH = [REPO]
SLEEP_ARG = "100000"

RUN_SLEEP = f"#!/bin/sh\nexec sleep {SLEEP_ARG}\n"
RUN_IGNORE_TERM = f"#!/bin/sh\ntrap '' TERM\nexec sleep {SLEEP_ARG}\n"
# s6's readiness: one line on notification-fd (3), which sleep need not keep open.
RUN_NOTIFY = f"#!/bin/sh\necho >&3\nexec sleep {SLEEP_ARG} 3>&-\n"
SERVICE_COMM = "sleep"  # what a running service is called in /proc and in exec events
TREE_AGE = 3600.0  # seconds: how far back the tree is dated (see the docstring)

LIVE: "set[Instance]" = set()  # every namespace still running: killed at exit


def _pdeathsig() -> None:
    """In unshare, before exec: die with the benchmark (unshare --kill-child then takes
    the namespace's PID 1 along)."""
    set_parent_death_signal(signal.SIGKILL)


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

    def __init__(self, system: "System", work: str, argv: "list[str]", env: "dict | None" = None,
                 events: bool = True, timeline: bool = False) -> None:
        self.system = system
        self.work = work
        self.log_path = os.path.join(work, "output.log")
        self.log = open(self.log_path, "wb")
        self.events = ProcEvents(forks=timeline) if events else None  # listening before the launch
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
        if self.events is not None:
            self.events.watch(self.pid1)
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
        if self.events is not None:
            self.events.close()
            self.events = None
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
            if self.ns.comm(p) == SERVICE_COMM:
                out[p] = self.ns.cwd(p) or ""
        return out

    def supervisor_pids(self) -> "list[int]":
        """Every process of the namespace that is not a service (`sleep`) nor a zombie."""
        out = []
        for p in self.ns.pids():
            st = self.ns.stat(p)
            if st is not None and st[0] != SERVICE_COMM and st[1] != "Z":
                out.append(p)
        return out

    def wait_services(self, n: int, timeout: float) -> float:
        """Until n services run in the namespace: the kernel's time of the exec that made
        the n-th one `sleep`."""
        ev = self.events

        def done():
            if self.exited():
                raise RuntimeError(f"PID 1 exited during boot ({self.tail()})")
            up = ev.running(SERVICE_COMM)
            return max(e.t for e in up.values()) if len(up) >= n else None

        try:
            return ev.wait(done, timeout, f"{n} services running")
        except TimeoutError:
            raise TimeoutError(f"{len(ev.running(SERVICE_COMM))} of {n} services running after "
                               f"{timeout:g} s ({self.tail()})") from None

    def wait_new_service(self, after: float, timeout: float, cwd: "str | None" = None) -> float:
        """Until a service process exec'd after `after` (in `cwd` if given) runs: the
        kernel's time of that exec."""
        def found():
            times = [e.t for e in self.events.running(SERVICE_COMM).values()
                     if e.t > after and (cwd is None or e.cwd == cwd)]
            return min(times) if times else None

        return self.events.wait(found, timeout, "a new service process")

    def wait_pid1_exit(self, timeout: float) -> "float | None":
        """The kernel's time of PID 1's exit (after every other process of the namespace:
        the kernel kills and reaps those first), or None after `timeout`."""
        try:
            return self.events.wait(lambda: self.events.exits.get(self.pid1, (None,))[0],
                                    timeout, "PID 1's exit")
        except TimeoutError:
            return None


class System:
    """A supervision system: how to lay out its tree, start it, stop it, restart a service."""

    name = "?"
    row = "?"  # its row's key in every table (ROWS)
    label = "?"  # the row's first cell
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
        """Write the tree for these {name: run script} under work/, dated TREE_AGE back."""
        self.svc = os.path.join(work, "svc")
        os.makedirs(self.svc, exist_ok=True)
        for name, run in services.items():
            write(os.path.join(self.svc, name, "run"), run, executable=True)
        self.names = list(services)
        self.configure(work, services, stop_timeout=stop_timeout, kill_grace=kill_grace)
        date_tree(work, time.time() - TREE_AGE)

    def configure(self, work: str, services: "dict[str, str]", *, stop_timeout: "float | None",
                  kill_grace: "float | None") -> None:
        """The system's own files besides the run scripts."""

    def service_dir(self, name: str) -> str:
        return os.path.join(self.svc, name)

    def argv(self, work: str) -> "list[str]":
        raise NotImplementedError

    def env(self) -> "dict[str, str] | None":
        return None

    def helper_pids(self, inst: Instance) -> "list[int]":
        """Processes of the supervisor that are neither PID 1 nor per service."""
        return []

    def start(self, work: str, events: bool = True, timeline: bool = False) -> Instance:
        return Instance(self, work, self.argv(work), self.env(), events, timeline)

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
    binaries = ("unshare",)

    def __init__(self, variant: str = "") -> None:
        super().__init__(variant)
        self.watch = variant != "nowatch"  # the watcher is on unless --no-watch
        if self.watch:
            self.row, self.label = "svtree", "svtree (watcher on: the default)"
        else:
            self.row, self.label = "svtree --no-watch", "svtree --no-watch"

    def configure(self, work, services, *, stop_timeout, kill_grace):
        if stop_timeout is not None:
            for name in services:
                write(os.path.join(self.svc, name, "service.toml"), f"stop_timeout = {stop_timeout}\n")
        if kill_grace is not None:
            write(os.path.join(self.svc, "svtree.toml"), f"kill_grace = {kill_grace}\n")
        self.socket = os.path.join(work, "control.sock")

    def argv(self, work):
        return [sys.executable, "-m", "svtree", "run", "--dir", self.svc, "--socket", self.socket,
                *([] if self.watch else ["--no-watch"])]

    def helper_pids(self, inst):
        return [p for p in inst.supervisor_pids() if inst.ns.comm(p) == "svtree-watcher"]

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
    """s6-supervise restarts a dead service at once only if the service told it that it
    was ready (a line on notification-fd) more than a second before; otherwise it waits a
    second (s6 2.11's throttle counts from readiness). So restart after SIGKILL has two
    rows: the plain run script, and one that writes to notification-fd."""

    name = "s6"
    binaries = ("s6-svscan", "s6-supervise", "s6-svc", "s6-svstat", "s6-svscanctl")

    def __init__(self, variant: str = "") -> None:
        super().__init__(variant)
        if variant == "notify":
            self.row, self.label = "s6 (notification-fd)", "s6, run writes to notification-fd"
        else:
            self.row, self.label = "s6", "s6 (s6-svscan + s6-supervise)"

    def configure(self, work, services, *, stop_timeout, kill_grace):
        if self.variant == "notify":
            for name, run in services.items():
                if run != RUN_SLEEP:
                    raise ValueError("s6 (notification-fd) runs only the plain sleep service")
                write(os.path.join(self.svc, name, "run"), RUN_NOTIFY, executable=True)
                write(os.path.join(self.svc, name, "notification-fd"), "3\n")
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
    binaries = ("runsvdir", "runsv", "sv")

    def __init__(self, variant: str = "") -> None:
        super().__init__(variant)
        self.row, self.label = "runit", "runit (runsvdir + runsv)"
        if variant == "stage3":
            self.row = self.label = "runit (stage-3 way)"
            self.shutdown_how = ("sv -w T force-stop DIR/*; sv exit DIR/*; SIGTERM to runsvdir "
                                 "(Debian's /etc/runit/3)")
        else:
            if variant == "hup":
                self.row = self.label = "runit (SIGHUP)"
            self.shutdown_how = ("SIGHUP to runsvdir (runsv's get SIGTERM, runsvdir exits at once; "
                                 "the kernel kills what is left)")
        self.force_stop_wait = 196

    def configure(self, work, services, *, stop_timeout, kill_grace):
        self.force_stop_wait = stop_timeout if stop_timeout is not None else 196

    def argv(self, work):
        return ["runsvdir", self.svc]

    def shutdown(self, inst):
        if self.variant != "stage3":
            inst.signal(signal.SIGHUP)
            return
        # Debian's /etc/runit/3, then what runit(8) does next: end the scanner. Run by a
        # helper shell so the caller keeps watching the namespace meanwhile.
        dirs = " ".join(shlex.quote(self.service_dir(n)) for n in self.names)
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
    name = row = "supervisord"
    label = "supervisord -n"
    binaries = ("supervisord", "supervisorctl")
    per_service_process = False

    def configure(self, work, services, *, stop_timeout, kill_grace):
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
    name = row = "tini"
    label = "tini + sh script"
    binaries = ("tini",)
    per_service_process = False
    can_restart = False

    def configure(self, work, services, *, stop_timeout, kill_grace):
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


# Every row of the tables: (system, variant), in the order the tables list them.
ROWS = {
    "svtree": ("svtree", ""),
    "svtree --no-watch": ("svtree", "nowatch"),
    "s6": ("s6", ""),
    "s6 (notification-fd)": ("s6", "notify"),
    "runit": ("runit", ""),
    "runit (SIGHUP)": ("runit", "hup"),
    "runit (stage-3 way)": ("runit", "stage3"),
    "supervisord": ("supervisord", ""),
    "tini": ("tini", ""),
}
CLASSES = {"svtree": Svtree, "s6": S6, "runit": Runit, "supervisord": Supervisord, "tini": Tini}
ALL = tuple(CLASSES)


def make(name: str, variant: str = "") -> System:
    return CLASSES[name](variant)


def of_row(row: str) -> System:
    name, variant = ROWS[row]
    return make(name, variant)


def rows(names, *wanted: str) -> "list[str]":
    """The wanted rows whose system is among `names`, in ROWS order."""
    return [r for r in ROWS if r in wanted and ROWS[r][0] in names]


def date_tree(root: str, when: float) -> None:
    for d, dirs, files in os.walk(root):
        for f in files:
            os.utime(os.path.join(d, f), (when, when), follow_symlinks=False)
        os.utime(d, (when, when))
