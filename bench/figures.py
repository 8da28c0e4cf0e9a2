"""The benchmark's figures: one object per figure, which measures and renders its table.

An experiment (run.py) starts a namespace and hands it to the figures it serves; each
figure reads what it needs and keeps samples under named keys, `fig.add(row, ms=12.5)`,
per row (a system in one way of running it: systems.ROWS). A figure's table is its
columns, each reading one name (the median over the rounds, or a value derived from
others), plus "svtree ÷ row" ratios on the columns that say so. The JSON holds the same
as {row: {name: value}}. `Summary` is issue 18's table: one line per figure the targets
are set on, one column per system, read from the figures by name.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time

import systems as S


def status_over_socket(path: str, resources: bool = False) -> float:
    """One `status` request on svtree's control socket from this process (no ctl
    process; `resources`: with CPU and memory, as `ctl status -r`): seconds until the
    whole reply. RuntimeError if it failed."""
    import json
    import socket

    t0 = time.monotonic()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(path)
        req = {"v": 1, "verb": "status", "names": [], **({"resources": True} if resources else {})}
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while b"\n" not in buf:
            data = s.recv(65536)
            if not data:
                break
            buf += data
    if not json.loads(buf).get("ok"):
        raise RuntimeError("status over the socket failed")
    return time.monotonic() - t0


def ms(seconds: float) -> float:
    return seconds * 1000.0


# --- cells and tables -------------------------------------------------------------------

def fmt(v, digits: int = 1) -> str:
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    if abs(v) >= 100 or float(v).is_integer():
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def ratio(a, b) -> str:
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        return "–"
    if b == 0:
        return "–" if a else "1.00"
    if b < 0 or a < 0:  # a difference lost in the noise (a per-service delta): no ratio
        return "–"
    return f"{a / b:.2f}"


def _numeric(text: str) -> bool:
    t = text.replace(",", "").replace(".", "").replace("–", "").replace(" kB", "").replace(" ms", "").strip()
    return t == "" or t.isdigit()


def table(header: "list[str]", rows: "list[list[str]]") -> "list[str]":
    """Markdown; a column is right-aligned when every cell in it is a number."""
    align = ["---:" if i and all(_numeric(r[i]) for r in rows) else "---" for i in range(len(header))]
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


# Rows that are not a system: variants of svtree's client and the floors under it.
EXTRA_ROWS = {
    "svtree -S": "svtree, client run as `python -S`",
    "svtree socket": "svtree, the socket round trip alone (no interpreter start)",
    "python": "the interpreter alone (floor of any Python client here)",
    "python -S": "the interpreter alone, without site",
}
ORDER = ["svtree", "svtree -S", "svtree --no-watch", *[r for r in EXTRA_ROWS if r != "svtree -S"],
         *[r for r in S.ROWS if not r.startswith("svtree")]]


def label_of(row: str) -> str:
    return EXTRA_ROWS.get(row) or S.of_row(row).label


class Col:
    """One column: the median of the samples named `name`, or `value(fig, row)`."""

    def __init__(self, name: str, header: str, digits: int = 1, value=None, text: bool = False,
                 short: "str | None" = None) -> None:
        self.name, self.header, self.digits, self.value, self.text = name, header, digits, value, text
        self.short = short or header  # in the header of its ratio column


class Figure:
    number = "?"
    key = "?"
    columns: "tuple[Col, ...]" = ()
    ratios: "tuple[str, ...]" = ()  # columns that get a "svtree ÷ row" column
    na: "dict[str, str]" = {}  # row -> why it has no figure here

    def __init__(self, cfg, systems: "tuple[str, ...]" = S.ALL) -> None:
        self.cfg = cfg
        self.systems = systems  # the systems of this run: their `na` rows are shown
        self.samples: "dict[str, dict[str, list]]" = {}
        self.texts: "dict[tuple[str, str], str]" = {}  # (row, name) -> a text cell
        self.notes: "dict[str, str]" = {}  # row -> what stands in for a missing value

    def title(self) -> str:
        raise NotImplementedError

    # samples ---------------------------------------------------------------------------
    def add(self, row: str, **named) -> None:
        d = self.samples.setdefault(row, {})
        for name, value in named.items():
            d.setdefault(name, []).append(value)

    def text(self, row: str, name: str, value: str) -> None:
        self.texts[(row, name)] = value

    def note(self, row: str, text: str) -> None:
        self.notes[row] = text

    def all(self, row: str, name: str) -> list:
        return [v for v in self.samples.get(row, {}).get(name, []) if v is not None]

    def median(self, row: str, name: str):
        vals = self.all(row, name)
        return statistics.median(vals) if vals else None

    def get(self, row: str, name: str):
        """A column's value for a row (derived or median)."""
        col = next((c for c in self.columns if c.name == name), None)
        if col is not None and col.value is not None:
            return col.value(self, row)
        return self.median(row, name)

    # rendering -------------------------------------------------------------------------
    def rows(self) -> "list[str]":
        present = set(self.samples) | set(self.notes)
        present |= {r for r in self.na if S.ROWS[r][0] in self.systems}
        return [r for r in ORDER if r in present]

    def cell(self, row: str, col: Col) -> str:
        if col.text:
            return self.texts.get((row, col.name), "")
        if row in self.na:
            return self.na[row] if col is self.columns[0] else "–"
        v = self.get(row, col.name)
        if v is None:
            first = col is next(c for c in self.columns if not c.text)
            return self.notes.get(row, "–") if first else "–"
        return fmt(v, col.digits)

    def ratio_header(self, name: str) -> str:
        if len(self.ratios) == 1:
            return "svtree ÷ row"
        return f"svtree ÷ row ({next(c.short for c in self.columns if c.name == name)})"

    def render(self) -> "tuple[list[str], dict]":
        header = ["system", *(c.header for c in self.columns), *(self.ratio_header(n) for n in self.ratios)]
        body, values = [], {}
        for row in self.rows():
            cells = [label_of(row), *(self.cell(row, c) for c in self.columns)]
            cells += [ratio(self.get("svtree", n), self.get(row, n)) if row not in self.na else "–"
                      for n in self.ratios]
            body.append(cells)
            if row not in self.na:
                values[row] = {c.name: (self.texts.get((row, c.name)) if c.text else self.get(row, c.name))
                               for c in self.columns}
        lines = ["", f"### {self.number}. {self.title()}", ""] + table(header, body)
        return lines, {"number": self.number, "title": self.title(), "values": values}


# --- memory -----------------------------------------------------------------------------

class Snapshot:
    """USS and PSS of every supervisor process of a namespace, read at one moment."""

    def __init__(self, inst: S.Instance) -> None:
        self.pids = inst.supervisor_pids()
        self.uss = {p: inst.ns.uss_kb(p) for p in self.pids}
        self.pss = {p: inst.ns.pss_kb(p) for p in self.pids}
        self.helpers = set(inst.system.helper_pids(inst))  # not per service: svtree's watcher

    def total_uss(self) -> int:
        return sum(v for v in self.uss.values() if v)

    def total_pss(self) -> int:
        return sum(v for v in self.pss.values() if v)

    def monitors(self, system: S.System) -> "list[int]":
        """USS of the per-service supervisors (every process but PID 1 and svtree's watcher)."""
        if not system.per_service_process:
            return []
        return [v for p, v in self.uss.items() if p != 1 and v and p not in self.helpers]


def _per_service(fig: "Figure", row: str, name0: str, name10: str):
    a, b = fig.median(row, name0), fig.median(row, name10)
    return (b - a) / fig.cfg.n_small if a is not None and b is not None else None


class MonitorMemory(Figure):
    number, key = "1", "monitor_memory"
    columns = (
        Col("monitor", "USS of one monitor process", short="monitor"),
        Col("per_service", "USS per service: (with 10 − with 0) / 10", short="per service",
            value=lambda f, r: _per_service(f, r, "uss0", "uss10")),
        Col("pss_per_service", "PSS per service: (with 10 − with 0) / 10",
            value=lambda f, r: _per_service(f, r, "pss0", "pss10")),
    )
    ratios = ("monitor", "per_service")
    na = {"supervisord": "n/a (one process)", "tini": "n/a (no supervisor per service)"}

    def title(self):
        return (f"Memory per supervised service, supervisor processes only (kB; median of "
                f"{self.cfg.runs_small}). svtree's watcher is not a monitor: it is left out of "
                "\"one monitor\" and counts once in both totals of the delta")

    def measure(self, row: str, system: S.System, snap: Snapshot, n: int) -> None:
        if row in self.na:
            return
        if n == 0:
            self.add(row, uss0=snap.total_uss(), pss0=snap.total_pss())
            return
        mons = snap.monitors(system)
        self.add(row, uss10=snap.total_uss(), pss10=snap.total_pss(),
                 monitor=statistics.median(mons) if mons else None)


class TotalMemory(Figure):
    number, key = "2", "total_memory"
    ratios = ("uss10", "uss100")

    def title(self):
        return (f"Total USS of everything the supervisor runs besides the services, "
                f"{self.cfg.n_small} and {self.cfg.n_boot} services (kB; median), read "
                f"{self.cfg.settle:g} s after every service ran")

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.columns = tuple(
            Col(f"{what}{tag}", f"{head}, {n}" + (" services" if what != "procs" else ""),
                digits=0 if what == "procs" else 1, short=f"USS, {n}")
            for tag, n in (("10", cfg.n_small), ("100", cfg.n_boot))
            for what, head in (("uss", "USS"), ("pss", "PSS"), ("procs", "processes")))

    def measure(self, row: str, snap: Snapshot, tag: str) -> None:
        """tag: "10" (figure 1's trees) or "100" (the boot trees)."""
        self.add(row, **{f"uss{tag}": snap.total_uss(), f"pss{tag}": snap.total_pss(),
                         f"procs{tag}": len(snap.pids)})


# --- time -------------------------------------------------------------------------------

class Boot(Figure):
    number, key = "3", "boot"
    ratios = ("boot1", "boot100")

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        self.columns = (
            Col("boot1", "1 service (ms)", short="1"), Col("boot10", f"{cfg.n_small} services (ms)"),
            Col("boot100", f"{cfg.n_boot} services (ms)", short=str(cfg.n_boot)),
            Col("runs", f"runs ({cfg.n_boot})", digits=0, value=lambda f, r: len(f.all(r, "boot100")) or None))

    def title(self):
        return (f"Boot: launch of unshare until the exec of the last service's `sleep` "
                f"(kernel time; ms; median; the 10-service column from figure 1's rounds)")

    def measure(self, row: str, inst: S.Instance, n: int, name: str, timeout: float = 60) -> None:
        """name: boot1, boot10 or boot100 (the last two: cfg.n_small and cfg.n_boot services)."""
        self.add(row, **{name: ms(inst.wait_services(n, timeout) - inst.t_launch)})


class RestartAfterKill(Figure):
    number, key = "4", "restart_after_kill"
    columns = (Col("ms", "ms", digits=2), Col("samples", "samples", digits=0,
                                              value=lambda f, r: len(f.all(r, "ms")) or None))
    ratios = ("ms",)
    na = {"tini": "n/a (does not restart)"}

    def title(self):
        return ("Restart after SIGKILL of a service up > 2 s: kill until the exec of its new "
                "`sleep` (kernel time; ms; median)")

    def measure(self, row: str, inst: S.Instance, name: str) -> None:
        d = inst.system.service_dir(name)
        victim = next((p for p, c in inst.service_pids().items() if c == d), None)
        if victim is None:
            raise RuntimeError(f"no process of {name} to kill")
        host = inst.ns.host_pids()[victim]
        t0 = time.monotonic()
        os.kill(host, signal.SIGKILL)
        self.add(row, ms=ms(inst.wait_new_service(t0, 10, d) - t0))


def run_cmd(system: S.System, cmd: "list[str]", timeout: float = 30) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, env=system.env(), timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: "
                           f"{r.stderr.decode(errors='replace').strip()[:200]}")
    return r


class CtlRestart(Figure):
    number, key = "5", "ctl_restart"
    columns = (Col("ms", "ms"), Col("how", "command", text=True),
               Col("late", "new process after the command returned (ms)"),
               Col("samples", "samples", digits=0, value=lambda f, r: len(f.all(r, "ms")) or None))
    ratios = ("ms",)
    na = {"tini": "n/a (no restart command)"}

    def title(self):
        return "ctl restart until the command returned and the new process runs (ms; median)"

    def measure(self, row: str, inst: S.Instance, name: str, flags: "tuple[str, ...]" = ()) -> None:
        system = inst.system
        cmd = system.restart_cmd(name, flags) if flags else system.restart_cmd(name)
        self.text(row, "how", " ".join(["python3", *flags, "-m svtree ctl restart NAME --wait"])
                  if flags else system.restart_how)
        t0 = time.monotonic()
        run_cmd(system, cmd)
        t_ret = time.monotonic()
        t_new = inst.wait_new_service(t0, 10, system.service_dir(name))
        self.add(row, ms=ms(max(t_ret, t_new) - t0), late=ms(t_new - t_ret) if t_new > t_ret else None)


class Status(Figure):
    number, key = "5b", "status"
    columns = (Col("ms", "ms"), Col("how", "command", text=True),
               Col("samples", "samples", digits=0, value=lambda f, r: len(f.all(r, "ms")) or None))
    ratios = ("ms",)
    na = {"tini": "n/a (no status command)"}

    def title(self):
        return "Status round trip: the status command alone (ms; median)"

    def measure(self, row: str, system: S.System, cmd: "list[str]", how: str) -> None:
        self.text(row, "how", how)
        t0 = time.monotonic()
        run_cmd(system, cmd)
        self.add(row, ms=ms(time.monotonic() - t0))

    def measure_floor(self, row: str, flags: "tuple[str, ...]") -> None:
        self.text(row, "how", " ".join(["python3", *flags, "-c pass"]))
        t0 = time.monotonic()
        subprocess.run([sys.executable, *flags, "-c", "pass"], check=True)
        self.add(row, ms=ms(time.monotonic() - t0))

    def measure_socket(self, path: str) -> None:
        """One `status` request on svtree's control socket from the bench's own process:
        what the core itself costs per request."""
        self.text("svtree socket", "how", "connect, one status request, reply")
        self.add("svtree socket", ms=ms(status_over_socket(path)))


class Shutdown(Figure):
    """Figures 6 and 7: signal until PID 1's exit (which the kernel reports after every
    other process of the namespace is gone), and how each process ended: a service that
    exits on SIGTERM and ends by SIGKILL did not get its graceful stop (the supervisor's
    escalation, or the kernel's when PID 1 left first)."""

    columns = (Col("ms", "ms"), Col("how", "how", text=True),
               Col("services_term", "services that ended on their SIGTERM", digits=0),
               Col("services_killed", "services SIGKILLed", digits=0),
               Col("supervisors_killed", "supervisor processes SIGKILLed (PID 1 left first)", digits=0))
    ratios = ("ms",)

    def __init__(self, cfg, number: str, key: str, n: int, ignoring: bool) -> None:
        super().__init__(cfg)
        self.number, self.key, self.n, self.ignoring = number, key, n, ignoring

    def title(self):
        if not self.ignoring:
            return (f"Shutdown of {self.n} services that exit on SIGTERM: signal until PID 1 "
                    f"exited (kernel time; ms; median; processes: median over the runs)")
        c = self.cfg
        return (f"Shutdown of {self.n} services that ignore SIGTERM, capped at {c.cap_ignore:g} s "
                f"(kernel time; ms; median). Set: svtree stop_timeout = {c.stop_timeout:g}, kill_grace = "
                f"{c.kill_grace:g}; s6 timeout-kill = {int(c.stop_timeout * 1000)}; runit sv -w "
                f"{c.stop_timeout:g} force-stop; supervisord stopwaitsecs = {c.stop_timeout:g}; tini: nothing to set")

    def measure(self, row: str, inst: S.Instance, cap: float) -> bool:
        """Shut the namespace down; False when PID 1 was still there at the cap."""
        system, ev = inst.system, inst.events
        self.text(row, "how", system.shutdown_how)
        hosts = inst.ns.host_pids()  # ns pid -> host pid
        services = {hosts[p] for p in inst.service_pids() if p in hosts}
        others = set(hosts.values()) - services - {inst.pid1}
        ev.watch_exits(hosts.values())
        t0 = time.monotonic()
        system.shutdown(inst)
        t_end = inst.wait_pid1_exit(cap)
        if t_end is None:
            self.add(row, ms=None)
            self.note(row, f"never ends (capped at {cap:g} s)")
            return False
        ev.pump()

        def killed(pids):
            return sum(1 for p in pids if p in ev.exits and ev.exits[p][1] & 0x7F == signal.SIGKILL)

        term = sum(1 for p in services if p in ev.exits and ev.exits[p][1] & 0x7F == signal.SIGTERM)
        self.add(row, ms=ms(t_end - t0), services_term=term, services_killed=killed(services),
                 supervisors_killed=killed(others))
        return True


class Orphans(Figure):
    number, key = "8", "orphans"
    columns = (Col("clear_ms", "ms", digits=2),
               Col("max_unreaped", "max unreaped", digits=0,
                   value=lambda f, r: max(f.all(r, "max_unreaped"), default=None)),
               Col("rate", "orphans made / s"),
               Col("runs", "runs", digits=0, value=lambda f, r: len(f.all(r, "clear_ms")) or None))
    ratios = ("clear_ms",)

    def title(self):
        return (f"{self.cfg.orphans:,} orphans: maker's end until no zombie is left (ms; median), "
                "most unreaped zombies seen at once over all runs (sampled every ~0.2-1 ms)")

    def measure(self, row: str, inst: S.Instance, marker: str) -> bool:
        """False when zombies were still there at the cap."""
        cfg, ns = self.cfg, inst.ns
        deadline = time.monotonic() + 60 + cfg.orphans / 200
        maker_pid = t_end = t_start = None
        max_unreaped = 0
        while True:
            if inst.exited():
                raise RuntimeError(f"PID 1 exited ({inst.tail()})")
            if maker_pid is None and os.path.exists(marker + ".start"):
                with open(marker + ".start") as f:
                    fields = f.read().split()
                maker_pid, t_start = int(fields[0]), float(fields[1])
            if t_end is None and os.path.exists(marker + ".end"):
                with open(marker + ".end") as f:
                    t_end = float(f.read())
            unreaped = makers = 0
            for p in ns.pids():
                st = ns.stat(p)
                if st is None:
                    continue
                comm, state, ppid = st
                makers += comm == "orphanmaker"
                # The maker's own child is a zombie for a moment until the maker reaps it:
                # that one is not an orphan. Every other zombie is the reaper's to reap.
                unreaped += state == "Z" and ppid != maker_pid
            now = time.monotonic()
            max_unreaped = max(max_unreaped, unreaped)
            if t_end is not None and (makers == 0 and unreaped == 0 or now - t_end > cfg.orphans_clear_cap):
                clear = makers == 0 and unreaped == 0
                self.add(row, clear_ms=ms(max(0.0, now - t_end)) if clear else None,
                         max_unreaped=max_unreaped, rate=cfg.orphans / (t_end - t_start))
                if not clear:
                    self.note(row, f"not clear {cfg.orphans_clear_cap:g} s after the maker ended "
                                   f"({unreaped} zombies left; capped)")
                return clear
            if now > deadline:
                raise TimeoutError(f"zombies still there after {deadline - inst.t_launch:.0f} s "
                                   f"({unreaped} unreaped, maker {'done' if t_end else 'running'})")
            time.sleep(0.0002)


class IdleSwitches(Figure):
    number, key = "9", "idle_switches"
    columns = (Col("switches", "switches", digits=0), Col("appeared", "processes that appeared", digits=0))
    ratios = ("switches",)

    def title(self):
        return (f"Context switches of the supervisor's processes over {self.cfg.idle:g} s idle with "
                f"{self.cfg.n_small} services (voluntary + involuntary, every thread)")

    def measure(self, row: str, inst: S.Instance) -> None:
        pids = inst.supervisor_pids()
        before = {p: inst.ns.ctxt(p) for p in pids}
        time.sleep(self.cfg.idle)
        after = {p: inst.ns.ctxt(p) for p in inst.supervisor_pids()}
        total = sum(after[p] - before[p] for p in after
                    if before.get(p) is not None and after[p] is not None)
        self.add(row, switches=total, appeared=len(set(after) - set(before)))


class Reload(Figure):
    number, key = "10", "reload"
    columns = (Col("ms", "ms"), Col("how", "how", text=True),
               Col("samples", "samples", digits=0, value=lambda f, r: len(f.all(r, "ms")) or None))
    ratios = ("ms",)

    def title(self):
        return ("File write until the new service runs (reload; the exec of its `sleep`, "
                "kernel time; ms; median)")

    def measure(self, row: str, inst: S.Instance, new: str, timeout: float, cmd=None) -> None:
        system = inst.system
        staging = os.path.join(inst.work, "staging", new)
        S.write(os.path.join(staging, "run"), S.RUN_SLEEP, executable=True)
        target = os.path.join(system.svc, new)
        t0 = time.monotonic()
        os.rename(staging, target)  # one event, the whole service at once
        t_ret = t0
        if cmd is not None:
            run_cmd(system, cmd)
            t_ret = time.monotonic()
        t_new = inst.wait_new_service(t0, timeout, target)
        self.add(row, ms=ms(max(t_new, t_ret) - t0))


# --- issue 18's table --------------------------------------------------------------------

class Summary:
    """One line per figure with a target, one column per system, read by name."""

    LINES = (
        # (what, figure key, name, unit, target, the best row of each system)
        ("USS of one monitor (per added service)", "monitor_memory", "monitor", "kB", 1000),
        ("USS of everything it runs, 10 services", "total_memory", "uss10", "kB", 18000),
        ("USS of everything it runs, 100 services", "total_memory", "uss100", "kB", 110000),
        ("boot, 1 service (launch → service runs)", "boot", "boot1", "ms", 60),
        ("boot, 100 services", "boot", "boot100", "ms", 250),
        ("restart after SIGKILL (up > 2 s)", "restart_after_kill", "ms", "ms", 2.5),
        ("shutdown, 100 services that exit on TERM", "shutdown", "ms", "ms", 50),
        ("`ctl restart --wait` until the new process runs", "ctl_restart", "ms", "ms", 30),
        ("10,000 orphans: maker's end until no zombie", "orphans", "clear_ms", "ms", 1),
    )
    COLUMNS = ("svtree", "svtree --no-watch", "s6", "s6 (notification-fd)", "runit",
               "runit (SIGHUP)", "runit (stage-3 way)", "supervisord", "tini")

    def __init__(self, figures: "dict[str, Figure]") -> None:
        self.figures = figures

    def render(self) -> "tuple[list[str], dict]":
        cols = [c for c in self.COLUMNS
                if any(c in self.figures[k].samples for _, k, *_ in self.LINES if k in self.figures)]
        body, values = [], {}
        for what, key, name, unit, target in self.LINES:
            fig = self.figures.get(key)
            if fig is None:
                continue
            cells = []
            for c in cols:
                v = fig.get(c, name) if c in fig.samples else None
                cells.append(fmt(v, 2 if unit == "ms" and v is not None and v < 10 else 1) if v is not None else "–")
            sv = fig.get("svtree", name)
            verdict = "–" if sv is None else ("met" if sv <= target else "missed")
            body.append([f"{what} ({unit})", *cells, f"≤ {fmt(target, 1)}", verdict])
            values[what] = {"unit": unit, "target": target, "verdict": verdict,
                            **{c: (fig.get(c, name) if c in fig.samples else None) for c in cols}}
        lines = ["", "### Issue 18's figures (medians; svtree's target and verdict)", ""]
        lines += table(["figure", *cols, "target (svtree)", "svtree"], body)
        return lines, values
