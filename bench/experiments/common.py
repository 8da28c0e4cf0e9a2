"""What several of these experiments share."""

from __future__ import annotations

import statistics

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


def schedstat(pid: int) -> float:
    """ms on a CPU so far (/proc/PID/schedstat), 0.0 for a process gone."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e6
    except OSError:
        return 0.0


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def print_medians(title: str, columns: "list[str]", got: "dict[str, list[dict]]",
                  first: int, width: int, scale: float = 1.0) -> None:
    """A table: one row per figure any run of any column has (in the order first seen),
    one column per name in `columns`, each cell the median over that column's runs
    (`got[column]`: one dict of figures per run), times `scale`."""
    keys = list(dict.fromkeys(k for c in columns for d in got[c] for k in d))
    print(f"{title:{first}}" + "".join(f"{c[-(width - 1):]:>{width}}" for c in columns))
    for k in keys:
        cells = []
        for c in columns:
            v = med(d.get(k) for d in got[c])
            cells.append(f"{v * scale:{width}.2f}" if v is not None else f"{'–':>{width}}")
        print(f"{k:{first}}" + "".join(cells))
