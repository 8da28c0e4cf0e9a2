"""Loggers (s6's `log/` services, s6-rc's pipelines) under svtree as PID 1: the producer's
stdout is the logger's stdin through one pipe the core keeps, so that no line is lost
when either side restarts (SIGKILL mid-stream, a dead monitor, a reload), the logger
reads to the end at shutdown, and the pipe reaches no other process.

Each test runs in both layouts (a `log/` subdirectory in a plain tree; `producer-for` /
`consumer-for` in an s6-overlay v3 tree) where the layout matters, and with two loggers:
a plain shell loop and Debian's `s6-log` (rotation into a directory).

A logger killed with SIGKILL loses what it had read and not yet written: that is the
logger's loss, not the pipe's. So the tests kill a logger only while it waits for input
with nothing in hand (`kill_when_idle`: stopped while blocked reading its stdin), and the
producers write each line with one write(), so that a line is in the pipe whole or not.
"""

from __future__ import annotations

import os
import shutil
import signal
import time

import pytest

from harness import (
    IDLE_CALLS, descendants, done, event_time, json_events, kill_when_idle, needs_pidns, needs_s6_log,
    numbered, pid_of, proc_status, producer, read_logdir, wait_for,
)

pytestmark = [needs_pidns, pytest.mark.timeout(90)]
needs_idle_calls = pytest.mark.skipif(IDLE_CALLS is None, reason="syscall numbers known for x86_64 and aarch64")

LINES = 2000  # lines a producer writes (about 20 KB: they fit in the pipe while its logger is away)


# --- trees -------------------------------------------------------------------------------

def shell_logger(tree, out: str, delay: str = "") -> str:
    """A plain logger: each line appended to `out` as it comes (and `delay` after each).
    It exits at end of file."""
    pause = f"; sleep {delay}" if delay else ""
    return tree.sh(f"""
        while read -r line; do echo "$line" >> {out}{pause}; done
        echo eof {out} >> $EVENTS
    """)


def s6_logger(logdir: str) -> str:
    """Debian's s6-log into a directory, rotating every 4 KB and keeping 100 archives."""
    return f"#!/bin/sh\nmkdir -p {os.path.dirname(logdir)}\nexec s6-log n100 s4096 {logdir}\n"


def read_lines(path: str) -> "list[str]":
    try:
        with open(path) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


class Pipeline:
    """A producer and its logger in one of the layouts, run by svtree."""

    def __init__(self, tree, layout: str, logger_kind: str, producer_name: str = "app") -> None:
        self.tree, self.layout, self.kind = tree, layout, logger_kind
        self.producer = producer_name
        self.logger = f"{producer_name}/log" if layout == "log" else f"{producer_name}-log"
        self.out = os.path.join(tree.root, "logged")  # the shell logger's file, or s6-log's directory
        run = shell_logger(tree, self.out) if logger_kind == "sh" else s6_logger(self.out)
        if layout == "log":
            tree.service(producer_name, producer(tree, producer_name, LINES))
            tree.write(f"{producer_name}/log/run", run, executable=True)
            self.source = None
        else:
            self.rc = os.path.join(tree.root, "root", "etc", "s6-overlay", "s6-rc.d")
            self.rc_service(producer_name, producer(tree, producer_name, LINES), **{"producer-for": self.logger})
            self.rc_service(self.logger, run, **{"consumer-for": producer_name})
            for member in (producer_name, self.logger):
                self.tree.write(f"{self.rc}/user/contents.d/{member}", "")
            self.tree.write(f"{self.rc}/user/type", "bundle\n")
            self.source = ["--s6-overlay", os.path.join(tree.root, "root")]

    def rc_service(self, name: str, run: str, **files: str) -> None:
        self.tree.write(f"{self.rc}/{name}/type", "longrun\n")
        self.tree.write(f"{self.rc}/{name}/run", run, executable=True)
        for file, text in files.items():
            self.tree.write(f"{self.rc}/{name}/{file}", text + "\n")

    def start(self, run_svtree, **kw):
        return run_svtree(source=self.source, **kw) if self.source else run_svtree(**kw)

    def logged(self) -> "list[str]":
        return read_lines(self.out) if self.kind == "sh" else read_logdir(self.out)


# --- processes ---------------------------------------------------------------------------

def parent(pid: int) -> int:
    return int(proc_status(pid)["PPid"])


def pipe_inode(pid: int, fd: int) -> str:
    target = os.readlink(f"/proc/{pid}/fd/{fd}")
    assert target.startswith("pipe:"), (pid, fd, target)
    return target


def fds(pid: int) -> "dict[int, str]":
    return {int(fd): os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}


# --- the pipe ----------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["log", "s6rc"])
def test_stdout_feeds_the_logger_and_stderr_keeps_its_prefix(tree, run_svtree, layout):
    p = Pipeline(tree, layout, "sh")
    tree.service("other", tree.sh("while :; do sleep 0.05; done\n"))
    if layout == "s6rc":
        p.rc_service("other", tree.sh("while :; do sleep 0.05; done\n"))
        tree.write(f"{p.rc}/user/contents.d/other", "")
    sv = p.start(run_svtree)
    wait_for(lambda: done(tree, "app", 1), what="the producer's lines")
    wait_for(lambda: len(p.logged()) == LINES, what="every line in the logger's file")
    assert p.logged() == numbered(1, LINES)
    # stdout went to the logger only; stderr still goes through `NAME | line`.
    assert "1 1" not in sv.stdout()
    wait_for(lambda: "app | app run 1 on stderr" in sv.stderr(), what="the producer's stderr line")

    # One pipe: the producer's fd 1 is the logger's fd 0. The core holds both ends (and
    # nothing else holds them), and no other service has it.
    app, logger, other = pid_of(sv, "app"), pid_of(sv, p.logger), pid_of(sv, "other")
    pipe = pipe_inode(app, 1)
    assert pipe_inode(logger, 0) == pipe
    # fd 0 /dev/null, 1 the logger's pipe, 2 the prefix pipe (and dash's fd 10: its script)
    assert fds(app)[0] == "/dev/null" and [fd for fd, t in fds(app).items() if t == pipe] == [1]
    assert all(not t.startswith(("pipe:", "socket:")) for fd, t in fds(app).items() if fd > 2)
    assert pipe not in fds(other).values()
    assert [fd for fd, t in fds(logger).items() if t == pipe] == [0]
    services = {app, logger, *descendants(app), *descendants(logger)}  # (the producer's sleep)
    holders = sorted(q for q in [sv.pid1, *descendants(sv.pid1)] if q not in services and pipe in fds(q).values())
    # svtree (both ends), the producer's monitor (the write end), the logger's (the read end)
    assert holders == sorted([sv.pid1, parent(app), parent(logger)]), holders
    assert list(fds(sv.pid1).values()).count(pipe) == 2
    assert sv.stop() == 0


# --- restarts ----------------------------------------------------------------------------

@needs_idle_calls
@pytest.mark.parametrize("layout, kind", [
    ("log", "sh"), ("s6rc", "sh"),
    pytest.param("log", "s6-log", marks=needs_s6_log), pytest.param("s6rc", "s6-log", marks=needs_s6_log),
])
def test_every_line_reaches_the_logger_across_its_restart(tree, run_svtree, layout, kind):
    """SIGKILL the logger while the producer writes: what the producer writes meanwhile
    waits in the pipe, and the next logger reads it, in order, once."""
    p = Pipeline(tree, layout, kind)
    sv = p.start(run_svtree)
    wait_for(lambda: len(p.logged()) >= 300, what="300 lines logged")
    kill_when_idle(pid_of(sv, p.logger))
    assert not done(tree, "app", 1)  # mid-stream: the producer was still writing
    wait_for(lambda: done(tree, "app", 1), what="the producer's last line")
    wait_for(lambda: len(p.logged()) >= LINES, timeout=20, what="every line in the next logger's output")
    assert p.logged() == numbered(1, LINES)
    st = sv.status()
    assert (st[p.logger]["restarts"], st["app"]["restarts"]) == (1, 0)
    assert sv.stop() == 0


@needs_idle_calls
def test_every_line_reaches_the_logger_when_its_monitor_dies(tree, run_svtree):
    """The logger's monitor is killed: svtree kills the logger, forks a new monitor and a
    new logger, which reads the same pipe."""
    p = Pipeline(tree, "log", "sh")
    sv = p.start(run_svtree, args=["--log-format", "json"])
    wait_for(lambda: len(p.logged()) >= 300, what="300 lines logged")
    logger = pid_of(sv, p.logger)
    monitor = parent(logger)
    kill_when_idle(logger)  # stopped idle, then killed: what comes is the pipe's
    os.kill(monitor, signal.SIGKILL)
    wait_for(lambda: any(e["event"] == "monitor_died" for e in json_events(sv)), what="monitor_died")
    wait_for(lambda: len(p.logged()) >= LINES, timeout=20, what="every line after the monitor died")
    assert p.logged() == numbered(1, LINES)
    assert sv.stop() == 0


@pytest.mark.parametrize("layout", ["log", "s6rc"])
def test_every_line_reaches_the_logger_across_a_producer_restart(tree, run_svtree, layout):
    """The producer is killed mid-stream while its logger is stopped (the lines it wrote
    are in the pipe, not read yet), and runs again: the logger, which never saw end of
    file, reads the first run's lines, then the second's."""
    p = Pipeline(tree, layout, "sh")
    sv = p.start(run_svtree)
    wait_for(lambda: len(p.logged()) >= 300, what="300 lines logged")
    logger, app = pid_of(sv, p.logger), pid_of(sv, "app")
    os.kill(logger, signal.SIGSTOP)
    time.sleep(0.05)  # the producer goes on writing into the pipe meanwhile
    os.kill(app, signal.SIGKILL)
    assert not done(tree, "app", 1)
    wait_for(lambda: done(tree, "app", 2), what="the second run's lines")
    os.kill(logger, signal.SIGCONT)
    wait_for(lambda: p.logged()[-1:] == [f"2 {LINES}"], timeout=20, what="the second run's last line logged")
    lines = p.logged()
    first = [line for line in lines if line.startswith("1 ")]
    assert len(first) > 300 and lines == numbered(1, len(first)) + numbered(2, LINES)
    st = sv.status()
    assert (st[p.logger]["restarts"], st["app"]["restarts"]) == (0, 1)
    assert pid_of(sv, p.logger) == logger  # the same logger: it never saw end of file
    assert ["eof", p.out] not in tree.event_lines()
    assert sv.stop() == 0


def test_several_producers_share_one_logger(tree, run_svtree):
    """s6-rc's funnel: two producers name one consumer; both write into its one pipe,
    and one producer's restart is not the end of the logger's input."""
    p = Pipeline(tree, "s6rc", "sh")
    p.rc_service("two", producer(tree, "two", lines=50), **{"producer-for": p.logger})
    tree.write(f"{p.rc}/{p.logger}/consumer-for", "app\ntwo\n")
    tree.write(f"{p.rc}/user/contents.d/two", "")
    sv = p.start(run_svtree)
    wait_for(lambda: done(tree, "app", 1) and done(tree, "two", 1), what="both producers' lines")
    wait_for(lambda: len(p.logged()) == LINES + 50, what="both producers' lines logged")
    app = pid_of(sv, "app")
    assert pipe_inode(app, 1) == pipe_inode(pid_of(sv, "two"), 1) == pipe_inode(pid_of(sv, p.logger), 0)
    assert sv.ctl("restart", "--wait", "two").returncode == 0
    wait_for(lambda: done(tree, "two", 2), what="two's second run")
    wait_for(lambda: len(p.logged()) == LINES + 101, what="two's second run logged")
    lines = p.logged()
    assert [x for x in lines if not x.startswith(("1 ", "bye"))] == numbered(2, 50)
    assert len([x for x in lines if x.startswith("1 ")]) == LINES + 50  # both first runs
    assert "bye 1" in lines  # two's TERM trap wrote to the logger too
    assert sv.status()[p.logger]["restarts"] == 0
    assert sv.stop() == 0


# --- shutdown ----------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["log", "s6rc"])
def test_at_shutdown_the_logger_reads_to_the_end_and_exits_by_itself(tree, run_svtree, layout):
    """The producer stops first and its last words reach the logger: svtree closes the
    pipe once the producer is gone, and a slow logger reads everything that is left,
    sees end of file and exits 0 on its own, well within its stop_timeout."""
    p = Pipeline(tree, layout, "sh")
    slow = shell_logger(tree, p.out, delay="0.002")
    if layout == "log":
        tree.write("app/log/run", slow, executable=True)
    else:
        tree.write(f"{p.rc}/{p.logger}/run", slow, executable=True)
    sv = p.start(run_svtree, args=["--log-format", "json"])
    wait_for(lambda: done(tree, "app", 1), what="the producer's lines")
    assert len(p.logged()) < LINES  # the logger is behind: the pipe holds the rest
    assert sv.stop() == 0
    assert p.logged() == numbered(1, LINES) + ["bye 1"]
    exits = {e["service"]: e for e in json_events(sv) if e["event"] == "service_exited"}
    assert exits[p.logger].get("exit_code") == 0 and "signal" not in exits[p.logger]
    assert ["eof", p.out] in tree.event_lines()


def test_a_logger_that_never_ends_gets_its_stop_signal_after_stop_timeout(tree, run_svtree):
    """A logger that ignores end of file: stop_timeout to end by itself, then TERM."""
    tree.service("app", tree.sh("echo hello\nwhile :; do sleep 0.05; done\n"))
    tree.write("app/log/run", tree.sh("""
        trap 'echo logger got TERM >> $EVENTS; exit 0' TERM
        while :; do read -r line || sleep 0.05; done
    """), executable=True)
    tree.write("app/log/service.toml", "stop_timeout = 0.6\n")
    sv = run_svtree(args=["--log-format", "json"])
    sv.wait_state("ready", "app")
    assert sv.stop() == 0
    events = json_events(sv)
    assert ["logger", "got", "TERM"] in tree.event_lines()
    gone = next(e for e in events if e["event"] == "service_stopped" and e["service"] == "app")
    stopped = next(e for e in events if e["event"] == "service_stopped" and e["service"] == "app/log")
    waited = event_time(stopped) - event_time(gone)
    assert 0.55 <= waited < 3.0, waited


# --- reload ------------------------------------------------------------------------------

@needs_s6_log
def test_a_reload_that_changes_only_the_logger_keeps_the_producer_and_the_pipe(tree, run_svtree):
    """s6-rc: the consumer's run changes, the producer does not. The old logger stops
    (s6-log: after its current line), the new one starts on the same pipe: together
    they logged every line once, in order, and the producer kept its pid."""
    p = Pipeline(tree, "s6rc", "s6-log")
    sv = p.start(run_svtree)
    wait_for(lambda: len(p.logged()) >= 300, what="300 lines logged")
    app = pid_of(sv, "app")
    second = p.out + "-2"
    tree.write(f"{p.rc}/{p.logger}/run", s6_logger(second), executable=True)
    r = sv.ctl("reload")
    assert r.returncode == 0 and p.logger in r.stdout and "app" not in r.stdout.replace(p.logger, ""), r.stdout
    wait_for(lambda: done(tree, "app", 1), what="the producer's lines")
    wait_for(lambda: len(p.logged()) + len(read_logdir(second)) >= LINES, timeout=20,
             what="every line in one of the two logdirs")
    before, after = p.logged(), read_logdir(second)
    assert before + after == numbered(1, LINES) and before and after
    assert pid_of(sv, "app") == app
    assert sv.status()["app"]["restarts"] == 0
    assert sv.stop() == 0


@needs_s6_log
def test_a_reload_that_changes_a_log_directory_restarts_both_on_the_same_pipe(tree, run_svtree):
    """A `log/` directory is part of its service's definition: changing log/run restarts
    the service and its logger. The producer stops first (its last words go into the
    pipe), then the logger (s6-log: after its current line), and both start again on the
    same pipe: the two logdirs hold the first run's lines, its `bye`, then the second
    run's, each once, in order."""
    p = Pipeline(tree, "log", "s6-log")
    sv = p.start(run_svtree)
    wait_for(lambda: len(p.logged()) >= 300, what="300 lines logged")
    app, logger = pid_of(sv, "app"), pid_of(sv, p.logger)
    pipe = pipe_inode(app, 1)
    second = p.out + "-2"
    tree.write("app/log/run", s6_logger(second), executable=True)
    r = sv.ctl("reload")
    assert (r.returncode, r.stdout) == (0, "changed: app app/log\n"), r.stderr
    wait_for(lambda: done(tree, "app", 2), timeout=20, what="the second run's lines")
    wait_for(lambda: read_logdir(second)[-1:] == [f"2 {LINES}"], timeout=20, what="the second run logged")
    lines = p.logged() + read_logdir(second)
    first = [line for line in lines if line.startswith("1 ")]
    assert first and lines == numbered(1, len(first)) + ["bye 1"] + numbered(2, LINES)
    new_app, new_logger = pid_of(sv, "app"), pid_of(sv, p.logger)
    assert new_app != app and new_logger != logger
    assert pipe_inode(new_app, 1) == pipe_inode(new_logger, 0) == pipe
    assert sv.stop() == 0


def test_removing_a_pipeline_closes_its_pipe(tree, run_svtree):
    p = Pipeline(tree, "s6rc", "sh")
    p.rc_service("other", tree.sh("while :; do sleep 0.05; done\n"))
    tree.write(f"{p.rc}/user/contents.d/other", "")
    sv = p.start(run_svtree)
    sv.wait_state("ready", "app", "other")
    pipe = pipe_inode(pid_of(sv, "app"), 1)
    assert list(fds(sv.pid1).values()).count(pipe) == 2
    for name in ("app", p.logger):
        shutil.rmtree(f"{p.rc}/{name}")
        os.unlink(f"{p.rc}/user/contents.d/{name}")
    r = sv.ctl("reload")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: set(sv.status()) == {"other"}, what="the pipeline to be gone")
    wait_for(lambda: pipe not in fds(sv.pid1).values(), what="svtree to close the pipe")
    assert ["eof", p.out] in tree.event_lines()  # the logger read to the end and exited by itself
    assert sv.stop() == 0


def test_the_pipe_ends_are_not_inherited_by_the_main_command(tree, run_svtree):
    p = Pipeline(tree, "log", "sh")
    listing = os.path.join(tree.root, "main-fds")
    sv = p.start(run_svtree, cmd=["/bin/sh", "-c", f"ls -l /proc/$$/fd > {listing}; sleep 1000"])
    wait_for(lambda: os.path.exists(listing) and os.path.getsize(listing) > 0, what="the main command's fds")
    pipe = pipe_inode(pid_of(sv, "app"), 1)
    assert pipe not in open(listing).read()
    assert sv.stop() == 128 + signal.SIGTERM  # the main command's code: TERM ended it
