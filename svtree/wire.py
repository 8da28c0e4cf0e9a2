"""Messages between ctl, the core and monitors. A leaf: stdlib only.

Core <-> monitor: one JSON object per SOCK_SEQPACKET datagram (svtree/messages.py).
ctl <-> core: one JSON object per line on a unix stream socket, each carrying
`"v": PROTOCOL`; a request longer than MAX_REQUEST bytes is refused.
"""

from __future__ import annotations

import _json  # the C half of json: `json` itself imports `re`, 10+ ms of ctl's start
import math

PROTOCOL = 1
MAX_REQUEST = 64 * 1024
MAX_DATAGRAM = 16 * 1024

# ctl -> core: the verbs, and what ctl and the core both check of a request
VERBS = ("status", "start", "stop", "restart", "signal", "reload", "wait", "check", "shutdown", "logs")
NEEDS_NAMES = ("start", "stop", "restart", "signal", "wait")  # at least one NAME
NO_NAMES = ("reload", "check", "shutdown")  # no NAME at all
WAIT_MODES = ("up", "ready", "down")  # `ctl wait --up|--ready|--down`
# The longest --timeout, in seconds (three years): more is "forever", which is no
# --timeout; the core's selector cannot take much more (and inf kills it).
MAX_TIMEOUT = 1e8


def _dump(value) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _json.encode_basestring_ascii(value)
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} has no JSON form")
        return float.__repr__(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_dump(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(_json.encode_basestring_ascii(str(k)) + ":" + _dump(v)
                              for k, v in value.items()) + "}"
    raise TypeError(f"{type(value).__name__} has no JSON form")


class _Strict:
    """What _json's scanner reads from a json.JSONDecoder: plain JSON, no NaN."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str):
        raise ValueError(f"{name} is not allowed")


_scan = _json.make_scanner(_Strict())
_SPACE = " \t\n\r"


def encode(obj: dict) -> bytes:
    return _dump(obj).encode()


def decode(data: "bytes | str") -> dict:
    """One JSON object; anything else (or trailing garbage) raises ValueError."""
    try:
        text = data.decode() if isinstance(data, (bytes, bytearray)) else data
        start = len(text) - len(text.lstrip(_SPACE))
        obj, end = _scan(text, start)
    except StopIteration:
        raise ValueError("not JSON") from None
    except (UnicodeDecodeError, RecursionError) as e:
        raise ValueError(f"not JSON ({type(e).__name__})") from None
    if text[end:].strip(_SPACE):
        raise ValueError(f"extra data after the JSON object at {end}")
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    return obj


def encode_line(obj: dict) -> bytes:
    return encode(obj) + b"\n"


# The keys of each row of `ctl status --json`: the rows scripts parse, kept as they are.
STATUS_KEYS = ("name", "state", "pid", "uptime", "restarts", "last_exit", "ready")
# What `ctl status --resources` (and GET /status, always) adds to each row.
RESOURCE_KEYS = ("cpu_seconds", "memory_bytes")
