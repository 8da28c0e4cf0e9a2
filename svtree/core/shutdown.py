"""The shutdown's phases: one enum, one total table.

RUN -> MAIN -> SERVICES -> SWEEP -> SWEEP_KILLED -> DONE. MAIN is left at once when no
main command runs; SWEEP goes straight to DONE when nothing is left before kill_grace.
The core changes its phase only through `next_phase`, and entering a phase starts what
the phase is about (Core: stop the main command, SIGTERM what remains, SIGKILL it, end
the loop).
"""

from __future__ import annotations

import enum


class Phase(enum.Enum):
    RUN = "run"  # not shutting down
    MAIN = "main"  # the main command got SIGTERM (if one runs): waiting for its exit
    SERVICES = "services"  # each service gets `exit` once everything that needs it is gone
    SWEEP = "sweep"  # every monitor is gone: what remains got SIGTERM
    SWEEP_KILLED = "sweep_killed"  # kill_grace passed: what remained got SIGKILL
    DONE = "done"  # nothing is left: the loop ends


class PhaseEv(enum.Enum):
    BEGIN = "begin"  # a reason to shut down: a signal, ctl, the main command, a failure
    MAIN_GONE = "main_gone"  # no main command runs
    SERVICES_GONE = "services_gone"  # every service's record is gone
    GRACE_OVER = "grace_over"  # kill_grace passed since the sweep began
    NOTHING_LEFT = "nothing_left"  # no process is left that svtree must wait for


class PhaseError(RuntimeError):
    """The core fed the shutdown an event its phase cannot take: a bug of the core's."""


P, E = Phase, PhaseEv
_ = None  # impossible: the core never feeds this pair (PhaseError if it does)

PHASE_TABLE: "dict[Phase, dict[PhaseEv, Phase | None]]" = {
    # BEGIN once shutting down: nothing happens (the first reason stands).
    P.RUN: {E.BEGIN: P.MAIN, E.MAIN_GONE: _, E.SERVICES_GONE: _, E.GRACE_OVER: _,
            E.NOTHING_LEFT: _},
    P.MAIN: {E.BEGIN: P.MAIN, E.MAIN_GONE: P.SERVICES, E.SERVICES_GONE: _, E.GRACE_OVER: _,
             E.NOTHING_LEFT: _},
    P.SERVICES: {E.BEGIN: P.SERVICES, E.MAIN_GONE: _, E.SERVICES_GONE: P.SWEEP,
                 E.GRACE_OVER: _, E.NOTHING_LEFT: _},
    P.SWEEP: {E.BEGIN: P.SWEEP, E.MAIN_GONE: _, E.SERVICES_GONE: _,
              E.GRACE_OVER: P.SWEEP_KILLED, E.NOTHING_LEFT: P.DONE},
    P.SWEEP_KILLED: {E.BEGIN: P.SWEEP_KILLED, E.MAIN_GONE: _, E.SERVICES_GONE: _,
                     E.GRACE_OVER: _, E.NOTHING_LEFT: P.DONE},
    P.DONE: {E.BEGIN: P.DONE, E.MAIN_GONE: _, E.SERVICES_GONE: _, E.GRACE_OVER: _,
             E.NOTHING_LEFT: _},
}


def next_phase(phase: Phase, ev: PhaseEv) -> Phase:
    """The one transition function of the shutdown."""
    new = PHASE_TABLE[phase][ev]
    if new is None:
        raise PhaseError(f"{ev.value} cannot happen in the shutdown's phase {phase.value}")
    return new
