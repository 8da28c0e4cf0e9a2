"""/metrics: the Prometheus text format (version 0.0.4), rendered from status rows and
svtree's counters. A pure function: no clock, no /proc (the rows carry what was read).

A row is a `ctl status --json` row plus `start_time` (Unix seconds the current process
started, None when none runs), `cpu_seconds` and `memory_bytes` (None when unknown).
"""

from __future__ import annotations

from svtree.states import UP_STATES, State

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATES = tuple(s.value for s in State)

# (name, type, help, the row's field, or how to get the value from a row); a value of
# None leaves the service out of that family.
SERVICE_FAMILIES = (
    ("svtree_service_up", "gauge", "1 when the service is up (up, ready, or a oneshot done), else 0.",
     lambda r: 1 if r["state"] in UP_STATES else 0),  # (str enums: a row's string matches)
    ("svtree_service_ready", "gauge", "1 when the service is ready (ready, or a oneshot done), else 0.",
     "ready"),
    ("svtree_service_restarts_total", "counter", "Times the service was started again since svtree started.",
     "restarts"),
    ("svtree_service_last_exit_code", "gauge",
     "How the service's process last ended: its exit code, or minus the signal that killed it.", "last_exit"),
    ("svtree_service_start_time_seconds", "gauge",
     "When the service's running process started, in seconds since the Unix epoch.", "start_time"),
    ("svtree_service_cpu_seconds_total", "counter",
     "CPU time (user and system) of the service's whole process tree, the ended processes included.",
     "cpu_seconds"),
    ("svtree_service_memory_bytes", "gauge",
     "Resident memory of the service's whole process tree (RSS summed over its processes).", "memory_bytes"),
)

COUNTERS = (
    ("svtree_reloads_total", "reloads", "Reloads applied (the tree compiled and its difference applied)."),
    ("svtree_reload_failures_total", "reload_failures",
     "Reloads rejected (an invalid tree, or its compile overran reload_timeout): nothing changed."),
    ("svtree_orphans_reaped_total", "orphans_reaped", "Processes svtree reaped that it had not started."),
)


def escape(value: str) -> str:
    """A label value: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def number(value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def render(rows: "list[dict]", counters: "dict[str, int]") -> str:
    out: "list[str]" = []
    for name, kind, doc, value in SERVICE_FAMILIES:
        out.append(f"# HELP {name} {doc}\n# TYPE {name} {kind}\n")
        for r in rows:
            v = r[value] if isinstance(value, str) else value(r)
            if v is not None:
                out.append(f'{name}{{service="{escape(r["name"])}"}} {number(v)}\n')
        if name == "svtree_service_ready":
            out.append(_states(rows))
    for name, key, doc in COUNTERS:
        out.append(f"# HELP {name} {doc}\n# TYPE {name} counter\n{name} {number(counters.get(key, 0))}\n")
    return "".join(out)


def _states(rows: "list[dict]") -> str:
    """One sample per state and service: 1 for the state it is in (the usual shape of an
    enum in Prometheus, so that `svtree_service_state{state="failed"} == 1` selects)."""
    name = "svtree_service_state"
    out = [f"# HELP {name} 1 for the state the service is in, 0 for the others.\n# TYPE {name} gauge\n"]
    for r in rows:
        service = escape(r["name"])
        for state in STATES:
            out.append(f'{name}{{service="{service}",state="{state}"}} {1 if r["state"] == state else 0}\n')
    return "".join(out)
