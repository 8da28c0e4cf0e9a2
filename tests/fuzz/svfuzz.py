"""Random service trees and fault schedules, run on the real svtree, checked against the
guarantees (the README's section "Guarantees") with expectations computed from the data.

An example is plain data (`Example`): 2-6 services in a dependency DAG, each with a
behaviour and settings, an optional main command, and a schedule of faults and actions.
`run_example` writes it to a tempfile directory under /tmp, runs svtree on it (as PID 1
of a PID namespace, or as a plain child subreaper), plays the schedule, and checks:

  order      at shutdown every (transitive) dependent was gone before its dependency got
             its stop signal: no line a dependent's processes wrote (heartbeats, finish,
             children, daemons) is later than the dependency's first `term` line of the
             shutdown. Services record with `date +%s%N` before writing, so a line's time
             is a lower bound of "this process was alive", and the dependency's `term`
             time an upper bound of "it had been signalled": the check cannot fail
             because of load, only because of an inversion.
  kill       SIGKILL came no earlier than stop_timeout: a TERM-ignoring main process
             died (seen through a pidfd from outside) at least stop_timeout after its
             `term` line; and no later than stop_timeout + slack (its heartbeats stop).
  finish     a hung finish is killed after finish_timeout (+ slack).
  reap       at a quiet moment no zombie whose parent is svtree or a monitor survives
             several reap passes; no live process hangs off svtree unsupervised.
  nothing    after svtree exits no process carrying the example's token exists
  left       (meaningful in subreaper mode: in a PID namespace the kernel would kill them).
  bound      shutdown finished within a bound computed from the tree.
  exit code  0; 1 if a critical service ended or a boot oneshot failed; the main
             command's code (128+N if signal N killed it).
  model      a service that should be up was restarted after a kill or a monitor kill,
             one that should be down is down, untouched services kept their pids
             across reloads (exactly one start line), dependents started only after
             their dependencies were ready or done, ctl and reload answers.
  output     every line a flooding service wrote reached svtree's stdout/stderr, in
             the order it was written; also after `stall` actions (the reader of
             svtree's stdout, a pipe, pauses for a while and resumes: svtree holds the
             output back, nothing else).

Failures print the example (`describe`) and the action log; the example's directory
is kept under /tmp for inspection.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field

import harness as H
from hypothesis import strategies as st

Tree, Svtree, wait_for, PipeReader = H.Tree, H.Svtree, H.wait_for, H.PipeReader
children, descendants, proc_status, zombies = H.children, H.descendants, H.proc_status, H.zombies
read_cmdline = H.read_cmdline
needs_pidns, REPO = H.needs_pidns, H.REPO

# --- configuration (set by conftest from the profile) ------------------------------------

CONFIG = {
    "profile": "ci",
    "shrink_budget": 240.0,  # seconds of shrinking after the first failure, then stop
    "stats": os.environ.get("SVTREE_FUZZ_STATS"),  # a JSON line per example, if set
    "failures": os.environ.get("SVTREE_FUZZ_FAILURES", "/tmp/svtree-fuzz-failures.log"),
    "keep_dirs": 20,
}
_STATE = {"first_failure": None, "kept": 0, "examples": 0}

# The bugs this fuzzer found have a regression test each in test_fuzz_tree.py.


def configure(profile: str) -> None:
    CONFIG["profile"] = profile
    CONFIG["shrink_budget"] = float(os.environ.get("SVTREE_FUZZ_SHRINK_BUDGET")
                                    or (240.0 if profile == "ci" else 1200.0))


def svtree_path() -> str:
    """PYTHONPATH for svtree: whatever the caller put first (a snapshot, a scratch copy
    with a planted bug), then the repository."""
    return os.pathsep.join(p for p in (os.environ.get("PYTHONPATH", ""), REPO) if p)


_SOURCE: "dict[str, str]" = {}


def svtree_source() -> str:
    """Which svtree package the examples run (checked once: a vanished snapshot on
    PYTHONPATH would silently fall back to the repository)."""
    path = svtree_path()
    if path not in _SOURCE:
        first = os.environ.get("PYTHONPATH", "").split(os.pathsep)[0]
        if first and not os.path.isdir(os.path.join(first, "svtree")):
            raise RuntimeError(f"PYTHONPATH starts with {first}, which holds no svtree package")
        r = subprocess.run([sys.executable, "-c", "import svtree, os; print(os.path.dirname(svtree.__file__))"],
                           capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=path), timeout=30,
                           cwd="/")  # as svtree runs: not from the repository's directory
        _SOURCE[path] = r.stdout.strip() or r.stderr.strip()
    return _SOURCE[path]


def past_deadline() -> bool:
    """SVTREE_FUZZ_DEADLINE (seconds since the epoch) has passed, and no failure is being
    shrunk: the long run's time budget is spent."""
    deadline = os.environ.get("SVTREE_FUZZ_DEADLINE")
    return bool(deadline) and time.time() > float(deadline) and _STATE["first_failure"] is None


def shrink_budget_spent() -> bool:
    """True while shrinking after the budget is spent, so the caller can reject the
    example and end the shrink; never on hypothesis's final replay of the failure."""
    from hypothesis.control import current_build_context

    t = _STATE["first_failure"]
    if t is None or time.monotonic() - t <= CONFIG["shrink_budget"]:
        return False
    return not current_build_context().is_final


# --- the data ----------------------------------------------------------------------------

STEADY = ("forever", "ignore_term", "slow_stop", "forks", "daemon", "zombies", "flood", "notify")
FLAPPING = ("exit_now", "self_kill")
BEHAVIOURS = STEADY + FLAPPING  # "forever" first: hypothesis shrinks towards it
TRAPS_TERM = ("forever", "slow_stop", "forks", "daemon", "zombies", "flood", "notify", "self_kill")
FINISHES = ("none", "quick", "slow", "hung", "f125")
SERVICE_SIGNALS = ("KILL", "TERM", "INT", "HUP", "USR1", "USR2", "ALRM")
MONITOR_SIGNALS = ("KILL", "TERM", "INT", "HUP", "USR1")
STALLS = ("1.0", "0.3", "2.0")  # seconds the reader of svtree's stdout pauses
SELF_KILL_SIGNALS = ("KILL", "INT", "HUP", "USR1", "USR2", "ALRM")
RESTART_DELAY_MAX = 1.0
MAIN_STOP_TIMEOUT = 1.0
FLOOD_LINES = 3000
SLOW_FINISH = 0.15


def signum(name: str) -> int:
    return int(getattr(signal, "SIG" + name))


def _short(obj) -> str:
    """A dataclass as its constructor call, without the fields left at their default."""
    parts = []
    for i, f in enumerate(dataclasses.fields(obj)):
        v = getattr(obj, f.name)
        if f.metadata.get("positional"):
            parts.append(repr(v))
        elif f.default is dataclasses.MISSING or v != f.default:
            parts.append(f"{f.name}={v!r}")
    return f"{type(obj).__name__}({', '.join(parts)})"


@dataclass(frozen=True)
class Svc:
    name: str = field(metadata={"positional": True})
    deps: tuple = field(default=(), metadata={"positional": True})
    type: str = "longrun"  # or "oneshot"
    behaviour: str = "forever"  # longruns only
    code: int = 0  # exit_now's code, a oneshot's code
    sig: str = "KILL"  # self_kill's signal
    delay: float = 0.0  # slow_stop's stop time, notify's delay, self_kill's life, oneshot's run
    stubborn: bool = False  # forks/daemon: the extra processes ignore TERM
    restart: str = "always"
    stop_timeout: float = 0.5
    restart_delay: float = 0.1
    finish: str = "none"
    finish_timeout: float = 0.4
    down: bool = False
    critical: bool = False

    def __repr__(self) -> str:
        return _short(self)

    @property
    def steady(self) -> bool:
        return self.type == "longrun" and self.behaviour in STEADY

    def finish_time(self) -> float:
        """The longest a finish after an exit of run can take."""
        return self.finish_timeout if self.finish != "none" else 0.0

    def restarts_after(self, exit_kind: str) -> bool:
        """Policy after an exit nobody asked for: exit_kind is "zero" or "failure"."""
        if self.finish == "f125":
            return False
        if self.restart == "always":
            return True
        if self.restart == "on-failure":
            return exit_kind == "failure"
        return False

    def flaps_forever(self) -> bool:
        """A flapping longrun that keeps coming back (ready for a moment each time)."""
        failure = self.behaviour == "self_kill" or self.code != 0
        return self.restarts_after("failure" if failure else "zero")


@dataclass(frozen=True)
class Action:
    delay: float = field(metadata={"positional": True})
    kind: str = field(metadata={"positional": True})  # kill kill_monitor ctl reload stall sigterm
    target: int = field(default=0, metadata={"positional": True})  # index into current services
    arg: str = field(default="", metadata={"positional": True})

    def __repr__(self) -> str:
        return _short(self)


@dataclass(frozen=True)
class Example:
    services: tuple
    actions: tuple = ()
    main: "tuple | None" = None  # (sleep seconds, exit code[, leaves: "daemon" | "stubborn"])
    mode: str = "pidns"  # or "subreaper"
    kill_grace: float = 0.5

    def __repr__(self) -> str:
        return describe(self)


def describe(ex: Example) -> str:
    lines = ["Example(", "    services=("]
    lines += [f"        {s!r}," for s in ex.services]
    lines.append("    ),")
    if ex.actions:
        lines.append("    actions=(")
        lines += [f"        {a!r}," for a in ex.actions]
        lines.append("    ),")
    for name in ("main", "mode", "kill_grace"):
        f = {f.name: f for f in dataclasses.fields(Example)}[name]
        if getattr(ex, name) != f.default:
            lines.append(f"    {name}={getattr(ex, name)!r},")
    lines.append(")")
    return "\n".join(lines)


# --- strategies ----------------------------------------------------------------------------

def _rarely(draw, one_in: int) -> bool:
    """True about once in `one_in`; shrinks to False."""
    return draw(st.integers(0, one_in - 1)) == one_in - 1


@st.composite
def a_service(draw, name: str, earlier: "list[str]") -> Svc:
    deps = ()
    if earlier:
        deps = tuple(sorted(draw(st.lists(st.sampled_from(earlier), max_size=min(3, len(earlier)),
                                          unique=True))))
    if _rarely(draw, 5):
        code = draw(st.sampled_from((1, 3))) if _rarely(draw, 5) else 0
        return Svc(
            name, deps, type="oneshot", code=code,
            delay=draw(st.sampled_from((0.0, 0.1, 0.3))),
            stop_timeout=draw(st.sampled_from((0.5, 0.2, 1.0))),
            finish=draw(st.sampled_from(FINISHES)),
            finish_timeout=draw(st.sampled_from((0.4, 0.3, 0.5))),
            down=_rarely(draw, 8),
        )
    behaviour = draw(st.sampled_from(BEHAVIOURS))
    kw: dict = {}
    if behaviour == "exit_now":
        kw["code"] = draw(st.sampled_from((0, 1, 3)))
    elif behaviour == "self_kill":
        kw["sig"] = draw(st.sampled_from(SELF_KILL_SIGNALS))
        kw["delay"] = draw(st.sampled_from((0.3, 0.1, 0.8)))
    elif behaviour == "slow_stop":
        kw["delay"] = draw(st.sampled_from((0.3, 0.1, 0.6, 1.5)))
    elif behaviour == "notify":
        kw["delay"] = draw(st.sampled_from((0.1, 0.0, 0.3, 0.6)))
    elif behaviour in ("forks", "daemon"):
        kw["stubborn"] = draw(st.booleans())
    finish = draw(st.sampled_from(FINISHES))
    critical = behaviour in STEADY and _rarely(draw, 6)
    return Svc(
        name, deps, behaviour=behaviour,
        restart=draw(st.sampled_from(("always", "on-failure", "never"))),
        stop_timeout=draw(st.sampled_from((0.5, 0.2, 0.3, 0.7, 1.0))),
        restart_delay=draw(st.sampled_from((0.1, 0.05, 0.2, 0.3))),
        finish=finish,
        finish_timeout=draw(st.sampled_from((0.4, 0.3, 0.5))),
        down=_rarely(draw, 8),
        critical=critical,
        **kw,
    )


@st.composite
def an_action(draw) -> Action:
    kind = draw(st.sampled_from(("kill", "ctl", "kill_monitor", "reload", "stall")))
    delay = draw(st.sampled_from((0.1, 0.0, 0.05, 0.3, 0.6)))
    target = draw(st.integers(0, 5))
    arg = draw(st.sampled_from({
        "kill": SERVICE_SIGNALS,
        "ctl": ("restart", "stop", "start"),
        "kill_monitor": MONITOR_SIGNALS,
        "reload": ("change", "invalid", "add", "remove"),
        "stall": STALLS,
    }[kind]))
    return Action(delay, kind, target, arg)


@st.composite
def examples(draw) -> Example:
    n = draw(st.integers(2, 6))
    names = [chr(ord("a") + i) for i in range(n)]
    services = tuple(draw(a_service(name, names[:i])) for i, name in enumerate(names))
    actions = draw(st.lists(an_action(), max_size=6))
    if _rarely(draw, 4):  # SIGTERM to svtree at a random moment of the schedule
        at = draw(st.integers(0, len(actions)))
        actions.insert(at, Action(draw(st.sampled_from((0.1, 0.0, 0.3))), "sigterm"))
    main = None
    if _rarely(draw, 4):
        main = (draw(st.sampled_from((3.0, 0.3, 1.0, 8.0))), draw(st.sampled_from((0, 3, 7))))
        leaves = draw(st.sampled_from(("", "daemon", "stubborn")))
        if leaves:
            main += (leaves,)
    return Example(
        services=services, actions=tuple(actions), main=main,
        mode="subreaper" if _rarely(draw, 4) else "pidns",
        kill_grace=draw(st.sampled_from((0.5, 0.3, 1.0))),
    )


# --- the scripts the services run ----------------------------------------------------------

# Every line: KIND NAME PID TIME [EXTRA]. `date` runs before the write, so TIME is a
# moment at which the writing process was certainly alive.
LIB = """E='{events}'
if [ -n "${{EPOCHREALTIME:-}}" ]; then  # bash: a timestamp without a fork
  rec() {{ echo "$1 $N $$ ${{EPOCHREALTIME/./}}000 $2" >> "$E"; }}
else
  rec() {{ echo "$1 $N $$ $(date +%s%N) $2" >> "$E"; }}
fi
"""

# run waits on a child so that a trapped TERM is handled at once (dash runs the trap
# when `wait` is interrupted), and replaces that child if it ever dies.
FOREVER = """sleep 1000 & c=$!
while :; do wait $c; kill -0 $c 2>/dev/null || {{ sleep 1000 & c=$!; }}; done
"""
TRAP_EXIT = "trap 'rec term; kill $c $z 2>/dev/null; rec exit 0; exit 0' TERM\n"


def run_script(svc: Svc, lib: str) -> str:
    head = f"#!/bin/sh\nN={svc.name}\n. {lib}\nrec start\n"
    if svc.type == "longrun" and svc.behaviour == "ignore_term":
        # bash: its `term` line is written the moment the trap runs (no fork for the
        # time), so a SIGKILL right after the TERM cannot hide the TERM.
        head = head.replace("#!/bin/sh", "#!/bin/bash", 1)
    if svc.type == "oneshot":
        return head + f"sleep {svc.delay}\nrec oneshot-exit {svc.code}\nexit {svc.code}\n"
    b = svc.behaviour
    if b == "forever":
        return head + TRAP_EXIT + FOREVER.format()
    if b == "ignore_term":
        return head + """trap 'rec term; G=1' TERM
sleep 1000 & c=$!
while :; do
  if [ -n "$G" ]; then rec alive; sleep 0.05
  else wait $c; kill -0 $c 2>/dev/null || { sleep 1000 & c=$!; }
  fi
done
"""
    if b == "slow_stop":
        k = max(1, round(svc.delay / 0.05))
        return head + (
            "trap 'rec term; kill $c 2>/dev/null; i=0; "
            f"while [ $i -lt {k} ]; do rec alive; sleep 0.05; i=$((i+1)); done; "
            "rec exit 0; exit 0' TERM\n") + FOREVER.format()
    if b in ("forks", "daemon"):
        trap = 'trap "rec cterm" TERM; ' if svc.stubborn else ""
        kind = "hb" if b == "forks" else "dhb"
        loop = f"sh -c 'N={svc.name}; . {lib}; {trap}while :; do rec {kind}; sleep 0.2; done' &"
        if b == "forks":
            extra = f"{loop}\n{loop}\n"
        else:  # double fork, and out of the session: the monitor (a subreaper) adopts it
            extra = f"( setsid {loop} )\n"
        return head + TRAP_EXIT + extra + FOREVER.format()
    if b == "zombies":
        # The holder execs a sleep that never waits: its two children stay zombies under
        # a live parent (svtree cannot and must not reap those). The subshell's child is
        # an orphan for the monitor to reap.
        return head + TRAP_EXIT + (
            "sh -c 'sleep 0.01 & sleep 0.01 & exec sleep 1000' & z=$!\n"
            "( sleep 0.05 & )\n") + FOREVER.format()
    if b == "flood":
        return head + TRAP_EXIT + (
            f'seq 1 {FLOOD_LINES} | sed -u "s/^/flood $$ /"\n'
            f'seq 1 {FLOOD_LINES} | sed -u "s/^/eflood $$ /" >&2\n'
            "rec flooded\n") + FOREVER.format()
    if b == "notify":
        return head + TRAP_EXIT + (
            f"sleep {svc.delay}\nrec ready\necho >&3\nexec 3>&-\n") + FOREVER.format()
    if b == "exit_now":
        return head + f"rec exit {svc.code}\nexit {svc.code}\n"
    if b == "self_kill":
        return head + TRAP_EXIT + (
            f"sleep {svc.delay}\nrec selfkill {svc.sig}\nkill -{svc.sig} $$\n") + FOREVER.format()
    raise ValueError(b)


def finish_script(svc: Svc, lib: str) -> "str | None":
    if svc.finish == "none":
        return None
    head = f'#!/bin/sh\nN={svc.name}\n. {lib}\nrec finish-start "$1:$2"\n'
    return head + {
        "quick": "rec finish-end\nexit 0\n",
        "slow": f"sleep {SLOW_FINISH}\nrec finish-end\nexit 0\n",
        "hung": "while :; do rec fin-alive; sleep 0.05; done\n",
        "f125": "rec finish-end\nexit 125\n",
    }[svc.finish]


def service_toml(svc: Svc) -> str:
    out = []
    if svc.type == "oneshot":
        out.append('type = "oneshot"')
    if svc.deps:
        out.append("depends_on = [" + ", ".join(f'"{d}"' for d in svc.deps) + "]")
    if svc.type == "longrun":
        out.append(f'restart = "{svc.restart}"')
        out.append(f"restart_delay = {svc.restart_delay}")
        out.append(f"restart_delay_max = {RESTART_DELAY_MAX}")
    out.append(f"stop_timeout = {svc.stop_timeout}")
    out.append(f"finish_timeout = {svc.finish_timeout}")
    if svc.type == "longrun" and svc.behaviour == "notify":
        out.append("notification_fd = 3")
    if svc.critical:
        out.append("critical = true")
    return "\n".join(out) + "\n"


def main_command(ex: Example, lib: str) -> "list[str] | None":
    if ex.main is None:
        return None
    sleep_s, code = ex.main[:2]
    leaves = ex.main[2] if len(ex.main) > 2 else ""
    daemon = ""
    if leaves:
        # A daemon of the main command (double fork, own session): an orphan of svtree,
        # left for the final sweep (SIGTERM, then SIGKILL after kill_grace).
        trap = 'trap "rec cterm" TERM; ' if leaves == "stubborn" else ""
        daemon = f"( setsid sh -c 'N=maind; . {lib}; {trap}while :; do rec mhb; sleep 0.2; done' & ); "
    # TERM during the sleep kills sh (143); after the sleep TERM is ignored so that the
    # recorded exit and the real one agree.
    return ["sh", "-c", f"N=main; . {lib}; rec main-start; {daemon}sleep {sleep_s}; trap '' TERM; "
                        f"rec main-exit {code}; exit {code}"]


# --- records ---------------------------------------------------------------------------

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


# --- process facts ---------------------------------------------------------------------

def nspid_of(pid: int) -> "int | None":
    try:
        st_ = proc_status(pid)
    except OSError:
        return None
    v = st_.get("NSpid", "").split()
    return int(v[-1]) if v else None


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


class FuzzTree(Tree):
    """The harness's Tree, under a prefix of its own (other suites use svtree-test-)."""

    def __init__(self) -> None:
        import tempfile

        self.root = tempfile.mkdtemp(prefix="svfuzz-")
        self.dir = os.path.join(self.root, "services.d")
        os.mkdir(self.dir)
        self.events = os.path.join(self.root, "events")
        open(self.events, "w").close()


class SubreaperSvtree(Svtree):
    """svtree as a plain child of the test (not PID 1): it makes itself a child subreaper.
    Here a process svtree leaves behind would really survive it."""

    def __init__(self, tree, cmd=None, env=None, stdout=None) -> None:  # noqa: super().__init__ unshares
        self.tree = tree
        self.socket = os.path.join(tree.root, "control.sock")
        self.stdout_path = os.path.join(tree.root, "stdout")
        self.stderr_path = os.path.join(tree.root, "stderr")
        argv = [sys.executable, "-m", "svtree", "run", "--dir", tree.dir, "--socket", self.socket,
                "--no-watch"]
        if cmd:
            argv += ["--", *cmd]
        full_env = dict(os.environ)
        full_env.pop("SVTREE_SOCKET", None)
        full_env.update(env or {})
        out, err = self._open_outputs(stdout, None)
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                     env=full_env, start_new_session=True, cwd=tree.root)
        self._outputs_given()
        self.pid1 = self.proc.pid


# --- the observer: deaths of TERM-ignoring mains, seen from outside ------------------------

class Observer(threading.Thread):
    """Tails the events file; for each start of a watched service finds the host pid,
    opens a pidfd and notes when the process dies (a pidfd polls readable at death).
    The time noted is an upper bound of the death (the thread may be late), which is the
    safe side for "SIGKILL came no earlier than stop_timeout"."""

    def __init__(self, run: "Run", names: "set[str]") -> None:
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


# --- the model: what should be true, from the data and what the runner did -----------------

class Model:
    """An abstract svtree: per service one of
      up       a steady longrun that runs (and keeps running)
      down     not running and will not run without an action (down_kind says why)
      done     a oneshot that exited 0
      failed   a oneshot that failed
      waiting  wanted up, a dependency is not ready: it starts when they are
      flap     a flapping longrun (exits or kills itself over and over)
      unknown  the model cannot tell (races between actions)
      removed  removed by a reload
    Only what the model is sure of is checked."""

    def __init__(self, ex: Example) -> None:
        self.ex = ex
        self.svcs: "dict[str, Svc]" = {s.name: s for s in ex.services}
        self.deps_union: "dict[str, set[str]]" = {s.name: set(s.deps) for s in ex.services}
        self.status: "dict[str, str]" = {}
        self.down_kind: "dict[str, str]" = {}  # file, user, ended
        self.user_want: "dict[str, str]" = {}
        self.touched: "dict[str, list[int]]" = {s.name: [] for s in ex.services}
        self.pending: "dict[str, int]" = {s.name: 0 for s in ex.services}
        self.boot_up: "set[str]" = set()
        self.booted: "bool | None" = False
        self.booted_at: "int | None" = None
        self.boot_failure = False
        # (lo, hi, name): when the shutdown a failure of `name` causes starts, at the
        # earliest and at the latest
        self.failures_certain: "list[tuple[int, int, str]]" = []
        self.failures_possible: "list[int]" = []
        self.added = 0
        self.edits = 0
        self.expect_restart: "list[tuple[str, int, str]]" = []  # (name, since, why): a new pid
        self.removed_svc: "dict[str, Svc]" = {}
        # A changed service's new record starts only when the old one is gone, and then
        # only if its dependencies are ready at that moment: until when that may be.
        self.deferred_start: "dict[str, int]" = {}
        self._boot()

    # --- helpers ----------------------------------------------------------------------

    def order(self) -> "list[str]":
        seen, out = set(), []

        def visit(n):
            if n in seen:
                return
            seen.add(n)
            for d in self.svcs[n].deps:
                visit(d)
            out.append(n)

        for n in sorted(self.svcs):
            visit(n)
        return out

    def dependents_closure(self, name: str) -> "set[str]":
        """Every service that depends on `name`, directly or not, in any version of the tree."""
        out, todo = set(), [name]
        while todo:
            d = todo.pop()
            for p, deps in self.deps_union.items():
                if d in deps and p not in out:
                    out.add(p)
                    todo.append(p)
        return out

    def satisfied(self, dep: str) -> "bool | None":
        s = self.status.get(dep)
        if s in ("up", "done"):
            return True
        if s == "flap":
            # Ready for a moment in each life: the core starts a dependent at one of those
            # moments if the flapper keeps coming back (and nothing else flaps).
            return True if self.svcs[dep].flaps_forever() else None
        if s in ("down", "waiting", "failed", "removed"):
            return False
        return None

    def deps_ok(self, name: str, t: "int | None" = None) -> "bool | None":
        """Whether the core will find every dependency ready (or done) at one moment;
        with `t`, for a start the core makes at t: a dependency a reload is restarting
        is not ready until its new record runs, which it may never do (its own
        dependency may go down first), so it counts as unknown meanwhile."""
        deps = self.svcs[name].deps
        vals = [self.satisfied(d) for d in deps]
        if t is not None:
            vals = [None if v is True and self.deferred_start.get(d, -1) >= t else v
                    for d, v in zip(deps, vals)]
        if any(v is False for v in vals):
            return False
        if any(v is None for v in vals):
            return None
        if sum(1 for d in deps if self.status.get(d) == "flap") > 1:
            return None  # two flappers' ready moments need not ever overlap
        return True

    def _run_state(self, name: str) -> str:
        svc = self.svcs[name]
        if svc.type == "oneshot":
            return "done" if svc.code == 0 else "failed"
        return "up" if svc.steady else "flap"

    def _boot(self) -> None:
        for name in self.order():
            svc = self.svcs[name]
            if svc.down:
                self.status[name], self.down_kind[name] = "down", "file"
                continue
            ok = self.deps_ok(name)
            if ok is None:
                self.status[name] = "unknown"
                if svc.type == "oneshot" and svc.code != 0:
                    self.failures_possible.append(0)  # it may run (and fail the boot), or not
                continue
            self.status[name] = self._run_state(name) if ok else "waiting"
            if self.status[name] == "failed":
                self.boot_failure = True
            if self.status[name] == "up":
                self.boot_up.add(name)
        self._update_booted(None)

    def _update_booted(self, t: "int | None") -> None:
        """The core's `booted`: once every service not marked down was ready or done at
        the same moment. True stays True; None (it may have happened) stays None."""
        if self.booted is True:
            return
        if self.boot_failure:
            self.booted = False
            return
        vals = []
        for name, svc in self.svcs.items():
            if svc.down or self.status[name] == "removed":
                continue
            s = self.status[name]
            if s in ("up", "done"):
                vals.append(True)
            elif s == "flap":
                vals.append(True if svc.flaps_forever() else None)
            elif s in ("waiting", "down", "failed"):
                vals.append(False)
            else:
                vals.append(None)
        flappers = sum(1 for n, svc in self.svcs.items() if not svc.down and self.status[n] == "flap")
        if flappers > 1 and all(v is True for v in vals):
            vals.append(None)  # their ready moments need not ever overlap
        if all(v is True for v in vals):
            self.booted, self.booted_at = True, t
        elif self.booted is None or any(v is None for v in vals):
            self.booted = None

    def _oneshot_failed_run(self, name: str, t: int) -> None:
        """A oneshot failed after boot: a failure of the tree only if boot never completed."""
        if self.booted is False and not self.svcs[name].down:
            self.failures_certain.append((t, t + int(3e9), name))
        elif self.booted is not True:
            self.failures_possible.append(t)

    def _interrupt_failure(self, name: "str | None", t: int) -> None:
        """A stop, restart, removal, monitor death (name) or shutdown (None) that comes
        before svtree may have concluded a failure (a critical service's finish may still
        run, or its monitor has not reported yet): it can prevent the failure (a
        requested stop ends in down, not "ended for good"). Certain becomes possible."""
        keep = []
        for lo, hi, who in self.failures_certain:
            if t < hi and (name is None or who == name):
                self.failures_possible.append(lo)
            else:
                keep.append((lo, hi, who))
        self.failures_certain = keep

    def _start_like(self, name: str, t: int, pending_s: float = 1.5) -> None:
        """A start the core makes (it waits for the dependencies)."""
        ok = self.deps_ok(name, t)
        if ok is None:
            self.status[name] = "unknown"
        elif ok is False:
            self.status[name] = "waiting"
        else:
            self.status[name] = self._run_state(name)
            if self.status[name] == "failed":
                self._oneshot_failed_run(name, t)
        self.pending[name] = max(self.pending[name], t + int(pending_s * 1e9))

    def _spawn_direct(self, name: str, t: int, pending_s: float) -> None:
        """A start the monitor makes on its own (restart policy, restart of a gave-up service)."""
        self.status[name] = self._run_state(name)
        if self.status[name] == "failed":
            self._oneshot_failed_run(name, t)
        self.pending[name] = max(self.pending[name], t + int(pending_s * 1e9))

    def converge(self, t: int) -> None:
        for name, until in list(self.deferred_start.items()):
            if t > until:
                del self.deferred_start[name]
            elif self.status.get(name) == "up":
                ok = self.deps_ok(name, t)
                if ok is not True:  # a dependency went away before the new record started
                    self.status[name] = "waiting" if ok is False else "unknown"
        changed = True
        while changed:
            changed = False
            for name in self.order():
                if self.status[name] == "waiting" and self.deps_ok(name, t) is not False:
                    self._start_like(name, t)
                    changed = self.status[name] != "waiting"
        self._update_booted(t)

    def stop_time(self, svc: Svc) -> float:
        """The longest one stop of svc can take: stop_timeout, then finish."""
        return svc.stop_timeout + svc.finish_time()

    # --- actions ----------------------------------------------------------------------

    def kill(self, name: str, sig: str, hit: bool, t: int) -> None:
        self._kill(name, sig, hit, t)
        self.converge(t)

    def _kill(self, name: str, sig: str, hit: bool, t: int) -> None:
        if not hit or name not in self.svcs:
            return
        svc = self.svcs[name]
        self.touched[name].append(t)
        s = self.status[name]
        if svc.type == "oneshot" or s == "flap":
            return
        if sig == "TERM" and svc.behaviour == "ignore_term":
            return
        kind = "zero" if sig == "TERM" and svc.behaviour in TRAPS_TERM else "failure"
        quiet = t >= self.pending[name]
        extra = svc.delay if (kind == "zero" and svc.behaviour == "slow_stop") else 0.0
        if s in ("down", "removed"):
            return  # a process still stopping: it stays down
        if svc.restarts_after(kind):
            if s != "up":
                self.status[name] = "unknown"
            self.pending[name] = max(self.pending[name], t + int(
                (extra + svc.finish_time() + RESTART_DELAY_MAX + 1.5) * 1e9))
            return
        if s == "up" and quiet:
            self.status[name], self.down_kind[name] = "down", "ended"
            if svc.critical:
                self.failures_certain.append(
                    (t, t + int((min(extra, svc.stop_timeout) + svc.finish_time() + 1.5) * 1e9), name))
        else:
            self.status[name] = "unknown"
            if svc.critical:
                self.failures_possible.append(t)
        self.pending[name] = max(self.pending[name], t + int((extra + svc.finish_time() + 1.5) * 1e9))

    def kill_monitor(self, name: str, hit: bool, t: int) -> None:
        if not hit or name not in self.svcs:
            return
        self.touched[name].append(t)
        self._interrupt_failure(name, t)
        if self.status[name] == "up" and t >= self.pending[name]:
            self._start_like(name, t)
        elif self.status[name] == "up":
            self.status[name] = "unknown"
        self.pending[name] = max(self.pending[name], t + int(2e9))
        self.converge(t)

    def ctl(self, verb: str, name: str, t: int) -> None:
        svc = self.svcs[name]
        self.touched[name].append(t)
        s = self.status[name]
        if verb in ("stop", "restart"):
            self._interrupt_failure(name, t)
            if svc.critical and svc.finish == "f125" and s != "down":
                # finish exits 125 after the requested stop: svtree counts that as "ended
                # for good" and fails the tree; the README can be read either way.
                self.failures_possible.append(t)
        if verb == "stop":
            self.status[name], self.down_kind[name] = "down", "user"
            self.user_want[name] = "down"
            self.pending[name] = max(self.pending[name], t + int((self.stop_time(svc) + 1.5) * 1e9))
        elif verb == "start":
            self.user_want[name] = "up"
            if s in ("down", "failed"):
                if s == "down" and self.down_kind.get(name) == "ended":
                    # want_up on a service whose monitor was sent `up` before: the
                    # monitor starts it again (it does not wait for dependencies)
                    self._spawn_direct(name, t, self.stop_time(svc) + 1.5)
                elif s == "failed":
                    self._spawn_direct(name, t, 1.5)
                else:
                    self._start_like(name, t, self.stop_time(svc) + 1.5)
        elif verb == "restart":
            self.user_want[name] = "up"
            pend = self.stop_time(svc) + (svc.delay if svc.behaviour == "slow_stop" else 0) + 1.5
            if svc.finish == "f125" and s in ("up", "done", "flap", "unknown"):
                # the requested stop runs finish, which exits 125: "not restarted, stays
                # down" (as in s6); a flapper or an unknown may have been between runs
                self.status[name] = "down" if s in ("up", "done") else "unknown"
                self.down_kind[name] = "ended"
                self.pending[name] = max(self.pending[name], t + int(pend * 1e9))
                self.converge(t)
                return
            if s == "up":
                self.expect_restart.append((name, t, "ctl restart"))
            if s in ("up", "done", "flap", "unknown"):
                if s == "done":
                    self._spawn_direct(name, t, svc.finish_time() + 1.5)
                self.pending[name] = max(self.pending[name], t + int(pend * 1e9))
            elif s == "failed":
                self._spawn_direct(name, t, pend)
            elif s == "down":
                if self.down_kind.get(name) == "ended":
                    self._spawn_direct(name, t, pend)
                else:
                    self._start_like(name, t, pend)
        self.converge(t)

    def reload_change(self, name: str, t: int) -> None:
        """The service's run changed: the old one stops, a new record starts it."""
        svc = self.svcs[name]
        self._interrupt_failure(name, t)
        if svc.critical and svc.finish == "f125":
            self.failures_possible.append(t)  # as for ctl stop/restart
        self.touched[name].append(t)
        s = self.status[name]
        want_down = (self.user_want.get(name) == "down") or (svc.down and self.user_want.get(name) != "up")
        if want_down:
            self.status[name], self.down_kind[name] = "down", "user" if self.user_want.get(name) else "file"
        elif self.user_want.get(name) and (
                (s == "down" and self.down_kind.get(name) == "ended") or svc.finish == "f125"):
            # the new record copies the old one's want, which a restart policy or a
            # finish exiting 125 (also after this stop) may have turned to down
            self.status[name] = "unknown"
        elif s != "unknown":
            self._start_like(name, t, self.stop_time(svc) + 2.0)
            if s == "up" and self.status[name] == "up":
                self.expect_restart.append((name, t, "reload changed it"))
            if self.status[name] == "up":
                self.deferred_start[name] = t + int((self.stop_time(svc) + 2.0) * 1e9)
        self.pending[name] = max(self.pending[name], t + int((self.stop_time(svc) + 2.0) * 1e9))
        self.converge(t)

    def reload_add(self, name: str, deps: tuple, t: int) -> Svc:
        svc = Svc(name, deps)
        self.svcs[name] = svc
        self.deps_union[name] = set(deps)
        self.touched[name] = [t]
        self.pending[name] = 0
        self._start_like(name, t, 2.0)
        self.converge(t)
        return svc

    def reload_remove(self, name: str, t: int) -> None:
        svc = self.svcs.pop(name)
        self._interrupt_failure(name, t)
        if svc.critical and svc.finish == "f125":
            self.failures_possible.append(t)  # svtree counts its finish's 125 as "ended"
        self.status[name] = "removed"
        self.touched[name].append(t)
        self.pending[name] = max(self.pending[name], t + int((self.stop_time(svc) + 2.0) * 1e9))
        self.removed_svc[name] = svc
        self._update_booted(t)

    # --- summaries --------------------------------------------------------------------

    def failed_certain(self) -> bool:
        return self.boot_failure or bool(self.failures_certain)

    def failed_possible(self) -> bool:
        return self.failed_certain() or bool(self.failures_possible)

    def all_svcs(self) -> "dict[str, Svc]":
        out = dict(self.removed_svc)
        out.update(self.svcs)
        return out


# --- running one example ---------------------------------------------------------------

class Violation(AssertionError):
    pass


@dataclass
class Done:
    """What the runner did: one row per action."""
    t: int
    kind: str
    target: str
    arg: str
    outcome: str
    t_end: int = 0


class Run:
    def __init__(self, ex: Example, hang_grace: float = 15.0) -> None:
        self.ex = ex
        self.hang_grace = hang_grace  # seconds past a bound before "it hangs"
        self.tree = FuzzTree()
        self.lib = os.path.join(self.tree.root, "lib.sh")
        self.token = f"SVFUZZ_TOKEN={uuid.uuid4().hex}"
        self.model = Model(ex)
        self.log: "list[Done]" = []
        self.violations: "list[str]" = []
        self.sv = None
        self.stdout = PipeReader()  # svtree's stdout: a pipe, whose reader `stall` pauses
        self.stalls: "list[threading.Timer]" = []
        self.observer: "Observer | None" = None
        self.t0 = now_ns()
        self.t_sigterm: "int | None" = None
        self.t_exit: "int | None" = None
        self.exit_code: "int | None" = None
        self.quiet_checked = False
        self._host_cache: "dict[int, int]" = {}
        self.leftovers: "list[int]" = []
        self.checked: "dict[str, int]" = {}  # how many comparisons each check made

    def count(self, what: str, n: int = 1) -> None:
        self.checked[what] = self.checked.get(what, 0) + n

    # --- files ------------------------------------------------------------------------

    def write(self) -> None:
        with open(self.lib, "w") as f:
            f.write(LIB.format(events=self.tree.events))
        for svc in self.ex.services:
            self.write_service(svc)
        with open(os.path.join(self.tree.dir, "svtree.toml"), "w") as f:
            f.write(f"kill_grace = {self.ex.kill_grace}\nmain_stop_timeout = {MAIN_STOP_TIMEOUT}\n")

    def write_service(self, svc: Svc) -> None:
        self.tree.service(svc.name, run_script(svc, self.lib), finish=finish_script(svc, self.lib),
                          toml=service_toml(svc), down=svc.down)

    # --- svtree ----------------------------------------------------------------------

    def start(self) -> None:
        # A scratch copy of the package (a planted bug) can go first on PYTHONPATH.
        path = svtree_path()
        svtree_source()
        token_name, token_value = self.token.split("=", 1)
        env = {"PYTHONPATH": path, token_name: token_value}
        cmd = main_command(self.ex, self.lib)
        if self.ex.mode == "pidns":
            self.sv = Svtree(self.tree, cmd=cmd, env=env, stdout=self.stdout)
        else:
            self.sv = SubreaperSvtree(self.tree, cmd=cmd, env=env, stdout=self.stdout)

    def alive(self) -> bool:
        return self.sv.proc.poll() is None

    def ctl(self, *args: str, timeout: float = 15) -> "subprocess.CompletedProcess | None":
        try:
            return self.sv.ctl(*args, timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def records(self) -> "list[Rec]":
        return parse_records(self.tree.events)

    def host_pid(self, name: str, nspid: int) -> "int | None":
        """The host pid of a service's main process `nspid` (or of the main command's
        daemon, name "maind"), if it is alive and is it."""
        if self.ex.mode == "subreaper":
            host = nspid
        else:
            host = self._host_cache.get(nspid)
            if host is None or nspid_of(host) != nspid:
                host = None
                for p in descendants(self.sv.pid1):
                    if nspid_of(p) == nspid:
                        host = p
                        break
            if host is None:
                return None
            self._host_cache[nspid] = host
        marker = b"N=maind;" if name == "maind" else f"/services.d/{name}/run".encode()
        if marker not in read_cmdline(host) or not is_alive(host):
            return None
        return host

    def current_main(self, name: str) -> "int | None":
        starts = [r for r in self.records() if r.kind == "start" and r.name == name]
        if not starts:
            return None
        return self.host_pid(name, starts[-1].pid)

    # --- phases ----------------------------------------------------------------------

    def boot(self) -> None:
        """Wait until the services the model says come up at boot are ready (or done):
        that is also the check that they do. Then, if every service should have been
        ready at once, the main command must have started."""
        m = self.model
        bound = 5.0 + sum(s.delay + 0.5 for s in self.ex.services)
        wait_for(lambda: os.path.exists(self.sv.socket) or not self.alive(), 20,
                 what="the control socket")
        if m.boot_failure:
            # A oneshot fails at boot: the tree must shut down by itself (exit 1). The
            # schedule then only meets a dead or dying svtree.
            if not self._wait_exit(bound + self.shutdown_bound() + self.hang_grace):
                self.violations.append(f"boot: a oneshot fails at boot, but svtree still runs "
                                       f"after {bound + self.shutdown_bound() + self.hang_grace:.1f}s")
            return
        names = sorted(n for n, st_ in m.status.items() if st_ in ("up", "done"))
        if names and self.alive():
            r = self.ctl("wait", "--ready", "--timeout", str(bound), *names, timeout=bound + 15)
            if (r is None or r.returncode != 0) and self.alive() and not m.boot_failure:
                self.violations.append(
                    f"boot: {', '.join(names)} should all be ready within {bound:.1f}s: "
                    f"{'timeout' if r is None else r.stderr.strip()}")
        if m.booted is True and self.ex.main and not m.boot_failure:
            started = self._poll(lambda: any(r.kind == "main-start" for r in self.records())
                                 or not self.alive(), 3.0 + RESTART_DELAY_MAX * 2)
            if not started:
                self.violations.append(
                    "boot: every service should have been ready, but the main command has not started")

    def act(self, a: Action) -> None:
        m = self.model
        time.sleep(a.delay)
        names = sorted(m.svcs)
        t = now_ns()
        if a.kind == "stall":
            # The reader of svtree's stdout pauses, and resumes by itself a while later
            # (the next actions happen meanwhile).
            self.stdout.pause()
            timer = threading.Timer(float(a.arg), self.stdout.resume)
            timer.daemon = True
            timer.start()
            self.stalls.append(timer)
            self.log.append(Done(t, "stall", "", a.arg, "stdout paused"))
            return
        if a.kind == "sigterm":
            if self.alive():
                self.t_sigterm = now_ns()
                self.sv.signal(signal.SIGTERM)
                m._interrupt_failure(None, self.t_sigterm)
            self.log.append(Done(t, "sigterm", "", "", "sent" if self.t_sigterm else "svtree gone"))
            return
        if not names:
            return
        name = names[a.target % len(names)]
        if not self.alive():
            self.log.append(Done(t, a.kind, name, a.arg, "svtree gone"))
            return
        if a.kind == "kill":
            host = self.current_main(name)
            hit = False
            if host is not None:
                t = now_ns()
                try:
                    os.kill(host, signum(a.arg))
                    hit = True
                except ProcessLookupError:
                    pass
            m.kill(name, a.arg, hit, t)
            self.log.append(Done(t, "kill", name, a.arg, f"hit {host}" if hit else "miss"))
        elif a.kind == "kill_monitor":
            host = self.current_main(name)
            monitor = None
            if host is not None:
                try:
                    monitor = int(proc_status(host)["PPid"])
                except (OSError, KeyError, ValueError):
                    monitor = None
                # A monitor is forked from the core (same command line). Right after its
                # monitor died, run's parent is the core itself (a subreaper): not a monitor.
                if monitor is not None and (monitor == self.sv.pid1
                                            or read_cmdline(monitor) != read_cmdline(self.sv.pid1)):
                    monitor = None
            hit = False
            if monitor is not None:
                t = now_ns()
                try:
                    os.kill(monitor, signum(a.arg))
                    hit = True
                except ProcessLookupError:
                    pass
            m.kill_monitor(name, hit, t)
            self.log.append(Done(t, "kill_monitor", name, a.arg, f"hit {monitor}" if hit else "miss"))
        elif a.kind == "ctl":
            r = self.ctl(a.arg, name)
            rc = None if r is None else r.returncode
            done = Done(t, "ctl", name, a.arg, f"rc={rc} {(r.stderr.strip() if r else 'timeout')}"[:120],
                        now_ns())
            self.log.append(done)
            if rc == 0:
                m.ctl(a.arg, name, t)
            elif self.before_any_shutdown(done.t_end):
                self.violations.append(f"ctl {a.arg} {name} failed before any shutdown: {done.outcome}")
        elif a.kind == "reload":
            self.reload(a, name, t)

    def before_any_shutdown(self, t: int, margin_s: float = 1.0) -> bool:
        lo = self.shutdown_lo(now=True)
        return lo is None or t < lo - int(margin_s * 1e9)

    def reload(self, a: Action, name: str, t: int) -> None:
        m = self.model
        d = self.tree.dir
        expect_ok = True
        undo = None
        m.edits += 1
        what = a.arg
        if what == "change":
            with open(os.path.join(d, name, "run"), "a") as f:
                f.write(f"# edit {m.edits}\n")
        elif what == "invalid":
            expect_ok = False
            path = os.path.join(d, name, "service.toml")
            before = open(path).read()
            with open(path, "a") as f:
                f.write("no_such_key = 1\n")
            undo = lambda: open(path, "w").write(before)  # noqa: E731
        elif what == "add":
            new = f"z{m.added}"
            m.added += 1
            deps = () if a.target % 2 == 0 else (name,)
            svc = Svc(new, deps)
            self.write_service(svc)
            name = new
        elif what == "remove" and any(name in s.deps for s in m.svcs.values()):
            # Removing a service others depend on makes an invalid tree, but moving its
            # directory away would also take the run file from under a service that
            # restarts meanwhile: make the tree invalid by naming a missing dependency.
            expect_ok = False
            what = "remove (has dependents: a dangling dependency instead)"
            path = os.path.join(d, name, "service.toml")
            before = open(path).read()
            with open(path, "a") as f:
                f.write(f'depends_on = ["{name}-gone"]\n' if "depends_on" not in before else "")
                if "depends_on" in before:
                    f.write("no_such_key = 2\n")
            undo = lambda: open(path, "w").write(before)  # noqa: E731
        elif what == "remove":
            aside = os.path.join(self.tree.root, f"removed-{name}-{m.edits}")
            os.rename(os.path.join(d, name), aside)
            restore = lambda: os.rename(aside, os.path.join(d, name))  # noqa: E731
        r = self.ctl("reload", timeout=5 + self.hang_grace)
        rc = None if r is None else r.returncode
        t_end = now_ns()
        out = "timeout" if r is None else (r.stdout + r.stderr).strip().replace("\n", " | ")
        self.log.append(Done(t, "reload", name, what, f"rc={rc} {out}"[:160], t_end))
        if undo is not None:
            undo()
        elif what == "remove" and rc != 0:
            restore()  # not applied: the service stays, with its files
        if rc == 0 and expect_ok:
            if what == "change":
                m.reload_change(name, t)
            elif what == "add":
                m.reload_add(name, svc.deps, t)
            elif what == "remove":
                m.reload_remove(name, t)
            # "remove (has dependents ...)" is invalid: expect_ok is False
        elif self.before_any_shutdown(t_end) and self.alive():
            if expect_ok:
                self.violations.append(f"reload ({what} {name}) should apply, got {out}")
            elif rc == 0:
                self.violations.append(f"reload ({what} {name}) made an invalid tree but was accepted: {out}")

    # --- the quiet moment --------------------------------------------------------------

    def quiet_allowed(self) -> bool:
        m = self.model
        if not self.alive() or self.t_sigterm is not None or m.failed_possible():
            return False
        if self.ex.main:
            recs = self.records()
            if any(r.kind == "main-exit" for r in recs):
                return False
            starts = [r for r in recs if r.kind == "main-start"]
            end = (starts[0].ts if starts else now_ns()) + int(self.ex.main[0] * 1e9)
            if end < now_ns() + int(25e9):
                return False
        return True

    def quiet_checks(self) -> None:
        m = self.model
        wait_until = max([now_ns()] + list(m.pending.values())) + int(0.3e9)
        while now_ns() < wait_until and self.alive():
            time.sleep(0.05)
        if not self.quiet_allowed():
            return
        self.quiet_checked = True
        self.check_reaping()
        recs = self.records()
        for name, s in sorted(m.status.items()):
            svc = m.all_svcs().get(name)
            if svc is None:
                continue
            if s in ("up", "down", "removed"):
                self.count(f"model {s}")
            if s == "up":
                ok = self._poll(lambda: self.current_main(name) is not None, 8.0)
                if not ok:
                    last = [r for r in self.records() if r.name == name][-3:]
                    self.violations.append(
                        f"{name} should be up (it was {self._why(name)}), but no live process "
                        f"runs its latest start; its last lines: {self._lines(last)}")
                elif name in m.boot_up and not m.touched.get(name):
                    self.count("kept pid")
                    starts = [r for r in recs if r.kind == "start" and r.name == name]
                    if len(starts) != 1:
                        self.violations.append(
                            f"{name} was never touched and should have kept its first pid, but it "
                            f"started {len(starts)} times: {self._lines(starts)}")
            elif s in ("down", "removed"):
                ok = self._poll(lambda: self.current_main(name) is None, self.model.stop_time(svc) + 8.0)
                if not ok:
                    self.violations.append(
                        f"{name} should be {s} ({self._why(name)}), but its process is alive")
                else:
                    t_last = max(m.touched.get(name) or [self.t0])
                    late = [r for r in self.records() if r.kind == "start" and r.name == name
                            and r.ts > t_last + int(1.0e9) and r.ts > m.pending[name]]
                    if s == "down" and late:
                        self.violations.append(
                            f"{name} should stay {s} ({self._why(name)}), but started again: "
                            f"{self._lines(late)}")

        recs = self.records()  # again: the polls above took time
        for name, since, why in m.expect_restart:
            if m.status.get(name) != "up":
                continue
            self.count("restarted")
            if not any(r.kind == "start" and r.name == name and r.ts > since for r in recs):
                self.violations.append(f"{name} should have restarted ({why} at {fmt_t(since, self.t0)}), "
                                       "but it has no start since")

    def _why(self, name: str) -> str:
        acts = [f"{d.kind} {d.arg} at {fmt_t(d.t, self.t0)}" for d in self.log if d.target == name]
        return "boot" + ("; " + ", ".join(acts) if acts else "") + \
            (f"; down because {self.model.down_kind.get(name)}" if self.model.status.get(name) == "down" else "")

    def _lines(self, recs) -> str:
        return "; ".join(f"{r.kind} {r.name} {r.pid} {fmt_t(r.ts, self.t0)} {r.extra}".strip() for r in recs)

    @staticmethod
    def _poll(pred, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if pred():
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    def check_reaping(self) -> None:
        """Zombies whose parent is svtree or a monitor, and live processes hanging off
        svtree that no monitor supervises, that survive ~1.5 s of reap passes."""
        pid1 = self.sv.pid1
        me = read_cmdline(pid1)
        snaps = []
        for i in range(4):
            if i:
                time.sleep(0.5)
            if not self.alive():
                return
            kids = children(pid1)
            monitors = {p for p in kids if read_cmdline(p) == me}
            reapers = {pid1} | monitors
            bad_z, stray = set(), set()
            for p in [pid1, *descendants(pid1)]:
                try:
                    s = proc_status(p)
                except OSError:
                    continue
                ppid = int(s.get("PPid", "0"))
                if s.get("State", "").startswith("Z") and ppid in reapers:
                    bad_z.add((p, ppid, s.get("Name")))
            for p in kids:
                if p in monitors or not is_alive(p):
                    continue
                if b"N=main;" in read_cmdline(p) or b"N=maind;" in read_cmdline(p):
                    continue  # the main command and what it left: not a service's
                stray.add((p, read_cmdline(p).replace(b"\0", b" ").decode(errors="replace")[:80]))
            snaps.append((bad_z, stray))
        self.count("reap snapshots", len(snaps))
        z = set.intersection(*[s[0] for s in snaps])
        left = set.intersection(*[s[1] for s in snaps])
        if z:
            self.violations.append(f"zombies not reaped by svtree or a monitor for 1.5s: {sorted(z)}")
        if left:
            self.violations.append(f"processes left unsupervised under svtree for 1.5s: {sorted(left)}")

    # --- shutdown ----------------------------------------------------------------------

    def shutdown_lo(self, now: bool = False) -> "int | None":
        """The earliest moment the shutdown may have begun."""
        m = self.model
        cands = [t for t, _, _ in m.failures_certain] + list(m.failures_possible)
        if self.t_sigterm is not None:
            cands.append(self.t_sigterm)
        recs = self.records()
        cands += [r.ts for r in recs if r.kind == "main-exit"]
        if m.boot_failure:
            fails = [r.ts for r in recs if r.kind == "oneshot-exit" and r.extra != "0"]
            cands += fails[:1]
        if self.t_exit is not None and not cands:
            cands.append(self.t_exit)
        return min(cands) if cands else None

    def shutdown_hi(self, possible: bool = False) -> "int | None":
        """The latest moment by which the shutdown had certainly begun; with `possible`,
        also by which a failure that may shut svtree down would have (for the order
        check only: as a reference of the shutdown's duration it would inflate it)."""
        m = self.model
        cands = [hi for _, hi, _ in m.failures_certain]
        if possible:
            finish = max((s.finish_time() for s in m.all_svcs().values()), default=0.0)
            cands += [t + int((finish + 3.0) * 1e9) for t in m.failures_possible if t]
        if self.t_sigterm is not None:
            cands.append(self.t_sigterm)
        recs = self.records()
        cands += [r.ts + int(0.5e9) for r in recs if r.kind == "main-exit"]
        if m.boot_failure:
            fails = [r.ts for r in recs if r.kind == "oneshot-exit" and r.extra != "0"]
            cands += [f + int(0.5e9) for f in fails[:1]]
        return min(cands) if cands else None

    def shutdown_bound(self) -> float:
        """Seconds the ordered shutdown may take: the longest chain of stops through the
        dependency graph, then kill_grace, plus room for a loaded 2-core machine."""
        svcs = self.model.all_svcs()
        memo: "dict[str, float]" = {}

        def chain(n: str) -> float:
            if n not in memo:
                svc = svcs[n]
                own = svc.stop_timeout + svc.finish_time() + 0.3
                if svc.behaviour == "slow_stop":
                    own += 0.2
                after = [chain(p) for p in self.model.dependents_closure(n) if n in self.model.deps_union.get(p, ())]
                memo[n] = own + max(after, default=0.0)
            return memo[n]

        longest = max((chain(n) for n in svcs), default=0.0)
        # ctl actions answered during the shutdown may add one more stop each
        extra = sum(self.model.stop_time(svcs[d.target]) + RESTART_DELAY_MAX
                    for d in self.log if d.kind == "ctl" and d.outcome.startswith("rc=0")
                    and d.target in svcs and self.shutdown_lo() is not None and d.t >= self.shutdown_lo())
        return longest + extra + self.ex.kill_grace + (MAIN_STOP_TIMEOUT if self.ex.main else 0) \
            + 4.0 + 0.5 * len(svcs)

    def _wait_exit(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        return not self.alive()

    def finish(self) -> None:
        """Let svtree end by itself when it should (the main command's exit, a failure),
        else send SIGTERM; wait for its exit."""
        m = self.model
        if self.alive() and self.t_sigterm is None:
            own_end, why = None, ""
            if m.failed_certain():
                own_end = (self.shutdown_hi() or now_ns()) + int(self.shutdown_bound() * 1e9)
                why = "a critical service ended for good or a boot oneshot failed"
            elif m.failures_possible:
                # It may shut down by itself (how the README's "ends for good" is read):
                # give it the time, so that such a shutdown is checked too, then SIGTERM.
                self._wait_exit(max(0.0, (max(m.failures_possible) - now_ns()) / 1e9)
                                + max(s.finish_time() for s in m.all_svcs().values()) + 3.0)
            elif self.ex.main:
                starts = [r for r in self.records() if r.kind == "main-start"]
                if starts:
                    main_end = starts[0].ts + int(self.ex.main[0] * 1e9)
                    if main_end < now_ns() + int(12e9):
                        own_end = main_end + int(self.shutdown_bound() * 1e9)
                        why = "the main command exited"
            if own_end is not None:
                self._wait_exit(max(0.0, (own_end - now_ns()) / 1e9) + self.hang_grace / 2)
                if self.alive():
                    self.violations.append(f"svtree should have shut down by itself ({why}), "
                                           "but it still runs")
            if self.alive():
                self.t_sigterm = now_ns()
                self.sv.signal(signal.SIGTERM)
        self._wait_exit(self.shutdown_bound() + self.hang_grace)
        self.t_exit = (self.observer.exited_at if self.observer else None) or now_ns()
        if self.alive():
            self.violations.append(f"svtree did not exit within the shutdown bound + {self.hang_grace:.0f}s "
                                   f"({self.shutdown_bound():.1f}s + {self.hang_grace:.0f}s); killed it")
            return
        self.exit_code = self.sv.proc.returncode
        # Nothing of the tree may be left (in a PID namespace the kernel sees to it).
        self.leftovers = token_pids(self.token.encode())
        self.count("nothing left")
        if self.leftovers:
            desc = [(p, read_cmdline(p).replace(b"\0", b" ").decode(errors="replace")[:80])
                    for p in self.leftovers]
            self.violations.append(f"processes of the tree outlived svtree: {desc}")

    # --- the checks on what was recorded -------------------------------------------------

    def check_all(self) -> None:
        recs = self.records()
        self.check_exit_code(recs)
        self.check_bound()
        self.check_order(recs)
        self.check_boot_order(recs)
        self.check_kill_timing(recs)
        self.check_finish_timing(recs)
        self.check_sweep_timing(recs)
        self.check_output(recs)
        self.check_internal_errors()

    def check_exit_code(self, recs) -> None:
        if self.exit_code is None:
            return
        m = self.model
        mains = [r for r in recs if r.kind == "main-start"]
        exits = [r for r in recs if r.kind == "main-exit"]
        if exits:
            base = {int(exits[0].extra)}
        elif mains:
            base = {128 + signal.SIGTERM}
        elif self.ex.main:
            # The shutdown may have begun just after svtree started the main command and
            # before it could record its start: SIGTERM ended it unrecorded, or it never ran.
            base = {0, 128 + signal.SIGTERM}
        else:
            base = {0}
        boot_failed = [r for r in recs if r.kind == "oneshot-exit" and r.extra != "0"]
        if m.boot_failure and not m.failures_certain and not boot_failed:
            want = {1} | base  # the failing oneshot was stopped before it could fail
        elif m.failed_certain():
            want = {1}
        elif m.failed_possible():
            want = {1} | base
        else:
            want = base
        self.count("exit code")
        if self.exit_code not in want:
            why = []
            if m.boot_failure:
                why.append("a oneshot fails at boot")
            if m.failures_certain:
                why.append("a critical service ended for good")
            if exits:
                why.append(f"the main command exited {exits[0].extra}")
            elif mains:
                why.append("the main command was stopped by SIGTERM")
            self.violations.append(f"svtree exited {self.exit_code}, expected {sorted(want)} "
                                   f"({', '.join(why) or 'plain shutdown'})")

    def check_bound(self) -> None:
        hi = self.shutdown_hi()
        if hi is None or self.exit_code is None:
            return
        took = (self.t_exit - hi) / 1e9
        bound = self.shutdown_bound()
        self.count("bound")
        if took > bound:
            self.violations.append(f"shutdown took {took:.2f}s, more than the bound {bound:.2f}s")

    def check_order(self, recs) -> None:
        """Every dependent (transitively, in any version of the tree) was gone before its
        dependency got the stop signal of the shutdown."""
        lo, hi = self.shutdown_lo(), self.shutdown_hi(possible=True)
        if hi is None:
            return
        m = self.model
        svcs = m.all_svcs()
        window = int((1.5 + sum(m.stop_time(s) for s in svcs.values())) * 1e9)
        for dep, svc in sorted(svcs.items()):
            # Lines of dep caused by our own requests (ctl, reload, kill -TERM) near the
            # shutdown are not the shutdown's: leave dep out then.
            disturbed = [d for d in self.log if d.target == dep and d.t >= lo - window and (
                d.kind in ("ctl", "reload") or (d.kind == "kill" and d.arg == "TERM"))]
            if disturbed:
                continue
            mark_kind = "finish-start" if svc.type == "oneshot" else "term"
            marks = [r for r in recs if r.name == dep and r.kind == mark_kind and r.ts >= hi]
            if not marks:
                continue
            mark = marks[0]
            for p in sorted(m.dependents_closure(dep)):
                self.count("order", sum(1 for r in recs if r.name == p))
                late = [r for r in recs if r.name == p and r.ts > mark.ts]
                if late:
                    self.violations.append(
                        f"order: {dep} got its stop signal ({mark_kind} at {fmt_t(mark.ts, self.t0)}) "
                        f"while its dependent {p} was still alive: {self._lines(late[:4])}")

    def check_boot_order(self, recs) -> None:
        """A dependent's first start comes after its dependencies were ready (notify) or
        done (oneshot): those lines are written before the readiness is signalled."""
        for svc in self.ex.services:
            first = next((r for r in recs if r.kind == "start" and r.name == svc.name), None)
            if first is None:
                continue
            for d in svc.deps:
                dsvc = self.model.all_svcs().get(d)
                if dsvc is None:
                    continue
                if dsvc.type == "oneshot":
                    kind, extra = "oneshot-exit", "0"
                elif dsvc.behaviour == "notify":
                    kind, extra = "ready", None
                else:
                    continue
                ready = next((r for r in recs if r.name == d and r.kind == kind
                              and (extra is None or r.extra == extra)), None)
                self.count("start order")
                if ready is None or ready.ts > first.ts:
                    self.violations.append(
                        f"start order: {svc.name} started at {fmt_t(first.ts, self.t0)} before its "
                        f"dependency {d} was {'done' if kind != 'ready' else 'ready'} "
                        f"({fmt_t(ready.ts if ready else None, self.t0)})")

    def check_kill_timing(self, recs) -> None:
        """SIGKILL came no earlier than stop_timeout after the stop signal, and not much later."""
        svcs = self.model.all_svcs()
        ours = {}  # (name) -> times of our own kills (any signal) and monitor kills
        for d in self.log:
            if d.kind in ("kill", "kill_monitor") and d.outcome.startswith("hit"):
                ours.setdefault(d.target, []).append((d.t, d.kind, d.arg))
        for svc in svcs.values():
            if svc.type != "longrun" or svc.behaviour not in ("ignore_term", "slow_stop"):
                continue
            starts = [r for r in recs if r.kind == "start" and r.name == svc.name]
            for s in starts:
                terms = [r for r in recs if r.kind == "term" and r.name == svc.name and r.pid == s.pid]
                if not terms:
                    self._died_without_term(svc, s, recs, ours)
                    continue
                term = terms[0]
                alive = [r for r in recs if r.kind == "alive" and r.name == svc.name and r.pid == s.pid]
                death = self.observer.deaths.get((svc.name, s.pid)) if self.observer else None
                if death is not None:
                    end = death
                else:
                    end = alive[-1].ts if alive else term.ts
                if any(s.ts <= t <= end + int(1e9) for t, _, _ in ours.get(svc.name, [])):
                    continue  # we killed it (or its monitor) ourselves, or sent our own TERM
                tol = 0.15
                if svc.behaviour == "ignore_term" and death is not None:
                    self.count("kill not early")
                    lived = (death - term.ts) / 1e9
                    if lived < svc.stop_timeout - tol:
                        self.violations.append(
                            f"kill: {svc.name} (pid {s.pid}) ignores TERM and died {lived:.3f}s after "
                            f"its stop signal, before stop_timeout={svc.stop_timeout}")
                if alive:
                    self.count("kill not late")
                    lasted = (alive[-1].ts - term.ts) / 1e9
                    if lasted > svc.stop_timeout + 1.5:
                        self.violations.append(
                            f"kill: {svc.name} (pid {s.pid}) was still alive {lasted:.3f}s after its "
                            f"stop signal, stop_timeout={svc.stop_timeout}")

    def check_sweep_timing(self, recs) -> None:
        """The main command's daemon is left for the final sweep: SIGTERM, and SIGKILL
        no earlier than kill_grace (it ignores TERM when stubborn), no later than +slack."""
        for (name, pid), death in sorted(self.observer.deaths.items() if self.observer else []):
            if name != "maind":
                continue
            terms = [r for r in recs if r.kind == "cterm" and r.name == "maind" and r.pid == pid]
            if not terms or self.exit_code is None:
                continue
            self.count("sweep kill")
            lived = (death - terms[0].ts) / 1e9
            if lived < self.ex.kill_grace - 0.15:
                self.violations.append(
                    f"sweep: the main command's daemon ignored SIGTERM and died {lived:.3f}s after it, "
                    f"before kill_grace={self.ex.kill_grace}")
            beats = [r for r in recs if r.kind == "mhb" and r.pid == pid and r.ts > terms[0].ts]
            if beats and (beats[-1].ts - terms[0].ts) / 1e9 > self.ex.kill_grace + 1.5:
                self.violations.append(
                    f"sweep: the main command's daemon was alive {(beats[-1].ts - terms[0].ts) / 1e9:.3f}s "
                    f"after SIGTERM, kill_grace={self.ex.kill_grace}")

    def _died_without_term(self, svc: Svc, start: Rec, recs, ours) -> None:
        """A TERM-ignoring main that died while svtree ran, not by our hand, with no `term`
        line (written the instant its trap runs): SIGKILL without the stop signal first."""
        if svc.behaviour != "ignore_term" or not self.observer:
            return
        death = self.observer.deaths.get((svc.name, start.pid))
        if death is None:
            return
        # (Killed by the kernel as svtree, PID 1 of the namespace, exited: that is wrong
        # too, svtree must stop every service before it exits.)
        if any(start.ts <= t <= death + int(1e9) for t, _, _ in ours.get(svc.name, [])):
            return
        self.count("kill not early")
        self.violations.append(
            f"kill: {svc.name} (pid {start.pid}) ignores TERM and was killed before its TERM trap "
            f"could run (SIGKILL without, or at once after, the stop signal), "
            f"{(death - start.ts) / 1e9:.3f}s after it started")

    def check_finish_timing(self, recs) -> None:
        for svc in self.model.all_svcs().values():
            if svc.finish != "hung":
                continue
            for s in [r for r in recs if r.kind == "finish-start" and r.name == svc.name]:
                alive = [r for r in recs if r.kind == "fin-alive" and r.pid == s.pid]
                self.count("finish killed", bool(alive))
                if alive and (alive[-1].ts - s.ts) / 1e9 > svc.finish_timeout + 1.5:
                    self.violations.append(
                        f"finish: {svc.name}'s hung finish (pid {s.pid}) was alive "
                        f"{(alive[-1].ts - s.ts) / 1e9:.3f}s after it began, finish_timeout="
                        f"{svc.finish_timeout}")

    def check_internal_errors(self) -> None:
        """svtree must never log an internal error (its guard against its own bugs), and
        no monitor may die of one. A crash detector on svtree's log, not an expectation."""
        try:
            err = self.sv.stderr()
        except OSError:
            return
        self.count("internal errors")
        for line in err.splitlines():
            if " | " in line.split("internal", 1)[0]:
                continue  # a service's own output
            if "internal_error" in line or ("svtree monitor" in line and "internal error" in line):
                self.violations.append("svtree logged an internal error: " + line[:600])
                return

    def check_output(self, recs) -> None:
        if self.exit_code is None:
            return
        flooded = [r for r in recs if r.kind == "flooded"]
        if not flooded:
            return
        # Every writer of svtree's stdout is gone once svtree has exited (in a PID
        # namespace; a subreaper's sweep ended the rest): the reader sees EOF.
        for timer in self.stalls:
            timer.join(5)
        self.stdout.resume()
        self._poll(lambda: self.stdout.eof, 10.0)
        out, err = self.sv.stdout(), self.sv.stderr()
        for r in flooded:
            for text, word in ((out, "flood"), (err, "eflood")):
                nums = [int(n) for n in re.findall(rf"^{re.escape(r.name)} \| {word} {r.pid} (\d+)$", text, re.M)]
                self.count("output lines", len(nums))
                if len(nums) != FLOOD_LINES:
                    self.violations.append(
                        f"output: {r.name} (pid {r.pid}) wrote {FLOOD_LINES} '{word}' lines, "
                        f"svtree passed on {len(nums)}")
                elif nums != list(range(1, FLOOD_LINES + 1)):
                    bad = next(i for i, n in enumerate(nums) if n != i + 1)
                    self.violations.append(
                        f"output: {r.name} (pid {r.pid})'s '{word}' lines out of order: line {bad + 1} "
                        f"is {nums[bad]}")

    # --- the whole story ---------------------------------------------------------------

    def go(self) -> None:
        self.write()
        self.start()
        watched = {s.name for s in self.ex.services if s.behaviour in ("ignore_term", "slow_stop")}
        watched.add("maind")
        self.observer = Observer(self, watched)
        self.observer.start()
        self.boot()
        if not self.alive() and self.observer.exited_at is None:
            self.observer.exited_at = now_ns()
        for a in self.ex.actions:
            self.act(a)
        if self.quiet_allowed():
            self.quiet_checks()
        self.finish()
        time.sleep(0.05)
        self.observer.halt.set()
        self.observer.join(5)
        if self.exit_code is not None:
            self.check_all()

    def kill_everything(self) -> None:
        """By pid: svtree, everything under it, then anything still carrying the token."""
        if self.sv is not None:
            pids = [self.sv.pid1, *descendants(self.sv.pid1)] if self.alive() else []
            for p in pids:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.sv.kill()
        for _ in range(20):
            left = token_pids(self.token.encode())
            if not left:
                break
            for p in left:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        self.stdout.close()

    def report(self) -> str:
        lines = [describe(self.ex), "", f"svtree from {svtree_source()}", "violations:"]
        lines += [f"  - {v}" for v in self.violations]
        lines.append(f"exit code {self.exit_code}; tree kept at {self.tree.root}")
        lines.append("checks made: " + ", ".join(f"{k} {v}" for k, v in sorted(self.checked.items())))
        lines.append("what the runner did (times from svtree's start):")
        for d in self.log:
            lines.append(f"  {fmt_t(d.t, self.t0)} {d.kind} {d.target} {d.arg}: {d.outcome}")
        if self.t_sigterm:
            lines.append(f"  {fmt_t(self.t_sigterm, self.t0)} SIGTERM to svtree")
        lines.append(f"  {fmt_t(self.t_exit, self.t0)} svtree exited")
        lines.append("model: " + ", ".join(f"{n}={s}" for n, s in sorted(self.model.status.items())))
        try:
            err = self.sv.stderr().splitlines()
        except Exception:  # noqa: BLE001 - a report must not fail
            err = []
        keep = [line for line in err if " | " not in line][-40:]
        lines.append("svtree's stderr (last 40 lines of its own):")
        lines += ["  " + line[:240] for line in keep]
        return "\n".join(lines)


def run_example(ex: Example, hang_grace: float = 15.0) -> None:
    """Run one example; raise Violation with a full report when a check fails.
    hang_grace: seconds past a computed bound before svtree counts as hung."""
    run = Run(ex, hang_grace)
    started = time.monotonic()
    keep = False
    try:
        run.go()
        if run.violations:
            keep = _STATE["kept"] < CONFIG["keep_dirs"]
            _STATE["kept"] += keep
            if _STATE["first_failure"] is None:
                _STATE["first_failure"] = time.monotonic()
            report = run.report()
            try:
                with open(CONFIG["failures"], "a") as f:
                    f.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}\n{report}\n\n")
            except OSError:
                pass
            raise Violation(report)
        if os.environ.get("SVTREE_FUZZ_VERBOSE"):
            sys.stderr.write(run.report() + "\n\n")
    finally:
        run.kill_everything()
        _STATE["examples"] += 1
        if CONFIG["stats"]:
            try:
                with open(CONFIG["stats"], "a") as f:
                    f.write(json.dumps({
                        "t": time.time(), "seconds": round(time.monotonic() - started, 2),
                        "services": len(ex.services), "actions": len(ex.actions), "mode": ex.mode,
                        "main": ex.main is not None, "quiet_checked": run.quiet_checked,
                        "violations": len(run.violations), "exit_code": run.exit_code,
                        "checked": run.checked,
                    }) + "\n")
            except OSError:
                pass
        if not keep:
            run.tree.cleanup()
