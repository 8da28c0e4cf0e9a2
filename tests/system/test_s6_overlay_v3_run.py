"""`svtree run --s6-overlay ROOT` on an s6-overlay v3 tree written the way linuxserver.io
images write theirs, svtree as PID 1 of a PID namespace: an `init-*` oneshot chain whose
`up` calls a script in /etc/s6-overlay/scripts/, `svc-*` longruns depending on it, the
`user` and `user2` bundles, a logger pipeline (`svc-app` -> `svc-app-log`, Debian's
s6-log rotating into a directory), and the legacy directories beside them, in s6-overlay
v3's order; a oneshot's `down` (an execline command line) at shutdown; no line lost
across the logger's and the producer's restarts; S6_KILL_GRACETIME; what a failed or
slow boot does (S6_BEHAVIOUR_IF_STAGE2_FAILS, S6_CMD_WAIT_FOR_SERVICES_MAXTIME); the
container environment for with-contenv (S6_KEEP_ENV).
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import textwrap

import pytest

from harness import (
    IDLE_CALLS, done, event_time, json_events, kill_when_idle, needs_pidns, needs_s6_log, numbered,
    numbered_lines, pid_of, read_logdir, wait_for,
)

needs_execline = pytest.mark.skipif(shutil.which("execlineb") is None,
                                    reason="needs Debian's execline (execlineb): .ci/run installs it")
pytestmark = [needs_pidns, needs_execline, needs_s6_log, pytest.mark.timeout(60)]
LINES = 2000  # svc-app's lines (about 20 KB: they fit in the pipe while its logger is away)


def write(path: str, text: str = "", mode: int = 0o644) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(textwrap.dedent(text).lstrip("\n"))
    os.chmod(path, mode)


def longrun(tree, name: str, lines: int = 0) -> str:
    """A run script that says when it is up and when TERM stopped it. It tells its
    readiness on fd 3 (notification-fd) once its line is written, so that what depends
    on it starts after that line. `lines`: then it writes that many numbered lines on
    stdout (harness.numbered_lines)."""
    return tree.sh(f"""
        echo up {name} >> $EVENTS
        echo >&3; exec 3>&-
        trap 'echo stopped {name} >> $EVENTS; exit 0' TERM
    """) + (numbered_lines(tree, name, lines) if lines else "") + "sleep 1000 &\nwait\n"


def logdir(tree) -> str:
    return os.path.join(tree.root, "var", "log", "svc-app")


def v3_root(tree) -> str:
    root = os.path.join(tree.root, "root")
    etc = os.path.join(root, "etc")
    rc = os.path.join(etc, "s6-overlay", "s6-rc.d")
    scripts = os.path.join(etc, "s6-overlay", "scripts")
    events = tree.events

    def service(name: str, kind: str, deps=(), **files: str) -> None:
        write(f"{rc}/{name}/type", kind + "\n")
        for dep in deps:
            write(f"{rc}/{name}/dependencies.d/{dep}")
        for file, text in files.items():
            write(f"{rc}/{name}/{file}", text, 0o755 if file in ("run", "finish") else 0o644)

    def bundle(name: str, *contents: str) -> None:
        write(f"{rc}/{name}/type", "bundle\n")
        os.makedirs(f"{rc}/{name}/contents.d", exist_ok=True)
        for member in contents:
            write(f"{rc}/{name}/contents.d/{member}")

    # The init chain: each up calls a script, as linuxserver's do; down is execline.
    for name in ("init-adduser", "init-config"):
        write(f"{scripts}/{name}", tree.sh(f"echo up {name} >> $EVENTS\n"), 0o755)
    service("init-adduser", "oneshot", deps=("base",), up=f"{scripts}/init-adduser\n",
            down=f'/bin/sh -c "echo down init-adduser >> {events}"\n')
    service("init-config", "oneshot", deps=("init-adduser",), up=f"{scripts}/init-config\n")
    bundle("init-services", "init-config")  # linuxserver's name for the end of the chain
    ready = {"notification-fd": "3\n"}
    # The pipeline, as linuxserver writes it: svc-app's stdout to svc-app-log, an s6-log
    # (its readiness on fd 3: s6-log -d3) that starts after the init chain.
    service("svc-app", "longrun", deps=("init-services",), run=longrun(tree, "svc-app", LINES),
            **{**ready, "producer-for": "svc-app-log\n"})
    service("svc-app-log", "longrun", deps=("init-services",), **ready, **{
        "consumer-for": "svc-app\n", "pipeline-name": "svc-app-pipeline\n",
        "run": tree.sh(f"""
            echo up svc-app-log >> $EVENTS
            mkdir -p {os.path.dirname(logdir(tree))}
            exec s6-log -d3 n100 s4096 {logdir(tree)}
        """),
        # When and how s6-log ended: finish EXIT SIG (0 0: by itself, at end of file).
        "finish": tree.sh('echo "finished svc-app-log $1 $2" >> $EVENTS\n')})
    service("svc-late", "longrun", deps=("legacy-services",), run=longrun(tree, "svc-late"), **ready)
    service("svc-unused", "longrun", run=longrun(tree, "svc-unused"), **ready)  # in no bundle
    bundle("user", "init-adduser", "init-config", "svc-app-pipeline")
    bundle("user2", "svc-late")
    # The legacy directories, still read beside s6-rc.d.
    write(f"{etc}/cont-init.d/10-legacy", tree.sh("echo cont-init 10-legacy >> $EVENTS\n"), 0o755)
    write(f"{etc}/services.d/legacy-web/run", longrun(tree, "legacy-web"), 0o755)
    write(f"{etc}/services.d/legacy-web/notification-fd", "3\n")
    write(f"{etc}/cont-finish.d/10-bye", tree.sh("echo cont-finish 10-bye >> $EVENTS\n"), 0o755)
    return root


def lines(tree) -> "list[str]":
    return [" ".join(words) for words in tree.event_lines()]


def test_a_linuxserver_style_v3_tree_starts_and_stops_in_s6_overlay_order(tree, run_svtree):
    root = v3_root(tree)
    sv = run_svtree(source=["--s6-overlay", root])
    sv.wait_state("ready", "svc-app", "legacy-web", "svc-late")
    states = {n: r["state"] for n, r in sv.status().items()}
    assert states == {
        "cont-init.10-legacy": "done", "cont-finish.10-bye": "done",
        "init-adduser": "done", "init-config": "done",
        "svc-app": "ready", "svc-app-log": "ready", "legacy-web": "ready", "svc-late": "ready",
        "svc-unused": "down",  # neither user nor user2 reaches it: compiled, not started
    }
    assert sv.ctl("check").returncode == 0
    # base (cont-init.d) -> the init chain -> svc-app's logger, svc-app (user) ->
    # services.d -> user2.
    assert lines(tree) == ["cont-init 10-legacy", "up init-adduser", "up init-config", "up svc-app-log",
                           "up svc-app", "up legacy-web", "up svc-late"]
    wait_for(lambda: done(tree, "svc-app", 1), what="svc-app's lines")
    wait_for(lambda: len(read_logdir(logdir(tree))) == LINES, what="svc-app's lines in s6-log's directory")
    assert read_logdir(logdir(tree)) == numbered(1, LINES)
    assert len([n for n in os.listdir(logdir(tree)) if n.startswith("@")]) >= 3  # s6-log rotated

    assert sv.stop() == 0
    # The reverse: user2, services.d, user's longrun, then its logger (which read to end
    # of file and exited 0 by itself: no signal), then the oneshot's down (execline, run
    # by execlineb -P), then cont-finish.d once everything that depends on base is gone.
    assert lines(tree)[7:] == ["stopped svc-late", "stopped legacy-web", "stopped svc-app",
                               "finished svc-app-log 0 0", "down init-adduser", "cont-finish 10-bye"]


def test_ctl_start_starts_a_service_no_bundle_reaches(tree, run_svtree):
    root = v3_root(tree)
    sv = run_svtree(source=["--s6-overlay", root])
    sv.wait_state("ready", "svc-late")
    r = sv.ctl("start", "--wait", "svc-unused")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: "up svc-unused" in lines(tree), what="svc-unused to run")
    assert sv.stop() == 0


@pytest.mark.parametrize("grace_ms", [400, None])
def test_s6_kill_gracetime_is_the_wait_before_the_final_sigkill(tree, run_svtree, grace_ms):
    """The main command leaves a process that ignores SIGTERM: the final sweep sends it
    SIGTERM, then SIGKILL after S6_KILL_GRACETIME (svtree's kill_grace, 3 s, unset)."""
    root = v3_root(tree)
    env = {"S6_KILL_GRACETIME": str(grace_ms)} if grace_ms is not None else {}
    # The sleep ignores TERM (an ignored signal stays ignored across exec) and is
    # re-parented to svtree when the main command exits, which starts the shutdown.
    cmd = ["/bin/sh", "-c", "(trap '' TERM; exec sleep 1000) & exit 0"]
    sv = run_svtree(args=["--log-format", "json"], cmd=cmd, env=env, source=["--s6-overlay", root])
    assert sv.wait(30) == 0
    events = json_events(sv)
    sweep = [e for e in events if e["event"] == "shutdown_sweep"]
    kill = [e for e in events if e["event"] == "shutdown_kill"]
    assert len(sweep) == 1 and len(kill) == 1, [e["event"] for e in events]
    waited = event_time(kill[0]) - event_time(sweep[0])
    expected = grace_ms / 1000 if grace_ms is not None else 3.0
    assert expected - 0.05 <= waited < expected + 1.0, waited
    if grace_ms is not None:
        assert "S6_KILL_GRACETIME" not in sv.stderr()  # mapped: no warning


def test_unknown_s6_variables_are_warned_and_the_tree_runs(tree, run_svtree):
    root = v3_root(tree)
    sv = run_svtree(args=["--log-format", "json"], source=["--s6-overlay", root],
                    env={"S6_SYNC_DISKS": "1", "S6_NOT_A_THING": "x"})
    sv.wait_state("ready", "svc-late")
    warnings = [e["warning"] for e in json_events(sv) if e["event"] == "compile_warning"]
    assert warnings == [
        "environment: S6_NOT_A_THING: not an s6-overlay setting svtree knows: ignored",
        "environment: S6_SYNC_DISKS=1: ignored: svtree does not sync file systems at shutdown",
    ]
    assert sv.stop() == 0


def test_s6_cmd_receive_signals_hands_term_and_quit_to_the_main_command(tree, run_svtree):
    root = v3_root(tree)
    events = tree.events
    cmd = ["/bin/sh", "-c", f"trap 'echo main got TERM >> {events}' TERM; trap 'exit 7' QUIT; "
                            f"echo main up >> {events}; while :; do sleep 0.05; done"]
    sv = run_svtree(cmd=cmd, env={"S6_CMD_RECEIVE_SIGNALS": "1"}, source=["--s6-overlay", root])
    wait_for(lambda: "main up" in lines(tree), what="the main command")
    sv.signal(signal.SIGTERM)
    wait_for(lambda: "main got TERM" in lines(tree), what="TERM to reach the main command")
    # The TERM went to the main command only: no shutdown began.
    assert sv.proc.poll() is None and sv.ctl("check").returncode == 0
    assert not [line for line in lines(tree) if line.startswith("stopped")]
    sv.signal(signal.SIGQUIT)  # the main command exits 7: that shuts the tree down
    assert sv.wait() == 7
    assert lines(tree)[-1] == "cont-finish 10-bye"


# --- the logger pipeline -----------------------------------------------------------------

@pytest.mark.skipif(IDLE_CALLS is None, reason="syscall numbers known for x86_64 and aarch64")
def test_no_line_is_lost_across_the_loggers_and_the_producers_restarts(tree, run_svtree):
    """svc-app writes numbered lines; its s6-log is SIGKILLed mid-stream (while it waits
    for input, so that it has nothing in hand), then svc-app is SIGKILLed and runs again:
    s6-log's directory holds both runs' lines, each once, in order."""
    root = v3_root(tree)
    sv = run_svtree(source=["--s6-overlay", root])
    wait_for(lambda: len(read_logdir(logdir(tree))) >= 300, what="300 lines logged")
    kill_when_idle(pid_of(sv, "svc-app-log"))
    assert not done(tree, "svc-app", 1)  # mid-stream
    wait_for(lambda: done(tree, "svc-app", 1), what="svc-app's first run's lines")
    wait_for(lambda: len(read_logdir(logdir(tree))) == LINES, timeout=20, what="the first run logged")
    os.kill(pid_of(sv, "svc-app"), signal.SIGKILL)
    wait_for(lambda: done(tree, "svc-app", 2), timeout=20, what="svc-app's second run's lines")
    wait_for(lambda: len(read_logdir(logdir(tree))) == 2 * LINES, timeout=20, what="the second run logged")
    assert read_logdir(logdir(tree)) == numbered(1, LINES) + numbered(2, LINES)
    st = sv.status()
    assert (st["svc-app-log"]["restarts"], st["svc-app"]["restarts"]) == (1, 1)
    assert "finished svc-app-log 256 9" in lines(tree)  # the logger's run was SIGKILLed
    assert sv.stop() == 0


# --- a failed boot, a slow boot ----------------------------------------------------------

def add_failing_oneshot(root: str) -> None:
    """init-broken exits 3; svc-needs-broken depends on it; both in user2 (what depends on
    user, services.d's services, would wait for them too, as in s6-overlay)."""
    rc = os.path.join(root, "etc", "s6-overlay", "s6-rc.d")
    write(f"{rc}/init-broken/type", "oneshot\n")
    write(f"{rc}/init-broken/up", '/bin/sh -c "exit 3"\n')
    write(f"{rc}/svc-needs-broken/type", "longrun\n")
    write(f"{rc}/svc-needs-broken/run", "#!/bin/sh\nexec sleep 1000\n", 0o755)
    write(f"{rc}/svc-needs-broken/dependencies.d/init-broken")
    for name in ("init-broken", "svc-needs-broken"):
        write(f"{rc}/user2/contents.d/{name}")


def main_command(tree) -> "list[str]":
    return ["/bin/sh", "-c", f"trap 'exit 0' TERM; echo main up >> {tree.events}; "
                             "while :; do sleep 0.05; done"]


def boot_failures(sv) -> "list[dict]":
    return [e for e in json_events(sv) if e["event"] == "boot_failed"]


@pytest.mark.parametrize("value", [None, "2"])
def test_a_failed_oneshot_stops_the_tree_unless_told_otherwise(tree, run_svtree, value):
    """S6_BEHAVIOUR_IF_STAGE2_FAILS unset or 2: the tree stops, svtree exits 1, and the
    main command never starts."""
    root = v3_root(tree)
    add_failing_oneshot(root)
    env = {"S6_BEHAVIOUR_IF_STAGE2_FAILS": value} if value else {}
    sv = run_svtree(args=["--log-format", "json"], cmd=main_command(tree), env=env,
                    source=["--s6-overlay", root])
    assert sv.wait(30) == 1
    assert "main up" not in lines(tree)
    (failure,) = boot_failures(sv)
    assert (failure["services"], failure["then"], failure["reason"]) == (
        ["init-broken"], "shutdown", "oneshot init-broken failed")
    begin = next(e for e in json_events(sv) if e["event"] == "shutdown_begin")
    assert begin["reason"] == "oneshot init-broken failed"


@pytest.mark.parametrize("value, warned", [("0", False), ("1", True)])
def test_with_0_or_1_a_failed_oneshot_holds_back_only_what_depends_on_it(tree, run_svtree, value, warned):
    """The rest of the tree and the main command start; what depends on the failed
    oneshot waits; 1 warns once, 0 says nothing more than the oneshot's failure."""
    root = v3_root(tree)
    add_failing_oneshot(root)
    sv = run_svtree(args=["--log-format", "json"], cmd=main_command(tree),
                    env={"S6_BEHAVIOUR_IF_STAGE2_FAILS": value}, source=["--s6-overlay", root])
    wait_for(lambda: "main up" in lines(tree), what="the main command")
    st = {n: r["state"] for n, r in sv.status().items()}
    assert st["init-broken"] == "failed" and st["svc-needs-broken"] == "starting"  # waits for it
    assert {st[n] for n in ("svc-app", "svc-app-log", "legacy-web", "svc-late")} == {"ready"}
    failures = boot_failures(sv)
    if warned:
        assert [(f["level"], f["services"], f["then"]) for f in failures] == [
            ("warning", ["init-broken"], "going on without them")]
    else:
        assert failures == []
    check = sv.ctl("check")
    assert check.returncode == 1 and "init-broken is failed" in check.stdout + check.stderr
    assert sv.stop() == 0  # the main command's code


@pytest.mark.parametrize("value, code", [(None, 1), ("0", 0)])
def test_a_failing_cont_init_script_with_0_holds_nothing_back(tree, run_svtree, value, code):
    """s6-overlay runs every cont-init.d script and then the services, whatever a script
    exits, unless S6_BEHAVIOUR_IF_STAGE2_FAILS is 2 (svtree's rule when unset)."""
    root = v3_root(tree)
    write(os.path.join(root, "etc", "cont-init.d", "05-broken"), "#!/bin/sh\nexit 4\n", 0o755)
    env = {"S6_BEHAVIOUR_IF_STAGE2_FAILS": value} if value else {}
    sv = run_svtree(cmd=main_command(tree), env=env, source=["--s6-overlay", root])
    if code == 1:
        assert sv.wait(30) == 1
        assert "cont-init 10-legacy" not in lines(tree) and "main up" not in lines(tree)
        return
    wait_for(lambda: "main up" in lines(tree), what="the main command")
    assert sv.status()["cont-init.05-broken"]["state"] == "failed"
    assert lines(tree)[:4] == ["cont-init 10-legacy", "up init-adduser", "up init-config", "up svc-app-log"]
    assert sv.stop() == 0


def add_never_ready(root: str) -> None:
    """svc-slow (in user2) declares readiness on fd 3 and never gives it."""
    rc = os.path.join(root, "etc", "s6-overlay", "s6-rc.d")
    write(f"{rc}/svc-slow/type", "longrun\n")
    write(f"{rc}/svc-slow/notification-fd", "3\n")
    write(f"{rc}/svc-slow/run", "#!/bin/sh\nexec sleep 1000\n", 0o755)
    write(f"{rc}/user2/contents.d/svc-slow")


@pytest.mark.parametrize("value", [None, "2", "0", "1"])
def test_the_boot_timeout_applies_the_failure_rule(tree, run_svtree, value):
    """S6_CMD_WAIT_FOR_SERVICES_MAXTIME=1500 with a service that never gets ready: after
    1.5 s the tree stops (2, and unset), or the main command starts and svc-slow goes on.
    (What else is not ready yet at 1.5 s on a loaded machine is named too.)"""
    root = v3_root(tree)
    add_never_ready(root)
    env = {"S6_CMD_WAIT_FOR_SERVICES_MAXTIME": "1500"}
    if value is not None:
        env["S6_BEHAVIOUR_IF_STAGE2_FAILS"] = value
    sv = run_svtree(args=["--log-format", "json"], cmd=main_command(tree), env=env,
                    source=["--s6-overlay", root])
    if value in (None, "2"):
        assert sv.wait(30) == 1
        (failure,) = boot_failures(sv)
        assert "svc-slow" in failure["services"] and failure["reason"] == "boot_timeout passed"
        assert "main up" not in lines(tree)
        return
    wait_for(lambda: "main up" in lines(tree), what="the main command")
    events = json_events(sv)
    started = next(e for e in events if e["event"] == "svtree_started")
    main = next(e for e in events if e["event"] == "main_started")
    assert event_time(main) - event_time(started) >= 1.5
    sv.wait_state("ready", "svc-app", "legacy-web", "svc-late")  # the rest goes on
    assert sv.status()["svc-slow"]["state"] == "up"  # still running, still not ready
    failures = boot_failures(sv)
    assert len(failures) == (1 if value == "1" else 0)
    assert all("svc-slow" in f["services"] and f["level"] == "warning" for f in failures)
    assert not any(e["event"] == "tree_up" for e in events)
    assert sv.stop() == 0


def test_a_boot_within_its_timeout_is_not_a_failure(tree, run_svtree):
    root = v3_root(tree)
    sv = run_svtree(args=["--log-format", "json"], cmd=main_command(tree),
                    env={"S6_CMD_WAIT_FOR_SERVICES_MAXTIME": "20000"}, source=["--s6-overlay", root])
    wait_for(lambda: "main up" in lines(tree), what="the main command")
    assert boot_failures(sv) == [] and any(e["event"] == "tree_up" for e in json_events(sv))
    assert sv.stop() == 0


# --- the container environment ---------------------------------------------------------

CONTAINER_ENVIRONMENT = "/run/s6/container_environment"


def with_contenv(root: str) -> str:
    """A stand-in of s6-overlay's /command/with-contenv, with Debian's s6-envdir: unless
    S6_KEEP_ENV is set, the environment emptied but for PATH, then one variable per file
    of the directory."""
    path = os.path.join(root, "command", "with-contenv")
    write(path, f"""#!/bin/sh
        [ "0$S6_KEEP_ENV" -ne 0 ] && exec "$@"
        exec env -i PATH="$PATH" s6-envdir -Lf {CONTAINER_ENVIRONMENT} "$@"
    """, 0o755)
    return path


@pytest.mark.parametrize("keep_env", [None, "1"])
def test_the_container_environment_is_written_for_with_contenv(tree, run_svtree, keep_env):
    root = v3_root(tree)
    rc = os.path.join(root, "etc", "s6-overlay", "s6-rc.d")
    seen = os.path.join(tree.root, "seen")
    write(f"{rc}/svc-env/type", "longrun\n")
    write(f"{rc}/svc-env/run", f"#!{with_contenv(root)} /bin/sh\nenv > {seen}\nexec sleep 1000\n", 0o755)
    write(f"{rc}/user/contents.d/svc-env")
    env = {"APP_GREETING": "hello world", "APP_MULTILINE": "one\ntwo", "APP_EMPTY": ""}
    if keep_env:
        env["S6_KEEP_ENV"] = keep_env
    sv = run_svtree(args=["--log-format", "json"], env=env, source=["--s6-overlay", root], run_tmpfs="rw")
    sv.wait_state("ready", "svc-env", "svc-late")
    wait_for(lambda: os.path.exists(seen) and os.path.getsize(seen) > 0, what="svc-env's environment")
    directory = f"/proc/{sv.pid1}/root{CONTAINER_ENVIRONMENT}"
    if keep_env:
        assert not os.path.exists(directory)
        assert not [e for e in json_events(sv) if e["event"] == "container_environment"]
    else:
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o755
        with open(os.path.join(directory, "APP_GREETING"), "rb") as f:
            assert f.read() == b"hello world"  # no newline added
        got = open(seen).read()
        assert "APP_GREETING=hello world\n" in got and "APP_MULTILINE=one\ntwo\n" in got
        assert "SVTREE_SERVICE" not in got  # with-contenv's environment is the directory's
        assert "APP_EMPTY" not in got  # an empty file unsets it, as with s6-overlay
        (said,) = [e for e in json_events(sv) if e["event"] == "container_environment"]
        assert said["level"] == "info" and said["variables"] == len(os.listdir(directory))
    assert sv.stop() == 0


def test_a_read_only_run_is_one_warning_and_the_tree_runs(tree, run_svtree):
    root = v3_root(tree)
    sv = run_svtree(args=["--log-format", "json"], source=["--s6-overlay", root], run_tmpfs="ro")
    sv.wait_state("ready", "svc-late")
    (said,) = [e for e in json_events(sv) if e["event"] == "container_environment"]
    assert said["level"] == "warning" and said["path"] == CONTAINER_ENVIRONMENT and said["error"]
    assert sv.stop() == 0
