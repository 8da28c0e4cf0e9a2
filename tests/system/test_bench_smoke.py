"""The benchmark's smoke test: `bench/run.py --quick --only svtree` runs every figure and
puts a svtree number in each table. svtree only, so it needs no apt-get."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, needs_pidns

pytestmark = [needs_pidns, pytest.mark.timeout(240)]

NUMBER = (int, float)


def svtree_numbers(fig: str, values: dict) -> "dict[str, object]":
    """The svtree cells of one figure, by name."""
    if fig == "1":
        return {"USS per service": values["svtree"]["per_service_kb"],
                "USS per monitor": values["svtree"]["per_monitor_kb"],
                "PSS per service": values["svtree"]["pss_per_service_kb"]}
    if fig == "8":
        return {"clear ms": values["svtree"]["clear_ms"], "max unreaped": values["svtree"]["max_unreaped"]}
    if fig == "10":
        return {"watcher": values["svtree-watch"], "ctl reload": values["svtree"]}
    if fig in ("2", "9"):
        return {"no watch": values["svtree"], "watcher on": values["svtree (watcher on)"]}
    if fig == "5s":
        return {"ctl status": values["svtree"], "socket alone": values["svtree-socket"]}
    return {"svtree": values["svtree"]}


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
    for fig in ("1", "2", "3", "4", "5", "5s", "6", "7", "8", "9", "10"):
        for what, value in svtree_numbers(fig, figures[fig]["values"]).items():
            assert isinstance(value, NUMBER), f"figure {fig} ({what}): {value!r}"
    # The same tables went to stdout and to the markdown file, each with a svtree row.
    text = out_md.read_text()
    assert text in r.stdout
    for n in range(1, 11):
        section = text.split(f"### {n}.", 1)[1].split("\n### ", 1)[0]
        assert "\n| svtree" in section, f"figure {n} has no svtree row"
