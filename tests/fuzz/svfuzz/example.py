"""An example as plain data: the services (Svc), the schedule of actions (Action), an
optional main command, how svtree runs (Example); `describe` prints an example as the
Python that makes it again (a failure's replay)."""

from __future__ import annotations

import dataclasses
import signal
from dataclasses import dataclass, field


STEADY = ("forever", "ignore_term", "slow_stop", "forks", "daemon", "zombies", "flood", "notify")
FLAPPING = ("exit_now", "self_kill")
BEHAVIOURS = STEADY + FLAPPING  # "forever" first: hypothesis shrinks towards it
TRAPS_TERM = ("forever", "slow_stop", "forks", "daemon", "zombies", "flood", "notify", "self_kill")
FINISHES = ("none", "quick", "slow", "hung", "f125")
SERVICE_SIGNALS = ("KILL", "TERM", "INT", "HUP", "USR1", "USR2", "ALRM")
MONITOR_SIGNALS = ("KILL", "TERM", "INT", "HUP", "USR1")
# When kill_monitor strikes: at once (arg "SIG"), or right after a spawn (arg "SIG@spawn":
# the service is SIGKILLed, and its monitor gets SIG the moment it has a new child: its
# next run, maybe not exec'd yet, or its finish).
MONITOR_MOMENTS = ("", "@spawn")
STALLS = ("1.0", "0.3", "2.0")  # seconds the reader of svtree's stdout pauses
SELF_KILL_SIGNALS = ("KILL", "INT", "HUP", "USR1", "USR2", "ALRM")
RESTART_DELAY_MAX = 1.0
MAIN_STOP_TIMEOUT = 1.0
FLOOD_LINES = 3000
SLOW_FINISH = 0.15


def signum(name: str) -> int:
    return int(getattr(signal, "SIG" + name))


def _short(obj) -> str:
    """A dataclass as its constructor call, without the fields left at their default."""
    parts = []
    for i, f in enumerate(dataclasses.fields(obj)):
        v = getattr(obj, f.name)
        if f.metadata.get("positional"):
            parts.append(repr(v))
        elif f.default is dataclasses.MISSING or v != f.default:
            parts.append(f"{f.name}={v!r}")
    return f"{type(obj).__name__}({', '.join(parts)})"


@dataclass(frozen=True)
class Svc:
    name: str = field(metadata={"positional": True})
    deps: tuple = field(default=(), metadata={"positional": True})
    type: str = "longrun"  # or "oneshot"
    behaviour: str = "forever"  # longruns only
    code: int = 0  # exit_now's code, a oneshot's code
    sig: str = "KILL"  # self_kill's signal
    delay: float = 0.0  # slow_stop's stop time, notify's delay, self_kill's life, oneshot's run
    stubborn: bool = False  # forks/daemon: the extra processes ignore TERM
    restart: str = "always"
    stop_timeout: float = 0.5
    restart_delay: float = 0.1
    finish: str = "none"
    finish_timeout: float = 0.4
    down: bool = False
    critical: bool = False

    def __repr__(self) -> str:
        return _short(self)

    @property
    def steady(self) -> bool:
        return self.type == "longrun" and self.behaviour in STEADY

    def finish_time(self) -> float:
        """The longest a finish after an exit of run can take."""
        return self.finish_timeout if self.finish != "none" else 0.0

    def restarts_after(self, exit_kind: str) -> bool:
        """Policy after an exit nobody asked for: exit_kind is "zero" or "failure"."""
        if self.finish == "f125":
            return False
        if self.restart == "always":
            return True
        if self.restart == "on-failure":
            return exit_kind == "failure"
        return False

    def flaps_forever(self) -> bool:
        """A flapping longrun that keeps coming back (ready for a moment each time)."""
        failure = self.behaviour == "self_kill" or self.code != 0
        return self.restarts_after("failure" if failure else "zero")


@dataclass(frozen=True)
class Action:
    delay: float = field(metadata={"positional": True})
    kind: str = field(metadata={"positional": True})  # kill kill_monitor ctl reload stall sigterm
    # (kill_monitor's arg: a signal, and "@spawn" for right after a spawn: MONITOR_MOMENTS)
    target: int = field(default=0, metadata={"positional": True})  # index into current services
    arg: str = field(default="", metadata={"positional": True})

    def __repr__(self) -> str:
        return _short(self)


@dataclass(frozen=True)
class Example:
    services: tuple
    actions: tuple = ()
    main: "tuple | None" = None  # (sleep seconds, exit code[, leaves: "daemon" | "stubborn"])
    mode: str = "pidns"  # or "subreaper"
    kill_grace: float = 0.5

    def __repr__(self) -> str:
        return describe(self)


def describe(ex: Example) -> str:
    lines = ["Example(", "    services=("]
    lines += [f"        {s!r}," for s in ex.services]
    lines.append("    ),")
    if ex.actions:
        lines.append("    actions=(")
        lines += [f"        {a!r}," for a in ex.actions]
        lines.append("    ),")
    for name in ("main", "mode", "kill_grace"):
        f = {f.name: f for f in dataclasses.fields(Example)}[name]
        if getattr(ex, name) != f.default:
            lines.append(f"    {name}={getattr(ex, name)!r},")
    lines.append(")")
    return "\n".join(lines)
