"""/metrics text (svtree/core/metrics.py), read back with prometheus_client's own parser."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from svtree.core.metrics import STATES, escape, render


def row(name, state="ready", **kw):
    r = {"name": name, "state": state, "pid": 10, "uptime": 1.0, "restarts": 0, "last_exit": None,
         "ready": state in ("ready", "done"), "start_time": 1700000000.25, "cpu_seconds": 0.5,
         "memory_bytes": 4096}
    r.update(kw)
    return r


def parse(text):
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {}
    for f in families.values():
        for s in f.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return families, samples


def test_every_family_is_there_with_its_type_and_help():
    families, _ = parse(render([row("web")], {"reloads": 2, "reload_failures": 1, "orphans_reaped": 7}))
    types = {name: f.type for name, f in families.items()}
    assert types == {
        "svtree_service_up": "gauge", "svtree_service_ready": "gauge", "svtree_service_state": "gauge",
        "svtree_service_restarts": "counter", "svtree_service_last_exit_code": "gauge",
        "svtree_service_start_time_seconds": "gauge", "svtree_service_cpu_seconds": "counter",
        "svtree_service_memory_bytes": "gauge", "svtree_reloads": "counter",
        "svtree_reload_failures": "counter", "svtree_orphans_reaped": "counter",
    }
    assert all(f.documentation for f in families.values())


def test_values_per_service():
    rows = [row("web", restarts=3, last_exit=1, cpu_seconds=1.25, memory_bytes=123 << 20),
            row("setup", state="done", pid=None, start_time=None, last_exit=0, cpu_seconds=0.01,
                memory_bytes=0),
            row("worker", state="backoff", pid=None, start_time=None, last_exit=-9, cpu_seconds=None,
                memory_bytes=None)]
    _, s = parse(render(rows, {"reloads": 2, "reload_failures": 1, "orphans_reaped": 7}))
    web, setup, worker = ((("service", n),) for n in ("web", "setup", "worker"))
    assert s[("svtree_service_up", web)] == 1 and s[("svtree_service_ready", web)] == 1
    assert s[("svtree_service_up", setup)] == 1 and s[("svtree_service_ready", setup)] == 1
    assert s[("svtree_service_up", worker)] == 0 and s[("svtree_service_ready", worker)] == 0
    assert s[("svtree_service_restarts_total", web)] == 3
    assert s[("svtree_service_last_exit_code", web)] == 1
    assert s[("svtree_service_last_exit_code", worker)] == -9
    assert s[("svtree_service_start_time_seconds", web)] == 1700000000.25
    assert ("svtree_service_start_time_seconds", setup) not in s  # nothing runs
    assert s[("svtree_service_cpu_seconds_total", web)] == 1.25
    assert s[("svtree_service_memory_bytes", web)] == 123 << 20
    assert ("svtree_service_cpu_seconds_total", worker) not in s  # unknown, not 0
    assert s[("svtree_reloads_total", ())] == 2
    assert s[("svtree_reload_failures_total", ())] == 1
    assert s[("svtree_orphans_reaped_total", ())] == 7


def test_one_state_sample_per_state_and_only_the_current_one_is_1():
    _, s = parse(render([row("web", state="backoff"), row("db", state="ready")], {}))
    for name, current in (("web", "backoff"), ("db", "ready")):
        values = {st: s[("svtree_service_state", (("service", name), ("state", st)))] for st in STATES}
        assert values == {st: (1.0 if st == current else 0.0) for st in STATES}
    assert len(STATES) == 9


def test_no_services_still_gives_the_counters():
    _, s = parse(render([], {}))
    assert s == {("svtree_reloads_total", ()): 0, ("svtree_reload_failures_total", ()): 0,
                 ("svtree_orphans_reaped_total", ()): 0}


@pytest.mark.parametrize("name", ['we"b', "a\\b", "new\nline", "web.1-x_y"])
def test_label_values_are_escaped(name):
    _, s = parse(render([row(name)], {}))
    assert s[("svtree_service_up", (("service", name),))] == 1
    assert escape('"') == '\\"'
