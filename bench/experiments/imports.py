#!/usr/bin/env python3
"""What svtree's core imports cost before it can fork its first monitor, by group.

    python3 bench/experiments/imports.py [--runs 7]

Each group is imported in a fresh interpreter after the groups before it (so a module
shared by two groups counts in the first), with `-X importtime`; the table gives the
median ms of the group's top-level imports, and the interpreter's own start with and
without site (`python -c pass`, `python -S -c pass`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GROUPS = [
    ("the monitor (svtree.monitor: states, osutil, wire, selectors, socket)", ["svtree.monitor"]),
    ("the compiler (svtree.compiler: tomllib, dataclasses, plan)", ["svtree.compiler"]),
    ("structlog (svtree.log)", ["svtree.log"]),
    ("the rest of the core (core.main, core, loop, reload, control, cli)",
     ["svtree.cli", "svtree.core.main", "svtree.core.core", "svtree.core.loop", "svtree.core.reload",
      "svtree.core.control"]),
]


def group_ms(before: "list[str]", mods: "list[str]") -> float:
    code = "import sys; sys.path.insert(0, %r)\n" % REPO
    code += "".join(f"import {m}\n" for m in before)
    code += "import sys; sys.stderr.write('---\\n')\n"
    code += "".join(f"import {m}\n" for m in mods)
    r = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=True)
    part = r.stderr.split("---\n", 1)[1]
    total = 0
    for line in part.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cum, name = line.split("|")
        if not name.startswith("  "):  # top level only: its cumulative time holds the nested ones
            total += int(cum)
    return total / 1000


def start_ms(flags: "list[str]") -> float:
    t0 = time.monotonic()
    subprocess.run([sys.executable, *flags, "-c", "pass"], check=True)
    return (time.monotonic() - t0) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    print(f"{'what':72}{'ms':>8}   (median of {args.runs})")
    for label, flags in (("interpreter start, site on (python -c pass)", []),
                         ("interpreter start, no site (python -S -c pass)", ["-S"])):
        print(f"{label:72}{statistics.median(start_ms(flags) for _ in range(args.runs)):8.1f}")
    before: "list[str]" = []
    total = 0.0
    for label, mods in GROUPS:
        v = statistics.median(group_ms(before, mods) for _ in range(args.runs))
        total += v
        print(f"{label:72}{v:8.1f}")
        before += mods
    print(f"{'all of the core':72}{total:8.1f}")


if __name__ == "__main__":
    main()
