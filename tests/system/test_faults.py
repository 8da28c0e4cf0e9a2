"""Faults svtree must survive without stopping supervision."""

from __future__ import annotations

import os
import shutil
import socket
import time

import pytest

from harness import needs_pidns, wait_for

pytestmark = [needs_pidns, pytest.mark.timeout(120)]

CGROUP_PIDS = "/sys/fs/cgroup/pids"


def starts(tree, name):
    return [float(r[2]) / 1e9 for r in tree.event_lines() if r[:2] == ["start", name]]


def crasher(tree, name="crasher"):
    tree.service(name, tree.sh(f"echo start {name} $(date +%s%N) >> $EVENTS\nsleep 0.1\nexit 1\n"),
                 toml="restart_delay = 0.05\nrestart_delay_max = 0.2\n")


@pytest.mark.skipif(not os.access(CGROUP_PIDS, os.W_OK), reason="needs a writable cgroup v1 pids controller")
def test_fork_failing_under_a_pids_limit_is_retried(tree, run_svtree):
    cg = os.path.join(CGROUP_PIDS, f"svtree-test-{os.getpid()}")
    os.mkdir(cg)
    try:
        with open(os.path.join(cg, "pids.max"), "w") as f:
            f.write("40")
        crasher(tree)
        # The hog takes every pid it can for 2 s, then lets go and stays quiet.
        tree.service("hog", tree.sh("""
            if [ -e hogged ]; then exec sleep 1000; fi
            touch hogged
            exec python3 -c '
            import os, time
            kids, said, end = [], False, time.time() + 2.5
            while time.time() < end:  # grab every pid that comes free for 2.5 s
                try:
                    pid = os.fork()
                except OSError:
                    if not said:
                        with open(os.environ["EVENTS"], "a") as f:
                            f.write("hogging\\n")
                        said = True
                    time.sleep(0.001)
                    continue
                if pid == 0:
                    time.sleep(max(0.0, end - time.time()))
                    os._exit(0)
                kids.append(pid)
            for k in kids:
                os.waitpid(k, 0)
            os.execv("/bin/sleep", ["sleep", "1000"])
            '
        """), toml='[environment]\nEVENTS = "' + tree.events + '"\n')
        sv = run_svtree(wrap=["sh", "-c", f'echo $$ > {cg}/cgroup.procs && exec "$@"', "sh"])
        wait_for(lambda: [r for r in tree.event_lines() if r[0] == "hogging"], timeout=20,
                 what="the hog to take the pids")
        hogged_at = time.time()
        # Once the hog's children end (2 s), the crasher is restarted again.
        wait_for(lambda: any(t > hogged_at + 1.0 for t in starts(tree, "crasher")), timeout=20,
                 what="supervision to go on after the pids came back")
        assert sv.proc.poll() is None
        assert "retry_later" in sv.stderr() or "fork" in sv.stderr()
        assert sv.ctl("status").returncode == 0
        assert sv.stop() == 0
    finally:
        with open(os.path.join(cg, "pids.max"), "w") as f:
            f.write("max")
        for sv_ in list(getattr(run_svtree, "started", [])):
            sv_.kill()
        wait_for(lambda: not open(os.path.join(cg, "cgroup.procs")).read().strip(), timeout=20)
        os.rmdir(cg)


def test_a_run_whose_interpreter_vanished_backs_off_and_recovers(tree, run_svtree):
    interp = os.path.join(tree.root, "mysh")
    shutil.copy("/bin/sh", interp)
    tree.service("odd", f"#!{interp}\necho start odd $(date +%s%N) >> {tree.events}\nexec sleep 1000\n",
                 toml="restart_delay = 0.1\nrestart_delay_max = 0.4\n")
    sv = run_svtree()
    sv.wait_state("ready", "odd")
    os.rename(interp, interp + ".away")
    assert sv.ctl("restart", "odd").returncode == 0
    wait_for(lambda: "cannot start" in sv.stdout() + sv.stderr(), what="the exec error to be reported")
    wait_for(lambda: sv.status()["odd"]["restarts"] >= 3, what="restart attempts")
    assert sv.status()["odd"]["state"] in ("backoff", "starting", "ready")
    os.rename(interp + ".away", interp)
    wait_for(lambda: len(starts(tree, "odd")) >= 2, what="the service back once the interpreter is back")
    sv.wait_state("ready", "odd")
    assert sv.stop() == 0


def test_emfile_in_the_core_does_not_stop_supervision(tree, run_svtree):
    crasher(tree)
    sv = run_svtree(wrap=["prlimit", "--nofile=48:48", "--"])
    sv.wait_socket()
    conns = []
    try:
        for _ in range(120):  # more than the core has fds: accept() meets EMFILE
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(sv.socket)
            except (BlockingIOError, OSError):
                s.close()
                break
            s.send(b'{"v": 1, "verb": "sta')  # half a request, never finished
            conns.append(s)
        t0 = time.time()
        wait_for(lambda: len([t for t in starts(tree, "crasher") if t > t0]) >= 5, timeout=15,
                 what="restarts while the core is out of fds")
        wait_for(lambda: "retry_later" in sv.stderr(), what="EMFILE to be logged")
    finally:
        for s in conns:
            s.close()
    wait_for(lambda: sv.ctl("status").returncode == 0, timeout=15, what="ctl to work again")
    assert sv.proc.poll() is None
    assert sv.stop() == 0


def test_a_flood_of_output_does_not_delay_supervision(tree, run_svtree):
    crasher(tree)
    tree.service("flood", tree.sh("yes 'flooding the output with one line after another' | head -c 30000000\n"
                                  "exec sleep 1000\n"))
    sv = run_svtree()
    wait_for(lambda: len(starts(tree, "crasher")) >= 10, timeout=20)
    times = starts(tree, "crasher")
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert max(gaps) < 1.5, gaps  # 0.1 s of life + <= 0.2 s of backoff, on a loaded machine
    t0 = time.monotonic()
    assert sv.ctl("status").returncode == 0
    assert time.monotonic() - t0 < 2.0
    assert sv.stop() == 0
    lines = sv.stdout().count("flood | flooding the output")
    assert lines == 30000000 // len("flooding the output with one line after another\n")


def test_a_service_that_closes_its_stdout_early(tree, run_svtree):
    tree.service("quiet", tree.sh("echo before\nexec >&- 2>&-\necho start quiet >> $EVENTS\nexec sleep 1000\n"))
    sv = run_svtree()
    wait_for(lambda: ["start", "quiet"] in tree.event_lines())
    sv.wait_state("ready", "quiet")
    assert sv.ctl("restart", "--wait", "quiet").returncode == 0
    wait_for(lambda: tree.event_lines().count(["start", "quiet"]) == 2)
    assert sv.stop() == 0
    assert sv.stdout().count("quiet | before") == 2
