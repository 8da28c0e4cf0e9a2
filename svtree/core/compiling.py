"""Compiling the tree in a helper child: PID 1 never reads the tree itself.

A compile reads every definition file, looks users and groups up (NSS: LDAP or sssd may
take minutes) and stats interpreters; a hung network filesystem or a FIFO where a file
should be would keep PID 1 from reaping, restarting and answering. So the core forks a
helper (core/helper.py: fork, for the reasons given there; here also because the child
starts from the core's cache of definition files, so it reads only what changed) that
compiles and sends the result back over a pipe. The core reads it from its loop,
non-blocking, one read per wake-up, up to MAX_RESULT bytes, and SIGKILLs a child that
overruns its deadline or that limit. A compile is over (and the next may start) once
its child has been reaped.

The result is one `marshal` blob (the child is svtree's own code, forked from this
process: the data it sends is ours): the plan as `plan.to_dict`, and the definition files
it read, for the next compile's cache; or the rendered problems of an invalid tree; or why
it could not compile.
"""

from __future__ import annotations

import fcntl
import marshal
import os
import traceback
from dataclasses import dataclass
from typing import Callable

from svtree.core.helper import Helper
from svtree.errors import PlanFileError
from svtree.plan import Plan, from_dict, to_dict

MAX_RESULT = 64 << 20  # bytes: a plan of 5,000 services is about 4 MB
CACHE_BUDGET = 16 << 20  # bytes of file content handed back for the next compile
CHILD_NAME = b"svtree-compile"
F_SETPIPE_SZ = 1031
PIPE_SIZE = 1 << 20  # fewer wake-ups of the core for a large plan (best effort)


@dataclass(frozen=True)
class Outcome:
    """What a compile gave: a plan (and the cache for the next compile), or the rendered
    problems of an invalid tree (`no_tree`: the tree's directory, when it is missing), or
    `error`: why there is no answer (deadline, size, the child died, an unexpected error)."""

    plan: "Plan | None" = None
    cache: "dict | None" = None
    problems: "tuple[str, ...]" = ()
    no_tree: "str | None" = None
    error: "str | None" = None


def _budgeted(used: dict) -> dict:
    out, total = {}, 0
    for path, entry in used.items():
        total += len(entry[1][0])
        if total > CACHE_BUDGET:
            break
        out[path] = entry
    return out


def _compile(w: int, job: "Callable", cache: "dict | None") -> None:
    """The compile, in the child: the result goes to `w`."""
    from svtree.compiler.discover import NoTreeError
    from svtree.compiler.files import DefinitionFiles
    from svtree.errors import CompileError

    files = DefinitionFiles(cache)
    try:
        result = {"plan": to_dict(job(files)), "cache": _budgeted(files.used)}
    except NoTreeError as e:
        result = {"problems": [p.render() for p in e.problems], "no_tree": e.directory}
    except CompileError as e:
        result = {"problems": [p.render() for p in e.problems]}
    except PlanFileError as e:
        result = {"error": str(e)}
    except OSError as e:
        result = {"error": f"cannot read the tree: {e}"}
    except Exception:  # a bug: say where, on the one line the core logs
        result = {"error": "internal error while compiling: " + traceback.format_exc(limit=-3)}
    data = memoryview(marshal.dumps(result))
    while data:
        data = data[os.write(w, data):]


class Compilation:
    """One compile in a child process. `on_done(outcome)` is called once: with the result,
    or with an error when the child overran `timeout` seconds (None: no deadline) or
    MAX_RESULT, or ended without a result. `on_exit()` is called once the child has been
    reaped: `watch(pid, callback)` registers it with the reaper (Core.watch_child; the
    first compile runs before the core exists and hands what it registered over)."""

    def __init__(self, loop, watch: "Callable[[int, Callable[[int], None]], None]",
                 job: "Callable", cache: "dict | None", timeout: "float | None",
                 on_done: "Callable[[Outcome], None]",
                 on_exit: "Callable[[], None] | None" = None) -> None:
        self.loop = loop
        self.on_done: "Callable[[Outcome], None] | None" = on_done
        self.on_exit = on_exit
        self.chunks: "list[bytes]" = []
        self.size = 0
        self.timeout = timeout
        r, w = os.pipe()
        try:
            fcntl.fcntl(r, F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass
        try:
            self.helper = Helper(loop, watch, CHILD_NAME, [w], lambda: _compile(w, job, cache),
                                 timeout, on_overrun=self._overran, on_exit=self._exited)
        except OSError:
            os.close(r)
            raise
        finally:
            os.close(w)
        os.set_blocking(r, False)
        self.fd: "int | None" = r
        loop.add_reader(r, self._readable)

    def kill(self, reason: str) -> None:
        """Give up on this compile: SIGKILL the child, answer `reason`. The child is
        still reaped (and `on_exit` called) when it is gone; the core never waits for it."""
        self.helper.kill()
        self._finish(Outcome(error=reason))

    def _overran(self) -> None:
        self._finish(Outcome(error=f"compiling the tree took longer than {self.timeout:g} s "
                                   "(reload_timeout): a hung filesystem or a slow user lookup?"))

    def _readable(self) -> bool:
        """Take one read of the pipe (one per wake-up: a child cannot keep the loop here);
        at EOF, the answer. False when the pipe had nothing (EAGAIN) or is done."""
        if self.fd is None:
            return False
        try:
            data = os.read(self.fd, PIPE_SIZE)
        except BlockingIOError:
            return False
        except OSError as e:
            self._finish(Outcome(error=f"cannot read the compile's result: {e.strerror}"))
            return False
        if not data:
            self._finish(self._decode())
            return False
        self.size += len(data)
        self.chunks.append(data)
        if self.size > MAX_RESULT:
            self.kill(f"the compiled plan is larger than {MAX_RESULT >> 20} MiB")
            return False
        return True

    def _decode(self) -> Outcome:
        try:
            result = marshal.loads(b"".join(self.chunks))
            if not isinstance(result, dict):
                raise ValueError(type(result).__name__)
        except (EOFError, ValueError, TypeError):
            return Outcome(error="the compile process ended without a result")
        if "plan" in result:
            try:
                return Outcome(plan=from_dict(result["plan"]), cache=result["cache"])
            except (KeyError, TypeError, ValueError, PlanFileError) as e:  # a bug of ours
                return Outcome(error=f"the compile's plan cannot be read: {e!r}")
        if "problems" in result:
            return Outcome(problems=tuple(result["problems"]), no_tree=result.get("no_tree"))
        return Outcome(error=result.get("error") or "the compile process gave no answer")

    def _finish(self, outcome: Outcome) -> None:
        if self.fd is not None:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = None
        self.chunks = []
        done, self.on_done = self.on_done, None
        if done is not None:
            done(outcome)

    def _exited(self, status: int) -> None:
        # Reaped before the loop saw its EOF: what it wrote is in the pipe (at most the
        # pipe's size, since it is gone).
        while self._readable():
            pass
        if self.on_done is not None:
            self._finish(self._decode())
        if self.on_exit is not None:
            self.on_exit()
