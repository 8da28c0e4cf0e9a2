"""`svtree run`: compile (or load) the plan, become PID 1's worth of care, run the loop."""

from __future__ import annotations

import os
import signal
import sys
import traceback

from svtree import exitcodes, osutil


def _load_plan(args):
    """The plan, or (None, exit code) after printing why there is none."""
    from svtree.compiler import check_runnable, compile_tree, find_tree_dir, load_plan_file
    from svtree.errors import CompileError, PlanFileError, display_path

    try:
        if args.plan:
            return check_runnable(load_plan_file(args.plan)), None
        root = getattr(args, "s6_root", None)  # cli.py checked ROOT has a tree
        if root:
            from svtree.compiler.s6overlay import compile_s6_overlay

            return check_runnable(compile_s6_overlay(root)), None
        directory = find_tree_dir(args.dir)
        if not os.path.isdir(directory):
            sys.stderr.write(f"svtree run: no tree at {display_path(directory)} "
                             "(give --dir DIR, set SVTREE_DIR, or create ./services.d)\n")
            return None, exitcodes.USAGE
        return check_runnable(compile_tree(directory)), None
    except CompileError as e:
        for problem in e.problems:
            sys.stderr.write(problem.render() + "\n")
        sys.stderr.write(f"svtree run: {len(e.problems)} error(s) in the tree; nothing was started\n")
        return None, exitcodes.USAGE
    except PlanFileError as e:
        sys.stderr.write(f"svtree run: {e}\n")
        return None, exitcodes.USAGE


def run_command(args) -> int:
    import time

    started = time.monotonic()
    plan, code = _load_plan(args)
    if plan is None:
        return code
    from svtree import log as logmod
    from svtree.core.loop import Loop
    from svtree.core.tree import NOT_FORWARDED, Core

    settings = plan.settings
    log = logmod.setup(args.log_format or settings.log_format)
    for warning in plan.warnings:  # S6_* variables and s6-rc files svtree ignores
        log.warning("compile_warning", warning=warning)
    is_pid1 = os.getpid() == 1
    if not is_pid1:
        try:
            osutil.set_child_subreaper()
            log.info("child_subreaper", pid=os.getpid(),
                     note="not PID 1: orphans of the tree are re-parented to svtree")
        except OSError as e:
            log.warning("child_subreaper", error=e.strerror)

    def on_error(what: str, exc: BaseException) -> None:
        log.error("internal_error", where=what, error=repr(exc),
                  traceback="".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))

    loop = Loop(on_error)
    core = Core(
        loop, plan, log,
        output=args.output or settings.output,
        main_cmd=list(args.cmd),
        is_pid1=is_pid1,
        kill_grace=settings.kill_grace,
        main_stop_timeout=settings.main_stop_timeout,
    )

    core.t0 = started  # "N services up in T": from svtree's start, compile included

    def on_stop_signal(signum: int) -> None:
        if settings.main_receives_signals and core.main_pid is not None and not core.shutting_down:
            core.forward_signal(signum)  # S6_CMD_RECEIVE_SIGNALS: its exit starts the shutdown
            return
        core.begin_shutdown(f"signal {signal.Signals(signum).name}")

    from svtree.core.reload import Reloader

    reloader = Reloader(core, watch=not args.no_watch)

    def on_hup(signum: int) -> None:
        reloader.request("SIGHUP")

    handlers = {signal.SIGCHLD: lambda s: core.reap()}
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        handlers[s] = on_stop_signal
    handlers[signal.SIGHUP] = on_hup
    for s in signal.valid_signals():
        if s not in NOT_FORWARDED and s not in handlers:
            handlers[s] = core.forward_signal
    loop.handle_signals(handlers)

    extras = []
    try:
        from svtree.core import control
    except ImportError:
        control = None
    if control is not None:
        extras.append(control.start(core, args.socket))
    log.info("svtree_started", pid=os.getpid(), pid1=is_pid1, services=len(plan.services),
             tree=plan.source)
    core.boot()
    reloader.start_watcher()
    core.reap()  # a child may have exited before the handler was installed
    loop.run()
    for hook in core.on_exit_hooks:
        hook()
    for extra in extras:
        if extra is not None:
            extra.close()
    code = exitcodes.FAILURE if core.failed else (core.main_code or 0 if args.cmd else 0)
    log.info("shutdown_done", exit_code=code,
             duration=round(time.monotonic() - core.shutdown_started, 3),
             orphans_reaped=core.orphans_reaped)
    return code
