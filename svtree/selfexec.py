"""What svtree undoes of its bundle before it starts anything.

From the bundle (PyInstaller, onedir) svtree is the bundle's executable, not a Python:
the bootloader sets LD_LIBRARY_PATH to the bundle's own libraries (keeping the original
in LD_LIBRARY_PATH_ORIG) and variables of its own (`_PYI_*`, `_MEIPASS*`), then
re-executes itself in place (same pid). Services, the main command and every process
they start must see the environment svtree was given instead: a service linked against
the machine's libraries must not load the bundle's, and another PyInstaller program
started by a service must not take those variables for its own. `restore_environ` undoes
them once, before anything is started. (svtree's own helper processes, the file watcher
among them, are forks of the core: the same executable, installed or bundled.)

A leaf: stdlib only, imports nothing of svtree.
"""

from __future__ import annotations

import os
import sys

LOADER_PATH = "LD_LIBRARY_PATH"
LOADER_PATH_SAVED = "LD_LIBRARY_PATH_ORIG"  # where the bootloader keeps the original
BUNDLE_PREFIXES = ("_PYI_", "_MEIPASS")  # the bootloader's own variables


def frozen() -> bool:
    """True in the bundle (PyInstaller sets sys.frozen)."""
    return bool(getattr(sys, "frozen", False))


def original_environ(env: "dict[str, str]") -> "dict[str, str]":
    """`env` as it was before the bundle's bootloader changed it: LD_LIBRARY_PATH back to
    its saved value (or unset, when nothing was saved), the bootloader's variables gone."""
    out = {k: v for k, v in env.items() if not k.startswith(BUNDLE_PREFIXES)}
    saved = out.pop(LOADER_PATH_SAVED, None)
    if saved is not None:
        out[LOADER_PATH] = saved
    else:
        out.pop(LOADER_PATH, None)
    return out


def restore_environ() -> None:
    """In the bundle: make os.environ (and so every child's environment) what svtree was
    started with. Elsewhere: nothing to undo."""
    if not frozen():
        return
    wanted = original_environ(dict(os.environ))
    for key in [k for k in os.environ if k not in wanted]:
        del os.environ[key]
    for key, value in wanted.items():
        if os.environ.get(key) != value:
            os.environ[key] = value
