"""The bundle's entry script (PyInstaller freezes this): the same entry point as the
`svtree` console script of a pip install."""

from svtree.cli import entry

entry()
