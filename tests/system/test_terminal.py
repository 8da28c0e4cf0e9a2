"""Terminal and pipe output of a real svtree: `ctl status` plain when piped and coloured on
a terminal; `svtree run` on a terminal says `N services up in X ms` once."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time

import pytest

from harness import REPO, children, needs_pidns, wait_for

pytestmark = [needs_pidns, pytest.mark.timeout(60)]

ANSI = re.compile(r"\033\[[0-9;]*m")
RUN = "exec sleep 1000\n"


def on_a_terminal(argv) -> "tuple[subprocess.Popen, int]":
    """Run argv with stdout and stderr on a new pseudo-terminal; returns (process, master fd)."""
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
                            env=dict(env, PYTHONPATH=REPO, TERM="xterm"), start_new_session=True)
    os.close(slave)
    return proc, master


def read_until(master: int, pattern: "re.Pattern", timeout: float = 20) -> str:
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not data:
                break
            seen += data
            if pattern.search(seen.decode(errors="replace")):
                break
    return seen.decode(errors="replace")


def test_ctl_status_piped_is_plain_and_on_a_terminal_coloured(tree, run_svtree):
    tree.service("web", tree.sh(RUN))
    tree.service("setup", tree.sh("exit 0\n"), toml='type = "oneshot"\n')
    tree.service("later", tree.sh(RUN), down=True)
    sv = run_svtree()
    sv.wait_state("ready", "web")

    piped = sv.ctl("status")  # stdout is a pipe
    assert piped.returncode == 0, piped.stderr
    assert "\033" not in piped.stdout
    lines = piped.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["NAME", "STATE"], ["later", "down"], ["setup", "done"], ["web", "ready"]]
    column = lines[0].index("STATE")
    assert {line[column - 2:column] for line in lines} == {"  "}

    proc, master = on_a_terminal([sys.executable, "-m", "svtree", "ctl", "--socket", sv.socket, "status"])
    try:
        shown = read_until(master, re.compile(r"web\S*\s+\S*ready"))
        assert proc.wait(10) == 0
    finally:
        os.close(master)
    assert "\033[32mready\033[0m" in shown and "\033[32mdone\033[0m" in shown
    plain = ANSI.sub("", shown).replace("\r\n", "\n").splitlines()
    # The same table once the escapes are gone (uptimes move on between the two calls).
    assert [line.split()[:3] for line in plain] == [line.split()[:3] for line in lines]
    assert plain[0] == lines[0]  # the header, padded to the same widths
    assert sv.stop() == 0


def test_run_on_a_terminal_prints_the_summary_line(tree):
    for name in ("a", "b", "c"):
        tree.service(name, tree.sh(RUN))
    socket_path = os.path.join(tree.root, "control.sock")
    proc, master = on_a_terminal(
        ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", sys.executable, "-m", "svtree",
         "run", "--dir", tree.dir, "--socket", socket_path, "--no-watch"])
    try:
        shown = read_until(master, re.compile(r"3 services up in \d+ ms"))
        assert re.search(r"(^|\n)3 services up in \d+ ms\r?\n", ANSI.sub("", shown)), shown
        pid1 = wait_for(lambda: (children(proc.pid) or [None])[0], what="svtree in its namespace")
        os.kill(pid1, signal.SIGTERM)
        read_until(master, re.compile(r"shutdown_done"))
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        os.close(master)
    assert shown.count("services up in") == 1, shown


def test_run_not_on_a_terminal_has_no_summary_line(tree, run_svtree):
    tree.service("a", tree.sh(RUN))
    sv = run_svtree()
    sv.wait_state("ready", "a")
    wait_for(lambda: "tree_up" in sv.stderr(), what="the tree_up event")
    assert sv.stop() == 0
    assert "services up in" not in sv.stderr() and "service up in" not in sv.stderr()
