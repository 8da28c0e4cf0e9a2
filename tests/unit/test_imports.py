"""Imports go one way: the compiler knows nothing about processes.

Parsed with `ast`, so a forbidden import fails here even on a code path no test runs.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys

from source_scan import PACKAGE, imported_modules, package_of, parse, python_files, starts

COMPILER = os.path.join(PACKAGE, "compiler")

# Modules that start, signal or wait for processes, and svtree's runtime roles.
FORBIDDEN_IN_COMPILER = (
    "subprocess", "multiprocessing", "signal", "pty", "asyncio", "concurrent", "threading",
    "svtree.core", "svtree.monitor", "svtree.osutil", "svtree.ctl", "svtree.wire", "svtree.log",
    "svtree.watcher", "structlog", "watchfiles",
)
# os functions that create, replace, signal or reap processes.
FORBIDDEN_OS_CALLS = {
    "fork", "forkpty", "kill", "killpg", "system", "popen", "posix_spawn", "posix_spawnp",
    "wait", "waitpid", "wait3", "wait4", "waitid", "pidfd_open", "setsid", "setuid", "setgid",
    "execv", "execve", "execvp", "execvpe", "execl", "execle", "execlp", "execlpe",
    "spawnv", "spawnve", "spawnvp", "spawnvpe", "spawnl", "spawnle", "spawnlp", "spawnlpe",
}


def process_machinery_imported(directory: str) -> "dict[str, list[str]]":
    """file -> the process machinery it imports (FORBIDDEN_IN_COMPILER, os's process calls)."""
    bad = {}
    for path in python_files(directory):
        modules = imported_modules(parse(path), package_of(path))
        hits = starts(modules, FORBIDDEN_IN_COMPILER)
        hits += sorted(m for m in modules if m.startswith("os.") and m[3:] in FORBIDDEN_OS_CALLS)
        if hits:
            bad[os.path.relpath(path, PACKAGE)] = hits
    return bad


def test_the_compiler_package_is_there():
    files = [os.path.basename(p) for p in python_files(COMPILER)]
    assert "__init__.py" in files and "command.py" in files and len(files) >= 5


def test_the_import_scan_sees_every_form():
    source = ("import subprocess\nfrom os import fork\nfrom ..core import loop\n"
              "from . import graph\nimport svtree.monitor as m\n")
    found = imported_modules(source, "svtree.compiler")
    assert {"subprocess", "os.fork", "svtree.core", "svtree.core.loop", "svtree.compiler.graph",
            "svtree.monitor"} <= found
    assert starts(["svtree.core.loop", "svtree.corelike"], FORBIDDEN_IN_COMPILER) == ["svtree.core.loop"]


def test_compiler_imports_nothing_about_processes():
    bad = process_machinery_imported(COMPILER)
    assert not bad, f"the compiler must not import process machinery: {bad}"


def test_compiler_calls_no_process_functions_of_os():
    bad = []
    for path in python_files(COMPILER):
        for node in ast.walk(parse(path)):
            if (isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_OS_CALLS
                    and isinstance(node.value, ast.Name) and node.value.id == "os"):
                bad.append(f"{os.path.relpath(path, PACKAGE)}:{node.lineno}: os.{node.attr}")
    assert not bad, bad


def test_importing_the_compiler_loads_no_process_machinery():
    # A fresh interpreter: what the compiler pulls in transitively, not only directly.
    # (`signal` is allowed here: svtree.signames names signals with it, and sends none.)
    code = (
        "import sys, svtree.compiler, svtree.compiler.command\n"
        "bad = ('subprocess', 'multiprocessing', 'svtree.core', 'svtree.monitor', 'svtree.osutil',\n"
        "       'svtree.ctl', 'svtree.wire', 'svtree.log', 'structlog', 'watchfiles')\n"
        "print(' '.join(sorted(m for m in sys.modules if any(m == b or m.startswith(b + '.') for b in bad))))\n"
    )
    root = os.path.dirname(PACKAGE)
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": root}, check=True).stdout
    assert out.strip() == ""
