"""`svtree run --s6-overlay ROOT` on an s6-overlay v3 tree written the way linuxserver.io
images write theirs, svtree as PID 1 of a PID namespace: an `init-*` oneshot chain whose
`up` calls a script in /etc/s6-overlay/scripts/, `svc-*` longruns depending on it, the
`user` and `user2` bundles, and the legacy directories beside them, in s6-overlay v3's
order; a oneshot's `down` (an execline command line) at shutdown; S6_KILL_GRACETIME.
"""

from __future__ import annotations

import json
import os
import shutil
import textwrap
from datetime import datetime

import pytest

from harness import needs_pidns, wait_for

needs_execline = pytest.mark.skipif(shutil.which("execlineb") is None,
                                    reason="needs Debian's execline (execlineb): .ci/run installs it")
pytestmark = [needs_pidns, needs_execline, pytest.mark.timeout(60)]


def write(path: str, text: str = "", mode: int = 0o644) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(textwrap.dedent(text).lstrip("\n"))
    os.chmod(path, mode)


def longrun(tree, name: str) -> str:
    """A run script that says when it is up and when TERM stopped it. It tells its
    readiness on fd 3 (notification-fd) once its line is written, so that what depends
    on it starts after that line."""
    return tree.sh(f"""
        echo up {name} >> $EVENTS
        echo >&3; exec 3>&-
        trap 'echo stopped {name} >> $EVENTS; exit 0' TERM
        sleep 1000 &
        wait
    """)


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
            write(f"{rc}/{name}/{file}", text, 0o755 if file == "run" else 0o644)

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
    service("svc-app", "longrun", deps=("init-services",), run=longrun(tree, "svc-app"), **ready)
    service("svc-late", "longrun", deps=("legacy-services",), run=longrun(tree, "svc-late"), **ready)
    service("svc-unused", "longrun", run=longrun(tree, "svc-unused"), **ready)  # in no bundle
    bundle("user", "init-adduser", "init-config", "svc-app")
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
        "svc-app": "ready", "legacy-web": "ready", "svc-late": "ready",
        "svc-unused": "down",  # neither user nor user2 reaches it: compiled, not started
    }
    assert sv.ctl("check").returncode == 0
    # base (cont-init.d) -> the init chain -> svc-app (user) -> services.d -> user2.
    assert lines(tree) == ["cont-init 10-legacy", "up init-adduser", "up init-config",
                           "up svc-app", "up legacy-web", "up svc-late"]

    assert sv.stop() == 0
    # The reverse: user2, services.d, user's longrun, then the oneshot's down (execline,
    # run by execlineb -P), then cont-finish.d once everything that depends on base is gone.
    assert lines(tree)[6:] == ["stopped svc-late", "stopped legacy-web", "stopped svc-app",
                               "down init-adduser", "cont-finish 10-bye"]


def test_ctl_start_starts_a_service_no_bundle_reaches(tree, run_svtree):
    root = v3_root(tree)
    sv = run_svtree(source=["--s6-overlay", root])
    sv.wait_state("ready", "svc-late")
    r = sv.ctl("start", "--wait", "svc-unused")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: "up svc-unused" in lines(tree), what="svc-unused to run")
    assert sv.stop() == 0


def _events(sv) -> "list[dict]":
    return [json.loads(line) for line in sv.stderr().splitlines() if line.startswith("{")]


def _at(event: dict) -> datetime:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))


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
    events = _events(sv)
    sweep = [e for e in events if e["event"] == "shutdown_sweep"]
    kill = [e for e in events if e["event"] == "shutdown_kill"]
    assert len(sweep) == 1 and len(kill) == 1, [e["event"] for e in events]
    waited = (_at(kill[0]) - _at(sweep[0])).total_seconds()
    expected = grace_ms / 1000 if grace_ms is not None else 3.0
    assert expected - 0.05 <= waited < expected + 1.0, waited
    if grace_ms is not None:
        assert "S6_KILL_GRACETIME" not in sv.stderr()  # mapped: no warning


def test_unknown_s6_variables_are_warned_and_the_tree_runs(tree, run_svtree):
    root = v3_root(tree)
    sv = run_svtree(args=["--log-format", "json"], source=["--s6-overlay", root],
                    env={"S6_SYNC_DISKS": "1", "S6_NOT_A_THING": "x"})
    sv.wait_state("ready", "svc-late")
    warnings = [e["warning"] for e in _events(sv) if e["event"] == "compile_warning"]
    assert warnings == [
        "environment: S6_NOT_A_THING: not an s6-overlay setting svtree knows: ignored",
        "environment: S6_SYNC_DISKS=1: ignored: svtree does not sync file systems at shutdown",
    ]
    assert sv.stop() == 0


def test_s6_cmd_receive_signals_hands_term_and_quit_to_the_main_command(tree, run_svtree):
    import signal

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
