"""What the engine sends svtree: `podman stop` (SIGTERM, then podman's own SIGKILL after
-t), `podman kill --signal HUP`, and a service tree bind-mounted from the host and edited
there. Services append "EVENT NAME TIME" lines to /data/events (a host directory), so the
order and timing are read on the host.
"""

from __future__ import annotations

import os
import time

import pytest

from podman_harness import event_time, podman, wait_until, write_tree

pytestmark = pytest.mark.timeout(300)


def stamping(stop_delay: float = 0.3) -> str:
    """A run script that records start, stop (TERM received) and gone (about to exit 0)."""
    return f"""\
        #!/bin/sh
        stamp() {{ echo "$1 $SVTREE_SERVICE $(date +%s.%N)" >> /data/events; }}
        trap 'stamp stop; sleep {stop_delay}; stamp gone; kill $child 2>/dev/null; exit 0' TERM
        stamp start
        sleep 1000 & child=$!
        wait $child
        """


def deps(*names: str) -> str:
    return "depends_on = [" + ", ".join(f'"{n}"' for n in names) + "]\n"


ORDER_TREE = {
    "db/run": stamping(), "app/run": stamping(), "cache/run": stamping(), "web/run": stamping(),
    "app/service.toml": deps("db"), "web/service.toml": deps("app", "cache"),
}
ORDER_EDGES = [("app", "db"), ("web", "app"), ("web", "cache")]  # (dependent, dependency)

STUBBORN_TIMEOUT = 2.0
STUBBORN_TREE = {
    "quick/run": stamping(),
    # Records the TERM and goes on: only the SIGKILL after stop_timeout ends it.
    "stubborn/run": """\
        #!/bin/sh
        stamp() { echo "$1 $SVTREE_SERVICE $(date +%s.%N)" >> /data/events; }
        trap 'stamp term' TERM
        stamp start
        while :; do sleep 1 & wait $!; done
        """,
    "stubborn/service.toml": f"stop_timeout = {STUBBORN_TIMEOUT}\n",
}

RELOAD_TREE = {
    "a/run": stamping(),
    # Ready once the test opens the gate: what `podman healthcheck run` must follow.
    "gate/run": stamping(),
    "gate/service.toml": 'ready_command = "test -e /data/open"\nready_timeout = 200\n',
}
WATCH_TREE = {"a/run": stamping(), "b/run": stamping()}


@pytest.fixture(scope="module")
def containers(image, launcher):
    json_log = ("--log-format", "json")
    return launcher.start_all({
        "order": {"image": image, "tree": ORDER_TREE, "args": json_log},
        "stubborn": {"image": image, "tree": STUBBORN_TREE, "args": json_log},
        "hup": {"image": image, "tree": RELOAD_TREE, "args": ("--no-watch", *json_log)},
        "watch": {"image": image, "tree": WATCH_TREE, "args": json_log},
    })


def stamps(c) -> "list[tuple[str, str, float]]":
    return [(event, name, float(t)) for event, name, t in c.data_lines("events")]


def first(c, event: str, name: str) -> float:
    return min(t for e, n, t in stamps(c) if (e, n) == (event, name))


def count(c, event: str, name: str) -> int:
    return sum(1 for e, n, _ in stamps(c) if (e, n) == (event, name))


def podman_stop(c, grace: int) -> "tuple[float, int]":
    started = time.monotonic()
    podman("stop", "-t", str(grace), c.name, timeout=grace + 60)
    return time.monotonic() - started, int(c.inspect("{{.State.ExitCode}}"))


def write_service(c, name: str, text: str) -> None:
    write_tree(os.path.dirname(c.tree), {f"{name}/run": text})


# --- podman stop ---------------------------------------------------------------------------------

def test_podman_stop_stops_in_dependency_order_exits_0_well_before_the_grace(containers):
    c = containers["order"]
    c.wait_ready("db", "app", "cache", "web")
    wait_until(lambda: all(count(c, "start", name) == 1 for name in ("db", "app", "cache", "web")), 10,
               "every service's start stamp")
    took, code = podman_stop(c, grace=30)
    assert code == 0, c.logs()[-3000:]
    assert took < 6, f"podman stop -t 30 took {took:.1f} s; the tree stops in about 1 s"
    for dependent, dependency in ORDER_EDGES:
        assert first(c, "gone", dependent) <= first(c, "stop", dependency), (dependent, dependency, stamps(c))
    events = [e["event"] for e in c.events()]
    assert "shutdown_done" in events and "shutdown_kill" not in events


def test_a_term_ignoring_service_is_killed_at_its_stop_timeout_before_podmans_kill(containers):
    c = containers["stubborn"]
    c.wait_ready("quick", "stubborn")
    grace = 6
    took, code = podman_stop(c, grace=grace)
    # Exit 0 from svtree, not 137 from podman's SIGKILL after -t.
    assert code == 0 and took < grace, (took, code, c.logs()[-3000:])
    events = c.events()
    begin = next(e for e in events if e["event"] == "shutdown_begin")
    exited = next(e for e in events if e["event"] == "service_exited" and e.get("service") == "stubborn")
    assert exited.get("signal") == "KILL", exited
    # The TERM went out after the shutdown began, the SIGKILL stop_timeout after the TERM.
    assert event_time(exited) - event_time(begin) >= STUBBORN_TIMEOUT
    assert event_time(exited) - first(c, "term", "stubborn") < STUBBORN_TIMEOUT + 1.5
    assert count(c, "gone", "quick") == 1


# --- health, SIGHUP and the watcher ----------------------------------------------------------------

def test_the_healthcheck_follows_readiness(containers):
    c = containers["hup"]
    c.wait_ready("a")
    check = c.ctl("check")
    assert check.returncode == 1 and "gate" in check.stdout + check.stderr
    assert podman("healthcheck", "run", c.name, check=False).returncode != 0
    open(os.path.join(c.data, "open"), "w").close()
    wait_until(lambda: podman("healthcheck", "run", c.name, check=False).returncode == 0, 30,
               "podman healthcheck run to pass once the gate is open", interval=0.5)


def test_podman_kill_hup_reloads(containers):
    c = containers["hup"]
    c.wait_ready("a")
    write_service(c, "b", stamping())  # no watcher (--no-watch): nothing happens yet
    podman("kill", "--signal", "HUP", c.name)
    c.wait_ready("b")
    applied = [e for e in c.events() if e["event"] == "reload_applied"]
    assert len(applied) == 1 and applied[0].get("added") == ["b"], applied
    assert count(c, "start", "a") == 1  # unchanged: not restarted
    assert c.running()


def test_editing_the_mounted_tree_on_the_host_reloads_through_the_watcher(containers):
    c = containers["watch"]
    c.wait_ready("a", "b")
    wait_until(lambda: any(e["event"] == "watcher_ready" for e in c.events()), 30, "the watcher")
    write_service(c, "b", stamping(stop_delay=0.1))  # changed
    write_service(c, "c", stamping())  # added
    wait_until(lambda: count(c, "start", "c") == 1 and count(c, "start", "b") == 2, 30,
               "b restarted and c started by the watcher's reload")
    applied = [e for e in c.events() if e["event"] == "reload_applied"]
    assert applied and applied[-1].get("added") == ["c"] and applied[-1].get("changed") == ["b"], applied
    assert count(c, "start", "a") == 1
