"""The image of examples/Dockerfile, run the ways users run it: plain (health check,
`podman exec ... svtree ctl`, `podman logs`), read-only, as a non-root user, both, under
`--init`, and with a main command whose exit code becomes the container's.

The containers of this module start together (in parallel) and are removed at its end.
"""

from __future__ import annotations

import concurrent.futures
import re
import time

import pytest

from podman_harness import podman, wait_until

pytestmark = pytest.mark.timeout(300)

EXAMPLE_SERVICES = ("setup", "web", "worker")
PAGE = ("python3", "-c", "import urllib.request; "
        "print(urllib.request.urlopen('http://127.0.0.1:8080/', timeout=5).read().decode())")

# The read-only recipes of the README, as Docker runs them: its --read-only mounts no
# tmpfs of its own (podman's adds /run, /tmp and /var/tmp unless --read-only-tmpfs=false),
# so they name the one svtree's socket needs: /run as root, /tmp as another user.
READ_ONLY = ("--read-only", "--read-only-tmpfs=false")
NON_ROOT = ("--user", "1000:1000")
# An orphan for svtree to adopt: the subshell exits at once, so its `sleep` is re-parented
# to the nearest subreaper. TERM ends the main command with 0.
ORPHAN_MAKER = ("sh", "-c", "(sleep 600 &) ; trap 'exit 0' TERM; sleep 600 & wait")


@pytest.fixture(scope="module")
def containers(image, launcher):
    return launcher.start_all({
        "plain": {"image": image},
        "readonly": {"image": image, "run_args": (*READ_ONLY, "--tmpfs", "/run")},
        "nonroot": {"image": image, "run_args": NON_ROOT},
        "readonly-nonroot": {"image": image, "run_args": (*READ_ONLY, "--tmpfs", "/tmp", *NON_ROOT)},
        "init": {"image": image, "run_args": ("--init",), "args": ("--", *ORPHAN_MAKER)},
    })


def stop(container, grace: int = 20) -> "tuple[float, int]":
    """`podman stop -t GRACE`: (seconds it took, the container's exit code)."""
    started = time.monotonic()
    podman("stop", "-t", str(grace), container.name, timeout=grace + 60)
    return time.monotonic() - started, int(container.inspect("{{.State.ExitCode}}"))


def assert_example_healthy(c, user=None) -> None:
    c.wait_ready("web", "worker", user=user)
    check = c.ctl("check", user=user)
    assert check.returncode == 0, check.stdout + check.stderr
    states = {name: row["state"] for name, row in c.status(user=user).items()}
    assert states == {"setup": "done", "web": "ready", "worker": "ready"}
    page = c.exec(*PAGE, user=user)
    assert "Served by the web service of an svtree tree" in page.stdout, page.stderr


def assert_clean_stop(c) -> None:
    took, code = stop(c)
    assert code == 0, c.logs()[-3000:]
    assert took < 8, f"podman stop took {took:.1f} s (the tree's worst case is 10 s, it needs ~1 s)"
    logs = c.logs()
    assert "worker | worker: TERM received, exiting" in logs
    assert "shutdown_done" in logs and "shutdown_kill" not in logs


# --- plain ------------------------------------------------------------------------------------

def test_the_healthcheck_passes_once_the_tree_is_ready(containers):
    c = containers["plain"]
    # The HEALTHCHECK survived the build (--format docker keeps it) and runs ctl check.
    assert '"svtree","ctl","check"' in c.inspect("{{json .Config.Healthcheck.Test}}").replace(" ", "")
    wait_until(lambda: podman("healthcheck", "run", c.name, check=False).returncode == 0, 60,
               f"podman healthcheck run {c.name} to pass", interval=0.5)
    assert c.inspect("{{.State.Health.Status}}") == "healthy"


def test_podman_exec_ctl_status_restart_and_check(containers):
    c = containers["plain"]
    assert_example_healthy(c)
    table = c.ctl("status")
    assert table.returncode == 0
    assert re.search(r"^web\s+ready\s+\d+", table.stdout, re.M), table.stdout
    before = c.status()["worker"]
    restart = c.ctl("restart", "--wait", "worker")
    assert restart.returncode == 0, restart.stderr
    c.wait_ready("worker")
    after = c.status()["worker"]
    assert after["pid"] != before["pid"] and after["restarts"] == before["restarts"] + 1
    assert c.ctl("check").returncode == 0
    unknown = c.ctl("restart", "nosuch")
    assert unknown.returncode == 1 and 'no service named "nosuch"' in unknown.stderr


def test_podman_logs_show_service_lines_and_svtree_events(containers):
    c = containers["plain"]
    c.wait_ready("web", "worker")
    wait_until(lambda: "worker | worker: tick 1" in c.logs(), 30, "the worker's first tick in podman logs")
    logs = c.logs()
    assert "setup | setup: wrote /var/lib/app/index.html" in logs
    assert "web | Serving HTTP on 127.0.0.1 port 8080" in logs
    for event in ("svtree_started", "service_done", "service_ready", "tree_up"):
        assert re.search(rf"\[info\s*\] {event}\b", logs), event
    assert re.search(r"svtree_started .*pid=1 pid1=True", logs), logs[:2000]
    # Podman's default capabilities lack CAP_SYS_RESOURCE: svtree says once that it kept
    # its oom_score_adj, and runs on.
    assert len(re.findall(r"\] oom_score_adj_kept\b", logs)) == 1, logs[:2000]


# --- read-only and non-root -------------------------------------------------------------------

def test_read_only_root_filesystem(containers):
    c = containers["readonly"]
    assert c.inspect("{{.HostConfig.ReadonlyRootfs}}") == "true"
    assert_example_healthy(c)
    assert c.exec("touch", "/etc/services.d/x").returncode != 0, "the root filesystem is writable"
    # The services wrote only to the declared volume; svtree's socket is in the /run tmpfs.
    mounts = c.exec("cat", "/proc/self/mounts").stdout
    assert re.search(r"^\S+ /var/lib/app ", mounts, re.M) and re.search(r"^tmpfs /run tmpfs ", mounts, re.M)
    assert c.exec("test", "-S", "/run/svtree/control.sock").returncode == 0
    assert_clean_stop(c)


def test_non_root_user(containers):
    c = containers["nonroot"]
    assert_example_healthy(c, user="1000")
    status = c.exec("cat", "/proc/1/status").stdout
    assert re.search(r"^Uid:\s+1000\s", status, re.M) and re.search(r"^Gid:\s+1000\s", status, re.M)
    web = c.status(user="1000")["web"]["pid"]
    assert re.search(r"^Uid:\s+1000\s", c.exec("cat", f"/proc/{web}/status").stdout, re.M)
    # svtree's socket is its user's: /tmp/svtree-1000 (no XDG_RUNTIME_DIR in a container);
    # root may use it too, by its path.
    assert c.exec("test", "-S", "/tmp/svtree-1000/control.sock").returncode == 0
    assert c.ctl("--socket", "/tmp/svtree-1000/control.sock", "check", user="0").returncode == 0
    assert_clean_stop(c)


def test_read_only_and_non_root_together(containers):
    c = containers["readonly-nonroot"]
    assert_example_healthy(c, user="1000")
    assert c.exec("touch", "/etc/x").returncode != 0, "the root filesystem is writable"
    assert c.exec("test", "-S", "/tmp/svtree-1000/control.sock").returncode == 0
    assert_clean_stop(c)


# --- --init --------------------------------------------------------------------------------------

def test_under_init_svtree_is_a_child_subreaper(containers):
    c = containers["init"]
    c.wait_ready("web", "worker")
    assert c.exec("cat", "/proc/1/cmdline").stdout.split("\0")[0] != "svtree"
    logs = c.logs()
    m = re.search(r"svtree_started .*pid=(\d+) pid1=False", logs)
    assert m and "child_subreaper" in logs, logs[:2000]
    svtree = m.group(1)
    assert c.exec("grep", "-q", "svtree", f"/proc/{svtree}/cmdline").returncode == 0

    # The orphan of the main command's subshell went to svtree, not to the init.
    def orphan_parent() -> "str | None":
        out = c.exec("sh", "-c", "for p in /proc/[0-9]*; do "
                     "[ \"$(cat $p/cmdline 2>/dev/null | tr '\\0' ' ')\" = 'sleep 600 ' ] && "
                     "awk '/^PPid:/ {print $2}' $p/status; done").stdout.split()
        return svtree if svtree in out else None

    wait_until(orphan_parent, 20, "the orphaned sleep to be svtree's child")
    took, code = stop(c)
    assert code == 0 and took < 8, (took, code, c.logs()[-2000:])
    m = re.search(r"shutdown_done .*orphans_reaped=(\d+)", c.logs())
    assert m and int(m.group(1)) >= 1, c.logs()[-2000:]


# --- the main command ------------------------------------------------------------------------------

def test_the_main_commands_exit_code_is_podman_runs(image, launcher):
    cases = {"exit-3": (("sh", "-c", "exit 3"), 3),
             "killed-by-usr1": (("sh", "-c", "kill -USR1 $$"), 128 + 10)}

    def run(what: str, cmd) -> int:
        name = launcher.name(what)
        return podman("run", "--rm", "--name", name, "--network", "none", image, "--", *cmd,
                      check=False, timeout=120).returncode

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        codes = {what: pool.submit(run, what, cmd) for what, (cmd, _) in cases.items()}
        assert {what: f.result() for what, f in codes.items()} == {w: code for w, (_, code) in cases.items()}
