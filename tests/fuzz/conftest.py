"""Fuzzing the whole runtime: hypothesis draws service trees and fault schedules as data,
the package tests/fuzz/svfuzz/ writes them to disk and runs the real svtree on them.

The system harness (tests/harness.py: Tree, Svtree, wait_for, /proc helpers) is reused:
svfuzz imports it as `harness`.

Profiles (registered here, applied only to the fuzz tests, never loaded globally so the
unit tests keep their own settings):
  ci    the default, what .ci/run gets: a handful of examples (derandomized: the same ones
        every run), the whole fuzz suite well under 3 minutes on 2 cores
  long  SVTREE_FUZZ_PROFILE=long: 200 examples per test run (about half an hour);
        tests/fuzz/long_run.sh repeats runs until a time budget is spent
"""

from __future__ import annotations

import os
import sys

from hypothesis import HealthCheck, Phase, settings

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import svfuzz  # noqa: E402  (needs HERE on sys.path)

_COMMON = dict(
    deadline=None,  # one example runs a real tree for seconds
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
    # `explain` re-runs the failing example many times: too slow for real processes.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    print_blob=True,
    report_multiple_bugs=False,
)

# ci is derandomized: CI must be reproducible (the same 14 examples on every run, and a
# red CI is a real regression); exploring new trees is the long profile's job. That also
# means no example database for ci (hypothesis refuses one with derandomize).
settings.register_profile("ci", max_examples=14, derandomize=True, **_COMMON)

# SVTREE_FUZZ_DB: a directory of its own for the long profile's example database (a
# planted-bug demonstration must not replay, or save, the failures of other runs).
_LONG = dict(_COMMON)
if os.environ.get("SVTREE_FUZZ_DB"):
    from hypothesis.database import DirectoryBasedExampleDatabase

    _LONG["database"] = DirectoryBasedExampleDatabase(os.environ["SVTREE_FUZZ_DB"])
settings.register_profile("long", max_examples=200, **_LONG)

# Stopping a run (Ctrl-C, or SIGINT/SIGTERM to a background run, whose shell ignored
# SIGINT for it) must go through every example's `finally`, which kills its svtree.
import signal  # noqa: E402


def _interrupt(signum, frame):
    raise KeyboardInterrupt


signal.signal(signal.SIGINT, _interrupt)
signal.signal(signal.SIGTERM, _interrupt)

PROFILE = os.environ.get("SVTREE_FUZZ_PROFILE", "ci")
if PROFILE not in ("ci", "long"):
    raise RuntimeError(f"SVTREE_FUZZ_PROFILE must be ci or long, not {PROFILE!r}")
svfuzz.configure(PROFILE)
