"""Content digests: what a reload compares to decide which services changed.

A service's digest covers its definition (svtree.definition: `run`, `finish`,
`service.toml`, the s6 files and the logger's `log/` by content and mode; `down` and the
entries of `dependencies.d/` by name) and its resolved settings. Nothing else in its
directory counts: what a service writes there at run time (a pid file, a cache) is data,
never read, so it restarts nothing. Timestamps do not count either, so touching a file
without changing it restarts nothing (except a file too large to be read whole, a binary
`run`: its first MAX_BYTES, its size and its mtime witness a change; see files.py).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import fields

from svtree.compiler.files import DefinitionFiles, Refused
from svtree.definition import CONTENT, DIRECTORY, SERVICE, Rule
from svtree.errors import Problem
from svtree.plan import ServiceSpec

_SETTINGS_FIELDS = tuple(f.name for f in fields(ServiceSpec) if f.name != "digest")


def _content_record(files: DefinitionFiles, path: str, problems: "list[Problem]") -> bytes:
    """mode and sha256 of one definition file; a file we may not read (mode 0600 of another
    user) by its size and mtime, the best witness of a change we have."""
    try:
        content = files.read(path)
    except Refused as e:
        problems.append(Problem(path, e.message, hint=e.hint))
        return b"refused"
    except PermissionError:
        try:
            st = os.stat(path)
        except OSError:
            return b"unreadable"
        return b"unreadable\0%d\0%d" % (st.st_size, st.st_mtime_ns)
    except OSError as e:  # vanished, a broken symlink: the checks of run and finish tell
        return b"E%d" % (e.errno or 0)
    return b"%o\0" % content.mode + content.digest.encode()


def _walk(h: "hashlib._Hash", files: DefinitionFiles, problems: "list[Problem]", rule: Rule,
          directory: str, parts: "tuple[str, ...]") -> None:
    try:
        names = sorted(os.listdir(directory))
    except OSError as e:
        h.update(b"E\0" + os.fsencode("/".join(parts)) + b"\0%d\0" % (e.errno or 0))
        return
    for name in names:
        sub = parts + (name,)
        kind = rule.entry(sub)
        if kind is None:
            continue  # data (or a hidden name, an editor leftover)
        path = os.path.join(directory, name)
        rel = os.fsencode("/".join(sub))
        # Each record is kind, name, then NUL-free fields: unambiguous.
        if kind == CONTENT:
            h.update(b"F\0" + rel + b"\0" + _content_record(files, path, problems) + b"\0")
        elif kind == DIRECTORY and os.path.isdir(path):
            h.update(b"D\0" + rel + b"\0")
            _walk(h, files, problems, rule, path, sub)
        else:  # by name: `down`, an entry of dependencies.d/ (or a `log` that is a file)
            h.update(b"N\0" + rel + b"\0")


def definition_digest(directory: str, files: DefinitionFiles, problems: "list[Problem]",
                      rule: Rule = SERVICE) -> str:
    """sha256 over the definition files of one service directory (which files: `rule`,
    svtree.definition's SERVICE, or SERVICE_RC for an s6-rc source directory). A
    definition file that is not a regular file becomes a problem in `problems`."""
    h = hashlib.sha256(b"svtree-definition-1\0")
    _walk(h, files, problems, rule, directory, ())
    return h.hexdigest()


def service_digest(spec: ServiceSpec, files: str) -> str:
    """The digest of a service: its files' digest and every resolved setting."""
    # Every field but the digest itself; values are str, numbers, None and tuples of them.
    settings = json.dumps({name: getattr(spec, name) for name in _SETTINGS_FIELDS}, sort_keys=True)
    return hashlib.sha256(b"svtree-service-1\0" + files.encode() + b"\0" + settings.encode()).hexdigest()


def source_digest(services: "tuple[ServiceSpec, ...]", global_bytes: "bytes | None") -> str:
    """The digest of a whole tree: every service's digest and svtree.toml's bytes."""
    h = hashlib.sha256(b"svtree-tree-1\0")
    for spec in sorted(services, key=lambda s: s.name):
        h.update(spec.name.encode() + b"\0" + spec.digest.encode() + b"\0")
    if global_bytes is None:
        h.update(b"no svtree.toml\0")
    else:
        h.update(b"svtree.toml\0" + hashlib.sha256(global_bytes).digest())
    return h.hexdigest()


def script_digest(path: str, files: DefinitionFiles, problems: "list[Problem]") -> str:
    """sha256 over one script (mode and content): the definition of a service that is a
    single script, like an s6-overlay cont-init.d entry."""
    return hashlib.sha256(b"svtree-script-1\0" + _content_record(files, path, problems)).hexdigest()
