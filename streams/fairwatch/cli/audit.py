"""CLI verbs for auditors: ``fairwatch report`` and ``fairwatch audit verify-chain``; cli.py registers them."""

from __future__ import annotations

import json
import sys
from contextlib import closing
from pathlib import Path
from typing import Optional

import typer

from rich.console import Console

from fairwatch.cli.boundary import error, failed
from fairwatch.cli.output_files import OutputError, write_output
from fairwatch.cli.help_texts import RATIO_FLOOR_HELP, STORE_HELP, WrappedHelpGroup

console = Console(stderr=True, soft_wrap=True)  # diagnostics whole, one per line
audit_app = typer.Typer(rich_markup_mode=None, cls=WrappedHelpGroup, help="The evidence log: seal, verify, prove, check, witness; verify-report; scores; two-person; acquisition; retention; and the older hash chains.",
                        no_args_is_help=True)


def _fail(message: str, code: int = 2) -> typer.Exit:
    error(message)
    return typer.Exit(code)


def report_command(
    start: str = typer.Option(..., "--from", help="Window start, RFC 3339 (event time)."),
    end: str = typer.Option(..., "--to", help="Window end, RFC 3339."),
    deployment: Optional[str] = typer.Option(None, "--deployment"),
    algorithm: Optional[str] = typer.Option(None, "--algorithm"),
    attribute: Optional[str] = typer.Option(None, "--attribute", help="Only this attribute, e.g. race or sex&race."),
    fmt: str = typer.Option("html", "--format", help="html, pdf, json or csv"),
    kind: str = typer.Option("audit", "--kind", help="audit: the per-group numbers, provenance, plots and methods;"
                                                     " monitoring: the post-market monitoring report, a section per"
                                                     " obligation (docs/regulation.md); html, pdf or json."),
    as_json: bool = typer.Option(False, "--json", help="The report as JSON: the same as --format json."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write here, mode 0640 (default: stdout; pdf needs --out)."),
    force: bool = typer.Option(False, "--force", help="Replace the --out file if it exists (never a symlink)."),
    store: Optional[str] = typer.Option(None, "--store", envvar="FAIRWATCH_CLICKHOUSE", help=STORE_HELP),
    policy: Optional[Path] = typer.Option(None, "--policy", exists=True, dir_okay=False,
                                          help="Policy file (fairwatch.detect.policy): its targets, policy_ratio, ratio_floor and"
                                               " label_maturity apply unless given here; path and sha256 go in"
                                               " the report."),
    target_fmr: Optional[float] = typer.Option(None, "--target-fmr", help="Intended FMR: sets status."),
    target_fnmr: Optional[float] = typer.Option(None, "--target-fnmr", help="Intended FNMR."),
    policy_ratio: Optional[float] = typer.Option(None, "--policy-ratio", min=1.0,
                                                 help="Largest max/min ratio of a rate across groups the policy allows."),
    ratio_floor_fmr: Optional[float] = typer.Option(None, "--ratio-floor-fmr", help=RATIO_FLOOR_HELP),
    ratio_floor_fnmr: Optional[float] = typer.Option(None, "--ratio-floor-fnmr", help="The same for FNMR."),
    min_comparisons: int = typer.Option(30, "--min-comparisons", help="Fewer comparisons: insufficient."),
    min_group_size: int = typer.Option(10, "--min-group-size", envvar="FAIRWATCH_REPORT_MIN_GROUP", min=0,
                                       help="Groups with fewer verified outcomes are suppressed in the export."),
    bucket_seconds: int = typer.Option(60, "--bucket-seconds", envvar="FAIRWATCH_BUCKET_SECONDS"),
    label_maturity: Optional[str] = typer.Option(
        None, "--label-maturity", help="Outcomes are final this long after their event, e.g. 4d (default: the"
                                       " policy's label_maturity, else the larger 99th percentile of delays to"
                                       " first verdicts and to corrections over 90 days)."),
    origin: str = typer.Option("fairwatch", "--origin", envvar="FAIRWATCH_EVIDENCE_ORIGIN",
                               help="The evidence logs' origin prefix: the report names each deployment's newest"
                                    " signed checkpoint under it (fairwatch audit seal --origin)."),
) -> None:
    """An audit report of a past window: the numbers of `fairwatch metrics`, provenance, plots, methods;
    with --kind monitoring, the post-market monitoring report (a section per obligation)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from fairwatch.audit.report import EmptyWindow, build_report, open_for_reading
    from fairwatch.audit.report_render import FORMATS, render
    from fairwatch.audit.window import WindowError, parse_label_maturity, resolve_window
    from fairwatch.core.config import CoreConfig
    from fairwatch.store.clickhouse import StoreError

    if as_json:
        if fmt not in ("html", "json"):  # html is the default: only an explicit other format conflicts
            raise _fail(f"--json and --format {fmt} disagree: give one of them")
        fmt = "json"
    if fmt not in FORMATS:
        raise _fail(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if kind not in ("audit", "monitoring"):
        raise _fail(f"--kind must be audit or monitoring, got {kind!r}")
    if kind == "monitoring" and fmt == "csv":
        raise _fail("the monitoring report has no CSV form: give --format html, pdf or json")
    if fmt == "pdf" and out is None and sys.stdout.isatty():
        raise _fail("a PDF goes to a file: add --out report.pdf")
    if out is not None and not out.parent.is_dir():  # said before the report is built, not after
        raise _fail(f"--out {out}: the folder {out.parent} does not exist; create it or write elsewhere")
    try:
        maturity = None if label_maturity is None else parse_label_maturity(label_maturity)
        if policy is not None:  # its targets unless given on the command line
            from fairwatch.detect.policy import load_policy

            loaded = load_policy(policy)
            target_fmr = loaded.target_fmr if target_fmr is None else target_fmr
            target_fnmr = loaded.target_fnmr if target_fnmr is None else target_fnmr
            policy_ratio = loaded.policy_ratio if policy_ratio is None else policy_ratio
            maturity = loaded.label_maturity if maturity is None else maturity
            ratio_floor_fmr = loaded.ratio_floor.get("fmr") if ratio_floor_fmr is None else ratio_floor_fmr
            ratio_floor_fnmr = loaded.ratio_floor.get("fnmr") if ratio_floor_fnmr is None else ratio_floor_fnmr
        config = CoreConfig(bucket_seconds=bucket_seconds, target_fmr=target_fmr, target_fnmr=target_fnmr,
                            min_comparisons=min_comparisons, policy_ratio=policy_ratio,
                            ratio_floor_fmr=ratio_floor_fmr, ratio_floor_fnmr=ratio_floor_fnmr)
        window = resolve_window(None, start, end, bucket_seconds)
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        # a progress bar only for a person watching: without a terminal it would leave blank lines
        with closing(open_for_reading(store)) as opened, Progress(*columns, console=console, transient=True,
                                                                   disable=not console.is_terminal) as bar:
            tasks: dict[str, int] = {}

            def progress(what: str, done: int, total: int) -> None:
                if what not in tasks:
                    tasks[what] = bar.add_task(what, total=total)
                bar.update(tasks[what], completed=done, total=total)

            if kind == "monitoring":
                from fairwatch.audit.monitoring import build_monitoring_report

                report = build_monitoring_report(opened, window, config, deployment=deployment, algorithm=algorithm,
                                                 policy=policy, label_maturity_seconds=maturity,
                                                 evidence_origin=origin, progress=progress)
            else:
                report = build_report(opened, window, config, deployment=deployment, algorithm=algorithm,
                                      attribute=attribute, min_group_size=min_group_size, policy=policy,
                                      requested={"from": start, "to": end}, progress=progress,
                                      plots=fmt in ("html", "pdf"), label_maturity_seconds=maturity,
                                      evidence_origin=origin)
            data = render(report, fmt)
    except EmptyWindow as exc:
        raise failed(exc, 1) from None
    except (WindowError, StoreError, ValueError) as exc:
        raise failed(exc) from None
    if out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        try:
            write_output(out, data, force)
        except OutputError as exc:
            raise failed(exc) from None
        doc = report.document
        if kind == "monitoring":
            console.print(f"wrote {out} ({len(data)} bytes): {len(doc['sections'])} sections")
        else:
            console.print(f"wrote {out} ({len(data)} bytes): {len(doc['groups'])} groups, "
                          f"{doc['privacy']['suppressed_groups']} suppressed, {len(doc['alerts'])} alerts")


@audit_app.command("verify-chain")
def verify_chain_command(
    start: str = typer.Option(..., "--from", help="Records recorded from this time, RFC 3339."),
    end: str = typer.Option(..., "--to", help="Records up to this time (exclusive), RFC 3339."),
    chain: Optional[str] = typer.Option(None, "--chain", help="Only this chain (default: every chain)."),
    store: Optional[str] = typer.Option(None, "--store", envvar="FAIRWATCH_CLICKHOUSE", help=STORE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Recompute the audit log's hash chains and report the first broken link (exit 1 when broken).

    MACs are checked when FAIRWATCH_AUDIT_KEY is set.
    """
    from fairwatch.audit.report import open_for_reading
    from fairwatch.audit.window import WindowError, resolve_window
    from fairwatch.store.auditlog import AuditError, verify
    from fairwatch.store.clickhouse import StoreError

    try:
        window = resolve_window(None, start, end, 1)
        with closing(open_for_reading(store)) as opened:
            result = verify(opened, window.start, window.end, chain=chain)
    except (WindowError, StoreError, AuditError) as exc:
        raise failed(exc) from None
    if as_json:
        print(json.dumps(result.to_dict()))
    else:
        macs = "with MACs" if result.macs_checked else "without MACs (set FAIRWATCH_AUDIT_KEY to check them)"
        for name, (seq, digest) in sorted(result.chains.items()):
            print(f"chain {name}: intact up to seq {seq}, head {digest}")
        for broken in result.breaks:
            print(f"BROKEN {broken}")
        print(f"{result.checked} records checked {macs}: {'ok' if result.ok else 'TAMPERED'}")
    raise typer.Exit(0 if result.ok else 1)


def register(app: typer.Typer) -> None:
    """Add ``report`` and the ``audit`` group to the main CLI."""
    from fairwatch.cli.evidence import register as register_evidence
    from fairwatch.cli.report_evidence import register as register_report_evidence
    from fairwatch.cli.scores import scores_command
    from fairwatch.cli.retention import audit_retention_command, retention_command
    from fairwatch.cli.acquisition import acquisition_command
    from fairwatch.cli.two_person import two_person_command

    app.command("report")(report_command)
    register_evidence(audit_app)
    register_report_evidence(audit_app)
    audit_app.command("scores")(scores_command)
    audit_app.command("two-person")(two_person_command)
    audit_app.command("acquisition")(acquisition_command)
    audit_app.command("retention")(audit_retention_command)
    app.command("retention")(retention_command)
    app.add_typer(audit_app, name="audit")


__all__ = ["register", "audit_app", "report_command"]
