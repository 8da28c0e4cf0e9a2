"""`svtree import supervisord`: supervisord's INI grammar and expansions, and what each key
becomes. Run scripts are evaluated with /bin/sh (import_helpers.evaluate), not only read.
Where supervisord itself is installed (Debian's package), its own parser is the oracle."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess

import pytest
from hypothesis import HealthCheck, assume, given, settings as hsettings, strategies as st

from import_helpers import evaluate, service, settings, write
from svtree.compiler import compile_tree
from svtree.importers import supervisord
from svtree.importers.model import ImportFailed
from svtree.importers.writer import write_tree

SUPERVISOR_PACKAGE = "/usr/lib/python3/dist-packages/supervisor/options.py"


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    """Messages show paths relative to the working directory: work where the files are."""
    monkeypatch.chdir(tmp_path)


def convert(tmp_path, text: str, name: str = "supervisord.conf", **kw):
    return supervisord.convert(write(tmp_path, name, text), **kw)


def failure(tmp_path, text: str, name: str = "supervisord.conf") -> "list[str]":
    with pytest.raises(ImportFailed) as e:
        convert(tmp_path, text, name)
    return [p.render() for p in e.value.problems]


def notes(conversion) -> "dict[str, list[str]]":
    out: "dict[str, list[str]]" = {}
    for n in conversion.notes:
        out.setdefault(n.key, []).append(f"{n.where} | {n.instead}")
    return out


# --- command: split as supervisord splits it, exec'd with every word quoted ----------------

def test_command_words_reach_exec_exactly(tmp_path):
    conv = convert(tmp_path, r"""
        [program:nginx]
        command=/usr/sbin/nginx -g "daemon off; error_log /dev/stderr;" 'a  b' c\ d "" it's\ ok
    """.replace("it's", "it\\'s"))
    argv = evaluate(service(conv, "nginx"), tmp_path)["argv"]
    assert argv == ["/usr/sbin/nginx", "-g", "daemon off; error_log /dev/stderr;", "a  b", "c d", "", "it's ok"]
    assert service(conv, "nginx").run.splitlines()[-1] == \
        "exec /usr/sbin/nginx -g 'daemon off; error_log /dev/stderr;' 'a  b' 'c d' '' 'it'\"'\"'s ok'"


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\n\r"),
                        max_size=12), max_size=6))
def test_any_words_round_trip_through_the_ini_file_and_the_run_script(tmp_path, args):
    # What supervisord would exec: shlex.split of the value configparser reads, after %
    # expansion. Lines configparser would cut (an inline comment) are not a command.
    command = shlex.join(["printf", "%s\\0", "first", *args])  # printf prints its format once at least
    line = "command=" + command.replace("%", "%%")
    assume(not any(ch in line for ch in "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"))  # line breaks
    assume(not re.search(r"\s[;#]", line))
    conv = convert(tmp_path, f"[program:p]\n{line}\n")
    svc = service(conv, "p")
    path = os.path.join(str(tmp_path), "run")
    with open(path, "w") as f:
        f.write(svc.run)
    out = subprocess.run(["/bin/sh", path], capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().split("\0")[:-1] == ["first", *args]


def test_expansions_here_program_name_process_num_and_a_literal_percent(tmp_path):
    conv = convert(tmp_path, """
        [program:celery]
        command=%(here)s/bin/celery worker -n w%(process_num)d@%%h --name %(program_name)s/%(group_name)s/%(numprocs)d
        process_name=%(program_name)s_%(process_num)02d
        numprocs=3
        numprocs_start=8
    """)
    assert [s.name for s in conv.services] == ["celery_08", "celery_09", "celery_10"]
    argv = evaluate(service(conv, "celery_10"), tmp_path)["argv"]
    assert argv == [f"{tmp_path}/bin/celery", "worker", "-n", "w10@%h", "--name", "celery/celery/3"]


def test_env_variables_expand_when_the_service_starts(tmp_path):
    conv = convert(tmp_path, """
        [supervisord]
        environment=HOME_DIR="/srv/%(ENV_TENANT)s",LEVEL="info"

        [program:web]
        command=/bin/web --port=%(ENV_PORT)s --level %(ENV_LEVEL)s --home %(ENV_HOME_DIR)s --own %(ENV_OWN)s
        environment=OWN="mine",PATH="/opt/bin:%(ENV_PATH)s"
        directory=/tmp/%(ENV_TENANT)s
    """)
    web = service(conv, "web")
    os.makedirs("/tmp/acme-svtree-import-test", exist_ok=True)
    seen = evaluate(web, tmp_path, env={"PORT": "8080", "TENANT": "acme-svtree-import-test", "PATH": "/usr/bin:/bin"})
    assert seen["argv"] == ["/bin/web", "--port=8080", "--level", "info", "--home", "/srv/acme-svtree-import-test",
                            "--own", "mine"]
    assert seen["cwd"] == "/tmp/acme-svtree-import-test"
    assert seen["env"]["PATH"] == "/opt/bin:/usr/bin:/bin"
    assert seen["env"]["HOME_DIR"] == "/srv/acme-svtree-import-test"
    # Only values without variables are fixed in service.toml.
    assert settings(web)["environment"] == {"LEVEL": "info", "OWN": "mine"}
    # A variable missing when the service starts stops the run script, as supervisord
    # refused to start without it.
    lines = web.run.splitlines()
    assert '"${PORT?is not set}"' in lines[-1]
    run = tmp_path / "run"
    run.write_text(web.run)
    r = subprocess.run(["/bin/sh", str(run)], capture_output=True, text=True, timeout=30,
                       env={"PATH": "/usr/bin:/bin", "TENANT": "acme-svtree-import-test"})
    assert r.returncode != 0 and "PORT" in r.stderr and "is not set" in r.stderr


def test_env_variables_that_must_be_known_now_come_from_this_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("APP_USER", "nobody")
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    conv = convert(tmp_path, """
        [program:a]
        command=/bin/a
        user=%(ENV_APP_USER)s
    """)
    assert settings(service(conv, "a"))["user"] == "nobody"
    assert "%(ENV_APP_USER)s" in notes(conv)
    problems = failure(tmp_path, """
        [program:a]
        command=/bin/a
        numprocs=%(ENV_NOT_SET_ANYWHERE)s
    """)
    assert problems == ["supervisord.conf:3: [program:a] numprocs: %(ENV_NOT_SET_ANYWHERE)s: NOT_SET_ANYWHERE is "
                        "not set in this environment, and svtree import needs its value now for numprocs "
                        "(set it, or write the value)"]


def test_unknown_names_and_bare_percents_are_one_line_each(tmp_path):
    problems = failure(tmp_path, """
        [program:a]
        command=/bin/a %(prgram_name)s
        directory=/srv/%(nope)s

        [program:b]
        command=/bin/b 100%
    """)
    assert problems[0].startswith("supervisord.conf:2: [program:a] command: %(prgram_name)s: no such name ("
                                  "supervisord knows group_name, here, numprocs, process_num, program_name, "
                                  "host_node_name, ENV_NAME); did you mean \"program_name\"?")
    assert problems[1].startswith("supervisord.conf:3: [program:a] directory: %(nope)s: no such name")
    assert problems[2] == ("supervisord.conf:6: [program:b] command: has a % that does not start %(name)s "
                           "(write %% for a literal %)")
    assert len(problems) == 3


# --- the INI grammar: comments, continuations, [DEFAULT], repeated sections ----------------

def test_ini_grammar_is_configparsers(tmp_path):
    conv = convert(tmp_path, """
        [DEFAULT]
        autorestart = false

        [program:a]
        command = /bin/a one ; an inline comment
            two   # continued, with a comment
        stopsignal : INT

        # a comment line
        [program:a]
        stopwaitsecs=3
    """)
    a = service(conv, "a")
    assert evaluate(a, tmp_path)["argv"] == ["/bin/a", "one", "two"]
    assert settings(a) == {"restart": "never", "stop_signal": "INT", "stop_timeout": 3.0}


# --- [include] ----------------------------------------------------------------------------

def test_include_globs_relative_to_the_main_file_sorted_each_with_its_own_here(tmp_path):
    write(tmp_path, "etc/conf.d/b.conf", "[program:b]\ncommand=%(here)s/b\n")
    write(tmp_path, "etc/conf.d/a.conf", "[program:a]\ncommand=%(here)s/a\n")
    write(tmp_path, "etc/other/c.ini", "[program:c]\ncommand=%(here)s/c\n")
    conv = convert(tmp_path, """
        [supervisord]
        [include]
        files = conf.d/*.conf other/*.ini none/*.conf
    """, name="etc/supervisord.conf")
    assert [s.name for s in conv.services] == ["a", "b", "c"]
    assert evaluate(service(conv, "a"), tmp_path)["argv"] == [f"{tmp_path}/etc/conf.d/a"]
    assert evaluate(service(conv, "c"), tmp_path)["argv"] == [f"{tmp_path}/etc/other/c"]
    assert "no file matches" in notes(conv)["files"][0]


def test_an_unreadable_include_is_an_error_and_nothing_is_converted(tmp_path):
    os.symlink(str(tmp_path / "gone.conf"), str(tmp_path / "broken.conf"))
    problems = failure(tmp_path, "[program:a]\ncommand=/bin/a\n[include]\nfiles=*.conf\n", name="main.ini")
    assert problems == ["broken.conf: cannot read: No such file or directory"]


def test_an_included_file_with_a_syntax_error_names_its_line(tmp_path):
    write(tmp_path, "conf.d/bad.conf", "[program:x]\ncommand=/bin/x\nthis is not a key\n")
    problems = failure(tmp_path, "[supervisord]\n[include]\nfiles=conf.d/*.conf\n")
    assert problems == ["conf.d/bad.conf:3: not INI syntax as supervisord reads it: 'this is not a key' (a line "
                        "is [section], key = value, a comment, or an indented continuation of the value above)"]


# --- not a supervisord config -------------------------------------------------------------

def test_a_procfile_is_not_a_supervisord_config(tmp_path):
    problems = failure(tmp_path, "web: gunicorn app:app\n", name="Procfile")
    assert problems == ["Procfile:1: not a supervisord config: this line is outside any [section] (it looks "
                        "like a Procfile: svtree import procfile Procfile)"]


def test_an_ini_file_without_supervisord_sections_is_not_a_supervisord_config(tmp_path):
    problems = failure(tmp_path, "[database]\nhost=db\n", name="app.ini")
    assert problems == ["app.ini: not a supervisord config: no [supervisord] or [program:NAME] section "
                        "(svtree import supervisord reads supervisord's INI files)"]


def test_binary_garbage_is_refused(tmp_path):
    path = tmp_path / "blob.conf"
    path.write_bytes(b"[program:a]\ncommand=\xff\xfe\n")
    with pytest.raises(ImportFailed) as e:
        supervisord.convert(str(path))
    [problem] = e.value.problems
    assert (problem.path, problem.line, problem.message) == (str(path), 2, "is not UTF-8 text")


# --- what each key becomes ----------------------------------------------------------------

@pytest.mark.parametrize("keys,restart,finish_codes", [
    ("autorestart=true", None, None),
    ("autorestart=false", "never", None),
    ("autorestart=unexpected", "on-failure", None),  # exitcodes=0 by default
    ("exitcodes=0,2", "on-failure", "2"),
    ("autorestart=unexpected\nexitcodes=2,3", None, "2|3"),
    ("exitcodes=", None, None),
    ("autorestart=true\nexitcodes=0,2", None, None),
])
def test_autorestart_and_exitcodes(tmp_path, keys, restart, finish_codes):
    svc = service(convert(tmp_path, f"[program:a]\ncommand=/bin/a\n{keys}\n"), "a")
    assert settings(svc).get("restart") == restart  # None: svtree's default, always
    if finish_codes is None:
        assert svc.finish is None
    else:
        assert f"{finish_codes}) exit 125 ;;" in svc.finish


def test_the_finish_of_expected_codes_keeps_only_them_down(tmp_path):
    svc = service(convert(tmp_path, "[program:a]\ncommand=/bin/a\nexitcodes=0,2\n"), "a")
    finish = tmp_path / "finish"
    finish.write_text(svc.finish)
    codes = {args: subprocess.run(["/bin/sh", str(finish), *args.split()], timeout=30).returncode
             for args in ("2 0 a 7", "0 0 a 7", "1 0 a 7", "256 9 a 7", "22 0 a 7")}
    assert codes == {"2 0 a 7": 125, "0 0 a 7": 0, "1 0 a 7": 0, "256 9 a 7": 0, "22 0 a 7": 0}


@pytest.mark.parametrize("startsecs,expected", [
    ("1", {}), ("5", {"restart_delay": 5.0}), ("45", {"restart_delay": 45.0, "restart_delay_max": 45.0}),
    ("0", {}),
])
def test_startsecs_is_the_restart_delay(tmp_path, startsecs, expected):
    conv = convert(tmp_path, f"[program:a]\ncommand=/bin/a\nautorestart=true\nstartsecs={startsecs}\n")
    assert settings(service(conv, "a")) == expected
    assert ("startsecs" in notes(conv)) == (startsecs == "0")


def test_stop_keys_user_umask_directory_and_autostart(tmp_path):
    conv = convert(tmp_path, f"""
        [supervisord]
        user=nobody

        [program:a]
        command=/bin/a
        stopsignal=SIGQUIT
        stopwaitsecs=25
        umask=027
        directory={tmp_path}
        autostart=false

        [program:b]
        command=/bin/b
        stopsignal=1
        user=root
    """)
    a, b = service(conv, "a"), service(conv, "b")
    assert settings(a) == {"restart": "on-failure", "stop_signal": "QUIT", "stop_timeout": 25.0, "user": "nobody"}
    assert a.down and not b.down
    seen = evaluate(a, "/")
    assert seen["cwd"] == str(tmp_path) and seen["umask"] == "0027"
    assert settings(b) == {"restart": "on-failure", "stop_signal": "HUP", "user": "root"}


def test_bad_values_are_refused_as_supervisord_refuses_them(tmp_path):
    problems = failure(tmp_path, """
        [program:a]
        command=/bin/a
        startsecs=soon
        autorestart=sometimes
        stopsignal=NOPE
        exitcodes=0,300
        umask=999
    """)
    assert problems == [
        'supervisord.conf:3: [program:a] startsecs: must be an integer, not "soon"',
        'supervisord.conf:4: [program:a] autorestart: must be true, false or unexpected, not "sometimes"',
        'supervisord.conf:5: [program:a] stopsignal: unknown signal "NOPE" (use a name like TERM, SIGHUP, or a number)',
        "supervisord.conf:6: [program:a] exitcodes: exit codes are 0 to 255, not 300",
        'supervisord.conf:7: [program:a] umask: must be an octal number like 022, not "999"',
    ]


def test_missing_command_and_numprocs_without_process_num(tmp_path):
    problems = failure(tmp_path, """
        [program:a]
        directory=/tmp

        [program:b]
        command=/bin/b
        numprocs=2
    """)
    assert problems == [
        "supervisord.conf:1: [program:a]: has no command = line (supervisord requires one)",
        "supervisord.conf:4: [program:b] process_name: must hold %(process_num)s when numprocs > 1, as "
        "supervisord requires (process_name = %(program_name)s_%(process_num)02d)",
    ]


def test_environment_is_read_as_supervisord_reads_it(tmp_path):
    conv = convert(tmp_path, """
        [supervisord]
        environment=A="from supervisord",B=b

        [program:p]
        command=/bin/p
        environment=B="mine, with a comma",C=/usr/lib:/lib,D='single'
    """)
    assert settings(service(conv, "p"))["environment"] == {
        "A": "from supervisord", "B": "mine, with a comma", "C": "/usr/lib:/lib", "D": "single"}
    problems = failure(tmp_path, "[program:p]\ncommand=/bin/p\nenvironment=A=1 B=2\n")
    assert problems[0].startswith("supervisord.conf:3: [program:p] environment: cannot be read as KEY=value pairs")


def test_output_destinations(tmp_path):
    conv = convert(tmp_path, """
        [program:plain]
        command=/bin/x
        stdout_logfile=/dev/stdout
        stderr_logfile=/dev/stderr

        [program:merged]
        command=/bin/x
        redirect_stderr=true
        stdout_logfile=/dev/fd/1

        [program:swapped]
        command=/bin/x
        stdout_logfile=/dev/stderr
        stderr_logfile=/dev/stdout

        [program:quiet]
        command=/bin/x
        stdout_logfile=NONE
        stderr_logfile=/dev/null

        [program:files]
        command=/bin/x
        stdout_logfile=/var/log/x.log
        stdout_logfile_maxbytes=1MB
        stderr_syslog=true
    """)
    def redirect(name):
        lines = [line for line in service(conv, name).run.splitlines()[:-1] if line.startswith("exec ")]
        return lines[0] if lines else None
    assert redirect("plain") is None
    assert redirect("merged") == "exec 2>&1"
    assert redirect("swapped") == "exec 3>&1 1>&2 2>&3 3>&-"
    assert redirect("quiet") == "exec 1>/dev/null 2>/dev/null"
    assert redirect("files") is None
    found = notes(conv)
    assert "exec 1>>/var/log/x.log" in found["stdout_logfile"][0]
    assert "stdout_logfile_maxbytes" in found and "stderr_syslog" in found
    # AUTO (the default) is noted for programs that keep it.
    assert not any("[program:plain]" in w for w in found.get("stdout_logfile", []))


def test_redirections_really_send_each_stream_where_they_say(tmp_path):
    conv = convert(tmp_path, """
        [program:swapped]
        command=/bin/sh -c "echo out; echo err >&2"
        stdout_logfile=/dev/stderr
        stderr_logfile=/dev/stdout

        [program:merged]
        command=/bin/sh -c "echo out; echo err >&2"
        redirect_stderr=true
    """)
    for name, out, err in (("swapped", "err\n", "out\n"), ("merged", "out\nerr\n", "")):
        path = tmp_path / name
        path.write_text(service(conv, name).run)
        r = subprocess.run(["/bin/sh", str(path)], capture_output=True, text=True, timeout=30)
        assert (r.stdout, r.stderr) == (out, err), name


# --- priority becomes depends_on, where it is the only ordering -----------------------------

def test_priority_becomes_a_chain_of_depends_on(tmp_path):
    conv = convert(tmp_path, """
        [program:db]
        command=/bin/db
        priority=1
        [program:once]
        command=/bin/once
        priority=2
        autorestart=false
        [program:later]
        command=/bin/later
        priority=3
        autostart=false
        [program:app]
        command=/bin/app
        priority=10
        [program:app2]
        command=/bin/app2
        priority=10
        [program:web]
        command=/bin/web
    """)
    deps = {s.name: settings(s).get("depends_on") for s in conv.services}
    # "once" may end for good and "later" starts only on request: nothing waits for them.
    assert deps == {"db": None, "once": ["db"], "later": ["db"], "app": ["db"], "app2": ["db"],
                    "web": ["app", "app2"]}
    # One row per distinct note: app and app2 share theirs.
    assert len(notes(conv)["priority"]) == 4


def test_one_priority_for_all_means_no_order(tmp_path):
    conv = convert(tmp_path, "[program:a]\ncommand=/bin/a\n[program:b]\ncommand=/bin/b\npriority=999\n")
    assert all("depends_on" not in settings(s) for s in conv.services)
    assert "priority" not in notes(conv)


def test_groups_name_and_order_their_programs(tmp_path):
    conv = convert(tmp_path, """
        [group:backend]
        programs=api,worker
        priority=5

        [program:api]
        command=/bin/api --group %(group_name)s
        priority=900

        [program:worker]
        command=/bin/worker --group %(group_name)s

        [program:front]
        command=/bin/front --group %(group_name)s
        priority=10
    """)
    assert [s.name for s in conv.services] == ["api", "worker", "front"]
    assert evaluate(service(conv, "api"), tmp_path)["argv"] == ["/bin/api", "--group", "backend"]
    assert evaluate(service(conv, "front"), tmp_path)["argv"] == ["/bin/front", "--group", "front"]
    # The group's priority (5) orders its programs, not their own (900).
    assert settings(service(conv, "front"))["depends_on"] == ["api", "worker"]
    assert "depends_on" not in settings(service(conv, "api"))
    assert "[group:backend]" in notes(conv)


def test_the_same_process_name_in_two_programs_becomes_group_dot_name(tmp_path):
    conv = convert(tmp_path, """
        [program:a]
        command=/bin/a
        process_name=worker
        [program:b]
        command=/bin/b
        process_name=worker
        [program:c@x]
        command=/bin/c
    """)
    assert [s.name for s in conv.services] == ["a.worker", "b.worker", "c-x"]
    assert len(notes(conv)["process_name"]) == 3


def test_a_group_naming_a_missing_program_is_refused(tmp_path):
    problems = failure(tmp_path, "[group:g]\nprograms=a,b\n[program:a]\ncommand=/bin/a\n")
    assert problems == ["supervisord.conf:2: [group:g] programs: names 'b', but there is no [program:b] section"]


# --- the table of what did not carry over ---------------------------------------------------

def test_sections_and_keys_without_meaning_here_are_noted(tmp_path):
    conv = convert(tmp_path, """
        [unix_http_server]
        file=/run/supervisor.sock
        [inet_http_server]
        port=*:9001
        [supervisorctl]
        serverurl=unix:///run/supervisor.sock
        [rpcinterface:supervisor]
        supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
        [eventlistener:crashmail]
        command=crashmail -a
        events=PROCESS_STATE_EXITED
        [fcgi-program:php]
        command=/usr/bin/php-cgi
        socket=unix:///run/php.sock
        [mystery]
        a=b

        [supervisord]
        nodaemon=false
        logfile=/var/log/supervisord.log
        minfds=4096
        autostart=true

        [program:a]
        command=/bin/a
        startretries=10
        stopasgroup=true
        serverurl=unix:///run/other.sock
        stdout_events_enabled=true
        autostrat=false
    """)
    found = notes(conv)
    for key in ("[unix_http_server]", "[inet_http_server]", "[supervisorctl]", "[rpcinterface:supervisor]",
                "[eventlistener:crashmail]", "[fcgi-program:php]", "[mystery]", "nodaemon", "logfile",
                "minfds", "startretries", "stopasgroup", "serverurl", "stdout_events_enabled", "autostrat"):
        assert key in found, key
    assert found["autostrat"] == ['supervisord.conf:30 [program:a] | not a supervisord program setting: '
                                  'supervisord ignores it, and so does svtree import (did you mean "autostart"?)']
    assert found["[unix_http_server]"][0].startswith("supervisord.conf:1 |")
    # Ordered as in the file.
    wheres = [int(n.where.split(":")[1].split()[0]) for n in conv.notes if n.where.startswith("supervisord.conf:")]
    assert wheres == sorted(wheres)


def test_an_empty_config_converts_to_nothing(tmp_path):
    conv = convert(tmp_path, "[supervisord]\nnodaemon=true\n")
    assert conv.services == () and conv.notes == ()


# --- the written tree compiles ----------------------------------------------------------------

def test_a_rich_config_writes_a_tree_that_compiles(tmp_path):
    conv = convert(tmp_path, """
        [supervisord]
        environment=A="1"
        [program:web]
        command=/bin/sh -c "exec sleep 1"
        priority=1
        stopsignal=QUIT
        [program:worker]
        command=/bin/sh -c "exec sleep %(process_num)d"
        process_name=worker-%(process_num)d
        numprocs=2
        exitcodes=0,3
        startsecs=40
        user=nobody
        autostart=false
        environment=ODD.KEY="x y"
    """)
    tree = tmp_path / "services.d"
    write_tree(conv, str(tree))
    plan = compile_tree(str(tree))
    by_name = plan.by_name()
    assert sorted(by_name) == ["web", "worker-0", "worker-1"]
    assert by_name["worker-1"].depends_on == ("web",) and by_name["worker-1"].down
    assert by_name["worker-1"].finish is not None and by_name["worker-1"].restart_delay == 40.0
    assert dict(by_name["worker-0"].environment) == {"A": "1", "ODD.KEY": "x y"}


# --- supervisord's own parser as the oracle ---------------------------------------------------

ORACLE = r"""
import json, sys
sys.path.insert(0, "/usr/lib/python3/dist-packages")
from supervisor.options import ServerOptions
options = ServerOptions()
options.configfile = sys.argv[1]
options.process_config(do_usage=False)
out = []
for group in options.process_group_configs:
    for p in group.process_configs:
        out.append({"name": p.name, "command": p.command, "directory": p.directory,
                    "environment": p.environment, "autostart": p.autostart, "uid": p.uid,
                    "stopsignal": p.stopsignal, "stopwaitsecs": p.stopwaitsecs, "umask": p.umask})
print(json.dumps(out))
"""


@pytest.mark.skipif(not os.path.exists(SUPERVISOR_PACKAGE), reason="needs Debian's supervisor package")
def test_supervisords_own_parser_agrees(tmp_path):
    os.makedirs(tmp_path / "srv" / "a1", exist_ok=True)
    os.makedirs(tmp_path / "srv" / "a2", exist_ok=True)
    write(tmp_path, "conf.d/extra.conf", r"""
        [program:extra]
        command=/bin/printf "%%s|%%s" %(here)s '%(program_name)s'  ; comment
        environment=WHERE="%(here)s"
    """)
    conf = write(tmp_path, "supervisord.conf", r"""
        [DEFAULT]
        stopwaitsecs = 7

        [supervisord]
        environment=SHARED="s, t",TIER=prod

        [include]
        files = conf.d/*.conf

        [program:app]
        command=%(here)s/bin/app --tier %(ENV_TIER)s --port=%(ENV_PORT)s
            --name "%(program_name)s-%(process_num)d" 'x y' a\ b --pct 50%%
        process_name=app%(process_num)d
        numprocs=2
        numprocs_start=1
        directory=%(here)s/srv/a%(process_num)d
        environment=OWN="%(ENV_TIER)s-%(process_num)d",SHARED=override
        user=nobody
        umask=002
        stopsignal=usr2
        autostart=no

        [program:plain]
        command = sleep 1
    """)
    env = dict(os.environ, PORT="8042", PATH="/usr/bin:/bin")
    oracle = json.loads(subprocess.run(["/usr/bin/python3", "-c", ORACLE, conf], capture_output=True,
                                       text=True, env=env, timeout=60, check=True).stdout)
    conv = supervisord.convert(conf)
    assert sorted(s.name for s in conv.services) == sorted(p["name"] for p in oracle)
    for p in oracle:
        ours = service(conv, p["name"])
        seen = evaluate(ours, tmp_path, env=env)
        assert seen["argv"] == shlex.split(p["command"]), p["name"]
        if p["directory"] is not None:
            assert seen["cwd"] == p["directory"]
        if p["umask"] is not None:
            assert int(seen["umask"], 8) == p["umask"]
        for key, value in p["environment"].items():
            assert seen["env"].get(key) == value, (p["name"], key)
        assert ours.down == (not p["autostart"])
        toml = settings(ours)
        assert toml.get("stop_signal", "TERM") == {12: "USR2", 15: "TERM"}[p["stopsignal"]]
        assert toml.get("stop_timeout", 10.0) == p["stopwaitsecs"]
        assert (toml.get("user") == "nobody") == (p["uid"] == 65534)


def test_the_readme_key_table_is_generated_from_the_importer():
    readme = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "README.md")
    with open(readme) as f:
        text = f.read()
    start = text.index("<!-- supervisord-keys: generated")
    body = text[text.index("-->", start) + 4:text.index("<!-- /supervisord-keys -->")]
    assert body.strip() == supervisord.supervisord_markdown().strip()


def test_every_problem_of_a_program_is_reported_once(tmp_path):
    problems = failure(tmp_path, """
        [program:web]
        command=/app/bin/web --name %(prgram_name)s
        process_name=web%(process_num)d
        numprocs=3
        startsecs=ten
    """)
    assert problems == [
        'supervisord.conf:2: [program:web] command: %(prgram_name)s: no such name (supervisord knows group_name, '
        'here, numprocs, process_num, program_name, host_node_name, ENV_NAME); did you mean "program_name"?',
        'supervisord.conf:5: [program:web] startsecs: must be an integer, not "ten"',
    ]
