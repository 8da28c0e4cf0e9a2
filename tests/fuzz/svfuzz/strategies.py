"""The hypothesis strategies that draw examples: 2-6 services in a dependency DAG, each
with a behaviour and settings, a schedule of actions, sometimes a SIGTERM to svtree at a
random moment and a main command. Every choice shrinks towards the plainest one (the
first of each list)."""

from __future__ import annotations

from hypothesis import strategies as st

from svfuzz.example import (BEHAVIOURS, FINISHES, MONITOR_MOMENTS, MONITOR_SIGNALS, SELF_KILL_SIGNALS,
                            SERVICE_SIGNALS, STALLS, STEADY, Action, Example, Svc)


def _rarely(draw, one_in: int) -> bool:
    """True about once in `one_in`; shrinks to False."""
    return draw(st.integers(0, one_in - 1)) == one_in - 1


@st.composite
def a_service(draw, name: str, earlier: "list[str]") -> Svc:
    deps = ()
    if earlier:
        deps = tuple(sorted(draw(st.lists(st.sampled_from(earlier), max_size=min(3, len(earlier)),
                                          unique=True))))
    if _rarely(draw, 5):
        code = draw(st.sampled_from((1, 3))) if _rarely(draw, 5) else 0
        return Svc(
            name, deps, type="oneshot", code=code,
            delay=draw(st.sampled_from((0.0, 0.1, 0.3))),
            stop_timeout=draw(st.sampled_from((0.5, 0.2, 1.0))),
            finish=draw(st.sampled_from(FINISHES)),
            finish_timeout=draw(st.sampled_from((0.4, 0.3, 0.5))),
            down=_rarely(draw, 8),
        )
    behaviour = draw(st.sampled_from(BEHAVIOURS))
    kw: dict = {}
    if behaviour == "exit_now":
        kw["code"] = draw(st.sampled_from((0, 1, 3)))
    elif behaviour == "self_kill":
        kw["sig"] = draw(st.sampled_from(SELF_KILL_SIGNALS))
        kw["delay"] = draw(st.sampled_from((0.3, 0.1, 0.8)))
    elif behaviour == "slow_stop":
        kw["delay"] = draw(st.sampled_from((0.3, 0.1, 0.6, 1.5)))
    elif behaviour == "notify":
        kw["delay"] = draw(st.sampled_from((0.1, 0.0, 0.3, 0.6)))
    elif behaviour in ("forks", "daemon"):
        kw["stubborn"] = draw(st.booleans())
    finish = draw(st.sampled_from(FINISHES))
    critical = behaviour in STEADY and _rarely(draw, 6)
    return Svc(
        name, deps, behaviour=behaviour,
        restart=draw(st.sampled_from(("always", "on-failure", "never"))),
        stop_timeout=draw(st.sampled_from((0.5, 0.2, 0.3, 0.7, 1.0))),
        restart_delay=draw(st.sampled_from((0.1, 0.05, 0.2, 0.3))),
        finish=finish,
        finish_timeout=draw(st.sampled_from((0.4, 0.3, 0.5))),
        down=_rarely(draw, 8),
        critical=critical,
        **kw,
    )


@st.composite
def an_action(draw) -> Action:
    kind = draw(st.sampled_from(("kill", "ctl", "kill_monitor", "reload", "stall")))
    delay = draw(st.sampled_from((0.1, 0.0, 0.05, 0.3, 0.6)))
    target = draw(st.integers(0, 5))
    arg = draw(st.sampled_from({
        "kill": SERVICE_SIGNALS,
        "ctl": ("restart", "stop", "start"),
        "kill_monitor": MONITOR_SIGNALS,
        "reload": ("change", "invalid", "add", "remove"),
        "stall": STALLS,
    }[kind]))
    if kind == "kill_monitor":
        arg += draw(st.sampled_from(MONITOR_MOMENTS))
    return Action(delay, kind, target, arg)


@st.composite
def examples(draw) -> Example:
    n = draw(st.integers(2, 6))
    names = [chr(ord("a") + i) for i in range(n)]
    services = tuple(draw(a_service(name, names[:i])) for i, name in enumerate(names))
    actions = draw(st.lists(an_action(), max_size=6))
    if _rarely(draw, 4):  # SIGTERM to svtree at a random moment of the schedule
        at = draw(st.integers(0, len(actions)))
        actions.insert(at, Action(draw(st.sampled_from((0.1, 0.0, 0.3))), "sigterm"))
    main = None
    if _rarely(draw, 4):
        main = (draw(st.sampled_from((3.0, 0.3, 1.0, 8.0))), draw(st.sampled_from((0, 3, 7))))
        leaves = draw(st.sampled_from(("", "daemon", "stubborn")))
        if leaves:
            main += (leaves,)
    return Example(
        services=services, actions=tuple(actions), main=main,
        mode="subreaper" if _rarely(draw, 4) else "pidns",
        kill_grace=draw(st.sampled_from((0.5, 0.3, 1.0))),
    )
