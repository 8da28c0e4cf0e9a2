"""The one table of settings: service.toml keys, svtree.toml keys, their s6 spellings.

Each key is declared once, as a `Setting` row: name, type, default, converter, s6 file,
one-line doc. Parsing, unknown-key errors (with did-you-mean), the `svtree compile`
listing and the README key table (`settings_markdown()`) are all derived from it.

A converter takes the value as TOML gives it and returns the resolved value stored in
ServiceSpec / GlobalSettings, or raises `Invalid` with a message that completes
"FILE: KEY: ..." and says what is accepted.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from dataclasses import dataclass
from typing import Any, Callable

from svtree import address
from svtree.compiler.files import DefinitionFiles, read_whole
from svtree.definition import is_ignored
from svtree.errors import Problem
from svtree.signames import parse_signal, signal_name

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

# The longest timeout svtree accepts, in seconds. It is also what a 0 in s6's
# `timeout-finish` file ("no limit") becomes. About 23 days: a longer wait could not be
# handed to every selector (epoll takes at most 2**31-1 ms), and nobody means it.
MAX_SECONDS = 2_000_000.0

# log_buffer: lines kept per service. The cap only rejects nonsense early: a line may take
# up to 64 KiB, and svtree keeps at most 1 KiB per line on average (see core/logbuffer.py).
MAX_LOG_BUFFER = 1_000_000

# notification_fd must be above stdio; the cap only rejects nonsense early (dup2 takes an int).
MIN_NOTIFICATION_FD = 3
MAX_NOTIFICATION_FD = 65535


class Invalid(ValueError):
    """A value a converter refuses: `message` completes "FILE: KEY: ...", `hint` says what to do."""

    def __init__(self, message: str, hint: "str | None" = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


# --- describing values the way TOML users write them -------------------------------------

def toml_literal(value: Any) -> str:
    """A value written as TOML would write it (for messages, listings and docs)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # JSON's escapes are TOML's basic-string escapes; a newline must not split a message.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
            return f"{value:.1f}"
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_literal(v)}" for k, v in value.items()) + "}"
    return str(value)


def describe(value: Any) -> str:
    """`string "10s"`, `integer 5`, `array` ...: what the user wrote, named by TOML type."""
    if isinstance(value, bool):
        return f"boolean {toml_literal(value)}"
    if isinstance(value, str):
        return f"string {toml_literal(value)}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"float {value!r}"
    if isinstance(value, list):
        return "array " + toml_literal(value) if len(toml_literal(value)) <= 40 else "an array"
    if isinstance(value, dict):
        return "a table"
    return f"{type(value).__name__} {value}"  # TOML dates and times


def did_you_mean(word: str, choices: "list[str] | tuple[str, ...]") -> "str | None":
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f'did you mean "{close[0]}"?' if close else None


# --- converters ----------------------------------------------------------------------

def _is_number(value: Any) -> bool:
    # TOML booleans are Python bools, and bool is an int subclass: refuse them as numbers.
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def seconds(positive: bool = False) -> "Callable[[Any], float]":
    """A duration in seconds: an integer or a float, 0 or more (more than 0 if `positive`)."""

    def convert(value: Any) -> float:
        if not _is_number(value):
            raise Invalid(f"must be a number of seconds, not {describe(value)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise Invalid(f"must be a finite number of seconds, not {value!r}")
        if positive and value <= 0:
            raise Invalid(f"must be more than 0 seconds, not {value}")
        if value < 0:
            raise Invalid(f"must not be negative, not {value}")
        if value > MAX_SECONDS:
            raise Invalid(f"must be at most {MAX_SECONDS:.0f} seconds (about 23 days), not {value}")
        return float(value)

    return convert


def one_of(*choices: str) -> "Callable[[Any], str]":
    listed = ", ".join(toml_literal(c) for c in choices)

    def convert(value: Any) -> str:
        if not isinstance(value, str):
            raise Invalid(f"must be one of {listed}, not {describe(value)}")
        if value not in choices:
            raise Invalid(f"must be one of {listed}, not {toml_literal(value)}",
                          did_you_mean(value, choices))
        return value

    return convert


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"must be true or false, not {describe(value)}")
    return value


def service_names(value: Any) -> "tuple[str, ...]":
    """depends_on: an array of names. Sorted and without repeats, so the plan is canonical."""
    if isinstance(value, str):
        raise Invalid(f"must be an array of service names, not {describe(value)}",
                      f"write depends_on = [{toml_literal(value)}]")
    if not isinstance(value, list):
        raise Invalid(f"must be an array of service names, not {describe(value)}")
    for item in value:
        if not isinstance(item, str):
            raise Invalid(f"must hold service names (strings), not {describe(item)}")
    return tuple(sorted(set(value)))


def signal_number(value: Any) -> int:
    if not (isinstance(value, str) or _is_number(value)) or isinstance(value, float):
        raise Invalid(f"must be a signal name like \"TERM\" or a number, not {describe(value)}")
    try:
        return parse_signal(value)
    except ValueError as e:
        raise Invalid(str(e)) from None


def notification_fd(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise Invalid(f"must be a file descriptor number like 3, not {describe(value)}")
    if not MIN_NOTIFICATION_FD <= value <= MAX_NOTIFICATION_FD:
        raise Invalid(f"must be between {MIN_NOTIFICATION_FD} and {MAX_NOTIFICATION_FD}, not {value}",
                      "0, 1 and 2 are the service's stdin, stdout and stderr")
    return value


def oom_score_adj(value: Any) -> int:
    """The kernel's /proc/PID/oom_score_adj: -1000 (never OOM-killed) to 1000 (first)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise Invalid(f"must be an integer from -1000 to 1000, not {describe(value)}")
    if not -1000 <= value <= 1000:
        raise Invalid(f"must be from -1000 to 1000, not {value}",
                      "1000: killed first when memory runs out; -1000: never")
    return value


def http_address(value: Any) -> str:
    """"ADDR:PORT", numeric (svtree/address.py); stored as written back by address.show."""
    if not isinstance(value, str):
        raise Invalid(f'must be "ADDR:PORT" like "0.0.0.0:9100", not {describe(value)}')
    try:
        host, port = address.parse(value)
    except ValueError as e:
        raise Invalid(str(e)) from None
    return address.show(host, port)


def log_lines(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise Invalid(f"must be a number of lines like 1000, not {describe(value)}")
    if not 0 <= value <= MAX_LOG_BUFFER:
        raise Invalid(f"must be from 0 to {MAX_LOG_BUFFER}, not {value}", "0 keeps no lines")
    return value


def command(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(f"must be a shell command (a string), not {describe(value)}")
    if not value.strip():
        raise Invalid("must not be empty", "remove the key to count the service ready once it is up")
    if "\0" in value:
        raise Invalid("must not contain a NUL character")
    return value


_ENV_NAME = re.compile(r"[^=\0]+\Z")


def environment(value: Any) -> "tuple[tuple[str, str], ...]":
    """A table of NAME = "value" strings. Stored as sorted (name, value) pairs."""
    if not isinstance(value, dict):
        raise Invalid(f"must be a table of strings, like {{ PORT = \"8080\" }}, not {describe(value)}")
    pairs = []
    for name, text in value.items():
        if not _ENV_NAME.match(name):
            raise Invalid(f"{toml_literal(name)} is not a valid variable name (it must be non-empty, "
                          "without \"=\" or NUL)")
        if not isinstance(text, str):
            hint = f'quote it: {name} = "{text}"' if _is_number(text) else None
            raise Invalid(f"{toml_literal(name)} must be a string, not {describe(text)}", hint)
        if "\0" in text:
            raise Invalid(f"{toml_literal(name)} must not contain a NUL character")
        pairs.append((name, text))
    return tuple(sorted(pairs))


def account(kind: str) -> "Callable[[Any], int | str]":
    """user / group: a name or a number. Resolved to ids later (see accounts.py)."""

    def convert(value: Any) -> "int | str":
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 0:
                raise Invalid(f"must not be negative, not {value}")
            return value
        if not isinstance(value, str) or not value.strip():
            raise Invalid(f"must be a {kind} name or number, not {describe(value)}")
        return int(value) if value.isdigit() else value

    return convert


# --- readers of the s6 / s6-rc files ------------------------------------------------------

def _read_text(path: str, files: DefinitionFiles) -> str:
    data = files.read(path).data[:4096]
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise Invalid("is not text") from None


def read_type_file(path: str, files: DefinitionFiles) -> str:
    text = _read_text(path, files)
    if text == "bundle":
        raise Invalid('s6-rc bundles are not supported',
                      "list the bundle's services in depends_on of the services that need them")
    return text


def read_notification_fd_file(path: str, files: DefinitionFiles) -> int:
    text = _read_text(path, files)
    if not text.isdigit():
        raise Invalid(f"must hold a file descriptor number like 3, not {toml_literal(text)}")
    return int(text)


def read_timeout_finish_file(path: str, files: DefinitionFiles) -> float:
    """Milliseconds, as in s6. 0 means "no limit" in s6: it becomes MAX_SECONDS."""
    text = _read_text(path, files)
    if not text.isdigit():
        raise Invalid(f"must hold a number of milliseconds like 5000, not {toml_literal(text)}")
    ms = int(text)
    return MAX_SECONDS if ms == 0 else ms / 1000.0


def read_down_signal_file(path: str, files: DefinitionFiles) -> str:
    """s6's down-signal: a signal name, with or without SIG ("SIGHUP", "HUP")."""
    return _read_text(path, files)


def read_dependencies_dir(path: str, files: DefinitionFiles) -> "list[str]":
    """s6-rc's dependencies.d/: one (empty) file per dependency, named after it."""
    if not os.path.isdir(path):
        raise Invalid("must be a directory holding one empty file per dependency")
    return [name for name in os.listdir(path) if not is_ignored(name)]


# --- the table --------------------------------------------------------------------------

@dataclass(frozen=True)
class Setting:
    """One key: declared once, used for parsing, errors, listing and docs."""

    name: str  # the key in service.toml / svtree.toml
    type: str  # as the docs name it
    default: Any  # the resolved default, as stored in ServiceSpec / GlobalSettings
    convert: "Callable[[Any], Any]"
    doc: str
    field: "str | None" = None  # ServiceSpec / GlobalSettings field; None: resolved elsewhere
    s6_file: "str | None" = None  # the s6 / s6-rc spelling: a file in the service directory
    # (s6 file path, the compile's DefinitionFiles) -> value for `convert`
    read_s6: "Callable[[str, DefinitionFiles], Any] | None" = None
    default_doc: "str | None" = None  # how the docs show the default, when not its literal

    def default_text(self) -> str:
        return self.default_doc if self.default_doc is not None else toml_literal(self.default)

    def show(self, value: Any) -> str:
        """The resolved value as the user would write it (signals by name, environment as a table)."""
        if self.name == "stop_signal":
            return toml_literal(signal_name(value))
        if self.name == "environment":
            return toml_literal(dict(value))
        return toml_literal(value)


SERVICE_SETTINGS: "tuple[Setting, ...]" = (
    Setting("type", "string", "longrun", one_of("longrun", "oneshot"),
            '"longrun", or "oneshot": run once to completion at boot; dependents start after it exits 0',
            field="type", s6_file="type", read_s6=read_type_file),
    Setting("depends_on", "array of names", (), service_names,
            "services that must be up (and ready; done, for a oneshot) before this one starts",
            field="depends_on", s6_file="dependencies.d/", read_s6=read_dependencies_dir,
            default_doc="[]"),
    Setting("restart", "string", "always", one_of("always", "on-failure", "never"),
            '"always", "on-failure" (not after exit 0) or "never"', field="restart"),
    Setting("restart_delay", "seconds", 1.0, seconds(),
            "a service that died sooner than this after starting waits this long, doubling on each quick death",
            field="restart_delay"),
    Setting("restart_delay_max", "seconds", 30.0, seconds(),
            "the cap of that wait; at least restart_delay", field="restart_delay_max"),
    Setting("critical", "boolean", False, boolean,
            "when this service ends for good, the whole tree shuts down and svtree exits 1",
            field="critical"),
    Setting("stop_signal", "signal", 15, signal_number,
            'name with or without SIG ("TERM", "SIGINT"), or a number', field="stop_signal",
            s6_file="down-signal", read_s6=read_down_signal_file, default_doc='"TERM"'),
    Setting("stop_timeout", "seconds", 10.0, seconds(),
            "after stop_signal, wait this long before SIGKILL to the whole process group",
            field="stop_timeout"),
    Setting("finish_timeout", "seconds", 5.0, seconds(),
            "how long `finish` may run (s6 file in milliseconds; 0 there means no limit: "
            f"{MAX_SECONDS:.0f} s)", field="finish_timeout", s6_file="timeout-finish",
            read_s6=read_timeout_finish_file),
    Setting("notification_fd", "integer", None, notification_fd,
            "readiness the s6 way: the service writes a newline to this fd (3 or more) when ready",
            field="notification_fd", s6_file="notification-fd", read_s6=read_notification_fd_file),
    Setting("ready_command", "string", None, command,
            "readiness by polling: `sh -c` this command every ready_interval until it exits 0",
            field="ready_command"),
    Setting("ready_interval", "seconds", 0.2, seconds(positive=True),
            "how often ready_command runs", field="ready_interval"),
    Setting("ready_timeout", "seconds", 60.0, seconds(positive=True),
            "not ready after this long: the service is restarted as failed", field="ready_timeout"),
    Setting("environment", "table of strings", (), environment,
            'extra environment variables, e.g. { PORT = "8080" }', field="environment",
            default_doc="{}"),
    Setting("oom_score_adj", "integer", None, oom_score_adj,
            "-1000..1000, added to the OOM killer's score of run and finish (as systemd's "
            "OOMScoreAdjust): 1000 goes first, -1000 never; lowering needs CAP_SYS_RESOURCE",
            field="oom_score_adj", default_doc="svtree's at start"),
    Setting("user", "name or number", None, account("user"),
            "run `run` and `finish` as this user (its primary group and groups, unless group is set)",
            default_doc="svtree's own"),
    Setting("group", "name or number", None, account("group"),
            "run `run` and `finish` with this group", default_doc="svtree's own"),
)

GLOBAL_SETTINGS: "tuple[Setting, ...]" = (
    Setting("kill_grace", "seconds", 3.0, seconds(),
            "at shutdown, the last wait between SIGTERM and SIGKILL for stray processes",
            field="kill_grace"),
    Setting("main_stop_timeout", "seconds", 10.0, seconds(),
            "how long the main command has between SIGTERM and SIGKILL", field="main_stop_timeout"),
    Setting("log_format", "string", "console", one_of("console", "json"),
            "svtree's own log lines: \"console\" or \"json\"", field="log_format"),
    Setting("output", "string", "prefix", one_of("prefix", "raw"),
            '"prefix": service lines as `NAME | line`; "raw": services get svtree\'s own fds',
            field="output"),
    Setting("reload_timeout", "seconds", 30.0, seconds(positive=True),
            "the longest a reload may spend compiling the tree (a hung filesystem, a slow user "
            "lookup); a slower reload is rejected and changes nothing", field="reload_timeout"),
    Setting("http", "\"ADDR:PORT\"", None, http_address,
            "serve /livez, /readyz, /status and /metrics over HTTP there (e.g. \"0.0.0.0:9100\"; "
            "port 0: any free port); `svtree run --http` overrides it", field="http",
            default_doc="off"),
    Setting("log_buffer", "integer", 1000, log_lines,
            "lines of each service's output svtree keeps for `svtree ctl logs` (0: none; at most "
            "1 KiB a line on average)", field="log_buffer"),
)

SERVICE_KEYS: "dict[str, Setting]" = {s.name: s for s in SERVICE_SETTINGS}
GLOBAL_KEYS: "dict[str, Setting]" = {s.name: s for s in GLOBAL_SETTINGS}


# --- reading TOML ---------------------------------------------------------------------

_AT_LINE = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")


def load_toml(path: str, files: DefinitionFiles) -> "tuple[dict | None, list[Problem]]":
    """Read (see files.read_whole) and parse a TOML file; see parse_toml."""
    data, problems = read_whole(files, path)
    if data is None:
        return None, problems
    return parse_toml(path, data)


def parse_toml(path: str, data: bytes) -> "tuple[dict | None, list[Problem]]":
    """Parse TOML text read from `path`; a syntax error becomes a Problem that carries its line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        return None, [Problem(path, "is not UTF-8 text", line=line, hint="TOML files must be UTF-8")]
    try:
        return tomllib.loads(text), []
    except tomllib.TOMLDecodeError as e:
        message = str(e.args[0]) if e.args else str(e)
        line = getattr(e, "lineno", None)  # Python >= 3.14 has it as an attribute
        m = _AT_LINE.search(message)
        if m:
            line = line or int(m.group(1))
            message = message[: m.start()]
        message = message.rstrip(".")
        return None, [Problem(path, f"bad TOML: {message[:1].lower()}{message[1:]}", line=line)]


def check_keys(raw: dict, table: "dict[str, Setting]", path: str) -> "tuple[dict[str, Any], list[Problem]]":
    """Convert every known key of `raw`; report unknown keys and bad values. Returns converted values."""
    values: "dict[str, Any]" = {}
    problems: "list[Problem]" = []
    for key, value in raw.items():
        setting = table.get(key)
        if setting is None:
            hint = did_you_mean(key, list(table)) or did_you_mean(key.replace("-", "_"), list(table))
            problems.append(Problem(path, "unknown key", key=key,
                                    hint=hint or "known keys: " + ", ".join(table)))
            continue
        try:
            values[key] = setting.convert(value)
        except Invalid as e:
            problems.append(Problem(path, e.message, key=key, hint=e.hint))
    return values, problems


# --- the README key tables ----------------------------------------------------------------

def _md(text: str) -> str:
    return text.replace("|", "\\|")


def settings_markdown() -> str:
    """The service.toml and svtree.toml key tables, in Markdown, generated from the table above."""
    out: "list[str]" = [
        "`service.toml` keys (an s6 file, when given, is an alternative spelling; giving both with",
        "different values is an error):",
        "",
        "| key | type | default | s6 file | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for s in SERVICE_SETTINGS:
        s6 = f"`{s.s6_file}`" if s.s6_file else ""
        out.append(f"| `{s.name}` | {s.type} | `{_md(s.default_text())}` | {s6} | {_md(s.doc)} |")
    out += [
        "",
        "`svtree.toml` keys (in the tree directory, optional):",
        "",
        "| key | type | default | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for s in GLOBAL_SETTINGS:
        out.append(f"| `{s.name}` | {s.type} | `{_md(s.default_text())}` | {_md(s.doc)} |")
    return "\n".join(out) + "\n"


__all__ = [
    "GLOBAL_KEYS", "GLOBAL_SETTINGS", "Invalid", "MAX_SECONDS", "SERVICE_KEYS", "SERVICE_SETTINGS",
    "Setting", "check_keys", "describe", "did_you_mean", "load_toml", "parse_toml", "settings_markdown",
    "toml_literal",
]
