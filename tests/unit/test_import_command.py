"""`svtree import` as a command: what it writes and prints, what it refuses, its exit codes,
and what it imports (nothing of the core, structlog or watchfiles; no process machinery)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from import_helpers import write
from svtree.cli import main
from svtree.importers.writer import service_toml, toml_string
from source_scan import PACKAGE, python_files
from test_imports import process_machinery_imported

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

CONFIG = """
    [supervisord]
    nodaemon=true
    logfile=/dev/null

    [program:web]
    command=/bin/sh -c "exec sleep 100"
    stopsignal=QUIT

    [program:worker]
    command=/bin/sleep 100
    autostart=false
"""


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def run(capsys, *args) -> "tuple[int, str, str]":
    code = main(["import", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_dry_run_prints_the_files_and_the_table_and_writes_nothing(tmp_path, capsys):
    write(tmp_path, "supervisord.conf", CONFIG)
    code, out, err = run(capsys, "supervisord", "supervisord.conf", "--dry-run")
    assert (code, err) == (0, "")
    assert "services.d/web/run  (executable)\n    #!/bin/sh\n" in out
    assert "services.d/web/service.toml\n    restart = \"on-failure\"\n    stop_signal = \"QUIT\"\n" in out
    assert "services.d/worker/down  (empty)\n" in out
    assert "svtree import: would write 2 services to services.d: web worker (--dry-run: nothing written)" in out
    assert "What did not carry over as it was (3):" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("stdout_logfile ")]
    assert rows and rows[0][1:5] == ["supervisord.conf:5", "[program:web],", "supervisord.conf:9", "[program:worker]"]
    assert not os.path.exists(tmp_path / "services.d")


def test_writes_the_tree_which_compiles(tmp_path, capsys):
    write(tmp_path, "supervisord.conf", CONFIG)
    code, out, err = run(capsys, "supervisord", "supervisord.conf", "-o", "tree")
    assert (code, err) == (0, "")
    assert out.startswith("svtree import: wrote 2 services to tree: web worker\n")
    assert "Check it with `svtree compile tree`" in out
    assert sorted(os.listdir(tmp_path / "tree")) == ["web", "worker"]
    assert sorted(os.listdir(tmp_path / "tree" / "worker")) == ["down", "run", "service.toml"]
    assert os.access(str(tmp_path / "tree" / "web" / "run"), os.X_OK)
    assert main(["compile", "tree"]) == 0


def test_a_non_empty_directory_is_refused_unless_forced(tmp_path, capsys):
    write(tmp_path, "supervisord.conf", CONFIG)
    write(tmp_path, "services.d/web/run", "#!/bin/sh\nexec old\n")
    write(tmp_path, "services.d/web/finish", "#!/bin/sh\n")
    write(tmp_path, "services.d/mine/run", "#!/bin/sh\nexec mine\n")
    code, out, err = run(capsys, "supervisord", "supervisord.conf")
    assert code == 1 and out == ""
    assert err == ("svtree import: services.d is not empty: nothing written (give --force to write into it: "
                   "service directories of the same names are replaced, nothing else is touched; or -o DIR "
                   "for another directory)\n")
    assert (tmp_path / "services.d" / "web" / "run").read_text() == "#!/bin/sh\nexec old\n"
    code, out, err = run(capsys, "supervisord", "supervisord.conf", "--force")
    assert code == 0
    # web replaced whole (its old finish is gone), mine untouched, nothing hidden left over.
    assert sorted(os.listdir(tmp_path / "services.d")) == ["mine", "web", "worker"]
    assert sorted(os.listdir(tmp_path / "services.d" / "web")) == ["run", "service.toml"]
    assert (tmp_path / "services.d" / "mine" / "run").read_text() == "#!/bin/sh\nexec mine\n"


def test_an_output_that_is_a_file_is_refused(tmp_path, capsys):
    write(tmp_path, "supervisord.conf", CONFIG)
    write(tmp_path, "afile", "x")
    code, out, err = run(capsys, "supervisord", "supervisord.conf", "-o", "afile", "--force")
    assert code == 1 and err.startswith("svtree import: cannot write")
    code, out, err = run(capsys, "supervisord", "supervisord.conf", "-o", "afile")
    assert code == 1 and err.startswith("svtree import: afile is not a directory: nothing written")


def test_errors_are_one_line_each_and_nothing_is_written(tmp_path, capsys):
    write(tmp_path, "supervisord.conf", """
        [program:a]
        command=/bin/a %(nope)s
        [program:b]
        command=/bin/b
        startsecs=x
    """)
    code, out, err = run(capsys, "supervisord", "supervisord.conf")
    assert code == 1 and out == ""
    assert err.splitlines() == [
        "svtree import: supervisord.conf:2: [program:a] command: %(nope)s: no such name (supervisord knows "
        "group_name, here, numprocs, process_num, program_name, host_node_name, ENV_NAME)",
        'svtree import: supervisord.conf:5: [program:b] startsecs: must be an integer, not "x"',
    ]
    assert not os.path.exists(tmp_path / "services.d")
    code, out, err = run(capsys, "procfile")
    assert (code, out, err) == (1, "", "svtree import: Procfile: cannot read: No such file or directory\n")


@pytest.mark.parametrize("args,message", [
    ([], "the following arguments are required: kind"),
    (["s6"], "argument kind: invalid choice: 's6'"),
    (["supervisord"], "import supervisord needs the config FILE"),
    (["supervisord", "x.conf", "--env", ".env"], "--env is for Procfiles"),
    (["procfile", "--port", "http"], '--port takes a port number, not "http"'),
    (["procfile", "Procfile", "extra"], "unexpected argument(s): extra"),
])
def test_usage_errors_exit_2(capsys, args, message):
    code, out, err = run(capsys, *args)
    assert code == 2 and out == ""
    assert err.startswith(f"svtree import: {message}") and "usage: svtree" in err


def test_a_tree_that_does_not_compile_here_is_written_with_a_warning(tmp_path, capsys):
    write(tmp_path, "supervisord.conf", "[program:a]\ncommand=/bin/a\nuser=no-such-user-svtree\n")
    code, out, err = run(capsys, "supervisord", "supervisord.conf")
    assert code == 0 and "wrote 1 service to services.d: a" in out
    assert err.splitlines()[0].startswith("svtree import: warning: services.d/a/service.toml: user:")
    assert err.splitlines()[-1] == ("svtree import: warning: services.d does not compile on this machine (above); "
                                    "check it with `svtree compile services.d` where it will run")


def test_procfile_with_env_and_port(tmp_path, capsys):
    write(tmp_path, "app/Procfile", "web: serve\nworker: work\n")
    write(tmp_path, "app/prod.env", "A=1\n")
    write(tmp_path, "app/more.env", "B=2\n")
    code, out, err = run(capsys, "procfile", "app/Procfile", "--env", "app/prod.env,app/more.env",
                         "--port", "8000", "--cwd", "/srv/app", "-o", "app/services.d")
    assert (code, err) == (0, "")
    toml = tomllib.loads((tmp_path / "app/services.d/worker/service.toml").read_text())
    assert toml["environment"] == {"A": "1", "B": "2", "PORT": "8100"}
    assert "cd /srv/app || exit 127" in (tmp_path / "app/services.d/worker/run").read_text()
    assert "Everything carried over." in out


def test_toml_strings_escape_what_toml_forbids():
    text = 'q" b\\ n\n t\t bell\x07 del\x7f é'
    assert tomllib.loads(f"k = {toml_string(text)}")["k"] == text
    toml = service_toml((("restart", "never"), ("environment", {"A.B": "1", "PLAIN": text})))
    assert tomllib.loads(toml) == {"restart": "never", "environment": {"A.B": "1", "PLAIN": text}}
    with pytest.raises(ValueError):
        service_toml((("no_such_key", 1),))


def test_help_lists_the_import_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "svtree import supervisord FILE" in out and "svtree import procfile [FILE]" in out


# --- what the import path loads ---------------------------------------------------------------

IMPORTERS = os.path.join(PACKAGE, "importers")


def test_importers_import_nothing_about_processes():
    bad = process_machinery_imported(IMPORTERS)
    assert len(python_files(IMPORTERS)) >= 6
    assert not bad, f"the importers must not import process machinery: {bad}"


def test_the_import_command_loads_no_core_structlog_or_watchfiles(tmp_path):
    write(tmp_path, "Procfile", "web: serve\n")
    code = ("import sys; from svtree.cli import main; "
            "rc = main(['import', 'procfile', '--dry-run']); "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('structlog', 'watchfiles', 'subprocess')"
            " or m.startswith(('svtree.core', 'svtree.monitor', 'svtree.ctl', 'svtree.log'))]; "
            "print(rc, sorted(bad), file=sys.stderr)")
    root = os.path.dirname(PACKAGE)
    r = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, cwd=str(tmp_path),
                       env=dict(os.environ, PYTHONPATH=root), timeout=30)
    assert r.stderr.strip().splitlines()[-1] == "0 []", r.stderr
    assert "services.d/web/run  (executable)" in r.stdout
