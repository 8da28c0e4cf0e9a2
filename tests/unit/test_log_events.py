"""log.EVENTS is the catalogue of svtree's own log events (users parse them): every event
svtree logs is in it, every entry is logged somewhere, and the README lists exactly
these. The calls are found with ast (tests/unit/source_scan.py), so an event logged on a
path no test runs counts too."""

from __future__ import annotations

import importlib
import os
import re

from source_scan import LOG_LEVELS, REPO, log_calls
from svtree.log import EVENTS

# Where code logs an event through a table instead of a literal name (`log.info(table[x])`):
# (module, attribute) of each such table, a dict whose values (or a collection whose
# items) are the event names it logs.
EVENT_TABLES: "list[tuple[str, str]]" = [("svtree.core.report_log", "NAMES")]

# Events the README promises that nothing logs yet (or only at a level svtree does not
# show), each with why. The test fails as soon as one is logged, so that an entry cannot
# outlive its reason.
PENDING: "dict[str, str]" = {}
SHOWN = ("info", "warning", "error", "critical", "exception")  # log.setup's filter: info and above


def events_logged(levels=SHOWN) -> "dict[str, list[str]]":
    """event -> where it is logged at one of `levels`."""
    found: "dict[str, list[str]]" = {}
    computed = []
    for event, level, where in log_calls():
        if event is None:
            computed.append(where)
        elif level in levels:
            found.setdefault(event, []).append(where)
    for module, attribute in EVENT_TABLES:
        table = getattr(importlib.import_module(module), attribute)
        for event in (table.values() if isinstance(table, dict) else table):
            found.setdefault(event, []).append(f"{module}.{attribute}")
    tables = ", ".join(f"{m}.{a}" for m, a in EVENT_TABLES)
    assert not computed or EVENT_TABLES, (
        f"log calls with a computed event name at {computed}: name the event literally, or "
        "list the table the names come from in EVENT_TABLES")
    assert found, f"no log call found (tables: {tables or 'none'}): the scan is broken"
    return found


def test_every_event_logged_is_in_the_catalogue():
    missing = {e: where for e, where in events_logged(LOG_LEVELS).items() if e not in EVENTS}
    assert not missing, f"log.EVENTS lacks events svtree logs: {missing}"


def test_every_event_of_the_catalogue_is_logged():
    logged = events_logged()
    never = sorted(set(EVENTS) - set(logged) - set(PENDING))
    assert not never, f"log.EVENTS has events nothing logs: {never}"


def test_pending_events_are_not_logged_yet():
    logged = events_logged()
    done = {e: logged[e] for e in PENDING if e in logged}
    assert not done, f"logged now: {done}; take them out of PENDING in this test"
    assert set(PENDING) <= set(EVENTS), "a pending event must still be in log.EVENTS"


def test_the_readme_lists_the_catalogue():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"^Events: (.*?)\n\n", text, re.S | re.M)
    assert m, "README.md lost its 'Events:' paragraph"
    listed = re.findall(r"`([a-z_]+)`", re.sub(r"\([^)]*\)", "", m.group(1)))  # not the fields
    assert len(listed) == len(set(listed)), "an event is listed twice"
    assert sorted(listed) == sorted(EVENTS)


def test_the_scan_sees_each_form_of_a_log_call(tmp_path):
    (tmp_path / "m.py").write_text(
        'log.info("a")\nself.log.warning("b", x=1)\nself.core.log.error("c")\n'
        'log.bind(service="s").debug("d")\nlog.info(name)\nprint("e")\nstreams.info("f")\n')
    found = log_calls(str(tmp_path))
    assert sorted((e, level) for e, level, _ in found if e) == [
        ("a", "info"), ("b", "warning"), ("c", "error"), ("d", "debug")]
    assert [e for e, _, _ in found].count(None) == 1


def test_info_is_the_lowest_level_shown():
    """SHOWN above is what log.setup lets through."""
    import structlog

    from svtree import log

    lines: "list[str]" = []
    logger = log.setup("json", sink=lines.append)
    try:
        for level in LOG_LEVELS:
            getattr(logger, level)(f"at_{level}")
    finally:
        structlog.reset_defaults()
    assert sorted(f"at_{level}" for level in SHOWN) == sorted(
        re.search(r'"event": "(\w+)"', line).group(1) for line in lines)
