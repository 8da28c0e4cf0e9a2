"""`svtree run --s6-overlay ROOT`: an s6-overlay v2 tree as PID 1 of a PID namespace.

cont-init.d scripts run one at a time in lexical order before any service, the
services.d services run, and at shutdown the cont-finish.d scripts run in lexical order
once every service has stopped.
"""

from __future__ import annotations

import json
import os
import textwrap

import pytest

from harness import needs_pidns, wait_for

pytestmark = [needs_pidns, pytest.mark.timeout(60)]


def write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(textwrap.dedent(text).lstrip("\n"))
    os.chmod(path, 0o755)


def v2_root(tree, *, failing_init: bool = False) -> str:
    """ROOT/etc/{cont-init.d,services.d,cont-finish.d}, every script logging to $EVENTS."""
    root = os.path.join(tree.root, "root")
    etc = os.path.join(root, "etc")
    # Lexical, not numeric: "9-last" runs after "10-second". Each checks its predecessor ran.
    write(f"{etc}/cont-init.d/00-first", tree.sh("echo init 00-first >> $EVENTS\n"))
    write(f"{etc}/cont-init.d/10-second", tree.sh("""
        grep -q 00-first $EVENTS || exit 1
        sleep 0.2  # the next script must still wait for this one
        echo init 10-second >> $EVENTS
    """))
    write(f"{etc}/cont-init.d/9-last", tree.sh(
        "exit 3\n" if failing_init else "grep -q 10-second $EVENTS && echo init 9-last >> $EVENTS\n"))
    for name in ("web", "worker"):
        write(f"{etc}/services.d/{name}/run", tree.sh(f"""
            grep -q 9-last $EVENTS && echo up {name} >> $EVENTS
            trap 'echo stopped {name} >> $EVENTS; exit 0' TERM
            sleep 1000 &
            wait
        """))
    write(f"{etc}/cont-finish.d/10-flush", tree.sh("echo cont-finish 10-flush >> $EVENTS\n"))
    write(f"{etc}/cont-finish.d/20-goodbye", tree.sh("echo cont-finish 20-goodbye >> $EVENTS\n"))
    return root


def test_v2_tree_boots_in_order_and_runs_cont_finish_after_the_services(tree, run_svtree):
    root = v2_root(tree)
    sv = run_svtree(source=["--s6-overlay", root])
    sv.wait_state("ready", "web", "worker")
    status = sv.status()
    assert {n: r["state"] for n, r in status.items()} == {
        "cont-init.00-first": "done", "cont-init.10-second": "done", "cont-init.9-last": "done",
        "cont-finish.10-flush": "done", "cont-finish.20-goodbye": "done",
        "web": "ready", "worker": "ready",
    }
    assert sv.ctl("check").returncode == 0
    lines = [" ".join(words) for words in tree.event_lines()]
    assert lines[:3] == ["init 00-first", "init 10-second", "init 9-last"]
    assert sorted(lines[3:]) == ["up web", "up worker"]

    assert sv.stop() == 0
    lines = [" ".join(words) for words in tree.event_lines()]
    assert sorted(lines[5:7]) == ["stopped web", "stopped worker"]
    assert lines[7:] == ["cont-finish 10-flush", "cont-finish 20-goodbye"]


def test_a_failing_cont_init_script_fails_the_boot_and_cont_finish_still_runs(tree, run_svtree):
    root = v2_root(tree, failing_init=True)
    sv = run_svtree(source=["--s6-overlay", root])
    assert sv.wait() == 1
    lines = [" ".join(words) for words in tree.event_lines()]
    assert lines == ["init 00-first", "init 10-second",
                     "cont-finish 10-flush", "cont-finish 20-goodbye"]
    assert "cont-init.9-last" in sv.stderr()


def test_with_contenv_scripts_are_refused_with_the_line_to_write(tree, run_svtree):
    root = v2_root(tree)
    write(f"{root}/etc/cont-init.d/30-config", "#!/usr/bin/with-contenv sh\necho hi\n")
    sv = run_svtree(source=["--s6-overlay", root])
    assert sv.wait() == 2
    err = sv.stderr()
    assert "cont-init.d/30-config:1:" in err and "with-contenv" in err
    assert "make line 1 #!/" in err and "/sh" in err
    assert tree.event_lines() == []  # nothing was started


def pids(sv) -> "dict[str, int | None]":
    return {n: r["pid"] for n, r in sv.status().items()}


def reloads(sv) -> "list[dict]":
    return [e for e in (json.loads(line) for line in sv.stderr().splitlines() if line.startswith("{"))
            if e["event"] == "reload_applied"]


def test_the_watcher_reloads_an_edited_cont_init_script_and_runs_it_again(tree, run_svtree):
    root = v2_root(tree)
    sv = run_svtree(args=["--log-format", "json"], watch=True, source=["--s6-overlay", root])
    sv.wait_state("ready", "web", "worker")
    before = pids(sv)
    write(f"{root}/etc/cont-init.d/10-second", tree.sh("echo init 10-second edited >> $EVENTS\n"))
    wait_for(lambda: ["init", "10-second", "edited"] in tree.event_lines(),
             what="the edited cont-init script to run again")
    sv.wait_state("ready", "cont-init.10-second")
    assert [e["changed"] for e in reloads(sv)] == [["cont-init.10-second"]]
    after = pids(sv)
    assert (after["web"], after["worker"]) == (before["web"], before["worker"])
    lines = [" ".join(words) for words in tree.event_lines()]
    assert lines.count("init 00-first") == 1 and lines.count("init 9-last") == 1
    assert lines[-1] == "init 10-second edited"
    assert sv.stop() == 0


def test_a_cont_finish_d_created_later_is_watched_from_the_next_reload(tree, run_svtree):
    root = v2_root(tree)
    os.rename(f"{root}/etc/cont-finish.d", f"{tree.root}/later")
    sv = run_svtree(args=["--log-format", "json"], watch=True, source=["--s6-overlay", root])
    sv.wait_state("ready", "web", "worker")
    sv.wait_watcher()  # (its first reload, which catches up with edits made before it, is done)
    os.rename(f"{tree.root}/later", f"{root}/etc/cont-finish.d")  # outside what is watched
    r = sv.ctl("reload")
    assert r.returncode == 0, r.stderr
    assert "added: cont-finish.10-flush cont-finish.20-goodbye" in r.stdout, r.stdout
    sv.wait_state("ready", "web", "worker")  # restarted: they now depend on cont-finish.10-flush
    before = pids(sv)
    # The reload replaced the watcher by one that watches cont-finish.d too.
    write(f"{root}/etc/cont-finish.d/10-flush", tree.sh("echo cont-finish 10-flush edited >> $EVENTS\n"))
    wait_for(lambda: len(reloads(sv)) == 2, what="the watcher to reload the edited cont-finish script")
    assert reloads(sv)[1]["trigger"] == "watch" and reloads(sv)[1]["changed"] == ["cont-finish.10-flush"]
    # As for any changed oneshot with a finish, the stop of the old one runs the script
    # (already the new text: it is the same path) once now; README says so.
    wait_for(lambda: ["cont-finish", "10-flush", "edited"] in tree.event_lines(),
             what="the old cont-finish.10-flush to stop")
    sv.wait_state("ready", "cont-finish.10-flush")
    after = pids(sv)
    assert (after["web"], after["worker"]) == (before["web"], before["worker"])
    lines = [" ".join(words) for words in tree.event_lines()]
    assert [line for line in lines if line.startswith("cont-finish")] == ["cont-finish 10-flush edited"]
    assert sv.stop() == 0
    lines = [" ".join(words) for words in tree.event_lines()]
    assert lines[-2:] == ["cont-finish 10-flush edited", "cont-finish 20-goodbye"]
