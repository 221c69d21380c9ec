"""Worker settings: parsed with clear errors, and documented wherever they can be set."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fairwatch.stream.worker_settings import (
    OTHER_ENVIRONMENT,
    WORKER_ENVIRONMENT,
    SettingsError,
    WorkerSettings,
    parse_intersections,
)

REPO = Path(__file__).resolve().parents[2]


def test_every_setting_the_worker_reads_is_documented_in_the_readme():
    readme = (REPO / "README.md").read_text()
    for name, (default, _) in WORKER_ENVIRONMENT.items():
        row = re.search(rf"^\| `{name}` \|[^\n]*\| (.*) \|$", readme, re.M)
        assert row, f"{name} is read by the worker but not documented in README.md"
        if default:
            assert f"`{default}`" in row.group(1), f"README gives another default for {name}"


def test_the_code_reads_no_undeclared_variable():
    source = "\n".join(p.read_text() for p in (REPO / "streams" / "fairwatch").glob("*.py"))
    read = set(re.findall(r'"(FAIRWATCH_[A-Z_]+)"', source))
    declared = set(WORKER_ENVIRONMENT) | set(OTHER_ENVIRONMENT)
    assert read <= declared, f"read but declared nowhere in fairwatch.stream.worker_settings: {sorted(read - declared)}"
    assert not set(WORKER_ENVIRONMENT) & set(OTHER_ENVIRONMENT)


def test_every_other_variable_is_documented_in_the_readme():
    readme = (REPO / "README.md").read_text()
    for name in OTHER_ENVIRONMENT:
        short = "_" + name.rsplit("_", 1)[1]  # the README may name a family once: `_PORT`
        assert f"`{name}`" in readme or (name.startswith("FAIRWATCH_CLICKHOUSE_") and f"`{short}`" in readme), name


def test_from_env(monkeypatch):
    for name in WORKER_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SettingsError, match="FAIRWATCH_KAFKA is not set"):
        WorkerSettings.from_env()
    monkeypatch.setenv("FAIRWATCH_KAFKA", "k:9092")
    monkeypatch.setenv("FAIRWATCH_CLICKHOUSE", "chdb:///tmp/x")
    monkeypatch.setenv("FAIRWATCH_INTERSECTIONS", "sex&race, sex&age")
    monkeypatch.setenv("FAIRWATCH_TTL_DAYS", "7")
    settings = WorkerSettings.from_env()
    assert settings.partitions == 8 and settings.topic("alerts") == "fairwatch.alerts"
    assert settings.core.intersections == (("sex", "race"), ("sex", "age"))
    assert settings.core.ttl_seconds == 7 * 86400
    monkeypatch.setenv("FAIRWATCH_PARTITIONS", "eight")
    with pytest.raises(SettingsError, match="FAIRWATCH_PARTITIONS must be a number"):
        WorkerSettings.from_env()


def test_intersections_need_two_attributes():
    assert parse_intersections("") == ()
    with pytest.raises(SettingsError, match="two or more"):
        parse_intersections("sex")
