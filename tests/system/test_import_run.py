"""`svtree import supervisord`: real-world-shaped configs, converted, then run twice — by
svtree as PID 1 (the converted tree) and by the real supervisord (the config itself, with
`supervisord -n -c FILE` as PID 1 of its own namespace) — and the behaviour compared:
which programs start, with which arguments, directory, user and environment; which one
is restarted after SIGKILL or an expected exit and which stays down; which never starts
(autostart=false); in which order and with which signal they are stopped.

The programs are small shell stand-ins for nginx, php-fpm, gunicorn, celery and cron: each
records its start (pid, name, cwd, user, $APP_ENV, arguments) and its stop signal in an
events file, and exits 0 on SIGUSR1 (an expected exit).

A Procfile runs under svtree only (no honcho here): PORT per line, the .env file, and one
exit ending the whole tree, as honcho and foreman end.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from harness import REPO, descendants, needs_pidns, wait_for

HAVE_SUPERVISORD = shutil.which("supervisord") is not None and shutil.which("supervisorctl") is not None
needs_supervisord = pytest.mark.skipif(not HAVE_SUPERVISORD, reason="needs supervisord (Debian's supervisor "
                                       "package; .ci/run installs it)")
DEBIAN_CONF = "/etc/supervisor/supervisord.conf"

STANDIN = r"""#!/bin/sh
# A stand-in daemon: records its start, then waits. Its stop signal (TERM, QUIT, INT) is
# recorded and ends it with 0; SIGUSR1 ends it with 0 too, SIGUSR2 with 3; "--once"
# makes it a one-off that exits 0 at once.
ulimit -c 0
bye() { printf 'stop\t%s\t%s\t%s\n' "$$" "${0##*/}" "$1" >> "$EVENTS"; kill "$!" 2>/dev/null; exit 0; }
trap 'bye TERM' TERM
trap 'bye QUIT' QUIT
trap 'bye INT' INT
trap 'kill "$!" 2>/dev/null; exit 0' USR1
trap 'kill "$!" 2>/dev/null; exit 3' USR2
# Recorded once the traps are set: a signal sent after this line is handled as above.
printf 'start\t%s\t%s\t%s\t%s\t%s\t%s\n' "$$" "${0##*/}" "$(pwd -P)" "$(id -un)" "${APP_ENV-}" "$*" >> "$EVENTS"
case " $* " in *" --once "*) exit 0 ;; esac
sleep 1000000 &
wait
"""

# The [supervisord] boilerplate of a container image's config (socket, control, rpc).
HEADER = """\
[unix_http_server]
file=%(here)s/supervisor.sock

[supervisord]
nodaemon=true
user=root
logfile=/dev/null
logfile_maxbytes=0
pidfile=%(here)s/supervisord.pid

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://%(here)s/supervisor.sock
"""

NGINX_PHP_FPM = HEADER + r"""
[program:php-fpm]
command=%(here)s/bin/php-fpm -F -R --fpm-config /etc/php/8.2/fpm/php-fpm.conf
priority=5
autostart=true
autorestart=true
stdout_logfile=/dev/stdout
stdout_logfile_maxbytes=0
stderr_logfile=/dev/stderr
stderr_logfile_maxbytes=0

[program:nginx]
command=%(here)s/bin/nginx -g "daemon off; error_log /dev/stderr info;"
priority=10
autostart=true
autorestart=true
stopsignal=QUIT
stopwaitsecs=5
stdout_logfile=/dev/stdout
stdout_logfile_maxbytes=0
redirect_stderr=true
"""

DJANGO_CELERY = HEADER + r"""
[program:django]
command=%(here)s/bin/gunicorn myproj.wsgi:application --bind 0.0.0.0:8000 --workers 2
directory=%(here)s/app
environment=DJANGO_SETTINGS_MODULE="myproj.settings.production",APP_ENV="django"
autostart=true
autorestart=true
redirect_stderr=true
stdout_logfile=/dev/stdout
stdout_logfile_maxbytes=0

[program:celery]
command=%(here)s/bin/celery -A myproj worker --loglevel=INFO --concurrency=2 -n worker%(process_num)d@%%h
process_name=%(program_name)s_%(process_num)02d
numprocs=2
directory=%(here)s/app
user=nobody
environment=APP_ENV="celery %(process_num)d"
autostart=true
autorestart=unexpected
exitcodes=0
startsecs=2
stopwaitsecs=60
stopasgroup=true
killasgroup=true
stdout_logfile=/dev/stdout
stdout_logfile_maxbytes=0
stderr_logfile=/dev/stderr
stderr_logfile_maxbytes=0

[program:celerybeat]
command=%(here)s/bin/celery -A myproj beat --loglevel=INFO
directory=%(here)s/app
user=nobody
autostart=false
autorestart=true
"""

CRON_APP = HEADER + r"""
[program:migrate]
command=%(here)s/bin/migrate --once
priority=1
startsecs=0
autorestart=false
stdout_logfile=/dev/stdout
stdout_logfile_maxbytes=0

[program:cron]
command=%(here)s/bin/cron -f -L 15
autorestart=true
stdout_logfile=/dev/stdout
stdout_logfile_maxbytes=0
redirect_stderr=true

[program:app]
command=%(here)s/bin/app --serve
autorestart=false
stdout_logfile=/dev/stdout
stdout_logfile_maxbytes=0
redirect_stderr=true

[program:mailer]
command=%(here)s/bin/worker --queue mail
exitcodes=0,3

[program:poller]
command=%(here)s/bin/worker --queue poll
exitcodes=3
"""

# conf.d/ of the Debian-package layout: %(here)s is conf.d itself here.
DEBIAN_CONF_D = r"""
[program:worker]
command=%(here)s/../bin/worker --queue default

[program:web]
command=%(here)s/../bin/web --port 8080
autostart=false
"""


def debian_config() -> str:
    """Debian's /etc/supervisor/supervisord.conf as the package installs it, with its
    machine paths moved under the test's directory and its include made relative."""
    with open(DEBIAN_CONF) as f:
        text = f.read()
    moves = {
        "/var/run/supervisor.sock": "%(here)s/supervisor.sock",
        "/var/log/supervisor/supervisord.log": "%(here)s/supervisord.log",
        "/var/run/supervisord.pid": "%(here)s/supervisord.pid",
        "childlogdir=/var/log/supervisor": "childlogdir=%(here)s/log",
        "/etc/supervisor/conf.d/*.conf": "conf.d/*.conf",
    }
    for old, new in moves.items():
        assert old in text, f"Debian's supervisord.conf changed: no {old}"
        text = text.replace(old, new)
    return text


# --- the two runners ----------------------------------------------------------------------


def parse_events(path: str) -> "list[dict]":
    out = []
    with open(path) as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if fields[0] == "start":
                out.append({"kind": "start", "pid": int(fields[1]), "name": fields[2], "cwd": fields[3],
                            "user": fields[4], "app_env": fields[5], "args": fields[6]})
            elif fields[0] == "stop":
                out.append({"kind": "stop", "pid": int(fields[1]), "name": fields[2], "signal": fields[3]})
    return out


def ns_to_host_pid(pid1: int, ns_pid: int) -> int:
    """The host pid of a process whose pid in svtree's or supervisord's namespace is ns_pid."""
    for pid in [pid1, *descendants(pid1)]:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("NSpid:") and int(line.split()[-1]) == ns_pid:
                        return pid
        except OSError:
            continue
    raise AssertionError(f"no process with namespace pid {ns_pid}")


class Supervisord:
    """The real supervisord, `-n -c FILE`, as PID 1 of its own PID namespace (so that
    SIGKILL to it ends every program it started), a child of the test."""

    def __init__(self, conf: str, events: str) -> None:
        self.conf = conf
        root = os.path.dirname(conf)
        self.log = open(os.path.join(root, "supervisord.out"), "wb")
        env = dict(os.environ, EVENTS=events)
        self.proc = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "supervisord", "-n", "-c", conf],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True, cwd=root)
        self.pid1 = wait_for(lambda: (descendants(self.proc.pid) or [None])[0], 10, what="supervisord")

    def states(self) -> "dict[str, str]":
        r = subprocess.run(["supervisorctl", "-c", self.conf, "status"], capture_output=True, text=True,
                           timeout=30)
        out = {}
        for line in r.stdout.splitlines():
            words = line.split()
            if len(words) >= 2:
                out[words[0].split(":")[-1]] = words[1]
        return out

    def wait_running(self, names) -> None:
        wait_for(lambda: all(self.states().get(n) == "RUNNING" for n in names), 30, 0.2,
                 what=f"supervisord to have {names} RUNNING (past startsecs)\n{self.output()}")

    def wait_stopped(self, name: str) -> None:
        wait_for(lambda: self.states().get(name) in ("EXITED", "FATAL", "STOPPED"), 30, 0.2,
                 what=f"supervisord to leave {name} stopped")

    def stop(self) -> int:
        os.kill(self.pid1, signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"supervisord did not stop\n{self.output()}")

    def output(self) -> str:
        with open(self.log.name, errors="replace") as f:
            return f.read()[-3000:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            for pid, how in ((self.pid1, os.kill), (self.proc.pid, os.killpg)):
                try:
                    how(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait(10)
        self.log.close()


class SvtreeRunner:
    """The converted tree under svtree as PID 1 (tests/harness.py)."""

    def __init__(self, run_svtree, events: str) -> None:
        self.sv = run_svtree(env={"EVENTS": events})
        self.pid1 = self.sv.pid1

    def wait_running(self, names) -> None:
        self.sv.wait_state("up", *names, timeout=30)

    def wait_stopped(self, name: str) -> None:
        self.sv.wait_state("down", name, timeout=30)

    def stop(self) -> int:
        return self.sv.stop(60)


# --- one scenario, observed the same way under both ---------------------------------------


def write_config(root: str, text: str, extra: "dict[str, str] | None" = None) -> str:
    os.chmod(root, 0o755)  # programs run as nobody must reach their files
    bin_dir = os.path.join(root, "bin")
    os.makedirs(bin_dir, exist_ok=True)
    for name in ("nginx", "php-fpm", "gunicorn", "celery", "cron", "app", "migrate", "worker", "web"):
        path = os.path.join(bin_dir, name)
        with open(path, "w") as f:
            f.write(STANDIN)
        os.chmod(path, 0o755)
    for directory in ("app", "log"):
        os.makedirs(os.path.join(root, directory), exist_ok=True)
    for rel, body in (extra or {}).items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(textwrap.dedent(body))
    conf = os.path.join(root, "supervisord.conf")
    with open(conf, "w") as f:
        f.write(text)
    return conf


def svtree_cli(*args: str, cwd: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "svtree", *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd, env=dict(os.environ, PYTHONPATH=REPO))


def import_and_compile(conf: str, tree_dir: str) -> None:
    # supervisord runs a program without directory= in its own working directory (the
    # image's WORKDIR); --cwd tells the import what that is.
    root = os.path.dirname(conf)
    r = svtree_cli("import", "supervisord", conf, "-o", tree_dir, "--cwd", root, cwd=root)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "warning" not in r.stderr, r.stderr
    c = svtree_cli("compile", tree_dir, cwd=os.path.dirname(conf))
    assert c.returncode == 0, c.stdout + c.stderr


def observe(runner, events: str, scenario: dict) -> dict:
    """Run the scenario against a started runner; return what happened, as data."""
    def starts():
        return [e for e in parse_events(events) if e["kind"] == "start"]

    def key(e):
        return f"{e['name']} {e['args']}"

    expected_up = scenario["up"]  # process/service name -> key of its start line
    wait_for(lambda: {key(e) for e in starts()} >= set(expected_up.values()), 30,
             what=f"the programs to start: {sorted(expected_up.values())}")
    runner.wait_running(list(expected_up))
    first = {}
    for e in starts():
        first.setdefault(key(e), e)
    observed = {
        "started": sorted(first),
        "how": {k: (e["cwd"], e["user"], e["app_env"]) for k, e in first.items()},
    }
    # Faults: SIGKILL, or SIGUSR1 (exit 0, an expected exit), to the program's process.
    before = len(starts())
    for name, sig in scenario["faults"].items():
        e = first[expected_up[name]]
        os.kill(ns_to_host_pid(runner.pid1, e["pid"]), sig)
    restarted = [expected_up[n] for n in scenario["restarted"]]
    wait_for(lambda: {key(e) for e in starts()[before:]} >= set(restarted), 30,
             what=f"the restart of {restarted}")
    for name in scenario["faults"]:
        if name not in scenario["restarted"]:
            runner.wait_stopped(name)
    # A restart is decided within supervisord's one-second loop tick at the latest: a
    # program still without a new start after 1.5 s more stays down. (A negative needs a
    # bounded window; everything before it waited on events.)
    time.sleep(1.5)
    observed["restarted"] = sorted({key(e) for e in starts()[before:]})
    observed["exit_code"] = runner.stop()
    stops = [e for e in parse_events(events) if e["kind"] == "stop"]
    # Stop order is compared only where the config orders programs (priority): others
    # stop in parallel under svtree, one by one under supervisord.
    observed["stops"] = sorted((e["name"], e["signal"]) for e in stops)
    observed["stop_order"] = [e["name"] for e in stops]
    return observed


def same(a: dict, b: dict) -> bool:
    return {k: v for k, v in a.items() if k != "stop_order"} == {k: v for k, v in b.items() if k != "stop_order"}


def run_both(conf_text: str, scenario: dict, tree, run_svtree, extra=None) -> "tuple[dict, dict]":
    conf = write_config(tree.root, conf_text, extra)
    import_and_compile(conf, tree.dir)
    events_svtree = os.path.join(tree.root, "events-svtree")
    events_supervisord = os.path.join(tree.root, "events-supervisord")
    for path in (events_svtree, events_supervisord):
        open(path, "w").close()
        os.chmod(path, 0o666)
    svtree_seen = observe(SvtreeRunner(run_svtree, events_svtree), events_svtree, scenario)
    runner = Supervisord(conf, events_supervisord)
    try:
        supervisord_seen = observe(runner, events_supervisord, scenario)
    finally:
        runner.kill()
    return svtree_seen, supervisord_seen


# --- the scenarios --------------------------------------------------------------------------

pytestmark = [needs_pidns, pytest.mark.timeout(180)]


@needs_supervisord
def test_nginx_and_php_fpm_start_restart_and_stop_in_priority_order(tree, run_svtree):
    scenario = {
        "up": {"php-fpm": "php-fpm -F -R --fpm-config /etc/php/8.2/fpm/php-fpm.conf",
               "nginx": "nginx -g daemon off; error_log /dev/stderr info;"},
        "faults": {"nginx": signal.SIGKILL, "php-fpm": signal.SIGKILL},
        "restarted": ["nginx", "php-fpm"],
    }
    svtree_seen, supervisord_seen = run_both(NGINX_PHP_FPM, scenario, tree, run_svtree)
    assert same(svtree_seen, supervisord_seen), (svtree_seen, supervisord_seen)
    assert svtree_seen["started"] == sorted(scenario["up"].values())
    assert svtree_seen["restarted"] == sorted(scenario["up"].values())
    # priority 10 stops before priority 5, nginx with its stopsignal QUIT.
    assert svtree_seen["stops"] == [("nginx", "QUIT"), ("php-fpm", "TERM")]
    assert svtree_seen["stop_order"] == supervisord_seen["stop_order"] == ["nginx", "php-fpm"]
    assert svtree_seen["exit_code"] == 0
    assert set(svtree_seen["how"].values()) == {(tree.root, "root", "")}


@needs_supervisord
def test_django_with_celery_workers_by_numprocs(tree, run_svtree):
    app = os.path.join(tree.root, "app")
    workers = "celery -A myproj worker --loglevel=INFO --concurrency=2 -n worker{}@%h"
    scenario = {
        "up": {"django": "gunicorn myproj.wsgi:application --bind 0.0.0.0:8000 --workers 2",
               "celery_00": workers.format(0), "celery_01": workers.format(1)},
        # autorestart=unexpected, exitcodes=0: a SIGKILL is unexpected (restarted), an
        # exit 0 is expected (stays down).
        "faults": {"celery_00": signal.SIGKILL, "celery_01": signal.SIGUSR1, "django": signal.SIGKILL},
        "restarted": ["celery_00", "django"],
    }
    svtree_seen, supervisord_seen = run_both(DJANGO_CELERY, scenario, tree, run_svtree)
    assert same(svtree_seen, supervisord_seen), (svtree_seen, supervisord_seen)
    assert svtree_seen["how"] == {
        scenario["up"]["django"]: (app, "root", "django"),
        workers.format(0): (app, "nobody", "celery 0"),
        workers.format(1): (app, "nobody", "celery 1"),
    }
    assert svtree_seen["restarted"] == sorted([workers.format(0), scenario["up"]["django"]])
    # celerybeat (autostart=false) never started.
    assert not any(k.startswith("celery -A myproj beat") for k in svtree_seen["started"])


@needs_supervisord
def test_cron_and_app_pair_with_a_one_off_and_expected_exit_codes(tree, run_svtree):
    scenario = {
        "up": {"cron": "cron -f -L 15", "app": "app --serve", "mailer": "worker --queue mail",
               "poller": "worker --queue poll"},
        # autorestart=unexpected: mailer's exit 3 is expected (exitcodes=0,3), poller's
        # exit 0 is not (exitcodes=3).
        "faults": {"cron": signal.SIGKILL, "app": signal.SIGKILL, "mailer": signal.SIGUSR2,
                   "poller": signal.SIGUSR1},
        "restarted": ["cron", "poller"],
    }
    svtree_seen, supervisord_seen = run_both(CRON_APP, scenario, tree, run_svtree)
    assert same(svtree_seen, supervisord_seen), (svtree_seen, supervisord_seen)
    # The one-off ran once (startsecs=0, autorestart=false) and held nothing back.
    assert svtree_seen["started"] == ["app --serve", "cron -f -L 15", "migrate --once", "worker --queue mail",
                                      "worker --queue poll"]
    assert svtree_seen["restarted"] == ["cron -f -L 15", "worker --queue poll"]


@needs_supervisord
@pytest.mark.skipif(not os.path.exists(DEBIAN_CONF), reason="needs Debian's supervisor package")
def test_debian_supervisord_conf_with_conf_d(tree, run_svtree):
    scenario = {
        "up": {"worker": "worker --queue default"},
        "faults": {"worker": signal.SIGKILL},
        "restarted": ["worker"],
    }
    svtree_seen, supervisord_seen = run_both(debian_config(), scenario, tree, run_svtree,
                                             extra={"conf.d/app.conf": DEBIAN_CONF_D})
    assert same(svtree_seen, supervisord_seen), (svtree_seen, supervisord_seen)
    assert svtree_seen["started"] == ["worker --queue default"]  # web: autostart=false


# --- a Procfile, as honcho and foreman run it: PORT per line, .env, one exit ends all -------

PROCFILE = """\
web: printf 'start\\t%s\\tweb\\t%s\\t%s\\n' "$$" "$PORT" "$APP_ENV" >> "$EVENTS"; exec sleep 1000000
worker: trap 'printf "stop\\t$$\\tworker\\tTERM\\n" >> "$EVENTS"; exit 0' TERM; printf 'start\\t%s\\tworker\\t%s\\t%s\\n' "$$" "$PORT" "$APP_ENV" >> "$EVENTS"; sleep 1000000 & wait
"""


@pytest.mark.timeout(90)
def test_a_procfile_runs_as_honcho_runs_it_and_one_exit_ends_the_tree(tree, run_svtree):
    app = os.path.join(tree.root, "app")
    os.makedirs(app)
    with open(os.path.join(app, "Procfile"), "w") as f:
        f.write(PROCFILE)
    with open(os.path.join(app, ".env"), "w") as f:
        f.write("APP_ENV=from-dotenv\n")
    r = svtree_cli("import", "procfile", "-o", tree.dir, cwd=app)
    assert r.returncode == 0, r.stdout + r.stderr
    events = os.path.join(tree.root, "events-procfile")
    open(events, "w").close()
    sv = run_svtree(env={"EVENTS": events, "PORT": "8000"})

    def lines():
        with open(events) as f:
            return [line.rstrip("\n").split("\t") for line in f]

    wait_for(lambda: len([x for x in lines() if x[0] == "start"]) == 2, 30, what="web and worker")
    starts = {x[2]: x for x in lines() if x[0] == "start"}
    # PORT: the environment's 8000 as the base, + 100 for the second line; .env applies.
    assert (starts["web"][3:], starts["worker"][3:]) == (["8000", "from-dotenv"], ["8100", "from-dotenv"])
    os.kill(ns_to_host_pid(sv.pid1, int(starts["web"][1])), signal.SIGKILL)
    # web ended for good (critical, restart never): svtree stops worker and exits 1.
    assert sv.wait(30) == 1
    assert [x[2:] for x in lines() if x[0] == "stop"] == [["worker", "TERM"]]
    assert len([x for x in lines() if x[0] == "start"]) == 2  # nothing restarted
