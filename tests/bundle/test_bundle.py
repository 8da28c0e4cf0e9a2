"""The bundle runs svtree as PID 1 where there is no Python: a root filesystem of
busybox-static and the C library only (conftest.py)."""

from __future__ import annotations

import os
import platform
import re
import shutil
import signal
import subprocess
import tarfile
import time

import pytest

from bundle_harness import BASE_ENV, BUNDLE_SCRIPT, EXE, GLIBC_LIBS, HOME, elf_files, needs_bundle, system_libraries, \
    wait_for

pytestmark = [needs_bundle, pytest.mark.timeout(300)]

LOOP = 'while :; do sleep 1000 & wait $!; done\n'


def stops_on_term(name: str) -> str:
    return (f'trap \'echo "stop {name}" >> $EVENTS; exit 0\' TERM\n'
            f'echo "start {name}" >> $EVENTS\n' + LOOP)


def environ_file(path: str) -> "dict[str, str]":
    with open(path, "rb") as f:
        entries = [e.decode() for e in f.read().split(b"\0") if e]
    return dict(e.split("=", 1) for e in entries)


def objdump(path: str) -> str:
    return subprocess.run(["objdump", "-p", path], capture_output=True, text=True, check=True).stdout


# --- the tarball ------------------------------------------------------------------------

def test_the_tarball_has_both_arch_names_and_one_entry_point(bundle, rootfs):
    assert os.path.samefile(bundle.tarball, bundle.alias) or \
        open(bundle.tarball, "rb").read() == open(bundle.alias, "rb").read()
    with tarfile.open(bundle.tarball) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert all(n == "opt" or n.startswith("opt/svtree/") or n == "opt/svtree" for n in members)
    entry = members["opt/svtree/bin/svtree"]
    assert entry.isfile() and entry.mode & 0o111 and entry.uid == 0 and entry.gid == 0
    # bin/ holds the executable and PyInstaller's _internal/ only: one entry point.
    assert sorted(os.listdir(rootfs.host(f"{HOME}/bin"))) == ["_internal", "svtree"]


def test_the_bundle_needs_only_the_c_library(bundle, rootfs):
    """Every library its files load from outside the bundle is glibc's, and the newest
    GLIBC_ version any of them requires (objdump's reading) is the one BUILDINFO states."""
    home = rootfs.host(HOME)
    outside = system_libraries(home)
    assert outside and all(os.path.basename(p).startswith(GLIBC_LIBS) for p in outside), outside
    needed = set()
    for path in elf_files(home):
        needed |= {tuple(int(x) for x in v.split(".")) for v in re.findall(r"\bGLIBC_(\d+(?:\.\d+)+)\b", objdump(path))}
    floor = ".".join(map(str, max(needed)))
    with open(os.path.join(home, "BUILDINFO")) as f:
        info = f.read()
    assert f"glibc {floor} or newer" in info, info
    host = tuple(int(x) for x in platform.libc_ver()[1].split("."))
    assert max(needed) <= host
    # The bootloader finds the bundle's own zlib: nothing but glibc is left to the image.
    boot = objdump(os.path.join(home, "bin", "svtree"))
    # ... and it needs an old glibc only, so where libpython cannot load it still starts
    # and says which version is missing (test_on_a_glibc_too_old...).
    boot_needs = [tuple(int(x) for x in v.split(".")) for v in re.findall(r"\bGLIBC_(\d+(?:\.\d+)+)\b", boot)]
    assert boot_needs and max(boot_needs) <= (2, 17), max(boot_needs)
    assert "$ORIGIN/_internal" in boot and os.path.exists(os.path.join(home, "bin", "_internal", "libz.so.1"))
    # Even where the loader cannot know $ORIGIN (a chroot without /proc), at /opt/svtree.
    r = subprocess.run([shutil.which("chroot") or "chroot", rootfs.path, EXE, "--version"], capture_output=True, text=True,
                       timeout=30, env=BASE_ENV)
    assert not os.listdir(rootfs.host("/proc")) and r.returncode == 0 and r.stdout.startswith("svtree "), r.stderr


# --- running it -------------------------------------------------------------------------

def test_pid1_without_python_starts_services_and_answers_ctl(rootfs, tree, run_bundle):
    tree.service("a", "exec sleep 1000\n")
    tree.service("b", "exec sleep 1000\n", toml='depends_on = ["a"]\n')
    sv = run_bundle(["--no-watch"])
    sv.wait_socket()
    r = sv.ctl("wait", "--ready", "--timeout", "20", "a", "b", timeout=40)
    assert r.returncode == 0, (r.stderr, sv.stderr())
    status = sv.status()
    assert {status[n]["state"] for n in "ab"} == {"ready"}
    assert sv.ctl("check").returncode == 0
    r = sv.inside(EXE, "compile", tree.dir)
    assert r.returncode == 0 and "a" in r.stdout and "b" in r.stdout, r.stderr
    plain = sv.ctl("status")
    assert plain.returncode == 0 and plain.stdout.startswith("NAME") and "ready" in plain.stdout
    # PID 1 is the bundle's executable itself (its bootloader re-executed in place).
    assert os.readlink(f"/proc/{sv.pid1}/exe") == rootfs.host(EXE)
    assert sv.inside("cat", "/proc/1/cmdline").stdout.split("\0")[:2] == [EXE, "run"]
    # No Python in the image, and none running: every process is svtree's or busybox's.
    r = sv.inside("sh", "-c", "command -v python3 || command -v python || echo none")
    assert r.stdout.strip() == "none"
    exes = sv.inside("sh", "-c", "for p in /proc/[0-9]*; do readlink $p/exe; done").stdout.split()
    assert exes and set(exes) <= {EXE, "/bin/busybox"}, exes


def test_reload_through_the_watcher(rootfs, tree, run_bundle):
    tree.service("a", "exec sleep 1000\n")
    sv = run_bundle()
    sv.wait_socket()
    wait_for(lambda: "watcher_ready" in sv.stderr(), 30, what="the watcher")
    pid_a = sv.status()["a"]["pid"]
    # The watcher is a fork of the bundle's executable (no Python, no exec) that loaded
    # watchfiles' compiled module and nothing of the package around it.
    comms = sv.inside("sh", "-c", "for p in /proc/[0-9]*; do echo ${p#/proc/} $(cat $p/comm); done").stdout
    watchers = [line.split()[0] for line in comms.splitlines() if line.split()[1:] == ["svtree-watcher"]]
    assert len(watchers) == 1, comms
    assert sv.inside("readlink", f"/proc/{watchers[0]}/exe").stdout.strip() == EXE
    maps = sv.inside("cat", f"/proc/{watchers[0]}/maps").stdout
    assert "/watchfiles/_rust_notify." in maps, maps
    # A new service appears in one rename (the compiler skips dot-names while it is written).
    staging = rootfs.host(f"{tree.dir}/.c")
    os.mkdir(staging)
    with open(os.path.join(staging, "run"), "w") as f:
        f.write("#!/bin/sh\nexec sleep 1000\n")
    os.chmod(os.path.join(staging, "run"), 0o755)
    os.rename(staging, rootfs.host(f"{tree.dir}/c"))
    wait_for(lambda: sv.status().get("c", {}).get("state") == "ready", 20, interval=0.1,
             what="the watcher's reload to start c")
    assert sv.status()["a"]["pid"] == pid_a
    assert "reload_applied" in sv.stderr()


def test_sigterm_stops_in_dependency_order_and_exits_0(tree, run_bundle):
    tree.service("a", stops_on_term("a"))
    tree.service("b", stops_on_term("b"), toml='depends_on = ["a"]\n')
    sv = run_bundle(["--no-watch"])
    sv.wait_socket()
    assert sv.ctl("wait", "--ready", "--timeout", "20", "a", "b", timeout=40).returncode == 0
    wait_for(lambda: len(tree.event_lines()) == 2, 10, what="both services to start")
    os.kill(sv.pid1, signal.SIGTERM)
    assert sv.wait(30) == 0, sv.stderr()
    assert tree.event_lines()[2:] == ["stop b", "stop a"], tree.event_lines()


@pytest.mark.parametrize("loader_path", [None, "/usr/local/lib/mine"], ids=["unset", "set"])
def test_the_main_command_exit_code_and_an_environment_without_the_bundles_variables(
        rootfs, tree, run_bundle, loader_path):
    """Services and the main command see exactly the environment svtree was started with
    (plus SVTREE_SERVICE for a service): LD_LIBRARY_PATH as it was, no _PYI_*/_MEIPASS*."""
    env = dict(BASE_ENV)
    if loader_path is not None:
        env["LD_LIBRARY_PATH"] = loader_path
    tree.service("a", f"cat /proc/$$/environ > {tree.inside}/env.a\nexec sleep 1000\n")
    main = (f"until [ -s {tree.inside}/env.a ]; do usleep 20000; done; "
            f"cat /proc/$$/environ > {tree.inside}/env.main; cat /proc/1/environ > {tree.inside}/env.1; exit 7")
    sv = run_bundle(["--no-watch"], cmd=["sh", "-c", main], env=env)
    started = time.monotonic()
    assert sv.wait(30) == 7, sv.stderr()
    assert time.monotonic() - started < 30
    assert environ_file(rootfs.host(f"{tree.inside}/env.main")) == env
    assert environ_file(rootfs.host(f"{tree.inside}/env.a")) == {**env, "SVTREE_SERVICE": "a"}
    # svtree itself was started by its bootloader with those variables: they were removed.
    own = environ_file(rootfs.host(f"{tree.inside}/env.1"))
    assert own["LD_LIBRARY_PATH"].startswith(f"{HOME}/bin/_internal") and any(k.startswith("_PYI_") for k in own)
    assert own.get("LD_LIBRARY_PATH_ORIG") == loader_path


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to make a stand-in for an old libm")
def test_on_a_glibc_too_old_it_says_which_version_it_needs(rootfs, tmp_path):
    """An older C library, played by a libm.so.6 that defines only the oldest GLIBC_
    version the bundle's libpython asks of it: the bootloader (glibc 2.14 is enough for
    it) starts and prints one line naming a version libpython needs and did not find."""
    libpython = next(p for p in elf_files(rootfs.host(f"{HOME}/bin/_internal"))
                     if os.path.basename(p).startswith("libpython"))
    wanted = {v for lib, v in BUNDLE_SCRIPT.elf_version_needs(libpython) if lib == "libm.so.6"}
    key = lambda v: tuple(int(x) for x in v.split("_")[1].split("."))  # noqa: E731
    if len(wanted) < 2:
        pytest.skip(f"libpython asks libm for one version only ({wanted})")
    oldest = min(wanted, key=key)
    (tmp_path / "stub.c").write_text("void svtree_stub(void) {}\n")
    (tmp_path / "v.map").write_text(f"{oldest} {{ global: svtree_stub; local: *; }};\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-nostdlib", "-o", str(tmp_path / "libm.so.6"), "-Wl,-soname,libm.so.6",
                    f"-Wl,--version-script={tmp_path / 'v.map'}", str(tmp_path / "stub.c")], check=True, timeout=60)
    old = tmp_path / "root"
    shutil.copytree(rootfs.path, old, symlinks=True, copy_function=os.link)
    libm = next(p for p in system_libraries(rootfs.host(HOME)) if os.path.basename(p) == "libm.so.6")
    target = os.path.join(old, libm.lstrip("/"))
    os.unlink(target)
    shutil.copy(tmp_path / "libm.so.6", target)
    r = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "--root", str(old),
                        EXE, "ctl", "status"], capture_output=True, text=True, timeout=30, env=BASE_ENV)
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1, r.stderr
    m = re.search(r"version `(GLIBC_[0-9.]+)' not found \(required by \S*libpython", lines[0])
    assert m and m.group(1) in wanted - {oldest}, lines[0]
