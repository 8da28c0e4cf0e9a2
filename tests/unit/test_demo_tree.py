"""The demo tree at the repository root (services.d/) compiles, with the intended shape."""

from __future__ import annotations

import os
import stat

from svtree.compiler import compile_tree

DEMO = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "services.d")


def test_demo_tree_compiles():
    plan = compile_tree(DEMO)
    by_name = plan.by_name()
    assert sorted(by_name) == ["reporter", "setup", "web", "worker"]
    assert by_name["setup"].type == "oneshot"
    assert by_name["web"].depends_on == ("setup",) and by_name["web"].ready_command
    assert by_name["reporter"].down and by_name["reporter"].depends_on == ("web",)
    assert by_name["worker"].finish is not None
    assert plan.levels == (("setup", "worker"), ("web",), ("reporter",))


def test_demo_scripts_are_executable_with_lf_endings():
    for spec in compile_tree(DEMO).services:
        for script in filter(None, (spec.run, spec.finish)):
            assert os.stat(script).st_mode & stat.S_IXUSR, script
            with open(script, "rb") as f:
                assert b"\r" not in f.read(), script
