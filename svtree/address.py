"""`ADDR:PORT` of the HTTP endpoint (`svtree run --http`, `http` in svtree.toml), read the
same way by the command line, the compiler and the core. A leaf: stdlib only.

Addresses are numeric: a host name would need a DNS lookup, which can block, and PID 1
must not. `localhost` is taken as 127.0.0.1 without a lookup; an empty ADDR (`:9100`)
means every IPv4 address (`[::]:9100` listens on IPv6, and on IPv4 too where the system
is dual-stack, as Linux is by default).
"""

from __future__ import annotations

import ipaddress


def parse(text: str) -> "tuple[str, int]":
    """(host, port) from "ADDR:PORT"; ValueError with a message that completes "...: "."""
    if not isinstance(text, str) or ":" not in text:
        raise ValueError(f'must be "ADDR:PORT" like "0.0.0.0:9100" or ":9100", not {text!r}')
    host, _, port_text = text.rpartition(":")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"the port must be a number from 0 to 65535, not {port_text!r}")
    port = int(port_text)
    if host.startswith("[") and host.endswith("]"):
        inner = host[1:-1]
        try:
            return str(ipaddress.IPv6Address(inner)), port
        except ValueError:
            raise ValueError(f"{inner!r} is not an IPv6 address") from None
    if host == "":
        return "0.0.0.0", port
    if host == "localhost":
        return "127.0.0.1", port
    try:
        return str(ipaddress.IPv4Address(host)), port
    except ValueError:
        pass
    if ":" in host:
        raise ValueError(f"an IPv6 address goes in brackets: [{host}]:{port}")
    raise ValueError(f"{host!r} is not a numeric address (give one like 127.0.0.1, 0.0.0.0 "
                     "or [::]: a host name would need a DNS lookup)")


def show(host: str, port: int) -> str:
    """The "ADDR:PORT" form of (host, port), IPv6 in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
