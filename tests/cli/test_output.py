"""Output that fits its reader: full values at any width, plain tab-separated text without a TTY,
capped diagnostics in `file:line: reason` form, and `--json` on every command."""

import io
import json

import pytest
from fairwatch.cli import app
from fairwatch.cli.boundary import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, run
from fairwatch.sim.tables import print_table
from rich.console import Console
from rich.table import Table
from typer.main import get_command

LONG = "race=Indigenous&sex=F&age=50+ at gate-lighting-b-north-entrance"
INTERVAL = "0.0007087 [8.505e-05, 0.002603]"
WINDOW = ["--from", "2026-11-25T06:00:00Z", "--to", "2026-11-26T06:00:00Z"]


def _table() -> Table:
    table = Table(title="per-group rates [95% CI]", show_lines=True)
    for name in ("group", "FMR [95% CI]", "status"):
        table.add_column(name)
    table.add_row(LONG, INTERVAL, "[bold]above_policy[/bold]")
    table.add_row("sex=M", "0 [0, 0.003591]", "insufficient")
    return table


def test_a_table_on_a_terminal_keeps_every_value_whole_boxed_when_it_fits_else_as_records():
    wide = io.StringIO()
    print_table(_table(), Console(file=wide, width=120, force_terminal=True, color_system=None))
    lines = wide.getvalue().splitlines()
    assert "…" not in wide.getvalue() and max(map(len, lines)) <= 120
    row = next(line for line in lines if LONG in line)  # one line: every cell whole
    assert INTERVAL in row and "above_policy" in row
    narrow = io.StringIO()
    print_table(_table(), Console(file=narrow, width=40, force_terminal=True, color_system=None))
    text = narrow.getvalue()
    assert "…" not in text and "│" not in text
    # the long group is wider than the terminal: the terminal wraps it, the text holds it whole
    assert text.splitlines() == ["per-group rates [95% CI]", "-- 1 --", f"group         {LONG}",
                                 f"FMR [95% CI]  {INTERVAL}", "status        above_policy", "-- 2 --",
                                 "group         sex=M", "FMR [95% CI]  0 [0, 0.003591]", "status        insufficient"]


def test_a_table_without_a_terminal_is_tab_separated_with_the_values_as_they_are():
    buffer = io.StringIO()
    print_table(_table(), Console(file=buffer, width=40, force_terminal=False))
    assert buffer.getvalue().splitlines() == [
        "# per-group rates [95% CI]",
        "group\tFMR [95% CI]\tstatus",
        f"{LONG}\t{INTERVAL}\tabove_policy",
        "sex=M\t0 [0, 0.003591]\tinsufficient",
    ]


def test_every_command_but_the_long_running_ones_has_json():
    leaves = {}

    def walk(command, path):
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, path + (name,))
        if not getattr(command, "commands", None):
            leaves[" ".join(path)] = [o for p in command.params for o in getattr(p, "opts", [])]

    walk(get_command(app), ())
    assert len(leaves) >= 15
    without = sorted(name for name, options in leaves.items() if "--json" not in options)
    assert without == ["demo", "worker"]  # they run services for minutes; their output is logs and files


def test_validate_prints_capped_diagnostics_one_per_line_and_a_summary(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    path = tmp_path / "events.jsonl"
    path.write_text("".join(f'{{"unknown_{i}": 1}}\n' for i in range(30)) + "not json\n")
    code = run(app, ["validate", str(path), "--kind", "match-events", "--max-errors", "5"])
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert code == EXIT_FINDINGS and out == ""
    assert len(lines) == 7, err
    for number, line in enumerate(lines[:5], start=1):
        assert line.startswith(f"{path}:{number}: unknown_field (unknown_{number - 1}): "), line
    assert lines[5:] == ["... and 26 more rejected lines (all of them with --json)", "0 valid, 31 rejected"]
    code = run(app, ["validate", str(path), "--kind", "match-events", "--json"])
    out, _ = capsys.readouterr()
    records = [json.loads(line) for line in out.splitlines()]
    assert code == EXIT_FINDINGS and [r["line"] for r in records] == list(range(1, 32))
    assert records[-1]["reason_code"] == "invalid_json"


def test_version_and_dashboards_export_in_json(tmp_path, capsys):
    from fairwatch import __version__

    assert run(app, ["version", "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out) == {"version": __version__}
    assert run(app, ["dashboards", "export", "--out", str(tmp_path), "--json"]) == EXIT_OK
    written = json.loads(capsys.readouterr().out)["written"]
    assert sorted(written) == sorted(str(p) for p in tmp_path.glob("*.json")) and len(written) == 4


def test_dashboards_export_never_overwrites_the_checkouts_boards_by_default(capsys):
    assert run(app, ["dashboards", "export"]) == EXIT_USAGE
    assert "Missing option '--out'" in capsys.readouterr().err


@pytest.fixture
def replayed(tmp_path):
    """A small simulated day, replayed into an embedded store by the commands themselves."""
    assert run(app, ["simulate", "--events", "4000", "--out", str(tmp_path / "sim")]) == EXIT_OK
    url = f"chdb://{tmp_path / 'store'}"
    assert run(app, ["replay", str(tmp_path / "sim" / "events.jsonl"), str(tmp_path / "sim" / "outcomes.jsonl"),
                     "--store", url]) == EXIT_OK
    return url


def test_metrics_without_a_tty_is_the_json_documents_numbers_in_tab_separated_rows(replayed, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert run(app, ["metrics", *WINDOW, "--store", replayed, "--json"]) == EXIT_OK
    document = json.loads(capsys.readouterr().out)
    assert run(app, ["metrics", *WINDOW, "--store", replayed]) == EXIT_OK
    out = capsys.readouterr().out
    assert "…" not in out and "│" not in out
    blocks = out.split("\n# ")
    rates = blocks[0].splitlines()
    assert rates[0].startswith("# per-group error rates")
    header = rates[1].split("\t")
    rows = [dict(zip(header, line.split("\t"))) for line in rates[2:] if line]
    assert all(len(line.split("\t")) == len(header) for line in rates[2:] if line)
    assert len(rows) == len(document["groups"])
    for row, group in zip(rows, document["groups"]):
        assert (row["deployment"], row["group"]) == (group["deployment"], group["group"])
        assert int(row["FM"]) == group["false_match"] and int(row["genuine"]) == group["genuine"]
        low, high = (float(v) for v in row["FMR [95% CI]"].split("[")[1].rstrip("]").split(","))
        assert low == pytest.approx(group["fmr_low"], rel=1e-3) and high == pytest.approx(group["fmr_high"], rel=1e-3)


def test_report_json_is_the_json_format(replayed, capsys):
    assert run(app, ["report", *WINDOW, "--store", replayed, "--json"]) == EXIT_OK
    shorthand = json.loads(capsys.readouterr().out)
    assert run(app, ["report", *WINDOW, "--store", replayed, "--format", "json"]) == EXIT_OK
    explicit = json.loads(capsys.readouterr().out)
    assert shorthand["findings"] == explicit["findings"] and shorthand["groups"] == explicit["groups"]
    assert run(app, ["report", *WINDOW, "--store", replayed, "--json", "--format", "csv"]) == EXIT_USAGE
    assert capsys.readouterr().err == "error: --json and --format csv disagree: give one of them\n"


def test_without_a_terminal_no_line_is_wrapped_and_an_empty_window_says_so_on_stderr(replayed, tmp_path, capsys,
                                                                                    monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    policy = tmp_path / "thin.yaml"  # every group short of evidence: long "not tested" lines
    policy.write_text("deployment: gate-a\nattributes: [race]\nbaseline: {duration: 2h}\nmin_evidence: 100000000\n")
    run(app, ["policy", "check", str(policy), "--store", replayed])
    out, err = capsys.readouterr()
    assert err.startswith("error: no error-rate stream") and len(err.splitlines()) == 1
    empty = ["--from", "2020-01-01T00:00:00Z", "--to", "2020-01-02T00:00:00Z", "--store", replayed]
    assert run(app, ["metrics", *empty]) == EXIT_FINDINGS
    out, err = capsys.readouterr()
    assert out == "" and err == ("error: no verified outcomes in [2020-01-01T00:00:00Z, 2020-01-02T00:00:00Z): "
                                 "nothing to report\n")
    assert run(app, ["report", *empty, "--format", "json"]) == EXIT_FINDINGS
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("error: ") and len(err.splitlines()) == 1  # no blank progress lines
    assert run(app, ["metrics", *WINDOW, "--store", replayed]) == EXIT_OK
    out, _ = capsys.readouterr()
    header = next(line for line in out.splitlines() if line.startswith("deployment\t"))
    assert len(header) > 40  # longer than the terminal, and still one line


def test_on_a_terminal_at_80_columns_nothing_is_cut_and_no_line_is_wider(replayed):
    """Golden rule of the users issue, on a real pseudo-terminal (util-linux `script`)."""
    import re
    import shlex
    import shutil
    import subprocess
    import sys

    script = shutil.which("script")
    assert script, "util-linux script (Debian bsdutils) gives the test its terminal"
    commands = (["metrics", *WINDOW, "--store", replayed],
                ["alerts", "--store", replayed, *WINDOW],
                ["metrics", "--help"], ["replay", "--help"])
    for args in commands:
        line = " ".join(shlex.quote(a) for a in (sys.executable, "-m", "fairwatch.cli", *args))
        done = subprocess.run([script, "-qec", line, "/dev/null"], capture_output=True, text=True, timeout=120,
                              env={"PATH": "/usr/bin:/bin", "COLUMNS": "80", "LINES": "50", "TERM": "xterm"})
        text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "", done.stdout)
        assert done.returncode in (0, 1), text[-2000:]
        assert "…" not in text and "Traceback" not in text, text
        if "--help" in args:  # help is wrapped to the width; data lines stay whole (the terminal wraps them)
            assert all(len(row) <= 80 for row in text.splitlines()), args
        elif args[0] == "metrics":
            assert "│" not in text and "-- 1 --" in text  # too wide for 80 columns: records, values whole


def test_report_out_is_0640_never_through_a_symlink_and_never_over_a_file_without_force(replayed, tmp_path, capsys):
    import os
    import stat

    target = tmp_path / "elsewhere.txt"
    target.write_text("not a report")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    out = tmp_path / "report.json"
    base = ["report", *WINDOW, "--store", replayed, "--format", "json"]
    assert run(app, [*base, "--out", str(link)]) == EXIT_USAGE
    assert capsys.readouterr().err.endswith(f"--out {link} is a symbolic link: name the file itself\n")
    assert target.read_text() == "not a report"
    assert run(app, [*base, "--out", str(out)]) == EXIT_OK
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o640 and json.loads(out.read_text())["groups"]
    first = out.read_bytes()
    assert run(app, [*base, "--out", str(out)]) == EXIT_USAGE
    assert "exists: add --force to replace it" in capsys.readouterr().err and out.read_bytes() == first
    os.chmod(out, 0o666)
    assert run(app, [*base, "--out", str(out), "--force"]) == EXIT_OK
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o640
    assert run(app, [*base, "--out", str(link), "--force"]) == EXIT_USAGE and target.read_text() == "not a report"
