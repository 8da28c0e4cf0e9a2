"""The README's key tables come from the one settings table (STYLE habit 16).

To regenerate after changing svtree/compiler/settings.py:
    python3 -c "from svtree.compiler import settings_markdown; print(settings_markdown())"
and paste it between the settings-table markers of README.md.
"""

import os
import re

from svtree.compiler import settings_markdown

README = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "README.md")


def test_readme_settings_table_is_generated_from_the_settings_table():
    text = open(README).read()
    m = re.search(r"<!-- settings-table:[^>]*-->\n(.*?)\n<!-- /settings-table -->", text, re.S)
    assert m, "README.md lost its settings-table markers"
    assert m.group(1).strip() == settings_markdown().strip()


def test_the_project_stands_on_its_own():
    """The README is the manual and the contract: nothing in the repository cites a
    document users do not have, nor a path of the machine it was written on."""
    root = os.path.dirname(README)
    # Built from pieces, so that this file does not match itself.
    outside = re.compile("|".join([r"SPEC" + r"\.md", r"\.\./" + "shared", "/" + "work/", "/" + "root/"]),
                         re.I)
    found = []
    for top in ("README.md", "svtree", "tests", "bench", "packaging", "examples", ".ci", "pyproject.toml"):
        path = os.path.join(root, top)
        files = [path] if os.path.isfile(path) else [
            os.path.join(d, f) for d, _, names in os.walk(path) for f in names]
        for name in files:
            if "__pycache__" in name or name.endswith((".pyc", ".tar", ".gz")):
                continue
            try:
                with open(name, encoding="utf-8") as f:
                    text = f.read()
            except (UnicodeDecodeError, OSError):
                continue
            for number, line in enumerate(text.splitlines(), 1):
                if outside.search(line):
                    found.append(f"{os.path.relpath(name, root)}:{number}: {line.strip()[:100]}")
    assert not found, "\n".join(found)


def test_every_endpoint_metric_and_ctl_logs_is_documented():
    from svtree.core import http, metrics

    text = open(README).read()
    names = [f[0] for f in metrics.SERVICE_FAMILIES] + [c[0] for c in metrics.COUNTERS] + ["svtree_service_state"]
    missing = [n for n in names if f"`{n}`" not in text]
    missing += [r for r in http.ROUTES if f"`GET {r}`" not in text]
    missing += [w for w in ("**logs [NAME...] [-n N] [-f] [--json]**", "`log_buffer`", "`http`",
                            "`cpu_seconds`", "`memory_bytes`") if w not in text]
    assert not missing, missing
