"""Reload: compile the tree again, diff by content digest, apply only the difference.

Triggers: the watcher process (changes that can change the plan, under the plan's
watch_roots(): DIR, and for the s6-overlay layout its cont-init.d, cont-finish.d, s6-rc.d
and user-bundles.d; bursts coalesced by a quiet period), SIGHUP, and `svtree ctl reload`.
The compile runs in a child process (core/compiling.py) with the plan's `reload_timeout`
as its deadline, so a hung filesystem or a slow user lookup delays the reload, never
PID 1. An invalid tree, or a compile that overruns, changes nothing. One compile runs at
a time; a reload that arrives meanwhile, or while another is still being applied (its
services still stopping), waits and is merged with any other that arrives meanwhile;
during shutdown reloads are ignored.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Callable

from svtree import osutil
from svtree.core.compiling import Compilation, Outcome
from svtree.core.helper import Helper
from svtree.errors import plural
from svtree.plan import diff

WATCHER_NAME = b"svtree-watcher"
QUIET = 0.2  # a burst of edits ends after this long without a change (> the watcher's DEBOUNCE_MS)
MAX_WAIT = 2.0  # ... or this long after its first change, whatever comes first
WATCHER_RESTART_DELAY = 1.0
WATCHER_BOOT_WAIT = 1.0  # the watcher starts once the tree is up, or this long after boot began
RETRY_DELAY = 1.0  # after a failed fork of the compile
SHUTTING_DOWN = {"ok": False, "error": "svtree is shutting down; reload ignored"}


class Reloader:
    def __init__(self, loop, log, core, watch: bool, cache: "dict | None" = None) -> None:
        self.loop = loop
        self.log = log
        self.core = core  # only through its interface: plan, apply_plan, reload_settled, ...
        self.watch = watch
        self.cache = cache  # definition files the last compile read (compiler/files.py)
        self.compiling: "Compilation | None" = None  # until its child is reaped
        self.queued = False
        self.replies: "list[Callable[[dict], None]]" = []
        self.sources: "list[str]" = []
        self.burst_timer = None
        self.burst_started: "float | None" = None
        self.watcher_pid: "int | None" = None
        self.watcher_fd: "int | None" = None
        self.watched: "tuple[str, ...]" = ()  # the running watcher's directories
        self.watcher_error: "str | None" = None  # why it could not watch (it said so)
        self.rewatching = False  # the watcher was stopped to watch other directories
        self.boot_wait = None  # until the watcher's first start (start_watcher_after_boot)
        self.applied = 0  # reloads compiled and applied (/metrics: svtree_reloads_total)
        self.rejected = 0  # reloads that changed nothing: invalid tree, failed or slow compile
        core.subscribe(on_settled=self._maybe_run_queued)

    # --- the watcher process ------------------------------------------------------------

    def start_watcher_after_boot(self) -> None:
        """Start the watcher once every service is up, or WATCHER_BOOT_WAIT seconds after
        the boot began, whichever comes first: its setup and the reload its `ready` asks
        for (a compile of the whole tree, in a child) would take CPU from the services
        starting (bench/run.py, 100 services on 2 cores, the watcher forked right after
        the monitors: 495 ms to boot against 393 with --no-watch). Nothing is missed
        meanwhile: that reload sees every change made before."""
        if not self.watch:
            return
        self.boot_wait = self.loop.call_later(WATCHER_BOOT_WAIT, self._boot_over)
        self.core.subscribe(on_change=self._maybe_booted)
        self._maybe_booted()

    def _maybe_booted(self) -> None:
        if self.boot_wait is not None and self.core.booted:
            self._boot_over()

    def _boot_over(self) -> None:
        if self.boot_wait is not None:
            self.boot_wait.cancel()
            self.boot_wait = None
            self.start_watcher()

    def start_watcher(self) -> None:
        """Fork the watcher (svtree/watcher.py): a helper child that keeps only the write
        end of its pipe to us; no deadline, and a new one a while after it died."""
        if not self.watch or self.core.shutting_down:
            return
        roots = self.core.plan.watch_roots()
        r, w = os.pipe()

        def body() -> None:
            from svtree.watcher import watch

            os._exit(watch(list(roots), w))

        try:
            helper = Helper(self.loop, self.core.watch_child, WATCHER_NAME, [w], body, None,
                            on_exit=self.on_watcher_exit)
        except OSError as e:
            os.close(r)
            self.log.warning("retry_later", what="start watcher", error=e.strerror)
            self.loop.call_later(WATCHER_RESTART_DELAY, self.start_watcher)
            return
        finally:
            os.close(w)
        os.set_blocking(r, False)
        self.watcher_pid, self.watcher_fd = helper.pid, r
        self.watched, self.watcher_error = tuple(d for _, d in roots), None
        self.loop.add_reader(r, self.on_watcher_output)

    def on_watcher_output(self) -> None:
        try:
            data = os.read(self.watcher_fd, 4096)
        except BlockingIOError:
            return
        if not data:
            self.loop.remove_reader(self.watcher_fd)
            os.close(self.watcher_fd)
            self.watcher_fd = None
            return
        for line in data.decode(errors="replace").splitlines():
            if line == "ready":
                # Catch what changed before the watches were set. Logged once that reload
                # is done (its compile runs in a child), so whoever waits for this event
                # knows every later change is the watcher's.
                self.request("watch", self._watcher_ready)
            elif line == "changed":
                self.changed()
            elif line.startswith("error "):
                self.watcher_error = line[len("error "):]

    def _watcher_ready(self, result: dict) -> None:
        if not self.core.shutting_down:
            self.log.info("watcher_ready", paths=list(self.core.plan.watch_paths()))

    def on_watcher_exit(self, status: int) -> None:
        self.watcher_pid = None
        if self.watcher_fd is not None:
            self.on_watcher_output()  # what it said last (why it could not watch)
        if self.watcher_fd is not None:
            self.loop.remove_reader(self.watcher_fd)
            os.close(self.watcher_fd)
            self.watcher_fd = None
        if self.rewatching:
            self.rewatching = False
            self.start_watcher()  # its "ready" asks for a reload: nothing is missed meanwhile
        elif not self.core.shutting_down:
            self.log.warning("watcher_died", status=status,
                             **({"error": self.watcher_error} if self.watcher_error else {}))
            self.loop.call_later(WATCHER_RESTART_DELAY, self.start_watcher)

    def stop_watcher(self) -> None:
        if self.watcher_pid is not None:
            osutil.kill_quietly(self.watcher_pid, signal.SIGTERM)

    def rewatch_if_moved(self) -> None:
        """A cont-init.d or cont-finish.d that appeared or went away since the watcher
        started: replace the watcher by one that watches what the plan needs now."""
        if self.watcher_pid is None or self.rewatching or self.core.shutting_down:
            return
        if self.core.plan.watch_paths() != self.watched:
            self.rewatching = True
            self.stop_watcher()

    def changed(self) -> None:
        """A change under a watched directory: wait for the burst to end, then reload once."""
        now = time.monotonic()
        if self.burst_started is None:
            self.burst_started = now
        if self.burst_timer is not None:
            self.burst_timer.cancel()
        when = min(now + QUIET, self.burst_started + MAX_WAIT)
        self.burst_timer = self.loop.call_at(when, self._burst_over)

    def _burst_over(self) -> None:
        self.burst_timer = None
        self.burst_started = None
        self.request("watch")

    # --- compile, diff, apply -----------------------------------------------------------

    def request(self, source: str, reply: "Callable[[dict], None] | None" = None) -> None:
        core = self.core
        if core.shutting_down:
            if reply is not None:
                reply(SHUTTING_DOWN)
            return
        if reply is not None:
            self.replies.append(reply)
        self.sources.append(source)
        if self.compiling is not None or not core.reload_settled():
            self.queued = True  # run once the current compile is gone and its reload settled
            return
        self.run()

    def _maybe_run_queued(self) -> None:
        if self.core.shutting_down:
            replies, self.replies = self.replies, []
            for reply in replies:  # queued before the shutdown began: answered, not left waiting
                reply(SHUTTING_DOWN)
            self.queued = False
            return
        if self.queued and self.compiling is None and self.core.reload_settled():
            self.queued = False
            self.run()

    def run(self) -> None:
        """Start a compile for the requests so far; those arriving meanwhile wait for the next."""
        from svtree.compiler import recompile

        core = self.core
        replies, self.replies = self.replies, []
        sources, self.sources = self.sources, []
        trigger = ",".join(sorted(set(sources)))
        plan = core.plan

        def done(outcome: Outcome) -> None:
            self.compiled(outcome, trigger, replies)

        def job(files):
            return recompile(plan, files)

        try:
            self.compiling = Compilation(self.loop, core.watch_child, job, self.cache,
                                         plan.settings.reload_timeout, done, on_exit=self._compile_exited)
        except OSError as e:  # fork failed (EAGAIN, ENOMEM): these requests wait for a retry
            self.log.warning("retry_later", what="fork the compile", error=e.strerror)
            self.replies[:0], self.sources[:0] = replies, sources
            self.queued = True
            self.loop.call_later(RETRY_DELAY, self._maybe_run_queued)

    def _compile_exited(self) -> None:
        self.compiling = None
        self._maybe_run_queued()

    def compiled(self, outcome: Outcome, trigger: str, replies: "list[Callable[[dict], None]]") -> None:
        core = self.core
        if core.shutting_down:
            for reply in replies:
                reply(SHUTTING_DOWN)
            return
        if outcome.error is not None:
            self.rejected += 1
            self.log.error("reload_rejected", trigger=trigger, reason=outcome.error)
            for reply in replies:
                reply({"ok": False, "error": f"reload rejected: {outcome.error}; nothing changed"})
            return
        if outcome.plan is None:
            errors = list(outcome.problems)
            self.rejected += 1
            self.log.error("reload_rejected", trigger=trigger, errors=errors)
            for reply in replies:
                reply({"ok": False, "error": f"the new tree is invalid ({plural(len(errors), 'error')}); "
                                             "nothing changed", "errors": errors})
            return
        self.cache = outcome.cache
        new = outcome.plan
        d = diff(core.plan, new)
        result = {"ok": True, "added": list(d.added), "removed": list(d.removed),
                  "changed": list(d.changed)}
        if not (d.empty and new.settings == core.plan.settings):
            self.log.info("reload_applied", trigger=trigger,
                          added=list(d.added), removed=list(d.removed), changed=list(d.changed))
        core.apply_plan(new, d)
        self.applied += 1
        self.rewatch_if_moved()
        for reply in replies:
            reply(result)
