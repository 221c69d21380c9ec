import uuid

import pytest

from fairwatch.store import migrate, open_store
from tests.stack import ensure_stack


@pytest.fixture(scope="session")
def stack() -> dict[str, str]:
    """Addresses of Kafka, ClickHouse and Alertmanager (FAIRWATCH_* names -> values).

    Uses external services when FAIRWATCH_KAFKA, FAIRWATCH_CLICKHOUSE and FAIRWATCH_ALERTMANAGER
    are set, else starts or reuses the local stack (`scripts/stack up`), which stays running.
    """
    return ensure_stack()


@pytest.fixture(params=["server", "embedded"])
def migrated_store(request, tmp_path):
    """A migrated store of each kind: a fresh database on the ClickHouse server (dropped after),
    and an embedded chDB directory."""
    if request.param == "embedded":
        opened = open_store(f"chdb://{tmp_path}/chdb")
    else:
        from tests.test_store import server_url

        url = request.getfixturevalue("stack")["FAIRWATCH_CLICKHOUSE"]
        opened = open_store(server_url(url, f"fw_test_{uuid.uuid4().hex[:10]}"))
    migrate(opened)
    yield opened
    if request.param == "server":
        opened.execute(f"DROP DATABASE IF EXISTS {opened.database}")
    opened.close()
