"""The bundle in podman: an image with no Python at all (busybox-static and the C library,
`podman import`ed) gets svtree by `COPY --from` the image packaging/Containerfile.bundle
makes, and runs a tree as PID 1.

The bundle is tests/bundle's (built once per source hash, cached under /tmp); the three
images are tagged with that hash and rebuilt only when it changes.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tarfile
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "bundle"))

import bundle_harness as B  # noqa: E402

# The container suite's harness (podman_harness.py, with conftest.py's engine check that
# skips every test here where podman cannot run): this module goes with it.
H = pytest.importorskip("podman_harness", reason="the container suite's harness is not here")
Launcher, image_exists, podman, wait_until = H.Launcher, H.image_exists, H.podman, H.wait_until

BUILD_TIMEOUT = 300.0
NOPYTHON_REPO = "localhost/svtree-test-nopython"
BUNDLE_REPO = "localhost/svtree-test-bundle"
APP_REPO = "localhost/svtree-test-bundle-app"
LOADER_VARS = ("LD_LIBRARY_PATH", "LD_LIBRARY_PATH_ORIG")

APP_CONTAINERFILE = """\
FROM {base}
COPY --from={bundle} /opt/svtree /opt/svtree
ENV PATH=/opt/svtree/bin:/bin
ENTRYPOINT ["/opt/svtree/bin/svtree"]
"""


def stops_on_term(name: str) -> str:
    return (f"#!/bin/sh\ntrap 'echo stop {name} >> /data/events; exit 0' TERM\n"
            f"echo start {name} >> /data/events\nwhile :; do sleep 1000 & wait $!; done\n")


def _prune(repo: str, keep: str) -> None:
    """Older builds of our images (no container of this run uses them)."""
    out = podman("images", "--format", "{{.Repository}}:{{.Tag}}", repo, check=False).stdout.split()
    for ref in out:
        if ref != keep:
            podman("rmi", ref, check=False, timeout=120)


def _import_base(rootfs: B.Rootfs, ref: str) -> None:
    """The root filesystem of tests/bundle without /opt/svtree and /dev (the engine makes
    its own): busybox-static and the C library."""
    with tempfile.NamedTemporaryFile(suffix=".tar", prefix="svtree-nopython-") as f:
        with tarfile.open(fileobj=f, mode="w") as tar:
            for top in sorted(os.listdir(rootfs.path)):
                if top in ("opt", "dev", "srv"):
                    continue
                tar.add(os.path.join(rootfs.path, top), arcname=top)
        f.flush()
        podman("import", "--change", 'CMD ["/bin/sh"]', f.name, ref, timeout=BUILD_TIMEOUT)


@pytest.fixture(scope="module")
def bundle() -> B.Bundle:
    if not B.CAN_RUN:
        pytest.skip("bundles are built here only as root on Linux x86_64/aarch64 with glibc")
    return B.build_once()


@pytest.fixture(scope="module")
def rootfs(bundle) -> B.Rootfs:
    r = B.Rootfs(bundle)
    yield r
    r.cleanup()


@pytest.fixture(scope="module")
def images(bundle, rootfs) -> "dict[str, str]":
    key = B.source_key()
    refs = {"base": f"{NOPYTHON_REPO}:{key}", "bundle": f"{BUNDLE_REPO}:{key}", "app": f"{APP_REPO}:{key}"}
    if not image_exists(refs["base"]):
        _import_base(rootfs, refs["base"])
    if not image_exists(refs["bundle"]):
        context = tempfile.mkdtemp(prefix="svtree-bundle-ctx-")
        try:
            os.mkdir(os.path.join(context, "dist"))
            shutil.copy(bundle.alias, os.path.join(context, "dist"))
            podman("build", "--pull=never", "--network", "none", "--layers=false",
                   "-f", os.path.join(REPO, "packaging", "Containerfile.bundle"),
                   "-t", refs["bundle"], context, timeout=BUILD_TIMEOUT)
        finally:
            shutil.rmtree(context, ignore_errors=True)
    if not image_exists(refs["app"]):
        podman("build", "--pull=never", "--network", "none", "--layers=false", "-t", refs["app"], "-f", "-",
               tempfile.gettempdir(), input=APP_CONTAINERFILE.format(**refs), timeout=BUILD_TIMEOUT)
    for repo, ref in ((APP_REPO, refs["app"]), (BUNDLE_REPO, refs["bundle"]), (NOPYTHON_REPO, refs["base"])):
        _prune(repo, ref)
    return refs


def test_the_bundle_image_holds_opt_svtree_only(images, tmp_path):
    archive = tmp_path / "bundle.tar"
    podman("save", "--format", "docker-archive", "-o", str(archive), images["bundle"], timeout=BUILD_TIMEOUT)
    names = []
    with tarfile.open(archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))
        layers = manifest[0]["Layers"]
        assert len(layers) == 1, layers
        with tarfile.open(fileobj=outer.extractfile(layers[0])) as layer:
            names = layer.getnames()
    names = [n.lstrip("./") for n in names if n.lstrip("./")]
    assert names and all(n == "opt" or n.startswith("opt/svtree") for n in names), names[:10]
    assert "opt/svtree/bin/svtree" in names


def test_pid1_in_an_image_without_python(images):
    launch = Launcher("bundle-image")
    try:
        tree = {
            "a/run": "#!/bin/sh\ncat /proc/$$/environ > /data/env.a\nexec sleep 1000\n",
            "b/run": "#!/bin/sh\nexec sleep 1000\n",
            "b/service.toml": 'depends_on = ["a"]\n',
        }
        c = launch.start("pid1", images["app"], tree=tree)
        c.wait_ready("a", "b")
        assert c.ctl("check").returncode == 0
        plain = c.ctl("status")
        assert plain.returncode == 0 and plain.stdout.startswith("NAME"), plain.stderr
        assert c.exec("sh", "-c", "command -v python3 || command -v python || echo none").stdout.strip() == "none"
        assert c.exec("cat", "/proc/1/cmdline").stdout.split("\0")[0] == B.EXE
        # The environment: PID 1 has the bootloader's variables, the service has none of them.
        own = dict(e.split("=", 1) for e in c.exec("cat", "/proc/1/environ").stdout.split("\0") if e)
        assert own["LD_LIBRARY_PATH"].startswith("/opt/svtree/bin/_internal") and any(k.startswith("_PYI_") for k in own)
        wait_until(lambda: os.path.exists(os.path.join(c.data, "env.a")), 10, "a's environment")
        with open(os.path.join(c.data, "env.a"), "rb") as f:
            env_a = dict(e.decode().split("=", 1) for e in f.read().split(b"\0") if e)
        expected = {k: v for k, v in own.items() if k not in LOADER_VARS and not k.startswith(("_PYI_", "_MEIPASS"))}
        assert env_a == {**expected, "SVTREE_SERVICE": "a"}

        # Reload through the watcher: a service renamed into the mounted tree from the host.
        wait_until(lambda: "watcher_ready" in c.logs(), 30, "the watcher")
        staging = os.path.join(c.tree, ".c")
        os.mkdir(staging)
        with open(os.path.join(staging, "run"), "w") as f:
            f.write("#!/bin/sh\nexec sleep 1000\n")
        os.chmod(os.path.join(staging, "run"), 0o755)
        os.rename(staging, os.path.join(c.tree, "c"))
        wait_until(lambda: c.status().get("c", {}).get("state") == "ready", 30, "the watcher's reload")
        assert "Traceback" not in c.logs() and "internal_error" not in c.logs()
    finally:
        launch.remove_all()


def test_podman_stop_stops_in_order_and_exits_0_and_the_main_command_code_comes_through(images):
    launch = Launcher("bundle-stop")
    try:
        tree = {"a/run": stops_on_term("a"), "b/run": stops_on_term("b"), "b/service.toml": 'depends_on = ["a"]\n'}
        specs = {
            "stop": {"image": images["app"], "tree": tree},
            "main": {"image": images["app"], "tree": {"a/run": "#!/bin/sh\nexec sleep 1000\n"},
                     "args": ("--", "sh", "-c", "exit 7")},
        }
        started = launch.start_all(specs)
        c = started["stop"]
        c.wait_ready("a", "b")
        wait_until(lambda: len(c.data_lines("events")) == 2, 10, "both services to start")
        podman("stop", "-t", "20", c.name, timeout=60)
        assert c.inspect("{{.State.ExitCode}}") == "0", c.logs()[-2000:]
        assert [" ".join(w) for w in c.data_lines("events")][2:] == ["stop b", "stop a"]
        m = started["main"]
        wait_until(lambda: not m.running(), 30, "the main command to end")
        assert m.inspect("{{.State.ExitCode}}") == "7", m.logs()[-2000:]
    finally:
        launch.remove_all()
