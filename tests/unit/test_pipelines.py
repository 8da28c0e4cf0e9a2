"""core/pipelines.py: one pipe per logger, shared by its producers, kept while either
side has a record, closed for input only when nothing feeds the logger any more."""

from __future__ import annotations

import os

from svtree.core.pipelines import Pipelines
from svtree.core.records import Life, Records
from svtree.plan import Plan, ServiceSpec


def spec(name: str, logger: "str | None" = None) -> ServiceSpec:
    return ServiceSpec(name=name, path="/x", run="/x/run", logger=logger,
                       depends_on=(logger,) if logger else ())


def plan(*specs: ServiceSpec) -> Plan:
    return Plan(source="/x", services=tuple(sorted(specs, key=lambda s: s.name)), levels=())


def test_a_producer_writes_and_its_logger_reads_one_pipe_shared_by_every_producer():
    p = plan(spec("a", "log"), spec("b", "log"), spec("log"), spec("plain"))
    pipes = Pipelines()
    by = p.by_name()
    a_in, a_out = pipes.ends(by["a"], p)
    b_in, b_out = pipes.ends(by["b"], p)
    log_in, log_out = pipes.ends(by["log"], p)
    assert (a_in, b_in, log_out) == (None, None, None)
    assert pipes.ends(by["plain"], p) == (None, None)
    assert a_out == b_out and a_out is not None and log_in is not None
    os.write(a_out, b"one\n")
    os.write(b_out, b"two\n")
    assert os.read(log_in, 100) == b"one\ntwo\n"
    assert not os.get_inheritable(a_out) and not os.get_inheritable(log_in)  # close-on-exec
    assert pipes.ends(by["log"], p)[0] == log_in  # a new monitor of the logger: the same pipe
    pipes.close_all()


def test_the_logger_sees_end_of_file_only_once_no_producer_is_left():
    p = plan(spec("a", "log"), spec("log"))
    records = Records(p)
    pipes = Pipelines()
    _, out = pipes.ends(p.by_name()["a"], p)
    read_end, _ = pipes.ends(p.by_name()["log"], p)
    os.set_blocking(read_end, False)
    assert not pipes.drain("log", records)  # a is still there: the pipe stays open
    assert pipes.pipes["log"].write_fd == out
    assert not pipes.drain("a", records)  # not a logger
    records.get("a").life = Life.GONE
    os.write(out, b"last\n")
    assert pipes.drain("log", records)
    assert os.read(read_end, 100) == b"last\n"
    assert os.read(read_end, 100) == b""  # end of file: the core held the only write end
    # A producer started after that gets a new pipe (and so does the logger's next monitor).
    fresh_in, fresh_out = pipes.ends(p.by_name()["log"], p)[0], pipes.ends(p.by_name()["a"], p)[1]
    assert fresh_in != read_end and fresh_out != out
    os.write(fresh_out, b"x\n")
    assert os.read(fresh_in, 10) == b"x\n"
    pipes.close_all()


def test_a_pipe_nobody_uses_any_more_is_closed():
    old = plan(spec("a", "log"), spec("log"), spec("other"))
    records = Records(old)
    pipes = Pipelines()
    _, out = pipes.ends(old.by_name()["a"], old)
    read_end = pipes.pipes["log"].read_fd
    pipes.prune(records)
    assert "log" in pipes.pipes  # both ends still have records
    records.remove("a")
    pipes.prune(records)
    assert "log" in pipes.pipes  # the logger has one
    records.remove("log")
    pipes.prune(records)
    assert pipes.pipes == {}
    for fd in (out, read_end):
        try:
            os.fstat(fd)
            still_open = True
        except OSError:
            still_open = False
        assert not still_open, fd
