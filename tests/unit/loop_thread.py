"""A core Loop run by a thread of its own (as it runs alone in PID 1), for tests of the
parts that live in the loop: a heartbeat timer every 20 ms lets it see `stop()`."""

from __future__ import annotations

import threading

from svtree.core.loop import Loop


class LoopThread:
    def __init__(self) -> None:
        self.errors: list = []  # (where, exception) the loop's guard caught
        self.loop = Loop(lambda what, e: self.errors.append((what, e)))
        self.turns = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "LoopThread":
        self._thread.start()
        return self

    def _heartbeat(self) -> None:
        if not self._stop.is_set():
            self.loop.call_later(0.02, self._heartbeat)

    def _run(self) -> None:
        self._heartbeat()
        while not self._stop.is_set():
            self.loop.run_once()
            self.turns += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
