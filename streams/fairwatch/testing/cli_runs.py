"""Running the command line in tests: through its boundary (exit code, stdout, stderr) or through
typer's CliRunner, and the "one `error:` line" rule every expected failure keeps."""

from __future__ import annotations

from typing import Any, Mapping

from typer.testing import CliRunner, Result

from fairwatch.cli import app
from fairwatch.cli import boundary


def run_captured(capsys, *args: str) -> tuple[int, str, str]:
    """``fairwatch ARGS`` as the console script runs it; (exit code, stdout, stderr)."""
    code = boundary.run(app, list(args))
    out, err = capsys.readouterr()
    return code, out, err


def single_error(err: str) -> str:
    """The one `error:` line of ``err`` (blank lines aside), no traceback."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def invoke(*args: Any, env: Mapping[str, str | None] | None = None) -> Result:
    """``fairwatch ARGS`` through CliRunner; an exception other than an exit fails the test."""
    boundary._state["debug"] = False  # an earlier test's --debug run (through cli.run) leaves it set
    result = CliRunner().invoke(app, [str(a) for a in args], env=dict(env or {}))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def one_error(result: Result, code: int, *fragments: str) -> str:
    """The result is one `error:` line on stderr, holding each of ``fragments``, and exit ``code``."""
    assert result.exit_code == code, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]
