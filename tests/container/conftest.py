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


@pytest.fixture(scope="session")
def engine() -> None:
    started = time.monotonic()
    problem = engine_problem()
    if problem:
        pytest.skip(f"container tests: {problem}")
    TIMINGS["engine check"] = f"{time.monotonic() - started:.1f} s"


@pytest.fixture(autouse=True)
def _needs_engine(engine) -> None:
    """Every test here is skipped, for the one reason found, when podman cannot run it."""


@pytest.fixture(scope="session")
def image(engine) -> str:
    """The example image, built from this checkout (or found in the cache)."""
    return example_image(base_image())


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.write_sep("-", "container images")
        for what, text in TIMINGS.items():
            terminalreporter.write_line(f"{what}: {text}")


@pytest.fixture(scope="module")
def launcher(request):
    launch = Launcher(request.module.__name__)
    yield launch
    launch.remove_all()
