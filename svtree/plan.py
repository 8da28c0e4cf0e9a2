"""The compiled plan: an immutable value the runtime only applies.

The compiler builds it from a tree on disk; `svtree run` loads it (directly after
compiling, or from a plan file written by `svtree compile -o`). The runtime never reads
service.toml: a reload is compile, then `diff(old, new)` by content digest, then apply.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields

from svtree import __version__
from svtree.definition import S6RC, SCRIPTS, TREE
from svtree.errors import PlanFileError

PLAN_FORMAT = 1
LAYOUTS = ("tree", "s6-overlay")


@dataclass(frozen=True)
class ServiceSpec:
    """One service, every setting resolved (defaults filled in, signal as a number)."""

    name: str
    path: str  # absolute path of the service directory (cwd of run and finish)
    type: str = "longrun"  # "longrun" | "oneshot"
    run: str = ""  # absolute path of the run script
    finish: "str | None" = None  # absolute path of the finish script, if any
    down: bool = False  # a `down` file: not started at boot
    depends_on: "tuple[str, ...]" = ()
    restart: str = "always"  # "always" | "on-failure" | "never"
    restart_delay: float = 1.0
    restart_delay_max: float = 30.0
    critical: bool = False
    stop_signal: int = 15
    stop_timeout: float = 10.0
    finish_timeout: float = 5.0
    notification_fd: "int | None" = None
    ready_command: "str | None" = None
    ready_interval: float = 0.2
    ready_timeout: float = 60.0
    environment: "tuple[tuple[str, str], ...]" = ()
    oom_score_adj: "int | None" = None  # None: the value svtree started with
    uid: "int | None" = None  # resolved from `user`
    gid: "int | None" = None  # resolved from `group`, else the user's primary group
    groups: "tuple[int, ...] | None" = None  # supplementary groups of `user`
    # The program (and its arguments) that run and finish are handed to, when they are
    # not programs themselves: ("/usr/bin/execlineb", "-P") for an s6-rc oneshot, whose
    # `up` and `down` files are execline command lines. Empty: run and finish are execed.
    interpreter: "tuple[str, ...]" = ()
    # The service whose stdin reads this one's stdout (its logger: a `log/` subdirectory,
    # or s6-rc's producer-for). The logger is a service of its own in the plan, and this
    # one depends on it, so it starts before its producer and stops after it.
    logger: "str | None" = None
    # Its failure holds nothing back: what depends on it starts even when it failed. The
    # cont-init.d scripts of an s6-overlay tree whose S6_BEHAVIOUR_IF_STAGE2_FAILS is 0
    # or 1 (s6-overlay runs them all, whatever each one exits, then the services).
    may_fail: bool = False
    digest: str = ""  # content hash: the definition files (svtree/definition.py) and the settings

    @property
    def has_readiness(self) -> bool:
        return self.notification_fd is not None or self.ready_command is not None


@dataclass(frozen=True)
class GlobalSettings:
    """DIR/svtree.toml."""

    kill_grace: float = 3.0
    main_stop_timeout: float = 10.0
    log_format: str = "console"  # "console" | "json"
    output: str = "prefix"  # "prefix" | "raw"
    reload_timeout: float = 30.0  # seconds a reload's compile may take
    http: "str | None" = None  # "ADDR:PORT" of the HTTP endpoint (svtree/address.py); None: off
    log_buffer: int = 1000  # lines of output kept per service for `ctl logs`
    # Set from s6-overlay's S6_* variables (svtree.compiler.s6env), not svtree.toml keys.
    # boot_timeout: seconds the boot may take (every service wanted up ready, every oneshot
    # done) before boot_failure applies; None: no limit.
    boot_timeout: "float | None" = None
    # What a failed boot does (a oneshot failed, or boot_timeout passed): "stop" the tree
    # and exit 1 (svtree's rule), or go on without what failed and start the main
    # command: "warn" (with a warning) or "continue" (silently).
    boot_failure: str = "stop"
    # TERM, INT and QUIT go to the main command while it runs, instead of starting the
    # shutdown (which its exit then starts).
    main_receives_signals: bool = False
    # A directory to fill with svtree's environment before the boot, one file per
    # variable, for s6-overlay's with-contenv and printcontenv; None: none.
    container_environment: "str | None" = None


@dataclass(frozen=True)
class Plan:
    source: str  # absolute path of the tree directory (ROOT/etc/services.d for s6-overlay)
    services: "tuple[ServiceSpec, ...]"  # sorted by name
    levels: "tuple[tuple[str, ...], ...]"  # start order: each level depends only on earlier ones
    settings: GlobalSettings = field(default_factory=GlobalSettings)
    source_digest: str = ""  # digest over the whole tree, to refuse stale plan files
    # Which layout the plan was compiled from, so that a reload or a plan file's staleness
    # check compiles the same one again (compiler.recompile): "tree" (source is DIR) or
    # "s6-overlay" (root is ROOT, whose etc/cont-init.d and etc/cont-finish.d hold scripts).
    layout: str = "tree"
    root: str = ""
    # s6-rc bundles of an s6-overlay tree: (name, the services it stands for), sorted.
    bundles: "tuple[tuple[str, tuple[str, ...]], ...]" = ()
    # The S6_* variables the plan was compiled with (name, value): part of source_digest.
    s6_variables: "tuple[tuple[str, str], ...]" = ()
    warnings: "tuple[str, ...]" = ()  # one line each, naming the file or variable

    def watch_roots(self) -> "tuple[tuple[str, str], ...]":
        """What the watcher watches: (kind, directory) for each directory whose changes may
        change this plan, the kind saying which files in it count (svtree.definition's
        TREE, SCRIPTS, S6RC). For an s6-overlay tree, those of its directories that exist
        (a watch on a missing directory fails); the tree's own directory always.
        """
        if self.layout != "s6-overlay":
            return ((TREE, self.source),)
        etc = os.path.join(self.root, "etc")
        roots = ((TREE, self.source), (SCRIPTS, os.path.join(etc, "cont-init.d")),
                 (SCRIPTS, os.path.join(etc, "cont-finish.d")),
                 (S6RC, os.path.join(etc, "s6-overlay", "s6-rc.d")),
                 (S6RC, os.path.join(etc, "s6-overlay", "user-bundles.d")))
        return tuple((kind, d) for kind, d in roots if os.path.isdir(d))

    def watch_paths(self) -> "tuple[str, ...]":
        """The directories of watch_roots()."""
        return tuple(d for _, d in self.watch_roots())

    def pipelines(self) -> "tuple[tuple[str, ...], ...]":
        """Each chain of services whose stdout feeds the next one's stdin, from its first
        producer to its last logger, sorted (s6-rc allows several producers per logger:
        each producer starts a chain of its own)."""
        loggers = {s.name: s.logger for s in self.services if s.logger}
        fed = set(loggers.values())
        chains = []
        for first in sorted(set(loggers) - fed):
            chain = [first]
            while chain[-1] in loggers and loggers[chain[-1]] not in chain:
                chain.append(loggers[chain[-1]])
            chains.append(tuple(chain))
        return tuple(chains)

    def by_name(self) -> "dict[str, ServiceSpec]":
        return {s.name: s for s in self.services}

    def dependents(self) -> "dict[str, tuple[str, ...]]":
        """Reverse edges: for each service, the services that depend on it. Computed
        once per plan (a plan never changes); callers must not mutate the result."""
        cached = self.__dict__.get("_dependents")
        if cached is None:
            rev: "dict[str, list[str]]" = {s.name: [] for s in self.services}
            for s in self.services:
                for dep in s.depends_on:
                    rev[dep].append(s.name)
            cached = {k: tuple(sorted(v)) for k, v in rev.items()}
            object.__setattr__(self, "_dependents", cached)  # a cache, not state
        return cached


@dataclass(frozen=True)
class PlanDiff:
    added: "tuple[str, ...]"
    removed: "tuple[str, ...]"
    changed: "tuple[str, ...]"
    unchanged: "tuple[str, ...]"

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


def diff(old: Plan, new: Plan) -> PlanDiff:
    """What a reload must do: compare services by name and content digest."""
    a, b = old.by_name(), new.by_name()
    return PlanDiff(
        added=tuple(sorted(set(b) - set(a))),
        removed=tuple(sorted(set(a) - set(b))),
        changed=tuple(sorted(n for n in set(a) & set(b) if a[n].digest != b[n].digest)),
        unchanged=tuple(sorted(n for n in set(a) & set(b) if a[n].digest == b[n].digest)),
    )


# --- plan files -----------------------------------------------------------------------

def to_dict(plan: Plan) -> dict:
    return {
        "format": PLAN_FORMAT,
        "svtree": __version__,
        "source": plan.source,
        "source_digest": plan.source_digest,
        "layout": plan.layout,
        "root": plan.root,
        "settings": asdict(plan.settings),
        "levels": [list(level) for level in plan.levels],
        "services": [asdict(s) for s in plan.services],
        "bundles": [[name, list(members)] for name, members in plan.bundles],
        "s6_variables": [list(pair) for pair in plan.s6_variables],
        "warnings": list(plan.warnings),
    }


def _tuplify(value):
    if isinstance(value, list):
        return tuple(_tuplify(v) for v in value)
    return value


def from_dict(data: dict) -> Plan:
    names = {f.name for f in fields(ServiceSpec)}
    services = []
    for raw in data["services"]:
        unknown = set(raw) - names
        if unknown:
            raise PlanFileError(f"unknown service field(s) {sorted(unknown)}")
        services.append(ServiceSpec(**{k: _tuplify(v) for k, v in raw.items()}))
    # Absent in plan files of earlier versions, which knew only plain trees.
    layout, root = data.get("layout", "tree"), data.get("root", "")
    if layout not in LAYOUTS:
        raise PlanFileError(f"unknown layout {layout!r} (svtree knows {', '.join(LAYOUTS)})")
    if layout == "s6-overlay" and not root:
        raise PlanFileError("an s6-overlay plan without its root")
    return Plan(
        source=data["source"],
        services=tuple(services),
        levels=tuple(tuple(level) for level in data["levels"]),
        settings=GlobalSettings(**data["settings"]),
        source_digest=data.get("source_digest", ""),
        layout=layout,
        root=root,
        bundles=_tuplify(data.get("bundles", [])),
        s6_variables=_tuplify(data.get("s6_variables", [])),
        warnings=_tuplify(data.get("warnings", [])),
    )


def dump(plan: Plan) -> str:
    return json.dumps(to_dict(plan), indent=1, sort_keys=True) + "\n"


def load(text: str, origin: str = "plan file") -> Plan:
    """Load a plan file; refuse one written by another format or svtree version."""
    try:
        data = json.loads(text)
    except ValueError as e:
        raise PlanFileError(f"{origin}: not a plan file ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict) or "format" not in data:
        raise PlanFileError(f"{origin}: not a plan file (run `svtree compile DIR -o FILE`)")
    if data["format"] != PLAN_FORMAT or data.get("svtree") != __version__:
        raise PlanFileError(
            f"{origin}: written by svtree {data.get('svtree')} (plan format {data['format']}), "
            f"this is svtree {__version__}: compile it again with `svtree compile -o`"
        )
    try:
        return from_dict(data)
    except (KeyError, TypeError, PlanFileError) as e:
        raise PlanFileError(f"{origin}: damaged plan file ({e}): compile it again") from None
