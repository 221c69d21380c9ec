"""The stack's Alertmanager: the v2 API takes an alert, lists it, and drops it once resolved."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from fairwatch.detect.delivery import alertmanager_client

pytestmark = pytest.mark.services


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def _ours(client: httpx.Client, test_id: str) -> list[dict]:
    r = client.get("/api/v2/alerts", params={"filter": f'test_id="{test_id}"'})
    r.raise_for_status()
    return r.json()


def test_post_list_resolve_alert(stack):
    test_id = uuid.uuid4().hex
    labels = {
        "alertname": "FairwatchStackTest",
        "test_id": test_id,
        "deployment": "gate-7",
        "metric": "fnmr",
        "group": "sex=F",
        "severity": "info",
    }
    now = datetime.now(timezone.utc)
    alert = {
        "labels": labels,
        "annotations": {"summary": "FNMR gap for sex=F", "description": "stack self-test"},
        "startsAt": _iso(now - timedelta(minutes=1)),
        "endsAt": _iso(now + timedelta(hours=1)),
        "generatorURL": "http://127.0.0.1/fairwatch/self-test",
    }
    with alertmanager_client(stack["FAIRWATCH_ALERTMANAGER"], 10, stack) as client:
        r = client.post("/api/v2/alerts", json=[alert])
        assert r.status_code == 200, r.text

        deadline = time.monotonic() + 15
        found = _ours(client, test_id)
        while not found and time.monotonic() < deadline:
            time.sleep(0.2)
            found = _ours(client, test_id)
        assert len(found) == 1, found
        (got,) = found
        assert got["labels"] == labels
        assert got["annotations"]["summary"] == "FNMR gap for sex=F"
        assert got["status"]["state"] == "active"
        assert _parse(got["endsAt"]) > datetime.now(timezone.utc)

        # A filter on another value of the label does not return it.
        assert _ours(client, uuid.uuid4().hex) == []

        # Resolve: same labels, endsAt in the past.
        resolved = dict(alert, endsAt=_iso(datetime.now(timezone.utc) - timedelta(seconds=1)))
        r = client.post("/api/v2/alerts", json=[resolved])
        assert r.status_code == 200, r.text

        def still_active() -> list[dict]:
            now = datetime.now(timezone.utc)
            return [a for a in _ours(client, test_id)
                    if a["status"]["state"] == "active" and _parse(a["endsAt"]) > now]

        deadline = time.monotonic() + 15
        active = still_active()
        while active and time.monotonic() < deadline:
            time.sleep(0.2)
            active = still_active()
        assert active == []
        # Resolved alerts are not listed as active (Alertmanager drops them from the list).
        r = client.get("/api/v2/alerts", params={"filter": f'test_id="{test_id}"', "active": "true"})
        r.raise_for_status()
        assert [a for a in r.json() if _parse(a["endsAt"]) > datetime.now(timezone.utc)] == []
