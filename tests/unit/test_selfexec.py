"""How svtree runs its own watcher, and the environment its children get in the bundle.

The frozen side (the bundle's executable, its bootloader's variables) is run for real by
tests/bundle; here: the pure environment rule, the argv from a pip install, and that the
hidden subcommand is dispatched before anything heavy is imported.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from svtree import selfexec

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_loader_path_goes_back_to_what_it_was():
    env = {"PATH": "/bin", "LD_LIBRARY_PATH": "/opt/svtree/bin/_internal:/usr/local/lib",
           "LD_LIBRARY_PATH_ORIG": "/usr/local/lib", "_PYI_ARCHIVE_FILE": "/opt/svtree/bin/svtree",
           "_PYI_PARENT_PROCESS_LEVEL": "1", "_MEIPASS2": "/x", "APP": "1"}
    assert selfexec.original_environ(env) == {"PATH": "/bin", "LD_LIBRARY_PATH": "/usr/local/lib", "APP": "1"}


def test_loader_path_set_only_by_the_bundle_is_removed():
    env = {"PATH": "/bin", "LD_LIBRARY_PATH": "/opt/svtree/bin/_internal", "_PYI_LINUX_PROCESS_NAME": "svtree"}
    assert selfexec.original_environ(env) == {"PATH": "/bin"}


def test_an_empty_saved_loader_path_stays_empty():
    env = {"LD_LIBRARY_PATH": "/opt/svtree/bin/_internal", "LD_LIBRARY_PATH_ORIG": ""}
    assert selfexec.original_environ(env) == {"LD_LIBRARY_PATH": ""}


def test_a_pip_install_runs_the_watcher_with_this_python():
    assert not selfexec.frozen()
    assert selfexec.watcher_command(["/a", "/b"]) == [sys.executable, "-m", "svtree", "_watcher", "/a", "/b"]


def test_outside_the_bundle_the_environment_is_left_alone(monkeypatch):
    monkeypatch.setenv("LD_LIBRARY_PATH", "/mine")
    monkeypatch.setenv("_PYI_SOMETHING", "of another program")
    selfexec.restore_environ()
    assert os.environ["LD_LIBRARY_PATH"] == "/mine" and os.environ["_PYI_SOMETHING"] == "of another program"


def test_the_watcher_subcommand_is_dispatched_before_heavy_imports():
    code = ("import sys; from svtree.cli import main; rc = main(['_watcher']); "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('structlog', 'argparse', 'tomllib')"
            " or m.startswith(('svtree.core', 'svtree.compiler', 'svtree.monitor', 'svtree.ctl'))]; "
            "print(rc, sorted(bad))")
    r = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=REPO), timeout=30)
    assert r.stdout.strip() == "2 []", (r.stdout, r.stderr)
    assert "usage: svtree _watcher --tree DIR" in r.stderr


def test_the_ctl_path_does_not_load_selfexec():
    code = ("import sys; from svtree.cli import main; main(['ctl', '--socket', '/nonexistent/sock', 'status']); "
            "print('svtree.selfexec' in sys.modules)")
    r = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=REPO), timeout=30)
    assert r.stdout.strip() == "False", (r.stdout, r.stderr)


@pytest.mark.timeout(30)
def test_the_watcher_command_runs_the_watcher(tmp_path):
    """The argv the core spawns, spawned: it sets its watches, says `ready`, then reports a
    change. Killed by pid."""
    proc = subprocess.Popen(selfexec.watcher_command(["--tree", str(tmp_path)]), stdout=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=REPO))
    try:
        assert proc.stdout.readline() == b"ready\n"
        (tmp_path / "web").mkdir()  # a new service directory (a plain file would be no change)
        assert proc.stdout.readline() == b"changed\n"
    finally:
        proc.kill()
        proc.wait(10)
