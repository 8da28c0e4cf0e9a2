"""The core's one blocking point: a selector whose timeout comes from a heap of
deadlines (None when there is none: an idle tree never wakes up). A signal's handler
only adds its number to a set of pending signals; the byte the wakeup fd carries only
wakes the loop, which then dispatches every pending signal once (repeats coalesced).
The set, not the bytes, is the record: the wakeup socket holds a few hundred bytes, and
a burst of signals while the loop is busy must not lose a SIGTERM.

Each fd has at most one reader and one writer callback (a socket can have both)."""

from __future__ import annotations

import errno
import heapq
import itertools
import math
import selectors
import signal
import socket
import time
from typing import Callable

ACCEPT_EXHAUSTED = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)  # accept() out of resources
ACCEPT_PAUSE = 0.5  # seconds a listening socket is not read after that
MAX_WAIT = 86400.0  # seconds: the longest single wait (far below epoll's ~24.8 days)


class Timer:
    __slots__ = ("when", "callback", "cancelled", "_loop")

    def __init__(self, when: float, callback: Callable[[], None], loop: "Loop") -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False
        self._loop: "Loop | None" = loop  # None once it left the heap

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            if self._loop is not None:
                self._loop._cancelled += 1


class Loop:
    def __init__(self, on_error: Callable[[str, BaseException], None]) -> None:
        self.sel = selectors.DefaultSelector()
        self._heap: "list[tuple[float, int, Timer]]" = []
        self._seq = itertools.count()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._signal_handlers: "dict[int, Callable[[int], None]]" = {}
        self._pending_signals: "set[int]" = set()
        self._cancelled = 0  # cancelled timers still in the heap
        self.on_error = on_error
        self.errors_unlogged = 0  # internal errors whose logging failed too
        self.running = True
        self.add_reader(self._wake_r, self._read_signals)

    # --- signals ------------------------------------------------------------------------

    def handle_signals(self, handlers: "dict[int, Callable[[int], None]]") -> None:
        self._signal_handlers.update(handlers)
        # A full wakeup socket drops the byte, never the signal: the handler has already
        # recorded it, and a full socket is readable, so the loop wakes up anyway.
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        for signum in handlers:
            signal.signal(signum, self._record_signal)

    def _record_signal(self, signum, frame) -> None:
        self._pending_signals.add(signum)

    def _read_signals(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        # Swapped after the socket is drained: a signal whose handler runs from here on
        # lands in the new set and writes a byte into the (now empty) socket.
        pending, self._pending_signals = self._pending_signals, set()
        for signum in sorted(pending):
            handler = self._signal_handlers.get(signum)
            if handler is not None:
                self.guard(f"signal {signum}", handler, signum)

    # --- fds and timers -----------------------------------------------------------------

    def _set(self, fileobj, reader, writer) -> None:
        """Register fileobj's callbacks ((reader, writer): None for none)."""
        try:
            key = self.sel.get_key(fileobj)
        except (KeyError, ValueError):
            key = None
        events = (selectors.EVENT_READ if reader else 0) | (selectors.EVENT_WRITE if writer else 0)
        if key is None:
            if events:
                self.sel.register(fileobj, events, (reader, writer))
        elif not events:
            self.sel.unregister(fileobj)
        else:
            self.sel.modify(fileobj, events, (reader, writer))

    def _callbacks(self, fileobj) -> "tuple":
        try:
            return self.sel.get_key(fileobj).data
        except (KeyError, ValueError):
            return (None, None)

    def add_reader(self, fileobj, callback: Callable[[], None]) -> None:
        self._set(fileobj, callback, self._callbacks(fileobj)[1])

    def remove_reader(self, fileobj) -> None:
        writer = self._callbacks(fileobj)[1]
        try:
            self._set(fileobj, None, writer)
        except (KeyError, ValueError, OSError):
            pass  # closed meanwhile

    def accept_failed(self, log, what: str, lsock_or_fd, accept: Callable[[], None], e: OSError) -> None:
        """A listening socket's accept() failed with `e`. Out of fds (or kernel memory):
        stop accepting for a moment instead of spinning, and say so. Anything else (a
        client that gave up meanwhile) is nothing to do."""
        if e.errno in ACCEPT_EXHAUSTED:
            log.warning("retry_later", what=what, error=e.strerror)
            self.remove_reader(lsock_or_fd)
            self.call_later(ACCEPT_PAUSE, lambda: self.add_reader(lsock_or_fd, accept))

    def add_writer(self, fileobj, callback: Callable[[], None]) -> None:
        self._set(fileobj, self._callbacks(fileobj)[0], callback)

    def remove_writer(self, fileobj) -> None:
        reader = self._callbacks(fileobj)[0]
        try:
            self._set(fileobj, reader, None)
        except (KeyError, ValueError, OSError):
            pass

    def forget(self, fileobj) -> None:
        """Drop both callbacks (before the fd is closed)."""
        try:
            self.sel.unregister(fileobj)
        except (KeyError, ValueError):
            pass

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        if not math.isfinite(when):
            raise ValueError(f"a deadline must be finite, not {when}")
        timer = Timer(when, callback, self)
        heapq.heappush(self._heap, (when, next(self._seq), timer))
        return timer

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return self.call_at(time.monotonic() + delay, callback)

    def guard(self, what: str, fn, *args) -> None:
        """Run fn(*args); an exception is logged (on_error) and the loop goes on."""
        try:
            fn(*args)
        except Exception as e:  # the core must not die: log and go on
            try:
                self.on_error(what, e)
            except Exception:  # logging the error failed too: count it, still go on
                self.errors_unlogged += 1

    def _pop(self) -> Timer:
        timer = heapq.heappop(self._heap)[2]
        timer._loop = None
        if timer.cancelled:
            self._cancelled -= 1
        return timer

    def run_once(self) -> None:
        if self._cancelled > 64 and self._cancelled * 2 > len(self._heap):
            # Cancelled timers far in the future (a `ctl wait --timeout` answered early)
            # would otherwise stay in the heap until their time comes.
            self._heap = [e for e in self._heap if not e[2].cancelled]
            heapq.heapify(self._heap)
            self._cancelled = 0
        while self._heap and self._heap[0][2].cancelled:
            self._pop()
        timeout = None
        if self._heap:
            # epoll takes at most 2**31-1 ms: a far deadline is simply re-checked later.
            timeout = min(max(0.0, self._heap[0][0] - time.monotonic()), MAX_WAIT)
        try:
            ready = self.sel.select(timeout)
        except InterruptedError:
            ready = []
        except (OSError, ValueError, OverflowError) as e:  # never let the core die here
            self.on_error("select", e)
            ready = []
        fds = self.sel.get_map()
        for key, mask in ready:
            # A handler earlier in this batch may have closed and unregistered this fd
            # (a monitor's exit closes its output pipes), or changed its callbacks: skip
            # stale readiness (the selector is level-triggered: what is still ready is
            # reported again).
            if fds.get(key.fd) is not key:
                continue
            reader, writer = key.data
            if mask & selectors.EVENT_READ and reader is not None:
                self.guard(f"fd {key.fd}", reader)
            if mask & selectors.EVENT_WRITE and writer is not None and fds.get(key.fd) is key:
                self.guard(f"fd {key.fd}", writer)
        now = time.monotonic()
        while self._heap and self._heap[0][0] <= now:
            timer = self._pop()
            if not timer.cancelled:
                self.guard("timer", timer.callback)

    def run(self) -> None:
        while self.running:
            self.run_once()
