"""Imports go one way (STYLE.md): checked by parsing the source with ast, and by
counting what the ctl path really loads."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest
from source_scan import PACKAGE, circles, import_graph, imports_of, python_files, starts


@pytest.mark.parametrize("module,forbidden", [
    ("monitor.py", ["svtree.core", "svtree.compiler", "structlog", "watchfiles", "svtree.log"]),
    ("states.py", ["os", "signal", "subprocess", "time", "svtree.core", "svtree.monitor"]),
    ("ctl.py", ["svtree.core", "svtree.compiler", "svtree.monitor", "structlog", "watchfiles",
                "tomllib", "tomli", "svtree.log"]),
    ("plan.py", ["svtree.core", "svtree.monitor", "subprocess", "signal"]),
    ("osutil.py", ["svtree"]),
    ("wire.py", ["svtree.core", "svtree.monitor", "svtree.compiler"]),
    ("messages.py", ["svtree.core", "svtree.monitor", "svtree.compiler", "os", "socket", "structlog"]),
    ("core/core.py", ["svtree.compiler", "watchfiles", "svtree.watcher"]),
    ("core/loop.py", ["svtree.compiler", "watchfiles", "svtree.watcher"]),
    ("watcher.py", ["svtree.core", "svtree.compiler", "svtree.monitor", "structlog"]),
])
def test_imports_go_one_way(module, forbidden):
    assert starts(imports_of(module), forbidden) == []


def _imports_with_their_functions(path: str):
    """(module imported, names of the functions around the import, outermost first)."""
    with open(path) as f:
        tree = ast.parse(f.read())

    def walk(node, around):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, around
            elif isinstance(child, ast.ImportFrom) and child.module:
                yield child.module, around
            inner = around + [child.name] if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else around
            yield from walk(child, inner)

    yield from walk(tree, [])


def test_the_core_never_imports_watchfiles():
    """PID 1 stays single-threaded and small: watchfiles (a Rust thread) is loaded only in
    the forked watcher, by svtree.watcher, which only the body core/reload.py hands the
    watcher's helper child imports."""
    for path in python_files(os.path.join(PACKAGE, "core")):
        rel = os.path.relpath(path, PACKAGE)
        assert starts(imports_of(rel), ["watchfiles"]) == [], rel
        for module, around in _imports_with_their_functions(path):
            if starts([module], ["svtree.watcher"]):
                assert (rel, around) == ("core/reload.py", ["start_watcher", "body"]), (rel, around)


def test_the_import_graph_of_the_package_has_no_circle():
    """Every import counts, also one inside a function (a lazy import that closes a
    circle still means two modules that cannot be understood one without the other)."""
    graph = import_graph()
    assert len(graph) > 40 and "svtree.compiler.build" in graph["svtree.compiler"]
    assert circles(graph) == []


def test_the_circle_finder_finds_circles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"f"}, "f": {"e", "d"}}
    assert circles(graph) == [["a", "b", "c"], ["e", "f"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_ctl_path_loads_no_structlog_watchfiles_or_toml():
    code = ("import sys; from svtree.cli import main; "
            "rc = main(['ctl', '--socket', '/nonexistent/sock', 'status']); "
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('structlog', 'watchfiles', 'tomllib', 'tomli', 'hypothesis', 'argparse',"
            " 'socket', 'selectors', 'json', 're', 'enum', 'signal', 'asyncio')"
            " or m.startswith(('svtree.core', 'svtree.compiler', 'svtree.monitor'))]; "
            "print(rc, sorted(bad))")
    # -S: site-packages hooks of the machine would import things of their own.
    r = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=os.path.dirname(PACKAGE)), timeout=30)
    assert r.stdout.strip() == "1 []", (r.stdout, r.stderr)
    assert "svtree is not running" in r.stderr and "/nonexistent/sock" in r.stderr
