"""What a tree's definition is: the one rule the compiler and the watcher share. A leaf.

A service's definition is its definition files: `run`, `finish`, `down`, `service.toml`,
the s6 files (`notification-fd`, `type`, `timeout-finish`, `down-signal`),
`dependencies.d/` and the names in it, and `log/` (its logger's own definition, by the
same rule). A tree's is `svtree.toml` and its service directories. Everything else a
service directory holds (a pid file, a cache, `state.txt`: what `run` writes into its
working directory) is data: it never changes a plan, so the compiler never reads it and
the watcher never reports it.

s6-overlay v3's s6-rc source directories have their own files (SERVICE_RC: `up`, `down`
as a command line, the timeouts, `producer-for`, `contents.d/`...; `data/` and `env/`
are data), and a cont-init.d or cont-finish.d holds one script per entry.

Names starting with `.` and editor leftovers are never part of a tree. Names starting
with `..` are transparent instead: Kubernetes writes a ConfigMap volume into hidden
`..2026_...` directories and swaps the `..data` symlink the visible names point through,
so `..2026_x/web/run` is `web/run` and the swap of `..data` is a change of everything.

The compiler (discover, digest) and the watcher (a process of its own, forked by
the core) both import this module, so they cannot disagree about what counts.
"""

from __future__ import annotations

GLOBAL_FILE = "svtree.toml"
RUN, FINISH, DOWN, SERVICE_FILE = "run", "finish", "down", "service.toml"
DEPENDENCIES_DIR = "dependencies.d"  # one file per dependency, read by name only
LOGGER_DIR = "log"  # s6: the logger's service directory, a definition of its own
EDITOR_LEFTOVERS = ("~", ".swp", ".swo", ".swx", ".tmp")  # vim, emacs, sed -i, most editors
PAYLOAD_PREFIX = ".."  # Kubernetes' atomic writer: ..data, ..2026_01_01_00_00_00.1

CONTENT = "content"  # its bytes and mode are definition (run, service.toml, ...)
NAME = "name"  # only that it is there: `down` (any content), an entry of dependencies.d/
DIRECTORY = "directory"  # its entries are, each by the same rule: dependencies.d/, log/


class Rule:
    """The definition files of one kind of service directory. Entries of `lists` count
    by name; `nested` directories are definitions of their own by the same rule."""

    def __init__(self, content: "frozenset[str]", names: "frozenset[str]" = frozenset(),
                 lists: "frozenset[str]" = frozenset(), nested: "frozenset[str]" = frozenset()) -> None:
        self.content = content
        self.names = names
        self.lists = lists
        self.nested = nested

    def entry(self, parts: "tuple[str, ...]") -> "str | None":
        """What a service's definition takes from the entry at `parts` (relative to the
        service directory, `..` payload components allowed): CONTENT, NAME, DIRECTORY,
        or None when the entry is data."""
        parts = _visible(parts)
        if not parts:
            return None
        while len(parts) > 1 and parts[0] in self.nested:
            parts = parts[1:]
        if len(parts) == 1:
            name = parts[0]
            if name in self.lists or name in self.nested:
                return DIRECTORY
            if name in self.names:
                return NAME
            return CONTENT if name in self.content else None
        return NAME if len(parts) == 2 and parts[0] in self.lists else None

    def counts(self, parts: "tuple[str, ...]") -> bool:
        """Whether a change at `parts` (relative to a service directory) can change the
        service's definition; () is the directory itself (created, removed, swapped)."""
        visible = _visible(parts)
        return visible == () or (visible is not None and self.entry(parts) is not None)


# A service of a tree (svtree's, s6's, s6-overlay v2's services.d). The s6 files must be
# the s6_file spellings of the settings table (tests/unit/test_definition.py checks it).
S6_FILES = ("notification-fd", "type", "timeout-finish", "down-signal")
SERVICE = Rule(content=frozenset({RUN, FINISH, SERVICE_FILE, *S6_FILES}), names=frozenset({DOWN}),
               lists=frozenset({DEPENDENCIES_DIR}), nested=frozenset({LOGGER_DIR}))
# A service (longrun, oneshot or bundle) of s6-rc's source format, s6-overlay v3's
# s6-rc.d and user-bundles.d; the files compiler/s6rc.py reads (its tables of supported
# and ignored files; tests/unit/test_definition.py checks them). Ignored files count by
# name: svtree warns about each.
S6RC_IGNORED = ("flag-essential", "flag-recommended", "lock-fd", "max-death-tally", "reload",
                "instance", "instances")
SERVICE_RC = Rule(
    content=frozenset({"type", RUN, FINISH, "up", DOWN, SERVICE_FILE, "notification-fd", "timeout-up",
                       "timeout-kill", "timeout-down", "timeout-finish", "down-signal", "producer-for",
                       "consumer-for", "pipeline-name", "dependencies", "contents"}),
    names=frozenset(S6RC_IGNORED),
    lists=frozenset({DEPENDENCIES_DIR, "contents.d"}))


def is_ignored(name: str) -> bool:
    """Hidden entries (`.x`, `..data` too) and editor leftovers are never part of a tree."""
    return name.startswith(".") or name.endswith(EDITOR_LEFTOVERS)


def _visible(parts: "tuple[str, ...]") -> "tuple[str, ...] | None":
    """The parts with Kubernetes' `..` payload components dropped; None when one of the
    rest is ignored (a hidden name, an editor leftover)."""
    out = tuple(p for p in parts if not p.startswith(PAYLOAD_PREFIX))
    return None if any(is_ignored(p) for p in out) else out


def service_entry(parts: "tuple[str, ...]") -> "str | None":
    """SERVICE.entry: what a tree's service takes from the entry at `parts`."""
    return SERVICE.entry(parts)


def in_service(parts: "tuple[str, ...]") -> bool:
    """SERVICE.counts: whether a change at `parts` can change a tree's service."""
    return SERVICE.counts(parts)


def in_tree(parts: "tuple[str, ...]", is_plain_file: "bool | None" = None,
            rule: Rule = SERVICE) -> bool:
    """Whether the path `parts` (relative to a directory of service directories: a tree,
    or with SERVICE_RC an s6-rc.d) can change a plan: svtree.toml, a service directory
    (created, removed, renamed), or a definition file in one. `is_plain_file`: whether a
    direct entry is a file that is not a directory (None when unknown, e.g. removed): such
    an entry is not a service, and only svtree.toml among them counts."""
    parts = _visible(parts)
    if parts is None:
        return False
    if not parts:
        return True  # the tree itself, or a `..` payload swap
    if len(parts) == 1:
        return parts[0] == GLOBAL_FILE or not is_plain_file
    return rule.counts(parts[1:])


def in_scripts(parts: "tuple[str, ...]") -> bool:
    """Whether the path `parts` (relative to an s6-overlay cont-init.d or cont-finish.d)
    can change a plan: each direct entry is a script."""
    parts = _visible(parts)
    return parts is not None and len(parts) <= 1


# The kinds of directories a plan is compiled from (Plan.watch_roots), each with its rule.
TREE, SCRIPTS, S6RC = "tree", "scripts", "s6-rc"


def in_root(kind: str, parts: "tuple[str, ...]", is_plain_file: "bool | None" = None) -> bool:
    """Whether a change at `parts`, relative to a directory of that kind, can change a plan."""
    if kind == SCRIPTS:
        return in_scripts(parts)
    return in_tree(parts, is_plain_file, SERVICE_RC if kind == S6RC else SERVICE)
