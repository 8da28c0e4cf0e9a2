"""Plan files written by `svtree compile -o`, loaded by `svtree run --plan`."""

from __future__ import annotations

from svtree.compiler.discover import NoTreeError
from svtree.compiler.files import DefinitionFiles
from svtree.compiler.layout import recompile
from svtree.errors import CompileError, PlanFileError, plural
from svtree.plan import Plan, load


def load_plan_file(path: str, files: "DefinitionFiles | None" = None) -> Plan:
    """Load a plan file, refusing one from another svtree version (plan.load) and one whose
    tree changed since it was compiled: running services from stale settings would be a
    silent lie. The tree is compiled again, in the layout the plan records, to compare
    digests.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise PlanFileError(f"{path}: cannot read plan file: {getattr(e, 'strerror', None) or e}") from None
    plan = load(text, origin=path)
    s6 = plan.layout == "s6-overlay"
    what = f"--s6-overlay {plan.root}" if s6 else plan.source  # the argument that compiles it
    tree = f"the s6-overlay tree of {plan.root}" if s6 else f"the tree {plan.source}"
    again = f"run `svtree compile {what} -o {path}` again"
    try:
        fresh = recompile(plan, files)
    except NoTreeError as e:
        raise PlanFileError(f"{path}: the tree it was compiled from is gone ({e.directory}: "
                            f"{e.reason}): {again} with the right {'ROOT' if s6 else 'DIR'}") from None
    except CompileError as e:
        raise PlanFileError(f"{path}: {tree} changed since it was compiled and is now "
                            f"invalid ({plural(len(e.problems), 'error')}, see "
                            f"`svtree compile {what}`): "
                            f"fix it, then {again}") from None
    if fresh.source_digest != plan.source_digest:
        raise PlanFileError(f"{path}: stale: {tree} changed since it was compiled: {again}")
    return plan
