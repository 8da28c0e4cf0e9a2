"""The dependency graph: unknown names, self-dependencies, cycles, start levels.

An edge a -> b means "a depends on b" (b starts first). Everything here is linear in
services + dependencies (Tarjan's strongly connected components, Kahn's levels), so a
tree of thousands of services compiles as fast per service as a small one.
"""

from __future__ import annotations

from collections import deque
from typing import Callable

from svtree.compiler.settings import did_you_mean
from svtree.errors import Problem

# Where a service's dependency on `dep` was written: (path, key) for a Problem.
Origin = Callable[[str, str], "tuple[str, str | None]"]


def check_dependencies(
    deps: "dict[str, tuple[str, ...]]", origin: Origin
) -> "tuple[dict[str, tuple[str, ...]], list[Problem]]":
    """Unknown and self dependencies. Returns the graph of the known ones, and the problems."""
    names = sorted(deps)
    known = set(names)
    graph: "dict[str, tuple[str, ...]]" = {}
    problems: "list[Problem]" = []
    for name in names:
        kept = []
        for dep in deps[name]:
            if dep == name:
                path, key = origin(name, dep)
                problems.append(Problem(path, f'"{name}" depends on itself', key=key,
                                        hint="remove it from its own dependencies"))
            elif dep not in known:
                path, key = origin(name, dep)
                problems.append(Problem(path, f'no service named "{dep}"', key=key,
                                        hint=did_you_mean(dep, names)))
            else:
                kept.append(dep)
        graph[name] = tuple(kept)
    return graph, problems


def strongly_connected(graph: "dict[str, tuple[str, ...]]") -> "list[list[str]]":
    """Tarjan's algorithm, iterative (a chain of 5,000 services must not hit the recursion limit).

    Returns the components of more than one service: each holds at least one cycle.
    """
    index: "dict[str, int]" = {}
    low: "dict[str, int]" = {}
    stack: "list[str]" = []
    on_stack: "set[str]" = set()
    found: "list[list[str]]" = []
    for root in sorted(graph):
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(graph[root]))]
        while work:
            node, edges = work[-1]
            descended = False
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(graph[nxt])))
                    descended = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if descended:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def cycle_in(graph: "dict[str, tuple[str, ...]]", component: "list[str]") -> "list[str]":
    """A shortest cycle through the first name of a strongly connected component: [a, b, a]."""
    start = component[0]
    members = set(component)
    parent: "dict[str, str]" = {start: start}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in graph[node]:
            if nxt == start:
                path = [node]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return [start] + path[::-1][1:] + [start]
            if nxt in members and nxt not in parent:
                parent[nxt] = node
                queue.append(nxt)
    raise AssertionError(f"no cycle through {start} in a strongly connected component")


def check_cycles(graph: "dict[str, tuple[str, ...]]", origin: Origin) -> "list[Problem]":
    """One problem per group of services that depend on each other in a circle."""
    problems = []
    for component in strongly_connected(graph):
        cycle = cycle_in(graph, component)
        path, key = origin(cycle[0], cycle[1])
        problems.append(Problem(path, "dependency cycle: " + " -> ".join(cycle), key=key,
                                hint="remove one of these dependencies"))
    return problems


def start_levels(graph: "dict[str, tuple[str, ...]]") -> "tuple[tuple[str, ...], ...]":
    """Kahn's algorithm by rounds: level 0 has no dependencies, and every service sits one
    level after its latest dependency. Names are sorted within a level. The graph must be
    acyclic with only known names (check_dependencies and check_cycles found nothing).
    """
    waiting = {name: len(set(deps)) for name, deps in graph.items()}
    dependents: "dict[str, list[str]]" = {name: [] for name in graph}
    for name, deps in graph.items():
        for dep in set(deps):
            dependents[dep].append(name)
    levels = []
    current = sorted(name for name, count in waiting.items() if count == 0)
    while current:
        levels.append(tuple(current))
        ready = []
        for name in current:
            for dependent in dependents[name]:
                waiting[dependent] -= 1
                if waiting[dependent] == 0:
                    ready.append(dependent)
        current = sorted(ready)
    if sum(len(level) for level in levels) != len(graph):
        raise ValueError("start_levels: the graph has a cycle")
    return tuple(levels)
