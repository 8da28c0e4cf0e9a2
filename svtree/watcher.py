"""The file watcher: its own small process, so the forking core stays single-threaded.

watchfiles runs a thread and wakes every `step` ms; here that costs nothing to the core.
It writes `ready` once its watches are set, then one line `changed` to stdout (a pipe to
the core) for each batch of changes that can change a plan; the core coalesces bursts
and reloads. It exits when the core goes away.

What can change a plan is svtree.definition's rule, the compiler's own: svtree.toml, a
service directory, a service's definition files (run, finish, down, service.toml, the s6
files, dependencies.d/, log/), each script of an s6-overlay cont-init.d or cont-finish.d,
and the files of s6-rc source directories. A service writing its pid file, cache or
state into its directory every 100 ms wakes the watcher but never the core.

Run by the core (never imported by it) as `svtree _watcher --KIND DIR [--KIND DIR...]`,
the argv svtree/selfexec.py builds (`python -m svtree _watcher ...` from a pip install,
the bundle's own executable when frozen), with the plan's watch_roots(): --tree DIR, and
for the s6-overlay layout --scripts for cont-init.d and cont-finish.d (each entry a
script) and --s6-rc for s6-overlay/s6-rc.d and user-bundles.d (s6-rc source directories).
"""

from __future__ import annotations

import os
import signal
import sys

from svtree import exitcodes, osutil
from svtree.definition import S6RC, SCRIPTS, TREE, in_root

STEP_MS = 50  # watchfiles' wake-up period while watching: the latency floor
DEBOUNCE_MS = 100  # the longest batch watchfiles makes: shorter than the core's QUIET, so a
#                   burst keeps the core's quiet timer from expiring while it lasts


def _parts(path: str, root: str) -> "tuple[str, ...] | None":
    """`path` relative to `root`, as components; None when it is not under `root`."""
    if path == root:
        return ()
    if not path.startswith(root.rstrip("/") + "/"):
        return None
    return tuple(p for p in path[len(root.rstrip("/")) + 1:].split("/") if p)


def _is_plain_file(path: str) -> "bool | None":
    try:
        return not os.path.isdir(path) if os.path.lexists(path) else None
    except OSError:
        return None


def relevant(path: str, roots: "list[tuple[str, str]]") -> bool:
    """Whether a change at `path` can change the plan compiled from `roots` ((kind,
    directory) pairs; the innermost directory holding `path` decides)."""
    best = None
    for kind, root in roots:
        parts = _parts(path, root)
        if parts is not None and (best is None or len(parts) < len(best[1])):
            best = (kind, parts)
    if best is None:
        return True  # not under anything we know: better a reload for nothing than a miss
    kind, parts = best
    return in_root(kind, parts, _is_plain_file(path) if len(parts) == 1 else None)


def parse(argv: "list[str]") -> "list[tuple[str, str]] | None":
    """--tree DIR --scripts DIR --s6-rc DIR ... as (kind, absolute directory) pairs."""
    kinds = {f"--{k}": k for k in (TREE, SCRIPTS, S6RC)}
    if not argv or len(argv) % 2 or any(a not in kinds for a in argv[::2]):
        return None
    return [(kinds[flag], os.path.abspath(d)) for flag, d in zip(argv[::2], argv[1::2])]


def main(argv: "list[str]") -> int:
    roots = parse(argv)
    if roots is None:
        sys.stderr.write("usage: svtree _watcher --tree DIR [--scripts DIR] [--s6-rc DIR]... "
                         "(svtree's file watcher, started by svtree run)\n")
        return exitcodes.USAGE
    directories = [d for _, d in roots]
    try:
        osutil.set_parent_death_signal(signal.SIGTERM)  # the core died: so do we
    except OSError:
        pass
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # the core closed the pipe: exit
    try:
        # RustNotify sets its watches up in the constructor, so we can say "ready" only
        # once they are in place; the core then reloads once, catching any change made
        # between its boot and this moment.
        from watchfiles._rust_notify import RustNotify

        notify = RustNotify(directories, False, False, 300, True, False)
    except (ImportError, TypeError):
        notify = None
    if notify is None:  # another watchfiles API: the public generator, ready at once
        from watchfiles import watch

        os.write(1, b"ready\n")
        for _ in watch(*directories, watch_filter=lambda change, path: relevant(path, roots),
                       debounce=DEBOUNCE_MS, step=STEP_MS, rust_timeout=0, raise_interrupt=False):
            os.write(1, b"changed\n")
        return exitcodes.OK
    os.write(1, b"ready\n")
    with notify:
        while True:
            raw = notify.watch(DEBOUNCE_MS, STEP_MS, 0, None)
            if raw in ("signal", "stop"):
                return exitcodes.OK
            if raw != "timeout" and any(relevant(path, roots) for _, path in raw):
                os.write(1, b"changed\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
