"""A hung filesystem, for tests: a FUSE mount whose server never answers (a read, or
anything at all).

    python3 hung_fs.py dead MOUNTPOINT CMD [ARG...]
                                          mount a FUSE filesystem nobody serves, then exec
                                          CMD (which keeps /dev/fuse open): every lookup in it
                                          waits (killably) while CMD lives. No child process
                                          (a harness may take the first child for svtree).
    python3 hung_fs.py serve MOUNTPOINT   mount a FUSE filesystem holding one file, `file`
                                          (4 KiB, executable), answer lookups, stats and
                                          opens, and never answer a read: whoever reads
                                          `file`, or execs it (or a script whose #! names
                                          it), waits (killably) for as long as this
                                          process lives.
    python3 hung_fs.py stuck FILE         map FILE, have a child read it through
                                          /proc/PID/mem (which holds this process's memory
                                          map lock while the read waits), then change the map
                                          (which waits for that lock): from then on reading
                                          this process's /proc/PID/environ or cmdline waits,
                                          as for a process stuck on a hung network filesystem.
                                          Prints "stuck PID" as it starts the change;
                                          is_stuck(PID) says when it waits.

Root only (mount(2), and /dev/fuse); run it inside a private mount namespace (a service
of an svtree in the test harness's namespace), so the mount disappears with it. The FUSE
protocol is spoken in its raw form (linux/fuse.h), only the messages used here.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import struct
import sys
import time

IN_HEADER = struct.Struct("<IIQQIIIHH")  # len opcode unique nodeid uid gid pid extlen pad
OUT_HEADER = struct.Struct("<IiQ")  # len error unique
# ino size blocks atime mtime ctime atimensec mtimensec ctimensec mode nlink uid gid rdev blksize flags
ATTR = struct.Struct("<QQQQQQIIIIIIIIII")
LOOKUP, FORGET, GETATTR, OPEN, READ, RELEASE, FLUSH, INIT, OPENDIR, RELEASEDIR, INTERRUPT = (
    1, 2, 3, 14, 15, 18, 25, 26, 27, 29, 36)
ROOT, FILE_NODE = 1, 2
FILE_NAME = b"file"
FILE_SIZE = 4096


def _attr(node: int) -> bytes:
    if node == ROOT:
        return ATTR.pack(ROOT, 0, 0, 0, 0, 0, 0, 0, 0, 0o40755, 2, 0, 0, 0, 4096, 0)
    return ATTR.pack(FILE_NODE, FILE_SIZE, 8, 0, 0, 0, 0, 0, 0, 0o100755, 1, 0, 0, 0, 4096, 0)


def mount(mountpoint: str) -> int:
    """Mount a FUSE filesystem on `mountpoint` (made if missing); the /dev/fuse fd."""
    os.makedirs(mountpoint, exist_ok=True)
    fd = os.open("/dev/fuse", os.O_RDWR)
    libc = ctypes.CDLL(None, use_errno=True)
    options = f"fd={fd},rootmode=40000,user_id=0,group_id=0".encode()
    if libc.mount(b"hungfs", mountpoint.encode(), b"fuse", 0, options) != 0:
        raise OSError(ctypes.get_errno(), f"mount {mountpoint}")
    return fd


def dead(mountpoint: str, argv: "list[str]") -> None:
    os.set_inheritable(mount(mountpoint), True)
    os.execvp(argv[0], argv)


def serve(mountpoint: str) -> None:
    fd = mount(mountpoint)

    def reply(unique: int, body: bytes = b"", error: int = 0) -> None:
        os.write(fd, OUT_HEADER.pack(OUT_HEADER.size + len(body), error, unique) + body)

    while True:
        try:
            msg = os.read(fd, 1 << 20)
        except OSError as e:
            if e.errno in (errno.EINTR, errno.EAGAIN, errno.ENOENT):
                continue
            return  # unmounted
        _, opcode, unique, node, *_ = IN_HEADER.unpack_from(msg)
        arg = msg[IN_HEADER.size:]
        if opcode == INIT:
            major, minor = struct.unpack_from("<II", arg)
            # major minor max_readahead flags max_background congestion max_write time_gran
            # max_pages map_alignment flags2 max_stack_depth unused[6]
            reply(unique, struct.pack("<IIIIHHIIHHII24x", 7, 31, 0, 0, 16, 12, 4096, 1, 1, 0, 0, 0))
        elif opcode == LOOKUP:
            if node == ROOT and arg.rstrip(b"\0") == FILE_NAME:
                reply(unique, struct.pack("<QQQQII", FILE_NODE, 0, 3600, 3600, 0, 0) + _attr(FILE_NODE))
            else:
                reply(unique, error=-errno.ENOENT)
        elif opcode == GETATTR:
            reply(unique, struct.pack("<QII", 3600, 0, 0) + _attr(node))
        elif opcode in (OPEN, OPENDIR):
            reply(unique, struct.pack("<QIi", 1, 0, 0))
        elif opcode in (RELEASE, RELEASEDIR, FLUSH):
            reply(unique)
        elif opcode in (READ, FORGET, INTERRUPT):
            pass  # a read is never answered; FORGET and INTERRUPT take no answer
        else:
            reply(unique, error=-errno.ENOSYS)


def _state(path: str) -> str:
    stat = _read(path)
    return stat[stat.rindex(")") + 2:][:1] if stat else ""


def stuck(path: str) -> None:
    """Become a process whose memory map is locked by a read of FILE that never ends."""
    with open(path, "rb") as f:
        mapped = mmap.mmap(f.fileno(), FILE_SIZE, prot=mmap.PROT_READ)
    assert not mapped.closed  # kept mapped for as long as this process lives
    addr = _address(os.path.realpath(path))
    me = os.getpid()
    reader = os.fork()
    if reader == 0:
        # Read the mapped page through /proc/ME/mem: the read waits for the server,
        # holding ME's memory map lock (for reading) all along.
        fd = os.open(f"/proc/{me}/mem", os.O_RDONLY)
        os.pread(fd, 16, addr)
        os._exit(0)
    _wait_until(lambda: _read(f"/proc/{reader}/wchan") == "request_wait_answer")  # FUSE's wait
    # Now a change of our own map (any mmap) waits for that lock, for writing; from then
    # on every reader of our map waits behind it: /proc/ME/environ, /proc/ME/cmdline.
    # (Not in a thread: creating one maps its stack, which waits just the same.)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                          ctypes.c_long]
    sys.stdout.write(f"stuck {me}\n")  # from now on, see is_stuck(PID)
    sys.stdout.flush()
    libc.mmap(None, 4096, 3, 0x22, -1, 0)  # waits for as long as the server lives
    while True:
        time.sleep(1000)


def is_stuck(pid: int) -> bool:
    """Whether a `stuck` process waits for its memory map lock (D state, in mmap)."""
    return _state(f"/proc/{pid}/stat") == "D"


def _address(path: str) -> int:
    """Where `path` is mapped in this process."""
    with open("/proc/self/maps") as f:
        for line in f:
            if line.rstrip("\n").endswith(" " + path):
                return int(line.split("-", 1)[0], 16)
    raise LookupError(f"{path} is not mapped")


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def _wait_until(predicate) -> None:
    while not predicate():
        time.sleep(0.01)


if __name__ == "__main__":
    if sys.argv[1] == "dead":
        dead(sys.argv[2], sys.argv[3:])
    else:
        {"serve": serve, "stuck": stuck}[sys.argv[1]](sys.argv[2])
