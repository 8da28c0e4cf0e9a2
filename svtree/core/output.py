"""svtree's stdout and stderr, written without ever blocking PID 1.

Each stream is a bounded queue of bytes, written when its fd has room (a writer callback
of the loop) through a description of its own (osutil.NonBlockingWriter: the fd itself
is shared with the main command and `raw` services, and stays blocking for them).

Service output in `prefix` mode: each line becomes `NAME | line` on svtree's stdout
(stderr lines on stderr). The core holds the read end of each pipe; the monitor keeps
the write end across restarts, so no line is lost when a service restarts, and a
partial last line is flushed (with a newline) when the service exits.

Backpressure: while a stream holds LIMIT bytes or more, the pipes that feed it are not
read (each pipe stops itself the next time it is readable); the services then block in
their own writes, and no line is lost. Reading resumes once the stream is down to
RESUME. Everything else in the core goes on meanwhile.

svtree's own lines (its log, the "N services up" line) go through the same queues and
never wait: they may fill the stream up to LIMIT, and have OWN_RESERVE bytes of their
own beyond that (service output cannot take it); what finds no room is dropped and
counted, and the count is said (`on_dropped`) once the stream moves again.

The log book (core/logbuffer.py, for `svtree ctl logs`) is fed here too: each complete
line a pipe yields goes to its service's buffer as it goes to the stream, so the book
costs no read of its own, and it holds exactly what svtree printed. Between two runs of
a service the book gets a marker line once everything the first run wrote is read
(`run_ended` records where that is in each pipe).
"""

from __future__ import annotations

import array
import collections
import errno
import fcntl
import os
import select
import termios
import time
from typing import Callable

from svtree import osutil

MAX_LINE = 64 * 1024  # a longer line is cut and written in pieces
READ_SIZE = 64 * 1024
LIMIT = 1 << 20  # bytes of service output a stream holds before its pipes are paused
RESUME = LIMIT // 2
OWN_RESERVE = 64 * 1024  # room above LIMIT for svtree's own lines (~500 of them)
WRITE_CHUNKS = 512  # buffers per writev (below IOV_MAX)
EXIT_FLUSH = 2.0  # seconds svtree waits at exit for room in a stalled stdout/stderr


def pending_bytes(fd: int) -> int:
    """How many bytes a pipe holds right now (FIONREAD)."""
    buf = array.array("i", [0])
    try:
        fcntl.ioctl(fd, termios.FIONREAD, buf, True)
    except OSError:
        return 0
    return buf[0]


class Stream:
    """One of svtree's output streams (fd 1 or 2)."""

    def __init__(self, loop, fd: int) -> None:
        self.loop = loop
        self.fd = fd
        self.writer = osutil.NonBlockingWriter(fd)
        # (bytes, is one of svtree's own lines): written in order
        self.chunks: "collections.deque[tuple[bytes, bool]]" = collections.deque()
        self.size = 0
        self.own = 0  # bytes of svtree's own lines in the queue
        self.waiting = False  # a writer callback is registered (no room last time)
        self.broken = self.writer.kind == "closed"  # nobody will ever read: discard
        self.dropped = 0  # own lines dropped since the last report
        self.lost = 0  # bytes that could not be written (EIO, ENOSPC), or left at exit
        self.paused: "list[PrefixedPipe]" = []
        self.on_dropped: "Callable[[int], None] | None" = None
        self._reporting = False

    def full(self) -> bool:
        return self.size >= LIMIT and not self.broken

    def put(self, data: bytes) -> None:
        """Service output: always taken (its reader checked `full` before reading)."""
        if self.broken or not data:
            return
        self.chunks.append((data, False))
        self.size += len(data)
        if not self.waiting:
            self.flush()

    def put_own(self, data: bytes) -> bool:
        """One of svtree's own lines: taken if there is room, else dropped and counted."""
        if self.broken:
            return False
        if self.size + len(data) > LIMIT and self.own + len(data) > OWN_RESERVE:
            self.dropped += 1
            return False
        self.chunks.append((data, True))
        self.size += len(data)
        self.own += len(data)
        if not self.waiting:
            self.flush()
        return True

    def flush(self) -> None:
        """Write what fits now; wait for room (a writer callback) if something is left."""
        moved = False
        while self.chunks:
            try:
                n = self.writer.write(_first(self.chunks, WRITE_CHUNKS))
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                self._fail(e)
                break
            if n <= 0:
                break
            moved = True
            self._consume(n)
        if self.chunks and not self.broken:
            if not self.waiting:
                self.waiting = True
                self.loop.add_writer(self.writer, self.flush)
        elif self.waiting:
            self.waiting = False
            self.loop.remove_writer(self.writer)
        if moved or self.broken:
            self._moved()

    def _consume(self, n: int) -> None:
        self.size -= n
        while n:
            first, own = self.chunks[0]
            k = min(n, len(first))
            if own:
                self.own -= k
            if k == len(first):
                self.chunks.popleft()
            else:
                self.chunks[0] = (first[k:], own)
            n -= k

    def _fail(self, e: OSError) -> None:
        """EPIPE and the like: nobody will read this stream again (drop everything from
        now on, and never hold a service back for it). Other errors (EIO, ENOSPC): what
        is queued is lost, later output is tried again."""
        self.lost += self.size
        self.chunks.clear()
        self.size = self.own = 0
        if isinstance(e, (BrokenPipeError, ConnectionError)) or e.errno in (errno.EBADF, errno.EINVAL):
            self.broken = True

    def _moved(self) -> None:
        if self.size <= RESUME and self.paused:
            paused, self.paused = self.paused, []
            for pipe in paused:
                pipe.resume()
        if self.dropped and self.on_dropped is not None and not self._reporting \
                and (self.size + 256 <= LIMIT or self.own + 256 <= OWN_RESERVE):
            n, self.dropped = self.dropped, 0
            self._reporting = True
            try:
                self.on_dropped(n)
            finally:
                self._reporting = False

    def flush_until(self, deadline: float) -> None:
        """At exit: block, at most until deadline, writing what is queued. What is left
        then is lost (counted in `lost`)."""
        if self.waiting:
            self.waiting = False
            self.loop.remove_writer(self.writer)
        while self.chunks and not self.broken:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                n = self.writer.write(_first(self.chunks, WRITE_CHUNKS))
            except (BlockingIOError, InterruptedError):
                try:
                    select.select([], [self.writer], [], left)
                except (OSError, ValueError):
                    break
                continue
            except OSError as e:
                self._fail(e)
                break
            self._consume(n)
        self.lost += self.size


def _first(chunks: "collections.deque[tuple[bytes, bool]]", n: int) -> "list[bytes]":
    out = []
    for data, _ in chunks:
        if len(out) == n:
            break
        out.append(data)
    return out


def write_bounded(fd: int, data: bytes, seconds: float) -> None:
    """Write data to fd, waiting at most `seconds` for room (before the loop runs)."""
    stream = Stream(None, fd)  # no loop: only flush_until, which waits by itself
    stream.chunks.append((data, True))
    stream.size = stream.own = len(data)
    stream.flush_until(time.monotonic() + seconds)
    stream.writer.close()


class PrefixedPipe:
    """The read end of one service pipe (its stdout or its stderr)."""

    def __init__(self, output: "Output", name: str, fd: int, stream: Stream, target: int) -> None:
        self.output = output
        self.name = name
        self.prefix = f"{name} | ".encode()
        self.fd = fd
        self.stream = stream
        self.target = target  # 1 or 2: stdout or stderr (logbuffer.STDOUT, STDERR)
        self.partial = b""
        self.consumed = 0  # bytes read so far
        # Where a run of the service ended (in `consumed` terms), and what to call then:
        # its partial last line is flushed once everything it wrote before is read.
        self.run_ends: "collections.deque[tuple[int, Callable[[], None]]]" = collections.deque()
        output.loop.add_reader(fd, self.on_readable)

    # --- reading ------------------------------------------------------------------------

    def on_readable(self) -> None:
        if self.fd < 0:
            return
        if self.stream.full():
            # Backpressure: stop reading until the stream has room again; the service
            # blocks in its own write meanwhile.
            self.output.loop.remove_reader(self.fd)
            self.stream.paused.append(self)
            return
        if not self.read():
            self.close()

    def resume(self) -> None:
        if self.fd >= 0:
            self.output.loop.add_reader(self.fd, self.on_readable)

    def read(self, limit: int = READ_SIZE) -> bool:
        """Read what is there (at most limit bytes, never past the end of a run); write
        out complete lines. False at EOF."""
        self._run_ends_reached()
        if self.run_ends:
            limit = min(limit, self.run_ends[0][0] - self.consumed)
        try:
            data = os.read(self.fd, limit)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            data = b""
        if not data:
            self.flush_partial()
            return False
        self.consumed += len(data)
        self._emit(data)
        self._run_ends_reached()
        return True

    def _run_ends_reached(self) -> None:
        while self.run_ends and self.run_ends[0][0] <= self.consumed:
            reached = self.run_ends.popleft()[1]
            self.flush_partial()
            reached()

    def run_ended(self, reached: "Callable[[], None]") -> None:
        """The service's run has exited: all it wrote is in the pipe now (what its
        leftovers write later belongs to the next line). Flush its partial last line
        once that much is read, then call `reached`."""
        if self.fd >= 0:
            self.run_ends.append((self.consumed + pending_bytes(self.fd), reached))
            self._run_ends_reached()
        else:
            reached()

    def drain_and_close(self) -> None:
        """The monitor is gone and what it ran was killed: read what the pipe holds now
        (bounded: a leftover that still writes cannot keep us here), flush, close. This
        ignores the stream's limit, by at most one pipe's capacity."""
        if self.fd < 0:
            return
        end = self.consumed + pending_bytes(self.fd)
        while self.consumed < end and self.read(end - self.consumed):
            pass
        self.flush_partial()
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            self.output.loop.forget(self.fd)
            os.close(self.fd)
            self.fd = -1
        self.output.pipes.discard(self)
        while self.run_ends:  # nothing more will be read: every run it held has ended
            self.run_ends.popleft()[1]()

    # --- writing ------------------------------------------------------------------------

    def _emit(self, data: bytes) -> None:
        data = self.partial + data
        lines = data.split(b"\n")
        self.partial = lines.pop()
        while len(self.partial) > MAX_LINE:
            lines.append(self.partial[:MAX_LINE])
            self.partial = self.partial[MAX_LINE:]
        if lines:
            p = self.prefix
            self.stream.put(b"".join(p + line + b"\n" for line in lines))
            book = self.output.book
            if book is not None:
                book.add(self.name, self.target, b"\n".join(lines) + b"\n", len(lines), time.time())

    def flush_partial(self) -> None:
        if self.partial:
            self.stream.put(self.prefix + self.partial + b"\n")
            book = self.output.book
            if book is not None:
                book.add_line(self.name, self.target, self.partial, time.time())
            self.partial = b""


class Output:
    """svtree's two streams, the service pipes that feed them, and the log book they
    feed too (None in `raw` mode: then no service output passes through svtree)."""

    def __init__(self, loop, book=None) -> None:
        """`book`: core/logbuffer.py's LogBook (not imported: it imports this module)."""
        self.loop = loop
        self.streams = {1: Stream(loop, 1), 2: Stream(loop, 2)}
        self.pipes: "set[PrefixedPipe]" = set()
        self.book = book

    def pipe(self, name: str, fd: int, target: int) -> PrefixedPipe:
        os.set_blocking(fd, False)
        p = PrefixedPipe(self, name, fd, self.streams[target], target)
        self.pipes.add(p)
        return p

    # --- a service's runs, for the log book ------------------------------------------

    def run_ended(self, pipes: "list[PrefixedPipe]", how: str) -> None:
        """A run of the service these pipes carry has exited (`how`: "exit 1"): once
        all it wrote is read from every pipe, the book hears of it."""
        left = [len(pipes)]

        def reached() -> None:
            left[0] -= 1
            if left[0] == 0 and self.book is not None:
                self.book.run_output_read(pipes[0].name, how, time.time())

        for pipe in pipes:
            pipe.run_ended(reached)

    def run_started(self, name: str) -> None:
        if self.book is not None:
            self.book.run_started(name, time.time())

    def forget(self, name: str) -> None:
        """A service a reload removed: its lines go."""
        if self.book is not None:
            self.book.forget(name)

    def keep_lines(self, lines: int) -> None:
        """svtree.toml's log_buffer, at start or after a reload."""
        if self.book is not None and self.book.max_lines != lines:
            self.book.resize(lines)

    def own_line(self, target: int, text: str) -> bool:
        """One of svtree's own lines (text ends with a newline); never blocks."""
        return self.streams[target].put_own(text.encode(errors="backslashreplace"))

    def on_dropped(self, callback: "Callable[[int], None]") -> None:
        for s in self.streams.values():
            s.on_dropped = callback

    def flush_at_exit(self, seconds: float) -> int:
        """Read what the pipes still hold, then write everything out, waiting at most
        `seconds` for room in all. Returns the bytes left unwritten."""
        for p in list(self.pipes):
            p.drain_and_close()
        deadline = time.monotonic() + seconds
        for s in self.streams.values():
            s.flush_until(deadline)
        return sum(s.lost for s in self.streams.values())
