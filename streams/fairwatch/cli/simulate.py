"""`fairwatch simulate`: a scenario's match events and outcomes to JSONL files or Kafka, with its ground truth."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

import typer

from fairwatch.cli.boundary import error
from fairwatch.contracts.topics import DEFAULT_PREFIX
from fairwatch.sim.scenario import MAX_EVENTS, OVERALL, ScenarioError, load_scenario
from fairwatch.sim.simulator import simulate
from fairwatch.sim.writers import open_kafka_writer, publish, write_jsonl, write_truth


def simulate_command(
    scenario: Optional[str] = typer.Option(
        None, "--scenario", help="A scenario YAML file, or a packaged one by name (default, demo). Default: default."),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, help="Overrides the scenario's seed."),
    events: Optional[int] = typer.Option(None, "--events", min=1, max=MAX_EVENTS,
                                         help="Overrides the number of events (same duration)."),
    out: Optional[Path] = typer.Option(None, "--out", file_okay=False,
                                       help="Write events.jsonl, outcomes.jsonl and truth.json here (wins over --kafka)."),
    kafka: Optional[str] = typer.Option(None, "--kafka", envvar="FAIRWATCH_KAFKA",
                                        help="Kafka bootstrap servers to publish to (when --out is not given)."),
    topic_prefix: str = typer.Option(DEFAULT_PREFIX, "--topic-prefix", envvar="FAIRWATCH_TOPIC_PREFIX"),
    rate: float = typer.Option(0.0, "--rate", min=0.0, help="Kafka: match events per second of wall time; 0 = as fast as possible."),
    batch: int = typer.Option(100, "--batch", min=1, max=10_000,
                              help="Kafka: records per batch envelope (producer SDK); 1 = one record per message."),
    truth: Optional[Path] = typer.Option(None, "--truth", dir_okay=False,
                                         help="Kafka: also write the ground truth here (with --out: DIR/truth.json)."),
    as_json: bool = typer.Option(False, "--json", help="Print a machine-readable summary on stdout."),
) -> None:
    """Generate match events and verified outcomes from a scenario, to JSONL files or Kafka, with ground truth."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    err = Console(stderr=True)
    if out is None and not kafka:
        error("give --out DIR (JSONL files) or --kafka BOOTSTRAP (or set FAIRWATCH_KAFKA)")
        raise typer.Exit(2)
    try:
        spec = load_scenario(scenario)
        began = time.perf_counter()
        sim = simulate(spec, seed=seed, events=events)
    except ScenarioError as exc:
        error(f"invalid scenario: {exc}")
        raise typer.Exit(2) from None
    total = sim.n_events + sim.n_outcomes
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=as_json) as bar:
        task = bar.add_task(f"simulate {spec.name} (seed {sim.seed})", total=total)
        advance = lambda k: bar.advance(task, k)  # noqa: E731
        if out is not None:
            paths = write_jsonl(sim, out, progress=advance)
            target = {k: str(v) for k, v in paths.items()}
        else:
            from kafka.errors import KafkaError, TopicAuthorizationFailedError

            from fairwatch.stream.topics import ensure_topics, input_partitions

            try:
                try:
                    ensure_topics(kafka, topic_prefix)
                except TopicAuthorizationFailedError:
                    # a producer principal may write the input topics but not create topics:
                    # then they must exist already (made by `fairwatch topics` as an admin)
                    input_partitions(kafka, topic_prefix)
                publish(sim, open_kafka_writer(kafka, topic_prefix, batch), prefix=topic_prefix, rate=rate,
                        progress=advance)
            except (KafkaError, RuntimeError) as exc:
                error(f"Kafka at {kafka}: {exc!r}")
                raise typer.Exit(2) from None
            target = {"kafka": kafka, "topics": [f"{topic_prefix}match-events", f"{topic_prefix}verified-outcomes"]}
    if truth is not None:
        target["truth"] = str(write_truth(sim, truth))
    summary = {**sim.summary(), "output": target, "seconds": round(time.perf_counter() - began, 3)}
    if as_json:
        print(json.dumps(summary))
        return
    _print_summary(summary)


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from fairwatch.sim.tables import print_table

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.3g}%"

    console = Console()
    console.print(f"[bold]{summary['scenario']}[/bold] (seed {summary['seed']}): {summary['events']} events, "
                  f"{summary['outcomes']} outcomes ({summary['corrections']} corrections), "
                  f"{summary['start']} .. {summary['end']}, {summary['seconds']} s")
    for name, where in summary["output"].items():
        console.print(f"  {name}: {where}")
    for d in summary["drifts"]:
        console.print(f"  drift {d['name']} ({d['kind']}) at {d['at']}")
    tables: dict[tuple[str, str], Table] = {}
    for g in summary["groups"]:
        key = (g["algorithm"], g["mode"])
        if key not in tables:
            ident = g["mode"] == "identification"
            tables[key] = table = Table(title=f"{g['algorithm']}, {g['mode']}: realized vs target over the run")
            for column in ("group", "impostors", "FPIR" if ident else "FMR", "target",
                           "genuines", "FNIR" if ident else "FNMR", "target"):
                table.add_column(column, justify="left" if column == "group" else "right")
        group = "all" if g["attribute"] == OVERALL else f"{g['attribute']}={g['label']}"
        tables[key].add_row(group, str(g["impostors"]), pct(g["realized_fmr"]), pct(g["target_fmr"]),
                            str(g["genuines"]), pct(g["realized_fnmr"]), pct(g["target_fnmr"]))
    for table in tables.values():
        print_table(table, console)
