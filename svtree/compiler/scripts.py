"""Checks of `run` and `finish`: present, executable, and startable by execve.

Catches at compile time what would otherwise be a service stuck in a restart loop with a
cryptic "bad interpreter" or "Exec format error": CRLF line endings, a #! interpreter
that is not installed (notably s6-overlay's with-contenv), `#!/usr/bin/env prog` with
prog missing from PATH, and files that are neither a #! script nor a binary.
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat

from svtree.compiler.files import DefinitionFiles, Refused
from svtree.errors import Problem, display_path

ELF_MAGIC = b"\x7fELF"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ScriptChecker:
    """Checks scripts; caches what it learns about interpreters for one compile. Scripts
    are read through `files` (at most files.MAX_BYTES each: scripts are small; a large
    file is a binary and only its head matters)."""

    def __init__(self, files: DefinitionFiles) -> None:
        self.files = files
        self._interpreters: "dict[str, str | None]" = {}  # path -> why unusable, or None
        self._on_path: "dict[tuple[str, str], bool]" = {}

    def check(self, path: str, required: bool, env_path: "str | None") -> "list[Problem]":
        """Problems with the script at `path` (`run` when required, else `finish`).

        `env_path` is the PATH the service will see (its `environment`, else svtree's own).
        """
        name = os.path.basename(path)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            if os.path.islink(path):
                return [Problem(path, f"is a broken symlink (to {os.readlink(path)})",
                                hint="point it at an existing file")]
            if not required:
                return []
            return [Problem(path, "missing: every service needs a run script",
                            hint=f"create an executable file \"{name}\" that execs the service, "
                                 "e.g. #!/bin/sh then exec mydaemon --foreground")]
        except OSError as e:
            return [Problem(path, f"cannot be inspected: {e.strerror}")]
        if not stat.S_ISREG(st.st_mode):
            return [Problem(path, "must be a file", hint=f"{name} is run as a program")]
        problems = []
        if not st.st_mode & 0o111:
            problems.append(Problem(path, "is not executable",
                                    hint=f"make it executable: chmod +x {display_path(path)}"))
        try:
            head = self.files.read(path).data
        except (OSError, Refused):
            # Unreadable to us (another owner, mode 0700): execve may still work for its user.
            # (Refused: replaced by a FIFO since the stat above; the next compile says so.)
            return problems
        problems += self._check_content(path, head, env_path)
        return problems

    def _check_content(self, path: str, data: bytes, env_path: "str | None") -> "list[Problem]":
        if data.startswith(ELF_MAGIC):
            return []
        problems = []
        if b"\0" not in data[:8192]:
            problems += _crlf(path, data)
        if not data.startswith(b"#!"):
            if not data.strip():
                problems.append(Problem(path, "is empty", hint="start it with #!/bin/sh"))
            else:
                problems.append(Problem(
                    path, "is neither a #! script nor a binary, so it cannot be executed", line=1,
                    hint="start it with #!/bin/sh (or the interpreter it needs)",
                ))
            return problems
        first = data.split(b"\n", 1)[0][2:].rstrip(b"\r")
        problems += self._check_shebang(path, os.fsdecode(first).strip(), env_path)
        return problems

    def _check_shebang(self, path: str, line: str, env_path: "str | None") -> "list[Problem]":
        if not line:
            return [Problem(path, "has an empty #! line", line=1, hint="write #!/bin/sh")]
        # The kernel splits a #! line into the interpreter and at most one argument.
        interpreter, _, argument = line.partition(" ")
        argument = argument.strip()
        if not os.path.isabs(interpreter):
            # execve resolves it against the cwd, which is the service directory.
            interpreter = os.path.join(os.path.dirname(path), interpreter)
        why = self._unusable(interpreter)
        if why:
            if os.path.basename(interpreter) == "with-contenv":
                replacement = _without_contenv(argument, env_path)
                return [Problem(
                    path, f"#! interpreter {interpreter} (s6-overlay's with-contenv) {why}: "
                          f"make line 1 {replacement}", line=1,
                    hint="svtree passes the container environment to services already: change the "
                         "shebang to #!/bin/sh (or the shell the script needs)",
                )]
            return [Problem(path, f"#! interpreter {interpreter} {why}", line=1,
                            hint="install it in the image or fix the path in the #! line")]
        if os.path.basename(interpreter) == "env" and argument:
            program = _env_program(argument)
            if program and not self._found(program, env_path or os.environ.get("PATH") or DEFAULT_PATH):
                where = "does not exist" if "/" in program else "is not found on PATH"
                return [Problem(path, f"#! interpreter {program} (run by {interpreter}) {where}",
                                line=1, hint="install it in the image or fix the #! line")]
        return []

    def _unusable(self, interpreter: str) -> "str | None":
        if interpreter not in self._interpreters:
            why = None
            try:
                st = os.stat(interpreter)
            except OSError:
                why = "does not exist"
            else:
                if not stat.S_ISREG(st.st_mode):
                    why = "is not a file"
                elif not st.st_mode & 0o111:
                    why = "is not executable"
            self._interpreters[interpreter] = why
        return self._interpreters[interpreter]

    def _found(self, program: str, search: str) -> bool:
        key = (program, search)
        if key not in self._on_path:
            if "/" in program:
                self._on_path[key] = self._unusable(program) is None
            else:
                self._on_path[key] = shutil.which(program, path=search) is not None
        return self._on_path[key]


def _crlf(path: str, data: bytes) -> "list[Problem]":
    if b"\r\n" not in data:
        return []
    line = data[: data.index(b"\r\n")].count(b"\n") + 1
    shown = display_path(path)
    return [Problem(path, "has Windows (CRLF) line endings", line=line,
                    hint=f"convert it with dos2unix {shown} or sed -i 's/\\r$//' {shown}")]


def check_command_file(path: str, required: bool, files: DefinitionFiles) -> "list[Problem]":
    """An s6-rc oneshot's `up` (required) or `down`: a command line that execlineb reads,
    not a program, so it needs no #! line and no executable bit."""
    name = os.path.basename(path)
    try:
        data = files.read(path).data
    except FileNotFoundError:
        if not required:
            return []
        return [Problem(path, f"missing: an s6-rc oneshot needs an {name} file",
                        hint="write in it the command line to run, e.g. the path of a script")]
    except Refused as e:
        if e.kind == "a directory":
            return [Problem(path, "must be a file", hint=f"{name} holds a command line")]
        return [Problem(path, e.message, hint=e.hint)]
    except OSError as e:
        return [Problem(path, f"cannot be read: {e.strerror}")]
    if b"\0" in data:
        return [Problem(path, "is not a command line (it holds NUL bytes)",
                        hint=f"write in {name} the command to run, e.g. the path of a script")]
    return _crlf(path, data)


def _without_contenv(argument: str, env_path: "str | None") -> str:
    """The #! line a `#!/usr/bin/with-contenv PROG ARGS` script should have: #!PATH-OF-PROG ARGS.

    with-contenv only loads s6-overlay's saved container environment and execs the rest;
    svtree hands every service its own environment, so the program can run directly.
    """
    words = argument.split()
    if not words:
        return "#!/bin/sh"
    program, rest = words[0], words[1:]
    if "/" not in program:
        found = shutil.which(program, path=env_path or os.environ.get("PATH") or DEFAULT_PATH)
        if found is None:
            # Not installed here (compiled outside the image?): let env find it at run time;
            # more than one word after env needs its -S.
            return "#!/usr/bin/env " + ("-S " if rest else "") + " ".join([program, *rest])
        program = found
    return "#!" + " ".join([program, *rest])


def _env_program(argument: str) -> "str | None":
    """The program `env` would run, from the rest of a `#!/usr/bin/env ...` line."""
    try:
        words = shlex.split(argument)
    except ValueError:
        words = argument.split()
    i = 0
    while i < len(words):
        word = words[i]
        if word in ("-S", "--split-string"):
            i += 1
            continue
        if word.startswith("-S"):  # -Sprog args
            words[i] = word[2:]
            continue
        if word in ("-u", "--unset", "-C", "--chdir"):
            i += 2
            continue
        if word.startswith("-") or "=" in word:
            i += 1
            continue
        return word
    return None
