"""Properties of the compiler over generated trees (hypothesis, modest example counts)."""

from __future__ import annotations

import os
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler_trees import make_tree, problems_of, scratch_dir, write_file
from svtree.compiler import compile_tree, load_plan_file
from svtree.plan import dump, load

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Valid service names; ones ending like editor leftovers would be (rightly) ignored.
names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,7}", fullmatch=True).filter(
    lambda n: not n.endswith((".tmp", ".swp")))


def write_graph(root: str, graph: "dict[str, list[str]]", s6_style: "set[str]" = frozenset()) -> str:
    """A tree whose services depend on each other as `graph` says (some via dependencies.d)."""
    services = {}
    for name, deps in graph.items():
        if name in s6_style:
            services[name] = {f"dependencies.d/{d}": "" for d in deps} or {"dependencies.d/": ""}
        else:
            quoted = ", ".join(f'"{d}"' for d in deps)
            services[name] = {"service.toml": f"depends_on = [{quoted}]\n"}
    return make_tree(root, services)


@st.composite
def dags(draw):
    """A random DAG: names in a random order, each may depend on any earlier one."""
    order = draw(st.lists(names, min_size=1, max_size=12, unique_by=str.lower))
    graph = {}
    for i, name in enumerate(order):
        graph[name] = draw(st.lists(st.sampled_from(order[:i]), unique=True, max_size=4)) if i else []
    s6_style = set(draw(st.lists(st.sampled_from(order), unique=True, max_size=3)))
    return graph, s6_style


@st.composite
def cyclic_graphs(draw):
    """A random graph with at least one cycle (and no self-dependency)."""
    nodes = draw(st.lists(names, min_size=2, max_size=10, unique_by=str.lower))
    graph = {n: set() for n in nodes}
    for a in nodes:
        for b in draw(st.lists(st.sampled_from(nodes), max_size=3)):
            if a != b:
                graph[a].add(b)
    loop = draw(st.lists(st.sampled_from(nodes), min_size=2, max_size=len(nodes), unique=True))
    for a, b in zip(loop, loop[1:] + loop[:1]):
        graph[a].add(b)
    return {n: sorted(deps) for n, deps in graph.items()}


def reachable(graph: "dict[str, list[str]]", start: str) -> "set[str]":
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


@FAST
@given(dags())
def test_random_dags_compile_in_dependency_order(case):
    graph, s6_style = case
    with scratch_dir() as root:
        plan = compile_tree(write_graph(root, graph, s6_style))
    level_of = {name: i for i, level in enumerate(plan.levels) for name in level}
    assert sorted(level_of) == sorted(graph)  # every service in exactly one level
    assert sum(len(level) for level in plan.levels) == len(graph)
    for level in plan.levels:
        assert list(level) == sorted(level)
    for name, deps in graph.items():
        spec = plan.by_name()[name]
        assert spec.depends_on == tuple(sorted(deps))
        # Every dependency in an earlier level, and each service as early as it can be.
        assert all(level_of[d] < level_of[name] for d in deps)
        assert level_of[name] == (1 + max(level_of[d] for d in deps) if deps else 0)


@FAST
@given(cyclic_graphs())
def test_graphs_with_a_cycle_are_rejected_with_a_real_cycle(graph):
    with scratch_dir() as root:
        problems = problems_of(write_graph(root, graph))
    cycles = []
    for problem in problems:
        m = re.fullmatch(r"dependency cycle: (.*)", problem.message)
        assert m, problem.render()  # nothing but cycles is wrong with these trees
        cycles.append(m.group(1).split(" -> "))
    assert cycles
    for cycle in cycles:
        assert cycle[0] == cycle[-1] and len(cycle) >= 3
        assert len(set(cycle[:-1])) == len(cycle) - 1  # a simple cycle
        for a, b in zip(cycle, cycle[1:]):
            assert b in graph[a], f"{a} -> {b} is not an edge"
    # Reported once: one cycle per group of mutually dependent services, and every group.
    groups = {frozenset(n for n in graph if n in reachable(graph, n) and s in reachable(graph, n)
                        and n in reachable(graph, s)) | {s}
              for s in graph if s in reachable(graph, s)}
    reported = [frozenset(c) for c in cycles]
    assert len(reported) == len(groups)
    assert all(any(r <= g for g in groups) for r in reported)


settings_values = st.fixed_dictionaries({}, optional={
    "restart": st.sampled_from(['"always"', '"on-failure"', '"never"']),
    "restart_delay": st.integers(0, 20).map(str),
    "critical": st.sampled_from(["true", "false"]),
    "stop_signal": st.sampled_from(['"TERM"', '"INT"', '"SIGHUP"', "9", '"USR1"']),
    "stop_timeout": st.floats(0, 1000, allow_nan=False).map(repr),
    "finish_timeout": st.floats(0, 100, allow_nan=False).map(repr),
    "ready_command": st.text(st.characters(min_codepoint=32, max_codepoint=0x2ff, blacklist_categories=("Cc", "Cs"),
                                           blacklist_characters='"\\'),
                             min_size=1, max_size=20).filter(str.strip).map(lambda s: f'"{s}"'),
    "environment": st.dictionaries(st.from_regex(r"[A-Z_][A-Z0-9_]{0,5}", fullmatch=True),
                                   st.text(st.characters(min_codepoint=32, max_codepoint=126,
                                                         blacklist_characters='"\\'), max_size=8),
                                   max_size=3).map(lambda d: "{" + ", ".join(f'{k} = "{v}"' for k, v in d.items()) + "}"),
})


@FAST
@given(st.lists(settings_values, min_size=1, max_size=5), st.booleans(), st.booleans())
def test_plan_files_round_trip(all_settings, down, oneshot):
    services = {}
    for i, values in enumerate(all_settings):
        toml = "".join(f"{k} = {v}\n" for k, v in values.items())
        if i:
            toml += f'depends_on = ["s{i - 1}"]\n'
        services[f"s{i}"] = {"service.toml": toml}
    services["s0"]["down" if down else "x"] = ""
    if oneshot:
        services["s0"]["service.toml"] = services["s0"]["service.toml"].replace("ready_command", "# ")
        services["s0"]["type"] = "oneshot"
    with scratch_dir() as root:
        tree = make_tree(root, services, global_toml="kill_grace = 0.5\n")
        plan = compile_tree(tree)
        assert load(dump(plan)) == plan
        path = os.path.join(root, "plan.json")
        write_file(path, dump(plan))
        assert load_plan_file(path) == plan


# --- the digest changes when, and only when, its definition changes ----------------------

BASE = {
    "a": {"service.toml": 'restart = "always"\n', "data/conf.txt": "hello\n", "data/empty/": ""},
    "b": {"finish": "#!/bin/sh\necho \"$@\"\n", "notes": b"\x00\x01binary",
          "log/run": ("#!/bin/sh\nexec cat\n", 0o755)},
    "c": {"dependencies.d/a": ""},
}


def _edit(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


# Each: (description, does it change the service's definition?, action on its directory).
# Definition: run, finish, down, service.toml, the s6 files, dependencies.d/, log/; the
# rest of the directory is data a service may write at run time (svtree/definition.py).
CHANGES = [
    ("rewrite run with other bytes", True, lambda d: _edit(f"{d}/run", b"#!/bin/sh\nexec sleep 2\n")),
    ("append one byte to run", True, lambda d: open(f"{d}/run", "ab").write(b" ")),
    ("chmod run", True, lambda d: os.chmod(f"{d}/run", 0o700)),
    ("add a finish", True, lambda d: (_edit(f"{d}/finish", b"#!/bin/sh\n"), os.chmod(f"{d}/finish", 0o755))),
    ("add a down file", True, lambda d: _edit(f"{d}/down", b"")),
    ("change a setting", True, lambda d: open(f"{d}/service.toml", "a").write("stop_timeout = 3\n")),
    ("add a comment to service.toml", True, lambda d: open(f"{d}/service.toml", "a").write("# why\n")),
    ("write an s6 file with the default value", True, lambda d: _edit(f"{d}/timeout-finish", b"5000\n")),
    ("add or edit a logger", True, lambda d: (_edit(f"{d}/log/run", b"#!/bin/sh\nexec cat -u\n"), os.chmod(f"{d}/log/run", 0o755))),
    ("add a data file", False, lambda d: _edit(f"{d}/new.conf", b"")),
    ("add a nested data file", False, lambda d: _edit(f"{d}/x/y/z", b"1")),
    ("add an empty directory", False, lambda d: os.makedirs(f"{d}/emptydir", exist_ok=True)),
    ("write a pid file", False, lambda d: _edit(f"{d}/state.pid", b"123\n")),
    ("add a dotfile", False, lambda d: _edit(f"{d}/.env", b"A=1\n")),
    ("add a symlink", False, lambda d: os.symlink("run", f"{d}/link")),
    ("make a FIFO that is not a definition file", False, lambda d: os.mkfifo(f"{d}/control")),
    ("copy run to a data file", False, lambda d: _edit(f"{d}/run2", open(f"{d}/run", "rb").read())),
    ("rewrite run with the same bytes", False, lambda d: _edit(f"{d}/run", open(f"{d}/run", "rb").read())),
    ("touch run", False, lambda d: os.utime(f"{d}/run", (1, 1))),
    ("leave an editor leftover", False, lambda d: _edit(f"{d}/.run.swp", b"vim")),
    ("leave vim's second swap file", False, lambda d: _edit(f"{d}/.run.swo", b"vim")),
    ("leave a .swo next to run", False, lambda d: _edit(f"{d}/run.swo", b"vim")),
    ("leave a backup file", False, lambda d: _edit(f"{d}/run~", b"old")),
    ("write data into log/", False, lambda d: os.path.isdir(f"{d}/log") and _edit(f"{d}/log/current", b"line\n")),
]


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(sorted(BASE)), st.sampled_from(CHANGES))
def test_digest_changes_when_and_only_when_the_service_changes(target, change):
    description, changes, action = change
    with scratch_dir() as root:
        tree = make_tree(root, BASE)
        before = {s.name: s.digest for s in compile_tree(tree).services}
        action(os.path.join(tree, target))
        plan = compile_tree(tree)
        after = {s.name: s.digest for s in plan.services}
    for name in BASE:
        if name == target and changes:
            assert after[name] != before[name], description
        else:
            assert after[name] == before[name], f"{description} in {target} changed {name}"


@settings(max_examples=20, deadline=None)
@given(st.binary(max_size=64), st.binary(max_size=64))
def test_digest_follows_file_content(first, second):
    # A comment of service.toml: definition bytes the compiler does not check otherwise.
    def toml(data: bytes) -> bytes:
        return b"# " + data.hex().encode() + b"\n"

    with scratch_dir() as root:
        tree = make_tree(root, {"a": {"service.toml": toml(first)}, "b": {}})
        one = compile_tree(tree).by_name()
        _edit(os.path.join(tree, "a", "service.toml"), toml(second))
        two = compile_tree(tree).by_name()
    assert (one["a"].digest == two["a"].digest) == (first == second)
    assert one["b"].digest == two["b"].digest
