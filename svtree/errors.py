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


class CompileError(Exception):
    """The tree is invalid. Carries every problem found, not only the first."""

    def __init__(self, problems: "list[Problem]") -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(p.render() for p in self.problems))


class PlanFileError(Exception):
    """A plan file that cannot be used (other version, stale, unreadable)."""
