"""s6-overlay's layouts as one plan: v2's ROOT/etc/{cont-init.d,services.d,cont-finish.d}
and v3's s6-rc source directories, ROOT/etc/s6-overlay/{s6-rc.d,user-bundles.d}.

s6-overlay v2 boots in stages: it runs every script of /etc/cont-init.d in lexical order,
then supervises every directory of /etc/services.d, and at shutdown runs every script of
/etc/cont-finish.d in lexical order. Here that becomes an ordinary plan, so the runtime
needs nothing special:

- `/etc/services.d/NAME/` is a service like any other (run, finish, down, service.toml,
  the s6 files), compiled exactly as in a plain tree.
- `/etc/cont-init.d/SCRIPT` becomes the oneshot `cont-init.SCRIPT` whose run is the script.
  Each depends on the one before it, and every longrun depends on the last one: the
  scripts run one at a time in lexical order, all before any longrun, and a failing one
  fails the boot (svtree's rule for oneshots).
- `/etc/cont-finish.d/SCRIPT` becomes the oneshot `cont-finish.SCRIPT` whose run does
  nothing (`true`) and whose finish is the script: a oneshot's finish runs once at
  shutdown, once everything that depends on it has stopped. Every longrun depends on the
  first one, and each depends on the next one, so at shutdown the longruns stop first,
  then the scripts run in lexical order, one at a time (each may run `finish_timeout`,
  5 s by default, as s6-overlay's S6_KILL_FINISH_MAXTIME). They do not depend on the
  cont-init chain, so they run at shutdown even when a cont-init script failed the boot,
  as in s6-overlay.

s6-overlay v3 keeps all of that (as its "legacy" services) and adds s6-rc services
(read by s6rc.py), in this order, which is s6-overlay's own (its s6-rc sources: `base`
holds fix-attrs and legacy-cont-init, which runs cont-init.d; legacy-services, which
starts services.d, depends on `base` and `user`; `top` is base, legacy-services, user
and user2):

- `base` (and `legacy-cont-init`) stands for the cont-init.d chain and the cont-finish.d
  chain: a service that depends on it starts after the last cont-init script and stops
  before the first cont-finish script (s6-overlay runs cont-finish.d as
  legacy-cont-init's `down`). Without those scripts it is satisfied at once.
  `fix-attrs` is nothing (fix-attrs.d is not supported); s6-rc's own s6rc-* services too.
- the services of the `user` bundle start with their dependencies; those without a
  dependency on `base` may start while cont-init.d runs, as in s6-overlay.
- services.d's services depend on `base` and on every service of `user`;
  `legacy-services` stands for all of them, so a `user2` service that depends on it
  starts after them.
- services of `user2` start with their dependencies.
- an s6-rc service that neither bundle reaches is compiled but not started (s6-rc
  compiles it into its database and `s6-rc -u change NAME` starts it): it is `down`,
  and `svtree ctl start NAME` starts it.

`user` and `user2` are read from s6-rc.d when s6-rc.d/user exists (whatever their type
file says, as s6-overlay rewrites it), else from ROOT/etc/s6-overlay/user-bundles.d.
s6-overlay's S6_* variables are read from the environment (s6env.py).

Names: a service name must match `[A-Za-z0-9][A-Za-z0-9._-]*`, so a script `10-adduser`
becomes `cont-init.10-adduser`; a script whose name has other characters is an error that
says to rename it. The scripts' working directory is ROOT. Their settings are the
defaults; there is no service.toml for a script.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import replace
from typing import Mapping

from svtree.compiler.build import _Compiler, _Read, assemble
from svtree.compiler.digest import definition_digest, script_digest
from svtree.compiler.discover import NAME, NoTreeError, discover
from svtree.compiler.files import DefinitionFiles
from svtree.compiler.s6env import KNOWN, read_s6_variables
from svtree.compiler.s6rc import consumers_declared, find_execlineb, pipeline_name, read_sources
from svtree.definition import SERVICE, SERVICE_RC, is_ignored
from svtree.errors import Problem
from svtree.plan import GlobalSettings, Plan, ServiceSpec

INIT_DIR = os.path.join("etc", "cont-init.d")
SERVICES_DIR = os.path.join("etc", "services.d")
FINISH_DIR = os.path.join("etc", "cont-finish.d")
S6RC_DIR = os.path.join("etc", "s6-overlay", "s6-rc.d")
BUNDLES_DIR = os.path.join("etc", "s6-overlay", "user-bundles.d")
INIT_PREFIX = "cont-init."
FINISH_PREFIX = "cont-finish."
USER_BUNDLES = ("user", "user2")
CONTAINER_ENVIRONMENT = "/run/s6/container_environment"  # where with-contenv reads it
# s6-overlay's own s6-rc services: they cannot be redefined.
OVERLAY_NAMES = {
    "base": "s6-overlay's bundle of its own boot (depend on it: it stands for the cont-init.d scripts)",
    "legacy-cont-init": "s6-overlay's oneshot that runs cont-init.d",
    "legacy-services": "s6-overlay's oneshot that starts services.d",
    "fix-attrs": "s6-overlay's oneshot that runs fix-attrs.d",
    "top": "s6-overlay's bundle of everything it starts",
}


def looks_like_s6_overlay(root: str) -> bool:
    """ROOT/etc has services.d and cont-init.d (v2), or s6-overlay/s6-rc.d (v3): what
    `svtree` chooses without a tree given."""
    return ((os.path.isdir(os.path.join(root, SERVICES_DIR)) and os.path.isdir(os.path.join(root, INIT_DIR)))
            or os.path.isdir(os.path.join(root, S6RC_DIR)))


def has_tree(root: str) -> bool:
    """ROOT holds something to run: etc/services.d or etc/s6-overlay/s6-rc.d."""
    return os.path.isdir(os.path.join(root, SERVICES_DIR)) or os.path.isdir(os.path.join(root, S6RC_DIR))


def automatic_root(explicit_dir: "str | None", root: str = "/") -> "str | None":
    """ROOT (/) when svtree should run its s6-overlay layout without being told: no DIR
    given, no $SVTREE_DIR, no ./services.d, and ROOT looks like s6-overlay's (the plain
    lookup of DIR would fall back to /etc/services.d and ignore the rest)."""
    if explicit_dir or os.environ.get("SVTREE_DIR") or os.path.isdir("services.d"):
        return None
    return root if looks_like_s6_overlay(root) else None


def _scripts(compiler: _Compiler, directory: str, prefix: str) -> "list[tuple[str, str]]":
    """(service name, script path) for each script of a cont-*.d directory, in lexical
    order (s6-overlay sorts the names bytewise; so does sorted() on str, for UTF-8 names)."""
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    except OSError as e:
        compiler.problems.append(Problem(directory, f"cannot be listed: {e.strerror}"))
        return []
    out = []
    for entry in names:
        if is_ignored(entry):
            continue
        path = os.path.join(directory, entry)
        if os.path.isdir(path):
            compiler.problems.append(Problem(
                path, "is a directory, but this directory holds scripts",
                hint=f"move it out of {os.path.basename(directory)}"))
            continue
        name = prefix + entry
        if not NAME.match(name):
            compiler.problems.append(Problem(
                path, f'"{entry}" cannot be part of a service name ("{name}")',
                hint='rename the script: letters, digits, ".", "_" and "-" only'))
            continue
        out.append((name, path))
    return out


class _Expander:
    """s6-rc names -> svtree services: bundles flattened, s6-overlay's names resolved."""

    def __init__(self, compiler: _Compiler, bundles: "dict[str, tuple[str, ...]]",
                 paths: "dict[str, str]", special: "dict[str, tuple[str, ...]]") -> None:
        self.compiler = compiler
        self.bundles = bundles
        self.paths = paths
        self.special = special
        self.flat: "dict[str, tuple[str, ...]]" = {}
        self.reported: "set[str]" = set()

    def names(self, names) -> "tuple[str, ...]":
        out: "set[str]" = set()
        for name in names:
            out.update(self.one(name, ()))
        return tuple(sorted(out))

    def one(self, name: str, stack: "tuple[str, ...]") -> "tuple[str, ...]":
        if name in self.special:
            return self.special[name]
        if name not in self.bundles:
            return (name,)  # a service, or an unknown name that the graph check reports
        if name in self.flat:
            return self.flat[name]
        if name in stack:
            cycle = stack[stack.index(name):] + (name,)
            if name not in self.reported:
                self.reported.update(cycle)
                self.compiler.problems.append(Problem(
                    self.paths.get(name, name), "bundles contain each other: " + " -> ".join(cycle),
                    hint="remove one of them from the other's contents.d"))
            return ()
        out: "set[str]" = set()
        for member in self.bundles[name]:
            out.update(self.one(member, stack + (name,)))
        self.flat[name] = tuple(sorted(out))
        return self.flat[name]


def compile_s6_overlay(root: str, environ: "Mapping[str, str] | None" = None,
                       files: "DefinitionFiles | None" = None) -> Plan:
    """Compile s6-overlay's layouts of ROOT into one plan (see the module docstring).

    The plan's source is ROOT/etc/services.d; svtree.toml is read there. Its layout and
    root say where it came from, so that recompile(plan) compiles this layout again.
    S6_* variables come from `environ` (svtree's own environment by default).
    """
    environ = os.environ if environ is None else environ
    root = os.path.abspath(root)
    if not has_tree(root):
        raise NoTreeError(os.path.join(root, SERVICES_DIR), f"no {SERVICES_DIR} and no {S6RC_DIR} in {root}")
    overlay = _Overlay(root, _Compiler(os.path.join(root, SERVICES_DIR), files))
    # The stages in this order: problems are reported in the order they are found.
    settings, global_bytes = overlay.read_services_d()
    s6 = read_s6_variables(environ)
    overlay.compiler.problems += s6.problems
    settings = overlay.apply_s6_variables(s6, settings)
    overlay.add_scripts(s6)
    overlay.drop_services_named_like_scripts()
    if os.path.isdir(overlay.s6rc_dir):
        overlay.read_s6rc(find_execlineb(environ.get("PATH")))
    expand = overlay.resolve_dependencies()
    overlay.mark_unreached_down(expand)
    return overlay.assemble(s6, settings, global_bytes, expand)


class _Overlay:
    """One compile of s6-overlay's layouts, built up stage by stage (compile_s6_overlay)."""

    def __init__(self, root: str, compiler: _Compiler) -> None:
        self.root = root
        self.compiler = compiler
        self.services_dir = os.path.join(root, SERVICES_DIR)
        self.s6rc_dir = os.path.join(root, S6RC_DIR)
        self.read: "dict[str, _Read]" = {}  # every service so far
        self.legacy: "tuple[str, ...]" = ()  # services.d's, with their loggers
        self.scripts: "dict[str, str]" = {}  # synthesized service -> its script
        self.base: "tuple[str, ...]" = ()  # what `base` stands for
        self.bundles: "dict[str, tuple[str, ...]]" = {b: () for b in USER_BUNDLES}
        self.bundle_paths: "dict[str, str]" = {}
        self.atomic: "dict[str, _Read]" = {}  # s6-rc's longruns and oneshots
        self.warnings: "list[str]" = []

    def read_services_d(self) -> "tuple[GlobalSettings, bytes | None]":
        """services.d's services, as in a plain tree, and its svtree.toml."""
        settings, global_bytes = GlobalSettings(), None
        if os.path.isdir(self.services_dir):
            found = discover(self.services_dir)
            self.compiler.problems += found.problems
            settings, global_bytes = self.compiler.read_global(found.global_file)
            for name in found.names:
                self.read.update(self.compiler.read_with_logger(name))
            self.legacy = tuple(sorted(self.read))  # with their loggers (NAME/log): they start after base too
        return settings, global_bytes

    def apply_s6_variables(self, s6, settings: GlobalSettings) -> GlobalSettings:
        settings = replace(
            settings,
            kill_grace=s6.kill_grace if s6.kill_grace is not None else settings.kill_grace,
            boot_timeout=s6.boot_timeout, boot_failure=s6.boot_failure,
            main_receives_signals=s6.main_receives_signals,
            container_environment=None if s6.keep_env else CONTAINER_ENVIRONMENT)
        if s6.services_grace is not None:
            for name in self.legacy:  # their own stop_timeout (service.toml) wins
                r = self.read[name]
                if "stop_timeout" not in r.origins:
                    self.read[name] = _Read(replace(r.spec, stop_timeout=s6.services_grace), r.origins)
        return settings

    def add_scripts(self, s6) -> None:
        """cont-init.d's scripts as a chain of oneshots, cont-finish.d's as a chain of
        oneshots whose finish is the script; `base` is the end of the first and the start
        of the second."""
        compiler, root = self.compiler, self.root
        inits = _scripts(compiler, os.path.join(root, INIT_DIR), INIT_PREFIX)
        finishes = _scripts(compiler, os.path.join(root, FINISH_DIR), FINISH_PREFIX)
        for _, path in inits + finishes:
            compiler.problems += compiler.scripts.check(path, required=True, env_path=None)
        true = shutil.which("true") if finishes else None
        if finishes and true is None:
            compiler.problems.append(Problem(
                os.path.join(root, FINISH_DIR), "needs the program `true` (the run of each "
                "cont-finish oneshot), and it is not on PATH", hint="install coreutils or busybox"))
        previous: "tuple[str, ...]" = ()
        # S6_BEHAVIOUR_IF_STAGE2_FAILS 0 or 1: s6-overlay runs every script whatever one
        # exits, then the services; 2 (svtree's rule): a failing script stops the tree.
        may_fail = s6.boot_failure != "stop"
        for name, path in inits:
            self.read[name] = _Read(ServiceSpec(name=name, path=root, type="oneshot", run=path,
                                                depends_on=previous, may_fail=may_fail), {})
            self.scripts[name] = path
            previous = (name,)
        finish_timeout = {} if s6.finish_maxtime is None else {"finish_timeout": s6.finish_maxtime}
        for i, (name, path) in enumerate(finishes):
            after = (finishes[i + 1][0],) if i + 1 < len(finishes) else ()
            self.read[name] = _Read(ServiceSpec(name=name, path=root, type="oneshot", run=true or "true",
                                                finish=path, depends_on=after, **finish_timeout), {})
            self.scripts[name] = path
        self.base = tuple(sorted(previous + ((finishes[0][0],) if finishes else ())))

    def drop_services_named_like_scripts(self) -> None:
        for name in self.legacy:
            if name in self.scripts:
                self.compiler.problems.append(Problem(
                    os.path.join(self.services_dir, name), f'"{name}" is also the name of the script '
                    f"{self.scripts[name]}", hint="rename the service directory"))
                self.legacy = tuple(n for n in self.legacy if n.split("/")[0] != name)

    def read_s6rc(self, execlineb: "str | None") -> None:
        """s6-overlay v3: the s6-rc sources, and their bundles."""
        own_user = os.path.isdir(os.path.join(self.s6rc_dir, "user"))
        bundles_dir = os.path.join(self.root, BUNDLES_DIR)
        directories = [self.s6rc_dir] + ([] if own_user or not os.path.isdir(bundles_dir) else [bundles_dir])
        source = read_sources(self.compiler, directories, USER_BUNDLES if own_user else (),
                              OVERLAY_NAMES, execlineb)
        self.warnings += source.warnings
        self.bundles.update(source.bundles)
        self.bundle_paths.update(source.bundle_paths)
        self.atomic = source.atomic
        for name in sorted(set(self.atomic) | set(source.bundles)):
            if name in self.read:
                self.compiler.problems.append(Problem(
                    os.path.join(self.s6rc_dir, name), f'"{name}" is also the name of '
                    + (f"the script {self.scripts[name]}" if name in self.scripts else
                       f"the service {os.path.join(self.services_dir, name)}"),
                    hint="svtree has one name space: rename one of them"))
                self.atomic.pop(name, None)
        _pipelines(self.compiler, self.atomic, self.bundles, self.bundle_paths, self.read)

    def resolve_dependencies(self) -> _Expander:
        """s6-overlay's names and the bundles in dependencies, resolved to services;
        services.d's services after base and user."""
        base, legacy = self.base, self.legacy
        special = {"base": base, "legacy-cont-init": base, "fix-attrs": (), "legacy-services": legacy,
                   "s6rc-oneshot-runner": (), "s6rc-fdholder": ()}
        expand = _Expander(self.compiler, self.bundles, self.bundle_paths, special)
        special["top"] = tuple(sorted({*base, *legacy, *expand.names(USER_BUNDLES)}))
        user = expand.names(["user"])
        for name in legacy:
            r = self.read[name]
            extra = tuple(sorted({*r.spec.depends_on, *base, *user}))
            self.read[name] = _Read(replace(r.spec, depends_on=extra), r.origins)
        for name, r in self.atomic.items():
            self.read[name] = _Read(replace(r.spec, depends_on=expand.names(r.spec.depends_on)), r.origins)
        return expand

    def mark_unreached_down(self, expand: _Expander) -> None:
        """What starts: everything but the s6-rc services that neither user nor user2 reaches."""
        read = self.read
        wanted = set(read) - set(self.atomic)
        todo = list(expand.names(USER_BUNDLES))
        while todo:
            name = todo.pop()
            if name in wanted or name not in read:
                continue
            wanted.add(name)
            todo.extend(read[name].spec.depends_on)
        for name in set(self.atomic) - wanted:
            read[name] = _Read(replace(read[name].spec, down=True), read[name].origins)

    def assemble(self, s6, settings: GlobalSettings, global_bytes: "bytes | None",
                 expand: _Expander) -> Plan:
        compiler, scripts, atomic = self.compiler, self.scripts, self.atomic
        shown = {name: expand.names([name]) for name in sorted(self.bundles)}  # reports cycles of unused ones too
        used = tuple((n, v) for n, v in s6.used)
        plan = assemble(compiler, self.read, settings, global_bytes,
                        files_of=lambda spec: (
                            script_digest(scripts[spec.name], compiler.files, compiler.problems)
                            if spec.name in scripts else
                            definition_digest(spec.path, compiler.files, compiler.problems,
                                              SERVICE_RC if spec.name in atomic else SERVICE)))
        mapped = [(n, v) for n, v in used if n in KNOWN and KNOWN[n].apply is not None]
        digest = plan.source_digest
        if mapped:  # a plan compiled with other values of these is stale
            digest = hashlib.sha256((digest + json.dumps(mapped)).encode()).hexdigest()
        return replace(plan, layout="s6-overlay", root=self.root, source_digest=digest,
                       bundles=tuple(shown.items()) if atomic or any(self.bundles.values()) else (),
                       s6_variables=used, warnings=tuple(s6.warnings + self.warnings))


def _pipelines(compiler: _Compiler, atomic: "dict[str, _Read]", bundles: "dict[str, tuple[str, ...]]",
               bundle_paths: "dict[str, str]", read: "dict[str, _Read]") -> None:
    """Check producer-for against consumer-for, as s6-rc-compile does; each producer
    depends on its logger; a last consumer's pipeline-name is a bundle of its pipeline."""
    consumers = {name: consumers_declared(r.spec.path, compiler.files) for name, r in atomic.items()}
    for name, r in atomic.items():
        logger = r.spec.logger
        if logger is None:
            continue
        where = os.path.join(r.spec.path, "producer-for")
        if logger not in atomic or atomic[logger].spec.type != "longrun":
            kind = "no s6-rc service" if logger not in atomic else "a oneshot"
            compiler.problems.append(Problem(where, f'"{logger}" is {kind}: a producer feeds a longrun',
                                             hint="name the logger's directory"))
            continue
        if name not in consumers[logger]:
            compiler.problems.append(Problem(
                os.path.join(atomic[logger].spec.path, "consumer-for"),
                f'does not name "{name}", which names "{logger}" in its producer-for',
                hint=f"add {name} to {logger}/consumer-for"))
            continue
        atomic[name] = _Read(replace(r.spec, depends_on=tuple(sorted({*r.spec.depends_on, logger}))),
                             r.origins)
    for name, producers in consumers.items():
        for producer in producers:
            if producer not in atomic or atomic[producer].spec.logger != name:
                compiler.problems.append(Problem(
                    os.path.join(atomic[name].spec.path, "consumer-for"),
                    f'names "{producer}", which does not name "{name}" in its producer-for',
                    hint=f"write {name} in {producer}/producer-for, or remove the line"))
        label = pipeline_name(atomic[name].spec.path, compiler.files)
        if producers and label is not None and atomic[name].spec.logger is None:
            members, todo = set(), [name]
            while todo:
                member = todo.pop()
                if member not in members:
                    members.add(member)
                    todo.extend(consumers.get(member, ()))
            if label in atomic or label in bundles or label in read or label in OVERLAY_NAMES:
                compiler.problems.append(Problem(os.path.join(atomic[name].spec.path, "pipeline-name"),
                                                 f'"{label}" is already a name', hint="choose another"))
            else:
                bundles[label] = tuple(sorted(members))
                bundle_paths[label] = atomic[name].spec.path
