"""The plan value: plan files (round trip, other version, stale tree) and diff()."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from compiler_trees import make_tree, scratch, write_file  # noqa: F401
from svtree import __version__
from svtree.compiler import compile_tree, load_plan_file
from svtree.errors import PlanFileError
from svtree.plan import PLAN_FORMAT, GlobalSettings, Plan, ServiceSpec, diff, dump, load

RICH = {
    "db": {"service.toml": 'stop_signal = "INT"\nenvironment = { A = "1", B = "two" }\nuser = 0\n',
           "finish": "#!/bin/sh\necho \"$@\"\n"},
    "init": {"type": "oneshot\n"},
    "web": {"service.toml": 'depends_on = ["db", "init"]\nready_command = "true"\ncritical = true\n',
            "down": ""},
}


def write_plan(scratch, plan: Plan) -> str:
    path = os.path.join(scratch, "plan.json")
    write_file(path, dump(plan))
    return path


def test_dump_load_round_trip(scratch):
    plan = compile_tree(make_tree(scratch, RICH, global_toml='output = "raw"\n'))
    again = load(dump(plan))
    assert again == plan
    assert isinstance(again.services[0].environment[0], tuple)
    assert again.by_name()["db"].groups == plan.by_name()["db"].groups


def test_load_plan_file_round_trip(scratch):
    plan = compile_tree(make_tree(scratch, RICH))
    assert load_plan_file(write_plan(scratch, plan)) == plan


def make_s6_overlay_root(scratch) -> str:
    root = os.path.join(scratch, "root")
    write_file(os.path.join(root, "etc", "cont-init.d", "10-init"), "#!/bin/sh\necho init\n", 0o755)
    write_file(os.path.join(root, "etc", "cont-finish.d", "10-bye"), "#!/bin/sh\necho bye\n", 0o755)
    make_tree(os.path.join(root, "etc"), {"web": {}})
    return root


def test_plan_file_round_trip_keeps_layout_and_root(scratch):
    from svtree.compiler.s6overlay import compile_s6_overlay

    root = make_s6_overlay_root(scratch)
    plan = compile_s6_overlay(root)
    data = json.loads(dump(plan))
    assert (data["layout"], data["root"]) == ("s6-overlay", root)
    again = load(dump(plan))
    assert again == plan and (again.layout, again.root) == ("s6-overlay", root)
    assert load_plan_file(write_plan(scratch, plan)) == plan
    tree = load(dump(compile_tree(make_tree(scratch, {"a": {}}))))
    assert (tree.layout, tree.root) == ("tree", "")


def test_plan_file_without_layout_is_a_tree(scratch):
    plan = compile_tree(make_tree(scratch, {"a": {}}))
    data = json.loads(dump(plan))
    del data["layout"], data["root"]  # as written before plans recorded their layout
    assert load(json.dumps(data)) == plan


@pytest.mark.parametrize("layout, root", [("s6", "/"), ("s6-overlay", "")])
def test_load_refuses_an_unknown_layout_or_a_missing_root(scratch, layout, root):
    data = json.loads(dump(compile_tree(make_tree(scratch, {"a": {}}))))
    data["layout"], data["root"] = layout, root
    with pytest.raises(PlanFileError, match="file.json: damaged plan file"):
        load(json.dumps(data), origin="file.json")


def test_watch_paths(scratch):
    root = make_s6_overlay_root(scratch)
    etc = os.path.join(root, "etc")
    services = (ServiceSpec(name="a", path="/t/a"),)
    tree = Plan(source="/t", services=services, levels=(("a",),))
    assert tree.watch_paths() == ("/t",)
    s6 = Plan(source=os.path.join(etc, "services.d"), services=services, levels=(("a",),),
              layout="s6-overlay", root=root)
    assert s6.watch_paths() == (os.path.join(etc, "services.d"), os.path.join(etc, "cont-init.d"),
                                os.path.join(etc, "cont-finish.d"))
    shutil.rmtree(os.path.join(etc, "cont-init.d"))  # only the directories that exist
    assert s6.watch_paths() == (os.path.join(etc, "services.d"), os.path.join(etc, "cont-finish.d"))
    shutil.rmtree(os.path.join(etc, "cont-finish.d"))
    assert s6.watch_paths() == (os.path.join(etc, "services.d"),)


def test_load_refuses_another_svtree_version(scratch):
    plan = compile_tree(make_tree(scratch, {"a": {}}))
    data = json.loads(dump(plan))
    data["svtree"] = "0.0.0-other"
    with pytest.raises(PlanFileError, match=r"written by svtree 0\.0\.0-other .* compile it again"):
        load(json.dumps(data))


def test_load_refuses_another_format(scratch):
    plan = compile_tree(make_tree(scratch, {"a": {}}))
    data = json.loads(dump(plan))
    data["format"] = PLAN_FORMAT + 1
    path = os.path.join(scratch, "plan.json")
    write_file(path, json.dumps(data))
    with pytest.raises(PlanFileError, match=f"plan format {PLAN_FORMAT + 1}"):
        load_plan_file(path)


@pytest.mark.parametrize("text", ["not json", "[1, 2]", "{}"])
def test_load_refuses_what_is_not_a_plan(text):
    with pytest.raises(PlanFileError, match="not a plan file"):
        load(text)


def test_load_refuses_a_damaged_plan(scratch):
    data = json.loads(dump(compile_tree(make_tree(scratch, {"a": {}}))))
    del data["services"][0]["name"]
    with pytest.raises(PlanFileError, match="damaged plan file"):
        load(json.dumps(data))


def test_load_plan_file_refuses_a_stale_tree(scratch):
    tree = make_tree(scratch, {"a": {}, "b": {}})
    path = write_plan(scratch, compile_tree(tree))
    write_file(os.path.join(tree, "b", "service.toml"), "stop_timeout = 3\n")
    with pytest.raises(PlanFileError) as info:
        load_plan_file(path)
    message = str(info.value)
    assert "stale" in message and "changed since it was compiled" in message
    assert f"run `svtree compile {tree} -o {path}` again" in message


def test_load_plan_file_refuses_a_changed_svtree_toml(scratch):
    tree = make_tree(scratch, {"a": {}})
    path = write_plan(scratch, compile_tree(tree))
    write_file(os.path.join(tree, "svtree.toml"), "kill_grace = 1\n")
    with pytest.raises(PlanFileError, match="stale"):
        load_plan_file(path)


def test_load_plan_file_refuses_an_added_service(scratch):
    tree = make_tree(scratch, {"a": {}})
    path = write_plan(scratch, compile_tree(tree))
    make_tree(scratch, {"b": {}})
    with pytest.raises(PlanFileError, match="stale"):
        load_plan_file(path)


def test_load_plan_file_refuses_a_tree_now_invalid(scratch):
    tree = make_tree(scratch, {"a": {}})
    path = write_plan(scratch, compile_tree(tree))
    write_file(os.path.join(tree, "a", "service.toml"), "stop_timeout = -1\n")
    with pytest.raises(PlanFileError, match=r"now invalid .*svtree compile .* -o .* again"):
        load_plan_file(path)


def test_load_plan_file_refuses_a_tree_that_is_gone(scratch):
    tree = make_tree(scratch, {"a": {}})
    path = write_plan(scratch, compile_tree(tree))
    shutil.rmtree(tree)
    with pytest.raises(PlanFileError, match=r"the tree it was compiled from is gone .* again"):
        load_plan_file(path)


def test_load_plan_file_unreadable(scratch):
    with pytest.raises(PlanFileError, match="cannot read plan file"):
        load_plan_file(os.path.join(scratch, "missing.json"))


def test_plan_file_records_version(scratch):
    data = json.loads(dump(compile_tree(make_tree(scratch, {"a": {}}))))
    assert (data["format"], data["svtree"]) == (PLAN_FORMAT, __version__)


# --- diff ---------------------------------------------------------------------------------

def test_diff_of_two_compiles(scratch):
    tree = make_tree(scratch, {"keep": {}, "change": {}, "drop": {}})
    old = compile_tree(tree)
    shutil.rmtree(os.path.join(tree, "drop"))
    write_file(os.path.join(tree, "change", "service.toml"), "restart = \"never\"\n")
    make_tree(scratch, {"new": {}})
    d = diff(old, compile_tree(tree))
    assert (d.added, d.removed, d.changed, d.unchanged) == (("new",), ("drop",), ("change",), ("keep",))
    assert not d.empty


def test_diff_of_the_same_tree_is_empty(scratch):
    tree = make_tree(scratch, RICH)
    d = diff(compile_tree(tree), compile_tree(tree))
    assert d.empty and d.unchanged == ("db", "init", "web")


def test_diff_by_digest_only():
    a = ServiceSpec(name="a", path="/t/a", digest="1")
    old = Plan(source="/t", services=(a,), levels=(("a",),))
    new = Plan(source="/t", services=(ServiceSpec(name="a", path="/t/a", digest="2"),), levels=(("a",),),
               settings=GlobalSettings(kill_grace=1.0))
    assert diff(old, new).changed == ("a",)


def test_dependents(scratch):
    plan = compile_tree(make_tree(scratch, RICH))
    assert plan.dependents() == {"db": ("web",), "init": ("web",), "web": ()}
