"""Random trees, random faults, the real svtree: the guarantees (the README's section
"Guarantees") hold on every example (see svfuzz/ for what is generated and what is checked).

Profiles: `ci` by default, `long` with SVTREE_FUZZ_PROFILE=long (conftest.py).
A failure prints the example as Python (paste it into `@example(...)` or into
`svfuzz.run_example(...)` to replay it) and hypothesis shrinks it first.
"""

from __future__ import annotations

import pytest
from hypothesis import given, note, reject, settings

import svfuzz
from svfuzz import Action, Example, Svc, needs_pidns  # noqa: F401  (Action, Svc: for replays)

# The hard limit per test: a passing ci run takes a fraction of it; the rest is room for
# shrinking a failure (bounded by svfuzz's shrink budget).
PROFILE = svfuzz.CONFIG["profile"]  # set by conftest.py from SVTREE_FUZZ_PROFILE
TIMEOUT = {"ci": 900, "long": 4 * 3600}[PROFILE]
pytestmark = [needs_pidns, pytest.mark.timeout(TIMEOUT)]


@settings(settings.get_profile(PROFILE))
@given(svfuzz.examples())
def test_random_trees_keep_the_guarantees(ex):
    if svfuzz.shrink_budget_spent():
        reject()  # stop shrinking: the smallest failure so far is reported
    if svfuzz.past_deadline():
        return  # long_run.sh's time budget is spent: the remaining examples are no-ops
    note(repr(ex))
    svfuzz.run_example(ex)


def test_a_hand_written_tree_with_every_behaviour():
    """Every behaviour and finish kind once, with a fault of each kind: a fixed example
    that always runs (also a smoke test of the harness itself)."""
    ex = Example(
        services=(
            Svc("a", (), behaviour="notify", delay=0.1, finish="slow"),
            Svc("b", ("a",), type="oneshot", delay=0.1, finish="quick"),
            Svc("c", ("b",), behaviour="ignore_term", stop_timeout=0.5, finish="hung", finish_timeout=0.3),
            Svc("d", ("a",), behaviour="daemon", stubborn=True, stop_timeout=0.3),
            Svc("e", ("c", "d"), behaviour="forks", stubborn=True, finish="f125"),
            Svc("f", ("e",), behaviour="zombies", restart="on-failure"),
        ),
        actions=(
            Action(0.1, "kill", 4, "KILL"),  # e: finish exits 125, stays down
            Action(0.1, "ctl", 2, "restart"),  # c: TERM ignored, SIGKILL after 0.5 s
            Action(0.1, "reload", 0, "change"),  # a: restarted, nothing else moves
            Action(0.1, "kill", 5, "USR1"),  # f: on-failure restarts it
        ),
    )
    svfuzz.run_example(ex)


def test_a_hand_written_tree_with_flood_slow_stop_and_a_main_command():
    ex = Example(
        services=(
            Svc("a", (), behaviour="flood"),
            Svc("b", ("a",), behaviour="slow_stop", delay=0.3, stop_timeout=1.0, finish="quick"),
            Svc("c", ("b",), behaviour="self_kill", sig="HUP", delay=0.3, restart="always"),
        ),
        # svtree's stdout stalls while a floods it: every line still arrives, in order
        actions=(Action(0.0, "stall", 0, "1.0"),),
        main=(2.0, 7),
        mode="subreaper",
    )
    svfuzz.run_example(ex)


# --- regression tests: bugs this fuzzer found, each as its minimal example -------------------

@pytest.mark.parametrize("ex", [
    # a setsid daemon outlives its monitor
    Example(services=(Svc("a", (), behaviour="daemon"),),
            actions=(Action(0.1, "kill_monitor", 0, "KILL"),)),
    # ... and then its dependency at shutdown (b's daemon writes after a's TERM)
    Example(services=(Svc("a", ()), Svc("b", ("a",), behaviour="daemon", stubborn=True)),
            actions=(Action(0.1, "kill_monitor", 1, "KILL"),)),
    # the child a crashed run left behind outlives the monitor
    Example(services=(Svc("a", ()),),
            actions=(Action(0.1, "kill", 0, "KILL"), Action(0.5, "kill_monitor", 0, "KILL"))),
    # monitors killed the moment they have started a new child (their service was
    # SIGKILLed first): no go pipe holds it back, the marker and the monitor's name do
    Example(services=(Svc("a", ()), Svc("b", ("a",), finish="quick"), Svc("c", (), behaviour="forks")),
            actions=(Action(0.1, "kill_monitor", 0, "KILL@spawn"), Action(0.3, "kill_monitor", 1, "TERM@spawn"),
                     Action(0.3, "kill_monitor", 2, "HUP@spawn"), Action(0.3, "kill_monitor", 0, "USR1@spawn"))),
], ids=["daemon", "daemon-outlives-dependency", "crash-leftover", "killed-at-spawn"])
def test_a_dead_monitors_leftovers_do_not_run_unsupervised(ex):
    """Was: the core SIGKILLed only the service's current process group and main pid; a
    setsid daemon or an earlier incarnation's leftover was re-parented to svtree and ran
    unsupervised until the final sweep (fixed in 6e5eb65)."""
    svfuzz.run_example(ex)


def test_a_sweep_that_needs_sigkill_ends():
    """Was: once the final sweep SIGKILLed a leftover, reaping it never completed the
    shutdown (sweep_progress ran only in phase 'sweep'): svtree never exited (fixed in
    6e5eb65). The main command leaves a daemon that ignores SIGTERM."""
    svfuzz.run_example(Example(services=(Svc("a", ()),), main=(0.3, 7, "stubborn")), hang_grace=3.0)


def test_a_reload_queued_behind_a_removal_runs():
    """Was: a reload requested while a removed service was still stopping was queued and
    never run (Core.retired() skipped the listeners for a service without replacement);
    `ctl reload` blocked (fixed in 6e5eb65). b ignores TERM: its removal takes 1 s."""
    ex = Example(services=(Svc("a", ()), Svc("b", (), behaviour="ignore_term", stop_timeout=1.0)),
                 actions=(Action(0.3, "reload", 1, "remove"), Action(0.1, "reload", 0, "change")))
    svfuzz.run_example(ex, hang_grace=5.0)


def test_shutdown_waits_for_a_dependent_a_reload_is_removing():
    """Was: when the shutdown began while a removed service was still stopping, its
    dependency got SIGTERM at once (dependents came from the new plan; fixed in 6e5eb65)."""
    ex = Example(services=(Svc("a", ()), Svc("b", ("a",), behaviour="ignore_term", stop_timeout=1.0)),
                 actions=(Action(0.3, "reload", 1, "remove"), Action(0.1, "sigterm")))
    svfuzz.run_example(ex)


def test_no_internal_error_when_monitors_exit_with_their_pipes():
    """Was: one select() batch held a monitor's exit and the EOF of its output pipes;
    on_monitor_exit closed the pipes, then the stale key was dispatched: EBADF, logged as
    internal_error (fixed in 9bd47bd). Monitors of services that never started exit at
    once at shutdown; it was a race (4 runs in 10), so five runs."""
    ex = Example(services=(Svc("a", (), down=True), Svc("b", (), down=True), Svc("c", (), down=True)),
                 actions=(Action(0.3, "sigterm"),))
    for _ in range(5):
        svfuzz.run_example(ex)


def test_a_removal_during_finish_stops_what_the_crash_left():
    """Was: a's run was killed (USR1) and left its child; the removal came while finish
    ran; a went down with the child running, re-parented to svtree and unsupervised
    until the final sweep (fixed in 4634100; ctl stop and shutdown took the same path)."""
    ex = Example(services=(Svc("a", (), finish="slow"), Svc("b", ())),
                 actions=(Action(0.3, "kill", 0, "USR1"), Action(0.05, "reload", 0, "remove")))
    svfuzz.run_example(ex)


def test_a_new_monitor_starts_a_service_that_had_ended_for_good():
    """The model's, not svtree's: d (restart = "never") is killed and ends for good, but
    is still wanted up; when its monitor dies later, the new monitor starts it again, as
    the README says. The model kept d down. The example as the long profile found it
    (smaller ones drawn by hand did not reach d's monitor)."""
    ex = Example(
        services=(
            Svc("a", (), behaviour="forks", restart="never", stop_timeout=1.0, restart_delay=0.05,
                finish="f125", finish_timeout=0.3),
            Svc("b", (), restart="never", stop_timeout=0.2, restart_delay=0.2, finish="slow", finish_timeout=0.5),
            Svc("c", (), behaviour="flood", restart="never", stop_timeout=0.2, restart_delay=0.2, finish="hung"),
            Svc("d", (), behaviour="forks", restart="never", stop_timeout=0.7, finish_timeout=0.5),
        ),
        actions=(
            Action(0.1, "kill_monitor", 4, "HUP@spawn"), Action(0.6, "stall", 3, "0.3"),
            Action(0.05, "kill", 0, "KILL"), Action(0.0, "reload", 5, "change"),
            Action(0.05, "kill_monitor", 3, "INT@spawn"), Action(0.6, "stall", 2, "0.3"),
        ),
        kill_grace=1.0,
    )
    svfuzz.run_example(ex)
