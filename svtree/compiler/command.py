"""`svtree compile [DIR] [-o FILE] [--json]`: validate the tree, print the plan, write it."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import fields

from svtree.compiler.discover import NoTreeError
from svtree.compiler.layout import S6_OVERLAY, Source, choose, compile_source
from svtree.compiler.settings import GLOBAL_SETTINGS, SERVICE_SETTINGS, toml_literal
from svtree.compiler.shutdown import describe_budget, worst_case_shutdown
from svtree.errors import CompileError, display_path, invalid_tree, plural
from svtree.exitcodes import FAILURE, OK
from svtree.plan import Plan, ServiceSpec, dump, to_dict

COMMAND = "svtree compile"
# Shown on their own (as flags or columns), not as "key = value".
_SHOWN_APART = ("type", "depends_on", "critical")


def describe_service(spec: ServiceSpec) -> str:
    """Flags, dependencies and every setting that differs from its default."""
    finish = "down" if spec.interpreter else "finish"  # an s6-rc oneshot's down is its finish
    parts = [flag for flag, on in (("down", spec.down), ("critical", spec.critical),
                                   (finish, spec.finish is not None),
                                   ("may fail", spec.may_fail)) if on]
    if spec.interpreter:
        parts.append(f"run with {' '.join(spec.interpreter)}")
    if spec.logger:
        parts.append(f"logger = {toml_literal(spec.logger)}")
    if spec.depends_on:
        parts.append(f"depends_on = {toml_literal(spec.depends_on)}")
    for setting in SERVICE_SETTINGS:
        if setting.field and setting.name not in _SHOWN_APART:
            value = getattr(spec, setting.field)
            if value != setting.default:
                parts.append(f"{setting.name} = {setting.show(value)}")
    if spec.uid is not None:
        parts.append(f"uid = {spec.uid}")
    if spec.gid is not None:
        parts.append(f"gid = {spec.gid}")
    if spec.groups is not None and spec.groups != (spec.gid,):
        parts.append(f"groups = {toml_literal(spec.groups)}")
    return ", ".join(parts)


def render_plan(plan: Plan) -> str:
    """The plan as people read it: settings, then services level by level, then the start order."""
    what = f"s6-overlay tree of {plan.root}" if plan.layout == "s6-overlay" else f"tree {plan.source}"
    lines = [f"{what}: {plural(len(plan.services), 'service')} "
             f"in {plural(len(plan.levels), 'start level')}"]
    changed = [f"{s.name} = {s.show(getattr(plan.settings, s.field))}"
               for s in GLOBAL_SETTINGS if getattr(plan.settings, s.field) != s.default]
    label = "svtree.toml and S6_* variables" if plan.layout == "s6-overlay" else "svtree.toml"
    lines.append(f"{label}: " + (", ".join(changed) if changed else "defaults"))
    if plan.layout == "s6-overlay":
        lines.append("S6_* variables: " + (" ".join(f"{n}={v}" for n, v in plan.s6_variables) or "none"))
        extra = [f"{f.name} = {toml_literal(getattr(plan.settings, f.name))}" for f in fields(plan.settings)
                 if f.name not in {s.field for s in GLOBAL_SETTINGS}]
        lines.append("s6-overlay settings: " + ", ".join(extra))
    for name, members in plan.bundles:
        lines.append(f"bundle {name}: {' '.join(members) or '(empty)'}")
    for chain in plan.pipelines():
        lines.append("pipeline: " + " -> ".join(chain))
    lines.append(describe_budget(worst_case_shutdown(plan)))
    by_name = plan.by_name()
    width = max((len(name) for name in by_name), default=0)
    for number, level in enumerate(plan.levels):
        lines += ["", f"level {number}:"]
        for name in level:
            spec = by_name[name]
            lines.append(f"  {name:<{width}}  {spec.type:<7}  {describe_service(spec)}".rstrip())
    lines += ["", "start order: " + (" | ".join(" ".join(level) for level in plan.levels) or "nothing to start")]
    return "\n".join(lines) + "\n"


def _write(path: str, text: str) -> None:
    """Write whole or not at all: a half-written plan file must never be loadable."""
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        with open(temporary, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def compile_command(directory: "str | None", output: "str | None", as_json: bool,
                    grace: "float | None" = None, s6_overlay: "str | None" = None) -> int:
    """Exit 0 when the tree is valid, 1 when it is invalid or missing (2, usage, is cli.py's).

    The plan goes to stdout (JSON with --json), ending with the worst-case shutdown time.
    With -o FILE the plan file is written and a line says so: on stdout, or on stderr with
    --json so that stdout stays one JSON value. With `grace` (seconds, --grace), a
    worst-case shutdown longer than that is a warning on stderr; the exit stays 0, since
    the tree is valid and the grace time is the orchestrator's to raise.
    `s6_overlay` is ROOT, for s6-overlay's layouts (DIR must then be None). The plan's
    warnings (S6_* variables and s6-rc files svtree ignores) go to stderr.
    """
    plan = _compiled(choose(directory, s6_overlay))
    if plan is None:
        return FAILURE
    for warning in plan.warnings:
        sys.stderr.write(f"{COMMAND}: warning: {warning}\n")
    budget = worst_case_shutdown(plan)
    if as_json:
        data = to_dict(plan)
        data["worst_case_shutdown"] = round(budget.total, 3)
        data["shutdown_chain"] = [name for name, _ in budget.chain]
        data["pipelines"] = [list(chain) for chain in plan.pipelines()]
        sys.stdout.write(json.dumps(data, indent=1, sort_keys=True) + "\n")
    else:
        sys.stdout.write(render_plan(plan))
    if grace is not None and budget.total > grace:
        sys.stdout.flush()
        sys.stderr.write(
            f"{COMMAND}: warning: the worst-case shutdown ({budget.total:g} s) exceeds the grace "
            f"time of {grace:g} s: processes still running then get SIGKILL from the container "
            "runtime, finish scripts included (raise terminationGracePeriodSeconds or "
            "`docker stop --time`, or lower stop_timeout, finish_timeout, kill_grace or "
            "main_stop_timeout)\n")
    if output and not _write_plan(plan, output, said=sys.stderr if as_json else sys.stdout):
        return FAILURE
    sys.stdout.flush()
    return OK


def _compiled(source: Source) -> "Plan | None":
    """The plan of `source`, or None once why there is none is printed."""
    s6 = source.layout == S6_OVERLAY
    try:
        return compile_source(source)
    except NoTreeError as e:
        hint = ("ROOT needs etc/services.d or etc/s6-overlay/s6-rc.d" if s6
                else "give DIR, set $SVTREE_DIR, or create ./services.d")
        sys.stderr.write(f"{COMMAND}: no tree at {display_path(source.tree_dir)}: {e.reason} ({hint})\n")
    except CompileError as e:
        where = f"the s6-overlay tree of {source.path}" if s6 else display_path(source.tree_dir)
        sys.stderr.write(invalid_tree(COMMAND, e.problems, where))
    return None


def _write_plan(plan: Plan, output: str, said) -> bool:
    """-o FILE: write the plan file, and say so on `said`; False once a failure is printed."""
    try:
        _write(output, dump(plan))
    except OSError as e:
        sys.stderr.write(f"{COMMAND}: cannot write {output}: {e.strerror or e}\n")
        return False
    said.write(f"{COMMAND}: wrote the plan to {output} (use it with `svtree run --plan {output}`)\n")
    return True
