"""The state machine without processes or sleeping: time is a number we pass in."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svtree.plan import ServiceSpec
from svtree.states import (
    TABLE, Ev, Event, Kill, KillFinish, RunFinish, Spawn, StartProbe, State, Status, StopProbe,
    Want, step,
)

SPEC = ServiceSpec(name="s", path="/x", run="/x/run", restart_delay=1.0, restart_delay_max=8.0,
                   stop_timeout=10.0, finish_timeout=5.0)


def feed(spec, status, *events, now=0.0):
    effects = []
    for ev in events:
        status, eff = step(spec, status, ev, now)
        effects.extend(eff)
    return status, effects


def up(spec=SPEC, now=0.0, pid=100):
    st, eff = feed(spec, Status(), Event(Ev.WANT_UP), now=now)
    assert eff == [Spawn()] and st.state is State.STARTING
    return feed(spec, st, Event(Ev.SPAWNED, pid=pid), now=now)


def test_table_is_total():
    for state in State:
        assert set(TABLE[state]) == set(Ev), state


def test_spawn_without_readiness_is_ready_at_once():
    st, eff = up()
    assert st.state is State.READY and st.ready and st.pid == 100 and st.pgid == 100


def test_notification_fd_waits_for_ready():
    spec = replace(SPEC, notification_fd=3)
    st, _ = up(spec)
    assert st.state is State.UP and not st.ready and st.deadline is None
    st, eff = feed(spec, st, Event(Ev.READY))
    assert st.state is State.READY and st.ready and eff == [StopProbe()]


def test_ready_command_probes_with_a_deadline_and_times_out_as_failure():
    spec = replace(SPEC, ready_command="true", ready_timeout=3.0)
    st, eff = up(spec, now=10.0)
    assert eff == [StartProbe()] and st.deadline == 13.0
    st, eff = feed(spec, st, Event(Ev.TIMEOUT), now=13.0)
    assert st.state is State.STOPPING and Kill(15, "main") in eff and StopProbe() in eff
    st, eff = feed(spec, st, Event(Ev.EXITED, code=None, sig=15), now=13.1)
    # a failure even though it lived longer than restart_delay: back off
    assert st.state is State.BACKOFF and st.deadline == pytest.approx(14.1)


@pytest.mark.parametrize("lifetimes,delays", [
    ([0.1, 0.1, 0.1, 0.1, 0.1], [1, 2, 4, 8, 8]),
    ([0.1, 0.1, 5.0, 0.1], [1, 2, None, 1]),
])
def test_backoff_doubles_up_to_the_cap_and_resets_after_a_long_run(lifetimes, delays):
    now = 0.0
    st, _ = up(now=now)
    for life, delay in zip(lifetimes, delays):
        now += life
        st, eff = feed(SPEC, st, Event(Ev.EXITED, code=1), now=now)
        if delay is None:
            assert st.state is State.STARTING and eff == [Spawn()]
        else:
            assert st.state is State.BACKOFF and st.deadline == pytest.approx(now + delay)
            now = st.deadline
            st, eff = feed(SPEC, st, Event(Ev.TIMEOUT), now=now)
            assert eff == [Spawn()]
        st, _ = feed(SPEC, st, Event(Ev.SPAWNED, pid=200), now=now)


@pytest.mark.parametrize("policy,code,sig,state", [
    ("always", 0, 0, State.STARTING),
    ("on-failure", 0, 0, State.DOWN),
    ("on-failure", 2, 0, State.STARTING),
    ("on-failure", None, 9, State.STARTING),
    ("never", 0, 0, State.DOWN),
    ("never", 1, 0, State.FAILED),
])
def test_restart_policies(policy, code, sig, state):
    spec = replace(SPEC, restart=policy)
    st, _ = up(spec)
    st, eff = feed(spec, st, Event(Ev.EXITED, code=code, sig=sig), now=5.0)
    assert st.state is state
    if state is not State.STARTING:
        assert st.gave_up and st.want is Want.DOWN and eff == []


def test_finish_gets_exit_and_signal_and_125_keeps_it_down():
    spec = replace(SPEC, finish="/x/finish")
    st, _ = up(spec)
    st, eff = feed(spec, st, Event(Ev.EXITED, code=None, sig=11), now=5.0)
    assert st.state is State.FINISHING and eff == [RunFinish(256, 11)] and st.deadline == 10.0
    st2, _ = feed(spec, st, Event(Ev.FINISH_EXITED, code=125), now=5.1)
    assert st2.state is State.DOWN and st2.want is Want.DOWN and st2.gave_up
    st3, eff = feed(spec, st, Event(Ev.FINISH_EXITED, code=0), now=5.1)
    assert st3.state is State.STARTING and eff == [Spawn()]


def test_a_hung_finish_is_killed_at_finish_timeout():
    spec = replace(SPEC, finish="/x/finish")
    st, _ = up(spec)
    st, _ = feed(spec, st, Event(Ev.EXITED, code=1), now=5.0)
    st, eff = feed(spec, st, Event(Ev.TIMEOUT), now=10.0)
    assert eff == [KillFinish()] and st.state is State.FINISHING and st.deadline is None
    st, eff = feed(spec, st, Event(Ev.FINISH_EXITED, code=256 + 9), now=10.01)
    assert st.state is State.STARTING


def test_stop_escalates_to_sigkill_of_everything_at_stop_timeout():
    st, _ = up(now=0.0)
    st, eff = feed(SPEC, st, Event(Ev.WANT_DOWN), now=1.0)
    assert st.state is State.STOPPING and eff == [StopProbe(), Kill(15, "main")] and st.deadline == 11.0
    st, eff = feed(SPEC, st, Event(Ev.TIMEOUT), now=11.0)
    assert eff == [Kill(9, "all")] and st.deadline is None
    st, eff = feed(SPEC, st, Event(Ev.EXITED, code=None, sig=9), now=11.01)
    assert st.state is State.DOWN and st.want is Want.DOWN and not st.gave_up


def test_a_drained_logger_gets_stop_timeout_to_end_by_itself():
    """DRAIN (its input closed): no signal at first; if run ends by itself (end of file)
    it is down, not restarted, with no signal sent."""
    st, _ = up(now=0.0)
    st, eff = feed(SPEC, st, Event(Ev.DRAIN), now=1.0)
    assert (st.state, st.want, st.deadline, st.draining) == (State.STOPPING, Want.DOWN, 11.0, True)
    assert eff == [StopProbe()]  # no Kill
    st, eff = feed(SPEC, st, Event(Ev.EXITED, code=0), now=1.5)
    assert (st.state, st.exit_code, st.draining, eff) == (State.DOWN, 0, False, [])


def test_a_drained_logger_that_does_not_end_gets_stop_signal_then_sigkill():
    st, _ = up(now=0.0)
    st, _ = feed(SPEC, st, Event(Ev.DRAIN), now=1.0)
    st, eff = feed(SPEC, st, Event(Ev.TIMEOUT), now=11.0)  # stop_timeout without an end
    assert eff == [Kill(15, "main")] and (st.state, st.deadline, st.draining) == (State.STOPPING, 21.0, False)
    st, eff = feed(SPEC, st, Event(Ev.TIMEOUT), now=21.0)
    assert eff == [Kill(9, "all")] and st.deadline is None
    st, _ = feed(SPEC, st, Event(Ev.EXITED, code=None, sig=9), now=21.01)
    assert st.state is State.DOWN


def test_drain_is_want_down_where_nothing_runs_to_drain():
    """Outside UP and READY, DRAIN does what WANT_DOWN does."""
    for state, row in TABLE.items():
        if state not in (State.UP, State.READY):
            assert row[Ev.DRAIN] is row[Ev.WANT_DOWN], state


def test_strays_keep_a_stop_going_until_they_are_gone():
    st, _ = up()
    st, _ = feed(SPEC, st, Event(Ev.WANT_DOWN), now=1.0)
    st, eff = feed(SPEC, st, Event(Ev.EXITED, code=0, strays=True), now=1.5)
    assert st.state is State.STOPPING and st.pid is None and eff == [Kill(15, "all")]
    st, eff = feed(SPEC, st, Event(Ev.STRAYS_GONE), now=1.6)
    assert st.state is State.DOWN


def test_a_stop_while_finish_runs_stops_what_the_crashed_run_left():
    """Found by the fuzzer: a stop (ctl stop, removal, shutdown) that came while finish
    ran after a crash ended in DOWN and left the crash's leftovers running."""
    spec = replace(SPEC, finish="/x/finish")
    st, _ = up(spec)
    st, eff = feed(spec, st, Event(Ev.EXITED, code=None, sig=10, strays=True), now=1.0)
    assert st.state is State.FINISHING and eff == [RunFinish(256, 10)]  # a crash: left alone
    st, eff = feed(spec, st, Event(Ev.WANT_DOWN, strays=True), now=1.1)
    assert st.state is State.FINISHING and eff == []
    st, eff = feed(spec, st, Event(Ev.FINISH_EXITED, code=0, strays=True), now=1.2)
    assert st.state is State.STOPPING and eff == [Kill(15, "all")] and st.deadline == 11.2
    st, eff = feed(spec, st, Event(Ev.TIMEOUT), now=11.2)
    assert eff == [Kill(9, "all")]
    st, eff = feed(spec, st, Event(Ev.STRAYS_GONE), now=11.3)
    assert st.state is State.DOWN and st.want is Want.DOWN and eff == []  # finish ran once


def test_a_restart_while_finish_runs_stops_the_leftovers_then_starts():
    spec = replace(SPEC, finish="/x/finish")
    st, _ = up(spec)
    st, _ = feed(spec, st, Event(Ev.EXITED, code=None, sig=10, strays=True), now=1.0)
    st, _ = feed(spec, st, Event(Ev.RESTART), now=1.1)
    st, eff = feed(spec, st, Event(Ev.FINISH_EXITED, code=0, strays=True), now=1.2)
    assert st.state is State.STOPPING and st.want is Want.UP and eff == [Kill(15, "all")]
    st, eff = feed(spec, st, Event(Ev.STRAYS_GONE), now=1.3)
    assert st.state is State.STARTING and eff == [Spawn()]


def test_without_a_stop_finish_leaves_the_leftovers_and_restarts():
    spec = replace(SPEC, finish="/x/finish")
    st, _ = up(spec)
    st, _ = feed(spec, st, Event(Ev.EXITED, code=None, sig=10, strays=True), now=5.0)
    st, eff = feed(spec, st, Event(Ev.FINISH_EXITED, code=0, strays=True), now=5.1)
    assert st.state is State.STARTING and eff == [Spawn()]


def test_stopping_leftovers_in_backoff_does_not_run_finish_again():
    spec = replace(SPEC, finish="/x/finish")
    st, _ = up(spec)
    st, _ = feed(spec, st, Event(Ev.EXITED, code=1, strays=True), now=0.1)
    st, _ = feed(spec, st, Event(Ev.FINISH_EXITED, code=0, strays=True), now=0.2)
    assert st.state is State.BACKOFF
    st, eff = feed(spec, st, Event(Ev.WANT_DOWN, strays=True), now=0.3)
    assert st.state is State.STOPPING and eff == [Kill(15, "all")]
    st, eff = feed(spec, st, Event(Ev.STRAYS_GONE), now=0.4)
    assert st.state is State.DOWN and eff == []


def test_a_done_oneshots_leftovers_are_stopped_with_it():
    spec = replace(SPEC, type="oneshot")
    st, _ = up(spec)
    st, _ = feed(spec, st, Event(Ev.EXITED, code=0), now=1.0)
    st, eff = feed(spec, st, Event(Ev.WANT_DOWN, strays=True), now=2.0)
    assert st.state is State.STOPPING and eff == [Kill(15, "all")]
    st, eff = feed(spec, st, Event(Ev.STRAYS_GONE), now=2.1)
    assert st.state is State.DOWN and eff == []


def test_restart_stops_then_starts_at_once_and_counts():
    st, _ = up()
    st, eff = feed(SPEC, st, Event(Ev.RESTART), now=1.0)
    assert st.state is State.STOPPING and st.want is Want.UP
    st, eff = feed(SPEC, st, Event(Ev.EXITED, code=None, sig=15), now=1.1)
    assert st.state is State.STARTING and eff == [Spawn()] and st.restarts == 1


def test_want_down_cancels_a_backoff():
    st, _ = up()
    st, _ = feed(SPEC, st, Event(Ev.EXITED, code=1), now=0.1)
    assert st.state is State.BACKOFF
    st, eff = feed(SPEC, st, Event(Ev.WANT_DOWN), now=0.2)
    assert st.state is State.DOWN and st.deadline is None and eff == []


def test_oneshot_done_then_finish_at_shutdown():
    spec = replace(SPEC, type="oneshot", finish="/x/finish")
    st, _ = up(spec)
    assert st.state is State.STARTING and st.pid == 100
    st, _ = feed(spec, st, Event(Ev.EXITED, code=0), now=1.0)
    assert st.state is State.DONE
    st, eff = feed(spec, st, Event(Ev.WANT_DOWN), now=2.0)
    assert st.state is State.FINISHING and eff == [RunFinish(0, 0)]
    st, _ = feed(spec, st, Event(Ev.FINISH_EXITED, code=0), now=2.1)
    assert st.state is State.DOWN


def test_oneshot_failure_is_for_good():
    spec = replace(SPEC, type="oneshot")
    st, _ = up(spec)
    st, eff = feed(spec, st, Event(Ev.EXITED, code=3), now=1.0)
    assert st.state is State.FAILED and st.gave_up and eff == []


def test_spawn_failure_backs_off():
    st, eff = feed(SPEC, Status(), Event(Ev.WANT_UP), Event(Ev.SPAWN_FAILED), now=0.0)
    assert st.state is State.BACKOFF and st.deadline == 1.0


events = st.sampled_from([
    Event(Ev.WANT_UP), Event(Ev.WANT_DOWN), Event(Ev.RESTART), Event(Ev.SPAWNED, pid=7),
    Event(Ev.SPAWN_FAILED), Event(Ev.EXITED, code=0), Event(Ev.EXITED, code=None, sig=9),
    Event(Ev.EXITED, code=1, strays=True), Event(Ev.READY), Event(Ev.TIMEOUT),
    Event(Ev.FINISH_EXITED, code=0), Event(Ev.FINISH_EXITED, code=125), Event(Ev.STRAYS_GONE),
    Event(Ev.WANT_DOWN, strays=True), Event(Ev.FINISH_EXITED, code=0, strays=True),
    Event(Ev.DRAIN), Event(Ev.DRAIN, strays=True),
])
specs = st.sampled_from([
    SPEC, replace(SPEC, finish="/f"), replace(SPEC, ready_command="true"),
    replace(SPEC, notification_fd=3, restart="on-failure"), replace(SPEC, type="oneshot", finish="/f"),
    replace(SPEC, restart="never"),
])


@settings(max_examples=300, deadline=None)
@given(specs, st.lists(events, max_size=30))
def test_invariants_under_any_event_sequence(spec, seq):
    status, now = Status(), 0.0
    for ev in seq:
        now += 0.5
        status, effects = step(spec, status, ev, now)
        # a deadline exactly where the state needs one
        if status.state in (State.BACKOFF,):
            assert status.deadline is not None
        if status.state in (State.DOWN, State.FAILED, State.DONE, State.READY):
            assert status.deadline is None
        # no process in the states that have none
        if status.state in (State.DOWN, State.FAILED, State.BACKOFF, State.FINISHING):
            assert status.pid is None
        # ready exactly in READY (a done oneshot is not "ready" as a process)
        assert status.ready == (status.state is State.READY)
        assert status.restarts >= 0
        assert not status.draining or status.state is State.STOPPING  # only while it waits for the end
        if any(isinstance(e, Spawn) for e in effects):
            assert status.state is State.STARTING and status.want is Want.UP
