"""The worst-case shutdown time of a plan: how long `docker stop` or Kubernetes must wait.

svtree shuts down in three phases (README, "Shutdown"): the main command (SIGKILL after
`main_stop_timeout`), then the services in reverse dependency order, then the sweep of
stray processes (SIGKILL after `kill_grace`). The phases follow each other, so the worst
case is their sum. The middle phase is the longest chain of services that must stop one
after the other, each taking its worst case:

- a longrun: `stop_timeout` (its run may ignore `stop_signal` until SIGKILL), plus
  `finish_timeout` when it has a `finish` (finish runs after every exit of run);
- a logger (a service others feed): twice `stop_timeout`, plus `finish_timeout` when
  it has a `finish`: once its producers are gone it first gets stop_timeout to read
  what is left and end by itself at end of file, then stop_signal as any longrun;
- a oneshot: `finish_timeout` when it has a `finish` (run once at shutdown), after every
  service that depends on it is gone; or, when its run is still running (the boot is not
  over), `stop_timeout` alone: then nothing that depends on it has started yet, so
  nothing stops before it, and a stopped oneshot's finish does not run.

Services marked `down` count as if started (`ctl start` may have started them). Not
counted: the milliseconds svtree itself needs to reap and signal, and a oneshot restarted
with `ctl restart` while its dependents run (that oneshot's stop_timeout then adds to the
chain).
"""

from __future__ import annotations

from dataclasses import dataclass

from svtree.plan import Plan, ServiceSpec


@dataclass(frozen=True)
class ShutdownBudget:
    main_stop_timeout: float
    services: float  # the longest chain of service stops
    kill_grace: float
    chain: "tuple[tuple[str, float], ...]"  # that chain in stop order: (service, seconds)

    @property
    def total(self) -> float:
        return self.main_stop_timeout + self.services + self.kill_grace


def _finish_cost(spec: ServiceSpec) -> float:
    return spec.finish_timeout if spec.finish else 0.0


def worst_case_shutdown(plan: Plan) -> ShutdownBudget:
    """Sum of the three phases; the middle one is a longest path over the dependency graph.

    gone(s) is the latest a service can be gone, counted from the start of the service
    phase: it gets its stop only once every dependent is gone. Computed in reverse start
    order (dependents sit at later levels), so it is linear in services + dependencies.
    """
    by_name = plan.by_name()
    dependents = plan.dependents()
    loggers = {s.logger for s in plan.services if s.logger}
    gone: "dict[str, float]" = {}
    after: "dict[str, str | None]" = {}  # the dependent whose stop s waits for, on its worst path
    own: "dict[str, float]" = {}  # what s itself takes on its worst path
    for level in reversed(plan.levels):
        for name in level:
            spec = by_name[name]
            latest, waited = 0.0, None
            for d in dependents.get(name, ()):
                if gone[d] > latest:
                    latest, waited = gone[d], d
            if spec.type == "oneshot":
                stopped_running = spec.stop_timeout  # nothing after it has started
                done = latest + _finish_cost(spec)
                if stopped_running > done:
                    gone[name], after[name], own[name] = stopped_running, None, spec.stop_timeout
                    continue
                gone[name], after[name], own[name] = done, waited, _finish_cost(spec)
            else:
                stops = 2 if name in loggers else 1  # a logger's end of file, then its stop
                cost = stops * spec.stop_timeout + _finish_cost(spec)
                gone[name], after[name], own[name] = latest + cost, waited, cost
    last = max(sorted(gone), key=lambda n: gone[n], default=None)
    services = gone[last] if last is not None else 0.0
    # The chain in stop order: walk from the service that is gone last back to the first
    # that stops, then reverse.
    chain: "list[tuple[str, float]]" = []
    node = last
    while node is not None:
        chain.append((node, own[node]))
        node = after[node]
    return ShutdownBudget(
        main_stop_timeout=plan.settings.main_stop_timeout,
        services=services,
        kill_grace=plan.settings.kill_grace,
        chain=tuple(reversed(chain)),
    )


def _seconds(value: float) -> str:
    return f"{value:g} s"


def describe_budget(budget: ShutdownBudget) -> str:
    """One line: the total and what it is made of."""
    chain = " -> ".join(f"{name} {seconds:g}" for name, seconds in budget.chain) or "no services"
    return (f"worst-case shutdown: {_seconds(budget.total)} = main_stop_timeout "
            f"{budget.main_stop_timeout:g} (with -- CMD) + services {budget.services:g} ({chain}) "
            f"+ kill_grace {budget.kill_grace:g}")
