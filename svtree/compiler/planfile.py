"""Plan files written by `svtree compile -o`, loaded by `svtree run --plan`."""

from __future__ import annotations

import os

from svtree.compiler.build import compile_tree, use_s6_overlay
from svtree.compiler.discover import NoTreeError
from svtree.errors import CompileError, PlanFileError
from svtree.plan import Plan, load


def load_plan_file(path: str) -> Plan:
    """Load a plan file, refusing one from another svtree version (plan.load) and one whose
    tree changed since it was compiled: running services from stale settings would be a
    silent lie. The tree is compiled again to compare digests.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise PlanFileError(f"{path}: cannot read plan file: {getattr(e, 'strerror', None) or e}") from None
    plan = load(text, origin=path)
    root = _s6_overlay_root(plan)
    if root is not None:
        use_s6_overlay(root)  # so that this check, and every reload, compile that layout
    again = f"run `svtree compile {plan.source} -o {path}` again"
    try:
        fresh = compile_tree(plan.source)
    except NoTreeError as e:
        raise PlanFileError(f"{path}: the tree it was compiled from is gone ({e.directory}: "
                            f"{e.reason}): {again} with the right DIR") from None
    except CompileError as e:
        raise PlanFileError(f"{path}: the tree {plan.source} changed since it was compiled and is now "
                            f"invalid ({len(e.problems)} {'error' if len(e.problems) == 1 else 'errors'}, see "
                            f"`svtree compile {plan.source}`): "
                            f"fix it, then {again}") from None
    if fresh.source_digest != plan.source_digest:
        raise PlanFileError(f"{path}: stale: the tree {plan.source} changed since it was compiled: {again}")
    return plan


def _s6_overlay_root(plan: Plan) -> "str | None":
    """ROOT, when the plan was compiled from the s6-overlay v2 layout of ROOT.

    Only that layout gives a service a directory other than DIR/NAME (its cont-init.d and
    cont-finish.d scripts run in ROOT). Without such scripts the two layouts compile to
    the same plan, and treating it as a plain tree is exact.
    """
    suffix = os.sep + os.path.join("etc", "services.d")
    if not plan.source.endswith(suffix):
        return None
    if all(s.path == os.path.join(plan.source, s.name) for s in plan.services):
        return None
    return plan.source[: -len(suffix)] or os.sep
