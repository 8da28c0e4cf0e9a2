from svtree.cli import entry

entry()
