"""The boot's end (core/converge.py): UP when every service not marked down is ready or
done; after a failure that the tree goes on without (boot_failure "warn", "continue"),
FAILED once it has settled: everything else ready, done or failed, or waiting on what
failed; after the timeout, at once. Records and reports are values here: no process."""

from __future__ import annotations

from svtree.core.converge import Boot, StartOrder
from svtree.core.records import Life, Records
from svtree.plan import Plan, ServiceSpec
from svtree.states import State


class Said:
    """The log: what was said, by event name (svtree's log is structlog's; only names matter)."""

    def __init__(self) -> None:
        self.events: "list[str]" = []

    def info(self, event: str, **fields) -> None:
        self.events.append(event)


def tree(*specs: ServiceSpec) -> "tuple[Records, StartOrder, Said]":
    names = [s.name for s in specs]
    plan = Plan(source="/x", services=tuple(sorted(specs, key=lambda s: s.name)), levels=(tuple(names),))
    records, said = Records(plan), Said()
    for svc in records:
        svc.life = Life.UP_SENT  # every monitor told `up`: nothing left to start
    return records, StartOrder(records, said, streams=None, started_at=0.0), said


def spec(name: str, *deps: str, oneshot: bool = False, may_fail: bool = False, down: bool = False) -> ServiceSpec:
    return ServiceSpec(name=name, path="/x", run="/x/run", depends_on=deps, may_fail=may_fail, down=down,
                       type="oneshot" if oneshot else "longrun")


def be(records: Records, name: str, state: State) -> None:
    svc = records.get(name)
    svc.report = svc.report._replace(state=state)


def step(order: StartOrder) -> bool:
    return order.step(lambda svc: None)


def test_up_once_everything_not_down_is_ready_or_done():
    records, order, said = tree(spec("init", oneshot=True), spec("app", "init"), spec("extra", down=True))
    be(records, "init", State.DONE)
    assert not step(order) and order.boot_state is Boot.BOOTING
    be(records, "app", State.READY)
    assert step(order) and order.boot_state is Boot.UP and said.events == ["tree_up"]
    assert not step(order)  # once


def test_after_a_failed_oneshot_the_boot_ends_once_the_rest_has_settled():
    records, order, said = tree(spec("init", oneshot=True), spec("app", "init"), spec("deep", "app"),
                                spec("other"))
    be(records, "init", State.FAILED)
    order.oneshot_failed("init")
    assert not step(order)  # other is not ready yet
    be(records, "other", State.READY)
    # app waits on init, deep on app: both wait on what failed; nothing else is left.
    assert step(order) and order.boot_state is Boot.FAILED and "tree_up" not in said.events


def test_a_failure_that_holds_nothing_back_does_not_settle_its_dependents():
    records, order, _ = tree(spec("cont-init.a", oneshot=True, may_fail=True), spec("app", "cont-init.a"))
    be(records, "cont-init.a", State.FAILED)
    order.oneshot_failed("cont-init.a")
    assert records.deps_ready(records.get("app"))  # may start: the failure holds it not
    assert not step(order)  # app is neither ready nor waiting on a failure: the boot goes on
    be(records, "app", State.READY)
    assert step(order) and order.boot_state is Boot.FAILED


def test_after_the_timeout_the_boot_is_over_at_once():
    records, order, _ = tree(spec("slow"), spec("app"))
    be(records, "app", State.READY)
    be(records, "slow", State.UP)
    assert not step(order)
    assert order.not_ready() == ["slow"]
    order.timeout()
    assert step(order) and order.boot_state is Boot.FAILED
    be(records, "slow", State.READY)
    assert not step(order) and order.boot_state is Boot.FAILED  # over: no tree_up later
