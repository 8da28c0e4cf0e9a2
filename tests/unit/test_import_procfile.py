"""`svtree import procfile`: honcho's and foreman's Procfile grammar, .env files, PORT, and
the run scripts (evaluated with /bin/sh: what `sh -c` receives is the command, byte for byte)."""

from __future__ import annotations

import os
import shlex
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from import_helpers import evaluate, service, settings, write
from svtree.compiler import compile_tree
from svtree.importers import procfile
from svtree.importers.model import ImportFailed
from svtree.importers.writer import write_tree


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def convert(tmp_path, text: str, **kw):
    return procfile.convert(write(tmp_path, "Procfile", text), **kw)


def failure(tmp_path, text: str, name: str = "Procfile") -> "list[str]":
    with pytest.raises(ImportFailed) as e:
        procfile.convert(write(tmp_path, name, text))
    return [p.render() for p in e.value.problems]


def test_grammar_names_comments_blank_lines_and_ignored_lines(tmp_path):
    conv = convert(tmp_path, """
        # the app
        web: gunicorn app:app --bind 0.0.0.0:$PORT

        worker_1:python -m worker   --queue high
        release-phase: ./migrate.sh
        web : space before the colon
        export X=1
    """)
    assert [s.name for s in conv.services] == ["web", "worker_1", "release-phase"]
    ignored = {n.key: n for n in conv.notes if n.instead.startswith("ignored")}
    assert set(ignored) == {"web : space before the colon", "export X=1"}
    assert ignored["export X=1"].where == "Procfile:7"


def test_the_command_reaches_sh_c_exactly(tmp_path):
    conv = convert(tmp_path, """web: exec printf '%s|' "$PORT" 'a b' $HOME\\ x; echo "done" >&2\n""")
    seen = evaluate(service(conv, "web"), tmp_path)
    assert seen["argv"] == ["/bin/sh", "-c", """exec printf '%s|' "$PORT" 'a b' $HOME\\ x; echo "done" >&2"""]


@hsettings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\n\r"),
                        max_size=12), max_size=5))
def test_any_command_line_runs_as_sh_c_would_run_it(tmp_path, args):
    line = shlex.join(["printf", "%s\\0", "first", *args])
    # One Procfile line: characters Python's splitlines() (honcho's) breaks on stay out.
    if any(ch in line for ch in "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"):
        return
    conv = convert(tmp_path, f"p: {line}\n")
    path = tmp_path / "run"
    path.write_text(service(conv, "p").run)
    out = subprocess.run(["/bin/sh", str(path)], capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().split("\0")[:-1] == ["first", *args]


def test_each_exit_ends_the_tree_as_it_ended_honcho(tmp_path):
    conv = convert(tmp_path, "web: serve\nworker: work\n")
    for svc in conv.services:
        assert settings(svc) == {"critical": True, "restart": "never", "stop_timeout": 5.0}
        assert not svc.down and svc.finish is None


def test_port_is_5000_plus_100_per_line_from_the_environment_at_start(tmp_path):
    conv = convert(tmp_path, "web: a\nworker: b\nclock: c\n")
    ports = {s.name: evaluate(s, tmp_path, env={"PATH": "/usr/bin:/bin"})["env"]["PORT"] for s in conv.services}
    assert ports == {"web": "5000", "worker": "5100", "clock": "5200"}
    ports = {s.name: evaluate(s, tmp_path, env={"PATH": "/usr/bin:/bin", "PORT": "8000"})["env"]["PORT"]
             for s in conv.services}
    assert ports == {"web": "8000", "worker": "8100", "clock": "8200"}


def test_port_from_the_env_file_or_the_command_line_is_fixed(tmp_path):
    write(tmp_path, ".env", "PORT=7000\n")
    conv = convert(tmp_path, "web: a\nworker: b\n")
    assert [settings(s)["environment"]["PORT"] for s in conv.services] == ["7000", "7100"]
    conv = convert(tmp_path, "web: a\nworker: b\n", port=9000)
    assert [settings(s)["environment"]["PORT"] for s in conv.services] == ["9000", "9100"]


def test_env_files_are_read_as_foreman_reads_them(tmp_path):
    write(tmp_path, ".env", r"""
        # comment
        PLAIN=a b c
        SINGLE='x \n y'
        DOUBLE="line1\nline2 \"q\" \\ end"
        EMPTY=
        export SKIPPED=1
        SPACED = 1
    """)
    write(tmp_path, "other.env", "PLAIN=overridden\n")
    conv = convert(tmp_path, "web: a\n")
    env = settings(service(conv, "web"))["environment"]
    assert env == {"PLAIN": "a b c", "SINGLE": "x \\n y", "DOUBLE": 'line1\nline2 "q" \\ end', "EMPTY": ""}
    ignored = sorted(n.key for n in conv.notes if n.where.startswith(".env"))
    assert ignored == ["SPACED = 1", "export SKIPPED=1"]
    conv = convert(tmp_path, "web: a\n", env_files=[str(tmp_path / ".env"), str(tmp_path / "other.env")])
    assert settings(service(conv, "web"))["environment"]["PLAIN"] == "overridden"
    conv = convert(tmp_path, "web: a\n", env_files=[])
    assert "environment" not in settings(service(conv, "web"))


def test_commands_run_in_the_procfiles_directory_or_in_cwd(tmp_path):
    conv = convert(tmp_path, "web: a\n")
    assert evaluate(service(conv, "web"), "/")["cwd"] == str(tmp_path)
    assert [n.key for n in conv.notes] == ["(working directory)"]
    conv = convert(tmp_path, "web: a\n", cwd="/")
    assert evaluate(service(conv, "web"), tmp_path)["cwd"] == "/"
    assert conv.notes == ()


def test_errors(tmp_path):
    assert failure(tmp_path, "web: a\nweb: b\n") == [
        'Procfile:2: "web" is already defined on line 1 (process names must be unique within a Procfile, '
        "as honcho requires)"]
    assert failure(tmp_path, "web:    \n") == ["Procfile:1: web: has no command"]
    assert failure(tmp_path, "[program:web]\ncommand=gunicorn\n", name="supervisord.conf") == [
        "supervisord.conf: not a Procfile: no `name: command` line (it looks like a supervisord config: "
        "svtree import supervisord supervisord.conf)"]
    assert failure(tmp_path, "# nothing here\n") == [
        "Procfile: not a Procfile: no `name: command` line (a Procfile line is `web: gunicorn app:app`)"]
    with pytest.raises(ImportFailed) as e:
        procfile.convert(str(tmp_path / "missing"))
    assert [p.render() for p in e.value.problems] == ["missing: cannot read: No such file or directory"]


def test_names_svtree_would_refuse_are_renamed(tmp_path):
    conv = convert(tmp_path, "_worker: a\n-x: b\n")
    assert [s.name for s in conv.services] == ["worker", "x"]
    assert {n.key for n in conv.notes if "is the service" in n.instead} == {"_worker", "-x"}


def test_the_written_tree_compiles(tmp_path):
    write(tmp_path, ".env", 'SECRET="s3\\"cr=t"\nODD=tab\there\n')
    conv = convert(tmp_path, "web: python -m http.server $PORT\nworker: celery -A app worker\n")
    write_tree(conv, str(tmp_path / "services.d"))
    plan = compile_tree(str(tmp_path / "services.d"))
    web = plan.by_name()["web"]
    assert web.critical and web.restart == "never" and web.stop_timeout == 5.0
    assert dict(web.environment) == {"SECRET": 's3"cr=t', "ODD": "tab\there"}
    assert os.access(str(tmp_path / "services.d" / "web" / "run"), os.X_OK)
