"""The s6-overlay v2 layout: ROOT/etc/{cont-init.d,services.d,cont-finish.d} as one plan.

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

Names: a service name must match `[A-Za-z0-9][A-Za-z0-9._-]*`, so a script `10-adduser`
becomes `cont-init.10-adduser`; a script whose name has other characters is an error that
says to rename it. The scripts' working directory is ROOT. Their settings are the
defaults; there is no service.toml for a script.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import replace

from svtree.compiler.build import _Compiler, _Read, assemble
from svtree.compiler.digest import files_digest, script_digest
from svtree.compiler.discover import NAME, discover, is_ignored
from svtree.errors import Problem
from svtree.plan import Plan, ServiceSpec

INIT_DIR = os.path.join("etc", "cont-init.d")
SERVICES_DIR = os.path.join("etc", "services.d")
FINISH_DIR = os.path.join("etc", "cont-finish.d")
INIT_PREFIX = "cont-init."
FINISH_PREFIX = "cont-finish."


def looks_like_s6_overlay(root: str) -> bool:
    """ROOT/etc has services.d and cont-init.d: what `svtree` chooses without a tree given."""
    return (os.path.isdir(os.path.join(root, SERVICES_DIR))
            and os.path.isdir(os.path.join(root, INIT_DIR)))


def automatic_root(explicit_dir: "str | None", root: str = "/") -> "str | None":
    """ROOT (/) when svtree should run its s6-overlay v2 layout without being told: no DIR
    given, no $SVTREE_DIR, no ./services.d, and ROOT/etc has services.d and cont-init.d
    (SPEC §1 would fall back to /etc/services.d and ignore the cont-init.d scripts)."""
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


def compile_s6_overlay(root: str) -> Plan:
    """Compile the s6-overlay v2 layout of ROOT into one plan (see the module docstring).

    The plan's source is ROOT/etc/services.d; svtree.toml is read there. Its layout and
    root say where it came from, so that recompile(plan) compiles this layout again.
    """
    root = os.path.abspath(root)
    services_dir = os.path.join(root, SERVICES_DIR)
    found = discover(services_dir)
    compiler = _Compiler(services_dir)
    compiler.problems += found.problems
    settings, global_bytes = compiler.read_global(found.global_file)
    read = {name: compiler.read_service(name) for name in found.names}

    inits = _scripts(compiler, os.path.join(root, INIT_DIR), INIT_PREFIX)
    finishes = _scripts(compiler, os.path.join(root, FINISH_DIR), FINISH_PREFIX)
    for _, path in inits + finishes:
        compiler.problems += compiler.scripts.check(path, required=True, env_path=None)
    true = shutil.which("true") if finishes else None
    if finishes and true is None:
        compiler.problems.append(Problem(
            os.path.join(root, FINISH_DIR), "needs the program `true` (the run of each "
            "cont-finish oneshot), and it is not on PATH", hint="install coreutils or busybox"))

    scripts: "dict[str, str]" = {}  # synthesized service -> its script
    previous: "tuple[str, ...]" = ()
    for name, path in inits:
        read[name] = _Read(ServiceSpec(name=name, path=root, type="oneshot", run=path,
                                       depends_on=previous), {})
        scripts[name] = path
        previous = (name,)
    last_init = previous
    for i, (name, path) in enumerate(finishes):
        after = (finishes[i + 1][0],) if i + 1 < len(finishes) else ()
        read[name] = _Read(ServiceSpec(name=name, path=root, type="oneshot", run=true or "true",
                                       finish=path, depends_on=after), {})
        scripts[name] = path
    first_finish = (finishes[0][0],) if finishes else ()

    for name in found.names:
        if name in scripts:
            compiler.problems.append(Problem(
                os.path.join(services_dir, name), f'"{name}" is also the name of the script '
                f"{scripts[name]}", hint="rename the service directory"))
            continue
        r = read[name]
        extra = tuple(sorted(set(r.spec.depends_on) | set(last_init) | set(first_finish)))
        read[name] = _Read(replace(r.spec, depends_on=extra), r.origins)

    plan = assemble(compiler, read, settings, global_bytes,
                    files_of=lambda spec: (script_digest(scripts[spec.name]) if spec.name in scripts
                                           else files_digest(spec.path)))
    return replace(plan, layout="s6-overlay", root=root)
