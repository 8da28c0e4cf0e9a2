"""The compiler: a tree on disk -> an immutable Plan. Knows nothing about processes.

Modules: discover (which directories are services), settings (the one key table),
accounts (user/group -> ids), scripts (run/finish checks), graph (unknown names, cycles,
levels), files (reading definition files: regular files only, bounded, cached), digest
(content hashes of definitions), build (the pass that ties them), s6overlay (s6-overlay's
layouts, with s6rc: its v3 source format, and s6env: its S6_* variables), layout (which
layout a command compiles, compiling it, recompile), planfile, command (`svtree compile`).
What a definition is: svtree/definition.py, shared with the watcher.
"""

from __future__ import annotations

from svtree.compiler.build import compile_tree, find_tree_dir
from svtree.compiler.discover import NoTreeError
from svtree.compiler.files import DefinitionFiles
from svtree.compiler.layout import compile_source, recompile
from svtree.compiler.planfile import load_plan_file
from svtree.compiler.settings import settings_markdown

__all__ = ["DefinitionFiles", "NoTreeError", "compile_source", "compile_tree",
           "find_tree_dir", "load_plan_file", "recompile", "settings_markdown"]
