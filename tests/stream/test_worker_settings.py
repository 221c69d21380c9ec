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
from fairwatch.testing.docs import configuration_page

REPO = Path(__file__).resolve().parents[2]


def test_every_setting_the_worker_reads_is_documented_on_the_configuration_page():
    page = configuration_page()
    for name, (default, _) in WORKER_ENVIRONMENT.items():
        row = re.search(rf"^\| `{name}` \|[^\n]*\| (.*) \|$", page, re.M)
        assert row, f"{name} is read by the worker but not on the configuration page"
        if default:
            assert f"`{default}`" in row.group(1), f"the configuration page gives another default for {name}"


def test_the_code_reads_no_undeclared_variable():
    package = REPO / "streams" / "fairwatch"
    source = "\n".join(p.read_text() for p in package.rglob("*.py") if "testing" not in p.relative_to(package).parts)
    read = set(re.findall(r'"(FAIRWATCH_[A-Z_]+)"', source))
    declared = set(WORKER_ENVIRONMENT) | set(OTHER_ENVIRONMENT)
    assert read <= declared, f"read but declared nowhere in fairwatch.stream.worker_settings: {sorted(read - declared)}"
    assert not set(WORKER_ENVIRONMENT) & set(OTHER_ENVIRONMENT)


def test_every_other_variable_is_documented_on_the_configuration_page():
    page = configuration_page()
    for name in OTHER_ENVIRONMENT:
        assert f"`{name}`" in page, name


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
