"""`fairwatch demo` (`make demo`): the verb that runs :func:`fairwatch.sim.demo.run_demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fairwatch.sim.demo import DemoError, DemoOptions, Interrupted, run_demo


def demo_command(
    scenario: str = typer.Option("demo", "--scenario", help="A scenario YAML file or a packaged one (demo, default)."),
    events: Optional[int] = typer.Option(None, "--events", envvar="FAIRWATCH_DEMO_EVENTS", min=1,
                                         help="Overrides the scenario's number of events."),
    seed: Optional[int] = typer.Option(None, "--seed", envvar="FAIRWATCH_DEMO_SEED", min=0),
    seconds: float = typer.Option(60.0, "--seconds", envvar="FAIRWATCH_DEMO_SECONDS", min=1.0,
                                  help="Wall time over which the scenario's event time is published."),
    workers: int = typer.Option(2, "--workers", envvar="FAIRWATCH_DEMO_WORKERS", min=1),
    partitions: int = typer.Option(4, "--partitions", min=1, help="Partitions of the run's input topics."),
    out: Path = typer.Option(Path("demo-output"), "--out", envvar="FAIRWATCH_DEMO_OUT", file_okay=False,
                             help="Where the simulated files, worker logs, policy and summary go."),
) -> None:
    """The whole story in one command: stack, workers, a simulated bias drift, detection, the numbers and a summary."""
    from rich.console import Console

    from fairwatch.cli.boundary import error

    console = Console(soft_wrap=True)  # lines whole: a terminal wraps them for the eye, a log keeps them greppable
    options = DemoOptions(scenario=scenario, events=events, seed=seed, seconds=seconds, workers=workers,
                          partitions=partitions, out=out)
    try:
        run_demo(options, console)
    except DemoError as exc:
        error(f"demo failed: {exc}")
        raise typer.Exit(1) from None
    except (KeyboardInterrupt, Interrupted):
        console.print("[yellow]interrupted: everything the demo started has been stopped[/yellow]")
        raise typer.Exit(130) from None
