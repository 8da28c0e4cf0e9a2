"""Command line: parse, then import only the module of the subcommand that runs.

`svtree ctl` is dispatched before argparse builds the other parsers, and the core,
structlog and the compiler are never imported on that path (see tests/unit/test_imports.py).
"""

from __future__ import annotations

import sys

USAGE = """\
usage: svtree [run] [--dir DIR | --plan FILE] [--socket PATH] [--no-watch]
                    [--log-format console|json] [--output prefix|raw] [-- CMD [ARG...]]
       svtree compile [DIR] [-o FILE] [--json]
       svtree ctl [--socket PATH] [--json] VERB ...
       svtree --version | --help
"""

HELP = USAGE + """
svtree runs a tree of services (one directory per service under DIR) as PID 1 of a
container: it compiles the tree, starts services in dependency order under one monitor
each, reaps every zombie, reloads when files change and shuts down in order.

commands:
  run        compile the tree and run it (the default)
  compile    validate the tree and print the plan; -o FILE writes it for `run --plan`
  ctl        talk to the running svtree: status start stop restart signal reload
             wait check shutdown (`svtree ctl --help`)

DIR is --dir, else $SVTREE_DIR, else ./services.d if it exists, else /etc/services.d.
"""


def _usage_error(command: str, message: str) -> int:
    sys.stderr.write(f"{command}: {message}\n{USAGE}")
    return 2


def _parse_run(argv: "list[str]"):
    import argparse

    cmd: "list[str]" = []
    if "--" in argv:
        i = argv.index("--")
        argv, cmd = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(prog="svtree run", add_help=False)
    p.add_argument("--dir")
    p.add_argument("--plan")
    p.add_argument("--socket")
    p.add_argument("--no-watch", action="store_true")
    p.add_argument("--log-format", choices=("console", "json"))
    p.add_argument("--output", choices=("prefix", "raw"))
    args, rest = p.parse_known_args(argv)
    if rest:
        raise ValueError(f"unexpected argument(s): {' '.join(rest)} (a main command goes after --)")
    if args.dir and args.plan:
        raise ValueError("--dir and --plan exclude each other")
    args.cmd = cmd
    return args


def _parse_compile(argv: "list[str]"):
    import argparse

    p = argparse.ArgumentParser(prog="svtree compile", add_help=False)
    p.add_argument("dir", nargs="?")
    p.add_argument("-o", "--output", dest="output")
    p.add_argument("--json", action="store_true")
    args, rest = p.parse_known_args(argv)
    if rest:
        raise ValueError(f"unexpected argument(s): {' '.join(rest)}")
    return args


def main(argv: "list[str] | None" = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "ctl":
        from svtree.ctl import main as ctl_main

        return ctl_main(argv[1:])
    if argv and argv[0] in ("--version", "-V"):
        from svtree import __version__

        print(f"svtree {__version__}")
        return 0
    if argv and argv[0] in ("--help", "-h", "help"):
        sys.stdout.write(HELP)
        return 0
    if argv and argv[0] == "compile":
        try:
            args = _parse_compile(argv[1:])
        except (ValueError, SystemExit) as e:
            return _usage_error("svtree compile", str(e) or "bad arguments")
        from svtree.compiler.command import compile_command

        return compile_command(args.dir, args.output, args.json)
    if argv and argv[0] == "run":
        argv = argv[1:]
    elif argv and argv[0] != "--" and not argv[0].startswith("-"):
        return _usage_error("svtree", f'unknown command "{argv[0]}"')
    try:
        args = _parse_run(argv)
    except (ValueError, SystemExit) as e:
        return _usage_error("svtree run", str(e) or "bad arguments")
    from svtree.core.main import run_command

    return run_command(args)


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
