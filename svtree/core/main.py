"""`svtree run`: take the signals, compile (or load) the plan in a child process, become
PID 1's worth of care, run the loop."""

from __future__ import annotations

import os
import signal
import traceback

from svtree import exitcodes, osutil

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
SAY_DEADLINE = 2.0  # seconds a message before the core's output exists may wait for stderr


def _say(text: str) -> None:
    """stderr before the core's output queues exist: bounded, so a stalled stderr cannot
    keep PID 1 from exiting on an invalid tree."""
    from svtree.core.output import write_bounded

    write_bounded(2, text.encode(errors="backslashreplace"), SAY_DEADLINE)

# svtree's own oom_score_adj where it may set it (dockerd's choice for itself): below
# anything a service gets by default, yet not -1000, so that the kernel can still end a
# container whose only memory is svtree's.
OOM_SCORE_ADJ = -999


def _first_job(args):
    """What the first compile does, in the child: the plan of --plan, --s6-overlay or DIR."""

    def job(files):
        from svtree.compiler import compile_source, load_plan_file

        if args.plan:
            return load_plan_file(args.plan, files)
        return compile_source(args.source, files)  # cli.py chose it

    return job


def _load_plan(loop, args, children: dict, stop: "list[int]"):
    """(outcome, None), or (None, exit code) after printing why there is no plan.

    The compile runs in a child (core/compiling.py) while the loop already takes signals:
    SIGTERM, SIGINT or SIGQUIT during it (a tree on a hung filesystem, a slow user lookup)
    kills the child, and svtree exits having started nothing. No deadline: nothing runs yet
    that a slow compile could harm. The child is registered in `children` (pid -> what to
    call with its exit status), which the core takes over: its reaper reaps it.
    """
    from svtree.core.compiling import Compilation
    from svtree.errors import display_path, invalid_tree

    box: list = []
    try:
        compilation = Compilation(loop, children.__setitem__, _first_job(args), None, None, box.append)
    except OSError as e:  # fork failed: nothing runs yet that a retry would help
        _say(f"svtree run: cannot start the compile: {e.strerror}; nothing was started\n")
        return None, exitcodes.FAILURE
    while not box and not stop:
        loop.run_once()
    if stop:  # the signal wins over a result that came in the same wake-up
        compilation.kill("stopped")
        _say(f"svtree run: {signal.Signals(stop[0]).name} while compiling the tree; "
             "nothing was started\n")
        return None, exitcodes.OK
    outcome = box[0]
    if outcome.no_tree is not None:
        _say(f"svtree run: no tree at {display_path(outcome.no_tree)} "
             "(give --dir DIR, set SVTREE_DIR, or create ./services.d)\n")
        return None, exitcodes.USAGE
    if outcome.problems:
        _say(invalid_tree("svtree run", outcome.problems, "the tree", "; nothing was started"))
        return None, exitcodes.USAGE
    if outcome.plan is None:
        _say(f"svtree run: {outcome.error}\n")
        return None, exitcodes.USAGE
    return outcome, None


def run_command(args) -> int:
    import time

    from svtree.core.loop import Loop

    started = time.monotonic()
    logs: list = []  # svtree's log once it exists (before: plain lines on stderr)

    def on_error(what: str, exc: BaseException) -> None:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        try:
            error = repr(exc)
        except Exception:  # a repr that raises must not hide the error
            error = type(exc).__name__
        if not logs:
            _say(f"svtree run: internal_error in {what}: {error}\n{text}")
        else:
            logs[0].error("internal_error", where=what, error=error, traceback=text)

    # Signals first: as PID 1, a signal without a handler is discarded, so a SIGTERM during
    # the first compile would be lost. Until the core exists, a stop signal ends the
    # compile and SIGHUP asks for a reload once the tree runs (the core's reaper reaps the
    # compile's child once it exists; its pipe's EOF is what the loop waits for).
    loop = Loop(on_error)
    stop: "list[int]" = []
    hup: "list[int]" = []
    early = {s: stop.append for s in STOP_SIGNALS}
    early[signal.SIGHUP] = hup.append
    loop.handle_signals(early)
    children: "dict[int, object]" = {}
    outcome, code = _load_plan(loop, args, children, stop)
    if outcome is None:
        return code
    return _run(loop, args, outcome, children, started, hup, logs)


def _start_logging(loop, args, plan, logs: list):
    """svtree's stdout and stderr (bounded queues written without blocking; the log goes
    through the stderr one; in `prefix` mode they feed the log book of `ctl logs`), its
    log, and what it says about itself before the core starts: the compile's warnings,
    the subreaper, its oom_score_adj."""
    from svtree import log as logmod
    from svtree.core.logbuffer import LogBook
    from svtree.core.output import Output

    prefix = (args.output or plan.settings.output) == "prefix"
    streams = Output(loop, LogBook(plan.settings.log_buffer) if prefix else None)
    log = logmod.setup(args.log_format or plan.settings.log_format,
                       sink=lambda line: streams.own_line(2, line))
    logs.append(log)
    streams.on_dropped(lambda n: log.warning("log_dropped", lines=n))
    for warning in plan.warnings:  # S6_* variables and s6-rc files svtree ignores
        log.warning("compile_warning", warning=warning)
    if os.getpid() != 1:
        try:
            osutil.set_child_subreaper()
            log.info("child_subreaper", pid=os.getpid(),
                     note="not PID 1: orphans of the tree are re-parented to svtree")
        except OSError as e:
            log.warning("child_subreaper", error=e.strerror)
    # Out of the OOM killer's first choice: a greedy service goes before the tree's root.
    # Services get their own value back (osutil.spawn); monitors keep ours.
    oom, refused = osutil.lower_own_oom_score_adj(OOM_SCORE_ADJ)
    if refused:
        log.info("oom_score_adj_kept", oom_score_adj=oom, wanted=OOM_SCORE_ADJ, error=refused,
                 note="lowering it needs CAP_SYS_RESOURCE")
    return streams, log


def _write_container_environment(log, path: str) -> None:
    """s6-overlay's /run/s6/container_environment, before anything runs (core/contenv.py).
    A failure is said and the tree runs: a run script using with-contenv will say what
    it misses."""
    from svtree.core.contenv import write_container_environment

    try:
        count = write_container_environment(path, os.environb)
    except OSError as e:
        log.warning("container_environment", path=path, error=e.strerror or str(e),
                    note="with-contenv and printcontenv will not find svtree's environment")
        return
    log.info("container_environment", path=path, variables=count)


def _listen(loop, args, log, core, reloader, book):
    """The control socket, and the HTTP endpoint when asked for (--http, or `http` in
    svtree.toml): (control server, HTTP server), None for either that is not there."""
    from svtree.core import control
    from svtree.core.probes import Probes

    probes = Probes(loop, core, reloader)
    server = control.start(loop, log, core, reloader.request, args.socket, probes, book)
    listen = args.http or core.plan.settings.http
    if not listen:
        return server, None
    from svtree.core import http  # h11 is loaded only when the endpoint is on

    return server, http.start(loop, probes, listen, log)


def _run(loop, args, outcome, children: dict, started: float, hup: "list[int]", logs: list) -> int:
    """The tree runs: the core, its signals, the reloader and the control socket, until
    the shutdown is done. Returns svtree's exit code."""
    from svtree.core.core import NOT_FORWARDED, Core
    from svtree.core.output import EXIT_FLUSH
    from svtree.core.reload import Reloader

    plan = outcome.plan
    settings = plan.settings
    streams, log = _start_logging(loop, args, plan, logs)
    is_pid1 = os.getpid() == 1
    # "N services up in T" counts from svtree's start, compile included; the first
    # compile's child is the core's to reap.
    core = Core(loop, plan, log, output=args.output or settings.output, main_cmd=list(args.cmd),
                is_pid1=is_pid1, streams=streams, started_at=started, children=children)

    def on_stop_signal(signum: int) -> None:
        if settings.main_receives_signals and core.main_running and not core.shutting_down:
            core.forward_signal(signum)  # S6_CMD_RECEIVE_SIGNALS: its exit starts the shutdown
            return
        core.begin_shutdown(f"signal {signal.Signals(signum).name}")

    reloader = Reloader(loop, log, core, watch=not args.no_watch, cache=outcome.cache)
    handlers = {signal.SIGCHLD: lambda s: core.reap()}
    for s in STOP_SIGNALS:
        handlers[s] = on_stop_signal
    handlers[signal.SIGHUP] = lambda s: reloader.request("SIGHUP")
    for s in signal.valid_signals():
        if s not in NOT_FORWARDED and s not in handlers:
            handlers[s] = core.forward_signal
    loop.handle_signals(handlers)

    server, endpoint = _listen(loop, args, log, core, reloader, streams.book)
    log.info("svtree_started", pid=os.getpid(), pid1=is_pid1, services=len(plan.services),
             tree=plan.source)
    if settings.container_environment is not None:
        _write_container_environment(log, settings.container_environment)
    core.boot()
    reloader.start_watcher_after_boot()
    core.reap()  # a child may have exited before the handler was installed
    if hup:
        reloader.request("SIGHUP")  # during the first compile: it may have missed a change
    loop.run()
    if endpoint is not None:
        endpoint.close()
    if server is not None:
        server.on_exit(is_pid1)
        server.close()
    ending = core.ending()
    dropped = sum(s.dropped for s in streams.streams.values())
    log.info("shutdown_done", exit_code=ending.exit_code, duration=round(ending.duration, 3),
             orphans_reaped=ending.orphans_reaped,
             **({"log_dropped": dropped} if dropped else {}),
             **({"errors_unlogged": loop.errors_unlogged} if loop.errors_unlogged else {}))
    # What nobody reads within EXIT_FLUSH seconds is lost: PID 1 must exit.
    streams.flush_at_exit(EXIT_FLUSH)
    return ending.exit_code
