"""What a monitor's report logs: the table from what the monitor says happened to
svtree's log events (their names are stable: users parse them).

A report carries the event the monitor fed its state machine and the state that led to,
from `prev`. The table has two columns, looked up in this order: the EVENT that caused
the report (`service_started` for a spawn, `service_exited` for run's exit), then the
STATE it entered, when that is not the state before (`service_ready`, `service_failed`,
...). Every event and every state has a row; None logs nothing. The core adds only what
it knows beyond one report: a resource error the monitor retries after, and how many
reports it never got (see `said`).
"""

from __future__ import annotations

from svtree.messages import Report
from svtree.signames import signal_name
from svtree.states import Ev, State

# (level, event name, fields)
Said = "tuple[str, str, dict]"


def _started(r: Report):
    return "info", "service_started", {"pid": r.pid, "restarts": r.restarts}


def _exited(r: Report):
    # pgid is run's pid from its spawn on: the pid that exited.
    fields: dict = {"pid": r.pgid, "uptime": round(r.last_uptime, 3)}
    if r.exit_code is None:
        fields["signal"] = signal_name(r.exit_signal)
    else:
        fields["exit_code"] = r.exit_code
    return "info", "service_exited", fields


def _finish_exited(r: Report):
    return "info", "finish_exited", {"exit_code": r.finish_code}


def _ready(r: Report):
    return "info", "service_ready", {"pid": r.pid}


def _restarting(r: Report):
    return "info", "service_restarting", {"delay": r.delay}


def _failed(r: Report):
    return "warning", "service_failed", {"exit_code": r.exit_code, "signal": r.exit_signal or None}


def _done(r: Report):
    return "info", "service_done", {}


def _down(r: Report):
    if r.prev in (State.STOPPING, State.FINISHING):
        return "info", "service_stopped", {}
    if r.gave_up:  # ended for good without a stop: policy, or finish said 125
        reason = "finish exited 125" if r.finish_code == 125 else "restart policy"
        return "info", "service_failed", {"reason": reason, "exit_code": r.exit_code}
    return None  # wanted down while nothing ran (a backoff cancelled, a first report)


Row = "Callable[[Report], Said | None] | None"  # for the reader: a function or None

BY_EVENT: "dict[Ev, Row]" = {
    Ev.WANT_UP: None, Ev.WANT_DOWN: None, Ev.DRAIN: None, Ev.RESTART: None,
    Ev.SPAWNED: _started, Ev.SPAWN_FAILED: None, Ev.EXITED: _exited, Ev.READY: None,
    Ev.TIMEOUT: None, Ev.FINISH_EXITED: _finish_exited, Ev.STRAYS_GONE: None,
}

BY_STATE: "dict[State, Row]" = {
    State.DOWN: _down, State.STARTING: None, State.UP: None, State.READY: _ready,
    State.STOPPING: None, State.FINISHING: None, State.BACKOFF: _restarting,
    State.FAILED: _failed, State.DONE: _done,
}


# Every event name this module logs (tests/unit/test_report_log.py: exactly these).
NAMES = ("reports_coalesced", "retry_later", "service_started", "service_exited", "finish_exited",
         "service_ready", "service_restarting", "service_failed", "service_done", "service_stopped")


def said(report: Report, missed: int = 0) -> "list[Said]":
    """The log events of one report, in order. `missed`: reports of this monitor the
    core never got (it coalesced them while the core did not read)."""
    out = []
    if missed:
        out.append(("warning", "reports_coalesced", {"reports": missed}))
    if report.error:
        out.append(("warning", "retry_later", {"error": report.error}))
    for row in (BY_EVENT[report.event] if report.event is not None else None,
                BY_STATE[report.state] if report.state is not report.prev else None):
        line = row(report) if row is not None else None
        if line is not None:
            out.append(line)
    return out
