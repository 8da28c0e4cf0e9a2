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


def rollup(pid: int) -> "tuple[int, int]":
    """(USS, PSS) in kB from /proc/PID/smaps_rollup: USS is Private_Clean + Private_Dirty."""
    uss = pss = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                uss += int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    return uss, pss
