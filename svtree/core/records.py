"""The core's records: one per service, its life with its monitor (one enum, one total
transition table), and the questions asked of all of them (start order, who depends on
whom now, what ctl sees).

`want` (what ctl or the tree asks for) stays apart from `life`, and both apart from the
monitor's last report (what the service is doing). A record's life changes only through
`next_life(life, event)`, which returns the new life and the one thing the core must do
about it (`Do`); the core carries that out in one place (Core._advance).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple

from svtree.messages import Report
from svtree.plan import Plan, ServiceSpec
from svtree.states import DOWN_STATES, SATISFIED, State, Want


class Life(enum.Enum):
    NO_MONITOR = "no_monitor"  # to be forked: first start, after its monitor died, or a
    #                            failed fork's retry is pending (during shutdown: never)
    HELD = "held"  # monitor running, `up` not sent (dependencies not ready, or wanted down)
    UP_SENT = "up_sent"  # its monitor was told `up`
    RETIRING = "retiring"  # a reload removes or changes it: waits for its retiring
    #                        dependents to be gone before `exit`; never told `up` again
    EXIT_SENT = "exit_sent"  # told to exit (shutdown or retirement); its monitor exits next
    GONE = "gone"  # its monitor exited for good (or it never had one): finished


class LifeEv(enum.Enum):
    FORKED = "forked"  # a monitor was forked for it
    START = "start"  # wanted up, its dependencies are satisfied: its monitor gets `up`
    STOP = "stop"  # ctl stop: wanted down (`up` must be sent again to start it)
    RETIRE = "retire"  # a reload removes or changes it
    EXIT = "exit"  # its turn to stop for good: shutdown order, or its retirement
    MONITOR_EXITED = "monitor_exited"  # its monitor was reaped


class Do(enum.Enum):
    """What the core does after a transition."""

    NOTHING = "nothing"
    SEND_UP = "send_up"  # tell the monitor `up`
    SEND_EXIT = "send_exit"  # tell the monitor `exit`, with a deadline (Core: monitor_stuck)
    FORK = "fork"  # fork a monitor for it (not during shutdown: then it waits for EXIT)
    ENDED = "ended"  # finished: a retiring record is removed, or replaced by its new spec


class LifeError(RuntimeError):
    """The core fed a record an event its life cannot take: a bug of the core's."""


L, E = Life, LifeEv
_ = None  # impossible: the core never feeds this pair (LifeError if it does)


def _same(life: Life) -> "tuple[Life, Do]":
    """Nothing happens."""
    return life, Do.NOTHING


LIFE_TABLE: "dict[Life, dict[LifeEv, tuple[Life, Do] | None]]" = {
    L.NO_MONITOR: {
        E.FORKED: (L.HELD, Do.NOTHING), E.START: _, E.STOP: _same(L.NO_MONITOR),
        # Nothing runs without a monitor: retiring or stopping it is immediate.
        E.RETIRE: (L.GONE, Do.ENDED), E.EXIT: (L.GONE, Do.ENDED), E.MONITOR_EXITED: _,
    },
    L.HELD: {
        E.FORKED: _, E.START: (L.UP_SENT, Do.SEND_UP), E.STOP: _same(L.HELD),
        E.RETIRE: (L.RETIRING, Do.NOTHING), E.EXIT: (L.EXIT_SENT, Do.SEND_EXIT),
        E.MONITOR_EXITED: (L.NO_MONITOR, Do.FORK),
    },
    L.UP_SENT: {
        E.FORKED: _, E.START: _, E.STOP: (L.HELD, Do.NOTHING),
        E.RETIRE: (L.RETIRING, Do.NOTHING), E.EXIT: (L.EXIT_SENT, Do.SEND_EXIT),
        E.MONITOR_EXITED: (L.NO_MONITOR, Do.FORK),
    },
    L.RETIRING: {
        E.FORKED: _, E.START: _, E.STOP: _same(L.RETIRING), E.RETIRE: _,
        E.EXIT: (L.EXIT_SENT, Do.SEND_EXIT), E.MONITOR_EXITED: (L.GONE, Do.ENDED),
    },
    L.EXIT_SENT: {
        E.FORKED: _, E.START: _, E.STOP: _same(L.EXIT_SENT), E.RETIRE: _, E.EXIT: _,
        E.MONITOR_EXITED: (L.GONE, Do.ENDED),
    },
    L.GONE: {
        E.FORKED: _, E.START: _, E.STOP: _same(L.GONE), E.RETIRE: _, E.EXIT: _,
        E.MONITOR_EXITED: _,
    },
}


def next_life(life: Life, ev: LifeEv) -> "tuple[Life, Do]":
    """The one transition function of a record's life."""
    row = LIFE_TABLE[life][ev]
    if row is None:
        raise LifeError(f"{ev.value} cannot happen to a record that is {life.value}")
    return row


@dataclass(frozen=True)
class Retirement:
    """Why a reload retires a record: `replacement` (a changed service's new spec; None
    when removed) starts once it is gone, which waits for `after` (its old dependents
    that are going too) to be gone first."""

    replacement: "ServiceSpec | None"
    after: "frozenset[str]"


class Service:
    """The core's record of one service."""

    def __init__(self, spec: ServiceSpec, seq: int = 0) -> None:
        self.spec = spec
        self.want = Want.DOWN if spec.down else Want.UP
        self.user_set = False  # want was set by ctl start/stop/restart
        self.life = Life.NO_MONITOR  # changed only by Core._advance
        # The monitor's last report (before the first: DOWN, numbered `seq`).
        self.report = Report(seq=seq, state=State.DOWN, prev=State.DOWN, want=Want.DOWN)
        self.restarts_before = 0  # restarts counted by monitors that died
        self.retirement: "Retirement | None" = None  # set when a reload retires it
        self.link = None  # the core's end of its monitor (core/monitors.py), while it has one

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def state(self) -> State:
        """The state ctl shows: the monitor's, but `starting` while it is wanted up and
        waits for its dependencies (or for a monitor)."""
        if self.want is Want.UP and self.life in (Life.NO_MONITOR, Life.HELD) \
                and self.report.state in DOWN_STATES:
            return State.STARTING
        return self.report.state

    def status_row(self, now: float) -> dict:
        """Its line of `ctl status` (the JSON object ctl prints or renders)."""
        r = self.report
        pid, started, state = r.pid, r.started_at, self.state
        if r.exit_code is not None:
            last_exit = r.exit_code
        elif r.exit_signal:
            last_exit = -r.exit_signal
        else:
            last_exit = None
        return {
            "name": self.spec.name,
            "state": state.value,
            "pid": pid,
            "uptime": round(now - started, 3) if pid and started is not None else None,
            "restarts": r.restarts,
            "last_exit": last_exit,
            "ready": state in SATISFIED,
            "want": self.want.value,
            "type": self.spec.type,
        }

    def view(self) -> "View":
        r = self.report
        return View(name=self.name, state=self.state, want=self.want, type=self.spec.type,
                    pid=r.pid, started_at=r.started_at, restarts=r.restarts,
                    exit_code=r.exit_code, exit_signal=r.exit_signal, gave_up=r.gave_up,
                    seq=r.seq)


class View(NamedTuple):
    """What ctl sees of one service, taken at one moment (a NamedTuple: `ctl status` of
    thousands of services makes one per service)."""

    name: str
    state: State  # as ctl shows it (see Service.state)
    want: Want
    type: str
    pid: "int | None"
    started_at: "float | None"
    restarts: int
    exit_code: "int | None"
    exit_signal: int
    gave_up: bool
    seq: int  # the last report's number: it grows whenever something happened


class Records:
    """Every record, by name, and the plan they come from."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.by_name: "dict[str, Service]" = {s.name: Service(s) for s in plan.services}
        self._retiring = 0  # records with a retirement

    def __iter__(self):
        """The records; not a copy: take a list() to add or remove records meanwhile."""
        return iter(self.by_name.values())

    def get(self, name: str) -> "Service | None":
        return self.by_name.get(name)

    def put(self, svc: Service) -> None:
        """Add a record, or replace the one of the same name."""
        old = self.by_name.get(svc.name)
        self._retiring -= old is not None and old.retirement is not None
        self.by_name[svc.name] = svc
        self._retiring += svc.retirement is not None

    def remove(self, name: str) -> None:
        self._retiring -= self.by_name.pop(name).retirement is not None

    def retire(self, svc: Service, retirement: Retirement) -> None:
        """A reload retires svc (once: a record is never retired twice)."""
        svc.retirement = retirement
        self._retiring += 1

    def level_order(self) -> "list[str]":
        return [n for level in self.plan.levels for n in level if n in self.by_name]

    def ordered_names(self) -> "list[str]":
        """Services in start order (as `ctl status` lists them); services a reload is
        removing come last while they stop."""
        names = self.level_order()
        return names + sorted(set(self.by_name) - set(names))

    def retiring(self) -> bool:
        return self._retiring > 0

    def still_retiring(self, name: str) -> bool:
        svc = self.by_name.get(name)
        return svc is not None and svc.retirement is not None

    def deps_ready(self, svc: Service) -> bool:
        return not self.not_ready(svc)

    def not_ready(self, svc: Service) -> "list[str]":
        """svc's dependencies that keep it from starting: missing, retiring, or neither
        ready nor done (nor failed, for one whose failure holds nothing back)."""
        return [dep for dep in svc.spec.depends_on
                if (d := self.by_name.get(dep)) is None or d.retirement is not None
                or not (d.report.state in SATISFIED or (d.spec.may_fail and d.report.state is State.FAILED))]

    def live_dependents(self) -> "dict[str, list[str]]":
        """Reverse edges of the services that exist now: the plan's, plus the old edges
        of services a reload is still retiring (not in the new plan, but still running
        on top of their dependencies)."""
        if not self.retiring():
            return self.plan.dependents()
        rev: "dict[str, list[str]]" = {}
        for svc in self.by_name.values():
            for dep in svc.spec.depends_on:
                rev.setdefault(dep, []).append(svc.name)
        return rev
