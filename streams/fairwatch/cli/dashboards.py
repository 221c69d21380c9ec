"""`fairwatch dashboards`: export the boards' JSON, push them to a Grafana."""

from __future__ import annotations

import json
from pathlib import Path

from fairwatch.audit.boards import JSON_DIR, BoardPolicy, BoardPolicyError, export
from fairwatch.audit.grafana_push import PushError, push
from fairwatch.cli.boundary import error

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
        error(str(exc))
        raise typer.Exit(2) from None


def register(app) -> None:
    """Add ``fairwatch dashboards export|push`` to the CLI."""
    import typer

    from fairwatch.cli.help_texts import WrappedHelpGroup

    group = typer.Typer(rich_markup_mode=None, cls=WrappedHelpGroup,
                        help="Grafana dashboards: export the JSON, push to a Grafana.", no_args_is_help=True)

    @group.command("export")
    def export_command(out: Path = typer.Option(..., "--out", file_okay=False,
                                                help="Folder to write the board JSON into (the checkout's own "
                                                     f"boards are {JSON_DIR.relative_to(JSON_DIR.parents[1])})."),
                       policy: Path = typer.Option(None, "--policy", help=POLICY_HELP),
                       as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")):
        """Write the generated boards as JSON files (what file provisioning mounts)."""
        paths = [str(path) for path in export(out, _board_policy(policy))]
        print(json.dumps({"written": paths}) if as_json else "\n".join(paths))

    @group.command("push")
    def push_command(
        grafana: str = typer.Option(None, "--grafana", envvar="FAIRWATCH_GRAFANA", help="Grafana base URL."),
        token: str = typer.Option(None, "--token", envvar="FAIRWATCH_GRAFANA_TOKEN",
                                  help="Service account token (or user:pass in the URL)."),
        no_datasource: bool = typer.Option(False, "--no-datasource", help="Upload the boards only."),
        policy: Path = typer.Option(None, "--policy", help=POLICY_HELP),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    ):
        """Upload the datasource, folder and boards through Grafana's HTTP API."""
        if not grafana:
            error("pass --grafana URL or set FAIRWATCH_GRAFANA")
            raise typer.Exit(2)
        board_policy = _board_policy(policy)
        try:
            done = []
            for line in push(grafana, token, with_datasource=not no_datasource, policy=board_policy):
                done.append(line)
                if not as_json:
                    print(line)
            if as_json:
                print(json.dumps({"uploaded": done}))
        except PushError as exc:
            error(str(exc))
            raise typer.Exit(2) from None

    app.add_typer(group, name="dashboards")
