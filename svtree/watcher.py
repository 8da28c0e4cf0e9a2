"""The file watcher: its own small process, so the forking core stays single-threaded.

watchfiles runs a thread and wakes every `step` ms; here that costs nothing to the core.
It writes `ready` once its watches are set, then one line `changed` to stdout (a pipe to
the core) for each batch of changes under any of its directories; the core coalesces
bursts and reloads. It exits when the core goes away.

Run by the core (never imported by it) as `svtree _watcher DIR [DIR...]`, the argv
svtree/selfexec.py builds (`python -m svtree _watcher ...` from a pip install, the bundle's
own executable when frozen), with the plan's watch_paths(): DIR, and for the s6-overlay
layout ROOT/etc/cont-init.d and ROOT/etc/cont-finish.d too.
"""

from __future__ import annotations

import os
import signal
import sys

IGNORED_SUFFIXES = ("~", ".swp", ".swx", ".swo", ".tmp")
PR_SET_PDEATHSIG = 1
STEP_MS = 50  # watchfiles' wake-up period while watching: the latency floor
DEBOUNCE_MS = 100  # the longest batch watchfiles makes: shorter than the core's QUIET, so a
#                   burst keeps the core's quiet timer from expiring while it lasts


def relevant(path: str) -> bool:
    """Dotfiles and editor leftovers do not count. Names starting with `..` do: that is
    how Kubernetes swaps a ConfigMap volume (`..data` -> `..2024_..`)."""
    name = os.path.basename(path)
    if name.startswith(".") and not name.startswith(".."):
        return False
    if name.endswith(IGNORED_SUFFIXES) or name.startswith(".#"):
        return False
    return "__pycache__" not in path


def main(argv: "list[str]") -> int:
    if not argv:
        sys.stderr.write("usage: svtree _watcher DIR [DIR...] (svtree's file watcher, started by svtree run)\n")
        return 2
    directories = list(argv)
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)  # the core died: so do we
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
        for _ in watch(*directories, watch_filter=lambda change, path: relevant(path),
                       debounce=DEBOUNCE_MS, step=STEP_MS, rust_timeout=0, raise_interrupt=False):
            os.write(1, b"changed\n")
        return 0
    os.write(1, b"ready\n")
    with notify:
        while True:
            raw = notify.watch(DEBOUNCE_MS, STEP_MS, 0, None)
            if raw in ("signal", "stop"):
                return 0
            if raw != "timeout" and any(relevant(path) for _, path in raw):
                os.write(1, b"changed\n")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
