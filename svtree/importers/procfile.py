"""Procfiles (honcho, foreman) and their .env files, as services.

The grammar is the one honcho and foreman share: a line `NAME: COMMAND`, NAME made of
letters, digits, `_` and `-` (the regex both use is `^([A-Za-z0-9_-]+):\\s*(.+)$`);
every other line (comments, blank lines, anything else) is ignored. Both run COMMAND
with `/bin/sh -c`, in the Procfile's directory, with their environment plus the .env
file plus PORT: the base port (honcho's and foreman's: the .env file's PORT, else the
environment's PORT, else 5000) + 100 per line before it. When one process exits, both
stop all the others and exit.

So each line becomes a service whose run execs `/bin/sh -c COMMAND` after a `cd`, with
`critical = true` and `restart = "never"` (one exit ends the tree, as it ended honcho)
and `stop_timeout = 5.0` (their SIGTERM-to-SIGKILL wait).

.env files are read as foreman reads them: `KEY=value` lines (KEY letters, digits and
`_`, nothing around `=`); a value in single quotes is taken as it is, one in double
quotes has `\\n` made a newline and other backslash escapes removed; other lines are
ignored. (honcho splits the line into shell-like tokens instead; the two agree on
`KEY=value`, `KEY="a b"` and `KEY='a b'`, the forms .env files use.)
"""

from __future__ import annotations

import os
import re

from svtree.errors import Problem, display_path
from svtree.importers import script
from svtree.importers.model import (Conversion, ImportFailed, Note, Service, merge_notes, read_source,
                                    service_name)
from svtree.importers.script import Deferred

LINE = re.compile(r"^([A-Za-z0-9_-]+):\s*(.+)$")
ENV_LINE = re.compile(r"\A([A-Za-z_0-9]+)=(.*)\Z")
_INI_SECTION = re.compile(r"^\s*\[[^]]+\]\s*$")
DEFAULT_PORT = 5000
PORT_STEP = 100
STOP_TIMEOUT = 5.0  # honcho's KILL_WAIT and foreman's default --timeout


def _ignored(path: str, number: int, line: str, notes: "list[Note]", why: str) -> None:
    """A line honcho or foreman skip silently: noted, unless blank or a comment."""
    text = line.strip()
    if text and not text.startswith("#"):
        shown = text if len(text) <= 40 else text[:39] + "…"
        notes.append(Note(shown, f"{display_path(path)}:{number}", why))


def read_env(path: str, notes: "list[Note]") -> "dict[str, str]":
    """A .env file as foreman reads it; lines it ignores are noted."""
    values: "dict[str, str]" = {}
    for number, line in enumerate(read_source(path).replace("\r\n", "\n").split("\n"), start=1):
        m = ENV_LINE.match(line)
        if not m:
            _ignored(path, number, line, notes, "ignored: not KEY=value (foreman ignores such lines too)")
            continue
        key, value = m.group(1), m.group(2)
        single = re.match(r"\A'(.*)'\Z", value, re.S)
        double = re.match(r'\A"(.*)"\Z', value, re.S)
        if single:
            value = single.group(1)
        elif double:
            value = re.sub(r"\\(.)", r"\1", double.group(1).replace("\\n", "\n"), flags=re.S)
        values[key] = value
    return values


def convert(path: str, env_files: "list[str] | None" = None, cwd: "str | None" = None,
            port: "int | None" = None) -> Conversion:
    """Read a Procfile (and .env files) into services. Raises ImportFailed.

    `env_files`: None means the `.env` beside the Procfile, if there is one (what honcho
    and foreman read by default). `cwd`: where the commands run (default: the Procfile's
    directory, made absolute). `port`: the base port (default: the .env's PORT, else
    the environment's PORT when the service starts, else 5000).
    """
    notes: "list[Note]" = []
    entries = _entries(path, notes)
    here = os.path.dirname(os.path.abspath(path))
    if env_files is None:
        default_env = os.path.join(here, ".env")
        env_files = [default_env] if os.path.isfile(default_env) else []
    env: "dict[str, str]" = {}
    for env_file in env_files:
        env.update(read_env(env_file, notes))
    base: "int | None" = port
    if base is None and "PORT" in env:
        try:
            base = int(env["PORT"])
        except ValueError:
            raise ImportFailed([Problem(env_files[-1], f'PORT must be a port number, not "{env["PORT"]}"')]) \
                from None
    env.pop("PORT", None)
    if cwd is None:
        cwd = here
        notes.append(Note("(working directory)", display_path(path), f"commands run in {here}, the "
                          "Procfile's directory here; if the app has another path in the image, "
                          "import with --cwd PATH"))
    services = []
    names_used: "set[str]" = set()
    for index, (name, command, number) in enumerate(entries):
        service = service_name(name)
        if service != name:
            notes.append(Note(name, f"{display_path(path)}:{number}", f"is the service {service!r} "
                              "(svtree names start with a letter or digit)"))
        if service in names_used:
            raise ImportFailed([Problem(path, f'"{name}" would be the service "{service}" twice', line=number,
                                        hint="rename one of them")])
        names_used.add(service)
        services.append(_service(path, service, name, command, number, cwd, env, base, PORT_STEP * index))
    return Conversion(display_path(path), "procfile", tuple(services), merge_notes(notes))


def _entries(path: str, notes: "list[Note]") -> "list[tuple[str, str, int]]":
    """(name, command, line number) of each process line; other lines noted. Raises
    ImportFailed for an empty command, a name given twice, or a file with no process."""
    text = read_source(path)
    problems: "list[Problem]" = []
    entries: "list[tuple[str, str, int]]" = []
    seen: "dict[str, int]" = {}
    for number, line in enumerate(text.splitlines(), start=1):
        m = LINE.match(line)
        if not m:
            _ignored(path, number, line, notes,
                     "ignored: not `name: command` (honcho and foreman ignore it too)")
            continue
        name, command = m.group(1), m.group(2)
        if not command.strip():
            problems.append(Problem(path, f"{name}: has no command", line=number))
        elif name in seen:
            problems.append(Problem(path, f'"{name}" is already defined on line {seen[name]}', line=number,
                                    hint="process names must be unique within a Procfile, as honcho requires"))
        else:
            seen[name] = number
            entries.append((name, command, number))
    if not entries and not problems:
        looks_ini = any(_INI_SECTION.match(line) for line in text.splitlines())
        raise ImportFailed([Problem(path, "not a Procfile: no `name: command` line", hint=(
            f"it looks like a supervisord config: svtree import supervisord {display_path(path)}"
            if looks_ini else "a Procfile line is `web: gunicorn app:app`"))])
    if problems:
        raise ImportFailed(problems)
    return entries


def _service(path: str, service: str, name: str, command: str, number: int, cwd: str,
             env: "dict[str, str]", base: "int | None", offset: int) -> Service:
    """One process line as a service; its PORT is the base port + `offset`."""
    environment = dict(env)
    exports = []
    if base is not None:
        environment["PORT"] = str(base + offset)
    else:
        # honcho and foreman take the base from the environment they start in: so does run.
        base_shell = f"${{PORT:-{DEFAULT_PORT}}}"
        shell = f"$(( {base_shell} + {offset} ))" if offset else base_shell
        exports.append(("PORT", (Deferred(shell),)))
    run = script.run_script(
        comment=[f"svtree import procfile: {name}, line {number} of {display_path(path)}",
                 "honcho and foreman run the command with /bin/sh -c"],
        exec_words=[(script.SHELL,), ("-c",), (command,)],
        directory=(cwd,), exports=exports)
    settings = [("critical", True), ("restart", "never"), ("stop_timeout", STOP_TIMEOUT)]
    if environment:
        settings.append(("environment", environment))
    return Service(name=service, run=run, settings=tuple(settings))
