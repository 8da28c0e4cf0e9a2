"""A tree mounted the way Kubernetes mounts a ConfigMap volume reloads correctly.

The kubelet writes every version of the volume into a new hidden directory
(`..2026_...`), points the symlink `..data` at it, and exposes each top-level entry as a
symlink through `..data` (`web -> ..data/web`). An update creates the new directory,
swaps `..data` atomically (a temporary symlink renamed over it) and deletes the old
directory. svtree must see services through the symlinks, ignore the dot entries, and
restart only the service whose files changed.
"""

from __future__ import annotations

import json
import os
import shutil
import textwrap

import pytest

from harness import needs_pidns, wait_for
from svtree.compiler import compile_tree

RUN = "exec sleep 1000\n"


def write_version(tree_dir: str, version: str, runs: "dict[str, str]") -> None:
    """DIR/VERSION/NAME/run for each service, as the kubelet writes a new payload."""
    for name, body in runs.items():
        d = os.path.join(tree_dir, version, name)
        os.makedirs(d)
        path = os.path.join(d, "run")
        with open(path, "w") as f:
            f.write(textwrap.dedent(body))
        os.chmod(path, 0o755)


def mount_like_kubernetes(tree_dir: str, version: str, names) -> None:
    os.symlink(version, os.path.join(tree_dir, "..data"))
    for name in names:
        os.symlink(os.path.join("..data", name), os.path.join(tree_dir, name))


def swap_like_kubernetes(tree_dir: str, old: str, new: str) -> None:
    tmp = os.path.join(tree_dir, "..data_tmp")
    os.symlink(new, tmp)
    os.rename(tmp, os.path.join(tree_dir, "..data"))  # atomic: never a moment without ..data
    shutil.rmtree(os.path.join(tree_dir, old))


def runs(tree, b_body: str) -> "dict[str, str]":
    return {"a": tree.sh(RUN), "b": tree.sh(b_body), "c": tree.sh(RUN)}


def test_compiler_sees_services_through_the_symlinks_and_digests_by_content(tree):
    write_version(tree.dir, "..2026_01_01_00_00_00.1", runs(tree, RUN))
    mount_like_kubernetes(tree.dir, "..2026_01_01_00_00_00.1", "abc")
    before = compile_tree(tree.dir)
    assert [s.name for s in before.services] == ["a", "b", "c"]  # no ..data, no ..2026_*
    assert before.by_name()["a"].run == os.path.join(tree.dir, "a", "run")

    write_version(tree.dir, "..2026_01_01_00_01_00.2", runs(tree, "echo v2 >> $EVENTS\n" + RUN))
    swap_like_kubernetes(tree.dir, "..2026_01_01_00_00_00.1", "..2026_01_01_00_01_00.2")
    after = compile_tree(tree.dir)
    changed = [n for n in "abc" if before.by_name()[n].digest != after.by_name()[n].digest]
    assert changed == ["b"]


@needs_pidns
@pytest.mark.timeout(60)
def test_swapping_data_restarts_only_the_changed_service(tree, run_svtree):
    write_version(tree.dir, "..2026_01_01_00_00_00.1", runs(tree, RUN))
    mount_like_kubernetes(tree.dir, "..2026_01_01_00_00_00.1", "abc")
    sv = run_svtree(args=["--log-format", "json"], watch=True)
    sv.wait_state("ready", "a", "b", "c")
    before = {n: r["pid"] for n, r in sv.status().items()}

    write_version(tree.dir, "..2026_01_01_00_01_00.2", runs(tree, "echo v2 >> $EVENTS\n" + RUN))
    swap_like_kubernetes(tree.dir, "..2026_01_01_00_00_00.1", "..2026_01_01_00_01_00.2")

    wait_for(lambda: ["v2"] in tree.event_lines(), what="the new b to run")
    sv.wait_state("ready", "b")
    after = {n: r["pid"] for n, r in sv.status().items()}
    assert after["a"] == before["a"] and after["c"] == before["c"]
    assert after["b"] != before["b"]
    applied = [json.loads(line) for line in sv.stderr().splitlines()
               if line.startswith("{") and '"reload_applied"' in line]
    assert applied and all(e["changed"] == ["b"] and not e["added"] and not e["removed"]
                           for e in applied)
    assert sv.stop() == 0
