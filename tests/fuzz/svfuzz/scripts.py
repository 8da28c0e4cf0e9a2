"""What an example becomes on disk: each service's run and finish scripts (every
process they start records its life, `KIND NAME PID TIME [EXTRA]`, in the events file),
its service.toml, and the main command."""

from __future__ import annotations

from svfuzz.example import FLOOD_LINES, RESTART_DELAY_MAX, SLOW_FINISH, Example, Svc


# Every line: KIND NAME PID TIME [EXTRA]. `date` runs before the write, so TIME is a
# moment at which the writing process was certainly alive.
LIB = """E='{events}'
if [ -n "${{EPOCHREALTIME:-}}" ]; then  # bash: a timestamp without a fork
  rec() {{ echo "$1 $N $$ ${{EPOCHREALTIME/./}}000 $2" >> "$E"; }}
else
  rec() {{ echo "$1 $N $$ $(date +%s%N) $2" >> "$E"; }}
fi
"""

# run waits on a child so that a trapped TERM is handled at once (dash runs the trap
# when `wait` is interrupted), and replaces that child if it ever dies.
FOREVER = """sleep 1000 & c=$!
while :; do wait $c; kill -0 $c 2>/dev/null || {{ sleep 1000 & c=$!; }}; done
"""
TRAP_EXIT = "trap 'rec term; kill $c $z 2>/dev/null; rec exit 0; exit 0' TERM\n"


def run_script(svc: Svc, lib: str) -> str:
    head = f"#!/bin/sh\nN={svc.name}\n. {lib}\nrec start\n"
    if svc.type == "longrun" and svc.behaviour == "ignore_term":
        # bash: its `term` line is written the moment the trap runs (no fork for the
        # time), so a SIGKILL right after the TERM cannot hide the TERM.
        head = head.replace("#!/bin/sh", "#!/bin/bash", 1)
    if svc.type == "oneshot":
        return head + f"sleep {svc.delay}\nrec oneshot-exit {svc.code}\nexit {svc.code}\n"
    b = svc.behaviour
    if b == "forever":
        return head + TRAP_EXIT + FOREVER.format()
    if b == "ignore_term":
        return head + """trap 'rec term; G=1' TERM
sleep 1000 & c=$!
while :; do
  if [ -n "$G" ]; then rec alive; sleep 0.05
  else wait $c; kill -0 $c 2>/dev/null || { sleep 1000 & c=$!; }
  fi
done
"""
    if b == "slow_stop":
        k = max(1, round(svc.delay / 0.05))
        return head + (
            "trap 'rec term; kill $c 2>/dev/null; i=0; "
            f"while [ $i -lt {k} ]; do rec alive; sleep 0.05; i=$((i+1)); done; "
            "rec exit 0; exit 0' TERM\n") + FOREVER.format()
    if b in ("forks", "daemon"):
        trap = 'trap "rec cterm" TERM; ' if svc.stubborn else ""
        kind = "hb" if b == "forks" else "dhb"
        loop = f"sh -c 'N={svc.name}; . {lib}; {trap}while :; do rec {kind}; sleep 0.2; done' &"
        if b == "forks":
            extra = f"{loop}\n{loop}\n"
        else:  # double fork, and out of the session: the monitor (a subreaper) adopts it
            extra = f"( setsid {loop} )\n"
        return head + TRAP_EXIT + extra + FOREVER.format()
    if b == "zombies":
        # The holder execs a sleep that never waits: its two children stay zombies under
        # a live parent (svtree cannot and must not reap those). The subshell's child is
        # an orphan for the monitor to reap.
        return head + TRAP_EXIT + (
            "sh -c 'sleep 0.01 & sleep 0.01 & exec sleep 1000' & z=$!\n"
            "( sleep 0.05 & )\n") + FOREVER.format()
    if b == "flood":
        return head + TRAP_EXIT + (
            f'seq 1 {FLOOD_LINES} | sed -u "s/^/flood $$ /"\n'
            f'seq 1 {FLOOD_LINES} | sed -u "s/^/eflood $$ /" >&2\n'
            "rec flooded\n") + FOREVER.format()
    if b == "notify":
        return head + TRAP_EXIT + (
            f"sleep {svc.delay}\nrec ready\necho >&3\nexec 3>&-\n") + FOREVER.format()
    if b == "exit_now":
        return head + f"rec exit {svc.code}\nexit {svc.code}\n"
    if b == "self_kill":
        return head + TRAP_EXIT + (
            f"sleep {svc.delay}\nrec selfkill {svc.sig}\nkill -{svc.sig} $$\n") + FOREVER.format()
    raise ValueError(b)


def finish_script(svc: Svc, lib: str) -> "str | None":
    if svc.finish == "none":
        return None
    head = f'#!/bin/sh\nN={svc.name}\n. {lib}\nrec finish-start "$1:$2"\n'
    return head + {
        "quick": "rec finish-end\nexit 0\n",
        "slow": f"sleep {SLOW_FINISH}\nrec finish-end\nexit 0\n",
        "hung": "while :; do rec fin-alive; sleep 0.05; done\n",
        "f125": "rec finish-end\nexit 125\n",
    }[svc.finish]


def service_toml(svc: Svc) -> str:
    out = []
    if svc.type == "oneshot":
        out.append('type = "oneshot"')
    if svc.deps:
        out.append("depends_on = [" + ", ".join(f'"{d}"' for d in svc.deps) + "]")
    if svc.type == "longrun":
        out.append(f'restart = "{svc.restart}"')
        out.append(f"restart_delay = {svc.restart_delay}")
        out.append(f"restart_delay_max = {RESTART_DELAY_MAX}")
    out.append(f"stop_timeout = {svc.stop_timeout}")
    out.append(f"finish_timeout = {svc.finish_timeout}")
    if svc.type == "longrun" and svc.behaviour == "notify":
        out.append("notification_fd = 3")
    if svc.critical:
        out.append("critical = true")
    return "\n".join(out) + "\n"


def main_command(ex: Example, lib: str) -> "list[str] | None":
    if ex.main is None:
        return None
    sleep_s, code = ex.main[:2]
    leaves = ex.main[2] if len(ex.main) > 2 else ""
    daemon = ""
    if leaves:
        # A daemon of the main command (double fork, own session): an orphan of svtree,
        # left for the final sweep (SIGTERM, then SIGKILL after kill_grace).
        trap = 'trap "rec cterm" TERM; ' if leaves == "stubborn" else ""
        daemon = f"( setsid sh -c 'N=maind; . {lib}; {trap}while :; do rec mhb; sleep 0.2; done' & ); "
    # TERM during the sleep kills sh (143); after the sleep TERM is ignored so that the
    # recorded exit and the real one agree.
    return ["sh", "-c", f"N=main; . {lib}; rec main-start; {daemon}sleep {sleep_s}; trap '' TERM; "
                        f"rec main-exit {code}; exit {code}"]
