"""The environment svtree's children get in the bundle, and the file watcher, which the
core forks (the same executable, installed or bundled) and which loads only watchfiles'
compiled module.

The frozen side (the bundle's executable, its bootloader's variables) is run for real by
tests/bundle; here: the pure environment rule, and the watcher's code run by itself.
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


def test_outside_the_bundle_the_environment_is_left_alone(monkeypatch):
    monkeypatch.setenv("LD_LIBRARY_PATH", "/mine")
    monkeypatch.setenv("_PYI_SOMETHING", "of another program")
    selfexec.restore_environ()
    assert os.environ["LD_LIBRARY_PATH"] == "/mine" and os.environ["_PYI_SOMETHING"] == "of another program"


def test_the_ctl_path_does_not_load_selfexec():
    code = ("import sys; from svtree.cli import main; main(['ctl', '--socket', '/nonexistent/sock', 'status']); "
            "print('svtree.selfexec' in sys.modules)")
    r = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=REPO), timeout=30)
    assert r.stdout.strip() == "False", (r.stdout, r.stderr)


def test_the_watcher_loads_watchfiles_compiled_module_alone():
    """Not the package's __init__ (its Python API: 40 ms and 3 MB of imports)."""
    code = ("import sys; from svtree.watcher import load_rust_notify; R = load_rust_notify(); "
            "print(R.__name__, sorted(m for m in sys.modules if m.startswith('watchfiles')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=REPO), timeout=30)
    assert r.stdout.strip() == "RustNotify []", (r.stdout, r.stderr)  # no module of the package


@pytest.mark.timeout(30)
def test_the_watcher_says_ready_then_changed(tmp_path):
    """What the core's forked watcher runs, run by itself: it sets its watches, says
    `ready` on its fd, then reports a change. Killed by pid."""
    code = "import sys; from svtree.watcher import watch; watch([('tree', sys.argv[1])], 1)"
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=REPO))
    try:
        assert proc.stdout.readline() == b"ready\n"
        (tmp_path / "web").mkdir()  # a new service directory (a plain file would be no change)
        assert proc.stdout.readline() == b"changed\n"
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.timeout(30)
def test_a_watcher_that_cannot_watch_says_why(tmp_path):
    code = "import sys; from svtree.watcher import watch; sys.exit(watch([('tree', sys.argv[1])], 1))"
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "missing")], capture_output=True,
                       text=True, env=dict(os.environ, PYTHONPATH=REPO), timeout=30)
    assert r.returncode == 1
    assert r.stdout.startswith("error ") and r.stdout.endswith("\n"), r.stdout
