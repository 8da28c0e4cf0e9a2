"""packaging/bundle.py without building: where it refuses to build, and its reading of the
glibc versions an ELF file needs (checked against binutils' objdump on real binaries)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
spec = importlib.util.spec_from_file_location("svtree_bundle_script", os.path.join(REPO, "packaging", "bundle.py"))
bundle = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bundle)


def test_linux_with_glibc_on_x86_64_and_aarch64_builds():
    assert bundle.platform_problem("Linux", "x86_64", "glibc") is None
    assert bundle.platform_problem("Linux", "aarch64", "glibc") is None


@pytest.mark.parametrize("system,machine,libc,words", [
    ("Linux", "armv7l", "glibc", ["unsupported platform Linux armv7l", "x86_64 and aarch64", "pip"]),
    ("Darwin", "arm64", "", ["unsupported platform Darwin arm64", "pip"]),
    ("Linux", "x86_64", "", ["not glibc (unknown)", "glibc image", "pip"]),
])
def test_an_unsupported_platform_gets_one_line_saying_what_to_do(system, machine, libc, words):
    problem = bundle.platform_problem(system, machine, libc)
    assert problem is not None and "\n" not in problem
    for w in words:
        assert w in problem


def objdump_needs(path: str) -> "set[tuple[str, str]]":
    """(library, version) from `objdump -p`'s Version References."""
    out = subprocess.run(["objdump", "-p", path], capture_output=True, text=True, check=True).stdout
    needs, library = set(), None
    in_refs = False
    for line in out.splitlines():
        if line.startswith("Version References:"):
            in_refs = True
            continue
        if in_refs:
            m = re.match(r"\s+required from (\S+):", line)
            if m:
                library = m.group(1)
            elif re.match(r"\s+0x[0-9a-f]+ 0x[0-9a-f]+ \d+ (\S+)", line):
                needs.add((library, line.split()[-1]))
            elif line.strip() and not line.startswith(" "):
                break
    return needs


@pytest.mark.skipif(shutil.which("objdump") is None, reason="needs objdump (binutils)")
@pytest.mark.parametrize("path", [os.path.realpath(sys.executable), "/bin/sh", os.path.realpath(shutil.which("objdump") or "/")])
def test_the_elf_reader_agrees_with_objdump(path):
    ours = set(bundle.elf_version_needs(path))
    assert ours and ours == objdump_needs(path)
    assert any(v.startswith("GLIBC_2.") for _, v in ours)


def test_a_file_that_is_not_elf_needs_nothing(tmp_path):
    (tmp_path / "script").write_text("#!/bin/sh\n")
    assert bundle.elf_version_needs(str(tmp_path / "script")) == []


def test_the_containerfile_adds_the_tarball_of_this_version():
    with open(os.path.join(REPO, "packaging", "Containerfile.bundle")) as f:
        text = f.read()
    import svtree

    assert f"ARG VERSION={svtree.__version__}\n" in text
    assert "FROM scratch\n" in text and "ADD ${DIST}/svtree-${VERSION}-linux-${TARGETARCH}.tar.gz /\n" in text
