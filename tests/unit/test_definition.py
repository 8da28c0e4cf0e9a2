"""What a definition is (svtree/definition.py), and how the compiler reads it: the compiler
(discover, digest) and the watcher decide by the same rule, definition files are regular
files read a bounded number of bytes, and an unchanged file is read once.
"""

from __future__ import annotations

import os
import time

import pytest

from compiler_trees import make_tree, only_problem, scratch  # noqa: F401
from svtree import definition
from svtree.compiler import compile_tree
from svtree.compiler.digest import definition_digest
from svtree.compiler.files import MAX_BYTES, RACY_NS, DefinitionFiles
from svtree.compiler.s6rc import IGNORED_FILES, SUPPORTED_FILES
from svtree.compiler.settings import SERVICE_SETTINGS
from svtree.watcher import relevant as watcher_relevant

pytestmark = pytest.mark.timeout(60)  # a FIFO read by mistake would block forever


def relevant(path: str, tree: str, scripts: "tuple[str, ...]" = (), s6rc: "tuple[str, ...]" = ()) -> bool:
    roots = [(definition.TREE, tree), *((definition.SCRIPTS, d) for d in scripts),
             *((definition.S6RC, d) for d in s6rc)]
    return watcher_relevant(path, roots)


def test_the_s6_files_are_the_settings_tables():
    s6 = {s.s6_file.rstrip("/") for s in SERVICE_SETTINGS if s.s6_file}
    assert s6 == set(definition.S6_FILES) | {definition.DEPENDENCIES_DIR}


def test_the_s6_rc_files_are_the_s6rc_readers():
    """Every file compiler/s6rc.py reads is definition (data/ and env/ are the run
    script's data); every file it warns about counts by its presence."""
    rule = definition.SERVICE_RC
    read = {f.strip().rstrip("/") for files, _, _ in SUPPORTED_FILES for f in files.split(",")}
    assert read - {"data", "env"} == rule.content | rule.lists
    assert {f for f, _ in IGNORED_FILES} == rule.names
    for name in ("data", "env"):
        assert rule.entry((name,)) is None and rule.entry((name, "x")) is None


@pytest.mark.parametrize("parts,counts", [
    ((), True),
    (("run",), True), (("finish",), True), (("down",), True), (("service.toml",), True),
    (("notification-fd",), True), (("type",), True), (("timeout-finish",), True),
    (("dependencies.d",), True), (("dependencies.d", "db"), True),
    (("log",), True), (("log", "run"), True), (("log", "service.toml"), True),
    (("log", "dependencies.d", "x"), True),
    (("state.txt",), False), (("run.pid",), False), (("cache", "run"), False),
    (("supervise", "control"), False), (("log", "current"), False),
    (("dependencies.d", "db", "deeper"), False), (("svtree.toml",), False),
    (("run~",), False), (("run.swp",), False), (("run.swo",), False), (("run.swx",), False),
    ((".run.swo",), False), ((".env",), False), (("dependencies.d", "db.swo"), False),
    (("..data",), True), (("..2026_01_01", "run"), True), (("..2026_01_01", "state.txt"), False),
])
def test_what_counts_in_a_service_directory(parts, counts):
    assert definition.in_service(parts) is counts


@pytest.mark.parametrize("parts,plain,counts", [
    ((), None, True),
    (("svtree.toml",), True, True),
    (("web",), False, True),  # a service directory, created or renamed
    (("web",), None, True),  # gone: it may have been one
    (("notes.txt",), True, False),  # a plain file is not a service
    (("web", "run"), None, True), (("web", "state.txt"), None, False),
    ((".git", "index"), None, False), (("web.swo",), False, False),
    (("..data",), None, True), (("..2026_01_01", "web", "run"), None, True),
    (("..2026_01_01", "web", "cache", "x"), None, False),
])
def test_what_counts_in_a_tree(parts, plain, counts):
    assert definition.in_tree(parts, plain) is counts


def test_the_watcher_wakes_for_definitions_only(scratch):
    tree = make_tree(scratch, {"web": {"service.toml": ""}})
    with open(os.path.join(scratch, "notes.txt"), "w"):
        pass
    web = os.path.join(tree, "web")
    assert relevant(os.path.join(web, "run"), tree)
    assert relevant(os.path.join(web, "service.toml"), tree)
    assert relevant(web, tree)
    assert relevant(os.path.join(tree, "svtree.toml"), tree)
    assert not relevant(os.path.join(web, "state.txt"), tree)
    assert not relevant(os.path.join(web, ".run.swo"), tree)
    assert not relevant(os.path.join(web, "run.swo"), tree)
    assert not relevant(os.path.join(web, "__pycache__", "x.pyc"), tree)
    os.rename(os.path.join(scratch, "notes.txt"), os.path.join(tree, "notes.txt"))
    assert not relevant(os.path.join(tree, "notes.txt"), tree)  # a plain file, not a service
    scripts = os.path.join(scratch, "cont-init.d")
    assert relevant(os.path.join(scripts, "10-setup"), tree, (scripts,))
    assert not relevant(os.path.join(scripts, "10-setup~"), tree, (scripts,))
    assert not relevant(os.path.join(scripts, "sub", "x"), tree, (scripts,))
    rc = os.path.join(scratch, "s6-rc.d")
    assert relevant(os.path.join(rc, "init", "up"), tree, (), (rc,))
    assert relevant(os.path.join(rc, "init", "down"), tree, (), (rc,))
    assert relevant(os.path.join(rc, "user", "contents.d", "web"), tree, (), (rc,))
    assert relevant(os.path.join(rc, "web", "timeout-kill"), tree, (), (rc,))
    assert not relevant(os.path.join(rc, "web", "data", "cache"), tree, (), (rc,))
    assert not relevant(os.path.join(rc, "web", "env", "PORT"), tree, (), (rc,))
    assert not relevant(os.path.join(rc, "web", "state.txt"), tree, (), (rc,))


NAMES = ["run", "finish", "down", "service.toml", "type", "notification-fd", "timeout-finish",
         "state.txt", "run.pid", ".run.swo", "run.swo", ".run.swp", "run~", "x.tmp", ".#run"]


@pytest.mark.parametrize("name", NAMES)
def test_the_digest_and_the_watcher_agree(scratch, name):
    """A file changes a service's digest exactly when the watcher wakes for it (was: a
    `.swo` changed the digest but never woke the watcher, so the next unrelated reload
    restarted its service)."""
    tree = make_tree(scratch, {"web": {}})
    web = os.path.join(tree, "web")
    before = definition_digest(web, DefinitionFiles(), [])
    path = os.path.join(web, name)
    with open(path, "a") as f:
        f.write("5\n")  # a valid value for every s6 file
    after = definition_digest(web, DefinitionFiles(), [])
    assert (before != after) == relevant(path, tree), name


@pytest.mark.parametrize("name", ["web.swo", "web~", ".web", "web.tmp"])
def test_discover_and_the_watcher_agree_on_service_names(scratch, name):
    tree = make_tree(scratch, {"a": {}, name: {}})
    assert [s.name for s in compile_tree(tree).services] == ["a"]
    assert not relevant(os.path.join(tree, name), tree)


# --- refused definition files -------------------------------------------------------------------

def test_a_fifo_as_service_toml_is_refused_without_blocking(scratch):
    tree = make_tree(scratch, {"web": {}})
    os.mkfifo(os.path.join(tree, "web", "service.toml"))
    problem = only_problem(tree, "web/service.toml")
    assert problem.message == "is a FIFO, not a regular file"
    assert "regular file" in problem.hint


def test_a_symlink_to_a_device_as_a_settings_file_is_refused(scratch):
    tree = make_tree(scratch, {"web": {}})
    os.symlink("/dev/zero", os.path.join(tree, "web", "service.toml"))
    problem = only_problem(tree, "web/service.toml")
    assert problem.message == "is a symlink to /dev/zero, a character device, not a regular file"


@pytest.mark.parametrize("where", ["web/type", "web/notification-fd", "web/down-signal", "svtree.toml",
                                   "web/log/service.toml"])
def test_every_definition_file_must_be_regular(scratch, where):
    tree = make_tree(scratch, {"web": {"log/run": ("#!/bin/sh\nexec cat\n", 0o755)}})
    os.mkfifo(os.path.join(tree, where))
    assert only_problem(tree, where).message == "is a FIFO, not a regular file"


@pytest.mark.parametrize("where", ["web/run", "web/finish", "web/log/run"])
def test_a_fifo_named_like_a_script_is_refused(scratch, where):
    tree = make_tree(scratch, {"web": {"log/run": ("#!/bin/sh\nexec cat\n", 0o755)}})
    os.unlink(os.path.join(tree, where)) if os.path.exists(os.path.join(tree, where)) else None
    os.mkfifo(os.path.join(tree, where))
    assert only_problem(tree, where).message == "must be a file"


def test_fifos_that_are_data_are_never_opened(scratch):
    tree = make_tree(scratch, {"web": {"supervise/": ""}})
    os.mkfifo(os.path.join(tree, "web", "supervise", "control"))
    os.mkfifo(os.path.join(tree, "web", "fifo"))
    assert [s.name for s in compile_tree(tree).services] == ["web"]


def test_a_settings_file_over_the_cap_is_refused(scratch):
    tree = make_tree(scratch, {"web": {"service.toml": "#" * (MAX_BYTES + 1)}})
    assert "larger than 1 MiB" in only_problem(tree, "web/service.toml").message


def test_a_large_run_is_checked_and_digested_by_its_head_size_and_mtime(scratch):
    big = b"\x7fELF" + b"\0" * (MAX_BYTES + 10)
    tree = make_tree(scratch, {"web": {"run": (big, 0o755)}})
    run = os.path.join(tree, "web", "run")
    one = compile_tree(tree).by_name()["web"].digest
    with open(run, "r+b") as f:  # a change past the cap, same size: the mtime tells
        f.seek(MAX_BYTES + 5)
        f.write(b"\1")
    os.utime(run, ns=(1, 1))
    assert compile_tree(tree).by_name()["web"].digest != one


# --- the cache: an unchanged file is read once ----------------------------------------------

def test_a_second_compile_reads_no_unchanged_file(scratch):
    tree = make_tree(scratch, {"a": {"service.toml": "stop_timeout = 3\n", "finish": "#!/bin/sh\n"},
                               "b": {"type": "oneshot\n"}}, global_toml="kill_grace = 1\n")
    time.sleep(RACY_NS / 1e9 + 0.1)  # only files that settled are kept (the test below)
    first = DefinitionFiles()
    plan = compile_tree(tree, first)
    assert first.reads == 6  # 2 runs, a finish, a service.toml, a type, svtree.toml
    again = DefinitionFiles(first.used)
    assert compile_tree(tree, again) == plan
    assert again.reads == 0
    with open(os.path.join(tree, "a", "service.toml"), "w") as f:
        f.write("stop_timeout = 4\n")
    changed = DefinitionFiles(again.used)
    new = compile_tree(tree, changed)
    assert changed.reads == 1
    assert new.by_name()["a"].stop_timeout == 4.0 and new.by_name()["a"].digest != plan.by_name()["a"].digest


def test_a_file_written_within_the_last_second_is_not_cached(scratch):
    """Its timestamps could equal those of a next version written within the same clock
    tick, with the same size: only settled files are kept (git's racy entries)."""
    tree = make_tree(scratch, {"a": {}})
    files = DefinitionFiles()
    compile_tree(tree, files)
    assert os.path.join(tree, "a", "run") not in files.used
    run = os.path.join(tree, "a", "run")
    with open(run, "rb") as f:
        text = f.read()
    with open(run, "r+b") as f:  # same size, other bytes, maybe the same timestamps
        f.write(text.replace(b"1000", b"2000"))
    again = DefinitionFiles(files.used)
    digest = compile_tree(tree, again).by_name()["a"].digest
    assert again.reads == 1
    assert digest == compile_tree(tree).by_name()["a"].digest  # what a fresh compile sees
