"""core/contenv.py: s6-overlay's container environment directory, as s6-envdir reads it."""

from __future__ import annotations

import os
import stat

import pytest

from svtree.core.contenv import write_container_environment


def test_one_file_per_variable_holding_its_bytes_and_nothing_stale(tmp_path):
    directory = tmp_path / "s6" / "container_environment"
    os.makedirs(directory, mode=0o700)
    (directory / "OLD").write_bytes(b"from a previous run")
    os.mkdir(directory / "kept")  # not a file of ours: left alone
    environ = {b"GREETING": b"hello world", b"MULTI": b"one\ntwo\n", b"EMPTY": b"", b"RAW": b"\xff\xfe",
               b"A/B": b"no file can be named so", b".HIDDEN": b"s6-envdir skips dot files"}
    assert write_container_environment(str(directory), environ) == 4
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o755
    assert sorted(os.listdir(directory)) == ["EMPTY", "GREETING", "MULTI", "RAW", "kept"]
    assert (directory / "GREETING").read_bytes() == b"hello world"  # no newline added
    assert (directory / "MULTI").read_bytes() == b"one\ntwo\n"
    assert (directory / "RAW").read_bytes() == b"\xff\xfe"
    assert (directory / "EMPTY").read_bytes() == b""
    # Written again with less: what is gone goes.
    assert write_container_environment(str(directory), {b"GREETING": b"hi"}) == 1
    assert sorted(os.listdir(directory)) == ["GREETING", "kept"]
    assert (directory / "GREETING").read_bytes() == b"hi"


def test_a_directory_that_cannot_be_made_is_an_oserror(tmp_path):
    blocker = tmp_path / "run"
    blocker.write_text("a file where the directory should go")
    with pytest.raises(OSError):
        write_container_environment(str(blocker / "s6" / "container_environment"), {b"A": b"1"})
