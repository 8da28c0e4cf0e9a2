"""Find the services of a tree: each direct subdirectory of DIR is one."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from svtree.definition import GLOBAL_FILE, is_ignored
from svtree.errors import CompileError, Problem

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\Z")


class NoTreeError(CompileError):
    """DIR does not exist or is not a directory; `reason` says why, as the OS did.

    A CompileError with one problem, so that a caller that handles invalid trees (a reload
    while the directory is being replaced) handles a missing one too.
    """

    def __init__(self, directory: str, reason: str) -> None:
        super().__init__([Problem(directory, f"no tree here: {reason}",
                                  hint="give DIR, set $SVTREE_DIR, or create ./services.d")])
        self.directory = directory
        self.reason = reason


@dataclass(frozen=True)
class Found:
    names: "tuple[str, ...]"  # valid service names, sorted
    global_file: "str | None"  # DIR/svtree.toml if it exists
    problems: "tuple[Problem, ...]"


def discover(directory: str) -> Found:
    """List DIR: services (subdirectories, symlinks to them count) and svtree.toml.
    Hidden entries and editor leftovers are skipped (svtree.definition.is_ignored).

    Plain files other than svtree.toml are ignored; a subdirectory with an invalid name
    is a problem, since the user clearly meant it as a service.
    """
    try:
        entries = list(os.scandir(directory))
    except OSError as e:  # missing, not a directory, not readable
        raise NoTreeError(directory, e.strerror or str(e)) from None
    names: "list[str]" = []
    global_file = None
    problems: "list[Problem]" = []
    for entry in sorted(entries, key=lambda e: e.name):
        if is_ignored(entry.name):
            continue
        try:
            is_dir = entry.is_dir()  # follows symlinks: a linked service directory is a service
        except OSError:
            is_dir = False
        if entry.name == GLOBAL_FILE:
            if is_dir:
                problems.append(Problem(entry.path, "must be a file of global settings, not a directory"))
            else:
                global_file = entry.path
            continue
        if not is_dir:
            continue
        if not NAME.match(entry.name):
            problems.append(Problem(
                entry.path,
                f'"{entry.name}" is not a valid service name',
                hint="a name starts with a letter or digit and holds only letters, digits, "
                     '".", "_" and "-": rename the directory',
            ))
            continue
        names.append(entry.name)
    return Found(tuple(names), global_file, tuple(problems))
