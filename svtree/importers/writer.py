"""Imported services -> files: the tree on disk, its --dry-run listing, the table of notes."""

from __future__ import annotations

import os
import re
import shutil
from typing import Any

from svtree.compiler.settings import SERVICE_KEYS
from svtree.errors import display_path
from svtree.importers.model import Conversion, Note, Service

EXECUTABLE, REGULAR = 0o755, 0o644
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")


def toml_string(text: str) -> str:
    """A TOML basic string: every control character TOML forbids raw is escaped."""
    out = ['"']
    for ch in text:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else toml_string(key)


def service_toml(settings: "tuple[tuple[str, Any], ...]") -> str:
    """service.toml text; environment last, as a table (keys after it would belong to it)."""
    lines: "list[str]" = []
    environment: "dict[str, str]" = {}
    for key, value in settings:
        if key not in SERVICE_KEYS:
            raise ValueError(f"svtree has no service.toml key {key!r}")
        if key == "environment":
            environment = dict(value)
            continue
        lines.append(f"{key} = {toml_value(value)}")
    if environment:
        if lines:
            lines.append("")
        lines.append("[environment]")
        lines += [f"{toml_key(k)} = {toml_string(v)}" for k, v in environment.items()]
    return "\n".join(lines) + "\n" if lines else ""


def service_files(service: Service) -> "list[tuple[str, str, int]]":
    """(file name, text, mode) of one service directory."""
    files = [("run", service.run, EXECUTABLE)]
    if service.finish is not None:
        files.append(("finish", service.finish, EXECUTABLE))
    toml = service_toml(service.settings)
    if toml:
        files.append(("service.toml", toml, REGULAR))
    if service.down:
        files.append(("down", "", REGULAR))
    return files


def render_tree(conversion: Conversion, directory: str) -> str:
    """What --dry-run prints: every file that would be written, with its text."""
    out: "list[str]" = []
    shown = display_path(os.path.abspath(directory))
    for service in conversion.services:
        for name, text, mode in service_files(service):
            label = os.path.join(shown, service.name, name)
            out.append(f"{label}  (executable)" if mode == EXECUTABLE else
                       f"{label}  (empty)" if not text else label)
            out += [f"    {line}" for line in text.splitlines()]
    return "\n".join(out) + "\n" if out else ""


def render_notes(notes: "tuple[Note, ...]") -> str:
    """The table printed at the end: key, where, what svtree does instead."""
    if not notes:
        return "Everything carried over.\n"
    head = ("KEY", "WHERE", "WHAT SVTREE DOES INSTEAD")
    key_width = min(max(len(head[0]), *(len(n.key) for n in notes)), 28)
    where_width = min(max(len(head[1]), *(len(n.where) for n in notes)), 48)
    lines = [f"What did not carry over as it was ({len(notes)}):",
             f"{head[0]:<{key_width}}  {head[1]:<{where_width}}  {head[2]}"]
    for n in notes:
        lines.append(f"{n.key:<{key_width}}  {n.where:<{where_width}}  {n.instead}")
    return "\n".join(lines) + "\n"


def is_occupied(directory: str) -> bool:
    """DIR exists and holds something: importing into it needs --force."""
    try:
        return bool(os.listdir(directory))
    except FileNotFoundError:
        return False
    except NotADirectoryError:
        return True


def write_tree(conversion: Conversion, directory: str) -> None:
    """Write every service into DIR (created if missing). A service directory of the same
    name is replaced; nothing else in DIR is touched. Each service is first written
    whole under a hidden name (svtree ignores dot entries, so a running svtree never
    sees half of one), then renamed into place. Raises OSError."""
    os.makedirs(directory, exist_ok=True)
    tag = f"svtree-import-{os.getpid()}"
    staged: "list[tuple[str, str]]" = []
    try:
        for service in conversion.services:
            temporary = os.path.join(directory, f".{service.name}.{tag}")
            os.mkdir(temporary)
            staged.append((temporary, os.path.join(directory, service.name)))
            for name, text, mode in service_files(service):
                path = os.path.join(temporary, name)
                with open(path, "w", encoding="utf-8") as f:
                    f.write(text)
                os.chmod(path, mode)
    except BaseException:
        for temporary, _ in staged:
            shutil.rmtree(temporary, ignore_errors=True)
        raise
    for temporary, final in staged:
        old = None
        if os.path.lexists(final):
            old = f"{os.path.join(directory, '.' + os.path.basename(final))}.{tag}-old"
            os.rename(final, old)
        os.rename(temporary, final)
        if old is not None:
            if os.path.isdir(old) and not os.path.islink(old):
                shutil.rmtree(old)
            else:
                os.unlink(old)
