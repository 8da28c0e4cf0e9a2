"""Defaults as the README's key tables state them, every key applied, the s6 spellings, DIR lookup."""

from __future__ import annotations

import dataclasses
import grp
import os
import pwd
import shutil

import pytest

from compiler_trees import make_service, make_tree, scratch, write_file  # noqa: F401
from svtree.compiler import compile_tree, find_tree_dir, settings_markdown
from svtree.compiler.command import compile_command, render_plan
from svtree.compiler.settings import GLOBAL_SETTINGS, MAX_SECONDS, SERVICE_SETTINGS
from svtree.plan import GlobalSettings, ServiceSpec

# Written out by hand from the README's key tables (the contract), not from the code.
BASE_SERVICE_DEFAULTS = {
    "type": "longrun",
    "depends_on": (),
    "restart": "always",
    "restart_delay": 1.0,
    "restart_delay_max": 30.0,
    "critical": False,
    "stop_signal": 15,  # "TERM"
    "stop_timeout": 10.0,
    "finish_timeout": 5.0,
    "notification_fd": None,
    "ready_command": None,
    "ready_interval": 0.2,
    "ready_timeout": 60.0,
    "environment": (),
    "oom_score_adj": None,  # svtree's extension beyond the base keys: the value svtree started with
    "uid": None,  # user: svtree's own
    "gid": None,  # group: svtree's own
    "groups": None,
    "down": False,
    "finish": None,
}
BASE_SERVICE_KEYS = ["type", "depends_on", "restart", "restart_delay", "restart_delay_max", "critical",
                     "stop_signal", "stop_timeout", "finish_timeout", "notification_fd", "ready_command",
                     "ready_interval", "ready_timeout", "environment", "user", "group"]
# Keys svtree adds to the base keys s6-minded users expect (the README documents them), at
# their place in the table.
EXTENSION_KEYS = {"oom_score_adj": "user"}  # key -> the key it comes before
BASE_GLOBAL = {"kill_grace": 3.0, "main_stop_timeout": 10.0, "log_format": "console", "output": "prefix"}
# svtree.toml keys beyond the base ones, each documented in the README.
EXTENSION_GLOBAL = {"reload_timeout": 30.0, "http": None, "log_buffer": 1000}


def one_service(scratch, files: dict, name: str = "web") -> ServiceSpec:
    plan = compile_tree(make_tree(scratch, {name: files}))
    return plan.by_name()[name]


# --- defaults and the table -------------------------------------------------------------

def test_every_service_default_is_the_specs(scratch):
    spec = one_service(scratch, {})
    for field, expected in BASE_SERVICE_DEFAULTS.items():
        assert getattr(spec, field) == expected, field
    assert spec.name == "web"
    assert spec.path == os.path.join(scratch, "services.d", "web")
    assert spec.run == os.path.join(spec.path, "run")


def test_an_empty_service_toml_changes_nothing(scratch):
    a = one_service(scratch, {"service.toml": ""})
    assert all(getattr(a, f) == v for f, v in BASE_SERVICE_DEFAULTS.items())


def test_every_global_default_is_the_specs(scratch):
    plan = compile_tree(make_tree(scratch, {"a": {}}))
    settings = dataclasses.asdict(plan.settings)
    assert {k: settings.pop(k) for k in BASE_GLOBAL} == BASE_GLOBAL
    assert {k: settings.pop(k) for k in EXTENSION_GLOBAL} == EXTENSION_GLOBAL
    # Only s6-overlay's S6_* variables change the others; in a plain tree they are the
    # base behaviour: a failed oneshot stops the tree, the boot has no time limit,
    # TERM starts the shutdown, no environment directory is written.
    assert settings == {"boot_failure": "stop", "boot_timeout": None, "main_receives_signals": False,
                        "container_environment": None}


def test_the_table_declares_exactly_the_spec_keys():
    keys = list(BASE_SERVICE_KEYS)
    for key, before in EXTENSION_KEYS.items():
        keys.insert(keys.index(before), key)
    assert [s.name for s in SERVICE_SETTINGS] == keys
    assert [s.name for s in GLOBAL_SETTINGS] == list(BASE_GLOBAL) + list(EXTENSION_GLOBAL)


def test_table_defaults_agree_with_the_plan_dataclasses():
    spec_fields = {f.name: f.default for f in dataclasses.fields(ServiceSpec)}
    for setting in SERVICE_SETTINGS:
        if setting.field:
            assert spec_fields[setting.field] == setting.default, setting.name
    global_fields = {f.name: f.default for f in dataclasses.fields(GlobalSettings)}
    for setting in GLOBAL_SETTINGS:
        assert global_fields[setting.field] == setting.default == {**BASE_GLOBAL, **EXTENSION_GLOBAL}[setting.name]


def test_settings_markdown_lists_every_key_and_s6_file():
    text = settings_markdown()
    for setting in SERVICE_SETTINGS + GLOBAL_SETTINGS:
        assert f"| `{setting.name}` |" in text
    for s6 in ("notification-fd", "dependencies.d/", "type", "timeout-finish"):
        assert f"`{s6}`" in text
    assert '| `restart` | string | `"always"` |' in text
    assert '| `stop_signal` | signal | `"TERM"` |' in text
    assert '| `kill_grace` | seconds | `3.0` |' in text


# --- every key applied ------------------------------------------------------------------

FULL_TOML = """\
type = "longrun"
depends_on = ["db", "cache", "db"]
restart = "on-failure"
restart_delay = 2
restart_delay_max = 40.5
critical = true
stop_signal = "SIGINT"
stop_timeout = 7
finish_timeout = 1.5
notification_fd = 5
ready_interval = 0.5
ready_timeout = 30
environment = { PORT = "8080", A = "x y" }
oom_score_adj = -500
user = 0
group = 0
"""


def test_every_key_is_applied(scratch):
    tree = make_tree(scratch, {"db": {}, "cache": {}, "web": {"service.toml": FULL_TOML}})
    spec = compile_tree(tree).by_name()["web"]
    assert spec.depends_on == ("cache", "db")  # sorted, repeats dropped
    assert spec.restart == "on-failure"
    assert spec.restart_delay == 2.0 and isinstance(spec.restart_delay, float)  # int accepted
    assert spec.restart_delay_max == 40.5
    assert spec.critical is True
    assert spec.stop_signal == 2
    assert spec.stop_timeout == 7.0 and isinstance(spec.stop_timeout, float)
    assert spec.finish_timeout == 1.5
    assert spec.notification_fd == 5
    assert spec.ready_interval == 0.5
    assert spec.ready_timeout == 30.0
    assert spec.environment == (("A", "x y"), ("PORT", "8080"))
    assert spec.oom_score_adj == -500
    assert (spec.uid, spec.gid) == (0, 0)


def test_ready_command_and_oneshot(scratch):
    tree = make_tree(scratch, {
        "web": {"service.toml": 'ready_command = "nc -z localhost 80"\n'},
        "init": {"service.toml": 'type = "oneshot"\nrestart = "never"\n'},
    })
    by_name = compile_tree(tree).by_name()
    assert by_name["web"].ready_command == "nc -z localhost 80"
    assert by_name["web"].has_readiness
    assert by_name["init"].type == "oneshot"


@pytest.mark.parametrize("value,number", [('"TERM"', 15), ('"sigint"', 2), ('"HUP"', 1), ("9", 9),
                                          ('"10"', 10)])
def test_stop_signal_spellings(scratch, value, number):
    assert one_service(scratch, {"service.toml": f"stop_signal = {value}\n"}).stop_signal == number


def test_global_settings_applied(scratch):
    toml = 'kill_grace = 1\nmain_stop_timeout = 2.5\nlog_format = "json"\noutput = "raw"\n'
    plan = compile_tree(make_tree(scratch, {"a": {}}, global_toml=toml))
    assert plan.settings == GlobalSettings(kill_grace=1.0, main_stop_timeout=2.5, log_format="json", output="raw")


def test_zero_timeouts_allowed(scratch):
    spec = one_service(scratch, {"service.toml": "stop_timeout = 0\nfinish_timeout = 0\nrestart_delay = 0\n"})
    assert (spec.stop_timeout, spec.finish_timeout, spec.restart_delay) == (0.0, 0.0, 0.0)


# --- s6 spellings -----------------------------------------------------------------------

def test_s6_notification_fd_file(scratch):
    assert one_service(scratch, {"notification-fd": "3\n"}).notification_fd == 3


def test_s6_type_file(scratch):
    assert one_service(scratch, {"type": "oneshot\n"}).type == "oneshot"


def test_s6_timeout_finish_file_is_milliseconds(scratch):
    assert one_service(scratch, {"timeout-finish": "2500\n"}).finish_timeout == 2.5


def test_s6_timeout_finish_zero_means_no_limit(scratch):
    assert one_service(scratch, {"timeout-finish": "0\n"}).finish_timeout == MAX_SECONDS


def test_s6_dependencies_d(scratch):
    tree = make_tree(scratch, {"db": {}, "cache": {},
                               "web": {"dependencies.d/db": "", "dependencies.d/cache": "",
                                       "dependencies.d/.keep": "", "dependencies.d/db~": ""}})
    assert compile_tree(tree).by_name()["web"].depends_on == ("cache", "db")


def test_s6_empty_dependencies_d(scratch):
    assert one_service(scratch, {"dependencies.d/": ""}).depends_on == ()


def test_down_file(scratch):
    assert one_service(scratch, {"down": ""}).down is True


def test_s6_file_and_key_may_agree(scratch):
    tree = make_tree(scratch, {"db": {}, "web": {
        "service.toml": 'type = "longrun"\nfinish_timeout = 2\nnotification_fd = 4\ndepends_on = ["db"]\n',
        "type": "longrun\n", "timeout-finish": "2000\n", "notification-fd": "4\n", "dependencies.d/db": "",
    }})
    spec = compile_tree(tree).by_name()["web"]
    assert (spec.type, spec.finish_timeout, spec.notification_fd, spec.depends_on) == ("longrun", 2.0, 4, ("db",))


def test_finish_script_recorded(scratch):
    spec = one_service(scratch, {"finish": "#!/bin/sh\necho \"$@\"\n"})
    assert spec.finish == os.path.join(spec.path, "finish")


# --- user and group ----------------------------------------------------------------------

def test_user_by_name_takes_primary_group_and_groups(scratch):
    root = pwd.getpwuid(0)
    spec = one_service(scratch, {"service.toml": f'user = "{root.pw_name}"\n'})
    assert (spec.uid, spec.gid) == (0, root.pw_gid)
    assert spec.groups == tuple(sorted(set(os.getgrouplist(root.pw_name, root.pw_gid))))


def test_user_by_number_with_passwd_entry(scratch):
    nobody = pwd.getpwnam("nobody")
    spec = one_service(scratch, {"service.toml": f"user = {nobody.pw_uid}\n"})
    assert (spec.uid, spec.gid) == (nobody.pw_uid, nobody.pw_gid)


def test_user_as_digit_string(scratch):
    assert one_service(scratch, {"service.toml": 'user = "0"\n'}).uid == 0


def test_group_alone(scratch):
    name = grp.getgrgid(0).gr_name
    spec = one_service(scratch, {"service.toml": f'group = "{name}"\n'})
    assert (spec.uid, spec.gid, spec.groups) == (None, 0, (0,))


def test_user_and_group(scratch):
    nobody = pwd.getpwnam("nobody")
    spec = one_service(scratch, {"service.toml": 'user = "nobody"\ngroup = 0\n'})
    assert (spec.uid, spec.gid) == (nobody.pw_uid, 0)
    assert 0 in spec.groups


def test_numeric_ids_without_entries_are_fine_together(scratch):
    spec = one_service(scratch, {"service.toml": "user = 45678\ngroup = 45678\n"})
    assert (spec.uid, spec.gid, spec.groups) == (45678, 45678, (45678,))


# --- discovery and DIR ---------------------------------------------------------------------

def test_ignored_entries(scratch):
    tree = make_tree(scratch, {"web": {}, ".hidden": {"run": None}, "old~": {"run": None},
                               "x.swp": {"run": None}, "y.tmp": {"run": None}})
    write_file(os.path.join(tree, "README"), "plain files are ignored")
    write_file(os.path.join(tree, ".web.swp"), "")
    plan = compile_tree(tree)
    assert [s.name for s in plan.services] == ["web"]


def test_names_with_dots_dashes_underscores(scratch):
    tree = make_tree(scratch, {"a.b-c_d": {}, "9lives": {}, "X": {}})
    assert [s.name for s in compile_tree(tree).services] == ["9lives", "X", "a.b-c_d"]


def test_symlinked_service_directory_is_a_service(scratch):
    tree = make_tree(scratch, {})
    make_service(scratch, "elsewhere")
    os.symlink(os.path.join(scratch, "elsewhere"), os.path.join(tree, "linked"))
    assert [s.name for s in compile_tree(tree).services] == ["linked"]


def test_empty_tree_is_valid(scratch):
    plan = compile_tree(make_tree(scratch, {}))
    assert plan.services == () and plan.levels == ()


def test_elf_run_is_fine(scratch):
    true = shutil.which("true")
    with open(true, "rb") as f:
        binary = f.read()
    assert binary.startswith(b"\x7fELF")
    one_service(scratch, {"run": binary})


def test_env_shebang_found_on_path(scratch):
    one_service(scratch, {"run": "#!/usr/bin/env sh\nexec sleep 1\n"})


def test_find_tree_dir(scratch, monkeypatch):
    monkeypatch.chdir(scratch)
    monkeypatch.delenv("SVTREE_DIR", raising=False)
    assert find_tree_dir(None) == "/etc/services.d"
    os.mkdir("services.d")
    assert find_tree_dir(None) == os.path.join(scratch, "services.d")
    monkeypatch.setenv("SVTREE_DIR", "from-env")
    assert find_tree_dir(None) == os.path.join(scratch, "from-env")
    assert find_tree_dir("given") == os.path.join(scratch, "given")
    assert find_tree_dir("/abs/given") == "/abs/given"


# --- what `svtree compile` prints --------------------------------------------------------

def test_render_plan(scratch):
    tree = make_tree(scratch, {
        "setup": {"type": "oneshot"},
        "web": {"service.toml": 'depends_on = ["setup"]\ncritical = true\nstop_signal = "INT"\n'},
        "extra": {"down": "", "dependencies.d/web": ""},
    }, global_toml="kill_grace = 1\n")
    text = render_plan(compile_tree(tree))
    lines = text.splitlines()
    assert lines[0] == f"tree {tree}: 3 services in 3 start levels"
    assert lines[1] == "svtree.toml: kill_grace = 1.0"
    assert "  setup  oneshot" in lines
    assert '  web    longrun  critical, depends_on = ["setup"], stop_signal = "INT"' in lines
    assert '  extra  longrun  down, depends_on = ["web"]' in lines
    assert lines[-1] == "start order: setup | web | extra"


def test_command_prints_plan_and_writes_file(scratch, capsys):
    tree = make_tree(scratch, {"a": {}})
    target = os.path.join(scratch, "plan.json")
    assert compile_command(tree, target, False) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"tree {tree}: 1 service in 1 start level\n")
    assert out.endswith(f"svtree compile: wrote the plan to {target} (use it with `svtree run --plan {target}`)\n")
    assert os.path.exists(target)


def test_command_json(scratch, capsys):
    import json

    tree = make_tree(scratch, {"a": {}})
    target = os.path.join(scratch, "plan.json")
    assert compile_command(tree, target, True) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)  # stdout stays one JSON value
    assert data["levels"] == [["a"]]
    assert data["services"][0]["name"] == "a"
    assert "wrote the plan" in captured.err
