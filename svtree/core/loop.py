"""The core's one blocking point: a selector whose timeout comes from a heap of
deadlines (None when there is none: an idle tree never wakes up). Signals arrive as
bytes on the wakeup fd (the handlers do nothing) and are dispatched as loop events,
repeats coalesced."""

from __future__ import annotations

import heapq
import itertools
import math
import selectors
import signal
import socket
import time
from typing import Callable


MAX_WAIT = 86400.0  # seconds: the longest single wait (far below epoll's ~24.8 days)


class Timer:
    __slots__ = ("when", "callback", "cancelled")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def _nothing(signum, frame) -> None:
    """The handler of every signal we take: the wakeup fd carries the signal."""


class Loop:
    def __init__(self, on_error: Callable[[str, BaseException], None]) -> None:
        self.sel = selectors.DefaultSelector()
        self._heap: "list[tuple[float, int, Timer]]" = []
        self._seq = itertools.count()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._signal_handlers: "dict[int, Callable[[int], None]]" = {}
        self.on_error = on_error
        self.running = True
        self.sel.register(self._wake_r, selectors.EVENT_READ, self._read_signals)

    # --- signals ------------------------------------------------------------------------

    def handle_signals(self, handlers: "dict[int, Callable[[int], None]]") -> None:
        self._signal_handlers.update(handlers)
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        for signum in handlers:
            signal.signal(signum, _nothing)

    def _read_signals(self) -> None:
        seen: "list[int]" = []
        try:
            while True:
                data = self._wake_r.recv(4096)
                if not data:
                    break
                for b in data:
                    if b not in seen:
                        seen.append(b)
        except BlockingIOError:
            pass
        for signum in seen:
            handler = self._signal_handlers.get(signum)
            if handler is not None:
                self._guard(f"signal {signum}", handler, signum)

    # --- fds and timers -----------------------------------------------------------------

    def add_reader(self, fileobj, callback: Callable[[], None]) -> None:
        self.sel.register(fileobj, selectors.EVENT_READ, callback)

    def remove_reader(self, fileobj) -> None:
        try:
            self.sel.unregister(fileobj)
        except (KeyError, ValueError):
            pass

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        if not math.isfinite(when):
            raise ValueError(f"a deadline must be finite, not {when}")
        timer = Timer(when, callback)
        heapq.heappush(self._heap, (when, next(self._seq), timer))
        return timer

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return self.call_at(time.monotonic() + delay, callback)

    def _guard(self, what: str, fn, *args) -> None:
        try:
            fn(*args)
        except Exception as e:  # the core must not die: log and go on
            self.on_error(what, e)

    def run_once(self) -> None:
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
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
        for key, _ in ready:
            # A handler earlier in this batch may have closed and unregistered this fd
            # (a monitor's exit closes its output pipes): skip stale readiness.
            if fds.get(key.fd) is not key:
                continue
            self._guard(f"fd {key.fd}", key.data)
        now = time.monotonic()
        while self._heap and self._heap[0][0] <= now:
            _, _, timer = heapq.heappop(self._heap)
            if not timer.cancelled:
                self._guard("timer", timer.callback)

    def run(self) -> None:
        while self.running:
            self.run_once()
