"""Helpers to build service trees for compiler tests, in temporary directories under /tmp.

(Trees are never built inside the checkout: creating files on the work disk is slow.)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

import pytest

from svtree.compiler import compile_tree
from svtree.errors import CompileError, Problem

RUN = "#!/bin/sh\nexec sleep 1000\n"
EXECUTABLE = ("run", "finish")


@contextlib.contextmanager
def scratch_dir():
    """A fresh directory under /tmp (usable inside hypothesis tests, unlike fixtures)."""
    path = tempfile.mkdtemp(prefix="svtree-test-", dir="/tmp" if os.path.isdir("/tmp") else None)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def scratch():
    with scratch_dir() as path:
        yield path


def write_file(path: str, content, mode: "int | None" = None) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = content.encode() if isinstance(content, str) else content
    with open(path, "wb") as f:
        f.write(data)
    if mode is not None:
        os.chmod(path, mode)


def make_service(tree: str, name: str, files: "dict | None" = None) -> str:
    """DIR/NAME with a valid run unless `files` says otherwise.

    files: relative path -> content (str or bytes), or (content, mode), or None to leave the
    file out (e.g. {"run": None}). run and finish are made executable unless a mode is given.
    A path ending in "/" makes a directory.
    """
    service = os.path.join(tree, name)
    os.makedirs(service, exist_ok=True)
    files = dict(files or {})
    files.setdefault("run", RUN)
    for rel, content in files.items():
        if content is None:
            continue
        path = os.path.join(service, rel)
        if rel.endswith("/"):
            os.makedirs(path, exist_ok=True)
            continue
        if isinstance(content, tuple):
            content, mode = content
        else:
            mode = 0o755 if rel in EXECUTABLE else 0o644
        write_file(path, content, mode)
    return service


def make_tree(root: str, services: "dict[str, dict | None]", global_toml: "str | None" = None,
              name: str = "services.d") -> str:
    tree = os.path.join(root, name)
    os.makedirs(tree, exist_ok=True)
    for service, files in services.items():
        make_service(tree, service, files)
    if global_toml is not None:
        write_file(os.path.join(tree, "svtree.toml"), global_toml)
    return tree


def problems_of(tree: str) -> "tuple[Problem, ...]":
    with pytest.raises(CompileError) as info:
        compile_tree(tree)
    assert info.value.problems, "CompileError without problems"
    return info.value.problems


def only_problem(tree: str, where: "str | None" = None) -> Problem:
    """The tree must be invalid for exactly one reason: extra, spurious problems fail too.

    `where`: the file the problem must name, relative to the tree.
    """
    problems = problems_of(tree)
    assert len(problems) == 1, "\n".join(p.render() for p in problems)
    if where is not None:
        assert problems[0].path == os.path.join(tree, where)
    return problems[0]
