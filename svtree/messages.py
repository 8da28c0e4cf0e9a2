"""Messages between the core and a monitor: typed, frozen, validated at the border.

The core sends `Command`s (up, down, restart, a signal, exit, drain); the monitor sends a
`Report` after every change of its service's status. A report says what happened (the
`event` the monitor fed its state machine, and the state it led to from `prev`), so the
core logs what the monitor saw instead of guessing it from two snapshots, and carries a
sequence number: increasing for the life of a service's record in the core (a new
monitor goes on from where the last one stopped), so the core sees reports it never got
(a monitor coalesces when the core does not read; see monitor.py) and a waiter sees that
something happened since it asked.

One JSON object per SOCK_SEQPACKET datagram (at most wire.MAX_DATAGRAM bytes). `decode_*`
raise MessageError for anything that is not exactly a message of that kind: the core
logs it, it never crashes on it. Not in wire.py: ctl imports wire.py and must not load
`enum`.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

from svtree import wire
from svtree.states import Ev, State, Want


class MessageError(ValueError):
    """A datagram that is not a valid message."""


class Cmd(str, enum.Enum):
    UP = "up"  # want the service up (start it)
    DOWN = "down"  # want it down (stop it)
    RESTART = "restart"  # stop it, then start it
    SIGNAL = "signal"  # send `sig` to run
    EXIT = "exit"  # stop it, then the monitor exits
    DRAIN = "drain"  # a logger whose input is closed: let run end at end of file, then as exit


# Both are NamedTuples: immutable values like frozen dataclasses, but built and copied
# (`_replace`) without a frozen dataclass's object.__setattr__ per field: the core makes
# one Report per report it reads, for every service.

class Command(NamedTuple):
    kind: Cmd
    sig: int = 0  # SIGNAL only


class Report(NamedTuple):
    seq: int  # increasing for the record's life in the core, across monitors
    state: State
    prev: State  # the state before `event`
    want: Want
    pid: "int | None" = None  # run's pid while it runs
    pgid: "int | None" = None  # run's process group: its pid at spawn, kept after it exits
    started_at: "float | None" = None
    restarts: int = 0
    exit_code: "int | None" = None
    exit_signal: int = 0
    ready: bool = False
    gave_up: bool = False
    finish_code: "int | None" = None
    last_uptime: float = 0.0
    delay: "float | None" = None  # BACKOFF: seconds until the restart
    event: "Ev | None" = None  # what caused this report (None: no event, e.g. the first)
    error: "str | None" = None  # a resource error the monitor retries after (fork: EAGAIN)


# --- validation: one checker per field type ---------------------------------------------

def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _opt_int(v) -> bool:
    return v is None or _int(v)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _opt_number(v) -> bool:
    return v is None or _number(v)


def _bool(v) -> bool:
    return isinstance(v, bool)


def _opt_str(v) -> bool:
    return v is None or isinstance(v, str)


def _enum(kind):
    values = {m.value: m for m in kind}

    def convert(v):
        try:
            return values[v]
        except (KeyError, TypeError):
            raise MessageError(f"{v!r} is not a {kind.__name__}") from None

    return convert


def _opt_enum(kind):
    convert = _enum(kind)
    return lambda v: None if v is None else convert(v)


_REPORT_ENUMS = {"state": _enum(State), "prev": _enum(State), "want": _enum(Want),
                 "event": _opt_enum(Ev)}
_REPORT_CHECKS = {
    "seq": _int, "pid": _opt_int, "pgid": _opt_int, "started_at": _opt_number,
    "restarts": _int, "exit_code": _opt_int, "exit_signal": _int, "ready": _bool,
    "gave_up": _bool, "finish_code": _opt_int, "last_uptime": _number,
    "delay": _opt_number, "error": _opt_str,
}
_REPORT_FIELDS = Report._fields  # tests: each has one check


# --- encode / decode --------------------------------------------------------------------

def encode(msg: "Command | Report") -> bytes:
    if isinstance(msg, Command):
        obj = {"cmd": msg.kind.value, "sig": msg.sig}
    else:
        obj = msg._asdict()
        for name in _REPORT_ENUMS:
            if obj[name] is not None:
                obj[name] = obj[name].value
    try:
        data = wire.encode(obj)
    except (TypeError, ValueError) as e:  # a value with no JSON form (inf)
        raise MessageError(str(e)) from None
    if len(data) > wire.MAX_DATAGRAM:
        raise MessageError(f"message of {len(data)} bytes (at most {wire.MAX_DATAGRAM})")
    return data


def _object(data: bytes, keys: "tuple[str, ...]") -> dict:
    try:
        obj = wire.decode(data)
    except ValueError as e:
        raise MessageError(str(e)) from None
    if set(obj) != set(keys):
        missing, extra = set(keys) - set(obj), set(obj) - set(keys)
        raise MessageError(f"fields missing {sorted(missing)}, unknown {sorted(extra)}")
    return obj


def decode_report(data: bytes) -> Report:
    obj = _object(data, _REPORT_FIELDS)
    for name, ok in _REPORT_CHECKS.items():
        if not ok(obj[name]):
            raise MessageError(f"report field {name}: {obj[name]!r}")
    for name, convert in _REPORT_ENUMS.items():
        obj[name] = convert(obj[name])
    return Report(**obj)


_CMD = _enum(Cmd)


def decode_command(data: bytes) -> Command:
    obj = _object(data, ("cmd", "sig"))
    if not _int(obj["sig"]):
        raise MessageError(f"command field sig: {obj['sig']!r}")
    return Command(_CMD(obj["cmd"]), obj["sig"])
