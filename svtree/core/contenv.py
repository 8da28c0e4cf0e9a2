"""s6-overlay's container environment directory, for `with-contenv` and `printcontenv`.

Under s6-overlay, services start with an environment of s6's, and a run script that
wants the container's variables asks for them: `#!/command/with-contenv sh` empties the
environment (PATH kept) and reads one variable per file from /run/s6/container_environment
(`s6-envdir`), and `printcontenv NAME` prints one of them. When the plan asks for it (an
s6-overlay tree without S6_KEEP_ENV), svtree fills that directory before the boot from
its own environment, the one it was started with: one file per variable, named after it,
holding the value's bytes with no newline added, the directory mode 0755 (as s6-overlay
leaves it). Files there that name no variable of svtree's (a previous run's) are removed.
A name s6-envdir cannot take as a file (with a `/`, or starting with a dot) is skipped.

PID 1 writes it itself, once: a few dozen small files on /run (a tmpfs in a container),
as many as svtree has variables, before anything runs. svtree's services keep getting
its environment directly too (plus SVTREE_SERVICE and their own `environment`).
"""

from __future__ import annotations

import os
from typing import Mapping

FILE_MODE = 0o644
DIR_MODE = 0o755


def _fits(name: bytes) -> bool:
    return bool(name) and b"/" not in name and not name.startswith(b".")


def write_container_environment(path: str, environ: "Mapping[bytes, bytes]") -> int:
    """Fill `path` with one file per variable of `environ`; the number written. OSError
    if the directory cannot be made or written (a read-only /run)."""
    os.makedirs(path, mode=DIR_MODE, exist_ok=True)
    os.chmod(path, DIR_MODE)
    wanted = {name: value for name, value in environ.items() if _fits(name)}
    directory = os.fsencode(path)
    for entry in os.listdir(directory):
        if entry not in wanted:
            try:
                os.unlink(os.path.join(directory, entry))
            except IsADirectoryError:  # not ours: left alone
                pass
            except FileNotFoundError:
                pass
    for name, value in wanted.items():
        fd = os.open(os.path.join(directory, name),
                     os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
        try:
            view = memoryview(value)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
    return len(wanted)
