"""What a person sees on a terminal: `ctl status` coloured and aligned.

(The piped, plain cases run against a real svtree in tests/system/test_terminal.py.)
"""

from __future__ import annotations

import io
import re

import pytest

from svtree import ctl, wire
from svtree.ctl import format_status, use_colour

ANSI = re.compile(r"\033\[[0-9;]*m")


def row(name, state, pid=None, uptime=None, restarts=0, last_exit=None, ready=False, cpu=None, mem=None):
    return {"name": name, "state": state, "pid": pid, "uptime": uptime, "restarts": restarts,
            "last_exit": last_exit, "ready": ready, "cpu_seconds": cpu, "memory_bytes": mem}


ROWS = [
    row("setup", "done", last_exit=0, cpu=0.01, mem=0),
    row("web", "ready", pid=12, uptime=83.2, ready=True, cpu=754.3, mem=163_577_856),
    row("db-migrations", "starting", pid=13, uptime=0.4),
    row("worker", "backoff", restarts=4, last_exit=-9),
    row("cron", "failed", restarts=1, last_exit=3),
    row("mail", "up", pid=20, uptime=4000.0),
    row("extra", "down"),
]


def test_plain_table_is_aligned_without_escapes():
    text = format_status(ROWS)
    assert "\033" not in text
    lines = text.splitlines()
    assert lines[0].split() == ["NAME", "STATE", "PID", "UPTIME", "RESTARTS", "LAST_EXIT", "READY"]
    state_column = lines[0].index("STATE")
    assert all(line[state_column - 2:state_column] == "  " for line in lines)
    assert lines[4].split() == ["worker", "backoff", "-", "-", "4", "SIGKILL", "no"]
    assert all(line == line.rstrip() for line in lines)


def test_resources_add_cpu_and_mem_at_the_end():
    lines = format_status(ROWS, resources=True).splitlines()
    assert lines[0].split() == ["NAME", "STATE", "PID", "UPTIME", "RESTARTS", "LAST_EXIT", "READY", "CPU", "MEM"]
    assert lines[4].split() == ["worker", "backoff", "-", "-", "4", "SIGKILL", "no", "-", "-"]
    assert lines[1].split()[-2:] == ["0.01s", "0B"]
    assert lines[2].split()[-2:] == ["12m34s", "156MiB"]
    assert all(line == line.rstrip() for line in lines)
    assert ANSI.sub("", format_status(ROWS, colour=True, resources=True)) == "\n".join(lines) + "\n"


@pytest.mark.parametrize("argv", [["status", "-r"], ["--resources", "status", "web"]])
def test_resources_is_an_option_of_status(argv):
    req = ctl.parse(argv)["request"]
    assert req["verb"] == "status" and req["resources"] is True
    assert "resources" not in ctl.parse(["status"])["request"]


@pytest.mark.parametrize("argv", [["check", "-r"], ["logs", "--resources"]])
def test_resources_elsewhere_is_a_usage_error(argv):
    with pytest.raises(ctl.Usage, match=f"-r is an option of status, not of {argv[0]}"):
        ctl.parse(argv)


def test_json_keys_are_the_specs_unless_resources_are_asked():
    assert wire.STATUS_KEYS == ("name", "state", "pid", "uptime", "restarts", "last_exit", "ready")
    assert wire.RESOURCE_KEYS == ("cpu_seconds", "memory_bytes")


def test_colour_changes_only_escapes_so_columns_stay_aligned():
    assert ANSI.sub("", format_status(ROWS, colour=True)) == format_status(ROWS)


@pytest.mark.parametrize("state, code", [
    ("ready", "32"), ("done", "32"), ("up", "33"), ("starting", "33"), ("failed", "31"), ("backoff", "31"),
])
def test_states_are_coloured_by_meaning(state, code):
    line = format_status([row("svc", state)], colour=True).splitlines()[1]
    assert f"\033[{code}m{state}\033[0m" in line


@pytest.mark.parametrize("state", ["down", "stopping", "finishing"])
def test_other_states_stay_plain(state):
    line = format_status([row("svc", state)], colour=True).splitlines()[1]
    assert "\033" not in line


def test_header_is_bold_with_colour():
    assert format_status(ROWS, colour=True).startswith("\033[1mNAME")


class FakeTty(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_colour_only_on_a_terminal_without_no_color(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    assert use_colour(FakeTty(True))
    assert not use_colour(FakeTty(False))
    monkeypatch.setenv("NO_COLOR", "")  # any value, even empty (no-color.org)
    assert not use_colour(FakeTty(True))
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "dumb")
    assert not use_colour(FakeTty(True))
