"""Random service trees and fault schedules, run on the real svtree, checked against the
guarantees (the README's section "Guarantees") with expectations computed from the data.

An example is plain data (`Example`): 2-6 services in a dependency DAG, each with a
behaviour and settings, an optional main command, and a schedule of faults and actions.
`run_example` writes it to a tempfile directory under /tmp, runs svtree on it (as PID 1
of a PID namespace, or as a plain child subreaper), plays the schedule, and checks:

  order      at shutdown every (transitive) dependent was gone before its dependency got
             its stop signal: no line a dependent's processes wrote (heartbeats, finish,
             children, daemons) is later than the dependency's first `term` line of the
             shutdown. Services record with `date +%s%N` before writing, so a line's time
             is a lower bound of "this process was alive", and the dependency's `term`
             time an upper bound of "it had been signalled": the check cannot fail
             because of load, only because of an inversion.
  kill       SIGKILL came no earlier than stop_timeout: a TERM-ignoring main process
             died (seen through a pidfd from outside) at least stop_timeout after its
             `term` line; and no later than stop_timeout + slack (its heartbeats stop).
  finish     a hung finish is killed after finish_timeout (+ slack).
  reap       at a quiet moment no zombie whose parent is svtree or a monitor survives
             several reap passes; no live process hangs off svtree unsupervised.
  nothing    after svtree exits no process carrying the example's token exists
  left       (meaningful in subreaper mode: in a PID namespace the kernel would kill them).
  bound      shutdown finished within a bound computed from the tree.
  exit code  0; 1 if a critical service ended or a boot oneshot failed; the main
             command's code (128+N if signal N killed it).
  model      a service that should be up was restarted after a kill or a monitor kill,
             one that should be down is down, untouched services kept their pids
             across reloads (exactly one start line), dependents started only after
             their dependencies were ready or done, ctl and reload answers.
  output     every line a flooding service wrote reached svtree's stdout/stderr, in
             the order it was written; also after `stall` actions (the reader of
             svtree's stdout, a pipe, pauses for a while and resumes: svtree holds the
             output back, nothing else).

Failures print the example (`describe`) and the action log; the example's directory
is kept under /tmp for inspection.

Modules: example (the data), strategies (drawing it), scripts (what it becomes on disk),
model (what must be true), observe (records, /proc, the observer), runner (one run,
`run_example`), checks (the checks above). What tests use is imported here.
"""

from __future__ import annotations

from harness import needs_pidns
from svfuzz.example import Action, Example, Svc, describe
from svfuzz.runner import CONFIG, Violation, configure, past_deadline, run_example, shrink_budget_spent
from svfuzz.strategies import examples

__all__ = ["CONFIG", "Action", "Example", "Svc", "Violation", "configure", "describe", "examples",
           "needs_pidns", "past_deadline", "run_example", "shrink_budget_spent"]
