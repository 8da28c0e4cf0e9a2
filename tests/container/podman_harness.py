"""svtree in a real container engine: podman runs the image of examples/Dockerfile.

Skipped with one reason when not root, when podman is missing or cannot start a
container (found once per session, with a tiny busybox image), or when podman's storage
has too little space. `./.ci/run` installs podman, runc, catatonit, mmdebstrap and
busybox-static with apt and writes podman's configuration where none exists.

No registry is reachable, so the images are built here, and cached in podman's storage
between runs (each rebuilt only when its tag, a digest of its inputs, is missing):
- the base: Debian bookworm minbase with python3 and pip, made by mmdebstrap from the
  machine's own apt sources and `podman import`ed;
- the example: examples/Dockerfile with BASE=that base and WHEELS=the wheels of this
  checkout and its dependencies (`pip wheel`), built with `--network none`.

Every container gets a name with this run's prefix and is removed by that name at
teardown (`podman rm -f -v NAME`, `podman kube down FILE`); every podman call has a hard
timeout. Services write timestamps into a host directory mounted at /data, so tests
check order and timing from the host.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import hashlib
import io
import json
import os
import secrets
import shutil
import stat
import struct
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
from dataclasses import dataclass, field

from harness import wait_for

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCKERFILE = os.path.join("examples", "Dockerfile")

# Unique per run: every container, pod and scratch directory of this run carries it.
RUN_PREFIX = f"svtree-ct-{os.getpid()}-{secrets.token_hex(2)}"

NEED_FREE_BYTES = 4 << 30  # two images, and each vfs container is a full copy of its image
PODMAN_TIMEOUT = 90.0  # a single podman call (run, exec, stop ...)
BUILD_TIMEOUT = 900.0  # mmdebstrap, pip wheel, podman build

PROBE_IMAGE = "localhost/svtree-test-probe:busybox"
BASE_REPO = "localhost/svtree-test-base"
EXAMPLE_REPO = "localhost/svtree-test-example"
KEEP_EXAMPLE_IMAGES = 3  # older builds of the example are removed (when no container uses them)

# The base image: what python:3.12-slim gives the Dockerfile (python3, pip, useradd), from
# Debian packages only. Debian's python refuses `pip install` outside a venv (PEP 668);
# python:3.12-slim's does not, and PIP_BREAK_SYSTEM_PACKAGES makes this one the same.
BASE_PACKAGES = ("python3", "python3-pip", "passwd")
MMDEBSTRAP = (
    "mmdebstrap", "--quiet", "--variant=minbase", "--include=" + ",".join(BASE_PACKAGES),
    # merged /usr without the usrmerge package (which pulls in perl): a smaller image, and
    # with vfs every container is a full copy of it.
    "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
    "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/locale/*",
    "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    "--format=tar", "bookworm", "-",
)
BASE_CHANGES = ("ENV PIP_BREAK_SYSTEM_PACKAGES=1", 'CMD ["/bin/bash"]')

# Lines podman prints on every run/stop of an image with a HEALTHCHECK when systemd is not
# there to time the checks (`podman healthcheck run` still works): not errors of ours.
PODMAN_NOISE = "unable to get systemd connection"

TIMINGS: "dict[str, str]" = {}  # printed in the terminal summary


# --- podman -----------------------------------------------------------------------------

class PodmanError(AssertionError):
    pass


def quiet(stderr: str) -> str:
    return "\n".join(line for line in stderr.splitlines() if PODMAN_NOISE not in line)


def podman(*args: str, timeout: float = PODMAN_TIMEOUT, check: bool = True,
           input: "str | None" = None, cwd: "str | None" = None) -> subprocess.CompletedProcess:
    """One podman call with a hard timeout (subprocess kills the podman process by pid).

    input: podman's stdin (else /dev/null). cwd: where a container's conmon lives (podman
    run, kube play): it drops a file named `oom` there when the kernel OOM-kills a process
    of the container."""
    try:
        r = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, input=input,
                           stdin=subprocess.DEVNULL if input is None else None, cwd=cwd)
    except subprocess.TimeoutExpired:
        raise PodmanError(f"podman {' '.join(args)}: no answer within {timeout:.0f} s") from None
    if check and r.returncode != 0:
        raise PodmanError(f"podman {' '.join(args)}: exit {r.returncode}: {quiet(r.stderr)[-2000:]}")
    return r


def podman_version() -> "tuple[int, ...]":
    text = podman("version", "--format", "{{.Client.Version}}").stdout.strip()
    return tuple(int(p) for p in text.split("-")[0].split(".")[:3] if p.isdigit())


def image_exists(ref: str) -> bool:
    return podman("image", "exists", ref, check=False).returncode == 0


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2):
    """Poll a check (a file on the host, a podman exec: slower than the system tests' /proc
    reads, hence the longer interval) until it holds; fail on timeout."""
    return wait_for(predicate, timeout, interval, what)


def event_time(event: dict) -> float:
    """The time of one of svtree's JSON log events, as time.time() would give it."""
    return datetime.datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


# --- can podman run a container here? -------------------------------------------------------

def _is_static_elf(path: str) -> bool:
    """An ELF file without a PT_INTERP program header (no dynamic loader needed)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit only: what these machines run
            return False
        phoff, = struct.unpack_from("<Q", head, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != 3 for i in range(phnum))


def _probe_image() -> "str | None":
    """Import a one-file image (a static busybox) if missing; None, or why it cannot be."""
    if image_exists(PROBE_IMAGE):
        return None
    busybox = shutil.which("busybox")
    if busybox is None or not _is_static_elf(os.path.realpath(busybox)):
        return "needs a static busybox for its probe image (./.ci/run installs busybox-static)"
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        info = tar.gettarinfo(os.path.realpath(busybox), arcname="bin/busybox")
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        with open(os.path.realpath(busybox), "rb") as f:
            tar.addfile(info, f)
    with tempfile.NamedTemporaryFile(suffix=".tar", prefix=RUN_PREFIX + "-") as f:
        f.write(data.getvalue())
        f.flush()
        podman("import", f.name, PROBE_IMAGE, timeout=120)
    return None


def engine_problem() -> "str | None":
    """Why the container tests cannot run here, in one line, or None."""
    if os.geteuid() != 0:
        return "needs root (the suite runs rootful podman)"
    if shutil.which("podman") is None:
        return "podman is not installed (./.ci/run installs podman, runc and mmdebstrap with apt)"
    try:
        graphroot = podman("info", "--format", "{{.Store.GraphRoot}}", timeout=60).stdout.strip()
    except PodmanError as e:
        return f"podman does not work here: {str(e).splitlines()[-1]}"
    where = graphroot
    while not os.path.exists(where):
        where = os.path.dirname(where)
    free = shutil.disk_usage(where).free
    if free < NEED_FREE_BYTES:
        return (f"only {free / 2**30:.1f} GiB free under {graphroot} (podman's storage); "
                f"the suite needs {NEED_FREE_BYTES / 2**30:.0f} GiB")
    try:
        problem = _probe_image()
        if problem:
            return problem
        r = podman("run", "--rm", "--network", "none", "--name", f"{RUN_PREFIX}-probe", PROBE_IMAGE,
                   "/bin/busybox", "true", timeout=120, check=False)
    except PodmanError as e:
        return f"podman cannot start a container: {str(e).splitlines()[-1]}"
    finally:
        podman("rm", "-f", "-t", "0", f"{RUN_PREFIX}-probe", check=False, timeout=60)
    if r.returncode != 0:
        lines = quiet(r.stderr).strip().splitlines() or [f"exit {r.returncode}"]
        return f"podman cannot start a container: {lines[-1]}"
    return None


# --- the images ---------------------------------------------------------------------------

def digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big") + part)
    return h.hexdigest()[:16]


def apt_sources() -> "list[str]":
    """The machine's own Debian bookworm sources (what its apt-get uses), for mmdebstrap;
    empty: mmdebstrap's default mirror."""
    paths = ["/etc/apt/sources.list"]
    d = "/etc/apt/sources.list.d"
    if os.path.isdir(d):
        paths += sorted(os.path.join(d, n) for n in os.listdir(d) if n.endswith((".list", ".sources")))
    chosen = []
    for path in paths:
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            continue
        lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        if any("debian" in line for line in lines) and any("bookworm" in line for line in lines):
            chosen.append(path)
    return chosen


def base_image() -> str:
    tag = f"{BASE_REPO}:bookworm-{digest(*(a.encode() for a in MMDEBSTRAP + BASE_CHANGES))}"
    if image_exists(tag):
        TIMINGS["base image"] = f"cached ({tag})"
        return tag
    started = time.monotonic()
    with tempfile.TemporaryFile() as rootfs, tempfile.TemporaryFile() as log:
        try:
            subprocess.run([*MMDEBSTRAP, *apt_sources()], stdout=rootfs, stderr=log, check=True,
                           timeout=BUILD_TIMEOUT, stdin=subprocess.DEVNULL)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
            log.seek(0)
            raise PodmanError(f"mmdebstrap failed ({e}): {log.read().decode(errors='replace')[-2000:]}") from None
        rootfs.seek(0)
        changes = [a for change in BASE_CHANGES for a in ("--change", change)]
        r = subprocess.run(["podman", "import", *changes, "-", tag], stdin=rootfs, capture_output=True,
                           text=True, timeout=BUILD_TIMEOUT)
        if r.returncode != 0:
            raise PodmanError(f"podman import: {r.stderr[-2000:]}")
    TIMINGS["base image"] = f"built in {time.monotonic() - started:.1f} s ({tag})"
    return tag


def _context_files() -> "list[str]":
    """The repository files examples/Dockerfile copies (relative paths), sorted."""
    out = ["pyproject.toml", "README.md", DOCKERFILE]
    for top in ("svtree", os.path.join("examples", "app")):
        for directory, dirs, names in os.walk(os.path.join(REPO, top)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            out += [os.path.relpath(os.path.join(directory, n), REPO) for n in names if not n.endswith(".pyc")]
    return sorted(out)


def example_image(base: str) -> str:
    files = _context_files()
    base_id = podman("image", "inspect", "--format", "{{.Id}}", base).stdout.strip()
    parts = [base_id.encode()]
    for rel in files:
        path = os.path.join(REPO, rel)
        with open(path, "rb") as f:
            parts += [rel.encode(), b"%o" % stat.S_IMODE(os.stat(path).st_mode), f.read()]
    tag = f"{EXAMPLE_REPO}:{digest(*parts)}"
    if image_exists(tag):
        TIMINGS["example image"] = f"cached ({tag})"
        return tag
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=RUN_PREFIX + "-context-") as context:
        for rel in files:
            os.makedirs(os.path.join(context, os.path.dirname(rel)), exist_ok=True)
            shutil.copy2(os.path.join(REPO, rel), os.path.join(context, rel))
        wheels = os.path.join(context, "wheels")
        r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
                            context, "-w", wheels], capture_output=True, text=True, timeout=BUILD_TIMEOUT,
                           stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise PodmanError(f"pip wheel: {r.stderr[-2000:]}")
        wheeled = time.monotonic()
        # --layers=false: with vfs each cached layer is a full copy of the root filesystem;
        # one commit at the end builds in a quarter of the time. The tag is our cache.
        podman("build", "--layers=false", "--pull=never", "--format", "docker", "--network", "none",
               "-f", DOCKERFILE, "--build-arg", f"BASE={base}", "--build-arg", "WHEELS=wheels",
               "-t", tag, context, timeout=BUILD_TIMEOUT)
    TIMINGS["example image"] = (f"built in {time.monotonic() - started:.1f} s "
                                f"(pip wheel {wheeled - started:.1f} s) ({tag})")
    _prune_old_examples(keep=tag)
    return tag


def _prune_old_examples(keep: str) -> None:
    listing = json.loads(podman("images", "--format", "json", "--filter", f"reference={EXAMPLE_REPO}").stdout or "[]")
    created = {ref: row.get("Created", 0) for row in listing for ref in row.get("Names") or ()
               if ref.startswith(EXAMPLE_REPO + ":")}
    for ref in sorted(created, key=created.get, reverse=True)[KEEP_EXAMPLE_IMAGES:]:
        if ref != keep:
            podman("rmi", ref, check=False)  # no -f: an image a container uses stays


# --- service trees and containers -----------------------------------------------------------

def write_tree(root: str, files: "dict[str, str]") -> str:
    """Files of a service tree under root/services.d ('NAME/run' and 'NAME/finish' are made
    executable); returns the tree's directory."""
    tree = os.path.join(root, "services.d")
    for rel, text in files.items():
        path = os.path.join(tree, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(textwrap.dedent(text).lstrip("\n"))
        if os.path.basename(rel) in ("run", "finish"):
            os.chmod(path, 0o755)
    return tree


@dataclass
class Container:
    """A container of this run: its name, and the host directory mounted at /data."""

    name: str
    data: str
    tree: "str | None" = None  # host directory mounted at /etc/services.d, if any

    def exec(self, *cmd: str, user: "str | None" = None, timeout: float = PODMAN_TIMEOUT,
             check: bool = False) -> subprocess.CompletedProcess:
        return podman("exec", *(["--user", user] if user else []), self.name, *cmd,
                      timeout=timeout, check=check)

    def ctl(self, *args: str, user: "str | None" = None, timeout: float = PODMAN_TIMEOUT):
        return self.exec("svtree", "ctl", *args, user=user, timeout=timeout)

    def status(self, user: "str | None" = None) -> "dict[str, dict]":
        r = self.ctl("status", "--json", user=user)
        assert r.returncode == 0, r.stdout + r.stderr
        return {row["name"]: row for row in json.loads(r.stdout)}

    def wait_ready(self, *names: str, user: "str | None" = None, timeout: float = 60) -> None:
        """Until svtree answers and every NAME is ready (`ctl wait`, once the socket is there)."""
        def answers() -> bool:
            if self.ctl("status", user=user).returncode == 0:
                return True
            if not self.running():
                raise AssertionError(f"{self.name} exited ({self.inspect('{{.State.ExitCode}}')}) "
                                     f"before svtree answered:\n{self.logs()[-3000:]}")
            return False

        wait_until(answers, timeout, f"svtree's control socket in {self.name}")
        r = self.ctl("wait", "--ready", "--timeout", str(timeout), *names, user=user, timeout=timeout + 30)
        assert r.returncode == 0, f"{names} not ready: {r.stderr}\n{self.logs()[-3000:]}"

    def logs(self) -> str:
        """What the container wrote: stdout, then stderr (podman keeps them apart)."""
        r = podman("logs", self.name, check=False)
        return r.stdout + quiet(r.stderr)

    def events(self) -> "list[dict]":
        """svtree's own log lines, with --log-format json."""
        out = []
        for line in self.logs().splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def inspect(self, template: str) -> str:
        return podman("inspect", "--format", template, self.name).stdout.strip()

    def running(self) -> bool:
        return self.inspect("{{.State.Running}}") == "true"

    def data_lines(self, name: str) -> "list[list[str]]":
        """Lines services appended to /data/NAME, split in words."""
        try:
            with open(os.path.join(self.data, name)) as f:
                return [line.split() for line in f if line.strip()]
        except FileNotFoundError:
            return []


@dataclass
class Launcher:
    """Starts this run's containers (in parallel where they are independent) and removes
    them, by name, at teardown."""

    label: str = ""  # in every name, after the run's prefix: launchers never meet
    names: "list[str]" = field(default_factory=list)
    dirs: "list[str]" = field(default_factory=list)

    def _prefix(self) -> str:
        return f"{RUN_PREFIX}-{self.label}" if self.label else RUN_PREFIX

    def scratch(self, what: str) -> str:
        d = tempfile.mkdtemp(prefix=f"{self._prefix()}-{what}-", dir="/tmp")
        os.chmod(d, 0o777)  # services may run as another user
        self.dirs.append(d)
        return d

    def name(self, what: str) -> str:
        name = f"{self._prefix()}-{what}"
        self.names.append(name)  # before it starts: a start that times out is removed too
        return name

    def start(self, what: str, image: str, *run_args: str, tree: "dict[str, str] | None" = None,
              args: "tuple[str, ...]" = ()) -> Container:
        """`podman run -d` the image with RUN_ARGS (engine options) and ARGS (svtree's)."""
        data = self.scratch(what)
        c = Container(self.name(what), data)
        mounts = ["-v", f"{data}:/data"]
        if tree is not None:
            c.tree = write_tree(self.scratch(what + "-tree"), tree)
            mounts += ["-v", f"{c.tree}:/etc/services.d:ro"]
        podman("run", "-d", "--name", c.name, "--network", "none", *mounts, *run_args, image, *args,
               timeout=120, cwd=self.scratch(what + "-conmon"))
        return c

    def start_all(self, specs: "dict[str, dict]") -> "dict[str, Container]":
        """Start several containers at once: {what: {"image":, "run_args":, "tree":, "args":}}."""
        with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
            futures = {
                what: pool.submit(self.start, what, spec["image"], *spec.get("run_args", ()),
                                  tree=spec.get("tree"), args=spec.get("args", ()))
                for what, spec in specs.items()
            }
            return {what: f.result() for what, f in futures.items()}

    def remove_all(self) -> None:
        if self.names:
            podman("rm", "-f", "-v", "-t", "0", "--ignore", *self.names, check=False, timeout=180)
        for d in self.dirs:
            shutil.rmtree(d, ignore_errors=True)
