"""osutil.spawn's two paths give the same clean child: CPython's vfork + exec where the
settings allow it (what the monitor uses for run, finish and the probe), fork + set-up in
Python otherwise (a user or group to switch to, fds to move, a caller whose own signal
state is not clean). Each case runs in a child interpreter of its own that sets its
signals up as a monitor does (monitor_main), starts `sleep`, and reads the sleep's
/proc entries; the path that must not be taken is replaced by one that fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = textwrap.dedent("""
    import _signal, json, os, signal, sys
    from svtree import osutil
    case = json.loads(sys.argv[1])
    # Ignored as a parent may leave them (GNU make does glibc's 32 and 33)...
    osutil.prepare_fork()
    import ctypes
    ign = ctypes.create_string_buffer(64)
    ign[0] = 1  # SIG_IGN
    for sig in (32, 33):
        assert osutil._libc.syscall(osutil._SYS_RT_SIGACTION, sig, ign, None, 8) == 0
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    # ...then a monitor's signal state (monitor_main): every disposition back to default,
    # SIGPIPE ignored and a SIGCHLD handler; the original mask.
    osutil.reset_signal_dispositions()
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    _signal.pthread_sigmask(_signal.SIG_SETMASK, osutil.ORIGINAL_SIGMASK)

    def refuse(*args, **kw):
        raise AssertionError("the other path was taken")

    if case["path"] == "vfork":
        osutil._spawn_fork = refuse
    else:
        osutil._spawn_vfork = refuse
    null = os.open(os.devnull, os.O_RDWR)
    r, w = os.pipe()  # the notification pipe's write end, at its own number (a monitor's slot)
    os.dup2(w, 9, inheritable=False)
    stray = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(stray, True)  # an fd of ours that is not named: the child must not get it
    fds = {0: null, 1: 1, 2: 2, 9: 9}
    if case["move"]:
        fds = {0: null, 1: 1, 2: 2, 12: w}  # the write end to another number: fork only
    pid = osutil.spawn(["/bin/sleep", "30"], cwd=case["cwd"], env={"GREETING": "hi"}, fds=fds,
                       uid=case["uid"], signals_clean=True)
    os.close(w)
    os.close(9)

    # nanosleep and clock_nanosleep: x86_64's numbers, then aarch64's
    SLEEPS = {"x86_64": {"35", "230"}, "aarch64": {"101", "115"}}.get(os.uname().machine)

    def status(pid):
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.rstrip("\\n").split(":\\t", 1) for line in f)
        # Not exec'd yet (the fork path), or the exec is still laying out the environment
        # (the name comes first: vfork's caller goes on as soon as the exec has begun).
        if fields["Name"] != "sleep" or not open(f"/proc/{pid}/environ", "rb").read():
            return None
        # And asleep: until then the loader and sleep's own start-up open files for a
        # moment (libc.so.6, the locale archive), at the lowest free number, 3.
        call = open(f"/proc/{pid}/syscall").read().split()
        if SLEEPS is not None and (not call or call[0] not in SLEEPS):
            return None
        return fields

    import time
    deadline = time.monotonic() + 10
    while (st := status(pid)) is None and time.monotonic() < deadline:
        time.sleep(0.005)
    stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    out = {
        "status": {k: st[k] for k in ("SigIgn", "SigBlk", "SigCgt")},
        "fds": sorted(int(fd) for fd in os.listdir(f"/proc/{pid}/fd")),
        "stdin": os.readlink(f"/proc/{pid}/fd/0"),
        "cwd": os.readlink(f"/proc/{pid}/cwd"),
        "env": open(f"/proc/{pid}/environ", "rb").read().decode(),
        "session_leader": int(stat[2]) == int(stat[3]) == pid,
    }
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    print(json.dumps(out))
""")


def run_case(**case) -> dict:
    env = dict(os.environ, PYTHONPATH=REPO)
    r = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(case)], capture_output=True,
                       text=True, timeout=30, env=env, start_new_session=True)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path, uid, move", [("vfork", None, False), ("fork", 0, False),
                                              ("fork", None, True)])
def test_both_paths_start_a_clean_child(path, uid, move, tmp_path):
    got = run_case(path=path, uid=uid, move=move, cwd=str(tmp_path))
    assert got["status"] == {"SigIgn": "0000000000000000", "SigBlk": "0000000000000000",
                             "SigCgt": "0000000000000000"}
    assert got["fds"] == [0, 1, 2, 12 if move else 9]
    assert got["stdin"] == "/dev/null"
    assert got["cwd"] == str(tmp_path)
    assert got["env"] == "GREETING=hi\0"
    assert got["session_leader"]


FAILING = textwrap.dedent("""
    import os, sys
    from svtree import osutil
    osutil.prepare_fork()
    osutil.reset_signal_dispositions()
    null = os.open(os.devnull, os.O_RDWR)
    r, w = os.pipe()
    tried = []
    vfork = osutil._spawn_vfork
    osutil._spawn_vfork = lambda *a: tried.append(vfork(*a)) or tried[-1]
    pid = osutil.spawn([sys.argv[1]], cwd="/", env={}, fds={0: null, 1: w, 2: w}, signals_clean=True)
    os.close(w)
    said = os.read(r, 4096).decode()
    print(tried, os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), said, sep="|")
""")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("program, code, why", [("missing", 127, "No such file or directory"),
                                                 ("not-executable", 126, "Permission denied")])
def test_a_failed_exec_is_said_on_stderr_with_a_shells_exit_code(program, code, why, tmp_path):
    """The vfork child cannot say why its exec failed (no Python runs there): the fork
    path starts it again, and its child says it, and exits 127 or 126 like a shell."""
    (tmp_path / "not-executable").write_text("#!/bin/sh\n")
    program = str(tmp_path / program)
    r = subprocess.run([sys.executable, "-c", FAILING, program], capture_output=True, text=True,
                       timeout=30, env=dict(os.environ, PYTHONPATH=REPO), start_new_session=True)
    assert r.returncode == 0, r.stderr
    tried, got, said = r.stdout[:-1].split("|")
    assert tried == "[None]"  # the vfork path was tried, and gave up
    assert int(got) == code
    assert said == f"svtree: cannot start {program}: {why}\n"
