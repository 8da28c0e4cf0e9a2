"""How svtree runs its own helper processes, installed with pip or frozen in the bundle.

svtree runs one helper of its own: the file watcher. From a pip install it is this Python
running `-m svtree _watcher DIR...`; from the bundle (PyInstaller, onedir) there is no
Python to run, only the bundle's executable, so it is that executable with the same
hidden subcommand. cli.py dispatches `_watcher` before it imports anything else.

The bundle's executable starts by setting LD_LIBRARY_PATH to its own libraries (keeping
the original in LD_LIBRARY_PATH_ORIG) and variables of its own (`_PYI_*`, `_MEIPASS*`),
then re-executes itself in place (same pid). Services, the main command and every
process they start must see the environment svtree was given instead: a service
linked against the machine's libraries must not load the bundle's, and another
PyInstaller program started by a service must not take those variables for its own.
`restore_environ` undoes them once, before anything is started.

A leaf: stdlib only, imports nothing of svtree.
"""

from __future__ import annotations

import os
import sys

WATCHER = "_watcher"  # the hidden subcommand that runs svtree.watcher
LOADER_PATH = "LD_LIBRARY_PATH"
LOADER_PATH_SAVED = "LD_LIBRARY_PATH_ORIG"  # where the bootloader keeps the original
BUNDLE_PREFIXES = ("_PYI_", "_MEIPASS")  # the bootloader's own variables


def frozen() -> bool:
    """True in the bundle (PyInstaller sets sys.frozen)."""
    return bool(getattr(sys, "frozen", False))


def command(subcommand: str, *args: str) -> "list[str]":
    """The argv that runs `svtree SUBCOMMAND ARGS...` with the same svtree as this process."""
    if frozen():
        return [sys.executable, subcommand, *args]
    return [sys.executable, "-m", "svtree", subcommand, *args]


def watcher_command(paths) -> "list[str]":
    return command(WATCHER, *paths)


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
