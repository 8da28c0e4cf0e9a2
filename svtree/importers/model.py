"""The values an importer produces: services to write, and notes on what did not carry over."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from svtree.compiler.discover import NAME, is_ignored
from svtree.errors import Problem


@dataclass(frozen=True)
class Service:
    """One service directory to write.

    `settings` are service.toml keys in the order they are written (each a key of the
    compiler's settings table); `finish` is the finish script's text, if one is needed.
    """

    name: str
    run: str
    settings: "tuple[tuple[str, Any], ...]" = ()
    down: bool = False
    finish: "str | None" = None


@dataclass(frozen=True)
class Note:
    """A row of the table printed at the end: a key of the source that svtree does not
    carry over as it is, where it was, and what svtree does instead."""

    key: str
    where: str
    instead: str


@dataclass(frozen=True)
class Conversion:
    source: str  # the file imported, as the user named it
    kind: str  # "supervisord" or "procfile"
    services: "tuple[Service, ...]"
    notes: "tuple[Note, ...]"


def merge_notes(notes: "list[Note]") -> "tuple[Note, ...]":
    """One row per (key, what svtree does): the places of the same note, joined."""
    rows: "dict[tuple[str, str], list[str]]" = {}
    for note in notes:
        wheres = rows.setdefault((note.key, note.instead), [])
        if note.where not in wheres:
            wheres.append(note.where)
    return tuple(Note(key, ", ".join(wheres), instead) for (key, instead), wheres in rows.items())


class ImportFailed(Exception):
    """The source cannot be imported; carries every problem found, each with its place."""

    def __init__(self, problems: "list[Problem]") -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(p.render() for p in self.problems))


def service_name(wanted: str) -> str:
    """A source's process name as a service name svtree accepts and does not ignore:
    characters other than letters, digits, ".", "_" and "-" become "-", leading
    punctuation goes, and an editor-leftover ending (".tmp", "~", ".swp") gets a "_"."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", wanted).lstrip("._-") or "service"
    if is_ignored(name):
        name += "_"
    if not NAME.match(name):  # cannot happen after the steps above; keep the contract explicit
        raise ValueError(f"not a service name: {name!r}")
    return name


def read_source(path: str) -> str:
    """A source file's text (UTF-8). Raises ImportFailed naming the file (and the line of
    the first byte that is not UTF-8)."""
    try:
        if os.path.isdir(path):
            raise ImportFailed([Problem(path, "is a directory, not a file")])
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ImportFailed([Problem(path, f"cannot read: {e.strerror}")]) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise ImportFailed([Problem(path, "is not UTF-8 text", line=line)]) from None
