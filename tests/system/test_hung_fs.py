"""PID 1 never blocks on a hung filesystem: a reload or the first compile of a tree that
reaches into one.

The hung filesystem is a FUSE mount whose server never answers (a bare /dev/fuse nobody
reads: every lookup waits), made inside svtree's own mount namespace (by a service, or
by a wrapper around the harness's unshare), so it goes with the test.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

import pytest

from conftest import needs_pidns, wait_for

pytestmark = [needs_pidns, pytest.mark.timeout(120),
              pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="needs /dev/fuse")]

RUN = "exec sleep 100000\n"
HUNG_FS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hung_fs.py")


def dead_mount(mnt: str, *argv: str) -> "list[str]":
    """argv that mounts a FUSE filesystem nobody serves on `mnt` (every lookup in it waits,
    killably), then execs `argv`."""
    return [sys.executable, HUNG_FS, "dead", mnt, *argv]


def events(sv, kind):
    return [e for e in (json.loads(line) for line in sv.stderr().splitlines() if line.startswith("{"))
            if e["event"] == kind]


def timed_ctl(sv, *args, timeout=20):
    start = time.monotonic()
    r = sv.ctl(*args, timeout=timeout)
    return r, time.monotonic() - start


def waiting_in_fuse(pids) -> "list[int]":
    """The processes waiting for a FUSE answer (fuse_get_req before the server's INIT
    answer, request_wait_answer after)."""
    out = []
    for p in pids:
        try:
            with open(f"/proc/{p}/wchan") as f:
                if f.read() in ("fuse_get_req", "request_wait_answer"):
                    out.append(p)
        except OSError:
            pass
    return out


def dead_mount_service(tree, mnt):
    tree.service("fs", tree.sh(f'exec {" ".join(dead_mount(mnt))} sh -c "echo mounted >> $EVENTS; exec sleep 100000"\n'))


def test_a_reload_into_a_hung_filesystem_is_rejected_at_its_deadline(tree, run_svtree):
    """The compile runs in a child: while it waits on the hung mount, ctl answers at once
    and services keep their pids; the child is SIGKILLed at reload_timeout and the reload
    rejected with the reason (log and ctl). Requests arriving meanwhile are merged into
    one next compile. Was: the compile ran in PID 1, which hung for good."""
    mnt = os.path.join(tree.root, "mnt")
    dead_mount_service(tree, mnt)
    tree.service("a", tree.sh(RUN))
    tree.write("svtree.toml", "reload_timeout = 1.5\n")
    sv = run_svtree(args=["--log-format", "json"])
    sv.wait_state("ready", "a", "fs")
    wait_for(lambda: ["mounted"] in tree.event_lines(), what="the dead mount")
    before = {n: r["pid"] for n, r in sv.status().items()}
    os.symlink(os.path.join(mnt, "remote"), os.path.join(tree.dir, "remote"))

    replies = {}

    def reload(key):
        replies[key] = timed_ctl(sv, "reload", timeout=30)

    first = threading.Thread(target=reload, args=("first",))
    first.start()
    wait_for(lambda: waiting_in_fuse(sv.ns_pids()), what="the compile to wait on the mount")
    more = [threading.Thread(target=reload, args=(k,)) for k in ("second", "third")]
    for t in more:
        t.start()
    status, took = timed_ctl(sv, "status")
    assert status.returncode == 0 and took < 1.0, (took, status.stderr)
    for t in [first, *more]:
        t.join(40)
    for key in ("first", "second", "third"):
        r, took = replies[key]
        assert r.returncode == 1, (key, r.stdout, r.stderr)
        assert "longer than 1.5 s (reload_timeout)" in r.stderr and "nothing changed" in r.stderr
    rejected = events(sv, "reload_rejected")
    assert len(rejected) == 2  # the first compile, and one for the two that came meanwhile
    assert all("longer than 1.5 s" in e["reason"] for e in rejected)
    assert {n: r["pid"] for n, r in sv.status().items()} == before

    os.unlink(os.path.join(tree.dir, "remote"))
    r = sv.ctl("reload", timeout=30)
    assert r.returncode == 0 and "no change" in r.stdout, r.stdout + r.stderr
    assert not waiting_in_fuse(sv.ns_pids())  # the killed compiles were reaped
    assert sv.stop() == 0


def test_sigterm_during_a_slow_first_compile_ends_svtree_at_once(tree, run_svtree):
    """SIGTERM while the first compile waits on a hung filesystem: svtree exits promptly
    with 0, having started nothing. Was: PID 1 still had SIGTERM at its default, which
    for PID 1 means ignored, and it sat in the compile for good."""
    mnt = os.path.join(tree.root, "mnt")
    tree.service("a", tree.sh("echo started >> $EVENTS\n" + RUN))
    os.symlink(os.path.join(mnt, "remote"), os.path.join(tree.dir, "remote"))
    # The dead mount exists before svtree starts: a mount namespace around the harness's.
    wrap = ["unshare", "--mount", *dead_mount(mnt)]
    sv = run_svtree(wrap=wrap)
    wait_for(lambda: waiting_in_fuse(sv.ns_pids()), what="the first compile to wait on the mount")
    start = time.monotonic()
    sv.signal(signal.SIGTERM)
    code = sv.wait(10)
    latency = time.monotonic() - start
    assert code == 0, sv.stderr()
    assert latency < 2.0, latency
    assert "SIGTERM while compiling the tree; nothing was started" in sv.stderr()
    assert tree.event_lines() == []
    sys.stderr.write(f"first-compile SIGTERM latency: {latency * 1000:.0f} ms\n")
