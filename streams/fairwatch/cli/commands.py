"""The `fairwatch` command line. Thin: each verb parses options and calls the library."""

from __future__ import annotations

import json
import sys
from contextlib import closing
from dataclasses import asdict
from pathlib import Path
from typing import List, Optional

import typer

from rich.console import Console
from rich.table import Table

from fairwatch.sim.tables import print_table

from fairwatch import __version__
from fairwatch.cli.boundary import error, failed
from fairwatch.contracts.records import (
    Rejection,
    decode_match_event,
    decode_verified_outcome,
)
from fairwatch.cli.help_texts import RATIO_FLOOR_HELP, STORE_HELP, PlainUsageCommand, WrappedHelpGroup
from fairwatch.contracts.topics import ACQUISITIONS, DEFAULT_PREFIX, MATCH_EVENTS, USES, VERIFIED_OUTCOMES

# plain click help: flags read as flags and text wraps, never cut with "…" or "..."
app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, cls=WrappedHelpGroup)  # help: the callback's
console = Console(stderr=True, soft_wrap=True)  # diagnostics whole, one per line

DECODERS = {MATCH_EVENTS: decode_match_event, VERIFIED_OUTCOMES: decode_verified_outcome}


@app.callback()
def _global_options(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks (and the SQL a store refused) "
                               "instead of one error line. Also FAIRWATCH_DEBUG=1."),
) -> None:
    """fairwatch: live audit of face-recognition systems for demographic bias.

    Exit codes: 0 all good; 1 findings, or nothing to report; 2 usage or input errors; 3 a bug."""


@app.command()
def version(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Print the fairwatch version."""
    print(json.dumps({"version": __version__}) if as_json else __version__)


@app.command()
def migrate(
    # the migrator's URL first: scripts/stack gives FAIRWATCH_CLICKHOUSE to the writer, who may not run DDL
    store: Optional[str] = typer.Option(None, "--store", envvar=["FAIRWATCH_CLICKHOUSE_MIGRATOR", "FAIRWATCH_CLICKHOUSE"],
                                        help=STORE_HELP.replace("(default: FAIRWATCH_CLICKHOUSE)",
                                                                "(default: FAIRWATCH_CLICKHOUSE_MIGRATOR, else FAIRWATCH_CLICKHOUSE)")),
    retention_days: Optional[int] = typer.Option(
        None, "--retention-days", envvar="FAIRWATCH_RETENTION_DAYS",
        help="Then keep rows this many days (at least 183: logs, EU AI Act Art. 26(6)) as TTLs, as `fairwatch"
             " retention` does; a server without TTL keeps every row, which is said (default: no TTL)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Create or upgrade the ClickHouse tables (idempotent, version-aware), and apply a retention policy when given."""
    from fairwatch.store.clickhouse import StoreError, open_store, redacted_url
    from fairwatch.store.migrations import migrate as run_migrations
    from fairwatch.store.retention import apply_retention, ttl_supported

    retention: dict = {"days": retention_days}
    try:
        from fairwatch.store.auditlog import migrate_access

        with closing(open_store(store)) as opened:
            results = run_migrations(opened)
            results += migrate_access(opened)  # the auditor role, where the server has SQL RBAC
            server = ".".join(map(str, opened.server_version()))
            if retention_days is not None:
                if ttl_supported(opened):
                    retention["applied"] = apply_retention(opened, retention_days)
                else:  # a limitation, not a failure: nothing is deleted, so every floor holds
                    retention["limitation"] = (f"ClickHouse {server} has no TTL: rows are kept until deleted by"
                                               f" hand, not {retention_days} days")
    except StoreError as exc:
        raise failed(exc) from None
    if as_json:
        print(json.dumps({"server_version": server, "migrations": [asdict(r) for r in results],
                          **({"retention": retention} if retention_days is not None else {})}))
        return
    table = Table(title=f"migrations on {redacted_url(opened.url)} (server {server})")
    for column in ("version", "name", "status"):
        table.add_column(column)
    for r in results:
        table.add_row(f"{r.version:03d}", r.name, r.status)
    print_table(table)
    for line in retention.get("applied", []):
        print(f"retention: {line}")
    if "limitation" in retention:
        print(f"retention: not applied: {retention['limitation']}")


@app.command(cls=PlainUsageCommand)
def validate(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, help="A JSONL file, one record per line."),
    kind: str = typer.Option(..., "--kind", help="match-events or verified-outcomes"),
    as_json: bool = typer.Option(False, "--json", help="Print every rejection as a JSON line (no cap)."),
    max_errors: int = typer.Option(20, "--max-errors", min=0, help="Print at most this many rejected lines."),
) -> None:
    """Check a JSONL file against the contracts; report every bad line with its number and reason.

    One line per rejection, `FILE:LINE: reason_code (field): detail`, then a summary. Exit status 1
    when any line is rejected."""
    if kind not in DECODERS:
        error(f"--kind must be one of {', '.join(DECODERS)}, got {kind!r}")
        raise typer.Exit(2)
    decode = DECODERS[kind]
    good = bad = 0
    shown = _Capped(max_errors)
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            result = decode(line.rstrip(b"\r\n"))
            if isinstance(result, Rejection):
                bad += 1
                if as_json:
                    print(json.dumps({"line": number, "reason_code": result.code.value, "field": result.field,
                                      "reason": result.message}))
                else:
                    shown.show(f"{path}:{number}: {result}")
            else:
                good += 1
    if shown.hidden:
        console.print(f"... and {shown.hidden} more rejected lines (all of them with --json)", markup=False)
    console.print(f"{good} valid, {bad} rejected", markup=False)
    raise typer.Exit(1 if bad else 0)


@app.command()
def smoke(
    store: Optional[str] = typer.Option(None, "--store", envvar="FAIRWATCH_CLICKHOUSE", help=STORE_HELP),
    kafka: Optional[str] = typer.Option(None, "--kafka", envvar="FAIRWATCH_KAFKA", help="Kafka bootstrap servers."),
    alertmanager: Optional[str] = typer.Option(None, "--alertmanager", envvar="FAIRWATCH_ALERTMANAGER"),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Touch every service once with the contract examples and say what happened."""
    from fairwatch.sim.smoke import run_smoke

    try:
        steps = run_smoke(store=store, kafka=kafka, alertmanager=alertmanager, log=console.print)
    except Exception as exc:  # each step names itself in the message
        if as_json:
            print(json.dumps({"ok": False, "error": str(exc)}))
        error(f"smoke failed: {exc}")
        raise typer.Exit(1) from None
    if as_json:
        print(json.dumps({"ok": True, "steps": list(steps)}))
        return
    for step in steps:
        print(f"  ok  {step}")


@app.command()
def topics(
    kafka: str = typer.Option(..., "--kafka", envvar="FAIRWATCH_KAFKA", help="Kafka bootstrap servers."),
    prefix: str = typer.Option(DEFAULT_PREFIX, "--prefix", envvar="FAIRWATCH_TOPIC_PREFIX"),
    partitions: int = typer.Option(8, "--partitions", envvar="FAIRWATCH_PARTITIONS", min=1),
    replication: int = typer.Option(1, "--replication", envvar="FAIRWATCH_REPLICATION", min=1),
    app_id: str = typer.Option("fairwatch", "--app-id", envvar="FAIRWATCH_APP_ID",
                               help="The workers' app id: its join-log changelog topic is created too."),
    grant_worker: List[str] = typer.Option([], "--grant-worker", metavar="NAME", help="Also give Kafka principal User:NAME the "
                                           "worker's ACLs (topics and groups; needs an admin's credentials)."),
    grant_producer: List[str] = typer.Option([], "--grant-producer", metavar="NAME", help="Also let User:NAME write (only) the "
                                             "input topics of --prefix (needs an admin's credentials)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output: topic -> partitions."),
) -> None:
    """Create the topics with explicit partition counts (idempotent); print name and partitions.

    With --grant-worker / --grant-producer, also add those principals' ACLs (idempotent), as
    docker-compose's topics job does with its admin certificate."""
    from fairwatch.stream import topics as kafka_topics

    try:
        layout = kafka_topics.ensure_topics(kafka, prefix, partitions, replication, app_id=app_id)
        for name in grant_worker:
            kafka_topics.grant_worker(kafka, name)
            console.print(f"granted User:{name} the worker's ACLs", markup=False)
        for name in grant_producer:
            kafka_topics.grant_producer(kafka, prefix, name)
            console.print(f"granted User:{name} WRITE on the input topics of {prefix}", markup=False)
    except kafka_topics.TopicError as exc:
        error(str(exc))
        raise typer.Exit(2) from None
    if as_json:
        print(json.dumps(dict(sorted(layout.items()))))
        return
    for name, count in sorted(layout.items()):
        print(f"{name}\t{count}")


@app.command()
def worker(
    loglevel: str = typer.Option("info", "--loglevel", help="crit, error, warn, info or debug"),
) -> None:
    """Run a live worker (faust) over Kafka into ClickHouse; settings from FAIRWATCH_* variables."""
    from faust import Worker

    from fairwatch.contracts.keyring import KeyringError, load_keyring
    from fairwatch.detect.policy import PolicyError, load_policies
    from fairwatch.stream.app import create_app
    from fairwatch.stream.gctuning import tune_garbage_collector
    from fairwatch.stream.topics import TopicError, ensure_topics
    from fairwatch.stream.worker_settings import SettingsError, WorkerSettings

    try:
        settings = WorkerSettings.from_env()
        policies = load_policies(settings.policies) if settings.policies else {}  # refuse a bad file at start
        if settings.keyring:
            load_keyring(settings.keyring)  # likewise
        ensure_topics(settings.kafka, settings.topic_prefix, settings.partitions, settings.replication,
                      app_id=settings.app_id, link=settings.kafka_link)
    except (SettingsError, TopicError, PolicyError, KeyringError) as exc:
        error(str(exc))
        raise typer.Exit(2) from None
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(settings, policies)
    tune_garbage_collector()
    faust_worker = Worker(app, loglevel=loglevel)
    if not faust_worker.stdout.isatty():
        faust_worker.spinner = None  # faust's spinner writes cursor escape codes even into a log file
    faust_worker.execute_from_commandline()


@app.command()
def metrics(
    window: Optional[str] = typer.Option(None, "--window", help="Back from now: 15m, 1h, 24h, 7d (default 1h)."),
    start: Optional[str] = typer.Option(None, "--from", help="Window start, RFC 3339."),
    end: Optional[str] = typer.Option(None, "--to", help="Window end, RFC 3339."),
    deployment: Optional[str] = typer.Option(None, "--deployment"),
    algorithm: Optional[str] = typer.Option(None, "--algorithm"),
    store: Optional[str] = typer.Option(None, "--store", envvar="FAIRWATCH_CLICKHOUSE", help=STORE_HELP),
    target_fmr: Optional[float] = typer.Option(None, "--target-fmr", help="Declared FMR target: sets status."),
    target_fnmr: Optional[float] = typer.Option(None, "--target-fnmr", help="Declared FNMR target."),
    policy_ratio: Optional[float] = typer.Option(None, "--policy-ratio", min=1.0,
                                                 help="Largest max/min ratio of a rate across groups the policy allows."),
    ratio_floor_fmr: Optional[float] = typer.Option(None, "--ratio-floor-fmr", help=RATIO_FLOOR_HELP),
    ratio_floor_fnmr: Optional[float] = typer.Option(None, "--ratio-floor-fnmr", help="The same for FNMR."),
    min_comparisons: int = typer.Option(30, "--min-comparisons", help="Fewer comparisons: insufficient."),
    bucket_seconds: int = typer.Option(60, "--bucket-seconds", envvar="FAIRWATCH_BUCKET_SECONDS"),
    label_maturity: Optional[str] = typer.Option(
        None, "--label-maturity", help="Outcomes are final this long after their event, e.g. 4d (default: the"
                                       " larger 99th percentile of delays to first verdicts and to corrections"
                                       " over 90 days)."),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON document instead of tables."),
    without_labels: bool = typer.Option(False, "--without-labels",
                                        help="Leave out the label maturity (it changes as outcomes arrive):"
                                             " the numbers alone, as a report's hash covers them."),
) -> None:
    """Per-group error rates with intervals, and the differentials, for a window of event time."""
    from fairwatch.audit.estimates import window_metrics
    from fairwatch.audit.window import WindowError, parse_label_maturity, resolve_window
    from fairwatch.core.config import CoreConfig
    from fairwatch.store.clickhouse import StoreError, open_store

    try:
        config = CoreConfig(bucket_seconds=bucket_seconds, target_fmr=target_fmr, target_fnmr=target_fnmr,
                            min_comparisons=min_comparisons, policy_ratio=policy_ratio,
                            ratio_floor_fmr=ratio_floor_fmr, ratio_floor_fnmr=ratio_floor_fnmr)
        span = resolve_window(window, start, end, bucket_seconds)
        maturity = None if label_maturity is None else parse_label_maturity(label_maturity)
        with closing(open_store(store, create=False)) as opened:
            frame, document = window_metrics(opened, span, config, deployment, algorithm,
                                             label_maturity_seconds=maturity, with_labels=not without_labels)
    except (WindowError, StoreError, ValueError) as exc:
        raise failed(exc) from None
    if as_json:
        print(json.dumps(document, allow_nan=False))
    else:
        render_metrics(document)
    if not document["groups"]:  # nothing to report: status 1, as `fairwatch report` gives
        raise typer.Exit(1)


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def render_metrics(document: dict) -> None:
    out = Console(soft_wrap=True)  # lines whole; tables size themselves (fairwatch.sim.tables)
    window = document["window"]
    if not document["groups"]:  # said as `fairwatch report` says it: one line on stderr, exit 1
        error(f"no verified outcomes in [{window['from']}, {window['to']}): nothing to report")
        return
    table = Table(title=f"per-group error rates, event time [{window['from']}, {window['to']})")
    for column in ("deployment", "algorithm", "attribute", "group", "impostor", "FM", "FMR [95% CI]", "genuine",
                   "FNM", "FNMR [95% CI]", "status"):
        table.add_column(column, justify="right" if column not in ("deployment", "algorithm", "attribute", "group",
                                                                    "status") else "left")
    for g in document["groups"]:
        style = {"insufficient": "yellow", "above_target": "red"}.get(g["status"], "")
        table.add_row(
            g["deployment"], g["algorithm"], g["attribute"], g["group"], _fmt(g["impostor"]), _fmt(g["false_match"]),
            f"{_fmt(g['fmr'])} [{_fmt(g['fmr_low'])}, {_fmt(g['fmr_high'])}]", _fmt(g["genuine"]),
            _fmt(g["false_non_match"]), f"{_fmt(g['fnmr'])} [{_fmt(g['fnmr_low'])}, {_fmt(g['fnmr_high'])}]",
            f"[{style}]{g['status']}[/{style}]" if style else g["status"],
        )
    print_table(table, out)
    diffs = Table(title="differentials across the groups of each attribute set")
    for column in ("deployment", "algorithm", "attribute", "metric", "rate", "value [95% CI]", "status", "vs policy"):
        diffs.add_column(column)
    for d in document["differentials"]:
        diffs.add_row(d["deployment"], d["algorithm"], d["attribute"], d["metric"], d["rate"],
                      f"at least {_fmt(d['low'])} (no upper bound)" if d["value"] is None and d["low"] is not None
                      and d["high"] is None else f"{_fmt(d['value'])} [{_fmt(d['low'])}, {_fmt(d['high'])}]",
                      d["status"],
                      (d.get("vs_policy") or "-").replace("_", " "))
    print_table(diffs, out)
    tests = Table(title="any difference at all between the groups (homogeneity test)")
    for column in ("deployment", "algorithm", "attribute", "rate", "groups", "p-value", "test", "verdict"):
        tests.add_column(column)
    for t in document["homogeneity"]:
        tests.add_row(t["deployment"], t["algorithm"], t["attribute"], t["rate"], str(t["groups"]),
                      _fmt(t["p_value"], 3), t["method"], t["verdict"].replace("_", " "))
    print_table(tests, out)
    if document.get("corrected"):
        fixed = Table(title="rates allowing for reviewer error (independent reviews)")
        for column in ("deployment", "algorithm", "attribute", "group", "FMR [95% CI]", "FNMR [95% CI]"):
            fixed.add_column(column)
        for c in document["corrected"]:
            fixed.add_row(c["deployment"], c["algorithm"], c["attribute"], c["group"],
                          f"{_fmt(c['fmr'])} [{_fmt(c['fmr_low'])}, {_fmt(c['fmr_high'])}]",
                          f"{_fmt(c['fnmr'])} [{_fmt(c['fnmr_low'])}, {_fmt(c['fnmr_high'])}]")
        print_table(fixed, out)
    if "labels" in document:
        from fairwatch.audit.maturity import describe

        out.print(describe(document["labels"]))


@app.command(cls=PlainUsageCommand)
def replay(
    events: Path = typer.Argument(..., exists=True, dir_okay=False, help="Match events, JSONL."),
    outcomes: Path = typer.Argument(..., exists=True, dir_okay=False, help="Verified outcomes, JSONL."),
    store: Optional[str] = typer.Option(None, "--store", envvar="FAIRWATCH_CLICKHOUSE",
                                        help=STORE_HELP + "; default chdb://fairwatch-store (embedded)"),
    intersections: str = typer.Option("", "--intersections", envvar="FAIRWATCH_INTERSECTIONS",
                                      help="e.g. sex&race,sex&age"),
    bucket_seconds: int = typer.Option(60, "--bucket-seconds", envvar="FAIRWATCH_BUCKET_SECONDS"),
    policy: Optional[Path] = typer.Option(None, "--policy", exists=True,
                                          help="Policy file or directory: run drift detection after loading."),
    max_errors: int = typer.Option(20, "--max-errors", min=0,
                                   help="Print at most this many rejected lines (all are in --json and dead-letter)."),
    as_of_arrival: Optional[str] = typer.Option(
        None, "--as-of-arrival", metavar="LIVE_STORE",
        help="Reproduce a live run's alert timeline: load the lines in the order and at the times this live store"
             " ingested them, a detection cycle every --cycle-seconds, then compare its incidents with ours."),
    cycle_seconds: int = typer.Option(60, "--cycle-seconds", envvar="FAIRWATCH_DETECT_SECONDS", min=1,
                                      help="With --as-of-arrival: the live workers' detection interval."),
    keyring: Optional[Path] = typer.Option(None, "--keyring", envvar="FAIRWATCH_KEYRING",
                                           help="Keyring of signed input, as the worker's: lines carry no signature, so "
                                                "those of deployments that require signatures are refused."),
    acquisitions: Optional[Path] = typer.Option(None, "--acquisitions", exists=True, dir_okay=False,
                                                help="JSONL acquisition attempts (schemas/acquisition_event.schema.json) "
                                                     "to load too: fairwatch audit acquisition reads them."),
    uses: Optional[Path] = typer.Option(None, "--uses", exists=True, dir_okay=False,
                                        help="JSONL use records (schemas/use_record.schema.json) to load too: the"
                                             " monitoring report lists each use with its figures."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary."),
) -> None:
    """Replay JSONL files through the worker's batch step into a store, without Kafka.

    Exit status: 0 when lines were loaded; 1 when --as-of-arrival found incidents that differ from
    the live run's (each is named); 2 for bad input (every line rejected, a policy matching nothing)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from fairwatch.contracts.keyring import load_keyring
    from fairwatch.core.config import CoreConfig
    from fairwatch.detect.policy import load_policies
    from fairwatch.store.clickhouse import StoreError, open_store, redacted_url
    from fairwatch.stream.replay import replay as run_replay
    from fairwatch.stream.worker_settings import SettingsError, parse_intersections

    shown = _Capped(max_errors)
    opened = live_run = arrival = None
    try:
        if as_of_arrival and (acquisitions or uses):
            raise ValueError("--as-of-arrival reproduces the live run's alerts from its matches: replay --acquisitions "
                             "and --uses without it")
        if as_of_arrival and not policy:
            raise ValueError("--as-of-arrival reproduces alerts: give the live run's --policy too")
        if as_of_arrival and as_of_arrival == (store or "chdb://fairwatch-store"):
            raise ValueError("--as-of-arrival names the store being written: give the live store there and "
                             "a new one in --store")
        policies = load_policies(policy) if policy else None
        ring = load_keyring(keyring) if keyring else None
        # the policies' intersections are counted too: a policy watching one is never left without it
        combos = parse_intersections(intersections)
        combos += tuple(c for p in (policies or {}).values() for c in p.intersections if c not in combos)
        config = CoreConfig(bucket_seconds=bucket_seconds, intersections=tuple(dict.fromkeys(combos)))
        if as_of_arrival:  # read and closed first: chDB serves one directory per process at a time
            from fairwatch.stream.arrival_replay import read_live_run

            with closing(open_store(as_of_arrival, create=False)) as live:
                live_run = read_live_run(live)
        opened = open_store(store or "chdb://fairwatch-store")
        total = sum(1 for path in (events, outcomes, acquisitions, uses) if path
                    for line in path.open("rb") if line.strip())
        with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console, transient=as_json) as bar:
            task = bar.add_task("replaying", total=total)
            show = lambda letter: None if as_json else shown.show(  # noqa: E731
                f"{letter.message.topic}:{letter.message.offset}: {letter.rejection}")
            if live_run is not None:
                from fairwatch.stream.arrival_replay import replay_as_of_arrival

                report, arrival = replay_as_of_arrival(opened, live_run, events, outcomes, policies, config, cycle_seconds,
                                                       progress=lambda n: bar.advance(task, n), on_reject=show,
                                                       keyring=ring)
            else:
                report = run_replay(opened, events, outcomes, config, progress=lambda n: bar.advance(task, n),
                                    on_reject=show, policies=policies, keyring=ring, acquisitions=acquisitions,
                                    uses=uses)
        sealed = _seal_if_keyed(opened)
    except (SettingsError, StoreError, ValueError) as exc:
        if opened is not None:
            opened.close()
        raise failed(exc) from None
    summary = {"store": redacted_url(opened.url), "events_lines": report.lines[MATCH_EVENTS],
               "outcomes_lines": report.lines[VERIFIED_OUTCOMES], "acquisition_lines": report.lines[ACQUISITIONS],
               "use_lines": report.lines[USES],
               "labeled": report.labeled,
               "rejected": [{"file": f, "line": n, "reason": r} for f, n, r in report.rejected],
               "alerts": [a.to_record() for a in report.alerts],
               "detection": {"ran": bool(report.coverage), "policies": [c.to_dict() for c in report.coverage],
                             "errors": report.mismatches},
               "evidence": sealed and {"leaves": sealed.leaves,
                                       "checkpoints": {o: c.size for o, c in sealed.checkpoints.items()}}}
    if arrival is not None:
        summary["as_of_arrival"] = {
            "live_store": redacted_url(as_of_arrival), "cycle_seconds": cycle_seconds, "cycles": arrival.cycles,
            "first_arrival": arrival.first_arrival and arrival.first_arrival.isoformat(),
            "last_arrival": arrival.last_arrival and arrival.last_arrival.isoformat(),
            "lines_without_arrival": arrival.without_arrival,
            "same": [{"id": a.id, "opened_at": a.opened_at.isoformat()} for a in arrival.same],
            "differences": [{"id": d.alert_id, "live_opened_at": d.live_opened_at and d.live_opened_at.isoformat(),
                             "replay_opened_at": d.replay_opened_at and d.replay_opened_at.isoformat(),
                             "cause": d.cause} for d in arrival.differences]}
    opened.close()
    if shown.hidden:
        console.print(f"... and {shown.hidden} more rejected lines (all in --json and in the dead-letter records)")
    if as_json:
        print(json.dumps(summary))
    else:
        attempts = (f", {summary['acquisition_lines']} acquisition lines" if acquisitions else "") + (
            f", {summary['use_lines']} use lines" if uses else "")
        print(f"replayed {summary['events_lines']} event lines and {summary['outcomes_lines']} outcome lines{attempts} "
              f"into {summary['store']}: {report.labeled} labeled outcomes, {len(report.rejected)} lines rejected")
        if sealed is None:
            print("evidence log: not sealed (no FAIRWATCH_EVIDENCE_KEY_FILE; `fairwatch audit seal` seals later)")
        else:
            print(f"evidence log: {sealed.leaves} rows sealed, {len(sealed.checkpoints)} checkpoints signed")
        if not policy:
            print("detection: not run by this replay (no --policy)")
        for coverage in report.coverage:
            print(f"detection: {coverage.describe()}")
        if report.coverage:
            where = f"--store {summary['store']}" if summary["store"] == opened.url else "with the same --store"
            print(f"detection: {len(report.alerts)} incidents opened or resolved (fairwatch alerts {where} lists them)")
        if arrival is not None:
            print(f"as of arrival at {summary['as_of_arrival']['live_store']}: {arrival.cycles} cycles every "
                  f"{cycle_seconds} s; {len(arrival.same)} incidents opened as they did live, "
                  f"{len(arrival.differences)} differ; {arrival.without_arrival} lines were never ingested live")
            for difference in arrival.differences:
                print(f"  differs: {difference}")
    for mismatch in report.mismatches:  # plain text: the message holds file paths and quotes
        error(f"{mismatch}; the files were loaded, this policy's detection did not run")
    read = summary["events_lines"] + summary["outcomes_lines"] + summary["acquisition_lines"] + summary["use_lines"]
    if read and len(report.rejected) == read:
        error(f"every one of the {read} lines was rejected: nothing was loaded"
              f" (first: {report.rejected[0][0]}:{report.rejected[0][1]}: {report.rejected[0][2]})")
        raise typer.Exit(2)
    if report.mismatches:
        raise typer.Exit(2)
    if arrival is not None and arrival.differences:
        raise typer.Exit(1)


def _seal_if_keyed(store):
    """Seal the evidence log after a replay when the operator's key is configured, as the live
    sealer would: the replayed store then verifies like a live one."""
    import os

    from fairwatch.audit.evidence_log import DEFAULT_ORIGIN, KEY_ENV, ORIGIN_ENV, OUTSIDE_ENV, seal
    from fairwatch.contracts.keys import signing_key_from

    signer = signing_key_from(dict(os.environ), KEY_ENV)
    if signer is None:
        return None
    outside = os.environ.get(OUTSIDE_ENV)
    return seal(store, signer, base=os.environ.get(ORIGIN_ENV) or DEFAULT_ORIGIN,
                outside=Path(outside) if outside else None)


class _Capped:
    """Prints the first ``limit`` diagnostics and counts the rest."""

    def __init__(self, limit: int):
        self.limit, self.printed, self.hidden = limit, 0, 0

    def show(self, line: str) -> None:
        if self.printed < self.limit:
            console.print(line, markup=False, highlight=False, soft_wrap=True)  # one line per diagnostic
            self.printed += 1
        else:
            self.hidden += 1


def _register_simulate() -> None:
    from fairwatch.cli.simulate import simulate_command

    app.command("simulate")(simulate_command)


_register_simulate()


def _register_audit() -> None:
    from fairwatch.cli.audit import register

    register(app)


_register_audit()


def _register_alerts() -> None:
    from fairwatch.cli.alerts import alerts_command

    app.command("alerts")(alerts_command)


_register_alerts()


def _register_dashboards() -> None:
    from fairwatch.cli.dashboards import register

    register(app)


_register_dashboards()


def _register_policy() -> None:
    from fairwatch.cli.policy import register

    register(app)


_register_policy()


def _register_keys() -> None:
    from fairwatch.cli.keys import register

    register(app)


_register_keys()


def _register_tls() -> None:
    from fairwatch.cli.tls import register

    register(app)


_register_tls()


def _register_ingest() -> None:
    from fairwatch.cli.ingest import register

    register(app)


_register_ingest()


def _register_demo() -> None:
    from fairwatch.cli.demo import demo_command

    app.command("demo")(demo_command)


_register_demo()


def _register_plan() -> None:
    from fairwatch.cli.plan import plan_command

    app.command("plan")(plan_command)


_register_plan()


def main() -> int:
    from fairwatch.cli.boundary import run

    return run(app)


if __name__ == "__main__":
    sys.exit(main())
