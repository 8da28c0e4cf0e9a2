"""The engine's resource limits: `--pids-limit` low enough that forks fail for a while,
and `--memory` small enough that the kernel's OOM killer ends a greedy service. svtree
survives both, says what happened, and restarts the service.
"""

from __future__ import annotations

import pytest

from podman_harness import event_time, wait_until

pytestmark = pytest.mark.timeout(300)

HOLD = 3.0  # seconds the hog keeps every pid

PIDS_TREE = {
    # Crashes at once, again and again: each restart needs a fork.
    "victim/run": """\
        #!/usr/bin/python3
        import time
        with open("/data/victim", "a") as f:
            f.write(f"start {time.time()}\\n")
        raise SystemExit(1)
        """,
    # A crash sooner than restart_delay waits restart_delay: the hog takes the pid the
    # crash freed before the monitor forks again.
    "victim/service.toml": "restart_delay = 0.2\nrestart_delay_max = 0.2\n",
    # Started by the test: takes every pid the container may have, and each one freed,
    # for HOLD seconds; then gives them all back. It writes "full" once it holds them all,
    # "releasing" before it lets go (until then no fork in the container can succeed).
    "hog/run": f"""\
        #!/usr/bin/python3
        import os, signal, time
        kids = []

        def grab():
            while True:
                try:
                    pid = os.fork()
                except BlockingIOError:
                    return
                if pid == 0:
                    signal.pause()
                    os._exit(0)
                kids.append(pid)

        grab()
        with open("/data/hog", "a") as f:
            f.write(f"full {{time.time()}} {{len(kids)}}\\n")
        end = time.monotonic() + {HOLD}
        while time.monotonic() < end:
            grab()
            time.sleep(0.005)
        with open("/data/hog", "a") as f:
            f.write(f"releasing {{time.time()}} {{len(kids)}}\\n")
        for pid in kids:
            os.kill(pid, signal.SIGKILL)
        for pid in kids:
            os.waitpid(pid, 0)
        with open("/data/hog", "a") as f:
            f.write(f"released {{time.time()}} {{len(kids)}}\\n")
        signal.pause()
        """,
    "hog/down": "",
}

MEMORY_LIMIT = "128m"
# The container's memory cgroup (cgroup v1: runc mounts it here; v2: memory.events).
OOM_COUNTERS = "cat /sys/fs/cgroup/memory/memory.oom_control /sys/fs/cgroup/memory.events 2>/dev/null"
OOM_TREE = {
    # Holds 60 MiB: the largest process, so without oom_score_adj the kernel would take it
    # first. Ready once its memory is touched.
    "ballast/run": """\
        #!/usr/bin/python3
        import os, signal, time
        block = bytearray(60 << 20)
        for i in range(0, len(block), 4096):
            block[i] = 1
        with open("/data/ballast", "a") as f, open("/proc/self/oom_score_adj") as adj:
            f.write(f"start {os.getpid()} {time.time()} {adj.read().strip()}\\n")
        os.write(3, b"\\n")
        while True:
            signal.pause()
        """,
    "ballast/service.toml": "notification_fd = 3\n",
    # Grows 4 MiB at a time until the container's memory is gone.
    "greedy/run": """\
        #!/usr/bin/python3
        import os, time
        with open("/data/greedy", "a") as f, open("/proc/self/oom_score_adj") as adj:
            f.write(f"start {os.getpid()} {time.time()} {adj.read().strip()}\\n")
        chunks = []
        while True:
            chunk = bytearray(4 << 20)
            for i in range(0, len(chunk), 4096):
                chunk[i] = 1
            chunks.append(chunk)
            time.sleep(0.02)
        """,
    "greedy/service.toml": 'depends_on = ["ballast"]\noom_score_adj = 1000\nrestart_delay = 0.5\n',
}


@pytest.fixture(scope="module")
def containers(image, launcher):
    json_log = ("--log-format", "json")
    return launcher.start_all({
        "pids": {"image": image, "tree": PIDS_TREE, "run_args": ("--pids-limit", "40"), "args": json_log},
        "oom": {"image": image, "tree": OOM_TREE, "args": json_log,
                "run_args": ("--memory", MEMORY_LIMIT, "--memory-swap", MEMORY_LIMIT)},
    })


def assert_no_internal_error(c) -> None:
    assert not [e for e in c.events() if e["event"] == "internal_error"], c.logs()[-3000:]


def test_forks_failing_under_pids_limit_are_retried_and_svtree_survives(containers):
    c = containers["pids"]
    c.wait_ready("victim")
    assert c.ctl("start", "hog").returncode == 0
    wait_until(lambda: [r for r in c.data_lines("hog") if r[0] == "released"], 60, "the hog to give pids back")
    hog = {row[0]: (float(row[1]), int(row[2])) for row in c.data_lines("hog")}
    (full, held), (releasing, _), (released, _) = hog["full"], hog["releasing"], hog["released"]
    assert held > 10  # it did take the pids

    # After the release the victim runs again.
    wait_until(lambda: any(float(t) > released for _, t in c.data_lines("victim")), 30,
               "the victim to start again after the pids came back")
    events = c.events()
    victim = [e for e in events if e.get("service") == "victim"]
    # While the hog held every pid, no restart could fork, and svtree said so and retried.
    # (The margin: a fork made just before "full" may be logged just after it.)
    started = [event_time(e) for e in victim if e["event"] == "service_started"]
    assert not [t for t in started if full + 0.2 < t < releasing], (full, releasing, started)
    failed = [e for e in victim if e["event"] == "retry_later" and full < event_time(e) < releasing]
    assert failed and all("fork" in e["error"] for e in failed), victim[-20:]
    assert c.status()["hog"]["state"] == "ready"
    assert c.running() and "svtree" in c.exec("cat", "/proc/1/cmdline").stdout
    assert_no_internal_error(c)


def test_the_oom_killer_takes_the_service_with_the_highest_oom_score_adj(containers):
    c = containers["oom"]
    c.wait_ready("ballast", "greedy")
    wait_until(lambda: len(c.data_lines("greedy")) >= 3, 90, "the greedy service OOM-killed twice")
    events = c.events()
    killed = [e for e in events if e["event"] == "service_exited" and e.get("service") == "greedy"]
    assert len(killed) >= 2 and all(e.get("signal") == "KILL" for e in killed), killed
    assert [e for e in events if e["event"] == "service_restarting" and e.get("service") == "greedy"]
    # The kernel's OOM killer did it, in the container's memory cgroup.
    counters = dict(line.split() for line in c.exec("sh", "-c", OOM_COUNTERS).stdout.splitlines())
    assert int(counters["oom_kill"]) >= len(killed), counters
    # The larger ballast was spared every time: oom_score_adj = 1000 put greedy first.
    assert [row[3] for row in c.data_lines("greedy")] == ["1000"] * len(c.data_lines("greedy"))
    assert [row[3] for row in c.data_lines("ballast")] == ["0"]  # svtree's own value at start
    status = c.status()
    assert status["ballast"]["restarts"] == 0 and status["ballast"]["state"] == "ready"
    assert c.running() and "svtree" in c.exec("cat", "/proc/1/cmdline").stdout
    assert_no_internal_error(c)
