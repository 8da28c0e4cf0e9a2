"""Where things are. A leaf: stdlib only (ctl imports it)."""

from __future__ import annotations

import os


def socket_path(explicit: "str | None" = None) -> str:
    """--socket, else $SVTREE_SOCKET, else /run/svtree/control.sock for root, else
    $XDG_RUNTIME_DIR/svtree/control.sock (or /tmp/svtree-UID/control.sock without it)."""
    if explicit:
        return explicit
    env = os.environ.get("SVTREE_SOCKET")
    if env:
        return env
    if os.getuid() == 0:
        return "/run/svtree/control.sock"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "svtree", "control.sock")
    return f"/tmp/svtree-{os.getuid()}/control.sock"
