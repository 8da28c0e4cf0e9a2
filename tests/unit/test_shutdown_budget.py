"""The worst-case shutdown time `svtree compile` prints, and --grace / --json around it."""

from __future__ import annotations

import json

import pytest

from compiler_trees import make_tree, scratch  # noqa: F401
from svtree import cli
from svtree.compiler import compile_tree
from svtree.compiler.shutdown import describe_budget, worst_case_shutdown
from svtree.plan import GlobalSettings, Plan, ServiceSpec


def plan_of(*specs: ServiceSpec, levels, kill_grace: float = 3.0, main_stop_timeout: float = 10.0) -> Plan:
    return Plan(source="/t", services=tuple(sorted(specs, key=lambda s: s.name)), levels=levels,
                settings=GlobalSettings(kill_grace=kill_grace, main_stop_timeout=main_stop_timeout))


def longrun(name, deps=(), stop=10.0, finish=None) -> ServiceSpec:
    return ServiceSpec(name=name, path=f"/t/{name}", run=f"/t/{name}/run", depends_on=tuple(deps),
                       stop_timeout=stop, finish=f"/t/{name}/finish" if finish is not None else None,
                       finish_timeout=finish if finish is not None else 5.0)


def oneshot(name, deps=(), stop=10.0, finish=None) -> ServiceSpec:
    spec = longrun(name, deps, stop, finish)
    return ServiceSpec(**{**spec.__dict__, "type": "oneshot"})


def test_empty_tree_is_main_stop_timeout_plus_kill_grace():
    budget = worst_case_shutdown(plan_of(levels=(), kill_grace=2.0, main_stop_timeout=4.0))
    assert (budget.total, budget.services, budget.chain) == (6.0, 0.0, ())


def test_a_logger_counts_its_time_to_end_by_itself_then_its_stop():
    app = ServiceSpec(**{**longrun("app", deps=("app-log",), stop=4.0).__dict__, "logger": "app-log"})
    budget = worst_case_shutdown(plan_of(app, longrun("app-log", stop=3.0, finish=1.0),
                                         levels=(("app-log",), ("app",)), kill_grace=0.0))
    # app: 4; then its logger: 3 to read to the end of its pipe, 3 after TERM, finish 1.
    assert budget.chain == (("app", 4.0), ("app-log", 7.0)) and budget.services == 11.0


def test_a_chain_adds_up_and_parallel_services_do_not():
    # db <- app <- proxy (a chain: proxy stops first, db last); cache beside them.
    plan = plan_of(
        longrun("db", stop=20.0, finish=4.0),
        longrun("app", deps=["db"], stop=5.0),
        longrun("proxy", deps=["app"], stop=1.0, finish=0.5),
        longrun("cache", stop=25.0),
        levels=(("cache", "db"), ("app",), ("proxy",)),
    )
    budget = worst_case_shutdown(plan)
    assert budget.services == 1.5 + 5.0 + 24.0
    assert budget.chain == (("proxy", 1.5), ("app", 5.0), ("db", 24.0))
    assert budget.total == 10.0 + 30.5 + 3.0


def test_finish_timeout_counts_only_with_a_finish():
    plan = plan_of(longrun("a", stop=2.0), levels=(("a",),))
    assert worst_case_shutdown(plan).services == 2.0


def test_the_longest_of_two_branches_wins():
    plan = plan_of(
        longrun("base", stop=1.0),
        longrun("fast", deps=["base"], stop=1.0),
        longrun("slow", deps=["base"], stop=8.0, finish=1.0),
        levels=(("base",), ("fast", "slow")),
    )
    budget = worst_case_shutdown(plan)
    assert budget.chain == (("slow", 9.0), ("base", 1.0))
    assert budget.services == 10.0


def test_a_done_oneshot_costs_its_finish_after_its_dependents():
    plan = plan_of(
        oneshot("setup", stop=1.0, finish=2.0),
        longrun("web", deps=["setup"], stop=3.0),
        levels=(("setup",), ("web",)),
    )
    budget = worst_case_shutdown(plan)
    assert budget.chain == (("web", 3.0), ("setup", 2.0))
    assert budget.services == 5.0


def test_a_running_oneshot_costs_its_stop_timeout_alone():
    # Still running at shutdown: web has not started, so nothing stops before it.
    plan = plan_of(
        oneshot("migrate", stop=30.0),
        longrun("web", deps=["migrate"], stop=3.0),
        levels=(("migrate",), ("web",)),
    )
    budget = worst_case_shutdown(plan)
    assert budget.chain == (("migrate", 30.0),)
    assert budget.services == 30.0


def test_down_services_count():
    spec = ServiceSpec(**{**longrun("later", stop=7.0).__dict__, "down": True})
    assert worst_case_shutdown(plan_of(spec, levels=(("later",),))).services == 7.0


def test_describe_budget_names_every_part():
    plan = plan_of(longrun("db", stop=20.0, finish=4.0), longrun("app", deps=["db"], stop=5.0),
                   levels=(("db",), ("app",)))
    assert describe_budget(worst_case_shutdown(plan)) == (
        "worst-case shutdown: 42 s = main_stop_timeout 10 (with -- CMD) + services 29 "
        "(app 5 -> db 24) + kill_grace 3")


def test_a_compiled_tree(scratch):  # noqa: F811
    tree = make_tree(scratch, {
        "setup": {"service.toml": 'type = "oneshot"\nstop_timeout = 2\n'},
        "web": {"service.toml": 'depends_on = ["setup"]\nstop_timeout = 4\n', "finish": "#!/bin/sh\n"},
    }, global_toml="kill_grace = 1\nmain_stop_timeout = 2\n")
    budget = worst_case_shutdown(compile_tree(tree))
    assert budget.chain == (("web", 9.0), ("setup", 0.0))
    assert budget.total == 2.0 + 9.0 + 1.0


# --- svtree compile ---------------------------------------------------------------------

@pytest.fixture
def slow_tree(scratch):  # noqa: F811
    # 10 (main_stop_timeout) + 20 + 5 (web: stop_timeout and finish) + 3 (kill_grace) = 38 s
    return make_tree(scratch, {"web": {"service.toml": "stop_timeout = 20\n", "finish": "#!/bin/sh\n"}})


def test_compile_prints_the_worst_case(slow_tree, capsys):
    assert cli.main(["compile", slow_tree]) == 0
    out, err = capsys.readouterr()
    assert "worst-case shutdown: 38 s = main_stop_timeout 10 (with -- CMD) + services 25 (web 25) " \
           "+ kill_grace 3\n" in out
    assert err == ""


def test_grace_warns_on_stderr_and_exits_0(slow_tree, capsys):
    assert cli.main(["compile", slow_tree, "--grace", "30"]) == 0
    out, err = capsys.readouterr()
    assert err.startswith("svtree compile: warning: the worst-case shutdown (38 s) exceeds the grace "
                          "time of 30 s")
    assert err.count("\n") == 1
    assert "terminationGracePeriodSeconds" in err


def test_grace_that_holds_is_silent(slow_tree, capsys):
    assert cli.main(["compile", "--grace", "38", slow_tree]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("bad", ["soon", "-1", "nan", "inf"])
def test_bad_grace_is_a_usage_error(slow_tree, capsys, bad):
    assert cli.main(["compile", slow_tree, "--grace", bad]) == 2
    assert capsys.readouterr().err.startswith(f'svtree compile: --grace takes a number of seconds, not "{bad}"')


def test_json_has_the_worst_case_and_grace_keeps_stdout_json(slow_tree, capsys):
    assert cli.main(["compile", slow_tree, "--json", "--grace", "30"]) == 0
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert data["worst_case_shutdown"] == 38.0
    assert data["shutdown_chain"] == ["web"]
    assert "warning" in err
