"""Content digests: what a reload compares to decide which services changed.

A service's digest covers every file under its directory (relative name, kind, mode,
content; a symlink by its target text, never followed) and its resolved settings. It
ignores timestamps, so touching a file without changing it restarts nothing. Editor
leftovers (`*~`, `*.swp`, `*.tmp`) are skipped, so saving in vim does not restart a
service twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import fields

from svtree.compiler.discover import is_editor_leftover
from svtree.plan import ServiceSpec

CHUNK = 1 << 16
_SETTINGS_FIELDS = tuple(f.name for f in fields(ServiceSpec) if f.name != "digest")


def _file_hash(path: str, st: os.stat_result) -> bytes:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while True:
                block = f.read(CHUNK)
                if not block:
                    break
                h.update(block)
    except OSError:
        # Unreadable to the compiler (mode 0600 of another user): its size and mtime are the
        # best witness of a change we have.
        h.update(b"unreadable\0%d\0%d" % (st.st_size, st.st_mtime_ns))
    return h.digest()


def _walk(h: "hashlib._Hash", directory: str, prefix: bytes) -> None:
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError as e:
        h.update(b"E\0" + prefix + b"\0" + str(e.errno).encode() + b"\0")
        return
    for entry in entries:
        if is_editor_leftover(entry.name):
            continue
        rel = prefix + os.fsencode(entry.name)
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue  # vanished while we looked
        mode = b"%o" % stat.S_IMODE(st.st_mode)
        # Each record is kind, name, then fixed-size or NUL-free fields: unambiguous.
        if stat.S_ISLNK(st.st_mode):
            h.update(b"L\0" + rel + b"\0" + os.fsencode(os.readlink(entry.path)) + b"\0")
        elif stat.S_ISDIR(st.st_mode):
            h.update(b"D\0" + rel + b"\0" + mode + b"\0")
            _walk(h, entry.path, rel + b"/")
        elif stat.S_ISREG(st.st_mode):
            h.update(b"F\0" + rel + b"\0" + mode + b"\0" + _file_hash(entry.path, st))
        else:
            # A fifo or socket (s6's supervise/control): never opened, a read could block.
            h.update(b"O\0" + rel + b"\0" + mode + b"\0%d\0" % stat.S_IFMT(st.st_mode))


def files_digest(directory: str) -> str:
    """sha256 over the files of one directory tree."""
    h = hashlib.sha256(b"svtree-files-1\0")
    _walk(h, directory, b"")
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


def script_digest(path: str) -> str:
    """sha256 over one script (mode and content): the files of a service that is a single
    script, like an s6-overlay cont-init.d entry."""
    h = hashlib.sha256(b"svtree-script-1\0")
    try:
        st = os.stat(path)
    except OSError as e:
        h.update(b"E\0" + str(e.errno).encode() + b"\0")
    else:
        h.update(b"%o\0" % stat.S_IMODE(st.st_mode) + _file_hash(path, st))
    return h.hexdigest()
