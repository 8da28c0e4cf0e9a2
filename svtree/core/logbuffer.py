"""The last lines of each service's output, kept in memory for `svtree ctl logs`.

A service's lines live in one `bytearray` as records, oldest first: a header (how many
bytes, how many lines, the time they were read, the stream) and the lines themselves,
each ending in a newline. One record holds the lines of one read of the pipe (they
arrived together, so they share a time); the header costs 17 bytes per record and no
Python object exists per line, so 100 services x 1000 lines of 100 bytes take ~12 MB.

Bounds, whatever the services print: at most `max_lines` lines (svtree.toml's
`log_buffer`), each at most MAX_LINE bytes (output.py cuts longer ones, as it does for
svtree's stdout), and at most BYTES_PER_LINE bytes per line on average: a service that
prints long lines keeps fewer of them. The oldest lines go first, a record at a time or
part of one.

Readers hold a `Cursor`: where they are, counted in lines (`seq`, numbering every line
the service ever printed) and in bytes (`pos`, counting every byte ever stored, so that
it stays valid while older records are dropped). A reader that falls behind by more
than the buffer holds finds its cursor overtaken: it is told how many lines it missed
and goes on from the oldest line still held. So a slow reader never holds memory of
its own and never holds the writer back.
"""

from __future__ import annotations

import struct
from typing import Callable

from svtree.core.output import MAX_LINE

HEADER = struct.Struct("<IIdB")  # bytes of lines, lines, time (Unix seconds), stream
MARKER, STDOUT, STDERR = 0, 1, 2  # MARKER: a line of svtree's own (`--- web restarted ---`)
STREAM_NAMES = {MARKER: "svtree", STDOUT: "stdout", STDERR: "stderr"}
BYTES_PER_LINE = 1024  # the average a line may take before older lines go early


class Cursor:
    """A reader's place in one LogBuffer."""

    __slots__ = ("buffer", "pos", "seq", "skip", "stop")

    def __init__(self, buffer: "LogBuffer", pos: int, seq: int, skip: int, stop: "int | None") -> None:
        self.buffer = buffer
        self.pos = pos  # absolute offset of the record it reads next
        self.seq = seq  # the number of that record's first line
        self.skip = skip  # lines of that record already read (or not wanted)
        self.stop = stop  # the number of the first line not to read; None: follow


class LogBuffer:
    """One service's lines."""

    def __init__(self, max_lines: int) -> None:
        self.buf = bytearray()
        self.head = 0  # absolute offset of buf[0]: bytes ever dropped
        self.first = 0  # the number of the oldest line held
        self.lines = 0  # lines held
        self.runs = 0  # times the service's process started (see LogBook.run_started)
        self.ended: "str | None" = None  # how the last run ended, its output all read
        self.restarted = False  # a run started before the previous one's output was read
        self.marked_early = False  # the marker went in before the next run's report came
        self.resize(max_lines)

    def resize(self, max_lines: int) -> None:
        self.max_lines = max_lines
        self.max_bytes = max_lines * BYTES_PER_LINE + MAX_LINE + HEADER.size if max_lines else 0
        self._trim()

    @property
    def end(self) -> int:
        return self.head + len(self.buf)

    @property
    def next_seq(self) -> int:
        return self.first + self.lines

    def add(self, stream: int, blob: bytes, nlines: int, when: float) -> None:
        """Store `nlines` complete lines (each ending in a newline, none longer than
        MAX_LINE plus its newline) read at `when`."""
        if nlines > self.max_lines:  # all it may hold, and more: keep the newest
            self.clear()
            self.first += nlines - self.max_lines
            if not self.max_lines:
                return
            blob = blob[_nth_line_end(blob, nlines - self.max_lines):]
            nlines = self.max_lines
        if not nlines:
            return
        self.buf += HEADER.pack(len(blob), nlines, when, stream)
        self.buf += blob
        self.lines += nlines
        self._trim()

    def add_line(self, stream: int, line: bytes, when: float) -> None:
        """One line without its newline (cut at MAX_LINE)."""
        self.add(stream, line[:MAX_LINE] + b"\n", 1, when)

    def _trim(self) -> None:
        """Drop the oldest lines until both bounds hold."""
        buf = self.buf
        while self.lines > self.max_lines or len(buf) > self.max_bytes:
            size, n, when, stream = HEADER.unpack_from(buf, 0)
            lines_over = self.lines - self.max_lines
            bytes_over = len(buf) - self.max_bytes
            # The fewest of the record's first lines that satisfy both bounds: k lines,
            # `cut` bytes. Dropping part of a record frees exactly `cut` bytes: its
            # header is written again just before the lines that stay.
            k = cut = 0
            while k < n and (k < lines_over or cut < bytes_over):
                cut = buf.index(b"\n", HEADER.size + cut) - HEADER.size + 1
                k += 1
            if k == n:
                cut = HEADER.size + size
            else:
                buf[cut:cut + HEADER.size] = HEADER.pack(size - cut, n - k, when, stream)
            del buf[:cut]
            self.head += cut
            self.first += k
            self.lines -= k

    def clear(self) -> None:
        self.head = self.end
        self.first = self.next_seq
        self.lines = 0
        self.buf = bytearray()

    # --- reading ----------------------------------------------------------------------

    def cursor(self, last: "int | None" = None, follow: bool = False) -> Cursor:
        """A cursor at the start of the last `last` lines (None: all held); it stops at
        what is held now unless it follows."""
        stop = None if follow else self.next_seq
        skip = self.lines - last if last is not None and last < self.lines else 0
        pos, seq = self.head, self.first
        buf = self.buf
        while skip:
            size, n = HEADER.unpack_from(buf, pos - self.head)[:2]
            if n > skip:
                break
            skip -= n
            seq += n
            pos += HEADER.size + size
        return Cursor(self, pos, seq, skip, stop)

    def catch_up(self, c: Cursor) -> int:
        """Move an overtaken cursor to the oldest line held; return how many lines it
        missed (0 if it was not overtaken)."""
        # A cursor is on a record's first line; a record cut at its start moves `head`
        # past it, and lines dropped without being stored (`add` of more than the buffer
        # holds) move `first` past it.
        if c.pos >= self.head and c.seq >= self.first:
            return 0
        seen = c.seq + c.skip
        missed = max(0, min(self.first, c.stop if c.stop is not None else self.first) - seen)
        c.skip = max(0, seen - self.first)
        c.pos, c.seq = self.head, self.first
        return missed

    def done(self, c: Cursor) -> bool:
        """Nothing more to read now (for a cursor that follows: until the next add)."""
        if c.stop is not None and c.seq + c.skip >= c.stop:
            return True
        return max(c.pos, self.head) >= self.end

    def peek_time(self, c: Cursor) -> "float | None":
        """The time of the next record, if there is one (call catch_up first)."""
        if self.done(c):
            return None
        return HEADER.unpack_from(self.buf, c.pos - self.head)[2]

    def take(self, c: Cursor) -> "tuple[float, int, bytes, int] | None":
        """The next record: (time, stream, its lines not yet read, how many), or None.
        Call catch_up first."""
        if self.done(c):
            return None
        off = c.pos - self.head
        size, n, when, stream = HEADER.unpack_from(self.buf, off)
        start = off + HEADER.size
        with memoryview(self.buf) as view:  # one copy (released before the buffer changes)
            blob = bytes(view[start:start + size])
        if c.skip:
            blob = blob[_nth_line_end(blob, c.skip):]
        # A record never goes past a cursor's stop: the stop was the end of the buffer
        # when the cursor was made, and records are only ever cut at their start.
        count = n - c.skip
        c.pos += HEADER.size + size
        c.seq += n
        c.skip = 0
        return when, stream, blob, count


def _nth_line_end(blob: bytes, n: int) -> int:
    """The offset just after the n-th newline of blob (n >= 1)."""
    pos = 0
    for _ in range(n):
        pos = blob.index(b"\n", pos) + 1
    return pos


class LogBook:
    """Every service's LogBuffer, and who wants to hear of new lines."""

    def __init__(self, max_lines: int) -> None:
        self.max_lines = max_lines
        self.buffers: "dict[str, LogBuffer]" = {}
        self.watchers: "list[Callable[[str], None]]" = []

    def buffer(self, name: str) -> LogBuffer:
        buf = self.buffers.get(name)
        if buf is None:
            buf = self.buffers[name] = LogBuffer(self.max_lines)
        return buf

    def add(self, name: str, stream: int, blob: bytes, nlines: int, when: float) -> None:
        buf = self.buffer(name)
        self._next_run_writes(name, buf, when)
        buf.add(stream, blob, nlines, when)
        self._tell(name)

    def add_line(self, name: str, stream: int, line: bytes, when: float) -> None:
        buf = self.buffer(name)
        if stream != MARKER:
            self._next_run_writes(name, buf, when)
        buf.add_line(stream, line, when)
        self._tell(name)

    def run_started(self, name: str, when: float) -> None:
        """The service's process started (its monitor reported the pid). From its second
        start on, a marker line goes between the runs: `--- web restarted (exit 1) ---`,
        once the previous run's output is all read (`run_output_read`), whichever of the
        two comes last: the new run's report may come before the old run's last lines.
        And a line read after the old run's output was all read is the next run's, even
        when it comes before that run's report (the pipe and the monitor's socket are read
        in no set order): the marker goes before it."""
        buf = self.buffer(name)
        buf.runs += 1
        if buf.runs == 1:
            return
        if buf.marked_early:
            buf.marked_early = False
        elif buf.ended is not None:
            self._marker(name, buf, when)
        else:
            buf.restarted = True

    def run_output_read(self, name: str, how: str, when: float) -> None:
        """Everything a run of the service wrote has been read; `how` it ended."""
        buf = self.buffer(name)
        buf.ended = how
        if buf.restarted:
            self._marker(name, buf, when)

    def _next_run_writes(self, name: str, buf: "LogBuffer", when: float) -> None:
        if buf.ended is not None and not buf.restarted:
            self._marker(name, buf, when)
            buf.marked_early = True

    def _marker(self, name: str, buf: "LogBuffer", when: float) -> None:
        how, buf.ended, buf.restarted = buf.ended, None, False
        buf.add_line(MARKER, f"--- {name} restarted ({how}) ---".encode(), when)
        self._tell(name)

    def _tell(self, name: str) -> None:
        for watcher in list(self.watchers):
            watcher(name)

    def forget(self, name: str) -> None:
        """A service a reload removed: its lines go (readers keep what they hold)."""
        self.buffers.pop(name, None)

    def resize(self, max_lines: int) -> None:
        self.max_lines = max_lines
        for buf in self.buffers.values():
            buf.resize(max_lines)

    def watch(self, callback: "Callable[[str], None]") -> None:
        self.watchers.append(callback)

    def unwatch(self, callback: "Callable[[str], None]") -> None:
        if callback in self.watchers:
            self.watchers.remove(callback)
