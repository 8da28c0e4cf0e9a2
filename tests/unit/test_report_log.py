"""The table from a monitor's report to svtree's log events: total, names from the
catalogue, and the same events the core logged before reports carried their event
(when it diffed two snapshots), for any sequence of the state machine's events."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import example, given, settings
from hypothesis import strategies as st

from svtree import log
from svtree.core import report_log
from svtree.messages import Report
from svtree.signames import signal_name
from svtree.states import Ev, Event, State, Status, Want, step
from test_states import SPEC
from test_states import events as machine_events
from test_states import specs as machine_specs



def test_every_event_and_every_state_has_a_row():
    assert set(report_log.BY_EVENT) == set(Ev)
    assert set(report_log.BY_STATE) == set(State)


def test_every_logged_name_is_in_the_catalogue_and_in_names():
    names = {"reports_coalesced", "retry_later"}
    for state in State:
        for prev in State:
            for event in [None, *Ev]:
                for gave_up, finish, code in [(False, None, 0), (True, 125, None), (True, 0, 1)]:
                    r = Report(seq=1, state=state, prev=prev, want=Want.UP, pid=3, pgid=3,
                               gave_up=gave_up, finish_code=finish, exit_code=code, event=event)
                    names |= {name for _, name, _ in report_log.said(r)}
    assert names <= set(log.EVENTS), names - set(log.EVENTS)
    assert names == set(report_log.NAMES)
    assert {"service_started", "service_exited", "service_ready", "service_restarting",
            "service_failed", "service_done", "service_stopped"} <= names


def test_a_gap_in_the_numbers_is_said_first():
    r = Report(seq=9, state=State.READY, prev=State.STARTING, want=Want.UP, pid=4, pgid=4,
               event=Ev.SPAWNED)
    assert [n for _, n, _ in report_log.said(r, missed=5)] == [
        "reports_coalesced", "service_started", "service_ready"]
    assert report_log.said(r, missed=5)[0][2] == {"reports": 5}


def diffed(old: Report, new: Report) -> list:
    """What the core logged before, by diffing two reports (the old log_transition)."""
    out = []
    if new.error:
        out.append(("warning", "retry_later", {"error": new.error}))
    if new.pid and new.pid != old.pid:
        out.append(("info", "service_started", {"pid": new.pid, "restarts": new.restarts}))
    if old.pid and new.pid is None and new.event is Ev.EXITED:
        fields = {"pid": old.pid, "uptime": round(new.last_uptime or 0.0, 3)}
        if new.exit_code is None:
            fields["signal"] = signal_name(new.exit_signal or 0)
        else:
            fields["exit_code"] = new.exit_code
        out.append(("info", "service_exited", fields))
    state, was = new.state, old.state
    if state == was:
        return out
    if state is State.READY:
        out.append(("info", "service_ready", {"pid": new.pid}))
    elif state is State.BACKOFF:
        out.append(("info", "service_restarting", {"delay": new.delay}))
    elif state is State.FAILED:
        out.append(("warning", "service_failed", {"exit_code": new.exit_code,
                                                  "signal": new.exit_signal or None}))
    elif state is State.DONE:
        out.append(("info", "service_done", {}))
    elif state is State.DOWN and was in (State.STOPPING, State.FINISHING):
        out.append(("info", "service_stopped", {}))
    elif state is State.DOWN and new.gave_up:
        out.append(("info", "service_failed", {
            "reason": "finish exited 125" if new.finish_code == 125 else "restart policy",
            "exit_code": new.exit_code}))
    if was is State.FINISHING and new.finish_code is not None:
        out.append(("debug", "finish_exited", {"exit_code": new.finish_code}))
    return out


def as_report(seq: int, status: Status, prev: State, event) -> Report:
    return Report(seq=seq, state=status.state, prev=prev, want=status.want, pid=status.pid,
                  pgid=status.pgid, started_at=status.started_at, restarts=status.restarts,
                  exit_code=status.exit_code, exit_signal=status.exit_signal,
                  ready=status.ready, gave_up=status.gave_up, finish_code=status.finish_code,
                  last_uptime=status.last_uptime,
                  delay=1.0 if status.state is State.BACKOFF else None, event=event)


# The state machine's own test strategies; SPAWNED comes from this test, after a spawn.
events = machine_events.filter(lambda e: e.kind is not Ev.SPAWNED)
specs = machine_specs | st.just(replace(SPEC, type="oneshot"))


def applicable(status: Status, ev: Event) -> bool:
    """Would the monitor feed this event now? (EXITED only for a running run, ...)"""
    return {
        Ev.EXITED: status.pid is not None,
        Ev.FINISH_EXITED: status.state is State.FINISHING,
        Ev.READY: status.state is State.UP,
        Ev.TIMEOUT: status.deadline is not None,
        Ev.STRAYS_GONE: status.state is State.STOPPING and status.pid is None,
        Ev.SPAWN_FAILED: ev.pid == -1,  # only right after a spawn: see below
    }.get(ev.kind, True)


U, D, X, F = Event(Ev.WANT_UP), Event(Ev.WANT_DOWN), Event(Ev.EXITED, code=1), Event(Ev.FINISH_EXITED, code=0)


@settings(max_examples=400, deadline=None)
@given(specs, st.lists(events, max_size=40))
# Each row of the table at least once: a stop while finish runs, finish saying 125, a
# oneshot done and failed, a spawn failure, a ready timeout, a policy giving up.
@example(replace(SPEC, finish="/f"), [U, X, D, F])
@example(replace(SPEC, finish="/f"), [U, X, Event(Ev.FINISH_EXITED, code=125)])
@example(replace(SPEC, type="oneshot", finish="/f"), [U, Event(Ev.EXITED, code=0), D, F])
@example(replace(SPEC, type="oneshot"), [U, X])
@example(SPEC, [U, Event(Ev.SPAWN_FAILED, pid=-1)])
@example(replace(SPEC, ready_command="true"), [U, Event(Ev.TIMEOUT), Event(Ev.EXITED, code=None, sig=15)])
@example(replace(SPEC, restart="on-failure"), [U, Event(Ev.EXITED, code=0)])
@example(SPEC, [U, D, Event(Ev.EXITED, code=0, strays=True), Event(Ev.STRAYS_GONE)])
def test_the_table_logs_what_diffing_logged(spec, seq):
    """The monitor's reports for any sequence of events it could feed (a spawn is
    followed by SPAWNED, or by SPAWN_FAILED when that is next), logged through the table
    and by the old diff: the same lines."""
    status, now, pid, n = Status(), 0.0, 100, 0
    last = Report(seq=0, state=State.DOWN, prev=State.DOWN, want=Want.DOWN)
    todo = list(seq)
    while todo:
        ev = todo.pop(0)
        if not applicable(status, ev):
            continue
        now += 0.5
        prev = status.state
        status, effects = step(spec, status, ev, now)
        if any(type(e).__name__ == "Spawn" for e in effects):
            if todo and todo[0].kind is Ev.SPAWN_FAILED:
                todo.insert(0, todo.pop(0))
                todo[0] = Event(Ev.SPAWN_FAILED, pid=-1)  # marks it as applicable
            else:
                pid += 1
                todo.insert(0, Event(Ev.SPAWNED, pid=pid))
        new = as_report(n + 1, status, prev, ev.kind)
        carried = lambda r: r._replace(seq=0, prev=State.DOWN, event=None)  # noqa: E731
        if carried(new) == carried(last):
            continue  # the monitor sends no report when nothing changed
        n += 1
        # The same lines in the same order, but for `finish_exited`, logged at debug
        # before (never shown: svtree shows info and above) and at info now, with its
        # event instead of last.
        table, diff = report_log.said(new), diffed(last, new)
        other = lambda lines: [x for x in lines if x[1] != "finish_exited"]  # noqa: E731
        finish = lambda lines: [x[1:] for x in lines if x[1] == "finish_exited"]  # noqa: E731
        assert other(table) == other(diff), (last, new)
        assert finish(table) == finish(diff)
        last = new
