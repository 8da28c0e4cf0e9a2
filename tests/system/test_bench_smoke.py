"""The benchmark's smoke test: `bench/run.py --quick --only svtree` runs every figure and
puts a number for svtree, with its watcher (the default) and with --no-watch, in each
table, under the figure's named keys. svtree only, so it needs no apt-get."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from harness import REPO, needs_pidns

pytestmark = [needs_pidns, pytest.mark.timeout(240)]

NUMBER = (int, float)
BOTH = ("svtree", "svtree --no-watch")
# figure key -> {row: the named values that must be numbers}
EXPECTED = {
    "monitor_memory": {r: ("monitor", "per_service", "pss_per_service") for r in BOTH},
    "total_memory": {r: ("uss10", "pss10", "procs10", "uss100", "pss100", "procs100") for r in BOTH},
    "boot": {r: ("boot1", "boot10", "boot100") for r in BOTH},
    "restart_after_kill": {r: ("ms",) for r in BOTH},
    "ctl_restart": {r: ("ms",) for r in (*BOTH, "svtree -S")},
    "status": {r: ("ms",) for r in (*BOTH, "svtree -S", "svtree socket", "python", "python -S")},
    "shutdown": {r: ("ms", "services_term", "services_killed", "supervisors_killed") for r in BOTH},
    "shutdown_ignoring_term": {r: ("ms", "services_killed") for r in BOTH},
    "orphans": {"svtree": ("clear_ms", "max_unreaped", "rate")},
    "idle_switches": {r: ("switches",) for r in BOTH},
    "reload": {"svtree": ("ms",), "svtree --no-watch": ("ms",)},
}


def test_quick_bench_gives_svtree_a_number_in_every_figure(tmp_path):
    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"
    r = subprocess.run(
        [sys.executable, os.path.join(REPO, "bench", "run.py"), "--quick", "--only", "svtree",
         "--json", str(out_json), "--out", str(out_md)],
        capture_output=True, text=True, timeout=180, cwd=REPO, stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    data = json.loads(out_json.read_text())
    assert data["errors"] == []
    assert data["systems"] == ["svtree"]
    figures = data["figures"]
    for key, rows in EXPECTED.items():
        for row, names in rows.items():
            for name in names:
                value = figures[key]["values"][row][name]
                assert isinstance(value, NUMBER), f"{key} ({row}, {name}): {value!r}"
    # Services that exit on SIGTERM all did, and nothing was left for the kernel to kill.
    for row in BOTH:
        shutdown = figures["shutdown"]["values"][row]
        assert shutdown["services_term"] == 10 and shutdown["services_killed"] == 0, shutdown
    # Issue 18's table reads every one of its lines for svtree from the figures.
    for what, line in figures["summary"].items():
        assert isinstance(line["svtree"], NUMBER), f"summary: {what}: {line!r}"
    # The same tables went to stdout and to the markdown file, each with a svtree row.
    text = out_md.read_text()
    assert text in r.stdout
    for number in ("1", "2", "3", "4", "5", "5b", "6", "7", "8", "9", "10"):
        section = text.split(f"### {number}. ", 1)[1].split("\n### ", 1)[0]
        assert "\n| svtree (watcher on: the default) |" in section, f"figure {number} has no svtree row"
