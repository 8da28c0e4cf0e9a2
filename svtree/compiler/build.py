"""Tree on disk -> Plan, in one pass that collects every problem before raising.

Order of work: discover the services; read svtree.toml; for each service read
service.toml and the s6 files, check cross-key rules, resolve user/group, check the
scripts; then check the dependency graph. Only a tree without problems gets levels and
digests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any, Callable

from svtree.compiler.accounts import Accounts
from svtree.compiler.digest import definition_digest, service_digest, source_digest
from svtree.compiler.discover import discover
from svtree.compiler.files import DefinitionFiles, Refused, read_whole
from svtree.compiler.graph import check_cycles, check_dependencies, start_levels
from svtree.compiler.scripts import ScriptChecker, check_command_file
from svtree.compiler.settings import (
    GLOBAL_KEYS, GLOBAL_SETTINGS, SERVICE_KEYS, SERVICE_SETTINGS, Invalid, Setting, check_keys,
    load_toml, parse_toml,
)
from svtree.definition import LOGGER_DIR, SERVICE_FILE
from svtree.errors import CompileError, Problem
from svtree.plan import GlobalSettings, Plan, ServiceSpec


def find_tree_dir(explicit: "str | None") -> str:
    """DIR: the one given, else $SVTREE_DIR, else ./services.d if it exists, else /etc/services.d."""
    if explicit:
        chosen = explicit
    elif os.environ.get("SVTREE_DIR"):
        chosen = os.environ["SVTREE_DIR"]
    elif os.path.isdir("services.d"):
        chosen = "services.d"
    else:
        chosen = "/etc/services.d"
    return os.path.abspath(chosen)


@dataclass(frozen=True)
class _Read:
    """One service as read, before the graph check and the digest."""

    spec: ServiceSpec
    origins: "dict[str, tuple[str, str | None]]"  # setting -> (file, key) it came from


class _Compiler:
    def __init__(self, directory: str, files: "DefinitionFiles | None" = None) -> None:
        self.directory = directory
        self.problems: "list[Problem]" = []
        self.accounts = Accounts()
        self.files = files if files is not None else DefinitionFiles()
        self.scripts = ScriptChecker(self.files)

    def read_global(self, path: "str | None") -> "tuple[GlobalSettings, bytes | None]":
        if path is None:
            return GlobalSettings(), None
        data, problems = read_whole(self.files, path)
        if data is None:
            self.problems += problems
            return GlobalSettings(), None
        raw, problems = parse_toml(path, data)
        values, more = check_keys(raw or {}, GLOBAL_KEYS, path)
        self.problems += problems + more
        return GlobalSettings(**{s.field: values.get(s.name, s.default) for s in GLOBAL_SETTINGS}), data

    def read_service(self, name: str, directory: "str | None" = None,
                     commands: "tuple[str, ...] | None" = None) -> _Read:
        """One service directory (DIR/NAME unless `directory` is given).

        `commands` is the interpreter of an s6-rc oneshot, whose `up` and `down` files are
        command lines for it rather than programs: they become run and finish.
        """
        directory = directory or os.path.join(self.directory, name)
        toml_path = os.path.join(directory, SERVICE_FILE)
        # One listing instead of a stat per optional file: this is most of the per-service cost.
        try:
            present = set(os.listdir(directory))
        except OSError:
            present = set()
        raw: "dict[str, Any]" = {}
        if SERVICE_FILE in present:
            data, problems = load_toml(toml_path, self.files)
            self.problems += problems
            raw = data or {}
        values, problems = check_keys(raw, SERVICE_KEYS, toml_path)
        self.problems += problems
        origins: "dict[str, tuple[str, str | None]]" = {k: (toml_path, k) for k in raw if k in SERVICE_KEYS}
        for setting in SERVICE_SETTINGS:
            if setting.s6_file and setting.s6_file.rstrip("/") in present:
                self._read_s6_file(setting, directory, toml_path, raw, values, origins)
        failed = {k for k in raw if k in SERVICE_KEYS and k not in values}
        self._check_together(values, origins, failed)
        resolved = {s.name: values.get(s.name, s.default) for s in SERVICE_SETTINGS}

        identity = None
        if not {"user", "group"} & failed:
            identity, errors = self.accounts.resolve(resolved["user"], resolved["group"])
            for key, e in errors.items():
                self.problems.append(Problem(toml_path, e.message, key=key, hint=e.hint))

        run, finish = self._check_scripts(directory, present, commands, resolved["environment"])
        spec = ServiceSpec(
            name=name,
            path=directory,
            run=run,
            finish=finish,
            down="down" in present and commands is None,
            uid=identity.uid if identity else None,
            gid=identity.gid if identity else None,
            groups=identity.groups if identity else None,
            interpreter=commands or (),
            **{s.field: resolved[s.name] for s in SERVICE_SETTINGS if s.field},
        )
        return _Read(spec, origins)

    def _check_scripts(self, directory: str, present: "set[str]", commands: "tuple[str, ...] | None",
                       environment: "tuple[tuple[str, str], ...]") -> "tuple[str, str | None]":
        """The service's run and finish (None without one), checked: scripts, or for an
        s6-rc oneshot (`commands`) its `up` and `down` command lines."""
        run_file, finish_file = ("up", "down") if commands is not None else ("run", "finish")
        run = os.path.join(directory, run_file)
        finish = os.path.join(directory, finish_file) if finish_file in present else None
        if commands is not None:
            self.problems += check_command_file(run, required=True, files=self.files)
            if finish:
                self.problems += check_command_file(finish, required=False, files=self.files)
        else:
            env_path = dict(environment).get("PATH")
            self.problems += self.scripts.check(run, required=True, env_path=env_path)
            if finish:
                self.problems += self.scripts.check(finish, required=False, env_path=env_path)
        return run, finish

    def read_with_logger(self, name: str) -> "dict[str, _Read]":
        """DIR/NAME, and its logger DIR/NAME/log when it has one (s6's layout): the service
        `NAME/log`, which NAME depends on (it starts first and stops last) and whose stdin
        reads NAME's stdout. "/" is in no directory name, so NAME/log names nothing else."""
        read = {name: self.read_service(name)}
        directory = os.path.join(self.directory, name, LOGGER_DIR)
        if not os.path.isdir(directory):
            return read
        producer = read[name]
        logger = f"{name}/{LOGGER_DIR}"
        read[logger] = self.read_service(logger, directory)
        if producer.spec.type == "oneshot":
            self.problems.append(Problem(directory, "a oneshot has no logger",
                                         hint=f"remove {LOGGER_DIR}/, or make {name} a longrun"))
        if read[logger].spec.type == "oneshot":
            self.problems.append(Problem(directory, "a logger must be a longrun",
                                         hint=f"remove type from its {SERVICE_FILE}"))
        read[name] = _Read(replace(producer.spec, logger=logger,
                                   depends_on=tuple(sorted({*producer.spec.depends_on, logger}))),
                           producer.origins)
        return read

    def _read_s6_file(self, setting: Setting, directory: str, toml_path: str, raw: dict,
                      values: dict, origins: dict) -> None:
        """An s6 spelling of `setting`: used when service.toml lacks the key; a different
        value in both places is a problem naming both."""
        assert setting.s6_file and setting.read_s6
        path = os.path.join(directory, setting.s6_file.rstrip("/"))
        try:
            value = setting.convert(setting.read_s6(path, self.files))
        except (Invalid, Refused) as e:
            self.problems.append(Problem(path, e.message, hint=e.hint))
            return
        except OSError as e:
            self.problems.append(Problem(path, f"cannot read: {e.strerror}"))
            return
        if setting.name not in raw:
            values[setting.name] = value
            origins[setting.name] = (path, None)
        elif setting.name in values and values[setting.name] != value:
            self.problems.append(Problem(
                toml_path,
                f"is {setting.show(values[setting.name])} here but {setting.show(value)} in "
                f"{setting.s6_file}",
                key=setting.name,
                hint=f"give it in one place only: remove it from {SERVICE_FILE} or remove {setting.s6_file}",
            ))

    def _check_together(self, values: dict, origins: dict, failed: "set[str]") -> None:
        """Rules across keys. Each is checked only when the keys it involves are valid."""

        def problem(key: str, message: str, hint: str) -> None:
            path, where = origins[key]
            self.problems.append(Problem(path, message, key=where, hint=hint))

        delay = values.get("restart_delay", SERVICE_KEYS["restart_delay"].default)
        delay_max = values.get("restart_delay_max", SERVICE_KEYS["restart_delay_max"].default)
        if delay_max < delay and not failed & {"restart_delay", "restart_delay_max"}:
            if "restart_delay_max" in origins:
                problem("restart_delay_max", f"must be at least restart_delay ({delay}), not {delay_max}",
                        "raise it, or lower restart_delay")
            elif "restart_delay" in origins:
                problem("restart_delay", f"is more than restart_delay_max ({delay_max}), not allowed",
                        "set restart_delay_max too, at least as large")
        oneshot = values.get("type") == "oneshot"
        if oneshot and values.get("notification_fd") is not None:
            problem("notification_fd", "a oneshot cannot signal readiness: it is done when run exits 0",
                    "remove notification_fd, or make it a longrun")
        if oneshot and values.get("ready_command") is not None:
            problem("ready_command", "a oneshot has no ready_command: it is done when run exits 0",
                    "remove ready_command, or make it a longrun")
        if values.get("ready_command") is not None and values.get("notification_fd") is not None:
            problem("ready_command", "cannot be used together with notification_fd",
                    "choose one way to signal readiness")

    def dependency_origin(self, read: "dict[str, _Read]"):
        def origin(name: str, dep: str) -> "tuple[str, str | None]":
            path, key = read[name].origins.get("depends_on", (os.path.join(self.directory, name), None))
            if key is None:  # dependencies.d/: the file named after the dependency
                return os.path.join(path, dep), None
            return path, key

        return origin


def compile_tree(directory: str, files: "DefinitionFiles | None" = None) -> Plan:
    """Compile the tree at `directory` into a Plan. `files`: read definition files through
    it (and its cache of an earlier compile); a fresh one by default.

    Raises NoTreeError when the directory is missing, CompileError with every problem found
    when the tree is invalid.
    """
    directory = os.path.abspath(directory)
    found = discover(directory)
    compiler = _Compiler(directory, files)
    compiler.problems += found.problems
    settings, global_bytes = compiler.read_global(found.global_file)
    read = {n: r for name in found.names for n, r in compiler.read_with_logger(name).items()}
    return assemble(compiler, read, settings, global_bytes)


def assemble(compiler: _Compiler, read: "dict[str, _Read]", settings: GlobalSettings,
             global_bytes: "bytes | None",
             files_of: "Callable[[ServiceSpec], str] | None" = None) -> Plan:
    """Check the dependency graph, then (only for a tree without problems) add digests and
    start levels. `files_of(spec)` digests a service's definition files (adding a problem
    for one it refuses to read): its directory's by default (a logger's directory is
    inside its producer's, and part of its definition: a changed logger restarts both, as
    a changed definition file of a service does)."""
    origin = compiler.dependency_origin(read)
    graph, problems = check_dependencies({n: r.spec.depends_on for n, r in read.items()}, origin)
    compiler.problems += problems
    compiler.problems += check_cycles(graph, origin)
    if compiler.problems:
        raise CompileError(compiler.problems)

    files_of = files_of or (lambda spec: definition_digest(spec.path, compiler.files, compiler.problems))
    services = tuple(
        replace(r.spec, digest=service_digest(r.spec, files_of(r.spec)))
        for r in (read[name] for name in sorted(read))
    )
    if compiler.problems:  # a definition file only the digest reads (log/...) was refused
        raise CompileError(compiler.problems)
    return Plan(
        source=compiler.directory,
        services=services,
        levels=start_levels(graph),
        settings=settings,
        source_digest=source_digest(services, global_bytes),
    )
