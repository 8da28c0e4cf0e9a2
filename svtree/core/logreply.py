"""The answer to `svtree ctl logs`: lines streamed from the services' log buffers.

On the control socket, after the request, svtree sends JSON lines:

    {"ok": true}                                        (or {"ok": false, "error": ...})
    {"service": "web", "stream": "stdout", "time": 1767225600.25, "lines": ["...", ...]}
    {"service": "web", "dropped": 120}                  (lines this client missed)
    {"end": true}                                       (all sent; with -f: svtree exits)

Lines are the bytes the service wrote, decoded with surrogateescape (ctl writes the same
bytes back); `stream` is "stdout", "stderr" or "svtree" (svtree's own marker lines, such
as `--- web restarted (exit 1) ---`); `time` is when svtree read them, Unix seconds.
Several services are merged in time order.

A slow client never holds svtree back, and costs it no memory: it reads from a cursor
in each buffer (svtree/core/logbuffer.py), never from a copy. It is sent a chunk at a
time, when its socket has room; if it falls so far behind that the buffer has dropped
lines it had not read, it is told how many (`dropped`) and goes on from the oldest line
held. Drop-and-mark rather than disconnect: `ctl logs -f` piped into a pager the user
left paused then picks up where it can, saying what it missed, and the buffer is not
held hostage by the slowest reader. Without -f, a client that reads nothing for
STALL seconds is closed.
"""

from __future__ import annotations

import heapq
import socket
from typing import Callable

from svtree import wire
from svtree.core.logbuffer import STREAM_NAMES, Cursor, LogBook

CHUNK = 64 * 1024  # bytes encoded per fill
FILLS_PER_TURN = 4  # chunks sent per turn of the loop, at most (then the loop goes on)
STALL = 5.0  # seconds a client without -f may go without reading anything
MAX_CLIENTS = 32  # `ctl logs` answers at once


def encode_record(name: str, record: "tuple[float, int, bytes, int]") -> bytes:
    when, stream, blob, _ = record
    lines = blob.decode("utf-8", "surrogateescape").split("\n")[:-1]
    return wire.encode_line({"service": name, "stream": STREAM_NAMES[stream], "time": when, "lines": lines})


class LogsReply:
    """One `ctl logs` client from its request on: the control socket hands it over."""

    def __init__(self, loop, sock: socket.socket, book: LogBook, names: "list[str]",
                 last: "int | None", follow: bool, on_close: "Callable[[LogsReply], None]") -> None:
        self.loop = loop
        self.sock = sock
        self.book = book
        self.follow = follow
        self.every = not names  # all services, those a reload adds included
        self.on_close = on_close
        self.cursors: "dict[str, Cursor]" = {
            name: book.buffer(name).cursor(last, follow) for name in (names or list(book.buffers))}
        self.out = memoryview(wire.encode_line({"ok": True}))
        self.ending = False  # the end line is queued: close once it is out
        self.closed = False
        self.armed = False  # a writer callback is registered
        self.timer = None
        if follow:
            book.watch(self.on_lines)
        loop.add_reader(sock, self.on_readable)
        self.pump()

    # --- the client's side ------------------------------------------------------------

    def on_readable(self) -> None:
        """The client says nothing after its request: data is dropped, EOF ends it."""
        try:
            data = self.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.close()

    def on_lines(self, name: str) -> None:
        """New lines in `name`'s buffer (a follower only)."""
        buf = self.book.buffers.get(name)
        c = self.cursors.get(name)
        if c is None and not self.every:
            return
        if c is None or c.buffer is not buf:  # a service added (or added again) by a reload
            self.cursors[name] = buf.cursor(None, True)
        if not self.armed:
            self.armed = True
            self.loop.add_writer(self.sock, self.pump)

    # --- sending ----------------------------------------------------------------------

    def pump(self) -> None:
        for _ in range(FILLS_PER_TURN):
            if not self.out:
                if self.ending:
                    self.close()
                    return
                chunk = self.fill(CHUNK)
                if not chunk:
                    if self.follow:
                        self._disarm()
                        return
                    chunk = wire.encode_line({"end": True})
                    self.ending = True
                self.out = memoryview(chunk)
            try:
                n = self.sock.send(self.out, socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.close()
                return
            self.out = self.out[n:]
            self._progress()
        if not self.armed:  # more to send once the socket has room, or on the next turn
            self.armed = True
            self.loop.add_writer(self.sock, self.pump)

    def _progress(self) -> None:
        if not self.follow:
            if self.timer is not None:
                self.timer.cancel()
            self.timer = self.loop.call_later(STALL, self.close)

    def _disarm(self) -> None:
        if self.armed:
            self.armed = False
            self.loop.remove_writer(self.sock)

    def fill(self, budget: int) -> bytes:
        """The next records of every cursor, oldest first, about `budget` bytes."""
        parts: "list[bytes]" = []
        heap: "list[tuple[float, str]]" = []
        for name, c in self.cursors.items():
            missed = c.buffer.catch_up(c)
            if missed:
                parts.append(wire.encode_line({"service": name, "dropped": missed}))
            when = c.buffer.peek_time(c)
            if when is not None:
                heap.append((when, name))
        heapq.heapify(heap)
        size = 0
        while heap and size < budget:
            name = heap[0][1]
            c = self.cursors[name]
            data = encode_record(name, c.buffer.take(c))
            parts.append(data)
            size += len(data)
            when = c.buffer.peek_time(c)
            if when is None:
                heapq.heappop(heap)
            else:
                heapq.heapreplace(heap, (when, name))
        return b"".join(parts)

    def end(self, reason: str) -> None:
        """svtree exits: what is queued, the lines not sent yet (a chunk at most), then
        the end line, as far as the socket takes them now (the loop is over); close."""
        if self.closed:
            return
        try:
            data = bytes(self.out) + self.fill(CHUNK) + wire.encode_line({"end": True, "reason": reason})
            self.sock.send(data, socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)
        except OSError:
            pass
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
        if self.follow:
            self.book.unwatch(self.on_lines)
        self.loop.forget(self.sock)
        try:
            self.sock.close()
        except OSError:
            pass
        self.on_close(self)


def validate(req: dict) -> "tuple[int | None, bool]":
    """(lines, follow) of a `logs` request; ValueError naming the bad field."""
    last = req.get("lines")
    if last is not None and (isinstance(last, bool) or not isinstance(last, int) or last < 0):
        raise ValueError(f"lines must be a number of lines (0 or more), not {last!r}")
    follow = req.get("follow", False)
    if not isinstance(follow, bool):
        raise ValueError(f"follow must be true or false, not {follow!r}")
    return last, follow

