"""`svtree import supervisord FILE` and `svtree import procfile [FILE]`: read, then write
the tree (or print it, with --dry-run), then the table of what did not carry over."""

from __future__ import annotations

import os
import sys

from svtree.errors import display_path, render_problems
from svtree.exitcodes import FAILURE, OK
from svtree.importers.model import Conversion, ImportFailed
from svtree.importers.writer import is_occupied, render_notes, render_tree, write_tree

COMMAND = "svtree import"
DEFAULT_OUTPUT = "services.d"
DEFAULT_PROCFILE = "Procfile"


def _convert(args) -> Conversion:
    if args.kind == "supervisord":
        from svtree.importers import supervisord

        return supervisord.convert(args.file, cwd=args.cwd)
    from svtree.importers import procfile

    env_files = None
    if args.env is not None:
        env_files = [name for given in args.env for name in given.split(",") if name]
    return procfile.convert(args.file or DEFAULT_PROCFILE, env_files=env_files, cwd=args.cwd,
                            port=args.port)


def _say(text: str) -> None:
    sys.stdout.write(text)


def import_command(args) -> int:
    """Exit 0 when the tree was written (or printed), 1 when the source cannot be
    imported or DIR is in the way (2, usage, is cli.py's). Nothing is written on error."""
    try:
        conversion = _convert(args)
    except ImportFailed as e:
        sys.stderr.write(render_problems(e.problems, f"{COMMAND}: "))
        return FAILURE
    directory = args.output or DEFAULT_OUTPUT
    shown = display_path(os.path.abspath(directory))
    names = " ".join(s.name for s in conversion.services)
    if args.dry_run:
        _say(render_tree(conversion, directory))
        _say(f"{COMMAND}: would write {_count(conversion)} to {shown}"
             + (f": {names}" if names else "") + " (--dry-run: nothing written)\n\n")
        _say(render_notes(conversion.notes))
        return OK
    if not conversion.services:
        _say(f"{COMMAND}: {conversion.source} has no program to run: nothing written\n\n")
        _say(render_notes(conversion.notes))
        return OK
    if is_occupied(directory) and not args.force:
        what = "is not a directory" if os.path.lexists(directory) and not os.path.isdir(directory) \
            else "is not empty"
        sys.stderr.write(f"{COMMAND}: {shown} {what}: nothing written (give --force to write into it: "
                         "service directories of the same names are replaced, nothing else is "
                         "touched; or -o DIR for another directory)\n")
        return FAILURE
    try:
        write_tree(conversion, directory)
    except OSError as e:
        where = f" {e.filename}" if e.filename else ""
        sys.stderr.write(f"{COMMAND}: cannot write{where}: {e.strerror or e}\n")
        return FAILURE
    _say(f"{COMMAND}: wrote {_count(conversion)} to {shown}: {names}\n\n")
    _say(render_notes(conversion.notes))
    sys.stdout.flush()
    _check(directory, shown)
    return OK


def _count(conversion: Conversion) -> str:
    n = len(conversion.services)
    return f"{n} service" if n == 1 else f"{n} services"


def _check(directory: str, shown: str) -> None:
    """Compile what was written. A problem here (a user this machine does not have) is a
    warning: the tree may be meant for an image that has it."""
    from svtree.compiler.build import compile_tree
    from svtree.errors import CompileError

    try:
        compile_tree(os.path.abspath(directory))
    except CompileError as e:
        sys.stderr.write(render_problems(e.problems, f"{COMMAND}: warning: "))
        sys.stderr.write(f"{COMMAND}: warning: {shown} does not compile on this machine (above); "
                         f"check it with `svtree compile {shown}` where it will run\n")
        return
    _say(f"\nCheck it with `svtree compile {shown}`, run it with `svtree --dir {shown}`.\n")
