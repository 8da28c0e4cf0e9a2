"""Every compile error: it names the file (and key or line) and says what to do.

Each tree here is wrong for exactly one reason (`only_problem`), so a check that also
fires spuriously on the rest of the tree fails the test.
"""

from __future__ import annotations

import os
import pwd

import pytest

from compiler_trees import make_service, make_tree, only_problem, problems_of, scratch, write_file  # noqa: F401
from svtree.compiler import NoTreeError, compile_tree
from svtree.compiler.command import compile_command
from svtree.compiler.settings import MAX_SECONDS
from svtree.errors import CompileError, Problem


def toml_problem(scratch, text: str, name: str = "web", other: "dict | None" = None) -> Problem:
    tree = make_tree(scratch, {name: {"service.toml": text}, **(other or {})})
    problem = only_problem(tree)
    assert problem.path == os.path.join(tree, name, "service.toml")
    return problem


# --- the README's own example, rendered relative to cwd --------------------------------------

def test_unknown_dependency_renders_as_in_the_readme(scratch, monkeypatch):
    make_tree(scratch, {"db": {}, "web": {"service.toml": 'depends_on = ["dbb"]\n'}})
    monkeypatch.chdir(scratch)
    problem = only_problem("services.d")
    assert problem.render() == 'services.d/web/service.toml: depends_on: no service named "dbb" (did you mean "db"?)'


# --- discovery ----------------------------------------------------------------------------

def test_invalid_service_name_is_named(scratch):
    tree = make_tree(scratch, {"ok": {}, "bad name": {}})
    problem = only_problem(tree)
    assert problem.path == os.path.join(tree, "bad name")
    assert problem.message == '"bad name" is not a valid service name'
    assert "rename the directory" in problem.hint


@pytest.mark.parametrize("name", ["-dash", "_under", "a@b", "caf\u00e9"])
def test_more_invalid_names(scratch, name):
    tree = make_tree(scratch, {name: {}})
    assert only_problem(tree, name).message == f'"{name}" is not a valid service name'


def test_svtree_toml_must_be_a_file(scratch):
    tree = make_tree(scratch, {"a": {}})
    os.mkdir(os.path.join(tree, "svtree.toml"))
    problem = only_problem(tree)
    assert problem.path == os.path.join(tree, "svtree.toml")
    assert "not a directory" in problem.message


def test_missing_tree_raises_no_tree_error(scratch):
    with pytest.raises(NoTreeError) as info:
        compile_tree(os.path.join(scratch, "nope"))
    assert info.value.reason == "No such file or directory"


def test_tree_that_is_a_file_raises_no_tree_error(scratch):
    path = os.path.join(scratch, "file")
    write_file(path, "x")
    with pytest.raises(NoTreeError):
        compile_tree(path)


# --- scripts ------------------------------------------------------------------------------

def test_missing_run(scratch):
    tree = make_tree(scratch, {"web": {"run": None, "service.toml": ""}})
    problem = only_problem(tree)
    assert problem.path == os.path.join(tree, "web", "run")
    assert problem.message == "missing: every service needs a run script"
    assert "exec" in problem.hint


def test_run_not_executable(scratch):
    tree = make_tree(scratch, {"web": {"run": (RUN_TEXT, 0o644)}})
    problem = only_problem(tree)
    assert problem.path == os.path.join(tree, "web", "run")
    assert problem.message == "is not executable"
    assert problem.hint == f"make it executable: chmod +x {os.path.join(tree, 'web', 'run')}"


RUN_TEXT = "#!/bin/sh\nexec sleep 1\n"


def test_run_is_a_directory(scratch):
    tree = make_tree(scratch, {"web": {"run": None, "run/": ""}})
    problem = only_problem(tree)
    assert problem.path == os.path.join(tree, "web", "run")
    assert problem.message == "must be a file"


def test_run_broken_symlink(scratch):
    tree = make_tree(scratch, {"web": {"run": None}})
    os.symlink("/nonexistent/daemon", os.path.join(tree, "web", "run"))
    problem = only_problem(tree, "web/run")
    assert problem.message == "is a broken symlink (to /nonexistent/daemon)"


def test_finish_not_executable(scratch):
    tree = make_tree(scratch, {"web": {"finish": ("#!/bin/sh\necho $@\n", 0o644)}})
    problem = only_problem(tree)
    assert problem.path == os.path.join(tree, "web", "finish")
    assert problem.message == "is not executable"


def test_finish_checked_like_run(scratch):
    tree = make_tree(scratch, {"web": {"finish": "#!/bin/nosuchshell\n"}})
    problem = only_problem(tree)
    assert problem.path == os.path.join(tree, "web", "finish")
    assert problem.message == "#! interpreter /bin/nosuchshell does not exist"


def test_crlf_line_endings(scratch):
    tree = make_tree(scratch, {"web": {"run": "#!/bin/sh\r\nexec sleep 1\r\n"}})
    problem = only_problem(tree)
    run = os.path.join(tree, "web", "run")
    assert problem.path == run
    assert problem.line == 1
    assert problem.message == "has Windows (CRLF) line endings"
    assert f"dos2unix {run}" in problem.hint
    assert f"sed -i 's/\\r$//' {run}" in problem.hint


def test_crlf_reports_the_first_crlf_line(scratch):
    tree = make_tree(scratch, {"web": {"run": "#!/bin/sh\n\nexec sleep 1\r\n"}})
    assert only_problem(tree, "web/run").line == 3


def test_missing_interpreter(scratch):
    tree = make_tree(scratch, {"web": {"run": "#!/usr/bin/python9 -u\nprint(1)\n"}})
    problem = only_problem(tree)
    assert problem.path == os.path.join(tree, "web", "run")
    assert problem.line == 1
    assert problem.message == "#! interpreter /usr/bin/python9 does not exist"
    assert problem.hint == "install it in the image or fix the path in the #! line"


@pytest.mark.parametrize("shebang", ["#!/command/with-contenv sh", "#!/usr/bin/with-contenv bash"])
def test_with_contenv_says_to_change_the_shebang(scratch, shebang):
    tree = make_tree(scratch, {"web": {"run": shebang + "\nexec nginx\n"}})
    problem = only_problem(tree, "web/run")
    assert problem.line == 1
    assert "with-contenv" in problem.message and "does not exist" in problem.message
    assert problem.hint == ("svtree passes the container environment to services already: change the "
                            "shebang to #!/bin/sh (or the shell the script needs)")


def test_env_program_not_on_path(scratch):
    tree = make_tree(scratch, {"web": {"run": "#!/usr/bin/env python9\nprint(1)\n"}})
    problem = only_problem(tree, "web/run")
    assert problem.line == 1
    assert problem.message == "#! interpreter python9 (run by /usr/bin/env) is not found on PATH"


def test_env_split_string_program_not_on_path(scratch):
    tree = make_tree(scratch, {"web": {"run": "#!/usr/bin/env -S python9 -u\nprint(1)\n"}})
    assert "python9" in only_problem(tree, "web/run").message


def test_env_program_searched_in_the_services_path(scratch):
    bindir = os.path.join(scratch, "bin")
    write_file(os.path.join(bindir, "mytool"), "#!/bin/sh\n", 0o755)
    toml = f'environment = {{ PATH = "{bindir}" }}\n'
    tree = make_tree(scratch, {"web": {"run": "#!/usr/bin/env mytool\n", "service.toml": toml}})
    compile_tree(tree)  # found through the service's own PATH
    os.unlink(os.path.join(bindir, "mytool"))
    tree2 = make_tree(scratch, {"web": {"run": "#!/usr/bin/env mytool\n", "service.toml": toml}}, name="t2")
    assert "not found on PATH" in only_problem(tree2, "web/run").message


def test_neither_script_nor_binary(scratch):
    tree = make_tree(scratch, {"web": {"run": "exec sleep 1\n"}})
    problem = only_problem(tree, "web/run")
    assert problem.message == "is neither a #! script nor a binary, so it cannot be executed"
    assert "#!/bin/sh" in problem.hint


def test_empty_run(scratch):
    tree = make_tree(scratch, {"web": {"run": ""}})
    assert only_problem(tree, "web/run").message == "is empty"


def test_empty_shebang(scratch):
    tree = make_tree(scratch, {"web": {"run": "#!\necho\n"}})
    assert only_problem(tree, "web/run").message == "has an empty #! line"


def test_interpreter_not_executable(scratch):
    interp = os.path.join(scratch, "interp")
    write_file(interp, "x", 0o644)
    tree = make_tree(scratch, {"web": {"run": f"#!{interp}\n"}})
    assert only_problem(tree, "web/run").message == f"#! interpreter {interp} is not executable"


# --- TOML ---------------------------------------------------------------------------------

def test_toml_syntax_error_carries_the_line(scratch):
    problem = toml_problem(scratch, 'restart = "always"\nstop_timeout = \n')
    assert problem.line == 2
    assert problem.message.startswith("bad TOML: ")
    assert "(at line" not in problem.message
    assert problem.render().startswith(os.path.join(scratch, "services.d/web/service.toml") + ":2: bad TOML: ")


def test_toml_not_utf8(scratch):
    problem = toml_problem(scratch, b'restart = "always"\n# \xff\n')
    assert problem.message == "is not UTF-8 text"
    assert problem.line == 2


def test_svtree_toml_syntax_error(scratch):
    tree = make_tree(scratch, {"a": {}}, global_toml="kill_grace = = 1\n")
    problem = only_problem(tree)
    assert problem.path == os.path.join(tree, "svtree.toml")
    assert problem.line == 1


def test_unknown_key_did_you_mean(scratch):
    problem = toml_problem(scratch, 'depend_on = ["db"]\n', other={"db": {}})
    assert problem.key == "depend_on"
    assert problem.message == "unknown key"
    assert problem.hint == 'did you mean "depends_on"?'


def test_unknown_key_in_s6_spelling_suggests_the_toml_key(scratch):
    problem = toml_problem(scratch, "notification-fd = 3\n")
    assert problem.hint == 'did you mean "notification_fd"?'


def test_unknown_key_without_close_match_lists_the_keys(scratch):
    problem = toml_problem(scratch, "zzz = 1\n")
    assert problem.hint.startswith("known keys: type, depends_on, restart")


def test_unknown_table_is_an_unknown_key(scratch):
    problem = toml_problem(scratch, "[service]\nrestart = \"never\"\n")
    assert (problem.key, problem.message) == ("service", "unknown key")


def test_unknown_key_in_svtree_toml(scratch):
    tree = make_tree(scratch, {"a": {}}, global_toml="kill_grase = 1\n")
    problem = only_problem(tree)
    assert problem.path == os.path.join(tree, "svtree.toml")
    assert problem.key == "kill_grase"
    assert problem.hint == 'did you mean "kill_grace"?'


# --- wrong types and values ---------------------------------------------------------------

@pytest.mark.parametrize("key,value,message", [
    ("type", '"daemon"', 'must be one of "longrun", "oneshot", not "daemon"'),
    ("type", "1", 'must be one of "longrun", "oneshot", not integer 1'),
    ("restart", '"sometimes"', 'must be one of "always", "on-failure", "never", not "sometimes"'),
    ("restart_delay", '"1s"', 'must be a number of seconds, not string "1s"'),
    ("restart_delay", "-1", "must not be negative, not -1"),
    ("restart_delay_max", "-0.5", "must not be negative, not -0.5"),
    ("stop_timeout", "true", "must be a number of seconds, not boolean true"),
    ("stop_timeout", "-3", "must not be negative, not -3"),
    ("stop_timeout", "inf", "must be a finite number of seconds, not inf"),
    ("stop_timeout", "nan", "must be a finite number of seconds, not nan"),
    ("stop_timeout", "1e9", f"must be at most {MAX_SECONDS:.0f} seconds (about 23 days), not 1000000000.0"),
    ("finish_timeout", "-1.5", "must not be negative, not -1.5"),
    ("finish_timeout", "[1]", "must be a number of seconds, not array [1]"),
    ("ready_interval", "0", "must be more than 0 seconds, not 0"),
    ("ready_timeout", "-1", "must be more than 0 seconds, not -1"),
    ("critical", '"yes"', 'must be true or false, not string "yes"'),
    ("critical", "1", "must be true or false, not integer 1"),
    ("notification_fd", "1", "must be between 3 and 65535, not 1"),
    ("notification_fd", "3.0", "must be a file descriptor number like 3, not float 3.0"),
    ("notification_fd", '"3"', 'must be a file descriptor number like 3, not string "3"'),
    ("notification_fd", "true", "must be a file descriptor number like 3, not boolean true"),
    ("ready_command", "true", "must be a shell command (a string), not boolean true"),
    ("ready_command", '"  "', "must not be empty"),
    ("stop_signal", '"TERMM"', 'unknown signal "TERMM" (use a name like TERM, SIGHUP, or a number)'),
    ("stop_signal", "true", 'must be a signal name like "TERM" or a number, not boolean true'),
    ("stop_signal", "1.5", 'must be a signal name like "TERM" or a number, not float 1.5'),
    ("stop_signal", "999", "no signal numbered 999"),
    ("depends_on", "[1]", "must hold service names (strings), not integer 1"),
    ("depends_on", "{a = 1}", "must be an array of service names, not a table"),
    ("environment", '["A=1"]', 'must be a table of strings, like { PORT = "8080" }, not array ["A=1"]'),
    ("environment", "{ PORT = 8080 }", '"PORT" must be a string, not integer 8080'),
    ("environment", "{ DEBUG = true }", '"DEBUG" must be a string, not boolean true'),
    ("environment", '{ "A=B" = "1" }', '"A=B" is not a valid variable name (it must be non-empty, without "=" or NUL)'),
    ("oom_score_adj", "1001", "must be from -1000 to 1000, not 1001"),
    ("oom_score_adj", "-1001", "must be from -1000 to 1000, not -1001"),
    ("oom_score_adj", "0.5", "must be an integer from -1000 to 1000, not float 0.5"),
    ("oom_score_adj", '"-500"', 'must be an integer from -1000 to 1000, not string "-500"'),
    ("oom_score_adj", "true", "must be an integer from -1000 to 1000, not boolean true"),
    ("user", "-1", "must not be negative, not -1"),
    ("user", '""', 'must be a user name or number, not string ""'),
    ("group", "[0]", "must be a group name or number, not array [0]"),
])
def test_bad_value_names_file_and_key(scratch, key, value, message):
    problem = toml_problem(scratch, f"{key} = {value}\n")
    assert problem.key == key
    assert problem.message == message


def test_bad_enum_value_suggests_the_close_one(scratch):
    problem = toml_problem(scratch, 'restart = "onfailure"\n')
    assert problem.hint == 'did you mean "on-failure"?'


def test_depends_on_as_a_string_hints_the_array(scratch):
    problem = toml_problem(scratch, 'depends_on = "db"\n', other={"db": {}})
    assert problem.message == 'must be an array of service names, not string "db"'
    assert problem.hint == 'write depends_on = ["db"]'


def test_environment_number_hint_quotes_it(scratch):
    assert toml_problem(scratch, "environment = { PORT = 8080 }\n").hint == 'quote it: PORT = "8080"'


def test_notification_fd_below_3_says_why(scratch):
    assert "stdin, stdout and stderr" in toml_problem(scratch, "notification_fd = 2\n").hint


def test_restart_delay_max_below_restart_delay(scratch):
    problem = toml_problem(scratch, "restart_delay = 5\nrestart_delay_max = 2\n")
    assert problem.key == "restart_delay_max"
    assert problem.message == "must be at least restart_delay (5.0), not 2.0"


def test_restart_delay_above_default_max(scratch):
    problem = toml_problem(scratch, "restart_delay = 60\n")
    assert problem.key == "restart_delay"
    assert problem.message == "is more than restart_delay_max (30.0), not allowed"


def test_no_spurious_cross_check_when_a_key_is_already_wrong(scratch):
    problem = toml_problem(scratch, 'restart_delay = "x"\nrestart_delay_max = 0.5\n')
    assert problem.key == "restart_delay"


@pytest.mark.parametrize("key,value,message", [
    ("log_format", '"text"', 'must be one of "console", "json", not "text"'),
    ("output", '"lines"', 'must be one of "prefix", "raw", not "lines"'),
    ("kill_grace", "-1", "must not be negative, not -1"),
    ("main_stop_timeout", '"10"', 'must be a number of seconds, not string "10"'),
    ("http", "9100", 'must be "ADDR:PORT" like "0.0.0.0:9100", not integer 9100'),
    ("http", '"9100"', "must be \"ADDR:PORT\" like \"0.0.0.0:9100\" or \":9100\", not '9100'"),
    ("http", '"0.0.0.0:99999"', "the port must be a number from 0 to 65535, not '99999'"),
    ("http", '"example.com:80"', "'example.com' is not a numeric address (give one like 127.0.0.1, "
                                  "0.0.0.0 or [::]: a host name would need a DNS lookup)"),
    ("http", '"::1:80"', "an IPv6 address goes in brackets: [::1]:80"),
    ("http", '"[1.2.3.4]:80"', "'1.2.3.4' is not an IPv6 address"),
    ("log_buffer", "-1", "must be from 0 to 1000000, not -1"),
    ("log_buffer", "1.5", "must be a number of lines like 1000, not float 1.5"),
    ("log_buffer", "true", "must be a number of lines like 1000, not boolean true"),
])
def test_bad_global_values(scratch, key, value, message):
    tree = make_tree(scratch, {"a": {}}, global_toml=f"{key} = {value}\n")
    problem = only_problem(tree)
    assert (problem.path, problem.key, problem.message) == (os.path.join(tree, "svtree.toml"), key, message)


@pytest.mark.parametrize("value,stored", [
    ('"127.0.0.1:9100"', "127.0.0.1:9100"), ('":9100"', "0.0.0.0:9100"),
    ('"localhost:0"', "127.0.0.1:0"), ('"[::]:8080"', "[::]:8080"), ('"[::1]:80"', "[::1]:80"),
])
def test_http_addresses_are_stored_in_one_form(scratch, value, stored):
    plan = compile_tree(make_tree(scratch, {"a": {}}, global_toml=f"http = {value}\nlog_buffer = 0\n"))
    assert (plan.settings.http, plan.settings.log_buffer) == (stored, 0)


# --- combinations that make no sense ------------------------------------------------------

def test_notification_fd_on_a_oneshot(scratch):
    problem = toml_problem(scratch, 'type = "oneshot"\nnotification_fd = 3\n')
    assert problem.key == "notification_fd"
    assert problem.message == "a oneshot cannot signal readiness: it is done when run exits 0"


def test_notification_fd_file_on_a_oneshot_names_the_file(scratch):
    tree = make_tree(scratch, {"web": {"type": "oneshot\n", "notification-fd": "3\n"}})
    problem = only_problem(tree)
    assert problem.path == os.path.join(tree, "web", "notification-fd")
    assert problem.key is None


def test_ready_command_on_a_oneshot(scratch):
    problem = toml_problem(scratch, 'type = "oneshot"\nready_command = "true"\n')
    assert problem.key == "ready_command"
    assert problem.message == "a oneshot has no ready_command: it is done when run exits 0"


def test_ready_command_with_notification_fd(scratch):
    problem = toml_problem(scratch, 'ready_command = "true"\nnotification_fd = 3\n')
    assert problem.key == "ready_command"
    assert problem.message == "cannot be used together with notification_fd"
    assert problem.hint == "choose one way to signal readiness"


# --- user and group -----------------------------------------------------------------------

def test_unknown_user(scratch):
    problem = toml_problem(scratch, 'user = "no-such-user-here"\n')
    assert problem.key == "user"
    assert problem.message == 'no user named "no-such-user-here"'
    assert "useradd" in problem.hint


def test_unknown_group(scratch):
    problem = toml_problem(scratch, 'group = "no-such-group-here"\n')
    assert problem.key == "group"
    assert problem.message == 'no group named "no-such-group-here"'


def test_numeric_user_without_passwd_entry_needs_group(scratch):
    uid = next(u for u in range(43210, 50000) if not _has_uid(u))
    problem = toml_problem(scratch, f"user = {uid}\n")
    assert problem.key == "user"
    assert problem.message == f"uid {uid} has no entry in /etc/passwd, so it has no primary group"
    assert problem.hint == "set group too"


def _has_uid(uid: int) -> bool:
    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        return False


# --- s6 spellings -------------------------------------------------------------------------

@pytest.mark.parametrize("filename,content,message", [
    ("notification-fd", "three\n", 'must hold a file descriptor number like 3, not "three"'),
    ("notification-fd", "1\n", "must be between 3 and 65535, not 1"),
    ("type", "daemon\n", 'must be one of "longrun", "oneshot", not "daemon"'),
    ("type", "bundle\n", "s6-rc bundles are not supported"),
    ("timeout-finish", "5s\n", 'must hold a number of milliseconds like 5000, not "5s"'),
    ("dependencies.d", "db\n", "must be a directory holding one empty file per dependency"),
])
def test_bad_s6_file_names_the_file(scratch, filename, content, message):
    tree = make_tree(scratch, {"web": {filename: content}})
    problem = only_problem(tree)
    assert problem.path == os.path.join(tree, "web", filename)
    assert problem.message == message


@pytest.mark.parametrize("key,toml,filename,content,message", [
    ("notification_fd", "notification_fd = 3", "notification-fd", "4\n",
     "is 3 here but 4 in notification-fd"),
    ("type", 'type = "longrun"', "type", "oneshot\n", 'is "longrun" here but "oneshot" in type'),
    ("finish_timeout", "finish_timeout = 5", "timeout-finish", "3000\n",
     "is 5.0 here but 3.0 in timeout-finish"),
    ("depends_on", 'depends_on = ["db"]', "dependencies.d/cache", "",
     'is ["db"] here but ["cache"] in dependencies.d/'),
])
def test_s6_file_and_key_disagree(scratch, key, toml, filename, content, message):
    tree = make_tree(scratch, {"db": {}, "cache": {}, "web": {"service.toml": toml + "\n", filename: content}})
    problem = only_problem(tree)
    assert problem.path == os.path.join(tree, "web", "service.toml")
    assert problem.key == key
    assert problem.message == message
    assert "service.toml" in problem.hint


# --- the dependency graph -----------------------------------------------------------------

def test_unknown_dependency_without_close_name(scratch):
    problem = toml_problem(scratch, 'depends_on = ["zzzz"]\n', other={"db": {}})
    assert problem.key == "depends_on"
    assert problem.message == 'no service named "zzzz"'
    assert problem.hint is None


def test_unknown_dependency_in_dependencies_d_names_the_file(scratch):
    tree = make_tree(scratch, {"db": {}, "web": {"dependencies.d/dbb": ""}})
    problem = only_problem(tree)
    assert problem.path == os.path.join(tree, "web", "dependencies.d", "dbb")
    assert problem.key is None
    assert problem.render().endswith('dbb: no service named "dbb" (did you mean "db"?)')


def test_self_dependency(scratch):
    problem = toml_problem(scratch, 'depends_on = ["web"]\n')
    assert problem.key == "depends_on"
    assert problem.message == '"web" depends on itself'


def test_two_service_cycle(scratch):
    tree = make_tree(scratch, {"a": {"service.toml": 'depends_on = ["b"]\n'},
                               "b": {"service.toml": 'depends_on = ["a"]\n'}})
    problem = only_problem(tree)
    assert problem.path == os.path.join(tree, "a", "service.toml")
    assert problem.key == "depends_on"
    assert problem.message == "dependency cycle: a -> b -> a"


def test_three_service_cycle_with_a_tail(scratch):
    tree = make_tree(scratch, {
        "a": {"service.toml": 'depends_on = ["b"]\n'},
        "b": {"service.toml": 'depends_on = ["c"]\n'},
        "c": {"dependencies.d/a": "", "dependencies.d/d": ""},
        "d": {},
        "e": {"service.toml": 'depends_on = ["a"]\n'},
    })
    problem = only_problem(tree, "a/service.toml")
    assert (problem.key, problem.message) == ("depends_on", "dependency cycle: a -> b -> c -> a")


def test_each_separate_cycle_reported_once(scratch):
    tree = make_tree(scratch, {
        "a": {"service.toml": 'depends_on = ["b"]\n'}, "b": {"service.toml": 'depends_on = ["a"]\n'},
        "x": {"service.toml": 'depends_on = ["y"]\n'}, "y": {"service.toml": 'depends_on = ["z"]\n'},
        "z": {"service.toml": 'depends_on = ["x", "y"]\n'},
    })
    messages = sorted(p.message for p in problems_of(tree))
    assert messages == ["dependency cycle: a -> b -> a", "dependency cycle: x -> y -> z -> x"]


# --- all at once, and the command's output --------------------------------------------------

def test_every_problem_found_in_one_pass(scratch):
    tree = make_tree(scratch, {
        "web": {"run": ("#!/bin/sh\r\n", 0o644), "service.toml": 'depends_on = ["dbb"]\nrestrt = 1\n'},
        "db": {"service.toml": "stop_timeout = -1\n"},
        "bad name": {},
    }, global_toml='output = "lines"\n')
    problems = problems_of(tree)
    assert len(problems) == 7, "\n".join(p.render() for p in problems)
    assert {p.key for p in problems} == {None, "depends_on", "restrt", "stop_timeout", "output"}
    with pytest.raises(CompileError) as info:
        compile_tree(tree)
    assert str(info.value).count("\n") == 6


def test_command_prints_each_problem_then_a_summary(scratch, capsys, monkeypatch):
    make_tree(scratch, {"db": {"service.toml": "stop_timeout = -1\n"},
                        "web": {"service.toml": 'depends_on = ["dbb"]\n'}})
    monkeypatch.chdir(scratch)
    assert compile_command("services.d", None, False) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "services.d/db/service.toml: stop_timeout: must not be negative, not -1",
        'services.d/web/service.toml: depends_on: no service named "dbb" (did you mean "db"?)',
        "svtree compile: 2 errors in services.d",
    ]


def test_command_summary_singular(scratch, capsys, monkeypatch):
    make_tree(scratch, {"db": {"service.toml": "stop_timeout = -1\n"}})
    monkeypatch.chdir(scratch)
    assert compile_command(None, None, False) == 1  # ./services.d found without naming it
    assert capsys.readouterr().err.splitlines()[-1] == "svtree compile: 1 error in services.d"


def test_command_missing_tree(scratch, capsys):
    missing = os.path.join(scratch, "nope")
    assert compile_command(missing, None, False) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"svtree compile: no tree at {missing}: No such file or directory")
    assert err.count("\n") == 1


def test_command_cannot_write_output(scratch, capsys):
    tree = make_tree(scratch, {"a": {}})
    target = os.path.join(scratch, "no-such-dir", "plan.json")
    assert compile_command(tree, target, False) == 1
    assert f"svtree compile: cannot write {target}: No such file or directory" in capsys.readouterr().err


def test_no_tree_error_is_a_compile_error_with_one_problem(scratch):
    missing = os.path.join(scratch, "nope")
    with pytest.raises(CompileError) as info:  # what a reload catches
        compile_tree(missing)
    (problem,) = info.value.problems
    assert problem.path == missing
    assert problem.message == "no tree here: No such file or directory"
