"""Run scripts for imported services: /bin/sh that sets things up, then execs the command.

A word of the command is a tuple of pieces: literal text (quoted with shlex.quote, so
any byte but NUL survives the shell unchanged) and `Deferred` shell expressions that the
shell expands when `run` starts (`${PORT?is not set}`, `$(uname -n)`), each inside
double quotes so that it stays one word whatever its value.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

SHEBANG = "#!/bin/sh"
# The shell honcho and foreman run a Procfile command with (Popen(shell=True), Ruby's spawn).
SHELL = "/bin/sh"


@dataclass(frozen=True)
class Deferred:
    """Shell text expanded when `run` starts, e.g. `${PORT?is not set}`."""

    shell: str


Piece = "str | Deferred"
Word = "tuple[str | Deferred, ...]"


def literal(text: str) -> "tuple[str]":
    return (text,)


def quote_word(word) -> str:
    """One shell word that expands to exactly the pieces, concatenated."""
    out = []
    for piece in word:
        if isinstance(piece, Deferred):
            out.append(f'"{piece.shell}"')
        elif piece:
            out.append(shlex.quote(piece))
    return "".join(out) or "''"


# Where a stream of the service goes, in terms of the fds svtree hands `run`:
STDOUT, STDERR, NULL = "stdout", "stderr", "null"
_FD = {STDOUT: "1", STDERR: "2"}


def redirection(stdout: str, stderr: str) -> "str | None":
    """The `exec` line that sends fd 1 to `stdout` and fd 2 to `stderr` (each STDOUT,
    STDERR or NULL, meaning svtree's fd 1, svtree's fd 2, /dev/null), or None."""
    if (stdout, stderr) == (STDOUT, STDERR):
        return None
    if (stdout, stderr) == (STDERR, STDOUT):
        return "exec 3>&1 1>&2 2>&3 3>&-"
    def one(fd: str, target: str) -> "str | None":
        if target == NULL:
            return f"{fd}>/dev/null"
        return None if _FD[target] == fd else f"{fd}>&{_FD[target]}"
    # An fd that takes the other's original target goes first, before the other moves.
    order = (("2", stderr), ("1", stdout)) if stderr == STDOUT else (("1", stdout), ("2", stderr))
    parts = [p for p in (one(fd, target) for fd, target in order) if p]
    return "exec " + " ".join(parts)


def run_script(*, comment: "list[str]", exec_words: "list", umask: "int | None" = None,
               directory=None, exports: "list[tuple[str, object]]" = (),
               stdout: str = STDOUT, stderr: str = STDERR) -> str:
    """The text of a run script: comments, umask, cd, exports, redirections, exec.

    `directory` is a Word (or None: stay in the service directory); a cd that fails ends
    run with 127, as supervisord's child does when its chdir fails.
    """
    lines = [SHEBANG, *(f"# {line}" for line in comment)]
    if umask is not None:
        lines.append(f"umask {umask:03o}")
    if directory is not None:
        lines.append(f"cd {quote_word(_not_an_option(directory))} || exit 127")
    for name, word in exports:
        lines.append(f"export {name}={quote_word(word)}")
    redirect = redirection(stdout, stderr)
    if redirect:
        lines.append(redirect)
    lines.append("exec " + " ".join(quote_word(w) for w in exec_words))
    return "\n".join(lines) + "\n"


def _not_an_option(word):
    """A relative directory that starts with "-" would be read as an option by cd."""
    first = word[0] if word else ""
    if isinstance(first, str) and first.startswith("-"):
        return ("./" + first, *word[1:])
    return word


def is_shell_name(name: str) -> bool:
    """A name the shell can expand and export: [A-Za-z_][A-Za-z0-9_]*."""
    return bool(name) and (name[0].isalpha() or name[0] == "_") and name.isascii() \
        and all(c.isalnum() or c == "_" for c in name)
