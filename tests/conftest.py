import pytest

from tests.stack import ensure_stack


@pytest.fixture(scope="session")
def stack() -> dict[str, str]:
    """Addresses of Kafka, ClickHouse and Alertmanager (FAIRWATCH_* names -> values).

    Uses external services when FAIRWATCH_KAFKA, FAIRWATCH_CLICKHOUSE and FAIRWATCH_ALERTMANAGER
    are set, else starts or reuses the local stack (`scripts/stack up`), which stays running.
    """
    return ensure_stack()
