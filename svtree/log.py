"""svtree's own log: structlog, events with fields, on stderr.

Rendered lines go to a sink: in the core, the stderr queue of svtree/core/output.py,
which never blocks (a line that finds no room is dropped and counted, `log_dropped`).

Event names are stable snake_case (the catalogue below); fields use the same names
everywhere: service, pid, exit_code, signal, uptime, delay, restarts.
"""

from __future__ import annotations

import sys

import structlog

EVENTS = {
    "svtree_started": "the core is up (pid1, subreaper, services)",
    "child_subreaper": "not PID 1: became a child subreaper",
    "oom_score_adj_kept": "svtree could not lower its own oom_score_adj (no CAP_SYS_RESOURCE)",
    "compile_warning": "something of the tree svtree ignores (an S6_* variable, an s6-rc file)",
    "service_started": "run was spawned (pid)",
    "service_ready": "readiness seen",
    "service_exited": "run exited (exit_code or signal, uptime)",
    "service_restarting": "backing off before a restart (delay)",
    "service_failed": "ended for good (restart policy, finish 125, oneshot failure)",
    "service_done": "a oneshot exited 0",
    "service_stopped": "stopped on request",
    "service_waiting": "wanted up, waiting for its dependencies",
    "finish_exited": "finish exited (exit_code)",
    "monitor_died": "a monitor died; its service is killed and restarted",
    "tree_up": "every service not marked down was ready or done at once: boot is over (services, duration)",
    "boot_failed": "a oneshot failed, or boot_timeout passed, during the boot (reason, services, then)",
    "container_environment": "svtree's environment was written for with-contenv (path, variables; error if not)",
    "reports_coalesced": "a monitor replaced reports the core did not read in time by its latest (reports)",
    "main_started": "the main command started (pid)",
    "main_exited": "the main command exited (exit_code)",
    "signal_forwarded": "a signal went to the main command",
    "shutdown_begin": "ordered shutdown began (reason)",
    "shutdown_sweep": "every service stopped; remaining processes get SIGTERM",
    "shutdown_kill": "processes left after kill_grace get SIGKILL",
    "shutdown_done": "everything is gone (duration, exit_code)",
    "watcher_ready": "the file watcher's watches are set (paths)",
    "watcher_died": "the file watcher exited; restarted after a delay",
    "reload_applied": "a reload changed the tree (added, removed, changed)",
    "reload_rejected": "a reload found an invalid tree; nothing changed (errors)",
    "control_refused": "a control client was refused (reason)",
    "control_error": "a control request failed inside svtree; the client got an error (error)",
    "control_socket_dir_shared": "the control socket's directory is not svtree's alone: its mode was left as it is",
    "control_unavailable": "the control socket cannot be opened (socket, error); the tree runs without it",
    "leftover_scan_slow": "finding what a dead monitor's service left behind took too long (deadline)",
    "http_listening": "the HTTP endpoint listens (address)",
    "http_unavailable": "the HTTP endpoint could not listen (address, error); svtree runs without it",
    "internal_error": "a bug in svtree, caught; supervision goes on",
    "retry_later": "a resource error (EAGAIN, EMFILE): retried after a delay",
    "log_dropped": "stderr was stalled: this many of svtree's own log lines were dropped (lines)",
    "monitor_stuck": "a monitor did not exit in time after `exit`: killed, and its service with it",
}


class SinkLogger:
    """structlog's logger at the end of the pipeline: hands each rendered line to `sink`
    (a callable taking the line with its newline). An error in the sink is swallowed:
    logging must never end PID 1."""

    def __init__(self, sink) -> None:
        self._sink = sink

    def msg(self, message: str) -> None:
        try:
            self._sink(message + "\n")
        except Exception:
            pass

    debug = info = warning = warn = error = critical = exception = fatal = failure = err = log = msg


def _stderr_sink(line: str) -> None:
    sys.stderr.write(line)
    sys.stderr.flush()


def setup(fmt: str = "console", sink=None):
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty(), pad_event=22)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        logger_factory=lambda *args: SinkLogger(sink or _stderr_sink),
        wrapper_class=structlog.make_filtering_bound_logger(20),  # info and above
        cache_logger_on_first_use=True,
    )
    return structlog.get_logger()
