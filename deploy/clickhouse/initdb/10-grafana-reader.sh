#!/bin/bash
# Run once by the clickhouse-server image on an empty data volume: a read-only user for Grafana,
# so that dashboards cannot change what the workers wrote.
set -euo pipefail
: "${GRAFANA_CLICKHOUSE_USER:?}" "${GRAFANA_CLICKHOUSE_PASSWORD:?}" "${CLICKHOUSE_DB:?}"
clickhouse client --user "$CLICKHOUSE_USER" --password "$CLICKHOUSE_PASSWORD" --multiquery <<SQL
CREATE DATABASE IF NOT EXISTS ${CLICKHOUSE_DB};
CREATE USER IF NOT EXISTS ${GRAFANA_CLICKHOUSE_USER} IDENTIFIED WITH sha256_password BY '${GRAFANA_CLICKHOUSE_PASSWORD}'
  SETTINGS readonly = 2;
GRANT SELECT ON ${CLICKHOUSE_DB}.* TO ${GRAFANA_CLICKHOUSE_USER};
SQL
