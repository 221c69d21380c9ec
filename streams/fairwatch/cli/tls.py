"""``fairwatch tls init``: the local CA, certificates and credentials files of docker-compose's ``certs`` service."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

from fairwatch.cli.boundary import error
from fairwatch.cli.help_texts import PlainUsageCommand, WrappedHelpGroup


def register(app) -> None:
    """Add ``fairwatch tls init`` to the CLI."""
    import typer

    group = typer.Typer(rich_markup_mode=None, cls=WrappedHelpGroup, no_args_is_help=True,
                        help="A local certificate authority and the credentials files of a deployment (docker-compose).")

    @group.command("init", cls=PlainUsageCommand)
    def init_command(
        directory: Path = typer.Option(..., "--dir", help="One subdirectory per bundle is made here (a compose volume each)."),
        ca_dir: Optional[Path] = typer.Option(None, "--ca-dir", help="Where the CA's certificate and key stay "
                                              "(default: DIR/.ca); mount it into nothing else."),
        server: List[str] = typer.Option([], "--server", metavar="NAME", help="A bundle with a server certificate: CN and DNS name "
                                         "NAME, plus every --san; also valid as a client certificate."),
        client: List[str] = typer.Option([], "--client", metavar="NAME", help="A bundle with a client certificate, CN=NAME (the "
                                         "principal Kafka's ssl.principal.mapping.rules takes)."),
        ca_only: List[str] = typer.Option([], "--ca-only", metavar="NAME", help="A bundle holding ca.pem only (plus its --secret files)."),
        san: List[str] = typer.Option([], "--san", metavar="HOST", help="Another DNS name or IP address of every server certificate "
                                      "(default: localhost and 127.0.0.1)."),
        owner: List[str] = typer.Option([], "--owner", metavar="NAME=UID:GID", help="Who owns bundle NAME's directory (0700) "
                                        "and files (keys and secrets 0600); default: whoever runs this."),
        secret: List[str] = typer.Option([], "--secret", metavar="BUNDLE/FILE=VARIABLE", help="Write the environment variable's "
                                         "value to BUNDLE/FILE (0600). Values never go on the command line."),
        web_config: List[str] = typer.Option([], "--web-config", metavar="BUNDLE=USER:VARIABLE", help="BUNDLE/web.yml for "
                                             "Alertmanager's --web.config.file: TLS with BUNDLE's certificate, basic "
                                             "auth for USER (bcrypt of $VARIABLE) and the health check's own user."),
        mount: List[str] = typer.Option([], "--mount", metavar="BUNDLE=PATH", help="Where BUNDLE's service sees it (the "
                                        "paths inside web.yml and healthcheck.yml); default: its directory here."),
        days: int = typer.Option(825, "--days", help="Validity of a new certificate."),
        ca_days: int = typer.Option(3650, "--ca-days", help="Validity of a new CA."),
        renew_days: int = typer.Option(30, "--renew-days", help="Issue again what expires within this many days."),
        as_json: bool = typer.Option(False, "--json", help="Machine-readable output: one object per file."),
    ) -> None:
        """Make (or keep) a local CA, the bundles' certificates and keys, secret files and web configs.

        Idempotent: what exists, is signed by the current CA, is not about to expire and names what
        is asked for is kept; anything else is issued again. Delete a file to have it made anew."""
        from fairwatch.cli.local_ca import TLSInitError, init, make_plan

        try:
            plan = make_plan(directory, ca_dir, server, client, ca_only, san or ["localhost", "127.0.0.1"], owner,
                             secret, web_config, mount, days=days, ca_days=ca_days, renew_days=renew_days)
            changes = init(plan)
        except TLSInitError as exc:
            error(str(exc))
            raise typer.Exit(2) from None
        for change in changes:
            if as_json:
                print(json.dumps({"path": change.path, "action": change.action, "detail": change.detail}))
            else:
                print(change.line())

    app.add_typer(group, name="tls")
