"""The file watcher: its own small process, so the forking core stays single-threaded.

watchfiles runs a thread and wakes every `step` ms; here that costs nothing to the core.
It writes `ready` once its watches are set, then one line `changed` to its pipe to the
core for each batch of changes that can change a plan; the core coalesces bursts and
reloads. If it cannot watch, it writes `error WHY` and exits 1. It dies with the core.

What can change a plan is svtree.definition's rule, the compiler's own: svtree.toml, a
service directory, a service's definition files (run, finish, down, service.toml, the s6
files, dependencies.d/, log/), each script of an s6-overlay cont-init.d or cont-finish.d,
and the files of s6-rc source directories. A service writing its pid file, cache or
state into its directory every 100 ms wakes the watcher but never the core.

The core forks it (core/reload.py: a helper child, `svtree-watcher` in ps), so it is
the core's interpreter with its modules already loaded, installed or in the bundle
alike: it loads only watchfiles' compiled module (`load_rust_notify`), not the Python
package around it, and calls `watch` with the plan's watch_roots(): (kind, directory)
pairs, `tree` for DIR, and for the s6-overlay layout `scripts` for cont-init.d and
cont-finish.d (each entry a script) and `s6-rc` for s6-overlay/s6-rc.d and
user-bundles.d (s6-rc source directories).
"""

from __future__ import annotations

import os

from svtree.definition import in_root

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


def load_rust_notify():
    """watchfiles' compiled RustNotify, loaded by itself: importing it the usual way runs
    the package's __init__ (its Python API: 40 ms and 3 MB of imports a watcher does not
    use). None when it cannot be found so."""
    import importlib.machinery
    import importlib.util

    try:
        package = importlib.util.find_spec("watchfiles")  # (finds it; imports nothing)
    except (ImportError, ValueError):
        return None
    for directory in (package.submodule_search_locations or []) if package else []:
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            if name.startswith("_rust_notify.") and name.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
                loader = importlib.machinery.ExtensionFileLoader("watchfiles._rust_notify",
                                                                 os.path.join(directory, name))
                module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
                loader.exec_module(module)
                return module.RustNotify
    return None


def _say(out: int, line: str) -> None:
    os.write(out, line.encode(errors="replace") + b"\n")


def watch(roots: "list[tuple[str, str]]", out: int) -> int:
    """Watch `roots` ((kind, absolute directory) pairs), saying `ready`, `changed` (and
    `error WHY` before giving up) on the fd `out`. Returns when the watches end."""
    directories = [d for _, d in roots]
    try:
        RustNotify = load_rust_notify()
        if RustNotify is None:
            from watchfiles._rust_notify import RustNotify
        # RustNotify sets its watches up in the constructor, so we can say "ready" only
        # once they are in place; the core then reloads once, catching any change made
        # between its boot and this moment.
        notify = RustNotify(directories, False, False, 300, True, False)
    except (ImportError, TypeError):
        notify = None
    except Exception as e:  # no inotify instance or watch left, a directory gone, ...
        _say(out, f"error {e}")
        return 1
    if notify is None:  # another watchfiles API: the public generator, ready at once
        from watchfiles import watch as watch_changes

        _say(out, "ready")
        for _ in watch_changes(*directories, watch_filter=lambda change, path: relevant(path, roots),
                               debounce=DEBOUNCE_MS, step=STEP_MS, rust_timeout=0, raise_interrupt=False):
            _say(out, "changed")
        return 0
    _say(out, "ready")
    with notify:
        while True:
            raw = notify.watch(DEBOUNCE_MS, STEP_MS, 0, None)
            if raw in ("signal", "stop"):
                return 0
            if raw != "timeout" and any(relevant(path, roots) for _, path in raw):
                _say(out, "changed")
