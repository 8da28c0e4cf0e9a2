"""`svtree ctl`: the thin client of the control socket.

It imports only the wire format and the leaves (tests/unit/test_imports.py counts them):
no structlog, no watchfiles, no TOML parser, no core, so it starts fast.
"""

from __future__ import annotations

import math
import os
import _socket  # not `socket`: its enums and selectors cost ctl 15 ms of start-up
import sys
import time

from svtree import exitcodes, paths, wire

USAGE = """\
usage: svtree ctl [--socket PATH] [--json] VERB ...
  status [NAME...] [-r]                one row per service (--json: a list of objects;
                                       -r, --resources: with CPU and memory)
  start NAME... [--wait]               want up (--wait: until ready)
  stop NAME... [--wait]                want down; stays down until started
  restart NAME... [--wait]             stop then start (--wait: until the new one is ready)
  signal SIG NAME...                   send SIG (TERM, SIGHUP, 9) to the service's process
  reload                               recompile the tree and apply the difference
  wait --up|--ready|--down [--timeout S] NAME...
  check                                exit 0 when every wanted service is up and ready
  shutdown [--wait]                    begin the ordered shutdown
  logs [NAME...] [-n N] [-f]           the last lines each service printed (-n: at most N
                                       of each; -f: then follow them until Ctrl-C)
"""

CONNECT_TIMEOUT = 5.0  # seconds to get into svtree's listen queue and send the request


class Usage(Exception):
    pass


def parse(argv: "list[str]") -> dict:
    """The request (and ctl's own options) of a command line; Usage when it is wrong."""
    opts, pos = _options(argv)
    if not pos:
        raise Usage("a verb is needed")
    verb, rest = pos[0], pos[1:]
    if verb not in wire.VERBS:
        raise Usage(f'unknown verb "{verb}"')
    if opts["timeout"] is not None:
        opts["timeout"] = _timeout(opts["timeout"])
    req = {"v": wire.PROTOCOL, "verb": verb}
    if verb == "signal":
        if not rest:
            raise Usage("signal needs SIG and at least one NAME")
        req["signal"], rest = rest[0], rest[1:]
    if verb in wire.NEEDS_NAMES and not rest:
        raise Usage(f"{verb} needs at least one NAME")
    if verb in wire.NO_NAMES and rest:
        raise Usage(f"{verb} takes no NAME")
    if (opts["lines"] is not None or opts["follow"]) and verb != "logs":
        raise Usage(f"-n and -f are options of logs, not of {verb}")
    if opts["resources"]:
        if verb != "status":
            raise Usage(f"-r is an option of status, not of {verb}")
        req["resources"] = True
    if verb == "logs":
        if opts["lines"] is not None:
            if not opts["lines"].isdigit():
                raise Usage(f'-n takes a number of lines, not "{opts["lines"]}"')
            req["lines"] = int(opts["lines"])
        req["follow"] = opts["follow"]
    if verb == "wait":
        if not opts["mode"]:
            raise Usage("wait needs --up, --ready or --down")
        req["mode"] = opts["mode"]
    req["names"] = rest
    if opts["wait"]:
        req["wait"] = True
    if opts["timeout"] is not None:
        req["timeout"] = opts["timeout"]
    return {"request": req, **opts}


def _options(argv: "list[str]") -> "tuple[dict, list[str]]":
    """ctl's options (before or after the verb) and the other words, in order."""
    opts = {"socket": None, "json": False, "wait": False, "timeout": None, "mode": None,
            "lines": None, "follow": False, "resources": False}
    pos: "list[str]" = []
    it = iter(argv)
    for arg in it:
        if arg in ("-h", "--help"):
            raise Usage("")
        if arg in ("--socket", "--timeout", "-n", "--lines"):
            try:
                value = next(it)
            except StopIteration:
                raise Usage(f"{arg} needs a value") from None
            opts["lines" if arg in ("-n", "--lines") else arg[2:]] = value
        elif arg.startswith("--lines="):
            opts["lines"] = arg.split("=", 1)[1]
        elif arg.startswith("-n") and arg[2:].isdigit():
            opts["lines"] = arg[2:]
        elif arg in ("-f", "--follow"):
            opts["follow"] = True
        elif arg in ("-r", "--resources"):
            opts["resources"] = True
        elif arg.startswith("--socket="):
            opts["socket"] = arg.split("=", 1)[1]
        elif arg.startswith("--timeout="):
            opts["timeout"] = arg.split("=", 1)[1]
        elif arg == "--json":
            opts["json"] = True
        elif arg == "--wait":
            opts["wait"] = True
        elif arg.startswith("--") and arg[2:] in wire.WAIT_MODES:
            if opts["mode"] and opts["mode"] != arg[2:]:
                raise Usage("give one of --up, --ready, --down")
            opts["mode"] = arg[2:]
        elif arg.startswith("--"):
            raise Usage(f"unknown option {arg}")
        else:
            pos.append(arg)
    return opts, pos


def _timeout(text: str) -> float:
    """--timeout's seconds: a finite number from 0 to wire.MAX_TIMEOUT."""
    try:
        value = float(text)
    except ValueError:
        raise Usage(f'--timeout takes seconds, not "{text}"') from None
    # float() also takes "inf" and "nan", which JSON cannot carry (json.dumps writes
    # them as Infinity / NaN anyway) and no deadline can be built from.
    if not math.isfinite(value):
        raise Usage(f'--timeout takes a number of seconds, not "{value}"')
    if value < 0:
        raise Usage("--timeout must not be negative")
    if value > wire.MAX_TIMEOUT:
        raise Usage(f"--timeout must be at most {wire.MAX_TIMEOUT:g} s (leave it out to wait forever)")
    return value


def _connect(s, path: str) -> None:
    """connect(2) with a deadline. A unix socket whose listen queue is full fails a
    non-blocking connect with EAGAIN at once (it has no EINPROGRESS), and a socket with
    a timeout is non-blocking underneath: so a busy svtree would read as a dead one.
    Try again until the deadline instead."""
    deadline = time.monotonic() + CONNECT_TIMEOUT
    pause = 0.005
    while True:
        try:
            s.connect(path)
            return
        except BlockingIOError:
            if time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def replies(path: str, req: dict, timeout: "float | None"):
    """Send one request; yield each JSON line svtree answers until it hangs up (most
    verbs answer one line, `logs` a stream). Raises OSError when svtree cannot be
    reached, ValueError on a line that is not JSON."""
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.settimeout(CONNECT_TIMEOUT)
        _connect(s, path)
        try:
            s.sendall(wire.encode_line(req))
        except (BrokenPipeError, ConnectionResetError):
            # svtree may answer before reading (a refused uid, too many clients) and
            # hang up: its answer is already queued here, so read it before giving up.
            pass
        s.settimeout(timeout)
        buf = b""
        while True:
            try:
                data = s.recv(65536)
            except ConnectionResetError:
                data = b""  # it hung up on a request it did not read; what it said is in buf
            if not data:
                break
            lines = (buf + data).split(b"\n")
            buf = lines.pop()
            for line in lines:
                yield wire.decode(line)
        if buf.strip():
            yield wire.decode(buf)
    finally:
        s.close()


def _duration(seconds: "float | None") -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{seconds:.1f}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _cpu(seconds) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.2f}s" if seconds < 60 else _duration(seconds)


def _bytes(n) -> str:
    """Memory as `top` shows it: binary units, three digits."""
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            break
        n /= 1024
    return f"{n}B" if unit == "B" else f"{n:.0f}{unit}" if n >= 100 else f"{n:.3g}{unit}"


def _last_exit(value) -> str:
    if value is None:
        return "-"
    if value < 0:
        from svtree.signames import signal_name

        return "SIG" + signal_name(-value)
    return str(value)


# `ctl status` on a terminal: the state coloured by what it means for the user.
STATE_COLOURS = {
    "ready": "32", "done": "32",  # green: as wanted
    "up": "33", "starting": "33",  # yellow: on its way
    "failed": "31", "backoff": "31",  # red: something is wrong
}
BOLD = "1"


def _paint(text: str, code: "str | None") -> str:
    return f"\033[{code}m{text}\033[0m" if code else text


def use_colour(stream) -> bool:
    """Colour only for a person: a terminal, not NO_COLOR (no-color.org), not TERM=dumb."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        return False
    return tty and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def format_status(rows: "list[dict]", colour: bool = False, resources: bool = False) -> str:
    """The status table, columns aligned; with `resources`, CPU and MEM columns at the end;
    with `colour`, the header bold and each state coloured (ANSI), padded by its visible
    width so the columns still line up."""
    header = ("NAME", "STATE", "PID", "UPTIME", "RESTARTS", "LAST_EXIT", "READY")
    header += ("CPU", "MEM") if resources else ()
    table = [header] + [
        (r["name"], r["state"], str(r["pid"] or "-"), _duration(r["uptime"]), str(r["restarts"]),
         _last_exit(r["last_exit"]), "yes" if r["ready"] else "no")
        + ((_cpu(r.get("cpu_seconds")), _bytes(r.get("memory_bytes"))) if resources else ())
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = []
    for number, row in enumerate(table):
        cells = [cell.ljust(w) for cell, w in zip(row, widths)]
        cells[-1] = cells[-1].rstrip()
        if colour and number == 0:
            cells = [_paint(cell, BOLD) for cell in cells]
        elif colour:
            state = row[1]
            cells[1] = _paint(state, STATE_COLOURS.get(state)) + cells[1][len(state):]
        lines.append("  ".join(cells) + "\n")
    return "".join(lines)


def _iso(when) -> str:
    """Unix seconds as RFC 3339 in UTC, with microseconds (as svtree's JSON log)."""
    if not isinstance(when, (int, float)):
        return ""
    whole = int(when)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + ".%06dZ" % int((when - whole) * 1e6)


def _text(line: str) -> str:
    """A line for JSON output: bytes that were not UTF-8 as \\xNN escapes."""
    try:
        line.encode()
        return line
    except UnicodeEncodeError:
        return line.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def print_logs(messages, as_json: bool, prefix: bool, flush_each: bool) -> int:
    """Print the stream of a `logs` answer (after its {"ok": true}): each service's
    stdout lines on stdout, its stderr lines on stderr, as the bytes it wrote, with
    `NAME | ` before each when several services may show; --json: one object a line."""
    out, errout = sys.stdout.buffer, sys.stderr.buffer
    last = out
    try:
        for msg in messages:
            if msg.get("end"):
                return exitcodes.OK
            name = msg.get("service", "?")
            if "dropped" in msg:
                text = f"--- {msg['dropped']} lines of {name} dropped: ctl logs fell behind ---"
                obj = {"service": name, "stream": "svtree", "dropped": msg["dropped"], "line": text}
                data, target = (wire.encode_line(obj) if as_json else text.encode() + b"\n"), out
            elif as_json:
                stamp, stream = _iso(msg.get("time")), msg.get("stream")
                data, target = b"".join(
                    wire.encode_line({"service": name, "stream": stream, "time": stamp, "line": _text(line)})
                    for line in msg.get("lines") or ()), out
            else:
                stream = msg.get("stream")
                head = f"{name} | " if prefix and stream != "svtree" else ""
                text = "".join(f"{head}{line}\n" for line in msg.get("lines") or ())
                data = text.encode("utf-8", "surrogateescape")
                target = errout if stream == "stderr" else out
            if target is not last:  # keep stdout and stderr lines in order on a terminal
                last.flush()
                last = target
            target.write(data)
            if flush_each:
                target.flush()
        sys.stderr.write("svtree ctl: logs: svtree closed the connection\n")
        return exitcodes.FAILURE
    except KeyboardInterrupt:  # Ctrl-C ends `logs -f`: the way out, not an error
        return exitcodes.OK
    except BrokenPipeError:  # `ctl logs | head`: the reader has what it wanted
        return exitcodes.OK
    except (OSError, ValueError) as e:
        sys.stderr.write(f"svtree ctl: logs: {getattr(e, 'strerror', None) or e}\n")
        return exitcodes.FAILURE
    finally:
        for stream in (out, errout):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass


def main(argv: "list[str]") -> int:
    err = sys.stderr.write
    try:
        opts = parse(argv)
    except Usage as e:
        if str(e):
            err(f"svtree ctl: {e}\n")
            err(USAGE)
            return exitcodes.USAGE
        sys.stdout.write(USAGE)
        return exitcodes.OK
    req = opts["request"]
    path = paths.socket_path(opts["socket"])
    wait_timeout = None
    if req.get("timeout") is not None:
        wait_timeout = req["timeout"] + 5.0
    elif not (req.get("wait") or req["verb"] == "wait"):
        wait_timeout = 30.0
    if req["verb"] == "logs" and req["follow"]:
        wait_timeout = None
    messages = replies(path, req, wait_timeout)
    try:
        reply = next(messages, None)
        if reply is None:
            raise ConnectionError("svtree closed the connection without answering")
    except (FileNotFoundError, ConnectionRefusedError) as e:
        err(f"svtree ctl: svtree is not running (cannot connect to {path}: {e.strerror})\n")
        return exitcodes.FAILURE
    except PermissionError as e:
        err(f"svtree ctl: cannot connect to {path}: {e.strerror} (run as root or svtree's user)\n")
        return exitcodes.FAILURE
    except (OSError, ValueError) as e:
        err(f"svtree ctl: no answer from svtree at {path}: {getattr(e, 'strerror', None) or e}\n")
        return exitcodes.FAILURE
    verb = req["verb"]
    if verb == "logs" and reply.get("ok"):
        return print_logs(messages, opts["json"], prefix=len(req["names"]) != 1, flush_each=req["follow"])
    return print_reply(reply, verb, opts["json"], resources=opts["resources"])


def print_reply(reply: dict, verb: str, as_json: bool, resources: bool = False) -> int:
    """Print a one-line answer as ctl shows it; return ctl's exit code."""
    err = sys.stderr.write
    if as_json:
        if verb == "status" and reply.get("ok"):
            keys = wire.STATUS_KEYS + (wire.RESOURCE_KEYS if resources else ())
            out = [{k: r.get(k) for k in keys} for r in reply["services"]]
        else:
            out = reply
        import json

        sys.stdout.write(json.dumps(out, indent=1) + "\n")
    if not reply.get("ok"):
        if not as_json or verb != "status":
            if reply.get("errors"):
                for line in reply["errors"]:
                    err(line + "\n")
            err(f"svtree ctl: {verb}: {reply.get('error')}\n")
        return exitcodes.USAGE if reply.get("usage") else exitcodes.FAILURE
    if as_json:
        return exitcodes.OK
    if verb == "status":
        sys.stdout.write(format_status(reply["services"], colour=use_colour(sys.stdout), resources=resources))
    elif verb == "reload":
        changes = [(k, reply.get(k) or []) for k in ("added", "removed", "changed")]
        if not any(v for _, v in changes):
            sys.stdout.write("no change\n")
        for kind, names in changes:
            if names:
                sys.stdout.write(f"{kind}: {' '.join(names)}\n")
    return exitcodes.OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
