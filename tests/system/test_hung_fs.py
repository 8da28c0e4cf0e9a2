"""PID 1 never blocks on a hung filesystem: a reload or the first compile of a tree that
reaches into one, and the scan of a dead monitor's leftovers when one of them is stuck.

The hung filesystem is a FUSE mount whose server never answers (hung_fs.py, or a bare
/dev/fuse nobody reads: every lookup waits), made inside svtree's own mount namespace
(by a service, or by a wrapper around the harness's unshare), so it goes with the test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import hung_fs
from harness import needs_pidns, wait_for

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


def host_pid(sv, ns_pid: int) -> "int | None":
    """The pid, as this test sees it, of the process svtree's namespace calls `ns_pid`."""
    for p in sv.ns_pids():
        try:
            with open(f"/proc/{p}/status") as f:
                nspid = next(line.split()[1:] for line in f if line.startswith("NSpid:"))
        except (OSError, StopIteration):
            continue
        if int(nspid[-1]) == ns_pid:
            return p
    return None


def dead_mount_service(tree, mnt):
    mount_then = " ".join(dead_mount(mnt))
    tree.service("fs", tree.sh(f'exec {mount_then} sh -c "echo mounted >> $EVENTS; exec sleep 100000"\n'))


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


def test_a_stuck_leftover_does_not_hold_pid1(tree, run_svtree):
    """A dead monitor's leftovers are found by their SVTREE_SERVICE variable, read from
    /proc/PID/environ, which waits on the process's memory map lock. Here a leftover is
    stuck behind a read from a hung filesystem: the read happens in a helper with a
    deadline, so ctl answers at once and the service is restarted. Was: PID 1 read it
    itself and hung for good."""
    mnt = os.path.join(tree.root, "mnt")
    script = HUNG_FS
    tree.service("fs", tree.sh(f"mkdir -p {mnt}\nexec {sys.executable} {script} serve {mnt}\n"))
    tree.service("leaky", tree.sh(f"""
        while [ ! -e {mnt}/file ]; do sleep 0.05; done
        if [ ! -e left ]; then
            touch left
            ( setsid {sys.executable} {script} stuck {mnt}/file >> $EVENTS & )
        fi
        {RUN}"""), toml='depends_on = ["fs"]\n')
    sv = run_svtree(args=["--log-format", "json"])
    sv.wait_state("ready", "leaky")
    ns_pid = int(wait_for(lambda: next((r[1] for r in tree.event_lines() if r[0] == "stuck"), None),
                          what="the leftover to start"))
    stuck_pid = wait_for(lambda: host_pid(sv, ns_pid), what="the leftover in the namespace")
    wait_for(lambda: hung_fs.is_stuck(stuck_pid), what="the leftover to be stuck")
    service_pid = sv.status()["leaky"]["pid"]  # as the namespace counts
    with open(f"/proc/{host_pid(sv, service_pid)}/status") as f:
        monitor = int(next(line.split()[1] for line in f if line.startswith("PPid:")))
    assert monitor in sv.ns_pids() and monitor != sv.pid1
    os.kill(monitor, signal.SIGKILL)
    worst = 0.0
    deadline = time.monotonic() + 7.0  # past the scan's 5 s deadline
    while time.monotonic() < deadline:
        r, took = timed_ctl(sv, "status", "--json", timeout=10)
        assert r.returncode == 0, r.stderr
        worst = max(worst, took)
        time.sleep(0.2)
    assert worst < 1.0, worst
    row = {x["name"]: x for x in json.loads(sv.ctl("status", "--json").stdout)}["leaky"]
    assert row["pid"] and row["pid"] != service_pid and row["state"] == "ready"
    assert events(sv, "monitor_died") and events(sv, "leftover_scan_slow")
    assert sv.stop() == 0


@pytest.mark.parametrize("run", [
    # a daemon of run's, in its own session: re-parented to svtree only when run dies
    "setsid sh -c 'echo daemon $$ >> \"$0\"; exec sleep 100000' $EVENTS &\n" + RUN,
    # the same, double-forked: re-parented to the monitor at once
    "( setsid sh -c 'echo daemon $$ >> \"$0\"; exec sleep 100000' $EVENTS & )\n" + RUN,
], ids=["child-of-run", "double-forked"])
def test_a_dead_monitors_daemons_are_ended(tree, run_svtree, run):
    """Whatever the service left in another session is SIGKILLed when its monitor dies,
    also a daemon that is re-parented to svtree only after the helper first looked (it
    looks again once the service's process has been reaped)."""
    tree.service("a", tree.sh('[ -e once ] && exec sleep 100000\ntouch once\n' + run))
    sv = run_svtree()
    sv.wait_state("ready", "a")
    ns_daemon = int(wait_for(lambda: next((r[1] for r in tree.event_lines() if r[0] == "daemon"), None),
                             what="the daemon"))
    daemon = wait_for(lambda: host_pid(sv, ns_daemon), what="the daemon in the namespace")
    service_pid = sv.status()["a"]["pid"]
    with open(f"/proc/{host_pid(sv, service_pid)}/status") as f:
        monitor = int(next(line.split()[1] for line in f if line.startswith("PPid:")))
    assert monitor in sv.ns_pids() and monitor != sv.pid1
    os.kill(monitor, signal.SIGKILL)
    wait_for(lambda: not os.path.exists(f"/proc/{daemon}") or zombie(daemon), timeout=5,
             what="the daemon to be killed")
    sv.wait_state("ready", "a")
    assert sv.stop() == 0


@pytest.mark.parametrize("toml", ["", 'user = "root"\n'], ids=["vfork", "fork"])
def test_a_dead_monitors_child_that_has_not_exec_d_yet_is_ended(tree, run_svtree, toml):
    """No go pipe holds a monitor's new child back until the core knows its pid: if the
    monitor dies before the child's exec, the child is the core's, and still a copy of
    the monitor (its memory, vfork'd; or its copy, forked: with `user`), without the
    service's SVTREE_SERVICE marker. It must be ended all the same (by its name, the
    monitor's), or it would exec the service behind the core's back. Here the exec waits
    for ever: run's #! interpreter is a file of a hung filesystem, whose first page the
    kernel reads before it replaces anything of the process."""
    mnt = os.path.join(tree.root, "mnt")
    tree.service("fs", tree.sh(f"mkdir -p {mnt}\nexec {sys.executable} {HUNG_FS} serve {mnt}\n"))
    # With fork the monitor goes on at once: it stops before it tells the core the pid.
    sv = run_svtree(env={"SVTREE_TEST_STOP_AFTER_SPAWN": "victim"})
    sv.wait_state("ready", "fs")
    # The service whose exec hangs comes by a reload: it compiles once the mount is there.
    # (Its replacement hangs the same way: a short stop_timeout bounds the shutdown.)
    tree.service("victim", f"#!{mnt}/file\n", toml="stop_timeout = 0.5\n" + toml)
    wait_for(lambda: sv.ctl("reload").returncode == 0, what="the reload that adds the service")

    def hung_child():
        for monitor in sv.ns_pids():
            kids = waiting_in_fuse(children_of(monitor))
            if kids:
                return monitor, kids[0]
        return None

    monitor, child = wait_for(hung_child, timeout=15, what="a monitor's child hung in its exec")
    with open(f"/proc/{child}/comm") as f:
        assert f.read() == "svtree-monitor\n"  # the monitor's name: the exec has not replaced it
    assert sv.status()["victim"]["pid"] is None  # the core does not know it
    os.kill(monitor, signal.SIGKILL)
    # A wait for a FUSE answer the server has taken ends only with the server: the
    # SIGKILL stays pending until then, and the child dies on its way out of the kernel,
    # never running a line of the service.
    wait_for(lambda: zombie(child) or sigkill_pending(child), timeout=10,
             what="the child to be ended once its monitor died")
    assert sv.stop(30) == 0
    assert zombie(child)


def sigkill_pending(pid: int) -> bool:
    with open(f"/proc/{pid}/status") as f:
        pending = next(line.split()[1] for line in f if line.startswith("ShdPnd:"))
    return bool(int(pending, 16) >> (signal.SIGKILL - 1) & 1)


def children_of(pid: int) -> "list[int]":
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"


def test_the_sweep_waits_for_a_process_svtree_did_not_start_and_no_longer(tree, run_svtree):
    """A process entered into svtree's namespace from outside (as `docker exec` does) is
    no descendant of svtree: its end reaps nothing. The sweep still waits for it (svtree
    exits only when nothing else is left) and is woken by its end (a pidfd), not by the
    kill_grace deadline. Was: the sweep walked all of /proc on every event, and with no
    event for a stranger's end it waited out kill_grace."""
    tree.service("a", tree.sh(RUN))
    tree.write("svtree.toml", "kill_grace = 20\n")
    sv = run_svtree()
    sv.wait_state("ready", "a")
    gone = os.path.join(tree.root, "gone")
    stranger = subprocess.Popen(
        ["nsenter", "--target", str(sv.pid1), "--pid", "--mount", "--",
         "sh", "-c", f"trap 'sleep 1; date +%s%N > {gone}; exit 0' TERM; while :; do sleep 0.05; done"],
        start_new_session=True)
    try:
        wait_for(lambda: stranger_in(sv), what="the stranger in the namespace")
        start = time.monotonic()
        assert sv.stop(30) == 0
        took = time.monotonic() - start
        with open(gone) as f:
            ended = int(f.read()) / 1e9
        assert ended < time.time()  # it had ended before svtree did
        assert 1.0 <= took < 10.0, took  # after its 1 s trap, long before kill_grace (20 s)
    finally:
        if stranger.poll() is None:
            os.killpg(stranger.pid, signal.SIGKILL)
        stranger.wait(10)


def stranger_in(sv) -> bool:
    """Whether a process of svtree's PID namespace does not descend from svtree."""
    ns = os.readlink(f"/proc/{sv.pid1}/ns/pid")
    ours = set(sv.ns_pids())
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) in ours:
            continue
        try:
            if os.readlink(f"/proc/{p}/ns/pid") == ns:
                return True
        except OSError:
            continue
    return False
