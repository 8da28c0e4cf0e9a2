"""Observability with svtree as PID 1: `ctl logs` (the log book fed on the output path),
the HTTP endpoint (/livez /readyz /status /metrics, checked against what ctl says and
what /proc says), and a slow or hostile HTTP client never delaying supervision."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness import REPO, descendants, needs_pidns, pid_of, wait_for

pytestmark = [needs_pidns, pytest.mark.timeout(90)]


def port_of(sv) -> int:
    found = wait_for(lambda: re.search(r"http_listening\s+address=127\.0\.0\.1:(\d+)", sv.stderr()),
                     15, what="http_listening")
    return int(found.group(1))


def get(port: int, path: str, method: str = "GET", timeout: float = 10.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path)
        r = conn.getresponse()
        return r.status, r.read().decode(), dict(r.getheaders())
    finally:
        conn.close()


def metrics(port: int) -> "dict[tuple[str, tuple], float]":
    """Every sample of /metrics by (name, sorted labels), parsed by prometheus_client."""
    status, body, headers = get(port, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    out = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def svc(name: str) -> tuple:
    return (("service", name),)


def rss_of_tree(pid: int) -> int:
    """RSS in bytes of pid and its descendants, as /proc/PID/statm has it."""
    total = 0
    for p in [pid, *descendants(pid)]:
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            pass
    return total


class Follower:
    """`svtree ctl logs -f ...` running, its stdout read by a thread, line by line."""

    def __init__(self, sv, *args) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "svtree", "ctl", "--socket", sv.socket, "logs", "-f", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=REPO))
        self.lines: "list[str]" = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, predicate, what: str):
        return wait_for(lambda: predicate(list(self.lines)), 20, what=what)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


# --- ctl logs ----------------------------------------------------------------------------

def test_ctl_logs_last_lines_names_streams_and_json(tree, run_svtree):
    tree.service("web", tree.sh("""
        for i in 1 2 3 4 5; do echo "web line $i"; done
        exec sleep 1000
    """))
    tree.service("db", tree.sh("""
        echo "db up"
        echo "db trouble" >&2
        exec sleep 1000
    """))
    sv = run_svtree()
    sv.wait_state("ready", "web", "db")

    def logs(*args):
        r = sv.ctl("logs", *args)
        assert r.returncode == 0, r.stderr
        return r

    # Their lines reach the book as they reach svtree's stdout and stderr.
    wait_for(lambda: "db | db trouble" in sv.stderr() and "web | web line 5" in sv.stdout(),
             what="the lines on svtree's output")
    every = logs()
    # Several services: NAME | before each line, each on the stream it was written to.
    assert [f"web | web line {i}" for i in range(1, 6)] == [l for l in every.stdout.splitlines() if l.startswith("web")]
    assert "db | db up" in every.stdout.splitlines()
    assert every.stderr.splitlines() == ["db | db trouble"]

    last = logs("web", "-n", "2")  # one service: its lines as it wrote them
    assert last.stdout.splitlines() == ["web line 4", "web line 5"] and last.stderr == ""

    db = logs("db")
    assert db.stdout == "db up\n" and db.stderr == "db trouble\n"

    js = logs("--json", "db", "web", "-n", "1")
    rows = [json.loads(l) for l in js.stdout.splitlines()]
    assert sorted((r["service"], r["stream"], r["line"]) for r in rows) == [
        ("db", "stderr", "db trouble"), ("web", "stdout", "web line 5")]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", r["time"]) for r in rows)

    unknown = sv.ctl("logs", "nosuch")
    assert unknown.returncode == 1 and 'no service named "nosuch"' in unknown.stderr


def test_ctl_logs_follows_across_a_restart_with_a_marker(tree, run_svtree):
    tree.service("flaky", tree.sh("""
        echo "start $$"
        trap 'echo "bye $$"; exit 1' TERM
        echo flaky >> $EVENTS
        sleep 1000 &
        wait
    """), toml="restart_delay = 0.1\n")
    sv = run_svtree()
    sv.wait_state("ready", "flaky")
    follow = Follower(sv, "flaky")
    try:
        first = follow.wait_for(lambda ls: ls if ls and ls[0].startswith("start ") else None,
                                "the first run's line")[0]
        pid = first.split()[1]
        r = sv.ctl("signal", "TERM", "flaky")  # the script's trap exits 1: svtree restarts it
        assert r.returncode == 0, r.stderr
        lines = follow.wait_for(lambda ls: ls if len(ls) >= 4 else None, "the second run's line")
        assert lines[:3] == [f"start {pid}", f"bye {pid}", "--- flaky restarted (exit 1) ---"], lines
        assert lines[3].startswith("start ") and lines[3] != f"start {pid}"
        # `logs` without -f shows the same, marker included.
        again = sv.ctl("logs", "flaky")
        assert again.stdout.splitlines()[:4] == lines[:4]
        # svtree's exit ends the follower, which exits 0.
        assert sv.stop() == 0
        assert follow.proc.wait(15) == 0, follow.proc.stderr.read()
    finally:
        follow.kill()


def test_a_logged_services_stdout_is_its_loggers_and_its_logger_has_a_book(tree, run_svtree):
    """With a log/ directory the service's stdout goes to its logger, not through svtree:
    the book holds the service's stderr, and what the logger prints under NAME/log."""
    tree.service("app", tree.sh("""
        echo "to the logger"
        echo "app trouble" >&2
        exec sleep 1000
    """))
    tree.write("app/log/run", tree.sh("""
        while read -r line; do echo "logged: $line"; done
    """), executable=True)
    sv = run_svtree()
    sv.wait_state("ready", "app", "app/log")
    wait_for(lambda: "app/log | logged: to the logger" in sv.stdout(), what="the logger's line")
    app = sv.ctl("logs", "app")
    assert app.returncode == 0 and app.stdout == "" and app.stderr == "app trouble\n", (app.stdout, app.stderr)
    logger = sv.ctl("logs", "app/log")
    assert logger.returncode == 0 and logger.stdout == "logged: to the logger\n", logger.stdout


def test_ctl_logs_in_raw_mode_or_without_a_buffer_says_why_in_one_line(tree, run_svtree):
    tree.service("web", tree.sh("echo hi\nexec sleep 1000\n"))
    sv = run_svtree(args=["--output", "raw"])
    sv.wait_state("ready", "web")
    r = sv.ctl("logs")
    assert r.returncode == 1 and r.stdout == ""
    assert len(r.stderr.splitlines()) == 1 and '"raw"' in r.stderr, r.stderr
    assert sv.stop() == 0
    # log_buffer = 0 keeps nothing, and says so.
    tree.write("svtree.toml", "log_buffer = 0\n")
    sv = run_svtree()
    sv.wait_state("ready", "web")
    wait_for(lambda: "web | hi" in sv.stdout(), what="the line on svtree's stdout")
    r = sv.ctl("logs", "web")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == "svtree ctl: logs: log_buffer = 0 in svtree.toml: no lines are kept\n", r.stderr


# --- HTTP ---------------------------------------------------------------------------------

def test_http_is_off_by_default(tree, run_svtree):
    tree.service("web", tree.sh("exec sleep 1000\n"))
    sv = run_svtree()
    sv.wait_state("ready", "web")
    assert "http_listening" not in sv.stderr()
    # No listening TCP socket belongs to svtree: its socket inodes are none of the
    # listening ones (state 0A) of /proc/net/tcp and tcp6.
    inodes = set()
    for fd in os.listdir(f"/proc/{sv.pid1}/fd"):
        try:
            link = os.readlink(f"/proc/{sv.pid1}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for row in list(f)[1:]:
                cols = row.split()
                if cols[3] == "0A":
                    listening.add(cols[9])
    assert inodes and not inodes & listening


def test_probes_status_and_metrics_match_reality(tree, run_svtree):
    runs = os.path.join(tree.root, "runs")
    tree.service("web", tree.sh("exec sleep 1000\n"))
    # Exits 3 twice, then stays up: 2 restarts, last exit 3.
    tree.service("crashy", tree.sh(f"""
        echo run >> {runs}
        [ "$(wc -l < {runs})" -ge 3 ] && exec sleep 1000
        exit 3
    """), toml="restart_delay = 0.1\n")
    hog = os.path.join(tree.root, "hog")
    tree.service("hog", f"#!{sys.executable}\n"
                        "import time\n"
                        "block = bytearray(b'\\x01') * (64 << 20)  # 64 MiB, every page touched\n"
                        f"open({hog!r}, 'w').close()\n"
                        "t = time.process_time()\n"
                        "while time.process_time() - t < 0.3:\n    pass\n"
                        f"open({hog!r} + '.cpu', 'w').close()\n"
                        "time.sleep(1000)\n")
    tree.service("gate", tree.sh("exec sleep 1000\n"),
                 toml=f'ready_command = "test -e {tree.root}/open"\nready_interval = 0.05\n')
    sv = run_svtree(args=["--http", "127.0.0.1:0"])
    port = port_of(sv)

    assert get(port, "/livez")[:2] == (200, "ok\n")
    wait_for(lambda: os.path.exists(hog + ".cpu"), 20, what="hog to allocate and burn CPU")
    wait_for(lambda: sv.status()["crashy"]["state"] == "ready", 20, what="crashy's third run")
    sv.wait_state("ready", "web", "hog")

    # /readyz says what `ctl check` says: gate is not ready.
    status, body, _ = get(port, "/readyz")
    check = sv.ctl("check")
    assert status == 503 and check.returncode == 1
    assert body == "gate is up, wanted up\n" and body.strip() in check.stderr
    open(os.path.join(tree.root, "open"), "w").close()
    sv.wait_state("ready", "gate")
    assert get(port, "/readyz")[:2] == (200, "ok\n") and sv.ctl("check").returncode == 0

    # /status is `ctl status --json --resources`.
    status, body, headers = get(port, "/status")
    assert status == 200 and headers["Content-Type"] == "application/json"
    rows = {r["name"]: r for r in json.loads(body)}
    ctl_rows = {r["name"]: r for r in json.loads(sv.ctl("status", "--json", "-r").stdout)}
    assert set(rows) == set(ctl_rows) == {"web", "crashy", "hog", "gate"}
    for name, row in rows.items():
        assert set(row) == set(ctl_rows[name])
        for key in ("state", "pid", "restarts", "last_exit", "ready"):
            assert row[key] == ctl_rows[name][key], (name, key)

    m = metrics(port)
    assert m[("svtree_service_restarts_total", svc("crashy"))] == 2 == ctl_rows["crashy"]["restarts"]
    with open(runs) as f:
        assert len(f.read().splitlines()) == 3
    assert m[("svtree_service_last_exit_code", svc("crashy"))] == 3
    assert ("svtree_service_last_exit_code", svc("web")) not in m  # never exited
    for name in ("web", "crashy", "hog", "gate"):
        assert m[("svtree_service_up", svc(name))] == 1 and m[("svtree_service_ready", svc(name))] == 1
        states = {dict(labels)["state"]: v for (n, labels), v in m.items()
                  if n == "svtree_service_state" and dict(labels)["service"] == name}
        assert states["ready"] == 1 and sum(states.values()) == 1
        start = m[("svtree_service_start_time_seconds", svc(name))]
        assert abs(start - (time.time() - ctl_rows[name]["uptime"])) < 5
    # The hog's memory: its 64 MiB, and what /proc says of its tree (its monitor's
    # descendants; the monitor is its parent).
    hog_pid = pid_of(sv, "hog")
    real = rss_of_tree(hog_pid)
    mem = m[("svtree_service_memory_bytes", svc("hog"))]
    assert 64 << 20 <= mem and abs(mem - real) < 8 << 20, (mem, real)
    assert m[("svtree_service_memory_bytes", svc("web"))] < 16 << 20
    cpu = m[("svtree_service_cpu_seconds_total", svc("hog"))]
    with open(f"/proc/{hog_pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    real_cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    assert 0.3 <= cpu and abs(cpu - real_cpu) < 0.2, (cpu, real_cpu)
    assert m[("svtree_reloads_total", ())] == 0 and m[("svtree_reload_failures_total", ())] == 0
    assert m[("svtree_orphans_reaped_total", ())] >= 0

    # A reload that changes nothing counts; one of an invalid tree counts as a failure.
    assert sv.ctl("reload").returncode == 0
    tree.write("web/service.toml", "restart = 12\n")
    assert sv.ctl("reload").returncode == 1
    m = metrics(port)
    assert m[("svtree_reloads_total", ())] == 1 and m[("svtree_reload_failures_total", ())] == 1

    # ctl status shows the same usage.
    text = sv.ctl("status", "--resources").stdout.splitlines()
    assert text[0].split()[-2:] == ["CPU", "MEM"]
    assert re.search(r"MiB$", next(l for l in text if l.startswith("hog")))


def test_head_404_405_and_livez_during_shutdown(tree, run_svtree):
    tree.service("slow", tree.sh(f"""
        trap 'touch {tree.root}/stopping; sleep 3; exit 0' TERM
        sleep 1000 &
        wait
    """))
    sv = run_svtree(args=["--http", "127.0.0.1:0"])
    port = port_of(sv)
    sv.wait_state("ready", "slow")
    status, body, headers = get(port, "/metrics", "HEAD")
    assert status == 200 and body == "" and int(headers["Content-Length"]) > 100
    status, body, _ = get(port, "/nope")
    assert status == 404 and "/livez" in body and "/metrics" in body
    status, _, headers = get(port, "/livez", "POST")
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    sv.signal(15)
    wait_for(lambda: os.path.exists(os.path.join(tree.root, "stopping")), what="the shutdown to begin")
    assert get(port, "/livez")[:2] == (503, "svtree is shutting down\n")
    assert get(port, "/readyz")[0] == 503
    assert sv.wait(30) == 0


def test_slow_and_hostile_http_clients_never_delay_supervision(tree, run_svtree):
    runs = os.path.join(tree.root, "runs")
    tree.service("crashy", tree.sh(f"""
        echo run >> {runs}
        sleep 0.2
        exit 1
    """), toml="restart_delay = 0.1\n")
    tree.service("web", tree.sh("exec sleep 1000\n"))
    sv = run_svtree(args=["--http", "127.0.0.1:0"])
    port = port_of(sv)
    sv.wait_state("ready", "web")
    held = []
    try:
        # 100 clients: 80 send half a request head and hold it; 20 ask for /metrics and
        # never read the answer (a small receive buffer, so it waits in svtree's socket).
        for i in range(100):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            if i < 80:
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            else:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 50)
            held.append(s)

        def count() -> int:
            with open(runs) as f:
                return len(f.read().splitlines())

        before = count()
        t0 = time.monotonic()
        wait_for(lambda: count() >= before + 3, 15, what="crashy restarted 3 times while clients hold on")
        r = sv.ctl("status", "--json", timeout=10)
        assert r.returncode == 0
        assert time.monotonic() - t0 < 10
        # A new client is still answered (it takes the slot of the oldest one still sending).
        assert get(port, "/livez", timeout=5)[:2] == (200, "ok\n")
    finally:
        for s in held:
            s.close()
    assert sv.stop() == 0
