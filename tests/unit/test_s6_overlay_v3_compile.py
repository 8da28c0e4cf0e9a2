"""s6-overlay v3 trees compiled into one plan: s6-rc.d's longruns, oneshots (execline up
and down), bundles, user and user2, s6-overlay's own names and order beside the legacy
directories, names, errors with their file, S6_* variables, loggers and pipelines."""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest

from compiler_trees import RUN, make_service, scratch, write_file  # noqa: F401
from svtree import cli
from svtree.compiler import compile_tree, load_plan_file
from svtree.compiler.s6env import variables_markdown
from svtree.compiler.s6overlay import automatic_root, compile_s6_overlay
from svtree.compiler.s6rc import files_markdown
from svtree.errors import CompileError
from svtree.plan import diff

EXECLINEB = shutil.which("execlineb", path=os.environ.get("PATH", "") + os.pathsep + "/command")
needs_execline = pytest.mark.skipif(EXECLINEB is None, reason="needs Debian's execline (execlineb)")
NO_S6: "dict[str, str]" = {"PATH": os.environ.get("PATH", "")}


def rc(root: str, name: str, kind: str, deps=(), **files) -> str:
    """ROOT/etc/s6-overlay/s6-rc.d/NAME of type KIND; files: name -> text (run is executable)."""
    d = os.path.join(root, "etc", "s6-overlay", "s6-rc.d", name)
    write_file(os.path.join(d, "type"), kind + "\n")
    for dep in deps:
        write_file(os.path.join(d, "dependencies.d", dep), "")
    for file, text in files.items():
        write_file(os.path.join(d, file.replace("_", "-")), text, 0o755 if file in ("run", "finish") else 0o644)
    return d


def bundle(root: str, name: str, *contents: str, where: str = "s6-rc.d") -> str:
    d = os.path.join(root, "etc", "s6-overlay", where, name)
    write_file(os.path.join(d, "type"), "bundle\n")
    os.makedirs(os.path.join(d, "contents.d"), exist_ok=True)
    for member in contents:
        write_file(os.path.join(d, "contents.d", member), "")
    return d


def linuxserver(root: str, legacy: bool = True) -> str:
    """init-adduser -> init-config (oneshots, up calls a script), svc-app (longrun),
    user and user2 bundles; with `legacy`, cont-init.d, services.d and cont-finish.d too."""
    scripts = os.path.join(root, "etc", "s6-overlay", "scripts")
    rc(root, "init-adduser", "oneshot", deps=("base",), up=f"{scripts}/init-adduser\n",
       down=f"{scripts}/cleanup\n")
    rc(root, "init-config", "oneshot", deps=("init-adduser",), up=f"{scripts}/init-config\n")
    bundle(root, "init-services", "init-config")
    rc(root, "svc-app", "longrun", deps=("init-services",), run=RUN)
    rc(root, "svc-late", "longrun", deps=("legacy-services",), run=RUN)
    rc(root, "svc-extra", "longrun", run=RUN)
    bundle(root, "user", "init-adduser", "init-config", "svc-app")
    bundle(root, "user2", "svc-late")
    if legacy:
        write_file(os.path.join(root, "etc", "cont-init.d", "10-a"), RUN, 0o755)
        write_file(os.path.join(root, "etc", "cont-init.d", "20-b"), RUN, 0o755)
        make_service(os.path.join(root, "etc", "services.d"), "web")
        write_file(os.path.join(root, "etc", "cont-finish.d", "10-bye"), RUN, 0o755)
    return root


def problems(root: str, environ=None) -> "dict[str, str]":
    """Rendered problems by the path relative to ROOT (or "environment")."""
    with pytest.raises(CompileError) as info:
        compile_s6_overlay(root, environ if environ is not None else NO_S6)
    return {os.path.relpath(p.path, root) if os.path.isabs(p.path) else p.path: p.render()
            for p in info.value.problems}


@needs_execline
def test_a_linuxserver_tree_in_s6_overlay_v3_order(scratch):  # noqa: F811
    plan = compile_s6_overlay(linuxserver(scratch), NO_S6)
    by = plan.by_name()
    base = ("cont-finish.10-bye", "cont-init.20-b")  # what dependencies.d/base stands for
    assert by["init-adduser"].depends_on == base
    assert by["init-config"].depends_on == ("init-adduser",)
    assert by["svc-app"].depends_on == ("init-config",)  # the bundle, expanded
    # services.d after base and every service of user; user2's legacy-services is services.d.
    assert by["web"].depends_on == (*base, "init-adduser", "init-config", "svc-app")
    assert by["svc-late"].depends_on == ("web",)
    # What neither user nor user2 reaches is compiled, and down (ctl start starts it).
    assert [s.name for s in plan.services if s.down] == ["svc-extra"]
    assert dict(plan.bundles) == {"init-services": ("init-config",),
                                  "user": ("init-adduser", "init-config", "svc-app"), "user2": ("svc-late",)}
    assert plan.levels[-3:] == (("svc-app",), ("web",), ("svc-late",))
    assert plan.watch_paths()[-1] == os.path.join(scratch, "etc", "s6-overlay", "s6-rc.d")


@needs_execline
def test_a_oneshot_runs_up_and_down_with_execlineb(scratch):  # noqa: F811
    plan = compile_s6_overlay(linuxserver(scratch, legacy=False), NO_S6)
    adduser = plan.by_name()["init-adduser"]
    d = os.path.join(scratch, "etc", "s6-overlay", "s6-rc.d", "init-adduser")
    assert (adduser.type, adduser.run, adduser.finish, adduser.path) == (
        "oneshot", os.path.join(d, "up"), os.path.join(d, "down"), d)
    assert adduser.interpreter == (EXECLINEB, "-P")
    assert adduser.depends_on == ()  # base without cont-init.d: satisfied at once
    assert plan.by_name()["svc-app"].interpreter == ()


def test_without_execlineb_a_oneshot_is_an_error_naming_its_up_file(scratch):  # noqa: F811
    root = linuxserver(scratch, legacy=False)
    found = problems(root, {"PATH": os.path.join(scratch, "empty")})
    assert set(found) == {"etc/s6-overlay/s6-rc.d/init-adduser/up", "etc/s6-overlay/s6-rc.d/init-config/up"}
    assert "is an execline command line, and execlineb is not installed" in found[
        "etc/s6-overlay/s6-rc.d/init-config/up"]
    assert "apt-get install execline" in found["etc/s6-overlay/s6-rc.d/init-config/up"]


@needs_execline
def test_user_bundles_d_is_read_when_s6_rc_d_has_no_user(scratch):  # noqa: F811
    rc(scratch, "svc-a", "longrun", run=RUN)
    rc(scratch, "svc-b", "longrun", run=RUN)
    bundle(scratch, "user", "svc-a", where="user-bundles.d")
    plan = compile_s6_overlay(scratch, NO_S6)
    assert [(s.name, s.down) for s in plan.services] == [("svc-a", False), ("svc-b", True)]
    # With s6-rc.d/user, user-bundles.d is not read, and user's type file is not needed.
    d = os.path.join(scratch, "etc", "s6-overlay", "s6-rc.d", "user")
    write_file(os.path.join(d, "contents.d", "svc-b"), "")
    plan = compile_s6_overlay(scratch, NO_S6)
    assert [(s.name, s.down) for s in plan.services] == [("svc-a", True), ("svc-b", False)]


@needs_execline
def test_older_list_files_contents_and_dependencies(scratch):  # noqa: F811
    rc(scratch, "a", "longrun", run=RUN)
    rc(scratch, "b", "longrun", run=RUN, dependencies="# a comment\n  a\n\n")
    d = os.path.join(scratch, "etc", "s6-overlay", "s6-rc.d", "user")
    write_file(os.path.join(d, "type"), "bundle\n")
    write_file(os.path.join(d, "contents"), "b\n")
    plan = compile_s6_overlay(scratch, NO_S6)
    assert plan.by_name()["b"].depends_on == ("a",)
    assert not plan.by_name()["a"].down  # reached through b


def test_s6_rc_timeouts_and_down_signal(scratch):  # noqa: F811
    rc(scratch, "a", "longrun", run=RUN, timeout_kill="2500\n", timeout_down="9000\n",
       timeout_up="4000\n", down_signal="SIGHUP\n", notification_fd="3\n")
    rc(scratch, "b", "longrun", run=RUN, timeout_down="7000\n", timeout_up="0\n")
    rc(scratch, "c", "longrun", run=RUN, timeout_kill="2500\n", **{"service.toml": "stop_timeout = 1\n"})
    by = compile_s6_overlay(scratch, NO_S6).by_name()
    assert (by["a"].stop_timeout, by["a"].ready_timeout, by["a"].stop_signal, by["a"].notification_fd) == (
        2.5, 4.0, 1, 3)
    assert (by["b"].stop_timeout, by["b"].ready_timeout) == (7.0, 60.0)  # 0: the default
    assert by["c"].stop_timeout == 1.0  # service.toml is svtree's own word


@needs_execline
def test_a_oneshot_timeout_down_is_its_finish_timeout(scratch):  # noqa: F811
    rc(scratch, "o", "oneshot", up="true\n", down="true\n", timeout_down="1500\n")
    assert compile_s6_overlay(scratch, NO_S6).by_name()["o"].finish_timeout == 1.5


def test_names_svtree_cannot_take_are_one_error_each(scratch):  # noqa: F811
    make_service(os.path.join(scratch, "etc", "services.d"), "web")
    rc(scratch, "my service", "longrun", run=RUN)
    rc(scratch, "s6rc-mine", "longrun", run=RUN)
    rc(scratch, "base", "bundle")
    rc(scratch, "web", "longrun", run=RUN)
    found = problems(scratch)
    rcd = "etc/s6-overlay/s6-rc.d/"
    assert set(found) == {rcd + "my service", rcd + "s6rc-mine", rcd + "base", rcd + "web"}
    assert '"my service" is not a valid service name for svtree' in found[rcd + "my service"]
    assert "s6-rc's own" in found[rcd + "s6rc-mine"]
    assert "s6-overlay's bundle of its own boot" in found[rcd + "base"]
    assert "svtree has one name space" in found[rcd + "web"]


def test_a_bundle_defined_twice(scratch):  # noqa: F811
    bundle(scratch, "user2")
    bundle(scratch, "user2", where="user-bundles.d")  # read: s6-rc.d has no user
    found = problems(scratch)
    assert list(found) == ["etc/s6-overlay/user-bundles.d/user2"]
    assert "is defined twice" in found["etc/s6-overlay/user-bundles.d/user2"]


def test_errors_name_their_file(scratch):  # noqa: F811
    rc(scratch, "notype", "longrun", run=RUN)
    os.unlink(os.path.join(scratch, "etc", "s6-overlay", "s6-rc.d", "notype", "type"))
    rc(scratch, "badtype", "daemon", run=RUN)
    rc(scratch, "norun", "longrun")
    rc(scratch, "badtime", "longrun", run=RUN, timeout_kill="3s\n")
    rc(scratch, "typo", "longrun", deps=("badtimee",), run=RUN)
    bundle(scratch, "loop-a", "loop-b")
    bundle(scratch, "loop-b", "loop-a")
    rcd = "etc/s6-overlay/s6-rc.d/"
    found = problems(scratch)
    assert found == {
        rcd + "notype/type": f"{scratch}/{rcd}notype/type: missing: every s6-rc service needs a type file "
                             "(write longrun, oneshot or bundle in it)",
        rcd + "badtype/type": f'{scratch}/{rcd}badtype/type: must be longrun, oneshot or bundle, not "daemon"',
        rcd + "norun/run": found[rcd + "norun/run"],
        rcd + "badtime/timeout-kill": f'{scratch}/{rcd}badtime/timeout-kill: must hold a number of '
                                      'milliseconds like 5000, not "3s"',
        rcd + "typo/dependencies.d/badtimee": f'{scratch}/{rcd}typo/dependencies.d/badtimee: no service named '
                                              '"badtimee" (did you mean "badtime"?)',
        rcd + "loop-a": f"{scratch}/{rcd}loop-a: bundles contain each other: loop-a -> loop-b -> loop-a "
                        "(remove one of them from the other's contents.d)",
    }
    assert "missing: every service needs a run script" in found[rcd + "norun/run"]


def test_ignored_files_are_warnings(scratch):  # noqa: F811
    rc(scratch, "a", "longrun", run=RUN, max_death_tally="3\n", down="")
    plan = compile_s6_overlay(scratch, NO_S6)
    d = os.path.join(scratch, "etc", "s6-overlay", "s6-rc.d", "a")
    assert plan.warnings == (f"{d}/down: ignored: s6-rc ignores a longrun's down file (a service outside "
                             "the user bundles does not start)",
                             f"{d}/max-death-tally: ignored: svtree keeps no death tally")
    assert plan.by_name()["a"].down  # in no bundle: down all the same


# --- S6_* variables ---------------------------------------------------------------------

def test_s6_variables_set_the_plan(scratch):  # noqa: F811
    root = linuxserver(scratch, legacy=False)
    make_service(os.path.join(root, "etc", "services.d"), "web")
    make_service(os.path.join(root, "etc", "services.d"), "own", {"service.toml": "stop_timeout = 7\n"})
    write_file(os.path.join(root, "etc", "cont-finish.d", "10-bye"), RUN, 0o755)
    environ = dict(NO_S6, S6_KILL_GRACETIME="500", S6_SERVICES_GRACETIME="1500", S6_KILL_FINISH_MAXTIME="2000",
                   S6_CMD_WAIT_FOR_SERVICES_MAXTIME="8000", S6_BEHAVIOUR_IF_STAGE2_FAILS="1",
                   S6_CMD_RECEIVE_SIGNALS="1", S6_KEEP_ENV="1", S6_READ_ONLY_ROOT="1",
                   S6_CMD_WAIT_FOR_SERVICES="1", S6_LOGGING="0")
    if EXECLINEB is None:
        pytest.skip("needs execlineb")
    plan = compile_s6_overlay(root, environ)
    s = plan.settings
    assert (s.kill_grace, s.boot_timeout, s.boot_failure, s.main_receives_signals, s.container_environment) == (
        0.5, 8.0, "warn", True, None)
    by = plan.by_name()
    assert (by["web"].stop_timeout, by["own"].stop_timeout) == (1.5, 7.0)  # service.toml wins
    assert by["svc-app"].stop_timeout == 10.0  # S6_SERVICES_GRACETIME is services.d's only
    assert by["cont-finish.10-bye"].finish_timeout == 2.0
    assert plan.warnings == ()  # each has a meaning here
    assert ("S6_KILL_GRACETIME", "500") in plan.s6_variables


@pytest.mark.parametrize("value, rule", [("0", "continue"), ("1", "warn"), ("2", "stop"), ("3", "stop")])
def test_s6_behaviour_if_stage2_fails(scratch, value, rule):  # noqa: F811
    make_service(os.path.join(scratch, "etc", "services.d"), "web")
    plan = compile_s6_overlay(scratch, dict(NO_S6, S6_BEHAVIOUR_IF_STAGE2_FAILS=value))
    assert plan.settings.boot_failure == rule


def test_unset_s6_variables_keep_svtrees_defaults(scratch):  # noqa: F811
    make_service(os.path.join(scratch, "etc", "services.d"), "web")
    plan = compile_s6_overlay(scratch, NO_S6)
    s = plan.settings
    assert (s.kill_grace, s.boot_timeout, s.boot_failure, s.main_receives_signals) == (3.0, None, "stop", False)
    assert s.container_environment == "/run/s6/container_environment"  # S6_KEEP_ENV's default is 0
    assert plan.by_name()["web"].stop_timeout == 10.0


def test_other_s6_variables_get_one_warning_each(scratch):  # noqa: F811
    make_service(os.path.join(scratch, "etc", "services.d"), "web")
    plan = compile_s6_overlay(scratch, dict(NO_S6, S6_VERBOSITY="1", S6_FOO="x", S6_LOGGING="2",
                                            S6_CMD_WAIT_FOR_SERVICES_MAXTIME="0"))
    assert plan.warnings == (
        "environment: S6_FOO: not an s6-overlay setting svtree knows: ignored",
        'environment: S6_LOGGING=2: ignored: 0 is what svtree does (output to stdout/stderr, `output = "prefix"`); '
        "1 and 2 (a catch-all logger in `/var/log/s6-uncaught-logs`) are ignored with a warning",
        "environment: S6_VERBOSITY=1: ignored: svtree's own log lines are structured (`--log-format`)",
    )
    assert plan.settings.boot_timeout is None  # 0: no limit


def test_a_bad_s6_value_is_an_error_naming_the_variable(scratch):  # noqa: F811
    make_service(os.path.join(scratch, "etc", "services.d"), "web")
    found = problems(scratch, dict(NO_S6, S6_KILL_GRACETIME="3s"))
    assert found == {"environment": 'environment: S6_KILL_GRACETIME: must be digits, like s6-overlay wants, '
                                    'not "3s" (unset it or give a number)'}


def test_mapped_variables_are_part_of_the_source_digest(scratch):  # noqa: F811
    make_service(os.path.join(scratch, "etc", "services.d"), "web")
    plain = compile_s6_overlay(scratch, NO_S6)
    assert compile_s6_overlay(scratch, dict(NO_S6, S6_VERBOSITY="1")).source_digest == plain.source_digest
    assert compile_s6_overlay(scratch, dict(NO_S6, S6_KILL_GRACETIME="1")).source_digest != plain.source_digest


@pytest.mark.parametrize("marker, table", [("s6-variables-table", variables_markdown),
                                           ("s6rc-files-table", files_markdown)])
def test_the_readme_tables_are_generated_from_the_code(marker, table):
    readme = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "README.md")
    m = re.search(rf"<!-- {marker}:[^>]*-->\n(.*?)\n<!-- /{marker} -->", open(readme).read(), re.S)
    assert m, f"README.md lost its {marker} markers"
    assert m.group(1).strip() == table().strip()


# --- loggers ----------------------------------------------------------------------------

def test_a_log_subdirectory_is_the_logger_service_name_log(scratch):  # noqa: F811
    tree = os.path.join(scratch, "services.d")
    make_service(tree, "web", {"log/run": ("#!/bin/sh\nexec cat\n", 0o755)})
    make_service(tree, "db")
    plan = compile_tree(tree)
    by = plan.by_name()
    assert sorted(by) == ["db", "web", "web/log"]
    assert (by["web"].logger, by["web"].depends_on) == ("web/log", ("web/log",))
    assert by["web/log"].path == os.path.join(tree, "web", "log") and by["web/log"].logger is None
    assert plan.levels == (("db", "web/log"), ("web",))  # the logger starts first, stops last
    assert plan.pipelines() == (("web", "web/log"),)


def test_editing_a_logger_restarts_it_and_its_producer(scratch):  # noqa: F811
    tree = os.path.join(scratch, "services.d")
    make_service(tree, "web", {"log/run": ("#!/bin/sh\nexec cat\n", 0o755)})
    before = compile_tree(tree)
    write_file(os.path.join(tree, "web", "log", "run"), "#!/bin/sh\nexec cat -u\n", 0o755)
    assert diff(before, compile_tree(tree)).changed == ("web", "web/log")


def test_s6_rc_pipelines(scratch):  # noqa: F811
    rc(scratch, "svc-app", "longrun", run=RUN, producer_for="svc-app-log\n")
    rc(scratch, "svc-app-log", "longrun", run=RUN, consumer_for="svc-app\nsvc-two\n",
       pipeline_name="app-pipeline\n")
    rc(scratch, "svc-two", "longrun", run=RUN, producer_for="svc-app-log\n")
    bundle(scratch, "user", "app-pipeline")
    plan = compile_s6_overlay(scratch, NO_S6)
    by = plan.by_name()
    assert by["svc-app"].depends_on == ("svc-app-log",) and by["svc-app"].logger == "svc-app-log"
    assert plan.pipelines() == (("svc-app", "svc-app-log"), ("svc-two", "svc-app-log"))
    assert dict(plan.bundles)["app-pipeline"] == ("svc-app", "svc-app-log", "svc-two")
    assert not any(s.down for s in plan.services)  # the pipeline's bundle is in user


def test_s6_rc_pipelines_must_be_declared_both_ways(scratch):  # noqa: F811
    rc(scratch, "a", "longrun", run=RUN, producer_for="a-log\n")
    rc(scratch, "a-log", "longrun", run=RUN)
    rc(scratch, "b-log", "longrun", run=RUN, consumer_for="b\n")
    rc(scratch, "b", "longrun", run=RUN)
    rc(scratch, "c", "longrun", run=RUN, producer_for="x\ny\n")
    found = problems(scratch)
    rcd = "etc/s6-overlay/s6-rc.d/"
    assert set(found) == {rcd + "a-log/consumer-for", rcd + "b-log/consumer-for", rcd + "c/producer-for"}
    assert 'does not name "a", which names "a-log" in its producer-for' in found[rcd + "a-log/consumer-for"]
    assert 'names "b", which does not name "b-log" in its producer-for' in found[rcd + "b-log/consumer-for"]
    assert "must hold one service name, not 2" in found[rcd + "c/producer-for"]


# --- the command line and plan files ------------------------------------------------------

@needs_execline
def test_compile_prints_bundles_pipelines_and_variables(scratch, monkeypatch, capsys):  # noqa: F811
    root = linuxserver(scratch)
    rc(root, "svc-app", "longrun", deps=("init-services",), run=RUN, producer_for="svc-app-log\n")
    rc(root, "svc-app-log", "longrun", run=RUN, consumer_for="svc-app\n")
    monkeypatch.setenv("S6_KILL_GRACETIME", "1000")
    monkeypatch.setenv("S6_SYNC_DISKS", "1")
    assert cli.main(["compile", "--s6-overlay", root]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert out.startswith(f"s6-overlay tree of {root}: 10 services in ")
    assert "svtree.toml and S6_* variables: kill_grace = 1.0\n" in out
    assert "S6_* variables: S6_KILL_GRACETIME=1000 S6_SYNC_DISKS=1\n" in out
    assert "bundle user: init-adduser init-config svc-app\n" in out
    assert "pipeline: svc-app -> svc-app-log\n" in out
    # The bundle init-services stands for init-config; the producer depends on its logger.
    (app,) = [line.split() for line in out.splitlines() if line.startswith("  svc-app ")]
    assert app[:2] == ["svc-app", "longrun"] and " ".join(app[2:]) == (
        'logger = "svc-app-log", depends_on = ["init-config", "svc-app-log"]')
    assert ("start order: cont-finish.10-bye cont-init.10-a svc-app-log svc-extra | cont-init.20-b | "
            "init-adduser | init-config | svc-app | web | svc-late\n") in out
    # The logger counts twice its stop_timeout: the time to read to end of file, then its stop.
    assert ("worst-case shutdown: 61 s = main_stop_timeout 10 (with -- CMD) + services 50 "
            "(svc-late 10 -> web 10 -> svc-app 10 -> svc-app-log 20) + kill_grace 1\n") in out
    assert f"run with {EXECLINEB} -P" in out and 'logger = "svc-app-log"' in out
    assert captured.err == ("svtree compile: warning: environment: S6_SYNC_DISKS=1: ignored: svtree does not "
                            "sync file systems at shutdown\n")
    assert cli.main(["compile", "--json", "--s6-overlay", root]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["pipelines"] == [["svc-app", "svc-app-log"]]


@needs_execline
def test_a_plan_file_keeps_bundles_and_warnings(scratch, monkeypatch, capsys):  # noqa: F811
    root = linuxserver(os.path.join(scratch, "root"))
    target = os.path.join(scratch, "plan.json")
    monkeypatch.setenv("S6_VERBOSITY", "1")
    assert cli.main(["compile", "--s6-overlay", root, "-o", target]) == 0
    plan = load_plan_file(target)
    assert plan == compile_s6_overlay(root)
    assert plan.bundles and plan.warnings
    monkeypatch.setenv("S6_KILL_GRACETIME", "100")  # run with other values: stale
    with pytest.raises(Exception, match="stale"):
        load_plan_file(target)


def test_automatic_choice_of_a_v3_root(scratch, monkeypatch):  # noqa: F811
    root = os.path.join(scratch, "root")
    os.makedirs(os.path.join(root, "etc", "s6-overlay", "s6-rc.d"))
    monkeypatch.chdir(scratch)
    monkeypatch.delenv("SVTREE_DIR", raising=False)
    assert automatic_root(None, root) == root  # s6-rc.d alone is enough


def test_a_root_without_either_tree_is_refused(scratch, capsys):  # noqa: F811
    assert cli.main(["compile", "--s6-overlay", scratch]) == 1
    assert "ROOT needs etc/services.d or etc/s6-overlay/s6-rc.d" in capsys.readouterr().err
    assert cli.main(["run", "--s6-overlay", scratch]) == 2
    assert "nor " + os.path.join(scratch, "etc", "s6-overlay", "s6-rc.d") in capsys.readouterr().err


@needs_execline
def test_recompile_of_a_v3_plan_and_an_edited_up_file(scratch):  # noqa: F811
    from svtree.compiler import recompile

    root = linuxserver(scratch)
    plan = compile_s6_overlay(root)  # svtree's own environment, as a reload's
    assert recompile(plan) == plan
    write_file(os.path.join(root, "etc", "s6-overlay", "s6-rc.d", "init-config", "up"), "true\n")
    assert diff(plan, recompile(plan)).changed == ("init-config",)
