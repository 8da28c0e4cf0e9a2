"""The shutdown's stop order (core/shutdown.py StopOrder): kept up one event at a time,
it lets the same records go as the definition asked of the whole tree after every event
(a record goes once its dependents, and theirs, are all gone), with work that grows with
the edges, not with the events times the records."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from svtree.core.records import Life, Records
from svtree.core.shutdown import StopOrder
from svtree.plan import Plan, ServiceSpec


def records_of(deps: "dict[str, tuple[str, ...]]") -> Records:
    specs = tuple(ServiceSpec(name=n, path=f"/t/{n}", depends_on=d) for n, d in deps.items())
    return Records(Plan(source="/t", services=specs, levels=(tuple(deps),)))


def may_stop(records: Records) -> "set[str]":
    """The definition, asked of every record: not told to exit, and every dependent,
    and theirs, gone."""
    dependents = records.live_dependents()

    def gone(name: str) -> bool:
        svc = records.by_name.get(name)
        return svc is None or svc.life is Life.GONE

    def all_gone(name: str) -> bool:
        return all(gone(d) and all_gone(d) for d in dependents.get(name, ()))

    return {svc.name for svc in records if svc.life not in (Life.EXIT_SENT, Life.GONE) and all_gone(svc.name)}


@st.composite
def trees(draw):
    """A DAG (each service depends on some earlier ones), some records gone already (a
    monitor that died during the shutdown's first phase), and an order of the rest's ends."""
    n = draw(st.integers(1, 9))
    names = [f"s{i}" for i in range(n)]
    deps = {name: tuple(draw(st.sets(st.sampled_from(names[:i]))) if i else ()) for i, name in enumerate(names)}
    gone_first = draw(st.sets(st.sampled_from(names)))
    return deps, gone_first, draw(st.randoms())


@settings(max_examples=300, deadline=None)
@given(trees())
def test_the_order_kept_up_is_the_order_asked_of_everything(tree):
    deps, gone_first, rnd = tree
    records = records_of(deps)
    for svc in records:
        svc.life = Life.GONE if svc.name in gone_first else Life.UP_SENT
    order = StopOrder(records)
    exited: "list[str]" = []
    while True:
        ready = set(order.take_ready())
        assert ready == may_stop(records), (deps, gone_first, exited)
        for name in ready:
            records.get(name).life = Life.EXIT_SENT
        running = [svc for svc in records if svc.life is Life.EXIT_SENT]
        if not running:
            break
        # One of those told to exit ends (in any order: a monitor's exit is its own).
        svc = rnd.choice(running)
        svc.life = Life.GONE
        order.gone(svc.name)
        exited.append(svc.name)
    assert order.left == 0
    assert all(svc.life is Life.GONE for svc in records)
    # Nobody went before a dependent of theirs.
    position = {name: i for i, name in enumerate(exited)}
    for name, ds in deps.items():
        for d in ds:
            if name in position and d in position:
                assert position[name] < position[d], (name, d, exited)


def test_a_dependent_that_went_early_still_holds_what_depends_on_it():
    """c -> b -> a (c depends on b, b on a); b's monitor died (gone) while c still runs:
    a waits for c, not only for b."""
    records = records_of({"a": (), "b": ("a",), "c": ("b",)})
    for svc in records:
        svc.life = Life.UP_SENT
    records.get("b").life = Life.GONE
    order = StopOrder(records)
    assert order.take_ready() == ["c"]
    records.get("c").life = Life.GONE
    order.gone("c")
    assert order.take_ready() == ["a"]
