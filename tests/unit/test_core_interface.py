"""The core's narrow interface: control.py, reload.py and main.py use only Core's public
methods and properties, nothing assigns attributes onto a Core from outside it, and the
role modules of svtree/core never import core.py (it imports them)."""

from __future__ import annotations

import ast
import os

from svtree.core.core import Core

CORE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                        "svtree", "core")
INTERFACE = {name for name in vars(Core) if not name.startswith("_")}
USERS = ("control.py", "reload.py", "main.py")


def tree_of(name: str) -> ast.AST:
    with open(os.path.join(CORE_DIR, name)) as f:
        return ast.parse(f.read(), name)


def is_core(node: ast.AST) -> bool:
    """`core` or `self.core` (or `self.server.core`): how the users name the Core."""
    if isinstance(node, ast.Name):
        return node.id == "core"
    return isinstance(node, ast.Attribute) and node.attr == "core"


def test_the_interface_is_narrow():
    assert "boot" in INTERFACE and "apply_plan" in INTERFACE and len(INTERFACE) <= 30, sorted(INTERFACE)


def test_users_touch_only_the_interface():
    for name in USERS:
        used = {node.attr for node in ast.walk(tree_of(name))
                if isinstance(node, ast.Attribute) and is_core(node.value)}
        assert used, name
        assert used <= INTERFACE, (name, sorted(used - INTERFACE))


def test_nothing_assigns_onto_a_core_from_outside():
    for name in sorted(os.listdir(CORE_DIR)):
        if not name.endswith(".py") or name == "core.py":
            continue
        for node in ast.walk(tree_of(name)):
            targets = []
            if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                assert not (isinstance(t, ast.Attribute) and is_core(t.value)), \
                    f"{name}:{node.lineno} assigns core.{t.attr}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and isinstance(node.func.value, ast.Attribute) and is_core(node.func.value.value):
                assert node.func.value.attr in INTERFACE, \
                    f"{name}:{node.lineno} calls core.{node.func.value.attr}.{node.func.attr}"


def test_role_modules_do_not_import_core_py():
    for name in sorted(os.listdir(CORE_DIR)):
        if not name.endswith(".py") or name in ("core.py", "main.py"):
            continue
        for node in ast.walk(tree_of(name)):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module != "svtree.core.core", name


def assignments(attr: str) -> "set[tuple[str, str]]":
    """(file, function) of every assignment to `<something>.attr` in svtree/."""
    pkg = os.path.dirname(CORE_DIR)
    found = set()
    for root, _, files in os.walk(pkg):
        for f in files:
            if not f.endswith(".py"):
                continue
            path = os.path.join(root, f)
            with open(path) as fh:
                tree = ast.parse(fh.read(), path)
            for func in ast.walk(tree):
                if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                for node in ast.walk(func):
                    targets = node.targets if isinstance(node, ast.Assign) else \
                        [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
                    for t in targets:
                        for leaf in (t.elts if isinstance(t, ast.Tuple) else [t]):
                            if isinstance(leaf, ast.Attribute) and leaf.attr == attr:
                                found.add((os.path.relpath(path, pkg), func.name))
    return found


def test_a_records_life_changes_in_one_place():
    assert assignments("life") == {("core/records.py", "__init__"), ("core/core.py", "_advance")}


def test_the_shutdown_phase_changes_in_one_place():
    assert assignments("phase") == {("core/core.py", "__init__"), ("core/core.py", "_phase_event")}
