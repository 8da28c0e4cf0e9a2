"""Imports go one way: the compiler knows nothing about processes.

Parsed with `ast`, so a forbidden import fails here even on a code path no test runs.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import svtree

PACKAGE = os.path.dirname(svtree.__file__)
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


def python_files(directory: str) -> "list[str]":
    found = []
    for root, _dirs, files in os.walk(directory):
        found += [os.path.join(root, f) for f in files if f.endswith(".py")]
    return sorted(found)


def package_of(path: str) -> str:
    return os.path.relpath(os.path.dirname(path), os.path.dirname(PACKAGE)).replace(os.sep, ".")


def imported_modules(source: str, package: str) -> "set[str]":
    """Absolute names of every module some source imports (relative imports resolved)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def compiler_imports() -> "dict[str, set[str]]":
    found = {}
    for path in python_files(COMPILER):
        with open(path, encoding="utf-8") as f:
            found[os.path.relpath(path, PACKAGE)] = imported_modules(f.read(), package_of(path))
    return found


def is_forbidden(module: str, forbidden: "tuple[str, ...]") -> bool:
    return any(module == f or module.startswith(f + ".") for f in forbidden)


def test_the_compiler_package_is_there():
    files = [os.path.basename(p) for p in python_files(COMPILER)]
    assert "__init__.py" in files and "command.py" in files and len(files) >= 5


def test_the_import_scan_sees_every_form():
    source = ("import subprocess\nfrom os import fork\nfrom ..core import loop\n"
              "from . import graph\nimport svtree.monitor as m\n")
    found = imported_modules(source, "svtree.compiler")
    assert {"subprocess", "os.fork", "svtree.core", "svtree.core.loop", "svtree.compiler.graph",
            "svtree.monitor"} <= found
    assert is_forbidden("svtree.core.loop", FORBIDDEN_IN_COMPILER)
    assert not is_forbidden("svtree.corelike", FORBIDDEN_IN_COMPILER)


def test_compiler_imports_nothing_about_processes():
    bad = {}
    for name, modules in compiler_imports().items():
        hits = sorted(m for m in modules if is_forbidden(m, FORBIDDEN_IN_COMPILER))
        os_calls = sorted(m for m in modules if m.startswith("os.") and m[3:] in FORBIDDEN_OS_CALLS)
        if hits or os_calls:
            bad[name] = hits + os_calls
    assert not bad, f"the compiler must not import process machinery: {bad}"


def test_compiler_calls_no_process_functions_of_os():
    bad = []
    for path in python_files(COMPILER):
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        for node in ast.walk(tree):
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
