"""The core's one waitpid, with real children: each exit goes to its owner in a guard of
its own, so a failing owner neither stops the pass nor keeps other zombies waiting; and a
failure while the core handles a monitor's exit does not lose that service's record."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from svtree.core.loop import Loop
from svtree.core.reaper import Reaper

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def exited_children(n: int) -> "list[int]":
    """n children that have exited (zombies now), not reaped yet."""
    pids = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            os._exit(7)
        pids.append(pid)
    deadline = time.monotonic() + 10
    for pid in pids:
        while time.monotonic() < deadline:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            time.sleep(0.01)
    return pids


def test_a_failing_owner_does_not_stop_the_pass():
    errors = []
    reaper = Reaper(Loop(lambda what, exc: errors.append((what, exc))))
    pids = exited_children(4)
    got = {}

    def broken(status):
        raise RuntimeError("a bug in one owner")

    reaper.watch(pids[0], broken)
    for pid in pids[1:3]:
        reaper.watch(pid, lambda status, pid=pid: got.setdefault(pid, status))
    reaper.reap()  # pids[3] has no owner: an orphan of the tree
    assert sorted(got) == sorted(pids[1:3]) and all(os.WEXITSTATUS(s) == 7 for s in got.values())
    assert [str(e) for _, e in errors] == ["a bug in one owner"] and str(pids[0]) in errors[0][0]
    assert reaper.orphans_reaped >= 1 and not reaper.known() & set(pids)
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # every one was reaped


# A core in a child process (a child subreaper) with one service; the first time it
# handles a monitor's exit, closing the monitor's output fails (a bug planted in this
# process only). The service must still get a new monitor and run again.
SCRIPT = textwrap.dedent("""
    import os, signal, sys, time
    from svtree import log as logmod, osutil
    from svtree.compiler import compile_tree
    from svtree.core.core import Core
    from svtree.core.loop import Loop

    tree, events = sys.argv[1], sys.argv[2]
    osutil.set_child_subreaper()
    lines = []
    log = logmod.setup("console", sink=lambda line: (lines.append(line), sys.stderr.write(line)))
    loop = Loop(lambda what, exc: log.error("internal_error", where=what, error=repr(exc)))
    core = Core(loop, compile_tree(tree), log, output="raw", main_cmd=[], is_pid1=False)
    planted = []
    close_output = core.monitors.close_output

    def fails_once(link):
        if not planted:
            planted.append(link.pid)
            raise RuntimeError("planted")
        close_output(link)

    core.monitors.close_output = fails_once
    loop.handle_signals({signal.SIGCHLD: lambda s: core.reap()})
    core.boot()

    def runs():
        try:
            return [l for l in open(events).read().split() if l]
        except OSError:
            return []

    deadline = time.monotonic() + 20
    killed = False
    while time.monotonic() < deadline and len(runs()) < 2:
        loop.call_later(0.05, lambda: None)
        loop.run_once()
        if runs() and not killed:
            svc = core.records.get("svc")
            os.kill(svc.link.pid, signal.SIGKILL)
            killed = True
    print("runs", len(runs()), "planted", len(planted),
          "errors", sum("internal_error" in l and "planted" in l for l in lines), flush=True)
    for pid in osutil.descendants(os.getpid()):
        osutil.kill_quietly(pid, signal.SIGKILL)
""")


def test_a_failure_while_handling_a_monitor_exit_does_not_lose_the_service(tmp_path):
    tree = tmp_path / "services.d"
    (tree / "svc").mkdir(parents=True)
    run = tree / "svc" / "run"
    events = tmp_path / "events"
    run.write_text(f"#!/bin/sh\necho $$ >> {events}\nexec sleep 1000\n")
    run.chmod(0o755)
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tree), str(events)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=REPO), start_new_session=True)
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert out.split() == ["runs", "2", "planted", "1", "errors", "1"], (out, err[-3000:])
    assert "monitor_died" in err
