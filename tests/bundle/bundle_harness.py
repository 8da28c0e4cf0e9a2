"""The harness of tests/bundle (fixtures in conftest.py): the bundle (packaging/bundle.py),
built once and run as PID 1 of a root filesystem that has no Python: busybox-static and
the host's C library, nothing else.

The build takes half a minute, so it is cached under /tmp by a hash of everything that
goes into it (svtree/, packaging/, pyproject.toml, the Python that builds it): a session
whose sources did not change reuses the tarball; a fresh machine builds once. A lock
keeps two sessions from building the same thing at once; the build has a hard timeout.

svtree runs as `unshare --pid --fork --mount-proc --kill-child --root ROOT
/opt/svtree/bin/svtree ...`; `svtree ctl` and everything else that looks inside runs
through `nsenter` into its namespaces and root, like `podman exec`. Every svtree started
here is killed by pid at teardown (SIGKILL to the namespace's PID 1 takes everything in
it along).
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import textwrap

import pytest

from harness import UNSHARE_OK, Svtree, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CACHE = "/tmp/svtree-bundle-cache"
BUILD_TIMEOUT = 900  # a fresh machine: venv, PyInstaller from PyPI, the freeze, the tarball
HOME = "/opt/svtree"
EXE = f"{HOME}/bin/svtree"
DOCKER_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


def _load(name: str, path: str):
    """packaging/bundle.py, a script (not a module of a package), under a name of its own."""
    mod = sys.modules.get(name)
    if mod is None:
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return mod


BUNDLE_SCRIPT = _load("svtree_bundle_script", os.path.join(REPO, "packaging", "bundle.py"))

CAN_RUN = (UNSHARE_OK and shutil.which("nsenter") is not None
           and BUNDLE_SCRIPT.platform_problem(platform.system(), platform.machine(),
                                              platform.libc_ver()[0]) is None)
needs_bundle = pytest.mark.skipif(not CAN_RUN, reason="needs root, unshare and nsenter, on Linux "
                                  "x86_64 or aarch64 with glibc (where bundles are built)")


# --- the build, cached ------------------------------------------------------------------

def source_key() -> str:
    h = hashlib.sha256()
    files = [os.path.join(REPO, "pyproject.toml")]
    for top in ("svtree", "packaging"):
        for folder, dirs, names in os.walk(os.path.join(REPO, top)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            files += [os.path.join(folder, n) for n in sorted(names) if not n.endswith(".pyc")]
    for path in files:
        h.update(os.path.relpath(path, REPO).encode() + b"\0")
        with open(path, "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    h.update(f"{sys.executable}\0{sys.version}".encode())
    return h.hexdigest()[:16]


class Bundle:
    def __init__(self, dist: str) -> None:
        self.dist = dist
        machine = platform.machine()
        self.tarball = glob.glob(os.path.join(dist, f"svtree-*-linux-{machine}.tar.gz"))[0]
        self.alias = self.tarball.replace(f"-linux-{machine}.", f"-linux-{DOCKER_ARCH[machine]}.")


def build_once() -> Bundle:
    key = source_key()
    dist = os.path.join(CACHE, key, "dist")
    os.makedirs(CACHE, exist_ok=True)
    with open(os.path.join(CACHE, "lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session may be building this very key
        if not glob.glob(os.path.join(dist, "svtree-*.tar.gz")):
            log = os.path.join(CACHE, f"{key}.log")
            with open(log, "wb") as out:
                try:
                    r = subprocess.run([sys.executable, os.path.join(REPO, "packaging", "bundle.py"),
                                        "--out", dist, "--work", os.path.join(CACHE, "work")],
                                       stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       timeout=BUILD_TIMEOUT, start_new_session=True)
                    code = r.returncode
                except subprocess.TimeoutExpired:
                    code = f"timeout after {BUILD_TIMEOUT} s"
            if code != 0:
                shutil.rmtree(dist, ignore_errors=True)
                with open(log, errors="replace") as f:
                    pytest.fail(f"packaging/bundle.py failed ({code}):\n{f.read()[-4000:]}")
            _prune(keep=KEEP_BUILDS)
    return Bundle(dist)


KEEP_BUILDS = 3  # bundles of other sources kept in the cache (the newest)


def _prune(keep: int) -> None:
    builds = [os.path.join(CACHE, d) for d in os.listdir(CACHE)
              if len(d) == 16 and os.path.isdir(os.path.join(CACHE, d))]
    builds.sort(key=os.path.getmtime, reverse=True)
    for old in builds[keep:]:
        shutil.rmtree(old, ignore_errors=True)
        try:
            os.unlink(old + ".log")
        except OSError:
            pass


# --- a root filesystem without Python ---------------------------------------------------

GLIBC_LIBS = ("ld-linux", "libc.so", "libm.so", "libdl.so", "libpthread.so", "librt.so",
              "libutil.so", "libresolv.so", "libnss_", "libanl.so")


def elf_files(root: str) -> "list[str]":
    out = []
    for folder, _dirs, names in os.walk(root):
        for n in names:
            path = os.path.join(folder, n)
            if not os.path.islink(path):
                with open(path, "rb") as f:
                    if f.read(4) == b"\x7fELF":
                        out.append(path)
    return out


def system_libraries(home: str) -> "set[str]":
    """The libraries outside the bundle that its ELF files load (ldd, with the bundle's
    own libraries on the path as its bootloader sets them): the C library's, it should be."""
    internal = os.path.join(home, "bin", "_internal")
    found = set()
    for path in elf_files(home):
        r = subprocess.run(["ldd", path], capture_output=True, text=True, timeout=30,
                           env={"LD_LIBRARY_PATH": internal, "PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        for line in r.stdout.splitlines():
            words = line.split()
            for w in words:
                if w.startswith("/") and not w.startswith(home):
                    found.add(w)
    return found


class Rootfs:
    """busybox-static, the C library the bundle loads, /opt/svtree from the tarball."""

    def __init__(self, bundle: Bundle) -> None:
        self.path = tempfile.mkdtemp(prefix="svtree-bundle-root-")
        for d in ("bin", "proc", "dev", "run", "tmp", "srv", "opt"):
            os.makedirs(os.path.join(self.path, d))
        os.chmod(os.path.join(self.path, "tmp"), 0o1777)
        with tarfile.open(bundle.tarball) as tar:
            names = tar.getnames()
            assert all(n == "opt" or n.startswith("opt/svtree") for n in names), names[:5]
            tar.extractall(self.path)
        busybox = shutil.which("busybox")
        shutil.copy2(busybox, os.path.join(self.path, "bin", "busybox"))
        applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True).stdout.split()
        for applet in applets:
            if applet != "busybox":
                os.symlink("busybox", os.path.join(self.path, "bin", applet))
        for lib in system_libraries(self.host(HOME)):
            target = self.host(lib)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(os.path.realpath(lib), target)
        os.mknod(self.host("/dev/null"), 0o666 | 0o020000, os.makedev(1, 3))
        os.chmod(self.host("/dev/null"), 0o666)

    def host(self, path: str) -> str:
        """Where a path inside the root filesystem is, seen from the host."""
        return os.path.join(self.path, path.lstrip("/"))

    def cleanup(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


# --- svtree from the bundle as PID 1 of that root ---------------------------------------

BASE_ENV = {"PATH": "/bin", "HOME": "/", "LANG": "C.UTF-8", "SVTREE_BUNDLE_TEST": "kept as given"}


class Tree:
    """A service tree inside the root filesystem (ROOT/srv/NAME), with an events file."""

    def __init__(self, rootfs: Rootfs) -> None:
        self.rootfs = rootfs
        self.host_root = tempfile.mkdtemp(prefix="t-", dir=rootfs.host("/srv"))
        self.inside = "/srv/" + os.path.basename(self.host_root)
        self.dir = f"{self.inside}/services.d"
        self.events = f"{self.inside}/events"
        os.mkdir(rootfs.host(self.dir))
        open(rootfs.host(self.events), "w").close()

    def service(self, name: str, run: str, toml: "str | None" = None) -> None:
        d = self.rootfs.host(f"{self.dir}/{name}")
        os.makedirs(d, exist_ok=True)
        self.write(f"{name}/run", "#!/bin/sh\nEVENTS=" + self.events + "\n" + textwrap.dedent(run).lstrip("\n"))
        os.chmod(os.path.join(d, "run"), 0o755)
        if toml is not None:
            self.write(f"{name}/service.toml", toml)

    def write(self, rel: str, text: str) -> None:
        with open(self.rootfs.host(f"{self.dir}/{rel}"), "w") as f:
            f.write(text)

    def event_lines(self) -> "list[str]":
        with open(self.rootfs.host(self.events)) as f:
            return [line.strip() for line in f if line.strip()]

    def cleanup(self) -> None:
        shutil.rmtree(self.host_root, ignore_errors=True)


class BundledSvtree(Svtree):
    """The system harness's Svtree (wait, kill, signal, stderr), started from the bundle
    in the root filesystem, with ctl run inside its namespaces."""

    def __init__(self, rootfs: Rootfs, tree: Tree, args=(), cmd=None, env=None) -> None:
        self.rootfs = rootfs
        self.tree = tree
        self.socket = rootfs.host("/run/svtree/control.sock")  # the default, seen from the host
        self.stdout_path = os.path.join(tree.host_root, "stdout")
        self.stderr_path = os.path.join(tree.host_root, "stderr")
        self.env = dict(env if env is not None else BASE_ENV)
        # The root filesystem is the session's: the previous test's svtree left its socket.
        shutil.rmtree(os.path.dirname(self.socket), ignore_errors=True)
        argv = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "--root", rootfs.path,
                EXE, "run", "--dir", tree.dir, *args]
        if cmd:
            argv += ["--", *cmd]
        self.out = open(self.stdout_path, "wb")
        self.err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.out, stderr=self.err,
                                     env=self.env, start_new_session=True, cwd="/")
        self.pid1 = wait_for(self._find_pid1, 10, what="svtree to start in its namespace")

    def inside(self, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run a command in svtree's namespaces and root, like `podman exec`."""
        return subprocess.run(["nsenter", "--target", str(self.pid1), "--mount", "--pid", "--root",
                               "--wd=/", *argv], capture_output=True, text=True, timeout=timeout,
                              env=BASE_ENV)

    def ctl(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
        return self.inside(EXE, "ctl", *args, timeout=timeout)
