"""The system harness: the real svtree as PID 1 of a fresh PID namespace, with real scripts.

Used by tests/system (its conftest.py holds the fixtures), tests/fuzz, tests/bundle and
tests/container; they import it as `harness` (pyproject.toml puts tests/ on pytest's
pythonpath).

Every tree lives in a tempfile directory under /tmp (files on the work disk are slow to
create). Every svtree started here is killed by pid at teardown: SIGKILL to the
namespace's PID 1 makes the kernel kill everything else in it, so nothing outlives a test.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from datetime import datetime

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def have_unshare() -> bool:
    if shutil.which("unshare") is None or os.getuid() != 0:
        return False
    r = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"],
                       capture_output=True, timeout=10)
    return r.returncode == 0


UNSHARE_OK = have_unshare()
needs_pidns = pytest.mark.skipif(not UNSHARE_OK, reason="needs root and unshare --pid (PID namespaces)")


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):
    """Poll a cheap predicate (a file, /proc) until true; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Tree:
    """A service tree on disk, built from Python."""

    def __init__(self) -> None:
        self.root = tempfile.mkdtemp(prefix="svtree-test-")
        self.dir = os.path.join(self.root, "services.d")
        os.mkdir(self.dir)
        self.events = os.path.join(self.root, "events")  # services append lines here
        open(self.events, "w").close()

    def service(self, name: str, run: str, *, finish: "str | None" = None,
                toml: "str | None" = None, down: bool = False, files: "dict | None" = None) -> str:
        d = os.path.join(self.dir, name)
        os.makedirs(d, exist_ok=True)
        self.write(f"{name}/run", run, executable=True)
        if finish is not None:
            self.write(f"{name}/finish", finish, executable=True)
        if toml is not None:
            self.write(f"{name}/service.toml", toml)
        if down:
            self.write(f"{name}/down", "")
        for rel, text in (files or {}).items():
            self.write(f"{name}/{rel}", text)
        return d

    def write(self, rel: str, text: str, executable: bool = False) -> str:
        path = os.path.join(self.dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(textwrap.dedent(text).lstrip("\n"))
        if executable:
            os.chmod(path, 0o755)
        return path

    def sh(self, body: str) -> str:
        """A /bin/sh run script; $EVENTS is the shared events file."""
        return "#!/bin/sh\nEVENTS=" + self.events + "\n" + textwrap.dedent(body).lstrip("\n")

    def event_lines(self) -> "list[list[str]]":
        with open(self.events) as f:
            return [line.split() for line in f if line.strip()]

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class PipeReader:
    """A pipe for svtree's stdout or stderr, read by a thread that the test can pause
    (a log reader that stalls: `svtree | less` left paused, a blocked log driver) and
    resume, or that reads slowly (`delay`). Pausing takes effect after the read in
    progress (at most READ bytes)."""

    READ = 65536

    def __init__(self, paused: bool = False, delay: float = 0.0) -> None:
        self.delay = delay  # seconds after each read: a slow reader
        self.r, self.w = os.pipe()
        self.data = bytearray()
        self.eof = False
        self.lock = threading.Lock()
        self.go = threading.Event()
        if not paused:
            self.go.set()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            self.go.wait()
            try:
                chunk = os.read(self.r, self.READ)
            except OSError:
                chunk = b""
            if not chunk:
                self.eof = True
                return
            with self.lock:
                self.data += chunk
            if self.delay:
                time.sleep(self.delay)

    def pause(self) -> None:
        self.go.clear()

    def resume(self) -> None:
        self.go.set()

    def text(self) -> str:
        with self.lock:
            return self.data.decode(errors="replace")

    def started(self) -> None:
        """svtree has the write end now: drop ours, so EOF comes when svtree is gone."""
        if self.w >= 0:
            os.close(self.w)
            self.w = -1

    def close(self) -> None:
        """After svtree is gone (and with it every writer): read to EOF, close."""
        self.started()
        self.resume()
        self.thread.join(10)
        if not self.thread.is_alive() and self.r >= 0:
            os.close(self.r)
            self.r = -1


class Svtree:
    """svtree running as PID 1 in its own PID namespace.

    stdout / stderr: a PipeReader (the test reads svtree's output through a pipe it can
    stall), a path (such as /dev/null), or None for a file under the tree's root."""

    readers: "dict[int, PipeReader | None]" = {1: None, 2: None}  # a subclass's own files

    def __init__(self, tree: Tree, args=(), cmd=None, env=None, stdin=subprocess.DEVNULL,
                 watch: bool = False, wrap=(), source=None, stdout=None, stderr=None,
                 run_tmpfs: "str | None" = None) -> None:
        """run_tmpfs: mount a tmpfs of its own on /run in svtree's namespace first (as a
        container has), with these mount options ("rw", "ro"): for what svtree writes
        there, which the test reads through the `root` link of svtree's /proc entry (the
        view of its mount namespace). Always for an s6-overlay tree: svtree writes
        /run/s6/container_environment, which must not be the host's."""
        if run_tmpfs is None and source is not None and "--s6-overlay" in source:
            run_tmpfs = "rw"
        self.tree = tree
        self.socket = os.path.join(tree.root, "control.sock")
        self.stdout_path = os.path.join(tree.root, "stdout")
        self.stderr_path = os.path.join(tree.root, "stderr")
        # The shell mounts, then execs svtree: svtree is still the namespace's PID 1, and
        # the mount (unshare makes mounts private) stays in its mount namespace.
        prelude = [] if run_tmpfs is None else [
            "/bin/sh", "-c", f'mount -t tmpfs -o {run_tmpfs},mode=755 tmpfs /run && exec "$@"', "sh"]
        argv = [*wrap, "unshare", "--pid", "--fork", "--mount-proc", "--kill-child", *prelude,
                sys.executable, "-m", "svtree", "run",
                *(source if source is not None else ["--dir", tree.dir]),  # or ["--s6-overlay", ROOT]
                "--socket", self.socket,
                *([] if watch else ["--no-watch"]), *args]
        if cmd:
            argv += ["--", *cmd]
        full_env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
        full_env.pop("SVTREE_SOCKET", None)
        full_env.update(env or {})
        out, err = self._open_outputs(stdout, stderr)
        self.proc = subprocess.Popen(argv, stdin=stdin, stdout=out, stderr=err,
                                     env=full_env, start_new_session=True, cwd=tree.root)
        self._outputs_given()
        self.pid1 = wait_for(self._find_pid1, 10, what="svtree to start in its namespace")

    def _open_outputs(self, stdout, stderr):
        """The stdout and stderr to give svtree (see the class's docstring)."""
        self.readers = {1: stdout if isinstance(stdout, PipeReader) else None,
                        2: stderr if isinstance(stderr, PipeReader) else None}
        if isinstance(stdout, str):
            self.stdout_path = stdout
        if isinstance(stderr, str):
            self.stderr_path = stderr
        self.out = None if self.readers[1] else open(self.stdout_path, "wb")
        self.err = None if self.readers[2] else open(self.stderr_path, "wb")
        return (self.readers[1].w if self.readers[1] else self.out,
                self.readers[2].w if self.readers[2] else self.err)

    def _outputs_given(self) -> None:
        for reader in self.readers.values():
            if reader is not None:
                reader.started()

    def _find_pid1(self):
        kids = children(self.proc.pid)
        return kids[0] if kids else None

    # --- control ------------------------------------------------------------------------

    def ctl(self, *args, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "svtree", "ctl", "--socket", self.socket, *args],
            capture_output=True, text=True, timeout=timeout,
            env=dict(os.environ, PYTHONPATH=REPO),
        )

    def wait_socket(self, timeout: float = 15) -> None:
        wait_for(lambda: os.path.exists(self.socket), timeout, what="the control socket")

    def wait_watcher(self, timeout: float = 20) -> None:
        """Until the file watcher has set its watches (its `watcher_ready` event): an
        edit made before then is caught by the reload that event triggers, which a test
        counting reloads must not mistake for its own."""
        wait_for(lambda: "watcher_ready" in self.stderr(), timeout, what="the file watcher")

    def status(self) -> "dict[str, dict]":
        r = self.ctl("status", "--json")
        assert r.returncode == 0, r.stderr
        return {row["name"]: row for row in json.loads(r.stdout)}

    def wait_state(self, mode: str, *names: str, timeout: float = 15) -> None:
        self.wait_socket()
        r = self.ctl("wait", f"--{mode}", "--timeout", str(timeout), *names, timeout=timeout + 10)
        assert r.returncode == 0, f"wait --{mode} {names}: {r.stderr}\n{self.stderr()}"

    # --- process facts ------------------------------------------------------------------

    def ns_pids(self) -> "list[int]":
        """Host pids of every process in svtree's namespace (svtree included)."""
        return [self.pid1, *descendants(self.pid1)]

    def signal(self, sig: int) -> None:
        os.kill(self.pid1, sig)

    def wait(self, timeout: float = 30) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"svtree did not exit within {timeout}s\n{self.stderr()}")

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.kill(self.pid1, signal.SIGKILL)  # the kernel then kills the namespace
            except ProcessLookupError:
                pass
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        for f in (self.out, self.err):
            if f is not None:
                f.close()
        for reader in self.readers.values():
            if reader is not None:
                reader.close()

    def stdout(self) -> str:
        if self.readers[1] is not None:
            return self.readers[1].text()
        with open(self.stdout_path, errors="replace") as f:
            return f.read()

    def stderr(self) -> str:
        if self.readers[2] is not None:
            return self.readers[2].text()
        with open(self.stderr_path, errors="replace") as f:
            return f.read()


def children(pid: int) -> "list[int]":
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.extend(int(x) for x in f.read().split())
    except OSError:
        pass
    return out


def descendants(pid: int) -> "list[int]":
    out, todo = [], children(pid)
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children(p))
    return out


def json_events(sv: Svtree) -> "list[dict]":
    """svtree's own log so far, run with `--log-format json`: one dict per event."""
    return [json.loads(line) for line in sv.stderr().splitlines() if line.startswith("{")]


def event_time(event: dict) -> float:
    """An event's timestamp, in seconds since the epoch."""
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def host_pid(sv: Svtree, ns_pid: int) -> "int | None":
    """The host pid of the process svtree knows as `ns_pid` (what `ctl status` shows),
    or None if there is none."""
    for p in descendants(sv.pid1):
        try:
            nspids = proc_status(p).get("NSpid", "").split()
        except OSError:
            continue
        if nspids and int(nspids[-1]) == ns_pid:
            return p
    return None


def proc_status(pid: int) -> "dict[str, str]":
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def read_cmdline(pid: int) -> bytes:
    """/proc/PID/cmdline as it is (NUL-separated), or b"" once the process is gone."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def zombies(pids) -> "list[int]":
    out = []
    for p in pids:
        try:
            if proc_status(p).get("State", "").startswith("Z"):
                out.append(p)
        except OSError:
            pass
    return out


# --- loggers ---------------------------------------------------------------------------
# (tests/system/test_loggers.py and the s6-overlay v3 tests: producers of numbered lines,
# loggers killed only while they have nothing in hand, s6-log's directories)

needs_s6_log = pytest.mark.skipif(shutil.which("s6-log") is None,
                                  reason="needs Debian's s6 (s6-log): .ci/run installs it")

# Blocked in one of these with nothing in hand: read(0, ...) for a shell's `read`, the
# poll family for s6-log. x86_64's numbers, then aarch64's.
IDLE_CALLS = {"x86_64": ({"0"}, {"7", "23", "270", "271"}),
              "aarch64": ({"63"}, {"72", "73"})}.get(os.uname().machine)


def pid_of(sv, name: str) -> int:
    """The host pid of service `name`'s run."""
    ns = sv.status()[name]["pid"]
    assert ns, f"{name} is not running"
    pid = host_pid(sv, ns)
    assert pid, f"no process for {name} (pid {ns} in the namespace)"
    return pid


def kill_when_idle(pid: int, timeout: float = 20.0) -> None:
    """SIGKILL `pid` at a moment it waits for input with nothing in hand: blocked reading
    its stdin (read on fd 0, or in poll for s6-log), and it has read nothing since it was
    seen so. A process stopped by SIGSTOP shows the read it was in even when that read
    had just returned data (the stop comes on the way out of the call), so the blocked
    state is seen while it runs, and its read-byte count (/proc/PID/io rchar) must not
    move between that and the stop."""
    reads, polls = IDLE_CALLS
    deadline = time.monotonic() + timeout
    while True:
        before = _rchar(pid)
        with open(f"/proc/{pid}/syscall") as f:
            call = f.read().split()
        blocked = proc_status(pid)["State"].startswith("S") and bool(call) and (
            (call[0] in reads and int(call[1], 16) == 0) or call[0] in polls)
        if blocked:
            os.kill(pid, signal.SIGSTOP)
            wait_for(lambda: proc_status(pid)["State"].startswith("T"), what=f"{pid} to stop")
            if _rchar(pid) == before:
                os.kill(pid, signal.SIGKILL)
                return
            os.kill(pid, signal.SIGCONT)
        assert time.monotonic() < deadline, f"{pid} was never idle"
        time.sleep(0.002)


def _rchar(pid: int) -> int:
    with open(f"/proc/{pid}/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar:"))


def read_logdir(logdir: str) -> "list[str]":
    """Every line s6-log wrote, in order: the archives (named by their TAI64N time; .s
    rotated, .u left by a killed s6-log), then `current`."""
    if not os.path.isdir(logdir):
        return []
    names = sorted(n for n in os.listdir(logdir) if n.startswith("@")) + ["current"]
    out: "list[str]" = []
    for n in names:
        try:
            with open(os.path.join(logdir, n)) as f:
                out += f.read().splitlines()
        except FileNotFoundError:
            pass
    return out


def numbered_lines(tree, name: str, lines: int) -> str:
    """Shell lines that write `RUN I` for I in 1..lines on stdout, RUN counting the runs
    of `name` (in $run), one write() a line, ten lines every 10 ms; then `done NAME RUN`
    in the tree's `done` file (see `done`)."""
    return textwrap.dedent(f"""
        runs={tree.root}/{name.replace('/', '_')}.runs
        run=$(( $(cat $runs 2>/dev/null || echo 0) + 1 )); echo $run > $runs
        i=0
        while [ $i -lt {lines} ]; do
            i=$((i + 1)); echo "$run $i"
            case $i in *0) sleep 0.01;; esac
        done
        echo done {name} $run >> {tree.root}/done
    """)


def producer(tree, name: str, lines: int) -> str:
    """A run script: `numbered_lines`, then one line on stderr, and it waits. TERM: `bye
    RUN` on stdout, then exit 0."""
    return tree.sh("trap 'echo \"bye $run\"; exit 0' TERM\n" + numbered_lines(tree, name, lines)
                   + f'echo "{name} run $run on stderr" >&2\nwhile :; do sleep 0.05; done\n')


def numbered(run: int, upto: int) -> "list[str]":
    """What a producer's run `run` writes, up to line `upto`."""
    return [f"{run} {i}" for i in range(1, upto + 1)]


def done(tree, name: str, run: int) -> bool:
    """The producer `name` has written every line of its run `run`."""
    try:
        with open(os.path.join(tree.root, "done")) as f:
            return f"done {name} {run}\n" in f.read()
    except FileNotFoundError:
        return False


def http_exchange(port: int, pieces: "list[bytes]", close_write: bool, wait_open: float = 0.1) -> bytes:
    """Send pieces (one send each) to an HTTP endpoint on 127.0.0.1, shut our write side
    if asked, read what comes back. A client that has sent all it will (close_write) is
    answered or closed within 3 s; an open one is read for `wait_open` s. Whatever comes
    back is an HTTP/1.1 answer."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    got = b""
    try:
        for piece in pieces:
            try:
                s.sendall(piece)
            except (BrokenPipeError, ConnectionResetError):
                break
        if close_write:
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        s.settimeout(3 if close_write else wait_open)
        try:
            while chunk := s.recv(65536):
                got += chunk
        except socket.timeout:
            assert not close_write, "the client sent all it would, and the connection stayed open"
        except ConnectionResetError:
            pass
    finally:
        s.close()
    if got:
        assert got.startswith(b"HTTP/1.1 "), got[:100]
    return got
