"""Process primitives shared by the core and the monitor. A leaf: stdlib only.

Every program svtree starts goes through `spawn`, so every child starts the same clean
way (tini's habit): its own session or process group, every signal disposition back to
default (CPython ignores SIGPIPE and SIGXFSZ before our code runs), the signal mask
svtree started with, a chosen cwd, its oom_score_adj, and exactly the fds named, nothing
else. `spawn` takes a vfork-style path (no Python between the fork and the exec) where
the settings allow it, and forks otherwise.
"""

from __future__ import annotations

import _signal  # the C module: signal's wrappers turn every number into an enum (slow)
import errno
import fcntl
import os
import select
import signal
import socket
import stat
import sys

try:  # CPython's own vfork + exec (what subprocess uses): see _spawn_vfork
    from _posixsubprocess import fork_exec as _fork_exec
except ImportError:  # pragma: no cover - every CPython on Linux has it
    _fork_exec = None
if sys.version_info < (3, 11):
    _fork_exec = None  # an older signature (no process group, no allow_vfork)
# fork_exec's last argument until 3.13, allow_vfork (3.14 vforks whenever it can).
_VFORK = (True,) if sys.version_info < (3, 14) else ()

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36
ALL_SIGNALS = frozenset(int(s) for s in _signal.valid_signals())
_CATCHABLE = sorted(ALL_SIGNALS - {signal.SIGKILL, signal.SIGSTOP})
_SIG_DFL = int(signal.SIG_DFL)

# The signal mask svtree was started with: children get it back. Taken at import, before
# anything here blocks a signal.
ORIGINAL_SIGMASK = frozenset(int(s) for s in _signal.pthread_sigmask(_signal.SIG_BLOCK, []))

_libc = None


def _load_libc():
    """The C library (for prctl and raw system calls), loaded once."""
    global _libc
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def prctl(option: int, arg: "int | bytes") -> None:
    """prctl(2) with one argument, through the C library; OSError when it fails (or
    when there is no C library to call)."""
    call = getattr(_load_libc(), "prctl", None)
    if call is None:
        raise OSError(errno.ENOSYS, "the C library has no prctl")
    if call(option, arg, 0, 0, 0) != 0:
        import ctypes

        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def set_child_subreaper() -> None:
    """Orphans of our descendants are re-parented to us instead of to PID 1."""
    prctl(PR_SET_CHILD_SUBREAPER, 1)


def set_parent_death_signal(sig: int) -> None:
    """The kernel sends us `sig` when our parent dies (the core, for its helpers)."""
    prctl(PR_SET_PDEATHSIG, sig)


def set_process_name(name: bytes) -> None:
    """The name ps and /proc/PID/comm show (at most 15 bytes are kept)."""
    prctl(PR_SET_NAME, name[:15])


# oom_score_adj: the kernel's OOM killer picks the process with the highest score, and
# this value (-1000..1000) is added to it. svtree lowers its own so that a greedy service
# goes before it (lower_own_oom_score_adj); children would inherit that, so spawn gives
# each child the value svtree started with (or its service's `oom_score_adj`).
OOM_SCORE_ADJ = "/proc/self/oom_score_adj"
_oom_restore: "int | None" = None  # what children get back, once svtree lowered its own
_oom_own: "int | None" = None  # our own value, once lower_own_oom_score_adj has read or set it


def read_oom_score_adj() -> int:
    with open(OOM_SCORE_ADJ) as f:
        return int(f.read())


def _write_oom_score_adj(value: int) -> None:
    fd = os.open(OOM_SCORE_ADJ, os.O_WRONLY)
    try:
        os.write(fd, b"%d" % value)
    finally:
        os.close(fd)


def lower_own_oom_score_adj(target: int) -> "tuple[int | None, str | None]":
    """Lower our oom_score_adj to `target` (never raise it). Returns (our value now, why
    it could not be lowered or None). Lowering needs CAP_SYS_RESOURCE, which a
    container's root usually lacks. From then on, children get the old value back (spawn)."""
    global _oom_restore, _oom_own
    try:
        before = read_oom_score_adj()
        if target < before:
            _write_oom_score_adj(target)
            _oom_restore, _oom_own = before, target
            return target, None
        _oom_own = before
        return before, None
    except (OSError, ValueError) as e:
        try:
            now: "int | None" = read_oom_score_adj()
        except (OSError, ValueError):
            now = None
        _oom_own = now
        return now, getattr(e, "strerror", None) or str(e)


def _oom_refused(value: int, e: OSError) -> bytes:
    """What a service's stderr says when its `oom_score_adj` could not be set."""
    try:
        have: "int | str" = read_oom_score_adj()
    except (OSError, ValueError):
        have = "unknown"
    return (f"svtree: oom_score_adj = {value} refused ({e.strerror}; lowering it "
            f"needs CAP_SYS_RESOURCE): running with {have}\n").encode()


def _set_child_oom_score_adj(value: "int | None") -> None:
    """In a child before exec: its service's value, else the one svtree started with. A
    refusal (lowering without CAP_SYS_RESOURCE) is said on the child's stderr, not fatal:
    the service runs with what it has, as systemd does in a container."""
    wanted = value if value is not None else _oom_restore
    if wanted is None:
        return
    try:
        _write_oom_score_adj(wanted)
    except OSError as e:
        if value is not None:  # (restoring svtree's own start value: nothing the user asked for)
            os.write(2, _oom_refused(value, e))


def _lend_oom_score_adj(value: "int | None", err_fd: int) -> "int | None":
    """For a vfork-style spawn, whose child runs no code of ours: the child is born with
    our oom_score_adj, so we take the child's value (as `_set_child_oom_score_adj` would
    set it) for the length of the spawn. Returns our own value, to be set back once the
    child has exec'd (None: nothing was changed). A refusal is said on `err_fd` (the
    child's stderr), without blocking."""
    wanted = value if value is not None else _oom_restore
    if wanted is None:
        return None
    own = _oom_own
    if own is None:
        try:
            own = read_oom_score_adj()
        except (OSError, ValueError):
            return None
    if wanted == own:
        return None
    try:
        _write_oom_score_adj(wanted)
    except OSError as e:
        if value is not None:
            write_nonblocking(err_fd, _oom_refused(value, e))
        return None
    return own


def _take_back_oom_score_adj(own: "int | None") -> None:
    if own is not None:
        try:
            _write_oom_score_adj(own)
        except OSError:
            pass  # we keep the service's value: nothing to tell anyone


def prepare_fork() -> None:
    """Load what children use (libc for prctl) in the parent, so forks share it."""
    _load_libc()


def fork_quiet() -> int:
    """fork() with every signal blocked across it, so no handler of ours runs in the
    child before it has reset its dispositions. The parent gets its mask back; the
    child returns with everything blocked and must call `unblock_child_signals`."""
    old = _signal.pthread_sigmask(_signal.SIG_BLOCK, ALL_SIGNALS)
    try:
        pid = os.fork()
    except BaseException:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, old)
        raise
    if pid:
        _signal.pthread_sigmask(_signal.SIG_SETMASK, old)
    return pid


# Signals 32 and 33 are reserved by glibc (thread cancellation, setxid): sigaction()
# refuses them, so Python cannot set them back, yet a parent may have left them ignored
# (GNU make starts its recipes so). The raw system call can; a zeroed kernel sigaction is
# SIG_DFL, no flags, empty mask, whatever the architecture's field order.
_SYS_RT_SIGACTION = {"x86_64": 13, "aarch64": 134}.get(os.uname().machine)
_RESERVED_SIGNALS = (32, 33)


def _reset_reserved_signals() -> None:
    if _libc is None or _SYS_RT_SIGACTION is None:
        return
    import ctypes

    act = ctypes.create_string_buffer(64)
    for sig in _RESERVED_SIGNALS:
        _libc.syscall(_SYS_RT_SIGACTION, sig, act, None, 8)


def reset_signal_dispositions() -> None:
    """Every signal back to SIG_DFL (undoing CPython's SIG_IGN of SIGPIPE and SIGXFSZ,
    any handler of ours, and an inherited SIG_IGN of glibc's reserved ones), and no
    wakeup fd."""
    _signal.set_wakeup_fd(-1)
    for s in _CATCHABLE:
        try:
            _signal.signal(s, _SIG_DFL)
        except (OSError, ValueError):
            pass
    _reset_reserved_signals()


def close_fds_except(keep) -> None:
    low = 0
    for fd in sorted(set(keep)):
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 20)


def _place_fds(fds: "dict[int, int]") -> None:
    """dup2 each source onto its target without clobbering a source that is also a
    target, then close every other fd >= 3."""
    floor = max([*fds.keys(), *fds.values(), 2]) + 1
    parked = {target: fcntl.fcntl(source, fcntl.F_DUPFD, floor) for target, source in fds.items()}
    for target, source in parked.items():
        os.dup2(source, target, inheritable=True)
    close_fds_except([0, 1, 2, *fds])


def _own_group(session: bool, foreground_tty: bool) -> None:
    """In spawn's child: a session of its own, or a process group of its own (then, with
    `foreground_tty`, the terminal's foreground group: the main command reads it)."""
    if session:
        os.setsid()
        return
    os.setpgid(0, 0)
    if foreground_tty and os.isatty(0):
        # tcsetpgrp from a background group raises SIGTTOU: ignore it meanwhile.
        signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        try:
            os.tcsetpgrp(0, os.getpgrp())
        except OSError:
            pass


def _set_identity(uid: "int | None", gid: "int | None", groups: "tuple[int, ...] | None") -> None:
    """In spawn's child: the service's groups, group and user (in that order: after
    setuid, setgid would be refused)."""
    if gid is not None:
        os.setgroups(list(groups) if groups is not None else [gid])
        os.setgid(gid)
    if uid is not None:
        os.setuid(uid)


def spawn(
    argv: "list[str]",
    *,
    cwd: "str | None",
    env: "dict[str, str]",
    fds: "dict[int, int]",
    session: bool = True,
    foreground_tty: bool = False,
    uid: "int | None" = None,
    gid: "int | None" = None,
    groups: "tuple[int, ...] | None" = None,
    oom_score_adj: "int | None" = None,
    signals_clean: bool = False,
) -> int:
    """Start argv cleanly; return the child's pid (it leads its own session or group).

    fds maps each fd the child gets to an fd of ours (0, 1, 2 always given).
    An exec failure is written to the child's fd 2 and the child exits 127 (126 when
    the file is not executable), like a shell.
    oom_score_adj: the child's value; None gives it the one svtree started with.
    signals_clean: our signal mask and dispositions are what a child must start with,
    but for SIGPIPE, SIGXFSZ and handlers (which exec resets): the monitor's are (see
    monitor_main). Then, in a session of its own, with no user or group to switch to and
    every fd beyond 2 already at its own number, the child is started vfork-style.
    """
    if signals_clean and session and uid is None and gid is None and groups is None \
            and _fork_exec is not None and all(t == s for t, s in fds.items() if t > 2):
        pid = _spawn_vfork(argv, cwd, env, fds, oom_score_adj)
        if pid is not None:
            return pid
    return _spawn_fork(argv, cwd, env, fds, session, foreground_tty, uid, gid, groups, oom_score_adj)


def _spawn_vfork(argv: "list[str]", cwd: "str | None", env: "dict[str, str]", fds: "dict[int, int]",
                 oom_score_adj: "int | None") -> "int | None":
    """CPython's own spawn (_posixsubprocess, subprocess's: vfork, then C code only until
    the exec; the caller waits meanwhile, 0.1-0.2 ms): a session of its own, SIGPIPE and
    SIGXFSZ back to default, handlers reset by the exec, our mask, `cwd`, fds 0-2 from
    `fds`, every other fd closed but those in `fds` beyond 2 (at their own numbers).

    Returns None when the child could not exec (a missing file, a refused chdir, ...):
    it has exited, and the caller forks instead, whose child says why on its stderr and
    exits 127 or 126 like a shell. OSError when the vfork itself failed (EAGAIN).
    """
    global _fork_exec
    env_list = [os.fsencode(k) + b"=" + os.fsencode(v) for k, v in env.items()]
    err_r, err_w = os.pipe()
    own_oom = _lend_oom_score_adj(oom_score_adj, fds[2])
    try:
        # err_w is kept open until the exec (fork_exec leaves it close-on-exec).
        keep = tuple(sorted([err_w, *(t for t in fds if t > 2)]))
        pid = _fork_exec(argv, [os.fsencode(argv[0])], True, keep, cwd, env_list,
                         fds[0], -1, -1, fds[1], -1, fds[2], err_r, err_w,
                         True, True, -1, None, None, None, -1, None, *_VFORK)
    except TypeError:  # a CPython whose fork_exec takes other arguments: fork from now on
        _fork_exec = None
        os.close(err_r)
        return None
    except BaseException:
        os.close(err_r)
        raise
    finally:
        os.close(err_w)
        _take_back_oom_score_adj(own_oom)
    try:
        # The child has exec'd (its copy of err_w was close-on-exec: EOF) or said why not.
        failed = os.read(err_r, 256)
    finally:
        os.close(err_r)
    if failed:
        os.waitpid(pid, 0)
        return None
    return pid


def _spawn_fork(argv, cwd, env, fds, session, foreground_tty, uid, gid, groups, oom_score_adj) -> int:
    """fork, then set the child up in Python and exec (any setting; 1-2 ms)."""
    pid = fork_quiet()
    if pid:
        return pid
    # Child. Only os._exit leaves this block: never return into the caller's loop.
    try:
        _own_group(session, foreground_tty)
        reset_signal_dispositions()
        _signal.pthread_sigmask(_signal.SIG_SETMASK, ORIGINAL_SIGMASK)
        if cwd is not None:
            os.chdir(cwd)
        _place_fds(fds)
        # Before setuid: lowering the value needs the privileges svtree may still have.
        _set_child_oom_score_adj(oom_score_adj)
        _set_identity(uid, gid, groups)
        os.execve(argv[0], argv, env)
    except OSError as e:
        code = 126 if e.errno in (errno.EACCES, errno.ENOEXEC) else 127
        try:
            os.write(2, f"svtree: cannot start {argv[0]}: {e.strerror}\n".encode())
        finally:
            os._exit(code)
    except BaseException:
        os._exit(127)
    os._exit(127)  # not reached


def decode_wait_status(status: int) -> "tuple[int | None, int]":
    """(exit code or None, signal or 0) from a waitpid status."""
    if os.WIFSIGNALED(status):
        return None, os.WTERMSIG(status)
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status), 0
    return None, 0


def children(pid: int) -> "list[int]":
    """Direct children of pid (every thread's), from /proc."""
    out: "list[int]" = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                out.extend(int(x) for x in f.read().split())
        except OSError:
            pass
    return out


def descendants(pid: int) -> "list[int]":
    """Every descendant of pid (breadth first), from /proc."""
    out: "list[int]" = []
    todo = children(pid)
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children(p))
    return out


def all_pids() -> "list[int]":
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def kill_quietly(pid: int, sig: int) -> bool:
    """kill(2), treating 'already gone' as done. Returns True if delivered."""
    try:
        os.kill(pid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def killpg_quietly(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rfind(b")") + 2:][:1] == b"Z"


def become_helper(name: bytes, keep: "list[int]") -> None:
    """Set up a short-lived helper child (a compile, an orphan scan) just forked from the
    core with `fork_quiet`: default signal dispositions and no wakeup fd (a SIGTERM ends
    it; its signals never reach the core's loop), the original signal mask, stdin,
    stdout and stderr on /dev/null (it reports over its own pipe and must not block on
    svtree's output), no fd of the core's but those in `keep`, `name` in ps, and SIGKILL
    when the core dies."""
    reset_signal_dispositions()
    _signal.pthread_sigmask(_signal.SIG_SETMASK, ORIGINAL_SIGMASK)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    close_fds_except([0, 1, 2, *keep])
    try:
        set_parent_death_signal(signal.SIGKILL)
        set_process_name(name)
    except OSError:
        pass


# --- writing to a stream we share with our children, without blocking -------------------

class NonBlockingWriter:
    """Writes to one of our fds (svtree's stdout or stderr) without ever blocking, and
    without touching the fd's open file description: our children share it (the main
    command gets our stdout, `raw` services too), and O_NONBLOCK set there would make
    their writes fail with EAGAIN. So:

      pipe, FIFO, terminal, char device   a description of our own, opened through
                                          /proc/self/fd/N with O_NONBLOCK
      socket                              send(MSG_DONTWAIT) on a dup
      regular file                        written as it is (a file never waits for a
                                          reader)
      anything else, or no /proc          poll for room, then at most PIPE_BUF bytes

    `write` returns how many bytes went out; BlockingIOError means "no room now, wait
    until `fileno()` is writable"; any other OSError means the stream is unusable.
    """

    def __init__(self, fd: int) -> None:
        self.target = fd
        self.fd = fd
        self.sock: "socket.socket | None" = None
        self.kind = "closed"
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            return
        if stat.S_ISREG(mode):
            self.kind = "file"
        elif stat.S_ISSOCK(mode):
            self.fd = os.dup(fd)
            try:
                self.sock = socket.socket(fileno=self.fd)
                self.kind = "socket"
            except OSError:
                os.close(self.fd)
                self.fd, self.kind = fd, "shared"
        else:
            try:
                self.fd = os.open(f"/proc/self/fd/{fd}",
                                  os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
                self.kind = "private"
            except OSError:  # no /proc, or a FIFO without a reader (ENXIO)
                self.kind = "shared"

    def fileno(self) -> int:
        return self.fd

    def write(self, buffers: "list[bytes]") -> int:
        if self.kind == "closed":
            raise OSError(errno.EBADF, "the stream is closed")
        if self.kind == "socket":
            return self.sock.sendmsg(buffers, [], socket.MSG_DONTWAIT | socket.MSG_NOSIGNAL)
        if self.kind == "shared":
            if not select.select([], [self.fd], [], 0)[1]:
                raise BlockingIOError(errno.EAGAIN, "no room")
            return os.write(self.fd, buffers[0][:select.PIPE_BUF])
        return os.writev(self.fd, buffers)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        elif self.fd != self.target:
            os.close(self.fd)
        self.kind = "closed"


def write_nonblocking(fd: int, data: bytes) -> int:
    """Write what fits now to fd, without blocking; drop the rest. Bytes written."""
    writer = NonBlockingWriter(fd)
    try:
        return writer.write([data])
    except OSError:
        return 0
    finally:
        writer.close()
