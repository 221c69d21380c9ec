"""Push the boards, their folder and the ClickHouse datasource to a Grafana over its HTTP API (grafana-client)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

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


def _flag(value: str, name: str) -> bool:
    if value.strip().lower() in ("1", "true", "yes"):
        return True
    if value.strip().lower() in ("0", "false", "no"):
        return False
    raise PushError(f"{name} must be 1 or 0, got {value!r}")


def _read(path: str, what: str) -> str:
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise PushError(f"{what}: cannot read {path}: {exc.strerror}") from None


def datasource_settings(env: dict[str, str] | None = None) -> dict:
    """The datasource as POST /api/datasources takes it, from FAIRWATCH_CLICKHOUSE_* variables.

    Falls back to the parts of ``FAIRWATCH_CLICKHOUSE`` (``clickhouse://user:pass@host:port/db``, with
    the store URL's ``secure``, ``ca_certs`` and ``password_file`` parameters). Grafana reaches
    ClickHouse over TLS unless ``FAIRWATCH_CLICKHOUSE_SECURE=0`` (or ``secure=0`` in the URL) asks
    for plaintext by name: port 9440 by default, the server verified against
    ``FAIRWATCH_CLICKHOUSE_CA`` (a PEM file; without one, against Grafana's system roots). The
    password comes from ``FAIRWATCH_CLICKHOUSE_PASSWORD_FILE`` or ``_PASSWORD`` and travels only in
    ``secureJsonData`` (Grafana stores it encrypted, never returns it).

    Examples
    --------
    >>> s = datasource_settings({"FAIRWATCH_CLICKHOUSE": "clickhouse://auditor:pw@ch/fw"})
    >>> s["jsonData"]["host"], s["jsonData"]["port"], s["jsonData"]["secure"], s["secureJsonData"]
    ('ch', 9440, True, {'password': 'pw'})
    >>> datasource_settings({"FAIRWATCH_CLICKHOUSE": "clickhouse://auditor:pw@ch:9000/fw?secure=0"})["jsonData"]["secure"]
    False
    """
    env = dict(os.environ if env is None else env)
    parsed = urlparse(env.get("FAIRWATCH_CLICKHOUSE", ""))
    url_parts: dict = {}
    if parsed.scheme == "clickhouse":
        query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
        url_parts = {"host": parsed.hostname, "port": parsed.port, "database": (parsed.path or "/").lstrip("/"),
                     "user": unquote(parsed.username or ""), "password": unquote(parsed.password or ""),
                     "secure": query.get("secure"), "ca": query.get("ca_certs"),
                     "password_file": query.get("password_file")}
    host = env.get("FAIRWATCH_CLICKHOUSE_HOST") or url_parts.get("host")
    if not host:
        raise PushError("no ClickHouse for the datasource: set FAIRWATCH_CLICKHOUSE_HOST (and _PORT, _DATABASE, "
                        "_USER, _PASSWORD) or FAIRWATCH_CLICKHOUSE=clickhouse://user:pass@host:port/db")
    secure_text = env.get("FAIRWATCH_CLICKHOUSE_SECURE") or url_parts.get("secure") or "1"
    secure = _flag(secure_text, "FAIRWATCH_CLICKHOUSE_SECURE")
    ca_path = env.get("FAIRWATCH_CLICKHOUSE_CA") or url_parts.get("ca")
    if ca_path and not secure:
        raise PushError("FAIRWATCH_CLICKHOUSE_CA is a TLS setting: it contradicts FAIRWATCH_CLICKHOUSE_SECURE=0")
    port = env.get("FAIRWATCH_CLICKHOUSE_PORT") or url_parts.get("port") or (9440 if secure else 9000)
    try:
        port = int(port)
    except ValueError:
        raise PushError(f"FAIRWATCH_CLICKHOUSE_PORT must be a port number, got {port!r}") from None
    password_file = env.get("FAIRWATCH_CLICKHOUSE_PASSWORD_FILE") or url_parts.get("password_file")
    if password_file:
        password = _read(password_file, "FAIRWATCH_CLICKHOUSE_PASSWORD_FILE").rstrip("\r\n")
    else:
        password = env.get("FAIRWATCH_CLICKHOUSE_PASSWORD", url_parts.get("password", ""))
    json_data = {
        "host": host,
        "port": port,
        "protocol": env.get("FAIRWATCH_CLICKHOUSE_PROTOCOL", "native"),
        "secure": secure,
        "defaultDatabase": env.get("FAIRWATCH_CLICKHOUSE_DATABASE") or url_parts.get("database") or "default",
        "username": env.get("FAIRWATCH_CLICKHOUSE_USER") or url_parts.get("user") or "default",
    }
    secure_json = {"password": password}
    if ca_path:
        json_data["tlsAuthWithCACert"] = True
        secure_json["tlsCACert"] = _read(ca_path, "FAIRWATCH_CLICKHOUSE_CA")
    return {
        "uid": DATASOURCE_UID,
        "name": "fairwatch ClickHouse",
        "type": DATASOURCE_TYPE,
        "access": "proxy",
        "isDefault": False,
        "jsonData": json_data,
        "secureJsonData": secure_json,
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
