"""Applying a reload's difference to the running tree: services whose digest did not
change keep running untouched; removed and changed ones retire, dependents first (each
waits for its old dependents that are going too), and a changed one's replacement, a new
record with the new spec, starts once the old one is gone. A retiring service is never
told `up` again, and nothing that depends on it starts meanwhile.
"""

from __future__ import annotations

from svtree.core.records import Life, Records, Retirement, Service
from svtree.plan import Plan


def retirements(records: Records, new: Plan, removed, changed) -> "dict[str, Retirement]":
    """For each removed or changed service: its replacement's spec (None when removed)
    and the old dependents it waits for (those going too). From the old plan's edges:
    call before the records switch to `new`."""
    old_dependents = records.plan.dependents()
    going = set(removed) | set(changed)
    specs = new.by_name()
    return {name: Retirement(specs.get(name),
                             frozenset(d for d in old_dependents.get(name, ()) if d in going))
            for name in going}


def ready_to_exit(records: Records) -> "list[Service]":
    """Retiring records none of whose retiring dependents is left: they get `exit` now."""
    if not records.retiring():
        return []
    return [svc for svc in records if svc.life is Life.RETIRING
            and not any(records.still_retiring(n) for n in svc.retirement.after)]


def successor(old: Service) -> "Service | None":
    """The record that takes a retired one's place: its replacement spec's, with what
    ctl set (unless `down` changed), its restart count and its report numbers going on."""
    spec = old.retirement.replacement if old.retirement is not None else None
    if spec is None:
        return None
    new = Service(spec, seq=old.report.seq + 1)
    if old.user_set and old.spec.down == new.spec.down:
        new.want, new.user_set = old.want, True
    new.restarts_before = old.report.restarts
    return new
