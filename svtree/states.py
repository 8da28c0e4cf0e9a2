"""The supervision state machine of one service: pure, total, and the only place
where a service changes state.

`step(spec, status, event, now)` returns the new status and the effects, as data, that
the monitor must carry out (spawn, kill, run finish, ...). Nothing here touches the
system or reads the clock, so backoff, timeouts and every (state, event) pair are unit
tested without sleeping (tests/unit/test_states.py checks the table is total).

Deadlines: a status has at most one `deadline`; when it passes the monitor feeds
`TIMEOUT`, whose meaning depends on the state (ready timeout in UP, SIGKILL in STOPPING,
killing finish in FINISHING, restart in BACKOFF). Entering a state sets or clears it, so a
stale timer is impossible by construction.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Callable, Union


class State(str, enum.Enum):
    DOWN = "down"  # no process; not running (wanted down, or not started yet)
    STARTING = "starting"  # being spawned; a oneshot whose run is running
    UP = "up"  # run is running, readiness not yet seen
    READY = "ready"  # run is running and ready (or declares no readiness)
    STOPPING = "stopping"  # stop_signal sent; waiting for run and its strays to go
    FINISHING = "finishing"  # run exited; finish is running
    BACKOFF = "backoff"  # waiting before a restart
    FAILED = "failed"  # ended for good with a failure (policy says no restart)
    DONE = "done"  # a oneshot that exited 0


class Want(str, enum.Enum):
    UP = "up"
    DOWN = "down"


class Ev(str, enum.Enum):
    WANT_UP = "want_up"  # ctl start / boot
    WANT_DOWN = "want_down"  # ctl stop / shutdown / removal
    RESTART = "restart"  # ctl restart: stop, then start
    SPAWNED = "spawned"  # the fork succeeded: pid
    SPAWN_FAILED = "spawn_failed"  # the fork failed (EAGAIN, ENOMEM, ...)
    EXITED = "exited"  # run exited: code, sig, strays
    READY = "ready"  # a newline on notification_fd, or ready_command exited 0
    TIMEOUT = "timeout"  # status.deadline passed
    FINISH_EXITED = "finish_exited"  # finish exited: code (256 + signal if killed)
    STRAYS_GONE = "strays_gone"  # run is gone and nothing it left behind is left
    # A logger's input is closed for good (every service feeding it is gone: shutdown, or
    # a reload removed them): wanted down, but run first gets stop_timeout to read what
    # is left and end by itself at end of file; stop_signal only then (s6-svscan's way
    # of stopping a logger after its producer).
    DRAIN = "drain"


# What a state counts as, in one place for all who ask (the core's start order and boot,
# `ctl wait`, `ctl check`, `start --wait` and `stop --wait`, the READY column of status).
# Tuples of str enums, so a plain string state is found in them too.
SATISFIED = (State.READY, State.DONE)  # ready, or a oneshot done: dependents may start
UP_STATES = (State.UP, State.READY, State.DONE)  # `ctl wait --up`: running (or done)
DOWN_STATES = (State.DOWN, State.FAILED)  # not running, and not about to by itself


@dataclass(frozen=True)
class Event:
    kind: Ev
    pid: "int | None" = None
    code: "int | None" = None  # exit code (EXITED: None when killed by a signal)
    sig: int = 0  # the signal that killed run (EXITED)
    strays: bool = False  # EXITED / WANT_DOWN / FINISH_EXITED: processes run left behind exist


class StopReason(str, enum.Enum):
    NONE = "none"
    REQUESTED = "requested"  # ctl stop, ctl restart, shutdown
    READY_TIMEOUT = "ready_timeout"  # counts as a failure


@dataclass(frozen=True)
class Status:
    state: State = State.DOWN
    want: Want = Want.DOWN
    pid: "int | None" = None  # run's pid while it runs
    pgid: "int | None" = None  # run's process group (its pid at spawn); kept for finish
    started_at: "float | None" = None  # when run was spawned
    restarts: int = 0  # spawns after the first one
    quick_deaths: int = 0  # consecutive deaths sooner than restart_delay
    exit_code: "int | None" = None  # last exit of run: code, or None if a signal killed it
    exit_signal: int = 0
    last_uptime: float = 0.0  # how long the last run lived
    ready: bool = False
    deadline: "float | None" = None
    stop_reason: StopReason = StopReason.NONE
    # STOPPING without stop_signal sent yet: a drained logger's time to end by itself.
    draining: bool = False
    gave_up: bool = False  # ended for good (policy, finish 125, oneshot failure)
    finish_code: "int | None" = None  # last finish exit code
    # run's last exit has been dealt with (finish ran, or there is none): a stop of what
    # it left behind must not run finish again. False from spawn until _decide or a stop
    # of leftovers only.
    exit_handled: bool = True

    @property
    def failed_exit(self) -> bool:
        return self.exit_code != 0 or self.exit_signal != 0

    @property
    def finish_exit_arg(self) -> int:
        """finish's EXIT argument: run's code, or 256 if a signal killed it (s6)."""
        return 256 if self.exit_code is None else self.exit_code


# --- effects: what the monitor must do, as data ----------------------------------------

@dataclass(frozen=True)
class Spawn:
    """Fork and exec run (feed SPAWNED or SPAWN_FAILED)."""


@dataclass(frozen=True)
class Kill:
    sig: int
    scope: str  # "main": run's pid (then SIGCONT); "all": its group and every stray


@dataclass(frozen=True)
class RunFinish:
    exit_arg: int
    sig: int


@dataclass(frozen=True)
class KillFinish:
    """finish overran finish_timeout: SIGKILL its process group."""


@dataclass(frozen=True)
class StartProbe:
    """Begin running ready_command every ready_interval."""


@dataclass(frozen=True)
class StopProbe:
    pass


Effect = Union[Spawn, Kill, RunFinish, KillFinish, StartProbe, StopProbe]

SIGKILL = 9


class Spec:
    """The parts of a ServiceSpec the machine reads (a ServiceSpec satisfies it)."""

    type: str
    restart: str
    restart_delay: float
    restart_delay_max: float
    stop_signal: int
    stop_timeout: float
    finish_timeout: float
    finish: "str | None"
    notification_fd: "int | None"
    ready_command: "str | None"
    ready_timeout: float


Handler = Callable[[Spec, Status, Event, float], "tuple[Status, list[Effect]]"]


# --- building blocks --------------------------------------------------------------------

def _spawn(spec, st: Status, now: float, counts_as_restart: bool):
    st = replace(
        st,
        state=State.STARTING,
        want=Want.UP,
        pid=None,
        deadline=None,
        ready=False,
        stop_reason=StopReason.NONE,
        gave_up=False,
        exit_handled=False,
        restarts=st.restarts + (1 if counts_as_restart else 0),
    )
    return st, [Spawn()]


def _start_stop(spec, st: Status, now: float, reason: StopReason, effects=()):
    """Send stop_signal to run and give it stop_timeout."""
    st = replace(st, state=State.STOPPING, ready=False, deadline=now + spec.stop_timeout,
                 stop_reason=reason, draining=False)
    return st, [*effects, Kill(spec.stop_signal, "main")]


def _after_run_gone(spec, st: Status, now: float):
    """run (and, after a stop, its strays) is gone: run finish, or decide what's next."""
    if spec.finish and spec.type != "oneshot":
        st = replace(st, state=State.FINISHING, deadline=now + spec.finish_timeout)
        return st, [RunFinish(st.finish_exit_arg, st.exit_signal)]
    return _decide(spec, replace(st, finish_code=None), now)


def _decide(spec, st: Status, now: float):
    """After run and finish: restart now, back off, or stay down. One place for policy."""
    st = replace(st, deadline=None, pid=None, ready=False, exit_handled=True)
    if st.finish_code == 125:
        return replace(st, state=State.DOWN, want=Want.DOWN, gave_up=True), []
    if spec.type == "oneshot":
        # An interrupted or restarted oneshot: run it again if still wanted.
        if st.want is Want.UP and st.stop_reason is StopReason.REQUESTED:
            return _spawn(spec, st, now, counts_as_restart=True)
        return replace(st, state=State.DOWN, stop_reason=StopReason.NONE), []
    requested = st.stop_reason is StopReason.REQUESTED
    if requested or st.want is Want.DOWN:
        if st.want is Want.UP:  # ctl restart, or ctl start while it was stopping
            return _spawn(spec, st, now, counts_as_restart=True)
        return replace(st, state=State.DOWN, stop_reason=StopReason.NONE), []
    failed = st.failed_exit or st.stop_reason is StopReason.READY_TIMEOUT
    if spec.restart == "never" or (spec.restart == "on-failure" and not failed):
        return replace(
            st,
            state=State.FAILED if failed else State.DOWN,
            want=Want.DOWN,
            gave_up=True,
            stop_reason=StopReason.NONE,
        ), []
    if st.last_uptime >= spec.restart_delay and st.stop_reason is not StopReason.READY_TIMEOUT:
        return _spawn(spec, replace(st, quick_deaths=0), now, counts_as_restart=True)
    deaths = st.quick_deaths + 1
    delay = min(spec.restart_delay * (2 ** (deaths - 1)), spec.restart_delay_max)
    return replace(
        st, state=State.BACKOFF, quick_deaths=deaths, deadline=now + delay,
        stop_reason=StopReason.NONE,
    ), []


def _stop_strays(spec, st: Status, now: float):
    """Nothing runs, but run left processes behind: they get stop_signal, then SIGKILL at
    stop_timeout (STOPPING ends with STRAYS_GONE, then the decision: no second finish)."""
    st = replace(st, state=State.STOPPING, deadline=now + spec.stop_timeout,
                 stop_reason=StopReason.REQUESTED, exit_handled=True)
    return st, [Kill(spec.stop_signal, "all")]


def _record_exit(st: Status, ev: Event, now: float) -> Status:
    return replace(
        st,
        pid=None,
        ready=False,
        exit_code=ev.code,
        exit_signal=ev.sig,
        last_uptime=now - st.started_at if st.started_at is not None else 0.0,
    )


# --- handlers: one per distinct transition ---------------------------------------------

def ignore(spec, st, ev, now):
    """Nothing happens: a stale or impossible event for this state."""
    return st, []


def start(spec, st, ev, now):
    return _spawn(spec, replace(st, quick_deaths=0), now, counts_as_restart=st.started_at is not None)


def want_up(spec, st, ev, now):
    return replace(st, want=Want.UP), []


def want_down(spec, st, ev, now):
    return replace(st, want=Want.DOWN), []


def down_idle(spec, st, ev, now):
    """Wanted down while nothing runs: only strays a crash left behind need stopping."""
    st = replace(st, want=Want.DOWN)
    if ev.strays:
        return _stop_strays(spec, st, now)
    return replace(st, state=State.DOWN, deadline=None), []


def spawned(spec, st, ev, now):
    st = replace(st, pid=ev.pid, pgid=ev.pid, started_at=now)
    if spec.type == "oneshot":
        return st, []
    if spec.ready_command is not None:
        return replace(st, state=State.UP, deadline=now + spec.ready_timeout), [StartProbe()]
    if spec.notification_fd is not None:
        return replace(st, state=State.UP), []
    return replace(st, state=State.READY, ready=True), []


def spawn_failed(spec, st, ev, now):
    # Like a death at once with code 127: finish does not run (nothing ran).
    st = replace(st, pid=None, exit_code=127, exit_signal=0, last_uptime=0.0)
    if spec.type == "oneshot":
        return replace(st, state=State.FAILED, want=Want.DOWN, gave_up=True), []
    return _decide(spec, replace(st, finish_code=None), now)


def oneshot_exited(spec, st, ev, now):
    st = _record_exit(st, ev, now)
    if st.failed_exit:
        return replace(st, state=State.FAILED, want=Want.DOWN, gave_up=True), []
    return replace(st, state=State.DONE), []


def oneshot_stop(spec, st, ev, now):
    return _start_stop(spec, replace(st, want=Want.DOWN), now, StopReason.REQUESTED)


def oneshot_restart(spec, st, ev, now):
    return _start_stop(spec, replace(st, want=Want.UP), now, StopReason.REQUESTED)


def ready(spec, st, ev, now):
    return replace(st, state=State.READY, ready=True, deadline=None), [StopProbe()]


def ready_timed_out(spec, st, ev, now):
    return _start_stop(spec, st, now, StopReason.READY_TIMEOUT, [StopProbe()])


def crashed(spec, st, ev, now):
    """run exited on its own (nobody asked it to stop)."""
    st = _record_exit(st, ev, now)
    return _after_run_gone(spec, replace(st, deadline=None), now)


def stop_running(spec, st, ev, now):
    return _start_stop(spec, replace(st, want=Want.DOWN), now, StopReason.REQUESTED, [StopProbe()])


def restart_running(spec, st, ev, now):
    return _start_stop(spec, replace(st, want=Want.UP), now, StopReason.REQUESTED, [StopProbe()])


def drain_running(spec, st, ev, now):
    """A logger whose input is closed: no signal yet, stop_timeout to end by itself."""
    st = replace(st, state=State.STOPPING, want=Want.DOWN, ready=False, draining=True,
                 deadline=now + spec.stop_timeout, stop_reason=StopReason.REQUESTED)
    return st, [StopProbe()]


def stopping_exited(spec, st, ev, now):
    st = replace(_record_exit(st, ev, now), draining=False)
    if ev.strays:
        # run is gone but left processes behind: they get the stop signal too, and the
        # stop ends when they are gone (STRAYS_GONE) or SIGKILLed at the same deadline.
        return st, [Kill(spec.stop_signal, "all")]
    return _after_run_gone(spec, replace(st, deadline=None), now)


def strays_gone(spec, st, ev, now):
    if st.pid is not None:
        return st, []
    if st.exit_handled:  # only leftovers were being stopped: finish ran for run's exit
        return _decide(spec, st, now)
    return _after_run_gone(spec, replace(st, deadline=None), now)


def stop_overdue(spec, st, ev, now):
    if st.draining:  # the drained logger did not end by itself: now the usual stop
        return replace(st, draining=False, deadline=now + spec.stop_timeout), [
            Kill(spec.stop_signal, "main")]
    # No further deadline: SIGKILL cannot be caught; the exit (or STRAYS_GONE) follows.
    return replace(st, deadline=None), [Kill(SIGKILL, "all")]


def restart_when_stopped(spec, st, ev, now):
    return replace(st, want=Want.UP, stop_reason=StopReason.REQUESTED), []


def stop_when_stopped(spec, st, ev, now):
    return replace(st, want=Want.DOWN, stop_reason=StopReason.REQUESTED), []


def finish_exited(spec, st, ev, now):
    st = replace(st, finish_code=ev.code, deadline=None)
    if st.stop_reason is StopReason.REQUESTED and ev.strays:
        # Stopped or restarted while finish ran (run had crashed): what run left behind
        # is stopped first, as in any requested stop; then the decision (no second finish).
        return _stop_strays(spec, st, now)
    return _decide(spec, st, now)


def finish_overdue(spec, st, ev, now):
    return replace(st, deadline=None), [KillFinish()]


def restart_finishing(spec, st, ev, now):
    # After finish, start at once instead of backing off.
    return replace(st, want=Want.UP, stop_reason=StopReason.REQUESTED), []


def backoff_over(spec, st, ev, now):
    return _spawn(spec, st, now, counts_as_restart=True)


def restart_now(spec, st, ev, now):
    return _spawn(spec, replace(st, quick_deaths=0), now, counts_as_restart=True)


def done_stop(spec, st, ev, now):
    """A done oneshot wanted down (shutdown): its finish runs now."""
    st = replace(st, want=Want.DOWN, stop_reason=StopReason.REQUESTED)
    if spec.finish:
        return replace(st, state=State.FINISHING, deadline=now + spec.finish_timeout), [
            RunFinish(st.finish_exit_arg, st.exit_signal)
        ]
    if ev.strays:  # processes the oneshot left running are stopped with it
        return _stop_strays(spec, st, now)
    return replace(st, state=State.DOWN), []


def done_restart(spec, st, ev, now):
    st = replace(st, want=Want.UP, stop_reason=StopReason.REQUESTED)
    if spec.finish:
        return replace(st, state=State.FINISHING, deadline=now + spec.finish_timeout), [
            RunFinish(st.finish_exit_arg, st.exit_signal)
        ]
    return _spawn(spec, st, now, counts_as_restart=True)


# --- the table: every (state, event) pair has exactly one row --------------------------

S, E = State, Ev
_I = ignore

TABLE: "dict[State, dict[Ev, Handler]]" = {
    S.DOWN: {
        E.WANT_UP: start, E.WANT_DOWN: down_idle, E.DRAIN: down_idle, E.RESTART: start,
        E.SPAWNED: _I, E.SPAWN_FAILED: _I, E.EXITED: _I, E.READY: _I, E.TIMEOUT: _I,
        E.FINISH_EXITED: _I, E.STRAYS_GONE: _I,
    },
    S.STARTING: {
        # A longrun leaves STARTING within one step (spawn is synchronous in the
        # monitor); a oneshot stays here while run runs.
        E.WANT_UP: want_up, E.WANT_DOWN: oneshot_stop, E.DRAIN: oneshot_stop,
        E.RESTART: oneshot_restart,
        E.SPAWNED: spawned, E.SPAWN_FAILED: spawn_failed, E.EXITED: oneshot_exited,
        E.READY: _I, E.TIMEOUT: _I, E.FINISH_EXITED: _I, E.STRAYS_GONE: _I,
    },
    S.UP: {
        E.WANT_UP: want_up, E.WANT_DOWN: stop_running, E.DRAIN: drain_running,
        E.RESTART: restart_running,
        E.SPAWNED: _I, E.SPAWN_FAILED: _I, E.EXITED: crashed, E.READY: ready,
        E.TIMEOUT: ready_timed_out, E.FINISH_EXITED: _I, E.STRAYS_GONE: _I,
    },
    S.READY: {
        E.WANT_UP: want_up, E.WANT_DOWN: stop_running, E.DRAIN: drain_running,
        E.RESTART: restart_running,
        E.SPAWNED: _I, E.SPAWN_FAILED: _I, E.EXITED: crashed, E.READY: _I,
        E.TIMEOUT: _I, E.FINISH_EXITED: _I, E.STRAYS_GONE: _I,
    },
    S.STOPPING: {
        E.WANT_UP: restart_when_stopped, E.WANT_DOWN: stop_when_stopped, E.DRAIN: stop_when_stopped,
        E.RESTART: restart_when_stopped, E.SPAWNED: _I, E.SPAWN_FAILED: _I,
        E.EXITED: stopping_exited, E.READY: _I, E.TIMEOUT: stop_overdue,
        E.FINISH_EXITED: _I, E.STRAYS_GONE: strays_gone,
    },
    S.FINISHING: {
        E.WANT_UP: want_up, E.WANT_DOWN: stop_when_stopped, E.DRAIN: stop_when_stopped,
        E.RESTART: restart_finishing,
        E.SPAWNED: _I, E.SPAWN_FAILED: _I, E.EXITED: _I, E.READY: _I,
        E.TIMEOUT: finish_overdue, E.FINISH_EXITED: finish_exited, E.STRAYS_GONE: _I,
    },
    S.BACKOFF: {
        E.WANT_UP: want_up, E.WANT_DOWN: down_idle, E.DRAIN: down_idle, E.RESTART: restart_now,
        E.SPAWNED: _I, E.SPAWN_FAILED: _I, E.EXITED: _I, E.READY: _I,
        E.TIMEOUT: backoff_over, E.FINISH_EXITED: _I, E.STRAYS_GONE: _I,
    },
    S.FAILED: {
        E.WANT_UP: start, E.WANT_DOWN: down_idle, E.DRAIN: down_idle, E.RESTART: start,
        E.SPAWNED: _I, E.SPAWN_FAILED: _I, E.EXITED: _I, E.READY: _I, E.TIMEOUT: _I,
        E.FINISH_EXITED: _I, E.STRAYS_GONE: _I,
    },
    S.DONE: {
        E.WANT_UP: want_up, E.WANT_DOWN: done_stop, E.DRAIN: done_stop, E.RESTART: done_restart,
        E.SPAWNED: _I, E.SPAWN_FAILED: _I, E.EXITED: _I, E.READY: _I, E.TIMEOUT: _I,
        E.FINISH_EXITED: _I, E.STRAYS_GONE: _I,
    },
}


def step(spec: Spec, st: Status, ev: Event, now: float) -> "tuple[Status, list[Effect]]":
    """The one transition function: look the pair up, apply its row."""
    return TABLE[st.state][ev.kind](spec, st, ev, now)
