"""How long a reload of an unchanged tree takes, and how long PID 1 is unavailable meanwhile.

A tree of N services (100 by default; `exec sleep`, a service.toml for most, a finish for
some) on a tmpfs, run by svtree as PID 1 of a PID namespace (`--no-watch`). Two cases:
`definitions`: the service directories hold only their definition files; `data`: each
service also keeps run-time data in its directory (DATA_FILES files, DATA_BYTES in all),
as a service with a pid file and a cache does.

Figures: the `ctl reload` round trip (median and worst of --repeat, over a raw socket
from this process, so no ctl start-up is counted), the CPU time PID 1 itself spends per
reload (user + system, from /proc/PID/stat: what it cannot spend on anything else), and
the worst `ctl status` round trip measured while reloads run back to back (how long
PID 1 keeps a client waiting).

    python3 bench/reload_bench.py [--services 100] [--repeat 20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = "#!/bin/sh\nexec sleep 100000\n"
FINISH = "#!/bin/sh\nexit 0\n"
DATA_FILES = 4
DATA_BYTES = 1 << 20  # per service


def write_tree(root: str, count: int, data: bool) -> str:
    tree = os.path.join(root, "services.d")
    os.mkdir(tree)
    for i in range(count):
        d = os.path.join(tree, f"svc-{i:04d}")
        os.mkdir(d)
        with open(os.path.join(d, "run"), "w") as f:
            f.write(RUN)
        os.chmod(os.path.join(d, "run"), 0o755)
        if i % 7:
            with open(os.path.join(d, "service.toml"), "w") as f:
                f.write(f'restart = "always"\nstop_timeout = {1 + i % 5}\n'
                        f'environment = {{ INDEX = "{i}" }}\n')
        if i % 10 == 0:
            with open(os.path.join(d, "finish"), "w") as f:
                f.write(FINISH)
            os.chmod(os.path.join(d, "finish"), 0o755)
        if data:
            os.mkdir(os.path.join(d, "cache"))
            for k in range(DATA_FILES):
                with open(os.path.join(d, "cache", f"blob{k}"), "wb") as f:
                    f.write(os.urandom(DATA_BYTES // DATA_FILES))
            with open(os.path.join(d, "state.pid"), "w") as f:
                f.write("12345\n")
    return tree


def call(sock_path: str, verb: str, timeout: float = 60.0) -> "tuple[float, dict]":
    start = time.perf_counter()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(sock_path)
        s.sendall(json.dumps({"v": 1, "verb": verb}).encode() + b"\n")
        buf = b""
        while b"\n" not in buf:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
    return time.perf_counter() - start, json.loads(buf.split(b"\n", 1)[0] or b"{}")


def wait_ready(sock_path: str, count: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(sock_path):
            try:
                _, reply = call(sock_path, "status")
                rows = reply.get("services") or reply.get("rows") or []
                if len([r for r in rows if r.get("state") == "ready"]) == count:
                    return
            except OSError:
                pass
        time.sleep(0.1)
    raise SystemExit("svtree did not get every service ready in time")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def pid1_of(unshare_pid: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{unshare_pid}/task/{unshare_pid}/children") as f:
                kids = f.read().split()
        except OSError:
            kids = []
        if kids:
            return int(kids[0])
        time.sleep(0.01)
    raise SystemExit("svtree did not start")


def measure(root: str, count: int, repeat: int, data: bool) -> dict:
    tree = write_tree(root, count, data)
    sock_path = os.path.join(root, "control.sock")
    log = open(os.path.join(root, "svtree.log"), "wb")
    proc = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
         sys.executable, "-m", "svtree", "run", "--dir", tree, "--socket", sock_path,
         "--no-watch", "--log-format", "json"],
        stdout=subprocess.DEVNULL, stderr=log, env=dict(os.environ, PYTHONPATH=REPO),
        start_new_session=True)
    try:
        pid1 = pid1_of(proc.pid)
        wait_ready(sock_path, count)
        call(sock_path, "reload")  # the first reload fills what a later one reuses
        rounds = []
        cpu = cpu_seconds(pid1)
        for _ in range(repeat):
            took, reply = call(sock_path, "reload")
            assert reply.get("ok"), reply
            rounds.append(took)
        cpu = (cpu_seconds(pid1) - cpu) / repeat
        # ctl status while reloads run back to back in another thread.
        stop = threading.Event()

        def reload_forever():
            while not stop.is_set():
                call(sock_path, "reload")

        t = threading.Thread(target=reload_forever)
        t.start()
        status = []
        try:
            for _ in range(repeat * 5):
                status.append(call(sock_path, "status")[0])
                time.sleep(0.005)
        finally:
            stop.set()
            t.join()
        return {"reload_median": statistics.median(rounds), "reload_max": max(rounds), "cpu": cpu,
                "status_median": statistics.median(status), "status_max": max(status)}
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)
        log.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    print(f"{args.services} services; {args.repeat} reloads per case; times in ms")
    print(f"{'case':<12} {'reload med':>10} {'reload max':>10} {'PID 1 CPU/reload':>16} "
          f"{'status med':>10} {'status max (during reloads)':>28}")
    for data in (False, True):
        root = tempfile.mkdtemp(prefix="svtree-reload-bench-", dir=base)
        try:
            r = measure(root, args.services, args.repeat, data)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        name = "data" if data else "definitions"
        print(f"{name:<12} {r['reload_median'] * 1e3:>10.1f} {r['reload_max'] * 1e3:>10.1f} "
              f"{r['cpu'] * 1e3:>16.1f} {r['status_median'] * 1e3:>10.1f} {r['status_max'] * 1e3:>28.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
