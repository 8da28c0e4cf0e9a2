"""Helpers for the `svtree import` unit tests: write sources, convert, evaluate run scripts.

A run script is evaluated, not only read: `evaluate` runs it with /bin/sh with its final
`exec WORDS` turned into `set -- WORDS` (and its redirections left out), and prints the working directory, the umask,
each word and the environment, so a test sees exactly what the exec would have received.
"""

from __future__ import annotations

import os
import subprocess
import textwrap

from svtree.importers.model import Conversion, Service
from svtree.importers.writer import service_toml

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]


def write(directory, name: str, text: str) -> str:
    path = os.path.join(str(directory), name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(textwrap.dedent(text).lstrip("\n"))
    return path


def service(conversion: Conversion, name: str) -> Service:
    found = [s for s in conversion.services if s.name == name]
    assert found, f"no service {name!r} in {[s.name for s in conversion.services]}"
    return found[0]


def settings(svc: Service) -> dict:
    """service.toml as the compiler will read it."""
    return tomllib.loads(service_toml(svc.settings))


def evaluate(svc: Service, directory, env: "dict[str, str] | None" = None) -> dict:
    """Run svc's run script up to its exec: {"cwd", "umask", "argv", "env"}.
    The environment is `env` (default: this one) plus the service's `environment`."""
    lines = svc.run.rstrip("\n").split("\n")
    assert lines[-1].startswith("exec "), lines[-1]
    # Redirections (`exec 2>&1`, `exec 1>/dev/null`) would hide what is printed here.
    lines = [line for line in lines[:-1] if not line.startswith("exec ")] + lines[-1:]
    lines[-1] = "set -- " + lines[-1][len("exec "):]
    lines.append("printf '%s\\0' \"$(pwd -P)\" \"$(umask)\" \"$#\" \"$@\"; env -0")
    path = os.path.join(str(directory), f"{svc.name}.evaluate")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    full_env = dict(os.environ if env is None else env)
    full_env.update(settings(svc).get("environment", {}))
    out = subprocess.run(["/bin/sh", path], capture_output=True, env=full_env, timeout=30,
                         cwd=str(directory))
    assert out.returncode == 0, out.stderr.decode()
    fields = out.stdout.decode().split("\0")
    count = int(fields[2])
    argv = fields[3:3 + count]
    environ = dict(item.split("=", 1) for item in fields[3 + count:] if "=" in item)
    return {"cwd": fields[0], "umask": fields[1], "argv": argv, "env": environ}
