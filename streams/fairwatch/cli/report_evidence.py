"""CLI verb ``fairwatch audit verify-report``: a report's numbers against the signed evidence."""

from __future__ import annotations

import json
import os
from contextlib import closing
from pathlib import Path
from typing import Optional

import typer

from fairwatch.cli.boundary import EXIT_FINDINGS, error, failed
from fairwatch.cli.evidence import KEY_HELP, _verifiers
from fairwatch.cli.help_texts import STORE_HELP, PlainUsageCommand

MAX_SHOWN = 50  # differences printed before "and N more" (--json gives them all)


def verify_report_command(
    report: Path = typer.Argument(..., exists=True, dir_okay=False, help="A report made with `fairwatch report"
                                  " --format json`."),
    store: Optional[str] = typer.Option(None, "--store", envvar="FAIRWATCH_CLICKHOUSE", help=STORE_HELP),
    key: list[str] = typer.Option([], "--key", help=KEY_HELP),
    outside: list[Path] = typer.Option([], "--checkpoints", help="A directory of checkpoints kept outside the store"
                                       " (repeatable); default FAIRWATCH_EVIDENCE_DIR when set."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Verify the evidence up to the report's checkpoints and recompute its numbers from it (exit 1 unless equal).

    The numbers are recomputed from the store now, from the rows sealed up to the checkpoints the
    report names only: rows stored or sealed after the report change nothing.
    """
    from fairwatch.audit.evidence_log import EvidenceError
    from fairwatch.audit.report import open_for_reading
    from fairwatch.audit.report_verify import ReportError, verify_report
    from fairwatch.audit.window import WindowError
    from fairwatch.contracts.keys import BadKey
    from fairwatch.store.clickhouse import StoreError

    directories = list(outside) or ([Path(os.environ["FAIRWATCH_EVIDENCE_DIR"])]
                                    if os.environ.get("FAIRWATCH_EVIDENCE_DIR") else [])
    try:
        verifiers = _verifiers(key)
        document = json.loads(report.read_text())
        if not isinstance(document, dict) or document.get("report") != "fairwatch audit report":
            raise ValueError(f"{report} is not the JSON of a fairwatch report (fairwatch report --format json)")
    except (BadKey, ValueError, OSError) as exc:
        raise failed(exc) from None
    try:
        with closing(open_for_reading(store)) as opened:
            result = verify_report(opened, document, verifiers, outside=directories)
    except ReportError as exc:
        raise failed(exc, EXIT_FINDINGS) from None
    except (EvidenceError, StoreError, WindowError, ValueError, OSError) as exc:
        raise failed(exc) from None
    if as_json:
        print(json.dumps(result.to_dict(), default=str))
        raise typer.Exit(0 if result.ok else EXIT_FINDINGS)
    window = document["scope"]["window"]
    print(f"report of [{window['from']}, {window['to']}) made {document['generated_at']}")
    for log in result.logs:
        if log.problem is None:
            print(f"{log.origin}: checkpoint size {log.tree_size}, signed by {', '.join(log.signed_by)}")
    for problem in result.problems:
        error(problem)
    if result.evidence is not None:
        for finding in result.evidence.findings:
            print(finding.text())
        state = "ok" if result.evidence.ok else "TAMPERED"
        print(f"evidence: {result.evidence.rows_checked} rows checked in {result.evidence.seconds:.2f}s: {state}")
    if result.recomputed:
        print("recomputed from the store now, from the rows sealed up to the report's checkpoints only (rows sealed"
              f" after them left out): {result.compared} numbers compared")
        for difference in result.differences[:MAX_SHOWN]:
            print(difference.text())
        if len(result.differences) > MAX_SHOWN:
            print(f"... and {len(result.differences) - MAX_SHOWN} more differences (--json lists them all)")
    if result.ok:
        print("ok: the report's numbers are those of the signed evidence")
    else:
        said = [f"{len(result.differences)} numbers differ" if result.differences else "",
                "the evidence does not verify" if result.evidence is None or not result.evidence.ok else "",
                f"{len(result.problems)} problems" if result.problems else ""]
        print(f"NOT VERIFIED: {'; '.join(s for s in said if s)}")
    raise typer.Exit(0 if result.ok else EXIT_FINDINGS)


def register(audit_app: typer.Typer) -> None:
    audit_app.command("verify-report", cls=PlainUsageCommand)(verify_report_command)
