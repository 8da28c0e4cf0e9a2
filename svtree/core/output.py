"""Service output in `prefix` mode: each line becomes `NAME | line` on svtree's stdout
(stderr lines on stderr). The core holds the read end of each pipe; the monitor keeps
the write end across restarts, so no line is lost when a service restarts, and a
partial last line is flushed (with a newline) when the service exits."""

from __future__ import annotations

import os

MAX_LINE = 64 * 1024  # a longer line is cut and written in pieces


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            import select

            select.select([], [fd], [])
            continue
        except BrokenPipeError:
            return  # nobody reads our output any more: drop it, keep supervising
        view = view[n:]


class PrefixedPipe:
    def __init__(self, name: str, fd: int, target: int) -> None:
        self.prefix = f"{name} | ".encode()
        self.fd = fd
        self.target = target
        self.partial = b""

    def read(self) -> bool:
        """Read what is there; write out complete lines. False at EOF."""
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return True
        if not data:
            self.flush_partial()
            return False
        self._emit(data)
        return True

    def drain(self) -> None:
        """Read until the pipe is empty, then flush a partial last line."""
        while True:
            try:
                data = os.read(self.fd, 65536)
            except (BlockingIOError, OSError):
                break
            if not data:
                break
            self._emit(data)
        self.flush_partial()

    def _emit(self, data: bytes) -> None:
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        while len(self.partial) > MAX_LINE:
            lines.append(self.partial[:MAX_LINE])
            self.partial = self.partial[MAX_LINE:]
        if lines:
            p = self.prefix
            write_all(self.target, b"".join(p + line + b"\n" for line in lines))

    def flush_partial(self) -> None:
        if self.partial:
            write_all(self.target, self.prefix + self.partial + b"\n")
            self.partial = b""
