"""Reading definition files: regular files only, a bounded number of bytes each, and each
file read once for as long as it does not change.

A FIFO named `run` or `service.toml -> /dev/zero` would block a compile or fill its memory:
anything that is not a regular file (after following symlinks) is refused without being
opened (opening some devices has effects), with a problem naming the file. A file is read
up to MAX_BYTES; settings files must fit (a larger one is a problem), a larger `run` (a
binary) is checked and digested by its first MAX_BYTES, its size and its mtime.

`DefinitionFiles` keeps what it read by path, under the file's identity and version
(device, inode, size, mtime and ctime in ns): a reload compiles in a child process that
starts from the cache of the compile before and hands back what it used, so an unchanged
file is stat()ed, never read again. A file changed less than RACY_NS before it was read
is not kept: its timestamps could still equal those of a next version written within
the same clock tick (git's "racy" index entries).
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from dataclasses import dataclass

from svtree.errors import Problem

MAX_BYTES = 1 << 20
CACHED_BYTES = 64 * 1024  # larger files are read again on every compile (binaries: rare)
RACY_NS = 1_000_000_000

_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
          stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a directory"}


@dataclass(frozen=True)
class Content:
    data: bytes  # the file's bytes, at most MAX_BYTES
    size: int  # the file's size (more than len(data) when it was cut)
    mode: int  # permission bits
    digest: str  # sha256 of the content (of the head, size and mtime when cut)

    @property
    def complete(self) -> bool:
        return len(self.data) == self.size


class Refused(Exception):
    """A definition file svtree will not read: `message` completes "PATH: ...", `hint`
    says what to do."""

    def __init__(self, message: str, hint: str, kind: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.kind = kind  # what it is instead: "a FIFO", "a directory", ...


def _key(st: os.stat_result) -> "tuple[int, int, int, int, int]":
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _refuse(path: str, st: os.stat_result) -> Refused:
    kind = _KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")
    what = kind
    if os.path.islink(path):
        try:
            what = f"a symlink to {os.readlink(path)}, {kind}"
        except OSError:
            what = f"a symlink to {kind}"
    return Refused(f"is {what}, not a regular file",
                   "a definition file must be a regular file or a symlink to one: replace it", kind)


class DefinitionFiles:
    """The definition files of one compile, read through a cache of earlier compiles."""

    def __init__(self, cache: "dict | None" = None) -> None:
        self._cache = cache or {}  # path -> (key, (data, size, mode, digest)), read-only here
        self.used: "dict[str, tuple]" = {}  # what this compile read or reused: the next cache
        self._seen: "dict[str, tuple]" = {}  # everything this compile read, cached or not
        self.reads = 0  # files opened (not found in the cache): for tests and benchmarks

    def read(self, path: str) -> Content:
        """The content of the regular file at `path` (symlinks followed).

        Raises OSError (missing, unreadable) or Refused (not a regular file).
        """
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(path, st)
        key = _key(st)
        hit = self._seen.get(path) or self._cache.get(path)
        if hit is not None and tuple(hit[0]) == key:
            if path not in self._seen:  # from the cache: settled, so cached again
                self._seen[path] = self.used[path] = hit
            return Content(*hit[1])
        # O_NONBLOCK: if the file was replaced by a FIFO since the stat, open does not wait
        # for a writer; fstat then tells.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise _refuse(path, st)
            chunks, left = [], MAX_BYTES
            while left > 0:
                chunk = os.read(fd, min(left, 1 << 16))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
        finally:
            os.close(fd)
        self.reads += 1
        data = b"".join(chunks)
        h = hashlib.sha256(data)
        if len(data) < st.st_size:  # cut: the head, the size and the mtime witness a change
            h.update(b"\0cut\0%d\0%d" % (st.st_size, st.st_mtime_ns))
        value = (data, max(st.st_size, len(data)), stat.S_IMODE(st.st_mode), h.hexdigest())
        entry = (_key(st), value)
        self._seen[path] = entry
        settled = time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > RACY_NS
        if settled and len(data) <= CACHED_BYTES:
            self.used[path] = entry
        return Content(*value)


def read_whole(files: DefinitionFiles, path: str) -> "tuple[bytes | None, list[Problem]]":
    """A settings file's bytes (service.toml, svtree.toml), or the problems that kept it
    from being read: unreadable, not a regular file, larger than MAX_BYTES."""
    try:
        content = files.read(path)
    except Refused as e:
        return None, [Problem(path, e.message, hint=e.hint)]
    except OSError as e:
        return None, [Problem(path, f"cannot read: {e.strerror}")]
    if not content.complete:
        return None, [Problem(path, f"is larger than {MAX_BYTES >> 20} MiB ({content.size} bytes), "
                                    "too large for a settings file", hint="is it the right file?")]
    return content.data, []
