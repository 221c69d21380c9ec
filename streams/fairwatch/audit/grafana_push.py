"""Push the boards, their folder and the ClickHouse datasource to a Grafana over its HTTP API (grafana-client)."""

from __future__ import annotations

import os
from urllib.parse import unquote, urlparse

from fairwatch.audit.boards import (
    DATASOURCE_TYPE,
    BoardPolicy,
    DATASOURCE_UID,
    FOLDER_TITLE,
    FOLDER_UID,
    generate,
)


class PushError(RuntimeError):
    """Grafana refused or could not be reached; the message says which request and why."""


def datasource_settings(env: dict[str, str] | None = None) -> dict:
    """The datasource as POST /api/datasources takes it, from FAIRWATCH_CLICKHOUSE_* variables.

    Falls back to the parts of ``FAIRWATCH_CLICKHOUSE`` (clickhouse://user:pass@host:port/db).

    Examples
    --------
    >>> s = datasource_settings({"FAIRWATCH_CLICKHOUSE": "clickhouse://auditor:pw@ch:9000/fw"})
    >>> s["jsonData"]["host"], s["jsonData"]["port"], s["jsonData"]["username"], s["secureJsonData"]
    ('ch', 9000, 'auditor', {'password': 'pw'})
    """
    env = dict(os.environ if env is None else env)
    parsed = urlparse(env.get("FAIRWATCH_CLICKHOUSE", ""))
    url_parts = {}
    if parsed.scheme == "clickhouse":
        url_parts = {"host": parsed.hostname, "port": parsed.port, "database": (parsed.path or "/").lstrip("/"),
                     "user": unquote(parsed.username or ""), "password": unquote(parsed.password or "")}
    host = env.get("FAIRWATCH_CLICKHOUSE_HOST") or url_parts.get("host")
    if not host:
        raise PushError("no ClickHouse for the datasource: set FAIRWATCH_CLICKHOUSE_HOST (and _PORT, _DATABASE, "
                        "_USER, _PASSWORD) or FAIRWATCH_CLICKHOUSE=clickhouse://user:pass@host:port/db")
    port = env.get("FAIRWATCH_CLICKHOUSE_PORT") or url_parts.get("port") or 9000
    try:
        port = int(port)
    except ValueError:
        raise PushError(f"FAIRWATCH_CLICKHOUSE_PORT must be a port number, got {port!r}") from None
    return {
        "uid": DATASOURCE_UID,
        "name": "fairwatch ClickHouse",
        "type": DATASOURCE_TYPE,
        "access": "proxy",
        "isDefault": False,
        "jsonData": {
            "host": host,
            "port": port,
            "protocol": env.get("FAIRWATCH_CLICKHOUSE_PROTOCOL", "native"),
            "defaultDatabase": env.get("FAIRWATCH_CLICKHOUSE_DATABASE") or url_parts.get("database") or "default",
            "username": env.get("FAIRWATCH_CLICKHOUSE_USER") or url_parts.get("user") or "default",
        },
        "secureJsonData": {"password": env.get("FAIRWATCH_CLICKHOUSE_PASSWORD", url_parts.get("password", ""))},
    }


def grafana_api(url: str, token: str | None = None):
    """A grafana-client ``GrafanaApi`` for ``url``; credentials from ``token`` or user:pass in the URL."""
    from grafana_client import GrafanaApi

    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise PushError(f"--grafana must be an http(s) URL such as http://grafana:3000, got {url!r}")
    if not token and not (parsed.username and parsed.password):
        raise PushError("no Grafana credentials: set FAIRWATCH_GRAFANA_TOKEN or put user:password in the URL")
    return GrafanaApi.from_url(url, credential=token or None)


def push(url: str, token: str | None = None, with_datasource: bool = True,
         env: dict[str, str] | None = None, policy: BoardPolicy = BoardPolicy()) -> list[str]:
    """Upload the datasource, the ``fairwatch`` folder and every board (coloured by ``policy``);
    return what was done.

    Idempotent: an existing datasource (by uid) is updated, an existing folder kept, boards are
    saved with ``overwrite``.
    """
    from grafana_client.client import GrafanaException

    api = grafana_api(url, token)
    done = []

    def status(exc: GrafanaException) -> int | None:
        return getattr(exc, "status_code", None)

    try:
        if with_datasource:
            settings = datasource_settings(env)
            try:
                api.datasource.get_datasource_by_uid(DATASOURCE_UID)
                exists = True
            except GrafanaException as exc:
                if status(exc) != 404:
                    raise
                exists = False
            if exists:
                api.datasource.update_datasource_by_uid(DATASOURCE_UID, settings)
                done.append(f"datasource {DATASOURCE_UID} updated")
            else:
                api.datasource.create_datasource(settings)
                done.append(f"datasource {DATASOURCE_UID} created")
        try:
            api.folder.get_folder(FOLDER_UID)
            done.append(f"folder {FOLDER_UID} exists")
        except GrafanaException as exc:
            if status(exc) != 404:
                raise
            api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
            done.append(f"folder {FOLDER_UID} created")
        for name, board in generate(policy).items():
            result = api.dashboard.update_dashboard({"dashboard": board, "folderUid": FOLDER_UID, "overwrite": True,
                                                     "message": "fairwatch dashboards push"})
            done.append(f"dashboard {board['uid']} saved (version {result.get('version')})")
    except GrafanaException as exc:
        raise PushError(f"Grafana at {urlparse(url).hostname} refused: {exc}") from exc
    return done
