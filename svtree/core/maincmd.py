"""The main command (`svtree run -- CMD ARGS`, s6-overlay's CMD): started once the whole
tree is up, in its own process group in the terminal's foreground, with svtree's stdin,
stdout and stderr; the signals svtree passes on go to it; its exit starts the shutdown,
and its exit code is svtree's."""

from __future__ import annotations

import os
import signal
from typing import Callable

from svtree import exitcodes, osutil
from svtree.signames import signal_name


class MainCommand:
    def __init__(self, loop, log, argv: "list[str]",
                 watch: "Callable[[int, Callable[[int], None]], None]") -> None:
        self.loop = loop
        self.log = log
        self.argv = argv
        self.watch = watch  # the reaper's
        self.pid: "int | None" = None
        self.started = False
        self.code: "int | None" = None  # its exit code (SIGNAL_BASE+N if signal N ended it)

    @property
    def running(self) -> bool:
        return self.pid is not None

    def start(self, on_exit: "Callable[[], None]") -> bool:
        """Start it once; `on_exit()` when it has exited. False if it could not start
        (then `code` is 127, as a shell says)."""
        self.started = True
        argv = self.argv if "/" in self.argv[0] else [_which(self.argv[0])] + self.argv[1:]
        try:
            self.pid = osutil.spawn(argv, cwd=None, env=dict(os.environ), fds={0: 0, 1: 1, 2: 2},
                                    session=False, foreground_tty=True)
        except OSError as e:
            self.log.error("main_exited", error=e.strerror, exit_code=127)
            self.code = 127
            return False
        self.log.info("main_started", pid=self.pid, argv=self.argv)
        self.watch(self.pid, lambda status: self._exited(status, on_exit))
        return True

    def _exited(self, status: int, on_exit: "Callable[[], None]") -> None:
        code, sig = osutil.decode_wait_status(status)
        self.code = code if code is not None else exitcodes.SIGNAL_BASE + sig
        self.log.info("main_exited", pid=self.pid, exit_code=self.code)
        self.pid = None
        on_exit()

    def forward(self, signum: int) -> None:
        if self.pid is not None:
            osutil.kill_quietly(self.pid, signum)
            # Said at info like every event of the catalogue; a burst of them is bounded
            # by the stderr queue like any other of svtree's lines.
            self.log.info("signal_forwarded", signal=signal_name(signum), pid=self.pid)

    def stop(self, timeout: float) -> None:
        """SIGTERM (and SIGCONT) now, SIGKILL if it still runs after `timeout` seconds."""
        pid = self.pid
        if pid is None:
            return
        osutil.kill_quietly(pid, signal.SIGTERM)
        osutil.kill_quietly(pid, signal.SIGCONT)
        self.loop.call_later(timeout, lambda: self.pid == pid and osutil.kill_quietly(pid, signal.SIGKILL))


def _which(prog: str) -> str:
    for d in os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin").split(os.pathsep):
        path = os.path.join(d or ".", prog)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return prog  # exec fails with ENOENT: the child says so and exits 127
