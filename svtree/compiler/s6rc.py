"""s6-rc's source format (s6-overlay v3's /etc/s6-overlay/s6-rc.d), read as svtree services.

Each subdirectory is a service whose `type` file says `longrun`, `oneshot` or `bundle`:

- a longrun is a service like any other: `run`, `finish`, `notification-fd`,
  `timeout-finish`, `down-signal`, `service.toml` as in a plain tree; s6-rc's
  `timeout-kill` (ms: SIGKILL after, if not 0) or else `timeout-down` (ms: s6-rc stops
  waiting, and the final sweep kills it) becomes `stop_timeout`, `timeout-up` (ms: start,
  readiness included, failed after) becomes `ready_timeout`. `producer-for`,
  `consumer-for` and `pipeline-name` make pipelines: the producer's `logger`, which it
  depends on (s6-rc-compile adds that dependency too), and a bundle named after the
  pipeline.
- a oneshot's `up` and `down` are command lines for `execlineb -P` (s6-rc lexes them
  with execline), not programs: they become run and finish with `execlineb -P` as the
  interpreter, so `down` runs at shutdown, as svtree runs a oneshot's finish.
  `timeout-down` (ms) becomes its `finish_timeout`.
- a bundle (`contents.d/`, or the older `contents` file) stands for its services; a
  dependency on it is a dependency on each of them (bundles in bundles are flattened).

`dependencies.d/` (or the older `dependencies` file) lists dependencies. This module only
reads; s6overlay.py expands bundles and s6-overlay's own names and decides what starts.
Files svtree has no use for are ignored with a warning each.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field, replace

from svtree.compiler.build import _Compiler, _Read
from svtree.compiler.discover import NAME
from svtree.compiler.files import DefinitionFiles, Refused
from svtree.compiler.scripts import DEFAULT_PATH
from svtree.compiler.settings import MAX_SECONDS, toml_literal
from svtree.definition import is_ignored
from svtree.errors import Problem

TYPES = ("longrun", "oneshot", "bundle")
RESERVED_PREFIXES = ("s6rc-", "s6-rc-")  # s6-rc's own services
# Where s6-overlay keeps its programs; searched after PATH, for images that keep it.
S6_OVERLAY_BIN = "/command"

# Files of a definition directory svtree reads; anything else is data (s6-rc copies
# data/ and env/ for the run script) and is left alone, except these, ignored with a
# warning: (file, why).
IGNORED_FILES: "tuple[tuple[str, str], ...]" = (
    ("flag-essential", "every service stops at shutdown; `ctl stop` stops any"),
    ("flag-recommended", "only s6-rc's repository tools read it"),
    ("lock-fd", "svtree takes no lock for the service"),
    ("max-death-tally", "svtree keeps no death tally"),
    ("reload", "svtree has no reload command for a oneshot"),
    ("instance", "s6 instances are not supported"),
    ("instances", "s6 instances are not supported"),
)
# The files of the README table that are supported or mapped (file, types, what svtree does).
SUPPORTED_FILES: "tuple[tuple[str, str, str], ...]" = (
    ("type", "all", "`longrun`, `oneshot` or `bundle`"),
    ("contents.d/, contents", "bundle", "the services it stands for (bundles in it are flattened)"),
    ("dependencies.d/, dependencies", "longrun, oneshot",
     "`depends_on`, bundles expanded; `base` is the cont-init.d scripts (nothing without them)"),
    ("run, finish", "longrun", "as in a plain tree (executable, `#!` line checked)"),
    ("notification-fd", "longrun", "`notification_fd`"),
    ("timeout-up", "longrun", "ms: `ready_timeout` (0: the default)"),
    ("timeout-kill", "longrun", "ms: `stop_timeout` (0: the default)"),
    ("timeout-down", "longrun", "ms: `stop_timeout`, unless timeout-kill is given (0: the default)"),
    ("timeout-finish", "longrun", "ms: `finish_timeout` (0: no limit)"),
    ("down-signal", "longrun", "`stop_signal`"),
    ("producer-for, consumer-for, pipeline-name", "longrun",
     "the pipeline: the producer's stdout (not its stderr: `exec 2>&1` in run sends it too, as "
     "under s6-rc) is its logger's stdin, through one pipe svtree keeps across restarts of "
     "either side (several producers of one logger share it); the producer depends on its "
     "logger; pipeline-name is a bundle of the whole pipeline (see Loggers)"),
    ("up", "oneshot", "run with `execlineb -P` at boot (Debian's `execline` package)"),
    ("down", "oneshot", "run with `execlineb -P` at shutdown, as the oneshot's `finish`"),
    ("timeout-down", "oneshot", "ms: `finish_timeout` of `down` (0: the default)"),
    ("data/, env/", "longrun", "left alone, for the run script"),
    ("service.toml", "longrun, oneshot", "svtree's settings, as in a plain tree"),
)


@dataclass
class Source:
    """What the s6-rc.d directories hold, before bundles and dependencies are expanded."""

    atomic: "dict[str, _Read]" = field(default_factory=dict)
    bundles: "dict[str, tuple[str, ...]]" = field(default_factory=dict)  # raw contents
    bundle_paths: "dict[str, str]" = field(default_factory=dict)
    warnings: "list[str]" = field(default_factory=list)


def find_execlineb(environ_path: "str | None") -> "str | None":
    """execlineb on PATH (Debian's execline package puts it in /usr/bin), else in
    s6-overlay's /command. A path lookup: the compiler runs nothing."""
    search = (environ_path or DEFAULT_PATH) + os.pathsep + S6_OVERLAY_BIN
    return shutil.which("execlineb", path=search)


def read_name_list(path: str, files: DefinitionFiles) -> "list[str]":
    """s6-rc's older list files (`contents`, `dependencies`): one name a line, leading
    blanks skipped, trailing ones kept, empty lines and lines starting with # ignored.
    Raises OSError, or Refused for a file that is not a regular file."""
    text = files.read(path).data.decode("utf-8", errors="replace")
    out = []
    for line in text.split("\n"):
        line = line.lstrip(" \t")
        if line and not line.startswith("#") and line not in out:
            out.append(line)
    return out


def _read_list(compiler: _Compiler, directory: str, dir_name: str, file_name: str) -> "list[str] | None":
    """DIR/NAME.d's entries, else the names in DIR/NAME (s6-rc's rule), else None."""
    listed = os.path.join(directory, dir_name)
    if os.path.isdir(listed):
        return sorted(n for n in os.listdir(listed) if not is_ignored(n))
    path = os.path.join(directory, file_name)
    if os.path.lexists(path) and not os.path.isdir(path):
        try:
            return read_name_list(path, compiler.files)
        except Refused as e:
            compiler.problems.append(Problem(path, e.message, hint=e.hint))
        except OSError as e:
            compiler.problems.append(Problem(path, f"cannot read: {e.strerror}"))
    return None


def _read_ms(compiler: _Compiler, path: str) -> "float | None":
    """A file of milliseconds; 0 means no timeout in s6-rc, which leaves svtree's default."""
    try:
        text = compiler.files.read(path).data[:4096].decode("utf-8", errors="replace").strip()
    except Refused as e:
        compiler.problems.append(Problem(path, e.message, hint=e.hint))
        return None
    except OSError as e:
        compiler.problems.append(Problem(path, f"cannot read: {e.strerror}"))
        return None
    if not text.isdigit() or not text.isascii():
        compiler.problems.append(Problem(
            path, f"must hold a number of milliseconds like 5000, not {toml_literal(text)}"))
        return None
    seconds = int(text) / 1000.0
    if seconds > MAX_SECONDS:
        compiler.problems.append(Problem(path, f"must be at most {MAX_SECONDS * 1000:.0f} ms, not {text}"))
        return None
    return seconds or None


def read_sources(compiler: _Compiler, directories: "list[str]", forced_bundles: "tuple[str, ...]",
                 reserved: "dict[str, str]", execlineb: "str | None") -> Source:
    """Every definition directory of `directories` (s6-overlay's s6-rc.d and, when it
    defines no `user`, user-bundles.d). `forced_bundles` are bundles whatever their type
    file says (s6-overlay rewrites s6-rc.d/user's and user2's); `reserved` maps the names
    s6-overlay defines itself to why they cannot be redefined."""
    source = Source()
    seen: "dict[str, str]" = {}
    for top in directories:
        try:
            entries = sorted(os.listdir(top))
        except OSError as e:
            compiler.problems.append(Problem(top, f"cannot be listed: {e.strerror}"))
            continue
        for name in entries:
            directory = os.path.join(top, name)
            if is_ignored(name) or not os.path.isdir(directory):
                continue  # s6-rc-compile skips dot files and every file that is not a directory
            if not _check_name(compiler, name, directory, seen, reserved):
                continue
            seen[name] = directory
            _read_definition(compiler, source, name, directory, name in forced_bundles, execlineb)
    return source


def _check_name(compiler: _Compiler, name: str, directory: str, seen: "dict[str, str]",
                reserved: "dict[str, str]") -> bool:
    if name.startswith(RESERVED_PREFIXES):
        compiler.problems.append(Problem(directory, f'"{name}": names starting with s6rc- or s6-rc- '
                                         "are s6-rc's own", hint="rename the directory"))
    elif not NAME.match(name):
        compiler.problems.append(Problem(
            directory, f'"{name}" is not a valid service name for svtree',
            hint='a name starts with a letter or digit and holds only letters, digits, ".", "_" '
                 'and "-": rename the directory, and the files that name it in dependencies.d/ '
                 "and contents.d/"))
    elif name in reserved:
        compiler.problems.append(Problem(directory, f'"{name}" is {reserved[name]}',
                                         hint="rename the directory"))
    elif name in seen:
        compiler.problems.append(Problem(directory, f'"{name}" is defined twice (also {seen[name]})',
                                         hint="remove one of them"))
    else:
        return True
    return False


def _read_definition(compiler: _Compiler, source: Source, name: str, directory: str,
                     forced_bundle: bool, execlineb: "str | None") -> None:
    type_path = os.path.join(directory, "type")
    if forced_bundle:
        kind = "bundle"
    else:
        try:
            kind = compiler.files.read(type_path).data[:4096].decode("utf-8", errors="replace").strip()
        except Refused as e:
            compiler.problems.append(Problem(type_path, e.message, hint=e.hint))
            return
        except FileNotFoundError:
            compiler.problems.append(Problem(type_path, "missing: every s6-rc service needs a type file",
                                             hint="write longrun, oneshot or bundle in it"))
            return
        except OSError as e:
            compiler.problems.append(Problem(type_path, f"cannot read: {e.strerror}"))
            return
    if kind not in TYPES:
        compiler.problems.append(Problem(type_path, f"must be longrun, oneshot or bundle, not {toml_literal(kind)}"))
        return
    if kind == "bundle":
        contents = _read_list(compiler, directory, "contents.d", "contents")
        source.bundles[name] = tuple(contents or ())
        source.bundle_paths[name] = directory
        return
    present = set(os.listdir(directory))
    oneshot = kind == "oneshot"
    if oneshot and execlineb is None:
        compiler.problems.append(Problem(
            os.path.join(directory, "up"), "is an execline command line, and execlineb is not "
            "installed (svtree runs up and down with execlineb -P, as s6-rc does)",
            hint="install Debian's execline package: apt-get install execline"))
    read = compiler.read_service(name, directory, commands=((execlineb or "execlineb", "-P") if oneshot else None))
    spec, origins = read.spec, dict(read.origins)
    changes: dict = {}
    if "dependencies.d" not in present and "dependencies" in present:
        names = _read_list(compiler, directory, "dependencies.d", "dependencies") or []
        changes["depends_on"] = tuple(sorted(set(names)))
        origins["depends_on"] = (os.path.join(directory, "dependencies"), "")
    _timeouts(compiler, directory, present, oneshot, origins, changes)
    if not oneshot:
        if "down" in present:
            source.warnings.append(f"{os.path.join(directory, 'down')}: ignored: s6-rc ignores a longrun's "
                                   "down file (a service outside the user bundles does not start)")
            changes["down"] = False
        _pipeline_files(compiler, directory, present, changes)
    elif present & {"producer-for", "consumer-for", "pipeline-name"}:
        compiler.problems.append(Problem(directory, "a oneshot cannot be part of a pipeline",
                                         hint="only longruns have producer-for and consumer-for"))
    if oneshot and "timeout-up" in present:
        source.warnings.append(f"{os.path.join(directory, 'timeout-up')}: ignored: a oneshot's up runs "
                               "until it exits")
    for file, why in IGNORED_FILES:
        if file in present:
            source.warnings.append(f"{os.path.join(directory, file)}: ignored: {why}")
    source.atomic[name] = _Read(replace(spec, **changes), origins)


def _timeouts(compiler: _Compiler, directory: str, present: "set[str]", oneshot: bool,
              origins: dict, changes: dict) -> None:
    """s6-rc's timeout files, unless service.toml gives the key (it is svtree's own word)."""
    def ms(file: str) -> "float | None":
        return _read_ms(compiler, os.path.join(directory, file)) if file in present else None

    def put(key: str, value: "float | None", file: str) -> None:
        if value is not None and key not in origins:
            changes[key] = value
            origins[key] = (os.path.join(directory, file), None)

    if oneshot:
        put("finish_timeout", ms("timeout-down"), "timeout-down")
        return
    kill, down = ms("timeout-kill"), ms("timeout-down")
    put("stop_timeout", kill if kill is not None else down, "timeout-kill" if kill is not None else "timeout-down")
    put("ready_timeout", ms("timeout-up"), "timeout-up")


def _pipeline_files(compiler: _Compiler, directory: str, present: "set[str]", changes: dict) -> None:
    """producer-for (one name) is this service's logger; consumer-for and pipeline-name
    are checked against it in s6overlay.py, once every service is read."""
    if "producer-for" in present:
        path = os.path.join(directory, "producer-for")
        try:
            names = read_name_list(path, compiler.files)
        except Refused as e:
            compiler.problems.append(Problem(path, e.message, hint=e.hint))
            return
        except OSError as e:
            compiler.problems.append(Problem(path, f"cannot read: {e.strerror}"))
            return
        if len(names) != 1:
            compiler.problems.append(Problem(path, f"must hold one service name, not {len(names)}",
                                             hint="a producer feeds one consumer"))
        else:
            changes["logger"] = names[0]


def _names_if_readable(path: str, files: DefinitionFiles) -> "list[str] | None":
    """The names in a list file; None when there is no regular file to read (a file that
    is not regular is refused by the digest of its service, with the problem named)."""
    try:
        return read_name_list(path, files)
    except (OSError, Refused):
        return None


def consumers_declared(directory: str, files: DefinitionFiles) -> "tuple[str, ...]":
    return tuple(_names_if_readable(os.path.join(directory, "consumer-for"), files) or ())


def pipeline_name(directory: str, files: DefinitionFiles) -> "str | None":
    names = _names_if_readable(os.path.join(directory, "pipeline-name"), files)
    return names[0] if names is not None and len(names) == 1 else None


def files_markdown() -> str:
    """The README's table of s6-rc.d files, generated from the two tables above."""
    out = ["| file | type | in svtree |", "| --- | --- | --- |"]
    for file, types, what in SUPPORTED_FILES:
        shown = ", ".join(f"`{f}`" for f in file.split(", "))
        out.append(f"| {shown} | {types} | {what} |")
    out.append("| `down` | longrun | ignored, with a warning (s6-rc ignores it too; a service no bundle "
               "reaches is not started) |")
    out.append("| `timeout-up` | oneshot | ignored, with a warning: up runs until it exits |")
    for file, why in IGNORED_FILES:
        out.append(f"| `{file}` | | ignored, with a warning: {why} |")
    out.append("| `log/` | longrun | ignored (s6-rc ignores it: a logger is a service of its own, with "
               "`consumer-for`) |")
    return "\n".join(out) + "\n"
