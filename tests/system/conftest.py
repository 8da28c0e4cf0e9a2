"""Fixtures of tests/system; the harness itself (Tree, Svtree, wait_for, /proc helpers) is
tests/harness.py."""

from __future__ import annotations

import pytest

from harness import Svtree, Tree


@pytest.fixture
def tree():
    t = Tree()
    yield t
    t.cleanup()


@pytest.fixture
def run_svtree(tree):
    started: "list[Svtree]" = []

    def start(*args, **kw) -> Svtree:
        s = Svtree(tree, *args, **kw)
        started.append(s)
        return s

    start.started = started
    yield start
    for s in started:
        s.kill()
    # The core guards every event and logs a bug as `internal_error` instead of dying:
    # no test may pass while one was logged.
    for s in started:
        err = s.stderr()
        assert "internal_error" not in err, err[err.index("internal_error") - 200:][:3000]
