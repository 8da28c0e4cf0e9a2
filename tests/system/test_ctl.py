"""`svtree ctl`: every verb and exit code against a real svtree in a PID namespace.

Pids in `ctl status` are the ones svtree sees (its namespace's); /proc here is the host's,
so `host_pid` maps them through the NSpid line of each process in the namespace.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

import pytest

from harness import REPO, host_pid, needs_pidns, proc_status, wait_for

pytestmark = [needs_pidns, pytest.mark.timeout(90)]

# The spec's keys and columns; --resources adds the CPU and memory of each service's
# process tree (tests/system/test_observability.py checks their values against /proc).
KEYS = {"name", "state", "pid", "uptime", "restarts", "last_exit", "ready"}
HEADER = ("NAME", "STATE", "PID", "UPTIME", "RESTARTS", "LAST_EXIT", "READY")
RESOURCES = ("CPU", "MEM")


_PUBLIC_COPY: "list[str]" = []


def public_package() -> str:
    """A copy of the svtree package that another uid can read: the checkout (and the
    virtual environment) may sit under a directory only root may enter, as /tmp is on
    some machines. ctl needs nothing but the standard library and this package."""
    if not _PUBLIC_COPY:
        import atexit

        d = tempfile.mkdtemp(prefix="svtree-pkg-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
        shutil.copytree(os.path.join(REPO, "svtree"), os.path.join(d, "svtree"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        for root, dirs, files in os.walk(d):
            os.chmod(root, 0o755)
            for f in files:
                os.chmod(os.path.join(root, f), 0o644)
        atexit.register(shutil.rmtree, d, True)
        _PUBLIC_COPY.append(d)
    return _PUBLIC_COPY[0]


def ctl_argv(*args, user: "str | None" = None) -> "list[str]":
    argv = [sys.executable, "-m", "svtree", "ctl", *args]
    if user == "nobody":
        # The real interpreter, without site-packages: only the public copy is needed.
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                os.path.realpath(sys.executable), "-S", "-m", "svtree", "ctl", *args]
    return argv


def ctl(*args, timeout: float = 30, user: "str | None" = None, env=None) -> subprocess.CompletedProcess:
    """`svtree ctl` with exactly these arguments (no --socket added)."""
    full_env = dict(os.environ, PYTHONPATH=public_package() if user == "nobody" else REPO)
    full_env.pop("SVTREE_SOCKET", None)
    full_env.update(env or {})
    return subprocess.run(ctl_argv(*args, user=user), capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd="/")


def timed(fn, *args, **kw):
    t0 = time.monotonic()
    r = fn(*args, **kw)
    return r, time.monotonic() - t0


def alive(host: "int | None") -> bool:
    if host is None:
        return False
    try:
        return not proc_status(host)["State"].startswith("Z")
    except OSError:
        return False


def starts(tree, name):
    return [r for r in tree.event_lines() if r[:2] == ["start", name]]


def one_line(r: subprocess.CompletedProcess) -> str:
    lines = (r.stdout + r.stderr).splitlines()
    assert len(lines) == 1, (r.stdout, r.stderr)
    return lines[0]


SLEEPER = "echo start {n} $$ >> $EVENTS\nexec sleep 1000\n"


# --- status -----------------------------------------------------------------------------

def test_status_table_lists_every_service_in_aligned_columns(tree, run_svtree):
    tree.service("a", tree.sh(SLEEPER.format(n="a")))
    tree.service("a-much-longer-name", tree.sh(SLEEPER.format(n="long")))
    tree.service("off", tree.sh(SLEEPER.format(n="off")), down=True)
    tree.service("unready", tree.sh(SLEEPER.format(n="unready")),
                 toml='ready_command = "false"\nready_interval = 0.5\n')
    sv = run_svtree()
    sv.wait_state("ready", "a", "a-much-longer-name")
    sv.wait_state("up", "unready")
    rows = status_table(sv.ctl("status"), HEADER)
    assert set(rows) == {"a", "a-much-longer-name", "off", "unready"}
    assert rows["a"]["STATE"] == "ready" and rows["a"]["READY"] == "yes"
    assert rows["a"]["PID"].isdigit() and rows["a"]["RESTARTS"] == "0"
    assert rows["off"]["STATE"] == "down" and rows["off"]["PID"] == "-" and rows["off"]["READY"] == "no"
    assert rows["unready"]["STATE"] == "up" and rows["unready"]["READY"] == "no"
    # --resources (-r) adds CPU and MEM at the end, aligned the same way.
    for flag in ("--resources", "-r"):
        rows = status_table(sv.ctl("status", flag), HEADER + RESOURCES)
        assert rows["a"]["CPU"].endswith("s") and rows["a"]["MEM"].endswith("iB")
        assert rows["off"]["MEM"] == "0B" and rows["off"]["STATE"] == "down"
    # NAME... narrows the table to those rows.
    r = sv.ctl("status", "off", "a")
    assert r.returncode == 0
    assert sorted(line.split()[0] for line in r.stdout.splitlines()[1:]) == ["a", "off"]
    assert sv.stop() == 0


def status_table(r, header) -> "dict[str, dict[str, str]]":
    """ctl status's table as {NAME: {COLUMN: cell}}, checking the header and that every
    cell starts exactly under its header, after at least two spaces."""
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert tuple(lines[0].split()) == header
    cols = [lines[0].index(h) for h in header]
    rows = {}
    for line in lines[1:]:
        cells = line.split()
        assert len(cells) == len(header), line
        for i, start in enumerate(cols):
            assert line[start] != " " and (i == 0 or line[start - 2:start] == "  "), (line, header[i])
            assert line[start:].split()[0] == cells[i]
        rows[cells[0]] = dict(zip(header, cells))
    return rows


def test_status_json_has_exactly_the_spec_keys(tree, run_svtree):
    tree.service("a", tree.sh(SLEEPER.format(n="a")))
    tree.service("off", tree.sh(SLEEPER.format(n="off")), down=True)
    tree.service("crashy", tree.sh("exit 3\n"), toml='restart = "never"\n')
    sv = run_svtree()
    sv.wait_state("ready", "a")
    sv.wait_state("down", "crashy")
    r = sv.ctl("status", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert isinstance(rows, list)
    assert [set(row) for row in rows] == [KEYS] * 3
    by = {row["name"]: row for row in rows}
    assert set(by) == {"a", "off", "crashy"}
    a = by["a"]
    assert a["state"] == "ready" and a["ready"] is True and a["restarts"] == 0
    assert isinstance(a["pid"], int) and isinstance(a["uptime"], (int, float)) and a["uptime"] >= 0
    assert a["last_exit"] is None
    assert alive(host_pid(sv, a["pid"]))
    assert by["off"] == {"name": "off", "state": "down", "pid": None, "uptime": None, "restarts": 0,
                         "last_exit": None, "ready": False}
    assert by["crashy"]["state"] == "failed" and by["crashy"]["last_exit"] == 3
    assert by["crashy"]["pid"] is None
    # --resources adds cpu_seconds and memory_bytes, nothing else.
    r = sv.ctl("status", "--json", "--resources")
    assert r.returncode == 0, r.stderr
    by = {row["name"]: row for row in json.loads(r.stdout)}
    assert by["off"] == {"name": "off", "state": "down", "pid": None, "uptime": None, "restarts": 0,
                         "last_exit": None, "ready": False, "cpu_seconds": 0.0, "memory_bytes": 0}
    assert by["a"]["memory_bytes"] > 0 and by["a"]["cpu_seconds"] >= 0
    assert sv.stop() == 0


def test_ctl_flags_are_accepted_before_and_after_the_verb(tree, run_svtree):
    tree.service("a", tree.sh(SLEEPER.format(n="a")))
    sv = run_svtree()
    sv.wait_state("ready", "a")
    forms = [
        ("status", "--json", "--socket", sv.socket),
        ("--json", "status", "--socket", sv.socket),
        ("--socket", sv.socket, "--json", "status"),
        ("--socket=" + sv.socket, "status", "--json"),
        ("status", "a", "--json", "--socket", sv.socket),
    ]
    for argv in forms:
        r = ctl(*argv)
        assert r.returncode == 0, (argv, r.stderr)
        assert [row["name"] for row in json.loads(r.stdout)] == ["a"], argv
    # $SVTREE_SOCKET when there is no --socket.
    r = ctl("status", "--json", env={"SVTREE_SOCKET": sv.socket})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[0]["name"] == "a"
    assert sv.stop() == 0


# --- start / stop / restart --------------------------------------------------------------

def test_restart_changes_the_pid_and_the_new_process_runs(tree, run_svtree):
    tree.service("a", tree.sh(SLEEPER.format(n="a")))
    sv = run_svtree()
    sv.wait_state("ready", "a")
    old = sv.status()["a"]["pid"]
    old_host = host_pid(sv, old)
    assert alive(old_host)
    r = sv.ctl("restart", "a")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: len(starts(tree, "a")) == 2, what="the second start")
    sv.wait_state("ready", "a")
    st = sv.status()["a"]
    assert st["pid"] != old and st["restarts"] == 1
    assert starts(tree, "a")[-1][2] == str(st["pid"])
    new_host = host_pid(sv, st["pid"])
    assert alive(new_host) and proc_status(new_host)["Name"] == "sleep"
    wait_for(lambda: not alive(old_host), what="the old process to be gone")
    assert sv.stop() == 0


def test_restart_wait_returns_when_the_new_process_is_ready(tree, run_svtree):
    tree.service("n", tree.sh("""
        echo start n $$ >> $EVENTS
        sleep 0.5
        echo ready n $$ >> $EVENTS
        echo >&3
        exec sleep 1000
    """), toml="notification_fd = 3\n")
    sv = run_svtree()
    sv.wait_state("ready", "n")
    old = sv.status()["n"]["pid"]
    r, took = timed(sv.ctl, "restart", "--wait", "n")
    assert r.returncode == 0, r.stderr
    assert took >= 0.5
    ready = [r[2] for r in tree.event_lines() if r[:2] == ["ready", "n"]]
    assert len(ready) == 2 and ready[0] == str(old)
    st = sv.status()["n"]
    assert st["state"] == "ready" and st["pid"] != old and ready[1] == str(st["pid"])
    assert alive(host_pid(sv, st["pid"]))
    assert sv.stop() == 0


def test_stop_keeps_the_service_down(tree, run_svtree):
    tree.service("a", tree.sh(SLEEPER.format(n="a")), toml="restart_delay = 0.2\n")
    tree.service("b", tree.sh(SLEEPER.format(n="b")), toml="restart_delay = 0.2\n")
    sv = run_svtree()
    sv.wait_state("ready", "a", "b")
    a_host = host_pid(sv, sv.status()["a"]["pid"])
    r = sv.ctl("stop", "a")  # returns once accepted
    assert r.returncode == 0, r.stderr
    sv.wait_state("down", "a")
    time.sleep(0.6)  # three restart_delays: a wrong restart would have happened by now
    st = sv.status()["a"]
    assert st["state"] == "down" and st["pid"] is None and st["ready"] is False
    assert len(starts(tree, "a")) == 1
    assert not alive(a_host)
    # --wait: returns when it is down.
    r = sv.ctl("stop", "--wait", "b")
    assert r.returncode == 0, r.stderr
    assert sv.status()["b"]["state"] == "down"
    time.sleep(0.6)
    assert sv.status()["b"]["pid"] is None and len(starts(tree, "b")) == 1
    assert sv.stop() == 0


def test_start_brings_a_down_service_up(tree, run_svtree):
    tree.service("off", tree.sh(SLEEPER.format(n="off")), down=True)
    tree.service("off2", tree.sh(SLEEPER.format(n="off2")), down=True,
                 toml="notification_fd = 3\n")
    tree.service("dep", tree.sh(SLEEPER.format(n="dep")), down=True, toml='depends_on = ["off"]\n')
    sv = run_svtree()
    sv.wait_socket()
    sv.wait_state("down", "off", "off2", "dep")
    time.sleep(0.3)
    assert tree.event_lines() == []
    r = sv.ctl("start", "off")
    assert r.returncode == 0, r.stderr
    sv.wait_state("up", "off")
    st = sv.status()["off"]
    assert st["state"] == "ready" and alive(host_pid(sv, st["pid"]))
    # start --wait on a service that never becomes ready times out with exit 1.
    r, took = timed(sv.ctl, "start", "--wait", "--timeout", "0.5", "off2")
    assert r.returncode == 1 and "timed out" in r.stderr
    assert 0.5 <= took < 3
    # start --wait returns when ready; a started dependent waits for its dependency.
    r = sv.ctl("start", "--wait", "dep")
    assert r.returncode == 0, r.stderr
    assert sv.status()["dep"]["state"] == "ready"
    assert sv.stop() == 0


def test_start_wait_after_a_failure_waits_for_the_new_run(tree, run_svtree):
    # A service that failed for good (restart = "never"), then is fixed and started again.
    tree.service("f", tree.sh("""
        echo start f $$ >> $EVENTS
        [ -e broken ] && exit 3
        echo >&3
        exec sleep 1000
    """), files={"broken": ""}, toml='restart = "never"\nnotification_fd = 3\n')
    sv = run_svtree()
    sv.wait_state("down", "f")
    assert sv.status()["f"]["state"] == "failed"
    os.remove(os.path.join(tree.dir, "f", "broken"))
    r = sv.ctl("start", "--wait", "f")
    assert r.returncode == 0, r.stderr
    assert sv.status()["f"]["state"] == "ready"
    # And restart --wait of a failed service is a start too.
    open(os.path.join(tree.dir, "f", "broken"), "w").close()
    sv.ctl("signal", "KILL", "f")
    sv.wait_state("down", "f")
    assert sv.status()["f"]["state"] == "failed"
    os.remove(os.path.join(tree.dir, "f", "broken"))
    r = sv.ctl("restart", "--wait", "f")
    assert r.returncode == 0, r.stderr
    assert sv.status()["f"]["state"] == "ready"
    # start --wait of a service that fails again says so with exit 1.
    open(os.path.join(tree.dir, "f", "broken"), "w").close()
    sv.ctl("stop", "--wait", "f")
    r = sv.ctl("start", "--wait", "f")
    assert r.returncode == 1
    assert "f failed" in r.stderr
    assert sv.stop() == 0


# --- wait --------------------------------------------------------------------------------

def test_wait_up_ready_down_and_timeout(tree, run_svtree):
    tree.service("a", tree.sh(SLEEPER.format(n="a")))
    tree.service("off", tree.sh(SLEEPER.format(n="off")), down=True)
    tree.service("never", tree.sh(SLEEPER.format(n="never")),
                 toml='ready_command = "false"\nready_interval = 0.1\n')
    sv = run_svtree()
    sv.wait_socket()
    for mode, names in (("up", ["a", "never"]), ("ready", ["a"]), ("down", ["off"])):
        r = sv.ctl("wait", f"--{mode}", *names, timeout=20)
        assert r.returncode == 0, (mode, r.stderr)
    st = sv.status()
    assert st["a"]["state"] == "ready" and st["never"]["state"] == "up" and st["off"]["state"] == "down"
    r, took = timed(sv.ctl, "wait", "--ready", "--timeout", "0.5", "never")
    assert r.returncode == 1
    assert 0.5 <= took < 3
    assert "timed out" in one_line(r)
    # Every NAME must get there: one that does not makes the wait time out.
    r = sv.ctl("wait", "--ready", "--timeout", "0.3", "a", "never")
    assert r.returncode == 1
    # A wait that blocks returns when the state is reached.
    waiter = subprocess.Popen(ctl_argv("--socket", sv.socket, "wait", "--down", "a"),
                              env=dict(os.environ, PYTHONPATH=REPO), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    try:
        time.sleep(0.3)
        assert waiter.poll() is None  # still waiting: a is up
        assert sv.ctl("stop", "a").returncode == 0
        assert waiter.wait(10) == 0
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()
    assert sv.stop() == 0


# --- check -------------------------------------------------------------------------------

def test_check_follows_crashes_failures_and_stops(tree, run_svtree):
    crash = """
        echo start {n} $$ >> $EVENTS
        [ -e crash ] && exit 1
        exec sleep 1000
    """
    tree.service("flaky", tree.sh(crash.format(n="flaky")),
                 toml="restart_delay = 0.3\nrestart_delay_max = 0.6\n")
    tree.service("fragile", tree.sh(crash.format(n="fragile")), toml='restart = "never"\n')
    tree.service("off", tree.sh(SLEEPER.format(n="off")), down=True)
    sv = run_svtree()
    sv.wait_state("ready", "flaky", "fragile")
    r = sv.ctl("check")
    assert r.returncode == 0, r.stderr

    # flaky crashes in a loop: check says so, naming it, until it runs again.
    open(os.path.join(tree.dir, "flaky", "crash"), "w").close()
    assert sv.ctl("signal", "KILL", "flaky").returncode == 0
    r = wait_for(lambda: (lambda r: r if r.returncode == 1 else None)(sv.ctl("check")),
                 what="check to fail")
    assert "flaky" in one_line(r)
    os.remove(os.path.join(tree.dir, "flaky", "crash"))
    sv.wait_state("ready", "flaky")
    r = sv.ctl("check")
    assert r.returncode == 0, r.stderr

    # fragile fails for good: check 1 until it is started again and is up.
    open(os.path.join(tree.dir, "fragile", "crash"), "w").close()
    sv.ctl("signal", "KILL", "fragile")
    sv.wait_state("down", "fragile")
    assert sv.status()["fragile"]["state"] == "failed"
    r = sv.ctl("check")
    assert r.returncode == 1 and "fragile" in one_line(r)
    os.remove(os.path.join(tree.dir, "fragile", "crash"))
    assert sv.ctl("start", "fragile").returncode == 0
    sv.wait_state("ready", "fragile")
    r = sv.ctl("check")
    assert r.returncode == 0, r.stderr

    # Stopped on purpose is not a problem; neither is a `down` service.
    assert sv.ctl("stop", "--wait", "flaky").returncode == 0
    r = sv.ctl("check")
    assert r.returncode == 0, r.stderr
    assert sv.stop() == 0


def test_check_names_the_first_service_that_is_not_ok(tree, run_svtree):
    # b crashes; a depends on it, so in start order b comes before a.
    tree.service("b", tree.sh("exit 1\n"), toml="restart_delay = 5\n")
    tree.service("a", tree.sh(SLEEPER.format(n="a")), toml='depends_on = ["b"]\n')
    sv = run_svtree()
    sv.wait_socket()
    wait_for(lambda: sv.status()["b"]["state"] == "backoff", what="b in backoff")
    order = [row["name"] for row in json.loads(sv.ctl("status", "--json").stdout)]
    assert order == ["b", "a"]
    r = sv.ctl("check")
    assert r.returncode == 1
    said = one_line(r).split(":", 2)[-1]  # after "svtree ctl: check:"
    assert re.search(r"\bb\b", said) and not re.search(r"\ba\b", said), said
    assert sv.stop() == 0


# --- signal ------------------------------------------------------------------------------

def test_signal_delivers_the_signal(tree, run_svtree):
    tree.service("t", tree.sh("""
        trap 'echo got USR1 >> $EVENTS' USR1
        trap 'echo got USR2 >> $EVENTS' USR2
        trap 'echo got HUP >> $EVENTS' HUP
        echo start t $$ >> $EVENTS
        while :; do sleep 0.05; done
    """))
    tree.service("off", tree.sh(SLEEPER.format(n="off")), down=True)
    sv = run_svtree()
    sv.wait_state("ready", "t")
    wait_for(lambda: starts(tree, "t"), what="t's trap set")
    for spelled, got in (("USR1", "USR1"), ("SIGUSR2", "USR2"), ("1", "HUP")):
        r = sv.ctl("signal", spelled, "t")
        assert r.returncode == 0, r.stderr
        wait_for(lambda: ["got", got] in tree.event_lines(), what=f"SIG{got} at the service")
    assert sv.status()["t"]["restarts"] == 0
    # A bad signal is a usage error; a service that is not running cannot get one.
    r = sv.ctl("signal", "NOPE", "t")
    assert r.returncode == 2 and "NOPE" in r.stderr
    r = sv.ctl("signal", "USR1", "off")
    assert r.returncode == 1 and "off" in r.stderr
    assert sv.stop() == 0


# --- reload ------------------------------------------------------------------------------

def test_reload_without_changes_and_with_an_invalid_tree(tree, run_svtree):
    tree.service("a", tree.sh(SLEEPER.format(n="a")))
    sv = run_svtree()
    sv.wait_state("ready", "a")
    pid = sv.status()["a"]["pid"]
    r = sv.ctl("reload")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "no change\n"
    tree.service("bad", tree.sh(SLEEPER.format(n="bad")), toml="nonsense_key = 1\n")
    r = sv.ctl("reload")
    assert r.returncode == 1
    assert "nonsense_key" in r.stderr
    assert set(sv.status()) == {"a"} and sv.status()["a"]["pid"] == pid
    assert sv.stop() == 0


# --- errors ------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["status", "x"], ["start", "x"], ["stop", "x"], ["restart", "x"], ["signal", "TERM", "x"],
    ["wait", "--up", "x"], ["start", "a", "x"], ["start", "--wait", "x"],
])
def test_an_unknown_name_is_exit_1_and_named(tree, run_svtree, argv):
    tree.service("a", tree.sh(SLEEPER.format(n="a")))
    sv = run_svtree()
    sv.wait_state("ready", "a")
    r = sv.ctl(*argv, timeout=10)
    assert r.returncode == 1
    assert 'no service named "x"' in one_line(r)
    assert len(starts(tree, "a")) == 1  # nothing else happened to a
    assert sv.status()["a"]["state"] == "ready"
    assert sv.stop() == 0


def test_svtree_not_running_is_exit_1_naming_the_socket(tree):
    path = os.path.join(tree.root, "nothing-here.sock")
    r = ctl("--socket", path, "status")
    assert r.returncode == 1
    assert path in one_line(r)
    # A stale socket file that nobody listens on.
    stale = os.path.join(tree.root, "stale.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(stale)
    s.close()
    r = ctl("--socket", stale, "check")
    assert r.returncode == 1
    assert stale in one_line(r)
    r = ctl("status", env={"SVTREE_SOCKET": path})
    assert r.returncode == 1 and path in one_line(r)


@pytest.mark.parametrize("argv", [
    [], ["--json"], ["frobnicate"], ["wait", "a"], ["wait", "--up", "--down", "a"],
    ["wait", "--up", "--timeout", "abc", "a"], ["wait", "--up", "--timeout", "-1", "a"],
    ["wait", "--up", "--timeout", "inf", "a"], ["wait", "--up", "--timeout", "nan", "a"],
    ["wait", "--up", "--timeout", "1e300", "a"],
    ["wait", "--up", "a", "--timeout"], ["start"], ["signal"], ["signal", "TERM"],
    ["check", "a"], ["status", "--bogus"],
])
def test_usage_errors_are_exit_2(tree, argv):
    # No svtree is needed: usage is checked before connecting.
    r = ctl("--socket", os.path.join(tree.root, "none.sock"), *argv)
    assert r.returncode == 2, (argv, r.stderr)
    assert r.stderr.startswith("svtree ctl: "), r.stderr
    assert r.stdout == ""


def test_help_is_exit_0():
    r = ctl("--help")
    assert r.returncode == 0 and "usage: svtree ctl" in r.stdout


# --- shutdown ----------------------------------------------------------------------------

SLOW_STOP = """
    trap 'sleep 1; echo stopped slow >> $EVENTS; exit 0' TERM
    echo start slow $$ >> $EVENTS
    while :; do sleep 0.05; done
"""


def test_shutdown_returns_at_once_and_svtree_exits_0(tree, run_svtree):
    tree.service("slow", tree.sh(SLOW_STOP))
    sv = run_svtree()
    sv.wait_state("ready", "slow")
    wait_for(lambda: starts(tree, "slow"), what="slow's trap set")
    r, took = timed(sv.ctl, "shutdown")
    assert r.returncode == 0, r.stderr
    assert took < 0.9  # the service takes 1 s to stop
    assert sv.proc.poll() is None
    assert ["stopped", "slow"] not in tree.event_lines()
    # While it shuts down, nothing can be started.
    r = sv.ctl("start", "slow")
    assert r.returncode == 1 and "shutting down" in r.stderr
    assert sv.wait(20) == 0
    assert ["stopped", "slow"] in tree.event_lines()


def test_shutdown_wait_returns_when_svtree_is_about_to_exit(tree, run_svtree):
    tree.service("slow", tree.sh(SLOW_STOP))
    sv = run_svtree()
    sv.wait_state("ready", "slow")
    wait_for(lambda: starts(tree, "slow"), what="slow's trap set")
    r, took = timed(sv.ctl, "shutdown", "--wait")
    assert r.returncode == 0, r.stderr
    assert took >= 1.0
    assert ["stopped", "slow"] in tree.event_lines()
    assert sv.wait(5) == 0


def test_shutdown_wait_from_inside_the_namespace_is_spared_by_the_sweep(tree, run_svtree):
    # As with `docker exec CONTAINER svtree ctl shutdown --wait`: the client is one of the
    # processes the final sweep would kill; it must get its answer and exit 0 itself.
    tree.service("slow", tree.sh(SLOW_STOP))
    sv = run_svtree()
    sv.wait_state("ready", "slow")
    wait_for(lambda: starts(tree, "slow"), what="slow's trap set")
    argv = ["nsenter", f"--target={sv.pid1}", "--pid", "--mount",
            *ctl_argv("--socket", sv.socket, "shutdown", "--wait")]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, PYTHONPATH=REPO), cwd="/")
    assert r.returncode == 0, (r.returncode, r.stderr)
    assert ["stopped", "slow"] in tree.event_lines()
    assert sv.wait(5) == 0


# --- the socket's permissions ------------------------------------------------------------

def test_socket_is_0600_in_a_0700_directory(tree, run_svtree):
    tree.service("a", tree.sh(SLEEPER.format(n="a")))
    path = os.path.join(tree.root, "run", "svtree", "control.sock")
    sv = run_with_socket(run_svtree, path)
    sv.wait_state("ready", "a")
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    assert sv.stop() == 0
    assert not os.path.exists(path)  # removed at exit


def test_a_shared_directory_keeps_its_mode(tree, run_svtree):
    # --socket in a directory others use (like /tmp): the socket is 0600, and svtree must
    # not take the directory away from them by making it 0700.
    shared = os.path.join(tree.root, "shared")
    os.mkdir(shared)
    os.chmod(shared, 0o1777)
    open(os.path.join(shared, "someone-elses-file"), "w").close()
    tree.service("a", tree.sh(SLEEPER.format(n="a")))
    path = os.path.join(shared, "control.sock")
    sv = run_with_socket(run_svtree, path)
    sv.wait_state("ready", "a")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(shared).st_mode) == 0o1777
    assert sv.stop() == 0


def test_a_socket_path_that_is_not_a_socket_is_not_deleted(tree, run_svtree):
    tree.service("a", tree.sh(SLEEPER.format(n="a")))
    path = os.path.join(tree.root, "precious.txt")
    with open(path, "w") as f:
        f.write("keep me\n")
    sv = run_svtree(args=["--socket", path, "--log-format", "json"])
    wait_for(lambda: starts(tree, "a"), what="a to start")
    wait_for(lambda: "control_unavailable" in sv.stderr(), what="control_unavailable")
    assert open(path).read() == "keep me\n"
    assert sv.stop() == 0


@pytest.fixture
def public_dir():
    """A directory every uid can enter. (/tmp may itself be 0700 for others, as it is on
    some CI hosts; /dev/shm is 1777 wherever there is a /dev/shm.)"""
    if not os.path.isdir("/dev/shm"):
        pytest.skip("needs /dev/shm for a directory another uid can enter")
    d = tempfile.mkdtemp(prefix="svtree-ctl-", dir="/dev/shm")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def run_with_socket(run_svtree, path, *args):
    sv = run_svtree(args=["--socket", path, *args])
    sv.socket = path
    return sv


def test_another_uid_cannot_connect(tree, run_svtree, public_dir):
    tree.service("a", tree.sh(SLEEPER.format(n="a")))
    sv = run_with_socket(run_svtree, os.path.join(public_dir, "svtree", "control.sock"))
    sv.wait_state("ready", "a")
    r = ctl("--socket", sv.socket, "status", user="nobody")
    assert r.returncode == 1
    line = one_line(r)
    assert sv.socket in line and "ermission denied" in line
    assert sv.stop() == 0


def test_the_server_refuses_another_uid_by_peer_credentials(tree, run_svtree, public_dir):
    tree.service("a", tree.sh(SLEEPER.format(n="a")))
    sv = run_with_socket(run_svtree, os.path.join(public_dir, "svtree", "control.sock"),
                         "--log-format", "json")
    sv.wait_state("ready", "a")
    # Open the doors the file system keeps shut, so only SO_PEERCRED stands in the way.
    os.chmod(os.path.dirname(sv.socket), 0o777)
    os.chmod(sv.socket, 0o777)
    for verb in (["status"], ["stop", "a"], ["shutdown"]):
        r = ctl("--socket", sv.socket, *verb, user="nobody")
        assert r.returncode == 1, (verb, r.stdout, r.stderr)
        assert "permission denied" in one_line(r).lower()
    refused = [json.loads(line) for line in sv.stderr().splitlines()
               if line.startswith("{") and '"control_refused"' in line]
    assert len(refused) == 3 and all(e["uid"] == 65534 for e in refused)
    st = sv.status()["a"]
    assert st["state"] == "ready" and len(starts(tree, "a")) == 1
    assert sv.proc.poll() is None
    assert sv.stop() == 0


def test_a_busy_svtree_is_waited_for_not_reported_dead(tree, run_svtree):
    # svtree's listen queue is full (it is stopped, as a loaded one would be slow):
    # ctl must wait for room instead of saying "no answer" at once.
    tree.service("a", tree.sh(SLEEPER.format(n="a")))
    sv = run_svtree()
    sv.wait_state("ready", "a")
    held, client = [], None
    os.kill(sv.pid1, signal.SIGSTOP)
    try:
        while len(held) < 5000:
            s = socket.socket(socket.AF_UNIX)
            s.setblocking(False)
            try:
                s.connect(sv.socket)
            except BlockingIOError:
                s.close()
                break
            held.append(s)
        assert len(held) < 5000, "the listen queue never filled"
        client = subprocess.Popen(ctl_argv("--socket", sv.socket, "status"), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=REPO))
        time.sleep(0.5)  # long enough for a client that gives up at once to have done so
        assert client.poll() is None, client.communicate()
    finally:
        os.kill(sv.pid1, signal.SIGCONT)
    try:
        out, err = client.communicate(timeout=15)
        assert client.returncode == 0, err
        assert out.splitlines()[0].split()[0] == "NAME"
    finally:
        if client is not None and client.poll() is None:
            client.kill()
            client.wait()
        for s in held:
            s.close()
    assert sv.stop() == 0


def test_check_reports_a_service_that_ended_on_its_own_until_it_is_stopped(tree, run_svtree):
    # check exempts only services marked `down` and those stopped with `ctl stop`;
    # one whose restart policy let it end (exit 0 under on-failure) is still wanted up.
    tree.service("job", tree.sh("exit 0\n"), toml='restart = "on-failure"\n')
    tree.service("idle", tree.sh("exec sleep 1000\n"))
    sv = run_svtree()
    sv.wait_state("down", "job")
    sv.wait_state("ready", "idle")
    r = sv.ctl("check")
    assert r.returncode == 1
    assert "job" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert sv.ctl("stop", "job").returncode == 0
    assert sv.ctl("check").returncode == 0
    assert sv.stop() == 0
