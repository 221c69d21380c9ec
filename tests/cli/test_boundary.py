"""The command line's first contact and its failures: help at 80 columns without a TTY, one
`error:` line per expected failure, the documented exit codes, `--debug`."""

import json
import logging
import re
import subprocess
import sys
import uuid
from contextlib import closing

import pytest
from fairwatch.cli import app
from fairwatch.cli.boundary import CHATTY_LOGGERS, EXIT_BUG, EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, run
from fairwatch.store.clickhouse import ServerStore, open_store
from fairwatch.store.migrations import migrate
from fairwatch.testing.stack import server_url
from typer.main import get_command

WINDOW = ["--from", "2026-01-01T00:00:00Z", "--to", "2026-01-02T00:00:00Z"]


@pytest.fixture(autouse=True)
def eighty_columns(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.delenv("FAIRWATCH_DEBUG", raising=False)
    monkeypatch.delenv("FAIRWATCH_CLICKHOUSE", raising=False)
    levels = {name: logging.getLogger(name).level for name in CHATTY_LOGGERS}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def _invoke(capsys, *args: str) -> tuple[int, str, str]:
    code = run(app, list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def _command_paths(command=None, path=()) -> list[tuple[str, ...]]:
    command = command or get_command(app)
    paths = [path]
    for name, sub in getattr(command, "commands", {}).items():
        paths += _command_paths(sub, path + (name,))
    return paths


def test_every_help_fits_80_columns_in_full_and_shows_flags_as_flags(capsys):
    paths = _command_paths()
    assert len(paths) >= 19  # every verb and group, walked from the app itself
    for path in paths:
        code, out, err = _invoke(capsys, *path, "--help")
        assert code == EXIT_OK and err == "", path
        body = out.replace("COMMAND [ARGS]...", "")  # click's usual mark of a variadic, not a cut
        assert "…" not in body and "..." not in body, (path, out)  # nothing cut
        assert "<bool>" not in out and "\x1b[" not in out, (path, out)
        assert all(len(line) <= 80 for line in out.splitlines()), (path, out)
        usage = out.splitlines()[0]
        assert usage.startswith(f"Usage: fairwatch {' '.join(path)}".rstrip()) and "{" not in usage, usage
    code, out, _ = _invoke(capsys, "replay", "--help")
    assert out.splitlines()[0] == "Usage: fairwatch replay [OPTIONS] EVENTS OUTCOMES"
    assert re.search(r"^  --json\s+Print", _invoke(capsys, "metrics", "--help")[1], re.M)


def test_usage_errors_are_one_line_naming_the_help_to_read(capsys):
    code, _, err = _invoke(capsys, "repla")
    assert code == EXIT_USAGE
    assert _one_error_line(err) == ("error: No such command 'repla'. Did you mean 'replay', 'plan'? "
                                    "(see `fairwatch --help`)")
    code, _, err = _invoke(capsys, "replay")
    assert code == EXIT_USAGE and "Missing argument 'events'" in _one_error_line(err)
    code, _, err = _invoke(capsys, "metrics", "--from", "yesterday", "--to", "2026-01-02T00:00:00Z",
                           "--store", "chdb:///nonexistent")
    assert code == EXIT_USAGE and "'yesterday' is not an RFC 3339 date-time" in _one_error_line(err)


def test_a_mistyped_local_store_is_named_and_not_created(capsys, tmp_path):
    missing = tmp_path / "stroe"
    for verb in (["metrics", *WINDOW], ["report", *WINDOW, "--format", "json"], ["alerts"]):
        code, out, err = _invoke(capsys, *verb, "--store", f"chdb://{missing}")
        assert code == EXIT_USAGE, verb
        assert _one_error_line(err) == f"error: no store at {missing}: the directory does not exist (check the path)"
        assert out == "" and not missing.exists()
    data = tmp_path / "data"  # a folder of something else: named, and left as it was
    data.mkdir()
    (data / "events.jsonl").write_text("{}\n")
    code, _, err = _invoke(capsys, "metrics", *WINDOW, "--store", f"chdb://{data}")
    assert code == EXIT_USAGE
    assert _one_error_line(err) == (f"error: {data} is not a fairwatch store (no fairwatch database in it): "
                                    "check the path")
    assert [p.name for p in data.iterdir()] == ["events.jsonl"]


def test_an_unreachable_server_is_one_line_without_the_drivers_traceback(capsys):
    code, _, err = _invoke(capsys, "metrics", *WINDOW, "--store", "clickhouse://reader:pw@127.0.0.1:1/fw")
    assert code == EXIT_USAGE
    line = _one_error_line(err)
    assert line.startswith("error: cannot reach ClickHouse at 127.0.0.1:1") and "pw" not in line


def test_empty_windows_exit_1_in_metrics_and_report_alike(capsys, tmp_path):
    url = f"chdb://{tmp_path / 'store'}"
    with closing(open_store(url)) as opened:
        migrate(opened)
    assert _invoke(capsys, "metrics", *WINDOW, "--store", url)[0] == EXIT_FINDINGS
    assert _invoke(capsys, "report", *WINDOW, "--store", url, "--format", "json")[0] == EXIT_FINDINGS


def test_output_that_cannot_be_written_is_one_line(capsys, monkeypatch, tmp_path):
    url = f"chdb://{tmp_path / 'store'}"
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)  # a PDF's bytes would go to a terminal
    code, _, err = _invoke(capsys, "report", *WINDOW, "--store", url, "--out", str(tmp_path / "no" / "r.html"))
    assert code == EXIT_USAGE and "the folder" in _one_error_line(err) and "does not exist" in err
    code, _, err = _invoke(capsys, "report", *WINDOW, "--store", url, "--format", "pdf")
    assert code == EXIT_USAGE and _one_error_line(err) == "error: a PDF goes to a file: add --out report.pdf"


def test_a_bug_says_so_in_one_line_and_debug_shows_the_traceback(capsys, monkeypatch, tmp_path):
    import fairwatch.audit.window as window

    def broken(*_args, **_kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(window, "resolve_window", broken)
    code, _, err = _invoke(capsys, "metrics", *WINDOW, "--store", f"chdb://{tmp_path}")
    assert code == EXIT_BUG
    assert _one_error_line(err).startswith("error: ZeroDivisionError: division by zero. This is a bug in fairwatch")
    with pytest.raises(ZeroDivisionError):
        run(app, ["--debug", "metrics", *WINDOW, "--store", f"chdb://{tmp_path}"])
    monkeypatch.setenv("FAIRWATCH_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        run(app, ["metrics", *WINDOW, "--store", f"chdb://{tmp_path}"])


def test_the_installed_entry_point_goes_through_the_boundary(tmp_path):
    result = subprocess.run([sys.executable, "-m", "fairwatch.cli", "alerts", "--store", f"chdb://{tmp_path / 'x'}"],
                            capture_output=True, text=True, env={"COLUMNS": "80", "PATH": "/usr/bin:/bin"}, timeout=120)
    assert result.returncode == EXIT_USAGE
    assert result.stderr.strip().splitlines() == [f"error: no store at {tmp_path / 'x'}: the directory does not exist "
                                                 "(check the path)"]


@pytest.mark.services
def test_a_wrong_database_on_the_server_is_named_not_created(capsys, stack):
    database = f"fw_typo_{uuid.uuid4().hex[:8]}"
    url = server_url(stack["FAIRWATCH_CLICKHOUSE_MIGRATOR"], database)
    code, _, err = _invoke(capsys, "report", *WINDOW, "--store", url, "--format", "json")
    assert code == EXIT_USAGE
    line = _one_error_line(err)
    assert f"has no database {database}" in line and "Stack trace" not in line
    admin = ServerStore(server_url(stack["FAIRWATCH_CLICKHOUSE_MIGRATOR"], "default"), create_database=False)
    try:
        assert admin.query(f"SELECT count() FROM system.databases WHERE name = '{database}'")[0][0] == 0
    finally:
        admin.close()


@pytest.mark.services
def test_smoke_never_prints_the_stores_password(capsys, monkeypatch, stack):
    from urllib.parse import urlparse

    for name in ("FAIRWATCH_KAFKA", "FAIRWATCH_ALERTMANAGER"):  # the store alone
        monkeypatch.delenv(name, raising=False)
    server = urlparse(stack["FAIRWATCH_CLICKHOUSE_MIGRATOR"])
    url = f"clickhouse://default:S3cretPw@{server.hostname}:{server.port}/fw_smoke_{uuid.uuid4().hex[:8]}"
    code, out, err = _invoke(capsys, "smoke", "--store", url, "--json")
    assert code == EXIT_FINDINGS  # a wrong user and password, and no TLS: refused
    assert "S3cretPw" not in out + err
    assert f"ClickHouse at clickhouse://default@{server.hostname}:{server.port}/" in err  # the progress line
    assert json.loads(out)["ok"] is False and err.splitlines()[-1].startswith("error: smoke failed: ")


def test_debug_shows_the_traceback_and_the_query_a_store_refused(capsys, tmp_path):
    from fairwatch.store.clickhouse import StoreError

    url = f"chdb://{tmp_path / 'store'}"
    with closing(open_store(url)) as store:  # fairwatch's tables, then one of them gone
        migrate(store)
        store.execute("DROP TABLE group_counts")
    code, _, err = _invoke(capsys, "metrics", *WINDOW, "--store", url)
    assert code == EXIT_USAGE
    assert _one_error_line(err).endswith("(--debug shows the query)") and "group_counts" in err
    with pytest.raises(StoreError) as raised:
        run(app, ["--debug", "metrics", *WINDOW, "--store", url])
    assert "FROM group_counts" in capsys.readouterr().err and raised.value.sql.count("group_counts") >= 1


def test_an_error_line_is_one_line_without_the_passwords_of_the_urls_it_quotes(capsys):
    from fairwatch.cli.boundary import error

    error("Alertmanager at http://am:s3cret@alerts:9093 said:\n  401 for url 'http://am:s3cret@alerts:9093/api'")
    assert capsys.readouterr().err == ("error: Alertmanager at http://am@alerts:9093 said: 401 for url "
                                       "'http://am@alerts:9093/api'\n")


def test_migrate_uses_the_migrators_store_before_the_writers(tmp_path):
    """Security issue: scripts/stack gives FAIRWATCH_CLICKHOUSE to the writer (no DDL) and
    FAIRWATCH_CLICKHOUSE_MIGRATOR to the user that migrates; `fairwatch migrate` as printed in the
    README takes the latter. Oracle: which of two stores holds the tables afterwards."""
    from typer.testing import CliRunner

    migrator, writer = tmp_path / "migrator", tmp_path / "writer"
    writer.mkdir()
    done = CliRunner().invoke(app, ["migrate", "--json"], env={"FAIRWATCH_CLICKHOUSE_MIGRATOR": f"chdb://{migrator}",
                                                               "FAIRWATCH_CLICKHOUSE": f"chdb://{writer}"})
    assert done.exit_code == 0, done.output
    assert (migrator / "metadata" / "fairwatch.sql").exists() and not list(writer.iterdir())
    applied = sum(m["status"] == "applied" for m in json.loads(done.stdout)["migrations"])
    with closing(open_store(f"chdb://{migrator}", create=False)) as store:
        assert store.query("SELECT count() FROM schema_migrations")[0][0] == applied > 0
