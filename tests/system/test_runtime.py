"""svtree as PID 1 in a PID namespace, real scripts, real signals."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from harness import children, descendants, needs_pidns, proc_status, read_cmdline, wait_for, zombies

pytestmark = [needs_pidns, pytest.mark.timeout(90)]


def events(tree, kind=None):
    rows = tree.event_lines()
    return [r for r in rows if kind is None or r[0] == kind]


def test_starts_in_dependency_order_and_stops_in_reverse(tree, run_svtree):
    # db <- api <- web, and a oneshot `migrate` between db and api.
    # The trap is set before the start line: once every start line is written, a TERM
    # always finds its trap (the other order let an early TERM kill one without a line).
    trap = """
        trap 'echo stop {n} $(date +%s%N) >> $EVENTS; exit 0' TERM
        echo start {n} $(date +%s%N) >> $EVENTS
        while :; do sleep 0.05; done
    """
    tree.service("db", tree.sh(trap.format(n="db")))
    tree.service("migrate", tree.sh("echo start migrate $(date +%s%N) >> $EVENTS\n"),
                 toml='type = "oneshot"\ndepends_on = ["db"]\n')
    tree.service("api", tree.sh(trap.format(n="api")), toml='depends_on = ["migrate"]\n')
    tree.service("web", tree.sh(trap.format(n="web")), toml='depends_on = ["api"]\n')
    tree.service("solo", tree.sh(trap.format(n="solo")))
    sv = run_svtree(args=["--log-format", "json"])
    sv.wait_state("ready", "web", "solo")
    # Without readiness a longrun counts as ready once spawned, so the order to check is
    # the order of spawns (svtree's log), and that migrate had finished before api.
    logs = [json.loads(line) for line in sv.stderr().splitlines() if line.startswith("{")]
    spawned = [e["service"] for e in logs if e["event"] == "service_started"]
    assert spawned.index("db") < spawned.index("migrate") < spawned.index("api") < spawned.index("web")
    done = [i for i, e in enumerate(logs) if e["event"] == "service_done" and e["service"] == "migrate"]
    api = [i for i, e in enumerate(logs) if e["event"] == "service_started" and e["service"] == "api"]
    assert done[0] < api[0]
    wait_for(lambda: {r[1] for r in events(tree, "start")} >= {"db", "api", "web", "solo"},
             what="every longrun's start line (its TERM trap is set)")
    assert sv.stop() == 0
    stops = {r[1]: int(r[2]) for r in events(tree, "stop")}
    assert set(stops) == {"db", "api", "web", "solo"}
    assert stops["web"] < stops["api"] < stops["db"]


def test_finish_gets_exit_code_signal_name_and_pgid(tree, run_svtree):
    finish = tree.sh('echo finish "$@" >> $EVENTS\nexit 125\n')
    tree.service("code", tree.sh("echo $$ > pid\nexit 7\n"), finish=finish)
    tree.service("sig", tree.sh("echo $$ > pid\nkill -USR1 $$\n"), finish=finish)
    sv = run_svtree()
    wait_for(lambda: len(events(tree, "finish")) == 2, what="both finish scripts")
    got = {r[3]: r[1:] for r in events(tree, "finish")}
    code_pid = open(os.path.join(tree.dir, "code", "pid")).read().strip()
    sig_pid = open(os.path.join(tree.dir, "sig", "pid")).read().strip()
    assert got["code"] == ["7", "0", "code", code_pid]
    assert got["sig"] == ["256", str(int(signal.SIGUSR1)), "sig", sig_pid]
    # finish exited 125: not restarted, stays down.
    sv.wait_state("down", "code", "sig")
    st = sv.status()
    assert st["code"]["restarts"] == 0 and st["code"]["state"] == "down"
    assert st["code"]["last_exit"] == 7
    assert st["sig"]["last_exit"] == -signal.SIGUSR1
    assert sv.stop() == 0


def test_backoff_doubles_for_quick_deaths_and_resets_after_a_long_run(tree, run_svtree):
    tree.service("crash", tree.sh("echo start crash $(date +%s%N) >> $EVENTS\nexit 1\n"),
                 toml="restart_delay = 0.2\nrestart_delay_max = 0.8\n")
    sv = run_svtree()
    wait_for(lambda: len(events(tree, "start")) >= 6, timeout=15, what="6 starts")
    times = [int(r[2]) / 1e9 for r in events(tree, "start")][:6]
    gaps = [b - a for a, b in zip(times, times[1:])]
    # 0.2, 0.4, 0.8, 0.8 (capped), 0.8 — each gap is the delay plus the run's short life.
    for gap, want in zip(gaps, [0.2, 0.4, 0.8, 0.8, 0.8]):
        assert want <= gap < want + 0.35, (gaps)
    assert sv.stop() == 0


def test_a_service_that_ran_long_enough_restarts_at_once(tree, run_svtree):
    tree.service("slow", tree.sh("echo start slow $(date +%s%N) >> $EVENTS\nsleep 0.3\nexit 1\n"),
                 toml="restart_delay = 0.2\n")
    sv = run_svtree()
    wait_for(lambda: len(events(tree, "start")) >= 3, what="3 starts")
    times = [int(r[2]) / 1e9 for r in events(tree, "start")][:3]
    for a, b in zip(times, times[1:]):
        assert 0.3 <= b - a < 0.45  # its own 0.3 s of life, no delay
    assert sv.stop() == 0


@pytest.mark.parametrize("policy,code,restarts,state", [
    ("always", 0, True, None),
    ("on-failure", 0, False, "down"),
    ("on-failure", 3, True, None),
    ("never", 3, False, "failed"),
    ("never", 0, False, "down"),
])
def test_restart_policies(tree, run_svtree, policy, code, restarts, state):
    tree.service("s", tree.sh(f"echo start s >> $EVENTS\nexit {code}\n"),
                 toml=f'restart = "{policy}"\nrestart_delay = 0.05\n')
    sv = run_svtree()
    if restarts:
        wait_for(lambda: len(events(tree, "start")) >= 3, what="restarts")
    else:
        sv.wait_state("down", "s")
        time.sleep(0.3)  # a wrong restart would happen within restart_delay
        assert len(events(tree, "start")) == 1
        assert sv.status()["s"]["state"] == state
    assert sv.stop() == 0


def test_readiness_gates_dependents(tree, run_svtree):
    # notification_fd: ready after 0.5 s; ready_command: ready once a file exists.
    tree.service("notify", tree.sh("""
        sleep 0.5
        echo ready notify $(date +%s%N) >> $EVENTS
        echo >&3
        exec sleep 1000
    """), toml="notification_fd = 3\n")
    tree.service("polled", tree.sh("""
        sleep 0.5
        echo ready polled $(date +%s%N) >> $EVENTS
        touch ready-flag
        exec sleep 1000
    """), toml='ready_command = "test -e ready-flag"\nready_interval = 0.05\n')
    tree.service("user", tree.sh("echo start user $(date +%s%N) >> $EVENTS\nexec sleep 1000\n"),
                 toml='depends_on = ["notify", "polled"]\n')
    sv = run_svtree()
    sv.wait_state("ready", "user")
    # ready at spawn (no readiness of its own): its first line may come a moment later
    wait_for(lambda: [r for r in tree.event_lines() if r[:2] == ["start", "user"]])
    ev = {(r[0], r[1]): int(r[2]) for r in tree.event_lines()}
    assert ev[("start", "user")] > ev[("ready", "notify")]
    assert ev[("start", "user")] > ev[("ready", "polled")]
    os.remove(os.path.join(tree.dir, "polled", "ready-flag"))
    assert sv.stop() == 0


def test_a_service_waiting_for_its_dependencies_says_so_once_per_wait(tree, run_svtree):
    tree.service("dep", tree.sh("sleep 0.3\necho >&3\nexec sleep 1000\n"), toml="notification_fd = 3\n")
    tree.service("user", tree.sh("exec sleep 1000\n"), toml='depends_on = ["dep"]\n')
    sv = run_svtree(args=["--log-format", "json"])
    sv.wait_state("ready", "user")

    def waits():
        lines = [json.loads(x) for x in sv.stderr().splitlines() if x.startswith("{")]
        return [(x["service"], x["dependencies"]) for x in lines if x["event"] == "service_waiting"]

    assert waits() == [("user", ["dep"])]  # boot: one line, however many reports came
    # A second wait: dep stopped, user started again (it waits: dep is wanted down).
    assert sv.ctl("stop", "user", "--wait").returncode == 0
    assert sv.ctl("stop", "dep", "--wait").returncode == 0
    assert sv.ctl("start", "user").returncode == 0
    wait_for(lambda: len(waits()) == 2, what="user to say it waits again")
    assert sv.status()["user"]["state"] == "starting"
    assert sv.ctl("start", "dep").returncode == 0
    sv.wait_state("ready", "user")
    assert waits() == [("user", ["dep"])] * 2
    assert sv.stop() == 0


def test_ready_timeout_restarts_the_service_as_failed(tree, run_svtree):
    tree.service("never-ready", tree.sh("echo start x >> $EVENTS\nexec sleep 1000\n"),
                 toml='ready_command = "false"\nready_interval = 0.05\nready_timeout = 0.3\n'
                      'restart_delay = 0.05\n')
    sv = run_svtree()
    wait_for(lambda: len(events(tree, "start")) >= 2, what="a restart after ready_timeout")
    assert sv.stop() == 0


def test_sigkill_after_stop_timeout_reaches_the_group_and_escapees(tree, run_svtree):
    tree.service("stubborn", tree.sh("""
        trap 'echo term stubborn $(date +%s%N) >> $EVENTS' TERM
        # a child in the same group that ignores TERM too
        sh -c 'trap "" TERM; while :; do sleep 0.05; done' &
        # a daemon that escaped the group with setsid
        setsid sh -c 'trap "" TERM; echo $$ > daemon.pid; while :; do sleep 0.05; done' &
        while :; do sleep 0.05; done
    """), toml="stop_timeout = 0.7\n")
    sv = run_svtree()
    wait_for(lambda: os.path.exists(os.path.join(tree.dir, "stubborn", "daemon.pid")))
    (monitor,) = children(sv.pid1)  # one service: one monitor
    service_procs = descendants(monitor)
    assert len(service_procs) >= 4  # run, its child, the daemon (and their sleeps)
    t0 = time.monotonic()
    r = sv.ctl("stop", "--wait", "stubborn")
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert 0.7 <= took < 2.0
    assert events(tree, "term")  # it did get the stop signal first
    assert children(monitor) == []
    assert not [p for p in service_procs if os.path.exists(f"/proc/{p}")]
    assert sv.stop() == 0


def test_a_stop_during_finish_stops_what_the_crash_left(tree, run_svtree):
    """Found by the fuzzer: run crashed leaving a child, `ctl stop` came while finish ran;
    the service went down with the child still running (and unsupervised once its
    monitor exited). Now the stop ends only when the child is gone, and finish runs once."""
    tree.service("crasher", tree.sh("""
        [ -e crashed ] && exec sleep 1000
        touch crashed
        sleep 1000 & echo $! > leftover.pid
        kill -USR1 $$
    """), finish=tree.sh("echo finish crasher $(date +%s%N) >> $EVENTS\nsleep 0.5\n"))
    sv = run_svtree()

    def leftovers():
        return [p for p in descendants(sv.pid1) if read_cmdline(p) == b"sleep\x001000\x00"]

    wait_for(lambda: events(tree, "finish"), what="finish to run")
    (leftover,) = leftovers()  # the crash left it; finish is running
    r = sv.ctl("stop", "--wait", "crasher")
    assert r.returncode == 0, r.stderr
    assert sv.status()["crasher"]["state"] == "down"
    assert leftovers() == [] and not os.path.exists(f"/proc/{leftover}"), "the crash's leftover still runs"
    assert len(events(tree, "finish")) == 1
    assert sv.stop() == 0


def test_escaped_daemon_is_gone_after_shutdown(tree, run_svtree):
    tree.service("forker", tree.sh("""
        setsid sh -c 'echo $$ > daemon.pid; exec sleep 1000' &
        exec sleep 1000
    """))
    sv = run_svtree()
    pidfile = os.path.join(tree.dir, "forker", "daemon.pid")
    wait_for(lambda: os.path.exists(pidfile) and open(pidfile).read().strip())
    ns_before = sv.ns_pids()
    assert sv.stop() == 0
    assert not [p for p in ns_before if os.path.exists(f"/proc/{p}")]


def test_reaps_2000_orphans(tree, run_svtree):
    # A oneshot makes 2,000 orphans (each a child of a subshell that exits at once).
    tree.service("orphans", tree.sh("""
        i=0
        while [ $i -lt 2000 ]; do ( sleep 0.2 & ) ; i=$((i+1)); done
        echo made >> $EVENTS
    """), toml='type = "oneshot"\n')
    tree.service("idle", tree.sh("exec sleep 1000\n"))
    sv = run_svtree()
    sv.wait_state("ready", "orphans", timeout=60)
    wait_for(lambda: len(sv.ns_pids()) <= 8, timeout=20, what="the orphans to exit")
    # A zombie may exist for the instant between its exit and the next reap pass; one
    # that lasts is a bug.
    wait_for(lambda: zombies(sv.ns_pids()) == [], timeout=2, what="every zombie reaped")
    assert sv.stop() == 0


def test_main_command_exit_code(tree, run_svtree):
    tree.service("svc", tree.sh("exec sleep 1000\n"))
    sv = run_svtree(cmd=["sh", "-c", "exit 3"])
    assert sv.wait() == 3
    sv2_tree = tree  # same tree, a command that exits 0
    sv2 = run_svtree(cmd=["true"])
    assert sv2.wait() == 0


def test_main_command_starts_after_services_are_ready_and_gets_143_on_term(tree, run_svtree):
    tree.service("svc", tree.sh("sleep 0.3\necho >&3\necho ready svc >> $EVENTS\nexec sleep 1000\n"),
                 toml="notification_fd = 3\n")
    sv = run_svtree(cmd=["sh", "-c", f"echo main >> {tree.events}; exec sleep 1000"])
    wait_for(lambda: [r for r in tree.event_lines() if r[0] == "main"], what="the main command")
    assert [r[0] for r in tree.event_lines()] == ["ready", "main"]
    sv.signal(signal.SIGTERM)
    assert sv.wait() == 128 + 15


def test_signals_are_forwarded_to_the_main_command(tree, run_svtree):
    tree.service("svc", tree.sh("exec sleep 1000\n"))
    main = f"""trap 'echo got USR1 >> {tree.events}' USR1
               trap 'echo got WINCH >> {tree.events}; exit 5' WINCH
               echo main >> {tree.events}
               while :; do sleep 0.05; done"""
    sv = run_svtree(cmd=["sh", "-c", main])
    wait_for(lambda: ["main"] in tree.event_lines(), what="the main command")
    sv.signal(signal.SIGUSR1)
    wait_for(lambda: ["got", "USR1"] in tree.event_lines(), what="USR1 at the main command")
    sv.signal(signal.SIGWINCH)
    assert sv.wait() == 5


def test_a_killed_monitor_is_replaced_and_its_service_restarted(tree, run_svtree):
    tree.service("svc", tree.sh("echo start svc $$ >> $EVENTS\nexec sleep 1000\n"))
    sv = run_svtree()
    sv.wait_state("ready", "svc")
    old = sv.status()["svc"]["pid"]
    # The monitor is the parent of the service (host pids: find via /proc).
    svc_host = [p for p in descendants(sv.pid1) if proc_status(p)["Name"] == "sleep"]
    assert len(svc_host) == 1
    monitor = int(proc_status(svc_host[0])["PPid"])
    os.kill(monitor, signal.SIGKILL)
    wait_for(lambda: len(events(tree, "start")) == 2, what="the service to restart")
    sv.wait_state("ready", "svc")
    new = sv.status()["svc"]["pid"]
    assert new != old
    assert not os.path.exists(f"/proc/{svc_host[0]}") or zombies([svc_host[0]]) == []
    # exactly one sleep runs: the old one was killed
    sleeps = [p for p in descendants(sv.pid1) if proc_status(p)["Name"] == "sleep"]
    assert len(sleeps) == 1
    assert sv.stop() == 0


def test_a_failing_oneshot_fails_the_boot(tree, run_svtree):
    tree.service("db", tree.sh("echo start db >> $EVENTS\nexec sleep 1000\n"))
    tree.service("setup", tree.sh("exit 4\n"), toml='type = "oneshot"\ndepends_on = ["db"]\n')
    tree.service("app", tree.sh("echo start app >> $EVENTS\nexec sleep 1000\n"),
                 toml='depends_on = ["setup"]\n')
    sv = run_svtree()
    assert sv.wait() == 1
    assert [r[1] for r in events(tree, "start")] == ["db"]


def test_a_critical_service_that_ends_stops_the_tree_with_exit_1(tree, run_svtree):
    tree.service("other", tree.sh("exec sleep 1000\n"))
    tree.service("vital", tree.sh("sleep 0.2\nexit 0\n"), toml='critical = true\nrestart = "never"\n')
    sv = run_svtree()
    assert sv.wait() == 1


def test_services_start_clean(tree, run_svtree):
    tree.service("probe", tree.sh("exec sleep 1000\n"), toml="notification_fd = 5\n"
                 "[environment]\nGREETING = \"hi\"\n")
    sv = run_svtree()
    sv.wait_state("up", "probe")
    pid = [p for p in descendants(sv.pid1) if proc_status(p)["Name"] == "sleep"][0]
    st = proc_status(pid)
    assert st["SigIgn"] == "0000000000000000"  # SIGPIPE and SIGXFSZ back to default
    assert st["SigBlk"] == "0000000000000000"
    assert st["SigCgt"] == "0000000000000000"
    assert sorted(int(fd) for fd in os.listdir(f"/proc/{pid}/fd")) == [0, 1, 2, 5]
    assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"
    assert os.readlink(f"/proc/{pid}/cwd") == os.path.join(tree.dir, "probe")
    env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
    assert b"GREETING=hi" in env
    # own session and process group
    stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    pgrp, session = int(stat[2]), int(stat[3])
    assert pgrp == session == pid  # /proc shows ids as the reader's namespace sees them
    assert sv.stop() == 0


def test_prefix_output_keeps_every_line_and_partial_last_lines(tree, run_svtree):
    tree.service("talk", tree.sh("""
        echo one
        echo err-line >&2
        printf 'no newline'
        exit 1
    """), toml='restart = "never"\n')
    sv = run_svtree()
    sv.wait_state("down", "talk")
    assert sv.stop() == 0
    out = sv.stdout().splitlines()
    assert "talk | one" in out
    assert "talk | no newline" in out
    assert "talk | err-line" in sv.stderr().splitlines()


def test_runs_as_a_subreaper_when_not_pid1(tree):
    import subprocess
    import sys

    from harness import REPO

    tree.service("forker", tree.sh("""
        ( sleep 0.1 & )
        echo done >> $EVENTS
        exec sleep 1000
    """))
    sock = os.path.join(tree.root, "sock")
    proc = subprocess.Popen([sys.executable, "-m", "svtree", "run", "--dir", tree.dir, "--socket", sock,
                             "--no-watch"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, PYTHONPATH=REPO), start_new_session=True)
    try:
        wait_for(lambda: ["done"] in tree.event_lines())
        wait_for(lambda: len(descendants(proc.pid)) == 2, what="the orphan reaped")  # monitor + sleep
        os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0
        assert b"child_subreaper" in err
        assert not children(proc.pid)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
