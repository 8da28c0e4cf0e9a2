"""Messages between ctl, the core and monitors. A leaf: stdlib only.

Core <-> monitor: one JSON object per SOCK_SEQPACKET datagram.
ctl <-> core: one JSON object per line on a unix stream socket, each carrying
`"v": PROTOCOL`; a request longer than MAX_REQUEST bytes is refused.
"""

from __future__ import annotations

import json

PROTOCOL = 1
MAX_REQUEST = 64 * 1024
MAX_DATAGRAM = 16 * 1024

# core -> monitor commands
UP, DOWN, RESTART, SIGNAL, EXIT = "up", "down", "restart", "signal", "exit"


def encode(obj: dict) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def decode(data: bytes) -> dict:
    obj = json.loads(data)
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    return obj


def encode_line(obj: dict) -> bytes:
    return encode(obj) + b"\n"
