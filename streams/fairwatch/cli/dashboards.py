"""`fairwatch dashboards`: export the boards' JSON, push them to a Grafana."""

from __future__ import annotations

from pathlib import Path

from fairwatch.audit.boards import JSON_DIR, BoardPolicy, BoardPolicyError, export
from fairwatch.audit.grafana_push import PushError, push

POLICY_HELP = ("Policy file or directory (fairwatch.detect.policy): the ratio stats turn red at its policy_ratio, "
               "the intended FMR is its target_fmr, and the boards offer only its deployments. Without one "
               "nothing is coloured as a breach.")


def _board_policy(path: Path | None) -> BoardPolicy:
    """The policy the boards are coloured by; exits 2 with one ``error:`` line when it cannot be used."""
    import typer

    from fairwatch.detect.policy import PolicyError, load_policies

    if path is None:
        return BoardPolicy()
    try:
        return BoardPolicy.from_policies(load_policies(path))
    except (PolicyError, BoardPolicyError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def register(app) -> None:
    """Add ``fairwatch dashboards export|push`` to the CLI."""
    import typer

    from fairwatch.cli.help_texts import WrappedHelpGroup

    group = typer.Typer(rich_markup_mode=None, cls=WrappedHelpGroup,
                        help="Grafana dashboards: export the JSON, push to a Grafana.", no_args_is_help=True)

    @group.command("export")
    def export_command(out: Path = typer.Option(JSON_DIR, "--out", help="Folder to write the board JSON into."),
                       policy: Path = typer.Option(None, "--policy", help=POLICY_HELP)):
        """Write the generated boards as JSON files (what file provisioning mounts)."""
        for path in export(out, _board_policy(policy)):
            print(path)

    @group.command("push")
    def push_command(
        grafana: str = typer.Option(None, "--grafana", envvar="FAIRWATCH_GRAFANA", help="Grafana base URL."),
        token: str = typer.Option(None, "--token", envvar="FAIRWATCH_GRAFANA_TOKEN",
                                  help="Service account token (or user:pass in the URL)."),
        no_datasource: bool = typer.Option(False, "--no-datasource", help="Upload the boards only."),
        policy: Path = typer.Option(None, "--policy", help=POLICY_HELP),
    ):
        """Upload the datasource, folder and boards through Grafana's HTTP API."""
        if not grafana:
            typer.echo("error: pass --grafana URL or set FAIRWATCH_GRAFANA", err=True)
            raise typer.Exit(2)
        board_policy = _board_policy(policy)
        try:
            for line in push(grafana, token, with_datasource=not no_datasource, policy=board_policy):
                print(line)
        except PushError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None

    app.add_typer(group, name="dashboards")
