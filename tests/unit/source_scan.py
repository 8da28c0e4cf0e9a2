"""svtree's own source read with `ast`, for the tests that hold its shape: what each file
imports (test_architecture.py, test_imports.py, the package's import graph), which events
it logs (test_log_events.py), how long its functions are (test_shape.py).

One scanner, so that those tests cannot disagree about what an import is. Parsing (not
importing) sees every import, also one inside a function on a path no test runs.
"""

from __future__ import annotations

import ast
import functools
import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = os.path.join(REPO, "svtree")


def python_files(directory: str = PACKAGE) -> "list[str]":
    found = []
    for root, _dirs, files in os.walk(directory):
        found += [os.path.join(root, f) for f in files if f.endswith(".py")]
    return sorted(found)


def module_name(path: str) -> str:
    """svtree/compiler/build.py -> svtree.compiler.build; a package's __init__.py -> the package."""
    name = os.path.relpath(path, REPO)[:-len(".py")].replace(os.sep, ".")
    return name[:-len(".__init__")] if name.endswith(".__init__") else name


def package_of(path: str) -> str:
    """The package a file's relative imports start from."""
    return os.path.relpath(os.path.dirname(path), REPO).replace(os.sep, ".")


@functools.lru_cache(maxsize=None)
def parse(path: str) -> ast.Module:
    with open(path, encoding="utf-8") as f:
        return ast.parse(f.read(), path)


def imported_modules(tree: "ast.AST | str", package: str) -> "set[str]":
    """Absolute names of every module a source imports (relative imports resolved), and
    of every name it takes from one (`from os import fork` gives `os` and `os.fork`)."""
    if isinstance(tree, str):
        tree = ast.parse(tree)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = _from_module(node, package)
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def imports_of(relpath: str) -> "set[str]":
    """What svtree/RELPATH imports."""
    path = os.path.join(PACKAGE, relpath)
    return imported_modules(parse(path), package_of(path))


def starts(names, prefixes) -> "list[str]":
    """The names that are one of `prefixes` or lie below one."""
    return sorted(n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes))


def import_graph(directory: str = PACKAGE) -> "dict[str, set[str]]":
    """module -> the modules of the package it imports. A name taken from a module counts
    as that module (`from svtree.compiler.build import x`: svtree.compiler.build), a module
    taken from a package as that module (`from svtree.compiler import build`: build, not
    the package's __init__, which Python runs before any module of the package anyway)."""
    paths = {module_name(p): p for p in python_files(directory)}

    def known(name: str) -> str:
        while name and name not in paths:
            name = name.rpartition(".")[0]
        return name

    graph = {}
    for module, path in paths.items():
        package = package_of(path)
        edges = set()
        for node in ast.walk(parse(path)):
            if isinstance(node, ast.Import):
                edges.update(known(alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                source = _from_module(node, package)
                for alias in node.names:
                    taken = f"{source}.{alias.name}"
                    edges.add(taken if taken in paths else known(source))
        graph[module] = edges - {"", module}
    return graph


def _from_module(node: ast.ImportFrom, package: str) -> str:
    """The absolute name of the module of `from MODULE import ...`."""
    if not node.level:
        return node.module or ""
    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
    return f"{base}.{node.module}" if node.module else base


def circles(graph: "dict[str, set[str]]") -> "list[list[str]]":
    """Every group of modules that import each other, directly or through others, each
    sorted: the compiler's own cycle finder (Tarjan's algorithm), on the import graph."""
    from svtree.compiler.graph import strongly_connected

    return strongly_connected({name: tuple(sorted(edges)) for name, edges in graph.items()})


LOG_LEVELS = ("debug", "info", "warning", "error", "critical", "exception")


def _is_logger(node: ast.expr) -> bool:
    """`log`, `self.log`, `self.core.log`, ... or one of them `.bind(...)`."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "bind":
        return _is_logger(node.func.value)
    return (isinstance(node, ast.Name) and node.id == "log") or \
        (isinstance(node, ast.Attribute) and node.attr == "log")


def log_calls(directory: str = PACKAGE) -> "list[tuple[str | None, str, str]]":
    """(event, level, "path:line") for every call of a logger's level method
    (`log.info("x", ...)`): the event is the literal first argument, or None when it is
    computed."""
    found = []
    for path in python_files(directory):
        for node in ast.walk(parse(path)):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in LOG_LEVELS and _is_logger(node.func.value)):
                continue
            first = node.args[0] if node.args else None
            literal = isinstance(first, ast.Constant) and isinstance(first.value, str)
            found.append((first.value if literal else None, node.func.attr,
                          f"{os.path.relpath(path, REPO)}:{node.lineno}"))
    return found


def functions(directory: str = PACKAGE):
    """(path, qualified name, node) of every function and method, nested ones too."""
    out = []

    def visit(node: ast.AST, prefix: str, path: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.append((path, prefix + child.name, child))
                visit(child, f"{prefix}{child.name}.", path)
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.", path)
            else:
                visit(child, prefix, path)

    for path in python_files(directory):
        visit(parse(path), "", path)
    return out


def function_lines(node: "ast.FunctionDef | ast.AsyncFunctionDef") -> "tuple[int, int]":
    """The first line (its first decorator's, else the `def`) and the last of a function."""
    first = min([node.lineno] + [d.lineno for d in node.decorator_list])
    return first, node.end_lineno
