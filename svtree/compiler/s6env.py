"""s6-overlay's S6_* environment variables, read when an s6-overlay tree is compiled.

One table, `VARIABLES`: each variable s6-overlay v3 documents, with what svtree does with
it. Those with a meaning here become plan settings (a grace time, a boot rule); those
without one are ignored, and each one set gets one warning naming it, as does every
S6_* variable svtree does not know. A value s6-overlay would not accept either (it wants
digits) is a compile error naming the variable. The variables a plan was compiled with
are recorded in it (Plan.s6_variables), so a plan file compiled with other values is
stale.

Only the s6-overlay layout reads them: a plain tree has svtree.toml and service.toml.
Units: s6-overlay's times are milliseconds; svtree's are seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

from svtree.compiler.settings import MAX_SECONDS, toml_literal
from svtree.errors import Problem

PREFIX = "S6_"
WHERE = "environment"  # the "path" of a problem with a variable


class BadValue(ValueError):
    pass


def _digits(value: str) -> int:
    if not value.isdigit() or not value.isascii():
        raise BadValue("must be digits, like s6-overlay wants")
    return int(value)


def milliseconds(value: str) -> float:
    ms = _digits(value)
    if ms / 1000.0 > MAX_SECONDS:
        raise BadValue(f"must be at most {MAX_SECONDS * 1000:.0f} ms")
    return ms / 1000.0


@dataclass
class S6Settings:
    """What the variables set: None (or the default) where they are not set."""

    kill_grace: "float | None" = None  # S6_KILL_GRACETIME
    services_grace: "float | None" = None  # S6_SERVICES_GRACETIME: stop_timeout of services.d
    finish_maxtime: "float | None" = None  # S6_KILL_FINISH_MAXTIME: finish_timeout of cont-finish.d
    boot_timeout: "float | None" = None  # S6_CMD_WAIT_FOR_SERVICES_MAXTIME (0: no limit)
    boot_failure: str = "stop"  # S6_BEHAVIOUR_IF_STAGE2_FAILS
    main_receives_signals: bool = False  # S6_CMD_RECEIVE_SIGNALS
    keep_env: bool = False  # S6_KEEP_ENV
    used: "list[tuple[str, str]]" = field(default_factory=list)  # every S6_* variable set, sorted
    warnings: "list[str]" = field(default_factory=list)
    problems: "list[Problem]" = field(default_factory=list)


def _set(attr: str, convert: "Callable[[str], object]") -> "Callable[[S6Settings, str], None]":
    def apply(s6: S6Settings, value: str) -> None:
        setattr(s6, attr, convert(value))
    return apply


def _boot_timeout(value: str) -> "float | None":
    seconds = milliseconds(value)
    return seconds or None  # 0: wait as long as it takes, as in s6-overlay


def _boot_failure(value: str) -> str:
    n = _digits(value)
    return "continue" if n == 0 else "warn" if n == 1 else "stop"


def _flag(value: str) -> bool:
    return _digits(value) != 0


@dataclass(frozen=True)
class Variable:
    """One S6_* variable: what it means in s6-overlay, what svtree does with it."""

    name: str
    status: str  # "mapped" (sets a plan setting), "same" (svtree already does it), "ignored"
    doc: str  # what svtree does, for the README table
    apply: "Callable[[S6Settings, str], None] | None" = None
    quiet_if: "Callable[[str], bool] | None" = None  # for "ignored": values that need no warning


VARIABLES: "tuple[Variable, ...]" = (
    Variable("S6_KILL_GRACETIME", "mapped",
             "ms: `kill_grace` (the last TERM→KILL wait for stray processes at shutdown)",
             _set("kill_grace", milliseconds)),
    Variable("S6_SERVICES_GRACETIME", "mapped",
             "ms: `stop_timeout` of the `/etc/services.d` services without one of their own "
             "(s6-overlay waits this long for them, then goes on to the final TERM/KILL)",
             _set("services_grace", milliseconds)),
    Variable("S6_KILL_FINISH_MAXTIME", "mapped",
             "ms: `finish_timeout` of each `/etc/cont-finish.d` script",
             _set("finish_maxtime", milliseconds)),
    Variable("S6_CMD_WAIT_FOR_SERVICES_MAXTIME", "mapped",
             "ms: the plan's `boot_timeout`: when the boot (every service not marked down ready, "
             "every oneshot done) is not over this long after it began, "
             "`S6_BEHAVIOUR_IF_STAGE2_FAILS` applies; with 0 or 1, `-- CMD` starts then and what "
             "is still starting goes on; 0: no limit",
             _set("boot_timeout", _boot_timeout)),
    Variable("S6_BEHAVIOUR_IF_STAGE2_FAILS", "mapped",
             "the plan's `boot_failure`, what a failed boot does (a oneshot or a cont-init.d script "
             "failed, or `S6_CMD_WAIT_FOR_SERVICES_MAXTIME` passed): 2 stops the tree and svtree "
             "exits 1; 1 goes on with one `boot_failed` warning, 0 silently: what depends on a "
             "failed oneshot waits (a cont-init.d script holds nothing back), the rest and "
             "`-- CMD` start. Unset: 2, svtree's rule (s6-overlay's default is 0: set it to get that)",
             _set("boot_failure", _boot_failure)),
    Variable("S6_CMD_RECEIVE_SIGNALS", "mapped",
             "nonzero: TERM, INT and QUIT go to the main command (`-- CMD`) while it runs, and its "
             "exit starts the shutdown (USR1, USR2, PWR and WINCH always go to it)",
             _set("main_receives_signals", _flag)),
    Variable("S6_KEEP_ENV", "mapped",
             "services always get svtree's whole environment; unset or 0: svtree also writes it into "
             "`/run/s6/container_environment` before the boot (one file per variable), for "
             "`with-contenv` and `printcontenv`; nonzero: it does not (with-contenv changes nothing "
             "then, as in s6-overlay)",
             _set("keep_env", _flag)),
    Variable("S6_READ_ONLY_ROOT", "same",
             "nothing to do: svtree writes nothing outside `/run` (its control socket)"),
    Variable("S6_CMD_WAIT_FOR_SERVICES", "same",
             "always: `-- CMD` starts once every service is up and ready"),
    Variable("S6_LOGGING", "ignored",
             "0 is what svtree does (output to stdout/stderr, `output = \"prefix\"`); 1 and 2 (a "
             "catch-all logger in `/var/log/s6-uncaught-logs`) are ignored with a warning",
             quiet_if=lambda v: v in ("", "0")),
    *(Variable(name, "ignored", doc) for name, doc in (
        ("S6_VERBOSITY", "svtree's own log lines are structured (`--log-format`)"),
        ("S6_STAGE2_HOOK", "not run: run it from a oneshot the others depend on"),
        ("S6_CMD_ARG0", "not prepended: write it in front of `-- CMD`"),
        ("S6_CMD_USE_TERMINAL", "the main command always has svtree's stdin, stdout and stderr"),
        ("S6_CATCHALL_USER", "there is no catch-all logger"),
        ("S6_LOGGING_SCRIPT", "loggers get no s6-log script from svtree: write it in the logger's `run`"),
        ("S6_SERVICES_READYTIME", "svtree has no start-up race to sleep over"),
        ("S6_FIX_ATTRS_HIDDEN", "`fix-attrs.d` is not supported"),
        ("S6_SYNC_DISKS", "svtree does not sync file systems at shutdown"),
        ("S6_WAIT_FOR_CLOSING_FD", "svtree does not wait on a file descriptor before the boot"),
        ("S6_YES_I_WANT_A_WORLD_WRITABLE_RUN_BECAUSE_KUBERNETES", "svtree does not check `/run`"),
        ("S6_RUNTIME_BUNDLEDIR", "`user` and `user2` are read from `/etc/s6-overlay` only"),
        ("S6_RUNTIME_PROFILE", "`/etc/cont-profile.d` is not read: the tree is `/etc`'s"),
    )),
)
KNOWN: "dict[str, Variable]" = {v.name: v for v in VARIABLES}


def read_s6_variables(environ: "Mapping[str, str]") -> S6Settings:
    """Every S6_* variable of `environ`: applied, warned about, or a problem."""
    s6 = S6Settings()
    for name in sorted(n for n in environ if n.startswith(PREFIX)):
        value = environ[name]
        s6.used.append((name, value))
        variable = KNOWN.get(name)
        if variable is None:
            s6.warnings.append(f"{WHERE}: {name}: not an s6-overlay setting svtree knows: ignored")
            continue
        if variable.status == "ignored":
            if not (variable.quiet_if and variable.quiet_if(value)):
                s6.warnings.append(f"{WHERE}: {name}={value}: ignored: {variable.doc}")
            continue
        if variable.apply is None or value == "":  # empty: as if unset, like s6-overlay's "0$X"
            continue
        try:
            variable.apply(s6, value)
        except BadValue as e:
            s6.problems.append(Problem(WHERE, f"{e}, not {toml_literal(value)}", key=name,
                                       hint="unset it or give a number"))
    return s6


def variables_markdown() -> str:
    """The README's table of S6_* variables, generated from VARIABLES."""
    status = {"mapped": "mapped", "same": "supported (nothing to set)", "ignored": "ignored, with a warning"}
    out = ["| variable | in svtree | what svtree does |", "| --- | --- | --- |"]
    for v in VARIABLES:
        doc = v.doc.replace("|", "\\|")
        out.append(f"| `{v.name}` | {status[v.status]} | {doc} |")
    out.append("| any other `S6_*` | ignored, with a warning | one warning naming it |")
    return "\n".join(out) + "\n"
