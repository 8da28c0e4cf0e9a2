"""examples/ cannot rot: its tree runs under svtree as PID 1, its Dockerfile copies files
that exist, and its Kubernetes manifest gives svtree the time its shutdown may take.

What Docker and Kubernetes would read is checked here as text (it runs everywhere);
tests/container/ builds the image with podman and runs it, and the manifest.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import urllib.request

import pytest

from harness import REPO, needs_pidns, wait_for
from svtree.compiler import compile_tree
from svtree.compiler.shutdown import worst_case_shutdown

EXAMPLES = os.path.join(REPO, "examples")
EXAMPLE_TREE = os.path.join(EXAMPLES, "app", "services.d")
DOCKERFILE = os.path.join(EXAMPLES, "Dockerfile")
MANIFEST = os.path.join(EXAMPLES, "kubernetes.yaml")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dockerfile_instructions() -> "list[tuple[str, str]]":
    """(INSTRUCTION, rest) per instruction, continuation lines joined, comments dropped."""
    out, pending = [], ""
    with open(DOCKERFILE) as f:
        for line in f:
            stripped = line.strip()
            if not pending and (not stripped or stripped.startswith("#")):
                continue
            if stripped.endswith("\\"):
                pending += stripped[:-1] + " "
                continue
            text = pending + stripped
            pending = ""
            word, _, rest = text.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def example_files() -> "set[str]":
    found = set()
    for directory, _, names in os.walk(EXAMPLE_TREE):
        for name in names:
            found.add(os.path.relpath(os.path.join(directory, name), EXAMPLE_TREE))
    return found


# --- the tree runs --------------------------------------------------------------------

@needs_pidns
@pytest.mark.timeout(60)
def test_example_tree_runs_as_pid1_is_healthy_and_shuts_down_clean(tree, run_svtree):
    shutil.rmtree(tree.dir)
    shutil.copytree(EXAMPLE_TREE, tree.dir, symlinks=True)  # keeps the scripts' modes
    port = free_port()
    data = os.path.join(tree.root, "data")
    # The manifest's HTTP endpoint, on a free port here.
    http_port = free_port()
    _, probes = manifest_http()
    sv = run_svtree(args=["--log-format", "json", "--http", f"127.0.0.1:{http_port}"],
                    env={"APP_DATA": data, "PORT": str(port)})
    sv.wait_state("ready", "web", "worker", timeout=30)

    check = sv.ctl("check")
    assert check.returncode == 0, check.stdout + check.stderr
    for path in {p for p, _ in probes.values()} | {"/metrics"}:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}{path}", timeout=5) as response:
            assert response.status == 200, path
    states = {name: row["state"] for name, row in sv.status().items()}
    assert states == {"setup": "done", "web": "ready", "worker": "ready"}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
        assert b"svtree example" in response.read()

    assert sv.stop() == 0
    out = sv.stdout()
    assert "setup | setup: wrote" in out
    assert "worker | worker: TERM received, exiting" in out
    assert "worker | worker: finished (exit 0, signal 0)" in out
    events = [json.loads(line) for line in sv.stderr().splitlines() if line.startswith("{")]
    done = [e for e in events if e["event"] == "shutdown_done"]
    assert done and done[0]["exit_code"] == 0
    # Each service stopped on TERM: nothing needed the SIGKILL sweep.
    assert not [e for e in events if e["event"] == "shutdown_kill"]


# --- the Dockerfile ---------------------------------------------------------------------

def default_build(text: str) -> str:
    """`${ARG:-default}` as a build without --build-arg reads it."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", text)


def test_dockerfile_copies_files_that_exist():
    copies = [rest for word, rest in dockerfile_instructions() if word in ("COPY", "ADD")]
    assert copies, "the Dockerfile copies nothing"
    for rest in copies:
        words = [w for w in shlex.split(default_build(rest)) if not w.startswith("--")]
        *sources, _destination = words
        for source in sources:
            assert os.path.exists(os.path.join(REPO, source)), f"COPY {source}: not in the repository"


def test_dockerfile_runs_svtree_compiles_the_tree_and_checks_health():
    instructions = dockerfile_instructions()
    assert ("ENTRYPOINT", '["svtree"]') in instructions
    copies = {rest.split()[-1]: rest.split()[0] for word, rest in instructions if word == "COPY"}
    assert copies.get("/etc/services.d") == "examples/app/services.d"
    runs = [rest for word, rest in instructions if word == "RUN"]
    assert any(r.startswith("svtree compile /etc/services.d") for r in runs)
    healthcheck = [rest for word, rest in instructions if word == "HEALTHCHECK"]
    assert len(healthcheck) == 1 and healthcheck[0].endswith('CMD ["svtree", "ctl", "check"]')
    # svtree is installed with pip from the build context, with what pip needs.
    assert any("pip install --no-cache-dir /src/svtree" in r for r in runs)


def test_dockerfile_grace_holds_the_worst_case_shutdown():
    run = [rest for word, rest in dockerfile_instructions() if word == "RUN" and "--grace" in rest]
    grace = float(re.search(r"--grace\s+(\S+)", run[0]).group(1))
    worst = worst_case_shutdown(compile_tree(EXAMPLE_TREE)).total
    assert worst <= grace, f"the build would warn: worst case {worst} s > --grace {grace}"


# --- the Kubernetes manifest ------------------------------------------------------------

def manifest_text() -> str:
    with open(MANIFEST) as f:
        return f.read()


def test_manifest_grace_period_covers_the_worst_case_shutdown():
    m = re.search(r"^\s*terminationGracePeriodSeconds:\s*(\d+)\s*(#.*)?$", manifest_text(), re.M)
    assert m, "no terminationGracePeriodSeconds in the manifest"
    worst = worst_case_shutdown(compile_tree(EXAMPLE_TREE)).total
    assert int(m.group(1)) >= worst, f"terminationGracePeriodSeconds {m.group(1)} < worst case {worst} s"


def manifest_http() -> "tuple[int, dict[str, tuple[str, int]]]":
    """The port of `--http` in the container's args, and each probe's (path, port)."""
    text = manifest_text()
    args = json.loads(re.search(r"^\s*args:\s*(\[.*\])\s*$", text, re.M).group(1))
    listen = args[args.index("--http") + 1]
    probes = {}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        block = text.split(f"{probe}:", 1)[1]
        m = re.search(r"httpGet:\s*\n\s*path:\s*(\S+)\s*\n\s*port:\s*(\d+)", block)
        assert m, f"{probe} is not an httpGet probe"
        probes[probe] = (m.group(1), int(m.group(2)))
    return int(listen.rsplit(":", 1)[1]), probes


def test_manifest_probes_port_and_scrape_annotation_match_the_http_endpoint():
    text = manifest_text()
    port, probes = manifest_http()
    assert {p for _, p in probes.values()} == {port}
    assert probes["startupProbe"][0] == probes["readinessProbe"][0] == "/readyz"
    assert probes["livenessProbe"][0] in ("/readyz", "/livez")
    annotations = dict(re.findall(r"^\s*prometheus\.io/(\w+):\s*\"?([^\"\s]+)\"?\s*$", text, re.M))
    assert annotations == {"scrape": "true", "port": str(port), "path": "/metrics"}


def test_manifest_configmap_option_holds_the_whole_example_tree():
    text = manifest_text()
    items = dict(re.findall(r"#\s*- key: (\S+)\n\s*#\s*path: (\S+)", text))
    created = dict(re.findall(r"--from-file=(\S+?)=examples/app/services\.d/(\S+)", text))
    assert items == created, "the kubectl create command and the volume's items disagree"
    assert set(items.values()) == example_files()
