"""Fixtures of the container suite; the harness is podman_harness.py (its docstring says
what the suite needs, how images are cached and how containers are named and removed)."""

from __future__ import annotations

import os
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from podman_harness import TIMINGS, Launcher, base_image, engine_problem, example_image  # noqa: E402


_ENGINE: "list[str | None]" = []  # why podman cannot run the suite, found once per session


def pytest_runtest_setup(item) -> None:
    """Skip every test here, before its fixtures, when podman cannot run the suite. The
    skips are all raised on one line with one reason: `pytest -ra` folds them into one."""
    if not _ENGINE:
        started = time.monotonic()
        _ENGINE.append(engine_problem())
        if not _ENGINE[0]:
            TIMINGS["engine check"] = f"{time.monotonic() - started:.1f} s"
    if _ENGINE[0]:
        pytest.skip(f"container tests: {_ENGINE[0]}")


@pytest.fixture(scope="session")
def image() -> str:
    """The example image, built from this checkout (or found in the cache)."""
    return example_image(base_image())


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.write_sep("-", "container tests")
        for what, text in TIMINGS.items():
            terminalreporter.write_line(f"{what}: {text}")


@pytest.fixture(scope="module")
def launcher(request):
    launch = Launcher(request.module.__name__.rpartition(".")[2].removeprefix("test_"))
    yield launch
    launch.remove_all()
