"""Imports go one way (STYLE.md): checked by parsing the source with ast, and by
counting what the ctl path really loads."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

PKG = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "svtree")


def imports_of(relpath: str) -> "set[str]":
    with open(os.path.join(PKG, relpath)) as f:
        tree = ast.parse(f.read())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def starts(names, prefixes):
    return sorted(n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes))


@pytest.mark.parametrize("module,forbidden", [
    ("monitor.py", ["svtree.core", "svtree.compiler", "structlog", "watchfiles", "svtree.log"]),
    ("states.py", ["os", "signal", "subprocess", "time", "svtree.core", "svtree.monitor"]),
    ("ctl.py", ["svtree.core", "svtree.compiler", "svtree.monitor", "structlog", "watchfiles",
                "tomllib", "tomli", "svtree.log"]),
    ("plan.py", ["svtree.core", "svtree.monitor", "subprocess", "signal"]),
    ("osutil.py", ["svtree"]),
    ("wire.py", ["svtree.core", "svtree.monitor", "svtree.compiler"]),
    ("core/tree.py", ["svtree.compiler", "watchfiles", "svtree.watcher"]),
    ("core/loop.py", ["svtree.compiler", "watchfiles", "svtree.watcher"]),
])
def test_imports_go_one_way(module, forbidden):
    assert starts(imports_of(module), forbidden) == []


def test_the_core_never_imports_watchfiles():
    for root, _, files in os.walk(os.path.join(PKG, "core")):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(root, f), PKG)
                assert starts(imports_of(rel), ["watchfiles", "svtree.watcher"]) == [], rel


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
                       env=dict(os.environ, PYTHONPATH=os.path.dirname(PKG)), timeout=30)
    assert r.stdout.strip() == "1 []", (r.stdout, r.stderr)
    assert "svtree is not running" in r.stderr and "/nonexistent/sock" in r.stderr
