"""`svtree run --s6-overlay ROOT`: an s6-overlay v2 tree as PID 1 of a PID namespace.

cont-init.d scripts run one at a time in lexical order before any service, the
services.d services run, and at shutdown the cont-finish.d scripts run in lexical order
once every service has stopped.
"""

from __future__ import annotations

import os
import textwrap

import pytest

from conftest import needs_pidns

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
