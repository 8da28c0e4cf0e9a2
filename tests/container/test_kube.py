"""`podman kube play examples/kubernetes.yaml`: the Deployment runs as a pod from the
example image, its HTTP probes pass (asked from inside the pod, as the kubelet asks the
pod's address), its metrics are there, and it stops cleanly within
terminationGracePeriodSeconds.

The manifest is used as it is, but for two fields of a temporary copy: the image (the
one this run built; no registry is reachable) and the Deployment's name (this run's
prefix, so that runs never meet).

Podman before 5.1 ignores terminationGracePeriodSeconds, and its `kube down` kills the
pod's containers at once with SIGKILL instead of stopping them (fixed in podman 5.1).
There the test stops the pod as the kubelet would, `podman pod stop -t GRACE`, then
`podman kube down` removes it; from 5.1 on, `podman kube down` alone must stop it cleanly.
"""

from __future__ import annotations

import json
import os
import re
import time

import pytest

from podman_harness import REPO, RUN_PREFIX, podman, podman_version, wait_until

pytestmark = pytest.mark.timeout(300)

MANIFEST = os.path.join(REPO, "examples", "kubernetes.yaml")
KUBE_DOWN_STOPS_CLEANLY = (5, 1)


def manifest_for(image: str, name: str) -> str:
    with open(MANIFEST) as f:
        text = f.read()
    text, images = re.subn(r"^(\s*image:\s*)svtree-example:latest\s*$", rf"\g<1>{image}", text, flags=re.M)
    text, names = re.subn(r"^(  name:\s*)svtree-example\s*$", rf"\g<1>{name}", text, count=1, flags=re.M)
    assert images == 1 and names == 1, "examples/kubernetes.yaml changed: update this test's rewrite"
    return text


def probes(text: str) -> "dict[str, str]":
    """Each probe's URL inside the pod, from its httpGet path and port in the manifest."""
    found = {}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        block = text.split(f"{probe}:", 1)[1]
        m = re.search(r"httpGet:\s*\n\s*path:\s*(\S+)\s*\n\s*port:\s*(\d+)", block)
        found[probe] = f"http://127.0.0.1:{m.group(2)}{m.group(1)}"
    return found


# What the kubelet does for an httpGet probe (success: a status from 200 to 399), with
# the image's Python: the image has no curl.
HTTP_PROBE = ("import sys, urllib.request\n"
              "try:\n"
              "    sys.exit(0 if urllib.request.urlopen(sys.argv[1], timeout=3).status < 400 else 1)\n"
              "except OSError:\n"
              "    sys.exit(1)\n")


@pytest.fixture
def pod(image, tmp_path):
    name = f"{RUN_PREFIX}-kube"
    path = tmp_path / "kubernetes.yaml"
    path.write_text(manifest_for(image, name))
    try:
        podman("kube", "play", "--network", "none", str(path), timeout=180, cwd=str(tmp_path))
        yield name, str(path)
    finally:
        podman("kube", "down", str(path), check=False, timeout=120)
        podman("pod", "rm", "-f", "--ignore", f"{name}-pod-0", check=False, timeout=120)


def test_kube_play_runs_the_pod_probes_pass_and_it_stops_within_the_grace_period(pod):
    name, path = pod
    with open(path) as f:
        text = f.read()
    grace = int(re.search(r"terminationGracePeriodSeconds:\s*(\d+)", text).group(1))
    pod_name, container = f"{name}-pod-0", f"{name}-pod-0-app"
    assert podman("inspect", "--format", "{{.State.Running}}", container).stdout.strip() == "true"

    def http_probe(url: str) -> bool:
        return podman("exec", container, "python3", "-c", HTTP_PROBE, url, check=False).returncode == 0

    found = probes(text)
    # The startup probe as the kubelet runs it: every periodSeconds, failureThreshold times.
    wait_until(lambda: http_probe(found["startupProbe"]), 60, "the startup probe", interval=2)
    assert http_probe(found["readinessProbe"]) and http_probe(found["livenessProbe"])
    metrics = podman("exec", container, "python3", "-c",
                     "import urllib.request; print(urllib.request.urlopen("
                     "'http://127.0.0.1:9100/metrics', timeout=3).read().decode())").stdout
    assert 'svtree_service_ready{service="web"} 1' in metrics, metrics[:2000]
    # podman turns an httpGet liveness probe into a health check that runs curl, which
    # this image does not have: its configuration is checked, not run.
    health = podman("inspect", "--format", "{{json .Config.Healthcheck}}", container).stdout
    assert found["livenessProbe"].split("127.0.0.1", 1)[1] in health, health  # ":9100/readyz"
    # The manifest's args reached svtree: its own log is JSON.
    logs = podman("logs", container).stderr
    started = [json.loads(line) for line in logs.splitlines() if '"svtree_started"' in line]
    assert started and started[0]["pid1"] is True

    since = time.time()
    began = time.monotonic()
    tail = None
    if podman_version() < KUBE_DOWN_STOPS_CLEANLY:
        podman("pod", "stop", "-t", str(grace), pod_name, timeout=grace + 60)
        tail = podman("logs", container).stderr  # svtree's own log: its last lines
    podman("kube", "down", path, timeout=grace + 60)
    took = time.monotonic() - began
    died = podman("events", "--stream=false", "--since", str(int(since) - 1), "--filter",
                  f"container={container}", "--filter", "event=died", "--format",
                  "{{.ContainerExitCode}}").stdout.split()
    assert died == ["0"], died  # svtree's exit after its ordered shutdown; 137 is a SIGKILL
    assert took < grace, f"stopping the pod took {took:.1f} s, more than terminationGracePeriodSeconds"
    if tail is not None:
        events = [json.loads(line)["event"] for line in tail.splitlines() if line.startswith("{")]
        assert "shutdown_done" in events and "shutdown_kill" not in events, tail[-3000:]
    assert podman("pod", "exists", pod_name, check=False).returncode != 0
