"""Command line: parse, then import only the module of the subcommand that runs.

`svtree ctl` is dispatched before argparse builds the other parsers, and the core,
structlog and the compiler are never imported on that path (see tests/unit/test_imports.py).
"""

from __future__ import annotations

import os
import sys

from svtree import exitcodes

USAGE = """\
usage: svtree [run] [--dir DIR | --plan FILE | --s6-overlay ROOT] [--socket PATH] [--no-watch]
                    [--log-format console|json] [--output prefix|raw] [--http ADDR:PORT]
                    [-- CMD [ARG...]]
       svtree compile [DIR | --s6-overlay ROOT] [-o FILE] [--json] [--grace SECONDS]
       svtree ctl [--socket PATH] [--json] VERB ...
       svtree import supervisord FILE [-o DIR] [--force] [--dry-run] [--cwd DIR]
       svtree import procfile [FILE] [-o DIR] [--force] [--dry-run] [--cwd DIR]
                              [--env FILE[,FILE]] [--port N]
       svtree --version | --help
"""

HELP = USAGE + """
svtree runs a tree of services (one directory per service under DIR) as PID 1 of a
container: it compiles the tree, starts services in dependency order under one monitor
each, reaps every zombie, reloads when files change and shuts down in order.

commands:
  run        compile the tree and run it (the default)
  compile    validate the tree and print the plan and its worst-case shutdown time;
             -o FILE writes it for `run --plan`; --grace SECONDS warns when the worst
             case exceeds SECONDS (Kubernetes' default grace is 30)
  ctl        talk to the running svtree: status start stop restart signal reload
             wait check shutdown logs (`svtree ctl --help`)
  import     write a tree from a supervisord config (its [include]s too) or a
             Procfile (and .env), then print what did not carry over. -o DIR
             (default ./services.d) must be empty or missing unless --force
             (same-named services replaced, nothing else touched); --dry-run
             prints the files instead; --cwd DIR is where commands run that name
             no directory; --env and --port as honcho's and foreman's

--http ADDR:PORT serves GET /livez, /readyz, /status and /metrics (Prometheus) there,
e.g. --http 0.0.0.0:9100 (or `http = "ADDR:PORT"` in svtree.toml).

DIR is --dir, else $SVTREE_DIR, else ./services.d if it exists, else /etc/services.d.
--s6-overlay ROOT runs s6-overlay's layouts: v3's s6-rc services of
ROOT/etc/s6-overlay/s6-rc.d (the user and user2 bundles, in dependency order) and v2's
ROOT/etc/cont-init.d scripts, ROOT/etc/services.d services and ROOT/etc/cont-finish.d
scripts (at shutdown), in s6-overlay v3's order; S6_* variables are read. It is chosen
for ROOT=/ when no tree is given, there is no ./services.d and /etc has s6-overlay/s6-rc.d,
or both services.d and cont-init.d.
"""


def _usage_error(command: str, message: str) -> int:
    sys.stderr.write(f"{command}: {message}\n{USAGE}")
    return exitcodes.USAGE


def _parser(prog: str):
    """argparse, with its errors raised as ValueError: printed once, in svtree's grammar."""
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str):  # type: ignore[override]
            raise ValueError(message)

    return Parser(prog=prog, add_help=False)


def _parse_run(argv: "list[str]"):
    cmd: "list[str]" = []
    if "--" in argv:
        i = argv.index("--")
        argv, cmd = argv[:i], argv[i + 1:]
    p = _parser("svtree run")
    p.add_argument("--dir")
    p.add_argument("--plan")
    p.add_argument("--socket")
    p.add_argument("--no-watch", action="store_true")
    p.add_argument("--log-format", choices=("console", "json"))
    p.add_argument("--output", choices=("prefix", "raw"))
    p.add_argument("--s6-overlay", dest="s6_overlay", metavar="ROOT")
    p.add_argument("--http", metavar="ADDR:PORT")
    args, rest = p.parse_known_args(argv)
    if rest:
        raise ValueError(f"unexpected argument(s): {' '.join(rest)} (a main command goes after --)")
    if args.http is not None:
        from svtree import address

        try:
            args.http = address.show(*address.parse(args.http))
        except ValueError as e:
            raise ValueError(f"--http: {e}") from None
    given = [flag for flag, value in (("--dir", args.dir), ("--plan", args.plan),
                                      ("--s6-overlay", args.s6_overlay)) if value]
    if len(given) > 1:
        raise ValueError(f"{' and '.join(given)} exclude each other")
    args.cmd = cmd
    return args


def _parse_compile(argv: "list[str]"):
    p = _parser("svtree compile")
    p.add_argument("dir", nargs="?")
    p.add_argument("-o", "--output", dest="output")
    p.add_argument("--json", action="store_true")
    p.add_argument("--grace", metavar="SECONDS")
    p.add_argument("--s6-overlay", dest="s6_overlay", metavar="ROOT")
    args, rest = p.parse_known_args(argv)
    if rest:
        raise ValueError(f"unexpected argument(s): {' '.join(rest)}")
    if args.dir and args.s6_overlay:
        raise ValueError("DIR and --s6-overlay exclude each other")
    if args.grace is not None:
        args.grace = _seconds(args.grace)
    return args


def _parse_import(argv: "list[str]"):
    p = _parser("svtree import")
    p.add_argument("kind", choices=("supervisord", "procfile"))
    p.add_argument("file", nargs="?")
    p.add_argument("-o", "--output")
    p.add_argument("--force", action="store_true")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--cwd", metavar="DIR")
    p.add_argument("--env", action="append", metavar="FILE")
    p.add_argument("--port", metavar="N")
    args, rest = p.parse_known_args(argv)
    if rest:
        raise ValueError(f"unexpected argument(s): {' '.join(rest)}")
    if args.kind == "supervisord":
        if not args.file:
            raise ValueError("import supervisord needs the config FILE (e.g. /etc/supervisor/supervisord.conf)")
        for flag, value in (("--env", args.env), ("--port", args.port)):
            if value is not None:
                raise ValueError(f"{flag} is for Procfiles (supervisord configs set environment= themselves)")
    if args.port is not None:
        if not args.port.isdigit() or not 0 < int(args.port) < 65536:
            raise ValueError(f'--port takes a port number, not "{args.port}"')
        args.port = int(args.port)
    return args


def _seconds(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ValueError(f'--grace takes a number of seconds, not "{text}"')
    return value


def _choose_source(args, command: str) -> "int | None":
    """What to run, as args.source (compiler/layout.py's choice, see HELP; None with
    --plan), saying so when it is s6-overlay's layout chosen by itself. Returns an exit
    code when ROOT has nothing to run."""
    args.source = None
    if args.plan:
        return None
    from svtree.compiler.layout import S6_OVERLAY, choose
    from svtree.compiler.s6overlay import S6RC_DIR, SERVICES_DIR, has_tree

    source = choose(args.dir, args.s6_overlay)
    root = source.path
    if source.automatic:
        sys.stderr.write(f"{command}: no tree given and {os.path.join(root, 'etc')} has s6-overlay's "
                         f"directories: running the s6-overlay layout of {root} "
                         f"(give --dir {source.tree_dir} for a plain tree)\n")
    if source.layout == S6_OVERLAY and not has_tree(root):
        given = args.s6_overlay or root
        sys.stderr.write(f"{command}: --s6-overlay {given}: no directory {os.path.join(given, SERVICES_DIR)}"
                         f" nor {os.path.join(given, S6RC_DIR)} (ROOT is the directory that holds etc/, "
                         "/ in an image)\n")
        return exitcodes.USAGE
    args.source = source
    return None


def main(argv: "list[str] | None" = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "ctl":
        from svtree.ctl import main as ctl_main

        return ctl_main(argv[1:])
    from svtree import selfexec

    selfexec.restore_environ()  # in the bundle: what services and CMD inherit
    if argv and argv[0] in ("--version", "-V"):
        from svtree import __version__

        print(f"svtree {__version__}")
        return exitcodes.OK
    if argv and argv[0] in ("--help", "-h", "help"):
        sys.stdout.write(HELP)
        return exitcodes.OK
    if argv and argv[0] == "compile":
        try:
            args = _parse_compile(argv[1:])
        except (ValueError, SystemExit) as e:
            return _usage_error("svtree compile", str(e) or "bad arguments")
        from svtree.compiler.command import compile_command

        return compile_command(args.dir, args.output, args.json, grace=args.grace,
                               s6_overlay=args.s6_overlay)
    if argv and argv[0] == "import":
        try:
            args = _parse_import(argv[1:])
        except (ValueError, SystemExit) as e:
            return _usage_error("svtree import", str(e) or "bad arguments")
        from svtree.importers.command import import_command

        return import_command(args)
    if argv and argv[0] == "run":
        argv = argv[1:]
    elif argv and argv[0] != "--" and not argv[0].startswith("-"):
        return _usage_error("svtree", f'unknown command "{argv[0]}"')
    try:
        args = _parse_run(argv)
    except (ValueError, SystemExit) as e:
        return _usage_error("svtree run", str(e) or "bad arguments")
    code = _choose_source(args, "svtree run")
    if code is not None:
        return code
    from svtree.core.main import run_command

    return run_command(args)


def entry() -> None:
    code = main()
    # Skip the interpreter's teardown (tens of ms of freeing objects one by one, at the
    # end of every shutdown and every ctl call): flush what we wrote and leave.
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    import os

    os._exit(code)


if __name__ == "__main__":
    entry()
