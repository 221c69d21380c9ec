"""Fixtures shared by the tests. A test that uses the local stack (``stack``, or the server side
of ``store`` / ``migrated_store``) carries the ``services`` marker, so ``-m "not services"``
starts nothing."""

import os
import uuid

import pytest
from fairwatch.store.clickhouse import EmbeddedStore, ServerStore, open_store
from fairwatch.store.migrations import migrate
from fairwatch.testing.stack import ensure_stack, server_url

SERVER = pytest.param("server", marks=pytest.mark.services)


def pytest_collection_modifyitems(items):
    for item in items:
        if "stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.services)


@pytest.fixture(autouse=True)
def embedded_stores_are_closed():
    """Every chDB store a test opens is closed by its end (chDB serves one directory per process
    at a time, so one left open breaks the next test on that worker, whatever the order). Stores
    of module-scoped fixtures, open before the test, are theirs to close."""
    before = set(EmbeddedStore.opened)
    yield
    leaked = [store for store in list(EmbeddedStore.opened) if store not in before]
    for store in leaked:
        store.close()
    assert [store.path for store in leaked] == [], "chDB stores left open"


@pytest.fixture(scope="session")
def stack() -> dict[str, str]:
    """Addresses of Kafka, ClickHouse and Alertmanager (FAIRWATCH_* names -> values).

    Uses external services when FAIRWATCH_KAFKA, FAIRWATCH_CLICKHOUSE and FAIRWATCH_ALERTMANAGER
    are set, else starts or reuses the local stack (`scripts/stack up`), which stays running.
    """
    return ensure_stack()


@pytest.fixture(params=[SERVER, "embedded"])
def store(request, tmp_path):
    """An unmigrated store of each kind: a database on the ClickHouse server (dropped after) and
    an embedded chDB directory."""
    if request.param == "server":
        stack = request.getfixturevalue("stack")
        database = f"fairwatch_test_{os.getpid()}"
        opened = open_store(server_url(stack["FAIRWATCH_CLICKHOUSE"], database))
        assert isinstance(opened, ServerStore)
        yield opened
        opened.execute(f"DROP DATABASE IF EXISTS {database}")
    else:
        opened = open_store(f"chdb://{tmp_path}/chdb")
        assert isinstance(opened, EmbeddedStore)
        yield opened
    opened.close()


@pytest.fixture(params=[SERVER, "embedded"])
def migrated_store(request, tmp_path):
    """A migrated store of each kind: a fresh database on the ClickHouse server (dropped after),
    and an embedded chDB directory."""
    if request.param == "embedded":
        opened = open_store(f"chdb://{tmp_path}/chdb")
    else:
        url = request.getfixturevalue("stack")["FAIRWATCH_CLICKHOUSE"]
        opened = open_store(server_url(url, f"fw_test_{uuid.uuid4().hex[:10]}"))
    migrate(opened)
    yield opened
    if request.param == "server":
        opened.execute(f"DROP DATABASE IF EXISTS {opened.database}")
    opened.close()
