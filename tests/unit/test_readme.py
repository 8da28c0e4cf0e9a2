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
