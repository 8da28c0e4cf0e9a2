"""Fixtures of tests/bundle: the bundle built once per source (cached under /tmp), a root
filesystem without Python holding it, and svtree from it as PID 1 (bundle_harness.py)."""

from __future__ import annotations

import os
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bundle_harness import CAN_RUN, Bundle, BundledSvtree, Rootfs, Tree, build_once  # noqa: E402


@pytest.fixture(scope="session")
def bundle() -> Bundle:
    if not CAN_RUN:
        pytest.skip("bundles are built and run here only as root on Linux x86_64/aarch64 with glibc")
    return build_once()


@pytest.fixture(scope="session")
def rootfs(bundle) -> Rootfs:
    if shutil.which("busybox") is None:
        pytest.fail("busybox is not installed (apt-get install busybox-static)")
    r = Rootfs(bundle)
    yield r
    r.cleanup()


@pytest.fixture
def tree(rootfs):
    t = Tree(rootfs)
    yield t
    t.cleanup()


@pytest.fixture
def run_bundle(rootfs, tree):
    started: "list[BundledSvtree]" = []

    def start(*args, **kw) -> BundledSvtree:
        s = BundledSvtree(rootfs, tree, *args, **kw)
        started.append(s)
        return s

    yield start
    for s in started:
        s.kill()
    for s in started:
        err = s.stderr()
        assert "internal_error" not in err and "Traceback" not in err, err[-3000:]
