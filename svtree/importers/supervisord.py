"""supervisord's INI files, read the way supervisord 4 reads them, as services.

The grammar is supervisord's: Python's RawConfigParser with `;` and `#` starting inline
comments (after whitespace), `=` or `:` between key and value, indented continuation
lines, keys folded to lower case, a [DEFAULT] section seen by every section, and a
repeated section merged into the first (later keys win). On top of it, supervisord's own
steps, in its order:

- `[include] files =`: whitespace-separated globs, relative to the main file's directory,
  each glob's matches read in sorted order; after each file, `%(here)s` in every value
  read so far becomes that file's directory (text replacement). Included files cannot
  include: an [include] section in one is not followed.
- values are then expanded with Python's `%` operator over a table of names:
  `here`, `host_node_name`, `ENV_X` everywhere; in a program also `program_name`,
  `group_name`, and, for the keys read per process (command, environment, directory,
  the log files, process_name), `process_num` and `numprocs`. `%%` is a literal `%`.
- `environment` is `KEY=val,KEY2="val, with comma"`, tokenized as supervisord does
  (non-POSIX shlex with `/.+-():` as word characters, quotes stripped).
- `command` is split with shlex (POSIX rules, no shell) and exec'd: `run` execs the same
  words, each quoted.

One thing is deliberately different: `%(ENV_X)s` of a variable the config does not set
itself is supervisord's environment at start, so in `command`, `environment` and
`directory` it stays a variable that the run script expands when the service starts
(`"${X?is not set}"`), instead of the importing shell's value. Elsewhere (names, numbers,
user, log files) it is expanded now, from this environment.
"""

from __future__ import annotations

import ast
import configparser
import glob
import io
import json
import os
import platform
import re
import secrets
import shlex
from dataclasses import dataclass
from typing import Any, Callable

from svtree.compiler.settings import did_you_mean
from svtree.errors import Problem, display_path
from svtree.importers import script
from svtree.importers.model import (Conversion, ImportFailed, Note, Service, merge_notes, read_source,
                                    service_name)
from svtree.importers.script import NULL, STDERR, STDOUT, Deferred
from svtree.signames import parse_signal, signal_name

# --- what each key becomes: one table, also the README's ----------------------------------


@dataclass(frozen=True)
class Key:
    name: str
    default: str  # supervisord's default, as written in its docs
    becomes: str  # what svtree does with it (README)


PROGRAM_KEYS: "tuple[Key, ...]" = (
    Key("command", "(required)", "`run` execs it: split into words as supervisord splits it "
        "(shlex, no shell), each word quoted"),
    Key("process_name", "%(program_name)s", "the service's name (a character svtree does not allow in "
        "names becomes `-`; two processes of the same name in different groups become GROUP.NAME)"),
    Key("numprocs", "1", "one service per process"),
    Key("numprocs_start", "0", "the first `%(process_num)s`"),
    Key("priority", "999", "start and stop order, as `depends_on`: each program depends on the "
        "programs of the next lower priority (not on `autostart=false`, `autorestart=false` or "
        "`startsecs=0` one-off ones)"),
    Key("autostart", "true", "`false`: a `down` file"),
    Key("startsecs", "1", "`restart_delay` (a program that dies sooner waits that long before its "
        "restart, doubling); 0 keeps svtree's 1 s"),
    Key("startretries", "3", "noted: svtree never gives up, it waits up to `restart_delay_max`"),
    Key("autorestart", "unexpected", "`restart`: `true` always, `false` never, `unexpected` "
        "on-failure (see exitcodes)"),
    Key("exitcodes", "0", "with `autorestart=unexpected`: exit 0 expected is `restart = "
        "\"on-failure\"`; other expected codes get a `finish` that exits 125 for them (the "
        "service stays down); without 0, `restart = \"always\"`"),
    Key("stopsignal", "TERM", "`stop_signal`"),
    Key("stopwaitsecs", "10", "`stop_timeout`"),
    Key("stopasgroup", "false", "noted when true: svtree sends `stop_signal` to the main process, "
        "then to what it left behind"),
    Key("killasgroup", "false", "svtree's SIGKILL always reaches the whole process group (noted when "
        "false)"),
    Key("user", "(supervisord's)", "`user`; without it, `[supervisord] user`"),
    Key("directory", "(supervisord's)", "`cd DIR` in `run` (else `--cwd DIR`, else the service "
        "directory)"),
    Key("umask", "(supervisord's)", "`umask` in `run`"),
    Key("environment", "", "`environment` (after `[supervisord] environment`); a value with "
        "`%(ENV_X)s` is exported by `run` instead"),
    Key("redirect_stderr", "false", "`exec 2>&1` in `run`"),
    Key("stdout_logfile", "AUTO", "`/dev/stdout`, `/dev/fd/1`: svtree's output (`NAME | line`); "
        "`/dev/stderr`: `exec 1>&2`; `NONE`, `/dev/null`: `exec 1>/dev/null`; a file or AUTO: "
        "svtree's output, noted"),
    Key("stderr_logfile", "AUTO", "the same, for stderr"),
    Key("stdout_logfile_maxbytes", "50MB", "noted when the log is a file"),
    Key("stdout_logfile_backups", "10", "noted when the log is a file"),
    Key("stdout_capture_maxbytes", "0", "noted (event listeners)"),
    Key("stdout_events_enabled", "false", "noted (event listeners)"),
    Key("stdout_syslog", "false", "noted when true"),
    Key("stderr_logfile_maxbytes", "50MB", "noted when the log is a file"),
    Key("stderr_logfile_backups", "10", "noted when the log is a file"),
    Key("stderr_capture_maxbytes", "0", "noted (event listeners)"),
    Key("stderr_events_enabled", "false", "noted (event listeners)"),
    Key("stderr_syslog", "false", "noted when true"),
    Key("serverurl", "AUTO", "noted: `svtree ctl` finds svtree's socket itself"),
)
PROGRAM_KEY_NAMES = tuple(k.name for k in PROGRAM_KEYS)

# [supervisord]: environment and user carry over; the rest is about supervisord itself.
_DAEMON_ONLY = ("applies only when supervisord daemonizes (not with -n or nodaemon=true, as in a "
                "container); svtree never daemonizes: write `{}` in a run script if a service needs it")
SUPERVISORD_KEYS: "dict[str, str | None]" = {
    "environment": None,  # every program's environment, under its own
    "user": None,  # every program's user, unless it sets one
    "nodaemon": None,  # svtree always runs in the foreground
    "logfile": "svtree's own events go to stderr (--log-format json for log collectors)",
    "logfile_maxbytes": "svtree's own events go to stderr; the container engine rotates logs",
    "logfile_backups": "svtree's own events go to stderr; the container engine rotates logs",
    "loglevel": "svtree logs its events at info and above",
    "pidfile": "svtree writes no pid file: `svtree ctl status` shows every pid",
    "umask": _DAEMON_ONLY.format("umask 022"),
    "directory": _DAEMON_ONLY.format("cd DIR"),
    "minfds": "svtree does not raise limits: `docker run --ulimit nofile=N`, or `ulimit -n N` in run",
    "minprocs": "svtree does not raise limits: `docker run --ulimit nproc=N`, or `ulimit -u N` in run",
    "nocleanup": "svtree keeps no log files to clean up",
    "childlogdir": "service output goes to svtree's stdout (`NAME | line`), not to files",
    "strip_ansi": "svtree passes service output through as it is",
    "identifier": "svtree ctl needs no identifier",
    "silent": "svtree's own events go to stderr; service output to stdout",
}
# Sections other than [supervisord], [program:x], [group:x] and [include]: key "[name]".
SECTION_NOTES: "dict[str, str]" = {
    "unix_http_server": "`svtree ctl` talks to svtree over its own socket (--socket, $SVTREE_SOCKET)",
    "inet_http_server": "svtree has no web interface or TCP control: `svtree ctl` uses a unix socket",
    "supervisorctl": "use `svtree ctl` (status, start, stop, restart, signal, reload, check; `logs -f` for `tail -f`)",
    "rpcinterface": "svtree has no XML-RPC interface: `svtree ctl --json status` for scripts",
    "ctlplugin": "svtree ctl has no plugins",
    "eventlistener": "svtree has no event protocol: `critical = true` stops the container when a "
                     "service ends for good; `ctl check` for health",
    "fcgi-program": "svtree opens no sockets for services: run the FastCGI server listening on its "
                    "own socket (php-fpm does), as a program",
}
_NAMED_SECTIONS = ("rpcinterface", "ctlplugin", "eventlistener", "fcgi-program")  # [KIND:NAME]


def supervisord_markdown() -> str:
    """The README's key tables, generated from the tables above."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    out = ["| `[program:x]` key | supervisord's default | in svtree |", "| --- | --- | --- |"]
    for k in PROGRAM_KEYS:
        default = f"`{k.default}`" if k.default else ""
        out.append(f"| `{k.name}` | {default} | {cell(k.becomes)} |")
    rows = [("[supervisord] environment", "every program's `environment`, under the program's own"),
            ("[supervisord] user", "every program's `user`, unless it sets one"),
            ("[supervisord] nodaemon", "nothing to do: svtree always runs in the foreground")]
    rows += [(f"[supervisord] {key}", f"noted: {text}") for key, text in SUPERVISORD_KEYS.items()
             if text is not None]
    rows += [("[group:x]", "names its programs' group (`%(group_name)s`; GROUP.NAME when two processes "
                           "share a name); its `priority` orders them; noted"),
             ("[include]", "read: `files` globs, relative to the main file")]
    rows += [(f"[{name}:x]" if name in _NAMED_SECTIONS else f"[{name}]", f"noted: {text}")
             for name, text in SECTION_NOTES.items()]
    out += ["", "| other section or key | in svtree |", "| --- | --- |"]
    out += [f"| `{key}` | {cell(text)} |" for key, text in rows]
    return "\n".join(out) + "\n"


# --- supervisord's value types ------------------------------------------------------------

_TRUE = ("yes", "true", "on", "1")
_FALSE = ("no", "false", "off", "0")


class Bad(ValueError):
    """A value supervisord would refuse; the message completes "[section] key: ..."."""


def integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise Bad(f'must be an integer, not "{text}"') from None


def boolean(text: str) -> bool:
    lowered = str(text).lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise Bad(f'must be true or false, not "{text}"')


def auto_restart(text: str) -> "str":
    """"always", "never" or "unexpected"."""
    lowered = text.lower()
    if lowered in _TRUE:
        return "always"
    if lowered in _FALSE:
        return "never"
    if lowered == "unexpected":
        return "unexpected"
    raise Bad(f'must be true, false or unexpected, not "{text}"')


def exit_codes(text: str) -> "tuple[int, ...]":
    if not text:
        return ()
    try:
        codes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise Bad(f'must be a list of exit codes like "0,2", not "{text}"') from None
    for code in codes:
        if not 0 <= code <= 255:
            raise Bad(f"exit codes are 0 to 255, not {code}")
    return codes


def octal(text: str) -> int:
    try:
        return int(text, 8)
    except ValueError:
        raise Bad(f'must be an octal number like 022, not "{text}"') from None


def stop_signal(text: str) -> int:
    try:
        return parse_signal(text)
    except ValueError as e:
        raise Bad(str(e)) from None


def process_name(text: str) -> str:
    name = str(text).strip()
    for character in " :/":
        if character in name:
            raise Bad(f'"{name}" has a "{character}", which supervisord does not allow in names')
    return name


def key_value_pairs(text: str) -> "dict[str, str]":
    """`KEY=val,KEY2="v, 2"` as supervisord reads it: non-POSIX shlex tokens, with
    `/.+-():` as word characters; every fourth token (the separator) is skipped unread,
    and quotes around a value are stripped."""
    lexer = shlex.shlex(text)
    lexer.wordchars += "/.+-():"
    try:
        tokens = list(lexer)
    except ValueError as e:
        raise Bad(f"cannot be read as KEY=value pairs: {e}") from None
    pairs: "dict[str, str]" = {}
    for i in range(0, len(tokens), 4):
        triple = tokens[i:i + 3]
        if len(triple) != 3 or triple[1] != "=":
            raise Bad(f'cannot be read as KEY=value pairs separated by commas: "{text}" '
                      '(quote values that hold spaces or commas: KEY="a, b")')
        pairs[triple[0]] = triple[2].strip("'\"")
    return pairs


# --- log file values --------------------------------------------------------------------

_STDOUT_FILES = ("/dev/stdout", "/dev/fd/1", "/proc/self/fd/1")
_STDERR_FILES = ("/dev/stderr", "/dev/fd/2", "/proc/self/fd/2")
AUTO, SYSLOG = "auto", "syslog"


def log_target(value: "str | None") -> str:
    """STDOUT, STDERR, NULL, AUTO, SYSLOG, or a file path."""
    if value is None:
        return AUTO
    lowered = value.lower()
    if lowered in ("none", "off") or value == "/dev/null":
        return NULL
    if lowered == "auto":
        return AUTO
    if lowered == "syslog":
        return SYSLOG
    if value in _STDOUT_FILES:
        return STDOUT
    if value in _STDERR_FILES:
        return STDERR
    return value


# --- reading the files ------------------------------------------------------------------


@dataclass(frozen=True)
class Place:
    file: str
    line: "int | None"

    def __str__(self) -> str:
        where = display_path(self.file)
        return f"{where}:{self.line}" if self.line is not None else where


def _parser() -> configparser.RawConfigParser:
    # supervisord's UnhosedConfigParser on Python 3: inline comments, non-strict.
    return configparser.RawConfigParser(inline_comment_prefixes=(";", "#"), strict=False)


_PROCFILE_LINE = re.compile(r"[A-Za-z0-9_-]+:\s*\S")
_INLINE_COMMENT = re.compile(r"\s[;#]")


def _line_places(path: str, text: str) -> "tuple[dict[str, int], dict[tuple[str, str], int]]":
    """Where each section header and each key is, in one file: the same line grammar as
    RawConfigParser (comments, continuation lines by indentation, `=` or `:`), so that
    messages can carry a line. A key given twice: its last line (the value that wins)."""
    sections: "dict[str, int]" = {}
    keys: "dict[tuple[str, str], int]" = {}
    section = None
    in_value_indent: "int | None" = None
    parser = _parser()
    for number, raw in enumerate(text.splitlines(), start=1):
        m = _INLINE_COMMENT.search(raw)
        line = raw[:m.start()] if m else raw
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        indent = len(line) - len(line.lstrip())
        if in_value_indent is not None and indent > in_value_indent:
            continue  # a continuation line of the value above
        header = parser.SECTCRE.match(stripped)
        if header:
            section = header.group("header")
            sections.setdefault(section, number)
            in_value_indent = None
            continue
        option = parser.OPTCRE.match(stripped)
        if option and section is not None:
            keys[(section, parser.optionxform(option.group("option").rstrip()))] = number
            in_value_indent = indent
    return sections, keys


def _unrepr(text: str) -> str:
    """configparser keeps a bad line as its repr()."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    return value if isinstance(value, str) else text


class _Reader:
    """The main file and its includes in one parser, as supervisord reads them."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.here = os.path.dirname(os.path.abspath(path))
        self.parser = _parser()
        self.section_places: "dict[str, Place]" = {}
        self.key_places: "dict[tuple[str, str], Place]" = {}
        self.texts: "list[str]" = []
        self.files: "list[str]" = []  # in the order read

    def place(self, section: str, key: "str | None" = None) -> Place:
        if key is not None and (section, key) in self.key_places:
            return self.key_places[(section, key)]
        if key is not None and ("DEFAULT", key) in self.key_places:
            return self.key_places[("DEFAULT", key)]
        return self.section_places.get(section, Place(self.path, None))

    def order(self, place: Place) -> "tuple[int, int]":
        """Sorts places as the files were read, then by line."""
        index = self.files.index(place.file) if place.file in self.files else len(self.files)
        return (index, place.line or 0)

    def own_keys(self, section: str) -> "list[str]":
        """Keys written in the section itself (not inherited from [DEFAULT])."""
        return [k for (s, k) in self.key_places if s == section]

    def read(self, path: str) -> "dict[str, int]":
        """Parse one more file into the parser; returns its sections (name -> line)."""
        text = read_source(path)
        try:
            self.parser.read_file(io.StringIO(text), source=path)
        except configparser.MissingSectionHeaderError as e:
            first = e.line.strip() if isinstance(e.line, str) else ""
            hint = ("it looks like a Procfile: svtree import procfile " + display_path(path)
                    if _PROCFILE_LINE.match(first) else "a supervisord config starts with a "
                    "[section] line, like [supervisord] or [program:NAME]")
            raise ImportFailed([Problem(path, "not a supervisord config: this line is outside any "
                                        "[section]", line=e.lineno, hint=hint)]) from None
        except configparser.ParsingError as e:
            raise ImportFailed([
                Problem(path, f"not INI syntax as supervisord reads it: {_unrepr(line).strip()!r}", line=number,
                        hint="a line is [section], key = value, a comment, or an indented "
                             "continuation of the value above")
                for number, line in e.errors]) from None
        except configparser.Error as e:
            raise ImportFailed([Problem(path, f"cannot be read as supervisord does: {e.message}")]) from None
        self.texts.append(text)
        self.files.append(path)
        sections, keys = _line_places(path, text)
        for section, line in sections.items():
            self.section_places.setdefault(section, Place(path, line))
        for key, line in keys.items():
            self.key_places[key] = Place(path, line)
        return sections

    def expand_here(self, here: str) -> None:
        """supervisord's own step after each file: `%(here)s` replaced as text, everywhere."""
        for section in self.parser.sections():
            for key, value in self.parser.items(section):
                if "%(here)s" in value:
                    self.parser.set(section, key, value.replace("%(here)s", here))


# --- expansion ----------------------------------------------------------------------------


class _Expander:
    """`text % names` as supervisord does, except that ENV_X of a variable the config does
    not set (and host_node_name) becomes a placeholder, for a run script to expand at start."""

    def __init__(self) -> None:
        self.deferred: "list[tuple[str, str]]" = []  # ("env", NAME) or ("host", "")
        self.config_env: "dict[str, str]" = {}  # [supervisord] environment: ENV_X known here
        self.avoid([])

    def avoid(self, texts: "list[str]") -> None:
        """Choose placeholders that appear in none of the config's texts. Letters and
        digits only: a placeholder must stay inside one word for both of supervisord's
        shlex readings (command, environment)."""
        nonce = secrets.token_hex(6)
        while any(nonce in t for t in texts):
            nonce = secrets.token_hex(6)
        self.prefix = f"svtreeimport{nonce}n"
        self.pattern = re.compile(re.escape(self.prefix) + r"(\d+)x")

    def placeholder(self, kind: str, name: str) -> str:
        entry = (kind, name)
        if entry not in self.deferred:
            self.deferred.append(entry)
        return f"{self.prefix}{self.deferred.index(entry)}x"

    def lookup(self, names: "dict[str, Any]", program_env: "dict[str, str] | None"):
        expander = self

        class Names:  # a mapping for `%`: supervisord's table of names
            def __getitem__(self, key: str) -> Any:
                if key in names:
                    return names[key]
                if key.startswith("ENV_"):
                    var = key[4:]
                    if program_env is not None and var in program_env:
                        return program_env[var]
                    if var in expander.config_env:
                        return expander.config_env[var]
                    return expander.placeholder("env", var)
                if key == "host_node_name":
                    return expander.placeholder("host", "")
                raise KeyError(key)

        return Names()

    def expand(self, text: str, names: "dict[str, Any]", program_env=None) -> str:
        """Raises Bad for an unknown name or a bad format, as supervisord refuses them (a
        bare `%s`, which supervisord fills with its whole table of names, is refused too)."""
        _check_percents(text)
        try:
            return text % self.lookup(names, program_env)
        except KeyError as e:
            name = e.args[0] if e.args else "?"
            close = did_you_mean(str(name), sorted(names) + ["host_node_name"])
            known = ", ".join(sorted(names) + ["host_node_name", "ENV_NAME"])
            raise Bad(f"%({name})s: no such name (supervisord knows {known})"
                      + (f"; {close}" if close else "")) from None
        except (ValueError, TypeError) as e:
            raise Bad(f"is badly formatted for supervisord's %-expansion: {e} (write %% for a "
                      "literal %)") from None

    def expand_plain(self, text: str, names: "dict[str, Any]") -> str:
        """[include] files, read before anything else: every name now, from this environment."""
        _check_percents(text)
        table = dict(names, host_node_name=_host_name())
        table.update({f"ENV_{k}": v for k, v in os.environ.items()})
        try:
            return text % table
        except KeyError as e:
            raise Bad(f"%({e.args[0]})s: no such name (here, host_node_name, or ENV_NAME of a "
                      "variable set in this environment)") from None
        except (ValueError, TypeError) as e:
            raise Bad(f"is badly formatted for supervisord's %-expansion: {e}") from None

    def has_deferred(self, text: str) -> bool:
        return bool(self.pattern.search(text))

    def entry(self, match: "re.Match[str]") -> "tuple[str, str]":
        return self.deferred[int(match.group(1))]


def _check_percents(text: str) -> None:
    if "%" in _KEYED.sub("", text):
        raise Bad("has a % that does not start %(name)s (write %% for a literal %)")


_KEYED = re.compile(r"%%|%\([^)]*\)")


def _host_name() -> str:
    return platform.node()


# --- the conversion -----------------------------------------------------------------------

# The keys supervisord reads once per program, before process_num exists (so they cannot
# use it): (field, key, supervisord's default, converter).
_PER_PROGRAM = (
    ("priority", "priority", "999", integer),
    ("autostart", "autostart", "true", boolean),
    ("restart", "autorestart", "unexpected", auto_restart),
    ("startsecs", "startsecs", "1", integer),
    ("startretries", "startretries", "3", integer),
    ("stop_signal", "stopsignal", "TERM", stop_signal),
    ("stopwaitsecs", "stopwaitsecs", "10", integer),
    ("stopasgroup", "stopasgroup", "false", boolean),
    ("killasgroup", "killasgroup", None, boolean),  # default: stopasgroup's value
    ("exitcodes", "exitcodes", "0", exit_codes),
    ("redirect_stderr", "redirect_stderr", "false", boolean),
    ("numprocs", "numprocs", "1", integer),
    ("numprocs_start", "numprocs_start", "0", integer),
    ("user", "user", None, None),
    ("umask", "umask", None, octal),
)


@dataclass(frozen=True)
class _Program:
    """A [program:x] section's per-program values."""

    section: str
    group: str
    group_priority: "int | None"
    priority: int
    autostart: bool
    restart: str  # "always", "never" or "unexpected"
    startsecs: int
    startretries: int
    stop_signal: int
    stopwaitsecs: int
    stopasgroup: bool
    killasgroup: bool
    exitcodes: "tuple[int, ...]"
    redirect_stderr: bool
    numprocs: int
    numprocs_start: int
    user: "str | None"
    umask: "int | None"

    @property
    def order(self) -> int:
        """What orders it among the others: its group's priority, in a [group:x]."""
        return self.group_priority if self.group_priority is not None else self.priority

    @property
    def waitable(self) -> bool:
        """Whether others may depend on it. A dependent waits for its dependency to be up,
        so a program that may end for good before its dependents start (autostart=false,
        autorestart=false, or a startsecs=0 one-off that exits as expected) would hold
        them back forever."""
        if not self.autostart or self.restart == "never":
            return False
        return not (self.restart == "unexpected" and self.startsecs == 0)


@dataclass(frozen=True)
class _Process:
    """One process of a program: what its run script needs, before names and order."""

    program: _Program
    name: str
    exec_words: "tuple[tuple[str | Deferred, ...], ...]"
    directory: "tuple[str | Deferred, ...] | None"
    exports: "tuple[tuple[str, tuple[str | Deferred, ...]], ...]"
    environment: "dict[str, str]"
    stdout: str
    stderr: str
    source: str


class _Converter:
    def __init__(self, path: str, cwd: "str | None") -> None:
        self.path = path
        self.cwd = cwd
        self.reader = _Reader(path)
        self.problems: "list[Problem]" = []
        self.notes: "list[tuple[tuple[int, int], Note]]" = []  # (place order, note)
        self.expander = _Expander()
        self.default_user: "str | None" = None

    # -- helpers

    def note(self, key: str, section: str, instead: str, at: "str | None" = None) -> None:
        """A row of the table: `key` of `section` (its line: that of key `at`, else of
        `key`, else the section's) and what svtree does instead."""
        place = self.reader.place(section, at if at is not None else key)
        note = Note(key, str(place) if key == f"[{section}]" else f"{place} [{section}]", instead)
        if all(note != n for _, n in self.notes):
            self.notes.append((self.reader.order(place), note))

    def problem(self, section: str, key: "str | None", message: str, hint: "str | None" = None) -> None:
        place = self.reader.place(section, key)
        label = f"[{section}] {key}" if key else f"[{section}]"
        self.problems.append(Problem(place.file, message, key=label, line=place.line, hint=hint))

    def raw(self, section: str, key: str) -> "str | None":
        return self.reader.parser.get(section, key, fallback=None)

    def value(self, section: str, key: str, default: "str | None", names: "dict[str, Any]",
              convert: "Callable[[str], Any] | None" = None, *, defer: bool = False,
              program_env: "dict[str, str] | None" = None) -> Any:
        """A key's value as supervisord computes it: the raw text (or the default),
        expanded, converted. Variables are expanded now, from this environment, unless
        `defer` (they stay placeholders). A problem is recorded and gives None."""
        text = self.raw(section, key)
        if text is None:
            text = default
        if text is None:
            return None
        try:
            text = self.expander.expand(text, names, program_env)
            if not defer:
                text = self.resolve_now(text, section, key)
            return convert(text) if convert else text
        except Bad as e:
            self.problem(section, key, str(e))
            return None

    def resolve_now(self, text: str, section: str, key: str) -> str:
        """Placeholders in a value needed now (a name, a number, a path): this
        environment's value, as supervisord would have taken its own."""
        def value(match: "re.Match[str]") -> str:
            kind, var = self.expander.entry(match)
            if kind == "host":
                self.note("%(host_node_name)s", section, f"expanded now to {_host_name()!r}, the name "
                          "of this machine, not the container's", at=key)
                return _host_name()
            if var in os.environ:
                self.note(f"%(ENV_{var})s", section, f"expanded now, from this environment, to "
                          f"{os.environ[var]!r} (command, environment and directory expand variables "
                          "when the service starts)", at=key)
                return os.environ[var]
            raise Bad(f"%(ENV_{var})s: {var} is not set in this environment, and svtree import "
                      f"needs its value now for {key} (set it, or write the value)")
        return self.expander.pattern.sub(value, text)

    def pieces(self, text: str, section: str, key: str) -> "tuple[str | Deferred, ...]":
        """A value with placeholders as run-script pieces: literal text, deferred shell."""
        out: "list[str | Deferred]" = []
        at = 0
        for match in self.expander.pattern.finditer(text):
            out.append(text[at:match.start()])
            kind, var = self.expander.entry(match)
            if kind == "host":
                out.append(Deferred("$(uname -n)"))
            elif script.is_shell_name(var):
                out.append(Deferred(f"${{{var}?is not set}}"))
            else:  # a name the shell cannot expand: its value now
                try:
                    out.append(self.resolve_now(match.group(0), section, key))
                except Bad as e:
                    self.problem(section, key, str(e))
            at = match.end()
        out.append(text[at:])
        return tuple(p for p in out if p != "")

    # -- the whole file

    def convert(self) -> Conversion:
        reader = self.reader
        reader.read(self.path)
        self.read_includes()
        sections = reader.parser.sections()
        if not any(_kind(s) for s in sections):
            raise ImportFailed([Problem(self.path, "not a supervisord config: no [supervisord] or "
                                        "[program:NAME] section", hint="svtree import supervisord reads "
                                        "supervisord's INI files")])
        self.expander.avoid(reader.texts)
        self.read_supervisord_section()
        groups = self.read_groups()
        processes: "list[_Process]" = []
        for section in sections:
            kind = _kind(section)
            if kind == "program":
                name = section.split(":", 1)[1]
                processes += self.program(section, *groups.get(name, (name.strip(), None)))
            elif kind in SECTION_NOTES:
                self.note(f"[{section}]", section, SECTION_NOTES[kind], at="")
            elif kind is None:
                self.note(f"[{section}]", section, "not a section supervisord knows: it ignores it too",
                          at="")
        if not self.problems:
            services = self.settle(processes)
        if self.problems:
            unique = list(dict.fromkeys(self.problems))  # numprocs repeats a program's problems
            raise ImportFailed(sorted(unique, key=lambda p: self.reader.order(Place(p.path, p.line))))
        notes = merge_notes([note for _, note in sorted(self.notes, key=lambda pair: pair[0])])
        return Conversion(display_path(self.path), "supervisord", tuple(services), notes)

    def read_includes(self) -> None:
        """supervisord's [include]: globs relative to the main file, each match read in
        sorted order, then its %(here)s replaced by its own directory."""
        reader, parser = self.reader, self.reader.parser
        if not parser.has_section("include"):
            return
        reader.expand_here(reader.here)
        files = parser.get("include", "files", fallback=None)
        if files is None:
            raise ImportFailed([Problem(self.path, "has an [include] section but no files = setting",
                                        line=reader.place("include").line,
                                        hint="files = conf.d/*.conf (globs, relative to this file)")])
        try:
            # Read before [supervisord]: ENV_X from this environment, as supervisord does.
            files = self.expander.expand_plain(files, {"here": reader.here})
        except Bad as e:
            place = reader.place("include", "files")
            raise ImportFailed([Problem(place.file, str(e), key="[include] files", line=place.line)]) from None
        for pattern in files.split():
            pattern = os.path.join(reader.here, pattern)
            matched = glob.glob(pattern)
            if not matched:
                self.note("files", "include", f"no file matches {display_path(pattern)}: supervisord warns "
                          "and goes on, and so does svtree import")
                continue
            for filename in sorted(matched):
                if "include" in reader.read(filename):
                    self.note("[include]", "include", f"in {display_path(filename)}: included files "
                              "cannot include others; supervisord does not follow it, nor does svtree "
                              "import", at="")
                reader.expand_here(os.path.abspath(os.path.dirname(filename)))

    def read_supervisord_section(self) -> None:
        if not self.reader.parser.has_section("supervisord"):
            return
        names = {"here": self.reader.here}
        env_text = self.value("supervisord", "environment", "", names, defer=True)
        if env_text:
            try:
                self.expander.config_env.update(key_value_pairs(env_text))
            except Bad as e:
                self.problem("supervisord", "environment", str(e))
        user = self.value("supervisord", "user", None, names)
        if user is not None and user not in ("root", "0"):
            self.default_user = user
        for key in self.reader.own_keys("supervisord"):
            if key not in SUPERVISORD_KEYS:
                hint = did_you_mean(key, list(SUPERVISORD_KEYS))
                self.note(key, "supervisord", "not a supervisord setting: supervisord ignores it, and "
                          "so does svtree import" + (f" ({hint})" if hint else ""))
            elif key == "nodaemon":
                if (self.raw("supervisord", key) or "").strip().lower() not in _TRUE:
                    self.note(key, "supervisord", "svtree always runs in the foreground, as "
                              "supervisord -n does")
            elif SUPERVISORD_KEYS[key] is not None:
                self.note(key, "supervisord", SUPERVISORD_KEYS[key])

    def read_groups(self) -> "dict[str, tuple[str, int | None]]":
        """Program name -> (group name, group priority), for programs in a [group:x]."""
        out: "dict[str, tuple[str, int | None]]" = {}
        parser = self.reader.parser
        for section in parser.sections():
            if _kind(section) != "group":
                continue
            try:
                group = process_name(section.split(":", 1)[1])
            except Bad as e:
                self.problem(section, None, str(e))
                continue
            names = {"here": self.reader.here}
            programs_text = self.value(section, "programs", None, names)
            priority = self.value(section, "priority", "999", names, integer)
            programs = [p.strip() for p in programs_text.split(",")] if programs_text else []
            for program in programs:
                if not parser.has_section(f"program:{program}"):
                    kind = "only an [fcgi-program:x]" if parser.has_section(f"fcgi-program:{program}") else "no"
                    self.problem(section, "programs", f"names {program!r}, but there is {kind} "
                                 f"[program:{program}] section")
                    continue
                out[program] = (group, priority)
            self.note(f"[{section}]", section, f"svtree has no groups: its programs ({', '.join(programs)}) "
                      "are services of their own (`svtree ctl restart` takes several names)", at="")
            for key in self.reader.own_keys(section):
                if key not in ("programs", "priority"):
                    self.note(key, section, "not a [group:x] setting: supervisord ignores it too")
        return out

    # -- one [program:x]

    def program(self, section: str, group: str, group_priority: "int | None") -> "list[_Process]":
        try:
            program_name = process_name(section.split(":", 1)[1])
        except Bad as e:
            self.problem(section, None, str(e))
            return []
        names: "dict[str, Any]" = {"here": self.reader.here, "program_name": program_name,
                                   "group_name": group}
        problems_before = len(self.problems)
        values: "dict[str, Any]" = {}
        for attr, key, default, convert in _PER_PROGRAM:
            if attr == "killasgroup":
                default = "true" if values.get("stopasgroup") else "false"
            before = len(self.problems)
            values[attr] = self.value(section, key, default, names, convert)
            if len(self.problems) > before and default is not None:
                # Go on with supervisord's default, to find the other problems too.
                values[attr] = convert(default) if convert else default
        template = self.raw(section, "process_name")
        if template is None:
            template = "%(program_name)s"
        program = _Program(section=section, group=group, group_priority=group_priority, **values)
        self.check_program(program, template)
        if program.numprocs < 1:
            self.note("numprocs", section, f"numprocs = {program.numprocs}: supervisord starts no "
                      "process of this program, and svtree import writes no service for it")
            return []
        self.program_notes(program)
        processes = []
        for number in range(program.numprocs_start, program.numprocs_start + program.numprocs):
            proc = self.process(program, dict(names, process_num=number, numprocs=program.numprocs),
                                template)
            if proc is not None:
                processes.append(proc)
        return processes if len(self.problems) == problems_before else []

    def check_program(self, program: _Program, template: str) -> None:
        """What supervisord refuses, and what svtree cannot take."""
        section = program.section
        if program.stopasgroup and not program.killasgroup:
            self.problem(section, "killasgroup", "cannot be false with stopasgroup = true (supervisord "
                         "refuses it)")
        if program.numprocs > 1 and "%(process_num)" not in template:
            self.problem(section, "process_name", "must hold %(process_num)s when numprocs > 1, as "
                         "supervisord requires", hint="process_name = %(program_name)s_%(process_num)02d")
        for key, value in (("stopwaitsecs", program.stopwaitsecs), ("startsecs", program.startsecs)):
            if value < 0:
                self.problem(section, key, f"must not be negative, not {value}")
        if program.stop_signal == 0:
            self.problem(section, "stopsignal", "0 sends no signal; svtree needs a real one",
                         hint="stopsignal = TERM")
        if self.raw(section, "command") is None:
            self.problem(section, None, "has no command = line (supervisord requires one)")
        for key in self.reader.own_keys(section):
            if key not in PROGRAM_KEY_NAMES:
                hint = did_you_mean(key, PROGRAM_KEY_NAMES)
                self.note(key, section, "not a supervisord program setting: supervisord ignores it, "
                          "and so does svtree import" + (f" ({hint})" if hint else ""))

    def program_notes(self, program: _Program) -> None:
        section, own = program.section, self.reader.own_keys(program.section)
        if "startretries" in own:
            self.note("startretries", section, "svtree never gives up on a service that keeps dying: "
                      "it waits restart_delay before each quick restart, doubling up to "
                      "restart_delay_max (30 s)")
        if program.startsecs == 0:
            self.note("startsecs", section, "startsecs = 0: svtree keeps restart_delay = 1.0 (a program "
                      "that dies within 1 s waits 1 s before its restart, doubling), so that a "
                      "crashing program does not restart in a busy loop")
        if program.stopasgroup:
            self.note("stopasgroup", section, "svtree sends stop_signal to the main process, then to "
                      "the processes it leaves behind; SIGKILL after stop_timeout reaches the whole "
                      "process group")
        elif "killasgroup" in own and not program.killasgroup:
            self.note("killasgroup", section, "svtree's SIGKILL after stop_timeout always reaches the "
                      "whole process group and what the service left behind")
        if "serverurl" in own and (self.raw(section, "serverurl") or "").strip().upper() != "AUTO":
            self.note("serverurl", section, "svtree sets no SUPERVISOR_SERVER_URL: programs that "
                      "call supervisorctl need `svtree ctl`")
        for stream in ("stdout", "stderr"):
            for key in (f"{stream}_capture_maxbytes", f"{stream}_events_enabled"):
                if key in own:
                    self.note(key, section, "svtree has no event listeners: output is only written "
                              "to svtree's stdout or stderr")

    def process(self, program: _Program, names: "dict[str, Any]", template: str) -> "_Process | None":
        """One process of a program, process_num known. None after a problem."""
        section = program.section
        problems_before = len(self.problems)
        env_text = self.value(section, "environment", "", names, defer=True)
        program_env: "dict[str, str]" = {}
        if env_text:
            try:
                program_env = key_value_pairs(env_text)
            except Bad as e:
                self.problem(section, "environment", str(e))
                return None

        def get(key: str, default: "str | None", convert=None, defer: bool = False) -> Any:
            # Keys read per process see the program's own environment as ENV_X too.
            return self.value(section, key, default, names, convert, defer=defer, program_env=program_env)

        directory = get("directory", None, defer=True)
        stdout_log, stderr_log = get("stdout_logfile", None), get("stderr_logfile", None)
        syslog = (get("stdout_syslog", "false", boolean), get("stderr_syslog", "false", boolean))
        command = get("command", None, defer=True)
        try:
            name = process_name(self.resolve_now(self.expander.expand(template, names, program_env),
                                                 section, "process_name"))
        except Bad as e:
            self.problem(section, "process_name", str(e))
        if len(self.problems) > problems_before or command is None:
            return None  # (a missing command is check_program's problem)
        try:
            words = shlex.split(command)  # supervisord's split: POSIX rules, no shell
        except ValueError as e:
            self.problem(section, "command", f"cannot be split into words as supervisord splits it: {e}",
                         hint="close the quote")
            return None
        if not words:
            self.problem(section, "command", "is empty")
            return None
        static: "dict[str, str]" = {}
        exports: "list[tuple[str, tuple]]" = []
        for key, value in {**self.expander.config_env, **program_env}.items():
            if self.expander.has_deferred(value) and script.is_shell_name(key):
                exports.append((key, self.pieces(value, section, "environment")))
                continue
            try:
                static[key] = self.resolve_now(value, section, "environment")
            except Bad as e:
                self.problem(section, "environment", str(e))
        cd = self.pieces(directory, section, "directory") if directory is not None else None
        if cd is None and self.cwd is not None:
            cd = (self.cwd,)
        if cd is None and "/" in words[0] and not words[0].startswith("/") \
                and not self.expander.has_deferred(words[0]):
            self.note("command", section, f"{words[0]} is relative to supervisord's working "
                      "directory; svtree runs it in the service directory: give directory = "
                      "(or svtree import --cwd DIR)")
        stdout, stderr = self.streams(section, stdout_log, stderr_log, syslog, program.redirect_stderr)
        return _Process(program=program, name=name,
                        exec_words=tuple(self.pieces(w, section, "command") for w in words),
                        directory=cd, exports=tuple(exports), environment=static, stdout=stdout,
                        stderr=stderr, source=f"[{section}] of {self.reader.place(section)}")

    def streams(self, section: str, stdout_log: "str | None", stderr_log: "str | None",
                syslog: "tuple[bool, bool]", redirect_stderr: bool) -> "tuple[str, str]":
        """Where run's stdout and stderr go: STDOUT or STDERR (svtree's), or NULL."""
        targets: "dict[str, str]" = {}
        own = self.reader.own_keys(section)
        for stream, value, to_syslog in (("stdout", stdout_log, syslog[0]), ("stderr", stderr_log, syslog[1])):
            target = log_target(value)
            key = f"{stream}_logfile"
            if stream == "stderr" and redirect_stderr:
                if target not in (AUTO, NULL) and key in own:
                    self.note(key, section, "redirect_stderr = true sends stderr where stdout goes; "
                              "supervisord ignores this file too")
                targets[stream] = targets["stdout"]
                continue
            own_stream = STDOUT if stream == "stdout" else STDERR
            if to_syslog or target == SYSLOG:
                self.note(f"{stream}_syslog" if to_syslog else key, section, "svtree does not write to "
                          f"syslog: {stream} goes to svtree's own {stream} as `NAME | line`")
            elif target == AUTO:
                self.note(key, section, f"supervisord kept {stream} in a file under childlogdir "
                          f"(AUTO); svtree writes it to its own {stream} as `NAME | line`")
            elif target not in (STDOUT, STDERR, NULL):
                fd = "1" if stream == "stdout" else "2"
                self.note(key, section, f"supervisord wrote {stream} to {target}; svtree writes it to "
                          f"its own {stream} as `NAME | line` (to keep the file, add "
                          f"`exec {fd}>>{target}` to run; nothing rotates it)")
            if target not in (STDOUT, STDERR, NULL):
                for suffix in ("maxbytes", "backups"):
                    if f"{key}_{suffix}" in own:
                        self.note(f"{key}_{suffix}", section, "svtree does not rotate logs: output "
                                  "goes to the container engine, which does")
                target = own_stream
            targets[stream] = target
        return targets["stdout"], targets["stderr"]

    # -- names and order

    def settle(self, processes: "list[_Process]") -> "list[Service]":
        names = self.service_names(processes)
        deps = self.priority_order(processes, names)
        return [self.service(proc, name, deps.get(i, []))
                for i, (proc, name) in enumerate(zip(processes, names))]

    def service(self, proc: _Process, name: str, depends_on: "list[str]") -> Service:
        program = proc.program
        settings: "list[tuple[str, Any]]" = []
        if depends_on:
            settings.append(("depends_on", depends_on))
        restart = program.restart
        if restart == "unexpected":
            # An expected exit 0 is svtree's on-failure; other expected codes are finish's.
            restart = "on-failure" if 0 in program.exitcodes else "always"
        if restart != "always":
            settings.append(("restart", restart))
        if program.startsecs > 0 and program.startsecs != 1:
            settings.append(("restart_delay", float(program.startsecs)))
            if program.startsecs > 30:
                settings.append(("restart_delay_max", float(program.startsecs)))
        if program.stop_signal != 15:
            settings.append(("stop_signal", signal_name(program.stop_signal)))
        if program.stopwaitsecs != 10:
            settings.append(("stop_timeout", float(program.stopwaitsecs)))
        user = program.user or self.default_user
        if user:
            settings.append(("user", user))
        if proc.environment:
            settings.append(("environment", proc.environment))
        comment = [f"svtree import supervisord: {proc.source}"
                   + (f", process {proc.name}" if proc.name != name else "")]
        run = script.run_script(comment=comment, exec_words=list(proc.exec_words), umask=program.umask,
                                directory=proc.directory, exports=list(proc.exports),
                                stdout=proc.stdout, stderr=proc.stderr)
        return Service(name=name, run=run, settings=tuple(settings), down=not program.autostart,
                       finish=_finish_script(program))

    def service_names(self, processes: "list[_Process]") -> "list[str]":
        """Process names as service names: the same name in two groups becomes GROUP.NAME;
        characters svtree does not allow become "-" (noted)."""
        count: "dict[str, int]" = {}
        for proc in processes:
            count[proc.name] = count.get(proc.name, 0) + 1
        out: "list[str]" = []
        for proc in processes:
            clash = count[proc.name] > 1
            name = service_name(f"{proc.program.group}.{proc.name}" if clash else proc.name)
            if name != proc.name:
                why = (f"two processes are named {proc.name!r}" if clash else
                       "svtree names are letters, digits, ., _ and -, starting with a letter or digit")
                self.note("process_name", proc.program.section, f"{proc.name!r} is the service "
                          f"{name!r} ({why})")
            if name in out:
                self.problem(proc.program.section, "process_name", f"two processes would be the "
                             f"service {name!r}", hint="give them different process_name values")
            out.append(name)
        return out

    def priority_order(self, processes: "list[_Process]", names: "list[str]") -> "dict[int, list[str]]":
        """supervisord starts programs in priority order (all at once) and stops them in
        reverse, one priority at a time. svtree's only ordering is depends_on: each service
        depends on the waitable services of the next lower priority. Index -> depends_on."""
        if len({p.program.order for p in processes}) < 2:
            return {}
        waitable = [(p.program.order, n) for p, n in zip(processes, names) if p.program.waitable]
        out: "dict[int, list[str]]" = {}
        for i, proc in enumerate(processes):
            lower = [order for order, _ in waitable if order < proc.program.order]
            if not lower:
                continue
            level = max(lower)
            out[i] = sorted(n for order, n in waitable if order == level)
            self.note("priority", proc.program.section,
                      f"priority {proc.program.order} after {level}: depends_on = {json.dumps(out[i])}: "
                      "svtree starts it once those are up and stops it before them (supervisord "
                      "started everything at once, in priority order, and stopped in reverse)")
        return out


def _kind(section: str) -> "str | None":
    """supervisord, include, program, group, a SECTION_NOTES kind, or None (unknown)."""
    base = section.split(":", 1)[0]
    if section in ("supervisord", "include") or base in ("program", "group") or base in SECTION_NOTES:
        return base
    return None


def _finish_script(program: _Program) -> "str | None":
    """autorestart=unexpected with expected codes other than 0: finish exits 125 (the
    service stays down) for them. Exit 0 is restart = "on-failure" instead, which a
    `ctl restart` overrides (finish 125 would keep a program that exits 0 on its stop
    signal down after a restart)."""
    extra = [c for c in program.exitcodes if c != 0]
    if program.restart != "unexpected" or not extra:
        return None
    codes = ",".join(str(c) for c in program.exitcodes)
    return (f"{script.SHEBANG}\n"
            f"# svtree import supervisord: [{program.section}] has autorestart = unexpected and\n"
            f"# exitcodes = {codes}: an expected exit leaves it down (125).\n"
            "# finish's arguments: EXIT SIG NAME PGID (EXIT is 256 when a signal killed run).\n"
            f'case "$1" in\n{"|".join(str(c) for c in extra)}) exit 125 ;;\nesac\nexit 0\n')


def convert(path: str, cwd: "str | None" = None) -> Conversion:
    """Read a supervisord config (and its includes) into services. Raises ImportFailed.
    `cwd`: where programs without directory= run (supervisord's working directory)."""
    return _Converter(path, cwd).convert()
