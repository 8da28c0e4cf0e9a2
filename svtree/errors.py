"""Errors as data that carry their place. A leaf: stdlib only."""

from __future__ import annotations

import os
from dataclasses import dataclass


def display_path(path: str) -> str:
    """A path as the user should read it: relative to cwd when it lies below it."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel


@dataclass(frozen=True)
class Problem:
    """One thing wrong in the tree: where (path, key or line) and what to do."""

    path: str
    message: str
    key: "str | None" = None
    line: "int | None" = None
    hint: "str | None" = None

    def render(self) -> str:
        where = display_path(self.path)
        if self.line is not None:
            where += f":{self.line}"
        parts = [where]
        if self.key:
            parts.append(self.key)
        text = self.message if not self.hint else f"{self.message} ({self.hint})"
        return ": ".join(parts) + ": " + text


def plural(count: int, noun: str) -> str:
    """`1 error`, `2 errors`."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def render_problems(problems, prefix: str = "") -> str:
    """Problems one line each, each after `prefix`. A problem is a Problem, or a line
    rendered already (by the compile's child process)."""
    return "".join(f"{prefix}{p if isinstance(p, str) else p.render()}\n" for p in problems)


def invalid_tree(command: str, problems, where: str, consequence: str = "") -> str:
    """What every command prints for an invalid tree: its problems one line each, then
    one line naming the command, how many there are and where (and, after that, what it
    means: "; nothing was started")."""
    return render_problems(problems) + f"{command}: {plural(len(problems), 'error')} in {where}{consequence}\n"


class CompileError(Exception):
    """The tree is invalid. Carries every problem found, not only the first."""

    def __init__(self, problems: "list[Problem]") -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(p.render() for p in self.problems))


class PlanFileError(Exception):
    """A plan file that cannot be used (other version, stale, unreadable)."""
