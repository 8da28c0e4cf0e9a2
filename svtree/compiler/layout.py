"""Which layout a tree is in, chosen in one place, and compiling it.

svtree runs its own layout (DIR: one directory per service) or s6-overlay's layout of an
image (ROOT: etc/cont-init.d, etc/services.d, etc/s6-overlay/s6-rc.d, ...). `choose`
makes the choice for `svtree run` and `svtree compile` alike, from what the command line
gave: --s6-overlay ROOT; else s6-overlay's layout of / when nothing names a tree and /
looks like s6-overlay's (s6overlay.automatic_root); else DIR (build.find_tree_dir).
`compile_source` compiles the choice; `recompile` compiles again the layout a plan came
from (a reload, the staleness check of a plan file).

This module sits above build.py (plain trees) and s6overlay.py (which builds on
build.py): nothing below imports it, so the compiler's imports have no circle. It loads
s6overlay only when it needs it: compiling a plain tree does not import s6-overlay's
modules.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from svtree.compiler.build import compile_tree, find_tree_dir
from svtree.compiler.files import DefinitionFiles
from svtree.plan import Plan

TREE, S6_OVERLAY = "tree", "s6-overlay"  # the layouts, as Plan.layout names them


@dataclass(frozen=True)
class Source:
    """What to compile: a layout and its directory (DIR or ROOT, absolute)."""

    layout: str
    path: str
    automatic: bool = False  # s6-overlay's layout, chosen without --s6-overlay

    @property
    def tree_dir(self) -> str:
        """The directory of services: DIR, or ROOT/etc/services.d."""
        if self.layout == TREE:
            return self.path
        from svtree.compiler.s6overlay import SERVICES_DIR

        return os.path.join(self.path, SERVICES_DIR)


def choose(directory: "str | None", s6_overlay: "str | None") -> Source:
    """The tree a command runs or compiles: `s6_overlay` (--s6-overlay ROOT), else
    s6-overlay's layout of / when it is to be chosen by itself, else DIR (`directory`,
    $SVTREE_DIR, ./services.d, /etc/services.d)."""
    if s6_overlay is not None:
        return Source(S6_OVERLAY, os.path.abspath(s6_overlay))
    from svtree.compiler import s6overlay

    root = s6overlay.automatic_root(directory)
    if root is not None:
        return Source(S6_OVERLAY, os.path.abspath(root), automatic=True)
    return Source(TREE, find_tree_dir(directory))


def compile_source(source: Source, files: "DefinitionFiles | None" = None) -> Plan:
    """The plan of `source`; raises NoTreeError or CompileError as compile_tree does."""
    if source.layout == S6_OVERLAY:
        from svtree.compiler.s6overlay import compile_s6_overlay

        return compile_s6_overlay(source.path, files=files)
    if source.layout != TREE:
        raise ValueError(f"unknown layout {source.layout!r}")
    return compile_tree(source.path, files)


def recompile(plan: Plan, files: "DefinitionFiles | None" = None) -> Plan:
    """Compile again what `plan` was compiled from, in the same layout: a reload, and the
    staleness check of a plan file, compare the result with `plan`. The layout is the
    plan's own (plan files record it), never guessed from its paths."""
    if plan.layout == S6_OVERLAY:
        return compile_source(Source(S6_OVERLAY, plan.root), files)
    if plan.layout != TREE:
        raise ValueError(f"unknown plan layout {plan.layout!r}")
    return compile_source(Source(TREE, plan.source), files)
