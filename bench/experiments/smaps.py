#!/usr/bin/env python3
"""Where a process's private memory is: /proc/PID/smaps summed per mapping.

    python3 bench/experiments/smaps.py PID [PID...]

One table per pid: each mapping (file name, [heap], [stack], or the anonymous mapping
that follows a file's: the library's .bss, or CPython's arenas) with its Private_Dirty,
Private_Clean and Rss in kB, largest first, and the total USS. Read as root.
"""

from __future__ import annotations

import sys


def by_mapping(pid: int) -> "dict[str, list[int]]":
    out: "dict[str, list[int]]" = {}
    name, last_file = "?", "?"
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                path = head[5] if len(head) > 5 else ""
                if path.startswith("/"):
                    last_file = path.rsplit("/", 1)[1]
                    name = last_file
                elif path:
                    name = path
                else:
                    name = f"anon (after {last_file})"
                out.setdefault(name, [0, 0, 0])
            elif head[0] == "Private_Dirty:":
                out[name][0] += int(head[1])
            elif head[0] == "Private_Clean:":
                out[name][1] += int(head[1])
            elif head[0] == "Rss:":
                out[name][2] += int(head[1])
    return out


def report(pid: int, top: int = 14) -> str:
    m = by_mapping(pid)
    rows = sorted(m.items(), key=lambda kv: -(kv[1][0] + kv[1][1]))
    total = sum(v[0] + v[1] for v in m.values())
    lines = [f"pid {pid}: USS {total} kB", f"{'mapping':40} {'dirty':>7} {'clean':>7} {'rss':>7}"]
    for name, (d, c, r) in rows[:top]:
        if d + c:
            lines.append(f"{name[:40]:40} {d:7} {c:7} {r:7}")
    return "\n".join(lines)


if __name__ == "__main__":
    for p in sys.argv[1:]:
        print(report(int(p)))
        print()
