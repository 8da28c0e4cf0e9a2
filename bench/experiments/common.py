"""What several of these experiments share."""

from __future__ import annotations

# The core's side of one monitor's start, in a parent that forked svtree's monitor_main
# with `child` as its socket and kept `parent`: tell it `up`, then read its reports
# until its service has a pid (`service`).
UP_AND_WAIT = r'''
child.close()
parent.recv(65536)
parent.send(messages.encode(messages.Command(messages.Cmd.UP)))
service = None
while service is None:
    service = messages.decode_report(parent.recv(65536)).pid
'''


def rollup_kb(pid: int) -> "dict[str, int]":
    """/proc/PID/smaps_rollup's fields in kB, by name (Rss, Pss, Private_Clean, ...)."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1])
    return out


def rollup(pid: int) -> "tuple[int, int]":
    """(USS, PSS) in kB from /proc/PID/smaps_rollup: USS is Private_Clean + Private_Dirty."""
    f = rollup_kb(pid)
    return f["Private_Clean"] + f["Private_Dirty"], f["Pss"]
