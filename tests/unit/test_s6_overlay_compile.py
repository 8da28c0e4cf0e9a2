"""The s6-overlay v2 layout compiled into one plan: names, order, the dependencies that
give cont-init.d and cont-finish.d their order, errors, plan files and reloads."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import pytest

from compiler_trees import RUN, make_service, scratch, write_file  # noqa: F401
from svtree import cli
from svtree.compiler import compile_tree, load_plan_file, recompile
from svtree.compiler.layout import S6_OVERLAY, Source
from svtree.compiler.s6overlay import automatic_root, compile_s6_overlay
from svtree.errors import CompileError, PlanFileError
from svtree.plan import diff


def v2(root: str, inits=("00-a", "10-b", "9-c"), services=("web", "worker"),
       finishes=("10-flush", "20-bye")) -> str:
    for name in inits:
        write_file(os.path.join(root, "etc", "cont-init.d", name), "#!/bin/sh\necho init\n", 0o755)
    os.makedirs(os.path.join(root, "etc", "services.d"), exist_ok=True)
    for name in services:
        make_service(os.path.join(root, "etc", "services.d"), name)
    for name in finishes:
        write_file(os.path.join(root, "etc", "cont-finish.d", name), "#!/bin/sh\necho bye\n", 0o755)
    return root


def test_scripts_become_oneshots_chained_in_lexical_order(scratch):  # noqa: F811
    plan = compile_s6_overlay(v2(scratch))
    by_name = plan.by_name()
    assert sorted(by_name) == ["cont-finish.10-flush", "cont-finish.20-bye", "cont-init.00-a",
                               "cont-init.10-b", "cont-init.9-c", "web", "worker"]
    # cont-init: one at a time, lexical ("9-c" after "10-b"), every longrun after the last.
    assert by_name["cont-init.00-a"].depends_on == ()
    assert by_name["cont-init.10-b"].depends_on == ("cont-init.00-a",)
    assert by_name["cont-init.9-c"].depends_on == ("cont-init.10-b",)
    init = by_name["cont-init.00-a"]
    assert (init.type, init.run, init.finish, init.path) == (
        "oneshot", os.path.join(scratch, "etc", "cont-init.d", "00-a"), None, scratch)
    # cont-finish: the script is the finish; each stops before the next one, all after the longruns.
    flush = by_name["cont-finish.10-flush"]
    assert flush.type == "oneshot" and flush.finish == os.path.join(scratch, "etc", "cont-finish.d", "10-flush")
    assert os.path.basename(flush.run) == "true" and os.access(flush.run, os.X_OK)
    assert flush.depends_on == ("cont-finish.20-bye",)
    assert by_name["cont-finish.20-bye"].depends_on == ()
    for name in ("web", "worker"):
        assert by_name[name].depends_on == ("cont-finish.10-flush", "cont-init.9-c")
        assert by_name[name].path == os.path.join(scratch, "etc", "services.d", name)
    assert plan.source == os.path.join(scratch, "etc", "services.d")
    assert (plan.layout, plan.root) == ("s6-overlay", scratch)
    assert plan.levels[-1] == ("web", "worker")


def test_own_dependencies_of_services_are_kept(scratch):  # noqa: F811
    v2(scratch)
    write_file(os.path.join(scratch, "etc", "services.d", "web", "dependencies.d", "worker"), "")
    web = compile_s6_overlay(scratch).by_name()["web"]
    assert web.depends_on == ("cont-finish.10-flush", "cont-init.9-c", "worker")


def test_without_scripts_it_is_the_plain_tree(scratch):  # noqa: F811
    v2(scratch, inits=(), finishes=())
    os.makedirs(os.path.join(scratch, "etc", "cont-init.d"))
    plan = compile_s6_overlay(scratch)
    plain = compile_tree(os.path.join(scratch, "etc", "services.d"))
    assert (plan.services, plan.levels, plan.source, plan.source_digest) == (
        plain.services, plain.levels, plain.source, plain.source_digest)
    # S6_KEEP_ENV unset: with-contenv's directory is asked for (s6-overlay's default).
    assert plan.settings == replace(plain.settings, container_environment="/run/s6/container_environment")
    assert (plan.layout, plain.layout) == ("s6-overlay", "tree")  # each reloads as it started


def test_hidden_files_and_editor_leftovers_are_ignored(scratch):  # noqa: F811
    v2(scratch, inits=("10-a", ".hidden", "10-a~"), finishes=())
    assert [s.name for s in compile_s6_overlay(scratch).services if s.type == "oneshot"] == ["cont-init.10-a"]


def test_problems_name_the_script_and_say_what_to_do(scratch):  # noqa: F811
    v2(scratch, inits=("10-ok",), finishes=())
    init_d = os.path.join(scratch, "etc", "cont-init.d")
    write_file(os.path.join(init_d, "20 spaced"), "#!/bin/sh\n", 0o755)
    write_file(os.path.join(init_d, "30-noexec"), "#!/bin/sh\n", 0o644)
    write_file(os.path.join(init_d, "40-contenv"), "#!/usr/bin/with-contenv bash\necho\n", 0o755)
    os.makedirs(os.path.join(init_d, "50-dir"))
    with pytest.raises(CompileError) as info:
        compile_s6_overlay(scratch)
    rendered = {os.path.basename(p.path): p.render() for p in info.value.problems}
    assert len(info.value.problems) == 4
    assert "rename the script" in rendered["20 spaced"]
    assert "chmod +x" in rendered["30-noexec"]
    assert "is a directory" in rendered["50-dir"]
    problem = [p for p in info.value.problems if p.path.endswith("40-contenv")][0]
    assert problem.line == 1
    assert problem.message.startswith("#! interpreter /usr/bin/with-contenv (s6-overlay's with-contenv) "
                                      "does not exist: make line 1 #!/")
    assert problem.message.endswith("bash")


def test_with_contenv_replacement_keeps_the_arguments(scratch):  # noqa: F811
    v2(scratch, inits=(), finishes=(), services=())
    make_service(os.path.join(scratch, "etc", "services.d"), "web",
                 {"run": "#!/usr/bin/with-contenv sh -e\nexec web\n"})
    with pytest.raises(CompileError) as info:
        compile_s6_overlay(scratch)
    (problem,) = info.value.problems
    assert problem.message.endswith("/sh -e"), problem.message


def test_a_service_named_like_a_script_is_refused(scratch):  # noqa: F811
    v2(scratch, inits=("10-a",), finishes=(), services=("cont-init.10-a",))
    with pytest.raises(CompileError) as info:
        compile_s6_overlay(scratch)
    assert [p.message for p in info.value.problems] == [
        f'"cont-init.10-a" is also the name of the script {os.path.join(scratch, "etc", "cont-init.d", "10-a")}']


def test_editing_a_script_changes_only_its_digest(scratch):  # noqa: F811
    v2(scratch)
    before = compile_s6_overlay(scratch)
    write_file(os.path.join(scratch, "etc", "cont-finish.d", "20-bye"), "#!/bin/sh\necho later\n", 0o755)
    after = compile_s6_overlay(scratch)
    assert diff(before, after).changed == ("cont-finish.20-bye",)


def test_recompile_compiles_the_layout_the_plan_came_from(scratch):  # noqa: F811
    root = v2(os.path.join(scratch, "root"))
    plan = compile_s6_overlay(root)
    assert recompile(plan) == plan  # what a reload calls
    write_file(os.path.join(root, "etc", "cont-init.d", "10-b"), "#!/bin/sh\necho changed\n", 0o755)
    again = recompile(plan)
    assert (again.layout, again.root) == ("s6-overlay", root)
    assert diff(plan, again).changed == ("cont-init.10-b",)
    # Nothing is remembered per process: DIR alone is a plain tree, whatever ran before.
    plain = compile_tree(plan.source)
    assert plain.layout == "tree" and "cont-init.00-a" not in plain.by_name()
    assert recompile(plain) == plain


def test_watch_paths_are_the_directories_the_plan_comes_from(scratch):  # noqa: F811
    root = v2(os.path.join(scratch, "root"))
    etc = os.path.join(root, "etc")
    plan = compile_s6_overlay(root)
    assert plan.watch_paths() == (os.path.join(etc, "services.d"), os.path.join(etc, "cont-init.d"),
                                  os.path.join(etc, "cont-finish.d"))
    assert compile_tree(plan.source).watch_paths() == (plan.source,)
    bare = v2(os.path.join(scratch, "bare"), inits=(), finishes=())
    assert compile_s6_overlay(bare).watch_paths() == (os.path.join(bare, "etc", "services.d"),)


def test_plan_file_of_the_layout_loads_and_checks_as_that_layout(scratch, capsys):  # noqa: F811
    root = v2(os.path.join(scratch, "root"))
    target = os.path.join(scratch, "plan.json")
    assert cli.main(["compile", "--s6-overlay", root, "-o", target]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"s6-overlay tree of {root}: 7 services in 4 start levels\n")
    plan = load_plan_file(target)  # nothing in this process says which layout: the file does
    assert plan == compile_s6_overlay(root)
    assert (plan.layout, plan.root) == ("s6-overlay", root)
    write_file(os.path.join(root, "etc", "cont-finish.d", "20-bye"), "#!/bin/sh\necho later\n", 0o755)
    with pytest.raises(PlanFileError) as info:  # a script outside DIR changed: stale too
        load_plan_file(target)
    assert str(info.value) == (f"{target}: stale: the s6-overlay tree of {root} changed since it was "
                               f"compiled: run `svtree compile --s6-overlay {root} -o {target}` again")


def test_compile_json(scratch, capsys):  # noqa: F811
    root = v2(scratch)
    assert cli.main(["compile", "--json", "--s6-overlay", root]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["shutdown_chain"][-2:] == ["cont-finish.10-flush", "cont-finish.20-bye"]


def test_missing_services_d_is_a_clear_error(scratch, capsys):  # noqa: F811
    assert cli.main(["compile", "--s6-overlay", scratch]) == 1
    err = capsys.readouterr().err
    assert err.startswith("svtree compile: no tree at ") and "ROOT needs etc/services.d" in err


def test_automatic_choice(scratch, monkeypatch):  # noqa: F811
    root = v2(os.path.join(scratch, "root"))
    monkeypatch.chdir(scratch)
    monkeypatch.delenv("SVTREE_DIR", raising=False)
    assert automatic_root(None, root) == root
    assert automatic_root("given", root) is None
    monkeypatch.setenv("SVTREE_DIR", "x")
    assert automatic_root(None, root) is None
    monkeypatch.delenv("SVTREE_DIR")
    os.mkdir("services.d")
    assert automatic_root(None, root) is None
    os.rmdir("services.d")
    for name in os.listdir(os.path.join(root, "etc", "cont-init.d")):
        os.unlink(os.path.join(root, "etc", "cont-init.d", name))
    os.rmdir(os.path.join(root, "etc", "cont-init.d"))
    assert automatic_root(None, root) is None  # services.d alone is a plain tree


@pytest.mark.parametrize("argv", [
    ["run", "--dir", "x", "--s6-overlay", "/"],
    ["run", "--plan", "x", "--s6-overlay", "/"],
    ["compile", "x", "--s6-overlay", "/"],
])
def test_s6_overlay_excludes_other_trees(argv, capsys):
    assert cli.main(argv) == 2
    assert "exclude each other" in capsys.readouterr().err


def test_run_refuses_a_root_without_services_d(scratch, capsys):  # noqa: F811
    assert cli.main(["run", "--s6-overlay", scratch]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"svtree run: --s6-overlay {scratch}: no directory ")


def test_compile_without_a_tree_chooses_the_layout_by_itself(scratch, monkeypatch, capsys):  # noqa: F811
    root = v2(os.path.join(scratch, "root"))
    monkeypatch.chdir(scratch)
    monkeypatch.delenv("SVTREE_DIR", raising=False)
    # As if / were ROOT: automatic_root() only ever looks at / in svtree itself.
    monkeypatch.setattr("svtree.compiler.s6overlay.automatic_root", lambda explicit: root)
    assert cli.main(["compile"]) == 0
    assert capsys.readouterr().out.startswith(f"s6-overlay tree of {root}: 7 services")


def test_run_without_a_tree_chooses_the_layout_and_says_so(scratch, monkeypatch, capsys):  # noqa: F811
    import argparse

    root = v2(os.path.join(scratch, "root"))
    monkeypatch.setattr("svtree.compiler.s6overlay.automatic_root", lambda explicit: root)
    args = argparse.Namespace(dir=None, plan=None, s6_overlay=None)
    assert cli._choose_source(args, "svtree run") is None
    assert args.source == Source(S6_OVERLAY, root, automatic=True) and args.dir is None
    services_d = os.path.join(root, "etc", "services.d")
    assert f"running the s6-overlay layout of {root} (give --dir {services_d} for a plain tree)" \
        in capsys.readouterr().err
    plain = argparse.Namespace(dir=None, plan="plan.json", s6_overlay=None)
    assert cli._choose_source(plain, "svtree run") is None
    assert plain.source is None and plain.dir is None
    given = argparse.Namespace(dir=None, plan=None, s6_overlay=os.path.relpath(root))
    assert cli._choose_source(given, "svtree run") is None and given.source == Source(S6_OVERLAY, root)
    assert capsys.readouterr().err == ""  # chosen by --s6-overlay: nothing to say
