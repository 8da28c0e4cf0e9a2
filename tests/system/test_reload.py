"""Live reload against a real svtree in a PID namespace."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time

import pytest

from harness import needs_pidns, wait_for

pytestmark = [needs_pidns, pytest.mark.timeout(90)]

RUN = "exec sleep 1000\n"


def pids(sv):
    return {n: r["pid"] for n, r in sv.status().items()}


def reload_events(sv, kind):
    out = []
    for line in sv.stderr().splitlines():
        if line.startswith("{"):
            e = json.loads(line)
            if e["event"] == kind:
                out.append(e)
    return out


@pytest.fixture
def three(tree):
    for n in ("a", "b", "c"):
        tree.service(n, tree.sh(RUN))
    return tree


def start_watching(run_svtree, *names):
    sv = run_svtree(args=["--log-format", "json"], watch=True)
    sv.wait_state("ready", *names)
    sv.wait_watcher()
    return sv


def test_adding_a_directory_starts_it_and_no_other_pid_changes(three, run_svtree):
    sv = start_watching(run_svtree, "a", "b", "c")
    before = pids(sv)
    three.service("d", three.sh(RUN))
    wait_for(lambda: "d" in sv.status(), what="the reload to add d")
    sv.wait_state("ready", "d")
    after = pids(sv)
    assert {k: after[k] for k in before} == before
    assert after["d"]
    assert sv.stop() == 0


def test_editing_run_restarts_only_that_service(three, run_svtree):
    sv = start_watching(run_svtree, "a", "b", "c")
    before = pids(sv)
    three.write("b/run", three.sh("echo edited >> $EVENTS\n" + RUN), executable=True)
    wait_for(lambda: ["edited"] in three.event_lines(), what="the edited b to run")
    sv.wait_state("ready", "b")
    after = pids(sv)
    assert after["a"] == before["a"] and after["c"] == before["c"]
    assert after["b"] != before["b"]
    assert sv.stop() == 0


def test_editing_service_toml_restarts_it(three, run_svtree):
    sv = start_watching(run_svtree, "a", "b", "c")
    before = pids(sv)
    three.write("c/service.toml", "stop_timeout = 3.0\n")
    wait_for(lambda: reload_events(sv, "reload_applied"), what="a reload")
    sv.wait_state("ready", "c")
    after = pids(sv)
    assert after["c"] != before["c"] and after["a"] == before["a"] and after["b"] == before["b"]
    assert reload_events(sv, "reload_applied")[0]["changed"] == ["c"]
    assert sv.stop() == 0


def test_removing_a_directory_stops_it_and_its_finish_runs(tree, run_svtree):
    tree.service("a", tree.sh(RUN))
    tree.service("gone", tree.sh(RUN), finish=tree.sh('echo finish "$@" >> $EVENTS\n'))
    sv = start_watching(run_svtree, "a", "gone")
    before = pids(sv)
    shutil.rmtree(os.path.join(tree.dir, "gone"))
    wait_for(lambda: "gone" not in sv.status(), what="gone to be removed")
    assert [r[0] for r in tree.event_lines()] == ["finish"]
    assert tree.event_lines()[0][3] == "gone"
    assert pids(sv)["a"] == before["a"]
    assert sv.stop() == 0


def test_an_invalid_tree_changes_nothing_and_fixing_it_applies(three, run_svtree):
    sv = start_watching(run_svtree, "a", "b", "c")
    before = pids(sv)
    three.write("a/service.toml", 'restart = "sometimes"\n')
    wait_for(lambda: reload_events(sv, "reload_rejected"), what="the rejection in the log")
    ev = reload_events(sv, "reload_rejected")[0]
    assert any("a/service.toml" in e and "restart" in e for e in ev["errors"])
    r = sv.ctl("reload")
    assert r.returncode == 1
    assert "a/service.toml" in r.stderr and "nothing changed" in r.stderr
    assert pids(sv) == before
    three.write("a/service.toml", 'restart = "on-failure"\n')
    wait_for(lambda: reload_events(sv, "reload_applied"), what="the fixed tree applied")
    sv.wait_state("ready", "a")
    after = pids(sv)
    assert after["a"] != before["a"] and after["b"] == before["b"]
    assert sv.stop() == 0


def test_twenty_edits_in_one_second_give_one_reload(three, run_svtree):
    sv = start_watching(run_svtree, "a", "b", "c")
    for i in range(20):
        three.write("b/service.toml", f"stop_timeout = {i + 1}.0\n")
        time.sleep(0.045)
    wait_for(lambda: reload_events(sv, "reload_applied"), what="a reload")
    sv.wait_state("ready", "b")
    time.sleep(1.0)  # another reload would come within QUIET + MAX_WAIT
    assert len(reload_events(sv, "reload_applied")) == 1
    assert sv.stop() == 0


def test_sighup_and_ctl_reload_work_without_the_watcher(three, run_svtree):
    sv = run_svtree(args=["--log-format", "json"])  # --no-watch (the harness default)
    sv.wait_state("ready", "a", "b", "c")
    before = pids(sv)
    three.service("d", three.sh(RUN))
    time.sleep(0.5)
    assert "d" not in sv.status()  # nothing watches
    sv.signal(signal.SIGHUP)
    wait_for(lambda: "d" in sv.status(), what="SIGHUP to add d")
    sv.wait_state("ready", "d")
    three.write("a/run", three.sh("echo new >> $EVENTS\n" + RUN), executable=True)
    r = sv.ctl("reload")
    assert r.returncode == 0, r.stderr
    assert "changed: a" in r.stdout
    sv.wait_state("ready", "a")
    after = pids(sv)
    assert after["a"] != before["a"] and after["b"] == before["b"] and after["c"] == before["c"]
    r = sv.ctl("reload")
    assert r.returncode == 0 and "no change" in r.stdout
    assert sv.stop() == 0


def test_dependency_order_is_kept_when_both_ends_change(tree, run_svtree):
    # db says it is ready only once its start line is written: app's cannot come first.
    trap = """
        echo start {n} $(date +%s%N) >> $EVENTS
        trap 'echo stop {n} $(date +%s%N) >> $EVENTS; exit 0' TERM
        {ready}
        while :; do sleep 0.02; done
    """
    tree.service("db", tree.sh(trap.format(n="db", ready="echo >&3")), toml="notification_fd = 3\n")
    tree.service("app", tree.sh(trap.format(n="app", ready="")), toml='depends_on = ["db"]\n')
    sv = run_svtree(args=["--log-format", "json"])
    sv.wait_state("ready", "app")
    tree.write("db/run", tree.sh("# v2\n" + trap.format(n="db", ready="echo >&3")), executable=True)
    tree.write("app/service.toml", 'depends_on = ["db"]\nstop_timeout = 5.0\n')
    assert sv.ctl("reload").returncode == 0
    wait_for(lambda: len([r for r in tree.event_lines() if r[0] == "start"]) == 4, what="both restarted")
    rows = tree.event_lines()
    stop = {r[1]: int(r[2]) for r in rows if r[0] == "stop"}
    assert stop["app"] < stop["db"]  # dependents stop first
    starts = [r[1] for r in rows if r[0] == "start"][2:]
    assert starts == ["db", "app"]  # dependencies start first
    assert sv.stop() == 0


def test_a_service_writing_into_its_directory_is_never_restarted(tree, run_svtree):
    """What run writes into its own directory (its cwd) at run time is data: a pid file,
    a cache, a state file every 100 ms for 10 s restart nothing (was: the watcher and the
    digest counted them, and the service restarted on every write). Editing its run
    still restarts it."""
    tree.service("writer", tree.sh("""
        echo $$ > run.pid
        mkdir -p cache supervise
        while :; do
            date +%s%N > state.txt
            date > cache/entry
            : > .lock
            echo tick >> $EVENTS
            sleep 0.1
        done
    """))
    tree.service("other", tree.sh(RUN))
    sv = start_watching(run_svtree, "writer", "other")
    before = pids(sv)
    ticks = lambda: sum(1 for r in tree.event_lines() if r == ["tick"])  # noqa: E731
    start = ticks()
    wait_for(lambda: ticks() >= start + 100, timeout=40, what="100 writes (10 s)")
    status = sv.status()
    assert pids(sv) == before
    assert status["writer"]["restarts"] == 0
    assert reload_events(sv, "reload_applied") == []
    tree.write("writer/run", tree.sh("echo edited >> $EVENTS\n" + RUN), executable=True)
    wait_for(lambda: ["edited"] in tree.event_lines(), what="the edited run to start")
    after = pids(sv)
    assert after["writer"] != before["writer"] and after["other"] == before["other"]
    assert [e["changed"] for e in reload_events(sv, "reload_applied")] == [["writer"]]
    assert sv.stop() == 0


def test_editor_leftovers_never_restart_a_service(three, run_svtree):
    """Vim's swap files and editors' backups are neither definition nor a reason to wake
    the watcher, and a later unrelated reload leaves their service alone (was: `.run.swo`
    changed the service's digest without waking the watcher, so the next reload
    restarted it)."""
    sv = start_watching(run_svtree, "a", "b", "c")
    before = pids(sv)
    for name in (".run.swo", ".run.swp", "run.swo", "run~", ".service.toml.swx", "run.tmp"):
        three.write(f"a/{name}", "leftover\n")
    three.service("d", three.sh(RUN))  # an unrelated change: one reload
    wait_for(lambda: "d" in sv.status(), what="the reload that adds d")
    sv.wait_state("ready", "d")
    after = pids(sv)
    assert {k: after[k] for k in before} == before
    assert [e["added"] for e in reload_events(sv, "reload_applied")] == [["d"]]
    assert all(e["changed"] == [] for e in reload_events(sv, "reload_applied"))
    r = sv.ctl("reload")
    assert r.returncode == 0 and "no change" in r.stdout, r.stdout + r.stderr
    assert sv.stop() == 0


def test_a_fifo_named_like_a_settings_file_is_refused_and_nothing_stops(three, run_svtree):
    """A FIFO (or /dev/zero) where a definition file should be would block or fill the
    compile: it is refused, with one line naming the file; the running tree goes on."""
    sv = run_svtree(args=["--log-format", "json"])
    sv.wait_state("ready", "a", "b", "c")
    before = pids(sv)
    os.mkfifo(os.path.join(three.dir, "a", "service.toml"))
    os.symlink("/dev/zero", os.path.join(three.dir, "b", "type"))
    r = sv.ctl("reload", timeout=20)
    assert r.returncode == 1
    assert "a/service.toml: is a FIFO, not a regular file" in r.stderr
    assert "b/type: is a symlink to /dev/zero, a character device, not a regular file" in r.stderr
    [ev] = reload_events(sv, "reload_rejected")
    assert len(ev["errors"]) == 2
    assert pids(sv) == before
    assert sv.stop() == 0


def test_the_forked_watcher_dies_with_a_core_that_is_not_pid1(tree):
    """svtree as a child subreaper (not PID 1: its death does not end a namespace): the
    watcher, a fork of the core named svtree-watcher, is killed by the kernel when the
    core is SIGKILLed. Everything left is killed by pid."""
    import subprocess
    import sys

    from harness import REPO, children, descendants, proc_status

    sock = os.path.join(tree.root, "sock")
    with open(os.path.join(tree.root, "err"), "wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "svtree", "run", "--dir", tree.dir, "--socket", sock],
                                stdout=subprocess.DEVNULL, stderr=err,
                                env=dict(os.environ, PYTHONPATH=REPO), start_new_session=True)
    left: "list[int]" = []
    try:
        wait_for(lambda: b"watcher_ready" in open(os.path.join(tree.root, "err"), "rb").read(), 30,
                 what="the watcher")
        watchers = [p for p in children(proc.pid) if proc_status(p).get("Name") == "svtree-watcher"]
        assert len(watchers) == 1, [(p, proc_status(p).get("Name")) for p in children(proc.pid)]
        left = descendants(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

        def gone(pid: int) -> bool:
            try:
                return proc_status(pid).get("State", "Z").startswith("Z")  # a zombie
            except OSError:
                return True  # reaped

        wait_for(lambda: gone(watchers[0]), 10, what="the watcher to die with the core")
    finally:
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_watcher_starts_after_the_boot_and_does_not_wait_for_a_service_never_ready(tree, run_svtree):
    """The watcher is forked once the tree is up (its setup and first reload would take
    CPU from the services starting), but a tree that never comes up is watched too, about
    a second after boot began; an edit made before the watcher started is not missed."""
    tree.service("never", tree.sh(RUN), toml='ready_command = "false"\nready_interval = 0.2\n')
    tree.service("a", tree.sh(RUN))
    sv = run_svtree(args=["--log-format", "json"], watch=True)
    tree.service("b", tree.sh(RUN))  # before the watcher exists, most likely
    sv.wait_watcher(timeout=10)
    assert not reload_events(sv, "tree_up")  # never is never ready: no boot end to wait for
    wait_for(lambda: "b" in sv.status(), 10, what="b, added before the watcher was ready")
    assert sv.stop() == 0

